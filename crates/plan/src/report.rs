//! The status to write: conditions, counts, per-component figures, the
//! nodes in progress or failed, times and history.

use drover_api::known::{satisfied, stage_of};
use drover_api::names::{backup_job_name, condition};
use drover_api::version::same_version;
use drover_api::{
    BackupState, BackupStatus, CanaryStatus, ClusterUpgradeSpec, ClusterUpgradeStatus, Component, ComponentStatus,
    Installer, LeftCordoned, MAX_HISTORY, MAX_INSTALLERS, MAX_NODE_DETAILS, NodeCounts, NodeDetail, NodeState, Reason,
    RolledBackNode, RolloutRecord,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::decide::{Plan, count_states};
use crate::observe::Observation;
use crate::progress::NodePhase;
use crate::stage::RolloutStage;
use crate::view::Standing;

/// A condition before timestamps are settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub type_: &'static str,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

/// Set conditions, keeping `lastTransitionTime` where the status did not
/// change so a steady state writes nothing new.
pub fn merge_conditions(previous: &[Condition], wanted: &[Wanted], generation: i64, now: Timestamp) -> Vec<Condition> {
    wanted
        .iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: w.type_.to_string(),
                status: status.to_string(),
                reason: w.reason.to_string(),
                message: w.message.clone(),
                last_transition_time: since,
                observed_generation: Some(generation),
            }
        })
        .collect()
}

fn wanted(type_: &'static str, status: bool, reason: Reason, message: &str) -> Wanted {
    Wanted {
        type_,
        status,
        reason,
        message: message.to_string(),
    }
}

/// Ready, Reconciling and Stalled for this plan. They share a reason; each
/// message says what its condition owns, so no text is said three times:
/// Ready how far the nodes are from the target, Reconciling what drover is
/// doing now, Stalled what needs a human.
pub fn conditions(spec: &ClusterUpgradeSpec, plan: &Plan, counts: &NodeCounts, complete: bool) -> Vec<Wanted> {
    let target = &plan.target;
    let nothing_wrong = "nothing needs a human";
    let ready = |why: &str| {
        format!(
            "{} of {} nodes in scope run {target} ({} updating, {} failed); {why}",
            counts.updated, counts.in_scope, counts.updating, counts.failed
        )
    };
    if let Some(r) = &plan.refusal {
        return vec![
            wanted(
                condition::READY,
                false,
                r.reason,
                &ready("the spec is refused (see the Stalled condition)"),
            ),
            wanted(
                condition::RECONCILING,
                false,
                r.reason,
                "not working: drover starts nothing and changes nothing until the spec is fixed",
            ),
            wanted(
                condition::STALLED,
                true,
                r.reason,
                &format!(
                    "the spec is refused; fix it and drover goes on: {}",
                    r.problems.join("; ")
                ),
            ),
        ];
    }
    if complete {
        return vec![
            wanted(
                condition::READY,
                true,
                Reason::Completed,
                &format!("all {} nodes in scope run {target}", counts.in_scope),
            ),
            wanted(condition::RECONCILING, false, Reason::Completed, "nothing left to do"),
            wanted(condition::STALLED, false, Reason::AsExpected, nothing_wrong),
        ];
    }
    if let Some(failed) = over_with_failures(plan, counts) {
        let r = Reason::CompletedWithFailures;
        return vec![
            wanted(
                condition::READY,
                false,
                r,
                &ready("the rollout is over with failures (see the Stalled condition)"),
            ),
            wanted(
                condition::RECONCILING,
                false,
                r,
                "nothing left to do: every other node runs the target",
            ),
            wanted(
                condition::STALLED,
                true,
                r,
                &format!(
                    "the rollout is over, but {} {} not upgraded and {} the old versions (spec.strategy.maxFailures {} tolerated {}): {failed}; fix the cause and change the spec to try {} again",
                    counts.failed,
                    if counts.failed == 1 { "node was" } else { "nodes were" },
                    if counts.failed == 1 { "keeps" } else { "keep" },
                    spec.strategy.max_failures,
                    if counts.failed == 1 { "it" } else { "them" },
                    if counts.failed == 1 { "it" } else { "them" },
                ),
            ),
        ];
    }
    let stage = plan.stage.as_str();
    match &plan.hold {
        Some(h) if h.stalled => vec![
            wanted(
                condition::READY,
                false,
                h.reason,
                &ready(&format!("stalled at stage {stage} (see the Stalled condition)")),
            ),
            wanted(
                condition::RECONCILING,
                false,
                h.reason,
                &format!(
                    "not progressing: no new node starts until what the Stalled condition names is resolved; {} nodes in progress finish",
                    counts.updating
                ),
            ),
            wanted(condition::STALLED, true, h.reason, &h.message),
        ],
        // Paused half-way is not done: Reconciling stays True, so kstatus
        // (Flux) reads InProgress until the target is reached.
        Some(h) if h.reason == Reason::Paused => vec![
            wanted(
                condition::READY,
                false,
                Reason::Paused,
                &ready(&format!("paused at stage {stage}")),
            ),
            wanted(condition::RECONCILING, true, Reason::Paused, &h.message),
            wanted(
                condition::STALLED,
                false,
                Reason::Paused,
                "nothing needs a human; set spec.paused to false to resume",
            ),
        ],
        hold => {
            // A drain that is blocked but not yet past its timeout is said, not stalled.
            let blocked = plan
                .views
                .iter()
                .filter(|v| v.state == Standing::InFlight)
                .filter_map(|v| v.node.progress.as_ref().map(|p| (v, p)))
                .find(|(_, p)| p.phase == NodePhase::Draining && !p.message.is_empty());
            let retrying = plan
                .views
                .iter()
                .filter(|v| v.state == Standing::InFlight)
                .filter_map(|v| v.node.progress.as_ref().map(|p| (v, p)))
                .find(|(_, p)| p.retry_at.is_some());
            let (r, doing) = match (hold, blocked) {
                (Some(h), _) => (h.reason, h.message.clone()),
                (None, None) if retrying.is_some() => {
                    let (v, p) = retrying.expect("checked");
                    (Reason::Retrying, format!("{}: {}", v.node.name, p.message))
                }
                (None, Some((v, p))) => (
                    Reason::DrainBlocked,
                    format!("draining {} (attempt {}): {}", v.node.name, p.attempts, p.message),
                ),
                (None, None) => (
                    Reason::RollingOut,
                    format!("upgrading stage {stage}: {} nodes in progress", counts.updating),
                ),
            };
            vec![
                wanted(condition::READY, false, r, &ready(&format!("stage {stage}"))),
                wanted(condition::RECONCILING, true, r, &doing),
                wanted(condition::STALLED, false, Reason::AsExpected, nothing_wrong),
            ]
        }
    }
}

