//! The health checks against a real control plane (real bed only; the
//! kubesim cases of every check are crates/nodeops/tests/health.rs): the
//! real `KubeNodeOps`, built from drover's own kubeconfig and running as
//! its ServiceAccount under deploy/'s RBAC, asks the real kube-apiserver's
//! `/readyz` trusting the cluster's CA from that kubeconfig and etcd's
//! `/health`, and reads an http check's Secret in drover's namespace, and
//! may read none elsewhere.

mod support;

use std::time::Duration;

use drover_api::HealthCheck;
use drover_nodeops::{CheckAnswer, ClusterCa, HealthRequest, KubeNodeOps, NodeOps, refused_for_good};
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::real::{Bare, DROVER_USER};
use support::{Bed, serial};

const NS: &str = "drover-system";

fn check(v: Value) -> HealthCheck {
    serde_json::from_value(v).unwrap()
}

/// The port of a URL such as `https://127.0.0.1:6443`.
fn port_of(url: &str) -> u16 {
    url.trim()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// etcd's client port, from the command line the script started it with.
fn etcd_port(bare: &Bare) -> u16 {
    let cmd = std::fs::read_to_string(bare.dir.join("cmd/etcd")).unwrap();
    let mut args = cmd.lines();
    while let Some(a) = args.next() {
        if a == "--listen-client-urls" {
            return port_of(args.next().unwrap());
        }
    }
    panic!("etcd was started without --listen-client-urls: {cmd}");
}

/// A try about the control-plane node cp-0, whose etcd and API server are `members`.
fn request<'a>(check: &'a HealthCheck, members: &'a [String]) -> HealthRequest<'a> {
    HealthRequest {
        check,
        node: "cp-0",
        component: "kube-apiserver",
        since: None,
        control_plane: members,
        etcd: members,
        is_member: true,
        namespace: NS,
    }
}

async fn try_once(ops: &KubeNodeOps, req: &HealthRequest<'_>) -> drover_nodeops::Result<CheckAnswer> {
    tokio::time::timeout(Duration::from_secs(30), ops.health(req))
        .await
        .expect("a health check answers within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_real_server_the_control_plane_check_trusts_the_clusters_ca_and_secrets_are_read_only_in_drovers_namespace()
 {
    if !Bed::Real.selected() {
        return;
    }
    let _one = serial().await;
    let dir = std::env::temp_dir().join(format!("drover-health-real-{}", std::process::id()));
    let bare = Bare::start(&dir.join("cp"), &[]).await;
    let (ok, out, err) = bare.kubectl(&[
        "apply",
        "-f",
        "deploy/base/clusterrole.yaml",
        "-f",
        "deploy/base/role.yaml",
    ]);
    assert!(ok, "deploy/'s RBAC: {out}{err}");

    // drover's own client and node operations, from its kubeconfig (its ServiceAccount's token and the cluster's CA).
    let kc = kube::config::Kubeconfig::read_from(&bare.drover_kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    assert!(
        config.root_cert.as_ref().is_some_and(|c| !c.is_empty()),
        "drover's kubeconfig names the cluster's CA"
    );
    let ops = KubeNodeOps::from_config(config, NS).unwrap();

    // A control-plane node whose address is the API server's and etcd's.
    let nodes: Api<Node> = Api::all(bare.client.clone());
    let node: Node = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "cp-0", "labels": {"node-role.kubernetes.io/control-plane": ""}}}))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    nodes
        .patch_status(
            "cp-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}})),
        )
        .await
        .unwrap();
    let api_port = port_of(&std::fs::read_to_string(bare.dir.join("server")).unwrap());
    let etcd_port = etcd_port(&bare);
    let members = vec!["cp-0".to_string()];
    let control_plane = |etcd_port: u16| {
        check(json!({"name": "control-plane", "controlPlane": {
            "apiServerURL": format!("https://{{{{nodeIP}}}}:{api_port}/readyz"),
            "etcdURL": format!("http://{{{{nodeIP}}}}:{etcd_port}/health")}}))
    };
    let request = |check| request(check, &members);
    let healthy = control_plane(etcd_port);
    assert_eq!(
        try_once(&ops, &request(&healthy)).await.unwrap(),
        CheckAnswer::pass("kube-apiserver ready on 1 node, etcd healthy on 1 member")
    );
    // The CA from the kubeconfig is what the API server's certificate was trusted by.
    let untrusting = KubeNodeOps::from_config(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&bare.drover_kubeconfig).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap(),
        NS,
    )
    .unwrap()
    .with_cluster_ca(ClusterCa::default());
    assert_eq!(
        try_once(&untrusting, &request(&healthy)).await.unwrap(),
        CheckAnswer::fail(format!(
            "kube-apiserver on cp-0 (https://127.0.0.1:{api_port}/readyz): no answer: TLS: invalid peer certificate: UnknownIssuer"
        ))
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let etcd_down = control_plane(closed);
    assert_eq!(
        try_once(&ops, &request(&etcd_down)).await.unwrap(),
        CheckAnswer::fail(format!(
            "etcd on cp-0 (http://127.0.0.1:{closed}/health): no answer: connection refused"
        ))
    );

    // An http check's Secret: the CA to trust and a token that the API
    // server authenticates (discovery is for authenticated users only).
    let (ok, out, err) = bare.kubectl(&["create", "serviceaccount", "health-probe", "-n", NS]);
    assert!(ok, "{out}{err}");
    let (ok, token, err) = bare.kubectl(&["create", "token", "health-probe", "-n", NS, "--duration", "1h"]);
    assert!(ok, "{err}");
    let ca = std::fs::read(bare.dir.join("pki/ca.crt")).unwrap();
    for ns in [NS, "kube-system"] {
        let mut s: Secret =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-health"}}))
                .unwrap();
        s.data = Some(
            [
                ("ca.crt".to_string(), k8s_openapi::ByteString(ca.clone())),
                (
                    "token".to_string(),
                    k8s_openapi::ByteString(token.trim().as_bytes().to_vec()),
                ),
            ]
            .into(),
        );
        Api::<Secret>::namespaced(bare.client.clone(), ns)
            .create(&PostParams::default(), &s)
            .await
            .unwrap();
    }
    let url = format!("https://127.0.0.1:{api_port}/apis");
    let discovery = |extra: Value| {
        let mut h = json!({"url": url, "bodyContains": "APIGroupList"});
        h.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check(json!({"name": "discovery", "http": h}))
    };
    let with_secret = discovery(json!({"secretName": "api-health"}));
    assert_eq!(
        try_once(&ops, &request(&with_secret)).await.unwrap(),
        CheckAnswer::pass(format!("HTTP 200 from {url}"))
    );
    // Without the token the server sees an anonymous user.
    let ca_only = discovery(json!({"caBundle": String::from_utf8(ca.clone()).unwrap()}));
    let anonymous = try_once(&ops, &request(&ca_only)).await.unwrap();
    assert!(!anonymous.passed);
    assert!(
        anonymous
            .answer
            .starts_with(&format!("HTTP 403 from {url} (expected 200): "))
            && anonymous.answer.contains("system:anonymous"),
        "{}",
        anonymous.answer
    );
    // deploy/'s RBAC lets drover read the Secret in its own namespace only:
    // asked for one elsewhere, its own request is refused (an Err, not an answer).
    let elsewhere = HealthRequest {
        namespace: "kube-system",
        ..request(&with_secret)
    };
    let refused = try_once(&ops, &elsewhere).await.unwrap_err();
    let why = refused_for_good(&refused).expect("a 403 is a refusal for good");
    assert!(
        why.contains("secrets \"api-health\" is forbidden") && why.contains(DROVER_USER),
        "{why}"
    );

    // The audit log: drover's Secret reads were gets, allowed in its namespace, refused elsewhere.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let reads: Vec<(String, Option<String>, i64)> = bare
        .drover_requests()
        .into_iter()
        .filter(|r| r.resource == "secrets")
        .map(|r| (r.verb, r.namespace, r.code))
        .collect();
    assert_eq!(
        reads,
        [
            ("get".to_string(), Some(NS.to_string()), 200),
            ("get".to_string(), Some("kube-system".to_string()), 403)
        ]
    );
    drop(bare);
    std::fs::remove_dir_all(&dir).ok();
}
