//! chaos-soak: rolls the medium scenario (3 control-plane nodes, 100
//! workers, PDB-protected services) on the real control plane while, driven
//! by one seed, drover is killed (SIGKILL) in every phase of a node's
//! upgrade and right after its status writes, the API server is restarted,
//! and a proxy between drover and the API server answers requests with
//! errors, loses answers to writes and cuts watches (src/faults.rs). When
//! the kills are done drover is left to finish under the proxy's faults.
//!
//! It prints the seed, the kills per phase, the restarts, the faults, and
//! the violations: nodes unavailable beyond the budget, PodDisruptionBudget
//! violations, nodes left cordoned, progress records going back, nodes not
//! at the last version. It exits 1 if any is not 0. Not part of CI (about
//! 20 minutes on 2 cores); docs/benchmarks.md has its figures.
//!
//!   cargo build --release -p drover -p kubesim -p drover-bench
//!   ./target/release/chaos-soak --seed 7

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use drover_api::ClusterUpgrade;
use drover_bench::faults::{FaultOptions, FaultProxy};
use drover_bench::real::{self, BudgetWatch, DROVER_USER, RealBed, RealOptions};
use drover_bench::{Rng, machine};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use kubesim::sim::{Recorder, Scenario, record_regressions};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    about = "Kill drover in every phase, restart the API server and inject API faults during real rollouts; count the violations"
)]
struct Args {
    /// The seed of every random choice (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// How many times drover is killed.
    #[arg(long, default_value_t = 50)]
    kills: u32,
    /// How many times the API server is restarted (spread over the kills).
    #[arg(long, default_value_t = 2)]
    apiserver_restarts: u32,
    /// Share of drover's non-watch requests answered with 500, 503 or 429.
    #[arg(long, default_value_t = 0.03)]
    error_rate: f64,
    /// Share of drover's writes whose answer is lost after the write.
    #[arg(long, default_value_t = 0.01)]
    lost_answer_rate: f64,
    /// Shortest and longest life of a watch before the proxy cuts it (real s).
    #[arg(long, num_args = 2, default_values_t = [5.0, 40.0])]
    watch_life: Vec<f64>,
    /// The bed's speed (simulated seconds per real second).
    #[arg(long, default_value_t = 20.0)]
    speed: f64,
    /// The rollout's strategy.maxUnavailable.
    #[arg(long, default_value = "10%")]
    max_unavailable: String,
    /// The scenario (a file of examples/clusters).
    #[arg(long, default_value = "examples/clusters/medium.yaml")]
    scenario: PathBuf,
    /// Kubernetes version of the bed (scripts/controlplane.sh --version).
    #[arg(long, default_value = "newest")]
    version: String,
    /// The whole soak's time limit (real s).
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// The bed's directory.
    #[arg(long, default_value = "target/chaos-soak")]
    dir: PathBuf,
}

/// Where a kill is aimed: a node phase in some node's record, or a status write.
const TARGETS: [&str; 6] = [
    "Cordoning",
    "Draining",
    "Upgrading",
    "Verifying",
    "Uncordoning",
    "status write",
];
const COMPONENT: &str = "containerd";
const NAME: &str = "soak";

/// What the watches saw: each node's records and current phase, and status writes.
#[derive(Default)]
struct Seen {
    records: BTreeMap<String, Vec<String>>,
    phase: BTreeMap<String, String>,
    status_writes: u64,
}

fn follow_records(client: Client, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let nodes = watcher(Api::<Node>::all(client), watcher::Config::default())
            .default_backoff()
            .applied_objects();
        futures::pin_mut!(nodes);
        while let Some(n) = nodes.next().await {
            let Ok(n) = n else { continue };
            let name = n.name_any();
            let mut s = seen.lock().unwrap();
            match n.annotations().get(drover_api::names::annotation::PROGRESS) {
                Some(r) => {
                    let phase = serde_json::from_str::<serde_json::Value>(r)
                        .ok()
                        .and_then(|v| v["phase"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    s.phase.insert(name.clone(), phase);
                    let list = s.records.entry(name).or_default();
                    if list.last() != Some(r) {
                        list.push(r.clone());
                    }
                }
                None => {
                    s.phase.remove(&name);
                }
            }
        }
    })
}

