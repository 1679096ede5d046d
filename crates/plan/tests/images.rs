//! The upgrade-image allowlist in the planner: a spec naming an image the
//! operator does not allow is refused (ImageNotAllowed) before anything
//! else is judged, starts nothing, and hands back the nodes drover holds.

mod support;

use drover_api::images::AllowedImages;
use drover_api::names::{condition, reason};
use drover_api::*;
use drover_plan::*;
use support::*;

fn allow(list: &str) -> Option<AllowedImages> {
    Some(AllowedImages::parse(list).unwrap())
}

fn with_image(mut c: Component, image: &str) -> Component {
    c.upgrade.job.as_mut().unwrap().image = image.into();
    c
}

#[test]
fn an_image_outside_the_list_is_refused_naming_each_field_and_nothing_starts() {
    let mut s = spec(vec![
        with_image(
            job("containerd", "1.7.23"),
            "registry.example.com/upgrades/containerd:1",
        ),
        job("kubelet", "v1.31.5"),
    ]);
    s.backup = Some(serde_json::from_value(serde_json::json!({"image": "busybox:1.37"})).unwrap());
    // The reboot Job runs privileged with the host's root too.
    s.reboot.image = Some("quay.io/acme/reboot:1".into());
    let mut m = Model::new(s, cluster(1, 2));
    m.obs.allowed_images = allow("registry.example.com/upgrades/*");
    let actions = m.plan();
    assert!(actions.is_empty(), "a refused spec touches nothing: {actions:?}");
    let (status, r, message) = m.condition(condition::STALLED);
    assert_eq!((status.as_str(), r.as_str()), ("True", reason::IMAGE_NOT_ALLOWED));
    assert!(
        message.contains("spec.components[1].upgrade.job.image: \"example.com/upgrader:1\" (repository example.com/upgrader) is not an allowed upgrade image; drover runs only images matching registry.example.com/upgrades/*"),
        "{message}"
    );
    assert!(
        message.contains("spec.backup.image: \"busybox:1.37\" (repository docker.io/library/busybox)"),
        "{message}"
    );
    assert!(
        message.contains("spec.reboot.image: \"quay.io/acme/reboot:1\" (repository quay.io/acme/reboot)"),
        "{message}"
    );
    assert!(!message.contains("spec.components[0]"), "{message}");
    assert_eq!(m.condition(condition::READY).0, "False");
    assert_eq!(m.condition(condition::RECONCILING).0, "False");
    assert_eq!(m.status().stage.as_deref(), Some("Refused"));

    // Without a list, or with one that covers every image, the same spec
    // goes ahead (its backup first).
    for list in [
        None,
        allow("registry.example.com/upgrades/*, example.com/upgrader, docker.io/library/busybox, quay.io/acme/reboot"),
    ] {
        m.obs.allowed_images = list;
        let actions = m.plan();
        assert!(!actions.is_empty(), "{:?}", m.status().conditions);
        assert_eq!(m.condition(condition::STALLED).0, "False");
    }
}

#[test]
fn the_image_check_comes_before_the_skew_rules() {
    // kube-apiserver v1.33 would skip a minor: a SkewViolation, were the images allowed.
    let s = spec(vec![job("kube-apiserver", "v1.33.0"), job("kubelet", "v1.33.0")]);
    let mut m = Model::new(s.clone(), cluster(1, 1));
    m.obs.allowed_images = allow("registry.example.com/*");
    m.plan();
    assert_eq!(m.condition(condition::STALLED).1, reason::IMAGE_NOT_ALLOWED);
    let mut m = Model::new(s, cluster(1, 1));
    m.obs.allowed_images = allow("example.com/upgrader");
    m.plan();
    assert_eq!(m.condition(condition::STALLED).1, reason::SKEW_VIOLATION);
}

#[test]
fn a_list_that_stops_allowing_the_image_mid_rollout_hands_back_every_node_drover_holds() {
    let s = spec(vec![job("containerd", "1.7.23")]);
    let mut m = Model::new(s, cluster(0, 4));
    m.obs.allowed_images = allow("example.com/upgrader");
    // Start workers and take them through their cordon.
    for _ in 0..2 {
        for a in m.plan() {
            m.apply(&a, Outcome::Done);
        }
    }
    let held = m.in_flight();
    assert!(!held.is_empty(), "some workers are in flight");
    // drover restarts with a list that no longer covers the image.
    m.obs.allowed_images = allow("registry.example.com/upgrades/*");
    let actions = m.plan();
    assert_eq!(m.condition(condition::STALLED).1, reason::IMAGE_NOT_ALLOWED);
    assert!(started(&actions).is_empty(), "{actions:?}");
    let mut handed_back: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Step {
                node,
                step: Step::Uncordon { .. },
                ..
            } => Some(node.clone()),
            // ...and takes its upgrade-pending taints off.
            Action::Steer { mark: false, .. } => None,
            other => panic!("a refused spec only hands nodes back: {other:?}"),
        })
        .collect();
    handed_back.sort();
    assert_eq!(handed_back, held);
    for a in &actions {
        m.apply(a, Outcome::Done);
    }
    m.plan();
    assert!(m.in_flight().is_empty());
    assert!(m.obs.nodes.iter().all(|n| !n.unschedulable), "no node left cordoned");
    assert!(m.obs.nodes.iter().all(|n| n.steered_by.is_none()), "no taint left");
}
