//! One watch-fed cache of the cluster's PodDisruptionBudgets, shared by every
//! drain of a [`KubeNodeOps`](crate::KubeNodeOps): a drain round reads
//! allowances here instead of listing every budget, and wakes when a budget it
//! waits on changes. The server stays the authority (a 429 still only
//! schedules a retry); the cache keeps drover from sending evictions that
//! would be refused.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The longest a disruption is reserved for an eviction in flight (it may
/// queue behind the client's rate limit).
const HOLD_IN_FLIGHT: Duration = Duration::from_secs(30);
/// The longest an accepted eviction is held against its budget while the
/// cache does not show it yet (its `status.disruptedPods` entry).
const HOLD_UNSEEN: Duration = Duration::from_secs(5);
/// How long a pod is remembered after it left a budget's `disruptedPods`,
/// so a drain that looks late still sees its eviction was counted.
const REMEMBER: Duration = Duration::from_secs(60);

/// `namespace/name` of a budget.
pub(crate) fn budget_key(b: &PodDisruptionBudget) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

/// `status.disruptionsAllowed` as the object says.
fn allowed(b: &PodDisruptionBudget) -> i32 {
    b.status.as_ref().map(|s| s.disruptions_allowed).unwrap_or(0)
}

/// The cache, started on first use so that a `KubeNodeOps` that never drains
/// (`drover plan`) opens no watch; the watch ends when this is dropped.
pub struct BudgetCache {
    client: Client,
    running: OnceLock<Running>,
}

struct Running {
    store: Store<PodDisruptionBudget>,
    /// The number of watch events applied so far, bumped after each.
    events: watch::Receiver<u64>,
    track: Arc<Mutex<Track>>,
    task: JoinHandle<()>,
}

/// What the store alone cannot say: which evictions in flight or accepted it
/// does not show yet, so that no drain spends the same disruption twice.
#[derive(Default)]
struct Track {
    /// Per budget key: each pod in its `status.disruptedPods`, with the number
    /// of the last event that showed it and when.
    disrupted: HashMap<String, HashMap<String, (u64, Instant)>>,
    /// Per budget key: evictions in flight, or accepted but perhaps not shown yet.
    unseen: HashMap<String, Vec<Unseen>>,
    /// A relist's budgets, applied together at its end as the store applies them.
    relist: Vec<(String, Vec<String>)>,
    last_error: Option<String>,
}

struct Unseen {
    pod: String,
    /// The event number read before the eviction was decided.
    after: u64,
    until: Instant,
}

fn lock(m: &Mutex<Track>) -> MutexGuard<'_, Track> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn disrupted_pods(b: &PodDisruptionBudget) -> Vec<String> {
    b.status
        .as_ref()
        .and_then(|s| s.disrupted_pods.as_ref())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

impl Track {
    fn observe(&mut self, event: &watcher::Event<PodDisruptionBudget>, n: u64) {
        match event {
            watcher::Event::Apply(b) => self.saw(budget_key(b), &disrupted_pods(b), n),
            watcher::Event::Delete(b) => {
                let key = budget_key(b);
                self.disrupted.remove(&key);
                self.unseen.remove(&key);
            }
            watcher::Event::Init => self.relist.clear(),
            watcher::Event::InitApply(b) => self.relist.push((budget_key(b), disrupted_pods(b))),
            watcher::Event::InitDone => {
                let relist = std::mem::take(&mut self.relist);
                let keys: BTreeSet<&String> = relist.iter().map(|(k, _)| k).collect();
                self.disrupted.retain(|k, _| keys.contains(k));
                self.unseen.retain(|k, _| keys.contains(k));
                for (key, pods) in &relist {
                    self.saw(key.clone(), pods, n);
                }
            }
        }
    }

    fn saw(&mut self, key: String, pods: &[String], n: u64) {
        let now = Instant::now();
        let seen = self.disrupted.entry(key).or_default();
        for p in pods {
            seen.insert(p.clone(), (n, now));
        }
        seen.retain(|p, (_, at)| pods.contains(p) || now.duration_since(*at) < REMEMBER);
    }

