//! Health as a monitoring system sees it, on both beds: which nodes run a
//! bad version (the `BadVersion` fault), which alerts fire (`AlertFiring`),
//! and the plain-HTTP endpoints that tell: `GET /nodes/{node}/healthz` (a
//! node-local health check) and `GET|POST /api/v1/query` (a small
//! Prometheus-compatible query API, [`super::promql`]). The simulation and
//! `kubesim agent` each build a [`HealthState`] from what they know and
//! serve it through [`serve`]. See docs/simulation.md, "Health".

use super::promql::{self, Sample};
use super::scenario::{BadEffect, Fault};
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// The alert a bad version under `effect: Metric` fires.
pub const BAD_VERSION_ALERT: &str = "KubesimBadVersion";

/// One bad version a node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadNode {
    pub component: String,
    pub version: String,
    pub effect: BadEffect,
}

/// What the endpoints report of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHealth {
    pub name: String,
    pub ready: bool,
    pub bad: Vec<BadNode>,
}

/// Everything the endpoints answer from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthState {
    pub nodes: Vec<NodeHealth>,
    /// (alert name, severity) of each `AlertFiring` fault.
    pub alerts: Vec<(String, String)>,
}

/// Versions compare as drover's fault author writes them: the same text,
/// a leading `v` aside.
pub fn same_version(live: &str, want: &str) -> bool {
    let bare = |s: &str| s.trim().strip_prefix('v').unwrap_or(s.trim()).to_string();
    bare(live) == bare(want)
}

/// The version of `component` a node runs, in the words of the upgrade that
/// put it there (`DROVER_VERSION`): a `nodeInfo` field for the kubelet,
/// kube-proxy, the runtime (without its `containerd://` scheme, and only
/// the runtime the node runs), `os` (osImage without `Ubuntu `/` LTS`) and
/// `kernel`; the mirror pod's image tag for the static control-plane
/// components; else what the last successful upgrade Job of it on the node
/// installed (`installed`), as far as the simulation or agent knows.
pub fn live_version(
    component: &str,
    node_info: &Value,
    mirror_image: Option<&str>,
    installed: Option<&str>,
) -> Option<String> {
    let field = |f: &str| node_info[f].as_str().map(str::to_string);
    match component {
        "kubelet" => field("kubeletVersion"),
        "kube-proxy" => field("kubeProxyVersion"),
        "containerd" | "cri-o" | "docker" => {
            let raw = field("containerRuntimeVersion")?;
            let (scheme, version) = raw.split_once("://")?;
            (scheme == component).then(|| version.to_string())
        }
        "os" => field("osImage").map(|os| {
            let bare = os.strip_prefix("Ubuntu ").and_then(|s| s.strip_suffix(" LTS"));
            bare.map(str::to_string).unwrap_or(os)
        }),
        "kernel" => field("kernelVersion"),
        _ if super::objects::STATIC_COMPONENTS.contains(&component) => mirror_image
            .and_then(|i| i.rsplit_once(':'))
            .map(|(_, tag)| tag.to_string()),
        _ => installed.map(str::to_string),
    }
}

/// The bad versions `node` runs under `faults`; `live` gives its live
/// version of a component.
pub fn bad_versions(faults: &[Fault], node: &str, live: impl Fn(&str) -> Option<String>) -> Vec<BadNode> {
    let mut out: Vec<BadNode> = Vec::new();
    for f in faults {
        let Fault::BadVersion {
            component,
            version,
            effect,
            nodes,
        } = f
        else {
            continue;
        };
        if !Fault::covers_node(nodes, node) || !live(component).is_some_and(|l| same_version(&l, version)) {
            continue;
        }
        if let Some(b) = out.iter_mut().find(|b| b.component == *component) {
            // Two faults on one version: PodsUnready is the stronger.
            if *effect == BadEffect::PodsUnready {
                b.effect = BadEffect::PodsUnready;
            }
            continue;
        }
        out.push(BadNode {
            component: component.clone(),
            version: version.clone(),
            effect: *effect,
        });
    }
    out
}

/// Whether any BadVersion fault is set (else nothing needs looking at).
pub fn any_bad_version(faults: &[Fault]) -> bool {
    faults.iter().any(|f| matches!(f, Fault::BadVersion { .. }))
}

/// Whether the node's pods are held unready.
pub fn holds_pods_unready(bad: &[BadNode]) -> bool {
    bad.iter().any(|b| b.effect == BadEffect::PodsUnready)
}

/// Whether a pod (its JSON) is one a `PodsUnready` bad version turns
/// unready: a long-running pod (restartPolicy Always: Deployments,
/// StatefulSets, DaemonSets, bare pods), not a mirror pod, not an upgrade pod.
pub fn affected_pod(v: &Value) -> bool {
    v["spec"]["restartPolicy"].as_str().unwrap_or("Always") == "Always"
        && v["metadata"]["annotations"][super::objects::MIRROR].is_null()
        && super::view::upgrade_env(&v["spec"]).is_none()
}

