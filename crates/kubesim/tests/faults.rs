//! Fault injection through the library and the admin endpoint; discovery.

mod common;

use common::*;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams, PostParams, WatchParams};
use kubesim::FaultRule;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test]
async fn injected_errors_match_verb_and_resource() {
    let (s, c) = server().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let nodes: Api<Node> = Api::all(c);
    s.faults().add(FaultRule {
        verb: Some("list".into()),
        resource: Some("configmaps".into()),
        code: 503,
        rate: 1.0,
        latency_ms: 0,
        user_agent: None,
    });
    let st = status(cms.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (503, "ServiceUnavailable"));
    nodes.list(&ListParams::default()).await.unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    s.faults().set(vec![FaultRule {
        code: 429,
        rate: 1.0,
        ..Default::default()
    }]);
    let st = status(nodes.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (429, "TooManyRequests"));
    s.faults().set(vec![FaultRule {
        verb: Some("get".into()),
        code: 500,
        rate: 1.0,
        ..Default::default()
    }]);
    let st = status(cms.get("x").await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (500, "InternalError"));
    s.faults().clear();
    cms.get("x").await.unwrap();
}

#[tokio::test]
async fn a_partial_rate_fails_some_requests() {
    let (s, c) = server().await;
    let nodes: Api<Node> = Api::all(c);
    s.faults().add(FaultRule {
        code: 500,
        rate: 0.5,
        ..Default::default()
    });
    let mut failed = 0;
    for _ in 0..200 {
        if nodes.list(&ListParams::default()).await.is_err() {
            failed += 1;
        }
    }
    assert!((40..=160).contains(&failed), "{failed} of 200 failed at rate 0.5");
}

#[tokio::test]
async fn a_rule_with_a_user_agent_matches_that_client_only() {
    let s = kubesim::ApiServer::start().await.expect("server starts");
    let as_agent = |ua: &str| {
        let mut cfg = kube::Config::new(s.url().parse().unwrap());
        cfg.default_retry = false;
        cfg.headers.push((
            axum::http::header::USER_AGENT,
            axum::http::HeaderValue::from_str(ua).unwrap(),
        ));
        kube::Client::try_from(cfg).unwrap()
    };
    let (a, b) = (as_agent("drover/0.1 (replica-a)"), as_agent("drover/0.1 (replica-b)"));
    s.faults().add(FaultRule {
        resource: Some("nodes".into()),
        code: 503,
        rate: 1.0,
        user_agent: Some("replica-a".into()),
        ..Default::default()
    });
    let st = status(Api::<Node>::all(a).list(&ListParams::default()).await.unwrap_err());
    assert_eq!(st.code, 503);
    Api::<Node>::all(b).list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn latency_is_added() {
    let (s, c) = server().await;
    let nodes: Api<Node> = Api::all(c);
    s.faults().add(FaultRule {
        latency_ms: 300,
        ..Default::default()
    });
    let t = Instant::now();
    nodes.list(&ListParams::default()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
}

async fn admin(c: &kube::Client, method: &str, path: &str, body: Value) -> String {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    c.request_text(req).await.unwrap()
}

#[tokio::test]
async fn admin_endpoint_switches_faults_and_closes_watches() {
    let (_s, c) = server().await;
    let nodes: Api<Node> = Api::all(c.clone());
    admin(
        &c,
        "PUT",
        "/admin/faults",
        json!([{"verb": "list", "resource": "nodes", "code": 500, "rate": 1.0}]),
    )
    .await;
    let rules: Value = serde_json::from_str(&admin(&c, "GET", "/admin/faults", json!(null)).await).unwrap();
    assert_eq!(rules[0]["code"], 500);
    assert_eq!(status(nodes.list(&ListParams::default()).await.unwrap_err()).code, 500);
    admin(&c, "DELETE", "/admin/faults", json!(null)).await;
    nodes.list(&ListParams::default()).await.unwrap();

    let rv = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = Box::pin(nodes.watch(&WatchParams::default(), &rv).await.unwrap());
    admin(&c, "POST", "/admin/close-watches", json!(null)).await;
    assert!(within(w.try_next()).await.unwrap().is_none());
}

#[tokio::test]
async fn discovery_and_version_are_served() {
    let (_s, c) = server().await;
    let v = c.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    let d = kube::discovery::Discovery::new(c.clone()).run().await.unwrap();
    for (group, kind) in [
        ("", "Pod"),
        ("", "Node"),
        ("apps", "Deployment"),
        ("policy", "PodDisruptionBudget"),
        ("coordination.k8s.io", "Lease"),
        ("events.k8s.io", "Event"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ] {
        let g = d
            .groups()
            .find(|g| g.name() == group)
            .unwrap_or_else(|| panic!("group {group}"));
        assert!(g.recommended_kind(kind).is_some(), "{group}/{kind}");
    }
    let v1: Value = serde_json::from_str(&get_raw(&c, "/api/v1", "application/json").await).unwrap();
    let ev = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .unwrap();
    assert_eq!(
        (ev["group"].as_str(), ev["version"].as_str(), ev["kind"].as_str()),
        (Some("policy"), Some("v1"), Some("Eviction"))
    );
    let table: Value =
        serde_json::from_str(&get_raw(&c, "/api/v1/nodes", "application/json;as=Table;v=v1;g=meta.k8s.io").await)
            .unwrap();
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(&cols[..5], ["Name", "Status", "Roles", "Age", "Version"]);
}

#[tokio::test]
async fn namespaced_resources_need_a_namespace_to_be_written() {
    let (_s, c) = server().await;
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}});
    let req = axum::http::Request::post("/api/v1/configmaps")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let st = status(c.request_text(req).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (405, "MethodNotAllowed"));
    let req = axum::http::Request::post("/api/v1/namespaces/default/configmaps/x")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let st = status(c.request_text(req).await.unwrap_err());
    assert_eq!(
        (st.code, st.message.as_str()),
        (405, "the server does not allow this method on the requested resource")
    );
    let req = axum::http::Request::get("/api/v1/configmaps/x")
        .body(Vec::new())
        .unwrap();
    let st = status(c.request_text(req).await.unwrap_err());
    assert_eq!(
        (st.code, st.message.as_str()),
        (404, "the server could not find the requested resource")
    );
}
