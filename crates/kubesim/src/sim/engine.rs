//! The simulation's controller manager: one task that follows the store's
//! watches, keeps parsed caches with the indexes the controllers need, runs
//! timers in simulated time and reconciles whatever changed. One task means
//! one parse per event and read-your-writes: after a write the engine polls
//! the watch streams, so its caches already hold what it just wrote.

use super::Shared;
use super::scenario::{Fault, Timing};
use super::view::{Key, NodeView, Obj, PodView, key_of};
use crate::error::ApiError;
use crate::store::NO_TRACK;
use crate::store::{
    DeleteOptions, EventType, GroupResource, LabelSelector, Store, Stored, WatchEvent, WatchStream, WriteOptions,
};
use futures::FutureExt;
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Writes one reconcile pass may make before the engine drains its watches.
const PASS_BUDGET: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Node,
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    Pdb,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Node,
        Kind::Pod,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::Pdb,
    ];
    pub fn gr(self) -> GroupResource {
        match self {
            Kind::Node => GroupResource::new("", "nodes"),
            Kind::Pod => GroupResource::new("", "pods"),
            Kind::Deployment => GroupResource::new("apps", "deployments"),
            Kind::ReplicaSet => GroupResource::new("apps", "replicasets"),
            Kind::StatefulSet => GroupResource::new("apps", "statefulsets"),
            Kind::DaemonSet => GroupResource::new("apps", "daemonsets"),
            Kind::Job => GroupResource::new("batch", "jobs"),
            Kind::Pdb => GroupResource::new("policy", "poddisruptionbudgets"),
        }
    }
    pub fn from_owner(kind: &str) -> Option<Kind> {
        Some(match kind {
            "ReplicaSet" => Kind::ReplicaSet,
            "StatefulSet" => Kind::StatefulSet,
            "DaemonSet" => Kind::DaemonSet,
            "Job" => Kind::Job,
            "Deployment" => Kind::Deployment,
            _ => return None,
        })
    }
}

/// Something to do at a simulated time.
#[derive(Debug, Clone)]
pub enum Action {
    PodStarted(Key, Box<str>),
    PodReady(Key, Box<str>),
    /// A run-to-completion pod exits: success, message.
    PodExit(Key, Box<str>, bool, String),
    /// A terminating pod's containers stopped: the kubelet removes it.
    PodGone(Key, Box<str>),
    UpgradeApply(Key, Box<str>),
    RebootDone(String, Key, Box<str>),
    /// A node reboots on its own (after its upgrade pod exited).
    NodeReboot(String),
    NodeRebootDone(String),
    Reconcile(Kind, Key),
    Heartbeat,
    WatchDrop,
}

/// Timers in simulated microseconds.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    actions: HashMap<u64, Action>,
    seq: u64,
}

impl Timers {
    pub fn add(&mut self, at_sim: f64, a: Action) {
        self.seq += 1;
        let due = (at_sim.max(0.0) * 1e6) as u64;
        self.heap.push(Reverse((due, self.seq)));
        self.actions.insert(self.seq, a);
    }
    pub fn next_due(&self) -> Option<f64> {
        self.heap.peek().map(|Reverse((d, _))| *d as f64 / 1e6)
    }
    fn pop_due(&mut self, now_sim: f64) -> Option<Action> {
        let now = (now_sim * 1e6) as u64;
        match self.heap.peek() {
            Some(Reverse((d, _))) if *d <= now => {
                let Reverse((_, s)) = self.heap.pop()?;
                self.actions.remove(&s)
            }
            _ => None,
        }
    }
}

/// Requests from the `Simulation` handle.
pub enum Command {
    SetNodeReady(String, bool, oneshot::Sender<Result<(), String>>),
    /// Faults changed: apply the ones the engine acts on at once.
    FaultsChanged,
    Status(oneshot::Sender<Status>),
    /// The initial cluster is up (or gave up waiting): use real delays from now on.
    EndBootstrap,
    /// What the health endpoints answer from.
    Health(oneshot::Sender<super::health::HealthState>),
}

