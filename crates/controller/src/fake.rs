//! A recording fake [`NodeOps`]: every call is recorded in order (the
//! operation, the node, the component and version), and each is answered as
//! scripted: `Outcome::Done` unless told otherwise per operation or per
//! operation and node. Built for the controller's unit tests; other crates
//! get it with the `fake` feature.
//!
//! ```
//! # use drover_controller::fake::{FakeNodeOps, Op};
//! # use drover_api::{Outcome, Reason};
//! let ops = FakeNodeOps::new()
//!     .answer(Op::Drain, Outcome::Blocked { message: "a budget".into(), timed_out: false })
//!     .answer_on(Op::Upgrade, "w2", Outcome::Failed { reason: Reason::UpgradeJobFailed, message: "exit 1".into() });
//! assert!(ops.calls().is_empty());
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use drover_api::{BackupJob, BackupState, ObservedWorkload, Outcome, Verify, WorkloadUpgrade};
use drover_nodeops::{DrainOptions, NodeOps, NodeOpsError, Owner, RebootRequest, Result, UpgradeRequest};
use jiff::Timestamp;
use tokio::sync::watch;

/// The operations of [`NodeOps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Cordon,
    Uncordon,
    Drain,
    Upgrade,
    Verify,
    Reboot,
    UpgradeWorkload,
    ObserveWorkload,
    EnsureBackup,
    ObserveBackups,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Cordon {
        node: String,
        owner: String,
    },
    Uncordon {
        node: String,
        owner: String,
    },
    /// With the drain's deadline, as the transition gave it.
    Drain {
        node: String,
        deadline: Timestamp,
    },
    Upgrade {
        node: String,
        component: String,
        version: String,
        owner: String,
    },
    Verify {
        node: String,
        component: String,
        version: String,
        deadline: Option<Timestamp>,
    },
    /// With the bootID before and whether drover's reboot Job was asked for.
    Reboot {
        node: String,
        component: String,
        boot_id: String,
        run_job: bool,
        deadline: Option<Timestamp>,
    },
    /// The workload as `namespace/name` (several joined by `,`).
    UpgradeWorkload {
        workload: String,
        version: String,
    },
    ObserveWorkload {
        workload: String,
        version: String,
    },
    EnsureBackup {
        owner: String,
        backup_hash: String,
    },
    ObserveBackups {
        owner: String,
    },
}

impl Call {
    pub fn op(&self) -> Op {
        match self {
            Call::Cordon { .. } => Op::Cordon,
            Call::Uncordon { .. } => Op::Uncordon,
            Call::Drain { .. } => Op::Drain,
            Call::Upgrade { .. } => Op::Upgrade,
            Call::Verify { .. } => Op::Verify,
            Call::Reboot { .. } => Op::Reboot,
            Call::UpgradeWorkload { .. } => Op::UpgradeWorkload,
            Call::ObserveWorkload { .. } => Op::ObserveWorkload,
            Call::EnsureBackup { .. } => Op::EnsureBackup,
            Call::ObserveBackups { .. } => Op::ObserveBackups,
        }
    }

    /// The node a node operation was called for.
    pub fn node(&self) -> Option<&str> {
        match self {
            Call::Cordon { node, .. }
            | Call::Uncordon { node, .. }
            | Call::Drain { node, .. }
            | Call::Upgrade { node, .. }
            | Call::Verify { node, .. }
            | Call::Reboot { node, .. } => Some(node),
            _ => None,
        }
    }
}

/// How a node operation is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The operation ran and came to this.
    Outcome(Outcome),
    /// The operation could not be attempted: the API server answered
    /// `status` (400, 403 and 422 are refusals for good, the rest transient).
    Http { status: u16, message: String },
}

impl From<Outcome> for Answer {
    fn from(o: Outcome) -> Self {
        Answer::Outcome(o)
    }
}

/// See the module documentation.
pub struct FakeNodeOps {
    calls: Mutex<Vec<Call>>,
    /// How many calls were recorded, for waiting on them.
    count: watch::Sender<usize>,
    by_op: Mutex<HashMap<Op, Answer>>,
    by_node: Mutex<HashMap<(Op, String), Answer>>,
    workloads: Mutex<HashMap<String, ObservedWorkload>>,
    backups: Mutex<BTreeMap<String, BackupState>>,
    backup_state: Mutex<BackupState>,
}

