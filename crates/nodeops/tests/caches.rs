//! The node operations reading nodes and Jobs from watch-fed stores
//! ([`Caches`]) against kubesim: a fresh copy saves the request, and a stale
//! copy never loses a cordon, never leaves one behind and never runs a Job
//! twice.

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use drover_api::names::annotation::CORDONED_BY;
use drover_api::{JobUpgrade, Outcome, Verify};
use drover_nodeops::{Caches, KubeNodeOps, NodeOps, UpgradeRequest};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use serde_json::json;
use support::*;

fn count(c: &Cluster, verb: &str, resource: &str, code: Option<u16>) -> u64 {
    c.server
        .requests()
        .rows()
        .iter()
        .filter(|r| r.key.verb == verb && r.key.resource == resource && code.is_none_or(|x| r.key.code == x))
        .map(|r| r.count)
        .sum()
}

/// Stores the test fills by hand, as a watch would (or would not yet).
struct Stores {
    nodes: Writer<Node>,
    jobs: Writer<Job>,
    ops: KubeNodeOps,
}

fn stores(c: &Cluster) -> Stores {
    let (node_store, mut nodes) = reflector::store::<Node>();
    let (job_store, mut jobs) = reflector::store::<Job>();
    nodes.apply_watcher_event(&Event::InitDone);
    jobs.apply_watcher_event(&Event::InitDone);
    let url = c.server.url().parse().unwrap();
    let ops = KubeNodeOps::from_config(kube::Config::new(url), "kube-system")
        .unwrap()
        .with_caches(Caches {
            nodes: Some(node_store),
            jobs: Some(job_store),
            jobs_synced: Arc::new(AtomicBool::new(true)),
        });
    Stores { nodes, jobs, ops }
}

#[tokio::test]
async fn a_fresh_copy_saves_the_read_and_a_stale_one_never_loses_or_leaves_a_cordon() {
    let c = Cluster::start().await;
    c.node("a", true).await;
    let mut s = stores(&c);
    let nodes: Api<Node> = Api::all(c.client.clone());

    // A copy as fresh as the server's: the cordon reads nothing.
    s.nodes.apply_watcher_event(&Event::Apply(c.get_node("a").await));
    let gets = count(&c, "get", "nodes", None);
    assert_eq!(s.ops.cordon("a", "cu1").await.unwrap(), Outcome::Done);
    assert_eq!(count(&c, "get", "nodes", None), gets, "no GET with a fresh copy");
    s.ops.uncordon("a", "cu1").await.unwrap();
    assert_eq!(c.get_node("a").await.spec.unwrap().unschedulable, Some(false));

    // A stale copy (the node changed since): the compare-and-swap loses
    // once, and the cordon is made from the server's copy.
    let stale = c.get_node("a").await;
    s.nodes.apply_watcher_event(&Event::Apply(stale.clone()));
    nodes
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"changed": "yes"}}})),
        )
        .await
        .unwrap();
    let conflicts = count(&c, "patch", "nodes", Some(409));
    assert_eq!(s.ops.cordon("a", "cu1").await.unwrap(), Outcome::Done);
    assert_eq!(count(&c, "patch", "nodes", Some(409)), conflicts + 1);
    let a = c.get_node("a").await;
    assert_eq!(a.spec.unwrap().unschedulable, Some(true));
    assert_eq!(a.metadata.annotations.unwrap()[CORDONED_BY], "cu1");

    // The store still has the copy from before the cordon: the uncordon
    // does not take it at its word that the cordon is not drover's.
    assert_eq!(s.ops.uncordon("a", "cu1").await.unwrap(), Outcome::Done);
    let a = c.get_node("a").await;
    assert_eq!(a.spec.unwrap().unschedulable, Some(false), "handed back");
    assert!(!a.metadata.annotations.unwrap_or_default().contains_key(CORDONED_BY));

    // A copy that says cordoned by someone else, confirmed by the server: left alone.
    nodes
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    s.nodes.apply_watcher_event(&Event::Apply(c.get_node("a").await));
    s.ops.uncordon("a", "cu1").await.unwrap();
    assert_eq!(
        c.get_node("a").await.spec.unwrap().unschedulable,
        Some(true),
        "the admin's cordon stays"
    );
}

fn job() -> JobUpgrade {
    JobUpgrade {
        image: "example.com/upgrade:1".into(),
        command: vec![],
        args: vec![],
        env: vec![],
        privileged: false,
        host_root: false,
        timeout: "10m".into(),
        reboots: false,
        backoff_limit: 0,
    }
}

