//! One try of one health check (`spec.healthChecks[]`): an HTTP GET, a
//! Prometheus query, the pods a selector picks, or the control plane's
//! `/readyz` and etcd's `/health`. The planner decides when to try and
//! counts passes in a row; this only looks, once, and says what it saw.
//!
//! A check that ran and found trouble (a refused connection, a 503, a
//! sample under its threshold, a missing Secret) is a failed
//! [`CheckAnswer`] with that in words; only an error of drover's own
//! Kubernetes client (listing pods, reading a node or the Secret) is `Err`.

pub mod get;
mod pods;
mod prometheus;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use drover_api::gates::{ControlPlaneCheck, HealthCheck, HttpCheck, PrometheusCheck, fill};
use drover_api::validate::parse_duration;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::Client;
use kube::api::Api;

use crate::error::Result;
use get::{Trust, Unanswered};

/// One try of one check, about one node.
#[derive(Debug, Clone)]
pub struct HealthRequest<'a> {
    pub check: &'a HealthCheck,
    /// The node the check is about (`{{node}}`, `{{nodeIP}}`, `pods.onNode`).
    pub node: &'a str,
    /// The last component upgraded on it (`{{component}}`; "" before it starts).
    pub component: &'a str,
    /// The node's uncordon: the pods check counts restarts since then.
    /// None before the node starts (restarts are then not judged).
    pub since: Option<Timestamp>,
    /// Every control-plane node (the controlPlane check asks each one's API server).
    pub control_plane: &'a [String],
    /// Every etcd member (the controlPlane check asks each one's `/health`).
    pub etcd: &'a [String],
    /// Whether the node is an etcd or control-plane node: the controlPlane
    /// check passes at once for a worker.
    pub is_member: bool,
    /// drover's own namespace, where `http.secretName` is read.
    pub namespace: &'a str,
}

/// What one try saw: whether it passed, and in a few words what was seen
/// (for status and events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckAnswer {
    pub passed: bool,
    pub answer: String,
}

impl CheckAnswer {
    pub fn pass(answer: impl Into<String>) -> Self {
        CheckAnswer {
            passed: true,
            answer: answer.into(),
        }
    }

    pub fn fail(answer: impl Into<String>) -> Self {
        CheckAnswer {
            passed: false,
            answer: answer.into(),
        }
    }
}

/// The cluster's CA as drover's own kubeconfig trusts it: the controlPlane
/// check's API servers must chain to it. In a pod the file is read again
/// on each check, so a rotated CA is picked up.
#[derive(Debug, Clone, Default)]
pub struct ClusterCa {
    /// DER certificates (`kube::Config::root_cert`).
    pub der: Vec<Vec<u8>>,
    /// A PEM file that takes precedence (`kube::Config::root_cert_file`, in-cluster).
    pub file: Option<PathBuf>,
}

impl ClusterCa {
    pub fn from_config(config: &kube::Config) -> Self {
        ClusterCa {
            der: config.root_cert.clone().unwrap_or_default(),
            file: config.root_cert_file.clone(),
        }
    }

    /// The roots to trust; the platform's when the kubeconfig names no CA
    /// (as kube's own client does then).
    fn trust(&self) -> std::result::Result<Trust, String> {
        if let Some(file) = &self.file
            && let Ok(pem) = std::fs::read(file)
        {
            let what = format!("the cluster's CA file {}", file.display());
            match Trust::from_pem(&[(&what, &pem)]) {
                Ok(t) => return Ok(t),
                Err(why) if self.der.is_empty() => return Err(why),
                // A file caught mid-rotation: the certificates read at start.
                Err(_) => {}
            }
        }
        if self.der.is_empty() {
            return Ok(Trust::Platform);
        }
        Trust::from_der(&self.der)
    }
}

/// How long the controlPlane check gives each API server and etcd member.
pub const CONTROL_PLANE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest body excerpt in an answer.
const EXCERPT: usize = 200;

