//! The `ClusterUpgrade` API (`drover.dev/v1alpha1`): its types, the names of
//! its conditions and reasons, the defaults inferred from well-known
//! components, spec validation and CRD generation. No I/O.

pub mod crd;
pub mod floor;
pub mod gates;
pub mod images;
pub mod job;
pub mod known;
pub mod names;
pub mod observed;
pub mod rules;
pub mod selector;
pub mod spec;
pub mod status;
pub mod validate;
pub mod version;
pub mod vocab;

pub use gates::{Canary, FailureAction, HealthCheck, Hook, Hooks, RollbackScope};
pub use observed::{BackupState, ObservedWorkload, Outcome};
pub use spec::*;
pub use status::*;
pub use vocab::{EventReason, NodeState, Reason, StepEvent};
