//! `kubesim agent`: the simulation's upgrade contract as an ordinary client
//! of a real kube-apiserver (with kube-controller-manager, kube-scheduler
//! and KWOK doing the kubelets' work for fake nodes). See docs/simulation.md,
//! "`kubesim agent`: the contract on a real API server".
//!
//! 1. Loads a scenario: namespaces, Nodes (with the KWOK annotation, then
//!    their status), mirror pods, add-ons, workloads, Services and PDBs;
//!    waits until all of it is Running and Ready, then writes the ready file.
//! 2. Runs the upgrade contract until killed: upgrade pods (env
//!    `DROVER_COMPONENT`/`DROVER_VERSION`) that are Running and Ready get
//!    their component upgraded on their node, then end through `pods/status`.
//!    Faults come from the scenario and the ConfigMap `kube-system/kubesim-faults`.
//!
//! It uses none of kubesim's in-memory store or engine: only the scenario
//! format and the simulation's pure helpers (names, images, labels).

pub mod contract;
pub mod faults;
pub mod health;
pub mod load;
pub mod objects;
mod write;

use crate::sim::Scenario;
use std::path::PathBuf;
use std::time::Duration;

/// The `kubesim agent` flags.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub kubeconfig: PathBuf,
    pub scenario: PathBuf,
    /// Overrides the scenario's speed.
    pub speed: Option<f64>,
    /// Written (with one line of text) once the scenario is Running and Ready.
    pub ready_file: Option<PathBuf>,
    pub ready_timeout: Duration,
    /// Serve the health endpoints (`/nodes/{node}/healthz`, `/api/v1/query`) here.
    pub health_listen: Option<std::net::SocketAddr>,
    /// Written with the health endpoints' base URL once they listen.
    pub health_url_file: Option<PathBuf>,
}

/// A kube-rs client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))?;
    kube::Client::try_from(cfg).map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))
}

/// A loaded scenario and its upgrade contract, ready to run.
pub struct Agent {
    pub client: kube::Client,
    pub scenario: Scenario,
    pub speed: f64,
    /// What upgrades of components without a node field or mirror pod
    /// installed (the contract writes, the health endpoints read).
    pub installed: health::Installed,
}

impl Agent {
    pub fn new(client: kube::Client, scenario: Scenario, speed: Option<f64>) -> anyhow::Result<Agent> {
        let speed = speed.unwrap_or(scenario.speed);
        if !(speed.is_finite() && speed > 0.0) {
            anyhow::bail!("speed must be positive, got {speed}");
        }
        Ok(Agent {
            client,
            scenario,
            speed,
            installed: health::Installed::default(),
        })
    }

    pub fn plan(&self) -> anyhow::Result<objects::Plan> {
        objects::Plan::build(&self.scenario, &crate::meta::now()).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Creates the scenario's objects (leaving existing ones alone).
    pub async fn load(&self, plan: &objects::Plan) -> anyhow::Result<()> {
        load::load(&self.client, plan).await
    }

    /// The upgrade contract (and the fault ConfigMap), until the process
    /// ends. Returns the task and the fault list it follows.
    pub fn spawn_contract(&self) -> (tokio::task::JoinHandle<()>, faults::FaultState) {
        let faults = faults::FaultState::new(self.scenario.faults.clone());
        let contract = contract::Contract {
            client: self.client.clone(),
            timing: self.scenario.timing.clone(),
            speed: self.speed,
            faults: faults.clone(),
            installed: self.installed.clone(),
        };
        let client = self.client.clone();
        let follow = faults.clone();
        let task = tokio::spawn(async move {
            tokio::join!(follow.follow(client), contract.follow());
        });
        (task, faults)
    }

    /// The health endpoints on `listen` (port 0: a free one), following
    /// `faults` (from [`Agent::spawn_contract`]): the watches and pod
    /// reconciler's task, and the listener (closed when dropped).
    pub async fn spawn_health(
        &self,
        faults: &faults::FaultState,
        listen: std::net::SocketAddr,
    ) -> anyhow::Result<(tokio::task::JoinHandle<()>, crate::sim::health::HealthServer)> {
        health::spawn(self.client.clone(), faults.clone(), self.installed.clone(), listen).await
    }
}

/// `kubesim agent`: load, wait until ready, write the ready file, then run
/// the contract until SIGTERM or Ctrl-C (both exit 0).
pub async fn run(opts: AgentOptions) -> anyhow::Result<()> {
    let scenario = Scenario::from_file(&opts.scenario)?;
    let client = client_from_kubeconfig(&opts.kubeconfig).await?;
    let agent = Agent::new(client, scenario, opts.speed)?;
    let work = async {
        let plan = agent.plan()?;
        agent.load(&plan).await?;
        tracing::info!(
            "loaded scenario {:?}: {} nodes, {} objects; waiting for it to be ready",
            agent.scenario.name,
            plan.nodes.len(),
            plan.objects.len()
        );
        // The contract runs from now on, so a restarted agent finishes the
        // upgrades in flight even while it waits.
        let (contract, faults) = agent.spawn_contract();
        let _health = match opts.health_listen {
            Some(listen) => {
                let (task, server) = agent.spawn_health(&faults, listen).await?;
                if let Some(path) = &opts.health_url_file {
                    std::fs::write(path, format!("{}\n", server.url()))
                        .map_err(|e| anyhow::anyhow!("writing health URL file {}: {e}", path.display()))?;
                }
                eprintln!(
                    "kubesim agent: health endpoints at {} (/nodes/<node>/healthz, /api/v1/query)",
                    server.url()
                );
                Some((task, server))
            }
            None => None,
        };
        load::wait_ready(&agent.client, &plan, opts.ready_timeout).await?;
        if let Some(path) = &opts.ready_file {
            std::fs::write(path, format!("ready {}\n", agent.scenario.name))
                .map_err(|e| anyhow::anyhow!("writing ready file {}: {e}", path.display()))?;
        }
        eprintln!(
            "kubesim agent: scenario {:?} ({} nodes) is ready; running the upgrade contract at speed {}",
            agent.scenario.name,
            plan.nodes.len(),
            agent.speed
        );
        contract
            .await
            .map_err(|e| anyhow::anyhow!("the upgrade contract stopped: {e}"))?;
        anyhow::Ok(())
    };
    tokio::select! {
        r = work => r,
        s = terminated() => {
            s?;
            tracing::info!("terminating");
            Ok(())
        }
    }
}

async fn terminated() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => Ok(()),
            r = tokio::signal::ctrl_c() => Ok(r?),
        }
    }
    #[cfg(not(unix))]
    {
        Ok(tokio::signal::ctrl_c().await?)
    }
}

#[cfg(test)]
mod e2e;
