//! What a rollout can be held to: a lower bound computed from the scenario
//! alone, and an anchor that does the same upgrade the way Kubespray's
//! `upgrade-cluster.yml` does (kubectl in batches), on an identical cluster.
//! See docs/benchmarks.md, "The lower bound" and "The anchor".

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use kubesim::sim::{Role, Scenario, WorkloadKind};
use serde_json::{Value, json};

/// One PodDisruptionBudget's part of the bound.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetPart {
    /// The workload (every copy of it has the same budget).
    pub workload: String,
    /// Its pods on the nodes to upgrade.
    pub pods: u32,
    /// Disruptions it allows when every pod is healthy.
    pub allowed: u32,
    /// `ceil(pods / allowed) × (replacement start + ready)`, simulated s.
    pub drain: f64,
}

/// The scenario's workers (the nodes a rollout upgrades).
pub fn workers(sc: &Scenario) -> usize {
    sc.nodes
        .iter()
        .filter(|p| p.role == Role::Worker)
        .map(|p| p.count as usize)
        .sum()
}

/// The lower bound of a rolling upgrade of every worker, in simulated seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// Pod shutdown + upgrade pod start + ready + the upgrade itself.
    pub step: f64,
    /// maxUnavailable, in nodes.
    pub k: usize,
    /// Workers to upgrade.
    pub nodes: usize,
    /// `ceil(nodes / k) × step`.
    pub by_nodes: f64,
    pub budgets: Vec<BudgetPart>,
    /// `max(by_nodes, max drain)`.
    pub simulated: f64,
}

impl Bound {
    /// The parts, one per line, for the benchmark's output.
    pub fn explain(&self, speed: f64) -> String {
        let mut out = format!(
            "lower bound = max(ceil(N / k) x step, max over budgets of ceil(P / d) x (start + ready))\n  nodes: ceil({} / {}) x {} s = {:.0} s simulated",
            self.nodes, self.k, self.step, self.by_nodes
        );
        for b in &self.budgets {
            out.push_str(&format!(
                "\n  budget of {}: ceil({} pods / {} allowed) x start+ready = {:.0} s simulated",
                b.workload, b.pods, b.allowed, b.drain
            ));
        }
        out.push_str(&format!(
            "\n  bound = {:.0} s simulated = {:.1} s real at speed {speed}",
            self.simulated,
            self.simulated / speed
        ));
        out
    }
}

/// Disruptions a budget allows over `n` healthy pods, as the disruption
/// controller computes them: percentages round up (for minAvailable, the
/// pods that must stay; for maxUnavailable, the pods that may go).
pub fn allowed_disruptions(n: u32, min_available: Option<&Value>, max_unavailable: Option<&Value>) -> u32 {
    let count = |v: &Value| -> u32 {
        match v {
            Value::Number(x) => x.as_u64().unwrap_or(0) as u32,
            Value::String(s) => match s.trim().strip_suffix('%') {
                Some(p) => (p.trim().parse::<f64>().unwrap_or(0.0) * f64::from(n) / 100.0).ceil() as u32,
                None => s.trim().parse().unwrap_or(0),
            },
            _ => 0,
        }
    };
    match (min_available, max_unavailable) {
        (Some(m), _) => n.saturating_sub(count(m)),
        (None, Some(u)) => count(u).min(n),
        (None, None) => n,
    }
}

/// The bound for upgrading every worker of `sc` with `k` at a time and an
/// upgrade of `upgrade_seconds`. Workloads pinned to nodes, or tolerating
/// every taint (some of their pods may sit on control-plane nodes), are
/// left out of the budgets' part, which only lowers the bound.
pub fn lower_bound(sc: &Scenario, k: usize, upgrade_seconds: f64) -> anyhow::Result<Bound> {
    let t = &sc.timing;
    let nodes = workers(sc);
    let step = t.pod_shutdown_seconds + t.pod_start_seconds + t.pod_ready_seconds + upgrade_seconds;
    let k = k.max(1);
    let by_nodes = nodes.div_ceil(k) as f64 * step;
    let mut budgets = Vec::new();
    for w in &sc.workloads {
        let Some(pdb) = &w.pdb else { continue };
        if matches!(w.kind, WorkloadKind::DaemonSet | WorkloadKind::Pod)
            || w.node_name.is_some()
            || !w.node_selector.is_empty()
            || !w.tolerations.is_empty()
        {
            continue;
        }
        let allowed = allowed_disruptions(w.replicas, pdb.min_available.as_ref(), pdb.max_unavailable.as_ref());
        if allowed == 0 {
            bail!(
                "the budget of {}/{} allows no disruption: no drain can finish",
                w.namespace,
                w.name
            );
        }
        budgets.push(BudgetPart {
            workload: format!("{}/{}", w.namespace, w.name),
            pods: w.replicas,
            allowed,
            drain: f64::from(w.replicas.div_ceil(allowed)) * (t.pod_start_seconds + t.pod_ready_seconds),
        });
    }
    let simulated = budgets.iter().map(|b| b.drain).fold(by_nodes, f64::max);
    Ok(Bound {
        step,
        k,
        nodes,
        by_nodes,
        budgets,
        simulated,
    })
}

