//! What the demo reads from status, one small helper each: conditions by
//! type and status, reasons as `drover_api::Reason`, node states as
//! `drover_api::NodeState`.

use drover_api::names::condition;
use drover_api::{ClusterUpgrade, NodeDetail, NodeState, Reason};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The condition of type `t`, if the status has one.
pub fn cond<'a>(cu: &'a ClusterUpgrade, t: &str) -> Option<&'a Condition> {
    cu.status.as_ref()?.conditions.iter().find(|c| c.type_ == t)
}

/// The status describes the current spec (its observed generation).
pub fn current(cu: &ClusterUpgrade) -> bool {
    cu.status.as_ref().and_then(|s| s.observed_generation) == cu.metadata.generation
}

/// A condition whose status is `True`.
pub fn is_true(c: &Condition) -> bool {
    c.status == "True"
}

/// The rollout is complete: Ready=True for the current spec.
pub fn ready(cu: &ClusterUpgrade) -> bool {
    current(cu) && cond(cu, condition::READY).is_some_and(is_true)
}

/// A condition that says a drain waits on a PodDisruptionBudget.
pub fn drain_blocked(c: &Condition) -> bool {
    Reason::parse(&c.reason) == Some(Reason::DrainBlocked)
}

/// A Stalled condition's reason when an upgrade Job or its verification failed.
pub fn upgrade_failed(c: &Condition) -> bool {
    matches!(
        Reason::parse(&c.reason),
        Some(Reason::UpgradeJobFailed | Reason::VerificationFailed)
    )
}

/// A node whose drain is blocked.
pub fn node_blocked(n: &NodeDetail) -> bool {
    n.state == NodeState::Blocked
}

/// A node whose step failed.
pub fn node_failed(n: &NodeDetail) -> bool {
    n.state == NodeState::Failed
}
