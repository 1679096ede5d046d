//! The simulated kubelets: pods bound to a node start (Pending → Running →
//! Ready), run-to-completion pods exit, terminating pods stop within their
//! grace period and are then removed, nodes report Ready with heartbeats
//! and can go NotReady (their pods stay, unready) and come back.

use super::engine::{Action, Engine, Kind};
use super::objects::{condition, gr_nodes, gr_pods, pod_ip, ready_condition, set_condition};
use super::scenario::Fault;
use super::view::{Key, PodView};
use crate::meta;
use crate::store::LabelSelector;
use serde_json::{Value, json};

const START: u8 = 0;
const READY: u8 = 1;
const RUN: u8 = 2;
const GONE: u8 = 3;

/// Sets a pod's status to Running on `host_ip`, with every container
/// started; `restart` counts a restart (after a reboot or an upgrade).
pub fn running_status(v: &mut Value, host_ip: &str, pod_ip: &str, ready: bool, restart: bool, now: &str) {
    let st = &mut v["status"];
    st["phase"] = json!("Running");
    st["hostIP"] = json!(host_ip);
    st["hostIPs"] = json!([{"ip": host_ip}]);
    if st["podIP"].is_null() {
        st["podIP"] = json!(pod_ip);
        st["podIPs"] = json!([{"ip": pod_ip}]);
    }
    if st["startTime"].is_null() {
        st["startTime"] = json!(now);
    }
    let conds = &mut st["conditions"];
    for (t, s) in [
        ("PodReadyToStartContainers", true),
        ("Initialized", true),
        ("Ready", ready),
        ("ContainersReady", ready),
        ("PodScheduled", true),
    ] {
        let mut c = condition(t, s, "", "", now);
        c["lastProbeTime"] = Value::Null;
        if !s {
            c["reason"] = json!("ContainersNotReady");
        }
        set_condition(conds, c);
    }
    let old: Vec<Value> = v["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
    let containers = v["spec"]["containers"].as_array().cloned().unwrap_or_default();
    let uid = v["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or("");
            let prev = old.iter().find(|o| o["name"] == name);
            let restarts = prev.and_then(|p| p["restartCount"].as_i64()).unwrap_or(0) + i64::from(restart);
            let started_at = match prev {
                Some(p) if !restart && !p["state"]["running"].is_null() => p["state"]["running"]["startedAt"].clone(),
                _ => json!(now),
            };
            let image = c["image"].as_str().unwrap_or("");
            json!({
                "name": name,
                "image": image,
                "imageID": format!("{}@sha256:{:016x}{:016x}", image.split(':').next().unwrap_or(image), super::objects::fnv(image), super::objects::fnv(name)),
                "containerID": format!("containerd://{:016x}{:016x}", super::objects::fnv(&uid), super::objects::fnv(&format!("{name}{restarts}"))),
                "ready": ready,
                "started": true,
                "restartCount": restarts,
                "state": {"running": {"startedAt": started_at}},
            })
        })
        .collect();
    v["status"]["containerStatuses"] = json!(statuses);
}

/// A running pod's containers exited: phase `Succeeded` (exit code 0,
/// reason `Completed`) or `Failed` (exit code 1, reason `Error`, with
/// `message` as the termination message).
pub fn exit_status(v: &mut Value, ok: bool, message: &str, now: &str) {
    v["status"]["phase"] = json!(if ok { "Succeeded" } else { "Failed" });
    for t in ["Ready", "ContainersReady"] {
        let mut c = condition(t, false, "PodCompleted", "", now);
        c["lastProbeTime"] = Value::Null;
        set_condition(&mut v["status"]["conditions"], c);
    }
    if let Some(cs) = v["status"]["containerStatuses"].as_array_mut() {
        for c in cs {
            let started = c["state"]["running"]["startedAt"].clone();
            let mut term = json!({
                "exitCode": if ok { 0 } else { 1 },
                "reason": if ok { "Completed" } else { "Error" },
                "startedAt": started,
                "finishedAt": now,
                "containerID": c["containerID"],
            });
            if !message.is_empty() {
                term["message"] = json!(message);
            }
            c["state"] = json!({ "terminated": term });
            c["ready"] = json!(false);
            c["started"] = json!(false);
        }
    }
}

