//! Pods move once: while a rolling drain runs, every worker still to be
//! upgraded carries this ClusterUpgrade's `drover.dev/upgrade-pending`
//! taint (PreferNoSchedule), so the scheduler puts the replacements of
//! evicted pods on workers already upgraded (or outside the rollout) rather
//! than on a node that will be drained next. The taint comes off in the
//! same patch as the node's uncordon after its upgrade (or its failure);
//! every one of ours comes off when the node is upgraded,
//! handed back, out of scope, or the spec is refused. A halted or paused
//! rollout keeps the taints on the workers it still has to upgrade.

use drover_api::{ClusterUpgradeSpec, StrategyType};

use crate::action::Action;
use crate::observe::Observation;
use crate::progress::NodePhase;
use crate::view::{Group, NodeView, Standing, ours};

/// Whether `v` should carry our taint now.
fn wanted(spec: &ClusterUpgradeSpec, obs: &Observation, v: &NodeView) -> bool {
    if spec.strategy.type_ != StrategyType::Rolling || !spec.drain.enabled {
        return false;
    }
    if !v.in_scope || v.group != Group::Worker {
        return false;
    }
    match v.state {
        Standing::Pending => true,
        // Cordoned (or about to be) until the uncordon: no pod lands there anyway,
        // and keeping the taint until then saves a write.
        Standing::InFlight => ours(obs, v.node).is_some_and(|p| match p.phase {
            // The uncordon's own patch takes it off (one write, not two),
            // where drover undoes its cordon; elsewhere it comes off now.
            NodePhase::Uncordoning => v.node.uncordoned_by(&obs.name),
            NodePhase::PostUncordonHook | NodePhase::Checking | NodePhase::Done => false,
            _ => p.failure.is_none() && !p.rollback,
        }),
        _ => false,
    }
}

/// The taints to put on and take off. With `refused` (the spec is refused
/// or in conflict) every one of ours comes off.
pub(crate) fn actions(spec: &ClusterUpgradeSpec, obs: &Observation, views: &[NodeView], refused: bool) -> Vec<Action> {
    let mut out = Vec::new();
    for v in views {
        let mine = v.node.steered_by.as_deref() == Some(obs.name.as_str());
        // Another ClusterUpgrade's taint is its own to remove.
        if v.node.steered_by.is_some() && !mine {
            continue;
        }
        let want = !refused && wanted(spec, obs, v);
        if want != mine {
            out.push(Action::Steer {
                node: v.node.name.clone(),
                mark: want,
            });
        }
    }
    out
}
