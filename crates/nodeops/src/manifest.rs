//! A workload component's manifest: YAML documents kept in a ConfigMap in
//! drover's namespace, applied with server-side apply under their own field
//! manager before the image tags are set, once per version and content.
//!
//! Only Deployments, DaemonSets and StatefulSets that already exist are
//! applied: those are what drover's RBAC may patch. A manifest holding
//! anything else (CRDs, RBAC, ConfigMaps, new objects) is refused whole,
//! before anything is applied, with a message naming the document, since
//! rights to apply arbitrary objects would make drover cluster-admin.

use std::collections::BTreeMap;

use drover_api::WorkloadManifest;
use drover_api::names::{MANIFEST_FIELD_MANAGER, short_hash};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use crate::error::{NodeOpsError, Result, is_not_found};

/// On the component's first workload: the version and content hash of the
/// manifest last applied for it (`v3.29.1 1a2b3c4d5e6f`).
pub const APPLIED_ANNOTATION: &str = "drover.dev/manifest-applied";

/// The kinds a manifest may hold (apps/v1), as drover's RBAC allows.
pub const KINDS: [&str; 3] = ["Deployment", "DaemonSet", "StatefulSet"];

/// One document of the manifest, checked.
struct Doc {
    gvk: GroupVersionKind,
    namespace: String,
    name: String,
    body: Value,
}

impl std::fmt::Display for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.gvk.kind, self.namespace, self.name)
    }
}

/// The documents of `text`, or why they cannot be applied.
fn documents(text: &str, at: &str) -> std::result::Result<Vec<Doc>, String> {
    let mut out = Vec::new();
    for (i, d) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let v: Value =
            serde::Deserialize::deserialize(d).map_err(|e| format!("{at}: document {n} is not YAML: {e}"))?;
        if v.is_null() {
            continue;
        }
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
        let (Some(api_version), Some(kind), Some(name)) = (s("/apiVersion"), s("/kind"), s("/metadata/name")) else {
            return Err(format!("{at}: document {n} needs apiVersion, kind and metadata.name"));
        };
        if api_version != "apps/v1" || !KINDS.contains(&kind.as_str()) {
            return Err(format!(
                "{at}: document {n} is a {kind} ({api_version}) {name}; drover applies only {} of apps/v1 that already exist (its RBAC allows no more); apply the rest yourself before the upgrade",
                KINDS.join(", ")
            ));
        }
        let Some(namespace) = s("/metadata/namespace") else {
            return Err(format!("{at}: document {n} ({kind} {name}) needs metadata.namespace"));
        };
        out.push(Doc {
            gvk: GroupVersionKind::gvk("apps", "v1", &kind),
            namespace,
            name,
            body: v,
        });
    }
    if out.is_empty() {
        return Err(format!("{at} holds no documents"));
    }
    Ok(out)
}

/// A manifest read and checked, ready to apply.
pub struct Ready {
    at: String,
    mark: String,
    docs: Vec<(Doc, Api<DynamicObject>)>,
}

/// Where a manifest stands for `version`.
pub enum Prepared {
    Already,
    Ready(Ready),
    Refused(String),
}

/// Read and check the manifest, unless the first workload records it
/// applied for `version` with this content. Every document is resolved
/// (discovery) and found before any is applied, so a refused manifest
/// changes nothing.
pub async fn prepare(
    client: &Client,
    namespace: &str,
    m: &WorkloadManifest,
    annotations: &BTreeMap<String, String>,
    version: &str,
) -> Result<Prepared> {
    let cm = &m.config_map;
    let at = format!("the manifest in ConfigMap {namespace}/{} key {}", cm.name, cm.key);
    let found = match Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get(&cm.name)
        .await
    {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => {
            return Ok(Prepared::Refused(format!(
                "{at}: ConfigMap {namespace}/{} does not exist",
                cm.name
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(text) = found.data.as_ref().and_then(|d| d.get(&cm.key)) else {
        return Ok(Prepared::Refused(format!("{at}: the ConfigMap has no key {}", cm.key)));
    };
    let mark = format!("{version} {}", short_hash(text));
    if annotations.get(APPLIED_ANNOTATION) == Some(&mark) {
        return Ok(Prepared::Already);
    }
    let parsed = match documents(text, &at) {
        Ok(d) => d,
        Err(why) => return Ok(Prepared::Refused(why)),
    };
    let mut docs = Vec::new();
    for d in parsed {
        let (ar, _) = kube::discovery::pinned_kind(client, &d.gvk).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &d.namespace, &ar);
        if api.get_opt(&d.name).await?.is_none() {
            return Ok(Prepared::Refused(format!(
                "{at}: {d} does not exist; drover applies manifests only to workloads that exist (its RBAC cannot create them)"
            )));
        }
        docs.push((d, api));
    }
    Ok(Prepared::Ready(Ready { at, mark, docs }))
}

/// Apply a checked manifest with server-side apply (force, field manager
/// `drover-manifest`). Returns what the message says was applied and the
/// merge patch that records it on the component's first workload (the
/// caller writes it, so that one version and content is applied once).
pub async fn apply(ready: Ready, version: &str) -> Result<(String, Value)> {
    let Ready { at, mark, docs } = ready;
    let pp = PatchParams::apply(MANIFEST_FIELD_MANAGER).force();
    for (d, api) in &docs {
        api.patch(&d.name, &pp, &Patch::Apply(&d.body))
            .await
            .map_err(|e| NodeOpsError::Invalid(format!("{at}: applying {d}: {}", crate::error::api_text(&e))))?;
    }
    let record = json!({"metadata": {"annotations": {APPLIED_ANNOTATION: mark}}});
    let names: Vec<String> = docs.iter().map(|(d, _)| d.to_string()).collect();
    let message = format!(
        "applied {at} for {version} ({}); setting the images next",
        names.join(", ")
    );
    Ok((message, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_checked_before_anything_is_applied() {
        let ok = "---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: calico-node, namespace: kube-system}\n---\n\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: calico-kube-controllers, namespace: kube-system}\n";
        let docs = documents(ok, "m").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].to_string(), "Deployment kube-system/calico-kube-controllers");

        let crd = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a, namespace: b}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: x.crd.projectcalico.org}\n";
        let why = documents(crd, "m").err().unwrap();
        assert!(why.contains("document 2 is a CustomResourceDefinition"), "{why}");
        assert!(why.contains("Deployment, DaemonSet, StatefulSet"), "{why}");

        let no_ns = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a}\n";
        assert!(
            documents(no_ns, "m")
                .err()
                .unwrap()
                .contains("needs metadata.namespace")
        );
        assert!(documents("", "m").err().unwrap().contains("holds no documents"));
        assert!(documents("a: [", "m").err().unwrap().contains("is not YAML"));
    }
}
