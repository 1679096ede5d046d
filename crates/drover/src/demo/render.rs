//! What the demo shows while the rollout runs: a progress bar and a node
//! table redrawn in place on a terminal, plain lines otherwise, and event
//! messages (blocked drains, stalls) once each.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use drover_api::names::condition;
use drover_api::{ClusterUpgrade, ClusterUpgradeStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Clock;
use super::poll::Row;
use super::states::{cond, current, drain_blocked, is_true, node_failed};

/// Node rows a live table shows at most.
const MAX_ROWS: usize = 24;

/// Where output goes: a live display on a terminal, plain lines otherwise.
pub enum Display {
    Live {
        mp: MultiProgress,
        bar: ProgressBar,
        header: ProgressBar,
        rows: Vec<ProgressBar>,
    },
    Plain,
}

/// What has been shown: the last progress line and rows (plain lines are
/// printed for changes only), and the event messages already told.
#[derive(Default)]
pub struct Shown {
    pub line: String,
    pub rows: BTreeMap<String, Row>,
    said: BTreeSet<String>,
}

impl Shown {
    /// Workers in the last table.
    pub fn workers(&self) -> usize {
        self.rows.values().filter(|r| r.role == "worker").count()
    }
}

fn row_text(r: &Row) -> String {
    let sched = if r.cordoned { "cordoned" } else { "" };
    format!(
        "  {:<11} {:<14} {:<9} {:<34} {:<9} {:<9} {:<9} {}",
        r.name, r.role, sched, r.step, r.kubelet, r.runtime, r.etcd, r.apiserver
    )
}

fn header_text() -> String {
    format!(
        "  {:<11} {:<14} {:<9} {:<34} {:<9} {:<9} {:<9} {}",
        "NODE", "ROLE", "SCHED", "STEP", "KUBELET", "RUNTIME", "ETCD", "APISERVER"
    )
}

/// The bar's position and length: nodes updated, plus the workloads done.
fn bar_counts(st: &ClusterUpgradeStatus, workloads: &BTreeSet<String>) -> (u64, u64) {
    let done_workloads = st
        .components
        .iter()
        .filter(|c| workloads.contains(&c.name) && c.updated >= c.total && c.total > 0)
        .count();
    let total = st.counts.in_scope as u64 + workloads.len() as u64;
    let pos = st.counts.updated as u64 + done_workloads as u64;
    (pos, total)
}

impl Display {
    pub fn new(live: bool) -> Display {
        if !live {
            return Display::Plain;
        }
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10));
        let bar = mp.add(ProgressBar::new(1));
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:40.cyan/blue}] {pos}/{len} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        let header = mp.add(ProgressBar::new_spinner());
        header.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
        header.set_message(header_text());
        Display::Live {
            mp,
            bar,
            header,
            rows: Vec::new(),
        }
    }

    /// An event line: above the live display, or a plain line.
    pub fn say(&self, line: &str) {
        match self {
            Display::Live { mp, .. } => {
                let _ = mp.println(line);
            }
            Display::Plain => println!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Display::Live { bar, header, rows, .. } = self {
            bar.finish();
            header.finish();
            for r in rows {
                r.finish();
            }
        }
    }

    /// The progress bar and the table, or plain lines for what changed.
    pub fn show(
        &mut self,
        cu: &ClusterUpgrade,
        table: Vec<Row>,
        workloads: &BTreeSet<String>,
        shown: &mut Shown,
        clock: &Clock,
    ) {
        let st = cu.status.clone().unwrap_or_default();
        let ready_c = cond(cu, condition::READY);
        let summary_line = format!(
            "{}/{} nodes updated, stage {}, Ready={} {}",
            st.counts.updated,
            st.counts.in_scope,
            st.stage.as_deref().unwrap_or("-"),
            ready_c.map(|c| c.status.as_str()).unwrap_or("-"),
            ready_c.map(|c| c.reason.as_str()).unwrap_or("-"),
        );
        match self {
            Display::Live { mp, bar, rows, .. } => {
                let (pos, total) = bar_counts(&st, workloads);
                bar.set_length(total.max(1));
                bar.set_position(pos);
                bar.set_message(format!(
                    "stage {} · {}",
                    st.stage.as_deref().unwrap_or("-"),
                    ready_c.map(|c| c.reason.as_str()).unwrap_or("waiting for drover")
                ));
                live_table(mp, rows, &table);
            }
            Display::Plain => {
                if summary_line != shown.line && cu.status.is_some() {
                    println!("{} progress: {summary_line}", clock.stamp());
                }
                plain_rows(&table, &shown.rows, clock);
            }
        }
        shown.line = summary_line;
        shown.rows = table.into_iter().map(|r| (r.name.clone(), r)).collect();
    }

    /// What drover says about a blocked drain (Reconciling's message) and a
    /// stall, each once per node and cause.
    pub fn announce(&self, cu: &ClusterUpgrade, shown: &mut Shown, clock: &Clock) {
        if let Some(c) = cond(cu, condition::RECONCILING)
            && current(cu)
            && drain_blocked(c)
            // Once per node and cause, not once per attempt.
            && shown.said.insert(format!(
                "{}{}",
                c.reason,
                strip_attempt(&c.message)
            ))
        {
            self.say(&format!("{} DrainBlocked: {}", clock.stamp(), c.message));
        }
        if let Some(c) = cond(cu, condition::STALLED)
            && current(cu)
            && is_true(c)
            && shown.said.insert(format!("stalled {} {}", c.reason, c.message))
        {
            self.say(&format!("{} Stalled/{}: {}", clock.stamp(), c.reason, c.message));
            let nodes = cu.status.as_ref().map(|s| s.nodes.as_slice()).unwrap_or_default();
            for n in nodes.iter().filter(|n| node_failed(n)) {
                self.say(&format!(
                    "{}   failed node {}: step {}, component {}, attempts {}: {}",
                    clock.stamp(),
                    n.name,
                    n.step,
                    n.component.as_deref().unwrap_or("-"),
                    n.attempts,
                    n.message
                ));
            }
        }
    }
}

