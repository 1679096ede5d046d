//! A ClusterUpgrade being deleted: drover undoes what it holds, then kube's
//! finalizer helper removes drover's finalizer.

use std::sync::Arc;
use std::time::Duration;

use drover_api::names::FINALIZER;
use drover_api::{ClusterUpgrade, Outcome};
use drover_plan::NodePhase;
use http::Method;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action as Requeue;
use serde_json::json;
use tokio::task::JoinHandle;

use super::api::{ApiServer, BOUND};
use super::fixtures::*;
use crate::fake::{Call, FakeNodeOps, Op};
use crate::reconcile::reconcile;

fn deleted() -> ClusterUpgrade {
    let mut cu = upgrade(true);
    cu.metadata.deletion_timestamp = Some(Time(ago(5)));
    cu
}

#[tokio::test]
async fn a_deleted_upgrade_uncordons_its_node_deletes_its_jobs_and_lets_go() {
    let from = record(NodePhase::Draining, None);
    let w1 = cordoned(with_record(worker("w1", OLD), &from));
    // A node someone else cordoned, and one drover never touched: left alone.
    let mut w2 = steered(worker("w2", OLD), false);
    w2.spec.get_or_insert_default().unschedulable = Some(true);
    let w3 = worker("w3", NEW);
    let cu = deleted();
    let (ctx, api) = context(FakeNodeOps::new(), vec![w1.clone(), w2, w3], vec![cu.clone()]);
    let answer = serde_json::to_value(&cu).unwrap();
    let from_text = from.to_annotation();
    let requeue = pass(&ctx, &cu, api, |mut api| async move {
        // drover's upgrade-pending taint comes off, compared against the taints the pass saw.
        let mut req = api.expect(Method::PATCH, "/api/v1/nodes/w1").await;
        assert_eq!(req.body[0]["op"], "test");
        assert_eq!(
            req.body[1],
            json!({"op": "replace", "path": "/spec/taints", "value": []})
        );
        let after = applied(&req, &serde_json::to_value(&w1).unwrap());
        req.ok(after);
        // The record goes, compared against what the pass saw.
        let (req, record) = record_write(&mut api, &w1).await;
        assert_eq!(
            req.body,
            json!([
                {"op": "test", "path": RECORD_PATH, "value": from_text},
                {"op": "remove", "path": RECORD_PATH},
            ])
        );
        assert_eq!(record, None);
        // drover's Jobs, by label, in the Job namespace.
        let mut req = api
            .expect(Method::DELETE, "/apis/batch/v1/namespaces/kube-system/jobs")
            .await;
        assert_eq!(req.param("labelSelector"), Some("drover.dev/upgrade=roll"));
        assert_eq!(req.body["propagationPolicy"], "Background");
        req.ok(json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": []}));
        // Then the finalizer, by index, only if it is still drover's.
        let mut req = api.expect(Method::PATCH, &cu_path()).await;
        assert_eq!(req.content_type.as_deref(), Some("application/json-patch+json"));
        assert_eq!(
            req.body,
            json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ])
        );
        let after = applied(&req, &answer);
        req.ok(after);
        api
    })
    .await
    .expect("the pass succeeds");
    assert_eq!(requeue, Requeue::await_change());
    // No observation, no status: only the uncordon of the node drover cordoned.
    assert_eq!(
        ctx.ops.calls(),
        vec![Call::Uncordon {
            node: "w1".into(),
            owner: CU.into()
        }]
    );
}

#[tokio::test]
async fn a_deleted_upgrade_with_a_step_still_running_waits_and_touches_nothing() {
    let w1 = cordoned(with_record(worker("w1", OLD), &record(NodePhase::Draining, None)));
    let cu = deleted();
    let (ctx, api) = context(FakeNodeOps::new(), vec![w1], vec![cu.clone()]);
    // A drain of w1 still running (its task holds the claim).
    let claim = ctx.inflight.claim("w1", CU).expect("free");
    let result = tokio::time::timeout(BOUND, reconcile(Arc::new(cu.clone()), ctx.clone()))
        .await
        .expect("the pass ends within the bound");
    // No request at all: not the record, not the Jobs, not the finalizer.
    let mut api = api;
    api.idle(Duration::from_millis(200)).await;
    let err = result.expect_err("the cleanup waits");
    assert!(err.is_busy(), "{err}");
    assert_eq!(ctx.ops.calls(), vec![]);
    drop(claim);
}

