//! The options of the store's verbs and of the store itself.

use super::selector::{FieldSelector, LabelSelector};
use serde_json::Value;

/// Options of create, update and patch.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `fieldValidation=Strict`: unknown fields are an error rather than pruned.
    pub strict: bool,
}

/// Options of delete (`DeleteOptions`).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    /// `Background`, `Foreground` or `Orphan`.
    pub propagation_policy: Option<String>,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body (and its legacy `orphanDependents`).
    pub fn from_value(v: &Value) -> DeleteOptions {
        let mut o = DeleteOptions {
            dry_run: v["dryRun"].as_array().is_some_and(|a| !a.is_empty()),
            grace_period_seconds: v["gracePeriodSeconds"].as_i64(),
            precondition_uid: v["preconditions"]["uid"].as_str().map(str::to_string),
            precondition_rv: v["preconditions"]["resourceVersion"].as_str().map(str::to_string),
            propagation_policy: v["propagationPolicy"].as_str().map(str::to_string),
        };
        if o.propagation_policy.is_none() && v["orphanDependents"].as_bool() == Some(true) {
            o.propagation_policy = Some("Orphan".into());
        }
        o
    }
}

/// Options of list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// The patch flavours of the real server.
#[derive(Debug, Clone)]
pub enum Patch {
    Merge(Value),
    Json(Value),
    Strategic(Value),
    Apply { body: Value, force: bool },
}

/// What delete did: the object is gone (`deleted`) or is terminating.
#[derive(Debug)]
pub struct Deleted {
    pub object: Value,
    pub deleted: bool,
}

/// Server behaviour switches.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Watch events kept per resource before `410 Gone`.
    pub history: usize,
    /// Pods bound to a node and deleted with a grace period stay terminating
    /// until deleted again with grace 0 (what a kubelet does). Off: they go at
    /// once, as if a kubelet confirmed instantly.
    pub graceful_pod_deletion: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history: 50_000,
            graceful_pod_deletion: false,
        }
    }
}
