//! What the controllers keep of each object: the stored object plus the
//! fields they look at, parsed once per change.

use crate::store::Stored;
use serde_json::Value;
use std::sync::Arc;

pub type Key = (String, String);

pub fn key_of(s: &Stored) -> Key {
    (s.namespace.to_string(), s.name.to_string())
}

/// The upgrade contract, read from a pod's environment.
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradeEnv {
    pub component: String,
    pub version: String,
    pub node: String,
    pub reboot: bool,
    /// drover's reboot Job (`DROVER_ACTION=reboot`): the node reboots, no version changes.
    pub reboot_only: bool,
}

#[derive(Debug, Clone)]
pub struct PodView {
    pub stored: Arc<Stored>,
    pub uid: Box<str>,
    pub node: Option<String>,
    /// The node a DaemonSet pod is pinned to by node affinity.
    pub target_node: Option<String>,
    pub phase: String,
    pub ready: bool,
    pub deleting: bool,
    /// The controller owner: kind and uid.
    pub owner: Option<(String, Box<str>)>,
    pub mirror: bool,
    pub upgrade: Option<UpgradeEnv>,
    pub restart_always: bool,
    /// `pod-template-hash` or `controller-revision-hash`.
    pub revision: Option<String>,
    pub grace: i64,
    pub scheduling_failed: bool,
    /// The first container's image (mirror pods carry their version in it).
    pub image: String,
}

impl PodView {
    pub fn parse(stored: Arc<Stored>) -> PodView {
        let v = stored.value();
        let owner = v["metadata"]["ownerReferences"].as_array().and_then(|refs| {
            refs.iter().find(|r| r["controller"] == true).map(|r| {
                (
                    r["kind"].as_str().unwrap_or("").to_string(),
                    Box::from(r["uid"].as_str().unwrap_or("")),
                )
            })
        });
        let ready = v["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        let scheduling_failed = v["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "PodScheduled" && c["status"] == "False"));
        let labels = &v["metadata"]["labels"];
        let revision = labels["pod-template-hash"]
            .as_str()
            .or(labels["controller-revision-hash"].as_str())
            .map(str::to_string);
        let grace = v["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .or(v["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        PodView {
            uid: stored.uid.clone(),
            node: stored.node_name.as_deref().map(str::to_string),
            target_node: affinity_node(&v["spec"]),
            phase: stored.phase.as_deref().unwrap_or("Pending").to_string(),
            ready,
            deleting: stored.deleting,
            owner,
            mirror: !v["metadata"]["annotations"][super::objects::MIRROR].is_null(),
            upgrade: upgrade_env(&v["spec"]),
            restart_always: v["spec"]["restartPolicy"].as_str().unwrap_or("Always") == "Always",
            revision,
            grace,
            scheduling_failed,
            image: v["spec"]["containers"][0]["image"].as_str().unwrap_or("").to_string(),
            stored,
        }
    }

    pub fn key(&self) -> Key {
        key_of(&self.stored)
    }

    pub fn terminal(&self) -> bool {
        matches!(self.phase.as_str(), "Succeeded" | "Failed")
    }

    /// Counts toward a controller's replicas: not terminating, not finished.
    pub fn active(&self) -> bool {
        !self.deleting && !self.terminal()
    }

    /// Healthy in the PDB sense.
    pub fn healthy(&self) -> bool {
        self.ready && !self.deleting && self.phase == "Running"
    }
}

/// `requiredDuringScheduling...matchFields metadata.name In [node]`, as the
/// DaemonSet controller pins its pods.
pub fn affinity_node(spec: &Value) -> Option<String> {
    let terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .as_array()?;
    terms.iter().find_map(|t| {
        t["matchFields"].as_array()?.iter().find_map(|f| {
            (f["key"] == "metadata.name" && f["operator"] == "In")
                .then(|| f["values"][0].as_str().map(str::to_string))
                .flatten()
        })
    })
}

