//! Leader election that fences: two real `drover run` replicas, the leader
//! cut off, and what each one did, from their logs and from the node
//! records (each names its writer and the writer's term).
//!
//! - `a_leader_cut_off_entirely_stops_before_the_standby_takes_over`: both
//!   beds. All of the leader's traffic goes through a TCP proxy
//!   (support/cutoff.rs) that the test freezes.
//! - `a_leader_whose_lease_requests_alone_stall_stops_before_the_standby_takes_over`:
//!   kubesim only (the real bed has no per-resource fault injection, and the
//!   proxy cannot tell a Lease request inside TLS from another): kubesim
//!   stalls only the leader's requests on `leases`, so everything else it
//!   sends still lands, and it must stop by its own deadline.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use support::cutoff::Cutoff;
use support::*;

const ROLLOUT: Duration = Duration::from_secs(180);
/// The Lease's duration in these tests (`--lease-duration`), with a
/// one-second renewal deadline and a 1.5 s margin: the leader acts until
/// 2.5 s after the start of its last successful renewal.
const LEASE: Duration = Duration::from_secs(4);
const LEASE_FLAGS: [&str; 10] = [
    "--leader-elect",
    "--lease-duration",
    "4",
    "--lease-renew-deadline",
    "1",
    "--lease-margin",
    "1.5",
    "--namespace",
    "drover-system",
    "--identity",
];
/// What takeover may take beyond one Lease duration from the cut: the
/// standby wakes 50 ms after the Lease can expire, then reads and writes it;
/// this test polls the Lease every 100 ms.
const TAKEOVER_SLACK: Duration = Duration::from_millis(1500);

fn flags(identity: &str) -> Vec<&str> {
    let mut f = LEASE_FLAGS.to_vec();
    f.push(identity);
    f
}

async fn holder(env: &Env) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "drover-system");
    let lease = leases.get_opt("drover-leader").await.ok()??;
    lease.spec?.holder_identity
}

