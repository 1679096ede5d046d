//! The scenario's cluster as clients see it: nodes with roles, taints and
//! versions, mirror pods, add-ons and workloads, through kube-rs and kubectl.

#[path = "sim_common.rs"]
mod common;

use common::*;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kubesim::sim::{Scenario, Simulation};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_scenario_is_a_believable_cluster() {
    let sim = Simulation::start(Scenario::small(), 600.0).await.unwrap();
    let client = sim.client().unwrap();

    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 8);
    let cp: Vec<&Node> = list
        .iter()
        .filter(|n| {
            n.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key("node-role.kubernetes.io/control-plane")
        })
        .collect();
    assert_eq!(cp.len(), 3);
    for n in &list {
        let labels = n.metadata.labels.as_ref().unwrap();
        let is_cp = labels.contains_key("node-role.kubernetes.io/control-plane");
        // Stacked etcd: control-plane nodes are the etcd members.
        assert_eq!(labels.contains_key("node-role.kubernetes.io/etcd"), is_cp);
        let taints = n.spec.as_ref().unwrap().taints.clone().unwrap_or_default();
        assert_eq!(
            taints
                .iter()
                .any(|t| t.key == "node-role.kubernetes.io/control-plane" && t.effect == "NoSchedule"),
            is_cp
        );
        let st = n.status.as_ref().unwrap();
        let info = st.node_info.as_ref().unwrap();
        assert_eq!(info.kubelet_version, "v1.31.4");
        assert_eq!(info.kube_proxy_version, "v1.31.4");
        assert_eq!(info.container_runtime_version, "containerd://1.7.22");
        assert_eq!(info.os_image, "Ubuntu 22.04.4 LTS");
        assert!(!info.kernel_version.is_empty());
        let ready = st
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert!(ready.last_heartbeat_time.is_some());
    }

    // Mirror pods of the static control-plane pods, etcd included.
    let system: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    for n in &cp {
        let node = n.metadata.name.clone().unwrap();
        for (component, tag) in [
            ("kube-apiserver", "v1.31.4"),
            ("kube-controller-manager", "v1.31.4"),
            ("kube-scheduler", "v1.31.4"),
            ("etcd", "v3.5.15"),
        ] {
            let p = system.get(&format!("{component}-{node}")).await.unwrap();
            let meta = &p.metadata;
            assert!(
                meta.annotations
                    .as_ref()
                    .unwrap()
                    .contains_key("kubernetes.io/config.mirror")
            );
            assert_eq!(meta.labels.as_ref().unwrap()["component"], component);
            assert_eq!(meta.labels.as_ref().unwrap()["tier"], "control-plane");
            let owner = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", node.as_str()));
            let image = p.spec.as_ref().unwrap().containers[0].image.clone().unwrap();
            assert_eq!(image, format!("registry.k8s.io/{component}:{tag}"));
            assert_eq!(node_of(&p), node);
            assert!(ready(&p));
        }
    }

    // DaemonSets: one Ready pod on every node, control plane included.
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    for name in ["calico-node", "kube-proxy"] {
        let d = ds.get(name).await.unwrap();
        let st = d.status.unwrap();
        assert_eq!((st.desired_number_scheduled, st.number_ready), (8, 8), "{name}");
    }
    let proxies = pods(&client, "kube-system", "k8s-app=kube-proxy").await;
    let mut on: Vec<String> = proxies.iter().map(node_of).collect();
    on.sort();
    on.dedup();
    assert_eq!(on.len(), 8);
    assert!(
        proxies[0].spec.as_ref().unwrap().containers[0]
            .image
            .as_deref()
            .unwrap()
            .ends_with(":v1.31.4")
    );

    // User workloads: Ready, spread, never on tainted control-plane nodes.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let web = deploys.get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (web.replicas, web.ready_replicas, web.updated_replicas),
        (Some(4), Some(4), Some(4))
    );
    let web_pods = pods(&client, "shop", "app=web").await;
    let mut web_nodes: Vec<String> = web_pods.iter().map(node_of).collect();
    web_nodes.sort();
    web_nodes.dedup();
    assert_eq!(web_nodes.len(), 4, "replicas spread over workers");
    assert!(web_nodes.iter().all(|n| n.starts_with("worker-")));
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "shop");
    assert_eq!(sts.get("db").await.unwrap().status.unwrap().ready_replicas, Some(3));
    let db_pods = pods(&client, "shop", "app=db").await;
    let mut names: Vec<String> = db_pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "shop");
    let st = pdbs.get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (
            st.expected_pods,
            st.desired_healthy,
            st.current_healthy,
            st.disruptions_allowed
        ),
        (4, 3, 4, 1)
    );
    let st = pdbs.get("db").await.unwrap().status.unwrap();
    assert_eq!(
        (st.expected_pods, st.desired_healthy, st.disruptions_allowed),
        (3, 2, 1)
    );
    let bare: Api<Pod> = Api::namespaced(client.clone(), "default");
    let debug = bare.get("debug").await.unwrap();
    assert!(debug.metadata.owner_references.is_none() && ready(&debug));
    let cache = pods(&client, "shop", "app=cache").await;
    assert!(
        cache[0].spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
            .empty_dir
            .is_some()
    );
    let slow = pods(&client, "batch", "app=slow-shutdown").await;
    assert_eq!(
        slow[0].spec.as_ref().unwrap().termination_grace_period_seconds,
        Some(300)
    );

    // kubectl sees the same cluster.
    let kc = Kubeconfig::write(sim.server());
    let (ok, out, err) = kubectl(&kc, &["get", "nodes,pods", "-A", "-o", "wide"], Duration::from_secs(30))
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("cp-1") && out.contains("Ready") && out.contains("control-plane"),
        "{out}"
    );
    assert!(out.contains("kube-apiserver-cp-1") && out.contains("Running"), "{out}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_scenario_with_dedicated_etcd_and_pool_versions() {
    let mut old = kubesim::sim::NodePool::new(kubesim::sim::Role::Worker, 2);
    old.name_prefix = Some("old".into());
    old.versions.kubelet = Some("v1.30.8".into());
    old.versions.container_runtime = Some("containerd://1.6.36".into());
    let scenario = Scenario::builder()
        .control_plane(1)
        .etcd(3)
        .workers(2)
        .pool(old)
        .no_addons()
        .deployment("apps", "api", 2)
        .build()
        .unwrap();
    let sim = Simulation::start(scenario, 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let cp = nodes.get("cp-1").await.unwrap();
    assert!(
        !cp.metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key("node-role.kubernetes.io/etcd")
    );
    let etcd = nodes.get("etcd-2").await.unwrap();
    assert!(
        etcd.metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key("node-role.kubernetes.io/etcd")
    );
    let old1 = nodes.get("old-1").await.unwrap().status.unwrap().node_info.unwrap();
    assert_eq!(old1.kubelet_version, "v1.30.8");
    assert_eq!(old1.container_runtime_version, "containerd://1.6.36");
    let system: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    assert!(system.get("etcd-etcd-2").await.is_ok());
    assert!(system.get("etcd-cp-1").await.is_err());
    assert!(system.get("kube-apiserver-cp-1").await.is_ok());
    let api = pods(&client, "apps", "app=api").await;
    assert_eq!(api.len(), 2);
    assert!(
        api.iter()
            .all(|p| ready(p) && !node_of(p).starts_with("etcd") && !node_of(p).starts_with("cp"))
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medium_scenario_starts_and_a_deleted_node_loses_its_pods() {
    let sim = Simulation::start(Scenario::medium(), 600.0).await.unwrap();
    let st = sim.status().await.unwrap();
    assert_eq!(st.nodes, 103);
    assert_eq!((st.pods_not_ready, st.workloads_unsatisfied), (0, 0), "{st:?}");
    // 20×10 web + 20×6 api + 5×3 db + 5×3 cache, 3 DaemonSets on 103 nodes,
    // 3 coredns/metrics-server, 12 mirror pods.
    assert_eq!(st.pods, 200 + 120 + 15 + 15 + 3 * 103 + 3 + 12);
    let client = sim.client().unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let zone_b = nodes
        .list(&ListParams::default().labels("topology.kubernetes.io/zone=zone-b"))
        .await
        .unwrap();
    assert_eq!(zone_b.items.len(), 50);
    // A node removed from the cluster: its pods go, controllers replace them.
    let victim = "worker-a-07";
    let on = |ps: &[Pod]| ps.iter().filter(|p| node_of(p) == victim).count();
    let all: Api<Pod> = Api::all(client.clone());
    assert!(on(&all.list(&ListParams::default()).await.unwrap().items) > 0);
    nodes.delete(victim, &Default::default()).await.unwrap();
    eventually("no pods left on the deleted node", || {
        let all = all.clone();
        async move { (on(&all.list(&ListParams::default()).await.ok()?.items) == 0).then_some(()) }
    })
    .await;
    let settled = sim.wait_settled(Duration::from_secs(60)).await.unwrap();
    assert_eq!(settled.nodes, 102);
    sim.shutdown().await;
}
