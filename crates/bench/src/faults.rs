//! Faults between one client (drover) and the real API server, for the
//! chaos soak: an HTTPS proxy that terminates TLS with the bed's own serving
//! certificate (so the client's kubeconfig keeps the bed's CA and token),
//! forwards each request over its own TLS connection to the API server, and
//! on the way, driven by a seed:
//! - answers a share of requests itself with `500 InternalError`,
//!   `503 ServiceUnavailable` or `429 TooManyRequests` (`Retry-After: 1`),
//!   as an overloaded or restarting server does, without forwarding them;
//! - forwards a share of writes and then cuts the connection before the
//!   answer, so the write happened and the client does not know;
//! - ends every watch after a random time by cutting its connection;
//! - answers `503` while the API server is down (a restart).
//!
//! Lease requests pass untouched unless `leases` is set: faults there only
//! cost leadership, which kills already cover.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::Rng;

/// What the proxy does, and how often.
#[derive(Debug, Clone)]
pub struct FaultOptions {
    /// Share of non-watch requests answered with an error, not forwarded.
    pub error_rate: f64,
    /// Share of writes forwarded whose answer is then lost (connection cut).
    pub lost_answer_rate: f64,
    /// A watch is cut after a time drawn between these (real seconds).
    pub watch_life: (f64, f64),
    /// Faults on Lease requests too.
    pub leases: bool,
    pub seed: u64,
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub requests: AtomicU64,
    pub answered_500: AtomicU64,
    pub answered_503: AtomicU64,
    pub answered_429: AtomicU64,
    pub answers_lost: AtomicU64,
    pub watches: AtomicU64,
    pub watches_cut: AtomicU64,
    /// Requests answered 503 because the API server could not be reached.
    pub upstream_down: AtomicU64,
}

impl FaultCounts {
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{} requests; injected: {} × 500, {} × 503, {} × 429, {} answers lost after the write; {} watches, {} cut; {} answered 503 while the API server was down",
            g(&self.requests),
            g(&self.answered_500),
            g(&self.answered_503),
            g(&self.answered_429),
            g(&self.answers_lost),
            g(&self.watches),
            g(&self.watches_cut),
            g(&self.upstream_down),
        )
    }

    /// Every fault injected (errors, lost answers, cut watches).
    pub fn injected(&self) -> u64 {
        [
            &self.answered_500,
            &self.answered_503,
            &self.answered_429,
            &self.answers_lost,
            &self.watches_cut,
        ]
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum()
    }
}

pub struct FaultProxy {
    /// Where clients connect (`https://127.0.0.1:PORT`).
    pub addr: SocketAddr,
    pub counts: Arc<FaultCounts>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

struct Shared {
    opts: FaultOptions,
    counts: Arc<FaultCounts>,
    rng: Mutex<Rng>,
    upstream: SocketAddr,
    connector: tokio_rustls::TlsConnector,
}

impl Shared {
    fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().unwrap().unit() < p
    }
}

impl FaultProxy {
    /// A proxy in front of the bed in `bed_dir` (its `pki/` and `server`).
    pub async fn start(bed_dir: &Path, opts: FaultOptions) -> anyhow::Result<FaultProxy> {
        let pki = bed_dir.join("pki");
        let server = std::fs::read_to_string(bed_dir.join("server"))?;
        let upstream: SocketAddr = server
            .trim()
            .trim_start_matches("https://")
            .parse()
            .with_context(|| format!("the bed's server address {server:?}"))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.join("server.crt"))?
            .collect::<Result<_, _>>()
            .context("the bed's server.crt")?;
        let key = PrivateKeyDer::from_pem_file(pki.join("server.key")).context("the bed's server.key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server_cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        server_cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(pki.join("ca.crt"))? {
            roots.add(c?)?;
        }
        let client_cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
        let shared = Arc::new(Shared {
            counts: Arc::new(FaultCounts::default()),
            rng: Mutex::new(Rng::new(opts.seed)),
            opts,
            upstream,
            connector: tokio_rustls::TlsConnector::from(Arc::new(client_cfg)),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = shared.counts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(FaultProxy { addr, counts, task })
    }

    /// `kubeconfig` with its server replaced by this proxy, written to `to`.
    pub fn kubeconfig(&self, kubeconfig: &Path, to: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(kubeconfig)?;
        let out: Vec<String> = text
            .lines()
            .map(|l| match l.split_once("server: ") {
                Some((indent, _)) => format!("{indent}server: https://{}", self.addr),
                None => l.to_string(),
            })
            .collect();
        std::fs::write(to, out.join("\n") + "\n")?;
        Ok(())
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    })
    .to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if code == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    r
}

