//! One test per planner rule, with the reported reason and message asserted.

mod support;

use drover_api::names::{condition, reason};
use drover_api::*;
use drover_plan::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use support::*;

fn kube_spec(version: &str) -> ClusterUpgradeSpec {
    spec(vec![job("kubelet", version), job("kube-apiserver", version)])
}

#[test]
fn invalid_spec_is_refused_naming_the_field_and_nothing_starts() {
    let mut s = kube_spec("v1.32.0");
    s.components[0].version = "latest".into();
    s.strategy.max_unavailable = IntOrString::Int(0);
    let mut m = Model::new(s, cluster(1, 2));
    let actions = m.plan();
    assert!(actions.is_empty(), "a refused spec touches nothing: {actions:?}");
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::INVALID_SPEC));
    assert!(
        message.contains("spec.components[0].version: \"latest\" must be a semantic version"),
        "{message}"
    );
    assert!(
        message.contains("spec.strategy.maxUnavailable: must be at least 1"),
        "{message}"
    );
    assert_eq!(m.condition(condition::READY).0, "False");
    assert_eq!(m.status().stage.as_deref(), Some("Refused"));
}

#[test]
fn unknown_component_needs_a_stage() {
    let mut m = Model::new(spec(vec![job("my-agent", "1.0.0")]), cluster(1, 1));
    m.plan();
    let (_, r, message) = m.condition(condition::STALLED);
    assert_eq!(r, reason::INVALID_SPEC);
    assert!(
        message.contains("spec.components[0].stage: is required for \"my-agent\""),
        "{message}"
    );
    assert!(
        message.contains("allowed: Runtime, Etcd, ControlPlane, Kubelet, Network, Addons"),
        "{message}"
    );
}

#[test]
fn bad_window_and_time_zone_are_refused() {
    let mut s = kube_spec("v1.32.0");
    s.windows = vec![MaintenanceWindow {
        days: vec![],
        start: "25:00".into(),
        end: "03:00".into(),
        time_zone: "Mars/Olympus".into(),
    }];
    let mut m = Model::new(s, cluster(1, 1));
    m.plan();
    let message = m.condition(condition::STALLED).2;
    assert!(
        message.contains("spec.windows[0].start: \"25:00\" must be a 24-hour time HH:MM"),
        "{message}"
    );
    assert!(
        message.contains("spec.windows[0].timeZone: \"Mars/Olympus\" is not a known IANA time zone"),
        "{message}"
    );
}

fn refused_with(s: ClusterUpgradeSpec, nodes: Vec<ObservedNode>) -> String {
    let mut m = Model::new(s, nodes);
    let actions = m.plan();
    assert!(actions.is_empty(), "refused specs start nothing");
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!(
        (status.as_str(), r.as_str()),
        ("True", reason::SKEW_VIOLATION),
        "{message}"
    );
    message
}

#[test]
fn api_server_may_not_skip_a_minor_version() {
    let message = refused_with(kube_spec("v1.33.0"), cluster(1, 1));
    assert!(
        message.contains("kube-apiserver v1.33 would skip a minor version: cp-0 runs v1.31; upgrade to v1.32 first"),
        "{message}"
    );
}

#[test]
fn kubelet_may_not_be_newer_than_the_api_server() {
    let s = spec(vec![job("kubelet", "v1.32.0"), job("kube-apiserver", "v1.31.4")]);
    let message = refused_with(s, cluster(1, 1));
    assert!(
        message.contains("kubelet v1.32: newer than kube-apiserver v1.31"),
        "{message}"
    );
}

#[test]
fn kubelet_alone_may_not_pass_the_running_api_server() {
    let message = refused_with(spec(vec![job("kubelet", "v1.32.1")]), cluster(1, 1));
    assert!(
        message.contains("kubelet v1.32: newer than kube-apiserver v1.31"),
        "{message}"
    );
}

#[test]
fn kubelets_left_behind_may_be_at_most_three_minors_older() {
    let mut nodes = cluster(1, 1);
    nodes[1].versions.insert("kubelet".into(), "v1.28.9".into());
    let message = refused_with(spec(vec![job("kube-apiserver", "v1.32.0")]), nodes);
    assert!(message.contains("kubelet v1.28 on worker-000 would be more than 3 minor versions older than kube-apiserver v1.32; add kubelet to spec.components"), "{message}");
}

#[test]
fn controller_manager_at_most_one_minor_older() {
    let s = spec(vec![
        job("kube-apiserver", "v1.32.0"),
        job("kube-controller-manager", "v1.30.2"),
    ]);
    let message = refused_with(s, cluster(1, 0));
    assert!(
        message.contains("kube-controller-manager v1.30: more than 1 minor versions older than kube-apiserver v1.32"),
        "{message}"
    );
}

#[test]
fn downgrades_need_allow_downgrade() {
    let s = spec(vec![job("containerd", "1.7.20")]);
    let message = refused_with(s.clone(), cluster(1, 2));
    assert!(message.contains("containerd 1.7.20 is older than the version 3 nodes run now (cp-0, worker-000, worker-001); downgrades need spec.versionPolicy.allowDowngrade: true"), "{message}");
    let mut allowed = s;
    allowed.version_policy.allow_downgrade = true;
    let mut m = Model::new(allowed, cluster(1, 2));
    assert_eq!(started(&m.plan()), vec!["cp-0"]);
}

#[test]
fn a_two_part_version_is_a_series_for_the_downgrade_check_and_for_done() {
    let docker = |live: &str| -> Vec<ObservedNode> {
        (0..2)
            .map(|i| {
                node(
                    &format!("worker-{i:03}"),
                    Role::Worker,
                    &[("docker", live), ("kubelet", "v1.31.4")],
                )
            })
            .collect()
    };
    // docker_version "20.10" against nodes on docker://20.10.24: not a
    // downgrade, and nothing to do.
    let mut m = Model::new(spec(vec![job("docker", "20.10")]), docker("docker://20.10.24"));
    assert!(started(&m.plan()).is_empty());
    assert_eq!(m.status().components[0].updated, 2);
    assert_eq!(m.condition("Ready").0, "True");
    // Against an older series, the nodes start.
    let mut m = Model::new(spec(vec![job("docker", "20.10")]), docker("docker://19.3.15"));
    assert_eq!(started(&m.plan()), vec!["worker-000"]);
    // A series below what runs is a downgrade.
    let message = refused_with(spec(vec![job("docker", "18.09")]), docker("docker://19.3.15"));
    assert!(
        message.contains("docker 18.09 is older than the version 2 nodes run now"),
        "{message}"
    );
    // So is a newer patch release, asked for by its minor's series.
    let message = refused_with(spec(vec![job("docker", "20.10")]), docker("docker://23.0.1"));
    assert!(message.contains("docker 20.10 is older"), "{message}");
}

#[test]
fn a_two_part_kubernetes_version_keeps_the_skew_rules() {
    let s = spec(vec![job("kube-apiserver", "v1.33")]);
    let message = refused_with(s, cluster(1, 0));
    assert!(
        message.contains("kube-apiserver v1.33 would skip a minor version"),
        "{message}"
    );
    let mut m = Model::new(
        spec(vec![job("kube-apiserver", "v1.32"), job("kubelet", "v1.32")]),
        cluster(1, 1),
    );
    assert_eq!(started(&m.plan()), vec!["cp-0"]);
}

#[test]
fn prereleases_need_allow_prerelease() {
    let message = refused_with(spec(vec![job("containerd", "2.0.0-rc.1")]), cluster(1, 1));
    assert!(message.contains("spec.components[0].version: containerd 2.0.0-rc.1 is a pre-release; set spec.versionPolicy.allowPrerelease: true"), "{message}");
}

#[test]
fn skew_policy_ignore_lets_anything_through() {
    let mut s = kube_spec("v1.34.0");
    s.version_policy.skew = SkewPolicy::Ignore;
    let mut m = Model::new(s, cluster(1, 1));
    assert_eq!(started(&m.plan()), vec!["cp-0"]);
}

