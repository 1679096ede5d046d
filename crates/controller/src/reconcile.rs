//! One reconcile pass: observe → plan → write status → act. Every decision
//! is the planner's; every side effect is a node operation; all rollout
//! state is written to the API (status and node annotations) before the
//! pass ends, so any replica can take the next pass.

use std::sync::Arc;
use std::time::Duration;

use drover_api::images::AllowedImages;
use drover_api::known::verify_of;
use drover_api::names::{FIELD_MANAGER, FINALIZER, annotation, condition, label};
use drover_api::{ClusterUpgrade, ClusterUpgradeStatus, EventReason, Outcome, Reason, StepEvent};
use drover_nodeops::{DrainOptions, HealthRequest, NodeOps, RebootRequest, UpgradeRequest};
use drover_plan::{Action, CheckResult, HookPoint, NodeProgress, Step, Transition, step_note};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::error::{Error, Result};
use crate::inflight::Inflight;
use crate::leader::Fence;
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
    /// Node steps performed at once (each node's step runs as its own task;
    /// at least the largest batch, or a batch waits on its slowest steps).
    pub step_concurrency: usize,
    /// How soon to look again while work is in flight.
    pub busy_requeue: Duration,
    /// The shortest time between the starts of two passes over one
    /// ClusterUpgrade. Changes that arrive meanwhile wait for one pass,
    /// which sees them all; a change after a quiet spell is seen at once.
    pub pass_every: Duration,
    /// The images a ClusterUpgrade may run (`--allowed-images`); None allows every image.
    pub allowed_images: Option<AllowedImages>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            self_node: None,
            job_namespace: "kube-system".into(),
            drain_pass: Duration::from_secs(5),
            step_concurrency: 1000,
            busy_requeue: Duration::from_secs(2),
            pass_every: Duration::from_millis(300),
            allowed_images: None,
        }
    }
}

pub struct Context<O: NodeOps> {
    pub client: Client,
    pub ops: O,
    pub nodes: Store<Node>,
    /// The control plane's pods in kube-system (their versions), watch-fed.
    pub control_plane_pods: observe::ControlPlanePods,
    pub upgrades: Store<ClusterUpgrade>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub settings: Settings,
    pub inflight: Arc<Inflight>,
    /// Whether this replica may still act (always, without leader election).
    pub fence: Fence,
    /// When each ClusterUpgrade's last pass started (`Settings::pass_every`).
    pub passes: Passes,
}

/// When each ClusterUpgrade's last pass started, to space passes by
/// `Settings::pass_every`.
#[derive(Debug, Default)]
pub struct Passes(std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>);

impl Passes {
    /// How long a pass over `name` starting now waits first (zero when the
    /// last one started at least `every` ago), and mark it started after that.
    fn wait(&self, name: &str, every: Duration) -> Duration {
        let now = std::time::Instant::now();
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let start = m.get(name).map_or(now, |last| (*last + every).max(now));
        m.insert(name.to_string(), start);
        start - now
    }

    fn forget(&self, name: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }
}

impl<O: NodeOps> Context<O> {
    /// An event regarding the ClusterUpgrade itself (its conditions).
    async fn event(&self, cu: &ClusterUpgrade, warning: bool, reason: EventReason, action: &str, note: String) {
        self.publish(&cu.object_ref(&()), None, warning, reason, action, note)
            .await;
    }

