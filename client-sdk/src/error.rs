//! The SDK's error: what went wrong, the server's problem details when it
//! answered with one, and whether trying again can help.

use std::time::Duration;

use upcache_protocol::headers::OperationHeaderError;
use upcache_protocol::{OperationError, Problem, ProblemType};

/// Everything a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a problem document (RFC 9457).
    #[error("the server answered {status}: {problem}")]
    Problem {
        /// The HTTP status of the answer.
        status: u16,
        /// The problem document.
        problem: Box<Problem>,
    },
    /// The connection failed: refused, reset, closed early, timed out.
    #[error("network: {0}")]
    Network(String),
    /// An upload made no progress for this long and was abandoned.
    #[error("the transfer stalled for {0:?}")]
    Stalled(Duration),
    /// A local file could not be read or written.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The operation is not valid (checked before anything is sent).
    #[error("invalid operation: {0}")]
    Operation(#[from] OperationError),
    /// The server's answer did not follow the protocol.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The downloaded result did not hash to the result's BLAKE3.
    #[error("the downloaded result is corrupt (BLAKE3 {got}, expected {expected})")]
    CorruptResult {
        /// The result's BLAKE3 as the server announced it (hex).
        expected: String,
        /// The BLAKE3 of what arrived (hex).
        got: String,
    },
    /// Retrying stopped: too many failures in a row, or too long without progress.
    #[error("gave up after {attempts} failed attempts in {elapsed:?}; last error: {last}")]
    GaveUp {
        /// Failed attempts in a row.
        attempts: u32,
        /// Time since the last progress.
        elapsed: Duration,
        /// The last failure.
        last: Box<Error>,
    },
}

impl Error {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Network(_) | Self::Stalled(_) => true,
            // An upload larger than the server's disk cap never fits.
            Self::Problem { problem, .. }
                if problem.kind() == Some(ProblemType::DiskCapExceeded)
                    && problem.extensions.get("length").and_then(|v| v.as_u64())
                        > problem.extensions.get("cap").and_then(|v| v.as_u64()) =>
            {
                false
            }
            Self::Problem { status, problem } => {
                *status >= 500
                    || *status == 408
                    || *status == 429
                    || matches!(
                        problem.kind(),
                        // Another request holds the bytes for a moment; a block
                        // corrupted on the way is sent again, and so is one cut
                        // short on the way (the SDK always sends a block's exact
                        // length, so a short body is the network's doing: e.g. a
                        // connection closed toward the server mid-body, which
                        // the server can still answer).
                        Some(
                            ProblemType::UploadBusy
                                | ProblemType::BlockHashMismatch
                                | ProblemType::BlockLengthMismatch
                        )
                    )
            }
            Self::CorruptResult { .. } => true,
            Self::Io(_) | Self::Operation(_) | Self::Protocol(_) | Self::GaveUp { .. } => false,
        }
    }

    /// The server's problem details, if it sent any.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Problem { problem, .. } => Some(problem),
            Self::GaveUp { last, .. } => last.problem(),
            _ => None,
        }
    }

    /// Whether the failure is the network's (as opposed to the server's refusal
    /// or a local problem) — the CLI maps this to its own exit code.
    pub fn is_network(&self) -> bool {
        match self {
            Self::Network(_) | Self::Stalled(_) => true,
            Self::GaveUp { last, .. } => last.is_network(),
            _ => false,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        // Include the source chain: "error sending request" alone says little.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        Self::Network(text)
    }
}

impl From<OperationHeaderError> for Error {
    fn from(e: OperationHeaderError) -> Self {
        match e {
            OperationHeaderError::Operation(e) => Self::Operation(e),
            other => Self::Protocol(other.to_string()),
        }
    }
}

/// Shorthand for SDK results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: ProblemType) -> Error {
        Error::Problem {
            status: kind.status(),
            problem: Box::new(Problem::new(kind, "x")),
        }
    }

    #[test]
    fn retryable_classification() {
        assert!(Error::Network("reset".into()).is_retryable());
        assert!(Error::Stalled(Duration::from_secs(1)).is_retryable());
        assert!(problem(ProblemType::Internal).is_retryable());
        assert!(problem(ProblemType::UploadBusy).is_retryable());
        assert!(problem(ProblemType::BlockHashMismatch).is_retryable());
        assert!(problem(ProblemType::BlockLengthMismatch).is_retryable());
        assert!(!problem(ProblemType::BodyLengthMismatch).is_retryable());
        assert!(!problem(ProblemType::InvalidOperation).is_retryable());
        assert!(!problem(ProblemType::InputHashMismatch).is_retryable());
        assert!(!problem(ProblemType::InputTooLarge).is_retryable());
        let gave_up = Error::GaveUp {
            attempts: 3,
            elapsed: Duration::ZERO,
            last: Box::new(Error::Network("x".into())),
        };
        assert!(!gave_up.is_retryable() && gave_up.is_network());
    }
}
