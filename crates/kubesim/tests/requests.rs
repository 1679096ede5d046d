//! The request counters: per User-Agent, verb, resource and status code,
//! in-process and at `/admin/requests`.

mod common;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams, WatchParams};
use serde_json::{Value, json};

#[tokio::test]
async fn requests_are_counted_per_agent_verb_resource_and_code() {
    let s = kubesim::ApiServer::start().await.unwrap();
    let mut cfg = kube::Config::new(s.url().parse().unwrap());
    cfg.default_retry = false;
    cfg.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static("tester/1.0 (linux)"),
    ));
    let named = kube::Client::try_from(cfg).unwrap();
    let anonymous = client(&s);

    let cms: Api<ConfigMap> = Api::default_namespaced(named.clone());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.get("x").await.unwrap();
    assert!(cms.get("missing").await.is_err());
    let _watch = cms.watch(&WatchParams::default(), "0").await.unwrap();
    let pods: Api<Pod> = Api::all(anonymous.clone());
    pods.list(&ListParams::default()).await.unwrap();
    let evict: Api<Pod> = Api::default_namespaced(anonymous);
    assert!(evict.evict("nope", &Default::default()).await.is_err());

    let c = s.requests();
    let n = |agent: &str, verb: &str, resource: &str, code: u16| {
        c.count(|k| k.agent == agent && k.verb == verb && k.resource == resource && k.code == code)
    };
    assert_eq!(n("tester", "create", "configmaps", 201), 1);
    assert_eq!(n("tester", "get", "configmaps", 200), 1);
    assert_eq!(n("tester", "get", "configmaps", 404), 1);
    assert_eq!(n("tester", "watch", "configmaps", 200), 1);
    assert_eq!(n("-", "list", "pods", 200), 1);
    assert_eq!(n("-", "create", "pods/eviction", 404), 1);
    assert_eq!(c.by_agent("tester"), 4);
    assert_eq!(c.by_agent("-"), 2);

    // The same over HTTP; admin requests are not counted.
    let http = reqwest_like(&s, "GET").await;
    let rows = http.as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["count"].as_u64().unwrap()).sum::<u64>(), 6);
    assert!(
        rows.iter()
            .any(|r| r["agent"] == "-" && r["resource"] == "pods/eviction" && r["code"] == 404),
        "{http}"
    );
    reqwest_like(&s, "DELETE").await;
    assert_eq!(c.count(|_| true), 0);
    s.shutdown().await;
}

/// `/admin/requests` through a plain kube-rs request.
async fn reqwest_like(s: &kubesim::ApiServer, method: &str) -> Value {
    let req = axum::http::Request::builder()
        .method(method)
        .uri("/admin/requests")
        .body(Vec::new())
        .unwrap();
    let text = client(s).request_text(req).await.unwrap();
    serde_json::from_str(&text).unwrap()
}