/// The anchor's settings.
#[derive(Debug, Clone)]
pub struct Anchor {
    pub kubectl: PathBuf,
    pub kubeconfig: PathBuf,
    /// Nodes per batch (maxUnavailable).
    pub batch: usize,
    /// kubectl processes at once, at most.
    pub parallel: usize,
    /// `--timeout` of each drain and wait.
    pub timeout: Duration,
    pub namespace: String,
    pub component: String,
    pub version: String,
    pub image: String,
}

/// What the anchor did.
#[derive(Debug, Default)]
pub struct AnchorRun {
    pub nodes_done: usize,
    pub kubectl_runs: usize,
    /// Most kubectl processes that ran at once.
    pub peak_parallel: usize,
}

/// The commands the anchor runs for one node, for the output (`KUBECONFIG` stands for the file).
pub fn commands(a: &Anchor, node: &str) -> Vec<String> {
    let job = job_name(node);
    vec![
        format!("kubectl cordon {node}"),
        format!(
            "kubectl drain {node} --ignore-daemonsets --delete-emptydir-data --force --timeout={}s",
            a.timeout.as_secs()
        ),
        format!("kubectl create -f {job}.json   # the same upgrade Job as drover's, pinned to {node}"),
        format!(
            "kubectl wait --for=condition=complete -n {} job/{job} --timeout={}s",
            a.namespace,
            a.timeout.as_secs()
        ),
        format!("kubectl uncordon {node}"),
    ]
}

fn job_name(node: &str) -> String {
    let n: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("anchor-upgrade-{}", n.trim_matches('-'))
}

/// The upgrade Job for `node`: drover's Job's pod (the contract's env,
/// privileged, the host's root, every taint tolerated), without drover's
/// labels and owner.
pub fn job(a: &Anchor, node: &str) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(node), "namespace": a.namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "hostPID": true,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{
                    "name": "upgrade",
                    "image": a.image,
                    "env": [
                        {"name": "DROVER_COMPONENT", "value": a.component},
                        {"name": "DROVER_VERSION", "value": a.version},
                        {"name": "DROVER_NODE", "value": node},
                    ],
                    "securityContext": {"privileged": true},
                    "volumeMounts": [{"name": "host-root", "mountPath": "/host"}],
                }],
                "volumes": [{"name": "host-root", "hostPath": {"path": "/", "type": "Directory"}}],
            }},
        },
    })
}

struct Gate {
    permits: tokio::sync::Semaphore,
    running: AtomicUsize,
    peak: AtomicUsize,
    runs: AtomicUsize,
}

/// One kubectl command under the gate; its stderr on failure.
async fn kubectl(a: &Anchor, gate: &Gate, args: &[&str], stdin: Option<&Path>) -> anyhow::Result<()> {
    let _permit = gate.permits.acquire().await.context("the anchor's gate closed")?;
    let now = gate.running.fetch_add(1, Ordering::SeqCst) + 1;
    gate.peak.fetch_max(now, Ordering::SeqCst);
    gate.runs.fetch_add(1, Ordering::SeqCst);
    let mut cmd = tokio::process::Command::new(&a.kubectl);
    cmd.arg("--kubeconfig").arg(&a.kubeconfig).args(args);
    if let Some(f) = stdin {
        cmd.arg("-f").arg(f);
    }
    let out = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    // Every kubectl here has its own --timeout (or returns at once); this is a backstop.
    let out = tokio::time::timeout(a.timeout + Duration::from_secs(60), out).await;
    gate.running.fetch_sub(1, Ordering::SeqCst);
    let out = out
        .with_context(|| format!("kubectl {} outlived its --timeout", args.join(" ")))?
        .with_context(|| format!("starting {}", a.kubectl.display()))?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// One node: cordon, drain, the upgrade Job, wait, uncordon.
async fn node(a: &Anchor, gate: &Gate, dir: &Path, node: &str) -> anyhow::Result<()> {
    let name = job_name(node);
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec(&job(a, node))?)?;
    let timeout = format!("--timeout={}s", a.timeout.as_secs());
    kubectl(a, gate, &["cordon", node], None).await?;
    kubectl(
        a,
        gate,
        &[
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            &timeout,
        ],
        None,
    )
    .await?;
    kubectl(a, gate, &["create"], Some(&file)).await?;
    let job = format!("job/{name}");
    kubectl(
        a,
        gate,
        &["wait", "--for=condition=complete", "-n", &a.namespace, &job, &timeout],
        None,
    )
    .await?;
    kubectl(a, gate, &["uncordon", node], None).await
}