    /// An event about one node: regarding the Node, related to the
    /// ClusterUpgrade. kube's Recorder folds repeats of (reason, action,
    /// regarding, related) into one series that keeps its first note, so
    /// per-node events regarding the one ClusterUpgrade would show the first
    /// node's note for every node; regarding the Node, each node has its own.
    async fn node_event(
        &self,
        cu: &ClusterUpgrade,
        node: &str,
        warning: bool,
        reason: EventReason,
        action: &str,
        note: String,
    ) {
        let regarding = self
            .nodes
            .get(&kube::runtime::reflector::ObjectRef::new(node))
            .map(|n| n.object_ref(&()))
            .unwrap_or_else(|| k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.into()),
                ..Default::default()
            });
        self.publish(&regarding, Some(cu.object_ref(&())), warning, reason, action, note)
            .await;
    }

    async fn publish(
        &self,
        regarding: &k8s_openapi::api::core::v1::ObjectReference,
        related: Option<k8s_openapi::api::core::v1::ObjectReference>,
        warning: bool,
        reason: EventReason,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.as_str().into(),
            note: Some(note.chars().take(1000).collect()),
            action: action.into(),
            secondary: related,
        };
        if let Err(e) = self.recorder.publish(&ev, regarding).await {
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

/// What a progress write is based on: the record as the pass saw it.
#[derive(Debug, Clone, Default)]
pub struct Base {
    /// The annotation's text, when it held the record the step started from.
    pub record: Option<String>,
    /// The node's resourceVersion, for writing where there was no record.
    pub resource_version: Option<String>,
}

impl Base {
    fn of(n: &Node, progress: Option<&NodeProgress>) -> Base {
        let raw = n.annotations().get(annotation::PROGRESS);
        let record = raw.filter(|r| progress.is_some() && NodeProgress::from_annotation(r).as_ref() == progress);
        Base {
            record: record.cloned(),
            resource_version: n.resource_version(),
        }
    }
}

/// Send `request` only while this replica leads; dropped (not sent, or
/// cancelled) once it does not.
async fn fenced<O: NodeOps, T>(
    ctx: &Context<O>,
    request: impl std::future::Future<Output = kube::Result<T>>,
) -> std::result::Result<kube::Result<T>, Error> {
    ctx.fence
        .guard(request)
        .await
        .ok_or_else(|| Error::Other("not leading: the write was not sent".into()))
}

/// Replace `node`'s progress record with `next`, only if it still is what
/// `base` saw: a compare-and-swap, so a pass planned over a stale cache can
/// never move a record backwards or undo another writer. False when the
/// record changed meanwhile (the next pass re-plans from the new one).
/// `also`: annotations set in the same patch as the record (a verified version).
async fn write_progress<O: NodeOps>(
    ctx: &Context<O>,
    node: &str,
    base: &Base,
    next: Option<&NodeProgress>,
    also: &[(String, String)],
) -> Result<bool> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let value = next.map(|p| p.to_annotation());
    // JSON Pointer escapes "/" as "~1".
    let pointer = |key: &str| format!("/metadata/annotations/{}", key.replace('~', "~0").replace('/', "~1"));
    let written = match &base.record {
        Some(record) => {
            let path = pointer(annotation::PROGRESS);
            let mut ops = vec![json!({"op": "test", "path": path, "value": record})];
            ops.push(match &value {
                Some(v) => json!({"op": "replace", "path": path, "value": v}),
                None => json!({"op": "remove", "path": path}),
            });
            // The record is there, so the annotations are: "add" sets or replaces a key.
            for (k, v) in also {
                ops.push(json!({"op": "add", "path": pointer(k), "value": v}));
            }
            let patch: json_patch::Patch =
                serde_json::from_value(json!(ops)).map_err(|e| Error::Other(e.to_string()))?;
            fenced(
                ctx,
                nodes.patch(node, &PatchParams::default(), &Patch::<()>::Json(patch)),
            )
            .await
        }
        // Nothing of ours to remove.
        None if value.is_none() => return Ok(true),
        None => {
            let mut annotations: serde_json::Map<String, serde_json::Value> =
                also.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            annotations.insert(annotation::PROGRESS.into(), json!(value));
            let patch = json!({"metadata": {
                "annotations": annotations,
                "resourceVersion": base.resource_version,
            }});
            fenced(ctx, nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch))).await
        }
    };
    let written = written?;
    match written {
        Ok(_) => {
            ctx.inflight.wrote_with(node, value, also.to_vec());
            Ok(true)
        }
        // 409: the node changed since the pass saw it; 422: the record did (the test failed).
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 422 => {
            ctx.inflight.forget(node);
            tracing::debug!(%node, "the progress record changed meanwhile; re-planning");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Perform one node step and write the record its transition gives for
/// the outcome. Everything this decides was decided by the plan: the
/// effect is the step's, the record the transition's, the event the plan's
/// `step_note`. A step Done with a step chained after it (`t.then`) goes
/// straight on to that one, without writing its own record: `chained`
/// holds the annotations a step before it left to write (a verified
/// version), and says the node still holds `base`'s record, not `t.from`.
async fn step<O: NodeOps>(
    ctx: &Context<O>,
    cu: &ClusterUpgrade,
    node: &str,
    s: &Step,
    t: &Transition,
    base: &Base,
    chained: Option<&[(String, String)]>,
) -> Result<()> {
    let spec = &cu.spec;
    let name = cu.name_any();
    let component = |c: &str| {
        spec.components
            .iter()
            .find(|x| x.name == c)
            .ok_or_else(|| Error::Other(format!("component {c} is not in the spec")))
    };
    // Cordon and uncordon carry the record their Done gives in the same
    // patch, where the node still holds the record this step started from.
    let done_record = base
        .record
        .as_ref()
        .map(|from| (from.as_str(), t.record(&Outcome::Done).map(|p| p.to_annotation())));
    let untaint = matches!(s, Step::Uncordon { untaint: true, .. });
    let carried = chained.unwrap_or_default();
    let record = done_record.as_ref().map(|(from, to)| drover_nodeops::cordon::Record {
        from,
        to: to.as_deref(),
        untaint,
        also: carried,
    });
    let mut recorded = None;
    let done = match s {
        Step::Cordon => match record {
            Some(r) => ctx.ops.cordon_recording(node, &name, r).await.map(|(o, written)| {
                recorded = written.then(|| r.to.map(str::to_string));
                o
            }),
            None => ctx.ops.cordon(node, &name).await,
        },
        Step::Drain => {
            let deadline = t
                .deadline
                .ok_or_else(|| Error::Other(format!("the plan gave the drain of {node} no deadline")))?;
            let mut opts = DrainOptions::from_spec(&spec.drain, deadline);
            opts.pass = ctx.settings.drain_pass;
            ctx.ops.drain(node, &opts).await
        }
        Step::Upgrade {
            component: c,
            version,
            job: installer,
        } => {
            let comp = component(c)?;
            // A rollback installs a previous version with the Job that installed it.
            let job = match installer {
                Some(j) => j.as_ref(),
                None => comp
                    .upgrade
                    .job
                    .as_ref()
                    .ok_or_else(|| Error::Other(format!("{c} has no upgrade job")))?,
            };
            let verify = verify_of(comp);
            let owner = observe::owner(cu);
            let req = UpgradeRequest {
                owner: &owner,
                node,
                component: c,
                version,
                job,
                verify: &verify,
                not_before: Some(t.from.since),
            };
            ctx.ops.upgrade(&req).await
        }
        Step::Verify { component: c, version } => {
            let verify = verify_of(component(c)?);
            ctx.ops.verify(node, c, version, &verify, t.deadline).await
        }
        Step::Reboot {
            component: c,
            boot_id,
            run_job,
        } => {
            let owner = observe::owner(cu);
            let req = RebootRequest {
                owner: &owner,
                node,
                component: c,
                boot_id,
                run_job: *run_job,
                reboot: &spec.reboot,
                deadline: t.deadline,
                not_before: Some(t.from.since),
            };
            ctx.ops.reboot(&req).await
        }
        Step::Uncordon { undo_cordon: true, .. } => match record {
            Some(r) => ctx.ops.uncordon_recording(node, &name, r).await.map(|(o, written)| {
                recorded = written.then(|| r.to.map(str::to_string));
                o
            }),
            None => ctx.ops.uncordon(node, &name).await,
        },
        Step::Uncordon { undo_cordon: false, .. } => Ok(Outcome::Done),
        Step::Hook { hook } => {
            let h = match hook {
                HookPoint::PreDrain => spec.hooks.pre_drain.as_ref(),
                HookPoint::PostUncordon => spec.hooks.post_uncordon.as_ref(),
            }
            .ok_or_else(|| Error::Other(format!("the spec has no {} hook", hook.as_str())))?;
            let job = hook_job(h, *hook);
            let owner = observe::owner(cu);
            let verify = drover_api::Verify {
                node_info: None,
                pod: None,
                job_succeeded: Some(true),
                match_: None,
            };
            let version = drover_plan::canary_hash(spec);
            let req = UpgradeRequest {
                owner: &owner,
                node,
                component: hook_component(*hook),
                version: &version,
                job: &job,
                verify: &verify,
                not_before: Some(t.from.since),
            };
            ctx.ops.upgrade(&req).await
        }
        Step::Health { .. } => {
            let answers = health(ctx, cu, node, s).await?;
            let (outcome, next) = t.record_health(&answers);
            let written = Written {
                recorded: None,
                also: carried,
                chained: chained.is_some(),
            };
            return finish(ctx, cu, node, s, t, base, outcome, next, written).await;
        }
    };
    // A request the API server refuses for good (an invalid Job, a policy
    // that forbids it) fails the step in the server's words, instead of
    // being retried every pass while status says nothing.
    let outcome = match done {
        Ok(o) => o,
        Err(e) => match drover_nodeops::refused_for_good(&e).and_then(|text| s.when_refused(&text)) {
            Some(failed) => failed,
            None => return Err(e.into()),
        },
    };
    let next = t.record(&outcome);
    // A record that went with the step's own patch is only that if the
    // outcome is the Done it was written for.
    let recorded = recorded.filter(|_| outcome == Outcome::Done);
    // A verified version goes on the node with the record that moves past it.
    let mut also = carried.to_vec();
    if let Step::Verify { component: c, version } = s
        && outcome == Outcome::Done
    {
        also.push((format!("{}{c}", annotation::VERIFIED_PREFIX), version.clone()));
    }
    if let Some(then) = &t.then
        && outcome == Outcome::Done
        && recorded.is_none()
        && t.on_done.as_ref() == Some(&then.transition.from)
    {
        // Done, and the plan chained the next step: say so, and go on.
        count(ctx, s, &outcome);
        say(ctx, cu, node, s, t, &outcome).await;
        let (s, t) = then.at(now());
        return Box::pin(step(ctx, cu, node, &s, &t, base, Some(&also))).await;
    }
    let written = Written {
        recorded,
        also: &also,
        chained: chained.is_some(),
    };
    finish(ctx, cu, node, s, t, base, outcome, next, written).await
}

/// How a step's record gets written: by the step's own patch (`recorded`,
/// the value it wrote), or by [`finish`] with the annotations `also`.
/// `chained`: the node holds the record of a step before this one, so even
/// the record the step started from is written.
struct Written<'a> {
    recorded: Option<Option<String>>,
    also: &'a [(String, String)],
    chained: bool,
}

/// The Job component name a hook runs under (its Job's name, its pods' label).
fn hook_component(hook: HookPoint) -> &'static str {
    match hook {
        HookPoint::PreDrain => "hook-pre-drain",
        HookPoint::PostUncordon => "hook-post-uncordon",
    }
}

