//! Rollout benchmark: the real `drover` binary upgrades containerd on every
//! worker of a large simulated cluster (`maxUnavailable: 10%`, fixed
//! simulated step durations) until the ClusterUpgrade is Ready. Reports the
//! time against the ideal, drover's API requests per upgraded node (counted
//! at kubesim's HTTP layer), drover's peak memory (VmHWM of its process) and
//! kubesim's own CPU and memory idle and during the rollout. See
//! docs/benchmarks.md.
//!
//! ```sh
//! cargo build --release -p drover -p drover-bench
//! cargo run --release -p drover-bench --bin rollout-bench -- --workers 1000
//! cargo run --release -p drover-bench --bin rollout-bench -- --scenario examples/clusters/large.yaml
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use drover_api::ClusterUpgrade;
use drover_bench::{BENCH_AGENT, DROVER_AGENT, agent_requests, bench_client, table, usage};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kubesim::sim::{ComponentTiming, Role, Scenario, SimOptions, Simulation};
use serde_json::json;

const COMPONENT: &str = "containerd";
const FROM: &str = "1.7.22";
const TO: &str = "1.7.23";

#[derive(Parser, Debug)]
#[command(about = "A whole rollout by the drover binary on a large simulated cluster")]
struct Args {
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
    /// Longest the rollout may take (real seconds) before the figures are taken as they are.
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
    let t = &mut s.timing;
    t.pod_start_seconds = 2.0;
    t.pod_ready_seconds = 3.0;
    t.pod_shutdown_seconds = 2.0;
    t.heartbeat_seconds = Some(0.0);
    t.components.insert(
        COMPONENT.into(),
        ComponentTiming {
            seconds: Some(args.upgrade_seconds),
            reboot: false,
        },
    );
    s.speed = args.speed;
    s.validate()?;
    Ok(s)
}

/// Each node's `drover.dev/progress` phase over time, followed through the
/// in-process store's watch (no HTTP requests): node -> [(phase or None, real s)].
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

