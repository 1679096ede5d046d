//! The disruption controller's PDB status and what eviction makes of it;
//! violations the recorder catches; API faults and watch drops.

#[path = "sim_common.rs"]
mod common;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kubesim::sim::{Fault, Scenario, Simulation};
use serde_json::json;
use std::time::Duration;

fn scenario() -> Scenario {
    Scenario::builder()
        .control_plane(1)
        .workers(3)
        .no_addons()
        .deployment("shop", "web", 4)
        .pdb_min_available(3)
        .deployment("shop", "api", 5)
        .pdb_min_available("50%")
        .statefulset("shop", "db", 3)
        .pdb_max_unavailable(1)
        .build()
        .unwrap()
}

/// A client that shows 429s instead of retrying them.
fn no_retry(sim: &Simulation) -> kube::Client {
    let mut cfg = kube::Config::new(sim.server().url().parse().unwrap());
    cfg.default_retry = false;
    kube::Client::try_from(cfg).unwrap()
}

async fn pdb_status(api: &Api<PodDisruptionBudget>, name: &str) -> (i32, i32, i32, i32, i64) {
    let p = api.get(name).await.unwrap();
    let st = p.status.unwrap();
    (
        st.expected_pods,
        st.desired_healthy,
        st.current_healthy,
        st.disruptions_allowed,
        st.observed_generation.unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdb_status_follows_pods_and_spec() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "shop");
    assert_eq!(pdb_status(&pdbs, "web").await, (4, 3, 4, 1, 1));
    // 50% of 5 rounds up to 3.
    assert_eq!(pdb_status(&pdbs, "api").await, (5, 3, 5, 2, 1));
    assert_eq!(pdb_status(&pdbs, "db").await, (3, 2, 3, 1, 1));
    let p = pdbs.get("web").await.unwrap();
    let cond = p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionAllowed")
        .unwrap();
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("True", "SufficientPods"));

    // A spec change: the new generation is observed and the budget recomputed.
    pdbs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": 4}})),
    )
    .await
    .unwrap();
    eventually("web PDB at generation 2", || async {
        (pdb_status(&pdbs, "web").await == (4, 4, 4, 0, 2)).then_some(())
    })
    .await;
    let p = pdbs.get("web").await.unwrap();
    let cond = p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionAllowed")
        .unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "InsufficientPods")
    );

    // A percentage or maxUnavailable over pods without a controller cannot be computed.
    let bare: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "lonely", "labels": {"app": "lonely"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    .unwrap();
    bare.create(&PostParams::default(), &pod).await.unwrap();
    let pdb: PodDisruptionBudget =
        serde_json::from_value(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "lonely"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "lonely"}}}}))
        .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let cond = eventually("lonely PDB synced", || async {
        let st = pdbs.get("lonely").await.ok()?.status?;
        st.conditions?
            .into_iter()
            .find(|c| c.type_ == "DisruptionAllowed" && c.reason == "SyncFailed")
    })
    .await;
    assert!(cond.message.contains("found no controllers"), "{}", cond.message);
    assert_eq!(pdb_status(&pdbs, "lonely").await.3, 0);

    // A selector change moves the budget to other pods (its members are
    // re-matched only then, not on its status writes).
    pdbs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": {"matchLabels": {"app": "api"}}}})),
    )
    .await
    .unwrap();
    eventually("web PDB over the api pods", || async {
        (pdb_status(&pdbs, "web").await == (5, 4, 5, 1, 3)).then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_answers_429_exactly_when_the_budget_is_spent() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let client = no_retry(&sim);
    let shop: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "shop");
    // Slow the controllers down so the budget is observed before replacements come.
    sim.set_speed(1.0);
    let web = pods(&client, "shop", "app=web").await;
    let names: Vec<String> = web.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
    shop.evict(&names[0], &EvictParams::default()).await.unwrap();
    let err = shop.evict(&names[1], &EvictParams::default()).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 429);
            assert!(s.message.contains("disruption budget"), "{}", s.message);
        }
        other => panic!("expected 429, got {other:?}"),
    }
    let st = pdbs.get("web").await.unwrap().status.unwrap();
    assert_eq!(st.disruptions_allowed, 0);
    assert!(
        st.disrupted_pods
            .is_none_or(|d| d.is_empty() || d.contains_key(&names[0]))
    );
    // Once the replacement is Ready the budget allows one again.
    sim.set_speed(600.0);
    eventually("web budget back to 1", || async {
        let (_, _, healthy, allowed, _) = pdb_status(&pdbs, "web").await;
        (healthy == 4 && allowed == 1).then_some(())
    })
    .await;
    shop.evict(&names[1], &EvictParams::default()).await.unwrap();
    assert!(sim.recorder().pdb_violations().is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_catches_deletions_that_bypass_the_budget() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let shop: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "shop");
    // db allows one disruption: deleting one pod directly is within budget.
    shop.delete("db-2", &DeleteParams::default()).await.unwrap();
    eventually("db-2 back", || async {
        let p = shop.get("db-2").await.ok()?;
        (ready(&p) && p.metadata.deletion_timestamp.is_none()).then_some(())
    })
    .await;
    assert!(sim.recorder().pdb_violations().is_empty());
    // web has no disruption left after this change: a direct delete violates it.
    pdbs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": 4}})),
    )
    .await
    .unwrap();
    eventually("web budget spent", || async {
        (pdb_status(&pdbs, "web").await.3 == 0).then_some(())
    })
    .await;
    let victim = pods(&client, "shop", "app=web").await[0].clone();
    shop.delete(victim.metadata.name.as_ref().unwrap(), &DeleteParams::default())
        .await
        .unwrap();
    let v = eventually("a violation", || async {
        sim.recorder().pdb_violations().into_iter().next()
    })
    .await;
    assert_eq!(
        (v.namespace.as_str(), v.pdb.as_str(), v.kind.as_str()),
        ("shop", "web", "Deletion")
    );
    assert_eq!(&v.pod, victim.metadata.name.as_ref().unwrap());
    assert_eq!((v.healthy_after, v.desired_healthy), (3, 4));
    assert_eq!(sim.recorder().pdb_violations().len(), 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_and_watch_drops_are_faults_too() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let client = no_retry(&sim);
    let shop: Api<Pod> = Api::namespaced(client.clone(), "shop");
    sim.set_fault(Fault::ApiErrors {
        verb: Some("list".into()),
        resource: Some("pods".into()),
        code: 503,
        rate: 1.0,
        latency_ms: 0,
    })
    .unwrap();
    let err = shop.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 503), "{err:?}");
    sim.clear_faults();
    assert_eq!(shop.list(&ListParams::default()).await.unwrap().items.len(), 12);

    sim.set_fault(Fault::WatchDrops { every_seconds: 60.0 }).unwrap();
    let stream = shop.watch(&WatchParams::default(), "0").await.unwrap();
    // 60 simulated seconds are 0.1 s here: the server closes the watch.
    let ended = tokio::time::timeout(Duration::from_secs(20), stream.collect::<Vec<_>>()).await;
    assert!(ended.is_ok(), "the watch was never dropped");
    sim.shutdown().await;
}

