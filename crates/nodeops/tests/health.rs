//! One try of each kind of health check, through the real `KubeNodeOps`:
//! against kubesim for the nodes, pods and Secrets, and against small
//! HTTP(S) servers on loopback (127.0.0.1 to 127.0.0.3, with certificates
//! openssl makes for the test) that answer what each case needs. Each case
//! asserts the pass or fail and the answer's words (one file: the cases
//! share its servers and certificates). kubesim only: the
//! controlPlane check against a real kube-apiserver and etcd, and the
//! Secret under deploy/'s RBAC, are in crates/drover/tests/health_real.rs.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_api::HealthCheck;
use drover_nodeops::{CheckAnswer, ClusterCa, HealthRequest, KubeNodeOps, NodeOps};
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// drover's namespace in these tests.
const NS: &str = "drover-system";

// ---------------------------------------------------------------- servers

/// One request a test server saw.
#[derive(Debug, Clone)]
struct Seen {
    /// The address it came in on (which "node").
    at: String,
    path: String,
    authorization: Option<String>,
}

/// How a test server answers.
enum Reply {
    /// A status and a body.
    Answer(u16, String),
    /// Nothing, ever (the connection stays open).
    Silent,
    /// 200, then a body that never ends.
    Endless,
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// HTTP/1.1 servers on one port of one or more loopback addresses, stopped when dropped.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn start(ips: &[&str], tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> Server {
        // The same port on every address: a URL template names one port.
        'port: for _ in 0..20 {
            let first = tokio::net::TcpListener::bind((ips[0], 0)).await.unwrap();
            let port = first.local_addr().unwrap().port();
            let mut listeners = vec![first];
            for ip in &ips[1..] {
                match tokio::net::TcpListener::bind((*ip, port)).await {
                    Ok(l) => listeners.push(l),
                    Err(_) => continue 'port,
                }
            }
            let seen = Arc::new(Mutex::new(Vec::new()));
            let tasks = listeners
                .into_iter()
                .map(|l| {
                    let (seen, handler, tls) = (seen.clone(), handler.clone(), tls.clone());
                    tokio::spawn(async move {
                        loop {
                            let Ok((tcp, _)) = l.accept().await else { return };
                            let at = tcp.local_addr().unwrap();
                            let (seen, handler, tls) = (seen.clone(), handler.clone(), tls.clone());
                            tokio::spawn(async move {
                                match tls {
                                    None => answer(tcp, at, &seen, &handler).await,
                                    Some(cfg) => {
                                        if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                                            answer(s, at, &seen, &handler).await;
                                        }
                                    }
                                }
                            });
                        }
                    })
                })
                .collect();
            return Server { port, seen, tasks };
        }
        panic!("no port free on every one of {ips:?}");
    }
}

/// Read one request and answer it.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    at: SocketAddr,
    seen: &Mutex<Vec<Seen>>,
    handler: &Handler,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        assert!(buf.len() < 64 * 1024, "a request head that large");
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next().unwrap().split(' ').nth(1).unwrap().to_string();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    let req = Seen {
        at: at.ip().to_string(),
        path,
        authorization,
    };
    seen.lock().unwrap().push(req.clone());
    match handler(&req) {
        Reply::Answer(code, body) => {
            let head = format!(
                "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
            let _ = s.shutdown().await;
        }
        Reply::Silent => tokio::time::sleep(Duration::from_secs(120)).await,
        Reply::Endless => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").await;
            let block = vec![b'x'; 16 * 1024];
            while s.write_all(&block).await.is_ok() {}
        }
    }
}

