//! The simulation's own HTTP endpoints, served next to the Kubernetes API so
//! tests that run kubesim as a separate process can read the recorder and
//! steer the simulation:
//!
//! - `GET /kubesim/recorder`, `POST /kubesim/recorder/reset`
//! - `GET /kubesim/status`
//! - `GET|PUT|POST|DELETE /kubesim/faults` (a list, one fault, or none)
//! - `PUT /kubesim/nodes/{name}/ready` with body `true` or `false`
//! - `GET|PUT /kubesim/speed` with body `{"speed": 60}`

use super::{Fault, SimHandle};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

fn bad(msg: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg.to_string()}))).into_response()
}

pub fn routes(h: SimHandle) -> axum::Router {
    axum::Router::new()
        .route(
            "/kubesim/recorder",
            get(|State(h): State<SimHandle>| async move { Json(h.report()) }),
        )
        .route(
            "/kubesim/recorder/reset",
            post(|State(h): State<SimHandle>| async move {
                h.recorder().reset();
                Json(h.report())
            }),
        )
        .route(
            "/kubesim/status",
            get(|State(h): State<SimHandle>| async move {
                match h.status().await {
                    Ok(s) => Json(json!(s)).into_response(),
                    Err(e) => bad(e),
                }
            }),
        )
        .route(
            "/kubesim/faults",
            get(|State(h): State<SimHandle>| async move { Json(h.faults()) })
                .put(|State(h): State<SimHandle>, Json(fs): Json<Vec<Fault>>| async move {
                    h.clear_faults();
                    for f in fs {
                        if let Err(e) = h.set_fault(f) {
                            return bad(e);
                        }
                    }
                    Json(h.faults()).into_response()
                })
                .post(|State(h): State<SimHandle>, Json(f): Json<Fault>| async move {
                    match h.set_fault(f) {
                        Ok(()) => Json(h.faults()).into_response(),
                        Err(e) => bad(e),
                    }
                })
                .delete(|State(h): State<SimHandle>| async move {
                    h.clear_faults();
                    Json(h.faults())
                }),
        )
        .route(
            "/kubesim/nodes/{name}/ready",
            put(
                |State(h): State<SimHandle>, Path(name): Path<String>, Json(ready): Json<bool>| async move {
                    match h.set_node_ready(&name, ready).await {
                        Ok(()) => Json(json!({"node": name, "ready": ready})).into_response(),
                        Err(e) => (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response(),
                    }
                },
            ),
        )
        .route(
            "/kubesim/speed",
            get(|State(h): State<SimHandle>| async move { Json(json!({"speed": h.speed()})) }).put(
                |State(h): State<SimHandle>, Json(v): Json<Value>| async move {
                    match v["speed"].as_f64().filter(|s| s.is_finite() && *s > 0.0) {
                        Some(s) => {
                            h.set_speed(s);
                            Json(json!({"speed": h.speed()})).into_response()
                        }
                        None => bad("body must be {\"speed\": <positive number>}"),
                    }
                },
            ),
        )
        .with_state(h)
}
