//! The demo's timeline: the example ClusterUpgrade built from what the
//! cluster runs, the fault set up before it is applied, and what the demo
//! does once drover meets the fault (relax the budget, fix the spec).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use drover_api::names::condition;
use drover_api::version::{image_tag, parse_version};
use drover_api::{ClusterUpgrade, ClusterUpgradeSpec};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubesim::sim::{Fault, Simulation};
use serde_json::{Value, json};

use super::poll::role_of;
use super::render::Display;
use super::states::{cond, current, drain_blocked, is_true, upgrade_failed};
use super::{Clock, DemoFault, NAME};

/// How long a blocked drain is shown before the demo relaxes the budget.
const BLOCKED_FOR: Duration = Duration::from_secs(4);

/// A version one minor (`.0`) or one patch up, keeping a leading `v`.
fn one_up(v: &str, minor: bool) -> Option<String> {
    let p = parse_version(v)?;
    let prefix = if v.starts_with('v') { "v" } else { "" };
    Some(if minor {
        format!("{prefix}{}.{}.0", p.major, p.minor + 1)
    } else {
        format!("{prefix}{}.{}.{}", p.major, p.minor, p.patch + 1)
    })
}

fn oldest(versions: impl Iterator<Item = String>) -> Option<String> {
    versions
        .filter_map(|v| parse_version(&v).map(|p| (p, v)))
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v)
}

fn job(name: &str, version: &str) -> Value {
    json!({"name": name, "version": version, "upgrade": {"job": {"image": "registry.example.com/drover-upgrade:1", "privileged": true, "hostRoot": true, "timeout": "30m"}}})
}

/// The node components (Job upgrades): the runtime and etcd one patch up,
/// Kubernetes one minor up.
fn node_components(nodes: &[Node], pods: &[Pod]) -> Vec<Value> {
    let infos: Vec<_> = nodes
        .iter()
        .filter_map(|n| n.status.as_ref()?.node_info.clone())
        .collect();
    let static_tag = |component: &str| {
        oldest(
            pods.iter()
                .filter(|p| p.labels().get("component").map(String::as_str) == Some(component))
                .filter_map(|p| image_tag(p.spec.as_ref()?.containers.first()?.image.as_deref()?).map(str::to_string)),
        )
    };
    let mut components = Vec::new();
    if let Some(v) = oldest(infos.iter().filter_map(|i| {
        i.container_runtime_version
            .strip_prefix("containerd://")
            .map(str::to_string)
    })) && let Some(up) = one_up(&v, false)
    {
        components.push(job("containerd", &up));
    }
    if let Some(up) = static_tag("etcd").and_then(|v| one_up(&v, false)) {
        components.push(job("etcd", &up));
    }
    if let Some(up) = static_tag("kube-apiserver").and_then(|v| one_up(&v, true)) {
        for c in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"] {
            components.push(job(c, &up));
        }
    }
    components
}

/// The example ClusterUpgrade: what the cluster runs now, one version up
/// (Kubernetes one minor, the runtime, etcd and CoreDNS one patch, the
/// network plugin one minor), for the components the cluster has.
pub async fn example_spec(client: &Client) -> anyhow::Result<ClusterUpgradeSpec> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let pods = Api::<Pod>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default().labels("tier=control-plane"))
        .await?
        .items;
    let mut components = node_components(&nodes, &pods);
    let ds = Api::<DaemonSet>::namespaced(client.clone(), "kube-system");
    if let Some(d) = ds.get_opt("calico-node").await?
        && let Some(up) = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref()?.containers.first()?.image.clone())
            .and_then(|i| image_tag(&i).and_then(|t| one_up(t, true)))
    {
        components.push(json!({"name": "calico", "version": up, "upgrade": {"workload": {"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"}}}));
    }
    let deploys = Api::<Deployment>::namespaced(client.clone(), "kube-system");
    if let Some(d) = deploys.get_opt("coredns").await?
        && let Some(up) = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref()?.containers.first()?.image.clone())
            .and_then(|i| image_tag(&i).and_then(|t| one_up(t, false)))
    {
        components.push(json!({"name": "coredns", "version": up, "upgrade": {"workload": {"kind": "Deployment", "namespace": "kube-system", "name": "coredns"}}}));
    }
    if components.is_empty() {
        anyhow::bail!("the scenario's cluster runs none of the components the demo upgrades");
    }
    // Two workers at a time on a small cluster, a fifth of them on a large one.
    let workers = nodes.iter().filter(|n| role_of(n) == "worker").count();
    let max_unavailable = if workers > 10 { json!("20%") } else { json!(2) };
    let spec = json!({
        "components": components,
        // The default two retries, seconds apart rather than the default
        // 30s, so that --fault failing-upgrade shows them and still ends soon.
        "strategy": {"maxUnavailable": max_unavailable, "retryDelay": "2s"},
        "drain": {"force": true, "deleteEmptyDirData": true, "timeout": "10m"}
    });
    Ok(serde_json::from_value(spec)?)
}

