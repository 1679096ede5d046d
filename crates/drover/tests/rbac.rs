//! The RBAC in `deploy/base` covers every API call drover makes, and each
//! of its rules is needed. The list of calls is not written by hand: the
//! real `drover run` binary (with leader election, as deployed) talks to a
//! kubesim API server through a recording proxy while a rollout exercises
//! its paths: a backup Job, a control-plane node verified by its static
//! pod, a DaemonSet component, a drain blocked by a PodDisruptionBudget and
//! then let through, upgrade Jobs, events, deletion with its finalizer
//! cleanup, and the Lease released on SIGTERM. drover runs with the args,
//! env and probes of the rendered Deployment. Each recorded request is
//! turned into RBAC attributes the way the API server does it and checked
//! against the ClusterRole (anywhere) and the Role (in drover-system only).

mod deploy_support;
mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use deploy_support::{Rule, documents, kubectl, repo, rules, temp_dir};
use drover_api::ClusterUpgrade;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);
const NS: &str = "drover-system";

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
}

/// What RBAC authorizes a request by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Attributes {
    Resource {
        verb: String,
        group: String,
        /// `resource` or `resource/subresource`.
        resource: String,
        namespace: Option<String>,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

/// The API server's request info, for the paths a client of the core and
/// aggregated APIs can send.
fn attributes(s: &Seen) -> Attributes {
    let segs: Vec<&str> = s.path.split('/').filter(|x| !x.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", g, _v, rest @ ..] if !rest.is_empty() => (*g, rest),
        _ => {
            return Attributes::NonResource {
                verb: s.method.to_lowercase(),
                path: s.path.clone(),
            };
        }
    };
    let (legacy_watch, rest) = match rest {
        ["watch", more @ ..] => (true, more),
        r => (false, r),
    };
    let (namespace, resource, name, sub) = match rest {
        ["namespaces", ns, res, more @ ..] => (Some(ns.to_string()), *res, more.first(), more.get(1)),
        [res, more @ ..] => (None, *res, more.first(), more.get(1)),
        [] => unreachable!(),
    };
    let watch_param = s.query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (s.method.as_str(), name.is_some()) {
        ("GET", _) if legacy_watch || (watch_param && name.is_none()) => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        (m, _) => panic!("unexpected method {m} on {}", s.path),
    };
    Attributes::Resource {
        verb: verb.into(),
        group: group.into(),
        resource: match sub {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        },
        namespace,
    }
}

/// Discovery, which the built-in `system:discovery` ClusterRole grants to
/// every authenticated user (drover reads `/apis/policy` to pick the
/// Eviction version, as kubectl does).
fn discovery_allows(verb: &str, path: &str) -> bool {
    verb == "get"
        && (["/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi"].contains(&path)
            || ["/api/", "/apis/", "/openapi/"].iter().any(|p| path.starts_with(p)))
}

struct Policy {
    cluster: Vec<Rule>,
    namespaced: Vec<Rule>,
}

/// `deploy/base` as kustomize renders it.
fn rendered_base() -> Vec<Value> {
    let base = repo().join("deploy/base");
    let rendered = kubectl(None, &["kustomize", &base.to_string_lossy()], Duration::from_secs(60));
    assert!(rendered.ok, "{}", rendered.text);
    documents(&rendered.stdout)
}

impl Policy {
    /// drover's ClusterRole and its Roles (leader election, manifests,
    /// health checks' Secrets) from the rendered documents.
    fn of(docs: &[Value]) -> Policy {
        let role = |kind: &str, name: &str| {
            rules(
                docs.iter()
                    .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
                    .unwrap(),
            )
        };
        let mut namespaced = role("Role", "drover-leader-election");
        namespaced.extend(role("Role", "drover-manifests"));
        namespaced.extend(role("Role", "drover-health-secrets"));
        Policy {
            cluster: role("ClusterRole", "drover"),
            namespaced,
        }
    }

    /// The rules that allow `a`: (true, i) for ClusterRole rule i, (false, i) for Role rule i.
    fn allowing(&self, a: &Attributes) -> Vec<(bool, usize)> {
        let Attributes::Resource {
            verb,
            group,
            resource,
            namespace,
        } = a
        else {
            return Vec::new();
        };
        let mut out: Vec<(bool, usize)> = self
            .cluster
            .iter()
            .enumerate()
            .filter(|(_, r)| r.allows(group, resource, verb))
            .map(|(i, _)| (true, i))
            .collect();
        if namespace.as_deref() == Some(NS) {
            out.extend(
                self.namespaced
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.allows(group, resource, verb))
                    .map(|(i, _)| (false, i)),
            );
        }
        out
    }
}

