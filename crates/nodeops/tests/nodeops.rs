//! Each node operation against kubesim: the rules, the failure reports, and
//! idempotency (every operation run twice, and interrupted then resumed).

mod support;

use std::time::Duration;

use drover_api::Outcome;
use drover_api::names::annotation::{CORDONED_BY, DO_NOT_DISRUPT, GUARDS_ADDED, SCALE_DOWN_DISABLED};
use drover_api::names::label::{MANAGED_BY, MANAGED_BY_VALUE};
use drover_api::{DrainTimeoutAction, JobUpgrade, NodeInfoField, PodImageCheck, Verify, WorkloadKind, WorkloadUpgrade};
use drover_nodeops::eviction::Evicted;
use drover_nodeops::{DrainOptions, NodeOps, Owner, RebootRequest, UpgradeRequest};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

/// Requests the server answered, by verb, resource and (optionally) status code.
fn requests(c: &Cluster, verb: &str, resource: &str, code: Option<u16>) -> u64 {
    c.server
        .requests()
        .rows()
        .iter()
        .filter(|r| r.key.verb == verb && r.key.resource == resource && code.is_none_or(|x| r.key.code == x))
        .map(|r| r.count)
        .sum()
}

fn drain_opts(deadline_in: i64) -> DrainOptions {
    let mut o = DrainOptions::from_spec(
        &drover_api::Drain::default(),
        Timestamp::now() + jiff::SignedDuration::from_secs(deadline_in),
    );
    o.pass = Duration::from_secs(3);
    o.retry_every = Duration::from_millis(300);
    o
}

#[tokio::test]
async fn cordon_is_owned_and_uncordon_only_reverses_drovers_own() {
    let c = Cluster::start().await;
    c.node("a", true).await;
    c.node("b", true).await;
    for _ in 0..2 {
        assert_eq!(c.ops.cordon("a", "cu1").await.unwrap(), Outcome::Done);
    }
    let a = c.get_node("a").await;
    assert_eq!(a.spec.unwrap().unschedulable, Some(true));
    let a_annotations = a.metadata.annotations.unwrap();
    assert_eq!(a_annotations[CORDONED_BY], "cu1");
    // drover's own cordon carries both guards and records that it added them.
    assert_eq!(a_annotations[SCALE_DOWN_DISABLED], "true");
    assert_eq!(a_annotations[DO_NOT_DISRUPT], "true");
    assert_eq!(
        a_annotations[GUARDS_ADDED],
        format!("{SCALE_DOWN_DISABLED},{DO_NOT_DISRUPT}")
    );
    // Another ClusterUpgrade cannot undo it.
    c.ops.uncordon("a", "cu2").await.unwrap();
    assert_eq!(c.get_node("a").await.spec.unwrap().unschedulable, Some(true));
    for _ in 0..2 {
        assert_eq!(c.ops.uncordon("a", "cu1").await.unwrap(), Outcome::Done);
    }
    let a = c.get_node("a").await;
    assert_eq!(a.spec.unwrap().unschedulable, Some(false));
    assert!(!a.metadata.annotations.unwrap_or_default().contains_key(CORDONED_BY));

    // An admin's cordon: drover's cordon claims nothing, its uncordon does nothing.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(c.client.clone());
    nodes
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    c.ops.cordon("b", "cu1").await.unwrap();
    c.ops.uncordon("b", "cu1").await.unwrap();
    let b = c.get_node("b").await;
    assert_eq!(b.spec.unwrap().unschedulable, Some(true), "the admin's cordon stays");
    let b_annotations = b.metadata.annotations.unwrap_or_default();
    assert!(!b_annotations.contains_key(CORDONED_BY));
    // A node drover did not cordon gets no disruption guards from drover
    // (user-guide.md, "Cordon"), though node a got them from the same call.
    for k in [SCALE_DOWN_DISABLED, DO_NOT_DISRUPT, GUARDS_ADDED] {
        assert!(
            !b_annotations.contains_key(k),
            "{k} on an admin-cordoned node: {b_annotations:?}"
        );
    }
    // Uncordoning a node that is gone is done.
    assert_eq!(c.ops.uncordon("missing", "cu1").await.unwrap(), Outcome::Done);
}

#[tokio::test]
async fn drain_skips_mirror_and_daemonset_pods_and_refuses_bare_and_emptydir_pods() {
    let mut c = Cluster::start().await;
    c.run_kubelet(Duration::from_millis(50));
    c.node("n1", true).await;
    c.mirror_pod("kube-apiserver-n1", "n1").await;
    c.pod(
        "kube-system",
        "calico-node-x",
        "n1",
        json!({"app": "calico"}),
        Some(("DaemonSet", "calico-node")),
        json!([]),
    )
    .await;
    c.pod("default", "bare", "n1", json!({"app": "bare"}), None, json!([]))
        .await;
    c.pod(
        "default",
        "cache",
        "n1",
        json!({"app": "cache"}),
        Some(("ReplicaSet", "cache-rs")),
        json!([{"name": "tmp", "emptyDir": {}}]),
    )
    .await;
    c.pod(
        "default",
        "web",
        "n1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-rs")),
        json!([]),
    )
    .await;

    let mut opts = drain_opts(60);
    let out = within(c.ops.drain("n1", &opts)).await.unwrap();
    let Outcome::Blocked {
        message,
        timed_out: false,
    } = out
    else {
        panic!("{out:?}")
    };
    assert!(message.contains("refusing to evict"), "{message}");
    assert!(
        message.contains("default/bare (no controller will recreate it (set spec.drain.force to evict it))"),
        "{message}"
    );
    assert!(
        message.contains("default/cache (it has emptyDir data (set spec.drain.deleteEmptyDirData to evict it))"),
        "{message}"
    );
    assert_eq!(c.pods_on("n1").await.len(), 5, "a refused drain evicts nothing");

    opts.force = true;
    opts.delete_empty_dir_data = true;
    for _ in 0..2 {
        assert_eq!(within(c.ops.drain("n1", &opts)).await.unwrap(), Outcome::Done);
    }
    assert_eq!(c.pods_on("n1").await, ["calico-node-x", "kube-apiserver-n1"]);
}

