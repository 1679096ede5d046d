//! API errors, rendered as `metav1.Status` bodies exactly as kube-apiserver
//! renders them (kind Status, apiVersion v1, status Failure, message, reason,
//! code, details).

use serde_json::{Value, json};

/// The error every API operation returns: one `Status` with its HTTP code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// `pods` or `deployments.apps`: how the real server names a resource in messages.
pub fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn details(group: &str, kind: &str, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": kind });
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    if name.is_empty() {
        d.as_object_mut().unwrap().remove("name");
    }
    d
}

/// One field error of an `Invalid` answer.
#[derive(Debug, Clone)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn new(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause {
            reason,
            field: field.into(),
            message: message.into(),
        }
    }
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Cause::new("FieldValueRequired", field, message)
    }
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause::new("FieldValueInvalid", field, format!("Invalid value: {shown}: {detail}"))
    }
    fn full(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }
    fn with(mut self, d: Value) -> Self {
        self.details = Some(d);
        self
    }
    pub(crate) fn with_details(self, d: Value) -> Self {
        self.with(d)
    }
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, resource)),
        )
        .with(details(group, resource, name))
    }
    /// A path the server does not serve at all.
    pub fn page_not_found() -> Self {
        ApiError::new(404, "NotFound", "the server could not find the requested resource").with(json!({}))
    }
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, resource)),
        )
        .with(details(group, resource, name))
    }
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(group, resource)
            ),
        )
        .with(details(group, resource, name))
    }
    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }
    pub fn precondition(group: &str, resource: &str, name: &str, message: String) -> Self {
        ApiError::new(409, "Conflict", message).with(details(group, resource, name))
    }
    /// 422 Invalid with field causes; `kind` is the Kind (`Pod`, `ClusterUpgrade`).
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let joined: Vec<String> = causes.iter().map(Cause::full).collect();
        let list = if joined.len() == 1 {
            joined[0].clone()
        } else {
            format!("[{}]", joined.join(", "))
        };
        let mut d = details(group, kind, name);
        d["causes"] = Value::Array(
            causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect(),
        );
        ApiError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {list}", qualified(group, kind)),
        )
        .with(d)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }
    pub fn forbidden(group: &str, resource: &str, name: &str, why: &str) -> Self {
        ApiError::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", qualified(group, resource)),
        )
        .with(details(group, resource, name))
    }
    /// A method the path does not serve (POST to an object, PATCH to a collection...).
    pub fn method_not_allowed() -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with(json!({}))
    }
    pub fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }
    /// As kube-apiserver: no details.
    pub fn unsupported_media_type(_content_type: &str, accepted: &[&str]) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }
    pub fn not_acceptable() -> Self {
        ApiError::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )
    }
    pub fn too_many_requests(message: impl Into<String>, causes: Value) -> Self {
        ApiError::new(429, "TooManyRequests", message).with(json!({ "causes": causes }))
    }
    pub fn internal(message: impl Into<String>) -> Self {
        let m = message.into();
        ApiError::new(500, "InternalError", format!("Internal error occurred: {m}"))
            .with(json!({ "causes": [{ "message": m }] }))
    }
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` body.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// Errors that stop the server itself from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding the listener: {0}")]
    Bind(#[from] std::io::Error),
    #[error("building the client: {0}")]
    Client(String),
}
