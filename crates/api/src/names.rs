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
    /// Stalled: the namespace's PodSecurity admission would refuse the
    /// upgrade Jobs' privileged pods.
    pub const POD_SECURITY_FORBIDS: &str = "PodSecurityForbids";
    /// Stalled: a node's progress record is of a newer format than this drover reads.
    pub const NEWER_RECORD: &str = "NewerRecord";
    /// A health check (spec.healthChecks) has not passed: before a node
    /// starts it holds; after a node's uncordon, past its timeout, the node fails.
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
    /// Ready=False, Reconciling=True: the canary is done and soaked; the
    /// rest waits for spec.approvedCanary.
    pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
    /// Stalled: failed nodes were returned to their previous versions.
    pub const ROLLED_BACK: &str = "RolledBack";
    /// Stalled: a failed node could not be rolled back (etcd or a
    /// control-plane minor, a skew rule, no previous version known).
    pub const ROLLBACK_REFUSED: &str = "RollbackRefused";
    /// The pre-drain hook Job failed or timed out.
    pub const PRE_DRAIN_HOOK_FAILED: &str = "PreDrainHookFailed";
    /// The post-uncordon hook Job failed or timed out.
    pub const POST_UNCORDON_HOOK_FAILED: &str = "PostUncordonHookFailed";
}

/// The taint drover puts on workers still to be upgraded (effect
/// PreferNoSchedule, value: the ClusterUpgrade's name), so that the
/// scheduler places evicted pods' replacements on nodes already upgraded and
/// a pod moves once. drover removes its own with the node's uncordon, and
/// every one of its own when the rollout is done, refused or deleted.
pub mod taint {
    pub const UPGRADE_PENDING: &str = "drover.dev/upgrade-pending";
    pub const EFFECT: &str = "PreferNoSchedule";
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
    /// The cluster-autoscaler leaves a node with this set to "true" alone
    /// (no scale-down). drover sets it with its cordon.
    pub const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";
    /// Karpenter does not disrupt (consolidate, expire, drift) a node with
    /// this set to "true". drover sets it with its cordon.
    pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
    /// The two above, the guards drover puts on a node it cordons.
    pub const DISRUPTION_GUARDS: [&str; 2] = [SCALE_DOWN_DISABLED, DO_NOT_DISRUPT];
    /// Which of the guards drover added itself (comma-separated keys), set
    /// in the cordon's patch: the uncordon removes only these, so a guard
    /// an admin had put on the node stays.
    pub const GUARDS_ADDED: &str = "drover.dev/guards-added";
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
/// The field manager drover applies workload components' manifests with
/// (server-side apply), distinct from its own so that `managedFields` tell
/// the manifest's fields from drover's status and image changes.
pub const MANIFEST_FIELD_MANAGER: &str = "drover-manifest";

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

/// The hash that names the backup Job: the target and everything the Job
/// runs (image, command, args, env, namespace, nodeSelector, hostRoot,
/// timeout), so a changed `spec.backup` runs a new Job, as a changed target
/// does. The fields are listed by hand, not serialised from the struct, so
/// a field added to `BackupJob` later does not rename every backup Job.
pub fn backup_hash(spec: &crate::ClusterUpgradeSpec) -> String {
    let target = target_string(spec);
    let Some(b) = &spec.backup else {
        return short_hash(&target);
    };
    let env: Vec<[&str; 2]> = b.env.iter().map(|e| [e.name.as_str(), e.value.as_str()]).collect();
    let runs = serde_json::json!([
        target,
        b.image,
        b.command,
        b.args,
        env,
        b.namespace,
        b.node_selector,
        b.host_root,
        b.timeout
    ]);
    short_hash(&runs.to_string())
}

/// The backup Job's name for a backup hash ([`backup_hash`]): one Job per
/// ClusterUpgrade, target and backup spec.
pub fn backup_job_name(upgrade: &str, backup_hash: &str) -> String {
    let prefix: String = upgrade.chars().take(40).collect();
    format!("{}-backup-{backup_hash}", prefix.trim_end_matches('-'))
}
