//! The engine's side of the `BadVersion` fault: which nodes run a bad
//! version (from the versions they report), holding their long-running
//! pods unready under `effect: PodsUnready` and letting them turn Ready
//! again once the node is not bad, and the [`HealthState`] the health
//! endpoints answer from.

use super::engine::Engine;
use super::health::{
    BadNode, HealthState, NodeHealth, alerts, any_bad_version, bad_versions, holds_pods_unready, live_version,
};
use super::view::PodView;

impl Engine {
    /// The version of `component` that `node` runs (see [`live_version`]).
    fn live_version_on(&self, node: &str, component: &str) -> Option<String> {
        let n = self.nodes.get(node)?;
        let key = ("kube-system".to_string(), format!("{component}-{node}"));
        let mirror = self.pods.get(&key).filter(|p| p.mirror).map(|p| p.image.as_str());
        let installed = self
            .node_sim
            .get(node)
            .and_then(|s| s.installed.get(component))
            .map(String::as_str);
        live_version(component, &n.node_info, mirror, installed)
    }

    /// The bad versions `node` runs now.
    pub(crate) fn bad_of(&self, node: &str) -> Vec<BadNode> {
        let faults = self.shared.faults.read();
        if !any_bad_version(&faults) {
            return Vec::new();
        }
        bad_versions(&faults, node, |c| self.live_version_on(node, c))
    }

    /// Looks at `node` again: when whether its pods are held unready
    /// changes, its kubelet looks at each of them.
    pub(crate) fn refresh_bad(&mut self, node: &str) {
        let held = holds_pods_unready(&self.bad_of(node));
        let Some(s) = self.node_sim.get_mut(node) else { return };
        if s.held_unready != held {
            s.held_unready = held;
            tracing::debug!(node, held, "kubesim: bad version holds the node's pods unready");
            self.kubelet_node(node);
        }
    }

    /// The faults changed: every node again.
    pub(crate) fn refresh_all_bad(&mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            self.refresh_bad(&n);
        }
    }

    /// Whether a bad version holds this pod unready: a long-running pod
    /// (not a mirror pod, not run-to-completion, not an upgrade pod) on a
    /// node held so.
    pub(crate) fn held_unready(&self, p: &PodView) -> bool {
        p.restart_always
            && !p.mirror
            && p.upgrade.is_none()
            && p.node
                .as_ref()
                .and_then(|n| self.node_sim.get(n))
                .is_some_and(|s| s.held_unready)
    }

    /// An upgrade of a component no node field or mirror pod shows
    /// finished: remember what it installed.
    pub(crate) fn record_installed(&mut self, node: &str, component: &str, version: &str) {
        if let Some(s) = self.node_sim.get_mut(node) {
            s.installed.insert(component.to_string(), version.to_string());
        }
        self.refresh_bad(node);
    }

    /// What the health endpoints answer from.
    pub(crate) fn health_state(&self) -> HealthState {
        let faults = self.shared.faults.read().clone();
        let any = any_bad_version(&faults);
        let nodes = self
            .nodes
            .values()
            .map(|n| NodeHealth {
                name: n.name.clone(),
                ready: n.ready,
                bad: if any {
                    bad_versions(&faults, &n.name, |c| self.live_version_on(&n.name, c))
                } else {
                    Vec::new()
                },
            })
            .collect();
        HealthState {
            nodes,
            alerts: alerts(&faults),
        }
    }
}