#[tokio::test]
async fn a_drain_leaves_drovers_own_upgrade_pod_running_and_evicts_the_rest() {
    let mut c = Cluster::start().await;
    c.run_kubelet(Duration::from_millis(20));
    c.node("n1", true).await;
    // drover's upgrade Job for n1, as `upgrade` creates it.
    let o: Owner = c.cluster_upgrade("platform").await;
    let j = job_spec();
    let v = Verify {
        node_info: None,
        pod: None,
        job_succeeded: Some(true),
        match_: None,
    };
    let req = UpgradeRequest {
        owner: &o,
        node: "n1",
        component: "containerd",
        version: "1.7.23",
        job: &j,
        verify: &v,
        not_before: None,
    };
    c.ops.upgrade(&req).await.unwrap();
    let job_name = drover_nodeops::job::job_name("platform", "n1", "containerd", "1.7.23");
    let job = Api::<Job>::namespaced(c.client.clone(), "kube-system")
        .get(&job_name)
        .await
        .unwrap();
    // Its pod, as the Job controller would make it from the template (kubesim runs none).
    let template = job.spec.clone().unwrap().template;
    let labels = template.metadata.unwrap().labels.unwrap();
    assert_eq!(
        labels[MANAGED_BY], MANAGED_BY_VALUE,
        "the pod template carries the label"
    );
    let pod_name = format!("{job_name}-x7k2p");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": "kube-system", "labels": labels,
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                          "uid": job.metadata.uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": template.spec,
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "kube-system");
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&running))
        .await
        .unwrap();
    c.pod(
        "default",
        "web",
        "n1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-rs")),
        json!([]),
    )
    .await;

    // A drain re-run while the upgrade runs (as after a restart) finishes each time.
    for _ in 0..2 {
        assert_eq!(within(c.ops.drain("n1", &drain_opts(60))).await.unwrap(), Outcome::Done);
    }
    assert_eq!(c.pods_on("n1").await, [pod_name.as_str()]);
    let p = pods.get(&pod_name).await.unwrap();
    assert!(
        p.metadata.deletion_timestamp.is_none(),
        "the upgrade pod is not terminating"
    );
    assert_eq!(
        requests(&c, "create", "pods/eviction", None),
        1,
        "only the ReplicaSet pod was evicted"
    );
}

#[tokio::test]
async fn drain_respects_the_pod_selector() {
    let mut c = Cluster::start().await;
    c.run_kubelet(Duration::from_millis(20));
    c.node("n1", true).await;
    c.pod(
        "default",
        "a",
        "n1",
        json!({"tier": "batch"}),
        Some(("ReplicaSet", "a")),
        json!([]),
    )
    .await;
    c.pod(
        "default",
        "b",
        "n1",
        json!({"tier": "web"}),
        Some(("ReplicaSet", "b")),
        json!([]),
    )
    .await;
    let mut opts = drain_opts(60);
    opts.pod_selector = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        match_labels: Some([("tier".to_string(), "batch".to_string())].into()),
        match_expressions: None,
    });
    assert_eq!(within(c.ops.drain("n1", &opts)).await.unwrap(), Outcome::Done);
    assert_eq!(c.pods_on("n1").await, ["b"]);
}

#[tokio::test]
async fn the_grace_period_reaches_the_server() {
    let c = Cluster::start().await; // no kubelet: the pod stays terminating
    c.node("n1", true).await;
    c.pod(
        "default",
        "web",
        "n1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-rs")),
        json!([]),
    )
    .await;
    let uid = Api::<Pod>::namespaced(c.client.clone(), "default")
        .get("web")
        .await
        .unwrap()
        .metadata
        .uid;
    let r = c
        .ops
        .evictor()
        .evict("default", "web", uid.as_deref(), Some(17))
        .await
        .unwrap();
    assert_eq!(r, Evicted::Accepted);
    let p = Api::<Pod>::namespaced(c.client.clone(), "default")
        .get("web")
        .await
        .unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(17));
    assert_eq!(c.ops.evictor().policy_version().await.unwrap(), "v1");
}

#[tokio::test]
async fn a_uid_precondition_protects_a_replaced_pod() {
    let c = Cluster::start().await;
    c.node("n1", true).await;
    c.pod(
        "default",
        "web",
        "n1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-rs")),
        json!([]),
    )
    .await;
    let r = c
        .ops
        .evictor()
        .evict("default", "web", Some("not-the-uid"), Some(0))
        .await
        .unwrap();
    assert_eq!(r, Evicted::Gone, "a pod with a new UID is not the one we meant");
    assert_eq!(c.pods_on("n1").await, ["web"]);
}

