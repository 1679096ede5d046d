//! `drover plan -f FILE`: a dry run against the current cluster. Reads the
//! cluster (nodes, pods, PodDisruptionBudgets, workloads, ClusterUpgrades),
//! never writes: validates the spec, checks the version-skew rules against
//! what nodes run, forecasts the stages and batches with the planner, and
//! lists the drains PodDisruptionBudgets would block right now.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::ValueEnum;
use drover_api::names::target_string;
use drover_api::version::same_version;
use drover_api::{ClusterUpgrade, StrategyType};
use drover_nodeops::KubeNodeOps;
use drover_nodeops::drain::{DrainOptions, PodDisposition, disposition};
use drover_plan::Observation;
use drover_plan::RolloutStage;
use drover_plan::forecast::{BatchWork, End, Forecast, forecast};
use drover_plan::view::component_targets_node;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde_json::json;

use crate::ui::{explain, table};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The ClusterUpgrade manifest (YAML or JSON; `-` for standard input).
    #[arg(long = "filename", short = 'f')]
    pub file: PathBuf,
    /// Text for people, JSON for machines.
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: Format,
    /// A kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The node drover runs on (it goes last among workers).
    #[arg(long)]
    pub node_name: Option<String>,
    /// drover run's --allowed-images, to check the spec's images against it.
    #[arg(long, value_name = "PATTERNS", value_parser = drover_api::images::AllowedImages::parse)]
    pub allowed_images: Option<drover_api::images::AllowedImages>,
}

/// A pod whose eviction a PodDisruptionBudget would refuse now.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlockedDrain {
    pub node: String,
    /// The batch (1-based) the node starts in.
    pub batch: usize,
    pub pod: String,
    pub pdb: String,
    pub disruptions_allowed: i32,
}

/// A pod the drain options do not allow drover to evict.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RefusedPod {
    pub node: String,
    pub batch: usize,
    pub pod: String,
    pub reason: String,
}

fn read_manifest(path: &PathBuf) -> anyhow::Result<ClusterUpgrade> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let value: serde_json::Value =
        serde_yaml::from_str(&text).with_context(|| format!("{} is not YAML or JSON", path.display()))?;
    let (api_version, kind) = (value["apiVersion"].as_str(), value["kind"].as_str());
    if api_version != Some("drover.dev/v1alpha1") || kind != Some("ClusterUpgrade") {
        anyhow::bail!(
            "{} holds apiVersion {:?}, kind {:?}; expected a drover.dev/v1alpha1 ClusterUpgrade",
            path.display(),
            api_version.unwrap_or(""),
            kind.unwrap_or("")
        );
    }
    let cu: ClusterUpgrade = serde_json::from_value(value).with_context(|| {
        format!(
            "{} is not a valid ClusterUpgrade (the schema refuses it)",
            path.display()
        )
    })?;
    if cu.metadata.name.as_deref().unwrap_or("").is_empty() {
        anyhow::bail!("{}: metadata.name is required", path.display());
    }
    Ok(cu)
}

/// The ClusterUpgrade as drover would see it once applied: the existing
/// object's identity and status when there is one, a new object otherwise.
fn as_applied(mut cu: ClusterUpgrade, existing: Option<&ClusterUpgrade>) -> ClusterUpgrade {
    match existing {
        Some(e) => {
            let same = e.spec == cu.spec;
            let generation = e.metadata.generation.unwrap_or(1) + if same { 0 } else { 1 };
            cu.metadata = e.metadata.clone();
            cu.metadata.generation = Some(generation);
            cu.status = e.status.clone();
        }
        None => {
            cu.metadata.generation = Some(1);
            cu.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                drover_controller::observe::now(),
            ));
            cu.status = None;
        }
    }
    cu
}

fn role(obs: &Observation, name: &str) -> &'static str {
    match obs.nodes.iter().find(|n| n.name == name) {
        Some(n) if n.is_control_plane() && n.is_etcd() => "control-plane+etcd",
        Some(n) if n.is_control_plane() => "control-plane",
        Some(n) if n.is_etcd() => "etcd",
        _ => "worker",
    }
}

