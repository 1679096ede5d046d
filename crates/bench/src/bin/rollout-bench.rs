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
use drover_bench::real::{self, BudgetWatch, DROVER_USER, PhaseEvent, RealBed, RealOptions, Sampled};
use drover_bench::{AgentRequests, BENCH_AGENT, DROVER_AGENT, agent_requests, bench_client, table, usage};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kubesim::sim::{ComponentTiming, Recorder, Role, Scenario, SimOptions, Simulation};
use serde_json::json;

const COMPONENT: &str = "containerd";
const FROM: &str = "1.7.22";
const TO: &str = "1.7.23";

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

/// Batches in start order: (first start, last finish) of each group of `per_batch` nodes (real s).
fn batch_spans(phases: &Phases, per_batch: usize) -> Vec<(f64, Option<f64>)> {
    let mut nodes: Vec<(f64, Option<f64>)> = phases
        .values()
        .filter_map(|log| {
            let start = log.iter().find(|(p, _)| p.is_some())?.1;
            // Finished: the record says Done or Failed, or is gone.
            let done = log
                .iter()
                .find(|(p, _)| p.is_none() || matches!(p.as_deref(), Some("Done" | "Failed")))
                .map(|(_, t)| *t);
            Some((start, done))
        })
        .collect();
    nodes.sort_by(|a, b| a.0.total_cmp(&b.0));
    nodes
        .chunks(per_batch.max(1))
        .map(|c| {
            let start = c.iter().map(|n| n.0).fold(f64::MAX, f64::min);
            let done = if c.iter().all(|n| n.1.is_some()) && c.len() == per_batch {
                c.iter().filter_map(|n| n.1).reduce(f64::max)
            } else {
                None
            };
            (start, done)
        })
        .collect()
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
    println!("rollout-bench: OK (Ready, no failed node, budgets and maxUnavailable kept)");
    Ok(())
}