#[test]
fn control_plane_goes_one_at_a_time_before_any_worker() {
    let mut m = Model::new(kube_spec("v1.32.0"), cluster(3, 4));
    let mut order = Vec::new();
    for _ in 0..200 {
        let actions = m.plan();
        for a in &actions {
            if let Action::Start { node, .. } = a {
                order.push(node.clone());
            }
            m.apply(a, Outcome::Done);
        }
        let flying = m.in_flight();
        let cp_flying = flying.iter().filter(|n| n.starts_with("cp-")).count();
        assert!(cp_flying <= 1, "control plane one at a time: {flying:?}");
        if cp_flying == 1 {
            assert_eq!(flying.len(), 1, "no worker with a control-plane node: {flying:?}");
        }
        m.tick(1);
    }
    assert_eq!(&order[..3], ["cp-0", "cp-1", "cp-2"]);
    assert_eq!(order.len(), 7);
    assert_eq!(m.condition(condition::READY).0, "True");
}

#[test]
fn within_a_node_components_go_in_stage_order() {
    // Listed out of order on purpose.
    let s = spec(vec![
        job("kubelet", "v1.32.0"),
        job("kube-apiserver", "v1.32.0"),
        job("containerd", "1.7.23"),
        job("etcd", "3.5.16"),
    ]);
    let mut m = Model::new(s, cluster(1, 0));
    let mut upgrades = Vec::new();
    for _ in 0..30 {
        for a in m.plan() {
            if let Action::Step {
                step: Step::Upgrade { component, .. },
                ..
            } = &a
            {
                upgrades.push(component.clone());
            }
            m.apply(&a, Outcome::Done);
        }
    }
    assert_eq!(upgrades, ["containerd", "etcd", "kube-apiserver", "kubelet"]);
}

#[test]
fn a_node_walks_cordon_drain_upgrade_verify_uncordon() {
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), cluster(0, 1));
    let mut steps = Vec::new();
    for _ in 0..10 {
        for a in m.plan() {
            match &a {
                Action::Start { .. } => steps.push("Start".to_string()),
                Action::Step { step, .. } => {
                    steps.push(format!("{step:?}").split_whitespace().next().unwrap().to_string())
                }
                _ => {}
            }
            m.apply(&a, Outcome::Done);
        }
    }
    assert_eq!(steps, ["Start", "Cordon", "Drain", "Upgrade", "Verify", "Uncordon"]);
    let n = m.node("worker-000");
    assert!(!n.unschedulable && n.cordoned_by.is_none());
    assert_eq!(n.progress.as_ref().unwrap().phase, NodePhase::Done);
    assert_eq!(m.status().counts.updated, 1);
}

#[test]
fn workers_start_in_batches_of_max_unavailable() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    max_unavailable(&mut s, IntOrString::Int(3));
    let mut m = Model::new(s, cluster(0, 10));
    assert_eq!(started(&m.plan()), ["worker-000", "worker-001", "worker-002"]);
}

#[test]
fn percentage_rounds_down_with_a_floor_of_one() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    max_unavailable(&mut s, IntOrString::String("25%".into()));
    let mut m = Model::new(s.clone(), cluster(0, 10));
    assert_eq!(started(&m.plan()).len(), 2);
    let mut m = Model::new(s, cluster(0, 3));
    assert_eq!(started(&m.plan()).len(), 1);
}

#[test]
fn nodes_unavailable_for_other_reasons_count_against_the_budget() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    max_unavailable(&mut s, IntOrString::Int(2));
    let mut nodes = cluster(0, 5);
    nodes[4].ready = false; // NotReady, not upgradeable now
    let mut m = Model::new(s.clone(), nodes.clone());
    assert_eq!(
        started(&m.plan()),
        ["worker-000"],
        "one slot left after the NotReady node"
    );

    nodes[4].ready = true;
    nodes[3].unschedulable = true; // an admin's cordon: free to upgrade, counts already
    nodes[2].unschedulable = true;
    let mut m = Model::new(s, nodes);
    let s = started(&m.plan());
    assert_eq!(
        s,
        ["worker-002", "worker-003"],
        "the admin-cordoned nodes go first and use no extra budget"
    );
}

#[test]
fn budget_exhausted_by_others_is_reported() {
    let mut nodes = cluster(0, 3);
    nodes[0].unschedulable = true;
    nodes[0].versions.insert("containerd".into(), "1.7.23".into());
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), nodes);
    assert!(started(&m.plan()).is_empty());
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::BUDGET_EXHAUSTED));
    assert!(message.contains("1 workers are already unavailable (NotReady, cordoned by someone else, or kept cordoned: worker-000) and spec.strategy.maxUnavailable allows 1"), "{message}");
}

#[test]
fn an_admin_cordon_survives_the_upgrade() {
    let mut nodes = cluster(0, 1);
    nodes[0].unschedulable = true;
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), nodes);
    m.run(10);
    let n = m.node("worker-000");
    assert_eq!(n.versions["containerd"], "1.7.23");
    assert!(n.unschedulable, "the admin's cordon stays");
    assert_eq!(m.condition(condition::READY).0, "True");
}

#[test]
fn no_node_starts_outside_a_window_and_the_next_opening_is_named() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.windows = vec![MaintenanceWindow {
        days: vec![Weekday::Saturday],
        start: "02:00".into(),
        end: "04:00".into(),
        time_zone: "UTC".into(),
    }];
    let mut m = Model::new(s, cluster(0, 2));
    assert!(started(&m.plan()).is_empty());
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::OUTSIDE_WINDOW));
    assert!(
        message.contains("the next window opens at 2026-11-28T02:00:00Z"),
        "{message}"
    );
    m.obs.now = "2026-11-28T02:30:00Z".parse().unwrap();
    assert_eq!(started(&m.plan()), ["worker-000"]);
}

#[test]
fn a_node_in_progress_finishes_when_its_window_closes() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.windows = vec![MaintenanceWindow {
        days: vec![],
        start: "10:00".into(),
        end: "10:02".into(),
        time_zone: "UTC".into(),
    }];
    let mut m = Model::new(s, cluster(0, 2));
    m.run(8);
    assert_eq!(
        m.node("worker-000").versions["containerd"],
        "1.7.23",
        "the started node finished"
    );
    assert_eq!(
        m.node("worker-001").versions["containerd"],
        "1.7.22",
        "no node started after closing"
    );
    assert_eq!(m.condition(condition::STALLED).1, reason::OUTSIDE_WINDOW);
}

#[test]
fn paused_starts_nothing_and_says_so() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.paused = true;
    let mut m = Model::new(s, cluster(0, 2));
    assert!(m.plan().is_empty());
    let (status, r, message) = m.condition(condition::READY);
    assert_eq!((status.as_str(), r.as_str()), ("False", reason::PAUSED));
    assert!(
        message.starts_with("0 of 2 nodes in scope run containerd=1.7.23"),
        "{message}"
    );
    // Paused half-way is not done: Reconciling stays True (kstatus InProgress).
    let (status, r, message) = m.condition(condition::RECONCILING);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::PAUSED));
    assert_eq!(m.condition(condition::STALLED).0, "False");
    assert!(
        message.starts_with("spec.paused is true: no new node starts"),
        "{message}"
    );
    m.spec.paused = false;
    assert_eq!(started(&m.plan()), ["worker-000"]);
}

#[test]
fn soak_time_separates_nodes() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.soak = "10m".into();
    let mut m = Model::new(s, cluster(0, 2));
    for _ in 0..6 {
        for a in m.plan() {
            m.apply(&a, Outcome::Done);
        }
    }
    assert_eq!(m.node("worker-000").progress.as_ref().unwrap().phase, NodePhase::Done);
    assert!(started(&m.plan()).is_empty());
    let (_, r, message) = m.condition(condition::RECONCILING);
    assert_eq!(r, reason::SOAKING);
    assert!(
        message.contains("soaking after the last node for spec.strategy.soak (10m) until 2026-11-23T10:10:00Z"),
        "{message}"
    );
    m.tick(10);
    assert_eq!(started(&m.plan()), ["worker-001"]);
}

fn drive_to_drain(m: &mut Model) -> Action {
    for _ in 0..3 {
        for a in m.plan() {
            if let Action::Step { step: Step::Drain, .. } = a {
                return a;
            }
            m.apply(&a, Outcome::Done);
        }
    }
    panic!("never reached the drain");
}

