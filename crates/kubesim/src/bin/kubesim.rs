//! `kubesim serve --port N --kubeconfig PATH`: run the in-memory API server.
//! With `--scenario FILE [--speed F]` it runs a simulated cluster on it.
//!
//! `kubesim agent --kubeconfig PATH --scenario FILE [--speed F] [--ready-file PATH]
//! [--health-listen ADDR [--health-url-file PATH]]`: load the scenario into a
//! real API server and run the upgrade contract there (and the health endpoints).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kubesim", about = "An in-memory Kubernetes API server for tests and demos")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Kubernetes API on 127.0.0.1 over plain HTTP, without authentication.
    Serve {
        /// Port to listen on (0: any free port).
        #[arg(long, default_value_t = 6443)]
        port: u16,
        /// Where to write a kubeconfig for this server.
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
        /// Keep bound pods terminating after a graceful delete until deleted with grace 0.
        #[arg(long)]
        graceful_pod_deletion: bool,
        /// Run the simulated cluster of this scenario (YAML, see docs/simulation.md).
        #[arg(long)]
        scenario: Option<std::path::PathBuf>,
        /// Simulation speed factor (60: a simulated minute per second); default: the scenario's.
        #[arg(long, requires = "scenario")]
        speed: Option<f64>,
    },
    /// Load a scenario into a real API server (nodes for KWOK) and run the upgrade contract there.
    Agent {
        /// Kubeconfig of the real API server (its current context).
        #[arg(long)]
        kubeconfig: std::path::PathBuf,
        /// The scenario to load (YAML, see docs/simulation.md).
        #[arg(long)]
        scenario: std::path::PathBuf,
        /// Speed factor (simulated seconds per real second); default: the scenario's.
        #[arg(long)]
        speed: Option<f64>,
        /// Written once the scenario's cluster is Running and Ready.
        #[arg(long)]
        ready_file: Option<std::path::PathBuf>,
        /// How long to wait for the cluster to be ready (seconds) before giving up.
        #[arg(long, default_value_t = 300)]
        ready_timeout: u64,
        /// Serve the health endpoints over plain HTTP here (`127.0.0.1:0`: a free port):
        /// `/nodes/<node>/healthz` and a Prometheus-compatible `/api/v1/query`.
        #[arg(long)]
        health_listen: Option<std::net::SocketAddr>,
        /// Written with the health endpoints' base URL once they listen.
        #[arg(long, requires = "health_listen")]
        health_url_file: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The agent logs what it does (info) unless RUST_LOG says otherwise.
    let default = match cli.command {
        Command::Agent { .. } => "kubesim=info",
        Command::Serve { .. } => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Agent {
            kubeconfig,
            scenario,
            speed,
            ready_file,
            ready_timeout,
            health_listen,
            health_url_file,
        } => {
            kubesim::agent::run(kubesim::agent::AgentOptions {
                kubeconfig,
                scenario,
                speed,
                ready_file,
                ready_timeout: std::time::Duration::from_secs(ready_timeout),
                health_listen,
                health_url_file,
            })
            .await?;
        }
        Command::Serve {
            port,
            kubeconfig,
            graceful_pod_deletion,
            scenario: Some(file),
            speed,
        } => {
            let scenario = kubesim::sim::Scenario::from_file(&file)?;
            let opts = kubesim::sim::SimOptions {
                speed,
                port,
                ..Default::default()
            };
            let _ = graceful_pod_deletion; // a simulation always deletes pods gracefully
            let sim = kubesim::sim::Simulation::start_with(scenario, opts).await?;
            // The kubeconfig appears once the cluster is up: callers may wait for it.
            if let Some(path) = &kubeconfig {
                sim.server().write_kubeconfig(path)?;
                eprintln!("kubesim: wrote kubeconfig to {}", path.display());
            }
            eprintln!(
                "kubesim: serving scenario {:?} ({} nodes) on {} at speed {}; health endpoints at {}",
                sim.scenario().name,
                sim.scenario().node_count(),
                sim.server().url(),
                sim.speed(),
                sim.health_url()
            );
            tokio::signal::ctrl_c().await?;
            sim.shutdown().await;
        }
        Command::Serve {
            port,
            kubeconfig,
            graceful_pod_deletion,
            scenario: None,
            speed: _,
        } => {
            let mut config = kubesim::Config {
                port,
                ..Default::default()
            };
            config.store.graceful_pod_deletion = graceful_pod_deletion;
            let server = kubesim::ApiServer::start_with(config).await?;
            if let Some(path) = &kubeconfig {
                server.write_kubeconfig(path)?;
                eprintln!("kubesim: wrote kubeconfig to {}", path.display());
            }
            eprintln!("kubesim: serving on {}", server.url());
            tokio::signal::ctrl_c().await?;
            server.shutdown().await;
        }
    }
    Ok(())
}
