//! Reboots: wait for a node to come back with a new bootID and Ready, and,
//! when an upgrade Job asked for a reboot, run drover's reboot Job first.
//! The reboot Job is named after the boot it ends, so a restarted drover
//! finds it instead of rebooting the node twice.

use std::collections::BTreeMap;

use drover_api::names::{label, short_hash};
use drover_api::validate::parse_duration;
use drover_api::{Outcome, Reason, Reboot};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, HostPathVolumeSource, Node, PodSpec, PodTemplateSpec, SecurityContext, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::cache::Caches;
use crate::error::Result;
use crate::job::{Owner, dns_part};
use crate::verify::node_ready;

/// One reboot wait on one node.
#[derive(Debug, Clone)]
pub struct RebootRequest<'a> {
    pub owner: &'a Owner,
    pub node: &'a str,
    /// The component whose upgrade rebooted the node, or asked for it.
    pub component: &'a str,
    /// The node's bootID before the reboot.
    pub boot_id: &'a str,
    /// Run drover's reboot Job (the upgrade Job asked for a reboot).
    pub run_job: bool,
    pub reboot: &'a Reboot,
    /// When the node must be back by (spec.reboot.timeout from the step's start).
    pub deadline: Option<Timestamp>,
    /// When the node entered this step: a reboot Job that finished before
    /// it belongs to an earlier attempt and is run again.
    pub not_before: Option<Timestamp>,
}

/// `reboot-<node>-<hash>`, one per (ClusterUpgrade, node, boot).
pub fn job_name(upgrade: &str, node: &str, boot_id: &str) -> String {
    let hash = short_hash(&format!("{upgrade}/{node}/{boot_id}"));
    format!("reboot-{}-{}", dns_part(node, 40), &hash[..10])
}

fn boot_id(node: &Node) -> &str {
    node.status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.boot_id.as_str())
        .unwrap_or_default()
}

/// The reboot Job: privileged, in the host's PID namespace, the host's root
/// at /host, pinned to the node and tolerating every taint.
pub fn build(r: &RebootRequest, namespace: &str, image: &str) -> Job {
    let name = job_name(&r.owner.name, r.node, r.boot_id);
    let labels = BTreeMap::from([
        (label::MANAGED_BY.to_string(), label::MANAGED_BY_VALUE.to_string()),
        (label::UPGRADE.to_string(), dns_part(&r.owner.name, 63)),
        (label::NODE.to_string(), dns_part(r.node, 63)),
        (label::COMPONENT.to_string(), "reboot".to_string()),
        ("drover.dev/job".to_string(), name.clone()),
    ]);
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    };
    let deadline = parse_duration(&r.reboot.timeout).map(|d| d.as_secs().max(1) as i64);
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![r.owner.reference()]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: deadline,
            ttl_seconds_after_finished: Some(3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_name: Some(r.node.to_string()),
                    restart_policy: Some("Never".into()),
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Toleration::default()
                    }]),
                    host_pid: Some(true),
                    containers: vec![Container {
                        name: "reboot".into(),
                        image: Some(image.to_string()),
                        command: (!r.reboot.command.is_empty()).then(|| r.reboot.command.clone()),
                        args: (!r.reboot.args.is_empty()).then(|| r.reboot.args.clone()),
                        env: Some(vec![
                            env("DROVER_ACTION", "reboot"),
                            env("DROVER_NODE", r.node),
                            env("DROVER_COMPONENT", r.component),
                            env("DROVER_BOOT_ID", r.boot_id),
                        ]),
                        security_context: Some(SecurityContext {
                            privileged: Some(true),
                            ..SecurityContext::default()
                        }),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "host-root".into(),
                            mount_path: "/host".into(),
                            ..VolumeMount::default()
                        }]),
                        termination_message_policy: Some("FallbackToLogsOnError".into()),
                        ..Container::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "host-root".into(),
                        host_path: Some(HostPathVolumeSource {
                            path: "/".into(),
                            type_: Some("Directory".into()),
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// Done once the node reports a bootID other than the one before and is
/// Ready; Waiting before the deadline, Failed (RebootFailed) after it. The
/// reboot Job runs in `namespace` (the upgrade Jobs').
pub async fn reboot(client: &Client, caches: &Caches, namespace: &str, r: &RebootRequest<'_>) -> Result<Outcome> {
    let nodes: Api<Node> = Api::all(client.clone());
    let (node, _) = caches.node(&nodes, r.node).await?;
    let rebooted = boot_id(&node) != r.boot_id || r.boot_id.is_empty();
    let ready = node_ready(&node);
    if rebooted && ready {
        return Ok(Outcome::Done);
    }
    let mut job_note = String::new();
    if r.run_job && !rebooted {
        let Some(image) = &r.reboot.image else {
            return Ok(Outcome::Refused {
                reason: Reason::RebootFailed,
                message: format!(
                    "the upgrade Job of {} asked for a reboot of {}, but spec.reboot.image is not set: set it to an image that reboots the node, or make the Job reboot the node itself (upgrade.job.reboots: true)",
                    r.component, r.node
                ),
            });
        };
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let name = job_name(&r.owner.name, r.node, r.boot_id);
        let Some(job) = crate::job::this_attempts_job(&jobs, caches, (namespace, &name), r.not_before, || {
            build(r, namespace, image)
        })
        .await?
        else {
            return Ok(Outcome::Waiting {
                message: format!(
                    "replacing reboot job {name}, which finished in an earlier attempt while {} kept its bootID",
                    r.node
                ),
            });
        };
        let failed = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Failed" && c.status == "True"));
        if let Some(c) = failed {
            return Ok(Outcome::Failed {
                reason: Reason::RebootFailed,
                message: format!(
                    "reboot job {}/{} failed ({}) and node {} kept its bootID",
                    namespace,
                    job.name_any(),
                    c.reason.clone().unwrap_or_else(|| "Failed".into()),
                    r.node
                ),
            });
        }
        job_note = format!(" (reboot job {})", job.name_any());
    }
    let state = if rebooted {
        format!("node {} rebooted (new bootID) and is not Ready yet", r.node)
    } else {
        format!(
            "waiting for node {} to reboot{job_note}: bootID is still {}",
            r.node, r.boot_id
        )
    };
    if r.deadline.is_some_and(|d| Timestamp::now() >= d) {
        return Ok(Outcome::Failed {
            reason: Reason::RebootFailed,
            message: format!("{state} after spec.reboot.timeout ({})", r.reboot.timeout),
        });
    }
    Ok(Outcome::Waiting { message: state })
}
