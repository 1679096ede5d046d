//! Answers kubesim gives as a real kube-apiserver v1.37 does, found by the
//! differential test (crates/drover/tests/differential.rs): codes, reasons
//! and cause fields.

use kubesim::ApiError;
use kubesim::store::{GroupResource, Patch, Store, StoreConfig, WriteOptions};
use serde_json::{Value, json};

fn store_with_crd() -> Store {
    let s = Store::new(StoreConfig::default());
    let crd = serde_json::to_value(drover_api::crd::crd()).unwrap();
    s.create(
        &GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions"),
        "",
        crd,
        &WriteOptions::default(),
    )
    .unwrap();
    s
}

fn cu_gr() -> GroupResource {
    GroupResource::new("drover.dev", "clusterupgrades")
}

fn cu(name: &str) -> Value {
    json!({"apiVersion": "drover.dev/v1alpha1", "kind": "ClusterUpgrade", "metadata": {"name": name},
        "spec": {"components": [{"name": "containerd", "version": "1.7.23",
            "upgrade": {"job": {"image": "registry.example.com/u:1"}}}]}})
}

fn causes(e: &ApiError) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = e
        .details
        .as_ref()
        .and_then(|d| d["causes"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn strict() -> WriteOptions {
    WriteOptions {
        strict: true,
        ..Default::default()
    }
}

#[test]
fn a_blocking_schema_error_skips_cel_with_a_nil_cause() {
    let s = store_with_crd();
    let mut obj = cu("t1");
    obj["spec"]["paused"] = json!("yes");
    let e = s.create(&cu_gr(), "", obj, &WriteOptions::default()).unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        causes(&e),
        vec![
            ("<nil>".to_string(), "FieldValueInvalid".to_string()),
            ("spec.paused".to_string(), "FieldValueTypeInvalid".to_string())
        ]
    );
    // A wrong type on an enum field is also an unsupported value.
    let mut obj = cu("t2");
    obj["spec"]["strategy"] = json!({"type": 1});
    let e = s.create(&cu_gr(), "", obj, &WriteOptions::default()).unwrap_err();
    assert!(causes(&e).contains(&("spec.strategy.type".into(), "FieldValueNotSupported".into())));
    // The metadata's errors block CEL too.
    let mut obj = cu("t3");
    obj["metadata"] = json!({});
    let e = s.create(&cu_gr(), "", obj, &WriteOptions::default()).unwrap_err();
    assert!(
        causes(&e).contains(&("<nil>".into(), "FieldValueInvalid".into())),
        "{e:?}"
    );
}

#[test]
fn nulls_of_non_nullable_fields_are_dropped_then_defaulted() {
    let s = store_with_crd();
    let mut obj = cu("n1");
    obj["spec"]["components"][0]["upgrade"]["job"]["hostRoot"] = Value::Null;
    obj["spec"]["strategy"] = Value::Null;
    let v = s.create(&cu_gr(), "", obj, &WriteOptions::default()).unwrap();
    assert_eq!(v["spec"]["components"][0]["upgrade"]["job"]["hostRoot"], json!(false));
    let mut obj = cu("n2");
    obj["spec"]["components"][0]["version"] = Value::Null;
    let e = s.create(&cu_gr(), "", obj, &WriteOptions::default()).unwrap_err();
    assert!(causes(&e).contains(&("spec.components[0].version".into(), "FieldValueRequired".into())));
}

#[test]
fn built_ins_are_decoded_into_their_types() {
    let s = Store::new(StoreConfig::default());
    let cm = GroupResource::new("", "configmaps");
    let e = s
        .create(
            &cm,
            "default",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": 1}}),
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert_eq!((e.code, e.reason), (400, "BadRequest"));
    let e = s
        .create(
            &cm,
            "default",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "extra": 1}),
            &strict(),
        )
        .unwrap_err();
    assert_eq!((e.code, e.reason), (400, "BadRequest"));
    assert!(e.message.contains("unknown field \"extra\""), "{}", e.message);
    // Without Strict the unknown field is dropped.
    let v = s
        .create(
            &cm,
            "default",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "extra": 1, "data": {"k": "v"}}),
            &WriteOptions::default(),
        )
        .unwrap();
    assert!(v.get("extra").is_none());
    // A patch that makes it undecodable: 422 with a `patch` cause.
    let e = s
        .patch(
            &cm,
            "default",
            "a",
            Patch::Merge(json!({"data": {"k": 2}})),
            None,
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(causes(&e), vec![("patch".to_string(), "FieldValueInvalid".to_string())]);
    // Server-side apply of an undeclared field: 500, whatever the validation.
    let e = s
        .patch(
            &cm,
            "default",
            "a",
            Patch::Apply {
                body: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "nope": 1}),
                force: true,
            },
            None,
            &WriteOptions {
                field_manager: Some("m".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.code, 500);
    assert!(
        e.message.contains(".nope: field not declared in schema"),
        "{}",
        e.message
    );
    // Apply without a field manager: 422 on fieldManager.
    let e = s
        .patch(
            &cm,
            "default",
            "a",
            Patch::Apply {
                body: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
                force: false,
            },
            None,
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![("fieldManager".to_string(), "FieldValueRequired".to_string())]
    );
}

