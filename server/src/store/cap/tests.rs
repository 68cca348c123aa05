//! The cap's accounting, order and eviction, on a real disk store.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::store::blob::{BlobStore, StagedFile};
use crate::store::capped::CappedStore;
use crate::store::disk::DiskStore;

struct Fixture {
    dir: tempfile::TempDir,
    cap: Arc<DiskCap>,
    store: CappedStore,
}

fn open(dir: tempfile::TempDir, limit: u64) -> Fixture {
    let meta = Meta::open(&dir.path().join("db"), 1 << 20, Default::default()).unwrap();
    let cap = DiskCap::open(&meta, Some(limit), Default::default()).unwrap();
    let inner: Arc<dyn BlobStore> = Arc::new(DiskStore::open(dir.path()).unwrap());
    cap.start(inner.clone());
    let store = CappedStore::new(inner, cap.clone());
    Fixture { dir, cap, store }
}

fn name(i: u8) -> BlobName {
    BlobName::Result(Key([i; 32]))
}

impl Fixture {
    async fn put(&self, i: u8, len: usize) {
        let path = self.dir.path().join(format!("staged-{i}"));
        let bytes = vec![i; len];
        std::fs::write(&path, &bytes).unwrap();
        let meta = crate::store::blob::BlobMeta::of_bytes(&bytes, "image/png");
        self.store
            .put_file(name(i), StagedFile::new(path), meta)
            .await
            .unwrap();
    }

    async fn has(&self, i: u8) -> bool {
        self.store.head(name(i)).await.unwrap().is_some()
    }

    /// Waits until usage is at most `bytes`.
    async fn settles_under(&self, bytes: u64) {
        for _ in 0..500 {
            let (used, reserved) = self.cap.usage();
            if used + reserved <= bytes {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("usage stayed at {:?}", self.cap.usage());
    }
}

#[tokio::test]
async fn the_least_recently_used_go_first_and_leases_are_spared() {
    let f = open(tempfile::tempdir().unwrap(), 1000);
    for i in 0..5 {
        f.put(i, 200).await;
    }
    assert_eq!(f.cap.usage(), (1000, 0));
    // 0 is read (the oldest, now the newest); 1 is being served.
    drop(f.store.get(name(0), None).await.unwrap().unwrap());
    let served = f.store.get(name(1), None).await.unwrap().unwrap();
    f.put(5, 200).await;
    f.put(6, 200).await;
    f.settles_under(1000).await;
    assert!(f.has(0).await, "used recently");
    assert!(f.has(1).await, "being served");
    assert!(
        !f.has(2).await && !f.has(3).await,
        "the least recently used went"
    );
    assert!(f.has(4).await && f.has(5).await && f.has(6).await);
    assert_eq!(metrics::DISK_USED.get() % 200, 0);
    drop(served);
}

#[tokio::test]
async fn a_reservation_past_the_cap_is_refused_and_one_that_fits_waits_for_room() {
    let f = open(tempfile::tempdir().unwrap(), 1000);
    assert!(matches!(
        f.cap.reserve(1001).await,
        Err(CapError::TooLarge {
            need: 1001,
            cap: 1000
        })
    ));
    for i in 0..4 {
        f.put(i, 250).await;
    }
    // 600 more: past the hard limit (1100) until the evictor made room.
    let r = f.cap.reserve(600).await.unwrap();
    let (used, reserved) = f.cap.usage();
    assert!(used + reserved <= 1100, "{used} + {reserved}");
    f.settles_under(1000).await;
    // Reserved room is not evictable: nothing can make room for 600 more.
    let refused = f.cap.reserve(600).await;
    assert!(
        matches!(refused, Err(CapError::NoRoom { .. })),
        "{refused:?}"
    );
    drop(r);
    f.cap.reserve(600).await.unwrap();
}

#[tokio::test]
async fn the_order_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let f = open(dir, 1000);
        for i in 0..4 {
            f.put(i, 250).await;
        }
        drop(f.store.get(name(0), None).await.unwrap());
        let cap = f.cap.clone();
        tokio::task::spawn_blocking(move || cap.flush_touches())
            .await
            .unwrap()
            .unwrap();
        f.cap.meta.flush().unwrap();
        let dir = f.dir;
        drop(f.store);
        drop(f.cap);
        // sled lets go of its lock a moment after the last handle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let f = loop {
            match Meta::open(&dir.path().join("db"), 1 << 20, Default::default()) {
                Ok(m) => {
                    drop(m);
                    break open(dir, 1000);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        assert_eq!(f.cap.usage(), (1000, 0), "the total is read, not rescanned");
        f.put(9, 250).await;
        f.settles_under(1000).await;
        assert!(f.has(0).await, "used before the restart");
        assert!(!f.has(1).await, "the least recently used");
    }
}

#[tokio::test]
async fn a_blob_the_predicate_refuses_is_never_evicted() {
    let f = open(tempfile::tempdir().unwrap(), 1000);
    // As a tier would refuse a result whose remote copy is not confirmed.
    f.cap.set_may_evict(Arc::new(|n| n != name(0)));
    for i in 0..6 {
        f.put(i, 200).await;
    }
    f.settles_under(1000).await;
    assert!(
        f.has(0).await,
        "refused by the predicate, though the oldest"
    );
    assert!(!f.has(1).await, "the next least recently used went instead");
}
