//! Names shared by every layer: condition types, reasons, annotations,
//! labels. One place, so the status, the events and the docs agree.

/// Condition types (kstatus conventions: Flux and `kubectl wait` read these).
pub mod condition {
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
}

/// Condition reasons.
pub mod reason {
    /// Ready=True: every node in scope verified the desired versions.
    pub const COMPLETED: &str = "Completed";
    /// Reconciling=True: nodes or components are being upgraded.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// Reconciling=True: waiting out the soak time after a node or batch.
    pub const SOAKING: &str = "Soaking";
    /// Reconciling=True: waiting for the budget to allow the next nodes.
    pub const WAITING_FOR_BUDGET: &str = "WaitingForBudget";
    /// Reconciling=True: the backup Job is running.
    pub const BACKING_UP: &str = "BackingUp";
    /// spec.paused is true.
    pub const PAUSED: &str = "Paused";
    /// Stalled: no maintenance window is open.
    pub const OUTSIDE_WINDOW: &str = "OutsideWindow";
    /// Stalled: the spec breaks a rule the schema can check.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Stalled: the spec breaks the Kubernetes version-skew rules or the version policy.
    pub const SKEW_VIOLATION: &str = "SkewViolation";
    /// Stalled: a drain is blocked by PodDisruptionBudgets or unevictable pods.
    pub const DRAIN_BLOCKED: &str = "DrainBlocked";
    /// Stalled: an upgrade Job failed.
    pub const UPGRADE_JOB_FAILED: &str = "UpgradeJobFailed";
    /// Stalled: a node's new version did not verify.
    pub const VERIFICATION_FAILED: &str = "VerificationFailed";
    /// Stalled: the backup Job failed.
    pub const BACKUP_FAILED: &str = "BackupFailed";
    /// Stalled: a node needed for progress is NotReady.
    pub const NODE_NOT_READY: &str = "NodeNotReady";
    /// Stalled: nodes cordoned by someone else use up maxUnavailable.
    pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";
    /// Stalled: another, older ClusterUpgrade selects some of the same nodes.
    pub const CONFLICT: &str = "Conflict";
    /// Stalled: a cluster-level workload did not finish its rollout in time.
    pub const ROLLOUT_FAILED: &str = "RolloutFailed";
    /// Ready=False/Stalled=False when nothing is wrong and work remains.
    pub const IN_PROGRESS: &str = "InProgress";
    /// Stalled=False: nothing needs a human.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// Stalled: over, with failures maxFailures tolerated.
    pub const COMPLETED_WITH_FAILURES: &str = "CompletedWithFailures";
    /// A node did not come back from its reboot, or could not be rebooted.
    pub const REBOOT_FAILED: &str = "RebootFailed";
    /// Reconciling=True: a failed step waits for its retry.
    pub const RETRYING: &str = "Retrying";
    /// Stalled: the spec names an upgrade or backup image outside `drover run --allowed-images`.
    pub const IMAGE_NOT_ALLOWED: &str = "ImageNotAllowed";
}

/// Node annotations drover writes. All rollout state lives in the API.
pub mod annotation {
    /// The ClusterUpgrade that cordoned this node. Only that cordon is ever undone.
    pub const CORDONED_BY: &str = "drover.dev/cordoned-by";
    /// Set by an admin on a node: drover never uncordons it, and says so in
    /// `status.leftCordoned` with the annotation's value as the reason.
    pub const KEEP_CORDONED: &str = "drover.dev/keep-cordoned";
    /// Per-node progress (JSON `NodeProgress`).
    pub const PROGRESS: &str = "drover.dev/progress";
    /// Prefix of the per-component verified-version annotations
    /// (`drover.dev/verified.<component>: <version>`).
    pub const VERIFIED_PREFIX: &str = "drover.dev/verified.";
}

/// Well-known node role labels.
pub mod label {
    pub const ROLE_CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";
    pub const ROLE_MASTER: &str = "node-role.kubernetes.io/master";
    pub const ROLE_ETCD: &str = "node-role.kubernetes.io/etcd";
    /// Labels drover puts on the Jobs it creates.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "drover";
    pub const UPGRADE: &str = "drover.dev/upgrade";
    pub const NODE: &str = "drover.dev/node";
    pub const COMPONENT: &str = "drover.dev/component";
}

/// The field manager drover writes status with (server-side apply).
pub const FIELD_MANAGER: &str = "drover";
/// The finalizer that lets drover undo its cordons before a ClusterUpgrade goes.
pub const FINALIZER: &str = "drover.dev/cleanup";

/// The target of a spec: `name=version,…` in spec order.
pub fn target_string(spec: &crate::ClusterUpgradeSpec) -> String {
    spec.components
        .iter()
        .map(|c| format!("{}={}", c.name, c.version))
        .collect::<Vec<_>>()
        .join(",")
}

/// FNV-1a, 64 bits, as 12 hex digits: stable across builds and platforms,
/// for naming per-target and per-step objects.
pub fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

/// The backup Job's name for a target: one Job per ClusterUpgrade and target.
pub fn backup_job_name(upgrade: &str, target_hash: &str) -> String {
    let prefix: String = upgrade.chars().take(40).collect();
    format!("{}-backup-{target_hash}", prefix.trim_end_matches('-'))
}
