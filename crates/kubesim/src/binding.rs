//! The `pods/binding` subresource: what a scheduler posts to place a pod.

use crate::error::ApiError;
use crate::store::{GroupResource, Store};
use serde_json::{Value, json};

/// Binds `ns/name` to the node a `Binding` body targets.
pub fn bind(store: &Store, ns: &str, name: &str, body: &Value) -> Result<Value, ApiError> {
    if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Binding object",
        ));
    }
    let node = body["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            name,
            vec![crate::error::Cause::required("target.name", "")],
        ));
    }
    let pods = GroupResource::new("", "pods");
    let pod = store.get(&pods, ns, name)?.value();
    if let Some(uid) = body["metadata"]["uid"].as_str().filter(|u| !u.is_empty())
        && pod["metadata"]["uid"].as_str() != Some(uid)
    {
        return Err(ApiError::conflict(
            "",
            "pods/binding",
            name,
            "the UID in the binding does not match the pod",
        ));
    }
    if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(ApiError::conflict(
            "",
            "pods/binding",
            name,
            &format!("pod {name} is already assigned to node \"{current}\""),
        ));
    }
    store.modify(&pods, ns, name, None, |p| p["spec"]["nodeName"] = json!(node))?;
    let now = crate::meta::now();
    store.modify(&pods, ns, name, Some("status"), |p| {
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        let conds = p["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
        conds.push(cond);
        p["status"]["conditions"] = Value::Array(conds);
    })?;
    Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))
}
