//! `kubectl drain` on simulated nodes behaves as on a real cluster: it
//! evicts through PDBs, waits for replacements to make room in the budget,
//! and keeps retrying against a budget that never allows a disruption.

#[path = "sim_common.rs"]
mod common;

use common::*;
use kubesim::sim::{Fault, Scenario, Simulation};
use std::time::Duration;

fn two_workers(pdb_max_unavailable: i64) -> Scenario {
    Scenario::builder()
        .control_plane(1)
        .workers(2)
        .deployment("shop", "web", 4)
        .pdb_max_unavailable(pdb_max_unavailable)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_replacements_through_the_pdb_and_succeeds() {
    let sim = Simulation::start(two_workers(1), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let before = pods(&client, "shop", "app=web").await;
    let on_1 = before.iter().filter(|p| node_of(p) == "worker-1").count();
    assert_eq!(on_1, 2, "two replicas per worker");

    let kc = Kubeconfig::write(sim.server());
    let (ok, out, err) = kubectl(
        &kc,
        &[
            "drain",
            "worker-1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=90s",
        ],
        Duration::from_secs(100),
    )
    .await
    .unwrap();
    assert!(ok, "drain failed: {out}\n{err}");
    assert!(out.contains("node/worker-1 drained"), "{out}");
    // The second eviction had to wait for the first replacement to be Ready.
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "no PDB retry seen: {err}"
    );

    let after = eventually("4 Ready web pods on worker-2", || {
        let client = client.clone();
        async move {
            let ps = pods(&client, "shop", "app=web").await;
            let live: Vec<_> = ps.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
            (live.len() == 4 && live.iter().all(|p| ready(p) && node_of(p) == "worker-2")).then_some(ps)
        }
    })
    .await;
    assert_eq!(after.len(), 4);
    // DaemonSet and mirror pods stay on the drained node.
    let system = pods(&client, "kube-system", "k8s-app=calico-node").await;
    assert!(system.iter().any(|p| node_of(p) == "worker-1"));

    let rec = sim.recorder();
    assert!(rec.pdb_violations().is_empty(), "{:?}", rec.pdb_violations());
    assert_eq!(rec.cordoned(), vec!["worker-1".to_string()]);
    assert_eq!(rec.max_unavailable("worker"), 1);
    assert_eq!(rec.max_unavailable("control-plane"), 0);

    let (ok, _, err) = kubectl(&kc, &["uncordon", "worker-1"], Duration::from_secs(30))
        .await
        .unwrap();
    assert!(ok, "{err}");
    eventually("worker-1 uncordoned in the recorder", || async {
        rec.cordoned().is_empty().then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_keeps_retrying_a_pdb_that_never_allows_disruption() {
    let scenario = Scenario::builder()
        .control_plane(1)
        .workers(2)
        .deployment("shop", "web", 2)
        .pdb_min_available(2)
        .build()
        .unwrap();
    let sim = Simulation::start(scenario, 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let victim = pods(&client, "shop", "app=web").await.into_iter().next().unwrap();
    let node = node_of(&victim);

    let kc = Kubeconfig::write(sim.server());
    let (ok, out, err) = kubectl(
        &kc,
        &["drain", &node, "--ignore-daemonsets", "--timeout=12s"],
        Duration::from_secs(40),
    )
    .await
    .unwrap();
    assert!(!ok, "drain must not succeed: {out}");
    let retries = err
        .matches("Cannot evict pod as it would violate the pod's disruption budget")
        .count();
    assert!(retries >= 2, "kubectl retried {retries} times: {err}");
    assert!(
        err.contains("global timeout reached") || err.contains("timed out"),
        "{err}"
    );

    // The pod was never disrupted and the node stays cordoned.
    let still = pods(&client, "shop", "app=web").await;
    assert_eq!(still.len(), 2);
    assert!(
        still
            .iter()
            .all(|p| ready(p) && p.metadata.deletion_timestamp.is_none())
    );
    assert!(still.iter().any(|p| node_of(p) == node));
    assert!(sim.recorder().pdb_violations().is_empty());
    assert_eq!(sim.recorder().cordoned(), vec![node]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_pdb_fault_stops_a_drain_that_would_pass() {
    let sim = Simulation::start(two_workers(1), 600.0).await.unwrap();
    sim.set_fault(Fault::PdbBlocks {
        namespace: "shop".into(),
        name: "web".into(),
    })
    .unwrap();
    let client = sim.client().unwrap();
    let pdbs: kube::Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        kube::Api::namespaced(client.clone(), "shop");
    eventually("the PDB reports no disruption allowed", || {
        let pdbs = pdbs.clone();
        async move {
            let st = pdbs.get("web").await.ok()?.status?;
            (st.disruptions_allowed == 0 && st.current_healthy == 4).then_some(())
        }
    })
    .await;
    let kc = Kubeconfig::write(sim.server());
    let (ok, _, err) = kubectl(
        &kc,
        &["drain", "worker-2", "--ignore-daemonsets", "--timeout=6s"],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("disruption budget"), "{err}");
    sim.clear_faults();
    let (ok, out, err) = kubectl(
        &kc,
        &["drain", "worker-2", "--ignore-daemonsets", "--timeout=60s"],
        Duration::from_secs(70),
    )
    .await
    .unwrap();
    assert!(ok, "{out}\n{err}");
    assert!(sim.recorder().pdb_violations().is_empty());
    sim.shutdown().await;
}
