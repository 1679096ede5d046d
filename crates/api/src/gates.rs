//! What guards a rollout beyond "Ready and at the version": health checks
//! run before each node starts and after each node's uncordon, the canary
//! and its approval, automatic rollback, zones, and the Jobs run around
//! each node (`spec.healthChecks`, `spec.strategy.canary`,
//! `spec.strategy.onFailure`, `spec.strategy.topologyKey`, `spec.hooks`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules::{EnvVar, IMAGE_PATTERN, NAME_PATTERN, duration_rule, label_selector_schema, matches_rule};

/// The placeholders a health check's URL may use.
pub const URL_PLACEHOLDERS: [&str; 3] = ["{{node}}", "{{nodeIP}}", "{{component}}"];

/// One health check. Exactly one of `http`, `prometheus`, `pods` and
/// `controlPlane`. drover runs every check before each node starts (it
/// waits, touching nothing, until they pass) and after each node's
/// uncordon (the node counts as upgraded only once they pass).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.http), has(self.prometheus), has(self.pods), has(self.controlPlane)].filter(x, x).size() == 1").message("spec.healthChecks[] must set exactly one of http, prometheus, pods or controlPlane"))]
pub struct HealthCheck {
    /// A DNS label, unique among the checks: status and reasons name it.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new(matches_rule(NAME_PATTERN)).message("spec.healthChecks[].name must be a DNS label: lowercase letters, digits and '-'"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodsCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlaneCheck>,
    /// How long the check may go without passing. After a node's uncordon,
    /// past it the node fails with HealthCheckFailed (then retries, then
    /// spec.strategy.onFailure). Before a node starts, past it the rollout
    /// shows Stalled=True and keeps waiting: nothing has been touched.
    #[serde(default = "default_check_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(duration_rule(true)).message("spec.healthChecks[].timeout must be a duration above 0s and at most 24h, such as 5m"))]
    pub timeout: String,
    /// Passes in a row needed, from 1 to 100, each `interval` apart.
    #[serde(default = "default_success_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: i32,
    /// The wait between tries, from 1s to 10m.
    #[serde(default = "default_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{} && duration(self) >= duration('1s') && duration(self) <= duration('10m')", matches_rule(crate::rules::DURATION_PATTERN))).message("spec.healthChecks[].interval must be a duration from 1s to 10m, such as 10s"))]
    pub interval: String,
}

/// An HTTP GET that must answer one of `expectedStatus`, and contain
/// `bodyContains` when set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    /// An http:// or https:// URL. `{{node}}`, `{{nodeIP}}` (the node's
    /// InternalIP) and `{{component}}` (the last component upgraded, empty
    /// before the node starts) are filled in.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("spec.healthChecks[].http.url must start with http:// or https://"))]
    pub url: String,
    /// The status codes that pass (default 200).
    #[serde(default = "default_expected_status")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(c, c >= 100 && c <= 599)").message("spec.healthChecks[].http.expectedStatus[] must be HTTP status codes from 100 to 599"))]
    pub expected_status: Vec<i32>,
    /// A substring the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub body_contains: Option<String>,
    /// How long one request may take, from 1s to 5m.
    #[serde(default = "default_request_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{} && duration(self) >= duration('1s') && duration(self) <= duration('5m')", matches_rule(crate::rules::DURATION_PATTERN))).message("spec.healthChecks[].http.requestTimeout must be a duration from 1s to 5m, such as 5s"))]
    pub request_timeout: String,
    /// PEM certificates to trust for an https URL, instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,
    /// A Secret in drover's own namespace: its `ca.crt` is trusted (as
    /// caBundle) and its `token`, when present, is sent as a bearer token.
    /// drover may read Secrets only there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

/// A PromQL instant query against a Prometheus-compatible API. Without
/// `threshold` it passes when the query returns no series (kured's alert
/// check: `ALERTS{alertstate="firing",severity="critical"}`); with it, when
/// it returns at least one sample and every sample compares true.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusCheck {
    /// The base URL (`http://prometheus.monitoring:9090`); drover asks
    /// `/api/v1/query` under it.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("spec.healthChecks[].prometheus.url must start with http:// or https://"))]
    pub url: String,
    /// The PromQL query; `{{node}}`, `{{nodeIP}}` and `{{component}}` are filled in.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    /// How long one request may take, from 1s to 5m.
    #[serde(default = "default_request_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("{} && duration(self) >= duration('1s') && duration(self) <= duration('5m')", matches_rule(crate::rules::DURATION_PATTERN))).message("spec.healthChecks[].prometheus.requestTimeout must be a duration from 1s to 5m, such as 5s"))]
    pub request_timeout: String,
}

/// `sample <op> value`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Threshold {
    pub op: CompareOp,
    pub value: f64,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl CompareOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
        }
    }

    pub fn holds(self, sample: f64, value: f64) -> bool {
        match self {
            CompareOp::Lt => sample < value,
            CompareOp::Le => sample <= value,
            CompareOp::Gt => sample > value,
            CompareOp::Ge => sample >= value,
            CompareOp::Eq => sample == value,
            CompareOp::Ne => sample != value,
        }
    }
}

