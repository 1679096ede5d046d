//! `drover demo`: drover's main job on an embedded simulated cluster. Starts
//! a kubesim simulation, installs the CRD, runs the real controller in this
//! process, applies an example ClusterUpgrade (every platform component one
//! version up), shows the rollout live and ends with a summary checked
//! against kubesim's invariant recorder.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::ValueEnum;
use drover_api::names::{annotation, condition, label, reason};
use drover_api::version::{image_tag, parse_version};
use drover_api::{ClusterUpgrade, ClusterUpgradeSpec};
use drover_controller::{RunConfig, Settings};
use drover_plan::NodeProgress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubesim::sim::{Fault, Scenario, SimOptions, Simulation};
use serde_json::{Value, json};

use crate::ui::{parse_flag_duration, short};

/// Simulated seconds per real second. The small scenario's rollout is about
/// 40 simulated minutes of upgrades, drains and restarts.
pub const DEFAULT_SPEED: f64 = 300.0;
/// The name of the demo's ClusterUpgrade.
pub const NAME: &str = "platform";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DemoFault {
    /// A PodDisruptionBudget allows no disruption for a while (DrainBlocked), then is relaxed.
    PdbBlock,
    /// The runtime upgrade fails on one worker (Stalled/UpgradeJobFailed); the spec is then fixed.
    FailingUpgrade,
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// A kubesim scenario file (default: the built-in small cluster, 3 control-plane nodes and 5 workers).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = DEFAULT_SPEED)]
    pub speed: f64,
    /// Give up (with an error) if the rollout has not completed after this long.
    #[arg(long, default_value = "5m", value_parser = parse_flag_duration)]
    pub timeout: Duration,
    /// Show drover meeting a problem and getting past it.
    #[arg(long, value_enum)]
    pub fault: Option<DemoFault>,
    /// Keep the simulated cluster and drover running afterwards, until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
    /// Where --keep writes the simulated cluster's kubeconfig (default: a temporary file).
    #[arg(long)]
    pub kubeconfig_out: Option<PathBuf>,
    /// Serve drover's /metrics, /healthz and /readyz ("off", "auto" for a free port, or an address).
    #[arg(long, default_value = "off")]
    pub http_addr: String,
    /// Plain progress lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
}

/// Elapsed wall-clock time, for progress lines.
struct Clock(Instant);

impl Clock {
    fn stamp(&self) -> String {
        format!("[{:>6.1}s]", self.0.elapsed().as_secs_f64())
    }
}

/// Where output goes: a live display on a terminal, plain lines otherwise.
enum Display {
    Live {
        mp: MultiProgress,
        bar: ProgressBar,
        header: ProgressBar,
        rows: Vec<ProgressBar>,
    },
    Plain,
}

impl Display {
    fn new(live: bool) -> Display {
        if !live {
            return Display::Plain;
        }
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10));
        let bar = mp.add(ProgressBar::new(1));
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:40.cyan/blue}] {pos}/{len} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        let header = mp.add(ProgressBar::new_spinner());
        header.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
        Display::Live {
            mp,
            bar,
            header,
            rows: Vec::new(),
        }
    }

    /// An event line: above the live display, or a plain line.
    fn say(&self, line: &str) {
        match self {
            Display::Live { mp, .. } => {
                let _ = mp.println(line);
            }
            Display::Plain => println!("{line}"),
        }
    }

    fn finish(&self) {
        if let Display::Live { bar, header, rows, .. } = self {
            bar.finish();
            header.finish();
            for r in rows {
                r.finish();
            }
        }
    }
}

/// One node as the table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    name: String,
    role: &'static str,
    step: String,
    cordoned: bool,
    kubelet: String,
    runtime: String,
    etcd: String,
    apiserver: String,
}

const MAX_ROWS: usize = 24;
/// Drain blocks listed in the summary.
const MAX_BLOCKS: usize = 5;

