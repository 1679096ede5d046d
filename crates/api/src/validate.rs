//! The spec checks that need no cluster, in Rust. The CRD schema carries the
//! same rules (OpenAPI and CEL) so the API server refuses most of these at
//! admission; drover checks again because a CRD may be installed without
//! validation, and because some checks (time zones, stage inference) are
//! beyond what CEL can do.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::known::{is_os_text, stage_of};
use crate::spec::{
    CLOCK_PATTERN, ClusterUpgradeSpec, DURATION_PATTERN, ENV_NAME_PATTERN, EnvVar, IMAGE_PATTERN, LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN, MAX_DURATION, NAME_PATTERN, OS_VERSION_PATTERN, RESERVED_ENV, SUBDOMAIN_PATTERN, Stage,
    TIME_ZONE_PATTERN,
};
use crate::spec::{CONFIG_MAP_KEY_PATTERN, REPOSITORY_PATTERN, VERSION_PATTERN, WorkloadUpgrade};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

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

fn regex(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).expect("the schema's patterns are valid regexes")
}

static IMAGE: LazyLock<regex::Regex> = LazyLock::new(|| regex(IMAGE_PATTERN));
static ENV_NAME: LazyLock<regex::Regex> = LazyLock::new(|| regex(ENV_NAME_PATTERN));
static SUBDOMAIN: LazyLock<regex::Regex> = LazyLock::new(|| regex(SUBDOMAIN_PATTERN));
static TIME_ZONE: LazyLock<regex::Regex> = LazyLock::new(|| regex(TIME_ZONE_PATTERN));
static LABEL_KEY: LazyLock<regex::Regex> = LazyLock::new(|| regex(LABEL_KEY_PATTERN));
static LABEL_VALUE: LazyLock<regex::Regex> = LazyLock::new(|| regex(LABEL_VALUE_PATTERN));

static OS_VERSION: LazyLock<regex::Regex> = LazyLock::new(|| regex(OS_VERSION_PATTERN));

/// The first line of a multi-line error (the regex crate's point at the problem).
fn first_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or(s.lines().next().unwrap_or(s))
        .trim()
        .to_string()
}

static DURATION: LazyLock<regex::Regex> = LazyLock::new(|| regex(DURATION_PATTERN));
static CLOCK: LazyLock<regex::Regex> = LazyLock::new(|| regex(CLOCK_PATTERN));
static VERSION: LazyLock<regex::Regex> = LazyLock::new(|| regex(VERSION_PATTERN));
static REPOSITORY: LazyLock<regex::Regex> = LazyLock::new(|| regex(REPOSITORY_PATTERN));
static CONFIG_MAP_KEY: LazyLock<regex::Regex> = LazyLock::new(|| regex(CONFIG_MAP_KEY_PATTERN));

/// Parse a Go-style duration (`90s`, `1h30m`) as `metav1.Duration` does,
/// restricted to what the schema admits (its pattern, at most 32
/// characters) and to at most about 100 years, so that no input can
/// overflow the parser.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s.len() > 32 || !DURATION.is_match(s) {
        return None;
    }
    // The pattern guarantees number-unit pairs: bound their sum in f64 first.
    let mut secs = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(n);
        let u = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, next) = tail.split_at(u);
        let scale = match unit {
            "ns" => 1e-9,
            "us" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        secs += num.parse::<f64>().ok()? * scale;
        rest = next;
    }
    if !secs.is_finite() || secs > 100.0 * 365.0 * 86400.0 {
        return None;
    }
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
                .filter(|p| !p.is_empty() && !p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()))
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
    if !CLOCK.is_match(s) {
        return None;
    }
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn is_dns_label(s: &str) -> bool {
    is_dns_label_max(s, 40)
}

