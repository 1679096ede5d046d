//! The node lifecycle's rules, one test per row of docs/api.md's decision
//! table: retries and their backoff, what fails for good, terminal states,
//! halts and what they leave cordoned, reboots, OS text.

mod support;

use drover_api::names::{condition, reason};
use drover_api::*;
use drover_plan::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use support::*;

/// One round: plan, and answer each step as `answer` says (Done otherwise).
fn round(m: &mut Model, answer: &dyn Fn(&Step, &str) -> Option<Outcome>) -> Vec<Action> {
    let actions = m.plan();
    for a in &actions {
        let outcome = match a {
            Action::Step { step, node, .. } => answer(step, node).unwrap_or(Outcome::Done),
            _ => Outcome::Done,
        };
        m.apply(a, outcome);
    }
    actions
}

fn job_failed() -> Outcome {
    Outcome::Failed {
        reason: Reason::UpgradeJobFailed,
        message: "job containerd-w failed (BackoffLimitExceeded)".into(),
    }
}

/// Upgrades of `node` fail; everything else succeeds.
fn failing_on(node: &'static str) -> impl Fn(&Step, &str) -> Option<Outcome> {
    move |s, n| matches!(s, Step::Upgrade { .. } if n == node).then(job_failed)
}

fn record<'a>(m: &'a Model, node: &str) -> &'a NodeProgress {
    m.node(node).progress.as_ref().expect("a record")
}

#[test]
fn a_failed_job_is_retried_with_exponential_backoff_holding_its_place_in_the_budget() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.retries = 2;
    s.strategy.retry_delay = "1m".into();
    let mut m = Model::new(s, cluster(0, 3));
    let fail = failing_on("worker-000");
    // Start, cordon, drain, then the Job fails: first retry a minute later.
    for _ in 0..4 {
        round(&mut m, &fail);
    }
    let p = record(&m, "worker-000");
    assert_eq!(
        (p.phase, p.retries, p.failure.is_none()),
        (NodePhase::Upgrading, 1, true)
    );
    let first = p.retry_at.expect("a retry time");
    assert_eq!(
        first,
        m.obs.now.checked_add(jiff::SignedDuration::from_secs(60)).unwrap()
    );
    m.plan();
    assert_eq!(m.status().nodes[0].state, "Retrying");
    assert_eq!(m.status().nodes[0].next_retry.as_ref().map(|t| t.0), Some(first));
    assert_eq!(m.condition(condition::RECONCILING).1, reason::RETRYING);
    // Waiting for the retry: no step on the node, no other node starts
    // (maxUnavailable 1 is held by the retrying node), still cordoned.
    let actions = m.plan();
    assert!(actions.is_empty(), "{actions:?}");
    assert!(m.node("worker-000").unschedulable);
    assert_eq!(m.status().counts.failed, 0, "a retry is no failure yet");
    // At the retry time the Job runs again, and fails: the second wait is twice as long.
    m.obs.now = first;
    round(&mut m, &fail);
    let p = record(&m, "worker-000");
    assert_eq!(p.retries, 2);
    assert_eq!(
        p.retry_at,
        Some(first.checked_add(jiff::SignedDuration::from_secs(120)).unwrap())
    );
    // Retries used up: the next failure fails the node (maxFailures 0 halts).
    m.obs.now = p.retry_at.unwrap();
    round(&mut m, &fail);
    m.run(3);
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::UPGRADE_JOB_FAILED));
    assert!(
        message.contains("node worker-000 failed at Upgrade of containerd"),
        "{message}"
    );
    assert_eq!(m.status().nodes[0].retries, 2);
    assert!(!m.node("worker-000").unschedulable);
}

#[test]
fn one_failure_then_success_completes_with_max_failures_zero() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.retry_delay = "10s".into();
    let mut m = Model::new(s, cluster(0, 2));
    for _ in 0..4 {
        round(&mut m, &failing_on("worker-000"));
    }
    assert_eq!(record(&m, "worker-000").retries, 1);
    m.tick(1);
    m.run(20);
    assert_eq!(m.condition(condition::READY).0, "True");
    assert_eq!(m.status().counts.failed, 0);
}

#[test]
fn a_refused_request_and_a_not_ready_node_are_not_retried() {
    for outcome in [
        Outcome::Refused {
            reason: Reason::UpgradeJobFailed,
            message: "the API server refused the upgrade Job of containerd: forbidden".into(),
        },
        Outcome::Failed {
            reason: Reason::NodeNotReady,
            message: "node worker-000 is NotReady after the component's timeout".into(),
        },
    ] {
        let mut s = spec(vec![job("containerd", "1.7.23")]);
        s.strategy.retries = 3;
        let mut m = Model::new(s, cluster(0, 2));
        let o = outcome.clone();
        for _ in 0..4 {
            round(&mut m, &|s, n| {
                matches!(s, Step::Upgrade { .. } if n == "worker-000").then(|| o.clone())
            });
        }
        let p = record(&m, "worker-000");
        assert_eq!((p.retries, p.failure.is_some()), (0, true), "{outcome:?}: {p:?}");
    }
}

