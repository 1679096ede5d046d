//! Reading the simulated cluster: the ClusterUpgrade and one row per node.

use std::time::Duration;

use drover_api::ClusterUpgrade;
use drover_api::names::{annotation, label};
use drover_api::version::image_tag;
use drover_plan::{NodePhase, NodeProgress};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::NAME;

/// One node as the table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub role: &'static str,
    pub step: String,
    pub cordoned: bool,
    pub kubelet: String,
    pub runtime: String,
    pub etcd: String,
    pub apiserver: String,
}

/// One reading of the cluster.
pub struct Snapshot {
    pub cu: ClusterUpgrade,
    /// Sorted by node name.
    pub rows: Vec<Row>,
}

/// The APIs the demo reads, and how often.
pub struct Poller {
    cus: Api<ClusterUpgrade>,
    nodes: Api<Node>,
    pods: Api<Pod>,
    /// The pause between readings.
    pub every: Duration,
}

impl Poller {
    pub fn new(client: &Client, node_count: usize) -> Poller {
        Poller {
            cus: Api::all(client.clone()),
            nodes: Api::all(client.clone()),
            pods: Api::namespaced(client.clone(), "kube-system"),
            every: if node_count > 200 {
                Duration::from_millis(1000)
            } else {
                Duration::from_millis(250)
            },
        }
    }

    /// The demo's ClusterUpgrade, the nodes and the control-plane pods, read at once.
    pub async fn read(&self) -> Result<Snapshot, kube::Error> {
        let (all, control_plane) = (
            ListParams::default(),
            ListParams::default().labels("tier=control-plane"),
        );
        let (cu, nodes, cp_pods) = tokio::try_join!(
            self.cus.get(NAME),
            self.nodes.list(&all),
            self.pods.list(&control_plane)
        )?;
        Ok(Snapshot {
            cu,
            rows: rows(&nodes.items, &cp_pods.items),
        })
    }
}

pub fn role_of(n: &Node) -> &'static str {
    let l = n.labels();
    let cp = l.contains_key(label::ROLE_CONTROL_PLANE) || l.contains_key(label::ROLE_MASTER);
    match (cp, l.contains_key(label::ROLE_ETCD)) {
        (true, true) => "control-plane",
        (true, false) => "control-plane",
        (false, true) => "etcd",
        _ => "worker",
    }
}

/// The node's step in the demo's rollout, from its progress annotation.
fn step_of(n: &Node) -> String {
    let p = n
        .annotations()
        .get(annotation::PROGRESS)
        .and_then(|s| NodeProgress::from_annotation(s))
        .filter(|p| p.upgrade == NAME);
    match p {
        None => "waiting".to_string(),
        Some(p) => match p.phase {
            NodePhase::Done => "done".to_string(),
            NodePhase::Failed => {
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
                } else if ph == NodePhase::Draining && !p.message.is_empty() {
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
