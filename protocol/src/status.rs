//! Bodies of the `/v1` API: the create request and the status document.

use serde::{Deserialize, Serialize};

use crate::key::{InputHash, Key};
use crate::problem::Problem;

/// An entry's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Uploading,
    Processing,
    Complete,
    Failed,
}

impl State {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Processing => "processing",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }
}

/// The input an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    pub blake3: InputHash,
    pub length: u64,
}

/// `POST /v1/ops` body. Unknown members are refused at every level, the
/// `input` object included (§7.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    #[serde(deserialize_with = "strict_input")]
    pub input: InputRef,
    pub operation: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u64>,
}

/// `input` of a create request: an [`InputRef`] with no other member. (The
/// `input` of a status document stays open to members a later server adds.)
fn strict_input<'de, D: serde::Deserializer<'de>>(d: D) -> Result<InputRef, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        blake3: InputHash,
        length: u64,
    }
    let Strict { blake3, length } = Strict::deserialize(d)?;
    Ok(InputRef { blake3, length })
}

/// Where a complete result is and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultInfo {
    /// Path of the result, relative to the server (`/v1/ops/{key}/result`).
    pub url: String,
    pub length: u64,
    pub content_type: String,
    pub blake3: InputHash,
}

/// The status document of an entry (`POST /v1/ops`, `GET /v1/ops/{key}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub key: Key,
    pub state: State,
    pub input: InputRef,
    /// The normalized operation: exactly the object the key was derived from.
    pub operation: serde_json::Value,
    pub block_size: u64,
    pub blocks_total: u64,
    pub blocks_received: u64,
    /// Missing blocks as ranges (`0-3,7`); empty when none are missing.
    pub missing: String,
    /// Bytes received contiguously from the start of the input.
    pub offset: u64,
    /// Commutative digest of the received blocks (hex).
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// Path of an entry.
pub fn entry_path(key: &Key) -> String {
    format!("/v1/ops/{key}")
}

/// Path of an entry's result.
pub fn result_path(key: &Key) -> String {
    format!("/v1/ops/{key}/result")
}

/// Path of one block of an entry's upload.
pub fn block_path(key: &Key, n: u64) -> String {
    format!("/v1/ops/{key}/blocks/{n}")
}

/// Path of the create call.
pub const OPS_PATH: &str = "/v1/ops";
