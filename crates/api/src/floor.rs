//! The Kubernetes versions drover supports and the APIs it needs, and the
//! judgement of a server against them. The controller asks the server
//! (`/version` and discovery) at start-up and refuses to act on a server
//! this judges unfit. No I/O here.

use std::collections::BTreeSet;

/// The oldest Kubernetes minor drover supports (tested on the real bed).
pub const MIN_MINOR: u32 = 34;
/// The newest Kubernetes minor drover is tested on.
pub const TESTED_MAX_MINOR: u32 = 37;

/// The API resources drover uses, as `(group/version, resource)`; the core
/// group is written `v1`.
pub const REQUIRED: [(&str, &str); 12] = [
    ("v1", "nodes"),
    ("v1", "pods"),
    ("v1", "pods/eviction"),
    ("policy/v1", "poddisruptionbudgets"),
    ("batch/v1", "jobs"),
    ("apps/v1", "deployments"),
    ("apps/v1", "daemonsets"),
    ("apps/v1", "statefulsets"),
    ("coordination.k8s.io/v1", "leases"),
    ("events.k8s.io/v1", "events"),
    ("drover.dev/v1alpha1", "clusterupgrades"),
    ("drover.dev/v1alpha1", "clusterupgrades/status"),
];

/// The supported range, as the docs and the errors say it.
pub fn supported_range() -> String {
    format!("Kubernetes 1.{MIN_MINOR} and newer (tested on 1.{MIN_MINOR} to 1.{TESTED_MAX_MINOR})")
}

/// Major and minor of a server's `/version` (`minor` may carry a `+`, as
/// some distributions write it).
pub fn parse_minor(major: &str, minor: &str) -> Option<(u32, u32)> {
    let digits = |s: &str| s.trim_end_matches('+').parse::<u32>().ok();
    Some((digits(major)?, digits(minor)?))
}

/// Why drover cannot serve this cluster, in one message, or None if it can.
///
/// `git_version` is what the server reports (`v1.37.2`); `served` holds the
/// `(group/version, resource)` pairs its discovery lists.
pub fn judge(git_version: &str, major: &str, minor: &str, served: &BTreeSet<(String, String)>) -> Option<String> {
    let mut problems = Vec::new();
    // Some distributions leave major/minor empty: fall back to gitVersion.
    let from_git = || {
        let core = git_version.trim_start_matches('v');
        let mut parts = core.split(['.', '-', '+']);
        parse_minor(parts.next()?, parts.next()?)
    };
    match parse_minor(major, minor).or_else(from_git) {
        Some((1, m)) if m >= MIN_MINOR => {}
        Some((m, _)) if m > 1 => {}
        Some(_) => problems.push(format!(
            "it is {git_version}, older than drover supports ({})",
            supported_range()
        )),
        None => problems.push(format!(
            "its version {git_version:?} (major {major:?}, minor {minor:?}) cannot be read as a Kubernetes version"
        )),
    }
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|(gv, r)| !served.contains(&(gv.to_string(), r.to_string())))
        .map(|(gv, r)| format!("{gv} {r}"))
        .collect();
    if !missing.is_empty() {
        let crd = missing.iter().any(|m| m.starts_with("drover.dev/"));
        problems.push(format!(
            "it does not serve {} that drover needs{}",
            missing.join(", "),
            if crd {
                " (install the CRD: kubectl apply -k crds/)"
            } else {
                ""
            }
        ));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "drover cannot run against this cluster (Kubernetes {git_version}): {}",
            problems.join("; and ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> BTreeSet<(String, String)> {
        REQUIRED.iter().map(|(g, r)| (g.to_string(), r.to_string())).collect()
    }

    #[test]
    fn a_supported_server_with_every_api_passes() {
        assert_eq!(judge("v1.34.4", "1", "34", &all()), None);
        assert_eq!(judge("v1.37.2", "1", "37+", &all()), None);
    }

    #[test]
    fn an_old_server_is_named_with_the_supported_range() {
        let msg = judge("v1.20.15", "1", "20", &all()).unwrap();
        assert!(msg.contains("v1.20.15"), "{msg}");
        assert!(msg.contains("Kubernetes 1.34 and newer"), "{msg}");
    }

    #[test]
    fn each_missing_api_is_named_in_one_message() {
        let mut served = all();
        served.remove(&("policy/v1".into(), "poddisruptionbudgets".into()));
        served.remove(&("events.k8s.io/v1".into(), "events".into()));
        let msg = judge("v1.20.15", "1", "20", &served).unwrap();
        assert!(msg.contains("policy/v1 poddisruptionbudgets"), "{msg}");
        assert!(msg.contains("events.k8s.io/v1 events"), "{msg}");
        assert!(msg.contains("older than drover supports"), "{msg}");
        assert_eq!(msg.lines().count(), 1, "one message: {msg}");
    }

    #[test]
    fn a_missing_crd_says_how_to_install_it() {
        let mut served = all();
        served.retain(|(g, _)| g != "drover.dev/v1alpha1");
        let msg = judge("v1.37.2", "1", "37", &served).unwrap();
        assert!(msg.contains("drover.dev/v1alpha1 clusterupgrades"), "{msg}");
        assert!(msg.contains("kubectl apply -k crds/"), "{msg}");
    }

    #[test]
    fn an_empty_minor_falls_back_to_the_git_version() {
        assert_eq!(judge("v1.35.1-eks-abc", "", "", &all()), None);
        assert!(
            judge("v1.30.1", "", "", &all())
                .unwrap()
                .contains("older than drover supports")
        );
    }

    #[test]
    fn an_unreadable_version_is_refused() {
        let msg = judge("weird", "x", "", &all()).unwrap();
        assert!(msg.contains("cannot be read"), "{msg}");
    }
}
