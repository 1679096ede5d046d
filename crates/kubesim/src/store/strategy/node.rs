//! Nodes: the `kubernetes.io/hostname` label from the name on create (when
//! the name is a valid label value and the label is not set); a new node
//! keeps the status it was created with, as kubelets register.

use super::super::resources::ResourceType;
use super::super::validation::{self, Typed};
use super::Strategy;
use crate::meta;
use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

pub struct Node;

impl Strategy for Node {
    fn typed(&self) -> Option<Typed> {
        Some(validation::round_trip::<core::Node>)
    }

    fn prepare_for_create(&self, _t: &ResourceType, obj: &mut Value, _rv: u64) {
        let name = obj["metadata"]["name"].clone();
        let valid = name
            .as_str()
            .is_some_and(|n| meta::validate_labels_and_annotations(&json!({"labels": {"k": n}})).is_empty());
        if valid && obj["metadata"]["labels"]["kubernetes.io/hostname"].is_null() {
            obj["metadata"]["labels"]["kubernetes.io/hostname"] = name;
        }
    }
}
