//! The pods check: every live pod a selector picks (on the node, or
//! anywhere) is Ready, and none restarted more than `maxRestarts` times
//! since the node's uncordon.

use drover_api::gates::PodsCheck;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::core::Selector;

use super::{CheckAnswer, HealthRequest};
use crate::error::Result;

/// "1 time", "3 times".
fn times(n: i64) -> String {
    match n {
        1 => "1 time".into(),
        n => format!("{n} times"),
    }
}

/// Container restarts of `pod` since `since`: all of them for a pod created
/// then or later; for an older pod, a container's count when its last
/// termination ended after `since` (the API keeps no history of restarts).
/// The API's times are whole seconds: one in the uncordon's second counts
/// as after it, so a restart is never missed.
fn restarts_since(pod: &Pod, since: Timestamp) -> i64 {
    let since = Timestamp::from_second(since.as_second()).unwrap_or(since);
    let Some(status) = &pod.status else { return 0 };
    let all = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten());
    let created_since = pod.metadata.creation_timestamp.as_ref().is_some_and(|c| c.0 >= since);
    all.filter(|cs| {
        created_since
            || cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.finished_at.as_ref())
                .is_some_and(|f| f.0 >= since)
    })
    .map(|cs| i64::from(cs.restart_count))
    .sum()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub(super) async fn check(client: &Client, req: &HealthRequest<'_>, c: &PodsCheck) -> Result<CheckAnswer> {
    let selector = match Selector::try_from(c.selector.clone()) {
        Ok(s) => s,
        Err(e) => return Ok(CheckAnswer::fail(format!("pods.selector: {e}"))),
    };
    let api: Api<Pod> = match &c.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut lp = ListParams::default().labels_from(&selector);
    if c.on_node {
        lp = lp.fields(&format!("spec.nodeName={}", req.node));
    }
    let list = api.list(&lp).await?;
    let mut live: Vec<&Pod> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .collect();
    let key = |p: &Pod| (p.metadata.namespace.clone(), p.metadata.name.clone());
    live.sort_by_key(|p| key(p));

    let shown = selector.to_string();
    let mut scope = if shown.is_empty() {
        String::new()
    } else {
        format!(" {shown}")
    };
    match &c.namespace {
        Some(ns) => scope.push_str(&format!(" in {ns}")),
        None => scope.push_str(" in any namespace"),
    }
    if c.on_node {
        scope.push_str(&format!(" on {}", req.node));
    }
    if live.is_empty() {
        return Ok(CheckAnswer::pass(format!("no pods match{scope}")));
    }
    let name = |p: &Pod| {
        let at = match p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(n) => format!(" on {n}"),
            None => String::new(),
        };
        format!(
            "pod {}/{}{at}",
            p.metadata.namespace.as_deref().unwrap_or_default(),
            p.metadata.name.as_deref().unwrap_or_default()
        )
    };
    let max = i64::from(c.max_restarts);
    if let Some(since) = req.since
        && let Some((p, n)) = live
            .iter()
            .map(|p| (p, restarts_since(p, since)))
            .find(|(_, n)| *n > max)
    {
        return Ok(CheckAnswer::fail(format!(
            "{} restarted {} since the uncordon (at most {max})",
            name(p),
            times(n)
        )));
    }
    let unready: Vec<&&Pod> = live.iter().filter(|p| !pod_ready(p)).collect();
    if let Some(p) = unready.first() {
        let more = match unready.len() {
            1 => String::new(),
            n => format!(", and {} more of the {} matching", n - 1, live.len()),
        };
        return Ok(CheckAnswer::fail(format!("{} is not Ready{more}", name(p))));
    }
    let count = match live.len() {
        1 => "1 pod".to_string(),
        n => format!("{n} pods"),
    };
    Ok(CheckAnswer::pass(match req.since {
        Some(_) => format!(
            "{count}{scope} Ready, none restarted more than {} since the uncordon",
            times(max)
        ),
        None => format!("{count}{scope} Ready"),
    }))
}
