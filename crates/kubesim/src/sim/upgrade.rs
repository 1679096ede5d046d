//! The upgrade contract: a running pod with `DROVER_COMPONENT` and
//! `DROVER_VERSION` in its environment upgrades that component on its
//! node. After the component's simulated duration the node reports the new
//! version (a `nodeInfo` field, or the static pod's image tag), optionally
//! after a reboot, and the pod exits 0. Faults make it fail or hang.

use super::engine::{Action, Engine};
use super::kubelet::running_status;
use super::objects::{STATIC_COMPONENTS, config_hash, gr_pods, runtime_version, static_image};
use super::scenario::Fault;
use super::view::{Key, UpgradeEnv};
use crate::meta;
use serde_json::{Value, json};

/// How an upgrade goes, given the faults in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeds,
    Fails,
    Hangs,
}

/// The `nodeInfo` field a component changes, and its new value.
pub fn node_info_change(component: &str, version: &str) -> Option<(&'static str, String)> {
    match component {
        "kubelet" => Some(("kubeletVersion", version.to_string())),
        "kube-proxy" => Some(("kubeProxyVersion", version.to_string())),
        "containerd" | "cri-o" | "docker" => Some(("containerRuntimeVersion", runtime_version(component, version))),
        "os" => Some(("osImage", format!("Ubuntu {version} LTS"))),
        "kernel" => Some(("kernelVersion", version.to_string())),
        _ => None,
    }
}

/// How the upgrade of `component` on `node` goes under `faults` (the first
/// matching fault wins).
pub fn outcome(faults: &[Fault], component: &str, node: &str) -> Outcome {
    for f in faults {
        match f {
            Fault::UpgradeFails { component: c, nodes } if c == component && Fault::covers_node(nodes, node) => {
                return Outcome::Fails;
            }
            Fault::UpgradeHangs { component: c, nodes } if c == component && Fault::covers_node(nodes, node) => {
                return Outcome::Hangs;
            }
            _ => {}
        }
    }
    Outcome::Succeeds
}

