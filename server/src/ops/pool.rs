//! A bounded pool of worker threads with two priorities.
//!
//! Interactive work (a client is waiting) is always taken before background
//! work (recovery after a restart, pre-heating). A panicking job fails only
//! itself.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;

/// Who is waiting for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Interactive,
    Background,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queues {
    interactive: VecDeque<Job>,
    background: VecDeque<Job>,
}

/// The worker pool.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<(Mutex<Queues>, Condvar)>,
}

/// A job panicked.
#[derive(Debug, thiserror::Error)]
#[error("the job panicked: {0}")]
pub struct Panicked(pub String);

impl Pool {
    /// Starts `threads` workers.
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new((Mutex::new(Queues::default()), Condvar::new()));
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("upcache-op-{i}"))
                .spawn(move || worker(&shared))
                .expect("spawn a worker thread");
        }
        Self { shared }
    }

    /// Runs `f` on a worker; the receiver yields its result.
    pub fn run<T: Send + 'static>(
        &self,
        priority: Priority,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<Result<T, Panicked>> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
                Panicked(
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default(),
                )
            });
            let _ = tx.send(out);
        });
        let (lock, cv) = &*self.shared;
        let mut q = lock.lock().expect("pool lock");
        match priority {
            Priority::Interactive => q.interactive.push_back(job),
            Priority::Background => q.background.push_back(job),
        }
        cv.notify_one();
        rx
    }
}

fn worker(shared: &(Mutex<Queues>, Condvar)) {
    let (lock, cv) = shared;
    loop {
        let job = {
            let mut q = lock.lock().expect("pool lock");
            loop {
                if let Some(j) = q
                    .interactive
                    .pop_front()
                    .or_else(|| q.background.pop_front())
                {
                    break j;
                }
                q = cv.wait(q).expect("pool lock");
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_panics() {
        let pool = Pool::new(2);
        assert_eq!(
            pool.run(Priority::Interactive, || 2 + 2)
                .await
                .unwrap()
                .unwrap(),
            4
        );
        let err = pool
            .run(Priority::Background, || -> u8 { panic!("boom") })
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.0, "boom");
        assert_eq!(
            pool.run(Priority::Background, || 1).await.unwrap().unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn interactive_jumps_the_queue() {
        let pool = Pool::new(1);
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let order = Arc::new(Mutex::new(Vec::new()));
        let blocker = pool.run(Priority::Background, move || gate_rx.recv().unwrap());
        let o = order.clone();
        let bg = pool.run(Priority::Background, move || {
            o.lock().unwrap().push("background")
        });
        let o = order.clone();
        let fg = pool.run(Priority::Interactive, move || {
            o.lock().unwrap().push("interactive")
        });
        gate_tx.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        bg.await.unwrap().unwrap();
        fg.await.unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["interactive", "background"]);
    }
}