/// A hook as a Job on the node: DROVER_HOOK says which; it runs once
/// (backoffLimit 0), bounded by the hook's timeout.
fn hook_job(h: &drover_api::Hook, hook: HookPoint) -> drover_api::JobUpgrade {
    let mut env = h.env.clone();
    env.push(drover_api::EnvVar {
        name: "DROVER_HOOK".into(),
        value: hook.as_str().into(),
    });
    drover_api::JobUpgrade {
        image: h.image.clone(),
        command: h.command.clone(),
        args: h.args.clone(),
        env,
        privileged: h.privileged,
        host_root: h.host_root,
        timeout: h.timeout.clone(),
        reboots: false,
        backoff_limit: 0,
    }
}

/// One try of each named health check for `node`, in the spec's order.
async fn health<O: NodeOps>(ctx: &Context<O>, cu: &ClusterUpgrade, node: &str, s: &Step) -> Result<Vec<CheckResult>> {
    let Step::Health {
        checks,
        component,
        since,
        control_plane,
        etcd,
        is_member,
        ..
    } = s
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for check in cu.spec.health_checks.iter().filter(|c| checks.contains(&c.name)) {
        let req = HealthRequest {
            check,
            node,
            component,
            since: *since,
            control_plane,
            etcd,
            is_member: *is_member,
            namespace: &ctx.settings.job_namespace,
        };
        let a = ctx.ops.health(&req).await?;
        out.push(CheckResult {
            name: check.name.clone(),
            passed: a.passed,
            answer: a.answer,
        });
    }
    Ok(out)
}

