//! Watch over HTTP: newline-delimited `{"type","object"}` events on a chunked
//! 200 response, bookmarks, `sendInitialEvents`, `timeoutSeconds`, and the
//! `410 Expired` ERROR event for a too-old resourceVersion.

use super::{Ctx, Output, bytes_response};
use crate::error::ApiError;
use crate::store::{EventType, ListOptions, ResourceType, Stored};
use crate::table;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

struct Encoder {
    t: ResourceType,
    version: String,
    output: Output,
    include: String,
    headers_sent: bool,
}

impl Encoder {
    fn event(&mut self, type_: &str, s: &Stored) -> Bytes {
        let alias = crate::events::is_alias(&self.t);
        let convert = alias || self.version != self.t.storage_version();
        if self.output == Output::Object && !convert {
            let mut out = Vec::with_capacity(s.bytes.len() + 32);
            out.extend_from_slice(b"{\"type\":\"");
            out.extend_from_slice(type_.as_bytes());
            out.extend_from_slice(b"\",\"object\":");
            out.extend_from_slice(&s.bytes);
            out.extend_from_slice(b"}\n");
            return Bytes::from(out);
        }
        let mut v = s.value();
        if alias {
            v = crate::events::from_core(v);
        } else if convert {
            v["apiVersion"] = json!(self.t.api_version(&self.version));
        }
        let obj = match self.output {
            Output::Object => v,
            Output::Metadata => table::partial(&v),
            Output::Table => {
                let mut tbl = json!({
                    "kind": "Table",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"resourceVersion": s.rv.to_string()},
                    "rows": [table::row(&self.t, &self.version, &v, &self.include)],
                });
                if !self.headers_sent {
                    tbl["columnDefinitions"] = json!(table::columns(&self.t, &self.version));
                    self.headers_sent = true;
                }
                tbl
            }
        };
        line(type_, &obj)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": self.t.kind, "apiVersion": self.t.api_version(&self.version), "metadata": meta}),
        )
    }
}

fn line(type_: &str, obj: &Value) -> Bytes {
    let mut b = serde_json::to_vec(&json!({"type": type_, "object": obj})).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let mut r = bytes_response(StatusCode::OK, Bytes::new());
    *r.body_mut() = Body::from_stream(stream);
    r
}

fn matches(opts: &ListOptions, ns: &str, s: &Stored) -> bool {
    (ns.is_empty() || &*s.namespace == ns)
        && (opts.label_selector.is_empty() || opts.label_selector.matches(&s.labels))
        && (opts.field_selector.is_empty() || opts.field_selector.matches_with(|p| s.field(p)))
}

pub(super) fn serve(ctx: &Ctx) -> Result<Response, ApiError> {
    let opts = ctx.list_options()?;
    let rv = ctx.query.get("resourceVersion").filter(|r| !r.is_empty());
    let send_initial = ctx.query.get("sendInitialEvents") == Some("true");
    let bookmarks = ctx.query.get("allowWatchBookmarks") == Some("true");
    let timeout = ctx
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let from = match rv {
        None | Some("0") => None,
        Some(_) if send_initial => None,
        Some(r) => Some(
            r.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {r}")))?,
        ),
    };
    let mut enc = Encoder {
        t: ctx.t.clone(),
        version: ctx.version.to_string(),
        output: ctx.output,
        include: ctx.query.get("includeObject").unwrap_or("Metadata").to_string(),
        headers_sent: false,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let (initial, mut stream) = match ctx.app.store.watch(&ctx.gr(), from) {
        Ok(x) => x,
        Err(e) if e.code == 410 => {
            let _ = tx.try_send(line("ERROR", &e.status()));
            return Ok(stream_response(rx));
        }
        Err(e) => return Err(e),
    };
    let ns = ctx.ns.clone();
    let mut closer = ctx.app.store.closer();
    closer.borrow_and_update();
    let interval = ctx.app.bookmark_interval;
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        for s in initial.iter().filter(|s| matches(&opts, &ns, s)) {
            if tx.send(enc.event("ADDED", s)).await.is_err() {
                return;
            }
        }
        if send_initial && bookmarks {
            let _ = tx.send(enc.bookmark(stream.last_rv(), true)).await;
        }
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                ev = stream.next() => {
                    let ev = match ev {
                        None => return,
                        Some(Err(e)) => {
                            let _ = tx.send(line("ERROR", &e.status())).await;
                            return;
                        }
                        Some(Ok(ev)) => ev,
                    };
                    let now = matches(&opts, &ns, &ev.object);
                    let before = ev.prev.as_ref().is_some_and(|p| matches(&opts, &ns, p));
                    let ty = match (ev.type_, before, now) {
                        (EventType::Added, _, true) => "ADDED",
                        (EventType::Modified, true, true) => "MODIFIED",
                        (EventType::Modified, false, true) => "ADDED",
                        (EventType::Modified, true, false) => "DELETED",
                        (EventType::Deleted, _, true) => "DELETED",
                        _ => continue,
                    };
                    let obj: &Arc<Stored> = &ev.object;
                    if tx.send(enc.event(ty, obj)).await.is_err() {
                        return;
                    }
                }
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(enc.bookmark(stream.last_rv(), false)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = closer.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(stream_response(rx))
}
