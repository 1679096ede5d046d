//! Component versions as people and nodes write them.

/// Parse a component version leniently: a leading `v`, a runtime scheme
/// (`containerd://1.7.22`) and a distribution suffix after `+` are accepted;
/// a missing patch (`1.11`) reads as `.0`.
pub fn parse_version(raw: &str) -> Option<semver::Version> {
    let s = raw.trim();
    let s = s.rsplit("://").next().unwrap_or(s);
    let s = s.strip_prefix('v').unwrap_or(s);
    if let Ok(v) = semver::Version::parse(s) {
        return Some(v);
    }
    // `1.11` or `1.11-rc.1`: add the missing patch; Docker's `19.03`: read
    // the zero-padded month as a number (Docker's nodes report `19.3.15`).
    let (core, rest) = match s.find(['-', '+']) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let parts: Vec<u64> = core.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if !core
        .split('.')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    match parts[..] {
        [major, minor] => semver::Version::parse(&format!("{major}.{minor}.0{rest}")).ok(),
        [major, minor, patch] => semver::Version::parse(&format!("{major}.{minor}.{patch}{rest}")).ok(),
        _ => None,
    }
}

/// Whether `raw` names a series rather than a release: two parts, no
/// patch (`20.10`, `v3.28`; a runtime scheme and `v` aside).
pub fn is_series(raw: &str) -> bool {
    let s = raw.trim();
    let s = s.rsplit("://").next().unwrap_or(s);
    let s = s.strip_prefix('v').unwrap_or(s);
    let core = s.split(['-', '+']).next().unwrap_or(s);
    core.split('.').count() == 2
}

/// Whether a live version (as a node or an image tag reports it) is the
/// desired one. A two-part desired version is a series: `20.10` is met by
/// `docker://20.10.24` and by `20.10` itself, not by `20.1.5` or `20.100.0`.
/// Build metadata never counts; a pre-release must match.
pub fn same_version(live: &str, desired: &str) -> bool {
    match (parse_version(live), parse_version(desired)) {
        (Some(a), Some(b)) if is_series(desired) => a.major == b.major && a.minor == b.minor && a.pre == b.pre,
        (Some(a), Some(b)) => a.major == b.major && a.minor == b.minor && a.patch == b.patch && a.pre == b.pre,
        _ => live.trim() == desired.trim(),
    }
}

/// Whether `live` is newer than `desired` (a downgrade to go from live to
/// desired). Against a series only the major and minor count: `20.10.24`
/// is not newer than `20.10`, `23.0.1` is. Unparseable versions are never newer.
pub fn newer_than(live: &str, desired: &str) -> bool {
    let (Some(a), Some(b)) = (parse_version(live), parse_version(desired)) else {
        return false;
    };
    if is_series(desired) {
        return (a.major, a.minor) > (b.major, b.minor);
    }
    let strip = |v: &semver::Version| semver::Version {
        build: semver::BuildMetadata::EMPTY,
        ..v.clone()
    };
    strip(&a) > strip(&b)
}

/// An image's repository: the reference without tag and digest
/// (`docker.io/calico/node:v3.28.1` → `docker.io/calico/node`).
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let slash = without_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match without_digest[slash..].find(':') {
        Some(i) => &without_digest[..slash + i],
        None => without_digest,
    }
}

/// Whether `image`'s repository is `repository`, or ends with it after a
/// '/' (`calico/node` matches `docker.io/calico/node:v3.28.1`, not
/// `docker.io/mycalico/node`).
pub fn repository_matches(image: &str, repository: &str) -> bool {
    let repo = image_repository(image);
    repo == repository || repo.strip_suffix(repository).is_some_and(|head| head.ends_with('/'))
}

/// Whether `live` starts with `prefix` and the prefix ends at a word
/// boundary: at the end of `live`, or before a character that is not a
/// letter or digit (`6.8.0-45` matches `6.8.0-45-generic`, not `6.8.0-450`;
/// `Ubuntu 24.04` matches `Ubuntu 24.04.1 LTS`). Surrounding spaces are ignored.
pub fn prefix_at_boundary(live: &str, prefix: &str) -> bool {
    let (live, prefix) = (live.trim(), prefix.trim());
    if prefix.is_empty() {
        return false;
    }
    match live.strip_prefix(prefix) {
        Some(rest) => rest
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric() || !prefix.chars().last().is_some_and(char::is_alphanumeric)),
        None => false,
    }
}

/// The tag part of an image reference (`registry:5000/calico/node:v3.28.1` → `v3.28.1`).
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':').map(|(_, tag)| tag)
}

