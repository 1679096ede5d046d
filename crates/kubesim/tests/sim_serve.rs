//! `kubesim serve --scenario examples/clusters/small.yaml` as a separate
//! process: kubectl sees a believable cluster, drain works, and the
//! recorder and faults are reachable over HTTP.

#[path = "sim_common.rs"]
mod common;

use common::*;
use kube::Client;
use std::time::Duration;

struct Served {
    child: tokio::process::Child,
    kubeconfig: Kubeconfig,
}

async fn serve(scenario: &str, speed: &str) -> Served {
    let kubeconfig = Kubeconfig(std::env::temp_dir().join(format!("kubesim-serve-{}.yaml", uuid::Uuid::new_v4())));
    let file = format!("{}/../../examples/clusters/{scenario}", env!("CARGO_MANIFEST_DIR"));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args([
            "serve",
            "--port",
            "0",
            "--scenario",
            &file,
            "--speed",
            speed,
            "--kubeconfig",
        ])
        .arg(&kubeconfig.0)
        .kill_on_drop(true)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let path = kubeconfig.0.clone();
    eventually("the kubeconfig of the served scenario", || {
        let path = path.clone();
        async move { path.exists().then_some(()) }
    })
    .await;
    Served { child, kubeconfig }
}

async fn client(kc: &Kubeconfig) -> Client {
    let yaml = std::fs::read_to_string(&kc.0).unwrap();
    let cfg = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(cfg, &Default::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

async fn get_json(client: &Client, path: &str) -> serde_json::Value {
    let req = axum::http::Request::get(path).body(Vec::new()).unwrap();
    serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_small_scenario_for_kubectl() {
    let mut s = serve("small.yaml", "600").await;
    let kc = &s.kubeconfig;
    let (ok, out, err) = kubectl(kc, &["get", "nodes"], Duration::from_secs(30)).await.unwrap();
    assert!(ok, "{err}");
    let ready_lines = out.lines().filter(|l| l.contains(" Ready ")).count();
    assert_eq!(ready_lines, 8, "{out}");
    assert!(out.contains("control-plane") && out.contains("v1.31.4"), "{out}");
    let (ok, out, err) = kubectl(kc, &["get", "pods", "-A"], Duration::from_secs(30))
        .await
        .unwrap();
    assert!(ok, "{err}");
    for name in [
        "kube-apiserver-cp-1",
        "etcd-cp-2",
        "calico-node-",
        "kube-proxy-",
        "coredns-",
        "db-0",
        "debug",
    ] {
        assert!(out.contains(name), "{name} missing:\n{out}");
    }
    assert!(!out.contains("Pending"), "{out}");

    // drain: the bare pod needs --force, emptyDir pods need --delete-emptydir-data.
    let c = client(kc).await;
    let node = node_of(&pods(&c, "default", "app=debug").await[0]);
    let (ok, _, err) = kubectl(
        kc,
        &["drain", &node, "--ignore-daemonsets", "--timeout=20s"],
        Duration::from_secs(40),
    )
    .await
    .unwrap();
    assert!(!ok && err.contains("--force"), "{err}");
    let (ok, out, err) = kubectl(
        kc,
        &[
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            "--timeout=90s",
        ],
        Duration::from_secs(100),
    )
    .await
    .unwrap();
    assert!(ok, "{out}\n{err}");

    let report = get_json(&c, "/kubesim/recorder").await;
    assert_eq!(report["cordoned"], serde_json::json!([node]));
    assert_eq!(report["maxUnavailable"]["worker"], 1);
    assert_eq!(report["maxUnavailable"]["control-plane"], 0);
    assert_eq!(report["pdbViolations"], serde_json::json!([]));
    assert_eq!(
        report["versions"]["cp-1"].as_array().unwrap().len(),
        9,
        "{}",
        report["versions"]["cp-1"]
    );

    // Faults and node readiness are steerable over HTTP.
    let req = axum::http::Request::put("/kubesim/nodes/worker-5/ready")
        .header("content-type", "application/json")
        .body(b"false".to_vec())
        .unwrap();
    c.request_text(req).await.unwrap();
    eventually("worker-5 NotReady in kubectl", || async {
        let (_, out, _) = kubectl(kc, &["get", "node", "worker-5"], Duration::from_secs(20))
            .await
            .ok()?;
        out.contains("NotReady").then_some(())
    })
    .await;
    let req = axum::http::Request::post("/kubesim/faults")
        .header("content-type", "application/json")
        .body(br#"{"type": "UpgradeFails", "component": "kubelet", "nodes": ["worker-1"]}"#.to_vec())
        .unwrap();
    c.request_text(req).await.unwrap();
    let faults = get_json(&c, "/kubesim/faults").await;
    assert_eq!(faults[0]["type"], "UpgradeFails");
    let speed = get_json(&c, "/kubesim/speed").await;
    assert_eq!(speed["speed"], 600.0);
    s.child.kill().await.unwrap();
}
