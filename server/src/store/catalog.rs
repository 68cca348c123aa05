//! What is known of each stored input — its length, the block size it was
//! uploaded with and the wire digest of its blocks — kept beside the input
//! in the disk store: `<data>/inputs/<blake3>.rec`, an
//! [`InputRecord`] with a format byte first.
//!
//! The records live beside the inputs rather than in the metadata database:
//! they only ever accumulate, and sled 0.34 reclaims none of the space of a
//! tree that keeps growing among trees that churn (a few KiB of database per
//! new input, measured by `benches/soak.sh`).

use std::fs;
use std::io;
use std::path::PathBuf;

use upcache_protocol::InputHash;

use super::disk::write_durably;
use super::records::InputRecord;
use super::staging::Staging;

/// The input records.
#[derive(Debug, Clone)]
pub struct InputCatalog {
    inputs: PathBuf,
    staging: Staging,
}

impl InputCatalog {
    /// The records beside the inputs of the disk store under `root`.
    pub fn open(root: &std::path::Path, staging: Staging) -> io::Result<Self> {
        let inputs = root.join("inputs");
        fs::create_dir_all(&inputs)?;
        Ok(Self { inputs, staging })
    }

    fn record_path(&self, hash: &InputHash) -> PathBuf {
        self.inputs.join(format!("{}.rec", hash.to_hex()))
    }

    /// The record of a stored input: `None` unless both the input and its
    /// record are there. Blocking.
    pub fn get(&self, hash: &InputHash) -> io::Result<Option<InputRecord>> {
        let bytes = match fs::read(self.record_path(hash)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !self.inputs.join(hash.to_hex()).exists() {
            return Ok(None);
        }
        InputRecord::decode_file(&bytes)
            .map(Some)
            .ok_or_else(|| io::Error::other(format!("corrupt input record of {hash}")))
    }

    /// Removes the record of an input, if any. Blocking.
    pub fn remove(&self, hash: &InputHash) -> io::Result<()> {
        match fs::remove_file(self.record_path(hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Records what is known of a stored input, durably. Blocking.
    pub fn put(&self, hash: &InputHash, rec: &InputRecord) -> io::Result<()> {
        let tmp = self.staging.fresh(&format!("{}.rec", hash.to_hex()));
        write_durably(&tmp, &self.record_path(hash), &rec.encode_file())
    }
}
