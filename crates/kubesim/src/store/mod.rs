//! The generic object store: every registered resource, one cluster-wide
//! resourceVersion counter, a bounded watch history per resource (for `410
//! Gone`), and the write rules of the real server (metadata, generation,
//! status subresource, finalizers, preconditions, garbage collection).
//!
//! Objects are kept as serialized JSON bytes plus the few fields lists filter
//! on, so 300,000 pods stay cheap and lists are byte concatenations.

pub mod resources;
pub mod selector;
mod watch;

pub use resources::{GroupResource, PrinterColumn, ResourceType, VersionInfo};
pub use selector::{FieldSelector, LabelSelector};
pub use watch::{EventType, WatchEvent, WatchStream};

use crate::error::{ApiError, Cause};
use crate::{apply, meta, patch, validation};
use bytes::Bytes;
use parking_lot::RwLock;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{Notify, broadcast};

/// One stored object: its JSON plus the fields selectors and GC look at.
#[derive(Debug)]
pub struct Stored {
    pub bytes: Bytes,
    pub rv: u64,
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub uid: Box<str>,
    pub labels: Box<[(Box<str>, Box<str>)]>,
    pub node_name: Option<Box<str>>,
    pub phase: Option<Box<str>>,
    pub owners: Box<[Box<str>]>,
    pub deleting: bool,
    pub finalizers: Box<[Box<str>]>,
}

impl Stored {
    fn new(v: &Value, rv: u64) -> Stored {
        let m = &v["metadata"];
        let s = |x: &Value| x.as_str().map(Box::from);
        Stored {
            bytes: Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
            rv,
            namespace: s(&m["namespace"]).unwrap_or_default(),
            name: s(&m["name"]).unwrap_or_default(),
            uid: s(&m["uid"]).unwrap_or_default(),
            labels: m["labels"]
                .as_object()
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| (Box::from(k.as_str()), Box::from(v.as_str().unwrap_or(""))))
                        .collect()
                })
                .unwrap_or_default(),
            node_name: s(&v["spec"]["nodeName"]),
            phase: s(&v["status"]["phase"]),
            owners: m["ownerReferences"]
                .as_array()
                .map(|a| a.iter().filter_map(|o| s(&o["uid"])).collect())
                .unwrap_or_default(),
            deleting: !m["deletionTimestamp"].is_null(),
            finalizers: m["finalizers"]
                .as_array()
                .map(|a| a.iter().filter_map(s).collect())
                .unwrap_or_default(),
        }
    }

    /// The object as JSON.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    /// The value a field selector sees at `path`.
    pub fn field(&self, path: &str) -> String {
        match path {
            "metadata.name" => self.name.to_string(),
            "metadata.namespace" => self.namespace.to_string(),
            "spec.nodeName" => self.node_name.as_deref().unwrap_or("").to_string(),
            "status.phase" => self.phase.as_deref().unwrap_or("").to_string(),
            other => selector::field_value(&self.value(), other),
        }
    }
}

type Key = (String, String);
/// An object of any resource.
type Entry = (GroupResource, Key);

/// A fresh receiver and the kept events after a given rv.
pub(crate) type Resubscription = (broadcast::Receiver<Arc<WatchEvent>>, VecDeque<Arc<WatchEvent>>);

struct Table {
    objects: BTreeMap<Key, Arc<Stored>>,
    /// pods by `spec.nodeName`, for the field selector kubelets and drain use.
    by_node: HashMap<Box<str>, BTreeSet<Key>>,
    /// objects per namespace, for `remainingItemCount`.
    ns_counts: HashMap<String, usize>,
    /// PodDisruptionBudgets' parsed `spec.selector` (those that have one), so
    /// an eviction finds the pod's budget without parsing every budget.
    pdb_selectors: BTreeMap<Key, LabelSelector>,
    log: VecDeque<Arc<WatchEvent>>,
    /// Events with rv <= this were dropped from the log.
    compacted: u64,
    tx: broadcast::Sender<Arc<WatchEvent>>,
}

impl Table {
    fn new() -> Table {
        Table {
            objects: BTreeMap::new(),
            by_node: HashMap::new(),
            ns_counts: HashMap::new(),
            pdb_selectors: BTreeMap::new(),
            log: VecDeque::new(),
            compacted: 0,
            tx: broadcast::channel(8192).0,
        }
    }
}

/// Options of create, update and patch.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `fieldValidation=Strict`: unknown fields are an error rather than pruned.
    pub strict: bool,
}

/// Options of delete (`DeleteOptions`).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    /// `Background`, `Foreground` or `Orphan`.
    pub propagation_policy: Option<String>,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body (and its legacy `orphanDependents`).
    pub fn from_value(v: &Value) -> DeleteOptions {
        let mut o = DeleteOptions {
            dry_run: v["dryRun"].as_array().is_some_and(|a| !a.is_empty()),
            grace_period_seconds: v["gracePeriodSeconds"].as_i64(),
            precondition_uid: v["preconditions"]["uid"].as_str().map(str::to_string),
            precondition_rv: v["preconditions"]["resourceVersion"].as_str().map(str::to_string),
            propagation_policy: v["propagationPolicy"].as_str().map(str::to_string),
        };
        if o.propagation_policy.is_none() && v["orphanDependents"].as_bool() == Some(true) {
            o.propagation_policy = Some("Orphan".into());
        }
        o
    }
}

/// Options of list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// A page of a list.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Arc<Stored>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// The patch flavours of the real server.
#[derive(Debug, Clone)]
pub enum Patch {
    Merge(Value),
    Json(Value),
    Strategic(Value),
    Apply { body: Value, force: bool },
}

/// What delete did: the object is gone (`deleted`) or is terminating.
#[derive(Debug)]
pub struct Deleted {
    pub object: Value,
    pub deleted: bool,
}

/// Server behaviour switches.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Watch events kept per resource before `410 Gone`.
    pub history: usize,
    /// Pods bound to a node and deleted with a grace period stay terminating
    /// until deleted again with grace 0 (what a kubelet does). Off: they go at
    /// once, as if a kubelet confirmed instantly.
    pub graceful_pod_deletion: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history: 50_000,
            graceful_pod_deletion: false,
        }
    }
}