/// Wait until the Lease names `who`; how long that took.
async fn until_holder(env: &Env, who: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    within(limit, &format!("the Lease to name {who}"), async {
        while holder(env).await.as_deref() != Some(who) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    t.elapsed()
}

/// When the first line of a text log containing `needle` was written (the
/// tracing timestamp that starts each line, colour codes aside).
fn logged_at(log: &str, needle: &str) -> Option<jiff::Timestamp> {
    let line = log.lines().find(|l| l.contains(needle))?;
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain.split_whitespace().next()?.parse().ok()
}

/// Wait for `d` to exit (it does once it stops leading); its status.
async fn exits(d: &mut Drover, limit: Duration) -> std::process::ExitStatus {
    within(limit, "the old leader to exit", async {
        loop {
            if let Some(s) = d.exited() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

/// What both tests check once the leader was cut off at `cut` and the
/// standby took over `took` later: the old leader stopped acting before
/// the new one started, and on every node the records' terms only rose.
fn assert_fenced(env: &Env, old: &Drover, new: &Drover, took: Duration) {
    let (old_log, new_log) = (old.log(), new.log());
    assert!(
        took <= LEASE + TAKEOVER_SLACK,
        "the standby took {took:?} to take over, more than one Lease duration ({LEASE:?}) and {TAKEOVER_SLACK:?}"
    );
    let stopped = logged_at(&old_log, "stopped leading")
        .unwrap_or_else(|| panic!("the old leader never said it stopped leading:\n{old_log}"));
    let acquired = logged_at(&new_log, "acquired the leader Lease")
        .unwrap_or_else(|| panic!("the standby never said it acquired the Lease:\n{new_log}"));
    eprintln!(
        "takeover {took:?} after the cut; the old leader stopped at {stopped}, the new one acquired at {acquired}"
    );
    assert!(
        stopped < acquired,
        "the old leader stopped at {stopped}, after the standby acquired the Lease at {acquired}: two replicas acted at once"
    );
    assert!(
        old_log.contains("not renewed in time"),
        "the old leader stopped for another reason than its deadline:\n{old_log}"
    );
    // Both replicas wrote records, each under its own term, and no node's
    // terms ever went down.
    let writers = env.progress.writers();
    let term = |who: &str| writers.iter().find(|(_, w, _)| w == who).map(|(_, _, t)| *t);
    let (a, b) = (term("replica-a"), term("replica-b"));
    assert!(
        matches!((a, b), (Some(a), Some(b)) if b > a),
        "records of replica-a (term {a:?}) and then replica-b (a later term, {b:?}): {writers:?}"
    );
    let violations = env.progress.term_violations();
    assert!(
        violations.is_empty(),
        "two leaders' writes interleaved: {violations:#?}"
    );
}

on_both_beds! {
    async fn a_leader_cut_off_entirely_stops_before_the_standby_takes_over(bed: Bed) {
        let _one = exclusive().await; // real-time Lease deadlines
        let mut env = Env::start(bed, "small", 300.0).await;
        let proxy = Cutoff::start(Cutoff::server_of(&env.drover_kubeconfig)).await;
        let via = Cutoff::kubeconfig_via(&env.drover_kubeconfig, &env.dir.join("cut.kubeconfig"), proxy.addr);
        let mut a = env.drover_via(&via, &flags("replica-a"));
        until_holder(&env, "replica-a", Duration::from_secs(30)).await;
        let b = env.drover(&flags("replica-b"));
        env.apply("runtime", runtime_spec("1.7.23")).await;
        env.wait_for("runtime", "under way", ROLLOUT, |cu| {
            cu.status.as_ref().is_some_and(|s| s.counts.updated >= 1)
        })
        .await;
        assert_eq!(holder(&env).await.as_deref(), Some("replica-a"));

        proxy.freeze();
        let took = until_holder(&env, "replica-b", LEASE * 3).await;
        let status = exits(&mut a, LEASE * 2).await;
        assert!(!status.success(), "a replica that stopped leading exits non-zero: {status}");
        // The network heals: whatever the old leader had sent is delivered
        // late, and must not land over the new leader's records.
        proxy.thaw();
        env.wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True")).await;
        assert_fenced(&env, &a, &b, took);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_requests_alone_stall_stops_before_the_standby_takes_over() {
    if !Bed::Kubesim.selected() {
        return;
    }
    let _one = exclusive().await; // real-time Lease deadlines
    let mut env = Env::start(Bed::Kubesim, "small", 300.0).await;
    let mut a = env.drover(&flags("replica-a"));
    until_holder(&env, "replica-a", Duration::from_secs(30)).await;
    let b = env.drover(&flags("replica-b"));
    env.apply("runtime", runtime_spec("1.7.23")).await;
    env.wait_for("runtime", "under way", ROLLOUT, |cu| {
        cu.status.as_ref().is_some_and(|s| s.counts.updated >= 1)
    })
    .await;
    // Only replica-a's Lease requests stall (two minutes each); all else it sends is served.
    env.sim().server().faults().add(kubesim::FaultRule {
        resource: Some("leases".into()),
        latency_ms: 120_000,
        user_agent: Some("(replica-a)".into()),
        ..Default::default()
    });
    let took = until_holder(&env, "replica-b", LEASE * 3).await;
    let status = exits(&mut a, LEASE * 2).await;
    assert!(
        !status.success(),
        "a replica that stopped leading exits non-zero: {status}"
    );
    env.wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
        .await;
    assert_fenced(&env, &a, &b, took);
    // Its other requests were never held up, so nothing it sent could land
    // late: once replica-b wrote a record, replica-a wrote none anywhere.
    let late = env.progress.written_after("replica-a", "replica-b");
    assert!(late.is_empty(), "replica-a wrote after replica-b took over: {late:#?}");
    let report = env.report().await;
    assert!(report.cordoned.is_empty(), "nodes left cordoned: {:?}", report.cordoned);
    assert!(
        env.progress.regressions().is_empty(),
        "{:#?}",
        env.progress.regressions()
    );
}
