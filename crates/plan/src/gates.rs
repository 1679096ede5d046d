//! What stops new nodes from starting: small checks, each returning the
//! hold it finds, run in order until one holds. Nodes already in flight
//! are not affected by any of them.

use drover_api::{ClusterUpgradeSpec, Reason};

use crate::accept::Accepted;
use crate::node::add;
use crate::observe::Observation;
use crate::progress::NodePhase;
use crate::view::{Group, NodeView, Standing, ours};
use crate::window;

/// What the gates look at.
pub(crate) struct GateCtx<'a> {
    pub spec: &'a ClusterUpgradeSpec,
    pub obs: &'a Observation,
    pub accepted: &'a Accepted,
    pub views: &'a [NodeView<'a>],
}

/// What stops new nodes from starting, when something does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub reason: Reason,
    pub message: String,
    /// Needs a human (Stalled) rather than time (Reconciling).
    pub stalled: bool,
}

pub(crate) type Gate = fn(&GateCtx) -> Option<Hold>;

/// Halted drains, failures and records of a newer drover: they hold even when no work is left.
pub(crate) const FAILURES: &[Gate] = &[halted_drain, critical_failure, too_many_failures, newer_record];

/// Health checks that have not passed: nothing new starts meanwhile.
pub(crate) const HEALTH: &[Gate] = &[unhealthy];

/// Admission, time and the user's say: they matter only while work is left.
pub(crate) const TIMING: &[Gate] = &[pod_security, paused, outside_window, soaking];

/// The first hold of `gates`, in order.
pub(crate) fn first(gates: &[Gate], ctx: &GateCtx) -> Option<Hold> {
    gates.iter().find_map(|g| g(ctx))
}

impl GateCtx<'_> {
    /// How many nodes in scope failed (what maxFailures counts).
    pub(crate) fn failure_count(&self) -> usize {
        self.failures().len()
    }

    /// Failed nodes in scope: those Failed, then those on their way back
    /// after a failure. A node handed back because its drain halted the
    /// rollout has not failed: the halt is what holds.
    fn failures(&self) -> Vec<&NodeView<'_>> {
        let failed = self
            .views
            .iter()
            .filter(|v| v.in_scope && v.state == Standing::Failed)
            .filter(|v| ours(self.obs, v.node).is_none_or(|p| p.failure.is_some() || !p.halted));
        let failing = self
            .views
            .iter()
            .filter(|v| v.in_scope && v.state == Standing::InFlight)
            .filter(|v| ours(self.obs, v.node).is_some_and(|p| p.failure.is_some()));
        failed.chain(failing).collect()
    }

    fn failure_hold(&self, v: &NodeView, why: &str) -> Hold {
        let f = ours(self.obs, v.node).and_then(|p| p.failure.clone());
        let (reason, detail) = match f {
            Some(f) => (
                f.reason,
                format!(
                    "node {} failed at {}{}: {}",
                    v.node.name,
                    f.step,
                    f.component.map(|c| format!(" of {c}")).unwrap_or_default(),
                    f.message
                ),
            ),
            None => (Reason::UpgradeJobFailed, format!("node {} failed", v.node.name)),
        };
        // Every node returned to its previous versions, named.
        let also: Vec<&str> = self
            .failures()
            .into_iter()
            .filter(|o| o.node.name != v.node.name)
            .filter(|o| {
                ours(self.obs, o.node)
                    .and_then(|p| p.failure.as_ref())
                    .is_some_and(|f| f.reason == Reason::RolledBack)
            })
            .map(|o| o.node.name.as_str())
            .collect();
        let detail = if reason == Reason::RolledBack && !also.is_empty() {
            format!("{detail}; also rolled back: {}", also.join(", "))
        } else {
            detail
        };
        Hold {
            reason,
            message: format!("{detail}; {why}"),
            stalled: true,
        }
    }
}

/// An etcd or control-plane node failed: nothing more starts.
fn critical_failure(ctx: &GateCtx) -> Option<Hold> {
    let v = ctx.failures().into_iter().find(|v| v.group != Group::Worker)?;
    Some(ctx.failure_hold(
        v,
        "an etcd or control-plane node failed; the rollout halts until the spec changes",
    ))
}

/// More failed nodes than spec.strategy.maxFailures.
fn too_many_failures(ctx: &GateCtx) -> Option<Hold> {
    let failures = ctx.failures();
    if failures.len() <= ctx.spec.strategy.max_failures.max(0) as usize {
        return None;
    }
    Some(ctx.failure_hold(
        failures[0],
        &format!(
            "{} failed nodes exceed spec.strategy.maxFailures ({}); the rollout halts until the spec changes",
            failures.len(),
            ctx.spec.strategy.max_failures
        ),
    ))
}

