//! The planner's part of fencing: every record a plan builds names the
//! writer the observation gives (identity and term), and a node record of a
//! later term stops the whole plan.

mod support;

use drover_api::*;
use drover_plan::*;
use support::*;

fn writer(identity: &str, term: i64) -> Writer {
    Writer {
        identity: identity.into(),
        term,
    }
}

/// Every record `a` would write, for any outcome.
fn records(a: &Action) -> Vec<NodeProgress> {
    match a {
        Action::Start { progress, .. } => vec![(**progress).clone()],
        Action::Step { transition, .. } => [
            Outcome::Done,
            Outcome::Waiting {
                message: "still going".into(),
            },
            Outcome::Failed {
                reason: Reason::UpgradeJobFailed,
                message: "no".into(),
            },
        ]
        .iter()
        .filter_map(|o| transition.record(o))
        .collect(),
        _ => vec![],
    }
}

/// A rollout under way: two nodes started, one already a step further.
fn under_way(w: Option<Writer>) -> Model {
    let mut m = Model::new(spec(vec![job("containerd", "1.7.23")]), cluster(0, 4));
    m.obs.writer = w;
    for a in m.plan() {
        m.apply(&a, Outcome::Done);
    }
    m
}

#[test]
fn every_record_a_plan_builds_names_its_writer_and_term() {
    let mut m = under_way(Some(writer("replica-b", 3)));
    // Started nodes, then their steps: each record says who wrote it.
    for _ in 0..3 {
        let actions = m.plan();
        assert!(!actions.is_empty());
        for a in &actions {
            for r in records(a) {
                assert_eq!((r.writer.as_str(), r.term), ("replica-b", 3), "{a:?}");
            }
            m.apply(a, Outcome::Done);
        }
    }
    // The annotation carries both fields.
    let r = m.obs.nodes.iter().find_map(|n| n.progress.clone()).expect("a record");
    let text = r.to_annotation();
    assert!(
        text.contains(r#""writer":"replica-b""#) && text.contains(r#""term":3"#),
        "{text}"
    );
}

#[test]
fn a_new_leader_takes_over_records_of_an_earlier_term() {
    let mut m = under_way(Some(writer("replica-a", 1)));
    assert!(
        m.obs
            .nodes
            .iter()
            .any(|n| n.progress.as_ref().is_some_and(|p| p.term == 1))
    );
    m.obs.writer = Some(writer("replica-b", 2));
    let p = plan(&m.spec, &m.obs);
    assert_eq!(p.superseded, None);
    assert!(!p.actions.is_empty(), "the new leader continues the nodes in flight");
    for a in &p.actions {
        // A step that learns nothing new still writes, to claim the node for the new term.
        if let Action::Step { transition, .. } = a {
            let waiting = transition.record(&Outcome::Waiting {
                message: transition.from.message.clone(),
            });
            assert_eq!(waiting.map(|r| r.term), Some(2), "{a:?}");
        }
    }
}

#[test]
fn a_record_of_a_later_term_stops_the_whole_plan() {
    let mut m = under_way(Some(writer("replica-a", 1)));
    // replica-b took over (term 2) and wrote one node's record.
    let n = m
        .obs
        .nodes
        .iter_mut()
        .find(|n| n.progress.is_some())
        .expect("a node in flight");
    let name = n.name.clone();
    let later = n.progress.clone().unwrap().written_by(&writer("replica-b", 2));
    n.progress = Some(later);
    let p = plan(&m.spec, &m.obs);
    assert!(
        p.actions.is_empty(),
        "a superseded leader acts on no node: {:?}",
        p.actions
    );
    let s = p.superseded.clone().expect("superseded");
    assert_eq!(
        (s.node.as_str(), s.writer.as_str(), s.term, s.mine),
        (name.as_str(), "replica-b", 2, 1)
    );
    let said = s.to_string();
    assert!(
        said.contains("written by replica-b under term 2") && said.contains("this replica's term 1"),
        "{said}"
    );
    // Equal terms are the same leader's own records: no stop.
    m.obs.writer = Some(writer("replica-b", 2));
    assert_eq!(plan(&m.spec, &m.obs).superseded, None);
}

#[test]
fn records_older_than_the_fields_are_term_0_and_without_election_nothing_is_fenced() {
    let old = r#"{"upgrade":"u","generation":1,"phase":"Draining","since":"2026-01-01T00:00:00Z","started":"2026-01-01T00:00:00Z"}"#;
    let p = NodeProgress::from_annotation(old).expect("an old record still reads");
    assert_eq!((p.writer.as_str(), p.term), ("", 0));
    // Written without a writer, the record is as before the fields existed.
    assert!(!p.to_annotation().contains("writer") && !p.to_annotation().contains("term"));

    // Without leader election, a record of any term neither stops the plan
    // nor keeps its writer.
    let mut m = under_way(Some(writer("replica-a", 5)));
    m.obs.writer = None;
    let p = plan(&m.spec, &m.obs);
    assert_eq!(p.superseded, None);
    assert!(!p.actions.is_empty());
    for a in &p.actions {
        for r in records(a) {
            assert_eq!((r.writer.as_str(), r.term), ("", 0), "{a:?}");
        }
    }
}