#[tokio::test]
async fn a_pdb_block_is_reported_at_once_naming_pods_and_budgets_and_then_unblocks() {
    let mut c = Cluster::start().await;
    c.run_kubelet(Duration::from_millis(20));
    c.node("n1", true).await;
    c.pod(
        "default",
        "web-1",
        "n1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-rs")),
        json!([]),
    )
    .await;
    c.pdb("default", "web", json!({"app": "web"}), 0).await;
    // The default client would retry a 429 for many minutes; the bound proves it does not.
    let out = within(c.ops.drain("n1", &drain_opts(60))).await.unwrap();
    let Outcome::Blocked {
        message,
        timed_out: false,
    } = out
    else {
        panic!("{out:?}")
    };
    assert!(
        message.contains(
            "1 pods blocked: default/web-1 blocked by PodDisruptionBudget default/web (0 disruptions allowed)"
        ),
        "{message}"
    );
    // The budget allowed nothing when listed, so drover sent no eviction just to be refused.
    assert!(!message.contains("Cannot evict pod"), "{message}");
    assert_eq!(c.pods_on("n1").await, ["web-1"]);

    c.pdb_allows("default", "web", 1).await;
    assert_eq!(within(c.ops.drain("n1", &drain_opts(60))).await.unwrap(), Outcome::Done);
    assert!(c.pods_on("n1").await.is_empty());
}

#[tokio::test]
async fn a_budget_that_allows_a_disruption_wakes_the_drain_within_the_pass() {
    let mut c = Cluster::start().await;
    c.run_kubelet(Duration::from_millis(20));
    c.node("n1", true).await;
    c.pod(
        "default",
        "web-1",
        "n1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-rs")),
        json!([]),
    )
    .await;
    c.pdb("default", "web", json!({"app": "web"}), 0).await;
    let client = c.client.clone();
    let unblock = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let api: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> = Api::namespaced(client, "default");
        api.patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"disruptionsAllowed": 1}})),
        )
        .await
        .unwrap();
    });
    // One 3 s pass: only the budget's watch event can start another round in time.
    let started = std::time::Instant::now();
    assert_eq!(within(c.ops.drain("n1", &drain_opts(60))).await.unwrap(), Outcome::Done);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    unblock.await.unwrap();
    assert_eq!(requests(&c, "create", "pods/eviction", Some(429)), 0);
}

#[tokio::test]
async fn the_budget_cache_starts_with_the_first_drain_serves_every_drain_and_never_overspends() {
    let mut c = Cluster::start().await;
    c.run_kubelet(Duration::from_millis(20));
    for n in ["n1", "n2"] {
        c.node(n, true).await;
        for i in 0..3 {
            c.pod(
                "default",
                &format!("web-{n}-{i}"),
                n,
                json!({"app": "web"}),
                Some(("ReplicaSet", "web-rs")),
                json!([]),
            )
            .await;
        }
    }
    c.pdb("default", "web", json!({"app": "web"}), 2).await;
    // Operations that do not drain open no budget watch (as `drover plan`).
    c.ops.cordon("n1", "cu1").await.unwrap();
    assert_eq!(requests(&c, "list", "poddisruptionbudgets", None), 0);
    assert_eq!(requests(&c, "watch", "poddisruptionbudgets", None), 0);

    // The budget allows two evictions at a time: each pass spends them and
    // waits; the cache must count its own evictions before the watch shows them.
    let client = c.client.clone();
    let refill = tokio::spawn(async move {
        let api: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> = Api::namespaced(client, "default");
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            api.patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"disruptionsAllowed": 2}})),
            )
            .await
            .unwrap();
        }
    });
    let opts = drain_opts(60);
    let (a, b) = tokio::join!(within(c.ops.drain("n1", &opts)), within(c.ops.drain("n2", &opts)));
    refill.await.unwrap();
    for out in [a.unwrap(), b.unwrap()] {
        assert_eq!(out, Outcome::Done);
    }
    assert!(c.pods_on("n1").await.is_empty() && c.pods_on("n2").await.is_empty());
    assert_eq!(
        requests(&c, "create", "pods/eviction", Some(429)),
        0,
        "no eviction was refused"
    );
    // One list and one watch, shared by both drains.
    assert_eq!(requests(&c, "list", "poddisruptionbudgets", None), 1);
    assert_eq!(requests(&c, "watch", "poddisruptionbudgets", None), 1);
}

#[tokio::test]
async fn a_pod_under_two_budgets_is_reported() {
    let c = Cluster::start().await;
    c.node("n1", true).await;
    c.pod(
        "default",
        "web-1",
        "n1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-rs")),
        json!([]),
    )
    .await;
    c.pdb("default", "web-a", json!({"app": "web"}), 1).await;
    c.pdb("default", "web-b", json!({"app": "web"}), 1).await;
    let out = within(c.ops.drain("n1", &drain_opts(60))).await.unwrap();
    let Outcome::Blocked { message, .. } = out else {
        panic!("{out:?}")
    };
    assert!(message.contains("default/web-1 matches several budgets (PodDisruptionBudget default/web-a (1 disruptions allowed), PodDisruptionBudget default/web-b (1 disruptions allowed))"), "{message}");
}

#[tokio::test]
async fn at_the_timeout_halt_reports_and_force_delete_deletes() {
    let mut c = Cluster::start().await;
    c.run_kubelet(Duration::from_millis(20));
    c.node("n1", true).await;
    c.pod(
        "default",
        "web-1",
        "n1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-rs")),
        json!([]),
    )
    .await;
    c.pdb("default", "web", json!({"app": "web"}), 0).await;

    let mut opts = drain_opts(-1); // the deadline has passed
    for action in [DrainTimeoutAction::Halt, DrainTimeoutAction::SkipNode] {
        opts.on_timeout = action;
        let out = within(c.ops.drain("n1", &opts)).await.unwrap();
        assert!(
            matches!(out, Outcome::Blocked { timed_out: true, .. }),
            "{action:?}: {out:?}"
        );
        assert_eq!(c.pods_on("n1").await, ["web-1"], "{action:?} deletes nothing");
    }
    opts.on_timeout = DrainTimeoutAction::ForceDelete;
    assert_eq!(within(c.ops.drain("n1", &opts)).await.unwrap(), Outcome::Done);
    assert!(c.pods_on("n1").await.is_empty(), "ForceDelete bypasses the budget");
}

