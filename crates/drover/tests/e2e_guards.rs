//! Health gates, the canary with its approval, automatic rollback and the
//! pre-drain hook, through the real `drover` binary on both beds:
//! - a bad version (its node's health endpoint answers 503) is caught on
//!   the canary and rolled back, no other node touched, drover killed in
//!   the middle of the rollback;
//! - a firing alert (a Prometheus query) holds the rollout before any node
//!   is touched, clearing it resumes, and the canary is approved with
//!   `kubectl drover approve`;
//! - the canary approved by `kubectl apply` of `approvedCanary`;
//! - a failing pre-drain hook halts before any pod is evicted.

mod support;

use std::time::Duration;

use kubesim::sim::BadEffect;
use serde_json::{Value, json};
use support::*;

/// containerd on the workers only (the canary is a worker).
fn workers_spec(version: &str) -> Value {
    let mut spec = runtime_spec(version);
    spec["nodeSelector"] =
        json!({"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]});
    spec["strategy"]["maxUnavailable"] = json!(2);
    spec
}

fn record(r: &str) -> Value {
    serde_json::from_str(r).unwrap_or(Value::Null)
}

/// The nodes whose records ever showed `pred`.
fn nodes_where(env: &Env, pred: impl Fn(&Value) -> bool) -> Vec<String> {
    env.progress
        .all()
        .into_iter()
        .filter(|(_, rs)| rs.iter().any(|r| pred(&record(r))))
        .map(|(n, _)| n)
        .collect()
}

/// Node → the uids of the pods on it.
async fn pods_by_node(env: &Env) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    use kube::ResourceExt as _;
    let pods = kube::Api::<k8s_openapi::api::core::v1::Pod>::all(env.client.clone())
        .list(&Default::default())
        .await
        .unwrap();
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    // drover's own Job pods (the hook's) come and go; the workloads' must not.
    for p in pods
        .into_iter()
        .filter(|p| !p.labels().contains_key("drover.dev/component"))
    {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            out.entry(n).or_default().insert(p.uid().unwrap_or_default());
        }
    }
    out
}

/// `kubectl get cu -w` in the background, for the transcript.
struct Watch(std::process::Child);

impl Watch {
    fn start(env: &Env) -> Watch {
        Watch(env.kubectl_async(&["get", "cu", "-w"]))
    }

