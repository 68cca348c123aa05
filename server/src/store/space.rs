//! Room for the metadata database on a full disk.
//!
//! sled 0.34 does not survive its own `ENOSPC`: the first log write that
//! fails sets a global error, and from then on every write and flush of that
//! database fails until it is opened again — a restart. Reads keep working.
//! So sled must never be the one to find the disk full.
//!
//! sled writes its log into one file, `<db>/db`, which grows at its end. A
//! [`Room`] keeps [`RESERVE`] bytes allocated past that end with
//! `fallocate(FALLOC_FL_KEEP_SIZE)`: the file's length is unchanged (sled
//! sees nothing), but the blocks are the file's, so sled's next writes land
//! in them whatever else fills the disk. Before each metadata write the
//! caller asks [`Room::check`]; when less than [`LOW_WATER`] is left the
//! reserve is topped up, and if the disk has no room for that the write is
//! refused (and answered `507`) before sled sees it. What sled may still
//! write on its own — the log buffer of writes already made, at most one
//! segment — fits in the low-water mark.
//!
//! Where the filesystem has no `fallocate` there is no reserve, and no
//! refusal either: sled then meets a full disk as it would without us.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes kept allocated past the end of sled's log file.
pub const RESERVE: u64 = 4 << 20;
/// Below this many reserved bytes, metadata writes need a top-up first. Two
/// of sled's 512 KiB segments: the buffer it may write out by itself, and
/// slack.
pub const LOW_WATER: u64 = 1 << 20;

/// Whether an I/O error says the disk (or the quota) is full.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
}

/// The space reserved for sled's log file.
pub struct Room {
    file: Option<File>,
    /// Cleared when the filesystem cannot preallocate: nothing to check then.
    supported: AtomicBool,
}

impl Room {
    /// Reserves room for the log file `path` (sled's `<db>/db`). A disk
    /// already full is not an error here: writes are refused until there
    /// is room. Blocking.
    pub fn open(path: &Path) -> Self {
        let file = match File::options().write(true).open(path) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot reserve room for the metadata log");
                None
            }
        };
        let room = Self {
            supported: AtomicBool::new(file.is_some()),
            file,
        };
        if let Err(e) = room.check() {
            tracing::warn!(error = %e, "no room reserved for the metadata log yet");
        }
        room
    }

    /// Makes sure there is room for a metadata write: `Err` (`ENOSPC`) if
    /// the reserve is low and the disk has no room to refill it — and only
    /// then: a reserve that cannot be checked never stops a write. Blocking
    /// (an `fstat`, and now and then an `fallocate`).
    pub fn check(&self) -> io::Result<()> {
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        if !self.supported.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Ok(meta) = file.metadata() else {
            return Ok(());
        };
        // Allocated bytes past the length: the reserve. A hole inside the
        // file makes this an underestimate, so at worst it tops up early.
        let reserved = (meta.blocks() * 512).saturating_sub(meta.len());
        if reserved >= LOW_WATER {
            return Ok(());
        }
        match preallocate(file, meta.len(), RESERVE) {
            Ok(()) => Ok(()),
            Err(e) if is_no_space(&e) => Err(e),
            // EOPNOTSUPP, mostly: a filesystem without fallocate.
            Err(e) => {
                tracing::warn!(error = %e, "cannot reserve room for the metadata log; a full disk will need a restart");
                self.supported.store(false, Ordering::Relaxed);
                Ok(())
            }
        }
    }
}

/// Allocates `len` bytes from `offset` without changing the file's length.
fn preallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: a valid open descriptor; fallocate only changes the file's allocation.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_allocated_past_the_end_and_topped_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, b"log").unwrap();
        let room = Room::open(&path);
        room.check().unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 3, "the length sled sees is unchanged");
        if !room.supported.load(Ordering::Relaxed) {
            return; // no fallocate here: nothing more to see
        }
        assert!(meta.blocks() * 512 >= RESERVE, "the reserve is allocated");
        // sled's log grows into the reserve; below the low-water mark a
        // check allocates a fresh reserve past the new end.
        let grown = RESERVE - LOW_WATER / 2;
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(grown)
            .unwrap();
        room.check().unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), grown);
        assert!(meta.blocks() * 512 >= grown + RESERVE - 4096);
    }
}
