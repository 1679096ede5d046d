//! Rollouts through the real `drover` binary on both beds (kubesim, and
//! the real control plane of scripts/controlplane.sh), with the invariant
//! recorder checked afterwards. `api_errors_and_watch_drops_still_converge`
//! is kubesim-only: it injects faults into kubesim's own API server.

mod support;

use std::time::Duration;

use kubesim::sim::Fault;
use support::*;

const ROLLOUT: Duration = Duration::from_secs(180);

/// The invariants every rollout must keep, from the bed's recorder.
async fn assert_invariants(env: &Env, max_workers: usize) {
    let report = env.report().await;
    assert!(
        report.pdb_violations.is_empty(),
        "PDB violations: {:?}",
        report.pdb_violations
    );
    assert!(report.cordoned.is_empty(), "nodes left cordoned: {:?}", report.cordoned);
    let cp = report.max_unavailable.get("control-plane").copied().unwrap_or(0);
    assert!(cp <= 1, "{cp} control-plane nodes were unavailable at once");
    let workers = report.max_unavailable.get("worker").copied().unwrap_or(0);
    assert!(
        workers <= max_workers,
        "{workers} workers were unavailable at once, budget {max_workers}"
    );
    let back = env.progress.regressions();
    assert!(back.is_empty(), "progress records went back: {back:#?}");
    assert!(env.progress.nodes() > 0, "the progress watch saw no record");
    let steered = steered(env).await;
    assert!(steered.is_empty(), "upgrade-pending taints left: {steered:?}");
}

/// The nodes carrying drover's upgrade-pending taint (PreferNoSchedule).
async fn steered(env: &Env) -> Vec<String> {
    let nodes = kube::Api::<k8s_openapi::api::core::v1::Node>::all(env.client.clone())
        .list(&Default::default())
        .await
        .unwrap();
    nodes
        .items
        .iter()
        .filter(|n| {
            n.spec
                .iter()
                .flat_map(|s| s.taints.iter().flatten())
                .any(|t| t.key == drover_api::names::taint::UPGRADE_PENDING && t.effect == "PreferNoSchedule")
        })
        .filter_map(|n| n.metadata.name.clone())
        .collect()
}

#[test]
fn the_progress_check_catches_a_record_going_back() {
    let log = ProgressLog::default();
    let r = |generation: i64, phase: &str, component: Option<&str>, started: &str| {
        serde_json::json!({"upgrade": "u", "generation": generation, "phase": phase, "component": component,
            "since": "2026-01-01T00:00:09Z", "started": started})
        .to_string()
    };
    let t0 = "2026-01-01T00:00:00Z";
    // Forward through two components, a retry message, a bump (new generation) and a new attempt: fine.
    for rec in [
        r(1, "Cordoning", None, t0),
        r(1, "Draining", None, t0),
        r(1, "Upgrading", Some("kubelet"), t0),
        r(1, "Verifying", Some("kubelet"), t0),
        r(1, "Upgrading", Some("containerd"), t0),
        r(2, "Upgrading", Some("kubelet"), t0),
        r(2, "Done", None, t0),
        r(3, "Cordoning", None, "2026-01-01T00:05:00Z"),
    ] {
        log.record("n1", &rec);
    }
    assert_eq!(log.regressions(), Vec::<String>::new());
    // A stale write: Done back to Uncordoning... of the same attempt and generation.
    log.record("n2", &r(1, "Uncordoning", None, t0));
    log.record("n2", &r(1, "Done", None, t0));
    log.record("n2", &r(1, "Uncordoning", None, t0));
    let back = log.regressions();
    assert_eq!(back.len(), 1, "{back:?}");
    assert!(back[0].starts_with("n2:"), "{back:?}");
}

