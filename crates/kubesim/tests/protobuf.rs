//! Protobuf request bodies: the real `kubectl` (whose typed `create`
//! subcommands send `application/vnd.kubernetes.protobuf`) against a served
//! instance, results checked through the API; bodies encoded by k8s-pb's
//! prost types (an encoder independent of kubesim's decoder); and the errors
//! for what cannot be decoded.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::Api;
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

const KUBECTL: &str = "/usr/bin/kubectl";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

struct Kubectl {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// None when kubectl is not installed (set KUBESIM_REQUIRE_KUBECTL=1 to fail instead).
fn kubectl(server: &kubesim::ApiServer) -> Option<Kubectl> {
    if !Path::new(KUBECTL).exists() {
        assert!(
            std::env::var_os("KUBESIM_REQUIRE_KUBECTL").is_none(),
            "kubectl is required"
        );
        eprintln!("skipping: {KUBECTL} not found");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("kubesim-protobuf-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    Some(Kubectl { dir, kubeconfig })
}

impl Kubectl {
    /// Runs kubectl with `-v=8` (request headers on stderr) to completion;
    /// killed (on drop) if it outlives the timeout. Returns stdout and stderr.
    async fn ok(&self, args: &[&str]) -> (String, String) {
        let child = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("-v=8")
            .args(args)
            .env("HOME", &self.dir)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "kubectl {args:?} failed: {stdout}{stderr}");
        (stdout, stderr)
    }

    /// As `ok`, and asserts the request body went out as protobuf.
    async fn sends_protobuf(&self, args: &[&str]) -> String {
        let (stdout, stderr) = self.ok(args).await;
        assert!(
            stderr.contains(&format!("Content-Type: {PROTOBUF}")),
            "kubectl {args:?} sent no protobuf body:\n{stderr}"
        );
        stdout
    }
}

#[tokio::test]
async fn kubectl_create_and_scale_send_protobuf_and_land_as_sent() {
    let (server, c) = server().await;
    let Some(k) = kubectl(&server) else { return };

    let out = k.sends_protobuf(&["create", "namespace", "shop"]).await;
    assert_eq!(out.trim(), "namespace/shop created");
    let ns = Api::<Namespace>::all(c.clone()).get("shop").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));

    k.sends_protobuf(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1",
        "--replicas=2",
        "--port=8080",
        "-n",
        "shop",
    ])
    .await;
    let deploys = Api::<Deployment>::namespaced(c.clone(), "shop");
    let d = deploys.get("web").await.unwrap();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let app = BTreeMap::from([("app".to_string(), "web".to_string())]);
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&app));
    assert_eq!(d.metadata.labels.as_ref(), Some(&app));
    let template = spec.template;
    assert_eq!(template.metadata.unwrap().labels.as_ref(), Some(&app));
    let pod = template.spec.unwrap();
    assert_eq!(pod.containers.len(), 1);
    let container = &pod.containers[0];
    assert_eq!(container.name, "nginx");
    assert_eq!(container.image.as_deref(), Some("nginx:1"));
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 8080);
    // Non-pointer omitempty fields sent as zero values stay out, as the real
    // server's JSON leaves them out.
    let raw = get_raw(&c, "/apis/apps/v1/namespaces/shop/deployments/web", "application/json").await;
    for absent in [
        "\"workingDir\"",
        "\"stdin\"",
        "\"minReadySeconds\"",
        "\"restartPolicy\"",
    ] {
        assert!(!raw.contains(absent), "{absent} in {raw}");
    }

    // kubectl scale writes the scale subresource (JSON, or a PUT of the Scale
    // with --current-replicas); either way the Deployment follows.
    k.ok(&["scale", "deployment", "web", "--replicas=3", "-n", "shop"])
        .await;
    assert_eq!(deploys.get("web").await.unwrap().spec.unwrap().replicas, Some(3));
    k.ok(&[
        "scale",
        "deployment",
        "web",
        "--current-replicas=3",
        "--replicas=4",
        "-n",
        "shop",
    ])
    .await;
    assert_eq!(deploys.get("web").await.unwrap().spec.unwrap().replicas, Some(4));

    k.sends_protobuf(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
        "--from-literal=empty=",
        "-n",
        "shop",
    ])
    .await;
    let cm = Api::<ConfigMap>::namespaced(c.clone(), "shop")
        .get("settings")
        .await
        .unwrap();
    assert_eq!(
        cm.data,
        Some(BTreeMap::from([
            ("empty".to_string(), String::new()),
            ("mode".to_string(), "fast".to_string())
        ]))
    );

    // Bytes fields (Secret.data) arrive as the bytes sent.
    k.sends_protobuf(&[
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=key=s3cr3t",
        "-n",
        "shop",
    ])
    .await;
    let s = Api::<Secret>::namespaced(c.clone(), "shop").get("token").await.unwrap();
    assert_eq!(s.data.unwrap()["key"].0, b"s3cr3t");

    // The responses kubesim gives (JSON) satisfy kubectl's reads as well.
    let (names, _) = k.ok(&["get", "deployment,configmap", "-n", "shop", "-o", "name"]).await;
    assert!(
        names.contains("deployment.apps/web") && names.contains("configmap/settings"),
        "{names}"
    );
    server.shutdown().await;
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    let u = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [b"k8s\0".to_vec(), u.encode_to_vec()].concat()
}

