//! Upgrade Jobs: one per (ClusterUpgrade, node, component, version), named
//! deterministically so a restarted drover finds the Job it created instead
//! of starting a second one.

use std::collections::BTreeMap;

use drover_api::Outcome;
use drover_api::Reason;
use drover_api::names::label;
use drover_api::names::short_hash;
use drover_api::validate::parse_duration;
use drover_api::{EnvVar, JobUpgrade};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar as K8sEnvVar, HostPathVolumeSource, Pod, PodSpec, PodTemplateSpec, SecurityContext, Toleration,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

use crate::cache::Caches;
use crate::error::{NodeOpsError, Result, is_conflict};

/// The ClusterUpgrade a Job belongs to (its owner reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "drover.dev/v1alpha1".into(),
            kind: "ClusterUpgrade".into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// The Job for one component on one node.
#[derive(Debug, Clone)]
pub struct UpgradeJob<'a> {
    pub owner: &'a Owner,
    pub namespace: &'a str,
    pub node: &'a str,
    pub component: &'a str,
    pub version: &'a str,
    pub job: &'a JobUpgrade,
}

pub(crate) fn dns_part(s: &str, max: usize) -> String {
    let cleaned: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(max)
        .collect();
    cleaned.trim_matches('-').to_string()
}

/// A name as the Job labels carry it (`drover.dev/upgrade`, `drover.dev/node`…).
pub fn label_value(s: &str) -> String {
    dns_part(s, 63)
}

/// `<component>-<node>-<hash>`, at most 63 characters; the hash covers all
/// four parts so any change of version gives a new Job.
pub fn job_name(upgrade: &str, node: &str, component: &str, version: &str) -> String {
    let hash = short_hash(&format!("{upgrade}/{node}/{component}/{version}"));
    format!("{}-{}-{}", dns_part(component, 20), dns_part(node, 30), &hash[..10])
}

fn env(name: &str, value: &str) -> K8sEnvVar {
    K8sEnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// The Job object, built from the spec.
pub fn build(j: &UpgradeJob) -> Job {
    let name = job_name(&j.owner.name, j.node, j.component, j.version);
    let mut labels = BTreeMap::from([
        (label::MANAGED_BY.to_string(), label::MANAGED_BY_VALUE.to_string()),
        (label::UPGRADE.to_string(), dns_part(&j.owner.name, 63)),
        (label::NODE.to_string(), dns_part(j.node, 63)),
        (label::COMPONENT.to_string(), dns_part(j.component, 63)),
    ]);
    let mut vars = vec![
        env("DROVER_COMPONENT", j.component),
        env("DROVER_VERSION", j.version),
        env("DROVER_NODE", j.node),
    ];
    if j.job.reboots {
        vars.push(env("DROVER_REBOOT", "true"));
    }
    vars.extend(j.job.env.iter().map(|EnvVar { name, value }| env(name, value)));
    let (mounts, volumes) = if j.job.host_root {
        (
            Some(vec![VolumeMount {
                name: "host-root".into(),
                mount_path: "/host".into(),
                ..VolumeMount::default()
            }]),
            Some(vec![Volume {
                name: "host-root".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/".into(),
                    type_: Some("Directory".into()),
                }),
                ..Volume::default()
            }]),
        )
    } else {
        (None, None)
    };
    let deadline = parse_duration(&j.job.timeout).map(|d| d.as_secs().max(1) as i64);
    let pod_labels = {
        let mut l = labels.clone();
        l.insert("drover.dev/job".into(), name.clone());
        l
    };
    labels.insert("drover.dev/job".into(), name.clone());
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(j.namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![j.owner.reference()]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(j.job.backoff_limit.clamp(0, 10)),
            active_deadline_seconds: deadline,
            ttl_seconds_after_finished: Some(3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_name: Some(j.node.to_string()),
                    restart_policy: Some("Never".into()),
                    // Every taint, including unschedulable and NotReady: the Job must run on its node.
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Toleration::default()
                    }]),
                    host_pid: Some(j.job.host_root && j.job.privileged),
                    containers: vec![Container {
                        name: "upgrade".into(),
                        image: Some(j.job.image.clone()),
                        command: (!j.job.command.is_empty()).then(|| j.job.command.clone()),
                        args: (!j.job.args.is_empty()).then(|| j.job.args.clone()),
                        env: Some(vars),
                        security_context: j.job.privileged.then(|| SecurityContext {
                            privileged: Some(true),
                            ..SecurityContext::default()
                        }),
                        volume_mounts: mounts,
                        termination_message_policy: Some("FallbackToLogsOnError".into()),
                        ..Container::default()
                    }],
                    volumes,
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// The last `n` characters of a termination message.
fn tail(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.trim().chars().collect();
    let start = chars.len().saturating_sub(n);
    chars[start..].iter().collect()
}