/// The alerts of the `AlertFiring` faults, once each.
pub fn alerts(faults: &[Fault]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for f in faults {
        if let Fault::AlertFiring { name, severity } = f
            && !out.iter().any(|(n, s)| n == name && s == severity)
        {
            out.push((name.clone(), severity.clone()));
        }
    }
    out
}

impl HealthState {
    /// Every series the query API knows.
    pub fn series(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for (name, severity) in &self.alerts {
            out.push(Sample::new(
                "ALERTS",
                &[("alertname", name), ("alertstate", "firing"), ("severity", severity)],
                1.0,
            ));
        }
        for n in &self.nodes {
            out.push(Sample::new(
                "kubesim_node_ready",
                &[("node", &n.name)],
                if n.ready { 1.0 } else { 0.0 },
            ));
            for b in &n.bad {
                let labels = [
                    ("node", n.name.as_str()),
                    ("component", &b.component),
                    ("version", &b.version),
                ];
                out.push(Sample::new("kubesim_bad_version", &labels, 1.0));
                if b.effect == BadEffect::Metric {
                    let mut l = vec![
                        ("alertname", BAD_VERSION_ALERT),
                        ("alertstate", "firing"),
                        ("severity", "critical"),
                    ];
                    l.extend(labels);
                    out.push(Sample::new("ALERTS", &l, 1.0));
                }
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// `GET /nodes/{node}/healthz`: 200 `ok`; 503 saying why (a bad
    /// version, NotReady); 404 for a node that does not exist.
    pub fn healthz(&self, node: &str) -> (StatusCode, String) {
        let Some(n) = self.nodes.iter().find(|n| n.name == node) else {
            return (StatusCode::NOT_FOUND, format!("no node named {node}\n"));
        };
        let mut why: Vec<String> = n
            .bad
            .iter()
            .map(|b| format!("{} {} is a bad version", b.component, b.version))
            .collect();
        if !n.ready {
            why.push(format!("node {node} is NotReady"));
        }
        if why.is_empty() {
            (StatusCode::OK, "ok\n".into())
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unhealthy: {}\n", why.join("; ")),
            )
        }
    }
}

/// A Prometheus API error answer.
fn prom_error(code: StatusCode, kind: &str, msg: &str) -> Response {
    (
        code,
        axum::Json(json!({"status": "error", "errorType": kind, "error": msg})),
    )
        .into_response()
}

/// The evaluation time: `time` (unix seconds or RFC 3339), else now.
fn eval_time(param: Option<&str>) -> Result<f64, String> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let Some(t) = param.filter(|t| !t.is_empty()) else {
        return Ok(now());
    };
    if let Ok(secs) = t.parse::<f64>()
        && secs.is_finite()
    {
        return Ok(secs);
    }
    t.parse::<jiff::Timestamp>()
        .map(|ts| ts.as_millisecond() as f64 / 1000.0)
        .map_err(|_| format!("invalid parameter \"time\": cannot parse {t:?} to a valid timestamp"))
}

/// The answer to `query` (with the form's other parameters) over `state`.
pub fn query_response(state: &HealthState, params: &[(String, String)]) -> Response {
    let get = |k: &str| params.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let ts = match eval_time(get("time")) {
        Ok(t) => t,
        Err(e) => return prom_error(StatusCode::BAD_REQUEST, "bad_data", &e),
    };
    let expr = match promql::parse(get("query").unwrap_or("")) {
        Ok(e) => e,
        Err(e) => return prom_error(StatusCode::BAD_REQUEST, "bad_data", &e),
    };
    let result: Vec<Value> = promql::eval(&expr, &state.series())
        .into_iter()
        .map(|s| json!({"metric": s.labels, "value": [ts, promql::format_value(s.value)]}))
        .collect();
    axum::Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}})).into_response()
}

/// What the endpoints read their state from, on each request.
pub type Source = Arc<dyn Fn() -> BoxFuture<'static, Result<HealthState, String>> + Send + Sync>;

fn form(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

async fn query_get(State(src): State<Source>, uri: Uri) -> Response {
    let params = form(uri.query().unwrap_or("").as_bytes());
    match src().await {
        Ok(state) => query_response(&state, &params),
        Err(e) => prom_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &e),
    }
}

async fn query_post(State(src): State<Source>, uri: Uri, body: bytes::Bytes) -> Response {
    // Prometheus reads the URL's parameters and the form body's alike.
    let mut params = form(uri.query().unwrap_or("").as_bytes());
    params.extend(form(&body));
    match src().await {
        Ok(state) => query_response(&state, &params),
        Err(e) => prom_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &e),
    }
}

