//! CustomResourceDefinitions: registration, discovery, CEL and structural
//! validation, pruning, status subresource, printer columns.

mod common;

use common::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn cu_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("drover.dev", "v1alpha1", "ClusterUpgrade"),
        "clusterupgrades",
    )
}

fn upgrade(name: &str, component: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "drover.dev/v1alpha1", "kind": "ClusterUpgrade",
        "metadata": {"name": name},
        "spec": {"components": [{"name": component, "version": "1.7.23",
                                 "upgrade": {"job": {"image": "registry.example.com/upgrade-containerd:1"}}}]}
    }))
    .unwrap()
}

async fn with_crd() -> (kubesim::ApiServer, kube::Client, Api<DynamicObject>) {
    let (s, c) = server().await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    let created = crds
        .create(&PostParams::default(), &drover_api::crd::crd())
        .await
        .unwrap();
    let conds = created.status.unwrap().conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    let api = Api::all_with(c.clone(), &cu_resource());
    (s, c, api)
}

#[tokio::test]
async fn creating_a_crd_serves_its_resource_and_discovery_lists_it() {
    let (_s, c, api) = with_crd().await;
    let d = kube::discovery::Discovery::new(c.clone()).run().await.unwrap();
    let group = d.groups().find(|g| g.name() == "drover.dev").expect("group discovered");
    let (ar, caps) = group.recommended_kind("ClusterUpgrade").unwrap();
    assert_eq!(ar.plural, "clusterupgrades");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    assert!(
        caps.subresources.iter().any(|(s, _)| s.plural.ends_with("status")),
        "{:?}",
        caps.subresources
    );
    let created = api
        .create(&PostParams::default(), &upgrade("u", "containerd"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    // Schema defaults are applied, as on a real server.
    assert_eq!(created.data["spec"]["drain"]["onTimeout"], "Halt");
    let got = api.get("u").await.unwrap();
    assert_eq!(got.data["spec"]["components"][0]["name"], "containerd");
}

#[tokio::test]
async fn cel_rules_refuse_invalid_objects_with_422() {
    let (_s, _c, api) = with_crd().await;
    // A stage, so the name is the one thing wrong (unknown names need one).
    let mut bad = upgrade("bad", "Bad_Name");
    bad.data["spec"]["components"][0]["stage"] = json!("Runtime");
    let st = status(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        st.message,
        "ClusterUpgrade.drover.dev \"bad\" is invalid: spec.components[0].name: Invalid value: \"string\": spec.components[].name must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"
    );
    let d = st.details.unwrap();
    assert_eq!(
        (d.name.as_str(), d.group.as_str(), d.kind.as_str()),
        ("bad", "drover.dev", "ClusterUpgrade")
    );
    assert_eq!(d.causes[0].field, "spec.components[0].name");
    assert_eq!(d.causes[0].reason, "FieldValueInvalid");

    let mut both = upgrade("both", "containerd");
    both.data["spec"]["components"][0]["upgrade"]["workload"] =
        json!({"kind": "DaemonSet", "namespace": "kube-system", "name": "x"});
    let st = status(api.create(&PostParams::default(), &both).await.unwrap_err());
    assert!(st.message.contains("spec.components[0].upgrade: Invalid value: \"object\": spec.components[].upgrade must set exactly one of job"), "{}", st.message);

    // Updates are checked too.
    api.create(&PostParams::default(), &upgrade("ok", "containerd"))
        .await
        .unwrap();
    let p = json!({"spec": {"components": [{"name": "NO", "version": "1", "upgrade": {"job": {"image": "i"}}}]}});
    let st = status(
        api.patch("ok", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 422);
}

#[tokio::test]
async fn structural_schema_rules_and_pruning() {
    let (_s, _c, api) = with_crd().await;
    let mut e = upgrade("enum", "containerd");
    e.data["spec"]["drain"] = json!({"onTimeout": "Bogus"});
    let st = status(api.create(&PostParams::default(), &e).await.unwrap_err());
    assert_eq!(st.code, 422);
    assert!(
        st.message
            .contains("spec.drain.onTimeout: Unsupported value: \"Bogus\": supported values:"),
        "{}",
        st.message
    );

    let mut t = upgrade("type", "containerd");
    t.data["spec"]["components"] = json!("not-a-list");
    let st = status(api.create(&PostParams::default(), &t).await.unwrap_err());
    assert!(
        st.message.contains("spec.components in body must be of type array"),
        "{}",
        st.message
    );

    let mut r = upgrade("req", "containerd");
    r.data["spec"]["components"][0]
        .as_object_mut()
        .unwrap()
        .remove("version");
    let st = status(api.create(&PostParams::default(), &r).await.unwrap_err());
    assert!(
        st.message.contains("spec.components[0].version: Required value"),
        "{}",
        st.message
    );

    let mut u = upgrade("prune", "containerd");
    u.data["spec"]["bogus"] = json!(1);
    let out = api.create(&PostParams::default(), &u).await.unwrap();
    assert!(out.data["spec"].get("bogus").is_none(), "unknown fields are pruned");

    let mut strict = upgrade("strict", "containerd");
    strict.data["spec"]["bogus"] = json!(1);
    let pp = PostParams::default();
    let req = axum::http::Request::post("/apis/drover.dev/v1alpha1/clusterupgrades?fieldValidation=Strict")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&strict).unwrap())
        .unwrap();
    let _ = pp;
    let err = _c_request(&api, req).await;
    assert_eq!(err.code, 400);
    assert!(err.message.contains("unknown field \"spec.bogus\""), "{}", err.message);
}

async fn _c_request(api: &Api<DynamicObject>, req: axum::http::Request<Vec<u8>>) -> Box<kube::core::Status> {
    let c: kube::Client = api.clone().into_client();
    status(c.request_text(req).await.unwrap_err())
}

#[tokio::test]
async fn status_subresource_and_printer_columns() {
    let (_s, c, api) = with_crd().await;
    api.create(&PostParams::default(), &upgrade("u", "containerd"))
        .await
        .unwrap();
    let st = json!({"status": {"target": "containerd=1.7.23", "progress": "0/3", "stage": "Runtime",
        "conditions": [{"type": "Ready", "status": "False", "reason": "Progressing", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        "spec": {"paused": true}});
    let out = api
        .patch_status("u", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    assert_eq!(out.data["status"]["stage"], "Runtime");
    assert_ne!(out.data["spec"]["paused"], json!(true), "status writes ignore spec");
    assert_eq!(out.metadata.generation, Some(1));
    let p = json!({"status": {"stage": "Etcd"}});
    let out = api
        .patch("u", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(out.data["status"]["stage"], "Runtime", "spec writes ignore status");

    let table: Value = serde_json::from_str(
        &get_raw(
            &c,
            "/apis/drover.dev/v1alpha1/clusterupgrades",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .await,
    )
    .unwrap();
    assert_eq!(table["kind"], "Table");
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Target", "Updated", "Stage", "Ready", "Reason", "Age"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "u");
    assert_eq!(cells[1], "containerd=1.7.23");
    assert_eq!(cells[3], "Runtime");
    assert_eq!(cells[4], "False");
    assert_eq!(cells[5], "Progressing");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

#[tokio::test]
async fn deleting_a_crd_stops_serving_its_resource() {
    let (_s, c, api) = with_crd().await;
    api.create(&PostParams::default(), &upgrade("u", "containerd"))
        .await
        .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(c);
    crds.delete("clusterupgrades.drover.dev", &DeleteParams::default())
        .await
        .unwrap();
    let st = status(api.get("u").await.unwrap_err());
    assert_eq!(st.code, 404);
}
