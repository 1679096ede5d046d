//! Cluster-level components: set the image tag of one or more workloads'
//! containers to the version and wait for every rollout, with a timeout
//! recorded on each workload. A component's manifest, if any, is applied
//! first (crate::manifest).

use std::time::Duration;

use drover_api::Reason;
use drover_api::version::{image_tag, newer_than, parse_version, repository_matches, same_version, with_tag};
use drover_api::{ObservedWorkload, Outcome};
use drover_api::{WorkloadKind, WorkloadTarget, WorkloadUpgrade};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::error::{NodeOpsError, Result};
use crate::manifest;

/// When drover changed the image, on the workload itself (state in the API).
pub const STARTED_ANNOTATION: &str = "drover.dev/rollout-started";

/// One workload as it stands: its pod template, rollout state and drover's marks.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub target: WorkloadTarget,
    containers: Vec<Container>,
    init_containers: Vec<Container>,
    resource_version: Option<String>,
    rolled_out: bool,
    /// How far the rollout is, as a person reads it.
    progress: String,
    started: Option<Timestamp>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A container drover sets: (init container?, index).
type Slot = (bool, usize);

impl Seen {
    fn new(
        target: &WorkloadTarget,
        meta: &ObjectMeta,
        template: Option<&PodSpec>,
        rolled_out: bool,
        progress: String,
    ) -> Seen {
        let annotations = meta.annotations.clone().unwrap_or_default();
        Seen {
            target: target.clone(),
            containers: template.map(|s| s.containers.clone()).unwrap_or_default(),
            init_containers: template.and_then(|s| s.init_containers.clone()).unwrap_or_default(),
            resource_version: meta.resource_version.clone(),
            rolled_out,
            progress,
            started: annotations.get(STARTED_ANNOTATION).and_then(|s| s.parse().ok()),
            annotations,
        }
    }

    fn container(&self, (init, i): Slot) -> &Container {
        if init {
            &self.init_containers[i]
        } else {
            &self.containers[i]
        }
    }

    /// The containers the component sets: those whose image repository is
    /// listed (containers and init containers), else the named container,
    /// else the first.
    fn slots(&self, w: &WorkloadUpgrade) -> Vec<Slot> {
        if !w.image_repositories.is_empty() {
            let hit = |c: &Container| {
                c.image
                    .as_deref()
                    .is_some_and(|i| w.image_repositories.iter().any(|r| repository_matches(i, r)))
            };
            let init = (0..self.init_containers.len())
                .filter(|i| hit(&self.init_containers[*i]))
                .map(|i| (true, i));
            let main = (0..self.containers.len())
                .filter(|i| hit(&self.containers[*i]))
                .map(|i| (false, i));
            return init.chain(main).collect();
        }
        let index = match &w.container {
            Some(name) => self.containers.iter().position(|c| &c.name == name),
            None => (!self.containers.is_empty()).then_some(0),
        };
        index.map(|i| vec![(false, i)]).unwrap_or_default()
    }

    /// Why no container is selected, naming what was looked for.
    fn nothing_selected(&self, w: &WorkloadUpgrade) -> String {
        let all: Vec<String> = self
            .init_containers
            .iter()
            .chain(&self.containers)
            .map(|c| format!("{} ({})", c.name, c.image.as_deref().unwrap_or("no image")))
            .collect();
        let wanted = if !w.image_repositories.is_empty() {
            format!("whose image repository is {}", w.image_repositories.join(" or "))
        } else {
            w.container.clone().unwrap_or_else(|| "(any)".into())
        };
        format!(
            "{} has no container {wanted}; it has {}",
            self.target,
            if all.is_empty() { "none".into() } else { all.join(", ") }
        )
    }

    /// The first selected container not at `version`, with its tag.
    fn behind(&self, w: &WorkloadUpgrade, version: &str) -> Option<(String, Option<String>)> {
        self.slots(w).into_iter().find_map(|s| {
            let c = self.container(s);
            let tag = c.image.as_deref().and_then(image_tag).map(str::to_string);
            (!tag.as_deref().is_some_and(|t| same_version(t, version))).then(|| (c.name.clone(), tag))
        })
    }
}

