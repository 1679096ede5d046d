//! The node state machine: each phase's next step, its record on every
//! outcome and its timeout, decided at the observation's time.
//!
//! The phases and their order are drawn in [`crate::progress`]. AllAtOnce
//! starts at Upgrading and skips Cordoning, Draining and Uncordoning.
//!
//! A failed Job, a version that does not verify or a reboot that does not
//! come back is tried again (the component's upgrade, with a fresh Job)
//! after `retryDelay × 2^n`, up to `spec.strategy.retries` times; the node
//! stays cordoned and keeps its place in the budget meanwhile. A halt
//! (a failure that stops the rollout, a drain past its timeout under Halt)
//! hands back the nodes whose upgrade never started unless
//! `spec.strategy.onHalt` is KeepCordoned.

use std::time::Duration;

use drover_api::known::stage_of;
use drover_api::version::{as_spec_version, parse_version, same_version};
use drover_api::{ClusterUpgradeSpec, DrainTimeoutAction, FailureAction, HaltAction, Stage, StrategyType};
use jiff::Timestamp;

use crate::accept::Accepted;
use crate::action::{Action, HealthJudge, HookPoint, OnTimeout, Step, Then, Transition};
use crate::observe::Observation;
use crate::progress::{Failure, NodePhase, NodeProgress};
use crate::stage::RolloutStage;
use crate::view::{Group, NodeView, ours};

pub(crate) use crate::progress::add;

impl NodePhase {
    /// How long a node may stay in this phase: the drain timeout, the
    /// component's Job timeout while upgrading or verifying it, the reboot
    /// timeout, or a hook's timeout. Health checks keep their own (each check's).
    pub fn timeout(self, accepted: &Accepted, component: Option<&str>) -> Option<Duration> {
        match self {
            NodePhase::Draining => Some(accepted.drain_timeout),
            NodePhase::Upgrading | NodePhase::Verifying => accepted.job_timeout(component?),
            NodePhase::Rebooting => Some(accepted.reboot_timeout),
            NodePhase::PreDrainHook => accepted.pre_drain_timeout,
            NodePhase::PostUncordonHook => accepted.post_uncordon_timeout,
            _ => None,
        }
    }

    /// The first phase of a node walked back by `rollback: All`: its cordon
    /// (Upgrading at once for AllAtOnce).
    pub fn first_rollback(spec: &ClusterUpgradeSpec) -> NodePhase {
        if spec.strategy.type_ == StrategyType::Rolling {
            NodePhase::Cordoning
        } else {
            NodePhase::Upgrading
        }
    }

    /// The first phase of a node drover starts now: Prechecking when the
    /// spec has health checks, else Cordoning (Upgrading for AllAtOnce).
    pub fn first(spec: &ClusterUpgradeSpec) -> NodePhase {
        if !spec.health_checks.is_empty() {
            NodePhase::Prechecking
        } else if spec.strategy.type_ == StrategyType::Rolling {
            NodePhase::Cordoning
        } else {
            NodePhase::Upgrading
        }
    }
}

/// Everything a node's transition depends on besides the node.
pub(crate) struct NodeCtx<'a> {
    pub spec: &'a ClusterUpgradeSpec,
    pub obs: &'a Observation,
    pub accepted: &'a Accepted,
    pub stage: RolloutStage,
    /// Failed nodes in scope now (maxFailures counts these).
    pub failures: usize,
    /// The rollout is halted (a failure gate holds): nothing new starts.
    pub halted: bool,
    /// A pause, a closed window or another timing gate holds new work: a
    /// node still at its checks before the start is handed back.
    pub holds_new: bool,
}

