//! The simulated cluster on top of the API server: nodes and their
//! kubelets, a scheduler, the workload, Job and disruption controllers, the
//! upgrade contract drover's Jobs rely on, faults, a speed factor and an
//! invariant recorder. See `docs/simulation.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kubesim::sim::SimError> {
//! use kubesim::sim::{Scenario, Simulation};
//! let sim = Simulation::start(Scenario::small(), 600.0).await?;
//! let client = sim.client()?;
//! // ... drive the cluster through `client` or kubectl ...
//! let report = sim.recorder().report(sim.now());
//! assert!(report.pdb_violations.is_empty());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod bad_nodes;
pub mod bench;
pub mod clock;
mod cluster;
mod disruption;
mod engine;
pub mod health;
mod http;
mod jobs;
pub(crate) mod kubelet;
pub mod objects;
pub mod promql;
pub mod recorder;
pub mod scenario;
mod scheduler;
pub(crate) mod upgrade;
pub mod view;
mod workloads;

pub use clock::Clock;
pub use engine::Status;
pub use recorder::{NodeEvent, PdbViolation, Recorder, Report, VersionChange, record_regressions};
pub use scenario::{
    AddonSpec, Addons, BadEffect, ComponentTiming, Fault, NodePool, PdbSpec, Role, Scenario, ScenarioBuilder, Timing,
    Versions, Workload, WorkloadKind,
};
pub use upgrade::node_info_change;

use crate::error::{ApiError, ServerError};
use crate::{ApiServer, Config};
use engine::{Command, Engine};
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};

/// Errors of the simulation layer.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid scenario: {0}")]
    Scenario(String),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{0}")]
    Rejected(String),
    #[error("the simulation has stopped")]
    Stopped,
}

/// State shared by the engine, the handle and the HTTP endpoints.
pub(crate) struct Shared {
    pub clock: Clock,
    pub faults: RwLock<Vec<Fault>>,
    pub recorder: Recorder,
    /// Wakes the engine when the speed changes (its timer waits rescale).
    pub wake: Notify,
}

/// How to start a simulation.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Overrides the scenario's speed.
    pub speed: Option<f64>,
    /// API server port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// How long `start` waits for the initial cluster to be Running and Ready.
    pub settle_timeout: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            speed: None,
            port: 0,
            settle_timeout: Duration::from_secs(300),
        }
    }
}