/// `component from→to` for each change the node would get.
fn changes(cu: &ClusterUpgrade, obs: &Observation, name: &str) -> Vec<String> {
    let Some(n) = obs.nodes.iter().find(|n| n.name == name) else {
        return vec![];
    };
    cu.spec
        .components
        .iter()
        .filter(|c| component_targets_node(c, n))
        .filter_map(|c| {
            let live = n.versions.get(&c.name);
            if live.is_some_and(|l| same_version(l, &c.version)) {
                return None;
            }
            // The runtime reports itself as `containerd://1.7.22`.
            let live = live.map_or("?", |s| s.split_once("://").map_or(s.as_str(), |(_, v)| v));
            Some(format!("{} {live}→{}", c.name, c.version))
        })
        .collect()
}

fn pdb_blocks(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    if pdb.namespace() != pod.namespace() {
        return false;
    }
    let allowed = pdb.status.as_ref().map(|s| s.disruptions_allowed);
    let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    allowed == Some(0) && drover_api::selector::matches(selector, pod.labels())
}

/// The drains of the forecast's nodes, checked against PDBs and the drain options now.
fn drain_checks(
    cu: &ClusterUpgrade,
    f: &Forecast,
    pods: &[Pod],
    pdbs: &[PodDisruptionBudget],
) -> (Vec<BlockedDrain>, Vec<RefusedPod>) {
    let (mut blocked, mut refused) = (Vec::new(), Vec::new());
    let drains = cu.spec.drain.enabled && cu.spec.strategy.type_ == StrategyType::Rolling;
    if !drains {
        return (blocked, refused);
    }
    let opts = DrainOptions::from_spec(&cu.spec.drain, Timestamp::now());
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for p in pods {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            by_node.entry(n).or_default().push(p);
        }
    }
    for (i, b) in f.batches.iter().enumerate() {
        let BatchWork::Nodes(nodes) = &b.work else { continue };
        for node in nodes {
            for pod in by_node.get(node.as_str()).into_iter().flatten() {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                match disposition(pod, &opts) {
                    PodDisposition::Skip(_) => {}
                    PodDisposition::Refuse(reason) => refused.push(RefusedPod {
                        node: node.clone(),
                        batch: i + 1,
                        pod: key,
                        reason,
                    }),
                    PodDisposition::Evict => {
                        for pdb in pdbs.iter().filter(|pdb| pdb_blocks(pdb, pod)) {
                            blocked.push(BlockedDrain {
                                node: node.clone(),
                                batch: i + 1,
                                pod: key.clone(),
                                pdb: format!("{}/{}", pdb.namespace().unwrap_or_default(), pdb.name_any()),
                                disruptions_allowed: 0,
                            });
                        }
                    }
                }
            }
        }
    }
    (blocked, refused)
}

fn work_text(w: &BatchWork, cu: &ClusterUpgrade) -> String {
    match w {
        BatchWork::Backup => "the backup Job".into(),
        BatchWork::Nodes(n) => n.join(", "),
        BatchWork::Workload { component, version } => {
            let how = cu
                .spec
                .components
                .iter()
                .find(|c| &c.name == component)
                .and_then(|c| c.upgrade.workload.as_ref())
                .map(|w| {
                    let names: Vec<String> = w.workloads().iter().map(|t| t.to_string()).collect();
                    format!(" ({})", names.join(", "))
                })
                .unwrap_or_default();
            format!("{component} → {version}{how}")
        }
    }
}

/// The stages that have work, in order, with what each does.
fn stages(f: &Forecast, cu: &ClusterUpgrade) -> Vec<(RolloutStage, String)> {
    let mut out: Vec<(RolloutStage, Vec<&BatchWork>)> = Vec::new();
    for b in &f.batches {
        match out.last_mut() {
            Some((s, ws)) if *s == b.stage => ws.push(&b.work),
            _ => out.push((b.stage, vec![&b.work])),
        }
    }
    out.into_iter()
        .map(|(stage, works)| {
            let nodes: Vec<&String> = works
                .iter()
                .filter_map(|w| match w {
                    BatchWork::Nodes(n) => Some(n),
                    _ => None,
                })
                .flatten()
                .collect();
            let text = if nodes.is_empty() {
                works.iter().map(|w| work_text(w, cu)).collect::<Vec<_>>().join("; ")
            } else if works.len() == nodes.len() {
                format!("{} node(s), one at a time", nodes.len())
            } else {
                let max = match &cu.spec.strategy.max_unavailable {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
                };
                // The forecast's batches are what a window comes to when every node takes as long.
                match cu.spec.strategy.batching {
                    drover_api::Batching::Batch => format!(
                        "{} node(s) in {} batches (spec.strategy.maxUnavailable {max})",
                        nodes.len(),
                        works.len()
                    ),
                    drover_api::Batching::Window => format!(
                        "{} node(s) in a sliding window of spec.strategy.maxUnavailable {max} (about {} rounds if every node takes as long)",
                        nodes.len(),
                        works.len()
                    ),
                }
            };
            (stage, text)
        })
        .collect()
}

