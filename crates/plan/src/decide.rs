//! The decision: from a spec and an observation to the stage, the actions
//! to take now and the status to report. Pure and deterministic: the same
//! inputs always give the same plan.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use drover_api::known::{stage_of, target_of};
use drover_api::names::reason;
use drover_api::validate::{parse_duration, resolve_max_unavailable, validate, validate_name};
use drover_api::version::same_version;
use drover_api::{ClusterUpgradeSpec, Component, DrainTimeoutAction, NodeTarget, Stage, StrategyType};
use jiff::Timestamp;

use crate::observe::{BackupState, Observation, ObservedNode};
use crate::progress::{Failure, NodePhase, NodeProgress, Outcome};
use crate::selector;
use crate::skew;
use crate::window;

/// The rollout's stages, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RolloutStage {
    Backup,
    EtcdMembers,
    ControlPlane,
    ClusterComponents,
    Workers,
    Addons,
    Complete,
}

impl RolloutStage {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStage::Backup => "Backup",
            RolloutStage::EtcdMembers => "EtcdMembers",
            RolloutStage::ControlPlane => "ControlPlane",
            RolloutStage::ClusterComponents => "ClusterComponents",
            RolloutStage::Workers => "Workers",
            RolloutStage::Addons => "Addons",
            RolloutStage::Complete => "Complete",
        }
    }
}

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

    fn stage(self) -> RolloutStage {
        match self {
            Group::Etcd => RolloutStage::EtcdMembers,
            Group::ControlPlane => RolloutStage::ControlPlane,
            Group::Worker => RolloutStage::Workers,
        }
    }
}

/// One thing to do now.
// A handful of these per pass: boxing the records would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record that drover starts on this node (the annotation); its first
    /// step follows on the next pass.
    Start { node: String, progress: NodeProgress },
    /// Perform one step on a node drover is working on. When the step
    /// reports Done, write `on_done` (None: remove the record).
    Step {
        node: String,
        step: Step,
        progress: NodeProgress,
        on_done: Option<NodeProgress>,
    },
    /// Bring a cluster-level workload to `version` and await its rollout.
    UpgradeWorkload { component: String, version: String },
    /// Make sure the backup Job for this target exists.
    RunBackup,
}

impl Action {
    pub fn node(&self) -> Option<&str> {
        match self {
            Action::Start { node, .. } | Action::Step { node, .. } => Some(node),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Cordon,
    Drain,
    Upgrade {
        component: String,
        version: String,
    },
    Verify {
        component: String,
        version: String,
    },
    /// Make the node schedulable again, but only if drover cordoned it:
    /// `undo_cordon` is false for a node someone else cordoned.
    Uncordon {
        undo_cordon: bool,
    },
}

/// Why a spec is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// InvalidSpec or SkewViolation.
    pub reason: &'static str,
    pub problems: Vec<String>,
}

/// Where a node stands for this ClusterUpgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
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
    pub state: NodeState,
}

/// What stops new nodes from starting, when something does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub reason: &'static str,
    pub message: String,
    /// Needs a human (Stalled) rather than time (Reconciling).
    pub stalled: bool,
}

/// The planner's answer.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub refusal: Option<Refusal>,
    pub stage: RolloutStage,
    pub actions: Vec<Action>,
    pub hold: Option<Hold>,
    pub views: Vec<NodeView<'a>>,
    /// `name=version,…` of the spec.
    pub target: String,
    /// A short stable hash of the target, for naming per-target objects (the backup Job).
    pub target_hash: String,
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

pub fn target_string(spec: &ClusterUpgradeSpec) -> String {
    spec.components
        .iter()
        .map(|c| format!("{}={}", c.name, c.version))
        .collect::<Vec<_>>()
        .join(",")
}

/// FNV-1a, 64 bits, as 12 hex digits: stable across builds and platforms.
pub fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

fn ours<'p>(obs: &Observation, node: &'p ObservedNode) -> Option<&'p NodeProgress> {
    node.progress.as_ref().filter(|p| p.upgrade == obs.name)
}

