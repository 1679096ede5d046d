//! The pods/eviction subresource and its PodDisruptionBudget rules.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn pdb(c: &kube::Client, name: &str, app: &str, allowed: i32) {
    let api: Api<PodDisruptionBudget> = Api::default_namespaced(c.clone());
    let p: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": name}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
    let st = json!({"status": {"disruptionsAllowed": allowed, "currentHealthy": 1 + allowed, "desiredHealthy": 1, "expectedPods": 1 + allowed, "observedGeneration": 1}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
}

#[tokio::test]
async fn eviction_blocked_by_a_pdb_is_429_with_the_real_message() {
    let (_s, c) = server().await;
    running_pod(&c, "default", "p", Some("n"), json!({"app": "a"})).await;
    pdb(&c, "budget", "a", 0).await;
    let pods: Api<Pod> = Api::default_namespaced(c);
    let st = status(pods.evict("p", &EvictParams::default()).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(
        st.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let cause = &st.details.unwrap().causes[0];
    assert_eq!(cause.reason, "DisruptionBudget");
    assert_eq!(
        cause.message,
        "The disruption budget budget needs 1 healthy pods and has 1 currently"
    );
    assert!(pods.get_opt("p").await.unwrap().is_some());
}

#[tokio::test]
async fn eviction_allowed_by_a_pdb_deletes_and_records_the_disruption() {
    let (_s, c) = server().await;
    running_pod(&c, "default", "p", Some("n"), json!({"app": "a"})).await;
    pdb(&c, "budget", "a", 1).await;
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let st = pods.evict("p", &EvictParams::default()).await.unwrap();
    assert_eq!(st.code, 201);
    assert!(pods.get_opt("p").await.unwrap().is_none());
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(c);
    let s = pdbs.get("budget").await.unwrap().status.unwrap();
    assert_eq!(s.disruptions_allowed, 0);
    assert!(s.disrupted_pods.unwrap().contains_key("p"));
}

#[tokio::test]
async fn a_pod_under_two_pdbs_is_a_500() {
    let (_s, c) = server().await;
    running_pod(&c, "default", "p", Some("n"), json!({"app": "a"})).await;
    pdb(&c, "one", "a", 1).await;
    pdb(&c, "two", "a", 1).await;
    let pods: Api<Pod> = Api::default_namespaced(c);
    let st = status(pods.evict("p", &EvictParams::default()).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (500, "InternalError"));
    assert_eq!(
        st.message,
        "Internal error occurred: This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
}

#[tokio::test]
async fn pending_and_terminating_pods_are_deleted_directly() {
    let (_s, c) = server().await;
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    pods.create(&PostParams::default(), &pod("pending", None, json!({"app": "a"})))
        .await
        .unwrap();
    pdb(&c, "budget", "a", 0).await;
    pods.evict("pending", &EvictParams::default()).await.unwrap();
    assert!(pods.get_opt("pending").await.unwrap().is_none());

    let mut p = pod("held", Some("n"), json!({"app": "a"}));
    p.metadata.finalizers = Some(vec!["x/y".into()]);
    pods.create(&PostParams::default(), &p).await.unwrap();
    let st = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status("held", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    pods.delete("held", &DeleteParams::default()).await.unwrap();
    pods.evict("held", &EvictParams::default()).await.unwrap();
}

#[tokio::test]
async fn eviction_honours_delete_options_and_accepts_v1beta1() {
    let (_s, c) = server().await;
    running_pod(&c, "default", "p", Some("n"), json!({})).await;
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    // kube-rs sends `delete_options`, which a real server ignores; the real
    // field is `deleteOptions`.
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"},
        "deleteOptions": {"preconditions": {"uid": "other"}}});
    let req = axum::http::Request::post("/api/v1/namespaces/default/pods/p/eviction")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let st = status(c.request_text(req).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert!(
        st.message
            .starts_with("Precondition failed: UID in precondition: other")
    );

    let body =
        json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "default"}});
    let req = axum::http::Request::post("/api/v1/namespaces/default/pods/p/eviction")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let out: serde_json::Value = serde_json::from_str(&c.request_text(req).await.unwrap()).unwrap();
    assert_eq!(out["status"], "Success");
    assert!(pods.get_opt("p").await.unwrap().is_none());
}

#[tokio::test]
async fn graceful_pod_deletion_waits_for_a_kubelet_when_enabled() {
    let mut cfg = kubesim::Config::default();
    cfg.store.graceful_pod_deletion = true;
    let s = kubesim::ApiServer::start_with(cfg).await.unwrap();
    let c = client(&s);
    running_pod(&c, "default", "p", Some("n"), json!({})).await;
    let pods: Api<Pod> = Api::default_namespaced(c);
    let r = pods
        .delete("p", &DeleteParams::default().grace_period(30))
        .await
        .unwrap();
    let p = r.left().unwrap();
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    assert!(pods.get("p").await.unwrap().metadata.deletion_timestamp.is_some());
    // The kubelet's final delete, with grace 0, removes it.
    pods.delete("p", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt("p").await.unwrap().is_none());
}

#[tokio::test]
async fn binding_places_a_pod_once() {
    let (_s, c) = server().await;
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    pods.create(&PostParams::default(), &pod("p", None, json!({})))
        .await
        .unwrap();
    let bind = |node: &str| {
        let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": node}});
        axum::http::Request::post("/api/v1/namespaces/default/pods/p/binding")
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap()
    };
    c.request_text(bind("n1")).await.unwrap();
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("n1"));
    let conds = p.status.unwrap().conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
    let st = status(c.request_text(bind("n2")).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        st.message,
        "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"n1\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_evictions_take_no_more_than_the_budget_allows() {
    let (_s, c) = server().await;
    for i in 0..6 {
        running_pod(&c, "default", &format!("web-{i}"), Some("n"), json!({"app": "web"})).await;
    }
    pdb(&c, "web", "web", 1).await;
    let results = futures::future::join_all((0..6).map(|i| {
        let pods: Api<Pod> = Api::default_namespaced(c.clone());
        async move { pods.evict(&format!("web-{i}"), &EvictParams::default()).await }
    }))
    .await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let blocked = results
        .iter()
        .filter(|r| matches!(r, Err(kube::Error::Api(s)) if s.code == 429))
        .count();
    assert_eq!((accepted, blocked), (1, 5));
}

#[tokio::test]
async fn eviction_follows_a_budget_whose_selector_changes() {
    let (_s, c) = server().await;
    running_pod(&c, "default", "p", Some("n"), json!({"app": "a"})).await;
    // Many budgets in the namespace, none covering the pod: deleted directly.
    for i in 0..20 {
        pdb(&c, &format!("other-{i}"), &format!("other-{i}"), 0).await;
    }
    let api: Api<PodDisruptionBudget> = Api::default_namespaced(c.clone());
    let p = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}}});
    api.patch("other-7", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let st = status(pods.evict("p", &EvictParams::default()).await.unwrap_err());
    assert_eq!(st.code, 429);
    assert!(
        st.details.unwrap().causes[0].message.contains("other-7"),
        "now covered by other-7"
    );
    api.delete("other-7", &DeleteParams::default()).await.unwrap();
    pods.evict("p", &EvictParams::default()).await.unwrap();
    assert!(pods.get_opt("p").await.unwrap().is_none());
}
