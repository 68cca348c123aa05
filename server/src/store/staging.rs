//! Staging: the local files uploads are written into before their bytes are
//! verified and handed to the blob store, and the files operations write
//! their output to.
//!
//! ```text
//! <data>/staging/<upload id>   sparse file of an upload in progress
//! <data>/staging/out/          outputs of operations being written; swept at start-up
//! ```

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use upcache_protocol::Key;

use super::blob::StagedFile;

/// The staging directories.
#[derive(Debug, Clone)]
pub struct Staging {
    dir: PathBuf,
    out: PathBuf,
}

/// Opens `path` for writing with `O_DIRECT`, if the filesystem allows it
/// (tmpfs, for one, does not). Blocking.
pub fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

impl Staging {
    /// Creates the directories and empties `out/` (left-overs of a crash).
    /// Blocking.
    pub fn open(root: &Path) -> io::Result<Self> {
        let s = Self {
            dir: root.join("staging"),
            out: root.join("staging").join("out"),
        };
        fs::create_dir_all(&s.out)?;
        for entry in fs::read_dir(&s.out)? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(s)
    }

    /// The staging file of upload `id`.
    pub fn path(&self, id: &Key) -> PathBuf {
        self.dir.join(id.to_hex())
    }

    /// Opens an upload's staging file for reading and writing, creating it as
    /// a sparse file of `length` bytes. Blocking.
    pub fn open_file(&self, id: &Key, length: u64) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path(id))?;
        if file.metadata()?.len() != length {
            file.set_len(length)?;
        }
        Ok(file)
    }

    /// A second descriptor of an upload's staging file, for direct writes.
    pub fn open_direct(&self, id: &Key) -> Option<File> {
        open_direct(&self.path(id))
    }

    /// Hands upload `id`'s staging file over for publication, making sure it
    /// exists with `length` bytes (an empty input has no staged block).
    /// Blocking.
    pub fn take(&self, id: &Key, length: u64) -> io::Result<StagedFile> {
        self.open_file(id, length)?;
        Ok(StagedFile::new(self.path(id)))
    }

    /// Removes an upload's staging file, if any. Blocking.
    pub fn remove(&self, id: &Key) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// A fresh path for an operation's output for entry `key`; the file is
    /// deleted when the returned guard is dropped unless it was published.
    pub fn output(&self, key: &Key) -> StagedFile {
        StagedFile::new(self.fresh(&key.to_hex()))
    }

    /// A fresh path in `out/` named after `what`.
    pub(crate) fn fresh(&self, what: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.out.join(format!("{what}.{}.{n}", std::process::id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_files_are_sparse_and_outputs_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Staging::open(dir.path()).unwrap();
        let id = Key([7; 32]);
        let f = s.open_file(&id, 10).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 10);
        let staged = s.take(&id, 10).unwrap();
        assert_eq!(staged.path(), s.path(&id));
        drop(staged);
        assert!(
            !s.path(&id).exists(),
            "an unpublished staged file is deleted"
        );
        let out = s.output(&id).into_path();
        fs::write(&out, b"x").unwrap();
        Staging::open(dir.path()).unwrap();
        assert!(!out.exists());
    }
}
