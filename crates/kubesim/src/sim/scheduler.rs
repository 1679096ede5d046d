//! The scheduler: binds pending pods to Ready nodes, respecting
//! `nodeSelector`, required node affinity, taints and tolerations,
//! `unschedulable` and the node's pod capacity; the least loaded of a
//! sample of feasible nodes wins, as with `percentageOfNodesToScore`;
//! untolerated PreferNoSchedule taints rank first.

use super::engine::Engine;
use super::objects::{condition, gr_pods, set_condition};
use super::view::{Key, NodeView, Taint, affinity_node};
use crate::meta;
use serde_json::{Value, json};

/// How many feasible nodes are scored per pod, as kube-scheduler's
/// adaptive `percentageOfNodesToScore` finds them: every node up to 100;
/// beyond, (50 - nodes/125)% of them (at least 5%), and never fewer than 100.
fn sample_size(nodes: usize) -> usize {
    if nodes <= 100 {
        return nodes.max(1);
    }
    let pct = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * pct / 100).max(100)
}

pub fn tolerates(tolerations: &[Value], t: &Taint) -> bool {
    tolerations.iter().any(|tol| {
        let op = tol["operator"].as_str().unwrap_or("Equal");
        let key = tol["key"].as_str().unwrap_or("");
        let effect = tol["effect"].as_str().unwrap_or("");
        let effect_ok = effect.is_empty() || effect == t.effect;
        let key_ok = if key.is_empty() {
            op == "Exists"
        } else {
            key == t.key && (op == "Exists" || tol["value"].as_str().unwrap_or("") == t.value)
        };
        effect_ok && key_ok
    })
}

/// Why a node does not fit a pod, in the scheduler's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Misfit {
    NotReady,
    Unschedulable,
    Taint,
    Selector,
    TooManyPods,
}

impl Misfit {
    fn text(self) -> &'static str {
        match self {
            Misfit::NotReady => "node(s) were not ready",
            Misfit::Unschedulable => "node(s) were unschedulable",
            Misfit::Taint => "node(s) had untolerated taint(s)",
            Misfit::Selector => "node(s) didn't match Pod's node affinity/selector",
            Misfit::TooManyPods => "Too many pods",
        }
    }
}

