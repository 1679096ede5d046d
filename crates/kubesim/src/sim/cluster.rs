//! Creates a scenario's objects in the store: namespaces, nodes (Ready, with
//! their versions), mirror pods of the static control-plane pods, add-ons,
//! user workloads and PDBs. Controllers and kubelets take it from there.

use super::SimError;
use super::engine::write_opts;
use super::objects::{
    addon_objects, gr_namespaces, gr_nodes, gr_pods, mirror_pod, node_ip, node_object, plan_nodes, workload_objects,
};
use super::scenario::Scenario;
use crate::store::Store;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

/// Creates everything; returns each node's index (its addresses derive from it).
pub fn create(store: &Store, s: &Scenario) -> Result<HashMap<String, usize>, SimError> {
    let now = crate::meta::now();
    let namespaces: BTreeSet<&str> = s.workloads.iter().map(|w| w.namespace.as_str()).collect();
    for ns in namespaces {
        if store.get(&gr_namespaces(), "", ns).is_err() {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            store.create(&gr_namespaces(), "", obj, &write_opts())?;
        }
    }
    let mut index = HashMap::new();
    for p in plan_nodes(s) {
        let node = store.create(&gr_nodes(), "", node_object(&p, &now), &write_opts())?;
        let uid = node["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let ip = node_ip(p.index);
        for (component, version) in p.static_pods() {
            store.create(
                &gr_pods(),
                "kube-system",
                mirror_pod(component, version, &p.name, &uid, &ip),
                &write_opts(),
            )?;
        }
        index.insert(p.name.clone(), p.index);
    }
    let objects = addon_objects(s)
        .into_iter()
        .chain(s.workloads.iter().flat_map(workload_objects));
    for (gr, obj) in objects {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        store.create(&gr, &ns, obj, &write_opts())?;
    }
    Ok(index)
}
