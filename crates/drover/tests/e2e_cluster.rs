//! The cluster as it really is, through the real `drover` binary on both
//! beds: a changed backup spec reruns the backup, nodes join and leave
//! mid-rollout, the autoscalers' guards ride on drover's cordon, events
//! name the right node, PodSecurity admission that refuses drover's Jobs
//! is said before the first node, and a rollout started under the previous
//! record format is taken over (a record of a newer one is left alone).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use support::*;

const ROLLOUT: Duration = Duration::from_secs(240);
const SCALE_DOWN_DISABLED: &str = "cluster-autoscaler.kubernetes.io/scale-down-disabled";
const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
const GUARDS_ADDED: &str = "drover.dev/guards-added";
const PROGRESS: &str = "drover.dev/progress";

fn nodes_api(env: &Env) -> Api<Node> {
    Api::all(env.client.clone())
}

async fn nodes(env: &Env) -> Vec<Node> {
    nodes_api(env).list(&ListParams::default()).await.unwrap().items
}

fn is_worker(n: &Node) -> bool {
    let l = n.labels();
    !l.contains_key("node-role.kubernetes.io/control-plane") && !l.contains_key("node-role.kubernetes.io/etcd")
}

fn record_of(n: &Node) -> Option<Value> {
    n.annotations().get(PROGRESS).and_then(|r| serde_json::from_str(r).ok())
}

