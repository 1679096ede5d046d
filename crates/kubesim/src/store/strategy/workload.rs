//! Deployments, replica sets, daemon sets and stateful sets: a selector
//! that is set, not empty and matches the template's labels, the
//! template's containers, and an immutable selector.

use super::super::resources::ResourceType;
use super::super::validation::{self, Typed};
use super::{Admission, Strategy};
use crate::error::{ApiError, Cause};
use serde_json::Value;
use std::marker::PhantomData;

/// The workload strategy, for the workload's typed model `T`.
pub struct Workload<T>(pub(super) PhantomData<fn() -> T>);

impl<T: k8s_openapi::Resource + serde::de::DeserializeOwned + serde::Serialize> Strategy for Workload<T> {
    fn typed(&self) -> Option<Typed> {
        Some(validation::round_trip::<T>)
    }

    fn validate(&self, t: &ResourceType, obj: &mut Value, _cx: &Admission) -> Result<Vec<Cause>, ApiError> {
        Ok(validation::workload(t, obj))
    }

    fn validate_update(&self, _t: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
        validation::immutable_spec_fields(&["selector"], old, new)
    }
}
