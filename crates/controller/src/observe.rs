//! Observe: turn what the caches and the API show into the planner's
//! `Observation`. Nodes come from a watch-fed cache; the few pods that carry
//! control-plane versions are listed by label per pass.

use std::collections::{BTreeMap, BTreeSet};

use drover_api::known::verify_of;
use drover_api::names::annotation;
use drover_api::selector::Matcher;
use drover_api::version::image_tag;
use drover_api::{ClusterUpgrade, ClusterUpgradeSpec};
use drover_nodeops::verify::{node_info_field, node_ready};
use drover_nodeops::{NodeOps, Owner};
use drover_plan::{Observation, ObservedNode, OtherUpgrade, PodsRefused, Record};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::error::Result;

/// The time, to the second: statuses and annotations store seconds, so a
/// finer clock would make every pass look like a change.
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now is in range")
}

/// The `component` label values of the kube-system pods drover keeps in a
/// watch-fed cache (the static pods of the control plane): their versions
/// are read on every pass, so they are not listed on every pass.
pub const CACHED_COMPONENTS: [&str; 4] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"];

/// The label selector of that cache.
pub fn cached_selector() -> String {
    format!("component in ({})", CACHED_COMPONENTS.join(","))
}

/// The control-plane pods' cache, once it has synced.
#[derive(Clone, Default)]
pub struct ControlPlanePods {
    pub store: Option<kube::runtime::reflector::Store<Pod>>,
    pub synced: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ControlPlanePods {
    /// The cached pods a check selects, when the cache covers it (kube-system,
    /// exactly `component=<one of CACHED_COMPONENTS>`) and has synced.
    fn select(&self, check: &drover_api::PodImageCheck) -> Option<Vec<std::sync::Arc<Pod>>> {
        let store = self.store.as_ref()?;
        if !self.synced.load(std::sync::atomic::Ordering::Relaxed) || check.namespace != "kube-system" {
            return None;
        }
        let component = match check.labels.iter().collect::<Vec<_>>()[..] {
            [(k, v)] if k == "component" && CACHED_COMPONENTS.contains(&v.as_str()) => v,
            _ => return None,
        };
        Some(
            store
                .state()
                .into_iter()
                .filter(|p| p.labels().get("component") == Some(component))
                .collect(),
        )
    }
}

/// Image tags of pods selected by a pod check, by node: from the control
/// plane's cache when it covers the check, else listed.
async fn pod_tags(
    client: &Client,
    cached: &ControlPlanePods,
    check: &drover_api::PodImageCheck,
) -> Result<BTreeMap<String, String>> {
    let items: Vec<std::sync::Arc<Pod>> = match cached.select(check) {
        Some(pods) => pods,
        None => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &check.namespace);
            let labels: Vec<String> = check.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let list = pods.list(&ListParams::default().labels(&labels.join(","))).await?;
            list.items.into_iter().map(std::sync::Arc::new).collect()
        }
    };
    Ok(items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let spec = p.spec.as_ref()?;
            let node = spec.node_name.clone()?;
            let container = match &check.container {
                Some(name) => spec.containers.iter().find(|c| &c.name == name),
                None => spec.containers.first(),
            }?;
            Some((node, image_tag(container.image.as_deref()?)?.to_string()))
        })
        .collect())
}

pub fn owner(cu: &ClusterUpgrade) -> Owner {
    Owner {
        name: cu.name_any(),
        uid: cu.uid().unwrap_or_default(),
    }
}

/// One node as the planner sees it, given where each component's version is read.
fn observed_node(
    spec: &ClusterUpgradeSpec,
    n: &Node,
    pod_versions: &BTreeMap<String, BTreeMap<String, String>>,
) -> ObservedNode {
    let name = n.name_any();
    let annotations = n.annotations();
    let mut versions = BTreeMap::new();
    for c in spec.components.iter().filter(|c| c.upgrade.job.is_some()) {
        let v = verify_of(c);
        let live = if let Some(field) = v.node_info {
            node_info_field(n, field)
        } else if v.pod.is_some() {
            pod_versions.get(&c.name).and_then(|m| m.get(&name)).cloned()
        } else {
            annotations
                .get(&format!("{}{}", annotation::VERIFIED_PREFIX, c.name))
                .cloned()
        };
        if let Some(live) = live {
            versions.insert(c.name.clone(), live);
        }
    }
    let (record, newer_record) = match annotations.get(annotation::PROGRESS).map(|s| Record::parse(s)) {
        Some(Record::Readable(p)) => (Some(*p), None),
        Some(Record::Newer { v, .. }) => (None, Some(v)),
        _ => (None, None),
    };
    ObservedNode {
        name,
        labels: n.labels().clone(),
        ready: node_ready(n),
        unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        cordoned_by: annotations.get(annotation::CORDONED_BY).cloned(),
        versions,
        boot_id: n
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.boot_id.clone())
            .unwrap_or_default(),
        keep_cordoned: annotations.get(annotation::KEEP_CORDONED).cloned(),
        unschedulable_by: unschedulable_manager(n),
        progress: record,
        newer_record,
        steered_by: drover_nodeops::steer::owner(n),
    }
}

/// The field manager that last set the node's `spec.unschedulable`, from
/// its managedFields (None when the server keeps none).
fn unschedulable_manager(n: &Node) -> Option<String> {
    n.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.get("f:spec").and_then(|s| s.get("f:unschedulable")).is_some())
        })
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| m.manager.clone())
}