/// The live node table: the nodes at work first when they do not all fit.
fn live_table(mp: &MultiProgress, bars: &mut Vec<ProgressBar>, table: &[Row]) {
    let mut shown: Vec<&Row> = table.iter().collect();
    if shown.len() > MAX_ROWS {
        shown.sort_by_key(|r| (r.step == "done" || r.step == "waiting", r.name.clone()));
        shown.truncate(MAX_ROWS);
        shown.sort_by(|a, b| a.name.cmp(&b.name));
    }
    while bars.len() < shown.len() {
        let b = mp.add(ProgressBar::new_spinner());
        b.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
        bars.push(b);
    }
    for (b, r) in bars.iter().zip(&shown) {
        b.set_message(row_text(r));
    }
}

/// A plain line for each node whose step or cordon changed.
fn plain_rows(table: &[Row], last: &BTreeMap<String, Row>, clock: &Clock) {
    for r in table {
        if last
            .get(&r.name)
            .is_none_or(|old| (&old.step, old.cordoned) != (&r.step, r.cordoned))
        {
            println!(
                "{} {}: {}{} (kubelet {}, runtime {}, etcd {}, apiserver {})",
                clock.stamp(),
                r.name,
                r.step,
                if r.cordoned { " [cordoned]" } else { "" },
                r.kubelet,
                r.runtime,
                r.etcd,
                r.apiserver
            );
        }
    }
}

/// A message without its `(attempt N)`, to tell it once per node and cause.
fn strip_attempt(message: &str) -> String {
    match message.find(" (attempt ") {
        Some(i) => {
            let rest = &message[i + " (attempt ".len()..];
            let after = rest.find(')').map_or("", |j| &rest[j + 1..]);
            format!("{}{after}", &message[..i])
        }
        None => message.to_string(),
    }
}
