//! The Kubernetes objects of a scenario as JSON: nodes, mirror pods, add-ons,
//! user workloads and their PDBs, plus the small JSON helpers the
//! controllers share.

use super::scenario::{AddonSpec, NodePool, NodeVersions, Role, Scenario, Workload, WorkloadKind};
use crate::store::GroupResource;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub use crate::meta::MIRROR;
pub const CP_LABEL: &str = "node-role.kubernetes.io/control-plane";
pub const ETCD_LABEL: &str = "node-role.kubernetes.io/etcd";
/// The control-plane components that run as static pods, with `etcd`.
pub const STATIC_COMPONENTS: [&str; 4] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"];

pub fn gr_pods() -> GroupResource {
    GroupResource::new("", "pods")
}
pub fn gr_nodes() -> GroupResource {
    GroupResource::new("", "nodes")
}
pub fn gr_namespaces() -> GroupResource {
    GroupResource::new("", "namespaces")
}
pub fn gr_pdbs() -> GroupResource {
    GroupResource::new("policy", "poddisruptionbudgets")
}
pub fn gr_apps(plural: &str) -> GroupResource {
    GroupResource::new("apps", plural)
}
pub fn gr_jobs() -> GroupResource {
    GroupResource::new("batch", "jobs")
}

/// FNV-1a: stable hashes for template hashes and mirror pod config hashes.
pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A 10-character hash of a pod template, like `pod-template-hash`.
pub fn template_hash(template: &Value) -> String {
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = fnv(&template.to_string());
    let mut out = String::with_capacity(10);
    for _ in 0..10 {
        out.push(alphabet[(h % alphabet.len() as u64) as usize] as char);
        h /= alphabet.len() as u64;
    }
    out
}

/// A condition entry with both timestamps at `now`.
pub fn condition(type_: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    let mut c = json!({
        "type": type_,
        "status": if status { "True" } else { "False" },
        "lastTransitionTime": now,
    });
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    c
}

/// Sets a condition in `obj[path]` (a list of conditions), keeping
/// `lastTransitionTime` when the status does not change.
pub fn set_condition(list: &mut Value, mut cond: Value) {
    if !list.is_array() {
        *list = json!([]);
    }
    let arr = list.as_array_mut().unwrap();
    match arr.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(old) => {
            if old["status"] == cond["status"] {
                cond["lastTransitionTime"] = old["lastTransitionTime"].clone();
            }
            *old = cond;
        }
        None => arr.push(cond),
    }
}

pub fn has_condition(list: &Value, type_: &str) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|c| c["type"] == type_ && c["status"] == "True"))
}

/// The index of a node in the cluster gives it stable addresses.
pub fn node_ip(index: usize) -> String {
    format!("10.0.{}.{}", index / 250, index % 250 + 2)
}

pub fn pod_cidr(index: usize) -> String {
    format!("10.{}.{}.0/24", 64 + index / 256, index % 256)
}

pub fn pod_ip(node_index: usize, n: u64) -> String {
    format!("10.{}.{}.{}", 64 + node_index / 256, node_index % 256, n % 253 + 2)
}

/// One node of the scenario, before it exists.
#[derive(Debug, Clone)]
pub struct NodePlan {
    pub name: String,
    pub index: usize,
    pub role: Role,
    pub etcd: bool,
    pub control_plane: bool,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Value>,
    pub versions: NodeVersions,
    pub max_pods: u32,
}

pub fn plan_nodes(s: &Scenario) -> Vec<NodePlan> {
    let dedicated_etcd = s.nodes.iter().any(|p| p.role == Role::Etcd);
    let mut out = Vec::new();
    for pool in &s.nodes {
        for name in pool.names() {
            out.push(plan_node(s, pool, name, out.len(), dedicated_etcd));
        }
    }
    out
}

fn plan_node(s: &Scenario, pool: &NodePool, name: String, index: usize, dedicated_etcd: bool) -> NodePlan {
    let control_plane = pool.role == Role::ControlPlane;
    let etcd = match pool.role {
        Role::Etcd => true,
        Role::ControlPlane => pool.etcd.unwrap_or(!dedicated_etcd),
        Role::Worker => false,
    };
    let mut labels = BTreeMap::new();
    for (k, v) in [
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
    ] {
        labels.insert(k.to_string(), v.to_string());
    }
    labels.insert("kubernetes.io/hostname".into(), name.clone());
    if control_plane {
        labels.insert(CP_LABEL.into(), String::new());
        labels.insert(
            "node.kubernetes.io/exclude-from-external-load-balancers".into(),
            String::new(),
        );
    }
    if etcd {
        labels.insert(ETCD_LABEL.into(), String::new());
    }
    labels.extend(pool.labels.clone());
    let mut taints = Vec::new();
    if control_plane {
        taints.push(json!({"key": CP_LABEL, "effect": "NoSchedule"}));
    } else if pool.role == Role::Etcd {
        taints.push(json!({"key": ETCD_LABEL, "effect": "NoSchedule"}));
    }
    taints.extend(pool.taints.iter().cloned());
    NodePlan {
        name,
        index,
        role: pool.role,
        etcd,
        control_plane,
        labels,
        taints,
        versions: pool.versions.resolve(&s.versions),
        max_pods: pool.max_pods,
    }
}

