//! One resource's objects, the indexes lists and evictions use, and its
//! bounded watch history. The store writes through [`Table::commit`], which
//! keeps every index and the history in step with the objects.

use super::options::ListOptions;
use super::selector::LabelSelector;
use super::stored::Stored;
use super::strategy::Indexes;
use super::watch::{EventType, WatchEvent};
use crate::error::ApiError;
use crate::meta::metadata_mut;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

/// An object's key in its table: namespace ("" when cluster-scoped) and name.
pub(super) type Key = (String, String);

/// A page of a list.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Arc<Stored>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

pub(super) struct Table {
    pub(super) objects: BTreeMap<Key, Arc<Stored>>,
    indexes: Indexes,
    /// Objects by `spec.nodeName` (pods), for the field selector kubelets
    /// and drain use.
    by_node: HashMap<Box<str>, BTreeSet<Key>>,
    /// objects per namespace, for `remainingItemCount`.
    ns_counts: HashMap<String, usize>,
    /// Parsed `spec.selector`s (PodDisruptionBudgets, those that have one),
    /// so an eviction finds the pod's budget without parsing every budget.
    selectors: BTreeMap<Key, LabelSelector>,
    log: VecDeque<Arc<WatchEvent>>,
    /// Events with rv <= this were dropped from the log.
    compacted: u64,
    tx: broadcast::Sender<Arc<WatchEvent>>,
}

impl Table {
    pub(super) fn new(indexes: Indexes) -> Table {
        Table {
            objects: BTreeMap::new(),
            indexes,
            by_node: HashMap::new(),
            ns_counts: HashMap::new(),
            selectors: BTreeMap::new(),
            log: VecDeque::new(),
            compacted: 0,
            tx: broadcast::channel(8192).0,
        }
    }

    /// Stores `new` (or removes the object when None, `deleted_obj` being
    /// its last state) at `rv`, updates the indexes, records and sends the
    /// event. Returns the event and the object as written.
    pub(super) fn commit(
        &mut self,
        k: Key,
        new: Option<Value>,
        deleted_obj: Option<Value>,
        rv: u64,
        history: usize,
    ) -> (Arc<WatchEvent>, Value) {
        let prev = self.objects.get(&k).cloned();
        let (type_, stored, out) = match new {
            Some(mut v) => {
                metadata_mut(&mut v).insert("resourceVersion".into(), json!(rv.to_string()));
                let s = Arc::new(Stored::new(&v, rv));
                let ty = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                if self.objects.insert(k.clone(), s.clone()).is_none() {
                    *self.ns_counts.entry(k.0.clone()).or_default() += 1;
                }
                if self.indexes.selector {
                    match v["spec"]["selector"].is_null() {
                        true => self.selectors.remove(&k),
                        false => self
                            .selectors
                            .insert(k.clone(), LabelSelector::from_object(&v["spec"]["selector"])),
                    };
                }
                (ty, s, v)
            }
            None => {
                let mut v = deleted_obj.unwrap_or(Value::Null);
                metadata_mut(&mut v).insert("resourceVersion".into(), json!(rv.to_string()));
                if self.objects.remove(&k).is_some()
                    && let Some(c) = self.ns_counts.get_mut(&k.0)
                {
                    *c = c.saturating_sub(1);
                }
                self.selectors.remove(&k);
                (EventType::Deleted, Arc::new(Stored::new(&v, rv)), v)
            }
        };
        if self.indexes.node_name {
            let old_node = prev.as_ref().and_then(|p| p.node_name.as_deref());
            let new_node = stored.node_name.as_deref().filter(|_| type_ != EventType::Deleted);
            if old_node != new_node {
                if let Some(n) = old_node
                    && let Some(set) = self.by_node.get_mut(n)
                {
                    set.remove(&k);
                    if set.is_empty() {
                        self.by_node.remove(n);
                    }
                }
                if let Some(n) = new_node {
                    self.by_node.entry(n.into()).or_default().insert(k);
                }
            }
        }
        let ev = Arc::new(WatchEvent {
            type_,
            rv,
            object: stored,
            prev,
        });
        self.log.push_back(ev.clone());
        while self.log.len() > history {
            if let Some(old) = self.log.pop_front() {
                self.compacted = old.rv;
            }
        }
        let _ = self.tx.send(ev.clone());
        (ev, out)
    }

