use thiserror::Error;

/// Why a reconcile pass could not finish. The rollout state is in the API,
/// so a failed pass is simply retried.
#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {}", drover_nodeops::api_text(.0))]
    Kube(#[from] kube::Error),
    #[error("node operation: {0}")]
    NodeOps(#[from] drover_nodeops::NodeOpsError),
    #[error("serialisation: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Other(String),
    /// Not an error: the pass must wait (node steps still running during a
    /// cleanup). Retried soon, counted nowhere.
    #[error("{0}")]
    Busy(String),
    /// Adding or removing drover's finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy(_))
    }

    /// The pass's own error when it is one, else the finalizer patch's.
    pub fn from_finalizer(e: kube::runtime::finalizer::Error<Error>) -> Error {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