    /// Evictions under `key` in flight or accepted that the cache does not show yet.
    fn unseen_count(&mut self, key: &str) -> i32 {
        let now = Instant::now();
        let Some(list) = self.unseen.get_mut(key) else {
            return 0;
        };
        let shown = self.disrupted.get(key);
        // Kept while not expired and no event since its decision shows the pod.
        list.retain(|u| now < u.until && shown.and_then(|m| m.get(&u.pod)).is_none_or(|(n, _)| *n <= u.after));
        let left = list.len() as i32;
        if left == 0 {
            self.unseen.remove(key);
        }
        left
    }
}

impl BudgetCache {
    pub fn new(client: Client) -> Self {
        BudgetCache {
            client,
            running: OnceLock::new(),
        }
    }

    /// Starts the watch on first use; needs a Tokio runtime.
    fn running(&self) -> &Running {
        self.running.get_or_init(|| {
            let api: Api<PodDisruptionBudget> = Api::all(self.client.clone());
            let (store, writer) = reflector::store();
            let (tx, events) = watch::channel(0u64);
            let track = Arc::new(Mutex::new(Track::default()));
            let t = track.clone();
            let task = tokio::spawn(async move {
                let mut stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
                    .default_backoff()
                    .boxed();
                let mut n = 0;
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(e) => {
                            n += 1;
                            let mut t = lock(&t);
                            t.observe(&e, n);
                            t.last_error = None;
                            // A relist changes the store only at its end.
                            if matches!(e, watcher::Event::Init | watcher::Event::InitApply(_)) {
                                continue;
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "PodDisruptionBudget watch");
                            lock(&t).last_error = Some(crate::error::watch_text(&e));
                            continue;
                        }
                    }
                    // After the store and the tracking both show the event.
                    tx.send_replace(n);
                }
            });
            Running {
                store,
                events,
                track,
                task,
            }
        })
    }

    /// Notified after every budget event; its value numbers the events.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.running().events.clone()
    }

    /// Waits (until `until` at the latest) for the first full list.
    pub async fn ready(&self, until: Instant) -> std::result::Result<(), String> {
        let r = self.running();
        match tokio::time::timeout_at(until, r.store.wait_until_ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the PodDisruptionBudget watch has stopped".into()),
            Err(_) => Err(match lock(&r.track).last_error.clone() {
                Some(e) => format!("waiting for the PodDisruptionBudget cache to sync; the watch failed: {e}"),
                None => "waiting for the PodDisruptionBudget cache to sync".into(),
            }),
        }
    }

    /// The budgets in `namespaces`, each with the disruptions it allows now
    /// less the accepted evictions the cache does not show yet.
    pub fn in_namespaces(&self, namespaces: &BTreeSet<String>) -> Vec<(Arc<PodDisruptionBudget>, i32)> {
        let r = self.running();
        // Tracking before the store: the store is then at least as new.
        let unseen: HashMap<String, i32> = {
            let mut t = lock(&r.track);
            let keys: Vec<String> = t.unseen.keys().cloned().collect();
            keys.into_iter()
                .map(|k| {
                    let n = t.unseen_count(&k);
                    (k, n)
                })
                .collect()
        };
        let mut budgets: Vec<(String, Arc<PodDisruptionBudget>, i32)> = r
            .store
            .state_filter(|b| b.namespace().is_some_and(|ns| namespaces.contains(&ns)))
            .into_iter()
            .map(|b| {
                let key = budget_key(&b);
                let a = (allowed(&b) - unseen.get(&key).copied().unwrap_or(0)).max(0);
                (key, b, a)
            })
            .collect();
        // In the order a list gives, for stable messages.
        budgets.sort_by(|x, y| x.0.cmp(&y.0));
        budgets.into_iter().map(|(_, b, a)| (b, a)).collect()
    }

    /// One budget by `namespace/name`: its resourceVersion and what it allows
    /// (as [`Self::in_namespaces`]); None if it is gone.
    pub fn get(&self, key: &str) -> Option<(Option<String>, i32)> {
        let r = self.running();
        let (ns, name) = key.split_once('/')?;
        let n = lock(&r.track).unseen_count(key);
        let b = r.store.get(&ObjectRef::new(name).within(ns))?;
        Some((b.resource_version(), (allowed(&b) - n).max(0)))
    }

    /// Takes one disruption of budget `key` for evicting `pod`, if it allows
    /// one: shared by every drain, so concurrent drains do not all spend the
    /// same one. `after` is the event number read before the round read the
    /// cache. Otherwise returns what the budget allows (0).
    pub fn reserve(&self, key: &str, pod: &str, after: u64) -> std::result::Result<(), i32> {
        let r = self.running();
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let mut t = lock(&r.track);
        let n = t.unseen_count(key);
        let Some(b) = r.store.get(&ObjectRef::new(name).within(ns)) else {
            // Gone from the cache: the server decides.
            return Ok(());
        };
        let left = allowed(&b) - n;
        if left <= 0 {
            return Err(left.max(0));
        }
        t.unseen.entry(key.to_string()).or_default().push(Unseen {
            pod: pod.to_string(),
            after,
            until: Instant::now() + HOLD_IN_FLIGHT,
        });
        Ok(())
    }

    /// The answer to a reserved eviction: a disruption the server spent stays
    /// counted until the cache shows it; any other answer frees it.
    pub fn settle(&self, key: &str, pod: &str, spent: bool) {
        let mut t = lock(&self.running().track);
        let Some(list) = t.unseen.get_mut(key) else {
            return;
        };
        if let Some(i) = list.iter().position(|u| u.pod == pod) {
            if spent {
                list[i].until = Instant::now() + HOLD_UNSEEN;
            } else {
                list.swap_remove(i);
            }
        }
    }
}

