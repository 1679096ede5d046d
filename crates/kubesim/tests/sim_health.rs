//! Health as monitoring sees it (kubesim only; the real bed's agent serves
//! the same through crates/drover/tests/e2e_health_bed.rs): the query
//! language subset and its evaluator, and, on the in-process simulation,
//! the node health endpoint and the Prometheus-compatible query API under
//! the `BadVersion` and `AlertFiring` faults.

#[path = "sim_common.rs"]
mod common;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kubesim::sim::promql::{Sample, eval, parse};
use kubesim::sim::{BadEffect, Fault, Scenario, Simulation};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---- the query language ----

fn series() -> Vec<Sample> {
    vec![
        Sample::new(
            "ALERTS",
            &[
                ("alertname", "EtcdDown"),
                ("alertstate", "firing"),
                ("severity", "critical"),
            ],
            1.0,
        ),
        Sample::new(
            "ALERTS",
            &[
                ("alertname", "DiskFull"),
                ("alertstate", "firing"),
                ("severity", "warning"),
            ],
            1.0,
        ),
        Sample::new("kubesim_node_ready", &[("node", "worker-1")], 1.0),
        Sample::new("kubesim_node_ready", &[("node", "worker-2")], 0.0),
        Sample::new("kubesim_node_ready", &[("node", "cp-1")], 1.0),
    ]
}