/// How settled the cluster is.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub nodes: usize,
    pub pods: usize,
    /// Pods not bound, not Running or not Ready (terminal pods excluded,
    /// and pods a bad version holds unready: they stay so until it goes).
    pub pods_not_ready: usize,
    /// Workloads whose pod count differs from what they want.
    pub workloads_unsatisfied: usize,
    pub bootstrapping: bool,
}

#[derive(Debug, Default)]
pub struct NodeSim {
    pub index: usize,
    /// The kubelet is not running (rebooting, or made NotReady).
    pub down: bool,
    pub never_ready: bool,
    pub next_ip: u64,
    /// Versions that show after the node's next reboot: (component, version).
    pub pending: Vec<(String, String)>,
    /// A `BadVersion` fault with `effect: PodsUnready` holds its pods unready.
    pub held_unready: bool,
    /// What upgrades of components no node field or mirror pod shows installed.
    pub installed: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct JobRuntime {
    pub start: Option<f64>,
    pub finished: Option<f64>,
    pub counted: HashSet<Box<str>>,
    pub succeeded: i64,
    pub failed: i64,
    pub last_failure: f64,
}

pub struct Engine {
    pub store: Store,
    pub shared: Arc<Shared>,
    pub timing: Timing,
    streams: Vec<(Kind, WatchStream)>,
    cmds: mpsc::UnboundedReceiver<Command>,
    pub timers: Timers,
    pub bootstrapping: bool,
    pub budget: usize,
    pub heartbeat: f64,

    pub nodes: BTreeMap<String, NodeView>,
    pub node_sim: HashMap<String, NodeSim>,
    pub node_index: HashMap<String, usize>,
    pub pods: BTreeMap<Key, PodView>,
    pub pods_on_node: HashMap<String, BTreeSet<Key>>,
    pub pods_by_owner: HashMap<Box<str>, BTreeSet<Key>>,
    /// Owner uid → node → bound pods of that owner (the scheduler spreads them).
    pub owner_nodes: HashMap<Box<str>, HashMap<String, u32>>,
    /// Pods the scheduler bound and already counted in `owner_nodes`.
    pub prebound: HashSet<Key>,
    pub unbound: BTreeSet<Key>,
    pub objs: HashMap<Kind, BTreeMap<Key, Obj>>,
    pub rs_by_owner: HashMap<Box<str>, BTreeSet<Key>>,
    pub uid_index: HashMap<Box<str>, (Kind, Key)>,
    /// PDBs by (namespace, label key, label value) of their first matchLabels pair.
    pub pdb_by_label: HashMap<(String, String, String), BTreeSet<Key>>,
    /// PDBs whose selector has no matchLabels: checked against every pod of the namespace.
    pub pdb_generic: HashMap<String, BTreeSet<Key>>,
    pub pdb_selectors: HashMap<Key, LabelSelector>,
    pub pdb_members: HashMap<Key, BTreeSet<Key>>,

