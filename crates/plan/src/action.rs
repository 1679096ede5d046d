//! What the planner asks for, each with everything needed to carry it out
//! and to record what it came to. The controller performs the effect and
//! writes the record it was handed; it decides nothing.

use std::time::Duration;

use drover_api::{EventReason, Outcome, Reason, StepEvent};
use jiff::Timestamp;

use crate::progress::{Failure, NodePhase, NodeProgress, Writer};

/// One thing to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record that drover starts on this node (the annotation); its first
    /// step follows on the next pass.
    Start { node: String, progress: Box<NodeProgress> },
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
    /// Put this ClusterUpgrade's `drover.dev/upgrade-pending`
    /// PreferNoSchedule taint on a worker still to be upgraded (`mark`), or
    /// take it off one that is upgraded, handed back or out of scope.
    Steer { node: String, mark: bool },
}

impl Action {
    /// The same action, with every record it writes naming `w`.
    pub(crate) fn written_by(&mut self, w: &Writer) {
        match self {
            Action::Start { progress, .. } => **progress = (**progress).clone().written_by(w),
            Action::Step { transition, .. } => transition.written_by(w),
            Action::UpgradeWorkload { .. } | Action::RunBackup { .. } | Action::Steer { .. } => {}
        }
    }

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
        /// The Job to run instead of the spec's: a rollback installs a
        /// previous version with the Job that installed it (status.installers).
        job: Option<Box<drover_api::JobUpgrade>>,
    },
    Verify {
        component: String,
        version: String,
    },
    /// Wait for the node to come back from a reboot: Done once it reports a
    /// bootID other than `boot_id` and is Ready. With `run_job`, first make
    /// sure drover's reboot Job for this boot exists (the upgrade Job of
    /// `component` asked for the reboot).
    Reboot {
        component: String,
        boot_id: String,
        run_job: bool,
    },
    /// Make the node schedulable again, but only if drover cordoned it:
    /// `undo_cordon` is false for a node someone else cordoned. With
    /// `untaint`, the same patch takes this ClusterUpgrade's
    /// `drover.dev/upgrade-pending` taint off (the node is upgraded or
    /// failed; a node handed back before its upgrade keeps it).
    Uncordon {
        undo_cordon: bool,
        untaint: bool,
    },
    /// One try of the health checks named (spec.healthChecks) for this
    /// node; [`Transition::record_health`] turns the answers into the record.
    Health {
        /// Before the node starts (Prechecking), or after its uncordon (Checking).
        before: bool,
        checks: Vec<String>,
        /// The last component upgraded ("" before the node starts).
        component: String,
        /// The node's uncordon, for the pods check's restarts.
        since: Option<Timestamp>,
        /// Every control-plane node and etcd member (the controlPlane check).
        control_plane: Vec<String>,
        etcd: Vec<String>,
        /// The node is an etcd or control-plane node.
        is_member: bool,
    },
    /// Make sure the hook Job exists for this node, and report on it.
    Hook {
        hook: HookPoint,
    },
}

/// Where a hook Job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    PreDrain,
    PostUncordon,
}

impl HookPoint {
    /// preDrain or postUncordon (the spec's field, the Job's DROVER_HOOK).
    pub fn as_str(self) -> &'static str {
        match self {
            HookPoint::PreDrain => "preDrain",
            HookPoint::PostUncordon => "postUncordon",
        }
    }

    /// The reason a failed hook Job fails its node with.
    pub fn reason(self) -> Reason {
        match self {
            HookPoint::PreDrain => Reason::PreDrainHookFailed,
            HookPoint::PostUncordon => Reason::PostUncordonHookFailed,
        }
    }
}

