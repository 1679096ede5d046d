//! Spec acceptance: the rules only drover can judge (the schema's, the
//! operator's image allowlist, the version skew), run before anything is
//! touched, and the spec's durations and selectors parsed once for every
//! later decision.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_api::selector::Matcher;
use drover_api::validate::{parse_duration, validate, validate_name};
use drover_api::{ClusterUpgradeSpec, Reason};

use crate::observe::{Observation, ObservedNode};
use crate::skew;
use crate::view::component_targets_node;

/// Why a spec is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// InvalidSpec, ImageNotAllowed or SkewViolation.
    pub reason: Reason,
    pub problems: Vec<String>,
}

/// An accepted spec, its durations typed and its selectors parsed.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// spec.strategy.soak.
    pub soak: Duration,
    /// spec.drain.timeout.
    pub drain_timeout: Duration,
    /// Each job component's upgrade.job.timeout, by component name.
    pub job_timeouts: BTreeMap<String, Duration>,
    /// spec.strategy.lastNodeSelector.
    pub last_nodes: Option<Matcher>,
    /// spec.strategy.retryDelay: the wait before the first retry.
    pub retry_delay: Duration,
    /// spec.reboot.timeout.
    pub reboot_timeout: Duration,
    /// spec.healthChecks, their durations typed, in the spec's order.
    pub checks: Vec<TypedCheck>,
    /// spec.strategy.canary.soak.
    pub canary_soak: Duration,
    /// spec.strategy.canary.selector (None: any worker).
    pub canary_nodes: Option<Matcher>,
    /// spec.hooks.preDrain.timeout and postUncordon.timeout.
    pub pre_drain_timeout: Option<Duration>,
    pub post_uncordon_timeout: Option<Duration>,
}

/// One health check's name and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedCheck {
    pub name: String,
    pub timeout: Duration,
    pub interval: Duration,
    pub threshold: u32,
}

impl Accepted {
    /// The upgrade Job timeout of a component, if it is a job component of the spec.
    pub fn job_timeout(&self, component: &str) -> Option<Duration> {
        self.job_timeouts.get(component).copied()
    }
}

/// The nodes the spec selects.
pub fn scope(spec: &ClusterUpgradeSpec) -> Matcher {
    Matcher::optional(spec.node_selector.as_ref())
}

/// Check the spec before anything is touched; on success, the spec typed.
/// `scope` is the spec's node selector, parsed by the caller.
pub fn accept(spec: &ClusterUpgradeSpec, obs: &Observation, scope: &Matcher) -> Result<Accepted, Refusal> {
    let mut problems: Vec<String> = validate_name(&obs.name).err().iter().map(|e| e.to_string()).collect();
    if let Err(errors) = validate(spec) {
        problems.extend(errors.iter().map(|e| e.to_string()));
    }
    if !problems.is_empty() {
        return Err(Refusal {
            reason: Reason::InvalidSpec,
            problems,
        });
    }
    // Before anything else about the cluster: an image outside the operator's
    // list would run privileged, with the host's root, on every node.
    if let Some(allowed) = &obs.allowed_images {
        let refused = allowed.refused_fields(spec);
        if !refused.is_empty() {
            return Err(Refusal {
                reason: Reason::ImageNotAllowed,
                problems: refused,
            });
        }
    }
    let in_scope: Vec<&ObservedNode> = obs.nodes.iter().filter(|n| scope.matches(&n.labels)).collect();
    let workload_version = |name: &str| obs.workloads.get(name).and_then(|w| w.version.clone());
    let violations = skew::check(spec, &in_scope, &obs.nodes, &workload_version, &component_targets_node);
    if !violations.is_empty() {
        return Err(Refusal {
            reason: Reason::SkewViolation,
            problems: violations.into_iter().map(|v| v.message).collect(),
        });
    }
    typed(spec).map_err(|problems| Refusal {
        reason: Reason::InvalidSpec,
        problems,
    })
}

/// The durations parsed once. Validation has already checked each, so an
/// error here names a rule validation missed, and still refuses the spec
/// rather than reading the duration as zero.
fn typed(spec: &ClusterUpgradeSpec) -> Result<Accepted, Vec<String>> {
    let mut problems = Vec::new();
    let mut duration = |field: String, text: &str| {
        parse_duration(text).unwrap_or_else(|| {
            problems.push(format!("{field}: {text:?} is not a duration"));
            Duration::ZERO
        })
    };
    let soak = duration("spec.strategy.soak".into(), &spec.strategy.soak);
    let drain_timeout = duration("spec.drain.timeout".into(), &spec.drain.timeout);
    let retry_delay = duration("spec.strategy.retryDelay".into(), &spec.strategy.retry_delay);
    let reboot_timeout = duration("spec.reboot.timeout".into(), &spec.reboot.timeout);
    let mut job_timeouts = BTreeMap::new();
    for (i, c) in spec.components.iter().enumerate() {
        if let Some(job) = &c.upgrade.job {
            let d = duration(format!("spec.components[{i}].upgrade.job.timeout"), &job.timeout);
            job_timeouts.insert(c.name.clone(), d);
        }
    }
    let checks = spec
        .health_checks
        .iter()
        .enumerate()
        .map(|(i, c)| TypedCheck {
            name: c.name.clone(),
            timeout: duration(format!("spec.healthChecks[{i}].timeout"), &c.timeout),
            interval: duration(format!("spec.healthChecks[{i}].interval"), &c.interval),
            threshold: c.success_threshold.clamp(1, 100) as u32,
        })
        .collect();
    let canary_soak = match &spec.strategy.canary {
        Some(c) => duration("spec.strategy.canary.soak".into(), &c.soak),
        None => Duration::ZERO,
    };
    let pre_drain_timeout = spec
        .hooks
        .pre_drain
        .as_ref()
        .map(|h| duration("spec.hooks.preDrain.timeout".into(), &h.timeout));
    let post_uncordon_timeout = spec
        .hooks
        .post_uncordon
        .as_ref()
        .map(|h| duration("spec.hooks.postUncordon.timeout".into(), &h.timeout));
    let accepted = Accepted {
        checks,
        canary_soak,
        canary_nodes: spec
            .strategy
            .canary
            .as_ref()
            .and_then(|c| c.selector.as_ref())
            .map(Matcher::new),
        pre_drain_timeout,
        post_uncordon_timeout,
        soak,
        drain_timeout,
        job_timeouts,
        last_nodes: spec.strategy.last_node_selector.as_ref().map(Matcher::new),
        retry_delay,
        reboot_timeout,
    };
    if problems.is_empty() {
        Ok(accepted)
    } else {
        Err(problems)
    }
}
