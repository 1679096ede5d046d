//! The health endpoints on a real cluster (`kubesim agent --health-listen`):
//! the same `/nodes/{node}/healthz` and `/api/v1/query` as the simulation
//! (`crate::sim::health`), answered from watches of Nodes and Pods and the
//! fault list. Under a `BadVersion` fault with `effect: PodsUnready` the
//! agent holds the bad nodes' long-running pods unready: it annotates them
//! `kubesim.drover.dev/unhealthy` (KWOK's pod-ready stage skips such pods)
//! and writes `Ready=False` through `pods/status`; once the node is not bad
//! it removes the annotation and KWOK makes them Ready again after
//! `podReadySeconds`, as a kubelet whose readiness probe passes again.

use super::faults::FaultState;
use super::objects::UNHEALTHY_ANNOTATION;
use super::write::modify_status;
use crate::sim::Fault;
use crate::sim::health::{
    self, BadNode, HealthServer, HealthState, NodeHealth, affected_pod, alerts, any_bad_version, bad_versions,
    holds_pods_unready, live_version,
};
use crate::sim::kubelet::set_ready;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use parking_lot::RwLock;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How often the agent looks again without an event (a fault list change
/// has none of its own).
const TICK: Duration = Duration::from_millis(250);

/// What the upgrades of components no node field or mirror pod shows
/// installed, by (node, component): kept in memory, lost with the agent.
#[derive(Clone, Default)]
pub struct Installed {
    map: Arc<RwLock<HashMap<(String, String), String>>>,
    changed: Arc<Notify>,
}

impl Installed {
    pub fn set(&self, node: &str, component: &str, version: &str) {
        self.map
            .write()
            .insert((node.to_string(), component.to_string()), version.to_string());
        self.changed.notify_one();
    }

    pub fn get(&self, node: &str, component: &str) -> Option<String> {
        self.map.read().get(&(node.to_string(), component.to_string())).cloned()
    }
}

/// The watched Nodes and Pods, the faults and what Jobs installed.
#[derive(Clone)]
pub struct HealthWatch {
    nodes: Store<Node>,
    pods: Store<Pod>,
    faults: FaultState,
    installed: Installed,
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl HealthWatch {
    fn bad_of(&self, faults: &[Fault], n: &Node) -> Vec<BadNode> {
        let name = n.name_any();
        let info = n
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .and_then(|i| serde_json::to_value(i).ok())
            .unwrap_or(Value::Null);
        bad_versions(faults, &name, |component| {
            let mirror = self
                .pods
                .get(&ObjectRef::new(&format!("{component}-{name}")).within("kube-system"))
                .and_then(|p| p.spec.as_ref()?.containers.first()?.image.clone());
            live_version(
                component,
                &info,
                mirror.as_deref(),
                self.installed.get(&name, component).as_deref(),
            )
        })
    }

    /// What the endpoints answer from.
    pub fn state(&self) -> HealthState {
        let faults = self.faults.current();
        let any = any_bad_version(&faults);
        let mut nodes: Vec<NodeHealth> = self
            .nodes
            .state()
            .iter()
            .map(|n| NodeHealth {
                name: n.name_any(),
                ready: node_ready(n),
                bad: if any { self.bad_of(&faults, n) } else { Vec::new() },
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        HealthState {
            nodes,
            alerts: alerts(&faults),
        }
    }

    /// The nodes whose pods a bad version holds unready.
    fn held_nodes(&self) -> HashSet<String> {
        let faults = self.faults.current();
        if !any_bad_version(&faults) {
            return HashSet::new();
        }
        self.nodes
            .state()
            .iter()
            .filter(|n| holds_pods_unready(&self.bad_of(&faults, n)))
            .map(|n| n.name_any())
            .collect()
    }

    /// One pass: pods on held nodes annotated and unready, pods elsewhere
    /// handed back to KWOK.
    async fn reconcile(&self, client: &Client) {
        let held = self.held_nodes();
        for p in self.pods.state() {
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            let marked = p.annotations().contains_key(UNHEALTHY_ANNOTATION);
            let running = p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if !marked && !held.contains(&node) {
                continue;
            }
            let affected = running && serde_json::to_value(&*p).is_ok_and(|v| affected_pod(&v));
            let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let hold = affected && held.contains(&node);
            if hold && !marked {
                let patch = json!({"metadata": {"annotations": {UNHEALTHY_ANNOTATION: "true"}}});
                if let Err(e) = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    tracing::warn!("annotating pod {ns}/{name} unhealthy: {e}");
                    continue;
                }
            }
            if hold && pod_ready(&p) {
                let uid = p.uid().unwrap_or_default();
                let r = modify_status(&api, &name, |v| {
                    if v["metadata"]["uid"] != uid.as_str() {
                        return false;
                    }
                    set_ready(v, false, &crate::meta::now());
                    true
                })
                .await;
                match r {
                    Ok(true) => tracing::info!("pod {ns}/{name} on {node} unready: its node runs a bad version"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!("marking pod {ns}/{name} unready: {e}"),
                }
            }
            if !hold && marked {
                let patch = json!({"metadata": {"annotations": {UNHEALTHY_ANNOTATION: null}}});
                match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => tracing::info!("pod {ns}/{name} on {node} handed back: its node is not bad"),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => tracing::warn!("removing the unhealthy annotation of pod {ns}/{name}: {e}"),
                }
            }
        }
    }
}

/// Keeps `writer` in step with a watch of `api`, waking `changed` on each event.
async fn follow<K>(api: Api<K>, writer: reflector::store::Writer<K>, changed: Arc<Notify>, what: &str)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(_) => changed.notify_one(),
            Err(e) => tracing::warn!("watching {what}: {e}"),
        }
    }
}

/// Starts the watches, the pod reconciler and the listener on `listen`.
/// Returns the task (the watches and reconciler) and the server (dropping
/// it closes the listener).
pub async fn spawn(
    client: Client,
    faults: FaultState,
    installed: Installed,
    listen: SocketAddr,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, HealthServer)> {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let changed = installed.changed.clone();
    let watch = HealthWatch {
        nodes: nodes.clone(),
        pods: pods.clone(),
        faults,
        installed,
    };
    let w = watch.clone();
    let source: health::Source = Arc::new(move || {
        let w = w.clone();
        Box::pin(async move {
            let synced = async {
                w.nodes.wait_until_ready().await.ok();
                w.pods.wait_until_ready().await.ok();
            };
            tokio::time::timeout(Duration::from_secs(10), synced)
                .await
                .map_err(|_| "the agent has not listed the cluster's nodes and pods yet".to_string())?;
            Ok(w.state())
        })
    });
    let server = health::serve(listen, source)
        .await
        .map_err(|e| anyhow::anyhow!("binding the health listener {listen}: {e}"))?;
    let task = tokio::spawn(async move {
        let reconcile = async {
            let _ = tokio::join!(watch.nodes.wait_until_ready(), watch.pods.wait_until_ready());
            loop {
                watch.reconcile(&client).await;
                tokio::select! {
                    _ = changed.notified() => {}
                    _ = tokio::time::sleep(TICK) => {}
                }
            }
        };
        tokio::join!(
            follow(Api::<Node>::all(client.clone()), node_writer, changed.clone(), "nodes"),
            follow(Api::<Pod>::all(client.clone()), pod_writer, changed.clone(), "pods"),
            reconcile,
        );
    });
    Ok((task, server))
}
