//! The steps every create and update takes around the resource's strategy,
//! as the real server's `rest.BeforeCreate` / `rest.BeforeUpdate`: decoding,
//! the object metadata the server owns, the type, the strategy's
//! preparation, and admission (the metadata checks, then the strategy's
//! validation).

use super::options::WriteOptions;
use super::resources::ResourceType;
use super::strategy::{Admission, Strategy};
use crate::error::{ApiError, Cause};
use crate::meta::{self, metadata_mut};
use serde_json::{Value, json};

/// Decodes a create or update body: a JSON object of the resource's kind,
/// decoded as the strategy says.
pub(super) fn decode(s: &dyn Strategy, t: &ResourceType, obj: &mut Value, opts: &WriteOptions) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body of the request was not a JSON object"));
    }
    if let Some(kind) = obj["kind"].as_str().filter(|k| !k.is_empty() && *k != t.kind) {
        return Err(s.kind_mismatch(t, kind, obj));
    }
    s.decode(t, obj, opts.strict)
}

/// The namespace a create writes to: the request's, else the body's (""
/// for a cluster-scoped resource); 400 when both are set and differ.
pub(super) fn create_namespace(t: &ResourceType, obj: &Value, ns: &str) -> Result<String, ApiError> {
    let body_ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
    if t.namespaced && !body_ns.is_empty() && !ns.is_empty() && body_ns != ns {
        return Err(namespace_mismatch());
    }
    Ok(if t.namespaced {
        if ns.is_empty() { body_ns } else { ns.to_string() }
    } else {
        String::new()
    })
}

fn namespace_mismatch() -> ApiError {
    ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request")
}

/// BeforeCreate: the metadata the server owns (a name from
/// `generateName`, the namespace, a fresh uid, creationTimestamp,
/// generation 1), the served apiVersion and kind, then the strategy's
/// The namespace of the URL on a namespaced object; none on a cluster-scoped one.
fn set_namespace(m: &mut serde_json::Map<String, Value>, t: &ResourceType, ns: &str) {
    if t.namespaced {
        m.insert("namespace".into(), json!(ns));
    } else {
        m.remove("namespace");
    }
}

/// PrepareForCreate.
pub(super) fn before_create(s: &dyn Strategy, t: &ResourceType, obj: &mut Value, ns: &str, rv: u64) {
    let m = metadata_mut(obj);
    if m.get("name").and_then(Value::as_str).unwrap_or("").is_empty()
        && let Some(g) = m.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty())
    {
        let n = format!("{g}{}", meta::random_suffix());
        m.insert("name".into(), json!(n));
    }
    set_namespace(m, t, ns);
    for f in [
        "uid",
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        m.remove(f);
    }
    m.insert("uid".into(), json!(meta::new_uid()));
    m.insert("creationTimestamp".into(), json!(meta::now()));
    m.insert("generation".into(), json!(1));
    obj["apiVersion"] = json!(
        t.api_version(
            obj["apiVersion"]
                .as_str()
                .and_then(|a| a.rsplit('/').next())
                .filter(|v| t.version(v).is_some())
                .unwrap_or(t.storage_version())
        )
    );
    obj["kind"] = json!(t.kind);
    s.prepare_for_create(t, obj, rv);
}

/// An update body names the object of the URL, if it names one.
pub(super) fn check_update_target(t: &ResourceType, obj: &Value, ns: &str, name: &str) -> Result<(), ApiError> {
    let body_name = obj["metadata"]["name"].as_str().unwrap_or("");
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    if t.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(namespace_mismatch());
    }
    Ok(())
}

/// BeforeUpdate: the strategy's PrepareForUpdate (of the resource or, for
/// `subresource` `status`, of its status), then the metadata the server
/// owns and the type, kept from `old`. Returns the object to admit.
pub(super) fn before_update(
    s: &dyn Strategy,
    t: &ResourceType,
    old: &Value,
    mut new: Value,
    ns: &str,
    name: &str,
    subresource: Option<&str>,
) -> Value {
    if subresource == Some("status") {
        s.prepare_for_status_update(t, old, &mut new);
    } else {
        s.prepare_for_update(t, old, &mut new);
    }
    let om = &old["metadata"];
    let m = metadata_mut(&mut new);
    m.insert("name".into(), json!(name));
    set_namespace(m, t, ns);
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match om.get(f) {
            Some(v) => m.insert(f.into(), v.clone()),
            None => m.remove(f),
        };
    }
    m.remove("resourceVersion");
    m.remove("managedFields");
    if let Some(mf) = om.get("managedFields") {
        m.insert("managedFields".into(), mf.clone());
    }
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = json!(t.kind);
    new
}

/// Admission: the metadata rules every object follows (no new finalizers
/// while deleting, the strategy's name rules, labels and annotations),
/// then the strategy's Validate and, on update, ValidateUpdate. 422 with
/// every cause found.
pub(super) fn admit(
    s: &dyn Strategy,
    t: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let mut causes = Vec::new();
    if let Some(old) = old.filter(|o| !o["metadata"]["deletionTimestamp"].is_null()) {
        let before = old["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        let added: Vec<String> = obj["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| !before.contains(f))
            .map(|f| format!("{f}"))
            .collect();
        if !added.is_empty() {
            causes.push(Cause::new(
                "FieldValueForbidden",
                "metadata.finalizers",
                format!(
                    "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    added.join(", ")
                ),
            ));
        }
    }
    if name.is_empty() {
        causes.push(Cause::required("metadata.name", "name or generateName is required"));
    } else if let Some(c) = s.validate_name(t, &name) {
        causes.push(c);
    }
    if let Some(g) = obj["metadata"]["generateName"].as_str().filter(|g| !g.is_empty())
        && let Some(c) = s.validate_generate_name(t, g)
    {
        causes.push(c);
    }
    causes.extend(meta::validate_labels_and_annotations(&obj["metadata"]));
    let cx = Admission {
        old,
        strict: opts.strict,
        prior: &causes,
    };
    let more = s.validate(t, obj, &cx)?;
    causes.extend(more);
    if let Some(old) = old {
        causes.extend(s.validate_update(t, old, obj));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&t.group, &t.kind, &name, causes))
    }
}
