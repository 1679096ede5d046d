//! A kubesim API server, the real node operations against it, and a minimal
//! kubelet that finishes the termination of deleted pods.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use drover_nodeops::KubeNodeOps;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

pub const WAIT: Duration = Duration::from_secs(30);

/// Every wait in a test is bounded.
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("timed out")
}

pub struct Cluster {
    pub server: kubesim::ApiServer,
    pub client: Client,
    pub ops: KubeNodeOps,
    kubelet: Option<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    /// A server whose deleted pods stay terminating until a kubelet confirms.
    pub async fn start() -> Cluster {
        let config = kubesim::Config {
            store: kubesim::StoreConfig {
                graceful_pod_deletion: true,
                ..kubesim::StoreConfig::default()
            },
            ..kubesim::Config::default()
        };
        let server = kubesim::ApiServer::start_with(config).await.unwrap();
        let client = server.client().unwrap();
        let ops = KubeNodeOps::from_config(kube::Config::new(server.url().parse().unwrap()), "kube-system").unwrap();
        Cluster {
            server,
            client,
            ops,
            kubelet: None,
        }
    }

    /// Confirm every terminating pod's deletion after `delay`, as a kubelet would.
    pub fn run_kubelet(&mut self, delay: Duration) {
        let client = self.client.clone();
        self.kubelet = Some(tokio::spawn(async move {
            let pods: Api<Pod> = Api::all(client.clone());
            loop {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    for p in list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_some()) {
                        tokio::time::sleep(delay).await;
                        let ns = p.metadata.namespace.clone().unwrap_or_default();
                        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                        let _ = api
                            .delete(
                                p.metadata.name.as_deref().unwrap(),
                                &DeleteParams::default().grace_period(0),
                            )
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    pub async fn node(&self, name: &str, ready: bool) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let n: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
        self.node_status(
            name,
            json!({
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "nodeInfo": {
                    "kubeletVersion": "v1.31.4", "kubeProxyVersion": "v1.31.4",
                    "containerRuntimeVersion": "containerd://1.7.22", "osImage": "Debian", "kernelVersion": "6.1",
                    "architecture": "amd64", "bootID": "", "machineID": "", "operatingSystem": "linux", "systemUUID": ""
                }
            }),
        )
        .await;
    }

    pub async fn node_status(&self, name: &str, status: Value) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({"status": status})))
            .await
            .unwrap();
    }

    pub async fn get_node(&self, name: &str) -> Node {
        Api::<Node>::all(self.client.clone()).get(name).await.unwrap()
    }

    /// A running, Ready pod on `node`, with optional owner and extra spec.
    pub async fn pod(
        &self,
        ns: &str,
        name: &str,
        node: &str,
        labels: Value,
        owner: Option<(&str, &str)>,
        volumes: Value,
    ) -> Pod {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}], "volumes": volumes}
        });
        if let Some((kind, owner)) = owner {
            let uid = self.workload(ns, kind, owner).await;
            p["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": uid, "controller": true
            }]);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.create(&PostParams::default(), &serde_json::from_value(p).unwrap())
            .await
            .unwrap();
        let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap()
    }

    /// A ReplicaSet or DaemonSet to own pods (the garbage collector deletes
    /// pods whose owner does not exist); returns its UID.
    pub async fn workload(&self, ns: &str, kind: &str, name: &str) -> String {
        let resource = match kind {
            "ReplicaSet" => "replicasets",
            "DaemonSet" => "daemonsets",
            other => panic!("no owner kind {other}"),
        };
        let ar = kube::api::ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: kind.into(),
            plural: resource.into(),
        };
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        if let Some(o) = api.get_opt(name).await.unwrap() {
            return o.metadata.uid.unwrap();
        }
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"owner": name}},
                     "template": {"metadata": {"labels": {"owner": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap()
            .metadata
            .uid
            .unwrap()
    }

    /// Install the CRD and create a ClusterUpgrade to own Jobs.
    pub async fn cluster_upgrade(&self, name: &str) -> drover_nodeops::Owner {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let _ = crds.create(&PostParams::default(), &drover_api::crd::crd()).await;
        let spec: drover_api::ClusterUpgradeSpec = serde_json::from_value(json!({
            "components": [{"name": "containerd", "version": "1.7.23", "upgrade": {"job": {"image": "example.com/up:1"}}}]
        }))
        .unwrap();
        let cus: Api<drover_api::ClusterUpgrade> = Api::all(self.client.clone());
        let cu = within(async {
            loop {
                match cus
                    .create(
                        &PostParams::default(),
                        &drover_api::ClusterUpgrade::new(name, spec.clone()),
                    )
                    .await
                {
                    Ok(cu) => break cu,
                    // The resource is served a moment after its CRD is created.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await;
        drover_nodeops::Owner {
            name: name.into(),
            uid: cu.metadata.uid.unwrap(),
        }
    }

    pub async fn mirror_pod(&self, name: &str, node: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "kube-system");
        let p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "kube-system", "labels": {"component": name},
                         "annotations": {"kubernetes.io/config.mirror": "abc"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": format!("registry.k8s.io/{name}:v1.31.4")}]}
        });
        api.create(&PostParams::default(), &serde_json::from_value(p).unwrap())
            .await
            .unwrap();
    }

    /// A PodDisruptionBudget with the status the disruption controller would write.
    pub async fn pdb(&self, ns: &str, name: &str, labels: Value, allowed: i32) {
        let api: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> = Api::namespaced(self.client.clone(), ns);
        let b = json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}
        });
        api.create(&PostParams::default(), &serde_json::from_value(b).unwrap())
            .await
            .unwrap();
        self.pdb_allows(ns, name, allowed).await;
    }

    pub async fn pdb_allows(&self, ns: &str, name: &str, allowed: i32) {
        let api: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> = Api::namespaced(self.client.clone(), ns);
        let status = json!({"status": {"disruptionsAllowed": allowed, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2, "observedGeneration": 1}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    pub async fn pods_on(&self, node: &str) -> Vec<String> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let mut names: Vec<String> = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(k) = self.kubelet.take() {
            k.abort();
        }
    }
}
