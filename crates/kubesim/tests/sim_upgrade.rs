//! The upgrade contract: a Job pod carrying DROVER_COMPONENT/DROVER_VERSION
//! upgrades that component on its node (nodeInfo or the static pod's tag),
//! rebooting when configured; faults make it fail, hang or never come back.

#[path = "sim_common.rs"]
mod common;

use common::*;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubesim::sim::{Fault, Report, Scenario, Simulation};
use serde_json::json;

fn scenario() -> Scenario {
    Scenario::builder()
        .control_plane(1)
        .workers(3)
        .deployment("shop", "web", 3)
        .pdb_max_unavailable(1)
        .component("kubelet", 60.0, false)
        .component("containerd", 90.0, true)
        .component("kube-apiserver", 30.0, false)
        .component("etcd", 30.0, false)
        .timing(|t| t.reboot_seconds = 120.0)
        .build()
        .unwrap()
}

/// An upgrade Job as drover makes them: pinned to the node, carrying the contract's env.
fn upgrade_job(name: &str, node: &str, component: &str, version: &str, extra: serde_json::Value) -> Job {
    let mut j = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "tolerations": [{"operator": "Exists"}],
                "containers": [{
                    "name": "upgrade",
                    "image": "registry.example.com/upgrade:1",
                    "env": [
                        {"name": "DROVER_COMPONENT", "value": component},
                        {"name": "DROVER_VERSION", "value": version},
                        {"name": "DROVER_NODE", "value": node},
                    ],
                }],
            }},
        },
    });
    if let Some(o) = extra.as_object() {
        for (k, v) in o {
            j["spec"][k] = v.clone();
        }
    }
    serde_json::from_value(j).unwrap()
}

fn condition(job: &Job, t: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn finished(client: &Client, name: &str) -> (Job, bool) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), "kube-system");
    eventually(&format!("job {name} finished"), || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get(name).await.ok()?;
            if condition(&j, "Complete").is_some() {
                Some((j, true))
            } else if condition(&j, "Failed").is_some() {
                Some((j, false))
            } else {
                None
            }
        }
    })
    .await
}

async fn node_info(client: &Client, node: &str) -> k8s_openapi::api::core::v1::NodeSystemInfo {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.get(node).await.unwrap().status.unwrap().node_info.unwrap()
}

