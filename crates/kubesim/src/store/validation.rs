//! Admission checks: decoding as the real server's decoder does (built-ins
//! through their k8s-openapi types, custom resources' metadata as an
//! ObjectMeta), the errors of bodies that do not decode or type, and the few
//! built-in checks clients rely on. A CRD schema's rules are in
//! `super::schema`. The strategies (`super::strategy`) pick which of these
//! a resource runs; nothing here knows resources by name.

use super::resources::ResourceType;
use crate::error::{ApiError, Cause};
use serde_json::{Value, json};

/// A body the real server cannot decode into its Go type (a wrong JSON
/// type; with `fieldValidation=Strict` an unknown field): on create and
/// update `400 BadRequest`, on a patch `422` with a `patch` cause
/// ([`patch_decode_error`]).
pub fn decode_error(kind: &str, version: &str, detail: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}"
    ))
}

/// Whether an error is a [`decode_error`].
pub fn is_decode_error(e: &ApiError) -> bool {
    e.code == 400 && e.message.contains(" cannot be handled as a ")
}

/// What a patch that produced an undecodable object answers, as the real
/// server: `"" is invalid: patch: Invalid value: "<the patched object>": <why>`.
pub fn patch_decode_error(patched: &Value, e: &ApiError) -> ApiError {
    let why = e.message.split_once(": ").map(|(_, w)| w).unwrap_or(&e.message);
    let cause = Cause::invalid("patch", &json!(patched.to_string()), why);
    let message = format!(" \"\" is invalid: patch: {}", cause.message);
    let mut err = ApiError::new(422, "Invalid", message);
    err.details = Some(json!({"causes": [{"reason": cause.reason, "message": cause.message, "field": "patch"}]}));
    err
}

/// Why a server-side apply body of a built-in cannot be typed (a field its
/// typed model lacks, a wrong JSON type), if it cannot. Kinds without a
/// typed model (`typed` None) always can.
pub fn builtin_apply_problem(body: &Value, typed: Option<Typed>) -> Option<String> {
    match typed.map(|f| f(body)) {
        Some(Err(e)) => Some(format!(": {e}")),
        Some(Ok(round)) => {
            let mut v = body.clone();
            let mut unknown = Vec::new();
            unknown_fields(&mut v, &round, "", &mut unknown);
            unknown.first().map(|u| format!(".{u}: field not declared in schema"))
        }
        None => None,
    }
}

/// A server-side apply body the real server cannot type (`problem`, from
/// `schema::custom_apply_problem` or [`builtin_apply_problem`]): `500` with no
/// reason, whatever the field validation, as kube-apiserver v1.37 answers.
pub fn apply_type_error(t: &ResourceType, name: &str, body: &Value, problem: &str) -> ApiError {
    let version = body["apiVersion"]
        .as_str()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or(t.storage_version())
        .to_string();
    let gv = if t.group.is_empty() {
        format!("/{version}")
    } else {
        format!("{}/{version}", t.group)
    };
    ApiError::new(
        500,
        "",
        format!(
            "failed to create typed patch object (/{name}; {gv}, Kind={}): {problem}",
            t.kind
        ),
    )
}

/// Why `metadata` does not decode as an ObjectMeta, if it does not.
pub(super) fn metadata_problem(meta: &Value) -> Option<String> {
    if meta.is_null() {
        return None;
    }
    serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(meta.clone())
        .err()
        .map(|e| e.to_string())
}

