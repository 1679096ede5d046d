//! The workload controllers drover depends on: ReplicaSet, Deployment
//! (rolling update with maxSurge/maxUnavailable), StatefulSet (ordered,
//! stable names, rolling update from the highest ordinal) and DaemonSet
//! (one pod per eligible node, tolerating unschedulable, rolling update).

use super::engine::{Engine, Kind};
use super::objects::{condition, gr_apps, set_condition, template_hash};
use super::scheduler::placement_misfit;
use super::view::{Key, Obj, PodView};
use serde_json::{Map, Value, json};

/// An int-or-percent against `total` (percentages round up or down).
pub fn scaled(v: &Value, total: i64, round_up: bool, default: &str) -> i64 {
    let v = if v.is_null() { json!(default) } else { v.clone() };
    if let Some(i) = v.as_i64() {
        return i;
    }
    let s = v.as_str().unwrap_or("0");
    match s.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) {
        Some(p) => {
            let x = p * total as f64 / 100.0;
            (if round_up { x.ceil() } else { x.floor() }) as i64
        }
        None => s.parse().unwrap_or(0),
    }
}

fn owner_ref(api_version: &str, kind: &str, o: &Obj) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": o.name(),
        "uid": o.uid(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A pod from a controller's template.
pub fn pod_from_template(template: &Value, ns: &str, owner: Value, extra_labels: &[(&str, String)]) -> Value {
    let mut meta = template["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    for (k, v) in extra_labels {
        meta["labels"][*k] = json!(v);
    }
    meta["namespace"] = json!(ns);
    meta["ownerReferences"] = json!([owner]);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": template["spec"].clone(),
    })
}

