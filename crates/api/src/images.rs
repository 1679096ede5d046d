//! The upgrade-image allowlist (`drover run --allowed-images`): which images
//! a ClusterUpgrade may run as drover's Jobs (privileged, with the host's
//! root, on every node). Pure: the binary parses the list, the planner
//! refuses a spec naming another image (`ImageNotAllowed`).
//!
//! A pattern names repositories, never tags or digests, and is written in
//! full, registry first:
//!
//! - `registry.example.com/drover-upgrade`: exactly that repository, any tag
//!   or digest;
//! - `registry.example.com/upgrades/*`: every repository below
//!   `registry.example.com/upgrades/` (`…/upgrades/containerd`,
//!   `…/upgrades/a/b`), split at `/` only: not `…/upgrades-evil/x`, nor
//!   `…/upgrades` itself;
//! - `registry.example.com/*`: every repository of that registry.
//!
//! The registry is the host (with its `:port`, if the image names one) and
//! must look like one: a `.` or a port in it, or `localhost`. `*` is allowed
//! only as the whole last segment; there is no other wildcard and no regex.
//!
//! An image is compared by its repository, after the normalisation every
//! container runtime applies: the digest and tag are dropped, a reference
//! without a registry is on `docker.io`, and a one-segment `docker.io` path
//! is under `library/` (`busybox:1.37` is `docker.io/library/busybox`).
//! Nothing else is rewritten: `registry.example.com:443/x` and
//! `registry.example.com/x` are different registries, and so are
//! `index.docker.io` and `docker.io`. A pattern must already be in that
//! normal form (`docker.io/library/busybox`, not `busybox` or
//! `docker.io/busybox`), so the same list means the same thing to drover and
//! to the ValidatingAdmissionPolicy in `deploy/optional/image-policy`, which
//! compares the same strings.

use std::fmt;

use crate::ClusterUpgradeSpec;

/// The registry of an image reference that names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// One allowlist entry, as written (it is already in normal form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePattern {
    text: String,
}

