//! Kubelet, scheduler, workload and Job controller rules, observed through
//! the HTTP API with kube-rs.

#[path = "sim_common.rs"]
mod common;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, EvictParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kubesim::sim::{Fault, Scenario, Simulation};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

fn cluster() -> Scenario {
    Scenario::builder()
        .control_plane(1)
        .workers(3)
        .no_addons()
        .deployment("shop", "web", 3)
        .build()
        .unwrap()
}

fn pod_json(name: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "busybox:1.36"}]);
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_goes_pending_running_ready_and_honours_its_grace_period() {
    let scenario = Scenario::builder()
        .control_plane(1)
        .workers(1)
        .no_addons()
        .timing(|t| {
            t.pod_start_seconds = 30.0;
            t.pod_ready_seconds = 30.0;
            t.pod_shutdown_seconds = 30.0;
        })
        .fault(Fault::SlowTermination {
            namespace: "default".into(),
            selector: [("stubborn".to_string(), "yes".to_string())].into(),
        })
        .build()
        .unwrap();
    let sim = Simulation::start(scenario, 100.0).await.unwrap();
    let client = sim.client().unwrap();
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    let mut stream = api
        .watch(&WatchParams::default().fields("metadata.name=p"), "0")
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &pod_json("p", json!({})))
        .await
        .unwrap();
    let mut seen: Vec<(String, bool, String)> = Vec::new();
    within("p Ready", async {
        while let Some(ev) = stream.try_next().await.unwrap() {
            if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev {
                let state = (phase(&p), ready(&p), node_of(&p));
                if seen.last() != Some(&state) {
                    seen.push(state.clone());
                }
                if state.1 {
                    break;
                }
            }
        }
    })
    .await;
    let phases: Vec<(&str, bool)> = seen.iter().map(|(p, r, _)| (p.as_str(), *r)).collect();
    assert_eq!(phases.first(), Some(&("Pending", false)));
    assert!(phases.contains(&("Running", false)), "{seen:?}");
    assert_eq!(phases.last(), Some(&("Running", true)));
    assert_eq!(seen.last().unwrap().2, "worker-1");
    let p = api.get("p").await.unwrap();
    let st = p.status.unwrap();
    assert!(st.pod_ip.is_some() && st.host_ip.is_some() && st.start_time.is_some());

    // A normal pod stops well within its grace period: 30 simulated seconds here.
    let t = std::time::Instant::now();
    api.delete("p", &DeleteParams::default()).await.unwrap();
    assert!(
        api.get("p").await.unwrap().metadata.deletion_timestamp.is_some(),
        "terminating first"
    );
    eventually("p gone", || async {
        api.get_opt("p").await.unwrap().is_none().then_some(())
    })
    .await;
    let normal = t.elapsed();

    // A pod that ignores SIGTERM takes its whole grace period (300 s simulated = 3 s).
    let mut stubborn = pod_json("stubborn", json!({"terminationGracePeriodSeconds": 300}));
    stubborn.metadata.labels = Some([("stubborn".to_string(), "yes".to_string())].into());
    api.create(&PostParams::default(), &stubborn).await.unwrap();
    eventually("stubborn Ready", || async {
        api.get("stubborn").await.ok().filter(ready).map(|_| ())
    })
    .await;
    let t = std::time::Instant::now();
    api.delete("stubborn", &DeleteParams::default()).await.unwrap();
    eventually("stubborn gone", || async {
        api.get_opt("stubborn").await.unwrap().is_none().then_some(())
    })
    .await;
    let slow = t.elapsed();
    assert!(
        slow >= normal + Duration::from_millis(1500),
        "grace honoured: normal {normal:?}, stubborn {slow:?}"
    );
    assert!(slow >= Duration::from_millis(2500), "{slow:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_goes_not_ready_and_back() {
    let sim = Simulation::start(cluster(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let node_ready = |n: Node| {
        n.status
            .and_then(|s| s.conditions)
            .and_then(|cs| cs.into_iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status)
    };
    let on_w1: Vec<String> = pods(&client, "shop", "app=web")
        .await
        .iter()
        .filter(|p| node_of(p) == "worker-1")
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert!(!on_w1.is_empty());
    sim.set_node_ready("worker-1", false).await.unwrap();
    let st = node_ready(nodes.get("worker-1").await.unwrap());
    assert_eq!(st.as_deref(), Some("Unknown"));
    // Its pods stay, unready; new pods are not scheduled there.
    let web = pods(&client, "shop", "app=web").await;
    for p in web.iter().filter(|p| on_w1.contains(p.metadata.name.as_ref().unwrap())) {
        assert!(!ready(p) && p.metadata.deletion_timestamp.is_none());
    }
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    for i in 0..6 {
        api.create(&PostParams::default(), &pod_json(&format!("x{i}"), json!({})))
            .await
            .unwrap();
    }
    eventually("x pods bound", || async {
        let ps = pods(&client, "default", "").await;
        (ps.len() == 6 && ps.iter().all(|p| !node_of(p).is_empty())).then_some(())
    })
    .await;
    assert!(
        pods(&client, "default", "")
            .await
            .iter()
            .all(|p| node_of(p) != "worker-1")
    );
    assert_eq!(sim.recorder().max_unavailable("worker"), 1);
    sim.set_node_ready("worker-1", true).await.unwrap();
    eventually("worker-1 pods Ready again", || async {
        let ps = pods(&client, "shop", "app=web").await;
        ps.iter().all(ready).then_some(())
    })
    .await;
    let w1 = nodes.get("worker-1").await.unwrap();
    assert_eq!(node_ready(w1).as_deref(), Some("True"));
    let restarted = pods(&client, "shop", "app=web").await;
    let p = restarted.iter().find(|p| node_of(p) == "worker-1").unwrap();
    assert_eq!(
        p.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].restart_count,
        1
    );
    sim.shutdown().await;
}

/// Where each Ready pod of `default` runs, once `count` of them are Ready.
async fn placed(client: &kube::Client, count: usize) -> BTreeMap<String, String> {
    eventually("pods placed", || async {
        let ps = pods(client, "default", "").await;
        let m: BTreeMap<String, String> = ps
            .iter()
            .filter(|p| ready(p))
            .map(|p| (p.metadata.name.clone().unwrap(), node_of(p)))
            .collect();
        (m.len() == count).then_some(m)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_avoids_prefer_no_schedule_taints_while_another_node_fits() {
    let sim = Simulation::start(cluster(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    let soft = json!({"spec": {"taints": [{"key": "drover.dev/upgrade-pending", "value": "x", "effect": "PreferNoSchedule"}]}});
    for n in ["worker-1", "worker-2"] {
        nodes
            .patch(n, &PatchParams::default(), &Patch::Merge(soft.clone()))
            .await
            .unwrap();
    }
    for i in 0..4 {
        api.create(&PostParams::default(), &pod_json(&format!("p{i}"), json!({})))
            .await
            .unwrap();
    }
    let placed = placed(&client, 4).await;
    assert!(placed.values().all(|n| n == "worker-3"), "{placed:?}");
    // Soft: with worker-3 cordoned the tainted nodes still take pods.
    nodes
        .patch(
            "worker-3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    api.create(&PostParams::default(), &pod_json("late", json!({})))
        .await
        .unwrap();
    let node = eventually("the late pod placed", || async {
        let p = api.get("late").await.ok()?;
        ready(&p).then(|| node_of(&p))
    })
    .await;
    assert!(node == "worker-1" || node == "worker-2", "{node}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_respects_selectors_taints_cordons_and_node_names() {
    let sim = Simulation::start(cluster(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    nodes
        .patch(
            "worker-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"disk": "ssd"}}})),
        )
        .await
        .unwrap();
    nodes
        .patch(
            "worker-3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}})),
        )
        .await
        .unwrap();
    nodes
        .patch(
            "worker-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    let create = |name: &str, spec: serde_json::Value| {
        let api = api.clone();
        let p = pod_json(name, spec);
        async move { api.create(&PostParams::default(), &p).await.unwrap() }
    };
    create("ssd", json!({"nodeSelector": {"disk": "ssd"}})).await;
    create("gpu", json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}], "nodeSelector": {"kubernetes.io/hostname": "worker-3"}})).await;
    create("pinned", json!({"nodeName": "worker-1"})).await;
    create("plain", json!({})).await;
    create("cp-ok", json!({"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}, "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]})).await;
    create("nowhere", json!({"nodeSelector": {"disk": "nvme"}})).await;
    create("affine", json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}})).await;
    let placed = placed(&client, 6).await;
    assert_eq!(placed["ssd"], "worker-2");
    assert_eq!(placed["affine"], "worker-2");
    assert_eq!(placed["gpu"], "worker-3");
    // nodeName bypasses the scheduler, cordon or not.
    assert_eq!(placed["pinned"], "worker-1");
    // Untolerated taint on worker-3, cordon on worker-1, control-plane taint: only worker-2.
    assert_eq!(placed["plain"], "worker-2");
    assert_eq!(placed["cp-ok"], "cp-1");
    let nowhere = api.get("nowhere").await.unwrap();
    assert_eq!(phase(&nowhere), "Pending");
    let cond = nowhere
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("False", Some("Unschedulable"))
    );
    assert!(cond.message.unwrap().starts_with("0/4 nodes are available"));
    // A node that starts to fit gets the waiting pod.
    nodes
        .patch(
            "worker-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"disk": "nvme"}}})),
        )
        .await
        .unwrap();
    eventually("nowhere scheduled once a node fits", || async {
        let p = api.get("nowhere").await.ok()?;
        (node_of(&p) == "worker-2" && ready(&p)).then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_pods_are_recreated_elsewhere_and_rollouts_progress() {
    let scenario = Scenario::builder()
        .control_plane(1)
        .workers(3)
        .no_addons()
        .deployment("shop", "web", 3)
        .statefulset("shop", "db", 3)
        .build()
        .unwrap();
    let sim = Simulation::start(scenario, 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let shop: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let web = pods(&client, "shop", "app=web").await;
    let victim = web.iter().find(|p| node_of(p) == "worker-1").unwrap().clone();
    nodes
        .patch(
            "worker-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    shop.evict(victim.metadata.name.as_ref().unwrap(), &EvictParams::default())
        .await
        .unwrap();
    eventually("a replacement Ready off worker-1", || async {
        let ps = pods(&client, "shop", "app=web").await;
        let live: Vec<&Pod> = ps.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        (live.len() == 3 && live.iter().all(|p| ready(p) && node_of(p) != "worker-1")).then_some(())
    })
    .await;

    // A StatefulSet pod comes back with the same name.
    let db1 = shop.get("db-1").await.unwrap();
    shop.delete("db-1", &DeleteParams::default()).await.unwrap();
    eventually("db-1 recreated", || async {
        let p = shop.get("db-1").await.ok()?;
        (p.metadata.uid != db1.metadata.uid && ready(&p)).then_some(())
    })
    .await;

    // Deployment rolling update: a new ReplicaSet takes over.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}}}});
    deploys
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    eventually("web rolled out", || async {
        let d = deploys.get("web").await.ok()?;
        let st = d.status?;
        let done = st.observed_generation == d.metadata.generation
            && st.updated_replicas == Some(3)
            && st.replicas == Some(3)
            && st.available_replicas == Some(3);
        done.then_some(())
    })
    .await;
    let ps = pods(&client, "shop", "app=web").await;
    let live: Vec<&Pod> = ps.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    assert!(
        live.iter()
            .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("nginx:1.28"))
    );
    let kc = Kubeconfig::write(sim.server());
    let (ok, out, err) = kubectl(
        &kc,
        &["rollout", "status", "-n", "shop", "deployment/web", "--timeout=20s"],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(ok && out.contains("successfully rolled out"), "{out}{err}");

    // StatefulSet rolling update goes from the highest ordinal down.
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "shop");
    sts.patch("db", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let (ok, out, err) = kubectl(
        &kc,
        &["rollout", "status", "-n", "shop", "statefulset/db", "--timeout=30s"],
        Duration::from_secs(40),
    )
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    let st = sts.get("db").await.unwrap().status.unwrap();
    assert_eq!(st.updated_replicas, Some(3));
    assert_eq!(st.current_revision, st.update_revision);

    // Scaling down removes the highest ordinal.
    sts.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    eventually("db-2 gone", || async {
        shop.get_opt("db-2").await.unwrap().is_none().then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_retry_with_backoff_and_expire() {
    let sim = Simulation::start(cluster(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let job = |name: &str, spec: serde_json::Value| -> Job {
        let mut j = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
        for (k, v) in spec.as_object().unwrap() {
            j["spec"][k] = v.clone();
        }
        serde_json::from_value(j).unwrap()
    };
    jobs.create(
        &PostParams::default(),
        &job(
            "batch",
            json!({"completions": 3, "parallelism": 2, "ttlSecondsAfterFinished": 600}),
        ),
    )
    .await
    .unwrap();
    let done = eventually("batch complete", || async {
        let j = jobs.get("batch").await.ok()?;
        let conds = j.status.as_ref()?.conditions.clone()?;
        conds
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True")
            .then_some(j)
    })
    .await;
    let st = done.status.unwrap();
    assert_eq!((st.succeeded, st.active.unwrap_or(0)), (Some(3), 0));
    let conds: Vec<String> = st.conditions.unwrap().into_iter().map(|c| c.type_).collect();
    assert_eq!(conds, ["SuccessCriteriaMet", "Complete"]);
    assert_eq!(pods(&client, "default", "job-name=batch").await.len(), 3);
    // ttlSecondsAfterFinished: 600 simulated seconds later the Job and its pods go.
    eventually("batch deleted by its TTL", || async {
        jobs.get_opt("batch").await.unwrap().is_none().then_some(())
    })
    .await;
    eventually("batch pods collected", || async {
        pods(&client, "default", "job-name=batch")
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    // A Job whose pods exit 1: annotation-driven, retried with back-off up to backoffLimit.
    let mut failing = job("failing", json!({"backoffLimit": 2}));
    let tpl = &mut failing.spec.as_mut().unwrap().template;
    tpl.metadata = Some(serde_json::from_value(json!({"annotations": {"kubesim.drover.dev/exit-code": "1"}})).unwrap());
    jobs.create(&PostParams::default(), &failing).await.unwrap();
    let failed = eventually("failing failed", || async {
        let j = jobs.get("failing").await.ok()?;
        let conds = j.status.as_ref()?.conditions.clone()?;
        conds
            .iter()
            .any(|c| c.type_ == "Failed" && c.status == "True")
            .then_some(j)
    })
    .await;
    let st = failed.status.unwrap();
    assert_eq!(st.failed, Some(3));
    let reason = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap()
        .reason;
    assert_eq!(reason.as_deref(), Some("BackoffLimitExceeded"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speed_can_change_at_run_time() {
    let scenario = Scenario::builder()
        .control_plane(1)
        .workers(1)
        .no_addons()
        .timing(|t| t.job_run_seconds = 3600.0)
        .build()
        .unwrap();
    let sim = Simulation::start(scenario, 1.0).await.unwrap();
    let client = sim.client().unwrap();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let j: Job = serde_json::from_value(
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "hour"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
    )
    .unwrap();
    jobs.create(&PostParams::default(), &j).await.unwrap();
    // At speed 1 an hour-long pod would outlive the test; at 36,000 it takes 0.1 s,
    // and the pod's wait already in flight is rescaled.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim.set_speed(36_000.0);
    assert_eq!(sim.speed(), 36_000.0);
    eventually("hour complete", || async {
        let j = jobs.get("hour").await.ok()?;
        (j.status?.succeeded == Some(1)).then_some(())
    })
    .await;
    assert!(sim.now() >= 3600.0);
    sim.shutdown().await;
}
