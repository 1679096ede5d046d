//! The invariant recorder: what tests and benchmarks ask afterwards. The
//! most nodes unavailable (cordoned or NotReady) at once per role, every
//! PDB violation, the nodes cordoned now, and each node's version time line.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A disruption of a pod covered by a PDB that had no disruption left.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PdbViolation {
    /// Simulated seconds since the start.
    pub at: f64,
    /// Wall-clock time.
    pub time: String,
    pub namespace: String,
    pub pdb: String,
    pub pod: String,
    pub node: String,
    /// `Deletion` (deleted without eviction) or `NodeReboot` (an upgrade
    /// rebooted the node under it).
    pub kind: String,
    pub healthy_after: i64,
    pub desired_healthy: i64,
}

/// One change of what a node reports for a component.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VersionChange {
    pub at: f64,
    pub time: String,
    /// `kubelet`, `kube-proxy`, `container-runtime`, `os-image`, `kernel`,
    /// or a static pod's component (`kube-apiserver`, `etcd`...).
    pub component: String,
    /// None for the first observation.
    pub from: Option<String>,
    pub to: String,
}

/// An unavailability transition of a node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeEvent {
    pub at: f64,
    pub node: String,
    pub cordoned: bool,
    pub ready: bool,
}

/// Everything the recorder knows, as served at `GET /kubesim/recorder`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Simulated seconds since the start.
    pub now: f64,
    /// Role (`control-plane`, `etcd`, `worker`) → most nodes unavailable at once.
    pub max_unavailable: BTreeMap<String, usize>,
    /// Role → nodes unavailable now.
    pub unavailable: BTreeMap<String, Vec<String>>,
    pub pdb_violations: Vec<PdbViolation>,
    /// Nodes cordoned now (`spec.unschedulable`).
    pub cordoned: Vec<String>,
    /// Nodes NotReady now.
    pub not_ready: Vec<String>,
    /// Node → its version changes in order.
    pub versions: BTreeMap<String, Vec<VersionChange>>,
    /// Node availability transitions, oldest first (the last 10,000).
    pub node_events: Vec<NodeEvent>,
}

#[derive(Debug, Default)]
struct NodeState {
    roles: Vec<&'static str>,
    cordoned: bool,
    ready: bool,
}

#[derive(Debug, Default)]
struct State {
    nodes: BTreeMap<String, NodeState>,
    max: BTreeMap<String, usize>,
    /// Role → nodes unavailable now.
    counts: BTreeMap<String, usize>,
    violations: Vec<PdbViolation>,
    versions: BTreeMap<String, Vec<VersionChange>>,
    current: BTreeMap<(String, String), String>,
    events: std::collections::VecDeque<NodeEvent>,
}

impl State {
    fn unavailable(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, n) in &self.nodes {
            if n.cordoned || !n.ready {
                for r in &n.roles {
                    out.entry(r.to_string()).or_default().push(name.clone());
                }
            }
        }
        out
    }
}

/// Shared between the engine (which writes) and readers.
#[derive(Debug, Default)]
pub struct Recorder {
    state: Mutex<State>,
}

