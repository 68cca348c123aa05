//! Admission of operations: at most `pool_size` run at once, and together
//! they stay within a memory budget.
//!
//! Each operation asks for a [`Permit`] with its estimated peak memory
//! ([`super::budget`]) and waits its turn: interactive work (a client is
//! waiting) always goes before background work (recovery after a restart,
//! pre-heating), and within a priority the order is first come, first
//! served — a large operation at the head is not overtaken by smaller ones
//! forever. Time spent waiting here is not run time: `op_timeout` starts
//! when the permit is granted, so a queue of heavy operations cannot make an
//! innocent one time out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Who is waiting for an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Interactive,
    Background,
}

struct Waiter {
    need: u64,
    grant: oneshot::Sender<Permit>,
}

#[derive(Default)]
struct State {
    running: usize,
    used: u64,
    interactive: VecDeque<Waiter>,
    background: VecDeque<Waiter>,
}

/// The admission gate.
pub struct Pool {
    slots: usize,
    memory: u64,
    state: Mutex<State>,
}

/// The right to run one operation; gives its slot and memory back when dropped.
pub struct Permit {
    pool: Arc<Pool>,
    need: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let unclaimed = {
            let mut state = self.pool.state.lock().expect("pool lock");
            state.running -= 1;
            state.used -= self.need;
            self.pool.grant(&mut state)
        };
        drop(unclaimed); // outside the lock: each gives its share back in turn
    }
}

impl Pool {
    /// At most `slots` operations at once, using at most `memory` bytes together.
    pub fn new(slots: usize, memory: u64) -> Arc<Self> {
        Arc::new(Self {
            slots: slots.max(1),
            memory,
            state: Mutex::default(),
        })
    }

    /// Waits until an operation needing `need` bytes may run. A need above
    /// the whole budget is taken as the whole budget: it runs alone.
    pub async fn admit(self: &Arc<Self>, priority: Priority, need: u64) -> Permit {
        let need = need.min(self.memory);
        let (tx, rx) = oneshot::channel();
        let unclaimed = {
            let mut state = self.state.lock().expect("pool lock");
            let waiter = Waiter { need, grant: tx };
            match priority {
                Priority::Interactive => state.interactive.push_back(waiter),
                Priority::Background => state.background.push_back(waiter),
            }
            self.grant(&mut state)
        };
        drop(unclaimed);
        rx.await.expect("the pool outlives its waiters")
    }

    /// Operations running now, and the memory they hold.
    pub fn load(&self) -> (usize, u64) {
        let state = self.state.lock().expect("pool lock");
        (state.running, state.used)
    }

    /// Admits waiters from the heads of the queues while they fit. Returns
    /// the permits of waiters that gave up meanwhile, to be dropped once the
    /// lock is released.
    #[must_use]
    fn grant(self: &Arc<Self>, state: &mut State) -> Vec<Permit> {
        let mut unclaimed = Vec::new();
        loop {
            let queue = if state.interactive.is_empty() {
                &mut state.background
            } else {
                &mut state.interactive
            };
            let Some(head) = queue.front() else {
                return unclaimed;
            };
            if state.running >= self.slots || state.used + head.need > self.memory {
                return unclaimed;
            }
            let waiter = queue.pop_front().expect("a head");
            state.running += 1;
            state.used += waiter.need;
            let permit = Permit {
                pool: self.clone(),
                need: waiter.need,
            };
            if let Err(permit) = waiter.grant.send(permit) {
                unclaimed.push(permit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn granted(rx: &mut tokio::task::JoinHandle<Permit>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), rx)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn slots_and_memory_bound_what_runs() {
        let pool = Pool::new(2, 100);
        let a = pool.admit(Priority::Interactive, 60).await;
        let p = pool.clone();
        let mut b = tokio::spawn(async move { p.admit(Priority::Interactive, 60).await });
        assert!(!granted(&mut b).await, "60 + 60 exceeds the budget");
        assert_eq!(pool.load(), (1, 60));
        drop(a);
        let b = b.await.unwrap();
        assert_eq!(pool.load(), (1, 60));
        let c = pool.admit(Priority::Interactive, 10).await;
        let p = pool.clone();
        let mut d = tokio::spawn(async move { p.admit(Priority::Interactive, 1).await });
        assert!(!granted(&mut d).await, "two slots");
        drop((b, c));
        d.await.unwrap();
        // A need above the budget runs alone instead of never.
        let _whole = pool.admit(Priority::Background, 1 << 40).await;
        assert_eq!(pool.load(), (1, 100));
    }

    #[tokio::test]
    async fn interactive_goes_first_and_order_is_kept() {
        let pool = Pool::new(1, 100);
        let first = pool.admit(Priority::Background, 1).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [
            ("background", Priority::Background),
            ("interactive 1", Priority::Interactive),
            ("interactive 2", Priority::Interactive),
        ] {
            let (p, o) = (pool.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = p.admit(priority, 1).await;
                o.lock().unwrap().push(name);
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec!["interactive 1", "interactive 2", "background"]
        );
    }

    #[tokio::test]
    async fn an_abandoned_wait_gives_nothing_away() {
        let pool = Pool::new(1, 100);
        let held = pool.admit(Priority::Interactive, 50).await;
        let p = pool.clone();
        let gone = tokio::spawn(async move { p.admit(Priority::Interactive, 50).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        gone.abort();
        let _ = gone.await;
        drop(held);
        assert_eq!(pool.load(), (0, 0));
        let _again = pool.admit(Priority::Interactive, 100).await;
        assert_eq!(pool.load(), (1, 100));
    }
}
