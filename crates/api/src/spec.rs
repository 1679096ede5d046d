//! `ClusterUpgrade.spec`: what the platform team declares.
//!
//! Every constraint that can be checked without a cluster is in the schema
//! (OpenAPI constraints and CEL rules) so the API server refuses a bad spec
//! before drover sees it; `crate::validate` repeats the same checks in Rust
//! for clusters where the CRD was installed without validation.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::ClusterUpgradeStatus;

pub use crate::job::JobUpgrade;
pub use crate::rules::*;

/// A cluster-scoped request to bring every node in scope to the declared
/// component versions by rolling, drained, verified node upgrades.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "drover.dev",
    version = "v1alpha1",
    kind = "ClusterUpgrade",
    plural = "clusterupgrades",
    shortname = "cu",
    status = "ClusterUpgradeStatus",
    category = "drover",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".status.target","description":"Desired component versions"}"#,
    printcolumn = r#"{"name":"Updated","type":"string","jsonPath":".status.progress","description":"Nodes at the desired versions / nodes in scope"}"#,
    printcolumn = r#"{"name":"Stage","type":"string","jsonPath":".status.stage","description":"The rollout stage in progress"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("!has(self.spec.hooks) || !has(self.spec.hooks.preDrain) || !has(self.spec.strategy) || !has(self.spec.strategy.type) || self.spec.strategy.type != 'AllAtOnce'").message("spec.hooks.preDrain needs strategy.type Rolling: AllAtOnce neither cordons nor drains"),
    validation = Rule::new("self.metadata.name.size() <= 63").message("metadata.name must be at most 63 characters: drover puts it in the drover.dev/upgrade label of the Jobs it creates")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterUpgradeSpec {
    /// The platform components to bring to their versions. Names must be unique.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(c, self.exists_one(d, d.name == c.name))").message("spec.components[].name must be unique: each component may appear once"))]
    pub components: Vec<Component>,

    /// Which nodes are in scope (all nodes when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector_schema")]
    pub node_selector: Option<LabelSelector>,

    /// How nodes are taken out of service and how many at once.
    #[serde(default)]
    pub strategy: Strategy,

    /// How each node is drained before its node-level components are upgraded.
    #[serde(default)]
    pub drain: Drain,

    /// When new nodes may start. Empty means at any time. A node already in
    /// progress when a window closes finishes; no new node starts outside one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub windows: Vec<MaintenanceWindow>,

    /// Stop starting new nodes. Nodes in progress finish.
    #[serde(default)]
    pub paused: bool,

    /// Which version changes are accepted.
    #[serde(default)]
    pub version_policy: VersionPolicy,

    /// A Job that must succeed before the first etcd or control-plane change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupJob>,

    /// How drover waits for a node to reboot, and how it reboots a node
    /// whose upgrade Job asked for one.
    #[serde(default)]
    pub reboot: Reboot,

    /// Checks run before each node starts and after each node's uncordon:
    /// a node counts as upgraded only once they pass, and no node starts
    /// while they fail. At most 16, names unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(c, self.exists_one(d, d.name == c.name))").message("spec.healthChecks[].name must be unique"))]
    pub health_checks: Vec<crate::gates::HealthCheck>,

    /// Jobs run on each node before its drain and after its uncordon.
    #[serde(default, skip_serializing_if = "is_default_hooks")]
    pub hooks: crate::gates::Hooks,

    /// The canary hash (`status.canary.hash`) a human or a pipeline
    /// approved: with spec.strategy.canary.requireApproval, the workers
    /// after the canary start only once this names the current target's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub approved_canary: Option<String>,
}

fn is_default_hooks(h: &crate::gates::Hooks) -> bool {
    h.pre_drain.is_none() && h.post_uncordon.is_none()
}

/// Reboots: the wait for a node to come back, and the Job that reboots a
/// node when an upgrade Job asks for it (`reboot-required`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Reboot {
    /// How long a node may take to report a new bootID and Ready after its
    /// upgrade Job (or its reboot Job), at most 24h. Past it the step fails
    /// with RebootFailed and is retried as a failed Job is
    /// (spec.strategy.retries).
    #[serde(default = "default_reboot_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(duration_rule(true)).message("spec.reboot.timeout must be a duration above 0s and at most 24h, such as 5m or 15m"))]
    pub timeout: String,
    /// The image of the reboot Job, run privileged with the host's PID
    /// namespace and root at `/host` on the node. Required for a Job's
    /// reboot request to be honoured; a request without it fails the node
    /// with RebootFailed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(matches_rule(IMAGE_PATTERN)).message("spec.reboot.image must be an image reference such as registry.example.com/reboot:1.0 (lowercase path, optional :tag and @sha256:digest, no spaces)"))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

