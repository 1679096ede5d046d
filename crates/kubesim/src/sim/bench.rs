//! The simulation benchmark (`kubesim-bench --scenario FILE`): runs
//! `kubesim serve --scenario` as a separate process and measures that
//! process's CPU and memory at start, idle, and while many nodes are
//! drained at once over HTTP (cordon, then evict every pod that is not a
//! DaemonSet or mirror pod, retrying 429s, until the replacements are Ready).

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub scenario: std::path::PathBuf,
    pub speed: f64,
    /// Workers drained at once.
    pub drain: usize,
    pub idle: Duration,
    /// Requests in flight while draining.
    pub concurrency: usize,
}

/// CPU seconds (user + system) and VmRSS (MiB) of a process.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the file: 11 and 12 after ')'.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    (cpu, rss)
}

async fn get_json(client: &kube::Client, path: &str) -> anyhow::Result<serde_json::Value> {
    let req = axum::http::Request::get(path).body(Vec::new())?;
    Ok(serde_json::from_str(&client.request_text(req).await?)?)
}

fn skip_on_drain(p: &Pod) -> bool {
    let mirror = p
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let daemon = p
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "DaemonSet"));
    let done = matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    mirror || daemon || done || p.metadata.deletion_timestamp.is_some()
}

pub async fn run(o: BenchOptions) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?.with_file_name("kubesim");
    let kc = std::env::temp_dir().join(format!("kubesim-bench-{}.yaml", uuid::Uuid::new_v4()));
    let t = Instant::now();
    let mut child = tokio::process::Command::new(&exe)
        .args(["serve", "--port", "0", "--speed", &o.speed.to_string(), "--scenario"])
        .arg(&o.scenario)
        .arg("--kubeconfig")
        .arg(&kc)
        .kill_on_drop(true)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    let mut peak_start = 0f64;
    while !kc.exists() {
        if t.elapsed() > Duration::from_secs(900) {
            anyhow::bail!("the scenario did not come up in 15 minutes");
        }
        peak_start = peak_start.max(usage(pid).1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = t.elapsed();
    let (cpu_start, rss_start) = usage(pid);
    let yaml = std::fs::read_to_string(&kc)?;
    let _ = std::fs::remove_file(&kc);
    let cfg = kube::config::Kubeconfig::from_yaml(&yaml)?;
    let mut cfg = kube::Config::from_custom_kubeconfig(cfg, &Default::default()).await?;
    cfg.default_retry = false;
    cfg.read_timeout = Some(Duration::from_secs(120));
    let client = kube::Client::try_from(cfg)?;
    let status = get_json(&client, "/kubesim/status").await?;
    println!(
        "kubesim-bench: scenario {} at speed {}: {} nodes, {} pods",
        o.scenario.display(),
        o.speed,
        status["nodes"],
        status["pods"]
    );
    println!(
        "start: Running and Ready in {:.1} s; kubesim CPU {:.1} s; VmRSS {:.0} MiB (peak while starting {:.0} MiB)",
        started.as_secs_f64(),
        cpu_start,
        rss_start,
        peak_start.max(rss_start)
    );

    // Idle.
    let (c0, _) = usage(pid);
    tokio::time::sleep(o.idle).await;
    let (c1, rss_idle) = usage(pid);
    println!(
        "idle {} s: kubesim CPU {:.1} % of one core; VmRSS {:.0} MiB",
        o.idle.as_secs(),
        (c1 - c0) / o.idle.as_secs_f64() * 100.0,
        rss_idle
    );

    // Drain N workers at once, spread over the pools.
    let nodes: Api<Node> = Api::all(client.clone());
    let mut workers: Vec<String> = nodes
        .list(&ListParams::default().labels("!node-role.kubernetes.io/control-plane,!node-role.kubernetes.io/etcd"))
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    workers.sort();
    let step = (workers.len() / o.drain.max(1)).max(1);
    let targets: Vec<String> = workers.iter().step_by(step).take(o.drain).cloned().collect();
    let sampler = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let h = tokio::spawn(async move {
            let mut peak = 0f64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(usage(pid).1);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        });
        (stop, h)
    };
    let (c0, _) = usage(pid);
    let t = Instant::now();
    futures::stream::iter(targets.iter().cloned())
        .map(|n| {
            let nodes = nodes.clone();
            async move {
                let p = serde_json::json!({"spec": {"unschedulable": true}});
                nodes.patch(&n, &PatchParams::default(), &Patch::Merge(&p)).await
            }
        })
        .buffer_unordered(o.concurrency)
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("cordon failed: {e}");
            }
        })
        .await;
    let cordoned = t.elapsed();
    let pods_api: Api<Pod> = Api::all(client.clone());
    let mut victims: Vec<(String, String)> = Vec::new();
    let lists = futures::stream::iter(targets.iter().cloned())
        .map(|n| {
            let api = pods_api.clone();
            async move {
                api.list(&ListParams::default().fields(&format!("spec.nodeName={n}")))
                    .await
            }
        })
        .buffer_unordered(o.concurrency)
        .collect::<Vec<_>>()
        .await;
    for l in lists {
        for p in l?.items {
            if !skip_on_drain(&p) {
                victims.push((
                    p.metadata.namespace.unwrap_or_default(),
                    p.metadata.name.unwrap_or_default(),
                ));
            }
        }
    }
    let retries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let evicted = futures::stream::iter(victims.iter().cloned())
        .map(|(ns, name)| {
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let retries = retries.clone();
            async move {
                loop {
                    match api.evict(&name, &EvictParams::default()).await {
                        Ok(_) => return true,
                        Err(kube::Error::Api(s)) if s.code == 404 => return true,
                        Err(kube::Error::Api(s)) if s.code == 429 => {
                            retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        Err(e) => {
                            eprintln!("evict {ns}/{name}: {e}");
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }
            }
        })
        .buffer_unordered(o.concurrency)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    let evictions_done = t.elapsed();
    loop {
        let st = get_json(&client, "/kubesim/status").await?;
        if st["podsNotReady"] == 0 && st["workloadsUnsatisfied"] == 0 {
            break;
        }
        if t.elapsed() > Duration::from_secs(900) {
            anyhow::bail!("replacements not Ready after 15 minutes: {st}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = t.elapsed();
    let (c1, rss_after) = usage(pid);
    sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.1.await.unwrap_or(0.0);
    println!(
        "drain {} nodes at once ({} evictions, {} answered 429 and retried, {} requests in flight): cordoned in {:.1} s, evicted in {:.1} s, replacements Ready after {:.1} s",
        targets.len(),
        evicted,
        retries.load(std::sync::atomic::Ordering::Relaxed),
        o.concurrency,
        cordoned.as_secs_f64(),
        evictions_done.as_secs_f64(),
        drained.as_secs_f64()
    );
    println!(
        "during the drain: kubesim CPU {:.1} s ({:.0} % of one core on average); VmRSS peak {:.0} MiB, after {:.0} MiB",
        c1 - c0,
        (c1 - c0) / drained.as_secs_f64() * 100.0,
        peak.max(rss_after),
        rss_after
    );
    let report = get_json(&client, "/kubesim/recorder").await?;
    println!(
        "recorder: max unavailable {}; PDB violations {}; nodes cordoned {}",
        report["maxUnavailable"],
        report["pdbViolations"].as_array().map_or(0, Vec::len),
        report["cordoned"].as_array().map_or(0, Vec::len)
    );
    child.kill().await?;
    Ok(())
}