fn row_text(r: &Row) -> String {
    let sched = if r.cordoned { "cordoned" } else { "" };
    format!(
        "  {:<11} {:<14} {:<9} {:<34} {:<9} {:<9} {:<9} {}",
        r.name, r.role, sched, r.step, r.kubelet, r.runtime, r.etcd, r.apiserver
    )
}

fn header_text() -> String {
    format!(
        "  {:<11} {:<14} {:<9} {:<34} {:<9} {:<9} {:<9} {}",
        "NODE", "ROLE", "SCHED", "STEP", "KUBELET", "RUNTIME", "ETCD", "APISERVER"
    )
}

fn role_of(n: &Node) -> &'static str {
    let l = n.labels();
    let cp = l.contains_key(label::ROLE_CONTROL_PLANE) || l.contains_key(label::ROLE_MASTER);
    match (cp, l.contains_key(label::ROLE_ETCD)) {
        (true, true) => "control-plane",
        (true, false) => "control-plane",
        (false, true) => "etcd",
        _ => "worker",
    }
}

fn step_of(n: &Node) -> String {
    let p = n
        .annotations()
        .get(annotation::PROGRESS)
        .and_then(|s| NodeProgress::from_annotation(s))
        .filter(|p| p.upgrade == NAME);
    match p {
        None => "waiting".to_string(),
        Some(p) => match p.phase {
            drover_plan::NodePhase::Done => "done".to_string(),
            drover_plan::NodePhase::Failed => {
                format!("FAILED {}", p.component.unwrap_or_default())
            }
            ph => {
                let mut s = ph.step().to_string();
                if let Some(c) = p.component {
                    s.push(' ');
                    s.push_str(&c);
                }
                if p.failure.is_some() {
                    s.push_str(" (failed)");
                } else if ph == drover_plan::NodePhase::Draining && !p.message.is_empty() {
                    s.push_str(" (blocked)");
                }
                s
            }
        },
    }
}

