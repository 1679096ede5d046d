//! The scenario: a cluster described in YAML or with a builder. Nodes come in
//! pools (role, count, labels, taints, versions); add-ons and user workloads
//! are listed with their image versions; timings are simulated seconds.

use super::SimError;
use crate::faults::FaultRule;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A whole cluster. `serde` names are camelCase, as in Kubernetes YAML.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub name: String,
    /// Default speed factor (`kubesim serve --scenario` uses it unless `--speed`).
    #[serde(default = "one_f")]
    pub speed: f64,
    /// Cluster-wide versions; pools may override them.
    #[serde(default)]
    pub versions: Versions,
    pub nodes: Vec<NodePool>,
    #[serde(default)]
    pub addons: Addons,
    #[serde(default)]
    pub workloads: Vec<Workload>,
    #[serde(default)]
    pub timing: Timing,
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// Versions as nodes report them. Unset fields fall back to the cluster's,
/// then to `kubernetes` (kubelet, kube-proxy, control-plane components).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Versions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_apiserver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_controller_manager: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<String>,
    /// `containerd://1.7.22`, `cri-o://1.30.4`, `docker://27.1.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

/// The versions one node starts with, every field resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVersions {
    pub kubelet: String,
    pub kube_proxy: String,
    pub kube_apiserver: String,
    pub kube_controller_manager: String,
    pub kube_scheduler: String,
    pub etcd: String,
    pub container_runtime: String,
    pub os_image: String,
    pub kernel: String,
}

impl Versions {
    /// `self` over `base`, then the built-in defaults.
    pub fn resolve(&self, base: &Versions) -> NodeVersions {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        let k8s = pick(&self.kubernetes, &base.kubernetes).unwrap_or_else(|| "v1.31.4".into());
        let or_k8s = |a: &Option<String>, b: &Option<String>| pick(a, b).unwrap_or_else(|| k8s.clone());
        NodeVersions {
            kubelet: or_k8s(&self.kubelet, &base.kubelet),
            kube_proxy: or_k8s(&self.kube_proxy, &base.kube_proxy),
            kube_apiserver: or_k8s(&self.kube_apiserver, &base.kube_apiserver),
            kube_controller_manager: or_k8s(&self.kube_controller_manager, &base.kube_controller_manager),
            kube_scheduler: or_k8s(&self.kube_scheduler, &base.kube_scheduler),
            etcd: pick(&self.etcd, &base.etcd).unwrap_or_else(|| "v3.5.15".into()),
            container_runtime: pick(&self.container_runtime, &base.container_runtime)
                .unwrap_or_else(|| "containerd://1.7.22".into()),
            os_image: pick(&self.os_image, &base.os_image).unwrap_or_else(|| "Ubuntu 22.04.4 LTS".into()),
            kernel: pick(&self.kernel, &base.kernel).unwrap_or_else(|| "5.15.0-119-generic".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Etcd,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Etcd => "etcd",
            Role::Worker => "worker",
        }
    }
}

/// `count` nodes named `<prefix>-<i>` (1-based, zero-padded to the count's width).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePool {
    pub role: Role,
    pub count: u32,
    /// Default: `cp`, `etcd` or `worker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// Control-plane pools only: run stacked etcd members. Default: true
    /// unless the scenario has an `etcd` pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra taints (`{key, value, effect}`), besides the role's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Value>,
    #[serde(default)]
    pub versions: Versions,
    #[serde(default = "max_pods")]
    pub max_pods: u32,
}

impl NodePool {
    pub fn new(role: Role, count: u32) -> NodePool {
        NodePool {
            role,
            count,
            name_prefix: None,
            etcd: None,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            versions: Versions::default(),
            max_pods: max_pods(),
        }
    }

    pub fn prefix(&self) -> &str {
        self.name_prefix.as_deref().unwrap_or(match self.role {
            Role::ControlPlane => "cp",
            Role::Etcd => "etcd",
            Role::Worker => "worker",
        })
    }