#[tokio::test]
async fn an_interrupted_drain_resumes() {
    let mut c = Cluster::start().await;
    c.node("n1", true).await;
    for i in 0..6 {
        c.pod(
            "default",
            &format!("web-{i}"),
            "n1",
            json!({"app": "web"}),
            Some(("ReplicaSet", "web-rs")),
            json!([]),
        )
        .await;
    }
    // No kubelet yet: the pass ends with pods terminating.
    let out = within(c.ops.drain("n1", &drain_opts(60))).await.unwrap();
    let Outcome::Waiting { message } = out else {
        panic!("{out:?}")
    };
    assert!(message.contains("waiting for 6 pods to terminate"), "{message}");
    // drover restarts; the kubelet catches up; the next pass finishes.
    c.run_kubelet(Duration::from_millis(10));
    assert_eq!(within(c.ops.drain("n1", &drain_opts(60))).await.unwrap(), Outcome::Done);
}

fn job_spec() -> JobUpgrade {
    JobUpgrade {
        image: "example.com/upgrade:1".into(),
        command: vec!["/upgrade.sh".into()],
        args: vec![],
        env: vec![drover_api::EnvVar {
            name: "CHANNEL".into(),
            value: "stable".into(),
        }],
        privileged: true,
        host_root: true,
        timeout: "20m".into(),
        reboots: false,
        backoff_limit: 2,
    }
}

#[tokio::test]
async fn the_upgrade_job_is_pinned_deterministic_and_created_once() {
    let c = Cluster::start().await;
    c.node("n1", true).await;
    let o: Owner = c.cluster_upgrade("platform").await;
    let j = job_spec();
    let v = Verify {
        node_info: None,
        pod: None,
        job_succeeded: Some(true),
        match_: None,
    };
    let req = UpgradeRequest {
        owner: &o,
        node: "n1",
        component: "containerd",
        version: "1.7.23",
        job: &j,
        verify: &v,
        not_before: None,
    };
    for _ in 0..2 {
        let out = c.ops.upgrade(&req).await.unwrap();
        assert!(
            matches!(&out, Outcome::Waiting { message } if message.contains("running")),
            "{out:?}"
        );
    }
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "kube-system");
    let list = jobs
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=drover"))
        .await
        .unwrap();
    assert_eq!(
        list.items.len(),
        1,
        "a repeat finds the Job instead of creating another"
    );
    let job = &list.items[0];
    assert_eq!(
        job.metadata.name.as_deref(),
        Some(drover_nodeops::job::job_name("platform", "n1", "containerd", "1.7.23").as_str())
    );
    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].kind,
        "ClusterUpgrade"
    );
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(1200));
    assert_eq!(spec.backoff_limit, Some(2));
    // "kept an hour after they finish" (status-reasons.md, UpgradeJobFailed).
    assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
    // The labels the docs tell users to select drover's Jobs by.
    let labels = job.metadata.labels.as_ref().unwrap();
    for (k, v) in [
        ("drover.dev/upgrade", "platform"),
        ("drover.dev/node", "n1"),
        ("drover.dev/component", "containerd"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "{labels:?}");
    }
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.node_name.as_deref(), Some("n1"));
    // Privileged with hostRoot: the host PID namespace too.
    assert_eq!(pod.host_pid, Some(true));
    assert_eq!(pod.tolerations.as_ref().unwrap()[0].operator.as_deref(), Some("Exists"));
    let ctr = &pod.containers[0];
    assert_eq!(ctr.security_context.as_ref().unwrap().privileged, Some(true));
    let env: Vec<(String, String)> = ctr
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.clone(), e.value.clone().unwrap()))
        .collect();
    for (k, v) in [
        ("DROVER_COMPONENT", "containerd"),
        ("DROVER_VERSION", "1.7.23"),
        ("DROVER_NODE", "n1"),
        ("CHANNEL", "stable"),
    ] {
        assert!(env.contains(&(k.to_string(), v.to_string())), "{env:?}");
    }
    assert!(
        !env.iter().any(|(k, _)| k == "DROVER_REBOOT"),
        "no DROVER_REBOOT without reboots: true: {env:?}"
    );
    assert_eq!(pod.volumes.as_ref().unwrap()[0].host_path.as_ref().unwrap().path, "/");
    assert_eq!(ctr.volume_mounts.as_ref().unwrap()[0].mount_path, "/host");

    // Unprivileged, no host root: neither is granted.
    let plain = JobUpgrade {
        privileged: false,
        host_root: false,
        ..job_spec()
    };
    let req = UpgradeRequest {
        job: &plain,
        component: "agent",
        ..req
    };
    c.ops.upgrade(&req).await.unwrap();
    let job = jobs
        .get(&drover_nodeops::job::job_name("platform", "n1", "agent", "1.7.23"))
        .await
        .unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert!(pod.volumes.is_none() && pod.containers[0].security_context.is_none());
    assert_ne!(pod.host_pid, Some(true), "a plain Job is not in the host PID namespace");

    // hostRoot without privileged: the root at /host, but not the host PID namespace.
    let root_only = JobUpgrade {
        privileged: false,
        host_root: true,
        ..job_spec()
    };
    let req_root = UpgradeRequest {
        job: &root_only,
        component: "inspector",
        ..req.clone()
    };
    c.ops.upgrade(&req_root).await.unwrap();
    let pod = jobs
        .get(&drover_nodeops::job::job_name("platform", "n1", "inspector", "1.7.23"))
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert_eq!(pod.containers[0].volume_mounts.as_ref().unwrap()[0].mount_path, "/host");
    assert_ne!(pod.host_pid, Some(true), "host PID only when privileged");

    // reboots: true adds DROVER_REBOOT=true to the Job's env.
    let rebooting = JobUpgrade {
        reboots: true,
        ..job_spec()
    };
    let req_reboot = UpgradeRequest {
        job: &rebooting,
        component: "kernel",
        ..req
    };
    c.ops.upgrade(&req_reboot).await.unwrap();
    let job = jobs
        .get(&drover_nodeops::job::job_name("platform", "n1", "kernel", "1.7.23"))
        .await
        .unwrap();
    let env = job.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let reboot_vars: Vec<_> = env.iter().filter(|e| e.name == "DROVER_REBOOT").collect();
    assert_eq!(reboot_vars.len(), 1, "{env:?}");
    assert_eq!(reboot_vars[0].value.as_deref(), Some("true"));
}

