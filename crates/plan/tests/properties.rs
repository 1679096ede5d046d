//! Property tests: random clusters, specs and step outcomes, with the
//! safety invariants checked after every decision.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use drover_api::known::stage_of;
use drover_api::names::condition;
use drover_api::validate::resolve_max_unavailable;
use drover_api::{Component, DrainTimeoutAction, Stage, StrategyType};
use drover_plan::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use support::*;

const OLD: [(&str, &str); 4] = [
    ("containerd", "1.7.22"),
    ("etcd", "3.5.15"),
    ("kube-apiserver", "v1.31.4"),
    ("kubelet", "v1.31.4"),
];
const NEW: [(&str, &str); 4] = [
    ("containerd", "1.7.23"),
    ("etcd", "3.5.16"),
    ("kube-apiserver", "v1.32.0"),
    ("kubelet", "v1.32.0"),
];

#[derive(Debug, Clone)]
struct NodeSeed {
    role: Role,
    ready: bool,
    admin_cordoned: bool,
    /// Which components already run the new version.
    already_new: [bool; 4],
}

fn node_seed() -> impl Strategy<Value = NodeSeed> {
    (
        prop_oneof![
            1 => Just(Role::Etcd),
            1 => Just(Role::ControlPlane),
            1 => Just(Role::Stacked),
            6 => Just(Role::Worker),
        ],
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.1),
        prop::array::uniform4(prop::bool::weighted(0.2)),
    )
        .prop_map(|(role, ready, admin_cordoned, already_new)| NodeSeed {
            role,
            ready,
            admin_cordoned,
            already_new,
        })
}

#[derive(Debug, Clone)]
struct SpecSeed {
    components: [bool; 4],
    max_unavailable: IntOrString,
    all_at_once: bool,
    on_timeout: DrainTimeoutAction,
    max_failures: i32,
    soak_minutes: u32,
}

fn spec_seed() -> impl Strategy<Value = SpecSeed> {
    (
        prop::array::uniform4(any::<bool>()),
        prop_oneof![
            (1..6i32).prop_map(IntOrString::Int),
            (1..=100u32).prop_map(|p| IntOrString::String(format!("{p}%"))),
        ],
        prop::bool::weighted(0.15),
        prop_oneof![
            Just(DrainTimeoutAction::Halt),
            Just(DrainTimeoutAction::SkipNode),
            Just(DrainTimeoutAction::ForceDelete)
        ],
        0..3i32,
        0..3u32,
    )
        .prop_map(
            |(components, max_unavailable, all_at_once, on_timeout, max_failures, soak_minutes)| SpecSeed {
                components,
                max_unavailable,
                all_at_once,
                on_timeout,
                max_failures,
                soak_minutes,
            },
        )
}

fn build(seeds: &[NodeSeed], s: &SpecSeed) -> Model {
    let nodes = seeds
        .iter()
        .enumerate()
        .map(|(i, seed)| {
            let versions: Vec<(&str, &str)> = (0..4)
                .map(|k| if seed.already_new[k] { NEW[k] } else { OLD[k] })
                .collect();
            let mut n = node(&format!("n{i:02}"), seed.role, &versions);
            n.ready = seed.ready;
            n.unschedulable = seed.admin_cordoned;
            n
        })
        .collect();
    // The kubelet may not pass the API server: with a kubelet bump comes an API server bump.
    let wanted = |k: usize| s.components[k] || (k == 2 && s.components[3]);
    let mut components: Vec<Component> = (0..4).filter(|k| wanted(*k)).map(|k| job(NEW[k].0, NEW[k].1)).collect();
    if components.is_empty() {
        components.push(job("containerd", "1.7.23"));
    }
    let mut sp = spec(components);
    sp.strategy.max_unavailable = s.max_unavailable.clone();
    sp.strategy.max_failures = s.max_failures;
    sp.strategy.soak = format!("{}m", s.soak_minutes);
    sp.drain.on_timeout = s.on_timeout;
    if s.all_at_once {
        sp.strategy.type_ = StrategyType::AllAtOnce;
    }
    Model::new(sp, nodes)
}

fn outcome_for(roll: u8, action: &Action) -> Outcome {
    match (roll, action) {
        (0..=79, _) | (_, Action::Start { .. } | Action::RunBackup { .. } | Action::UpgradeWorkload { .. }) => {
            Outcome::Done
        }
        (80..=89, _) => Outcome::Waiting {
            message: format!("waiting {roll}"),
        },
        (90..=94, Action::Step { step: Step::Drain, .. }) => Outcome::Blocked {
            message: "blocked by PodDisruptionBudget default/web".into(),
            timed_out: roll >= 93,
        },
        (
            _,
            Action::Step {
                step: Step::Upgrade { .. } | Step::Verify { .. },
                ..
            },
        ) => Outcome::Failed {
            reason: "UpgradeJobFailed".into(),
            message: "exit code 1".into(),
        },
        _ => Outcome::Done,
    }
}

fn is_worker(m: &Model, name: &str) -> bool {
    m.node(name).is_worker()
}

