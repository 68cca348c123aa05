//! The evictor: a background task that walks the order from the least
//! recently used blob and unlinks until usage is back under the cap, the
//! task that writes noted uses, and the one-time adoption of blobs an
//! earlier release left without an order.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use sled::transaction::Transactional;

use super::{name_bytes, name_of, order_key, tx_err, Access, CapError, DiskCap, TOUCH_FLUSH};
use crate::metrics;
use crate::store::blob::{BlobName, BlobStore};
use crate::store::meta::MetaError;

impl DiskCap {
    /// The names in the order, least recently used first, starting after
    /// `after` (an order key).
    fn next_candidate(
        &self,
        after: Option<&[u8]>,
    ) -> Result<Option<(Vec<u8>, BlobName)>, MetaError> {
        let item = match after {
            None => self.order.iter().next(),
            Some(a) => self
                .order
                .range::<&[u8], _>((Bound::Excluded(a), Bound::Unbounded))
                .next(),
        };
        let Some(item) = item else { return Ok(None) };
        let (k, _) = item?;
        let name = name_of(&k[8..]).ok_or_else(|| MetaError::Corrupt("disk order key".into()))?;
        Ok(Some((k.to_vec(), name)))
    }

    /// Starts the evictor, which unlinks from `store` (the store under the
    /// cap), and the task writing noted uses.
    pub fn start(self: &Arc<Self>, store: Arc<dyn BlobStore>) {
        // Both tasks hold the cap weakly: they end once the service let go.
        let cap = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(cap) = cap.upgrade() else { return };
                let woken = tokio::time::timeout(TOUCH_FLUSH, cap.wake.notified()).await;
                if woken.is_err() {
                    continue;
                }
                if let Err(e) = cap.evict_pass(&store).await {
                    tracing::warn!(error = %e, "eviction pass failed");
                    {
                        let mut st = cap.lock();
                        st.passes += 1;
                        st.stuck = true;
                    }
                    cap.progress.notify_waiters();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        let cap = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TOUCH_FLUSH).await;
                let Some(cap) = cap.upgrade() else { return };
                let flushed = tokio::task::spawn_blocking(move || cap.flush_touches()).await;
                if let Ok(Err(e)) = flushed {
                    tracing::warn!(error = %e, "writing the use order failed");
                }
            }
        });
    }

    /// Evicts least recently used blobs until `used + reserved` is under
    /// the cap (and under the hard limit less what reservations wait for).
    async fn evict_pass(self: &Arc<Self>, store: &Arc<dyn BlobStore>) -> Result<(), CapError> {
        let Some((cap, hard)) = self.limit else {
            return Ok(());
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.flush_touches())
            .await
            .map_err(|e| MetaError::Corrupt(e.to_string()))??;
        let may_evict = self.may_evict.read().expect("hook lock").clone();
        let on_evicted = self.on_evicted.read().expect("hook lock").clone();
        let mut cursor: Option<Vec<u8>> = None;
        let stuck = loop {
            {
                let st = self.lock();
                let target = cap.min(hard.saturating_sub(st.waiting));
                if st.used + st.reserved <= target {
                    break false;
                }
            }
            let Some((key, name)) = self.next_candidate(cursor.as_deref())? else {
                break true;
            };
            cursor = Some(key);
            if may_evict.as_ref().is_some_and(|f| !f(name)) {
                continue;
            }
            {
                let mut st = self.lock();
                if st.leases.contains_key(&name) || st.pending.contains_key(&name) {
                    continue; // in use, or used since the pass began
                }
                st.doomed.insert(name);
            }
            let deleted = store.delete(name).await;
            let this = self.clone();
            let forgotten = tokio::task::spawn_blocking(move || this.removed(name)).await;
            self.lock().doomed.remove(&name);
            deleted.map_err(|e| MetaError::Corrupt(format!("unlinking {name}: {e}")))?;
            let length = forgotten
                .map_err(|e| MetaError::Corrupt(e.to_string()))??
                .unwrap_or(0);
            tracing::info!(blob = %name, bytes = length, "evicted");
            metrics::DISK_EVICTIONS.inc();
            metrics::DISK_EVICTED_BYTES.add(length);
            if let Some(f) = &on_evicted {
                f(name);
            }
        };
        let mut st = self.lock();
        st.passes += 1;
        st.stuck = stuck;
        drop(st);
        self.progress.notify_waiters();
        Ok(())
    }

    /// Puts every blob of `store` missing from the order into it, oldest
    /// first, once: a data directory of an earlier release. Runs in the
    /// background after the server listens. Returns how many were added.
    pub async fn adopt(self: &Arc<Self>, store: &Arc<dyn BlobStore>) -> Result<usize, CapError> {
        if self
            .totals
            .get("adopted")
            .map_err(MetaError::from)?
            .is_some()
        {
            return Ok(0);
        }
        let mut n = 0;
        for name in store
            .list("")
            .await
            .map_err(|e| MetaError::Corrupt(e.to_string()))?
        {
            if self.access_of(name)?.is_some() {
                continue;
            }
            let Ok(Some(head)) = store.head(name).await else {
                continue;
            };
            let this = self.clone();
            tokio::task::spawn_blocking(move || -> Result<(), MetaError> {
                this.added(name, head.length)?;
                // Older than anything used since the upgrade.
                this.touch_at(name, 0)
            })
            .await
            .map_err(|e| MetaError::Corrupt(e.to_string()))??;
            n += 1;
        }
        self.totals
            .insert("adopted", &[1u8][..])
            .map_err(MetaError::from)?;
        Ok(n)
    }

    /// Moves `name` to position `seq` in the order. Blocking.
    fn touch_at(&self, name: BlobName, seq: u64) -> Result<(), MetaError> {
        let key = name_bytes(name);
        let Some(old) = self.access_of(name)? else {
            return Ok(());
        };
        (&self.access, &self.order)
            .transaction(|(access, order)| {
                order.remove(&order_key(old.seq, name)[..])?;
                order.insert(&order_key(seq, name)[..], &[][..])?;
                access.insert(&key[..], &Access { seq, ..old }.encode()[..])?;
                Ok(())
            })
            .map_err(tx_err::<MetaError>)
    }
}
