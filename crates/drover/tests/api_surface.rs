//! drover's API surface, judged by the real API server (and by kubesim, on
//! the same cases): the committed CRD is accepted and Established with its
//! CEL rules within the cost budget; bad ClusterUpgrades, by category, are
//! refused at admission with the status code, reason, `causes[].field` and a
//! message naming the field and what is allowed; and `drover run` refuses a
//! cluster it cannot serve in one clear error, before it acts.
//!
//! The real bed here is a bare control plane (no scenario): CI runs this
//! file on the newest and on the oldest supported version.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::Bed;
use support::real::{self, Bare, repo_root};

const CRD_FILE: &str = "crds/clusterupgrades.drover.dev.yaml";

/// An API server with nothing in it, on either bed.
struct Server {
    client: Client,
    kubeconfig: std::path::PathBuf,
    drover_kubeconfig: std::path::PathBuf,
    served: String,
    _kubesim: Option<kubesim::ApiServer>,
    real: Option<Bare>,
    _dir: std::path::PathBuf,
}

async fn server(bed: Bed, apiserver_args: &[&str]) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "drover-api-surface-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    match bed {
        Bed::Kubesim => {
            let s = kubesim::ApiServer::start().await.unwrap();
            let kubeconfig = dir.join("kubeconfig");
            s.write_kubeconfig(&kubeconfig).unwrap();
            Server {
                client: s.client().unwrap(),
                drover_kubeconfig: kubeconfig.clone(),
                kubeconfig,
                served: "kubesim".into(),
                _kubesim: Some(s),
                real: None,
                _dir: dir,
            }
        }
        Bed::Real => {
            let b = Bare::start(&dir.join("cp"), apiserver_args).await;
            let served = std::fs::read_to_string(b.dir.join("version")).unwrap_or_default();
            eprintln!("real bed: Kubernetes {}", served.trim());
            Server {
                client: b.client.clone(),
                kubeconfig: b.admin.clone(),
                drover_kubeconfig: b.drover_kubeconfig.clone(),
                served: served.trim().to_string(),
                _kubesim: None,
                real: Some(b),
                _dir: dir,
            }
        }
    }
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new("kubectl");
    c.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .current_dir(repo_root());
    real::run_bounded(&mut c, Duration::from_secs(60))
}