impl NodePlan {
    /// The static pods this node runs: (component, version).
    pub fn static_pods(&self) -> Vec<(&'static str, &str)> {
        let v = &self.versions;
        let mut out: Vec<(&'static str, &str)> = Vec::new();
        if self.control_plane {
            out.push(("kube-apiserver", &v.kube_apiserver));
            out.push(("kube-controller-manager", &v.kube_controller_manager));
            out.push(("kube-scheduler", &v.kube_scheduler));
        }
        if self.etcd {
            out.push(("etcd", &v.etcd));
        }
        out
    }
}

/// `containerd://1.7.22` from a runtime name and a version with or without `v`.
pub fn runtime_version(runtime: &str, version: &str) -> String {
    format!("{runtime}://{}", version.trim_start_matches('v'))
}

pub fn node_object(p: &NodePlan, now: &str) -> Value {
    let v = &p.versions;
    let cap = json!({"cpu": "8", "memory": "32863152Ki", "pods": p.max_pods.to_string(), "ephemeral-storage": "101430960Ki", "hugepages-2Mi": "0"});
    let alloc = json!({"cpu": "7800m", "memory": "32146352Ki", "pods": p.max_pods.to_string(), "ephemeral-storage": "93478772582", "hugepages-2Mi": "0"});
    let id = format!("{:032x}", fnv(&p.name) as u128 * 0x1_0000_0001);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": p.name,
            "labels": p.labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": pod_cidr(p.index),
            "podCIDRs": [pod_cidr(p.index)],
            "providerID": format!("kubesim://{}", p.name),
            "taints": p.taints,
        },
        "status": {
            "capacity": cap,
            "allocatable": alloc,
            "conditions": [
                heartbeat(condition("MemoryPressure", false, "KubeletHasSufficientMemory", "kubelet has sufficient memory available", now), now),
                heartbeat(condition("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now), now),
                heartbeat(condition("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available", now), now),
                ready_condition(true, now),
            ],
            "addresses": [
                {"type": "InternalIP", "address": node_ip(p.index)},
                {"type": "Hostname", "address": p.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": id,
                "systemUUID": id,
                "bootID": crate::meta::new_uid(),
                "kernelVersion": v.kernel,
                "osImage": v.os_image,
                "containerRuntimeVersion": v.container_runtime,
                "kubeletVersion": v.kubelet,
                "kubeProxyVersion": v.kube_proxy,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    })
}

fn heartbeat(mut c: Value, now: &str) -> Value {
    c["lastHeartbeatTime"] = json!(now);
    c
}

/// The node `Ready` condition as the kubelet reports it.
pub fn ready_condition(ready: bool, now: &str) -> Value {
    let mut c = if ready {
        condition("Ready", true, "KubeletReady", "kubelet is posting ready status", now)
    } else {
        let mut c = condition(
            "Ready",
            false,
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
            now,
        );
        c["status"] = json!("Unknown");
        c
    };
    c["lastHeartbeatTime"] = json!(now);
    c
}

pub fn static_image(component: &str, version: &str) -> String {
    format!("registry.k8s.io/{component}:{version}")
}

/// The `kubernetes.io/config.hash` of a static pod: a hash of component, version and node.
pub fn config_hash(component: &str, version: &str, node: &str) -> String {
    format!("{:016x}", fnv(&format!("{component}/{version}/{node}")))
}

/// The mirror pod of a static pod, `<component>-<node>` in kube-system.
pub fn mirror_pod(component: &str, version: &str, node: &str, node_uid: &str, ip: &str) -> Value {
    let hash = config_hash(component, version, node);
    let command = match component {
        "etcd" => json!([
            "etcd",
            format!("--name={node}"),
            "--data-dir=/var/lib/etcd",
            format!("--advertise-client-urls=https://{ip}:2379")
        ]),
        "kube-apiserver" => json!([
            "kube-apiserver",
            format!("--advertise-address={ip}"),
            "--etcd-servers=https://127.0.0.1:2379",
            "--secure-port=6443"
        ]),
        other => json!([other, "--leader-elect=true"]),
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{component}-{node}"),
            "namespace": "kube-system",
            "labels": {"component": component, "tier": "control-plane"},
            "annotations": {
                MIRROR: hash,
                "kubernetes.io/config.hash": hash,
                "kubernetes.io/config.source": "file",
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": true}],
        },
        "spec": {
            "nodeName": node,
            "hostNetwork": true,
            "priorityClassName": "system-node-critical",
            "priority": 2000001000,
            "containers": [{"name": component, "image": static_image(component, version), "command": command}],
            "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "enableServiceLinks": true,
            "schedulerName": "default-scheduler",
        },
    })
}

fn labels_of(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
}

/// A pod template with one container.
#[allow(clippy::too_many_arguments)]
fn template(
    labels: &Map<String, Value>,
    container: &str,
    image: &str,
    grace: Option<i64>,
    empty_dir: bool,
    node_selector: &BTreeMap<String, String>,
    tolerations: &[Value],
    host_network: bool,
) -> Value {
    let mut c = json!({
        "name": container,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    });
    let mut spec = json!({
        "containers": [],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": grace.unwrap_or(30),
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
    });
    if empty_dir {
        c["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"}]);
        spec["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    }
    spec["containers"] = json!([c]);
    if !node_selector.is_empty() {
        spec["nodeSelector"] = json!(node_selector);
    }
    if !tolerations.is_empty() {
        spec["tolerations"] = json!(tolerations);
    }
    if host_network {
        spec["hostNetwork"] = json!(true);
        spec["priorityClassName"] = json!("system-node-critical");
    }
    json!({"metadata": {"labels": labels}, "spec": spec})
}

fn workload_object(kind: &str, ns: &str, name: &str, labels: &Map<String, Value>, spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec,
    })
}

