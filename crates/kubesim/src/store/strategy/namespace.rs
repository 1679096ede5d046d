//! Namespaces: `Active` with the `kubernetes` finalizer and the
//! `kubernetes.io/metadata.name` label on create, names that are DNS
//! labels, and deletion through the namespace controller: a deleted
//! namespace is `Terminating` until the objects in it are gone.

use super::super::resources::ResourceType;
use super::super::validation::{self, Typed};
use super::{Strategy, Termination};
use crate::error::Cause;
use crate::meta;
use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

pub struct Namespace;

impl Strategy for Namespace {
    fn typed(&self) -> Option<Typed> {
        Some(validation::round_trip::<core::Namespace>)
    }

    /// Whatever status the body had, a new namespace is `Active`.
    fn prepare_for_create(&self, _t: &ResourceType, obj: &mut Value, _rv: u64) {
        obj["status"] = json!({"phase": "Active"});
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
        let name = obj["metadata"]["name"].clone();
        obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    }

    fn validate_name(&self, _t: &ResourceType, name: &str) -> Option<Cause> {
        meta::validate_name(name, true)
    }

    fn validate_generate_name(&self, _t: &ResourceType, prefix: &str) -> Option<Cause> {
        meta::validate_generate_name(prefix, true)
    }

    fn termination(&self) -> Termination {
        Termination::Contents
    }

    fn prepare_for_delete(&self, obj: &mut Value) {
        obj["status"]["phase"] = json!("Terminating");
    }
}