fn end_json(e: &End) -> serde_json::Value {
    match e {
        End::Complete => json!({"result": "Complete"}),
        End::Held(h) => json!({"result": "Held", "reason": h.reason, "message": h.message, "stalled": h.stalled}),
        End::Stuck => {
            json!({"result": "Stuck", "message": "nothing can start and the planner gives no reason (another ClusterUpgrade holds the remaining nodes?)"})
        }
        End::Truncated => json!({"result": "Truncated", "message": "the forecast stopped after its round limit"}),
    }
}

pub async fn run(args: PlanArgs) -> anyhow::Result<bool> {
    let manifest = read_manifest(&args.file)?;
    let client = crate::ui::client(args.kubeconfig.clone()).await?;
    let name = manifest.name_any();

    // Reads only: every request below is a get or a list.
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing nodes")?
        .items;
    let upgrades = match Api::<ClusterUpgrade>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l.items,
        Err(kube::Error::Api(s)) if s.code == 404 => vec![],
        Err(e) => return Err(explain(e, "listing ClusterUpgrades")),
    };
    let existing = upgrades.iter().find(|u| u.name_any() == name);
    let cu = as_applied(manifest, existing);
    let ops = KubeNodeOps::new(client.clone(), client.clone(), "kube-system");
    let nodes: Vec<Arc<Node>> = nodes.into_iter().map(Arc::new).collect();
    let others: Vec<Arc<ClusterUpgrade>> = upgrades.iter().cloned().map(Arc::new).collect();
    let mut obs = drover_controller::observe::observe(
        &client,
        &Default::default(),
        &ops,
        &cu,
        &nodes,
        &others,
        args.node_name.clone(),
        None,
    )
    .await
    .context("observing the cluster")?;
    obs.allowed_images = args.allowed_images.clone();
    let f = forecast(&cu.spec, &obs);
    let (blocked, refused) = if f.refusal.is_none() {
        let pods = Api::<Pod>::all(client.clone())
            .list(&ListParams::default())
            .await
            .context("listing pods")?
            .items;
        let pdbs = Api::<PodDisruptionBudget>::all(client.clone())
            .list(&ListParams::default())
            .await
            .context("listing PodDisruptionBudgets")?
            .items;
        drain_checks(&cu, &f, &pods, &pdbs)
    } else {
        (vec![], vec![])
    };

    let plan = drover_plan::plan(&cu.spec, &obs);
    let in_scope: Vec<&str> = plan
        .views
        .iter()
        .filter(|v| v.in_scope)
        .map(|v| v.node.name.as_str())
        .collect();
    let to_upgrade: Vec<&str> = plan
        .views
        .iter()
        .filter(|v| v.in_scope && !v.pending.is_empty())
        .map(|v| v.node.name.as_str())
        .collect();
    let order: Vec<String> = f
        .batches
        .iter()
        .filter_map(|b| match &b.work {
            BatchWork::Nodes(n) => Some(n.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let valid = f.refusal.is_none();
    let guards = drover_plan::forecast::guards(&cu.spec, &obs);

    match args.output {
        Format::Json => {
            let batches: Vec<serde_json::Value> = f
                .batches
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let mut v = json!({"batch": i + 1, "stage": b.stage.as_str(), "inProgress": b.in_progress});
                    if b.canary {
                        v["canary"] = json!(true);
                    }
                    if let Some(z) = &b.zone {
                        v["zone"] = json!(z);
                    }
                    match &b.work {
                        BatchWork::Backup => v["backup"] = json!(true),
                        BatchWork::Nodes(n) => v["nodes"] = json!(n),
                        BatchWork::Workload { component, version } => {
                            v["workload"] = json!({"component": component, "version": version})
                        }
                    }
                    v
                })
                .collect();
            let nodes: Vec<serde_json::Value> = order
                .iter()
                .map(|n| json!({"name": n, "role": role(&obs, n), "changes": changes(&cu, &obs, n)}))
                .collect();
            let out = json!({
                "name": name,
                "valid": valid,
                "refusal": f.refusal.as_ref().map(|r| json!({"reason": r.reason, "problems": r.problems})),
                "target": target_string(&cu.spec),
                "nodesInScope": in_scope.len(),
                "nodesToUpgrade": to_upgrade.len(),
                "stages": stages(&f, &cu).into_iter().map(|(s, t)| json!({"stage": s.as_str(), "summary": t})).collect::<Vec<_>>(),
                "batches": batches,
                "nodes": nodes,
                "end": end_json(&f.end),
                "blockedDrains": blocked,
                "refusedPods": refused,
                "notes": f.notes,
                "guards": guards,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Text => {
            println!("ClusterUpgrade {name} (dry run: nothing is changed)");
            match &f.refusal {
                Some(r) => {
                    println!("Spec: refused ({}); drover would change nothing:", r.reason);
                    for p in &r.problems {
                        println!("  - {p}");
                    }
                    return Ok(false);
                }
                None => println!("Spec: valid (schema and version-skew rules)"),
            }
            println!("Target: {}", target_string(&cu.spec));
            println!(
                "Nodes: {} in scope, {} to upgrade, {} already at the target",
                in_scope.len(),
                to_upgrade.len(),
                in_scope.len() - to_upgrade.len()
            );
            for n in &f.notes {
                println!("Note: {n}");
            }
            if !guards.is_empty() {
                println!("\nGuards:");
                for g in &guards {
                    println!("  - {g}");
                }
            }
            println!("\nStages:");
            let st = stages(&f, &cu);
            if st.is_empty() {
                println!("  (none: nothing to do)");
            }
            for (i, (s, text)) in st.iter().enumerate() {
                println!("  {}. {:<18} {text}", i + 1, s.as_str());
            }
            println!("\nBatches:");
            let rows: Vec<Vec<String>> = f
                .batches
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let mut w = work_text(&b.work, &cu);
                    if b.canary {
                        w.push_str(" (canary)");
                    }
                    if let Some(z) = &b.zone {
                        w.push_str(&format!(" [zone {z}]"));
                    }
                    if b.in_progress {
                        w.push_str(" (in progress now)");
                    }
                    vec![(i + 1).to_string(), b.stage.as_str().to_string(), w]
                })
                .collect();
            if rows.is_empty() {
                println!("  (none)");
            } else {
                print!("{}", table(&["#", "STAGE", "WORK"], &rows));
            }
            println!("\nNode order:");
            let rows: Vec<Vec<String>> = order
                .iter()
                .map(|n| {
                    let batch = f
                        .batches
                        .iter()
                        .position(|b| matches!(&b.work, BatchWork::Nodes(ns) if ns.contains(n)))
                        .map(|i| i + 1)
                        .unwrap_or(0);
                    vec![
                        n.clone(),
                        role(&obs, n).to_string(),
                        batch.to_string(),
                        changes(&cu, &obs, n).join(", "),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("  (none)");
            } else {
                print!("{}", table(&["NODE", "ROLE", "BATCH", "CHANGES"], &rows));
            }
            match &f.end {
                End::Complete => println!("\nEnd: every node in scope reaches the target if each step succeeds"),
                End::Held(h) => println!("\nEnd: the rollout would stop with {}: {}", h.reason, h.message),
                e => println!("\nEnd: {}", end_json(e)["message"].as_str().unwrap_or_default()),
            }
            println!("\nDrains blocked now by PodDisruptionBudgets (0 disruptions allowed):");
            if blocked.is_empty() {
                println!("  none");
            } else {
                let rows: Vec<Vec<String>> = blocked
                    .iter()
                    .map(|b| vec![b.node.clone(), b.batch.to_string(), b.pod.clone(), b.pdb.clone()])
                    .collect();
                print!("{}", table(&["NODE", "BATCH", "POD", "PODDISRUPTIONBUDGET"], &rows));
            }
            if !refused.is_empty() {
                println!("\nPods the drain options do not allow drover to evict:");
                let rows: Vec<Vec<String>> = refused
                    .iter()
                    .map(|r| vec![r.node.clone(), r.batch.to_string(), r.pod.clone(), r.reason.clone()])
                    .collect();
                print!("{}", table(&["NODE", "BATCH", "POD", "WHY"], &rows));
            }
        }
    }
    Ok(valid)
}
