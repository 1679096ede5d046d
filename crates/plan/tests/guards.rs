//! Health checks, the canary, rollback, zones and hooks, decided by the
//! planner pass by pass on a model cluster.

mod support;

use drover_api::gates::{Canary, HttpCheck};
use drover_api::names::{condition, reason};
use drover_api::*;
use drover_plan::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use support::*;

fn check(name: &str) -> HealthCheck {
    HealthCheck {
        name: name.into(),
        http: Some(HttpCheck {
            url: "http://{{nodeIP}}:8080/healthz".into(),
            expected_status: vec![200],
            body_contains: None,
            request_timeout: "5s".into(),
            ca_bundle: None,
            secret_name: None,
        }),
        prometheus: None,
        pods: None,
        control_plane: None,
        timeout: "5m".into(),
        success_threshold: 1,
        interval: "10s".into(),
    }
}

fn containerd(version: &str) -> ClusterUpgradeSpec {
    spec(vec![job("containerd", version)])
}

/// The Step actions of a plan on `node`.
fn steps<'a>(actions: &'a [Action], node: &str) -> Vec<&'a Step> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Step { node: n, step, .. } if n == node => Some(step),
            _ => None,
        })
        .collect()
}

/// Answer the Health step of `node` in `actions` with one result per check.
fn answer_health(m: &mut Model, actions: &[Action], node: &str, passed: bool, answer: &str) -> Outcome {
    let (t, checks) = actions
        .iter()
        .find_map(|a| match a {
            Action::Step {
                node: n,
                step: Step::Health { checks, .. },
                transition,
            } if n == node => Some((transition.clone(), checks.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Health step for {node} in {actions:?}"));
    let results: Vec<CheckResult> = checks
        .iter()
        .map(|c| CheckResult {
            name: c.clone(),
            passed,
            answer: answer.into(),
        })
        .collect();
    let (outcome, record) = t.record_health(&results);
    m.obs.nodes.iter_mut().find(|n| n.name == node).unwrap().progress = record;
    outcome
}

/// Plan and apply every action as Done except the Health steps of `node`, answered as given.
fn round(m: &mut Model, node: &str, passed: bool) -> Vec<Action> {
    let actions = m.plan();
    for a in &actions {
        match a {
            Action::Step {
                node: n,
                step: Step::Health { .. },
                ..
            } if n == node => {
                answer_health(
                    m,
                    &actions,
                    node,
                    passed,
                    if passed { "HTTP 200" } else { "HTTP 503: unhealthy" },
                );
            }
            _ => m.apply(a, Outcome::Done),
        }
    }
    actions
}

fn phase(m: &Model, node: &str) -> Option<NodePhase> {
    m.node(node).progress.as_ref().map(|p| p.phase)
}

#[test]
fn an_unhealthy_cluster_is_never_touched_and_the_rollout_resumes_once_the_check_passes() {
    let mut s = containerd("1.7.23");
    s.health_checks = vec![check("app")];
    let mut m = Model::new(s, cluster(0, 2));
    // The first node starts at its checks: no cordon.
    let a = m.plan();
    assert_eq!(started(&a), vec!["worker-000"]);
    for x in &a {
        m.apply(x, Outcome::Done);
    }
    assert_eq!(phase(&m, "worker-000"), Some(NodePhase::Prechecking));
    for _ in 0..3 {
        let a = round(&mut m, "worker-000", false);
        assert!(
            steps(&a, "worker-000")
                .iter()
                .all(|s| matches!(s, Step::Health { before: true, .. })),
            "{a:?}"
        );
        m.tick(1);
    }
    assert!(
        !m.node("worker-000").unschedulable,
        "never cordoned while the check fails"
    );
    m.plan();
    let (st, r, msg) = m.condition(condition::RECONCILING);
    assert_eq!(
        (st.as_str(), r.as_str()),
        ("True", reason::HEALTH_CHECK_FAILED),
        "{msg}"
    );
    assert!(
        msg.contains("health check app on worker-000") && msg.contains("HTTP 503: unhealthy"),
        "{msg}"
    );
    assert_eq!(
        m.condition(condition::STALLED).0,
        "False",
        "not a failure before its timeout"
    );
    // Past the check's timeout it needs a human, and still touches nothing.
    m.tick(6);
    round(&mut m, "worker-000", false);
    m.plan();
    let (st, r, msg) = m.condition(condition::STALLED);
    assert_eq!(
        (st.as_str(), r.as_str()),
        ("True", reason::HEALTH_CHECK_FAILED),
        "{msg}"
    );
    assert!(msg.contains("nothing is touched until it does"), "{msg}");
    assert_eq!(phase(&m, "worker-000"), Some(NodePhase::Prechecking));
    // It passes: the node goes on to its cordon.
    m.tick(1);
    round(&mut m, "worker-000", true);
    let a = m.plan();
    assert!(matches!(steps(&a, "worker-000")[..], [Step::Cordon]), "{a:?}");
}

#[test]
fn a_node_counts_as_upgraded_only_after_its_checks_pass_and_fails_past_their_timeout() {
    let mut s = containerd("1.7.23");
    s.health_checks = vec![check("app")];
    let mut m = Model::new(s, cluster(0, 2));
    // Through the checks before, the cordon, drain, upgrade, verify and uncordon.
    for _ in 0..8 {
        round(&mut m, "worker-000", true);
        if phase(&m, "worker-000") == Some(NodePhase::Checking) {
            break;
        }
    }
    assert_eq!(phase(&m, "worker-000"), Some(NodePhase::Checking));
    let p = m.node("worker-000").progress.clone().unwrap();
    assert!(p.uncordoned.is_some() && !m.node("worker-000").unschedulable);
    assert_eq!(p.previous.get("containerd").map(String::as_str), Some("1.7.22"));
    // Failing after the uncordon: a wait, then a failure past the timeout.
    round(&mut m, "worker-000", false);
    assert!(m.in_flight().contains(&"worker-000".to_string()));
    m.tick(6);
    round(&mut m, "worker-000", false);
    assert_eq!(phase(&m, "worker-000"), Some(NodePhase::Failed));
    let f = m.node("worker-000").progress.clone().unwrap().failure.unwrap();
    assert_eq!(f.reason, Reason::HealthCheckFailed);
    assert!(
        f.message.contains("has not passed within its timeout (300s)"),
        "{}",
        f.message
    );
    let a = m.plan();
    assert!(started(&a).is_empty(), "nothing else starts: {a:?}");
    let (st, r, _) = m.condition(condition::STALLED);
    assert_eq!((st.as_str(), r.as_str()), ("True", reason::HEALTH_CHECK_FAILED));
}

#[test]
fn a_version_that_does_not_verify_is_rolled_back_in_reverse_order_and_the_rollout_halts() {
    let mut s = spec(vec![job("containerd", "1.7.23"), job("kubelet", "v1.31.5")]);
    s.strategy.on_failure = FailureAction::Rollback;
    s.strategy.retries = 0;
    let mut m = Model::new(s, cluster(0, 3));
    // Cordon, drain, containerd upgraded and verified, kubelet upgraded, then its verification fails.
    let mut failed = false;
    for _ in 0..10 {
        let actions = m.plan();
        for a in &actions {
            let fails = matches!(a, Action::Step { node, step: Step::Verify { component, .. }, .. } if node == "worker-000" && component == "kubelet");
            if fails && !failed {
                failed = true;
                m.apply(
                    a,
                    Outcome::Failed {
                        reason: Reason::VerificationFailed,
                        message: "kubelet reports v1.31.4".into(),
                    },
                );
            } else {
                m.apply(a, Outcome::Done);
            }
        }
        if failed {
            break;
        }
    }
    assert!(failed);
    let p = m.node("worker-000").progress.clone().unwrap();
    assert!(p.rollback && p.phase == NodePhase::Upgrading, "{p:?}");
    assert_eq!(p.component.as_deref(), Some("kubelet"), "the failed component first");
    assert_eq!(p.reported_state(), NodeState::RollingBack);
    // The rollback's steps: kubelet back, then containerd back, each verified.
    let mut back = Vec::new();
    for _ in 0..12 {
        let actions = m.plan();
        assert!(
            started(&actions).is_empty(),
            "nothing starts during a rollback: {actions:?}"
        );
        for a in &actions {
            if let Action::Step {
                step: Step::Upgrade { component, version, .. },
                ..
            } = a
            {
                back.push(format!("{component}={version}"));
            }
            m.apply(a, Outcome::Done);
        }
    }
    assert_eq!(back, vec!["kubelet=v1.31.4", "containerd=1.7.22"]);
    let n = m.node("worker-000");
    assert!(!n.unschedulable, "handed back");
    assert_eq!(n.versions.get("containerd").map(String::as_str), Some("1.7.22"));
    let p = n.progress.clone().unwrap();
    assert_eq!(p.phase, NodePhase::Failed);
    assert_eq!(p.reported_state(), NodeState::RolledBack);
    m.plan();
    let (st, r, msg) = m.condition(condition::STALLED);
    assert_eq!((st.as_str(), r.as_str()), ("True", reason::ROLLED_BACK), "{msg}");
    assert!(
        msg.contains("returned to containerd=1.7.22, kubelet=v1.31.4 after VerificationFailed"),
        "{msg}"
    );
    let rb = &m.status().rolled_back;
    assert_eq!(rb.len(), 1);
    assert_eq!(rb[0].name, "worker-000");
    assert_eq!(rb[0].versions, "containerd=1.7.22,kubelet=v1.31.4");
    for other in ["worker-001", "worker-002"] {
        assert!(m.node(other).progress.is_none(), "{other} was never touched");
    }
}

#[test]
fn a_failed_check_after_the_uncordon_cordons_and_drains_again_before_rolling_back() {
    let mut s = containerd("1.7.23");
    s.health_checks = vec![check("app")];
    s.strategy.on_failure = FailureAction::Rollback;
    let mut m = Model::new(s, cluster(0, 2));
    for _ in 0..8 {
        round(&mut m, "worker-000", true);
        if phase(&m, "worker-000") == Some(NodePhase::Checking) {
            break;
        }
    }
    m.tick(6);
    round(&mut m, "worker-000", false);
    let p = m.node("worker-000").progress.clone().unwrap();
    assert!(p.rollback && p.phase == NodePhase::Cordoning, "{p:?}");
    let mut seen = Vec::new();
    for _ in 0..8 {
        for a in m.plan() {
            if let Action::Step { step, .. } = &a {
                seen.push(step.name());
            }
            m.apply(&a, Outcome::Done);
        }
    }
    assert_eq!(
        &seen[..5],
        ["Cordon", "Drain", "Upgrade", "Verify", "Uncordon"],
        "{seen:?}"
    );
    let p = m.node("worker-000").progress.clone().unwrap();
    assert_eq!(p.failure.unwrap().reason, Reason::RolledBack);
    assert_eq!(m.node("worker-000").versions["containerd"], "1.7.22");
}

#[test]
fn etcd_is_never_rolled_back_a_minor_version_and_the_refusal_says_why() {
    let mut s = spec(vec![job("etcd", "3.6.1")]);
    s.strategy.on_failure = FailureAction::Rollback;
    s.strategy.retries = 0;
    let mut m = Model::new(s, cluster(3, 0));
    let mut failure = None;
    for _ in 0..10 {
        for a in m.plan() {
            let verify = matches!(
                &a,
                Action::Step {
                    step: Step::Verify { .. },
                    ..
                }
            );
            if verify && failure.is_none() {
                m.apply(
                    &a,
                    Outcome::Failed {
                        reason: Reason::VerificationFailed,
                        message: "etcd reports 3.6.0".into(),
                    },
                );
                // etcd did change: the node runs 3.6.1 now.
                m.obs.nodes[0].versions.insert("etcd".into(), "3.6.1".into());
                failure = m.obs.nodes[0].progress.clone().and_then(|p| p.failure);
            } else {
                m.apply(&a, Outcome::Done);
            }
        }
    }
    let f = failure.expect("the verification failed");
    assert_eq!(f.reason, Reason::RollbackRefused);
    assert!(
        f.message
            .contains("kubeadm cannot downgrade etcd or a control-plane minor version"),
        "{}",
        f.message
    );
    assert!(!m.obs.nodes[0].progress.clone().unwrap().rollback);
    m.plan();
    assert_eq!(m.condition(condition::STALLED).1, reason::ROLLBACK_REFUSED);
}

#[test]
fn the_canary_goes_alone_soaks_and_waits_for_the_approval_of_its_hash() {
    let mut s = containerd("1.7.23");
    s.strategy.max_unavailable = IntOrString::Int(2);
    s.strategy.canary = Some(Canary {
        nodes: IntOrString::Int(1),
        selector: None,
        soak: "10m".into(),
        require_approval: true,
    });
    let mut m = Model::new(s, cluster(0, 5));
    let a = m.plan();
    assert_eq!(started(&a), vec!["worker-000"], "one canary, though two may go");
    let hash = canary_hash(&m.spec);
    assert_eq!(m.status().canary.as_ref().map(|c| c.hash.clone()), Some(hash.clone()));
    for _ in 0..8 {
        for a in m.plan() {
            assert!(started(std::slice::from_ref(&a)).iter().all(|n| n == "worker-000"));
            m.apply(&a, Outcome::Done);
        }
    }
    assert_eq!(phase(&m, "worker-000"), Some(NodePhase::Done));
    m.plan();
    assert_eq!(m.condition(condition::RECONCILING).1, reason::SOAKING);
    assert_eq!(m.status().canary.as_ref().unwrap().state, "Soaking");
    m.tick(11);
    let a = m.plan();
    assert!(started(&a).is_empty(), "{a:?}");
    let (st, r, _) = m.condition(condition::READY);
    assert_eq!((st.as_str(), r.as_str()), ("False", reason::AWAITING_APPROVAL));
    let (st, r, msg) = m.condition(condition::RECONCILING);
    assert_eq!((st.as_str(), r.as_str()), ("True", reason::AWAITING_APPROVAL));
    assert!(msg.contains(&format!("set spec.approvedCanary to {hash}")), "{msg}");
    assert_eq!(m.condition(condition::STALLED).0, "False");
    let c = m.status().canary.clone().unwrap();
    assert_eq!(
        (c.state.as_str(), c.nodes.clone()),
        ("AwaitingApproval", vec!["worker-000".to_string()])
    );
    assert!(
        c.observed.iter().any(|o| o.starts_with("worker-000: upgraded")),
        "{:?}",
        c.observed
    );
    // Another target's hash approves nothing.
    m.spec.approved_canary = Some("000000000000".into());
    assert!(started(&m.plan()).is_empty());
    m.spec.approved_canary = Some(hash);
    assert_eq!(started(&m.plan()), vec!["worker-001", "worker-002"]);
}

#[test]
fn one_zone_at_a_time_with_max_unavailable_counted_within_it() {
    let mut s = containerd("1.7.23");
    s.strategy.max_unavailable = IntOrString::String("50%".into());
    s.strategy.topology_key = Some("topology.kubernetes.io/zone".into());
    let mut nodes = cluster(0, 6);
    for (i, n) in nodes.iter_mut().enumerate() {
        let zone = if i % 2 == 0 { "zone-b" } else { "zone-a" };
        n.labels.insert("topology.kubernetes.io/zone".into(), zone.into());
    }
    let zone = |m: &Model, n: &str| m.node(n).labels["topology.kubernetes.io/zone"].clone();
    let mut m = Model::new(s, nodes);
    let mut batches = Vec::new();
    for _ in 0..40 {
        let a = m.plan();
        let s = started(&a);
        if !s.is_empty() {
            batches.push(s);
        }
        let zones: std::collections::BTreeSet<String> = m.in_flight().iter().map(|n| zone(&m, n)).collect();
        assert!(zones.len() <= 1, "two zones in progress at once: {zones:?}");
        for x in &a {
            m.apply(x, Outcome::Done);
        }
    }
    let zones: Vec<Vec<String>> = batches
        .iter()
        .map(|b| b.iter().map(|n| zone(&m, n)).collect())
        .collect();
    // 3 workers per zone, 50% of them: one node per batch, zone-a finished first.
    assert_eq!(
        zones,
        vec![
            vec!["zone-a"],
            vec!["zone-a"],
            vec!["zone-a"],
            vec!["zone-b"],
            vec!["zone-b"],
            vec!["zone-b"]
        ]
    );
}

#[test]
fn a_failing_pre_drain_hook_hands_the_node_back_before_any_eviction() {
    let mut s = containerd("1.7.23");
    s.hooks.pre_drain = Some(Hook {
        image: "example.com/ceph-noout:1".into(),
        command: vec![],
        args: vec![],
        env: vec![],
        privileged: false,
        host_root: false,
        timeout: "5m".into(),
    });
    let mut m = Model::new(s, cluster(0, 2));
    let mut names = Vec::new();
    for _ in 0..6 {
        for a in m.plan() {
            if let Action::Step { step, .. } = &a {
                names.push(step.name());
                if matches!(
                    step,
                    Step::Hook {
                        hook: HookPoint::PreDrain
                    }
                ) {
                    m.apply(
                        &a,
                        Outcome::Failed {
                            reason: Reason::UpgradeJobFailed,
                            message: "Job ended Failed".into(),
                        },
                    );
                    continue;
                }
            }
            m.apply(&a, Outcome::Done);
        }
    }
    assert_eq!(names, vec!["Cordon", "PreDrainHook", "Uncordon"], "no Drain");
    let p = m.node("worker-000").progress.clone().unwrap();
    assert_eq!(p.phase, NodePhase::Failed);
    assert_eq!(p.failure.unwrap().reason, Reason::PreDrainHookFailed);
    assert!(!m.node("worker-000").unschedulable);
    let (st, r, _) = m.condition(condition::STALLED);
    assert_eq!((st.as_str(), r.as_str()), ("True", reason::PRE_DRAIN_HOOK_FAILED));
}

#[test]
fn drover_plan_names_the_checks_the_canary_the_zones_the_hooks_and_what_rollback_returns() {
    let mut s = containerd("1.7.23");
    s.health_checks = vec![check("app")];
    s.strategy.canary = Some(Canary {
        nodes: IntOrString::Int(1),
        selector: None,
        soak: "10m".into(),
        require_approval: true,
    });
    s.strategy.topology_key = Some("zone".into());
    s.strategy.on_failure = FailureAction::Rollback;
    let mut nodes = cluster(0, 3);
    nodes[0].labels.insert("zone".into(), "a".into());
    let obs = observation(nodes);
    let g = drover_plan::forecast::guards(&s, &obs).join("\n");
    assert!(
        g.contains("health check app: GET http://{{nodeIP}}:8080/healthz"),
        "{g}"
    );
    assert!(
        g.contains(&format!("wait until spec.approvedCanary is {}", canary_hash(&s))),
        "{g}"
    );
    assert!(g.contains("zones by zone: (no label) (2), a (1)"), "{g}");
    assert!(g.contains("containerd back to 1.7.22 on 3"), "{g}");
    let f = drover_plan::forecast::forecast(&s, &obs);
    assert_eq!(f.end, drover_plan::forecast::End::Complete, "{f:?}");
    assert!(f.batches[0].canary, "{:?}", f.batches);
    assert!(
        f.notes.iter().any(|n| n.contains("forecast as if approved")),
        "{:?}",
        f.notes
    );
}

#[test]
fn rollback_all_walks_back_every_node_the_target_upgraded_one_batch_at_a_time() {
    let mut s = containerd("1.7.23");
    s.strategy.on_failure = FailureAction::Rollback;
    s.strategy.rollback = RollbackScope::All;
    s.strategy.retries = 0;
    let mut m = Model::new(s, cluster(0, 4));
    let mut failed = false;
    let mut max_in_flight = 0;
    for _ in 0..60 {
        let actions = m.plan();
        for a in &actions {
            let fail = matches!(a, Action::Step { node, step: Step::Verify { .. }, transition } if node == "worker-002" && !transition.from.rollback);
            if fail && !failed {
                failed = true;
                m.apply(
                    a,
                    Outcome::Failed {
                        reason: Reason::VerificationFailed,
                        message: "containerd reports 1.7.22".into(),
                    },
                );
            } else {
                m.apply(a, Outcome::Done);
            }
        }
        max_in_flight = max_in_flight.max(m.in_flight().len());
    }
    assert!(failed);
    assert_eq!(max_in_flight, 1, "maxUnavailable 1 holds for the walk back too");
    for n in ["worker-000", "worker-001", "worker-002"] {
        assert_eq!(m.node(n).versions["containerd"], "1.7.22", "{n} returned");
        let p = m.node(n).progress.clone().unwrap();
        assert_eq!(
            (p.phase, p.reported_state()),
            (NodePhase::Failed, NodeState::RolledBack),
            "{n}"
        );
        assert!(!m.node(n).unschedulable, "{n}");
    }
    assert!(m.node("worker-003").progress.is_none(), "never started");
    m.plan();
    let (st, r, msg) = m.condition(condition::STALLED);
    assert_eq!((st.as_str(), r.as_str()), ("True", reason::ROLLED_BACK), "{msg}");
    assert!(msg.contains("also rolled back"), "{msg}");
    assert_eq!(m.status().rolled_back.len(), 3);
}

#[test]
fn a_canary_larger_than_what_is_left_to_upgrade_takes_what_is_left_and_does_not_wait_forever() {
    let mut s = containerd("1.7.23");
    s.strategy.max_unavailable = IntOrString::Int(3);
    s.strategy.canary = Some(Canary {
        nodes: IntOrString::Int(3),
        selector: None,
        soak: "0s".into(),
        require_approval: false,
    });
    let mut nodes = cluster(0, 4);
    // Two workers already run the target.
    for n in nodes.iter_mut().take(2) {
        n.versions.insert("containerd".into(), "1.7.23".into());
    }
    let mut m = Model::new(s, nodes);
    assert_eq!(
        started(&m.plan()),
        vec!["worker-002", "worker-003"],
        "the two left are the canary"
    );
    m.run(12);
    assert_eq!(m.condition(condition::READY).0, "True", "{:?}", m.status().conditions);
    assert_eq!(m.status().canary.as_ref().unwrap().state, "Passed");
}

#[test]
fn a_rollback_after_a_gitops_bump_installs_the_previous_version_with_the_job_that_installed_it() {
    // The spec as it was: containerd 1.7.22 by the old image, already everywhere.
    let mut old = containerd("1.7.22");
    old.components[0].upgrade.job.as_mut().unwrap().image = "example.com/containerd-installer:1".into();
    let mut m = Model::new(old, cluster(0, 2));
    m.plan();
    assert_eq!(m.status().installers[0].job.image, "example.com/containerd-installer:1");
    // A pipeline replaces the spec: a new version, a new installer image.
    let mut new = containerd("1.7.23");
    new.components[0].upgrade.job.as_mut().unwrap().image = "example.com/containerd-installer:2".into();
    new.strategy.on_failure = FailureAction::Rollback;
    new.strategy.retries = 0;
    m.spec = new;
    let mut rollback_job = None;
    let mut failed = false;
    for _ in 0..12 {
        for a in m.plan() {
            match &a {
                Action::Step {
                    step: Step::Verify { .. },
                    transition,
                    ..
                } if !failed && !transition.from.rollback => {
                    failed = true;
                    m.apply(
                        &a,
                        Outcome::Failed {
                            reason: Reason::VerificationFailed,
                            message: "containerd reports 1.7.22".into(),
                        },
                    );
                    continue;
                }
                Action::Step {
                    step: Step::Upgrade { version, job, .. },
                    transition,
                    ..
                } if transition.from.rollback => rollback_job = Some((version.clone(), job.clone())),
                _ => {}
            }
            m.apply(&a, Outcome::Done);
        }
    }
    let (version, job) = rollback_job.expect("a rollback Upgrade step");
    assert_eq!(version, "1.7.22");
    assert_eq!(
        job.expect("the installer kept in status").image,
        "example.com/containerd-installer:1"
    );
    let installers: Vec<(String, String)> = m
        .status()
        .installers
        .iter()
        .map(|i| (i.version.clone(), i.job.image.clone()))
        .collect();
    assert_eq!(
        installers,
        vec![
            ("1.7.23".into(), "example.com/containerd-installer:2".into()),
            ("1.7.22".into(), "example.com/containerd-installer:1".into())
        ]
    );
}

#[test]
fn a_kubelet_is_never_rolled_back_further_behind_the_api_server_than_the_skew_policy_allows() {
    let mut s = spec(vec![job("kubelet", "v1.32.0")]);
    s.strategy.on_failure = FailureAction::Rollback;
    s.strategy.retries = 0;
    s.node_selector = None;
    let mut nodes = cluster(1, 1);
    nodes[0].versions.insert("kube-apiserver".into(), "v1.35.0".into());
    nodes[0].versions.insert("kubelet".into(), "v1.32.0".into());
    let mut m = Model::new(s, nodes);
    let mut failure = None;
    for _ in 0..10 {
        for a in m.plan() {
            let verify = matches!(&a, Action::Step { node, step: Step::Verify { .. }, .. } if node == "worker-000");
            if verify && failure.is_none() {
                m.apply(
                    &a,
                    Outcome::Failed {
                        reason: Reason::VerificationFailed,
                        message: "kubelet reports v1.31.4".into(),
                    },
                );
                failure = m.node("worker-000").progress.clone().and_then(|p| p.failure);
            } else {
                m.apply(&a, Outcome::Done);
            }
        }
    }
    let f = failure.expect("the verification failed");
    assert_eq!(f.reason, Reason::RollbackRefused, "{}", f.message);
    assert!(
        f.message.contains("kubelet v1.31 would be 4 minor versions older than the oldest kube-apiserver (v1.35); the skew policy allows 3"),
        "{}",
        f.message
    );
}