#[test]
fn tolerated_failures_end_stalled_completed_with_failures_naming_the_nodes() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.max_failures = 1;
    s.strategy.retries = 0;
    let mut m = Model::new(s, cluster(0, 3));
    for _ in 0..30 {
        round(&mut m, &failing_on("worker-001"));
        m.tick(1);
    }
    m.plan();
    let st = m.status();
    assert_eq!((st.counts.updated, st.counts.failed, st.counts.updating), (2, 1, 0));
    let (ready, r, _) = m.condition(condition::READY);
    assert_eq!((ready.as_str(), r.as_str()), ("False", reason::COMPLETED_WITH_FAILURES));
    assert_eq!(m.condition(condition::RECONCILING).0, "False");
    let (stalled, _, message) = m.condition(condition::STALLED);
    assert_eq!(stalled, "True");
    assert!(
        message.contains("worker-001 (UpgradeJobFailed at Upgrade of containerd)"),
        "{message}"
    );
    assert!(message.contains("maxFailures 1 tolerated"), "{message}");
    assert!(st.completion_time.is_some());
    // A new target: the rollout over with failures goes to the history as such.
    m.spec.components[0].version = "1.7.24".into();
    m.obs.generation = 2;
    m.plan();
    let h = &m.status().history;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(
        (h[0].target.as_str(), h[0].result.as_str(), h[0].generation),
        ("containerd=1.7.23", "CompletedWithFailures", 1)
    );
    assert!(h[0].completion_time.is_some());
}

#[test]
fn a_halting_failure_under_keep_cordoned_leaves_the_node_cordoned_and_says_why() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.retries = 0;
    s.strategy.on_halt = HaltAction::KeepCordoned;
    let mut m = Model::new(s, cluster(0, 2));
    for _ in 0..6 {
        round(&mut m, &failing_on("worker-000"));
    }
    let n = m.node("worker-000");
    assert!(n.unschedulable, "KeepCordoned leaves the failed node cordoned");
    assert_eq!(n.progress.as_ref().unwrap().phase, NodePhase::Failed);
    let left = &m.status().left_cordoned;
    assert_eq!(left.len(), 1);
    assert!(
        left[0]
            .reason
            .contains("failed at Upgrade and halted the rollout; spec.strategy.onHalt is KeepCordoned"),
        "{left:?}"
    );
    assert_eq!(m.condition(condition::STALLED).1, reason::UPGRADE_JOB_FAILED);
    // A spec change retries it; it is released and upgraded.
    m.obs.generation = 2;
    m.run(20);
    assert_eq!(m.condition(condition::READY).0, "True");
    assert!(m.status().left_cordoned.is_empty());
}

#[test]
fn a_tolerated_failure_is_handed_back_even_under_keep_cordoned() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.retries = 0;
    s.strategy.max_failures = 1;
    s.strategy.on_halt = HaltAction::KeepCordoned;
    let mut m = Model::new(s, cluster(0, 2));
    for _ in 0..6 {
        round(&mut m, &failing_on("worker-000"));
    }
    assert!(
        !m.node("worker-000").unschedulable,
        "a cordoned tolerated failure would use up the budget"
    );
}

#[test]
fn a_halt_hands_back_the_nodes_whose_upgrade_never_started_unless_keep_cordoned() {
    for keep in [false, true] {
        let mut s = spec(vec![job("containerd", "1.7.23")]);
        max_unavailable(&mut s, IntOrString::Int(2));
        if keep {
            s.strategy.on_halt = HaltAction::KeepCordoned;
        }
        let mut m = Model::new(s, cluster(0, 3));
        // Two workers start; worker-000's drain times out (Halt), worker-001's is still going.
        let answer = |s: &Step, n: &str| match s {
            Step::Drain if n == "worker-000" => Some(Outcome::Blocked {
                message: "PodDisruptionBudget default/web (0 disruptions allowed)".into(),
                timed_out: true,
            }),
            Step::Drain => Some(Outcome::Waiting {
                message: "1 pod terminating".into(),
            }),
            _ => None,
        };
        for _ in 0..6 {
            round(&mut m, &answer);
        }
        let (stalled, r, message) = m.condition(condition::STALLED);
        assert_eq!(
            (stalled.as_str(), r.as_str()),
            ("True", reason::DRAIN_BLOCKED),
            "keep={keep}"
        );
        let cordoned: Vec<bool> = ["worker-000", "worker-001"]
            .iter()
            .map(|n| m.node(n).unschedulable)
            .collect();
        if keep {
            assert_eq!(cordoned, [true, true], "KeepCordoned holds both");
            assert!(message.contains("stays cordoned"), "{message}");
            assert_eq!(
                m.status().left_cordoned.len(),
                1,
                "the halted one is listed: {:?}",
                m.status().left_cordoned
            );
        } else {
            assert_eq!(cordoned, [false, false], "Uncordon hands back both");
            assert!(message.contains("was handed back"), "{message}");
            assert!(
                m.node("worker-001").progress.is_none(),
                "the unstarted node is pending again"
            );
            assert_eq!(
                record(&m, "worker-000").phase,
                NodePhase::Failed,
                "the halt is remembered"
            );
            assert!(m.status().left_cordoned.is_empty());
            // Nothing starts while halted.
            assert!(started(&m.plan()).is_empty());
            // Any spec change retries.
            m.obs.generation = 2;
            m.run(30);
            assert_eq!(m.condition(condition::READY).0, "True");
        }
    }
}

