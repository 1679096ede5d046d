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
    /// The canary of spec.strategy.canary.
    pub canary: bool,
    /// The zone of its workers (spec.strategy.topologyKey).
    pub zone: Option<String>,
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
            canary: false,
            zone: None,
        });
    }

    let soak = first
        .accepted
        .as_ref()
        .map(|a| a.soak.max(a.canary_soak))
        .unwrap_or_default();
    let zone_of = |name: &str, obs: &Observation| {
        let key = spec.strategy.topology_key.as_deref()?;
        let n = obs.nodes.iter().find(|n| n.name == name)?;
        Some(n.labels.get(key).cloned().unwrap_or_default())
    };
    let tick = Duration::from_secs(1);
    let rounds = 64 + obs.nodes.len() * (2 * spec.components.len() + 8) + 4 * spec.components.len();
    for _ in 0..rounds {
        let (actions, stage, hold) = {
            let p = plan(&spec, &obs);
            (p.actions, p.stage, p.hold)
        };
        let mut canary = false;
        let started: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { node, progress } => {
                    canary |= progress.canary.is_some();
                    Some(node.clone())
                }
                _ => None,
            })
            .collect();
        if !started.is_empty() {
            batches.push(Batch {
                stage,
                zone: zone_of(&started[0], &obs).filter(|_| stage == RolloutStage::Workers),
                work: BatchWork::Nodes(started),
                in_progress: false,
                canary,
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
                canary: false,
                zone: None,
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
                Some(h) if h.reason == Reason::AwaitingApproval => {
                    let hash = crate::canary::canary_hash(&spec);
                    notes.push(format!(
                        "the canary waits for approval (spec.approvedCanary: {hash}, or drover approve {}); forecast as if approved",
                        obs.name
                    ));
                    spec.approved_canary = Some(hash);
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

/// What guards the rollout, one line each, for `drover plan`: the health
/// checks, the canary, the zones, the hooks, and what a rollback would do
/// (each component back to the versions the nodes run now).
pub fn guards(spec: &ClusterUpgradeSpec, obs: &Observation) -> Vec<String> {
    let mut out = Vec::new();
    for c in &spec.health_checks {
        let what = if let Some(h) = &c.http {
            format!("GET {} expecting {:?}", h.url, h.expected_status)
        } else if let Some(p) = &c.prometheus {
            match &p.threshold {
                Some(t) => format!(
                    "query {} at {}: every sample {} {}",
                    p.query,
                    p.url,
                    t.op.as_str(),
                    t.value
                ),
                None => format!("query {} at {}: no series", p.query, p.url),
            }
        } else if let Some(p) = &c.pods {
            format!(
                "pods {}{} Ready, at most {} restarts",
                p.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
                drover_api::selector::describe(&p.selector),
                p.max_restarts
            )
        } else {
            "kube-apiserver /readyz and etcd /health of every control-plane node and member".to_string()
        };
        out.push(format!(
            "health check {}: {what}; {} pass(es) in a row, {} apart, within {}; before each node starts and after its uncordon",
            c.name, c.success_threshold, c.interval, c.timeout
        ));
    }
    if let Some(c) = &spec.strategy.canary {
        out.push(format!(
            "canary: {} worker(s){} first, then a soak of {}{}",
            match &c.nodes {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
            },
            c.selector
                .as_ref()
                .map(|s| format!(" matching {}", drover_api::selector::describe(s)))
                .unwrap_or_default(),
            c.soak,
            if c.require_approval {
                format!(
                    ", then the other workers wait until spec.approvedCanary is {}",
                    crate::canary::canary_hash(spec)
                )
            } else {
                String::new()
            }
        ));
    }
    if let Some(key) = &spec.strategy.topology_key {
        let mut zones: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        let scope = crate::accept::scope(spec);
        for n in obs.nodes.iter().filter(|n| n.is_worker() && scope.matches(&n.labels)) {
            *zones.entry(n.labels.get(key).cloned().unwrap_or_default()).or_default() += 1;
        }
        let list: Vec<String> = zones
            .iter()
            .map(|(z, n)| format!("{} ({n})", if z.is_empty() { "(no label)" } else { z }))
            .collect();
        out.push(format!(
            "zones by {key}: {}; one zone at a time, spec.strategy.maxUnavailable within it",
            list.join(", ")
        ));
    }
    for (field, h) in [
        ("preDrain", &spec.hooks.pre_drain),
        ("postUncordon", &spec.hooks.post_uncordon),
    ] {
        if let Some(h) = h {
            out.push(format!(
                "hook {field}: a Job of {} on each node {}, within {}",
                h.image,
                if field == "preDrain" {
                    "after its cordon, before its drain"
                } else {
                    "after its uncordon"
                },
                h.timeout
            ));
        }
    }
    if spec.strategy.on_failure == drover_api::FailureAction::Rollback {
        let mut back = Vec::new();
        for c in spec.components.iter().filter(|c| c.upgrade.job.is_some()) {
            let mut from: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
            for n in &obs.nodes {
                if let Some(v) = n.versions.get(&c.name).filter(|v| *v != &c.version) {
                    *from.entry(v.as_str()).or_default() += 1;
                }
            }
            if !from.is_empty() {
                let vs: Vec<String> = from.iter().map(|(v, n)| format!("{v} on {n}")).collect();
                back.push(format!("{} back to {}", c.name, vs.join(", ")));
            }
        }
        out.push(format!(
            "on failure: roll back {} in reverse component order ({}), then halt with RolledBack; etcd and control-plane minor versions are never rolled back",
            if spec.strategy.rollback == drover_api::RollbackScope::All {
                "every node this target upgraded"
            } else {
                "the failed node"
            },
            if back.is_empty() { "nothing to return".to_string() } else { back.join("; ") }
        ));
    }
    out
}