/// How much older than the step's start a finished Job must be to count as
/// an earlier attempt's: creation timestamps have whole seconds and the API
/// server's clock is not drover's. A retry comes after a Job's run, a
/// verification's or a reboot's wait, so its old Job is far older.
pub const EARLIER_ATTEMPT_MARGIN: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// The annotation on drover's Jobs naming the attempt (the step's start)
/// that created them.
pub const ATTEMPT_ANNOTATION: &str = "drover.dev/attempt";

/// Marks `job` as created by the attempt that started at `not_before`.
pub fn mark_attempt(job: &mut Job, not_before: Option<jiff::Timestamp>) {
    if let Some(t) = not_before {
        job.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ATTEMPT_ANNOTATION.into(), t.to_string());
    }
}

/// Whether `job` finished (Complete or Failed) in an attempt before the one
/// that started at `not_before`: a retry must run the Job again, not read
/// the old one's result. A Job names its attempt ([`ATTEMPT_ANNOTATION`]);
/// one made before drover wrote that counts as earlier when it was created
/// more than [`EARLIER_ATTEMPT_MARGIN`] before the step began.
pub fn from_an_earlier_attempt(job: &Job, not_before: Option<jiff::Timestamp>) -> bool {
    let finished = condition(job, "Failed").is_some() || condition(job, "Complete").is_some();
    let Some(t) = not_before.filter(|_| finished) else {
        return false;
    };
    match job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ATTEMPT_ANNOTATION))
    {
        Some(attempt) => attempt.parse::<jiff::Timestamp>().map_or(true, |a| a < t),
        None => job
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|c| c.0 + EARLIER_ATTEMPT_MARGIN < t),
    }
}

/// The Job `name` of the attempt that started at `not_before`: the one
/// there, or `make()` created and marked with the attempt. None when the
/// one there finished in an earlier attempt: it is being deleted, and the
/// next pass creates this attempt's.
/// The Job is read from the watch-fed store when there is one (see [`Caches`]).
pub(crate) async fn this_attempts_job(
    jobs: &Api<Job>,
    caches: &Caches,
    (namespace, name): (&str, &str),
    not_before: Option<jiff::Timestamp>,
    make: impl FnOnce() -> Job,
) -> Result<Option<Job>> {
    let earlier = |job: &Job| from_an_earlier_attempt(job, not_before);
    match caches.job_opt(jobs, namespace, name).await? {
        Some(job) if earlier(&job) => {
            delete_earlier(jobs, name).await?;
            Ok(None)
        }
        Some(job) => Ok(Some(job)),
        None => {
            let mut job = make();
            mark_attempt(&mut job, not_before);
            match jobs.create(&PostParams::default(), &job).await {
                Ok(job) => Ok(Some(job)),
                // There after all (a store a moment behind): the earlier
                // attempt's check applies to what the server has.
                Err(e) if is_conflict(&e) => match jobs.get_opt(name).await? {
                    Some(job) if earlier(&job) => {
                        delete_earlier(jobs, name).await?;
                        Ok(None)
                    }
                    Some(job) => Ok(Some(job)),
                    None => Ok(None),
                },
                Err(e) => Err(NodeOpsError::Kube(e)),
            }
        }
    }
}

/// Delete an earlier attempt's Job; one already gone (a store that still
/// shows it) is what was wanted.
async fn delete_earlier(jobs: &Api<Job>, name: &str) -> Result<()> {
    match jobs.delete(name, &kube::api::DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(e) if crate::error::is_not_found(&e) => Ok(()),
        Err(e) => Err(NodeOpsError::Kube(e)),
    }
}

