//! A node as the planner sees it: its group, whether the spec selects it,
//! the components that apply to it in upgrade order, and where it stands.

use drover_api::known::{satisfied, stage_of, target_of};
use drover_api::selector::Matcher;
use drover_api::{ClusterUpgradeSpec, Component, NodeTarget, Stage};

use crate::observe::{Observation, ObservedNode};
use crate::progress::{NodePhase, NodeProgress};

/// The node groups, visited in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Etcd,
    ControlPlane,
    Worker,
}

impl Group {
    pub fn of(node: &ObservedNode) -> Group {
        if node.is_etcd() {
            Group::Etcd
        } else if node.is_control_plane() {
            Group::ControlPlane
        } else {
            Group::Worker
        }
    }
}

/// Where a node stands for this ClusterUpgrade (derived each pass from its
/// versions and its progress record's phase; `status.nodes[]` reports the
/// record itself, see `NodeProgress::reported_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Runs every desired version that applies to it.
    Updated,
    /// Needs at least one component upgraded.
    Pending,
    /// drover is working on it.
    InFlight,
    /// Failed under the current generation; retried when the spec changes.
    Failed,
    /// Another ClusterUpgrade is working on it.
    Foreign,
}

/// A node as the planner sees it.
#[derive(Debug, Clone)]
pub struct NodeView<'a> {
    pub node: &'a ObservedNode,
    pub group: Group,
    pub in_scope: bool,
    /// Node-level components that apply to it, in upgrade order, with versions.
    pub desired: Vec<(&'a Component, &'a str)>,
    /// Indices into `desired` whose live version differs.
    pub pending: Vec<usize>,
    pub state: Standing,
}

impl<'a> NodeView<'a> {
    /// The first pending component at or after position `from` in the node's order.
    pub(crate) fn next_component(&self, from: usize) -> Option<(&'a Component, &'a str)> {
        self.pending.iter().find(|i| **i >= from).map(|i| self.desired[*i])
    }

    pub(crate) fn position(&self, component: Option<&str>) -> Option<usize> {
        let name = component?;
        self.desired.iter().position(|(c, _)| c.name == name)
    }
}

/// The desired components of a node, in upgrade order.
fn desired_for<'a>(spec: &'a ClusterUpgradeSpec, node: &ObservedNode) -> Vec<(&'a Component, &'a str)> {
    let mut out: Vec<(Stage, usize, &Component)> = spec
        .components
        .iter()
        .enumerate()
        .filter(|(_, c)| c.upgrade.job.is_some())
        .filter_map(|(i, c)| Some((stage_of(c)?, i, c)))
        .filter(|(stage, _, c)| targets(c, *stage, node))
        .collect();
    out.sort_by_key(|(stage, i, _)| (*stage, *i));
    out.into_iter().map(|(_, _, c)| (c, c.version.as_str())).collect()
}

fn targets(c: &Component, stage: Stage, node: &ObservedNode) -> bool {
    match target_of(c, stage) {
        NodeTarget::EtcdMembers => node.is_etcd(),
        NodeTarget::ControlPlane => node.is_control_plane(),
        NodeTarget::Workers => node.is_worker(),
        NodeTarget::All => true,
    }
}

/// Whether a node-level component applies to a node (for the skew checks).
pub fn component_targets_node(c: &Component, node: &ObservedNode) -> bool {
    c.upgrade.job.is_some() && stage_of(c).is_some_and(|s| targets(c, s, node))
}

/// The node's progress record, when it is this ClusterUpgrade's.
pub(crate) fn ours<'p>(obs: &Observation, node: &'p ObservedNode) -> Option<&'p NodeProgress> {
    node.progress.as_ref().filter(|p| p.upgrade == obs.name)
}

pub(crate) fn view<'a>(
    spec: &'a ClusterUpgradeSpec,
    obs: &Observation,
    scope: &Matcher,
    node: &'a ObservedNode,
) -> NodeView<'a> {
    let desired = desired_for(spec, node);
    let pending: Vec<usize> = desired
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| !node.versions.get(&c.name).is_some_and(|live| satisfied(c, live)))
        .map(|(i, _)| i)
        .collect();
    let state = match (ours(obs, node), &node.progress) {
        // A newer drover's record: left alone, as another upgrade's would be.
        _ if node.newer_record.is_some() => Standing::Foreign,
        (Some(p), _) if p.phase.in_flight() => Standing::InFlight,
        (Some(p), _) if p.phase == NodePhase::Failed && p.generation == obs.generation => Standing::Failed,
        (None, Some(p)) if p.phase.in_flight() => Standing::Foreign,
        _ if pending.is_empty() => Standing::Updated,
        _ => Standing::Pending,
    };
    NodeView {
        node,
        group: Group::of(node),
        in_scope: scope.matches(&node.labels),
        desired,
        pending,
        state,
    }
}

/// Comma-separated names of the first five, for messages.
pub(crate) fn names(views: &[&NodeView]) -> String {
    let mut s: Vec<&str> = views.iter().take(5).map(|v| v.node.name.as_str()).collect();
    if views.len() > 5 {
        s.push("…");
    }
    s.join(", ")
}