/// Every pod matching `selector` is Ready, and none restarted more than
/// `maxRestarts` times since the node's uncordon.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodsCheck {
    /// The pods' namespace (every namespace when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    #[schemars(schema_with = "crate::rules::plain_selector_schema")]
    pub selector: LabelSelector,
    /// Only the pods on the node checked.
    #[serde(default)]
    pub on_node: bool,
    /// Container restarts allowed since the node's uncordon, from 0 to 1000.
    /// A pod older than the uncordon counts its restarts when its last one
    /// ended after it (drover keeps no count of its own).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub max_restarts: i32,
}

/// For etcd and control-plane nodes (a worker passes at once): the API
/// server's `/readyz` and etcd's `/health` of every etcd and control-plane
/// node, before the next one starts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneCheck {
    /// Asked of every control-plane node; it must answer 200 `ok`. The
    /// cluster's CA (drover's own kubeconfig's) is trusted.
    #[serde(default = "default_api_server_url")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("spec.healthChecks[].controlPlane.apiServerURL must start with http:// or https://"))]
    #[serde(rename = "apiServerURL")]
    pub api_server_url: String,
    /// Asked of every etcd member; it must answer 200 with `"health":"true"`.
    #[serde(default = "default_etcd_url")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("spec.healthChecks[].controlPlane.etcdURL must start with http:// or https://"))]
    #[serde(rename = "etcdURL")]
    pub etcd_url: String,
}

/// The first workers, then a soak, then (optionally) a human's approval.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// How many workers go first: an integer or a percentage of the workers
    /// in scope (rounded down, at least 1).
    #[serde(default = "default_canary_nodes")]
    #[x_kube(validation = Rule::new("string(self).matches('^([1-9][0-9]*|([1-9][0-9]?|100)%)$')").message("spec.strategy.canary.nodes must be an integer of at least 1 or a percentage from 1% to 100%"))]
    pub nodes: IntOrString,
    /// Which workers may be canaries (any when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector_schema")]
    pub selector: Option<LabelSelector>,
    /// How long to watch the canaries after the last one is upgraded, at most 24h.
    #[serde(default = "default_canary_soak")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(duration_rule(false)).message("spec.strategy.canary.soak must be a duration from 0s to 24h, such as 10m"))]
    pub soak: String,
    /// After the soak, wait until `spec.approvedCanary` names this target's
    /// canary hash (`status.canary.hash`; `drover approve` sets it).
    #[serde(default)]
    pub require_approval: bool,
}

/// What a node that failed (after its retries) comes to.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailureAction {
    /// The node keeps what it has; the rollout halts past maxFailures.
    #[default]
    Halt,
    /// The node is returned to the versions it ran before, in reverse
    /// component order, and the rollout halts with RolledBack.
    Rollback,
}

/// Which nodes a rollback returns to their previous versions.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RollbackScope {
    /// Only the nodes that failed.
    #[default]
    Failed,
    /// Also every node this target already upgraded, in reverse stage
    /// order, under the same budgets.
    All,
}

/// Jobs run on each node around its upgrade (Cluster API's lifecycle hooks).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    /// Must succeed after the cordon and before the drain (set Ceph
    /// `noout`, pause shard allocation). A failure hands the node back
    /// untouched and halts with PreDrainHookFailed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_drain: Option<Hook>,
    /// Must succeed after the uncordon, before the health checks (unset
    /// `noout`). A failure fails the node with PostUncordonHookFailed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_uncordon: Option<Hook>,
}

/// A Job pinned to the node, with DROVER_NODE and DROVER_HOOK in its environment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(matches_rule(IMAGE_PATTERN)).message("spec.hooks image must be an image reference such as registry.example.com/ceph-noout:1.0 (lowercase path, optional :tag and @sha256:digest, no spaces)"))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub host_root: bool,
    /// How long the Job may run, at most 24h.
    #[serde(default = "default_hook_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(duration_rule(true)).message("spec.hooks timeout must be a duration above 0s and at most 24h, such as 5m"))]
    pub timeout: String,
}

fn default_check_timeout() -> String {
    "10m".into()
}
fn default_success_threshold() -> i32 {
    1
}
fn default_interval() -> String {
    "10s".into()
}
fn default_expected_status() -> Vec<i32> {
    vec![200]
}
fn default_request_timeout() -> String {
    "5s".into()
}
fn default_api_server_url() -> String {
    "https://{{nodeIP}}:6443/readyz".into()
}
fn default_etcd_url() -> String {
    "http://{{nodeIP}}:2381/health".into()
}
fn default_canary_nodes() -> IntOrString {
    IntOrString::Int(1)
}
fn default_canary_soak() -> String {
    "0s".into()
}
fn default_hook_timeout() -> String {
    "10m".into()
}

impl HealthCheck {
    /// http, prometheus, pods or controlPlane.
    pub fn kind(&self) -> &'static str {
        if self.http.is_some() {
            "http"
        } else if self.prometheus.is_some() {
            "prometheus"
        } else if self.pods.is_some() {
            "pods"
        } else {
            "controlPlane"
        }
    }
}

/// Fill a check's placeholders in.
pub fn fill(template: &str, node: &str, node_ip: &str, component: &str) -> String {
    template
        .replace("{{node}}", node)
        .replace("{{nodeIP}}", node_ip)
        .replace("{{component}}", component)
}
