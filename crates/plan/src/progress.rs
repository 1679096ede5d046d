//! Per-node progress: the record drover keeps on each node it works on
//! (annotation `drover.dev/progress`), and the transitions between steps.
//!
//! ```text
//!   Pending ─start─▶ Cordoning ─▶ Draining ─▶ Upgrading(c) ─(reboot)─▶ Rebooting(c) ─▶ Verifying(c) ─┐
//!                                                  ▲   └──────────────────────────────────┘▲          │ next c
//!                                                  └──────────────────────────────────────────────────┘
//!                                                   Verifying(last) ─▶ Uncordoning ─▶ Done
//!   Upgrading, Rebooting, Verifying ─failure, retries left─▶ Upgrading(c) again after the backoff
//!   any step ─failure─▶ Uncordoning(failed) ─▶ Failed      (or Failed at once, still cordoned, under onHalt KeepCordoned)
//! ```
//! With spec.healthChecks a node starts at Prechecking (nothing touched
//! until the checks pass) and ends through Checking after its uncordon;
//! with spec.hooks, PreDrainHook runs between Cordoning and Draining and
//! PostUncordonHook between Uncordoning and Checking:
//! ```text
//!   Prechecking ─▶ Cordoning ─▶ PreDrainHook ─▶ Draining ─▶ … ─▶ Uncordoning ─▶ PostUncordonHook ─▶ Checking ─▶ Done
//! ```
//! Under onFailure Rollback a failure after the drain (a Job, a
//! verification, a reboot, a health check, the post-uncordon hook) sets
//! `rollback` and walks the node's changed components back to `previous`
//! in reverse order (Cordoning and Draining again when it was already
//! handed back), then Uncordoning ─▶ Failed with RolledBack.
//! AllAtOnce starts at Upgrading and skips Cordoning, Draining and Uncordoning.

use std::collections::BTreeMap;

use drover_api::{NodeState, Reason};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodePhase {
    /// Before anything is touched: the health checks must pass.
    Prechecking,
    Cordoning,
    /// The pre-drain hook Job (spec.hooks.preDrain).
    PreDrainHook,
    Draining,
    Upgrading,
    /// Waiting for the node to report a new bootID and Ready (after a Job
    /// that reboots, or after drover's reboot Job).
    Rebooting,
    Verifying,
    Uncordoning,
    /// The post-uncordon hook Job (spec.hooks.postUncordon).
    PostUncordonHook,
    /// After the uncordon: the health checks must pass before the node counts as upgraded.
    Checking,
    Done,
    Failed,
}

impl NodePhase {
    /// Still being worked on (not Done or Failed).
    pub fn in_flight(self) -> bool {
        !matches!(self, NodePhase::Done | NodePhase::Failed)
    }

    /// The step name reported in the status.
    pub fn step(self) -> &'static str {
        match self {
            NodePhase::Prechecking => "Precheck",
            NodePhase::PreDrainHook => "PreDrainHook",
            NodePhase::PostUncordonHook => "PostUncordonHook",
            NodePhase::Checking => "HealthCheck",
            NodePhase::Cordoning => "Cordon",
            NodePhase::Draining => "Drain",
            NodePhase::Upgrading => "Upgrade",
            NodePhase::Rebooting => "Reboot",
            NodePhase::Verifying => "Verify",
            NodePhase::Uncordoning => "Uncordon",
            NodePhase::Done => "Done",
            NodePhase::Failed => "Failed",
        }
    }
}

