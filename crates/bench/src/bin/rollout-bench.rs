//! Rollout benchmark: the real `drover` binary upgrades containerd on every
//! worker of a large cluster (`maxUnavailable: 10%`, fixed simulated step
//! durations) until the ClusterUpgrade is Ready. Two beds: kubesim
//! (`--bed kubesim`, in this process) and the real control plane (`--bed
//! real`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
//! KWOK from scripts/controlplane.sh, the scenario loaded by `kubesim
//! agent`). Reports the time against the ideal, drover's API requests per
//! upgraded node (counted at kubesim's HTTP layer, or from the real API
//! server's audit log), drover's peak memory (VmHWM of its process) and the
//! bed's own CPU and memory. Exits non-zero when the rollout does not finish,
//! a node fails, more workers than `maxUnavailable` are unavailable at once,
//! a PodDisruptionBudget is violated, a node is left cordoned or a progress
//! record goes back. See docs/benchmarks.md.
//!
//! ```sh
//! cargo build --release -p drover -p drover-bench -p kubesim
//! ./target/release/rollout-bench --workers 1000
//! ./target/release/rollout-bench --scenario examples/clusters/large.yaml
//! ./target/release/rollout-bench --bed real --workers 200 --timeout 1200
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use drover_api::ClusterUpgrade;
use drover_bench::real::{self, BudgetWatch, PhaseEvent, RealBed, RealOptions, Sampled};
use drover_bench::{
    AgentRequests, BENCH_AGENT, DROVER_AGENT, KUBECTL_AGENT, agent_requests, anchor, bench_client, table, usage,
};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kubesim::sim::{ComponentTiming, Recorder, Role, Scenario, SimOptions, Simulation};
use serde_json::json;

const COMPONENT: &str = "containerd";
const FROM: &str = "1.7.22";
const TO: &str = "1.7.23";
const IMAGE: &str = "registry.example.com/drover-upgrade:1";

/// The runs, each on a new identical cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RunKind {
    /// drover with its default flags (the figures of the last line).
    Default,
    /// drover with --kube-qps = --base-qps x --speed.
    LikeForLike,
    /// kubectl the Kubespray way.
    Anchor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BedKind {
    /// kubesim's API server and simulation, in this process.
    Kubesim,
    /// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (scripts/controlplane.sh).
    Real,
}

#[derive(Parser, Debug)]
#[command(about = "A whole rollout by the drover binary on a large cluster (kubesim or the real control plane)")]
struct Args {
    /// The bed: kubesim (in this process) or real (scripts/controlplane.sh, KWOK nodes).
    #[arg(long, value_enum, default_value = "kubesim")]
    bed: BedKind,
    /// Workers (the large scenario scaled down, same pods per node); ignored with --scenario.
    #[arg(long, default_value_t = 1000)]
    workers: u32,
    /// Control-plane nodes with --workers.
    #[arg(long, default_value_t = 3)]
    control_plane: u32,
    /// A scenario file instead (e.g. examples/clusters/large.yaml); its timing is overridden.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 10.0)]
    speed: f64,
    /// Simulated seconds containerd's upgrade takes on a node (no reboot).
    #[arg(long, default_value_t = 60.0)]
    upgrade_seconds: f64,
    /// spec.strategy.maxUnavailable.
    #[arg(long, default_value = "10%")]
    max_unavailable: String,
    /// Longest the rollout may take (real seconds); past it the figures are printed and the run fails.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Real seconds of idling measured before drover starts.
    #[arg(long, default_value_t = 10)]
    idle: u64,
    /// Real seconds drover is left running once the rollout is Ready
    /// (kubesim bed, drover's runs): what it sends with nothing to do, but
    /// its watches, is printed (`drover idle: …`). 0: not measured.
    #[arg(long, default_value_t = 0)]
    idle_after: u64,
    /// The drover binary (default: `drover` next to this one).
    #[arg(long)]
    drover: Option<PathBuf>,
    /// Extra arguments for `drover run` (repeat; e.g. --drover-arg=--kube-qps=0).
    #[arg(long = "drover-arg", allow_hyphen_values = true)]
    drover_args: Vec<String>,
    /// Real bed: the Kubernetes version (scripts/controlplane.sh --version).
    #[arg(long, default_value = "newest")]
    real_version: String,
    /// Real bed: the directory of the control plane (default: a new one under the temporary directory).
    #[arg(long)]
    real_dir: Option<PathBuf>,
    /// Real bed: longest `scripts/controlplane.sh up` may take (s; a cold build of the binaries takes ~20 min).
    #[arg(long, default_value_t = 1800)]
    up_timeout: u64,
    /// Real bed: longest the scenario may take to be Running and Ready (s).
    #[arg(long, default_value_t = 900)]
    load_timeout: u64,
    /// The runs, in order, each on a new identical cluster.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "default,like-for-like,anchor"
    )]
    runs: Vec<RunKind>,
    /// A client-side rate (requests a second) on a real cluster (drover's
    /// default until it was lifted); the like-for-like run passes
    /// --kube-qps=<this x --speed>, since the bed runs --speed times faster
    /// than a real cluster.
    #[arg(long, default_value_t = 50.0)]
    base_qps: f64,
    /// The kubectl binary for the anchor.
    #[arg(long, default_value = "/usr/bin/kubectl")]
    kubectl: PathBuf,
    /// The anchor's most kubectl processes at once.
    #[arg(long, default_value_t = 20)]
    anchor_parallel: usize,
    /// Real bed: the kubesim binary for `kubesim agent` (default: `kubesim` next to this one).
    #[arg(long)]
    kubesim: Option<PathBuf>,
}