impl Default for FakeNodeOps {
    fn default() -> Self {
        FakeNodeOps {
            calls: Mutex::default(),
            count: watch::Sender::new(0),
            by_op: Mutex::default(),
            by_node: Mutex::default(),
            workloads: Mutex::default(),
            backups: Mutex::default(),
            backup_state: Mutex::new(BackupState::Running),
        }
    }
}

impl FakeNodeOps {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answer every call of `op` so (unless a per-node answer applies).
    pub fn answer(self, op: Op, answer: impl Into<Answer>) -> Self {
        self.by_op.lock().expect("lock").insert(op, answer.into());
        self
    }

    /// Answer `op` on `node` so.
    pub fn answer_on(self, op: Op, node: &str, answer: impl Into<Answer>) -> Self {
        self.by_node
            .lock()
            .expect("lock")
            .insert((op, node.to_string()), answer.into());
        self
    }

    /// What `observe_workload` reports for `namespace/name` (default: nothing rolled out).
    pub fn workload(self, namespace_name: &str, seen: ObservedWorkload) -> Self {
        self.workloads
            .lock()
            .expect("lock")
            .insert(namespace_name.to_string(), seen);
        self
    }

    /// What `observe_backups` reports (default: no backup Jobs).
    pub fn backups(self, jobs: BTreeMap<String, BackupState>) -> Self {
        *self.backups.lock().expect("lock") = jobs;
        self
    }

    /// What `ensure_backup` reports (default: Running).
    pub fn backup_state(self, state: BackupState) -> Self {
        *self.backup_state.lock().expect("lock") = state;
        self
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }

    /// The calls of node operations (cordon, uncordon, drain, upgrade,
    /// verify), in order: what a pass did to nodes, without its observations.
    pub fn node_calls(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.node().is_some()).collect()
    }

    /// Wait until at least `n` calls were recorded, at most `within`;
    /// the calls so far either way.
    pub async fn wait_for_calls(&self, n: usize, within: Duration) -> Vec<Call> {
        let mut seen = self.count.subscribe();
        let _ = tokio::time::timeout(within, seen.wait_for(|c| *c >= n)).await;
        self.calls()
    }

    fn record(&self, call: Call) -> Answer {
        let op = call.op();
        let node = call.node().map(str::to_string);
        self.calls.lock().expect("lock").push(call);
        self.count.send_modify(|c| *c += 1);
        let by_node = node.and_then(|n| self.by_node.lock().expect("lock").get(&(op, n)).cloned());
        by_node
            .or_else(|| self.by_op.lock().expect("lock").get(&op).cloned())
            .unwrap_or(Answer::Outcome(Outcome::Done))
    }

    fn outcome(&self, call: Call) -> Result<Outcome> {
        match self.record(call) {
            Answer::Outcome(o) => Ok(o),
            Answer::Http { status, message } => Err(NodeOpsError::Http {
                method: "PATCH".into(),
                path: "/fake".into(),
                status,
                message,
            }),
        }
    }

    /// A call whose answer is not an `Outcome`: only an `Http` answer matters (as an error).
    fn attempt(&self, call: Call) -> Result<()> {
        self.outcome(call).map(|_| ())
    }
}

/// `namespace/name` of each workload, joined by `,`.
fn workload_name(w: &WorkloadUpgrade) -> String {
    let names: Vec<String> = w
        .workloads()
        .iter()
        .map(|t| format!("{}/{}", t.namespace, t.name))
        .collect();
    names.join(",")
}

impl NodeOps for FakeNodeOps {
    async fn cordon(&self, node: &str, owner: &str) -> Result<Outcome> {
        self.outcome(Call::Cordon {
            node: node.into(),
            owner: owner.into(),
        })
    }

    async fn uncordon(&self, node: &str, owner: &str) -> Result<Outcome> {
        self.outcome(Call::Uncordon {
            node: node.into(),
            owner: owner.into(),
        })
    }

