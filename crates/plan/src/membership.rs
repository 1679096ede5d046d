//! Nodes that join or leave the cluster mid-rollout, said as events. The
//! planner needs nothing for either: a new node in scope is Pending and gets
//! the target like any other, and a deleted node, with its record, is simply
//! no longer observed. What is decided here is only what to tell people,
//! from two passes' worth of nodes (the controller keeps the last one in
//! memory: after a restart the first pass says nothing, and loses nothing).

use std::collections::BTreeMap;

use drover_api::{EventReason, StepEvent};

use crate::decide::Plan;
use crate::view::Standing;

/// The nodes one pass saw: name → (in scope, the step drover was at when in flight).
pub type Seen = BTreeMap<String, (bool, Option<&'static str>)>;

/// What the plan's pass saw.
pub fn seen(plan: &Plan) -> Seen {
    plan.views
        .iter()
        .map(|v| {
            let step = (v.state == Standing::InFlight)
                .then(|| v.node.progress.as_ref().map(|p| p.phase.step()))
                .flatten();
            (v.node.name.clone(), (v.in_scope, step))
        })
        .collect()
}

/// An event about a node that joined or left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipNote {
    pub node: String,
    pub reason: EventReason,
    pub warning: bool,
    pub note: String,
    /// The node left while drover worked on it: its upgrade Jobs are left over.
    pub left_in_flight: bool,
}

/// The nodes that joined (new in the cluster and in scope) or left (gone
/// from the cluster) between `before` and `now`. Nodes leaving or entering
/// the selector are not reported here: they are handed back or started as
/// the plan says. Nothing is said on the first pass (`before` empty).
pub fn changes(before: &Seen, now: &Seen, target: &str) -> Vec<MembershipNote> {
    if before.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (node, (in_scope, _)) in now {
        if *in_scope && !before.contains_key(node) {
            out.push(MembershipNote {
                node: node.clone(),
                reason: StepEvent::NodeJoined.into(),
                warning: false,
                note: format!(
                    "node {node} joined the cluster mid-rollout and is in scope: it gets the target ({target})"
                ),
                left_in_flight: false,
            });
        }
    }
    for (node, (in_scope, step)) in before {
        if now.contains_key(node) || !*in_scope {
            continue;
        }
        let (warning, note) = match step {
            Some(step) => (
                true,
                format!(
                    "node {node} was deleted while drover was at its {step} step; drover forgot it (its record went with it) and goes on with the other nodes"
                ),
            ),
            None => (
                false,
                format!("node {node} left the cluster mid-rollout; drover forgot it"),
            ),
        };
        out.push(MembershipNote {
            node: node.clone(),
            reason: StepEvent::NodeLeft.into(),
            warning,
            note,
            left_in_flight: step.is_some(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(entries: &[(&str, bool, Option<&'static str>)]) -> Seen {
        entries.iter().map(|(n, s, p)| (n.to_string(), (*s, *p))).collect()
    }

    #[test]
    fn joins_and_leaves_are_said_once_and_scope_changes_are_not() {
        let before = seen(&[
            ("a", true, None),
            ("b", true, Some("Drain")),
            ("c", false, None),
            ("d", true, None),
        ]);
        let now = seen(&[
            ("a", true, None),
            ("d", false, None),
            ("e", true, None),
            ("f", false, None),
        ]);
        let notes = changes(&before, &now, "containerd=1.7.23");
        let said: Vec<(&str, &str, bool)> = notes
            .iter()
            .map(|n| (n.node.as_str(), n.reason.as_str(), n.warning))
            .collect();
        assert_eq!(said, [("e", "NodeJoined", false), ("b", "NodeLeft", true)]);
        assert!(notes[0].note.contains("containerd=1.7.23"), "{}", notes[0].note);
        assert!(notes[1].note.contains("at its Drain step"), "{}", notes[1].note);
        assert!(notes[1].left_in_flight);
        // The same two passes again: nothing new.
        assert!(changes(&now, &now, "t").is_empty());
        // The first pass after a start says nothing.
        assert!(changes(&Seen::new(), &now, "t").is_empty());
    }
}
