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
    // `1.11` or `1.11-rc.1`: add the missing patch.
    let (core, rest) = match s.find(['-', '+']) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    if core.split('.').count() == 2 {
        return semver::Version::parse(&format!("{core}.0{rest}")).ok();
    }
    None
}

/// Whether a live version (as a node or an image tag reports it) is the desired one.
pub fn same_version(live: &str, desired: &str) -> bool {
    match (parse_version(live), parse_version(desired)) {
        (Some(a), Some(b)) => a.major == b.major && a.minor == b.minor && a.patch == b.patch && a.pre == b.pre,
        _ => live.trim() == desired.trim(),
    }
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

/// `image` with its tag replaced by `tag`.
pub fn with_tag(image: &str, tag: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let slash = without_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let repo = match without_digest[slash..].find(':') {
        Some(i) => &without_digest[..slash + i],
        None => without_digest,
    };
    format!("{repo}:{tag}")
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
