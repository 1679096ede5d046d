//! A forecast of a rollout: the planner run forward on a copy of an
//! observation, as if every step it asks for succeeded at once, to list the
//! batches a rollout would go through. Pure, like the rest of the crate:
//! `drover plan` uses it for its dry run.

use std::time::Duration;

use drover_api::ClusterUpgradeSpec;
use drover_api::names::reason;
use drover_api::validate::parse_duration;
use jiff::Timestamp;

use crate::decide::{Action, Hold, Refusal, RolloutStage, Step, plan};
use crate::observe::{BackupState, Observation};

/// What starts together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchWork {
    /// The backup Job runs.
    Backup,
    /// These nodes start (one for etcd and control-plane nodes).
    Nodes(Vec<String>),
    /// A cluster-level workload component is rolled out.
    Workload { component: String, version: String },
}

/// One step of the rollout, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub stage: RolloutStage,
    pub work: BatchWork,
    /// Already in progress when the observation was taken.
    pub in_progress: bool,
}

/// How the forecast ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every node in scope and every workload reaches the target.
    Complete,
    /// The planner stops with this hold (a failure, NotReady nodes, a conflict…).
    Held(Hold),
    /// Nothing can start and the planner gives no reason (another
    /// ClusterUpgrade holds the remaining nodes).
    Stuck,
    /// The round limit was reached (a very large cluster).
    Truncated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forecast {
    /// The spec is refused: nothing would happen.
    pub refusal: Option<Refusal>,
    pub batches: Vec<Batch>,
    pub end: End,
    /// Assumptions the forecast made (a paused spec resumed, windows open).
    pub notes: Vec<String>,
}

