//! What a resource is: names, scope, versions, subresources, printer columns
//! and (for custom resources) the OpenAPI schema. Built-ins are a table.

use serde_json::Value;
use std::sync::Arc;

/// The storage key of a resource: group and plural (versions share storage).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        GroupResource {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

/// An `additionalPrinterColumns` entry.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// One served version of a resource.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    /// `openAPIV3Schema` of a custom resource version.
    pub schema: Option<Arc<Value>>,
    pub printer_columns: Vec<PrinterColumn>,
    pub status_subresource: bool,
}

/// Everything the server knows about one resource.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    pub versions: Vec<VersionInfo>,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Defined by a CustomResourceDefinition (no strategic merge patch, CEL...).
    pub custom: bool,
    /// The write rules of the resource (see `store::strategy`): set once
    /// here, in the table of built-ins or by [`from_crd`].
    pub strategy: StrategyKind,
}

/// Which strategy (the resource's rules on create, update and delete) a
/// resource follows. Resources without special rules follow `Default`;
/// every custom resource follows `Custom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    Default,
    Custom,
    Namespace,
    Node,
    Pod,
    Service,
    ConfigMap,
    Secret,
    ServiceAccount,
    Deployment,
    ReplicaSet,
    DaemonSet,
    StatefulSet,
    Job,
    CronJob,
    PodDisruptionBudget,
    CustomResourceDefinition,
}

impl ResourceType {
    pub fn gr(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }
    pub fn storage_version(&self) -> &str {
        self.versions
            .iter()
            .find(|v| v.storage)
            .or(self.versions.first())
            .map(|v| v.name.as_str())
            .unwrap_or("v1")
    }
    pub fn version(&self, v: &str) -> Option<&VersionInfo> {
        self.versions.iter().find(|x| x.name == v && x.served)
    }
    pub fn api_version(&self, v: &str) -> String {
        if self.group.is_empty() {
            v.to_string()
        } else {
            format!("{}/{}", self.group, v)
        }
    }
    pub fn has_status(&self) -> bool {
        self.versions.iter().any(|v| v.status_subresource)
    }
}

struct B {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    strategy: StrategyKind,
}

use StrategyKind as S;

const BUILTINS: &[B] = &[
    b("", "v1", "Namespace", "namespaces", false, &["ns"], true, S::Namespace),
    b("", "v1", "Node", "nodes", false, &["no"], true, S::Node),
    b("", "v1", "Pod", "pods", true, &["po"], true, S::Pod),
    b("", "v1", "Event", "events", true, &["ev"], false, S::Default),
    b("", "v1", "Service", "services", true, &["svc"], true, S::Service),
    b("", "v1", "Endpoints", "endpoints", true, &["ep"], false, S::Default),
    b("", "v1", "ConfigMap", "configmaps", true, &["cm"], false, S::ConfigMap),
    b("", "v1", "Secret", "secrets", true, &[], false, S::Secret),
    b(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
        S::ServiceAccount,
    ),
    b(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
        true,
        S::Default,
    ),
    b(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        true,
        S::Default,
    ),
    b(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
        &["rc"],
        true,
        S::Default,
    ),
    b(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        true,
        &["limits"],
        false,
        S::Default,
    ),
    b(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["quota"],
        true,
        S::Default,
    ),
    b(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        false,
        S::Default,
    ),
    b(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        &[],
        false,
        S::Default,
    ),
    b(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        true,
        S::Deployment,
    ),
    b(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        true,
        S::ReplicaSet,
    ),
    b(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        &["ds"],
        true,
        S::DaemonSet,
    ),
    b(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        true,
        S::StatefulSet,
    ),
    b(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        &[],
        false,
        S::Default,
    ),
    b("batch", "v1", "Job", "jobs", true, &[], true, S::Job),
    b("batch", "v1", "CronJob", "cronjobs", true, &["cj"], true, S::CronJob),
    b(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        true,
        S::PodDisruptionBudget,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        true,
        S::CustomResourceDefinition,
    ),
    b(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
        false,
        S::Default,
    ),
    b(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
        false,
        S::Default,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
        false,
        S::Default,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
        false,
        S::Default,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        &[],
        false,
        S::Default,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
        false,
        S::Default,
    ),
];

#[allow(clippy::too_many_arguments)]
const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    strategy: StrategyKind,
) -> B {
    B {
        group,
        version,
        kind,
        plural,
        namespaced,
        short,
        status,
        strategy,
    }
}

/// The built-in resources kubesim serves from the start.
pub fn builtins() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|b| ResourceType {
            group: b.group.to_string(),
            versions: vec![VersionInfo {
                name: b.version.to_string(),
                served: true,
                storage: true,
                schema: None,
                printer_columns: Vec::new(),
                status_subresource: b.status,
            }],
            kind: b.kind.to_string(),
            list_kind: format!("{}List", b.kind),
            plural: b.plural.to_string(),
            singular: b.kind.to_lowercase(),
            namespaced: b.namespaced,
            short_names: b.short.iter().map(|s| s.to_string()).collect(),
            categories: if matches!(
                b.plural,
                "pods"
                    | "services"
                    | "deployments"
                    | "replicasets"
                    | "daemonsets"
                    | "statefulsets"
                    | "jobs"
                    | "cronjobs"
                    | "replicationcontrollers"
            ) {
                vec!["all".to_string()]
            } else {
                Vec::new()
            },
            custom: false,
            strategy: b.strategy,
        })
        .collect()
}

/// Builds the served resource described by a CustomResourceDefinition object.
pub fn from_crd(crd: &Value) -> Option<ResourceType> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let kind = s(names, "kind");
    let plural = s(names, "plural");
    let versions = spec
        .get("versions")?
        .as_array()?
        .iter()
        .map(|v| VersionInfo {
            name: s(v, "name"),
            served: v.get("served").and_then(Value::as_bool).unwrap_or(true),
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
            schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new),
            printer_columns: v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cols| {
                    cols.iter()
                        .map(|c| PrinterColumn {
                            name: s(c, "name"),
                            type_: s(c, "type"),
                            format: s(c, "format"),
                            description: s(c, "description"),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            json_path: s(c, "jsonPath"),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            status_subresource: v.pointer("/subresources/status").is_some(),
        })
        .collect();
    let singular = match s(names, "singular") {
        x if x.is_empty() => kind.to_lowercase(),
        x => x,
    };
    Some(ResourceType {
        group: s(spec, "group"),
        versions,
        list_kind: match s(names, "listKind") {
            x if x.is_empty() => format!("{kind}List"),
            x => x,
        },
        kind,
        plural,
        singular,
        namespaced: s(spec, "scope") != "Cluster",
        short_names: strs(names.get("shortNames")),
        categories: strs(names.get("categories")),
        custom: true,
        strategy: StrategyKind::Custom,
    })
}