/// The large example scaled to `workers` (pods per node kept), or a file.
fn scenario(args: &Args) -> anyhow::Result<Scenario> {
    let mut s = match &args.scenario {
        Some(path) => Scenario::from_file(path)?,
        None => {
            let mut s = Scenario::large();
            let pools = s.nodes.iter().filter(|p| p.role == Role::Worker).count().max(1) as u32;
            let base: u32 = s.nodes.iter().filter(|p| p.role == Role::Worker).map(|p| p.count).sum();
            for p in &mut s.nodes {
                p.count = match p.role {
                    Role::Worker => (args.workers / pools).max(1),
                    _ => args.control_plane,
                };
            }
            let scale = f64::from(args.workers) / f64::from(base.max(1));
            for w in &mut s.workloads {
                if w.copies > 0 {
                    w.copies = ((f64::from(w.copies) * scale).round() as u32).max(1);
                }
            }
            s.name = format!("large scaled to {} workers", args.workers);
            s
        }
    };
    // The same durations as the real bed's KWOK stages (scripts/controlplane.sh stages).
    let t = &mut s.timing;
    t.pod_start_seconds = 2.0;
    t.pod_ready_seconds = 3.0;
    t.pod_shutdown_seconds = 2.0;
    t.heartbeat_seconds = Some(0.0);
    t.components.insert(
        COMPONENT.into(),
        ComponentTiming {
            seconds: Some(args.upgrade_seconds),
            ..ComponentTiming::default()
        },
    );
    s.speed = args.speed;
    s.validate()?;
    Ok(s)
}

/// Each node's `drover.dev/progress` phase over time: node -> [(phase or None, real s)].
type Phases = std::collections::BTreeMap<String, Vec<(Option<String>, f64)>>;

fn phase_of(node: &kubesim::Stored) -> Option<String> {
    let needle = drover_api::names::annotation::PROGRESS.as_bytes();
    if !node.bytes.windows(needle.len()).any(|w| w == needle) {
        return None;
    }
    let v = node.value();
    let progress = v["metadata"]["annotations"][drover_api::names::annotation::PROGRESS].as_str()?;
    let p: serde_json::Value = serde_json::from_str(progress).ok()?;
    p["phase"].as_str().map(str::to_string)
}

/// kubesim: node phases through the in-process store's watch (no HTTP requests).
fn follow_store_phases(
    store: kubesim::Store,
    t0: Instant,
    tx: tokio::sync::mpsc::UnboundedSender<PhaseEvent>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok((_, mut stream)) = store.watch(&kubesim::GroupResource::new("", "nodes"), None) else {
            return;
        };
        while let Some(Ok(ev)) = stream.next().await {
            if tx
                .send((
                    ev.object.name.to_string(),
                    phase_of(&ev.object),
                    t0.elapsed().as_secs_f64(),
                ))
                .is_err()
            {
                break;
            }
        }
    })
}

/// Collects phase changes until `stop`.
fn collect_phases(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<PhaseEvent>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Phases> {
    tokio::spawn(async move {
        let mut phases = Phases::new();
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                ev = rx.recv() => {
                    let Some((name, phase, at)) = ev else { break };
                    let log = phases.entry(name).or_default();
                    if log.last().map(|(p, _)| p) != Some(&phase) && !(log.is_empty() && phase.is_none()) {
                        log.push((phase, at));
                    }
                }
            }
        }
        phases
    })
}

/// Per phase: nodes, median, 90th percentile and max of the time spent in it (real s).
fn phase_table(phases: &Phases) -> String {
    let mut by: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for log in phases.values() {
        for w in log.windows(2) {
            if let Some(p) = &w[0].0 {
                by.entry(p.clone()).or_default().push(w[1].1 - w[0].1);
            }
        }
    }
    let order = ["Cordoning", "Draining", "Upgrading", "Verifying", "Uncordoning"];
    let mut names: Vec<&String> = by.keys().collect();
    names.sort_by_key(|n| order.iter().position(|o| o == n).unwrap_or(order.len()));
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|n| {
            let mut v = by[*n].clone();
            v.sort_by(f64::total_cmp);
            let pct = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            vec![
                n.to_string(),
                v.len().to_string(),
                format!("{:.1}", drover_bench::median(&v)),
                format!("{:.1}", pct(0.9)),
                format!("{:.1}", pct(1.0)),
            ]
        })
        .collect();
    table(&["phase", "nodes", "median real s", "p90 real s", "max real s"], &rows)
}

/// Transitions to an earlier phase (e.g. Upgrading back to Draining): node, from, to, real s.
fn regressions(phases: &Phases) -> Vec<(String, String, String, f64)> {
    let order = [
        "Cordoning",
        "Draining",
        "Upgrading",
        "Verifying",
        "Uncordoning",
        "Done",
        "Failed",
    ];
    let rank = |p: &Option<String>| p.as_deref().and_then(|p| order.iter().position(|o| *o == p));
    let mut out = Vec::new();
    for (node, log) in phases {
        for w in log.windows(2) {
            if let (Some(a), Some(b)) = (rank(&w[0].0), rank(&w[1].0))
                && b < a
            {
                out.push((node.clone(), order[a].to_string(), order[b].to_string(), w[1].1));
            }
        }
    }
    out
}