/// A reverse proxy in front of kubesim that records each request.
struct Proxy {
    upstream: Client,
    seen: Mutex<Vec<Seen>>,
}

async fn forward(State(p): State<Arc<Proxy>>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    p.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
    });
    let mut b = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.path_and_query().map(|x| x.as_str()).unwrap_or("/"));
    for (k, v) in &parts.headers {
        if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
            b = b.header(k, v);
        }
    }
    let up = b.body(kube::client::Body::from(body.to_vec())).unwrap();
    match p.upstream.send(up).await {
        Ok(res) => {
            let (mut parts, body) = res.into_parts();
            parts.headers.remove(http::header::TRANSFER_ENCODING);
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::new(body))
        }
        Err(e) => (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn start_proxy(upstream_url: &str) -> (Arc<Proxy>, String) {
    let mut config = kube::Config::new(upstream_url.parse().unwrap());
    config.default_retry = false;
    let proxy = Arc::new(Proxy {
        upstream: Client::try_from(config).unwrap(),
        seen: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(forward).with_state(proxy.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (proxy, url)
}

struct Drover(Child);

impl Drop for Drover {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drover {
    /// SIGTERM, and wait (bounded) for a graceful exit.
    fn terminate(&mut self) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(st)) = self.0.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

async fn create<K>(api: &Api<K>, v: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

async fn set_status<K>(api: &Api<K>, name: &str, status: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .unwrap();
}

fn all<K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>>(c: &Client) -> Api<K> {
    Api::all(c.clone())
}

fn ns<K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>>(
    c: &Client,
    ns: &str,
) -> Api<K> {
    Api::namespaced(c.clone(), ns)
}

async fn node(client: &Client, name: &str, role: Option<&str>) {
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(name));
    if let Some(r) = role {
        labels.insert(format!("node-role.kubernetes.io/{r}"), json!(""));
    }
    create::<Node>(
        &all(client),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}),
    )
    .await;
    set_status::<Node>(
        &all(client),
        name,
        json!({
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v1.31.4", "kubeProxyVersion": "v1.31.4", "containerRuntimeVersion": "containerd://1.7.22",
                         "osImage": "Debian", "kernelVersion": "6.1", "architecture": "amd64", "bootID": "", "machineID": "",
                         "operatingSystem": "linux", "systemUUID": ""}}),
    )
    .await;
}

/// The kube-apiserver static (mirror) pod of a control-plane node.
async fn apiserver_pod(client: &Client, node: &str, tag: &str) {
    let name = format!("kube-apiserver-{node}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    if pods.get_opt(&name).await.unwrap().is_some() {
        pods.delete(&name, &Default::default()).await.unwrap();
    }
    create::<Pod>(
        &ns(client, "kube-system"),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "labels": {"component": "kube-apiserver", "tier": "control-plane"},
                            "annotations": {"kubernetes.io/config.mirror": "x"}},
               "spec": {"nodeName": node, "containers": [{"name": "kube-apiserver", "image": format!("registry.k8s.io/kube-apiserver:{tag}")}]}}),
    )
    .await;
    set_status::<Pod>(
        &ns(client, "kube-system"),
        &name,
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
    )
    .await;
}