struct Inner {
    rv: u64,
    types: BTreeMap<GroupResource, ResourceType>,
    tables: HashMap<GroupResource, Table>,
    config: StoreConfig,
    /// What the garbage collector looks at, kept up to date on every write
    /// so a pass costs O(what changed since the last one), not O(owned objects).
    uids: HashSet<Box<str>>,
    /// Owner uid -> the objects naming it in `ownerReferences` (the owner may
    /// be gone: those dependents are what the collector deletes).
    dependents: HashMap<Box<str>, HashSet<Entry>>,
    /// Owned objects whose owners may all be gone, for the next pass.
    gc_candidates: HashSet<Entry>,
    /// Terminating objects the collector has to finish: namespaces and those
    /// with the `foregroundDeletion` or `orphan` finalizer.
    finalizing: HashSet<Entry>,
    gc_dirty: bool,
}

struct Shared {
    inner: RwLock<Inner>,
    /// A test hook: milliseconds an eviction stalls between taking the
    /// disruption and deleting the pod (0: none).
    eviction_stall_ms: std::sync::atomic::AtomicU64,
    gc: Notify,
    closer: tokio::sync::watch::Sender<u64>,
}

/// The store. Cheap to clone; all clones see the same objects.
#[derive(Clone)]
pub struct Store(Arc<Shared>);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn is_pdb(gr: &GroupResource) -> bool {
    gr.group == "policy" && gr.resource == "poddisruptionbudgets"
}

fn key(ns: &str, name: &str) -> Key {
    (ns.to_string(), name.to_string())
}

/// Strips the fields whose change does not bump `generation`.
fn spec_view(v: &Value, status_sub: bool) -> Value {
    let mut c = v.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("metadata");
        o.remove("apiVersion");
        o.remove("kind");
        if status_sub {
            o.remove("status");
        }
    }
    c
}

fn metadata_mut(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !v["metadata"].is_object() {
        v["metadata"] = json!({});
    }
    v["metadata"].as_object_mut().unwrap()
}

