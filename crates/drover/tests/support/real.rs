//! The real test bed: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and KWOK from `scripts/controlplane.sh`, the scenario and
//! its upgrade contract from the kubesim agent (in this process, as an
//! ordinary client), and watches that feed kubesim's own `Recorder`, so the
//! tests read one report on both beds. PDB violations come from the API
//! server's audit log: a `delete pods` by drover's ServiceAccount of a pod
//! that a PodDisruptionBudget covers is one (evictions go through
//! `pods/eviction`, which the server itself judges).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use kubesim::sim::{PdbViolation, Recorder, Report};

/// Pod labels by (namespace, name), kept after the pod is gone.
type PodLabels = Arc<Mutex<BTreeMap<(String, String), BTreeMap<String, String>>>>;

/// drover's user on the real bed, as the audit log names it.
pub const DROVER_USER: &str = "system:serviceaccount:drover-system:drover";

/// Which beds this run uses: `DROVER_TEST_BED=kubesim|real`, both if unset.
pub fn bed_selected(bed: &str) -> bool {
    match std::env::var("DROVER_TEST_BED") {
        Ok(v) if !v.is_empty() && v != "both" => v == bed,
        _ => true,
    }
}

/// The speed of the real bed (`DROVER_REAL_SPEED`, default 20): the
/// scenario's simulated durations are divided by it, but the real
/// controllers keep their own clocks.
pub fn real_speed() -> f64 {
    std::env::var("DROVER_REAL_SPEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0)
}

/// The Kubernetes version of the real bed (`DROVER_REAL_VERSION`, default
/// the newest supported).
pub fn real_version() -> String {
    std::env::var("DROVER_REAL_VERSION").unwrap_or_else(|_| "newest".into())
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Runs a command with a deadline; (success, stdout, stderr).
pub fn run_bounded(cmd: &mut std::process::Command, limit: Duration) -> (bool, String, String) {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (o, e) = (read(Box::new(out)), read(Box::new(err)));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (o, mut e) = (o.join().unwrap(), e.join().unwrap());
    if status.is_none() {
        e.push_str(&format!("\n(killed after {limit:?})"));
    }
    (status.is_some_and(|s| s.success()), o, e)
}

/// A running real control plane with a loaded scenario.
pub struct Real {
    pub dir: PathBuf,
    pub admin: PathBuf,
    pub drover_kubeconfig: PathBuf,
    pub client: Client,
    pub speed: f64,
    pub recorder: Arc<Recorder>,
    started: Instant,
    pods: PodLabels,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The agent's health endpoints (closed on drop).
    health: Option<kubesim::sim::health::HealthServer>,
}

impl Real {
    /// Starts the control plane in `dir` and loads `scenario` (a file of
    /// examples/clusters). Panics with the script's output if it cannot.
    pub async fn start(dir: &Path, scenario: &Path, speed: f64) -> Real {
        let root = repo_root();
        let script = root.join("scripts/controlplane.sh");
        let version = real_version();
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(&script)
            .args(["up", "--dir"])
            .arg(dir)
            .args(["--version", &version, "--speed", &speed.to_string()]);
        // A cold build of the binaries takes minutes; a cached start seconds.
        let (ok, _, err) = tokio::task::spawn_blocking(move || run_bounded(&mut cmd, Duration::from_secs(2400)))
            .await
            .unwrap();
        assert!(
            ok,
            "the real control plane did not start (scripts/controlplane.sh up; set DROVER_TEST_BED=kubesim to run the simulated bed alone):\n{err}"
        );
        // Until `Real` exists (its drop stops the control plane), a failure
        // below must not leave the control plane running.
        let guard = DownOnPanic(dir.to_path_buf());
        let admin = dir.join("admin.kubeconfig");
        let served = std::fs::read_to_string(dir.join("version")).unwrap_or_default();
        eprintln!("real bed: Kubernetes {} in {}", served.trim(), dir.display());
        let client = kubesim::agent::client_from_kubeconfig(&admin)
            .await
            .expect("admin kubeconfig");
        // drover's CRD and RBAC, as deploy/ has them.
        let kubectl = |args: &[&str]| {
            let mut c = std::process::Command::new("kubectl");
            c.arg("--kubeconfig").arg(&admin).args(args).current_dir(&root);
            let (ok, out, err) = run_bounded(&mut c, Duration::from_secs(60));
            assert!(ok, "kubectl {args:?}: {out}{err}");
        };
        kubectl(&[
            "apply",
            "-f",
            "crds/clusterupgrades.drover.dev.yaml",
            "-f",
            "deploy/base/clusterrole.yaml",
            "-f",
            "deploy/base/role.yaml",
        ]);
        // `kubectl wait` fails outright while the CRD has no conditions yet:
        // retry it (bounded) until it can wait.
        let mut attempts = 0;
        loop {
            let mut c = std::process::Command::new("kubectl");
            c.arg("--kubeconfig").arg(&admin).current_dir(&root).args([
                "wait",
                "--for=condition=Established",
                "crd/clusterupgrades.drover.dev",
                "--timeout=30s",
            ]);
            let (ok, out, err) = run_bounded(&mut c, Duration::from_secs(60));
            attempts += 1;
            if ok {
                break;
            }
            assert!(attempts < 10, "the CRD is not Established: {out}{err}");
            std::thread::sleep(Duration::from_millis(500));
        }

        // The scenario and its contract, from the agent's own kubeconfig.
        let agent_client = kubesim::agent::client_from_kubeconfig(&dir.join("agent.kubeconfig"))
            .await
            .expect("agent kubeconfig");
        let scenario_v = kubesim::sim::Scenario::from_file(scenario).expect("the scenario parses");
        let agent = kubesim::agent::Agent::new(agent_client, scenario_v, Some(speed)).expect("the agent");
        let plan = agent.plan().expect("the scenario's objects");
        let (contract, faults) = agent.spawn_contract();
        let (health_task, health) = agent
            .spawn_health(&faults, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("the agent's health endpoints listen");
        // As `controlplane.sh up --scenario` leaves it, for a look by hand.
        std::fs::write(dir.join("health.url"), format!("{}\n", health.url())).unwrap();
        let mut tasks = vec![contract, health_task];
        tokio::time::timeout(Duration::from_secs(360), agent.load(&plan))
            .await
            .expect("the scenario is Running and Ready within 360 s")
            .expect("the scenario loads");

        let recorder = Arc::new(Recorder::default());
        let pods = Arc::new(Mutex::new(BTreeMap::new()));
        let started = Instant::now();
        tasks.push(watch_nodes(client.clone(), recorder.clone(), started, speed));
        tasks.push(watch_pods(
            client.clone(),
            recorder.clone(),
            pods.clone(),
            started,
            speed,
        ));
        let real = Real {
            dir: dir.to_path_buf(),
            admin,
            drover_kubeconfig: dir.join("drover.kubeconfig"),
            client,
            speed,
            recorder,
            started,
            pods,
            tasks,
            health: Some(health),
        };
        std::mem::forget(guard);
        // The recorder has seen every node before a test acts.
        let nodes = Api::<Node>::all(real.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        let rec = real.recorder.clone();
        super::within(Duration::from_secs(30), "the node watch", async move {
            while rec.report(0.0).versions.len() < nodes {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        real
    }

    /// The agent's health endpoints: `http://127.0.0.1:PORT`.
    pub fn health_url(&self) -> String {
        self.health
            .as_ref()
            .map(|h| h.url())
            .expect("the health endpoints run until stop")
    }

    /// Simulated seconds since the start.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * self.speed
    }

    /// The recorder's report, with the PDB violations the audit log shows.
    pub async fn report(&self) -> Report {
        // The audit backend writes in batches of at most a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut report = self.recorder.report(self.now());
        report.pdb_violations.extend(self.audit_violations().await);
        // Least privilege, both ways: deploy/'s RBAC never refuses drover.
        let requests = audit_requests(&self.dir.join("audit.log"));
        assert!(
            !requests.is_empty(),
            "the audit log {} records no request of drover's ServiceAccount",
            self.dir.join("audit.log").display()
        );
        // A dry-run pod create that RBAC allowed and PodSecurity admission
        // refused is drover's admission check doing its job, not a missing rule.
        let admission_check = |r: &AuditRequest| {
            r.verb == "create" && r.resource == "pods" && r.uri.contains("dryRun=All") && r.decision == "allow"
        };
        let forbidden: Vec<AuditRequest> = requests
            .into_iter()
            .filter(|r| (r.code == 403 && !admission_check(r)) || r.decision == "forbid")
            .collect();
        assert!(
            forbidden.is_empty(),
            "the API server refused drover's ServiceAccount (403): deploy/'s RBAC lacks a rule: {forbidden:#?}"
        );
        report
    }

    /// `delete pods` answered 2xx for drover's user, of pods a budget covers.
    async fn audit_violations(&self) -> Vec<PdbViolation> {
        let log = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        let pdbs = Api::<PodDisruptionBudget>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let pods = self.pods.lock().unwrap().clone();
        let mut out = Vec::new();
        for line in log.lines() {
            let Ok(ev) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let r = &ev["objectRef"];
            let ok = ev["responseStatus"]["code"]
                .as_i64()
                .is_some_and(|c| (200..300).contains(&c));
            if ev["user"]["username"] != DROVER_USER
                || ev["verb"] != "delete"
                || r["resource"] != "pods"
                || !r["subresource"].is_null()
                || !ok
            {
                continue;
            }
            let (ns, name) = (
                r["namespace"].as_str().unwrap_or_default().to_string(),
                r["name"].as_str().unwrap_or_default().to_string(),
            );
            let labels = pods.get(&(ns.clone(), name.clone())).cloned().unwrap_or_default();
            for pdb in &pdbs {
                if pdb.namespace().as_deref() != Some(ns.as_str()) {
                    continue;
                }
                let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
                let matches = sel.is_some_and(|s| {
                    s.match_labels
                        .as_ref()
                        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
                });
                if matches {
                    out.push(PdbViolation {
                        at: 0.0,
                        time: ev["stageTimestamp"].as_str().unwrap_or_default().to_string(),
                        namespace: ns.clone(),
                        pdb: pdb.name_any(),
                        pod: name.clone(),
                        node: String::new(),
                        kind: "Deletion".into(),
                        healthy_after: -1,
                        desired_healthy: -1,
                    });
                }
            }
        }
        out
    }

    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.health = None;
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(repo_root().join("scripts/controlplane.sh"))
            .args(["down", "--dir"])
            .arg(&self.dir);
        let _ = run_bounded(&mut cmd, Duration::from_secs(60));
    }
}

/// Stops the control plane in its directory if dropped while panicking.
struct DownOnPanic(PathBuf);

impl Drop for DownOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut cmd = std::process::Command::new("bash");
            cmd.arg(repo_root().join("scripts/controlplane.sh"))
                .args(["down", "--dir"])
                .arg(&self.0);
            let _ = run_bounded(&mut cmd, Duration::from_secs(60));
        }
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        self.stop();
    }
}

fn roles(n: &Node) -> Vec<&'static str> {
    let labels = n.labels();
    let mut r = Vec::new();
    if labels.contains_key("node-role.kubernetes.io/control-plane") {
        r.push("control-plane");
    }
    if labels.contains_key("node-role.kubernetes.io/etcd") {
        r.push("etcd");
    }
    if r.is_empty() {
        r.push("worker");
    }
    r
}

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Every node change into the recorder: availability (cordoned or not
/// Ready) by role, and the versions its nodeInfo reports.
fn watch_nodes(client: Client, rec: Arc<Recorder>, started: Instant, speed: f64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let events = watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff();
        futures::pin_mut!(events);
        while let Some(ev) = events.next().await {
            let at = started.elapsed().as_secs_f64() * speed;
            let (nodes, gone) = match ev {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => (vec![n], false),
                Ok(watcher::Event::Delete(n)) => (vec![n], true),
                _ => continue,
            };
            for n in nodes {
                let name = n.name_any();
                if gone {
                    rec.node(at, &name, None);
                    continue;
                }
                let cordoned = n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
                rec.node(at, &name, Some((roles(&n), cordoned, ready(&n))));
                if let Some(info) = n.status.as_ref().and_then(|s| s.node_info.as_ref()) {
                    for (component, v) in [
                        ("kubelet", &info.kubelet_version),
                        ("kube-proxy", &info.kube_proxy_version),
                        ("container-runtime", &info.container_runtime_version),
                        ("os-image", &info.os_image),
                        ("kernel", &info.kernel_version),
                    ] {
                        if !v.is_empty() {
                            rec.version(at, &name, component, v);
                        }
                    }
                }
            }
        }
    })
}

