//! The disruption controller: PDB `expectedPods`, `desiredHealthy`,
//! `currentHealthy`, `disruptionsAllowed`, `observedGeneration`,
//! `disruptedPods` and the `DisruptionAllowed` condition, computed as the
//! real one does, so that the eviction subresource answers 429 exactly when
//! a real cluster would. It also spots disruptions that bypassed the budget.

use super::engine::{Action, Engine, Kind};
use super::objects::{condition, gr_pdbs, set_condition};
use super::recorder::PdbViolation;
use super::scenario::Fault;
use super::view::{Key, PodView};
use super::workloads::scaled;
use crate::meta;
use serde_json::{Map, Value, json};

/// How long an eviction's `disruptedPods` entry holds a pod out of
/// `currentHealthy` if it is not deleted (simulated seconds).
const DISRUPTED_POD_TIMEOUT: f64 = 120.0;

impl Engine {
    /// The scale of the controller owning `p` (Deployment through its
    /// ReplicaSet, ReplicaSet, StatefulSet), or None (bare, DaemonSet, Job).
    fn controller_scale(&self, p: &PodView) -> Option<(String, i64)> {
        let (kind, uid) = p.owner.as_ref()?;
        let (k, key) = self.uid_index.get(uid)?;
        match (kind.as_str(), k) {
            ("ReplicaSet", Kind::ReplicaSet) => {
                let rs = self.obj(Kind::ReplicaSet, key)?;
                if let Some(owner) = rs.owner_uid()
                    && let Some((Kind::Deployment, dk)) = self.uid_index.get(owner)
                {
                    let d = self.obj(Kind::Deployment, dk)?;
                    return Some((d.uid().to_string(), d.replicas()));
                }
                Some((rs.uid().to_string(), rs.replicas()))
            }
            ("StatefulSet", Kind::StatefulSet) => {
                let s = self.obj(Kind::StatefulSet, key)?;
                Some((s.uid().to_string(), s.replicas()))
            }
            _ => None,
        }
    }

    /// `(expectedPods, desiredHealthy)`, or an error message as the real
    /// controller reports when it cannot find the pods' controllers.
    fn pdb_expectations(&self, spec: &Value, pods: &[&PodView]) -> Result<(i64, i64), String> {
        let min = &spec["minAvailable"];
        let max = &spec["maxUnavailable"];
        if min.is_i64() {
            return Ok((pods.len() as i64, min.as_i64().unwrap_or(0)));
        }
        let mut seen = std::collections::BTreeMap::new();
        for p in pods {
            match self.controller_scale(p) {
                Some((uid, n)) => {
                    seen.insert(uid, n);
                }
                None => return Err(format!("found no controllers for pod {:?}", p.stored.name.to_string())),
            }
        }
        let expected: i64 = seen.values().sum();
        if !max.is_null() {
            let m = scaled(max, expected, true, "0");
            Ok((expected, (expected - m).max(0)))
        } else if min.is_string() {
            Ok((expected, scaled(min, expected, true, "0")))
        } else {
            Ok((expected, expected))
        }
    }

