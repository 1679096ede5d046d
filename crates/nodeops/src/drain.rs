//! Drain with `kubectl drain` semantics: skip mirror and DaemonSet pods,
//! refuse pods with emptyDir data or without a controller unless allowed,
//! evict the rest through `pods/eviction` a few at a time, retry budget
//! refusals on drover's own cadence, and wait for each evicted pod to be gone
//! by watching the node's pods. Budget allowances come from the shared
//! [`BudgetCache`]. Each call does one bounded pass and reports what is left;
//! the caller persists the deadline, so a restart resumes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use drover_api::Outcome;
use drover_api::Reason;
use drover_api::selector::Matcher;
use drover_api::{DrainTimeoutAction, names::label};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ListParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::budgets::{BudgetCache, budget_key};
use crate::error::{Result, is_not_found};
use crate::eviction::{Evicted, Evictor};

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The longest a pass waits for the budget cache's first list.
const CACHE_SYNC: Duration = Duration::from_secs(10);

/// How to drain, from `spec.drain` plus the persisted deadline.
#[derive(Debug, Clone)]
pub struct DrainOptions {
    pub grace_period_seconds: Option<i64>,
    pub delete_empty_dir_data: bool,
    pub force: bool,
    pub pod_selector: Option<LabelSelector>,
    pub on_timeout: DrainTimeoutAction,
    /// When the drain as a whole times out (from when the node entered Draining).
    pub deadline: Timestamp,
    /// The longest this call may take before it reports progress.
    pub pass: Duration,
    /// How long to wait before evicting a budget-blocked pod again (kubectl: 5s).
    pub retry_every: Duration,
    /// Evictions in flight at once.
    pub concurrency: usize,
}

impl DrainOptions {
    pub fn from_spec(drain: &drover_api::Drain, deadline: Timestamp) -> Self {
        DrainOptions {
            grace_period_seconds: drain.grace_period_seconds,
            delete_empty_dir_data: drain.delete_empty_dir_data,
            force: drain.force,
            pod_selector: drain.pod_selector.clone(),
            on_timeout: drain.on_timeout,
            deadline,
            pass: Duration::from_secs(30),
            retry_every: Duration::from_secs(5),
            concurrency: 8,
        }
    }
}

/// What to do with one pod on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodDisposition {
    /// Mirror (static) pods, DaemonSet pods, drover's own Job pods and pods outside the pod selector stay.
    Skip(&'static str),
    /// Pods the spec does not allow drover to evict.
    Refuse(String),
    Evict,
}

fn controller_kind(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.kind.as_str())
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// kubectl drain's filters, in kubectl's order.
pub fn disposition(pod: &Pod, opts: &DrainOptions) -> PodDisposition {
    if pod.annotations().contains_key(MIRROR_ANNOTATION) {
        return PodDisposition::Skip("mirror pod");
    }
    if controller_kind(pod) == Some("DaemonSet") {
        return PodDisposition::Skip("DaemonSet pod");
    }
    // The upgrade Job runs on the node being drained (a drain re-run while it
    // runs must not kill it). The Job owner keeps a label alone from exempting a pod.
    if controller_kind(pod) == Some("Job")
        && pod.labels().get(label::MANAGED_BY).map(String::as_str) == Some(label::MANAGED_BY_VALUE)
    {
        return PodDisposition::Skip("drover's own Job pod");
    }
    if let Some(sel) = &opts.pod_selector
        && !drover_api::selector::matches(sel, pod.labels())
    {
        return PodDisposition::Skip("outside spec.drain.podSelector");
    }
    if finished(pod) {
        return PodDisposition::Evict;
    }
    if controller_kind(pod).is_none() && !opts.force {
        return PodDisposition::Refuse("no controller will recreate it (set spec.drain.force to evict it)".into());
    }
    let empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| vs.iter().any(|v| v.empty_dir.is_some()));
    if empty_dir && !opts.delete_empty_dir_data {
        return PodDisposition::Refuse("it has emptyDir data (set spec.drain.deleteEmptyDirData to evict it)".into());
    }
    PodDisposition::Evict
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// The drainer of one node.
pub struct Drainer<'a> {
    pub client: &'a Client,
    pub evictor: &'a Evictor,
    pub budgets: &'a BudgetCache,
}

