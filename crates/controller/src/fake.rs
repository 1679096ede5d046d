//! A recording fake [`NodeOps`]: every call is recorded in order (the
//! operation, the node, the component and version), and each is answered as
//! scripted: `Outcome::Done` unless told otherwise per operation or per
//! operation and node. Built for the controller's unit tests; other crates
//! get it with the `fake` feature. Health checks pass unless scripted per
//! check (and node), with answers given in turn.
//!
//! ```
//! # use drover_controller::fake::{FakeNodeOps, Op};
//! # use drover_api::{Outcome, Reason};
//! # use drover_nodeops::CheckAnswer;
//! let ops = FakeNodeOps::new()
//!     .answer(Op::Drain, Outcome::Blocked { message: "a budget".into(), timed_out: false })
//!     .answer_on(Op::Upgrade, "w2", Outcome::Failed { reason: Reason::UpgradeJobFailed, message: "exit 1".into() })
//!     .answer_health_on("api", "w2", [CheckAnswer::fail("HTTP 503"), CheckAnswer::pass("HTTP 200")]);
//! assert!(ops.calls().is_empty());
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use drover_api::{BackupJob, BackupState, ObservedWorkload, Outcome, Verify, WorkloadUpgrade};
use drover_nodeops::{
    CheckAnswer, DrainOptions, HealthRequest, NodeOps, NodeOpsError, Owner, RebootRequest, Result, UpgradeRequest,
};
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
    Health,
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
    /// One try of the health check named `check`, about `node` (an
    /// observation: not among [`FakeNodeOps::node_calls`]).
    Health {
        check: String,
        node: String,
        component: String,
        since: Option<Timestamp>,
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
            Call::Health { .. } => Op::Health,
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

/// How one try of a health check is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthAnswer {
    /// The check ran and saw this.
    Check(CheckAnswer),
    /// drover's own request failed: the API server answered `status`.
    Http { status: u16, message: String },
}

impl From<CheckAnswer> for HealthAnswer {
    fn from(a: CheckAnswer) -> Self {
        HealthAnswer::Check(a)
    }
}

/// A health check's name, and the node its answers are for (None: every node).
type HealthKey = (String, Option<String>);

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
    /// Health answers by (check, node); node None for every node. Given in
    /// turn, the last one repeated.
    health: Mutex<HashMap<HealthKey, VecDeque<HealthAnswer>>>,
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
            health: Mutex::default(),
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

    /// Answer the health check `check` with `answers` in turn, on every
    /// node (unless a per-node answer applies); the last one repeats.
    pub fn answer_health<A: Into<HealthAnswer>>(self, check: &str, answers: impl IntoIterator<Item = A>) -> Self {
        self.script_health(check, None, answers)
    }

    /// Answer the health check `check` about `node` with `answers` in turn; the last one repeats.
    pub fn answer_health_on<A: Into<HealthAnswer>>(
        self,
        check: &str,
        node: &str,
        answers: impl IntoIterator<Item = A>,
    ) -> Self {
        self.script_health(check, Some(node), answers)
    }

    fn script_health<A: Into<HealthAnswer>>(
        self,
        check: &str,
        node: Option<&str>,
        answers: impl IntoIterator<Item = A>,
    ) -> Self {
        let answers: VecDeque<HealthAnswer> = answers.into_iter().map(Into::into).collect();
        assert!(!answers.is_empty(), "script at least one answer for {check}");
        self.health
            .lock()
            .expect("lock")
            .insert((check.to_string(), node.map(str::to_string)), answers);
        self
    }

    /// The next scripted answer of `check` about `node`: passes unless scripted.
    fn next_health(&self, check: &str, node: &str) -> HealthAnswer {
        let mut script = self.health.lock().expect("lock");
        let per_node = (check.to_string(), Some(node.to_string()));
        let key = if script.contains_key(&per_node) {
            per_node
        } else {
            (check.to_string(), None)
        };
        match script.get_mut(&key) {
            None => HealthAnswer::Check(CheckAnswer::pass(format!("{check} passed on {node} (fake)"))),
            Some(answers) if answers.len() > 1 => answers.pop_front().expect("not empty"),
            Some(answers) => answers.front().cloned().expect("not empty"),
        }
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

    async fn health(&self, req: &HealthRequest<'_>) -> Result<CheckAnswer> {
        self.record(Call::Health {
            check: req.check.name.clone(),
            node: req.node.into(),
            component: req.component.into(),
            since: req.since,
        });
        match self.next_health(&req.check.name, req.node) {
            HealthAnswer::Check(a) => Ok(a),
            HealthAnswer::Http { status, message } => Err(NodeOpsError::Http {
                method: "GET".into(),
                path: "/fake".into(),
                status,
                message,
            }),
        }
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

    fn check(name: &str) -> drover_api::HealthCheck {
        serde_json::from_value(serde_json::json!({"name": name, "http": {"url": "http://x/healthz"}})).unwrap()
    }

    fn req<'a>(check: &'a drover_api::HealthCheck, node: &'a str) -> HealthRequest<'a> {
        HealthRequest {
            check,
            node,
            component: "kubelet",
            since: Some(Timestamp::UNIX_EPOCH),
            control_plane: &[],
            etcd: &[],
            is_member: false,
            namespace: "drover-system",
        }
    }

    #[tokio::test]
    async fn health_checks_pass_unless_scripted_answer_in_turn_and_are_recorded_as_observations() {
        let (api, alerts) = (check("api"), check("alerts"));
        let ops = FakeNodeOps::new()
            .answer_health("api", [CheckAnswer::fail("HTTP 503"), CheckAnswer::pass("HTTP 200")])
            .answer_health_on(
                "api",
                "w2",
                [HealthAnswer::Http {
                    status: 403,
                    message: "secrets is forbidden".into(),
                }],
            );
        // Unscripted: passes.
        let a = ops.health(&req(&alerts, "w1")).await.unwrap();
        assert!(a.passed, "{a:?}");
        // Scripted for every node: in turn, the last one repeated.
        let seen: Vec<CheckAnswer> = [
            ops.health(&req(&api, "w1")).await.unwrap(),
            ops.health(&req(&api, "w1")).await.unwrap(),
            ops.health(&req(&api, "w3")).await.unwrap(),
        ]
        .into();
        assert_eq!(
            seen,
            [
                CheckAnswer::fail("HTTP 503"),
                CheckAnswer::pass("HTTP 200"),
                CheckAnswer::pass("HTTP 200")
            ]
        );
        // Per node before per check; an Http answer is drover's own request failing.
        let e = ops.health(&req(&api, "w2")).await.unwrap_err();
        assert_eq!(
            drover_nodeops::refused_for_good(&e).as_deref(),
            Some("secrets is forbidden (403)")
        );
        let calls = ops.calls();
        assert_eq!(calls.len(), 5);
        assert_eq!(
            calls[0],
            Call::Health {
                check: "alerts".into(),
                node: "w1".into(),
                component: "kubelet".into(),
                since: Some(Timestamp::UNIX_EPOCH),
            }
        );
        assert!(calls.iter().all(|c| c.op() == Op::Health));
        assert!(ops.node_calls().is_empty(), "health checks touch no node");
    }
}
