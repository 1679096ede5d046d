//! Loads a scenario into a real cluster (create, or leave alone what
//! exists) and waits until it is Running and Ready.

use super::contract::upgrade_pod;
use super::objects::{Object, Plan, mirror_pods};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Creates `obj` unless it exists (409 AlreadyExists); returns the object as stored.
async fn create_or_keep<K>(api: Api<K>, obj: &K) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), obj).await {
        Ok(o) => Ok(o),
        Err(kube::Error::Api(s)) if s.code == 409 => api
            .get(&name)
            .await
            .map_err(|e| anyhow::anyhow!("reading existing {name}: {e}")),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

async fn create_object(client: &Client, obj: &Object) -> anyhow::Result<()> {
    let ns = |m: &kube::api::ObjectMeta| m.namespace.clone().unwrap_or_else(|| "default".into());
    let c = client.clone();
    let res = match obj {
        Object::Namespace(o) => create_or_keep(Api::<Namespace>::all(c), o).await.map(drop),
        Object::Deployment(o) => create_or_keep(Api::<Deployment>::namespaced(c, &ns(&o.metadata)), o)
            .await
            .map(drop),
        Object::StatefulSet(o) => create_or_keep(Api::<StatefulSet>::namespaced(c, &ns(&o.metadata)), o)
            .await
            .map(drop),
        Object::DaemonSet(o) => create_or_keep(Api::<DaemonSet>::namespaced(c, &ns(&o.metadata)), o)
            .await
            .map(drop),
        Object::Pod(o) => create_or_keep(Api::<Pod>::namespaced(c, &ns(&o.metadata)), o)
            .await
            .map(drop),
        Object::Pdb(o) => create_or_keep(Api::<PodDisruptionBudget>::namespaced(c, &ns(&o.metadata)), o)
            .await
            .map(drop),
        Object::Service(o) => create_or_keep(Api::<Service>::namespaced(c, &ns(&o.metadata)), o)
            .await
            .map(drop),
    };
    res.map_err(|e| anyhow::anyhow!("creating {}: {e}", obj.describe()))
}

/// Creates namespaces, nodes (then their status), mirror pods, add-ons and
/// workloads. Objects that exist are left alone; a node whose status was
/// never written (no `nodeInfo.kubeletVersion`) gets it.
pub async fn load(client: &Client, plan: &Plan) -> anyhow::Result<()> {
    for ns in &plan.namespaces {
        create_object(client, ns).await?;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for n in &plan.nodes {
        let name = &n.plan.name;
        let stored = create_or_keep(nodes.clone(), &n.node)
            .await
            .map_err(|e| anyhow::anyhow!("creating node {name}: {e}"))?;
        let has_info = stored
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .is_some_and(|i| !i.kubelet_version.is_empty());
        if !has_info {
            let patch = json!({"status": n.status});
            nodes
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| anyhow::anyhow!("writing the status of node {name}: {e}"))?;
        }
        let uid = stored.metadata.uid.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
        for pod in mirror_pods(&n.plan, &uid).map_err(|e| anyhow::anyhow!(e))? {
            let pname = pod.metadata.name.clone().unwrap_or_default();
            create_or_keep(pods.clone(), &pod)
                .await
                .map_err(|e| anyhow::anyhow!("creating mirror pod kube-system/{pname}: {e}"))?;
        }
    }
    for obj in &plan.objects {
        create_object(client, obj).await?;
    }
    Ok(())
}

/// What keeps a pod from counting as ready (None: bound, Running and Ready,
/// or finished, or an upgrade pod).
pub fn pod_problem(p: &Pod) -> Option<String> {
    let v = serde_json::to_value(p).ok()?;
    if upgrade_pod(&v).is_some() {
        return None;
    }
    let name = format!(
        "pod {}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    );
    let phase = v["status"]["phase"].as_str().unwrap_or("Pending");
    if matches!(phase, "Succeeded" | "Failed") {
        return None;
    }
    if v["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        return Some(format!("{name} is not bound to a node"));
    }
    if phase != "Running" {
        return Some(format!("{name} is {phase}"));
    }
    let ready = v["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    (!ready).then(|| format!("{name} is not Ready"))
}

fn generation_problem(what: &str, generation: Option<i64>, observed: Option<i64>) -> Option<String> {
    match (generation, observed) {
        (Some(g), Some(o)) if o >= g => None,
        _ => Some(format!("{what} is not observed yet")),
    }
}

pub fn deployment_problem(d: &Deployment) -> Option<String> {
    let what = format!(
        "Deployment {}/{}",
        d.metadata.namespace.as_deref().unwrap_or(""),
        d.metadata.name.as_deref().unwrap_or("")
    );
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    generation_problem(&what, d.metadata.generation, st.observed_generation).or_else(|| {
        let ready = st.ready_replicas.unwrap_or(0);
        let updated = st.updated_replicas.unwrap_or(0);
        (ready < want || updated < want).then(|| format!("{what} has {ready}/{want} replicas ready"))
    })
}

pub fn statefulset_problem(s: &StatefulSet) -> Option<String> {
    let what = format!(
        "StatefulSet {}/{}",
        s.metadata.namespace.as_deref().unwrap_or(""),
        s.metadata.name.as_deref().unwrap_or("")
    );
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = s.status.clone().unwrap_or_default();
    generation_problem(&what, s.metadata.generation, st.observed_generation).or_else(|| {
        let ready = st.ready_replicas.unwrap_or(0);
        (ready < want).then(|| format!("{what} has {ready}/{want} replicas ready"))
    })
}

pub fn daemonset_problem(d: &DaemonSet) -> Option<String> {
    let what = format!(
        "DaemonSet {}/{}",
        d.metadata.namespace.as_deref().unwrap_or(""),
        d.metadata.name.as_deref().unwrap_or("")
    );
    let st = d.status.clone().unwrap_or_default();
    generation_problem(&what, d.metadata.generation, st.observed_generation).or_else(|| {
        let want = st.desired_number_scheduled;
        (st.number_ready < want || st.current_number_scheduled < want)
            .then(|| format!("{what} has {}/{want} pods ready", st.number_ready))
    })
}

pub fn pdb_problem(p: &PodDisruptionBudget) -> Option<String> {
    let what = format!(
        "PodDisruptionBudget {}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    );
    let observed = p.status.as_ref().and_then(|s| s.observed_generation);
    match (p.metadata.generation, observed) {
        (Some(g), Some(o)) if o == g => None,
        _ => Some(format!("{what} is not observed yet")),
    }
}

/// Everything not ready yet, in the scenario's namespaces.
async fn problems(client: &Client, plan: &Plan) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let namespaces: BTreeSet<String> = plan
        .namespaces
        .iter()
        .filter_map(|n| match n {
            Object::Namespace(n) => n.metadata.name.clone(),
            _ => None,
        })
        .collect();
    let lp = ListParams::default();
    for ns in &namespaces {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        out.extend(pods.list(&lp).await?.items.iter().filter_map(pod_problem));
    }
    for obj in &plan.objects {
        let c = client.clone();
        let (ns, name) = match obj {
            Object::Deployment(o) => (&o.metadata.namespace, &o.metadata.name),
            Object::StatefulSet(o) => (&o.metadata.namespace, &o.metadata.name),
            Object::DaemonSet(o) => (&o.metadata.namespace, &o.metadata.name),
            Object::Pdb(o) => (&o.metadata.namespace, &o.metadata.name),
            _ => continue,
        };
        let ns = ns.as_deref().unwrap_or("default");
        let name = name.as_deref().unwrap_or("");
        let missing = || format!("{} does not exist", obj.describe());
        let problem = match obj {
            Object::Deployment(_) => Api::<Deployment>::namespaced(c, ns)
                .get_opt(name)
                .await?
                .map_or_else(|| Some(missing()), |o| deployment_problem(&o)),
            Object::StatefulSet(_) => Api::<StatefulSet>::namespaced(c, ns)
                .get_opt(name)
                .await?
                .map_or_else(|| Some(missing()), |o| statefulset_problem(&o)),
            Object::DaemonSet(_) => Api::<DaemonSet>::namespaced(c, ns)
                .get_opt(name)
                .await?
                .map_or_else(|| Some(missing()), |o| daemonset_problem(&o)),
            Object::Pdb(_) => Api::<PodDisruptionBudget>::namespaced(c, ns)
                .get_opt(name)
                .await?
                .map_or_else(|| Some(missing()), |o| pdb_problem(&o)),
            _ => None,
        };
        out.extend(problem);
    }
    Ok(out)
}

/// Polls until nothing is left to wait for, at most `timeout`.
pub async fn wait_ready(client: &Client, plan: &Plan, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last: Vec<String> = vec!["nothing checked yet".into()];
    loop {
        match problems(client, plan).await {
            Ok(p) if p.is_empty() => return Ok(()),
            Ok(p) => last = p,
            Err(e) => last = vec![format!("cannot check readiness: {e}")],
        }
        if Instant::now() >= deadline {
            let shown: Vec<&str> = last.iter().take(10).map(String::as_str).collect();
            let more = last.len().saturating_sub(shown.len());
            anyhow::bail!(
                "the scenario's cluster is not ready after {}s: {}{}",
                timeout.as_secs(),
                shown.join("; "),
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            );
        }
        tokio::time::sleep(Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from<T: DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_readiness() {
        let base = json!({"metadata": {"name": "a", "namespace": "n"}, "spec": {"containers": [{"name": "c"}]}});
        let mut v = base.clone();
        assert_eq!(pod_problem(&from(v.clone())).unwrap(), "pod n/a is not bound to a node");
        v["spec"]["nodeName"] = json!("w");
        assert_eq!(pod_problem(&from(v.clone())).unwrap(), "pod n/a is Pending");
        v["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]});
        assert_eq!(pod_problem(&from(v.clone())).unwrap(), "pod n/a is not Ready");
        v["status"]["conditions"][0]["status"] = json!("True");
        assert_eq!(pod_problem(&from(v.clone())), None);
        v["status"] = json!({"phase": "Succeeded"});
        assert_eq!(pod_problem(&from(v)), None);
    }

    #[test]
    fn workload_readiness() {
        let d = json!({"metadata": {"name": "web", "namespace": "shop", "generation": 2}, "spec": {"replicas": 3, "selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 3}});
        assert_eq!(
            deployment_problem(&from(d.clone())).unwrap(),
            "Deployment shop/web is not observed yet"
        );
        let mut d2 = d.clone();
        d2["status"]["observedGeneration"] = json!(2);
        d2["status"]["readyReplicas"] = json!(2);
        assert_eq!(
            deployment_problem(&from(d2.clone())).unwrap(),
            "Deployment shop/web has 2/3 replicas ready"
        );
        d2["status"]["readyReplicas"] = json!(3);
        assert_eq!(deployment_problem(&from(d2)), None);

        let ds = json!({"metadata": {"name": "x", "namespace": "k", "generation": 1}, "spec": {"selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "numberMisscheduled": 0}});
        assert_eq!(
            daemonset_problem(&from(ds.clone())).unwrap(),
            "DaemonSet k/x has 1/2 pods ready"
        );
        let mut ds2 = ds;
        ds2["status"]["numberReady"] = json!(2);
        assert_eq!(daemonset_problem(&from(ds2)), None);

        let pdb = json!({"metadata": {"name": "p", "namespace": "n", "generation": 1}, "spec": {}});
        assert!(pdb_problem(&from(pdb.clone())).is_some());
        let mut pdb2 = pdb;
        pdb2["status"] = json!({"observedGeneration": 1, "currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0});
        assert_eq!(pdb_problem(&from(pdb2)), None);
    }
}