fn follow_phases(
    store: kubesim::Store,
    t0: Instant,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Phases> {
    tokio::spawn(async move {
        let mut phases = Phases::new();
        let Ok((_, mut stream)) = store.watch(&kubesim::GroupResource::new("", "nodes"), None) else {
            return phases;
        };
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                ev = stream.next() => {
                    let Some(Ok(ev)) = ev else { break };
                    let phase = phase_of(&ev.object);
                    let log = phases.entry(ev.object.name.to_string()).or_default();
                    if log.last().map(|(p, _)| p) != Some(&phase) && !(log.is_empty() && phase.is_none()) {
                        log.push((phase, t0.elapsed().as_secs_f64()));
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

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
    let sc = scenario(&args)?;
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
        "scenario {:?}: {} nodes ({workers} workers); speed {}; {COMPONENT} {FROM} -> {TO}, maxUnavailable {} = {per_batch} workers per batch, {batches} batches",
        sc.name,
        sc.node_count(),
        args.speed,
        args.max_unavailable
    );

    let t = Instant::now();
    let before = usage("self");
    let sim = Simulation::start_with(
        sc,
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

    // kubesim idle (this process is kubesim plus the benchmark's light polling).
    let idle0 = usage("self");
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let idle1 = usage("self");
    let idle_cpu = (idle1.cpu - idle0.cpu) / args.idle as f64 * 100.0;
    println!(
        "kubesim idle {} s: CPU {:.1} % of one core; VmRSS {:.0} MiB",
        args.idle, idle_cpu, idle1.rss_mib
    );

    let dir = std::env::temp_dir().join(format!("rollout-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    sim.server().write_kubeconfig(&kubeconfig)?;
    let log = dir.join("drover.log");
    let mut child = tokio::process::Command::new(&drover)
        .args(["run", "--http-addr", "off", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(&args.drover_args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", drover.display()))?;
    let pid = child.id().unwrap_or(0).to_string();
    println!("drover: {} run {}", drover.display(), args.drover_args.join(" "));

    let spec = json!({
        "components": [{"name": COMPONENT, "version": TO, "upgrade": {"job": {
            "image": "registry.example.com/drover-upgrade:1", "privileged": true, "hostRoot": true, "timeout": "30m"}}}],
        "nodeSelector": {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]},
        "strategy": {"maxUnavailable": args.max_unavailable.parse::<i64>().map(|n| json!(n)).unwrap_or(json!(args.max_unavailable))},
        "drain": {"force": true, "deleteEmptyDirData": true, "timeout": "30m"}
    });
    let spec: drover_api::ClusterUpgradeSpec = serde_json::from_value(spec)?;
    let cus: Api<ClusterUpgrade> = Api::all(client.clone());
    sim.recorder().reset();
    sim.server().requests().reset();
    let cpu0 = usage("self").cpu;
    let (t0, s0) = (Instant::now(), sim.now());
    let (stop_phases, stopped) = tokio::sync::oneshot::channel();
    let follower = follow_phases(sim.store().clone(), t0, stopped);
    cus.create(&PostParams::default(), &ClusterUpgrade::new("runtime", spec))
        .await?;

    let timeout = Duration::from_secs(args.timeout);
    let mut last_print = Instant::now();
    let mut rss_peak = 0f64;
    let mut last_updated = -1;
    let mut batch_done: Vec<(f64, f64)> = Vec::new();
    let mut first_done: Option<(f64, f64)> = None;
    let mut ready = false;
    let mut last: Option<ClusterUpgrade> = None;
    let mut drover_usage = usage(&pid);
    while t0.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_peak = rss_peak.max(usage("self").rss_mib);
        let du = usage(&pid);
        if du.hwm_mib > 0.0 {
            drover_usage = du;
        }
        if let Ok(Some(st)) = child.try_wait() {
            bail!("drover exited ({st}); its log: {}", log.display());
        }
        let Ok(cu) = cus.get("runtime").await else { continue };
        let (real, simulated) = (t0.elapsed().as_secs_f64(), sim.now() - s0);
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
            println!(
                "  {real:>6.1} s real / {simulated:>6.0} s simulated: {} updated, {} updating, {} pending, {} failed; drover VmRSS {:.0} MiB; kubesim VmRSS {:.0} MiB, CPU {:.0} %",
                counts.updated,
                counts.updating,
                counts.pending,
                counts.failed,
                du.rss_mib,
                usage("self").rss_mib,
                (usage("self").cpu - cpu0) / real * 100.0
            );
        }
        let done = condition(&cu, "Ready").is_some_and(|(s, _)| s == "True");
        last = Some(cu);
        if done {
            ready = true;
            break;
        }
    }
    let (real, simulated) = (t0.elapsed().as_secs_f64(), sim.now() - s0);
    let kubesim_cpu = usage("self").cpu - cpu0;
    let final_drover = usage(&pid);
    if final_drover.hwm_mib > 0.0 {
        drover_usage = final_drover;
    }
    let _ = child.kill().await;
    let _ = stop_phases.send(());
    let phases = follower.await.unwrap_or_default();

    let st = last.as_ref().and_then(|c| c.status.clone()).unwrap_or_default();
    let report = sim.recorder().report(sim.now());
    let reqs = agent_requests(sim.server().requests(), DROVER_AGENT);
    let mine = agent_requests(sim.server().requests(), BENCH_AGENT);
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
    let mut prev_end: Option<f64> = None;
    for (i, (start, end)) in batch_spans(&phases, per_batch).iter().enumerate() {
        println!(
            "batch {}: first node started at {start:.1} s, last finished at {}{}",
            i + 1,
            end.map_or("-".into(), |e| format!("{e:.1} s ({:.1} s)", e - start)),
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
            .map(|(n, a, b, t)| format!("; {n} {a} -> {b} at {t:.1} s"))
            .collect::<String>()
    );
    println!(
        "\ntime in each node phase (from drover.dev/progress, real seconds):\n{}\n",
        phase_table(&phases)
    );
    println!(
        "drover's requests: {} ({:.1} per upgraded node, if any); {}; 429s {}",
        reqs.total,
        reqs.total as f64 / updated.max(1) as f64,
        reqs.top(12),
        reqs.all_429
    );
    let evictions: Vec<String> = sim
        .server()
        .requests()
        .rows()
        .into_iter()
        .filter(|r| r.key.agent == DROVER_AGENT && r.key.resource == "pods/eviction")
        .map(|r| format!("{} answered {}", r.count, r.key.code))
        .collect();
    println!("drover's evictions: {}", evictions.join(", "));
    println!("the benchmark's own requests (not counted as drover's): {}", mine.total);
    println!(
        "recorder: max workers unavailable at once {}; PDB violations {}; left cordoned {}",
        report.max_unavailable.get("worker").copied().unwrap_or(0),
        report.pdb_violations.len(),
        report.cordoned.len()
    );
    let ideal_real = ideal_sim / args.speed;
    println!(
        "\nideal = batches x per-node step = {batches} x ({} shutdown + {} start + {} ready + {} upgrade = {step} s) = {ideal_sim:.0} s simulated = {ideal_real:.1} s real at speed {}\n",
        2, 2, 3, args.upgrade_seconds, args.speed
    );
    let rows = vec![
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
        vec![
            "kubesim idle".into(),
            format!("{:.1} % CPU", idle_cpu),
            format!("{:.0} MiB VmRSS", idle1.rss_mib),
        ],
        vec![
            "kubesim during the rollout".into(),
            format!("{:.0} % CPU (of one core, average)", kubesim_cpu / real * 100.0),
            format!("{rss_peak:.0} MiB VmRSS peak"),
        ],
    ];
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
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
    Ok(())
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
