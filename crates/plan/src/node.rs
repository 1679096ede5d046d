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

use drover_api::{ClusterUpgradeSpec, DrainTimeoutAction, HaltAction, StrategyType};
use jiff::Timestamp;

use crate::accept::Accepted;
use crate::action::{Action, OnTimeout, Step, Transition};
use crate::observe::Observation;
use crate::progress::{NodePhase, NodeProgress};
use crate::stage::RolloutStage;
use crate::view::{Group, NodeView, ours};

pub(crate) fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

impl NodePhase {
    /// How long a node may stay in this phase: the drain timeout, or the
    /// component's Job timeout while upgrading or verifying it.
    pub fn timeout(self, accepted: &Accepted, component: Option<&str>) -> Option<Duration> {
        match self {
            NodePhase::Draining => Some(accepted.drain_timeout),
            NodePhase::Upgrading | NodePhase::Verifying => accepted.job_timeout(component?),
            NodePhase::Rebooting => Some(accepted.reboot_timeout),
            _ => None,
        }
    }

    /// The first phase of a node drover starts now.
    pub fn first(strategy: StrategyType) -> NodePhase {
        if strategy == StrategyType::Rolling {
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
}

impl NodeCtx<'_> {
    fn now(&self) -> Timestamp {
        self.obs.now
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
        let keep = halts && self.spec.strategy.on_halt == HaltAction::KeepCordoned && p.phase != NodePhase::Uncordoning;
        let on_failed = if keep {
            NodeProgress {
                left_cordoned: Some(format!(
                    "its upgrade failed at {} and halted the rollout; spec.strategy.onHalt is KeepCordoned",
                    p.phase.step()
                )),
                ..p.enter(NodePhase::Failed, p.component.clone(), now)
            }
        } else {
            p.enter(NodePhase::Uncordoning, p.component.clone(), now)
        };
        Box::new(Transition {
            deadline,
            on_timeout,
            on_retry,
            on_failed,
            retry_started: p.retry_at.is_some_and(|t| t <= now),
            ..Transition::new(p, on_done, now)
        })
    }

    /// The record for "upgrade the next component, or uncordon if none is
    /// left". A component's upgrade remembers the node's bootID, so that a
    /// reboot shows as a new one.
    fn after_component(&self, v: &NodeView, p: &NodeProgress, from: usize, may_continue: bool) -> NodeProgress {
        match v.next_component(from).filter(|_| may_continue) {
            Some((c, _)) => NodeProgress {
                boot_id: Some(v.node.boot_id.clone()),
                ..p.enter(NodePhase::Upgrading, Some(c.name.clone()), self.now())
            },
            None => p.enter(NodePhase::Uncordoning, None, self.now()),
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

    /// The next step of a node drover is working on.
    pub(crate) fn continue_node(&self, v: &NodeView, actions: &mut Vec<Action>) {
        let (obs, now) = (self.obs, self.now());
        let p = ours(obs, v.node).expect("in flight means ours");
        let node = v.node.name.clone();
        // An admin's drover.dev/keep-cordoned, or an admin's own cordon
        // over drover's, pins the node cordoned.
        let undo_cordon = v.node.cordoned_by.as_deref() == Some(obs.name.as_str()) && v.node.kept_by_admin().is_none();
        let rolling = self.spec.strategy.type_ == StrategyType::Rolling;
        // A node keeps going only while its group's stage is the current one:
        // a spec bump that reopens an earlier stage sends it back to Pending.
        let may_continue = v.in_scope && RolloutStage::of(v.group) == self.stage && p.failure.is_none();
        let step = |step: Step, on_done: Option<NodeProgress>| Action::Step {
            node: node.clone(),
            step,
            transition: self.transition(v, p, on_done),
        };
        let release = || step(Step::Uncordon { undo_cordon }, None);
        let uncordon_then = |next: NodeProgress| step(Step::Uncordon { undo_cordon }, Some(next));
        // A retry waits out its backoff, the node still held.
        if p.retry_at.is_some_and(|t| t > now) && may_continue {
            return;
        }
        // Halted: a node whose upgrade never started is handed back, unless
        // onHalt is KeepCordoned. The node whose drain halted the rollout
        // keeps a record that holds the halt until the spec changes.
        let not_started = matches!(p.phase, NodePhase::Cordoning | NodePhase::Draining) && p.failure.is_none();
        if self.halted && not_started && self.spec.strategy.on_halt == HaltAction::Uncordon && rolling {
            let held = p.halted.then(|| NodeProgress {
                halted: true,
                message: p.message.clone(),
                ..p.enter(NodePhase::Failed, None, now)
            });
            actions.push(step(Step::Uncordon { undo_cordon }, held));
            return;
        }
        let action = match p.phase {
            NodePhase::Cordoning | NodePhase::Draining if !may_continue => release(),
            NodePhase::Cordoning => {
                let next = if self.spec.drain.enabled && rolling {
                    p.enter(NodePhase::Draining, None, now)
                } else {
                    self.after_component(v, p, 0, true)
                };
                step(Step::Cordon, Some(next))
            }
            NodePhase::Draining => step(Step::Drain, Some(self.after_component(v, p, 0, true))),
            NodePhase::Upgrading => match v.position(p.component.as_deref()) {
                // The component left the spec: go on with what remains.
                None => uncordon_then(self.after_component(v, p, 0, may_continue)),
                Some(_) if !v.in_scope => release(),
                Some(i) => {
                    let (c, version) = v.desired[i];
                    let (on_done, on_reboot) = self.after_upgrade(v, p, c);
                    let mut a = step(
                        Step::Upgrade {
                            component: c.name.clone(),
                            version: version.to_string(),
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
                Some(i) if v.in_scope => {
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
                Some(i) if v.in_scope => {
                    let (c, version) = v.desired[i];
                    step(
                        Step::Verify {
                            component: c.name.clone(),
                            version: version.to_string(),
                        },
                        Some(self.after_component(v, p, i + 1, may_continue)),
                    )
                }
                Some(_) => release(),
                None => uncordon_then(self.after_component(v, p, 0, may_continue)),
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
                uncordon_then(done)
            }
            NodePhase::Done | NodePhase::Failed => return,
        };
        actions.push(action);
    }
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
        step: Step::Uncordon { undo_cordon: held },
        transition: Box::new(Transition::new(&progress, on_done, obs.now)),
    });
}

/// The record of a node drover starts now.
pub(crate) fn start(spec: &ClusterUpgradeSpec, obs: &Observation, v: &NodeView) -> Action {
    let phase = NodePhase::first(spec.strategy.type_);
    let component = match phase {
        NodePhase::Upgrading => v.next_component(0).map(|(c, _)| c.name.clone()),
        _ => None,
    };
    Action::Start {
        node: v.node.name.clone(),
        progress: Box::new(NodeProgress::start(
            &obs.name,
            obs.generation,
            phase,
            component,
            obs.now,
        )),
    }
}
