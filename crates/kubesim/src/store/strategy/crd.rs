//! CustomResourceDefinitions: names not checked as DNS names here, and
//! accepted and established at once, as a healthy server does: creating
//! or updating one serves its resource (a plural already served is 422),
//! removing one stops serving it.

use super::super::resources::{self, ResourceType};
use super::{Registry, Strategy};
use crate::error::{ApiError, Cause};
use crate::meta;
use serde_json::{Value, json};

pub struct CustomResourceDefinition;

impl Strategy for CustomResourceDefinition {
    fn validate_name(&self, _t: &ResourceType, _name: &str) -> Option<Cause> {
        None
    }

    fn validate_generate_name(&self, _t: &ResourceType, _prefix: &str) -> Option<Cause> {
        None
    }

    fn begin_create(&self, obj: &mut Value, registry: &mut dyn Registry) -> Result<(), ApiError> {
        accept(obj);
        if let Some(rt) = resources::from_crd(obj) {
            if registry.serves(&rt.gr()) {
                let name = obj["metadata"]["name"].as_str().unwrap_or("");
                return Err(ApiError::invalid(
                    "apiextensions.k8s.io",
                    "CustomResourceDefinition",
                    name,
                    vec![Cause::invalid(
                        "spec.names.plural",
                        &json!(rt.plural),
                        "is already in use",
                    )],
                ));
            }
            registry.register(rt);
        }
        Ok(())
    }

    fn begin_update(&self, obj: &mut Value, registry: &mut dyn Registry) {
        accept(obj);
        if let Some(rt) = resources::from_crd(obj) {
            registry.register(rt);
        }
    }

    fn after_delete(&self, last: &Value, registry: &mut dyn Registry) {
        if let Some(rt) = resources::from_crd(last) {
            registry.unregister(&rt.gr());
        }
    }
}

/// The status of an accepted, established CRD.
fn accept(crd: &mut Value) {
    let names = crd["spec"]["names"].clone();
    let now = meta::now();
    let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
    let mut accepted = names;
    if accepted["singular"].is_null() {
        accepted["singular"] = json!(crd["spec"]["names"]["kind"].as_str().unwrap_or("").to_lowercase());
    }
    if accepted["listKind"].is_null() {
        accepted["listKind"] = json!(format!("{}List", crd["spec"]["names"]["kind"].as_str().unwrap_or("")));
    }
    crd["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": crd["spec"]["versions"].as_array().map(|vs| vs.iter().filter(|v| v["storage"] == json!(true)).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
    });
}