async fn node_healthz(State(src): State<Source>, Path(node): Path<String>) -> Response {
    match src().await {
        Ok(state) => state.healthz(&node).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("unavailable: {e}\n")).into_response(),
    }
}

/// The endpoints: `/nodes/{node}/healthz`, `/api/v1/query` and `/healthz`
/// (the server itself).
pub fn router(source: Source) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/nodes/{node}/healthz", get(node_healthz))
        .route("/api/v1/query", get(query_get).post(query_post))
        .with_state(source)
}

/// A running health listener; stops when dropped.
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HealthServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves [`router`] over plain HTTP on `addr` (port 0: a free one).
pub async fn serve(addr: SocketAddr, source: Source) -> std::io::Result<HealthServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = router(source);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(HealthServer { addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> Value {
        json!({"kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.31.4",
            "containerRuntimeVersion": "containerd://1.7.23", "osImage": "Ubuntu 24.04 LTS",
            "kernelVersion": "6.8.0-45-generic"})
    }

    #[test]
    fn live_versions_in_the_upgrades_words() {
        let i = info();
        let live = |c: &str| live_version(c, &i, Some("registry.k8s.io/etcd:v3.5.16"), Some("2.0.0"));
        assert_eq!(live("kubelet").as_deref(), Some("v1.32.0"));
        assert_eq!(live("kube-proxy").as_deref(), Some("v1.31.4"));
        assert_eq!(live("containerd").as_deref(), Some("1.7.23"));
        assert_eq!(live("docker"), None, "the node runs containerd");
        assert_eq!(live("os").as_deref(), Some("24.04"));
        assert_eq!(live("kernel").as_deref(), Some("6.8.0-45-generic"));
        assert_eq!(live("etcd").as_deref(), Some("v3.5.16"));
        assert_eq!(live("metrics-agent").as_deref(), Some("2.0.0"));
        assert_eq!(
            live_version("os", &json!({"osImage": "Flatcar 3975"}), None, None).as_deref(),
            Some("Flatcar 3975")
        );
        assert_eq!(live_version("etcd", &i, None, None), None);
    }

    #[test]
    fn bad_versions_compare_a_leading_v_aside_and_follow_nodes() {
        let faults: Vec<Fault> = serde_yaml::from_str(
            "- {type: BadVersion, component: kubelet, version: 1.32.0}\n\
             - {type: BadVersion, component: kubelet, version: v1.32.0, effect: Metric}\n\
             - {type: BadVersion, component: containerd, version: 1.7.23, effect: Metric, nodes: [w2]}\n\
             - {type: AlertFiring, name: A}\n- {type: AlertFiring, name: A}\n- {type: AlertFiring, name: B, severity: warning}\n",
        )
        .unwrap();
        let i = info();
        let live = |c: &str| live_version(c, &i, None, None);
        let w1 = bad_versions(&faults, "w1", live);
        assert_eq!(
            w1,
            [BadNode {
                component: "kubelet".into(),
                version: "1.32.0".into(),
                effect: BadEffect::PodsUnready
            }],
            "one entry per component; PodsUnready wins"
        );
        assert!(holds_pods_unready(&w1));
        let w2 = bad_versions(&faults, "w2", live);
        assert_eq!(w2.len(), 2);
        assert_eq!(w2[1].effect, BadEffect::Metric);
        assert!(bad_versions(&faults, "w1", |_| Some("1.31.4".into())).is_empty());
        assert!(!same_version("1.32.0", "1.32"), "the same text, not the same series");
        assert_eq!(
            alerts(&faults),
            [
                ("A".to_string(), "critical".to_string()),
                ("B".to_string(), "warning".to_string())
            ]
        );
    }

    #[test]
    fn healthz_says_why() {
        let st = HealthState {
            nodes: vec![
                NodeHealth {
                    name: "a".into(),
                    ready: true,
                    bad: vec![],
                },
                NodeHealth {
                    name: "b".into(),
                    ready: false,
                    bad: vec![BadNode {
                        component: "kubelet".into(),
                        version: "v1.32.0".into(),
                        effect: BadEffect::Metric,
                    }],
                },
            ],
            alerts: vec![],
        };
        assert_eq!(st.healthz("a"), (StatusCode::OK, "ok\n".into()));
        assert_eq!(
            st.healthz("b"),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "unhealthy: kubelet v1.32.0 is a bad version; node b is NotReady\n".into()
            )
        );
        assert_eq!(st.healthz("c").0, StatusCode::NOT_FOUND);
        let names: Vec<String> = st.series().iter().map(|s| s.labels["__name__"].clone()).collect();
        assert_eq!(
            names,
            [
                "ALERTS",
                "kubesim_bad_version",
                "kubesim_node_ready",
                "kubesim_node_ready"
            ]
        );
    }
}