fn expressions_match(n: &NodeView, exprs: &[Value]) -> bool {
    exprs.iter().all(|e| {
        let key = e["key"].as_str().unwrap_or("");
        let vals: Vec<&str> = e["values"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let have = n.label(key);
        match e["operator"].as_str().unwrap_or("") {
            "In" => have.is_some_and(|h| vals.contains(&h)),
            "NotIn" => have.is_none_or(|h| !vals.contains(&h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    })
}

/// Taints, node selector and required node affinity: what decides where a
/// pod may run at all (the DaemonSet controller uses it too).
pub(crate) fn placement_misfit(n: &NodeView, spec: &Value) -> Option<Misfit> {
    let tols: &[Value] = spec["tolerations"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if n.taints
        .iter()
        .any(|t| (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerates(tols, t))
    {
        return Some(Misfit::Taint);
    }
    if let Some(sel) = spec["nodeSelector"].as_object()
        && !sel.iter().all(|(k, v)| n.label(k) == v.as_str())
    {
        return Some(Misfit::Selector);
    }
    let terms =
        &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    if let Some(terms) = terms.as_array() {
        let any = terms.iter().any(|t| {
            let exprs = t["matchExpressions"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let fields_ok = t["matchFields"].as_array().is_none_or(|fs| {
                fs.iter().all(|f| {
                    let vals: Vec<&str> = f["values"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    match f["operator"].as_str().unwrap_or("") {
                        "In" => vals.contains(&n.name.as_str()),
                        "NotIn" => !vals.contains(&n.name.as_str()),
                        _ => false,
                    }
                })
            });
            fields_ok && expressions_match(n, exprs)
        });
        if !terms.is_empty() && !any {
            return Some(Misfit::Selector);
        }
    }
    None
}

impl Engine {
    fn misfit(&self, n: &NodeView, spec: &Value) -> Option<Misfit> {
        if !n.ready || self.node_sim.get(&n.name).is_some_and(|s| s.down) {
            return Some(Misfit::NotReady);
        }
        let tols: &[Value] = spec["tolerations"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if n.unschedulable {
            let t = Taint {
                key: "node.kubernetes.io/unschedulable".into(),
                value: String::new(),
                effect: "NoSchedule".into(),
            };
            if !tolerates(tols, &t) {
                return Some(Misfit::Unschedulable);
            }
        }
        if let Some(m) = placement_misfit(n, spec) {
            return Some(m);
        }
        if self.pods_on_node.get(&n.name).map_or(0, |s| s.len()) >= n.max_pods {
            return Some(Misfit::TooManyPods);
        }
        None
    }

    fn load(&self, node: &str) -> usize {
        self.pods_on_node.get(node).map_or(0, |s| s.len())
    }

    /// Picks a node: fewest untolerated PreferNoSchedule taints, then
    /// fewest pods of the same owner (spreading replicas), then fewest pods.
    fn pick_node(&mut self, spec: &Value, owner: Option<&str>) -> Option<String> {
        if let Some(target) = affinity_node(spec) {
            let n = self.nodes.get(&target)?;
            return self.misfit(n, spec).is_none().then_some(target);
        }
        let empty = std::collections::HashMap::new();
        let siblings = owner.and_then(|o| self.owner_nodes.get(o)).unwrap_or(&empty);
        let mut best: Option<((usize, u32, usize), String)> = None;
        let mut seen = 0;
        let sample = sample_size(self.nodes.len());
        let tols: &[Value] = spec["tolerations"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let start = self.sched_cursor % self.nodes.len().max(1);
        for n in self.nodes.values().skip(start).chain(self.nodes.values().take(start)) {
            if self.misfit(n, spec).is_some() {
                continue;
            }
            // kube-scheduler's TaintToleration score: a node with a
            // PreferNoSchedule taint the pod does not tolerate is taken only
            // when no other fits (modelled as ranking before spreading).
            let avoided = n
                .taints
                .iter()
                .filter(|t| t.effect == "PreferNoSchedule" && !tolerates(tols, t))
                .count();
            let load = (avoided, siblings.get(&n.name).copied().unwrap_or(0), self.load(&n.name));
            if best.as_ref().is_none_or(|(l, _)| load < *l) {
                best = Some((load, n.name.clone()));
            }
            seen += 1;
            if seen >= sample {
                break;
            }
        }
        self.sched_cursor = self.sched_cursor.wrapping_add(seen.max(1));
        best.map(|(_, n)| n)
    }

    fn unschedulable_message(&self, spec: &Value) -> String {
        let mut counts: std::collections::BTreeMap<Misfit, usize> = Default::default();
        for n in self.nodes.values() {
            if let Some(m) = self.misfit(n, spec) {
                *counts.entry(m).or_default() += 1;
            }
        }
        let parts: Vec<String> = counts.iter().map(|(m, c)| format!("{c} {}", m.text())).collect();
        format!(
            "0/{} nodes are available: {}. preemption: 0/{} nodes are available: {} Preemption is not helpful for scheduling.",
            self.nodes.len(),
            parts.join(", "),
            self.nodes.len(),
            self.nodes.len()
        )
    }

    pub(crate) fn schedule(&mut self) {
        let retry = std::mem::take(&mut self.retry_unschedulable);
        let keys: Vec<Key> = self.unbound.iter().cloned().collect();
        let mut finished = true;
        for k in keys {
            if self.budget == 0 {
                finished = false;
                break;
            }
            let Some(p) = self.pods.get(&k) else {
                self.unbound.remove(&k);
                continue;
            };
            if p.node.is_some() || p.deleting || p.terminal() {
                self.unbound.remove(&k);
                continue;
            }
            if p.scheduling_failed && !retry {
                continue;
            }
            let failed_before = p.scheduling_failed;
            let owner = p.owner.as_ref().map(|(_, u)| u.to_string());
            let spec = p.stored.value()["spec"].clone();
            if spec["schedulerName"].as_str().is_some_and(|s| s != "default-scheduler") {
                continue;
            }
            match self.pick_node(&spec, owner.as_deref()) {
                Some(node) => {
                    let bound = self.write(&gr_pods(), &k, None, |v| {
                        if v["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()) {
                            return false;
                        }
                        v["spec"]["nodeName"] = json!(node);
                        true
                    });
                    if bound.is_some() {
                        self.unbound.remove(&k);
                        // Count the binding now: its event is read after this pass.
                        self.pods_on_node.entry(node.clone()).or_default().insert(k.clone());
                        if let Some(o) = &owner {
                            self.prebound.insert(k.clone());
                            *self
                                .owner_nodes
                                .entry(Box::from(o.as_str()))
                                .or_default()
                                .entry(node)
                                .or_default() += 1;
                        }
                    }
                }
                None if !failed_before => {
                    let msg = self.unschedulable_message(&spec);
                    let now = meta::now();
                    self.write(&gr_pods(), &k, Some("status"), |v| {
                        let mut c = condition("PodScheduled", false, "Unschedulable", &msg, &now);
                        c["lastProbeTime"] = Value::Null;
                        set_condition(&mut v["status"]["conditions"], c);
                        true
                    });
                }
                None => {}
            }
        }
        self.scheduler_dirty = !finished;
        if !finished && retry {
            self.retry_unschedulable = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sample_size;

    #[test]
    fn the_sample_follows_kube_schedulers_adaptive_percentage() {
        assert_eq!(sample_size(10), 10);
        assert_eq!(sample_size(100), 100);
        assert_eq!(sample_size(1000), 420); // 50 - 8 = 42%
        assert_eq!(sample_size(5000), 500); // 50 - 40 = 10%
        assert_eq!(sample_size(20000), 1000); // at least 5%
        assert_eq!(sample_size(150), 100); // never fewer than 100
    }
}