#[test]
fn a_blocked_drain_is_reported_then_halts_at_the_timeout_and_recovers_under_keep_cordoned() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.on_halt = HaltAction::KeepCordoned;
    let mut m = Model::new(s, cluster(0, 2));
    let drain = drive_to_drain(&mut m);
    let blocked = "evicting default/web-0: blocked by PodDisruptionBudget default/web (0 disruptions allowed)";
    m.apply(
        &drain,
        Outcome::Blocked {
            message: blocked.into(),
            timed_out: false,
        },
    );
    m.plan();
    let (status, r, message) = m.condition(condition::RECONCILING);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::DRAIN_BLOCKED));
    assert!(
        message.contains(
            "draining worker-000 (attempt 1): evicting default/web-0: blocked by PodDisruptionBudget default/web"
        ),
        "{message}"
    );
    assert_eq!(m.status().nodes[0].state, "Blocked");

    let drain = drive_to_drain(&mut m);
    m.apply(
        &drain,
        Outcome::Blocked {
            message: blocked.into(),
            timed_out: true,
        },
    );
    m.plan();
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::DRAIN_BLOCKED));
    assert!(
        message.contains("drain of worker-000 passed spec.drain.timeout (15m) and onTimeout is Halt"),
        "{message}"
    );
    assert!(
        m.node("worker-000").unschedulable,
        "KeepCordoned keeps the node cordoned while it retries"
    );
    assert_eq!(m.status().left_cordoned[0].name, "worker-000");

    // The PDB is relaxed: the drain completes and the rollout goes on.
    let drain = drive_to_drain(&mut m);
    m.apply(&drain, Outcome::Done);
    m.run(20);
    assert_eq!(m.condition(condition::READY).0, "True");
    assert_eq!(m.node("worker-000").progress.as_ref().unwrap().attempts, 0);
}

#[test]
fn skip_node_on_drain_timeout_uncordons_and_counts_a_failure() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.drain.on_timeout = DrainTimeoutAction::SkipNode;
    s.strategy.max_failures = 1;
    let mut m = Model::new(s, cluster(0, 2));
    let drain = drive_to_drain(&mut m);
    m.apply(
        &drain,
        Outcome::Blocked {
            message: "PDB default/web".into(),
            timed_out: true,
        },
    );
    m.run(20);
    let n = m.node("worker-000");
    assert!(!n.unschedulable, "a skipped node is uncordoned");
    assert_eq!(n.versions["containerd"], "1.7.22");
    assert_eq!(
        m.node("worker-001").versions["containerd"],
        "1.7.23",
        "one failure is tolerated"
    );
    let st = m.status();
    assert_eq!((st.counts.failed, st.counts.skipped, st.counts.updated), (1, 1, 1));
    assert_eq!(st.nodes[0].state, "Skipped");
    assert!(
        st.nodes[0]
            .message
            .starts_with("DrainBlocked: skipped: the drain timed out and spec.drain.onTimeout is SkipNode"),
        "{}",
        st.nodes[0].message
    );
    // Over, with the tolerated skip: terminal, never mistaken for done.
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::COMPLETED_WITH_FAILURES));
    assert!(message.contains("worker-000 (DrainBlocked at Drain)"), "{message}");
    assert_eq!(m.condition(condition::READY).0, "False");
}

#[test]
fn a_failed_job_halts_naming_node_component_and_reason_and_a_spec_change_retries() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.retries = 0;
    let mut m = Model::new(s, cluster(0, 3));
    for _ in 0..4 {
        for a in m.plan() {
            let outcome = match &a {
                Action::Step {
                    step: Step::Upgrade { .. },
                    ..
                } => Outcome::Failed {
                    reason: reason::UPGRADE_JOB_FAILED.into(),
                    message: "job drover-upgrade-x failed (BackoffLimitExceeded): apt: package not found".into(),
                },
                _ => Outcome::Done,
            };
            m.apply(&a, outcome);
        }
    }
    m.run(5);
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::UPGRADE_JOB_FAILED));
    assert!(message.contains("node worker-000 failed at Upgrade of containerd: job drover-upgrade-x failed (BackoffLimitExceeded): apt: package not found"), "{message}");
    assert!(
        message.contains("1 failed nodes exceed spec.strategy.maxFailures (0)"),
        "{message}"
    );
    assert!(
        !m.node("worker-000").unschedulable,
        "a failed node is not left cordoned"
    );
    assert_eq!(m.node("worker-001").progress, None, "nothing else started");

    // Fixing the spec (a new generation) retries the failed node.
    m.obs.generation = 2;
    m.run(30);
    assert_eq!(m.condition(condition::READY).0, "True");
}

#[test]
fn a_control_plane_failure_halts_even_within_max_failures() {
    let mut s = kube_spec("v1.32.0");
    s.strategy.max_failures = 5;
    s.strategy.retries = 0;
    let mut m = Model::new(s, cluster(3, 2));
    for _ in 0..8 {
        for a in m.plan() {
            let outcome = match &a {
                Action::Step {
                    step: Step::Verify { .. },
                    ..
                } => Outcome::Failed {
                    reason: reason::VERIFICATION_FAILED.into(),
                    message: "kube-apiserver reports v1.31.4, want v1.32.0".into(),
                },
                _ => Outcome::Done,
            };
            m.apply(&a, outcome);
        }
    }
    m.run(10);
    let (_, r, message) = m.condition(condition::STALLED);
    assert_eq!(r, reason::VERIFICATION_FAILED);
    assert!(message.contains("an etcd or control-plane node failed"), "{message}");
    assert!(m.node("cp-1").progress.is_none() && m.node("worker-000").progress.is_none());
}

#[test]
fn a_version_bump_mid_rollout_sends_waiting_workers_back() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    max_unavailable(&mut s, IntOrString::Int(2));
    let mut nodes = cluster(1, 4);
    nodes[0].versions.insert("containerd".into(), "1.7.23".into());
    let mut m = Model::new(s, nodes);
    for a in m.plan() {
        m.apply(&a, Outcome::Done);
    }
    for a in m.plan() {
        m.apply(&a, Outcome::Done); // the two workers are cordoned, now draining
    }
    assert_eq!(m.in_flight(), ["worker-000", "worker-001"]);
    // GitOps bumps containerd again: the control-plane node needs it first.
    m.spec.components[0].version = "1.7.24".into();
    m.obs.generation = 2;
    let actions = m.plan();
    let releases: Vec<_> = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Step {
                    step: Step::Uncordon { undo_cordon: true, .. },
                    transition,
                    ..
                } if transition.on_done.is_none()
            )
        })
        .filter_map(|a| a.node())
        .collect();
    assert_eq!(releases, ["worker-000", "worker-001"]);
    assert!(
        started(&actions).is_empty(),
        "cp-0 waits until the workers are handed back"
    );
    for a in actions {
        m.apply(&a, Outcome::Done);
    }
    assert_eq!(started(&m.plan()), ["cp-0"]);
    m.run(40);
    assert_eq!(m.condition(condition::READY).0, "True");
    assert!(
        m.obs
            .nodes
            .iter()
            .all(|n| n.versions["containerd"] == "1.7.24" && !n.unschedulable)
    );
}

#[test]
fn the_node_drover_runs_on_and_last_node_selector_go_last() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.last_node_selector = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        match_labels: Some([("tier".to_string(), "db".to_string())].into()),
        match_expressions: None,
    });
    let mut nodes = cluster(0, 4);
    nodes[0].labels.insert("tier".into(), "db".into());
    let mut m = Model::new(s, nodes);
    m.obs.self_node = Some("worker-001".into());
    let mut order = Vec::new();
    for _ in 0..40 {
        for a in m.plan() {
            order.extend(started(std::slice::from_ref(&a)));
            m.apply(&a, Outcome::Done);
        }
    }
    assert_eq!(order, ["worker-002", "worker-003", "worker-000", "worker-001"]);
}

#[test]
fn the_later_of_two_overlapping_upgrades_reports_conflict_and_touches_nothing() {
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), cluster(0, 3));
    m.obs.others = vec![OtherUpgrade {
        name: "aaa-older".into(),
        created: m.obs.created.checked_sub(jiff::SignedDuration::from_secs(60)).unwrap(),
        nodes: ["worker-001".to_string()].into(),
    }];
    assert!(m.plan().is_empty());
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::CONFLICT));
    assert!(
        message.contains("ClusterUpgrade aaa-older (older) also selects 1 of these nodes (worker-001)"),
        "{message}"
    );
    // The older one is not affected by the younger.
    m.obs.others[0].created = m.obs.created.checked_add(jiff::SignedDuration::from_secs(60)).unwrap();
    assert_eq!(started(&m.plan()), ["worker-000"]);
}

