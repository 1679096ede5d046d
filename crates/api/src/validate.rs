//! The spec checks that need no cluster, in Rust. The CRD schema carries the
//! same rules (OpenAPI and CEL) so the API server refuses most of these at
//! admission; drover checks again because a CRD may be installed without
//! validation, and because some checks (time zones, stage inference) are
//! beyond what CEL can do.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::known::stage_of;
use crate::spec::{CLOCK_PATTERN, ClusterUpgradeSpec, NAME_PATTERN, Stage};
use crate::version::parse_version;

/// One rejected field: the path and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Parse a Go-style duration (`90s`, `1h30m`) as `metav1.Duration` does.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let d: kube::core::Duration = s.parse().ok()?;
    if d.is_negative() {
        return None;
    }
    Some(d.into())
}

/// `maxUnavailable` against `total` workers: an integer, or a percentage
/// rounded down with a floor of 1 (as MachineConfigPools do).
pub fn resolve_max_unavailable(v: &IntOrString, total: usize) -> Result<usize, String> {
    match v {
        IntOrString::Int(n) if *n >= 1 => Ok(*n as usize),
        IntOrString::Int(n) => Err(format!("must be at least 1, got {n}")),
        IntOrString::String(s) => {
            let pct = s
                .strip_suffix('%')
                .and_then(|p| p.parse::<u32>().ok())
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| {
                    format!("must be an integer of at least 1 or a percentage from 1% to 100%, got {s:?}")
                })?;
            Ok((total * pct as usize / 100).max(1))
        }
    }
}

/// Minutes after midnight of an `HH:MM` clock time.
pub fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Every problem with the spec that needs no cluster to see, in field order.
pub fn validate(spec: &ClusterUpgradeSpec) -> Result<(), Vec<FieldError>> {
    let _ = (NAME_PATTERN, CLOCK_PATTERN); // the schema's twins of is_dns_label and parse_clock
    let mut errs = Vec::new();
    if spec.components.is_empty() {
        errs.push(err("spec.components", "must list at least one component"));
    }
    let mut seen = BTreeSet::new();
    for (i, c) in spec.components.iter().enumerate() {
        let at = format!("spec.components[{i}]");
        if !is_dns_label(&c.name) {
            errs.push(err(format!("{at}.name"), format!("{:?} must be a DNS label: lowercase letters, digits and '-', at most 40 characters, starting and ending with a letter or digit", c.name)));
        }
        if !seen.insert(c.name.as_str()) {
            errs.push(err(
                format!("{at}.name"),
                format!("{:?} appears more than once; each component may appear once", c.name),
            ));
        }
        match parse_version(&c.version) {
            Some(_) if semver::Version::parse(c.version.trim_start_matches('v')).is_ok() => {}
            _ => errs.push(err(
                format!("{at}.version"),
                format!("{:?} must be a semantic version such as 1.7.22 or v1.31.2", c.version),
            )),
        }
        if stage_of(c).is_none() {
            let allowed: Vec<_> = Stage::ALL.iter().map(|s| s.as_str()).collect();
            errs.push(err(
                format!("{at}.stage"),
                format!(
                    "is required for {:?}, which is not a well-known component; allowed: {}",
                    c.name,
                    allowed.join(", ")
                ),
            ));
        }
        match (&c.upgrade.job, &c.upgrade.workload) {
            (Some(job), None) => {
                if job.image.trim().is_empty() {
                    errs.push(err(format!("{at}.upgrade.job.image"), "must name the upgrade image"));
                }
                if parse_duration(&job.timeout).is_none() {
                    errs.push(err(format!("{at}.upgrade.job.timeout"), format!("{:?} must be a duration such as 90s, 10m or 1h30m", job.timeout)));
                }
            }
            (None, Some(w)) => {
                if w.namespace.is_empty() || w.name.is_empty() {
                    errs.push(err(format!("{at}.upgrade.workload"), "must name the workload's namespace and name"));
                }
                if parse_duration(&w.timeout).is_none() {
                    errs.push(err(format!("{at}.upgrade.workload.timeout"), format!("{:?} must be a duration such as 90s, 10m or 1h30m", w.timeout)));
                }
            }
            _ => errs.push(err(format!("{at}.upgrade"), "must set exactly one of job (node-level, run on each node) or workload (cluster-level Deployment/DaemonSet/StatefulSet)")),
        }
        if let Some(v) = &c.verify {
            let set = [v.node_info.is_some(), v.pod.is_some(), v.job_succeeded.is_some()];
            if set.iter().filter(|x| **x).count() != 1 {
                errs.push(err(
                    format!("{at}.verify"),
                    "must set exactly one of nodeInfo, pod or jobSucceeded",
                ));
            }
            if c.upgrade.workload.is_some() {
                errs.push(err(
                    format!("{at}.verify"),
                    "is not used by workload components: their rollout status is the verification",
                ));
            }
        }
    }
    if let Err(e) = resolve_max_unavailable(&spec.strategy.max_unavailable, 100) {
        errs.push(err("spec.strategy.maxUnavailable", e));
    }
    if spec.strategy.max_failures < 0 {
        errs.push(err("spec.strategy.maxFailures", "must be 0 or more"));
    }
    if parse_duration(&spec.strategy.soak).is_none() {
        errs.push(err(
            "spec.strategy.soak",
            format!("{:?} must be a duration such as 0s, 90s or 10m", spec.strategy.soak),
        ));
    }
    if parse_duration(&spec.drain.timeout).is_none_or(|d| d.is_zero()) {
        errs.push(err(
            "spec.drain.timeout",
            format!(
                "{:?} must be a positive duration such as 90s, 15m or 1h",
                spec.drain.timeout
            ),
        ));
    }
    if spec.drain.grace_period_seconds.is_some_and(|g| g < 0) {
        errs.push(err("spec.drain.gracePeriodSeconds", "must be 0 or more"));
    }
    for (i, w) in spec.windows.iter().enumerate() {
        let at = format!("spec.windows[{i}]");
        let start = parse_clock(&w.start);
        let end = parse_clock(&w.end);
        if start.is_none() {
            errs.push(err(
                format!("{at}.start"),
                format!("{:?} must be a 24-hour time HH:MM, from 00:00 to 23:59", w.start),
            ));
        }
        if end.is_none() {
            errs.push(err(
                format!("{at}.end"),
                format!("{:?} must be a 24-hour time HH:MM, from 00:00 to 23:59", w.end),
            ));
        }
        if start.is_some() && start == end {
            errs.push(err(
                format!("{at}.end"),
                "must differ from start (a window of zero length never opens)",
            ));
        }
        if jiff::tz::TimeZone::get(&w.time_zone).is_err() {
            errs.push(err(
                format!("{at}.timeZone"),
                format!(
                    "{:?} is not a known IANA time zone such as UTC or Europe/Berlin",
                    w.time_zone
                ),
            ));
        }
    }
    if let Some(b) = &spec.backup {
        if b.image.trim().is_empty() {
            errs.push(err("spec.backup.image", "must name the backup image"));
        }
        if parse_duration(&b.timeout).is_none() {
            errs.push(err(
                "spec.backup.timeout",
                format!("{:?} must be a duration such as 90s, 10m or 1h30m", b.timeout),
            ));
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}