    pub dirty: HashMap<Kind, BTreeSet<Key>>,
    pub scheduler_dirty: bool,
    pub retry_unschedulable: bool,
    pub sched_cursor: usize,
    pub kubelet_pending: HashSet<(Box<str>, u8)>,
    pub own_deletes: HashSet<Box<str>>,
    pub jobs: HashMap<Box<str>, JobRuntime>,
    /// (budget, pod) -> the simulated time the disruption controller first
    /// saw that `disruptedPods` entry: entries age in simulated time from
    /// here, not from their second-rounded wall-clock stamp.
    pub disrupted_since: HashMap<(Key, String), f64>,
}

pub fn write_opts() -> WriteOptions {
    WriteOptions {
        field_manager: Some(NO_TRACK.to_string()),
        ..Default::default()
    }
}

impl Engine {
    pub fn new(
        store: Store,
        shared: Arc<Shared>,
        timing: Timing,
        cmds: mpsc::UnboundedReceiver<Command>,
        node_index: HashMap<String, usize>,
        heartbeat: f64,
    ) -> Result<Engine, ApiError> {
        let mut e = Engine {
            store: store.clone(),
            shared,
            timing,
            streams: Vec::new(),
            cmds,
            timers: Timers::default(),
            bootstrapping: true,
            budget: PASS_BUDGET,
            heartbeat,
            nodes: BTreeMap::new(),
            node_sim: HashMap::new(),
            node_index,
            pods: BTreeMap::new(),
            pods_on_node: HashMap::new(),
            pods_by_owner: HashMap::new(),
            owner_nodes: HashMap::new(),
            prebound: HashSet::new(),
            unbound: BTreeSet::new(),
            objs: HashMap::new(),
            rs_by_owner: HashMap::new(),
            uid_index: HashMap::new(),
            pdb_by_label: HashMap::new(),
            pdb_generic: HashMap::new(),
            pdb_selectors: HashMap::new(),
            pdb_members: HashMap::new(),
            dirty: HashMap::new(),
            scheduler_dirty: false,
            retry_unschedulable: false,
            sched_cursor: 0,
            kubelet_pending: HashSet::new(),
            own_deletes: HashSet::new(),
            jobs: HashMap::new(),
            disrupted_since: HashMap::new(),
        };
        for kind in Kind::ALL {
            let (initial, stream) = store.watch(&kind.gr(), None)?;
            e.streams.push((kind, stream));
            for s in initial {
                e.handle(kind, EventType::Added, s, None);
            }
        }
        if heartbeat > 0.0 {
            let at = e.shared.clock.now() + heartbeat;
            e.timers.add(at, Action::Heartbeat);
        }
        e.schedule_watch_drops();
        Ok(e)
    }

    pub fn obj(&self, kind: Kind, key: &Key) -> Option<&Obj> {
        self.objs.get(&kind)?.get(key)
    }

    pub fn mark(&mut self, kind: Kind, key: Key) {
        self.dirty.entry(kind).or_default().insert(key);
    }

    pub fn now(&self) -> f64 {
        self.shared.clock.now()
    }

    /// Runs `a` after `sim_seconds` of simulated time (at once while bootstrapping).
    pub fn after(&mut self, sim_seconds: f64, a: Action) {
        let d = if self.bootstrapping { 0.0 } else { sim_seconds };
        let at = self.now() + d;
        self.timers.add(at, a);
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.shared.faults.read().clone()
    }

    // ---- the loop ----

    pub async fn run(mut self) {
        loop {
            self.budget = PASS_BUDGET;
            self.drain();
            self.fire_timers();
            self.drain();
            self.reconcile();
            self.drain();
            if self.busy() {
                tokio::task::yield_now().await;
                continue;
            }
            if self.bootstrapping && self.status().pods_not_ready == 0 && self.status().workloads_unsatisfied == 0 {
                self.bootstrapping = false;
            }
            let wake_at = self
                .timers
                .next_due()
                .map(|d| self.shared.clock.instant_at(d))
                .unwrap_or_else(|| std::time::Instant::now() + std::time::Duration::from_secs(3600));
            let wake = {
                let streams = &mut self.streams;
                let cmds = &mut self.cmds;
                let next = futures::future::select_all(
                    streams
                        .iter_mut()
                        .map(|(k, s)| Box::pin(async move { (*k, s.next().await) })),
                );
                tokio::select! {
                    (r, _, _) = next => Wake::Event(r.0, r.1),
                    c = cmds.recv() => match c { Some(c) => Wake::Command(c), None => Wake::Stop },
                    _ = tokio::time::sleep_until(wake_at.into()) => Wake::Timer,
                    _ = self.shared.wake.notified() => Wake::Timer,
                }
            };
            match wake {
                Wake::Event(kind, ev) => self.stream_item(kind, ev),
                Wake::Command(c) => self.command(c),
                Wake::Timer => {}
                Wake::Stop => return,
            }
            while let Ok(c) = self.cmds.try_recv() {
                self.command(c);
            }
        }
    }

