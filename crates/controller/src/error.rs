use thiserror::Error;

/// Why a reconcile pass could not finish. The rollout state is in the API,
/// so a failed pass is simply retried.
#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("node operation: {0}")]
    NodeOps(#[from] drover_nodeops::NodeOpsError),
    #[error("serialisation: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