impl Recorder {
    /// A node's availability as last seen; None when it was deleted. The
    /// simulation calls it, and so do the watches of the real test bed.
    pub fn node(&self, at: f64, name: &str, now: Option<(Vec<&'static str>, bool, bool)>) {
        let mut s = self.state.lock();
        let before = s.nodes.remove(name);
        if let Some(b) = &before
            && (b.cordoned || !b.ready)
        {
            for r in &b.roles {
                if let Some(c) = s.counts.get_mut(*r) {
                    *c = c.saturating_sub(1);
                }
            }
        }
        let Some((roles, cordoned, ready)) = now else { return };
        if before.as_ref().map(|b| (b.cordoned, b.ready)) != Some((cordoned, ready)) {
            s.events.push_back(NodeEvent {
                at,
                node: name.to_string(),
                cordoned,
                ready,
            });
            while s.events.len() > 10_000 {
                s.events.pop_front();
            }
        }
        if cordoned || !ready {
            for r in &roles {
                let c = s.counts.entry(r.to_string()).or_default();
                *c += 1;
                let c = *c;
                let m = s.max.entry(r.to_string()).or_default();
                *m = (*m).max(c);
            }
        }
        s.nodes.insert(name.to_string(), NodeState { roles, cordoned, ready });
    }

    /// What a node reports for `component` (recorded only when it changes).
    pub fn version(&self, at: f64, node: &str, component: &str, version: &str) {
        let mut s = self.state.lock();
        let k = (node.to_string(), component.to_string());
        let from = s.current.get(&k).cloned();
        if from.as_deref() == Some(version) {
            return;
        }
        s.current.insert(k, version.to_string());
        s.versions.entry(node.to_string()).or_default().push(VersionChange {
            at,
            time: crate::meta::now(),
            component: component.to_string(),
            from,
            to: version.to_string(),
        });
    }

    pub fn violation(&self, v: PdbViolation) {
        tracing::warn!(pdb = %v.pdb, pod = %v.pod, "kubesim: PDB violation");
        self.state.lock().violations.push(v);
    }

    pub fn report(&self, now: f64) -> Report {
        let s = self.state.lock();
        let mut max = s.max.clone();
        for r in ["control-plane", "etcd", "worker"] {
            if s.nodes.values().any(|n| n.roles.contains(&r)) {
                max.entry(r.to_string()).or_default();
            }
        }
        Report {
            now,
            max_unavailable: max,
            unavailable: s.unavailable(),
            pdb_violations: s.violations.clone(),
            cordoned: s
                .nodes
                .iter()
                .filter(|(_, n)| n.cordoned)
                .map(|(k, _)| k.clone())
                .collect(),
            not_ready: s
                .nodes
                .iter()
                .filter(|(_, n)| !n.ready)
                .map(|(k, _)| k.clone())
                .collect(),
            versions: s.versions.clone(),
            node_events: s.events.iter().cloned().collect(),
        }
    }

    /// The most `role` nodes unavailable at once since the start (or the last reset).
    pub fn max_unavailable(&self, role: &str) -> usize {
        self.state.lock().max.get(role).copied().unwrap_or(0)
    }

    pub fn pdb_violations(&self) -> Vec<PdbViolation> {
        self.state.lock().violations.clone()
    }

    /// Nodes cordoned now.
    pub fn cordoned(&self) -> Vec<String> {
        self.state
            .lock()
            .nodes
            .iter()
            .filter(|(_, n)| n.cordoned)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// One node's version changes, oldest first.
    pub fn versions(&self, node: &str) -> Vec<VersionChange> {
        self.state.lock().versions.get(node).cloned().unwrap_or_default()
    }

    /// What `node` reports for `component` now.
    pub fn current_version(&self, node: &str, component: &str) -> Option<String> {
        self.state
            .lock()
            .current
            .get(&(node.to_string(), component.to_string()))
            .cloned()
    }

    /// Forgets maxima, violations and events (not the current state or
    /// versions), so a test measures only what follows.
    pub fn reset(&self) {
        let mut s = self.state.lock();
        s.max.clear();
        s.violations.clear();
        s.events.clear();
        let unavailable = s.unavailable();
        for (role, nodes) in unavailable {
            s.max.insert(role, nodes.len());
        }
    }
}

impl super::engine::Engine {
    pub(crate) fn record_node(
        &mut self,
        name: &str,
        old: Option<&super::view::NodeView>,
        new: Option<&super::view::NodeView>,
    ) {
        let at = self.now();
        let rec = &self.shared.recorder;
        let state = |n: &super::view::NodeView| (n.unschedulable, n.ready);
        if old.map(state) != new.map(state) || old.is_none() || new.is_none() {
            rec.node(at, name, new.map(|n| (n.roles(), n.unschedulable, n.ready)));
        }
        let Some(n) = new else { return };
        if old.is_some_and(|o| o.node_info == n.node_info) {
            return;
        }
        for (field, component) in [
            ("kubeletVersion", "kubelet"),
            ("kubeProxyVersion", "kube-proxy"),
            ("containerRuntimeVersion", "container-runtime"),
            ("osImage", "os-image"),
            ("kernelVersion", "kernel"),
        ] {
            if let Some(v) = n.node_info[field].as_str() {
                rec.version(at, name, component, v);
            }
        }
    }

    pub(crate) fn record_pod(&mut self, old: Option<&super::view::PodView>, new: Option<&super::view::PodView>) {
        let Some(n) = new else { return };
        if !n.mirror || old.is_some_and(|o| o.image == n.image) {
            return;
        }
        let Some(node) = &n.node else { return };
        let component = n
            .stored
            .labels
            .iter()
            .find(|(k, _)| &**k == "component")
            .map(|(_, v)| v.to_string());
        if let (Some(c), Some((_, tag))) = (component, n.image.rsplit_once(':')) {
            let at = self.now();
            self.shared.recorder.version(at, node, &c, tag);
        }
    }
}

/// Progress records (`drover.dev/progress`, by node, in the order a watch
/// saw them) that went back to a state they had left: within one attempt
/// on a node (same upgrade and start time), a (generation, retries, phase,
/// component, rollback) seen before, then left, then seen again (a
/// rollback walks the same phases again, as a new state). A crash-safe
/// controller resumes where its record says and never repeats a step it
/// finished. Records that are not JSON are skipped.
pub fn record_regressions(records: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    type Attempt = (String, String);
    type State = (i64, u64, String, String, bool);
    let mut out = Vec::new();
    for (node, records) in records {
        let mut states: BTreeMap<Attempt, Vec<State>> = BTreeMap::new();
        for r in records {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(r) else {
                continue;
            };
            let attempt = (v["upgrade"].to_string(), v["started"].to_string());
            let state = (
                v["generation"].as_i64().unwrap_or(0),
                v["retries"].as_u64().unwrap_or(0),
                v["phase"].as_str().unwrap_or_default().to_string(),
                v["component"].as_str().unwrap_or_default().to_string(),
                v["rollback"].as_bool().unwrap_or(false),
            );
            let seen = states.entry(attempt).or_default();
            if seen.last() == Some(&state) {
                continue;
            }
            if seen.contains(&state) {
                out.push(format!("{node}: {seen:?} then back to {state:?}"));
            }
            seen.push(state);
        }
    }
    out
}

#[cfg(test)]
mod regression_tests {
    use super::*;

    fn rec(phase: &str, retries: u64) -> String {
        serde_json::json!({"upgrade": "u", "started": "t", "generation": 1, "retries": retries, "phase": phase, "component": "containerd"}).to_string()
    }

    #[test]
    fn a_record_back_at_a_state_it_left_is_a_regression_and_a_retry_is_not() {
        let mut m = BTreeMap::new();
        m.insert(
            "a".to_string(),
            vec![
                rec("Draining", 0),
                rec("Upgrading", 0),
                rec("Upgrading", 1),
                rec("Verifying", 1),
            ],
        );
        assert_eq!(record_regressions(&m), Vec::<String>::new());
        m.insert(
            "b".to_string(),
            vec![rec("Draining", 0), rec("Upgrading", 0), rec("Draining", 0)],
        );
        let found = record_regressions(&m);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("b: "), "{found:?}");
    }
}
