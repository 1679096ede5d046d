//! A forecast of a rollout: the planner run forward on a copy of an
//! observation, as if every step it asks for succeeded at once, to list the
//! batches a rollout would go through. Pure, like the rest of the crate:
//! `drover plan` uses it for its dry run.

use std::time::Duration;

use drover_api::{ClusterUpgradeSpec, Outcome, Reason};

use crate::accept::Refusal;
use crate::action::Action;
use crate::decide::plan;
use crate::gates::Hold;
use crate::node::add;
use crate::observe::Observation;
use crate::stage::RolloutStage;

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

    let soak = first.accepted.as_ref().map(|a| a.soak).unwrap_or_default();
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
                Action::RunBackup { .. } => BatchWork::Backup,
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
                Some(h) if h.reason == Reason::Soaking => {
                    obs.now = add(obs.now, soak + tick);
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
            obs.apply(a, &Outcome::Done);
        }
        obs.now = add(obs.now, tick);
    }
    Forecast {
        refusal: None,
        batches,
        end: End::Truncated,
        notes,
    }
}