fn view<'a>(spec: &'a ClusterUpgradeSpec, obs: &Observation, node: &'a ObservedNode) -> NodeView<'a> {
    let in_scope = spec
        .node_selector
        .as_ref()
        .is_none_or(|s| selector::matches(s, &node.labels));
    let desired = desired_for(spec, node);
    let pending: Vec<usize> = desired
        .iter()
        .enumerate()
        .filter(|(_, (c, want))| !node.versions.get(&c.name).is_some_and(|live| same_version(live, want)))
        .map(|(i, _)| i)
        .collect();
    let state = match (ours(obs, node), &node.progress) {
        (Some(p), _) if p.phase.in_flight() => NodeState::InFlight,
        (Some(p), _) if p.phase == NodePhase::Failed && p.generation == obs.generation => NodeState::Failed,
        (None, Some(p)) if p.phase.in_flight() => NodeState::Foreign,
        _ if pending.is_empty() => NodeState::Updated,
        _ => NodeState::Pending,
    };
    NodeView {
        node,
        group: Group::of(node),
        in_scope,
        desired,
        pending,
        state,
    }
}

/// Check the spec before anything is touched.
pub fn refusal(spec: &ClusterUpgradeSpec, obs: &Observation) -> Option<Refusal> {
    let mut problems: Vec<String> = validate_name(&obs.name).err().iter().map(|e| e.to_string()).collect();
    if let Err(errors) = validate(spec) {
        problems.extend(errors.iter().map(|e| e.to_string()));
    }
    if !problems.is_empty() {
        return Some(Refusal {
            reason: reason::INVALID_SPEC,
            problems,
        });
    }
    let in_scope: Vec<&ObservedNode> = obs
        .nodes
        .iter()
        .filter(|n| {
            spec.node_selector
                .as_ref()
                .is_none_or(|s| selector::matches(s, &n.labels))
        })
        .collect();
    let workload_version = |name: &str| obs.workloads.get(name).and_then(|w| w.version.clone());
    let violations = skew::check(spec, &in_scope, &obs.nodes, &workload_version, &component_targets_node);
    (!violations.is_empty()).then(|| Refusal {
        reason: reason::SKEW_VIOLATION,
        problems: violations.into_iter().map(|v| v.message).collect(),
    })
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

fn duration_or_zero(s: &str) -> Duration {
    parse_duration(s).unwrap_or_default()
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Decide. See docs/api.md for the rules in prose.
pub fn plan<'a>(spec: &'a ClusterUpgradeSpec, obs: &'a Observation) -> Plan<'a> {
    let target = target_string(spec);
    let target_hash = short_hash(&target);
    let mut views: Vec<NodeView> = obs.nodes.iter().map(|n| view(spec, obs, n)).collect();
    views.sort_by(|a, b| a.node.name.cmp(&b.node.name));
    let refusal = refusal(spec, obs);
    let scope: BTreeSet<&str> = views
        .iter()
        .filter(|v| v.in_scope)
        .map(|v| v.node.name.as_str())
        .collect();
    let conflict = if refusal.is_none() { conflict(obs, &scope) } else { None };

    let mut actions = Vec::new();
    let mut hold = None;

    // Refused or in conflict: touch nothing new, hand back every node drover holds.
    if refusal.is_some() || conflict.is_some() {
        for v in &views {
            release_if_held(obs, v, &mut actions);
        }
        if let Some(message) = conflict {
            hold = Some(Hold {
                reason: reason::CONFLICT,
                message,
                stalled: true,
            });
        }
        return Plan {
            refusal,
            stage: RolloutStage::Backup,
            actions,
            hold,
            views,
            target,
            target_hash,
        };
    }

    let stage = current_stage(spec, obs, &views);

    // Nodes already in flight continue (or are handed back).
    for v in &views {
        if v.state == NodeState::InFlight {
            continue_node(spec, obs, v, stage, &mut actions);
        } else {
            release_if_held(obs, v, &mut actions);
        }
    }

    // Whether anything new may start.
    let failed: Vec<&NodeView> = views
        .iter()
        .filter(|v| v.in_scope && v.state == NodeState::Failed)
        .collect();
    let failing: Vec<&NodeView> = views
        .iter()
        .filter(|v| v.in_scope && v.state == NodeState::InFlight)
        .filter(|v| ours(obs, v.node).is_some_and(|p| p.failure.is_some()))
        .collect();
    let failures = failed.len() + failing.len();
    let critical_failure = failed.iter().chain(&failing).find(|v| v.group != Group::Worker);
    let halted_drain = views.iter().filter(|v| v.state == NodeState::InFlight).find_map(|v| {
        ours(obs, v.node)
            .filter(|p| p.halted)
            .map(|p| (v.node.name.as_str(), p))
    });
    let last_done = views
        .iter()
        .filter_map(|v| ours(obs, v.node))
        .filter_map(|p| p.completed)
        .max();
    let soak_until = last_done.map(|t| add(t, duration_or_zero(&spec.strategy.soak)));

    if let Some(v) = critical_failure {
        hold = Some(failure_hold(
            obs,
            v,
            "an etcd or control-plane node failed; the rollout halts until the spec changes",
        ));
    } else if failures > spec.strategy.max_failures.max(0) as usize {
        let v = failed.first().or(failing.first()).expect("failures > 0");
        hold = Some(failure_hold(
            obs,
            v,
            &format!(
                "{failures} failed nodes exceed spec.strategy.maxFailures ({}); the rollout halts until the spec changes",
                spec.strategy.max_failures
            ),
        ));
    } else if let Some((node, p)) = halted_drain {
        hold = Some(Hold {
            reason: reason::DRAIN_BLOCKED,
            message: format!(
                "drain of {node} passed spec.drain.timeout ({}) and onTimeout is Halt: {}",
                spec.drain.timeout, p.message
            ),
            stalled: true,
        });
    } else if stage == RolloutStage::Complete {
        // Nothing to start.
    } else if spec.paused {
        hold = Some(Hold {
            reason: reason::PAUSED,
            message: "spec.paused is true: no new node starts; nodes in progress finish".into(),
            stalled: false,
        });
    } else if !window::any_open(&spec.windows, obs.now) {
        let next = window::next_opening(&spec.windows, obs.now)
            .map(|t| format!("; the next window opens at {t}"))
            .unwrap_or_default();
        hold = Some(Hold {
            reason: reason::OUTSIDE_WINDOW,
            message: format!("no maintenance window in spec.windows is open{next}"),
            stalled: true,
        });
    } else if let Some(until) = soak_until.filter(|t| obs.now < *t) {
        hold = Some(Hold {
            reason: reason::SOAKING,
            message: format!(
                "soaking after the last node for spec.strategy.soak ({}) until {until}",
                spec.strategy.soak
            ),
            stalled: false,
        });
    } else {
        hold = start_work(spec, obs, &views, stage, &mut actions);
    }

    Plan {
        refusal: None,
        stage,
        actions,
        hold,
        views,
        target,
        target_hash,
    }
}

fn failure_hold(obs: &Observation, v: &NodeView, why: &str) -> Hold {
    let f = ours(obs, v.node).and_then(|p| p.failure.clone());
    let (reason, detail) = match f {
        Some(f) => (
            reason_const(&f.reason),
            format!(
                "node {} failed at {}{}: {}",
                v.node.name,
                f.step,
                f.component.map(|c| format!(" of {c}")).unwrap_or_default(),
                f.message
            ),
        ),
        None => (reason::UPGRADE_JOB_FAILED, format!("node {} failed", v.node.name)),
    };
    Hold {
        reason,
        message: format!("{detail}; {why}"),
        stalled: true,
    }
}

/// Map a recorded reason back to its constant (records hold strings).
fn reason_const(s: &str) -> &'static str {
    [
        reason::UPGRADE_JOB_FAILED,
        reason::VERIFICATION_FAILED,
        reason::DRAIN_BLOCKED,
        reason::NODE_NOT_READY,
        reason::ROLLOUT_FAILED,
    ]
    .into_iter()
    .find(|r| *r == s)
    .unwrap_or(reason::UPGRADE_JOB_FAILED)
}

/// The first stage with work left.
fn current_stage(spec: &ClusterUpgradeSpec, obs: &Observation, views: &[NodeView]) -> RolloutStage {
    let open = |group: Group| {
        views.iter().any(|v| {
            v.in_scope
                && v.group == group
                && match v.state {
                    NodeState::Pending | NodeState::InFlight | NodeState::Foreign => true,
                    // A failed etcd or control-plane node holds its stage; failed workers do not.
                    NodeState::Failed => group != Group::Worker,
                    NodeState::Updated => false,
                }
        })
    };
    let workloads_open = |addons: bool| {
        spec.components.iter().any(|c| {
            c.upgrade.workload.is_some() && (stage_of(c) == Some(Stage::Addons)) == addons && !workload_done(obs, c)
        })
    };
    let control_plane_pending = views
        .iter()
        .any(|v| v.in_scope && v.group != Group::Worker && matches!(v.state, NodeState::Pending));
    if spec.backup.is_some() && control_plane_pending && obs.backup != BackupState::Succeeded {
        RolloutStage::Backup
    } else if open(Group::Etcd) {
        RolloutStage::EtcdMembers
    } else if open(Group::ControlPlane) {
        RolloutStage::ControlPlane
    } else if workloads_open(false) {
        RolloutStage::ClusterComponents
    } else if open(Group::Worker) {
        RolloutStage::Workers
    } else if workloads_open(true) {
        RolloutStage::Addons
    } else {
        RolloutStage::Complete
    }
}

fn workload_done(obs: &Observation, c: &Component) -> bool {
    obs.workloads
        .get(&c.name)
        .is_some_and(|w| w.rolled_out && w.version.as_deref().is_some_and(|v| same_version(v, &c.version)))
}

/// The first pending component at or after position `from` in the node's order.
fn next_component<'a>(v: &NodeView<'a>, from: usize) -> Option<(&'a Component, &'a str)> {
    v.pending.iter().find(|i| **i >= from).map(|i| v.desired[*i])
}