#[tokio::test]
async fn the_reboot_job_is_privileged_on_the_hosts_pid_and_root_pinned_and_named_per_node_and_boot() {
    // kubesim only: nothing runs the Job here; this checks the Job drover asks for.
    let c = Cluster::start().await;
    c.node("n1", true).await;
    c.node_status("n1", json!({"nodeInfo": {"bootID": "boot-1"}})).await;
    let o: Owner = c.cluster_upgrade("platform").await;
    let reboot = drover_api::Reboot {
        image: Some("example.com/reboot:1".into()),
        command: vec!["/reboot.sh".into()],
        args: vec!["--now".into()],
        ..drover_api::Reboot::default()
    };
    let req = RebootRequest {
        owner: &o,
        node: "n1",
        component: "kernel",
        boot_id: "boot-1",
        run_job: true,
        reboot: &reboot,
        deadline: None,
        not_before: None,
    };
    let name = drover_nodeops::reboot::job_name("platform", "n1", "boot-1");
    for _ in 0..2 {
        let out = c.ops.reboot(&req).await.unwrap();
        assert_eq!(
            out,
            Outcome::Waiting {
                message: format!("waiting for node n1 to reboot (reboot job {name}): bootID is still boot-1")
            }
        );
    }
    // In the upgrade Jobs' namespace, once for that boot.
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "kube-system");
    let list = jobs
        .list(&ListParams::default().labels("drover.dev/component=reboot"))
        .await
        .unwrap();
    assert_eq!(
        list.items.len(),
        1,
        "a repeat finds the reboot Job instead of creating another"
    );
    let job = &list.items[0];
    assert_eq!(job.metadata.name.as_deref(), Some(name.as_str()));
    assert!(name.starts_with("reboot-n1-"), "{name}");
    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].kind,
        "ClusterUpgrade"
    );
    let labels = job.metadata.labels.as_ref().unwrap();
    for (k, v) in [
        ("drover.dev/upgrade", "platform"),
        ("drover.dev/node", "n1"),
        ("drover.dev/component", "reboot"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "{labels:?}");
    }
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.ttl_seconds_after_finished, Some(3600), "kept an hour");
    let pod = spec.template.spec.as_ref().unwrap();
    // Pinned to the node, through every taint.
    assert_eq!(pod.node_name.as_deref(), Some("n1"));
    assert_eq!(pod.tolerations.as_ref().unwrap()[0].operator.as_deref(), Some("Exists"));
    assert_eq!(pod.host_pid, Some(true), "host PID namespace");
    let ctr = &pod.containers[0];
    assert_eq!(ctr.image.as_deref(), Some("example.com/reboot:1"));
    assert_eq!(ctr.command.as_deref(), Some(&["/reboot.sh".to_string()][..]));
    assert_eq!(ctr.args.as_deref(), Some(&["--now".to_string()][..]));
    assert_eq!(ctr.security_context.as_ref().unwrap().privileged, Some(true));
    // The node's root at /host.
    let mount = &ctr.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(mount.mount_path, "/host");
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == mount.name)
        .unwrap();
    assert_eq!(volume.host_path.as_ref().unwrap().path, "/");
    let env: Vec<(String, String)> = ctr
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.clone(), e.value.clone().unwrap()))
        .collect();
    let want: Vec<(String, String)> = [
        ("DROVER_ACTION", "reboot"),
        ("DROVER_NODE", "n1"),
        ("DROVER_COMPONENT", "kernel"),
        ("DROVER_BOOT_ID", "boot-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(env, want);

    // The node comes back with a new boot: that reboot is done, and a later
    // request from the new boot gets a Job of its own.
    c.node_status("n1", json!({"nodeInfo": {"bootID": "boot-2"}})).await;
    assert_eq!(c.ops.reboot(&req).await.unwrap(), Outcome::Done);
    let again = RebootRequest {
        boot_id: "boot-2",
        ..req.clone()
    };
    c.ops.reboot(&again).await.unwrap();
    let second = drover_nodeops::reboot::job_name("platform", "n1", "boot-2");
    assert_ne!(second, name);
    let mut names: Vec<String> = jobs
        .list(&ListParams::default().labels("drover.dev/component=reboot"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|j| j.metadata.name.unwrap())
        .collect();
    names.sort();
    let mut expected = vec![name, second.clone()];
    expected.sort();
    assert_eq!(names, expected);
    let env = jobs
        .get(&second)
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "DROVER_BOOT_ID" && e.value.as_deref() == Some("boot-2")),
        "{env:?}"
    );
}