/// Decodes a custom resource's metadata as the real server does: a wrong
/// type is a [`decode_error`]; unknown metadata fields are dropped (an
/// error when strict).
pub fn decode_custom_metadata(t: &ResourceType, obj: &mut Value, strict: bool) -> Result<(), ApiError> {
    let version = obj["apiVersion"]
        .as_str()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or(t.storage_version())
        .to_string();
    if let Some(e) = metadata_problem(&obj["metadata"]) {
        return Err(decode_error(&t.kind, &version, &e));
    }
    let round = serde_json::to_value(
        serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(obj["metadata"].clone())
            .unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    let mut unknown = Vec::new();
    if obj["metadata"].is_object() {
        unknown_fields(&mut obj["metadata"], &round, "metadata", &mut unknown);
    }
    if strict && !unknown.is_empty() {
        return Err(strict_error(&t.kind, &version, &unknown));
    }
    Ok(())
}

pub(super) fn strict_error(kind: &str, version: &str, unknown: &[String]) -> ApiError {
    let list: Vec<String> = unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect();
    decode_error(kind, version, &format!("strict decoding error: {}", list.join(", ")))
}

/// Decodes a built-in object into its type (`typed`, the round trip through
/// its k8s-openapi model), as the real server's decoder: a wrong JSON type
/// is a [`decode_error`], unknown fields are dropped (an error when
/// strict). Kinds without a typed model (`typed` None) pass unchanged.
pub fn decode_builtin(t: &ResourceType, obj: &mut Value, strict: bool, typed: Option<Typed>) -> Result<(), ApiError> {
    let version = obj["apiVersion"]
        .as_str()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or(t.storage_version())
        .to_string();
    let round = match typed.map(|f| f(obj)) {
        None => return Ok(()),
        Some(Err(e)) => return Err(decode_error(&t.kind, &version, &e)),
        Some(Ok(r)) => r,
    };
    let mut unknown = Vec::new();
    unknown_fields(obj, &round, "", &mut unknown);
    if strict && !unknown.is_empty() {
        return Err(strict_error(&t.kind, &version, &unknown));
    }
    Ok(())
}

/// A built-in's typed model as a function: the object through its
/// k8s-openapi type and back ([`round_trip`]).
pub type Typed = fn(&Value) -> Result<Value, String>;

/// The object through its k8s-openapi type `T` and back, for the built-ins
/// clients write most (the strategies name theirs; events and leases, the
/// hot paths, have none).
pub fn round_trip<T: k8s_openapi::Resource + serde::de::DeserializeOwned + serde::Serialize>(
    obj: &Value,
) -> Result<Value, String> {
    let mut v = obj.clone();
    go_decodable(&mut v, "");
    // The stored version may be another (policy/v1beta1): the fields are the same.
    v["apiVersion"] = json!(T::API_VERSION);
    v["kind"] = json!(T::KIND);
    match serde_json::from_value::<T>(v) {
        Ok(typed) => serde_json::to_value(typed).map_err(|e| e.to_string()),
        // Go decodes an object without its required fields (validation
        // then says Required): no verdict from the typed model.
        Err(e) if e.to_string().starts_with("missing field") => Ok(obj.clone()),
        Err(e) => Err(e.to_string()),
    }
}

/// What Go's decoder takes and serde's typed model does not: nulls (Go
/// leaves the field unset) and numbers as resource quantities.
fn go_decodable(v: &mut Value, key: &str) {
    let quantities = matches!(
        key,
        "limits" | "requests" | "capacity" | "allocatable" | "hard" | "used" | "overhead"
    );
    match v {
        Value::Object(m) => {
            m.retain(|_, c| !c.is_null());
            for (k, c) in m.iter_mut() {
                if (quantities || k == "sizeLimit") && c.is_number() {
                    *c = json!(c.to_string());
                } else {
                    go_decodable(c, k);
                }
            }
        }
        Value::Array(a) => {
            for c in a {
                go_decodable(c, key);
            }
        }
        _ => {}
    }
}

/// Removes from `v` the (non-null) fields its typed round trip `typed`
/// lost, recording their paths (`spec.containers[0].foo`).
fn unknown_fields(v: &mut Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (v, typed) {
        (Value::Object(m), Value::Object(t)) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(&k) {
                    Some(tc) => unknown_fields(m.get_mut(&k).unwrap(), tc, &here, out),
                    None => {
                        let envelope = path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind");
                        if !(m[&k].is_null() || envelope) {
                            out.push(here);
                            m.remove(&k);
                        }
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(t)) => {
            for (i, (x, y)) in a.iter_mut().zip(t.iter()).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// A workload's (deployment, replica set, daemon set, stateful set)
/// selector, its match with the template labels, and the template's pod
/// spec.
pub fn workload(t: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &obj["spec"];
    let sel = &spec["selector"];
    let labels = &spec["template"]["metadata"]["labels"];
    if sel.is_null() {
        causes.push(Cause::required("spec.selector", ""));
    } else if sel.as_object().is_some_and(|m| {
        m.get("matchLabels")
            .and_then(Value::as_object)
            .is_none_or(|l| l.is_empty())
            && m.get("matchExpressions")
                .and_then(Value::as_array)
                .is_none_or(|e| e.is_empty())
    }) {
        causes.push(Cause::invalid(
            "spec.selector",
            sel,
            &format!("empty selector is invalid for {}", t.singular),
        ));
    }
    if sel.is_null() || !selector_matches(sel, labels) {
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            labels,
            "`selector` does not match template `labels`",
        ));
    }
    pod_spec(&spec["template"]["spec"], "spec.template.spec", &mut causes);
    causes
}

/// A pod's spec.
pub fn pod(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    pod_spec(&obj["spec"], "spec", &mut causes);
    causes
}

/// A Job's template: its pod spec and a restartPolicy of Never or OnFailure.
pub fn job(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let tpl = &obj["spec"]["template"]["spec"];
    pod_spec(tpl, "spec.template.spec", &mut causes);
    match tpl["restartPolicy"].as_str() {
        None | Some("") => causes.push(Cause::required("spec.template.spec.restartPolicy", "")),
        Some("Never" | "OnFailure") => {}
        Some(other) => causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.template.spec.restartPolicy",
            format!("Unsupported value: \"{other}\": supported values: \"OnFailure\", \"Never\""),
        )),
    }
    causes
}

/// A PodDisruptionBudget's percentages (`minAvailable`, `maxUnavailable`
/// given as strings).
pub fn disruption_budget(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &obj["spec"];
    for f in ["minAvailable", "maxUnavailable"] {
        if let Some(v) = spec[f].as_str() {
            let pct = v
                .strip_suffix('%')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !pct {
                causes.push(Cause::invalid(
                    format!("spec.{f}"),
                    &json!(v),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
            }
        }
    }
    causes
}

/// `matchLabels` (and simple `matchExpressions`) against a label map.
fn selector_matches(sel: &Value, labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    let ml = sel["matchLabels"].as_object();
    let labels_ok = ml.is_none_or(|m| m.iter().all(|(k, v)| get(k) == v.as_str()));
    let exprs_ok = sel["matchExpressions"].as_array().is_none_or(|es| {
        es.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str() {
                Some("In") => get(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => get(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => get(key).is_some(),
                Some("DoesNotExist") => get(key).is_none(),
                _ => true,
            }
        })
    });
    labels_ok && exprs_ok
}

/// A pod spec's containers, as `ValidatePodSpec` names them.
fn pod_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        causes.push(Cause::required(format!("{path}.containers"), ""));
    }
    for (list, items) in [
        ("containers", containers),
        ("initContainers", spec["initContainers"].as_array()),
    ] {
        for (i, c) in items.into_iter().flatten().enumerate() {
            let here = format!("{path}.{list}[{i}]");
            if c["name"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("{here}.name"), ""));
            }
            if c["image"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("{here}.image"), ""));
            }
            for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
                match p["containerPort"].as_i64() {
                    None | Some(0) => causes.push(Cause::required(format!("{here}.ports[{j}].containerPort"), "")),
                    Some(n) if !(1..=65535).contains(&n) => causes.push(Cause::invalid(
                        format!("{here}.ports[{j}].containerPort"),
                        &json!(n),
                        "must be between 1 and 65535, inclusive",
                    )),
                    _ => {}
                }
            }
        }
    }
}

/// The `spec` fields of `paths` the real server refuses to change once set.
pub fn immutable_spec_fields(paths: &[&str], old: &Value, new: &Value) -> Vec<Cause> {
    paths
        .iter()
        .filter(|p| !old["spec"][**p].is_null() && old["spec"][**p] != new["spec"][**p])
        .map(|p| Cause::invalid(format!("spec.{p}"), &new["spec"][*p], "field is immutable"))
        .collect()
}

/// An annotation that cannot be added, changed or removed.
pub fn immutable_annotation(key: &str, old: &Value, new: &Value) -> Option<Cause> {
    let (o, n) = (
        &old["metadata"]["annotations"][key],
        &new["metadata"]["annotations"][key],
    );
    (o != n).then(|| Cause::invalid(format!("metadata.annotations[{key}]"), n, "field is immutable"))
}
