//! The generic object store: every registered resource, one cluster-wide
//! resourceVersion counter, a bounded watch history per resource (for `410
//! Gone`), and the write rules of the real server (metadata, generation,
//! status subresource, finalizers, preconditions, garbage collection).
//!
//! Objects are kept as serialized JSON bytes plus the few fields lists filter
//! on, so 300,000 pods stay cheap and lists are byte concatenations.
//!
//! The write paths here are the same for every resource; what differs
//! between resources is in each one's strategy (`strategy.rs`,
//! `strategy/`), which the resource's [`ResourceType::strategy`] names.
//! The layers go one way: this module uses `admit.rs`, `gc.rs`,
//! `table.rs`, `apply.rs` and the strategies; the strategies use
//! `validation.rs` and `schema.rs`; those and `apply.rs` use
//! `resources.rs`. None of them uses this module (`tests/module_graph.rs`
//! checks it).

mod admit;
mod apply;
mod gc;
mod options;
mod podsecurity;
pub mod resources;
mod schema;
pub mod selector;
mod stored;
mod strategy;
mod table;
mod validation;
mod watch;

pub(crate) use apply::NO_TRACK;
pub use options::{DeleteOptions, Deleted, ListOptions, Patch, StoreConfig, WriteOptions};
pub use resources::{GroupResource, PrinterColumn, ResourceType, StrategyKind, VersionInfo};
pub use selector::{FieldSelector, LabelSelector};
pub use stored::Stored;
pub use table::ListPage;
pub use watch::{EventType, WatchEvent, WatchStream};

use crate::error::{ApiError, Cause};
use crate::meta::{self, metadata_mut};
use crate::patch;
use gc::Collector;
use parking_lot::RwLock;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use strategy::{Registry, Strategy, Termination};
use table::{Key, Table};
use tokio::sync::Notify;
use watch::Resubscription;

struct Inner {
    rv: u64,
    types: BTreeMap<GroupResource, ResourceType>,
    tables: HashMap<GroupResource, Table>,
    config: StoreConfig,
    /// What the garbage collector looks at, kept up to date on every write.
    gc: Collector,
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

fn key(ns: &str, name: &str) -> Key {
    (ns.to_string(), name.to_string())
}

/// The strategy of a resource.
fn strategy_of(t: &ResourceType) -> &'static dyn Strategy {
    strategy::of(t.strategy)
}

impl Store {
    pub fn new(config: StoreConfig) -> Store {
        let mut inner = Inner {
            rv: 1,
            types: BTreeMap::new(),
            tables: HashMap::new(),
            config,
            gc: Collector::default(),
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
        let dirty = inner.gc.dirty;
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
        match inner.tables.get(&GroupResource::new("policy", "poddisruptionbudgets")) {
            Some(t) => t.selecting(ns, labels),
            None => Vec::new(),
        }
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
        let rx = table.subscribe();
        let store = self.clone();
        let watched = gr.clone();
        let resubscribe: watch::Resubscribe = Box::new(move |rv| store.resubscribe(&watched, rv));
        match from {
            None => {
                let initial: Vec<_> = table.objects.values().cloned().collect();
                Ok((initial, WatchStream::new(resubscribe, rx, VecDeque::new(), inner.rv)))
            }
            Some(rv) => {
                let backlog = table.backlog(rv)?;
                Ok((Vec::new(), WatchStream::new(resubscribe, rx, backlog, rv)))
            }
        }
    }

    /// Re-subscribes after a lagging receiver, from the last delivered rv.
    fn resubscribe(&self, gr: &GroupResource, rv: u64) -> Result<Resubscription, ApiError> {
        let inner = self.0.inner.read();
        let table = inner.tables.get(gr).ok_or_else(ApiError::page_not_found)?;
        let rx = table.subscribe();
        Ok((rx, table.backlog(rv)?))
    }

    /// Drops the watch history of every resource (tests use it to force `410 Gone`).
    pub fn compact(&self) {
        let mut inner = self.0.inner.write();
        let rv = inner.rv;
        for t in inner.tables.values_mut() {
            t.compact(rv);
        }
    }

    /// Registers an extra resource type (as a CRD does).
    pub fn register(&self, t: ResourceType) {
        self.0.inner.write().register(t);
    }
}

impl Registry for Inner {
    fn serves(&self, gr: &GroupResource) -> bool {
        self.types.contains_key(gr)
    }

    fn register(&mut self, t: ResourceType) {
        let gr = t.gr();
        let indexes = strategy_of(&t).indexes();
        self.tables.entry(gr.clone()).or_insert_with(|| Table::new(indexes));
        self.types.insert(gr, t);
    }

    fn unregister(&mut self, gr: &GroupResource) {
        self.types.remove(gr);
        if let Some(t) = self.tables.remove(gr) {
            self.gc.forget(gr, t.objects);
        }
    }
}

impl Inner {
    fn rtype(&self, gr: &GroupResource) -> Result<&ResourceType, ApiError> {
        self.types.get(gr).ok_or_else(ApiError::page_not_found)
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
        let ns = if t.namespaced {
            ns.filter(|n| !n.is_empty())
        } else {
            None
        };
        self.tables[gr].list(ns, opts, self.rv)
    }

