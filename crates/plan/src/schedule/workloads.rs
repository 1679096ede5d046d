//! ClusterComponents and Addons: one cluster-level workload at a time, in
//! spec order, when no node is in flight.

use drover_api::known::stage_of;
use drover_api::{Component, Reason, Stage};

use super::Ctx;
use crate::action::Action;
use crate::gates::Hold;
use crate::stage::{RolloutStage, workload_done};

pub(super) fn schedule(ctx: &Ctx, stage: RolloutStage, actions: &mut Vec<Action>) -> Option<Hold> {
    if ctx.any_in_flight() {
        return None;
    }
    let addons = stage == RolloutStage::Addons;
    let mut pending: Vec<(Stage, usize, &Component)> = ctx
        .spec
        .components
        .iter()
        .enumerate()
        .filter(|(_, c)| c.upgrade.workload.is_some() && !workload_done(ctx.obs, c))
        .filter_map(|(i, c)| Some((stage_of(c)?, i, c)))
        .filter(|(s, _, _)| (*s == Stage::Addons) == addons)
        .collect();
    pending.sort_by_key(|(s, i, _)| (*s, *i));
    let (_, _, c) = pending.first()?;
    if let Some(message) = ctx.obs.workloads.get(&c.name).and_then(|w| w.failed.clone()) {
        return Some(Hold {
            reason: Reason::RolloutFailed,
            message: format!("the rollout of {} to {} failed: {message}", c.name, c.version),
            stalled: true,
        });
    }
    actions.push(Action::UpgradeWorkload {
        component: c.name.clone(),
        version: c.version.clone(),
    });
    None
}
