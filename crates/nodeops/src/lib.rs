//! The side effects drover performs on one node, behind [`NodeOps`] so the
//! controller can be tested with a fake (the controller's unit tests record
//! every call through one). Every operation is idempotent (safe
//! to repeat after a crash at any point), bounded in time, and returns an
//! [`Outcome`] that says precisely why it is not finished; a health check
//! only looks, and says what it saw ([`CheckAnswer`]).

pub mod backup;
pub mod budgets;
pub mod cache;
pub mod cordon;
pub mod drain;
pub mod error;
pub mod eviction;
pub mod health;
pub mod job;
pub mod manifest;
pub mod reboot;
pub mod steer;
pub mod verify;
pub mod workload;

use std::collections::BTreeMap;
use std::future::Future;

use drover_api::{BackupJob, JobUpgrade, Verify, WorkloadUpgrade};
use drover_api::{BackupState, ObservedWorkload, Outcome};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;

pub use cache::Caches;
pub use drain::DrainOptions;
pub use error::{NodeOpsError, Result, api_text, refused_for_good, watch_text};
pub use eviction::Evictor;
pub use health::{CheckAnswer, ClusterCa, HealthRequest};
pub use job::Owner;
pub use reboot::RebootRequest;

/// One component upgrade on one node.
#[derive(Debug, Clone)]
pub struct UpgradeRequest<'a> {
    pub owner: &'a Owner,
    pub node: &'a str,
    pub component: &'a str,
    pub version: &'a str,
    pub job: &'a JobUpgrade,
    /// How the result is verified: an upgrade whose result already shows is not run again.
    pub verify: &'a Verify,
    /// When the node entered this step: a failed Job older than this is from an earlier attempt.
    pub not_before: Option<Timestamp>,
}

