//! What the planner asks for, each with everything needed to carry it out
//! and to record what it came to. The controller performs the effect and
//! writes the record it was handed; it decides nothing.

use std::time::Duration;

use drover_api::{EventReason, Outcome, Reason, StepEvent};
use jiff::Timestamp;

use crate::progress::{Failure, NodePhase, NodeProgress};

/// One thing to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record that drover starts on this node (the annotation); its first
    /// step follows on the next pass.
    Start { node: String, progress: NodeProgress },
    /// Perform one step on a node drover is working on, then write the
    /// record `transition` gives for the outcome.
    Step {
        node: String,
        step: Step,
        transition: Box<Transition>,
    },
    /// Bring a cluster-level workload to `version` and await its rollout.
    UpgradeWorkload { component: String, version: String },
    /// Make sure the backup Job for this target exists.
    RunBackup { backup_hash: String },
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

impl Step {
    /// Cordon, Drain, Upgrade, Verify or Uncordon (events, metrics).
    pub fn name(&self) -> &'static str {
        match self {
            Step::Cordon => "Cordon",
            Step::Drain => "Drain",
            Step::Upgrade { .. } => "Upgrade",
            Step::Verify { .. } => "Verify",
            Step::Uncordon { .. } => "Uncordon",
        }
    }

    /// What the step fails with when the API server refuses its request for
    /// good (an invalid Job, a policy that forbids it). None for cordon and
    /// uncordon, which are retried: a node must not be left cordoned because
    /// one patch was refused.
    pub fn when_refused(&self, server_says: &str) -> Option<Outcome> {
        let (reason, what) = match self {
            Step::Drain => (Reason::DrainBlocked, "an eviction".to_string()),
            Step::Upgrade { component, .. } => (Reason::UpgradeJobFailed, format!("the upgrade Job of {component}")),
            Step::Verify { component, .. } => (Reason::VerificationFailed, format!("reading {component}'s version")),
            Step::Cordon | Step::Uncordon { .. } => return None,
        };
        Some(Outcome::Failed {
            reason,
            message: format!("the API server refused {what}: {server_says}"),
        })
    }

    fn what(&self) -> String {
        match self {
            Step::Upgrade { component, version } | Step::Verify { component, version } => {
                format!(" {component} {version}")
            }
            _ => String::new(),
        }
    }
}

/// What a drain past its timeout comes to (spec.drain.onTimeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnTimeout {
    /// Keep the node and hold the rollout (Halt, ForceDelete).
    Hold,
    /// Give the node up: it fails with DrainBlocked and keeps its old versions (SkipNode).
    Fail,
}

/// A step's complete transition, decided with the plan at the
/// observation's time: the record on each outcome, and the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The record the step starts from (what a write compares against).
    pub from: NodeProgress,
    /// Written when the step reports Done (None: remove the record).
    pub on_done: Option<NodeProgress>,
    /// Written when it fails: the node goes back through Uncordoning, the
    /// failure filled in from the outcome.
    pub on_failed: NodeProgress,
    /// What a drain past its timeout comes to.
    pub on_timeout: OnTimeout,
    /// When the step's time is up (drain and Job timeouts), if it has a limit.
    pub deadline: Option<Timestamp>,
}

impl Transition {
    /// A transition with no failure path worth distinguishing (uncordon,
    /// hand-back): a failure is recorded as for any other step.
    pub(crate) fn new(from: &NodeProgress, on_done: Option<NodeProgress>, now: Timestamp) -> Transition {
        Transition {
            from: from.clone(),
            on_done,
            on_failed: from.enter(NodePhase::Uncordoning, from.component.clone(), now),
            on_timeout: OnTimeout::Hold,
            deadline: None,
        }
    }

    /// The record to write for `outcome`. Equal to `from` when nothing new
    /// was learned, so that no write is needed.
    pub fn record(&self, outcome: &Outcome) -> Option<NodeProgress> {
        let noted = |message: &str, halted: bool| {
            let mut p = self.from.clone();
            if p.message != message {
                p.message = message.to_string();
                p.attempts += 1;
            }
            p.halted = p.halted || halted;
            p
        };
        let fail = |reason: Reason, message: String| NodeProgress {
            failure: Some(Failure {
                reason,
                message,
                step: self.from.phase.step().to_string(),
                component: self.from.component.clone(),
            }),
            ..self.on_failed.clone()
        };
        Some(match outcome {
            Outcome::Done => return self.on_done.clone(),
            Outcome::Waiting { message } => noted(message, false),
            Outcome::Blocked {
                message,
                timed_out: false,
            } => noted(message, false),
            Outcome::Blocked {
                message,
                timed_out: true,
            } => match self.on_timeout {
                OnTimeout::Hold => noted(message, true),
                OnTimeout::Fail => fail(
                    Reason::DrainBlocked,
                    format!("drain timed out and onTimeout is SkipNode; the node keeps its old versions: {message}"),
                ),
            },
            Outcome::Failed { reason, message } => fail(*reason, message.clone()),
        })
    }
}

/// An event to publish about a step that was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepNote {
    pub reason: EventReason,
    pub warning: bool,
    /// The event's action: the step's name.
    pub action: &'static str,
    pub note: String,
    /// How long the step took, for a step that ended Done.
    pub took: Option<Duration>,
}

/// What to say about a step on `node` that ended with `outcome`, once its
/// record was written; None when there is nothing new to say. `now` only
/// measures how long the step took.
pub fn step_note(node: &str, step: &Step, t: &Transition, outcome: &Outcome, now: Timestamp) -> Option<StepNote> {
    let what = step.what();
    let note = |reason: EventReason, warning: bool, note: String| StepNote {
        reason,
        warning,
        action: step.name(),
        note,
        took: None,
    };
    Some(match outcome {
        Outcome::Done => {
            let (reason, text) = match step {
                Step::Cordon => (StepEvent::Cordoned, format!("node {node} cordoned")),
                Step::Drain => (StepEvent::Drained, format!("node {node} drained")),
                Step::Upgrade { .. } => (StepEvent::Upgraded, format!("node {node}: upgraded{what}")),
                Step::Verify { .. } => (StepEvent::Verified, format!("node {node}: verified{what}")),
                Step::Uncordon { .. } if t.from.failure.is_some() => (
                    StepEvent::NodeFailed,
                    format!(
                        "node {node} failed and was handed back: {}",
                        t.from.failure.as_ref().map(|f| f.message.as_str()).unwrap_or_default()
                    ),
                ),
                Step::Uncordon { .. } if t.on_done.is_none() => (
                    StepEvent::NodeReleased,
                    format!("node {node} handed back without finishing (the plan changed)"),
                ),
                Step::Uncordon { .. } => (
                    StepEvent::NodeUpgraded,
                    format!("node {node} finished and is schedulable again"),
                ),
            };
            let secs = (now - t.from.since).get_seconds().max(0) as u64;
            StepNote {
                took: Some(Duration::from_secs(secs)),
                ..note(reason.into(), reason == StepEvent::NodeFailed, text)
            }
        }
        Outcome::Blocked { message, timed_out } => note(
            Reason::DrainBlocked.into(),
            true,
            format!(
                "drain of {node}{}: {message}",
                if *timed_out { " timed out" } else { " blocked" }
            ),
        ),
        Outcome::Failed { reason, message } => note((*reason).into(), true, format!("node {node}{what}: {message}")),
        Outcome::Waiting { .. } => return None,
    })
}
