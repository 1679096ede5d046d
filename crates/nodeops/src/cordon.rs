//! Cordon and uncordon with ownership: drover records the cordons it makes
//! and only ever undoes those, so a node an admin cordoned stays cordoned.
//! With its cordon drover puts the cluster-autoscaler's and Karpenter's
//! disruption guards on the node (neither scales down or replaces a node
//! drover is upgrading), records which of them it added, and removes only
//! those when it uncordons: a guard an admin set stays.

use drover_api::Outcome;
use drover_api::names::annotation::{CORDONED_BY, DISRUPTION_GUARDS, GUARDS_ADDED, PROGRESS};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Map, Value, json};

use crate::cache::{Caches, Source};
use crate::error::{NodeOpsError, Result, is_conflict};

fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.annotations.as_ref()?.get(key).map(String::as_str)
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

/// The annotations of the cordon's patch: the owner, each guard the node
/// does not carry yet (whatever its value, one that is there is an admin's
/// and left alone), and the list of those drover added.
fn cordon_annotations(node: &Node, owner: &str) -> Map<String, Value> {
    let mut a = Map::new();
    a.insert(CORDONED_BY.into(), json!(owner));
    let added: Vec<&str> = DISRUPTION_GUARDS
        .into_iter()
        .filter(|k| annotation(node, k).is_none())
        .collect();
    for k in &added {
        a.insert((*k).into(), json!("true"));
    }
    if !added.is_empty() {
        a.insert(GUARDS_ADDED.into(), json!(added.join(",")));
    }
    a
}

/// The annotations of the uncordon's patch: the owner and the guards drover added, removed.
fn uncordon_annotations(node: &Node) -> Map<String, Value> {
    let mut a = Map::new();
    a.insert(CORDONED_BY.into(), Value::Null);
    if let Some(added) = annotation(node, GUARDS_ADDED) {
        for k in added.split(',').filter(|k| DISRUPTION_GUARDS.contains(k)) {
            a.insert(k.into(), Value::Null);
        }
        a.insert(GUARDS_ADDED.into(), Value::Null);
    }
    a
}

/// Mark the node unschedulable and record `owner` as the one who did,
/// unless it already is (then it is left as it is and not claimed). The
/// node is read from the store when there is one; a write that loses to a
/// stale copy is tried once more from the server's.
pub async fn cordon(nodes: &Api<Node>, caches: &Caches, name: &str, owner: &str) -> Result<Outcome> {
    Ok(cordon_recording(nodes, caches, name, owner, None).await?.0)
}

/// A progress record to write in the same patch as a cordon or uncordon:
/// the annotation's value the step started from, and the one to write (None
/// removes it). Written only where the node still holds `from`. With
/// `untaint`, an uncordon's patch also takes the owner's
/// `drover.dev/upgrade-pending` taint off ([`crate::steer`]). `also`: more
/// annotations set with the record (a verified version), only with it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub from: &'a str,
    pub to: Option<&'a str>,
    pub untaint: bool,
    pub also: &'a [(String, String)],
}

/// Put the record (and what goes with it) in a patch's annotations, when
/// the node still holds `r.from`; true if it went in.
fn add_record(annotations: &mut serde_json::Map<String, Value>, node: &Node, r: Option<Record<'_>>) -> bool {
    let Some(r) = r.filter(|r| annotation(node, PROGRESS) == Some(r.from)) else {
        return false;
    };
    annotations.insert(PROGRESS.into(), json!(r.to));
    for (k, v) in r.also {
        annotations.insert(k.clone(), json!(v));
    }
    true
}

