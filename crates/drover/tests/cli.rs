//! The user-facing commands: `drover demo`, `drover status` (also as
//! `kubectl drover status`) and `drover plan`, run as the real binary.

mod support;

use std::ffi::OsString;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use drover_api::ClusterUpgrade;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kubesim::sim::Fault;
use serde_json::{Value, json};
use support::*;

/// Generous: the demo takes well under a minute on two idle cores.
const DEMO: Duration = Duration::from_secs(300);
const COMMAND: Duration = Duration::from_secs(60);
const ROLLOUT: Duration = Duration::from_secs(180);

/// Run a program to completion, killed if it outlives `timeout`.
async fn run(program: &str, args: &[&str], envs: &[(&str, OsString)], timeout: Duration) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {program}: {e}"));
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("{program} {args:?} did not finish within {timeout:?}"),
    }
}

async fn drover(args: &[&str], timeout: Duration) -> Output {
    run(env!("CARGO_BIN_EXE_drover"), args, &[], timeout).await
}

/// Assert some line holds every one of `parts`; return it.
fn line_with<'a>(text: &'a str, parts: &[&str]) -> &'a str {
    text.lines()
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .unwrap_or_else(|| panic!("no line with {parts:?} in:\n{text}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The value printed after `label` on the summary line that starts with it.
fn summary(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in the summary:\n{out}"))
        .trim()
        .to_string()
}

/// `max unavailable` as role → count.
fn max_unavailable(out: &str) -> Vec<(String, usize)> {
    let line = summary(out, "max unavailable");
    let roles = line.split(" (").next().unwrap();
    roles
        .split(", ")
        .map(|r| {
            let (role, n) = r.rsplit_once(' ').unwrap();
            (role.to_string(), n.parse().unwrap())
        })
        .collect()
}

fn assert_clean_summary(out: &str) {
    assert!(
        out.contains("Rollout complete: Ready=True (Completed), 8/8 nodes run containerd=1.7.23"),
        "{out}"
    );
    assert_eq!(summary(out, "nodes upgraded"), "8/8 in scope", "{out}");
    assert_eq!(summary(out, "PDB violations"), "0", "{out}");
    assert_eq!(summary(out, "nodes left cordoned"), "0", "{out}");
    assert!(summary(out, "elapsed").contains("at 300x"), "{out}");
    for (role, n) in max_unavailable(out) {
        let limit = if role == "worker" { 2 } else { 1 };
        assert!(n <= limit, "{n} {role} nodes unavailable at once:\n{out}");
    }
    assert!(
        summary(out, "components").contains("kubelet 8/8") && summary(out, "components").contains("calico 1/1"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_rolls_out_the_small_cluster_and_ends_with_a_clean_summary() {
    let _one = serial().await;
    let out = drover(&["demo", "--timeout", "4m"], DEMO).await;
    let text = stdout(&out);
    assert!(out.status.success(), "exit {:?}\n{text}\n{}", out.status, stderr(&out));
    assert_clean_summary(&text);
    // Not a terminal: one plain line per change, readable by logs and tests.
    assert!(text.contains("installed the ClusterUpgrade CRD"), "{text}");
    assert!(
        text.contains("applied ClusterUpgrade platform: containerd=1.7.23,etcd=v3.5.16"),
        "{text}"
    );
    assert!(text.contains("cp-1: Upgrade etcd [cordoned]"), "{text}");
    assert!(text.contains("progress: 3/8 nodes updated, stage "), "{text}");
    assert!(
        text.contains("worker-5: done (kubelet v1.32.0, runtime 1.7.23"),
        "{text}"
    );
    assert_eq!(summary(&text, "failures met"), "none", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_with_a_blocking_pdb_shows_drain_blocked_then_completes() {
    let _one = serial().await;
    let out = drover(&["demo", "--fault", "pdb-block", "--timeout", "4m"], DEMO).await;
    let text = stdout(&out);
    assert!(out.status.success(), "exit {:?}\n{text}\n{}", out.status, stderr(&out));
    assert!(
        text.contains("fault: PodDisruptionBudget shop/web allows no disruption"),
        "{text}"
    );
    let blocked = text
        .lines()
        .find(|l| l.contains("DrainBlocked: draining"))
        .unwrap_or_else(|| panic!("no DrainBlocked line:\n{text}"));
    assert!(
        blocked.contains("PodDisruptionBudget shop/web (0 disruptions allowed)"),
        "{blocked}"
    );
    let relaxed = text.find("relaxing PodDisruptionBudget shop/web").expect("relaxed");
    assert!(text.find("DrainBlocked: draining").unwrap() < relaxed, "{text}");
    assert!(
        summary(&text, "blocks met").starts_with("DrainBlocked on worker-"),
        "{text}"
    );
    assert_clean_summary(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_with_a_failing_upgrade_stalls_naming_node_component_and_reason_then_resumes() {
    let _one = serial().await;
    let out = drover(&["demo", "--fault", "failing-upgrade", "--timeout", "4m"], DEMO).await;
    let text = stdout(&out);
    assert!(out.status.success(), "exit {:?}\n{text}\n{}", out.status, stderr(&out));
    assert!(
        text.contains("fault: the containerd upgrade will fail on worker-1"),
        "{text}"
    );
    let stalled = text
        .lines()
        .find(|l| l.contains("Stalled/UpgradeJobFailed:"))
        .unwrap_or_else(|| panic!("no Stalled line:\n{text}"));
    assert!(
        stalled.contains("node worker-1 failed at Upgrade of containerd") && stalled.contains("BackoffLimitExceeded"),
        "{stalled}"
    );
    assert!(
        text.contains("failed node worker-1: step Upgrade, component containerd"),
        "{text}"
    );
    assert!(text.find("fixing the spec").unwrap() > text.find("Stalled/UpgradeJobFailed").unwrap());
    assert!(
        summary(&text, "failures met").starts_with("worker-1 (containerd)"),
        "{text}"
    );
    assert_clean_summary(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_demo_redraws_a_progress_bar_and_node_table_in_place() {
    let _one = serial().await;
    // `script` gives the demo a pseudo-terminal (util-linux).
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` command to provide a terminal");
        return;
    }
    let cmd = format!(
        "stty cols 160 rows 50; {} demo --speed 600 --timeout 4m",
        env!("CARGO_BIN_EXE_drover")
    );
    let out = run("script", &["-qec", &cmd, "/dev/null"], &[], DEMO).await;
    let text = stdout(&out);
    assert!(out.status.success(), "exit {:?}\n{text}", out.status);
    // Cursor movements: the bar and the table are redrawn, not appended.
    assert!(text.contains("\x1b[") && text.contains("\x1b[2K"), "{text}");
    line_with(
        &text,
        &[
            "NODE",
            "ROLE",
            "SCHED",
            "STEP",
            "KUBELET",
            "RUNTIME",
            "ETCD",
            "APISERVER",
        ],
    );
    line_with(&text, &["worker-5", "worker", "done", "v1.32.0", "1.7.23"]);
    assert!(
        text.contains("/10 stage "),
        "the bar counts 8 nodes and 2 workloads:\n{text}"
    );
    assert!(
        text.contains("Rollout complete: Ready=True (Completed), 8/8 nodes run"),
        "{text}"
    );
    assert!(!text.contains("progress: "), "no plain lines on a terminal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_that_cannot_finish_in_time_fails_clearly() {
    let _one = serial().await;
    let out = drover(&["demo", "--timeout", "10s", "--speed", "5"], DEMO).await;
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        stderr(&out).contains("the rollout did not complete within --timeout 10s"),
        "{}",
        stderr(&out)
    );
    assert!(text.contains("Rollout NOT complete"), "{text}");
}

fn manifest(dir: &Path, name: &str, spec: Value) -> String {
    let path = dir.join(format!("{name}.yaml"));
    let cu = json!({"apiVersion": "drover.dev/v1alpha1", "kind": "ClusterUpgrade", "metadata": {"name": name}, "spec": spec});
    std::fs::write(&path, serde_yaml::to_string(&cu).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_summarises_a_rollout_and_works_as_a_kubectl_plugin() {
    let _one = serial().await;
    let mut env = Env::start(Bed::Kubesim, "small", 600.0).await;
    let kc = env.kubeconfig.to_str().unwrap().to_string();
    env.sim()
        .set_fault(Fault::PdbBlocks {
            namespace: "shop".into(),
            name: "web".into(),
        })
        .unwrap();
    let _drover = env.drover(&[]);
    env.apply("runtime", runtime_spec("1.7.23")).await;
    env.wait_for("runtime", "blocked by the PDB", ROLLOUT, |cu| {
        cu.status
            .as_ref()
            .is_some_and(|s| s.nodes.iter().any(|n| n.state == "Blocked"))
    })
    .await;

    // Mid-rollout: the blocked node, with its step, attempts and message.
    let out = drover(&["status", "runtime", "--kubeconfig", &kc], COMMAND).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for want in [
        "ClusterUpgrade runtime",
        "Conditions:",
        "Nodes: 8 in scope",
        "Components:",
        "Nodes in progress, blocked or failed:",
        "History:",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    line_with(&text, &["Target:", "containerd=1.7.23"]);
    line_with(&text, &["Stage:", "Workers"]);
    line_with(&text, &["Reconciling", "True", "DrainBlocked"]);
    line_with(&text, &["containerd", "Runtime", "1.7.23", "/8"]);
    line_with(
        &text,
        &["worker-", " Blocked ", " Drain ", "PodDisruptionBudget shop/web"],
    );

    env.sim().clear_faults();
    env.wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
        .await;

    // Done: Ready with Completed, every component counted.
    let out = drover(&["status", "--kubeconfig", &kc], COMMAND).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    line_with(&text, &["Ready", "True", "Completed"]);
    line_with(&text, &["containerd", "Runtime", "1.7.23", "8/8"]);
    line_with(&text, &["Progress:", "8/8 nodes updated"]);
    line_with(&text, &["Completed", "containerd=1.7.23"]);

    // -o json is the object itself; -o yaml too.
    let out = drover(&["status", "runtime", "-o", "json", "--kubeconfig", &kc], COMMAND).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let cu: ClusterUpgrade = serde_json::from_slice(&out.stdout).expect("a ClusterUpgrade");
    assert_eq!(cu.status.unwrap().progress.as_deref(), Some("8/8"));
    let out = drover(&["status", "runtime", "-o", "yaml", "--kubeconfig", &kc], COMMAND).await;
    let cu: ClusterUpgrade = serde_yaml::from_slice(&out.stdout).expect("a ClusterUpgrade as YAML");
    assert_eq!(cu.spec.components[0].version, "1.7.23");
    let out = drover(&["status", "-o", "json", "--kubeconfig", &kc], COMMAND).await;
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // An unknown name fails clearly.
    let out = drover(&["status", "nope", "--kubeconfig", &kc], COMMAND).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ClusterUpgrade \"nope\" not found"),
        "{}",
        stderr(&out)
    );

    // --watch prints, then stops at its timeout.
    let out = drover(
        &["status", "runtime", "--watch", "--timeout", "2s", "--kubeconfig", &kc],
        COMMAND,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ClusterUpgrade runtime"));
    assert!(
        stderr(&out).contains("stopped watching after --timeout 2s"),
        "{}",
        stderr(&out)
    );

    // As a kubectl plugin: kubectl finds kubectl-drover on PATH and passes the rest.
    let bin = env.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_drover"), bin.join("kubectl-drover")).unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.clone()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let envs = [("PATH", path), ("KUBECONFIG", env.kubeconfig.clone().into_os_string())];
    let out = run("kubectl", &["drover", "status", "runtime"], &envs, COMMAND).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("ClusterUpgrade runtime"), "{text}");
    line_with(&text, &["Ready", "True", "Completed"]);
    let out = run("kubectl", &["plugin", "list"], &envs, COMMAND).await;
    assert!(stdout(&out).contains("kubectl-drover"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_forecasts_batches_refuses_skew_reports_blocked_drains_and_writes_nothing() {
    let _one = serial().await;
    let env = Env::start(Bed::Kubesim, "small", 600.0).await;
    let kc = env.kubeconfig.to_str().unwrap().to_string();
    env.sim()
        .set_fault(Fault::PdbBlocks {
            namespace: "shop".into(),
            name: "web".into(),
        })
        .unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(env.client.clone(), "shop");
    within(Duration::from_secs(30), "the PDB to allow no disruption", async {
        while pdbs.get("web").await.unwrap().status.map(|s| s.disruptions_allowed) != Some(0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Freeze simulated time (no heartbeats), and make every write fail:
    // any change to the store from here on is drover plan's.
    env.sim().set_speed(0.001);
    for verb in ["create", "update", "patch", "delete", "deletecollection"] {
        env.sim()
            .set_fault(Fault::ApiErrors {
                verb: Some(verb.into()),
                resource: None,
                code: 500,
                rate: 1.0,
                latency_ms: 0,
            })
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = env.sim().store().resource_version();

    let valid = manifest(&env.dir, "platform", full_spec());
    let out = drover(&["plan", "-f", &valid, "--kubeconfig", &kc], COMMAND).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for want in [
        "ClusterUpgrade platform (dry run: nothing is changed)",
        "Spec: valid",
        "Nodes: 8 in scope, 8 to upgrade",
        "Stages:",
        "Batches:",
        "Node order:",
        "Drains blocked now by PodDisruptionBudgets (0 disruptions allowed):",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    line_with(&text, &["1. EtcdMembers", "3 node(s), one at a time"]);
    line_with(
        &text,
        &[
            "2. ClusterComponents",
            "calico → v3.29.0 (DaemonSet kube-system/calico-node)",
        ],
    );
    line_with(
        &text,
        &[
            "3. Workers",
            "5 node(s) in a sliding window of spec.strategy.maxUnavailable 2 (about 3 rounds if every node takes as long)",
        ],
    );
    line_with(&text, &["4. Addons", "coredns → v1.11.4"]);
    line_with(&text, &["5", "Workers", "worker-1, worker-2"]);
    line_with(
        &text,
        &[
            "cp-1",
            "control-plane+etcd",
            "1",
            "containerd 1.7.22→1.7.23",
            "kube-apiserver v1.31.4→v1.32.0",
        ],
    );
    let blocked = &text[text.find("Drains blocked now").unwrap()..];
    line_with(blocked, &["worker-", "shop/web-", "shop/web"]);

    let out = drover(&["plan", "-f", &valid, "-o", "json", "--kubeconfig", &kc], COMMAND).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(plan["valid"], true);
    assert_eq!(plan["end"]["result"], "Complete");
    let batches = plan["batches"].as_array().unwrap();
    let stages: Vec<&str> = batches.iter().map(|b| b["stage"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        [
            "EtcdMembers",
            "EtcdMembers",
            "EtcdMembers",
            "ClusterComponents",
            "Workers",
            "Workers",
            "Workers",
            "Addons"
        ]
    );
    assert_eq!(batches[0]["nodes"], json!(["cp-1"]));
    assert_eq!(batches[4]["nodes"], json!(["worker-1", "worker-2"]));
    assert_eq!(batches[6]["nodes"], json!(["worker-5"]));
    let blocked = plan["blockedDrains"].as_array().unwrap();
    assert!(!blocked.is_empty(), "{plan:#}");
    assert!(blocked.iter().all(|b| b["pdb"] == "shop/web"), "{plan:#}");
    assert!(
        blocked
            .iter()
            .all(|b| b["node"].as_str().unwrap().starts_with("worker-")),
        "{plan:#}"
    );

    // Skew: the API server may not skip a minor version.
    let skew = manifest(
        &env.dir,
        "too-far",
        json!({"components": [job("kube-apiserver", "v1.33.0"), job("kubelet", "v1.33.0")]}),
    );
    let out = drover(&["plan", "-f", &skew, "--kubeconfig", &kc], COMMAND).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("Spec: refused (SkewViolation)"), "{text}");
    assert!(
        text.contains("kube-apiserver v1.33 would skip a minor version"),
        "{text}"
    );
    let out = drover(&["plan", "-f", &skew, "-o", "json", "--kubeconfig", &kc], COMMAND).await;
    let plan: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(plan["valid"], false);
    assert_eq!(plan["refusal"]["reason"], "SkewViolation");

    // Schema rules, every problem named.
    let mut bad = runtime_spec("1.7.23");
    bad["strategy"]["maxUnavailable"] = json!(0);
    bad["components"][0]["upgrade"]["job"]["timeout"] = json!("soon");
    let bad = manifest(&env.dir, "bad", bad);
    let out = drover(&["plan", "-f", &bad, "--kubeconfig", &kc], COMMAND).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("Spec: refused (InvalidSpec)"), "{text}");
    assert!(text.contains("spec.strategy.maxUnavailable"), "{text}");
    assert!(text.contains("spec.components[0].upgrade.job.timeout"), "{text}");

    assert_eq!(
        env.sim().store().resource_version(),
        before,
        "drover plan changed something on the server"
    );
    let cus: Api<ClusterUpgrade> = Api::all(env.client.clone());
    assert!(cus.list(&Default::default()).await.unwrap().items.is_empty());
}

/// Lease durations that cannot fence are refused before any cluster is
/// read (no kubeconfig is given here), naming the flags.
#[tokio::test]
async fn run_refuses_lease_durations_that_cannot_fence_naming_the_flags() {
    let out = drover(
        &[
            "run",
            "--leader-elect",
            "--lease-duration",
            "4",
            "--lease-renew-deadline",
            "3",
            "--lease-margin",
            "2",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--lease-renew-deadline")
            && err.contains("--lease-margin")
            && err.contains("must be less than --lease-duration"),
        "{err}"
    );
    let out = drover(
        &[
            "run",
            "--leader-elect",
            "--lease-margin=-1",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--lease-margin -1 is not a positive number of seconds"),
        "{}",
        stderr(&out)
    );
}
