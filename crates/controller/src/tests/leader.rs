//! The Lease: who leads, and what acquiring, renewing and releasing write,
//! against the mocked API server.

use std::time::Duration;

use http::Method;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::Api;
use serde_json::Value;

use super::*;
use crate::tests::api::{ApiServer, BOUND, mock};

const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/drover-system/leases/drover";
const ME: &str = "drover-0";

fn cfg() -> LeaseConfig {
    LeaseConfig {
        namespace: "drover-system".into(),
        name: "drover".into(),
        identity: ME.into(),
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    }
}

/// A lease held by `holder`, renewed `renewed_ago` seconds ago, for 15 s.
fn lease(holder: Option<&str>, renewed_ago: i64, transitions: i32) -> Lease {
    let t = |ago: i64| MicroTime(Timestamp::now() - SignedDuration::from_secs(ago));
    Lease {
        metadata: ObjectMeta {
            name: Some("drover".into()),
            namespace: Some("drover-system".into()),
            resource_version: Some("41".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(15),
            acquire_time: Some(t(600)),
            renew_time: Some(t(renewed_ago)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

fn leases() -> (Api<Lease>, ApiServer) {
    let (client, server) = mock();
    (Api::namespaced(client, "drover-system"), server)
}

/// Run `call` while `script` answers; every wait bounded, nothing left over.
async fn with_server<T, F>(call: impl Future<Output = T>, server: ApiServer, script: impl FnOnce(ApiServer) -> F) -> T
where
    F: Future<Output = ApiServer> + Send + 'static,
{
    let script = tokio::spawn(script(server));
    let out = tokio::time::timeout(BOUND, call)
        .await
        .expect("the call ends within the bound");
    let mut server = match tokio::time::timeout(BOUND, script).await.expect("the script ends") {
        Ok(s) => s,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    server.idle(Duration::from_millis(100)).await;
    out
}

/// GET the lease, answered with `lease` (None: 404).
async fn read(server: &mut ApiServer, lease: Option<&Lease>) {
    let mut req = server.expect(Method::GET, PATH).await;
    match lease {
        Some(l) => req.ok(serde_json::to_value(l).unwrap()),
        None => req.fail(404, "NotFound", "leases.coordination.k8s.io \"drover\" not found"),
    }
}

fn time(v: &Value) -> Timestamp {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a time: {v}"))
}

fn recent(v: &Value) -> bool {
    Timestamp::now().duration_since(time(v)).abs() < SignedDuration::from_secs(5)
}

#[test]
fn who_holds_a_lease() {
    let now = Timestamp::now();
    let fresh = lease(Some("drover-1"), 1, 0);
    assert!(held_by_other(&fresh, ME, now));
    assert!(!held_by_other(&fresh, "drover-1", now), "my own lease is not another's");
    // Expired: renewed longer ago than its duration.
    assert!(!held_by_other(&lease(Some("drover-1"), 16, 0), ME, now));
    // Released (no holder, or an empty one), or no spec at all.
    assert!(!held_by_other(&lease(None, 1, 0), ME, now));
    assert!(!held_by_other(&lease(Some(""), 1, 0), ME, now));
    assert!(!held_by_other(&Lease::default(), ME, now));
    // Never renewed: expired; no duration: 15 s.
    let mut never = fresh.clone();
    never.spec.as_mut().unwrap().renew_time = None;
    assert!(!held_by_other(&never, ME, now));
    let mut no_duration = lease(Some("drover-1"), 10, 0);
    no_duration.spec.as_mut().unwrap().lease_duration_seconds = None;
    assert!(held_by_other(&no_duration, ME, now));
    assert!(!held_by_other(&no_duration, ME, now + SignedDuration::from_secs(6)));
}

#[tokio::test]
async fn a_fresh_lease_of_another_is_not_taken_and_nothing_is_written() {
    let (api, server) = leases();
    let held = lease(Some("drover-1"), 2, 3);
    let got = with_server(try_acquire(&api, &cfg()), server, |mut s| async move {
        read(&mut s, Some(&held)).await;
        s
    })
    .await;
    assert!(!got.expect("no error"));
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_one_more_transition() {
    let (api, server) = leases();
    let expired = lease(Some("drover-1"), 60, 3);
    let got = with_server(try_acquire(&api, &cfg()), server, |mut s| async move {
        read(&mut s, Some(&expired)).await;
        let mut req = s.expect(Method::PUT, PATH).await;
        // A replace of what was read: of two contenders, one wins.
        assert_eq!(req.body["metadata"]["resourceVersion"], "41");
        let spec = &req.body["spec"];
        assert_eq!(spec["holderIdentity"], ME);
        assert_eq!(spec["leaseDurationSeconds"], 15);
        assert_eq!(spec["leaseTransitions"], 4);
        assert!(recent(&spec["acquireTime"]) && recent(&spec["renewTime"]), "{spec}");
        req.echo();
        s
    })
    .await;
    assert!(got.expect("no error"));
}

#[tokio::test]
async fn my_own_lease_is_renewed_keeping_its_acquire_time_and_transitions() {
    let (api, server) = leases();
    let mine = lease(Some(ME), 5, 2);
    let acquired = serde_json::to_value(&mine).unwrap()["spec"]["acquireTime"].clone();
    let got = with_server(try_acquire(&api, &cfg()), server, |mut s| async move {
        read(&mut s, Some(&mine)).await;
        let mut req = s.expect(Method::PUT, PATH).await;
        let spec = &req.body["spec"];
        assert_eq!(spec["holderIdentity"], ME);
        assert_eq!(spec["leaseTransitions"], 2);
        assert_eq!(spec["acquireTime"], acquired);
        assert!(recent(&spec["renewTime"]), "{spec}");
        req.echo();
        s
    })
    .await;
    assert!(got.expect("no error"));
}

#[tokio::test]
async fn a_missing_lease_is_created_naming_me() {
    let (api, server) = leases();
    let got = with_server(try_acquire(&api, &cfg()), server, |mut s| async move {
        read(&mut s, None).await;
        let mut req = s
            .expect(
                Method::POST,
                "/apis/coordination.k8s.io/v1/namespaces/drover-system/leases",
            )
            .await;
        assert_eq!(req.body["metadata"]["name"], "drover");
        assert_eq!(req.body["spec"]["holderIdentity"], ME);
        assert_eq!(req.body["spec"]["leaseTransitions"], 0);
        req.created(req.body.clone());
        s
    })
    .await;
    assert!(got.expect("no error"));
}

#[tokio::test]
async fn losing_the_race_to_another_replica_is_not_leading_and_not_an_error() {
    let (api, server) = leases();
    let expired = lease(Some("drover-1"), 60, 3);
    let got = with_server(try_acquire(&api, &cfg()), server, |mut s| async move {
        read(&mut s, Some(&expired)).await;
        s.expect(Method::PUT, PATH).await.fail(
            409,
            "Conflict",
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"drover\": the object has been modified",
        );
        s
    })
    .await;
    assert!(!got.expect("a lost race is not an error"));
}

#[tokio::test]
async fn release_clears_the_holder_of_my_lease_and_leaves_another_s_alone() {
    let (api, server) = leases();
    let mine = lease(Some(ME), 1, 2);
    with_server(release(&api, &cfg()), server, |mut s| async move {
        read(&mut s, Some(&mine)).await;
        let mut req = s.expect(Method::PUT, PATH).await;
        let spec = &req.body["spec"];
        assert!(spec.get("holderIdentity").is_none_or(Value::is_null), "{spec}");
        assert!(spec.get("renewTime").is_none_or(Value::is_null), "{spec}");
        assert_eq!(spec["leaseTransitions"], 2);
        assert_eq!(req.body["metadata"]["resourceVersion"], "41");
        req.echo();
        s
    })
    .await;

    let (api, server) = leases();
    let theirs = lease(Some("drover-1"), 1, 2);
    with_server(release(&api, &cfg()), server, |mut s| async move {
        read(&mut s, Some(&theirs)).await;
        s
    })
    .await;
}
