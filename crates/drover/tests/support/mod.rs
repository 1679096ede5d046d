//! End-to-end harness: the real `drover` binary against one of two beds,
//! and bounded waits on what the API says.
//!
//! - `Bed::Kubesim`: kubesim's in-process simulation (fast; faults of every kind).
//! - `Bed::Real`: a real etcd, kube-apiserver, kube-controller-manager,
//!   kube-scheduler and KWOK from `scripts/controlplane.sh`, drover running
//!   as its ServiceAccount under deploy/'s RBAC (see real.rs).
//!
//! `on_both_beds!` writes a test once and runs it on each bed that
//! `DROVER_TEST_BED` (kubesim, real; both when unset) selects.
#![allow(dead_code)]

pub mod cutoff;
pub mod real;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_api::ClusterUpgrade;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use kubesim::sim::{BadEffect, Fault, Report, Scenario, Simulation};
use serde_json::Value;

/// Where a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bed {
    Kubesim,
    Real,
}

impl Bed {
    /// Whether this run uses the bed. The real bed needs Go to build its
    /// binaries: without it the real tests are skipped with a note, unless
    /// `CI=true`, where they fail.
    pub fn selected(self) -> bool {
        match self {
            Bed::Kubesim => real::bed_selected("kubesim"),
            Bed::Real => {
                if !real::bed_selected("real") {
                    return false;
                }
                let go = Command::new("go")
                    .arg("version")
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !go {
                    assert!(
                        std::env::var("CI").as_deref() != Ok("true"),
                        "CI=true and the real test bed cannot be built: `go` is not installed"
                    );
                    eprintln!(
                        "skipping the real-bed test: `go` is not installed (DROVER_TEST_BED=kubesim hides this note)"
                    );
                    return false;
                }
                true
            }
        }
    }
}

/// One test, run once on each selected bed: `mod NAME { fn kubesim; fn real }`.
#[macro_export]
macro_rules! on_both_beds {
    ($(#[$m:meta])* async fn $name:ident($bed:ident: Bed) $body:block) => {
        $(#[$m])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($bed: Bed) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kubesim() {
                if Bed::Kubesim.selected() {
                    case(Bed::Kubesim).await
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real() {
                if Bed::Real.selected() {
                    case(Bed::Real).await
                }
            }
        }
    };
}

/// End-to-end tests share two cores. A bed spends most of its time
/// waiting for simulated seconds to pass (a real bed's control plane uses
/// well under one core), so up to `DROVER_TEST_CONCURRENCY` of them (default
/// 2) run at once; the binary's test threads (one per core) bound it too.
/// Tests whose load or timing must not be shared take every slot
/// ([`exclusive`]).
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
static SLOTS_INIT: std::sync::Once = std::sync::Once::new();

fn concurrency() -> u32 {
    std::env::var("DROVER_TEST_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(2)
}

fn slots() -> &'static tokio::sync::Semaphore {
    SLOTS_INIT.call_once(|| SLOTS.add_permits(concurrency() as usize));
    &SLOTS
}

/// One of the slots end-to-end tests share: held for the test's life.
pub async fn serial() -> tokio::sync::SemaphorePermit<'static> {
    slots().acquire().await.expect("the test slots are never closed")
}

/// Every slot: nothing else runs beside this test (a 103-node bed, a
/// test of real-time deadlines).
pub async fn exclusive() -> tokio::sync::SemaphorePermit<'static> {
    slots()
        .acquire_many(concurrency())
        .await
        .expect("the test slots are never closed")
}

/// A running `drover run`, killed when dropped.
pub struct Drover {
    pub child: Child,
    pub log: PathBuf,
}

