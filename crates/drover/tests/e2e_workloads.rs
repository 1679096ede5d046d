//! Network plugins and add-ons as they really upgrade, and Kubespray's
//! version variables, through the real `drover` binary on both beds, on the
//! kubespray scenario (examples/clusters/kubespray.yaml: Docker 19.3.15 as
//! the runtime, Calico v3.28.1 with its init containers and the
//! calico-kube-controllers Deployment):
//! - one component naming two workloads, setting every container and init
//!   container whose repository is listed, leaving the others alone;
//! - a manifest from a ConfigMap applied with server-side apply under its
//!   own field manager before the images change, and one holding a kind
//!   drover may not apply refused with nothing changed;
//! - `docker_version: "20.10"` verifying against `docker://20.10.24`;
//! - the Calico component of examples/upgrades/kubespray.yaml run to Ready.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, PodSpec};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use support::*;

const ROLLOUT: Duration = Duration::from_secs(120);

/// `name=image` of every init container and container.
fn images(spec: &PodSpec) -> Vec<String> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or_default()))
        .collect()
}

async fn calico_node(env: &Env) -> DaemonSet {
    Api::<DaemonSet>::namespaced(env.client.clone(), "kube-system")
        .get("calico-node")
        .await
        .unwrap()
}

async fn kube_controllers(env: &Env) -> Deployment {
    Api::<Deployment>::namespaced(env.client.clone(), "kube-system")
        .get("calico-kube-controllers")
        .await
        .unwrap()
}

fn template(d: &DaemonSet) -> PodSpec {
    d.spec.clone().unwrap().template.spec.unwrap()
}

/// The Calico component: both workloads, the repositories of Calico's own
/// images except pod2daemon-flexvol (left at its version, to show that
/// what is not listed is not touched).
fn calico(version: &str) -> Value {
    json!({"name": "calico", "version": version, "upgrade": {"workload": {
        "targets": [
            {"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"},
            {"kind": "Deployment", "namespace": "kube-system", "name": "calico-kube-controllers"}
        ],
        "imageRepositories": ["calico/node", "calico/cni", "calico/kube-controllers"],
        "timeout": "10m"
    }}})
}

fn spec_of(components: Vec<Value>) -> Value {
    json!({"components": components, "strategy": {"maxUnavailable": 1},
           "drain": {"force": true, "deleteEmptyDirData": true, "timeout": "10m"}})
}

/// The pods of calico-node once every one runs the template's images.
async fn pods_at(env: &Env, want: &[String]) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "kube-system");
    within(
        env.timeout(Duration::from_secs(60)),
        "calico-node's pods to run the new images",
        async {
            loop {
                let list = pods
                    .list(&ListParams::default().labels("k8s-app=calico-node"))
                    .await
                    .unwrap()
                    .items;
                let live: Vec<&Pod> = list
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                if !live.is_empty() && live.iter().all(|p| images(p.spec.as_ref().unwrap()) == want) {
                    return list;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        },
    )
    .await
}

on_both_beds! {
    async fn a_component_with_two_workloads_sets_every_matching_container_and_init_container(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "kubespray", 600.0).await;
        let before = template(&calico_node(&env).await);
        assert_eq!(
            images(&before),
            [
                "upgrade-ipam=docker.io/calico/cni:v3.28.1",
                "install-cni=docker.io/calico/cni:v3.28.1",
                "flexvol-driver=docker.io/calico/pod2daemon-flexvol:v3.28.1",
                "mount-bpffs=docker.io/calico/node:v3.28.1",
                "calico-node=docker.io/calico/node:v3.28.1",
            ],
            "the scenario's calico-node"
        );
        let _drover = env.drover(&[]);
        env.apply("calico", spec_of(vec![calico("v3.29.1")])).await;
        let cu = env
            .wait_for("calico", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True"))
            .await;
        let st = cu.status.unwrap();
        let c = st.components.iter().find(|c| c.name == "calico").unwrap();
        assert_eq!((c.updated, c.total, c.message.as_deref()), (2, 2, None), "{c:?}");

        // Every listed repository is at the new tag, the unlisted one is not.
        let after = template(&calico_node(&env).await);
        let want: Vec<String> = [
            "upgrade-ipam=docker.io/calico/cni:v3.29.1",
            "install-cni=docker.io/calico/cni:v3.29.1",
            "flexvol-driver=docker.io/calico/pod2daemon-flexvol:v3.28.1",
            "mount-bpffs=docker.io/calico/node:v3.29.1",
            "calico-node=docker.io/calico/node:v3.29.1",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(images(&after), want);
        let kc = kube_controllers(&env).await;
        let kc_spec = kc.spec.clone().unwrap();
        assert_eq!(
            images(kc_spec.template.spec.as_ref().unwrap()),
            ["calico-kube-controllers=docker.io/calico/kube-controllers:v3.29.1"]
        );
        // Rolled out: the controllers saw the change, and the pods run it.
        let kst = kc.status.unwrap();
        assert_eq!(kst.observed_generation, kc.metadata.generation);
        assert_eq!((kst.updated_replicas, kst.available_replicas), (Some(1), Some(1)));
        let pods = pods_at(&env, &want).await;
        let nodes = Api::<Node>::all(env.client.clone()).list(&ListParams::default()).await.unwrap().items.len();
        assert_eq!(pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).count(), nodes);
        // Nothing else was touched: no node was cordoned, no version changed.
        let report = env.report().await;
        assert!(report.cordoned.is_empty(), "{:?}", report.cordoned);
        assert!(report.pdb_violations.is_empty(), "{:?}", report.pdb_violations);
    }
}

/// A manifest for Calico v3.29.1: calico-node and calico-kube-controllers
/// with a new environment variable each (what a release's manifest changes
/// besides the tags).
const MANIFEST: &str = r#"# Calico v3.29.1's workloads, as its release manifest changes them.
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: calico-node
  namespace: kube-system
spec:
  template:
    spec:
      containers:
        - name: calico-node
          env:
            - {name: FELIX_HEALTHENABLED, value: "true"}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: calico-kube-controllers
  namespace: kube-system
spec:
  template:
    spec:
      containers:
        - name: calico-kube-controllers
          env:
            - {name: ENABLED_CONTROLLERS, value: "node"}
"#;

async fn put_manifest(env: &Env, name: &str, text: &str) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "drover-system"},
        "data": {"calico.yaml": text}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), "drover-system")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

