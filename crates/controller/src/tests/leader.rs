//! The Lease: who leads, and what acquiring, renewing and releasing write,
//! against the mocked API server.

use std::time::Duration;

use http::Method;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::Api;
use serde_json::Value;

use drover_plan::Writer;
use tokio::sync::watch;
use tokio::time::Instant;

use super::*;
use crate::tests::api::{ApiServer, BOUND, mock};

const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/drover-system/leases/drover";
const ME: &str = "drover-0";

fn cfg() -> LeaseConfig {
    LeaseConfig::new("drover-system", "drover", ME, Duration::from_secs(15))
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
    // Held until its renewal time plus its duration.
    let renewed = fresh.spec.as_ref().unwrap().renew_time.as_ref().unwrap().0;
    assert_eq!(
        held_by_other(&fresh, ME, now),
        Some(renewed + SignedDuration::from_secs(15))
    );
    assert_eq!(
        held_by_other(&fresh, "drover-1", now),
        None,
        "my own lease is not another's"
    );
    // Expired: renewed longer ago than its duration.
    assert_eq!(held_by_other(&lease(Some("drover-1"), 16, 0), ME, now), None);
    // Released (no holder, or an empty one), or no spec at all.
    assert_eq!(held_by_other(&lease(None, 1, 0), ME, now), None);
    assert_eq!(held_by_other(&lease(Some(""), 1, 0), ME, now), None);
    assert_eq!(held_by_other(&Lease::default(), ME, now), None);
    // Never renewed: expired; no duration: 15 s.
    let mut never = fresh.clone();
    never.spec.as_mut().unwrap().renew_time = None;
    assert_eq!(held_by_other(&never, ME, now), None);
    let mut no_duration = lease(Some("drover-1"), 10, 0);
    no_duration.spec.as_mut().unwrap().lease_duration_seconds = None;
    assert!(held_by_other(&no_duration, ME, now).is_some());
    assert_eq!(
        held_by_other(&no_duration, ME, now + SignedDuration::from_secs(6)),
        None
    );
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
    assert!(matches!(got.expect("no error"), Acquired::Held { .. }));
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
    // Its term is the transitions count it wrote.
    assert_eq!(got.expect("no error"), Acquired::Leading { term: 4 });
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
    assert_eq!(got.expect("no error"), Acquired::Leading { term: 2 });
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
    assert_eq!(got.expect("no error"), Acquired::Leading { term: 0 });
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
    assert_eq!(got.expect("a lost race is not an error"), Acquired::Lost);
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

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/drover-system/leases";

/// The first attempt of `run` finds no Lease and creates it: term 0.
async fn first_acquire(server: &mut ApiServer) {
    read(server, None).await;
    let mut req = server.expect(Method::POST, LEASES).await;
    req.created(req.body.clone());
}

#[tokio::test(start_paused = true)]
async fn the_leader_stops_at_its_deadline_while_its_renewals_hang() {
    let (api, mut server) = leases();
    let (tx, mut rx) = watch::channel(None);
    let t0 = Instant::now();
    let task = tokio::spawn(run(api, cfg(), tx));
    first_acquire(&mut server).await;
    let lead = *rx.wait_for(|l| l.is_some()).await.expect("leads");
    // 15 s lease, 3 s margin: leading until 12 s after the renewal began.
    assert_eq!(
        lead,
        Some(Lead {
            term: 0,
            until: t0 + Duration::from_secs(12)
        })
    );
    // From here the API server never answers: each renewal is held, unanswered.
    let mut held = Vec::new();
    for at in [5, 10] {
        let req = server.next_within(Duration::from_secs(60)).await.expect("a renewal");
        assert_eq!(
            (req.method.clone(), Instant::now() - t0),
            (Method::GET, Duration::from_secs(at))
        );
        held.push(req);
    }
    rx.wait_for(|l| l.is_none()).await.expect("stops leading");
    assert_eq!(
        Instant::now() - t0,
        Duration::from_secs(12),
        "leadership ends at the deadline, not when a renewal returns"
    );
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_succeeds_moves_the_deadline_on_and_one_that_times_out_does_not() {
    let (api, mut server) = leases();
    let (tx, mut rx) = watch::channel(None);
    let t0 = Instant::now();
    let task = tokio::spawn(run(api, cfg(), tx));
    first_acquire(&mut server).await;
    rx.wait_for(|l| l.is_some()).await.expect("leads");
    // The renewal at 5 s is answered: leading until 5 + 12 s.
    let mine = lease(Some(ME), 0, 0);
    let req = server.next_within(Duration::from_secs(60)).await.expect("a renewal");
    assert_eq!(req.method, Method::GET);
    let mut req = req;
    req.ok(serde_json::to_value(&mine).unwrap());
    server.expect(Method::PUT, PATH).await.echo();
    let lead = *rx
        .wait_for(|l| l.is_some_and(|l| l.until > t0 + Duration::from_secs(12)))
        .await
        .expect("renewed");
    assert_eq!(lead.map(|l| l.until), Some(t0 + Duration::from_secs(17)));
    // The renewal at 10 s hangs past its own 5 s deadline and is given up;
    // the next one, at 15 s, hangs too: leadership ends at 17 s.
    let first = server.next_within(Duration::from_secs(60)).await.expect("a renewal");
    assert_eq!(Instant::now() - t0, Duration::from_secs(10));
    let second = server.next_within(Duration::from_secs(60)).await.expect("a renewal");
    assert_eq!(
        Instant::now() - t0,
        Duration::from_secs(15),
        "the next attempt after a timed-out one"
    );
    rx.wait_for(|l| l.is_none()).await.expect("stops leading");
    assert_eq!(Instant::now() - t0, Duration::from_secs(17));
    drop((first, second));
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn the_fence_shuts_at_the_deadline_and_cancels_what_runs_under_it() {
    let t0 = Instant::now();
    let (tx, rx) = watch::channel(Some(Lead {
        term: 2,
        until: t0 + Duration::from_secs(10),
    }));
    let fence = Fence::new(
        Writer {
            identity: ME.into(),
            term: 2,
        },
        rx,
    );
    assert!(fence.leading());
    assert_eq!(fence.writer().map(|w| w.term), Some(2));
    // A step that would run for a minute is dropped at the deadline.
    let out = fence.guard(tokio::time::sleep(Duration::from_secs(60))).await;
    assert_eq!((out, Instant::now() - t0), (None, Duration::from_secs(10)));
    assert!(!fence.leading());
    assert_eq!(
        fence.guard(async { 1 }).await,
        None,
        "nothing starts after the deadline"
    );
    assert!(fence.lost().await.contains("not renewed in time"));
    // A renewal moves it on; a term that is not mine does not count.
    tx.send_replace(Some(Lead {
        term: 2,
        until: Instant::now() + Duration::from_secs(10),
    }));
    assert_eq!(fence.guard(async { 1 }).await, Some(1));
    tx.send_replace(Some(Lead {
        term: 3,
        until: Instant::now() + Duration::from_secs(10),
    }));
    assert!(!fence.leading());
    // Deposed by the planner: lost at once, with its reason.
    tx.send_replace(Some(Lead {
        term: 2,
        until: Instant::now() + Duration::from_secs(10),
    }));
    fence.depose("node n1's record is of a later term".into());
    assert!(!fence.leading());
    assert_eq!(fence.lost().await, "node n1's record is of a later term");
    // Without leader election there is no fence.
    let none = Fence::default();
    assert!(none.leading() && none.writer().is_none());
    assert_eq!(none.guard(async { 1 }).await, Some(1));
}

#[test]
fn lease_durations_that_cannot_fence_are_refused_naming_the_flags() {
    assert_eq!(cfg().check(), Ok(()));
    assert_eq!(cfg().acting_for(), Duration::from_secs(12));
    let mut c = cfg();
    c.renew_deadline = Duration::from_secs(12);
    let e = c.check().unwrap_err();
    assert!(
        e.contains("--lease-renew-deadline") && e.contains("--lease-margin") && e.contains("--lease-duration"),
        "{e}"
    );
    let mut c = cfg();
    c.margin = Duration::ZERO;
    assert!(c.check().unwrap_err().contains("--lease-margin"));
}