/// Regression (issue 11): an eviction that stalls between taking its
/// budget's disruption and deleting the pod, as on a loaded machine, must
/// not turn into a `Deletion` violation. At speed 600 the 120 s
/// disruptedPods timeout is 0.2 s of wall time; each eviction here stalls
/// 0.3 s between its two writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_stalled_between_its_two_writes_is_no_violation() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let client = no_retry(&sim);
    let shop: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "shop");
    sim.store().stall_evictions(Duration::from_millis(300));
    for round in 0..3 {
        eventually("web allows a disruption", || async {
            let (_, _, healthy, allowed, _) = pdb_status(&pdbs, "web").await;
            (healthy == 4 && allowed == 1).then_some(())
        })
        .await;
        let victim = pods(&client, "shop", "app=web")
            .await
            .into_iter()
            .find(|p| ready(p) && p.metadata.deletion_timestamp.is_none())
            .unwrap();
        let name = victim.metadata.name.clone().unwrap();
        shop.evict(&name, &EvictParams::default())
            .await
            .unwrap_or_else(|e| panic!("round {round}: evicting {name}: {e}"));
    }
    sim.store().stall_evictions(Duration::ZERO);
    eventually("web whole again", || async {
        (pdb_status(&pdbs, "web").await.2 == 4).then_some(())
    })
    .await;
    assert_eq!(sim.recorder().pdb_violations(), vec![]);
    sim.shutdown().await;
}

/// Regression (issue 11): a `disruptedPods` stamp is wall time rounded to
/// the second, while the disruption controller runs in simulated time. At
/// speed 600 the rounding alone is up to 600 simulated seconds, so ageing
/// the stamp as wall time x speed dropped fresh entries at once. The
/// controller ages an entry in simulated time from when it first sees it.
/// Here the stamp is 5 s of wall time old, 300 simulated seconds at speed 60
/// by the old reckoning: the entry must still hold its pod out of
/// `currentHealthy`, then expire 120 simulated seconds later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disrupted_pod_entry_ages_in_simulated_time() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "shop");
    let victim = pods(&client, "shop", "app=web").await[0].metadata.name.clone().unwrap();
    // 120 simulated s is 2 s of wall time at speed 60.
    sim.set_speed(60.0);
    let stamp = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5);
    let stamp = stamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let start = sim.now();
    pdbs.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"disruptedPods": {victim.clone(): stamp}}})),
    )
    .await
    .unwrap();
    // The controller recomputes the budget with the entry kept.
    eventually("the entry counted", || async {
        let st = pdbs.get("web").await.ok()?.status?;
        let kept = st.disrupted_pods.as_ref().is_some_and(|d| d.contains_key(&victim));
        (kept && st.current_healthy == 3 && st.disruptions_allowed == 0).then_some(())
    })
    .await;
    // It expires after the simulated timeout, and the budget recovers.
    eventually("entry expired", || async {
        let st = pdbs.get("web").await.ok()?.status?;
        let gone = st.disrupted_pods.is_none_or(|d| d.is_empty());
        (gone && st.current_healthy == 4 && st.disruptions_allowed == 1).then_some(())
    })
    .await;
    let after = sim.now() - start;
    assert!(after >= 120.0, "expired after {after:.0} simulated s");
    sim.shutdown().await;
}
