//! Pods: phase and QoS class set on create with the spec's defaults, the
//! containers validated, the mirror annotation immutable, graceful deletion
//! of bound pods (with `StoreConfig::graceful_pod_deletion`), and the
//! `spec.nodeName` index.

use super::super::options::StoreConfig;
use super::super::resources::ResourceType;
use super::super::validation::{self, Typed};
use super::{Admission, Indexes, Strategy, reset_status};
use crate::error::{ApiError, Cause};
use crate::meta::MIRROR;
use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

pub struct Pod;

impl Strategy for Pod {
    fn typed(&self) -> Option<Typed> {
        Some(validation::round_trip::<core::Pod>)
    }

    fn prepare_for_create(&self, t: &ResourceType, obj: &mut Value, _rv: u64) {
        reset_status(t, obj);
        obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        if obj["spec"]["restartPolicy"].is_null() {
            obj["spec"]["restartPolicy"] = json!("Always");
        }
        if obj["spec"]["terminationGracePeriodSeconds"].is_null() {
            obj["spec"]["terminationGracePeriodSeconds"] = json!(30);
        }
    }

    fn validate(&self, _t: &ResourceType, obj: &mut Value, _cx: &Admission) -> Result<Vec<Cause>, ApiError> {
        Ok(validation::pod(obj))
    }

    /// As the real server: a pod's mirror annotation cannot be added,
    /// changed or removed (found when the kubesim agent ran on a real one).
    fn validate_update(&self, _t: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
        validation::immutable_annotation(MIRROR, old, new).into_iter().collect()
    }

    /// A pod bound to a node and not finished waits for its kubelet, when
    /// the store plays kubelets that way: the requested grace or the pod's
    /// `terminationGracePeriodSeconds` (30 by default).
    fn grace_period(&self, obj: &Value, requested: Option<i64>, config: &StoreConfig) -> Option<i64> {
        let bound = obj["spec"]["nodeName"].as_str().is_some();
        let finished = matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        (config.graceful_pod_deletion && bound && !finished)
            .then(|| requested.unwrap_or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30)))
    }

    fn indexes(&self) -> Indexes {
        Indexes {
            node_name: true,
            selector: false,
        }
    }
}
