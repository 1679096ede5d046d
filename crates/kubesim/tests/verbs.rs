//! get, list, create, update, delete, status subresource and metadata, through kube-rs.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn create_sets_server_metadata_and_get_returns_it() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let m = &created.metadata;
    assert!(m.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(m.creation_timestamp.is_some());
    assert_eq!(m.generation, Some(1));
    assert_eq!(m.namespace.as_deref(), Some("default"));
    let rv: u64 = m.resource_version.as_deref().unwrap().parse().unwrap();
    let got = api.get("a").await.unwrap();
    assert_eq!(got.metadata.uid, m.uid);
    assert_eq!(got.data.unwrap()["k"], "v");
    // One cluster-wide counter: the next write anywhere gets a higher rv.
    let b = api.create(&PostParams::default(), &cm("b")).await.unwrap();
    assert!(b.metadata.resource_version.unwrap().parse::<u64>().unwrap() > rv);
}

#[tokio::test]
async fn generate_name_gets_a_random_suffix() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    let obj: ConfigMap = serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let a = api.create(&PostParams::default(), &obj).await.unwrap();
    let b = api.create(&PostParams::default(), &obj).await.unwrap();
    let (na, nb) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(na.starts_with("gen-") && na.len() == 9, "{na}");
    assert_ne!(na, nb);
}

