//! The agent end to end against kubesim's own API server, *without* the
//! simulation engine: the server only stores objects, and the tests play
//! KWOK (they mark pods Running and Ready) and drover (they create upgrade
//! pods). This proves the agent's API usage and the contract's writes; the
//! proof against a real kube-apiserver, controllers and KWOK comes from the
//! controlplane tests (`scripts/controlplane.sh`). Waits are bounded and
//! nothing asserts on time.

use super::Agent;
use super::faults::{FAULTS_CONFIGMAP, FAULTS_NAMESPACE};
use super::objects::{KWOK_NODE_ANNOTATION, REBOOTING_ANNOTATION, RESTARTING_ANNOTATION};
use crate::sim::Scenario;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use std::time::Duration;

const SCENARIO: &str = r#"
name: agent-e2e
nodes:
- {role: control-plane, count: 1}
- {role: worker, count: 2}
addons: {network: null, kubeProxy: false, coredns: null, metricsServer: null}
workloads:
- {kind: Deployment, name: web, namespace: shop, replicas: 2, pdb: {maxUnavailable: 1}}
- {kind: StatefulSet, name: db, namespace: shop, replicas: 1}
timing:
  components:
    containerd: {seconds: 30, reboot: true}
"#;

async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What KWOK does for a pod: Running and Ready with a running container.
async fn kwok_runs(pods: &Api<Pod>, name: &str) {
    let mut p = pods.get(name).await.unwrap();
    let mut v = serde_json::to_value(p.status.take().unwrap_or_default()).unwrap();
    let now = crate::meta::now();
    v["phase"] = json!("Running");
    v["conditions"] = json!([
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
    ]);
    v["containerStatuses"] = json!([{"name": "upgrade", "image": "busybox", "imageID": "", "ready": true,
        "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}}}]);
    p.status = Some(serde_json::from_value(v).unwrap());
    pods.replace_status(name, &PostParams::default(), &p).await.unwrap();
}

fn upgrade_pod(name: &str, node: &str, component: &str, version: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "drover"},
        "spec": {"nodeName": node, "restartPolicy": "Never", "containers": [{"name": "upgrade", "image": "busybox", "env": [
            {"name": "DROVER_COMPONENT", "value": component},
            {"name": "DROVER_VERSION", "value": version},
            {"name": "DROVER_NODE", "value": node},
        ]}]},
    }))
    .unwrap()
}

