//! `ClusterUpgrade.status`: what drover reports.
//!
//! Finished nodes are counted, never listed, so the object stays far below
//! the 1 MiB object limit on clusters of any size: only nodes in progress or
//! failed are detailed, and at most [`MAX_NODE_DETAILS`] of them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most nodes `status.nodes` details; the rest are counted in `status.nodesOmitted`.
pub const MAX_NODE_DETAILS: usize = 50;
/// The most past rollouts kept in `status.history`.
pub const MAX_HISTORY: usize = 10;

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterUpgradeStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Reconciling and Stalled (kstatus conventions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The desired versions, `name=version` comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,

    /// `updated/inScope`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,

    /// The rollout stage in progress: Backup, EtcdMembers, ControlPlane,
    /// ClusterComponents, Workers, Addons or Complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,

    /// Node counts.
    #[serde(default)]
    pub counts: NodeCounts,

    /// Per component: the desired version and how many nodes run it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,

    /// Nodes in progress, blocked or failed (at most 50; the rest are counted in nodesOmitted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeDetail>,

    /// How many nodes in progress or failed are not listed in `nodes`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nodes_omitted: i32,

    /// The backup Job, when the spec asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,

    /// When drover started working towards the current target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the rollout of the current target ended: every node in scope
    /// verified it, or it ended with failures spec.strategy.maxFailures
    /// tolerated (Stalled=True, CompletedWithFailures). Read the conditions
    /// for which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Past rollouts, newest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RolloutRecord>,

    /// Every node drover left cordoned on purpose, and why: a halted
    /// rollout under spec.strategy.onHalt KeepCordoned, an admin's
    /// `drover.dev/keep-cordoned` annotation, or an admin's own cordon over
    /// drover's (at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_cordoned: Vec<LeftCordoned>,

    /// The canary of the current target, when spec.strategy.canary is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,

    /// What each node-level component's upgrade Job looked like when its
    /// version was last rolled out, so that a rollback installs a previous
    /// version with the Job that installed it even after a GitOps bump
    /// replaced the spec (newest first, at most 32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub installers: Vec<Installer>,

    /// Nodes returned to their previous versions (at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rolled_back: Vec<RolledBackNode>,
}

/// The most installers `status.installers` keeps.
pub const MAX_INSTALLERS: usize = 32;

/// The canary's progress.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// A short hash of the target: `spec.approvedCanary` must name it (`drover approve` sets it).
    pub hash: String,
    /// The canary workers.
    pub nodes: Vec<String>,
    /// Upgrading, Soaking, AwaitingApproval, Approved, Passed or Failed.
    pub state: String,
    /// When the soak ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_until: Option<Time>,
    /// What the health checks saw on the canaries, one line per check and node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed: Vec<String>,
}

/// The upgrade Job of one component at one version.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Installer {
    pub component: String,
    pub version: String,
    #[schemars(schema_with = "crate::rules::opaque_object_schema")]
    pub job: crate::job::JobUpgrade,
}

/// A node drover returned to what it ran before.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RolledBackNode {
    pub name: String,
    /// `component=version` it was returned to, comma-separated.
    pub versions: String,
    /// Why it was rolled back.
    pub reason: String,
}

/// A node drover did not uncordon, and why.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeftCordoned {
    pub name: String,
    pub reason: String,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeCounts {
    /// Nodes selected by spec.nodeSelector.
    pub in_scope: i32,
    /// Nodes running and verified at every desired version that applies to them.
    pub updated: i32,
    /// Nodes drover is working on now.
    pub updating: i32,
    /// Nodes whose upgrade failed (or was skipped) for this generation.
    pub failed: i32,
    /// Of the failed nodes, those skipped (drain timeout under SkipNode).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: i32,
    /// Nodes still to start.
    pub pending: i32,
    /// Nodes out of service: cordoned (by anyone) or NotReady.
    pub unavailable: i32,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    pub name: String,
    pub stage: String,
    pub desired: String,
    /// Nodes (or, for a workload component, its workloads) at the desired version.
    pub updated: i32,
    /// Nodes (or 1) the component applies to.
    pub total: i32,
    /// For a workload component with several workloads: `updated` and
    /// `total` count workloads, and this names the first one lagging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeDetail {
    pub name: String,
    /// InProgress, Blocked, Failed, Skipped or Retrying.
    pub state: crate::vocab::NodeState,
    /// Cordon, Drain, Upgrade, Reboot, Verify, Uncordon, or the step that failed.
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default)]
    pub message: String,
    /// When the node entered this step.
    pub since: Time,
    /// Attempts at this step (each time it reported why it is not finished).
    pub attempts: i32,
    /// Failed tries of this step so far that were retried (spec.strategy.retries).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i32,
    /// When the next try of a failed step starts (state Retrying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<Time>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    pub job: String,
    /// Pending, Running, Succeeded or Failed.
    pub state: String,
    #[serde(default)]
    pub message: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    pub target: String,
    pub generation: i64,
    pub start_time: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Completed, CompletedWithFailures, or Superseded when the spec changed before it completed.
    pub result: String,
}
