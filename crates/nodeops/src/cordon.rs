//! Cordon and uncordon with ownership: drover records the cordons it makes
//! and only ever undoes those, so a node an admin cordoned stays cordoned.

use drover_api::Outcome;
use drover_api::names::annotation::CORDONED_BY;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::error::{Result, is_conflict};

fn cordoned_by(node: &Node) -> Option<&str> {
    node.metadata.annotations.as_ref()?.get(CORDONED_BY).map(String::as_str)
}

/// drover's field manager: the node's managedFields then say that drover
/// set `spec.unschedulable`, and whether someone set it after drover.
fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(drover_api::names::FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

fn unschedulable(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
}

/// Mark the node unschedulable and record `owner` as the one who did,
/// unless it already is (then it is left as it is and not claimed).
pub async fn cordon(nodes: &Api<Node>, name: &str, owner: &str) -> Result<Outcome> {
    let node = nodes.get(name).await?;
    if unschedulable(&node) {
        return Ok(Outcome::Done);
    }
    // The resourceVersion makes this a compare-and-swap: if an admin cordons
    // the node between our read and write, we lose and re-read.
    let patch = json!({
        "metadata": {
            "resourceVersion": node.metadata.resource_version,
            "annotations": {CORDONED_BY: owner},
        },
        "spec": {"unschedulable": true},
    });
    match nodes.patch(name, &params(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(Outcome::Done),
        Err(e) if is_conflict(&e) => Ok(Outcome::Waiting {
            message: format!("node {name} changed while cordoning; retrying"),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Undo `owner`'s cordon. A cordon someone else made is left alone.
pub async fn uncordon(nodes: &Api<Node>, name: &str, owner: &str) -> Result<Outcome> {
    let Some(node) = nodes.get_opt(name).await? else {
        return Ok(Outcome::Done); // a deleted node holds nothing
    };
    if cordoned_by(&node) != Some(owner) {
        return Ok(Outcome::Done);
    }
    let patch = json!({
        "metadata": {
            "resourceVersion": node.metadata.resource_version,
            "annotations": {CORDONED_BY: null},
        },
        "spec": {"unschedulable": false},
    });
    match nodes.patch(name, &params(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(Outcome::Done),
        Err(e) if is_conflict(&e) => Ok(Outcome::Waiting {
            message: format!("node {name} changed while uncordoning; retrying"),
        }),
        Err(e) => Err(e.into()),
    }
}