/// Count a step's outcome, write the record it comes to as `written`
/// says, and say what happened (once per change).
#[allow(clippy::too_many_arguments)]
async fn finish<O: NodeOps>(
    ctx: &Context<O>,
    cu: &ClusterUpgrade,
    node: &str,
    s: &Step,
    t: &Transition,
    base: &Base,
    outcome: Outcome,
    next: Option<drover_plan::NodeProgress>,
    written: Written<'_>,
) -> Result<()> {
    count(ctx, s, &outcome);
    if next.as_ref() == Some(&t.from) && !written.chained {
        return Ok(());
    }
    match written.recorded {
        Some(value) => ctx.inflight.wrote(node, value),
        None => {
            if !write_progress(ctx, node, base, next.as_ref(), written.also).await? {
                return Ok(());
            }
        }
    }
    say(ctx, cu, node, s, t, &outcome).await;
    Ok(())
}

/// Count a step's outcome.
fn count<O: NodeOps>(ctx: &Context<O>, s: &Step, outcome: &Outcome) {
    ctx.metrics
        .steps
        .get_or_create(&StepLabels {
            step: s.name().into(),
            outcome: outcome.kind().into(),
        })
        .inc();
}

/// Say what a recorded step came to: its time, a drain's block, and the
/// event when the plan's note makes it one.
async fn say<O: NodeOps>(
    ctx: &Context<O>,
    cu: &ClusterUpgrade,
    node: &str,
    s: &Step,
    t: &Transition,
    outcome: &Outcome,
) {
    let name = cu.name_any();
    let Some(note) = step_note(node, s, t, outcome, now()) else {
        return;
    };
    if let Some(took) = note.took {
        ctx.metrics
            .step_duration
            .get_or_create(&StepKind { step: s.name().into() })
            .observe(took.as_secs_f64());
    }
    if matches!(outcome, Outcome::Blocked { .. }) {
        ctx.metrics
            .drain_blocks
            .get_or_create(&UpgradeLabels { upgrade: name.clone() })
            .inc();
    }
    if note.event {
        ctx.node_event(cu, node, note.warning, note.reason, note.action, note.note)
            .await;
    }
}

