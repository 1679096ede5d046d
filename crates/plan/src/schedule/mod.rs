//! Which new work starts now: one scheduler per stage. Each returns why
//! nothing could start, when that is worth saying.

mod backup;
mod members;
pub(crate) mod rollback;
pub(crate) mod workers;
mod workloads;

use drover_api::ClusterUpgradeSpec;
use drover_api::selector::Matcher;

use crate::action::Action;
use crate::gates::Hold;
use crate::observe::Observation;
use crate::stage::RolloutStage;
use crate::view::{NodeView, Standing};

/// What a scheduler looks at.
pub(crate) struct Ctx<'a> {
    pub spec: &'a ClusterUpgradeSpec,
    pub obs: &'a Observation,
    pub views: &'a [NodeView<'a>],
    pub last_nodes: Option<&'a Matcher>,
    pub backup: &'a drover_api::BackupState,
    pub backup_hash: &'a str,
    /// The canary, when the spec has one.
    pub canary: Option<&'a crate::canary::CanaryState>,
    /// spec.strategy.canary.selector, parsed.
    pub canary_nodes: Option<&'a Matcher>,
}

impl Ctx<'_> {
    fn any_in_flight(&self) -> bool {
        self.views.iter().any(|v| v.state == Standing::InFlight)
    }

    /// Order in which pending nodes of a group start: nodes someone else
    /// already cordoned first (they cost no budget), the nodes matching
    /// spec.strategy.lastNodeSelector and drover's own node last, then by name.
    fn start_order<'v, 'a>(&self, mut c: Vec<&'v NodeView<'a>>) -> Vec<&'v NodeView<'a>> {
        c.sort_by_key(|v| {
            let last = self.last_nodes.is_some_and(|m| m.matches(&v.node.labels));
            let is_self = self.obs.self_node.as_deref() == Some(v.node.name.as_str());
            (is_self, last, !v.node.unschedulable, v.node.name.clone())
        });
        c
    }
}

/// Start what the current stage allows.
pub(crate) fn start_work(ctx: &Ctx, stage: RolloutStage, actions: &mut Vec<Action>) -> Option<Hold> {
    match stage {
        RolloutStage::Complete => None,
        RolloutStage::Backup => backup::schedule(ctx, actions),
        RolloutStage::EtcdMembers | RolloutStage::ControlPlane => members::schedule(ctx, stage, actions),
        RolloutStage::ClusterComponents | RolloutStage::Addons => workloads::schedule(ctx, stage, actions),
        RolloutStage::Workers => workers::schedule(ctx, actions),
    }
}
