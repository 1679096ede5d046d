//! The upgrade Job a node-level component runs on each node
//! (`spec.components[].upgrade.job`), also kept in `status.installers`.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::rules::{EnvVar, IMAGE_PATTERN, duration_rule, matches_rule};

/// An upgrade Job pinned to one node.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobUpgrade {
    /// The upgrade image, `[registry[:port]/]path[:tag][@sha256:digest]`.
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(matches_rule(IMAGE_PATTERN)).message("spec.components[].upgrade.job.image must be an image reference such as registry.example.com/upgrade:1.2 (lowercase path, optional :tag and @sha256:digest, no spaces)"))]
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables. Names are unique and may not be one
    /// drover sets (DROVER_COMPONENT, DROVER_VERSION, DROVER_NODE).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(e, self.exists_one(f, f.name == e.name))").message("spec.components[].upgrade.job.env[].name must be unique"))]
    pub env: Vec<EnvVar>,
    /// Run privileged. Required by most runtime and kubelet upgrades.
    #[serde(default)]
    pub privileged: bool,
    /// Mount the node's root filesystem at `/host`.
    #[serde(default)]
    pub host_root: bool,
    /// How long one attempt may run (the Job's activeDeadlineSeconds), at most 24h.
    #[serde(default = "default_job_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(duration_rule(true)).message("spec.components[].upgrade.job.timeout must be a duration above 0s and at most 24h, such as 90s, 10m or 1h30m"))]
    pub timeout: String,
    /// Whether the upgrade reboots the node (during the Job or after it
    /// exits): drover then waits, after the Job, for the node to report a
    /// new `bootID` and Ready before verifying, for at most
    /// `spec.reboot.timeout`. A Job that does not set this can still ask
    /// for a reboot by writing `reboot-required` to its termination message
    /// (`/dev/termination-log`); drover then reboots the node through
    /// `spec.reboot` and waits the same way.
    #[serde(default)]
    pub reboots: bool,
    /// Pod failures the Job retries before it counts as failed (the Job's
    /// `backoffLimit`), from 0 to 10. drover's own retries
    /// (`spec.strategy.retries`) come on top, with a fresh Job each.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: i32,
}

fn default_backoff_limit() -> i32 {
    2
}

pub(crate) fn default_job_timeout() -> String {
    "30m".into()
}
