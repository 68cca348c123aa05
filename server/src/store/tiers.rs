//! The local tier and an optional remote one (S3) as one [`BlobStore`].
//!
//! ```text
//!   read:   local ──miss──▶ remote (breaker) ──▶ fill local (single flight per name) ──▶ serve
//!   write:  local (durable) ──▶ write-behind queue (durable) ──worker──▶ remote
//!   delete: local ──▶ queue (delete) ──worker──▶ remote
//! ```
//!
//! Every write lands in the local tier first and is acknowledged from
//! there; the [`WriteBehind`] queue copies it up with bounded concurrency
//! and survives restarts. All remote calls go through one [`Breaker`]:
//! while the remote tier is down or slow, reads are served from the local
//! tier (a blob that is only remote is reported unavailable, not missing),
//! writes keep being accepted and queued, and the worker catches up once a
//! probe succeeds. Deletes go through the queue too, so a delete is never
//! overtaken by an earlier put of the same name, and a blob whose delete is
//! queued is not read back from the remote tier.
//!
//! A blob is *only local* while a put of it is queued: eviction from the
//! local tier asks [`Tiers::only_local`] first.
//!
//! A blob whose remote copy is *confirmed* — copied up by the queue, read
//! from the remote tier, or found there by a `HEAD` — may be handed to a
//! client as a presigned URL of the remote tier ([`Tiers::presigned`]);
//! names confirmed are remembered (a bounded set), so that a redirect asks
//! the remote tier nothing but the first time.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::blob::{
    is_unavailable, BlobHead, BlobMeta, BlobName, BlobStore, ByteStream, StagedFile,
};
use super::breaker::{Breaker, BreakerSettings, BreakerState};
use super::staging::Staging;
use super::write_behind::{Job, Taken, WriteBehind};
use crate::clock::SharedClock;
use crate::metrics;

/// The remote tier and what goes with it.
#[derive(Debug)]
struct Remote {
    store: Arc<dyn BlobStore>,
    breaker: Breaker,
    queue: Arc<WriteBehind>,
    /// Fills from the remote tier under way, one per name.
    fills: Mutex<HashMap<BlobName, Arc<tokio::sync::Mutex<()>>>>,
    concurrency: usize,
    /// Names whose remote copy is known to be there.
    confirmed: quick_cache::sync::Cache<BlobName, ()>,
}

/// Names the set of confirmed remote copies remembers.
const CONFIRMED_NAMES: usize = 100_000;

/// The tiers.
#[derive(Debug, Clone)]
pub struct Tiers {
    local: Arc<dyn BlobStore>,
    staging: Staging,
    clock: SharedClock,
    remote: Option<Arc<Remote>>,
}

/// How the remote tier is reached and how hard it is pushed.
#[derive(Debug, Clone)]
pub struct RemoteTier {
    pub store: Arc<dyn BlobStore>,
    pub breaker: BreakerSettings,
    /// Write-behind jobs run at once.
    pub concurrency: usize,
}

/// What `/healthz` and the metrics say of the remote tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteHealth {
    pub breaker: BreakerState,
    pub queue_depth: usize,
    /// Seconds the oldest queued job has waited.
    pub queue_age: u64,
}

fn unavailable(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("the remote tier is unavailable (breaker open): {what}"),
    )
}

impl Tiers {
    /// The local tier alone.
    pub fn local(local: Arc<dyn BlobStore>, staging: Staging, clock: SharedClock) -> Self {
        Self {
            local,
            staging,
            clock,
            remote: None,
        }
    }

    /// The local tier with `remote` behind it; `queue` is the write-behind
    /// queue, loaded. Start [`Tiers::run_write_behind`] to drain it.
    pub fn with_remote(
        local: Arc<dyn BlobStore>,
        staging: Staging,
        clock: SharedClock,
        remote: RemoteTier,
        queue: WriteBehind,
    ) -> Self {
        Self {
            local,
            staging,
            clock,
            remote: Some(Arc::new(Remote {
                store: remote.store,
                breaker: Breaker::new("remote", remote.breaker),
                queue: Arc::new(queue),
                fills: Mutex::default(),
                concurrency: remote.concurrency.max(1),
                confirmed: quick_cache::sync::Cache::new(CONFIRMED_NAMES),
            })),
        }
    }