async fn post(c: &kube::Client, path: &str, content_type: &str, body: Vec<u8>) -> Result<String, kube::Error> {
    let req = axum::http::Request::post(path)
        .header("Content-Type", content_type)
        .header("Accept", format!("{PROTOBUF}, */*"))
        .body(body)
        .unwrap();
    c.request_text(req).await
}

/// A Deployment reaching special types (Quantity, IntOrString), pointer
/// zeros, maps, lists and an inlined message, encoded by k8s-pb.
#[tokio::test]
async fn a_deployment_encoded_by_k8s_pb_is_stored_field_for_field() {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::api::resource::Quantity;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;

    let (server, c) = server().await;
    let labels = BTreeMap::from([("app".to_string(), "api".to_string())]);
    let container = core::Container {
        name: Some("api".into()),
        image: Some("registry.example.com/api:2".into()),
        command: vec!["/api".into(), "--port=9000".into()],
        ports: vec![core::ContainerPort {
            container_port: Some(9000),
            protocol: Some("TCP".into()),
            ..Default::default()
        }],
        env: vec![core::EnvVar {
            name: Some("MODE".into()),
            value: Some("prod".into()),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: BTreeMap::from([(
                "memory".to_string(),
                Quantity {
                    string: Some("256Mi".into()),
                },
            )]),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: Some("/healthz".into()),
                    port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("http".into()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        security_context: Some(core::SecurityContext {
            run_as_user: Some(0),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let d = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: Some("api".into()),
            labels: labels.clone(),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: labels.clone(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels.clone(),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    image_pull_secrets: vec![core::LocalObjectReference {
                        name: Some("pull".into()),
                    }],
                    termination_grace_period_seconds: Some(0),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: Some(String::new()),
                    }),
                    max_surge: None,
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let body = envelope("apps/v1", "Deployment", d.encode_to_vec());
    post(&c, "/apis/apps/v1/namespaces/default/deployments", PROTOBUF, body)
        .await
        .unwrap();

    let got = Api::<Deployment>::namespaced(c.clone(), "default")
        .get("api")
        .await
        .unwrap();
    let spec = got.spec.unwrap();
    assert_eq!(spec.replicas, Some(0), "a pointer's zero is kept");
    let strategy = spec.strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as Ios;
    assert_eq!(strategy.rolling_update.unwrap().max_unavailable, Some(Ios::Int(1)));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(0));
    assert_eq!(
        pod.image_pull_secrets.unwrap()[0].name,
        "pull",
        "inlined LocalObjectReference"
    );
    let ct = &pod.containers[0];
    assert_eq!(
        ct.command.as_deref(),
        Some(&["/api".to_string(), "--port=9000".to_string()][..])
    );
    assert_eq!(ct.ports.as_ref().unwrap()[0].container_port, 9000);
    assert_eq!(ct.env.as_ref().unwrap()[0].value.as_deref(), Some("prod"));
    assert_eq!(
        ct.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "256Mi"
    );
    let probe = ct.readiness_probe.as_ref().unwrap();
    assert_eq!(probe.period_seconds, Some(5));
    let get = probe.http_get.as_ref().unwrap();
    assert_eq!(
        (get.path.as_deref(), &get.port),
        (Some("/healthz"), &Ios::String("http".into()))
    );
    let sc = ct.security_context.as_ref().unwrap();
    assert_eq!((sc.run_as_user, sc.allow_privilege_escalation), (Some(0), Some(false)));
    server.shutdown().await;
}

#[tokio::test]
async fn bodies_that_cannot_be_decoded_get_a_status() {
    let (server, c) = server().await;
    let ns_raw = k8s_pb::api::core::v1::Namespace {
        metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("fine".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();

    // An unknown kind.
    let e = status(
        post(
            &c,
            "/api/v1/namespaces",
            PROTOBUF,
            envelope("v1", "Gadget", ns_raw.clone()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
    assert_eq!(e.message, r#"no kind "Gadget" is registered for version "v1""#);

    // A truncated object.
    let cut = ns_raw[..ns_raw.len() - 2].to_vec();
    let e = status(
        post(&c, "/api/v1/namespaces", PROTOBUF, envelope("v1", "Namespace", cut))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    assert!(
        e.message.contains("v1 Namespace") && e.message.contains("runs past the end"),
        "{}",
        e.message
    );

    // JSON sent as protobuf.
    let e = status(
        post(
            &c,
            "/api/v1/namespaces",
            PROTOBUF,
            br#"{"metadata":{"name":"x"}}"#.to_vec(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    assert!(
        e.message.contains("does not appear to be a protobuf message"),
        "{}",
        e.message
    );

    // Custom resources have no protobuf form: 415, as on a real server.
    let crd: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/clusterupgrades.drover.dev.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    post(
        &c,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        serde_json::to_vec(&crd).unwrap(),
    )
    .await
    .unwrap();
    let e = status(
        post(
            &c,
            "/apis/drover.dev/v1alpha1/clusterupgrades",
            PROTOBUF,
            envelope("drover.dev/v1alpha1", "ClusterUpgrade", Vec::new()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (415, "UnsupportedMediaType"));

    // And the well-formed body still lands.
    post(&c, "/api/v1/namespaces", PROTOBUF, envelope("v1", "Namespace", ns_raw))
        .await
        .unwrap();
    assert!(Api::<Namespace>::all(c.clone()).get("fine").await.is_ok());
    server.shutdown().await;
}
