//! The rollout's stages and which one is current.

use drover_api::known::stage_of;
use drover_api::version::same_version;
use drover_api::{BackupState, ClusterUpgradeSpec, Component, Stage};

use crate::observe::Observation;
use crate::view::{Group, NodeView, Standing};

/// The rollout's stages, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RolloutStage {
    Backup,
    EtcdMembers,
    ControlPlane,
    ClusterComponents,
    Workers,
    Addons,
    Complete,
}

impl RolloutStage {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStage::Backup => "Backup",
            RolloutStage::EtcdMembers => "EtcdMembers",
            RolloutStage::ControlPlane => "ControlPlane",
            RolloutStage::ClusterComponents => "ClusterComponents",
            RolloutStage::Workers => "Workers",
            RolloutStage::Addons => "Addons",
            RolloutStage::Complete => "Complete",
        }
    }

    /// The stage in which a group's nodes are upgraded.
    pub fn of(group: Group) -> RolloutStage {
        match group {
            Group::Etcd => RolloutStage::EtcdMembers,
            Group::ControlPlane => RolloutStage::ControlPlane,
            Group::Worker => RolloutStage::Workers,
        }
    }
}

pub(crate) fn workload_done(obs: &Observation, c: &Component) -> bool {
    obs.workloads
        .get(&c.name)
        .is_some_and(|w| w.rolled_out && w.version.as_deref().is_some_and(|v| same_version(v, &c.version)))
}

/// The first stage with work left.
pub(crate) fn current(
    spec: &ClusterUpgradeSpec,
    obs: &Observation,
    views: &[NodeView],
    backup: &BackupState,
) -> RolloutStage {
    let open = |group: Group| {
        views.iter().any(|v| {
            v.in_scope
                && v.group == group
                && match v.state {
                    Standing::Pending | Standing::InFlight | Standing::Foreign => true,
                    // A failed etcd or control-plane node holds its stage; failed workers do not.
                    Standing::Failed => group != Group::Worker,
                    Standing::Updated => false,
                }
        })
    };
    let workloads_open = |addons: bool| {
        spec.components.iter().any(|c| {
            c.upgrade.workload.is_some() && (stage_of(c) == Some(Stage::Addons)) == addons && !workload_done(obs, c)
        })
    };
    let control_plane_pending = views
        .iter()
        .any(|v| v.in_scope && v.group != Group::Worker && matches!(v.state, Standing::Pending));
    if spec.backup.is_some() && control_plane_pending && *backup != BackupState::Succeeded {
        RolloutStage::Backup
    } else if open(Group::Etcd) {
        RolloutStage::EtcdMembers
    } else if open(Group::ControlPlane) {
        RolloutStage::ControlPlane
    } else if workloads_open(false) {
        RolloutStage::ClusterComponents
    } else if open(Group::Worker) {
        RolloutStage::Workers
    } else if workloads_open(true) {
        RolloutStage::Addons
    } else {
        RolloutStage::Complete
    }
}
