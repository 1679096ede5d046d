//! Node steps whose outcome is not plain success: a blocked drain, and a
//! record that changed while the step ran.

use drover_api::Outcome;
use drover_plan::NodePhase;
use http::Method;
use kube::ResourceExt;
use serde_json::json;

use super::fixtures::*;
use crate::fake::{Call, FakeNodeOps, Op};
use crate::metrics::UpgradeLabels;

#[tokio::test]
async fn a_blocked_drain_keeps_the_node_draining_notes_why_and_warns() {
    let from = record(NodePhase::Draining, None);
    let w1 = cordoned(with_record(worker("w1", OLD), &from));
    let cu = upgrade(true);
    let blocked = Outcome::Blocked {
        message: "pod shop/web-0: the PodDisruptionBudget web allows no disruption".into(),
        timed_out: false,
    };
    let ops = FakeNodeOps::new().answer_on(Op::Drain, "w1", blocked);
    let (ctx, api) = context(ops, vec![w1.clone()], vec![cu.clone()]);
    let seen = cu.clone();
    let from_text = from.to_annotation();
    pass(&ctx, &cu, api, |mut api| async move {
        skew_pod_lists(&mut api).await;
        let status = status_write(&mut api, &seen).await;
        assert_eq!(status["nodes"][0]["step"], "Drain");
        assert_eq!(event(&mut api).await["reason"], "RollingOut");
        let (req, record) = record_write(&mut api, &w1).await;
        assert_eq!(
            req.body[0],
            json!({"op": "test", "path": RECORD_PATH, "value": from_text})
        );
        let record = record.expect("a record");
        // Same phase and entry time, one more attempt, the reason kept.
        assert_eq!(
            (record.phase, record.since, record.attempts),
            (NodePhase::Draining, from.since, 1)
        );
        assert_eq!(
            record.message,
            "pod shop/web-0: the PodDisruptionBudget web allows no disruption"
        );
        assert!(!record.halted && record.failure.is_none());
        let ev = event(&mut api).await;
        assert_eq!(
            (ev["type"].as_str(), ev["reason"].as_str()),
            (Some("Warning"), Some("DrainBlocked"))
        );
        assert_eq!(
            ev["note"],
            "drain of w1 blocked: pod shop/web-0: the PodDisruptionBudget web allows no disruption"
        );
        api
    })
    .await
    .expect("the pass succeeds");
    // The drain ran with the deadline the plan gave: entry time plus spec.drain.timeout (15m).
    let deadline = from.since + jiff::SignedDuration::from_mins(15);
    assert_eq!(
        ctx.ops.calls(),
        vec![Call::Drain {
            node: "w1".into(),
            deadline
        }]
    );
    let blocks = ctx
        .metrics
        .drain_blocks
        .get_or_create(&UpgradeLabels { upgrade: CU.into() })
        .get();
    assert_eq!(blocks, 1);
}

#[tokio::test]
async fn a_record_changed_meanwhile_is_not_overwritten_nor_announced() {
    let from = record(NodePhase::Verifying, Some("containerd"));
    let w1 = steered(cordoned(with_record(worker("w1", NEW), &from)), true);
    let cu = upgrade(true);
    let (ctx, api) = context(FakeNodeOps::new(), vec![w1.clone()], vec![cu.clone()]);
    let seen = cu.clone();
    pass(&ctx, &cu, api, |mut api| async move {
        skew_pod_lists(&mut api).await;
        status_write(&mut api, &seen).await;
        assert_eq!(event(&mut api).await["reason"], "RollingOut");
        // Verified, and uncordoned at once (the plan chained it): Done,
        // but the record is no longer the one the pass saw (the test op
        // fails): 422, and nothing more.
        let mut req = api.expect(Method::PATCH, "/api/v1/nodes/w1").await;
        assert_eq!(req.body[0]["op"], "test");
        let next = req.body[1]["value"]
            .as_str()
            .and_then(drover_plan::NodeProgress::from_annotation);
        assert_eq!(next.map(|p| p.phase), Some(NodePhase::Done));
        req.fail(422, "Invalid", "the test operation failed");
        api
    })
    .await
    .expect("a lost compare-and-swap is not an error");
    let calls = ctx.ops.calls();
    assert_eq!(
        calls.first(),
        Some(&Call::Verify {
            node: "w1".into(),
            component: "containerd".into(),
            version: NEW.into(),
            deadline: Some(from.since + jiff::SignedDuration::from_mins(30)),
        })
    );
    assert_eq!(
        calls.get(1),
        Some(&Call::Uncordon {
            node: "w1".into(),
            owner: CU.into()
        }),
        "{calls:?}"
    );
    // Nothing of ours is assumed over the cache: the next pass plans from the API's record.
    let cached = ctx.nodes.state().pop().expect("w1");
    let overlaid = ctx.inflight.overlay(cached.clone());
    assert_eq!(overlaid.annotations(), cached.annotations());
    assert_eq!(ctx.metrics.api_errors.get(), 0);
}