/// Marks a running pod (not) Ready, as readiness probes would.
pub fn set_ready(v: &mut Value, ready: bool, now: &str) {
    for t in ["Ready", "ContainersReady"] {
        let mut c = condition(t, ready, "", "", now);
        c["lastProbeTime"] = Value::Null;
        if !ready {
            c["reason"] = json!("ContainersNotReady");
        }
        set_condition(&mut v["status"]["conditions"], c);
    }
    if let Some(cs) = v["status"]["containerStatuses"].as_array_mut() {
        for c in cs {
            c["ready"] = json!(ready);
        }
    }
}

impl Engine {
    fn once(&mut self, uid: &str, stage: u8) -> bool {
        self.kubelet_pending.insert((Box::from(uid), stage))
    }

    fn fired(&mut self, uid: &str, stage: u8) {
        self.kubelet_pending.remove(&(Box::from(uid), stage));
    }

    fn node_up(&self, node: &str) -> bool {
        self.node_sim.get(node).is_some_and(|s| !s.down)
    }

    /// The pod with this key, if it is still the same pod.
    fn same_pod(&self, key: &Key, uid: &str) -> Option<&PodView> {
        self.pods.get(key).filter(|p| &*p.uid == uid)
    }

    /// A node appeared or came back: look at its pods again.
    pub(crate) fn kubelet_node(&mut self, name: &str) {
        let keys: Vec<Key> = self.pods_on_node.get(name).into_iter().flatten().cloned().collect();
        for k in keys {
            self.mark(Kind::Pod, k);
        }
    }

    pub(crate) fn kubelet_pod(&mut self, key: &Key) {
        let Some(p) = self.pods.get(key) else { return };
        let Some(node) = p.node.clone() else { return };
        let uid = p.uid.clone();
        if !self.nodes.contains_key(&node) {
            // The pod garbage collector removes pods bound to nodes that are gone.
            if !self.bootstrapping {
                self.delete_pod(key, Some(0));
            }
            return;
        }
        if !self.node_up(&node) {
            return;
        }
        if p.deleting {
            let secs = if p.terminal() || p.phase == "Pending" {
                0.0
            } else {
                self.shutdown_seconds(p)
            };
            if self.once(&uid, GONE) {
                self.after(secs, Action::PodGone(key.clone(), uid));
            }
            return;
        }
        let (phase, ready, upgrade, always) = (p.phase.clone(), p.ready, p.upgrade.is_some(), p.restart_always);
        if phase == "Running" && self.held_unready(p) {
            // A bad version: its readiness probe fails until the node is not bad.
            if ready {
                let now = meta::now();
                self.write(&gr_pods(), key, Some("status"), |v| {
                    set_ready(v, false, &now);
                    true
                });
            }
            return;
        }
        match (phase.as_str(), ready) {
            ("Pending", _) if self.once(&uid, START) => {
                self.after(self.timing.pod_start_seconds, Action::PodStarted(key.clone(), uid));
            }
            ("Running", false) if self.once(&uid, READY) => {
                self.after(self.timing.pod_ready_seconds, Action::PodReady(key.clone(), uid));
            }
            ("Running", true) if upgrade && self.once(&uid, RUN) => {
                self.start_upgrade(key);
            }
            ("Running", true) if !always && self.once(&uid, RUN) => {
                let (secs, code) = self.job_program(key);
                let msg = if code == 0 {
                    String::new()
                } else {
                    format!("exited with code {code}")
                };
                self.after(secs, Action::PodExit(key.clone(), uid, code == 0, msg));
            }
            _ => {}
        }
    }