/// Play the Job controller, the kubelet and the DaemonSet controller.
async fn play_cluster(client: Client) {
    let jobs: Api<Job> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    loop {
        for job in jobs
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let finished = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| !c.is_empty());
            if finished {
                continue;
            }
            let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let env = pod.containers[0].env.clone().unwrap_or_default();
            let get = |k: &str| env.iter().find(|e| e.name == k).and_then(|e| e.value.clone());
            if let (Some(node), Some(component), Some(version)) =
                (get("DROVER_NODE"), get("DROVER_COMPONENT"), get("DROVER_VERSION"))
            {
                match component.as_str() {
                    "containerd" => {
                        let st = json!({"status": {"nodeInfo": {"containerRuntimeVersion": format!("containerd://{version}")}}});
                        nodes
                            .patch_status(&node, &PatchParams::default(), &Patch::Merge(&st))
                            .await
                            .unwrap();
                    }
                    "kube-apiserver" => apiserver_pod(&client, &node, &version).await,
                    other => panic!("no Job expected for {other}"),
                }
            }
            let api: Api<Job> = Api::namespaced(client.clone(), &job.namespace().unwrap());
            let done = json!({"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}});
            let _ = api
                .patch_status(&job.name_any(), &PatchParams::default(), &Patch::Merge(&done))
                .await;
        }
        if let Ok(d) = ds.get("calico-node").await
            && d.status.as_ref().and_then(|s| s.observed_generation) != d.metadata.generation
        {
            let st = json!({"status": {"observedGeneration": d.metadata.generation, "desiredNumberScheduled": 3,
                "currentNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3, "numberReady": 3, "numberMisscheduled": 0}});
            let _ = ds
                .patch_status("calico-node", &PatchParams::default(), &Patch::Merge(&st))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain HTTP/1.0 GET on loopback: the status code and the body.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(WAIT, async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drovers_rbac_covers_every_call_it_makes_and_no_rule_is_idle() {
    let server = kubesim::ApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let dir = temp_dir("rbac");
    let direct = dir.join("direct.kubeconfig");
    server.write_kubeconfig(&direct).unwrap();

    // Install drover's manifests as a user would; read the rules back from the render.
    let base = repo().join("deploy/base").to_string_lossy().into_owned();
    let ns_file = repo().join("deploy/base/namespace.yaml").to_string_lossy().into_owned();
    for args in [
        vec!["apply", "-f", &ns_file],
        vec!["apply", "--server-side", "-k", &base],
    ] {
        let (kc, a) = (direct.clone(), args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let out = tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            kubectl(Some(&kc), &a, Duration::from_secs(90))
        })
        .await
        .unwrap();
        assert!(out.ok, "{}", out.text);
    }
    let docs = rendered_base();
    let policy = Policy::of(&docs);

    // The cluster: a control-plane node and two workers, an app pod behind a
    // PodDisruptionBudget that allows nothing yet, and a network DaemonSet.
    node(&client, "cp-0", Some("control-plane")).await;
    node(&client, "worker-0", None).await;
    node(&client, "worker-1", None).await;
    apiserver_pod(&client, "cp-0", "v1.31.4").await;
    let rs: k8s_openapi::api::apps::v1::ReplicaSet = create(
        &ns(&client, "default"),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}),
    )
    .await;
    create::<Pod>(
        &ns(&client, "default"),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web-1", "labels": {"app": "web"},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": rs.uid().unwrap(), "controller": true}]},
               "spec": {"nodeName": "worker-0", "containers": [{"name": "web", "image": "web:1"}]}}),
    )
    .await;
    set_status::<Pod>(
        &ns(&client, "default"),
        "web-1",
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
    )
    .await;
    create::<PodDisruptionBudget>(
        &ns(&client, "default"),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
               "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
    )
    .await;
    let pdb_status = |allowed: i32| json!({"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1});
    set_status::<PodDisruptionBudget>(&ns(&client, "default"), "web", pdb_status(0)).await;
    create::<DaemonSet>(
        &ns(&client, "kube-system"),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "calico-node"},
               "spec": {"selector": {"matchLabels": {"k8s-app": "calico-node"}},
                        "template": {"metadata": {"labels": {"k8s-app": "calico-node"}},
                                     "spec": {"containers": [{"name": "calico-node", "image": "calico/node:v3.28.0"}]}}}}),
    )
    .await;
    // The network plugin's manifest, applied before its image is set: a ConfigMap in drover's namespace.
    let manifest = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: calico-node, namespace: kube-system}\nspec:\n  template:\n    spec:\n      containers:\n        - name: calico-node\n          env: [{name: CALICO_MANIFEST, value: v3.29.0}]\n";
    create::<k8s_openapi::api::core::v1::ConfigMap>(
        &ns(&client, NS),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "calico-manifest"}, "data": {"calico.yaml": manifest}}),
    )
    .await;
    let cluster = tokio::spawn(play_cluster(client.clone()));

    // drover as deployed: leader election and Jobs in drover-system, through the recorder.
    let (proxy, proxy_url) = start_proxy(&server.url()).await;
    let recorded = dir.join("recorded.kubeconfig");
    std::fs::write(&recorded, kubesim::kubeconfig(&proxy_url)).unwrap();
    // The Deployment's own args and env, with the HTTP address moved to a free
    // loopback port and shorter drain passes for the test's pace.
    let container = &docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "drover")
        .unwrap()["spec"]["template"]["spec"]["containers"][0];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let at = args
        .iter()
        .position(|a| a == "--http-addr")
        .expect("the Deployment sets --http-addr")
        + 1;
    assert_eq!(args[at], "0.0.0.0:8080");
    args[at] = format!("127.0.0.1:{port}");
    assert!(args.contains(&"--leader-elect".to_string()) && args.contains(&NS.to_string()));
    let env: Vec<String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(env, ["POD_NAME", "NODE_NAME"]);
    let mut drover = Drover(
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(&args)
            .args(["--drain-pass-seconds", "1", "--kubeconfig"])
            .arg(&recorded)
            .env("POD_NAME", "drover-0")
            .env("NODE_NAME", "worker-1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start drover"),
    );

    // The Deployment's probes answer once drover leads.
    let probe = |field: &str| container[field]["httpGet"]["path"].as_str().unwrap().to_string();
    for path in [probe("livenessProbe"), probe("readinessProbe")] {
        wait_for(&format!("{path} to answer 200"), || {
            let path = path.clone();
            async move { http_get(port, &path).await.is_some_and(|(code, _)| code == 200) }
        })
        .await;
    }
    let (_, metrics) = http_get(port, "/metrics").await.unwrap();
    assert!(metrics.contains("drover_leader 1"), "{metrics}");

    let spec: drover_api::ClusterUpgradeSpec = serde_json::from_value(json!({
        "components": [
            {"name": "containerd", "version": "1.7.23", "upgrade": {"job": {"image": "example.com/up:1", "privileged": true, "hostRoot": true}}},
            {"name": "kube-apiserver", "version": "v1.32.0", "upgrade": {"job": {"image": "example.com/kubeadm:1", "privileged": true, "hostRoot": true}}},
            {"name": "calico", "version": "v3.29.0", "upgrade": {"workload": {"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node",
                "manifest": {"configMap": {"name": "calico-manifest", "key": "calico.yaml"}}}}}
        ],
        "backup": {"image": "example.com/backup:1"},
        "strategy": {"maxUnavailable": 1}
    }))
    .unwrap();
    let cus: Api<ClusterUpgrade> = Api::all(client.clone());
    cus.create(&PostParams::default(), &ClusterUpgrade::new("platform", spec))
        .await
        .unwrap();

    // The drain of worker-0 is refused by the budget (drover names it), then let through.
    let has_request = |verb: &str, resource: &str| {
        proxy.seen.lock().unwrap().iter().any(|s| {
            matches!(attributes(s), Attributes::Resource { verb: v, resource: r, .. } if v == verb && r == resource)
        })
    };
    wait_for("drover to look up the budget blocking the drain", || async {
        has_request("list", "poddisruptionbudgets")
    })
    .await;
    set_status::<PodDisruptionBudget>(&ns(&client, "default"), "web", pdb_status(1)).await;

    wait_for("the rollout to complete", || async {
        cus.get("platform")
            .await
            .ok()
            .and_then(|c| c.status)
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    assert!(pods.get_opt("web-1").await.unwrap().is_none(), "web-1 was evicted");
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let image = ds
        .get("calico-node")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("calico/node:v3.29.0"));
    let env = ds
        .get("calico-node")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        env.iter().any(|e| e.name == "CALICO_MANIFEST"),
        "the manifest was applied: {env:?}"
    );

    // Deleting the ClusterUpgrade runs drover's cleanup, then SIGTERM releases the Lease.
    cus.delete("platform", &Default::default()).await.unwrap();
    wait_for("the finalizer to be removed", || async {
        cus.get_opt("platform").await.unwrap().is_none()
    })
    .await;
    cluster.abort();
    let graceful = tokio::task::spawn_blocking(move || drover.terminate()).await.unwrap();
    assert!(graceful, "drover exits cleanly on SIGTERM");
    let lease: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), NS);
    let held = lease.get("drover-leader").await.unwrap().spec.unwrap().holder_identity;
    assert_eq!(held, None, "the Lease was released");

    // Every request drover made is allowed.
    let seen = proxy.seen.lock().unwrap().clone();
    let calls: BTreeSet<Attributes> = seen.iter().map(attributes).collect();
    if std::env::var_os("DROVER_PRINT_CALLS").is_some() {
        for a in &calls {
            eprintln!("{a:?}");
        }
    }
    let mut denied = Vec::new();
    let mut used = BTreeSet::new();
    for a in &calls {
        let allowing = policy.allowing(a);
        match a {
            Attributes::NonResource { verb, path } if discovery_allows(verb, path) => {}
            _ if allowing.is_empty() => denied.push(format!("{a:?}")),
            _ => {}
        }
        // A rule is needed when some call is allowed by it alone.
        if let [only] = allowing.as_slice() {
            used.insert(*only);
        }
    }
    assert!(denied.is_empty(), "calls the RBAC does not allow: {denied:#?}");

    // The scenario reached drover's paths (else this test would prove little).
    for (verb, resource) in [
        ("watch", "clusterupgrades"),
        ("patch", "clusterupgrades"),
        ("patch", "clusterupgrades/status"),
        ("watch", "nodes"),
        ("patch", "nodes"),
        ("list", "pods"),
        ("watch", "pods"),
        ("create", "pods/eviction"),
        // The PodSecurity check: a dry-run create of an upgrade Job's pod.
        ("create", "pods"),
        ("list", "poddisruptionbudgets"),
        ("create", "jobs"),
        ("watch", "jobs"),
        ("deletecollection", "jobs"),
        ("get", "daemonsets"),
        ("patch", "daemonsets"),
        ("get", "configmaps"),
        ("create", "events"),
        ("create", "leases"),
        ("update", "leases"),
    ] {
        assert!(
            has_request(verb, resource),
            "drover never made {verb} {resource}: {calls:#?}"
        );
    }
    let leases_ns: BTreeSet<Option<String>> = calls
        .iter()
        .filter_map(|a| match a {
            Attributes::Resource {
                resource, namespace, ..
            } if resource == "leases" => Some(namespace.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        leases_ns,
        BTreeSet::from([Some(NS.to_string())]),
        "the Lease lives in drover-system"
    );

    // And every rule is needed by some call (the apps rule also covers
    // Deployments and StatefulSets, which this rollout does not use), but
    // those of paths this rollout does not reach, each named with its code.
    let idle: Vec<String> = policy
        .cluster
        .iter()
        .enumerate()
        .map(|(i, r)| (true, i, r))
        .chain(policy.namespaced.iter().enumerate().map(|(i, r)| (false, i, r)))
        .filter(|(c, i, _)| !used.contains(&(*c, *i)))
        .filter(|(_, _, r)| {
            !(KUBESIM_UNREACHED
                .iter()
                .any(|(verb, res, _)| r.verbs == [*verb] && r.resources == [*res]))
        })
        .map(|(_, _, r)| format!("{r:?}"))
        .collect();
    assert!(idle.is_empty(), "rules no call needs: {idle:#?}\ncalls: {calls:#?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The health checks' Secret read: the kubesim rollout above has no health
/// check (the real-bed rollout below has one with a Secret; `health_real`
/// shows the rule is needed and enough on the real server).
const HEALTH_SECRET: (&str, &str, &str) = (
    "get",
    "secrets",
    "nodeops::health reads spec.healthChecks[].http.secretName in drover's namespace (crates/drover/tests/health_real.rs)",
);

/// Rules the kubesim rollout above does not use, each with the code site that needs it.
const KUBESIM_UNREACHED: [(&str, &str, &str); 1] = [HEALTH_SECRET];

/// Verbs drover's code uses on paths the real-bed rollout below does not
/// reach, each with the code site that needs it.
const REAL_UNREACHED: [(&str, &str, &str); 3] = [
    (
        "delete",
        "jobs",
        "nodeops::job::run deletes a failed Job of an earlier attempt before running the step again",
    ),
    (
        "get",
        "jobs",
        "nodeops::cache::Caches::job_opt and job::this_attempts_job read a Job from the server before the watch-fed Job store has listed, and after a create answered 409 (a Job the store has not shown yet); with the store synced a rollout reads every Job from it",
    ),
    (
        "get",
        "configmaps",
        "nodeops::manifest::ensure reads a workload component's manifest (the small rollout has none; e2e_workloads applies one on the real bed under deploy/'s RBAC)",
    ),
];

/// The same question on the real API server, whose audit log is the record:
/// over a rollout that exercises drover's paths (leader election, every
/// component kind of the small scenario, a drain blocked by a budget until
/// `drain.onTimeout: ForceDelete`, events, deletion with the finalizer's
/// cleanup, the Lease released on SIGTERM), drover's ServiceAccount is
/// never refused, and every verb of every rule of deploy/'s ClusterRole and
/// Role is used by some request. `kubectl auth whoami` shows the identity
/// drover runs as; SubjectAccessReviews show it may get Secrets in its own
/// namespace (health checks' http.secretName) and nothing more of Secrets:
/// no list or watch there, nothing elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_real_server_drover_is_never_refused_and_uses_every_rule() {
    use support::real::{AuditRequest, DROVER_USER, audit_requests};
    if !support::Bed::Real.selected() {
        return;
    }
    let _one = support::serial().await;
    let mut env = support::Env::start(support::Bed::Real, "small", 0.0).await;
    let real = env.real().unwrap();
    let (admin, audit) = (real.admin.clone(), real.dir.join("audit.log"));

    // The identity drover runs as.
    let dk = env.drover_kubeconfig.clone();
    let who = tokio::task::spawn_blocking(move || {
        kubectl(
            Some(&dk),
            &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
            Duration::from_secs(30),
        )
    })
    .await
    .unwrap();
    assert!(who.ok, "{}", who.text);
    assert_eq!(
        who.stdout.trim(),
        DROVER_USER,
        "the kubeconfig drover uses is its ServiceAccount"
    );

    // What it may do of Secrets and ConfigMaps: get each by name in its
    // own namespace, and nothing else.
    let sars: Api<k8s_openapi::api::authorization::v1::SubjectAccessReview> = Api::all(env.client.clone());
    for (verb, resource, namespace, allow) in [
        ("get", "secrets", NS, true),
        ("get", "configmaps", NS, true),
        ("get", "secrets", "kube-system", false),
        ("get", "secrets", "default", false),
        ("list", "secrets", "", false),
        ("watch", "secrets", "", false),
        ("list", "secrets", NS, false),
        ("watch", "secrets", NS, false),
        ("create", "secrets", NS, false),
        ("update", "secrets", NS, false),
        ("list", "configmaps", "", false),
        ("list", "configmaps", NS, false),
    ] {
        let review: k8s_openapi::api::authorization::v1::SubjectAccessReview = serde_json::from_value(json!({
            "spec": {"user": DROVER_USER,
                     "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{NS}"), "system:authenticated"],
                     "resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace}}
        }))
        .unwrap();
        let answer = sars.create(&PostParams::default(), &review).await.unwrap();
        let allowed = answer.status.map(|s| s.allowed);
        assert_eq!(
            allowed,
            Some(allow),
            "drover may {}{verb} {resource} in {namespace:?}",
            if allow { "not " } else { "" }
        );
    }

    // drover as deployed (leader election), through a rollout that takes every path.
    env.block_pdb("shop", "web").await;
    let mut drover = env.drover(&["--leader-elect"]);
    let mut spec = support::full_spec();
    spec["drain"]["timeout"] = json!("10s");
    spec["drain"]["onTimeout"] = json!("ForceDelete");
    spec["strategy"]["maxUnavailable"] = json!(4);
    // A health check with a Secret of drover's namespace (its bearer token).
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), NS);
    create(
        &secrets,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "node-health", "namespace": NS},
               "stringData": {"token": "health-token"}}),
    )
    .await;
    spec["healthChecks"] = json!([{
        "name": "node-health",
        "http": {"url": format!("{}/nodes/{{{{node}}}}/healthz", env.health_base()), "secretName": "node-health"},
        "interval": "1s"
    }]);
    env.apply("platform", spec).await;
    env.wait_for("platform", "Ready", env.timeout(Duration::from_secs(240)), |cu| {
        support::is(cu, "Ready", "True")
    })
    .await;
    let cus: Api<ClusterUpgrade> = Api::all(env.client.clone());
    cus.delete("platform", &Default::default()).await.unwrap();
    support::within(Duration::from_secs(60), "the finalizer to be removed", async {
        while cus.get_opt("platform").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let pid = drover.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    support::within(Duration::from_secs(30), "drover to exit on SIGTERM", async {
        while drover.exited().is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    // The audit backend writes in batches of at most a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let policy = Policy::of(&rendered_base());
    let requests: Vec<AuditRequest> = audit_requests(&audit);
    assert!(
        requests.len() > 100,
        "the audit log records drover's requests: {}",
        requests.len()
    );
    let refused: Vec<&AuditRequest> = requests
        .iter()
        .filter(|r| r.code == 403 || r.decision == "forbid")
        .collect();
    assert!(refused.is_empty(), "RBAC refused drover: {refused:#?}");

    // Each (rule, verb) some request needed.
    let mut used: BTreeSet<(bool, usize, String)> = BTreeSet::new();
    let mut outside = Vec::new();
    for r in &requests {
        // Discovery and /version (system:discovery), and the whoami above
        // (selfsubjectreviews, system:basic-user): granted to every user.
        if r.resource.is_empty() || (r.group == "authentication.k8s.io" && r.resource == "selfsubjectreviews") {
            continue;
        }
        let a = Attributes::Resource {
            verb: r.verb.clone(),
            group: r.group.clone(),
            resource: r.resource.clone(),
            namespace: r.namespace.clone(),
        };
        let allowing = policy.allowing(&a);
        if allowing.is_empty() {
            outside.push(format!("{a:?}"));
        }
        for (c, i) in allowing {
            used.insert((c, i, r.verb.clone()));
        }
    }
    let idle: Vec<String> = policy
        .cluster
        .iter()
        .enumerate()
        .map(|(i, r)| (true, i, r))
        .chain(policy.namespaced.iter().enumerate().map(|(i, r)| (false, i, r)))
        .flat_map(|(c, i, r)| r.verbs.iter().map(move |v| (c, i, r, v.clone())))
        .filter(|(c, i, _, v)| !used.contains(&(*c, *i, v.clone())))
        // A path this rollout does not reach, named with the code that needs it.
        .filter(|(_, _, r, v)| {
            !(REAL_UNREACHED
                .iter()
                .any(|(verb, res, _)| verb == v && r.resources.iter().any(|x| x == res)))
        })
        .map(|(_, _, r, v)| format!("{v} on {:?} {:?}", r.groups, r.resources))
        .collect();
    let calls: BTreeSet<(String, String, String)> = requests
        .iter()
        .map(|r| (r.verb.clone(), r.group.clone(), r.resource.clone()))
        .collect();
    assert!(
        idle.is_empty() && outside.is_empty(),
        "verbs of deploy/'s rules drover never used on the real server: {idle:#?}\nrequests no rule of deploy/ allows: {outside:#?}\ncalls: {calls:#?}"
    );
    let _ = admin;
}
