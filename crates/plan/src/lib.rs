//! drover's decision core. Observed state in, decisions out: the version
//! and skew rules, the stage order, which nodes may start now, each node's
//! next step and the status to report. No client, no clock, no I/O: every
//! rule is tested without a cluster.

pub mod decide;
pub mod forecast;
pub mod observe;
pub mod progress;
pub mod report;
pub mod selector;
pub mod skew;
pub mod window;

pub use decide::{Action, Group, NodeState, Plan, RolloutStage, Step, after_outcome, plan, step_deadline};
pub use observe::{BackupState, Observation, ObservedNode, ObservedWorkload, OtherUpgrade};
pub use progress::{Failure, NodePhase, NodeProgress, Outcome};