/// Upgrades `nodes` in batches of `a.batch`, every node of a batch at once
/// (at most `a.parallel` kubectl processes), the next batch when the batch
/// is done; `done` counts finished nodes. Stops at the first failure.
pub async fn run(a: &Anchor, dir: &Path, nodes: &[String], done: Arc<AtomicUsize>) -> anyhow::Result<AnchorRun> {
    std::fs::create_dir_all(dir)?;
    let gate = Gate {
        permits: tokio::sync::Semaphore::new(a.parallel.max(1)),
        running: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        runs: AtomicUsize::new(0),
    };
    for batch in nodes.chunks(a.batch.max(1)) {
        let results = futures::future::join_all(batch.iter().map(|n| {
            let (gate, done) = (&gate, &done);
            async move {
                node(a, gate, dir, n).await?;
                done.fetch_add(1, Ordering::SeqCst);
                anyhow::Ok(())
            }
        }))
        .await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(e);
        }
    }
    Ok(AnchorRun {
        nodes_done: done.load(Ordering::SeqCst),
        kubectl_runs: gate.runs.load(Ordering::SeqCst),
        peak_parallel: gate.peak.load(Ordering::SeqCst),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_allow_what_the_disruption_controller_allows() {
        // minAvailable 80% of 20: 16 must stay, 4 may go.
        assert_eq!(allowed_disruptions(20, Some(&json!("80%")), None), 4);
        assert_eq!(allowed_disruptions(3, Some(&json!(2)), None), 1);
        // maxUnavailable 20% of 10 rounds up to 2; 25% of 10 to 3.
        assert_eq!(allowed_disruptions(10, None, Some(&json!("20%"))), 2);
        assert_eq!(allowed_disruptions(10, None, Some(&json!("25%"))), 3);
        assert_eq!(allowed_disruptions(50, None, Some(&json!(2))), 2);
        assert_eq!(allowed_disruptions(1, None, Some(&json!(2))), 1);
    }

    #[test]
    fn the_large_example_is_bound_by_its_rounds_of_nodes() {
        let mut sc = Scenario::large();
        sc.timing.pod_start_seconds = 2.0;
        sc.timing.pod_ready_seconds = 3.0;
        sc.timing.pod_shutdown_seconds = 2.0;
        let b = lower_bound(&sc, 500, 60.0).unwrap();
        assert_eq!(b.step, 67.0);
        assert_eq!(b.nodes, 5000);
        assert_eq!(b.by_nodes, 10.0 * 67.0);
        // shop/web: 50 pods, 2 at a time, 5 s each round.
        let web = b.budgets.iter().find(|p| p.workload == "shop/web").unwrap();
        assert_eq!((web.pods, web.allowed, web.drain), (50, 2, 125.0));
        assert_eq!(b.simulated, 670.0);
        // With 1,000 nodes at once the budgets bound it.
        assert_eq!(lower_bound(&sc, 5000, 60.0).unwrap().simulated, 125.0);
    }

    #[test]
    fn a_budget_that_allows_nothing_has_no_bound() {
        let mut sc = Scenario::large();
        sc.workloads[0].pdb.as_mut().unwrap().max_unavailable = Some(json!(0));
        let e = lower_bound(&sc, 10, 60.0).unwrap_err().to_string();
        assert!(e.contains("shop/web allows no disruption"), "{e}");
    }

    #[test]
    fn the_anchors_job_carries_the_upgrade_contract_on_its_node() {
        let a = Anchor {
            kubectl: "kubectl".into(),
            kubeconfig: "k".into(),
            batch: 2,
            parallel: 20,
            timeout: Duration::from_secs(300),
            namespace: "default".into(),
            component: "containerd".into(),
            version: "1.7.23".into(),
            image: "img:1".into(),
        };
        let j = job(&a, "worker-a-1");
        assert_eq!(j["metadata"]["name"], "anchor-upgrade-worker-a-1");
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["nodeName"], "worker-a-1");
        let env = pod["containers"][0]["env"].as_array().unwrap();
        assert!(env.contains(&json!({"name": "DROVER_VERSION", "value": "1.7.23"})));
        let c = commands(&a, "worker-a-1");
        assert_eq!(c.len(), 5);
        assert!(c[1].contains("--ignore-daemonsets --delete-emptydir-data --force"));
    }
}
