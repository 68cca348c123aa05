//! Blob files on local disk.
//!
//! # Layout
//!
//! ```text
//! <data>/staging/<upload id>   sparse file of an upload in progress, one per upload
//! <data>/inputs/<blake3>       verified inputs, content-addressed
//! <data>/inputs/<blake3>.rec   what is known of it: length, block size, digest
//!                              (an `InputRecord`, format byte first)
//! <data>/results/<key>         results of operations (identity results are the input file)
//! <data>/tmp/                  results being written; swept at start-up
//! ```
//!
//! Every file that is published under a name was written to a temporary name,
//! fsynced, renamed, and its directory fsynced, so a crash leaves either the
//! old state or the whole new file — never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use upcache_protocol::{InputHash, Key};

use super::records::InputRecord;

/// The blob directories under the data directory.
#[derive(Debug, Clone)]
pub struct Blobs {
    staging: PathBuf,
    inputs: PathBuf,
    results: PathBuf,
    tmp: PathBuf,
}

/// Fsyncs a directory so that a rename or unlink in it is durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Deletes a temporary file unless it was published.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
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

impl Blobs {
    /// Creates the directories and empties `tmp/` (left-overs of a crash).
    pub fn open(root: &Path) -> io::Result<Self> {
        let b = Self {
            staging: root.join("staging"),
            inputs: root.join("inputs"),
            results: root.join("results"),
            tmp: root.join("tmp"),
        };
        for dir in [&b.staging, &b.inputs, &b.results, &b.tmp] {
            fs::create_dir_all(dir)?;
        }
        for entry in fs::read_dir(&b.tmp)? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(b)
    }

    pub fn staging_path(&self, id: &Key) -> PathBuf {
        self.staging.join(id.to_hex())
    }

    pub fn input_path(&self, hash: &InputHash) -> PathBuf {
        self.inputs.join(hash.to_hex())
    }

    pub fn result_path(&self, key: &Key) -> PathBuf {
        self.results.join(key.to_hex())
    }

    /// Opens an upload's staging file for reading and writing, creating it as
    /// a sparse file of `length` bytes. Blocking.
    pub fn open_staging(&self, id: &Key, length: u64) -> io::Result<File> {
        let path = self.staging_path(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if file.metadata()?.len() != length {
            file.set_len(length)?;
        }
        Ok(file)
    }

    /// A second descriptor of an upload's staging file, for direct writes.
    pub fn open_staging_direct(&self, id: &Key) -> Option<File> {
        open_direct(&self.staging_path(id))
    }

    /// Publishes a verified staging file as the input `hash`. The staging
    /// file's blocks were fsynced when they were acknowledged; the rename and
    /// the directory fsync make the new name durable. If the input is already
    /// stored, the staging file is simply removed. Blocking.
    pub fn promote_staging(&self, id: &Key, hash: &InputHash) -> io::Result<()> {
        let from = self.staging_path(id);
        let to = self.input_path(hash);
        if to.exists() {
            return self.remove_staging(id);
        }
        fs::rename(&from, &to)?;
        sync_dir(&self.inputs)?;
        sync_dir(&self.staging)
    }

    fn input_record_path(&self, hash: &InputHash) -> PathBuf {
        self.inputs.join(format!("{}.rec", hash.to_hex()))
    }

    /// The record of a stored input: `None` unless both the input and its
    /// record are there. Blocking.
    ///
    /// Input records live beside the inputs rather than in the metadata
    /// database: they only ever accumulate, and sled 0.34 reclaims none of
    /// the space of a tree that keeps growing among trees that churn (a few
    /// KiB of database per new input, measured by `benches/soak.sh`).
    pub fn input_record(&self, hash: &InputHash) -> io::Result<Option<InputRecord>> {
        let bytes = match fs::read(self.input_record_path(hash)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !self.input_path(hash).exists() {
            return Ok(None);
        }
        InputRecord::decode_file(&bytes)
            .map(Some)
            .ok_or_else(|| io::Error::other(format!("corrupt input record of {hash}")))
    }

    /// Records what is known of a stored input (temp file, fsync, rename,
    /// directory fsync). Blocking.
    pub fn put_input_record(&self, hash: &InputHash, rec: &InputRecord) -> io::Result<()> {
        let tmp = self
            .tmp
            .join(format!("{}.rec.{}", hash.to_hex(), std::process::id()));
        let mut guard = TempGuard(Some(tmp.clone()));
        let mut f = File::create(&tmp)?;
        f.write_all(&rec.encode_file())?;
        f.sync_all()?;
        fs::rename(&tmp, self.input_record_path(hash))?;
        guard.0 = None;
        sync_dir(&self.inputs)
    }

    /// Forgets an input's record (its bytes are gone or unusable). Blocking.
    pub fn remove_input_record(&self, hash: &InputHash) -> io::Result<()> {
        match fs::remove_file(self.input_record_path(hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes an upload's staging file, if any. Blocking.
    pub fn remove_staging(&self, id: &Key) -> io::Result<()> {
        match fs::remove_file(self.staging_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Durably writes a result: temp file, fsync (the bytes), rename (publish
    /// whole), directory fsync (the name). Blocking.
    pub fn write_result(&self, key: &Key, bytes: &[u8]) -> io::Result<()> {
        let tmp = self
            .tmp
            .join(format!("{}.{}", key.to_hex(), std::process::id()));
        let mut guard = TempGuard(Some(tmp.clone()));
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, self.result_path(key))?;
        guard.0 = None;
        sync_dir(&self.results)
    }

    /// A fresh temporary path for a result being written by a worker (in
    /// `tmp/`, swept at start-up if left behind).
    pub fn temp_path(&self, key: &Key) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tmp
            .join(format!("{}.{}.{n}", key.to_hex(), std::process::id()))
    }

    /// Publishes `written` (a synced file under [`Blobs::temp_path`]) as the
    /// result of `key`. Blocking.
    pub fn publish_result(&self, key: &Key, written: &Path) -> io::Result<()> {
        let _guard = TempGuard(Some(written.to_owned()));
        fs::rename(written, self.result_path(key))?;
        // The rename is durable once the directory is.
        sync_dir(&self.results)
    }

    /// Removes a result file, if any. Blocking.
    pub fn remove_result(&self, key: &Key) -> io::Result<()> {
        match fs::remove_file(self.result_path(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_promotes_to_a_content_addressed_input() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path()).unwrap();
        let id = Key([7; 32]);
        let f = b.open_staging(&id, 10).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 10);
        let h = InputHash::of(b"0123456789");
        b.promote_staging(&id, &h).unwrap();
        assert!(b.input_path(&h).exists());
        assert!(!b.staging_path(&id).exists());
        // A second upload of the same input just goes away.
        b.open_staging(&id, 10).unwrap();
        b.promote_staging(&id, &h).unwrap();
        assert!(!b.staging_path(&id).exists());
    }

    #[test]
    fn results_are_published_whole_and_tmp_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path()).unwrap();
        b.write_result(&Key([1; 32]), b"out").unwrap();
        assert_eq!(fs::read(b.result_path(&Key([1; 32]))).unwrap(), b"out");
        fs::write(dir.path().join("tmp/leftover"), b"x").unwrap();
        Blobs::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