/// The Kubernetes components the skew rules speak of, read even when the
/// spec does not name them: what stays behind must fit the new API server.
async fn add_skew_versions(
    client: &Client,
    cached: &ControlPlanePods,
    spec: &ClusterUpgradeSpec,
    nodes: &[std::sync::Arc<Node>],
    observed: &mut [ObservedNode],
) -> Result<()> {
    use drover_api::NodeInfoField;
    let named = |n: &str| spec.components.iter().any(|c| c.name == n && c.upgrade.job.is_some());
    for (component, field) in [
        ("kubelet", NodeInfoField::KubeletVersion),
        ("kube-proxy", NodeInfoField::KubeProxyVersion),
    ] {
        if named(component) {
            continue;
        }
        for (o, n) in observed.iter_mut().zip(nodes) {
            if let Some(v) = node_info_field(n, field).filter(|v| !v.is_empty()) {
                o.versions.insert(component.into(), v);
            }
        }
    }
    for component in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
        if named(component) {
            continue;
        }
        let check = drover_api::PodImageCheck {
            namespace: "kube-system".into(),
            labels: BTreeMap::from([("component".to_string(), component.to_string())]),
            container: None,
        };
        let tags = pod_tags(client, cached, &check).await?;
        for o in observed.iter_mut() {
            if let Some(v) = tags.get(&o.name) {
                o.versions.insert(component.into(), v.clone());
            }
        }
    }
    Ok(())
}

/// Everything the planner needs for `cu`.
#[allow(clippy::too_many_arguments)]
pub async fn observe<O: NodeOps>(
    client: &Client,
    cached: &ControlPlanePods,
    ops: &O,
    cu: &ClusterUpgrade,
    nodes: &[std::sync::Arc<Node>],
    upgrades: &[std::sync::Arc<ClusterUpgrade>],
    self_node: Option<String>,
    job_namespace: Option<&str>,
) -> Result<Observation> {
    let spec = &cu.spec;
    let mut pod_versions = BTreeMap::new();
    for c in spec.components.iter().filter(|c| c.upgrade.job.is_some()) {
        if let Some(check) = verify_of(c).pod {
            pod_versions.insert(c.name.clone(), pod_tags(client, cached, &check).await?);
        }
    }
    let mut observed: Vec<ObservedNode> = nodes.iter().map(|n| observed_node(spec, n, &pod_versions)).collect();
    if spec.version_policy.skew == drover_api::SkewPolicy::Enforce {
        add_skew_versions(client, cached, spec, nodes, &mut observed).await?;
    }

    let mut workloads = BTreeMap::new();
    for c in &spec.components {
        if let Some(w) = &c.upgrade.workload {
            match ops.observe_workload(w, &c.version).await {
                Ok(seen) => {
                    workloads.insert(c.name.clone(), seen);
                }
                Err(e) => tracing::warn!(component = %c.name, error = %e, "cannot read the workload"),
            }
        }
    }

    let backups = match &spec.backup {
        Some(b) => ops.observe_backups(&owner(cu), b).await?,
        None => BTreeMap::new(),
    };

    // `drover plan` passes no namespace: it only reads, and a dry run is a create.
    // Nothing left to run (every node at every target it reports, none in
    // flight): no Job will be made, so admission is not asked (an idle
    // drover sends nothing but its watches).
    let all_done = observed.iter().all(|n| {
        n.progress.is_none()
            && spec
                .components
                .iter()
                .all(|c| n.versions.get(&c.name).is_none_or(|v| *v == c.version))
    });
    let job_pods_refused = match job_namespace {
        Some(_) if all_done => None,
        Some(ns) => job_pods_refused(ops, cu, nodes, ns).await,
        None => None,
    };

    let name = cu.name_any();
    let others = upgrades
        .iter()
        .filter(|o| o.name_any() != name && o.metadata.deletion_timestamp.is_none())
        .map(|o| (o, Matcher::optional(o.spec.node_selector.as_ref())))
        .map(|(o, selects)| OtherUpgrade {
            name: o.name_any(),
            created: o
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH),
            nodes: observed
                .iter()
                .filter(|n| selects.matches(&n.labels))
                .map(|n| n.name.clone())
                .collect::<BTreeSet<_>>(),
        })
        .collect();

    Ok(Observation {
        now: now(),
        name,
        generation: cu.metadata.generation.unwrap_or(0),
        created: cu
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
        nodes: observed,
        workloads,
        backups,
        others,
        self_node,
        previous: cu.status.clone(),
        // The caller's setting (drover run --allowed-images), not the cluster's.
        allowed_images: None,
        writer: None,
        job_pods_refused,
    })
}

/// Whether PodSecurity admission in the Job namespace would refuse the pod
/// of any upgrade Job the spec runs (a server-side dry run; the answers are
/// cached by nodeops). The node is any node: admission does not depend on it.
async fn job_pods_refused<O: NodeOps>(
    ops: &O,
    cu: &ClusterUpgrade,
    nodes: &[std::sync::Arc<Node>],
    job_namespace: &str,
) -> Option<PodsRefused> {
    let node = nodes.first()?.name_any();
    let owner = owner(cu);
    for c in &cu.spec.components {
        let Some(job) = &c.upgrade.job else { continue };
        let verify = verify_of(c);
        let req = drover_nodeops::UpgradeRequest {
            owner: &owner,
            node: &node,
            component: &c.name,
            version: &c.version,
            job,
            verify: &verify,
            not_before: None,
        };
        if let Ok(Some(message)) = ops.job_pod_refusal(&req).await {
            return Some(PodsRefused {
                namespace: job_namespace.to_string(),
                message,
            });
        }
    }
    None
}