impl Store {
    pub fn new(config: StoreConfig) -> Store {
        let mut inner = Inner {
            rv: 1,
            types: BTreeMap::new(),
            tables: HashMap::new(),
            config,
            uids: HashSet::new(),
            dependents: HashMap::new(),
            gc_candidates: HashSet::new(),
            finalizing: HashSet::new(),
            gc_dirty: false,
        };
        for t in resources::builtins() {
            inner.register(t);
        }
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let gr = GroupResource::new("", "namespaces");
            inner
                .create(&gr, "", obj, &WriteOptions::default())
                .expect("default namespaces");
        }
        Store(Arc::new(Shared {
            inner: RwLock::new(inner),
            eviction_stall_ms: std::sync::atomic::AtomicU64::new(0),
            gc: Notify::new(),
            closer: tokio::sync::watch::channel(0).0,
        }))
    }

    /// Runs the garbage collector and namespace controller until the store is
    /// dropped. Needs a tokio runtime.
    pub fn spawn_controllers(&self) {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            loop {
                let Some(shared) = weak.upgrade() else { return };
                let changed = shared.inner.write().collect_garbage();
                if changed {
                    continue;
                }
                // notify_one keeps a permit, so a kick between the pass and
                // this wait is not lost.
                let notified = shared.gc.notified();
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), notified).await;
            }
        });
    }

    /// Runs a write under the lock and wakes the collector only if the write
    /// left it something to do (most writes do not).
    fn write<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut inner = self.0.inner.write();
        let r = f(&mut inner);
        let dirty = inner.gc_dirty;
        drop(inner);
        if dirty {
            self.0.gc.notify_one();
        }
        r
    }

    /// Ends every open watch (clients see the stream close and re-watch).
    pub fn close_watches(&self) {
        self.0.closer.send_modify(|x| *x += 1);
    }

    pub(crate) fn closer(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.closer.subscribe()
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.0.inner.read().rv
    }

    /// All served resources.
    pub fn resource_types(&self) -> Vec<ResourceType> {
        self.0.inner.read().types.values().cloned().collect()
    }

    /// Finds a served resource by group, version and plural.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        let inner = self.0.inner.read();
        let t = inner.types.get(&GroupResource::new(group, plural))?;
        t.version(version)?;
        Some(t.clone())
    }

    /// Finds a served resource by group and kind.
    pub fn resource_for_kind(&self, group: &str, kind: &str) -> Option<ResourceType> {
        let inner = self.0.inner.read();
        inner
            .types
            .values()
            .find(|t| t.group == group && t.kind == kind)
            .cloned()
    }

    pub fn get(&self, gr: &GroupResource, ns: &str, name: &str) -> Result<Arc<Stored>, ApiError> {
        self.0.inner.read().get(gr, ns, name)
    }

    /// Lists a resource, in one namespace or (`ns` None) all of them.
    pub fn list(&self, gr: &GroupResource, ns: Option<&str>, opts: &ListOptions) -> Result<ListPage, ApiError> {
        self.0.inner.read().list(gr, ns, opts)
    }

    /// The PodDisruptionBudgets of `ns` whose selector matches `labels` (a
    /// budget without a selector matches nothing), from parsed selectors
    /// kept up to date on every write.
    pub fn pdbs_selecting(&self, ns: &str, labels: &[(Box<str>, Box<str>)]) -> Vec<Arc<Stored>> {
        let inner = self.0.inner.read();
        let Some(t) = inner.tables.get(&GroupResource::new("policy", "poddisruptionbudgets")) else {
            return Vec::new();
        };
        t.pdb_selectors
            .range((ns.to_string(), String::new())..)
            .take_while(|(k, _)| k.0 == ns)
            .filter(|(_, sel)| sel.matches(labels))
            .filter_map(|(k, _)| t.objects.get(k).cloned())
            .collect()
    }

    pub fn create(&self, gr: &GroupResource, ns: &str, obj: Value, opts: &WriteOptions) -> Result<Value, ApiError> {
        self.write(|i| i.create(gr, ns, obj, opts))
    }

    /// PUT: `subresource` is `Some("status")` for the status subresource.
    pub fn update(
        &self,
        gr: &GroupResource,
        ns: &str,
        name: &str,
        obj: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.write(|i| i.update(gr, ns, name, obj, subresource, opts))
    }

    pub fn patch(
        &self,
        gr: &GroupResource,
        ns: &str,
        name: &str,
        p: Patch,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.write(|i| i.patch(gr, ns, name, p, subresource, opts))
    }

    pub fn delete(&self, gr: &GroupResource, ns: &str, name: &str, opts: &DeleteOptions) -> Result<Deleted, ApiError> {
        self.write(|i| i.delete(gr, ns, name, opts))
    }

    /// Reads, changes and writes one object under the store lock, so an
    /// in-process controller never sees a conflict.
    pub fn modify(
        &self,
        gr: &GroupResource,
        ns: &str,
        name: &str,
        subresource: Option<&str>,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiError> {
        self.write(|inner| {
            let mut v = inner.get(gr, ns, name)?.value();
            f(&mut v);
            inner.update(gr, ns, name, v, subresource, &WriteOptions::default())
        })
    }

    /// The eviction's two writes as one store operation: `f` changes the
    /// budget's status (returning false to leave it alone and refuse), then,
    /// if it took the disruption, the pod is deleted under the same lock. No
    /// reader (the disruption controller among them) ever sees the budget's
    /// `disruptedPods` entry without the deletion that follows it. A pod
    /// deletion that fails (a precondition, say) leaves the entry to time out,
    /// as on a real server.
    pub fn take_disruption_and_delete(
        &self,
        budget: (&GroupResource, &str, &str),
        f: impl FnOnce(&mut Value) -> bool,
        pod: (&GroupResource, &str, &str),
        opts: &DeleteOptions,
    ) -> Result<Option<Deleted>, ApiError> {
        self.write(|inner| {
            let (gr, ns, name) = budget;
            let mut v = inner.get(gr, ns, name)?.value();
            if !f(&mut v) {
                return Ok(None);
            }
            inner.update(gr, ns, name, v, Some("status"), &WriteOptions::default())?;
            let stall = self.0.eviction_stall_ms.load(std::sync::atomic::Ordering::Relaxed);
            if stall > 0 {
                std::thread::sleep(std::time::Duration::from_millis(stall));
            }
            let (gr, ns, name) = pod;
            inner.delete(gr, ns, name, opts).map(Some)
        })
    }

    /// A test hook: every eviction from now on stalls for `d` between taking
    /// its budget's disruption and deleting the pod, as a loaded machine may.
    pub fn stall_evictions(&self, d: std::time::Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.0.eviction_stall_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Watches a resource from `from` (None: from now, after the current
    /// objects as initial ADDED events). `410 Expired` when `from` is older
    /// than the kept history.
    pub fn watch(&self, gr: &GroupResource, from: Option<u64>) -> Result<(Vec<Arc<Stored>>, WatchStream), ApiError> {
        let inner = self.0.inner.read();
        let table = inner.tables.get(gr).ok_or_else(ApiError::page_not_found)?;
        let rx = table.tx.subscribe();
        match from {
            None => {
                let initial: Vec<_> = table.objects.values().cloned().collect();
                Ok((
                    initial,
                    WatchStream::new(self.clone(), gr.clone(), rx, VecDeque::new(), inner.rv),
                ))
            }
            Some(rv) => {
                let backlog = inner.backlog(gr, rv)?;
                Ok((Vec::new(), WatchStream::new(self.clone(), gr.clone(), rx, backlog, rv)))
            }
        }
    }

    /// Re-subscribes after a lagging receiver, from the last delivered rv.
    pub(crate) fn resubscribe(&self, gr: &GroupResource, rv: u64) -> Result<Resubscription, ApiError> {
        let inner = self.0.inner.read();
        let table = inner.tables.get(gr).ok_or_else(ApiError::page_not_found)?;
        let rx = table.tx.subscribe();
        Ok((rx, inner.backlog(gr, rv)?))
    }

    /// Drops the watch history of every resource (tests use it to force `410 Gone`).
    pub fn compact(&self) {
        let mut inner = self.0.inner.write();
        let rv = inner.rv;
        for t in inner.tables.values_mut() {
            t.log.clear();
            t.compacted = rv;
        }
    }

    /// Registers an extra resource type (as a CRD does).
    pub fn register(&self, t: ResourceType) {
        self.0.inner.write().register(t);
    }
}

impl Inner {
    fn register(&mut self, t: ResourceType) {
        let gr = t.gr();
        self.tables.entry(gr.clone()).or_insert_with(Table::new);
        self.types.insert(gr, t);
    }

    fn unregister(&mut self, gr: &GroupResource) {
        self.types.remove(gr);
        if let Some(t) = self.tables.remove(gr) {
            for (k, o) in t.objects {
                self.uids.remove(&o.uid);
                let e = (gr.clone(), k);
                self.unindex_owners(&e, &o.owners);
                self.gc_candidates.remove(&e);
                self.finalizing.remove(&e);
                self.owner_gone(&o.uid);
            }
            self.gc_dirty = true;
        }
    }

    fn index_owners(&mut self, e: &Entry, owners: &[Box<str>]) {
        for u in owners {
            self.dependents.entry(u.clone()).or_default().insert(e.clone());
        }
    }

    fn unindex_owners(&mut self, e: &Entry, owners: &[Box<str>]) {
        for u in owners {
            if let Some(set) = self.dependents.get_mut(u) {
                set.remove(e);
                if set.is_empty() {
                    self.dependents.remove(u);
                }
            }
        }
    }

    /// The object with `uid` is gone: its dependents may have no owner left.
    fn owner_gone(&mut self, uid: &str) {
        if let Some(deps) = self.dependents.get(uid) {
            self.gc_candidates.extend(deps.iter().cloned());
            self.gc_dirty = true;
        }
    }

    fn rtype(&self, gr: &GroupResource) -> Result<&ResourceType, ApiError> {
        self.types.get(gr).ok_or_else(ApiError::page_not_found)
    }

    fn backlog(&self, gr: &GroupResource, rv: u64) -> Result<VecDeque<Arc<WatchEvent>>, ApiError> {
        let table = self.tables.get(gr).ok_or_else(ApiError::page_not_found)?;
        if rv < table.compacted {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                table.compacted + 1
            )));
        }
        let start = table.log.partition_point(|e| e.rv <= rv);
        Ok(table.log.range(start..).cloned().collect())
    }

    fn get(&self, gr: &GroupResource, ns: &str, name: &str) -> Result<Arc<Stored>, ApiError> {
        let t = self.rtype(gr)?;
        let ns = if t.namespaced { ns } else { "" };
        self.tables[gr]
            .objects
            .get(&key(ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&gr.group, &gr.resource, name))
    }

    fn list(&self, gr: &GroupResource, ns: Option<&str>, opts: &ListOptions) -> Result<ListPage, ApiError> {
        let t = self.rtype(gr)?;
        let table = &self.tables[gr];
        let ns = if t.namespaced {
            ns.filter(|n| !n.is_empty())
        } else {
            None
        };
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
        let node = if gr.resource == "pods" && gr.group.is_empty() {
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
                if let Some(keys) = table.by_node.get(node) {
                    for k in keys.range((lower, Unbounded)) {
                        if !push(k, &table.objects[k]) {
                            break;
                        }
                    }
                }
            } else {
                for (k, o) in table
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
            last.clone().map(|k| encode_continue(&k, self.rv, served))
        } else {
            None
        };
        // Counted from the items already served, so a page costs O(page).
        let remaining = if more && opts.label_selector.is_empty() && opts.field_selector.is_empty() {
            let total = match ns {
                Some(n) => table.ns_counts.get(n).copied().unwrap_or(0),
                None => table.objects.len(),
            };
            Some((total as u64).saturating_sub(served))
        } else {
            None
        };
        Ok(ListPage {
            items,
            resource_version: self.rv,
            continue_token,
            remaining,
        })
    }

    /// Stores `new` (or removes the object when None) and records the event.
    fn commit(&mut self, gr: &GroupResource, k: Key, new: Option<Value>, deleted_obj: Option<Value>) -> Value {
        self.rv += 1;
        let rv = self.rv;
        let history = self.config.history;
        let table = self.tables.get_mut(gr).expect("table of a registered type");
        let prev = table.objects.get(&k).cloned();
        let entry = (gr.clone(), k.clone());
        let (type_, stored, out) = match new {
            Some(mut v) => {
                metadata_mut(&mut v).insert("resourceVersion".into(), json!(rv.to_string()));
                let s = Arc::new(Stored::new(&v, rv));
                let ty = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                if table.objects.insert(k.clone(), s.clone()).is_none() {
                    *table.ns_counts.entry(k.0.clone()).or_default() += 1;
                }
                if is_pdb(gr) {
                    match v["spec"]["selector"].is_null() {
                        true => table.pdb_selectors.remove(&k),
                        false => table
                            .pdb_selectors
                            .insert(k.clone(), LabelSelector::from_object(&v["spec"]["selector"])),
                    };
                }
                (ty, s, v)
            }
            None => {
                let mut v = deleted_obj.unwrap_or(Value::Null);
                metadata_mut(&mut v).insert("resourceVersion".into(), json!(rv.to_string()));
                if table.objects.remove(&k).is_some()
                    && let Some(c) = table.ns_counts.get_mut(&k.0)
                {
                    *c = c.saturating_sub(1);
                }
                table.pdb_selectors.remove(&k);
                (EventType::Deleted, Arc::new(Stored::new(&v, rv)), v)
            }
        };
        let old_node = prev.as_ref().and_then(|p| p.node_name.as_deref());
        let new_node = stored.node_name.as_deref().filter(|_| type_ != EventType::Deleted);
        if old_node != new_node {
            if let Some(n) = old_node
                && let Some(set) = table.by_node.get_mut(n)
            {
                set.remove(&k);
                if set.is_empty() {
                    table.by_node.remove(n);
                }
            }
            if let Some(n) = new_node {
                table.by_node.entry(n.into()).or_default().insert(k);
            }
        }
        let ev = Arc::new(WatchEvent {
            type_,
            rv,
            object: stored,
            prev,
        });
        table.log.push_back(ev.clone());
        while table.log.len() > history {
            if let Some(old) = table.log.pop_front() {
                table.compacted = old.rv;
            }
        }
        let _ = table.tx.send(ev.clone());
        let new = (type_ != EventType::Deleted).then_some(&*ev.object);
        self.gc_track(entry, ev.prev.as_deref(), new);
        out
    }

    /// Keeps the collector's indexes current after `e` changed from `prev`
    /// to `new` (None: removed), and queues what the next pass must look at.
    fn gc_track(&mut self, e: Entry, prev: Option<&Stored>, new: Option<&Stored>) {
        let old_owners: &[Box<str>] = prev.map(|p| &*p.owners).unwrap_or(&[]);
        let new_owners: &[Box<str>] = new.map(|n| &*n.owners).unwrap_or(&[]);
        if old_owners != new_owners {
            self.unindex_owners(&e, old_owners);
            self.index_owners(&e, new_owners);
            // Foreground owners wait for this list to empty; orphaning edits it.
            if !self.finalizing.is_empty() {
                self.gc_dirty = true;
            }
        }
        match new {
            None => {
                if let Some(p) = prev {
                    self.uids.remove(&p.uid);
                    self.owner_gone(&p.uid);
                }
                self.gc_candidates.remove(&e);
                self.finalizing.remove(&e);
                // A terminating namespace waits for its objects to go.
                if !self.finalizing.is_empty() {
                    self.gc_dirty = true;
                }
            }
            Some(n) => {
                if let Some(p) = prev.filter(|p| p.uid != n.uid) {
                    self.uids.remove(&p.uid);
                    self.owner_gone(&p.uid);
                }
                self.uids.insert(n.uid.clone());
                if !n.deleting && !new_owners.is_empty() && new_owners.iter().all(|u| !self.uids.contains(u)) {
                    self.gc_candidates.insert(e.clone());
                    self.gc_dirty = true;
                }
                let is_ns = e.0.group.is_empty() && e.0.resource == "namespaces";
                if n.deleting
                    && (is_ns
                        || n.finalizers
                            .iter()
                            .any(|f| &**f == "foregroundDeletion" || &**f == "orphan"))
                {
                    self.finalizing.insert(e);
                    self.gc_dirty = true;
                } else if !self.finalizing.is_empty() {
                    self.finalizing.remove(&e);
                }
            }
        }
    }

    /// The real server decodes a body into its type before anything else.
    fn decode(t: &ResourceType, obj: &mut Value, opts: &WriteOptions) -> Result<(), ApiError> {
        if t.custom {
            validation::decode_custom_metadata(t, obj, opts.strict)
        } else {
            validation::decode_builtin(t, obj, opts.strict)
        }
    }

    fn check_namespace(&self, t: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
        if !t.namespaced {
            return Ok(());
        }
        if ns.is_empty() {
            return Err(ApiError::bad_request(
                "the server could not find the requested resource",
            ));
        }
        let nsk = key("", ns);
        match self.tables[&GroupResource::new("", "namespaces")].objects.get(&nsk) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if n.deleting => Err(ApiError::forbidden(
                &t.group,
                &t.plural,
                name,
                &format!("unable to create new content in namespace {ns} because it is being terminated"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Checks and defaults an object about to be written; returns it ready to store.
    fn admit(
        &self,
        t: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> Result<(), ApiError> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let mut causes = Vec::new();
        if let Some(old) = old.filter(|o| !o["metadata"]["deletionTimestamp"].is_null()) {
            let before = old["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            let added: Vec<String> = obj["metadata"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| !before.contains(f))
                .map(|f| format!("{f}"))
                .collect();
            if !added.is_empty() {
                causes.push(Cause::new(
                    "FieldValueForbidden",
                    "metadata.finalizers",
                    format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                        added.join(", ")
                    ),
                ));
            }
        }
        let path_segment_only = t.gr() == GroupResource::new("policy", "poddisruptionbudgets");
        if name.is_empty() {
            causes.push(Cause::required("metadata.name", "name or generateName is required"));
        } else if path_segment_only {
            if let Some(c) = meta::validate_path_segment(&name, "metadata.name") {
                causes.push(c);
            }
        } else if t.gr() != GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions")
            && let Some(c) = meta::validate_name(&name, t.plural == "namespaces")
        {
            causes.push(c);
        }
        if let Some(g) = obj["metadata"]["generateName"].as_str().filter(|g| !g.is_empty())
            && t.gr() != GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions")
            && !path_segment_only
            && let Some(c) = meta::validate_generate_name(g, t.plural == "namespaces")
        {
            causes.push(c);
        }
        causes.extend(meta::validate_labels_and_annotations(&obj["metadata"]));
        if t.custom {
            let version = obj["apiVersion"]
                .as_str()
                .and_then(|a| a.rsplit('/').next())
                .unwrap_or(t.storage_version())
                .to_string();
            if let Some(schema) = t.version(&version).and_then(|v| v.schema.clone()) {
                let more = validation::validate_custom(t, &schema, obj, old, opts.strict, &causes)?;
                causes.extend(more);
            }
        } else {
            causes.extend(validation::validate_builtin(t, obj));
            if let Some(old) = old {
                causes.extend(validation::immutable_fields(t, old, obj));
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&t.group, &t.kind, &name, causes))
        }
    }

    fn create(&mut self, gr: &GroupResource, ns: &str, obj: Value, opts: &WriteOptions) -> Result<Value, ApiError> {
        self.create_inner(gr, ns, obj, opts, None)
    }

    fn create_inner(
        &mut self,
        gr: &GroupResource,
        ns: &str,
        mut obj: Value,
        opts: &WriteOptions,
        managed: Option<Value>,
    ) -> Result<Value, ApiError> {
        let t = self.rtype(gr)?.clone();
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body of the request was not a JSON object"));
        }
        if let Some(kind) = obj["kind"].as_str().filter(|k| !k.is_empty() && *k != t.kind) {
            return Err(kind_mismatch(&t, kind, &obj));
        }
        Self::decode(&t, &mut obj, opts)?;
        let body_ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        if t.namespaced && !body_ns.is_empty() && !ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let ns = if t.namespaced {
            if ns.is_empty() { body_ns } else { ns.to_string() }
        } else {
            String::new()
        };
        {
            let m = metadata_mut(&mut obj);
            if m.get("name").and_then(Value::as_str).unwrap_or("").is_empty()
                && let Some(g) = m.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty())
            {
                let n = format!("{g}{}", meta::random_suffix());
                m.insert("name".into(), json!(n));
            }
            if t.namespaced {
                m.insert("namespace".into(), json!(ns));
            } else {
                m.remove("namespace");
            }
            for f in [
                "uid",
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
                "managedFields",
            ] {
                m.remove(f);
            }
            m.insert("uid".into(), json!(meta::new_uid()));
            m.insert("creationTimestamp".into(), json!(meta::now()));
            m.insert("generation".into(), json!(1));
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        self.check_namespace(&t, &ns, &name)?;
        obj["apiVersion"] = json!(
            t.api_version(
                obj["apiVersion"]
                    .as_str()
                    .and_then(|a| a.rsplit('/').next())
                    .filter(|v| t.version(v).is_some())
                    .unwrap_or(t.storage_version())
            )
        );
        obj["kind"] = json!(t.kind);
        if t.status_reset_on_create
            && t.has_status()
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
        strategy_create(&t, &mut obj, self.rv);
        self.admit(&t, &mut obj, None, opts)?;
        if self.tables[gr].objects.contains_key(&key(&ns, &name)) {
            return Err(ApiError::already_exists(&t.group, &t.plural, &name));
        }
        let manager = opts.field_manager.clone().unwrap_or_else(|| "unknown".into());
        let api_version = obj["apiVersion"].as_str().unwrap_or("").to_string();
        match managed {
            Some(mf) => {
                metadata_mut(&mut obj).insert("managedFields".into(), mf);
            }
            None => apply::track_update(None, &mut obj, &manager, &api_version, None),
        }
        if opts.dry_run {
            return Ok(obj);
        }
        if gr.resource == "customresourcedefinitions" && gr.group == "apiextensions.k8s.io" {
            crd_accept(&mut obj);
            if let Some(rt) = resources::from_crd(&obj) {
                if self.types.contains_key(&rt.gr()) {
                    return Err(ApiError::invalid(
                        "apiextensions.k8s.io",
                        "CustomResourceDefinition",
                        &name,
                        vec![Cause::invalid(
                            "spec.names.plural",
                            &json!(rt.plural),
                            "is already in use",
                        )],
                    ));
                }
                self.register(rt);
            }
        }
        Ok(self.commit(gr, key(&ns, &name), Some(obj), None))
    }

    fn update(
        &mut self,
        gr: &GroupResource,
        ns: &str,
        name: &str,
        obj: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        // As the real server: a custom resource is never updated unconditionally.
        if let Some(t) = self.types.get(gr)
            && t.custom
            && obj.is_object()
            && obj["metadata"]["resourceVersion"].as_str().is_none_or(str::is_empty)
            && obj["metadata"]["name"]
                .as_str()
                .is_none_or(|n| n.is_empty() || n == name)
            && self.get(gr, ns, name).is_ok()
        {
            return Err(ApiError::invalid(
                &t.group,
                &t.kind,
                name,
                vec![Cause::invalid(
                    "metadata.resourceVersion",
                    &json!("0x0"),
                    "must be specified for an update",
                )],
            ));
        }
        self.update_inner(gr, ns, name, obj, subresource, opts, None)
    }

    /// `managed`: managedFields already computed (by apply) instead of tracked.
    #[allow(clippy::too_many_arguments)]
    fn update_inner(
        &mut self,
        gr: &GroupResource,
        ns: &str,
        name: &str,
        mut obj: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
        managed: Option<Value>,
    ) -> Result<Value, ApiError> {
        let t = self.rtype(gr)?.clone();
        let ns = if t.namespaced { ns } else { "" };
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body of the request was not a JSON object"));
        }
        if let Some(kind) = obj["kind"].as_str().filter(|k| !k.is_empty() && *k != t.kind) {
            return Err(kind_mismatch(&t, kind, &obj));
        }
        Self::decode(&t, &mut obj, opts)?;
        let body_name = obj["metadata"]["name"].as_str().unwrap_or("");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
        if t.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let existing = self.get(gr, ns, name)?;
        let old = existing.value();
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str().filter(|r| !r.is_empty())
            && rv != existing.rv.to_string()
        {
            return Err(ApiError::stale(&t.group, &t.plural, name));
        }
        let status_sub = t.has_status();
        let mut new = if subresource == Some("status") {
            let mut n = old.clone();
            match obj.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    if let Some(o) = n.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            n
        } else {
            if status_sub {
                match old.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        if let Some(o) = obj.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            obj
        };
        {
            let om = &old["metadata"];
            let m = metadata_mut(&mut new);
            m.insert("name".into(), json!(name));
            if t.namespaced {
                m.insert("namespace".into(), json!(ns));
            } else {
                m.remove("namespace");
            }
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match om.get(f) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            m.remove("resourceVersion");
            m.remove("managedFields");
            if let Some(mf) = om.get("managedFields") {
                m.insert("managedFields".into(), mf.clone());
            }
        }
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = json!(t.kind);
        self.admit(&t, &mut new, Some(&old), opts)?;
        if spec_view(&new, status_sub) != spec_view(&old, status_sub) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(g);
        }
        let manager = opts.field_manager.clone().unwrap_or_else(|| "unknown".into());
        let api_version = new["apiVersion"].as_str().unwrap_or("").to_string();
        match managed {
            Some(mf) => {
                metadata_mut(&mut new).insert("managedFields".into(), mf);
            }
            None => apply::track_update(Some(&old), &mut new, &manager, &api_version, subresource),
        }
        let mut old_cmp = old.clone();
        old_cmp["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
        if new == old_cmp {
            // A no-op write: the real server keeps the resourceVersion and sends no event.
            return Ok(old);
        }
        if opts.dry_run {
            return Ok(new);
        }
        if !new["metadata"]["deletionTimestamp"].is_null()
            && new["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty())
            && !(gr.resource == "namespaces" && gr.group.is_empty())
        {
            let out = self.remove(gr, ns, name, new);
            return Ok(out);
        }
        if gr.resource == "customresourcedefinitions" && gr.group == "apiextensions.k8s.io" {
            crd_accept(&mut new);
            if let Some(rt) = resources::from_crd(&new) {
                self.register(rt);
            }
        }
        Ok(self.commit(gr, key(ns, name), Some(new), None))
    }

    /// Removes an object for good, with the side effects of its kind.
    fn remove(&mut self, gr: &GroupResource, ns: &str, name: &str, last: Value) -> Value {
        let out = self.commit(gr, key(ns, name), None, Some(last));
        if gr.resource == "customresourcedefinitions"
            && gr.group == "apiextensions.k8s.io"
            && let Some(rt) = resources::from_crd(&out)
        {
            self.unregister(&rt.gr());
        }
        out
    }

    fn patch(
        &mut self,
        gr: &GroupResource,
        ns: &str,
        name: &str,
        p: Patch,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let t = self.rtype(gr)?.clone();
        let ns = if t.namespaced { ns } else { "" };
        let current = self.tables[gr].objects.get(&key(ns, name)).map(|s| s.value());
        if let Patch::Apply { body, force } = &p {
            let manager = opts.field_manager.clone().filter(|m| !m.is_empty()).ok_or_else(|| {
                let mut e = ApiError::invalid(
                    "meta.k8s.io",
                    "PatchOptions",
                    "",
                    vec![Cause::required("fieldManager", "is required for apply patch")],
                );
                if let Some(d) = e.details.as_mut().and_then(Value::as_object_mut) {
                    d.remove("name");
                }
                e
            })?;
            if body["kind"].as_str().is_none_or(str::is_empty) || body["apiVersion"].as_str().is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(format!(
                    "invalid object type: {}",
                    if body["kind"].is_null() {
                        "Object 'Kind' is missing"
                    } else {
                        "Object 'apiVersion' is missing"
                    }
                )));
            }
            if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    body["metadata"]["name"].as_str().unwrap_or("")
                )));
            }
            let api_version = body["apiVersion"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| t.api_version(t.storage_version()));
            let version = api_version.rsplit('/').next().unwrap_or_default();
            let schema = t.version(version).and_then(|v| v.schema.clone());
            if let Some(e) = validation::apply_type_error(&t, name, body, schema.as_deref()) {
                return Err(e);
            }
            let merged = apply::apply(&t, current.as_ref(), body, &manager, *force, &api_version, subresource)?;
            let mut merged = merged;
            let mf = merged["metadata"]["managedFields"].take();
            metadata_mut(&mut merged).remove("resourceVersion");
            return match current {
                None => {
                    if subresource.is_some() {
                        return Err(ApiError::not_found(&t.group, &t.plural, name));
                    }
                    merged["metadata"]["name"] = json!(name);
                    self.create_inner(gr, ns, merged, opts, Some(mf))
                }
                Some(_) => self.update_inner(gr, ns, name, merged, subresource, opts, Some(mf)),
            };
        }
        let current = current.ok_or_else(|| ApiError::not_found(&t.group, &t.plural, name))?;
        let patched = match p {
            Patch::Merge(patch) => patch::merge(&current, &patch),
            Patch::Json(patch) if !patch.is_array() => {
                return Err(ApiError::bad_request(
                    "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
                ));
            }
            Patch::Json(patch) => {
                patch::json(&current, &patch).map_err(|e| ApiError::new(422, "Invalid", e).with_details(json!({})))?
            }
            Patch::Strategic(patch) => {
                if t.custom {
                    return Err(ApiError::unsupported_media_type(
                        "application/strategic-merge-patch+json",
                        &[
                            "application/json-patch+json",
                            "application/merge-patch+json",
                            "application/apply-patch+yaml",
                        ],
                    ));
                }
                patch::strategic(&current, &patch).map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            Patch::Apply { .. } => unreachable!("handled above"),
        };
        let mut body = patched;
        let shown = body.clone();
        if body["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"] {
            metadata_mut(&mut body).remove("resourceVersion");
        }
        // A patched object that does not decode is the patch's fault (422).
        self.update_inner(gr, ns, name, body, subresource, opts, None)
            .map_err(|e| {
                if validation::is_decode_error(&e) {
                    validation::patch_decode_error(&shown, &e)
                } else {
                    e
                }
            })
    }

    fn delete(&mut self, gr: &GroupResource, ns: &str, name: &str, opts: &DeleteOptions) -> Result<Deleted, ApiError> {
        let t = self.rtype(gr)?.clone();
        let ns = if t.namespaced { ns } else { "" };
        let existing = self.get(gr, ns, name)?;
        if let Some(uid) = &opts.precondition_uid
            && **uid != *existing.uid
        {
            return Err(ApiError::precondition(
                &t.group,
                &t.plural,
                name,
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    existing.uid
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && *rv != existing.rv.to_string()
        {
            return Err(ApiError::precondition(
                &t.group,
                &t.plural,
                name,
                format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    existing.rv
                ),
            ));
        }
        let mut obj = existing.value();
        let is_ns = gr.resource == "namespaces" && gr.group.is_empty();
        let mut finalizers: Vec<String> = existing.finalizers.iter().map(|f| f.to_string()).collect();
        match opts.propagation_policy.as_deref() {
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into())
            }
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
            _ => {}
        }
        let pod_grace = gr.resource == "pods"
            && gr.group.is_empty()
            && self.config.graceful_pod_deletion
            && existing.node_name.is_some()
            && !matches!(existing.phase.as_deref(), Some("Succeeded" | "Failed"));
        let grace = opts
            .grace_period_seconds
            .unwrap_or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30));
        let graceful = pod_grace && grace > 0;
        if is_ns || !finalizers.is_empty() || graceful {
            let m = metadata_mut(&mut obj);
            if m.get("deletionTimestamp").is_none_or(Value::is_null) {
                let when = if graceful {
                    meta::format_time(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace))
                } else {
                    meta::now()
                };
                m.insert("deletionTimestamp".into(), json!(when));
                m.insert(
                    "deletionGracePeriodSeconds".into(),
                    json!(if graceful { grace } else { 0 }),
                );
                if graceful {
                    let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
                    m.insert("generation".into(), json!(g + 1));
                }
            } else if !graceful
                && existing.finalizers.len() == finalizers.len()
                && !is_ns
                && (pod_grace || !existing.finalizers.is_empty())
            {
                return Ok(Deleted {
                    object: obj,
                    deleted: false,
                });
            }
            if !finalizers.is_empty() {
                m.insert("finalizers".into(), json!(finalizers));
            }
            if is_ns {
                obj["status"]["phase"] = json!("Terminating");
            }
            if opts.dry_run {
                return Ok(Deleted {
                    object: obj,
                    deleted: false,
                });
            }
            metadata_mut(&mut obj).remove("resourceVersion");
            let out = self.commit(gr, key(ns, name), Some(obj), None);
            return Ok(Deleted {
                object: out,
                deleted: false,
            });
        }
        if opts.dry_run {
            return Ok(Deleted {
                object: obj,
                deleted: true,
            });
        }
        let out = self.remove(gr, ns, name, obj);
        Ok(Deleted {
            object: out,
            deleted: true,
        })
    }

    /// One pass of the garbage collector and namespace controller. Returns
    /// whether it changed anything.
    fn collect_garbage(&mut self) -> bool {
        if !self.gc_dirty {
            return false;
        }
        self.gc_dirty = false;
        let mut to_delete: Vec<Entry> = Vec::new();
        let mut unfinalize: Vec<(GroupResource, Key, &'static str)> = Vec::new();
        let mut orphan: Vec<(GroupResource, Key, Box<str>)> = Vec::new();
        for e in std::mem::take(&mut self.gc_candidates) {
            let Some(o) = self.tables.get(&e.0).and_then(|t| t.objects.get(&e.1)) else {
                continue;
            };
            if !o.deleting && !o.owners.is_empty() && o.owners.iter().all(|u| !self.uids.contains(u)) {
                to_delete.push(e);
            }
        }
        let no_deps = HashSet::new();
        let ns_gr = GroupResource::new("", "namespaces");
        let mut empty_ns = Vec::new();
        for (gr, k) in &self.finalizing {
            {
                let Some(o) = self.tables.get(gr).and_then(|t| t.objects.get(k)) else {
                    continue;
                };
                let deps = self.dependents.get(&o.uid).unwrap_or(&no_deps);
                if o.finalizers.iter().any(|f| &**f == "foregroundDeletion") {
                    if deps.is_empty() {
                        unfinalize.push((gr.clone(), k.clone(), "foregroundDeletion"));
                    } else {
                        for d in deps {
                            let dep_deleting = self
                                .tables
                                .get(&d.0)
                                .and_then(|t| t.objects.get(&d.1))
                                .is_some_and(|x| x.deleting);
                            if !dep_deleting {
                                to_delete.push(d.clone());
                            }
                        }
                    }
                }
                if o.finalizers.iter().any(|f| &**f == "orphan") {
                    for d in deps {
                        orphan.push((d.0.clone(), d.1.clone(), o.uid.clone()));
                    }
                    unfinalize.push((gr.clone(), k.clone(), "orphan"));
                }
                if *gr == ns_gr {
                    let ns = &k.1;
                    let mut any = false;
                    for (cgr, ct) in &self.tables {
                        let namespaced = self.types.get(cgr).is_some_and(|t| t.namespaced);
                        if !namespaced {
                            continue;
                        }
                        for (ck, co) in ct.objects.range((ns.clone(), String::new())..) {
                            if &ck.0 != ns {
                                break;
                            }
                            any = true;
                            if !co.deleting {
                                to_delete.push((cgr.clone(), ck.clone()));
                            }
                        }
                    }
                    if !any {
                        empty_ns.push(k.clone());
                    }
                }
            }
        }
        let mut changed = false;
        for (gr, k, owner) in orphan {
            if let Some(o) = self.tables.get(&gr).and_then(|t| t.objects.get(&k)) {
                let mut v = o.value();
                if let Some(refs) = v["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"].as_str() != Some(&*owner));
                }
                metadata_mut(&mut v).remove("resourceVersion");
                self.commit(&gr, k, Some(v), None);
                changed = true;
            }
        }
        for (gr, k) in to_delete {
            if self.tables.get(&gr).is_some_and(|t| t.objects.contains_key(&k)) {
                let _ = self.delete(&gr, &k.0, &k.1, &DeleteOptions::default());
                changed = true;
            }
        }
        for (gr, k, fin) in unfinalize {
            if let Some(o) = self.tables.get(&gr).and_then(|t| t.objects.get(&k)) {
                let mut v = o.value();
                if let Some(f) = v["metadata"]["finalizers"].as_array_mut() {
                    f.retain(|x| x.as_str() != Some(fin));
                }
                let no_fin = v["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
                if no_fin {
                    metadata_mut(&mut v).remove("finalizers");
                    self.remove(&gr, &k.0, &k.1, v);
                } else {
                    metadata_mut(&mut v).remove("resourceVersion");
                    self.commit(&gr, k, Some(v), None);
                }
                changed = true;
            }
        }
        for k in empty_ns {
            if let Some(o) = self.tables[&ns_gr].objects.get(&k) {
                let has_fin = !o.finalizers.is_empty();
                if !has_fin {
                    let v = o.value();
                    self.remove(&ns_gr, "", &k.1, v);
                    changed = true;
                }
            }
        }
        changed
    }
}