/// The backup every backup test uses: an etcd snapshot Job in kube-system.
fn backup_job() -> BackupJob {
    BackupJob {
        image: "example.com/etcd-backup:1".into(),
        command: vec![],
        args: vec![],
        env: vec![],
        namespace: "kube-system".into(),
        node_selector: Default::default(),
        host_root: true,
        timeout: "10m".into(),
    }
}

#[test]
fn backup_must_succeed_before_the_first_control_plane_change() {
    let mut s = kube_spec("v1.32.0");
    s.backup = Some(backup_job());
    let mut m = Model::new(s, cluster(1, 1));
    assert!(matches!(m.plan().as_slice(), [Action::RunBackup { .. }]));
    assert_eq!(m.condition(condition::RECONCILING).1, reason::BACKING_UP);
    m.set_backup(BackupState::Failed(
        "etcdctl snapshot save: context deadline exceeded".into(),
    ));
    assert!(m.plan().is_empty());
    let (_, r, message) = m.condition(condition::STALLED);
    assert_eq!(r, reason::BACKUP_FAILED);
    assert!(
        message.contains("the backup Job failed: etcdctl snapshot save: context deadline exceeded"),
        "{message}"
    );
    // It says how to run it again, as deleting_the_failed_backup_job_runs_it_again shows.
    assert!(
        message.contains("delete the failed Job, or change spec.backup or the target, to run it again"),
        "{message}"
    );
    m.set_backup(BackupState::Succeeded);
    assert_eq!(started(&m.plan()), ["cp-0"]);
    assert_eq!(m.status().backup.as_ref().unwrap().state, "Succeeded");
}

#[test]
fn a_changed_backup_spec_runs_a_new_backup_job_before_the_next_control_plane_change() {
    let mut s = kube_spec("v1.32.0");
    s.backup = Some(backup_job());
    let mut m = Model::new(s, cluster(2, 0));
    let hash_of = |actions: &[Action]| match actions {
        [Action::RunBackup { backup_hash }] => backup_hash.clone(),
        other => panic!("expected only the backup, got {other:?}"),
    };
    let first = hash_of(&m.plan());
    let first_job = m.status().backup.as_ref().unwrap().job.clone();
    assert!(first_job.ends_with(&first), "{first_job}");
    m.set_backup(BackupState::Succeeded);
    assert_eq!(started(&m.plan()), ["cp-0"]);
    // Each field of what the Job runs names a new Job; the target alone did before.
    let base = m.spec.backup.clone().unwrap();
    let variants: Vec<(&str, BackupJob)> = vec![
        (
            "image",
            BackupJob {
                image: "example.com/etcd-backup:2".into(),
                ..base.clone()
            },
        ),
        (
            "command",
            BackupJob {
                command: vec!["/bin/backup".into()],
                ..base.clone()
            },
        ),
        (
            "args",
            BackupJob {
                args: vec!["--to=s3://b".into()],
                ..base.clone()
            },
        ),
        (
            "env",
            BackupJob {
                env: vec![EnvVar {
                    name: "BUCKET".into(),
                    value: "b".into(),
                }],
                ..base.clone()
            },
        ),
        (
            "namespace",
            BackupJob {
                namespace: "backups".into(),
                ..base.clone()
            },
        ),
        (
            "nodeSelector",
            BackupJob {
                node_selector: [("etcd".to_string(), "yes".to_string())].into(),
                ..base.clone()
            },
        ),
        (
            "hostRoot",
            BackupJob {
                host_root: false,
                ..base.clone()
            },
        ),
        (
            "timeout",
            BackupJob {
                timeout: "20m".into(),
                ..base.clone()
            },
        ),
    ];
    let mut seen = std::collections::BTreeSet::from([first.clone()]);
    for (field, b) in variants {
        let mut spec = m.spec.clone();
        spec.backup = Some(b);
        assert!(
            seen.insert(drover_api::names::backup_hash(&spec)),
            "changing spec.backup.{field} does not change the backup Job's name"
        );
    }
    // The image changes before the first node started: nothing starts until the new Job succeeds.
    m.spec.backup.as_mut().unwrap().image = "example.com/etcd-backup:2".into();
    m.obs.generation += 1;
    let mut ran = Vec::new();
    for _ in 0..20 {
        for a in m.plan() {
            if let Action::RunBackup { backup_hash } = &a {
                ran.push(backup_hash.clone());
                continue; // the new Job runs, not yet done
            }
            assert!(
                !matches!(&a, Action::Start { .. }),
                "{a:?} before the new backup Job succeeded"
            );
            m.apply(&a, Outcome::Done);
        }
        m.tick(1);
    }
    let second = ran.last().expect("a new backup Job is asked for").clone();
    assert_ne!(second, first);
    assert!(ran.iter().all(|h| *h == second), "{ran:?}");
    let st = m.status().backup.clone().unwrap();
    assert_ne!(st.job, first_job, "status names the new Job");
    assert_eq!(st.state, "Pending");
    assert_eq!(m.condition(condition::RECONCILING).1, reason::BACKING_UP);
    m.set_backup(BackupState::Succeeded);
    assert_eq!(started(&m.plan()), ["cp-0"]);
    // The old Job's success does not count for the new spec.
    m.obs.backups.clear();
    m.obs.backups.insert(first_job, BackupState::Succeeded);
    assert!(matches!(m.plan().as_slice(), [Action::RunBackup { .. }]));
}

#[test]
fn workloads_follow_the_control_plane_and_addons_come_last() {
    let s = spec(vec![
        workload("coredns", "1.11.3", WorkloadKind::Deployment),
        job("containerd", "1.7.23"),
        workload("calico", "v3.29.0", WorkloadKind::DaemonSet),
    ]);
    let mut m = Model::new(s, cluster(1, 2));
    let mut log = Vec::new();
    for _ in 0..60 {
        for a in m.plan() {
            match &a {
                Action::Start { node, .. } => log.push(node.clone()),
                Action::UpgradeWorkload { component, .. } if log.last() != Some(component) => {
                    log.push(component.clone())
                }
                _ => {}
            }
            m.apply(&a, Outcome::Done);
        }
    }
    assert_eq!(log, ["cp-0", "calico", "worker-000", "worker-001", "coredns"]);
    assert_eq!(m.condition(condition::READY).0, "True");
}

#[test]
fn a_component_of_several_workloads_counts_them_and_names_the_one_lagging() {
    let s = spec(vec![workload("calico", "v3.29.0", WorkloadKind::DaemonSet)]);
    let mut m = Model::new(s, cluster(1, 1));
    let lagging =
        "Deployment kube-system/calico-kube-controllers: rolling out v3.29.0, 0 of 1 replicas updated, 0 available";
    m.obs.workloads.insert(
        "calico".into(),
        ObservedWorkload {
            version: Some("v3.28.1".into()),
            rolled_out: false,
            failed: None,
            updated: 1,
            total: 2,
            lagging: Some(lagging.into()),
        },
    );
    let actions = m.plan();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::UpgradeWorkload { component, .. } if component == "calico"))
    );
    let c = &m.status().components[0];
    assert_eq!((c.updated, c.total, c.message.as_deref()), (1, 2, Some(lagging)));
    // Done: both counted, no message.
    let w = m.obs.workloads.get_mut("calico").unwrap();
    (w.version, w.rolled_out, w.updated, w.lagging) = (Some("v3.29.0".into()), true, 2, None);
    m.plan();
    let c = &m.status().components[0];
    assert_eq!((c.updated, c.total, c.message.as_deref()), (2, 2, None));
    assert_eq!(m.condition(condition::READY).0, "True");
}

#[test]
fn all_at_once_skips_cordon_and_drain_but_keeps_the_control_plane_serial() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.type_ = StrategyType::AllAtOnce;
    let mut m = Model::new(s, cluster(2, 5));
    let mut cordons = 0;
    for _ in 0..40 {
        let actions = m.plan();
        let st = started(&actions);
        if st.iter().any(|n| n.starts_with("worker")) {
            assert_eq!(st.len(), 5, "every worker starts at once");
        }
        for a in actions {
            if matches!(
                a,
                Action::Step {
                    step: Step::Cordon | Step::Drain,
                    ..
                }
            ) {
                cordons += 1;
            }
            assert!(m.in_flight().iter().filter(|n| n.starts_with("cp")).count() <= 1);
            m.apply(&a, Outcome::Done);
        }
    }
    assert_eq!(cordons, 0);
    assert_eq!(m.condition(condition::READY).0, "True");
}