    fn busy(&self) -> bool {
        self.scheduler_dirty
            || self.dirty.values().any(|s| !s.is_empty())
            || self.timers.next_due().is_some_and(|d| d <= self.now())
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::SetNodeReady(name, ready, tx) => {
                let r = self.set_node_ready(&name, ready);
                let _ = tx.send(r);
            }
            Command::FaultsChanged => {
                for k in self
                    .objs
                    .get(&Kind::Pdb)
                    .map(|m| m.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    self.mark(Kind::Pdb, k);
                }
                self.schedule_watch_drops();
                self.refresh_all_bad();
            }
            Command::Status(tx) => {
                let _ = tx.send(self.status());
            }
            Command::EndBootstrap => self.bootstrapping = false,
            Command::Health(tx) => {
                let _ = tx.send(self.health_state());
            }
        }
    }

    fn schedule_watch_drops(&mut self) {
        if self.faults().iter().any(|f| matches!(f, Fault::WatchDrops { .. })) {
            let at = self.now();
            self.timers.add(at, Action::WatchDrop);
        }
    }

    pub fn status(&self) -> Status {
        let not_ready = self
            .pods
            .values()
            .filter(|p| !p.terminal() && !p.deleting && (p.node.is_none() || !p.ready) && !self.held_unready(p))
            .count();
        let mut unsatisfied = 0;
        for (kind, objs) in &self.objs {
            for o in objs.values() {
                let ok = match kind {
                    Kind::ReplicaSet | Kind::StatefulSet => {
                        self.active_pods(o.uid()).len() as i64 == o.replicas()
                            && o.v["status"]["observedGeneration"].as_i64() == Some(o.generation())
                    }
                    Kind::Deployment | Kind::DaemonSet => {
                        o.v["status"]["observedGeneration"].as_i64() == Some(o.generation())
                    }
                    _ => true,
                };
                if !ok {
                    unsatisfied += 1;
                }
            }
        }
        Status {
            nodes: self.nodes.len(),
            pods: self.pods.len(),
            pods_not_ready: not_ready,
            workloads_unsatisfied: unsatisfied,
            bootstrapping: self.bootstrapping,
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now();
        while self.budget > 0 {
            let Some(a) = self.timers.pop_due(now) else { break };
            self.act(a);
        }
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::PodStarted(k, uid) => self.pod_started(&k, &uid),
            Action::PodReady(k, uid) => self.pod_ready(&k, &uid),
            Action::PodExit(k, uid, ok, msg) => self.pod_exit(&k, &uid, ok, &msg),
            Action::PodGone(k, uid) => self.pod_gone(&k, &uid),
            Action::UpgradeApply(k, uid) => self.upgrade_apply(&k, &uid),
            Action::RebootDone(node, k, uid) => self.reboot_done(&node, &k, &uid),
            Action::NodeReboot(node) => self.node_reboot(&node),
            Action::NodeRebootDone(node) => self.node_reboot_done(&node),
            Action::Reconcile(kind, k) => self.mark(kind, k),
            Action::Heartbeat => self.heartbeat(),
            Action::WatchDrop => {
                let every = self.faults().iter().find_map(|f| match f {
                    Fault::WatchDrops { every_seconds } => Some(*every_seconds),
                    _ => None,
                });
                if let Some(every) = every {
                    self.store.close_watches();
                    self.after(every.max(1.0), Action::WatchDrop);
                }
            }
        }
    }