    /// Queues a link for a result that is its input (`meta` from
    /// [`BlobMeta::link`]) to the remote tier; nothing is written locally.
    /// Without a remote tier, nothing happens.
    pub async fn link(&self, name: BlobName, meta: BlobMeta) -> io::Result<()> {
        debug_assert!(meta.is_link());
        self.queue(name, Job::Put(meta)).await
    }

    /// The write-behind queue to the remote tier, if there is one.
    pub fn remote_queue(&self) -> Option<Arc<WriteBehind>> {
        self.remote.as_ref().map(|r| r.queue.clone())
    }

    /// What the local tier knows of `name` (the remote one is not asked).
    pub async fn local_head(&self, name: BlobName) -> io::Result<Option<BlobHead>> {
        self.local.head(name).await
    }

    /// Whether there is a remote tier.
    pub fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The remote tier's state, if there is one.
    pub fn remote_health(&self) -> Option<RemoteHealth> {
        let r = self.remote.as_ref()?;
        let now = self.clock.now();
        Some(RemoteHealth {
            breaker: r.breaker.state(),
            queue_depth: r.queue.depth(),
            queue_age: r.queue.oldest().map_or(0, |t| now.saturating_sub(t)),
        })
    }

    /// Whether `name`'s only copy is local (its put to the remote tier is
    /// still queued): such a blob must not be evicted.
    pub fn only_local(&self, name: BlobName) -> bool {
        self.remote
            .as_ref()
            .is_some_and(|r| r.queue.put_pending(name))
    }

    async fn queue(&self, name: BlobName, job: Job) -> io::Result<()> {
        let Some(r) = &self.remote else {
            return Ok(());
        };
        r.confirmed.remove(&name);
        let queue = r.queue.clone();
        let now = self.clock.now();
        tokio::task::spawn_blocking(move || queue.push(name, job, now))
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        publish_health(&self.remote_health());
        Ok(())
    }

    /// Calls the remote tier through the breaker.
    async fn call<T, F>(
        &self,
        what: &(dyn std::fmt::Display + Sync),
        f: impl FnOnce(Arc<dyn BlobStore>) -> F,
    ) -> io::Result<T>
    where
        F: std::future::Future<Output = io::Result<T>>,
    {
        let r = self.remote.as_ref().expect("a remote tier");
        let Some(permit) = r.breaker.admit() else {
            return Err(unavailable(&what.to_string()));
        };
        let out = f(r.store.clone()).await;
        r.breaker.record(
            permit,
            out.as_ref().map_or_else(|e| !is_unavailable(e), |_| true),
        );
        out
    }