/// A drain passed its timeout and spec.drain.onTimeout is Halt.
fn halted_drain(ctx: &GateCtx) -> Option<Hold> {
    let (node, p) = ctx
        .views
        .iter()
        .filter(|v| matches!(v.state, Standing::InFlight | Standing::Failed))
        .find_map(|v| {
            ours(ctx.obs, v.node)
                .filter(|p| p.halted && p.failure.is_none())
                .map(|p| (v.node.name.as_str(), p))
        })?;
    let what_now = if p.phase.in_flight() && ctx.spec.strategy.on_halt == drover_api::HaltAction::Uncordon {
        format!("{node} is being handed back (spec.strategy.onHalt is Uncordon); change the spec to try again")
    } else if p.phase == NodePhase::Failed {
        format!("{node} was handed back (spec.strategy.onHalt is Uncordon); change the spec to try again")
    } else {
        format!("{node} stays cordoned and drover keeps evicting (spec.strategy.onHalt is KeepCordoned)")
    };
    Some(Hold {
        reason: Reason::DrainBlocked,
        message: format!(
            "drain of {node} passed spec.drain.timeout ({}) and onTimeout is Halt: {}; {what_now}",
            ctx.spec.drain.timeout, p.message
        ),
        stalled: true,
    })
}

/// A node carries a progress record of a newer format: a newer drover
/// worked on it. It is left alone, and nothing new starts until that is resolved.
fn newer_record(ctx: &GateCtx) -> Option<Hold> {
    let v = ctx.views.iter().find(|v| v.in_scope && v.node.newer_record.is_some())?;
    let version = v.node.newer_record.unwrap_or_default();
    Some(Hold {
        reason: Reason::NewerRecord,
        message: format!(
            "node {} carries a progress record of format v{version}, written by a newer drover (this one reads up to v{}); it leaves the node alone and starts no new node: run the newer drover, or remove the node's {} annotation to let this one start it over",
            v.node.name,
            crate::progress::FORMAT,
            drover_api::names::annotation::PROGRESS
        ),
        stalled: true,
    })
}

/// The Job namespace's PodSecurity admission would refuse the upgrade
/// Jobs' pods: a Job would be created and never run, so no node starts.
fn pod_security(ctx: &GateCtx) -> Option<Hold> {
    let r = ctx.obs.job_pods_refused.as_ref()?;
    if !ctx.views.iter().any(|v| v.in_scope && v.state == Standing::Pending) {
        return None;
    }
    Some(Hold {
        reason: Reason::PodSecurityForbids,
        message: format!(
            "the API server would refuse the upgrade Jobs' pods in namespace {ns}: {msg}; no node starts until it admits them: label the namespace (kubectl label namespace {ns} pod-security.kubernetes.io/enforce=privileged --overwrite) or run drover with --namespace set to a namespace that admits privileged pods",
            ns = r.namespace,
            msg = r.message
        ),
        stalled: true,
    })
}

fn paused(ctx: &GateCtx) -> Option<Hold> {
    ctx.spec.paused.then(|| Hold {
        reason: Reason::Paused,
        message: "spec.paused is true: no new node starts; nodes in progress finish".into(),
        stalled: false,
    })
}

fn outside_window(ctx: &GateCtx) -> Option<Hold> {
    if window::any_open(&ctx.spec.windows, ctx.obs.now) {
        return None;
    }
    let next = window::next_opening(&ctx.spec.windows, ctx.obs.now)
        .map(|t| format!("; the next window opens at {t}"))
        .unwrap_or_default();
    Some(Hold {
        reason: Reason::OutsideWindow,
        message: format!("no maintenance window in spec.windows is open{next}"),
        stalled: true,
    })
}

/// Within spec.strategy.soak of the last node that finished.
fn soaking(ctx: &GateCtx) -> Option<Hold> {
    let last_done = ctx
        .views
        .iter()
        .filter_map(|v| ours(ctx.obs, v.node))
        .filter_map(|p| p.completed)
        .max()?;
    let until = add(last_done, ctx.accepted.soak);
    (ctx.obs.now < until).then(|| Hold {
        reason: Reason::Soaking,
        message: format!(
            "soaking after the last node for spec.strategy.soak ({}) until {until}",
            ctx.spec.strategy.soak
        ),
        stalled: false,
    })
}

/// A node's health checks failed their last try (before it starts, or
/// after its uncordon). Before the start, past the check's timeout, it
/// needs a human (Stalled); otherwise it is a wait (after the uncordon the
/// node fails once the timeout passes, and the failure gates take over).
fn unhealthy(ctx: &GateCtx) -> Option<Hold> {
    let p = ctx
        .views
        .iter()
        .filter(|v| v.state == Standing::InFlight)
        .filter_map(|v| ours(ctx.obs, v.node))
        .find(|p| p.unhealthy && matches!(p.phase, NodePhase::Prechecking | NodePhase::Checking))?;
    let timeout = ctx
        .accepted
        .checks
        .iter()
        .filter(|c| p.passes.get(&c.name).copied().unwrap_or(0) < c.threshold)
        .map(|c| c.timeout)
        .min()
        .unwrap_or_default();
    let over = ctx.obs.now >= add(p.since, timeout);
    Some(Hold {
        reason: Reason::HealthCheckFailed,
        message: p.message.clone(),
        stalled: over && p.phase == NodePhase::Prechecking,
    })
}
