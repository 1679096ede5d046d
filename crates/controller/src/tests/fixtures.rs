//! What the reconcile tests are given: a ClusterUpgrade, nodes, a
//! `Context` over the mocked API and the fake node operations, and one pass
//! run against a scripted server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drover_api::names::{FINALIZER, annotation};
use drover_api::{ClusterUpgrade, ClusterUpgradeSpec, Component, JobUpgrade, UpgradeMethod};
use drover_plan::{NodePhase, NodeProgress};
use http::Method;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};

use super::api::{ApiServer, BOUND, Req, mock};
use crate::fake::FakeNodeOps;
use crate::inflight::Inflight;
use crate::metrics::Metrics;
use crate::reconcile::{Context, Settings, reconcile};

/// The pointer of the progress annotation in a JSON patch.
pub const RECORD_PATH: &str = "/metadata/annotations/drover.dev~1progress";

/// The ClusterUpgrade's name.
pub const CU: &str = "roll";
/// The desired and the old containerd.
pub const NEW: &str = "1.7.22";
pub const OLD: &str = "1.7.20";

/// A spec that upgrades containerd by Job (verified by nodeInfo), Rolling, defaults otherwise.
pub fn spec() -> ClusterUpgradeSpec {
    ClusterUpgradeSpec {
        components: vec![Component {
            name: "containerd".into(),
            version: NEW.into(),
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
        }],
        node_selector: None,
        strategy: Default::default(),
        drain: Default::default(),
        windows: vec![],
        paused: false,
        version_policy: Default::default(),
        backup: None,
        reboot: Default::default(),
        health_checks: vec![],
        hooks: Default::default(),
        approved_canary: None,
    }
}

/// The ClusterUpgrade as the API serves it, with drover's finalizer or without.
pub fn upgrade(finalizer: bool) -> ClusterUpgrade {
    let mut cu = ClusterUpgrade::new(CU, spec());
    cu.metadata.uid = Some("uid-roll".into());
    cu.metadata.generation = Some(1);
    cu.metadata.resource_version = Some("7".into());
    cu.metadata.creation_timestamp = Some(Time(ago(3600)));
    if finalizer {
        cu.metadata.finalizers = Some(vec![FINALIZER.into()]);
    }
    cu
}

/// `secs` seconds ago, to the second (as records store time).
pub fn ago(secs: i64) -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() - secs).expect("in range")
}

/// A Ready worker running containerd `version`, kubelet v1.34.2; one still
/// to be upgraded carries the upgrade-pending taint, as drover's first pass
/// leaves it.
pub fn worker(name: &str, version: &str) -> Node {
    let n = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "resourceVersion": "100",
            "labels": {"kubernetes.io/hostname": name},
        },
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {
                "architecture": "amd64", "bootID": "b", "machineID": "m", "systemUUID": "s",
                "operatingSystem": "linux", "osImage": "Debian", "kernelVersion": "6.1.0",
                "containerRuntimeVersion": format!("containerd://{version}"),
                "kubeletVersion": "v1.34.2", "kubeProxyVersion": "",
            },
        },
    }))
    .expect("a node");
    steered(n, version != NEW)
}

/// `n` carrying `p` as its progress record.
pub fn with_record(mut n: Node, p: &NodeProgress) -> Node {
    n.annotations_mut()
        .insert(annotation::PROGRESS.into(), p.to_annotation());
    n
}

/// `n` with its taints set: none, or the upgrade-pending taint of [`CU`].
pub fn steered(mut n: Node, on: bool) -> Node {
    let taints = on.then(|| {
        vec![k8s_openapi::api::core::v1::Taint {
            key: drover_api::names::taint::UPGRADE_PENDING.into(),
            value: Some(CU.into()),
            effect: "PreferNoSchedule".into(),
            time_added: None,
        }]
    });
    n.spec.get_or_insert_default().taints = taints;
    n
}

/// `n` cordoned by the ClusterUpgrade.
pub fn cordoned(mut n: Node) -> Node {
    n.annotations_mut().insert(annotation::CORDONED_BY.into(), CU.into());
    n.spec.get_or_insert_default().unschedulable = Some(true);
    n
}

