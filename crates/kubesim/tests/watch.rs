//! Watch: order, resourceVersion resumption, 410 Gone, bookmarks, timeouts,
//! selectors, kube::runtime::watcher, and in-process subscriptions.

mod common;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;
use std::time::Duration;

fn cm(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "x"}}, "data": {"v": v}})).unwrap()
}

#[tokio::test]
async fn watch_from_resource_version_delivers_every_event_in_order() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &cm("a", "1")).await.unwrap();
    for i in 2..=5 {
        let p = json!({"data": {"v": i.to_string()}});
        api.patch("a", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap();
    }
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &start)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    let mut last_rv = 0u64;
    while seen.len() < 6 {
        let ev = within(stream.try_next()).await.unwrap().unwrap();
        let (kind, obj) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            other => panic!("unexpected {other:?}"),
        };
        let rv: u64 = obj.metadata.resource_version.unwrap().parse().unwrap();
        assert!(rv > last_rv, "strictly increasing resourceVersions");
        last_rv = rv;
        seen.push(format!("{kind}:{}", obj.data.unwrap()["v"]));
    }
    assert_eq!(
        seen,
        [
            "ADDED:1",
            "MODIFIED:2",
            "MODIFIED:3",
            "MODIFIED:4",
            "MODIFIED:5",
            "DELETED:5"
        ]
    );
}

#[tokio::test]
async fn too_old_resource_version_is_410_gone_and_watcher_relists() {
    let (s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    api.create(&PostParams::default(), &cm("a", "1")).await.unwrap();
    s.store().compact();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap()
        .boxed();
    match within(stream.try_next()).await.unwrap().unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(e.message.starts_with("too old resource version: 1"), "{}", e.message);
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // kube::runtime::watcher re-lists after 410 and keeps going.
    let w = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut names = w.map_ok(|e| match e {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => o.metadata.name.unwrap_or_default(),
        _ => String::new(),
    });
    let first = within(async {
        loop {
            let n = names.try_next().await.unwrap().unwrap();
            if !n.is_empty() {
                return n;
            }
        }
    })
    .await;
    assert_eq!(first, "a");
    s.store().compact();
    s.store().close_watches();
    api.create(&PostParams::default(), &cm("b", "1")).await.unwrap();
    let next = within(async {
        loop {
            let n = names.try_next().await.unwrap().unwrap();
            if n == "b" {
                return n;
            }
        }
    })
    .await;
    assert_eq!(next, "b");
}

#[tokio::test]
async fn bookmarks_and_timeout_end_the_watch() {
    let cfg = kubesim::Config {
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let s = kubesim::ApiServer::start_with(cfg).await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(s.client().unwrap());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .boxed();
    match within(stream.try_next()).await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    // timeoutSeconds=2 closes the stream.
    within(async { while stream.try_next().await.unwrap().is_some() {} }).await;
}

#[tokio::test]
async fn streaming_list_sends_initial_events_then_bookmark() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    api.create(&PostParams::default(), &cm("a", "1")).await.unwrap();
    let mut stream = api
        .watch(&WatchParams::streaming_lists().timeout(5), "")
        .await
        .unwrap()
        .boxed();
    let mut got_added = false;
    loop {
        match within(stream.try_next()).await.unwrap().unwrap() {
            WatchEvent::Added(o) => got_added |= o.metadata.name.as_deref() == Some("a"),
            WatchEvent::Bookmark(b) => {
                assert_eq!(
                    b.metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got_added);
}

#[tokio::test]
async fn selector_watches_see_objects_enter_and_leave() {
    let (_s, c) = server().await;
    let api: Api<Pod> = Api::default_namespaced(c.clone());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().fields("status.phase=Running").timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    running_pod(&c, "default", "p", None, json!({})).await;
    let p = json!({"status": {"phase": "Succeeded"}});
    api.patch_status("p", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    let a = within(stream.try_next()).await.unwrap().unwrap();
    assert!(matches!(a, WatchEvent::Added(_)), "{a:?}");
    let d = within(stream.try_next()).await.unwrap().unwrap();
    assert!(matches!(d, WatchEvent::Deleted(_)), "{d:?}");
}

#[tokio::test]
async fn in_process_subscription_sees_http_writes() {
    let (s, c) = server().await;
    let gr = kubesim::GroupResource::new("", "configmaps");
    let (initial, mut w) = s.store().watch(&gr, None).unwrap();
    assert!(initial.is_empty());
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    api.create(&PostParams::default(), &cm("a", "1")).await.unwrap();
    let ev = within(w.next()).await.unwrap().unwrap();
    assert_eq!(ev.type_, kubesim::EventType::Added);
    assert_eq!(&*ev.object.name, "a");
    assert_eq!(ev.object.value()["data"]["v"], "1");
    // And in-process writes are visible to HTTP clients.
    s.store()
        .modify(&gr, "default", "a", None, |v| v["data"]["v"] = json!("2"))
        .unwrap();
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["v"], "2");
    let ev = within(w.next()).await.unwrap().unwrap();
    assert_eq!(ev.type_, kubesim::EventType::Modified);
}

#[tokio::test]
async fn closing_watches_ends_open_streams() {
    let (s, c) = server().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c);
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    s.store().close_watches();
    let end = within(stream.try_next()).await.unwrap();
    assert!(end.is_none());
}