/// A workload component's figures: its workloads at the version (a
/// one-workload component counts as 1) and, until done, the first lagging.
fn workload_status(c: &Component, obs: &Observation, stage: String) -> ComponentStatus {
    let seen = obs.workloads.get(&c.name);
    let done = seen.is_some_and(|w| w.rolled_out && w.version.as_deref().is_some_and(|v| same_version(v, &c.version)));
    let (updated, total) = match seen {
        Some(w) if w.total > 1 => (if done { w.total } else { w.updated.min(w.total) }, w.total),
        _ => (done as usize, 1),
    };
    ComponentStatus {
        name: c.name.clone(),
        stage,
        desired: c.version.clone(),
        updated: updated as i32,
        total: total as i32,
        message: if done {
            None
        } else {
            seen.and_then(|w| w.lagging.clone())
        },
    }
}

/// The failed nodes, named, when the rollout is over except for failures
/// maxFailures tolerated: nothing in flight, nothing left to start.
fn over_with_failures(plan: &Plan, counts: &NodeCounts) -> Option<String> {
    if plan.refusal.is_some()
        || plan.stage != RolloutStage::Complete
        || plan.hold.is_some()
        || counts.failed == 0
        || counts.updating > 0
    {
        return None;
    }
    let failed: Vec<String> = plan
        .views
        .iter()
        .filter(|v| v.in_scope && v.state == Standing::Failed)
        .filter_map(|v| {
            let f = v.node.progress.as_ref()?.failure.as_ref()?;
            Some(format!(
                "{} ({} at {}{})",
                v.node.name,
                f.reason,
                f.step,
                f.component.as_ref().map(|c| format!(" of {c}")).unwrap_or_default()
            ))
        })
        .collect();
    let shown = failed.len().min(10);
    let more = failed.len() - shown;
    let mut s = failed[..shown].join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    Some(s)
}

/// Every node drover left cordoned on purpose, and why.
fn left_cordoned(spec: &ClusterUpgradeSpec, obs: &Observation, plan: &Plan) -> Vec<LeftCordoned> {
    let keep = spec.strategy.on_halt == drover_api::HaltAction::KeepCordoned;
    let mut out: Vec<LeftCordoned> = plan
        .views
        .iter()
        .filter(|v| v.node.unschedulable && v.node.cordoned_by.as_deref() == Some(obs.name.as_str()))
        .filter_map(|v| {
            let p = v.node.progress.as_ref().filter(|p| p.upgrade == obs.name);
            let reason = if let Some(why) = v.node.kept_by_admin() {
                why
            } else if let Some(why) = p.and_then(|p| p.left_cordoned.clone()) {
                why
            } else if let Some(p) = p.filter(|p| keep && p.halted && p.phase.in_flight()) {
                format!(
                    "its drain halted the rollout (spec.drain.onTimeout Halt) and spec.strategy.onHalt is KeepCordoned: {}",
                    p.message
                )
            } else {
                return None;
            };
            Some(LeftCordoned {
                name: v.node.name.clone(),
                reason,
            })
        })
        .collect();
    out.truncate(MAX_NODE_DETAILS);
    out
}