async fn act<O: NodeOps>(ctx: &Context<O>, cu: &ClusterUpgrade, action: &Action, base: &Base) -> Result<()> {
    match action {
        Action::Start { node, progress } => {
            if write_progress(ctx, node, base, Some(progress), &[]).await? {
                let note = format!("starting node {node}");
                ctx.node_event(cu, node, false, StepEvent::NodeStarted.into(), "Start", note)
                    .await;
            }
            Ok(())
        }
        Action::Step {
            node,
            step: s,
            transition,
        } => step(ctx, cu, node, s, transition, base, None).await,
        Action::UpgradeWorkload { component, version } => {
            let c = cu.spec.components.iter().find(|c| &c.name == component);
            let Some(w) = c.and_then(|c| c.upgrade.workload.as_ref()) else {
                return Ok(());
            };
            let out = ctx.ops.upgrade_workload(w, version).await?;
            if let Outcome::Failed { reason, message } = &out {
                ctx.event(cu, true, (*reason).into(), "UpgradeWorkload", message.clone())
                    .await;
            }
            Ok(())
        }
        Action::Steer { node, mark } => {
            let Some(n) = ctx.nodes.get(&kube::runtime::reflector::ObjectRef::new(node)) else {
                return Ok(());
            };
            let owner = cu.name_any();
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            fenced(ctx, drover_nodeops::steer::set(&nodes, &n, &owner, *mark)).await??;
            Ok(())
        }
        Action::RunBackup { backup_hash } => {
            if let Some(b) = &cu.spec.backup {
                ctx.ops.ensure_backup(&observe::owner(cu), backup_hash, b).await?;
            }
            Ok(())
        }
    }
}

