//! One reconcile pass of a ClusterUpgrade that is not being deleted: given
//! this observation, these requests, this status.

use drover_api::names::FINALIZER;
use drover_api::{Outcome, Reason};
use drover_plan::{Failure, NodePhase};
use http::Method;
use kube::runtime::controller::Action as Requeue;
use serde_json::json;

use super::fixtures::*;
use crate::fake::{Call, FakeNodeOps, Op};

#[tokio::test]
async fn without_the_finalizer_a_pass_adds_it_and_does_nothing_else() {
    let cu = upgrade(false);
    let (ctx, api) = context(FakeNodeOps::new(), vec![worker("w1", OLD)], vec![cu.clone()]);
    let answer = serde_json::to_value(upgrade(true)).unwrap();
    let requeue = pass(&ctx, &cu, api, |mut api| async move {
        let mut req = api.expect(Method::PATCH, &cu_path()).await;
        assert_eq!(req.content_type.as_deref(), Some("application/json-patch+json"));
        assert_eq!(
            req.body,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
            ])
        );
        req.ok(answer);
        api
    })
    .await
    .expect("the pass succeeds");
    // The patch wakes the next pass; this one touches nothing else.
    assert_eq!(requeue, Requeue::await_change());
    assert_eq!(ctx.ops.calls(), vec![]);
}

#[tokio::test]
async fn with_the_control_plane_cache_synced_a_pass_lists_no_pod() {
    let cu = upgrade(true);
    let w1 = worker("w1", OLD);
    let (ctx, api) = context(FakeNodeOps::new(), vec![w1.clone()], vec![cu.clone()]);
    let apiserver: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "kube-apiserver-cp1", "namespace": "kube-system", "labels": {"component": "kube-apiserver"}},
        "spec": {"nodeName": "cp1", "containers": [{"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.34.2"}]},
    }))
    .unwrap();
    let ctx = with_control_plane_cache(ctx, vec![apiserver]);
    let seen = cu.clone();
    pass(&ctx, &cu, api, |mut api| async move {
        // No list of kube-system pods: the first request is the status.
        let status = status_write(&mut api, &seen).await;
        assert_eq!(condition(&status, "Ready"), ("False".into(), "RollingOut".into()));
        assert_eq!(event(&mut api).await["reason"], "RollingOut");
        let (_, record) = record_write(&mut api, &w1).await;
        assert_eq!(record.map(|r| r.phase), Some(NodePhase::Cordoning));
        assert_eq!(event(&mut api).await["reason"], "NodeStarted");
        api
    })
    .await
    .expect("the pass succeeds");
}

#[tokio::test]
async fn a_ready_worker_on_the_old_version_is_started_and_the_status_says_reconciling() {
    let cu = upgrade(true);
    let w1 = worker("w1", OLD);
    let (ctx, api) = context(FakeNodeOps::new(), vec![w1.clone()], vec![cu.clone()]);
    let seen = cu.clone();
    let requeue = pass(&ctx, &cu, api, |mut api| async move {
        // observe: versionPolicy.skew Enforce (the default) reads the control
        // plane's versions; containerd's own is in nodeInfo (no pod list).
        skew_pod_lists(&mut api).await;
        let status = status_write(&mut api, &seen).await;
        assert_eq!(condition(&status, "Ready"), ("False".into(), "RollingOut".into()));
        assert_eq!(condition(&status, "Reconciling").0, "True");
        assert_eq!(status["counts"]["inScope"], 1);
        assert_eq!(status["observedGeneration"], 1);
        // Ready appeared: said once, as an event.
        let ev = event(&mut api).await;
        assert_eq!(
            (ev["type"].as_str(), ev["reason"].as_str()),
            (Some("Normal"), Some("RollingOut"))
        );
        // The start writes the record only, where there was none: a merge
        // patch guarded by the node's resourceVersion.
        let (req, record) = record_write(&mut api, &w1).await;
        assert_eq!(req.content_type.as_deref(), Some("application/merge-patch+json"));
        assert_eq!(req.body["metadata"]["resourceVersion"], "100");
        let record = record.expect("a record");
        assert_eq!(
            (record.upgrade.as_str(), record.generation, record.phase),
            (CU, 1, NodePhase::Cordoning)
        );
        assert_eq!(record.started, record.since);
        let ev = event(&mut api).await;
        assert_eq!(
            (ev["reason"].as_str(), ev["action"].as_str()),
            (Some("NodeStarted"), Some("Start"))
        );
        api
    })
    .await
    .expect("the pass succeeds");
    assert_eq!(requeue, Requeue::requeue(ctx.settings.busy_requeue));
    // Starting only writes the record: no node operation yet.
    assert_eq!(ctx.ops.calls(), vec![]);
}