impl Step {
    /// Cordon, Drain, Upgrade, Reboot, Verify or Uncordon (events, metrics).
    pub fn name(&self) -> &'static str {
        match self {
            Step::Cordon => "Cordon",
            Step::Drain => "Drain",
            Step::Upgrade { .. } => "Upgrade",
            Step::Verify { .. } => "Verify",
            Step::Reboot { .. } => "Reboot",
            Step::Uncordon { .. } => "Uncordon",
            Step::Health { .. } => "HealthCheck",
            Step::Hook {
                hook: HookPoint::PreDrain,
            } => "PreDrainHook",
            Step::Hook {
                hook: HookPoint::PostUncordon,
            } => "PostUncordonHook",
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
            Step::Reboot { .. } => (Reason::RebootFailed, "the reboot Job".to_string()),
            Step::Hook { hook } => (hook.reason(), format!("the {} hook Job", hook.as_str())),
            Step::Cordon | Step::Uncordon { .. } | Step::Health { .. } => return None,
        };
        Some(Outcome::Refused {
            reason,
            message: format!("the API server refused {what}: {server_says}"),
        })
    }

    fn what(&self) -> String {
        match self {
            Step::Upgrade { component, version, .. } | Step::Verify { component, version } => {
                format!(" {component} {version}")
            }
            Step::Reboot { component, .. } => format!(" ({component})"),
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
    /// Written when an upgrade Job asks for a reboot (Rebooting, with the
    /// reboot Job); None for other steps, where a reboot request reads as Done.
    pub on_reboot: Option<NodeProgress>,
    /// Written when it fails for good: the node goes back through
    /// Uncordoning (or straight to Failed, still cordoned, when the failure
    /// halts the rollout under onHalt KeepCordoned), the failure filled in
    /// from the outcome.
    pub on_failed: NodeProgress,
    /// Written instead of `on_failed` when a retryable failure (a failed
    /// Job, a version that did not verify, a reboot that did not come back)
    /// has retries left: the component's upgrade again, after the backoff.
    pub on_retry: Option<NodeProgress>,
    /// The retry this step is has begun: the record's retry time is cleared.
    pub retry_started: bool,
    /// What a drain past its timeout comes to.
    pub on_timeout: OnTimeout,
    /// When the step's time is up (drain and Job timeouts), if it has a limit.
    pub deadline: Option<Timestamp>,
    /// Who writes the records this transition gives (every one names it).
    pub writer: Writer,
    /// The reason a failure is recorded with instead of the outcome's (a
    /// hook Job's failure is the hook's, not an upgrade's).
    pub failure_reason: Option<Reason>,
    /// Why the failure cannot be rolled back, when onFailure is Rollback
    /// and it cannot: the failure is recorded as RollbackRefused, saying so.
    pub rollback_refused: Option<String>,
    /// For a Health step: how the answers come to a record.
    pub health: Option<HealthJudge>,
    /// Put before a failure's message (a rollback that failed says so).
    pub failure_prefix: Option<String>,
    /// The step that follows at once when this one is Done, planned from
    /// the record `on_done` gives: that record is not written first, the
    /// chained step's own outcome is (compared against the record this
    /// step started from). An upgrade chains its verification, and a
    /// verification the uncordon, so a node is not held between them for a
    /// write and the next pass.
    pub then: Option<Box<Then>>,
}

/// A step chained after another: see [`Transition::then`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Then {
    pub step: Step,
    pub transition: Transition,
    /// The plan's time, which the chained transition's times count from.
    pub planned: Timestamp,
}

impl Then {
    /// The step and its transition as planned at `now` instead: every time
    /// the plan set from its clock moves on by `now - planned`, so that the
    /// records say when the chained step really began (a verification
    /// starts when the Job is done, not when it was planned).
    pub fn at(&self, now: Timestamp) -> (Step, Transition) {
        let by = now.duration_since(self.planned);
        let mut t = self.transition.clone();
        t.shift(self.planned, by);
        (self.step.clone(), t)
    }
}

/// What a Health step's answers are judged against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthJudge {
    pub node: String,
    pub checks: Vec<crate::accept::TypedCheck>,
    /// Before the node starts: never a failure, only a wait.
    pub before: bool,
    /// The plan's time.
    pub now: Timestamp,
}

