//! The start-up check against a mocked API server: a server that answers
//! `/version` with 5xx or 429 for a moment is asked again (bounded); one
//! that refuses (401, 403) is not.

use http::Method;
use serde_json::json;

use super::api::mock;
use crate::preflight::check;

fn version() -> serde_json::Value {
    json!({"major": "1", "minor": "37", "gitVersion": "v1.37.2", "gitCommit": "", "gitTreeState": "",
        "buildDate": "", "goVersion": "", "compiler": "", "platform": "linux/amd64"})
}

fn resources(gv: &str, names: &[&str]) -> serde_json::Value {
    let list: Vec<_> = names
        .iter()
        .map(|n| json!({"name": n, "singularName": "", "namespaced": true, "kind": "X", "verbs": ["get"]}))
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
}

#[tokio::test(start_paused = true)]
async fn a_server_that_answers_version_with_errors_for_a_moment_is_asked_again() {
    let (client, mut server) = mock();
    let task = tokio::spawn(async move { check(&client).await });
    server
        .expect(Method::GET, "/version")
        .await
        .fail(500, "InternalError", "etcd is starting");
    server
        .expect(Method::GET, "/version")
        .await
        .fail(429, "TooManyRequests", "slow down");
    server.expect(Method::GET, "/version").await.ok(version());
    // Discovery, one group version at a time (in order), each serving what drover needs.
    for (path, gv, names) in [
        (
            "/apis/apps/v1",
            "apps/v1",
            &["deployments", "daemonsets", "statefulsets"][..],
        ),
        ("/apis/batch/v1", "batch/v1", &["jobs"]),
        ("/apis/coordination.k8s.io/v1", "coordination.k8s.io/v1", &["leases"]),
        (
            "/apis/drover.dev/v1alpha1",
            "drover.dev/v1alpha1",
            &["clusterupgrades", "clusterupgrades/status"],
        ),
        ("/apis/events.k8s.io/v1", "events.k8s.io/v1", &["events"]),
        ("/apis/policy/v1", "policy/v1", &["poddisruptionbudgets"]),
        ("/api/v1", "v1", &["nodes", "pods", "pods/eviction"]),
    ] {
        server.expect(Method::GET, path).await.ok(resources(gv, names));
    }
    let server_seen = task.await.unwrap().expect("the check passes once /version answers");
    assert_eq!(server_seen.git_version, "v1.37.2");
}

#[tokio::test(start_paused = true)]
async fn a_refused_version_request_fails_at_once_naming_the_code() {
    let (client, mut server) = mock();
    let task = tokio::spawn(async move { check(&client).await });
    server
        .expect(Method::GET, "/version")
        .await
        .fail(403, "Forbidden", "system:anonymous cannot get path /version");
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(
        err,
        "cannot read the API server's version: system:anonymous cannot get path /version (403)"
    );
    server.idle(std::time::Duration::from_secs(10)).await;
}

#[tokio::test(start_paused = true)]
async fn five_errors_in_a_row_end_the_check_with_the_last() {
    let (client, mut server) = mock();
    let task = tokio::spawn(async move { check(&client).await });
    for _ in 0..5 {
        server
            .expect(Method::GET, "/version")
            .await
            .fail(503, "ServiceUnavailable", "the server is restarting");
    }
    let err = task.await.unwrap().unwrap_err();
    assert!(
        err.starts_with("cannot read the API server's version:") && err.contains("the server is restarting"),
        "{err}"
    );
    server.idle(std::time::Duration::from_secs(10)).await;
}
