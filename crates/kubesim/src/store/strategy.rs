//! The write rules of each resource, after the real server's registry
//! strategies (`RESTCreateStrategy`, `RESTUpdateStrategy`, the status
//! strategies' reset fields, `RESTGracefulDeleteStrategy`): how a body
//! decodes, what create fills in, what an update keeps from the old object,
//! what validation checks, how deletion goes, and the hooks that change what
//! the server serves. The store runs the same steps for every resource and
//! asks the resource's strategy at each one; [`of`] maps the
//! [`StrategyKind`] a resource carries (set once, in the table of built-ins
//! or from its CRD) to the strategy.
//!
//! A strategy sees only objects and the resource's type, never the store;
//! what it changes in the store (a CRD serving its resource) goes through
//! [`Registry`].

mod crd;
mod custom;
mod job;
mod namespace;
mod node;
mod pdb;
mod pod;
mod service;
mod workload;

use super::options::StoreConfig;
use super::resources::{GroupResource, ResourceType, StrategyKind};
use super::validation::{self, Typed};
use crate::error::{ApiError, Cause};
use crate::meta;
use k8s_openapi::api::{apps, batch, core};
use serde_json::Value;
use std::marker::PhantomData;

/// The strategy of a resource.
pub fn of(kind: StrategyKind) -> &'static dyn Strategy {
    match kind {
        StrategyKind::Default => &Plain,
        StrategyKind::Custom => &custom::Custom,
        StrategyKind::Namespace => &namespace::Namespace,
        StrategyKind::Node => &node::Node,
        StrategyKind::Pod => &pod::Pod,
        StrategyKind::Service => &service::Service,
        StrategyKind::ConfigMap => &TypedOnly::<core::v1::ConfigMap>(PhantomData),
        StrategyKind::Secret => &TypedOnly::<core::v1::Secret>(PhantomData),
        StrategyKind::ServiceAccount => &TypedOnly::<core::v1::ServiceAccount>(PhantomData),
        StrategyKind::Deployment => &workload::Workload::<apps::v1::Deployment>(PhantomData),
        StrategyKind::ReplicaSet => &workload::Workload::<apps::v1::ReplicaSet>(PhantomData),
        StrategyKind::DaemonSet => &workload::Workload::<apps::v1::DaemonSet>(PhantomData),
        StrategyKind::StatefulSet => &workload::Workload::<apps::v1::StatefulSet>(PhantomData),
        StrategyKind::Job => &job::Job,
        StrategyKind::CronJob => &TypedOnly::<batch::v1::CronJob>(PhantomData),
        StrategyKind::PodDisruptionBudget => &pdb::PodDisruptionBudget,
        StrategyKind::CustomResourceDefinition => &crd::CustomResourceDefinition,
    }
}

/// What a deleted object waits for before it is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// Its finalizers (and, graceful, a second delete): the default.
    Finalizers,
    /// Also its contents: it stays terminating, whatever its finalizers,
    /// until the namespace controller has deleted the objects in it, then
    /// removes it (namespaces).
    Contents,
}

/// The indexes a resource's table keeps beside its objects.
#[derive(Debug, Clone, Copy, Default)]
pub struct Indexes {
    /// By `spec.nodeName`, for lists with a `spec.nodeName=` field selector.
    pub node_name: bool,
    /// Parsed `spec.selector`s, for `Store::pdbs_selecting`.
    pub selector: bool,
}

/// Checks beyond the object itself that validation may need.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// The object being replaced, on update.
    pub old: Option<&'a Value>,
    /// `fieldValidation=Strict`.
    pub strict: bool,
    /// The causes the metadata checks already found.
    pub prior: &'a [Cause],
}

/// What a strategy may change in what the server serves.
pub trait Registry {
    /// Whether a resource is served already.
    fn serves(&self, gr: &GroupResource) -> bool;
    /// Serves a resource (again, with this definition).
    fn register(&mut self, t: ResourceType);
    /// Stops serving a resource; its objects are gone.
    fn unregister(&mut self, gr: &GroupResource);
}

/// One resource's rules. Every method has the default of a resource
/// without special rules ([`Plain`]).
pub trait Strategy: Sync {
    /// The typed model a built-in body decodes into (the round trip through
    /// its k8s-openapi type), if kubesim has one for it.
    fn typed(&self) -> Option<Typed> {
        None
    }

    /// Decodes a body as the real server does before anything else: a
    /// wrong JSON type is 400, unknown fields are dropped (400 when strict).
    fn decode(&self, t: &ResourceType, obj: &mut Value, strict: bool) -> Result<(), ApiError> {
        validation::decode_builtin(t, obj, strict, self.typed())
    }

