//! What this replica has in flight: node steps running as their own tasks,
//! and its own progress writes the node cache has not shown yet. Both are
//! hints that save time, never the record: the API holds the rollout, every
//! progress write is a compare-and-swap against it, and a restarted drover
//! starts with both empty and loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_api::names::annotation;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use tokio::sync::{Notify, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// How long a write of ours may stay unseen in the cache before we stop
/// assuming it: past this, the cache is believed again.
const UNSEEN_WRITE_LIMIT: Duration = Duration::from_secs(30);

struct Running {
    upgrade: String,
    abort: Option<AbortHandle>,
}

struct Written {
    value: Option<String>,
    /// Annotations the same patch set (a verified version).
    also: Vec<(String, String)>,
    at: Instant,
}

pub struct Inflight {
    /// The nodes each ClusterUpgrade's last pass saw, to say which joined or left.
    seen: Mutex<HashMap<String, drover_plan::membership::Seen>>,
    running: Mutex<HashMap<String, Running>>,
    written: Mutex<HashMap<String, Written>>,
    idle: Notify,
    /// Node steps performing at once.
    pub permits: Arc<Semaphore>,
}

/// A node's claim on running one step; released when dropped (the task ends or is aborted).
pub struct Claim {
    inflight: Arc<Inflight>,
    node: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut running = self.inflight.running.lock().expect("lock");
        running.remove(&self.node);
        if running.is_empty() {
            self.inflight.idle.notify_waiters();
        }
    }
}

impl Inflight {
    pub fn new(concurrency: usize) -> Arc<Self> {
        Arc::new(Inflight {
            seen: Mutex::default(),
            running: Mutex::default(),
            written: Mutex::default(),
            idle: Notify::new(),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        })
    }

    /// Record what `upgrade`'s pass saw; hand back what its last pass saw.
    pub fn swap_seen(&self, upgrade: &str, now: drover_plan::membership::Seen) -> drover_plan::membership::Seen {
        self.seen
            .lock()
            .expect("lock")
            .insert(upgrade.to_string(), now)
            .unwrap_or_default()
    }

    /// Stop the step running on `node`, if any (the node was deleted).
    pub fn abort_node(&self, node: &str) {
        if let Some(r) = self.running.lock().expect("lock").get(node)
            && let Some(a) = &r.abort
        {
            a.abort();
        }
    }

    /// Claim `node` for a step of `upgrade`, unless a step there is running already.
    pub fn claim(self: &Arc<Self>, node: &str, upgrade: &str) -> Option<Claim> {
        let mut running = self.running.lock().expect("lock");
        if running.contains_key(node) {
            return None;
        }
        running.insert(
            node.to_string(),
            Running {
                upgrade: upgrade.to_string(),
                abort: None,
            },
        );
        Some(Claim {
            inflight: self.clone(),
            node: node.to_string(),
        })
    }

    pub fn set_abort(&self, node: &str, handle: AbortHandle) {
        if let Some(r) = self.running.lock().expect("lock").get_mut(node) {
            r.abort = Some(handle);
        }
    }

    /// Steps running for `upgrade`.
    pub fn running_for(&self, upgrade: &str) -> usize {
        self.running
            .lock()
            .expect("lock")
            .values()
            .filter(|r| r.upgrade == upgrade)
            .count()
    }

    pub fn running(&self) -> usize {
        self.running.lock().expect("lock").len()
    }

    /// Stop every step at once (leadership is lost: acting further is unsafe).
    pub fn abort_all(&self) {
        for r in self.running.lock().expect("lock").values() {
            if let Some(a) = &r.abort {
                a.abort();
            }
        }
    }

