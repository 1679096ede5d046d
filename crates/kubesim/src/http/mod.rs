//! The HTTP API: path parsing, verbs, content negotiation (JSON, Table,
//! PartialObjectMetadata; JSON, YAML and, for built-in kinds, protobuf request
//! bodies), errors as `Status`, and the admin endpoints.

mod watch;

use crate::error::ApiError;
use crate::eviction;
use crate::faults::{FaultRule, Faults};
use crate::requests::{RequestCounts, RequestKey, agent_of};
use crate::store::{
    DeleteOptions, FieldSelector, LabelSelector, ListOptions, Patch, ResourceType, Store, Stored, WriteOptions,
};
use crate::{discovery, events, scale, table};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub faults: Arc<Faults>,
    pub bookmark_interval: Duration,
    /// Requests served, per client (see `crate::requests`).
    pub requests: Arc<RequestCounts>,
}

pub fn router(app: App) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(app)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = json_response(code, &self.status());
        let retry = self.details.as_ref().and_then(|d| d["retryAfterSeconds"].as_u64());
        if let Some(v) = retry
            .filter(|s| *s > 0)
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    bytes_response(code, Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
}

fn bytes_response(code: StatusCode, b: Bytes) -> Response {
    let mut r = Response::new(Body::from(b));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The parsed query string.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        let pairs = q
            .map(|q| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (decode(k), decode(v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Query(pairs)
    }
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the client asked to receive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Output {
    Object,
    Table,
    Metadata,
}

fn output(headers: &HeaderMap) -> Output {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let first = accept.split(',').next().unwrap_or("");
    if first.contains("as=Table") {
        Output::Table
    } else if first.contains("as=PartialObjectMetadata") {
        Output::Metadata
    } else {
        Output::Object
    }
}

/// A resource request: `/api/v1/...` or `/apis/<g>/<v>/...`.
#[derive(Debug)]
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(segs: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let s = |x: &&str| x.to_string();
    let (namespace, resource, name, sub) = match rest {
        [] => return None,
        ["namespaces", ns, sub @ ("status" | "finalize")] => (None, "namespaces".into(), Some(s(ns)), Some(s(sub))),
        ["namespaces", ns, res, more @ ..] => (Some(s(ns)), s(res), more.first().map(s), more.get(1).map(s)),
        [res, more @ ..] => (None, s(res), more.first().map(s), more.get(1).map(s)),
    };
    Some(Target {
        group,
        version,
        namespace,
        resource,
        name,
        sub,
    })
}

async fn handle(State(app): State<App>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let mut query = Query::parse(parts.uri.query());
    // As the real server: a write without fieldManager (other than an
    // apply, which must name one) is managed by its user agent's prefix.
    let apply = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/apply-patch"));
    if !apply
        && query.get("fieldManager").is_none()
        && let Some(ua) = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())
    {
        let manager: String = ua.split('/').next().unwrap_or(ua).chars().take(128).collect();
        if !manager.is_empty() {
            query.0.push(("fieldManager".into(), manager));
        }
    }
    let body = match axum::body::to_bytes(body, 256 << 20).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(e.to_string()).into_response(),
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.first() == Some(&"admin") {
        return admin(&app, &parts.method, &segs, &body);
    }
    let (verb, resource) = classify(&parts.method, &path, &segs, &query);
    let r = match serve(&app, &parts.method, &parts.headers, &segs, &query, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    app.requests.record(RequestKey {
        agent: agent_of(parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())),
        verb: verb.to_string(),
        resource,
        code: r.status().as_u16(),
    });
    r
}

/// The verb and resource (`pods/eviction`) a request is counted under; the
/// path for non-resource requests.
fn classify(method: &Method, path: &str, segs: &[&str], query: &Query) -> (&'static str, String) {
    let (segs, legacy_watch): (Vec<&str>, bool) = match segs {
        ["api", v, "watch", rest @ ..] => ([&["api", *v][..], rest].concat(), true),
        ["apis", g, v, "watch", rest @ ..] => ([&["apis", *g, *v][..], rest].concat(), true),
        _ => (segs.to_vec(), false),
    };
    match parse_target(&segs) {
        Some(t) => {
            let verb = if legacy_watch {
                "watch"
            } else {
                verb_of(method, &t, query)
            };
            let resource = match &t.sub {
                Some(sub) => format!("{}/{sub}", t.resource),
                None => t.resource,
            };
            (verb, resource)
        }
        None => ("get", path.to_string()),
    }
}

fn admin(app: &App, method: &Method, segs: &[&str], body: &Bytes) -> Response {
    match (method.as_str(), segs) {
        ("GET", ["admin", "faults"]) => json_response(StatusCode::OK, &json!(app.faults.rules())),
        ("PUT" | "POST", ["admin", "faults"]) => {
            let rules: Result<Vec<FaultRule>, _> =
                serde_json::from_slice(body).or_else(|_| serde_json::from_slice::<FaultRule>(body).map(|r| vec![r]));
            match rules {
                Ok(r) => {
                    app.faults.set(r);
                    json_response(StatusCode::OK, &json!(app.faults.rules()))
                }
                Err(e) => ApiError::bad_request(e.to_string()).into_response(),
            }
        }
        ("DELETE", ["admin", "faults"]) => {
            app.faults.clear();
            json_response(StatusCode::OK, &json!([]))
        }
        ("POST", ["admin", "close-watches"]) => {
            app.store.close_watches();
            json_response(StatusCode::OK, &json!({"closed": true}))
        }
        ("GET", ["admin", "requests"]) => json_response(StatusCode::OK, &json!(app.requests.rows())),
        ("DELETE", ["admin", "requests"]) => {
            app.requests.reset();
            json_response(StatusCode::OK, &json!([]))
        }
        ("POST", ["admin", "compact"]) => {
            app.store.compact();
            json_response(StatusCode::OK, &json!({"compacted": true}))
        }
        _ => ApiError::page_not_found().into_response(),
    }
}

fn verb_of(method: &Method, t: &Target, query: &Query) -> &'static str {
    match *method {
        Method::GET if t.name.is_none() && query.flag("watch") => "watch",
        Method::GET if t.name.is_none() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if t.name.is_none() => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

async fn serve(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    segs: &[&str],
    query: &Query,
    body: Bytes,
) -> Result<Response, ApiError> {
    let types = || app.store.resource_types();
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
    match segs {
        ["version"] => return ok(discovery::version()),
        ["healthz" | "livez" | "readyz", ..] => {
            return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response());
        }
        ["api"] => return ok(discovery::api_versions()),
        ["api", v] => {
            return discovery::resource_list(&types(), "", v)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(ApiError::page_not_found);
        }
        ["apis"] => return ok(discovery::group_list(&types())),
        ["openapi", "v3"] => return ok(crate::openapi::index(&types())),
        ["openapi", "v3", rest @ ..] => {
            return crate::openapi::document(&types(), &rest.join("/"))
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(ApiError::page_not_found);
        }
        ["apis", g] => {
            return discovery::group(&types(), g)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(ApiError::page_not_found);
        }
        ["apis", g, v] => {
            return discovery::resource_list(&types(), g, v)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(ApiError::page_not_found);
        }
        _ => {}
    }
    // Legacy `/api/v1/watch/...` paths.
    let (segs, legacy_watch): (Vec<&str>, bool) = match segs {
        ["api", v, "watch", rest @ ..] => ([&["api", *v][..], rest].concat(), true),
        ["apis", g, v, "watch", rest @ ..] => ([&["apis", *g, *v][..], rest].concat(), true),
        _ => (segs.to_vec(), false),
    };
    let target = parse_target(&segs).ok_or_else(ApiError::page_not_found)?;
    let t = app
        .store
        .resource(&target.group, &target.version, &target.resource)
        .ok_or_else(ApiError::page_not_found)?;
    if target.namespace.is_some() && !t.namespaced {
        return Err(ApiError::page_not_found());
    }
    let verb = if legacy_watch {
        "watch"
    } else {
        verb_of(method, &target, query)
    };
    // A namespaced resource without a namespace is served for list and watch only.
    if t.namespaced && target.namespace.is_none() {
        match (verb, target.name.is_some()) {
            ("list" | "watch", false) => {}
            (_, true) => return Err(ApiError::page_not_found()),
            _ => {
                return Err(ApiError::method_not_allowed());
            }
        }
    }
    let fault_res = match &target.sub {
        Some(s) => format!("{}/{s}", t.plural),
        None => t.plural.clone(),
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let verdict = app.faults.check_from(verb, &fault_res, user_agent);
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    if let Some(e) = verdict.error {
        return Err(e);
    }
    let ctx = Ctx {
        app,
        t: &t,
        version: &target.version,
        ns: target.namespace.clone().unwrap_or_default(),
        output: output(headers),
        query,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    match (verb, target.name.as_deref(), target.sub.as_deref()) {
        ("watch", None, None) => watch::serve(&ctx),
        ("watch", Some(name), None) => {
            // `/watch/.../name`: a watch limited to one object.
            let q = Query(
                query
                    .0
                    .iter()
                    .cloned()
                    .chain([("fieldSelector".to_string(), format!("metadata.name={name}"))])
                    .collect(),
            );
            watch::serve(&Ctx { query: &q, ..ctx })
        }
        ("list", None, None) => ctx.list(),
        ("get", Some(name), None | Some("status")) => ctx.get(name),
        ("create", None, None) => ctx.create(&decode_body(&body, &content_type, t.custom)?),
        ("create", Some(name), Some("eviction")) if t.plural == "pods" && t.group.is_empty() => {
            let b = decode_body(&body, &content_type, t.custom)?;
            let v = eviction::evict(&app.store, &ctx.ns, name, &b)?;
            Ok(json_response(StatusCode::CREATED, &v))
        }
        ("update", Some(name), sub @ (None | Some("status" | "finalize"))) => {
            let sub = sub.filter(|s| *s == "status" && t.has_status());
            if target.sub.as_deref() == Some("status") && sub.is_none() {
                return Err(ApiError::page_not_found());
            }
            let v = app.store.update(
                &ctx.gr(),
                &ctx.ns,
                name,
                ctx.to_storage(decode_body(&body, &content_type, t.custom)?),
                sub,
                &ctx.write_opts(),
            )?;
            ctx.respond(StatusCode::OK, v)
        }
        ("patch", Some(name), sub @ (None | Some("status"))) => {
            if sub.is_some() && !t.has_status() {
                return Err(ApiError::page_not_found());
            }
            ctx.patch(name, sub, &content_type, &body)
        }
        ("create", Some(name), Some("binding")) if t.plural == "pods" && t.group.is_empty() => {
            let b = decode_body(&body, &content_type, t.custom)?;
            let v = crate::binding::bind(&app.store, &ctx.ns, name, &b)?;
            Ok(json_response(StatusCode::CREATED, &v))
        }
        ("get", Some(name), Some("scale")) if scale::has_scale(&t) => {
            let o = app.store.get(&ctx.gr(), &ctx.ns, name)?.value();
            Ok(json_response(StatusCode::OK, &scale::of(&o)))
        }
        ("update", Some(name), Some("scale")) if scale::has_scale(&t) => {
            let b = decode_body(&body, &content_type, t.custom)?;
            let v = scale::write(&app.store, &ctx.gr(), &ctx.ns, name, &b, &ctx.write_opts())?;
            Ok(json_response(StatusCode::OK, &v))
        }
        ("patch", Some(name), Some("scale")) if scale::has_scale(&t) => {
            let cur = scale::of(&app.store.get(&ctx.gr(), &ctx.ns, name)?.value());
            let p: Value = serde_json::from_slice(&body)
                .or_else(|_| serde_yaml::from_slice(&body))
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut patched = if content_type.starts_with("application/json-patch+json") {
                crate::patch::json(&cur, &p).map_err(|e| ApiError::new(422, "Invalid", e))?
            } else {
                crate::patch::merge(&cur, &p)
            };
            if p["metadata"]["resourceVersion"].is_null() {
                patched["metadata"]["resourceVersion"] = Value::Null;
            }
            let v = scale::write(&app.store, &ctx.gr(), &ctx.ns, name, &patched, &ctx.write_opts())?;
            Ok(json_response(StatusCode::OK, &v))
        }
        ("delete", Some(name), None) => ctx.delete(name, &body),
        ("deletecollection", None, None) => ctx.delete_collection(&body),
        (_, _, Some(_)) => Err(ApiError::page_not_found()),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// A request body as JSON: JSON, YAML, or protobuf for built-in kinds
/// (`custom`: the resource is a custom resource).
fn decode_body(body: &Bytes, content_type: &str, custom: bool) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    if content_type.contains("yaml") {
        return serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    if content_type.contains("protobuf") {
        // Custom resources have no protobuf form, as on a real server.
        if custom {
            return Err(ApiError::unsupported_media_type(
                content_type,
                &["application/json", "application/yaml"],
            ));
        }
        return crate::protobuf::decode(body);
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {e}",
            "object"
        ))
    })
}

pub(crate) struct Ctx<'a> {
    pub app: &'a App,
    pub t: &'a ResourceType,
    pub version: &'a str,
    pub ns: String,
    pub output: Output,
    pub query: &'a Query,
}

impl Ctx<'_> {
    fn write_opts(&self) -> WriteOptions {
        WriteOptions {
            dry_run: self.query.get("dryRun").is_some_and(|d| d == "All"),
            field_manager: self.query.get("fieldManager").map(str::to_string),
            strict: self.query.get("fieldValidation") == Some("Strict"),
        }
    }

    /// Where the objects live (events.k8s.io Events live with core Events).
    pub(crate) fn gr(&self) -> crate::store::GroupResource {
        if events::is_alias(self.t) {
            events::core_gr()
        } else {
            self.t.gr()
        }
    }

    pub(crate) fn needs_conversion(&self) -> bool {
        events::is_alias(self.t) || self.version != self.t.storage_version()
    }

    /// The object as served in the requested version (no conversion webhook:
    /// only apiVersion changes, as with strategy None).
    pub(crate) fn present(&self, mut v: Value) -> Value {
        if events::is_alias(self.t) {
            return events::from_core(v);
        }
        if self.needs_conversion() {
            v["apiVersion"] = json!(self.t.api_version(self.version));
        }
        v
    }

    /// A body sent in the requested version, as stored.
    fn to_storage(&self, mut v: Value) -> Value {
        if events::is_alias(self.t) {
            return events::to_core(v);
        }
        if v.is_object() && self.needs_conversion() {
            v["apiVersion"] = json!(self.t.api_version(self.t.storage_version()));
        }
        v
    }

    pub(crate) fn list_options(&self) -> Result<ListOptions, ApiError> {
        Ok(ListOptions {
            label_selector: LabelSelector::parse(self.query.get("labelSelector").unwrap_or(""))?,
            field_selector: {
                let mut f = FieldSelector::parse(self.query.get("fieldSelector").unwrap_or(""))?;
                if events::is_alias(self.t) {
                    f.0.iter_mut().for_each(|r| r.0 = events::core_field(&r.0));
                }
                f
            },
            limit: self.query.get("limit").and_then(|l| l.parse().ok()),
            continue_token: self.query.get("continue").filter(|c| !c.is_empty()).map(str::to_string),
        })
    }

    fn respond(&self, code: StatusCode, v: Value) -> Result<Response, ApiError> {
        let v = self.present(v);
        Ok(match self.output {
            Output::Object => json_response(code, &v),
            Output::Metadata => json_response(code, &table::partial(&v)),
            Output::Table => json_response(code, &self.table(std::slice::from_ref(&v), None, true)),
        })
    }

    pub(crate) fn table(&self, items: &[Value], list_meta: Option<Value>, headers: bool) -> Value {
        let include = self.query.get("includeObject").unwrap_or("Metadata");
        let rows: Vec<Value> = items
            .iter()
            .map(|o| table::row(self.t, self.version, o, include))
            .collect();
        let mut tbl = json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta.unwrap_or_else(|| json!({})),
            "columnDefinitions": if headers { json!(table::columns(self.t, self.version)) } else { json!([]) },
            "rows": rows,
        });
        if !headers {
            tbl.as_object_mut().unwrap().remove("columnDefinitions");
        }
        tbl
    }

    fn get(&self, name: &str) -> Result<Response, ApiError> {
        let s = self.app.store.get(&self.gr(), &self.ns, name)?;
        if self.output == Output::Object && !self.needs_conversion() {
            return Ok(bytes_response(StatusCode::OK, s.bytes.clone()));
        }
        self.respond(StatusCode::OK, s.value())
    }

    fn list(&self) -> Result<Response, ApiError> {
        let opts = self.list_options()?;
        let ns = (!self.ns.is_empty()).then_some(self.ns.as_str());
        let page = self.app.store.list(&self.gr(), ns, &opts)?;
        let mut lm = json!({"resourceVersion": page.resource_version.to_string()});
        if let Some(c) = &page.continue_token {
            lm["continue"] = json!(c);
        }
        if let Some(r) = page.remaining {
            lm["remainingItemCount"] = json!(r);
        }
        match self.output {
            Output::Table => {
                let items: Vec<Value> = page.items.iter().map(|s| self.present(s.value())).collect();
                Ok(json_response(StatusCode::OK, &self.table(&items, Some(lm), true)))
            }
            Output::Metadata => {
                let items: Vec<Value> = page.items.iter().map(|s| table::partial(&s.value())).collect();
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": lm, "items": items}),
                ))
            }
            Output::Object => Ok(bytes_response(StatusCode::OK, self.list_bytes(&page.items, &lm))),
        }
    }

    /// A list body assembled from stored bytes, without re-serialising items.
    fn list_bytes(&self, items: &[Arc<Stored>], lm: &Value) -> Bytes {
        let head = format!(
            "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
            self.t.list_kind,
            self.t.api_version(self.version),
            lm
        );
        let mut out = Vec::with_capacity(head.len() + items.iter().map(|s| s.bytes.len() + 1).sum::<usize>() + 2);
        out.extend_from_slice(head.as_bytes());
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if self.needs_conversion() {
                out.extend_from_slice(&serde_json::to_vec(&self.present(s.value())).unwrap_or_default());
            } else {
                out.extend_from_slice(&s.bytes);
            }
        }
        out.extend_from_slice(b"]}");
        Bytes::from(out)
    }

    fn create(&self, body: &Value) -> Result<Response, ApiError> {
        let v = self
            .app
            .store
            .create(&self.gr(), &self.ns, self.to_storage(body.clone()), &self.write_opts())?;
        self.respond(StatusCode::CREATED, v)
    }

    fn patch(&self, name: &str, sub: Option<&str>, content_type: &str, body: &Bytes) -> Result<Response, ApiError> {
        let ct = content_type.split(';').next().unwrap_or("").trim();
        let parse_json = || -> Result<Value, ApiError> {
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
        };
        let p = match ct {
            "application/merge-patch+json" => Patch::Merge(parse_json()?),
            "application/json-patch+json" => Patch::Json(parse_json()?),
            "application/strategic-merge-patch+json" => Patch::Strategic(parse_json()?),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                let v: Value = serde_yaml::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                Patch::Apply {
                    body: self.to_storage(v),
                    force: self.query.flag("force"),
                }
            }
            other => {
                return Err(ApiError::unsupported_media_type(
                    other,
                    &[
                        "application/json-patch+json",
                        "application/merge-patch+json",
                        "application/apply-patch+yaml",
                        "application/strategic-merge-patch+json",
                    ],
                ));
            }
        };
        if events::is_alias(self.t) {
            // Patch the events.k8s.io view, store it back as a core Event.
            let cur = self.present(self.app.store.get(&self.gr(), &self.ns, name)?.value());
            let patched = match p {
                Patch::Merge(x) | Patch::Strategic(x) => {
                    crate::patch::strategic(&cur, &x).map_err(|e| ApiError::bad_request(e.to_string()))?
                }
                Patch::Json(x) => crate::patch::json(&cur, &x).map_err(|e| ApiError::new(422, "Invalid", e))?,
                Patch::Apply { body, force } => {
                    let p = Patch::Apply {
                        body: events::to_core(body),
                        force,
                    };
                    let v = self
                        .app
                        .store
                        .patch(&self.gr(), &self.ns, name, p, sub, &self.write_opts())?;
                    return self.respond(StatusCode::OK, v);
                }
            };
            let v = self.app.store.update(
                &self.gr(),
                &self.ns,
                name,
                self.to_storage(patched),
                sub,
                &self.write_opts(),
            )?;
            return self.respond(StatusCode::OK, v);
        }
        let creating = matches!(p, Patch::Apply { .. }) && self.app.store.get(&self.gr(), &self.ns, name).is_err();
        let v = self
            .app
            .store
            .patch(&self.gr(), &self.ns, name, p, sub, &self.write_opts())?;
        self.respond(if creating { StatusCode::CREATED } else { StatusCode::OK }, v)
    }

    /// A DeleteOptions body: empty, JSON, or protobuf (told by its `k8s\0` prefix).
    fn delete_body(body: &Bytes) -> Result<Value, ApiError> {
        if body.is_empty() {
            Ok(json!({}))
        } else if body.starts_with(b"k8s\0") {
            crate::protobuf::decode(body)
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))
        }
    }

    fn delete_options(&self, body: &Bytes) -> Result<DeleteOptions, ApiError> {
        let v = Self::delete_body(body)?;
        let mut o = DeleteOptions::from_value(&v);
        if let Some(g) = self.query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()) {
            o.grace_period_seconds = Some(g);
        }
        if let Some(p) = self.query.get("propagationPolicy") {
            o.propagation_policy = Some(p.to_string());
        }
        if self.query.get("dryRun") == Some("All") {
            o.dry_run = true;
        }
        Ok(o)
    }

    fn delete(&self, name: &str, body: &Bytes) -> Result<Response, ApiError> {
        let opts = self.delete_options(body)?;
        let d = self.app.store.delete(&self.gr(), &self.ns, name, &opts)?;
        // The real server answers 202 only for a pending deletion that asked
        // for `orphanDependents: false`; otherwise 200, terminating or not.
        let orphan_false = Self::delete_body(body)
            .ok()
            .is_some_and(|b| b["orphanDependents"] == json!(false))
            || self.query.get("orphanDependents") == Some("false");
        let code = if !d.deleted && orphan_false {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        // Pods and custom resources answer with the object; other kinds with a
        // success Status once gone, as their registries do.
        if d.deleted && !(self.t.custom || self.t.plural == "pods" || self.t.plural == "namespaces") {
            let mut details = json!({"name": name, "kind": self.t.plural, "uid": d.object["metadata"]["uid"]});
            if !self.t.group.is_empty() {
                details["group"] = json!(self.t.group);
            }
            return Ok(json_response(
                code,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
            ));
        }
        self.respond(code, d.object)
    }

    fn delete_collection(&self, body: &Bytes) -> Result<Response, ApiError> {
        let opts = self.delete_options(body)?;
        let lo = self.list_options()?;
        let ns = (!self.ns.is_empty()).then_some(self.ns.as_str());
        let page = self.app.store.list(&self.gr(), ns, &lo)?;
        let mut items = Vec::new();
        for s in &page.items {
            if let Ok(d) = self.app.store.delete(&self.gr(), &s.namespace, &s.name, &opts) {
                items.push(self.present(d.object));
            }
        }
        Ok(json_response(
            StatusCode::OK,
            &json!({"kind": self.t.list_kind, "apiVersion": self.t.api_version(self.version), "metadata": {"resourceVersion": page.resource_version.to_string()}, "items": items}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_like_the_real_server() {
        let t = parse_target(&["api", "v1", "namespaces", "ns", "pods", "p", "eviction"]).unwrap();
        assert_eq!(
            (
                t.namespace.as_deref(),
                t.resource.as_str(),
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            (Some("ns"), "pods", Some("p"), Some("eviction"))
        );
        let t = parse_target(&["api", "v1", "namespaces", "ns"]).unwrap();
        assert_eq!(
            (t.namespace.as_deref(), t.resource.as_str(), t.name.as_deref()),
            (None, "namespaces", Some("ns"))
        );
        let t = parse_target(&["api", "v1", "namespaces", "ns", "status"]).unwrap();
        assert_eq!((t.resource.as_str(), t.sub.as_deref()), ("namespaces", Some("status")));
        assert_eq!(decode("a%3Db%2Cc+d"), "a=b,c d");
    }
}
