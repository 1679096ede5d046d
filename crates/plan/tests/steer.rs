//! The upgrade-pending taint (pods move once): which workers carry it and
//! when it comes off, decided by the planner pass by pass on a model cluster.

mod support;

use drover_api::*;
use drover_plan::*;
use support::*;

fn marks(actions: &[Action]) -> (Vec<String>, Vec<String>) {
    let mut on = Vec::new();
    let mut off = Vec::new();
    for a in actions {
        if let Action::Steer { node, mark } = a {
            if *mark {
                on.push(node.clone())
            } else {
                off.push(node.clone())
            }
        }
    }
    (on, off)
}

fn tainted(m: &Model) -> Vec<String> {
    m.obs
        .nodes
        .iter()
        .filter(|n| n.steered_by.as_deref() == Some(CU))
        .map(|n| n.name.clone())
        .collect()
}

/// Plan every action and apply it as Done; the actions.
fn round(m: &mut Model) -> Vec<Action> {
    let a = m.plan_all();
    for x in &a {
        m.apply(x, Outcome::Done);
    }
    a
}

#[test]
fn every_worker_to_upgrade_is_marked_first_and_unmarked_by_its_uncordons_own_patch() {
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), cluster(2, 4));
    let first = m.plan_all();
    let (on, off) = marks(&first);
    // The workers, not the control plane (its own taint keeps pods off already).
    assert_eq!(on, ["worker-000", "worker-001", "worker-002", "worker-003"]);
    assert!(off.is_empty());
    for x in &first {
        m.apply(x, Outcome::Done);
    }
    let mut passes = 0;
    while m
        .status()
        .conditions
        .iter()
        .all(|c| !(c.type_ == "Ready" && c.status == "True"))
    {
        passes += 1;
        assert!(passes < 200, "not finished");
        let a = round(&mut m);
        let (on, off) = marks(&a);
        assert!(on.is_empty(), "a mark after the first pass: {on:?}");
        // The taint comes off in the uncordon's own patch, not in a write of its own.
        assert!(off.is_empty(), "a separate unmark of {off:?}: {a:?}");
        for x in &a {
            if let Action::Step {
                node,
                step: Step::Uncordon { untaint, .. },
                ..
            } = x
            {
                assert!(*untaint, "{node}'s uncordon after its upgrade leaves the taint");
            }
        }
        // Only workers not yet uncordoned carry it.
        for n in tainted(&m) {
            let p = m.node(&n).progress.as_ref();
            assert!(
                p.is_none_or(|p| p.phase != NodePhase::Done),
                "{n} is Done and still tainted"
            );
        }
    }
    assert!(
        tainted(&m).is_empty(),
        "taints left after the rollout: {:?}",
        tainted(&m)
    );
}

#[test]
fn no_mark_without_a_rolling_drain_and_another_upgrades_taint_is_left_alone() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.drain.enabled = false;
    let mut m = Model::new(s, cluster(0, 3));
    assert_eq!(marks(&m.plan_all()), (vec![], vec![]));

    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.type_ = StrategyType::AllAtOnce;
    let mut m = Model::new(s, cluster(0, 3));
    assert_eq!(marks(&m.plan_all()), (vec![], vec![]));

    let mut nodes = cluster(0, 3);
    nodes[1].steered_by = Some("other-upgrade".into());
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), nodes);
    let (on, off) = marks(&m.plan_all());
    assert_eq!(on, ["worker-000", "worker-002"]);
    assert!(off.is_empty());
}

#[test]
fn a_halted_rollout_keeps_the_marks_of_the_workers_left_and_a_refused_spec_drops_them() {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.retries = 0;
    let mut m = Model::new(s, cluster(0, 3));
    // worker-000's upgrade fails: the rollout halts (maxFailures 0).
    for _ in 0..20 {
        let a = m.plan_all();
        for x in &a {
            let failed = matches!(x, Action::Step { node, step: Step::Upgrade { .. }, .. } if node == "worker-000");
            let outcome = if failed {
                Outcome::Failed {
                    reason: Reason::UpgradeJobFailed,
                    message: "job failed".into(),
                }
            } else {
                Outcome::Done
            };
            m.apply(x, outcome);
        }
    }
    assert_eq!(m.condition("Stalled").0, "True");
    assert_eq!(
        tainted(&m),
        ["worker-001", "worker-002"],
        "the failed node is handed back unmarked"
    );
    // A spec the planner refuses takes every mark off.
    m.spec.components[0].upgrade.job.as_mut().unwrap().image = String::new();
    round(&mut m);
    assert!(tainted(&m).is_empty(), "{:?}", tainted(&m));
}