fn pdb_object(ns: &str, name: &str, labels: &Map<String, Value>, spec: &super::scenario::PdbSpec) -> Value {
    let mut s = json!({"selector": {"matchLabels": labels}});
    if let Some(m) = &spec.min_available {
        s["minAvailable"] = m.clone();
    }
    if let Some(m) = &spec.max_unavailable {
        s["maxUnavailable"] = m.clone();
    }
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns},
        "spec": s,
    })
}

/// The defaults the API server would fill in, so `kubectl rollout status` works.
fn rolling_deployment(max_unavailable: impl Into<Value>) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": max_unavailable.into()}})
}

fn rolling_daemonset() -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
}

/// The objects of one user workload (each copy): (resource, object).
pub fn workload_objects(w: &Workload) -> Vec<(GroupResource, Value)> {
    let mut out = Vec::new();
    for i in 1..=w.copies {
        let name = if w.copies > 1 {
            format!("{}-{i}", w.name)
        } else {
            w.name.clone()
        };
        let mut labels = labels_of(&[("app", &name)]);
        for (k, v) in &w.labels {
            labels.insert(k.clone(), json!(v));
        }
        let tpl = template(
            &labels,
            "app",
            &w.image,
            w.termination_grace_period_seconds,
            w.empty_dir,
            &w.node_selector,
            &w.tolerations,
            false,
        );
        let selector = json!({"matchLabels": {"app": name}});
        match w.kind {
            WorkloadKind::Deployment => out.push((
                gr_apps("deployments"),
                workload_object(
                    "Deployment",
                    &w.namespace,
                    &name,
                    &labels,
                    json!({"replicas": w.replicas, "selector": selector, "template": tpl, "strategy": rolling_deployment("25%"), "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}),
                ),
            )),
            WorkloadKind::StatefulSet => out.push((
                gr_apps("statefulsets"),
                workload_object(
                    "StatefulSet",
                    &w.namespace,
                    &name,
                    &labels,
                    json!({"replicas": w.replicas, "selector": selector, "serviceName": name, "template": tpl, "podManagementPolicy": "OrderedReady", "revisionHistoryLimit": 10, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}}),
                ),
            )),
            WorkloadKind::DaemonSet => out.push((
                gr_apps("daemonsets"),
                workload_object(
                    "DaemonSet",
                    &w.namespace,
                    &name,
                    &labels,
                    json!({"selector": selector, "template": tpl, "revisionHistoryLimit": 10, "updateStrategy": rolling_daemonset()}),
                ),
            )),
            WorkloadKind::Pod => {
                let mut pod = json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": w.namespace, "labels": labels},
                    "spec": tpl["spec"].clone(),
                });
                if let Some(n) = &w.node_name {
                    pod["spec"]["nodeName"] = json!(n);
                }
                out.push((gr_pods(), pod));
            }
        }
        if let Some(p) = &w.pdb {
            out.push((
                gr_pdbs(),
                pdb_object(&w.namespace, &name, &labels_of(&[("app", &name)]), p),
            ));
        }
    }
    out
}