#[test]
fn a_steady_state_keeps_last_transition_time() {
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), cluster(0, 1));
    m.run(10);
    let before = m.status().clone();
    m.tick(30);
    m.plan();
    assert_eq!(m.status(), &before, "nothing changes when nothing happened");
}

#[test]
fn history_records_a_superseded_and_a_completed_rollout() {
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), cluster(0, 2));
    m.run(20);
    assert_eq!(m.condition(condition::READY).0, "True");
    m.spec.components[0].version = "1.7.24".into();
    m.obs.generation = 2;
    m.run(1);
    m.spec.components[0].version = "1.7.25".into();
    m.obs.generation = 3;
    m.run(1);
    let h = &m.status().history;
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[0].target.as_str(), h[0].result.as_str()),
        ("containerd=1.7.24", "Superseded")
    );
    assert_eq!(
        (h[1].target.as_str(), h[1].result.as_str()),
        ("containerd=1.7.23", "Completed")
    );
}

#[test]
fn status_stays_small_with_ten_thousand_nodes() {
    let mut s = spec(vec![job("containerd", "1.7.23"), job("kubelet", "v1.31.5")]);
    s.strategy.max_unavailable = IntOrString::String("10%".into());
    let mut m = Model::new(s, cluster(3, 10_000));
    m.run(12);
    let bytes = serde_json::to_vec(m.status()).unwrap().len();
    assert!(m.status().counts.updating > 0 || m.status().counts.updated > 0);
    assert!(m.status().nodes.len() <= MAX_NODE_DETAILS);
    let st = m.status();
    assert_eq!(
        st.nodes_omitted,
        st.counts.updating + st.counts.failed - st.nodes.len() as i32,
        "every node in progress or failed is listed or counted"
    );
    assert!(bytes < 64 * 1024, "status is {bytes} bytes");
}

#[test]
fn target_and_progress_feed_the_printer_columns() {
    let mut m = Model::new(
        spec(vec![job("containerd", "1.7.23"), job("kubelet", "v1.31.5")]),
        cluster(1, 2),
    );
    m.plan();
    let st = m.status();
    assert_eq!(st.target.as_deref(), Some("containerd=1.7.23,kubelet=v1.31.5"));
    assert_eq!(st.progress.as_deref(), Some("0/3"));
    assert_eq!(st.stage.as_deref(), Some("EtcdMembers"));
    assert_eq!(st.components[1].total, 3);
}

/// Each condition says what it owns: no two carry the same message, and
/// none is a Debug dump, in each state a rollout passes through.
#[test]
fn each_condition_says_what_it_owns_in_human_text() {
    fn check(m: &Model, when: &str) {
        let msgs: Vec<String> = [condition::READY, condition::RECONCILING, condition::STALLED]
            .iter()
            .map(|c| m.condition(c).2)
            .collect();
        for (i, a) in msgs.iter().enumerate() {
            assert!(!a.is_empty(), "{when}: an empty message in {msgs:#?}");
            for pat in ["{ ", "Some(", "Error {", "Api(", "\\\""] {
                assert!(!a.contains(pat), "{when}: {a:?} looks like a Debug dump");
            }
            for b in &msgs[i + 1..] {
                assert_ne!(a, b, "{when}: two conditions repeat one message");
            }
        }
    }
    // Refused.
    let mut bad = spec(vec![job("containerd", "latest")]);
    bad.strategy.soak = "10m".into();
    let mut refused = Model::new(bad, cluster(0, 2));
    assert!(refused.plan().is_empty());
    check(&refused, "refused");
    // Rolling, soaking, blocked, stalled, complete.
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.drain.timeout = "1m".into();
    let mut m = Model::new(s, cluster(0, 2));
    let drain = drive_to_drain(&mut m);
    check(&m, "rolling");
    let blocked = "evicting default/web-0: blocked by PodDisruptionBudget default/web (0 disruptions allowed)";
    m.apply(
        &drain,
        Outcome::Blocked {
            message: blocked.into(),
            timed_out: false,
        },
    );
    m.plan();
    check(&m, "drain blocked");
    m.apply(
        &drain,
        Outcome::Blocked {
            message: blocked.into(),
            timed_out: true,
        },
    );
    m.plan();
    assert_eq!(m.condition(condition::STALLED).0, "True");
    check(&m, "stalled");
    let mut p = spec(vec![job("containerd", "1.7.23")]);
    p.paused = true;
    let mut paused = Model::new(p, cluster(0, 2));
    assert!(paused.plan().is_empty());
    check(&paused, "paused");
    let mut done = Model::new(spec(vec![job("containerd", "1.7.23")]), cluster(0, 1));
    for _ in 0..8 {
        for a in done.plan() {
            done.apply(&a, Outcome::Done);
        }
    }
    assert_eq!(done.condition(condition::READY).0, "True");
    check(&done, "complete");
}

#[test]
fn a_record_of_a_newer_format_is_left_alone_and_nothing_new_starts() {
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), cluster(0, 3));
    let w = m.obs.nodes.iter_mut().find(|n| n.name == "worker-001").unwrap();
    // A newer drover took it and cordoned it under this ClusterUpgrade's name.
    w.newer_record = Some(99);
    w.cordoned_by = Some(CU.into());
    w.unschedulable = true;
    let actions = m.plan();
    assert!(
        actions.is_empty(),
        "the node is left alone and nothing starts: {actions:?}"
    );
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::NEWER_RECORD));
    assert!(
        message.contains("node worker-001 carries a progress record of format v99, written by a newer drover (this one reads up to v2)"),
        "{message}"
    );
    assert!(
        message.contains("remove the node's drover.dev/progress annotation"),
        "{message}"
    );
    assert_eq!(m.status().counts.pending, 3);
    // The annotation removed (the newer drover's work is over): it goes on.
    let w = m.obs.nodes.iter_mut().find(|n| n.name == "worker-001").unwrap();
    w.newer_record = None;
    w.unschedulable = false;
    w.cordoned_by = None;
    assert_eq!(started(&m.plan()), ["worker-000"]);
}

#[test]
fn a_namespace_whose_pod_security_refuses_the_jobs_holds_before_the_first_node() {
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), cluster(0, 2));
    m.obs.job_pods_refused = Some(PodsRefused {
        namespace: "drover-system".into(),
        message: "pods \"x\" is forbidden: violates PodSecurity \"baseline:latest\": privileged (container \"upgrade\" must not set securityContext.privileged=true)".into(),
    });
    assert!(m.plan().is_empty());
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::POD_SECURITY_FORBIDS));
    for part in [
        "the API server would refuse the upgrade Jobs' pods in namespace drover-system",
        "violates PodSecurity \"baseline:latest\"",
        "kubectl label namespace drover-system pod-security.kubernetes.io/enforce=privileged --overwrite",
        "--namespace",
    ] {
        assert!(message.contains(part), "no {part:?} in {message}");
    }
    m.obs.job_pods_refused = None;
    assert_eq!(started(&m.plan()), ["worker-000"]);
    // With nothing left to start, a refusal holds nothing.
    m.run(30);
    assert_eq!(m.condition(condition::READY).0, "True");
    m.obs.job_pods_refused = Some(PodsRefused {
        namespace: "drover-system".into(),
        message: "refused".into(),
    });
    assert_eq!(m.condition(condition::READY).0, "True");
    m.plan();
    assert_eq!(m.condition(condition::READY).0, "True");
}

// ---- Documented behaviours the docs audit found untested (docs-audit.md §1).

/// Every step a plan asks for, by name ("Start" for a node's start).
fn step_names(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { .. } => Some("Start".to_string()),
            Action::Step { step, .. } => Some(step.name().to_string()),
            _ => None,
        })
        .collect()
}