impl Default for Reboot {
    fn default() -> Self {
        Reboot {
            timeout: default_reboot_timeout(),
            image: None,
            command: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// One platform component and the version it must run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(known_name_rule()).field_path(".stage").message("spec.components[].stage is required for a name drover does not know; allowed stages: Runtime, Etcd, ControlPlane, Kubelet, Network, Addons"))]
#[x_kube(validation = Rule::new(version_rule()).field_path(".version").message("spec.components[].version must be a semantic version such as 1.7.22 or v1.31.2 (optionally -prerelease and +build), or a two-part series such as 20.10; components verified by nodeInfo.osImage or nodeInfo.kernelVersion (and os, kernel) take letters, digits, spaces and ._+~:()/-"))]
#[x_kube(validation = Rule::new("!has(self.verify) || has(self.upgrade.job)").field_path(".verify").message("spec.components[].verify is for job components only: a workload's rollout status is its verification"))]
#[x_kube(validation = Rule::new("!has(self.nodes) || has(self.upgrade.job)").field_path(".nodes").message("spec.components[].nodes is for job components only: a workload runs where its controller puts it"))]
pub struct Component {
    /// A DNS label (lowercase letters, digits, '-'), unique in the spec.
    #[schemars(length(min = 1, max = 40))]
    #[x_kube(validation = Rule::new(matches_rule(NAME_PATTERN)).message("spec.components[].name must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"))]
    pub name: String,

    /// The desired version, a semantic version with an optional leading `v`
    /// (`1.7.22`, `v1.31.2`), or a two-part series (`20.10`) that any live
    /// `20.10.x` satisfies. For workload components it is also the image
    /// tag. Components verified by `nodeInfo.osImage` or
    /// `nodeInfo.kernelVersion` (and the well-known `os` and `kernel`) take
    /// the OS's own text (`24.04.1`, `6.8.0-45-generic`); see `verify.match`.
    #[schemars(length(min = 1, max = 64))]
    pub version: String,

    /// Where the component sits in the upgrade order. Inferred from well-known
    /// names (containerd, etcd, kubelet, calico, kube-apiserver, coredns…)
    /// when omitted; required for other names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,

    /// Which nodes run this component. Defaults by stage: etcd members for
    /// Etcd, control-plane nodes for ControlPlane, every node in scope otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeTarget>,

    /// How the component is upgraded.
    pub upgrade: UpgradeMethod,

    /// How the live version is verified. Defaults by name (kubelet →
    /// nodeInfo.kubeletVersion, containerd → containerRuntimeVersion,
    /// kube-apiserver → its static pod's image tag…), else the Job's success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
}

/// The fixed order of platform components. Within a node components are
/// upgraded in this order; cluster-level components of every stage but
/// Addons run after the control plane and before workers, Addons last.
///
/// ControlPlane precedes Kubelet so that no node's kubelet is upgraded
/// before that node's API server (the kubelet must never be newer).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Runtime,
    Etcd,
    ControlPlane,
    Kubelet,
    Network,
    Addons,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Runtime,
        Stage::Etcd,
        Stage::ControlPlane,
        Stage::Kubelet,
        Stage::Network,
        Stage::Addons,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Runtime => "Runtime",
            Stage::Etcd => "Etcd",
            Stage::ControlPlane => "ControlPlane",
            Stage::Kubelet => "Kubelet",
            Stage::Network => "Network",
            Stage::Addons => "Addons",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The set of nodes a node-level component applies to.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeTarget {
    /// Nodes carrying `node-role.kubernetes.io/etcd`.
    EtcdMembers,
    /// Nodes carrying `node-role.kubernetes.io/control-plane` (or the legacy `master`).
    ControlPlane,
    /// Nodes in scope that are neither etcd members nor control-plane nodes.
    Workers,
    /// Every node in scope.
    All,
}

/// Exactly one of `job` (node-level) or `workload` (cluster-level).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.job) != has(self.workload)").message("spec.components[].upgrade must set exactly one of job (node-level, run on each node) or workload (cluster-level Deployment/DaemonSet/StatefulSet)"))]
pub struct UpgradeMethod {
    /// Run a Job on each target node. The Job carries DROVER_COMPONENT,
    /// DROVER_VERSION and DROVER_NODE in its environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobUpgrade>,
    /// Set the image tag of cluster-level workloads' containers to the
    /// version and wait for their rollouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadUpgrade>,
}

/// A cluster-level component upgraded by changing workloads' image tags:
/// one workload (`kind`, `namespace`, `name`), or several (`targets`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.kind) == has(self.name) && has(self.name) == has(self.__namespace__)").message("spec.components[].upgrade.workload: kind, namespace and name go together (one workload); for several workloads list them in targets"))]
#[x_kube(validation = Rule::new("has(self.name) != (has(self.targets) && size(self.targets) > 0)").field_path(".targets").message("spec.components[].upgrade.workload must name one workload (kind, namespace, name) or list several in targets, not both and not neither"))]
#[x_kube(validation = Rule::new("!has(self.container) || !has(self.imageRepositories)").field_path(".imageRepositories").message("spec.components[].upgrade.workload: container and imageRepositories exclude each other (container picks one container by name; imageRepositories every container and init container whose image matches)"))]
pub struct WorkloadUpgrade {
    /// The workload's kind (with `namespace` and `name`; or use `targets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<WorkloadKind>,
    /// The workload's namespace, a DNS label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new(matches_rule(NAME_PATTERN)).message("spec.components[].upgrade.workload.namespace must be a DNS label: lowercase letters, digits and '-'"))]
    pub namespace: Option<String>,
    /// The workload's name, a DNS subdomain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(matches_rule(SUBDOMAIN_PATTERN)).message("spec.components[].upgrade.workload.name must be a DNS subdomain: lowercase letters, digits, '-' and '.'"))]
    pub name: Option<String>,
    /// The container whose image tag is set. The first container when
    /// omitted (and `imageRepositories` is not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new(matches_rule(NAME_PATTERN)).message("spec.components[].upgrade.workload.container must be a DNS label: lowercase letters, digits and '-'"))]
    pub container: Option<String>,
    /// How long the rollout may take before the upgrade counts as failed, at most 24h.
    #[serde(default = "default_rollout_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(duration_rule(true)).message("spec.components[].upgrade.workload.timeout must be a duration above 0s and at most 24h, such as 90s, 10m or 1h30m"))]
    pub timeout: String,
    /// Several workloads upgraded together (calico-node and
    /// calico-kube-controllers), in this order. Instead of kind, namespace, name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u.kind == t.kind && u.__namespace__ == t.__namespace__ && u.name == t.name))").message("spec.components[].upgrade.workload.targets must not name a workload twice"))]
    pub targets: Vec<WorkloadTarget>,
    /// Image repositories (an image without its tag and digest): every
    /// container and init container of the workloads whose repository equals
    /// one of these, or ends with it after a '/', gets the version as its tag
    /// (`calico/node` matches `docker.io/calico/node:v3.28.1` and
    /// `registry.local:5000/mirror/calico/node:v3.28.1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "repositories_schema")]
    pub image_repositories: Vec<String>,
    /// A manifest applied with server-side apply (field manager
    /// `drover-manifest`) before the image tags are set, once per version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<WorkloadManifest>,
}

/// One workload of a workload component. (CEL reads `namespace`, a
/// reserved word, as `__namespace__`.)
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadTarget {
    /// Deployment, DaemonSet or StatefulSet.
    // Bounded so that the API server can bound the cost of the rule comparing targets.
    #[schemars(length(max = 11))]
    pub kind: WorkloadKind,
    /// The workload's namespace, a DNS label.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new(matches_rule(NAME_PATTERN)).message("spec.components[].upgrade.workload.targets[].namespace must be a DNS label: lowercase letters, digits and '-'"))]
    pub namespace: String,
    /// The workload's name, a DNS subdomain.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(matches_rule(SUBDOMAIN_PATTERN)).message("spec.components[].upgrade.workload.targets[].name must be a DNS subdomain: lowercase letters, digits, '-' and '.'"))]
    pub name: String,
}

impl std::fmt::Display for WorkloadTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

impl WorkloadUpgrade {
    /// The workloads, in order: `targets`, or the one named by kind, namespace, name.
    pub fn workloads(&self) -> Vec<WorkloadTarget> {
        if !self.targets.is_empty() {
            return self.targets.clone();
        }
        match (self.kind, &self.namespace, &self.name) {
            (Some(kind), Some(namespace), Some(name)) => vec![WorkloadTarget {
                kind,
                namespace: namespace.clone(),
                name: name.clone(),
            }],
            _ => Vec::new(),
        }
    }
}

/// Where a workload component's manifest is kept.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadManifest {
    /// A ConfigMap in drover's own namespace (`drover run --namespace`,
    /// drover-system as deployed): its RBAC reads ConfigMaps there only.
    pub config_map: ManifestConfigMap,
}

/// A key of a ConfigMap in drover's namespace holding YAML documents.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestConfigMap {
    /// The ConfigMap's name, a DNS subdomain.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(matches_rule(SUBDOMAIN_PATTERN)).message("spec.components[].upgrade.workload.manifest.configMap.name must be a DNS subdomain: lowercase letters, digits, '-' and '.'"))]
    pub name: String,
    /// The key whose value is the manifest (one or more YAML documents).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(matches_rule(CONFIG_MAP_KEY_PATTERN)).message("spec.components[].upgrade.workload.manifest.configMap.key must be a ConfigMap key: letters, digits, '-', '_' and '.'"))]
    pub key: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    DaemonSet,
    StatefulSet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::StatefulSet => "StatefulSet",
        }
    }
}

