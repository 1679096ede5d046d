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

#[cfg(test)]
mod tests {
    use super::*;

    /// A component as a spec would give it: a Job, or a DaemonSet when `workload`.
    fn component(name: &str, workload: bool) -> Component {
        let upgrade = if workload {
            serde_json::json!({"workload": {"kind": "DaemonSet", "namespace": "kube-system", "name": name}})
        } else {
            serde_json::json!({"job": {"image": "example.com/upgrade:1"}})
        };
        serde_json::from_value(serde_json::json!({"name": name, "version": "v1.32.0", "upgrade": upgrade}))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn os_text(field: NodeInfoField, prefix: Option<&str>, regex: Option<&str>) -> Verify {
        Verify {
            node_info: Some(field),
            pod: None,
            job_succeeded: None,
            match_: (prefix.is_some() || regex.is_some()).then(|| VersionMatch {
                prefix: prefix.map(Into::into),
                regex: regex.map(Into::into),
            }),
        }
    }

    /// docs/api.md: `{regex}` (RE2 syntax, matched anywhere; anchor it).
    #[test]
    fn a_regex_matches_anywhere_in_the_live_text_unless_anchored() {
        let os = os_text(NodeInfoField::OsImage, None, Some(r"24\.04"));
        assert!(live_matches(&os, "24.04.1", "Ubuntu 24.04.1 LTS"), "matched anywhere");
        assert!(!live_matches(&os, "24.04.1", "Ubuntu 22.04.4 LTS"));
        // Unanchored, a kernel regex also matches a longer release: hence "anchor it".
        let loose = os_text(NodeInfoField::KernelVersion, None, Some(r"6\.8\.0-45"));
        assert!(live_matches(&loose, "6.8.0-45-generic", "6.8.0-450-generic"));
        let anchored = os_text(NodeInfoField::KernelVersion, None, Some(r"^6\.8\.0-45-generic$"));
        assert!(live_matches(&anchored, "6.8.0-45-generic", "6.8.0-45-generic"));
        assert!(!live_matches(&anchored, "6.8.0-45-generic", "6.8.0-450-generic"));
        assert!(!live_matches(&anchored, "6.8.0-45-generic", "x6.8.0-45-generic"));
        // The regex decides, not the version.
        assert!(live_matches(&os, "anything", "Ubuntu 24.04.1 LTS"));
    }

    /// docs/api.md: `{prefix}` (the live text starts with it at a word
    /// boundary: "Ubuntu 24.04" matches "Ubuntu 24.04.1 LTS", not "Ubuntu
    /// 24.041"); without `match`, the version itself as such a prefix
    /// (`6.8.0-45` matches `6.8.0-45-generic`, not `6.8.0-450`).
    #[test]
    fn a_prefix_and_the_default_match_at_a_word_boundary() {
        let os = os_text(NodeInfoField::OsImage, Some("Ubuntu 24.04"), None);
        assert!(live_matches(&os, "24.04.1", "Ubuntu 24.04.1 LTS"));
        assert!(live_matches(&os, "24.04.1", "Ubuntu 24.04"));
        assert!(!live_matches(&os, "24.04.1", "Ubuntu 24.041"));
        assert!(
            !live_matches(&os, "24.04.1", "Kubuntu 24.04.1 LTS"),
            "at the start only"
        );
        let kernel = os_text(NodeInfoField::KernelVersion, None, None);
        assert!(live_matches(&kernel, "6.8.0-45", "6.8.0-45-generic"));
        assert!(!live_matches(&kernel, "6.8.0-45", "6.8.0-450-generic"));
        // Other checks compare semantic versions; a match is not consulted.
        let kubelet = Verify {
            match_: Some(VersionMatch {
                prefix: Some("v9".into()),
                regex: None,
            }),
            ..os_text(NodeInfoField::KubeletVersion, None, None)
        };
        assert!(live_matches(&kubelet, "v1.32.0", "v1.32.0"));
        assert!(!live_matches(&kubelet, "v1.32.0", "v1.32.1"));
        assert!(!live_matches(&kubelet, "v1.32.0", "v9.0.0"));
    }

    /// docs/api.md's well-known names and docs/user-guide.md "Defaults by
    /// name: `kubelet`/`kube-proxy` read `nodeInfo`, runtimes read
    /// `containerRuntimeVersion`, `etcd` and the control-plane components read
    /// their static pod's image tag (`component=<name>` in `kube-system`),
    /// anything else trusts the Job".
    #[test]
    fn verification_defaults_by_well_known_name() {
        use NodeInfoField::*;
        let node_info = |name: &str, workload: bool| verify_of(&component(name, workload)).node_info;
        for (name, field) in [
            ("kubelet", KubeletVersion),
            ("kube-proxy", KubeProxyVersion),
            ("containerd", ContainerRuntimeVersion),
            ("docker", ContainerRuntimeVersion),
            ("cri-o", ContainerRuntimeVersion),
            ("os", OsImage),
            ("kernel", KernelVersion),
        ] {
            let v = verify_of(&component(name, false));
            assert_eq!(
                (v.node_info, v.pod.is_none(), v.job_succeeded, v.match_.is_none()),
                (Some(field), true, None, true),
                "{name}"
            );
        }
        for name in ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
            let v = verify_of(&component(name, false));
            let pod = v.pod.unwrap_or_else(|| panic!("{name} reads its static pod"));
            assert_eq!(pod.namespace, "kube-system", "{name}");
            assert_eq!(
                pod.labels,
                BTreeMap::from([("component".to_string(), name.to_string())]),
                "{name}"
            );
            assert_eq!(
                (pod.container, v.node_info, v.job_succeeded),
                (None, None, None),
                "{name}"
            );
        }
        // Anything else trusts the Job, and so does kube-proxy run as a workload.
        for (name, workload) in [("my-agent", false), ("calico", false), ("kube-proxy", true)] {
            let v = verify_of(&component(name, workload));
            assert_eq!(
                (v.node_info, v.pod.is_none(), v.job_succeeded),
                (None, true, Some(true)),
                "{name}"
            );
        }
        assert_eq!(node_info("kube-proxy", true), None);
        // A verify given in the spec wins.
        let mut etcd = component("etcd", false);
        etcd.verify = Some(Verify {
            node_info: None,
            pod: None,
            job_succeeded: Some(true),
            match_: None,
        });
        assert_eq!(verify_of(&etcd), etcd.verify.clone().unwrap());
    }
}