    /// Wait until no step runs, at most `limit`; false if some still run.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            if self.running() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.running() == 0;
            }
        }
    }

    /// Remember that we wrote `value` (None: removed) as `node`'s progress.
    pub fn wrote(&self, node: &str, value: Option<String>) {
        self.wrote_with(node, value, Vec::new());
    }

    /// [`Inflight::wrote`], with the annotations the same patch set.
    pub fn wrote_with(&self, node: &str, value: Option<String>, also: Vec<(String, String)>) {
        self.written.lock().expect("lock").insert(
            node.to_string(),
            Written {
                value,
                also,
                at: Instant::now(),
            },
        );
    }

    /// Forget our write to `node` (someone else changed the record since).
    pub fn forget(&self, node: &str) {
        self.written.lock().expect("lock").remove(node);
    }

    /// `n` as the cache shows it, or with our newer progress write if the
    /// cache has not shown it yet: a pass must not plan over a record it
    /// already replaced (it would start nodes beyond the budget, or repeat a step).
    pub fn overlay(&self, n: Arc<Node>) -> Arc<Node> {
        let name = n.name_any();
        let mut written = self.written.lock().expect("lock");
        let Some(w) = written.get(&name) else {
            return n;
        };
        let cached = n.annotations().get(annotation::PROGRESS);
        if cached == w.value.as_ref() || w.at.elapsed() > UNSEEN_WRITE_LIMIT {
            written.remove(&name);
            return n;
        }
        let mut node = (*n).clone();
        let annotations = node.annotations_mut();
        match &w.value {
            Some(v) => {
                annotations.insert(annotation::PROGRESS.to_string(), v.clone());
            }
            None => {
                annotations.remove(annotation::PROGRESS);
            }
        }
        for (k, v) in &w.also {
            annotations.insert(k.clone(), v.clone());
        }
        Arc::new(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(progress: Option<&str>) -> Arc<Node> {
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        if let Some(p) = progress {
            n.annotations_mut().insert(annotation::PROGRESS.into(), p.into());
        }
        Arc::new(n)
    }

    fn progress(n: &Node) -> Option<&String> {
        n.annotations().get(annotation::PROGRESS)
    }

    #[tokio::test]
    async fn our_write_shows_until_the_cache_catches_up() {
        let f = Inflight::new(4);
        f.wrote("n1", Some("b".into()));
        assert_eq!(progress(&f.overlay(node(Some("a")))).map(String::as_str), Some("b"));
        assert_eq!(progress(&f.overlay(node(None))).map(String::as_str), Some("b"));
        // The cache shows it: the overlay is dropped, and a later cache value wins.
        assert_eq!(progress(&f.overlay(node(Some("b")))).map(String::as_str), Some("b"));
        assert_eq!(progress(&f.overlay(node(Some("c")))).map(String::as_str), Some("c"));
        f.wrote("n1", None);
        assert_eq!(progress(&f.overlay(node(Some("c")))), None);
        f.forget("n1");
        assert_eq!(progress(&f.overlay(node(Some("c")))).map(String::as_str), Some("c"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unseen_write_is_not_assumed_forever() {
        let f = Inflight::new(4);
        f.wrote("n1", Some("b".into()));
        tokio::time::advance(UNSEEN_WRITE_LIMIT + Duration::from_secs(1)).await;
        assert_eq!(progress(&f.overlay(node(Some("a")))).map(String::as_str), Some("a"));
    }

    #[tokio::test]
    async fn one_step_per_node_and_idle_when_all_released() {
        let f = Inflight::new(4);
        let a = f.claim("n1", "u").expect("free");
        assert!(f.claim("n1", "u").is_none(), "a second step on a busy node");
        let b = f.claim("n2", "v").expect("free");
        assert_eq!((f.running_for("u"), f.running_for("v"), f.running()), (1, 1, 2));
        assert!(!f.wait_idle(Duration::from_millis(10)).await);
        drop(a);
        let waiter = {
            let f = f.clone();
            tokio::spawn(async move { f.wait_idle(Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        drop(b);
        assert!(waiter.await.expect("joined"));
        assert!(f.claim("n1", "u").is_some());
    }
}