/// The query's result as sorted (labels without `__name__`, value) text.
fn run(q: &str) -> Vec<String> {
    let e = parse(q).unwrap_or_else(|err| panic!("{q}: {err}"));
    let mut out: Vec<String> = eval(&e, &series())
        .into_iter()
        .map(|s| {
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{{{}}} {}", labels.join(","), s.value)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn selectors_match_as_prometheus_does() {
    assert_eq!(run("kubesim_node_ready").len(), 3);
    assert_eq!(run(r#"kubesim_node_ready{node="worker-2"}"#), ["{node=worker-2} 0"]);
    assert_eq!(run(r#"kubesim_node_ready{node!="worker-2"}"#).len(), 2);
    // Regexes are anchored: "worker" alone matches nothing.
    assert!(run(r#"kubesim_node_ready{node=~"worker"}"#).is_empty());
    assert_eq!(run(r#"kubesim_node_ready{node=~"worker-.*"}"#).len(), 2);
    assert_eq!(run(r#"kubesim_node_ready{node!~"worker-.*"}"#), ["{node=cp-1} 1"]);
    // A missing label is the empty string.
    assert_eq!(run(r#"ALERTS{node=""}"#).len(), 2);
    assert_eq!(
        run(r#"ALERTS{alertstate="firing",severity="critical",}"#),
        ["{alertname=EtcdDown,alertstate=firing,severity=critical} 1"]
    );
    assert_eq!(run(r#"{__name__="ALERTS", severity='warning'}"#).len(), 1);
    assert_eq!(run(r#"{alertname=~"Etcd.+"}"#).len(), 1);
    assert!(run("no_such_metric").is_empty());
}

#[test]
fn aggregations_and_comparisons() {
    assert_eq!(run("count(kubesim_node_ready)"), ["{} 3"]);
    assert_eq!(run("sum(kubesim_node_ready)"), ["{} 2"]);
    // Nothing in, nothing out (not a zero).
    assert!(run("count(no_such_metric)").is_empty());
    assert!(run("sum(no_such_metric)").is_empty());
    // Comparisons filter, keeping values and labels.
    assert_eq!(run("kubesim_node_ready == 0"), ["{node=worker-2} 0"]);
    assert_eq!(run("kubesim_node_ready > 0").len(), 2);
    assert_eq!(run("0 < kubesim_node_ready").len(), 2);
    assert_eq!(run("kubesim_node_ready >= 1").len(), 2);
    assert_eq!(run("kubesim_node_ready != 1"), ["{node=worker-2} 0"]);
    assert_eq!(run("count(kubesim_node_ready == 0)"), ["{} 1"]);
    assert_eq!(run("count(kubesim_node_ready) > 2"), ["{} 3"]);
    assert!(run("count(kubesim_node_ready) > 3").is_empty());
    assert!(run("count(ALERTS{severity=\"critical\"}) <= 0.5").is_empty());
    assert_eq!(run("(sum(ALERTS))"), ["{} 2"]);
    assert_eq!(run("kubesim_node_ready < -1e3").len(), 0);
    // The metric name stays on a filtered sample.
    let e = parse("kubesim_node_ready > 0").unwrap();
    assert!(
        eval(&e, &series())
            .iter()
            .all(|s| s.labels["__name__"] == "kubesim_node_ready")
    );
}

#[test]
fn what_is_not_supported_is_named() {
    for (q, says) in [
        ("rate(kubesim_node_ready[5m])", "rate(...) is not supported"),
        ("kubesim_node_ready[5m]", "range selectors"),
        ("kubesim_node_ready offset 5m", "offset is not supported"),
        ("sum by (node) (kubesim_node_ready)", "grouping"),
        ("kubesim_node_ready + 1", "arithmetic"),
        ("kubesim_node_ready > bool 0", "bool modifier"),
        ("ALERTS and kubesim_node_ready", "set operator and"),
        ("ALERTS > kubesim_node_ready", "two vectors"),
        ("1 > 0", "two numbers"),
        ("1", "bare number"),
        ("", "no expression"),
        ("{}", "at least one non-empty matcher"),
        (r#"{node=""}"#, "at least one non-empty matcher"),
        (r#"ALERTS{alertname="x""#, "end of input"),
        (r#"ALERTS{alertname=x}"#, "expected a quoted string"),
        (r#"ALERTS{alertname=~"("}"#, "invalid regular expression"),
        (r#"ALERTS{alertname="unterminated}"#, "unterminated quoted string"),
        ("ALERTS > 0 > 1", "one comparison at a time"),
        ("ALERTS $", "unexpected character"),
    ] {
        let err = parse(q).map(|_| ()).expect_err(q);
        assert!(err.contains(says), "{q:?}: {err:?} should say {says:?}");
    }
}

// ---- the endpoints on the simulation ----

/// One plain HTTP/1.0 request: (status, body).
async fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let addr = base.strip_prefix("http://").expect("a plain-HTTP base URL");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    within("the health endpoint's answer", s.read_to_string(&mut out))
        .await
        .unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /api/v1/query`: the result vector (the answer must be a success).
async fn query(base: &str, q: &str) -> Vec<Value> {
    let (code, body) = http(base, "GET", &format!("/api/v1/query?query={}", encode(q)), "").await;
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert_eq!((code, v["status"].as_str()), (200, Some("success")), "{q}: {body}");
    assert_eq!(v["data"]["resultType"], "vector");
    v["data"]["result"].as_array().unwrap().clone()
}

fn scenario() -> Scenario {
    Scenario::builder()
        .control_plane(1)
        .workers(3)
        .deployment("shop", "web", 6)
        .daemonset("logging", "agent")
        .component("kubelet", 30.0, false)
        .component("containerd", 30.0, false)
        .component("etcd", 30.0, false)
        .component("metrics-agent", 30.0, false)
        .build()
        .unwrap()
}

async fn upgrade(client: &Client, name: &str, node: &str, component: &str, version: &str) {
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "nodeName": node, "restartPolicy": "Never", "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "upgrade", "image": "registry.example.com/upgrade:1", "env": [
                {"name": "DROVER_COMPONENT", "value": component},
                {"name": "DROVER_VERSION", "value": version},
                {"name": "DROVER_NODE", "value": node},
            ]}],
        }}},
    }))
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "kube-system");
    jobs.create(&PostParams::default(), &job).await.unwrap();
    eventually(&format!("job {name} to complete"), || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get(name).await.ok()?;
            let done = j
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True");
            done.then_some(())
        }
    })
    .await;
}

/// The long-running pods on `node` (not mirror pods, not Job pods).
async fn workload_pods(client: &Client, node: &str) -> Vec<Pod> {
    let all: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    all.list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            let mirror = p
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
            let always = p
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref())
                .unwrap_or("Always")
                == "Always";
            always && !mirror && p.metadata.deletion_timestamp.is_none()
        })
        .collect()
}

fn containers_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.ready))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_version_fails_its_node_and_holds_its_pods_unready_until_reverted() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let base = sim.health_url();
    assert!(base.starts_with("http://127.0.0.1:") && !base.ends_with('/'), "{base}");
    sim.set_fault(Fault::BadVersion {
        component: "kubelet".into(),
        version: "1.32.0".into(),
        effect: BadEffect::PodsUnready,
        nodes: vec![],
    })
    .unwrap();
    assert_eq!(
        http(&base, "GET", "/nodes/worker-1/healthz", "").await,
        (200, "ok\n".into())
    );
    assert!(query(&base, "kubesim_bad_version").await.is_empty());
    let before = workload_pods(&client, "worker-1").await;
    assert!(
        before.len() >= 2,
        "worker-1 runs web pods and the DaemonSet's: {before:?}"
    );

    // The kubelet goes to the bad version (v1.32.0: a leading v aside).
    upgrade(&client, "kubelet-w1", "worker-1", "kubelet", "v1.32.0").await;
    let (code, body) = http(&base, "GET", "/nodes/worker-1/healthz", "").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body, "unhealthy: kubelet 1.32.0 is a bad version\n");
    assert_eq!(http(&base, "GET", "/nodes/worker-2/healthz", "").await.0, 200);
    let unready = eventually("worker-1's pods to turn unready", || {
        let client = client.clone();
        async move {
            let pods = workload_pods(&client, "worker-1").await;
            pods.iter().all(|p| !ready(p) && !containers_ready(p)).then_some(pods)
        }
    })
    .await;
    assert!(unready.len() >= 2);
    assert!(unready.iter().all(|p| phase(p) == "Running"), "they keep running");
    // Held pods do not keep the cluster from settling.
    sim.wait_settled(WAIT).await.unwrap();
    // A new pod on the bad node starts and stays unready.
    let ds_pod = unready
        .iter()
        .find(|p| p.metadata.namespace.as_deref() == Some("logging"))
        .expect("the DaemonSet's pod on worker-1")
        .clone();
    let logging: Api<Pod> = Api::namespaced(client.clone(), "logging");
    logging
        .delete(ds_pod.metadata.name.as_deref().unwrap(), &Default::default())
        .await
        .unwrap();
    let old_uid = ds_pod.metadata.uid.clone();
    let replacement = eventually("the DaemonSet's replacement pod running on worker-1", || {
        let client = client.clone();
        let old_uid = old_uid.clone();
        async move {
            let pods = workload_pods(&client, "worker-1").await;
            pods.into_iter().find(|p| {
                p.metadata.namespace.as_deref() == Some("logging") && p.metadata.uid != old_uid && phase(p) == "Running"
            })
        }
    })
    .await;
    // Well past podReadySeconds (3 s, 5 ms at this speed).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let again = logging
        .get(replacement.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert!(
        !ready(&again),
        "a new pod on a bad node stays unready: {:?}",
        again.status
    );
    // The upgrade Job's own pod ended normally; the other nodes' pods are Ready.
    assert_eq!(
        phase(&pods(&client, "kube-system", "job-name=kubelet-w1").await[0]),
        "Succeeded"
    );
    assert!(workload_pods(&client, "worker-2").await.iter().all(ready));
    let bad = query(&base, "kubesim_bad_version").await;
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(
        bad[0]["metric"],
        json!({"__name__": "kubesim_bad_version", "node": "worker-1", "component": "kubelet", "version": "1.32.0"})
    );
    assert_eq!(bad[0]["value"][1], "1");
    assert!(bad[0]["value"][0].as_f64().unwrap() > 1.7e9, "a unix timestamp");
    // PodsUnready fires no alert; the node itself stays Ready.
    assert!(
        query(&base, r#"ALERTS{alertname="KubesimBadVersion"}"#)
            .await
            .is_empty()
    );
    assert_eq!(
        query(&base, r#"kubesim_node_ready{node="worker-1"}"#).await[0]["value"][1],
        "1"
    );

    // Rolled back: healthy again, pods Ready.
    upgrade(&client, "kubelet-w1-back", "worker-1", "kubelet", "v1.31.4").await;
    assert_eq!(
        http(&base, "GET", "/nodes/worker-1/healthz", "").await,
        (200, "ok\n".into())
    );
    eventually("worker-1's pods to be Ready again", || {
        let client = client.clone();
        async move {
            let pods = workload_pods(&client, "worker-1").await;
            (!pods.is_empty() && pods.iter().all(|p| ready(p) && containers_ready(p))).then_some(())
        }
    })
    .await;
    assert!(query(&base, "kubesim_bad_version").await.is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_version_under_metric_fires_an_alert_and_leaves_pods_alone() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let base = sim.health_url();
    // As the ConfigMap's YAML would say it: nodes limits it to worker-2.
    let f: Fault = serde_yaml::from_str(
        "{type: BadVersion, component: containerd, version: v1.7.99, effect: Metric, nodes: [worker-2]}",
    )
    .unwrap();
    sim.set_fault(f).unwrap();
    upgrade(&client, "crd-w1", "worker-1", "containerd", "1.7.99").await;
    upgrade(&client, "crd-w2", "worker-2", "containerd", "1.7.99").await;
    assert_eq!(
        http(&base, "GET", "/nodes/worker-1/healthz", "").await.0,
        200,
        "not in nodes"
    );
    let (code, body) = http(&base, "GET", "/nodes/worker-2/healthz", "").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "unhealthy: containerd v1.7.99 is a bad version\n")
    );
    let alerts = query(&base, r#"ALERTS{alertstate="firing",severity="critical"}"#).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        alerts[0]["metric"],
        json!({"__name__": "ALERTS", "alertname": "KubesimBadVersion", "alertstate": "firing", "severity": "critical",
            "node": "worker-2", "component": "containerd", "version": "v1.7.99"})
    );
    assert_eq!(
        query(&base, r#"count(kubesim_bad_version{component="containerd"})"#).await[0]["value"][1],
        "1"
    );
    // Pods are untouched: give the kubelet a pass, then every pod is Ready.
    sim.wait_settled(WAIT).await.unwrap();
    let w2 = workload_pods(&client, "worker-2").await;
    assert!(!w2.is_empty() && w2.iter().all(ready), "{w2:?}");
    // Clearing the fault clears the alert.
    sim.clear_faults();
    assert!(query(&base, "ALERTS").await.is_empty());
    assert_eq!(http(&base, "GET", "/nodes/worker-2/healthz", "").await.0, 200);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pod_and_job_only_versions_count_and_mirror_pods_stay_ready() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let client = sim.client().unwrap();
    let base = sim.health_url();
    for (component, version) in [("etcd", "v3.5.16"), ("metrics-agent", "2.0.0")] {
        sim.set_fault(Fault::BadVersion {
            component: component.into(),
            version: version.into(),
            effect: BadEffect::PodsUnready,
            nodes: vec![],
        })
        .unwrap();
    }
    upgrade(&client, "etcd-cp1", "cp-1", "etcd", "v3.5.16").await;
    let (code, body) = http(&base, "GET", "/nodes/cp-1/healthz", "").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "unhealthy: etcd v3.5.16 is a bad version\n")
    );
    // The static pod itself is not held: drover's verification reads it.
    let etcd: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    eventually("etcd's mirror pod Ready after its restart", || {
        let etcd = etcd.clone();
        async move { etcd.get("etcd-cp-1").await.ok().filter(ready).map(|_| ()) }
    })
    .await;
    // A component nothing on the node shows: what its Job installed.
    upgrade(&client, "agent-w3", "worker-3", "metrics-agent", "2.0.0").await;
    let (code, body) = http(&base, "GET", "/nodes/worker-3/healthz", "").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "unhealthy: metrics-agent 2.0.0 is a bad version\n")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_while_set_and_the_api_speaks_prometheus_json() {
    let sim = Simulation::start(scenario(), 600.0).await.unwrap();
    let base = sim.health_url();
    assert!(query(&base, "ALERTS").await.is_empty());
    let f: Fault = serde_yaml::from_str("{type: AlertFiring, name: EtcdNoLeader}").unwrap();
    assert_eq!(
        f,
        Fault::AlertFiring {
            name: "EtcdNoLeader".into(),
            severity: "critical".into()
        }
    );
    sim.set_fault(f).unwrap();
    sim.set_fault(Fault::AlertFiring {
        name: "DiskFilling".into(),
        severity: "warning".into(),
    })
    .unwrap();
    let critical = query(&base, r#"ALERTS{alertstate="firing",severity="critical"}"#).await;
    assert_eq!(
        critical.iter().map(|r| r["metric"].clone()).collect::<Vec<_>>(),
        [json!({"__name__": "ALERTS", "alertname": "EtcdNoLeader", "alertstate": "firing", "severity": "critical"})]
    );
    let count = query(&base, "count(ALERTS)").await;
    assert_eq!(count.len(), 1, "{count:?}");
    assert_eq!((&count[0]["metric"], &count[0]["value"][1]), (&json!({}), &json!("2")));
    // POST with a form body, and an explicit evaluation time.
    let (code, body) = http(
        &base,
        "POST",
        "/api/v1/query",
        &format!("query={}&time=1700000000.5", encode("ALERTS{severity=\"warning\"} > 0")),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(v["data"]["result"][0]["metric"]["alertname"], "DiskFilling");
    assert_eq!(v["data"]["result"][0]["value"], json!([1700000000.5, "1"]));
    let (_, body) = http(&base, "GET", "/api/v1/query?query=ALERTS&time=2023-11-14T22:13:20Z", "").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][0], json!(1700000000.0), "{body}");
    assert_eq!(http(&base, "GET", "/healthz", "").await, (200, "ok\n".into()));
    // Every node has its readiness series.
    let nodes = query(&base, "kubesim_node_ready == 1").await;
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    // Errors as Prometheus gives them.
    let (code, body) = http(
        &base,
        "GET",
        &format!("/api/v1/query?query={}", encode("rate(ALERTS[5m])")),
        "",
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (code, v["status"].as_str(), v["errorType"].as_str()),
        (400, Some("error"), Some("bad_data"))
    );
    assert!(
        v["error"].as_str().unwrap().contains("rate(...) is not supported"),
        "{body}"
    );
    let (code, body) = http(&base, "GET", "/api/v1/query", "").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = http(&base, "GET", "/api/v1/query?query=ALERTS&time=yesterday", "").await;
    assert!(code == 400 && body.contains("invalid parameter \\\"time\\\""), "{body}");
    assert_eq!(
        http(&base, "GET", "/nodes/nope/healthz", "").await,
        (404, "no node named nope\n".into())
    );
    // A NotReady node is unhealthy too.
    sim.set_node_ready("worker-3", false).await.unwrap();
    eventually("worker-3 to answer 503", || {
        let base = base.clone();
        async move {
            let (code, body) = http(&base, "GET", "/nodes/worker-3/healthz", "").await;
            (code == 503 && body == "unhealthy: node worker-3 is NotReady\n").then_some(())
        }
    })
    .await;
    assert_eq!(
        query(&base, r#"kubesim_node_ready{node="worker-3"}"#).await[0]["value"][1],
        "0"
    );
    sim.clear_faults();
    assert!(query(&base, "ALERTS").await.is_empty());
    sim.shutdown().await;
}