/// Check every safety invariant for one decision, before it is applied.
fn check_decision(m: &Model, actions: &[Action]) -> Result<(), TestCaseError> {
    let flying: BTreeSet<String> = m.in_flight().into_iter().collect();
    let starts = started(actions);

    // Determinism: the same observation gives the same decision.
    let again = plan(&m.spec, &m.obs);
    prop_assert_eq!(&again.actions, actions);

    // Never undo a cordon drover did not make.
    for a in actions {
        if let Action::Step {
            node,
            step: Step::Uncordon { undo_cordon: true, .. },
            ..
        } = a
        {
            prop_assert_eq!(m.node(node).cordoned_by.as_deref(), Some(CU), "undo_cordon on {}", node);
        }
    }

    // Control plane and etcd strictly one at a time, alone.
    let critical: Vec<&String> = flying.iter().chain(&starts).filter(|n| !is_worker(m, n)).collect();
    prop_assert!(critical.len() <= 1, "critical nodes at once: {:?}", critical);
    if !starts.is_empty() && !is_worker(m, &starts[0]) {
        prop_assert!(flying.is_empty(), "a control-plane node started beside {:?}", flying);
    }

    // No worker starts while an etcd/control-plane node still needs work.
    let p = plan(&m.spec, &m.obs);
    let critical_open = p
        .views
        .iter()
        .any(|v| v.in_scope && v.group != Group::Worker && matches!(v.state, Standing::Pending | Standing::InFlight));
    if starts.iter().any(|n| is_worker(m, n)) {
        prop_assert!(!critical_open, "a worker started before the control plane was done");
    }

    // An etcd or control-plane node starts only when every member of its group is Ready.
    for s in &starts {
        let group = p.views.iter().find(|v| &v.node.name == s).map(|v| v.group);
        if let Some(g) = group.filter(|g| *g != Group::Worker) {
            let not_ready: Vec<&str> = p
                .views
                .iter()
                .filter(|v| v.in_scope && v.group == g && !v.node.ready)
                .map(|v| v.node.name.as_str())
                .collect();
            prop_assert!(not_ready.is_empty(), "{} started while {:?} are NotReady", s, not_ready);
        }
    }

    // The worker budget: nodes out of service never exceed maxUnavailable,
    // except by nodes that were out of service already.
    let worker_starts: Vec<&String> = starts.iter().filter(|n| is_worker(m, n)).collect();
    if m.spec.strategy.type_ == StrategyType::Rolling && !worker_starts.is_empty() {
        let workers: Vec<&ObservedNode> = m.obs.nodes.iter().filter(|n| n.is_worker()).collect();
        let budget = resolve_max_unavailable(&m.spec.strategy.max_unavailable, workers.len()).unwrap();
        let before: BTreeSet<&str> = workers
            .iter()
            .filter(|n| n.unavailable() || flying.contains(&n.name))
            .map(|n| n.name.as_str())
            .collect();
        let mut after = before.clone();
        after.extend(worker_starts.iter().map(|s| s.as_str()));
        for s in &worker_starts {
            prop_assert!(
                before.contains(s.as_str()) || after.len() <= budget,
                "starting {} makes {} workers unavailable, budget {}",
                s,
                after.len(),
                budget
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_random_outcomes(
        seeds in prop::collection::vec(node_seed(), 1..24),
        s in spec_seed(),
        rolls in prop::collection::vec(0u8..100, 400),
    ) {
        let mut m = build(&seeds, &s);
        let mut roll = rolls.iter().cycle();
        // Components upgraded per node in the current visit, for the stage-order check.
        let mut visit: BTreeMap<String, Vec<Stage>> = BTreeMap::new();
        for _ in 0..60 {
            let actions = m.plan();
            check_decision(&m, &actions)?;
            for a in &actions {
                let outcome = outcome_for(*roll.next().unwrap(), a);
                match a {
                    Action::Start { node, .. } => { visit.insert(node.clone(), vec![]); }
                    Action::Step { node, step: Step::Upgrade { component, .. }, .. } if outcome == Outcome::Done => {
                        let stage = stage_of(m.spec.components.iter().find(|c| &c.name == component).unwrap()).unwrap();
                        let seen = visit.entry(node.clone()).or_default();
                        prop_assert!(seen.last().is_none_or(|last| *last <= stage), "stage order broken on {}: {:?} then {:?}", node, seen, stage);
                        seen.push(stage);
                    }
                    _ => {}
                }
                m.apply(a, outcome);
            }
            m.tick(1);
        }
    }

    #[test]
    fn a_healthy_cluster_always_completes_and_nothing_stays_cordoned(
        seeds in prop::collection::vec(node_seed(), 1..20),
        s in spec_seed(),
    ) {
        let seeds: Vec<NodeSeed> = seeds.into_iter().map(|n| NodeSeed { ready: true, admin_cordoned: false, ..n }).collect();
        let mut m = build(&seeds, &s);
        for _ in 0..(seeds.len() * 8 + 20) * (s.soak_minutes as usize + 1) {
            for a in m.plan() {
                m.apply(&a, Outcome::Done);
            }
            m.tick(1);
        }
        m.plan();
        prop_assert_eq!(m.condition(condition::READY).0, "True", "{:?}", m.status());
        for n in &m.obs.nodes {
            prop_assert!(!n.unschedulable && n.cordoned_by.is_none(), "{} left cordoned", n.name);
        }
    }

    #[test]
    fn progress_records_round_trip_through_the_annotation(
        phase in prop_oneof![
            Just(NodePhase::Cordoning), Just(NodePhase::Draining), Just(NodePhase::Upgrading),
            Just(NodePhase::Verifying), Just(NodePhase::Uncordoning), Just(NodePhase::Done), Just(NodePhase::Failed)
        ],
        attempts in 0u32..1000,
        message in ".{0,40}",
        generation in 1i64..1000,
    ) {
        let mut p = NodeProgress::start("cu", generation, phase, Some("kubelet".into()), t0());
        p.attempts = attempts;
        p.message = message;
        prop_assert_eq!(NodeProgress::from_annotation(&p.to_annotation()), Some(p));
    }
}