/// Defaults the real server fills in on create.
fn strategy_create(t: &ResourceType, obj: &mut Value, rv: u64) {
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "pods") => {
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            if obj["spec"]["restartPolicy"].is_null() {
                obj["spec"]["restartPolicy"] = json!("Always");
            }
            if obj["spec"]["terminationGracePeriodSeconds"].is_null() {
                obj["spec"]["terminationGracePeriodSeconds"] = json!(30);
            }
        }
        ("", "namespaces") => {
            obj["status"] = json!({"phase": "Active"});
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
            let name = obj["metadata"]["name"].clone();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
        }
        ("", "services") => {
            let spec = &mut obj["spec"];
            if spec["type"].is_null() {
                spec["type"] = json!("ClusterIP");
            }
            if spec["sessionAffinity"].is_null() {
                spec["sessionAffinity"] = json!("None");
            }
            if let Some(ports) = spec["ports"].as_array_mut() {
                for p in ports {
                    if p["protocol"].is_null() {
                        p["protocol"] = json!("TCP");
                    }
                    if p["targetPort"].is_null() {
                        p["targetPort"] = p["port"].clone();
                    }
                }
            }
            // A cluster IP from 10.96.0.0/16, unique per creation (the rv is).
            if spec["type"] != "ExternalName" && spec["clusterIP"].is_null() {
                let ip = format!("10.96.{}.{}", (rv / 250) % 256, rv % 250 + 1);
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
                spec["ipFamilies"] = json!(["IPv4"]);
                spec["ipFamilyPolicy"] = json!("SingleStack");
            }
        }
        ("", "nodes") => {
            let name = obj["metadata"]["name"].clone();
            let valid = name
                .as_str()
                .is_some_and(|n| meta::validate_labels_and_annotations(&json!({"labels": {"k": n}})).is_empty());
            if valid && obj["metadata"]["labels"]["kubernetes.io/hostname"].is_null() {
                obj["metadata"]["labels"]["kubernetes.io/hostname"] = name;
            }
        }
        _ => {}
    }
}

