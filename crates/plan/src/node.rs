//! The node state machine: each phase's next step, its record on every
//! outcome and its timeout, decided at the observation's time.
//!
//! ```text
//!   Pending ─start─▶ Cordoning ─▶ Draining ─▶ Upgrading(c) ─▶ Verifying(c) ─┐
//!                                                  ▲                          │ next c
//!                                                  └──────────────────────────┘
//!                                                   Verifying(last) ─▶ Uncordoning ─▶ Done
//!   any step ─failure─▶ Uncordoning(failed) ─▶ Failed
//! ```
//! AllAtOnce starts at Upgrading and skips Cordoning, Draining and Uncordoning.

use std::time::Duration;

use drover_api::{ClusterUpgradeSpec, DrainTimeoutAction, StrategyType};
use jiff::Timestamp;

use crate::accept::Accepted;
use crate::action::{Action, OnTimeout, Step, Transition};
use crate::observe::Observation;
use crate::progress::{NodePhase, NodeProgress};
use crate::stage::RolloutStage;
use crate::view::{NodeView, ours};

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
}

impl NodeCtx<'_> {
    fn now(&self) -> Timestamp {
        self.obs.now
    }

    /// The transition of a step from `p`, with the deadline of p's phase.
    fn transition(&self, p: &NodeProgress, on_done: Option<NodeProgress>) -> Box<Transition> {
        let deadline = p
            .phase
            .timeout(self.accepted, p.component.as_deref())
            .map(|d| add(p.since, d));
        let on_timeout = match self.spec.drain.on_timeout {
            DrainTimeoutAction::Halt | DrainTimeoutAction::ForceDelete => OnTimeout::Hold,
            DrainTimeoutAction::SkipNode => OnTimeout::Fail,
        };
        Box::new(Transition {
            deadline,
            on_timeout,
            ..Transition::new(p, on_done, self.now())
        })
    }

    /// The record for "upgrade the next component, or uncordon if none is left".
    fn after_component(&self, v: &NodeView, p: &NodeProgress, from: usize, may_continue: bool) -> NodeProgress {
        match v.next_component(from).filter(|_| may_continue) {
            Some((c, _)) => p.enter(NodePhase::Upgrading, Some(c.name.clone()), self.now()),
            None => p.enter(NodePhase::Uncordoning, None, self.now()),
        }
    }

    /// The next step of a node drover is working on.
    pub(crate) fn continue_node(&self, v: &NodeView, actions: &mut Vec<Action>) {
        let (obs, now) = (self.obs, self.now());
        let p = ours(obs, v.node).expect("in flight means ours");
        let node = v.node.name.clone();
        let undo_cordon = v.node.cordoned_by.as_deref() == Some(obs.name.as_str());
        let rolling = self.spec.strategy.type_ == StrategyType::Rolling;
        // A node keeps going only while its group's stage is the current one:
        // a spec bump that reopens an earlier stage sends it back to Pending.
        let may_continue = v.in_scope && RolloutStage::of(v.group) == self.stage && p.failure.is_none();
        let step = |step: Step, on_done: Option<NodeProgress>| Action::Step {
            node: node.clone(),
            step,
            transition: self.transition(p, on_done),
        };
        let release = || step(Step::Uncordon { undo_cordon }, None);
        let uncordon_then = |next: NodeProgress| step(Step::Uncordon { undo_cordon }, Some(next));
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
                    step(
                        Step::Upgrade {
                            component: c.name.clone(),
                            version: version.to_string(),
                        },
                        Some(p.enter(NodePhase::Verifying, Some(c.name.clone()), now)),
                    )
                }
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
        progress: NodeProgress::start(&obs.name, obs.generation, phase, component, obs.now),
    }
}
