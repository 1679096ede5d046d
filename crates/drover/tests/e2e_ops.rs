//! Operating drover: metrics, health endpoints, JSON logs and graceful
//! shutdown of the real binary (kubesim), and a rollout on the medium
//! scenario (both beds).

mod support;

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_json_logs_and_graceful_shutdown() {
    let _one = serial().await;
    if !Bed::Kubesim.selected() {
        return;
    }
    let mut env = Env::start(Bed::Kubesim, "small", 600.0).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut drover = env.drover(&["--http-addr", &addr, "--log-format", "json"]);
    let health = within(Duration::from_secs(20), "/healthz", async {
        loop {
            if let Some(r) = http_get(port, "/healthz") {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(health, (200, "ok".to_string()));
    env.apply("runtime", runtime_spec("1.7.23")).await;
    env.wait_for("runtime", "Ready", Duration::from_secs(180), |cu| {
        is(cu, "Ready", "True")
    })
    .await;
    assert_eq!(http_get(port, "/readyz").unwrap().0, 200);

    let (code, body) = http_get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metric(&body, "drover_reconciles_total").unwrap() > 0.0, "{body}");
    assert_eq!(
        metric(&body, "drover_nodes{upgrade=\"runtime\",state=\"updated\"}"),
        Some(8.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "drover_nodes{upgrade=\"runtime\",state=\"updating\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "drover_rollouts_completed_total{upgrade=\"runtime\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "drover_node_steps_total{step=\"Drain\",outcome=\"done\"}"),
        Some(8.0),
        "{body}"
    );
    assert!(body.contains("drover_reconcile_duration_seconds_bucket"), "{body}");
    assert!(
        metric(&body, "drover_node_step_duration_seconds_count{step=\"Upgrade\"}").is_some_and(|n| n >= 8.0),
        "{body}"
    );
    assert_eq!(metric(&body, "drover_leader"), Some(1.0));

    // SIGTERM: a graceful stop, exit code 0.
    let pid = drover.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = within(Duration::from_secs(20), "drover to stop", async {
        loop {
            if let Some(s) = drover.exited() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(status.success(), "{status:?}");
    let log = drover.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string()),
        "{log}"
    );
    assert!(lines.iter().any(|l| l["message"] == "shut down"), "{log}");
}

on_both_beds! {
    async fn the_medium_cluster_rolls_workers_one_zone_at_a_time_in_a_window_of_ten(bed: Bed) {
        let _one = exclusive().await; // 103 nodes: the heaviest bed
        let mut env = Env::start(bed, "medium", 600.0).await;
        let _drover = env.drover(&[]);
        let mut spec = runtime_spec("1.7.23");
        spec["components"] = serde_json::json!([job("containerd", "1.7.23"), job("kubelet", "v1.31.5")]);
        // One zone at a time, 20% of its 50 workers: a window of 10, as 10% of 100 would be.
        spec["strategy"]["maxUnavailable"] = serde_json::json!("20%");
        spec["strategy"]["topologyKey"] = serde_json::json!("topology.kubernetes.io/zone");
        env.apply("platform", spec).await;
        let cu = env
            .wait_for("platform", "Ready", Duration::from_secs(600), |cu| {
                is(cu, "Ready", "True")
            })
            .await;
        assert_eq!(cu.status.unwrap().progress.as_deref(), Some("103/103"));
        let report = env.report().await;
        assert!(report.pdb_violations.is_empty(), "{:?}", report.pdb_violations);
        assert!(report.cordoned.is_empty());
        let workers = report.max_unavailable.get("worker").copied().unwrap_or(0);
        assert!(
            (1..=10).contains(&workers),
            "20% of a zone's 50 workers is 10; saw {workers} at once"
        );
        let zone = |n: &str| {
            if n.starts_with("worker-a") {
                "zone-a".to_string()
            } else if n.starts_with("worker-b") {
                "zone-b".to_string()
            } else {
                format!("control plane {n}")
            }
        };
        assert_eq!(env.progress.max_zones_in_flight(zone), 1, "one zone at a time");
        assert!(report.max_unavailable.get("control-plane").copied().unwrap_or(0) <= 1);
        let back = env.progress.regressions();
        assert!(back.is_empty(), "progress records went back: {back:#?}");
        assert_eq!(env.progress.nodes(), 103, "every node's record was seen");
    }
}

/// Real bed only: the audit-log check of PDB violations is not vacuous. A
/// pod evicted with drover's credentials is no violation; one deleted
/// with them, bypassing the budget, is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_beds_violation_check_sees_a_delete_that_bypasses_a_budget() {
    if !Bed::Real.selected() {
        return;
    }
    let _one = serial().await;
    let env = Env::start(Bed::Real, "small", 600.0).await;
    // Bounded like every kubectl of the harness: killed after a minute.
    let try_as_drover = |args: &[&str]| {
        let mut cmd = std::process::Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&env.drover_kubeconfig).args(args);
        support::real::run_bounded(&mut cmd, Duration::from_secs(60))
    };
    let as_drover = |args: &[&str]| {
        let (ok, out, err) = try_as_drover(args);
        assert!(ok, "kubectl {args:?}: {err}");
        out
    };
    let pods = as_drover(&["get", "pods", "-n", "shop", "-l", "app=web", "-o", "name"]);
    let pods: Vec<&str> = pods.lines().map(|l| l.trim_start_matches("pod/")).collect();
    assert!(pods.len() >= 2, "{pods:?}");
    // An eviction through the Eviction API (policy/v1), as drover's drain does.
    let eviction = serde_json::json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pods[0], "namespace": "shop"}});
    let body = env.dir.join("eviction.json");
    std::fs::write(&body, eviction.to_string()).unwrap();
    // The budget may not allow a disruption yet (a replacement still
    // starting): the server answers 429 until it does, as drover's drain sees.
    let path = format!("/api/v1/namespaces/shop/pods/{}/eviction", pods[0]);
    let args = ["create", "--raw", path.as_str(), "-f", body.to_str().unwrap()];
    within(Duration::from_secs(120), "the eviction to be accepted", async {
        loop {
            let (ok, _, err) = try_as_drover(&args);
            if ok {
                return;
            }
            assert!(err.contains("TooManyRequests"), "kubectl {args:?}: {err}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert_eq!(env.report().await.pdb_violations, vec![], "an eviction is no violation");
    as_drover(&["delete", "pod", "-n", "shop", pods[1], "--wait=false"]);
    let v = env.report().await.pdb_violations;
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        (
            v[0].namespace.as_str(),
            v[0].pdb.as_str(),
            v[0].pod.as_str(),
            v[0].kind.as_str()
        ),
        ("shop", "web", pods[1], "Deletion")
    );
}