fn rows(nodes: &[Node], cp_pods: &[Pod]) -> Vec<Row> {
    let tag = |component: &str, node: &str| {
        cp_pods
            .iter()
            .find(|p| p.name_any() == format!("{component}-{node}"))
            .and_then(|p| p.spec.as_ref()?.containers.first()?.image.clone())
            .and_then(|i| image_tag(&i).map(str::to_string))
            .unwrap_or_else(|| "-".into())
    };
    let mut out: Vec<Row> = nodes
        .iter()
        .map(|n| {
            let name = n.name_any();
            let info = n.status.as_ref().and_then(|s| s.node_info.as_ref());
            Row {
                role: role_of(n),
                step: step_of(n),
                cordoned: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
                kubelet: info.map(|i| i.kubelet_version.clone()).unwrap_or_default(),
                runtime: info
                    .map(|i| {
                        let v = &i.container_runtime_version;
                        v.split_once("://").map_or(v.clone(), |(_, v)| v.to_string())
                    })
                    .unwrap_or_default(),
                etcd: tag("etcd", &name),
                apiserver: tag("kube-apiserver", &name),
                name,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A version one minor (`.0`) or one patch up, keeping a leading `v`.
fn one_up(v: &str, minor: bool) -> Option<String> {
    let p = parse_version(v)?;
    let prefix = if v.starts_with('v') { "v" } else { "" };
    Some(if minor {
        format!("{prefix}{}.{}.0", p.major, p.minor + 1)
    } else {
        format!("{prefix}{}.{}.{}", p.major, p.minor, p.patch + 1)
    })
}

fn oldest(versions: impl Iterator<Item = String>) -> Option<String> {
    versions
        .filter_map(|v| parse_version(&v).map(|p| (p, v)))
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v)
}

fn job(name: &str, version: &str) -> Value {
    json!({"name": name, "version": version, "upgrade": {"job": {"image": "registry.example.com/drover-upgrade:1", "privileged": true, "hostRoot": true, "timeout": "30m"}}})
}

/// The example ClusterUpgrade: what the cluster runs now, one version up
/// (Kubernetes one minor, the runtime, etcd and CoreDNS one patch, the
/// network plugin one minor), for the components the cluster has.
async fn example_spec(client: &Client) -> anyhow::Result<ClusterUpgradeSpec> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let pods = Api::<Pod>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default().labels("tier=control-plane"))
        .await?
        .items;
    let infos: Vec<_> = nodes
        .iter()
        .filter_map(|n| n.status.as_ref()?.node_info.clone())
        .collect();
    let static_tag = |component: &str| {
        oldest(
            pods.iter()
                .filter(|p| p.labels().get("component").map(String::as_str) == Some(component))
                .filter_map(|p| image_tag(p.spec.as_ref()?.containers.first()?.image.as_deref()?).map(str::to_string)),
        )
    };
    let mut components = Vec::new();
    if let Some(v) = oldest(infos.iter().filter_map(|i| {
        i.container_runtime_version
            .strip_prefix("containerd://")
            .map(str::to_string)
    })) && let Some(up) = one_up(&v, false)
    {
        components.push(job("containerd", &up));
    }
    if let Some(up) = static_tag("etcd").and_then(|v| one_up(&v, false)) {
        components.push(job("etcd", &up));
    }
    if let Some(up) = static_tag("kube-apiserver").and_then(|v| one_up(&v, true)) {
        for c in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"] {
            components.push(job(c, &up));
        }
    }
    let ds = Api::<DaemonSet>::namespaced(client.clone(), "kube-system");
    if let Some(d) = ds.get_opt("calico-node").await?
        && let Some(up) = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref()?.containers.first()?.image.clone())
            .and_then(|i| image_tag(&i).and_then(|t| one_up(t, true)))
    {
        components.push(json!({"name": "calico", "version": up, "upgrade": {"workload": {"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"}}}));
    }
    let deploys = Api::<Deployment>::namespaced(client.clone(), "kube-system");
    if let Some(d) = deploys.get_opt("coredns").await?
        && let Some(up) = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref()?.containers.first()?.image.clone())
            .and_then(|i| image_tag(&i).and_then(|t| one_up(t, false)))
    {
        components.push(json!({"name": "coredns", "version": up, "upgrade": {"workload": {"kind": "Deployment", "namespace": "kube-system", "name": "coredns"}}}));
    }
    if components.is_empty() {
        anyhow::bail!("the scenario's cluster runs none of the components the demo upgrades");
    }
    // Two workers at a time on a small cluster, a fifth of them on a large one.
    let workers = nodes.iter().filter(|n| role_of(n) == "worker").count();
    let max_unavailable = if workers > 10 { json!("20%") } else { json!(2) };
    let spec = json!({
        "components": components,
        "strategy": {"maxUnavailable": max_unavailable},
        "drain": {"force": true, "deleteEmptyDirData": true, "timeout": "10m"}
    });
    Ok(serde_json::from_value(spec)?)
}

async fn bounded<T>(deadline: Instant, what: &str, f: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, f)
        .await
        .map_err(|_| anyhow::anyhow!("timed out waiting for {what} (raise --timeout)"))
}

