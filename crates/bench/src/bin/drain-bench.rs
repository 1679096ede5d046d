//! Drain benchmark: drover's drain (the nodeops crate, as `drover run`
//! drives it) against the real `kubectl drain`, on two equivalent nodes of
//! the same cluster, one after the other. On kubesim (`--bed kubesim`) the
//! API requests each made are counted per User-Agent at kubesim's HTTP layer
//! and the PDB violations come from kubesim's recorder; on the real control
//! plane (`--bed real`: scripts/controlplane.sh, KWOK nodes, the scenario
//! loaded by `kubesim agent`) requests come from the API server's audit log
//! (drover drains with its own ServiceAccount) and a violation is a pod a
//! budget covers deleted outright. On both, a sampler checks every budget's
//! healthy pods against its `desiredHealthy`. Exits non-zero when a drain
//! fails or a budget is violated. See docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release -p drover-bench --bin drain-bench -- --speed 10 --reps 3
//! cargo run --release -p drover-bench --bin drain-bench -- --bed real --reps 1
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use drover_bench::real::{self, RealBed, RealOptions};
use drover_bench::{AgentRequests, DROVER_AGENT, KUBECTL_AGENT, agent_requests, bench_client, median, table};
use drover_nodeops::{DrainOptions, KubeNodeOps, NodeOps};
use drover_plan::Outcome;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kubesim::sim::{Addons, Fault, NodePool, Role, Scenario, SimOptions, Simulation, Workload, WorkloadKind};
use serde_json::json;

const SPARE_TAINT: &str = "bench.drover.dev/spare";
const NODE_DROVER: &str = "drain-1";
const NODE_KUBECTL: &str = "drain-2";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BedKind {
    /// kubesim's API server and simulation, in this process.
    Kubesim,
    /// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (scripts/controlplane.sh).
    Real,
}

#[derive(Parser, Debug)]
#[command(
    about = "drover's drain against kubectl drain on equivalent nodes of one cluster (kubesim or the real control plane)"
)]
struct Args {
    /// The bed: kubesim (in this process) or real (scripts/controlplane.sh, KWOK nodes).
    #[arg(long, value_enum, default_value = "kubesim")]
    bed: BedKind,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 10.0)]
    speed: f64,
    /// Repetitions (a fresh cluster each); medians are reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// The kubectl binary.
    #[arg(long, default_value = "/usr/bin/kubectl")]
    kubectl: PathBuf,
    /// Longest one drain may take (seconds).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Workers with room for the evicted pods' replacements.
    #[arg(long, default_value_t = 4)]
    spares: u32,
    /// drover's drain pass (`drover run --drain-pass-seconds`, default 5).
    #[arg(long, default_value_t = 5)]
    pass_seconds: u64,
    /// drover's evictions in flight at once (DrainOptions::from_spec: 8).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// drover's client rate limit (`drover run --kube-qps`; 0, its default: none).
    #[arg(long, default_value_t = 0)]
    qps: u64,
    /// Real bed: the Kubernetes version (scripts/controlplane.sh --version).
    #[arg(long, default_value = "newest")]
    real_version: String,
    /// Real bed: longest `scripts/controlplane.sh up` may take (s; a cold build of the binaries takes ~20 min).
    #[arg(long, default_value_t = 1800)]
    up_timeout: u64,
    /// Real bed: longest the scenario may take to be Running and Ready (s).
    #[arg(long, default_value_t = 600)]
    load_timeout: u64,
    /// Real bed: the kubesim binary for `kubesim agent` (default: `kubesim` next to this one).
    #[arg(long)]
    kubesim: Option<PathBuf>,
}

