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
use crate::progress::Writer;
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
    /// A record of a later term than this pass's writer: the plan has no
    /// actions, and the replica must stop leading.
    pub superseded: Option<Superseded>,
    /// The canary of the current target, when the spec has one.
    pub canary: Option<crate::canary::CanaryState>,
}

/// A node record written under a later term than the writer this pass
/// plans for: another replica took the Lease since this one did, so this
/// one must stop acting. The controller's compare-and-swap on the record's
/// old text makes the check atomic per node: a write lands only on the
/// exact record the plan judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    pub node: String,
    /// Who wrote the later record, and under which term.
    pub writer: String,
    pub term: i64,
    /// The term this pass planned for.
    pub mine: i64,
}

impl std::fmt::Display for Superseded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {}'s progress record was written by {} under term {}, later than this replica's term {}: another replica has led since",
            self.node,
            if self.writer.is_empty() {
                "another replica"
            } else {
                &self.writer
            },
            self.term,
            self.mine
        )
    }
}

impl Plan<'_> {
    /// When to look again when nothing else wakes drover sooner: `busy`
    /// while actions are in flight, else as the hold or stage needs, and no
    /// later than the next retry of a failed step or the next try of a
    /// node's health checks.
    pub fn requeue_after(&self, busy: Duration, now: jiff::Timestamp) -> Duration {
        if !self.actions.is_empty() {
            return busy;
        }
        let retry = self
            .views
            .iter()
            .filter_map(|v| {
                let p = v.node.progress.as_ref()?;
                [p.retry_at, p.check_at].into_iter().flatten().min()
            })
            .min()
            .map(|t| Duration::try_from(t.duration_since(now)).unwrap_or_default());
        let usual = self.usual_requeue();
        retry.map_or(usual, |r| r.clamp(Duration::from_millis(200), usual))
    }

    fn usual_requeue(&self) -> Duration {
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

/// Decide, for the writer the observation names: every record the plan
/// builds carries its identity and term, and none is planned at all once a
/// node's record carries a later term.
pub fn plan<'a>(spec: &'a ClusterUpgradeSpec, obs: &'a Observation) -> Plan<'a> {
    let mut plan = decide(spec, obs);
    let Some(w) = &obs.writer else {
        // No leader election: the records name no one.
        for a in &mut plan.actions {
            a.written_by(&Writer::default());
        }
        return plan;
    };
    let later = obs
        .nodes
        .iter()
        .filter_map(|n| Some((n, n.progress.as_ref()?)))
        .filter(|(_, p)| p.term > w.term)
        .max_by_key(|(_, p)| p.term);
    if let Some((n, p)) = later {
        plan.actions.clear();
        plan.superseded = Some(Superseded {
            node: n.name.clone(),
            writer: p.writer.clone(),
            term: p.term,
            mine: w.term,
        });
        return plan;
    }
    for a in &mut plan.actions {
        a.written_by(w);
    }
    plan
}

fn decide<'a>(spec: &'a ClusterUpgradeSpec, obs: &'a Observation) -> Plan<'a> {
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
        superseded: None,
        canary: None,
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
            return hand_back_all(plan, spec, obs, views);
        }
    };
    if let Some(message) = conflict(obs, &in_scope) {
        plan.hold = Some(Hold {
            reason: Reason::Conflict,
            message,
            stalled: true,
        });
        return hand_back_all(plan, spec, obs, views);
    }

    let stage = stage::current(spec, obs, &views, &plan.backup);
    let canary = crate::canary::state(spec, obs, &accepted, &views);
    // Whether the rollout is halted: the failure gates look at the records
    // as observed, so they are known before any node continues.
    let gate = GateCtx {
        spec,
        obs,
        accepted: &accepted,
        views: &views,
    };
    let halt = gates::first(gates::FAILURES, &gate);
    let timing = gates::first(gates::TIMING, &gate);
    let node = NodeCtx {
        holds_new: timing.is_some(),
        spec,
        obs,
        accepted: &accepted,
        stage,
        failures: gate.failure_count(),
        // A newer drover's record holds new starts but is no halt: the
        // nodes in flight finish.
        halted: halt.as_ref().is_some_and(|h| h.reason != Reason::NewerRecord),
    };
    // Nodes already in flight continue (or are handed back).
    for v in &views {
        if v.state == Standing::InFlight {
            node.continue_node(v, &mut plan.actions);
        } else {
            release_if_held(obs, v, &mut plan.actions);
        }
    }

    let sched = schedule::Ctx {
        spec,
        obs,
        views: &views,
        last_nodes: accepted.last_nodes.as_ref(),
        backup: &plan.backup,
        backup_hash: &plan.backup_hash,
        canary: canary.as_ref(),
        canary_nodes: accepted.canary_nodes.as_ref(),
    };
    // rollback All: after a rollback, walk back what this target upgraded.
    let mut halt = halt;
    if spec.strategy.on_failure == drover_api::FailureAction::Rollback
        && spec.strategy.rollback == drover_api::RollbackScope::All
        && let Some(h) = halt.as_mut().filter(|h| h.reason == Reason::RolledBack)
    {
        let refused = schedule::rollback::schedule(&sched, &node, &mut plan.actions);
        h.message
            .push_str("; spec.strategy.rollback is All: every node this target upgraded is returned");
        if !refused.is_empty() {
            h.message.push_str(&format!(", except: {}", refused.join("; ")));
        }
    }

    // Whether anything new may start.
    plan.hold = match halt {
        Some(h) => Some(h),
        None if stage == RolloutStage::Complete => None,
        None => gates::first(gates::HEALTH, &gate)
            .or(timing)
            .or_else(|| schedule::start_work(&sched, stage, &mut plan.actions)),
    };
    plan.actions.extend(crate::steer::actions(spec, obs, &views, false));
    plan.stage = stage;
    plan.canary = canary;
    plan.accepted = Some(accepted);
    plan.views = views;
    plan
}

/// Refused or in conflict: touch nothing new, hand back every node drover holds.
fn hand_back_all<'a>(
    mut plan: Plan<'a>,
    spec: &ClusterUpgradeSpec,
    obs: &Observation,
    views: Vec<NodeView<'a>>,
) -> Plan<'a> {
    for v in &views {
        release_if_held(obs, v, &mut plan.actions);
    }
    plan.actions.extend(crate::steer::actions(spec, obs, &views, true));
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
            // Handed back when its drain halted the rollout: not upgraded, not failed.
            Standing::Failed
                if v.node
                    .progress
                    .as_ref()
                    .is_some_and(|p| p.halted && p.failure.is_none()) =>
            {
                "pending"
            }
            Standing::Failed => "failed",
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}