async fn install_crd(client: &Client, deadline: Instant) -> anyhow::Result<()> {
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &drover_api::crd::crd())
        .await
        .context("installing the ClusterUpgrade CRD")?;
    let cus: Api<ClusterUpgrade> = Api::all(client.clone());
    bounded(deadline, "the ClusterUpgrade API to be served", async {
        while cus.list(&ListParams::default()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

fn http_addr(s: &str) -> anyhow::Result<Option<SocketAddr>> {
    Ok(match s {
        "off" | "" => None,
        "auto" => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
            Some(l.local_addr()?)
        }
        a => Some(
            a.parse()
                .with_context(|| format!("--http-addr {a:?} is not off, auto or an address such as 127.0.0.1:8080"))?,
        ),
    })
}

/// At most `n` characters, with an ellipsis when cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

/// Problems met on the way, for the summary.
#[derive(Default)]
struct Met {
    /// node → (first seen, last seen, first message)
    blocks: BTreeMap<String, (Instant, Instant, String)>,
    /// (reason, node, component) → message
    failures: BTreeMap<(String, String, String), String>,
    said: BTreeSet<String>,
}

/// A message without its `(attempt N)`, to tell it once per node and cause.
fn strip_attempt(message: &str) -> String {
    match message.find(" (attempt ") {
        Some(i) => {
            let rest = &message[i + " (attempt ".len()..];
            let after = rest.find(')').map_or("", |j| &rest[j + 1..]);
            format!("{}{after}", &message[..i])
        }
        None => message.to_string(),
    }
}

fn cond<'a>(cu: &'a ClusterUpgrade, t: &str) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    cu.status.as_ref()?.conditions.iter().find(|c| c.type_ == t)
}

fn current(cu: &ClusterUpgrade) -> bool {
    cu.status.as_ref().and_then(|s| s.observed_generation) == cu.metadata.generation
}

fn ready(cu: &ClusterUpgrade) -> bool {
    current(cu) && cond(cu, condition::READY).is_some_and(|c| c.status == "True")
}