    /// Stores `new` (or removes the object when None) and records the event.
    fn commit(&mut self, gr: &GroupResource, k: Key, new: Option<Value>, deleted_obj: Option<Value>) -> Value {
        self.rv += 1;
        let termination = self
            .types
            .get(gr)
            .map_or(Termination::Finalizers, |t| strategy_of(t).termination());
        let table = self.tables.get_mut(gr).expect("table of a registered type");
        let (ev, out) = table.commit(k.clone(), new, deleted_obj, self.rv, self.config.history);
        let new = (ev.type_ != EventType::Deleted).then_some(&*ev.object);
        self.gc.track((gr.clone(), k), ev.prev.as_deref(), new, termination);
        out
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

    fn create(&mut self, gr: &GroupResource, ns: &str, obj: Value, opts: &WriteOptions) -> Result<Value, ApiError> {
        self.create_inner(gr, ns, obj, opts, None)
    }

    /// `managed`: managedFields already computed (by apply) instead of tracked.
    fn create_inner(
        &mut self,
        gr: &GroupResource,
        ns: &str,
        mut obj: Value,
        opts: &WriteOptions,
        managed: Option<Value>,
    ) -> Result<Value, ApiError> {
        let t = self.rtype(gr)?.clone();
        let s = strategy_of(&t);
        admit::decode(s, &t, &mut obj, opts)?;
        let ns = admit::create_namespace(&t, &obj, ns)?;
        admit::before_create(s, &t, &mut obj, &ns, self.rv);
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        self.check_namespace(&t, &ns, &name)?;
        admit::admit(s, &t, &mut obj, None, opts)?;
        if t.group.is_empty()
            && t.plural == "pods"
            && let Some(n) = self.tables[&GroupResource::new("", "namespaces")]
                .objects
                .get(&key("", &ns))
            && let Some(why) =
                podsecurity::refusal(|k| n.labels.iter().find(|(lk, _)| &**lk == k).map(|(_, v)| &**v), &obj)
        {
            return Err(ApiError::forbidden("", "pods", &name, &why));
        }
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
        s.begin_create(&mut obj, self)?;
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
        // As the real server: some resources (custom ones) are never
        // updated unconditionally.
        if let Some(t) = self.types.get(gr)
            && !strategy_of(t).allow_unconditional_update()
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
        let s = strategy_of(&t);
        let ns = if t.namespaced { ns } else { "" };
        admit::decode(s, &t, &mut obj, opts)?;
        admit::check_update_target(&t, &obj, ns, name)?;
        let existing = self.get(gr, ns, name)?;
        let old = existing.value();
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str().filter(|r| !r.is_empty())
            && rv != existing.rv.to_string()
        {
            return Err(ApiError::stale(&t.group, &t.plural, name));
        }
        let mut new = admit::before_update(s, &t, &old, obj, ns, name, subresource);
        admit::admit(s, &t, &mut new, Some(&old), opts)?;
        if s.generation_changed(&t, &old, &new) {
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
            && s.termination() != Termination::Contents
        {
            let out = self.remove(gr, ns, name, new);
            return Ok(out);
        }
        s.begin_update(&mut new, self);
        Ok(self.commit(gr, key(ns, name), Some(new), None))
    }

    /// Removes an object for good, with the side effects of its kind.
    fn remove(&mut self, gr: &GroupResource, ns: &str, name: &str, last: Value) -> Value {
        let out = self.commit(gr, key(ns, name), None, Some(last));
        if let Some(s) = self.types.get(gr).map(strategy_of) {
            s.after_delete(&out, self);
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
        let s = strategy_of(&t);
        let ns = if t.namespaced { ns } else { "" };
        let current = self.tables[gr].objects.get(&key(ns, name)).map(|s| s.value());
        if let Patch::Apply { body, force } = &p {
            let (manager, api_version) = apply::check_request(&t, name, body, opts.field_manager.as_deref())?;
            let version = api_version.rsplit('/').next().unwrap_or_default();
            let schema = t.version(version).and_then(|v| v.schema.clone());
            if let Some(e) = s.apply_type_error(&t, name, body, schema.as_deref()) {
                return Err(e);
            }
            let mut merged = apply::apply(&t, current.as_ref(), body, &manager, *force, &api_version, subresource)?;
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
                if !s.supports_strategic_merge() {
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
        let s = strategy_of(&t);
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
        // A namespace always goes through Terminating.
        let contents = s.termination() == Termination::Contents;
        let mut finalizers: Vec<String> = existing.finalizers.iter().map(|f| f.to_string()).collect();
        match opts.propagation_policy.as_deref() {
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into())
            }
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
            _ => {}
        }
        let grace_period = s.grace_period(&obj, opts.grace_period_seconds, &self.config);
        let may_wait = grace_period.is_some();
        let grace = grace_period.unwrap_or(0);
        let graceful = grace > 0;
        if contents || !finalizers.is_empty() || graceful {
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
                && !contents
                && (may_wait || !existing.finalizers.is_empty())
            {
                return Ok(Deleted {
                    object: obj,
                    deleted: false,
                });
            }
            if !finalizers.is_empty() {
                m.insert("finalizers".into(), json!(finalizers));
            }
            s.prepare_for_delete(&mut obj);
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
        if !self.gc.dirty {
            return false;
        }
        self.gc.dirty = false;
        let plan = self.gc.plan(&self.tables, &self.types);
        let mut changed = false;
        for (gr, k, owner) in plan.orphan {
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
        for (gr, k) in plan.delete {
            if self.tables.get(&gr).is_some_and(|t| t.objects.contains_key(&k)) {
                let _ = self.delete(&gr, &k.0, &k.1, &DeleteOptions::default());
                changed = true;
            }
        }
        for (gr, k, fin) in plan.unfinalize {
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
        for (gr, k) in plan.emptied {
            if let Some(o) = self.tables.get(&gr).and_then(|t| t.objects.get(&k))
                && o.finalizers.is_empty()
            {
                let v = o.value();
                self.remove(&gr, &k.0, &k.1, v);
                changed = true;
            }
        }
        changed
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send + Sync>() {}
    is_send::<Store>();
}