/// A body of another kind than the URL's: a custom resource says so in a
/// `kind` cause; a built-in fails to decode (400), as on the real server.
fn kind_mismatch(t: &ResourceType, kind: &str, obj: &Value) -> ApiError {
    if t.custom {
        let name = obj["metadata"]["name"].as_str().unwrap_or("");
        ApiError::invalid(
            &t.group,
            kind,
            name,
            vec![Cause::invalid("kind", &json!(kind), &format!("must be {}", t.kind))],
        )
    } else {
        let version = obj["apiVersion"]
            .as_str()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or("v1");
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {}: the object's kind is not {}",
            t.kind, t.kind
        ))
    }
}

/// A CRD is accepted and established at once, as a healthy server does.
fn crd_accept(crd: &mut Value) {
    let names = crd["spec"]["names"].clone();
    let now = meta::now();
    let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
    let mut accepted = names;
    if accepted["singular"].is_null() {
        accepted["singular"] = json!(crd["spec"]["names"]["kind"].as_str().unwrap_or("").to_lowercase());
    }
    if accepted["listKind"].is_null() {
        accepted["listKind"] = json!(format!("{}List", crd["spec"]["names"]["kind"].as_str().unwrap_or("")));
    }
    crd["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": crd["spec"]["versions"].as_array().map(|vs| vs.iter().filter(|v| v["storage"] == json!(true)).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
    });
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

impl ApiError {
    pub(crate) fn with_details(mut self, d: Value) -> Self {
        self.details = Some(d);
        self
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send + Sync>() {}
    is_send::<Store>();
    let _: HashSet<u8> = HashSet::new();
}
