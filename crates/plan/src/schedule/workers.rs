//! Workers: a sliding window of spec.strategy.maxUnavailable (a worker
//! starts as soon as one of ours finishes), or with `batching: Batch` whole
//! batches, the next starting when the last one has finished; all at once
//! for AllAtOnce. Workers out of service for any reason count against the
//! budget, ours in flight included.
//!
//! With spec.strategy.canary the first batch is the canary: only workers
//! the canary selector admits, as many as canary.nodes; the others wait
//! for it to finish, soak and, with requireApproval, be approved. With
//! spec.strategy.topologyKey each batch comes from one zone (the first, by
//! its label value, with a worker ready to start), and maxUnavailable
//! counts that zone's workers.

use std::collections::BTreeSet;

use drover_api::validate::resolve_max_unavailable;
use drover_api::{Batching, Reason, StrategyType};

use super::Ctx;
use crate::action::Action;
use crate::gates::Hold;
use crate::node::start;
use crate::view::{Group, NodeView, Standing, names};

/// The zone of a worker: its topologyKey label's value ("" without it).
pub(crate) fn zone_of<'a>(ctx: &Ctx<'a>, v: &NodeView<'a>) -> Option<&'a str> {
    let key = ctx.spec.strategy.topology_key.as_deref()?;
    Some(v.node.labels.get(key).map(String::as_str).unwrap_or(""))
}

pub(super) fn schedule(ctx: &Ctx, actions: &mut Vec<Action>) -> Option<Hold> {
    let window = ctx.spec.strategy.batching == Batching::Window;
    if !window && ctx.any_in_flight() {
        return None;
    }
    let mut workers: Vec<&NodeView> = ctx
        .views
        .iter()
        .filter(|v| v.in_scope && v.group == Group::Worker)
        .collect();
    let mut pending: Vec<&NodeView> = workers
        .iter()
        .copied()
        .filter(|v| v.state == Standing::Pending)
        .collect();
    if pending.is_empty() {
        return None;
    }
    // The canary first: nothing else starts until it is done, soaked and approved.
    let mut canary_left = None;
    if let Some(c) = ctx.canary {
        if c.eligible == 0 {
            return Some(Hold {
                reason: Reason::InvalidSpec,
                message: "no worker in scope matches spec.strategy.canary.selector: the canary cannot start; change the selector".into(),
                stalled: true,
            });
        }
        if c.complete() {
            if let Some(h) = c.hold(ctx.spec, ctx.obs.now) {
                return Some(h);
            }
        } else {
            let m = ctx.canary_nodes;
            pending.retain(|v| m.is_none_or(|m| m.matches(&v.node.labels)));
            canary_left = Some(c.want.saturating_sub(c.nodes.len()));
        }
    }
    // One zone at a time: the zone with workers in flight (a window fills
    // it and waits for it to empty), else the first with a worker ready to start.
    if ctx.spec.strategy.topology_key.is_some() {
        let busy = workers
            .iter()
            .filter(|v| v.state == Standing::InFlight)
            .filter_map(|v| zone_of(ctx, v))
            .min();
        let zone = busy
            .or_else(|| {
                pending
                    .iter()
                    .filter(|v| v.node.ready)
                    .filter_map(|v| zone_of(ctx, v))
                    .min()
            })
            .or_else(|| pending.iter().filter_map(|v| zone_of(ctx, v)).min());
        workers.retain(|v| zone_of(ctx, v) == zone);
        pending.retain(|v| zone_of(ctx, v) == zone);
    }
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
    let ready: Vec<&NodeView> = pending.iter().copied().filter(|v| v.node.ready).collect();
    let mut started = 0;
    let canary = ctx.canary.map(|c| c.hash.clone());
    for v in ctx.start_order(ready.clone()) {
        if canary_left.is_some_and(|n| started >= n) {
            break;
        }
        let name = v.node.name.as_str();
        if unavailable.contains(name) || unavailable.len() < budget {
            unavailable.insert(name);
            let mark = canary_left.and(canary.clone());
            actions.push(start(ctx.spec, ctx.obs, v, mark));
            started += 1;
        }
    }
    // Waiting for a slot our own nodes hold is no hold.
    let ours_in_flight = workers.iter().any(|v| v.state == Standing::InFlight);
    if started > 0 || pending.is_empty() || ours_in_flight {
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
    let within = match ctx.spec.strategy.topology_key.as_deref() {
        Some(k) => format!(
            " in zone {:?} ({k})",
            pending.first().and_then(|v| zone_of(ctx, v)).unwrap_or_default()
        ),
        None => String::new(),
    };
    Some(Hold {
        reason: Reason::BudgetExhausted,
        message: format!(
            "{} workers{within} are already unavailable (NotReady, cordoned by someone else, or kept cordoned: {}) and spec.strategy.maxUnavailable allows {budget}",
            others.len(),
            names(&others)
        ),
        stalled: true,
    })
}