/// Exactly one way to read the live version.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.nodeInfo), has(self.pod), has(self.jobSucceeded)].filter(x, x).size() == 1").message("spec.components[].verify: set exactly one of nodeInfo, pod or jobSucceeded"))]
pub struct Verify {
    /// A field of `node.status.nodeInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_info: Option<NodeInfoField>,
    /// The image tag of a pod on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodImageCheck>,
    /// The upgrade Job's success is the proof (set to true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_succeeded: Option<bool>,
    /// How the text read compares with the desired version, for
    /// `nodeInfo.osImage` and `nodeInfo.kernelVersion`, which are not
    /// semantic versions. When omitted those two match when the live text
    /// starts with the version at a word boundary (`6.8.0-45` matches
    /// `6.8.0-45-generic`, not `6.8.0-450`); other checks compare semantic versions.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<VersionMatch>,
}

/// Exactly one of `prefix` or `regex`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.prefix) != has(self.regex)").message("spec.components[].verify.match: set exactly one of prefix or regex"))]
pub struct VersionMatch {
    /// The live text starts with this, at a word boundary ("Ubuntu 24.04"
    /// matches "Ubuntu 24.04.1 LTS", not "Ubuntu 24.041").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub prefix: Option<String>,
    /// A regular expression (RE2 syntax, as Go's regexp) the live text must
    /// match somewhere; anchor it with ^ and $ to match the whole text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub regex: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum NodeInfoField {
    KubeletVersion,
    KubeProxyVersion,
    ContainerRuntimeVersion,
    OsImage,
    KernelVersion,
}

