//! The records stored in the metadata trees, and their encodings. Every
//! record carries a format version, checked when it is read.

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use upcache_protocol::{Digest, InputHash, Problem, ProblemType, State};

use super::meta::MetaError;

type Result<T, E = MetaError> = std::result::Result<T, E>;

/// Where a result's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobRef {
    /// The stored input itself (identity).
    Input,
    /// A result file of its own.
    Result,
}

/// A complete result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub blake3: InputHash,
    pub length: u64,
    pub content_type: String,
    pub blob: BlobRef,
}

/// Why an entry failed, as stored: the kind of problem (its slug), the
/// detail and any extension members. Not the wire document: the URIs,
/// titles and statuses of problems can change without touching a stored
/// record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: ProblemType,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub members: Map<String, Value>,
}

impl Failure {
    /// What is kept of a problem. A type that is not one of ours (none is
    /// ever stored) is kept as an operation failure.
    pub fn from_problem(p: &Problem) -> Self {
        Self {
            kind: p.kind().unwrap_or(ProblemType::OperationFailed),
            detail: p.detail.clone().unwrap_or_default(),
            members: p.extensions.clone(),
        }
    }

    /// The problem document it is answered with.
    pub fn to_problem(&self) -> Problem {
        let mut p = Problem::new(self.kind, self.detail.clone());
        p.extensions = self.members.clone();
        p
    }
}

fn current_format() -> u8 {
    ENTRY_FORMAT
}

/// Format 1 (release 0.1) stored an entry's failure as the wire problem
/// document; format 2 stores a [`Failure`].
const ENTRY_FORMAT: u8 = 2;

/// One (input, operation) entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryRecord {
    /// Format version of this record.
    pub fv: u8,
    /// The format it was read in.
    #[serde(skip, default = "current_format")]
    pub fv_read: u8,
    pub state: State,
    pub input: InputHash,
    pub length: u64,
    /// Canonical JSON of the normalized operation.
    pub operation: String,
    pub block_size: u64,
    pub created: u64,
    pub updated: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// Wire digest of the input's blocks, once the input is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl EntryRecord {
    /// A new entry in `state`.
    pub fn new(
        state: State,
        input: InputHash,
        length: u64,
        operation: String,
        block_size: u64,
    ) -> Self {
        let now = super::now();
        Self {
            fv: ENTRY_FORMAT,
            fv_read: ENTRY_FORMAT,
            state,
            input,
            length,
            operation,
            block_size,
            created: now,
            updated: now,
            result: None,
            error: None,
            digest: None,
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("entry records serialize")
    }

    /// Decodes a record of the current format, or of format 1 (migrated on
    /// the way: see [`EntryRecord::is_current`]).
    pub(super) fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = |e: serde_json::Error| MetaError::Corrupt(format!("entry record: {e}"));
        let mut raw: Map<String, Value> = serde_json::from_slice(bytes).map_err(corrupt)?;
        match raw.get("fv").and_then(Value::as_u64) {
            Some(1) => {
                if let Some(error) = raw.remove("error") {
                    let problem: Problem = serde_json::from_value(error).map_err(corrupt)?;
                    raw.insert(
                        "error".into(),
                        serde_json::to_value(Failure::from_problem(&problem)).map_err(corrupt)?,
                    );
                }
            }
            Some(fv) if fv == u64::from(ENTRY_FORMAT) => {}
            other => {
                return Err(MetaError::Corrupt(format!(
                    "entry format {other:?} is not known"
                )))
            }
        }
        let mut rec: Self = serde_json::from_value(Value::Object(raw)).map_err(corrupt)?;
        rec.fv_read = rec.fv;
        rec.fv = ENTRY_FORMAT;
        Ok(rec)
    }

    /// Whether the record was stored in the current format (else it is
    /// written again by the migration at start-up).
    pub fn is_current(&self) -> bool {
        self.fv_read == ENTRY_FORMAT
    }
}

/// Upload records are format 2: no digest. Format 1 (release 0.1 up to
/// this change) carried the 2 KiB digest inline, rewritten with every
/// commit and tail; it still decodes (the inline digest is ignored: the
/// digest is derived from the chaining values, see [`super::meta`]).
const UPLOAD_FORMAT: u8 = 2;
const UPLOAD_FORMAT_1: u8 = 1;
const UPLOAD_HEADER: usize = 1 + 8 + 8 + 8 + 8;
const UPLOAD_HEADER_1: usize = UPLOAD_HEADER + upcache_protocol::digest::LANES * 2;

/// The durable progress of one upload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadRecord {
    /// Blocks whose bytes and chaining value are durable.
    pub received: RoaringBitmap,
    /// Commutative digest of the received blocks. Not stored: derived from
    /// their chaining values when the record is read through [`super::meta::Meta`].
    pub digest: Digest,
    /// A durable partial block written by a sequential append: (block, bytes).
    pub tail: Option<(u64, u64)>,
    /// Last change, seconds since the epoch (for expiry).
    pub touched: u64,
    /// Random per upload: a writer that started on an upload which was since
    /// deleted and created again must not commit into the new one.
    pub epoch: u64,
}

impl UploadRecord {
    /// The stored form: everything but the digest.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(UPLOAD_HEADER + self.received.serialized_size());
        out.push(UPLOAD_FORMAT);
        out.extend_from_slice(&self.touched.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        let (tb, tl) = self.tail.unwrap_or((0, 0));
        out.extend_from_slice(&tb.to_le_bytes());
        out.extend_from_slice(&tl.to_le_bytes());
        self.received
            .serialize_into(&mut out)
            .expect("writing to a Vec");
        out
    }