impl ImagePattern {
    /// Parse one pattern; the error says what is wrong and what to write.
    pub fn parse(text: &str) -> Result<ImagePattern, String> {
        let bad = |why: String| Err(format!("image pattern {text:?}: {why}"));
        if text.contains('@') {
            return bad("a pattern names repositories, not digests: drop the @… part".into());
        }
        let segments: Vec<&str> = text.split('/').collect();
        let registry = segments[0];
        if segments.len() == 1 && looks_like_registry(registry) {
            return bad(format!(
                "it names a registry and no repository: write {registry}/* for every repository of it"
            ));
        }
        if segments.len() < 2 || !looks_like_registry(registry) {
            let example = if segments.len() == 1 {
                format!("{DEFAULT_REGISTRY}/library/{text}")
            } else {
                format!("{DEFAULT_REGISTRY}/{text}")
            };
            return bad(format!(
                "it must start with a registry host (with a '.' or a :port, or localhost), such as {example} or registry.example.com/{}",
                segments[segments.len() - 1]
            ));
        }
        if !valid_registry(registry) {
            return bad(format!(
                "{registry:?} is not a registry host: lowercase DNS labels separated by '.', an optional :port"
            ));
        }
        let path = &segments[1..];
        for (i, s) in path.iter().enumerate() {
            let last = i == path.len() - 1;
            if *s == "*" && last {
                continue;
            }
            if s.contains('*') {
                return bad("'*' may only be the whole last segment (registry.example.com/upgrades/*)".into());
            }
            if s.contains(':') {
                return bad("a pattern names repositories, not tags: drop the :… part".into());
            }
            if !valid_segment(s) {
                return bad(format!(
                    "{s:?} is not a repository path segment: lowercase letters and digits, separated by '.', '_' or '-'"
                ));
            }
        }
        if registry == DEFAULT_REGISTRY && path.len() == 1 && path[0] != "*" {
            return bad(format!(
                "Docker Hub's one-segment names live under library/: write {DEFAULT_REGISTRY}/library/{}",
                path[0]
            ));
        }
        Ok(ImagePattern { text: text.into() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the normalised repository `repo` (see [`repository`]) matches.
    pub fn matches_repository(&self, repo: &str) -> bool {
        match self.text.strip_suffix('*') {
            // Keeps the '/', so the prefix ends at a path boundary.
            Some(prefix) => repo.starts_with(prefix) && repo.len() > prefix.len(),
            None => repo == self.text,
        }
    }
}

impl fmt::Display for ImagePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The allowlist: at least one pattern. drover without one allows every image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedImages {
    patterns: Vec<ImagePattern>,
}

impl AllowedImages {
    /// Patterns separated by commas, spaces or newlines (a flag value or a
    /// file); empty entries are skipped, and an empty list is an error (it
    /// would refuse everything, and was surely not meant).
    pub fn parse(text: &str) -> Result<AllowedImages, String> {
        let mut patterns = Vec::new();
        let mut problems = Vec::new();
        for item in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            match ImagePattern::parse(item) {
                Ok(p) if !patterns.contains(&p) => patterns.push(p),
                Ok(_) => {}
                Err(e) => problems.push(e),
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        if patterns.is_empty() {
            return Err("the list of allowed images names no pattern (leave the flag out to allow every image)".into());
        }
        Ok(AllowedImages { patterns })
    }

    pub fn patterns(&self) -> &[ImagePattern] {
        &self.patterns
    }

    /// Whether `image` (a reference of the spec's form) is allowed.
    pub fn allows(&self, image: &str) -> bool {
        let repo = repository(image);
        self.patterns.iter().any(|p| p.matches_repository(&repo))
    }

    /// One problem per image field of `spec` the list does not allow, each
    /// naming the field, the image and the patterns allowed.
    pub fn refused_fields(&self, spec: &ClusterUpgradeSpec) -> Vec<String> {
        let mut fields: Vec<(String, &str)> = spec
            .components
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let job = c.upgrade.job.as_ref()?;
                Some((format!("spec.components[{i}].upgrade.job.image"), job.image.as_str()))
            })
            .collect();
        if let Some(b) = &spec.backup {
            fields.push(("spec.backup.image".into(), b.image.as_str()));
        }
        // The reboot Job runs privileged with the host's root, as the upgrade Jobs do.
        if let Some(image) = &spec.reboot.image {
            fields.push(("spec.reboot.image".into(), image.as_str()));
        }
        // Hook Jobs run on the node too, possibly privileged.
        if let Some(h) = &spec.hooks.pre_drain {
            fields.push(("spec.hooks.preDrain.image".into(), h.image.as_str()));
        }
        if let Some(h) = &spec.hooks.post_uncordon {
            fields.push(("spec.hooks.postUncordon.image".into(), h.image.as_str()));
        }
        fields
            .into_iter()
            .filter(|(_, image)| !self.allows(image))
            .map(|(field, image)| {
                format!(
                    "{field}: {image:?} (repository {}) is not an allowed upgrade image; drover runs only images matching {}",
                    repository(image),
                    self
                )
            })
            .collect()
    }
}

impl fmt::Display for AllowedImages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<&str> = self.patterns.iter().map(ImagePattern::as_str).collect();
        f.write_str(&texts.join(", "))
    }
}

/// The repository of an image reference in normal form: the digest and tag
/// dropped, `docker.io/` added when it names no registry, `library/` when
/// a `docker.io` path has one segment.
pub fn repository(image: &str) -> String {
    let name = image.split('@').next().unwrap_or_default();
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if looks_like_registry(first) => (first, rest),
        _ => (DEFAULT_REGISTRY, name),
    };
    // Past the registry, a ':' can only start the tag.
    let path = path.rsplit_once(':').map_or(path, |(p, _)| p);
    if registry == DEFAULT_REGISTRY && !path.contains('/') {
        format!("{registry}/library/{path}")
    } else {
        format!("{registry}/{path}")
    }
}

/// Whether the first segment of a reference is a registry (the rule of
/// Docker's reference grammar): it has a '.' or a ':port', or is localhost.
fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (registry, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let port_ok = port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0));
    host.split('.').all(label_ok) && port_ok
}