impl Drainer<'_> {
    /// One bounded pass of draining `node`.
    pub async fn drain(&self, node: &str, opts: &DrainOptions) -> Result<Outcome> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let on_node = format!("spec.nodeName={node}");
        let start = Instant::now();
        let pass_end = start + opts.pass;
        let mut budget_events = self.budgets.subscribe();
        // Budget refusals seen last, by pod, and when each pod may be tried again.
        let mut blocked: BTreeMap<String, String> = BTreeMap::new();
        let mut retry_at: BTreeMap<String, Instant> = BTreeMap::new();
        // The node's pods: listed once, then kept from one field-selector
        // watch for the pass (listed again only if that watch ends early).
        let mut view = NodePods::default();
        // Pods whose eviction this pass accepted: terminating, even before
        // the watch shows their deletionTimestamp.
        let mut evicted: BTreeSet<String> = BTreeSet::new();
        loop {
            if view.events.is_none() {
                view.start(&pods, &on_node, pass_end).await?;
            }
            let mut refused = Vec::new();
            let mut to_evict = Vec::new();
            let mut terminating = BTreeSet::new();
            for pod in view.pods.values() {
                let uid = pod.uid().unwrap_or_default();
                match disposition(pod, opts) {
                    PodDisposition::Skip(_) => {}
                    PodDisposition::Refuse(why) => refused.push(format!("{} ({why})", key(pod))),
                    PodDisposition::Evict if pod.metadata.deletion_timestamp.is_some() || evicted.contains(&uid) => {
                        terminating.insert(uid);
                    }
                    PodDisposition::Evict => to_evict.push(pod.clone()),
                }
            }
            let now = Timestamp::now();
            let timed_out = now >= opts.deadline;
            if !refused.is_empty() {
                // kubectl refuses the whole drain before evicting anything.
                return Ok(Outcome::Blocked {
                    message: format!("refusing to evict {}", refused.join(", ")),
                    timed_out,
                });
            }
            if to_evict.is_empty() && terminating.is_empty() {
                return Ok(Outcome::Done);
            }
            if timed_out && opts.on_timeout == DrainTimeoutAction::ForceDelete {
                // Past the deadline with ForceDelete: delete without eviction (PDBs bypassed).
                for pod in &to_evict {
                    let ns_pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
                    let dp = DeleteParams {
                        grace_period_seconds: opts.grace_period_seconds.map(|g| g as u32),
                        ..DeleteParams::default()
                    };
                    match ns_pods.delete(&pod.name_any(), &dp).await {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                    terminating.insert(pod.uid().unwrap_or_default());
                }
                to_evict.clear();
            }

            if !to_evict.is_empty()
                && let Err(message) = self.budgets.ready(pass_end.min(start + CACHE_SYNC)).await
            {
                return Ok(Outcome::Waiting { message });
            }
            // Marked before reading the cache, so any later change wakes the wait.
            let seen = *budget_events.borrow_and_update();
            let namespaces: BTreeSet<String> = to_evict.iter().filter_map(|p| p.namespace()).collect();
            let budgets = Budgets::new(self.budgets.in_namespaces(&namespaces));
            // Never send more evictions for a budget than it allows now: the
            // rest would only be refused (kubectl sends them and polls).
            let mut due = Vec::new();
            // Budgets waited on, with the resourceVersion this round saw.
            let mut waiting_on: BTreeMap<String, Option<String>> = BTreeMap::new();
            for pod in to_evict {
                let k = key(&pod);
                let covering = budgets.covering(&pod);
                let budget = covering.first().map(|(b, _)| (budget_key(b), b.resource_version()));
                if retry_at.get(&k).is_some_and(|t| Instant::now() < *t) {
                    if let Some((b, rv)) = budget {
                        waiting_on.insert(b, rv);
                    }
                    continue;
                }
                if let (Some((b, rv)), [_]) = (&budget, covering.as_slice())
                    && let Err(allows) = self.budgets.reserve(b, &pod.name_any(), seen)
                {
                    blocked.insert(
                        k.clone(),
                        format!("{k} blocked by PodDisruptionBudget {b} ({allows} disruptions allowed)"),
                    );
                    waiting_on.insert(b.clone(), rv.clone());
                    continue;
                }
                due.push(pod);
            }

            let results: Vec<(Pod, Result<Evicted>)> = futures::stream::iter(due)
                .map(|pod| async move {
                    let r = self
                        .evictor
                        .evict(
                            &pod.namespace().unwrap_or_default(),
                            &pod.name_any(),
                            pod.uid().as_deref(),
                            opts.grace_period_seconds,
                        )
                        .await;
                    (pod, r)
                })
                .buffer_unordered(opts.concurrency.max(1))
                .collect()
                .await;
            let mut failures = Vec::new();
            for (pod, r) in results {
                let k = key(&pod);
                if let [(b, _)] = budgets.covering(&pod).as_slice() {
                    // Evicting a Ready pod spends a disruption; nothing else does.
                    let spent = matches!(r, Ok(Evicted::Accepted)) && ready(&pod);
                    self.budgets.settle(&budget_key(b), &pod.name_any(), spent);
                }
                match r? {
                    Evicted::Accepted => {
                        blocked.remove(&k);
                        retry_at.remove(&k);
                        evicted.insert(pod.uid().unwrap_or_default());
                        terminating.insert(pod.uid().unwrap_or_default());
                    }
                    Evicted::Gone => {
                        blocked.remove(&k);
                        retry_at.remove(&k);
                        view.pods.remove(&pod.uid().unwrap_or_default());
                    }
                    Evicted::Blocked { message } => {
                        blocked.insert(
                            k.clone(),
                            format!("{k} blocked by {}: {message}", budgets.describe(&pod)),
                        );
                        retry_at.insert(k, Instant::now() + opts.retry_every);
                        waiting_on.extend(
                            budgets
                                .covering(&pod)
                                .iter()
                                .map(|(b, _)| (budget_key(b), b.resource_version())),
                        );
                    }
                    Evicted::Refused { status: 500, message } if message.contains("more than one") => {
                        blocked.insert(
                            k.clone(),
                            format!("{k} matches several budgets ({}): {message}", budgets.describe(&pod)),
                        );
                        retry_at.insert(k, Instant::now() + opts.retry_every);
                    }
                    Evicted::Refused { status, message } if status >= 500 => {
                        // A transient server error: try again on the next round.
                        retry_at.insert(k.clone(), Instant::now() + opts.retry_every);
                        failures.push(format!("{k}: {status} {message}"));
                    }
                    Evicted::Refused { status, message } => {
                        return Ok(Outcome::Failed {
                            reason: Reason::DrainBlocked,
                            message: format!("evicting {k} was refused ({status}): {message}"),
                        });
                    }
                }
            }

            if timed_out && !blocked.is_empty() {
                // Past the deadline: report what blocks now, with its budgets.
                return Ok(Outcome::Blocked {
                    message: summary(&blocked, &[], terminating.len()),
                    timed_out: true,
                });
            }

            // Wait until a terminating pod is gone, a budget we wait on allows
            // a disruption, a blocked pod is due again, or the pass ends.
            let next_retry = retry_at.values().min().copied();
            let wait_until = [Some(pass_end), next_retry]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(pass_end);
            self.wait_change(&mut view, &terminating, &mut budget_events, &waiting_on, wait_until)
                .await;
            if Instant::now() >= pass_end {
                let message = summary(&blocked, &[], terminating.len());
                return Ok(if blocked.is_empty() {
                    Outcome::Waiting {
                        message: if failures.is_empty() {
                            message
                        } else {
                            format!("{message}; retrying {}", failures.join(", "))
                        },
                    }
                } else {
                    Outcome::Blocked {
                        message,
                        timed_out: false,
                    }
                });
            }
        }
    }

    /// Follow the node's pods and the budget cache until a terminating pod
    /// is gone (deleted, or replaced by one with a new UID), a budget in
    /// `budgets` changed since this round saw it and allows a disruption (or
    /// is gone), or `until`. Sends no request: the pass's watch brings the
    /// pods; when it ends, the next round lists again.
    async fn wait_change(
        &self,
        view: &mut NodePods,
        terminating: &BTreeSet<String>,
        budget_events: &mut watch::Receiver<u64>,
        budgets: &BTreeMap<String, Option<String>>,
        until: Instant,
    ) {
        if until.saturating_duration_since(Instant::now()).is_zero() {
            return;
        }
        // Only a change of the budget itself counts: a budget that already
        // allows a disruption but whose pods await their retry must not wake
        // the wait on every budget event in the cluster.
        let unblocked = || {
            budgets.iter().any(|(key, then)| match self.budgets.get(key) {
                Some((now, allows)) => now != *then && allows > 0,
                None => true,
            })
        };
        if unblocked() {
            return;
        }
        let Some(mut events) = view.events.take() else {
            // No watch to follow (it could not start): list again after a
            // second, not at once.
            tokio::time::sleep_until(until.min(Instant::now() + Duration::from_secs(1))).await;
            return;
        };
        let mut cache_alive = !budgets.is_empty();
        let pods = &mut view.pods;
        let ended = tokio::time::timeout_at(until, async {
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(Ok(WatchEvent::Added(p) | WatchEvent::Modified(p))) => {
                            pods.insert(p.uid().unwrap_or_default(), p);
                        }
                        Some(Ok(WatchEvent::Deleted(p))) => {
                            let uid = p.uid().unwrap_or_default();
                            pods.remove(&uid);
                            // A pod we waited for is gone: look again.
                            if terminating.contains(&uid) {
                                return false;
                            }
                        }
                        Some(Ok(WatchEvent::Bookmark(_))) => {}
                        // The watch ended (its timeout, a 410, a fault): list again.
                        Some(Ok(WatchEvent::Error(_)) | Err(_)) | None => return true,
                    },
                    changed = budget_events.changed(), if cache_alive => {
                        if changed.is_err() {
                            cache_alive = false;
                        } else if unblocked() {
                            return false;
                        }
                    }
                }
            }
        })
        .await;
        if ended != Ok(true) {
            view.events = Some(events);
        }
    }
}

