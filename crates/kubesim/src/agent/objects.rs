//! The objects the agent creates in a real cluster, built from a scenario
//! with the simulation's own builders (`sim::objects`), so names, labels,
//! images and templates match what `kubesim serve` creates. Pure: no I/O.

use crate::sim::Scenario;
use crate::sim::objects::{NodePlan, addon_objects, mirror_pod, node_ip, node_object, plan_nodes, workload_objects};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// KWOK manages only the nodes carrying this annotation (value `fake`).
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";
/// nodeInfo changes (JSON field → value) that show after the node's next reboot.
pub const PENDING_ANNOTATION: &str = "kubesim.drover.dev/pending";
/// Set on a node while the agent reboots it; KWOK's heartbeat stage skips it.
pub const REBOOTING_ANNOTATION: &str = "kubesim.drover.dev/rebooting";
/// Set on a mirror pod while the agent restarts it; KWOK's pod-ready stage
/// skips it, so the agent alone decides when it is Ready again.
pub const RESTARTING_ANNOTATION: &str = "kubesim.drover.dev/restarting";
/// Set on a pod a bad version holds unready (`BadVersion`, `effect:
/// PodsUnready`); KWOK's pod-ready stage skips it until the agent removes it.
pub const UNHEALTHY_ANNOTATION: &str = "kubesim.drover.dev/unhealthy";

/// One namespaced (or cluster-scoped) object to create.
#[derive(Debug, Clone)]
pub enum Object {
    Namespace(Namespace),
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    DaemonSet(DaemonSet),
    Pod(Pod),
    Pdb(PodDisruptionBudget),
    Service(Service),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Deployment(_) => "Deployment",
            Object::StatefulSet(_) => "StatefulSet",
            Object::DaemonSet(_) => "DaemonSet",
            Object::Pod(_) => "Pod",
            Object::Pdb(_) => "PodDisruptionBudget",
            Object::Service(_) => "Service",
        }
    }

    /// `kind namespace/name`, for messages.
    pub fn describe(&self) -> String {
        let meta = match self {
            Object::Namespace(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Pdb(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
        };
        let name = meta.name.as_deref().unwrap_or("");
        match meta.namespace.as_deref() {
            Some(ns) => format!("{} {ns}/{name}", self.kind()),
            None => format!("{} {name}", self.kind()),
        }
    }

    fn from_json(v: Value) -> Result<Object, String> {
        let kind = v["kind"].as_str().unwrap_or("").to_string();
        let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
        let bad = |e: serde_json::Error| format!("{kind} {name}: {e}");
        Ok(match kind.as_str() {
            "Namespace" => Object::Namespace(serde_json::from_value(v).map_err(bad)?),
            "Deployment" => Object::Deployment(serde_json::from_value(v).map_err(bad)?),
            "StatefulSet" => Object::StatefulSet(serde_json::from_value(v).map_err(bad)?),
            "DaemonSet" => Object::DaemonSet(serde_json::from_value(v).map_err(bad)?),
            "Pod" => Object::Pod(serde_json::from_value(v).map_err(bad)?),
            "PodDisruptionBudget" => Object::Pdb(serde_json::from_value(v).map_err(bad)?),
            "Service" => Object::Service(serde_json::from_value(v).map_err(bad)?),
            other => return Err(format!("{other} {name}: the agent cannot create this kind")),
        })
    }
}

/// A scenario node as the agent creates it: the Node (metadata and spec)
/// and, separately, the status it then writes through `nodes/status`.
#[derive(Debug, Clone)]
pub struct NodeObjects {
    pub plan: NodePlan,
    pub node: Node,
    /// The whole `status` (nodeInfo, capacity, allocatable, addresses, conditions).
    pub status: Value,
}

/// Everything the agent loads, in creation order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Namespaces the workloads need (plus `kube-system`).
    pub namespaces: Vec<Object>,
    pub nodes: Vec<NodeObjects>,
    /// Add-ons, then user workloads with their Services and PDBs.
    pub objects: Vec<Object>,
}

impl Plan {
    pub fn build(s: &Scenario, now: &str) -> Result<Plan, String> {
        let mut names: BTreeSet<&str> = s.workloads.iter().map(|w| w.namespace.as_str()).collect();
        names.insert("kube-system");
        let namespaces = names
            .into_iter()
            .map(|ns| Object::from_json(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})))
            .collect::<Result<Vec<_>, _>>()?;
        let nodes = plan_nodes(s)
            .into_iter()
            .map(|p| node_objects(p, now))
            .collect::<Result<Vec<_>, _>>()?;
        let mut objects = Vec::new();
        for (_, v) in addon_objects(s)
            .into_iter()
            .chain(s.workloads.iter().flat_map(workload_objects))
        {
            if v["kind"] == "StatefulSet" {
                objects.push(Object::from_json(headless_service(&v))?);
            }
            objects.push(Object::from_json(v)?);
        }
        Ok(Plan {
            namespaces,
            nodes,
            objects,
        })
    }
}