/// Pod labels by (namespace, name), kept after deletion for the audit
/// check, and the mirror pods' image tags as versions.
fn watch_pods(
    client: Client,
    rec: Arc<Recorder>,
    pods: PodLabels,
    started: Instant,
    speed: f64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let events = watcher(Api::<Pod>::all(client), watcher::Config::default())
            .default_backoff()
            .applied_objects();
        futures::pin_mut!(events);
        while let Some(p) = events.next().await {
            let Ok(p) = p else { continue };
            let key = (p.namespace().unwrap_or_default(), p.name_any());
            pods.lock().unwrap().insert(key, p.labels().clone());
            let mirror = p.annotations().contains_key("kubernetes.io/config.mirror");
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            let component = p.labels().get("component").cloned();
            let image = p
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone());
            if let (true, Some(node), Some(c), Some(image)) = (mirror, node, component, image)
                && let Some((_, tag)) = image.rsplit_once(':')
            {
                rec.version(started.elapsed().as_secs_f64() * speed, &node, &c, tag);
            }
        }
    })
}

/// A real control plane with no scenario loaded (no nodes, no pods): for
/// tests of the API surface. Stopped when dropped.
pub struct Bare {
    pub dir: PathBuf,
    pub admin: PathBuf,
    pub drover_kubeconfig: PathBuf,
    pub client: Client,
}