/// user-guide.md "only when every member of their group is Ready";
/// api.md "every member of its group is Ready …; otherwise `NodeNotReady`".
#[test]
fn a_not_ready_member_holds_its_etcd_or_control_plane_group_with_node_not_ready() {
    // Stacked members (etcd and control plane): cp-2 NotReady holds the etcd group.
    let mut nodes = cluster(3, 2);
    nodes[2].ready = false;
    let mut m = Model::new(kube_spec("v1.32.0"), nodes);
    for _ in 0..3 {
        let actions = m.plan();
        assert!(actions.is_empty(), "nothing starts while cp-2 is NotReady: {actions:?}");
        m.tick(1);
    }
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::NODE_NOT_READY));
    assert!(
        message.contains("1 node is NotReady (cp-2); no other etcd node starts until every member is Ready"),
        "{message}"
    );
    assert!(m.obs.nodes.iter().all(|n| n.progress.is_none()));
    // Ready again: the group goes on, one at a time.
    m.obs.nodes[2].ready = true;
    assert_eq!(started(&m.plan()), ["cp-0"]);

    // A control-plane group without etcd labels: the same rule.
    let old = [("kube-apiserver", "v1.31.4"), ("kubelet", "v1.31.4")];
    let mut nodes = vec![
        node("cp-a", Role::ControlPlane, &old),
        node("cp-b", Role::ControlPlane, &old),
        node("worker-000", Role::Worker, &old[1..]),
    ];
    nodes[1].ready = false;
    let mut m = Model::new(kube_spec("v1.32.0"), nodes);
    assert!(m.plan().is_empty());
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::NODE_NOT_READY));
    assert!(
        message.contains("1 node is NotReady (cp-b); no other control-plane node starts until every member is Ready"),
        "{message}"
    );
}

/// user-guide.md "`node-role.kubernetes.io/control-plane` or `…/master` (control plane)".
#[test]
fn a_node_labelled_only_master_is_upgraded_alone_as_control_plane_before_any_worker() {
    let old = [("kube-apiserver", "v1.31.4"), ("kubelet", "v1.31.4")];
    let mut master = node("master-0", Role::Worker, &old);
    master
        .labels
        .insert(drover_api::names::label::ROLE_MASTER.to_string(), String::new());
    let mut nodes = vec![master];
    for i in 0..3 {
        nodes.push(node(&format!("worker-{i:03}"), Role::Worker, &old[1..]));
    }
    let mut s = kube_spec("v1.32.0");
    max_unavailable(&mut s, IntOrString::Int(3));
    let mut m = Model::new(s, nodes);
    let mut order = Vec::new();
    let mut apiserver_on = Vec::new();
    for _ in 0..60 {
        for a in m.plan() {
            match &a {
                Action::Start { node, .. } => order.push(node.clone()),
                Action::Step {
                    node,
                    step: Step::Upgrade { component, .. },
                    ..
                } if component == "kube-apiserver" => apiserver_on.push(node.clone()),
                _ => {}
            }
            m.apply(&a, Outcome::Done);
        }
        let flying = m.in_flight();
        if flying.iter().any(|n| n == "master-0") {
            assert_eq!(flying, ["master-0"], "a control-plane node goes alone");
        }
        m.tick(1);
    }
    assert_eq!(order[0], "master-0", "{order:?}");
    assert_eq!(order.len(), 4, "{order:?}");
    assert_eq!(apiserver_on, ["master-0"], "kube-apiserver targets the control plane");
    assert_eq!(m.condition(condition::READY).0, "True");
}

/// user-guide.md "A node leaving the selector is handed back"; api.md
/// "A node drover holds that leaves the selector … is handed back".
#[test]
fn a_node_leaving_the_node_selector_is_handed_back() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.node_selector = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        match_labels: Some([("pool".to_string(), "a".to_string())].into()),
        match_expressions: None,
    });
    let mut nodes = cluster(0, 3);
    for n in &mut nodes {
        n.labels.insert("pool".into(), "a".into());
    }
    let mut m = Model::new(s, nodes);
    drive_to_drain(&mut m);
    assert_eq!(m.status().counts.in_scope, 3);
    assert!(m.node("worker-000").unschedulable);
    // Someone relabels the node mid-drain.
    m.obs.nodes[0].labels.remove("pool");
    let actions = m.plan();
    let back: Vec<&Action> = actions.iter().filter(|a| a.node() == Some("worker-000")).collect();
    assert!(
        matches!(
            back.as_slice(),
            [Action::Step {
                step: Step::Uncordon { undo_cordon: true, .. },
                transition,
                ..
            }] if transition.on_done.is_none()
        ),
        "{back:?}"
    );
    assert_eq!(m.status().counts.in_scope, 2);
    for a in &actions {
        m.apply(a, Outcome::Done);
    }
    let n = m.node("worker-000");
    assert!(!n.unschedulable && n.cordoned_by.is_none(), "uncordoned");
    assert!(n.progress.is_none(), "its record is removed");
    assert_eq!(n.versions["containerd"], "1.7.22");
    // The rest goes on without it.
    m.run(30);
    assert_eq!(m.condition(condition::READY).0, "True");
    assert_eq!(m.node("worker-000").versions["containerd"], "1.7.22");
    assert!(m.node("worker-000").progress.is_none());
}

/// user-guide.md "enabled: true # false: cordon only".
#[test]
fn drain_disabled_cordons_but_does_not_drain() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.drain.enabled = false;
    let mut m = Model::new(s, cluster(0, 1));
    let mut steps = Vec::new();
    for _ in 0..10 {
        let actions = m.plan();
        steps.extend(step_names(&actions));
        for a in &actions {
            m.apply(a, Outcome::Done);
        }
    }
    assert_eq!(steps, ["Start", "Cordon", "Upgrade", "Verify", "Uncordon"]);
    let n = m.node("worker-000");
    assert!(!n.unschedulable && n.cordoned_by.is_none());
    assert_eq!(n.versions["containerd"], "1.7.23");
    assert_eq!(m.condition(condition::READY).0, "True");
}

/// api.md "at most 50, the rest counted in `nodesOmitted`".
#[test]
fn nodes_beyond_fifty_are_counted_in_nodes_omitted() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    max_unavailable(&mut s, IntOrString::Int(70));
    let mut m = Model::new(s, cluster(0, 100));
    let actions = m.plan();
    assert_eq!(started(&actions).len(), 70);
    for a in &actions {
        m.apply(a, Outcome::Done);
    }
    m.plan();
    let st = m.status();
    assert_eq!((st.counts.updating, st.counts.failed), (70, 0));
    assert_eq!(st.nodes.len(), MAX_NODE_DETAILS);
    assert_eq!(st.nodes_omitted, 20);
}

/// user-guide.md "`status.history` keeps the last ten rollouts"; api.md
/// "`history[]` … the last ten".
#[test]
fn history_keeps_the_last_ten_rollouts_newest_first() {
    let version = |i: usize| format!("1.7.{}", 23 + i);
    let mut m = Model::new(spec(vec![job("containerd", &version(0))]), cluster(0, 1));
    m.run(1);
    for i in 1..=12 {
        m.spec.components[0].version = version(i);
        m.obs.generation = 1 + i as i64;
        m.run(1);
    }
    let h = &m.status().history;
    assert_eq!(h.len(), 10);
    let targets: Vec<&str> = h.iter().map(|r| r.target.as_str()).collect();
    let want: Vec<String> = (2..=11).rev().map(|i| format!("containerd={}", version(i))).collect();
    assert_eq!(targets, want, "newest first, the two oldest dropped");
    assert_eq!(m.status().target.as_deref(), Some("containerd=1.7.35"));
}

/// user-guide.md "Worker-only rollouts do not run the backup".
#[test]
fn a_worker_only_rollout_runs_no_backup() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.backup = Some(backup_job());
    // Only workers (none with etcd or control plane), and workers with the
    // control-plane node already at the target.
    for nodes in [cluster(0, 2), {
        let mut n = cluster(1, 2);
        n[0].versions.insert("containerd".into(), "1.7.23".into());
        n
    }] {
        let mut m = Model::new(s.clone(), nodes);
        for _ in 0..20 {
            let actions = m.plan();
            assert!(
                !actions.iter().any(|a| matches!(a, Action::RunBackup { .. })),
                "{actions:?}"
            );
            assert_ne!(m.condition(condition::RECONCILING).1, reason::BACKING_UP);
            for a in &actions {
                m.apply(a, Outcome::Done);
            }
            m.tick(1);
        }
        m.plan();
        assert_eq!(m.condition(condition::READY).0, "True");
        assert!(m.obs.backups.is_empty());
    }
}

