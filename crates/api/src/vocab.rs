//! drover's typed vocabulary: the condition reasons, the state a node is
//! reported in, and the reasons of the events drover publishes. Each
//! serialises as the exact text status and events always carried (the
//! strings in [`crate::names::reason`]), so the CRD and every reader of
//! status stay compatible; code compares variants, never text.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::reason as text;

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:expr,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text status and events carry.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant whose text is `s`, if any.
            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.as_str()
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// A condition reason (kstatus conventions); see docs/status-reasons.md.
    Reason {
        /// Ready=True: every node in scope verified the desired versions.
        Completed => text::COMPLETED,
        /// Reconciling=True: nodes or components are being upgraded.
        RollingOut => text::ROLLING_OUT,
        /// Reconciling=True: waiting out the soak time after a node or batch.
        Soaking => text::SOAKING,
        /// Reconciling=True: the backup Job is running.
        BackingUp => text::BACKING_UP,
        /// spec.paused is true.
        Paused => text::PAUSED,
        /// No maintenance window is open.
        OutsideWindow => text::OUTSIDE_WINDOW,
        /// Stalled: the spec breaks a rule the schema can check.
        InvalidSpec => text::INVALID_SPEC,
        /// Stalled: the spec breaks the version-skew rules or the version policy.
        SkewViolation => text::SKEW_VIOLATION,
        /// A drain is blocked by PodDisruptionBudgets or unevictable pods.
        DrainBlocked => text::DRAIN_BLOCKED,
        /// Stalled: an upgrade Job failed.
        UpgradeJobFailed => text::UPGRADE_JOB_FAILED,
        /// Stalled: a node's new version did not verify.
        VerificationFailed => text::VERIFICATION_FAILED,
        /// Stalled: the backup Job failed.
        BackupFailed => text::BACKUP_FAILED,
        /// Stalled: a node needed for progress is NotReady.
        NodeNotReady => text::NODE_NOT_READY,
        /// Stalled: nodes cordoned by someone else use up maxUnavailable.
        BudgetExhausted => text::BUDGET_EXHAUSTED,
        /// Stalled: another, older ClusterUpgrade selects some of the same nodes.
        Conflict => text::CONFLICT,
        /// Stalled: a cluster-level workload did not finish its rollout in time.
        RolloutFailed => text::ROLLOUT_FAILED,
        /// Stalled=False: nothing needs a human.
        AsExpected => text::AS_EXPECTED,
        /// Stalled: the rollout is over, with failed or skipped nodes that
        /// spec.strategy.maxFailures tolerated; they keep their old versions.
        CompletedWithFailures => text::COMPLETED_WITH_FAILURES,
        /// A node did not come back from its reboot in time, or a Job asked
        /// for a reboot that drover could not carry out.
        RebootFailed => text::REBOOT_FAILED,
        /// Reconciling=True: a node's step failed and waits for its retry.
        Retrying => text::RETRYING,
        /// Stalled: the spec names an upgrade or backup image outside `drover run --allowed-images`.
        ImageNotAllowed => text::IMAGE_NOT_ALLOWED,
        /// Stalled: PodSecurity admission would refuse the upgrade Jobs' pods.
        PodSecurityForbids => text::POD_SECURITY_FORBIDS,
        /// Stalled: a node's progress record is of a newer format than this drover reads.
        NewerRecord => text::NEWER_RECORD,
        HealthCheckFailed => text::HEALTH_CHECK_FAILED,
        AwaitingApproval => text::AWAITING_APPROVAL,
        RolledBack => text::ROLLED_BACK,
        RollbackRefused => text::ROLLBACK_REFUSED,
        PreDrainHookFailed => text::PRE_DRAIN_HOOK_FAILED,
        PostUncordonHookFailed => text::POST_UNCORDON_HOOK_FAILED,
    }
}

impl Reason {
    /// A failure a fresh try may cure (spec.strategy.retries): a failed
    /// upgrade Job, a version that did not verify, a node that did not come
    /// back from its reboot. A blocked drain or a NotReady node is not.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Reason::UpgradeJobFailed | Reason::VerificationFailed | Reason::RebootFailed
        )
    }

    /// A reason read back from a stored record. Records written by any
    /// drover hold one of the failure reasons; anything else reads as the
    /// most general failure, so an unreadable reason never hides a failure.
    pub fn from_record(s: &str) -> Reason {
        Reason::parse(s).unwrap_or(Reason::UpgradeJobFailed)
    }
}