    /// The node names of this pool.
    pub fn names(&self) -> Vec<String> {
        let width = self.count.to_string().len();
        (1..=self.count)
            .map(|i| format!("{}-{:0width$}", self.prefix(), i))
            .collect()
    }
}

/// Cluster add-ons in `kube-system`. `null` turns one off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Addons {
    /// The network plugin's DaemonSet (`<name>-node`, e.g. `calico-node`).
    #[serde(default = "default_network")]
    pub network: Option<AddonSpec>,
    /// kube-proxy as a DaemonSet whose image tag is the kube-proxy version.
    #[serde(default = "yes")]
    pub kube_proxy: bool,
    #[serde(default = "default_coredns")]
    pub coredns: Option<AddonSpec>,
    #[serde(default = "default_metrics_server")]
    pub metrics_server: Option<AddonSpec>,
}

impl Default for Addons {
    fn default() -> Self {
        Addons {
            network: default_network(),
            kube_proxy: true,
            coredns: default_coredns(),
            metrics_server: default_metrics_server(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddonSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub version: String,
    #[serde(default = "one")]
    pub replicas: u32,
    /// For Calico, the install as its manifest makes it: calico-node with
    /// its init containers (upgrade-ipam and install-cni from calico/cni,
    /// mount-bpffs from calico/node, flexvol-driver from
    /// calico/pod2daemon-flexvol) and the calico-kube-controllers Deployment.
    #[serde(default, skip_serializing_if = "is_false")]
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    /// A bare pod, no controller.
    Pod,
}

/// A user workload. `copies` > 1 makes `<name>-1`..`<name>-N`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default = "default_image")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdb: Option<PdbSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// Mount an emptyDir volume (drain needs `--delete-emptydir-data`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub empty_dir: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Value>,
    /// Bare pods: bind to this node instead of scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub copies: u32,
}

impl Workload {
    pub fn new(kind: WorkloadKind, namespace: &str, name: &str, replicas: u32) -> Workload {
        Workload {
            kind,
            name: name.into(),
            namespace: namespace.into(),
            replicas,
            image: default_image(),
            pdb: None,
            termination_grace_period_seconds: None,
            empty_dir: false,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            node_name: None,
            labels: BTreeMap::new(),
            copies: 1,
        }
    }
}

/// A PodDisruptionBudget over a workload's pods: an int or a percentage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PdbSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<Value>,
}

/// Simulated durations, in simulated seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timing {
    /// Bound pod: Pending → Running.
    #[serde(default = "two")]
    pub pod_start_seconds: f64,
    /// Running → Ready.
    #[serde(default = "three")]
    pub pod_ready_seconds: f64,
    /// A container stops this long after SIGTERM (capped by its grace period).
    #[serde(default = "two")]
    pub pod_shutdown_seconds: f64,
    /// How long a Job pod that is not an upgrade runs before exiting 0.
    #[serde(default = "ten")]
    pub job_run_seconds: f64,
    #[serde(default = "reboot")]
    pub reboot_seconds: f64,
    /// Node heartbeat period; 0 turns heartbeats off. Default: 40, or 0 above 200 nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_seconds: Option<f64>,
    /// Upgrade duration of components not listed in `components`.
    #[serde(default = "sixty")]
    pub upgrade_seconds: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentTiming>,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            pod_start_seconds: 2.0,
            pod_ready_seconds: 3.0,
            pod_shutdown_seconds: 2.0,
            job_run_seconds: 10.0,
            reboot_seconds: 120.0,
            heartbeat_seconds: None,
            upgrade_seconds: 60.0,
            components: BTreeMap::new(),
        }
    }
}

impl Timing {
    /// The version an upgrade of `component` to `version` leaves on the
    /// node: `installs` when `version` is a series it belongs to.
    pub fn installed(&self, component: &str, version: &str) -> String {
        let bare = |v: &str| v.trim_start_matches('v').to_string();
        match self.components.get(component).and_then(|c| c.installs.as_deref()) {
            Some(full)
                if bare(version).split('.').count() == 2 && bare(full).starts_with(&format!("{}.", bare(version))) =>
            {
                full.to_string()
            }
            _ => version.to_string(),
        }
    }