#[tokio::test]
async fn a_failed_job_reports_its_reason_and_the_pods_message() {
    let c = Cluster::start().await;
    c.node("n1", true).await;
    let o: Owner = c.cluster_upgrade("platform").await;
    let j = job_spec();
    let v = Verify {
        node_info: None,
        pod: None,
        job_succeeded: Some(true),
        match_: None,
    };
    let req = UpgradeRequest {
        owner: &o,
        node: "n1",
        component: "containerd",
        version: "1.7.23",
        job: &j,
        verify: &v,
        not_before: None,
    };
    c.ops.upgrade(&req).await.unwrap();
    let name = drover_nodeops::job::job_name("platform", "n1", "containerd", "1.7.23");
    // What the Job controller and the kubelet would write.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "kube-system");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-x1"), "namespace": "kube-system", "labels": {"drover.dev/job": name}},
        "spec": {"nodeName": "n1", "restartPolicy": "Never", "containers": [{"name": "upgrade", "image": "x"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let long = format!(
        "{}E: Unable to locate package containerd.io=1.7.23",
        "noise ".repeat(200)
    );
    pods.patch_status(&format!("{name}-x1"), &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Failed",
        "containerStatuses": [{"name": "upgrade", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 100, "reason": "Error", "message": long, "finishedAt": "2026-11-23T10:00:00Z"}}}]}}))).await.unwrap();
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "kube-system");
    jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {"failed": 3,
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}}))).await.unwrap();
    let out = c.ops.upgrade(&req).await.unwrap();
    let Outcome::Failed { reason, message } = out else {
        panic!("{out:?}")
    };
    assert_eq!(reason, "UpgradeJobFailed");
    assert!(message.starts_with(&format!("job kube-system/{name} failed (BackoffLimitExceeded): Job has reached the specified backoff limit; pod said: ")), "{message}");
    assert!(
        message.ends_with("E: Unable to locate package containerd.io=1.7.23"),
        "{message}"
    );
    assert!(message.len() < 700, "only the tail of the message: {}", message.len());
}

#[tokio::test]
async fn an_upgrade_already_visible_on_the_node_runs_no_job() {
    let c = Cluster::start().await;
    c.node("n1", true).await;
    let o: Owner = c.cluster_upgrade("platform").await;
    let j = job_spec();
    let v = Verify {
        node_info: Some(NodeInfoField::KubeletVersion),
        pod: None,
        job_succeeded: None,
        match_: None,
    };
    let req = UpgradeRequest {
        owner: &o,
        node: "n1",
        component: "kubelet",
        version: "v1.31.4",
        job: &j,
        verify: &v,
        not_before: None,
    };
    assert_eq!(c.ops.upgrade(&req).await.unwrap(), Outcome::Done);
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "kube-system");
    assert!(jobs.list(&ListParams::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn verify_by_node_info_waits_then_passes_or_fails_at_the_deadline() {
    let c = Cluster::start().await;
    c.node("n1", true).await;
    let v = Verify {
        node_info: Some(NodeInfoField::KubeletVersion),
        pod: None,
        job_succeeded: None,
        match_: None,
    };
    let later = Some(Timestamp::now() + jiff::SignedDuration::from_secs(600));
    let out = c.ops.verify("n1", "kubelet", "v1.32.0", &v, later).await.unwrap();
    assert_eq!(
        out,
        Outcome::Waiting {
            message: "kubelet on n1 reports v1.31.4, want v1.32.0".into()
        }
    );
    let past = Some(Timestamp::now() - jiff::SignedDuration::from_secs(1));
    let out = c.ops.verify("n1", "kubelet", "v1.32.0", &v, past).await.unwrap();
    assert_eq!(
        out,
        Outcome::Failed {
            reason: drover_api::Reason::VerificationFailed,
            message: "kubelet on n1 reports v1.31.4, want v1.32.0 after the component's timeout".into()
        }
    );

    c.node_status(
        "n1",
        json!({"conditions": [{"type": "Ready", "status": "False"}], "nodeInfo": {"kubeletVersion": "v1.32.0"}}),
    )
    .await;
    let out = c.ops.verify("n1", "kubelet", "v1.32.0", &v, later).await.unwrap();
    assert_eq!(
        out,
        Outcome::Waiting {
            message: "node n1 is NotReady".into()
        }
    );
    c.node_status("n1", json!({"conditions": [{"type": "Ready", "status": "True"}]}))
        .await;
    for _ in 0..2 {
        assert_eq!(
            c.ops.verify("n1", "kubelet", "v1.32.0", &v, later).await.unwrap(),
            Outcome::Done
        );
    }
    // Verification only reads: the controller records the verified version
    // in the patch that moves the node's record on.
    let n = c.get_node("n1").await;
    assert!(
        !n.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("drover.dev/verified.kubelet")
    );
}

#[tokio::test]
async fn verify_by_pod_image_and_by_job_success() {
    let c = Cluster::start().await;
    c.node("n1", true).await;
    c.mirror_pod("kube-apiserver", "n1").await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "kube-system");
    pods.patch_status(
        "kube-apiserver",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    let v = Verify {
        node_info: None,
        pod: Some(PodImageCheck {
            namespace: "kube-system".into(),
            labels: [("component".to_string(), "kube-apiserver".to_string())].into(),
            container: None,
        }),
        job_succeeded: None,
        match_: None,
    };
    assert_eq!(
        c.ops.verify("n1", "kube-apiserver", "v1.31.4", &v, None).await.unwrap(),
        Outcome::Done
    );
    let out = c.ops.verify("n1", "kube-apiserver", "v1.32.0", &v, None).await.unwrap();
    assert_eq!(
        out,
        Outcome::Waiting {
            message: "kube-apiserver on n1 reports v1.31.4, want v1.32.0".into()
        }
    );

    let by_job = Verify {
        node_info: None,
        pod: None,
        job_succeeded: Some(true),
        match_: None,
    };
    assert_eq!(
        c.ops.verify("n1", "agent", "2.0.0", &by_job, None).await.unwrap(),
        Outcome::Done
    );
    assert!(
        !c.get_node("n1")
            .await
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("drover.dev/verified.agent"),
        "verification only reads"
    );
}

#[tokio::test]
async fn a_daemonset_image_change_is_awaited_until_rolled_out() {
    let c = Cluster::start().await;
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "calico-node", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"k8s-app": "calico-node"}},
                 "template": {"metadata": {"labels": {"k8s-app": "calico-node"}},
                              "spec": {"containers": [{"name": "calico-node", "image": "docker.io/calico/node:v3.28.1"}]}}}
    })).unwrap();
    let api: Api<DaemonSet> = Api::namespaced(c.client.clone(), "kube-system");
    api.create(&PostParams::default(), &ds).await.unwrap();
    let w = WorkloadUpgrade {
        kind: Some(WorkloadKind::DaemonSet),
        namespace: Some("kube-system".into()),
        name: Some("calico-node".into()),
        container: None,
        timeout: "10m".into(),
        targets: vec![],
        image_repositories: vec![],
        manifest: None,
    };
    let out = c.ops.upgrade_workload(&w, "v3.29.0").await.unwrap();
    assert!(
        matches!(&out, Outcome::Waiting { message } if message.starts_with("set DaemonSet kube-system/calico-node to v3.29.0")),
        "{out:?}"
    );
    let d = api.get("calico-node").await.unwrap();
    assert_eq!(
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some("docker.io/calico/node:v3.29.0")
    );
    let generation = d.metadata.generation.unwrap();
    let out = c.ops.upgrade_workload(&w, "v3.29.0").await.unwrap();
    assert!(
        matches!(&out, Outcome::Waiting { message } if message.starts_with("waiting for DaemonSet")),
        "{out:?}"
    );
    let seen = c.ops.observe_workload(&w, "v3.29.0").await.unwrap();
    assert_eq!(
        (seen.version.as_deref(), seen.rolled_out, seen.failed),
        (Some("v3.29.0"), false, None)
    );
    // The DaemonSet controller finishes the rollout.
    api.patch_status("calico-node", &PatchParams::default(), &Patch::Merge(json!({"status": {
        "observedGeneration": generation, "desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberMisscheduled": 0,
        "updatedNumberScheduled": 3, "numberAvailable": 3, "numberReady": 3}}))).await.unwrap();
    assert_eq!(c.ops.upgrade_workload(&w, "v3.29.0").await.unwrap(), Outcome::Done);
    assert!(c.ops.observe_workload(&w, "v3.29.0").await.unwrap().rolled_out);
}