fn is_dns_label_max(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A timeout or soak: a duration of at most `MAX_DURATION`, above zero when `positive`.
fn check_duration(errs: &mut Vec<FieldError>, field: String, value: &str, positive: bool) {
    let max = parse_duration(MAX_DURATION).expect("MAX_DURATION parses");
    let ok = parse_duration(value).is_some_and(|d| d <= max && (!positive || !d.is_zero()));
    if !ok {
        let range = if positive { "above 0s and at most" } else { "from 0s to" };
        errs.push(err(
            field,
            format!("{value:?} must be a duration {range} {MAX_DURATION}, such as 90s, 10m or 1h30m"),
        ));
    }
}

fn check_image(errs: &mut Vec<FieldError>, field: String, image: &str) {
    if !IMAGE.is_match(image) || image.len() > 512 {
        errs.push(err(
            field,
            format!("{image:?} must be an image reference such as registry.example.com/upgrade:1.2 (lowercase path, optional :tag and @sha256:digest, no spaces)"),
        ));
    }
}

fn check_env(errs: &mut Vec<FieldError>, at: &str, env: &[EnvVar]) {
    if env.len() > 64 {
        errs.push(err(
            format!("{at}.env"),
            format!("lists {}; at most 64 variables", env.len()),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, e) in env.iter().enumerate() {
        let field = format!("{at}.env[{i}].name");
        if !ENV_NAME.is_match(&e.name) || e.name.len() > 128 {
            errs.push(err(
                &field,
                format!(
                    "{:?} must be a C identifier: letters, digits and '_', not starting with a digit",
                    e.name
                ),
            ));
        } else if RESERVED_ENV.contains(&e.name.as_str()) {
            errs.push(err(
                &field,
                format!("{:?} is set by drover on every Job and may not be overridden", e.name),
            ));
        }
        if !names.insert(e.name.as_str()) {
            errs.push(err(
                &field,
                format!("{:?} appears more than once; env names must be unique", e.name),
            ));
        }
    }
}

/// The checks the API server makes of a `metav1.LabelSelector`.
pub fn check_selector(errs: &mut Vec<FieldError>, at: &str, sel: &LabelSelector) {
    let key_ok = |k: &str| k.len() <= 317 && LABEL_KEY.is_match(k);
    let value_ok = |v: &str| v.len() <= 63 && LABEL_VALUE.is_match(v);
    for (k, v) in sel.match_labels.iter().flatten() {
        if !key_ok(k) {
            errs.push(err(format!("{at}.matchLabels"), format!("{k:?} is not a label key: an optional DNS-subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' and '.'")));
        }
        if !value_ok(v) {
            errs.push(err(format!("{at}.matchLabels[{k}]"), format!("{v:?} is not a label value: empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit")));
        }
    }
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let at = format!("{at}.matchExpressions[{i}]");
        if !key_ok(&e.key) {
            errs.push(err(format!("{at}.key"), format!("{:?} is not a label key", e.key)));
        }
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                errs.push(err(&at, "values must be non-empty for the operators In and NotIn"))
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(err(
                &at,
                "values must be empty for the operators Exists and DoesNotExist",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(err(
                format!("{at}.operator"),
                format!("{other:?} is not an operator; allowed: In, NotIn, Exists, DoesNotExist"),
            )),
        }
        for v in values.iter().filter(|v| !value_ok(v)) {
            errs.push(err(format!("{at}.values"), format!("{v:?} is not a label value")));
        }
    }
}

/// What drover needs of a ClusterUpgrade's name: it goes into the
/// `drover.dev/upgrade` label of every Job.
pub fn validate_name(name: &str) -> Result<(), FieldError> {
    if name.len() > 63 {
        return Err(err(
            "metadata.name",
            format!(
                "{name:?} is {} characters; it must be at most 63, since drover puts it in the drover.dev/upgrade label of the Jobs it creates",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// A workload component's fields: one workload or targets, and what selects containers.
fn check_workload(errs: &mut Vec<FieldError>, at: &str, w: &WorkloadUpgrade) {
    let one = [w.kind.is_some(), w.namespace.is_some(), w.name.is_some()];
    if one.iter().any(|x| *x) && !one.iter().all(|x| *x) {
        errs.push(err(
            at,
            "kind, namespace and name go together (one workload); for several workloads list them in targets",
        ));
    }
    if w.name.is_some() != w.targets.is_empty() {
        errs.push(err(
            format!("{at}.targets"),
            "name one workload (kind, namespace, name) or list several in targets, not both and not neither",
        ));
    }
    let named = |errs: &mut Vec<FieldError>, field: String, namespace: &str, name: &str| {
        if !is_dns_label_max(namespace, 63) {
            errs.push(err(
                format!("{field}.namespace"),
                format!("{namespace:?} must be a DNS label: lowercase letters, digits and '-'"),
            ));
        }
        if name.len() > 253 || !SUBDOMAIN.is_match(name) {
            errs.push(err(
                format!("{field}.name"),
                format!("{name:?} must be a DNS subdomain: lowercase letters, digits, '-' and '.'"),
            ));
        }
    };
    if let (Some(ns), Some(name)) = (&w.namespace, &w.name) {
        named(errs, at.to_string(), ns, name);
    }
    let mut seen = BTreeSet::new();
    for (i, t) in w.targets.iter().enumerate() {
        named(errs, format!("{at}.targets[{i}]"), &t.namespace, &t.name);
        if !seen.insert((t.kind.as_str(), t.namespace.as_str(), t.name.as_str())) {
            errs.push(err(format!("{at}.targets[{i}]"), format!("names {t} twice")));
        }
    }
    if w.targets.len() > 16 {
        errs.push(err(
            format!("{at}.targets"),
            format!("lists {}; at most 16 workloads", w.targets.len()),
        ));
    }
    if let Some(c) = &w.container
        && !is_dns_label_max(c, 63)
    {
        errs.push(err(
            format!("{at}.container"),
            format!("{c:?} must be a DNS label: lowercase letters, digits and '-'"),
        ));
    }
    if w.container.is_some() && !w.image_repositories.is_empty() {
        errs.push(err(
            format!("{at}.imageRepositories"),
            "container and imageRepositories exclude each other (container picks one container by name; imageRepositories every container and init container whose image matches)",
        ));
    }
    if w.image_repositories.len() > 16 {
        errs.push(err(
            format!("{at}.imageRepositories"),
            format!("lists {}; at most 16 repositories", w.image_repositories.len()),
        ));
    }
    for (i, r) in w.image_repositories.iter().enumerate() {
        if r.len() > 255 || !REPOSITORY.is_match(r) {
            errs.push(err(
                format!("{at}.imageRepositories[{i}]"),
                format!("{r:?} must be an image repository without tag or digest, such as calico/node or quay.io/cilium/cilium"),
            ));
        }
    }
    if let Some(m) = &w.manifest {
        let cm = &m.config_map;
        if cm.name.len() > 253 || !SUBDOMAIN.is_match(&cm.name) {
            errs.push(err(
                format!("{at}.manifest.configMap.name"),
                format!(
                    "{:?} must be a DNS subdomain: lowercase letters, digits, '-' and '.'",
                    cm.name
                ),
            ));
        }
        if cm.key.len() > 253 || !CONFIG_MAP_KEY.is_match(&cm.key) {
            errs.push(err(
                format!("{at}.manifest.configMap.key"),
                format!(
                    "{:?} must be a ConfigMap key: letters, digits, '-', '_' and '.'",
                    cm.key
                ),
            ));
        }
    }
}

/// Every problem with the spec that needs no cluster to see, in field order.
pub fn validate(spec: &ClusterUpgradeSpec) -> Result<(), Vec<FieldError>> {
    let _ = NAME_PATTERN; // the schema's twin of is_dns_label
    let mut errs = Vec::new();
    if spec.components.is_empty() {
        errs.push(err("spec.components", "must list at least one component"));
    }
    if spec.components.len() > 32 {
        errs.push(err(
            "spec.components",
            format!("lists {}; at most 32 components", spec.components.len()),
        ));
    }
    if spec.windows.len() > 16 {
        errs.push(err(
            "spec.windows",
            format!("lists {}; at most 16 windows", spec.windows.len()),
        ));
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
        if is_os_text(c) {
            if c.version.len() > 64 || !OS_VERSION.is_match(&c.version) {
                errs.push(err(
                    format!("{at}.version"),
                    format!("{:?} must be the OS's version text such as 24.04.1 or 6.8.0-45-generic: letters, digits, spaces and ._+~:()/-, at most 64 characters", c.version),
                ));
            }
        } else {
            if c.version.len() > 64 || !VERSION.is_match(&c.version) {
                errs.push(err(
                    format!("{at}.version"),
                    format!(
                        "{:?} must be a semantic version such as 1.7.22 or v1.31.2, or a two-part series such as 20.10",
                        c.version
                    ),
                ));
            }
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
                check_image(&mut errs, format!("{at}.upgrade.job.image"), &job.image);
                check_env(&mut errs, &format!("{at}.upgrade.job"), &job.env);
                check_duration(&mut errs, format!("{at}.upgrade.job.timeout"), &job.timeout, true);
                if !(0..=10).contains(&job.backoff_limit) {
                    errs.push(err(
                        format!("{at}.upgrade.job.backoffLimit"),
                        format!("{} must be from 0 to 10", job.backoff_limit),
                    ));
                }
            }
            (None, Some(w)) => {
                check_workload(&mut errs, &format!("{at}.upgrade.workload"), w);
                check_duration(&mut errs, format!("{at}.upgrade.workload.timeout"), &w.timeout, true);
                if c.nodes.is_some() {
                    errs.push(err(format!("{at}.nodes"), "is for job components only: a workload runs where its controller puts it"));
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
                    "is for job components only: a workload's rollout status is its verification",
                ));
            }
            if let Some(m) = &v.match_ {
                let field = format!("{at}.verify.match");
                match (&m.prefix, &m.regex) {
                    (Some(p), None) if p.trim().is_empty() || p.len() > 128 => errs.push(err(
                        format!("{field}.prefix"),
                        "must be 1 to 128 characters, not only spaces",
                    )),
                    (None, Some(r)) => {
                        if r.len() > 256 {
                            errs.push(err(format!("{field}.regex"), "must be at most 256 characters"));
                        } else if let Err(e) = regex::Regex::new(r) {
                            errs.push(err(
                                format!("{field}.regex"),
                                format!("{r:?} is not a regular expression: {}", first_line(&e.to_string())),
                            ));
                        }
                    }
                    (Some(_), None) => {}
                    _ => errs.push(err(&field, "set exactly one of prefix or regex")),
                }
                if !is_os_text(c) {
                    errs.push(err(
                        &field,
                        "is for components verified by nodeInfo.osImage or nodeInfo.kernelVersion; other versions compare as semantic versions",
                    ));
                }
            }
            if let Some(p) = &v.pod
                && !is_dns_label_max(&p.namespace, 63)
            {
                errs.push(err(
                    format!("{at}.verify.pod.namespace"),
                    format!(
                        "{:?} must be a DNS label: lowercase letters, digits and '-'",
                        p.namespace
                    ),
                ));
            }
        }
    }
    if let Some(sel) = &spec.node_selector {
        check_selector(&mut errs, "spec.nodeSelector", sel);
    }
    if let Err(e) = resolve_max_unavailable(&spec.strategy.max_unavailable, 100) {
        errs.push(err("spec.strategy.maxUnavailable", e));
    }
    if !(0..=10000).contains(&spec.strategy.max_failures) {
        errs.push(err(
            "spec.strategy.maxFailures",
            format!("{} must be from 0 to 10000", spec.strategy.max_failures),
        ));
    }
    check_duration(&mut errs, "spec.strategy.soak".into(), &spec.strategy.soak, false);
    if !(0..=10).contains(&spec.strategy.retries) {
        errs.push(err(
            "spec.strategy.retries",
            format!("{} must be from 0 to 10", spec.strategy.retries),
        ));
    }
    let hour = Duration::from_secs(3600);
    if parse_duration(&spec.strategy.retry_delay).is_none_or(|d| d > hour) {
        errs.push(err(
            "spec.strategy.retryDelay",
            format!(
                "{:?} must be a duration from 0s to 1h, such as 10s or 1m",
                spec.strategy.retry_delay
            ),
        ));
    }
    check_duration(&mut errs, "spec.reboot.timeout".into(), &spec.reboot.timeout, true);
    if let Some(image) = &spec.reboot.image {
        check_image(&mut errs, "spec.reboot.image".into(), image);
    }
    if let Some(sel) = &spec.strategy.last_node_selector {
        check_selector(&mut errs, "spec.strategy.lastNodeSelector", sel);
    }
    check_duration(&mut errs, "spec.drain.timeout".into(), &spec.drain.timeout, true);
    if spec
        .drain
        .grace_period_seconds
        .is_some_and(|g| !(0..=86400).contains(&g))
    {
        errs.push(err("spec.drain.gracePeriodSeconds", "must be from 0 to 86400 (a day)"));
    }
    if let Some(sel) = &spec.drain.pod_selector {
        check_selector(&mut errs, "spec.drain.podSelector", sel);
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
        if !TIME_ZONE.is_match(&w.time_zone) || jiff::tz::TimeZone::get(&w.time_zone).is_err() {
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
        check_image(&mut errs, "spec.backup.image".into(), &b.image);
        check_env(&mut errs, "spec.backup", &b.env);
        if !is_dns_label_max(&b.namespace, 63) {
            errs.push(err(
                "spec.backup.namespace",
                format!(
                    "{:?} must be a DNS label: lowercase letters, digits and '-'",
                    b.namespace
                ),
            ));
        }
        check_duration(&mut errs, "spec.backup.timeout".into(), &b.timeout, true);
    }
    check_gates(&mut errs, spec);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// A duration from `min` to `max` (both Go durations), or an error naming the field.
fn check_bounded(errs: &mut Vec<FieldError>, field: String, value: &str, min: &str, max: &str, example: &str) {
    let (lo, hi) = (parse_duration(min), parse_duration(max));
    if parse_duration(value).is_none_or(|d| Some(d) < lo || Some(d) > hi) {
        errs.push(err(
            field,
            format!("{value:?} must be a duration from {min} to {max}, such as {example}"),
        ));
    }
}

fn check_url(errs: &mut Vec<FieldError>, field: String, url: &str) {
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.len() > 2048
        || url.contains(char::is_whitespace)
    {
        errs.push(err(
            field,
            format!("{url:?} must be an http:// or https:// URL without spaces, at most 2048 characters"),
        ));
    }
}

/// spec.healthChecks, spec.strategy.canary, spec.strategy.topologyKey and spec.hooks.
fn check_gates(errs: &mut Vec<FieldError>, spec: &ClusterUpgradeSpec) {
    if spec.health_checks.len() > 16 {
        errs.push(err(
            "spec.healthChecks",
            format!("lists {}; at most 16 checks", spec.health_checks.len()),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, c) in spec.health_checks.iter().enumerate() {
        let at = format!("spec.healthChecks[{i}]");
        if !is_dns_label_max(&c.name, 63) {
            errs.push(err(
                format!("{at}.name"),
                format!(
                    "{:?} must be a DNS label: lowercase letters, digits and '-', at most 63 characters",
                    c.name
                ),
            ));
        }
        if !names.insert(c.name.as_str()) {
            errs.push(err(
                format!("{at}.name"),
                format!("{:?} appears more than once; check names must be unique", c.name),
            ));
        }
        let set = [
            c.http.is_some(),
            c.prometheus.is_some(),
            c.pods.is_some(),
            c.control_plane.is_some(),
        ];
        if set.iter().filter(|x| **x).count() != 1 {
            errs.push(err(
                &at,
                "must set exactly one of http, prometheus, pods or controlPlane",
            ));
        }
        check_duration(errs, format!("{at}.timeout"), &c.timeout, true);
        check_bounded(errs, format!("{at}.interval"), &c.interval, "1s", "10m", "10s");
        if !(1..=100).contains(&c.success_threshold) {
            errs.push(err(
                format!("{at}.successThreshold"),
                format!("{} must be from 1 to 100", c.success_threshold),
            ));
        }
        if let Some(h) = &c.http {
            check_url(errs, format!("{at}.http.url"), &h.url);
            if h.expected_status.is_empty()
                || h.expected_status.len() > 16
                || h.expected_status.iter().any(|s| !(100..=599).contains(s))
            {
                errs.push(err(
                    format!("{at}.http.expectedStatus"),
                    "must list 1 to 16 HTTP status codes, each from 100 to 599",
                ));
            }
            check_bounded(
                errs,
                format!("{at}.http.requestTimeout"),
                &h.request_timeout,
                "1s",
                "5m",
                "5s",
            );
            if let Some(name) = &h.secret_name
                && !SUBDOMAIN.is_match(name)
            {
                errs.push(err(
                    format!("{at}.http.secretName"),
                    format!("{name:?} must be a Secret name (a DNS subdomain) in drover's own namespace"),
                ));
            }
        }
        if let Some(p) = &c.prometheus {
            check_url(errs, format!("{at}.prometheus.url"), &p.url);
            if p.query.trim().is_empty() || p.query.len() > 4096 {
                errs.push(err(
                    format!("{at}.prometheus.query"),
                    "must be a PromQL query of 1 to 4096 characters",
                ));
            }
            check_bounded(
                errs,
                format!("{at}.prometheus.requestTimeout"),
                &p.request_timeout,
                "1s",
                "5m",
                "5s",
            );
            if let Some(t) = &p.threshold
                && !t.value.is_finite()
            {
                errs.push(err(
                    format!("{at}.prometheus.threshold.value"),
                    "must be a finite number",
                ));
            }
        }
        if let Some(p) = &c.pods {
            check_selector(errs, &format!("{at}.pods.selector"), &p.selector);
            if let Some(ns) = &p.namespace
                && !is_dns_label_max(ns, 63)
            {
                errs.push(err(
                    format!("{at}.pods.namespace"),
                    format!("{ns:?} must be a namespace name (a DNS label)"),
                ));
            }
            if !(0..=1000).contains(&p.max_restarts) {
                errs.push(err(
                    format!("{at}.pods.maxRestarts"),
                    format!("{} must be from 0 to 1000", p.max_restarts),
                ));
            }
        }
        if let Some(cp) = &c.control_plane {
            check_url(errs, format!("{at}.controlPlane.apiServerURL"), &cp.api_server_url);
            check_url(errs, format!("{at}.controlPlane.etcdURL"), &cp.etcd_url);
        }
    }
    if let Some(c) = &spec.strategy.canary {
        if let Err(e) = resolve_max_unavailable(&c.nodes, 100) {
            errs.push(err("spec.strategy.canary.nodes", e));
        }
        check_duration(errs, "spec.strategy.canary.soak".into(), &c.soak, false);
        if let Some(sel) = &c.selector {
            check_selector(errs, "spec.strategy.canary.selector", sel);
        }
        if spec.strategy.type_ == crate::spec::StrategyType::AllAtOnce {
            errs.push(err(
                "spec.strategy.canary",
                "is for Rolling only: AllAtOnce starts every worker at once",
            ));
        }
    }
    if let Some(k) = &spec.strategy.topology_key
        && (k.len() > 317 || !LABEL_KEY.is_match(k))
    {
        errs.push(err(
            "spec.strategy.topologyKey",
            format!("{k:?} must be a label key such as topology.kubernetes.io/zone"),
        ));
    }
    for (field, hook) in [
        ("preDrain", &spec.hooks.pre_drain),
        ("postUncordon", &spec.hooks.post_uncordon),
    ] {
        let Some(h) = hook else { continue };
        let at = format!("spec.hooks.{field}");
        check_image(errs, format!("{at}.image"), &h.image);
        check_env(errs, &at, &h.env);
        if h.env.iter().any(|e| e.name == "DROVER_HOOK") {
            errs.push(err(
                format!("{at}.env"),
                "DROVER_HOOK is set by drover on hook Jobs and may not be overridden",
            ));
        }
        check_duration(errs, format!("{at}.timeout"), &h.timeout, true);
    }
    if spec.strategy.type_ == crate::spec::StrategyType::AllAtOnce && spec.hooks.pre_drain.is_some() {
        errs.push(err(
            "spec.hooks.preDrain",
            "needs strategy.type Rolling: AllAtOnce neither cordons nor drains",
        ));
    }
}