/// Applies the committed CRD as a user would and waits (bounded) for it to be
/// Established. Returns kubectl's stderr (warnings would show there).
async fn install_crd(s: &Server) -> String {
    let kc = s.kubeconfig.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || kubectl(&kc, &["apply", "-f", CRD_FILE]))
        .await
        .unwrap();
    assert!(ok, "the committed CRD was refused by {}: {out}{err}", s.served);
    // Poll (bounded) rather than `kubectl wait`, which fails while the
    // status has no conditions yet.
    let crds = Api::<CustomResourceDefinition>::all(s.client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let established = crds
            .get_opt("clusterupgrades.drover.dev")
            .await
            .ok()
            .flatten()
            .and_then(|c| c.status)
            .and_then(|st| st.conditions)
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        if established {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the CRD is not Established on {} after 30 s",
            s.served
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    err
}

/// What the server answered a create: code, reason, causes' fields, message.
#[derive(Debug)]
struct Answer {
    code: u16,
    reason: String,
    fields: Vec<String>,
    message: String,
}

async fn post(client: &Client, object: &Value, strict: bool) -> Answer {
    let query = if strict { "?fieldValidation=Strict" } else { "" };
    let req = http::Request::post(format!("/apis/drover.dev/v1alpha1/clusterupgrades{query}"))
        .header("content-type", "application/json")
        .body(kube::client::Body::from(serde_json::to_vec(object).unwrap()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.send(req))
        .await
        .expect("the API server answers within 30 s")
        .expect("the request reaches the API server");
    let code = resp.status().as_u16();
    let body = resp.into_body().collect_bytes().await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let fields = v["details"]["causes"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Answer {
        code,
        reason: v["reason"].as_str().unwrap_or_default().to_string(),
        fields,
        message: v["message"].as_str().unwrap_or_default().to_string(),
    }
}

/// A valid ClusterUpgrade using most of the spec; each case breaks one thing.
fn valid() -> Value {
    json!({
        "apiVersion": "drover.dev/v1alpha1",
        "kind": "ClusterUpgrade",
        "metadata": {"name": "platform"},
        "spec": {
            "components": [
                {"name": "containerd", "version": "1.7.23",
                 "upgrade": {"job": {"image": "registry.example.com/up:1", "timeout": "20m",
                                     "env": [{"name": "MIRROR", "value": "https://mirror.example.com"}]}}},
                {"name": "calico", "version": "v3.29.0",
                 "upgrade": {"workload": {"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"}}}
            ],
            "nodeSelector": {"matchLabels": {"pool": "general"},
                             "matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-1a"]}]},
            "strategy": {"maxUnavailable": "20%", "maxFailures": 1, "soak": "5m",
                         "lastNodeSelector": {"matchLabels": {"tier": "edge"}}},
            "drain": {"timeout": "10m", "gracePeriodSeconds": 30,
                      "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}},
            "windows": [{"days": ["Saturday"], "start": "22:00", "end": "04:00", "timeZone": "Europe/Berlin"}],
            "backup": {"image": "registry.example.com/etcd-backup:1", "timeout": "10m"}
        }
    })
}

/// Sets (or with `Value::Null` and `remove`, removes) the value at a
/// JSON-pointer-like path of `/`-separated keys and indexes.
fn set(obj: &mut Value, path: &str, value: Value) {
    let parts: Vec<&str> = path.split('/').collect();
    let mut at = obj;
    for p in &parts[..parts.len() - 1] {
        at = match p.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*p],
        };
    }
    let last = parts[parts.len() - 1];
    match (last.parse::<usize>(), value) {
        (_, Value::Null) => {
            at.as_object_mut().unwrap().remove(last);
        }
        (Ok(i), v) if at.as_array().is_some_and(|a| a.len() == i) => at.as_array_mut().unwrap().push(v),
        (Ok(i), v) => at[i] = v,
        (Err(_), v) => at[last] = v,
    }
}

