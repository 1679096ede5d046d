//! Faults on a real cluster: the scenario's `faults:` apply from the start;
//! the ConfigMap `kube-system/kubesim-faults` (key `faults`, a YAML list in
//! the same format) replaces them while it exists.

use crate::sim::Fault;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::RwLock;
use std::sync::Arc;

pub const FAULTS_NAMESPACE: &str = "kube-system";
pub const FAULTS_CONFIGMAP: &str = "kubesim-faults";
/// The ConfigMap key holding the fault list.
pub const FAULTS_KEY: &str = "faults";

/// Parses the `faults` value of the ConfigMap: a YAML list of faults (empty: none).
pub fn parse_faults(yaml: &str) -> Result<Vec<Fault>, String> {
    if yaml.trim().is_empty() {
        return Ok(Vec::new());
    }
    let faults: Option<Vec<Fault>> = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    Ok(faults.unwrap_or_default())
}

/// The faults of a ConfigMap: its `faults` key, or none if it has no such key.
pub fn faults_of(cm: &ConfigMap) -> Result<Vec<Fault>, String> {
    match cm.data.as_ref().and_then(|d| d.get(FAULTS_KEY)) {
        Some(yaml) => parse_faults(yaml),
        None => Ok(Vec::new()),
    }
}

/// The kinds in `faults` the agent does not act on (it drives neither the
/// API server, its watches, PDB status nor pod termination).
pub fn ignored_kinds(faults: &[Fault]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = faults
        .iter()
        .filter_map(|f| match f {
            Fault::UpgradeFails { .. }
            | Fault::UpgradeHangs { .. }
            | Fault::NodeNeverReady { .. }
            | Fault::BadVersion { .. }
            | Fault::AlertFiring { .. } => None,
            Fault::PdbBlocks { .. } => Some("PdbBlocks"),
            Fault::SlowTermination { .. } => Some("SlowTermination"),
            Fault::ApiErrors { .. } => Some("ApiErrors"),
            Fault::WatchDrops { .. } => Some("WatchDrops"),
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The fault list in force, shared by the upgrade tasks.
#[derive(Clone)]
pub struct FaultState {
    scenario: Arc<Vec<Fault>>,
    current: Arc<RwLock<Vec<Fault>>>,
}

impl FaultState {
    pub fn new(scenario: Vec<Fault>) -> FaultState {
        warn_ignored(&scenario, "the scenario");
        FaultState {
            current: Arc::new(RwLock::new(scenario.clone())),
            scenario: Arc::new(scenario),
        }
    }

    pub fn current(&self) -> Vec<Fault> {
        self.current.read().clone()
    }

    fn set(&self, faults: Vec<Fault>, from: &str) {
        warn_ignored(&faults, from);
        let mut cur = self.current.write();
        if *cur != faults {
            tracing::info!(faults = faults.len(), "faults now from {from}");
            *cur = faults;
        }
    }

    fn reset(&self) {
        self.set(
            (*self.scenario).clone(),
            "the scenario (no ConfigMap kube-system/kubesim-faults)",
        );
    }

    fn apply(&self, cm: &ConfigMap) {
        match faults_of(cm) {
            Ok(f) => self.set(f, "ConfigMap kube-system/kubesim-faults"),
            Err(e) => tracing::warn!(
                "ConfigMap kube-system/kubesim-faults: cannot parse data.faults, keeping the previous faults: {e}"
            ),
        }
    }

    /// Follows the ConfigMap until the stream ends (it does not: the watcher
    /// retries with back-off).
    pub async fn follow(self, client: kube::Client) {
        let api: Api<ConfigMap> = Api::namespaced(client, FAULTS_NAMESPACE);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={FAULTS_CONFIGMAP}"));
        let mut stream = watcher(api, cfg).default_backoff().boxed();
        let mut seen = false;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) => seen = false,
                Ok(watcher::Event::InitApply(cm)) | Ok(watcher::Event::Apply(cm)) => {
                    seen = true;
                    self.apply(&cm);
                }
                Ok(watcher::Event::InitDone) => {
                    if !seen {
                        self.reset();
                    }
                }
                Ok(watcher::Event::Delete(_)) => self.reset(),
                Err(e) => tracing::warn!("watching ConfigMap kube-system/kubesim-faults: {e}"),
            }
        }
    }
}

fn warn_ignored(faults: &[Fault], from: &str) {
    let ignored = ignored_kinds(faults);
    if !ignored.is_empty() {
        tracing::warn!(
            "faults from {from}: ignoring {} (they make no sense against a real API server)",
            ignored.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn parses_the_scenario_format() {
        let yaml = "- type: UpgradeFails\n  component: containerd\n  nodes: [worker-2]\n- {type: UpgradeHangs, component: kubelet}\n";
        assert_eq!(
            parse_faults(yaml).unwrap(),
            vec![
                Fault::UpgradeFails {
                    component: "containerd".into(),
                    nodes: vec!["worker-2".into()]
                },
                Fault::UpgradeHangs {
                    component: "kubelet".into(),
                    nodes: vec![]
                },
            ]
        );
        assert_eq!(parse_faults("").unwrap(), vec![]);
        assert_eq!(parse_faults("[]").unwrap(), vec![]);
        assert_eq!(parse_faults("~").unwrap(), vec![]);
        assert!(parse_faults("- type: Nope").is_err());
        assert!(parse_faults("- {type: UpgradeFails, component: x, typo: 1}").is_err());
    }

    #[test]
    fn configmap_without_the_key_means_no_faults() {
        let mut cm = ConfigMap::default();
        assert_eq!(faults_of(&cm).unwrap(), vec![]);
        cm.data = Some(BTreeMap::from([(
            "faults".to_string(),
            "- {type: UpgradeFails, component: etcd}".to_string(),
        )]));
        assert_eq!(faults_of(&cm).unwrap().len(), 1);
    }

    #[test]
    fn ignored_kinds_are_named_once() {
        let faults = parse_faults(
            "- {type: WatchDrops, everySeconds: 5}\n- {type: ApiErrors, rate: 0.5}\n- {type: WatchDrops, everySeconds: 9}\n- {type: PdbBlocks, namespace: a, name: b}\n- {type: UpgradeFails, component: kubelet}\n- {type: NodeNeverReady}\n",
        )
        .unwrap();
        assert_eq!(ignored_kinds(&faults), ["ApiErrors", "PdbBlocks", "WatchDrops"]);
    }

    #[test]
    fn state_replaces_and_resets() {
        let scenario = parse_faults("- {type: UpgradeHangs, component: kubelet}").unwrap();
        let st = FaultState::new(scenario.clone());
        assert_eq!(st.current(), scenario);
        let mut cm = ConfigMap {
            data: Some(BTreeMap::from([("faults".to_string(), "[]".to_string())])),
            ..Default::default()
        };
        st.apply(&cm);
        assert!(st.current().is_empty());
        cm.data = Some(BTreeMap::from([("faults".to_string(), "- [not a fault".to_string())]));
        st.apply(&cm);
        assert!(st.current().is_empty(), "a broken list keeps the previous one");
        st.reset();
        assert_eq!(st.current(), scenario);
    }
}
