//! Version rules: the Kubernetes version-skew policy, downgrades and
//! pre-releases. Checked against the spec and the versions nodes run now.

use drover_api::version::{newer_than, parse_version};
use drover_api::{ClusterUpgradeSpec, SkewPolicy};
use semver::Version;

use crate::observe::ObservedNode;

pub const API_SERVER: &str = "kube-apiserver";
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const SCHEDULER: &str = "kube-scheduler";
pub const KUBELET: &str = "kubelet";
pub const KUBE_PROXY: &str = "kube-proxy";

/// One refused version change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VersionViolation {
    pub component: String,
    pub message: String,
}

/// How many minor versions each component may be older than the API server.
const OLDER_ALLOWED: [(&str, u64); 4] = [(KUBELET, 3), (KUBE_PROXY, 3), (CONTROLLER_MANAGER, 1), (SCHEDULER, 1)];

/// Why returning `component` to `prev` (a rollback) breaks the skew policy
/// against the oldest kube-apiserver the nodes run, if it does.
pub(crate) fn return_refused(component: &str, prev: &str, nodes: &[ObservedNode]) -> Option<String> {
    let (_, older) = OLDER_ALLOWED.iter().find(|(name, _)| *name == component)?;
    let (api, _) = live(nodes.iter(), API_SERVER).into_iter().next()?;
    let prev = parse_version(prev)?;
    (api.major == prev.major && api.minor > prev.minor + older).then(|| {
        format!(
            "{component} {} would be {} minor versions older than the oldest kube-apiserver ({}); the skew policy allows {older}",
            show(&prev),
            api.minor - prev.minor,
            show(&api)
        )
    })
}

fn minor(v: &Version) -> (u64, u64) {
    (v.major, v.minor)
}

fn show(v: &Version) -> String {
    format!("v{}.{}", v.major, v.minor)
}

/// The parsed live versions of `component` over `nodes`, with the node names.
fn live<'a>(nodes: impl Iterator<Item = &'a ObservedNode>, component: &str) -> Vec<(Version, &'a str)> {
    let mut out: Vec<_> = nodes
        .filter_map(|n| {
            let v = parse_version(n.versions.get(component)?)?;
            Some((v, n.name.as_str()))
        })
        .collect();
    out.sort();
    out
}

/// Check the spec's versions. `in_scope` are the nodes the spec selects,
/// `all` every node (out-of-scope nodes keep their versions, so they count
/// for skew). `workload_versions` are the live versions of cluster-level components.
pub fn check(
    spec: &ClusterUpgradeSpec,
    in_scope: &[&ObservedNode],
    all: &[ObservedNode],
    workload_versions: &dyn Fn(&str) -> Option<String>,
    targets_node: &dyn Fn(&drover_api::Component, &ObservedNode) -> bool,
) -> Vec<VersionViolation> {
    let mut out = Vec::new();
    let policy = &spec.version_policy;
    let desired = |name: &str| -> Option<Version> {
        spec.components
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| parse_version(&c.version))
    };

    for (i, c) in spec.components.iter().enumerate() {
        // OS and kernel text is no semantic version: no policy applies to it.
        if drover_api::known::is_os_text(c) {
            continue;
        }
        let Some(want) = parse_version(&c.version) else {
            continue;
        };
        let violation = |message: String| VersionViolation {
            component: c.name.clone(),
            message,
        };
        if !want.pre.is_empty() && !policy.allow_prerelease {
            out.push(violation(format!(
                "spec.components[{i}].version: {} {} is a pre-release; set spec.versionPolicy.allowPrerelease: true to accept it",
                c.name, c.version
            )));
        }
        if policy.allow_downgrade {
            continue;
        }
        if c.upgrade.workload.is_some() {
            if let Some(live) = workload_versions(&c.name).filter(|v| newer_than(v, &c.version)) {
                out.push(violation(format!(
                    "spec.components[{i}].version: {} {} is older than the {live} its workload runs now; downgrades need spec.versionPolicy.allowDowngrade: true",
                    c.name, c.version
                )));
            }
            continue;
        }
        let newer: Vec<&str> = {
            in_scope
                .iter()
                .filter(|n| targets_node(c, n))
                .filter(|n| n.versions.get(&c.name).is_some_and(|v| newer_than(v, &c.version)))
                .map(|n| n.name.as_str())
                .collect()
        };
        if !newer.is_empty() {
            out.push(violation(format!(
                "spec.components[{i}].version: {} {} is older than the version {} {} now ({}); downgrades need spec.versionPolicy.allowDowngrade: true",
                c.name,
                c.version,
                newer.len(),
                if newer.len() == 1 { "node runs" } else { "nodes run" },
                newer.iter().take(3).copied().collect::<Vec<_>>().join(", ")
            )));
        }
    }

    if policy.skew == SkewPolicy::Ignore {
        return out;
    }

    let api_live = live(all.iter(), API_SERVER);
    let api_desired = desired(API_SERVER);
    // The API server version everything else is held against once the control plane is done.
    let api_target = api_desired.clone().or_else(|| api_live.first().map(|(v, _)| v.clone()));

    if let (Some(want), Some((oldest, node))) = (&api_desired, api_live.first()) {
        let v = |message: String| VersionViolation {
            component: API_SERVER.into(),
            message,
        };
        if want.major != oldest.major {
            out.push(v(format!(
                "kube-apiserver {}: a change of major version (from {} on {node}) is not supported",
                show(want),
                show(oldest)
            )));
        } else if want.minor > oldest.minor + 1 {
            out.push(v(format!(
                "kube-apiserver {} would skip a minor version: {node} runs {}; upgrade to v{}.{} first",
                show(want),
                show(oldest),
                oldest.major,
                oldest.minor + 1
            )));
        }
    }

    let Some(api) = api_target else { return out };
    let (api_major, api_minor) = minor(&api);
    let within = |v: &Version, older: u64| -> Result<(), String> {
        if minor(v) > (api_major, api_minor) {
            Err(format!("newer than kube-apiserver {}", show(&api)))
        } else if v.major != api_major || api_minor - v.minor > older {
            Err(format!(
                "more than {older} minor versions older than kube-apiserver {}",
                show(&api)
            ))
        } else {
            Ok(())
        }
    };
    for (name, older) in OLDER_ALLOWED {
        if let Some(want) = desired(name) {
            if let Err(why) = within(&want, older) {
                out.push(VersionViolation {
                    component: name.into(),
                    message: format!("{name} {}: {why}; the skew policy allows {name} up to {older} minor versions older than the API server, never newer", show(&want)),
                });
            }
            // Nodes the spec does not reach keep their version.
            let untouched = all.iter().filter(|n| !in_scope.iter().any(|s| s.name == n.name));
            for (v, node) in live(untouched, name) {
                if let Err(why) = within(&v, older) {
                    out.push(VersionViolation {
                        component: name.into(),
                        message: format!(
                            "{name} {} on {node} (outside spec.nodeSelector) would be {why}",
                            show(&v)
                        ),
                    });
                    break;
                }
            }
        } else if api_desired.is_some() {
            // Not upgraded by this spec: what runs now must fit the new API server.
            for (v, node) in live(all.iter(), name) {
                if let Err(why) = within(&v, older) {
                    out.push(VersionViolation {
                        component: name.into(),
                        message: format!(
                            "{name} {} on {node} would be {why}; add {name} to spec.components",
                            show(&v)
                        ),
                    });
                    break;
                }
            }
        }
    }
    out
}