/// One try of `req.check`.
pub async fn run(client: &Client, cluster_ca: &ClusterCa, req: &HealthRequest<'_>) -> Result<CheckAnswer> {
    let c = req.check;
    if let Some(h) = &c.http {
        http(client, req, h).await
    } else if let Some(p) = &c.prometheus {
        prometheus(client, req, p).await
    } else if let Some(p) = &c.pods {
        pods::check(client, req, p).await
    } else if let Some(cp) = &c.control_plane {
        control_plane(client, cluster_ca, req, cp).await
    } else {
        Ok(CheckAnswer::fail(format!(
            "health check {} sets none of http, prometheus, pods and controlPlane",
            c.name
        )))
    }
}

/// A body on one line, at most [`EXCERPT`] characters.
pub(crate) fn excerpt(body: &str) -> String {
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(EXCERPT) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// ": <body excerpt>", or nothing for an empty body.
fn body_suffix(text: &str) -> String {
    match excerpt(text) {
        e if e.is_empty() => String::new(),
        e => format!(": {e}"),
    }
}

/// The node's first InternalIP, else its first address. The inner Err is
/// the answer of a check that cannot be asked (no such node, no address).
async fn node_ip(client: &Client, node: &str) -> Result<std::result::Result<String, String>> {
    let Some(n) = Api::<Node>::all(client.clone()).get_opt(node).await? else {
        return Ok(Err(format!("node {node} does not exist")));
    };
    let addresses = n.status.and_then(|s| s.addresses).unwrap_or_default();
    let ip = addresses
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .or(addresses.first())
        .map(|a| a.address.clone());
    Ok(ip.ok_or_else(|| format!("node {node} reports no address for {{{{nodeIP}}}}")))
}

/// `template` with the placeholders filled for `node` (its address read
/// only when the template uses it).
async fn filled(
    client: &Client,
    template: &str,
    node: &str,
    component: &str,
) -> Result<std::result::Result<String, String>> {
    let ip = if template.contains("{{nodeIP}}") {
        match node_ip(client, node).await? {
            Ok(ip) => ip,
            Err(why) => return Ok(Err(why)),
        }
    } else {
        String::new()
    };
    Ok(Ok(fill(template, node, &url_host(&ip), component)))
}

/// An address as a URL's host: an IPv6 one in brackets.
fn url_host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// A duration field of the check, or the failed answer naming it.
fn duration(field: &str, value: &str) -> std::result::Result<Duration, CheckAnswer> {
    parse_duration(value).ok_or_else(|| CheckAnswer::fail(format!("{field} {value:?} is not a duration such as 5s")))
}

/// "200", "200 or 204", "200, 201 or 204".
fn statuses(codes: &[i32]) -> String {
    let texts: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
    match texts.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

async fn http(client: &Client, req: &HealthRequest<'_>, c: &HttpCheck) -> Result<CheckAnswer> {
    let timeout = match duration("http.requestTimeout", &c.request_timeout) {
        Ok(t) => t,
        Err(a) => return Ok(a),
    };
    let url = match filled(client, &c.url, req.node, req.component).await? {
        Ok(u) => u,
        Err(why) => return Ok(CheckAnswer::fail(why)),
    };
    let mut pems: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(bundle) = &c.ca_bundle {
        pems.push(("http.caBundle".into(), bundle.as_bytes().to_vec()));
    }
    let mut bearer = None;
    if let Some(name) = &c.secret_name {
        match secret(client, req.namespace, name).await? {
            Err(why) => return Ok(CheckAnswer::fail(why)),
            Ok(s) => {
                if let Some(ca) = s.ca {
                    pems.push((format!("ca.crt of Secret {}/{name}", req.namespace), ca));
                }
                bearer = s.token;
            }
        }
    }
    let trust = if pems.is_empty() || !url.starts_with("https://") {
        Trust::Platform
    } else {
        let refs: Vec<(&str, &[u8])> = pems.iter().map(|(w, p)| (w.as_str(), p.as_slice())).collect();
        match Trust::from_pem(&refs) {
            Ok(t) => t,
            Err(why) => return Ok(CheckAnswer::fail(why)),
        }
    };
    let reply = match get::get(&url, &trust, bearer.as_deref(), timeout).await {
        Ok(r) => r,
        Err(u) => return Ok(CheckAnswer::fail(format!("no answer from {url}{u}"))),
    };
    let status = reply.status;
    if !c.expected_status.contains(&i32::from(status)) {
        return Ok(CheckAnswer::fail(format!(
            "HTTP {status} from {url} (expected {}){}",
            statuses(&c.expected_status),
            body_suffix(&reply.text())
        )));
    }
    if let Some(want) = &c.body_contains {
        match &reply.body {
            Err(why) => return Ok(CheckAnswer::fail(format!("HTTP {status} from {url}, but {why}"))),
            Ok(_) if !reply.text().contains(want.as_str()) => {
                return Ok(CheckAnswer::fail(format!(
                    "body of {url} does not contain {want:?}{}",
                    body_suffix(&reply.text())
                )));
            }
            Ok(_) => {}
        }
    }
    Ok(CheckAnswer::pass(format!("HTTP {status} from {url}")))
}

/// What an http check takes from its Secret.
struct SecretParts {
    ca: Option<Vec<u8>>,
    token: Option<String>,
}

/// `ca.crt` and `token` of the Secret `namespace/name`; the inner Err is
/// the answer of a check whose Secret is missing or unusable.
async fn secret(client: &Client, namespace: &str, name: &str) -> Result<std::result::Result<SecretParts, String>> {
    let what = format!("Secret {namespace}/{name}");
    let Some(s) = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
    else {
        return Ok(Err(format!("{what} (http.secretName) does not exist")));
    };
    // A ServiceAccount's token would be sent to whatever URL the check
    // names: anyone who may write a ClusterUpgrade could collect it.
    if s.type_.as_deref() == Some("kubernetes.io/service-account-token") {
        return Ok(Err(format!(
            "{what} is a ServiceAccount token; drover sends no ServiceAccount's credentials to a health check"
        )));
    }
    let data = s.data.unwrap_or_default();
    let ca = data.get("ca.crt").map(|b| b.0.clone());
    let token = match data.get("token") {
        None => None,
        Some(b) => match std::str::from_utf8(&b.0) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            Ok(_) => return Ok(Err(format!("token of {what} is empty"))),
            Err(_) => return Ok(Err(format!("token of {what} is not text"))),
        },
    };
    if ca.is_none() && token.is_none() {
        return Ok(Err(format!("{what} has neither a ca.crt nor a token key")));
    }
    Ok(Ok(SecretParts { ca, token }))
}

async fn prometheus(client: &Client, req: &HealthRequest<'_>, c: &PrometheusCheck) -> Result<CheckAnswer> {
    let timeout = match duration("prometheus.requestTimeout", &c.request_timeout) {
        Ok(t) => t,
        Err(a) => return Ok(a),
    };
    let base = match filled(client, &c.url, req.node, req.component).await? {
        Ok(u) => u,
        Err(why) => return Ok(CheckAnswer::fail(why)),
    };
    let query = match filled(client, &c.query, req.node, req.component).await? {
        Ok(q) => q,
        Err(why) => return Ok(CheckAnswer::fail(why)),
    };
    let endpoint = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let url = format!("{endpoint}?query={encoded}");
    let reply = match get::get(&url, &Trust::Platform, None, timeout).await {
        Ok(r) => r,
        Err(u) => return Ok(CheckAnswer::fail(format!("no answer from {endpoint}{u}"))),
    };
    if let Err(why) = &reply.body {
        return Ok(CheckAnswer::fail(format!(
            "HTTP {} from {endpoint}, but {why}",
            reply.status
        )));
    }
    let (passed, answer) = prometheus::judge(&query, c.threshold.as_ref(), reply.status, &reply.text());
    Ok(CheckAnswer { passed, answer })
}

/// One endpoint the controlPlane check asks.
struct Target<'a> {
    component: &'static str,
    node: &'a str,
    template: &'a str,
}

