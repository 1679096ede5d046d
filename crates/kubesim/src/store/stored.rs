//! One stored object: its serialized JSON plus the few fields lists filter
//! on and the garbage collector looks at.

use super::selector;
use bytes::Bytes;
use serde_json::Value;

/// One stored object: its JSON plus the fields selectors and GC look at.
#[derive(Debug)]
pub struct Stored {
    pub bytes: Bytes,
    pub rv: u64,
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub uid: Box<str>,
    pub labels: Box<[(Box<str>, Box<str>)]>,
    pub node_name: Option<Box<str>>,
    pub phase: Option<Box<str>>,
    pub owners: Box<[Box<str>]>,
    pub deleting: bool,
    pub finalizers: Box<[Box<str>]>,
}

impl Stored {
    pub(super) fn new(v: &Value, rv: u64) -> Stored {
        let m = &v["metadata"];
        let s = |x: &Value| x.as_str().map(Box::from);
        Stored {
            bytes: Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
            rv,
            namespace: s(&m["namespace"]).unwrap_or_default(),
            name: s(&m["name"]).unwrap_or_default(),
            uid: s(&m["uid"]).unwrap_or_default(),
            labels: m["labels"]
                .as_object()
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| (Box::from(k.as_str()), Box::from(v.as_str().unwrap_or(""))))
                        .collect()
                })
                .unwrap_or_default(),
            node_name: s(&v["spec"]["nodeName"]),
            phase: s(&v["status"]["phase"]),
            owners: m["ownerReferences"]
                .as_array()
                .map(|a| a.iter().filter_map(|o| s(&o["uid"])).collect())
                .unwrap_or_default(),
            deleting: !m["deletionTimestamp"].is_null(),
            finalizers: m["finalizers"]
                .as_array()
                .map(|a| a.iter().filter_map(s).collect())
                .unwrap_or_default(),
        }
    }

    /// The object as JSON.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    /// The value a field selector sees at `path`.
    pub fn field(&self, path: &str) -> String {
        match path {
            "metadata.name" => self.name.to_string(),
            "metadata.namespace" => self.namespace.to_string(),
            "spec.nodeName" => self.node_name.as_deref().unwrap_or("").to_string(),
            "status.phase" => self.phase.as_deref().unwrap_or("").to_string(),
            other => selector::field_value(&self.value(), other),
        }
    }
}