    /// The component's reboot behaviour: (after exit, reboot required).
    pub fn deferred_reboot(&self, name: &str) -> (bool, bool) {
        self.components
            .get(name)
            .map(|c| (c.reboot_after_exit, c.reboot_required))
            .unwrap_or_default()
    }

    /// Upgrade duration and whether the node reboots, for one component.
    pub fn component(&self, name: &str) -> (f64, bool) {
        match self.components.get(name) {
            Some(c) => (c.seconds.unwrap_or(self.upgrade_seconds), c.reboot),
            None => (self.upgrade_seconds, false),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentTiming {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub reboot: bool,
    /// What the node's package manager installs when asked for a series
    /// (a two-part version such as `20.10`): this version when it is in
    /// that series (`20.10.24`). Otherwise the version asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installs: Option<String>,
    /// The upgrade pod exits 0 first and the node reboots two simulated
    /// seconds later (as `shutdown -r +N` does); the new version shows
    /// after the reboot.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reboot_after_exit: bool,
    /// The upgrade pod exits 0 with `reboot-required` as its termination
    /// message and does not reboot; the new version shows after the node's
    /// next reboot (drover's reboot Job).
    #[serde(default, skip_serializing_if = "is_false")]
    pub reboot_required: bool,
}

/// A fault, declared in the scenario or set at run time. Empty `nodes`
/// means every node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum Fault {
    /// The upgrade pod of `component` ends Failed.
    UpgradeFails {
        component: String,
        #[serde(default)]
        nodes: Vec<String>,
    },
    /// The upgrade pod of `component` runs forever (until its deadline).
    UpgradeHangs {
        component: String,
        #[serde(default)]
        nodes: Vec<String>,
    },
    /// After its next reboot the node stays NotReady.
    NodeNeverReady {
        #[serde(default)]
        nodes: Vec<String>,
    },
    /// The disruption controller reports `disruptionsAllowed: 0` for this PDB.
    PdbBlocks { namespace: String, name: String },
    /// Matching pods ignore SIGTERM: they stop only when their grace period ends.
    SlowTermination {
        namespace: String,
        #[serde(default)]
        selector: BTreeMap<String, String>,
    },
    /// Error rates and latency of the HTTP API (the API server's fault rules).
    ApiErrors {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verb: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource: Option<String>,
        #[serde(default = "code_500")]
        code: u16,
        #[serde(default)]
        rate: f64,
        #[serde(default)]
        latency_ms: u64,
    },
    /// Every HTTP watch is closed this often (simulated seconds).
    WatchDrops { every_seconds: f64 },
    /// A node is bad while its live version of `component` (what an
    /// upgrade left there, as drover verifies it) is `version` (a leading
    /// `v` aside): its health endpoint answers 503, `kubesim_bad_version`
    /// shows it, and `effect` says what else (docs/simulation.md, "Health").
    BadVersion {
        component: String,
        version: String,
        #[serde(default)]
        effect: BadEffect,
        #[serde(default)]
        nodes: Vec<String>,
    },
    /// An alert that fires while the fault is set (`ALERTS{alertname=name}`).
    AlertFiring {
        name: String,
        #[serde(default = "critical")]
        severity: String,
    },
}

/// What a bad version does besides failing the node's health endpoint.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum BadEffect {
    /// The node's long-running pods (not mirror pods, not run-to-completion
    /// pods such as upgrade Jobs) report Ready=False while it is bad.
    #[default]
    PodsUnready,
    /// Pods are unaffected; the alert `KubesimBadVersion` fires for the node.
    Metric,
}

impl Fault {
    pub(crate) fn covers_node(nodes: &[String], node: &str) -> bool {
        nodes.is_empty() || nodes.iter().any(|n| n == node)
    }

