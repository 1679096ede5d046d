//! Evictions through `pods/eviction`, on a request path without the
//! client's built-in retry, so a 429 (a PodDisruptionBudget says no) reaches
//! drover at once and drover decides when to try again.

use http::{Method, Request};
use kube::Client;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::error::{NodeOpsError, Result};

/// What one eviction request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evicted {
    /// Accepted: the pod is terminating (or was deleted).
    Accepted,
    /// 429: a disruption budget allows no disruption now.
    Blocked { message: String },
    /// 404: the pod is already gone.
    Gone,
    /// 500 when the pod matches several budgets, or any other refusal.
    Refused { status: u16, message: String },
}

/// Sends evictions with the policy version the server offers.
pub struct Evictor {
    /// A client whose config has `default_retry = false`.
    client: Client,
    policy_version: OnceCell<&'static str>,
}

impl Evictor {
    pub fn new(client: Client) -> Self {
        Evictor {
            client,
            policy_version: OnceCell::new(),
        }
    }

    async fn raw(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json")).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(bytes.into())
            .map_err(|e| NodeOpsError::Request(e.to_string()))?;
        let res = self.client.send(req).await?;
        let status = res.status().as_u16();
        let body = res.into_body().collect_bytes().await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// `policy/v1` where served, else `policy/v1beta1`, as kubectl chooses.
    pub async fn policy_version(&self) -> Result<&'static str> {
        self.policy_version
            .get_or_try_init(|| async {
                let (status, body) = self.raw(Method::GET, "/apis/policy", None).await?;
                let served = |v: &str| {
                    body["versions"]
                        .as_array()
                        .is_some_and(|vs| vs.iter().any(|x| x["version"] == v))
                };
                Ok(match status {
                    200 if served("v1") => "v1",
                    200 if served("v1beta1") => "v1beta1",
                    _ => "v1",
                })
            })
            .await
            .copied()
    }

    /// Evict one pod. The body is built here so that the grace period and
    /// the UID precondition really reach the server.
    pub async fn evict(&self, namespace: &str, name: &str, uid: Option<&str>, grace: Option<i64>) -> Result<Evicted> {
        let version = self.policy_version().await?;
        let mut delete_options = json!({});
        if let Some(g) = grace {
            delete_options["gracePeriodSeconds"] = json!(g);
        }
        if let Some(uid) = uid {
            delete_options["preconditions"] = json!({"uid": uid});
        }
        let body = json!({
            "apiVersion": format!("policy/{version}"),
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
            "deleteOptions": delete_options,
        });
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/eviction");
        let (status, reply) = self.raw(Method::POST, &path, Some(&body)).await?;
        let message = || {
            let m = reply["message"].as_str().unwrap_or_default().to_string();
            let causes: Vec<&str> = reply["details"]["causes"]
                .as_array()
                .map(|cs| cs.iter().filter_map(|c| c["message"].as_str()).collect())
                .unwrap_or_default();
            if causes.is_empty() {
                m
            } else {
                format!("{m} ({})", causes.join("; "))
            }
        };
        Ok(match status {
            200 | 201 => Evicted::Accepted,
            404 => Evicted::Gone,
            // A UID precondition failing means the pod was replaced: this one is gone.
            409 => Evicted::Gone,
            429 => Evicted::Blocked { message: message() },
            s => Evicted::Refused {
                status: s,
                message: message(),
            },
        })
    }
}