/// user-guide.md "other spec fields, such as `strategy`, do not run it
/// again"; status-reasons.md "Other spec changes do not rerun it."
#[test]
fn a_strategy_change_does_not_rerun_the_backup() {
    let mut s = kube_spec("v1.32.0");
    s.backup = Some(backup_job());
    let mut m = Model::new(s, cluster(2, 1));
    assert!(matches!(m.plan().as_slice(), [Action::RunBackup { .. }]));
    m.set_backup(BackupState::Succeeded);
    assert_eq!(started(&m.plan()), ["cp-0"]);
    let hash = drover_api::names::backup_hash(&m.spec);
    // Strategy, drain, windows and pause change; the target and spec.backup do not.
    let mut changed = m.spec.clone();
    changed.strategy.soak = "10m".into();
    changed.strategy.max_unavailable = IntOrString::Int(3);
    changed.strategy.max_failures = 2;
    changed.strategy.retries = 5;
    changed.drain.timeout = "30m".into();
    changed.windows = vec![MaintenanceWindow {
        days: vec![],
        start: "00:00".into(),
        end: "23:59".into(),
        time_zone: "UTC".into(),
    }];
    assert_eq!(drover_api::names::backup_hash(&changed), hash);
    m.spec = changed;
    m.obs.generation = 2;
    for _ in 0..60 {
        let actions = m.plan();
        assert!(
            !actions.iter().any(|a| matches!(a, Action::RunBackup { .. })),
            "a strategy change ran the backup again: {actions:?}"
        );
        for a in &actions {
            m.apply(a, Outcome::Done);
        }
        m.tick(1);
    }
    m.plan();
    assert_eq!(m.condition(condition::READY).0, "True");
    assert_eq!(m.obs.backups.len(), 1, "{:?}", m.obs.backups);
}

/// user-guide.md "Delete the failed Job … to run it again".
#[test]
fn deleting_the_failed_backup_job_runs_it_again() {
    let mut s = kube_spec("v1.32.0");
    s.backup = Some(backup_job());
    let mut m = Model::new(s, cluster(1, 1));
    let first = match m.plan().as_slice() {
        [Action::RunBackup { backup_hash }] => backup_hash.clone(),
        other => panic!("{other:?}"),
    };
    m.set_backup(BackupState::Failed("snapshot failed".into()));
    assert!(m.plan().is_empty());
    assert_eq!(m.condition(condition::STALLED).1, reason::BACKUP_FAILED);
    // The admin deletes the failed Job: it is no longer observed.
    m.obs.backups.clear();
    match m.plan().as_slice() {
        [Action::RunBackup { backup_hash }] => assert_eq!(*backup_hash, first, "the same Job again"),
        other => panic!("expected the backup to run again, got {other:?}"),
    }
    assert_eq!(m.condition(condition::RECONCILING).1, reason::BACKING_UP);
    assert_eq!(m.condition(condition::STALLED).0, "False");
    m.set_backup(BackupState::Succeeded);
    assert_eq!(started(&m.plan()), ["cp-0"]);
}

/// api.md "`kube-apiserver` never skips a minor version, nor changes major version".
#[test]
fn api_server_may_not_change_major_version() {
    let s = spec(vec![job("kube-apiserver", "v2.0.0")]);
    let message = refused_with(s, cluster(1, 0));
    assert!(
        message.contains("kube-apiserver v2.0: a change of major version (from v1.31 on cp-0) is not supported"),
        "{message}"
    );
}

/// api.md "`kube-controller-manager` and `kube-scheduler` never newer".
#[test]
fn scheduler_and_controller_manager_may_not_be_newer_than_the_api_server() {
    for name in ["kube-scheduler", "kube-controller-manager"] {
        let message = refused_with(spec(vec![job(name, "v1.32.0")]), cluster(1, 0));
        assert!(
            message.contains(&format!(
                "{name} v1.32: newer than kube-apiserver v1.31; the skew policy allows {name} up to 1 minor versions older than the API server, never newer"
            )),
            "{message}"
        );
    }
}

/// api.md "`kubelet` and `kube-proxy` never newer than the API server … and
/// at most three minors older; … of components the spec does not name, must
/// fit the new API server too".
#[test]
fn kube_proxy_follows_the_kubelet_rules() {
    // Newer than the API server.
    let message = refused_with(spec(vec![job("kube-proxy", "v1.32.0")]), cluster(1, 1));
    assert!(
        message.contains("kube-proxy v1.32: newer than kube-apiserver v1.31"),
        "{message}"
    );
    // Four minors older than the new API server, in the spec.
    let s = spec(vec![job("kube-apiserver", "v1.32.0"), job("kube-proxy", "v1.28.0")]);
    let mut nodes = cluster(1, 1);
    for n in &mut nodes {
        n.versions.insert("kube-proxy".into(), "v1.27.3".into());
    }
    let message = refused_with(s, nodes);
    assert!(
        message.contains("kube-proxy v1.28: more than 3 minor versions older than kube-apiserver v1.32"),
        "{message}"
    );
    // Left behind: not in the spec, and four minors older than the new API server.
    let mut nodes = cluster(1, 1);
    nodes[1].versions.insert("kube-proxy".into(), "v1.28.9".into());
    let message = refused_with(spec(vec![job("kube-apiserver", "v1.32.0")]), nodes);
    assert!(
        message.contains("kube-proxy v1.28 on worker-000 would be more than 3 minor versions older than kube-apiserver v1.32; add kube-proxy to spec.components"),
        "{message}"
    );
    // Three minors older is allowed.
    let mut nodes = cluster(1, 1);
    nodes[1].versions.insert("kube-proxy".into(), "v1.29.9".into());
    let mut m = Model::new(spec(vec![job("kube-apiserver", "v1.32.0")]), nodes);
    let _ = m.plan();
    assert_ne!(m.condition(condition::STALLED).1, reason::SKEW_VIOLATION);
}

/// api.md "versions running on nodes the spec does not reach … must fit the new API server too".
#[test]
fn kubelets_outside_the_node_selector_must_fit_the_new_api_server() {
    let mut s = kube_spec("v1.32.0");
    s.node_selector = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        match_labels: Some([("pool".to_string(), "a".to_string())].into()),
        match_expressions: None,
    });
    let mut nodes = cluster(1, 2);
    nodes[0].labels.insert("pool".into(), "a".into());
    nodes[1].labels.insert("pool".into(), "a".into());
    nodes[2].versions.insert("kubelet".into(), "v1.28.9".into());
    let message = refused_with(s, nodes);
    assert!(
        message.contains("kubelet v1.28 on worker-001 (outside spec.nodeSelector) would be more than 3 minor versions older than kube-apiserver v1.32"),
        "{message}"
    );
}

/// api.md "no version lower than one a targeted node (or the workload) runs".
#[test]
fn a_workload_version_lower_than_it_runs_is_a_downgrade() {
    let s = spec(vec![workload("calico", "v3.28.0", WorkloadKind::DaemonSet)]);
    let mut m = Model::new(s.clone(), cluster(1, 1));
    m.obs.workloads.insert(
        "calico".into(),
        ObservedWorkload {
            version: Some("v3.29.0".into()),
            rolled_out: true,
            failed: None,
            updated: 1,
            total: 1,
            lagging: None,
        },
    );
    let actions = m.plan();
    assert!(actions.is_empty(), "{actions:?}");
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::SKEW_VIOLATION));
    assert!(
        message.contains("spec.components[0].version: calico v3.28.0 is older than the v3.29.0 its workload runs now; downgrades need spec.versionPolicy.allowDowngrade: true"),
        "{message}"
    );
    // Allowed, it rolls out.
    let mut allowed = s;
    allowed.version_policy.allow_downgrade = true;
    m.spec = allowed;
    assert!(m.plan().iter().any(
        |a| matches!(a, Action::UpgradeWorkload { component, version } if component == "calico" && version == "v3.28.0")
    ));
}