#[tokio::test]
async fn errors_are_real_status_bodies() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let st = status(api.get("missing").await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (404, "NotFound"));
    assert_eq!(st.message, "configmaps \"missing\" not found");
    let d = st.details.unwrap();
    assert_eq!(
        (d.name.as_str(), d.kind.as_str(), d.group.as_str()),
        ("missing", "configmaps", "")
    );

    api.create(&PostParams::default(), &cm("x")).await.unwrap();
    let st = status(api.create(&PostParams::default(), &cm("x")).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(st.message, "configmaps \"x\" already exists");

    let deps: Api<Deployment> = Api::default_namespaced(c.clone());
    let st = status(deps.get("d").await.unwrap_err());
    assert_eq!(st.message, "deployments.apps \"d\" not found");
    assert_eq!(st.details.unwrap().group, "apps");

    let pods: Api<Pod> = Api::namespaced(c.clone(), "nowhere");
    let st = status(
        pods.create(&PostParams::default(), &pod("p", None, json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(st.message, "namespaces \"nowhere\" not found");

    let pods: Api<Pod> = Api::default_namespaced(c);
    let bad: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": []}})).unwrap();
    let st = status(pods.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"));
    assert_eq!(st.message, "Pod \"p\" is invalid: spec.containers: Required value");
    let causes = st.details.unwrap().causes;
    assert_eq!(causes[0].field, "spec.containers");
    assert_eq!(causes[0].reason, "FieldValueRequired");
}

#[tokio::test]
async fn update_with_stale_resource_version_conflicts() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    let first = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let mut v1 = first.clone();
    v1.data = Some([("k".to_string(), "1".to_string())].into());
    let updated = api.replace("a", &PostParams::default(), &v1).await.unwrap();
    assert_ne!(updated.metadata.resource_version, first.metadata.resource_version);
    let mut stale = first.clone();
    stale.data = Some([("k".to_string(), "2".to_string())].into());
    let st = status(api.replace("a", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        st.message,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // A no-op update keeps the resourceVersion.
    let same = api.replace("a", &PostParams::default(), &updated).await.unwrap();
    assert_eq!(same.metadata.resource_version, updated.metadata.resource_version);
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status_and_generation_tracks_spec() {
    let (_s, c) = server().await;
    let api: Api<Deployment> = Api::default_namespaced(c);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 7}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &d).await.unwrap();
    assert!(created.status.is_none(), "status is dropped on create");
    // Status written through the main resource is ignored...
    let p = json!({"status": {"replicas": 3}});
    let after = api
        .patch("d", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert!(after.status.is_none());
    // ...and through the subresource it lands, without touching generation or spec.
    let p = json!({"status": {"replicas": 3}, "spec": {"replicas": 9}});
    let after = api
        .patch_status("d", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(after.status.unwrap().replicas, Some(3));
    assert_eq!(after.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(after.metadata.generation, Some(1));
    // Metadata-only changes do not bump generation; spec changes do.
    let p = json!({"metadata": {"labels": {"x": "y"}}});
    let after = api
        .patch("d", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(after.metadata.generation, Some(1));
    let p = json!({"spec": {"replicas": 2}});
    let after = api
        .patch("d", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(after.metadata.generation, Some(2));
    assert_eq!(after.status.unwrap().replicas, Some(3));
    let got = api.get_status("d").await.unwrap();
    assert_eq!(got.status.unwrap().replicas, Some(3));
}

#[tokio::test]
async fn list_filters_by_label_and_field_selectors() {
    let (_s, c) = server().await;
    let api: Api<Pod> = Api::default_namespaced(c.clone());
    running_pod(&c, "default", "a", Some("n1"), json!({"app": "web", "tier": "fe"})).await;
    api.create(&PostParams::default(), &pod("b", Some("n2"), json!({"app": "web"})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &pod("c", None, json!({"app": "db"})))
        .await
        .unwrap();
    let names = |l: kube::core::ObjectList<Pod>| -> Vec<String> {
        l.items.into_iter().map(|p| p.metadata.name.unwrap()).collect()
    };
    assert_eq!(
        names(api.list(&ListParams::default().labels("app=web")).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app in (db),!tier"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        names(api.list(&ListParams::default().labels("app!=web")).await.unwrap()),
        ["c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("spec.nodeName=n2"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("status.phase=Running"))
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("status.phase!=Running,metadata.name!=b"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=c"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    let all: Api<Pod> = Api::all(c.clone());
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("metadata.namespace=default,spec.nodeName=n1"))
                .await
                .unwrap()
        ),
        ["a"]
    );
    let other: Api<Pod> = Api::namespaced(c, "kube-system");
    assert!(other.list(&ListParams::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn list_pages_with_limit_and_continue() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    for i in 0..7 {
        api.create(&PostParams::default(), &cm(&format!("cm-{i}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => {
                assert_eq!(page.metadata.remaining_item_count, Some(7 - seen.len() as i64));
                lp = ListParams::default().limit(3).continue_token(&token);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn delete_honours_preconditions_and_returns_status() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let dp = DeleteParams::default().preconditions(Preconditions {
        uid: Some("wrong".into()),
        resource_version: None,
    });
    let st = status(api.delete("a", &dp).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        st.message,
        format!(
            "Precondition failed: UID in precondition: wrong, UID in object meta: {}",
            created.metadata.uid.clone().unwrap()
        )
    );
    let dp = DeleteParams::default().preconditions(Preconditions {
        uid: None,
        resource_version: Some("1".into()),
    });
    let st = status(api.delete("a", &dp).await.unwrap_err());
    assert!(
        st.message
            .starts_with("Precondition failed: ResourceVersion in precondition: 1")
    );
    let dp = DeleteParams::default().preconditions(Preconditions {
        uid: created.metadata.uid.clone(),
        resource_version: created.metadata.resource_version.clone(),
    });
    let gone = api.delete("a", &dp).await.unwrap();
    assert!(gone.is_right(), "configmaps answer a Status once deleted");
    assert!(api.get_opt("a").await.unwrap().is_none());
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    let mut obj = cm("held");
    obj.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();
    let r = api.delete("held", &DeleteParams::default()).await.unwrap();
    let terminating = r.left().expect("still there, with the object");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert!(api.get("held").await.unwrap().metadata.deletion_timestamp.is_some());
    // No new finalizers once deleting.
    let p = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}});
    let st = status(
        api.patch("held", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 422);
    assert!(
        st.message
            .contains("no new finalizers can be added if the object is being deleted"),
        "{}",
        st.message
    );
    let p = json!({"metadata": {"finalizers": null}});
    api.patch("held", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    let out = api
        .create(
            &PostParams {
                dry_run: true,
                field_manager: None,
            },
            &cm("dry"),
        )
        .await
        .unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("dry"));
    assert!(api.get_opt("dry").await.unwrap().is_none());
    api.create(&PostParams::default(), &cm("real")).await.unwrap();
    api.delete("real", &DeleteParams::default().dry_run()).await.unwrap();
    assert!(api.get_opt("real").await.unwrap().is_some());
    let p = json!({"data": {"k": "changed"}});
    api.patch("real", &PatchParams::default().dry_run(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(api.get("real").await.unwrap().data.unwrap()["k"], "v");
}

#[tokio::test]
async fn namespace_deletion_removes_its_content() {
    let (_s, c) = server().await;
    let nss: Api<Namespace> = Api::all(c.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "tmp"}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "tmp");
    cms.create(&PostParams::default(), &cm("x")).await.unwrap();
    let r = nss.delete("tmp", &DeleteParams::default()).await.unwrap();
    let ns = r.left().unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    within(async {
        while nss.get_opt("tmp").await.unwrap().is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(cms.get_opt("x").await.unwrap().is_none());
}

#[tokio::test]
async fn garbage_collection_follows_owner_references() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    let owner = api.create(&PostParams::default(), &cm("owner")).await.unwrap();
    let owned = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid, "blockOwnerDeletion": true}]}}))
        .unwrap()
    };
    api.create(&PostParams::default(), &owned("child")).await.unwrap();
    // Background: the owner goes at once, the dependent shortly after.
    api.delete("owner", &DeleteParams::background()).await.unwrap();
    assert!(api.get_opt("owner").await.unwrap().is_none());
    within(async {
        while api.get_opt("child").await.unwrap().is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;

    // Foreground: the owner waits, terminating, until its dependents are gone.
    let owner = api.create(&PostParams::default(), &cm("owner2")).await.unwrap();
    let mut child: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "child2", "finalizers": ["example.com/slow"], "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.metadata.uid}]}}),
    )
    .unwrap();
    child = api.create(&PostParams::default(), &child).await.unwrap();
    let r = api.delete("owner2", &DeleteParams::foreground()).await.unwrap();
    let o = r.left().unwrap();
    assert!(
        o.metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_string())
    );
    within(async {
        while api.get("child2").await.unwrap().metadata.deletion_timestamp.is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        api.get_opt("owner2").await.unwrap().is_some(),
        "owner waits for its dependent"
    );
    let p = json!({"metadata": {"finalizers": null}});
    api.patch(
        child.metadata.name.as_deref().unwrap(),
        &PatchParams::default(),
        &Patch::Merge(&p),
    )
    .await
    .unwrap();
    within(async {
        while api.get_opt("owner2").await.unwrap().is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;

    // Orphan: the dependent stays, without the owner reference.
    let owner = api.create(&PostParams::default(), &cm("owner3")).await.unwrap();
    let dep: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "child3", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner3", "uid": owner.metadata.uid}]}}))
    .unwrap();
    api.create(&PostParams::default(), &dep).await.unwrap();
    api.delete("owner3", &DeleteParams::orphan()).await.unwrap();
    within(async {
        while api.get_opt("owner3").await.unwrap().is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let kept = api.get("child3").await.unwrap();
    assert!(kept.metadata.owner_references.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn garbage_collection_of_missing_owners_several_owners_and_chains() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    let owned = |name: &str, owners: &[&ConfigMap]| -> ConfigMap {
        let refs: Vec<_> = owners
            .iter()
            .map(|o| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid}))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": refs}})).unwrap()
    };
    let gone = |name: &'static str| {
        let api = api.clone();
        async move {
            within(async {
                while api.get_opt(name).await.unwrap().is_some() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            })
            .await
        }
    };
    // Created naming an owner that does not exist: collected.
    let ghost: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}}))
            .unwrap();
    api.create(&PostParams::default(), &owned("stray", &[&ghost]))
        .await
        .unwrap();
    gone("stray").await;

    // Two owners: kept while one of them is left.
    let a = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let b = api.create(&PostParams::default(), &cm("b")).await.unwrap();
    api.create(&PostParams::default(), &owned("shared", &[&a, &b]))
        .await
        .unwrap();
    api.delete("a", &DeleteParams::background()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(api.get_opt("shared").await.unwrap().is_some(), "one owner is left");
    api.delete("b", &DeleteParams::background()).await.unwrap();
    gone("shared").await;

    // A chain goes level by level; an object that gains a live owner is kept.
    let top = api.create(&PostParams::default(), &cm("top")).await.unwrap();
    let mid = api
        .create(&PostParams::default(), &owned("mid", &[&top]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned("leaf", &[&mid]))
        .await
        .unwrap();
    let keep = api.create(&PostParams::default(), &cm("keep")).await.unwrap();
    let adopted = api
        .create(&PostParams::default(), &owned("adopted", &[&mid]))
        .await
        .unwrap();
    let p = json!({"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "keep", "uid": keep.metadata.uid}]}});
    api.patch("adopted", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    api.delete("top", &DeleteParams::background()).await.unwrap();
    gone("mid").await;
    gone("leaf").await;
    let kept = api.get("adopted").await.unwrap();
    assert_eq!(kept.metadata.uid, adopted.metadata.uid);
}

#[tokio::test]
async fn events_k8s_io_and_core_events_are_one_storage() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let (_s, c) = server().await;
    let new: Api<Event> = Api::default_namespaced(c.clone());
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "drover.dev/controller", "reportingInstance": "drover-0",
        "action": "Upgrade", "reason": "Started", "type": "Normal", "note": "upgrade started",
        "regarding": {"apiVersion": "drover.dev/v1alpha1", "kind": "ClusterUpgrade", "name": "u"}
    }))
    .unwrap();
    let created = new.create(&PostParams::default(), &ev).await.unwrap();
    assert_eq!(created.note.as_deref(), Some("upgrade started"));
    let core: Api<CoreEvent> = Api::default_namespaced(c.clone());
    let got = core.get("e1").await.unwrap();
    assert_eq!(got.message.as_deref(), Some("upgrade started"));
    assert_eq!(got.involved_object.name.as_deref(), Some("u"));
    assert_eq!(got.reporting_component.as_deref(), Some("drover.dev/controller"));
    let listed = core
        .list(&ListParams::default().fields("involvedObject.kind=ClusterUpgrade"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let p = json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}});
    let patched = new
        .patch("e1", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(patched.series.unwrap().count, 2);
    assert_eq!(patched.regarding.unwrap().name.as_deref(), Some("u"));
    let via_new = new
        .list(&ListParams::default().fields("regarding.name=u"))
        .await
        .unwrap();
    assert_eq!(via_new.items[0].note.as_deref(), Some("upgrade started"));
}

#[tokio::test]
async fn services_get_a_cluster_ip_and_pending_deletions_answer_200() {
    use k8s_openapi::api::core::v1::Service;
    let (_s, c) = server().await;
    let api: Api<Service> = Api::default_namespaced(c.clone());
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}})).unwrap();
    let created = api.create(&PostParams::default(), &svc).await.unwrap();
    let spec = created.spec.unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("10.96."));
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let cms: Api<ConfigMap> = Api::default_namespaced(c);
    let mut held = cm("held");
    held.metadata.finalizers = Some(vec!["x/y".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    // 200 with the terminating object (kube-rs maps it to Left).
    assert!(cms.delete("held", &DeleteParams::default()).await.unwrap().is_left());
}

/// As a real kube-apiserver (found by the kubesim agent on one): a pod's
/// `kubernetes.io/config.mirror` annotation cannot change, while the rest
/// of its metadata can.
#[tokio::test]
async fn a_mirror_pods_mirror_annotation_is_immutable() {
    let (_s, c) = server().await;
    let api: Api<Pod> = Api::default_namespaced(c);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "etcd-n1", "annotations": {"kubernetes.io/config.mirror": "a", "kubernetes.io/config.hash": "a"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "etcd", "image": "registry.k8s.io/etcd:v3.5.15"}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap();
    let ok = json!({"metadata": {"annotations": {"kubernetes.io/config.hash": "b"}}});
    api.patch("etcd-n1", &PatchParams::default(), &Patch::Merge(&ok))
        .await
        .unwrap();
    let bad = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "b"}}});
    match api.patch("etcd-n1", &PatchParams::default(), &Patch::Merge(&bad)).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            let fields: Vec<String> = s
                .details
                .map(|d| d.causes.into_iter().map(|c| c.field).collect())
                .unwrap_or_default();
            assert_eq!(fields, vec!["metadata.annotations[kubernetes.io/config.mirror]"]);
        }
        other => panic!("expected 422, got {other:?}"),
    }
}
