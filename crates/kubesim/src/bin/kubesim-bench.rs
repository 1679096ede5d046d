//! Load benchmark: 10,000 nodes and 300,000 pods, then list latency, the time
//! for one watch event to reach 100 HTTP watchers, and peak memory.
//!
//! `cargo run --release -p kubesim --bin kubesim-bench [-- --nodes N --pods-per-node M]`
//!
//! With `--scenario FILE [--drain N] [--speed S]` it measures a simulated
//! cluster instead (`kubesim::sim::bench`).

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kubesim::{GroupResource, WriteOptions};
use serde_json::json;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--scenario") {
        let opts = kubesim::sim::bench::BenchOptions {
            scenario: args.get(i + 1).map(Into::into).unwrap_or_default(),
            speed: arg("--speed", 60) as f64,
            drain: arg("--drain", 500),
            idle: Duration::from_secs(arg("--idle", 10) as u64),
            concurrency: arg("--concurrency", 64),
        };
        return kubesim::sim::bench::run(opts).await;
    }
    let nodes = arg("--nodes", 10_000);
    let per_node = arg("--pods-per-node", 30);
    let watchers = arg("--watchers", 100);
    let server = kubesim::ApiServer::start().await?;
    let store = server.store().clone();
    let client = server.client()?;
    println!(
        "kubesim-bench: {nodes} nodes, {} pods, {watchers} watchers",
        nodes * per_node
    );

    // Load through the in-process store (the same write path HTTP uses).
    let t = Instant::now();
    let node_gr = GroupResource::new("", "nodes");
    let pod_gr = GroupResource::new("", "pods");
    let wo = WriteOptions {
        field_manager: Some("bench".into()),
        ..Default::default()
    };
    for n in 0..nodes {
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{n:05}"), "labels": {"zone": format!("z{}", n % 3)}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.31.0"}}});
        store.create(&node_gr, "", node, &wo)?;
    }
    let nodes_loaded = t.elapsed();
    for n in 0..nodes {
        for p in 0..per_node {
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod-{n:05}-{p:02}"), "namespace": "default", "labels": {"app": format!("app-{}", p % 10)}},
                "spec": {"nodeName": format!("node-{n:05}"), "containers": [{"name": "c", "image": "registry.example.com/app:1"}]}});
            store.create(&pod_gr, "default", pod, &wo)?;
        }
    }
    let load = t.elapsed();
    println!(
        "load: nodes {} ; nodes+pods {:.2} s ({:.0} objects/s)",
        ms(nodes_loaded),
        load.as_secs_f64(),
        (nodes + nodes * per_node) as f64 / load.as_secs_f64()
    );

    println!("memory after load (server only, VmRSS): {:.0} MiB", rss_mib());

    // List latency over HTTP through kube-rs (deserialising into typed objects).
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let nodes_api: Api<Node> = Api::all(client.clone());
    let time = |f: std::pin::Pin<Box<dyn std::future::Future<Output = usize>>>| async move {
        let t = Instant::now();
        let n = f.await;
        (t.elapsed(), n)
    };
    let (d, n) = time(Box::pin(async {
        pods.list(&ListParams::default()).await.unwrap().items.len()
    }))
    .await;
    println!("list all pods (typed, kube-rs): {} ({n} items)", ms(d));
    let t = Instant::now();
    let raw = client
        .request_text(axum::http::Request::get("/api/v1/namespaces/default/pods").body(Vec::new())?)
        .await?;
    println!(
        "list all pods (raw bytes): {} ({} MiB)",
        ms(t.elapsed()),
        raw.len() / (1 << 20)
    );
    drop(raw);
    let (d, n) = time(Box::pin(async {
        nodes_api.list(&ListParams::default()).await.unwrap().items.len()
    }))
    .await;
    println!("list all nodes (typed): {} ({n} items)", ms(d));
    let mut samples = Vec::new();
    for i in 0..50 {
        let lp = ListParams::default().fields(&format!("spec.nodeName=node-{:05}", (i * 197) % nodes));
        let t = Instant::now();
        let l = pods.list(&lp).await?;
        samples.push(t.elapsed());
        assert_eq!(l.items.len(), per_node);
    }
    println!(
        "list pods on one node (fieldSelector spec.nodeName): p50 {} p99 {}",
        ms(percentile(&mut samples, 0.5)),
        ms(percentile(&mut samples, 0.99))
    );
    let mut samples = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        pods.list(&ListParams::default().limit(500)).await?;
        samples.push(t.elapsed());
    }
    println!("list pods page (limit=500): p50 {}", ms(percentile(&mut samples, 0.5)));
    let t = Instant::now();
    let mut lp = ListParams::default().limit(500);
    let mut total = 0;
    loop {
        let page = pods.list(&lp).await?;
        total += page.items.len();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = ListParams::default().limit(500).continue_token(&c),
            None => break,
        }
    }
    println!(
        "list all pods in pages of 500 (typed): {} ({total} items)",
        ms(t.elapsed())
    );
    let mut samples = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        pods.list(&ListParams::default().labels("app=app-3")).await?;
        samples.push(t.elapsed());
    }
    println!(
        "list pods by label (1/10 of pods): p50 {}",
        ms(percentile(&mut samples, 0.5))
    );

    // Watch fan-out: one node change reaching every HTTP watcher.
    let rv = nodes_api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    for w in 0..watchers {
        let api = nodes_api.clone();
        let tx = tx.clone();
        let rv = rv.clone();
        let stream = api.watch(&WatchParams::default().timeout(290), &rv).await?;
        tokio::spawn(async move {
            let mut s = stream.boxed();
            while let Ok(Some(ev)) = s.try_next().await {
                if let WatchEvent::Modified(n) = ev {
                    let gen_label = n
                        .metadata
                        .labels
                        .unwrap_or_default()
                        .get("round")
                        .cloned()
                        .unwrap_or_default();
                    let round: usize = gen_label.parse().unwrap_or(0);
                    if tx.send((round, Instant::now())).is_err() {
                        return;
                    }
                }
                let _ = w;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut fanout = Vec::new();
    for round in 1..=20usize {
        let t = Instant::now();
        store.modify(&node_gr, "", "node-00042", None, |v| {
            v["metadata"]["labels"]["round"] = json!(round.to_string());
        })?;
        let mut got = 0;
        let mut last = t;
        while got < watchers {
            let (r, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("watchers ended"))?;
            if r == round {
                got += 1;
                last = at;
            }
        }
        fanout.push(last - t);
    }
    println!(
        "watch event to all {watchers} watchers: p50 {} p99 {} max {}",
        ms(percentile(&mut fanout, 0.5)),
        ms(percentile(&mut fanout, 0.99)),
        ms(*fanout.iter().max().unwrap())
    );
    println!(
        "peak memory (VmHWM, server and clients in one process): {:.0} MiB",
        peak_rss_mib()
    );
    server.shutdown().await;
    Ok(())
}
