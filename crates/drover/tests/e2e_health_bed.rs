//! The beds' health endpoints, on both beds, driven by a real drover
//! rollout: a node drover upgrades to a bad version answers 503 on its
//! health endpoint and shows in the query API (`KubesimBadVersion` under
//! `effect: Metric`; its long-running pods held unready under
//! `PodsUnready`), an `AlertFiring` fault fires, and clearing the faults
//! brings all of it back. This proves the beds, not drover's health checks.

mod support;

use std::time::Duration;

use kubesim::sim::BadEffect;
use serde_json::Value;
use support::*;

/// `GET {base}/api/v1/query`: the result vector.
fn query(env: &Env, q: &str) -> Vec<Value> {
    let encoded: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (code, body) = env.health_get(&format!("/api/v1/query?query={encoded}"));
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {body}: {e}"));
    assert_eq!((code, v["status"].as_str()), (200, Some("success")), "{q}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The Ready condition of each long-running pod on `node` (not mirror pods,
/// not Job pods), by name.
async fn pods_ready_on(env: &Env, node: &str) -> Vec<(String, bool)> {
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(env.client.clone());
    let lp = kube::api::ListParams::default().fields(&format!("spec.nodeName={node}"));
    pods.list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            let mirror = p
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
            let always = p
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref())
                .unwrap_or("Always")
                == "Always";
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            always && !mirror && running && p.metadata.deletion_timestamp.is_none()
        })
        .map(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            (p.metadata.name.unwrap_or_default(), ready)
        })
        .collect()
}

/// Polls `check` every 200 ms until it holds, within `limit`.
async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    within(limit, what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
}

on_both_beds! {
    async fn a_node_drover_upgrades_to_a_bad_version_fails_its_health_endpoint_and_shows_in_the_query_api(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let base = env.health_base();
        assert!(base.starts_with("http://127.0.0.1:") && !base.ends_with('/'), "{base}");
        assert_eq!(env.health_get("/nodes/worker-1/healthz"), (200, "ok\n".to_string()));
        assert_eq!(env.health_get("/nodes/no-such-node/healthz").0, 404);
        // containerd 1.7.23 is bad: on worker-1 it fires an alert, on
        // worker-2 it holds the pods unready. And an alert of its own.
        env.bad_version_on("containerd", "1.7.23", BadEffect::Metric, &["worker-1"]).await;
        env.bad_version_on("containerd", "1.7.23", BadEffect::PodsUnready, &["worker-2"]).await;
        env.fire_alert("EtcdNoLeader", "critical").await;
        let short = env.timeout(Duration::from_secs(10));
        until("the alert to fire", short, async || {
            query(&env, r#"ALERTS{alertname="EtcdNoLeader",alertstate="firing",severity="critical"}"#).len() == 1
        })
        .await;
        assert!(query(&env, "kubesim_bad_version").is_empty(), "no node runs 1.7.23 yet");

        let _drover = env.drover(&[]);
        let mut spec = runtime_spec("1.7.23");
        spec["nodeSelector"] = serde_json::json!({"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["worker-1", "worker-2"]}]});
        env.apply("runtime", spec).await;
        env.wait_for("runtime", "Ready", Duration::from_secs(60), |cu| is(cu, "Ready", "True"))
            .await;

        let (code, body) = env.health_get("/nodes/worker-1/healthz");
        assert_eq!((code, body.as_str()), (503, "unhealthy: containerd 1.7.23 is a bad version\n"));
        assert_eq!(env.health_get("/nodes/worker-2/healthz").0, 503);
        assert_eq!(env.health_get("/nodes/worker-3/healthz"), (200, "ok\n".to_string()), "not upgraded");
        let fired = query(&env, r#"ALERTS{alertname="KubesimBadVersion"}"#);
        assert_eq!(fired.len(), 1, "only the Metric node fires: {fired:?}");
        assert_eq!(
            (fired[0]["metric"]["node"].as_str(), fired[0]["metric"]["component"].as_str()),
            (Some("worker-1"), Some("containerd"))
        );
        let bad = query(&env, r#"count(kubesim_bad_version{version="1.7.23"})"#);
        assert_eq!(bad[0]["value"][1], "2", "{bad:?}");
        // worker-2's pods (its DaemonSet pods at least: the drain moved the
        // rest) are unready and stay so; worker-1's are Ready.
        until("worker-2's pods to turn unready", short, async || {
            let pods = pods_ready_on(&env, "worker-2").await;
            !pods.is_empty() && pods.iter().all(|(_, r)| !r)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let held = pods_ready_on(&env, "worker-2").await;
        assert!(held.iter().all(|(_, r)| !r), "no kubelet (KWOK) turns them Ready: {held:?}");
        let w1 = pods_ready_on(&env, "worker-1").await;
        assert!(!w1.is_empty() && w1.iter().all(|(_, r)| *r), "{w1:?}");

        // The faults go: healthy again, the pods Ready, no alert.
        env.clear_faults().await;
        until("worker-2 to be healthy with its pods Ready", short, async || {
            let pods = pods_ready_on(&env, "worker-2").await;
            env.health_get("/nodes/worker-2/healthz").0 == 200 && !pods.is_empty() && pods.iter().all(|(_, r)| *r)
        })
        .await;
        assert!(query(&env, "ALERTS").is_empty());
        assert_eq!(env.health_get("/nodes/worker-1/healthz").0, 200);
    }
}