    pub(crate) fn reconcile_pdb(&mut self, key: &Key) {
        let Some(pdb) = self.obj(Kind::Pdb, key).cloned() else {
            self.disrupted_since.retain(|(k, _), _| k != key);
            return;
        };
        if pdb.deleting() {
            return;
        }
        let members: Vec<PodView> = self
            .pdb_members
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get(k).cloned())
            .collect();
        let pods: Vec<&PodView> = members.iter().filter(|p| !p.terminal()).collect();
        let expectations = self.pdb_expectations(&pdb.v["spec"], &pods);
        let blocked = self
            .faults()
            .iter()
            .any(|f| matches!(f, Fault::PdbBlocks { namespace, name } if namespace == pdb.ns() && name == pdb.name()));
        let generation = pdb.generation();
        let speed_now = self.now();
        let mut next_check: Option<f64> = None;
        let wall = meta::now();
        // Each entry ages in simulated time from when this controller first
        // saw it. Its stamp is wall time rounded to the second, which at
        // speed 600 alone would be up to 600 simulated seconds off.
        let since: std::collections::HashMap<String, f64> = self
            .disrupted_since
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|((_, pod), t)| (pod.clone(), *t))
            .collect();
        let mut kept: Vec<(String, f64)> = Vec::new();
        // Computed against the freshest PDB, so an eviction that just
        // recorded a disrupted pod is never overwritten.
        self.write(&gr_pdbs(), key, Some("status"), |v| {
            let old_disrupted = v["status"]["disruptedPods"].as_object().cloned().unwrap_or_default();
            let mut disrupted = Map::new();
            for (name, t) in &old_disrupted {
                let Some(p) = pods.iter().find(|p| &*p.stored.name == name) else {
                    continue;
                };
                if p.deleting {
                    continue;
                }
                let first_seen = since.get(name).copied().unwrap_or(speed_now);
                let age = speed_now - first_seen;
                if age < DISRUPTED_POD_TIMEOUT {
                    disrupted.insert(name.clone(), t.clone());
                    kept.push((name.clone(), first_seen));
                    let at = speed_now + (DISRUPTED_POD_TIMEOUT - age);
                    next_check = Some(next_check.map_or(at, |n: f64| n.min(at)));
                }
            }
            let healthy = pods
                .iter()
                .filter(|p| p.healthy() && !disrupted.contains_key(&*p.stored.name))
                .count() as i64;
            let (expected, desired, allowed, err) = match &expectations {
                Ok((e, d)) => (*e, *d, if blocked { 0 } else { (healthy - d).max(0) }, None),
                Err(msg) => (0, 0, 0, Some(msg.clone())),
            };
            let mut conds = v["status"]["conditions"].clone();
            let cond = match &err {
                Some(msg) => condition("DisruptionAllowed", false, "SyncFailed", msg, &wall),
                None if allowed > 0 => condition("DisruptionAllowed", true, "SufficientPods", "", &wall),
                None => condition("DisruptionAllowed", false, "InsufficientPods", "", &wall),
            };
            let mut cond = cond;
            cond["observedGeneration"] = json!(generation);
            set_condition(&mut conds, cond);
            let new = json!({
                "observedGeneration": generation,
                "expectedPods": expected,
                "desiredHealthy": desired,
                "currentHealthy": healthy,
                "disruptionsAllowed": allowed,
                "disruptedPods": disrupted,
                "conditions": conds,
            });
            let mut cmp_old = v["status"].clone();
            let mut cmp_new = new.clone();
            for c in [&mut cmp_old, &mut cmp_new] {
                if let Some(cs) = c["conditions"].as_array_mut() {
                    for x in cs {
                        x.as_object_mut().map(|o| o.remove("lastTransitionTime"));
                    }
                }
                if c["disruptedPods"].as_object().is_some_and(|m| m.is_empty()) {
                    c.as_object_mut().map(|o| o.remove("disruptedPods"));
                }
            }
            if cmp_old == cmp_new {
                return false;
            }
            v["status"] = new;
            if v["status"]["disruptedPods"].as_object().is_some_and(|m| m.is_empty()) {
                v["status"].as_object_mut().map(|o| o.remove("disruptedPods"));
            }
            true
        });
        self.disrupted_since.retain(|(k, _), _| k != key);
        for (pod, t) in kept {
            self.disrupted_since.insert((key.clone(), pod), t);
        }
        if let Some(at) = next_check {
            self.timers.add(at, Action::Reconcile(Kind::Pdb, key.clone()));
        }
    }

    /// Healthy members of `pdb` other than `except`, as the budget counts them.
    fn healthy_members(&self, pdb: &Key, except: &std::collections::HashSet<Key>) -> i64 {
        let disrupted = self
            .obj(Kind::Pdb, pdb)
            .and_then(|o| o.v["status"]["disruptedPods"].as_object().cloned())
            .unwrap_or_default();
        self.pdb_members
            .get(pdb)
            .into_iter()
            .flatten()
            .filter(|k| !except.contains(*k))
            .filter_map(|k| self.pods.get(k))
            .filter(|p| p.healthy() && !disrupted.contains_key(&*p.stored.name))
            .count() as i64
    }

    /// A healthy pod covered by a PDB is going away: a violation if nothing
    /// sanctioned it (an eviction, or one of the simulation's own
    /// controllers) and the budget had no disruption left.
    pub(crate) fn check_disruption(&mut self, key: &Key, old: Option<&PodView>, new: Option<&PodView>) {
        let Some(old) = old else { return };
        if !old.healthy() || new.is_some_and(|n| !n.deleting) || self.own_deletes.contains(&old.uid) {
            return;
        }
        // A pod whose controller is gone is being garbage collected.
        if let Some((_, owner)) = &old.owner
            && !self.uid_index.contains_key(owner)
        {
            return;
        }
        self.check_budget(key, old, "Deletion", &[key.clone()].into());
    }

    /// Records a violation if taking `pod` away now breaks a budget; `gone`
    /// holds it and the pods going away with it (a rebooting node's).
    pub(crate) fn check_budget(&mut self, key: &Key, pod: &PodView, kind: &str, gone: &std::collections::HashSet<Key>) {
        let pdbs = self.pdbs_for(&key.0, &pod.stored.labels);
        for pdb in pdbs {
            let fresh = self.store.get(&gr_pdbs(), &pdb.0, &pdb.1).map(|s| s.value()).ok();
            let Some(fresh) = fresh else { continue };
            if !fresh["status"]["disruptedPods"][&*pod.stored.name].is_null() {
                continue;
            }
            let desired = fresh["status"]["desiredHealthy"].as_i64().unwrap_or(0);
            let others = self.healthy_members(&pdb, gone);
            if others < desired {
                let v = PdbViolation {
                    at: self.now(),
                    time: meta::now(),
                    namespace: pdb.0.clone(),
                    pdb: pdb.1.clone(),
                    pod: pod.stored.name.to_string(),
                    node: pod.node.clone().unwrap_or_default(),
                    kind: kind.to_string(),
                    healthy_after: others,
                    desired_healthy: desired,
                };
                self.shared.recorder.violation(v);
            }
        }
    }
}