impl NodeInfoField {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeInfoField::KubeletVersion => "kubeletVersion",
            NodeInfoField::KubeProxyVersion => "kubeProxyVersion",
            NodeInfoField::ContainerRuntimeVersion => "containerRuntimeVersion",
            NodeInfoField::OsImage => "osImage",
            NodeInfoField::KernelVersion => "kernelVersion",
        }
    }
}

/// A pod on the node, selected by namespace and labels, whose container
/// image tag is the component's version (static control-plane pods, etcd).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodImageCheck {
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new(matches_rule(NAME_PATTERN)).message("spec.components[].verify.pod.namespace must be a DNS label: lowercase letters, digits and '-'"))]
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// The container to read. The first container when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// How many nodes are out of service at once.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.canary) || !has(self.type) || self.type != 'AllAtOnce'").field_path(".canary").message("spec.strategy.canary is for Rolling only: AllAtOnce starts every worker at once"))]
pub struct Strategy {
    /// Rolling (cordon, drain, upgrade, verify, uncordon) or AllAtOnce (an
    /// explicit opt-in that skips cordon and drain and starts every worker at
    /// once; etcd and control-plane nodes still go one at a time).
    #[serde(default, rename = "type")]
    pub type_: StrategyType,
    /// Workers out of service at once, an integer or a percentage of the
    /// workers in scope (rounded down, at least 1). Nodes that are NotReady
    /// or cordoned by someone else count against it. Etcd and control-plane
    /// nodes always go one at a time.
    #[serde(default = "default_max_unavailable")]
    #[x_kube(validation = Rule::new("string(self).matches('^([1-9][0-9]*|([1-9][0-9]?|100)%)$')").message("spec.strategy.maxUnavailable must be an integer of at least 1 or a percentage from 1% to 100%"))]
    pub max_unavailable: IntOrString,
    /// Failed nodes tolerated before the rollout halts.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub max_failures: i32,
    /// How long to wait after each node (etcd, control plane) or batch
    /// (workers) is verified before starting the next. At most 24h.
    #[serde(default = "default_soak")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(duration_rule(false)).message("spec.strategy.soak must be a duration from 0s to 24h, such as 0s, 90s or 10m"))]
    pub soak: String,
    /// Workers matching this selector go after all other workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector_schema")]
    pub last_node_selector: Option<LabelSelector>,
    /// How often a failed node step (an upgrade Job that failed, a version
    /// that did not verify, a node that did not come back from its reboot)
    /// is tried again before the node counts as failed, from 0 to 10. The
    /// node keeps its place in the budget while it waits.
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: i32,
    /// The wait before the first retry; each further retry waits twice as
    /// long as the one before. At most 1h.
    #[serde(default = "default_retry_delay")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{} && duration(self) <= duration('1h')", matches_rule(DURATION_PATTERN))).message("spec.strategy.retryDelay must be a duration from 0s to 1h, such as 10s or 1m"))]
    pub retry_delay: String,
    /// What a halted rollout does with the nodes it holds. Uncordon (the
    /// default) hands back every node whose upgrade never started (cordoned
    /// or draining) and the failed node; KeepCordoned leaves them cordoned
    /// for inspection. Either way `status.leftCordoned` lists every node
    /// drover left cordoned, and why.
    #[serde(default)]
    pub on_halt: HaltAction,
    /// The first workers go alone, then a soak, then optionally an approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<crate::gates::Canary>,
    /// What a node that failed after its retries (a Job, a verification, a
    /// reboot or a health check) comes to: Halt (it keeps what it has) or
    /// Rollback (it is returned to the versions it ran before).
    #[serde(default)]
    pub on_failure: crate::gates::FailureAction,
    /// With onFailure Rollback: Failed (only the failed nodes) or All (also
    /// every node this target already upgraded, in reverse stage order).
    #[serde(default)]
    pub rollback: crate::gates::RollbackScope,
    /// A node label (`topology.kubernetes.io/zone`): at most one of its
    /// values has workers in progress at a time, maxUnavailable applying
    /// within it. Workers without the label form a zone of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 317))]
    #[x_kube(validation = Rule::new(matches_rule(LABEL_KEY_PATTERN)).message("spec.strategy.topologyKey must be a label key such as topology.kubernetes.io/zone"))]
    pub topology_key: Option<String>,
    /// How workers start. Window (the default): a worker starts as soon as
    /// maxUnavailable has room, so a slow node holds one slot, not the whole
    /// batch. Batch: workers go in whole batches of maxUnavailable, the next
    /// starting once every node of the last is done (checks and soak included).
    #[serde(default)]
    pub batching: Batching,
}