    /// Copies `name` from the remote tier into the local one, once however
    /// many readers ask at the same time; whether it is now local.
    async fn fill(&self, name: BlobName) -> io::Result<bool> {
        let Some(r) = &self.remote else {
            return Ok(false);
        };
        if r.queue.delete_pending(name) {
            return Ok(false);
        }
        let flight = r
            .fills
            .lock()
            .expect("fills lock")
            .entry(name)
            .or_default()
            .clone();
        let guard = flight.lock().await;
        let filled = async {
            if self.local.head(name).await?.is_some() {
                return Ok(true);
            }
            // One request: the object's bytes come with its metadata.
            let fetched = self.call(&name, |s| async move { s.fetch(name).await }).await?;
            let Some((head, mut body)) = fetched else {
                metrics::REMOTE_MISSES.inc();
                return Ok(false);
            };
            let staged = StagedFile::new(self.staging.fresh(&name.path().replace('/', "-")));
            let mut out = tokio::fs::File::create(staged.path()).await?;
            let mut bytes = 0u64;
            let mut hasher = blake3::Hasher::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                bytes += chunk.len() as u64;
                hasher.update(&chunk);
                out.write_all(&chunk).await?;
            }
            out.sync_all().await?;
            drop(out);
            // What comes back is checked before the local tier trusts it.
            let blake3 = upcache_protocol::InputHash(*hasher.finalize().as_bytes());
            let expected = match (name, &head.meta) {
                (BlobName::Input(h), _) => Some(h),
                (_, Some(m)) => Some(m.blake3),
                _ => None,
            };
            if bytes != head.length || expected.is_some_and(|h| h != blake3) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{name} from the remote tier: {bytes} bytes hashing to {blake3}, not what its metadata says"),
                ));
            }
            let meta = head.meta.unwrap_or(BlobMeta {
                length: bytes,
                blake3,
                content_type: super::blob::OCTET_STREAM.into(),
                input: None,
                result: None,
            });
            self.local.put_file(name, staged, meta).await?;
            metrics::REMOTE_HITS.inc();
            metrics::REMOTE_BYTES_READ.add(bytes);
            metrics::FILL_BACKS.inc();
            Ok(true)
        }
        .await;
        drop(guard);
        let mut fills = r.fills.lock().expect("fills lock");
        if Arc::strong_count(&flight) <= 2 {
            fills.remove(&name);
        }
        filled
    }

    /// What the remote tier knows of `name`, metadata included (`None`
    /// without a remote tier, or when a delete of it is queued).
    pub async fn remote_head(&self, name: BlobName) -> io::Result<Option<BlobHead>> {
        match &self.remote {
            Some(r) if !r.queue.delete_pending(name) => {
                self.call(&name, |s| async move { s.head(name).await })
                    .await
            }
            _ => Ok(None),
        }
    }

    /// A URL of `name` in the remote tier that a client may `GET` (ranges
    /// included) for `ttl`, when the remote tier can presign, its breaker
    /// is closed, nothing of `name` is queued, and its remote copy is
    /// confirmed to hold `length` bytes (asked once, then remembered).
    /// `None` otherwise: the caller serves `name` from the local tier.
    pub async fn presigned(
        &self,
        name: BlobName,
        length: u64,
        ttl: Duration,
    ) -> io::Result<Option<String>> {
        let Some(r) = &self.remote else {
            return Ok(None);
        };
        let Some(presign) = r.store.presign() else {
            return Ok(None);
        };
        let settled = || r.queue.pending(name).is_none();
        if r.breaker.state() != BreakerState::Closed || !settled() {
            return Ok(None);
        }
        if r.confirmed.get(&name).is_none() {
            let head = self
                .call(&name, |s| async move { s.head(name).await })
                .await?;
            // A job queued meanwhile (a delete) wins over the answer.
            if !(head.is_some_and(|h| h.length == length) && settled()) {
                return Ok(None);
            }
            r.confirmed.insert(name, ());
        }
        presign.get_url(name, ttl).await.map(Some)
    }

    /// Drains the write-behind queue until `shutdown` resolves: up to the
    /// configured number of jobs at once, each through the breaker; a job
    /// that fails stays queued and is retried.
    pub async fn run_write_behind(self, shutdown: impl std::future::Future<Output = ()>) {
        let Some(r) = self.remote.clone() else {
            return;
        };
        tokio::pin!(shutdown);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            publish_health(&self.remote_health());
            let room = r.concurrency.saturating_sub(tasks.len());
            let state = r.breaker.state();
            let jobs = if room == 0 || state == BreakerState::Open {
                Vec::new()
            } else if state == BreakerState::HalfOpen {
                // One job is the probe.
                r.queue.take(room.min(1))
            } else {
                r.queue.take(room)
            };
            for taken in jobs {
                let this = self.clone();
                tasks.spawn(async move { this.work(taken).await });
            }
            let pause = match r.breaker.state() {
                BreakerState::Open => r.breaker.retry_in().max(Duration::from_millis(50)),
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = r.queue.wait() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        tasks.shutdown().await;
    }

    async fn work(&self, taken: Taken) {
        let r = self.remote.as_ref().expect("a remote tier");
        let outcome = match &taken.job {
            Job::Put(meta) => {
                let started = Instant::now();
                let copied = self.copy_up(taken.name, meta.clone()).await;
                if copied.is_ok() {
                    metrics::WRITE_BEHIND_UPLOAD_SECONDS.since(started);
                }
                copied
            }
            Job::Delete => self
                .call(&taken.name, |s| async move { s.delete(taken.name).await })
                .await
                .map(|_| ()),
        };
        match &outcome {
            Ok(()) => {
                if taken.job.is_put() {
                    metrics::WRITE_BEHIND_DONE.inc();
                }
            }
            Err(e) => {
                metrics::WRITE_BEHIND_FAILURES.inc();
                tracing::debug!(name = %taken.name, error = %e, "write-behind job failed; it stays queued");
            }
        }
        let queue = r.queue.clone();
        let ok = outcome.is_ok();
        let done = tokio::task::spawn_blocking(move || queue.done(&taken, ok)).await;
        if let Ok(Err(e)) | Err(e) = done
            .map_err(io::Error::other)
            .map(|r| r.map_err(io::Error::other))
        {
            tracing::warn!(error = %e, "write-behind queue");
        }
    }

    /// Copies the local blob `name` up; a blob deleted locally since is
    /// nothing to copy.
    async fn copy_up(&self, name: BlobName, meta: BlobMeta) -> io::Result<()> {
        if meta.is_link() {
            // Nothing local to copy: the object is empty, its metadata is all.
            let empty = Box::pin(futures_util::stream::empty()) as ByteStream;
            return self
                .call(
                    &name,
                    |s| async move { s.put_stream(name, empty, meta).await },
                )
                .await;
        }
        let Some(path) = self.local.local_path(name) else {
            // A local tier without files: stream it.
            let Some(body) = self.local.get(name, None).await? else {
                return Ok(());
            };
            return self
                .call(
                    &name,
                    |s| async move { s.put_stream(name, body, meta).await },
                )
                .await;
        };
        // The remote store takes the staged file over: hand it a link.
        let link = self.staging.fresh(&name.path().replace('/', "-"));
        match std::fs::hard_link(&path, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) => {
                if let Err(e) = tokio::fs::copy(&path, &link).await {
                    return if e.kind() == io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    };
                }
            }
        }
        let staged = StagedFile::new(link);
        self.call(
            &name,
            |s| async move { s.put_file(name, staged, meta).await },
        )
        .await
    }
}