/// user-guide.md "lets the nodes in an upgrade finish the component in hand,
/// then runs the earlier stage first"; api.md "nodes in an upgrade finish
/// the component in hand and are then handed back".
#[test]
fn a_version_bump_mid_rollout_lets_an_upgrading_worker_finish_its_component_then_hands_it_back() {
    let mut s = spec(vec![job("containerd", "1.7.23"), job("kubelet", "v1.31.5")]);
    max_unavailable(&mut s, IntOrString::Int(2));
    let mut nodes = cluster(1, 3);
    nodes[0].versions.insert("containerd".into(), "1.7.23".into());
    nodes[0].versions.insert("kubelet".into(), "v1.31.5".into());
    let mut m = Model::new(s, nodes);
    // worker-000's drain finishes (it is upgrading containerd); worker-001 still drains.
    for _ in 0..3 {
        for a in m.plan() {
            let outcome = match &a {
                Action::Step {
                    node,
                    step: Step::Drain,
                    ..
                } if node == "worker-001" => Outcome::Waiting {
                    message: "1 pod terminating".into(),
                },
                _ => Outcome::Done,
            };
            m.apply(&a, outcome);
        }
    }
    let phase = |m: &Model, n: &str| m.node(n).progress.as_ref().map(|p| p.phase);
    assert_eq!(phase(&m, "worker-000"), Some(NodePhase::Upgrading));
    assert_eq!(
        m.node("worker-000").progress.as_ref().unwrap().component.as_deref(),
        Some("containerd")
    );
    assert_eq!(phase(&m, "worker-001"), Some(NodePhase::Draining));
    // GitOps bumps containerd: the control-plane node needs it first.
    m.spec.components[0].version = "1.7.24".into();
    m.obs.generation = 2;
    let mut log: Vec<(String, String)> = Vec::new();
    let mut cp_started_after = None;
    for round in 0..10 {
        let actions = m.plan();
        for a in &actions {
            match a {
                Action::Start { node, .. } if node == "cp-0" => {
                    cp_started_after.get_or_insert(round);
                    assert!(
                        m.in_flight().is_empty(),
                        "cp-0 starts with workers in flight: {:?}",
                        m.in_flight()
                    );
                }
                Action::Step { node, step, .. } if node.starts_with("worker") => {
                    let what = match step {
                        Step::Upgrade { component, .. } | Step::Verify { component, .. } => {
                            format!("{} {component}", step.name())
                        }
                        _ => step.name().to_string(),
                    };
                    log.push((node.clone(), what));
                }
                _ => {}
            }
            m.apply(a, Outcome::Done);
        }
        if cp_started_after.is_some() {
            break;
        }
    }
    let of = |n: &str| -> Vec<&str> {
        log.iter()
            .filter(|(node, _)| node == n)
            .map(|(_, s)| s.as_str())
            .collect()
    };
    assert_eq!(of("worker-001"), ["Uncordon"], "a draining node is handed back at once");
    assert_eq!(
        of("worker-000"),
        ["Upgrade containerd", "Verify containerd", "Uncordon"],
        "the upgrading node finishes containerd, does not start kubelet, and is handed back"
    );
    assert!(cp_started_after.is_some(), "cp-0 starts once the workers are back");
    let w = m.node("worker-000");
    assert!(!w.unschedulable && w.cordoned_by.is_none());
    assert_eq!(
        w.versions["containerd"], "1.7.24",
        "the component in hand finishes at the spec's new version"
    );
    assert_eq!(w.versions["kubelet"], "v1.31.4", "kubelet was not started");
    assert_ne!(m.status().counts.updated, 4);
    // The rest of the rollout completes.
    m.run(60);
    assert_eq!(m.condition(condition::READY).0, "True");
    assert!(
        m.obs
            .nodes
            .iter()
            .all(|n| n.versions["containerd"] == "1.7.24" && n.versions["kubelet"] == "v1.31.5" && !n.unschedulable)
    );
}

/// api.md "`components[].nodes` … `EtcdMembers` (Etcd), `ControlPlane`
/// (ControlPlane), else `All`; also `Workers`".
#[test]
fn components_nodes_overrides_which_nodes_a_component_reaches() {
    // kubelet, by default on All, only on the workers.
    let mut kubelet = job("kubelet", "v1.31.5");
    kubelet.nodes = Some(NodeTarget::Workers);
    let mut m = Model::new(spec(vec![kubelet]), cluster(1, 2));
    let mut starts = Vec::new();
    for _ in 0..30 {
        for a in m.plan() {
            starts.extend(started(std::slice::from_ref(&a)));
            m.apply(&a, Outcome::Done);
        }
    }
    assert_eq!(starts, ["worker-000", "worker-001"]);
    assert_eq!(m.node("cp-0").versions["kubelet"], "v1.31.4");
    let c = &m.status().components[0];
    assert_eq!((c.updated, c.total), (2, 2));
    assert_eq!(m.condition(condition::READY).0, "True");
    // containerd, by default on All, only on the control plane.
    let mut containerd = job("containerd", "1.7.23");
    containerd.nodes = Some(NodeTarget::ControlPlane);
    let mut m = Model::new(spec(vec![containerd]), cluster(1, 2));
    m.run(30);
    assert_eq!(m.node("cp-0").versions["containerd"], "1.7.23");
    assert!(
        m.obs.nodes[1..]
            .iter()
            .all(|n| n.versions["containerd"] == "1.7.22" && n.progress.is_none())
    );
    let c = &m.status().components[0];
    assert_eq!((c.updated, c.total), (1, 1));
    assert_eq!(m.condition(condition::READY).0, "True");
}

/// api.md "`strategy.soak` … wait after each etcd/control-plane node and each worker batch".
#[test]
fn soak_time_follows_each_control_plane_node() {
    let mut s = kube_spec("v1.32.0");
    s.strategy.soak = "10m".into();
    let mut m = Model::new(s, cluster(2, 0));
    let mut starts = Vec::new();
    for _ in 0..20 {
        let actions = m.plan();
        starts.extend(started(&actions));
        for a in &actions {
            m.apply(a, Outcome::Done);
        }
        if m.node("cp-0")
            .progress
            .as_ref()
            .is_some_and(|p| p.phase == NodePhase::Done)
        {
            break;
        }
    }
    assert_eq!(starts, ["cp-0"]);
    let done_at = m.obs.now;
    for _ in 0..9 {
        assert!(started(&m.plan()).is_empty(), "cp-1 starts during the soak");
        m.tick(1);
    }
    let (_, r, message) = m.condition(condition::RECONCILING);
    assert_eq!(r, reason::SOAKING);
    assert!(
        message.contains(&format!(
            "soaking after the last node for spec.strategy.soak (10m) until {}",
            done_at.checked_add(jiff::SignedDuration::from_mins(10)).unwrap()
        )),
        "{message}"
    );
    m.tick(1);
    assert_eq!(started(&m.plan()), ["cp-1"]);
}

/// api.md "`paused` … no new node starts; nodes in progress finish";
/// user-guide.md "Paused: no new node starts, nodes in flight finish".
#[test]
fn paused_with_a_node_in_flight_lets_it_finish_and_starts_nothing_new() {
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), cluster(0, 3));
    drive_to_drain(&mut m);
    assert_eq!(
        m.node("worker-000").progress.as_ref().unwrap().phase,
        NodePhase::Draining
    );
    m.spec.paused = true;
    m.obs.generation = 2;
    let mut steps = Vec::new();
    for _ in 0..20 {
        let actions = m.plan();
        assert!(
            started(&actions).is_empty(),
            "a new node started while paused: {actions:?}"
        );
        steps.extend(step_names(&actions));
        for a in &actions {
            m.apply(a, Outcome::Done);
        }
        m.tick(1);
    }
    assert_eq!(steps, ["Drain", "Upgrade", "Verify", "Uncordon"]);
    let n = m.node("worker-000");
    assert_eq!(n.versions["containerd"], "1.7.23");
    assert!(!n.unschedulable);
    assert!(m.node("worker-001").progress.is_none() && m.node("worker-002").progress.is_none());
    assert_eq!(m.condition(condition::READY).1, reason::PAUSED);
    assert_eq!(m.condition(condition::RECONCILING).1, reason::PAUSED);
    m.spec.paused = false;
    assert_eq!(started(&m.plan()), ["worker-001"]);
}

/// status.rs "Nodes out of service: cordoned (by anyone) or NotReady".
#[test]
fn counts_unavailable_are_the_cordoned_and_not_ready_nodes_in_scope() {
    let mut nodes = cluster(0, 5);
    nodes[4].ready = false;
    nodes[3].unschedulable = true; // an admin's cordon
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    max_unavailable(&mut s, IntOrString::Int(3));
    let mut m = Model::new(s, nodes);
    let actions = m.plan();
    assert_eq!(m.status().counts.unavailable, 2);
    for a in &actions {
        m.apply(a, Outcome::Done);
    }
    for a in m.plan() {
        m.apply(&a, Outcome::Done); // drover cordons the nodes it started
    }
    m.plan();
    let cordoned_by_drover = m
        .obs
        .nodes
        .iter()
        .filter(|n| n.cordoned_by.as_deref() == Some(CU))
        .count();
    assert!(cordoned_by_drover > 0);
    assert_eq!(m.status().counts.unavailable, 2 + cordoned_by_drover as i32);
}
