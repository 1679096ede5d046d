//! The real `kubectl` against a served instance: apply (client- and
//! server-side), get with printer columns, patch, delete, cordon, drain with
//! a PDB, wait for a condition, get -w.

mod common;

use common::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Env {
    server: kubesim::ApiServer,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// None when kubectl is not installed (set KUBESIM_REQUIRE_KUBECTL=1 to fail instead).
async fn env() -> Option<Env> {
    if !Path::new(KUBECTL).exists() {
        assert!(
            std::env::var_os("KUBESIM_REQUIRE_KUBECTL").is_none(),
            "kubectl is required"
        );
        eprintln!("skipping: {KUBECTL} not found");
        return None;
    }
    let server = kubesim::ApiServer::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("kubesim-kubectl-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    Some(Env {
        server,
        dir,
        kubeconfig,
    })
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Env {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(KUBECTL);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c.env("HOME", &self.dir).env_remove("KUBECONFIG").kill_on_drop(true);
        c
    }

    /// Runs kubectl to completion; killed (on drop) if it outlives the timeout.
    async fn run(&self, args: &[&str]) -> Out {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .unwrap();
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(o.ok, "kubectl {args:?} failed: {}{}", o.stdout, o.stderr);
        o.stdout
    }

    fn file(&self, name: &str, body: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, body).unwrap();
        p.to_string_lossy().into_owned()
    }
}

fn crd_path() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crds/clusterupgrades.drover.dev.yaml")
        .to_string_lossy()
        .into_owned()
}

const UPGRADE: &str = r#"apiVersion: drover.dev/v1alpha1
kind: ClusterUpgrade
metadata:
  name: platform
spec:
  components:
    - name: containerd
      version: 1.7.23
      upgrade:
        job: {image: registry.example.com/upgrade-containerd:1, privileged: true, hostRoot: true}
"#;

fn cu_api(c: kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("drover.dev", "v1alpha1", "ClusterUpgrade"),
        "clusterupgrades",
    );
    Api::all_with(c, &ar)
}

