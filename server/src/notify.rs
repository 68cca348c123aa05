//! Per-key wake-ups for clients waiting on an entry.
//!
//! A `watch` channel per key, created on demand by the first waiter and
//! dropped with the last one, so the map holds only keys somebody waits on.
//! Waiters subscribe *before* re-reading the entry's state, so a change that
//! lands between the read and the wait is never lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use upcache_protocol::Key;

/// The map of waited-on keys.
#[derive(Default)]
pub struct Notifier {
    // A std Mutex: the critical sections are a map lookup, never held across an await.
    keys: Mutex<HashMap<Key, watch::Sender<u64>>>,
}

/// A subscription to one key; unsubscribes on drop.
pub struct Subscription {
    notifier: Arc<Notifier>,
    key: Key,
    rx: Option<watch::Receiver<u64>>,
}

impl Notifier {
    /// Subscribes to changes of `key`.
    pub fn subscribe(self: &Arc<Self>, key: Key) -> Subscription {
        let mut keys = self.keys.lock().expect("notifier lock");
        let rx = keys
            .entry(key)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Subscription {
            notifier: self.clone(),
            key,
            rx: Some(rx),
        }
    }

    /// Wakes every waiter of `key`.
    pub fn notify(&self, key: &Key) {
        if let Some(tx) = self.keys.lock().expect("notifier lock").get(key) {
            tx.send_modify(|v| *v += 1);
        }
    }

    /// Number of keys with waiters (for metrics and tests).
    pub fn waited_keys(&self) -> usize {
        self.keys.lock().expect("notifier lock").len()
    }
}

impl Subscription {
    /// Waits for the next change of the key.
    pub async fn changed(&mut self) {
        if let Some(rx) = self.rx.as_mut() {
            // The sender lives in the map while this receiver exists.
            let _ = rx.changed().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut keys = self.notifier.keys.lock().expect("notifier lock");
        if keys
            .get(&self.key)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            keys.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_waiters_and_cleans_up() {
        let n = Arc::new(Notifier::default());
        let key = Key([1; 32]);
        let mut a = n.subscribe(key);
        let b = n.subscribe(key);
        assert_eq!(n.waited_keys(), 1);
        n.notify(&key);
        tokio::time::timeout(std::time::Duration::from_secs(1), a.changed())
            .await
            .unwrap();
        drop(a);
        assert_eq!(n.waited_keys(), 1, "still one waiter");
        drop(b);
        assert_eq!(n.waited_keys(), 0, "the last waiter removes the key");
        n.notify(&key); // nobody waits: a no-op
    }
}
