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

impl From<crate::store::meta::MetaError> for Error {
    fn from(e: crate::store::meta::MetaError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
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