/// Which surplus pod goes first: unbound, not running, not ready, newest.
fn deletion_rank(p: &PodView) -> (bool, bool, bool, std::cmp::Reverse<String>) {
    let created = p.stored.value()["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or("")
        .to_string();
    (
        p.node.is_some(),
        p.phase == "Running",
        p.ready,
        std::cmp::Reverse(created),
    )
}

/// Writes `status` when it differs from what is stored.
fn status_changed(v: &mut Value, status: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (k, x) in status {
        if v["status"][k] != *x {
            v["status"][k] = x.clone();
            changed = true;
        }
    }
    changed
}

impl Engine {
    fn write_status(&mut self, kind: Kind, key: &Key, status: Map<String, Value>) {
        self.write(&kind.gr(), key, Some("status"), |v| status_changed(v, &status));
    }

    // ---- ReplicaSet ----

    pub(crate) fn reconcile_replicaset(&mut self, key: &Key) {
        let Some(rs) = self.obj(Kind::ReplicaSet, key).cloned() else {
            return;
        };
        if rs.deleting() {
            return;
        }
        let want = rs.replicas().max(0) as usize;
        let mut active: Vec<PodView> = self.active_pods(rs.uid()).into_iter().cloned().collect();
        if active.len() < want {
            let owner = owner_ref("apps/v1", "ReplicaSet", &rs);
            for _ in active.len()..want {
                if self.budget == 0 {
                    self.mark(Kind::ReplicaSet, key.clone());
                    break;
                }
                let mut pod = pod_from_template(&rs.v["spec"]["template"], rs.ns(), owner.clone(), &[]);
                pod["metadata"]["generateName"] = json!(format!("{}-", rs.name()));
                self.create(&Kind::Pod.gr(), rs.ns(), pod);
            }
        } else if active.len() > want {
            active.sort_by_key(deletion_rank);
            for p in &active[..active.len() - want] {
                self.delete_pod(&p.key(), None);
            }
        }
        let pods: Vec<&PodView> = self.active_pods(rs.uid());
        let ready = pods.iter().filter(|p| p.ready).count();
        let mut st = Map::new();
        st.insert("replicas".into(), json!(pods.len()));
        st.insert("fullyLabeledReplicas".into(), json!(pods.len()));
        st.insert("readyReplicas".into(), json!(ready));
        st.insert("availableReplicas".into(), json!(ready));
        st.insert("observedGeneration".into(), json!(rs.generation()));
        self.write_status(Kind::ReplicaSet, key, st);
    }

    // ---- Deployment ----

    pub(crate) fn reconcile_deployment(&mut self, key: &Key) {
        let Some(d) = self.obj(Kind::Deployment, key).cloned() else {
            return;
        };
        if d.deleting() {
            return;
        }
        let replicas = d.replicas().max(0);
        let tpl = d.v["spec"]["template"].clone();
        let hash = template_hash(&tpl);
        let mut rss: Vec<Obj> = self
            .rs_by_owner
            .get(d.uid())
            .into_iter()
            .flatten()
            .filter_map(|k| self.obj(Kind::ReplicaSet, k).cloned())
            .collect();
        rss.sort_by_key(|r| r.v["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string());
        let Some(new) = rss
            .iter()
            .find(|r| r.v["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
            .cloned()
        else {
            let revision = rss
                .iter()
                .filter_map(|r| {
                    r.v["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                        .as_str()?
                        .parse::<i64>()
                        .ok()
                })
                .max()
                .unwrap_or(0)
                + 1;
            let old_pods: i64 = rss.iter().map(|r| r.replicas()).sum();
            let mut t = tpl.clone();
            t["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut selector = d.v["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let rs = json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": format!("{}-{hash}", d.name()),
                    "namespace": d.ns(),
                    "labels": t["metadata"]["labels"],
                    "annotations": {
                        "deployment.kubernetes.io/revision": revision.to_string(),
                        "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                    },
                    "ownerReferences": [owner_ref("apps/v1", "Deployment", &d)],
                },
                "spec": {
                    "replicas": if old_pods == 0 { replicas } else { 0 },
                    "selector": selector,
                    "template": t,
                },
            });
            self.create(&gr_apps("replicasets"), d.ns(), rs);
            return;
        };
        let old: Vec<&Obj> = rss.iter().filter(|r| r.uid() != new.uid()).collect();
        let available = |e: &Engine, r: &Obj| e.active_pods(r.uid()).iter().filter(|p| p.ready).count() as i64;
        let strategy = d.v["spec"]["strategy"]["type"].as_str().unwrap_or("RollingUpdate");
        let mut targets: Vec<(Key, i64)> = Vec::new();
        let old_spec: i64 = old.iter().map(|r| r.replicas()).sum();
        let (max_surge, max_unavailable) = if strategy == "Recreate" {
            (0, replicas)
        } else {
            let ru = &d.v["spec"]["strategy"]["rollingUpdate"];
            let s = scaled(&ru["maxSurge"], replicas, true, "25%");
            let u = scaled(&ru["maxUnavailable"], replicas, false, "25%");
            (s, if s == 0 && u == 0 { 1 } else { u })
        };
        if strategy == "Recreate" {
            let old_active: usize = old.iter().map(|r| self.active_pods(r.uid()).len()).sum();
            for r in &old {
                targets.push(((r.ns().into(), r.name().into()), 0));
            }
            let n = if old_active == 0 { replicas } else { 0 };
            targets.push(((new.ns().into(), new.name().into()), n));
        } else {
            let new_spec = new.replicas();
            let mut new_target = new_spec;
            if old_spec == 0 {
                new_target = replicas;
            } else {
                let allowed = replicas + max_surge - (old_spec + new_spec);
                if allowed > 0 {
                    new_target = replicas.min(new_spec + allowed);
                }
            }
            let min_available = replicas - max_unavailable;
            let total_available = available(self, &new) + old.iter().map(|r| available(self, r)).sum::<i64>();
            let mut can_remove = (total_available - min_available).max(0);
            // Unhealthy old pods go at once (they cost no availability), then
            // available ones as far as maxUnavailable allows.
            let mut old_targets: Vec<(Key, i64)> = Vec::new();
            for r in &old {
                let keep = available(self, r).min(r.replicas());
                let cut = keep.min(can_remove);
                can_remove -= cut;
                old_targets.push(((r.ns().into(), r.name().into()), keep - cut));
            }
            targets.extend(old_targets);
            targets.push(((new.ns().into(), new.name().into()), new_target));
        }
        for (k, n) in targets {
            self.write(&gr_apps("replicasets"), &k, None, |v| {
                if v["spec"]["replicas"].as_i64() == Some(n) {
                    return false;
                }
                v["spec"]["replicas"] = json!(n);
                v["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] = json!(replicas.to_string());
                true
            });
        }
        let mut total = 0usize;
        let mut ready = 0usize;
        for r in &rss {
            let pods = self.active_pods(r.uid());
            total += pods.len();
            ready += pods.iter().filter(|p| p.ready).count();
        }
        let updated = self.active_pods(new.uid()).len();
        let new_ready = self.active_pods(new.uid()).iter().filter(|p| p.ready).count();
        let old_active: usize = old.iter().map(|r| self.active_pods(r.uid()).len()).sum();
        let now = crate::meta::now();
        let complete = updated as i64 == replicas && new_ready as i64 == replicas && old_active == 0;
        let available_ok = ready as i64 >= replicas - max_unavailable;
        let mut conds = d.v["status"]["conditions"].clone();
        set_condition(
            &mut conds,
            if available_ok {
                condition(
                    "Available",
                    true,
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                    &now,
                )
            } else {
                condition(
                    "Available",
                    false,
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                    &now,
                )
            },
        );
        let (reason, msg) = if complete {
            (
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{}\" has successfully progressed.", new.name()),
            )
        } else {
            (
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{}\" is progressing.", new.name()),
            )
        };
        set_condition(&mut conds, condition("Progressing", true, reason, &msg, &now));
        for c in conds.as_array_mut().into_iter().flatten() {
            if c.get("lastUpdateTime").is_none() {
                c["lastUpdateTime"] = c["lastTransitionTime"].clone();
            }
        }
        let mut st = Map::new();
        st.insert("observedGeneration".into(), json!(d.generation()));
        st.insert("replicas".into(), json!(total));
        st.insert("updatedReplicas".into(), json!(updated));
        st.insert("readyReplicas".into(), json!(ready));
        st.insert("availableReplicas".into(), json!(ready));
        st.insert("unavailableReplicas".into(), json!((replicas - ready as i64).max(0)));
        st.insert("conditions".into(), conds);
        self.write_status(Kind::Deployment, key, st);
    }

    // ---- StatefulSet ----

    pub(crate) fn reconcile_statefulset(&mut self, key: &Key) {
        let Some(s) = self.obj(Kind::StatefulSet, key).cloned() else {
            return;
        };
        if s.deleting() {
            return;
        }
        let replicas = s.replicas().max(0);
        let tpl = s.v["spec"]["template"].clone();
        let revision = format!("{}-{}", s.name(), template_hash(&tpl));
        let parallel = s.v["spec"]["podManagementPolicy"] == "Parallel";
        let on_delete = s.v["spec"]["updateStrategy"]["type"] == "OnDelete";
        let owned: Vec<PodView> = self.owned_pods(s.uid()).into_iter().cloned().collect();
        let by_name = |n: &str| owned.iter().find(|p| &*p.stored.name == n);
        let owner = owner_ref("apps/v1", "StatefulSet", &s);
        let mut blocked = false;
        for i in 0..replicas {
            let name = format!("{}-{i}", s.name());
            match by_name(&name) {
                None => {
                    if blocked && !parallel {
                        break;
                    }
                    let mut pod = pod_from_template(
                        &tpl,
                        s.ns(),
                        owner.clone(),
                        &[
                            ("controller-revision-hash", revision.clone()),
                            ("statefulset.kubernetes.io/pod-name", name.clone()),
                            ("apps.kubernetes.io/pod-index", i.to_string()),
                        ],
                    );
                    pod["metadata"]["name"] = json!(name);
                    pod["spec"]["hostname"] = json!(name);
                    if let Some(svc) = s.v["spec"]["serviceName"].as_str() {
                        pod["spec"]["subdomain"] = json!(svc);
                    }
                    self.create(&Kind::Pod.gr(), s.ns(), pod);
                    blocked = true;
                }
                Some(p) if p.terminal() && !p.deleting => {
                    self.delete_pod(&p.key(), Some(0));
                    blocked = true;
                }
                Some(p) if !p.ready || p.deleting => blocked = true,
                Some(_) => {}
            }
            if blocked && !parallel {
                break;
            }
        }
        let extra: Vec<&PodView> = owned
            .iter()
            .filter(|p| p.active() && ordinal(&p.stored.name, s.name()).is_some_and(|o| o >= replicas))
            .collect();
        if !blocked && let Some(p) = extra.iter().max_by_key(|p| ordinal(&p.stored.name, s.name())) {
            self.delete_pod(&p.key(), None);
            blocked = true;
        }
        if !blocked && !on_delete {
            // Rolling update: the highest ordinal on an old revision goes first.
            let stale = owned
                .iter()
                .filter(|p| p.active() && p.revision.as_deref() != Some(revision.as_str()))
                .filter(|p| ordinal(&p.stored.name, s.name()).is_some_and(|o| o < replicas))
                .max_by_key(|p| ordinal(&p.stored.name, s.name()));
            if let Some(p) = stale {
                self.delete_pod(&p.key(), None);
            }
        }
        let pods: Vec<&PodView> = self.active_pods(s.uid());
        let ready = pods.iter().filter(|p| p.ready).count();
        let updated = pods
            .iter()
            .filter(|p| p.revision.as_deref() == Some(revision.as_str()))
            .count();
        let current_rev = if updated == pods.len() && pods.len() as i64 == replicas {
            revision.clone()
        } else {
            s.v["status"]["currentRevision"]
                .as_str()
                .unwrap_or(&revision)
                .to_string()
        };
        let current = pods
            .iter()
            .filter(|p| p.revision.as_deref() == Some(current_rev.as_str()))
            .count();
        let mut st = Map::new();
        st.insert("observedGeneration".into(), json!(s.generation()));
        st.insert("replicas".into(), json!(pods.len()));
        st.insert("readyReplicas".into(), json!(ready));
        st.insert("availableReplicas".into(), json!(ready));
        st.insert("currentReplicas".into(), json!(current));
        st.insert("updatedReplicas".into(), json!(updated));
        st.insert("currentRevision".into(), json!(current_rev));
        st.insert("updateRevision".into(), json!(revision));
        st.insert("collisionCount".into(), json!(0));
        self.write_status(Kind::StatefulSet, key, st);
    }

    // ---- DaemonSet ----

    pub(crate) fn reconcile_daemonset(&mut self, key: &Key) {
        let Some(ds) = self.obj(Kind::DaemonSet, key).cloned() else {
            return;
        };
        if ds.deleting() {
            return;
        }
        let mut tpl = ds.v["spec"]["template"].clone();
        let hash = template_hash(&tpl);
        let generation = ds.generation();
        add_daemon_tolerations(&mut tpl);
        let owned: Vec<PodView> = self.owned_pods(ds.uid()).into_iter().cloned().collect();
        let mut by_node: std::collections::HashMap<String, Vec<&PodView>> = Default::default();
        for p in &owned {
            if let Some(n) = p.node.clone().or_else(|| p.target_node.clone()) {
                by_node.entry(n).or_default().push(p);
            }
        }
        let eligible: Vec<String> = self
            .nodes
            .values()
            .filter(|n| placement_misfit(n, &tpl["spec"]).is_none())
            .map(|n| n.name.clone())
            .collect();
        let owner = owner_ref("apps/v1", "DaemonSet", &ds);
        let ru = &ds.v["spec"]["updateStrategy"];
        let rolling = ru["type"].as_str().unwrap_or("RollingUpdate") == "RollingUpdate";
        // A set: with thousands of nodes, Vec::contains per pod would be quadratic.
        let eligible_set: std::collections::HashSet<&str> = eligible.iter().map(String::as_str).collect();
        let max_unavailable = scaled(&ru["rollingUpdate"]["maxUnavailable"], eligible.len() as i64, true, "1").max(1);
        let mut unavailable = 0i64;
        let mut stale: Vec<&PodView> = Vec::new();
        for node in &eligible {
            let pods = by_node.get(node).cloned().unwrap_or_default();
            let live: Vec<&PodView> = pods.iter().copied().filter(|p| p.active()).collect();
            if live.is_empty() {
                unavailable += 1;
                let waiting = pods.iter().any(|p| p.deleting);
                if !waiting && self.budget > 0 {
                    let mut pod = pod_from_template(
                        &tpl,
                        ds.ns(),
                        owner.clone(),
                        &[
                            ("controller-revision-hash", hash.clone()),
                            ("pod-template-generation", generation.to_string()),
                        ],
                    );
                    pod["metadata"]["generateName"] = json!(format!("{}-", ds.name()));
                    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
                        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
                    });
                    self.create(&Kind::Pod.gr(), ds.ns(), pod);
                } else if !waiting {
                    self.mark(Kind::DaemonSet, key.clone());
                }
                continue;
            }
            for extra in live.iter().skip(1) {
                self.delete_pod(&extra.key(), None);
            }
            let p = live[0];
            if !p.ready {
                unavailable += 1;
            }
            if p.revision.as_deref() != Some(hash.as_str()) {
                stale.push(p);
            }
        }
        for (node, pods) in &by_node {
            if !eligible_set.contains(node.as_str()) {
                for p in pods.iter().filter(|p| p.active()) {
                    self.delete_pod(&p.key(), None);
                }
            }
        }
        if rolling {
            for p in stale {
                if !p.ready {
                    self.delete_pod(&p.key(), None);
                } else if unavailable < max_unavailable {
                    self.delete_pod(&p.key(), None);
                    unavailable += 1;
                }
            }
        }
        let pods: Vec<&PodView> = self.active_pods(ds.uid());
        let on_eligible = |p: &&PodView| {
            p.node
                .as_ref()
                .or(p.target_node.as_ref())
                .is_some_and(|n| eligible_set.contains(n.as_str()))
        };
        let scheduled = pods.iter().filter(|p| p.node.is_some() && on_eligible(p)).count();
        let ready = pods.iter().filter(|p| p.ready && on_eligible(p)).count();
        let updated = pods
            .iter()
            .filter(|p| p.node.is_some() && p.revision.as_deref() == Some(hash.as_str()))
            .count();
        let misscheduled = pods.iter().filter(|p| p.node.is_some() && !on_eligible(p)).count();
        let mut st = Map::new();
        st.insert("observedGeneration".into(), json!(generation));
        st.insert("desiredNumberScheduled".into(), json!(eligible.len()));
        st.insert("currentNumberScheduled".into(), json!(scheduled));
        st.insert("numberMisscheduled".into(), json!(misscheduled));
        st.insert("numberReady".into(), json!(ready));
        st.insert("numberAvailable".into(), json!(ready));
        st.insert("numberUnavailable".into(), json!(eligible.len().saturating_sub(ready)));
        st.insert("updatedNumberScheduled".into(), json!(updated));
        self.write_status(Kind::DaemonSet, key, st);
    }
}

fn ordinal(pod: &str, set: &str) -> Option<i64> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// The tolerations the DaemonSet controller adds to its pods.
fn add_daemon_tolerations(tpl: &mut Value) {
    let mut tols: Vec<Value> = tpl["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    let mut add = |key: &str, effect: &str| {
        if !tols.iter().any(|t| t["key"] == key && t["effect"] == effect) {
            tols.push(json!({"key": key, "operator": "Exists", "effect": effect}));
        }
    };
    add("node.kubernetes.io/not-ready", "NoExecute");
    add("node.kubernetes.io/unreachable", "NoExecute");
    add("node.kubernetes.io/disk-pressure", "NoSchedule");
    add("node.kubernetes.io/memory-pressure", "NoSchedule");
    add("node.kubernetes.io/pid-pressure", "NoSchedule");
    add("node.kubernetes.io/unschedulable", "NoSchedule");
    if tpl["spec"]["hostNetwork"] == true {
        add("node.kubernetes.io/network-unavailable", "NoSchedule");
    }
    tpl["spec"]["tolerations"] = json!(tols);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent() {
        assert_eq!(scaled(&json!(2), 10, true, "25%"), 2);
        assert_eq!(scaled(&Value::Null, 10, true, "25%"), 3);
        assert_eq!(scaled(&Value::Null, 10, false, "25%"), 2);
        assert_eq!(scaled(&json!("50%"), 3, true, "0"), 2);
        assert_eq!(ordinal("db-12", "db"), Some(12));
        assert_eq!(ordinal("db-x-1", "db"), None);
    }
}
