//! Server-side apply and `managedFields`: who owns which field, conflicts
//! between appliers, `force`, and removal of fields an applier stops setting.
//! Field sets use the real `FieldsV1` path elements (`f:name`, `k:{...}`, `v:...`).

use super::resources::ResourceType;
use crate::error::{ApiError, Cause};
use crate::meta;
use crate::patch::{ListKind, list_kind};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

type Path = Vec<String>;
type FieldSet = BTreeSet<Path>;

const SKIP_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn same(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.as_deref() == subresource
    }
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s = format!("{s} with subresource {sub:?}");
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
    fn to_json(&self) -> Value {
        let mut e = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": render(&self.fields),
        });
        if let Some(s) = &self.subresource {
            e["subresource"] = json!(s);
        }
        e
    }
}

fn parse_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let mut fields = FieldSet::new();
                    parse_fields(&e["fieldsV1"], &mut Vec::new(), &mut fields);
                    let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
                    Entry {
                        manager: s("manager"),
                        operation: s("operation"),
                        api_version: s("apiVersion"),
                        time: s("time"),
                        subresource: e["subresource"].as_str().map(str::to_string),
                        fields,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn parse_fields(v: &Value, prefix: &mut Path, out: &mut FieldSet) {
    if let Some(m) = v.as_object() {
        for (k, child) in m {
            if k == "." {
                out.insert(prefix.clone());
                continue;
            }
            prefix.push(k.clone());
            if child.as_object().is_none_or(|c| c.is_empty()) {
                out.insert(prefix.clone());
            } else {
                parse_fields(child, prefix, out);
            }
            prefix.pop();
        }
    }
}

#[derive(Default)]
struct Node {
    own: bool,
    children: std::collections::BTreeMap<String, Node>,
}

fn render(fields: &FieldSet) -> Value {
    let mut root = Node::default();
    for p in fields {
        let mut cur = &mut root;
        for el in p {
            cur = cur.children.entry(el.clone()).or_default();
        }
        cur.own = true;
    }
    node_json(&root)
}

fn node_json(n: &Node) -> Value {
    let mut m = Map::new();
    if n.own && !n.children.is_empty() {
        m.insert(".".into(), json!({}));
    }
    for (k, c) in &n.children {
        m.insert(k.clone(), node_json(c));
    }
    Value::Object(m)
}

/// Leaf field paths of an object, as managedFields records them.
fn leaves(obj: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            match scope {
                Scope::Status if k != "status" => continue,
                Scope::Main { status_sub: true } if k == "status" => continue,
                _ => {}
            }
            if k == "metadata" {
                if let Some(mm) = v.as_object() {
                    for (mk, mv) in mm {
                        if SKIP_META.contains(&mk.as_str()) {
                            continue;
                        }
                        walk(mv, mk, &mut vec!["f:metadata".into(), format!("f:{mk}")], &mut out);
                    }
                }
                continue;
            }
            walk(v, k, &mut vec![format!("f:{k}")], &mut out);
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Scope {
    Main { status_sub: bool },
    Status,
}

fn walk(v: &Value, field: &str, path: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                path.push(format!("f:{k}"));
                walk(c, k, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_kind(field) {
            ListKind::Keyed(key) if items.iter().all(|i| i.get(key).is_some()) => {
                for it in items {
                    path.push(item_key(key, it));
                    walk(it, "", path, out);
                    path.pop();
                }
            }
            ListKind::Set => {
                for it in items {
                    path.push(format!("v:{it}"));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

fn item_key(key: &str, item: &Value) -> String {
    format!("k:{}", json!({ key: item[key] }))
}

/// The value at a field path (None when absent).
fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for el in path {
        cur = step(cur, el)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, el: &str) -> Option<&'a Value> {
    if let Some(f) = el.strip_prefix("f:") {
        return cur.get(f);
    }
    if let Some(k) = el.strip_prefix("k:") {
        let kv: Value = serde_json::from_str(k).ok()?;
        let kv = kv.as_object()?;
        return cur
            .as_array()?
            .iter()
            .find(|it| kv.iter().all(|(kk, vv)| it.get(kk) == Some(vv)));
    }
    if let Some(x) = el.strip_prefix("v:") {
        let xv: Value = serde_json::from_str(x).ok()?;
        return cur.as_array()?.iter().find(|it| **it == xv);
    }
    None
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for el in parent {
        let next = if let Some(f) = el.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            let idx = step(cur, el).and_then(|target| cur.as_array()?.iter().position(|x| x == target));
            match idx {
                Some(i) => cur.get_mut(i),
                None => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(target) = step(cur, last).cloned()
        && let Some(a) = cur.as_array_mut()
    {
        a.retain(|x| *x != target);
    }
}

/// Merges an applied configuration into the live object.
fn ssa_merge(cur: &Value, applied: &Value, field: &str) -> Value {
    match (cur, applied) {
        (Value::Object(c), Value::Object(a)) => {
            let mut out = c.clone();
            for (k, av) in a {
                let merged = match c.get(k) {
                    Some(cv) => ssa_merge(cv, av, k),
                    None => av.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(c), Value::Array(a)) => match list_kind(field) {
            ListKind::Keyed(key) if a.iter().all(|i| i.get(key).is_some()) => {
                let mut out = c.clone();
                for it in a {
                    match out.iter().position(|x| x.get(key) == it.get(key)) {
                        Some(i) => out[i] = ssa_merge(&out[i], it, ""),
                        None => out.push(it.clone()),
                    }
                }
                Value::Array(out)
            }
            ListKind::Set => {
                let mut out = c.clone();
                for it in a {
                    if !out.contains(it) {
                        out.push(it.clone());
                    }
                }
                Value::Array(out)
            }
            _ => applied.clone(),
        },
        _ => applied.clone(),
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const CLIENT_SIDE_APPLY: &str = "kubectl-client-side-apply";

/// Marker manager name: do not track this write.
pub const NO_TRACK: &str = "\u{0}kubesim-no-track";

/// Records the fields a non-apply write changed as owned by `manager`
/// (operation Update), taking them from every other manager.
pub fn track_update(old: Option<&Value>, new: &mut Value, manager: &str, api_version: &str, subresource: Option<&str>) {
    if manager == NO_TRACK {
        return;
    }
    let scope = match subresource {
        Some("status") => Scope::Status,
        _ => Scope::Main { status_sub: false },
    };
    let new_leaves = leaves(new, scope);
    let changed: FieldSet = match old {
        None => new_leaves.clone(),
        Some(o) => new_leaves
            .iter()
            .filter(|p| get_path(o, p) != get_path(new, p))
            .cloned()
            .collect(),
    };
    let mut entries = old.map(parse_entries).unwrap_or_default();
    let all_new = leaves(new, Scope::Main { status_sub: false });
    let mut dirty = !changed.is_empty();
    for e in &mut entries {
        let before = e.fields.len();
        e.fields
            .retain(|p| !changed.contains(p) && (all_new.contains(p) || get_path(new, p).is_some()));
        dirty |= e.fields.len() != before;
    }
    if !dirty {
        if let Some(o) = old {
            new["metadata"]["managedFields"] = o["metadata"]["managedFields"].clone();
            if new["metadata"]["managedFields"].is_null()
                && let Some(m) = new["metadata"].as_object_mut()
            {
                m.remove("managedFields");
            }
        }
        return;
    }
    let now = meta::now();
    match entries.iter_mut().find(|e| e.same(manager, "Update", subresource)) {
        Some(e) => {
            e.fields.extend(changed);
            e.time = now;
            e.api_version = api_version.to_string();
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            time: now,
            subresource: subresource.map(str::to_string),
            fields: changed,
        }),
    }
    write_entries(new, entries);
}

fn write_entries(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect();
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if list.is_empty() {
        obj["metadata"].as_object_mut().unwrap().remove("managedFields");
    } else {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

fn path_string(p: &[String]) -> String {
    let mut s = String::new();
    for el in p {
        if let Some(f) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let kv: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            let inner: Vec<String> = kv
                .as_object()
                .map(|m| m.iter().map(|(a, b)| format!("{a}={b}")).collect())
                .unwrap_or_default();
            s.push_str(&format!("[{}]", inner.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// The checks of an apply request before its body is typed: a field
/// manager (422 without one), a kind and an apiVersion (400), no other name
/// than the URL's (400). Returns the manager and the applied apiVersion.
pub fn check_request(
    t: &ResourceType,
    name: &str,
    body: &Value,
    field_manager: Option<&str>,
) -> Result<(String, String), ApiError> {
    let manager = field_manager
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            let mut e = ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![Cause::required("fieldManager", "is required for apply patch")],
            );
            if let Some(d) = e.details.as_mut().and_then(Value::as_object_mut) {
                d.remove("name");
            }
            e
        })?;
    if body["kind"].as_str().is_none_or(str::is_empty) || body["apiVersion"].as_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(format!(
            "invalid object type: {}",
            if body["kind"].is_null() {
                "Object 'Kind' is missing"
            } else {
                "Object 'apiVersion' is missing"
            }
        )));
    }
    if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            body["metadata"]["name"].as_str().unwrap_or("")
        )));
    }
    let api_version = body["apiVersion"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| t.api_version(t.storage_version()));
    Ok((manager, api_version))
}

/// Server-side apply: returns the merged object with its new managedFields,
/// or `409 Conflict` naming the fields other managers own with other values.
pub fn apply(
    t: &ResourceType,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    let scope = match subresource {
        Some("status") => Scope::Status,
        _ => Scope::Main {
            status_sub: t.has_status(),
        },
    };
    let applied_set = leaves(applied, scope);
    let base = current.cloned().unwrap_or_else(|| json!({}));
    let mut entries = current.map(parse_entries).unwrap_or_default();
    // Moving from client-side to server-side apply: fields kubectl's
    // client-side apply owns whose last-applied value is what is applied now
    // pass to the applier instead of conflicting.
    let last_applied: Option<Value> = base["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok());
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for e in &mut entries {
        if e.same(manager, "Apply", subresource) {
            continue;
        }
        let upgrade = e.manager == CLIENT_SIDE_APPLY && e.operation == "Update";
        let mut transferred = Vec::new();
        for p in e.fields.intersection(&applied_set) {
            if get_path(&base, p) != get_path(applied, p) {
                let was_applied = last_applied
                    .as_ref()
                    .is_some_and(|l| get_path(l, p) == get_path(applied, p));
                if upgrade && was_applied {
                    transferred.push(p.clone());
                } else {
                    conflicts.push((e.describe(), p.clone()));
                }
            }
        }
        for p in transferred {
            e.fields.remove(&p);
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    if force {
        for e in &mut entries {
            if !e.same(manager, "Apply", subresource) {
                e.fields
                    .retain(|p| !(applied_set.contains(p) && get_path(&base, p) != get_path(applied, p)));
            }
        }
    }
    let mut merged = ssa_merge(&base, applied, "");
    // Fields this manager applied before and no longer applies, owned by no
    // one else, are removed from the object.
    let previous = entries
        .iter()
        .find(|e| e.same(manager, "Apply", subresource))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut kept: FieldSet = applied_set.clone();
    for e in &entries {
        if !e.same(manager, "Apply", subresource) {
            kept.extend(e.fields.iter().cloned());
        }
    }
    for p in previous.difference(&applied_set) {
        if kept.contains(p) {
            continue;
        }
        // Remove the largest subtree no kept field lives under.
        let mut cut = p.len();
        for i in 1..=p.len() {
            let prefix = &p[..i];
            if !kept.iter().any(|k| k.starts_with(prefix)) {
                cut = i;
                break;
            }
        }
        remove_path(&mut merged, &p[..cut]);
    }
    // Re-applying the same fields keeps the entry (and its time) as it was,
    // so a no-op apply leaves the object untouched: no new resourceVersion,
    // no watch event, as on a real server.
    match entries.iter_mut().find(|e| e.same(manager, "Apply", subresource)) {
        Some(e) if e.fields == applied_set && e.api_version == api_version => {}
        Some(e) => {
            e.fields = applied_set;
            e.api_version = api_version.to_string();
            e.time = meta::now();
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            time: meta::now(),
            subresource: subresource.map(str::to_string),
            fields: applied_set,
        }),
    }
    write_entries(&mut merged, entries);
    Ok(merged)
}

fn conflict_error(conflicts: &[(String, Path)]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": path_string(p)})
        })
        .collect();
    let message = if conflicts.len() == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].0,
            path_string(&conflicts[0].1)
        )
    } else {
        let mut managers: Vec<&String> = conflicts.iter().map(|(m, _)| m).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            for (cm, p) in conflicts {
                if cm == m {
                    lines.push(format!("- {}", path_string(p)));
                }
            }
        }
        format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
    };
    ApiError::new(409, "Conflict", message).with_details(json!({ "causes": causes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_through_fields_v1() {
        let obj = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x"]},
                         "spec": {"containers": [{"name": "c", "image": "i"}], "replicas": 2}});
        let set = leaves(&obj, Scope::Main { status_sub: true });
        let mut back = FieldSet::new();
        parse_fields(&render(&set), &mut Vec::new(), &mut back);
        assert_eq!(set, back, "{}", render(&set));
        assert!(set.contains(&vec![
            "f:spec".to_string(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into(),
            "f:image".into()
        ]));
    }
}