#[test]
fn an_admin_annotation_pins_a_node_drover_cordoned() {
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), cluster(0, 2));
    round(&mut m, &|_, _| None);
    round(&mut m, &|_, _| None);
    m.obs.nodes[0].keep_cordoned = Some("disk errors".into());
    m.run(20);
    let n = m.node("worker-000");
    assert!(n.unschedulable, "drover does not undo a cordon an admin pinned");
    assert_eq!(n.versions["containerd"], "1.7.23");
    let left = &m.status().left_cordoned;
    assert_eq!(left[0].reason, "annotated drover.dev/keep-cordoned: disk errors");
    // The admin removes the annotation: drover undoes its own cordon.
    m.obs.nodes[0].keep_cordoned = None;
    m.run(2);
    assert!(!m.node("worker-000").unschedulable);
}

fn reboot_job(name: &str, version: &str, reboots: bool) -> Component {
    let mut c = job(name, version);
    c.upgrade.job.as_mut().unwrap().reboots = reboots;
    c
}

#[test]
fn a_job_that_reboots_waits_for_a_new_boot_id_before_verifying() {
    let mut m = Model::new(spec(vec![reboot_job("containerd", "1.7.23", true)]), cluster(0, 1));
    let boot = m.node("worker-000").boot_id.clone();
    let mut steps = Vec::new();
    for _ in 0..8 {
        for a in round(&mut m, &|_, _| None) {
            if let Action::Step { step, .. } = a {
                steps.push(step);
            }
        }
    }
    let names: Vec<&str> = steps.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["Cordon", "Drain", "Upgrade", "Reboot", "Verify", "Uncordon"]);
    assert_eq!(
        steps[3],
        Step::Reboot {
            component: "containerd".into(),
            boot_id: boot,
            run_job: false
        }
    );
}

#[test]
fn a_reboot_request_runs_the_reboot_job_and_a_reboot_that_does_not_come_back_is_retried() {
    let mut s = spec(vec![reboot_job("containerd", "1.7.23", false)]);
    s.strategy.retry_delay = "10s".into();
    let mut m = Model::new(s, cluster(0, 1));
    let asked = |s: &Step, _: &str| match s {
        Step::Upgrade { .. } => Some(Outcome::RebootRequired {
            message: "reboot-required".into(),
        }),
        Step::Reboot { .. } => Some(Outcome::Failed {
            reason: Reason::RebootFailed,
            message: "waiting for node worker-000 to reboot after spec.reboot.timeout (10m)".into(),
        }),
        _ => None,
    };
    let mut reboots = Vec::new();
    for _ in 0..5 {
        for a in round(&mut m, &asked) {
            if let Action::Step {
                step: s @ Step::Reboot { .. },
                ..
            } = a
            {
                reboots.push(s);
            }
        }
    }
    assert!(matches!(reboots[0], Step::Reboot { run_job: true, .. }), "{reboots:?}");
    let p = record(&m, "worker-000");
    assert_eq!(
        (p.phase, p.retries),
        (NodePhase::Upgrading, 1),
        "the reboot's failure retries the component"
    );
    assert!(p.message.contains("RebootFailed"), "{}", p.message);
}

#[test]
fn os_and_kernel_text_verify_by_prefix_and_need_no_allow_prerelease() {
    let mut kernel = reboot_job("kernel", "6.8.0-45-generic", true);
    kernel.stage = Some(Stage::Runtime);
    let mut os = reboot_job("os", "24.04.1", false);
    os.verify = Some(Verify {
        node_info: Some(NodeInfoField::OsImage),
        pod: None,
        job_succeeded: None,
        match_: Some(VersionMatch {
            prefix: Some("Ubuntu 24.04".into()),
            regex: None,
        }),
    });
    let mut nodes = cluster(0, 2);
    nodes[0].versions.insert("kernel".into(), "6.8.0-45-generic".into());
    nodes[0].versions.insert("os".into(), "Ubuntu 24.04.1 LTS".into());
    nodes[1].versions.insert("kernel".into(), "6.8.0-450-generic".into());
    nodes[1].versions.insert("os".into(), "Ubuntu 22.04.4 LTS".into());
    let mut m = Model::new(spec(vec![os, kernel]), nodes);
    let actions = m.plan();
    assert!(
        m.status().conditions.iter().all(|c| c.reason != reason::SKEW_VIOLATION),
        "{:?}",
        m.status().conditions
    );
    // worker-000 already runs both (a prefix at a word boundary); worker-001 does not.
    assert_eq!(started(&actions), ["worker-001"]);
    assert_eq!(m.status().counts.updated, 1);
}
