//! The part of OpenAPI v3 kubectl reads: the `/openapi/v3` index and, per
//! group/version, the PATCH operations with their query parameters, from
//! which kubectl learns that the server validates fields itself
//! (`fieldValidation`) and so needs no client-side schema. Schemas are not
//! served; kubectl then builds strategic merge patches from its compiled types.

use crate::store::ResourceType;
use serde_json::{Map, Value, json};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the group/versions and where their documents are.
pub fn index(types: &[ResourceType]) -> Value {
    let mut paths = Map::new();
    for t in types {
        for v in t.versions.iter().filter(|v| v.served) {
            let p = gv_path(&t.group, &v.name);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=kubesim")}),
            );
        }
    }
    json!({ "paths": paths })
}

/// `/openapi/v3/<gv>`: one document per group/version.
pub fn document(types: &[ResourceType], gv: &str) -> Option<Value> {
    let mut paths = Map::new();
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
    ]);
    for t in types {
        for v in t.versions.iter().filter(|v| v.served) {
            if gv_path(&t.group, &v.name) != gv {
                continue;
            }
            let base = if t.namespaced {
                format!("/{gv}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
            } else {
                format!("/{gv}/{}/{{name}}", t.plural)
            };
            let gvk = json!({"group": t.group, "version": v.name, "kind": t.kind});
            let op = |id: &str| {
                json!({
                    "operationId": id,
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "responses": {"200": {"description": "OK"}},
                })
            };
            paths.insert(
                base.clone(),
                json!({"patch": op(&format!("patch{}", t.kind)), "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]}),
            );
            if v.status_subresource {
                paths.insert(
                    format!("{base}/status"),
                    json!({"patch": op(&format!("patch{}Status", t.kind))}),
                );
            }
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0-kubesim"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
