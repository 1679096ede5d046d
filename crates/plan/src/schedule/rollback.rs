//! `spec.strategy.rollback: All`: once a rollback halted the rollout,
//! every node this target already upgraded is walked back too, in reverse
//! stage order (workers, then control plane, then etcd), under the same
//! budgets: workers in batches of maxUnavailable, members one at a time.
//! A node whose return is refused (an etcd or control-plane minor) keeps
//! what it runs and is named in the hold.

use drover_api::validate::resolve_max_unavailable;

use super::Ctx;
use crate::action::Action;
use crate::node::NodeCtx;
use crate::progress::{Failure, NodePhase, NodeProgress};
use crate::view::{Group, NodeView, Standing, ours};

/// Start the next nodes to walk back; the names of those refused.
pub(crate) fn schedule(ctx: &Ctx, node: &NodeCtx, actions: &mut Vec<Action>) -> Vec<String> {
    let in_flight: Vec<&NodeView> = ctx.views.iter().filter(|v| v.state == Standing::InFlight).collect();
    let mut refused = Vec::new();
    // Done under this target, with something to return.
    let mut candidates: Vec<(&NodeView, usize)> = Vec::new();
    for v in ctx.views.iter().filter(|v| v.in_scope) {
        let Some(p) = ours(ctx.obs, v.node).filter(|p| p.phase == NodePhase::Done && !p.rollback) else {
            continue;
        };
        match node.rollback_start(v, p) {
            Ok(Some(first)) => candidates.push((v, first)),
            Ok(None) => {}
            Err(why) => refused.push(format!("{}: {why}", v.node.name)),
        }
    }
    // Reverse stage order: workers, then the control plane, then etcd.
    let group = [Group::Worker, Group::ControlPlane, Group::Etcd]
        .into_iter()
        .find(|g| candidates.iter().any(|(v, _)| v.group == *g) || in_flight.iter().any(|v| v.group == *g));
    let Some(group) = group else { return refused };
    let busy = in_flight.iter().filter(|v| v.group == group).count();
    let budget = if group == Group::Worker {
        let workers = ctx
            .views
            .iter()
            .filter(|v| v.in_scope && v.group == Group::Worker)
            .count();
        resolve_max_unavailable(&ctx.spec.strategy.max_unavailable, workers).unwrap_or(1)
    } else if in_flight.is_empty() {
        1
    } else {
        0
    };
    let mut room = budget.saturating_sub(busy);
    candidates.sort_by(|a, b| a.0.node.name.cmp(&b.0.node.name));
    for (v, _) in candidates.into_iter().filter(|(v, _)| v.group == group) {
        if room == 0 {
            break;
        }
        room -= 1;
        let p = ours(ctx.obs, v.node).expect("a candidate has a record");
        let why = "spec.strategy.rollback is All: every node this target upgraded is returned after a rollback";
        let record = NodeProgress {
            rollback: true,
            completed: None,
            failure: Some(Failure {
                reason: drover_api::Reason::RolledBack,
                message: why.into(),
                step: "Done".into(),
                component: None,
                skipped: false,
            }),
            ..p.enter(NodePhase::first_rollback(ctx.spec), None, ctx.obs.now)
        };
        actions.push(Action::Start {
            node: v.node.name.clone(),
            progress: Box::new(record),
        });
    }
    refused
}