    /// The API server's rule for an `ApiErrors` fault.
    pub fn api_rule(&self) -> Option<FaultRule> {
        match self {
            Fault::ApiErrors {
                verb,
                resource,
                code,
                rate,
                latency_ms,
            } => Some(FaultRule {
                verb: verb.clone(),
                resource: resource.clone(),
                code: *code,
                rate: *rate,
                latency_ms: *latency_ms,
                user_agent: None,
            }),
            _ => None,
        }
    }
}

fn code_500() -> u16 {
    500
}
fn critical() -> String {
    "critical".into()
}
fn one() -> u32 {
    1
}
fn is_one(x: &u32) -> bool {
    *x == 1
}
fn one_f() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}
fn three() -> f64 {
    3.0
}
fn ten() -> f64 {
    10.0
}
fn sixty() -> f64 {
    60.0
}
fn reboot() -> f64 {
    120.0
}
fn yes() -> bool {
    true
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn max_pods() -> u32 {
    110
}
fn default_namespace() -> String {
    "default".into()
}
fn default_image() -> String {
    "registry.k8s.io/pause:3.10".into()
}
fn default_network() -> Option<AddonSpec> {
    Some(AddonSpec {
        name: "calico".into(),
        version: "v3.28.1".into(),
        replicas: 1,
        complete: false,
    })
}
fn default_coredns() -> Option<AddonSpec> {
    Some(AddonSpec {
        name: "coredns".into(),
        version: "v1.11.3".into(),
        replicas: 2,
        complete: false,
    })
}
fn default_metrics_server() -> Option<AddonSpec> {
    Some(AddonSpec {
        name: "metrics-server".into(),
        version: "v0.7.2".into(),
        replicas: 1,
        complete: false,
    })
}

const SMALL: &str = include_str!("../../../../examples/clusters/small.yaml");
const MEDIUM: &str = include_str!("../../../../examples/clusters/medium.yaml");
const LARGE: &str = include_str!("../../../../examples/clusters/large.yaml");

impl Scenario {
    pub fn from_yaml(s: &str) -> Result<Scenario, SimError> {
        let sc: Scenario = serde_yaml::from_str(s).map_err(|e| SimError::Scenario(e.to_string()))?;
        sc.validate()?;
        Ok(sc)
    }

    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path.as_ref())
            .map_err(|e| SimError::Scenario(format!("{}: {e}", path.as_ref().display())))?;
        Self::from_yaml(&text)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// `examples/clusters/small.yaml`: 3 control-plane nodes (stacked etcd), 5 workers.
    pub fn small() -> Scenario {
        Self::from_yaml(SMALL).expect("small.yaml is valid")
    }

    /// `examples/clusters/medium.yaml`: 3 + 100.
    pub fn medium() -> Scenario {
        Self::from_yaml(MEDIUM).expect("medium.yaml is valid")
    }

    /// `examples/clusters/large.yaml`: 5 + 5,000.
    pub fn large() -> Scenario {
        Self::from_yaml(LARGE).expect("large.yaml is valid")
    }

    pub fn builder() -> ScenarioBuilder {
        ScenarioBuilder(Scenario {
            name: "custom".into(),
            speed: 1.0,
            versions: Versions::default(),
            nodes: Vec::new(),
            addons: Addons::default(),
            workloads: Vec::new(),
            timing: Timing::default(),
            faults: Vec::new(),
        })
    }

    pub fn node_count(&self) -> usize {
        self.nodes.iter().map(|p| p.count as usize).sum()
    }

    /// Checks what serde cannot: unique node names, workload names, PDB shapes.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Scenario(m));
        if self.nodes.is_empty() {
            return bad("a scenario needs at least one node pool".into());
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.nodes {
            for n in p.names() {
                if !names.insert(n.clone()) {
                    return bad(format!("node {n} is defined twice (pools need distinct namePrefix)"));
                }
            }
        }
        let mut wl = std::collections::HashSet::new();
        for w in &self.workloads {
            if !wl.insert((w.namespace.clone(), w.name.clone(), w.kind as u8)) {
                return bad(format!("workload {}/{} is defined twice", w.namespace, w.name));
            }
            if let Some(p) = &w.pdb
                && p.min_available.is_some() == p.max_unavailable.is_some()
            {
                return bad(format!(
                    "the PDB of {}/{} needs exactly one of minAvailable and maxUnavailable",
                    w.namespace, w.name
                ));
            }
            if let Some(n) = &w.node_name
                && !names.contains(n)
            {
                return bad(format!("{}/{} is bound to unknown node {n}", w.namespace, w.name));
            }
        }
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return bad(format!("speed must be positive, got {}", self.speed));
        }
        Ok(())
    }
}

