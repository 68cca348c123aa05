//! Storage: the metadata schema in sled ([`meta`]) and the blob files on disk ([`blob`]),
//! and the room sled keeps for itself on a full disk ([`space`]). None knows about HTTP.

pub mod blob;
pub mod meta;
pub mod records;
pub mod space;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
