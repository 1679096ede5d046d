//! What the controller observed, handed to the planner as plain data.

use std::collections::{BTreeMap, BTreeSet};

use drover_api::ClusterUpgradeStatus;
use drover_api::images::AllowedImages;
pub use drover_api::{BackupState, ObservedWorkload};
use jiff::Timestamp;

use crate::progress::{NodeProgress, Writer};

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
    /// This ClusterUpgrade's backup Jobs by name, when the spec asks for a
    /// backup (the planner picks the one of its target).
    pub backups: BTreeMap<String, BackupState>,
    /// Other ClusterUpgrades and the nodes they select.
    pub others: Vec<OtherUpgrade>,
    /// The node drover itself runs on: it goes last among workers.
    pub self_node: Option<String>,
    /// The status written last time, for lastTransitionTime, start time and history.
    pub previous: Option<ClusterUpgradeStatus>,
    /// The images drover may run (`drover run --allowed-images`); None allows every image.
    pub allowed_images: Option<AllowedImages>,
    /// The leader this pass plans for: every record the plan builds names
    /// it, and a record of a later term stops the plan (see
    /// [`crate::decide::Superseded`]). None without leader election.
    pub writer: Option<Writer>,
    /// Why the API server would refuse the upgrade Jobs' pods in the Job
    /// namespace (PodSecurity admission, in the server's words), from a
    /// server-side dry run; None when it would admit them or was not asked.
    pub job_pods_refused: Option<PodsRefused>,
}

/// The API server would refuse the upgrade Jobs' pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodsRefused {
    /// The Job namespace.
    pub namespace: String,
    /// The server's words.
    pub message: String,
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
    /// `status.nodeInfo.bootID`: it changes when the node reboots.
    pub boot_id: String,
    /// The admin's `drover.dev/keep-cordoned` annotation: drover never
    /// uncordons the node while it is there.
    pub keep_cordoned: Option<String>,
    /// The field manager that last set `spec.unschedulable` (managedFields).
    pub unschedulable_by: Option<String>,
    /// The format version of a record newer than this drover reads
    /// (`progress` is then None): the node is left alone.
    pub newer_record: Option<u32>,
    /// The value (a ClusterUpgrade's name) of the node's
    /// `drover.dev/upgrade-pending` taint, when it has one.
    pub steered_by: Option<String>,
}

impl ObservedNode {
    /// Whether `upgrade`'s uncordon of this node undoes a cordon: drover
    /// (as `upgrade`) cordoned it and no admin pins it cordoned.
    pub fn uncordoned_by(&self, upgrade: &str) -> bool {
        self.cordoned_by.as_deref() == Some(upgrade) && self.kept_by_admin().is_none()
    }

    /// Why drover must leave this node cordoned though it cordoned it: an
    /// admin's `drover.dev/keep-cordoned`, or an admin's own cordon after
    /// drover's (kubectl's managers, `kubectl-cordon`, `kubectl-drain`...,
    /// last set `spec.unschedulable`: an admin uncordoned and cordoned it again).
    pub fn kept_by_admin(&self) -> Option<String> {
        if let Some(why) = &self.keep_cordoned {
            return Some(format!(
                "annotated {}: {why}",
                drover_api::names::annotation::KEEP_CORDONED
            ));
        }
        self.unschedulable_by
            .as_ref()
            .filter(|m| self.unschedulable && m.starts_with("kubectl"))
            .map(|m| format!("cordoned again by {m} after drover's cordon: an admin's cordon is never undone"))
    }
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

/// Another ClusterUpgrade, for overlap detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherUpgrade {
    pub name: String,
    pub created: Timestamp,
    /// The nodes its selector picks.
    pub nodes: BTreeSet<String>,
}