    /// The answer to a body of another kind than the URL's: a built-in
    /// fails to decode (400), as on the real server.
    fn kind_mismatch(&self, t: &ResourceType, kind: &str, obj: &Value) -> ApiError {
        let version = obj["apiVersion"]
            .as_str()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or("v1");
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {}: the object's kind is not {}",
            t.kind, t.kind
        ))
    }

    /// Why a server-side apply body cannot be typed (500), if it cannot;
    /// `schema` is the applied version's schema, for custom resources.
    fn apply_type_error(&self, t: &ResourceType, name: &str, body: &Value, schema: Option<&Value>) -> Option<ApiError> {
        let _ = schema;
        validation::builtin_apply_problem(body, self.typed()).map(|p| validation::apply_type_error(t, name, body, &p))
    }

    /// PrepareForCreate: what the server sets on a new object once its
    /// metadata is filled in. `rv` is the store's resourceVersion before
    /// the write. By default a resource with a status subresource starts
    /// without status.
    fn prepare_for_create(&self, t: &ResourceType, obj: &mut Value, rv: u64) {
        let _ = rv;
        reset_status(t, obj);
    }

    /// PrepareForUpdate of the main resource: with a status subresource,
    /// the old status is kept (a write to the resource cannot change it).
    fn prepare_for_update(&self, t: &ResourceType, old: &Value, new: &mut Value) {
        if t.has_status() {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
    }

    /// PrepareForUpdate of the status subresource: everything but the
    /// status is kept from the old object.
    fn prepare_for_status_update(&self, t: &ResourceType, old: &Value, new: &mut Value) {
        let _ = t;
        let mut n = old.clone();
        match new.get("status") {
            Some(s) => n["status"] = s.clone(),
            None => {
                if let Some(o) = n.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        *new = n;
    }

    /// Whether an update changed what `generation` counts: everything but
    /// metadata (and, with a status subresource, status).
    fn generation_changed(&self, t: &ResourceType, old: &Value, new: &Value) -> bool {
        let status_sub = t.has_status();
        spec_view(new, status_sub) != spec_view(old, status_sub)
    }

    /// Whether an update without a resourceVersion is taken (it is, for
    /// built-ins).
    fn allow_unconditional_update(&self) -> bool {
        true
    }

    /// Whether strategic merge patches apply (they do, for built-ins).
    fn supports_strategic_merge(&self) -> bool {
        true
    }

    /// What is wrong with `metadata.name`, if anything: a DNS subdomain.
    fn validate_name(&self, t: &ResourceType, name: &str) -> Option<Cause> {
        let _ = t;
        meta::validate_name(name, false)
    }

    /// What is wrong with `metadata.generateName`, if anything.
    fn validate_generate_name(&self, t: &ResourceType, prefix: &str) -> Option<Cause> {
        let _ = t;
        meta::validate_generate_name(prefix, false)
    }

    /// Validate (on create and update): the causes the object fails,
    /// after the metadata checks. May prune and default it (custom
    /// resources), or refuse it outright (strict decoding).
    fn validate(&self, t: &ResourceType, obj: &mut Value, cx: &Admission) -> Result<Vec<Cause>, ApiError> {
        let _ = (t, obj, cx);
        Ok(Vec::new())
    }

    /// ValidateUpdate: what an update may not change, after [`validate`](Strategy::validate).
    fn validate_update(&self, t: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
        let _ = (t, old, new);
        Vec::new()
    }

    /// CheckGracefulDelete: the grace period (seconds) a deletion of `obj`
    /// waits for, if this object is deleted gracefully at all; `requested`
    /// is the DeleteOptions' `gracePeriodSeconds`. None: not graceful.
    fn grace_period(&self, obj: &Value, requested: Option<i64>, config: &StoreConfig) -> Option<i64> {
        let _ = (obj, requested, config);
        None
    }

    /// What a deleted object waits for before it is removed.
    fn termination(&self) -> Termination {
        Termination::Finalizers
    }

    /// What the server changes on an object it marks terminating.
    fn prepare_for_delete(&self, obj: &mut Value) {
        let _ = obj;
    }

    /// Just before a new object is stored (not on dry run); may refuse it.
    fn begin_create(&self, obj: &mut Value, registry: &mut dyn Registry) -> Result<(), ApiError> {
        let _ = (obj, registry);
        Ok(())
    }

    /// Just before an updated object is stored (not on dry run, not when
    /// the update removes it).
    fn begin_update(&self, obj: &mut Value, registry: &mut dyn Registry) {
        let _ = (obj, registry);
    }

    /// Just after an object was removed for good (`last`, its last state).
    fn after_delete(&self, last: &Value, registry: &mut dyn Registry) {
        let _ = (last, registry);
    }

    /// The indexes the resource's table keeps.
    fn indexes(&self) -> Indexes {
        Indexes::default()
    }
}

/// The strategy of resources without special rules (events, leases,
/// endpoints, RBAC objects...): every default, no typed model.
pub struct Plain;

impl Strategy for Plain {}

/// A built-in whose only rule is its typed model (configmaps, secrets,
/// service accounts, cron jobs).
pub struct TypedOnly<T>(PhantomData<fn() -> T>);

impl<T: k8s_openapi::Resource + serde::de::DeserializeOwned + serde::Serialize> Strategy for TypedOnly<T> {
    fn typed(&self) -> Option<Typed> {
        Some(validation::round_trip::<T>)
    }
}

/// With a status subresource, a new object starts without status.
fn reset_status(t: &ResourceType, obj: &mut Value) {
    if t.has_status()
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
}

/// The object without the fields whose change does not bump `generation`.
fn spec_view(v: &Value, status_sub: bool) -> Value {
    let mut c = v.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("metadata");
        o.remove("apiVersion");
        o.remove("kind");
        if status_sub {
            o.remove("status");
        }
    }
    c
}
