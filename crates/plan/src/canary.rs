//! The canary (spec.strategy.canary): the first workers of a target go
//! alone, then soak, then (with requireApproval) wait until
//! `spec.approvedCanary` names the target's canary hash. Which nodes are
//! canaries is kept on their records (`canary: <hash>`), so a restart or a
//! changed node list never picks others.

use drover_api::names::short_hash;
use drover_api::validate::resolve_max_unavailable;
use drover_api::{ClusterUpgradeSpec, Reason};
use jiff::Timestamp;

use crate::accept::Accepted;
use crate::gates::Hold;
use crate::node::add;
use crate::observe::Observation;
use crate::progress::NodePhase;
use crate::view::{Group, NodeView, Standing, ours};

/// The canary of the current target, as the records show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryState {
    /// What spec.approvedCanary must name.
    pub hash: String,
    /// How many canaries the target has.
    pub want: usize,
    /// The nodes started as canaries of this target, by name.
    pub nodes: Vec<String>,
    /// Of those, the ones Done.
    pub done: usize,
    /// Of those, the ones that failed (or are rolling back).
    pub failed: usize,
    /// When the soak ends, once every canary is Done.
    pub soak_until: Option<Timestamp>,
    pub approved: bool,
    pub require_approval: bool,
    /// Workers the selector admits (0: no canary can start).
    pub eligible: usize,
}

/// The canary hash of a spec: its target (`name=version,…`).
pub fn canary_hash(spec: &ClusterUpgradeSpec) -> String {
    short_hash(&drover_api::names::target_string(spec))
}

impl CanaryState {
    /// Every canary is Done.
    pub fn complete(&self) -> bool {
        self.done >= self.want
    }

    /// Upgrading, Soaking, AwaitingApproval, Approved, Passed or Failed.
    pub fn state(&self, now: Timestamp) -> &'static str {
        if self.failed > 0 {
            "Failed"
        } else if !self.complete() {
            "Upgrading"
        } else if self.soak_until.is_some_and(|t| now < t) {
            "Soaking"
        } else if self.require_approval && !self.approved {
            "AwaitingApproval"
        } else if self.require_approval {
            "Approved"
        } else {
            "Passed"
        }
    }

    /// What holds the workers after the canary, if anything.
    pub(crate) fn hold(&self, spec: &ClusterUpgradeSpec, now: Timestamp) -> Option<Hold> {
        if !self.complete() {
            return None;
        }
        if let Some(until) = self.soak_until.filter(|t| now < *t) {
            return Some(Hold {
                reason: Reason::Soaking,
                message: format!(
                    "the canary ({}) is upgraded; soaking for spec.strategy.canary.soak until {until}",
                    self.nodes.join(", ")
                ),
                stalled: false,
            });
        }
        (self.require_approval && !self.approved).then(|| Hold {
            reason: Reason::AwaitingApproval,
            message: format!(
                "the canary ({}) is upgraded and soaked; the other workers wait for approval: set spec.approvedCanary to {} (drover approve {}){}",
                self.nodes.join(", "),
                self.hash,
                "NAME",
                spec.approved_canary
                    .as_deref()
                    .map(|a| format!("; spec.approvedCanary is {a}, the hash of another target"))
                    .unwrap_or_default()
            ),
            stalled: false,
        })
    }
}

/// The canary of the current target, when the spec has one.
pub(crate) fn state(
    spec: &ClusterUpgradeSpec,
    obs: &Observation,
    accepted: &Accepted,
    views: &[NodeView],
) -> Option<CanaryState> {
    let c = spec.strategy.canary.as_ref()?;
    let hash = canary_hash(spec);
    let workers: Vec<&NodeView> = views
        .iter()
        .filter(|v| v.in_scope && v.group == Group::Worker)
        .collect();
    let eligible: Vec<&NodeView> = workers
        .iter()
        .copied()
        .filter(|v| accepted.canary_nodes.as_ref().is_none_or(|m| m.matches(&v.node.labels)))
        .collect();
    let canaries: Vec<&NodeView> = workers
        .iter()
        .copied()
        .filter(|v| ours(obs, v.node).is_some_and(|p| p.canary.as_deref() == Some(hash.as_str())))
        .collect();
    // As many as asked, of the eligible workers this target still has to
    // upgrade (or already took as canaries): workers already at the target
    // cannot be canaries, and must not make the canary wait forever.
    let open = eligible
        .iter()
        .filter(|v| v.state != Standing::Updated || canaries.iter().any(|c| c.node.name == v.node.name))
        .count();
    let want = resolve_max_unavailable(&c.nodes, workers.len()).unwrap_or(1).min(open);
    fn record<'a>(obs: &Observation, v: &NodeView<'a>) -> &'a crate::progress::NodeProgress {
        ours(obs, v.node).expect("a canary has a record")
    }
    let done = canaries
        .iter()
        .filter(|v| record(obs, v).phase == NodePhase::Done)
        .count();
    let failed = canaries
        .iter()
        .filter(|v| v.state == Standing::Failed || record(obs, v).failure.is_some())
        .count();
    let soak_until = (done >= want)
        .then(|| canaries.iter().filter_map(|v| record(obs, v).completed).max())
        .flatten()
        .map(|t| add(t, accepted.canary_soak));
    Some(CanaryState {
        approved: spec.approved_canary.as_deref() == Some(hash.as_str()),
        require_approval: c.require_approval,
        nodes: canaries.iter().map(|v| v.node.name.clone()).collect(),
        hash,
        want,
        done,
        failed,
        soak_until,
        eligible: eligible.len(),
    })
}
