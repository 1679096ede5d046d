//! The decision: from a spec and an observation to the stage, the actions
//! to take now and the status to report. Pure and deterministic: the same
//! inputs always give the same plan. See docs/api.md for the rules in prose.
//!
//! One pass: accept the spec ([`crate::accept`]), see every node
//! ([`crate::view`]), continue the nodes in flight ([`crate::node`]), run
//! the gates ([`crate::gates`]) and, when none holds, the current stage's
//! scheduler ([`crate::schedule`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use drover_api::names::{backup_hash, backup_job_name, target_string};
use drover_api::{BackupState, ClusterUpgradeSpec, Reason};

use crate::accept::{Accepted, Refusal, accept, scope};
use crate::action::Action;
use crate::gates::{self, GateCtx, Hold};
use crate::node::{NodeCtx, release_if_held};
use crate::observe::Observation;
use crate::schedule;
use crate::stage::{self, RolloutStage};
use crate::view::{NodeView, Standing, view};

/// The planner's answer.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub refusal: Option<Refusal>,
    /// The spec as accepted (None when refused).
    pub accepted: Option<Accepted>,
    pub stage: RolloutStage,
    pub actions: Vec<Action>,
    pub hold: Option<Hold>,
    pub views: Vec<NodeView<'a>>,
    /// `name=version,…` of the spec.
    pub target: String,
    /// A short stable hash of the target and of what the backup Job runs,
    /// naming the backup Job (`names::backup_hash`).
    pub backup_hash: String,
    /// The backup Job of this target, as observed.
    pub backup: BackupState,
}

impl Plan<'_> {
    /// When to look again when nothing else wakes drover sooner: `busy`
    /// while actions are in flight, else as the hold or stage needs.
    pub fn requeue_after(&self, busy: Duration) -> Duration {
        if !self.actions.is_empty() {
            return busy;
        }
        match self.hold.as_ref().map(|h| h.reason) {
            Some(Reason::Soaking | Reason::BackingUp) => Duration::from_secs(5),
            Some(Reason::OutsideWindow) => Duration::from_secs(60),
            _ if self.stage != RolloutStage::Complete => Duration::from_secs(10),
            _ => Duration::from_secs(300),
        }
    }
}

/// An older ClusterUpgrade selecting some of the same nodes, if any.
fn conflict(obs: &Observation, scope: &BTreeSet<&str>) -> Option<String> {
    obs.others
        .iter()
        .filter(|o| (o.created, o.name.as_str()) < (obs.created, obs.name.as_str()))
        .find_map(|o| {
            let shared: Vec<&str> = o.nodes.iter().map(String::as_str).filter(|n| scope.contains(n)).collect();
            (!shared.is_empty()).then(|| {
                format!(
                    "ClusterUpgrade {} (older) also selects {} of these nodes ({}); narrow spec.nodeSelector so the two do not overlap, or delete one",
                    o.name,
                    shared.len(),
                    shared.iter().take(3).copied().collect::<Vec<_>>().join(", ")
                )
            })
        })
}

/// Decide.
pub fn plan<'a>(spec: &'a ClusterUpgradeSpec, obs: &'a Observation) -> Plan<'a> {
    let target = target_string(spec);
    let backup_hash = backup_hash(spec);
    let backup = obs
        .backups
        .get(&backup_job_name(&obs.name, &backup_hash))
        .cloned()
        .unwrap_or_default();
    let selects = scope(spec);
    let mut views: Vec<NodeView> = obs.nodes.iter().map(|n| view(spec, obs, &selects, n)).collect();
    views.sort_by(|a, b| a.node.name.cmp(&b.node.name));
    let mut plan = Plan {
        refusal: None,
        accepted: None,
        stage: RolloutStage::Backup,
        actions: Vec::new(),
        hold: None,
        views: Vec::new(),
        target,
        backup_hash,
        backup,
    };
    let in_scope: BTreeSet<&str> = views
        .iter()
        .filter(|v| v.in_scope)
        .map(|v| v.node.name.as_str())
        .collect();
    let accepted = match accept(spec, obs, &selects) {
        Ok(a) => a,
        Err(r) => {
            plan.refusal = Some(r);
            return hand_back_all(plan, obs, views);
        }
    };
    if let Some(message) = conflict(obs, &in_scope) {
        plan.hold = Some(Hold {
            reason: Reason::Conflict,
            message,
            stalled: true,
        });
        return hand_back_all(plan, obs, views);
    }

    let stage = stage::current(spec, obs, &views, &plan.backup);
    let node = NodeCtx {
        spec,
        obs,
        accepted: &accepted,
        stage,
    };
    // Nodes already in flight continue (or are handed back).
    for v in &views {
        if v.state == Standing::InFlight {
            node.continue_node(v, &mut plan.actions);
        } else {
            release_if_held(obs, v, &mut plan.actions);
        }
    }

    // Whether anything new may start.
    let gate = GateCtx {
        spec,
        obs,
        accepted: &accepted,
        views: &views,
    };
    plan.hold = match gates::first(gates::FAILURES, &gate) {
        Some(h) => Some(h),
        None if stage == RolloutStage::Complete => None,
        None => gates::first(gates::TIMING, &gate).or_else(|| {
            let ctx = schedule::Ctx {
                spec,
                obs,
                views: &views,
                last_nodes: accepted.last_nodes.as_ref(),
                backup: &plan.backup,
                backup_hash: &plan.backup_hash,
            };
            schedule::start_work(&ctx, stage, &mut plan.actions)
        }),
    };
    plan.stage = stage;
    plan.accepted = Some(accepted);
    plan.views = views;
    plan
}

/// Refused or in conflict: touch nothing new, hand back every node drover holds.
fn hand_back_all<'a>(mut plan: Plan<'a>, obs: &Observation, views: Vec<NodeView<'a>>) -> Plan<'a> {
    for v in &views {
        release_if_held(obs, v, &mut plan.actions);
    }
    plan.views = views;
    plan
}

/// Node counts by standing, for the status.
pub fn count_states(views: &[NodeView]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for v in views.iter().filter(|v| v.in_scope) {
        let k = match v.state {
            Standing::Updated => "updated",
            Standing::Pending | Standing::Foreign => "pending",
            // A node being handed back after a failure counts as failed already.
            Standing::InFlight if v.node.progress.as_ref().is_some_and(|p| p.failure.is_some()) => "failed",
            Standing::InFlight => "updating",
            Standing::Failed => "failed",
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}
