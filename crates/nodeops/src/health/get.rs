//! One bounded HTTP(S) GET for the health checks: connect, TLS, request,
//! status and at most [`BODY_LIMIT`] bytes of body, all within one
//! deadline. No redirects are followed, no proxy is used, and every failure
//! comes back as text a person reads in status ("connection refused",
//! "TLS: invalid peer certificate: UnknownIssuer"), never as an error type.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::time::Instant;

/// The most of a body read: enough for any health answer, and a server
/// that streams forever cannot hold drover.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Which certificates an https URL must chain to.
#[derive(Clone)]
pub enum Trust {
    /// The platform's trust store (rustls-platform-verifier, as kube's own
    /// client without a CA).
    Platform,
    /// Only these.
    Roots(Arc<RootCertStore>),
}

impl Trust {
    /// The certificates of PEM text (a caBundle, a Secret's `ca.crt`); Err
    /// says what is wrong with it, naming `what`.
    pub fn from_pem(pems: &[(&str, &[u8])]) -> Result<Trust, String> {
        let mut roots = RootCertStore::empty();
        for (what, pem) in pems {
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("{what} is not PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{what} holds a certificate rustls cannot use: {e}"))?;
                found += 1;
            }
            if found == 0 {
                return Err(format!("{what} holds no PEM certificate"));
            }
        }
        Ok(Trust::Roots(Arc::new(roots)))
    }

    /// DER certificates (what `kube::Config::root_cert` holds).
    pub fn from_der(certs: &[Vec<u8>]) -> Result<Trust, String> {
        let mut roots = RootCertStore::empty();
        for der in certs {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| format!("the cluster's CA certificate cannot be used: {e}"))?;
        }
        Ok(Trust::Roots(Arc::new(roots)))
    }

    fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let builder = || {
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))
        };
        let alpn = |mut c: ClientConfig| {
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(c)
        };
        match self {
            Trust::Roots(roots) => Ok(alpn(
                builder()?.with_root_certificates(roots.clone()).with_no_client_auth(),
            )),
            // Loading the platform's store is not free: once per process.
            Trust::Platform => {
                static PLATFORM: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
                PLATFORM
                    .get_or_init(|| {
                        use rustls_platform_verifier::BuilderVerifierExt;
                        let c = builder()?
                            .with_platform_verifier()
                            .map_err(|e| format!("TLS: the platform's trust store: {e}"))?
                            .with_no_client_auth();
                        Ok(alpn(c))
                    })
                    .clone()
            }
        }
    }
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The body (at most [`BODY_LIMIT`] bytes), or why it could not be read.
    pub body: Result<Vec<u8>, String>,
}

impl Reply {
    pub fn text(&self) -> String {
        match &self.body {
            Ok(b) => String::from_utf8_lossy(b).into_owned(),
            Err(_) => String::new(),
        }
    }
}

/// Why no status came back, as text following "no answer from URL".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// Nothing within the request's time.
    Timeout(Duration),
    /// The connection, TLS or the request failed.
    Failed(String),
}

impl std::fmt::Display for Unanswered {
    /// " within 5s" or ": connection refused", to follow "no answer from URL".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::Timeout(d) => write!(f, " within {}", seconds(*d)),
            Unanswered::Failed(why) => write!(f, ": {why}"),
        }
    }
}

/// `5s`, `1.5s`.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// Aborts the connection's task when the request is done or dropped (a
/// timeout), so nothing outlives the check.
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// GET `url` within `timeout`, sending `bearer` as `Authorization: Bearer`.
pub async fn get(url: &str, trust: &Trust, bearer: Option<&str>, timeout: Duration) -> Result<Reply, Unanswered> {
    let deadline = Instant::now() + timeout;
    let (status, body) = match tokio::time::timeout_at(deadline, head(url, trust, bearer)).await {
        Err(_) => return Err(Unanswered::Timeout(timeout)),
        Ok(Err(why)) => return Err(Unanswered::Failed(why)),
        Ok(Ok(r)) => r,
    };
    let (mut body, _conn) = body;
    let read = async {
        let mut out = Vec::new();
        while out.len() < BODY_LIMIT {
            match body.frame().await {
                None => break,
                Some(Err(e)) => return Err(error_text(&e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        out.extend_from_slice(&data);
                    }
                }
            }
        }
        out.truncate(BODY_LIMIT);
        Ok(out)
    };
    let body = match tokio::time::timeout_at(deadline, read).await {
        Ok(r) => r,
        Err(_) => Err(format!("the body did not arrive within {}", seconds(timeout))),
    };
    Ok(Reply { status, body })
}

type Head = (u16, (hyper::body::Incoming, Abort));

/// Connect, handshake, send, and wait for the status line.
async fn head(url: &str, trust: &Trust, bearer: Option<&str>) -> Result<Head, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err("the URL must start with http:// or https://".into()),
    };
    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());

    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| io_text(&e))?;
    let _ = tcp.set_nodelay(true);
    let mut req = http::Request::get(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, concat!("drover/", env!("CARGO_PKG_VERSION")))
        .header(http::header::ACCEPT, "*/*");
    if let Some(token) = bearer {
        let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the bearer token is not a valid header value".to_string())?;
        req = req.header(http::header::AUTHORIZATION, value);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    if https {
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("TLS: {host}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(trust.client_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {}", io_text(&e)))?;
        send(TokioIo::new(tls), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
}

async fn send<T>(io: T, req: http::Request<Empty<Bytes>>) -> Result<Head, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| error_text(&e))?;
    let conn = Abort(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let res = sender.send_request(req).await.map_err(|e| error_text(&e))?;
    Ok((res.status().as_u16(), (res.into_body(), conn)))
}

/// An I/O error without its `(os error N)`, lowercase as the rest of a message.
fn io_text(e: &std::io::Error) -> String {
    // TLS errors come wrapped in io::Error: say the TLS error itself.
    if let Some(inner) = e.get_ref() {
        return error_text(inner);
    }
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", e.kind()).to_lowercase(),
    }
}

/// An error and its causes, each once: "connection closed before message completed".
fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut at: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = at {
        let text = match err.downcast_ref::<std::io::Error>() {
            Some(io) if io.get_ref().is_none() => io_text(io),
            _ => err.to_string(),
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        at = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_seconds() {
        assert_eq!(seconds(Duration::from_secs(5)), "5s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
        assert_eq!(Unanswered::Timeout(Duration::from_secs(5)).to_string(), " within 5s");
        assert_eq!(Unanswered::Failed("x".into()).to_string(), ": x");
    }

    #[test]
    fn io_errors_lose_their_os_error_number() {
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(io_text(&e), "connection refused");
    }

    #[test]
    fn pem_that_holds_no_certificate_is_named() {
        let Err(why) = Trust::from_pem(&[("caBundle", b"hello")]) else {
            panic!("accepted")
        };
        assert_eq!(why, "caBundle holds no PEM certificate");
    }
}