impl Drover {
    /// SIGKILL: no graceful shutdown, as a crash or an OOM kill.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Drover {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Env {
    pub bed: Bed,
    sim: Option<Simulation>,
    real: Option<real::Real>,
    /// An admin client.
    pub client: Client,
    pub dir: PathBuf,
    /// An admin kubeconfig (kubectl in tests).
    pub kubeconfig: PathBuf,
    /// What `drover run` uses: on the real bed, its ServiceAccount's token.
    pub drover_kubeconfig: PathBuf,
    /// Every node's drover.dev/progress record over the test.
    pub progress: ProgressLog,
    progress_watch: tokio::task::JoinHandle<()>,
    runs: usize,
    /// PodDisruptionBudget specs changed by `block_pdb` on the real bed.
    blocked: Mutex<Vec<(String, String, Value)>>,
    /// The faults set on the real bed's agent (its ConfigMap holds them all).
    agent_faults: Mutex<Vec<Fault>>,
}

/// Each node's `drover.dev/progress` record, every change a node watch saw;
/// and every change in the order the watch saw them, across nodes.
#[derive(Clone, Default)]
pub struct ProgressLog(Arc<Mutex<Records>>, Arc<Mutex<Vec<(String, String)>>>);

/// Node → its records in the order seen.
type Records = BTreeMap<String, Vec<String>>;