/// Create the Job if it does not exist and report where it stands. A
/// finished Job created before `not_before` (when the node entered this
/// step) belongs to an earlier attempt (a retry after a failed Job, a
/// version that did not verify, a reboot that did not come back): it is
/// deleted so that this attempt runs the Job afresh.
pub async fn run(
    client: &Client,
    caches: &Caches,
    j: &UpgradeJob<'_>,
    not_before: Option<jiff::Timestamp>,
) -> Result<Outcome> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), j.namespace);
    let name = job_name(&j.owner.name, j.node, j.component, j.version);
    let Some(job) = this_attempts_job(&jobs, caches, (j.namespace, &name), not_before, || build(j)).await? else {
        return Ok(Outcome::Waiting {
            message: format!("replacing job {name}, which finished in an earlier attempt"),
        });
    };
    status(client, &job).await
}

/// Done, Waiting or Failed (with the Job's reason and the tail of its pod's message).
pub async fn status(client: &Client, job: &Job) -> Result<Outcome> {
    let name = job.name_any();
    if condition(job, "Complete").is_some() {
        // kured's convention, through the termination message: the Job may
        // say the node must reboot before its new version shows.
        return Ok(match last_pod_message(client, job, true).await? {
            Some(m) if m.to_ascii_lowercase().contains(REBOOT_REQUIRED) => Outcome::RebootRequired { message: m },
            _ => Outcome::Done,
        });
    }
    if let Some(c) = condition(job, "Failed") {
        let why = c.reason.clone().unwrap_or_else(|| "Failed".into());
        let detail = c.message.clone().unwrap_or_default();
        let pod_message = last_pod_message(client, job, false).await?;
        let mut message = format!("job {}/{name} failed ({why})", job.namespace().unwrap_or_default());
        if !detail.is_empty() {
            message.push_str(&format!(": {detail}"));
        }
        if let Some(m) = pod_message {
            message.push_str(&format!("; pod said: {m}"));
        }
        return Ok(Outcome::Failed {
            reason: Reason::UpgradeJobFailed,
            message,
        });
    }
    let s = job.status.clone().unwrap_or_default();
    Ok(Outcome::Waiting {
        message: format!(
            "job {name} running ({} active, {} failed attempts)",
            s.active.unwrap_or(0),
            s.failed.unwrap_or(0)
        ),
    })
}

/// What an upgrade Job writes to its termination message (`/dev/termination-log`)
/// to ask for a reboot.
pub const REBOOT_REQUIRED: &str = "reboot-required";

/// The termination message of the Job's most recent pod that ended (that
/// succeeded, with `succeeded`), cut to its last 400 characters.
async fn last_pod_message(client: &Client, job: &Job, succeeded: bool) -> Result<Option<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let list = pods
        .list(&ListParams::default().labels(&format!("drover.dev/job={}", job.name_any())))
        .await?;
    let mut messages: Vec<(String, String)> = list
        .items
        .iter()
        .filter_map(|p| {
            let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
            statuses.iter().find_map(|cs| {
                let t = cs.state.as_ref()?.terminated.as_ref()?;
                if succeeded != (t.exit_code == 0) {
                    return None;
                }
                let m = t.message.clone().filter(|m| !m.trim().is_empty())?;
                let at = t.finished_at.as_ref().map(|f| f.0.to_string()).unwrap_or_default();
                Some((at, m))
            })
        })
        .collect();
    messages.sort();
    Ok(messages.pop().map(|(_, m)| tail(&m, 400)))
}

/// What the API server says of this Job's pod, asked with a server-side
/// dry run of the Pod itself: PodSecurity admission enforces on pods and
/// only warns on Jobs, so a Job it forbids is created and never runs.
/// Some(the server's words) when PodSecurity refuses the pod; None when the
/// pod would be admitted. Any other answer (RBAC without `create pods` in
/// the namespace, a server error) is an error: it says nothing about
/// PodSecurity.
pub async fn pod_refusal(client: &Client, j: &UpgradeJob<'_>) -> Result<Option<String>> {
    let job = build(j);
    let template = job.spec.map(|s| s.template).unwrap_or_default();
    let pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", job.metadata.name.unwrap_or_default())),
            namespace: Some(j.namespace.to_string()),
            labels: template.metadata.and_then(|m| m.labels),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), j.namespace);
    let params = PostParams {
        dry_run: true,
        field_manager: None,
    };
    match pods.create(&params, &pod).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("PodSecurity") => Ok(Some(s.message)),
        Err(e) => Err(NodeOpsError::Kube(e)),
    }
}