/// The whole status for this plan.
pub fn status(spec: &ClusterUpgradeSpec, obs: &Observation, plan: &Plan) -> ClusterUpgradeStatus {
    let states = count_states(&plan.views);
    let get = |k: &str| *states.get(k).unwrap_or(&0) as i32;
    let in_scope: Vec<_> = plan.views.iter().filter(|v| v.in_scope).collect();
    let counts = NodeCounts {
        in_scope: in_scope.len() as i32,
        updated: get("updated"),
        updating: get("updating"),
        failed: get("failed"),
        skipped: plan
            .views
            .iter()
            .filter(|v| v.in_scope && matches!(v.state, Standing::Failed | Standing::InFlight))
            .filter(|v| {
                v.node
                    .progress
                    .as_ref()
                    .is_some_and(|p| p.reported_state() == NodeState::Skipped)
            })
            .count() as i32,
        pending: get("pending"),
        unavailable: in_scope.iter().filter(|v| v.node.unavailable()).count() as i32,
    };

    let components: Vec<ComponentStatus> = spec
        .components
        .iter()
        .map(|c| {
            let stage = stage_of(c).map(|s| s.to_string()).unwrap_or_default();
            if c.upgrade.workload.is_some() {
                workload_status(c, obs, stage)
            } else {
                let targeted: Vec<_> = in_scope
                    .iter()
                    .filter(|v| v.desired.iter().any(|(d, _)| d.name == c.name))
                    .collect();
                let updated = targeted
                    .iter()
                    .filter(|v| v.node.versions.get(&c.name).is_some_and(|live| satisfied(c, live)))
                    .count();
                ComponentStatus {
                    name: c.name.clone(),
                    stage,
                    desired: c.version.clone(),
                    updated: updated as i32,
                    total: targeted.len() as i32,
                    message: None,
                }
            }
        })
        .collect();

    let complete = plan.refusal.is_none()
        && plan.stage == RolloutStage::Complete
        && counts.failed == 0
        && counts.updating == 0
        && plan.hold.is_none();
    let over = complete || over_with_failures(plan, &counts).is_some();

    // Nodes in progress or failed: failed and blocked first, then by name.
    let mut details: Vec<NodeDetail> = plan
        .views
        .iter()
        .filter(|v| matches!(v.state, Standing::InFlight | Standing::Failed))
        .filter_map(|v| {
            let p = v.node.progress.as_ref()?;
            let state = p.reported_state();
            let (step, message) = match &p.failure {
                Some(f) => (f.step.clone(), format!("{}: {}", f.reason, f.message)),
                None => (p.phase.step().to_string(), p.message.clone()),
            };
            Some(NodeDetail {
                name: v.node.name.clone(),
                state,
                step,
                component: p
                    .failure
                    .as_ref()
                    .and_then(|f| f.component.clone())
                    .or_else(|| p.component.clone()),
                message,
                since: Time(p.since),
                attempts: p.attempts as i32,
                retries: p.retries as i32,
                next_retry: p.retry_at.map(Time),
            })
        })
        .collect();
    details.sort_by_key(|d| (d.state == NodeState::InProgress, d.name.clone()));
    let omitted = details.len().saturating_sub(MAX_NODE_DETAILS);
    details.truncate(MAX_NODE_DETAILS);

    let previous = obs.previous.as_ref();
    let same_target = previous.and_then(|p| p.target.as_deref()) == Some(plan.target.as_str());
    let start_time = previous
        .filter(|_| same_target)
        .and_then(|p| p.start_time.clone())
        .unwrap_or(Time(obs.now));
    let completion_time = over.then(|| {
        previous
            .filter(|_| same_target)
            .and_then(|p| p.completion_time.clone())
            .unwrap_or(Time(obs.now))
    });
    let mut history = previous.map(|p| p.history.clone()).unwrap_or_default();
    if let Some(p) = previous.filter(|_| !same_target)
        && let (Some(target), Some(started)) = (&p.target, &p.start_time)
    {
        history.insert(
            0,
            RolloutRecord {
                target: target.clone(),
                generation: p.observed_generation.unwrap_or_default(),
                start_time: started.clone(),
                completion_time: p.completion_time.clone(),
                result: match &p.completion_time {
                    Some(_) if p.conditions.iter().any(|c| c.reason == Reason::CompletedWithFailures) => {
                        "CompletedWithFailures"
                    }
                    Some(_) => "Completed",
                    None => "Superseded",
                }
                .into(),
            },
        );
        history.truncate(MAX_HISTORY);
    }

    let backup = spec.backup.as_ref().map(|_| {
        let (state, message) = match &plan.backup {
            BackupState::NotStarted => ("Pending", String::new()),
            BackupState::Running => ("Running", String::new()),
            BackupState::Succeeded => ("Succeeded", String::new()),
            BackupState::Failed(m) => ("Failed", m.clone()),
        };
        BackupStatus {
            job: backup_job_name(&obs.name, &plan.backup_hash),
            state: state.into(),
            message,
        }
    });

    let wanted = conditions(spec, plan, &counts, complete);
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or_default();
    ClusterUpgradeStatus {
        observed_generation: Some(obs.generation),
        conditions: merge_conditions(previous_conditions, &wanted, obs.generation, obs.now),
        target: Some(plan.target.clone()),
        progress: Some(format!("{}/{}", counts.updated, counts.in_scope)),
        stage: Some(
            if plan.refusal.is_some() {
                "Refused"
            } else {
                plan.stage.as_str()
            }
            .to_string(),
        ),
        counts,
        components,
        nodes: details,
        nodes_omitted: omitted as i32,
        backup,
        start_time: Some(start_time),
        completion_time,
        history,
        left_cordoned: left_cordoned(spec, obs, plan),
        canary: canary(obs, plan),
        installers: installers(spec, previous),
        rolled_back: rolled_back(obs, plan),
    }
}

