//! drover's controller: watches ClusterUpgrades, Nodes and drover's Jobs,
//! and for each ClusterUpgrade runs observe → plan → write status → act.
//! With leader election, one replica acts; metrics and health are served
//! over HTTP.

pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod inflight;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod preflight;
pub mod reconcile;
#[cfg(test)]
mod tests;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use drover_api::ClusterUpgrade;
use drover_nodeops::KubeNodeOps;
use futures::{Future, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{PredicateConfig, WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

pub use error::{Error, Result};
pub use leader::LeaseConfig;
pub use metrics::Metrics;
pub use reconcile::Settings;

/// How `drover run` runs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub settings: Settings,
    /// Leader election; None runs without it (a single replica).
    pub lease: Option<LeaseConfig>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_addr: Option<SocketAddr>,
    /// Requests per second to the API server (None: unlimited).
    pub qps: Option<u64>,
}

/// Build the two clients drover uses: a rate-limited one, and one for
/// evictions that never retries on its own.
pub fn clients(config: kube::Config, qps: Option<u64>) -> Result<(Client, Client)> {
    clients_as(config, qps, None)
}

/// The `User-Agent` drover's requests carry: its version and, with leader
/// election, the replica's identity (audit logs and API fault rules tell
/// replicas apart by it).
fn user_agent(identity: Option<&str>) -> String {
    let v = env!("CARGO_PKG_VERSION");
    match identity {
        Some(id) => format!("drover/{v} ({id})"),
        None => format!("drover/{v}"),
    }
}

fn with_user_agent(mut config: kube::Config, identity: Option<&str>) -> kube::Config {
    if let Ok(v) = http::HeaderValue::from_str(&user_agent(identity)) {
        config.headers.retain(|(k, _)| k != http::header::USER_AGENT);
        config.headers.push((http::header::USER_AGENT, v));
    }
    config
}

/// The client for Lease requests alone: its own connections, no rate limit
/// shared with the other requests, a connect timeout within the renewal's
/// deadline (each renewal is bounded as a whole by `renew_deadline`).
pub fn lease_client(config: kube::Config, lease: &LeaseConfig) -> Result<Client> {
    let mut config = with_user_agent(config, Some(&lease.identity));
    config.connect_timeout = Some(lease.renew_deadline);
    config.read_timeout = Some(lease.renew_deadline);
    config.write_timeout = Some(lease.renew_deadline);
    Ok(kube::client::ClientBuilder::try_from(config)?.build())
}

fn clients_as(config: kube::Config, qps: Option<u64>, identity: Option<&str>) -> Result<(Client, Client)> {
    let config = with_user_agent(config, identity);
    let build = |config: kube::Config| -> Result<Client> {
        let builder = kube::client::ClientBuilder::try_from(config)?;
        Ok(match qps {
            Some(n) if n > 0 => builder
                .with_layer(&tower::limit::RateLimitLayer::new(n, Duration::from_secs(1)))
                .build(),
            _ => builder.build(),
        })
    };
    let client = build(config.clone())?;
    let mut no_retry = config;
    no_retry.default_retry = false;
    Ok((client, build(no_retry)?))
}

/// A node change worth a new pass: labels, annotations, schedulability,
/// readiness and versions, not heartbeats.
fn node_fingerprint(n: &Node) -> u64 {
    let mut h = DefaultHasher::new();
    n.labels().hash(&mut h);
    n.annotations().hash(&mut h);
    n.spec.as_ref().and_then(|s| s.unschedulable).hash(&mut h);
    if let Some(st) = &n.status {
        let ready = st
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status.clone());
        ready.hash(&mut h);
        if let Some(i) = &st.node_info {
            (
                &i.kubelet_version,
                &i.kube_proxy_version,
                &i.container_runtime_version,
                &i.os_image,
            )
                .hash(&mut h);
        }
    }
    h.finish()
}