/// `[a-z0-9]+([._-]+[a-z0-9]+)*`, the path segment of `IMAGE_PATTERN`.
fn valid_segment(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let sep = |c: u8| matches!(c, b'.' | b'_' | b'-');
    !b.is_empty() && alnum(b[0]) && alnum(b[b.len() - 1]) && b.iter().all(|c| alnum(*c) || sep(*c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> AllowedImages {
        AllowedImages::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn images_normalise_as_container_runtimes_read_them() {
        for (image, repo) in [
            ("busybox", "docker.io/library/busybox"),
            ("busybox:1.37", "docker.io/library/busybox"),
            ("busybox@sha256:0123", "docker.io/library/busybox"),
            ("library/busybox:1", "docker.io/library/busybox"),
            ("docker.io/busybox:1", "docker.io/library/busybox"),
            ("docker.io/library/busybox", "docker.io/library/busybox"),
            ("bitnami/kubectl:1.30", "docker.io/bitnami/kubectl"),
            ("registry.example.com/upgrade:1.2", "registry.example.com/upgrade"),
            ("registry.example.com/a/b/c:1@sha256:ff", "registry.example.com/a/b/c"),
            ("registry.example.com:5000/upgrade", "registry.example.com:5000/upgrade"),
            (
                "registry.example.com:5000/upgrade:5000",
                "registry.example.com:5000/upgrade",
            ),
            ("localhost/upgrade:1", "localhost/upgrade"),
            ("localhost:5000/upgrade", "localhost:5000/upgrade"),
            ("index.docker.io/library/busybox", "index.docker.io/library/busybox"),
            // "registry" has no '.' or port: a Docker Hub user, as the runtimes read it.
            ("registry/upgrade:1", "docker.io/registry/upgrade"),
        ] {
            assert_eq!(repository(image), repo, "{image}");
        }
    }

    #[test]
    fn a_prefix_pattern_matches_below_its_path_only_at_a_boundary() {
        let l = list("registry.example.com/upgrades/*");
        for ok in [
            "registry.example.com/upgrades/containerd:1",
            "registry.example.com/upgrades/a/b@sha256:0a",
        ] {
            assert!(l.allows(ok), "{ok}");
        }
        for no in [
            "registry.example.com/upgrades",
            "registry.example.com/upgrades:1",
            "registry.example.com/upgrades-evil/x:1",
            "registry.example.com/upgradesx/x",
            "registry.example.com.evil.io/upgrades/x:1",
            "evil.io/registry.example.com/upgrades/x",
            "registry.example.com:5000/upgrades/x",
            "upgrades/x",
        ] {
            assert!(!l.allows(no), "{no}");
        }
    }

    #[test]
    fn an_exact_pattern_matches_its_repository_with_any_tag_or_digest() {
        let l = list("registry.example.com/drover-upgrade");
        for ok in [
            "registry.example.com/drover-upgrade",
            "registry.example.com/drover-upgrade:1",
            "registry.example.com/drover-upgrade@sha256:00ff",
            "registry.example.com/drover-upgrade:1@sha256:00ff",
        ] {
            assert!(l.allows(ok), "{ok}");
        }
        for no in [
            "registry.example.com/drover-upgrade-kubeadm:1",
            "registry.example.com/drover-upgrade/sub:1",
            "registry.example.com/x/drover-upgrade:1",
            "registry.example.com.evil.io/drover-upgrade:1",
            "registry.example.com:443/drover-upgrade:1",
        ] {
            assert!(!l.allows(no), "{no}");
        }
    }

    #[test]
    fn ports_and_docker_hub_are_compared_in_normal_form() {
        let l = list("registry.example.com:5000/*, docker.io/library/busybox,localhost/up");
        assert!(l.allows("registry.example.com:5000/anything:1"));
        assert!(!l.allows("registry.example.com/anything:1"));
        assert!(!l.allows("registry.example.com:50001/anything:1"));
        assert!(l.allows("busybox:1.37"));
        assert!(l.allows("docker.io/busybox"));
        assert!(l.allows("library/busybox@sha256:aa"));
        assert!(!l.allows("evil/busybox"));
        assert!(!l.allows("index.docker.io/library/busybox"));
        assert!(l.allows("localhost/up:2"));
        assert!(!l.allows("localhost:5000/up:2"));
        let hub = list("docker.io/*");
        assert!(hub.allows("busybox") && hub.allows("someone/tool:1"));
        assert!(!hub.allows("quay.io/someone/tool:1"));
        assert_eq!(
            l.to_string(),
            "registry.example.com:5000/*, docker.io/library/busybox, localhost/up"
        );
    }

    #[test]
    fn bad_patterns_are_refused_saying_what_to_write() {
        for (text, says) in [
            ("busybox", "such as docker.io/library/busybox"),
            ("library/busybox", "such as docker.io/library/busybox"),
            ("docker.io/busybox", "write docker.io/library/busybox"),
            ("registry.example.com/up:1", "not tags"),
            ("registry.example.com/up@sha256:00", "not digests"),
            ("registry.example.com/up*", "'*' may only be the whole last segment"),
            ("registry.example.com/*/x", "'*' may only be the whole last segment"),
            ("*.example.com/x", "not a registry host"),
            ("Registry.example.com/x", "not a registry host"),
            ("registry.example.com:99999/x", "not a registry host"),
            ("registry.example.com/Up", "not a repository path segment"),
            ("registry.example.com/", "not a repository path segment"),
            (
                "registry.example.com",
                "write registry.example.com/* for every repository",
            ),
            ("upgrades", "must start with a registry host"),
            ("registry.example.com/a//b", "not a repository path segment"),
        ] {
            let err = AllowedImages::parse(text).unwrap_err();
            assert!(
                err.contains(&format!("{text:?}")) && err.contains(says),
                "{text}: {err}"
            );
        }
        let err = AllowedImages::parse(" , ").unwrap_err();
        assert!(err.contains("names no pattern"), "{err}");
        // Every bad entry is reported at once.
        let err = AllowedImages::parse("busybox,registry.example.com/ok,x.io/up:1").unwrap_err();
        assert!(err.contains("\"busybox\"") && err.contains("\"x.io/up:1\""), "{err}");
    }

    #[test]
    fn the_refusal_names_each_field_its_image_and_the_patterns() {
        let spec: ClusterUpgradeSpec = serde_json::from_value(serde_json::json!({
            "components": [
                {"name": "containerd", "version": "1.7.23", "upgrade": {"job": {"image": "registry.example.com/upgrades/containerd:1"}}},
                {"name": "coredns", "version": "v1.11.4", "upgrade": {"workload": {"kind": "Deployment", "namespace": "kube-system", "name": "coredns"}}},
                {"name": "kubelet", "version": "v1.32.0", "upgrade": {"job": {"image": "evil.io/upgrades/kubelet:1"}}}
            ],
            "backup": {"image": "busybox:1.37"}
        }))
        .unwrap();
        let l = list("registry.example.com/upgrades/*,registry.example.com/etcd-backup");
        let refused = l.refused_fields(&spec);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].starts_with("spec.components[2].upgrade.job.image: \"evil.io/upgrades/kubelet:1\" (repository evil.io/upgrades/kubelet) is not an allowed upgrade image; drover runs only images matching registry.example.com/upgrades/*, registry.example.com/etcd-backup"), "{}", refused[0]);
        assert!(
            refused[1].starts_with("spec.backup.image: \"busybox:1.37\" (repository docker.io/library/busybox)"),
            "{}",
            refused[1]
        );
        assert!(
            list("registry.example.com/*,evil.io/upgrades/kubelet,docker.io/library/busybox")
                .refused_fields(&spec)
                .is_empty()
        );
        // A hook's image is checked as an upgrade image is.
        let mut hooked = spec.clone();
        hooked.hooks.pre_drain = Some(crate::gates::Hook {
            image: "evil.io/hooks/noout:1".into(),
            command: vec![],
            args: vec![],
            env: vec![],
            privileged: true,
            host_root: false,
            timeout: "5m".into(),
        });
        let refused =
            list("registry.example.com/*,evil.io/upgrades/kubelet,docker.io/library/busybox").refused_fields(&hooked);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].starts_with("spec.hooks.preDrain.image: \"evil.io/hooks/noout:1\""),
            "{}",
            refused[0]
        );
    }
}