/// One bad spec: what it breaks, where, and what the refusal must say.
struct Case {
    category: &'static str,
    what: &'static str,
    edits: Vec<(&'static str, Value)>,
    strict: bool,
    code: u16,
    reason: &'static str,
    /// The `causes[].field` that must be among the causes (None: no causes).
    field: Option<&'static str>,
    /// Words of what is allowed, which the message must contain.
    allowed: &'static str,
}

fn case(
    category: &'static str,
    what: &'static str,
    path: &'static str,
    value: Value,
    field: &'static str,
    allowed: &'static str,
) -> Case {
    Case {
        category,
        what,
        edits: vec![(path, value)],
        strict: false,
        code: 422,
        reason: "Invalid",
        field: Some(field),
        allowed,
    }
}

/// A workloads case: the calico component with `targets` in place of its
/// one workload (kind, namespace and name removed).
fn targets_case(what: &'static str, targets: Value, field: &'static str, allowed: &'static str) -> Case {
    Case {
        edits: vec![
            ("spec/components/1/upgrade/workload/kind", Value::Null),
            ("spec/components/1/upgrade/workload/namespace", Value::Null),
            ("spec/components/1/upgrade/workload/name", Value::Null),
            ("spec/components/1/upgrade/workload/targets", targets),
        ],
        ..case("workloads", what, "", json!(null), field, allowed)
    }
}

fn cases() -> Vec<Case> {
    let many: Vec<Value> = (0..33)
        .map(|i| json!({"name": format!("agent-{i}"), "stage": "Addons", "version": "1.0.0", "upgrade": {"job": {"image": "x"}}}))
        .collect();
    vec![
        // structure
        case(
            "structure",
            "no components",
            "spec/components",
            Value::Null,
            "spec.components",
            "Required value",
        ),
        case(
            "structure",
            "an empty component list",
            "spec/components",
            json!([]),
            "spec.components",
            "at least 1",
        ),
        case(
            "structure",
            "components is not a list",
            "spec/components",
            json!("containerd"),
            "spec.components",
            "array",
        ),
        case(
            "structure",
            "33 components",
            "spec/components",
            json!(many),
            "spec.components",
            "32",
        ),
        case(
            "structure",
            "paused is not a boolean",
            "spec/paused",
            json!("yes"),
            "spec.paused",
            "boolean",
        ),
        Case {
            strict: true,
            code: 400,
            reason: "BadRequest",
            field: None,
            ..case(
                "structure",
                "an unknown field, strict",
                "spec/colour",
                json!("blue"),
                "",
                "unknown field \"spec.colour\"",
            )
        },
        // names
        case(
            "names",
            "a component name with '_'",
            "spec/components/0/name",
            json!("Containerd_"),
            "spec.components[0].name",
            "DNS label",
        ),
        case(
            "names",
            "a 41-character component name",
            "spec/components/0/name",
            json!("a".repeat(41)),
            "spec.components[0].name",
            "40",
        ),
        Case {
            edits: vec![
                ("spec/components/1/name", json!("containerd")),
                ("spec/components/1/stage", json!("Network")),
            ],
            ..case(
                "names",
                "two components named alike",
                "",
                Value::Null,
                "spec.components",
                "must be unique",
            )
        },
        case(
            "names",
            "a workload namespace with capitals",
            "spec/components/1/upgrade/workload/namespace",
            json!("Kube_System"),
            "spec.components[1].upgrade.workload.namespace",
            "DNS label",
        ),
        case(
            "names",
            "a workload name with a space",
            "spec/components/1/upgrade/workload/name",
            json!("calico node"),
            "spec.components[1].upgrade.workload.name",
            "DNS subdomain",
        ),
        case(
            "names",
            "a 64-character ClusterUpgrade name",
            "metadata/name",
            json!("p".repeat(64)),
            "",
            "at most 63 characters",
        ),
        case(
            "names",
            "a ClusterUpgrade name with capitals",
            "metadata/name",
            json!("Platform"),
            "metadata.name",
            "RFC 1123",
        ),
        case(
            "names",
            "an unknown component name without a stage",
            "spec/components/0/name",
            json!("my-agent"),
            "spec.components[0].stage",
            "allowed stages: Runtime, Etcd, ControlPlane, Kubelet, Network, Addons",
        ),
        // versions
        case(
            "versions",
            "version latest",
            "spec/components/0/version",
            json!("latest"),
            "spec.components[0].version",
            "semantic version",
        ),
        case(
            "versions",
            "a one-part version (two parts are a series, 1.2 is valid)",
            "spec/components/0/version",
            json!("12"),
            "spec.components[0].version",
            "semantic version",
        ),
        case(
            "versions",
            "version v1.2.3.4",
            "spec/components/0/version",
            json!("v1.2.3.4"),
            "spec.components[0].version",
            "semantic version",
        ),
        case(
            "versions",
            "version 01.2.3",
            "spec/components/0/version",
            json!("01.2.3"),
            "spec.components[0].version",
            "semantic version",
        ),
        // durations
        case(
            "durations",
            "a job timeout of 99999h",
            "spec/components/0/upgrade/job/timeout",
            json!("99999h"),
            "spec.components[0].upgrade.job.timeout",
            "at most 24h",
        ),
        case(
            "durations",
            "a drain timeout in words",
            "spec/drain/timeout",
            json!("10 minutes"),
            "spec.drain.timeout",
            "such as 90s",
        ),
        case(
            "durations",
            "a zero drain timeout",
            "spec/drain/timeout",
            json!("0s"),
            "spec.drain.timeout",
            "above 0s",
        ),
        case(
            "durations",
            "a negative soak",
            "spec/strategy/soak",
            json!("-5m"),
            "spec.strategy.soak",
            "from 0s to 24h",
        ),
        case(
            "durations",
            "a backup timeout in days",
            "spec/backup/timeout",
            json!("1d"),
            "spec.backup.timeout",
            "such as 90s",
        ),
        case(
            "durations",
            "a workload timeout of 25h",
            "spec/components/1/upgrade/workload/timeout",
            json!("25h"),
            "spec.components[1].upgrade.workload.timeout",
            "at most 24h",
        ),
        // selectors
        case(
            "selectors",
            "the operator Near",
            "spec/nodeSelector/matchExpressions/0/operator",
            json!("Near"),
            "spec.nodeSelector.matchExpressions[0].operator",
            "\"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
        ),
        case(
            "selectors",
            "Exists with values",
            "spec/drain/podSelector/matchExpressions/0/values",
            json!(["a"]),
            "spec.drain.podSelector.matchExpressions[0]",
            "empty for Exists",
        ),
        case(
            "selectors",
            "In without values",
            "spec/nodeSelector/matchExpressions/0/values",
            Value::Null,
            "spec.nodeSelector.matchExpressions[0]",
            "non-empty for the operators In",
        ),
        case(
            "selectors",
            "a label value with a space",
            "spec/nodeSelector/matchLabels/pool",
            json!("general pool"),
            "spec.nodeSelector.matchLabels[pool]",
            "at most 63",
        ),
        case(
            "selectors",
            "a label key with a space",
            "spec/strategy/lastNodeSelector/matchLabels",
            json!({"edge tier": "x"}),
            "spec.strategy.lastNodeSelector.matchLabels",
            "label keys",
        ),
        case(
            "selectors",
            "an expression without a key",
            "spec/drain/podSelector/matchExpressions/0/key",
            Value::Null,
            "spec.drain.podSelector.matchExpressions[0].key",
            "Required value",
        ),
        // windows and time zones
        case(
            "windows",
            "a start of 25:00",
            "spec/windows/0/start",
            json!("25:00"),
            "spec.windows[0].start",
            "HH:MM",
        ),
        case(
            "windows",
            "an end of 7:00",
            "spec/windows/0/end",
            json!("7:00"),
            "spec.windows[0].end",
            "HH:MM",
        ),
        case(
            "windows",
            "an end equal to the start",
            "spec/windows/0/end",
            json!("22:00"),
            "spec.windows[0].end",
            "must differ from start",
        ),
        case(
            "windows",
            "a time zone with a space",
            "spec/windows/0/timeZone",
            json!("Mars Olympus"),
            "spec.windows[0].timeZone",
            "IANA time zone",
        ),
        case(
            "windows",
            "the day Funday",
            "spec/windows/0/days/0",
            json!("Funday"),
            "spec.windows[0].days[0]",
            "\"Monday\"",
        ),
        case(
            "windows",
            "17 windows",
            "spec/windows",
            json!(vec![json!({"start": "01:00", "end": "02:00"}); 17]),
            "spec.windows",
            "16",
        ),
        // images
        case(
            "images",
            "the image 'a b c'",
            "spec/components/0/upgrade/job/image",
            json!("a b c"),
            "spec.components[0].upgrade.job.image",
            "image reference",
        ),
        case(
            "images",
            "an empty image",
            "spec/components/0/upgrade/job/image",
            json!(""),
            "spec.components[0].upgrade.job.image",
            "at least 1",
        ),
        case(
            "images",
            "an image with capitals in its path",
            "spec/components/0/upgrade/job/image",
            json!("Registry/Up:1"),
            "spec.components[0].upgrade.job.image",
            "lowercase path",
        ),
        case(
            "images",
            "a backup image with a space in its tag",
            "spec/backup/image",
            json!("etcd-backup:v1 final"),
            "spec.backup.image",
            "image reference",
        ),
        // env
        case(
            "env",
            "the env name '1 bad'",
            "spec/components/0/upgrade/job/env/0/name",
            json!("1 bad"),
            "spec.components[0].upgrade.job.env[0].name",
            "C identifier",
        ),
        case(
            "env",
            "the env name DROVER_NODE",
            "spec/components/0/upgrade/job/env/0/name",
            json!("DROVER_NODE"),
            "spec.components[0].upgrade.job.env[0].name",
            "drover sets those",
        ),
        case(
            "env",
            "two env vars named alike",
            "spec/components/0/upgrade/job/env/1",
            json!({"name": "MIRROR"}),
            "spec.components[0].upgrade.job.env",
            "must be unique",
        ),
        case(
            "env",
            "an empty env name",
            "spec/components/0/upgrade/job/env/0/name",
            json!(""),
            "spec.components[0].upgrade.job.env[0].name",
            "at least 1",
        ),
        case(
            "env",
            "65 env vars (at most 64)",
            "spec/components/0/upgrade/job/env",
            Value::Array(
                (0..65)
                    .map(|i| json!({"name": format!("V{i}"), "value": "x"}))
                    .collect(),
            ),
            "spec.components[0].upgrade.job.env",
            "must have at most 64 items",
        ),
        // budgets
        case(
            "budgets",
            "maxUnavailable 0",
            "spec/strategy/maxUnavailable",
            json!(0),
            "spec.strategy.maxUnavailable",
            "at least 1 or a percentage from 1% to 100%",
        ),
        case(
            "budgets",
            "maxUnavailable 0%",
            "spec/strategy/maxUnavailable",
            json!("0%"),
            "spec.strategy.maxUnavailable",
            "from 1% to 100%",
        ),
        case(
            "budgets",
            "maxUnavailable 150%",
            "spec/strategy/maxUnavailable",
            json!("150%"),
            "spec.strategy.maxUnavailable",
            "from 1% to 100%",
        ),
        case(
            "budgets",
            "maxUnavailable 'some'",
            "spec/strategy/maxUnavailable",
            json!("some"),
            "spec.strategy.maxUnavailable",
            "from 1% to 100%",
        ),
        case(
            "budgets",
            "maxFailures -1",
            "spec/strategy/maxFailures",
            json!(-1),
            "spec.strategy.maxFailures",
            "greater than or equal to 0",
        ),
        case(
            "budgets",
            "a negative grace period",
            "spec/drain/gracePeriodSeconds",
            json!(-5),
            "spec.drain.gracePeriodSeconds",
            "greater than or equal to 0",
        ),
        case(
            "budgets",
            "a grace period over a day",
            "spec/drain/gracePeriodSeconds",
            json!(100000),
            "spec.drain.gracePeriodSeconds",
            "less than or equal to 86400",
        ),
        // cross-field rules
        case(
            "cross-field",
            "both job and workload",
            "spec/components/0/upgrade/workload",
            json!({"kind": "Deployment", "namespace": "a", "name": "b"}),
            "spec.components[0].upgrade",
            "exactly one of job",
        ),
        case(
            "cross-field",
            "neither job nor workload",
            "spec/components/0/upgrade",
            json!({}),
            "spec.components[0].upgrade",
            "exactly one of job",
        ),
        case(
            "cross-field",
            "two verify sources",
            "spec/components/0/verify",
            json!({"nodeInfo": "kubeletVersion", "jobSucceeded": true}),
            "spec.components[0].verify",
            "exactly one of nodeInfo, pod or jobSucceeded",
        ),
        case(
            "cross-field",
            "verify on a workload",
            "spec/components/1/verify",
            json!({"jobSucceeded": true}),
            "spec.components[1].verify",
            "job components only",
        ),
        case(
            "cross-field",
            "nodes on a workload",
            "spec/components/1/nodes",
            json!("Workers"),
            "spec.components[1].nodes",
            "job components only",
        ),
        // several workloads and their containers
        case(
            "workloads",
            "targets beside kind, namespace and name",
            "spec/components/1/upgrade/workload/targets",
            json!([{"kind": "Deployment", "namespace": "kube-system", "name": "calico-kube-controllers"}]),
            "spec.components[1].upgrade.workload.targets",
            "not both and not neither",
        ),
        targets_case(
            "a target's namespace with capitals",
            json!([{"kind": "DaemonSet", "namespace": "Kube-System", "name": "calico-node"}]),
            "spec.components[1].upgrade.workload.targets[0].namespace",
            "must be a DNS label",
        ),
        targets_case(
            "17 targets (at most 16)",
            Value::Array(
                (0..17)
                    .map(|i| json!({"kind": "DaemonSet", "namespace": "kube-system", "name": format!("agent-{i}")}))
                    .collect(),
            ),
            "spec.components[1].upgrade.workload.targets",
            "must have at most 16 items",
        ),
        targets_case(
            "a target named twice",
            json!([{"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"},
                           {"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"}]),
            "spec.components[1].upgrade.workload.targets",
            "must not name a workload twice",
        ),
        Case {
            edits: vec![("spec/components/1/upgrade/workload/name", Value::Null)],
            ..case(
                "workloads",
                "kind and namespace without a name",
                "",
                json!(null),
                "spec.components[1].upgrade.workload",
                "kind, namespace and name go together",
            )
        },
        case(
            "workloads",
            "an image repository with a tag",
            "spec/components/1/upgrade/workload/imageRepositories",
            json!(["calico/node:v3.29.0"]),
            "spec.components[1].upgrade.workload.imageRepositories[0]",
            "without tag or digest",
        ),
        Case {
            edits: vec![
                ("spec/components/1/upgrade/workload/container", json!("calico-node")),
                (
                    "spec/components/1/upgrade/workload/imageRepositories",
                    json!(["calico/node"]),
                ),
            ],
            ..case(
                "workloads",
                "container and imageRepositories together",
                "",
                json!(null),
                "spec.components[1].upgrade.workload.imageRepositories",
                "exclude each other",
            )
        },
        case(
            "workloads",
            "a manifest key with a slash",
            "spec/components/1/upgrade/workload/manifest",
            json!({"configMap": {"name": "calico-v3.29.0", "key": "calico/manifest.yaml"}}),
            "spec.components[1].upgrade.workload.manifest.configMap.key",
            "must be a ConfigMap key",
        ),
        // health checks, canary, rollback, zones, hooks
        case(
            "guards",
            "a health check of two kinds",
            "spec/healthChecks",
            json!([{"name": "app", "http": {"url": "http://{{nodeIP}}/healthz"}, "pods": {"selector": {"matchLabels": {"app": "web"}}}}]),
            "spec.healthChecks[0]",
            "exactly one of http, prometheus, pods or controlPlane",
        ),
        case(
            "guards",
            "a health check URL that is not http",
            "spec/healthChecks",
            json!([{"name": "app", "http": {"url": "ftp://example.com/healthz"}}]),
            "spec.healthChecks[0].http.url",
            "must start with http:// or https://",
        ),
        case(
            "guards",
            "a health check interval of 0s",
            "spec/healthChecks",
            json!([{"name": "app", "interval": "0s", "prometheus": {"url": "http://prometheus:9090", "query": "up"}}]),
            "spec.healthChecks[0].interval",
            "from 1s to 10m",
        ),
        case(
            "guards",
            "two health checks of one name",
            "spec/healthChecks",
            json!([{"name": "app", "controlPlane": {}}, {"name": "app", "controlPlane": {}}]),
            "spec.healthChecks",
            "must be unique",
        ),
        case(
            "guards",
            "a canary of 0 nodes",
            "spec/strategy/canary",
            json!({"nodes": 0}),
            "spec.strategy.canary.nodes",
            "an integer of at least 1 or a percentage",
        ),
        Case {
            edits: vec![
                ("spec/strategy/type", json!("AllAtOnce")),
                ("spec/strategy/canary", json!({"nodes": 1})),
            ],
            ..case(
                "guards",
                "a canary with AllAtOnce",
                "",
                json!(null),
                "spec.strategy.canary",
                "is for Rolling only",
            )
        },
        case(
            "guards",
            "an unknown onFailure",
            "spec/strategy/onFailure",
            json!("Retry"),
            "spec.strategy.onFailure",
            "Rollback",
        ),
        case(
            "guards",
            "a topology key that is not a label key",
            "spec/strategy/topologyKey",
            json!("zone name"),
            "spec.strategy.topologyKey",
            "must be a label key",
        ),
        case(
            "guards",
            "a hook image with a space",
            "spec/hooks",
            json!({"preDrain": {"image": "ceph tools:1"}}),
            "spec.hooks.preDrain.image",
            "must be an image reference",
        ),
    ]
    .into_iter()
    .map(|mut c| {
        c.edits.retain(|(p, _)| !p.is_empty());
        c
    })
    .collect()
}

on_both_beds! {
    async fn the_committed_crd_is_established_and_bad_specs_are_refused_by_category(bed: Bed) {
        let _one = support::serial().await;
        let s = server(bed, &[]).await;
        let warnings = install_crd(&s).await;
        assert!(!warnings.contains("Warning"), "the CRD's admission gave warnings on {}: {warnings}", s.served);
        // Established, with its names accepted.
        let crd = Api::<CustomResourceDefinition>::all(s.client.clone()).get("clusterupgrades.drover.dev").await.unwrap();
        let conditions: BTreeMap<String, String> = crd.status.unwrap().conditions.unwrap_or_default().into_iter().map(|c| (c.type_, c.status)).collect();
        assert_eq!(conditions.get("Established").map(String::as_str), Some("True"), "{conditions:?}");
        assert_eq!(conditions.get("NamesAccepted").map(String::as_str), Some("True"), "{conditions:?}");

        // The valid object is accepted (so each case below fails for its one edit).
        let ok = post(&s.client, &valid(), true).await;
        assert_eq!(ok.code, 201, "the valid ClusterUpgrade was refused by {}: {ok:?}", s.served);
        let cus: Api<drover_api::ClusterUpgrade> = Api::all(s.client.clone());
        cus.delete("platform", &Default::default()).await.unwrap();

        let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
        let mut wrong = Vec::new();
        let all = cases();
        for c in &all {
            let mut obj = valid();
            obj["metadata"]["name"] = json!(format!("bad-{}", per_category.values().sum::<usize>() + wrong.len()));
            for (path, value) in &c.edits {
                set(&mut obj, path, value.clone());
            }
            let a = post(&s.client, &obj, c.strict).await;
            let field_ok = match c.field {
                Some("") => true,
                Some(f) => a.fields.iter().any(|x| x == f),
                None => a.fields.is_empty(),
            };
            // The message names the field (as the server prefixes each cause) and what is allowed.
            let names_field = match c.field {
                Some(f) if !f.is_empty() => a.message.contains(f),
                _ => true,
            };
            if a.code == c.code && a.reason == c.reason && field_ok && names_field && a.message.contains(c.allowed) {
                *per_category.entry(c.category).or_default() += 1;
            } else {
                wrong.push(format!("{} / {}: want {} {} {:?} with {:?}; got {a:?}", c.category, c.what, c.code, c.reason, c.field, c.allowed));
            }
        }
        eprintln!("refused as expected on {}, by category: {per_category:?}", s.served);
        assert!(wrong.is_empty(), "{} of {} bad specs were not refused as expected on {}:\n{}", wrong.len(), all.len(), s.served, wrong.join("\n"));
        assert!(per_category.len() >= 6 && all.len() >= 30, "{per_category:?}");
        // Nothing was created.
        let left = cus.list(&Default::default()).await.unwrap().items;
        assert!(left.is_empty(), "{:?}", left.iter().map(|c| c.metadata.name.clone()).collect::<Vec<_>>());
    }
}

/// Runs `drover run` (as deployed: leader election, `drover-system`) until it
/// exits, its log shows `until` (then it is stopped), or `limit` passes
/// (then it is stopped too). Returns the exit code if it exited by itself,
/// and its log, kept in `log_name` beside the kubeconfig.
fn run_drover(
    kubeconfig: &std::path::Path,
    log_name: &str,
    until: Option<&str>,
    limit: Duration,
) -> (Option<i32>, String) {
    let log = kubeconfig.with_extension(log_name);
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "run",
            "--http-addr",
            "off",
            "--namespace",
            "drover-system",
            "--leader-elect",
            "--kubeconfig",
        ])
        .arg(kubeconfig)
        .env("RUST_LOG", "info")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start drover");
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        let seen = until.is_some_and(|line| std::fs::read_to_string(&log).unwrap_or_default().contains(line));
        if seen || start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