/// One check's answer, as the controller got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub answer: String,
}

impl Transition {
    /// A transition with no failure path worth distinguishing (uncordon,
    /// hand-back): a failure is recorded as for any other step.
    pub(crate) fn new(from: &NodeProgress, on_done: Option<NodeProgress>, now: Timestamp) -> Transition {
        Transition {
            from: from.clone(),
            on_done,
            on_reboot: None,
            on_failed: from.enter(NodePhase::Uncordoning, from.component.clone(), now),
            on_retry: None,
            retry_started: false,
            on_timeout: OnTimeout::Hold,
            deadline: None,
            writer: Writer::default(),
            failure_reason: None,
            rollback_refused: None,
            health: None,
            failure_prefix: None,
            then: None,
        }
    }

    /// Move every time at or after `from` on by `by` (see [`Then::at`]).
    fn shift(&mut self, from: Timestamp, by: jiff::SignedDuration) {
        let p = |r: &mut NodeProgress| r.shift(from, by);
        p(&mut self.from);
        self.on_done.iter_mut().for_each(p);
        self.on_reboot.iter_mut().for_each(p);
        self.on_retry.iter_mut().for_each(p);
        p(&mut self.on_failed);
        crate::progress::shift(&mut self.deadline, from, by);
        if let Some(h) = &mut self.health {
            crate::progress::shift_at(&mut h.now, from, by);
        }
        if let Some(then) = &mut self.then {
            then.transition.shift(from, by);
            crate::progress::shift_at(&mut then.planned, from, by);
        }
    }

    /// The same transition, with every record it gives written by `w`.
    pub(crate) fn written_by(&mut self, w: &Writer) {
        self.writer = w.clone();
        self.on_done = self.on_done.take().map(|p| p.written_by(w));
        self.on_reboot = self.on_reboot.take().map(|p| p.written_by(w));
        self.on_retry = self.on_retry.take().map(|p| p.written_by(w));
        self.on_failed = self.on_failed.clone().written_by(w);
        if let Some(then) = &mut self.then {
            then.transition.written_by(w);
        }
    }

    /// The record to write for `outcome`. Equal to `from` when nothing new
    /// was learned, so that no write is needed.
    pub fn record(&self, outcome: &Outcome) -> Option<NodeProgress> {
        let noted = |message: &str, halted: bool| {
            let mut p = self.from.clone().written_by(&self.writer);
            if p.message != message {
                p.message = message.to_string();
                p.attempts += 1;
            }
            p.halted = p.halted || halted;
            if self.retry_started {
                p.retry_at = None;
            }
            p
        };
        let fail = |reason: Reason, message: String, skipped: bool| NodeProgress {
            failure: Some(match &self.rollback_refused {
                Some(why) => Failure {
                    reason: Reason::RollbackRefused,
                    message: format!(
                        "{}: {message}; not rolled back: {why}",
                        self.failure_reason.unwrap_or(reason)
                    ),
                    step: self.from.phase.step().to_string(),
                    component: self.from.component.clone(),
                    skipped,
                },
                None => Failure {
                    reason: self.failure_reason.unwrap_or(reason),
                    message: match &self.failure_prefix {
                        Some(prefix) => format!("{prefix}: {message}"),
                        None => message,
                    },
                    step: self.from.phase.step().to_string(),
                    component: self.from.component.clone(),
                    skipped,
                },
            }),
            ..self.on_failed.clone()
        };
        Some(match outcome {
            Outcome::Done => return self.on_done.clone(),
            Outcome::RebootRequired { .. } => return self.on_reboot.clone().or_else(|| self.on_done.clone()),
            Outcome::Waiting { message } => {
                let p = noted(message, false);
                // The same wait with new numbers ("job … running (0 active…)"
                // then "(1 active…)", "waiting for 2 pods to terminate" then
                // 1) is not a new state: not worth a write to the node each.
                if p.message != self.from.message && same_shape(&p.message, &self.from.message) {
                    NodeProgress {
                        message: self.from.message.clone(),
                        attempts: self.from.attempts,
                        ..p
                    }
                } else {
                    p
                }
            }
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
                    format!(
                        "skipped: the drain timed out and spec.drain.onTimeout is SkipNode; the node keeps its old versions: {message}"
                    ),
                    true,
                ),
            },
            Outcome::Failed { reason, message } => match &self.on_retry {
                Some(retry) if reason.retryable() => {
                    let mut p = retry.clone();
                    p.message = format!(
                        "try {} failed ({reason}: {message}); trying again at {}",
                        p.retries,
                        p.retry_at.map(|t| t.to_string()).unwrap_or_default()
                    );
                    p
                }
                _ => fail(*reason, message.clone(), false),
            },
            Outcome::Refused { reason, message } => fail(*reason, message.clone(), false),
        })
    }
}

