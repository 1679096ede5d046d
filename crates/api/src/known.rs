//! Defaults inferred from well-known component names.

use std::collections::BTreeMap;

use crate::spec::{Component, NodeInfoField, NodeTarget, PodImageCheck, Stage, Verify, VersionMatch};

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
        match_: None,
    };
    let static_pod = |component: &str| Verify {
        node_info: None,
        pod: Some(PodImageCheck {
            namespace: "kube-system".into(),
            labels: BTreeMap::from([("component".to_string(), component.to_string())]),
            container: None,
        }),
        job_succeeded: None,
        match_: None,
    };
    match c.name.as_str() {
        "kubelet" => node_info(NodeInfoField::KubeletVersion),
        "kube-proxy" if c.upgrade.workload.is_none() => node_info(NodeInfoField::KubeProxyVersion),
        "containerd" | "docker" | "cri-o" | "crio" => node_info(NodeInfoField::ContainerRuntimeVersion),
        "os" => node_info(NodeInfoField::OsImage),
        "kernel" => node_info(NodeInfoField::KernelVersion),
        "etcd" | "kube-apiserver" | "kube-controller-manager" | "kube-scheduler" => static_pod(&c.name),
        _ => Verify {
            node_info: None,
            pod: None,
            job_succeeded: Some(true),
            match_: None,
        },
    }
}

/// Whether a component's version is OS text rather than a semantic version:
/// it is verified by `nodeInfo.osImage` or `nodeInfo.kernelVersion`
/// (explicitly, or as the well-known `os` and `kernel`). Such versions are
/// matched as text (`verify.match`) and take no part in the version policy
/// (skew, downgrade, pre-release).
pub fn is_os_text(c: &Component) -> bool {
    c.upgrade.job.is_some()
        && matches!(
            verify_of(c).node_info,
            Some(NodeInfoField::OsImage | NodeInfoField::KernelVersion)
        )
}

/// Whether `live`, as the component's verification reads it, is the
/// component's desired version. The one test of "already there" for the
/// planner, the status and verification.
pub fn satisfied(c: &Component, live: &str) -> bool {
    if c.upgrade.job.is_none() {
        return crate::version::same_version(live, &c.version);
    }
    live_matches(&verify_of(c), &c.version, live)
}

/// Whether `live`, read by `verify`, is `version`: semantic versions
/// compare as versions; OS text (osImage, kernelVersion) by `verify.match`,
/// else as a prefix at a word boundary.
pub fn live_matches(verify: &Verify, version: &str, live: &str) -> bool {
    if !matches!(
        verify.node_info,
        Some(NodeInfoField::OsImage | NodeInfoField::KernelVersion)
    ) {
        return crate::version::same_version(live, version);
    }
    match verify.match_.as_ref() {
        Some(VersionMatch { regex: Some(r), .. }) => regex::Regex::new(r).is_ok_and(|re| re.is_match(live)),
        Some(VersionMatch { prefix: Some(p), .. }) => crate::version::prefix_at_boundary(live, p),
        _ => crate::version::prefix_at_boundary(live, version),
    }
}