fn position(v: &NodeView, component: Option<&str>) -> Option<usize> {
    let name = component?;
    v.desired.iter().position(|(c, _)| c.name == name)
}

/// The record for "upgrade the next component, or uncordon if none is left".
fn after_component(v: &NodeView, p: &NodeProgress, from: usize, may_continue: bool, now: Timestamp) -> NodeProgress {
    match next_component(v, from).filter(|_| may_continue) {
        Some((c, _)) => p.enter(NodePhase::Upgrading, Some(c.name.clone()), now),
        None => p.enter(NodePhase::Uncordoning, None, now),
    }
}

fn continue_node(
    spec: &ClusterUpgradeSpec,
    obs: &Observation,
    v: &NodeView,
    stage: RolloutStage,
    actions: &mut Vec<Action>,
) {
    let p = ours(obs, v.node).expect("in flight means ours");
    let now = obs.now;
    let node = v.node.name.clone();
    let undo_cordon = v.node.cordoned_by.as_deref() == Some(obs.name.as_str());
    let rolling = spec.strategy.type_ == StrategyType::Rolling;
    // A node keeps going only while its group's stage is the current one:
    // a spec bump that reopens an earlier stage sends it back to Pending.
    let may_continue = v.in_scope && v.group.stage() == stage && p.failure.is_none();
    let release = || Action::Step {
        node: node.clone(),
        step: Step::Uncordon { undo_cordon },
        progress: p.clone(),
        on_done: None,
    };
    let step = |step: Step, on_done: NodeProgress| Action::Step {
        node: node.clone(),
        step,
        progress: p.clone(),
        on_done: Some(on_done),
    };
    let action = match p.phase {
        NodePhase::Cordoning | NodePhase::Draining if !may_continue => release(),
        NodePhase::Cordoning => {
            let next = if spec.drain.enabled && rolling {
                p.enter(NodePhase::Draining, None, now)
            } else {
                after_component(v, p, 0, true, now)
            };
            step(Step::Cordon, next)
        }
        NodePhase::Draining => step(Step::Drain, after_component(v, p, 0, true, now)),
        NodePhase::Upgrading => {
            let Some(i) = position(v, p.component.as_deref()) else {
                // The component left the spec: go on with what remains.
                actions.push(step(
                    Step::Uncordon { undo_cordon },
                    after_component(v, p, 0, may_continue, now),
                ));
                return;
            };
            let (c, version) = v.desired[i];
            if !v.in_scope {
                release()
            } else {
                step(
                    Step::Upgrade {
                        component: c.name.clone(),
                        version: version.to_string(),
                    },
                    p.enter(NodePhase::Verifying, Some(c.name.clone()), now),
                )
            }
        }
        NodePhase::Verifying => match position(v, p.component.as_deref()) {
            Some(i) if v.in_scope => {
                let (c, version) = v.desired[i];
                step(
                    Step::Verify {
                        component: c.name.clone(),
                        version: version.to_string(),
                    },
                    after_component(v, p, i + 1, may_continue, now),
                )
            }
            Some(_) => release(),
            None => step(
                Step::Uncordon { undo_cordon },
                after_component(v, p, 0, may_continue, now),
            ),
        },
        NodePhase::Uncordoning => {
            let done = match &p.failure {
                Some(_) => p.enter(NodePhase::Failed, p.component.clone(), now),
                None => p.enter(NodePhase::Done, None, now),
            };
            let done = NodeProgress {
                failure: p.failure.clone(),
                ..done
            };
            step(Step::Uncordon { undo_cordon }, done)
        }
        NodePhase::Done | NodePhase::Failed => return,
    };
    actions.push(action);
}