fn handler(f: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Handler {
    Arc::new(f)
}

fn ok(code: u16, body: &str) -> Reply {
    Reply::Answer(code, body.to_string())
}

// ---------------------------------------------------------------- certificates

/// A CA, a server certificate it signed for 127.0.0.1-3 and localhost, and an unrelated CA.
struct Pki {
    dir: PathBuf,
    ca: String,
    other_ca: String,
    server: Arc<rustls::ServerConfig>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pki(name: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("drover-health-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for ca in ["ca", "other"] {
        let (key, crt, subj) = (
            format!("{ca}.key"),
            format!("{ca}.crt"),
            format!("/CN=health-test-{ca}"),
        );
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &crt, "-days", "2", "-subj", &subj]);
        openssl(&dir, &args);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    openssl(&dir, &args);
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Pki {
        ca: std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
        other_ca: std::fs::read_to_string(dir.join("other.crt")).unwrap(),
        server: Arc::new(server),
        dir,
    }
}

// ---------------------------------------------------------------- the cluster

fn check(v: Value) -> HealthCheck {
    serde_json::from_value(v).unwrap()
}

/// A try about `node` before it starts (no uncordon yet), for a worker.
fn request<'a>(check: &'a HealthCheck, node: &'a str) -> HealthRequest<'a> {
    HealthRequest {
        check,
        node,
        component: "kubelet",
        since: None,
        control_plane: &[],
        etcd: &[],
        is_member: false,
        namespace: NS,
    }
}

async fn once(ops: &KubeNodeOps, req: &HealthRequest<'_>) -> CheckAnswer {
    within(ops.health(req)).await.unwrap()
}

fn passed(answer: &str) -> CheckAnswer {
    CheckAnswer::pass(answer)
}

fn failed(answer: &str) -> CheckAnswer {
    CheckAnswer::fail(answer)
}

async fn namespace(c: &Cluster, name: &str) {
    let api: Api<Namespace> = Api::all(c.client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
}

/// A Ready node with these addresses.
async fn node_at(c: &Cluster, name: &str, addresses: Value) {
    c.node(name, true).await;
    c.node_status(name, json!({ "addresses": addresses })).await;
}

async fn secret(c: &Cluster, ns: &str, name: &str, type_: Option<&str>, data: &[(&str, &[u8])]) {
    let api: Api<Secret> = Api::namespaced(c.client.clone(), ns);
    let mut s: Secret =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}})).unwrap();
    if let Some(t) = type_ {
        s.type_ = Some(t.into());
        s.metadata.annotations = Some(BTreeMap::from([(
            "kubernetes.io/service-account.name".to_string(),
            "drover".to_string(),
        )]));
    }
    s.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect(),
    );
    api.create(&PostParams::default(), &s).await.unwrap();
}

// ---------------------------------------------------------------- http

#[tokio::test]
async fn http_check_passes_on_an_expected_status_and_body_and_fills_the_nodes_placeholders() {
    let c = Cluster::start().await;
    // The first InternalIP is the node's address, whatever comes before it.
    node_at(
        &c,
        "w-1",
        json!([{"type": "Hostname", "address": "w-1"}, {"type": "InternalIP", "address": "127.0.0.1"}, {"type": "InternalIP", "address": "10.0.0.9"}]),
    )
    .await;
    // Without an InternalIP, the first address.
    node_at(&c, "w-2", json!([{"type": "ExternalIP", "address": "127.0.0.1"}])).await;
    c.node("w-3", true).await;
    let server = Server::start(
        &["127.0.0.1"],
        None,
        handler(|s| match s.path.as_str() {
            "/healthz/w-1/kubelet" | "/healthz/w-2/kubelet" => ok(200, "ok"),
            "/sick" => ok(503, "unhealthy:\n  database\tdown\n"),
            "/empty" => ok(204, ""),
            "/other" => ok(200, "all fine"),
            _ => ok(404, "no such page"),
        }),
    )
    .await;
    let port = server.port;

    let placeholders = check(
        json!({"name": "web", "http": {"url": format!("http://{{{{nodeIP}}}}:{port}/healthz/{{{{node}}}}/{{{{component}}}}"), "bodyContains": "ok"}}),
    );
    for node in ["w-1", "w-2"] {
        assert_eq!(
            once(&c.ops, &request(&placeholders, node)).await,
            passed(&format!("HTTP 200 from http://127.0.0.1:{port}/healthz/{node}/kubelet"))
        );
    }
    assert_eq!(
        once(&c.ops, &request(&placeholders, "w-3")).await,
        failed("node w-3 reports no address for {{nodeIP}}")
    );
    assert_eq!(
        once(&c.ops, &request(&placeholders, "gone")).await,
        failed("node gone does not exist")
    );

    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let sick = check(json!({"name": "web", "http": {"url": url("/sick")}}));
    assert_eq!(
        once(&c.ops, &request(&sick, "w-1")).await,
        failed(&format!(
            "HTTP 503 from {} (expected 200): unhealthy: database down",
            url("/sick")
        ))
    );
    // A status outside expectedStatus fails even when it is 200.
    let empty = check(json!({"name": "web", "http": {"url": url("/empty"), "expectedStatus": [200, 204]}}));
    assert_eq!(
        once(&c.ops, &request(&empty, "w-1")).await,
        passed(&format!("HTTP 204 from {}", url("/empty")))
    );
    let not_200 = check(json!({"name": "web", "http": {"url": url("/other"), "expectedStatus": [201, 202, 204]}}));
    assert_eq!(
        once(&c.ops, &request(&not_200, "w-1")).await,
        failed(&format!(
            "HTTP 200 from {} (expected 201, 202 or 204): all fine",
            url("/other")
        ))
    );
    let wrong_body = check(json!({"name": "web", "http": {"url": url("/other"), "bodyContains": "\"status\":\"up\""}}));
    assert_eq!(
        once(&c.ops, &request(&wrong_body, "w-1")).await,
        failed(&format!(
            "body of {} does not contain \"\\\"status\\\":\\\"up\\\"\": all fine",
            url("/other")
        ))
    );
    // Only the GETs above reached the server, each on its path.
    let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/healthz/w-1/kubelet",
            "/healthz/w-2/kubelet",
            "/sick",
            "/empty",
            "/other",
            "/other"
        ]
    );
}

