//! Counts of the API requests served, per client, verb, resource and status
//! code, so that benchmarks and tests can tell how many requests each client
//! (kubectl, drover, ...) made. The client is the User-Agent's product (the
//! text before the first `/`, `kubectl` for kubectl), or `-` without one
//! (kube-rs sends none unless configured to).

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;

/// What one count is of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RequestKey {
    /// The User-Agent's product, or `-`.
    pub agent: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`; `get` for discovery and other non-resource paths.
    pub verb: String,
    /// The resource plural with its subresource (`pods/eviction`), or the
    /// path for non-resource requests (`/apis/policy`).
    pub resource: String,
    /// The response's status code (200 for a watch that started).
    pub code: u16,
}

/// One row of [`RequestCounts::rows`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestCount {
    #[serde(flatten)]
    pub key: RequestKey,
    pub count: u64,
}

/// The counters of a server (`ApiServer::requests`, `GET /admin/requests`).
#[derive(Debug, Default)]
pub struct RequestCounts(Mutex<BTreeMap<RequestKey, u64>>);

impl RequestCounts {
    pub fn record(&self, key: RequestKey) {
        *self.0.lock().entry(key).or_insert(0) += 1;
    }

    /// Every count so far, sorted by agent, verb, resource and code.
    pub fn rows(&self) -> Vec<RequestCount> {
        self.0
            .lock()
            .iter()
            .map(|(k, n)| RequestCount {
                key: k.clone(),
                count: *n,
            })
            .collect()
    }

    /// Requests whose key satisfies `f`.
    pub fn count(&self, f: impl Fn(&RequestKey) -> bool) -> u64 {
        self.0.lock().iter().filter(|(k, _)| f(k)).map(|(_, n)| n).sum()
    }

    /// All requests of one agent.
    pub fn by_agent(&self, agent: &str) -> u64 {
        self.count(|k| k.agent == agent)
    }

    pub fn reset(&self) {
        self.0.lock().clear();
    }
}

/// The agent of a User-Agent header value: `kubectl/v1.32.4 (linux/amd64) ...` → `kubectl`.
pub fn agent_of(user_agent: Option<&str>) -> String {
    match user_agent.map(str::trim).filter(|s| !s.is_empty()) {
        Some(ua) => ua.split(['/', ' ']).next().unwrap_or(ua).to_string(),
        None => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_and_counts() {
        assert_eq!(
            agent_of(Some("kubectl/v1.32.4 (linux/amd64) kubernetes/abc")),
            "kubectl"
        );
        assert_eq!(agent_of(Some("drover-bench")), "drover-bench");
        assert_eq!(agent_of(None), "-");
        assert_eq!(agent_of(Some(" ")), "-");
        let c = RequestCounts::default();
        let key = |agent: &str, code| RequestKey {
            agent: agent.into(),
            verb: "create".into(),
            resource: "pods/eviction".into(),
            code,
        };
        c.record(key("kubectl", 201));
        c.record(key("kubectl", 429));
        c.record(key("kubectl", 429));
        c.record(key("-", 201));
        assert_eq!(c.by_agent("kubectl"), 3);
        assert_eq!(c.count(|k| k.code == 429), 2);
        assert_eq!(c.rows().len(), 3);
        c.reset();
        assert_eq!(c.count(|_| true), 0);
    }
}