impl Transition {
    /// The record and the outcome for one try of a Health step's checks.
    /// Each check counts its passes in a row; the step is Done once every
    /// check reached its successThreshold. A check that failed makes the
    /// step wait `interval`; after the uncordon, one that has not passed
    /// within its timeout fails the node with HealthCheckFailed. Before the
    /// node starts a check never fails it: the wait goes on, and the
    /// rollout shows Stalled once the timeout has passed.
    pub fn record_health(&self, results: &[CheckResult]) -> (Outcome, Option<NodeProgress>) {
        let Some(judge) = &self.health else {
            return (Outcome::Done, self.on_done.clone());
        };
        let mut p = self.from.clone().written_by(&self.writer);
        for r in results {
            let n = p.passes.entry(r.name.clone()).or_insert(0);
            *n = if r.passed { *n + 1 } else { 0 };
        }
        let passes = |name: &str| p.passes.get(name).copied().unwrap_or(0);
        let left: Vec<&crate::accept::TypedCheck> =
            judge.checks.iter().filter(|c| passes(&c.name) < c.threshold).collect();
        if left.is_empty() {
            return (Outcome::Done, self.on_done.clone());
        }
        let failed = results.iter().find(|r| !r.passed);
        let elapsed = Duration::try_from(judge.now.duration_since(self.from.since)).unwrap_or_default();
        let interval = left.iter().map(|c| c.interval).min().unwrap_or(Duration::from_secs(10));
        p.check_at = Some(crate::progress::add(judge.now, interval));
        p.unhealthy = failed.is_some();
        let message = match failed {
            Some(r) => {
                let check = judge.checks.iter().find(|c| c.name == r.name);
                let timeout = check.map(|c| c.timeout).unwrap_or_default();
                let over = elapsed >= timeout;
                if over && !judge.before {
                    let outcome = Outcome::Failed {
                        reason: Reason::HealthCheckFailed,
                        message: format!(
                            "health check {} on {} has not passed within its timeout ({}s): {}",
                            r.name,
                            judge.node,
                            timeout.as_secs(),
                            r.answer
                        ),
                    };
                    let record = self.record(&outcome);
                    return (outcome, record);
                }
                format!(
                    "health check {} on {}{}: {}",
                    r.name,
                    judge.node,
                    if over {
                        format!(
                            " has not passed for {}s (its timeout); nothing is touched until it does",
                            timeout.as_secs()
                        )
                    } else if judge.before {
                        " before the node starts".to_string()
                    } else {
                        String::new()
                    },
                    r.answer
                )
            }
            None => {
                let c = left[0];
                format!(
                    "health check {} on {} passed {} of {} times in a row",
                    c.name,
                    judge.node,
                    passes(&c.name),
                    c.threshold
                )
            }
        };
        if p.message != message {
            p.message = message.clone();
            p.attempts += 1;
        }
        (Outcome::Waiting { message }, Some(p))
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
    /// Whether it becomes an event. A node gets at most two Normal events,
    /// when it starts and when it ends (upgraded, failed or handed back),
    /// so that a 5,000-node rollout does not write 30,000 events; every
    /// Warning is one. The steps between show in status and the metrics.
    pub event: bool,
}

/// Whether two messages differ only in their numbers.
fn same_shape(a: &str, b: &str) -> bool {
    let shape = |m: &str| -> String {
        let mut out = String::with_capacity(m.len());
        for c in m.chars() {
            match c {
                '0'..='9' if out.ends_with('#') => {}
                '0'..='9' => out.push('#'),
                c => out.push(c),
            }
        }
        out
    };
    shape(a) == shape(b)
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
        event: warning,
    };
    Some(match outcome {
        Outcome::Done => {
            let (reason, text) = match step {
                Step::Cordon => (StepEvent::Cordoned, format!("node {node} cordoned")),
                Step::Drain => (StepEvent::Drained, format!("node {node} drained")),
                Step::Upgrade { .. } => (StepEvent::Upgraded, format!("node {node}: upgraded{what}")),
                Step::Verify { .. } => (StepEvent::Verified, format!("node {node}: verified{what}")),
                Step::Reboot { .. } => (
                    StepEvent::Rebooted,
                    format!("node {node} is back from its reboot{what}"),
                ),
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
                Step::Uncordon { .. } if t.on_done.as_ref().is_some_and(|p| p.phase.in_flight()) => {
                    (StepEvent::Uncordoned, format!("node {node} is schedulable again"))
                }
                Step::Uncordon { .. } => (
                    StepEvent::NodeUpgraded,
                    format!("node {node} finished and is schedulable again"),
                ),
                Step::Health { before: true, .. } => (
                    StepEvent::HealthChecked,
                    format!("node {node}: every health check passed before it starts"),
                ),
                Step::Health { before: false, .. } => (
                    StepEvent::NodeUpgraded,
                    format!("node {node} finished: schedulable again and every health check passed"),
                ),
                Step::Hook { hook } => (
                    StepEvent::HookSucceeded,
                    format!("node {node}: the {} hook Job succeeded", hook.as_str()),
                ),
            };
            let secs = (now - t.from.since).get_seconds().max(0) as u64;
            let ends = matches!(
                reason,
                StepEvent::NodeFailed | StepEvent::NodeReleased | StepEvent::NodeUpgraded
            );
            StepNote {
                took: Some(Duration::from_secs(secs)),
                event: ends,
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
        Outcome::Failed { reason, message } if t.on_retry.is_some() && reason.retryable() => note(
            Reason::Retrying.into(),
            true,
            format!("node {node}{what}: {message}; retrying (spec.strategy.retries)"),
        ),
        Outcome::Failed { reason, message } | Outcome::Refused { reason, message } => {
            note((*reason).into(), true, format!("node {node}{what}: {message}"))
        }
        Outcome::RebootRequired { message } => note(
            StepEvent::RebootRequested.into(),
            false,
            format!("node {node}{what}: the upgrade asked for a reboot: {message}"),
        ),
        Outcome::Waiting { .. } => return None,
    })
}

#[cfg(test)]
mod shape_tests {
    use super::same_shape;

    #[test]
    fn a_wait_whose_numbers_change_is_the_same_wait() {
        assert!(same_shape(
            "job containerd-w1-3f8 running (0 active, 0 failed attempts)",
            "job containerd-w1-3f8 running (1 active, 12 failed attempts)"
        ));
        assert!(same_shape(
            "waiting for 2 pods to terminate",
            "waiting for 10 pods to terminate"
        ));
        // A different wait, or a block, is a new state and is written.
        assert!(!same_shape(
            "waiting for 2 pods to terminate",
            "2 pods blocked: default/web-1 blocked by PodDisruptionBudget default/web"
        ));
        assert!(!same_shape(
            "replacing job j, which finished in an earlier attempt",
            "job j running (0 active, 0 failed attempts)"
        ));
    }
}
