//! The backup Job that must succeed before the first etcd or control-plane change.

use std::collections::BTreeMap;

use drover_api::BackupJob;
use drover_api::BackupState;
use drover_api::names::backup_job_name;
use drover_api::names::label;
use drover_api::validate::parse_duration;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, HostPathVolumeSource, PodSpec, PodTemplateSpec, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};

use crate::error::{Result, is_conflict};
use crate::job::Owner;

fn build(owner: &Owner, backup_hash: &str, b: &BackupJob) -> Job {
    let name = backup_job_name(&owner.name, backup_hash);
    let labels = BTreeMap::from([
        (label::MANAGED_BY.to_string(), label::MANAGED_BY_VALUE.to_string()),
        (label::UPGRADE.to_string(), owner.name.clone()),
    ]);
    let host = b.host_root.then(|| {
        (
            vec![VolumeMount {
                name: "host-root".into(),
                mount_path: "/host".into(),
                ..VolumeMount::default()
            }],
            vec![Volume {
                name: "host-root".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/".into(),
                    type_: Some("Directory".into()),
                }),
                ..Volume::default()
            }],
        )
    });
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(b.namespace.clone()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner.reference()]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(1),
            active_deadline_seconds: parse_duration(&b.timeout).map(|d| d.as_secs().max(1) as i64),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    node_selector: (!b.node_selector.is_empty()).then(|| b.node_selector.clone()),
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Toleration::default()
                    }]),
                    containers: vec![Container {
                        name: "backup".into(),
                        image: Some(b.image.clone()),
                        command: (!b.command.is_empty()).then(|| b.command.clone()),
                        args: (!b.args.is_empty()).then(|| b.args.clone()),
                        env: Some(
                            b.env
                                .iter()
                                .map(|e| EnvVar {
                                    name: e.name.clone(),
                                    value: Some(e.value.clone()),
                                    value_from: None,
                                })
                                .collect(),
                        ),
                        volume_mounts: host.as_ref().map(|h| h.0.clone()),
                        termination_message_policy: Some("FallbackToLogsOnError".into()),
                        ..Container::default()
                    }],
                    volumes: host.map(|h| h.1),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

fn state(job: &Job) -> BackupState {
    let conds = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let is = |t: &str| conds.iter().find(|c| c.type_ == t && c.status == "True");
    if is("Complete").is_some() {
        BackupState::Succeeded
    } else if let Some(c) = is("Failed") {
        BackupState::Failed(format!(
            "job {} failed ({}): {}",
            job.metadata.name.clone().unwrap_or_default(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default()
        ))
    } else {
        BackupState::Running
    }
}

/// This ClusterUpgrade's backup Jobs in the backup namespace, by name, with
/// their states: the planner picks the one of its target.
pub async fn observe_all(client: &Client, owner: &Owner, b: &BackupJob) -> Result<BTreeMap<String, BackupState>> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &b.namespace);
    // Upgrade Jobs carry a component label; the backup Job does not.
    let selector = format!("{}={},!{}", label::UPGRADE, owner.name, label::COMPONENT);
    let list = jobs.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|j| Some((j.metadata.name.clone()?, state(j))))
        .collect())
}

/// Create the backup Job if it does not exist; report its state.
pub async fn ensure(client: &Client, owner: &Owner, backup_hash: &str, b: &BackupJob) -> Result<BackupState> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &b.namespace);
    match jobs.create(&PostParams::default(), &build(owner, backup_hash, b)).await {
        Ok(job) => Ok(state(&job)),
        Err(e) if is_conflict(&e) => Ok(match jobs.get_opt(&backup_job_name(&owner.name, backup_hash)).await? {
            Some(job) => state(&job),
            None => BackupState::NotStarted,
        }),
        Err(e) => Err(e.into()),
    }
}