#[tokio::test]
async fn kubectl_applies_the_crd_and_a_cluster_upgrade_and_prints_its_columns() {
    let Some(e) = env().await else { return };
    let out = e.ok(&["apply", "-f", &crd_path()]).await;
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/clusterupgrades.drover.dev created"),
        "{out}"
    );
    let f = e.file("cu.yaml", UPGRADE);
    let out = e.ok(&["apply", "-f", &f]).await;
    assert!(out.contains("clusterupgrade.drover.dev/platform created"), "{out}");
    // Re-applying the same file is a no-op write: generation and resourceVersion stay.
    let before = e
        .ok(&["get", "cu", "platform", "-o", "jsonpath={.metadata.resourceVersion}"])
        .await;
    e.ok(&["apply", "-f", &f]).await;
    let after = e
        .ok(&[
            "get",
            "cu",
            "platform",
            "-o",
            "jsonpath={.metadata.resourceVersion} {.metadata.generation}",
        ])
        .await;
    assert_eq!(after, format!("{before} 1"));
    // Moving the same file to server-side apply takes over client-side apply's fields.
    let out = e.ok(&["apply", "--server-side", "-f", &f]).await;
    assert!(out.contains("serverside-applied"), "{out}");

    let api = cu_api(e.server.client().unwrap());
    let st = json!({"status": {"target": "containerd=1.7.23", "progress": "1/3", "stage": "Runtime",
        "conditions": [{"type": "Ready", "status": "False", "reason": "Progressing", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status("platform", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    let out = e.ok(&["get", "clusterupgrades"]).await;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TARGET", "UPDATED", "STAGE", "READY", "REASON", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..6],
        [
            "platform",
            "containerd=1.7.23",
            "1/3",
            "Runtime",
            "False",
            "Progressing"
        ]
    );
    // Short name and -o json work too.
    let out = e.ok(&["get", "cu", "platform", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"]["stage"], "Runtime");

    // An object breaking a CEL rule is refused with the rule's message.
    let bad = e.file(
        "bad.yaml",
        &UPGRADE
            .replace("name: platform", "name: bad")
            .replace("name: containerd", "name: Bad_Name"),
    );
    let o = e.run(&["apply", "-f", &bad]).await;
    assert!(!o.ok);
    assert!(
        o.stderr.contains("ClusterUpgrade \"bad\" is invalid") && o.stderr.contains("must be a DNS label"),
        "{}",
        o.stderr
    );
}

#[tokio::test]
async fn kubectl_server_side_apply_patch_and_delete() {
    let Some(e) = env().await else { return };
    e.ok(&["apply", "--server-side", "-f", &crd_path()]).await;
    let f = e.file("cu.yaml", UPGRADE);
    let out = e.ok(&["apply", "--server-side", "-f", &f]).await;
    assert!(
        out.contains("clusterupgrade.drover.dev/platform serverside-applied"),
        "{out}"
    );
    let api = cu_api(e.server.client().unwrap());
    let obj = api.get("platform").await.unwrap();
    let mf = obj.metadata.managed_fields.unwrap();
    assert!(
        mf.iter()
            .any(|m| m.manager.as_deref() == Some("kubectl") && m.operation.as_deref() == Some("Apply"))
    );
    // A second manager changing the same field conflicts; --force-conflicts wins.
    let changed = e.file("cu2.yaml", &UPGRADE.replace("1.7.23", "1.7.24"));
    let o = e
        .run(&["apply", "--server-side", "--field-manager", "other", "-f", &changed])
        .await;
    assert!(!o.ok);
    assert!(
        o.stderr
            .contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.components"),
        "{}",
        o.stderr
    );
    e.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "other",
        "--force-conflicts",
        "-f",
        &changed,
    ])
    .await;
    let out = e
        .ok(&["get", "cu", "platform", "-o", "jsonpath={.spec.components[0].version}"])
        .await;
    assert_eq!(out, "1.7.24");

    e.ok(&[
        "patch",
        "cu",
        "platform",
        "--type=merge",
        "-p",
        r#"{"spec":{"paused":true}}"#,
    ])
    .await;
    let out = e
        .ok(&[
            "get",
            "cu",
            "platform",
            "-o",
            "jsonpath={.spec.paused} {.metadata.generation}",
        ])
        .await;
    assert_eq!(out, "true 3");
    let out = e.ok(&["delete", "cu", "platform"]).await;
    assert!(out.contains("clusterupgrade.drover.dev \"platform\" deleted"), "{out}");
    let o = e.run(&["get", "cu", "platform"]).await;
    assert!(!o.ok);
    assert!(
        o.stderr
            .contains("Error from server (NotFound): clusterupgrades.drover.dev \"platform\" not found"),
        "{}",
        o.stderr
    );
}

async fn node_with_pods(c: &kube::Client, pdb_allowed: i32) {
    let nodes: Api<Node> = Api::all(c.clone());
    let n: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    let st = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    for i in 0..2 {
        running_pod(c, "default", &format!("web-{i}"), Some("n1"), json!({"app": "web"})).await;
    }
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(c.clone());
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web"}, "spec": {"minAvailable": 0, "selector": {"matchLabels": {"app": "web"}}}
    }))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let st = json!({"status": {"disruptionsAllowed": pdb_allowed, "currentHealthy": 2, "desiredHealthy": 2 - pdb_allowed, "expectedPods": 2, "observedGeneration": 1}});
    pdbs.patch_status("web", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
}

#[tokio::test]
async fn kubectl_cordons_and_drains_a_node_with_pods_and_a_pdb() {
    let Some(e) = env().await else { return };
    let c = e.server.client().unwrap();
    node_with_pods(&c, 2).await;
    let out = e.ok(&["cordon", "n1"]).await;
    assert!(out.contains("node/n1 cordoned"), "{out}");
    let out = e.ok(&["get", "nodes"]).await;
    assert!(out.contains("Ready,SchedulingDisabled"), "{out}");
    // The cordon is kubectl's in managedFields, as the real server records
    // a write without fieldManager under its user agent's prefix.
    let managers: Vec<String> = Api::<Node>::all(c.clone())
        .get("n1")
        .await
        .unwrap()
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0["f:spec"].get("f:unschedulable").is_some())
        })
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.len() == 1 && managers[0].starts_with("kubectl"),
        "{managers:?}"
    );
    let out = e.ok(&["drain", "n1", "--force", "--timeout=30s"]).await;
    assert!(
        out.contains("pod/web-0 evicted") && out.contains("pod/web-1 evicted"),
        "{out}"
    );
    assert!(out.contains("node/n1 drained"), "{out}");
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    assert!(pods.list(&Default::default()).await.unwrap().items.is_empty());
    let out = e.ok(&["uncordon", "n1"]).await;
    assert!(out.contains("node/n1 uncordoned"), "{out}");
    let nodes: Api<Node> = Api::all(c);
    assert_ne!(nodes.get("n1").await.unwrap().spec.unwrap().unschedulable, Some(true));
}

