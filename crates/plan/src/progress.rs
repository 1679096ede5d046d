//! Per-node progress: the record drover keeps on each node it works on
//! (annotation `drover.dev/progress`), and the transitions between steps.
//!
//! ```text
//!   Pending ─start─▶ Cordoning ─▶ Draining ─▶ Upgrading(c) ─▶ Verifying(c) ─┐
//!                                                  ▲                          │ next c
//!                                                  └──────────────────────────┘
//!                                                   Verifying(last) ─▶ Uncordoning ─▶ Done
//!   any step ─failure─▶ Uncordoning(failed) ─▶ Failed
//! ```
//! AllAtOnce starts at Upgrading and skips Cordoning, Draining and Uncordoning.

use drover_api::{NodeState, Reason};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodePhase {
    Cordoning,
    Draining,
    Upgrading,
    Verifying,
    Uncordoning,
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
            NodePhase::Cordoning => "Cordon",
            NodePhase::Draining => "Drain",
            NodePhase::Upgrading => "Upgrade",
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
    /// The replica that wrote this record: its Lease identity (empty
    /// without leader election, and on records older than this field).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub writer: String,
    /// The writer's term: the Lease's `leaseTransitions` when it became
    /// leader (0 without leader election, and on older records). A leader
    /// never overwrites a record of a later term.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub term: i64,
}

fn is_zero(x: &i64) -> bool {
    *x == 0
}

/// Who writes a node's records: the leader's Lease identity and term.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Writer {
    pub identity: String,
    /// The Lease's `leaseTransitions` when this replica acquired it.
    pub term: i64,
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
            writer: String::new(),
            term: 0,
        }
    }

    /// The same record, as `w` writes it.
    pub fn written_by(mut self, w: &Writer) -> Self {
        self.writer = w.identity.clone();
        self.term = w.term;
        self
    }

    /// The same node, moved to `phase` (fresh attempt count and message).
    pub fn enter(&self, phase: NodePhase, component: Option<String>, now: Timestamp) -> Self {
        NodeProgress {
            phase,
            component,
            since: now,
            attempts: 0,
            message: String::new(),
            halted: false,
            completed: (phase == NodePhase::Done).then_some(now),
            ..self.clone()
        }
    }

    /// The annotation value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("progress always serialises")
    }

    /// Parse the annotation value; a record drover cannot read is treated as absent.
    pub fn from_annotation(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }

    /// How `status.nodes[]` reports this record: Failed once it failed (on
    /// its way back or handed back), Blocked while its drain is held up, else
    /// InProgress. The one place the record's phase maps to the reported state.
    pub fn reported_state(&self) -> NodeState {
        if self.phase == NodePhase::Failed || self.failure.is_some() {
            NodeState::Failed
        } else if self.halted || (self.phase == NodePhase::Draining && !self.message.is_empty()) {
            NodeState::Blocked
        } else {
            NodeState::InProgress
        }
    }
}
