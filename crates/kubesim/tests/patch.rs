//! Merge, JSON and strategic merge patches; server-side apply with
//! managedFields, conflicts and force.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn merge_and_json_patches() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    let obj: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "a"}, "data": {"x": "1", "y": "2"}})).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let p = json!({"data": {"x": null, "z": "3"}});
    let out = api
        .patch("a", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    let data = out.data.unwrap();
    assert!(!data.contains_key("x"));
    assert_eq!(data["z"], "3");
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/labels", "value": {"l": "v"}},
        {"op": "replace", "path": "/data/y", "value": "22"}
    ]))
    .unwrap();
    let out = api
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(out.metadata.labels.unwrap()["l"], "v");
    assert_eq!(out.data.unwrap()["y"], "22");
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/y", "value": "nope"}])).unwrap();
    let st = status(
        api.patch("a", &PatchParams::default(), &Patch::<()>::Json(bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 422);
    // A resourceVersion in a patch is a precondition.
    let p = json!({"metadata": {"resourceVersion": "1"}, "data": {"q": "1"}});
    let st = status(
        api.patch("a", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
}

#[tokio::test]
async fn strategic_merge_patches_built_in_lists_by_key() {
    let (_s, c) = server().await;
    let api: Api<Pod> = Api::default_namespaced(c.clone());
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "finalizers": ["a/b"]},
        "spec": {"containers": [{"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                                {"name": "side", "image": "side:1"}],
                 "tolerations": [{"key": "k1", "operator": "Exists"}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
    let patch = json!({
        "metadata": {"finalizers": ["c/d"]},
        "spec": {"containers": [{"name": "side", "image": "side:2", "env": [{"name": "B", "value": "2"}]}],
                 "tolerations": [{"key": "k2", "operator": "Exists"}]}
    });
    let out = api
        .patch("p", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let spec = out.spec.unwrap();
    assert_eq!(spec.containers.len(), 2, "containers merge by name");
    assert_eq!(spec.containers[0].image.as_deref(), Some("app:1"));
    assert_eq!(spec.containers[1].image.as_deref(), Some("side:2"));
    assert_eq!(spec.containers[1].env.as_ref().unwrap()[0].name, "B");
    assert_eq!(spec.tolerations.unwrap().len(), 1, "tolerations are replaced");
    assert_eq!(out.metadata.finalizers.unwrap(), ["a/b", "c/d"]);
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
    api.patch_status("p", &PatchParams::default(), &Patch::Strategic(&status))
        .await
        .unwrap();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let out = api
        .patch_status("p", &PatchParams::default(), &Patch::Strategic(&status))
        .await
        .unwrap();
    let conds = out.status.unwrap().conditions.unwrap();
    assert_eq!(conds.len(), 2, "conditions merge by type");
    assert_eq!(conds[0].status, "True");
    let del = json!({"spec": {"containers": [{"name": "side", "$patch": "delete"}]}, "metadata": {"$deleteFromPrimitiveList/finalizers": ["a/b"]}});
    let out = api
        .patch("p", &PatchParams::default(), &Patch::Strategic(&del))
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().containers.len(), 1);
    assert_eq!(out.metadata.finalizers.unwrap(), ["c/d"]);

    let nodes: Api<Node> = Api::all(c);
    nodes.create(&PostParams::default(), &node("n")).await.unwrap();
    let cordon = json!({"spec": {"unschedulable": true}});
    let out = nodes
        .patch("n", &PatchParams::default(), &Patch::Strategic(&cordon))
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().unschedulable, Some(true));
}

fn deployment(replicas: i32, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"owner": "a"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}
    })
}

#[tokio::test]
async fn server_side_apply_tracks_owners_conflicts_and_force() {
    let (_s, c) = server().await;
    let api: Api<Deployment> = Api::default_namespaced(c);
    let pp = PatchParams::apply("alice");
    let created = api.patch("d", &pp, &Patch::Apply(deployment(1, "i:1"))).await.unwrap();
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(mf[0].fields_v1.as_ref().unwrap()).unwrap();
    assert!(fields["f:spec"]["f:replicas"].is_object());
    assert!(fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:image"].is_object());

    // Another applier setting a different value conflicts, with the real message.
    let bob =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 3}});
    let st = status(
        api.patch("d", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        st.message,
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
    );
    let cause = &st.details.unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldManagerConflict", ".spec.replicas")
    );
    // The same value is shared ownership, not a conflict.
    let same =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1}});
    api.patch("d", &PatchParams::apply("carol"), &Patch::Apply(&same))
        .await
        .unwrap();
    // force takes the field.
    let out = api
        .patch("d", &PatchParams::apply("bob").force(), &Patch::Apply(&bob))
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().replicas, Some(3));
    let mf = out.metadata.managed_fields.unwrap();
    let alice = mf.iter().find(|m| m.manager.as_deref() == Some("alice")).unwrap();
    let af = serde_json::to_value(alice.fields_v1.as_ref().unwrap()).unwrap();
    assert!(af["f:spec"].get("f:replicas").is_none(), "alice lost .spec.replicas");

    // A field alice stops applying (and no one else owns) is removed.
    let mut again = deployment(1, "i:2");
    again["spec"].as_object_mut().unwrap().remove("replicas");
    again["metadata"].as_object_mut().unwrap().remove("labels");
    let out = api.patch("d", &pp, &Patch::Apply(&again)).await.unwrap();
    assert!(out.metadata.labels.unwrap_or_default().is_empty(), "label dropped");
    assert_eq!(out.spec.as_ref().unwrap().replicas, Some(3), "bob still owns replicas");
    assert_eq!(
        out.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(),
        Some("i:2")
    );

    // An update (non-apply) write takes ownership as an Update manager.
    let p = json!({"spec": {"replicas": 5}});
    api.patch(
        "d",
        &PatchParams {
            field_manager: Some("scaler".into()),
            ..Default::default()
        },
        &Patch::Merge(&p),
    )
    .await
    .unwrap();
    let st = status(
        api.patch("d", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        st.message,
        "Apply failed with 1 conflict: conflict with \"scaler\" using apps/v1: .spec.replicas"
    );
}

