//! The `drover.dev/upgrade-pending` taint (PreferNoSchedule) on workers
//! still to be upgraded: the scheduler places the replacements of evicted
//! pods elsewhere, so a pod is evicted once per rollout, not once per node
//! it lands on. Its value names the ClusterUpgrade; drover only ever removes
//! its own. Whether a node should carry it is the planner's decision
//! (`drover_plan::steer`); this writes it.

use drover_api::names::taint::{EFFECT, UPGRADE_PENDING};
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

fn pending_taint(taints: &[Taint]) -> Option<&Taint> {
    taints.iter().find(|t| t.key == UPGRADE_PENDING)
}

/// The ClusterUpgrade whose taint the node carries.
pub fn owner(n: &Node) -> Option<String> {
    pending_taint(n.spec.as_ref()?.taints.as_deref()?).map(|t| t.value.clone().unwrap_or_default())
}

/// The node's taints with `owner`'s taint put on (`mark`) or taken off;
/// None when that changes nothing (or the taint is another upgrade's).
fn taints_after(n: &Node, owner: &str, mark: bool) -> Option<Vec<Taint>> {
    let now: Vec<Taint> = n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let found = pending_taint(&now);
    match (found, mark) {
        (Some(t), _) if t.value.as_deref().unwrap_or_default() != owner => None,
        (Some(_), true) | (None, false) => None,
        (None, true) => {
            let mut next = now;
            next.push(Taint {
                key: UPGRADE_PENDING.into(),
                value: Some(owner.into()),
                effect: EFFECT.into(),
                time_added: None,
            });
            Some(next)
        }
        (Some(_), false) => Some(now.into_iter().filter(|t| t.key != UPGRADE_PENDING).collect()),
    }
}

/// The node's taints without `owner`'s, when it carries it.
pub(crate) fn without(n: &Node, owner: &str) -> Option<Vec<Taint>> {
    taints_after(n, owner, false)
}

/// Put `owner`'s taint on `node` or take it off, as a compare-and-swap on
/// the taints the cache showed (`spec.taints` is replaced whole by any
/// patch, so a taint someone adds meanwhile is never lost): true when
/// written or nothing to do, false when the taints changed meanwhile (the
/// next pass decides again).
pub async fn set(nodes: &Api<Node>, node: &Node, owner: &str, mark: bool) -> kube::Result<bool> {
    let Some(next) = taints_after(node, owner, mark) else {
        return Ok(true);
    };
    let name = node.metadata.name.clone().unwrap_or_default();
    let params = PatchParams {
        field_manager: Some(drover_api::names::FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let written = match node.spec.as_ref().and_then(|s| s.taints.as_ref()) {
        Some(before) => {
            let ops = json!([
                {"op": "test", "path": "/spec/taints", "value": before},
                {"op": "replace", "path": "/spec/taints", "value": next},
            ]);
            let patch: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
            nodes.patch(&name, &params, &Patch::<()>::Json(patch)).await
        }
        // No taints to test against: the resourceVersion guards the write.
        None => {
            let body = json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"taints": next},
            });
            nodes.patch(&name, &params, &Patch::Merge(&body)).await
        }
    };
    match written {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 422 => Ok(false),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(taints: Option<Vec<Taint>>) -> Node {
        Node {
            spec: Some(k8s_openapi::api::core::v1::NodeSpec {
                taints,
                ..Default::default()
            }),
            ..Node::default()
        }
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn marks_keep_every_other_taint_and_never_touch_another_upgrades() {
        let admin = taint("dedicated", "db", "NoSchedule");
        let n = node(Some(vec![admin.clone()]));
        let marked = taints_after(&n, "platform", true).unwrap();
        assert_eq!(marked.len(), 2);
        assert_eq!(marked[0], admin);
        assert_eq!(marked[1].key, UPGRADE_PENDING);
        assert_eq!(marked[1].effect, "PreferNoSchedule");
        let n = node(Some(marked));
        assert_eq!(owner(&n).as_deref(), Some("platform"));
        assert!(taints_after(&n, "platform", true).is_none(), "already marked");
        assert_eq!(taints_after(&n, "platform", false).unwrap(), vec![admin]);
        assert!(
            taints_after(&n, "other", false).is_none(),
            "another upgrade's taint stays"
        );
        assert!(taints_after(&node(None), "platform", false).is_none());
    }
}
