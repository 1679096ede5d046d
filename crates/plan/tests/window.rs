//! spec.strategy.batching: the sliding window (a worker starts as soon as
//! one of ours finishes) against whole batches, decided by the planner pass
//! by pass on a model cluster where nodes finish in an order the test picks.

mod support;

use std::collections::BTreeSet;

use drover_api::gates::Canary;
use drover_api::*;
use drover_plan::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use support::*;

fn containerd(batching: Batching, max_unavailable: i32) -> ClusterUpgradeSpec {
    let mut s = spec(vec![job("containerd", "1.7.23")]);
    s.strategy.batching = batching;
    s.strategy.max_unavailable = IntOrString::Int(max_unavailable);
    s
}

/// Plan once; answer Done the steps of the nodes `moves` admits and leave
/// the others where they are (their steps still running). The nodes started.
fn round(m: &mut Model, moves: &dyn Fn(&str) -> bool) -> Vec<String> {
    let actions = m.plan();
    for a in &actions {
        match a {
            Action::Step { node, .. } if !moves(node) => {}
            _ => m.apply(a, Outcome::Done),
        }
    }
    started(&actions)
}

/// A small deterministic generator, so a failing order can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn done(m: &Model) -> usize {
    m.obs
        .nodes
        .iter()
        .filter(|n| n.progress.as_ref().is_some_and(|p| p.phase == NodePhase::Done))
        .count()
}

#[test]
fn the_window_starts_a_worker_as_soon_as_one_of_ours_finishes() {
    let mut m = Model::new(containerd(Batching::Window, 2), cluster(0, 6));
    assert_eq!(round(&mut m, &|_| false), ["worker-000", "worker-001"]);
    // worker-001 is slow; worker-000 goes through every step.
    let mut next = Vec::new();
    for _ in 0..20 {
        next = round(&mut m, &|n| n == "worker-000");
        if !next.is_empty() {
            break;
        }
    }
    assert_eq!(next, ["worker-002"], "the freed slot is taken at once");
    let in_flight = m.in_flight();
    assert!(
        in_flight.contains(&"worker-001".to_string()) && in_flight.len() == 2,
        "{in_flight:?}"
    );
    let (_, reason, _) = m.condition("Reconciling");
    assert_ne!(
        reason,
        Reason::BudgetExhausted.as_str(),
        "waiting on our own nodes is no hold"
    );
}

#[test]
fn whole_batches_wait_for_their_slowest_node() {
    let mut m = Model::new(containerd(Batching::Batch, 2), cluster(0, 6));
    assert_eq!(round(&mut m, &|_| false), ["worker-000", "worker-001"]);
    for _ in 0..20 {
        assert!(
            round(&mut m, &|n| n == "worker-000").is_empty(),
            "a start before the batch ended"
        );
    }
    assert_eq!(m.in_flight(), ["worker-001"]);
    let mut next = Vec::new();
    for _ in 0..20 {
        next = round(&mut m, &|_| true);
        if !next.is_empty() {
            break;
        }
    }
    assert_eq!(next, ["worker-002", "worker-003"]);
}

/// Nodes finish in a random order: the window never holds more than the
/// budget, keeps it full while workers are left, and finishes them all;
/// Batch starts only on an empty window.
#[test]
fn in_any_order_the_window_stays_within_the_budget_and_full() {
    for seed in 1..=20u64 {
        for batching in [Batching::Window, Batching::Batch] {
            let mut rng = Lcg(seed);
            let mut m = Model::new(containerd(batching, 3), cluster(0, 10));
            let mut passes = 0;
            while done(&m) < 10 {
                passes += 1;
                assert!(
                    passes < 2000,
                    "seed {seed} {batching:?}: not finished after 2000 passes"
                );
                let (before, left) = (m.in_flight().len(), 10 - done(&m));
                let moving: BTreeSet<String> = m
                    .in_flight()
                    .into_iter()
                    .filter(|_| rng.next().is_multiple_of(3))
                    .collect();
                let started = round(&mut m, &|n| moving.contains(n));
                let now = m.in_flight().len();
                assert!(now <= 3, "seed {seed} {batching:?}: {now} workers in flight");
                if batching == Batching::Batch && !started.is_empty() {
                    assert_eq!(before, 0, "seed {seed}: a batch started beside nodes in flight");
                }
                if batching == Batching::Window {
                    // Every pass fills the window with what is left.
                    assert_eq!(
                        before + started.len(),
                        left.min(3),
                        "seed {seed}: the window was not filled"
                    );
                }
            }
        }
    }
}

#[test]
fn the_window_keeps_one_zone_in_progress_at_a_time() {
    for seed in 1..=10u64 {
        let mut rng = Lcg(seed);
        let mut s = containerd(Batching::Window, 1);
        s.strategy.max_unavailable = IntOrString::String("67%".into());
        s.strategy.topology_key = Some("topology.kubernetes.io/zone".into());
        let mut nodes = cluster(0, 9);
        for (i, n) in nodes.iter_mut().enumerate() {
            let zone = ["zone-a", "zone-b", "zone-c"][i % 3];
            n.labels.insert("topology.kubernetes.io/zone".into(), zone.into());
        }
        let mut m = Model::new(s, nodes);
        let zone = |m: &Model, n: &str| m.node(n).labels["topology.kubernetes.io/zone"].clone();
        let mut order = Vec::new();
        for _ in 0..2000 {
            if done(&m) == 9 {
                break;
            }
            let moving: BTreeSet<String> = m
                .in_flight()
                .into_iter()
                .filter(|_| rng.next().is_multiple_of(2))
                .collect();
            for n in round(&mut m, &|n| moving.contains(n)) {
                order.push(zone(&m, &n));
            }
            let zones: BTreeSet<String> = m.in_flight().iter().map(|n| zone(&m, n)).collect();
            assert!(
                zones.len() <= 1,
                "seed {seed}: two zones in progress at once: {zones:?}"
            );
            assert!(m.in_flight().len() <= 2, "seed {seed}: over 67% of a zone of 3");
        }
        assert_eq!(done(&m), 9, "seed {seed}: not finished");
        let mut seen = order.clone();
        seen.dedup();
        assert_eq!(
            seen,
            ["zone-a", "zone-b", "zone-c"],
            "seed {seed}: zones interleaved: {order:?}"
        );
    }
}

#[test]
fn the_canary_goes_alone_even_with_room_in_the_window() {
    let mut s = containerd(Batching::Window, 3);
    s.strategy.canary = Some(Canary {
        nodes: IntOrString::Int(1),
        selector: None,
        soak: "0s".into(),
        require_approval: false,
    });
    let mut m = Model::new(s, cluster(0, 6));
    assert_eq!(round(&mut m, &|_| false), ["worker-000"]);
    for _ in 0..10 {
        assert!(
            round(&mut m, &|_| false).is_empty(),
            "a worker started beside the canary"
        );
    }
    let mut next = Vec::new();
    for _ in 0..20 {
        next = round(&mut m, &|_| true);
        if !next.is_empty() {
            break;
        }
    }
    assert_eq!(next, ["worker-001", "worker-002", "worker-003"]);
}