#[derive(Clone)]
struct Http {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

async fn serve_http(addr: SocketAddr, metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Http>| async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.metrics.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<Http>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
                }
            }),
        )
        .with_state(Http { metrics, ready });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app).await
}

/// Run the controller until `shutdown` resolves (Ok) or leadership is lost (Err).
pub async fn run(
    kube_config: kube::Config,
    cfg: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let identity = cfg.lease.as_ref().map(|l| l.identity.clone());
    let (client, evict_client) = clients_as(kube_config.clone(), cfg.qps, identity.as_deref())?;
    // The controlPlane health check trusts the CA drover's own kubeconfig does.
    let cluster_ca = drover_nodeops::ClusterCa::from_config(&kube_config);
    // A cluster drover cannot serve is refused before anything is served or touched.
    let server = preflight::check(&client).await.map_err(Error::Other)?;
    tracing::info!(version = %server.git_version, "the API server serves everything drover needs");
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = cfg.http_addr {
        let (m, r) = (metrics.clone(), ready.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_http(addr, m, r).await {
                tracing::error!(error = %e, "the metrics and health server stopped");
            }
        });
    }

    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let (leading_tx, mut leading) = watch::channel(None);
    let lease = match &cfg.lease {
        Some(l) => {
            l.check().map_err(Error::Other)?;
            Some((
                Api::<Lease>::namespaced(lease_client(kube_config, l)?, &l.namespace),
                l.clone(),
            ))
        }
        None => None,
    };
    let fence = match lease.clone() {
        None => leader::Fence::default(),
        Some((api, l)) => {
            // A standby is healthy and ready: it serves, and takes over when needed.
            ready.store(true, Ordering::Relaxed);
            tokio::spawn(leader::run(api, l.clone(), leading_tx));
            tracing::info!("waiting to become the leader");
            let term = tokio::select! {
                lead = leading.wait_for(|l| l.is_some()) => match lead {
                    Ok(lead) => lead.map(|l| l.term).unwrap_or_default(),
                    Err(_) => return Err(Error::Other("leader election stopped".into())),
                },
                _ = shutdown.clone() => return Ok(()),
            };
            tracing::info!(term, identity = %l.identity, "leading");
            leader::Fence::new(
                drover_plan::Writer {
                    identity: l.identity.clone(),
                    term,
                },
                leading.clone(),
            )
        }
    };
    metrics.leader.set(1);

    let (node_store, node_writer) = reflector::store::<Node>();
    // A node change worth a new pass (not a heartbeat), by kube's predicate
    // filter: its cache forgets nodes not seen for an hour.
    let node_changes = reflector(
        node_writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(|n: &Node| Some(node_fingerprint(n)), PredicateConfig::default())
    .filter_map(|n| futures::future::ready(n.ok().map(|_| ())));

    // No debounce: kube's debounce restarts with every change, so the
    // steady stream of node changes of a large rollout would hold passes
    // back; Settings::pass_every spaces them instead.
    let controller = Controller::new(Api::<ClusterUpgrade>::all(client.clone()), watcher::Config::default());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "drover".into(),
            instance: cfg.lease.as_ref().map(|l| l.identity.clone()),
        },
    );
    // The control plane's static pods (their versions are read every pass), watch-fed.
    let control_plane_pods = {
        let (store, writer) = reflector::store::<Pod>();
        let cfg = watcher::Config::default().labels(&observe::cached_selector());
        let watch = reflector(
            writer,
            watcher(Api::<Pod>::namespaced(client.clone(), "kube-system"), cfg),
        )
        .default_backoff();
        let synced = run_store(watch, &store, shutdown.clone());
        observe::ControlPlanePods {
            store: Some(store),
            synced,
        }
    };
    // drover's own Jobs, watch-fed, so a step reads its Job without a
    // request; what a step never reads is dropped to keep the store small.
    let jobs = {
        let (store, writer) = reflector::store::<Job>();
        let cfg = watcher::Config::default().labels(JOB_SELECTOR);
        let watch = reflector(
            writer,
            watcher(Api::<Job>::all(client.clone()), cfg).modify(|j: &mut Job| {
                j.metadata.managed_fields = None;
                if let Some(spec) = j.spec.as_mut() {
                    spec.template = Default::default();
                }
            }),
        )
        .default_backoff();
        let synced = run_store(watch, &store, shutdown.clone());
        (store, synced)
    };
    let caches = drover_nodeops::Caches {
        nodes: Some(node_store.clone()),
        jobs: Some(jobs.0),
        jobs_synced: jobs.1,
    };
    let ctx = Arc::new(reconcile::Context {
        control_plane_pods,
        client: client.clone(),
        ops: KubeNodeOps::new(client.clone(), evict_client, cfg.settings.job_namespace.clone())
            .with_cluster_ca(cluster_ca)
            .with_caches(caches),
        nodes: node_store.clone(),
        upgrades: controller.store(),
        metrics: metrics.clone(),
        recorder,
        settings: cfg.settings.clone(),
        inflight: inflight::Inflight::new(cfg.settings.step_concurrency),
        fence: fence.clone(),
        passes: Default::default(),
    });
    {
        let ready = ready.clone();
        tokio::spawn(async move {
            let _ = node_store.wait_until_ready().await;
            ready.store(true, Ordering::Relaxed);
        });
    }

    let inflight = ctx.inflight.clone();
    let running = controller
        .owns(
            Api::<Job>::all(client.clone()),
            watcher::Config::default().labels(JOB_SELECTOR),
        )
        .reconcile_all_on(node_changes)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    // Stop acting the moment leadership ends: the pass in hand is dropped
    // with the controller, and every node step is aborted (each is also
    // guarded by the fence itself, so none outlives the deadline).
    let lost = tokio::select! {
        _ = running => None,
        why = fence.lost() => Some(why),
    };
    if let Some(why) = lost {
        stopped_leading(&metrics, &inflight, &why);
        return Err(Error::Other(format!("stopped leading: {why}")));
    }
    metrics.leader.set(0);
    // Let node steps in flight end and record what they did (each is bounded), then hand over.
    let limit = cfg.settings.drain_pass + Duration::from_secs(10);
    let idle = tokio::select! {
        idle = inflight.wait_idle(limit) => idle,
        why = fence.lost() => {
            stopped_leading(&metrics, &inflight, &why);
            return Err(Error::Other(format!("stopped leading: {why}")));
        }
    };
    if !idle {
        tracing::warn!(
            running = inflight.running(),
            "node steps still running at shutdown; stopping them"
        );
        inflight.abort_all();
    }
    if let Some((api, l)) = lease {
        let _ = tokio::time::timeout(l.renew_deadline, leader::release(&api, &l)).await;
    }
    tracing::info!("shut down");
    Ok(())
}

/// drover's Jobs: upgrades, hooks, reboots and backups.
const JOB_SELECTOR: &str = "app.kubernetes.io/managed-by=drover";

/// Run a reflector's stream until drover shuts down (a watch left running
/// would only fail against a server going away); the flag turns true once
/// `store` has had its first full list.
fn run_store<K, S>(
    stream: S,
    store: &reflector::Store<K>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Arc<AtomicBool>
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
    S: futures::Stream + Send + 'static,
{
    let watch = stream.for_each(|_| futures::future::ready(()));
    tokio::spawn(async move {
        tokio::select! {
            _ = watch => {}
            _ = shutdown => {}
        }
    });
    let synced = Arc::new(AtomicBool::new(false));
    let (s, flag) = (store.clone(), synced.clone());
    tokio::spawn(async move {
        if s.wait_until_ready().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    synced
}

fn stopped_leading(metrics: &Metrics, inflight: &inflight::Inflight, why: &str) {
    metrics.leader.set(0);
    let running = inflight.running();
    inflight.abort_all();
    tracing::error!(
        reason = %why,
        steps_stopped = running,
        "stopped leading: {why}; the node steps in flight were stopped, and the next leader resumes each from its record"
    );
}