/// The record of a node of [`CU`] in `phase` (since a minute, started ten minutes ago).
pub fn record(phase: NodePhase, component: Option<&str>) -> NodeProgress {
    NodeProgress {
        since: ago(60),
        ..NodeProgress::start(CU, 1, phase, component.map(str::to_string), ago(600))
    }
}

/// The API's answer to a write: the object with the write applied (a JSON
/// patch, a merge patch, or the status of a server-side apply).
pub fn applied(req: &Req, object: &Value) -> Value {
    let mut doc = object.clone();
    match req.content_type.as_deref() {
        Some("application/json-patch+json") => {
            let patch: json_patch::Patch = serde_json::from_value(req.body.clone()).expect("a JSON patch");
            json_patch::patch(&mut doc, &patch).expect("the patch applies");
        }
        Some("application/merge-patch+json") => json_patch::merge(&mut doc, &req.body),
        Some("application/apply-patch+yaml") => doc["status"] = req.body["status"].clone(),
        other => panic!("a write with content type {other:?}"),
    }
    doc
}

pub type Ctx = Arc<Context<FakeNodeOps>>;

/// A `Context` over the mocked API: the caches hold `nodes` and `upgrades`.
pub fn context(ops: FakeNodeOps, nodes: Vec<Node>, upgrades: Vec<ClusterUpgrade>) -> (Ctx, ApiServer) {
    let (client, api) = mock();
    let (node_store, mut node_writer) = reflector::store::<Node>();
    node_writer.apply_watcher_event(&watcher::Event::Init);
    for n in nodes {
        node_writer.apply_watcher_event(&watcher::Event::InitApply(n));
    }
    node_writer.apply_watcher_event(&watcher::Event::InitDone);
    let (upgrade_store, mut upgrade_writer) = reflector::store::<ClusterUpgrade>();
    upgrade_writer.apply_watcher_event(&watcher::Event::Init);
    for u in upgrades {
        upgrade_writer.apply_watcher_event(&watcher::Event::InitApply(u));
    }
    upgrade_writer.apply_watcher_event(&watcher::Event::InitDone);
    let settings = Settings::default();
    let ctx = Context {
        client: client.clone(),
        ops,
        nodes: node_store,
        control_plane_pods: Default::default(),
        upgrades: upgrade_store,
        metrics: Arc::new(Metrics::default()),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "drover".into(),
                instance: Some("drover-0".into()),
            },
        ),
        inflight: Inflight::new(settings.step_concurrency),
        fence: Default::default(),
        settings,
        passes: Default::default(),
    };
    (Arc::new(ctx), api)
}

/// One reconcile pass of `cu` while `script` plays the API server; then
/// the node steps it spawned end, and the script, which must have seen
/// every request it expects, ends with no request left over. Every wait is
/// bounded; a failed assertion in the script fails the test.
pub async fn pass<F>(
    ctx: &Ctx,
    cu: &ClusterUpgrade,
    api: ApiServer,
    script: impl FnOnce(ApiServer) -> F,
) -> crate::Result<Requeue>
where
    F: Future<Output = ApiServer> + Send + 'static,
{
    let server = tokio::spawn(script(api));
    let result = tokio::time::timeout(BOUND, reconcile(Arc::new(cu.clone()), ctx.clone()))
        .await
        .expect("the pass ends within the bound");
    let mut api = match tokio::time::timeout(2 * BOUND, server).await {
        Ok(Ok(api)) => api,
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("the script task: {e}"),
        Err(_) => panic!("the script did not end within {:?}", 2 * BOUND),
    };
    // The script saw all it expects: whatever comes now is unexpected,
    // while the pass's node steps end and a little after.
    let steps = ctx.inflight.wait_idle(BOUND);
    tokio::pin!(steps);
    loop {
        tokio::select! {
            biased;
            idle = &mut steps => {
                assert!(idle, "node steps still running {BOUND:?} after the pass");
                break;
            }
            req = api.next_within(BOUND) => {
                if let Some(req) = req {
                    panic!("expected no more requests; got {req}");
                }
            }
        }
    }
    api.idle(Duration::from_millis(200)).await;
    result
}