fn publish_health(health: &Option<RemoteHealth>) {
    if let Some(h) = health {
        metrics::REMOTE_BREAKER_STATE.set(h.breaker.as_gauge());
        metrics::WRITE_BEHIND_DEPTH.set(h.queue_depth as u64);
        metrics::WRITE_BEHIND_AGE.set(h.queue_age);
    }
}

#[async_trait]
impl BlobStore for Tiers {
    async fn put_file(&self, name: BlobName, file: StagedFile, meta: BlobMeta) -> io::Result<()> {
        self.local.put_file(name, file, meta.clone()).await?;
        self.queue(name, Job::Put(meta)).await
    }

    async fn put_stream(&self, name: BlobName, body: ByteStream, meta: BlobMeta) -> io::Result<()> {
        self.local.put_stream(name, body, meta.clone()).await?;
        self.queue(name, Job::Put(meta)).await
    }

    async fn get(
        &self,
        name: BlobName,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<ByteStream>> {
        let started = Instant::now();
        if let Some(body) = self.local.get(name, range.clone()).await? {
            metrics::DISK_READ_SECONDS.since(started);
            return Ok(Some(body));
        }
        let started = Instant::now();
        if self.fill(name).await? {
            metrics::REMOTE_READ_SECONDS.since(started);
            return self.local.get(name, range).await;
        }
        Ok(None)
    }

    async fn head(&self, name: BlobName) -> io::Result<Option<BlobHead>> {
        if let Some(h) = self.local.head(name).await? {
            return Ok(Some(h));
        }
        self.remote_head(name).await
    }

    async fn delete(&self, name: BlobName) -> io::Result<bool> {
        let local = self.local.delete(name).await?;
        let Some(r) = &self.remote else {
            return Ok(local);
        };
        let queued_put = r.queue.put_pending(name);
        let remote = if local || queued_put {
            true
        } else {
            // Whether there was anything to delete, as far as the remote
            // tier can say now; the delete is queued either way.
            matches!(
                self.call(&name, |s| async move { s.head(name).await })
                    .await,
                Ok(Some(_)) | Err(_)
            )
        };
        self.queue(name, Job::Delete).await?;
        Ok(local || remote)
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<BlobName>> {
        let mut names = self.local.list(prefix).await?;
        if let Some(r) = &self.remote {
            let p = prefix.to_owned();
            let what = format!("list {prefix}");
            let remote = self
                .call(&what, |s| async move { s.list(&p).await })
                .await?;
            names.extend(remote.into_iter().filter(|n| !r.queue.delete_pending(*n)));
            names.sort();
            names.dedup();
        }
        Ok(names)
    }

    fn local_path(&self, name: BlobName) -> Option<PathBuf> {
        self.local.local_path(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::blob::read_all;
    use crate::store::disk::DiskStore;
    use upcache_protocol::Key;

    struct Fixture {
        _dir: tempfile::TempDir,
        tiers: Tiers,
        remote: Arc<DiskStore>,
        db: sled::Db,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let local_root = dir.path().join("local");
        let remote = Arc::new(DiskStore::open(&dir.path().join("remote")).unwrap());
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .open()
            .unwrap();
        let tiers = Tiers::with_remote(
            Arc::new(DiskStore::open(&local_root).unwrap()),
            Staging::open(&local_root).unwrap(),
            SharedClock::default(),
            RemoteTier {
                store: remote.clone(),
                breaker: BreakerSettings::default(),
                concurrency: 4,
            },
            WriteBehind::open(&db).unwrap(),
        );
        Fixture {
            _dir: dir,
            tiers,
            remote,
            db,
        }
    }

    fn bytes(n: usize) -> ByteStream {
        let body: Vec<io::Result<bytes::Bytes>> = vec![Ok(bytes::Bytes::from(vec![7u8; n]))];
        Box::pin(futures_util::stream::iter(body))
    }

    async fn drained(tiers: &Tiers) {
        for _ in 0..500 {
            if tiers.remote_health().unwrap().queue_depth == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the write-behind queue did not drain");
    }

    #[tokio::test]
    async fn writes_are_copied_up_and_reads_fill_back() {
        let f = fixture();
        let name = BlobName::Result(Key([3; 32]));
        f.tiers
            .put_stream(
                name,
                bytes(1000),
                BlobMeta::of_bytes(&[7u8; 1000], "image/png"),
            )
            .await
            .unwrap();
        assert!(f.tiers.only_local(name), "queued until copied up");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(f.tiers.clone().run_write_behind(async {
            let _ = stopped.await;
        }));
        drained(&f.tiers).await;
        assert!(!f.tiers.only_local(name));
        assert_eq!(f.remote.head(name).await.unwrap().unwrap().length, 1000);

        // Gone from the local tier (evicted): a read fills it back.
        f.tiers.local.delete(name).await.unwrap();
        let body = f.tiers.get(name, Some(10..20)).await.unwrap().unwrap();
        assert_eq!(read_all(body).await.unwrap(), vec![7u8; 10]);
        assert!(
            f.tiers.local.head(name).await.unwrap().is_some(),
            "filled back"
        );

        // A delete reaches the remote tier, and nothing reads it back meanwhile.
        assert!(f.tiers.delete(name).await.unwrap());
        assert!(f.tiers.get(name, None).await.unwrap().is_none());
        drained(&f.tiers).await;
        assert!(f.remote.head(name).await.unwrap().is_none());
        stop.send(()).unwrap();
        worker.await.unwrap();
    }

    #[tokio::test]
    async fn the_tiers_conform() {
        let f = fixture();
        let staging = Staging::open(&f._dir.path().join("local")).unwrap();
        crate::store::conformance::check(&f.tiers, &staging).await;
    }

    #[tokio::test]
    async fn a_restart_resumes_the_queue() {
        let f = fixture();
        let name = BlobName::Result(Key([4; 32]));
        f.tiers
            .put_stream(name, bytes(10), BlobMeta::of_bytes(&[7u8; 10], "image/png"))
            .await
            .unwrap();
        // The process dies before the worker ran: the queue is on disk.
        let reopened = WriteBehind::open(&f.db).unwrap();
        assert!(reopened.put_pending(name));
    }
}