/// The fault the demo scripts, and where it stands.
enum Script {
    None,
    PdbBlock {
        pdb: (String, String),
        seen: Option<Instant>,
        relaxed: bool,
    },
    FailingUpgrade {
        node: String,
        fixed: bool,
    },
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let clock = Clock(Instant::now());
    let deadline = Instant::now() + args.timeout;
    let scenario = match &args.scenario {
        Some(p) => Scenario::from_file(p).with_context(|| format!("reading the scenario {}", p.display()))?,
        None => Scenario::small(),
    };
    if !args.speed.is_finite() || args.speed <= 0.0 {
        anyhow::bail!("--speed must be positive");
    }
    let http = http_addr(&args.http_addr)?;
    let live = std::io::stdout().is_terminal() && !args.plain;
    println!(
        "drover demo: starting a simulated cluster (scenario {:?}: {} nodes) at {}x speed",
        scenario.name,
        scenario.node_count(),
        args.speed
    );
    let sim = bounded(
        deadline,
        "the simulated cluster to start",
        Simulation::start_with(
            scenario,
            SimOptions {
                speed: Some(args.speed),
                port: 0,
                settle_timeout: args.timeout.min(Duration::from_secs(120)),
            },
        ),
    )
    .await?
    .context("starting the simulated cluster")?;
    let client = sim.client().context("a client for the simulated cluster")?;
    let result = drive(&args, &clock, deadline, &sim, &client, http, live).await;
    let mut kept = None;
    if result.is_ok() && args.keep {
        let path = match &args.kubeconfig_out {
            Some(p) => p.clone(),
            None => std::env::temp_dir().join(format!("drover-demo-{}.kubeconfig", std::process::id())),
        };
        sim.server()
            .write_kubeconfig(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nThe simulated cluster and drover keep running. Try:");
        println!("  kubectl --kubeconfig {} get cu,nodes", path.display());
        println!(
            "  KUBECONFIG={} drover status {NAME}    # or: kubectl drover status {NAME}",
            path.display()
        );
        println!("Press Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
        kept = Some(path);
    }
    let ok = match result {
        Ok((stop, controller)) => {
            let _ = stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), sim.shutdown()).await;
    if let Some(p) = kept
        && args.kubeconfig_out.is_none()
    {
        let _ = std::fs::remove_file(p);
    }
    ok
}

type Running = (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), drover_controller::Error>>,
);

/// Everything between a running simulation and the summary. Returns the
/// controller (still running) when the rollout completed with every invariant kept.
async fn drive(
    args: &DemoArgs,
    clock: &Clock,
    deadline: Instant,
    sim: &Simulation,
    client: &Client,
    http: Option<SocketAddr>,
    live: bool,
) -> anyhow::Result<Running> {
    install_crd(client, deadline).await?;
    println!("{} installed the ClusterUpgrade CRD", clock.stamp());

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let config = kube::Config::new(sim.server().url().parse().context("the simulated API server's URL")?);
    let run_cfg = RunConfig {
        settings: Settings {
            drain_pass: Duration::from_secs(1),
            busy_requeue: Duration::from_secs(1),
            ..Settings::default()
        },
        lease: None,
        http_addr: http,
        qps: None,
    };
    let controller = tokio::spawn(drover_controller::run(config, run_cfg, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    match http {
        Some(a) => println!(
            "{} drover is running in this process (metrics at http://{a}/metrics)",
            clock.stamp()
        ),
        None => println!("{} drover is running in this process", clock.stamp()),
    }

    let spec = example_spec(client)
        .await
        .context("building the example ClusterUpgrade")?;
    let mut script = match args.fault {
        None => Script::None,
        Some(DemoFault::PdbBlock) => {
            let pdbs = Api::<PodDisruptionBudget>::all(client.clone())
                .list(&ListParams::default())
                .await?
                .items;
            let pick = pdbs
                .iter()
                .find(|p| p.namespace().as_deref() == Some("shop") && p.name_any() == "web")
                .or_else(|| pdbs.first())
                .context("--fault pdb-block needs a scenario with a PodDisruptionBudget")?;
            let (ns, name) = (pick.namespace().unwrap_or_default(), pick.name_any());
            sim.set_fault(Fault::PdbBlocks {
                namespace: ns.clone(),
                name: name.clone(),
            })?;
            println!(
                "{} fault: PodDisruptionBudget {ns}/{name} allows no disruption for now",
                clock.stamp()
            );
            Script::PdbBlock {
                pdb: (ns, name),
                seen: None,
                relaxed: false,
            }
        }
        Some(DemoFault::FailingUpgrade) => {
            let nodes = Api::<Node>::all(client.clone())
                .list(&ListParams::default())
                .await?
                .items;
            let mut workers: Vec<String> = nodes
                .iter()
                .filter(|n| role_of(n) == "worker")
                .map(|n| n.name_any())
                .collect();
            workers.sort();
            let node = workers
                .first()
                .cloned()
                .context("--fault failing-upgrade needs a scenario with a worker")?;
            let component = spec.components.first().map(|c| c.name.clone()).unwrap_or_default();
            sim.set_fault(Fault::UpgradeFails {
                component: component.clone(),
                nodes: vec![node.clone()],
            })?;
            println!("{} fault: the {component} upgrade will fail on {node}", clock.stamp());
            Script::FailingUpgrade { node, fixed: false }
        }
    };

    let api: Api<ClusterUpgrade> = Api::all(client.clone());
    api.create(&PostParams::default(), &ClusterUpgrade::new(NAME, spec.clone()))
        .await
        .context("applying the example ClusterUpgrade")?;
    let target = drover_api::names::target_string(&spec);
    println!("{} applied ClusterUpgrade {NAME}: {target}", clock.stamp());
    let workloads: BTreeSet<String> = spec
        .components
        .iter()
        .filter(|c| c.upgrade.workload.is_some())
        .map(|c| c.name.clone())
        .collect();

    let display = Display::new(live);
    if let Display::Live { header, .. } = &display {
        header.set_message(header_text());
    }
    let mut met = Met::default();
    let mut last_rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut last_line = String::new();
    let nodes_api = Api::<Node>::all(client.clone());
    let pods_api = Api::<Pod>::namespaced(client.clone(), "kube-system");
    let poll = if sim.scenario().node_count() > 200 {
        Duration::from_millis(1000)
    } else {
        Duration::from_millis(250)
    };
    let mut display = display;
    let mut last_cu: Option<ClusterUpgrade> = None;
    let outcome: anyhow::Result<ClusterUpgrade> = loop {
        if Instant::now() >= deadline {
            break Err(anyhow::anyhow!(
                "the rollout did not complete within --timeout {}",
                short(args.timeout)
            ));
        }
        if controller.is_finished() {
            break Err(anyhow::anyhow!("drover stopped unexpectedly"));
        }
        let (all, control_plane) = (
            ListParams::default(),
            ListParams::default().labels("tier=control-plane"),
        );
        let (cu, nodes, cp_pods) =
            match tokio::try_join!(api.get(NAME), nodes_api.list(&all), pods_api.list(&control_plane),) {
                Ok((c, n, p)) => (c, n.items, p.items),
                Err(e) => {
                    display.say(&format!("{} reading the cluster failed (retrying): {e}", clock.stamp()));
                    tokio::time::sleep(poll).await;
                    continue;
                }
            };
        let table = rows(&nodes, &cp_pods);
        let st = cu.status.clone().unwrap_or_default();

        // The progress bar and the table, or plain lines.
        let done_workloads = st
            .components
            .iter()
            .filter(|c| workloads.contains(&c.name) && c.updated >= c.total && c.total > 0)
            .count();
        let total = st.counts.in_scope as u64 + workloads.len() as u64;
        let pos = st.counts.updated as u64 + done_workloads as u64;
        let ready_c = cond(&cu, condition::READY);
        let summary_line = format!(
            "{}/{} nodes updated, stage {}, Ready={} {}",
            st.counts.updated,
            st.counts.in_scope,
            st.stage.as_deref().unwrap_or("-"),
            ready_c.map(|c| c.status.as_str()).unwrap_or("-"),
            ready_c.map(|c| c.reason.as_str()).unwrap_or("-"),
        );
        match &mut display {
            Display::Live {
                mp, bar, rows: bars, ..
            } => {
                bar.set_length(total.max(1));
                bar.set_position(pos);
                bar.set_message(format!(
                    "stage {} · {}",
                    st.stage.as_deref().unwrap_or("-"),
                    ready_c.map(|c| c.reason.as_str()).unwrap_or("waiting for drover")
                ));
                let mut shown: Vec<&Row> = table.iter().collect();
                if shown.len() > MAX_ROWS {
                    shown.sort_by_key(|r| (r.step == "done" || r.step == "waiting", r.name.clone()));
                    shown.truncate(MAX_ROWS);
                    shown.sort_by(|a, b| a.name.cmp(&b.name));
                }
                while bars.len() < shown.len() {
                    let b = mp.add(ProgressBar::new_spinner());
                    b.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
                    bars.push(b);
                }
                for (b, r) in bars.iter().zip(&shown) {
                    b.set_message(row_text(r));
                }
            }
            Display::Plain => {
                if summary_line != last_line && cu.status.is_some() {
                    println!("{} progress: {summary_line}", clock.stamp());
                }
                for r in &table {
                    if last_rows
                        .get(&r.name)
                        .is_none_or(|old| (&old.step, old.cordoned) != (&r.step, r.cordoned))
                    {
                        println!(
                            "{} {}: {}{} (kubelet {}, runtime {}, etcd {}, apiserver {})",
                            clock.stamp(),
                            r.name,
                            r.step,
                            if r.cordoned { " [cordoned]" } else { "" },
                            r.kubelet,
                            r.runtime,
                            r.etcd,
                            r.apiserver
                        );
                    }
                }
            }
        }
        last_line = summary_line;
        last_rows = table.into_iter().map(|r| (r.name.clone(), r)).collect();

        // Blocks and failures met.
        let now = Instant::now();
        for n in &st.nodes {
            if n.state == "Blocked" {
                let e = met
                    .blocks
                    .entry(n.name.clone())
                    .or_insert_with(|| (now, now, n.message.clone()));
                e.1 = now;
            }
            if n.state == "Failed" {
                met.failures
                    .entry(("Failed".into(), n.name.clone(), n.component.clone().unwrap_or_default()))
                    .or_insert_with(|| n.message.clone());
            }
        }
        // What drover is doing about a blocked drain is Reconciling's message.
        if let Some(c) = cond(&cu, condition::RECONCILING)
            && current(&cu)
            && c.reason == reason::DRAIN_BLOCKED
            // Once per node and cause, not once per attempt.
            && met.said.insert(format!(
                "{}{}",
                c.reason,
                strip_attempt(&c.message)
            ))
        {
            display.say(&format!("{} DrainBlocked: {}", clock.stamp(), c.message));
        }
        if let Some(c) = cond(&cu, condition::STALLED)
            && current(&cu)
            && c.status == "True"
            && met.said.insert(format!("stalled {} {}", c.reason, c.message))
        {
            display.say(&format!("{} Stalled/{}: {}", clock.stamp(), c.reason, c.message));
            for n in st.nodes.iter().filter(|n| n.state == "Failed") {
                display.say(&format!(
                    "{}   failed node {}: step {}, component {}, attempts {}: {}",
                    clock.stamp(),
                    n.name,
                    n.step,
                    n.component.as_deref().unwrap_or("-"),
                    n.attempts,
                    n.message
                ));
            }
        }

        // The scripted fault.
        match &mut script {
            Script::PdbBlock { pdb, seen, relaxed } if !*relaxed => {
                let blocked = ready_c.is_some_and(|c| c.reason == reason::DRAIN_BLOCKED);
                if blocked && seen.is_none() {
                    *seen = Some(now);
                }
                if seen.is_some_and(|t| now.duration_since(t) >= Duration::from_secs(4)) {
                    sim.clear_faults();
                    *relaxed = true;
                    display.say(&format!(
                        "{} relaxing PodDisruptionBudget {}/{} (as an operator would): the drain goes on",
                        clock.stamp(),
                        pdb.0,
                        pdb.1
                    ));
                }
            }
            Script::FailingUpgrade { node, fixed } if !*fixed => {
                let stalled = current(&cu)
                    && cond(&cu, condition::STALLED).is_some_and(|c| {
                        c.status == "True"
                            && (c.reason == reason::UPGRADE_JOB_FAILED || c.reason == reason::VERIFICATION_FAILED)
                    });
                if stalled {
                    sim.clear_faults();
                    let mut fixed_spec = serde_json::to_value(&cu.spec)?;
                    fixed_spec["components"][0]["upgrade"]["job"]["image"] =
                        json!("registry.example.com/drover-upgrade:2");
                    api.patch(
                        NAME,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"spec": {"components": fixed_spec["components"]}})),
                    )
                    .await
                    .context("fixing the spec")?;
                    *fixed = true;
                    display.say(&format!(
                        "{} fixing the spec: a working upgrade image (drover-upgrade:2); {node} is retried and the rollout resumes",
                        clock.stamp()
                    ));
                }
            }
            _ => {}
        }

        if ready(&cu) {
            break Ok(cu);
        }
        last_cu = Some(cu);
        tokio::time::sleep(poll).await;
    };
    display.finish();
    drop(display);