/// Builds a [`Scenario`] in code. Workload modifiers apply to the last workload added.
#[derive(Debug, Clone)]
pub struct ScenarioBuilder(Scenario);

impl ScenarioBuilder {
    pub fn name(mut self, name: &str) -> Self {
        self.0.name = name.into();
        self
    }
    pub fn speed(mut self, speed: f64) -> Self {
        self.0.speed = speed;
        self
    }
    /// Control-plane nodes `cp-1..` with stacked etcd (unless an etcd pool is added).
    pub fn control_plane(self, count: u32) -> Self {
        self.pool(NodePool::new(Role::ControlPlane, count))
    }
    /// Dedicated etcd members `etcd-1..`.
    pub fn etcd(self, count: u32) -> Self {
        self.pool(NodePool::new(Role::Etcd, count))
    }
    pub fn workers(self, count: u32) -> Self {
        self.pool(NodePool::new(Role::Worker, count))
    }
    pub fn pool(mut self, pool: NodePool) -> Self {
        self.0.nodes.push(pool);
        self
    }
    pub fn versions(mut self, v: Versions) -> Self {
        self.0.versions = v;
        self
    }
    pub fn kubernetes_version(mut self, v: &str) -> Self {
        self.0.versions.kubernetes = Some(v.into());
        self
    }
    pub fn addons(mut self, a: Addons) -> Self {
        self.0.addons = a;
        self
    }
    /// No add-ons at all (no DaemonSets or Deployments in kube-system).
    pub fn no_addons(mut self) -> Self {
        self.0.addons = Addons {
            network: None,
            kube_proxy: false,
            coredns: None,
            metrics_server: None,
        };
        self
    }
    pub fn workload(mut self, w: Workload) -> Self {
        self.0.workloads.push(w);
        self
    }
    pub fn deployment(self, namespace: &str, name: &str, replicas: u32) -> Self {
        self.workload(Workload::new(WorkloadKind::Deployment, namespace, name, replicas))
    }
    pub fn statefulset(self, namespace: &str, name: &str, replicas: u32) -> Self {
        self.workload(Workload::new(WorkloadKind::StatefulSet, namespace, name, replicas))
    }
    pub fn daemonset(self, namespace: &str, name: &str) -> Self {
        self.workload(Workload::new(WorkloadKind::DaemonSet, namespace, name, 1))
    }
    pub fn pod(self, namespace: &str, name: &str) -> Self {
        self.workload(Workload::new(WorkloadKind::Pod, namespace, name, 1))
    }
    fn last(&mut self, f: impl FnOnce(&mut Workload)) {
        if let Some(w) = self.0.workloads.last_mut() {
            f(w)
        }
    }
    pub fn pdb_min_available(mut self, v: impl Into<Value>) -> Self {
        let v = v.into();
        self.last(|w| {
            w.pdb = Some(PdbSpec {
                min_available: Some(v),
                max_unavailable: None,
            })
        });
        self
    }
    pub fn pdb_max_unavailable(mut self, v: impl Into<Value>) -> Self {
        let v = v.into();
        self.last(|w| {
            w.pdb = Some(PdbSpec {
                min_available: None,
                max_unavailable: Some(v),
            })
        });
        self
    }
    pub fn grace_period(mut self, seconds: i64) -> Self {
        self.last(|w| w.termination_grace_period_seconds = Some(seconds));
        self
    }
    pub fn empty_dir(mut self) -> Self {
        self.last(|w| w.empty_dir = true);
        self
    }
    pub fn on_node(mut self, node: &str) -> Self {
        self.last(|w| w.node_name = Some(node.into()));
        self
    }
    pub fn image(mut self, image: &str) -> Self {
        self.last(|w| w.image = image.into());
        self
    }
    pub fn timing(mut self, f: impl FnOnce(&mut Timing)) -> Self {
        f(&mut self.0.timing);
        self
    }
    /// Upgrade duration (simulated seconds) and reboot of one component.
    pub fn component(mut self, name: &str, seconds: f64, reboot: bool) -> Self {
        self.0.timing.components.insert(
            name.into(),
            ComponentTiming {
                seconds: Some(seconds),
                reboot,
                ..ComponentTiming::default()
            },
        );
        self
    }
    pub fn fault(mut self, f: Fault) -> Self {
        self.0.faults.push(f);
        self
    }
    pub fn build(self) -> Result<Scenario, SimError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_installs_what_the_mirror_serves() {
        let mut t = Timing::default();
        let docker = ComponentTiming {
            installs: Some("20.10.24".into()),
            ..ComponentTiming::default()
        };
        t.components.insert("docker".into(), docker);
        assert_eq!(t.installed("docker", "20.10"), "20.10.24");
        assert_eq!(t.installed("docker", "v20.10"), "20.10.24");
        assert_eq!(t.installed("docker", "20.1"), "20.1");
        assert_eq!(t.installed("docker", "24.0"), "24.0");
        assert_eq!(t.installed("docker", "20.10.7"), "20.10.7");
        assert_eq!(t.installed("containerd", "1.7"), "1.7");
    }