/// Hand back a node drover cordoned but no longer works on.
fn release_if_held(obs: &Observation, v: &NodeView, actions: &mut Vec<Action>) {
    let held = v.node.cordoned_by.as_deref() == Some(obs.name.as_str());
    let in_flight = ours(obs, v.node).filter(|p| p.phase.in_flight());
    if !held && in_flight.is_none() {
        return;
    }
    let progress = ours(obs, v.node)
        .cloned()
        .unwrap_or_else(|| NodeProgress::start(&obs.name, obs.generation, NodePhase::Uncordoning, None, obs.now));
    // Keep a finished record (its completion time drives the soak); drop an unfinished one.
    let on_done = (!progress.phase.in_flight()).then(|| progress.clone());
    actions.push(Action::Step {
        node: v.node.name.clone(),
        step: Step::Uncordon { undo_cordon: held },
        progress,
        on_done,
    });
}

/// Order in which pending nodes of a group start: nodes someone else
/// already cordoned first (they cost no budget), the nodes matching
/// spec.strategy.lastNodeSelector and drover's own node last, then by name.
fn start_order<'v, 'a>(
    spec: &ClusterUpgradeSpec,
    obs: &Observation,
    mut c: Vec<&'v NodeView<'a>>,
) -> Vec<&'v NodeView<'a>> {
    c.sort_by_key(|v| {
        let last = spec
            .strategy
            .last_node_selector
            .as_ref()
            .is_some_and(|s| selector::matches(s, &v.node.labels));
        let is_self = obs.self_node.as_deref() == Some(v.node.name.as_str());
        (is_self, last, !v.node.unschedulable, v.node.name.clone())
    });
    c
}