    async fn drain(&self, node: &str, opts: &DrainOptions) -> Result<Outcome> {
        self.outcome(Call::Drain {
            node: node.into(),
            deadline: opts.deadline,
        })
    }

    async fn upgrade(&self, req: &UpgradeRequest<'_>) -> Result<Outcome> {
        self.outcome(Call::Upgrade {
            node: req.node.into(),
            component: req.component.into(),
            version: req.version.into(),
            owner: req.owner.name.clone(),
        })
    }

    async fn verify(
        &self,
        node: &str,
        component: &str,
        version: &str,
        _verify: &Verify,
        deadline: Option<Timestamp>,
    ) -> Result<Outcome> {
        self.outcome(Call::Verify {
            node: node.into(),
            component: component.into(),
            version: version.into(),
            deadline,
        })
    }

    async fn reboot(&self, req: &RebootRequest<'_>) -> Result<Outcome> {
        self.outcome(Call::Reboot {
            node: req.node.into(),
            component: req.component.into(),
            boot_id: req.boot_id.into(),
            run_job: req.run_job,
            deadline: req.deadline,
        })
    }

    async fn upgrade_workload(&self, w: &WorkloadUpgrade, version: &str) -> Result<Outcome> {
        self.outcome(Call::UpgradeWorkload {
            workload: workload_name(w),
            version: version.into(),
        })
    }

    async fn observe_workload(&self, w: &WorkloadUpgrade, version: &str) -> Result<ObservedWorkload> {
        let name = workload_name(w);
        self.attempt(Call::ObserveWorkload {
            workload: name.clone(),
            version: version.into(),
        })?;
        Ok(self
            .workloads
            .lock()
            .expect("lock")
            .get(&name)
            .cloned()
            .unwrap_or_default())
    }

    async fn ensure_backup(&self, owner: &Owner, backup_hash: &str, _b: &BackupJob) -> Result<BackupState> {
        self.attempt(Call::EnsureBackup {
            owner: owner.name.clone(),
            backup_hash: backup_hash.into(),
        })?;
        Ok(self.backup_state.lock().expect("lock").clone())
    }

    async fn observe_backups(&self, owner: &Owner, _b: &BackupJob) -> Result<BTreeMap<String, BackupState>> {
        self.attempt(Call::ObserveBackups {
            owner: owner.name.clone(),
        })?;
        Ok(self.backups.lock().expect("lock").clone())
    }

    async fn job_pod_refusal(&self, _req: &UpgradeRequest<'_>) -> Result<Option<String>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> DrainOptions {
        DrainOptions::from_spec(&drover_api::Drain::default(), Timestamp::UNIX_EPOCH)
    }

    #[tokio::test]
    async fn calls_are_recorded_in_order_and_answered_per_node_then_per_operation() {
        let blocked = Outcome::Blocked {
            message: "a budget".into(),
            timed_out: false,
        };
        let ops = FakeNodeOps::new()
            .answer(Op::Drain, blocked.clone())
            .answer_on(Op::Drain, "w2", Outcome::Done)
            .answer_on(
                Op::Cordon,
                "w3",
                Answer::Http {
                    status: 422,
                    message: "refused".into(),
                },
            );
        assert_eq!(ops.drain("w1", &opts()).await.unwrap(), blocked);
        assert_eq!(ops.drain("w2", &opts()).await.unwrap(), Outcome::Done);
        assert_eq!(ops.cordon("w1", "u").await.unwrap(), Outcome::Done);
        let refused = ops.cordon("w3", "u").await.unwrap_err();
        assert_eq!(
            drover_nodeops::refused_for_good(&refused).as_deref(),
            Some("refused (422)")
        );
        let calls = ops.wait_for_calls(4, Duration::from_secs(1)).await;
        let seen: Vec<_> = calls.iter().map(|c| (c.op(), c.node().unwrap())).collect();
        assert_eq!(
            seen,
            [
                (Op::Drain, "w1"),
                (Op::Drain, "w2"),
                (Op::Cordon, "w1"),
                (Op::Cordon, "w3")
            ]
        );
        assert_eq!(ops.node_calls(), calls);
    }
}
