//! A custom resource version's `openAPIV3Schema`: pruning of unknown
//! fields, defaults, the structural OpenAPI rules and CEL
//! `x-kubernetes-validations`, with the real server's messages.

use super::resources::ResourceType;
use super::validation::{metadata_problem, strict_error};
use crate::error::{ApiError, Cause};
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
/// A value outside the schema's `enum`, if it has one: NotSupported,
/// naming the values it allows.
fn check_enum(schema: &Value, v: &Value, path: &str, causes: &mut Vec<Cause>) {
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
}

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
            check_enum(schema, v, path, causes);
            return;
        }
    }
    check_enum(schema, v, path, causes);
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

/// Why a server-side apply body of a custom resource cannot be typed
/// against its version's schema (a field it does not declare, a wrong JSON
/// type, bad metadata), if it cannot: the part after the path in
/// `validation::apply_type_error`.
pub fn custom_apply_problem(body: &Value, schema: &Value) -> Option<String> {
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
