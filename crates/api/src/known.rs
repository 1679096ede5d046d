//! Defaults inferred from well-known component names.

use std::collections::BTreeMap;

use crate::spec::{Component, NodeInfoField, NodeTarget, PodImageCheck, Stage, Verify};

pub use crate::spec::KNOWN;

/// The stage of a well-known component, or None for a name drover does not know.
pub fn known_stage(name: &str) -> Option<Stage> {
    KNOWN.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The component's stage: as given, else inferred. None means the spec is invalid.
pub fn stage_of(c: &Component) -> Option<Stage> {
    c.stage.or_else(|| known_stage(&c.name))
}

/// Which nodes a node-level component applies to.
pub fn target_of(c: &Component, stage: Stage) -> NodeTarget {
    c.nodes.unwrap_or(match stage {
        Stage::Etcd => NodeTarget::EtcdMembers,
        Stage::ControlPlane => NodeTarget::ControlPlane,
        _ => NodeTarget::All,
    })
}

/// How the component's live version is read: as given, else by name.
pub fn verify_of(c: &Component) -> Verify {
    if let Some(v) = &c.verify {
        return v.clone();
    }
    let node_info = |f| Verify {
        node_info: Some(f),
        pod: None,
        job_succeeded: None,
    };
    let static_pod = |component: &str| Verify {
        node_info: None,
        pod: Some(PodImageCheck {
            namespace: "kube-system".into(),
            labels: BTreeMap::from([("component".to_string(), component.to_string())]),
            container: None,
        }),
        job_succeeded: None,
    };
    match c.name.as_str() {
        "kubelet" => node_info(NodeInfoField::KubeletVersion),
        "kube-proxy" if c.upgrade.workload.is_none() => node_info(NodeInfoField::KubeProxyVersion),
        "containerd" | "docker" | "cri-o" | "crio" => node_info(NodeInfoField::ContainerRuntimeVersion),
        "etcd" | "kube-apiserver" | "kube-controller-manager" | "kube-scheduler" => static_pod(&c.name),
        _ => Verify {
            node_info: None,
            pod: None,
            job_succeeded: Some(true),
        },
    }
}