/// spec.strategy.batching: a sliding window of maxUnavailable workers, or whole batches.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Batching {
    #[default]
    Window,
    Batch,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HaltAction {
    #[default]
    Uncordon,
    KeepCordoned,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            type_: StrategyType::Rolling,
            max_unavailable: default_max_unavailable(),
            max_failures: 0,
            soak: default_soak(),
            last_node_selector: None,
            retries: default_retries(),
            retry_delay: default_retry_delay(),
            on_halt: HaltAction::Uncordon,
            canary: None,
            on_failure: Default::default(),
            rollback: Default::default(),
            topology_key: None,
            batching: Batching::Window,
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StrategyType {
    #[default]
    Rolling,
    AllAtOnce,
}

/// Drain settings, with `kubectl drain` semantics.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Drain {
    /// Drain before node-level upgrades. Cordoning happens either way in Rolling mode.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a drain may take before `onTimeout` applies, at most 24h.
    #[serde(default = "default_drain_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(duration_rule(true)).message("spec.drain.timeout must be a duration above 0s and at most 24h, such as 90s, 15m or 1h"))]
    pub timeout: String,
    /// Grace period given to evicted pods, at most a day; each pod's own when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub grace_period_seconds: Option<i64>,
    /// Evict pods using emptyDir volumes (their data is lost).
    #[serde(default)]
    pub delete_empty_dir_data: bool,
    /// Evict pods that no controller will recreate.
    #[serde(default)]
    pub force: bool,
    /// Only pods matching this selector are evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector_schema")]
    pub pod_selector: Option<LabelSelector>,
    /// What to do when the timeout passes.
    #[serde(default)]
    pub on_timeout: DrainTimeoutAction,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            enabled: true,
            timeout: default_drain_timeout(),
            grace_period_seconds: None,
            delete_empty_dir_data: false,
            force: false,
            pod_selector: None,
            on_timeout: DrainTimeoutAction::Halt,
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DrainTimeoutAction {
    /// Stop the rollout and report DrainBlocked; the node stays cordoned.
    #[default]
    Halt,
    /// Uncordon the node, leave it at its old versions, count it failed, move on.
    SkipNode,
    /// Delete the remaining pods without eviction (PDBs bypassed) and continue.
    ForceDelete,
}

/// A recurring window in which new nodes may start.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start != self.end").field_path(".end").message("spec.windows[].end must differ from start: a window of zero length never opens"))]
pub struct MaintenanceWindow {
    /// Days the window opens on (in its time zone). Every day when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub days: Vec<Weekday>,
    /// Opening time, `HH:MM`.
    #[schemars(length(max = 5))]
    #[x_kube(validation = Rule::new(matches_rule(CLOCK_PATTERN)).message("spec.windows[].start must be a 24-hour time HH:MM, from 00:00 to 23:59"))]
    pub start: String,
    /// Closing time, `HH:MM`. Earlier than start means the window crosses midnight.
    #[schemars(length(max = 5))]
    #[x_kube(validation = Rule::new(matches_rule(CLOCK_PATTERN)).message("spec.windows[].end must be a 24-hour time HH:MM, from 00:00 to 23:59"))]
    pub end: String,
    /// An IANA time zone such as Europe/Berlin. The schema checks its shape;
    /// drover checks the zone is known and stalls with InvalidSpec if not.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(matches_rule(TIME_ZONE_PATTERN)).message("spec.windows[].timeZone must be an IANA time zone name such as UTC, Europe/Berlin or America/New_York"))]
    pub time_zone: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// Which version changes are accepted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VersionPolicy {
    /// Enforce the Kubernetes version-skew rules (default) or Ignore them.
    #[serde(default)]
    pub skew: SkewPolicy,
    /// Accept a version lower than the one a node runs.
    #[serde(default)]
    pub allow_downgrade: bool,
    /// Accept pre-release versions (`-rc.1`, `-beta.0`).
    #[serde(default)]
    pub allow_prerelease: bool,
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy {
            skew: SkewPolicy::Enforce,
            allow_downgrade: false,
            allow_prerelease: false,
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SkewPolicy {
    #[default]
    Enforce,
    Ignore,
}

/// A Job run once per target and backup spec, before the first etcd or
/// control-plane change.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupJob {
    /// The backup image, `[registry[:port]/]path[:tag][@sha256:digest]`.
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(matches_rule(IMAGE_PATTERN)).message("spec.backup.image must be an image reference such as registry.example.com/etcd-backup:1.0 (lowercase path, optional :tag and @sha256:digest, no spaces)"))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(e, self.exists_one(f, f.name == e.name))").message("spec.backup.env[].name must be unique"))]
    pub env: Vec<EnvVar>,
    /// Namespace the Job runs in, a DNS label.
    #[serde(default = "default_namespace")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new(matches_rule(NAME_PATTERN)).message("spec.backup.namespace must be a DNS label: lowercase letters, digits and '-'"))]
    pub namespace: String,
    /// Run on a node matching these labels (an etcd member, typically).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Mount the node's root filesystem at `/host` (to read etcd's data dir).
    #[serde(default)]
    pub host_root: bool,
    #[serde(default = "crate::job::default_job_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(duration_rule(true)).message("spec.backup.timeout must be a duration above 0s and at most 24h, such as 90s, 10m or 1h30m"))]
    pub timeout: String,
}

fn default_true() -> bool {
    true
}
fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(1)
}
fn default_retries() -> i32 {
    2
}
fn default_retry_delay() -> String {
    "30s".into()
}
fn default_reboot_timeout() -> String {
    "10m".into()
}
fn default_soak() -> String {
    "0s".into()
}
fn default_drain_timeout() -> String {
    "15m".into()
}
fn default_rollout_timeout() -> String {
    "15m".into()
}
fn default_time_zone() -> String {
    "UTC".into()
}
fn default_namespace() -> String {
    "kube-system".into()
}