/// The Node to create and the status to write afterwards. The simulation's
/// node object is the base, plus the annotations KWOK needs; capacity and
/// allocatable are 8 CPUs, 32Gi and `maxPods` pods.
pub fn node_objects(plan: NodePlan, now: &str) -> Result<NodeObjects, String> {
    let mut v = node_object(&plan, now);
    let mut status = v
        .as_object_mut()
        .and_then(|o| o.remove("status"))
        .unwrap_or_else(|| json!({}));
    v["metadata"]["annotations"][KWOK_NODE_ANNOTATION] = json!("fake");
    v["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] = json!("0");
    let resources = json!({"cpu": "8", "memory": "32Gi", "pods": plan.max_pods.to_string()});
    status["capacity"] = resources.clone();
    status["allocatable"] = resources;
    let node: Node = serde_json::from_value(v).map_err(|e| format!("node {}: {e}", plan.name))?;
    Ok(NodeObjects { plan, node, status })
}

/// The mirror pods of a node's static pods, owned by the Node `node_uid`.
pub fn mirror_pods(plan: &NodePlan, node_uid: &str) -> Result<Vec<Pod>, String> {
    let ip = node_ip(plan.index);
    plan.static_pods()
        .into_iter()
        .map(|(component, version)| {
            serde_json::from_value(mirror_pod(component, version, &plan.name, node_uid, &ip))
                .map_err(|e| format!("mirror pod {component}-{}: {e}", plan.name))
        })
        .collect()
}

/// The headless Service a StatefulSet's `serviceName` names.
fn headless_service(sts: &Value) -> Value {
    let name = sts["spec"]["serviceName"]
        .as_str()
        .or(sts["metadata"]["name"].as_str())
        .unwrap_or("");
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": sts["metadata"]["namespace"], "labels": sts["metadata"]["labels"]},
        "spec": {"clusterIP": "None", "selector": sts["spec"]["selector"]["matchLabels"]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        Scenario::from_yaml(
            r#"
name: t
nodes:
- {role: control-plane, count: 1}
- role: worker
  count: 2
  labels: {pool: a}
  taints: [{key: dedicated, value: a, effect: NoSchedule}]
  maxPods: 50
workloads:
- {kind: Deployment, name: web, namespace: shop, replicas: 3, pdb: {maxUnavailable: 1}, emptyDir: true, terminationGracePeriodSeconds: 5}
- {kind: StatefulSet, name: db, namespace: shop, replicas: 2, pdb: {minAvailable: 1}}
- {kind: DaemonSet, name: agent, namespace: ops, tolerations: [{operator: Exists}]}
- {kind: Pod, name: solo, nodeName: worker-2, copies: 2, nodeSelector: {pool: a}}
"#,
        )
        .unwrap()
    }

    #[test]
    fn nodes_carry_roles_labels_taints_and_kwok_annotations() {
        let plan = Plan::build(&scenario(), "2025-01-01T00:00:00Z").unwrap();
        let names: Vec<_> = plan.nodes.iter().map(|n| n.plan.name.clone()).collect();
        assert_eq!(names, ["cp-1", "worker-1", "worker-2"]);
        let cp = &plan.nodes[0].node;
        let labels = cp.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "cp-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["node-role.kubernetes.io/control-plane"], "");
        assert_eq!(labels["node-role.kubernetes.io/etcd"], "");
        let ann = cp.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[KWOK_NODE_ANNOTATION], "fake");
        assert_eq!(ann["node.alpha.kubernetes.io/ttl"], "0");
        let taints = cp.spec.as_ref().unwrap().taints.as_ref().unwrap();
        assert_eq!(taints[0].key, "node-role.kubernetes.io/control-plane");
        assert_eq!(taints[0].effect, "NoSchedule");
        assert!(cp.status.is_none(), "status goes through nodes/status");

        let w = &plan.nodes[2];
        let labels = w.node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["pool"], "a");
        assert!(!labels.contains_key("node-role.kubernetes.io/control-plane"));
        let taints = w.node.spec.as_ref().unwrap().taints.as_ref().unwrap();
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0].key, "dedicated");

        let st = &w.status;
        assert_eq!(st["capacity"], json!({"cpu": "8", "memory": "32Gi", "pods": "50"}));
        assert_eq!(st["allocatable"], st["capacity"]);
        assert_eq!(st["nodeInfo"]["kubeletVersion"], "v1.31.4");
        assert_eq!(st["nodeInfo"]["containerRuntimeVersion"], "containerd://1.7.22");
        assert_eq!(st["nodeInfo"]["operatingSystem"], "linux");
        assert!(st["nodeInfo"]["bootID"].as_str().is_some_and(|b| !b.is_empty()));
        assert_eq!(st["addresses"][0], json!({"type": "InternalIP", "address": "10.0.0.4"}));
        assert_eq!(st["addresses"][1], json!({"type": "Hostname", "address": "worker-2"}));
        let conds = st["conditions"].as_array().unwrap();
        let ready = conds.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert!(conds.iter().any(|c| c["type"] == t && c["status"] == "False"), "{t}");
        }
        // It is a valid NodeStatus.
        let _: k8s_openapi::api::core::v1::NodeStatus = serde_json::from_value(st.clone()).unwrap();
    }

    #[test]
    fn mirror_pods_follow_the_contract() {
        let plan = Plan::build(&scenario(), "now").unwrap();
        let pods = mirror_pods(&plan.nodes[0].plan, "uid-1").unwrap();
        let names: Vec<_> = pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(
            names,
            [
                "kube-apiserver-cp-1",
                "kube-controller-manager-cp-1",
                "kube-scheduler-cp-1",
                "etcd-cp-1"
            ]
        );
        let etcd = &pods[3];
        assert_eq!(etcd.metadata.namespace.as_deref(), Some("kube-system"));
        let ann = etcd.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann["kubernetes.io/config.source"], "file");
        assert_eq!(ann["kubernetes.io/config.mirror"], ann["kubernetes.io/config.hash"]);
        let labels = etcd.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["component"], "etcd");
        assert_eq!(labels["tier"], "control-plane");
        let owner = &etcd.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "cp-1", "uid-1")
        );
        let spec = etcd.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("cp-1"));
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some("registry.k8s.io/etcd:v3.5.15")
        );
        assert_eq!(
            spec.tolerations.as_ref().unwrap()[0].operator.as_deref(),
            Some("Exists")
        );
        assert!(mirror_pods(&plan.nodes[1].plan, "uid-2").unwrap().is_empty());
    }

    #[test]
    fn workloads_addons_services_and_pdbs() {
        let plan = Plan::build(&scenario(), "now").unwrap();
        let ns: Vec<_> = plan.namespaces.iter().map(Object::describe).collect();
        assert_eq!(
            ns,
            [
                "Namespace default",
                "Namespace kube-system",
                "Namespace ops",
                "Namespace shop"
            ]
        );
        let all: Vec<_> = plan.objects.iter().map(Object::describe).collect();
        assert_eq!(
            all,
            [
                "DaemonSet kube-system/calico-node",
                "DaemonSet kube-system/kube-proxy",
                "Deployment kube-system/coredns",
                "Deployment kube-system/metrics-server",
                "Deployment shop/web",
                "PodDisruptionBudget shop/web",
                "Service shop/db",
                "StatefulSet shop/db",
                "PodDisruptionBudget shop/db",
                "DaemonSet ops/agent",
                "Pod default/solo-1",
                "Pod default/solo-2",
            ]
        );
        let Object::DaemonSet(proxy) = &plan.objects[1] else {
            panic!()
        };
        let tpl = proxy.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(
            tpl.containers[0].image.as_deref(),
            Some("registry.k8s.io/kube-proxy:v1.31.4")
        );
        let Object::Deployment(web) = &plan.objects[4] else {
            panic!()
        };
        let spec = web.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.termination_grace_period_seconds, Some(5));
        assert!(pod.volumes.as_ref().unwrap()[0].empty_dir.is_some());
        // Like kubesim, no extra not-ready/unreachable tolerations: the real
        // API server's DefaultTolerationSeconds adds them to pods.
        assert!(pod.tolerations.is_none());
        let Object::Pdb(pdb) = &plan.objects[5] else { panic!() };
        let ps = pdb.spec.as_ref().unwrap();
        assert_eq!(
            ps.selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app"],
            "web"
        );
        assert!(ps.max_unavailable.is_some() && ps.min_available.is_none());
        let Object::Service(svc) = &plan.objects[6] else {
            panic!()
        };
        let ss = svc.spec.as_ref().unwrap();
        assert_eq!(ss.cluster_ip.as_deref(), Some("None"));
        assert_eq!(ss.selector.as_ref().unwrap()["app"], "db");
        let Object::Pod(solo) = &plan.objects[11] else { panic!() };
        let spec = solo.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("worker-2"));
        assert_eq!(spec.node_selector.as_ref().unwrap()["pool"], "a");
        assert_eq!(solo.metadata.labels.as_ref().unwrap()["app"], "solo-2");
    }
}