/// The path of the ClusterUpgrade.
pub fn cu_path() -> String {
    format!("/apis/drover.dev/v1alpha1/clusterupgrades/{CU}")
}

/// The three control-plane pod lists observe makes for the skew rules
/// (versionPolicy.skew Enforce, the components not in the spec), each
/// answered with no pods.
pub async fn skew_pod_lists(api: &mut ApiServer) {
    for component in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
        let mut req = api.expect(Method::GET, "/api/v1/namespaces/kube-system/pods").await;
        assert_eq!(
            req.param("labelSelector"),
            Some(format!("component={component}").as_str())
        );
        req.ok(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}));
    }
}

/// The status write: a forced server-side apply of the status by drover;
/// answered with `cu` carrying it. The status written.
pub async fn status_write(api: &mut ApiServer, cu: &ClusterUpgrade) -> Value {
    let mut req = api.expect(Method::PATCH, &format!("{}/status", cu_path())).await;
    assert_eq!(req.content_type.as_deref(), Some("application/apply-patch+yaml"));
    assert_eq!(req.param("fieldManager"), Some("drover"));
    assert_eq!(req.param("force"), Some("true"));
    assert_eq!(req.body["apiVersion"], "drover.dev/v1alpha1");
    assert_eq!(req.body["kind"], "ClusterUpgrade");
    let status = req.body["status"].clone();
    let answer = applied(&req, &serde_json::to_value(cu).expect("JSON"));
    req.ok(answer);
    status
}

/// A condition of a status, as (status, reason).
pub fn condition(status: &Value, type_: &str) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"));
    (
        c["status"].as_str().unwrap_or_default().into(),
        c["reason"].as_str().unwrap_or_default().into(),
    )
}

/// An event published about the ClusterUpgrade, or about one of its nodes
/// (regarding the Node, related to the ClusterUpgrade, and naming that
/// node); both cluster-scoped, so in `default`. Answered as created; its body.
pub async fn event(api: &mut ApiServer) -> Value {
    let mut req = api
        .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events")
        .await;
    let body = req.body.clone();
    if body["regarding"]["kind"] == "Node" {
        let node = body["regarding"]["name"].as_str().unwrap_or_default();
        assert_eq!(body["related"]["kind"], "ClusterUpgrade");
        assert_eq!(body["related"]["name"], CU);
        let note = body["note"].as_str().unwrap_or_default();
        assert!(note.contains(node), "an event regarding {node} says: {note}");
    } else {
        assert_eq!(body["regarding"]["kind"], "ClusterUpgrade");
        assert_eq!(body["regarding"]["name"], CU);
    }
    assert_eq!(body["reportingController"], "drover");
    req.created(body.clone());
    body
}

/// A node write of the progress record; answered with `node` patched. The
/// request, and the record the node holds after it.
pub async fn record_write(api: &mut ApiServer, node: &Node) -> (Req, Option<NodeProgress>) {
    let mut req = api
        .expect(Method::PATCH, &format!("/api/v1/nodes/{}", node.name_any()))
        .await;
    let after = applied(&req, &serde_json::to_value(node).expect("JSON"));
    let record = after["metadata"]["annotations"][annotation::PROGRESS]
        .as_str()
        .map(|s| NodeProgress::from_annotation(s).expect("a record drover reads"));
    req.ok(after);
    (req, record)
}

/// `ctx` with a synced cache of the control plane's pods holding `pods`.
pub fn with_control_plane_cache(ctx: Ctx, pods: Vec<k8s_openapi::api::core::v1::Pod>) -> Ctx {
    let Ok(mut c) = Arc::try_unwrap(ctx) else {
        panic!("the context is shared already")
    };
    let (store, mut writer) = kube::runtime::reflector::store::<k8s_openapi::api::core::v1::Pod>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for p in pods {
        writer.apply_watcher_event(&watcher::Event::InitApply(p));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    c.control_plane_pods = crate::observe::ControlPlanePods {
        store: Some(store),
        synced: Arc::new(std::sync::atomic::AtomicBool::new(true)),
    };
    Arc::new(c)
}