/// Run a node step as its own task, so that a pass never waits on its
/// slowest step and each node moves on as soon as its step ends (the
/// progress write wakes the next pass). One step per node at a time.
fn spawn_step<O: NodeOps + 'static>(ctx: &Arc<Context<O>>, cu: &Arc<ClusterUpgrade>, action: Action, base: Base) {
    let Some(node) = action.node().map(str::to_string) else {
        return;
    };
    if !ctx.fence.leading() {
        return;
    }
    let Some(claim) = ctx.inflight.claim(&node, &cu.name_any()) else {
        return;
    };
    let (task_ctx, cu, task_node) = (ctx.clone(), cu.clone(), node.clone());
    let handle = tokio::spawn(async move {
        let node = task_node;
        let _claim = claim;
        let Ok(_permit) = task_ctx.inflight.permits.clone().acquire_owned().await else {
            return;
        };
        // The step ends the moment leadership does (the next leader resumes it from its record).
        let Some(done) = task_ctx.fence.guard(act(&task_ctx, &cu, &action, &base)).await else {
            tracing::warn!(upgrade = %cu.name_any(), %node, "not leading any more: the step was stopped");
            return;
        };
        if let Err(e) = done {
            task_ctx.metrics.api_errors.inc();
            tracing::warn!(upgrade = %cu.name_any(), %node, error = %e, "a step failed; it is retried on the next pass");
        }
    });
    ctx.inflight.set_abort(&node, handle.abort_handle());
}

/// Undo everything drover holds for a ClusterUpgrade being deleted; kube's
/// finalizer helper then removes drover's finalizer and lets it go.
async fn cleanup<O: NodeOps>(ctx: &Context<O>, cu: &ClusterUpgrade) -> Result<Requeue> {
    let name = cu.name_any();
    // A step still running could cordon after the sweep below; let them end first (each is bounded).
    let running = ctx.inflight.running_for(&name);
    if running > 0 {
        return Err(Error::Busy(format!(
            "{running} node steps of {name} still running; cleaning up when they end"
        )));
    }
    for n in ctx.nodes.state() {
        let n = ctx.inflight.overlay(n);
        let a = n.annotations();
        let ours = a
            .get(annotation::PROGRESS)
            .and_then(|p| NodeProgress::from_annotation(p))
            .filter(|p| p.upgrade == name);
        // A node with our record may carry a cordon the cache has not shown
        // yet; uncordon reads the node and undoes only drover's own cordon.
        if a.get(annotation::CORDONED_BY) == Some(&name) || ours.is_some() {
            let node = n.name_any();
            match ctx.ops.uncordon(&node, &name).await? {
                Outcome::Done => {}
                // Keep the finalizer until the cordon is undone.
                other => {
                    return Err(Error::Busy(format!(
                        "the cordon of {node} is not undone yet ({}); cleaning up again",
                        other.kind()
                    )));
                }
            }
        }
        if drover_nodeops::steer::owner(&n).as_deref() == Some(name.as_str()) {
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            // Keep the finalizer until the taint is off (its taints changed meanwhile: again).
            if !drover_nodeops::steer::set(&nodes, &n, &name, false).await? {
                return Err(Error::Busy(format!(
                    "the taints of {} changed while removing drover's; cleaning up again",
                    n.name_any()
                )));
            }
        }
        if ours.is_some() && !write_progress(ctx, &n.name_any(), &Base::of(&n, ours.as_ref()), None, &[]).await? {
            return Err(Error::Other(format!(
                "the progress record of node {} changed during cleanup",
                n.name_any()
            )));
        }
    }
    let selector = format!("{}={}", label::UPGRADE, name);
    let mut namespaces = std::collections::BTreeSet::from([ctx.settings.job_namespace.clone()]);
    if let Some(b) = &cu.spec.backup {
        namespaces.insert(b.namespace.clone());
    }
    for ns in namespaces {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        jobs.delete_collection(&DeleteParams::background(), &ListParams::default().labels(&selector))
            .await?;
    }
    tracing::info!(upgrade = %name, "cleaned up: drover's cordons undone, Jobs deleted");
    ctx.passes.forget(&name);
    Ok(Requeue::await_change())
}

