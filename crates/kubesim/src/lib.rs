//! kubesim: an in-memory Kubernetes API server that speaks the real HTTP API,
//! so kube-rs clients and `kubectl` can run against it in tests, demos and
//! benchmarks.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let server = kubesim::ApiServer::start().await?;
//! let client = server.client()?;
//! // ... use `client` with kube::Api, or `server.store()` in-process ...
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod agent;
pub mod binding;
pub mod discovery;
pub mod error;
pub mod events;
pub mod eviction;
pub mod faults;
pub mod http;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod requests;
pub mod scale;
pub mod sim;
pub mod store;
pub mod table;

pub use error::{ApiError, ServerError};
pub use faults::{FaultRule, Faults};
pub use requests::{RequestCount, RequestCounts, RequestKey};
pub use store::{
    DeleteOptions, Deleted, EventType, GroupResource, ListOptions, Patch, ResourceType, Store, StoreConfig, Stored,
    WatchEvent, WatchStream, WriteOptions,
};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub store: StoreConfig,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Extra routes served next to the API (the simulation's `/kubesim/...`).
    pub routes: Option<axum::Router>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 0,
            store: StoreConfig::default(),
            bookmark_interval: Duration::from_secs(10),
            routes: None,
        }
    }
}

/// A running server on loopback.
pub struct ApiServer {
    addr: SocketAddr,
    store: Store,
    faults: Arc<Faults>,
    requests: Arc<RequestCounts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Starts a server on an ephemeral loopback port.
    pub async fn start() -> Result<ApiServer, ServerError> {
        Self::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> Result<ApiServer, ServerError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let store = Store::new(config.store.clone());
        store.spawn_controllers();
        let faults = Arc::new(Faults::default());
        let requests = Arc::new(RequestCounts::default());
        let app = http::App {
            store: store.clone(),
            faults: faults.clone(),
            bookmark_interval: config.bookmark_interval,
            requests: requests.clone(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = match config.routes.clone() {
            Some(extra) => http::router(app).merge(extra),
            None => http::router(app),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(ApiServer {
            addr,
            store,
            faults,
            requests,
            stop: Some(stop),
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Direct access to the objects, for in-process controllers and tests.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Fault injection, switchable at run time.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// API requests served so far, per client, verb, resource and status code.
    pub fn requests(&self) -> &RequestCounts {
        &self.requests
    }

    /// A kube-rs client for this server (default namespace `default`).
    pub fn client(&self) -> Result<kube::Client, ServerError> {
        let uri = self.url().parse().map_err(|e| ServerError::Client(format!("{e}")))?;
        let config = kube::Config::new(uri);
        kube::Client::try_from(config).map_err(|e| ServerError::Client(e.to_string()))
    }

    /// A kubeconfig any client can use.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig(&self.url())
    }

    pub fn write_kubeconfig(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Stops serving: open watches end, then the listener closes.
    pub async fn shutdown(mut self) {
        self.store.close_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The kubeconfig for a server at `url`: one cluster, context and user, no auth.
pub fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {url}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: default\ncurrent-context: kubesim\nusers:\n- name: kubesim\n  user: {{}}\npreferences: {{}}\n"
    )
}