    /// How long a pod's containers take to stop after SIGTERM.
    fn shutdown_seconds(&self, p: &PodView) -> f64 {
        let grace = p.grace.max(0) as f64;
        let slow = self.faults().iter().any(|f| match f {
            Fault::SlowTermination { namespace, selector } => {
                *namespace == *p.stored.namespace && {
                    let sel = LabelSelector::from_object(&json!({ "matchLabels": selector }));
                    sel.matches(&p.stored.labels)
                }
            }
            _ => false,
        });
        if slow {
            grace
        } else {
            grace.min(self.timing.pod_shutdown_seconds)
        }
    }

    /// What a plain run-to-completion pod does: it runs `timing.jobRunSeconds`
    /// (or its `kubesim.drover.dev/run-seconds` annotation) and exits 0 (or
    /// its `kubesim.drover.dev/exit-code` annotation).
    fn job_program(&self, key: &Key) -> (f64, i64) {
        let v = self.pods.get(key).map(|p| p.stored.value()).unwrap_or_default();
        let ann = &v["metadata"]["annotations"];
        let secs = ann["kubesim.drover.dev/run-seconds"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(self.timing.job_run_seconds);
        let code = ann["kubesim.drover.dev/exit-code"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (secs, code)
    }

    fn ips(&mut self, node: &str, host_network: bool) -> (String, String) {
        let host = self.nodes.get(node).map(|n| n.ip.clone()).unwrap_or_default();
        if host_network {
            return (host.clone(), host);
        }
        let sim = self.node_sim.entry(node.to_string()).or_default();
        sim.next_ip += 1;
        (host, pod_ip(sim.index, sim.next_ip))
    }

    pub(crate) fn pod_started(&mut self, key: &Key, uid: &str) {
        self.fired(uid, START);
        let Some(p) = self.same_pod(key, uid) else { return };
        let Some(node) = p.node.clone() else { return };
        if p.phase != "Pending" || p.deleting || !self.node_up(&node) {
            self.mark(Kind::Pod, key.clone());
            return;
        }
        let host_net = p.stored.value()["spec"]["hostNetwork"] == true;
        let (host, ip) = self.ips(&node, host_net);
        let ready = self.bootstrapping;
        let now = meta::now();
        self.write(&gr_pods(), key, Some("status"), |v| {
            if v["status"]["phase"] != "Pending" && !v["status"]["phase"].is_null() {
                return false;
            }
            running_status(v, &host, &ip, ready, false, &now);
            true
        });
    }

    pub(crate) fn pod_ready(&mut self, key: &Key, uid: &str) {
        self.fired(uid, READY);
        let Some(p) = self.same_pod(key, uid) else { return };
        let Some(node) = p.node.clone() else { return };
        if p.phase != "Running" || p.ready || p.deleting || !self.node_up(&node) || self.held_unready(p) {
            self.mark(Kind::Pod, key.clone());
            return;
        }
        let now = meta::now();
        self.write(&gr_pods(), key, Some("status"), |v| {
            set_ready(v, true, &now);
            true
        });
    }

    pub(crate) fn pod_exit(&mut self, key: &Key, uid: &str, ok: bool, message: &str) {
        self.fired(uid, RUN);
        let Some(p) = self.same_pod(key, uid) else { return };
        if p.phase != "Running" || p.deleting {
            return;
        }
        let now = meta::now();
        self.write(&gr_pods(), key, Some("status"), |v| {
            exit_status(v, ok, message, &now);
            true
        });
    }

    /// The containers stopped: remove the pod for good (the kubelet's
    /// delete with grace 0).
    pub(crate) fn pod_gone(&mut self, key: &Key, uid: &str) {
        self.fired(uid, GONE);
        let Some(p) = self.same_pod(key, uid) else { return };
        if !p.deleting {
            return;
        }
        if let Some(node) = p.node.clone()
            && !self.node_up(&node)
        {
            return;
        }
        self.delete_pod(key, Some(0));
    }

    pub(crate) fn heartbeat(&mut self) {
        let now = meta::now();
        let names: Vec<String> = self.nodes.keys().filter(|n| self.node_up(n)).cloned().collect();
        for n in names {
            self.write(&gr_nodes(), &(String::new(), n), Some("status"), |v| {
                let Some(conds) = v["status"]["conditions"].as_array_mut() else {
                    return false;
                };
                for c in conds.iter_mut() {
                    c["lastHeartbeatTime"] = json!(now);
                }
                true
            });
        }
        // Never more often than every 2 real seconds, whatever the speed.
        let speed = self.shared.clock.speed();
        let at = self.now() + self.heartbeat.max(2.0 * speed);
        self.timers.add(at, Action::Heartbeat);
    }

    /// Writes the node's Ready condition; `extra` may change more of its status.
    pub(crate) fn write_node_ready(&mut self, node: &str, ready: bool, mut extra: impl FnMut(&mut Value)) {
        let now = meta::now();
        self.write(&gr_nodes(), &(String::new(), node.to_string()), Some("status"), |v| {
            set_condition(&mut v["status"]["conditions"], ready_condition(ready, &now));
            extra(v);
            true
        });
    }

    /// The kubelet stops (reboot, or a NotReady fault): the node goes
    /// NotReady and its pods unready, but stay where they are.
    pub(crate) fn node_down(&mut self, node: &str, keep: Option<&Key>) {
        if let Some(s) = self.node_sim.get_mut(node) {
            s.down = true;
        }
        self.write_node_ready(node, false, |_| {});
        let now = meta::now();
        let keys: Vec<Key> = self.pods_on_node.get(node).into_iter().flatten().cloned().collect();
        for k in keys {
            if Some(&k) == keep {
                continue;
            }
            let Some(p) = self.pods.get(&k) else { continue };
            if p.ready {
                self.write(&gr_pods(), &k, Some("status"), |v| {
                    set_ready(v, false, &now);
                    true
                });
            }
        }
    }

    /// The kubelet is back: the node goes Ready (with `extra` applied to its
    /// status), running pods restart and become Ready again.
    pub(crate) fn node_up_again(&mut self, node: &str, keep: Option<&Key>, extra: impl FnMut(&mut Value)) {
        if let Some(s) = self.node_sim.get_mut(node) {
            s.down = false;
            s.never_ready = false;
        }
        let boot = meta::new_uid();
        let mut extra = extra;
        self.write_node_ready(node, true, |v| {
            v["status"]["nodeInfo"]["bootID"] = json!(boot);
            extra(v);
        });
        let now = meta::now();
        let keys: Vec<Key> = self.pods_on_node.get(node).into_iter().flatten().cloned().collect();
        for k in keys {
            if Some(&k) == keep {
                continue;
            }
            let Some(p) = self.pods.get(&k) else { continue };
            if p.phase == "Running" && !p.deleting {
                let host = self.nodes.get(node).map(|n| n.ip.clone()).unwrap_or_default();
                self.write(&gr_pods(), &k, Some("status"), |v| {
                    let ip = v["status"]["podIP"].as_str().unwrap_or("").to_string();
                    running_status(v, &host, &ip, false, true, &now);
                    true
                });
            }
            self.mark(Kind::Pod, k);
        }
    }

    /// `Simulation::set_node_ready`.
    pub(crate) fn set_node_ready(&mut self, node: &str, ready: bool) -> Result<(), String> {
        if !self.nodes.contains_key(node) {
            return Err(format!("node {node} not found"));
        }
        let down = self.node_sim.get(node).is_some_and(|s| s.down);
        match (ready, down) {
            (false, false) => self.node_down(node, None),
            (true, true) => self.node_up_again(node, None, |_| {}),
            _ => {}
        }
        Ok(())
    }
}