/// `maxUnavailable` as drover resolves it for workers: an integer, or a
/// percentage rounded down, at least 1.
fn budget(max_unavailable: &str, workers: usize) -> usize {
    match max_unavailable.strip_suffix('%') {
        Some(p) => ((p.trim().parse::<f64>().unwrap_or(0.0) / 100.0 * workers as f64).floor() as usize).max(1),
        None => max_unavailable.trim().parse::<usize>().unwrap_or(1).max(1),
    }
}

/// (status, reason) of a ClusterUpgrade condition, if the status is current.
fn condition(cu: &ClusterUpgrade, type_: &str) -> Option<(String, String)> {
    let st = cu.status.as_ref()?;
    if st.observed_generation != cu.metadata.generation {
        return None;
    }
    st.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// The bed the rollout runs on.
enum Bed {
    Kubesim(Box<Simulation>),
    Real(Box<RealBed>),
}

/// What the rollout left behind, per bed.
struct Outcome {
    drover: AgentRequests,
    bench: u64,
    /// (eviction answer code, count)
    evictions: Vec<(u16, u64)>,
    max_workers_unavailable: usize,
    violations: Vec<String>,
    below_budget: Vec<String>,
    left_cordoned: Vec<String>,
    /// Real bed: (nudges, pods) of pods KWOK left not Ready (see `real::Nudger`).
    nudged: (u64, usize),
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Ctrl-C drops the bed (the real one is stopped) instead of leaving it running.
    let failures = tokio::select! {
        r = run(&args) => r?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    };
    if !failures.is_empty() {
        bail!("the rollout benchmark FAILED: {}", failures.join("; "));
    }
    println!("rollout-bench: OK (Ready, no failed node, budgets and maxUnavailable kept, bound <= anchor)");
    Ok(())
}

/// What performs the rollout.
#[derive(Clone, Debug, PartialEq)]
enum Runner {
    /// The drover binary with these extra arguments.
    Drover(Vec<String>),
    /// kubectl, the Kubespray way (`drover_bench::anchor`).
    Anchor,
}

/// One run's figures.
struct RunResult {
    label: String,
    ready: bool,
    /// Real seconds from the start to Ready (or the timeout).
    real: f64,
    updated: usize,
    reqs: AgentRequests,
    /// Pods on the nodes to upgrade when the run started (not DaemonSets' or mirror pods).
    pods_to_move: usize,
    /// CPU seconds (drover's process, or the anchor's kubectl processes together).
    cpu: f64,
    /// drover's VmHWM (MiB); 0 for the anchor.
    peak_mib: f64,
    max_unavailable: usize,
    pdb_violations: usize,
    failures: Vec<String>,
}

impl RunResult {
    fn per_node(&self, n: u64) -> f64 {
        n as f64 / self.updated.max(1) as f64
    }
    fn evictions(&self) -> u64 {
        self.reqs
            .by_kind
            .iter()
            .filter(|(k, _)| k.ends_with(" pods/eviction"))
            .map(|(_, n)| n)
            .sum()
    }
    fn others(&self) -> u64 {
        self.reqs.total - self.evictions()
    }
    /// Mutating requests that are not evictions.
    fn writes(&self) -> u64 {
        self.reqs
            .by_kind
            .iter()
            .filter(|(k, _)| {
                let (verb, resource) = k.split_once(' ').unwrap_or((k, ""));
                matches!(verb, "create" | "update" | "patch" | "delete" | "deletecollection")
                    && resource != "pods/eviction"
            })
            .map(|(_, n)| n)
            .sum()
    }
    fn evictions_per_pod(&self) -> f64 {
        self.evictions() as f64 / self.pods_to_move.max(1) as f64
    }
}

/// Runs the benchmark; the checks that failed (empty: all passed).
async fn run(args: &Args) -> anyhow::Result<Vec<String>> {
    let drover = match &args.drover {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("drover"),
    };
    if args.runs.iter().any(|r| *r != RunKind::Anchor) && !drover.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p drover) or pass --drover",
            drover.display()
        );
    }
    println!("rollout-bench: {}", drover_bench::machine());
    let sc = scenario(args)?;
    let workers = anchor::workers(&sc);
    let per_batch = budget(&args.max_unavailable, workers);
    println!(
        "bed {:?}; scenario {:?}: {} nodes ({workers} workers); speed {}; {COMPONENT} {FROM} -> {TO}, maxUnavailable {} = {per_batch} workers",
        args.bed,
        sc.name,
        sc.node_count(),
        args.speed,
        args.max_unavailable
    );
    let bound = anchor::lower_bound(&sc, per_batch, args.upgrade_seconds)?;
    let bound_real = bound.simulated / args.speed;
    println!("{}\n", bound.explain(args.speed));

    let dir = match (&args.real_dir, args.bed) {
        (Some(d), BedKind::Real) => d.clone(),
        _ => std::env::temp_dir().join(format!("rollout-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let like_qps = (args.base_qps * args.speed).round() as u64;
    let mut results = Vec::new();
    for kind in &args.runs {
        let (label, runner) = match kind {
            RunKind::Default => (
                "drover, default flags".to_string(),
                Runner::Drover(args.drover_args.clone()),
            ),
            RunKind::LikeForLike => {
                let mut a = args.drover_args.clone();
                a.retain(|x| !x.starts_with("--kube-qps"));
                a.push(format!("--kube-qps={like_qps}"));
                (
                    format!(
                        "drover, --kube-qps={like_qps} ({} x speed {})",
                        args.base_qps, args.speed
                    ),
                    Runner::Drover(a),
                )
            }
            RunKind::Anchor => (
                format!(
                    "anchor: kubectl in batches of {per_batch}, at most {} at once",
                    args.anchor_parallel
                ),
                Runner::Anchor,
            ),
        };
        println!("==== {label}: a new cluster");
        let r = run_one(
            args,
            &sc,
            &bound,
            &runner,
            &label,
            &drover,
            &dir.join(format!("{kind:?}").to_lowercase()),
        )
        .await?;
        println!();
        results.push((*kind, r));
    }

    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(_, r)| {
            vec![
                r.label.clone(),
                format!("{:.1} s{}", r.real, if r.ready { "" } else { " (not finished)" }),
                format!("{:.2}", r.real / bound_real),
                format!("{:.1}", r.per_node(r.reqs.total)),
                format!("{:.1}", r.per_node(r.others())),
                format!("{:.1}", r.per_node(r.writes())),
                format!("{:.2}", r.evictions_per_pod()),
                format!("{:.1} s", r.cpu),
                if r.peak_mib > 0.0 {
                    format!("{:.0} MiB", r.peak_mib)
                } else {
                    "-".into()
                },
                r.max_unavailable.to_string(),
                r.pdb_violations.to_string(),
            ]
        })
        .collect();
    println!(
        "the same rollout, each on a new identical cluster (bound {bound_real:.1} s real):\n{}\n",
        table(
            &[
                "run",
                "time",
                "x bound",
                "requests/node",
                "other/node",
                "writes/node",
                "evictions/pod",
                "CPU",
                "peak",
                "max unavailable",
                "PDB violations",
            ],
            &rows
        )
    );

    let mut failures = Vec::new();
    for (_, r) in &results {
        failures.extend(r.failures.iter().map(|f| format!("{}: {f}", r.label)));
    }
    let get = |k: RunKind| results.iter().find(|(kind, _)| *kind == k).map(|(_, r)| r);
    if let Some(a) = get(RunKind::Anchor)
        && a.ready
        && bound_real > a.real
    {
        failures.push(format!(
            "the lower bound ({bound_real:.1} s) is above the anchor's time ({:.1} s): the bound is wrong",
            a.real
        ));
    }
    // The line a script reads: the default-flags run's figures.
    if let Some(d) = get(RunKind::Default) {
        let anchor = get(RunKind::Anchor).filter(|a| a.ready);
        println!(
            "rollout-bench: drover={:.1} bound={bound_real:.1} ratio={:.2} anchor={} speedup={} requests_per_node={:.1} other_requests_per_node={:.1} writes_per_node={:.1} evictions_per_pod={:.2} drover_peak_mib={:.0} pdb_violations={} max_unavailable={}",
            d.real,
            d.real / bound_real,
            anchor.map_or("-".into(), |a| format!("{:.1}", a.real)),
            anchor.map_or("-".into(), |a| format!("{:.2}", a.real / d.real)),
            d.per_node(d.reqs.total),
            d.per_node(d.others()),
            d.per_node(d.writes()),
            d.evictions_per_pod(),
            d.peak_mib,
            d.pdb_violations,
            d.max_unavailable,
        );
    }
    if failures.is_empty() && args.real_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("logs kept in {}", dir.display());
    }
    Ok(failures)
}

