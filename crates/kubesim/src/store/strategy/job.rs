//! Jobs: the template's containers and restartPolicy (Never or
//! OnFailure), and an immutable selector and template.

use super::super::resources::ResourceType;
use super::super::validation::{self, Typed};
use super::{Admission, Strategy};
use crate::error::{ApiError, Cause};
use k8s_openapi::api::batch::v1 as batch;
use serde_json::Value;

pub struct Job;

impl Strategy for Job {
    fn typed(&self) -> Option<Typed> {
        Some(validation::round_trip::<batch::Job>)
    }

    fn validate(&self, _t: &ResourceType, obj: &mut Value, _cx: &Admission) -> Result<Vec<Cause>, ApiError> {
        Ok(validation::job(obj))
    }

    fn validate_update(&self, _t: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
        validation::immutable_spec_fields(&["selector", "template"], old, new)
    }
}
