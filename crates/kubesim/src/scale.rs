//! The `scale` subresource of deployments, replicasets, statefulsets and
//! replicationcontrollers (`autoscaling/v1` Scale), as `kubectl scale` and
//! kube-rs' `get_scale`/`patch_scale` use it.

use crate::error::ApiError;
use crate::store::{GroupResource, ResourceType, Store, WriteOptions};
use serde_json::{Value, json};

/// Whether a resource has a scale subresource.
pub fn has_scale(t: &ResourceType) -> bool {
    matches!(
        (t.group.as_str(), t.plural.as_str()),
        ("apps", "deployments" | "replicasets" | "statefulsets") | ("", "replicationcontrollers")
    )
}

fn selector(o: &Value) -> String {
    let sel = &o["spec"]["selector"];
    // replicationcontrollers have a plain map; the others a LabelSelector.
    let labels = sel.get("matchLabels").unwrap_or(sel);
    labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The Scale of an object.
pub fn of(o: &Value) -> Value {
    let m = &o["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": o["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector(o)},
    })
}

/// Writes `spec.replicas` from a Scale; a resourceVersion in it is a precondition.
pub fn write(
    store: &Store,
    gr: &GroupResource,
    ns: &str,
    name: &str,
    scale: &Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let replicas = scale["spec"]["replicas"]
        .as_i64()
        .ok_or_else(|| ApiError::bad_request("Scale.spec.replicas is required"))?;
    let mut obj = store.get(gr, ns, name)?.value();
    obj["spec"]["replicas"] = json!(replicas);
    match scale["metadata"]["resourceVersion"].as_str().filter(|r| !r.is_empty()) {
        Some(rv) => obj["metadata"]["resourceVersion"] = json!(rv),
        None => {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
        }
    }
    let out = store.update(gr, ns, name, obj, None, opts)?;
    Ok(of(&out))
}
