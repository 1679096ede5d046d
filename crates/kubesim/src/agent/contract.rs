//! The upgrade contract on a real cluster: a bound pod whose container env
//! has `DROVER_COMPONENT` and `DROVER_VERSION` upgrades that component on
//! its node once it is Running and Ready. After the component's duration
//! (divided by the speed) the node reports the new version, optionally
//! after a reboot, and the agent ends the pod through `pods/status`.

use super::faults::FaultState;
use super::objects::{PENDING_ANNOTATION, REBOOTING_ANNOTATION, RESTARTING_ANNOTATION};
use super::write::{modify, modify_status};
use crate::sim::kubelet::{exit_status, running_status, set_ready};
use crate::sim::objects::{STATIC_COMPONENTS, condition, config_hash, ready_condition, set_condition, static_image};
use crate::sim::upgrade::{Outcome, failure_message, outcome};
use crate::sim::view::{UpgradeEnv, upgrade_env};
use crate::sim::{Fault, Timing, node_info_change};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;

/// What the node reports once a component is upgraded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A `status.nodeInfo` field and its new value.
    NodeInfo { field: &'static str, value: String },
    /// The mirror pod `<component>-<node>` gets a new image and config hash and restarts.
    StaticPod { pod: String, image: String, hash: String },
    /// Nothing observable: the Job's success is the proof.
    Nothing,
}

/// How one upgrade goes, before faults.
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradePlan {
    /// Simulated seconds before the change.
    pub seconds: f64,
    pub reboot: bool,
    pub change: Change,
}

/// The contract's decision for `env` on `node` (docs/simulation.md, "Upgrade Jobs").
pub fn plan_upgrade(timing: &Timing, env: &UpgradeEnv, node: &str) -> UpgradePlan {
    if env.reboot_only {
        return UpgradePlan {
            seconds: 1.0,
            reboot: true,
            change: Change::Nothing,
        };
    }
    let (seconds, reboot) = timing.component(&env.component);
    let change = if let Some((field, value)) =
        node_info_change(&env.component, &timing.installed(&env.component, &env.version))
    {
        Change::NodeInfo { field, value }
    } else if STATIC_COMPONENTS.contains(&env.component.as_str()) {
        Change::StaticPod {
            pod: format!("{}-{node}", env.component),
            image: static_image(&env.component, &env.version),
            hash: config_hash(&env.component, &env.version, node),
        }
    } else {
        Change::Nothing
    };
    UpgradePlan {
        seconds,
        reboot: reboot || env.reboot,
        change,
    }
}

/// Where an upgrade pod stands, from its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradePod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub env: UpgradeEnv,
    pub state: PodState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Not Running yet (or Running but not Ready).
    Waiting,
    /// Running and Ready: the upgrade starts.
    RunningReady,
    /// Running, not Ready (e.g. marked so while its node reboots).
    RunningUnready,
    /// Succeeded, Failed or being deleted: nothing to do.
    Over,
}

