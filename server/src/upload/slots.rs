//! Who is writing to each upload right now: at most one sequential writer
//! (`PATCH`, one-shot `PUT`), and one claim per block being written.
//!
//! A dead connection must never lock an upload (a phone that changed
//! networks leaves one behind, which the server may not hear close for a
//! long time): the newest request for a block takes it over ([`Slot::take`]),
//! and a newer `PATCH` makes an older one stop (the `takeover` signal).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use upcache_protocol::{Key, ProblemType};

use crate::error::{Error, Result};

/// How long a new request waits for an older one to let go.
pub(super) const TAKEOVER_WAIT: Duration = Duration::from_secs(10);

/// In-memory coordination of the writers of each upload.
#[derive(Default)]
pub struct Slots {
    map: Mutex<HashMap<Key, Arc<Slot>>>,
}

/// One upload's writers: at most one sequential writer, and a claim per
/// block being written so that no two requests write the same block at once.
pub(super) struct Slot {
    pub(super) sequential: tokio::sync::Mutex<()>,
    /// Bumped when a newer sequential request takes over.
    pub(super) takeover: watch::Sender<u64>,
    /// Bumped when the upload ends (verified, failed or deleted): every writer stops.
    pub(super) cancel: watch::Sender<u64>,
    /// Who writes each block being written.
    blocks: Mutex<HashMap<u64, Holder>>,
    /// Signalled whenever a block claim is released.
    released: Notify,
    /// When the sequential writer last received bytes.
    activity: Mutex<Instant>,
    /// Tells claims apart, so a released claim removes only itself.
    claims: AtomicU64,
}

/// The request writing one block.
struct Holder {
    claim: u64,
    /// A sequential writer's blocks are not taken over block by block: the
    /// whole request is (see [`Core::append`]).
    sequential: bool,
    /// Set to ask the holder to let go.
    stop: watch::Sender<bool>,
}

/// A claimed block; released on drop.
pub(super) struct Claim {
    slot: Arc<Slot>,
    block: u64,
    id: u64,
    /// Turns true when a newer request asks for the block.
    pub(crate) stop: watch::Receiver<bool>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut blocks = self.slot.blocks.lock().expect("slot lock");
        if blocks.get(&self.block).is_some_and(|h| h.claim == self.id) {
            blocks.remove(&self.block);
        }
        drop(blocks);
        self.slot.released.notify_waiters();
    }
}

pub(super) fn busy(detail: String) -> Error {
    Error::problem(ProblemType::UploadBusy, detail)
}

impl Slot {
    fn new() -> Self {
        Self {
            sequential: tokio::sync::Mutex::new(()),
            takeover: watch::channel(0).0,
            cancel: watch::channel(0).0,
            blocks: Mutex::default(),
            released: Notify::new(),
            activity: Mutex::new(Instant::now()),
            claims: AtomicU64::new(0),
        }
    }

    fn holder(self: &Arc<Self>, block: u64, sequential: bool) -> (Holder, Claim) {
        let id = self.claims.fetch_add(1, Ordering::Relaxed);
        let (stop, rx) = watch::channel(false);
        let claim = Claim {
            slot: self.clone(),
            block,
            id,
            stop: rx,
        };
        let holder = Holder {
            claim: id,
            sequential,
            stop,
        };
        (holder, claim)
    }

    /// Claims `block` for a sequential writer, if nobody writes it.
    pub(super) fn claim(self: &Arc<Self>, block: u64) -> Option<Claim> {
        let mut blocks = self.blocks.lock().expect("slot lock");
        if blocks.contains_key(&block) {
            return None;
        }
        let (holder, claim) = self.holder(block, true);
        blocks.insert(block, holder);
        Some(claim)
    }

    /// Claims `block` for a request that sends that block alone. The newest
    /// such request wins: an older one still writing the block (a client
    /// that reconnected after its network changed leaves one behind, which
    /// the server may not hear of for a long time) is asked to let go, and
    /// its partial bytes are dropped.
    pub(super) async fn take(self: &Arc<Self>, block: u64) -> Result<Claim> {
        let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before looking, so no release is missed.
            released.as_mut().enable();
            {
                let mut blocks = self.blocks.lock().expect("slot lock");
                match blocks.get(&block) {
                    None => {
                        let (holder, claim) = self.holder(block, false);
                        blocks.insert(block, holder);
                        return Ok(claim);
                    }
                    Some(h) if h.sequential => {
                        return Err(busy(format!(
                            "block {block} is being written by a sequential request"
                        )))
                    }
                    Some(h) => {
                        h.stop.send_replace(true);
                    }
                }
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(busy(format!(
                    "block {block} is still being written by another request"
                )));
            }
        }
    }

    pub(super) fn touch(&self) {
        *self.activity.lock().expect("slot lock") = Instant::now();
    }

    pub(super) fn idle(&self) -> Duration {
        self.activity.lock().expect("slot lock").elapsed()
    }
}

impl Slots {
    pub(super) fn get(&self, key: &Key) -> Arc<Slot> {
        let mut map = self.map.lock().expect("slots lock");
        map.entry(*key)
            .or_insert_with(|| Arc::new(Slot::new()))
            .clone()
    }

    /// Asks every writer of `key` to stop, and forgets the slot.
    pub fn stop(&self, key: &Key) {
        if let Some(slot) = self.map.lock().expect("slots lock").remove(key) {
            slot.cancel.send_modify(|g| *g += 1);
        }
    }

    pub(super) fn existing(&self, key: &Key) -> Option<Arc<Slot>> {
        self.map.lock().expect("slots lock").get(key).cloned()
    }

    /// Whether a request is writing to `key` right now.
    pub fn active(&self, key: &Key) -> bool {
        self.map
            .lock()
            .expect("slots lock")
            .get(key)
            .is_some_and(|s| Arc::strong_count(s) > 1)
    }
}