/// A body that ends in an error (the connection cut) when `cut` fires.
fn cut_after(body: Incoming, cut: Option<Duration>, counts: Arc<FaultCounts>) -> Body {
    let sleep = Box::pin(tokio::time::sleep(cut.unwrap_or(Duration::MAX / 4)));
    let stream = futures::stream::unfold((body, sleep, false), move |(mut body, mut sleep, done)| {
        let counts = counts.clone();
        async move {
            if done {
                return None;
            }
            let frame: Option<Result<Frame<Bytes>, std::io::Error>> = tokio::select! {
                f = body.frame() => f.map(|r| r.map_err(std::io::Error::other)),
                _ = &mut sleep, if cut.is_some() => {
                    counts.watches_cut.fetch_add(1, Ordering::Relaxed);
                    Some(Err(std::io::Error::other("chaos: watch cut")))
                }
            };
            match frame {
                Some(Ok(f)) => Some((Ok(f), (body, sleep, false))),
                Some(Err(e)) => Some((Err(e), (body, sleep, true))),
                None => None,
            }
        }
    });
    BoxBody::new(StreamBody::new(stream))
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let c = &shared.counts;
    c.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let lease = path.contains("/leases");
    let write = !matches!(*req.method(), http::Method::GET | http::Method::HEAD);
    let faults = shared.opts.leases || !lease;
    if faults && !watch && shared.chance(shared.opts.error_rate) {
        let pick = shared.rng.lock().unwrap().below(3);
        return match pick {
            0 => {
                c.answered_500.fetch_add(1, Ordering::Relaxed);
                status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "chaos: an injected internal error",
                )
            }
            1 => {
                c.answered_503.fetch_add(1, Ordering::Relaxed);
                status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "chaos: the server is unavailable",
                )
            }
            _ => {
                c.answered_429.fetch_add(1, Ordering::Relaxed);
                status(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "chaos: too many requests, retry after 1 s",
                )
            }
        };
    }
    let lose_answer = faults && write && shared.chance(shared.opts.lost_answer_rate);
    let cut = (faults && watch).then(|| {
        c.watches.fetch_add(1, Ordering::Relaxed);
        let (lo, hi) = shared.opts.watch_life;
        Duration::from_secs_f64(lo + (hi - lo).max(0.0) * shared.rng.lock().unwrap().unit())
    });

    // One upstream connection per request: simple, and a restarted API
    // server is reached again at once.
    let forwarded = async {
        let tcp = TcpStream::connect(shared.upstream).await?;
        let name = ServerName::IpAddress(shared.upstream.ip().into());
        let tls = shared.connector.connect(name, tcp).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(std::io::Error::other)
    };
    let resp = match forwarded.await {
        Ok(r) => r,
        Err(e) => {
            c.upstream_down.fetch_add(1, Ordering::Relaxed);
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("chaos proxy: the API server is unreachable: {e}"),
            );
        }
    };
    if lose_answer {
        c.answers_lost.fetch_add(1, Ordering::Relaxed);
        // The write is done; the client sees its connection cut instead of the answer.
        let (parts, body) = resp.into_parts();
        return Response::from_parts(
            parts,
            cut_after(body, Some(Duration::ZERO), Arc::new(FaultCounts::default())),
        );
    }
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, cut_after(body, cut, shared.counts.clone()))
}