pub async fn reconcile<O: NodeOps + 'static>(cu: Arc<ClusterUpgrade>, ctx: Arc<Context<O>>) -> Result<Requeue> {
    // kube runs one pass per object at a time, and the changes that come
    // while one runs (or waits here) wake a single next one.
    let wait = ctx.passes.wait(&cu.name_any(), ctx.settings.pass_every);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(cu, &ctx).await;
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    if matches!(result, Err(ref e) if !e.is_busy()) {
        ctx.metrics.reconcile_errors.inc();
        ctx.metrics.api_errors.inc();
    }
    result
}

async fn reconcile_inner<O: NodeOps + 'static>(cu: Arc<ClusterUpgrade>, ctx: &Arc<Context<O>>) -> Result<Requeue> {
    // Never plan over an empty cache: zero nodes would look like a finished rollout.
    if tokio::time::timeout(Duration::from_secs(30), ctx.nodes.wait_until_ready())
        .await
        .is_err()
    {
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }
    let api: Api<ClusterUpgrade> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, cu, |event| async move {
        match event {
            FinalizerEvent::Apply(cu) => apply(&cu, ctx).await,
            FinalizerEvent::Cleanup(cu) => cleanup(ctx, &cu).await,
        }
    })
    .await
    .map_err(Error::from_finalizer)
}

