//! Server-side `Table` output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`),
//! the columns `kubectl get` prints: built-in printers for the common kinds,
//! `additionalPrinterColumns` for custom resources, Name/Age otherwise.

use crate::meta;
use crate::store::{PrinterColumn, ResourceType};
use serde_json::{Value, json};

fn col(name: &str, type_: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The column definitions of a resource (as requested in `version`).
pub fn columns(t: &ResourceType, version: &str) -> Vec<Value> {
    let name = col("Name", "string", "name", NAME_DESC, 0);
    let age = col("Age", "string", "", AGE_DESC, 0);
    if t.custom {
        let pcs = t
            .version(version)
            .map(|v| v.printer_columns.clone())
            .unwrap_or_default();
        if pcs.is_empty() {
            return vec![name, col("Age", "date", "", AGE_DESC, 0)];
        }
        let mut out = vec![name];
        out.extend(
            pcs.iter()
                .map(|c| col(&c.name, &c.type_, &c.format, &c.description, c.priority)),
        );
        return out;
    }
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "pods") => vec![
            name,
            col(
                "Ready",
                "string",
                "",
                "The aggregate readiness state of this pod for accepting traffic.",
                0,
            ),
            col(
                "Status",
                "string",
                "",
                "The aggregate status of the containers in this pod.",
                0,
            ),
            col(
                "Restarts",
                "string",
                "",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                0,
            ),
            age,
            col(
                "IP",
                "string",
                "",
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                1,
            ),
            col(
                "Node",
                "string",
                "",
                "NodeName is a request to schedule this pod onto a specific node.",
                1,
            ),
            col(
                "Nominated Node",
                "string",
                "",
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
                1,
            ),
            col(
                "Readiness Gates",
                "string",
                "",
                "If specified, all readiness gates will be evaluated for pod readiness.",
                1,
            ),
        ],
        ("", "nodes") => vec![
            name,
            col("Status", "string", "", "The status of the node", 0),
            col("Roles", "string", "", "The roles of the node", 0),
            age,
            col("Version", "string", "", "Kubelet Version reported by the node.", 0),
            col(
                "Internal-IP",
                "string",
                "",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
                1,
            ),
            col(
                "External-IP",
                "string",
                "",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
                1,
            ),
            col(
                "OS-Image",
                "string",
                "",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                1,
            ),
            col(
                "Kernel-Version",
                "string",
                "",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                1,
            ),
            col(
                "Container-Runtime",
                "string",
                "",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                1,
            ),
        ],
        ("", "namespaces") => vec![name, col("Status", "string", "", "The status of the namespace", 0), age],
        ("", "configmaps") => vec![
            name,
            col("Data", "string", "", "Data contains the configuration data.", 0),
            age,
        ],
        ("", "secrets") => vec![
            name,
            col(
                "Type",
                "string",
                "",
                "Used to facilitate programmatic handling of secret data.",
                0,
            ),
            col("Data", "string", "", "Data contains the secret data.", 0),
            age,
        ],
        ("apps", "deployments") => vec![
            name,
            col("Ready", "string", "", "Number of the pod with ready state", 0),
            col(
                "Up-to-date",
                "string",
                "",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                0,
            ),
            col(
                "Available",
                "string",
                "",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                0,
            ),
            age,
        ],
        ("policy", "poddisruptionbudgets") => vec![
            name,
            col(
                "Min Available",
                "string",
                "",
                "The minimum number of pods that must be available simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
                0,
            ),
            col(
                "Max Unavailable",
                "string",
                "",
                "The maximum number of pods that may be unavailable simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
                0,
            ),
            col(
                "Allowed Disruptions",
                "integer",
                "",
                "Calculated number of pods that may be disrupted at this time.",
                0,
            ),
            age,
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => vec![name, col("Created At", "date", "", "", 0)],
        _ => vec![name, age],
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or_none(x: String) -> String {
    if x.is_empty() { "<none>".into() } else { x }
}

/// The cells of one object's row.
pub fn cells(t: &ResourceType, version: &str, o: &Value) -> Vec<Value> {
    let name = json!(o["metadata"]["name"]);
    let age = json!(meta::age(o["metadata"].get("creationTimestamp")));
    if t.custom {
        let pcs = t
            .version(version)
            .map(|v| v.printer_columns.clone())
            .unwrap_or_default();
        if pcs.is_empty() {
            return vec![name, age];
        }
        let mut out = vec![name];
        out.extend(pcs.iter().map(|c| custom_cell(c, o)));
        return out;
    }
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "pods") => {
            let statuses = o["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.iter().filter(|c| c["ready"] == json!(true)).count();
            let restarts: i64 = statuses.iter().map(|c| c["restartCount"].as_i64().unwrap_or(0)).sum();
            let mut status = o["status"]["reason"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| s(&o["status"]["phase"]));
            if !o["metadata"]["deletionTimestamp"].is_null() {
                status = "Terminating".into();
            }
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts),
                age,
                json!(or_none(s(&o["status"]["podIP"]))),
                json!(or_none(s(&o["spec"]["nodeName"]))),
                json!(or_none(s(&o["status"]["nominatedNodeName"]))),
                json!("<none>"),
            ]
        }
        ("", "nodes") => {
            let ready = o["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].as_str().unwrap_or("Unknown").to_string());
            let mut status = match ready.as_deref() {
                Some("True") => "Ready".to_string(),
                // kubectl prints NotReady for False and Unknown alike.
                Some(_) => "NotReady".to_string(),
                None => "Unknown".to_string(),
            };
            if o["spec"]["unschedulable"] == json!(true) {
                status.push_str(",SchedulingDisabled");
            }
            let mut roles: Vec<String> = o["metadata"]["labels"]
                .as_object()
                .map(|l| {
                    l.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            roles.sort();
            let addr = |ty: &str| {
                o["status"]["addresses"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["type"] == ty))
                    .map(|x| s(&x["address"]))
                    .unwrap_or_default()
            };
            let info = &o["status"]["nodeInfo"];
            vec![
                name,
                json!(status),
                json!(or_none(roles.join(","))),
                age,
                json!(s(&info["kubeletVersion"])),
                json!(or_none(addr("InternalIP"))),
                json!(or_none(addr("ExternalIP"))),
                json!(or_none(s(&info["osImage"]))),
                json!(or_none(s(&info["kernelVersion"]))),
                json!(or_none(s(&info["containerRuntimeVersion"]))),
            ]
        }
        ("", "namespaces") => vec![name, json!(s(&o["status"]["phase"])), age],
        ("", "configmaps") => {
            let n = o["data"].as_object().map_or(0, |m| m.len()) + o["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(n), age]
        }
        ("", "secrets") => {
            let n = o["data"].as_object().map_or(0, |m| m.len());
            vec![name, json!(s(&o["type"])), json!(n), age]
        }
        ("apps", "deployments") => {
            let st = &o["status"];
            let n = |v: &Value| v.as_i64().unwrap_or(0);
            vec![
                name,
                json!(format!("{}/{}", n(&st["readyReplicas"]), n(&o["spec"]["replicas"]))),
                json!(n(&st["updatedReplicas"])),
                json!(n(&st["availableReplicas"])),
                age,
            ]
        }
        ("policy", "poddisruptionbudgets") => vec![
            name,
            json!(if o["spec"]["minAvailable"].is_null() {
                "N/A".into()
            } else {
                s(&o["spec"]["minAvailable"])
            }),
            json!(if o["spec"]["maxUnavailable"].is_null() {
                "N/A".into()
            } else {
                s(&o["spec"]["maxUnavailable"])
            }),
            json!(o["status"]["disruptionsAllowed"].as_i64().unwrap_or(0)),
            age,
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![name, json!(s(&o["metadata"]["creationTimestamp"]))]
        }
        _ => vec![name, age],
    }
}

fn custom_cell(c: &PrinterColumn, o: &Value) -> Value {
    let vals = jsonpath(o, &c.json_path);
    let Some(first) = vals.first() else {
        return Value::Null;
    };
    match c.type_.as_str() {
        "date" => json!(meta::age(Some(first))),
        "integer" | "number" | "boolean" => (*first).clone(),
        _ => {
            let parts: Vec<String> = vals
                .iter()
                .map(|v| match v {
                    Value::String(x) => x.clone(),
                    other => other.to_string(),
                })
                .collect();
            json!(parts.join(","))
        }
    }
}

/// The subset of kubectl JSONPath printer columns use: `.a.b`, `[n]`, `[*]`,
/// and `[?(@.k=="v")]` filters.
pub fn jsonpath<'a>(o: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut cur: Vec<&Value> = vec![o];
    let mut rest = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let field = &r[..end];
            cur = cur.into_iter().filter_map(|v| v.get(field)).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { return Vec::new() };
            let mut inner = &r[..end];
            let mut after = &r[end + 1..];
            // A filter's own ']' may come later when its value holds one.
            if inner.starts_with("?(")
                && !inner.ends_with(')')
                && let Some(e2) = r.find(")]")
            {
                inner = &r[..e2 + 1];
                after = &r[e2 + 2..];
            }
            cur = if inner == "*" {
                cur.into_iter()
                    .flat_map(|v| v.as_array().into_iter().flatten())
                    .collect()
            } else if let Some(f) = inner.strip_prefix("?(").and_then(|x| x.strip_suffix(')')) {
                let (lhs, rhs) = f.split_once("==").unwrap_or((f, ""));
                let field = lhs.trim().trim_start_matches("@.");
                let want = rhs.trim().trim_matches('"').trim_matches('\'');
                cur.into_iter()
                    .flat_map(|v| v.as_array().into_iter().flatten())
                    .filter(|it| {
                        let got = field.split('.').try_fold(*it, |acc, k| acc.get(k));
                        got.is_some_and(|g| s(g) == want)
                    })
                    .collect()
            } else if let Ok(i) = inner.parse::<usize>() {
                cur.into_iter().filter_map(|v| v.get(i)).collect()
            } else {
                let key = inner.trim_matches('\'').trim_matches('"');
                cur.into_iter().filter_map(|v| v.get(key)).collect()
            };
            rest = after;
        } else {
            return Vec::new();
        }
    }
    cur
}

/// `PartialObjectMetadata` of an object, the default `includeObject=Metadata`.
pub fn partial(o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
}

/// A row, with its object embedded as requested by `includeObject`.
pub fn row(t: &ResourceType, version: &str, o: &Value, include: &str) -> Value {
    let mut r = json!({"cells": cells(t, version, o)});
    match include {
        "None" => {}
        "Object" => r["object"] = o.clone(),
        _ => r["object"] = partial(o),
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_filters_conditions() {
        let o =
            json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let v = jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status");
        assert_eq!(v, vec![&json!("True")]);
        assert!(jsonpath(&o, ".status.missing").is_empty());
    }
}