#[tokio::test]
async fn a_rollout_that_passes_its_timeout_fails() {
    let c = Cluster::start().await;
    let api: Api<DaemonSet> = Api::namespaced(c.client.clone(), "kube-system");
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "calico-node", "namespace": "kube-system", "annotations": {"drover.dev/rollout-started": "2026-01-01T00:00:00Z"}},
        "spec": {"selector": {"matchLabels": {"k8s-app": "calico-node"}},
                 "template": {"metadata": {"labels": {"k8s-app": "calico-node"}},
                              "spec": {"containers": [{"name": "calico-node", "image": "docker.io/calico/node:v3.29.0"}]}}}
    })).unwrap();
    api.create(&PostParams::default(), &ds).await.unwrap();
    api.patch_status("calico-node", &PatchParams::default(), &Patch::Merge(json!({"status": {
        "desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1}}))).await.unwrap();
    let w = WorkloadUpgrade {
        kind: Some(WorkloadKind::DaemonSet),
        namespace: Some("kube-system".into()),
        name: Some("calico-node".into()),
        container: None,
        timeout: "10m".into(),
        targets: vec![],
        image_repositories: vec![],
        manifest: None,
    };
    let out = c.ops.upgrade_workload(&w, "v3.29.0").await.unwrap();
    assert_eq!(
        out,
        Outcome::Failed {
            reason: drover_api::Reason::RolloutFailed,
            message: "DaemonSet kube-system/calico-node did not finish rolling out within 10m".into()
        }
    );
    assert!(c.ops.observe_workload(&w, "v3.29.0").await.unwrap().failed.is_some());
}

/// A workload with no container of the listed repositories, and a manifest
/// naming a workload that does not exist: each is a failure that names what
/// is wrong, in the upgrade's outcome and in what is observed, and nothing
/// is changed.
#[tokio::test]
async fn unmatched_repositories_and_unappliable_manifests_fail_and_change_nothing() {
    let c = Cluster::start().await;
    let api: Api<DaemonSet> = Api::namespaced(c.client.clone(), "kube-system");
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "calico-node", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"k8s-app": "calico-node"}},
                 "template": {"metadata": {"labels": {"k8s-app": "calico-node"}},
                              "spec": {"initContainers": [{"name": "install-cni", "image": "docker.io/calico/cni:v3.28.1"}],
                                       "containers": [{"name": "calico-node", "image": "docker.io/calico/node:v3.28.1"}]}}}
    })).unwrap();
    api.create(&PostParams::default(), &ds).await.unwrap();
    let generation = api.get("calico-node").await.unwrap().metadata.generation;
    let mut w: WorkloadUpgrade = serde_json::from_value(json!({
        "targets": [{"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"}],
        "imageRepositories": ["cilium/cilium"]
    }))
    .unwrap();
    let out = c.ops.upgrade_workload(&w, "v3.29.1").await.unwrap();
    let want = "DaemonSet kube-system/calico-node has no container whose image repository is cilium/cilium; it has install-cni (docker.io/calico/cni:v3.28.1), calico-node (docker.io/calico/node:v3.28.1)";
    assert_eq!(
        out,
        Outcome::Failed {
            reason: drover_api::Reason::RolloutFailed,
            message: want.into()
        }
    );
    assert_eq!(
        c.ops.observe_workload(&w, "v3.29.1").await.unwrap().failed.as_deref(),
        Some(want)
    );

    // The right repositories, but a manifest for a Deployment that is not there.
    w.image_repositories = vec!["calico/node".into(), "calico/cni".into()];
    w.manifest = Some(serde_json::from_value(json!({"configMap": {"name": "calico", "key": "calico.yaml"}})).unwrap());
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "calico", "namespace": "kube-system"},
        "data": {"calico.yaml": "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: calico-node, namespace: kube-system}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: calico-kube-controllers, namespace: kube-system}\n"}
    })).unwrap();
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(c.client.clone(), "kube-system")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let out = c.ops.upgrade_workload(&w, "v3.29.1").await.unwrap();
    let Outcome::Failed { message, .. } = &out else {
        panic!("{out:?}")
    };
    assert!(
        message.contains("Deployment kube-system/calico-kube-controllers does not exist; drover applies manifests only to workloads that exist"),
        "{message}"
    );
    let seen = c.ops.observe_workload(&w, "v3.29.1").await.unwrap();
    assert_eq!(seen.failed.as_deref(), Some(message.as_str()));
    assert_eq!(seen.version.as_deref(), Some("v3.28.1"));
    assert_eq!((seen.updated, seen.total), (0, 1));
    let d = api.get("calico-node").await.unwrap();
    assert_eq!(d.metadata.generation, generation, "nothing was applied or set");
    assert!(
        !d.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("drover.dev/manifest-applied")
    );
}