    // The summary.
    let report = sim.recorder().report(sim.now());
    let elapsed = clock.0.elapsed();
    let final_cu = match &outcome {
        Ok(cu) => Some(cu.clone()),
        Err(_) => last_cu,
    };
    let st = final_cu.as_ref().and_then(|c| c.status.clone()).unwrap_or_default();
    let workers = last_rows.values().filter(|r| r.role == "worker").count();
    let budget = drover_api::validate::resolve_max_unavailable(&spec.strategy.max_unavailable, workers).unwrap_or(1);
    let max = |role: &str| report.max_unavailable.get(role).copied().unwrap_or(0);
    let mut broken = Vec::new();
    if !report.pdb_violations.is_empty() {
        broken.push(format!("{} PDB violations", report.pdb_violations.len()));
    }
    if !report.cordoned.is_empty() {
        broken.push(format!("nodes left cordoned: {}", report.cordoned.join(", ")));
    }
    if max("control-plane") > 1 {
        broken.push(format!(
            "{} control-plane nodes were unavailable at once",
            max("control-plane")
        ));
    }
    if max("etcd") > 1 {
        broken.push(format!("{} etcd members were unavailable at once", max("etcd")));
    }
    if max("worker") > budget {
        broken.push(format!(
            "{} workers were unavailable at once (budget {budget})",
            max("worker")
        ));
    }

