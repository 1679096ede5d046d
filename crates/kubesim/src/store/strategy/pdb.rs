//! PodDisruptionBudgets: names that are path segments (the real server's
//! rule for them; `generateName` is not checked), valid percentages, and
//! the parsed-selector index evictions use.

use super::super::resources::ResourceType;
use super::super::validation::{self, Typed};
use super::{Admission, Indexes, Strategy};
use crate::error::{ApiError, Cause};
use crate::meta;
use k8s_openapi::api::policy::v1 as policy;
use serde_json::Value;

pub struct PodDisruptionBudget;

impl Strategy for PodDisruptionBudget {
    fn typed(&self) -> Option<Typed> {
        Some(validation::round_trip::<policy::PodDisruptionBudget>)
    }

    fn validate_name(&self, _t: &ResourceType, name: &str) -> Option<Cause> {
        meta::validate_path_segment(name, "metadata.name")
    }

    fn validate_generate_name(&self, _t: &ResourceType, _prefix: &str) -> Option<Cause> {
        None
    }

    fn validate(&self, _t: &ResourceType, obj: &mut Value, _cx: &Admission) -> Result<Vec<Cause>, ApiError> {
        Ok(validation::disruption_budget(obj))
    }

    fn indexes(&self) -> Indexes {
        Indexes {
            node_name: false,
            selector: true,
        }
    }
}