/// Text read back as a reason, as [`Reason::from_record`] does.
impl From<&str> for Reason {
    fn from(s: &str) -> Reason {
        Reason::from_record(s)
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Reason::from_record(&s))
    }
}

vocabulary! {
    /// How `status.nodes[]` reports a node drover works on.
    NodeState {
        /// Moving through its steps.
        InProgress => "InProgress",
        /// Its drain is blocked (PodDisruptionBudgets, unevictable pods).
        Blocked => "Blocked",
        /// Its upgrade failed for this generation.
        Failed => "Failed",
        /// Its drain timed out and spec.drain.onTimeout is SkipNode: it
        /// keeps its old versions and counts as a failure.
        Skipped => "Skipped",
        /// A step failed and is tried again at `nextRetry`.
        Retrying => "Retrying",
        RolledBack => "RolledBack",
    }
}

impl<'de> Deserialize<'de> for NodeState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NodeState::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown node state {s:?}; expected InProgress, Blocked, Failed, Skipped, Retrying or RolledBack"
            ))
        })
    }
}

impl JsonSchema for NodeState {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NodeState".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "enum": NodeState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        })
    }
}

vocabulary! {
    /// The reason of an event drover publishes about a node step.
    StepEvent {
        /// drover took the node on.
        NodeStarted => "NodeStarted",
        Cordoned => "Cordoned",
        Drained => "Drained",
        Upgraded => "Upgraded",
        Verified => "Verified",
        /// An upgrade Job asked for a reboot; drover reboots the node.
        RebootRequested => "RebootRequested",
        /// The node is back from its reboot (new bootID, Ready).
        Rebooted => "Rebooted",
        /// The node finished and is schedulable again.
        NodeUpgraded => "NodeUpgraded",
        /// The node failed and was handed back.
        NodeFailed => "NodeFailed",
        /// The node was handed back without finishing (the plan changed).
        NodeReleased => "NodeReleased",
        /// A node in scope joined the cluster mid-rollout; it gets the target.
        NodeJoined => "NodeJoined",
        /// A node left the cluster (was deleted) mid-rollout; drover forgot it.
        NodeLeft => "NodeLeft",
    }
}

/// The reason of an event: a node step's, or a condition reason (a
/// condition that changed, a step that failed or a drain that is blocked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReason {
    Step(StepEvent),
    Condition(Reason),
}

impl EventReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::Step(s) => s.as_str(),
            EventReason::Condition(r) => r.as_str(),
        }
    }
}

impl fmt::Display for EventReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<StepEvent> for EventReason {
    fn from(s: StepEvent) -> Self {
        EventReason::Step(s)
    }
}

impl From<Reason> for EventReason {
    fn from(r: Reason) -> Self {
        EventReason::Condition(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_its_text_and_the_texts_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert!(seen.insert(r.as_str()), "{r} twice");
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), *r);
        }
        for s in StepEvent::ALL {
            assert!(seen.insert(s.as_str()), "{s} is also a condition reason");
        }
    }

    #[test]
    fn an_unknown_recorded_reason_reads_as_a_failure_not_an_error() {
        assert_eq!(
            serde_json::from_str::<Reason>("\"Gremlins\"").unwrap(),
            Reason::UpgradeJobFailed
        );
    }

    #[test]
    fn node_states_serialise_as_before_and_refuse_unknown_text() {
        for (s, text) in [
            (NodeState::InProgress, "InProgress"),
            (NodeState::Blocked, "Blocked"),
            (NodeState::Failed, "Failed"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(text));
            assert_eq!(s, text);
        }
        let e = serde_json::from_str::<NodeState>("\"Stuck\"").unwrap_err().to_string();
        assert!(
            e.contains("InProgress, Blocked, Failed, Skipped, Retrying or RolledBack"),
            "{e}"
        );
    }
}