/// A node's pods as one pass sees them: a list, then the events of one
/// watch from that list's resourceVersion, by UID.
#[derive(Default)]
struct NodePods {
    pods: BTreeMap<String, Pod>,
    events: Option<PodEvents>,
}

type PodEvents = std::pin::Pin<Box<dyn futures::Stream<Item = kube::Result<WatchEvent<Pod>>> + Send>>;

impl NodePods {
    /// List the node's pods and start watching them until `pass_end`. A
    /// watch that cannot start (410, a fault) leaves the list alone: the
    /// next round lists again.
    async fn start(&mut self, pods: &Api<Pod>, on_node: &str, pass_end: Instant) -> Result<()> {
        let list = pods.list(&ListParams::default().fields(on_node)).await?;
        let rv = list.metadata.resource_version.clone().unwrap_or_default();
        self.pods = list
            .items
            .into_iter()
            .map(|p| (p.uid().unwrap_or_default(), p))
            .collect();
        let secs = pass_end
            .saturating_duration_since(Instant::now())
            .as_secs()
            .clamp(1, 290) as u32;
        self.events = pods
            .watch(&WatchParams::default().fields(on_node).timeout(secs), &rv)
            .await
            .ok()
            .map(|s| Box::pin(s) as PodEvents);
        Ok(())
    }
}