/// Why a node failed, kept on the record so the status can say it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// A condition reason (UpgradeJobFailed, VerificationFailed, DrainBlocked…).
    pub reason: Reason,
    pub message: String,
    /// The step that failed.
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The drain timed out and spec.drain.onTimeout is SkipNode.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// The progress record of one node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeProgress {
    /// The ClusterUpgrade that owns this record.
    pub upgrade: String,
    /// The spec generation the node was started under. A Failed node is
    /// retried once the spec changes.
    pub generation: i64,
    pub phase: NodePhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// When the node entered this phase (drain and Job deadlines count from here).
    pub since: Timestamp,
    /// When drover started on this node.
    pub started: Timestamp,
    /// When the node reached Done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<Timestamp>,
    /// Attempts at this phase that ended Waiting or Blocked.
    #[serde(default)]
    pub attempts: u32,
    /// What the last attempt said (why it is not finished).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The drain passed its timeout and the spec says Halt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub halted: bool,
    /// Set on the way to Failed, and on Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The node's bootID when its current component's upgrade started: a
    /// reboot is over when the node reports another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Rebooting: drover runs the reboot Job (the upgrade Job asked for a
    /// reboot), rather than waiting for a reboot the Job does itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reboot_job: bool,
    /// Failed tries of the current component so far (spec.strategy.retries).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// A failed step waits until this time before it is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Timestamp>,
    /// Left cordoned on purpose, and why (status.leftCordoned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_cordoned: Option<String>,
    /// The replica that wrote this record: its Lease identity (empty
    /// without leader election, and on records older than this field).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub writer: String,
    /// The writer's term: the Lease's `leaseTransitions` when it became
    /// leader (0 without leader election, and on older records). A leader
    /// never overwrites a record of a later term.
    #[serde(default, skip_serializing_if = "is_zero_term")]
    pub term: i64,
    /// The record's format version ([`FORMAT`]). A record without it was
    /// written before the field existed: version 1, the same fields.
    #[serde(default = "format_1")]
    pub v: u32,
    /// Health checks: passes in a row so far, by check name (Prechecking, Checking).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub passes: BTreeMap<String, u32>,
    /// Health checks: the next try is not before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_at: Option<Timestamp>,
    /// What each component drover changes ran before it started, by name:
    /// what a rollback returns the node to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub previous: BTreeMap<String, String>,
    /// The node is being returned to `previous` (onFailure Rollback).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
    /// The canary hash of the target, when this node is one of its canaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// The last health check try had a check fail.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unhealthy: bool,
    /// When the node was made schedulable again (the pods check counts restarts since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncordoned: Option<Timestamp>,
}

/// Move `t` on by `by` if it is at or after `from`.
pub(crate) fn shift_at(t: &mut Timestamp, from: Timestamp, by: jiff::SignedDuration) {
    if *t >= from {
        *t = t.checked_add(by).unwrap_or(*t);
    }
}

/// [`shift_at`] for a time that may be unset.
pub(crate) fn shift(t: &mut Option<Timestamp>, from: Timestamp, by: jiff::SignedDuration) {
    if let Some(t) = t {
        shift_at(t, from, by);
    }
}

/// `t` plus `d`, saturating at the end of time.
pub(crate) fn add(t: Timestamp, d: std::time::Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_term(x: &i64) -> bool {
    *x == 0
}

/// Who writes a node's records: the leader's Lease identity and term.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Writer {
    pub identity: String,
    /// The Lease's `leaseTransitions` when this replica acquired it.
    pub term: i64,
}

/// The format of the records this drover writes, and the newest it reads.
/// A record of an older format is read (each new field has a default); one
/// of a newer format is left alone and reported ([`Record::Newer`]), never
/// overwritten: a newer drover wrote it, and this one cannot know what its
/// fields mean. Raise it when a change would make an older drover misread
/// a record (a renamed field, a new phase), not for a field it may ignore.
/// Format 2 added the phases Prechecking, PreDrainHook, PostUncordonHook
/// and Checking, and rollback.
pub const FORMAT: u32 = 2;

fn format_1() -> u32 {
    1
}

/// What a node's `drover.dev/progress` annotation holds, as this drover reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// No record, or text that is not a record drover can read.
    Absent,
    Readable(Box<NodeProgress>),
    /// A record of a newer format, with its version and owner when it names one.
    Newer {
        v: u32,
        upgrade: Option<String>,
    },
}

impl Record {
    pub fn parse(s: &str) -> Record {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(s) else {
            return Record::Absent;
        };
        let v = value.get("v").and_then(serde_json::Value::as_u64).unwrap_or(1);
        if v > u64::from(FORMAT) {
            return Record::Newer {
                v: u32::try_from(v).unwrap_or(u32::MAX),
                upgrade: value.get("upgrade").and_then(|u| u.as_str()).map(str::to_string),
            };
        }
        match serde_json::from_value(value) {
            Ok(p) => Record::Readable(Box::new(p)),
            Err(_) => Record::Absent,
        }
    }
}

impl NodeProgress {
    /// The record of a node drover starts now.
    pub fn start(upgrade: &str, generation: i64, phase: NodePhase, component: Option<String>, now: Timestamp) -> Self {
        NodeProgress {
            upgrade: upgrade.to_string(),
            generation,
            phase,
            component,
            since: now,
            started: now,
            completed: None,
            attempts: 0,
            message: String::new(),
            halted: false,
            failure: None,
            boot_id: None,
            reboot_job: false,
            retries: 0,
            retry_at: None,
            left_cordoned: None,
            writer: String::new(),
            term: 0,
            v: FORMAT,
            passes: BTreeMap::new(),
            check_at: None,
            previous: BTreeMap::new(),
            rollback: false,
            canary: None,
            uncordoned: None,
            unhealthy: false,
        }
    }