impl Drop for BudgetCache {
    fn drop(&mut self) {
        if let Some(r) = self.running.get() {
            r.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watcher::Event;

    fn pdb(disrupted: &[&str]) -> PodDisruptionBudget {
        let pods: serde_json::Map<String, serde_json::Value> = disrupted
            .iter()
            .map(|p| (p.to_string(), "2026-01-01T00:00:00Z".into()))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1,
                       "disruptedPods": pods}
        }))
        .unwrap()
    }

    fn evicted(t: &mut Track, pod: &str, after: u64) {
        t.unseen.entry("default/web".into()).or_default().push(Unseen {
            pod: pod.into(),
            after,
            until: Instant::now() + HOLD_UNSEEN,
        });
    }

    #[test]
    fn an_eviction_counts_until_a_later_event_shows_its_pod() {
        let mut t = Track::default();
        t.observe(&Event::Init, 1);
        // A pod of the same name, disrupted before this eviction was decided.
        t.observe(&Event::InitApply(pdb(&["web-1"])), 2);
        t.observe(&Event::InitDone, 3);
        evicted(&mut t, "web-1", 3);
        assert_eq!(t.unseen_count("default/web"), 1);
        t.observe(&Event::Apply(pdb(&[])), 4);
        assert_eq!(t.unseen_count("default/web"), 1, "a write that does not show it");
        t.observe(&Event::Apply(pdb(&["web-1"])), 5);
        assert_eq!(t.unseen_count("default/web"), 0);
        // The disruption controller drops the entry once the pod terminates; it stays shown.
        evicted(&mut t, "web-2", 5);
        t.observe(&Event::Apply(pdb(&["web-2"])), 6);
        t.observe(&Event::Apply(pdb(&[])), 7);
        assert_eq!(t.unseen_count("default/web"), 0);
    }

    #[test]
    fn a_relist_shows_an_eviction_only_once_the_store_has_it() {
        let mut t = Track::default();
        t.observe(&Event::Init, 1);
        t.observe(&Event::InitDone, 2);
        evicted(&mut t, "web-1", 2);
        t.observe(&Event::Init, 3);
        t.observe(&Event::InitApply(pdb(&["web-1"])), 4);
        assert_eq!(
            t.unseen_count("default/web"),
            1,
            "the store swaps a relist in at its end"
        );
        t.observe(&Event::InitDone, 5);
        assert_eq!(t.unseen_count("default/web"), 0);
    }

    #[test]
    fn an_eviction_the_cache_never_shows_stops_counting() {
        let mut t = Track::default();
        t.unseen.entry("default/web".into()).or_default().push(Unseen {
            pod: "web-1".into(),
            after: 0,
            until: Instant::now(),
        });
        assert_eq!(t.unseen_count("default/web"), 0);
        assert!(t.unseen.is_empty());
    }
}
