//! Admission checks: the structural OpenAPI rules and CEL
//! `x-kubernetes-validations` of a CRD schema, pruning and defaulting of
//! custom resources, and the few built-in checks clients rely on.

use crate::error::{ApiError, Cause};
use crate::store::ResourceType;
use kube::core::cel::Validator;
use serde_json::{Value, json};

/// Prunes, defaults and validates a custom resource against its version's
/// `openAPIV3Schema`. Unknown fields are an error only with `strict`.
pub fn validate_custom(
    t: &ResourceType,
    schema: &Value,
    obj: &mut Value,
    old: Option<&Value>,
    strict: bool,
    prior: &[Cause],
) -> Result<Vec<Cause>, ApiError> {
    let mut unknown = Vec::new();
    if let Some(m) = obj.as_object_mut() {
        for (k, v) in m.iter_mut() {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match schema.pointer(&format!("/properties/{k}")) {
                Some(s) => prune(s, v, k, &mut unknown),
                None => {
                    if schema.get("x-kubernetes-preserve-unknown-fields") != Some(&json!(true)) {
                        unknown.push(k.clone());
                    }
                }
            }
        }
        if schema.get("x-kubernetes-preserve-unknown-fields") != Some(&json!(true)) {
            let props = schema.get("properties");
            m.retain(|k, _| {
                matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || props.is_some_and(|p| p.get(k).is_some())
            });
        }
    }
    if strict && !unknown.is_empty() {
        let version = obj["apiVersion"]
            .as_str()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or(t.storage_version())
            .to_string();
        return Err(strict_error(&t.kind, &version, &unknown));
    }
    drop_nulls(schema, obj);
    let defaulted = kube::core::cel::apply_defaults(schema, obj);
    *obj = defaulted;
    let mut causes = Vec::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(s) = schema.pointer(&format!("/properties/{k}")) {
                structural(s, v, k, &mut causes);
            }
        }
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !m.contains_key(r) {
                    causes.push(Cause::required(r, ""));
                }
            }
        }
    }
    // As the real server: CEL rules run only when no schema error blocks
    // them (wrong type, enum, required, too long, too many), and a blocked
    // run is reported as one more cause.
    if !has_cel(schema) {
        return Ok(causes);
    }
    let blocking = causes.iter().chain(prior).any(|c| {
        matches!(
            c.reason,
            "FieldValueNotSupported"
                | "FieldValueRequired"
                | "FieldValueTooLong"
                | "FieldValueTooMany"
                | "FieldValueTypeInvalid"
        )
    });
    if blocking {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "<nil>",
            "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ));
        return Ok(causes);
    }
    if let Err(errs) = Validator::new().validate(schema, obj, old) {
        for e in errs.into_vec() {
            let ty = value_at(obj, &e.field_path).map(type_name).unwrap_or("object");
            let reason = match e.reason.as_deref() {
                Some("FieldValueForbidden") => "FieldValueForbidden",
                Some("FieldValueRequired") => "FieldValueRequired",
                Some("FieldValueDuplicate") => "FieldValueDuplicate",
                _ => "FieldValueInvalid",
            };
            let message = match reason {
                "FieldValueForbidden" => format!("Forbidden: {}", e.message),
                "FieldValueRequired" => format!("Required value: {}", e.message),
                _ => format!("Invalid value: \"{ty}\": {}", e.message),
            };
            // A rule of the root object has no field: the real server prints a nil path.
            let field = if e.field_path.is_empty() {
                "<nil>".to_string()
            } else {
                bracket_map_keys(schema, &e.field_path)
            };
            causes.push(Cause::new(reason, field, message));
        }
    }
    Ok(causes)
}