/// Runs the benchmark; the checks that failed (empty: all passed).
async fn run(args: &Args) -> anyhow::Result<Vec<String>> {
    let drover = match &args.drover {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("drover"),
    };
    if !drover.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p drover) or pass --drover",
            drover.display()
        );
    }
    println!("rollout-bench: {}", drover_bench::machine());
    let sc = scenario(args)?;
    let workers = sc
        .nodes
        .iter()
        .filter(|p| p.role == Role::Worker)
        .map(|p| p.count as usize)
        .sum::<usize>();
    let per_batch = budget(&args.max_unavailable, workers);
    let batches = workers.div_ceil(per_batch);
    // One node: its pods stop (shutdown), the upgrade Job's pod starts and turns Ready, the upgrade runs.
    let step = sc.timing.pod_shutdown_seconds
        + sc.timing.pod_start_seconds
        + sc.timing.pod_ready_seconds
        + args.upgrade_seconds;
    let ideal_sim = batches as f64 * step;
    println!(
        "bed {:?}; scenario {:?}: {} nodes ({workers} workers); speed {}; {COMPONENT} {FROM} -> {TO}, maxUnavailable {} = {per_batch} workers per batch, {batches} batches",
        args.bed,
        sc.name,
        sc.node_count(),
        args.speed,
        args.max_unavailable
    );

    let dir = match (&args.real_dir, args.bed) {
        (Some(d), BedKind::Real) => d.clone(),
        _ => std::env::temp_dir().join(format!("rollout-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let t = Instant::now();
    let before = usage("self");
    let (bed, client, kubeconfig) = match args.bed {
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
            (Bed::Kubesim(Box::new(sim)), client, kubeconfig)
        }
        BedKind::Real => {
            let mut opts = RealOptions::new(&args.real_version, args.up_timeout, args.load_timeout)?;
            if let Some(k) = &args.kubesim {
                opts.kubesim = k.clone();
            }
            let bed = RealBed::up(&opts, &dir.join("bed"), &sc, args.speed).await?;
            let client = bed.client.clone();
            let kubeconfig = bed.drover_kubeconfig.clone();
            let u = bed.usage();
            println!(
                "real bed loaded in {:.1} s: {}",
                t.elapsed().as_secs_f64(),
                u.iter()
                    .map(|(n, u)| format!("{n} {:.1} s CPU, VmRSS {:.0} MiB", u.cpu, u.rss_mib))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            (Bed::Real(Box::new(bed)), client, kubeconfig)
        }
    };
    let speed = args.speed;
    let bed_usage = |bed: &Bed| -> Vec<(String, drover_bench::Usage)> {
        match bed {
            Bed::Kubesim(_) => vec![("kubesim".to_string(), usage("self"))],
            Bed::Real(b) => b.usage(),
        }
    };

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
        .map(|((n, b), (_, a))| (n.clone(), (b.cpu - a.cpu) / args.idle as f64 * 100.0, b.rss_mib))
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
    let mut drover_args = args.drover_args.clone();
    if args.bed == BedKind::Real && !drover_args.iter().any(|a| a.starts_with("--namespace")) {
        // drover's RBAC (deploy/) and token are for drover-system.
        drover_args.extend(["--namespace".to_string(), "drover-system".to_string()]);
    }
    let mut child = tokio::process::Command::new(&drover)
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

    let spec = json!({
        "components": [{"name": COMPONENT, "version": TO, "upgrade": {"job": {
            "image": "registry.example.com/drover-upgrade:1", "privileged": true, "hostRoot": true, "timeout": "30m"}}}],
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
    cus.create(&PostParams::default(), &ClusterUpgrade::new("runtime", spec))
        .await
        .context("creating the ClusterUpgrade")?;

    let timeout = Duration::from_secs(args.timeout);
    let mut last_print = Instant::now();
    let mut last_updated = -1;
    let mut batch_done: Vec<(f64, f64)> = Vec::new();
    let mut first_done: Option<(f64, f64)> = None;
    let mut ready = false;
    let mut last: Option<ClusterUpgrade> = None;
    let mut drover_usage = usage(&pid);
    let mut bed = bed;
    while t0.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now_usage = bed_usage(&bed);
        sampled.sample(&now_usage);
        let du = usage(&pid);
        if du.hwm_mib > 0.0 {
            drover_usage = du;
        }
        if let Ok(Some(st)) = child.try_wait() {
            bail!("drover exited ({st}); {}:\n{}", log.display(), real::tail(&log, 20));
        }
        if let Bed::Real(b) = &mut bed {
            b.check_alive()?;
        }
        let Ok(cu) = cus.get("runtime").await else { continue };
        let (real, simulated) = (t0.elapsed().as_secs_f64(), sim_now(&bed) - s0);
        let counts = cu.status.as_ref().map(|s| s.counts.clone()).unwrap_or_default();
        if counts.updated != last_updated {
            if counts.updated > 0 && first_done.is_none() {
                first_done = Some((real, simulated));
            }
            let done_batches = counts.updated as usize / per_batch;
            while batch_done.len() < done_batches {
                batch_done.push((real, simulated));
            }
            last_updated = counts.updated;
        }
        if last_print.elapsed() >= Duration::from_secs(15) {
            last_print = Instant::now();
            let server = now_usage
                .first()
                .map(|(n, u)| {
                    let cpu0 = sampled.per.get(n).map_or(u.cpu, |e| e.0);
                    format!(
                        "{n} VmRSS {:.0} MiB, CPU {:.0} %",
                        u.rss_mib,
                        (u.cpu - cpu0) / real * 100.0
                    )
                })
                .unwrap_or_default();
            println!(
                "  {real:>6.1} s real / {simulated:>6.0} s simulated: {} updated, {} updating, {} pending, {} failed; drover VmRSS {:.0} MiB; {server}",
                counts.updated, counts.updating, counts.pending, counts.failed, du.rss_mib,
            );
        }
        let done = condition(&cu, "Ready").is_some_and(|(s, _)| s == "True");
        last = Some(cu);
        if done {
            ready = true;
            break;
        }
    }
    let (real, simulated) = (t0.elapsed().as_secs_f64(), sim_now(&bed) - s0);
    sampled.sample(&bed_usage(&bed));
    let final_drover = usage(&pid);
    if final_drover.hwm_mib > 0.0 {
        drover_usage = final_drover;
    }
    let _ = child.kill().await;
    let _ = stop_phases.send(());
    let phases = collector.await.unwrap_or_default();
    for w in &watches {
        w.abort();
    }

    let outcome = match &bed {
        Bed::Kubesim(sim) => {
            let report = sim.recorder().report(sim.now());
            let counts = sim.server().requests();
            Outcome {
                drover: agent_requests(counts, DROVER_AGENT),
                bench: agent_requests(counts, BENCH_AGENT).total,
                evictions: counts
                    .rows()
                    .into_iter()
                    .filter(|r| r.key.agent == DROVER_AGENT && r.key.resource == "pods/eviction")
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
            let drover_reqs = real::audit_requests(&audit, |e| e.user == DROVER_USER);
            let mut evictions: std::collections::BTreeMap<u16, u64> = Default::default();
            for e in audit
                .iter()
                .filter(|e| e.user == DROVER_USER && e.resource == "pods/eviction")
            {
                *evictions.entry(e.code).or_default() += 1;
            }
            let budgets = budgets.as_ref().expect("the real bed's budget watch");
            Outcome {
                drover: drover_reqs,
                bench: real::audit_requests(&audit, |e| e.agent.starts_with(BENCH_AGENT)).total,
                evictions: evictions.into_iter().collect(),
                max_workers_unavailable: report.max_unavailable.get("worker").copied().unwrap_or(0),
                violations: budgets.deletions_under_budget(&audit, DROVER_USER),
                below_budget: budgets.below(),
                left_cordoned: report.cordoned.clone(),
                nudged: b.nudged(),
            }
        }
    };
    drop(budgets);

    let st = last.as_ref().and_then(|c| c.status.clone()).unwrap_or_default();
    let updated = st.counts.updated.max(0) as usize;
    println!();
    if ready {
        println!("Ready=True after {real:.1} s real, {simulated:.0} s simulated");
    } else {
        let cond: Vec<String> = st
            .conditions
            .iter()
            .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
            .collect();
        println!(
            "NOT finished after {real:.1} s real ({simulated:.0} s simulated): {updated} of {workers} workers updated, {} updating, {} pending, {} failed; conditions: {}",
            st.counts.updating,
            st.counts.pending,
            st.counts.failed,
            cond.join(" | ")
        );
    }
    if let Some((r, s)) = first_done {
        println!("first node upgraded after {r:.1} s real, {s:.0} s simulated");
    }
    for (i, (r, s)) in batch_done.iter().enumerate() {
        println!("batch {} counted done at {r:.1} s real, {s:.0} s simulated", i + 1);
    }
    // Phase times are from the watches' start; the rollout's from the ClusterUpgrade's creation.
    let offset = t0.duration_since(t0_watch).as_secs_f64();
    let mut prev_end: Option<f64> = None;
    for (i, (start, end)) in batch_spans(&phases, per_batch).iter().enumerate() {
        println!(
            "batch {}: first node started at {:.1} s, last finished at {}{}",
            i + 1,
            start - offset,
            end.map_or("-".into(), |e| format!("{:.1} s ({:.1} s)", e - offset, e - start)),
            prev_end.map_or(String::new(), |p| format!(
                "; {:.1} s after the previous batch",
                start - p
            ))
        );
        prev_end = *end;
    }
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
    let reqs = &outcome.drover;
    println!(
        "drover's requests{}: {} ({:.1} per upgraded node, if any); {}; 429s {}",
        if args.bed == BedKind::Real {
            " (the API server's audit log, user drover-system:drover)"
        } else {
            ""
        },
        reqs.total,
        reqs.total as f64 / updated.max(1) as f64,
        reqs.top(12),
        reqs.all_429
    );
    println!(
        "drover's evictions: {}",
        outcome
            .evictions
            .iter()
            .map(|(code, n)| format!("{n} answered {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "the benchmark's own requests (not counted as drover's): {}",
        outcome.bench
    );
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
    let ideal_real = ideal_sim / args.speed;
    println!(
        "\nideal = batches x per-node step = {batches} x ({} shutdown + {} start + {} ready + {} upgrade = {step} s) = {ideal_sim:.0} s simulated = {ideal_real:.1} s real at speed {}\n",
        2, 2, 3, args.upgrade_seconds, args.speed
    );
    let mut rows = vec![
        vec![
            "total time, real".into(),
            format!("{real:.1} s{}", if ready { "" } else { " (not finished)" }),
            format!("{ideal_real:.1} s ideal ({:.1}x)", real / ideal_real),
        ],
        vec![
            "total time, simulated".into(),
            format!("{simulated:.0} s"),
            format!("{ideal_sim:.0} s ideal"),
        ],
        vec![
            "workers upgraded".into(),
            format!("{updated} of {workers}"),
            format!("{batches} batches of {per_batch}"),
        ],
        vec![
            "drover API requests".into(),
            format!("{}", reqs.total),
            if updated > 0 {
                format!("{:.1} per upgraded node", reqs.total as f64 / updated as f64)
            } else {
                let started = (st.counts.updating + st.counts.failed).max(1) as f64;
                format!("no node finished; {:.1} per node started", reqs.total as f64 / started)
            },
        ],
        vec![
            "drover peak memory (VmHWM)".into(),
            format!("{:.0} MiB", drover_usage.hwm_mib),
            format!(
                "CPU {:.1} s ({:.0} % of one core)",
                drover_usage.cpu,
                drover_usage.cpu / real * 100.0
            ),
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
    if !ready {
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
            "not Ready after {} s ({updated} of {workers} workers upgraded)",
            args.timeout
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
    if !back.is_empty() {
        failures.push(format!("{} progress records went back", back.len()));
    }
    match bed {
        Bed::Kubesim(sim) => (*sim).shutdown().await,
        Bed::Real(mut b) => b.stop(),
    }
    if failures.is_empty() && args.real_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("logs kept in {}", dir.display());
    }
    Ok(failures)
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