fn start(spec: &ClusterUpgradeSpec, obs: &Observation, v: &NodeView) -> Action {
    let first = if spec.strategy.type_ == StrategyType::Rolling {
        NodeProgress::start(&obs.name, obs.generation, NodePhase::Cordoning, None, obs.now)
    } else {
        let c = next_component(v, 0).map(|(c, _)| c.name.clone());
        NodeProgress::start(&obs.name, obs.generation, NodePhase::Upgrading, c, obs.now)
    };
    Action::Start {
        node: v.node.name.clone(),
        progress: first,
    }
}

fn names(views: &[&NodeView]) -> String {
    let mut s: Vec<&str> = views.iter().take(5).map(|v| v.node.name.as_str()).collect();
    if views.len() > 5 {
        s.push("…");
    }
    s.join(", ")
}

/// Start what the current stage allows. Returns why nothing could start, if so.
fn start_work(
    spec: &ClusterUpgradeSpec,
    obs: &Observation,
    views: &[NodeView],
    stage: RolloutStage,
    actions: &mut Vec<Action>,
) -> Option<Hold> {
    let any_in_flight = views.iter().any(|v| v.state == NodeState::InFlight);
    match stage {
        RolloutStage::Complete => None,
        RolloutStage::Backup => match &obs.backup {
            BackupState::Failed(message) => Some(Hold {
                reason: reason::BACKUP_FAILED,
                message: format!(
                    "the backup Job failed: {message}; no etcd or control-plane node starts until it succeeds (change the spec to run it again)"
                ),
                stalled: true,
            }),
            _ => {
                actions.push(Action::RunBackup);
                Some(Hold {
                    reason: reason::BACKING_UP,
                    message: "waiting for the backup Job before the first etcd or control-plane change".into(),
                    stalled: false,
                })
            }
        },
        RolloutStage::EtcdMembers | RolloutStage::ControlPlane => {
            // Strictly one node at a time, and only when nothing else is in flight.
            if any_in_flight {
                return None;
            }
            let group = if stage == RolloutStage::EtcdMembers {
                Group::Etcd
            } else {
                Group::ControlPlane
            };
            let members: Vec<&NodeView> = views.iter().filter(|v| v.in_scope && v.group == group).collect();
            let not_ready: Vec<&NodeView> = members.iter().copied().filter(|v| !v.node.ready).collect();
            let pending: Vec<&NodeView> = members
                .iter()
                .copied()
                .filter(|v| v.state == NodeState::Pending)
                .collect();
            if !not_ready.is_empty() {
                // Taking another member down now could cost quorum.
                return Some(Hold {
                    reason: reason::NODE_NOT_READY,
                    message: format!(
                        "{} {} NotReady ({}); no other {} node starts until every member is Ready",
                        not_ready.len(),
                        if not_ready.len() == 1 { "node is" } else { "nodes are" },
                        names(&not_ready),
                        if group == Group::Etcd { "etcd" } else { "control-plane" }
                    ),
                    stalled: true,
                });
            }
            match start_order(spec, obs, pending).first() {
                Some(v) => {
                    actions.push(start(spec, obs, v));
                    None
                }
                None => None,
            }
        }
        RolloutStage::ClusterComponents | RolloutStage::Addons => {
            if any_in_flight {
                return None;
            }
            let addons = stage == RolloutStage::Addons;
            let mut pending: Vec<(Stage, usize, &Component)> = spec
                .components
                .iter()
                .enumerate()
                .filter(|(_, c)| c.upgrade.workload.is_some() && !workload_done(obs, c))
                .filter_map(|(i, c)| Some((stage_of(c)?, i, c)))
                .filter(|(s, _, _)| (*s == Stage::Addons) == addons)
                .collect();
            pending.sort_by_key(|(s, i, _)| (*s, *i));
            let (_, _, c) = pending.first()?;
            if let Some(message) = obs.workloads.get(&c.name).and_then(|w| w.failed.clone()) {
                return Some(Hold {
                    reason: reason::ROLLOUT_FAILED,
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
        RolloutStage::Workers => {
            // Batches: the next batch starts when the last one has finished.
            if any_in_flight {
                return None;
            }
            let workers: Vec<&NodeView> = views
                .iter()
                .filter(|v| v.in_scope && v.group == Group::Worker)
                .collect();
            let budget = if spec.strategy.type_ == StrategyType::AllAtOnce {
                workers.len().max(1)
            } else {
                resolve_max_unavailable(&spec.strategy.max_unavailable, workers.len()).unwrap_or(1)
            };
            let mut unavailable: BTreeSet<&str> = workers
                .iter()
                .filter(|v| v.node.unavailable() || matches!(v.state, NodeState::InFlight | NodeState::Foreign))
                .map(|v| v.node.name.as_str())
                .collect();
            let pending: Vec<&NodeView> = workers
                .iter()
                .copied()
                .filter(|v| v.state == NodeState::Pending)
                .collect();
            let ready: Vec<&NodeView> = pending.iter().copied().filter(|v| v.node.ready).collect();
            let mut started = 0;
            for v in start_order(spec, obs, ready.clone()) {
                let name = v.node.name.as_str();
                if unavailable.contains(name) || unavailable.len() < budget {
                    unavailable.insert(name);
                    actions.push(start(spec, obs, v));
                    started += 1;
                }
            }
            if started > 0 || pending.is_empty() {
                return None;
            }
            if ready.is_empty() {
                let not_ready: Vec<&NodeView> = pending.clone();
                return Some(Hold {
                    reason: reason::NODE_NOT_READY,
                    message: format!("every worker left to upgrade is NotReady ({})", names(&not_ready)),
                    stalled: true,
                });
            }
            let others: Vec<&NodeView> = workers
                .iter()
                .copied()
                .filter(|v| unavailable.contains(v.node.name.as_str()))
                .collect();
            Some(Hold {
                reason: reason::BUDGET_EXHAUSTED,
                message: format!(
                    "{} workers are already unavailable (NotReady or cordoned by someone else: {}) and spec.strategy.maxUnavailable allows {budget}",
                    others.len(),
                    names(&others)
                ),
                stalled: true,
            })
        }
    }
}

/// The record after a step ended other than Done. Returns the record
/// unchanged when nothing new was learned, so that no write is needed.
pub fn after_outcome(
    spec: &ClusterUpgradeSpec,
    progress: &NodeProgress,
    outcome: &Outcome,
    now: Timestamp,
) -> NodeProgress {
    let noted = |message: &str, blocked_halt: bool| {
        let mut p = progress.clone();
        if p.message != message {
            p.message = message.to_string();
            p.attempts += 1;
        }
        p.halted = p.halted || blocked_halt;
        p
    };
    let fail = |reason: &str, message: &str| {
        let failure = Failure {
            reason: reason.to_string(),
            message: message.to_string(),
            step: progress.phase.step().to_string(),
            component: progress.component.clone(),
        };
        NodeProgress {
            failure: Some(failure),
            ..progress.enter(NodePhase::Uncordoning, progress.component.clone(), now)
        }
    };
    match outcome {
        Outcome::Done => progress.clone(),
        Outcome::Waiting { message } => noted(message, false),
        Outcome::Blocked {
            message,
            timed_out: false,
        } => noted(message, false),
        Outcome::Blocked {
            message,
            timed_out: true,
        } => match spec.drain.on_timeout {
            DrainTimeoutAction::Halt | DrainTimeoutAction::ForceDelete => noted(message, true),
            DrainTimeoutAction::SkipNode => fail(
                reason::DRAIN_BLOCKED,
                &format!("drain timed out and onTimeout is SkipNode; the node keeps its old versions: {message}"),
            ),
        },
        Outcome::Failed { reason, message } => fail(reason, message),
    }
}

/// The deadline of the node's current step, from when it entered it.
pub fn step_deadline(spec: &ClusterUpgradeSpec, progress: &NodeProgress) -> Option<Timestamp> {
    let d = match progress.phase {
        NodePhase::Draining => parse_duration(&spec.drain.timeout)?,
        NodePhase::Upgrading | NodePhase::Verifying => {
            let c = spec
                .components
                .iter()
                .find(|c| Some(&c.name) == progress.component.as_ref())?;
            parse_duration(&c.upgrade.job.as_ref()?.timeout)?
        }
        _ => return None,
    };
    Some(add(progress.since, d))
}

/// Node names by state, for the counts.
pub fn count_states(views: &[NodeView]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for v in views.iter().filter(|v| v.in_scope) {
        let k = match v.state {
            NodeState::Updated => "updated",
            NodeState::Pending | NodeState::Foreign => "pending",
            // A node being handed back after a failure counts as failed already.
            NodeState::InFlight if v.node.progress.as_ref().is_some_and(|p| p.failure.is_some()) => "failed",
            NodeState::InFlight => "updating",
            NodeState::Failed => "failed",
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}
