//! The benchmarks' real bed: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and KWOK from `scripts/controlplane.sh up`, the scenario
//! loaded and its upgrade contract run by `kubesim agent` (a child process),
//! drover's CRD and RBAC from the repository. Requests are counted from the
//! API server's audit log (per user or User-Agent), the processes' CPU and
//! memory read from `/proc` through the pids the script writes to
//! `DIR/pids/`, and nodes, pods and budgets followed through watches: the
//! same `Recorder` as on kubesim, and a sampler of each budget's healthy pods
//! against its `desiredHealthy`. Every wait is bounded and ends with an error
//! that says what it waited for.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead as _, Seek as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use kubesim::sim::{Recorder, Scenario};

use crate::{AgentRequests, BENCH_AGENT, Usage, usage};

/// drover's user on the real bed (the ServiceAccount token of `DIR/drover.kubeconfig`).
pub const DROVER_USER: &str = "system:serviceaccount:drover-system:drover";

/// The processes of the bed, in the order they are reported.
pub const PROCESSES: [&str; 6] = [
    "kube-apiserver",
    "etcd",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "agent",
];

/// How to start the bed.
#[derive(Debug, Clone)]
pub struct RealOptions {
    /// The repository (scripts/controlplane.sh, crds/, deploy/).
    pub repo: PathBuf,
    /// `scripts/controlplane.sh --version` (newest, oldest, 1.34, ...).
    pub version: String,
    /// The kubesim binary that runs `kubesim agent`.
    pub kubesim: PathBuf,
    /// Longest `scripts/controlplane.sh up` may take (a cold build of the binaries takes ~20 min).
    pub up_timeout: Duration,
    /// Longest the scenario may take to be Running and Ready.
    pub load_timeout: Duration,
}

impl RealOptions {
    /// Defaults: the repository this crate was built from, kubesim next to the running binary.
    pub fn new(version: &str, up_timeout: u64, load_timeout: u64) -> anyhow::Result<RealOptions> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let repo = repo
            .canonicalize()
            .with_context(|| format!("the repository {}", repo.display()))?;
        let kubesim = std::env::current_exe()?.with_file_name("kubesim");
        Ok(RealOptions {
            repo,
            version: version.to_string(),
            kubesim,
            up_timeout: Duration::from_secs(up_timeout),
            load_timeout: Duration::from_secs(load_timeout),
        })
    }
}

/// Runs a command with a deadline; (success, stdout, stderr). Killed at the deadline.
pub fn run_bounded(cmd: &mut std::process::Command, limit: Duration) -> anyhow::Result<(bool, String, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let read = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, mut err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    if status.is_none() {
        err.push_str(&format!("\n(killed after {} s)", limit.as_secs()));
    }
    Ok((status.is_some_and(|s| s.success()), out, err))
}

/// The last `n` lines of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running real bed. Dropping it stops everything (`controlplane.sh down`).
pub struct RealBed {
    pub dir: PathBuf,
    pub admin: PathBuf,
    pub drover_kubeconfig: PathBuf,
    pub speed: f64,
    /// The Kubernetes version it serves.
    pub version: String,
    /// The benchmark's own client (admin, User-Agent [`BENCH_AGENT`]).
    pub client: Client,
    repo: PathBuf,
    agent: Option<std::process::Child>,
    pids: BTreeMap<String, String>,
    nudger: Option<Nudger>,
}