/// The operations, one node or one workload at a time.
pub trait NodeOps: Send + Sync {
    fn cordon(&self, node: &str, owner: &str) -> impl Future<Output = Result<Outcome>> + Send;
    fn uncordon(&self, node: &str, owner: &str) -> impl Future<Output = Result<Outcome>> + Send;
    /// Cordon, and write the node's progress record in the same patch
    /// (one write instead of two): true when the record went with it; when
    /// false the caller writes it. By default the record never goes with it.
    fn cordon_recording(
        &self,
        node: &str,
        owner: &str,
        record: cordon::Record<'_>,
    ) -> impl Future<Output = Result<(Outcome, bool)>> + Send {
        let _ = record;
        async move { Ok((self.cordon(node, owner).await?, false)) }
    }
    /// Uncordon, and write the node's progress record in the same patch, as
    /// [`NodeOps::cordon_recording`].
    fn uncordon_recording(
        &self,
        node: &str,
        owner: &str,
        record: cordon::Record<'_>,
    ) -> impl Future<Output = Result<(Outcome, bool)>> + Send {
        let _ = record;
        async move { Ok((self.uncordon(node, owner).await?, false)) }
    }
    fn drain(&self, node: &str, opts: &DrainOptions) -> impl Future<Output = Result<Outcome>> + Send;
    fn upgrade(&self, req: &UpgradeRequest<'_>) -> impl Future<Output = Result<Outcome>> + Send;
    fn verify(
        &self,
        node: &str,
        component: &str,
        version: &str,
        verify: &Verify,
        deadline: Option<Timestamp>,
    ) -> impl Future<Output = Result<Outcome>> + Send;
    /// Wait for the node's reboot (running drover's reboot Job first when asked).
    fn reboot(&self, req: &RebootRequest<'_>) -> impl Future<Output = Result<Outcome>> + Send;
    fn upgrade_workload(&self, w: &WorkloadUpgrade, version: &str) -> impl Future<Output = Result<Outcome>> + Send;
    fn observe_workload(
        &self,
        w: &WorkloadUpgrade,
        version: &str,
    ) -> impl Future<Output = Result<ObservedWorkload>> + Send;
    fn ensure_backup(
        &self,
        owner: &Owner,
        backup_hash: &str,
        b: &BackupJob,
    ) -> impl Future<Output = Result<BackupState>> + Send;
    /// The ClusterUpgrade's backup Jobs by name, with their states.
    fn observe_backups(
        &self,
        owner: &Owner,
        b: &BackupJob,
    ) -> impl Future<Output = Result<BTreeMap<String, BackupState>>> + Send;
    /// Why PodSecurity admission would refuse the pod of this upgrade Job
    /// in the Job namespace, in the server's words; None when it admits it
    /// (or the server cannot be asked: the check is advice, never a gate of its own).
    fn job_pod_refusal(&self, req: &UpgradeRequest<'_>) -> impl Future<Output = Result<Option<String>>> + Send;
    /// One try of one health check: whether it passed and what was seen.
    /// Err only when drover's own Kubernetes requests fail (listing pods,
    /// reading a node or the check's Secret); trouble the check finds is a
    /// failed answer.
    fn health(&self, req: &HealthRequest<'_>) -> impl Future<Output = Result<CheckAnswer>> + Send;
}

/// How long a dry-run answer of PodSecurity admission is reused: the check
/// runs at most this often per Job shape, not on every pass.
const ADMISSION_TTL: std::time::Duration = std::time::Duration::from_secs(20);

/// The real operations, through the Kubernetes API.
pub struct KubeNodeOps {
    client: Client,
    evictor: Evictor,
    /// Shared by every drain; its watch starts with the first drain and ends on drop.
    budgets: budgets::BudgetCache,
    /// Where upgrade Jobs run.
    pub job_namespace: String,
    /// Dry-run admission answers by Job shape, with when they were asked.
    admission: std::sync::Mutex<BTreeMap<String, (std::time::Instant, Option<String>)>>,
    /// What the controlPlane health check trusts (drover's kubeconfig's CA).
    cluster_ca: ClusterCa,
    /// The controller's watch-fed nodes and Jobs (none: every read is a GET).
    caches: Caches,
}

impl KubeNodeOps {
    /// `client` for ordinary requests; `evict_client` must not retry 429s
    /// itself (build it from a `kube::Config` with `default_retry = false`).
    pub fn new(client: Client, evict_client: Client, job_namespace: impl Into<String>) -> Self {
        KubeNodeOps {
            budgets: budgets::BudgetCache::new(client.clone()),
            client,
            evictor: Evictor::new(evict_client),
            job_namespace: job_namespace.into(),
            admission: std::sync::Mutex::default(),
            cluster_ca: ClusterCa::default(),
            caches: Caches::default(),
        }
    }

    /// Read nodes and drover's Jobs from these stores instead of asking the
    /// server on every step (see [`Caches`]).
    pub fn with_caches(mut self, caches: Caches) -> Self {
        self.caches = caches;
        self
    }

    /// Trust `ca` for the controlPlane health check's API servers (without
    /// it, the platform's trust store): [`ClusterCa::from_config`] of the
    /// config the clients were built from.
    pub fn with_cluster_ca(mut self, ca: ClusterCa) -> Self {
        self.cluster_ca = ca;
        self
    }

    /// Both clients from one config.
    pub fn from_config(config: kube::Config, job_namespace: impl Into<String>) -> Result<Self> {
        let ca = ClusterCa::from_config(&config);
        let client = Client::try_from(config.clone())?;
        let mut no_retry = config;
        no_retry.default_retry = false;
        let evict_client = Client::try_from(no_retry)?;
        Ok(Self::new(client, evict_client, job_namespace).with_cluster_ca(ca))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn evictor(&self) -> &Evictor {
        &self.evictor
    }
}

impl NodeOps for KubeNodeOps {
    async fn cordon(&self, node: &str, owner: &str) -> Result<Outcome> {
        cordon::cordon(&Api::<Node>::all(self.client.clone()), &self.caches, node, owner).await
    }

    async fn uncordon(&self, node: &str, owner: &str) -> Result<Outcome> {
        cordon::uncordon(&Api::<Node>::all(self.client.clone()), &self.caches, node, owner).await
    }

    async fn cordon_recording(&self, node: &str, owner: &str, record: cordon::Record<'_>) -> Result<(Outcome, bool)> {
        let nodes = Api::<Node>::all(self.client.clone());
        cordon::cordon_recording(&nodes, &self.caches, node, owner, Some(record)).await
    }

    async fn uncordon_recording(&self, node: &str, owner: &str, record: cordon::Record<'_>) -> Result<(Outcome, bool)> {
        let nodes = Api::<Node>::all(self.client.clone());
        cordon::uncordon_recording(&nodes, &self.caches, node, owner, Some(record)).await
    }

    async fn drain(&self, node: &str, opts: &DrainOptions) -> Result<Outcome> {
        drain::Drainer {
            client: &self.client,
            evictor: &self.evictor,
            budgets: &self.budgets,
        }
        .drain(node, opts)
        .await
    }

    async fn upgrade(&self, req: &UpgradeRequest<'_>) -> Result<Outcome> {
        // Idempotent after a crash: if the node already shows the version, do not run it again.
        if req.verify.job_succeeded.is_none() {
            let (node, _) = self
                .caches
                .node(&Api::<Node>::all(self.client.clone()), req.node)
                .await?;
            if let Ok(live) = verify::live_version(&self.client, &node, req.component, req.verify).await?
                && drover_api::known::live_matches(req.verify, req.version, &live)
            {
                return Ok(Outcome::Done);
            }
        }
        let j = job::UpgradeJob {
            owner: req.owner,
            namespace: &self.job_namespace,
            node: req.node,
            component: req.component,
            version: req.version,
            job: req.job,
        };
        job::run(&self.client, &self.caches, &j, req.not_before).await
    }

    async fn verify(
        &self,
        node: &str,
        component: &str,
        version: &str,
        v: &Verify,
        deadline: Option<Timestamp>,
    ) -> Result<Outcome> {
        verify::verify(&self.client, &self.caches, node, component, version, v, deadline).await
    }

    async fn reboot(&self, req: &RebootRequest<'_>) -> Result<Outcome> {
        reboot::reboot(&self.client, &self.caches, &self.job_namespace, req).await
    }

    async fn upgrade_workload(&self, w: &WorkloadUpgrade, version: &str) -> Result<Outcome> {
        workload::upgrade(&self.client, w, version, &self.job_namespace).await
    }

    async fn observe_workload(&self, w: &WorkloadUpgrade, version: &str) -> Result<ObservedWorkload> {
        workload::observe(&self.client, w, version, &self.job_namespace).await
    }

    async fn ensure_backup(&self, owner: &Owner, backup_hash: &str, b: &BackupJob) -> Result<BackupState> {
        backup::ensure(&self.client, owner, backup_hash, b).await
    }

    async fn observe_backups(&self, owner: &Owner, b: &BackupJob) -> Result<BTreeMap<String, BackupState>> {
        backup::observe_all(&self.client, owner, b).await
    }

    async fn job_pod_refusal(&self, req: &UpgradeRequest<'_>) -> Result<Option<String>> {
        // What PodSecurity looks at: the namespace and the pod's privileges.
        let shape = format!(
            "{}/{}/{}/{}",
            self.job_namespace, req.job.image, req.job.privileged, req.job.host_root
        );
        let now = std::time::Instant::now();
        if let Some((at, answer)) = self.admission.lock().expect("not poisoned").get(&shape)
            && now.duration_since(*at) < ADMISSION_TTL
        {
            return Ok(answer.clone());
        }
        let j = job::UpgradeJob {
            owner: req.owner,
            namespace: &self.job_namespace,
            node: req.node,
            component: req.component,
            version: req.version,
            job: req.job,
        };
        // A server that will not answer (no `create pods` in the namespace,
        // an error) says nothing about PodSecurity: go on without the check,
        // and say so once per interval rather than on every pass.
        let answer = job::pod_refusal(&self.client, &j).await.unwrap_or_else(|e| {
            tracing::warn!(namespace = %self.job_namespace, error = %e, "cannot ask whether PodSecurity admits the upgrade Jobs' pods; going on without the check");
            None
        });
        self.admission
            .lock()
            .expect("not poisoned")
            .insert(shape, (now, answer.clone()));
        Ok(answer)
    }

    async fn health(&self, req: &HealthRequest<'_>) -> Result<CheckAnswer> {
        health::run(&self.client, &self.cluster_ca, req).await
    }
}