/// Answer whatever comes as the API would (the ClusterUpgrade, an empty
/// Job list, the node as it was) until nothing more comes; what came.
fn lenient(mut api: ApiServer, cu: &ClusterUpgrade, node: &Node) -> JoinHandle<Vec<String>> {
    let (cu, node) = (serde_json::to_value(cu).unwrap(), serde_json::to_value(node).unwrap());
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(mut req) = api.next_within(Duration::from_millis(300)).await {
            seen.push(format!("{} {} {}", req.method, req.path, req.body));
            if req.path.starts_with("/api/v1/nodes/") {
                req.ok(node.clone());
            } else if req.path.ends_with("/jobs") {
                req.ok(json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": []}));
            } else {
                req.ok(cu.clone());
            }
        }
        seen
    })
}

/// A pass of `cu` against [`lenient`]: the requests it made.
async fn lenient_pass(ctx: &Ctx, cu: &ClusterUpgrade, api: ApiServer, node: &Node) -> Vec<String> {
    let server = lenient(api, cu, node);
    let _ = tokio::time::timeout(BOUND, reconcile(Arc::new(cu.clone()), ctx.clone()))
        .await
        .expect("the pass ends within the bound");
    tokio::time::timeout(2 * BOUND, server)
        .await
        .expect("the server ends")
        .expect("the server task")
}

fn removes_the_finalizer(seen: &[String]) -> bool {
    seen.iter()
        .any(|r| r.starts_with(&format!("PATCH {} ", cu_path())) && r.contains("/metadata/finalizers/0"))
}

/// An uncordon that did not take (the node changed meanwhile: the real
/// uncordon answers Waiting on a 409) must keep the finalizer, or the node
/// stays cordoned by a ClusterUpgrade that no longer exists.
#[tokio::test]
async fn an_uncordon_that_did_not_take_keeps_the_finalizer() {
    let w1 = cordoned(worker("w1", OLD));
    let cu = deleted();
    let waiting = Outcome::Waiting {
        message: "node w1 changed while uncordoning; retrying".into(),
    };
    let ops = FakeNodeOps::new().answer(Op::Uncordon, waiting);
    let (ctx, api) = context(ops, vec![w1.clone()], vec![cu.clone()]);
    let seen = lenient_pass(&ctx, &cu, api, &w1).await;
    assert!(!removes_the_finalizer(&seen), "{seen:#?}");
}

/// A node whose cordon the cache has not shown yet (the step cordoned it
/// and wrote Draining; the watch lags) is cordoned all the same: cleanup
/// must undo it (uncordon checks ownership itself, so asking is safe).
#[tokio::test]
async fn a_cordon_the_cache_has_not_shown_yet_is_undone() {
    let w1 = with_record(worker("w1", OLD), &record(NodePhase::Cordoning, None));
    let cu = deleted();
    let (ctx, api) = context(FakeNodeOps::new(), vec![w1.clone()], vec![cu.clone()]);
    ctx.inflight
        .wrote("w1", Some(record(NodePhase::Draining, None).to_annotation()));
    lenient_pass(&ctx, &cu, api, &w1).await;
    assert_eq!(
        ctx.ops.calls(),
        vec![Call::Uncordon {
            node: "w1".into(),
            owner: CU.into()
        }]
    );
}

/// A taint removal that lost its compare-and-swap (the node's taints changed
/// meanwhile: 422 on the test op) keeps the finalizer, or drover's
/// upgrade-pending taint outlives the ClusterUpgrade that owns it.
#[tokio::test]
async fn a_taint_removal_that_did_not_take_keeps_the_finalizer() {
    let w1 = worker("w1", OLD);
    let cu = deleted();
    let (ctx, api) = context(FakeNodeOps::new(), vec![w1.clone()], vec![cu.clone()]);
    let server = tokio::spawn(async move {
        let mut api = api;
        let mut req = api.expect(Method::PATCH, "/api/v1/nodes/w1").await;
        assert_eq!(req.body[1]["path"], "/spec/taints");
        req.fail(422, "Invalid", "the test operation failed");
        api.idle(Duration::from_millis(200)).await;
    });
    let result = tokio::time::timeout(BOUND, reconcile(Arc::new(cu.clone()), ctx.clone()))
        .await
        .expect("the pass ends within the bound");
    tokio::time::timeout(2 * BOUND, server)
        .await
        .expect("the server ends")
        .expect("the server task");
    let err = result.expect_err("the cleanup tries again");
    assert!(err.is_busy(), "{err}");
}