impl Bare {
    /// `scripts/controlplane.sh up` in `dir`, with `apiserver_args` passed to
    /// kube-apiserver (e.g. `--runtime-config=events.k8s.io/v1=false`).
    pub async fn start(dir: &Path, apiserver_args: &[&str]) -> Bare {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(repo_root().join("scripts/controlplane.sh"))
            .args(["up", "--dir"])
            .arg(dir)
            .args(["--version", &real_version()]);
        for a in apiserver_args {
            cmd.arg("--apiserver-arg").arg(a);
        }
        let (ok, _, err) = tokio::task::spawn_blocking(move || run_bounded(&mut cmd, Duration::from_secs(2400)))
            .await
            .unwrap();
        if !ok {
            // Whatever `up` started before it failed is stopped.
            let mut down = std::process::Command::new("bash");
            down.arg(repo_root().join("scripts/controlplane.sh"))
                .args(["down", "--dir"])
                .arg(dir);
            let _ = run_bounded(&mut down, Duration::from_secs(60));
            panic!("the real control plane did not start (scripts/controlplane.sh up):\n{err}");
        }
        let admin = dir.join("admin.kubeconfig");
        let client = kubesim::agent::client_from_kubeconfig(&admin)
            .await
            .expect("admin kubeconfig");
        Bare {
            dir: dir.to_path_buf(),
            drover_kubeconfig: dir.join("drover.kubeconfig"),
            admin,
            client,
        }
    }