    fn reconcile(&mut self) {
        for kind in [
            Kind::Node,
            Kind::Pod,
            Kind::Deployment,
            Kind::ReplicaSet,
            Kind::StatefulSet,
            Kind::DaemonSet,
            Kind::Job,
            Kind::Pdb,
        ] {
            while self.budget > 0 {
                let Some(k) = self.dirty.get_mut(&kind).and_then(|s| s.pop_first()) else {
                    break;
                };
                match kind {
                    Kind::Node => self.kubelet_node(&k.1),
                    Kind::Pod => self.kubelet_pod(&k),
                    Kind::Deployment => self.reconcile_deployment(&k),
                    Kind::ReplicaSet => self.reconcile_replicaset(&k),
                    Kind::StatefulSet => self.reconcile_statefulset(&k),
                    Kind::DaemonSet => self.reconcile_daemonset(&k),
                    Kind::Job => self.reconcile_job(&k),
                    Kind::Pdb => self.reconcile_pdb(&k),
                }
            }
        }
        if self.budget > 0 && self.scheduler_dirty {
            self.schedule();
        }
    }

    // ---- watches ----

    fn drain(&mut self) {
        loop {
            let mut any = false;
            for i in 0..self.streams.len() {
                loop {
                    let kind = self.streams[i].0;
                    // Unconstrained: tokio's cooperative budget would otherwise
                    // report Pending for events that are there, and a pass
                    // would act on a stale cache (duplicate pods).
                    let item = match tokio::task::unconstrained(self.streams[i].1.next()).now_or_never() {
                        Some(item) => item,
                        None => break,
                    };
                    any = true;
                    self.stream_item(kind, item);
                }
            }
            if !any {
                return;
            }
        }
    }

    fn stream_item(&mut self, kind: Kind, item: Option<Result<Arc<WatchEvent>, ApiError>>) {
        match item {
            Some(Ok(ev)) => self.handle(kind, ev.type_, ev.object.clone(), ev.prev.clone()),
            Some(Err(_)) => self.relist(kind),
            None => {}
        }
    }