/// Pods bound to `nodes` that a drain moves: not a DaemonSet's, not a mirror pod, not finished.
async fn pods_to_move(client: &kube::Client, nodes: &std::collections::BTreeSet<String>) -> anyhow::Result<usize> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods.list(&Default::default()).await.context("listing pods")?;
    Ok(list
        .items
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| nodes.contains(n))
                && !p.owner_references().iter().any(|o| o.kind == "DaemonSet")
                && !p.annotations().contains_key("kubernetes.io/config.mirror")
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
        .count())
}

/// The workers to upgrade, by name.
async fn worker_names(client: &kube::Client) -> anyhow::Result<Vec<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default().labels("!node-role.kubernetes.io/control-plane"))
        .await
        .context("listing nodes")?;
    let mut names: Vec<String> = list.items.iter().map(|n| n.name_any()).collect();
    names.sort();
    Ok(names)
}

/// One rollout on a new cluster, by drover or the anchor.
async fn run_one(
    args: &Args,
    sc: &Scenario,
    bound: &anchor::Bound,
    runner: &Runner,
    label: &str,
    drover: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<RunResult> {
    let (workers, per_batch) = (bound.nodes, bound.k);
    std::fs::create_dir_all(dir)?;
    let t = Instant::now();
    let before = usage("self");
    let (bed, client, kubeconfig, admin) = match args.bed {
        BedKind::Kubesim => {
            let sim = Simulation::start_with(
                sc.clone(),
                SimOptions {
                    speed: Some(args.speed),
                    settle_timeout: Duration::from_secs(1200),
                    ..Default::default()
                },
            )
            .await?;
            let status = sim.status().await?;
            let started = usage("self");
            println!(
                "kubesim: {} nodes, {} pods Running and Ready in {:.1} s (CPU {:.1} s); VmRSS {:.0} MiB, VmHWM {:.0} MiB (baseline before the cluster {:.0} MiB)",
                status.nodes,
                status.pods,
                t.elapsed().as_secs_f64(),
                started.cpu - before.cpu,
                started.rss_mib,
                started.hwm_mib,
                before.rss_mib
            );
            let client = bench_client(&sim.server().url())?;
            Api::<CustomResourceDefinition>::all(client.clone())
                .create(&PostParams::default(), &drover_api::crd::crd())
                .await?;
            let kubeconfig = dir.join("kubeconfig");
            sim.server().write_kubeconfig(&kubeconfig)?;
            (Bed::Kubesim(Box::new(sim)), client, kubeconfig.clone(), kubeconfig)
        }
        BedKind::Real => {
            let mut opts = RealOptions::new(&args.real_version, args.up_timeout, args.load_timeout)?;
            if let Some(k) = &args.kubesim {
                opts.kubesim = k.clone();
            }
            let bed = RealBed::up(&opts, &dir.join("bed"), sc, args.speed).await?;
            let client = bed.client.clone();
            let kubeconfig = bed.drover_kubeconfig.clone();
            let admin = bed.admin.clone();
            let u = bed.usage();
            println!(
                "real bed loaded in {:.1} s: {}",
                t.elapsed().as_secs_f64(),
                u.iter()
                    .map(|(n, u)| format!("{n} {:.1} s CPU, VmRSS {:.0} MiB", u.cpu, u.rss_mib))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            (Bed::Real(Box::new(bed)), client, kubeconfig, admin)
        }
    };
    let speed = args.speed;
    let bed_usage = |bed: &Bed| -> Vec<(String, drover_bench::Usage)> {
        match bed {
            Bed::Kubesim(_) => vec![("kubesim".to_string(), usage("self"))],
            Bed::Real(b) => b.usage(),
        }
    };
    let names = worker_names(&client).await?;
    let to_move = pods_to_move(&client, &names.iter().cloned().collect()).await?;

    // The real bed's watches: nodes into a recorder and the phases, budgets.
    let t0_watch = Instant::now();
    let (phase_tx, phase_rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder::default());
    let mut watches = Vec::new();
    let budgets = match &bed {
        Bed::Kubesim(sim) => {
            watches.push(follow_store_phases(sim.store().clone(), t0_watch, phase_tx));
            None
        }
        Bed::Real(b) => {
            watches.push(real::follow_nodes(
                b.client.clone(),
                recorder.clone(),
                t0_watch,
                speed,
                phase_tx,
            ));
            Some(BudgetWatch::start(b.client.clone()))
        }
    };

    // The bed idle (kubesim: this process, with the benchmark's light polling).
    let idle0 = bed_usage(&bed);
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let idle1 = bed_usage(&bed);
    let idle: Vec<(String, f64, f64)> = idle1
        .iter()
        .zip(&idle0)
        .map(|((n, b), (_, a))| (n.clone(), (b.cpu - a.cpu) / args.idle.max(1) as f64 * 100.0, b.rss_mib))
        .collect();
    println!(
        "idle {} s: {}",
        args.idle,
        idle.iter()
            .map(|(n, cpu, rss)| format!("{n} {cpu:.1} % of one core, VmRSS {rss:.0} MiB"))
            .collect::<Vec<_>>()
            .join("; ")
    );

    let log = dir.join("drover.log");
    let spec = json!({
        "components": [{"name": COMPONENT, "version": TO, "upgrade": {"job": {
            "image": IMAGE, "privileged": true, "hostRoot": true, "timeout": "30m"}}}],
        "nodeSelector": {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]},
        "strategy": {"maxUnavailable": args.max_unavailable.parse::<i64>().map(|n| json!(n)).unwrap_or(json!(args.max_unavailable))},
        "drain": {"force": true, "deleteEmptyDirData": true, "timeout": "30m"}
    });
    let spec: drover_api::ClusterUpgradeSpec = serde_json::from_value(spec)?;
    let cus: Api<ClusterUpgrade> = Api::all(client.clone());
    // From here on: what the rollout costs.
    let mut audit_mark = 0;
    match &bed {
        Bed::Kubesim(sim) => {
            sim.recorder().reset();
            sim.server().requests().reset();
        }
        Bed::Real(b) => {
            recorder.reset();
            audit_mark = b.audit_mark();
        }
    }
    if let Some(b) = &budgets {
        b.reset();
    }
    let mut sampled = Sampled::start(&bed_usage(&bed));
    let sim_now = |bed: &Bed| match bed {
        Bed::Kubesim(sim) => sim.now(),
        Bed::Real(_) => t0_watch.elapsed().as_secs_f64() * speed,
    };
    let (t0, s0) = (Instant::now(), sim_now(&bed));
    let (stop_phases, stopped) = tokio::sync::oneshot::channel();
    let collector = collect_phases(phase_rx, stopped);
    let children_cpu0 = drover_bench::children_cpu();
    let anchor_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (mut child, mut anchor_task, pid) = match runner {
        Runner::Drover(extra) => {
            let mut drover_args = extra.clone();
            if args.bed == BedKind::Real && !drover_args.iter().any(|a| a.starts_with("--namespace")) {
                // drover's RBAC (deploy/) and token are for drover-system.
                drover_args.extend(["--namespace".to_string(), "drover-system".to_string()]);
            }
            let child = tokio::process::Command::new(drover)
                .args(["run", "--http-addr", "off", "--kubeconfig"])
                .arg(&kubeconfig)
                .args(&drover_args)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", drover.display()))?;
            let pid = child.id().unwrap_or(0).to_string();
            println!("drover: {} run {}", drover.display(), drover_args.join(" "));
            cus.create(&PostParams::default(), &ClusterUpgrade::new("runtime", spec))
                .await
                .context("creating the ClusterUpgrade")?;
            (Some(child), None, pid)
        }
        Runner::Anchor => {
            let a = anchor::Anchor {
                kubectl: args.kubectl.clone(),
                kubeconfig: admin.clone(),
                batch: per_batch,
                parallel: args.anchor_parallel,
                timeout: Duration::from_secs(args.timeout),
                namespace: "default".into(),
                component: COMPONENT.into(),
                version: TO.into(),
                image: IMAGE.into(),
            };
            println!(
                "anchor: for each batch of {per_batch} workers (in name order), every node of the batch at once, at most {} kubectl processes running; the next batch when the batch is done; no sleeps. Per node:\n  {}",
                args.anchor_parallel,
                anchor::commands(&a, names.first().map_or("NODE", String::as_str)).join("\n  ")
            );
            let (jobs, names, done) = (dir.join("anchor-jobs"), names.clone(), anchor_done.clone());
            let task = tokio::spawn(async move { anchor::run(&a, &jobs, &names, done).await });
            (None, Some(task), String::new())
        }
    };

    let timeout = Duration::from_secs(args.timeout);
    let mut last_print = Instant::now();
    let mut ready = false;
    let mut last: Option<ClusterUpgrade> = None;
    let mut anchor_result: Option<anyhow::Result<anchor::AnchorRun>> = None;
    let mut drover_usage = usage(&pid);
    let mut bed = bed;
    while t0.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now_usage = bed_usage(&bed);
        sampled.sample(&now_usage);
        if let Some(c) = &mut child {
            let du = usage(&pid);
            if du.hwm_mib > 0.0 {
                drover_usage = du;
            }
            if let Ok(Some(st)) = c.try_wait() {
                bail!("drover exited ({st}); {}:\n{}", log.display(), real::tail(&log, 20));
            }
        }
        if let Bed::Real(b) = &mut bed {
            b.check_alive()?;
        }
        let (real, simulated) = (t0.elapsed().as_secs_f64(), sim_now(&bed) - s0);
        let (updated, detail, done) = match (&mut anchor_task, &child) {
            (Some(task), _) => {
                let finished = task.is_finished();
                if finished {
                    anchor_result = Some(
                        task.await
                            .unwrap_or_else(|e| Err(anyhow::anyhow!("the anchor panicked: {e}"))),
                    );
                    anchor_task = None;
                }
                let n = anchor_done.load(std::sync::atomic::Ordering::SeqCst);
                (n as i32, String::new(), finished)
            }
            _ => {
                let Ok(cu) = cus.get("runtime").await else { continue };
                let counts = cu.status.as_ref().map(|s| s.counts.clone()).unwrap_or_default();
                let done = condition(&cu, "Ready").is_some_and(|(s, _)| s == "True");
                last = Some(cu);
                (
                    counts.updated,
                    format!(
                        ", {} updating, {} pending, {} failed; drover VmRSS {:.0} MiB",
                        counts.updating, counts.pending, counts.failed, drover_usage.rss_mib
                    ),
                    done,
                )
            }
        };
        if last_print.elapsed() >= Duration::from_secs(15) {
            last_print = Instant::now();
            let server = now_usage
                .first()
                .map(|(n, u)| {
                    let cpu0 = sampled.per.get(n).map_or(u.cpu, |e| e.0);
                    format!(
                        "; {n} VmRSS {:.0} MiB, CPU {:.0} %",
                        u.rss_mib,
                        (u.cpu - cpu0) / real * 100.0
                    )
                })
                .unwrap_or_default();
            println!("  {real:>6.1} s real / {simulated:>6.0} s simulated: {updated} updated{detail}{server}");
        }
        if done {
            ready = anchor_result.as_ref().is_none_or(|r| r.is_ok());
            break;
        }
    }
    let (real, simulated) = (t0.elapsed().as_secs_f64(), sim_now(&bed) - s0);
    sampled.sample(&bed_usage(&bed));
    if let (Bed::Kubesim(sim), true, false) = (&bed, ready, *runner == Runner::Anchor)
        && args.idle_after > 0
        && child.is_some()
    {
        idle_requests(sim, args.idle_after).await;
    }
    if let Some(mut c) = child.take() {
        let final_drover = usage(&pid);
        if final_drover.hwm_mib > 0.0 {
            drover_usage = final_drover;
        }
        let _ = c.kill().await;
    }
    if let Some(task) = anchor_task.take() {
        task.abort();
    }
    let anchor_cpu = drover_bench::children_cpu() - children_cpu0;
    let _ = stop_phases.send(());
    let phases = collector.await.unwrap_or_default();
    for w in &watches {
        w.abort();
    }

    let is_anchor = *runner == Runner::Anchor;
    let agent = if is_anchor { KUBECTL_AGENT } else { DROVER_AGENT };
    let outcome = match &bed {
        Bed::Kubesim(sim) => {
            let report = sim.recorder().report(sim.now());
            let counts = sim.server().requests();
            Outcome {
                drover: agent_requests(counts, agent),
                bench: agent_requests(counts, BENCH_AGENT).total,
                evictions: counts
                    .rows()
                    .into_iter()
                    .filter(|r| r.key.agent == agent && r.key.resource == "pods/eviction")
                    .map(|r| (r.key.code, r.count))
                    .collect(),
                max_workers_unavailable: report.max_unavailable.get("worker").copied().unwrap_or(0),
                violations: report
                    .pdb_violations
                    .iter()
                    .map(|v| format!("{}/{} ({} {})", v.namespace, v.pod, v.kind, v.pdb))
                    .collect(),
                below_budget: Vec::new(),
                left_cordoned: report.cordoned.clone(),
                nudged: (0, 0),
            }
        }
        Bed::Real(b) => {
            // The audit backend writes in batches of at most a second.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let audit = b.audit_since(audit_mark)?;
            let report = recorder.report(sim_now(&bed));
            let bench = real::audit_requests(&audit, |e| e.agent.starts_with(BENCH_AGENT)).total;
            let (mine, user) = real::by_client(audit, is_anchor);
            let mut evictions: std::collections::BTreeMap<u16, u64> = Default::default();
            for e in mine.iter().filter(|e| e.resource == "pods/eviction") {
                *evictions.entry(e.code).or_default() += 1;
            }
            let budgets = budgets.as_ref().expect("the real bed's budget watch");
            Outcome {
                drover: real::audit_requests(&mine, |_| true),
                bench,
                evictions: evictions.into_iter().collect(),
                max_workers_unavailable: report.max_unavailable.get("worker").copied().unwrap_or(0),
                violations: budgets.deletions_under_budget(&mine, user),
                below_budget: budgets.below(),
                left_cordoned: report.cordoned.clone(),
                nudged: b.nudged(),
            }
        }
    };
    drop(budgets);

    let st = last.as_ref().and_then(|c| c.status.clone()).unwrap_or_default();
    let updated = if is_anchor {
        anchor_done.load(std::sync::atomic::Ordering::SeqCst)
    } else {
        st.counts.updated.max(0) as usize
    };
    println!();
    if ready {
        println!("{label}: done after {real:.1} s real, {simulated:.0} s simulated");
    } else if let Some(Err(e)) = &anchor_result {
        println!("{label}: FAILED after {real:.1} s real, {updated} of {workers} workers upgraded: {e:#}");
    } else {
        let cond: Vec<String> = st
            .conditions
            .iter()
            .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
            .collect();
        println!(
            "{label}: NOT finished after {real:.1} s real ({simulated:.0} s simulated): {updated} of {workers} workers updated, {} updating, {} pending, {} failed; conditions: {}",
            st.counts.updating,
            st.counts.pending,
            st.counts.failed,
            cond.join(" | ")
        );
    }
    if let Some(Ok(a)) = &anchor_result {
        println!(
            "anchor: {} kubectl processes, at most {} at once, {anchor_cpu:.1} s of CPU together",
            a.kubectl_runs, a.peak_parallel
        );
    }
    // Phase times are from the watches' start; the rollout's from its start.
    let offset = t0.duration_since(t0_watch).as_secs_f64();
    if !is_anchor {
        let back = regressions(&phases);
        println!(
            "nodes whose drover.dev/progress went back to an earlier phase: {} transitions{}",
            back.len(),
            back.iter()
                .take(5)
                .map(|(n, a, b, t)| format!("; {n} {a} -> {b} at {:.1} s", t - offset))
                .collect::<String>()
        );
        println!(
            "\ntime in each node phase (from drover.dev/progress, real seconds):\n{}\n",
            phase_table(&phases)
        );
    }
    let reqs = &outcome.drover;
    println!(
        "{}'s requests{}: {} ({:.1} per upgraded node); {}; 429s {}",
        if is_anchor { "kubectl" } else { "drover" },
        if args.bed == BedKind::Real {
            " (the API server's audit log)"
        } else {
            ""
        },
        reqs.total,
        reqs.total as f64 / updated.max(1) as f64,
        reqs.top(12),
        reqs.all_429
    );
    println!(
        "evictions: {}; {to_move} pods on the workers to move",
        outcome
            .evictions
            .iter()
            .map(|(code, n)| format!("{n} answered {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("the benchmark's own requests (not counted): {}", outcome.bench);
    println!(
        "recorder: max workers unavailable at once {} (budget {per_batch}); PDB violations {}; left cordoned {}{}",
        outcome.max_workers_unavailable,
        outcome.violations.len(),
        outcome.left_cordoned.len(),
        if args.bed == BedKind::Real {
            format!(
                "; budgets whose healthy pods fell below desiredHealthy (sampled every 100 ms): {}; pods KWOK left not Ready, nudged by the bench (since the bed started): {} nudges of {} pods",
                outcome.below_budget.len(),
                outcome.nudged.0,
                outcome.nudged.1
            )
        } else {
            String::new()
        }
    );
    let cpu = if is_anchor { anchor_cpu } else { drover_usage.cpu };
    let mut rows = vec![
        vec![
            "total time".into(),
            format!("{real:.1} s real{}", if ready { "" } else { " (not finished)" }),
            format!("{simulated:.0} s simulated"),
        ],
        vec![
            "workers upgraded".into(),
            format!("{updated} of {workers}"),
            format!("maxUnavailable {per_batch}"),
        ],
        vec![
            "API requests".into(),
            format!("{}", reqs.total),
            format!("{:.1} per upgraded node", reqs.total as f64 / updated.max(1) as f64),
        ],
        vec![
            if is_anchor {
                "kubectl CPU"
            } else {
                "drover peak memory (VmHWM)"
            }
            .into(),
            if is_anchor {
                format!("{cpu:.1} s")
            } else {
                format!("{:.0} MiB", drover_usage.hwm_mib)
            },
            format!("CPU {cpu:.1} s ({:.0} % of one core)", cpu / real * 100.0),
        ],
    ];
    for (n, cpu, rss) in &idle {
        rows.push(vec![
            format!("{n} idle"),
            format!("{cpu:.1} % CPU"),
            format!("{rss:.0} MiB VmRSS"),
        ]);
    }
    let mut per: Vec<_> = sampled.per.iter().collect();
    per.sort_by_key(|(n, _)| real::PROCESSES.iter().position(|p| p == n));
    for (n, (cpu0, cpu1, peak, hwm)) in per {
        rows.push(vec![
            format!("{n} during the rollout"),
            format!(
                "{:.1} s CPU ({:.0} % of one core)",
                cpu1 - cpu0,
                (cpu1 - cpu0) / real * 100.0
            ),
            format!("{peak:.0} MiB VmRSS peak (sampled); VmHWM {hwm:.0} MiB"),
        ]);
    }
    println!("{}", table(&["measure", "figure", "note"], &rows));
    if !ready && !is_anchor {
        let tail: Vec<String> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(10)
            .map(str::to_string)
            .collect();
        println!("drover's last log lines (newest first):\n{}", tail.join("\n"));
    }

    let mut failures = Vec::new();
    if !ready {
        failures.push(format!(
            "not done after {real:.0} s ({updated} of {workers} workers upgraded)"
        ));
    }
    if st.counts.failed > 0 {
        failures.push(format!("{} nodes failed", st.counts.failed));
    }
    if outcome.max_workers_unavailable > per_batch {
        failures.push(format!(
            "{} workers unavailable at once, maxUnavailable allows {per_batch}",
            outcome.max_workers_unavailable
        ));
    }
    if !outcome.violations.is_empty() {
        failures.push(format!(
            "{} PDB violations: {}",
            outcome.violations.len(),
            outcome
                .violations
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !outcome.below_budget.is_empty() {
        failures.push(format!(
            "budgets below desiredHealthy: {}",
            outcome
                .below_budget
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if ready && !outcome.left_cordoned.is_empty() {
        failures.push(format!("nodes left cordoned: {:?}", outcome.left_cordoned));
    }
    let back = if is_anchor { 0 } else { regressions(&phases).len() };
    if back > 0 {
        failures.push(format!("{back} progress records went back"));
    }
    match bed {
        Bed::Kubesim(sim) => (*sim).shutdown().await,
        Bed::Real(mut b) => b.stop(),
    }
    Ok(RunResult {
        label: label.to_string(),
        ready,
        real,
        updated,
        reqs: outcome.drover,
        pods_to_move: to_move,
        cpu,
        peak_mib: if is_anchor { 0.0 } else { drover_usage.hwm_mib },
        max_unavailable: outcome.max_workers_unavailable,
        pdb_violations: outcome.violations.len(),
        failures,
    })
}

/// What drover sends over `secs` with a Ready rollout and nothing to do:
/// every request but a watch (a watch that ends is opened again, which is
/// what keeps the caches fed), by kind.
async fn idle_requests(sim: &Simulation, secs: u64) {
    let before = agent_requests(sim.server().requests(), DROVER_AGENT);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = agent_requests(sim.server().requests(), DROVER_AGENT);
    let mut sent: Vec<(String, u64)> = after
        .by_kind
        .iter()
        .map(|(k, n)| (k.clone(), n - before.by_kind.get(k).copied().unwrap_or(0)))
        .filter(|(k, n)| *n > 0 && !k.starts_with("watch "))
        .collect();
    sent.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let watches: u64 = after
        .by_kind
        .iter()
        .filter(|(k, _)| k.starts_with("watch "))
        .map(|(k, n)| n - before.by_kind.get(k).copied().unwrap_or(0))
        .sum();
    let total: u64 = sent.iter().map(|(_, n)| n).sum();
    println!(
        "drover idle: {total} requests in {secs} s after Ready, not counting {watches} watches (re)opened{}",
        if sent.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                sent.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_as_drover_resolves_them() {
        assert_eq!(budget("10%", 1000), 100);
        assert_eq!(budget("10%", 5), 1);
        assert_eq!(budget("3", 1000), 3);
    }
}
