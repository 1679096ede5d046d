//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge
//! patch for the built-in list fields kubectl and kube-rs touch.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the server rejected our request due to an error in our request: {0}")]
    Json(String),
    #[error("unable to decode patch: {0}")]
    Strategic(String),
}

pub fn merge(current: &Value, patch: &Value) -> Value {
    let mut out = current.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// RFC 6902 as the API server applies it: a `test` that expects `null`
/// passes on a path that does not exist (kube-rs's finalizer helper relies
/// on it to add the first finalizer). The operations apply in order to a
/// copy, so a failed one leaves the object as it was.
pub fn json(current: &Value, patch: &Value) -> Result<Value, String> {
    let p: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("error decoding patch: {e}"))?;
    let mut out = current.clone();
    for (i, op) in p.0.into_iter().enumerate() {
        if let json_patch::PatchOperation::Test(t) = &op
            && t.value.is_null()
            && out.pointer(t.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut out, &[op]).map_err(|mut e| {
            e.operation = i;
            e.to_string()
        })?;
    }
    Ok(out)
}

/// What a list field merges by, per its `patchStrategy`/`patchMergeKey`.
pub enum ListKind {
    /// A list of objects merged by a key field.
    Keyed(&'static str),
    /// A list of scalars merged as a set.
    Set,
    Atomic,
}

/// Strategic-merge metadata of built-in list fields, keyed by field name
/// (the names are unambiguous across the built-in types kubesim serves).
pub fn list_kind(field: &str) -> ListKind {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets" => {
            ListKind::Keyed("name")
        }
        "ports" => ListKind::Keyed("containerPort"),
        "volumeMounts" => ListKind::Keyed("mountPath"),
        "volumeDevices" => ListKind::Keyed("devicePath"),
        "conditions" => ListKind::Keyed("type"),
        "addresses" => ListKind::Keyed("type"),
        "hostAliases" => ListKind::Keyed("ip"),
        "ownerReferences" => ListKind::Keyed("uid"),
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// Applies a strategic merge patch.
pub fn strategic(current: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Strategic("patch must be a JSON object".into()));
    }
    Ok(merge_value(current, patch, ""))
}

fn merge_value(cur: &Value, patch: &Value, field: &str) -> Value {
    match (cur, patch) {
        (Value::Object(c), Value::Object(p)) => Value::Object(merge_map(c, p)),
        (Value::Array(c), Value::Array(p)) => merge_list(c, p, field),
        (_, Value::Object(p)) => Value::Object(merge_map(&Map::new(), p)),
        (_, Value::Array(p)) => merge_list(&[], p, field),
        (_, p) => p.clone(),
    }
}

fn merge_map(cur: &Map<String, Value>, patch: &Map<String, Value>) -> Map<String, Value> {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = patch.clone();
        p.remove("$patch");
        return strip_directives(p);
    }
    let mut out = cur.clone();
    // $retainKeys: keys not listed are cleared.
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, pv) in patch {
        if k == "$retainKeys" || k == "$patch" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (out.get_mut(field), pv.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if pv.is_null() {
            out.remove(k);
            continue;
        }
        if pv.get("$patch").and_then(Value::as_str) == Some("delete") {
            out.remove(k);
            continue;
        }
        let merged = match out.get(k) {
            Some(cv) => merge_value(cv, pv, k),
            None => merge_value(&Value::Null, pv, k),
        };
        out.insert(k.clone(), merged);
    }
    out
}

fn strip_directives(mut m: Map<String, Value>) -> Map<String, Value> {
    m.retain(|k, _| !k.starts_with('$'));
    m
}

fn merge_list(cur: &[Value], patch: &[Value], field: &str) -> Value {
    match list_kind(field) {
        ListKind::Keyed(key) if patch.iter().all(Value::is_object) => {
            if patch
                .iter()
                .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                return Value::Array(patch.iter().filter(|p| p.get("$patch").is_none()).cloned().collect());
            }
            let mut out: Vec<Value> = cur.to_vec();
            for p in patch {
                let pk = p.get(key);
                let pos = out.iter().position(|c| pk.is_some() && c.get(key) == pk);
                let delete = p.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => out[i] = merge_value(&out[i], p, ""),
                    (None, false) => out.push(match p {
                        Value::Object(m) => Value::Object(strip_directives(m.clone())),
                        other => other.clone(),
                    }),
                }
            }
            Value::Array(out)
        }
        ListKind::Set => {
            let mut out: Vec<Value> = cur.to_vec();
            for p in patch {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            Value::Array(out)
        }
        _ => Value::Array(patch.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_conditions_by_type() {
        let cur = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
                          "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        let p = json!({"spec": {"containers": [{"name": "b", "image": "z"}]},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "True"}]}});
        let out = strategic(&cur, &p).unwrap();
        assert_eq!(out["spec"]["containers"][0]["image"], "x");
        assert_eq!(out["spec"]["containers"][1]["image"], "z");
        assert_eq!(out["status"]["conditions"][0]["status"], "True");
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn directives_delete_and_replace() {
        let cur = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"tolerations": [{"key": "k"}], "unschedulable": true}});
        let p = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}, "spec": {"tolerations": [{"key": "j"}], "unschedulable": null}});
        let out = strategic(&cur, &p).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "j"}]));
        assert!(out["spec"].get("unschedulable").is_none());
    }
}

#[cfg(test)]
mod json_patch_tests {
    use serde_json::json;

    #[test]
    fn a_test_for_null_passes_on_a_missing_path_as_on_the_api_server() {
        let doc = json!({"metadata": {"name": "a"}});
        let patch = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["drover.dev/cleanup"]}
        ]);
        let out = super::json(&doc, &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["drover.dev/cleanup"]));
        // A test for anything else on a missing path still fails, and nothing is applied.
        let patch = json!([
            {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
            {"op": "test", "path": "/metadata/finalizers", "value": ["x"]}
        ]);
        assert!(super::json(&doc, &patch).is_err());
        assert_eq!(doc, json!({"metadata": {"name": "a"}}));
    }
}
