//! The forecast `drover plan` prints: the planner run forward on a copy of
//! an observation. Fixtures come from the shared test support.

mod support;

use drover_api::names::reason;
use drover_api::*;
use drover_plan::forecast::{Batch, BatchWork, End, forecast};
use drover_plan::{NodePhase, NodeProgress, Observation, ObservedNode, RolloutStage};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use support::{Role, job, node};

fn workload(name: &str, version: &str, kind: WorkloadKind) -> Component {
    support::workload(name, version, kind)
}

fn spec(components: Vec<Component>, max_unavailable: i32) -> ClusterUpgradeSpec {
    let mut s = support::spec(components);
    s.strategy.max_unavailable = IntOrString::Int(max_unavailable);
    s
}

/// `cp` stacked control-plane nodes cp-1… and `workers` workers worker-1…, on the old versions.
fn cluster(cp: usize, workers: usize) -> Observation {
    let old = [
        ("containerd", "1.7.22"),
        ("kubelet", "v1.31.4"),
        ("kube-apiserver", "v1.31.4"),
    ];
    let mut nodes: Vec<ObservedNode> = Vec::new();
    for i in 1..=cp {
        nodes.push(node(&format!("cp-{i}"), Role::Stacked, &old));
    }
    for i in 1..=workers {
        nodes.push(node(&format!("worker-{i}"), Role::Worker, &old[..2]));
    }
    support::observation(nodes)
}

fn nodes(b: &Batch) -> Vec<&str> {
    match &b.work {
        BatchWork::Nodes(n) => n.iter().map(String::as_str).collect(),
        _ => vec![],
    }
}

#[test]
fn control_plane_one_at_a_time_then_cluster_components_then_workers_in_batches() {
    let s = spec(
        vec![
            job("containerd", "1.7.23"),
            job("kube-apiserver", "v1.32.0"),
            job("kubelet", "v1.32.0"),
            workload("calico", "v3.29.0", WorkloadKind::DaemonSet),
            workload("coredns", "v1.11.4", WorkloadKind::Deployment),
        ],
        2,
    );
    let f = forecast(&s, &cluster(3, 5));
    assert_eq!(f.refusal, None);
    assert_eq!(f.end, End::Complete);
    let stages: Vec<RolloutStage> = f.batches.iter().map(|b| b.stage).collect();
    assert_eq!(
        stages,
        vec![
            RolloutStage::EtcdMembers,
            RolloutStage::EtcdMembers,
            RolloutStage::EtcdMembers,
            RolloutStage::ClusterComponents,
            RolloutStage::Workers,
            RolloutStage::Workers,
            RolloutStage::Workers,
            RolloutStage::Addons,
        ]
    );
    assert_eq!(nodes(&f.batches[0]), ["cp-1"]);
    assert_eq!(nodes(&f.batches[2]), ["cp-3"]);
    assert_eq!(
        f.batches[3].work,
        BatchWork::Workload {
            component: "calico".into(),
            version: "v3.29.0".into()
        }
    );
    assert_eq!(nodes(&f.batches[4]), ["worker-1", "worker-2"]);
    assert_eq!(nodes(&f.batches[5]), ["worker-3", "worker-4"]);
    assert_eq!(nodes(&f.batches[6]), ["worker-5"]);
    assert!(f.notes.is_empty());
}

#[test]
fn the_observation_given_is_not_changed_and_the_same_input_gives_the_same_forecast() {
    let s = spec(vec![job("containerd", "1.7.23")], 1);
    let obs = cluster(1, 2);
    let before = obs.clone();
    let a = forecast(&s, &obs);
    assert_eq!(obs, before);
    assert_eq!(a, forecast(&s, &obs));
    assert_eq!(a.batches.len(), 3);
}

#[test]
fn a_skew_violation_is_a_refusal_with_no_batches() {
    let s = spec(vec![job("kube-apiserver", "v1.33.0")], 1);
    let f = forecast(&s, &cluster(3, 2));
    let r = f.refusal.expect("refused");
    assert_eq!(r.reason, reason::SKEW_VIOLATION);
    assert!(r.problems.iter().any(|p| p.contains("skip a minor version")), "{r:?}");
    assert!(f.batches.is_empty());
}

#[test]
fn soak_and_pause_and_windows_are_forecast_through_with_notes() {
    let mut s = spec(vec![job("containerd", "1.7.23")], 1);
    s.strategy.soak = "10m".into();
    s.paused = true;
    s.windows = vec![serde_json::from_value(serde_json::json!({"start": "22:00", "end": "23:00"})).unwrap()];
    let f = forecast(&s, &cluster(0, 3));
    assert_eq!(f.end, End::Complete);
    assert_eq!(f.batches.len(), 3);
    assert_eq!(f.notes.len(), 2, "{:?}", f.notes);
}

#[test]
fn a_not_ready_worker_ends_the_forecast_with_the_planners_reason() {
    let s = spec(vec![job("containerd", "1.7.23")], 2);
    let mut obs = cluster(0, 3);
    obs.nodes[2].ready = false;
    let f = forecast(&s, &obs);
    // The NotReady worker uses one unit of the budget: one at a time.
    assert_eq!(nodes(&f.batches[0]), ["worker-1"]);
    assert_eq!(nodes(&f.batches[1]), ["worker-2"]);
    match f.end {
        End::Held(h) => assert_eq!(h.reason, reason::NODE_NOT_READY),
        e => panic!("{e:?}"),
    }
}

#[test]
fn nodes_already_in_flight_are_the_first_batch() {
    let s = spec(vec![job("containerd", "1.7.23")], 1);
    let mut obs = cluster(0, 2);
    obs.nodes[1].progress = Some(NodeProgress::start(support::CU, 1, NodePhase::Draining, None, obs.now));
    let f = forecast(&s, &obs);
    assert!(f.batches[0].in_progress);
    assert_eq!(nodes(&f.batches[0]), ["worker-2"]);
    assert_eq!(nodes(&f.batches[1]), ["worker-1"]);
    assert_eq!(f.end, End::Complete);
}