/// The workload as it stands, and whether its rollout of the current spec is complete.
pub(crate) async fn read(client: &Client, t: &WorkloadTarget) -> Result<Seen> {
    let seen_gen = |observed: Option<i64>, generation: Option<i64>| observed >= generation;
    Ok(match t.kind {
        WorkloadKind::Deployment => {
            let d = Api::<Deployment>::namespaced(client.clone(), &t.namespace)
                .get(&t.name)
                .await?;
            let st = d.status.clone().unwrap_or_default();
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let (updated, available) = (st.updated_replicas.unwrap_or(0), st.available_replicas.unwrap_or(0));
            let seen = seen_gen(st.observed_generation, d.metadata.generation);
            let done = seen && updated == want && available == want && st.replicas.unwrap_or(0) == want;
            let progress = progress(
                seen,
                format!("{updated} of {want} replicas updated, {available} available"),
            );
            Seen::new(
                t,
                &d.metadata,
                d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                done,
                progress,
            )
        }
        WorkloadKind::DaemonSet => {
            let d = Api::<DaemonSet>::namespaced(client.clone(), &t.namespace)
                .get(&t.name)
                .await?;
            let st = d.status.clone().unwrap_or_default();
            let want = st.desired_number_scheduled;
            let (updated, available) = (
                st.updated_number_scheduled.unwrap_or(0),
                st.number_available.unwrap_or(0),
            );
            let seen = seen_gen(st.observed_generation, d.metadata.generation);
            let done = seen && updated == want && available == want;
            let progress = progress(seen, format!("{updated} of {want} pods updated, {available} available"));
            Seen::new(
                t,
                &d.metadata,
                d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                done,
                progress,
            )
        }
        WorkloadKind::StatefulSet => {
            let d = Api::<StatefulSet>::namespaced(client.clone(), &t.namespace)
                .get(&t.name)
                .await?;
            let st = d.status.clone().unwrap_or_default();
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let (updated, ready) = (st.updated_replicas.unwrap_or(0), st.ready_replicas.unwrap_or(0));
            let seen = seen_gen(st.observed_generation, d.metadata.generation);
            let done = seen
                && updated == want
                && ready == want
                && st.current_revision.is_some()
                && st.current_revision == st.update_revision;
            let progress = progress(seen, format!("{updated} of {want} replicas updated, {ready} ready"));
            Seen::new(
                t,
                &d.metadata,
                d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                done,
                progress,
            )
        }
    })
}

fn progress(seen: bool, counts: String) -> String {
    if seen {
        counts
    } else {
        format!("its controller has not acted on the change yet ({counts})")
    }
}

async fn read_all(client: &Client, w: &WorkloadUpgrade) -> Result<Vec<Seen>> {
    let mut out = Vec::new();
    for t in w.workloads() {
        out.push(read(client, &t).await?);
    }
    Ok(out)
}

fn timed_out(w: &WorkloadUpgrade, started: Option<Timestamp>) -> bool {
    let timeout = drover_api::validate::parse_duration(&w.timeout).unwrap_or(Duration::from_secs(900));
    started.is_some_and(|s| {
        jiff::SignedDuration::try_from(timeout)
            .ok()
            .and_then(|d| s.checked_add(d).ok())
            .is_some_and(|end| Timestamp::now() >= end)
    })
}

/// Why a workload is not done: a container behind, or its rollout.
fn lag(s: &Seen, w: &WorkloadUpgrade, version: &str) -> Option<String> {
    if s.slots(w).is_empty() {
        return Some(s.nothing_selected(w));
    }
    if let Some((name, tag)) = s.behind(w, version) {
        return Some(format!(
            "{}: container {name} runs {}, not {version}",
            s.target,
            tag.as_deref().unwrap_or("an untagged image")
        ));
    }
    (!s.rolled_out).then(|| format!("{}: rolling out {version}, {}", s.target, s.progress))
}

/// What the planner needs to know about a workload component. A workload
/// without a container to set, or a manifest drover will not apply, is a
/// failure (`failed`) until the spec or the manifest changes.
pub async fn observe(
    client: &Client,
    w: &WorkloadUpgrade,
    version: &str,
    manifest_namespace: &str,
) -> Result<ObservedWorkload> {
    let seen = read_all(client, w).await?;
    let mut tags: Vec<Option<String>> = Vec::new();
    for s in &seen {
        for slot in s.slots(w) {
            tags.push(
                s.container(slot)
                    .image
                    .as_deref()
                    .and_then(image_tag)
                    .map(str::to_string),
            );
        }
    }
    let at = |t: &Option<String>| t.as_deref().is_some_and(|t| same_version(t, version));
    let all_at = !tags.is_empty() && tags.iter().all(at) && seen.iter().all(|s| !s.slots(w).is_empty());
    // The version they run: the desired one when all have it, else the
    // highest of the others (a downgrade check compares against that).
    let version_seen = if all_at {
        tags.first().cloned().flatten()
    } else {
        let behind: Vec<String> = tags.iter().filter(|t| !at(t)).filter_map(|t| t.clone()).collect();
        behind
            .iter()
            .filter(|t| parse_version(t).is_some())
            .fold(None::<&String>, |top, t| match top {
                Some(top) if !newer_than(t, top) => Some(top),
                _ => Some(t),
            })
            .or(behind.first())
            .cloned()
    };
    let done = |s: &Seen| s.rolled_out && lag(s, w, version).is_none();
    let failed = seen
        .iter()
        .find(|s| s.behind(w, version).is_none() && !s.slots(w).is_empty() && !s.rolled_out && timed_out(w, s.started))
        .map(|s| {
            format!(
                "{} did not finish rolling out to {version} within {} ({})",
                s.target, w.timeout, s.progress
            )
        });
    let unselected = seen
        .iter()
        .find(|s| s.slots(w).is_empty())
        .map(|s| s.nothing_selected(w));
    let refused = match (&w.manifest, seen.first()) {
        (Some(m), Some(first)) if unselected.is_none() && seen.iter().any(|s| s.behind(w, version).is_some()) => {
            match manifest::prepare(client, manifest_namespace, m, &first.annotations, version).await? {
                manifest::Prepared::Refused(why) => Some(why),
                _ => None,
            }
        }
        _ => None,
    };
    let failed = unselected.or(refused).or(failed);
    Ok(ObservedWorkload {
        version: version_seen,
        rolled_out: seen.iter().all(|s| s.rolled_out),
        failed,
        updated: seen.iter().filter(|s| done(s)).count(),
        total: seen.len(),
        lagging: seen.iter().find_map(|s| lag(s, w, version)),
    })
}