fn later(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Apply one action to the observation as if it ended Done.
fn apply(obs: &mut Observation, action: &Action) {
    let owner = obs.name.clone();
    match action {
        Action::Start { node, progress } => {
            if let Some(n) = obs.nodes.iter_mut().find(|n| &n.name == node) {
                n.progress = Some(progress.clone());
            }
        }
        Action::Step {
            node, step, on_done, ..
        } => {
            let Some(n) = obs.nodes.iter_mut().find(|n| &n.name == node) else {
                return;
            };
            match step {
                Step::Cordon => {
                    if !n.unschedulable {
                        n.unschedulable = true;
                        n.cordoned_by = Some(owner);
                    }
                }
                Step::Drain | Step::Verify { .. } => {}
                Step::Upgrade { component, version } => {
                    n.versions.insert(component.clone(), version.clone());
                }
                Step::Uncordon { undo_cordon } => {
                    if *undo_cordon {
                        n.unschedulable = false;
                        n.cordoned_by = None;
                    }
                }
            }
            n.progress = on_done.clone();
        }
        Action::UpgradeWorkload { component, version } => {
            let w = obs.workloads.entry(component.clone()).or_default();
            w.version = Some(version.clone());
            w.rolled_out = true;
            w.failed = None;
        }
        Action::RunBackup => obs.backup = BackupState::Succeeded,
    }
}

/// Run the planner forward from `obs` until the rollout completes or stops.
pub fn forecast(spec: &ClusterUpgradeSpec, obs: &Observation) -> Forecast {
    let mut spec = spec.clone();
    let mut notes = Vec::new();
    if spec.paused {
        spec.paused = false;
        notes.push("spec.paused is true: nothing starts until it is false; forecast as if resumed".to_string());
    }
    if !spec.windows.is_empty() {
        spec.windows.clear();
        notes.push("spec.windows: forecast as if a maintenance window were open throughout".to_string());
    }
    let mut obs = obs.clone();
    let mut batches = Vec::new();

    let first = plan(&spec, &obs);
    if let Some(r) = first.refusal {
        return Forecast {
            refusal: Some(r),
            batches,
            end: End::Stuck,
            notes,
        };
    }
    let in_flight: Vec<String> = obs
        .nodes
        .iter()
        .filter(|n| {
            n.progress
                .as_ref()
                .is_some_and(|p| p.upgrade == obs.name && p.phase.in_flight())
        })
        .map(|n| n.name.clone())
        .collect();
    if !in_flight.is_empty() {
        batches.push(Batch {
            stage: first.stage,
            work: BatchWork::Nodes(in_flight),
            in_progress: true,
        });
    }

    let soak = parse_duration(&spec.strategy.soak).unwrap_or_default();
    let tick = Duration::from_secs(1);
    let rounds = 64 + obs.nodes.len() * (2 * spec.components.len() + 8) + 4 * spec.components.len();
    for _ in 0..rounds {
        let (actions, stage, hold) = {
            let p = plan(&spec, &obs);
            (p.actions, p.stage, p.hold)
        };
        let started: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { node, .. } => Some(node.clone()),
                _ => None,
            })
            .collect();
        if !started.is_empty() {
            batches.push(Batch {
                stage,
                work: BatchWork::Nodes(started),
                in_progress: false,
            });
        }
        for a in &actions {
            let work = match a {
                Action::UpgradeWorkload { component, version } => BatchWork::Workload {
                    component: component.clone(),
                    version: version.clone(),
                },
                Action::RunBackup => BatchWork::Backup,
                _ => continue,
            };
            batches.push(Batch {
                stage,
                work,
                in_progress: false,
            });
        }
        if actions.is_empty() {
            match hold {
                _ if stage == RolloutStage::Complete => {
                    return Forecast {
                        refusal: None,
                        batches,
                        end: End::Complete,
                        notes,
                    };
                }
                Some(h) if h.reason == reason::SOAKING => {
                    obs.now = later(obs.now, soak + tick);
                    continue;
                }
                Some(h) => {
                    return Forecast {
                        refusal: None,
                        batches,
                        end: End::Held(h),
                        notes,
                    };
                }
                None => {
                    return Forecast {
                        refusal: None,
                        batches,
                        end: End::Stuck,
                        notes,
                    };
                }
            }
        }
        for a in &actions {
            apply(&mut obs, a);
        }
        obs.now = later(obs.now, tick);
    }
    Forecast {
        refusal: None,
        batches,
        end: End::Truncated,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use drover_api::names::label;
    use drover_api::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::observe::ObservedNode;

    fn job(name: &str, version: &str) -> Component {
        serde_json::from_value(serde_json::json!({
            "name": name, "version": version,
            "upgrade": {"job": {"image": "example.com/upgrader:1"}}
        }))
        .unwrap()
    }

    fn workload(name: &str, version: &str, kind: &str, object: &str) -> Component {
        serde_json::from_value(serde_json::json!({
            "name": name, "version": version,
            "upgrade": {"workload": {"kind": kind, "namespace": "kube-system", "name": object}}
        }))
        .unwrap()
    }

    fn spec(components: Vec<Component>, max_unavailable: i32) -> ClusterUpgradeSpec {
        let mut s: ClusterUpgradeSpec = serde_json::from_value(serde_json::json!({"components": []})).unwrap();
        s.components = components;
        s.strategy.max_unavailable = IntOrString::Int(max_unavailable);
        s
    }

    fn node(name: &str, control_plane: bool, versions: &[(&str, &str)]) -> ObservedNode {
        let mut labels = BTreeMap::new();
        if control_plane {
            labels.insert(label::ROLE_ETCD.to_string(), String::new());
            labels.insert(label::ROLE_CONTROL_PLANE.to_string(), String::new());
        }
        ObservedNode {
            name: name.into(),
            labels,
            ready: true,
            versions: versions.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    fn cluster(cp: usize, workers: usize) -> Observation {
        let mut nodes = Vec::new();
        let old = [
            ("containerd", "1.7.22"),
            ("kubelet", "v1.31.4"),
            ("kube-apiserver", "v1.31.4"),
        ];
        for i in 1..=cp {
            nodes.push(node(&format!("cp-{i}"), true, &old));
        }
        for i in 1..=workers {
            nodes.push(node(&format!("worker-{i}"), false, &old[..2]));
        }
        let t0: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        Observation {
            now: t0,
            name: "platform".into(),
            generation: 1,
            created: t0,
            nodes,
            workloads: BTreeMap::new(),
            backup: BackupState::NotStarted,
            others: vec![],
            self_node: None,
            previous: None,
        }
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
                workload("calico", "v3.29.0", "DaemonSet", "calico-node"),
                workload("coredns", "v1.11.4", "Deployment", "coredns"),
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
        obs.nodes[1].progress = Some(crate::NodeProgress::start(
            "platform",
            1,
            crate::NodePhase::Draining,
            None,
            obs.now,
        ));
        let f = forecast(&s, &obs);
        assert!(f.batches[0].in_progress);
        assert_eq!(nodes(&f.batches[0]), ["worker-2"]);
        assert_eq!(nodes(&f.batches[1]), ["worker-1"]);
        assert_eq!(f.end, End::Complete);
    }
}
