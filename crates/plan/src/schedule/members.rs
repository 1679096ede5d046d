//! EtcdMembers and ControlPlane: strictly one node at a time, only when
//! nothing else is in flight and every member of the group is Ready.

use drover_api::Reason;

use super::Ctx;
use crate::action::Action;
use crate::gates::Hold;
use crate::node::start;
use crate::stage::RolloutStage;
use crate::view::{Group, NodeView, Standing, names};

pub(super) fn schedule(ctx: &Ctx, stage: RolloutStage, actions: &mut Vec<Action>) -> Option<Hold> {
    if ctx.any_in_flight() {
        return None;
    }
    let group = if stage == RolloutStage::EtcdMembers {
        Group::Etcd
    } else {
        Group::ControlPlane
    };
    let members: Vec<&NodeView> = ctx.views.iter().filter(|v| v.in_scope && v.group == group).collect();
    let not_ready: Vec<&NodeView> = members.iter().copied().filter(|v| !v.node.ready).collect();
    if !not_ready.is_empty() {
        // Taking another member down now could cost quorum.
        return Some(Hold {
            reason: Reason::NodeNotReady,
            message: format!(
                "{} {} NotReady ({}); no other {} node starts until every member is Ready",
                not_ready.len(),
                if not_ready.len() == 1 { "node is" } else { "nodes are" },
                names(&not_ready),
                if group == Group::Etcd { "etcd" } else { "control-plane" }
            ),
            stalled: true,
        });
    }
    let pending: Vec<&NodeView> = members
        .iter()
        .copied()
        .filter(|v| v.state == Standing::Pending)
        .collect();
    if let Some(v) = ctx.start_order(pending).first() {
        actions.push(start(ctx.spec, ctx.obs, v, None));
    }
    None
}
