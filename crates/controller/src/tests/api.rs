//! The API server, mocked request by request (kube-rs's controller-rs
//! style): a `tower-test` pair behind a real `kube::Client`. A test scripts
//! the requests it expects, in order, and answers each; a request that is
//! not the next expected one, or one that never comes, fails the test.
//! Every wait is bounded.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

/// How long a scripted request may take to arrive.
pub const BOUND: Duration = Duration::from_secs(5);

pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// A client whose every request goes to the returned [`ApiServer`].
pub fn mock() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer { handle })
}

/// One request as the server saw it, to be answered (once; the request
/// stays readable after).
pub struct Req {
    pub method: Method,
    pub path: String,
    /// The query, decoded, in order.
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// The body as JSON (Null when empty).
    pub body: Value,
    respond: Option<SendResponse<Response<Body>>>,
}

impl std::fmt::Display for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {:?} {}", self.method, self.path, self.query, self.body)
    }
}

impl Req {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Answer 200 with `body`.
    pub fn ok(&mut self, body: Value) {
        self.answer(StatusCode::OK, body);
    }

    /// Answer 201 with `body` (a create).
    pub fn created(&mut self, body: Value) {
        self.answer(StatusCode::CREATED, body);
    }

    /// Answer 200 with the body the request sent (a write that took).
    pub fn echo(&mut self) {
        let body = self.body.clone();
        self.ok(body);
    }

    /// Answer with a failure Status, as the API server does.
    pub fn fail(&mut self, code: u16, reason: &str, message: &str) {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        });
        self.answer(StatusCode::from_u16(code).expect("a status code"), status);
    }

    fn answer(&mut self, code: StatusCode, body: Value) {
        let body = serde_json::to_vec(&body).expect("JSON");
        let response = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("a response");
        self.respond
            .take()
            .expect("a request is answered once")
            .send_response(response);
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

impl ApiServer {
    /// The next request, or None when none came within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Req> {
        let (request, respond) = tokio::time::timeout(within, self.handle.next_request())
            .await
            .ok()
            .flatten()?;
        let (parts, body) = request.into_parts();
        let bytes = tokio::time::timeout(BOUND, body.collect_bytes())
            .await
            .expect("the request body within the bound")
            .expect("a request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Some(Req {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parse_query(parts.uri.query()),
            content_type: parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body,
            respond: Some(respond),
        })
    }

    /// The next request, which must be `method path`.
    pub async fn expect(&mut self, method: Method, path: &str) -> Req {
        let Some(req) = self.next_within(BOUND).await else {
            panic!("expected {method} {path}; no request came within {BOUND:?}");
        };
        assert!(
            req.method == method && req.path == path,
            "expected {method} {path}; got {req}"
        );
        req
    }

    /// No request comes within `within`.
    pub async fn idle(&mut self, within: Duration) {
        if let Some(req) = self.next_within(within).await {
            panic!("expected no more requests; got {req}");
        }
    }
}

#[test]
fn queries_are_decoded() {
    assert_eq!(
        parse_query(Some(
            "labelSelector=drover.dev%2Fupgrade%3Droll&fieldManager=drover&force=true&x"
        )),
        vec![
            ("labelSelector".to_string(), "drover.dev/upgrade=roll".to_string()),
            ("fieldManager".to_string(), "drover".to_string()),
            ("force".to_string(), "true".to_string()),
            ("x".to_string(), String::new()),
        ]
    );
    assert_eq!(decode("a+b%2"), "a b%2");
}