    match &outcome {
        Ok(_) => println!(
            "\n{} Rollout complete: Ready=True (Completed), {}/{} nodes run {target}",
            clock.stamp(),
            st.counts.updated,
            st.counts.in_scope
        ),
        Err(e) => println!("\n{} Rollout NOT complete: {e}", clock.stamp()),
    }
    println!("\nSummary");
    let line = |k: &str, v: String| println!("  {k:<22}{v}");
    line(
        "elapsed",
        format!(
            "{:.1}s (simulated {} at {}x)",
            elapsed.as_secs_f64(),
            short(Duration::from_secs_f64(sim.now().max(0.0))),
            sim.speed()
        ),
    );
    line(
        "nodes upgraded",
        format!("{}/{} in scope", st.counts.updated, st.counts.in_scope),
    );
    line(
        "components",
        st.components
            .iter()
            .map(|c| format!("{} {}/{}", c.name, c.updated, c.total))
            .collect::<Vec<_>>()
            .join(", "),
    );
    if met.blocks.is_empty() {
        line("blocks met", "none".into());
    } else {
        // The longest waits first; on a large cluster, only a few.
        let mut blocks: Vec<_> = met.blocks.iter().collect();
        blocks.sort_by_key(|(node, (first, last, _))| (std::cmp::Reverse(last.duration_since(*first)), *node));
        for (i, (node, (first, last, msg))) in blocks.iter().take(MAX_BLOCKS).enumerate() {
            line(
                if i == 0 { "blocks met" } else { "" },
                format!(
                    "DrainBlocked on {node} for {:.1}s: {}",
                    last.duration_since(*first).as_secs_f64(),
                    clip(msg, 160)
                ),
            );
        }
        if blocks.len() > MAX_BLOCKS {
            line(
                "",
                format!(
                    "… and {} more nodes waited on a PodDisruptionBudget",
                    blocks.len() - MAX_BLOCKS
                ),
            );
        }
    }
    if met.failures.is_empty() {
        line("failures met", "none".into());
    } else {
        for (i, ((_, node, component), msg)) in met.failures.iter().enumerate() {
            line(
                if i == 0 { "failures met" } else { "" },
                format!("{node} ({component}): {}", clip(msg, 160)),
            );
        }
    }
    let roles: Vec<String> = report.max_unavailable.iter().map(|(r, n)| format!("{r} {n}")).collect();
    line(
        "max unavailable",
        format!("{} (worker budget {budget})", roles.join(", ")),
    );
    line("PDB violations", report.pdb_violations.len().to_string());
    line("nodes left cordoned", report.cordoned.len().to_string());

    let controller_running = (stop_tx, controller);
    match outcome {
        Err(e) => {
            let _ = controller_running.0.send(true);
            let last = final_cu
                .as_ref()
                .and_then(|c| cond(c, condition::READY))
                .map(|c| format!("; last Ready condition: {} {}: {}", c.status, c.reason, c.message))
                .unwrap_or_default();
            Err(e.context(format!("drover demo failed{last}")))
        }
        Ok(_) if !broken.is_empty() => {
            let _ = controller_running.0.send(true);
            anyhow::bail!("an invariant was broken: {}", broken.join("; "))
        }
        Ok(_) => Ok(controller_running),
    }
}
