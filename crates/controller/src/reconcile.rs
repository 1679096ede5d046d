//! One reconcile pass: observe → plan → write status → act. Every decision
//! is the planner's; every side effect is a node operation; all rollout
//! state is written to the API (status and node annotations) before the
//! pass ends, so any replica can take the next pass.

use std::sync::Arc;
use std::time::Duration;

use drover_api::known::verify_of;
use drover_api::names::{FIELD_MANAGER, FINALIZER, annotation, condition, label, reason};
use drover_api::{ClusterUpgrade, ClusterUpgradeStatus};
use drover_nodeops::{DrainOptions, NodeOps, UpgradeRequest};
use drover_plan::{Action, NodeProgress, Outcome, Step, after_outcome, step_deadline};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::error::{Error, Result};
use crate::metrics::{Metrics, StepKind, StepLabels, UpgradeLabels};
use crate::observe::{self, now};

/// Knobs of the loop.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The node drover runs on (it goes last among workers).
    pub self_node: Option<String>,
    /// Namespace of upgrade Jobs.
    pub job_namespace: String,
    /// The longest one drain pass runs before the loop reports progress.
    pub drain_pass: Duration,
    /// Node steps performed at once.
    pub step_concurrency: usize,
    /// How soon to look again while work is in flight.
    pub busy_requeue: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            self_node: None,
            job_namespace: "kube-system".into(),
            drain_pass: Duration::from_secs(5),
            step_concurrency: 64,
            busy_requeue: Duration::from_secs(2),
        }
    }
}

pub struct Context<O: NodeOps> {
    pub client: Client,
    pub ops: O,
    pub nodes: Store<Node>,
    pub upgrades: Store<ClusterUpgrade>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub settings: Settings,
}

impl<O: NodeOps> Context<O> {
    async fn event(&self, cu: &ClusterUpgrade, warning: bool, reason: &str, action: &str, note: String) {
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &cu.object_ref(&())).await {
            tracing::debug!(error = %e, "publishing an event failed");
        }
    }
}

fn ready_condition(s: Option<&ClusterUpgradeStatus>) -> Option<(String, String)> {
    s?.conditions
        .iter()
        .find(|c| c.type_ == condition::READY)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn write_progress(nodes: &Api<Node>, node: &str, progress: Option<&NodeProgress>) -> Result<()> {
    let value = progress.map(|p| p.to_annotation());
    let patch = json!({"metadata": {"annotations": {annotation::PROGRESS: value}}});
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn outcome_kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Done => "done",
        Outcome::Waiting { .. } => "waiting",
        Outcome::Blocked { .. } => "blocked",
        Outcome::Failed { .. } => "failed",
    }
}

fn step_name(s: &Step) -> &'static str {
    match s {
        Step::Cordon => "Cordon",
        Step::Drain => "Drain",
        Step::Upgrade { .. } => "Upgrade",
        Step::Verify { .. } => "Verify",
        Step::Uncordon { .. } => "Uncordon",
    }
}