    /// The same record, as `w` writes it.
    pub fn written_by(mut self, w: &Writer) -> Self {
        self.writer = w.identity.clone();
        self.term = w.term;
        self
    }

    /// Move every time of the record at or after `from` on by `by`, but
    /// when the node started: a chained step never starts a node.
    pub(crate) fn shift(&mut self, from: Timestamp, by: jiff::SignedDuration) {
        shift_at(&mut self.since, from, by);
        for t in [
            &mut self.completed,
            &mut self.retry_at,
            &mut self.check_at,
            &mut self.uncordoned,
        ] {
            shift(t, from, by);
        }
    }

    /// The same node, moved to `phase` (fresh attempt count and message).
    /// A new component starts with no retries and no reboot pending.
    pub fn enter(&self, phase: NodePhase, component: Option<String>, now: Timestamp) -> Self {
        let same_component = component == self.component;
        NodeProgress {
            phase,
            since: now,
            attempts: 0,
            message: String::new(),
            halted: false,
            completed: (phase == NodePhase::Done).then_some(now),
            retries: if same_component { self.retries } else { 0 },
            retry_at: None,
            passes: BTreeMap::new(),
            check_at: None,
            unhealthy: false,
            reboot_job: self.reboot_job && phase == NodePhase::Rebooting,
            component,
            // Rewritten in this drover's format.
            v: FORMAT,
            ..self.clone()
        }
    }

    /// The annotation value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("progress always serialises")
    }

    /// Parse the annotation value; a record drover cannot read, or one of
    /// a newer format ([`Record::parse`] tells them apart), is None.
    pub fn from_annotation(s: &str) -> Option<Self> {
        match Record::parse(s) {
            Record::Readable(p) => Some(*p),
            _ => None,
        }
    }

    /// How `status.nodes[]` reports this record: Skipped or Failed once it
    /// failed (on its way back or handed back), Blocked while its drain is
    /// held up or halted the rollout, Retrying while a failed step waits for
    /// its retry, else InProgress. The one place the record's phase maps to the reported state.
    pub fn reported_state(&self) -> NodeState {
        if self.failure.as_ref().is_some_and(|f| f.skipped) {
            NodeState::Skipped
        } else if self.halted && self.failure.is_none() {
            NodeState::Blocked
        } else if self.rollback && self.phase.in_flight() {
            NodeState::RollingBack
        } else if self.failure.as_ref().is_some_and(|f| f.reason == Reason::RolledBack) {
            NodeState::RolledBack
        } else if self.phase == NodePhase::Failed || self.failure.is_some() {
            NodeState::Failed
        } else if self.retry_at.is_some() {
            NodeState::Retrying
        } else if self.halted || (self.phase == NodePhase::Draining && !self.message.is_empty()) {
            NodeState::Blocked
        } else {
            NodeState::InProgress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"upgrade":"u","generation":2,"phase":"Draining","since":"2026-01-01T00:00:09Z","started":"2026-01-01T00:00:00Z","attempts":1,"message":"waiting"}"#;

    #[test]
    fn a_record_without_a_version_is_format_1_and_reads_as_before() {
        let Record::Readable(p) = Record::parse(V1) else {
            panic!("{:?}", Record::parse(V1))
        };
        assert_eq!((p.v, p.phase, p.attempts), (1, NodePhase::Draining, 1));
        // Moved to its next step, it is written in this drover's format.
        let again: serde_json::Value =
            serde_json::from_str(&p.enter(NodePhase::Upgrading, None, p.since).to_annotation()).unwrap();
        assert_eq!(again["v"], FORMAT);
        assert_eq!(NodeProgress::from_annotation(&p.to_annotation()), Some(*p));
    }

    #[test]
    fn a_newer_record_is_recognised_not_misread_and_garbage_is_absent() {
        let newer = r#"{"v":99,"upgrade":"u","phase":"Rebooting","steps":[]}"#;
        assert_eq!(
            Record::parse(newer),
            Record::Newer {
                v: 99,
                upgrade: Some("u".into())
            }
        );
        assert_eq!(NodeProgress::from_annotation(newer), None);
        // A newer record that happens to parse as today's is still newer.
        let parses = V1.replace("{\"upgrade\"", "{\"v\":3,\"upgrade\"");
        assert!(matches!(Record::parse(&parses), Record::Newer { v: 3, .. }), "{parses}");
        assert_eq!(Record::parse("not json"), Record::Absent);
        assert_eq!(Record::parse(r#"{"v":1,"phase":"Nowhere"}"#), Record::Absent);
    }
}
