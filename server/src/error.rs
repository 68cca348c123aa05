//! The domain error: a problem to show the client, or an internal failure
//! whose details are logged but not exposed.

use upcache_protocol::{Problem, ProblemType};

/// A failed domain call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's request cannot be served as asked.
    #[error("{0}")]
    Problem(Box<Problem>),
    /// Something broke on our side.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// A problem of type `kind`.
    pub fn problem(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self::Problem(Box::new(Problem::new(kind, detail)))
    }

    /// Whether this is the answer to a full disk: the server's state, not
    /// the request's fault, so what failed may simply be tried again later.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::Problem(p) if p.kind() == Some(ProblemType::InsufficientStorage))
    }

    /// The problem shown to the client.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::Problem(p) => (**p).clone(),
            Self::Internal(_) => Problem::new(
                ProblemType::Internal,
                "the server failed; the request may be retried",
            ),
        }
    }
}

impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Self::Problem(Box::new(p))
    }
}

/// Whether an I/O error says the disk (or the quota) is full: the one
/// storage failure that is the server's state rather than a fault, so it
/// gets its own answer instead of a 500.
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
}

/// The answer to a write that found no room. Every write path ends up here
/// (through the `From` conversions below), so no call site has to know.
pub fn no_space(what: impl std::fmt::Display) -> Error {
    tracing::warn!(error = %what, "no room to write");
    Error::problem(
        ProblemType::InsufficientStorage,
        "the server's disk is full; nothing of this request was half-kept and everything \
         acknowledged before stays; retry later",
    )
}

impl From<crate::store::meta::MetaError> for Error {
    fn from(e: crate::store::meta::MetaError) -> Self {
        if e.is_no_space() {
            return no_space(&e);
        }
        Self::Internal(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if is_no_space(&e) {
            return no_space(&e);
        }
        Self::Internal(format!("i/o: {e}"))
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(format!("task: {e}"))
    }
}

/// Shorthand for domain results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