async fn annotate(env: &Env, node: &str, annotations: Value) {
    let patch = json!({"metadata": {"annotations": annotations}});
    nodes_api(env)
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Wait, bounded, until `pred` holds for the cluster's nodes; the nodes then.
async fn wait_nodes(env: &Env, what: &str, timeout: Duration, pred: impl Fn(&[Node]) -> bool) -> Vec<Node> {
    within(env.timeout(timeout), what, async {
        loop {
            let ns = nodes(env).await;
            if pred(&ns) {
                return ns;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
}

/// drover's events (events.k8s.io/v1) in `default`, where cluster-scoped objects' events go.
async fn events(env: &Env) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref().is_some_and(|c| c.contains("drover")))
        .collect()
}

fn regarding(e: &k8s_openapi::api::events::v1::Event) -> (String, String) {
    let r = e.regarding.clone().unwrap_or_default();
    (r.kind.unwrap_or_default(), r.name.unwrap_or_default())
}

fn workers_only(mut spec: Value) -> Value {
    spec["nodeSelector"] = json!({"matchLabels": {"topology.kubernetes.io/zone": "zone-a"}});
    spec
}

on_both_beds! {
    async fn a_changed_backup_image_runs_a_new_backup_job_before_the_next_control_plane_change(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let _drover = env.drover(&[]);
        let mut spec = runtime_spec("1.7.23");
        spec["backup"] = json!({"image": "registry.example.com/etcd-backup:1", "namespace": "kube-system"});
        env.apply("runtime", spec).await;
        let cu = env
            .wait_for("runtime", "backed up", ROLLOUT, |cu| {
                cu.status.as_ref().and_then(|s| s.backup.as_ref()).is_some_and(|b| b.state == "Succeeded")
            })
            .await;
        let first = cu.status.unwrap().backup.unwrap().job;
        // The first etcd/control-plane node starts; then the backup image changes.
        wait_nodes(&env, "a control-plane node to start", ROLLOUT, |ns| {
            ns.iter().any(|n| !is_worker(n) && record_of(n).is_some())
        })
        .await;
        let changed_at = jiff::Timestamp::now();
        env.patch_spec("runtime", json!({"backup": {"image": "registry.example.com/etcd-backup:2"}}))
            .await;
        let cu = env
            .wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        let backup = cu.status.unwrap().backup.unwrap();
        assert_ne!(backup.job, first, "status names the new backup Job");
        assert_eq!(backup.state, "Succeeded");
        let jobs: Api<Job> = Api::namespaced(env.client.clone(), "kube-system");
        let image = |j: &Job| {
            j.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone().unwrap()
        };
        let new = jobs.get(&backup.job).await.unwrap();
        assert_eq!(image(&new), "registry.example.com/etcd-backup:2");
        assert_eq!(image(&jobs.get(&first).await.unwrap()), "registry.example.com/etcd-backup:1");
        // No etcd or control-plane node started after the change before the new Job completed.
        let done = new.status.as_ref().and_then(|s| s.completion_time.clone()).expect("the new Job completed").0;
        let mut later = 0;
        for n in nodes(&env).await.iter().filter(|n| !is_worker(n)) {
            let started: jiff::Timestamp = record_of(n).unwrap()["started"].as_str().unwrap().parse().unwrap();
            if started > changed_at {
                later += 1;
                assert!(
                    started.as_second() >= done.as_second(),
                    "{} started at {started}, before the new backup Job completed at {done}",
                    n.name_any()
                );
            }
        }
        assert!(later > 0, "no control-plane node started after the change: the test proved nothing");
    }
}

on_both_beds! {
    async fn events_name_each_node_and_cordoned_nodes_carry_the_autoscaler_guards(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let workers: Vec<String> = nodes(&env).await.iter().filter(|n| is_worker(n)).map(|n| n.name_any()).collect();
        assert_eq!(workers.len(), 5, "{workers:?}");
        // An admin's own guard on one worker: drover must leave it.
        annotate(&env, &workers[1], json!({DO_NOT_DISRUPT: "true"})).await;
        // Every change of every node: a node drover cordoned must carry both guards.
        let seen = Arc::new(Mutex::new((0usize, Vec::<String>::new())));
        let watch = {
            let seen = seen.clone();
            let api = nodes_api(&env);
            tokio::spawn(async move {
                let s = watcher(api, watcher::Config::default()).default_backoff().applied_objects();
                futures::pin_mut!(s);
                while let Some(Ok(n)) = s.next().await {
                    let a = n.annotations();
                    if a.get("drover.dev/cordoned-by").is_some() {
                        let mut seen = seen.lock().unwrap();
                        seen.0 += 1;
                        for g in [SCALE_DOWN_DISABLED, DO_NOT_DISRUPT] {
                            if a.get(g).map(String::as_str) != Some("true") {
                                seen.1.push(format!("{} cordoned by drover without {g}: {a:?}", n.name_any()));
                            }
                        }
                    }
                }
            })
        };
        let _drover = env.drover(&[]);
        env.apply("runtime", workers_only(runtime_spec("1.7.23"))).await;
        let cu = env
            .wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        assert_eq!(cu.status.unwrap().progress.as_deref(), Some("5/5"));
        watch.abort();
        let (cordoned, missing) = seen.lock().unwrap().clone();
        assert!(cordoned >= 5, "the watch saw drover's cordon only {cordoned} times");
        assert!(missing.is_empty(), "{missing:#?}");
        // Uncordoned: drover's guards are gone, the admin's stays.
        for n in nodes(&env).await {
            let a = n.annotations();
            assert!(!a.contains_key(GUARDS_ADDED), "{}: {a:?}", n.name_any());
            assert!(!a.contains_key(SCALE_DOWN_DISABLED), "{}: {a:?}", n.name_any());
            let admin = n.name_any() == workers[1];
            assert_eq!(a.contains_key(DO_NOT_DISRUPT), admin, "{}: {a:?}", n.name_any());
        }
        assert_eq!(
            nodes_api(&env).get(&workers[1]).await.unwrap().annotations()[DO_NOT_DISRUPT],
            "true"
        );

        // Each node's events regard that Node, name it, and relate to the ClusterUpgrade.
        let evs = events(&env).await;
        for e in evs.iter().filter(|e| regarding(e).0 == "Node") {
            let (_, node) = regarding(e);
            let note = e.note.clone().unwrap_or_default();
            // "node <name> cordoned", "drain of <name> blocked: …": each names its own node.
            assert!(note.contains(&node), "an event regarding {node} says: {note}");
            for other in workers.iter().filter(|w| **w != node) {
                assert!(!note.contains(&format!("{other} ")) && !note.ends_with(other.as_str()), "an event regarding {node} names {other}: {note}");
            }
            assert_eq!(e.related.as_ref().and_then(|r| r.name.as_deref()), Some("runtime"));
        }
        for w in &workers {
            let reasons: BTreeSet<String> = evs
                .iter()
                .filter(|e| regarding(e) == ("Node".to_string(), w.clone()))
                .filter_map(|e| e.reason.clone())
                .collect();
            for r in ["NodeStarted", "NodeUpgraded"] {
                assert!(reasons.contains(r), "{w}: no {r} event regarding the node, only {reasons:?}");
            }
            // At most two Normal events per node: its start and its end.
            let normal = evs
                .iter()
                .filter(|e| regarding(e) == ("Node".to_string(), w.clone()) && e.type_.as_deref() == Some("Normal"))
                .count();
            assert!(normal <= 2, "{w}: {normal} Normal events ({reasons:?})");
        }
        // And as kubectl shows them: each worker named in its own event's object.
        let out = env.kubectl(&["get", "events", "-n", "default", "-o", "wide"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        for w in &workers {
            let line = text
                .lines()
                .find(|l| l.contains(&format!("node/{w}")) && l.contains("NodeUpgraded"))
                .unwrap_or_else(|| panic!("kubectl get events has no NodeUpgraded for node/{w}:\n{text}"));
            assert!(line.contains(&format!("node {w} finished")), "{line}");
        }
    }
}

on_both_beds! {
    async fn nodes_that_join_or_leave_mid_rollout_are_handled_and_reported(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let drover = env.drover(&[]);
        env.apply("runtime", workers_only(runtime_spec("1.7.23"))).await;
        // A worker drover is working on (cordoned, draining or upgrading) is deleted.
        let ns = wait_nodes(&env, "a worker in flight", ROLLOUT, |ns| {
            ns.iter().any(|n| record_of(n).is_some_and(|r| r["phase"] != "Done" && r["phase"] != "Cordoning"))
        })
        .await;
        let gone = ns
            .iter()
            .find(|n| record_of(n).is_some_and(|r| r["phase"] != "Done" && r["phase"] != "Cordoning"))
            .unwrap()
            .name_any();
        // A new worker joins: a copy of one not started yet, on the old version.
        let template = ns
            .iter()
            .rev()
            .find(|n| is_worker(n) && record_of(n).is_none())
            .expect("a worker not started yet")
            .clone();
        nodes_api(&env).delete(&gone, &DeleteParams::default()).await.unwrap();
        let joined = "worker-joined";
        let mut copy = template.clone();
        copy.metadata = kube::api::ObjectMeta {
            name: Some(joined.into()),
            labels: template.metadata.labels.clone(),
            annotations: template
                .metadata
                .annotations
                .clone()
                .map(|a| a.into_iter().filter(|(k, _)| !k.starts_with("drover.dev/")).collect()),
            ..Default::default()
        };
        copy.spec.as_mut().unwrap().unschedulable = None;
        nodes_api(&env).create(&PostParams::default(), &copy).await.unwrap();
        // As a kubelet would: its status (versions, Ready) through the status
        // subresource. A merge patch, not a replace: KWOK, the node lifecycle
        // controller and drover may write the new node in between.
        nodes_api(&env)
            .patch_status(
                joined,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": template.status})),
            )
            .await
            .unwrap();

        let cu = env
            .wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        let st = cu.status.unwrap();
        assert_eq!(st.counts.in_scope, 5, "5 workers - 1 deleted + 1 joined: {:?}", st.counts);
        assert_eq!(st.progress.as_deref(), Some("5/5"));
        let new = nodes_api(&env).get(joined).await.unwrap();
        assert_eq!(
            new.status.clone().unwrap().node_info.unwrap().container_runtime_version,
            "containerd://1.7.23",
            "the joined node got the target"
        );
        assert_eq!(record_of(&new).unwrap()["phase"], "Done");
        assert!(nodes_api(&env).get_opt(&gone).await.unwrap().is_none());
        // Both said, regarding the node.
        let evs = events(&env).await;
        let said = |reason: &str, node: &str| {
            evs.iter()
                .find(|e| e.reason.as_deref() == Some(reason) && regarding(e) == ("Node".to_string(), node.to_string()))
                .and_then(|e| e.note.clone())
        };
        let left = said("NodeLeft", &gone).unwrap_or_else(|| panic!("no NodeLeft event for {gone}"));
        assert!(left.contains("was deleted while drover was at its"), "{left}");
        let join = said("NodeJoined", joined).expect("a NodeJoined event");
        assert!(join.contains("it gets the target (containerd=1.7.23)"), "{join}");
        // No upgrade Job is left for the deleted node, and no error loops about it.
        let jobs: Api<Job> = Api::namespaced(env.client.clone(), "drover-system");
        let left_jobs: Vec<String> = jobs
            .list(&ListParams::default().labels(&format!("drover.dev/node={gone}")))
            .await
            .unwrap()
            .items
            .iter()
            .map(|j| j.name_any())
            .collect();
        assert!(left_jobs.is_empty(), "{left_jobs:?}");
        let log = drover.log();
        let warnings = log.lines().filter(|l| l.contains("WARN") && l.contains(&gone)).count();
        assert!(warnings <= 2, "{warnings} warnings about {gone}:\n{log}");
        // Nothing drover cordoned is left cordoned among the nodes that exist.
        for n in nodes(&env).await {
            assert!(
                n.annotations().get("drover.dev/cordoned-by").is_none(),
                "{} left cordoned",
                n.name_any()
            );
        }
    }
}

on_both_beds! {
    async fn a_namespace_whose_pod_security_refuses_privileged_pods_stalls_before_the_first_node(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let namespaces: Api<Namespace> = Api::all(env.client.clone());
        let label = |level: &str| json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}});
        namespaces
            .patch("drover-system", &PatchParams::default(), &Patch::Merge(&label("baseline")))
            .await
            .unwrap();
        let _drover = env.drover(&[]);
        env.apply("runtime", runtime_spec("1.7.23")).await;
        let cu = env
            .wait_for("runtime", "Stalled with PodSecurityForbids", ROLLOUT, |cu| {
                stalled_with(cu, "PodSecurityForbids")
            })
            .await;
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        for part in [
            "the API server would refuse the upgrade Jobs' pods in namespace drover-system",
            "violates PodSecurity \"baseline:latest\"",
            "privileged (container \"upgrade\" must not set securityContext.privileged=true)",
            "kubectl label namespace drover-system pod-security.kubernetes.io/enforce=privileged --overwrite",
        ] {
            assert!(message.contains(part), "no {part:?} in: {message}");
        }
        // Before the first node: no record, no cordon, no Job.
        assert!(nodes(&env).await.iter().all(|n| record_of(n).is_none() && n.annotations().get("drover.dev/cordoned-by").is_none()));
        let jobs: Api<Job> = Api::namespaced(env.client.clone(), "drover-system");
        assert!(jobs.list(&ListParams::default()).await.unwrap().items.is_empty());
        // The namespace is let run privileged pods: drover goes on by itself.
        namespaces
            .patch("drover-system", &PatchParams::default(), &Patch::Merge(&label("privileged")))
            .await
            .unwrap();
        env.wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
    }
}

on_both_beds! {
    async fn a_rollout_under_the_previous_record_format_is_taken_over_and_a_newer_record_is_left_alone(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "small", 600.0).await;
        let mut first = env.drover(&[]);
        let mut spec = workers_only(runtime_spec("1.7.23"));
        spec["strategy"]["maxUnavailable"] = json!(2);
        env.apply("runtime", spec).await;
        // Mid-rollout: some worker in flight. Then drover dies.
        wait_nodes(&env, "a worker in flight", ROLLOUT, |ns| {
            ns.iter().any(|n| record_of(n).is_some_and(|r| r["phase"] != "Done"))
        })
        .await;
        first.kill();
        // Every record back in the first format: no "v", none of format 2's fields.
        let mut rewritten = BTreeMap::new();
        for n in nodes(&env).await {
            if let Some(mut r) = record_of(&n) {
                assert_eq!(r["v"], 2, "this drover writes format 2: {r}");
                for field in ["v", "passes", "checkAt", "previous", "rollback", "canary", "uncordoned", "unhealthy"] {
                    r.as_object_mut().unwrap().remove(field);
                }
                annotate(&env, &n.name_any(), json!({PROGRESS: r.to_string()})).await;
                rewritten.insert(n.name_any(), r);
            }
        }
        assert!(rewritten.values().any(|r| r["phase"] != "Done"), "{rewritten:?}");
        // A worker not started yet carries a record of a format from the future.
        let future_node = nodes(&env)
            .await
            .iter()
            .filter(|n| is_worker(n) && record_of(n).is_none())
            .map(|n| n.name_any())
            .next()
            .expect("a worker not started yet");
        let future = json!({"v": 99, "upgrade": "runtime", "phase": "Rebooting", "steps": [{"name": "kexec"}]}).to_string();
        annotate(&env, &future_node, json!({PROGRESS: future})).await;

        // The next drover takes over: the old-format nodes finish; the future one is left alone.
        let second = env.drover(&[]);
        let cu = env
            .wait_for("runtime", "Stalled with NewerRecord", ROLLOUT, |cu| stalled_with(cu, "NewerRecord"))
            .await;
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        assert!(
            message.contains(&format!("node {future_node} carries a progress record of format v99")),
            "{message}"
        );
        assert!(message.contains("this one reads up to v2"), "{message}");
        for (node, r) in rewritten.iter().filter(|(_, r)| r["phase"] != "Done") {
            let start = r["started"].clone();
            wait_nodes(&env, &format!("{node} to finish"), ROLLOUT, |ns| {
                ns.iter()
                    .find(|n| &n.name_any() == node)
                    .and_then(record_of)
                    .is_some_and(|r| r["phase"] == "Done" && r["started"] == start && r["v"] == 2)
            })
            .await;
        }
        // Still left alone, word for word.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let n = nodes_api(&env).get(&future_node).await.unwrap();
        assert_eq!(n.annotations().get(PROGRESS), Some(&future));
        assert!(n.annotations().get("drover.dev/cordoned-by").is_none());
        assert!(stalled_with(&env.get("runtime").await.unwrap(), "NewerRecord"));
        // Its record removed, this drover starts the node over and completes.
        let patch = json!({"metadata": {"annotations": {PROGRESS: null}}});
        nodes_api(&env)
            .patch(&future_node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let cu = env
            .wait_for("runtime", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        assert_eq!(cu.status.unwrap().progress.as_deref(), Some("5/5"));
        let back = env.progress.regressions();
        assert!(back.is_empty(), "progress records went back: {back:#?}");
        drop(second);
    }
}