/// A CEL rule: the version is a semantic version, or OS text for a
/// component verified by osImage or kernelVersion (explicitly, or by the
/// names os and kernel).
fn version_rule() -> String {
    format!(
        "self.version.matches('{}') || (((has(self.verify) && has(self.verify.nodeInfo)) ? self.verify.nodeInfo in ['osImage', 'kernelVersion'] : self.name in ['os', 'kernel']) && self.version.matches('{}'))",
        escape_cel(VERSION_PATTERN),
        escape_cel(OS_VERSION_PATTERN)
    )
}

/// A CEL rule: the component has a stage, or a name drover infers one from.
fn known_name_rule() -> String {
    let names: Vec<String> = KNOWN.iter().map(|(n, _)| format!("'{n}'")).collect();
    format!("has(self.stage) || self.name in [{}]", names.join(", "))
}

/// `imageRepositories`: at most 16, each checked by its own rule (bounded
/// in length, so the API server can bound the rule's cost).
fn repositories_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let schema = serde_json::json!({
        "description": "Image repositories (an image without its tag and digest): every container and init container of the workloads whose repository equals one of these, or ends with it after a '/', gets the version as its tag (calico/node matches docker.io/calico/node:v3.28.1 and registry.local:5000/mirror/calico/node:v3.28.1).",
        "type": "array",
        "maxItems": 16,
        "items": {
            "type": "string",
            "maxLength": 255,
            "x-kubernetes-validations": [{
                "rule": matches_rule(REPOSITORY_PATTERN),
                "message": "spec.components[].upgrade.workload.imageRepositories[] must be an image repository without tag or digest, such as calico/node or quay.io/cilium/cilium (lowercase path)"
            }]
        }
    });
    schemars::Schema::try_from(schema).expect("a JSON object is a schema")
}

