//! Fault injection: a share of requests answered 500/429/503, added latency,
//! matched by verb and resource. Switchable at run time, in-process or
//! through `/admin/faults`.

use crate::error::ApiError;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One fault rule. Empty `verb`/`resource` match everything.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    /// Plural resource name, optionally with `/subresource` (`pods/eviction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Status code of injected errors: 500, 429 or 503.
    #[serde(default)]
    pub code: u16,
    /// Share of matching requests that fail, 0.0 to 1.0.
    #[serde(default)]
    pub rate: f64,
    /// Latency added to every matching request.
    #[serde(default)]
    pub latency_ms: u64,
    /// Only requests whose `User-Agent` contains this (one client of several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl FaultRule {
    fn matches(&self, verb: &str, resource: &str, user_agent: &str) -> bool {
        self.verb.as_deref().is_none_or(|v| v == verb)
            && self.resource.as_deref().is_none_or(|r| r == resource)
            && self.user_agent.as_deref().is_none_or(|u| user_agent.contains(u))
    }
}

/// The active fault rules.
#[derive(Debug, Default)]
pub struct Faults {
    rules: RwLock<Vec<FaultRule>>,
}

/// What to do to one request.
#[derive(Debug, Default)]
pub struct Verdict {
    pub delay: Duration,
    pub error: Option<ApiError>,
}

fn chance() -> f64 {
    let b = uuid::Uuid::new_v4();
    let x = u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap_or([0; 8]));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl Faults {
    pub fn set(&self, rules: Vec<FaultRule>) {
        *self.rules.write() = rules;
    }
    pub fn add(&self, rule: FaultRule) {
        self.rules.write().push(rule);
    }
    pub fn clear(&self) {
        self.rules.write().clear();
    }
    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.read().clone()
    }

    pub fn check(&self, verb: &str, resource: &str) -> Verdict {
        self.check_from(verb, resource, "")
    }

    /// What to do to one request from a client that says it is `user_agent`.
    pub fn check_from(&self, verb: &str, resource: &str, user_agent: &str) -> Verdict {
        let rules = self.rules.read();
        let mut v = Verdict::default();
        for r in rules.iter().filter(|r| r.matches(verb, resource, user_agent)) {
            v.delay += Duration::from_millis(r.latency_ms);
            if v.error.is_none() && r.rate > 0.0 && chance() < r.rate {
                v.error = Some(match r.code {
                    429 => {
                        let mut e = ApiError::too_many_requests(
                            "the server has received too many requests and has asked us to try again later",
                            serde_json::json!([]),
                        );
                        e.details = Some(serde_json::json!({"retryAfterSeconds": 1}));
                        e
                    }
                    503 => ApiError::service_unavailable("the server is currently unable to handle the request"),
                    _ => ApiError::internal("injected fault"),
                });
            }
        }
        v
    }
}