impl NodeCtx<'_> {
    fn now(&self) -> Timestamp {
        self.obs.now
    }

    fn rolling(&self) -> bool {
        self.spec.strategy.type_ == StrategyType::Rolling
    }

    /// The transition of a step from `p`, with the deadline of p's phase,
    /// the retry when one is left, and the failure path.
    fn transition(&self, v: &NodeView, p: &NodeProgress, on_done: Option<NodeProgress>) -> Box<Transition> {
        let now = self.now();
        let deadline = p
            .phase
            .timeout(self.accepted, p.component.as_deref())
            .map(|d| add(p.since, d));
        let on_timeout = match self.spec.drain.on_timeout {
            DrainTimeoutAction::Halt | DrainTimeoutAction::ForceDelete => OnTimeout::Hold,
            DrainTimeoutAction::SkipNode => OnTimeout::Fail,
        };
        let retries_left = (p.retries as i64) < self.spec.strategy.retries.max(0) as i64;
        let on_retry = match p.phase {
            NodePhase::Upgrading | NodePhase::Rebooting | NodePhase::Verifying if retries_left => {
                let wait = self.accepted.retry_delay.saturating_mul(1u32 << p.retries.min(16));
                let at = add(now, wait);
                let mut r = p.enter(NodePhase::Upgrading, p.component.clone(), at);
                r.retries = p.retries + 1;
                r.retry_at = Some(at);
                r.boot_id = Some(v.node.boot_id.clone());
                Some(r)
            }
            _ => None,
        };
        // A failure that halts the rollout leaves the node cordoned when the
        // user asked for that; any other failure hands the node back (a
        // tolerated failure left cordoned would use up the budget).
        let halts = v.group != Group::Worker || self.failures + 1 > self.spec.strategy.max_failures.max(0) as usize;
        let keep = halts
            && self.spec.strategy.on_halt == HaltAction::KeepCordoned
            && !matches!(
                p.phase,
                NodePhase::Uncordoning | NodePhase::PostUncordonHook | NodePhase::Checking | NodePhase::Prechecking
            );
        let mut on_failed = if keep {
            NodeProgress {
                left_cordoned: Some(format!(
                    "its upgrade failed at {} and halted the rollout; spec.strategy.onHalt is KeepCordoned",
                    p.phase.step()
                )),
                ..p.enter(NodePhase::Failed, p.component.clone(), now)
            }
        } else if matches!(p.phase, NodePhase::PostUncordonHook | NodePhase::Checking) {
            // Already schedulable again: nothing to hand back.
            p.enter(NodePhase::Failed, p.component.clone(), now)
        } else {
            p.enter(NodePhase::Uncordoning, p.component.clone(), now)
        };
        let mut rollback_refused = None;
        let changed = matches!(
            p.phase,
            NodePhase::Upgrading
                | NodePhase::Rebooting
                | NodePhase::Verifying
                | NodePhase::PostUncordonHook
                | NodePhase::Checking
        );
        if self.spec.strategy.on_failure == FailureAction::Rollback && changed && !p.rollback {
            match self.rollback_plan(v, p) {
                Ok(Some(first)) => on_failed = self.rollback_entry(v, p, first),
                Ok(None) => {}
                Err(why) => rollback_refused = Some(why),
            }
        }
        let failure_reason = match p.phase {
            NodePhase::PreDrainHook => Some(drover_api::Reason::PreDrainHookFailed),
            NodePhase::PostUncordonHook => Some(drover_api::Reason::PostUncordonHookFailed),
            _ => None,
        };
        let failure_prefix = p.rollback.then(|| {
            format!(
                "rolling back {} to {} failed",
                p.component.as_deref().unwrap_or("the node"),
                p.component
                    .as_ref()
                    .and_then(|c| p.previous.get(c))
                    .map(String::as_str)
                    .unwrap_or("its previous version")
            )
        });
        Box::new(Transition {
            deadline,
            on_timeout,
            on_retry,
            on_failed,
            retry_started: p.retry_at.is_some_and(|t| t <= now),
            failure_reason,
            rollback_refused,
            failure_prefix,
            ..Transition::new(p, on_done, now)
        })
    }

    /// The record that starts a rollback from a failure at `p`: back
    /// through Cordoning when the node was already handed back, else
    /// straight to the first component to return.
    fn rollback_entry(&self, v: &NodeView, p: &NodeProgress, first: usize) -> NodeProgress {
        let now = self.now();
        let base = NodeProgress {
            rollback: true,
            retries: 0,
            ..p.clone()
        };
        if matches!(p.phase, NodePhase::PostUncordonHook | NodePhase::Checking) && self.rolling() {
            NodeProgress {
                retries: 0,
                ..base.enter(NodePhase::Cordoning, None, now)
            }
        } else {
            NodeProgress {
                boot_id: Some(v.node.boot_id.clone()),
                retries: 0,
                ..base.enter(NodePhase::Upgrading, Some(v.desired[first].0.name.clone()), now)
            }
        }
    }

    /// Whether a component at position `i` of the node's order is to be
    /// returned: its previous version is known and differs from what it runs.
    fn to_return(&self, v: &NodeView, p: &NodeProgress, i: usize) -> bool {
        let name = &v.desired[i].0.name;
        let Some(prev) = p.previous.get(name) else {
            return false;
        };
        v.node
            .versions
            .get(name)
            .is_none_or(|live| !same_version(live, prev) && live != prev)
    }

    /// The next component to return, at a position below `below`.
    fn rollback_next(&self, v: &NodeView, p: &NodeProgress, below: usize) -> Option<usize> {
        (0..below.min(v.desired.len())).rev().find(|i| self.to_return(v, p, *i))
    }

    /// Where the rollback of a node that finished would start (rollback All).
    pub(crate) fn rollback_start(&self, v: &NodeView, p: &NodeProgress) -> Result<Option<usize>, String> {
        let p = NodeProgress {
            component: None,
            ..p.clone()
        };
        self.rollback_plan(v, &p)
    }

    /// Where a rollback from a failure at `p` starts (the failed component,
    /// then every earlier one that changed), None when nothing changed, or
    /// why it is refused.
    fn rollback_plan(&self, v: &NodeView, p: &NodeProgress) -> Result<Option<usize>, String> {
        let failed_at = v.position(p.component.as_deref());
        let first = match failed_at {
            Some(i) if p.previous.contains_key(&v.desired[i].0.name) => Some(i),
            Some(i) => {
                return Err(format!(
                    "no previous version of {} was recorded when the node started (a record of an older drover)",
                    v.desired[i].0.name
                ));
            }
            None => self.rollback_next(v, p, v.desired.len()),
        };
        let Some(first) = first else { return Ok(None) };
        let mut list = vec![first];
        let mut below = first;
        while let Some(i) = self.rollback_next(v, p, below) {
            list.push(i);
            below = i;
        }
        for i in list {
            let c = v.desired[i].0;
            let prev = &p.previous[&c.name];
            let now = v
                .node
                .versions
                .get(&c.name)
                .map(String::as_str)
                .unwrap_or(v.desired[i].1);
            if let Some(why) = refuse_return(c, now, prev, self.obs) {
                return Err(why);
            }
        }
        Ok(Some(first))
    }

    /// The record that ends a rollback: handed back with RolledBack, naming
    /// the versions it was returned to and the failure that caused it.
    fn rolled_back(&self, v: &NodeView, p: &NodeProgress) -> NodeProgress {
        let versions: Vec<String> = v
            .desired
            .iter()
            .filter_map(|(c, want)| {
                let prev = p.previous.get(&c.name)?;
                (prev != want).then(|| format!("{}={prev}", c.name))
            })
            .collect();
        let was = match &p.failure {
            Some(f) if f.reason == drover_api::Reason::RolledBack => format!(": {}", f.message),
            Some(f) => format!(" after {}: {}", f.reason, f.message),
            None => " after a failure".into(),
        };
        NodeProgress {
            failure: Some(Failure {
                reason: drover_api::Reason::RolledBack,
                message: format!("returned to {}{was}", versions.join(", ")),
                step: p.failure.as_ref().map(|f| f.step.clone()).unwrap_or_default(),
                component: p.failure.as_ref().and_then(|f| f.component.clone()),
                skipped: false,
            }),
            ..p.enter(NodePhase::Uncordoning, None, self.now())
        }
    }

    /// The record for "upgrade the next component, or uncordon if none is
    /// left". A component's upgrade remembers the node's bootID, so that a
    /// reboot shows as a new one. A rollback goes on with the next
    /// component to return, or ends.
    fn after_component(&self, v: &NodeView, p: &NodeProgress, from: usize, may_continue: bool) -> NodeProgress {
        if p.rollback {
            let below = if from == 0 { v.desired.len() } else { from - 1 };
            return match self.rollback_next(v, p, below) {
                Some(i) => NodeProgress {
                    boot_id: Some(v.node.boot_id.clone()),
                    ..p.enter(NodePhase::Upgrading, Some(v.desired[i].0.name.clone()), self.now())
                },
                None => self.rolled_back(v, p),
            };
        }
        match v.next_component(from).filter(|_| may_continue) {
            Some((c, _)) => NodeProgress {
                boot_id: Some(v.node.boot_id.clone()),
                ..p.enter(NodePhase::Upgrading, Some(c.name.clone()), self.now())
            },
            None => p.enter(NodePhase::Uncordoning, None, self.now()),
        }
    }

    /// After the drain: the first component (or, in a rollback, the first to return).
    fn after_drain(&self, v: &NodeView, p: &NodeProgress) -> NodeProgress {
        self.after_component(v, p, 0, true)
    }

    /// After the cordon: the pre-drain hook, the drain, or the first component.
    fn after_cordon(&self, v: &NodeView, p: &NodeProgress) -> NodeProgress {
        let now = self.now();
        if self.spec.hooks.pre_drain.is_some() && self.rolling() && !p.rollback {
            p.enter(NodePhase::PreDrainHook, None, now)
        } else {
            self.after_hook(v, p)
        }
    }

    /// After the pre-drain hook: the drain, or the first component.
    fn after_hook(&self, v: &NodeView, p: &NodeProgress) -> NodeProgress {
        if self.spec.drain.enabled && self.rolling() {
            p.enter(NodePhase::Draining, None, self.now())
        } else {
            self.after_drain(v, p)
        }
    }

    /// After the uncordon of a node that did not fail: the post-uncordon
    /// hook, the health checks, or Done.
    fn after_uncordon(&self, p: &NodeProgress) -> NodeProgress {
        let now = self.now();
        let next = if self.spec.hooks.post_uncordon.is_some() {
            NodePhase::PostUncordonHook
        } else {
            return self.after_post_hook(p, Some(now));
        };
        NodeProgress {
            uncordoned: Some(now),
            ..p.enter(next, None, now)
        }
    }

    /// After the post-uncordon hook: the health checks, or Done.
    fn after_post_hook(&self, p: &NodeProgress, uncordoned: Option<Timestamp>) -> NodeProgress {
        let now = self.now();
        let phase = if self.spec.health_checks.is_empty() {
            NodePhase::Done
        } else {
            NodePhase::Checking
        };
        NodeProgress {
            uncordoned: uncordoned.or(p.uncordoned),
            ..p.enter(phase, None, now)
        }
    }

    /// After the checks before the start: the cordon, or (AllAtOnce) the first component.
    fn after_precheck(&self, v: &NodeView, p: &NodeProgress) -> NodeProgress {
        if self.rolling() {
            p.enter(NodePhase::Cordoning, None, self.now())
        } else {
            self.after_component(v, p, 0, true)
        }
    }

    /// After a component's Job: wait for its reboot, or verify.
    fn after_upgrade(&self, v: &NodeView, p: &NodeProgress, c: &drover_api::Component) -> (NodeProgress, NodeProgress) {
        let now = self.now();
        let reboot = |job: bool| NodeProgress {
            reboot_job: job,
            boot_id: p.boot_id.clone().or_else(|| Some(v.node.boot_id.clone())),
            ..p.enter(NodePhase::Rebooting, Some(c.name.clone()), now)
        };
        let reboots = c.upgrade.job.as_ref().is_some_and(|j| j.reboots);
        let on_done = if reboots {
            reboot(false)
        } else {
            p.enter(NodePhase::Verifying, Some(c.name.clone()), now)
        };
        (on_done, reboot(true))
    }

    /// A Health step for the node at `p`, its checks judged by the plan.
    fn health_step(&self, v: &NodeView, p: &NodeProgress, before: bool, on_done: NodeProgress) -> Action {
        let mut t = self.transition(v, p, Some(on_done));
        let checks: Vec<String> = self
            .accepted
            .checks
            .iter()
            .filter(|c| p.passes.get(&c.name).copied().unwrap_or(0) < c.threshold)
            .map(|c| c.name.clone())
            .collect();
        t.health = Some(HealthJudge {
            node: v.node.name.clone(),
            checks: self.accepted.checks.clone(),
            before,
            now: self.now(),
        });
        let component = v.desired.last().map(|(c, _)| c.name.clone()).unwrap_or_default();
        let members = |g: fn(&crate::observe::ObservedNode) -> bool| -> Vec<String> {
            self.obs.nodes.iter().filter(|n| g(n)).map(|n| n.name.clone()).collect()
        };
        Action::Step {
            node: v.node.name.clone(),
            step: Step::Health {
                before,
                checks,
                component: if before { String::new() } else { component },
                since: p.uncordoned,
                control_plane: members(|n| n.is_control_plane()),
                etcd: members(|n| n.is_etcd()),
                is_member: v.group != Group::Worker,
            },
            transition: t,
        }
    }

    /// The version and Job a component is brought to: the spec's, or in a
    /// rollback the previous version with the Job that installed it.
    fn upgrade_to(&self, p: &NodeProgress, i: usize, v: &NodeView) -> (String, Option<Box<drover_api::JobUpgrade>>) {
        let (c, version) = v.desired[i];
        if !p.rollback {
            return (version.to_string(), None);
        }
        let prev = p.previous.get(&c.name).cloned().unwrap_or_else(|| version.to_string());
        let job = self
            .obs
            .previous
            .as_ref()
            .and_then(|s| {
                s.installers
                    .iter()
                    .find(|i| i.component == c.name && (i.version == prev || same_version(&prev, &i.version)))
            })
            .map(|i| Box::new(i.job.clone()));
        (prev, job)
    }

    /// The next step of a node drover is working on.
    pub(crate) fn continue_node(&self, v: &NodeView, actions: &mut Vec<Action>) {
        let (obs, now) = (self.obs, self.now());
        let p = ours(obs, v.node).expect("in flight means ours");
        let node = v.node.name.clone();
        // An admin's drover.dev/keep-cordoned, or an admin's own cordon
        // over drover's, pins the node cordoned.
        let undo_cordon = v.node.uncordoned_by(&obs.name);
        let rolling = self.rolling();
        // A node keeps going only while its group's stage is the current one:
        // a spec bump that reopens an earlier stage sends it back to Pending.
        // A rollback goes on whatever the spec says now.
        let may_continue = p.rollback || (v.in_scope && RolloutStage::of(v.group) == self.stage && p.failure.is_none());
        let step = |step: Step, on_done: Option<NodeProgress>| Action::Step {
            node: node.clone(),
            step,
            transition: self.transition(v, p, on_done),
        };
        let release = || {
            step(
                Step::Uncordon {
                    undo_cordon,
                    untaint: false,
                },
                None,
            )
        };
        // Past the node's upgrade (or its failure), the uncordon also takes the taint off.
        let uncordon_then = |next: NodeProgress| {
            let untaint = next.failure.is_some() || !next.phase.in_flight() || next.uncordoned.is_some();
            step(Step::Uncordon { undo_cordon, untaint }, Some(next))
        };
        // A retry waits out its backoff, the node still held; a health
        // check waits for its interval.
        if p.retry_at.is_some_and(|t| t > now) && may_continue {
            return;
        }
        // Halted: a node whose upgrade never started is handed back, unless
        // onHalt is KeepCordoned. The node whose drain halted the rollout
        // keeps a record that holds the halt until the spec changes.
        let not_started = matches!(
            p.phase,
            NodePhase::Prechecking | NodePhase::Cordoning | NodePhase::PreDrainHook | NodePhase::Draining
        ) && p.failure.is_none()
            && !p.rollback;
        let hand_back = p.phase == NodePhase::Prechecking || self.spec.strategy.on_halt == HaltAction::Uncordon;
        if self.halted && not_started && hand_back && (rolling || p.phase == NodePhase::Prechecking) {
            let held = p.halted.then(|| NodeProgress {
                halted: true,
                message: p.message.clone(),
                ..p.enter(NodePhase::Failed, None, now)
            });
            actions.push(step(
                Step::Uncordon {
                    undo_cordon,
                    untaint: false,
                },
                held,
            ));
            return;
        }
        let action = match p.phase {
            // Not started yet: a pause, a closed window or a changed plan hands it back.
            NodePhase::Prechecking if !may_continue || self.holds_new => release(),
            NodePhase::Prechecking | NodePhase::Checking if p.check_at.is_some_and(|t| t > now) => return,
            NodePhase::Prechecking => self.health_step(v, p, true, self.after_precheck(v, p)),
            NodePhase::Cordoning | NodePhase::PreDrainHook | NodePhase::Draining if !may_continue => release(),
            NodePhase::Cordoning => step(Step::Cordon, Some(self.after_cordon(v, p))),
            NodePhase::PreDrainHook => step(
                Step::Hook {
                    hook: HookPoint::PreDrain,
                },
                Some(self.after_hook(v, p)),
            ),
            NodePhase::Draining => step(Step::Drain, Some(self.after_drain(v, p))),
            NodePhase::Upgrading => match v.position(p.component.as_deref()) {
                // The component left the spec: go on with what remains.
                None => uncordon_then(self.after_component(v, p, 0, may_continue)),
                Some(_) if !v.in_scope && !p.rollback => release(),
                Some(i) => {
                    let (c, _) = v.desired[i];
                    let (version, job) = self.upgrade_to(p, i, v);
                    let (on_done, on_reboot) = self.after_upgrade(v, p, c);
                    let mut a = step(
                        Step::Upgrade {
                            component: c.name.clone(),
                            version,
                            job,
                        },
                        Some(on_done),
                    );
                    if let Action::Step { transition, .. } = &mut a {
                        transition.on_reboot = Some(on_reboot);
                    }
                    a
                }
            },
            NodePhase::Rebooting => match v.position(p.component.as_deref()) {
                Some(i) if v.in_scope || p.rollback => {
                    let (c, _) = v.desired[i];
                    step(
                        Step::Reboot {
                            component: c.name.clone(),
                            boot_id: p.boot_id.clone().unwrap_or_default(),
                            run_job: p.reboot_job,
                        },
                        Some(p.enter(NodePhase::Verifying, Some(c.name.clone()), now)),
                    )
                }
                // Out of scope or the component left the spec: the reboot
                // may still be under way; wait for it before handing back.
                _ => step(
                    Step::Reboot {
                        component: p.component.clone().unwrap_or_default(),
                        boot_id: p.boot_id.clone().unwrap_or_default(),
                        run_job: false,
                    },
                    Some(p.enter(NodePhase::Uncordoning, None, now)),
                ),
            },
            NodePhase::Verifying => match v.position(p.component.as_deref()) {
                Some(i) if v.in_scope || p.rollback => {
                    let (c, _) = v.desired[i];
                    let (version, _) = self.upgrade_to(p, i, v);
                    step(
                        Step::Verify {
                            component: c.name.clone(),
                            version,
                        },
                        Some(self.after_component(v, p, i + 1, may_continue)),
                    )
                }
                Some(_) => release(),
                None => uncordon_then(self.after_component(v, p, 0, may_continue)),
            },
            NodePhase::Uncordoning => {
                let done = match &p.failure {
                    Some(_) => NodeProgress {
                        failure: p.failure.clone(),
                        ..p.enter(NodePhase::Failed, p.component.clone(), now)
                    },
                    None => self.after_uncordon(p),
                };
                uncordon_then(done)
            }
            NodePhase::PostUncordonHook => step(
                Step::Hook {
                    hook: HookPoint::PostUncordon,
                },
                Some(self.after_post_hook(p, None)),
            ),
            NodePhase::Checking => self.health_step(v, p, false, p.enter(NodePhase::Done, None, now)),
            NodePhase::Done | NodePhase::Failed => return,
        };
        actions.push(self.chained(v, action));
    }

    /// An upgrade whose Done leads to Verifying carries the verification
    /// that follows, and a verification whose Done leads to Uncordoning
    /// carries the uncordon ([`Transition::then`]): planned here, as the
    /// next pass would plan them from that record, so that the node moves
    /// on the moment its step is done, with one write instead of three.
    /// Nothing chains into an upgrade, a wait, or a retry's backoff.
    fn chained(&self, v: &NodeView, mut action: Action) -> Action {
        let Action::Step { step, transition, .. } = &mut action else {
            return action;
        };
        let chains = match step {
            Step::Upgrade { .. } => NodePhase::Verifying,
            Step::Verify { .. } => NodePhase::Uncordoning,
            _ => return action,
        };
        let Some(next) = transition
            .on_done
            .clone()
            .filter(|p| p.phase == chains && p.retry_at.is_none())
        else {
            return action;
        };
        let mut node = v.node.clone();
        node.progress = Some(next.clone());
        let view = NodeView {
            node: &node,
            ..v.clone()
        };
        let mut planned = Vec::new();
        self.continue_node(&view, &mut planned);
        if let [
            Action::Step {
                step: s, transition: t, ..
            },
        ] = planned.as_slice()
            && matches!(s, Step::Verify { .. } | Step::Uncordon { .. })
            && t.from == next
        {
            transition.then = Some(Box::new(Then {
                step: s.clone(),
                transition: (**t).clone(),
                planned: self.now(),
            }));
        }
        action
    }
}