    fn transcript(mut self) -> String {
        let _ = self.0.kill();
        let out = self.0.wait_with_output().expect("kubectl exits once killed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

on_both_beds! {
    async fn a_bad_version_is_caught_on_the_canary_and_rolled_back_touching_no_other_node(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 60.0).await;
        env.bad_version("containerd", "1.7.23", BadEffect::PodsUnready).await;
        let watch = Watch::start(&env);
        let mut drover = env.drover(&[]);
        let mut spec = workers_spec("1.7.23");
        spec["healthChecks"] = json!([{
            "name": "node-health",
            "http": {"url": format!("{}/nodes/{{{{node}}}}/healthz", env.health_base())},
            "interval": "1s",
            "timeout": "15s"
        }]);
        spec["strategy"]["retries"] = json!(0);
        spec["strategy"]["canary"] = json!({"nodes": 1, "requireApproval": true});
        spec["strategy"]["onFailure"] = json!("Rollback");
        env.apply("platform", spec).await;
        // The rollback starts: kill drover in the middle of it, then start another.
        within(env.timeout(Duration::from_secs(180)), "a rollback to start", async {
            while nodes_where(&env, |r| r["rollback"] == true).is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        drover.kill();
        let _drover = env.drover(&[]);
        let cu = env
            .wait_for("platform", "Stalled with RolledBack", Duration::from_secs(240), |cu| {
                stalled_with(cu, "RolledBack")
            })
            .await;
        let transcript = watch.transcript();
        eprintln!("kubectl get cu -w ({bed:?}):\n{transcript}");
        let st = cu.status.clone().unwrap();
        let canary = st.canary.clone().expect("status.canary");
        assert_eq!(canary.state, "Failed");
        assert_eq!(canary.nodes.len(), 1);
        let node = canary.nodes[0].clone();
        assert_eq!(st.rolled_back.len(), 1, "{:?}", st.rolled_back);
        assert_eq!((st.rolled_back[0].name.as_str(), st.rolled_back[0].versions.as_str()), (node.as_str(), "containerd=1.7.22"));
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        assert!(message.contains(&format!("returned to containerd=1.7.22 after HealthCheckFailed: health check node-health on {node}")), "{message}");
        assert!(message.contains("HTTP 503"), "{message}");
        // Only the canary was ever touched, and it runs the old version again.
        assert_eq!(env.progress.all().keys().cloned().collect::<Vec<_>>(), vec![node.clone()]);
        let report = env.report().await;
        assert!(report.cordoned.is_empty(), "{:?}", report.cordoned);
        assert_eq!(report.max_unavailable.get("worker").copied().unwrap_or(0), 1);
        assert!(report.pdb_violations.is_empty(), "{:?}", report.pdb_violations);
        let versions: Vec<String> = report
            .versions
            .get(&node)
            .into_iter()
            .flatten()
            .filter(|c| c.component == "container-runtime")
            .map(|c| c.to.trim_start_matches("containerd://").to_string())
            .collect();
        assert_eq!(versions.last().map(String::as_str), Some("1.7.22"), "{versions:?}");
        assert!(versions.iter().any(|v| v == "1.7.23"), "it did run the bad version: {versions:?}");
        assert!(env.progress.regressions().is_empty(), "{:?}", env.progress.regressions());
        assert!(transcript.contains("RolledBack"), "{transcript}");
    }
}

on_both_beds! {
    async fn a_firing_alert_holds_the_rollout_untouched_and_the_canary_is_approved_with_kubectl_drover(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 60.0).await;
        env.fire_alert("EtcdInsufficientMembers", "critical").await;
        let _drover = env.drover(&[]);
        let mut spec = workers_spec("1.7.23");
        spec["healthChecks"] = json!([{
            "name": "no-critical-alerts",
            "prometheus": {"url": env.health_base(), "query": "ALERTS{alertstate=\"firing\",severity=\"critical\"}"},
            "interval": "1s"
        }]);
        spec["strategy"]["canary"] = json!({"nodes": 1, "requireApproval": true});
        env.apply("platform", spec).await;
        let cu = env
            .wait_for("platform", "held by the alert", Duration::from_secs(60), |cu| {
                condition(cu, "Reconciling").is_some_and(|c| c.0 == "True" && c.1 == "HealthCheckFailed")
            })
            .await;
        let (_, _, message) = condition(&cu, "Reconciling").unwrap();
        assert!(message.contains("health check no-critical-alerts") && message.contains("EtcdInsufficientMembers"), "{message}");
        // Held: nothing cordoned for a while.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(env.report().await.max_unavailable.get("worker").copied().unwrap_or(0), 0, "no node touched while the alert fires");
        env.clear_faults().await;
        let cu = env
            .wait_for("platform", "AwaitingApproval", Duration::from_secs(120), |cu| {
                condition(cu, "Ready").is_some_and(|c| c.1 == "AwaitingApproval")
            })
            .await;
        assert!(is(&cu, "Reconciling", "True"));
        let canary = cu.status.clone().unwrap().canary.unwrap();
        assert_eq!(canary.state, "AwaitingApproval");
        let touched = env.progress.all().len();
        assert_eq!(touched, 1, "only the canary before the approval");
        // Approved through kubectl's plugin mechanism.
        let bin = env.dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_drover"), bin.join("kubectl-drover")).unwrap();
        let path = std::env::join_paths(
            std::iter::once(bin.clone()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .unwrap();
        let out = support::real::run_bounded(
            std::process::Command::new("kubectl")
                .args(["drover", "approve", "platform"])
                .env("PATH", path)
                .env("KUBECONFIG", &env.kubeconfig),
            Duration::from_secs(60),
        );
        assert!(out.0, "{}{}", out.1, out.2);
        assert!(out.1.contains(&format!("approved canary {}", canary.hash)), "{}", out.1);
        let cu = env
            .wait_for("platform", "Ready", Duration::from_secs(240), |cu| is(cu, "Ready", "True"))
            .await;
        assert_eq!(cu.spec.approved_canary.as_deref(), Some(canary.hash.as_str()));
        assert_eq!(cu.status.unwrap().progress.as_deref(), Some("5/5"));
        assert!(env.report().await.cordoned.is_empty());
    }
}

on_both_beds! {
    async fn the_canary_is_approved_by_kubectl_apply_of_its_hash(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 60.0).await;
        let _drover = env.drover(&[]);
        let mut spec = workers_spec("1.7.23");
        spec["strategy"]["canary"] = json!({"nodes": 1, "requireApproval": true});
        env.apply("platform", spec.clone()).await;
        let cu = env
            .wait_for("platform", "AwaitingApproval", Duration::from_secs(120), |cu| {
                condition(cu, "Ready").is_some_and(|c| c.1 == "AwaitingApproval")
            })
            .await;
        let hash = cu.status.unwrap().canary.unwrap().hash;
        // What a pipeline does: the same manifest, with the hash it read.
        spec["approvedCanary"] = json!(hash);
        let manifest = json!({"apiVersion": "drover.dev/v1alpha1", "kind": "ClusterUpgrade", "metadata": {"name": "platform"}, "spec": spec});
        let file = env.dir.join("approved.json");
        std::fs::write(&file, manifest.to_string()).unwrap();
        let out = env.kubectl(&["apply", "--server-side", "--force-conflicts", "--field-manager", "gitops", "-f", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        env.wait_for("platform", "Ready", Duration::from_secs(240), |cu| is(cu, "Ready", "True"))
            .await;
        assert!(env.report().await.cordoned.is_empty());
    }
}

on_both_beds! {
    async fn a_failing_pre_drain_hook_halts_before_any_pod_is_evicted(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 60.0).await;
        env.fail_upgrades("hook-pre-drain").await;
        let pods_before = pods_by_node(&env).await;
        let _drover = env.drover(&[]);
        let mut spec = workers_spec("1.7.23");
        spec["strategy"]["maxUnavailable"] = json!(1);
        spec["hooks"] = json!({"preDrain": {"image": "registry.example.com/ceph-noout:1", "timeout": "2m"}});
        env.apply("platform", spec).await;
        let cu = env
            .wait_for("platform", "Stalled with PreDrainHookFailed", Duration::from_secs(180), |cu| {
                stalled_with(cu, "PreDrainHookFailed")
            })
            .await;
        let st = cu.status.unwrap();
        let failed: Vec<&str> = st.nodes.iter().filter(|n| n.state.as_str() == "Failed").map(|n| n.name.as_str()).collect();
        assert_eq!(failed.len(), 1, "{:?}", st.nodes);
        // No pod left its node: the drain never began.
        let pods_after = pods_by_node(&env).await;
        // (The real scheduler may still place a late replica there before the
        // cordon, so the check is that none of the earlier pods went.)
        let (before, after) = (pods_before.get(failed[0]).cloned().unwrap_or_default(), pods_after.get(failed[0]).cloned().unwrap_or_default());
        let gone: Vec<&String> = before.difference(&after).collect();
        assert!(!before.is_empty() && gone.is_empty(), "pods gone from {}: {gone:?}", failed[0]);
        // Status is written before the hand-back is performed: wait for it, bounded.
        within(env.timeout(Duration::from_secs(30)), "the failed node handed back", async {
            while !env.report().await.cordoned.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        assert!(nodes_where(&env, |r| r["phase"] == "Draining").is_empty(), "no node reached its drain");
    }
}