async fn recorder_over_http(client: &Client) -> Report {
    let req = axum::http::Request::get("/kubesim/recorder").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_upgrade_changes_node_info_and_completes_the_job() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "kube-system");
    jobs.create(
        &PostParams::default(),
        &upgrade_job("up-kubelet-w1", "worker-1", "kubelet", "v1.32.0", json!({})),
    )
    .await
    .unwrap();
    let (job, ok) = finished(&client, "up-kubelet-w1").await;
    assert!(ok, "{:?}", job.status);
    assert_eq!(condition(&job, "Complete").unwrap().0, "CompletionsReached");
    assert_eq!(job.status.as_ref().unwrap().succeeded, Some(1));
    assert!(job.status.as_ref().unwrap().completion_time.is_some());
    assert_eq!(node_info(&client, "worker-1").await.kubelet_version, "v1.32.0");
    assert_eq!(node_info(&client, "worker-2").await.kubelet_version, "v1.31.4");
    let upgrade_pods = pods(&client, "kube-system", "job-name=up-kubelet-w1").await;
    assert_eq!(upgrade_pods.len(), 1);
    assert_eq!(phase(&upgrade_pods[0]), "Succeeded");
    let exit = upgrade_pods[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .exit_code;
    assert_eq!(exit, 0);

    // The recorder saw it, in-process and over HTTP.
    let timeline = sim.recorder().versions("worker-1");
    let change = timeline
        .iter()
        .find(|c| c.component == "kubelet" && c.to == "v1.32.0")
        .unwrap();
    assert_eq!(change.from.as_deref(), Some("v1.31.4"));
    let report = recorder_over_http(&client).await;
    assert!(
        report.versions["worker-1"]
            .iter()
            .any(|c| c.component == "kubelet" && c.to == "v1.32.0")
    );
    assert!(report.pdb_violations.is_empty());
    // No reboot: the node never went unavailable.
    assert_eq!(report.max_unavailable["worker"], 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_upgrade_reboots_the_node_without_deleting_its_pods() {
    let sim = Simulation::start(scenario(), 300.0).await.unwrap();
    let client = sim.client().unwrap();
    let all: Api<Pod> = Api::all(client.clone());
    let on_node = |ps: Vec<Pod>| -> Vec<String> {
        let mut v: Vec<String> = ps
            .iter()
            .filter(|p| {
                node_of(p) == "worker-2" && !p.metadata.labels.as_ref().is_some_and(|l| l.contains_key("job-name"))
            })
            .map(|p| p.metadata.uid.clone().unwrap())
            .collect();
        v.sort();
        v
    };
    let before = on_node(all.list(&Default::default()).await.unwrap().items);
    assert!(!before.is_empty());
    let jobs: Api<Job> = Api::namespaced(client.clone(), "kube-system");
    jobs.create(
        &PostParams::default(),
        &upgrade_job("up-containerd-w2", "worker-2", "containerd", "1.7.23", json!({})),
    )
    .await
    .unwrap();
    // The NotReady window is short at this speed: the recorder's node events prove it below.
    let (job, ok) = finished(&client, "up-containerd-w2").await;
    assert!(ok, "{:?}", job.status);
    let info = node_info(&client, "worker-2").await;
    assert_eq!(info.container_runtime_version, "containerd://1.7.23");
    let after = on_node(all.list(&Default::default()).await.unwrap().items);
    assert_eq!(before, after, "a reboot keeps the node's pods");
    eventually("worker-2 pods Ready again", || {
        let client = client.clone();
        async move {
            let ps = pods(&client, "shop", "app=web").await;
            ps.iter().all(ready).then_some(())
        }
    })
    .await;
    let report = sim.recorder().report(sim.now());
    assert_eq!(report.max_unavailable["worker"], 1);
    let downs: Vec<_> = report.node_events.iter().filter(|e| e.node == "worker-2").collect();
    assert!(
        downs.iter().any(|e| !e.ready) && downs.last().unwrap().ready,
        "{downs:?}"
    );
    // A reboot under a PDB-covered pod is recorded when it breaks the budget:
    // here one web pod on worker-2 with maxUnavailable 1 is within it.
    assert!(report.pdb_violations.is_empty(), "{:?}", report.pdb_violations);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_and_etcd_upgrades_change_static_pod_tags() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "kube-system");
    let system: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let uid_before = system.get("kube-apiserver-cp-1").await.unwrap().metadata.uid;
    for (name, component, version) in [
        ("up-etcd", "etcd", "v3.5.16"),
        ("up-apiserver", "kube-apiserver", "v1.32.0"),
    ] {
        jobs.create(
            &PostParams::default(),
            &upgrade_job(name, "cp-1", component, version, json!({})),
        )
        .await
        .unwrap();
        let (job, ok) = finished(&client, name).await;
        assert!(ok, "{:?}", job.status);
        let p = system.get(&format!("{component}-cp-1")).await.unwrap();
        assert_eq!(
            p.spec.as_ref().unwrap().containers[0].image.as_deref(),
            Some(format!("registry.k8s.io/{component}:{version}").as_str())
        );
        // The static pod restarted and is Ready again by the time the Job completes.
        let cs = &p.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 1);
        assert!(ready(&p));
    }
    let api = system.get("kube-apiserver-cp-1").await.unwrap();
    assert_eq!(api.metadata.uid, uid_before);
    let timeline = sim.recorder().versions("cp-1");
    let comps: Vec<(&str, &str)> = timeline
        .iter()
        .filter(|c| c.from.is_some())
        .map(|c| (c.component.as_str(), c.to.as_str()))
        .collect();
    assert_eq!(comps, [("etcd", "v3.5.16"), ("kube-apiserver", "v1.32.0")]);
    // Unknown components change nothing observable; the Job's success is the proof.
    jobs.create(
        &PostParams::default(),
        &upgrade_job("up-other", "worker-3", "fancy-agent", "2.0.0", json!({})),
    )
    .await
    .unwrap();
    let (_, ok) = finished(&client, "up-other").await;
    assert!(ok);
    assert!(sim.recorder().versions("worker-3").iter().all(|c| c.from.is_none()));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_hanging_upgrades_follow_the_job_rules() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    sim.set_fault(Fault::UpgradeFails {
        component: "containerd".into(),
        nodes: vec!["worker-1".into()],
    })
    .unwrap();
    sim.set_fault(Fault::UpgradeHangs {
        component: "kubelet".into(),
        nodes: vec![],
    })
    .unwrap();
    let client = sim.client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "kube-system");
    jobs.create(
        &PostParams::default(),
        &upgrade_job("fail", "worker-1", "containerd", "1.7.23", json!({"backoffLimit": 1})),
    )
    .await
    .unwrap();
    jobs.create(
        &PostParams::default(),
        &upgrade_job(
            "hang",
            "worker-2",
            "kubelet",
            "v1.32.0",
            json!({"activeDeadlineSeconds": 600}),
        ),
    )
    .await
    .unwrap();

    let (job, ok) = finished(&client, "fail").await;
    assert!(!ok);
    assert_eq!(condition(&job, "Failed").unwrap().0, "BackoffLimitExceeded");
    assert_eq!(
        job.status.as_ref().unwrap().failed,
        Some(2),
        "backoffLimit 1: two attempts"
    );
    let failed = pods(&client, "kube-system", "job-name=fail").await;
    assert_eq!(failed.len(), 2);
    for p in &failed {
        assert_eq!(phase(p), "Failed");
        let t = p.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(t.exit_code, 1);
        assert_eq!(
            t.message.as_deref(),
            Some("upgrade of containerd to 1.7.23 failed: simulated fault")
        );
    }
    assert_eq!(
        node_info(&client, "worker-1").await.container_runtime_version,
        "containerd://1.7.22"
    );

    let (job, ok) = finished(&client, "hang").await;
    assert!(!ok);
    assert_eq!(condition(&job, "Failed").unwrap().0, "DeadlineExceeded");
    assert_eq!(node_info(&client, "worker-2").await.kubelet_version, "v1.31.4");
    eventually("the hung pod is gone", || {
        let client = client.clone();
        async move {
            pods(&client, "kube-system", "job-name=hang")
                .await
                .is_empty()
                .then_some(())
        }
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_comes_back_after_reboot() {
    let mut s = scenario();
    s.faults.push(Fault::NodeNeverReady {
        nodes: vec!["worker-3".into()],
    });
    let sim = Simulation::start(s, 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "kube-system");
    jobs.create(
        &PostParams::default(),
        &upgrade_job(
            "reboot",
            "worker-3",
            "os",
            "22.04.5",
            json!({"activeDeadlineSeconds": 1800}),
        ),
    )
    .await
    .unwrap();
    // DROVER_REBOOT asks for a reboot whatever the component's timing says.
    let mut job = upgrade_job("reboot-env", "worker-1", "os", "22.04.5", json!({}));
    job.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0]
        .env
        .as_mut()
        .unwrap()
        .push(serde_json::from_value(json!({"name": "DROVER_REBOOT", "value": "true"})).unwrap());
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let (_, ok) = finished(&client, "reboot-env").await;
    assert!(ok);
    let events = sim.recorder().report(sim.now()).node_events;
    assert!(events.iter().any(|e| e.node == "worker-1" && !e.ready), "{events:?}");

    // Without the env, `os` does not reboot here, so worker-3 upgrades in place.
    let (_, ok) = finished(&client, "reboot").await;
    assert!(ok);

    // With the reboot asked for, worker-3 goes down and stays down.
    let mut job = upgrade_job(
        "reboot-3",
        "worker-3",
        "os",
        "22.04.5",
        json!({"activeDeadlineSeconds": 1200}),
    );
    job.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0]
        .env
        .as_mut()
        .unwrap()
        .push(serde_json::from_value(json!({"name": "DROVER_REBOOT", "value": "true"})).unwrap());
    jobs.create(&PostParams::default(), &job).await.unwrap();
    // Past the deadline the Job is doomed (FailureTarget), but as on a real
    // cluster its pod stays Terminating while the kubelet is gone, so the
    // Job is not Failed yet.
    eventually("reboot-3 FailureTarget", || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("reboot-3").await.ok()?;
            (condition(&j, "FailureTarget")?.0 == "DeadlineExceeded").then_some(())
        }
    })
    .await;
    let report = sim.recorder().report(sim.now());
    assert_eq!(report.not_ready, vec!["worker-3".to_string()]);
    let stuck = pods(&client, "kube-system", "job-name=reboot-3").await;
    assert!(stuck[0].metadata.deletion_timestamp.is_some());
    assert!(condition(&jobs.get("reboot-3").await.unwrap(), "Failed").is_none());
    // An operator brings the node back: the pod goes, the Job fails.
    sim.set_node_ready("worker-3", true).await.unwrap();
    let (job, ok) = finished(&client, "reboot-3").await;
    assert!(!ok);
    assert_eq!(condition(&job, "Failed").unwrap().0, "DeadlineExceeded");
    assert!(sim.recorder().report(sim.now()).not_ready.is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_component_rolls_out_pod_by_pod() {
    let sim = Simulation::start(scenario(), 120.0).await.unwrap();
    let client = sim.client().unwrap();
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "calico-node", "image": "docker.io/calico/node:v3.28.2"}]}}}});
    ds.patch("calico-node", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let mut max_unavailable = 0;
    let mut max_terminating = 0;
    within("calico-node rolled out", async {
        loop {
            let d = ds.get("calico-node").await.unwrap();
            let st = d.status.clone().unwrap();
            max_unavailable = max_unavailable.max(st.number_unavailable.unwrap_or(0));
            let ps = pods(&client, "kube-system", "k8s-app=calico-node").await;
            max_terminating =
                max_terminating.max(ps.iter().filter(|p| p.metadata.deletion_timestamp.is_some()).count());
            let done = st.observed_generation == d.metadata.generation
                && st.updated_number_scheduled == Some(4)
                && st.number_ready == 4
                && ps.len() == 4
                && ps.iter().all(|p| {
                    ready(p)
                        && p.spec.as_ref().unwrap().containers[0].image.as_deref()
                            == Some("docker.io/calico/node:v3.28.2")
                });
            if done {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(max_unavailable <= 1, "maxUnavailable 1 held: {max_unavailable}");
    assert!(max_terminating <= 1, "one pod at a time: {max_terminating}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebooting_an_undrained_node_is_a_recorded_pdb_violation() {
    let scenario = Scenario::builder()
        .control_plane(1)
        .workers(2)
        .no_addons()
        .deployment("shop", "web", 4)
        .pdb_max_unavailable(1)
        .component("kernel", 30.0, true)
        .build()
        .unwrap();
    let sim = Simulation::start(scenario, 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let on_w1 = pods(&client, "shop", "app=web")
        .await
        .iter()
        .filter(|p| node_of(p) == "worker-1")
        .count();
    assert_eq!(on_w1, 2);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "kube-system");
    jobs.create(
        &PostParams::default(),
        &upgrade_job("kernel-w1", "worker-1", "kernel", "6.8.0", json!({})),
    )
    .await
    .unwrap();
    let (_, ok) = finished(&client, "kernel-w1").await;
    assert!(ok);
    // Two covered pods went down with the node; the budget allowed one.
    let v = sim.recorder().pdb_violations();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        (v[0].kind.as_str(), v[0].pdb.as_str(), v[0].node.as_str()),
        ("NodeReboot", "web", "worker-1")
    );
    assert_eq!((v[0].healthy_after, v[0].desired_healthy), (2, 3));
    sim.shutdown().await;
}