/// [`cordon`], writing `record` in the same patch: true when it went with
/// it (false: the node was already unschedulable, or its record was not
/// `record.from`; the caller writes the record itself).
pub async fn cordon_recording(
    nodes: &Api<Node>,
    caches: &Caches,
    name: &str,
    owner: &str,
    record: Option<Record<'_>>,
) -> Result<(Outcome, bool)> {
    for source in caches.attempts() {
        let Some((node, _)) = caches.node_from(nodes, name, *source).await? else {
            return Err(NodeOpsError::Invalid(format!("node {name} is not there to cordon")));
        };
        if unschedulable(&node) {
            return Ok((Outcome::Done, false));
        }
        // The resourceVersion makes this a compare-and-swap: if an admin cordons
        // the node (or sets a guard) between our read and write, we lose and re-read.
        let mut annotations = cordon_annotations(&node, owner);
        let recorded = add_record(&mut annotations, &node, record);
        let patch = json!({
            "metadata": {
                "resourceVersion": node.metadata.resource_version,
                "annotations": annotations,
            },
            "spec": {"unschedulable": true},
        });
        match nodes.patch(name, &params(), &Patch::Merge(&patch)).await {
            Ok(_) => return Ok((Outcome::Done, recorded)),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok((
        Outcome::Waiting {
            message: format!("node {name} changed while cordoning; retrying"),
        },
        false,
    ))
}

/// Undo `owner`'s cordon and the guards it added. A cordon someone else
/// made is left alone: a stored copy that does not show `owner`'s cordon is
/// confirmed with the server before the node is left as it is.
pub async fn uncordon(nodes: &Api<Node>, caches: &Caches, name: &str, owner: &str) -> Result<Outcome> {
    Ok(uncordon_recording(nodes, caches, name, owner, None).await?.0)
}

/// [`uncordon`], writing `record` in the same patch: true when it went with
/// it (false: there was nothing of drover's to undo, or the node's record
/// was not `record.from`; the caller writes the record itself).
pub async fn uncordon_recording(
    nodes: &Api<Node>,
    caches: &Caches,
    name: &str,
    owner: &str,
    record: Option<Record<'_>>,
) -> Result<(Outcome, bool)> {
    let mut source = caches.attempts()[0];
    for _ in 0..3 {
        let Some((node, from)) = caches.node_from(nodes, name, source).await? else {
            return Ok((Outcome::Done, false)); // a deleted node holds nothing
        };
        source = Source::Server;
        if annotation(&node, CORDONED_BY) != Some(owner) {
            if from == Source::Cache {
                continue;
            }
            return Ok((Outcome::Done, false));
        }
        let mut annotations = uncordon_annotations(&node);
        let recorded = add_record(&mut annotations, &node, record);
        let mut spec = json!({"unschedulable": false});
        // The whole list is replaced; the resourceVersion keeps a taint
        // someone adds meanwhile from being lost.
        if record.is_some_and(|r| r.untaint)
            && let Some(taints) = crate::steer::without(&node, owner)
        {
            spec["taints"] = json!(taints);
        }
        let patch = json!({
            "metadata": {
                "resourceVersion": node.metadata.resource_version,
                "annotations": annotations,
            },
            "spec": spec,
        });
        match nodes.patch(name, &params(), &Patch::Merge(&patch)).await {
            Ok(_) => return Ok((Outcome::Done, recorded)),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok((
        Outcome::Waiting {
            message: format!("node {name} changed while uncordoning; retrying"),
        },
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::names::annotation::{DO_NOT_DISRUPT, SCALE_DOWN_DISABLED};

    fn node(annotations: &[(&str, &str)]) -> Node {
        let mut n = Node::default();
        n.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n
    }

    #[test]
    fn the_cordon_adds_the_guards_the_node_lacks_and_records_them() {
        let a = cordon_annotations(&node(&[]), "u");
        assert_eq!(a[CORDONED_BY], "u");
        assert_eq!(a[SCALE_DOWN_DISABLED], "true");
        assert_eq!(a[DO_NOT_DISRUPT], "true");
        assert_eq!(a[GUARDS_ADDED], format!("{SCALE_DOWN_DISABLED},{DO_NOT_DISRUPT}"));
        // An admin's guard, whatever its value, is neither overwritten nor claimed.
        let a = cordon_annotations(&node(&[(DO_NOT_DISRUPT, "false")]), "u");
        assert!(!a.contains_key(DO_NOT_DISRUPT));
        assert_eq!(a[GUARDS_ADDED], SCALE_DOWN_DISABLED);
        let a = cordon_annotations(&node(&[(DO_NOT_DISRUPT, "true"), (SCALE_DOWN_DISABLED, "true")]), "u");
        assert!(!a.contains_key(GUARDS_ADDED), "{a:?}");
    }

    #[test]
    fn the_uncordon_removes_only_the_guards_drover_added() {
        let n = node(&[
            (CORDONED_BY, "u"),
            (SCALE_DOWN_DISABLED, "true"),
            (DO_NOT_DISRUPT, "true"),
            (GUARDS_ADDED, SCALE_DOWN_DISABLED),
        ]);
        let a = uncordon_annotations(&n);
        assert_eq!(a[CORDONED_BY], Value::Null);
        assert_eq!(a[SCALE_DOWN_DISABLED], Value::Null);
        assert_eq!(a[GUARDS_ADDED], Value::Null);
        assert!(!a.contains_key(DO_NOT_DISRUPT), "the admin's guard stays: {a:?}");
        // A record naming something else removes nothing else.
        let n = node(&[(CORDONED_BY, "u"), (GUARDS_ADDED, "example.com/other")]);
        assert!(!uncordon_annotations(&n).contains_key("example.com/other"));
    }

    #[test]
    fn the_record_and_what_goes_with_it_go_in_only_where_the_node_holds_the_record_it_started_from() {
        let also = [("drover.dev/verified.containerd".to_string(), "1.7.23".to_string())];
        let r = Record {
            from: "old",
            to: Some("new"),
            untaint: false,
            also: &also,
        };
        let mut a = Map::new();
        assert!(add_record(&mut a, &node(&[(PROGRESS, "old")]), Some(r)));
        assert_eq!(a[PROGRESS], "new");
        assert_eq!(a["drover.dev/verified.containerd"], "1.7.23");
        // Another record now: neither the record nor the verified version goes in.
        let mut a = Map::new();
        assert!(!add_record(&mut a, &node(&[(PROGRESS, "other")]), Some(r)));
        assert!(a.is_empty(), "{a:?}");
        // No record to write: nothing.
        assert!(!add_record(&mut a, &node(&[(PROGRESS, "old")]), None));
        assert!(a.is_empty(), "{a:?}");
    }
}
