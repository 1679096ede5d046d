//! What the controller observed, handed to the planner as plain data.

use std::collections::{BTreeMap, BTreeSet};

use drover_api::ClusterUpgradeStatus;
use jiff::Timestamp;

use crate::progress::NodeProgress;

/// One snapshot of everything a decision depends on, including the time.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The time of the snapshot; the planner has no clock of its own.
    pub now: Timestamp,
    /// This ClusterUpgrade's name, generation and creation time.
    pub name: String,
    pub generation: i64,
    pub created: Timestamp,
    /// Every node in the cluster (the planner applies the node selector).
    pub nodes: Vec<ObservedNode>,
    /// Cluster-level components, by component name.
    pub workloads: BTreeMap<String, ObservedWorkload>,
    /// The backup Job for the current target, when the spec asks for one.
    pub backup: BackupState,
    /// Other ClusterUpgrades and the nodes they select.
    pub others: Vec<OtherUpgrade>,
    /// The node drover itself runs on: it goes last among workers.
    pub self_node: Option<String>,
    /// The status written last time, for lastTransitionTime, start time and history.
    pub previous: Option<ClusterUpgradeStatus>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    /// `spec.unschedulable`, whoever set it.
    pub unschedulable: bool,
    /// The ClusterUpgrade named by the `drover.dev/cordoned-by` annotation.
    pub cordoned_by: Option<String>,
    /// Live versions by component name, as the node, its pods or drover's
    /// verified-version annotations report them. Missing means unknown.
    pub versions: BTreeMap<String, String>,
    /// The progress record from the `drover.dev/progress` annotation.
    pub progress: Option<NodeProgress>,
}

impl ObservedNode {
    pub fn is_etcd(&self) -> bool {
        self.labels.contains_key(drover_api::names::label::ROLE_ETCD)
    }

    pub fn is_control_plane(&self) -> bool {
        use drover_api::names::label::{ROLE_CONTROL_PLANE, ROLE_MASTER};
        self.labels.contains_key(ROLE_CONTROL_PLANE) || self.labels.contains_key(ROLE_MASTER)
    }

    pub fn is_worker(&self) -> bool {
        !self.is_etcd() && !self.is_control_plane()
    }

    /// Out of service: NotReady or cordoned, by anyone.
    pub fn unavailable(&self) -> bool {
        !self.ready || self.unschedulable
    }
}

/// A cluster-level workload component as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedWorkload {
    /// The image tag its container runs (desired in its spec).
    pub version: Option<String>,
    /// The rollout of the current spec has completed.
    pub rolled_out: bool,
    /// Set when the rollout failed or timed out.
    pub failed: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackupState {
    /// No Job exists for the current target.
    #[default]
    NotStarted,
    Running,
    Succeeded,
    Failed(String),
}

/// Another ClusterUpgrade, for overlap detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherUpgrade {
    pub name: String,
    pub created: Timestamp,
    /// The nodes its selector picks.
    pub nodes: BTreeSet<String>,
}