on_both_beds! {
    async fn drover_refuses_a_cluster_it_cannot_serve_in_one_error_before_it_acts(bed: Bed) {
        // The real server runs without events.k8s.io/v1; neither bed has the CRD.
        let _one = support::serial().await;
        let s = server(bed, &["--runtime-config=events.k8s.io/v1=false"]).await;
        if let Some(b) = &s.real {
            let (ok, out, err) = b.kubectl(&["apply", "-f", "deploy/base/clusterrole.yaml", "-f", "deploy/base/role.yaml"]);
            assert!(ok, "{out}{err}");
        }
        let kc = s.drover_kubeconfig.clone();
        let (code, log) = tokio::task::spawn_blocking(move || run_drover(&kc, "drover.log", None, Duration::from_secs(60))).await.unwrap();
        assert_eq!(code, Some(1), "drover exits with an error rather than running: {log}");
        let error: Vec<&str> = log.lines().filter(|l| l.starts_with("Error: ")).collect();
        assert_eq!(error.len(), 1, "one error line: {log}");
        let error = error[0];
        assert!(error.contains("drover cannot run against this cluster"), "{error}");
        assert!(error.contains("drover.dev/v1alpha1 clusterupgrades"), "{error}");
        assert!(error.contains("kubectl apply -k crds/"), "{error}");
        if bed == Bed::Real {
            assert!(error.contains(&format!("Kubernetes {}", s.served)), "names the version: {error}");
            assert!(error.contains("events.k8s.io/v1 events"), "names the missing API: {error}");
        }
        assert!(!error.contains("ApiError") && !error.contains("ErrorResponse"), "human text: {error}");
        // It did not start acting: no Lease was taken.
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(s.client.clone(), "drover-system");
        let held = leases.get_opt("drover-leader").await.expect("the Lease can be read");
        assert!(held.is_none(), "drover took a Lease before refusing: {held:?}");
        // With the CRD and every API present, the same start-up check passes.
        if bed == Bed::Kubesim {
            install_crd(&s).await;
            let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(s.client.clone())
                .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "drover-system"}})).unwrap())
                .await;
            let kc = s.drover_kubeconfig.clone();
            let (code, log) = tokio::task::spawn_blocking(move || {
                run_drover(
                    &kc,
                    "drover-ok.log",
                    Some("the API server serves everything drover needs"),
                    Duration::from_secs(30),
                )
            })
            .await
            .unwrap();
            assert_eq!(code, None, "drover keeps running on a cluster it can serve: {log}");
            assert!(log.contains("the API server serves everything drover needs"), "{log}");
        }
    }
}