    /// A stored record, of either format; its digest is left empty.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = |what: &str| MetaError::Corrupt(format!("upload record: {what}"));
        let header = match bytes.first() {
            Some(&UPLOAD_FORMAT) => UPLOAD_HEADER,
            Some(&UPLOAD_FORMAT_1) => UPLOAD_HEADER_1,
            _ => return Err(corrupt("unknown format")),
        };
        if bytes.len() < header {
            return Err(corrupt("too short"));
        }
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let (touched, epoch, tb, tl) = (u64_at(1), u64_at(9), u64_at(17), u64_at(25));
        let received =
            RoaringBitmap::deserialize_from(&bytes[header..]).map_err(|_| corrupt("bitmap"))?;
        Ok(Self {
            received,
            digest: Digest::default(),
            tail: (tl > 0).then_some((tb, tl)),
            touched,
            epoch,
        })
    }

    /// A new, empty upload record, made at `now`.
    pub fn fresh(now: u64) -> Self {
        Self {
            touched: now,
            epoch: new_epoch(),
            ..Default::default()
        }
    }

    /// Number of blocks at the start that are all received.
    pub fn prefix(&self) -> u64 {
        self.received
            .iter()
            .enumerate()
            .take_while(|(i, n)| *i as u64 == *n as u64)
            .count() as u64
    }
}

/// A stored, verified input: its length, the block size it was uploaded
/// with and the wire digest of its blocks. Encoded as
/// `length (u64 BE) ‖ block_size (u64 BE) ‖ digest (32 bytes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputRecord {
    pub length: u64,
    pub block_size: u64,
    pub digest: [u8; 32],
}

const INPUT_FILE_FORMAT: u8 = 1;

impl InputRecord {
    pub(super) fn encode(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..8].copy_from_slice(&self.length.to_be_bytes());
        out[8..16].copy_from_slice(&self.block_size.to_be_bytes());
        out[16..].copy_from_slice(&self.digest);
        out
    }

    /// The record as kept beside its input: a format byte, then [`Self::encode`].
    pub(super) fn encode_file(&self) -> Vec<u8> {
        let mut out = vec![INPUT_FILE_FORMAT];
        out.extend_from_slice(&self.encode());
        out
    }

    pub(super) fn decode_file(bytes: &[u8]) -> Option<Self> {
        match bytes.split_first() {
            Some((&INPUT_FILE_FORMAT, rest)) => Self::decode(rest).ok(),
            _ => None,
        }
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self> {
        let b: &[u8; 48] = bytes
            .try_into()
            .map_err(|_| MetaError::Corrupt("input record".into()))?;
        Ok(Self {
            length: u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            block_size: u64::from_be_bytes(b[8..16].try_into().expect("8 bytes")),
            digest: b[16..].try_into().expect("32 bytes"),
        })
    }
}

fn new_epoch() -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(&format!("{:?}", std::time::SystemTime::now()).into_bytes());
    h.update(&format!("{:?}", std::thread::current().id()).into_bytes());
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    h.update(
        &COUNTER
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

const FILE_FORMAT: u8 = 1;

/// How a file upload takes part in concatenation (tus `Upload-Concat`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "parts")]
pub enum Concat {
    /// An ordinary upload.
    #[default]
    None,
    /// A part of a later final upload: it completes without becoming an input.
    Partial,
    /// Assembled from these partial uploads, in order.
    Final(Vec<upcache_protocol::Key>),
}

/// Where a file upload stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum FileState {
    /// Taking bytes (a final upload: being assembled); once every byte is in
    /// and hashed (`input` set), being bound to its entry.
    Receiving,
    /// Complete. A partial upload keeps its bytes in staging for its final
    /// uploads (no key); any other is bound to the entry under `key`.
    Done {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<upcache_protocol::Key>,
    },
    /// Expired: its bytes are gone; kept a while so requests get `410`.
    Expired,
}

/// An upload created without a key (the tus front end): it has an id, and
/// learns its input hash — hence its key — only when its last byte is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Format version of this record.
    pub fv: u8,
    /// `None` until the client says (tus `Upload-Defer-Length`).
    pub length: Option<u64>,
    pub block_size: u64,
    /// Canonical JSON of the normalized operation run on completion.
    pub operation: String,
    /// The client's metadata, as sent (tus `Upload-Metadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    #[serde(default)]
    pub concat: Concat,
    pub created: u64,
    /// Last change, seconds since the epoch (for expiry).
    pub touched: u64,
    /// The BLAKE3 of the bytes, once they are all in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputHash>,
    pub state: FileState,
}

impl FileRecord {
    /// A new upload taking bytes.
    pub fn new(
        length: Option<u64>,
        block_size: u64,
        operation: String,
        metadata: Option<String>,
        concat: Concat,
    ) -> Self {
        let now = super::now();
        Self {
            fv: FILE_FORMAT,
            length,
            block_size,
            operation,
            metadata,
            concat,
            created: now,
            touched: now,
            input: None,
            state: FileState::Receiving,
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("file records serialize")
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self> {
        let rec: Self =
            serde_json::from_slice(bytes).map_err(|e| MetaError::Corrupt(e.to_string()))?;
        if rec.fv != FILE_FORMAT {
            return Err(MetaError::Corrupt(format!(
                "file format {} is not known",
                rec.fv
            )));
        }
        Ok(rec)
    }
}