/// The cluster: one control-plane node, two drain targets with 110 pods
/// each (Deployments under PDBs, some with long grace periods, an emptyDir
/// Deployment, bare pods, three DaemonSets' pods and a mirror pod), and spare
/// workers tainted until the pods have settled on the targets.
fn scenario(speed: f64, spares: u32) -> anyhow::Result<Scenario> {
    let mut targets = NodePool::new(Role::Worker, 2);
    targets.name_prefix = Some("drain".into());
    let mut spare = NodePool::new(Role::Worker, spares);
    spare.name_prefix = Some("spare".into());
    spare.taints = vec![json!({"key": SPARE_TAINT, "value": "true", "effect": "NoSchedule"})];
    let addons = Addons {
        coredns: None,
        metrics_server: None,
        ..Addons::default()
    };
    let mut fluent = Workload::new(WorkloadKind::DaemonSet, "logging", "fluent-bit", 1);
    fluent.tolerations = vec![json!({"operator": "Exists"})];
    let mut b = Scenario::builder()
        .name("drain-bench")
        .speed(speed)
        .control_plane(1)
        .pool(targets)
        .pool(spare)
        .addons(addons)
        .workload(fluent)
        // 39 per node; 20% may be down: 16 at once.
        .deployment("shop", "web", 78)
        .pdb_max_unavailable("20%")
        // 20 per node, one at a time, each taking its whole 30 s grace period to stop.
        .deployment("shop", "cart", 40)
        .pdb_max_unavailable(1)
        .grace_period(30)
        .fault(Fault::SlowTermination {
            namespace: "shop".into(),
            selector: BTreeMap::from([("app".to_string(), "cart".to_string())]),
        })
        // 15 per node with emptyDir data; 80% must stay: 6 at once.
        .deployment("data", "cache", 30)
        .pdb_min_available("80%")
        .empty_dir()
        .grace_period(60)
        // 20 per node, no budget.
        .deployment("batch", "worker", 40)
        .grace_period(10)
        // 10 per node, one at a time.
        .deployment("ops", "agent", 20)
        .pdb_max_unavailable(1)
        .timing(|t| {
            t.pod_start_seconds = 2.0;
            t.pod_ready_seconds = 3.0;
            t.pod_shutdown_seconds = 2.0;
        });
    for node in [NODE_DROVER, NODE_KUBECTL] {
        // Two bare pods per node (kubectl needs --force, drover spec.drain.force).
        let mut bare = Workload::new(WorkloadKind::Pod, "default", &format!("debug-{node}"), 1);
        bare.node_name = Some(node.into());
        bare.copies = 2;
        b = b.workload(bare);
    }
    Ok(b.build()?)
}

/// A mirror pod on `node`, as the kubelet creates for a static pod.
async fn add_mirror_pod(client: &kube::Client, node: &str) -> anyhow::Result<()> {
    let n = Api::<Node>::all(client.clone()).get(node).await?;
    let uid = n.metadata.uid.unwrap_or_default();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("node-agent-{node}"), "namespace": "kube-system",
            "labels": {"component": "node-agent", "tier": "node"},
            "annotations": {
                "kubernetes.io/config.mirror": "0123456789abcdef",
                "kubernetes.io/config.hash": "0123456789abcdef",
                "kubernetes.io/config.source": "file"
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid, "controller": true}]
        },
        "spec": {
            "nodeName": node, "hostNetwork": true,
            "containers": [{"name": "node-agent", "image": "registry.k8s.io/pause:3.10"}],
            "tolerations": [{"operator": "Exists"}]
        }
    }))?;
    Api::<Pod>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &pod)
        .await?;
    Ok(())
}

/// Waits until every pod is Running and Ready (bare pods evicted by a drain
/// are not replaced, which is fine).
async fn wait_pods_ready(sim: &Simulation, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = sim.status().await?;
        if s.pods_not_ready == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pods not Ready after {timeout:?}: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pods on `node` by what a drain does with them.
async fn census(client: &kube::Client, node: &str) -> anyhow::Result<(usize, usize, usize)> {
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    let (mut daemon, mut mirror) = (0, 0);
    for p in &pods.items {
        if p.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
        {
            mirror += 1;
        } else if p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "DaemonSet")
        {
            daemon += 1;
        }
    }
    Ok((pods.items.len(), daemon, mirror))
}