/// The real server's path for a CEL error: a key of a map
/// (`additionalProperties`) is written `[key]`, not `.key`.
fn bracket_map_keys(schema: &Value, path: &str) -> String {
    let mut out = String::new();
    let mut at = schema;
    for seg in path.split('.') {
        let (name, index) = seg.find('[').map_or((seg, ""), |i| seg.split_at(i));
        if let Some(p) = at.get("properties").and_then(|p| p.get(name)) {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(name);
            at = p;
        } else if let Some(a) = at.get("additionalProperties").filter(|a| a.is_object()) {
            out.push_str(&format!("[{name}]"));
            at = a;
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(name);
        }
        out.push_str(index);
        for _ in index.matches('[') {
            if let Some(items) = at.get("items") {
                at = items;
            }
        }
    }
    out
}

/// Whether a schema has `x-kubernetes-validations` anywhere.
fn has_cel(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.get("x-kubernetes-validations").is_some() || m.values().any(has_cel),
        Value::Array(a) => a.iter().any(has_cel),
        _ => false,
    }
}

/// Removes the nulls of fields that are not `nullable` (the real server
/// prunes them, then defaults what has a default), in properties and maps.
fn drop_nulls(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            m.retain(|k, c| {
                let sub = props.and_then(|p| p.get(k)).or(additional);
                !(c.is_null() && sub.is_some_and(|s| s.get("nullable") != Some(&json!(true))))
            });
            for (k, c) in m.iter_mut() {
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    drop_nulls(s, c);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for it in items {
                    drop_nulls(s, it);
                }
            }
        }
        _ => {}
    }
}