#[tokio::test]
async fn a_finished_job_from_an_earlier_attempt_is_replaced_so_a_retry_runs_it_again() {
    // Failed: a retry after UpgradeJobFailed. Complete: a retry after a
    // version that did not verify, or a reboot that did not come back.
    for (i, finished) in [
        json!({"failed": 3, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
        json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
    ]
    .into_iter()
    .enumerate()
    {
        let c = Cluster::start().await;
        c.node("n1", true).await;
        let o: Owner = c.cluster_upgrade("platform").await;
        let j = job_spec();
        let v = Verify {
            node_info: None,
            pod: None,
            job_succeeded: Some(true),
            match_: None,
        };
        let req = UpgradeRequest {
            owner: &o,
            node: "n1",
            component: "containerd",
            version: "1.7.23",
            job: &j,
            verify: &v,
            not_before: Some(Timestamp::now()),
        };
        c.ops.upgrade(&req).await.unwrap();
        let name = drover_nodeops::job::job_name("platform", "n1", "containerd", "1.7.23");
        let jobs: Api<Job> = Api::namespaced(c.client.clone(), "kube-system");
        let first = jobs.get(&name).await.unwrap().metadata.uid;
        jobs.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": finished})),
        )
        .await
        .unwrap();
        // The same attempt reads the Job's result (a crash and restart keeps
        // the step's start): failed, or done.
        let same = c.ops.upgrade(&req).await.unwrap();
        if i == 0 {
            assert!(matches!(same, Outcome::Failed { .. }), "{same:?}");
        } else {
            assert_eq!(same, Outcome::Done);
        }
        // A later attempt (the node entered the step after the Job was
        // made, past the clock margin) replaces it and runs it again.
        let retry = UpgradeRequest {
            not_before: Some(
                Timestamp::now() + drover_nodeops::job::EARLIER_ATTEMPT_MARGIN + jiff::SignedDuration::from_secs(2),
            ),
            ..req.clone()
        };
        let out = c.ops.upgrade(&retry).await.unwrap();
        assert_eq!(
            out,
            Outcome::Waiting {
                message: format!("replacing job {name}, which finished in an earlier attempt")
            }
        );
        within(async {
            loop {
                if let Outcome::Waiting { message } = c.ops.upgrade(&retry).await.unwrap()
                    && message.contains("running")
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert_ne!(jobs.get(&name).await.unwrap().metadata.uid, first, "a new Job runs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_evictions_never_take_more_than_the_budget_allows() {
    let c = Cluster::start().await;
    c.node("n1", true).await;
    for i in 0..6 {
        c.pod(
            "default",
            &format!("web-{i}"),
            "n1",
            json!({"app": "web"}),
            Some(("ReplicaSet", "web-rs")),
            json!([]),
        )
        .await;
    }
    c.pdb("default", "web", json!({"app": "web"}), 1).await;
    let results = futures::future::join_all((0..6).map(|i| {
        let name = format!("web-{i}");
        let evictor = c.ops.evictor();
        async move { evictor.evict("default", &name, None, Some(0)).await.unwrap() }
    }))
    .await;
    let accepted = results.iter().filter(|r| **r == Evicted::Accepted).count();
    let blocked = results.iter().filter(|r| matches!(r, Evicted::Blocked { .. })).count();
    assert_eq!((accepted, blocked), (1, 5), "{results:?}");
}