/// `image` with its tag replaced by `tag` (and any digest dropped).
pub fn with_tag(image: &str, tag: &str) -> String {
    format!("{}:{tag}", image_repository(image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_nodes_report() {
        assert_eq!(parse_version("v1.31.2").unwrap().to_string(), "1.31.2");
        assert_eq!(parse_version("containerd://1.7.22").unwrap().to_string(), "1.7.22");
        assert_eq!(parse_version("1.11").unwrap().to_string(), "1.11.0");
        assert_eq!(parse_version("v1.32.0-rc.1").unwrap().pre.as_str(), "rc.1");
        assert!(parse_version("latest").is_none());
    }

    #[test]
    fn build_metadata_does_not_make_versions_differ() {
        assert!(same_version("v1.31.2+k3s1", "v1.31.2"));
        assert!(same_version("containerd://1.7.22", "1.7.22"));
        assert!(!same_version("v1.31.2", "v1.31.3"));
        assert!(!same_version("v1.32.0-rc.1", "v1.32.0"));
    }

    #[test]
    fn a_two_part_version_is_a_series() {
        assert!(same_version("docker://20.10.24", "20.10"));
        assert!(same_version("20.10", "20.10"));
        assert!(same_version("v3.28.1", "v3.28"));
        assert!(!same_version("docker://20.1.5", "20.10"));
        assert!(!same_version("docker://20.100.0", "20.10"));
        assert!(!same_version("docker://23.0.1", "20.10"));
        assert!(!same_version("20.10.0-rc.1", "20.10"));
        // A three-part desired version still wants that release.
        assert!(!same_version("20.10", "20.10.24"));
        assert!(is_series("docker://20.10") && is_series("v3.28") && !is_series("20.10.24"));
        // Docker's year.month series, as Kubespray writes them.
        assert_eq!(parse_version("19.03").unwrap().to_string(), "19.3.0");
        assert!(same_version("docker://19.3.15", "19.03"));
        assert!(newer_than("docker://19.3.15", "18.09"));
        assert!(!newer_than("docker://19.3.15", "19.03"));
    }

    #[test]
    fn newer_than_a_series_counts_major_and_minor_only() {
        assert!(!newer_than("docker://20.10.24", "20.10"));
        assert!(newer_than("docker://23.0.1", "20.10"));
        assert!(newer_than("20.11.0", "20.10"));
        assert!(!newer_than("19.3.15", "20.10"));
        assert!(newer_than("v3.29.1", "v3.29.0"));
        assert!(!newer_than("v1.31.2+k3s1", "v1.31.2"));
        assert!(!newer_than("latest", "1.0.0"));
    }

    #[test]
    fn repositories_match_at_a_path_boundary() {
        assert_eq!(
            image_repository("docker.io/calico/node:v3.28.1"),
            "docker.io/calico/node"
        );
        assert_eq!(
            image_repository("localhost:5000/calico/node"),
            "localhost:5000/calico/node"
        );
        assert_eq!(image_repository("calico/cni:v3.28.1@sha256:abc"), "calico/cni");
        assert!(repository_matches("docker.io/calico/node:v3.28.1", "calico/node"));
        assert!(repository_matches("calico/node:v3.28.1", "calico/node"));
        assert!(repository_matches(
            "localhost:5000/mirror/calico/node:v3.28.1",
            "calico/node"
        ));
        assert!(repository_matches(
            "docker.io/calico/node:v3.28.1",
            "docker.io/calico/node"
        ));
        assert!(!repository_matches("docker.io/mycalico/node:v3.28.1", "calico/node"));
        assert!(!repository_matches(
            "docker.io/calico/node-driver:v3.28.1",
            "calico/node"
        ));
        assert!(!repository_matches("docker.io/calico/cni:v3.28.1", "calico/node"));
    }

    #[test]
    fn os_text_matches_as_a_prefix_at_a_word_boundary() {
        assert!(prefix_at_boundary("Ubuntu 24.04.1 LTS", "Ubuntu 24.04"));
        assert!(prefix_at_boundary("Ubuntu 24.04", "Ubuntu 24.04"));
        assert!(!prefix_at_boundary("Ubuntu 24.041 LTS", "Ubuntu 24.04"));
        assert!(prefix_at_boundary("6.8.0-45-generic", "6.8.0-45"));
        assert!(prefix_at_boundary("6.8.0-45-generic", "6.8.0-45-generic"));
        assert!(!prefix_at_boundary("6.8.0-450-generic", "6.8.0-45"));
        assert!(!prefix_at_boundary("6.8.0-44-generic", "6.8.0-45"));
        // A prefix that itself ends in a separator needs no boundary after it.
        assert!(prefix_at_boundary("Ubuntu 24.04.1 LTS", "Ubuntu 24."));
        assert!(!prefix_at_boundary("Ubuntu 24.04", ""));
    }

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("registry.k8s.io/kube-apiserver:v1.31.2"), Some("v1.31.2"));
        assert_eq!(image_tag("localhost:5000/calico/node:v3.28.1"), Some("v3.28.1"));
        assert_eq!(image_tag("localhost:5000/calico/node"), None);
        assert_eq!(
            with_tag("localhost:5000/calico/node:v3.28.1", "v3.29.0"),
            "localhost:5000/calico/node:v3.29.0"
        );
        assert_eq!(with_tag("coredns/coredns", "1.11.3"), "coredns/coredns:1.11.3");
        assert_eq!(
            with_tag("coredns/coredns:1.11.1@sha256:abc", "1.11.3"),
            "coredns/coredns:1.11.3"
        );
    }
}

/// A live version as a spec writes it: without the runtime's scheme
/// (`containerd://1.7.22` is `1.7.22`, `docker://20.10.24` is `20.10.24`),
/// trimmed. What a rollback hands its Job as DROVER_VERSION.
pub fn as_spec_version(live: &str) -> String {
    let s = live.trim();
    s.rsplit_once("://").map(|(_, v)| v).unwrap_or(s).to_string()
}

#[cfg(test)]
mod spec_version_tests {
    use super::as_spec_version;

    #[test]
    fn a_runtime_version_loses_its_scheme_and_others_stay_as_they_are() {
        assert_eq!(as_spec_version("containerd://1.7.22"), "1.7.22");
        assert_eq!(as_spec_version("docker://20.10.24 "), "20.10.24");
        assert_eq!(as_spec_version("v1.31.4"), "v1.31.4");
        assert_eq!(as_spec_version("Ubuntu 24.04.1 LTS"), "Ubuntu 24.04.1 LTS");
    }
}
