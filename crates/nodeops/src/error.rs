use thiserror::Error;

/// Why a node operation could not be attempted. An operation that ran and
/// found the node not ready yet is not an error: it returns an `Outcome`.
#[derive(Debug, Error)]
pub enum NodeOpsError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{method} {path} answered {status}: {message}")]
    Http {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("building a request: {0}")]
    Request(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = NodeOpsError> = std::result::Result<T, E>;

/// A 404 from the API.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A 409 from the API (AlreadyExists or a stale resourceVersion).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