#[tokio::test]
async fn a_job_store_a_moment_behind_never_runs_a_job_twice() {
    let c = Cluster::start().await;
    c.node("n1", true).await;
    let o = c.cluster_upgrade("platform").await;
    let mut s = stores(&c);
    s.nodes.apply_watcher_event(&Event::Apply(c.get_node("n1").await));
    let (j, v) = (
        job(),
        Verify {
            node_info: None,
            pod: None,
            job_succeeded: Some(true),
            match_: None,
        },
    );
    let req = UpgradeRequest {
        owner: &o,
        node: "n1",
        component: "containerd",
        version: "1.7.23",
        job: &j,
        verify: &v,
        not_before: Some(Timestamp::now()),
    };
    let name = drover_nodeops::job::job_name("platform", "n1", "containerd", "1.7.23");
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "kube-system");

    // The store has not seen the Job yet: the create meets it (409), and the
    // server's copy is what the step reports.
    let first = s.ops.upgrade(&req).await.unwrap();
    assert!(
        matches!(&first, Outcome::Waiting { message } if message.contains("running")),
        "{first:?}"
    );
    let uid = jobs.get(&name).await.unwrap().metadata.uid;
    let second = s.ops.upgrade(&req).await.unwrap();
    assert!(
        matches!(&second, Outcome::Waiting { message } if message.contains("running")),
        "{second:?}"
    );
    assert_eq!(count(&c, "create", "jobs", Some(201)), 1, "one Job created");
    assert_eq!(count(&c, "create", "jobs", Some(409)), 1);
    assert_eq!(jobs.get(&name).await.unwrap().metadata.uid, uid);

    // Once the store has it, a pass reads it without a request.
    let done = jobs
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}})),
        )
        .await
        .unwrap();
    s.jobs.apply_watcher_event(&Event::Apply(done.clone()));
    let gets = count(&c, "get", "jobs", None);
    assert_eq!(s.ops.upgrade(&req).await.unwrap(), Outcome::Done);
    assert_eq!(count(&c, "get", "jobs", None), gets, "no GET with the Job in the store");

    // A retry whose old Job the server already deleted but the store still
    // shows: the delete's 404 is what was wanted, and the next pass, with
    // the store caught up, creates this attempt's Job.
    jobs.delete(&name, &Default::default()).await.unwrap();
    let retry = UpgradeRequest {
        not_before: Some(
            Timestamp::now() + drover_nodeops::job::EARLIER_ATTEMPT_MARGIN + jiff::SignedDuration::from_secs(2),
        ),
        ..req.clone()
    };
    let out = s.ops.upgrade(&retry).await.unwrap();
    assert!(
        matches!(&out, Outcome::Waiting { message } if message.contains("earlier attempt")),
        "{out:?}"
    );
    s.jobs.apply_watcher_event(&Event::Delete(done));
    let out = s.ops.upgrade(&retry).await.unwrap();
    assert!(
        matches!(&out, Outcome::Waiting { message } if message.contains("running")),
        "{out:?}"
    );
    assert_ne!(
        jobs.get(&name).await.unwrap().metadata.uid,
        uid,
        "this attempt's Job runs"
    );
}

#[tokio::test]
async fn the_cordon_and_the_uncordon_carry_the_progress_record_and_the_taint_in_their_own_patch() {
    use drover_api::names::annotation::PROGRESS;
    use drover_nodeops::cordon::Record;
    let c = Cluster::start().await;
    c.node("a", true).await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let set_record = |v: &'static str| {
        let nodes = nodes.clone();
        async move {
            nodes
                .patch(
                    "a",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {PROGRESS: v}}})),
                )
                .await
                .unwrap();
        }
    };
    let record_of = |n: &Node| n.metadata.annotations.as_ref().and_then(|a| a.get(PROGRESS).cloned());
    set_record("cordoning").await;
    let patches = count(&c, "patch", "nodes", None);
    let r = Record {
        from: "cordoning",
        to: Some("draining"),
        untaint: false,
        also: &[],
    };
    assert_eq!(
        c.ops.cordon_recording("a", "cu1", r).await.unwrap(),
        (Outcome::Done, true)
    );
    assert_eq!(count(&c, "patch", "nodes", None), patches + 1, "one write");
    let a = c.get_node("a").await;
    assert_eq!(a.spec.as_ref().unwrap().unschedulable, Some(true));
    assert_eq!(record_of(&a).as_deref(), Some("draining"));

    // Already cordoned: nothing sent, and the caller writes the record.
    assert_eq!(
        c.ops.cordon_recording("a", "cu1", r).await.unwrap(),
        (Outcome::Done, false)
    );
    assert_eq!(record_of(&c.get_node("a").await).as_deref(), Some("draining"));

    // A record someone else moved on is never overwritten: the uncordon
    // goes, the record stays, and the caller's compare-and-swap decides.
    set_record("written-by-another").await;
    let r = Record {
        from: "uncordoning",
        to: None,
        untaint: false,
        also: &[],
    };
    assert_eq!(
        c.ops.uncordon_recording("a", "cu1", r).await.unwrap(),
        (Outcome::Done, false)
    );
    let a = c.get_node("a").await;
    assert_eq!(a.spec.as_ref().unwrap().unschedulable, Some(false));
    assert_eq!(record_of(&a).as_deref(), Some("written-by-another"));

    // And the uncordon that carries it (None removes the record), with
    // cu1's upgrade-pending taint taken off in the same patch: an admin's
    // taint stays.
    c.ops.cordon("a", "cu1").await.unwrap();
    set_record("uncordoning").await;
    let admin = json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"});
    let pending = json!({"key": "drover.dev/upgrade-pending", "value": "cu1", "effect": "PreferNoSchedule"});
    nodes
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [admin.clone(), pending]}})),
        )
        .await
        .unwrap();
    let r = Record { untaint: true, ..r };
    let patches = count(&c, "patch", "nodes", None);
    assert_eq!(
        c.ops.uncordon_recording("a", "cu1", r).await.unwrap(),
        (Outcome::Done, true)
    );
    assert_eq!(count(&c, "patch", "nodes", None), patches + 1, "one write");
    let a = c.get_node("a").await;
    assert_eq!(a.spec.as_ref().unwrap().unschedulable, Some(false));
    assert_eq!(record_of(&a), None);
    let taints = serde_json::to_value(a.spec.as_ref().unwrap().taints.clone()).unwrap();
    assert_eq!(taints, json!([admin]));
}
