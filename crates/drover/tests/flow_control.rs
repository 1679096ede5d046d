//! The server's flow control, as drover's clients meet it. kubesim only:
//! its fault rules answer 429 with `Retry-After: 1`, as the real API
//! server's priority and fairness does when a flow's queue is full, which a
//! test cannot make the real server do on demand.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kubesim::{ApiServer, FaultRule};

fn too_many(verb: &str, resource: &str) -> FaultRule {
    FaultRule {
        verb: Some(verb.into()),
        resource: Some(resource.into()),
        code: 429,
        rate: 1.0,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after_and_never_busily() {
    let server = ApiServer::start().await.unwrap();
    let config = kube::Config::new(server.url().parse().unwrap());
    let (client, evict) = drover_controller::clients(config, Some(50)).unwrap();
    server.faults().add(too_many("list", "nodes"));
    let started = Instant::now();
    let list = tokio::spawn(async move { Api::<Node>::all(client).list(&Default::default()).await });
    tokio::time::sleep(Duration::from_millis(3500)).await;
    server.faults().clear();
    let done = tokio::time::timeout(Duration::from_secs(30), list)
        .await
        .expect("the list ends once the server takes requests again")
        .unwrap();
    assert!(done.is_ok(), "{done:?}");
    let tries = server
        .requests()
        .count(|k| k.verb == "list" && k.resource == "nodes" && k.code == 429);
    // Retry-After: 1 over 3.5 s: about three refused tries, never a busy loop.
    assert!((2..=5).contains(&tries), "{tries} refused tries in 3.5 s");
    assert!(started.elapsed() >= Duration::from_millis(3500));

    // The eviction client never retries on its own: a 429 from the Eviction
    // API is a budget's refusal, which the drain reports and paces itself.
    server.faults().add(too_many("list", "nodes"));
    let before = server.requests().count(|k| k.verb == "list" && k.resource == "nodes");
    let refused = Api::<Node>::all(evict).list(&Default::default()).await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref e)) if e.code == 429),
        "{refused:?}"
    );
    let after = server.requests().count(|k| k.verb == "list" && k.resource == "nodes");
    assert_eq!(after - before, 1, "the eviction client retried");
    server.shutdown().await;
}
