//! The end of the demo: the problems met on the way, the final report, and
//! the invariants checked against kubesim's recorder (not drover's word).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use drover_api::names::condition;
use drover_api::{ClusterUpgrade, ClusterUpgradeSpec, ClusterUpgradeStatus, NodeDetail};
use kubesim::sim::{Report, Simulation};

use super::states::{cond, node_blocked, node_failed};
use super::{Clock, Running};
use crate::ui::short;

/// Drain blocks listed in the summary.
const MAX_BLOCKS: usize = 5;

/// How the rollout ended: the completed ClusterUpgrade, or why not.
pub type Outcome = anyhow::Result<ClusterUpgrade>;

/// Problems met on the way, for the summary.
#[derive(Default)]
pub struct Met {
    /// node → (first seen, last seen, first message)
    blocks: BTreeMap<String, (Instant, Instant, String)>,
    /// (node, component) → message
    failures: BTreeMap<(String, String), String>,
}

impl Met {
    /// Notes the blocked and failed nodes of one reading, seen at `now`.
    pub fn note(&mut self, nodes: &[NodeDetail], now: Instant) {
        for n in nodes {
            if node_blocked(n) {
                let e = self
                    .blocks
                    .entry(n.name.clone())
                    .or_insert_with(|| (now, now, n.message.clone()));
                e.1 = now;
            }
            if node_failed(n) {
                self.failures
                    .entry((n.name.clone(), n.component.clone().unwrap_or_default()))
                    .or_insert_with(|| n.message.clone());
            }
        }
    }
}

/// The rollout as the loop left it.
pub struct Ending {
    pub outcome: Outcome,
    /// The last ClusterUpgrade read (when the outcome is an error).
    pub last_cu: Option<ClusterUpgrade>,
    /// Workers in the last node table.
    pub workers: usize,
    pub met: Met,
}

/// Prints the outcome and the summary, and checks the invariants. Returns
/// the controller (still running) when the rollout completed with every
/// invariant kept; stops it otherwise.
pub fn conclude(
    sim: &Simulation,
    clock: &Clock,
    spec: &ClusterUpgradeSpec,
    target: &str,
    end: Ending,
    running: Running,
) -> anyhow::Result<Running> {
    let report = sim.recorder().report(sim.now());
    let elapsed = clock.0.elapsed();
    let final_cu = match &end.outcome {
        Ok(cu) => Some(cu.clone()),
        Err(_) => end.last_cu,
    };
    let st = final_cu.as_ref().and_then(|c| c.status.clone()).unwrap_or_default();
    let budget =
        drover_api::validate::resolve_max_unavailable(&spec.strategy.max_unavailable, end.workers).unwrap_or(1);
    let broken = broken_invariants(&report, budget);
    match &end.outcome {
        Ok(_) => println!(
            "\n{} Rollout complete: Ready=True (Completed), {}/{} nodes run {target}",
            clock.stamp(),
            st.counts.updated,
            st.counts.in_scope
        ),
        Err(e) => println!("\n{} Rollout NOT complete: {e}", clock.stamp()),
    }
    print_summary(sim, elapsed, &st, &end.met, &report, budget);
    verdict(end.outcome, final_cu.as_ref(), broken, running)
}

/// What kubesim's recorder saw that drover must never do.
fn broken_invariants(report: &Report, budget: usize) -> Vec<String> {
    let max = |role: &str| report.max_unavailable.get(role).copied().unwrap_or(0);
    let mut broken = Vec::new();
    if !report.pdb_violations.is_empty() {
        broken.push(format!("{} PDB violations", report.pdb_violations.len()));
    }
    if !report.cordoned.is_empty() {
        broken.push(format!("nodes left cordoned: {}", report.cordoned.join(", ")));
    }
    if max("control-plane") > 1 {
        broken.push(format!(
            "{} control-plane nodes were unavailable at once",
            max("control-plane")
        ));
    }
    if max("etcd") > 1 {
        broken.push(format!("{} etcd members were unavailable at once", max("etcd")));
    }
    if max("worker") > budget {
        broken.push(format!(
            "{} workers were unavailable at once (budget {budget})",
            max("worker")
        ));
    }
    broken
}

/// One summary line: a label column, then the value.
fn line(k: &str, v: String) {
    println!("  {k:<22}{v}");
}

fn print_summary(
    sim: &Simulation,
    elapsed: Duration,
    st: &ClusterUpgradeStatus,
    met: &Met,
    report: &Report,
    budget: usize,
) {
    println!("\nSummary");
    line(
        "elapsed",
        format!(
            "{:.1}s (simulated {} at {}x)",
            elapsed.as_secs_f64(),
            short(Duration::from_secs_f64(sim.now().max(0.0))),
            sim.speed()
        ),
    );
    line(
        "nodes upgraded",
        format!("{}/{} in scope", st.counts.updated, st.counts.in_scope),
    );
    line(
        "components",
        st.components
            .iter()
            .map(|c| format!("{} {}/{}", c.name, c.updated, c.total))
            .collect::<Vec<_>>()
            .join(", "),
    );
    print_blocks(met);
    print_failures(met);
    let roles: Vec<String> = report.max_unavailable.iter().map(|(r, n)| format!("{r} {n}")).collect();
    line(
        "max unavailable",
        format!("{} (worker budget {budget})", roles.join(", ")),
    );
    line("PDB violations", report.pdb_violations.len().to_string());
    line("nodes left cordoned", report.cordoned.len().to_string());
}

fn print_blocks(met: &Met) {
    if met.blocks.is_empty() {
        line("blocks met", "none".into());
        return;
    }
    // The longest waits first; on a large cluster, only a few.
    let mut blocks: Vec<_> = met.blocks.iter().collect();
    blocks.sort_by_key(|(node, (first, last, _))| (std::cmp::Reverse(last.duration_since(*first)), *node));
    for (i, (node, (first, last, msg))) in blocks.iter().take(MAX_BLOCKS).enumerate() {
        line(
            if i == 0 { "blocks met" } else { "" },
            format!(
                "DrainBlocked on {node} for {:.1}s: {}",
                last.duration_since(*first).as_secs_f64(),
                clip(msg, 160)
            ),
        );
    }
    if blocks.len() > MAX_BLOCKS {
        line(
            "",
            format!(
                "… and {} more nodes waited on a PodDisruptionBudget",
                blocks.len() - MAX_BLOCKS
            ),
        );
    }
}

fn print_failures(met: &Met) {
    if met.failures.is_empty() {
        line("failures met", "none".into());
        return;
    }
    for (i, ((node, component), msg)) in met.failures.iter().enumerate() {
        line(
            if i == 0 { "failures met" } else { "" },
            format!("{node} ({component}): {}", clip(msg, 160)),
        );
    }
}

/// The demo's result: an error for an incomplete rollout or a broken
/// invariant (drover stopped), else the controller, still running.
fn verdict(
    outcome: Outcome,
    final_cu: Option<&ClusterUpgrade>,
    broken: Vec<String>,
    running: Running,
) -> anyhow::Result<Running> {
    match outcome {
        Err(e) => {
            let _ = running.0.send(true);
            let last = final_cu
                .and_then(|c| cond(c, condition::READY))
                .map(|c| format!("; last Ready condition: {} {}: {}", c.status, c.reason, c.message))
                .unwrap_or_default();
            Err(e.context(format!("drover demo failed{last}")))
        }
        Ok(_) if !broken.is_empty() => {
            let _ = running.0.send(true);
            anyhow::bail!("an invariant was broken: {}", broken.join("; "))
        }
        Ok(_) => Ok(running),
    }
}

/// At most `n` characters, with an ellipsis when cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}
