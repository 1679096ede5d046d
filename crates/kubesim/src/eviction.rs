//! The `pods/eviction` subresource with the real server's rules: a pod is
//! deleted only if the one PodDisruptionBudget covering it allows a disruption.

use crate::error::ApiError;
use crate::store::{DeleteOptions, GroupResource, Store};
use serde_json::{Value, json};

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn pods() -> GroupResource {
    GroupResource::new("", "pods")
}

fn pdbs() -> GroupResource {
    GroupResource::new("policy", "poddisruptionbudgets")
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True")
}

/// Evicts `ns/name` as described by an `Eviction` body (policy/v1 or v1beta1).
pub fn evict(store: &Store, ns: &str, name: &str, body: &Value) -> Result<Value, ApiError> {
    if body["kind"].as_str().is_some_and(|k| k != "Eviction") {
        return Err(ApiError::bad_request(format!(
            "expected Eviction, got {}",
            body["kind"].as_str().unwrap_or("")
        )));
    }
    match body["apiVersion"].as_str() {
        None | Some("policy/v1" | "policy/v1beta1") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported Eviction apiVersion {other}"
            )));
        }
    }
    if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let opts = DeleteOptions::from_value(&body["deleteOptions"]);
    let stored = store.get(&pods(), ns, name)?;
    let pod = stored.value();
    let success = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    let terminating = !pod["metadata"]["deletionTimestamp"].is_null();
    if terminating || matches!(phase, "Succeeded" | "Failed" | "Pending") {
        store.delete(&pods(), ns, name, &opts)?;
        return Ok(success);
    }
    // Only the matching budget is parsed: a namespace may hold thousands.
    let matching = store.pdbs_selecting(ns, &stored.labels);
    if matching.len() > 1 {
        return Err(ApiError::internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    let Some(pdb) = matching.first().map(|p| p.value()) else {
        store.delete(&pods(), ns, name, &opts)?;
        return Ok(success);
    };
    let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or("").to_string();
    let st = &pdb["status"];
    let desired = st["desiredHealthy"].as_i64().unwrap_or(0);
    let current = st["currentHealthy"].as_i64().unwrap_or(0);
    if !is_ready(&pod) {
        let policy = pdb["spec"]["unhealthyPodEvictionPolicy"]
            .as_str()
            .unwrap_or("IfHealthyBudget");
        if policy == "AlwaysAllow" || current >= desired {
            store.delete(&pods(), ns, name, &opts)?;
            return Ok(success);
        }
    }
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    if st["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return Err(ApiError::too_many_requests(
            VIOLATION,
            json!([{"reason": "DisruptionBudget", "message": format!("The disruption budget {pdb_name} is still being processed by the server.")}]),
        ));
    }
    let allowed = st["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed < 0 {
        return Err(ApiError::forbidden(
            "policy",
            "poddisruptionbudgets",
            &pdb_name,
            "pdb disruptions allowed is negative",
        ));
    }
    if allowed == 0 {
        return Err(ApiError::too_many_requests(
            VIOLATION,
            json!([{"reason": "DisruptionBudget", "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently")}]),
        ));
    }
    if !opts.dry_run {
        // Check and take the disruption and delete the pod in one store
        // operation: two evictions racing for the last allowed disruption
        // must not both succeed (the real server gets this from optimistic
        // concurrency on the PDB), and the disruption controller must never
        // see the budget's record of this eviction without the deletion.
        let now = crate::meta::now();
        let taken = store.take_disruption_and_delete(
            (&pdbs(), ns, &pdb_name),
            |p| {
                let left = p["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
                if left > 0 {
                    p["status"]["disruptionsAllowed"] = json!(left - 1);
                    p["status"]["disruptedPods"][name] = json!(now);
                }
                left > 0
            },
            (&pods(), ns, name),
            &opts,
        )?;
        if taken.is_none() {
            return Err(ApiError::too_many_requests(
                VIOLATION,
                json!([{"reason": "DisruptionBudget", "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently")}]),
            ));
        }
        return Ok(success);
    }
    store.delete(&pods(), ns, name, &opts)?;
    Ok(success)
}
