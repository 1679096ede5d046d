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
        ("batch", "jobs") => vec![
            name,
            col("Status", "string", "", "Status of the job.", 0),
            col(
                "Completions",
                "string",
                "",
                "The desired number of successfully finished pods the job should be run with.",
                0,
            ),
            col("Duration", "string", "", "Time required to complete the job.", 0),
            age,
            col(
                "Containers",
                "string",
                "",
                "Names of each container in the template.",
                1,
            ),
            col(
                "Images",
                "string",
                "",
                "Images referenced by each container in the template.",
                1,
            ),
            col(
                "Selector",
                "string",
                "",
                "A label query over pods that should match the pod count.",
                1,
            ),
        ],
        ("apps", "daemonsets") => vec![
            name,
            col(
                "Desired",
                "integer",
                "",
                "The total number of nodes that should be running the daemon pod.",
                0,
            ),
            col(
                "Current",
                "integer",
                "",
                "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
                0,
            ),
            col(
                "Ready",
                "integer",
                "",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
                0,
            ),
            col(
                "Up-to-date",
                "integer",
                "",
                "The total number of nodes that are running updated daemon pod",
                0,
            ),
            col(
                "Available",
                "integer",
                "",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
                0,
            ),
            col(
                "Node Selector",
                "string",
                "",
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
                0,
            ),
            age,
        ],
        ("apps", "replicasets") => vec![
            name,
            col(
                "Desired",
                "integer",
                "",
                "Replicas is the number of desired replicas.",
                0,
            ),
            col(
                "Current",
                "integer",
                "",
                "Replicas is the most recently observed number of replicas.",
                0,
            ),
            col(
                "Ready",
                "integer",
                "",
                "The number of ready replicas for this replica set.",
                0,
            ),
            age,
        ],
        ("apps", "statefulsets") => vec![
            name,
            col("Ready", "string", "", "Number of the pod with ready state", 0),
            age,
        ],
        ("", "services") => vec![
            name,
            col("Type", "string", "", "Type of the service.", 0),
            col("Cluster-IP", "string", "", "Cluster IP of the service.", 0),
            col("External-IP", "string", "", "External IP of the service.", 0),
            col("Port(s)", "string", "", "Ports of the service.", 0),
            age,
        ],
        ("coordination.k8s.io", "leases") => {
            vec![name, col("Holder", "string", "", "The holder of the lease.", 0), age]
        }
        ("", "events") => vec![
            col("Last Seen", "string", "", "Time when last this event was observed.", 0),
            col(
                "Type",
                "string",
                "",
                "Type of this event (Normal, Warning), new types could be added in the future.",
                0,
            ),
            col(
                "Reason",
                "string",
                "",
                "This should be a short, machine understandable string that gives the reason for this event being generated.",
                0,
            ),
            col("Object", "string", "", "The object this Event is about.", 0),
            col(
                "Message",
                "string",
                "",
                "A human-readable description of the status of this operation.",
                0,
            ),
            col("Name", "string", "name", NAME_DESC, 1),
        ],
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
        ("batch", "jobs") => {
            let st = &o["status"];
            let cond = |t: &str| {
                st["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
            };
            let status = if cond("Complete") {
                "Complete"
            } else if cond("Failed") {
                "Failed"
            } else if o["spec"]["suspend"] == json!(true) {
                "Suspended"
            } else {
                "Running"
            };
            let completions = o["spec"]["completions"].as_i64().unwrap_or(1);
            let duration = match (
                st["startTime"].as_str().and_then(meta::parse_time),
                st["completionTime"].as_str().and_then(meta::parse_time),
            ) {
                (Some(a), Some(b)) => meta::human_duration(b.as_second() - a.as_second()),
                (Some(a), None) => meta::human_duration(jiff::Timestamp::now().as_second() - a.as_second()),
                _ => String::new(),
            };
            let containers = o["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let join = |k: &str| containers.iter().map(|c| s(&c[k])).collect::<Vec<_>>().join(",");
            vec![
                name,
                json!(status),
                json!(format!("{}/{completions}", st["succeeded"].as_i64().unwrap_or(0))),
                json!(duration),
                age,
                json!(join("name")),
                json!(join("image")),
                json!(selector_string(&o["spec"]["selector"])),
            ]
        }
        ("apps", "daemonsets") => {
            let st = &o["status"];
            let n = |k: &str| json!(st[k].as_i64().unwrap_or(0));
            let sel = o["spec"]["template"]["spec"]["nodeSelector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", s(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                n("desiredNumberScheduled"),
                n("currentNumberScheduled"),
                n("numberReady"),
                n("updatedNumberScheduled"),
                n("numberAvailable"),
                json!(or_none(sel)),
                age,
            ]
        }
        ("apps", "replicasets") => {
            let st = &o["status"];
            vec![
                name,
                json!(o["spec"]["replicas"].as_i64().unwrap_or(1)),
                json!(st["replicas"].as_i64().unwrap_or(0)),
                json!(st["readyReplicas"].as_i64().unwrap_or(0)),
                age,
            ]
        }
        ("apps", "statefulsets") => vec![
            name,
            json!(format!(
                "{}/{}",
                o["status"]["readyReplicas"].as_i64().unwrap_or(0),
                o["spec"]["replicas"].as_i64().unwrap_or(1)
            )),
            age,
        ],
        ("", "services") => {
            let ports = o["spec"]["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| format!("{}/{}", s(&p["port"]), p["protocol"].as_str().unwrap_or("TCP")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(o["spec"]["type"].as_str().unwrap_or("ClusterIP")),
                json!(or_none(s(&o["spec"]["clusterIP"]))),
                json!("<none>"),
                json!(or_none(ports)),
                age,
            ]
        }
        ("coordination.k8s.io", "leases") => vec![name, json!(s(&o["spec"]["holderIdentity"])), age],
        ("", "events") => {
            let last = ["lastTimestamp", "eventTime", "firstTimestamp"]
                .iter()
                .find_map(|k| o[*k].as_str().filter(|x| !x.is_empty()))
                .map(|x| meta::age(Some(&json!(x))))
                .unwrap_or_else(|| meta::age(o["metadata"].get("creationTimestamp")));
            let io = &o["involvedObject"];
            vec![
                json!(last),
                json!(s(&o["type"])),
                json!(s(&o["reason"])),
                json!(format!("{}/{}", s(&io["kind"]).to_lowercase(), s(&io["name"]))),
                json!(s(&o["message"])),
                name,
            ]
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![name, json!(s(&o["metadata"]["creationTimestamp"]))]
        }
        _ => vec![name, age],
    }
}

fn selector_string(sel: &Value) -> String {
    sel["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", s(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
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
    fn built_in_printers_match_kubectl_columns() {
        let types = crate::store::resources::builtins();
        let t = |plural: &str| {
            types
                .iter()
                .find(|t| t.plural == plural && t.group != "events.k8s.io")
                .unwrap()
        };
        let job = json!({"metadata": {"name": "j"}, "spec": {"completions": 1},
            "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}],
                       "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:42Z"}});
        let row = cells(t("jobs"), "v1", &job);
        assert_eq!(&row[..4], &[json!("j"), json!("Complete"), json!("1/1"), json!("42s")]);
        let ev = json!({"metadata": {"name": "e"}, "type": "Warning", "reason": "R", "message": "m",
            "involvedObject": {"kind": "Pod", "name": "p"}});
        let row = cells(t("events"), "v1", &ev);
        assert_eq!(&row[1..5], &[json!("Warning"), json!("R"), json!("pod/p"), json!("m")]);
        assert_eq!(columns(t("events"), "v1")[0]["name"], "Last Seen");
    }

    #[test]
    fn jsonpath_filters_conditions() {
        let o =
            json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let v = jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status");
        assert_eq!(v, vec![&json!("True")]);
        assert!(jsonpath(&o, ".status.missing").is_empty());
    }
}