#[tokio::test]
async fn apply_without_field_manager_is_rejected() {
    let (_s, c) = server().await;
    let api: Api<Deployment> = Api::default_namespaced(c);
    let st = status(
        api.patch("d", &PatchParams::default(), &Patch::Apply(deployment(1, "i")))
            .await
            .unwrap_err(),
    );
    // As kube-apiserver v1.37: 422 with a fieldManager cause.
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"));
    assert_eq!(st.details.unwrap().causes[0].field, "fieldManager");
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() {
    let (_s, c) = server().await;
    let api: Api<Deployment> = Api::default_namespaced(c);
    let d: Deployment = serde_json::from_value(deployment(2, "i:1")).unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    let sc = api.get_scale("d").await.unwrap();
    assert_eq!(sc.spec.unwrap().replicas, Some(2));
    assert_eq!(sc.status.unwrap().selector.as_deref(), Some("app=d"));
    let p = json!({"spec": {"replicas": 4}});
    let sc = api
        .patch_scale("d", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(sc.spec.unwrap().replicas, Some(4));
    let got = api.get("d").await.unwrap();
    assert_eq!(got.spec.unwrap().replicas, Some(4));
    assert_eq!(got.metadata.generation, Some(2));
}

#[tokio::test]
async fn selectors_are_immutable() {
    let (_s, c) = server().await;
    let api: Api<Deployment> = Api::default_namespaced(c);
    let d: Deployment = serde_json::from_value(deployment(1, "i:1")).unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    let p = json!({"spec": {"selector": {"matchLabels": {"app": "other"}}}});
    let st = status(
        api.patch("d", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"));
    // The template labels no longer match either, as the real server says.
    assert!(
        st.message.contains("spec.selector: Invalid value:") && st.message.contains("field is immutable"),
        "{}",
        st.message
    );
}

#[tokio::test]
async fn re_applying_the_same_configuration_is_a_no_op() {
    let (_s, c) = server().await;
    let api: Api<Deployment> = Api::default_namespaced(c);
    let pp = PatchParams::apply("alice");
    let first = api.patch("d", &pp, &Patch::Apply(deployment(1, "i:1"))).await.unwrap();
    let again = api.patch("d", &pp, &Patch::Apply(deployment(1, "i:1"))).await.unwrap();
    assert_eq!(again.metadata.resource_version, first.metadata.resource_version);
    let status =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "status": {"replicas": 1}});
    let s1 = api.patch_status("d", &pp, &Patch::Apply(&status)).await.unwrap();
    let s2 = api.patch_status("d", &pp, &Patch::Apply(&status)).await.unwrap();
    assert_eq!(s1.metadata.resource_version, s2.metadata.resource_version);
    assert_ne!(s1.metadata.resource_version, first.metadata.resource_version);
}