/// Watches every PodDisruptionBudget's pods through the in-process store
/// (no HTTP requests) and keeps, per budget, the fewest healthy pods seen
/// (Running, Ready, not terminating) against the budget's `desiredHealthy`:
/// an independent check that no drain took more pods down than allowed.
struct BudgetWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<String, (i64, i64)>>,
}

impl BudgetWatch {
    fn start(store: kubesim::Store) -> BudgetWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let pdbs = kubesim::GroupResource::new("policy", "poddisruptionbudgets");
            let pods = kubesim::GroupResource::new("", "pods");
            // name -> (fewest healthy seen, desiredHealthy)
            let mut seen: BTreeMap<String, (i64, i64)> = BTreeMap::new();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(list) = store.list(&pdbs, None, &Default::default()) else {
                    break;
                };
                for b in list.items.iter().map(|b| b.value()) {
                    let ns = b["metadata"]["namespace"].as_str().unwrap_or_default();
                    let name = format!("{ns}/{}", b["metadata"]["name"].as_str().unwrap_or_default());
                    let desired = b["status"]["desiredHealthy"].as_i64().unwrap_or(0);
                    let sel = kubesim::store::LabelSelector::from_object(&b["spec"]["selector"]);
                    let opts = kubesim::ListOptions {
                        label_selector: sel,
                        ..Default::default()
                    };
                    let Ok(ps) = store.list(&pods, Some(ns), &opts) else {
                        continue;
                    };
                    let healthy = ps
                        .items
                        .iter()
                        .map(|p| p.value())
                        .filter(|p| {
                            p["metadata"]["deletionTimestamp"].is_null()
                                && p["status"]["phase"] == "Running"
                                && p["status"]["conditions"]
                                    .as_array()
                                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
                        })
                        .count() as i64;
                    let e = seen.entry(name).or_insert((healthy, desired));
                    e.0 = e.0.min(healthy);
                    e.1 = e.1.max(desired);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            seen
        });
        BudgetWatch { stop, task }
    }

    /// Budgets whose healthy pods fell below `desiredHealthy`, as `ns/name (fewest/desired)`.
    async fn finish(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = self.task.await.unwrap_or_default();
        seen.iter()
            .filter(|(_, (min, desired))| min < desired)
            .map(|(n, (min, desired))| format!("{n} ({min} healthy, {desired} desired)"))
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Run {
    tool: &'static str,
    real: f64,
    sim: f64,
    requests: AgentRequests,
    violations: usize,
    /// Budgets whose healthy pods fell below desiredHealthy during the drain.
    below_budget: Vec<String>,
    detail: String,
}

/// drover drains `NODE_DROVER` with `config`'s credentials; `now` is the simulated clock.
async fn drain_drover(config: kube::Config, args: &Args, now: &dyn Fn() -> f64) -> anyhow::Result<Run> {
    // As `drover run` builds its clients: rate-limited, plus a no-retry client for evictions.
    let (client, evict) = drover_controller::clients(config, (args.qps > 0).then_some(args.qps))?;
    let ops = KubeNodeOps::new(client, evict, "drover-system");
    let timeout = Duration::from_secs(args.timeout);
    let spec = drover_api::Drain {
        force: true,
        delete_empty_dir_data: true,
        on_timeout: drover_api::DrainTimeoutAction::Halt,
        ..Default::default()
    };
    let deadline = jiff::Timestamp::now() + jiff::SignedDuration::try_from(timeout)?;
    let mut opts = DrainOptions::from_spec(&spec, deadline);
    opts.pass = Duration::from_secs(args.pass_seconds.max(1));
    opts.concurrency = args.concurrency;
    let (t0, s0) = (Instant::now(), now());
    match ops.cordon(NODE_DROVER, "drain-bench").await? {
        Outcome::Done => {}
        other => bail!("cordon: {other:?}"),
    }
    let mut passes = 0;
    loop {
        passes += 1;
        match ops.drain(NODE_DROVER, &opts).await? {
            Outcome::Done => break,
            Outcome::Failed { reason, message } => bail!("drover's drain failed: {reason}: {message}"),
            Outcome::Waiting { .. } | Outcome::Blocked { .. } if t0.elapsed() < timeout => {}
            other => bail!("drover's drain did not finish in {timeout:?}: {other:?}"),
        }
    }
    let (real, simulated) = (t0.elapsed().as_secs_f64(), now() - s0);
    Ok(Run {
        tool: "drover",
        real,
        sim: simulated,
        requests: AgentRequests::default(),
        violations: 0,
        below_budget: Vec::new(),
        detail: format!("{passes} drain passes"),
    })
}

/// `kubectl drain NODE_KUBECTL` with `kubeconfig`; `now` is the simulated clock.
async fn drain_kubectl(args: &Args, kubeconfig: &std::path::Path, now: &dyn Fn() -> f64) -> anyhow::Result<Run> {
    let (t0, s0) = (Instant::now(), now());
    let child = tokio::process::Command::new(&args.kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "drain",
            NODE_KUBECTL,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            &format!("--timeout={}s", args.timeout),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.kubectl.display()))?;
    let out = tokio::time::timeout(Duration::from_secs(args.timeout + 30), child.wait_with_output())
        .await
        .context("kubectl drain outlived its own --timeout")??;
    let (real, simulated) = (t0.elapsed().as_secs_f64(), now() - s0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("kubectl drain failed ({}): {stderr}", out.status);
    }
    let retries = stderr.matches("will retry after").count();
    Ok(Run {
        tool: "kubectl",
        real,
        sim: simulated,
        requests: AgentRequests::default(),
        violations: 0,
        below_budget: Vec::new(),
        detail: format!(
            "{} 'evicting pod' lines, {} 'will retry after 5s' lines",
            stdout.matches("evicting pod").count(),
            retries
        ),
    })
}