    /// kubectl with the admin kubeconfig, from the repository root, bounded.
    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let mut c = std::process::Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.admin)
            .args(args)
            .current_dir(repo_root());
        run_bounded(&mut c, Duration::from_secs(60))
    }

    /// drover's audit-log lines: (verb, group, resource[/subresource], namespace, code).
    pub fn drover_requests(&self) -> Vec<AuditRequest> {
        audit_requests(&self.dir.join("audit.log"))
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(repo_root().join("scripts/controlplane.sh"))
            .args(["down", "--dir"])
            .arg(&self.dir);
        let _ = run_bounded(&mut cmd, Duration::from_secs(60));
    }
}

/// One request of drover's user, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditRequest {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub code: i64,
    pub uri: String,
    /// `forbid` when RBAC refused it (`authorization.k8s.io/decision`).
    pub decision: String,
}

/// Every request of drover's ServiceAccount in an audit log.
pub fn audit_requests(log: &Path) -> Vec<AuditRequest> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|ev| ev["user"]["username"] == DROVER_USER)
        .map(|ev| {
            let r = &ev["objectRef"];
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            let resource = match r["subresource"].as_str() {
                Some(sub) => format!("{}/{sub}", s(&r["resource"])),
                None => s(&r["resource"]),
            };
            AuditRequest {
                verb: s(&ev["verb"]),
                group: s(&r["apiGroup"]),
                resource,
                namespace: r["namespace"].as_str().map(str::to_string),
                code: ev["responseStatus"]["code"].as_i64().unwrap_or(0),
                uri: s(&ev["requestURI"]),
                decision: s(&ev["annotations"]["authorization.k8s.io/decision"]),
            }
        })
        .collect()
}
