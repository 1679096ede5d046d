//! The real `drover run` binary against a kubesim API server, with the test
//! playing the part of the Job controller and the kubelet: a rollout goes
//! cordon → drain → upgrade Job → verify → uncordon on every node, the
//! status says so, and `kubectl wait --for=condition=Ready` returns.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use drover_api::ClusterUpgrade;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

struct Drover(Child);

impl Drop for Drover {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_drover(kubeconfig: &std::path::Path) -> Drover {
    Drover(
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["run", "--http-addr", "off", "--drain-pass-seconds", "1", "--kubeconfig"])
            .arg(kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start drover"),
    )
}

async fn node(client: &Client, name: &str, role: Option<&str>) {
    let mut labels = serde_json::Map::new();
    if let Some(r) = role {
        labels.insert(format!("node-role.kubernetes.io/{r}"), json!(""));
    }
    let n: Node = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}),
    )
    .unwrap();
    let api: Api<Node> = Api::all(client.clone());
    api.create(&PostParams::default(), &n).await.unwrap();
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "nodeInfo": {"kubeletVersion": "v1.31.4", "kubeProxyVersion": "v1.31.4", "containerRuntimeVersion": "containerd://1.7.22",
                     "osImage": "Debian", "kernelVersion": "6.1", "architecture": "amd64", "bootID": "", "machineID": "",
                     "operatingSystem": "linux", "systemUUID": ""}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Play the Job controller and the kubelet: each upgrade Job "runs" by
/// changing its node's runtime version, then completes.
async fn run_jobs(client: Client) {
    let jobs: Api<Job> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        for job in jobs
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let done = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| !c.is_empty());
            if done {
                continue;
            }
            let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let env = pod.containers[0].env.clone().unwrap_or_default();
            let get = |k: &str| {
                env.iter()
                    .find(|e| e.name == k)
                    .and_then(|e| e.value.clone())
                    .unwrap_or_default()
            };
            let node = pod.node_name.clone().unwrap();
            assert_eq!(get("DROVER_NODE"), node);
            let cordoned = nodes.get(&node).await.unwrap().spec.unwrap().unschedulable == Some(true);
            assert!(cordoned, "upgrade Jobs run on cordoned, drained nodes");
            let status = json!({"status": {"nodeInfo": {"containerRuntimeVersion": format!("containerd://{}", get("DROVER_VERSION"))}}});
            nodes
                .patch_status(&node, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
            let api: Api<Job> = Api::namespaced(client.clone(), &job.namespace().unwrap());
            let done = json!({"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}});
            api.patch_status(&job.name_any(), &PatchParams::default(), &Patch::Merge(&done))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_converges_through_the_real_binary_and_kubectl_wait_returns() {
    let server = kubesim::ApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let dir = std::env::temp_dir().join(format!("drover-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();

    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &drover_api::crd::crd())
        .await
        .unwrap();
    node(&client, "cp-0", Some("control-plane")).await;
    for i in 0..3 {
        node(&client, &format!("worker-{i}"), None).await;
    }
    let _drover = start_drover(&kubeconfig);
    let jobs = tokio::spawn(run_jobs(client.clone()));

    let spec: drover_api::ClusterUpgradeSpec = serde_json::from_value(json!({
        "components": [{"name": "containerd", "version": "1.7.23", "upgrade": {"job": {"image": "example.com/up:1", "privileged": true, "hostRoot": true}}}],
        "strategy": {"maxUnavailable": 2}
    }))
    .unwrap();
    let cus: Api<ClusterUpgrade> = Api::all(client.clone());
    tokio::time::timeout(WAIT, async {
        while cus
            .create(&PostParams::default(), &ClusterUpgrade::new("runtime", spec.clone()))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the CRD is served");

    // `kubectl wait` is how users and pipelines wait for a rollout.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("kubectl")
            .args(["--kubeconfig"])
            .arg(&kubeconfig)
            .args([
                "wait",
                "--for=condition=Ready",
                "clusterupgrade/runtime",
                "--timeout=60s",
            ])
            .output()
            .expect("run kubectl")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "kubectl wait: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    jobs.abort();

    let cu = cus.get("runtime").await.unwrap();
    let st = cu.status.unwrap();
    assert_eq!(st.progress.as_deref(), Some("4/4"));
    assert_eq!(st.stage.as_deref(), Some("Complete"));
    assert_eq!(st.observed_generation, cu.metadata.generation);
    assert!(
        cu.metadata
            .finalizers
            .unwrap()
            .contains(&"drover.dev/cleanup".to_string())
    );
    let nodes: Api<Node> = Api::all(client.clone());
    for n in nodes.list(&ListParams::default()).await.unwrap() {
        assert_ne!(
            n.spec.as_ref().unwrap().unschedulable,
            Some(true),
            "{} left cordoned",
            n.name_any()
        );
        assert_eq!(
            n.status.unwrap().node_info.unwrap().container_runtime_version,
            "containerd://1.7.23"
        );
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for r in ["NodeStarted", "NodeUpgraded", "Completed"] {
        assert!(reasons.iter().any(|x| x == r), "no {r} event among {reasons:?}");
    }
    // The steps between a node's start and end show in status, not as events.
    for r in ["Cordoned", "Drained", "Upgraded", "Verified"] {
        assert!(!reasons.iter().any(|x| x == r), "a {r} event among {reasons:?}");
    }

    // Deleting the ClusterUpgrade lets the finalizer run: it goes away.
    cus.delete("runtime", &Default::default()).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while cus.get_opt("runtime").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the finalizer is removed");
    std::fs::remove_dir_all(&dir).ok();
}
