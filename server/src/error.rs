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
    /// Whether this is a problem of type `kind`.
    pub fn is(&self, kind: ProblemType) -> bool {
        matches!(self, Self::Problem(p) if p.kind() == Some(kind))
    }

    pub fn is_no_space(&self) -> bool {
        self.is(ProblemType::InsufficientStorage)
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

/// A full disk is the one storage failure that is the server's state
/// rather than a fault, so it gets its own answer instead of a 500.
pub use crate::store::space::is_no_space;

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
            // Not refused by `Room`: sled met the full disk itself (a
            // filesystem without fallocate, or a value sled keeps in a file
            // of its own), and takes no more writes until reopened. Said once:
            // it lasts until the restart.
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if matches!(e, crate::store::meta::MetaError::Sled(_))
                && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::error!(error = %e, "the metadata database ran out of room; its writes fail until the server restarts");
            }
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