async fn control_plane(
    client: &Client,
    cluster_ca: &ClusterCa,
    req: &HealthRequest<'_>,
    c: &ControlPlaneCheck,
) -> Result<CheckAnswer> {
    if !req.is_member {
        return Ok(CheckAnswer::pass(format!(
            "{} is a worker: the controlPlane check is for etcd and control-plane nodes",
            req.node
        )));
    }
    if req.control_plane.is_empty() && req.etcd.is_empty() {
        return Ok(CheckAnswer::pass("no control-plane node and no etcd member to ask"));
    }
    let trust = match cluster_ca.trust() {
        Ok(t) => t,
        Err(why) => return Ok(CheckAnswer::fail(why)),
    };
    let targets: Vec<Target> = req
        .control_plane
        .iter()
        .map(|n| Target {
            component: "kube-apiserver",
            node: n,
            template: &c.api_server_url,
        })
        .chain(req.etcd.iter().map(|n| Target {
            component: "etcd",
            node: n,
            template: &c.etcd_url,
        }))
        .collect();
    // The addresses first, each node's once (an API error is drover's
    // own), then every GET at once.
    let mut ips: BTreeMap<&str, std::result::Result<String, String>> = BTreeMap::new();
    for t in &targets {
        if t.template.contains("{{nodeIP}}") && !ips.contains_key(t.node) {
            ips.insert(t.node, node_ip(client, t.node).await?);
        }
    }
    let urls: Vec<std::result::Result<String, String>> = targets
        .iter()
        .map(|t| match ips.get(t.node) {
            None => Ok(fill(t.template, t.node, "", req.component)),
            Some(Ok(ip)) => Ok(fill(t.template, t.node, &url_host(ip), req.component)),
            Some(Err(why)) => Err(why.clone()),
        })
        .collect();
    let asks = targets.iter().zip(&urls).map(|(t, url)| {
        let trust = &trust;
        async move {
            let url = match url {
                Ok(u) => u,
                Err(why) => return Some(format!("{} on {}: {why}", t.component, t.node)),
            };
            let why = match get::get(url, trust, None, CONTROL_PLANE_TIMEOUT).await {
                Err(Unanswered::Timeout(d)) => format!("no answer within {}", get::seconds(d)),
                Err(Unanswered::Failed(why)) => format!("no answer: {why}"),
                Ok(r) if r.status != 200 => format!("HTTP {}{}", r.status, body_suffix(&r.text())),
                Ok(r) => match (&r.body, t.component) {
                    (Err(why), _) => format!("HTTP 200, but {why}"),
                    (Ok(_), "etcd") if etcd_healthy(&r.text()) => return None,
                    (Ok(_), "etcd") => format!("HTTP 200 without \"health\":\"true\"{}", body_suffix(&r.text())),
                    (Ok(_), _) if r.text().trim() == "ok" => return None,
                    (Ok(_), _) => format!("HTTP 200 but not ok{}", body_suffix(&r.text())),
                },
            };
            Some(format!("{} on {} ({url}): {why}", t.component, t.node))
        }
    });
    let failures = futures::future::join_all(asks).await;
    if let Some(first) = failures.into_iter().flatten().next() {
        return Ok(CheckAnswer::fail(first));
    }
    let count = |n: usize, one: &str| match n {
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
    };
    let mut parts = Vec::new();
    if !req.control_plane.is_empty() {
        parts.push(format!(
            "kube-apiserver ready on {}",
            count(req.control_plane.len(), "node")
        ));
    }
    if !req.etcd.is_empty() {
        parts.push(format!("etcd healthy on {}", count(req.etcd.len(), "member")));
    }
    Ok(CheckAnswer::pass(parts.join(", ")))
}

/// etcd's `/health` says `"health":"true"` (in whatever spacing).
fn etcd_healthy(body: &str) -> bool {
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    compact.contains("\"health\":\"true\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_cut_to_one_short_line() {
        assert_eq!(excerpt("unhealthy:\n  db down\n"), "unhealthy: db down");
        let long = "x".repeat(500);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT + 1);
        assert!(e.ends_with('…'));
        assert_eq!(body_suffix("  \n"), "");
    }

    #[test]
    fn etcd_health_tolerates_spacing() {
        assert!(etcd_healthy(r#"{"health":"true","reason":""}"#));
        assert!(etcd_healthy("{\"health\": \"true\"}\n"));
        assert!(!etcd_healthy(r#"{"health":"false","reason":"NOSPACE"}"#));
    }

    #[test]
    fn expected_statuses_read_as_a_list() {
        assert_eq!(statuses(&[200]), "200");
        assert_eq!(statuses(&[200, 204]), "200 or 204");
        assert_eq!(statuses(&[200, 201, 204]), "200, 201 or 204");
    }
}