/// The network plugin's DaemonSet name and image for a version.
pub fn network_daemonset(a: &AddonSpec) -> (String, String) {
    match a.name.as_str() {
        "calico" | "" => ("calico-node".into(), format!("docker.io/calico/node:{}", a.version)),
        "cilium" => ("cilium".into(), format!("quay.io/cilium/cilium:{}", a.version)),
        other => (
            format!("{other}-node"),
            format!("docker.io/{other}/{other}:{}", a.version),
        ),
    }
}

/// kube-system add-ons: network plugin and kube-proxy DaemonSets, coredns
/// and metrics-server Deployments.
pub fn addon_objects(s: &Scenario) -> Vec<(GroupResource, Value)> {
    let mut out = Vec::new();
    let ns = "kube-system";
    let everything = [json!({"operator": "Exists"})];
    let none = BTreeMap::new();
    if let Some(n) = &s.addons.network {
        let (name, image) = network_daemonset(n);
        let labels = labels_of(&[("k8s-app", &name)]);
        let mut tpl = template(&labels, &name, &image, Some(0), false, &none, &everything, true);
        let calico = matches!(n.name.as_str(), "calico" | "");
        if n.complete && calico {
            let init = |name: &str, repo: &str| json!({"name": name, "image": format!("docker.io/calico/{repo}:{}", n.version), "imagePullPolicy": "IfNotPresent"});
            tpl["spec"]["initContainers"] = json!([
                init("upgrade-ipam", "cni"),
                init("install-cni", "cni"),
                init("flexvol-driver", "pod2daemon-flexvol"),
                init("mount-bpffs", "node"),
            ]);
        }
        let spec = json!({"selector": {"matchLabels": {"k8s-app": name}}, "template": tpl, "updateStrategy": rolling_daemonset()});
        out.push((
            gr_apps("daemonsets"),
            workload_object("DaemonSet", ns, &name, &labels, spec),
        ));
        if n.complete && calico {
            let name = "calico-kube-controllers";
            let labels = labels_of(&[("k8s-app", name)]);
            let tolerations = [
                json!({"key": "CriticalAddonsOnly", "operator": "Exists"}),
                json!({"key": CP_LABEL, "effect": "NoSchedule"}),
            ];
            let image = format!("docker.io/calico/kube-controllers:{}", n.version);
            let tpl = template(&labels, name, &image, Some(30), false, &none, &tolerations, false);
            let spec = json!({"replicas": 1, "selector": {"matchLabels": {"k8s-app": name}}, "template": tpl, "strategy": {"type": "Recreate"}});
            out.push((
                gr_apps("deployments"),
                workload_object("Deployment", ns, name, &labels, spec),
            ));
        }
    }
    if s.addons.kube_proxy {
        let v = s.versions.resolve(&Default::default()).kube_proxy;
        let labels = labels_of(&[("k8s-app", "kube-proxy")]);
        let tpl = template(
            &labels,
            "kube-proxy",
            &static_image("kube-proxy", &v),
            Some(30),
            false,
            &[("kubernetes.io/os".to_string(), "linux".to_string())]
                .into_iter()
                .collect(),
            &everything,
            true,
        );
        let spec = json!({"selector": {"matchLabels": {"k8s-app": "kube-proxy"}}, "template": tpl, "updateStrategy": rolling_daemonset()});
        out.push((
            gr_apps("daemonsets"),
            workload_object("DaemonSet", ns, "kube-proxy", &labels, spec),
        ));
    }
    let cp_tolerations = [
        json!({"key": "CriticalAddonsOnly", "operator": "Exists"}),
        json!({"key": CP_LABEL, "effect": "NoSchedule"}),
    ];
    for (addon, name, label, image) in [
        (
            &s.addons.coredns,
            "coredns",
            "kube-dns",
            "registry.k8s.io/coredns/coredns",
        ),
        (
            &s.addons.metrics_server,
            "metrics-server",
            "metrics-server",
            "registry.k8s.io/metrics-server/metrics-server",
        ),
    ] {
        if let Some(a) = addon {
            let labels = labels_of(&[("k8s-app", label)]);
            let tpl = template(
                &labels,
                name,
                &format!("{image}:{}", a.version),
                Some(30),
                false,
                &none,
                &cp_tolerations,
                false,
            );
            let spec = json!({"replicas": a.replicas, "selector": {"matchLabels": {"k8s-app": label}}, "template": tpl, "strategy": rolling_deployment(1)});
            out.push((
                gr_apps("deployments"),
                workload_object("Deployment", ns, name, &labels, spec),
            ));
        }
    }
    out
}