async fn finished(pods: &Api<Pod>, name: &str) -> Value {
    until(&format!("pod {name} to end"), async || {
        let p = pods.get(name).await.ok()?;
        let v = serde_json::to_value(&p).unwrap();
        matches!(v["status"]["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(v)
    })
    .await
}

#[tokio::test]
async fn loads_a_scenario_idempotently() {
    let server = crate::ApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let agent = Agent::new(client.clone(), Scenario::from_yaml(SCENARIO).unwrap(), Some(1000.0)).unwrap();
    let plan = agent.plan().unwrap();
    agent.load(&plan).await.unwrap();
    // A restarted agent finds everything there.
    agent.load(&agent.plan().unwrap()).await.unwrap();

    let nodes: Api<Node> = Api::all(client.clone());
    let w = nodes.get("worker-2").await.unwrap();
    let ann = w.metadata.annotations.clone().unwrap();
    assert_eq!(ann[KWOK_NODE_ANNOTATION], "fake");
    let info = w.status.as_ref().unwrap().node_info.as_ref().unwrap();
    assert_eq!(info.kubelet_version, "v1.31.4");
    assert_eq!(info.container_runtime_version, "containerd://1.7.22");
    let cp = nodes.get("cp-1").await.unwrap();
    let sys: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let etcd = sys.get("etcd-cp-1").await.unwrap();
    assert_eq!(etcd.metadata.owner_references.unwrap()[0].uid, cp.metadata.uid.unwrap());
    let shop_d: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    assert_eq!(shop_d.get("web").await.unwrap().spec.unwrap().replicas, Some(2));
    let shop_s: Api<Service> = Api::namespaced(client.clone(), "shop");
    assert!(shop_s.get("db").await.is_ok());

    // Nothing runs pods here: the wait gives up naming what is not ready.
    let err = super::load::wait_ready(&client, &plan, Duration::from_millis(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Deployment shop/web"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn runs_the_upgrade_contract() {
    let server = crate::ApiServer::start().await.unwrap();
    contract_flow(server.client().unwrap()).await;
    server.shutdown().await;
}

/// The same flow against a real kube-apiserver, for a manual check:
/// `KUBESIM_AGENT_REAL_KUBECONFIG=PATH cargo test -p kubesim --lib agent -- --ignored`.
/// The server must be fresh (nothing of the scenario there yet), with no
/// kubelets or KWOK, and pods must be creatable without a ServiceAccount
/// (`--disable-admission-plugins=ServiceAccount`, or a controller-manager).
#[tokio::test]
#[ignore = "needs a real kube-apiserver (KUBESIM_AGENT_REAL_KUBECONFIG)"]
async fn runs_the_upgrade_contract_on_a_real_api_server() {
    let path = std::env::var("KUBESIM_AGENT_REAL_KUBECONFIG").expect("KUBESIM_AGENT_REAL_KUBECONFIG");
    let client = super::client_from_kubeconfig(std::path::Path::new(&path))
        .await
        .unwrap();
    contract_flow(client).await;
}

async fn contract_flow(client: kube::Client) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let agent = Agent::new(client.clone(), Scenario::from_yaml(SCENARIO).unwrap(), Some(1000.0)).unwrap();
    agent.load(&agent.plan().unwrap()).await.unwrap();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "drover"}});
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(ns).unwrap())
        .await
        .map(drop)
        .or_else(|e| match e {
            kube::Error::Api(s) if s.code == 409 => Ok(()),
            e => Err(e),
        })
        .unwrap();
    // The ConfigMap's faults replace the scenario's (none here).
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": FAULTS_CONFIGMAP},
        "data": {"faults": "- {type: UpgradeFails, component: kubelet, nodes: [worker-2]}\n- {type: WatchDrops, everySeconds: 3}\n"}});
    Api::<ConfigMap>::namespaced(client.clone(), FAULTS_NAMESPACE)
        .create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
        .await
        .unwrap();
    let (contract, faults) = agent.spawn_contract();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "drover");
    let nodes: Api<Node> = Api::all(client.clone());
    let sys: Api<Pod> = Api::namespaced(client.clone(), "kube-system");

    until("the ConfigMap's faults", async || {
        (faults.current().len() == 2).then_some(())
    })
    .await;

    // kubelet on worker-1: nodeInfo.
    pods.create(
        &PostParams::default(),
        &upgrade_pod("kubelet-w1", "worker-1", "kubelet", "v1.32.0"),
    )
    .await
    .unwrap();
    kwok_runs(&pods, "kubelet-w1").await;
    let v = finished(&pods, "kubelet-w1").await;
    assert_eq!(v["status"]["phase"], "Succeeded");
    let term = &v["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (term["exitCode"].as_i64(), term["reason"].as_str()),
        (Some(0), Some("Completed"))
    );
    let w1 = nodes.get("worker-1").await.unwrap();
    assert_eq!(w1.status.unwrap().node_info.unwrap().kubelet_version, "v1.32.0");

    // kubelet on worker-2: the ConfigMap's fault.
    pods.create(
        &PostParams::default(),
        &upgrade_pod("kubelet-w2", "worker-2", "kubelet", "v1.32.0"),
    )
    .await
    .unwrap();
    kwok_runs(&pods, "kubelet-w2").await;
    let v = finished(&pods, "kubelet-w2").await;
    assert_eq!(v["status"]["phase"], "Failed");
    let term = &v["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (term["exitCode"].as_i64(), term["reason"].as_str()),
        (Some(1), Some("Error"))
    );
    assert_eq!(term["message"], "upgrade of kubelet to v1.32.0 failed: simulated fault");
    let w2 = nodes.get("worker-2").await.unwrap();
    assert_eq!(w2.status.unwrap().node_info.unwrap().kubelet_version, "v1.31.4");

    // etcd on cp-1: the mirror pod restarts with the new image.
    let before = sys.get("etcd-cp-1").await.unwrap();
    pods.create(
        &PostParams::default(),
        &upgrade_pod("etcd-cp1", "cp-1", "etcd", "v3.5.16"),
    )
    .await
    .unwrap();
    kwok_runs(&pods, "etcd-cp1").await;
    assert_eq!(finished(&pods, "etcd-cp1").await["status"]["phase"], "Succeeded");
    let etcd = serde_json::to_value(sys.get("etcd-cp-1").await.unwrap()).unwrap();
    let old = serde_json::to_value(&before).unwrap();
    assert_eq!(etcd["spec"]["containers"][0]["image"], "registry.k8s.io/etcd:v3.5.16");
    assert_ne!(
        etcd["metadata"]["annotations"]["kubernetes.io/config.hash"],
        old["metadata"]["annotations"]["kubernetes.io/config.hash"]
    );
    assert_eq!(
        etcd["metadata"]["annotations"]["kubernetes.io/config.mirror"],
        old["metadata"]["annotations"]["kubernetes.io/config.mirror"],
        "a real API server forbids changing the mirror annotation"
    );
    assert_eq!(etcd["status"]["containerStatuses"][0]["restartCount"], 1);
    assert!(etcd["metadata"]["annotations"][RESTARTING_ANNOTATION].is_null());
    let ready = etcd["status"]["conditions"].as_array().unwrap();
    assert!(ready.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));

    // containerd on worker-2 reboots: new bootID and version together, annotation gone.
    let boot = nodes
        .get("worker-2")
        .await
        .unwrap()
        .status
        .unwrap()
        .node_info
        .unwrap()
        .boot_id;
    pods.create(
        &PostParams::default(),
        &upgrade_pod("crd-w2", "worker-2", "containerd", "v1.7.23"),
    )
    .await
    .unwrap();
    kwok_runs(&pods, "crd-w2").await;
    assert_eq!(finished(&pods, "crd-w2").await["status"]["phase"], "Succeeded");
    let w2 = serde_json::to_value(nodes.get("worker-2").await.unwrap()).unwrap();
    assert_eq!(
        w2["status"]["nodeInfo"]["containerRuntimeVersion"],
        "containerd://1.7.23"
    );
    assert_ne!(w2["status"]["nodeInfo"]["bootID"], json!(boot));
    assert!(w2["metadata"]["annotations"][REBOOTING_ANNOTATION].is_null());
    let conds = w2["status"]["conditions"].as_array().unwrap();
    let ready = conds.iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("KubeletReady"))
    );

    // Deleting the ConfigMap brings back the scenario's faults (none): the
    // same upgrade on worker-2 now succeeds.
    Api::<ConfigMap>::namespaced(client.clone(), FAULTS_NAMESPACE)
        .delete(FAULTS_CONFIGMAP, &Default::default())
        .await
        .unwrap();
    until("the scenario's faults", async || {
        faults.current().is_empty().then_some(())
    })
    .await;
    pods.create(
        &PostParams::default(),
        &upgrade_pod("kubelet-w2b", "worker-2", "kubelet", "v1.32.0"),
    )
    .await
    .unwrap();
    kwok_runs(&pods, "kubelet-w2b").await;
    assert_eq!(finished(&pods, "kubelet-w2b").await["status"]["phase"], "Succeeded");

    contract.abort();
}
