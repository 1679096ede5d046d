//! Legacy discovery documents (`/api`, `/apis`, `/apis/<g>/<v>`) and `/version`.
//! Aggregated discovery is not served: clients asking for it get plain
//! `application/json` and fall back, as they do against older servers.

use crate::store::ResourceType;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "emulationMajor": "1",
        "emulationMinor": "35",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "34",
        "gitVersion": "v1.35.0-kubesim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]
    })
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn resource_entries(t: &ResourceType, version: &str) -> Vec<Value> {
    let mut out = vec![json!({
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": VERBS,
        "shortNames": t.short_names,
        "categories": t.categories,
        "storageVersionHash": "",
    })];
    let status = t.version(version).is_some_and(|v| v.status_subresource);
    if status {
        out.push(json!({
            "name": format!("{}/status", t.plural),
            "singularName": "",
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": ["get", "patch", "update"],
        }));
    }
    if crate::scale::has_scale(t) {
        out.push(json!({
            "name": format!("{}/scale", t.plural),
            "singularName": "",
            "namespaced": t.namespaced,
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
            "verbs": ["get", "patch", "update"],
        }));
    }
    if t.group.is_empty() && t.plural == "pods" {
        out.push(json!({
            "name": "pods/binding",
            "singularName": "",
            "namespaced": true,
            "kind": "Binding",
            "verbs": ["create"],
        }));
        out.push(json!({
            "name": "pods/eviction",
            "singularName": "",
            "namespaced": true,
            "group": "policy",
            "version": "v1",
            "kind": "Eviction",
            "verbs": ["create"],
        }));
    }
    for e in &mut out {
        let o = e.as_object_mut().unwrap();
        if o.get("shortNames")
            .and_then(Value::as_array)
            .is_some_and(|a| a.is_empty())
        {
            o.remove("shortNames");
        }
        if o.get("categories")
            .and_then(Value::as_array)
            .is_some_and(|a| a.is_empty())
        {
            o.remove("categories");
        }
    }
    out
}

/// `APIResourceList` of one group/version.
pub fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for t in types.iter().filter(|t| t.group == group) {
        if t.version(version).is_some() {
            resources.extend(resource_entries(t, version));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

fn version_rank(v: &str) -> (u8, u32, u32) {
    // Kubernetes version priority: GA > beta > alpha, then by number.
    let rest = v.trim_start_matches('v');
    let (num, tail) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()));
    let major = num.parse().unwrap_or(0);
    let (stage, minor) = if let Some(b) = tail.strip_prefix("beta") {
        (1, b.parse().unwrap_or(0))
    } else if let Some(a) = tail.strip_prefix("alpha") {
        (0, a.parse().unwrap_or(0))
    } else if tail.is_empty() {
        (2, 0)
    } else {
        (0, 0)
    };
    (stage, major, minor)
}

fn groups(types: &[ResourceType]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        let e = m.entry(t.group.clone()).or_default();
        for v in t.versions.iter().filter(|v| v.served) {
            if !e.contains(&v.name) {
                e.push(v.name.clone());
            }
        }
    }
    for vs in m.values_mut() {
        vs.sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
    }
    m
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// `APIGroupList` for `/apis`.
pub fn group_list(types: &[ResourceType]) -> Value {
    let gs: Vec<Value> = groups(types).iter().map(|(n, vs)| group_json(n, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

/// `APIGroup` for `/apis/<group>`.
pub fn group(types: &[ResourceType], name: &str) -> Option<Value> {
    let gs = groups(types);
    let vs = gs.get(name)?;
    let mut g = group_json(name, vs);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}