/// A cheap handle to a running simulation (what the HTTP endpoints use).
#[derive(Clone)]
pub struct SimHandle {
    cmds: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl SimHandle {
    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    /// Simulated seconds since the start.
    pub fn now(&self) -> f64 {
        self.shared.clock.now()
    }

    pub fn report(&self) -> Report {
        self.shared.recorder.report(self.now())
    }

    pub fn speed(&self) -> f64 {
        self.shared.clock.speed()
    }

    /// Changes the speed; waits already in flight are rescaled too.
    pub fn set_speed(&self, speed: f64) {
        self.shared.clock.set_speed(speed);
        self.shared.wake.notify_one();
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.shared.faults.read().clone()
    }

    /// Adds a fault. `ApiErrors` are the API server's: set them with
    /// `Simulation::set_fault` or `/admin/faults`.
    pub fn set_fault(&self, f: Fault) -> Result<(), SimError> {
        if f.api_rule().is_some() {
            return Err(SimError::Rejected("API error faults are set with /admin/faults".into()));
        }
        self.shared.faults.write().push(f);
        let _ = self.cmds.send(Command::FaultsChanged);
        Ok(())
    }

    /// Removes every simulation fault.
    pub fn clear_faults(&self) {
        self.shared.faults.write().clear();
        let _ = self.cmds.send(Command::FaultsChanged);
    }

    /// Makes a node NotReady (its kubelet stops; pods stay, unready) or Ready again.
    pub async fn set_node_ready(&self, node: &str, ready: bool) -> Result<(), SimError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::SetNodeReady(node.to_string(), ready, tx))
            .map_err(|_| SimError::Stopped)?;
        rx.await.map_err(|_| SimError::Stopped)?.map_err(SimError::Rejected)
    }

    pub async fn status(&self) -> Result<Status, SimError> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Command::Status(tx)).map_err(|_| SimError::Stopped)?;
        rx.await.map_err(|_| SimError::Stopped)
    }

    /// What the health endpoints answer: each node's readiness and bad
    /// versions, and the firing alerts.
    pub async fn health(&self) -> Result<health::HealthState, SimError> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Command::Health(tx)).map_err(|_| SimError::Stopped)?;
        rx.await.map_err(|_| SimError::Stopped)
    }

    /// Waits until every pod is bound, Running and Ready and every workload
    /// has the pods it wants.
    pub async fn wait_settled(&self, timeout: Duration) -> Result<Status, SimError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.status().await?;
            if s.pods_not_ready == 0 && s.workloads_unsatisfied == 0 {
                return Ok(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SimError::Timeout(format!("cluster not settled: {s:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A running simulated cluster: an API server plus everything that makes
/// it behave like a cluster.
pub struct Simulation {
    server: ApiServer,
    handle: SimHandle,
    engine: tokio::task::JoinHandle<()>,
    scenario: Scenario,
    health: health::HealthServer,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("scenario", &self.scenario.name)
            .field("url", &self.server.url())
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// Starts `scenario` at `speed` and waits until its cluster is up.
    pub async fn start(scenario: Scenario, speed: f64) -> Result<Simulation, SimError> {
        Self::start_with(
            scenario,
            SimOptions {
                speed: Some(speed),
                ..Default::default()
            },
        )
        .await
    }

    pub async fn start_with(scenario: Scenario, opts: SimOptions) -> Result<Simulation, SimError> {
        scenario.validate()?;
        let speed = opts.speed.unwrap_or(scenario.speed);
        let shared = Arc::new(Shared {
            clock: Clock::new(speed),
            faults: RwLock::new(scenario.faults.clone()),
            recorder: Recorder::default(),
            wake: Notify::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = SimHandle {
            cmds: tx,
            shared: shared.clone(),
        };
        let mut config = Config {
            port: opts.port,
            ..Default::default()
        };
        // Pods stay terminating until their kubelet confirms, as on a real cluster.
        config.store.graceful_pod_deletion = true;
        config.routes = Some(http::routes(handle.clone()));
        let server = ApiServer::start_with(config).await?;
        for f in &scenario.faults {
            if let Some(rule) = f.api_rule() {
                server.faults().add(rule);
            }
        }
        let index = cluster::create(server.store(), &scenario)?;
        let heartbeat = scenario
            .timing
            .heartbeat_seconds
            .unwrap_or(if scenario.node_count() <= 200 { 40.0 } else { 0.0 });
        let engine = Engine::new(
            server.store().clone(),
            shared,
            scenario.timing.clone(),
            rx,
            index,
            heartbeat,
        )?;
        let engine = tokio::spawn(engine.run());
        let h = handle.clone();
        let source: health::Source = Arc::new(move || {
            let h = h.clone();
            Box::pin(async move { h.health().await.map_err(|e| e.to_string()) })
        });
        let health = health::serve(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), source)
            .await
            .map_err(ServerError::from)?;
        let sim = Simulation {
            server,
            handle,
            engine,
            scenario,
            health,
        };
        let settled = sim.handle.wait_settled(opts.settle_timeout).await;
        let _ = sim.handle.cmds.send(Command::EndBootstrap);
        if let Err(e) = settled {
            tracing::warn!(error = %e, "kubesim: the initial cluster did not settle");
        }
        sim.recorder().reset();
        Ok(sim)
    }

    pub fn server(&self) -> &ApiServer {
        &self.server
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    pub fn handle(&self) -> &SimHandle {
        &self.handle
    }

    /// The health endpoints' base URL (`http://127.0.0.1:PORT`, plain HTTP,
    /// no trailing slash): `/nodes/{node}/healthz` and `/api/v1/query`.
    pub fn health_url(&self) -> String {
        self.health.url()
    }

    /// A kube-rs client for the simulated cluster.
    pub fn client(&self) -> Result<kube::Client, SimError> {
        Ok(self.server.client()?)
    }

    pub fn store(&self) -> &crate::Store {
        self.server.store()
    }

    pub fn recorder(&self) -> &Recorder {
        self.handle.recorder()
    }

    pub fn now(&self) -> f64 {
        self.handle.now()
    }

    pub fn speed(&self) -> f64 {
        self.handle.speed()
    }

    pub fn set_speed(&self, speed: f64) {
        self.handle.set_speed(speed)
    }

    /// Adds a fault at run time. `ApiErrors` become API server fault rules.
    pub fn set_fault(&self, f: Fault) -> Result<(), SimError> {
        if let Some(rule) = f.api_rule() {
            self.server.faults().add(rule);
            self.handle.shared.faults.write().push(f);
            let _ = self.handle.cmds.send(Command::FaultsChanged);
            return Ok(());
        }
        self.handle.set_fault(f)
    }

    pub fn clear_faults(&self) {
        self.server.faults().clear();
        self.handle.clear_faults();
    }

    pub async fn set_node_ready(&self, node: &str, ready: bool) -> Result<(), SimError> {
        self.handle.set_node_ready(node, ready).await
    }

    pub async fn status(&self) -> Result<Status, SimError> {
        self.handle.status().await
    }

    pub async fn wait_settled(&self, timeout: Duration) -> Result<Status, SimError> {
        self.handle.wait_settled(timeout).await
    }

    /// Stops the controllers, then the API server.
    pub async fn shutdown(self) {
        drop(self.health);
        self.engine.abort();
        let _ = self.engine.await;
        self.server.shutdown().await;
    }
}