async fn one_rep(args: &Args, rep: usize) -> anyhow::Result<Vec<Run>> {
    let t = Instant::now();
    let sim = Simulation::start_with(
        scenario(args.speed, args.spares)?,
        SimOptions {
            speed: Some(args.speed),
            settle_timeout: Duration::from_secs(300),
            ..Default::default()
        },
    )
    .await?;
    let client = bench_client(&sim.server().url())?;
    for node in [NODE_DROVER, NODE_KUBECTL] {
        add_mirror_pod(&client, node).await?;
    }
    // Free the spare workers for the replacements.
    let nodes: Api<Node> = Api::all(client.clone());
    for n in nodes.list(&ListParams::default()).await?.items {
        let name = n.metadata.name.unwrap_or_default();
        if name.starts_with("spare-") {
            let p = json!({"spec": {"taints": null}});
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&p)).await?;
        }
    }
    wait_pods_ready(&sim, Duration::from_secs(120)).await?;
    for node in [NODE_DROVER, NODE_KUBECTL] {
        let (all, daemon, mirror) = census(&client, node).await?;
        println!(
            "rep {rep}: {node}: {all} pods ({daemon} DaemonSet, {mirror} mirror, {} to evict)",
            all - daemon - mirror
        );
    }
    println!("rep {rep}: cluster up in {:.1} s", t.elapsed().as_secs_f64());
    let dir = std::env::temp_dir().join(format!("drain-bench-{}-{rep}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    sim.server().write_kubeconfig(&kubeconfig)?;
    sim.recorder().reset();
    sim.server().requests().reset();

    // Alternate who goes first, so that neither always drains the fresher cluster.
    let drover_first = rep % 2 == 1;
    let mut runs = Vec::new();
    let now = || sim.now();
    for i in 0..2 {
        let watch = BudgetWatch::start(sim.store().clone());
        let mut run = if (i == 0) == drover_first {
            let config = kube::Config::new(sim.server().url().parse()?);
            let mut r = drain_drover(config, args, &now).await?;
            r.requests = agent_requests(sim.server().requests(), DROVER_AGENT);
            r
        } else {
            let mut r = drain_kubectl(args, &kubeconfig, &now).await?;
            r.requests = agent_requests(sim.server().requests(), KUBECTL_AGENT);
            r
        };
        wait_pods_ready(&sim, Duration::from_secs(300)).await?;
        run.below_budget = watch.finish().await;
        sim.server().requests().reset();
        runs.push(run);
    }
    let report = sim.recorder().report(sim.now());
    for r in &mut runs {
        let node = if r.tool == "drover" { NODE_DROVER } else { NODE_KUBECTL };
        r.violations = report.pdb_violations.iter().filter(|v| v.node == node).count();
    }
    if !report.pdb_violations.is_empty() {
        println!("rep {rep}: PDB violations: {:?}", report.pdb_violations);
    }
    let left: Vec<&String> = report.cordoned.iter().collect();
    println!("rep {rep}: nodes cordoned at the end: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
    Ok(runs)
}

/// One repetition on the real bed: the same scenario, loaded by `kubesim agent`.
async fn one_rep_real(args: &Args, rep: usize) -> anyhow::Result<Vec<Run>> {
    let t = Instant::now();
    let mut opts = RealOptions::new(&args.real_version, args.up_timeout, args.load_timeout)?;
    if let Some(k) = &args.kubesim {
        opts.kubesim = k.clone();
    }
    let dir = std::env::temp_dir().join(format!("drain-bench-{}-{rep}", std::process::id()));
    let sc = scenario(args.speed, args.spares)?;
    let mut bed = RealBed::up(&opts, &dir, &sc, args.speed).await?;
    let client = bed.client.clone();
    for node in [NODE_DROVER, NODE_KUBECTL] {
        add_mirror_pod(&client, node).await?;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for n in nodes.list(&ListParams::default()).await?.items {
        let name = n.metadata.name.unwrap_or_default();
        if name.starts_with("spare-") {
            let p = json!({"spec": {"taints": null}});
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&p)).await?;
        }
    }
    real::wait_settled(&client, Duration::from_secs(120)).await?;
    for node in [NODE_DROVER, NODE_KUBECTL] {
        let (all, daemon, mirror) = census(&client, node).await?;
        println!(
            "rep {rep}: {node}: {all} pods ({daemon} DaemonSet, {mirror} mirror, {} to evict)",
            all - daemon - mirror
        );
    }
    println!(
        "rep {rep}: real bed (Kubernetes {}) up in {:.1} s",
        bed.version,
        t.elapsed().as_secs_f64()
    );
    let budgets = real::BudgetWatch::start(client.clone());
    // The watch has listed everything before a drain starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    let speed = args.speed;
    let now = move || t0.elapsed().as_secs_f64() * speed;
    let drover_first = rep % 2 == 1;
    let mut runs = Vec::new();
    for i in 0..2 {
        budgets.reset();
        let mark = bed.audit_mark();
        let drover = (i == 0) == drover_first;
        let mut run = if drover {
            drain_drover(bed.drover_config().await?, args, &now).await?
        } else {
            drain_kubectl(args, &bed.admin, &now).await?
        };
        real::wait_settled(&client, Duration::from_secs(300)).await?;
        bed.check_alive()?;
        // The audit backend writes in batches of at most a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let audit = bed.audit_since(mark)?;
        let (mine, user) = real::by_client(audit, !drover);
        run.requests = real::audit_requests(&mine, |_| true);
        let deleted = budgets.deletions_under_budget(&mine, user);
        if !deleted.is_empty() {
            println!("rep {rep}: {}: pods deleted under a budget: {deleted:?}", run.tool);
        }
        run.violations = deleted.len();
        run.below_budget = budgets.below();
        runs.push(run);
    }
    drop(budgets);
    let (nudges, pods) = bed.nudged();
    println!("rep {rep}: pods KWOK left not Ready, nudged by the bench: {nudges} nudges of {pods} pods");
    bed.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(runs)
}

fn row(r: &Run) -> Vec<String> {
    vec![
        r.tool.to_string(),
        format!("{:.1}", r.real),
        format!("{:.0}", r.sim),
        r.requests.total.to_string(),
        r.requests.evictions.to_string(),
        r.requests.evictions_429.to_string(),
        r.violations.to_string(),
    ]
}

const HEADER: [&str; 7] = [
    "tool",
    "drain time (real s)",
    "drain time (simulated s)",
    "API requests",
    "evictions",
    "429s seen",
    "PDB violations",
];

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Ctrl-C drops the bed (the real one is stopped) instead of leaving it running.
    tokio::select! {
        r = run(&args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    println!("drain-bench: {}", drover_bench::machine());
    if args.bed == BedKind::Real {
        println!(
            "bed real: pods stop 2 s (simulated) after their deletion whatever their grace period (KWOK's pod-delete stage; the agent ignores SlowTermination, so cart pods do not take their 30 s)"
        );
    }
    println!(
        "speed {} (simulated s per real s); pod start 2 s + ready 3 s, shutdown 2 s (cart pods: their whole 30 s grace); drover: pass {} s, {} QPS",
        args.speed, args.pass_seconds, args.qps
    );
    let mut all: Vec<Run> = Vec::new();
    for rep in 1..=args.reps {
        let runs = match args.bed {
            BedKind::Kubesim => one_rep(args, rep).await?,
            BedKind::Real => one_rep_real(args, rep).await?,
        };
        for r in &runs {
            println!(
                "rep {rep}: {:<7} {:>6.1} s real, {:>5.0} s simulated, {} requests ({}), {} evictions, {} answered 429, {} PDB violations; below budget: {:?}; {}",
                r.tool,
                r.real,
                r.sim,
                r.requests.total,
                r.requests.top(6),
                r.requests.evictions,
                r.requests.evictions_429,
                r.violations,
                r.below_budget,
                r.detail
            );
        }
        all.extend(runs);
    }
    println!("\nEvery repetition:\n");
    println!("{}", table(&HEADER, &all.iter().map(row).collect::<Vec<_>>()));
    println!("\nMedians of {} repetitions:\n", args.reps);
    let mut rows = Vec::new();
    for tool in ["drover", "kubectl"] {
        let runs: Vec<&Run> = all.iter().filter(|r| r.tool == tool).collect();
        let m = |f: &dyn Fn(&Run) -> f64| median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
        rows.push(vec![
            tool.to_string(),
            format!("{:.1}", m(&|r| r.real)),
            format!("{:.0}", m(&|r| r.sim)),
            format!("{:.0}", m(&|r| r.requests.total as f64)),
            format!("{:.0}", m(&|r| r.requests.evictions as f64)),
            format!("{:.0}", m(&|r| r.requests.evictions_429 as f64)),
            format!("{}", runs.iter().map(|r| r.violations).sum::<usize>()),
        ]);
    }
    println!("{}", table(&HEADER, &rows));
    println!("(PDB violations: the sum over all repetitions)");
    let mut failures = Vec::new();
    for r in &all {
        if r.violations > 0 {
            failures.push(format!("{}: {} PDB violations", r.tool, r.violations));
        }
        if !r.below_budget.is_empty() {
            failures.push(format!(
                "{}: budgets below desiredHealthy: {:?}",
                r.tool, r.below_budget
            ));
        }
    }
    if !failures.is_empty() {
        bail!("the drain benchmark FAILED: {}", failures.join("; "));
    }
    println!("drain-bench: OK (both drains done, no PDB violation, no budget below desiredHealthy)");
    Ok(())
}