impl ProgressLog {
    fn watch(&self, client: Client) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let nodes = watcher(Api::<Node>::all(client), watcher::Config::default())
                .default_backoff()
                .applied_objects();
            futures::pin_mut!(nodes);
            while let Some(n) = nodes.next().await {
                let Ok(n) = n else { continue };
                let Some(record) = n.annotations().get("drover.dev/progress") else {
                    continue;
                };
                log.record(&n.name_any(), record);
            }
        })
    }

    /// Every record seen, by node, in order.
    pub fn all(&self) -> Records {
        self.0.lock().unwrap().clone()
    }

    pub fn record(&self, node: &str, record: &str) {
        let mut m = self.0.lock().unwrap();
        let seen = m.entry(node.to_string()).or_default();
        if seen.last().map(String::as_str) != Some(record) {
            seen.push(record.to_string());
            self.1.lock().unwrap().push((node.to_string(), record.to_string()));
        }
    }

    /// Where two leaders' writes interleaved: on a node, a record of a
    /// lower term after one of a higher term (a deposed leader's write
    /// landing over its successor's), or one term written by two replicas.
    /// Records without a term are term 0, without a writer are skipped.
    pub fn term_violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut writers: BTreeMap<i64, String> = BTreeMap::new();
        for (node, records) in self.0.lock().unwrap().iter() {
            let mut highest = (0i64, String::new());
            for r in records {
                let Ok(v) = serde_json::from_str::<Value>(r) else {
                    continue;
                };
                let term = v["term"].as_i64().unwrap_or(0);
                let writer = v["writer"].as_str().unwrap_or_default().to_string();
                if term < highest.0 {
                    out.push(format!(
                        "{node}: a record of {writer:?} (term {term}) after one of {:?} (term {})",
                        highest.1, highest.0
                    ));
                }
                if !writer.is_empty() {
                    let first = writers.entry(term).or_insert_with(|| writer.clone());
                    if *first != writer {
                        out.push(format!("term {term} written by both {first:?} and {writer:?}"));
                    }
                }
                if term >= highest.0 {
                    highest = (term, writer);
                }
            }
        }
        out
    }

    /// The records `writer` wrote after `successor`'s first record on any
    /// node, in the watch's order (one watch: the API server's order).
    pub fn written_after(&self, writer: &str, successor: &str) -> Vec<String> {
        let of = |r: &str| {
            serde_json::from_str::<Value>(r)
                .ok()
                .and_then(|v| v["writer"].as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let order = self.1.lock().unwrap();
        let Some(first) = order.iter().position(|(_, r)| of(r) == successor) else {
            return vec![];
        };
        order[first..]
            .iter()
            .filter(|(_, r)| of(r) == writer)
            .map(|(n, r)| format!("{n}: {r}"))
            .collect()
    }

    /// Every record seen, as (node, writer, term), in the watch's order.
    pub fn writers(&self) -> Vec<(String, String, i64)> {
        self.1
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(n, r)| {
                let v = serde_json::from_str::<Value>(r).ok()?;
                Some((
                    n.clone(),
                    v["writer"].as_str().unwrap_or_default().to_string(),
                    v["term"].as_i64().unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Records that went back to a state they had left
    /// ([`kubesim::sim::record_regressions`], which the chaos soak uses too).
    pub fn regressions(&self) -> Vec<String> {
        kubesim::sim::record_regressions(&self.0.lock().unwrap())
    }

    /// Nodes with at least one record.
    pub fn nodes(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The most zones (`zone_of` a node's name) with a node in flight at
    /// once, in the watch's order: a node is in flight from a record of an
    /// unfinished phase until one of Done or Failed.
    pub fn max_zones_in_flight(&self, zone_of: impl Fn(&str) -> String) -> usize {
        let mut in_flight: BTreeMap<String, String> = BTreeMap::new();
        let mut most = 0;
        for (node, r) in self.1.lock().unwrap().iter() {
            let phase = serde_json::from_str::<Value>(r)
                .ok()
                .and_then(|v| v["phase"].as_str().map(str::to_string))
                .unwrap_or_default();
            if matches!(phase.as_str(), "Done" | "Failed" | "") {
                in_flight.remove(node);
            } else {
                in_flight.insert(node.clone(), zone_of(node));
            }
            let zones: std::collections::BTreeSet<&String> = in_flight.values().collect();
            most = most.max(zones.len());
        }
        most
    }
}

impl Env {
    /// Starts `scenario` (a file of examples/clusters, without `.yaml`) on
    /// `bed`. kubesim runs it at `speed`; the real bed at its own speed
    /// (`DROVER_REAL_SPEED`, default 20), since its controllers keep real time.
    pub async fn start(bed: Bed, scenario: &str, speed: f64) -> Env {
        let file = real::repo_root().join(format!("examples/clusters/{scenario}.yaml"));
        let dir = std::env::temp_dir().join(format!("drover-e2e-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let (sim, real, client, kubeconfig, drover_kubeconfig) = match bed {
            Bed::Kubesim => {
                let sc = Scenario::from_file(&file).expect("the scenario parses");
                let sim = Simulation::start(sc, speed).await.expect("the simulation starts");
                let client = sim.client().unwrap();
                let kubeconfig = dir.join("kubeconfig");
                sim.server().write_kubeconfig(&kubeconfig).unwrap();
                Api::<CustomResourceDefinition>::all(client.clone())
                    .create(&PostParams::default(), &drover_api::crd::crd())
                    .await
                    .unwrap();
                // drover's own namespace, as deploy/ makes it.
                let ns: k8s_openapi::api::core::v1::Namespace =
                    serde_json::from_value(serde_json::json!({"metadata": {"name": "drover-system"}})).unwrap();
                Api::all(client.clone())
                    .create(&PostParams::default(), &ns)
                    .await
                    .unwrap();
                (Some(sim), None, client, kubeconfig.clone(), kubeconfig)
            }
            Bed::Real => {
                let r = real::Real::start(&dir.join("cp"), &file, real::real_speed()).await;
                let (client, admin, dk) = (r.client.clone(), r.admin.clone(), r.drover_kubeconfig.clone());
                (None, Some(r), client, admin, dk)
            }
        };
        let progress = ProgressLog::default();
        let progress_watch = progress.watch(client.clone());
        Env {
            bed,
            sim,
            real,
            client,
            dir,
            kubeconfig,
            drover_kubeconfig,
            progress,
            progress_watch,
            runs: 0,
            blocked: Mutex::new(Vec::new()),
            agent_faults: Mutex::new(Vec::new()),
        }
    }

    /// The simulation, for kubesim-only tests.
    pub fn sim(&self) -> &Simulation {
        self.sim.as_ref().expect("a kubesim-only test runs on the kubesim bed")
    }

    /// The real bed, for real-only checks.
    pub fn real(&self) -> Option<&real::Real> {
        self.real.as_ref()
    }

    /// A timeout for `d` of kubesim time: the real bed is slower.
    pub fn timeout(&self, d: Duration) -> Duration {
        match self.bed {
            Bed::Kubesim => d,
            Bed::Real => d * 5,
        }
    }

    /// What the invariant recorder saw, on either bed.
    pub async fn report(&self) -> Report {
        match (&self.sim, &self.real) {
            (Some(sim), _) => sim.recorder().report(sim.now()),
            (_, Some(real)) => real.report().await,
            _ => unreachable!(),
        }
    }

    /// Makes a PodDisruptionBudget allow no disruption: kubesim's PdbBlocks
    /// fault, or on the real bed its spec set to `maxUnavailable: 0`.
    pub async fn block_pdb(&self, namespace: &str, name: &str) {
        if let Some(sim) = &self.sim {
            sim.set_fault(Fault::PdbBlocks {
                namespace: namespace.into(),
                name: name.into(),
            })
            .unwrap();
            return;
        }
        let api: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
            Api::namespaced(self.client.clone(), namespace);
        let pdb = api.get(name).await.unwrap();
        let spec = serde_json::to_value(pdb.spec.unwrap()).unwrap();
        let patch = serde_json::json!({"spec": {"minAvailable": null, "maxUnavailable": 0}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        self.blocked.lock().unwrap().push((namespace.into(), name.into(), spec));
    }

    /// The upgrade pods of `component` fail (on every node).
    pub async fn fail_upgrades(&self, component: &str) {
        let f = Fault::UpgradeFails {
            component: component.into(),
            nodes: vec![],
        };
        self.add_fault(f).await;
    }

    /// The upgrade pods of `component` fail on `nodes` only.
    pub async fn fail_upgrades_on(&self, component: &str, nodes: &[&str]) {
        let f = Fault::UpgradeFails {
            component: component.into(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        };
        self.add_fault(f).await;
    }

    /// The upgrade pods of `component` run until their deadline on `nodes` only.
    pub async fn hang_upgrades_on(&self, component: &str, nodes: &[&str]) {
        let f = Fault::UpgradeHangs {
            component: component.into(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        };
        self.add_fault(f).await;
    }

    /// Ends every fault: kubesim's, the agent's, and the blocked budgets.
    pub async fn clear_faults(&self) {
        if let Some(sim) = &self.sim {
            sim.clear_faults();
            return;
        }
        self.agent_faults.lock().unwrap().clear();
        self.set_agent_faults(&[]).await;
        let blocked = std::mem::take(&mut *self.blocked.lock().unwrap());
        for (ns, name, spec) in blocked {
            let api: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> = Api::namespaced(self.client.clone(), &ns);
            let patch = serde_json::json!({"spec": {"minAvailable": spec["minAvailable"], "maxUnavailable": spec["maxUnavailable"]}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    }

    /// The health endpoints' base URL on either bed, plain HTTP, no
    /// trailing slash (`http://127.0.0.1:PORT`): `GET {base}/nodes/{node}/healthz`
    /// (200 `ok`, 503 `unhealthy: ...`, 404 for an unknown node) and
    /// `GET|POST {base}/api/v1/query` (Prometheus's instant-query API;
    /// docs/simulation.md, "Health").
    pub fn health_base(&self) -> String {
        match (&self.sim, &self.real) {
            (Some(sim), _) => sim.health_url(),
            (_, Some(real)) => real.health_url(),
            _ => unreachable!(),
        }
    }

    /// `GET {health_base}{path}`: (status code, body).
    pub fn health_get(&self, path: &str) -> (u16, String) {
        let base = self.health_base();
        let port: u16 = base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the base URL");
        http_get(port, path).unwrap_or_else(|| panic!("no answer from {base}{path}"))
    }

    /// Nodes whose live `component` is `version` are bad (both beds):
    /// their health endpoint answers 503 and `kubesim_bad_version` shows
    /// them; `effect` holds their pods unready or fires `KubesimBadVersion`.
    /// Added to the faults already set.
    pub async fn bad_version(&self, component: &str, version: &str, effect: BadEffect) {
        self.bad_version_on(component, version, effect, &[]).await
    }

    /// [`Env::bad_version`] on `nodes` only.
    pub async fn bad_version_on(&self, component: &str, version: &str, effect: BadEffect, nodes: &[&str]) {
        self.add_fault(Fault::BadVersion {
            component: component.into(),
            version: version.into(),
            effect,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        })
        .await
    }

    /// The alert `name` fires (`ALERTS{alertname=name, alertstate="firing",
    /// severity=severity}`) until `clear_faults`. Added to the faults already set.
    pub async fn fire_alert(&self, name: &str, severity: &str) {
        self.add_fault(Fault::AlertFiring {
            name: name.into(),
            severity: severity.into(),
        })
        .await
    }

    /// Adds a fault on either bed: kubesim's `set_fault`, or the agent's
    /// ConfigMap rewritten with every fault set so far plus this one.
    async fn add_fault(&self, f: Fault) {
        if let Some(sim) = &self.sim {
            sim.set_fault(f).unwrap();
            return;
        }
        let all = {
            let mut faults = self.agent_faults.lock().unwrap();
            faults.push(f);
            faults.clone()
        };
        self.set_agent_faults(&all).await;
    }

    /// The real bed's agent reads its faults from a ConfigMap.
    async fn set_agent_faults(&self, faults: &[Fault]) {
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kubesim-faults", "namespace": "kube-system"},
            "data": {"faults": serde_json::to_string(faults).unwrap()}
        });
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(self.client.clone(), "kube-system");
        api.patch(
            "kubesim-faults",
            &PatchParams::apply("drover-e2e").force(),
            &Patch::Apply(&cm),
        )
        .await
        .unwrap();
    }

    /// Start `drover run` with `extra` flags; its log goes to a file in the test's directory.
    pub fn drover(&mut self, extra: &[&str]) -> Drover {
        let kubeconfig = self.drover_kubeconfig.clone();
        self.drover_via(&kubeconfig, extra)
    }

    /// `drover run` as [`Env::drover`], talking to the API server through `kubeconfig`.
    pub fn drover_via(&mut self, kubeconfig: &std::path::Path, extra: &[&str]) -> Drover {
        self.runs += 1;
        let log = self.dir.join(format!("drover-{}.log", self.runs));
        let file = std::fs::File::create(&log).unwrap();
        let mut args: Vec<&str> = vec!["run", "--drain-pass-seconds", "1", "--kube-qps", "0"];
        if !extra.contains(&"--namespace") {
            args.extend(["--namespace", "drover-system"]);
        }
        if !extra.contains(&"--http-addr") {
            args.extend(["--http-addr", "off"]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(&args)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(extra)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start drover");
        Drover { child, log }
    }

    pub async fn apply(&self, name: &str, spec: Value) {
        let spec: drover_api::ClusterUpgradeSpec = serde_json::from_value(spec).expect("a ClusterUpgradeSpec");
        let cus: Api<ClusterUpgrade> = Api::all(self.client.clone());
        within(self.timeout(Duration::from_secs(20)), "the CRD to be served", async {
            loop {
                match cus
                    .create(&PostParams::default(), &ClusterUpgrade::new(name, spec.clone()))
                    .await
                {
                    Ok(_) => return,
                    // Not served yet, or an injected server error: try again.
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code >= 500 => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(e) => panic!("creating {name}: {e}"),
                }
            }
        })
        .await;
    }

    /// Merge-patch the spec (a GitOps change).
    pub async fn patch_spec(&self, name: &str, spec: Value) {
        let cus: Api<ClusterUpgrade> = Api::all(self.client.clone());
        let patch = serde_json::json!({"spec": spec});
        within(Duration::from_secs(20), "the spec patch", async {
            while let Err(e) = cus.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                assert!(
                    matches!(&e, kube::Error::Api(s) if s.code >= 500),
                    "patching {name}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }

    pub async fn get(&self, name: &str) -> Option<ClusterUpgrade> {
        let api = Api::<ClusterUpgrade>::all(self.client.clone());
        within(Duration::from_secs(20), "reading the ClusterUpgrade", async {
            loop {
                match api.get_opt(name).await {
                    Ok(cu) => return cu,
                    Err(kube::Error::Api(s)) if s.code >= 500 => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(e) => panic!("reading {name}: {e}"),
                }
            }
        })
        .await
    }

    /// Wait until `pred` holds for the ClusterUpgrade; on timeout, fail with what it last said.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&ClusterUpgrade) -> bool,
    ) -> ClusterUpgrade {
        let mut last = None;
        let timeout = self.timeout(timeout);
        let found = tokio::time::timeout(timeout, async {
            loop {
                if let Some(cu) = self.get(name).await {
                    if pred(&cu) {
                        return cu;
                    }
                    last = Some(cu);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        match found {
            Ok(cu) => cu,
            Err(_) => panic!(
                "timed out after {timeout:?} waiting for {name} to be {what}; last status: {}",
                serde_json::to_string_pretty(&last.and_then(|c| c.status)).unwrap()
            ),
        }
    }

    /// `kubectl` started in the background with the admin kubeconfig.
    pub fn kubectl_async(&self, args: &[&str]) -> Child {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        // Bounded: kubectl is killed if it outlives two minutes.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return child.wait_with_output().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.progress_watch.abort();
        if let Some(r) = &mut self.real {
            r.stop();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("drover logs kept in {}", self.dir.display());
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish() % 1_000_000
}

pub async fn within<T>(timeout: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// (status, reason, message) of a condition.
pub fn condition(cu: &ClusterUpgrade, type_: &str) -> Option<(String, String, String)> {
    cu.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub fn is(cu: &ClusterUpgrade, type_: &str, status: &str) -> bool {
    condition(cu, type_).is_some_and(|c| c.0 == status)
        && cu.status.as_ref().and_then(|s| s.observed_generation) == cu.metadata.generation
}

pub fn stalled_with(cu: &ClusterUpgrade, reason: &str) -> bool {
    condition(cu, "Stalled").is_some_and(|c| c.0 == "True" && c.1 == reason)
}

/// A job-based component upgraded by drover's Jobs.
pub fn job(name: &str, version: &str) -> Value {
    serde_json::json!({"name": name, "version": version, "upgrade": {"job": {"image": "registry.example.com/drover-upgrade:1", "privileged": true, "hostRoot": true, "timeout": "30m"}}})
}

/// The small scenario's kubeadm-style upgrade: runtime, etcd, control plane,
/// kubelet, the network plugin and CoreDNS, one version up.
pub fn full_spec() -> Value {
    serde_json::json!({
        "components": [
            job("containerd", "1.7.23"),
            job("etcd", "v3.5.16"),
            job("kube-apiserver", "v1.32.0"),
            job("kube-controller-manager", "v1.32.0"),
            job("kube-scheduler", "v1.32.0"),
            job("kubelet", "v1.32.0"),
            {"name": "calico", "version": "v3.29.0", "upgrade": {"workload": {"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"}}},
            {"name": "coredns", "version": "v1.11.4", "upgrade": {"workload": {"kind": "Deployment", "namespace": "kube-system", "name": "coredns"}}}
        ],
        "strategy": {"maxUnavailable": 2},
        "drain": {"force": true, "deleteEmptyDirData": true, "timeout": "10m"}
    })
}

/// Only the runtime: quick rollouts for behaviour tests.
pub fn runtime_spec(version: &str) -> Value {
    serde_json::json!({
        "components": [job("containerd", version)],
        "strategy": {"maxUnavailable": 1},
        "drain": {"force": true, "deleteEmptyDirData": true, "timeout": "10m"}
    })
}

/// A free loopback port (for `--http-addr`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

pub fn metric(body: &str, line_start: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