/// The upgrade contract's view of a pod, if it is an upgrade pod bound to a node.
pub fn upgrade_pod(v: &Value) -> Option<UpgradePod> {
    let env = upgrade_env(&v["spec"])?;
    let node = v["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())?.to_string();
    let phase = v["status"]["phase"].as_str().unwrap_or("Pending");
    let ready = v["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    let state = if !v["metadata"]["deletionTimestamp"].is_null() || matches!(phase, "Succeeded" | "Failed") {
        PodState::Over
    } else if phase != "Running" {
        PodState::Waiting
    } else if ready {
        PodState::RunningReady
    } else {
        PodState::RunningUnready
    };
    Some(UpgradePod {
        namespace: v["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
        name: v["metadata"]["name"].as_str().unwrap_or("").to_string(),
        uid: v["metadata"]["uid"].as_str().unwrap_or("").to_string(),
        node,
        env,
        state,
    })
}

/// The node's `Ready` condition while it reboots.
pub fn rebooting_condition(now: &str) -> Value {
    let mut c = condition("Ready", false, "KubeletNotReady", "simulated reboot", now);
    c["lastHeartbeatTime"] = json!(now);
    c
}

/// Everything an upgrade task needs.
#[derive(Clone)]
pub struct Contract {
    pub client: Client,
    pub timing: Timing,
    pub speed: f64,
    pub faults: FaultState,
    pub installed: super::health::Installed,
}

impl Contract {
    fn real(&self, simulated_seconds: f64) -> Duration {
        Duration::from_secs_f64((simulated_seconds / self.speed).max(0.0))
    }

    /// Follows every pod in the cluster and runs an upgrade task per
    /// upgrade pod (by uid) that turns Running and Ready. Runs until the
    /// watch stream ends (it does not: the watcher retries with back-off).
    pub async fn follow(self) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
        // uid → the "gone" signal of its task (kept until the pod is deleted).
        let mut tracked: HashMap<String, watch::Sender<bool>> = HashMap::new();
        let mut listed: Option<HashSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) => listed = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(pod)) => {
                    if let Some(uid) = pod.metadata.uid.clone()
                        && let Some(l) = listed.as_mut()
                    {
                        l.insert(uid);
                    }
                    self.seen(&pod, &mut tracked).await;
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(l) = listed.take() {
                        tracked.retain(|uid, gone| {
                            let keep = l.contains(uid);
                            if !keep {
                                let _ = gone.send(true);
                            }
                            keep
                        });
                    }
                }
                Ok(watcher::Event::Apply(pod)) => self.seen(&pod, &mut tracked).await,
                Ok(watcher::Event::Delete(pod)) => {
                    if let Some(gone) = pod.metadata.uid.as_ref().and_then(|u| tracked.remove(u)) {
                        let _ = gone.send(true);
                    }
                }
                Err(e) => tracing::warn!("watching pods: {e}"),
            }
        }
    }

    async fn seen(&self, pod: &Pod, tracked: &mut HashMap<String, watch::Sender<bool>>) {
        let Ok(v) = serde_json::to_value(pod) else { return };
        let Some(up) = upgrade_pod(&v) else { return };
        if let Some(gone) = tracked.get(&up.uid) {
            if up.state == PodState::Over {
                let _ = gone.send(true);
            }
            return;
        }
        let start = match up.state {
            PodState::RunningReady => true,
            // Restarted mid-reboot: the pod was marked unready with its node.
            PodState::RunningUnready => self.node_rebooting(&up.node).await,
            PodState::Waiting | PodState::Over => false,
        };
        if !start {
            return;
        }
        let (tx, rx) = watch::channel(false);
        tracked.insert(up.uid.clone(), tx);
        let this = self.clone();
        tokio::spawn(async move {
            let what = format!(
                "upgrade of {} to {} on {} (pod {}/{})",
                up.env.component, up.env.version, up.node, up.namespace, up.name
            );
            // A write the API server did not take (it restarts, or drops the
            // connection) is no reason to leave the pod running for ever, as
            // no kubelet would: the upgrade runs again, up to 20 times.
            for attempt in 1..=20 {
                match this.upgrade(&up, rx.clone()).await {
                    Ok(()) => return,
                    Err(e) if attempt < 20 && !*rx.borrow() => {
                        tracing::warn!("{what}: {e:#}; again in 1 s (attempt {attempt})");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::warn!("{what}: {e:#}; given up after {attempt} attempts");
                        return;
                    }
                }
            }
        });
    }

    async fn node_rebooting(&self, node: &str) -> bool {
        let api: Api<Node> = Api::all(self.client.clone());
        match api.get_opt(node).await {
            Ok(Some(n)) => n
                .metadata
                .annotations
                .is_some_and(|a| a.get(REBOOTING_ANNOTATION).is_some_and(|v| v == "true")),
            _ => false,
        }
    }

    /// Sleeps `simulated` seconds; false if the pod went away meanwhile.
    async fn wait(&self, simulated: f64, gone: &mut watch::Receiver<bool>) -> bool {
        if *gone.borrow() {
            return false;
        }
        let went = tokio::select! {
            _ = tokio::time::sleep(self.real(simulated)) => false,
            _ = gone.wait_for(|g| *g) => true,
        };
        !went && !*gone.borrow()
    }

    /// One upgrade, from Running and Ready to the pod's end.
    async fn upgrade(&self, up: &UpgradePod, mut gone: watch::Receiver<bool>) -> anyhow::Result<()> {
        let plan = plan_upgrade(&self.timing, &up.env, &up.node);
        let (c, v, node) = (&up.env.component, &up.env.version, &up.node);
        tracing::info!(
            "upgrade of {c} to {v} on {node} started (pod {}/{}, {}s simulated{})",
            up.namespace,
            up.name,
            plan.seconds,
            if plan.reboot { ", reboot" } else { "" }
        );
        if !self.wait(plan.seconds, &mut gone).await {
            tracing::info!("upgrade pod {}/{} went away: dropped", up.namespace, up.name);
            return Ok(());
        }
        // Faults are looked up when the change would happen, so a fault set
        // while the pod already runs still applies.
        let faults = self.faults.current();
        let fate = if up.env.reboot_only {
            Outcome::Succeeds
        } else {
            outcome(&faults, c, node)
        };
        match fate {
            Outcome::Hangs => {
                tracing::info!("upgrade of {c} on {node} hangs (simulated fault)");
                return Ok(());
            }
            Outcome::Fails => {
                self.end_pod(up, false, &failure_message(c, v)).await?;
                tracing::info!("upgrade of {c} to {v} on {node} failed (simulated fault)");
                return Ok(());
            }
            Outcome::Succeeds => {}
        }
        let (after_exit, required) = self.timing.deferred_reboot(c);
        if !plan.reboot
            && (after_exit || required)
            && let Change::NodeInfo { field, value } = &plan.change
        {
            // The version shows after the reboot: the pod exits first.
            self.set_pending(node, field, value).await?;
            self.end_pod(up, true, if required { "reboot-required" } else { "" })
                .await?;
            tracing::info!(
                "upgrade of {c} to {v} on {node} done; the node reboots {}",
                if required { "when asked" } else { "now" }
            );
            if after_exit {
                let me = self.clone();
                let node = node.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(me.real(2.0)).await;
                    if let Err(e) = me.reboot_alone(&node).await {
                        tracing::warn!("rebooting node {node}: {e}");
                    }
                });
            }
            return Ok(());
        }
        let restarted = if plan.reboot {
            if !self.reboot(up, &plan, &faults).await? {
                return Ok(());
            }
            if plan.change == Change::Nothing && !up.env.reboot_only {
                self.installed.set(node, c, &self.timing.installed(c, v));
            }
            // The static pod restarts once the node is back.
            match &plan.change {
                Change::StaticPod { .. } if !*gone.borrow() => self.restart_static_pod(node, &plan.change).await?,
                _ => false,
            }
        } else {
            match &plan.change {
                Change::NodeInfo { field, value } => {
                    self.set_node_info(node, field, value).await?;
                    false
                }
                Change::StaticPod { .. } => self.restart_static_pod(node, &plan.change).await?,
                Change::Nothing => {
                    self.installed.set(node, c, &self.timing.installed(c, v));
                    false
                }
            }
        };
        if restarted {
            // Ready again after podReadySeconds; the Job pod succeeds a
            // simulated second later. Both happen even if the pod goes.
            tokio::time::sleep(self.real(self.timing.pod_ready_seconds)).await;
            if let Change::StaticPod { pod, .. } = &plan.change {
                self.mirror_ready(pod).await?;
            }
            tokio::time::sleep(self.real(1.0)).await;
        }
        if *gone.borrow() {
            tracing::info!("upgrade pod {}/{} went away: dropped", up.namespace, up.name);
            return Ok(());
        }
        self.end_pod(up, true, "").await?;
        tracing::info!("upgrade of {c} to {v} on {node} done");
        Ok(())
    }

    /// Reboots the node: annotated and NotReady for `rebootSeconds`, then
    /// back with a new bootID (and the new nodeInfo version, in the same
    /// status write) and without the annotation. False if it never comes
    /// back (the `NodeNeverReady` fault).
    async fn reboot(&self, up: &UpgradePod, plan: &UpgradePlan, faults: &[Fault]) -> anyhow::Result<bool> {
        let node = &up.node;
        self.go_down(node).await?;
        tracing::info!("node {node} rebooting");
        let never = faults.iter().any(|f| match f {
            Fault::NodeNeverReady { nodes } => Fault::covers_node(nodes, node),
            _ => false,
        });
        if never {
            tracing::warn!("node {node} stays NotReady after its reboot (NodeNeverReady fault)");
            return Ok(false);
        }
        // The node comes back even if the upgrade pod goes meanwhile.
        tokio::time::sleep(self.real(self.timing.reboot_seconds)).await;
        // The new version only if the upgrade pod is still there (as kubesim).
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &up.namespace);
        let still = pods
            .get_opt(&up.name)
            .await
            .ok()
            .flatten()
            .is_some_and(|p| p.metadata.uid.as_deref() == Some(&up.uid));
        let change = match &plan.change {
            Change::NodeInfo { field, value } if still => Some((*field, value.clone())),
            _ => None,
        };
        self.come_back(node, change).await?;
        // drover's reboot Job: done once the node is back, whatever became of the pod.
        Ok(still || up.env.reboot_only)
    }

    /// Remember a nodeInfo change for the node's next reboot (an annotation,
    /// so an agent restarted meanwhile still applies it).
    async fn set_pending(&self, node: &str, field: &str, value: &str) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"metadata": {"annotations": {PENDING_ANNOTATION: json!({field: value}).to_string()}}});
        nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| anyhow::anyhow!("annotating node {node}: {e}"))?;
        Ok(())
    }

    /// A reboot begins: the node annotated (KWOK's heartbeat stage skips
    /// it) and NotReady.
    async fn go_down(&self, node: &str) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let annotate = json!({"metadata": {"annotations": {REBOOTING_ANNOTATION: "true"}}});
        nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&annotate))
            .await
            .map_err(|e| anyhow::anyhow!("annotating node {node}: {e}"))?;
        modify_status(&nodes, node, |v| {
            set_condition(&mut v["status"]["conditions"], rebooting_condition(&crate::meta::now()));
            true
        })
        .await
        .map_err(|e| anyhow::anyhow!("marking node {node} NotReady: {e}"))?;
        Ok(())
    }

    /// The node reboots by itself (its upgrade pod already ended):
    /// NotReady for `rebootSeconds`, then back with a new bootID and what
    /// was pending for the reboot.
    async fn reboot_alone(&self, node: &str) -> anyhow::Result<()> {
        self.go_down(node).await?;
        tracing::info!("node {node} rebooting on its own");
        tokio::time::sleep(self.real(self.timing.reboot_seconds)).await;
        self.come_back(node, None).await
    }

    /// Back from a reboot: a new bootID, Ready, `change` and whatever was
    /// pending applied, the annotations gone.
    async fn come_back(&self, node: &str, change: Option<(&'static str, String)>) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let pending: Vec<(String, String)> = nodes
            .get(node)
            .await
            .ok()
            .and_then(|n| n.metadata.annotations?.get(PENDING_ANNOTATION).cloned())
            .and_then(|s| serde_json::from_str::<std::collections::BTreeMap<String, String>>(&s).ok())
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        modify_status(&nodes, node, |v| {
            let now = crate::meta::now();
            for (field, value) in &pending {
                v["status"]["nodeInfo"][field.as_str()] = json!(value);
            }
            if let Some((field, value)) = &change {
                v["status"]["nodeInfo"][*field] = json!(value);
            }
            v["status"]["nodeInfo"]["bootID"] = json!(crate::meta::new_uid());
            set_condition(&mut v["status"]["conditions"], ready_condition(true, &now));
            true
        })
        .await
        .map_err(|e| anyhow::anyhow!("bringing node {node} back: {e}"))?;
        let clear = json!({"metadata": {"annotations": {REBOOTING_ANNOTATION: null, PENDING_ANNOTATION: null}}});
        nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&clear))
            .await
            .map_err(|e| anyhow::anyhow!("removing the reboot annotations of node {node}: {e}"))?;
        tracing::info!("node {node} back from its reboot");
        Ok(())
    }

    async fn set_node_info(&self, node: &str, field: &str, value: &str) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        modify_status(&nodes, node, |v| {
            if v["status"]["nodeInfo"][field] == value {
                return false;
            }
            v["status"]["nodeInfo"][field] = json!(value);
            true
        })
        .await
        .map_err(|e| anyhow::anyhow!("setting nodeInfo.{field} of node {node}: {e}"))?;
        Ok(())
    }

    /// The mirror pod gets the new image and config hash, then restarts:
    /// not Ready, `restartCount` + 1, annotated `kubesim.drover.dev/restarting`
    /// until the agent marks it Ready again. False if there is no such mirror pod.
    ///
    /// Only `kubernetes.io/config.hash` changes: a real API server forbids
    /// updating the `kubernetes.io/config.mirror` annotation (kubesim's own
    /// engine changes both).
    async fn restart_static_pod(&self, node: &str, change: &Change) -> anyhow::Result<bool> {
        let Change::StaticPod { pod, image, hash } = change else {
            return Ok(false);
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "kube-system");
        let found = modify(&pods, pod, |v| {
            if let Some(c) = v["spec"]["containers"].as_array_mut().and_then(|c| c.first_mut()) {
                c["image"] = json!(image);
            }
            v["metadata"]["annotations"]["kubernetes.io/config.hash"] = json!(hash);
            v["metadata"]["annotations"][RESTARTING_ANNOTATION] = json!("true");
            true
        })
        .await
        .map_err(|e| anyhow::anyhow!("updating mirror pod kube-system/{pod}: {e}"))?;
        if !found {
            tracing::warn!("node {node} has no mirror pod kube-system/{pod}: nothing restarts");
            return Ok(false);
        }
        // A host-network pod: its IPs are the node's (if KWOK has not set them yet).
        let node_ip = self.internal_ip(node).await;
        modify_status(&pods, pod, |v| {
            let host = v["status"]["hostIP"].as_str().unwrap_or(&node_ip).to_string();
            let pod_ip = v["status"]["podIP"].as_str().unwrap_or(&host).to_string();
            running_status(v, &host, &pod_ip, false, true, &crate::meta::now());
            true
        })
        .await
        .map_err(|e| anyhow::anyhow!("restarting mirror pod kube-system/{pod}: {e}"))?;
        tracing::info!("mirror pod kube-system/{pod} restarted with {image}");
        Ok(true)
    }

    /// The node's InternalIP ("" if unknown).
    async fn internal_ip(&self, node: &str) -> String {
        let api: Api<Node> = Api::all(self.client.clone());
        let n = api.get_opt(node).await.ok().flatten();
        n.and_then(|n| n.status?.addresses)
            .and_then(|a| a.into_iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address)
            .unwrap_or_default()
    }

    async fn mirror_ready(&self, pod: &str) -> anyhow::Result<()> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "kube-system");
        modify_status(&pods, pod, |v| {
            set_ready(v, true, &crate::meta::now());
            true
        })
        .await
        .map_err(|e| anyhow::anyhow!("marking mirror pod kube-system/{pod} Ready: {e}"))?;
        let clear = json!({"metadata": {"annotations": {RESTARTING_ANNOTATION: null}}});
        pods.patch(pod, &PatchParams::default(), &Patch::Merge(&clear))
            .await
            .map_err(|e| anyhow::anyhow!("removing the restarting annotation of kube-system/{pod}: {e}"))?;
        Ok(())
    }

    /// Ends the upgrade pod through `pods/status`: Succeeded (exit 0,
    /// Completed) or Failed (exit 1, Error, `message`). Skipped if the pod
    /// is gone, replaced, already over or being deleted.
    async fn end_pod(&self, up: &UpgradePod, ok: bool, message: &str) -> anyhow::Result<()> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &up.namespace);
        modify_status(&pods, &up.name, |v| {
            let same = v["metadata"]["uid"] == up.uid.as_str();
            if !same || !v["metadata"]["deletionTimestamp"].is_null() || v["status"]["phase"] != "Running" {
                return false;
            }
            let now = crate::meta::now();
            ensure_container_statuses(v, &now);
            exit_status(v, ok, message, &now);
            true
        })
        .await
        .map_err(|e| anyhow::anyhow!("ending pod {}/{}: {e}", up.namespace, up.name))?;
        Ok(())
    }
}