    /// The watch fell behind the kept history: list again and reconcile the
    /// cache with what is there now.
    fn relist(&mut self, kind: Kind) {
        let Ok((items, stream)) = self.store.watch(&kind.gr(), None) else {
            return;
        };
        if let Some(slot) = self.streams.iter_mut().find(|(k, _)| *k == kind) {
            slot.1 = stream;
        }
        let present: HashSet<Key> = items.iter().map(|s| key_of(s)).collect();
        let gone: Vec<Arc<Stored>> = match kind {
            Kind::Pod => self
                .pods
                .iter()
                .filter(|(k, _)| !present.contains(*k))
                .map(|(_, p)| p.stored.clone())
                .collect(),
            Kind::Node => self
                .nodes
                .iter()
                .filter(|(n, _)| !present.contains(&(String::new(), (*n).clone())))
                .map(|(_, n)| n.stored.clone())
                .collect(),
            other => self
                .objs
                .get(&other)
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| !present.contains(*k))
                        .map(|(_, o)| o.stored.clone())
                        .collect()
                })
                .unwrap_or_default(),
        };
        for s in gone {
            self.handle(kind, EventType::Deleted, s, None);
        }
        for s in items {
            self.handle(kind, EventType::Modified, s, None);
        }
    }

    fn handle(&mut self, kind: Kind, t: EventType, s: Arc<Stored>, _prev: Option<Arc<Stored>>) {
        match kind {
            Kind::Pod => self.on_pod(t, s),
            Kind::Node => self.on_node(t, s),
            other => self.on_obj(other, t, s),
        }
    }

    fn on_pod(&mut self, t: EventType, s: Arc<Stored>) {
        let key = key_of(&s);
        let old = self.pods.remove(&key);
        if let Some(o) = &old {
            self.unindex_pod(&key, o);
        }
        let new = (t != EventType::Deleted).then(|| PodView::parse(s));
        self.check_disruption(&key, old.as_ref(), new.as_ref());
        self.record_pod(old.as_ref(), new.as_ref());
        for p in [old.as_ref(), new.as_ref()].into_iter().flatten() {
            if let Some((okind, ouid)) = &p.owner
                && let Some((k, ok)) = self.uid_index.get(ouid).cloned()
                && Kind::from_owner(okind) == Some(k)
            {
                self.mark(k, ok);
            }
            for pdb in self.pdbs_for(&key.0, &p.stored.labels) {
                self.mark(Kind::Pdb, pdb);
            }
        }
        if let Some(o) = &old
            && new.is_none()
        {
            self.own_deletes.remove(&o.uid);
            if o.node.is_some() && !self.unbound.is_empty() {
                self.retry_unschedulable = true;
                self.scheduler_dirty = true;
            }
        }
        if let Some(n) = new {
            if n.node.is_some() {
                self.mark(Kind::Pod, key.clone());
            } else if !n.deleting && !n.terminal() {
                self.unbound.insert(key.clone());
                self.scheduler_dirty = true;
            }
            self.index_pod(&key, &n);
            let mirror_on = n.node.clone().filter(|_| n.mirror);
            self.pods.insert(key, n);
            // A static pod's image is its component's version.
            if let Some(node) = mirror_on {
                self.refresh_bad(&node);
            }
        }
    }

    fn index_pod(&mut self, key: &Key, p: &PodView) {
        if let Some(n) = &p.node {
            self.pods_on_node.entry(n.clone()).or_default().insert(key.clone());
        }
        if let Some((_, uid)) = &p.owner {
            self.pods_by_owner.entry(uid.clone()).or_default().insert(key.clone());
            if let Some(n) = p.node.as_ref().filter(|_| !self.prebound.remove(key)) {
                *self
                    .owner_nodes
                    .entry(uid.clone())
                    .or_default()
                    .entry(n.clone())
                    .or_default() += 1;
            }
        }
        for pdb in self.pdbs_for(&key.0, &p.stored.labels) {
            self.pdb_members.entry(pdb).or_default().insert(key.clone());
        }
    }

    fn unindex_pod(&mut self, key: &Key, p: &PodView) {
        if let Some(n) = &p.node
            && let Some(set) = self.pods_on_node.get_mut(n)
        {
            set.remove(key);
            if set.is_empty() {
                self.pods_on_node.remove(n);
            }
        }
        if let Some((_, uid)) = &p.owner {
            if let Some(set) = self.pods_by_owner.get_mut(uid) {
                set.remove(key);
                if set.is_empty() {
                    self.pods_by_owner.remove(uid);
                }
            }
            if let (Some(n), Some(m)) = (&p.node, self.owner_nodes.get_mut(uid)) {
                if let Some(c) = m.get_mut(n) {
                    *c -= 1;
                    if *c == 0 {
                        m.remove(n);
                    }
                }
                if m.is_empty() {
                    self.owner_nodes.remove(uid);
                }
            }
        }
        for pdb in self.pdbs_for(&key.0, &p.stored.labels) {
            if let Some(m) = self.pdb_members.get_mut(&pdb) {
                m.remove(key);
            }
        }
        self.unbound.remove(key);
    }

    /// The PDBs in `ns` whose selector matches `labels`.
    pub fn pdbs_for(&self, ns: &str, labels: &[(Box<str>, Box<str>)]) -> Vec<Key> {
        let mut out = Vec::new();
        for (k, v) in labels {
            if let Some(set) = self.pdb_by_label.get(&(ns.to_string(), k.to_string(), v.to_string())) {
                for pdb in set {
                    if self.pdb_selectors.get(pdb).is_some_and(|s| s.matches(labels)) && !out.contains(pdb) {
                        out.push(pdb.clone());
                    }
                }
            }
        }
        if let Some(set) = self.pdb_generic.get(ns) {
            for pdb in set {
                if self.pdb_selectors.get(pdb).is_some_and(|s| s.matches(labels)) && !out.contains(pdb) {
                    out.push(pdb.clone());
                }
            }
        }
        out
    }

    fn on_node(&mut self, t: EventType, s: Arc<Stored>) {
        let name = s.name.to_string();
        let old = self.nodes.remove(&name);
        let new = (t != EventType::Deleted).then(|| NodeView::parse(s));
        self.record_node(&name, old.as_ref(), new.as_ref());
        let placement_changed = match (&old, &new) {
            (Some(o), Some(n)) => o.stored.labels != n.stored.labels || o.taints != n.taints,
            _ => true,
        };
        if placement_changed {
            for k in self
                .objs
                .get(&Kind::DaemonSet)
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                self.mark(Kind::DaemonSet, k);
            }
        }
        let sched_changed = placement_changed
            || old.as_ref().map(|o| (o.ready, o.unschedulable)) != new.as_ref().map(|n| (n.ready, n.unschedulable));
        if sched_changed && !self.unbound.is_empty() {
            self.retry_unschedulable = true;
            self.scheduler_dirty = true;
        }
        match new {
            Some(n) => {
                if !self.node_sim.contains_key(&name) {
                    let index = self
                        .node_index
                        .get(&name)
                        .copied()
                        .unwrap_or(self.node_index.len() + self.node_sim.len());
                    self.node_sim.insert(
                        name.clone(),
                        NodeSim {
                            index,
                            ..Default::default()
                        },
                    );
                    self.mark(Kind::Node, (String::new(), name.clone()));
                }
                self.nodes.insert(name.clone(), n);
                self.refresh_bad(&name);
            }
            None => {
                self.node_sim.remove(&name);
                // Its pods are orphans now: the kubelet pass removes them (pod GC).
                let keys: Vec<Key> = self.pods_on_node.get(&name).into_iter().flatten().cloned().collect();
                for k in keys {
                    self.mark(Kind::Pod, k);
                }
            }
        }
    }

    fn on_obj(&mut self, kind: Kind, t: EventType, s: Arc<Stored>) {
        let key = key_of(&s);
        let map = self.objs.entry(kind).or_default();
        let old = map.remove(&key);
        let new = (t != EventType::Deleted).then(|| Obj::parse(s));
        // A budget's members follow its selector only; most budget events are
        // status writes, and re-matching every pod of the namespace on each
        // one was most of the simulation's time while draining.
        let keep_pdb_index = kind == Kind::Pdb
            && matches!((&old, &new), (Some(o), Some(n))
                if o.uid() == n.uid() && o.v["spec"]["selector"] == n.v["spec"]["selector"]);
        if let Some(o) = &old {
            self.uid_index.remove(o.stored.uid.as_ref());
            if kind == Kind::ReplicaSet
                && let Some(owner) = o.owner_uid()
                && let Some(set) = self.rs_by_owner.get_mut(owner)
            {
                set.remove(&key);
            }
            if kind == Kind::Pdb && !keep_pdb_index {
                self.unindex_pdb(&key);
            }
        }
        if kind == Kind::ReplicaSet {
            for o in [old.as_ref()].into_iter().flatten() {
                if let Some(owner) = o.owner_uid()
                    && let Some((Kind::Deployment, dk)) = self.uid_index.get(owner).cloned()
                {
                    self.mark(Kind::Deployment, dk);
                }
            }
        }
        let Some(o) = new else {
            if kind == Kind::Job
                && let Some(o) = &old
            {
                self.jobs.remove(o.uid());
            }
            return;
        };
        self.uid_index.insert(o.stored.uid.clone(), (kind, key.clone()));
        if kind == Kind::ReplicaSet
            && let Some(owner) = o.owner_uid()
        {
            self.rs_by_owner
                .entry(Box::from(owner))
                .or_default()
                .insert(key.clone());
            if let Some((Kind::Deployment, dk)) = self.uid_index.get(owner).cloned() {
                self.mark(Kind::Deployment, dk);
            }
        }
        if kind == Kind::Pdb && !keep_pdb_index {
            self.index_pdb(&key, &o);
        }
        self.objs.entry(kind).or_default().insert(key.clone(), o);
        self.mark(kind, key);
    }

    fn index_pdb(&mut self, key: &Key, o: &Obj) {
        let sel_v = &o.v["spec"]["selector"];
        let sel = LabelSelector::from_object(sel_v);
        let first = sel_v["matchLabels"].as_object().and_then(|m| {
            m.iter()
                .next()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        });
        match first {
            Some((k, v)) => {
                self.pdb_by_label
                    .entry((key.0.clone(), k, v))
                    .or_default()
                    .insert(key.clone());
            }
            None => {
                self.pdb_generic.entry(key.0.clone()).or_default().insert(key.clone());
            }
        }
        let members: BTreeSet<Key> = if sel_v.is_null() {
            BTreeSet::new()
        } else {
            self.pods
                .range((key.0.clone(), String::new())..)
                .take_while(|(k, _)| k.0 == key.0)
                .filter(|(_, p)| sel.matches(&p.stored.labels))
                .map(|(k, _)| k.clone())
                .collect()
        };
        self.pdb_selectors.insert(key.clone(), sel);
        self.pdb_members.insert(key.clone(), members);
    }

    fn unindex_pdb(&mut self, key: &Key) {
        for set in self.pdb_by_label.values_mut() {
            set.remove(key);
        }
        if let Some(set) = self.pdb_generic.get_mut(&key.0) {
            set.remove(key);
        }
        self.pdb_selectors.remove(key);
        self.pdb_members.remove(key);
    }

    // ---- queries ----

    pub fn owned_pods(&self, uid: &str) -> Vec<&PodView> {
        self.pods_by_owner
            .get(uid)
            .map(|set| set.iter().filter_map(|k| self.pods.get(k)).collect())
            .unwrap_or_default()
    }

    pub fn active_pods(&self, uid: &str) -> Vec<&PodView> {
        self.owned_pods(uid).into_iter().filter(|p| p.active()).collect()
    }

    // ---- writes ----

    /// Reads the current object, lets `f` change it (false: nothing to do),
    /// and writes it with a resourceVersion precondition, retrying conflicts.
    pub fn write(
        &mut self,
        gr: &GroupResource,
        key: &Key,
        sub: Option<&str>,
        mut f: impl FnMut(&mut Value) -> bool,
    ) -> Option<Value> {
        for _ in 0..5 {
            let cur = self.store.get(gr, &key.0, &key.1).ok()?;
            let mut v = cur.value();
            if !f(&mut v) {
                return None;
            }
            self.budget = self.budget.saturating_sub(1);
            match self.store.update(gr, &key.0, &key.1, v, sub, &write_opts()) {
                Ok(v) => return Some(v),
                Err(e) if e.code == 409 => continue,
                Err(e) => {
                    tracing::debug!(?key, error = %e, "kubesim: write failed");
                    return None;
                }
            }
        }
        None
    }

    pub fn create(&mut self, gr: &GroupResource, ns: &str, obj: Value) -> Option<Value> {
        self.budget = self.budget.saturating_sub(1);
        match self.store.create(gr, ns, obj, &write_opts()) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::debug!(ns, error = %e, "kubesim: create failed");
                None
            }
        }
    }

    /// Deletes a pod as a controller does (its own grace period).
    pub fn delete_pod(&mut self, key: &Key, grace: Option<i64>) {
        if let Some(p) = self.pods.get(key) {
            self.own_deletes.insert(p.uid.clone());
        }
        self.budget = self.budget.saturating_sub(1);
        let opts = DeleteOptions {
            grace_period_seconds: grace,
            ..Default::default()
        };
        if let Err(e) = self.store.delete(&Kind::Pod.gr(), &key.0, &key.1, &opts) {
            tracing::debug!(?key, error = %e, "kubesim: delete failed");
        }
    }

    pub fn delete_obj(&mut self, kind: Kind, key: &Key) {
        self.budget = self.budget.saturating_sub(1);
        let opts = DeleteOptions {
            propagation_policy: Some("Background".into()),
            ..Default::default()
        };
        let _ = self.store.delete(&kind.gr(), &key.0, &key.1, &opts);
    }
}

enum Wake {
    Event(Kind, Option<Result<Arc<WatchEvent>, ApiError>>),
    Command(Command),
    Timer,
    Stop,
}