fn follow_status(client: Client, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let cus = watcher(Api::<ClusterUpgrade>::all(client), watcher::Config::default())
            .default_backoff()
            .applied_objects();
        futures::pin_mut!(cus);
        let mut last: Option<serde_json::Value> = None;
        while let Some(cu) = cus.next().await {
            let Ok(cu) = cu else { continue };
            let status = serde_json::to_value(&cu.status).unwrap_or_default();
            if last.as_ref().is_some_and(|l| *l != status) {
                seen.lock().unwrap().status_writes += 1;
            }
            last = Some(status);
        }
    })
}

/// drover as a Deployment's container would run it: killed, it comes back
/// with the same identity (a container restart); every tenth start it comes
/// back as a new pod (a new identity, which waits for the old Lease).
struct Supervisor {
    binary: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
    child: Option<std::process::Child>,
    starts: u32,
    exits_on_its_own: u32,
}

impl Supervisor {
    fn start(&mut self) -> anyhow::Result<()> {
        let identity = format!("drover-soak-{}", self.starts / 10);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = std::process::Command::new(&self.binary)
            .args([
                "run",
                "--http-addr",
                "off",
                "--namespace",
                "drover-system",
                "--leader-elect",
            ])
            .args(["--identity", &identity])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// Started again if it exited by itself (counted).
    fn keep_running(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut()
            && c.try_wait()?.is_some()
        {
            self.exits_on_its_own += 1;
            self.child = None;
            self.start()?;
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spec(version: &str, max_unavailable: &str) -> anyhow::Result<drover_api::ClusterUpgradeSpec> {
    let mu = max_unavailable
        .parse::<i64>()
        .map(|n| json!(n))
        .unwrap_or(json!(max_unavailable));
    Ok(serde_json::from_value(json!({
        "components": [{"name": COMPONENT, "version": version, "upgrade": {"job": {
            "image": "registry.example.com/drover-upgrade:1", "privileged": true, "hostRoot": true, "timeout": "30m"}}}],
        "nodeSelector": {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]},
        "strategy": {"maxUnavailable": mu, "maxFailures": 0},
        "drain": {"force": true, "deleteEmptyDirData": true, "timeout": "30m"}
    }))?)
}

/// Whether the ClusterUpgrade is Ready for its current generation.
fn ready(cu: &ClusterUpgrade) -> bool {
    let Some(st) = cu.status.as_ref() else {
        return false;
    };
    st.observed_generation == cu.metadata.generation
        && st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn budget(max_unavailable: &str, workers: usize) -> usize {
    match max_unavailable.strip_suffix('%') {
        Some(p) => (p.trim().parse::<f64>().unwrap_or(0.0) / 100.0 * workers as f64)
            .floor()
            .max(1.0) as usize,
        None => max_unavailable.trim().parse::<usize>().unwrap_or(1).max(1),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            % 1_000_000
    });
    println!("chaos-soak: seed {seed} (run again with --seed {seed})");
    println!("chaos-soak: {}", machine());
    let violations = soak(&args, seed).await?;
    if violations > 0 {
        eprintln!("chaos-soak: {violations} violations (seed {seed})");
        std::process::exit(1);
    }
    Ok(())
}

async fn soak(args: &Args, seed: u64) -> anyhow::Result<usize> {
    let mut rng = Rng::new(seed);
    let opts = RealOptions::new(&args.version, 3600, 600)?;
    let file = if args.scenario.is_absolute() {
        args.scenario.clone()
    } else {
        opts.repo.join(&args.scenario)
    };
    let mut scenario = Scenario::from_file(&file)?;
    scenario.speed = args.speed;
    let workers = scenario
        .nodes
        .iter()
        .filter(|p| p.role == kubesim::sim::Role::Worker)
        .map(|p| p.count as usize)
        .sum::<usize>();
    let allowed = budget(&args.max_unavailable, workers);
    let dir = if args.dir.is_absolute() {
        args.dir.clone()
    } else {
        opts.repo.join(&args.dir)
    };
    let _ = std::fs::remove_dir_all(&dir);
    let mut bed = RealBed::up(&opts, &dir, &scenario, args.speed).await?;
    let client = bed.client.clone();

    // The judges: straight to the API server, not through the proxy.
    let t0 = Instant::now();
    let recorder = Arc::new(Recorder::default());
    let (phase_tx, _phase_rx) = tokio::sync::mpsc::unbounded_channel();
    let _nodes = real::follow_nodes(client.clone(), recorder.clone(), t0, args.speed, phase_tx);
    let budgets = BudgetWatch::start(client.clone());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let _records = follow_records(client.clone(), seen.clone());
    let _status = follow_status(client.clone(), seen.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    recorder.reset();
    budgets.reset();
    let audit_mark = bed.audit_mark();

    let proxy = FaultProxy::start(
        &bed.dir,
        FaultOptions {
            error_rate: args.error_rate,
            lost_answer_rate: args.lost_answer_rate,
            watch_life: (args.watch_life[0], args.watch_life[1]),
            leases: false,
            seed: rng.next_u64(),
        },
    )
    .await?;
    let kubeconfig = bed.dir.join("drover-through-faults.kubeconfig");
    proxy.kubeconfig(&bed.drover_kubeconfig, &kubeconfig)?;
    println!(
        "faults: a proxy at {} between drover and the API server: {:.1} % of requests answered 500/503/429, {:.1} % of writes lose their answer, watches cut after {}–{} s",
        proxy.addr,
        args.error_rate * 100.0,
        args.lost_answer_rate * 100.0,
        args.watch_life[0],
        args.watch_life[1]
    );
    let binary = std::env::current_exe()?.with_file_name("drover");
    let mut drover = Supervisor {
        binary,
        kubeconfig,
        log: bed.dir.join("logs").join("drover.log"),
        child: None,
        starts: 0,
        exits_on_its_own: 0,
    };
    drover.start()?;

    let cus: Api<ClusterUpgrade> = Api::all(client.clone());
    let mut rollouts = 1u32;
    let version = |r: u32| format!("1.7.{}", 22 + r);
    cus.create(
        &PostParams::default(),
        &ClusterUpgrade::new(NAME, spec(&version(rollouts), &args.max_unavailable)?),
    )
    .await
    .context("creating the ClusterUpgrade")?;
    println!(
        "rollout 1: {COMPONENT} 1.7.22 -> {} on {workers} workers, maxUnavailable {} ({allowed} nodes)",
        version(1),
        args.max_unavailable
    );

    let deadline = t0 + Duration::from_secs(args.timeout);
    let restarts_at: Vec<u32> = (1..=args.apiserver_restarts)
        .map(|i| i * args.kills / (args.apiserver_restarts + 1))
        .collect();
    let mut kills: BTreeMap<String, u32> = BTreeMap::new();
    let mut restarts = 0u32;
    let mut order: Vec<&str> = Vec::new();
    let mut killed = 0u32;
    while killed < args.kills {
        if Instant::now() > deadline {
            bail!("the soak's {} s ran out after {killed} kills", args.timeout);
        }
        drover.keep_running()?;
        // Always a rollout to crash into: the next version once one is done.
        let cu = cus.get(NAME).await?;
        if ready(&cu) {
            rollouts += 1;
            let patch = json!({"spec": {"components": [serde_json::to_value(&spec(&version(rollouts), &args.max_unavailable)?.components[0])?]}});
            cus.patch(NAME, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            println!(
                "rollout {rollouts}: {COMPONENT} -> {} ({} s in)",
                version(rollouts),
                t0.elapsed().as_secs()
            );
        }
        if order.is_empty() {
            order = TARGETS.to_vec();
            // A fresh order of the six targets each round, from the seed.
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let target = order.pop().unwrap_or("Draining");
        // Aim: wait (at most 30 s) until some node is in the target phase,
        // or a status write lands; else kill wherever it is.
        let writes0 = seen.lock().unwrap().status_writes;
        let aim = Instant::now() + Duration::from_secs(30);
        let hit = loop {
            {
                let s = seen.lock().unwrap();
                let hit = if target == "status write" {
                    s.status_writes > writes0
                } else {
                    s.phase.values().any(|p| p == target)
                };
                if hit {
                    break Some(target.to_string());
                }
            }
            if Instant::now() > aim {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let at = hit.unwrap_or_else(|| {
            let s = seen.lock().unwrap();
            let mut in_flight: Vec<&str> = s
                .phase
                .values()
                .map(String::as_str)
                .filter(|p| !matches!(*p, "Done" | "Failed" | ""))
                .collect();
            in_flight.sort();
            in_flight.dedup();
            if in_flight.is_empty() {
                "between nodes".to_string()
            } else {
                in_flight.join("+")
            }
        });
        drover.kill();
        killed += 1;
        *kills.entry(at).or_default() += 1;
        tokio::time::sleep(Duration::from_secs_f64(rng.between(0.0, 1.5))).await;
        drover.start()?;
        if restarts_at.contains(&killed) {
            let t = Instant::now();
            let script = opts.repo.join("scripts/controlplane.sh");
            let mut cmd = std::process::Command::new("bash");
            cmd.arg(&script).args(["restart-apiserver", "--dir"]).arg(&bed.dir);
            let (ok, _, err) =
                tokio::task::spawn_blocking(move || real::run_bounded(&mut cmd, Duration::from_secs(150))).await??;
            if !ok {
                bail!("restarting the API server failed: {err}");
            }
            restarts += 1;
            println!(
                "kube-apiserver restarted ({restarts} of {}) after kill {killed}, in {:.1} s",
                args.apiserver_restarts,
                t.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_secs_f64(rng.between(1.0, 6.0))).await;
        if killed.is_multiple_of(10) {
            println!(
                "{killed} kills, {} s in; faults so far: {}",
                t0.elapsed().as_secs(),
                proxy.counts.summary()
            );
        }
    }

    // The kills are done: drover finishes the last rollout under the faults.
    let last = version(rollouts);
    println!(
        "kills done ({} s in): drover finishes rollout {rollouts} ({last}) under the proxy's faults",
        t0.elapsed().as_secs()
    );
    let done = loop {
        drover.keep_running()?;
        let cu = cus.get(NAME).await?;
        if ready(&cu) {
            break Some(cu);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let elapsed = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The verdict.
    let report = recorder.report(elapsed * args.speed);
    let max_workers = report.max_unavailable.get("worker").copied().unwrap_or(0);
    let audit = bed.audit_since(audit_mark)?;
    let mut pdb = budgets.deletions_under_budget(&audit, DROVER_USER);
    pdb.extend(budgets.below());
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?;
    let cordoned: Vec<String> = nodes
        .items
        .iter()
        .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false))
        .map(|n| n.name_any())
        .collect();
    let behind: Vec<String> = nodes
        .items
        .iter()
        .filter(|n| !n.labels().contains_key("node-role.kubernetes.io/control-plane"))
        .filter(|n| {
            let live = n
                .status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.container_runtime_version.clone())
                .unwrap_or_default();
            !drover_api::version::same_version(&live, &last)
        })
        .map(|n| n.name_any())
        .collect();
    let regressions = record_regressions(&seen.lock().unwrap().records);

    println!();
    println!("seed {seed}; {rollouts} rollouts of {workers} workers in {elapsed:.0} s real");
    println!(
        "kills: {killed} ({})",
        kills
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "drover starts: {}; exits on its own (restarted): {}",
        drover.starts, drover.exits_on_its_own
    );
    println!("kube-apiserver restarts: {restarts}");
    println!("faults: {}", proxy.counts.summary());
    let over_budget = usize::from(max_workers > allowed);
    println!(
        "violations: budget {over_budget} (most workers unavailable at once {max_workers}, allowed {allowed}); PDB {}; left cordoned {}; records going back {}; workers not at {last} {}; rollout not Ready {}",
        pdb.len(),
        cordoned.len(),
        regressions.len(),
        behind.len(),
        usize::from(done.is_none())
    );
    for (what, list) in [
        ("PDB", &pdb),
        ("left cordoned", &cordoned),
        ("record going back", &regressions),
        ("not at the last version", &behind),
    ] {
        for l in list.iter().take(10) {
            println!("  {what}: {l}");
        }
    }
    let violations =
        over_budget + pdb.len() + cordoned.len() + regressions.len() + behind.len() + usize::from(done.is_none());
    println!(
        "chaos-soak: seed={seed} kills={killed} phases={} apiserver_restarts={restarts} faults={} rollouts={rollouts} seconds={elapsed:.0} violations={violations}",
        kills.len(),
        proxy.counts.injected()
    );
    drover.kill();
    bed.stop();
    Ok(violations)
}
