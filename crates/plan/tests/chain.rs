//! Steps chained after an upgrade (`Transition::then`): the verification,
//! then the uncordon, planned from the records the next passes would plan
//! them from, so that the controller runs them at once with one write.

mod support;

use drover_api::*;
use drover_plan::*;
use jiff::ToSpan;
use support::*;

/// The one Step action on `node` in `actions`.
fn step_on<'a>(actions: &'a [Action], node: &str) -> (&'a Step, &'a Transition) {
    let found: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Step {
                node: n,
                step,
                transition,
            } if n == node => Some((step, &**transition)),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "{actions:#?}");
    found[0]
}

/// A model with one worker (and no control plane to go first), `worker-000`,
/// brought to its first upgrade.
fn at_upgrade(components: Vec<Component>) -> Model {
    let mut m = Model::new(spec(components), cluster(0, 1));
    for _ in 0..10 {
        let actions = m.plan();
        if actions.iter().any(|a| {
            matches!(
                a,
                Action::Step {
                    step: Step::Upgrade { .. },
                    ..
                }
            )
        }) {
            return m;
        }
        for a in &actions {
            m.apply(a, Outcome::Done);
        }
    }
    panic!(
        "worker-000 never reached its upgrade: {:?}",
        m.node("worker-000").progress
    );
}

#[test]
fn an_upgrade_carries_its_verification_and_the_uncordon_each_planned_from_the_record_before_it() {
    let mut m = at_upgrade(vec![job("containerd", "1.7.23")]);
    let actions = m.plan();
    let (s, t) = step_on(&actions, "worker-000");
    assert!(matches!(s, Step::Upgrade { .. }), "{s:?}");
    let verify = t.then.as_deref().expect("the upgrade chains its verification");
    assert_eq!(
        verify.step,
        Step::Verify {
            component: "containerd".into(),
            version: "1.7.23".into()
        }
    );
    // Planned from the record the upgrade's Done gives, not from one written.
    assert_eq!(Some(&verify.transition.from), t.on_done.as_ref());
    assert_eq!(verify.transition.from.phase, NodePhase::Verifying);
    let uncordon = verify
        .transition
        .then
        .as_deref()
        .expect("the verification chains the uncordon");
    assert_eq!(
        uncordon.step,
        Step::Uncordon {
            undo_cordon: true,
            untaint: true
        }
    );
    assert_eq!(Some(&uncordon.transition.from), verify.transition.on_done.as_ref());
    assert_eq!(uncordon.transition.from.phase, NodePhase::Uncordoning);
    assert_eq!(
        uncordon.transition.on_done.as_ref().map(|p| p.phase),
        Some(NodePhase::Done)
    );
    // Nothing chains after the uncordon, and every chained record names the same writer.
    assert!(uncordon.transition.then.is_none());
    assert_eq!(uncordon.transition.writer, t.writer);
}

#[test]
fn a_chained_step_counts_its_times_from_when_it_runs_not_from_the_plan() {
    let mut m = at_upgrade(vec![job("containerd", "1.7.23")]);
    let actions = m.plan();
    let (_, t) = step_on(&actions, "worker-000");
    let verify = t.then.as_deref().expect("a chained verification");
    let planned = m.obs.now;
    assert_eq!(verify.planned, planned);
    // The Job took 7 minutes: the verification starts then.
    let later = planned.checked_add(7.minutes()).unwrap();
    let (step, at) = verify.at(later);
    assert_eq!(step, verify.step);
    assert_eq!(at.from.since, later);
    assert_eq!(
        at.from.started, verify.transition.from.started,
        "the node's start is not moved"
    );
    assert_eq!(
        at.deadline,
        verify.transition.deadline.map(|d| d.checked_add(7.minutes()).unwrap()),
        "the Job's timeout counts from the verification's start"
    );
    let uncordon = at.then.as_deref().expect("the uncordon, still chained");
    assert_eq!(uncordon.planned, later);
    let (_, at) = uncordon.at(later.checked_add(2.seconds()).unwrap());
    let done = at.record(&Outcome::Done).expect("a Done record");
    assert_eq!(done.phase, NodePhase::Done);
    assert_eq!(done.completed, Some(later.checked_add(2.seconds()).unwrap()));
}

#[test]
fn an_upgrade_that_reboots_chains_nothing() {
    let mut c = job("containerd", "1.7.23");
    if let Some(j) = c.upgrade.job.as_mut() {
        j.reboots = true;
    }
    let mut m = at_upgrade(vec![c]);
    let actions = m.plan();
    let (s, t) = step_on(&actions, "worker-000");
    assert!(matches!(s, Step::Upgrade { .. }), "{s:?}");
    assert_eq!(t.on_done.as_ref().map(|p| p.phase), Some(NodePhase::Rebooting));
    assert!(t.then.is_none(), "{:?}", t.then);
}

#[test]
fn two_components_chain_the_first_ones_verification_but_not_the_next_upgrade() {
    let mut m = at_upgrade(vec![job("containerd", "1.7.23"), job("kubelet", "v1.31.5")]);
    let actions = m.plan();
    let (s, t) = step_on(&actions, "worker-000");
    let Step::Upgrade { component, .. } = s else {
        panic!("{s:?}");
    };
    let verify = t.then.as_deref().expect("a chained verification");
    let next = verify
        .transition
        .on_done
        .as_ref()
        .expect("a record after the verification");
    assert_eq!(
        next.phase,
        NodePhase::Upgrading,
        "after {component}, the next component's upgrade"
    );
    assert_ne!(next.component.as_deref(), Some(component.as_str()));
    assert!(
        verify.transition.then.is_none(),
        "nothing chains into an upgrade: {:?}",
        verify.transition.then
    );
}