fn with_manifest(version: &str, config_map: &str) -> Value {
    let mut c = calico(version);
    c["upgrade"]["workload"]["manifest"] = json!({"configMap": {"name": config_map, "key": "calico.yaml"}});
    c
}

on_both_beds! {
    async fn a_configmap_manifest_is_applied_with_its_own_field_manager_before_the_images(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "kubespray", 600.0).await;
        // One holding a kind drover may not apply is refused whole: nothing changes.
        let bad = format!("{MANIFEST}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: calico-config, namespace: kube-system}}\ndata: {{veth_mtu: \"1440\"}}\n");
        put_manifest(&env, "calico-bad", &bad).await;
        put_manifest(&env, "calico-v3.29.1", MANIFEST).await;
        let generation = calico_node(&env).await.metadata.generation;
        let _drover = env.drover(&[]);
        env.apply("bad", spec_of(vec![with_manifest("v3.29.1", "calico-bad")])).await;
        let cu = env
            .wait_for("bad", "Stalled with RolloutFailed", ROLLOUT, |cu| stalled_with(cu, "RolloutFailed"))
            .await;
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        assert!(
            message.contains("document 3 is a ConfigMap (v1) calico-config")
                && message.contains("drover applies only Deployment, DaemonSet, StatefulSet of apps/v1"),
            "{message}"
        );
        let ds = calico_node(&env).await;
        assert_eq!(ds.metadata.generation, generation, "the refused manifest changed calico-node");
        assert!(images(&template(&ds)).iter().all(|i| i.ends_with(":v3.28.1")));
        assert!(
            !ds.metadata.managed_fields.iter().flatten().any(|m| m.manager.as_deref() == Some("drover-manifest")),
            "nothing was applied"
        );
        Api::<drover_api::ClusterUpgrade>::all(env.client.clone())
            .delete("bad", &Default::default())
            .await
            .unwrap();
        within(env.timeout(Duration::from_secs(30)), "the refused ClusterUpgrade to go", async {
            while env.get("bad").await.is_some() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;

        env.apply("calico", spec_of(vec![with_manifest("v3.29.1", "calico-v3.29.1")])).await;
        env.wait_for("calico", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True")).await;
        let ds = calico_node(&env).await;
        let t = template(&ds);
        let node = t.containers.iter().find(|c| c.name == "calico-node").unwrap();
        assert_eq!(node.image.as_deref(), Some("docker.io/calico/node:v3.29.1"));
        assert!(
            node.env.iter().flatten().any(|e| e.name == "FELIX_HEALTHENABLED" && e.value.as_deref() == Some("true")),
            "{:?}",
            node.env
        );
        let kc = kube_controllers(&env).await;
        let kc_env = kc.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap_or_default();
        assert!(kc_env.iter().any(|e| e.name == "ENABLED_CONTROLLERS"), "{kc_env:?}");

        // The API server's record: the manifest's fields belong to
        // drover-manifest (server-side apply), the env var among them.
        let applied = ds
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .find(|m| m.manager.as_deref() == Some("drover-manifest"))
            .unwrap_or_else(|| panic!("no drover-manifest entry: {:#?}", ds.metadata.managed_fields));
        assert_eq!(applied.operation.as_deref(), Some("Apply"));
        let fields = serde_json::to_string(&applied.fields_v1).unwrap();
        assert!(fields.contains("FELIX_HEALTHENABLED"), "{fields}");
        // Applied once, before the images: the manifest, then the image
        // change, each one generation (the first and only two changes).
        assert_eq!(ds.metadata.generation, generation.map(|g| g + 2), "one apply and one image change");
        let mark = ds.metadata.annotations.unwrap_or_default()["drover.dev/manifest-applied"].clone();
        assert!(mark.starts_with("v3.29.1 "), "{mark}");
        let report = env.report().await;
        assert!(report.cordoned.is_empty(), "{:?}", report.cordoned);
    }
}

on_both_beds! {
    async fn a_two_part_docker_version_verifies_against_the_patch_release_nodes_report(bed: Bed) {
        let _one = serial().await;
        let mut env = Env::start(bed, "kubespray", 600.0).await;
        let _drover = env.drover(&[]);
        // A series older than what runs is a downgrade, refused with nothing touched.
        env.apply("old", spec_of(vec![job("docker", "18.09")])).await;
        let cu = env
            .wait_for("old", "Stalled with SkewViolation", ROLLOUT, |cu| stalled_with(cu, "SkewViolation"))
            .await;
        let (_, _, message) = condition(&cu, "Stalled").unwrap();
        assert!(message.contains("docker 18.09 is older than the version 4 nodes run now"), "{message}");
        Api::<drover_api::ClusterUpgrade>::all(env.client.clone())
            .delete("old", &Default::default())
            .await
            .unwrap();
        within(env.timeout(Duration::from_secs(30)), "the refused ClusterUpgrade to go", async {
            while env.get("old").await.is_some() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        assert_eq!(env.progress.nodes(), 0, "the refused spec started no node");

        // The series the nodes run is not a downgrade (nor anything to do):
        // docker_version "19.03" against docker://19.3.15 is done at once.
        env.apply("same", spec_of(vec![job("docker", "19.03")])).await;
        env.wait_for("same", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True")).await;
        assert_eq!(env.progress.nodes(), 0, "no node needed the series it runs");
        Api::<drover_api::ClusterUpgrade>::all(env.client.clone())
            .delete("same", &Default::default())
            .await
            .unwrap();
        within(env.timeout(Duration::from_secs(30)), "the finished ClusterUpgrade to go", async {
            while env.get("same").await.is_some() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;

        // docker_version "20.10": nodes run docker://19.3.15, the mirror serves 20.10.24.
        env.apply("docker", spec_of(vec![job("docker", "20.10")])).await;
        let cu = env
            .wait_for("docker", "Ready", ROLLOUT * 2, |cu| is(cu, "Ready", "True"))
            .await;
        let st = cu.status.unwrap();
        assert_eq!(st.progress.as_deref(), Some("4/4"));
        let c = &st.components[0];
        assert_eq!((c.desired.as_str(), c.updated, c.total), ("20.10", 4, 4));
        for n in Api::<Node>::all(env.client.clone()).list(&ListParams::default()).await.unwrap() {
            let info = n.status.unwrap().node_info.unwrap();
            assert_eq!(info.container_runtime_version, "docker://20.10.24", "{:?}", n.metadata.name);
            let verified = n.metadata.annotations.unwrap_or_default();
            assert_eq!(
                verified.get("drover.dev/verified.docker").map(String::as_str),
                Some("20.10"),
                "{:?} was verified against the series", n.metadata.name
            );
        }
        let report = env.report().await;
        assert!(report.cordoned.is_empty(), "{:?}", report.cordoned);
        assert!(report.pdb_violations.is_empty(), "{:?}", report.pdb_violations);
        let back = env.progress.regressions();
        assert!(back.is_empty(), "{back:#?}");
    }
}

on_both_beds! {
    async fn the_kubespray_examples_calico_component_runs_to_ready(bed: Bed) {
        let _one = serial().await;
        let text = std::fs::read_to_string(support::real::repo_root().join("examples/upgrades/kubespray.yaml")).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let calico = doc["spec"]["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "calico")
            .cloned()
            .expect("the example upgrades calico");
        let version = calico["version"].as_str().unwrap().to_string();
        let mut env = Env::start(bed, "kubespray", 600.0).await;
        let _drover = env.drover(&[]);
        env.apply("kubespray-calico", spec_of(vec![calico])).await;
        env.wait_for("kubespray-calico", "Ready", ROLLOUT, |cu| is(cu, "Ready", "True")).await;
        // Completely: every Calico image of both workloads at the example's version.
        let mut all = images(&template(&calico_node(&env).await));
        all.extend(images(kube_controllers(&env).await.spec.unwrap().template.spec.as_ref().unwrap()));
        assert_eq!(all.len(), 6, "{all:?}");
        assert!(all.iter().all(|i| i.ends_with(&format!(":{version}"))), "{all:?}");
        let report = env.report().await;
        assert!(report.cordoned.is_empty(), "{:?}", report.cordoned);
    }
}