/// Running container statuses for a pod whose status has none (the
/// terminated state needs a container to belong to).
fn ensure_container_statuses(v: &mut Value, now: &str) {
    if v["status"]["containerStatuses"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return;
    }
    let statuses: Vec<Value> = v["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    v["status"]["containerStatuses"] = json!(statuses);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::ComponentTiming;

    fn env(c: &str, v: &str, reboot: bool) -> UpgradeEnv {
        UpgradeEnv {
            component: c.into(),
            version: v.into(),
            node: "worker-1".into(),
            reboot,
            reboot_only: false,
        }
    }

    #[test]
    fn what_each_component_changes() {
        let mut t = Timing::default();
        t.components.insert(
            "containerd".into(),
            ComponentTiming {
                seconds: Some(30.0),
                reboot: true,
                ..ComponentTiming::default()
            },
        );
        let p = plan_upgrade(&t, &env("kubelet", "v1.32.0", false), "worker-1");
        assert_eq!(
            p,
            UpgradePlan {
                seconds: 60.0,
                reboot: false,
                change: Change::NodeInfo {
                    field: "kubeletVersion",
                    value: "v1.32.0".into()
                }
            }
        );
        let p = plan_upgrade(&t, &env("kube-proxy", "v1.32.0", true), "worker-1");
        assert!(p.reboot, "DROVER_REBOOT=true reboots");
        assert_eq!(
            p.change,
            Change::NodeInfo {
                field: "kubeProxyVersion",
                value: "v1.32.0".into()
            }
        );
        let p = plan_upgrade(&t, &env("containerd", "v1.7.23", false), "worker-1");
        assert_eq!((p.seconds, p.reboot), (30.0, true));
        assert_eq!(
            p.change,
            Change::NodeInfo {
                field: "containerRuntimeVersion",
                value: "containerd://1.7.23".into()
            }
        );
        let p = plan_upgrade(&t, &env("cri-o", "1.31.0", false), "n");
        assert_eq!(
            p.change,
            Change::NodeInfo {
                field: "containerRuntimeVersion",
                value: "cri-o://1.31.0".into()
            }
        );
        let p = plan_upgrade(&t, &env("etcd", "v3.5.16", false), "cp-1");
        assert_eq!(
            p.change,
            Change::StaticPod {
                pod: "etcd-cp-1".into(),
                image: "registry.k8s.io/etcd:v3.5.16".into(),
                hash: config_hash("etcd", "v3.5.16", "cp-1"),
            }
        );
        assert_ne!(
            config_hash("etcd", "v3.5.16", "cp-1"),
            config_hash("etcd", "v3.5.15", "cp-1")
        );
        let p = plan_upgrade(&t, &env("kube-apiserver", "v1.32.0", false), "cp-2");
        assert!(matches!(p.change, Change::StaticPod { ref pod, .. } if pod == "kube-apiserver-cp-2"));
        let p = plan_upgrade(&t, &env("os", "24.04", false), "n");
        assert_eq!(
            p.change,
            Change::NodeInfo {
                field: "osImage",
                value: "Ubuntu 24.04 LTS".into()
            }
        );
        let p = plan_upgrade(&t, &env("metrics-agent", "1.0.0", false), "n");
        assert_eq!(p.change, Change::Nothing);
    }

    #[test]
    fn faults_decide_the_outcome() {
        let faults = super::super::faults::parse_faults(
            "- {type: UpgradeFails, component: containerd, nodes: [worker-2]}\n- {type: UpgradeHangs, component: kubelet}",
        )
        .unwrap();
        assert_eq!(outcome(&faults, "containerd", "worker-2"), Outcome::Fails);
        assert_eq!(outcome(&faults, "containerd", "worker-1"), Outcome::Succeeds);
        assert_eq!(outcome(&faults, "kubelet", "anything"), Outcome::Hangs);
        assert_eq!(outcome(&[], "kubelet", "anything"), Outcome::Succeeds);
        assert_eq!(
            failure_message("containerd", "1.7.23"),
            "upgrade of containerd to 1.7.23 failed: simulated fault"
        );
    }

    fn pod(phase: &str, ready: bool) -> Value {
        json!({
            "metadata": {"name": "up", "namespace": "drover", "uid": "u1"},
            "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "x", "env": [
                {"name": "DROVER_COMPONENT", "value": "kubelet"},
                {"name": "DROVER_VERSION", "value": "v1.32.0"},
                {"name": "DROVER_NODE", "value": "worker-1"},
                {"name": "DROVER_REBOOT", "value": "true"},
            ]}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        })
    }

    #[test]
    fn recognises_upgrade_pods() {
        let up = upgrade_pod(&pod("Running", true)).unwrap();
        assert_eq!(up.state, PodState::RunningReady);
        assert_eq!((up.uid.as_str(), up.node.as_str()), ("u1", "worker-1"));
        assert!(up.env.reboot);
        assert_eq!(
            upgrade_pod(&pod("Running", false)).unwrap().state,
            PodState::RunningUnready
        );
        assert_eq!(upgrade_pod(&pod("Pending", false)).unwrap().state, PodState::Waiting);
        assert_eq!(upgrade_pod(&pod("Succeeded", false)).unwrap().state, PodState::Over);
        let mut deleting = pod("Running", true);
        deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        assert_eq!(upgrade_pod(&deleting).unwrap().state, PodState::Over);
        let mut unbound = pod("Pending", false);
        unbound["spec"]["nodeName"] = Value::Null;
        assert!(upgrade_pod(&unbound).is_none());
        let mut plain = pod("Running", true);
        plain["spec"]["containers"][0]["env"] = json!([{"name": "DROVER_COMPONENT", "value": "kubelet"}]);
        assert!(upgrade_pod(&plain).is_none());
    }

    #[test]
    fn ending_a_pod_without_container_statuses() {
        let mut v = pod("Running", true);
        ensure_container_statuses(&mut v, "t");
        exit_status(&mut v, false, "boom", "t2");
        let cs = &v["status"]["containerStatuses"][0];
        assert_eq!(v["status"]["phase"], "Failed");
        assert_eq!(cs["name"], "c");
        assert_eq!(cs["ready"], false);
        assert_eq!(cs["state"]["terminated"]["exitCode"], 1);
        assert_eq!(cs["state"]["terminated"]["reason"], "Error");
        assert_eq!(cs["state"]["terminated"]["message"], "boom");
        assert_eq!(cs["state"]["terminated"]["startedAt"], "t");
    }

    #[test]
    fn reboot_condition() {
        let c = rebooting_condition("t");
        assert_eq!(
            (
                c["type"].as_str(),
                c["status"].as_str(),
                c["reason"].as_str(),
                c["message"].as_str()
            ),
            (
                Some("Ready"),
                Some("False"),
                Some("KubeletNotReady"),
                Some("simulated reboot")
            )
        );
    }
}