#[tokio::test]
async fn a_node_at_cordoning_is_cordoned_and_its_record_moves_to_draining() {
    let from = record(NodePhase::Cordoning, None);
    let w1 = with_record(worker("w1", OLD), &from);
    let cu = upgrade(true);
    let (ctx, api) = context(FakeNodeOps::new(), vec![w1.clone()], vec![cu.clone()]);
    let seen = cu.clone();
    let from_text = from.to_annotation();
    pass(&ctx, &cu, api, |mut api| async move {
        skew_pod_lists(&mut api).await;
        let status = status_write(&mut api, &seen).await;
        assert_eq!(status["counts"]["updating"], 1);
        assert_eq!(status["nodes"][0]["name"], "w1");
        assert_eq!(status["nodes"][0]["step"], "Cordon");
        assert_eq!(event(&mut api).await["reason"], "RollingOut");
        // The step's own task: cordon (the fake), then the transition's
        // on_done, compared-and-swapped against the record it started from.
        let (req, record) = record_write(&mut api, &w1).await;
        assert_eq!(req.content_type.as_deref(), Some("application/json-patch+json"));
        assert_eq!(
            req.body[0],
            json!({"op": "test", "path": RECORD_PATH, "value": from_text})
        );
        assert_eq!(req.body[1]["op"], "replace");
        assert_eq!(req.body[1]["path"], RECORD_PATH);
        let record = record.expect("a record");
        assert_eq!(record.phase, NodePhase::Draining);
        assert_eq!(
            (record.started, record.attempts, record.failure),
            (from.started, 0, None)
        );
        assert!(record.since > from.since, "Draining starts now");
        // No event: a node's Normal events are its start and its end (the
        // mock server fails the pass on any request not expected here).
        api
    })
    .await
    .expect("the pass succeeds");
    assert_eq!(
        ctx.ops.calls(),
        vec![Call::Cordon {
            node: "w1".into(),
            owner: CU.into()
        }]
    );
}

#[tokio::test]
async fn a_failed_upgrade_sends_the_node_back_through_uncordoning_with_the_failure() {
    let from = record(NodePhase::Upgrading, Some("containerd"));
    let w1 = cordoned(with_record(worker("w1", OLD), &from));
    let mut cu = upgrade(true);
    cu.spec.strategy.retries = 0;
    let failed = Outcome::Failed {
        reason: Reason::UpgradeJobFailed,
        message: "the upgrade Job failed: exit code 3".into(),
    };
    let ops = FakeNodeOps::new().answer(Op::Upgrade, failed);
    let (ctx, api) = context(ops, vec![w1.clone()], vec![cu.clone()]);
    let seen = cu.clone();
    let from_text = from.to_annotation();
    pass(&ctx, &cu, api, |mut api| async move {
        skew_pod_lists(&mut api).await;
        status_write(&mut api, &seen).await;
        assert_eq!(event(&mut api).await["reason"], "RollingOut");
        let (req, record) = record_write(&mut api, &w1).await;
        assert_eq!(
            req.body[0],
            json!({"op": "test", "path": RECORD_PATH, "value": from_text})
        );
        let record = record.expect("a record");
        assert_eq!(record.phase, NodePhase::Uncordoning);
        assert_eq!(
            record.failure,
            Some(Failure {
                reason: Reason::UpgradeJobFailed,
                message: "the upgrade Job failed: exit code 3".into(),
                step: "Upgrade".into(),
                component: Some("containerd".into()),
                skipped: false,
            })
        );
        let ev = event(&mut api).await;
        assert_eq!(ev["type"], "Warning");
        assert_eq!(ev["reason"], "UpgradeJobFailed");
        assert_eq!(ev["action"], "Upgrade");
        assert_eq!(
            ev["note"],
            "node w1 containerd 1.7.22: the upgrade Job failed: exit code 3"
        );
        api
    })
    .await
    .expect("the pass succeeds");
    assert_eq!(
        ctx.ops.calls(),
        vec![Call::Upgrade {
            node: "w1".into(),
            component: "containerd".into(),
            version: NEW.into(),
            owner: CU.into(),
        }]
    );
}

#[tokio::test]
async fn a_failed_upgrade_with_retries_left_is_retried_after_the_backoff_keeping_the_node() {
    let from = record(NodePhase::Upgrading, Some("containerd"));
    let w1 = cordoned(with_record(worker("w1", OLD), &from));
    let mut cu = upgrade(true);
    cu.spec.strategy.retries = 2;
    cu.spec.strategy.retry_delay = "20s".into();
    let failed = Outcome::Failed {
        reason: Reason::UpgradeJobFailed,
        message: "the upgrade Job failed: exit code 3".into(),
    };
    let ops = FakeNodeOps::new().answer(Op::Upgrade, failed);
    let (ctx, api) = context(ops, vec![w1.clone()], vec![cu.clone()]);
    let seen = cu.clone();
    pass(&ctx, &cu, api, |mut api| async move {
        skew_pod_lists(&mut api).await;
        status_write(&mut api, &seen).await;
        assert_eq!(event(&mut api).await["reason"], "RollingOut");
        let (_, record) = record_write(&mut api, &w1).await;
        let record = record.expect("a record");
        // Still upgrading the same component, still cordoned (no uncordon call), one retry counted.
        assert_eq!(
            (
                record.phase,
                record.component.as_deref(),
                record.retries,
                record.failure.is_none()
            ),
            (NodePhase::Upgrading, Some("containerd"), 1, true)
        );
        let at = record.retry_at.expect("a retry time");
        let wait = at.duration_since(jiff::Timestamp::now()).as_secs_f64();
        assert!(
            (15.0..=20.0).contains(&wait),
            "the retry is {wait}s away, want spec.strategy.retryDelay (20s)"
        );
        assert_eq!(record.since, at, "the retry's Job deadline counts from the retry");
        assert!(
            record.message.contains("try 1 failed (UpgradeJobFailed"),
            "{}",
            record.message
        );
        let ev = event(&mut api).await;
        assert_eq!(
            (ev["type"].as_str(), ev["reason"].as_str()),
            (Some("Warning"), Some("Retrying"))
        );
        api
    })
    .await
    .expect("the pass succeeds");
    assert_eq!(ctx.ops.calls().len(), 1, "{:?}", ctx.ops.calls());
}
