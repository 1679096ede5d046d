//! The drover binary.

#[cfg(feature = "demo")]
mod demo;
mod plan_cmd;
mod status;
mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use drover_api::images::AllowedImages;
use drover_controller::{LeaseConfig, RunConfig, Settings};

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "Declarative, crash-safe rolling upgrades of a Kubernetes cluster's platform components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Print the ClusterUpgrade CustomResourceDefinition (YAML), or write it to a file.
    Crd {
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Run the controller against the cluster of the current kubeconfig (or in-cluster config).
    Run(RunArgs),
    /// A rollout on an embedded simulated cluster, shown live: drover's main job, no cluster needed.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Not in this build: drover was built without the demo feature (the simulator).
    #[cfg(not(feature = "demo"))]
    #[command(hide = true, disable_help_flag = true)]
    Demo {
        /// Whatever follows `demo`: the answer is the same.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// A readable summary of a ClusterUpgrade (or all of them); also `kubectl drover status`.
    Status(status::StatusArgs),
    /// Dry run: what a ClusterUpgrade manifest would do on the current cluster, changing nothing.
    Plan(plan_cmd::PlanArgs),
    /// Approve a ClusterUpgrade's canary: set spec.approvedCanary to the hash status.canary shows; also `kubectl drover approve`.
    Approve(status::ApproveArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// A kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster config).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace for upgrade Jobs and the leader Lease.
    #[arg(long, env = "DROVER_NAMESPACE", default_value = "kube-system")]
    namespace: String,
    /// Elect a leader through a Lease (run two replicas with this on).
    #[arg(long, env = "DROVER_LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    #[arg(long, default_value = "drover-leader")]
    lease_name: String,
    /// This replica's identity in the Lease (default: POD_NAME, else hostname and process id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease holds without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Seconds one Lease renewal may take before it counts as failed (default: a third of --lease-duration).
    #[arg(long)]
    lease_renew_deadline: Option<f64>,
    /// Seconds before its Lease can expire that the leader stops acting (default: a fifth of --lease-duration).
    #[arg(long)]
    lease_margin: Option<f64>,
    /// The node drover runs on; it is upgraded last among workers.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Address for /metrics, /healthz and /readyz ("off" to disable).
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: String,
    /// Requests per second to the API server (0, the default: no
    /// client-side limit; the server's flow control paces drover, and a 429
    /// is retried after its Retry-After).
    #[arg(long, default_value_t = 0)]
    kube_qps: u64,
    /// Node steps performed at once (keep it at least the largest batch).
    #[arg(long, default_value_t = 1000)]
    step_concurrency: usize,
    /// Longest a single drain pass runs before progress is written.
    #[arg(long, default_value_t = 5)]
    drain_pass_seconds: u64,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// The only images a ClusterUpgrade may run (upgrade, backup and reboot Jobs), as
    /// repository patterns separated by commas: `registry.example.com/upgrade`
    /// (that repository, any tag or digest) or `registry.example.com/upgrades/*`
    /// (every repository below it). A spec naming another image is refused
    /// (ImageNotAllowed). Without it every image is allowed: whoever may create
    /// a ClusterUpgrade is root on every node.
    #[arg(long, env = "DROVER_ALLOWED_IMAGES", value_name = "PATTERNS", value_parser = AllowedImages::parse)]
    allowed_images: Option<AllowedImages>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,tower=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// What `drover demo` says when the binary was built without the demo
/// feature (as the production image is: no simulator in it).
#[cfg(not(feature = "demo"))]
const NO_DEMO: &str = "this drover was built without the demo feature (the simulator); build with --features demo, or run `cargo run -p drover -- demo`";

/// Warnings and errors only (RUST_LOG overrides): the demo's own output is the show.
#[cfg(feature = "demo")]
fn init_quiet_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn kube_config(path: Option<PathBuf>) -> anyhow::Result<kube::Config> {
    Ok(match path {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(&p)
                .with_context(|| format!("reading kubeconfig {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    match &args.allowed_images {
        Some(list) => tracing::info!(allowed_images = %list, "ClusterUpgrades may run only these images"),
        None => tracing::warn!(
            "no --allowed-images: a ClusterUpgrade may run any image, privileged and with the host's root, on every node"
        ),
    }
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "drover".into());
        format!("{host}-{}", std::process::id())
    });
    let http_addr = match args.http_addr.as_str() {
        "off" | "" => None,
        a => Some(
            a.parse::<SocketAddr>()
                .with_context(|| format!("--http-addr {a:?} is not an address such as 0.0.0.0:8080"))?,
        ),
    };
    let lease_duration = Duration::from_secs(args.lease_duration.max(2));
    let seconds = |flag: &str, v: Option<f64>| -> anyhow::Result<Option<Duration>> {
        v.map(|s| {
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| format!("{flag} {s} is not a positive number of seconds"))
        })
        .transpose()
    };
    let mut lease = LeaseConfig::new(&args.namespace, &args.lease_name, &identity, lease_duration);
    if let Some(d) = seconds("--lease-renew-deadline", args.lease_renew_deadline)? {
        lease.renew_deadline = d;
    }
    if let Some(d) = seconds("--lease-margin", args.lease_margin)? {
        lease.margin = d;
    }
    if args.leader_elect {
        lease.check().map_err(anyhow::Error::msg)?;
    }
    let lease = Some(lease);
    // Flags are checked before any cluster is read.
    let config = kube_config(args.kubeconfig).await?;
    let cfg = RunConfig {
        settings: Settings {
            self_node: args.node_name,
            job_namespace: args.namespace.clone(),
            drain_pass: Duration::from_secs(args.drain_pass_seconds.max(1)),
            step_concurrency: args.step_concurrency.max(1),
            allowed_images: args.allowed_images,
            ..Settings::default()
        },
        lease: lease.filter(|_| args.leader_elect),
        http_addr,
        qps: (args.kube_qps > 0).then_some(args.kube_qps),
    };
    drover_controller::run(config, cfg, shutdown_signal()).await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { output } => {
            let yaml = drover_api::crd::crd_yaml();
            match output {
                Some(path) => std::fs::write(&path, yaml)?,
                None => print!("{yaml}"),
            }
            Ok(())
        }
        Command::Run(args) => tokio::runtime::Runtime::new()?.block_on(run(args)),
        #[cfg(feature = "demo")]
        Command::Demo(args) => {
            init_quiet_logging();
            tokio::runtime::Runtime::new()?.block_on(demo::run(args))
        }
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => {
            // A usage error, as clap reports an unknown subcommand (exit 2).
            eprintln!("error: {NO_DEMO}");
            std::process::exit(2)
        }
        Command::Status(args) => tokio::runtime::Runtime::new()?.block_on(status::run(args)),
        Command::Approve(args) => tokio::runtime::Runtime::new()?.block_on(status::approve(args)),
        Command::Plan(args) => {
            let valid = tokio::runtime::Runtime::new()?.block_on(plan_cmd::run(args))?;
            if !valid {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[cfg(feature = "demo")]
    #[test]
    fn the_demo_is_listed_and_parses() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("\n  demo "), "{help}");
        let cli = Cli::try_parse_from(["drover", "demo", "--fault", "pdb-block"]).unwrap();
        assert!(matches!(cli.command, Command::Demo(_)));
    }

    /// `cargo test -p drover --no-default-features --bin drover` (.ci/run).
    #[cfg(not(feature = "demo"))]
    #[test]
    fn without_the_demo_feature_demo_is_not_listed_and_explains_itself() {
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains("demo"), "{help}");
        assert!(help.contains("\n  run "), "{help}");
        // Whatever the user adds, the answer is the explanation, not a flag error.
        for args in [&["demo"][..], &["demo", "--fault", "pdb-block"], &["demo", "--help"]] {
            let cli = Cli::try_parse_from(std::iter::once("drover").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(matches!(cli.command, Command::Demo { .. }), "{args:?}");
        }
        assert!(NO_DEMO.contains("built without the demo feature (the simulator)"));
        assert!(NO_DEMO.contains("--features demo"));
    }
}
