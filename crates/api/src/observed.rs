//! What a side effect reports and what an observation of a workload or
//! backup finds: the plain data the node operations hand back and the
//! planner reads. Shared here so that neither side depends on the other.

use crate::vocab::Reason;

/// What performing a step came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The step is complete.
    Done,
    /// Not finished yet, for an expected reason (pods terminating, Job running).
    Waiting { message: String },
    /// Not finished, and not through waiting alone: a drain blocked by
    /// PodDisruptionBudgets. `timed_out` once the drain timeout has passed.
    Blocked { message: String, timed_out: bool },
    /// The step failed; drover may try it again (spec.strategy.retries).
    Failed { reason: Reason, message: String },
    /// The step failed for good: the API server refused its request (an
    /// invalid Job, a policy that forbids it). Trying again cannot help.
    Refused { reason: Reason, message: String },
    /// The upgrade Job succeeded and asked for a reboot (`reboot-required`
    /// in its termination message) before its version can show.
    RebootRequired { message: String },
}

impl Outcome {
    /// done, waiting, blocked or failed (a metrics label; a reboot request is done).
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Waiting { .. } => "waiting",
            Outcome::Blocked { .. } => "blocked",
            Outcome::Failed { .. } | Outcome::Refused { .. } => "failed",
            Outcome::RebootRequired { .. } => "done",
        }
    }
}

/// A cluster-level workload component as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedWorkload {
    /// The image tag its containers run (desired in their specs): the
    /// version when every matching container has it, else the highest tag
    /// of those that do not (what a downgrade check compares).
    pub version: Option<String>,
    /// The rollout of the current spec has completed.
    pub rolled_out: bool,
    /// Set when the rollout failed or timed out.
    pub failed: Option<String>,
    /// The component's workloads rolled out at the version, and how many it
    /// has (0 when not read: a one-workload component).
    pub updated: usize,
    pub total: usize,
    /// The first workload not yet at the version and rolled out, and why
    /// (`DaemonSet kube-system/calico-node: 3 of 8 pods updated`).
    pub lagging: Option<String>,
}

/// A backup Job's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackupState {
    /// No Job exists for the current target.
    #[default]
    NotStarted,
    Running,
    Succeeded,
    Failed(String),
}