#[tokio::test]
async fn kubectl_drain_is_held_by_a_pdb_that_allows_no_disruption() {
    let Some(e) = env().await else { return };
    let c = e.server.client().unwrap();
    node_with_pods(&c, 0).await;
    let o = e.run(&["drain", "n1", "--force", "--timeout=3s"]).await;
    assert!(!o.ok);
    let all = format!("{}{}", o.stdout, o.stderr);
    assert!(
        all.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{all}"
    );
    let pods: Api<Pod> = Api::default_namespaced(c);
    assert_eq!(pods.list(&Default::default()).await.unwrap().items.len(), 2);
}

#[tokio::test]
async fn kubectl_waits_for_a_condition_written_through_the_status_subresource() {
    let Some(e) = env().await else { return };
    e.ok(&["apply", "-f", &crd_path()]).await;
    let f = e.file("cu.yaml", UPGRADE);
    e.ok(&["apply", "-f", &f]).await;
    let waiter = e
        .command(&[
            "wait",
            "--for=condition=Ready",
            "clusterupgrade/platform",
            "--timeout=30s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let api = cu_api(e.server.client().unwrap());
    let st = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Done", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status("platform", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(40), waiter.wait_with_output())
        .await
        .expect("kubectl wait ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("clusterupgrade.drover.dev/platform condition met"),
        "{stdout}"
    );
}

#[tokio::test]
async fn kubectl_get_watch_streams_changes() {
    let Some(e) = env().await else { return };
    let mut child = e
        .command(&["get", "configmaps", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let c = e.server.client().unwrap();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::default_namespaced(c);
    let found = within(async {
        let mut created = false;
        loop {
            if !created {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let cm = serde_json::from_value(json!({"metadata": {"name": "watched"}})).unwrap();
                cms.create(&PostParams::default(), &cm).await.unwrap();
                created = true;
            }
            let line = lines.next_line().await.unwrap().expect("kubectl output");
            if line.starts_with("watched") {
                return line;
            }
        }
    })
    .await;
    assert!(found.split_whitespace().count() >= 3, "{found}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn kubesim_serve_writes_a_kubeconfig_kubectl_can_use() {
    if !Path::new(KUBECTL).exists() {
        assert!(
            std::env::var_os("KUBESIM_REQUIRE_KUBECTL").is_none(),
            "kubectl is required"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("kubesim-serve-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    let mut server = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(["serve", "--port", "0", "--kubeconfig"])
        .arg(&kc)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    within(async {
        while !std::fs::read_to_string(&kc).is_ok_and(|s| s.contains("current-context")) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["get", "namespaces"])
            .env("HOME", &dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl ends")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(stdout.contains(ns), "{stdout}");
    }
    server.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