/// The upgrade contract's environment of a pod spec, if it has one.
pub(crate) fn upgrade_env(spec: &Value) -> Option<UpgradeEnv> {
    let containers = spec["containers"].as_array()?;
    for c in containers {
        let Some(env) = c["env"].as_array() else { continue };
        let get = |name: &str| {
            env.iter()
                .find(|e| e["name"] == name)
                .and_then(|e| e["value"].as_str())
                .map(str::to_string)
        };
        if get("DROVER_ACTION").as_deref() == Some("reboot") {
            return Some(UpgradeEnv {
                component: get("DROVER_COMPONENT").unwrap_or_else(|| "reboot".into()),
                version: String::new(),
                node: get("DROVER_NODE").unwrap_or_default(),
                reboot: true,
                reboot_only: true,
            });
        }
        if let (Some(component), Some(version)) = (get("DROVER_COMPONENT"), get("DROVER_VERSION")) {
            return Some(UpgradeEnv {
                component,
                version,
                node: get("DROVER_NODE").unwrap_or_default(),
                reboot: get("DROVER_REBOOT").is_some_and(|r| r.eq_ignore_ascii_case("true")),
                reboot_only: false,
            });
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Clone)]
pub struct NodeView {
    pub stored: Arc<Stored>,
    pub name: String,
    pub uid: Box<str>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    pub max_pods: usize,
    pub control_plane: bool,
    pub etcd: bool,
    pub ip: String,
    pub node_info: Value,
}

impl NodeView {
    pub fn parse(stored: Arc<Stored>) -> NodeView {
        let v = stored.value();
        let taints = v["spec"]["taints"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| Taint {
                        key: t["key"].as_str().unwrap_or("").into(),
                        value: t["value"].as_str().unwrap_or("").into(),
                        effect: t["effect"].as_str().unwrap_or("").into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ready = v["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        let label = |k: &str| stored.labels.iter().any(|(lk, _)| &**lk == k);
        NodeView {
            name: stored.name.to_string(),
            uid: stored.uid.clone(),
            taints,
            unschedulable: v["spec"]["unschedulable"] == true,
            ready,
            max_pods: v["status"]["allocatable"]["pods"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .unwrap_or(110),
            control_plane: label(super::objects::CP_LABEL) || label("node-role.kubernetes.io/master"),
            etcd: label(super::objects::ETCD_LABEL),
            ip: v["status"]["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .and_then(|x| x["address"].as_str())
                .unwrap_or("10.0.0.1")
                .to_string(),
            node_info: v["status"]["nodeInfo"].clone(),
            stored,
        }
    }

    pub fn labels(&self) -> &[(Box<str>, Box<str>)] {
        &self.stored.labels
    }

    pub fn label(&self, k: &str) -> Option<&str> {
        self.stored.labels.iter().find(|(lk, _)| &**lk == k).map(|(_, v)| &**v)
    }

    /// Roles for the recorder: a stacked control-plane node counts in both.
    pub fn roles(&self) -> Vec<&'static str> {
        let mut r = Vec::new();
        if self.control_plane {
            r.push("control-plane");
        }
        if self.etcd {
            r.push("etcd");
        }
        if r.is_empty() {
            r.push("worker");
        }
        r
    }
}

/// A workload object (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, PDB).
#[derive(Debug, Clone)]
pub struct Obj {
    pub stored: Arc<Stored>,
    pub v: Value,
}

impl Obj {
    pub fn parse(stored: Arc<Stored>) -> Obj {
        Obj {
            v: stored.value(),
            stored,
        }
    }
    pub fn uid(&self) -> &str {
        &self.stored.uid
    }
    pub fn name(&self) -> &str {
        &self.stored.name
    }
    pub fn ns(&self) -> &str {
        &self.stored.namespace
    }
    pub fn generation(&self) -> i64 {
        self.v["metadata"]["generation"].as_i64().unwrap_or(1)
    }
    pub fn deleting(&self) -> bool {
        self.stored.deleting
    }
    pub fn replicas(&self) -> i64 {
        self.v["spec"]["replicas"].as_i64().unwrap_or(1)
    }
    pub fn owner_uid(&self) -> Option<&str> {
        self.v["metadata"]["ownerReferences"]
            .as_array()?
            .iter()
            .find(|r| r["controller"] == true)?["uid"]
            .as_str()
    }
}