/// Perform one node step and record what it came to.
async fn step<O: NodeOps>(
    ctx: &Context<O>,
    cu: &ClusterUpgrade,
    node: &str,
    s: &Step,
    progress: &NodeProgress,
    on_done: Option<&NodeProgress>,
) -> Result<()> {
    let spec = &cu.spec;
    let name = cu.name_any();
    let deadline = step_deadline(spec, progress);
    let component = |c: &str| {
        spec.components
            .iter()
            .find(|x| x.name == c)
            .ok_or_else(|| Error::Other(format!("component {c} is not in the spec")))
    };
    let outcome = match s {
        Step::Cordon => ctx.ops.cordon(node, &name).await?,
        Step::Drain => {
            let deadline = deadline.unwrap_or_else(|| now() + jiff::SignedDuration::from_mins(15));
            let mut opts = DrainOptions::from_spec(&spec.drain, deadline);
            opts.pass = ctx.settings.drain_pass;
            ctx.ops.drain(node, &opts).await?
        }
        Step::Upgrade { component: c, version } => {
            let comp = component(c)?;
            let job = comp
                .upgrade
                .job
                .as_ref()
                .ok_or_else(|| Error::Other(format!("{c} has no upgrade job")))?;
            let verify = verify_of(comp);
            let owner = observe::owner(cu);
            let req = UpgradeRequest {
                owner: &owner,
                node,
                component: c,
                version,
                job,
                verify: &verify,
                not_before: Some(progress.since),
            };
            ctx.ops.upgrade(&req).await?
        }
        Step::Verify { component: c, version } => {
            let verify = verify_of(component(c)?);
            ctx.ops.verify(node, c, version, &verify, deadline).await?
        }
        Step::Uncordon { undo_cordon: true } => ctx.ops.uncordon(node, &name).await?,
        Step::Uncordon { undo_cordon: false } => Outcome::Done,
    };
    ctx.metrics
        .steps
        .get_or_create(&StepLabels {
            step: step_name(s).into(),
            outcome: outcome_kind(&outcome).into(),
        })
        .inc();
    let next = match &outcome {
        Outcome::Done => on_done.cloned(),
        other => Some(after_outcome(spec, progress, other, now())),
    };
    if next.as_ref() == Some(progress) {
        return Ok(());
    }
    write_progress(&Api::all(ctx.client.clone()), node, next.as_ref()).await?;

    // Say what happened, once per change.
    let what = match s {
        Step::Upgrade { component, version } | Step::Verify { component, version } => format!(" {component} {version}"),
        _ => String::new(),
    };
    match &outcome {
        Outcome::Done => {
            let secs = (now() - progress.since).get_seconds().max(0) as f64;
            ctx.metrics
                .step_duration
                .get_or_create(&StepKind {
                    step: step_name(s).into(),
                })
                .observe(secs);
            let (reason, note) = match s {
                Step::Cordon => ("Cordoned", format!("node {node} cordoned")),
                Step::Drain => ("Drained", format!("node {node} drained")),
                Step::Upgrade { .. } => ("Upgraded", format!("node {node}: upgraded{what}")),
                Step::Verify { .. } => ("Verified", format!("node {node}: verified{what}")),
                Step::Uncordon { .. } if progress.failure.is_some() => (
                    "NodeFailed",
                    format!(
                        "node {node} failed and was handed back: {}",
                        progress
                            .failure
                            .as_ref()
                            .map(|f| f.message.as_str())
                            .unwrap_or_default()
                    ),
                ),
                Step::Uncordon { .. } if on_done.is_none() => (
                    "NodeReleased",
                    format!("node {node} handed back without finishing (the plan changed)"),
                ),
                Step::Uncordon { .. } => ("NodeUpgraded", format!("node {node} finished and is schedulable again")),
            };
            let warning = reason == "NodeFailed";
            ctx.event(cu, warning, reason, step_name(s), note).await;
        }
        Outcome::Blocked { message, timed_out } => {
            ctx.metrics
                .drain_blocks
                .get_or_create(&UpgradeLabels { upgrade: name.clone() })
                .inc();
            let note = format!(
                "drain of {node}{}: {message}",
                if *timed_out { " timed out" } else { " blocked" }
            );
            ctx.event(cu, true, reason::DRAIN_BLOCKED, "Drain", note).await;
        }
        Outcome::Failed { reason, message } => {
            ctx.event(cu, true, reason, step_name(s), format!("node {node}{what}: {message}"))
                .await;
        }
        Outcome::Waiting { .. } => {}
    }
    Ok(())
}

async fn act<O: NodeOps>(ctx: &Context<O>, cu: &ClusterUpgrade, action: &Action, target_hash: &str) -> Result<()> {
    match action {
        Action::Start { node, progress } => {
            write_progress(&Api::all(ctx.client.clone()), node, Some(progress)).await?;
            ctx.event(cu, false, "NodeStarted", "Start", format!("starting node {node}"))
                .await;
            Ok(())
        }
        Action::Step {
            node,
            step: s,
            progress,
            on_done,
        } => step(ctx, cu, node, s, progress, on_done.as_ref()).await,
        Action::UpgradeWorkload { component, version } => {
            let c = cu.spec.components.iter().find(|c| &c.name == component);
            let Some(w) = c.and_then(|c| c.upgrade.workload.as_ref()) else {
                return Ok(());
            };
            let out = ctx.ops.upgrade_workload(w, version).await?;
            if let Outcome::Failed { reason, message } = &out {
                ctx.event(cu, true, reason, "UpgradeWorkload", message.clone()).await;
            }
            Ok(())
        }
        Action::RunBackup => {
            if let Some(b) = &cu.spec.backup {
                ctx.ops.ensure_backup(&observe::owner(cu), target_hash, b).await?;
            }
            Ok(())
        }
    }
}

/// Undo everything drover holds for a ClusterUpgrade being deleted, then let it go.
async fn cleanup<O: NodeOps>(ctx: &Context<O>, cu: &ClusterUpgrade) -> Result<Requeue> {
    let name = cu.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    for n in ctx.nodes.state() {
        let a = n.annotations();
        if a.get(annotation::CORDONED_BY) == Some(&name) {
            ctx.ops.uncordon(&n.name_any(), &name).await?;
        }
        if a.get(annotation::PROGRESS)
            .and_then(|p| NodeProgress::from_annotation(p))
            .is_some_and(|p| p.upgrade == name)
        {
            write_progress(&nodes, &n.name_any(), None).await?;
        }
    }
    let selector = format!("{}={}", label::UPGRADE, name);
    let mut namespaces = vec![ctx.settings.job_namespace.clone()];
    if let Some(b) = &cu.spec.backup {
        namespaces.push(b.namespace.clone());
    }
    for ns in namespaces {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        jobs.delete_collection(&DeleteParams::background(), &ListParams::default().labels(&selector))
            .await?;
    }
    let finalizers: Vec<String> = cu.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    let api: Api<ClusterUpgrade> = Api::all(ctx.client.clone());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": cu.resource_version()}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tracing::info!(upgrade = %name, "cleaned up: drover's cordons undone, Jobs deleted");
    Ok(Requeue::await_change())
}