on_both_beds! {
    async fn the_small_cluster_converges_with_every_component_and_invariants_hold(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let _drover = env.drover(&[]);
        env.apply("platform", full_spec()).await;
        let cu = env
            .wait_for("platform", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        let st = cu.status.unwrap();
        assert_eq!(st.progress.as_deref(), Some("8/8"));
        assert!(
            st.components.iter().all(|c| c.updated == c.total),
            "{:?}",
            st.components
        );
        assert_invariants(&env, 2).await;
        // Every node runs the new versions, as the simulated nodes report them.
        let report = env.report().await;
        for (node, changes) in &report.versions {
            let kubelet = changes
                .iter()
                .rev()
                .find(|c| c.component == "kubelet")
                .map(|c| c.to.clone());
            assert_eq!(kubelet.as_deref(), Some("v1.32.0"), "{node}: {changes:?}");
        }
        let get = env.kubectl(&["get", "cu"]);
        let out = String::from_utf8_lossy(&get.stdout);
        assert!(
            out.contains("TARGET") && out.contains("8/8") && out.contains("Completed"),
            "{out}"
        );
    }
}

on_both_beds! {
    async fn a_slow_worker_holds_one_slot_of_the_window_while_the_others_finish(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 60.0).await;
        // worker-1's upgrade pod runs until its deadline (10m simulated).
        env.hang_upgrades_on("containerd", &["worker-1"]).await;
        let _drover = env.drover(&[]);
        let mut spec = runtime_spec("1.7.23");
        spec["nodeSelector"] = serde_json::json!({"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]});
        spec["strategy"]["maxUnavailable"] = serde_json::json!(2);
        env.apply("window", spec).await;
        // With whole batches nothing would pass worker-1's batch; the window
        // moves the other four through the second slot.
        let cu = env
            .wait_for("window", "4/5 with worker-1 still upgrading", ROLLOUT, |cu| {
                cu.status.as_ref().is_some_and(|s| s.progress.as_deref() == Some("4/5"))
            })
            .await;
        let st = cu.status.unwrap();
        let slow: Vec<_> = st.nodes.iter().map(|n| (n.name.as_str(), n.state.as_str())).collect();
        assert_eq!(slow, [("worker-1", "InProgress")], "{:?}", st.nodes);
        // Only the worker not yet upgraded still steers pods away.
        assert_eq!(steered(&env).await, ["worker-1"]);
        let report = env.report().await;
        let workers = report.max_unavailable.get("worker").copied().unwrap_or(0);
        assert!((1..=2).contains(&workers), "maxUnavailable 2; saw {workers} workers out at once");
        assert!(report.pdb_violations.is_empty(), "{:?}", report.pdb_violations);
        let back = env.progress.regressions();
        assert!(back.is_empty(), "progress records went back: {back:#?}");
    }
}

on_both_beds! {
    async fn a_blocking_pdb_stalls_with_drain_blocked_then_the_rollout_recovers(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        env.block_pdb("shop", "web").await;
        let _drover = env.drover(&[]);
        let mut spec = runtime_spec("1.7.23");
        spec["drain"]["timeout"] = serde_json::json!("3s");
        env.apply("runtime", spec).await;
        let cu = env
            .wait_for("runtime", "Stalled with DrainBlocked", ROLLOUT, |cu| {
                stalled_with(cu, "DrainBlocked")
            })
            .await;
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        assert!(
            message.contains("PodDisruptionBudget shop/web (0 disruptions allowed)"),
            "{message}"
        );
        assert!(message.contains("shop/web-"), "names the blocked pod: {message}");
        assert!(message.contains("handed back (spec.strategy.onHalt is Uncordon)"), "{message}");
        let st = cu.status.unwrap();
        assert_eq!(st.nodes[0].state, "Blocked");
        // An SRE relaxes the budget and changes the spec (any change retries
        // the halted node): the drain completes and the rollout finishes.
        env.clear_faults().await;
        env.patch_spec("runtime", serde_json::json!({"drain": {"timeout": "10m"}})).await;
        env.wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        assert_invariants(&env, 1).await;
    }
}

on_both_beds! {
    async fn a_failing_upgrade_job_halts_naming_node_component_and_reason_and_a_spec_fix_resumes(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let _drover = env.drover(&[]);
        env.fail_upgrades("containerd").await;
        let mut spec = runtime_spec("1.7.23");
        // Two retries (the default), a second apart: the third failure halts.
        spec["strategy"]["retryDelay"] = serde_json::json!("1s");
        env.apply("runtime", spec).await;
        let cu = env
            .wait_for("runtime", "Stalled with UpgradeJobFailed", ROLLOUT, |cu| {
                stalled_with(cu, "UpgradeJobFailed")
            })
            .await;
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        assert!(message.contains("failed at Upgrade of containerd"), "{message}");
        assert!(message.contains("BackoffLimitExceeded"), "{message}");
        let st = cu.status.unwrap();
        let failed = &st.nodes[0];
        assert_eq!(
            (failed.state.as_str(), failed.component.as_deref(), failed.retries),
            ("Failed", Some("containerd"), 2)
        );
        let report = env.report().await;
        assert!(
            report.cordoned.is_empty(),
            "a failed node is handed back: {:?}",
            report.cordoned
        );
        assert_eq!(st.counts.failed, 1);
        assert_eq!(st.counts.updating, 0, "nothing else started after the failure");

        // The image is fixed; any spec change retries the failed node.
        env.clear_faults().await;
        env.patch_spec("runtime", serde_json::json!({"components": [{"name": "containerd", "version": "1.7.23", "upgrade": {"job": {"image": "registry.example.com/drover-upgrade:2", "privileged": true, "hostRoot": true}}}]})).await;
        env.wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        assert_invariants(&env, 1).await;
    }
}

on_both_beds! {
    async fn drover_killed_at_random_moments_still_completes_within_budgets(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 300.0).await;
        let mut spec = full_spec();
        spec["strategy"]["maxUnavailable"] = serde_json::json!(1);
        env.apply("platform", spec).await;
        // A fixed, varied sequence of run times: reproducible, and covering
        // kills in every step.
        let runs_ms = [700u64, 1900, 450, 3100, 1200, 800, 2600, 350, 1500, 2200, 900, 600];
        let mut kills = 0;
        for ms in runs_ms.iter().cycle() {
            let mut d = env.drover(&[]);
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            d.kill();
            kills += 1;
            let cu = env.get("platform").await.unwrap();
            if is(&cu, "Ready", "True") || kills >= 60 {
                break;
            }
        }
        let _last = env.drover(&[]);
        env.wait_for("platform", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        assert!(kills >= 5, "drover was killed {kills} times");
        assert_invariants(&env, 1).await;
    }
}

on_both_beds! {
    async fn a_skew_violating_spec_or_an_unknown_time_zone_is_refused_and_touches_nothing(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let _drover = env.drover(&[]);
        env.apply(
            "too-far",
            serde_json::json!({"components": [job("kube-apiserver", "v1.33.0"), job("kubelet", "v1.33.0")]}),
        )
        .await;
        let cu = env
            .wait_for("too-far", "Stalled with SkewViolation", ROLLOUT, |cu| {
                stalled_with(cu, "SkewViolation")
            })
            .await;
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        assert!(
            message.contains("kube-apiserver v1.33 would skip a minor version"),
            "{message}"
        );
        assert!(message.contains("upgrade to v1.32 first"), "{message}");

        // A time zone of the right shape that does not exist: only drover can
        // judge it, and it refuses the same way, naming the field.
        env.kubectl(&["delete", "clusterupgrade", "too-far", "--timeout=60s"]);
        let mut spec = runtime_spec("1.7.23");
        spec["windows"] = serde_json::json!([{"start": "01:00", "end": "05:00", "timeZone": "Mars/Olympus_Mons"}]);
        env.apply("no-such-zone", spec).await;
        let cu = env
            .wait_for("no-such-zone", "Stalled with InvalidSpec", ROLLOUT, |cu| {
                stalled_with(cu, "InvalidSpec")
            })
            .await;
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        assert!(
            message.contains("spec.windows[0].timeZone: \"Mars/Olympus_Mons\" is not a known IANA time zone"),
            "{message}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let report = env.report().await;
        assert!(
            report.cordoned.is_empty() && report.max_unavailable.values().all(|n| *n == 0),
            "{report:?}"
        );
        let jobs = env.kubectl(&[
            "get",
            "jobs",
            "-A",
            "-l",
            "app.kubernetes.io/managed-by=drover",
            "-o",
            "name",
        ]);
        assert!(String::from_utf8_lossy(&jobs.stdout).trim().is_empty());
    }
}

on_both_beds! {
    async fn a_bad_spec_is_refused_by_the_api_server_naming_the_field(bed: Bed) {
        let _one = serial().await;
        let env = Env::start(bed, "small", 600.0).await;
        let bad = env.dir.join("bad.yaml");
        std::fs::write(&bad, "apiVersion: drover.dev/v1alpha1\nkind: ClusterUpgrade\nmetadata: {name: bad}\nspec:\n  components:\n  - {name: containerd, version: latest, upgrade: {job: {image: x}}}\n  strategy: {maxUnavailable: 0}\n").unwrap();
        let out = env.kubectl(&["apply", "-f", bad.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("spec.components[].version must be a semantic version"),
            "{err}"
        );
        assert!(
            err.contains("spec.strategy.maxUnavailable must be an integer of at least 1"),
            "{err}"
        );
        assert!(env.get("bad").await.is_none(), "nothing was created");
    }
}

on_both_beds! {
    async fn pause_stops_new_nodes_and_resume_finishes(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let _drover = env.drover(&[]);
        let mut spec = runtime_spec("1.7.23");
        spec["paused"] = serde_json::json!(true);
        env.apply("runtime", spec).await;
        let cu = env
            .wait_for("runtime", "Paused", ROLLOUT, |cu| {
                condition(cu, "Ready").is_some_and(|c| c.1 == "Paused")
            })
            .await;
        // Not done: kstatus reads Reconciling=True as InProgress.
        assert_eq!(condition(&cu, "Reconciling").map(|c| (c.0, c.1)), Some(("True".into(), "Paused".into())));
        assert_eq!(cu.status.unwrap().counts.updated, 0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            env.report()
                .await
                .max_unavailable
                .values()
                .all(|n| *n == 0),
            "paused touched a node"
        );
        env.patch_spec("runtime", serde_json::json!({"paused": false})).await;
        env.wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        assert_invariants(&env, 1).await;
    }
}

on_both_beds! {
    async fn deleting_mid_rollout_leaves_no_cordon_and_no_job(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 100.0).await;
        let _drover = env.drover(&[]);
        env.apply("runtime", runtime_spec("1.7.23")).await;
        env.wait_for("runtime", "in progress", ROLLOUT, |cu| {
            cu.status.as_ref().is_some_and(|s| s.counts.updating > 0)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let out = env.kubectl(&["delete", "cu", "runtime", "--wait=true", "--timeout=60s"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report = env.report().await;
        assert!(report.cordoned.is_empty(), "cordons left behind: {:?}", report.cordoned);
        let jobs = env.kubectl(&["get", "jobs", "-A", "-l", "drover.dev/upgrade=runtime", "-o", "name"]);
        assert!(
            String::from_utf8_lossy(&jobs.stdout).trim().is_empty(),
            "{}",
            String::from_utf8_lossy(&jobs.stdout)
        );
        let nodes = env.kubectl(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.annotations}"]);
        assert!(!String::from_utf8_lossy(&nodes.stdout).contains("drover.dev/progress"));
    }
}

on_both_beds! {
    async fn the_later_of_two_overlapping_upgrades_reports_conflict(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let _drover = env.drover(&[]);
        env.apply("first", runtime_spec("1.7.23")).await;
        tokio::time::sleep(Duration::from_millis(1100)).await; // creation timestamps have seconds
        env.apply("second", serde_json::json!({"components": [job("kubelet", "v1.31.5")]}))
            .await;
        let cu = env
            .wait_for("second", "Stalled with Conflict", ROLLOUT, |cu| {
                stalled_with(cu, "Conflict")
            })
            .await;
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        assert!(
            message.contains("ClusterUpgrade first (older) also selects 8 of these nodes"),
            "{message}"
        );
        env.wait_for("first", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        let report = env.report().await;
        assert!(
            report
                .versions
                .values()
                .flatten()
                .all(|c| c.component != "kubelet" || c.from.is_none()),
            "the later upgrade acted"
        );
    }
}

on_both_beds! {
    async fn a_version_bump_mid_rollout_replans_and_converges_to_the_new_target(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 300.0).await;
        let _drover = env.drover(&[]);
        env.apply("runtime", runtime_spec("1.7.23")).await;
        env.wait_for("runtime", "half way", ROLLOUT, |cu| {
            cu.status.as_ref().is_some_and(|s| s.counts.updated >= 3)
        })
        .await;
        env.patch_spec(
            "runtime",
            serde_json::json!({"components": [job("containerd", "1.7.24")]}),
        )
        .await;
        let cu = env
            .wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        let st = cu.status.unwrap();
        assert_eq!(st.target.as_deref(), Some("containerd=1.7.24"));
        assert_eq!(st.history[0].target, "containerd=1.7.23");
        assert_eq!(st.history[0].result, "Superseded");
        let report = env.report().await;
        for (node, changes) in &report.versions {
            let last = changes
                .iter()
                .rev()
                .find(|c| c.component == "container-runtime")
                .map(|c| c.to.clone());
            assert_eq!(last.as_deref(), Some("containerd://1.7.24"), "{node}: {changes:?}");
        }
        assert_invariants(&env, 1).await;
    }
}

on_both_beds! {
    async fn outside_its_window_nothing_starts(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let _drover = env.drover(&[]);
        // A one-minute window twelve hours away is closed now.
        let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
        let start = now.checked_add(jiff::SignedDuration::from_hours(12)).unwrap();
        let end = start.checked_add(jiff::SignedDuration::from_mins(1)).unwrap();
        let mut spec = runtime_spec("1.7.23");
        spec["windows"] = serde_json::json!([{"start": start.strftime("%H:%M").to_string(), "end": end.strftime("%H:%M").to_string(), "timeZone": "UTC"}]);
        env.apply("runtime", spec).await;
        let cu = env
            .wait_for("runtime", "Stalled with OutsideWindow", ROLLOUT, |cu| {
                stalled_with(cu, "OutsideWindow")
            })
            .await;
        assert!(
            condition(&cu, "Stalled")
                .unwrap()
                .2
                .contains("the next window opens at")
        );
        assert!(
            env.report()
                .await
                .max_unavailable
                .values()
                .all(|n| *n == 0)
        );
        // Opening the window (a spec change) lets it run.
        env.patch_spec("runtime", serde_json::json!({"windows": []})).await;
        env.wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
    }
}

on_both_beds! {
    async fn the_standby_takes_over_when_the_leader_dies(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 300.0).await;
        let lease = ["--leader-elect", "--lease-duration", "3", "--namespace", "drover-system"];
        let mut a = env.drover(&[&lease[..], &["--identity", "replica-a"]].concat());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let _b = env.drover(&[&lease[..], &["--identity", "replica-b", "--http-addr", &addr]].concat());
        env.apply("runtime", runtime_spec("1.7.23")).await;
        env.wait_for("runtime", "under way", ROLLOUT, |cu| {
            cu.status.as_ref().is_some_and(|s| s.counts.updated >= 1)
        })
        .await;
        // The standby: alive and Ready (a Deployment's rolling update must
        // not wait on a pod that cannot lead yet), and says it does not lead.
        let (health, _) = http_get(port, "/healthz").expect("the standby serves /healthz");
        assert_eq!(health, 200);
        let (ready, why) = http_get(port, "/readyz").unwrap();
        assert_eq!((ready, why.trim()), (200, "ready"));
        let (_, metrics) = http_get(port, "/metrics").unwrap();
        assert_eq!(metric(&metrics, "drover_leader "), Some(0.0), "{metrics}");
        let holder = env.kubectl(&[
            "get",
            "lease",
            "-n",
            "drover-system",
            "drover-leader",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        assert_eq!(String::from_utf8_lossy(&holder.stdout), "replica-a");
        a.kill();
        env.wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        let holder = env.kubectl(&[
            "get",
            "lease",
            "-n",
            "drover-system",
            "drover-leader",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        assert_eq!(String::from_utf8_lossy(&holder.stdout), "replica-b");
        // Leading now: Ready, and says so.
        assert_eq!(http_get(port, "/readyz").unwrap().0, 200);
        let (_, metrics) = http_get(port, "/metrics").unwrap();
        assert_eq!(metric(&metrics, "drover_leader "), Some(1.0), "{metrics}");
        assert_invariants(&env, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_and_watch_drops_still_converge() {
    let _one = serial().await;
    if !Bed::Kubesim.selected() {
        return;
    }
    let mut env = Env::start(Bed::Kubesim, "small", 300.0).await;
    env.apply("platform", full_spec()).await;
    env.sim()
        .set_fault(Fault::ApiErrors {
            verb: None,
            resource: None,
            code: 500,
            rate: 0.05,
            latency_ms: 0,
        })
        .unwrap();
    env.sim().set_fault(Fault::WatchDrops { every_seconds: 300.0 }).unwrap();
    let _drover = env.drover(&[]);
    env.wait_for("platform", "Ready", Duration::from_secs(300), |cu| {
        is(cu, "Ready", "True")
    })
    .await;
    assert_invariants(&env, 2).await;
}

/// Real bed only (kubesim has no admission policies): a cluster policy
/// refuses drover's privileged upgrade Job. The node fails in the server's
/// own words, the rollout is Stalled, and nothing is left cordoned; before
/// this, drover retried the refused create every pass while status said
/// RollingOut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_refused_by_cluster_policy_stalls_in_the_servers_words() {
    if !Bed::Real.selected() {
        return;
    }
    let _one = serial().await;
    let mut env = Env::start(Bed::Real, "small", 600.0).await;
    let policy = env.dir.join("policy.yaml");
    std::fs::write(
        &policy,
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: no-privileged-jobs}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [batch], apiVersions: [v1], operations: [CREATE], resources: [jobs]}
  validations:
  - expression: "!object.spec.template.spec.containers.exists(c, has(c.securityContext) && has(c.securityContext.privileged) && c.securityContext.privileged)"
    message: privileged containers are disallowed by cluster policy
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-privileged-jobs}
spec:
  policyName: no-privileged-jobs
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: drover-system}
"#,
    )
    .unwrap();
    let out = env.kubectl(&["apply", "-f", policy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The admission plugin picks new policies up within a second or so.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _drover = env.drover(&[]);
    env.apply("runtime", runtime_spec("1.7.23")).await;
    let cu = env
        .wait_for("runtime", "Stalled with UpgradeJobFailed", ROLLOUT, |cu| {
            stalled_with(cu, "UpgradeJobFailed")
        })
        .await;
    let (_, _, message) = condition(&cu, "Stalled").unwrap();
    assert!(
        message.contains("the API server refused the upgrade Job of containerd"),
        "{message}"
    );
    assert!(
        message.contains("privileged containers are disallowed by cluster policy"),
        "{message}"
    );
    assert!(!message.contains("Status {"), "a Debug dump: {message}");
    let st = cu.status.unwrap();
    assert_eq!(st.counts.failed, 1);
    assert_eq!(st.counts.updating, 0, "nothing else started after the failure");
    let report = env.report().await;
    assert!(
        report.cordoned.is_empty(),
        "a refused node is handed back: {:?}",
        report.cordoned
    );
}