impl RealBed {
    /// Starts the control plane in `dir` (emptied first), installs drover's CRD
    /// and RBAC, and loads `scenario` with `kubesim agent` until it is Running
    /// and Ready. Prints the time of each step.
    pub async fn up(opts: &RealOptions, dir: &Path, scenario: &Scenario, speed: f64) -> anyhow::Result<RealBed> {
        if !opts.kubesim.exists() {
            bail!(
                "{} not found: build it first (cargo build --release -p kubesim)",
                opts.kubesim.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let t = Instant::now();
        let script = opts.repo.join("scripts/controlplane.sh");
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(&script).args(["up", "--dir"]).arg(&dir).args([
            "--version",
            &opts.version,
            "--speed",
            &speed.to_string(),
        ]);
        let limit = opts.up_timeout;
        let (ok, _, err) = tokio::task::spawn_blocking(move || run_bounded(&mut cmd, limit)).await??;
        if !ok {
            // Leave nothing running behind a failed start.
            down(&opts.repo, &dir);
            bail!(
                "the real control plane did not start within {} s (scripts/controlplane.sh up --dir {}):\n{}",
                limit.as_secs(),
                dir.display(),
                err.lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        let version = std::fs::read_to_string(dir.join("version"))
            .unwrap_or_default()
            .trim()
            .to_string();
        println!(
            "real bed: Kubernetes {version} in {} up in {:.1} s",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
        let admin = dir.join("admin.kubeconfig");
        let mut pids = BTreeMap::new();
        for name in PROCESSES {
            if let Ok(p) = std::fs::read_to_string(dir.join("pids").join(name)) {
                pids.insert(name.to_string(), p.trim().to_string());
            }
        }
        let mut cfg = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&admin)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        cfg.headers
            .push((http::header::USER_AGENT, http::HeaderValue::from_static(BENCH_AGENT)));
        let client = Client::try_from(cfg)?;
        let mut bed = RealBed {
            dir: dir.clone(),
            admin: admin.clone(),
            drover_kubeconfig: dir.join("drover.kubeconfig"),
            speed,
            version,
            client,
            repo: opts.repo.clone(),
            agent: None,
            pids,
            nudger: None,
        };

        // drover's CRD and RBAC, as deploy/ has them.
        for args in [
            vec![
                "apply",
                "-f",
                "crds/clusterupgrades.drover.dev.yaml",
                "-f",
                "deploy/base/clusterrole.yaml",
                "-f",
                "deploy/base/role.yaml",
            ],
            vec![
                "wait",
                "--for=condition=Established",
                "crd/clusterupgrades.drover.dev",
                "--timeout=30s",
            ],
        ] {
            bed.kubectl(&args, Duration::from_secs(60))?;
        }

        bed.nudger = Some(Nudger::start(bed.client.clone()));
        // The scenario, and its upgrade contract, from `kubesim agent`.
        let file = dir.join("scenario.yaml");
        std::fs::write(&file, scenario.to_yaml())?;
        let ready = dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = dir.join("logs").join("agent.log");
        let t = Instant::now();
        let child = std::process::Command::new(&opts.kubesim)
            .arg("agent")
            .arg("--kubeconfig")
            .arg(dir.join("agent.kubeconfig"))
            .arg("--scenario")
            .arg(&file)
            .args(["--speed", &speed.to_string()])
            .arg("--ready-file")
            .arg(&ready)
            .args(["--ready-timeout", &opts.load_timeout.as_secs().to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {} agent", opts.kubesim.display()))?;
        bed.pids.insert("agent".into(), child.id().to_string());
        bed.agent = Some(child);
        let deadline = Instant::now() + opts.load_timeout + Duration::from_secs(30);
        while !ready.exists() {
            if let Some(st) = bed.agent.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!(
                    "kubesim agent exited ({st}) before the scenario was ready; {}:\n{}",
                    log.display(),
                    tail(&log, 20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the scenario {:?} was not Running and Ready within {} s ({}):\n{}",
                    scenario.name,
                    opts.load_timeout.as_secs(),
                    log.display(),
                    tail(&log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let pods = Api::<Pod>::all(bed.client.clone()).list(&ListParams::default()).await?;
        println!(
            "real bed: scenario {:?} ({} nodes, {} pods) Running and Ready in {:.1} s",
            scenario.name,
            scenario.node_count(),
            pods.items.len(),
            t.elapsed().as_secs_f64()
        );
        Ok(bed)
    }

    /// `kubectl --kubeconfig admin ARGS` from the repository, bounded.
    pub fn kubectl(&self, args: &[&str], limit: Duration) -> anyhow::Result<String> {
        let mut c = std::process::Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.admin)
            .args(args)
            .current_dir(&self.repo);
        let (ok, out, err) = run_bounded(&mut c, limit)?;
        if !ok {
            bail!("kubectl {}: {out}{err}", args.join(" "));
        }
        Ok(out)
    }

    /// A client with drover's credentials (its ServiceAccount token and RBAC).
    pub async fn drover_config(&self) -> anyhow::Result<kube::Config> {
        Ok(kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&self.drover_kubeconfig)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?)
    }

    /// The pid of each bed process that is running.
    pub fn pids(&self) -> &BTreeMap<String, String> {
        &self.pids
    }

    /// CPU and memory of each bed process now (in [`PROCESSES`] order).
    pub fn usage(&self) -> Vec<(String, Usage)> {
        PROCESSES
            .iter()
            .filter_map(|n| self.pids.get(*n).map(|p| (n.to_string(), usage(p))))
            .collect()
    }

    /// Fails if a bed process has exited (with the end of its log).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(st) = self.agent.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            let log = self.dir.join("logs/agent.log");
            bail!("kubesim agent exited ({st}); {}:\n{}", log.display(), tail(&log, 20));
        }
        for (name, pid) in &self.pids {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let log = self.dir.join("logs").join(format!("{name}.log"));
                bail!("{name} (pid {pid}) exited; {}:\n{}", log.display(), tail(&log, 20));
            }
        }
        Ok(())
    }

    /// The audit log's length now: requests after it are counted from there.
    pub fn audit_mark(&self) -> u64 {
        std::fs::metadata(self.dir.join("audit.log"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The audit events written since `from` (the backend writes in batches of
    /// at most a second: wait that long after the last request first).
    pub fn audit_since(&self, from: u64) -> anyhow::Result<Vec<Audit>> {
        let mut f = std::fs::File::open(self.dir.join("audit.log")).context("the audit log")?;
        f.seek(std::io::SeekFrom::Start(from))?;
        let mut out = Vec::new();
        // A watch is logged twice (ResponseStarted, ResponseComplete): counted once.
        let mut started: HashSet<String> = HashSet::new();
        for line in std::io::BufReader::new(f).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let id = v["auditID"].as_str().unwrap_or_default().to_string();
            match v["stage"].as_str() {
                Some("ResponseStarted") => {
                    started.insert(id);
                }
                Some("ResponseComplete") if started.contains(&id) => continue,
                Some("ResponseComplete") => {}
                _ => continue,
            }
            let r = &v["objectRef"];
            let resource = match (r["resource"].as_str(), r["subresource"].as_str()) {
                (Some(res), Some(sub)) => format!("{res}/{sub}"),
                (Some(res), None) => res.to_string(),
                _ => v["requestURI"]
                    .as_str()
                    .unwrap_or("?")
                    .split('?')
                    .next()
                    .unwrap_or("?")
                    .to_string(),
            };
            out.push(Audit {
                user: v["user"]["username"].as_str().unwrap_or_default().to_string(),
                agent: v["userAgent"].as_str().unwrap_or_default().to_string(),
                verb: v["verb"].as_str().unwrap_or_default().to_string(),
                resource,
                namespace: r["namespace"].as_str().unwrap_or_default().to_string(),
                name: r["name"].as_str().unwrap_or_default().to_string(),
                code: v["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
                time: v["stageTimestamp"].as_str().unwrap_or_default().to_string(),
            });
        }
        Ok(out)
    }

    /// The pods KWOK left behind and the bench nudged so far (see [`Nudger`]):
    /// (nudges, distinct pods).
    pub fn nudged(&self) -> (u64, usize) {
        self.nudger.as_ref().map(Nudger::count).unwrap_or((0, 0))
    }

    /// Stops the agent and the control plane.
    pub fn stop(&mut self) {
        self.nudger.take();
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.pids.is_empty() {
            down(&self.repo, &self.dir);
            self.pids.clear();
        }
    }
}

impl Drop for RealBed {
    fn drop(&mut self) {
        self.stop();
    }
}

fn down(repo: &Path, dir: &Path) {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(repo.join("scripts/controlplane.sh"))
        .args(["down", "--dir"])
        .arg(dir);
    if let Ok((false, out, err)) = run_bounded(&mut cmd, Duration::from_secs(60)) {
        eprintln!("scripts/controlplane.sh down --dir {}: {out}{err}", dir.display());
    }
}

/// One request, from the audit log.
#[derive(Debug, Clone)]
pub struct Audit {
    pub user: String,
    pub agent: String,
    pub verb: String,
    /// `pods`, `pods/eviction`, or the path of a non-resource request.
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub code: u16,
    pub time: String,
}

/// One client's entries of the audit log, and the user they come from:
/// kubectl (by its User-Agent, as the admin) or drover (its ServiceAccount).
pub fn by_client(events: Vec<Audit>, kubectl: bool) -> (Vec<Audit>, &'static str) {
    if kubectl {
        let mine = events
            .into_iter()
            .filter(|e| e.agent.starts_with(crate::KUBECTL_AGENT))
            .collect();
        (mine, "admin")
    } else {
        (
            events.into_iter().filter(|e| e.user == DROVER_USER).collect(),
            DROVER_USER,
        )
    }
}

/// The requests among `events` that `pick` selects, counted as kubesim counts them.
pub fn audit_requests(events: &[Audit], pick: impl Fn(&Audit) -> bool) -> AgentRequests {
    let mut out = AgentRequests::default();
    for e in events.iter().filter(|e| pick(e)) {
        out.total += 1;
        if e.resource == "pods/eviction" && e.verb == "create" {
            match e.code {
                200 | 201 => out.evictions += 1,
                429 => out.evictions_429 += 1,
                _ => {}
            }
        }
        if e.code == 429 {
            out.all_429 += 1;
        }
        *out.by_kind.entry(format!("{} {}", e.verb, e.resource)).or_insert(0) += 1;
    }
    out
}

/// Peak memory and CPU of the bed's processes over a span, sampled.
#[derive(Debug, Clone, Default)]
pub struct Sampled {
    /// name -> (CPU s at the start, at the end, peak VmRSS MiB, VmHWM MiB at the end)
    pub per: BTreeMap<String, (f64, f64, f64, f64)>,
}

impl Sampled {
    pub fn start(usage: &[(String, Usage)]) -> Sampled {
        Sampled {
            per: usage
                .iter()
                .map(|(n, u)| (n.clone(), (u.cpu, u.cpu, u.rss_mib, u.hwm_mib)))
                .collect(),
        }
    }

    pub fn sample(&mut self, usage: &[(String, Usage)]) {
        for (n, u) in usage {
            if u.hwm_mib <= 0.0 {
                continue; // gone
            }
            let e = self.per.entry(n.clone()).or_insert((u.cpu, u.cpu, 0.0, 0.0));
            e.1 = u.cpu;
            e.2 = e.2.max(u.rss_mib);
            e.3 = u.hwm_mib;
        }
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

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Node changes seen by [`follow_nodes`]: (node, its `drover.dev/progress` phase, real s since `t0`).
pub type PhaseEvent = (String, Option<String>, f64);

/// Follows every node into `rec` (cordoned or not Ready, by role, as the
/// simulation records it) and sends each node's progress phase as it changes.
pub fn follow_nodes(
    client: Client,
    rec: Arc<Recorder>,
    t0: Instant,
    speed: f64,
    phases: tokio::sync::mpsc::UnboundedSender<PhaseEvent>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let events = watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff();
        futures::pin_mut!(events);
        while let Some(ev) = events.next().await {
            let (n, gone) = match ev {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => (n, false),
                Ok(watcher::Event::Delete(n)) => (n, true),
                _ => continue,
            };
            let name = n.name_any();
            let elapsed = t0.elapsed().as_secs_f64();
            if gone {
                rec.node(elapsed * speed, &name, None);
                continue;
            }
            let cordoned = n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
            rec.node(elapsed * speed, &name, Some((roles(&n), cordoned, node_ready(&n))));
            let phase = n
                .annotations()
                .get(drover_api::names::annotation::PROGRESS)
                .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                .and_then(|p| p["phase"].as_str().map(str::to_string));
            let _ = phases.send((name, phase, elapsed));
        }
    })
}

/// What [`BudgetWatch`] keeps of a pod.
#[derive(Debug, Clone)]
struct PodSeen {
    labels: BTreeMap<String, String>,
    healthy: bool,
    gone: bool,
}

#[derive(Default)]
struct BudgetState {
    /// (namespace, name) -> the pod as last seen (kept after deletion, for its labels).
    pods: HashMap<(String, String), PodSeen>,
    /// (namespace, name) -> (matchLabels, desiredHealthy).
    pdbs: BTreeMap<(String, String), (BTreeMap<String, String>, i64)>,
    /// Budget -> (fewest healthy pods seen, desiredHealthy then).
    fewest: BTreeMap<String, (i64, i64)>,
}

/// Watches every pod and PodDisruptionBudget and samples, every 100 ms,
/// each budget's healthy pods (Ready, not terminating) against its
/// `desiredHealthy`: an independent check that nothing took more pods down
/// than a budget allows. It also keeps every pod's labels, to tell which
/// budgets covered a pod deleted outright (an audit-log violation).
pub struct BudgetWatch {
    state: Arc<Mutex<BudgetState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn pod_healthy(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl BudgetWatch {
    pub fn start(client: Client) -> BudgetWatch {
        let state = Arc::new(Mutex::new(BudgetState::default()));
        let s = state.clone();
        let c = client.clone();
        let pods = tokio::spawn(async move {
            let events = watcher(Api::<Pod>::all(c), watcher::Config::default()).default_backoff();
            futures::pin_mut!(events);
            while let Some(ev) = events.next().await {
                let (p, gone) = match ev {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
                    Ok(watcher::Event::Delete(p)) => (p, true),
                    _ => continue,
                };
                let key = (p.namespace().unwrap_or_default(), p.name_any());
                let seen = PodSeen {
                    labels: p.labels().clone(),
                    healthy: pod_healthy(&p),
                    gone,
                };
                s.lock().unwrap().pods.insert(key, seen);
            }
        });
        let s = state.clone();
        let pdbs = tokio::spawn(async move {
            let events = watcher(Api::<PodDisruptionBudget>::all(client), watcher::Config::default()).default_backoff();
            futures::pin_mut!(events);
            while let Some(ev) = events.next().await {
                let (b, gone) = match ev {
                    Ok(watcher::Event::Apply(b) | watcher::Event::InitApply(b)) => (b, false),
                    Ok(watcher::Event::Delete(b)) => (b, true),
                    _ => continue,
                };
                let key = (b.namespace().unwrap_or_default(), b.name_any());
                let mut st = s.lock().unwrap();
                if gone {
                    st.pdbs.remove(&key);
                    continue;
                }
                let labels = b
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .and_then(|s| s.match_labels.clone())
                    .unwrap_or_default();
                let desired = b.status.as_ref().map(|s| i64::from(s.desired_healthy)).unwrap_or(0);
                st.pdbs.insert(key, (labels, desired));
            }
        });
        let s = state.clone();
        let sampler = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut st = s.lock().unwrap();
                let mut healthy: BTreeMap<(String, String), i64> = BTreeMap::new();
                // Pods by namespace, then matched against that namespace's budgets.
                for ((ns, _), p) in st.pods.iter().filter(|(_, p)| p.healthy && !p.gone) {
                    for ((bns, bname), (sel, _)) in st.pdbs.range((ns.clone(), String::new())..) {
                        if bns != ns {
                            break;
                        }
                        if !sel.is_empty() && sel.iter().all(|(k, v)| p.labels.get(k) == Some(v)) {
                            *healthy.entry((bns.clone(), bname.clone())).or_default() += 1;
                        }
                    }
                }
                let rows: Vec<(String, i64, i64)> = st
                    .pdbs
                    .iter()
                    .filter(|(_, (sel, desired))| !sel.is_empty() && *desired > 0)
                    .map(|(k, (_, desired))| {
                        (
                            format!("{}/{}", k.0, k.1),
                            healthy.get(k).copied().unwrap_or(0),
                            *desired,
                        )
                    })
                    .collect();
                for (name, h, desired) in rows {
                    let e = st.fewest.entry(name).or_insert((h, desired));
                    if h - desired < e.0 - e.1 {
                        *e = (h, desired);
                    }
                }
            }
        });
        BudgetWatch {
            state,
            tasks: vec![pods, pdbs, sampler],
        }
    }

    /// Forgets the fewest-healthy figures (from now on).
    pub fn reset(&self) {
        self.state.lock().unwrap().fewest.clear();
    }

    /// Budgets whose healthy pods fell below `desiredHealthy` since the last
    /// reset, as `ns/name (fewest healthy, desired)`.
    pub fn below(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .fewest
            .iter()
            .filter(|(_, (h, d))| h < d)
            .map(|(n, (h, d))| format!("{n} ({h} healthy, {d} desired)"))
            .collect()
    }

    /// `delete pods` answered 2xx for `user` of pods a budget covers
    /// (evictions go through `pods/eviction`, which the server judges).
    pub fn deletions_under_budget(&self, events: &[Audit], user: &str) -> Vec<String> {
        let st = self.state.lock().unwrap();
        let mut out = Vec::new();
        for e in events
            .iter()
            .filter(|e| e.user == user && e.verb == "delete" && e.resource == "pods" && (200..300).contains(&e.code))
        {
            let Some(p) = st.pods.get(&(e.namespace.clone(), e.name.clone())) else {
                continue;
            };
            for ((bns, bname), (sel, _)) in &st.pdbs {
                if *bns == e.namespace && !sel.is_empty() && sel.iter().all(|(k, v)| p.labels.get(k) == Some(v)) {
                    out.push(format!("{} {}/{} (budget {bname})", e.time, e.namespace, e.name));
                }
            }
        }
        out
    }
}

impl Drop for BudgetWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What keeps the cluster from being settled: pods not Running and Ready
/// (or unbound), Deployments short of ready replicas. Empty: settled.
pub async fn unsettled(client: &Client) -> anyhow::Result<Vec<String>> {
    let lp = ListParams::default();
    let mut out: Vec<String> = Api::<Pod>::all(client.clone())
        .list(&lp)
        .await?
        .items
        .iter()
        .filter_map(kubesim::agent::load::pod_problem)
        .collect();
    out.extend(
        Api::<Deployment>::all(client.clone())
            .list(&lp)
            .await?
            .items
            .iter()
            .filter_map(kubesim::agent::load::deployment_problem),
    );
    Ok(out)
}

/// Waits (polling every 0.5 s) until [`unsettled`] is empty, at most `timeout`.
pub async fn wait_settled(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = unsettled(client).await?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the cluster did not settle within {} s: {} (of {})",
                timeout.as_secs(),
                left.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
                left.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// KWOK (v0.8.0, under load) sometimes replays its `pod-start` stage on a pod
/// it has already started, from a stale cache; the API server refuses the
/// patch (`status.podIPs: may specify no more than one IP for each IP
/// family`: the pod already has one) and KWOK then leaves the pod Running
/// and not Ready until some other event about it arrives. So that one lost
/// pod does not hold a budget (and the rollout) forever, the nudger
/// annotates every bound pod that has been neither Ready nor finished for
/// 10 s real (KWOK needs 0.5 s at speed 10), which wakes KWOK's stages for
/// it. The benchmarks report how many pods it nudged.
pub struct Nudger {
    count: Nudges,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// (nudges, the pods nudged).
type Nudges = Arc<Mutex<(u64, HashSet<(String, String)>)>>;

const NUDGE_AFTER: Duration = Duration::from_secs(10);

impl Nudger {
    pub fn start(client: Client) -> Nudger {
        // (namespace, name) -> since when the pod has been stuck.
        let stuck: Arc<Mutex<HashMap<(String, String), Instant>>> = Arc::default();
        let count: Nudges = Arc::default();
        let s = stuck.clone();
        let c = client.clone();
        let watch = tokio::spawn(async move {
            let events = watcher(Api::<Pod>::all(c), watcher::Config::default()).default_backoff();
            futures::pin_mut!(events);
            while let Some(ev) = events.next().await {
                let (p, gone) = match ev {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
                    Ok(watcher::Event::Delete(p)) => (p, true),
                    _ => continue,
                };
                let key = (p.namespace().unwrap_or_default(), p.name_any());
                let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
                let bound = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some_and(|n| !n.is_empty());
                let settled = pod_healthy(&p) || matches!(phase.as_str(), "Succeeded" | "Failed");
                let mut st = s.lock().unwrap();
                if gone || !bound || settled {
                    st.remove(&key);
                } else {
                    st.entry(key).or_insert_with(Instant::now);
                }
            }
        });
        let n = count.clone();
        let nudge = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let due: Vec<(String, String)> = {
                    let mut st = stuck.lock().unwrap();
                    let due: Vec<_> = st
                        .iter()
                        .filter(|(_, since)| since.elapsed() > NUDGE_AFTER)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in &due {
                        st.insert(k.clone(), Instant::now());
                    }
                    due
                };
                for (ns, name) in due {
                    let patch = serde_json::json!({"metadata": {"annotations": {
                        "bench.drover.dev/nudged": jiff::Timestamp::now().to_string()}}});
                    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                    if api
                        .patch(
                            &name,
                            &kube::api::PatchParams::default(),
                            &kube::api::Patch::Merge(&patch),
                        )
                        .await
                        .is_ok()
                    {
                        let mut c = n.lock().unwrap();
                        c.0 += 1;
                        c.1.insert((ns, name));
                    }
                }
            }
        });
        Nudger {
            count,
            tasks: vec![watch, nudge],
        }
    }

    /// (nudges, distinct pods) so far.
    pub fn count(&self) -> (u64, usize) {
        let c = self.count.lock().unwrap();
        (c.0, c.1.len())
    }
}

impl Drop for Nudger {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
