//! What drover already watches, read instead of asked for. The controller
//! keeps watch-fed stores of the nodes and of its own Jobs; with them a step
//! reads its node and its Job without a request. Without them (the unit
//! tests, `drain-bench`) every read is a GET, as before.
//!
//! A store lags the server by a watch event, so each reader only trusts it
//! where a stale answer is harmless: a write made from it is a
//! compare-and-swap on the resourceVersion that is retried once from a fresh
//! read ([`Caches::attempts`]), and an answer that would skip a write (a node
//! that does not look like drover's to uncordon) is confirmed by a GET.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::error::Result;

/// Watch-fed stores the controller shares with the node operations.
#[derive(Clone, Default)]
pub struct Caches {
    /// Every node (the controller's own node reflector).
    pub nodes: Option<Store<Node>>,
    /// drover's Jobs (label `app.kubernetes.io/managed-by=drover`), every namespace.
    pub jobs: Option<Store<Job>>,
    /// Whether the Job store has had its first full list: before it, a
    /// Job missing from it may exist, so it is asked for.
    pub jobs_synced: Arc<AtomicBool>,
}

/// Where a read came from: a store may be stale, a GET is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Server,
}

impl Caches {
    /// The node as the store has it, or as the server says when the store
    /// has none (no store, or a node it has not seen yet).
    pub async fn node(&self, api: &Api<Node>, name: &str) -> Result<(Node, Source)> {
        if let Some(n) = self.cached_node(name) {
            return Ok((n, Source::Cache));
        }
        Ok((api.get(name).await?, Source::Server))
    }

    /// As [`Caches::node`], None when the server has no such node.
    pub async fn node_opt(&self, api: &Api<Node>, name: &str) -> Result<Option<(Node, Source)>> {
        if let Some(n) = self.cached_node(name) {
            return Ok(Some((n, Source::Cache)));
        }
        Ok(api.get_opt(name).await?.map(|n| (n, Source::Server)))
    }

    fn cached_node(&self, name: &str) -> Option<Node> {
        self.nodes.as_ref()?.get(&ObjectRef::new(name)).map(|n| (*n).clone())
    }

    /// The Job as the store has it once synced (absent there means absent,
    /// or created a moment ago: a create then answers 409); a GET otherwise.
    pub async fn job_opt(&self, api: &Api<Job>, namespace: &str, name: &str) -> Result<Option<Job>> {
        match &self.jobs {
            Some(store) if self.jobs_synced.load(Ordering::Relaxed) => {
                Ok(store.get(&ObjectRef::new(name).within(namespace)).map(|j| (*j).clone()))
            }
            _ => Ok(api.get_opt(name).await?),
        }
    }

    /// The reads a compare-and-swap write is tried from: the store's copy,
    /// then (after a conflict) the server's. A write that loses to a stale
    /// copy costs one more request, not a pass.
    pub fn attempts(&self) -> &'static [Source] {
        if self.nodes.is_some() {
            &[Source::Cache, Source::Server]
        } else {
            &[Source::Server]
        }
    }

    /// The node from `source`: the store's (or the server's when it has none), or the server's.
    pub async fn node_from(&self, api: &Api<Node>, name: &str, source: Source) -> Result<Option<(Node, Source)>> {
        match source {
            Source::Cache => self.node_opt(api, name).await,
            Source::Server => Ok(api.get_opt(name).await?.map(|n| (n, Source::Server))),
        }
    }
}
