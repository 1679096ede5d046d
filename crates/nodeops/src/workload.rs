//! Cluster-level components: set a workload container's image tag to the
//! version and wait for its rollout, with a timeout recorded on the workload.

use std::time::Duration;

use drover_api::Reason;
use drover_api::version::{image_tag, same_version, with_tag};
use drover_api::{ObservedWorkload, Outcome};
use drover_api::{WorkloadKind, WorkloadUpgrade};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodSpec;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::error::{NodeOpsError, Result};

/// When drover changed the image, on the workload itself (state in the API).
pub const STARTED_ANNOTATION: &str = "drover.dev/rollout-started";

/// A workload's container image, rollout state and drover's start mark.
#[derive(Debug, Clone)]
struct Seen {
    containers: Vec<k8s_openapi::api::core::v1::Container>,
    resource_version: Option<String>,
    image: Option<String>,
    index: Option<usize>,
    rolled_out: bool,
    started: Option<Timestamp>,
}

fn container_index(spec: Option<&PodSpec>, container: Option<&str>) -> Option<usize> {
    let cs = &spec?.containers;
    match container {
        Some(name) => cs.iter().position(|c| c.name == name),
        None => (!cs.is_empty()).then_some(0),
    }
}

/// What every workload kind shares: its pod template and drover's mark.
fn seen(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    template: Option<&PodSpec>,
    container: Option<&str>,
    rolled_out: bool,
) -> Seen {
    let index = container_index(template, container);
    Seen {
        containers: template.map(|s| s.containers.clone()).unwrap_or_default(),
        resource_version: meta.resource_version.clone(),
        image: index.and_then(|i| template?.containers[i].image.clone()),
        index,
        rolled_out,
        started: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(STARTED_ANNOTATION))
            .and_then(|s| s.parse().ok()),
    }
}

/// The workload as it stands, and whether its rollout of the current spec is complete.
async fn read(client: &Client, w: &WorkloadUpgrade) -> Result<Seen> {
    let c = w.container.as_deref();
    Ok(match w.kind {
        WorkloadKind::Deployment => {
            let d = Api::<Deployment>::namespaced(client.clone(), &w.namespace)
                .get(&w.name)
                .await?;
            let st = d.status.clone().unwrap_or_default();
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let done = st.observed_generation >= d.metadata.generation
                && st.updated_replicas.unwrap_or(0) == want
                && st.available_replicas.unwrap_or(0) == want
                && st.replicas.unwrap_or(0) == want;
            seen(
                &d.metadata,
                d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                c,
                done,
            )
        }
        WorkloadKind::DaemonSet => {
            let d = Api::<DaemonSet>::namespaced(client.clone(), &w.namespace)
                .get(&w.name)
                .await?;
            let st = d.status.clone().unwrap_or_default();
            let done = st.observed_generation >= d.metadata.generation
                && st.updated_number_scheduled.unwrap_or(0) == st.desired_number_scheduled
                && st.number_available.unwrap_or(0) == st.desired_number_scheduled;
            seen(
                &d.metadata,
                d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                c,
                done,
            )
        }
        WorkloadKind::StatefulSet => {
            let d = Api::<StatefulSet>::namespaced(client.clone(), &w.namespace)
                .get(&w.name)
                .await?;
            let st = d.status.clone().unwrap_or_default();
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let done = st.observed_generation >= d.metadata.generation
                && st.updated_replicas.unwrap_or(0) == want
                && st.ready_replicas.unwrap_or(0) == want
                && st.current_revision.is_some()
                && st.current_revision == st.update_revision;
            seen(
                &d.metadata,
                d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
                c,
                done,
            )
        }
    })
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

/// What the planner needs to know about a workload component.
pub async fn observe(client: &Client, w: &WorkloadUpgrade, version: &str) -> Result<ObservedWorkload> {
    let seen = read(client, w).await?;
    let tag = seen.image.as_deref().and_then(image_tag).map(str::to_string);
    let at_version = tag.as_deref().is_some_and(|t| same_version(t, version));
    let failed = (at_version && !seen.rolled_out && timed_out(w, seen.started)).then(|| {
        format!(
            "{} {}/{} did not finish rolling out to {version} within {}",
            w.kind.as_str(),
            w.namespace,
            w.name,
            w.timeout
        )
    });
    Ok(ObservedWorkload {
        version: tag,
        rolled_out: seen.rolled_out,
        failed,
    })
}

async fn patch(client: &Client, w: &WorkloadUpgrade, p: Patch<Value>) -> Result<()> {
    let pp = PatchParams::default();
    match w.kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client.clone(), &w.namespace)
                .patch(&w.name, &pp, &p)
                .await?;
        }
        WorkloadKind::DaemonSet => {
            Api::<DaemonSet>::namespaced(client.clone(), &w.namespace)
                .patch(&w.name, &pp, &p)
                .await?;
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client.clone(), &w.namespace)
                .patch(&w.name, &pp, &p)
                .await?;
        }
    }
    Ok(())
}

/// One pass: set the tag if it differs (recording when), then report the rollout.
pub async fn upgrade(client: &Client, w: &WorkloadUpgrade, version: &str) -> Result<Outcome> {
    let seen = read(client, w).await?;
    let (Some(index), Some(image)) = (seen.index, seen.image.clone()) else {
        return Ok(Outcome::Failed {
            reason: Reason::RolloutFailed,
            message: format!(
                "{} {}/{} has no container {}",
                w.kind.as_str(),
                w.namespace,
                w.name,
                w.container.as_deref().unwrap_or("(any)")
            ),
        });
    };
    let current = image_tag(&image).map(str::to_string);
    if !current.as_deref().is_some_and(|t| same_version(t, version)) {
        let mut containers = seen.containers.clone();
        containers[index].image = Some(with_tag(&image, version));
        // Arrays are replaced whole by a merge patch; the resourceVersion makes
        // it a compare-and-swap, so a concurrent change of the workload wins.
        let change = json!({
            "metadata": {
                "resourceVersion": seen.resource_version,
                "annotations": {STARTED_ANNOTATION: Timestamp::now().to_string()},
            },
            "spec": {"template": {"spec": {"containers": containers}}},
        });
        match patch(client, w, Patch::Merge(change)).await {
            Ok(()) => {}
            Err(NodeOpsError::Kube(e)) if crate::error::is_conflict(&e) => {
                return Ok(Outcome::Waiting {
                    message: format!(
                        "{} {}/{} changed while updating it; retrying",
                        w.kind.as_str(),
                        w.namespace,
                        w.name
                    ),
                });
            }
            Err(e) => return Err(e),
        }
        return Ok(Outcome::Waiting {
            message: format!(
                "set {} {}/{} to {version}; waiting for its rollout",
                w.kind.as_str(),
                w.namespace,
                w.name
            ),
        });
    }
    if seen.rolled_out {
        return Ok(Outcome::Done);
    }
    if timed_out(w, seen.started) {
        return Ok(Outcome::Failed {
            reason: Reason::RolloutFailed,
            message: format!(
                "{} {}/{} did not finish rolling out within {}",
                w.kind.as_str(),
                w.namespace,
                w.name,
                w.timeout
            ),
        });
    }
    Ok(Outcome::Waiting {
        message: format!(
            "waiting for {} {}/{} to roll out {version}",
            w.kind.as_str(),
            w.namespace,
            w.name
        ),
    })
}
