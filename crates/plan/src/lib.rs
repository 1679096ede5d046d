//! drover's decision core. Observed state in, decisions out: spec
//! acceptance, the stage order, the gates that hold new work, which nodes
//! may start now, each node's next step with its full transition, and the
//! status to report. No client, no clock, no I/O: every rule is tested
//! without a cluster.
//!
//! | module | owns |
//! | --- | --- |
//! | [`accept`] | spec acceptance; durations and selectors parsed once |
//! | [`view`] | a node as the planner sees it: group, scope, standing |
//! | [`stage`] | the rollout's stages and which one is current |
//! | [`node`] | the node state machine: transitions and timeouts |
//! | [`gates`] | the checks that hold new work, in order |
//! | [`schedule`] | one scheduler per stage: what starts now |
//! | [`action`] | what the planner asks for, each with its transition |
//! | [`decide`] | one pass, from the above; the plan |
//! | [`apply`] | an action applied to an observation (forecast, tests) |
//! | [`forecast`] | the planner run forward (`drover plan`) |
//! | [`report`] | the status for a plan |
//! | [`membership`] | nodes that joined or left mid-rollout, as events |
//! | [`steer`] | the PreferNoSchedule taint on workers still to be upgraded |

pub mod accept;
pub mod action;
pub mod apply;
pub mod canary;
pub mod decide;
pub mod forecast;
pub mod gates;
pub mod membership;
pub mod node;
pub mod observe;
pub mod progress;
pub mod report;
pub mod schedule;
pub mod skew;
pub mod stage;
pub mod steer;
pub mod view;
pub mod window;

pub use accept::{Accepted, Refusal, TypedCheck};
pub use action::{Action, CheckResult, HealthJudge, HookPoint, OnTimeout, Step, StepNote, Then, Transition, step_note};
pub use canary::{CanaryState, canary_hash};
pub use decide::{Plan, Superseded, plan};
pub use drover_api::{BackupState, ObservedWorkload, Outcome};
pub use gates::Hold;
pub use observe::{Observation, ObservedNode, OtherUpgrade, PodsRefused};
pub use progress::{FORMAT, Failure, NodePhase, NodeProgress, Record, Writer};
pub use stage::RolloutStage;
pub use view::{Group, NodeView, Standing};