/// The value at a kube-cel field path such as `spec.components[0].name`.
fn value_at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (name, idx) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(i) = idx {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Drops fields the schema does not declare, recording their paths.
fn prune(schema: &Value, v: &mut Value, path: &str, unknown: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true)) {
        return;
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let embedded = schema.get("x-kubernetes-embedded-resource") == Some(&json!(true));
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&k)).or(additional.filter(|a| a.is_object()));
                match sub {
                    Some(s) => prune(s, m.get_mut(&k).unwrap(), &format!("{path}.{k}"), unknown),
                    None => {
                        if additional != Some(&json!(true)) {
                            unknown.push(format!("{path}.{k}"));
                            m.remove(&k);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, it) in items.iter_mut().enumerate() {
                    prune(s, it, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The structural OpenAPI checks, with the real server's messages.
fn structural(schema: &Value, v: &Value, path: &str, causes: &mut Vec<Cause>) {
    if v.is_null() {
        if schema.get("nullable") != Some(&json!(true)) && schema.get("type").is_some() {
            let ty = schema["type"].as_str().unwrap_or("");
            causes.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!("Invalid value: \"null\": {path} in body must be of type {ty}: \"null\""),
            ));
        }
        return;
    }
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(v);
        let ok = actual == ty || (ty == "number" && actual == "integer");
        if !ok {
            causes.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!("Invalid value: \"{actual}\": {path} in body must be of type {ty}: \"{actual}\""),
            ));
            if let Some(e) = schema.get("enum").and_then(Value::as_array)
                && !e.contains(v)
            {
                let supported: Vec<String> = e.iter().map(shown).collect();
                causes.push(Cause::new(
                    "FieldValueNotSupported",
                    path,
                    format!(
                        "Unsupported value: {}: supported values: {}",
                        shown(v),
                        supported.join(", ")
                    ),
                ));
            }
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        let supported: Vec<String> = e.iter().map(shown).collect();
        causes.push(Cause::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                shown(v),
                supported.join(", ")
            ),
        ));
    }
    match v {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                causes.push(Cause::invalid(
                    path,
                    v,
                    &format!("{path} in body should be at least {min} chars long"),
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                causes.push(Cause::new(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str)
                && !pattern_matches(p, s)
            {
                causes.push(Cause::invalid(path, v, &format!("{path} in body should match '{p}'")));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                let excl = schema.get("exclusiveMinimum") == Some(&json!(true));
                if x < min || (excl && x == min) {
                    let rel = if excl {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    causes.push(Cause::invalid(
                        path,
                        v,
                        &format!("{path} in body should be {rel} {}", schema["minimum"]),
                    ));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                let excl = schema.get("exclusiveMaximum") == Some(&json!(true));
                if x > max || (excl && x == max) {
                    let rel = if excl { "less than" } else { "less than or equal to" };
                    causes.push(Cause::invalid(
                        path,
                        v,
                        &format!("{path} in body should be {rel} {}", schema["maximum"]),
                    ));
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                causes.push(Cause::invalid(
                    path,
                    &json!(items.len()),
                    &format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                causes.push(Cause::new(
                    "FieldValueTooMany",
                    path,
                    format!("Too many: {}: must have at most {max} items", items.len()),
                ));
            }
            if let Some(s) = schema.get("items") {
                for (i, it) in items.iter().enumerate() {
                    structural(s, it, &format!("{path}[{i}]"), causes);
                }
            }
        }
        Value::Object(m) => {
            if let Some(req) = schema.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !m.contains_key(r) {
                        causes.push(Cause::required(format!("{path}.{r}"), ""));
                    }
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, c) in m {
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    structural(s, c, &format!("{path}.{k}"), causes);
                }
            }
        }
        _ => {}
    }
}

/// OpenAPI `pattern` (ECMA-262 flavour, which RE2 covers for CRD schemas),
/// evaluated with the CEL engine's regex so no second regex engine is needed.
fn pattern_matches(pattern: &str, s: &str) -> bool {
    let rule = format!("self.matches({})", serde_json::to_string(pattern).unwrap_or_default());
    let schema = json!({"type": "string", "x-kubernetes-validations": [{"rule": rule}]});
    Validator::new().validate(&schema, &json!(s), None).is_ok()
}

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

/// A server-side apply body the real server cannot type (a field its schema
/// does not declare, a wrong JSON type): `500` with no reason, whatever the
/// field validation, as kube-apiserver v1.37 answers.
pub fn apply_type_error(t: &ResourceType, name: &str, body: &Value, schema: Option<&Value>) -> Option<ApiError> {
    let version = body["apiVersion"]
        .as_str()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or(t.storage_version())
        .to_string();
    let problem = if t.custom {
        let schema = schema?;
        let mut v = body.clone();
        drop_all_nulls(&mut v);
        let mut unknown = Vec::new();
        let mut causes = Vec::new();
        if let Some(m) = v.as_object_mut() {
            for (k, c) in m.iter_mut() {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match schema.pointer(&format!("/properties/{k}")) {
                    Some(s) => {
                        prune(s, c, k, &mut unknown);
                        structural(s, c, k, &mut causes);
                    }
                    None if schema.get("x-kubernetes-preserve-unknown-fields") != Some(&json!(true)) => {
                        unknown.push(k.clone())
                    }
                    None => {}
                }
            }
        }
        let meta = metadata_problem(&body["metadata"]);
        if let Some(u) = unknown.first() {
            Some(format!(".{u}: field not declared in schema"))
        } else if let Some(c) = causes.iter().find(|c| c.reason == "FieldValueTypeInvalid") {
            Some(format!(".{}: expected {}", c.field, c.message))
        } else {
            meta
        }
    } else {
        match typed(t, body) {
            Some(Err(e)) => Some(format!(": {e}")),
            Some(Ok(round)) => {
                let mut v = body.clone();
                let mut unknown = Vec::new();
                unknown_fields(&mut v, &round, "", &mut unknown);
                unknown.first().map(|u| format!(".{u}: field not declared in schema"))
            }
            None => None,
        }
    }?;
    let gv = if t.group.is_empty() {
        format!("/{version}")
    } else {
        format!("{}/{version}", t.group)
    };
    Some(ApiError::new(
        500,
        "",
        format!(
            "failed to create typed patch object (/{name}; {gv}, Kind={}): {problem}",
            t.kind
        ),
    ))
}

fn drop_all_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, c| !c.is_null());
            m.values_mut().for_each(drop_all_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_all_nulls),
        _ => {}
    }
}

/// Why `metadata` does not decode as an ObjectMeta, if it does not.
fn metadata_problem(meta: &Value) -> Option<String> {
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

fn strict_error(kind: &str, version: &str, unknown: &[String]) -> ApiError {
    let list: Vec<String> = unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect();
    decode_error(kind, version, &format!("strict decoding error: {}", list.join(", ")))
}

/// Decodes a built-in object into its type, as the real server's decoder:
/// a wrong JSON type is a [`decode_error`], unknown fields are dropped (an
/// error when strict). Kinds without a typed model here pass unchanged.
pub fn decode_builtin(t: &ResourceType, obj: &mut Value, strict: bool) -> Result<(), ApiError> {
    let version = obj["apiVersion"]
        .as_str()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or(t.storage_version())
        .to_string();
    let round = match typed(t, obj) {
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

/// The object through its k8s-openapi type and back, for the built-ins
/// clients write most (events and leases, the hot paths, are left out).
fn typed(t: &ResourceType, obj: &Value) -> Option<Result<Value, String>> {
    use k8s_openapi::api::{apps, batch, core, policy};
    fn round<T: k8s_openapi::Resource + serde::de::DeserializeOwned + serde::Serialize>(
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
    Some(match (t.group.as_str(), t.plural.as_str()) {
        ("", "pods") => round::<core::v1::Pod>(obj),
        ("", "nodes") => round::<core::v1::Node>(obj),
        ("", "configmaps") => round::<core::v1::ConfigMap>(obj),
        ("", "secrets") => round::<core::v1::Secret>(obj),
        ("", "services") => round::<core::v1::Service>(obj),
        ("", "namespaces") => round::<core::v1::Namespace>(obj),
        ("", "serviceaccounts") => round::<core::v1::ServiceAccount>(obj),
        ("apps", "deployments") => round::<apps::v1::Deployment>(obj),
        ("apps", "replicasets") => round::<apps::v1::ReplicaSet>(obj),
        ("apps", "daemonsets") => round::<apps::v1::DaemonSet>(obj),
        ("apps", "statefulsets") => round::<apps::v1::StatefulSet>(obj),
        ("batch", "jobs") => round::<batch::v1::Job>(obj),
        ("batch", "cronjobs") => round::<batch::v1::CronJob>(obj),
        ("policy", "poddisruptionbudgets") => round::<policy::v1::PodDisruptionBudget>(obj),
        _ => return None,
    })
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

/// The built-in checks clients run into most often, with the real
/// server's fields: a pod spec's containers (name, image, ports), a Job
/// template's restartPolicy, a workload's selector and its match with the
/// template labels, a budget's percentages.
pub fn validate_builtin(t: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &obj["spec"];
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "pods") => pod_spec(spec, "spec", &mut causes),
        ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets") => {
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
        }
        ("batch", "jobs") => {
            let tpl = &spec["template"]["spec"];
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
        }
        ("policy", "poddisruptionbudgets") => {
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
        }
        _ => {}
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

/// Fields the real server refuses to change once set.
pub fn immutable_fields(t: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
    let paths: &[&str] = match (t.group.as_str(), t.plural.as_str()) {
        ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets") => &["selector"],
        ("batch", "jobs") => &["selector", "template"],
        ("policy", "poddisruptionbudgets") => &[],
        _ => &[],
    };
    let mut causes: Vec<Cause> = paths
        .iter()
        .filter(|p| !old["spec"][**p].is_null() && old["spec"][**p] != new["spec"][**p])
        .map(|p| Cause::invalid(format!("spec.{p}"), &new["spec"][*p], "field is immutable"))
        .collect();
    // As the real server: a pod's mirror annotation cannot be added,
    // changed or removed (found when the kubesim agent ran on a real one).
    if t.group.is_empty() && t.plural == "pods" {
        let key = crate::sim::objects::MIRROR;
        let (o, n) = (
            &old["metadata"]["annotations"][key],
            &new["metadata"]["annotations"][key],
        );
        if o != n {
            causes.push(Cause::invalid(
                format!("metadata.annotations[{key}]"),
                n,
                "field is immutable",
            ));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_use_cel_regex() {
        assert!(pattern_matches("^[a-z]+$", "abc"));
        assert!(!pattern_matches("^[a-z]+$", "ab1"));
        assert!(pattern_matches("^a'b\"c$", "a'b\"c"));
    }
}