/// The budgets of the round's namespaces, each with what it allows now and
/// its selector, parsed once for the round (every pod is matched against
/// every budget of its namespace).
struct Budgets(Vec<(Allowing, Option<Matcher>)>);

/// A budget and the disruptions it allows now.
type Allowing = (Arc<PodDisruptionBudget>, i32);

impl Budgets {
    fn new(budgets: Vec<Allowing>) -> Budgets {
        Budgets(
            budgets
                .into_iter()
                .map(|b| {
                    let selector = b.0.spec.as_ref().and_then(|s| s.selector.as_ref()).map(Matcher::new);
                    (b, selector)
                })
                .collect(),
        )
    }

    fn covering(&self, pod: &Pod) -> Vec<&Allowing> {
        let ns = pod.namespace().unwrap_or_default();
        self.0
            .iter()
            .filter(|((b, _), _)| b.namespace().as_deref() == Some(ns.as_str()))
            .filter(|(_, selector)| selector.as_ref().is_some_and(|m| m.matches(pod.labels())))
            .map(|(b, _)| b)
            .collect()
    }

    /// The budgets that select `pod`, with what each allows.
    fn describe(&self, pod: &Pod) -> String {
        let matching: Vec<String> = self
            .covering(pod)
            .iter()
            .map(|(b, allows)| format!("PodDisruptionBudget {} ({allows} disruptions allowed)", budget_key(b)))
            .collect();
        if matching.is_empty() {
            "a disruption budget".into()
        } else {
            matching.join(", ")
        }
    }
}

fn summary(blocked: &BTreeMap<String, String>, left: &[Pod], terminating: usize) -> String {
    let mut parts = Vec::new();
    if !blocked.is_empty() {
        let shown: Vec<&str> = blocked.values().take(3).map(String::as_str).collect();
        let more = blocked.len().saturating_sub(3);
        parts.push(format!(
            "{} pods blocked: {}{}",
            blocked.len(),
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if !left.is_empty() {
        parts.push(format!("{} pods left to evict", left.len()));
    }
    if terminating > 0 {
        parts.push(format!("waiting for {terminating} pods to terminate"));
    }
    if parts.is_empty() {
        "draining".into()
    } else {
        parts.join("; ")
    }
}

/// Labels drover puts on what it creates; exported for the Job module.
pub fn managed_labels(upgrade: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (label::MANAGED_BY.to_string(), label::MANAGED_BY_VALUE.to_string()),
        (label::UPGRADE.to_string(), upgrade.to_string()),
    ])
}
