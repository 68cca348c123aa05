//! Storage. None of it knows about HTTP.
//!
//! * [`blob`] — the [`blob::BlobStore`] trait all blob bytes go through, and
//!   its capability traits; [`disk`] is its first implementation,
//!   [`memory`] the bounded memory tier, and [`conformance`] the suite
//!   every implementation passes.
//! * [`staging`] — local files uploads and operation outputs are written to
//!   before they are published to the blob store.
//! * [`catalog`] — what is known of each stored input.
//! * [`meta`] — the sled metadata schema, and [`records`] its records.
//! * [`space`] — the room sled keeps for itself on a full disk.

pub mod blob;
pub mod catalog;
pub mod conformance;
pub mod disk;
pub mod memory;
pub mod meta;
pub mod records;
pub mod space;
pub mod staging;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