#[test]
fn labels_annotations_and_generate_name_are_checked() {
    let s = Store::new(StoreConfig::default());
    let cm = GroupResource::new("", "configmaps");
    for meta in [
        json!({"name": "a", "labels": {"app": "not ok!"}}),
        json!({"name": "a", "labels": {"-bad/key": "v"}}),
    ] {
        let e = s
            .create(
                &cm,
                "default",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}),
                &WriteOptions::default(),
            )
            .unwrap_err();
        assert_eq!(
            causes(&e),
            vec![("metadata.labels".to_string(), "FieldValueInvalid".to_string())]
        );
    }
    let e = s
        .create(
            &cm,
            "default",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "Bad_"}}),
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert!(causes(&e).contains(&("metadata.generateName".into(), "FieldValueInvalid".into())));
    let v = s
        .create(
            &cm,
            "default",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "ok-"}}),
            &WriteOptions::default(),
        )
        .unwrap();
    assert!(v["metadata"]["name"].as_str().unwrap().starts_with("ok-"));
    // A PodDisruptionBudget's name need only be a path segment.
    let pdb = GroupResource::new("policy", "poddisruptionbudgets");
    s.create(
        &pdb,
        "default",
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "Odd_Name"}, "spec": {"minAvailable": 1}}),
        &WriteOptions::default(),
    )
    .unwrap();
    let e = s
        .create(
            &pdb,
            "default",
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"}, "spec": {"minAvailable": "half"}}),
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![("spec.minAvailable".to_string(), "FieldValueInvalid".to_string())]
    );
}

#[test]
fn pod_specs_and_workload_selectors_are_validated() {
    let s = Store::new(StoreConfig::default());
    let pods = GroupResource::new("", "pods");
    let e = s
        .create(
            &pods,
            "default",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}),
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![("spec.containers[0].image".to_string(), "FieldValueRequired".to_string())]
    );
    let deploy = GroupResource::new("apps", "deployments");
    let e = s
        .create(
            &deploy,
            "default",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![(
            "spec.template.metadata.labels".to_string(),
            "FieldValueInvalid".to_string()
        )]
    );
    let jobs = GroupResource::new("batch", "jobs");
    let e = s
        .create(
            &jobs,
            "default",
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![(
            "spec.template.spec.restartPolicy".to_string(),
            "FieldValueRequired".to_string()
        )]
    );
}

#[test]
fn custom_resources_need_a_resource_version_and_their_kind() {
    let s = store_with_crd();
    s.create(&cu_gr(), "", cu("r"), &WriteOptions::default()).unwrap();
    let e = s
        .update(&cu_gr(), "", "r", cu("r"), None, &WriteOptions::default())
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![("metadata.resourceVersion".to_string(), "FieldValueInvalid".to_string())]
    );
    let mut other = cu("k");
    other["kind"] = json!("Other");
    let e = s.create(&cu_gr(), "", other, &WriteOptions::default()).unwrap_err();
    assert_eq!(causes(&e), vec![("kind".to_string(), "FieldValueInvalid".to_string())]);
}
