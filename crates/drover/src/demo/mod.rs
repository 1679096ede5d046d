//! `drover demo`: drover's main job on an embedded simulated cluster. Starts
//! a kubesim simulation, installs the CRD, runs the real controller in this
//! process, applies an example ClusterUpgrade (every platform component one
//! version up), shows the rollout live and ends with a summary checked
//! against kubesim's invariant recorder.
//!
//! One job per part: `script` (the timeline: the example ClusterUpgrade,
//! the fault, what the demo does once drover meets it), `poll` (reading the
//! cluster), `render` (the bar, the node table, the messages), `summary`
//! (the final report and the invariant check), and `states` (each status
//! string the demo compares, one helper each). This file starts the
//! simulation and the controller and runs the loop that ties them together.
//!
//! Only with the `demo` feature (on by default): the production image is
//! built without it, so without kubesim.

mod poll;
mod render;
mod script;
mod states;
mod summary;

use std::collections::BTreeSet;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::ValueEnum;
use drover_api::ClusterUpgrade;
use drover_controller::{RunConfig, Settings};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kubesim::sim::{Scenario, SimOptions, Simulation};

use crate::ui::{parse_flag_duration, short};
use poll::{Poller, Snapshot};
use render::{Display, Shown};
use script::{Script, Stage};
use summary::{Ending, Met};

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
        kept = Some(keep(&args, &sim).await?);
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

/// `--keep`: writes the simulated cluster's kubeconfig and waits for Ctrl-C.
async fn keep(args: &DemoArgs, sim: &Simulation) -> anyhow::Result<PathBuf> {
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
    Ok(path)
}

type Running = (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), drover_controller::Error>>,
);

/// Everything between a running simulation and the summary, in order: the
/// CRD, the controller, the scripted fault, the ClusterUpgrade, the rollout
/// followed live, the summary. Returns the controller (still running) when
/// the rollout completed with every invariant kept.
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
    let running = start_controller(sim, http, clock)?;
    let spec = script::example_spec(client)
        .await
        .context("building the example ClusterUpgrade")?;
    let mut script = Script::arm(args.fault, sim, client, &spec, clock).await?;
    let target = script::apply(client, &spec, clock).await?;
    let watch = Watch {
        timeout: args.timeout,
        deadline,
        clock,
        sim,
        client,
        poller: Poller::new(client, sim.scenario().node_count()),
        workloads: spec
            .components
            .iter()
            .filter(|c| c.upgrade.workload.is_some())
            .map(|c| c.name.clone())
            .collect(),
    };
    let mut display = Display::new(live);
    let end = watch.follow(&running.1, &mut display, &mut script).await?;
    display.finish();
    drop(display);
    summary::conclude(sim, clock, &spec, &target, end, running)
}

/// Runs drover's controller in this process against the simulated cluster.
fn start_controller(sim: &Simulation, http: Option<SocketAddr>, clock: &Clock) -> anyhow::Result<Running> {
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
    Ok((stop_tx, controller))
}

/// The rollout followed live: what the loop reads, shows and acts on.
struct Watch<'a> {
    timeout: Duration,
    deadline: Instant,
    clock: &'a Clock,
    sim: &'a Simulation,
    client: &'a Client,
    poller: Poller,
    /// The workload components (the progress bar counts them beside the nodes).
    workloads: BTreeSet<String>,
}

impl Watch<'_> {
    /// Reads the cluster, shows it, notes the problems met and plays the
    /// script, until Ready, the deadline, or the controller stopping.
    async fn follow(
        &self,
        controller: &tokio::task::JoinHandle<Result<(), drover_controller::Error>>,
        display: &mut Display,
        script: &mut Script,
    ) -> anyhow::Result<Ending> {
        let (mut shown, mut met, mut last_cu) = (Shown::default(), Met::default(), None);
        let outcome = loop {
            if Instant::now() >= self.deadline {
                break Err(anyhow::anyhow!(
                    "the rollout did not complete within --timeout {}",
                    short(self.timeout)
                ));
            }
            if controller.is_finished() {
                break Err(anyhow::anyhow!("drover stopped unexpectedly"));
            }
            let Snapshot { cu, rows } = match self.poller.read().await {
                Ok(s) => s,
                Err(e) => {
                    display.say(&format!(
                        "{} reading the cluster failed (retrying): {e}",
                        self.clock.stamp()
                    ));
                    tokio::time::sleep(self.poller.every).await;
                    continue;
                }
            };
            display.show(&cu, rows, &self.workloads, &mut shown, self.clock);
            let now = Instant::now();
            met.note(cu.status.as_ref().map(|s| s.nodes.as_slice()).unwrap_or_default(), now);
            display.announce(&cu, &mut shown, self.clock);
            let stage = Stage {
                sim: self.sim,
                client: self.client,
                display,
                clock: self.clock,
            };
            script.step(&cu, now, &stage).await?;
            if states::ready(&cu) {
                break Ok(cu);
            }
            last_cu = Some(cu);
            tokio::time::sleep(self.poller.every).await;
        };
        Ok(Ending {
            outcome,
            last_cu,
            workers: shown.workers(),
            met,
        })
    }
}