/// status.canary: the canary's nodes and state, and what the health
/// checks last said on each canary still being checked.
fn canary(obs: &Observation, plan: &Plan) -> Option<CanaryStatus> {
    let c = plan.canary.as_ref()?;
    let observed = plan
        .views
        .iter()
        .filter(|v| c.nodes.contains(&v.node.name))
        .filter_map(|v| {
            let p = v.node.progress.as_ref().filter(|p| p.upgrade == obs.name)?;
            let checks: Vec<String> = p.passes.iter().map(|(k, n)| format!("{k} passed {n}×")).collect();
            let said = match (&p.failure, p.phase) {
                (Some(f), _) => format!("{}: {} ({})", v.node.name, f.message, f.reason),
                (None, NodePhase::Done) => format!("{}: upgraded and every health check passed", v.node.name),
                (None, _) if !p.message.is_empty() => format!("{}: {}", v.node.name, p.message),
                (None, phase) => format!("{}: at {}", v.node.name, phase.step()),
            };
            Some(if checks.is_empty() || p.phase == NodePhase::Done {
                said
            } else {
                format!("{said} [{}]", checks.join(", "))
            })
        })
        .collect();
    Some(CanaryStatus {
        hash: c.hash.clone(),
        nodes: c.nodes.clone(),
        state: c.state(obs.now).to_string(),
        soak_until: c.soak_until.map(Time),
        observed,
    })
}

/// status.rolledBack: nodes this rollout returned to their previous versions.
fn rolled_back(obs: &Observation, plan: &Plan) -> Vec<RolledBackNode> {
    let mut out: Vec<RolledBackNode> = plan
        .views
        .iter()
        .filter_map(|v| {
            let p = v
                .node
                .progress
                .as_ref()
                .filter(|p| p.upgrade == obs.name && p.generation == obs.generation)?;
            let f = p.failure.as_ref().filter(|f| f.reason == Reason::RolledBack)?;
            // What it was returned to: the previous versions that differ from the target.
            let versions: Vec<String> = p
                .previous
                .iter()
                .filter(|(c, prev)| v.desired.iter().any(|(d, want)| d.name == **c && want != *prev))
                .map(|(c, prev)| format!("{c}={prev}"))
                .collect();
            Some(RolledBackNode {
                name: v.node.name.clone(),
                versions: versions.join(","),
                reason: f.message.clone(),
            })
        })
        .collect();
    out.truncate(MAX_NODE_DETAILS);
    out
}

/// The current spec's upgrade Jobs first, then those kept from before
/// (one per component and version, newest first).
fn installers(spec: &ClusterUpgradeSpec, previous: Option<&ClusterUpgradeStatus>) -> Vec<Installer> {
    let current = spec.components.iter().filter_map(|c| {
        Some(Installer {
            component: c.name.clone(),
            version: c.version.clone(),
            job: c.upgrade.job.clone()?,
        })
    });
    let kept = previous.map(|p| p.installers.clone()).unwrap_or_default();
    let mut out: Vec<Installer> = Vec::new();
    for i in current.chain(kept) {
        if !out.iter().any(|o| o.component == i.component && o.version == i.version) {
            out.push(i);
        }
    }
    out.truncate(MAX_INSTALLERS);
    out
}