    #[test]
    fn presets_parse_and_round_trip() {
        for s in [Scenario::small(), Scenario::medium(), Scenario::large()] {
            let again = Scenario::from_yaml(&s.to_yaml()).unwrap();
            assert_eq!(s, again);
        }
        assert_eq!(Scenario::small().node_count(), 8);
        assert_eq!(Scenario::medium().node_count(), 103);
        assert_eq!(Scenario::large().node_count(), 5005);
    }

    #[test]
    fn versions_resolve_pool_over_cluster_over_defaults() {
        let cluster = Versions {
            kubernetes: Some("v1.30.2".into()),
            etcd: Some("v3.5.12".into()),
            ..Default::default()
        };
        let pool = Versions {
            kubelet: Some("v1.29.9".into()),
            ..Default::default()
        };
        let v = pool.resolve(&cluster);
        assert_eq!(v.kubelet, "v1.29.9");
        assert_eq!(v.kube_proxy, "v1.30.2");
        assert_eq!(v.kube_apiserver, "v1.30.2");
        assert_eq!(v.etcd, "v3.5.12");
        assert_eq!(v.container_runtime, "containerd://1.7.22");
    }

    #[test]
    fn builder_and_validation() {
        let s = Scenario::builder()
            .control_plane(1)
            .workers(3)
            .deployment("shop", "web", 3)
            .pdb_min_available(2)
            .build()
            .unwrap();
        assert_eq!(s.nodes[1].names(), vec!["worker-1", "worker-2", "worker-3"]);
        assert_eq!(s.workloads[0].pdb.as_ref().unwrap().min_available, Some(Value::from(2)));
        let dup = Scenario::builder().workers(2).workers(1).build();
        assert!(dup.is_err());
        let faults = "type: UpgradeFails\ncomponent: containerd\nnodes: [worker-2]\n";
        let f: Fault = serde_yaml::from_str(faults).unwrap();
        assert_eq!(
            f,
            Fault::UpgradeFails {
                component: "containerd".into(),
                nodes: vec!["worker-2".into()]
            }
        );
    }
}
