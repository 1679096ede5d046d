//! Custom resources (every resource a CRD defines): metadata decoded as an
//! ObjectMeta, the body pruned, defaulted and validated against the
//! version's `openAPIV3Schema` (structural rules and CEL), a `kind` cause
//! for a body of another kind, no unconditional update and no strategic
//! merge patch, as on the real server.

use super::super::resources::ResourceType;
use super::super::{schema, validation};
use super::{Admission, Strategy};
use crate::error::{ApiError, Cause};
use crate::meta;
use serde_json::{Value, json};

pub struct Custom;

impl Strategy for Custom {
    fn decode(&self, t: &ResourceType, obj: &mut Value, strict: bool) -> Result<(), ApiError> {
        validation::decode_custom_metadata(t, obj, strict)
    }

    fn kind_mismatch(&self, t: &ResourceType, kind: &str, obj: &Value) -> ApiError {
        let name = obj["metadata"]["name"].as_str().unwrap_or("");
        ApiError::invalid(
            &t.group,
            kind,
            name,
            vec![Cause::invalid("kind", &json!(kind), &format!("must be {}", t.kind))],
        )
    }

    fn apply_type_error(&self, t: &ResourceType, name: &str, body: &Value, schema: Option<&Value>) -> Option<ApiError> {
        schema::custom_apply_problem(body, schema?).map(|p| validation::apply_type_error(t, name, body, &p))
    }

    fn allow_unconditional_update(&self) -> bool {
        false
    }

    fn supports_strategic_merge(&self) -> bool {
        false
    }

    // As kubesim always has: a custom resource whose plural is
    // `namespaces` gets a namespace's name rules.
    fn validate_name(&self, t: &ResourceType, name: &str) -> Option<Cause> {
        meta::validate_name(name, t.plural == "namespaces")
    }

    fn validate_generate_name(&self, t: &ResourceType, prefix: &str) -> Option<Cause> {
        meta::validate_generate_name(prefix, t.plural == "namespaces")
    }

    fn validate(&self, t: &ResourceType, obj: &mut Value, cx: &Admission) -> Result<Vec<Cause>, ApiError> {
        let version = obj["apiVersion"]
            .as_str()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or(t.storage_version())
            .to_string();
        match t.version(&version).and_then(|v| v.schema.clone()) {
            Some(schema) => schema::validate_custom(t, &schema, obj, cx.old, cx.strict, cx.prior),
            None => Ok(Vec::new()),
        }
    }
}
