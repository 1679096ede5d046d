//! Workers: in batches of spec.strategy.maxUnavailable (all at once for
//! AllAtOnce); the next batch starts when the last one has finished.
//! Workers out of service for any reason count against the budget.

use std::collections::BTreeSet;

use drover_api::validate::resolve_max_unavailable;
use drover_api::{Reason, StrategyType};

use super::Ctx;
use crate::action::Action;
use crate::gates::Hold;
use crate::node::start;
use crate::view::{Group, NodeView, Standing, names};

pub(super) fn schedule(ctx: &Ctx, actions: &mut Vec<Action>) -> Option<Hold> {
    if ctx.any_in_flight() {
        return None;
    }
    let workers: Vec<&NodeView> = ctx
        .views
        .iter()
        .filter(|v| v.in_scope && v.group == Group::Worker)
        .collect();
    let budget = if ctx.spec.strategy.type_ == StrategyType::AllAtOnce {
        workers.len().max(1)
    } else {
        resolve_max_unavailable(&ctx.spec.strategy.max_unavailable, workers.len()).unwrap_or(1)
    };
    let mut unavailable: BTreeSet<&str> = workers
        .iter()
        .filter(|v| v.node.unavailable() || matches!(v.state, Standing::InFlight | Standing::Foreign))
        .map(|v| v.node.name.as_str())
        .collect();
    let pending: Vec<&NodeView> = workers
        .iter()
        .copied()
        .filter(|v| v.state == Standing::Pending)
        .collect();
    let ready: Vec<&NodeView> = pending.iter().copied().filter(|v| v.node.ready).collect();
    let mut started = 0;
    for v in ctx.start_order(ready.clone()) {
        let name = v.node.name.as_str();
        if unavailable.contains(name) || unavailable.len() < budget {
            unavailable.insert(name);
            actions.push(start(ctx.spec, ctx.obs, v));
            started += 1;
        }
    }
    if started > 0 || pending.is_empty() {
        return None;
    }
    if ready.is_empty() {
        return Some(Hold {
            reason: Reason::NodeNotReady,
            message: format!("every worker left to upgrade is NotReady ({})", names(&pending)),
            stalled: true,
        });
    }
    let others: Vec<&NodeView> = workers
        .iter()
        .copied()
        .filter(|v| unavailable.contains(v.node.name.as_str()))
        .collect();
    Some(Hold {
        reason: Reason::BudgetExhausted,
        message: format!(
            "{} workers are already unavailable (NotReady, cordoned by someone else, or kept cordoned: {}) and spec.strategy.maxUnavailable allows {budget}",
            others.len(),
            names(&others)
        ),
        stalled: true,
    })
}