pub async fn reconcile<O: NodeOps>(cu: Arc<ClusterUpgrade>, ctx: Arc<Context<O>>) -> Result<Requeue> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(&cu, &ctx).await;
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        ctx.metrics.reconcile_errors.inc();
        ctx.metrics.api_errors.inc();
    }
    result
}

async fn reconcile_inner<O: NodeOps>(cu: &ClusterUpgrade, ctx: &Context<O>) -> Result<Requeue> {
    // Never plan over an empty cache: zero nodes would look like a finished rollout.
    if tokio::time::timeout(Duration::from_secs(30), ctx.nodes.wait_until_ready())
        .await
        .is_err()
    {
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }
    let name = cu.name_any();
    let api: Api<ClusterUpgrade> = Api::all(ctx.client.clone());
    if cu.meta().deletion_timestamp.is_some() {
        return if cu.finalizers().iter().any(|f| f == FINALIZER) {
            cleanup(ctx, cu).await
        } else {
            Ok(Requeue::await_change())
        };
    }
    if !cu.finalizers().iter().any(|f| f == FINALIZER) {
        let mut finalizers = cu.finalizers().to_vec();
        finalizers.push(FINALIZER.into());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": cu.resource_version()}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }

    let nodes = ctx.nodes.state();
    let upgrades = ctx.upgrades.state();
    let obs = observe::observe(
        &ctx.client,
        &ctx.ops,
        cu,
        &nodes,
        &upgrades,
        ctx.settings.self_node.clone(),
    )
    .await?;
    let plan = drover_plan::plan(&cu.spec, &obs);
    let status = drover_plan::report::status(&cu.spec, &obs, &plan);
    ctx.metrics.set_counts(&name, &status.counts);

    if cu.status.as_ref() != Some(&status) {
        let before = ready_condition(cu.status.as_ref());
        let after = ready_condition(Some(&status));
        let body = json!({"apiVersion": "drover.dev/v1alpha1", "kind": "ClusterUpgrade", "status": status});
        api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
            .await?;
        if before != after
            && let Some((ready, why)) = &after
        {
            let message = status
                .conditions
                .iter()
                .find(|c| c.type_ == condition::READY)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            let stalled = status
                .conditions
                .iter()
                .any(|c| c.type_ == condition::STALLED && c.status == "True");
            if ready == "True" {
                ctx.metrics
                    .rollouts_completed
                    .get_or_create(&UpgradeLabels { upgrade: name.clone() })
                    .inc();
            }
            ctx.event(cu, stalled, why, "Reconcile", message).await;
        }
    }

    // Act, a bounded number of node steps at once.
    let hash = plan.target_hash.as_str();
    let results: Vec<Result<()>> = futures::stream::iter(plan.actions.clone())
        .map(|a| async move { act(ctx, cu, &a, hash).await })
        .buffer_unordered(ctx.settings.step_concurrency.max(1))
        .collect()
        .await;
    for r in &results {
        if let Err(e) = r {
            ctx.metrics.api_errors.inc();
            tracing::warn!(upgrade = %name, error = %e, "a step failed; it is retried on the next pass");
        }
    }

    Ok(if !plan.actions.is_empty() {
        Requeue::requeue(ctx.settings.busy_requeue)
    } else {
        match plan.hold.as_ref().map(|h| h.reason) {
            Some(reason::SOAKING) => Requeue::requeue(Duration::from_secs(5)),
            Some(reason::OUTSIDE_WINDOW) => Requeue::requeue(Duration::from_secs(60)),
            Some(reason::BACKING_UP) => Requeue::requeue(Duration::from_secs(5)),
            _ if plan.stage != drover_plan::RolloutStage::Complete => Requeue::requeue(Duration::from_secs(10)),
            _ => Requeue::requeue(Duration::from_secs(300)),
        }
    })
}

pub fn error_policy<O: NodeOps>(cu: Arc<ClusterUpgrade>, err: &Error, _ctx: Arc<Context<O>>) -> Requeue {
    tracing::warn!(upgrade = %cu.name_any(), error = %err, "reconcile failed; retrying");
    Requeue::requeue(Duration::from_secs(2))
}