async fn patch(client: &Client, t: &WorkloadTarget, p: Patch<Value>) -> Result<()> {
    let pp = PatchParams::default();
    match t.kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client.clone(), &t.namespace)
                .patch(&t.name, &pp, &p)
                .await?;
        }
        WorkloadKind::DaemonSet => {
            Api::<DaemonSet>::namespaced(client.clone(), &t.namespace)
                .patch(&t.name, &pp, &p)
                .await?;
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client.clone(), &t.namespace)
                .patch(&t.name, &pp, &p)
                .await?;
        }
    }
    Ok(())
}

/// Set every selected container of `s` to `version`. Ok(false) when the
/// workload changed meanwhile (the compare-and-swap lost).
async fn set_images(client: &Client, s: &Seen, w: &WorkloadUpgrade, version: &str) -> Result<bool> {
    let (mut containers, mut init) = (s.containers.clone(), s.init_containers.clone());
    for (is_init, i) in s.slots(w) {
        let c = if is_init { &mut init[i] } else { &mut containers[i] };
        if let Some(image) = c.image.clone() {
            c.image = Some(with_tag(&image, version));
        }
    }
    let mut template = json!({"containers": containers});
    if !init.is_empty() {
        template["initContainers"] = json!(init);
    }
    // Arrays are replaced whole by a merge patch; the resourceVersion makes
    // it a compare-and-swap, so a concurrent change of the workload wins.
    let change = json!({
        "metadata": {
            "resourceVersion": s.resource_version,
            "annotations": {STARTED_ANNOTATION: Timestamp::now().to_string()},
        },
        "spec": {"template": {"spec": template}},
    });
    match patch(client, &s.target, Patch::Merge(change)).await {
        Ok(()) => Ok(true),
        Err(NodeOpsError::Kube(e)) if crate::error::is_conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// One pass: apply the manifest once per version (if any), set the tags
/// that differ (recording when), then report the rollouts. Manifests are
/// read from ConfigMaps in `manifest_namespace`.
pub async fn upgrade(client: &Client, w: &WorkloadUpgrade, version: &str, manifest_namespace: &str) -> Result<Outcome> {
    let seen = read_all(client, w).await?;
    if let Some(s) = seen.iter().find(|s| s.slots(w).is_empty()) {
        return Ok(Outcome::Failed {
            reason: Reason::RolloutFailed,
            message: s.nothing_selected(w),
        });
    }
    let behind: Vec<&Seen> = seen.iter().filter(|s| s.behind(w, version).is_some()).collect();
    if let (Some(m), Some(first)) = (&w.manifest, seen.first())
        && !behind.is_empty()
    {
        match manifest::prepare(client, manifest_namespace, m, &first.annotations, version).await? {
            manifest::Prepared::Already => {}
            manifest::Prepared::Ready(ready) => {
                let (message, record) = manifest::apply(ready, version).await?;
                annotate(client, &first.target, record).await?;
                return Ok(Outcome::Waiting { message });
            }
            manifest::Prepared::Refused(message) => {
                return Ok(Outcome::Failed {
                    reason: Reason::RolloutFailed,
                    message,
                });
            }
        }
    }
    if !behind.is_empty() {
        let mut set = Vec::new();
        for s in &behind {
            if !set_images(client, s, w, version).await? {
                return Ok(Outcome::Waiting {
                    message: format!("{} changed while updating it; retrying", s.target),
                });
            }
            set.push(s.target.to_string());
        }
        return Ok(Outcome::Waiting {
            message: format!(
                "set {} to {version}; waiting for {}",
                set.join(", "),
                if set.len() == 1 {
                    "its rollout"
                } else {
                    "their rollouts"
                }
            ),
        });
    }
    let Some(lagging) = seen.iter().find(|s| !s.rolled_out) else {
        return Ok(Outcome::Done);
    };
    if let Some(s) = seen.iter().find(|s| !s.rolled_out && timed_out(w, s.started)) {
        return Ok(Outcome::Failed {
            reason: Reason::RolloutFailed,
            message: format!("{} did not finish rolling out within {}", s.target, w.timeout),
        });
    }
    Ok(Outcome::Waiting {
        message: format!(
            "waiting for {} to roll out {version}: {}",
            lagging.target, lagging.progress
        ),
    })
}

/// A merge patch of `t`'s metadata (drover's marks), without a precondition.
pub(crate) async fn annotate(client: &Client, t: &WorkloadTarget, change: Value) -> Result<()> {
    patch(client, t, Patch::Merge(change)).await
}
