//! Node lifecycle through the real `drover` binary, on both beds: reboots
//! (a Job that reboots after it exits, and a Job that asks for a reboot),
//! OS and kernel text verification, retries with backoff, the terminal
//! states kstatus and `kubectl wait` read, halts and what they leave
//! cordoned. docs/api.md's decision table names the test of each row.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

const ROLLOUT: Duration = Duration::from_secs(240);

/// Each node's bootID now.
async fn boot_ids(env: &Env) -> BTreeMap<String, String> {
    let nodes: Api<Node> = Api::all(env.client.clone());
    nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| {
            let boot = n
                .status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.boot_id.clone());
            (n.name_any(), boot.unwrap_or_default())
        })
        .collect()
}

/// The example's spec, scoped to the workers to keep the test short.
fn os_patch_example() -> Value {
    let text = std::fs::read_to_string(real::repo_root().join("examples/upgrades/os-patch.yaml")).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let mut spec = doc["spec"].clone();
    spec["nodeSelector"] =
        json!({"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]});
    spec["drain"]["force"] = json!(true);
    spec
}

/// The runtime upgrade of the workers alone: what these tests check does not
/// need the control plane, and CI's real lane is shorter for it.
fn workers_runtime(version: &str) -> Value {
    let mut spec = runtime_spec(version);
    spec["nodeSelector"] =
        json!({"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]});
    spec
}

/// Worker names of the small scenario.
fn workers(ids: &BTreeMap<String, String>) -> Vec<String> {
    ids.keys().filter(|n| n.starts_with("worker")).cloned().collect()
}

on_both_beds! {
    async fn the_os_patch_example_reboots_each_node_and_none_is_uncordoned_before_it_is_back(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let before = boot_ids(&env).await;
        let _drover = env.drover(&[]);
        env.apply("os-patch", os_patch_example()).await;
        let cu = env
            .wait_for("os-patch", "Ready", env.timeout(ROLLOUT), |cu| is(cu, "Ready", "True"))
            .await;
        assert_eq!(cu.status.as_ref().unwrap().progress.as_deref(), Some("5/5"));
        let after = boot_ids(&env).await;
        let nodes: Api<Node> = Api::all(env.client.clone());
        for w in workers(&before) {
            assert_ne!(before[&w], after[&w], "{w} was not rebooted");
            let info = nodes.get(&w).await.unwrap().status.unwrap().node_info.unwrap();
            assert!(info.os_image.starts_with("Ubuntu 24.04"), "{w}: {}", info.os_image);
            assert_eq!(info.kernel_version, "6.8.0-45-generic", "{w}");
        }
        // The recorder's time line: no node was ever schedulable while it
        // was down, i.e. none was uncordoned before it came back, though
        // the kernel's reboot starts after its Job has already succeeded.
        let report = env.report().await;
        let schedulable_down: Vec<_> = report
            .node_events
            .iter()
            .filter(|e| !e.cordoned && !e.ready)
            .collect();
        assert!(schedulable_down.is_empty(), "uncordoned before back: {schedulable_down:?}");
        let downs = report.node_events.iter().filter(|e| !e.ready).count();
        assert!(downs >= 10, "two reboots per worker expected, saw {downs} NotReady transitions");
        assert!(report.cordoned.is_empty(), "{:?}", report.cordoned);
        let max = report.max_unavailable.get("worker").copied().unwrap_or(0);
        assert!(max <= 1, "{max} workers down at once, maxUnavailable 1");
        // Each reboot was a visible step: the Reboot step was recorded with the bootID before.
        let records = env.progress.all();
        let rebooting = records
            .values()
            .flatten()
            .filter(|r| r.contains("\"phase\":\"Rebooting\""))
            .count();
        assert!(rebooting >= 10, "{rebooting} Rebooting records");
        assert!(
            records.values().flatten().any(|r| r.contains("\"rebootJob\":true")),
            "the OS's reboot request went through drover's reboot Job"
        );
    }
}

on_both_beds! {
    async fn a_reboot_request_drover_cannot_carry_out_fails_the_node_with_reboot_failed(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let _drover = env.drover(&[]);
        let mut spec = os_patch_example();
        // The OS alone, which asks for a reboot; no spec.reboot.image to honour it.
        spec["components"] = json!([spec["components"][0].clone()]);
        spec["reboot"] = json!({"timeout": "1h"});
        spec["strategy"]["retries"] = json!(0);
        env.apply("os-patch", spec).await;
        let cu = env
            .wait_for("os-patch", "Stalled with RebootFailed", env.timeout(ROLLOUT), |cu| {
                stalled_with(cu, "RebootFailed")
            })
            .await;
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        assert!(message.contains("asked for a reboot") && message.contains("spec.reboot.image"), "{message}");
        // The failed node is on its way back when the condition is written: it is handed back.
        within(env.timeout(Duration::from_secs(30)), "the failed node handed back", async {
            while !env.report().await.cordoned.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
    }
}

on_both_beds! {
    async fn one_failure_then_success_completes_with_max_failures_zero(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let _drover = env.drover(&[]);
        env.fail_upgrades_on("containerd", &["worker-1"]).await;
        let mut spec = workers_runtime("1.7.23");
        spec["strategy"]["retryDelay"] = json!("2s");
        env.apply("runtime", spec).await;
        let cu = env
            .wait_for("runtime", "worker-1 waiting for its retry", env.timeout(ROLLOUT), |cu| {
                cu.status
                    .as_ref()
                    .is_some_and(|s| s.nodes.iter().any(|n| n.name == "worker-1" && n.retries >= 1))
            })
            .await;
        let st = cu.status.unwrap();
        let w1 = st.nodes.iter().find(|n| n.name == "worker-1").unwrap();
        assert_eq!((st.counts.failed, st.counts.updating), (0, 1), "a retry is no failure and holds its slot");
        assert!(w1.message.contains("try 1 failed"), "{}", w1.message);
        env.clear_faults().await;
        let cu = env
            .wait_for("runtime", "Ready", env.timeout(ROLLOUT), |cu| is(cu, "Ready", "True"))
            .await;
        assert_eq!(cu.status.unwrap().counts.failed, 0);
        let report = env.report().await;
        let max = report.max_unavailable.get("worker").copied().unwrap_or(0);
        assert!(max <= 1, "{max} workers down at once while retrying, maxUnavailable 1");
        assert!(report.cordoned.is_empty(), "{:?}", report.cordoned);
    }
}

on_both_beds! {
    async fn a_tolerated_failure_ends_stalled_completed_with_failures_and_kubectl_wait_returns(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let _drover = env.drover(&[]);
        env.fail_upgrades_on("containerd", &["worker-2"]).await;
        let mut spec = workers_runtime("1.7.23");
        spec["strategy"]["maxFailures"] = json!(1);
        spec["strategy"]["retries"] = json!(1);
        spec["strategy"]["retryDelay"] = json!("1s");
        env.apply("runtime", spec).await;
        let wait = env.kubectl_async(&[
            "wait", "--for=condition=Stalled", "clusterupgrade/runtime", "--timeout=600s",
        ]);
        let cu = env
            .wait_for("runtime", "Stalled with CompletedWithFailures", env.timeout(ROLLOUT), |cu| {
                stalled_with(cu, "CompletedWithFailures")
            })
            .await;
        let out = wait.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl wait: {}", String::from_utf8_lossy(&out.stderr));
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        assert!(message.contains("worker-2 (UpgradeJobFailed at Upgrade of containerd)"), "{message}");
        assert_eq!(condition(&cu, "Ready").unwrap().0, "False");
        assert_eq!(condition(&cu, "Reconciling").unwrap().0, "False");
        let st = cu.status.unwrap();
        assert_eq!((st.counts.updated, st.counts.failed), (4, 1));
        assert!(st.completion_time.is_some(), "the rollout is over");
        let w2 = st.nodes.iter().find(|n| n.name == "worker-2").unwrap();
        assert_eq!((w2.state.as_str(), w2.retries), ("Failed", 1));
    }
}

on_both_beds! {
    async fn paused_half_way_reads_as_in_progress_not_done(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let _drover = env.drover(&[]);
        env.apply("runtime", workers_runtime("1.7.23")).await;
        env.wait_for("runtime", "a node started", env.timeout(ROLLOUT), |cu| {
            cu.status.as_ref().is_some_and(|s| s.counts.updated + s.counts.updating >= 2)
        })
        .await;
        env.patch_spec("runtime", json!({"paused": true})).await;
        let cu = env
            .wait_for("runtime", "Paused", env.timeout(ROLLOUT), |cu| {
                condition(cu, "Reconciling").is_some_and(|c| c.1 == "Paused") && is(cu, "Reconciling", "True")
            })
            .await;
        assert_eq!(condition(&cu, "Ready").unwrap().0, "False");
        assert_eq!(condition(&cu, "Stalled").unwrap().0, "False");
        env.patch_spec("runtime", json!({"paused": false})).await;
        env.wait_for("runtime", "Ready", env.timeout(ROLLOUT), |cu| is(cu, "Ready", "True"))
            .await;
    }
}

on_both_beds! {
    async fn a_halted_drain_hands_the_node_back_by_default_and_keeps_it_cordoned_when_asked(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        env.block_pdb("shop", "web").await;
        let _drover = env.drover(&[]);
        let mut spec = workers_runtime("1.7.23");
        spec["drain"]["timeout"] = json!("3s");
        env.apply("runtime", spec).await;
        // Default onHalt Uncordon: stalled, the node handed back, nothing left cordoned.
        let cu = env
            .wait_for("runtime", "Stalled with DrainBlocked, handed back", env.timeout(ROLLOUT), |cu| {
                stalled_with(cu, "DrainBlocked")
                    && condition(cu, "Stalled").is_some_and(|c| c.2.contains("handed back"))
            })
            .await;
        let st = cu.status.unwrap();
        assert!(st.left_cordoned.is_empty(), "{:?}", st.left_cordoned);
        let blocked = &st.nodes[0];
        assert_eq!(blocked.state, "Blocked");
        let report = within(Duration::from_secs(30), "the node uncordoned", async {
            loop {
                let r = env.report().await;
                if r.cordoned.is_empty() {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        assert!(report.cordoned.is_empty());

        // KeepCordoned: a spec change retries the node, which stays cordoned
        // when its drain halts again, and status says why.
        env.patch_spec("runtime", json!({"strategy": {"onHalt": "KeepCordoned"}})).await;
        let cu = env
            .wait_for("runtime", "left cordoned", env.timeout(ROLLOUT), |cu| {
                stalled_with(cu, "DrainBlocked")
                    && cu.status.as_ref().is_some_and(|s| !s.left_cordoned.is_empty())
            })
            .await;
        let left = &cu.status.as_ref().unwrap().left_cordoned[0];
        assert!(left.reason.contains("onHalt is KeepCordoned"), "{left:?}");
        let report = env.report().await;
        assert_eq!(report.cordoned, vec![left.name.clone()]);
        // The budget relaxes: the kept node's drain completes by itself.
        env.clear_faults().await;
        env.wait_for("runtime", "Ready", env.timeout(ROLLOUT), |cu| is(cu, "Ready", "True"))
            .await;
        assert!(env.report().await.cordoned.is_empty());
    }
}

on_both_beds! {
    async fn skip_node_reports_the_skipped_node_and_halts_only_past_max_failures(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        env.block_pdb("shop", "db").await;
        let _drover = env.drover(&[]);
        let mut spec = workers_runtime("1.7.23");
        spec["drain"]["timeout"] = json!("3s");
        spec["drain"]["onTimeout"] = json!("SkipNode");
        spec["strategy"]["maxFailures"] = json!(3);
        env.apply("runtime", spec).await;
        let cu = env
            .wait_for("runtime", "over with the skipped nodes", env.timeout(ROLLOUT), |cu| {
                stalled_with(cu, "CompletedWithFailures")
            })
            .await;
        let st = cu.status.unwrap();
        assert!(st.counts.skipped >= 1, "{:?}", st.counts);
        assert_eq!(st.counts.skipped, st.counts.failed);
        assert!(st.nodes.iter().all(|n| n.state == "Skipped"), "{:?}", st.nodes);
        assert!(st.nodes.iter().all(|n| n.message.contains("skipped")), "{:?}", st.nodes);
        assert!(env.report().await.cordoned.is_empty());
    }
}

on_both_beds! {
    async fn an_admin_annotation_keeps_a_node_drover_cordoned_cordoned_and_status_says_so(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        env.block_pdb("shop", "web").await;
        let _drover = env.drover(&[]);
        let mut spec = workers_runtime("1.7.23");
        // The kept node stays unavailable and uses up one of the two.
        spec["strategy"]["maxUnavailable"] = json!(2);
        env.apply("runtime", spec).await;
        let cu = env
            .wait_for("runtime", "a drain blocked", env.timeout(ROLLOUT), |cu| {
                cu.status.as_ref().is_some_and(|s| s.nodes.iter().any(|n| n.state == "Blocked"))
            })
            .await;
        let node = cu.status.unwrap().nodes.iter().find(|n| n.state == "Blocked").unwrap().name.clone();
        let nodes: Api<Node> = Api::all(env.client.clone());
        let keep = json!({"metadata": {"annotations": {"drover.dev/keep-cordoned": "disk errors, JIRA-123"}}});
        nodes.patch(&node, &PatchParams::default(), &Patch::Merge(&keep)).await.unwrap();
        env.clear_faults().await;
        let cu = env
            .wait_for("runtime", "the node kept", env.timeout(ROLLOUT), |cu| {
                cu.status.as_ref().is_some_and(|s| s.left_cordoned.iter().any(|l| l.name == node))
                    && cu.status.as_ref().is_some_and(|s| s.counts.updated >= 5)
            })
            .await;
        let st = cu.status.unwrap();
        let left = st.left_cordoned.iter().find(|l| l.name == node).unwrap();
        assert!(left.reason.contains("drover.dev/keep-cordoned: disk errors, JIRA-123"), "{left:?}");
        assert_eq!(env.report().await.cordoned, vec![node.clone()]);
        // The admin hands it back: drover undoes its own cordon.
        let release = json!({"metadata": {"annotations": {"drover.dev/keep-cordoned": null}}});
        nodes.patch(&node, &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
        within(env.timeout(Duration::from_secs(60)), "the node uncordoned", async {
            while !env.report().await.cordoned.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
    }
}

on_both_beds! {
    async fn an_admin_who_cordons_a_node_again_over_drovers_cordon_keeps_it(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        env.block_pdb("shop", "web").await;
        let _drover = env.drover(&[]);
        let mut spec = workers_runtime("1.7.23");
        spec["strategy"]["maxUnavailable"] = json!(2);
        env.apply("runtime", spec).await;
        let cu = env
            .wait_for("runtime", "a drain blocked", env.timeout(ROLLOUT), |cu| {
                cu.status.as_ref().is_some_and(|s| s.nodes.iter().any(|n| n.state == "Blocked"))
            })
            .await;
        let node = cu.status.unwrap().nodes.iter().find(|n| n.state == "Blocked").unwrap().name.clone();
        // The admin takes the node over with kubectl: uncordon, then cordon again.
        for verb in ["uncordon", "cordon"] {
            let out = env.kubectl(&[verb, &node]);
            assert!(out.status.success(), "kubectl {verb}: {}", String::from_utf8_lossy(&out.stderr));
        }
        env.clear_faults().await;
        let cu = env
            .wait_for("runtime", "the node left cordoned", env.timeout(ROLLOUT), |cu| {
                cu.status.as_ref().is_some_and(|s| s.left_cordoned.iter().any(|l| l.name == node) && s.counts.updated >= 5)
            })
            .await;
        let st = cu.status.unwrap();
        let left = st.left_cordoned.iter().find(|l| l.name == node).unwrap();
        assert!(left.reason.starts_with("cordoned again by kubectl"), "{left:?}");
        assert_eq!(env.report().await.cordoned, vec![node.clone()]);
    }
}
