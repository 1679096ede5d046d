//! Helpers shared by the integration tests.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::future::Future;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(20);

/// Every wait in a test is bounded.
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("timed out")
}

pub async fn server() -> (kubesim::ApiServer, Client) {
    let s = kubesim::ApiServer::start().await.expect("server starts");
    let c = client(&s);
    (s, c)
}

/// A client that surfaces 429/503 at once instead of retrying them.
pub fn client(s: &kubesim::ApiServer) -> Client {
    let mut cfg = kube::Config::new(s.url().parse().unwrap());
    cfg.default_retry = false;
    Client::try_from(cfg).unwrap()
}

pub fn pod(name: &str, node: Option<&str>, labels: Value) -> Pod {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    });
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    serde_json::from_value(p).unwrap()
}

pub fn node(name: &str) -> Node {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})).unwrap()
}

/// Creates a pod and sets its phase (and Ready) through the status subresource.
pub async fn running_pod(c: &Client, ns: &str, name: &str, node: Option<&str>, labels: Value) -> Pod {
    let api: Api<Pod> = Api::namespaced(c.clone(), ns);
    api.create(&PostParams::default(), &pod(name, node, labels))
        .await
        .unwrap();
    let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    api.patch_status(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&status),
    )
    .await
    .unwrap()
}

/// The `Status` of a failed call.
pub fn status(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw GET returning the body text.
pub async fn get_raw(c: &Client, path: &str, accept: &str) -> String {
    let req = axum::http::Request::get(path)
        .header("Accept", accept)
        .body(Vec::new())
        .unwrap();
    c.request_text(req).await.unwrap()
}
