//! The garbage collector's and namespace controller's bookkeeping: indexes
//! kept up to date on every write, so a pass costs O(what changed since the
//! last one), not O(owned objects), and the plan of one pass. The store
//! carries the plan out with its ordinary writes.

use super::resources::{GroupResource, ResourceType};
use super::stored::Stored;
use super::strategy::{self, Termination};
use super::table::{Key, Table};
use std::collections::{BTreeMap, HashMap, HashSet};

/// An object of any resource.
pub(super) type Entry = (GroupResource, Key);

#[derive(Default)]
pub(super) struct Collector {
    /// Uids of the stored objects.
    uids: HashSet<Box<str>>,
    /// Owner uid -> the objects naming it in `ownerReferences` (the owner may
    /// be gone: those dependents are what the collector deletes).
    dependents: HashMap<Box<str>, HashSet<Entry>>,
    /// Owned objects whose owners may all be gone, for the next pass.
    candidates: HashSet<Entry>,
    /// Terminating objects the collector has to finish: those whose
    /// strategy waits for their contents (namespaces) and those with the
    /// `foregroundDeletion` or `orphan` finalizer.
    finalizing: HashSet<Entry>,
    /// Whether the next pass has something to do.
    pub(super) dirty: bool,
}

/// What one pass found to do, in this order.
pub(super) struct Plan {
    /// Dependents to rid of a gone owner's reference (owner uid).
    pub(super) orphan: Vec<(GroupResource, Key, Box<str>)>,
    /// Objects to delete (ownerless dependents, a foreground owner's
    /// dependents, a terminating namespace's contents).
    pub(super) delete: Vec<Entry>,
    /// Finalizers the collector is done with.
    pub(super) unfinalize: Vec<(GroupResource, Key, &'static str)>,
    /// Terminating objects whose contents are gone (empty namespaces).
    pub(super) emptied: Vec<Entry>,
}

impl Collector {
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
            self.candidates.extend(deps.iter().cloned());
            self.dirty = true;
        }
    }

    /// A resource stops being served: its objects are gone at once.
    pub(super) fn forget(&mut self, gr: &GroupResource, objects: BTreeMap<Key, std::sync::Arc<Stored>>) {
        for (k, o) in objects {
            self.uids.remove(&o.uid);
            let e = (gr.clone(), k);
            self.unindex_owners(&e, &o.owners);
            self.candidates.remove(&e);
            self.finalizing.remove(&e);
            self.owner_gone(&o.uid);
        }
        self.dirty = true;
    }

    /// Keeps the indexes current after `e` changed from `prev` to `new`
    /// (None: removed), and queues what the next pass must look at.
    /// `termination` is what the object's strategy waits for when deleted.
    pub(super) fn track(&mut self, e: Entry, prev: Option<&Stored>, new: Option<&Stored>, termination: Termination) {
        let old_owners: &[Box<str>] = prev.map(|p| &*p.owners).unwrap_or(&[]);
        let new_owners: &[Box<str>] = new.map(|n| &*n.owners).unwrap_or(&[]);
        if old_owners != new_owners {
            self.unindex_owners(&e, old_owners);
            self.index_owners(&e, new_owners);
            // Foreground owners wait for this list to empty; orphaning edits it.
            if !self.finalizing.is_empty() {
                self.dirty = true;
            }
        }
        match new {
            None => {
                if let Some(p) = prev {
                    self.uids.remove(&p.uid);
                    self.owner_gone(&p.uid);
                }
                self.candidates.remove(&e);
                self.finalizing.remove(&e);
                // A terminating namespace waits for its objects to go.
                if !self.finalizing.is_empty() {
                    self.dirty = true;
                }
            }
            Some(n) => {
                if let Some(p) = prev.filter(|p| p.uid != n.uid) {
                    self.uids.remove(&p.uid);
                    self.owner_gone(&p.uid);
                }
                self.uids.insert(n.uid.clone());
                if !n.deleting && !new_owners.is_empty() && new_owners.iter().all(|u| !self.uids.contains(u)) {
                    self.candidates.insert(e.clone());
                    self.dirty = true;
                }
                if n.deleting
                    && (termination == Termination::Contents
                        || n.finalizers
                            .iter()
                            .any(|f| &**f == "foregroundDeletion" || &**f == "orphan"))
                {
                    self.finalizing.insert(e);
                    self.dirty = true;
                } else if !self.finalizing.is_empty() {
                    self.finalizing.remove(&e);
                }
            }
        }
    }

    /// One pass: what to delete, orphan and finish, from the queued
    /// candidates and the terminating objects.
    pub(super) fn plan(
        &mut self,
        tables: &HashMap<GroupResource, Table>,
        types: &BTreeMap<GroupResource, ResourceType>,
    ) -> Plan {
        let mut plan = Plan {
            orphan: Vec::new(),
            delete: Vec::new(),
            unfinalize: Vec::new(),
            emptied: Vec::new(),
        };
        for e in std::mem::take(&mut self.candidates) {
            let Some(o) = tables.get(&e.0).and_then(|t| t.objects.get(&e.1)) else {
                continue;
            };
            if !o.deleting && !o.owners.is_empty() && o.owners.iter().all(|u| !self.uids.contains(u)) {
                plan.delete.push(e);
            }
        }
        let no_deps = HashSet::new();
        for (gr, k) in &self.finalizing {
            let Some(o) = tables.get(gr).and_then(|t| t.objects.get(k)) else {
                continue;
            };
            let deps = self.dependents.get(&o.uid).unwrap_or(&no_deps);
            if o.finalizers.iter().any(|f| &**f == "foregroundDeletion") {
                if deps.is_empty() {
                    plan.unfinalize.push((gr.clone(), k.clone(), "foregroundDeletion"));
                } else {
                    for d in deps {
                        let dep_deleting = tables
                            .get(&d.0)
                            .and_then(|t| t.objects.get(&d.1))
                            .is_some_and(|x| x.deleting);
                        if !dep_deleting {
                            plan.delete.push(d.clone());
                        }
                    }
                }
            }
            if o.finalizers.iter().any(|f| &**f == "orphan") {
                for d in deps {
                    plan.orphan.push((d.0.clone(), d.1.clone(), o.uid.clone()));
                }
                plan.unfinalize.push((gr.clone(), k.clone(), "orphan"));
            }
            let contents = types
                .get(gr)
                .is_some_and(|t| strategy::of(t.strategy).termination() == Termination::Contents);
            if contents {
                // A namespace: its objects go first (named by the key's name).
                let ns = &k.1;
                let mut any = false;
                for (cgr, ct) in tables {
                    let namespaced = types.get(cgr).is_some_and(|t| t.namespaced);
                    if !namespaced {
                        continue;
                    }
                    for (ck, co) in ct.objects.range((ns.clone(), String::new())..) {
                        if &ck.0 != ns {
                            break;
                        }
                        any = true;
                        if !co.deleting {
                            plan.delete.push((cgr.clone(), ck.clone()));
                        }
                    }
                }
                if !any {
                    plan.emptied.push((gr.clone(), k.clone()));
                }
            }
        }
        plan
    }
}