/// The well-known component names and the stage each belongs to (the
/// schema's rule for `stage` names them; `crate::known` infers the rest).
pub const KNOWN: [(&str, Stage); 24] = [
    // The node's OS and kernel go with the runtime stage: list them first.
    ("os", Stage::Runtime),
    ("kernel", Stage::Runtime),
    ("containerd", Stage::Runtime),
    ("docker", Stage::Runtime),
    ("cri-o", Stage::Runtime),
    ("crio", Stage::Runtime),
    ("cri-dockerd", Stage::Runtime),
    ("etcd", Stage::Etcd),
    ("kube-apiserver", Stage::ControlPlane),
    ("kube-controller-manager", Stage::ControlPlane),
    ("kube-scheduler", Stage::ControlPlane),
    ("kubelet", Stage::Kubelet),
    ("kube-proxy", Stage::Kubelet),
    ("calico", Stage::Network),
    ("cilium", Stage::Network),
    ("flannel", Stage::Network),
    ("weave", Stage::Network),
    ("kube-router", Stage::Network),
    ("canal", Stage::Network),
    ("antrea", Stage::Network),
    ("coredns", Stage::Addons),
    ("kube-dns", Stage::Addons),
    ("nodelocaldns", Stage::Addons),
    ("metrics-server", Stage::Addons),
];