/// One pass for a ClusterUpgrade that carries drover's finalizer.
async fn apply<O: NodeOps + 'static>(cu: &Arc<ClusterUpgrade>, ctx: &Arc<Context<O>>) -> Result<Requeue> {
    let name = cu.name_any();
    let api: Api<ClusterUpgrade> = Api::all(ctx.client.clone());
    // The cache, with our own writes it has not shown yet.
    let nodes: Vec<Arc<Node>> = ctx.nodes.state().into_iter().map(|n| ctx.inflight.overlay(n)).collect();
    let upgrades = ctx.upgrades.state();
    let mut obs = observe::observe(
        &ctx.client,
        &ctx.control_plane_pods,
        &ctx.ops,
        cu,
        &nodes,
        &upgrades,
        ctx.settings.self_node.clone(),
        Some(&ctx.settings.job_namespace),
    )
    .await?;
    obs.allowed_images = ctx.settings.allowed_images.clone();
    let obs = drover_plan::Observation {
        writer: ctx.fence.writer(),
        ..obs
    };
    let plan = drover_plan::plan(&cu.spec, &obs);
    if let Some(later) = &plan.superseded {
        // Another replica has led since this one's term began: write nothing, stop leading.
        ctx.fence.depose(later.to_string());
        return Err(Error::Other(format!("not acting: {later}")));
    }
    let status = drover_plan::report::status(&cu.spec, &obs, &plan);
    ctx.metrics.set_counts(&name, &status.counts);

    if cu.status.as_ref() != Some(&status) {
        let before = ready_condition(cu.status.as_ref());
        let after = ready_condition(Some(&status));
        let body = json!({"apiVersion": "drover.dev/v1alpha1", "kind": "ClusterUpgrade", "status": status});
        fenced(
            ctx,
            api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)),
        )
        .await??;
        if before != after
            && let Some((ready, why)) = &after
            && let Some(why) = Reason::parse(why)
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
            // Counted when Ready becomes True, not when its reason changes while True.
            if ready == "True" && before.as_ref().is_none_or(|b| b.0 != "True") {
                ctx.metrics
                    .rollouts_completed
                    .get_or_create(&UpgradeLabels { upgrade: name.clone() })
                    .inc();
            }
            ctx.event(cu, stalled, why.into(), "Reconcile", message).await;
        }
    }

    // Nodes that joined or left since the last pass: said, and a deleted
    // node's running step and upgrade Jobs are dropped (nothing else holds it).
    let now_seen = drover_plan::membership::seen(&plan);
    let before = ctx.inflight.swap_seen(&name, now_seen.clone());
    for change in drover_plan::membership::changes(&before, &now_seen, &plan.target) {
        if change.left_in_flight {
            ctx.inflight.abort_node(&change.node);
            let selector = format!(
                "{}={},{}={}",
                label::UPGRADE,
                drover_nodeops::job::label_value(&name),
                label::NODE,
                drover_nodeops::job::label_value(&change.node)
            );
            let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.settings.job_namespace);
            if let Err(e) = jobs
                .delete_collection(&DeleteParams::background(), &ListParams::default().labels(&selector))
                .await
            {
                tracing::warn!(node = %change.node, error = %e, "cannot delete the upgrade Jobs of a deleted node");
            }
        }
        tracing::info!(upgrade = %name, node = %change.node, "{}", change.note);
        let action = if change.reason == EventReason::Step(StepEvent::NodeJoined) {
            "Join"
        } else {
            "Leave"
        };
        ctx.node_event(cu, &change.node, change.warning, change.reason, action, change.note)
            .await;
    }

    // Act: node steps as their own tasks; starts, workloads and the backup here.
    let by_name: std::collections::HashMap<String, &Arc<Node>> = nodes.iter().map(|n| (n.name_any(), n)).collect();
    let base = |a: &Action| match a {
        Action::Start { node, .. } => by_name.get(node).map(|n| Base::of(n, None)).unwrap_or_default(),
        Action::Step { node, transition, .. } => by_name
            .get(node)
            .map(|n| Base::of(n, Some(&transition.from)))
            .unwrap_or_default(),
        _ => Base::default(),
    };
    let mut here = Vec::new();
    for a in &plan.actions {
        match a {
            Action::Step { .. } => spawn_step(ctx, cu, a.clone(), base(a)),
            _ => here.push((a.clone(), base(a))),
        }
    }
    let results: Vec<Result<()>> = futures::stream::iter(here)
        .map(|(a, b)| async move { act(ctx, cu, &a, &b).await })
        .buffer_unordered(64)
        .collect()
        .await;
    for r in &results {
        if let Err(e) = r {
            ctx.metrics.api_errors.inc();
            tracing::warn!(upgrade = %name, error = %e, "an action failed; it is retried on the next pass");
        }
    }
    Ok(Requeue::requeue(plan.requeue_after(ctx.settings.busy_requeue, obs.now)))
}

pub fn error_policy<O: NodeOps>(cu: Arc<ClusterUpgrade>, err: &Error, _ctx: Arc<Context<O>>) -> Requeue {
    if err.is_busy() {
        tracing::debug!(upgrade = %cu.name_any(), why = %err, "waiting");
        return Requeue::requeue(Duration::from_millis(500));
    }
    tracing::warn!(upgrade = %cu.name_any(), error = %err, "reconcile failed; retrying");
    Requeue::requeue(Duration::from_secs(2))
}

#[cfg(test)]
mod pass_spacing {
    use super::*;

    #[test]
    fn a_pass_right_after_another_waits_out_the_spacing_and_one_after_a_quiet_spell_does_not() {
        let passes = Passes::default();
        let every = Duration::from_millis(200);
        assert_eq!(passes.wait("a", every), Duration::ZERO, "the first pass runs at once");
        let second = passes.wait("a", every);
        assert!(
            second > Duration::from_millis(150) && second <= every,
            "a pass right after the first waits for the rest of the spacing: {second:?}"
        );
        // A third one queued meanwhile goes after the second, not with it.
        let third = passes.wait("a", every);
        assert!(third > second, "{third:?} after {second:?}");
        assert_eq!(
            passes.wait("b", every),
            Duration::ZERO,
            "each ClusterUpgrade has its own spacing"
        );
        passes.forget("a");
        assert_eq!(passes.wait("a", every), Duration::ZERO, "a deleted one starts afresh");
    }
}