/// Why returning component `c` from `now` to `prev` is refused, if it is:
/// etcd and the control plane never go down a minor version (kubeadm
/// cannot downgrade them), and a kubelet or kube-proxy never falls further
/// behind the oldest kube-apiserver than the skew policy allows.
fn refuse_return(c: &drover_api::Component, now: &str, prev: &str, obs: &Observation) -> Option<String> {
    let minor = |s: &str| parse_version(s).map(|v| (v.major, v.minor));
    let stage = stage_of(c)?;
    if matches!(stage, Stage::Etcd | Stage::ControlPlane)
        && let (Some(a), Some(b)) = (minor(now), minor(prev))
        && b < a
    {
        return Some(format!(
            "{} would go from {now} back to {prev}, a minor version down: kubeadm cannot downgrade etcd or a control-plane minor version; restore it from a backup by hand",
            c.name
        ));
    }
    if let Some(why) = crate::skew::return_refused(&c.name, prev, &obs.nodes) {
        return Some(why);
    }
    None
}

/// Hand back a node drover cordoned but no longer works on.
pub(crate) fn release_if_held(obs: &Observation, v: &NodeView, actions: &mut Vec<Action>) {
    // A record of a newer format is never overwritten, nor its node's cordon undone.
    if v.node.newer_record.is_some() {
        return;
    }
    let held = v.node.cordoned_by.as_deref() == Some(obs.name.as_str());
    let in_flight = ours(obs, v.node).filter(|p| p.phase.in_flight());
    if !held && in_flight.is_none() {
        return;
    }
    // Left cordoned on purpose: by an admin's annotation, or a failure kept
    // cordoned under onHalt KeepCordoned (until the spec changes).
    let kept = ours(obs, v.node)
        .is_some_and(|p| p.phase == NodePhase::Failed && p.left_cordoned.is_some() && p.generation == obs.generation);
    if in_flight.is_none() && (v.node.kept_by_admin().is_some() || kept) {
        return;
    }
    let progress = ours(obs, v.node)
        .cloned()
        .unwrap_or_else(|| NodeProgress::start(&obs.name, obs.generation, NodePhase::Uncordoning, None, obs.now));
    // Keep a finished record (its completion time drives the soak); drop an unfinished one.
    let on_done = (!progress.phase.in_flight()).then(|| progress.clone());
    actions.push(Action::Step {
        node: v.node.name.clone(),
        step: Step::Uncordon {
            undo_cordon: held,
            untaint: false,
        },
        transition: Box::new(Transition::new(&progress, on_done, obs.now)),
    });
}

/// The record of a node drover starts now: its first phase, what each
/// component it will change runs now (what a rollback returns it to), and
/// whether it is a canary.
pub(crate) fn start(spec: &ClusterUpgradeSpec, obs: &Observation, v: &NodeView, canary: Option<String>) -> Action {
    let phase = NodePhase::first(spec);
    let component = match phase {
        NodePhase::Upgrading => v.next_component(0).map(|(c, _)| c.name.clone()),
        _ => None,
    };
    let mut progress = NodeProgress::start(&obs.name, obs.generation, phase, component, obs.now);
    progress.previous = v
        .pending
        .iter()
        .filter_map(|i| {
            let name = &v.desired[*i].0.name;
            Some((name.clone(), as_spec_version(v.node.versions.get(name)?)))
        })
        .collect();
    progress.canary = canary;
    Action::Start {
        node: v.node.name.clone(),
        progress: Box::new(progress),
    }
}
