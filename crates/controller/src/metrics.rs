//! Prometheus metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpgradeLabels {
    pub upgrade: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeStateLabels {
    pub upgrade: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepKind {
    pub step: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Counter,
    pub reconcile_duration: Histogram,
    pub nodes: Family<NodeStateLabels, Gauge>,
    pub rollouts_completed: Family<UpgradeLabels, Counter>,
    pub steps: Family<StepLabels, Counter>,
    pub step_duration: Family<StepKind, Histogram>,
    pub drain_blocks: Family<UpgradeLabels, Counter>,
    pub api_errors: Counter,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("drover");
        let reconciles = Counter::default();
        let reconcile_errors = Counter::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let nodes = Family::<NodeStateLabels, Gauge>::default();
        let rollouts_completed = Family::<UpgradeLabels, Counter>::default();
        let steps = Family::<StepLabels, Counter>::default();
        let step_duration =
            Family::<StepKind, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.5, 2.0, 14)));
        let drain_blocks = Family::<UpgradeLabels, Counter>::default();
        let api_errors = Counter::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconcile passes", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile passes that ended in an error",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile pass",
            reconcile_duration.clone(),
        );
        registry.register(
            "nodes",
            "Nodes in scope by state (inScope, updated, updating, failed, pending, unavailable)",
            nodes.clone(),
        );
        registry.register(
            "rollouts_completed",
            "Rollouts that reached Ready",
            rollouts_completed.clone(),
        );
        registry.register("node_steps", "Node steps performed, by step and outcome", steps.clone());
        registry.register(
            "node_step_duration_seconds",
            "Time from entering a node step to finishing it",
            step_duration.clone(),
        );
        registry.register(
            "drain_blocks",
            "Drain passes blocked by disruption budgets or unevictable pods",
            drain_blocks.clone(),
        );
        registry.register(
            "api_errors",
            "Kubernetes API errors met while reconciling",
            api_errors.clone(),
        );
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            nodes,
            rollouts_completed,
            steps,
            step_duration,
            drain_blocks,
            api_errors,
            leader,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding to a String cannot fail");
        out
    }

    pub fn set_counts(&self, upgrade: &str, counts: &drover_api::NodeCounts) {
        for (state, n) in [
            ("inScope", counts.in_scope),
            ("updated", counts.updated),
            ("updating", counts.updating),
            ("failed", counts.failed),
            ("pending", counts.pending),
            ("unavailable", counts.unavailable),
        ] {
            self.nodes
                .get_or_create(&NodeStateLabels {
                    upgrade: upgrade.into(),
                    state: state.into(),
                })
                .set(n as i64);
        }
    }
}
