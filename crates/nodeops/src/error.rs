use thiserror::Error;

/// Why a node operation could not be attempted. An operation that ran and
/// found the node not ready yet is not an error: it returns an `Outcome`.
#[derive(Debug, Error)]
pub enum NodeOpsError {
    #[error("Kubernetes API: {}", api_text(.0))]
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

/// An API error as a person reads it: the server's own message with its
/// code and reason (`Job.batch "x" is invalid: ...: Forbidden (422
/// Invalid)`), never the Debug form of the Status that kube's Display adds.
pub fn api_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let message = if s.message.is_empty() { "no message" } else { &s.message };
            format!("{message} ({} {})", s.code, s.reason)
        }
        other => other.to_string(),
    }
}

/// A watch error as a person reads it (see [`api_text`]).
pub fn watch_text(e: &kube::runtime::watcher::Error) -> String {
    use kube::runtime::watcher::Error as W;
    match e {
        W::InitialListFailed(k) => format!("listing failed: {}", api_text(k)),
        W::WatchStartFailed(k) => format!("starting the watch failed: {}", api_text(k)),
        W::WatchFailed(k) => format!("the watch failed: {}", api_text(k)),
        other => other.to_string(),
    }
}

/// The API server refused a request for good (400 Bad Request, 403
/// Forbidden, 422 Invalid): retrying the same request cannot succeed until
/// someone changes the spec, the cluster's policy or drover's RBAC.
pub fn refused_for_good(e: &NodeOpsError) -> Option<String> {
    match e {
        NodeOpsError::Kube(k @ kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => Some(api_text(k)),
        NodeOpsError::Http { status, message, .. } if matches!(status, 400 | 403 | 422) => {
            Some(format!("{message} ({status})"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure(message, reason).with_code(code).boxed())
    }

    #[test]
    fn api_errors_read_as_the_servers_words() {
        let e = api(
            422,
            "Invalid",
            "Job.batch \"j\" is invalid: spec.template.spec.containers[0].securityContext.privileged: Forbidden: disallowed by cluster policy",
        );
        let text = api_text(&e);
        assert_eq!(
            text,
            "Job.batch \"j\" is invalid: spec.template.spec.containers[0].securityContext.privileged: Forbidden: disallowed by cluster policy (422 Invalid)"
        );
        assert!(!text.contains("Status {"), "{text}");
        assert_eq!(refused_for_good(&NodeOpsError::Kube(e)).as_deref(), Some(text.as_str()));
        // The error's own text (logs, `drover run`'s exit) says the same.
        let shown = NodeOpsError::Kube(api(500, "InternalError", "etcdserver: leader changed")).to_string();
        assert_eq!(shown, "Kubernetes API: etcdserver: leader changed (500 InternalError)");
    }

    #[test]
    fn only_permanent_refusals_are_final() {
        for code in [404u16, 409, 429, 500, 503] {
            assert_eq!(
                refused_for_good(&NodeOpsError::Kube(api(code, "X", "m"))),
                None,
                "{code}"
            );
        }
        for code in [400u16, 403, 422] {
            assert!(
                refused_for_good(&NodeOpsError::Kube(api(code, "X", "m"))).is_some(),
                "{code}"
            );
        }
    }
}
