//! `events.k8s.io/v1` Events are the core `v1` Events under other field
//! names, as on a real server: one storage, converted on the way in and out,
//! so `kubectl get events` shows what kube-rs' event recorder writes.

use crate::store::{GroupResource, ResourceType};
use serde_json::{Value, json};

/// (events.k8s.io name, core name)
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether a resource is the `events.k8s.io` view of core events.
pub fn is_alias(t: &ResourceType) -> bool {
    t.group == "events.k8s.io" && t.plural == "events"
}

pub fn core_gr() -> GroupResource {
    GroupResource::new("", "events")
}

fn rename(v: &mut Value, from_first: bool) {
    if let Some(m) = v.as_object_mut() {
        for (a, b) in RENAMES {
            let (from, to) = if from_first { (a, b) } else { (b, a) };
            if let Some(x) = m.remove(*from) {
                m.insert(to.to_string(), x);
            }
        }
    }
}

/// An events.k8s.io/v1 Event as the core v1 Event it is stored as.
pub fn to_core(mut v: Value) -> Value {
    if v.is_object() {
        rename(&mut v, true);
        v["apiVersion"] = json!("v1");
        v["kind"] = json!("Event");
    }
    v
}

/// A stored core Event as events.k8s.io/v1 shows it.
pub fn from_core(mut v: Value) -> Value {
    if v.is_object() {
        rename(&mut v, false);
        v["apiVersion"] = json!("events.k8s.io/v1");
        v["kind"] = json!("Event");
    }
    v
}

/// A field selector path of events.k8s.io in core terms.
pub fn core_field(path: &str) -> String {
    for (a, b) in RENAMES {
        if path == *a {
            return b.to_string();
        }
        if let Some(rest) = path.strip_prefix(&format!("{a}.")) {
            return format!("{b}.{rest}");
        }
    }
    path.to_string()
}