    /// A receiver of the events from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.tx.subscribe()
    }

    /// Drops the kept history, as if compacted at `rv`.
    pub(super) fn compact(&mut self, rv: u64) {
        self.log.clear();
        self.compacted = rv;
    }

    /// The kept events after `rv`; `410 Expired` when `rv` is older than
    /// the kept history.
    pub(super) fn backlog(&self, rv: u64) -> Result<VecDeque<Arc<WatchEvent>>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                self.compacted + 1
            )));
        }
        let start = self.log.partition_point(|e| e.rv <= rv);
        Ok(self.log.range(start..).cloned().collect())
    }

    /// The objects of `ns` whose kept selector matches `labels`.
    pub(super) fn selecting(&self, ns: &str, labels: &[(Box<str>, Box<str>)]) -> Vec<Arc<Stored>> {
        self.selectors
            .range((ns.to_string(), String::new())..)
            .take_while(|(k, _)| k.0 == ns)
            .filter(|(_, sel)| sel.matches(labels))
            .filter_map(|(k, _)| self.objects.get(k).cloned())
            .collect()
    }

    /// A page of the objects, in one namespace (`ns`, of a namespaced
    /// resource) or all, at the store's `rv`.
    pub(super) fn list(&self, ns: Option<&str>, opts: &ListOptions, rv: u64) -> Result<ListPage, ApiError> {
        let (start, before): (Option<Key>, u64) = match &opts.continue_token {
            Some(tok) => {
                let (k, n) = decode_continue(tok)?;
                (Some(k), n)
            }
            None => (None, 0),
        };
        let matches = |o: &Arc<Stored>| {
            (opts.label_selector.is_empty() || opts.label_selector.matches(&o.labels))
                && (opts.field_selector.is_empty() || opts.field_selector.matches_with(|p| o.field(p)))
        };
        let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last: Option<Key> = None;
        let mut more = false;
        let node = if self.indexes.node_name {
            opts.field_selector.node_name()
        } else {
            None
        };
        {
            let mut push = |k: &Key, o: &Arc<Stored>| -> bool {
                if let Some(n) = ns
                    && k.0 != n
                {
                    return true;
                }
                if !matches(o) {
                    return true;
                }
                if items.len() >= limit {
                    more = true;
                    return false;
                }
                items.push(o.clone());
                last = Some(k.clone());
                true
            };
            use std::ops::Bound::{Excluded, Included, Unbounded};
            // Start right after the continue key, or at the namespace.
            let lower = match (&start, ns) {
                (Some(s), _) => Excluded(s.clone()),
                (None, Some(n)) => Included((n.to_string(), String::new())),
                (None, None) => Unbounded,
            };
            if let Some(node) = node {
                if let Some(keys) = self.by_node.get(node) {
                    for k in keys.range((lower, Unbounded)) {
                        if !push(k, &self.objects[k]) {
                            break;
                        }
                    }
                }
            } else {
                for (k, o) in self
                    .objects
                    .range((lower, Unbounded))
                    .take_while(|(k, _)| ns.is_none_or(|n| k.0 == n))
                {
                    if !push(k, o) {
                        break;
                    }
                }
            }
        }
        let served = before + items.len() as u64;
        let continue_token = if more {
            last.clone().map(|k| encode_continue(&k, rv, served))
        } else {
            None
        };
        // Counted from the items already served, so a page costs O(page).
        let remaining = if more && opts.label_selector.is_empty() && opts.field_selector.is_empty() {
            let total = match ns {
                Some(n) => self.ns_counts.get(n).copied().unwrap_or(0),
                None => self.objects.len(),
            };
            Some((total as u64).saturating_sub(served))
        } else {
            None
        };
        Ok(ListPage {
            items,
            resource_version: rv,
            continue_token,
            remaining,
        })
    }
}

fn encode_continue(k: &Key, rv: u64, served: u64) -> String {
    use base64::Engine;
    let start = if k.0.is_empty() {
        format!("{}\u{0}", k.1)
    } else {
        format!("{}/{}\u{0}", k.0, k.1)
    };
    let body = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start, "served": served});
    base64::engine::general_purpose::STANDARD.encode(body.to_string())
}

fn decode_continue(tok: &str) -> Result<(Key, u64), ApiError> {
    use base64::Engine;
    let bad = || ApiError::bad_request(format!("continue key is not valid: {tok}"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(tok)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(tok))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let start = v["start"].as_str().ok_or_else(bad)?;
    let start = start.trim_end_matches('\u{0}');
    let served = v["served"].as_u64().unwrap_or(0);
    Ok((
        match start.split_once('/') {
            Some((ns, name)) => (ns.to_string(), name.to_string()),
            None => (String::new(), start.to_string()),
        },
        served,
    ))
}