#[tokio::test]
async fn a_verified_version_goes_on_the_node_in_the_patch_that_moves_its_record_on() {
    let from = record(NodePhase::Verifying, Some("containerd"));
    let w1 = steered(cordoned(with_record(worker("w1", NEW), &from)), true);
    let cu = upgrade(true);
    let (ctx, api) = context(FakeNodeOps::new(), vec![w1.clone()], vec![cu.clone()]);
    let seen = cu.clone();
    let node = w1.clone();
    pass(&ctx, &cu, api, |mut api| async move {
        skew_pod_lists(&mut api).await;
        status_write(&mut api, &seen).await;
        assert_eq!(event(&mut api).await["reason"], "RollingOut");
        // One patch: the compare-and-swap of the record, and the version.
        // The uncordon was chained after the verification (this fake
        // uncordons without a write), so the record goes straight to Done.
        let (req, record) = record_write(&mut api, &node).await;
        assert_eq!(req.body[0]["op"], "test");
        assert_eq!(
            req.body.as_array().map(Vec::len),
            Some(3),
            "test, replace, add: {}",
            req.body
        );
        assert_eq!(record.map(|p| p.phase), Some(NodePhase::Done));
        let after = applied(&req, &serde_json::to_value(&node).unwrap());
        assert_eq!(after["metadata"]["annotations"]["drover.dev/verified.containerd"], NEW);
        // The node's second and last event: it is done.
        let ev = event(&mut api).await;
        assert_eq!(
            (ev["reason"].as_str(), ev["note"].as_str()),
            (Some("NodeUpgraded"), Some("node w1 finished and is schedulable again"))
        );
        api
    })
    .await
    .expect("the pass succeeds");
    // The next pass sees both before the cache does.
    let overlaid = ctx.inflight.overlay(ctx.nodes.state().pop().expect("w1"));
    assert_eq!(overlaid.annotations()["drover.dev/verified.containerd"], NEW);
    assert_eq!(ctx.metrics.api_errors.get(), 0);
}

#[tokio::test]
async fn an_upgrade_done_goes_on_to_its_verification_and_uncordon_with_one_record_write() {
    let from = record(NodePhase::Upgrading, Some("containerd"));
    let w1 = steered(cordoned(with_record(worker("w1", OLD), &from)), true);
    let cu = upgrade(true);
    let (ctx, api) = context(FakeNodeOps::new(), vec![w1.clone()], vec![cu.clone()]);
    let seen = cu.clone();
    let node = w1.clone();
    let from_text = from.to_annotation();
    let before = jiff::Timestamp::now();
    pass(&ctx, &cu, api, |mut api| async move {
        skew_pod_lists(&mut api).await;
        status_write(&mut api, &seen).await;
        assert_eq!(event(&mut api).await["reason"], "RollingOut");
        // No Verifying or Uncordoning record in between: one compare-and-swap
        // against the Upgrading record the pass saw, straight to Done, with
        // the verified version.
        let (req, record) = record_write(&mut api, &node).await;
        assert_eq!(
            req.body[0],
            json!({"op": "test", "path": RECORD_PATH, "value": from_text})
        );
        let record = record.expect("a record");
        assert_eq!(record.phase, NodePhase::Done);
        // (The record keeps whole seconds.)
        assert!(
            record.since.as_second() >= before.as_second(),
            "Done when the uncordon ended, not when the pass planned: {} < {before}",
            record.since
        );
        let after = applied(&req, &serde_json::to_value(&node).unwrap());
        assert_eq!(after["metadata"]["annotations"]["drover.dev/verified.containerd"], NEW);
        assert_eq!(event(&mut api).await["reason"], "NodeUpgraded");
        api
    })
    .await
    .expect("the pass succeeds");
    let ops: Vec<Op> = ctx.ops.calls().iter().map(Call::op).collect();
    assert_eq!(ops, vec![Op::Upgrade, Op::Verify, Op::Uncordon]);
    // Each step is counted as its own.
    for step in ["Upgrade", "Verify", "Uncordon"] {
        let n = ctx
            .metrics
            .steps
            .get_or_create(&crate::metrics::StepLabels {
                step: step.into(),
                outcome: "done".into(),
            })
            .get();
        assert_eq!(n, 1, "{step}");
    }
    assert_eq!(ctx.metrics.api_errors.get(), 0);
}

#[tokio::test]
async fn a_chained_verification_still_waiting_writes_the_verifying_record_it_stands_at() {
    let from = record(NodePhase::Upgrading, Some("containerd"));
    let w1 = steered(cordoned(with_record(worker("w1", OLD), &from)), true);
    let cu = upgrade(true);
    let waiting = Outcome::Waiting {
        message: "containerd on w1 reads 1.7.20, not 1.7.22 yet".into(),
    };
    let ops = FakeNodeOps::new().answer_on(Op::Verify, "w1", waiting);
    let (ctx, api) = context(ops, vec![w1.clone()], vec![cu.clone()]);
    let seen = cu.clone();
    let node = w1.clone();
    let from_text = from.to_annotation();
    pass(&ctx, &cu, api, |mut api| async move {
        skew_pod_lists(&mut api).await;
        status_write(&mut api, &seen).await;
        assert_eq!(event(&mut api).await["reason"], "RollingOut");
        let (req, record) = record_write(&mut api, &node).await;
        assert_eq!(
            req.body[0],
            json!({"op": "test", "path": RECORD_PATH, "value": from_text})
        );
        let record = record.expect("a record");
        assert_eq!(
            (record.phase, record.component.as_deref()),
            (NodePhase::Verifying, Some("containerd"))
        );
        assert_eq!(record.message, "containerd on w1 reads 1.7.20, not 1.7.22 yet");
        api
    })
    .await
    .expect("the pass succeeds");
    let ops: Vec<Op> = ctx.ops.calls().iter().map(Call::op).collect();
    assert_eq!(ops, vec![Op::Upgrade, Op::Verify]);
}
