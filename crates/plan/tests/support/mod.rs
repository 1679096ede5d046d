//! A model cluster for planner tests: builds specs and observations, and
//! applies a plan's actions the way the controller and nodeops would.
#![allow(dead_code)]

use std::collections::BTreeMap;

use drover_api::names::label;
use drover_api::*;
use drover_plan::*;
use jiff::{Timestamp, ToSpan};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const CU: &str = "upgrade";

pub fn t0() -> Timestamp {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

pub fn job(name: &str, version: &str) -> Component {
    Component {
        name: name.into(),
        version: version.into(),
        stage: None,
        nodes: None,
        upgrade: UpgradeMethod {
            job: Some(JobUpgrade {
                image: "example.com/upgrader:1".into(),
                command: vec![],
                args: vec![],
                env: vec![],
                privileged: true,
                host_root: true,
                timeout: "30m".into(),
                reboots: false,
                backoff_limit: 2,
            }),
            workload: None,
        },
        verify: None,
    }
}

pub fn workload(name: &str, version: &str, kind: WorkloadKind) -> Component {
    Component {
        name: name.into(),
        version: version.into(),
        stage: None,
        nodes: None,
        upgrade: UpgradeMethod {
            job: None,
            workload: Some(WorkloadUpgrade {
                kind: Some(kind),
                namespace: Some("kube-system".into()),
                name: Some(name.into()),
                container: None,
                timeout: "10m".into(),
                targets: vec![],
                image_repositories: vec![],
                manifest: None,
            }),
        },
        verify: None,
    }
}

pub fn spec(components: Vec<Component>) -> ClusterUpgradeSpec {
    ClusterUpgradeSpec {
        components,
        node_selector: None,
        strategy: Strategy::default(),
        drain: Drain::default(),
        windows: vec![],
        paused: false,
        version_policy: VersionPolicy::default(),
        backup: None,
        reboot: Default::default(),
        health_checks: vec![],
        hooks: Default::default(),
        approved_canary: None,
    }
}

pub fn max_unavailable(s: &mut ClusterUpgradeSpec, v: IntOrString) {
    s.strategy.max_unavailable = v;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Etcd,
    ControlPlane,
    Stacked,
    Worker,
}

/// A node running the given versions.
pub fn node(name: &str, role: Role, versions: &[(&str, &str)]) -> ObservedNode {
    let mut labels = BTreeMap::new();
    if matches!(role, Role::Etcd | Role::Stacked) {
        labels.insert(label::ROLE_ETCD.to_string(), String::new());
    }
    if matches!(role, Role::ControlPlane | Role::Stacked) {
        labels.insert(label::ROLE_CONTROL_PLANE.to_string(), String::new());
    }
    ObservedNode {
        name: name.into(),
        labels,
        ready: true,
        unschedulable: false,
        cordoned_by: None,
        versions: versions.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        progress: None,
        boot_id: format!("boot-{name}-1"),
        keep_cordoned: None,
        unschedulable_by: None,
        newer_record: None,
        steered_by: None,
    }
}

pub fn observation(nodes: Vec<ObservedNode>) -> Observation {
    Observation {
        now: t0(),
        name: CU.into(),
        generation: 1,
        created: t0(),
        nodes,
        workloads: BTreeMap::new(),
        backups: BTreeMap::new(),
        others: vec![],
        self_node: None,
        previous: None,
        allowed_images: None,
        writer: None,
        job_pods_refused: None,
    }
}

/// A kubeadm-like cluster: `cp` stacked control-plane nodes and `workers` workers at v1.31.
pub fn cluster(cp: usize, workers: usize) -> Vec<ObservedNode> {
    let old = [
        ("kubelet", "v1.31.4"),
        ("containerd", "1.7.22"),
        ("kube-apiserver", "v1.31.4"),
        ("etcd", "3.5.15"),
    ];
    let mut out = Vec::new();
    for i in 0..cp {
        out.push(node(&format!("cp-{i}"), Role::Stacked, &old));
    }
    for i in 0..workers {
        out.push(node(&format!("worker-{i:03}"), Role::Worker, &old[..2]));
    }
    out
}

/// The model: a spec, an observation, and how actions change it.
pub struct Model {
    pub spec: ClusterUpgradeSpec,
    pub obs: Observation,
}

impl Model {
    pub fn new(spec: ClusterUpgradeSpec, nodes: Vec<ObservedNode>) -> Self {
        Model {
            spec,
            obs: observation(nodes),
        }
    }

    pub fn node(&self, name: &str) -> &ObservedNode {
        self.obs.nodes.iter().find(|n| n.name == name).unwrap()
    }

    fn node_mut(&mut self, name: &str) -> &mut ObservedNode {
        self.obs.nodes.iter_mut().find(|n| n.name == name).unwrap()
    }

    /// Plan, write the status back as "previous", and return the actions;
    /// the upgrade-pending taints (`Action::Steer`) are applied at once and
    /// left out (tests/steer.rs looks at them with `plan_all`).
    pub fn plan(&mut self) -> Vec<Action> {
        let (steer, rest): (Vec<Action>, Vec<Action>) = self
            .plan_all()
            .into_iter()
            .partition(|a| matches!(a, Action::Steer { .. }));
        for a in &steer {
            self.obs.apply(a, &Outcome::Done);
        }
        rest
    }

    /// Plan, write the status back as "previous", and return every action.
    pub fn plan_all(&mut self) -> Vec<Action> {
        let (actions, status) = {
            let p = plan(&self.spec, &self.obs);
            let status = drover_plan::report::status(&self.spec, &self.obs, &p);
            (p.actions.clone(), status)
        };
        self.obs.previous = Some(status);
        actions
    }

    pub fn status(&self) -> &ClusterUpgradeStatus {
        self.obs.previous.as_ref().unwrap()
    }

    pub fn condition(&self, type_: &str) -> (String, String, String) {
        let c = self.status().conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    /// Apply one action as if it ended with `outcome` (the planner's own
    /// `Observation::apply`), checking on the way that drover never undoes
    /// a cordon it did not make.
    pub fn apply(&mut self, action: &Action, outcome: Outcome) {
        if let Action::Step {
            node,
            step: Step::Uncordon { undo_cordon: true, .. },
            ..
        } = action
            && outcome == Outcome::Done
        {
            let n = self.node(node);
            assert_eq!(
                n.cordoned_by.as_deref(),
                Some(CU),
                "drover undid a cordon it did not make on {}",
                n.name
            );
        }
        self.obs.apply(action, &outcome);
    }

    /// Set the state of the backup Job of the spec's current target and backup spec.
    pub fn set_backup(&mut self, state: BackupState) {
        let hash = drover_api::names::backup_hash(&self.spec);
        let job = drover_api::names::backup_job_name(CU, &hash);
        self.obs.backups.insert(job, state);
    }

    /// Plan and apply everything as Done, `rounds` times, advancing a minute each round.
    pub fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            for a in self.plan() {
                self.apply(&a, Outcome::Done);
            }
            self.tick(1);
        }
        self.plan();
    }

    pub fn tick(&mut self, minutes: i64) {
        self.obs.now = self.obs.now.checked_add(minutes.minutes()).unwrap();
    }

    pub fn in_flight(&self) -> Vec<String> {
        self.obs
            .nodes
            .iter()
            .filter(|n| {
                n.progress
                    .as_ref()
                    .is_some_and(|p| p.upgrade == CU && p.phase.in_flight())
            })
            .map(|n| n.name.clone())
            .collect()
    }
}

pub fn started(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect()
}