/// Applies the example ClusterUpgrade; returns its target (`component=version,…`).
pub async fn apply(client: &Client, spec: &ClusterUpgradeSpec, clock: &Clock) -> anyhow::Result<String> {
    let api: Api<ClusterUpgrade> = Api::all(client.clone());
    api.create(&PostParams::default(), &ClusterUpgrade::new(NAME, spec.clone()))
        .await
        .context("applying the example ClusterUpgrade")?;
    let target = drover_api::names::target_string(spec);
    println!("{} applied ClusterUpgrade {NAME}: {target}", clock.stamp());
    Ok(target)
}

/// The fault the demo scripts, and where it stands.
pub enum Script {
    None,
    PdbBlock {
        pdb: (String, String),
        seen: Option<Instant>,
        relaxed: bool,
    },
    FailingUpgrade {
        node: String,
        fixed: bool,
    },
}

impl Script {
    /// Sets up `fault` in the simulation, before the ClusterUpgrade is applied.
    pub async fn arm(
        fault: Option<DemoFault>,
        sim: &Simulation,
        client: &Client,
        spec: &ClusterUpgradeSpec,
        clock: &Clock,
    ) -> anyhow::Result<Script> {
        match fault {
            None => Ok(Script::None),
            Some(DemoFault::PdbBlock) => arm_pdb_block(sim, client, clock).await,
            Some(DemoFault::FailingUpgrade) => arm_failing_upgrade(sim, client, spec, clock).await,
        }
    }

    /// After each reading: once drover has met the fault, what an operator
    /// would do about it.
    pub async fn step(&mut self, cu: &ClusterUpgrade, now: Instant, on: &Stage<'_>) -> anyhow::Result<()> {
        match self {
            Script::PdbBlock { pdb, seen, relaxed } if !*relaxed => {
                let blocked = cond(cu, condition::READY).is_some_and(drain_blocked);
                if blocked && seen.is_none() {
                    *seen = Some(now);
                }
                if seen.is_some_and(|t| now.duration_since(t) >= BLOCKED_FOR) {
                    on.sim.clear_faults();
                    *relaxed = true;
                    on.display.say(&format!(
                        "{} relaxing PodDisruptionBudget {}/{} (as an operator would): the drain goes on",
                        on.clock.stamp(),
                        pdb.0,
                        pdb.1
                    ));
                }
            }
            Script::FailingUpgrade { node, fixed } if !*fixed => {
                let stalled = current(cu) && cond(cu, condition::STALLED).is_some_and(stalled_by_a_job);
                if stalled {
                    on.sim.clear_faults();
                    fix_the_spec(cu, on.client).await?;
                    *fixed = true;
                    on.display.say(&format!(
                        "{} fixing the spec: a working upgrade image (drover-upgrade:2); {node} is retried and the rollout resumes",
                        on.clock.stamp()
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Where the script acts and tells what it did.
pub struct Stage<'a> {
    pub sim: &'a Simulation,
    pub client: &'a Client,
    pub display: &'a Display,
    pub clock: &'a Clock,
}

fn stalled_by_a_job(c: &Condition) -> bool {
    is_true(c) && upgrade_failed(c)
}

async fn arm_pdb_block(sim: &Simulation, client: &Client, clock: &Clock) -> anyhow::Result<Script> {
    let pdbs = Api::<PodDisruptionBudget>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let pick = pdbs
        .iter()
        .find(|p| p.namespace().as_deref() == Some("shop") && p.name_any() == "web")
        .or_else(|| pdbs.first())
        .context("--fault pdb-block needs a scenario with a PodDisruptionBudget")?;
    let (ns, name) = (pick.namespace().unwrap_or_default(), pick.name_any());
    sim.set_fault(Fault::PdbBlocks {
        namespace: ns.clone(),
        name: name.clone(),
    })?;
    println!(
        "{} fault: PodDisruptionBudget {ns}/{name} allows no disruption for now",
        clock.stamp()
    );
    Ok(Script::PdbBlock {
        pdb: (ns, name),
        seen: None,
        relaxed: false,
    })
}

async fn arm_failing_upgrade(
    sim: &Simulation,
    client: &Client,
    spec: &ClusterUpgradeSpec,
    clock: &Clock,
) -> anyhow::Result<Script> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let mut workers: Vec<String> = nodes
        .iter()
        .filter(|n| role_of(n) == "worker")
        .map(|n| n.name_any())
        .collect();
    workers.sort();
    let node = workers
        .first()
        .cloned()
        .context("--fault failing-upgrade needs a scenario with a worker")?;
    let component = spec.components.first().map(|c| c.name.clone()).unwrap_or_default();
    sim.set_fault(Fault::UpgradeFails {
        component: component.clone(),
        nodes: vec![node.clone()],
    })?;
    println!("{} fault: the {component} upgrade will fail on {node}", clock.stamp());
    Ok(Script::FailingUpgrade { node, fixed: false })
}

/// The spec with a working upgrade image for its first component.
async fn fix_the_spec(cu: &ClusterUpgrade, client: &Client) -> anyhow::Result<()> {
    let mut fixed_spec = serde_json::to_value(&cu.spec)?;
    fixed_spec["components"][0]["upgrade"]["job"]["image"] = json!("registry.example.com/drover-upgrade:2");
    Api::<ClusterUpgrade>::all(client.clone())
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"components": fixed_spec["components"]}})),
        )
        .await
        .context("fixing the spec")?;
    Ok(())
}