/// Set each changed `nodeInfo` field.
fn apply_changes(v: &mut Value, changes: &[(&'static str, String)]) {
    for (field, value) in changes {
        v["status"]["nodeInfo"][*field] = json!(value);
    }
}

/// The message of a failed upgrade pod's container.
pub fn failure_message(component: &str, version: &str) -> String {
    format!("upgrade of {component} to {version} failed: simulated fault")
}

impl Engine {
    pub fn upgrade_outcome(&self, component: &str, node: &str) -> Outcome {
        outcome(&self.faults(), component, node)
    }

    fn upgrade_of(&self, key: &Key, uid: &str) -> Option<(UpgradeEnv, String)> {
        let p = self.pods.get(key).filter(|p| &*p.uid == uid)?;
        if p.phase != "Running" || p.deleting {
            return None;
        }
        Some((p.upgrade.clone()?, p.node.clone()?))
    }

    /// The upgrade pod is Running and Ready: start the upgrade.
    pub(crate) fn start_upgrade(&mut self, key: &Key) {
        let Some(p) = self.pods.get(key) else { return };
        let (Some(u), Some(node)) = (p.upgrade.clone(), p.node.clone()) else {
            return;
        };
        let uid = p.uid.clone();
        if u.reboot_only {
            self.after(1.0, Action::UpgradeApply(key.clone(), uid));
            return;
        }
        let (secs, _) = self.timing.component(&u.component);
        match self.upgrade_outcome(&u.component, &node) {
            Outcome::Hangs => {}
            Outcome::Fails => {
                let msg = failure_message(&u.component, &u.version);
                self.after(secs, Action::PodExit(key.clone(), uid, false, msg));
            }
            Outcome::Succeeds => self.after(secs, Action::UpgradeApply(key.clone(), uid)),
        }
    }

    pub(crate) fn upgrade_apply(&mut self, key: &Key, uid: &str) {
        let Some((u, node)) = self.upgrade_of(key, uid) else {
            return;
        };
        let reboot = u.reboot || self.timing.component(&u.component).1;
        let (after_exit, required) = self.timing.deferred_reboot(&u.component);
        if !reboot && (after_exit || required) {
            // The version shows after the reboot: the pod exits first.
            if let Some(s) = self.node_sim.get_mut(&node) {
                s.pending
                    .push((u.component.clone(), self.timing.installed(&u.component, &u.version)));
            }
            let message = if required { "reboot-required" } else { "" };
            self.after(
                0.0,
                Action::PodExit(key.clone(), Box::from(uid), true, message.to_string()),
            );
            if after_exit {
                self.after(2.0, Action::NodeReboot(node));
            }
            return;
        }
        if !reboot {
            let restarted = self.apply_version(&node, &u.component, &u.version);
            // A restarted static pod is Ready again before the upgrade reports success.
            let wait = if restarted {
                self.timing.pod_ready_seconds + 1.0
            } else {
                0.0
            };
            self.after(wait, Action::PodExit(key.clone(), Box::from(uid), true, String::new()));
            return;
        }
        // A reboot takes every pod on the node down with it.
        let keys: Vec<Key> = self.pods_on_node.get(&node).into_iter().flatten().cloned().collect();
        let mut gone = std::collections::HashSet::new();
        for k in keys {
            if &k == key {
                continue;
            }
            if let Some(p) = self.pods.get(&k).filter(|p| p.healthy()).cloned() {
                gone.insert(k.clone());
                self.check_budget(&k, &p, "NodeReboot", &gone);
            }
        }
        self.node_down(&node, Some(key));
        let never = self.faults().iter().any(|f| match f {
            Fault::NodeNeverReady { nodes } => Fault::covers_node(nodes, &node),
            _ => false,
        });
        if never {
            if let Some(s) = self.node_sim.get_mut(&node) {
                s.never_ready = true;
            }
            return;
        }
        let secs = self.timing.reboot_seconds;
        self.after(secs, Action::RebootDone(node, key.clone(), Box::from(uid)));
    }

    /// A node reboots by itself, its upgrade pod already gone: every pod
    /// on it goes down, and it comes back after `rebootSeconds`.
    pub(crate) fn node_reboot(&mut self, node: &str) {
        let keys: Vec<Key> = self.pods_on_node.get(node).into_iter().flatten().cloned().collect();
        let mut gone = std::collections::HashSet::new();
        for k in keys {
            if let Some(p) = self.pods.get(&k).filter(|p| p.healthy()).cloned() {
                gone.insert(k.clone());
                self.check_budget(&k, &p, "NodeReboot", &gone);
            }
        }
        self.node_down(node, None);
        let secs = self.timing.reboot_seconds;
        self.after(secs, Action::NodeRebootDone(node.to_string()));
    }

    pub(crate) fn node_reboot_done(&mut self, node: &str) {
        if self.node_sim.get(node).is_none_or(|s| !s.down || s.never_ready) {
            return;
        }
        let pending = self.take_pending(node);
        self.node_up_again(node, None, |v| apply_changes(v, &pending));
    }

    /// The versions waiting for the node's reboot, as nodeInfo changes.
    fn take_pending(&mut self, node: &str) -> Vec<(&'static str, String)> {
        let pending = self
            .node_sim
            .get_mut(node)
            .map(|s| std::mem::take(&mut s.pending))
            .unwrap_or_default();
        pending.iter().filter_map(|(c, v)| node_info_change(c, v)).collect()
    }

    pub(crate) fn reboot_done(&mut self, node: &str, key: &Key, uid: &str) {
        if self.node_sim.get(node).is_none_or(|s| !s.down || s.never_ready) {
            return;
        }
        let upgrade = self
            .pods
            .get(key)
            .filter(|p| &*p.uid == uid)
            .and_then(|p| p.upgrade.clone());
        let mut changes = self.take_pending(node);
        changes.extend(
            upgrade
                .as_ref()
                .filter(|u| !u.reboot_only)
                .and_then(|u| node_info_change(&u.component, &self.timing.installed(&u.component, &u.version))),
        );
        self.node_up_again(node, Some(key), |v| apply_changes(v, &changes));
        if let Some(u) = upgrade.as_ref().filter(|u| {
            !u.reboot_only
                && node_info_change(&u.component, "").is_none()
                && !STATIC_COMPONENTS.contains(&u.component.as_str())
        }) {
            let installed = self.timing.installed(&u.component, &u.version);
            self.record_installed(node, &u.component, &installed);
        }
        if let Some(u) = &upgrade {
            let restarted = !u.reboot_only
                && STATIC_COMPONENTS.contains(&u.component.as_str())
                && self.restart_static_pod(node, &u.component, &u.version);
            let wait = if restarted {
                self.timing.pod_ready_seconds + 1.0
            } else {
                0.0
            };
            self.after(wait, Action::PodExit(key.clone(), Box::from(uid), true, String::new()));
        }
    }

    /// Makes the node report `version` for `component`. Returns whether a
    /// static pod restarted.
    pub(crate) fn apply_version(&mut self, node: &str, component: &str, version: &str) -> bool {
        if let Some((field, value)) = node_info_change(component, &self.timing.installed(component, version)) {
            self.write(
                &super::objects::gr_nodes(),
                &(String::new(), node.to_string()),
                Some("status"),
                |v| {
                    if v["status"]["nodeInfo"][field] == value.as_str() {
                        return false;
                    }
                    v["status"]["nodeInfo"][field] = json!(value);
                    true
                },
            );
            return false;
        }
        if STATIC_COMPONENTS.contains(&component) {
            return self.restart_static_pod(node, component, version);
        }
        let installed = self.timing.installed(component, version);
        self.record_installed(node, component, &installed);
        false
    }

    /// The kubelet saw a new static pod manifest: the mirror pod gets the
    /// new image and restarts (not Ready until its containers are).
    fn restart_static_pod(&mut self, node: &str, component: &str, version: &str) -> bool {
        let key = ("kube-system".to_string(), format!("{component}-{node}"));
        if !self.pods.contains_key(&key) {
            return false;
        }
        let image = static_image(component, version);
        let hash = config_hash(component, version, node);
        self.write(&gr_pods(), &key, None, |v| {
            if let Some(c) = v["spec"]["containers"].as_array_mut().and_then(|c| c.first_mut()) {
                c["image"] = json!(image);
            }
            v["metadata"]["annotations"]["kubernetes.io/config.hash"] = json!(hash);
            true
        });
        let host = self.nodes.get(node).map(|n| n.ip.clone()).unwrap_or_default();
        let now = meta::now();
        self.write(&gr_pods(), &key, Some("status"), |v: &mut Value| {
            running_status(v, &host, &host, false, true, &now);
            true
        });
        true
    }
}
