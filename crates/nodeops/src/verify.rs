//! Verification: read a component's live version on a node and check the
//! node is healthy. The verified version is recorded on the node
//! (`drover.dev/verified.<component>`, the proof for `jobSucceeded`
//! components) by the controller, in the same patch as the node's next
//! progress record.

use drover_api::Outcome;
use drover_api::Reason;
use drover_api::known::live_matches;
use drover_api::names::annotation;
use drover_api::version::image_tag;
use drover_api::{NodeInfoField, Verify};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::cache::Caches;
use crate::error::Result;

/// A node's Ready condition.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The `nodeInfo` field a check reads.
pub fn node_info_field(node: &Node, field: NodeInfoField) -> Option<String> {
    let info = node.status.as_ref()?.node_info.as_ref()?;
    Some(
        match field {
            NodeInfoField::KubeletVersion => &info.kubelet_version,
            NodeInfoField::KubeProxyVersion => &info.kube_proxy_version,
            NodeInfoField::ContainerRuntimeVersion => &info.container_runtime_version,
            NodeInfoField::OsImage => &info.os_image,
            NodeInfoField::KernelVersion => &info.kernel_version,
        }
        .clone(),
    )
}

/// The version a pod check sees on `node`: the image tag of the selected
/// pod's container, and whether that pod is Ready.
pub async fn pod_version(
    client: &Client,
    node: &str,
    check: &drover_api::PodImageCheck,
) -> Result<Option<(String, bool)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &check.namespace);
    let labels: Vec<String> = check.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let lp = ListParams::default()
        .labels(&labels.join(","))
        .fields(&format!("spec.nodeName={node}"));
    let list = pods.list(&lp).await?;
    let Some(pod) = list.items.iter().find(|p| p.metadata.deletion_timestamp.is_none()) else {
        return Ok(None);
    };
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    let container = match &check.container {
        Some(name) => containers.iter().find(|c| &c.name == name),
        None => containers.first(),
    };
    let tag = container
        .and_then(|c| c.image.as_deref())
        .and_then(image_tag)
        .unwrap_or_default();
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Ok(Some((tag.to_string(), ready)))
}

/// What a verification reads: the live version, as a message if not readable.
pub async fn live_version(
    client: &Client,
    node: &Node,
    component: &str,
    verify: &Verify,
) -> Result<Result<String, String>> {
    if let Some(field) = verify.node_info {
        return Ok(node_info_field(node, field).ok_or_else(|| format!("node reports no nodeInfo.{}", field.as_str())));
    }
    if let Some(check) = &verify.pod {
        return Ok(match pod_version(client, &node.name_any(), check).await? {
            Some((tag, true)) => Ok(tag),
            Some((tag, false)) => Err(format!("{component} pod runs {tag} but is not Ready")),
            None => Err(format!("no {component} pod in {} on the node", check.namespace)),
        });
    }
    // jobSucceeded: the upgrade step only finishes when the Job succeeds.
    let recorded = node
        .annotations()
        .get(&format!("{}{component}", annotation::VERIFIED_PREFIX))
        .cloned();
    Ok(recorded.ok_or_else(|| "the upgrade Job's success was not recorded".to_string()))
}

/// One verification pass: Done when the node is Ready and runs `version`;
/// Waiting before `deadline`; Failed after it.
pub async fn verify(
    client: &Client,
    caches: &Caches,
    node_name: &str,
    component: &str,
    version: &str,
    verify: &Verify,
    deadline: Option<Timestamp>,
) -> Result<Outcome> {
    let nodes: Api<Node> = Api::all(client.clone());
    // A stored copy a moment behind only makes this pass wait: the node's
    // next change wakes the next one.
    let (node, _) = caches.node(&nodes, node_name).await?;
    let waiting = if !node_ready(&node) {
        Some(format!("node {node_name} is NotReady"))
    } else if verify.job_succeeded.is_some() {
        None
    } else {
        match live_version(client, &node, component, verify).await? {
            Ok(live) if live_matches(verify, version, &live) => None,
            Ok(live) => Some(format!("{component} on {node_name} reports {live}, want {version}")),
            Err(why) => Some(why),
        }
    };
    match waiting {
        None => Ok(Outcome::Done),
        Some(message) if deadline.is_some_and(|d| Timestamp::now() >= d) => {
            let reason = if message.ends_with("is NotReady") {
                Reason::NodeNotReady
            } else {
                Reason::VerificationFailed
            };
            Ok(Outcome::Failed {
                reason,
                message: format!("{message} after the component's timeout"),
            })
        }
        Some(message) => Ok(Outcome::Waiting { message }),
    }
}
