//! Storage. None of it knows about HTTP.
//!
//! * [`blob`] — the [`blob::BlobStore`] trait all blob bytes go through, and
//!   its capability traits; [`disk`] (files under the data directory) and
//!   [`s3`] (objects in a bucket, `spec/s3-objects.md`) and [`memory`]
//!   (the bounded memory tier) implement it, and
//!   [`conformance`] is the suite every implementation passes.
//! * [`cap`] — the disk cap: accounting, reservations, leases and the
//!   least-recently-used order with its evictor; [`capped`] is the blob
//!   store wrapper that keeps its books.
//! * [`deadlines`] — the index of time-to-live deadlines the expiry sweeper
//!   walks.
//! * [`staging`] — local files uploads and operation outputs are written to
//!   before they are published to the blob store.
//! * [`catalog`] — what is known of each stored input.
//! * [`meta`] — the sled metadata schema, and [`records`] its records.
//! * [`space`] — the room sled keeps for itself on a full disk.
//! * [`tiers`] — the local tier and an optional remote one as one store:
//!   read-through with fill-back, writes copied up by the durable
//!   [`write_behind`] queue, remote calls guarded by a [`breaker`].

pub mod blob;
pub mod breaker;
pub mod cap;
pub mod capped;
pub mod catalog;
pub mod conformance;
pub mod deadlines;
pub mod disk;
pub mod memory;
pub mod meta;
pub mod records;
pub mod s3;
pub mod space;
pub mod staging;
pub mod tiers;
pub mod write_behind;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