#[tokio::test]
async fn http_check_bounds_its_wait_and_its_read_and_names_what_went_wrong() {
    let c = Cluster::start().await;
    c.node("w-1", true).await;
    let silent = Server::start(&["127.0.0.1"], None, handler(|_| Reply::Silent)).await;
    let endless = Server::start(&["127.0.0.1"], None, handler(|_| Reply::Endless)).await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let url = format!("http://127.0.0.1:{}/healthz", silent.port);
    let hangs = check(json!({"name": "web", "http": {"url": url, "requestTimeout": "1s"}}));
    let t0 = Instant::now();
    assert_eq!(
        once(&c.ops, &request(&hangs, "w-1")).await,
        failed(&format!("no answer from {url} within 1s"))
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

    let url = format!("http://127.0.0.1:{closed}/healthz");
    let refused = check(json!({"name": "web", "http": {"url": url}}));
    assert_eq!(
        once(&c.ops, &request(&refused, "w-1")).await,
        failed(&format!("no answer from {url}: connection refused"))
    );

    // A body that never ends is read up to its bound, then judged: well
    // before the request's time is up.
    let url = format!("http://127.0.0.1:{}/stream", endless.port);
    let streams = check(json!({"name": "web", "http": {"url": url, "bodyContains": "ok", "requestTimeout": "30s"}}));
    let t0 = Instant::now();
    let a = once(&c.ops, &request(&streams, "w-1")).await;
    assert!(!a.passed);
    let want = format!("body of {url} does not contain \"ok\": ");
    assert!(a.answer.starts_with(&want), "{}", a.answer);
    let excerpt = &a.answer[want.len()..];
    assert_eq!(
        excerpt,
        format!("{}…", "x".repeat(200)),
        "the body, cut to 200 characters"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn https_check_trusts_its_ca_bundle_or_its_secrets_ca_and_sends_the_secrets_token() {
    let c = Cluster::start().await;
    namespace(&c, NS).await;
    namespace(&c, "shop").await;
    c.node("w-1", true).await;
    let pki = pki("https");
    let server = Server::start(
        &["127.0.0.1"],
        Some(pki.server.clone()),
        handler(|s| match s.authorization.as_deref() {
            Some("Bearer s3cret") | None => ok(200, "ok"),
            Some(_) => ok(401, "Unauthorized"),
        }),
    )
    .await;
    let url = format!("https://127.0.0.1:{}/healthz", server.port);
    let https = |extra: Value| {
        let mut h = json!({"url": url});
        h.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check(json!({"name": "api", "http": h}))
    };

    // The test CA is not in the platform's store.
    assert_eq!(
        once(&c.ops, &request(&https(json!({})), "w-1")).await,
        failed(&format!(
            "no answer from {url}: TLS: invalid peer certificate: UnknownIssuer"
        ))
    );
    assert_eq!(
        once(&c.ops, &request(&https(json!({"caBundle": pki.other_ca})), "w-1")).await,
        failed(&format!(
            "no answer from {url}: TLS: invalid peer certificate: UnknownIssuer"
        ))
    );
    assert_eq!(
        once(&c.ops, &request(&https(json!({"caBundle": pki.ca})), "w-1")).await,
        passed(&format!("HTTP 200 from {url}"))
    );
    assert_eq!(
        once(
            &c.ops,
            &request(&https(json!({"caBundle": "not a certificate"})), "w-1")
        )
        .await,
        failed("http.caBundle holds no PEM certificate")
    );
    assert_eq!(server.seen().iter().filter(|s| s.authorization.is_none()).count(), 1);

    // The Secret's ca.crt is trusted and its token sent.
    secret(
        &c,
        NS,
        "api-health",
        None,
        &[("ca.crt", pki.ca.as_bytes()), ("token", b"s3cret\n")],
    )
    .await;
    assert_eq!(
        once(&c.ops, &request(&https(json!({"secretName": "api-health"})), "w-1")).await,
        passed(&format!("HTTP 200 from {url}"))
    );
    let last = server.seen().pop().unwrap();
    assert_eq!(last.authorization.as_deref(), Some("Bearer s3cret"));
    // A token alone, with the CA from caBundle: a wrong one is refused by the server.
    secret(&c, NS, "wrong-token", None, &[("token", b"guess")]).await;
    assert_eq!(
        once(
            &c.ops,
            &request(&https(json!({"secretName": "wrong-token", "caBundle": pki.ca})), "w-1")
        )
        .await,
        failed(&format!("HTTP 401 from {url} (expected 200): Unauthorized"))
    );

    // Secrets that cannot be used are failed checks naming them.
    secret(&c, "shop", "elsewhere", None, &[("token", b"s3cret")]).await;
    assert_eq!(
        once(&c.ops, &request(&https(json!({"secretName": "elsewhere"})), "w-1")).await,
        failed("Secret drover-system/elsewhere (http.secretName) does not exist"),
        "only drover's own namespace is read"
    );
    secret(&c, NS, "no-keys", None, &[("password", b"x")]).await;
    assert_eq!(
        once(&c.ops, &request(&https(json!({"secretName": "no-keys"})), "w-1")).await,
        failed("Secret drover-system/no-keys has neither a ca.crt nor a token key")
    );
    secret(
        &c,
        NS,
        "drover-token",
        Some("kubernetes.io/service-account-token"),
        &[("ca.crt", pki.ca.as_bytes()), ("token", b"s3cret")],
    )
    .await;
    assert_eq!(
        once(&c.ops, &request(&https(json!({"secretName": "drover-token"})), "w-1")).await,
        failed(
            "Secret drover-system/drover-token is a ServiceAccount token; drover sends no ServiceAccount's credentials to a health check"
        )
    );
    let tokens: Vec<Option<String>> = server.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(
        tokens,
        [
            None,
            Some("Bearer s3cret".to_string()),
            Some("Bearer guess".to_string())
        ],
        "the requests that reached the server (TLS refused the first two)"
    );
}

// ---------------------------------------------------------------- prometheus

fn vector(series: &[(&str, &str, &str)]) -> String {
    let result: Vec<Value> = series
        .iter()
        .map(|(name, node, v)| json!({"metric": {"__name__": name, "node": node}, "value": [1700000000.5, v]}))
        .collect();
    json!({"status": "success", "data": {"resultType": "vector", "result": result}}).to_string()
}

#[tokio::test]
async fn prometheus_check_asks_the_query_api_with_the_filled_query_and_judges_the_series() {
    let c = Cluster::start().await;
    node_at(&c, "w-1", json!([{"type": "InternalIP", "address": "10.0.0.5"}])).await;
    // A Prometheus answering by query, as its /api/v1/query does.
    let server = Server::start(
        &["127.0.0.1"],
        None,
        handler(|s| {
            let Some(("/api/v1/query", q)) = s.path.split_once('?') else {
                return ok(404, "404 page not found");
            };
            let query: String = form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "query")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            match query.as_str() {
                r#"ALERTS{alertstate="firing",severity="critical"}"# => ok(
                    200,
                    &vector(&[("ALERTS", "w-2", "1"), ("ALERTS", "w-4", "1")]),
                ),
                r#"ALERTS{alertstate="firing",node="w-1"}"# => ok(200, &vector(&[])),
                r#"up{instance="10.0.0.5:9100"}"# => ok(200, &vector(&[("up", "w-1", "1")])),
                r#"avail{node="w-1"}"# => ok(200, &vector(&[("avail", "w-1", "0.97")])),
                r#"absent_metric"# => ok(200, &vector(&[])),
                _ => ok(
                    400,
                    r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:4: parse error: unexpected end of input"}"#,
                ),
            }
        }),
    )
    .await;
    let base = format!("http://127.0.0.1:{}", server.port);
    let prom = |query: &str, threshold: Value| {
        let mut p = json!({"url": format!("{base}/"), "query": query});
        if !threshold.is_null() {
            p["threshold"] = threshold;
        }
        check(json!({"name": "alerts", "prometheus": p}))
    };
    let gt = json!({"op": ">", "value": 0.99});

    assert_eq!(
        once(
            &c.ops,
            &request(
                &prom(r#"ALERTS{alertstate="firing",node="{{node}}"}"#, Value::Null),
                "w-1"
            )
        )
        .await,
        passed(r#"query ALERTS{alertstate="firing",node="w-1"} returned no series"#)
    );
    assert_eq!(
        once(
            &c.ops,
            &request(
                &prom(r#"ALERTS{alertstate="firing",severity="critical"}"#, Value::Null),
                "w-1"
            )
        )
        .await,
        failed(
            r#"query ALERTS{alertstate="firing",severity="critical"} returned 2 series: ALERTS{node="w-2"}, ALERTS{node="w-4"}"#
        )
    );
    assert_eq!(
        once(
            &c.ops,
            &request(&prom(r#"up{instance="{{nodeIP}}:9100"}"#, gt.clone()), "w-1")
        )
        .await,
        passed(r#"query up{instance="10.0.0.5:9100"} returned 1 series, every sample > 0.99"#)
    );
    assert_eq!(
        once(&c.ops, &request(&prom(r#"avail{node="{{node}}"}"#, gt.clone()), "w-1")).await,
        failed(r#"sample 0.97 of avail{node="w-1"} is not > 0.99"#)
    );
    assert_eq!(
        once(&c.ops, &request(&prom("absent_metric", gt), "w-1")).await,
        failed("query absent_metric returned no series (threshold > 0.99 needs one)")
    );
    assert_eq!(
        once(&c.ops, &request(&prom("up{", Value::Null), "w-1")).await,
        failed(r#"query up{ failed: bad_data: invalid parameter "query": 1:4: parse error: unexpected end of input"#)
    );
    // The URL's trailing slash is not doubled; the query is encoded.
    let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert!(paths.iter().all(|p| p.starts_with("/api/v1/query?query=")), "{paths:?}");
    assert!(
        paths.contains(&"/api/v1/query?query=up%7Binstance%3D%2210.0.0.5%3A9100%22%7D".to_string()),
        "{paths:?}"
    );

    // Not Prometheus at all, and no Prometheus there.
    let wrong = check(json!({"name": "alerts", "prometheus": {"url": format!("{base}/elsewhere"), "query": "up"}}));
    let a = once(&c.ops, &request(&wrong, "w-1")).await;
    assert!(!a.passed);
    assert!(
        a.answer
            .starts_with("query up answered HTTP 404 with no Prometheus query result (")
            && a.answer.ends_with("): 404 page not found"),
        "{}",
        a.answer
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down =
        check(json!({"name": "alerts", "prometheus": {"url": format!("http://127.0.0.1:{closed}"), "query": "up"}}));
    assert_eq!(
        once(&c.ops, &request(&down, "w-1")).await,
        failed(&format!(
            "no answer from http://127.0.0.1:{closed}/api/v1/query: connection refused"
        ))
    );
}

// ---------------------------------------------------------------- pods

/// A pod's status: Ready or not, with its containers' restarts and when the last one ended.
fn pod_status(ready: bool, restarts: i32, last_finished: Option<Timestamp>) -> Value {
    let mut cs = json!({"name": "c", "ready": ready, "restartCount": restarts, "image": "busybox", "imageID": ""});
    if let Some(t) = last_finished {
        cs["lastState"] = json!({"terminated": {"exitCode": 1, "finishedAt": t.to_string()}});
    }
    json!({"phase": "Running",
           "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
           "containerStatuses": [cs]})
}

async fn set_pod(c: &Cluster, ns: &str, name: &str, status: Value) {
    let api: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn pods_check_wants_every_live_matching_pod_ready_on_the_node_or_anywhere() {
    let c = Cluster::start().await;
    namespace(&c, "shop").await;
    for n in ["w-1", "w-2"] {
        c.node(n, true).await;
    }
    let web = json!({"app": "web"});
    c.pod("shop", "web-a", "w-1", web.clone(), None, json!([])).await;
    c.pod("shop", "web-b", "w-2", web.clone(), None, json!([])).await;
    c.pod("default", "web-c", "w-2", web.clone(), None, json!([])).await;
    set_pod(&c, "shop", "web-b", pod_status(false, 0, None)).await;
    set_pod(&c, "default", "web-c", pod_status(false, 0, None)).await;
    // Finished and terminating pods are not judged.
    c.pod("shop", "web-done", "w-1", web.clone(), None, json!([])).await;
    set_pod(
        &c,
        "shop",
        "web-done",
        json!({"phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False"}]}),
    )
    .await;
    c.pod("shop", "web-leaving", "w-1", web.clone(), None, json!([])).await;
    set_pod(&c, "shop", "web-leaving", pod_status(false, 0, None)).await;
    Api::<Pod>::namespaced(c.client.clone(), "shop")
        .delete("web-leaving", &DeleteParams::default())
        .await
        .unwrap();

    let pods = |extra: Value| {
        let mut p = json!({"selector": {"matchLabels": {"app": "web"}}});
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check(json!({"name": "web-pods", "pods": p}))
    };
    let on_node = pods(json!({"namespace": "shop", "onNode": true}));
    assert_eq!(
        once(&c.ops, &request(&on_node, "w-1")).await,
        passed("1 pod app=web in shop on w-1 Ready")
    );
    assert_eq!(
        once(&c.ops, &request(&on_node, "w-2")).await,
        failed("pod shop/web-b on w-2 is not Ready")
    );
    assert_eq!(
        once(&c.ops, &request(&pods(json!({})), "w-1")).await,
        failed("pod default/web-c on w-2 is not Ready, and 1 more of the 3 matching"),
        "every namespace, every node"
    );
    set_pod(&c, "shop", "web-b", pod_status(true, 0, None)).await;
    set_pod(&c, "default", "web-c", pod_status(true, 0, None)).await;
    assert_eq!(
        once(&c.ops, &request(&pods(json!({})), "w-1")).await,
        passed("3 pods app=web in any namespace Ready")
    );
    let set_based = check(
        json!({"name": "web-pods", "pods": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "cache"]}]}}}),
    );
    assert_eq!(
        once(&c.ops, &request(&set_based, "w-1")).await,
        passed("no pods match app in (cache,db) in any namespace")
    );
}

#[tokio::test]
async fn pods_check_counts_restarts_since_the_uncordon_only() {
    let c = Cluster::start().await;
    namespace(&c, "shop").await;
    c.node("w-1", true).await;
    let web = json!({"app": "web"});
    c.pod("shop", "old-restarted", "w-1", web.clone(), None, json!([]))
        .await;
    c.pod("shop", "old-quiet", "w-1", web.clone(), None, json!([])).await;
    // The API's times are whole seconds: the uncordon comes a second after those pods.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let uncordon = Timestamp::now();
    let before = uncordon - jiff::SignedDuration::from_secs(60);
    let after = uncordon + jiff::SignedDuration::from_secs(1);
    // Restarted long ago, and not since: not counted.
    set_pod(&c, "shop", "old-quiet", pod_status(true, 7, Some(before))).await;
    set_pod(&c, "shop", "old-restarted", pod_status(true, 1, Some(after))).await;

    let check = check(
        json!({"name": "web-pods", "pods": {"namespace": "shop", "selector": {"matchLabels": {"app": "web"}}, "onNode": true, "maxRestarts": 1}}),
    );
    let mut req = request(&check, "w-1");
    req.since = Some(uncordon);
    assert_eq!(
        once(&c.ops, &req).await,
        passed("2 pods app=web in shop on w-1 Ready, none restarted more than 1 time since the uncordon")
    );
    set_pod(&c, "shop", "old-restarted", pod_status(true, 3, Some(after))).await;
    assert_eq!(
        once(&c.ops, &req).await,
        failed("pod shop/old-restarted on w-1 restarted 3 times since the uncordon (at most 1)")
    );
    set_pod(&c, "shop", "old-restarted", pod_status(true, 3, Some(before))).await;
    assert!(once(&c.ops, &req).await.passed);

    // A pod created after the uncordon: every restart counts, whenever it ended.
    c.pod("shop", "new", "w-1", web.clone(), None, json!([])).await;
    set_pod(&c, "shop", "new", pod_status(true, 2, None)).await;
    assert_eq!(
        once(&c.ops, &req).await,
        failed("pod shop/new on w-1 restarted 2 times since the uncordon (at most 1)")
    );
    // Before the node starts there is no uncordon: restarts are not judged.
    req.since = None;
    assert_eq!(once(&c.ops, &req).await, passed("3 pods app=web in shop on w-1 Ready"));
}

// ---------------------------------------------------------------- controlPlane

const MEMBERS: [&str; 3] = ["cp-1", "cp-2", "cp-3"];

#[tokio::test]
async fn control_plane_check_passes_for_a_worker_and_asks_every_api_server_and_etcd_member_for_a_member() {
    let c = Cluster::start().await;
    let pki = pki("cp");
    let ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    for (n, ip) in MEMBERS.iter().zip(ips) {
        node_at(&c, n, json!([{"type": "InternalIP", "address": ip}])).await;
    }
    c.node("w-1", true).await;
    // What each member says, changed as the test goes.
    let readyz: Arc<Mutex<BTreeMap<String, (u16, String)>>> = Arc::default();
    let health: Arc<Mutex<BTreeMap<String, (u16, String)>>> = Arc::default();
    for ip in ips {
        readyz.lock().unwrap().insert(ip.into(), (200, "ok".into()));
        health
            .lock()
            .unwrap()
            .insert(ip.into(), (200, r#"{"health":"true","reason":""}"#.into()));
    }
    let answers = |m: Arc<Mutex<BTreeMap<String, (u16, String)>>>| {
        handler(move |s| {
            let (code, body) = m.lock().unwrap()[&s.at].clone();
            Reply::Answer(code, body)
        })
    };
    let api = Server::start(&ips, Some(pki.server.clone()), answers(readyz.clone())).await;
    let etcd = Server::start(&ips, None, answers(health.clone())).await;
    let check = check(json!({"name": "control-plane", "controlPlane": {
        "apiServerURL": format!("https://{{{{nodeIP}}}}:{}/readyz", api.port),
        "etcdURL": format!("http://{{{{nodeIP}}}}:{}/health", etcd.port)}}));
    let members: Vec<String> = MEMBERS.iter().map(|s| s.to_string()).collect();
    let member_req = |node: &'static str| HealthRequest {
        control_plane: &members,
        etcd: &members,
        is_member: true,
        ..request(&check, node)
    };
    // The cluster's CA, read from its file as in a pod: another CA first,
    // then the API servers' own, rotated in under the same ops.
    let ca_file = pki.dir.join("cluster-ca.crt");
    std::fs::write(&ca_file, &pki.other_ca).unwrap();
    let ops = KubeNodeOps::new(c.client.clone(), c.client.clone(), "kube-system").with_cluster_ca(ClusterCa {
        der: Vec::new(),
        file: Some(ca_file.clone()),
    });

    // A worker: nothing asked.
    let worker = HealthRequest {
        is_member: false,
        ..member_req("w-1")
    };
    assert_eq!(
        once(&ops, &worker).await,
        passed("w-1 is a worker: the controlPlane check is for etcd and control-plane nodes")
    );
    assert!(api.seen().is_empty() && etcd.seen().is_empty());

    assert_eq!(
        once(&ops, &member_req("cp-2")).await,
        failed(&format!(
            "kube-apiserver on cp-1 (https://127.0.0.1:{}/readyz): no answer: TLS: invalid peer certificate: UnknownIssuer",
            api.port
        ))
    );
    std::fs::write(&ca_file, &pki.ca).unwrap();
    assert_eq!(etcd.seen().len(), 3, "etcd was asked too, all at once");
    assert_eq!(
        once(&ops, &member_req("cp-2")).await,
        passed("kube-apiserver ready on 3 nodes, etcd healthy on 3 members")
    );
    let asked = |s: &Server| {
        let mut at: Vec<String> = s.seen().into_iter().map(|x| format!("{} {}", x.at, x.path)).collect();
        at.sort();
        at
    };
    assert_eq!(
        asked(&api),
        ["127.0.0.1 /readyz", "127.0.0.2 /readyz", "127.0.0.3 /readyz"]
    );
    assert!(
        api.seen().iter().chain(&etcd.seen()).all(|s| s.authorization.is_none()),
        "the controlPlane check sends no credentials"
    );
    assert_eq!(
        asked(&etcd),
        [
            "127.0.0.1 /health",
            "127.0.0.1 /health",
            "127.0.0.2 /health",
            "127.0.0.2 /health",
            "127.0.0.3 /health",
            "127.0.0.3 /health"
        ]
    );

    // etcd's answer in other spacing passes; one member down fails, named.
    health
        .lock()
        .unwrap()
        .insert("127.0.0.1".into(), (200, "{\"health\": \"true\"}\n".into()));
    health.lock().unwrap().insert(
        "127.0.0.3".into(),
        (200, r#"{"health":"false","reason":"RAFT NO LEADER"}"#.into()),
    );
    assert_eq!(
        once(&ops, &member_req("cp-1")).await,
        failed(&format!(
            r#"etcd on cp-3 (http://127.0.0.3:{}/health): HTTP 200 without "health":"true": {{"health":"false","reason":"RAFT NO LEADER"}}"#,
            etcd.port
        ))
    );
    // The first failure in order: API servers before etcd members.
    readyz.lock().unwrap().insert(
        "127.0.0.2".into(),
        (500, "[-]etcd failed: reason withheld\nreadyz check failed\n".into()),
    );
    assert_eq!(
        once(&ops, &member_req("cp-1")).await,
        failed(&format!(
            "kube-apiserver on cp-2 (https://127.0.0.2:{}/readyz): HTTP 500: [-]etcd failed: reason withheld readyz check failed",
            api.port
        ))
    );
    readyz
        .lock()
        .unwrap()
        .insert("127.0.0.2".into(), (200, "not yet".into()));
    assert_eq!(
        once(&ops, &member_req("cp-1")).await,
        failed(&format!(
            "kube-apiserver on cp-2 (https://127.0.0.2:{}/readyz): HTTP 200 but not ok: not yet",
            api.port
        ))
    );

    // Without the cluster's CA the API servers' certificates are not trusted.
    let untrusting = KubeNodeOps::new(c.client.clone(), c.client.clone(), "kube-system");
    assert_eq!(
        once(&untrusting, &member_req("cp-1")).await,
        failed(&format!(
            "kube-apiserver on cp-1 (https://127.0.0.1:{}/readyz): no answer: TLS: invalid peer certificate: UnknownIssuer",
            api.port
        ))
    );
    // A member without an address is named.
    c.node("cp-4", true).await;
    let with_cp4: Vec<String> = ["cp-1", "cp-4"].map(String::from).to_vec();
    let req = HealthRequest {
        control_plane: &with_cp4,
        etcd: &[],
        ..member_req("cp-1")
    };
    assert_eq!(
        once(&ops, &req).await,
        failed("kube-apiserver on cp-4: node cp-4 reports no address for {{nodeIP}}")
    );
}
