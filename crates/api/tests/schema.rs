//! The CRD's own validation (CEL `x-kubernetes-validations` with their
//! messages), evaluated client-side with kube's CEL evaluator, and the same
//! specs through the Rust validation drover runs again at reconcile time.

use drover_api::ClusterUpgradeSpec;
use drover_api::validate::validate;
use kube::core::cel::Validator;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = drover_api::crd::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "drover.dev/v1alpha1", "kind": "ClusterUpgrade", "metadata": {"name": "x"}, "spec": spec})
}

fn good() -> Value {
    json!({
        "components": [
            {"name": "containerd", "version": "1.7.23", "upgrade": {"job": {"image": "example.com/up:1", "timeout": "20m"}}},
            {"name": "kubelet", "version": "v1.32.0", "upgrade": {"job": {"image": "example.com/up:1"}}},
            {"name": "calico", "version": "v3.29.0", "upgrade": {"workload": {"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"}}}
        ],
        "strategy": {"maxUnavailable": "20%", "soak": "5m"},
        "drain": {"timeout": "10m", "onTimeout": "SkipNode"},
        "windows": [{"days": ["Saturday"], "start": "22:00", "end": "04:00", "timeZone": "Europe/Berlin"}]
    })
}

/// The CEL messages for `spec`, after the Rust validation agrees it is bad.
fn cel_errors(spec: Value) -> Vec<String> {
    let errors = Validator::new()
        .validate(&schema(), &object(spec.clone()), None)
        .map(|_| vec![])
        .unwrap_or_else(|e| e.into_vec().into_iter().map(|e| e.message).collect());
    let typed: Result<ClusterUpgradeSpec, _> = serde_json::from_value(spec);
    if let Ok(typed) = typed {
        assert_eq!(
            errors.is_empty(),
            validate(&typed).is_ok(),
            "CEL {errors:?} and Rust {:?} disagree",
            validate(&typed)
        );
    }
    errors
}

fn with(path: &[&str], value: Value) -> Value {
    let mut spec = good();
    let mut at = &mut spec;
    for p in &path[..path.len() - 1] {
        at = match p.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*p],
        };
    }
    let last = path[path.len() - 1];
    match last.parse::<usize>() {
        Ok(i) => at[i] = value,
        Err(_) => at[last] = value,
    }
    spec
}

fn assert_refused(spec: Value, message: &str) {
    let errors = cel_errors(spec);
    assert!(errors.iter().any(|e| e == message), "want {message:?} among {errors:?}");
}

#[test]
fn a_good_spec_passes_both() {
    assert_eq!(cel_errors(good()), Vec::<String>::new());
    let typed: ClusterUpgradeSpec = serde_json::from_value(good()).unwrap();
    assert_eq!(validate(&typed), Ok(()));
}

#[test]
fn duplicate_component_names() {
    let mut spec = good();
    spec["components"][1]["name"] = json!("containerd");
    assert_refused(
        spec,
        "spec.components[].name must be unique: each component may appear once",
    );
}

#[test]
fn version_syntax() {
    for bad in ["1", "1.7.2.1", "latest", "01.7", "1.007", "1.7 beta"] {
        assert_refused(with(&["components", "0", "version"], json!(bad)), VERSION_MESSAGE);
        let typed: ClusterUpgradeSpec =
            serde_json::from_value(with(&["components", "0", "version"], json!(bad))).unwrap();
        let errors = validate(&typed).unwrap_err();
        assert!(
            errors.iter().any(|e| e.field == "spec.components[0].version"),
            "{bad}: {errors:?}"
        );
    }
    // Two-part series, as Kubespray writes docker_version and others.
    for good_version in ["20.10", "19.03", "v3.28", "1.7.22", "v1.31.2-rc.1"] {
        let spec = with(&["components", "0", "version"], json!(good_version));
        assert_eq!(cel_errors(spec.clone()), Vec::<String>::new(), "{good_version}");
        let typed: ClusterUpgradeSpec = serde_json::from_value(spec).unwrap();
        assert_eq!(validate(&typed), Ok(()), "{good_version}");
    }
}

#[test]
fn several_workloads_and_their_containers() {
    let workload = |w: Value| with(&["components", "2", "upgrade"], json!({"workload": w}));
    let targets = json!([
        {"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"},
        {"kind": "Deployment", "namespace": "kube-system", "name": "calico-kube-controllers"}
    ]);
    let good_one = workload(
        json!({"targets": targets, "imageRepositories": ["calico/node", "calico/cni"],
        "manifest": {"configMap": {"name": "calico-v3.29.1", "key": "calico.yaml"}}}),
    );
    assert_eq!(cel_errors(good_one.clone()), Vec::<String>::new());
    let typed: ClusterUpgradeSpec = serde_json::from_value(good_one).unwrap();
    assert_eq!(validate(&typed), Ok(()));

    let cases = [
        (
            json!({"kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node", "targets": targets}),
            "spec.components[].upgrade.workload must name one workload (kind, namespace, name) or list several in targets, not both and not neither",
            "spec.components[2].upgrade.workload.targets",
        ),
        (
            json!({"kind": "DaemonSet", "namespace": "kube-system"}),
            "spec.components[].upgrade.workload: kind, namespace and name go together (one workload); for several workloads list them in targets",
            "spec.components[2].upgrade.workload",
        ),
        (
            json!({"targets": [targets[0], targets[0]]}),
            "spec.components[].upgrade.workload.targets must not name a workload twice",
            "spec.components[2].upgrade.workload.targets[1]",
        ),
        (
            json!({"targets": [{"kind": "DaemonSet", "namespace": "Kube", "name": "x"}]}),
            "spec.components[].upgrade.workload.targets[].namespace must be a DNS label: lowercase letters, digits and '-'",
            "spec.components[2].upgrade.workload.targets[0].namespace",
        ),
        (
            json!({"targets": targets, "imageRepositories": ["calico/node:v3.29.1"]}),
            "spec.components[].upgrade.workload.imageRepositories[] must be an image repository without tag or digest, such as calico/node or quay.io/cilium/cilium (lowercase path)",
            "spec.components[2].upgrade.workload.imageRepositories[0]",
        ),
        (
            json!({"targets": targets, "container": "calico-node", "imageRepositories": ["calico/node"]}),
            "spec.components[].upgrade.workload: container and imageRepositories exclude each other (container picks one container by name; imageRepositories every container and init container whose image matches)",
            "spec.components[2].upgrade.workload.imageRepositories",
        ),
        (
            json!({"targets": targets, "manifest": {"configMap": {"name": "m", "key": "a/b"}}}),
            "spec.components[].upgrade.workload.manifest.configMap.key must be a ConfigMap key: letters, digits, '-', '_' and '.'",
            "spec.components[2].upgrade.workload.manifest.configMap.key",
        ),
    ];
    for (w, message, field) in cases {
        let spec = workload(w);
        assert_refused(spec.clone(), message);
        let typed: ClusterUpgradeSpec = serde_json::from_value(spec).unwrap();
        let errors = validate(&typed).unwrap_err();
        assert!(errors.iter().any(|e| e.field == field), "want {field} among {errors:?}");
    }
}

const VERSION_MESSAGE: &str = "spec.components[].version must be a semantic version such as 1.7.22 or v1.31.2 (optionally -prerelease and +build), or a two-part series such as 20.10; components verified by nodeInfo.osImage or nodeInfo.kernelVersion (and os, kernel) take letters, digits, spaces and ._+~:()/-";

fn os_component(name: &str, version: &str, verify: Value) -> Value {
    let mut c = json!({"name": name, "stage": "Runtime", "version": version, "upgrade": {"job": {"image": "example.com/os:1", "reboots": true}}});
    if !verify.is_null() {
        c["verify"] = verify;
    }
    c
}

#[test]
fn os_and_kernel_versions_are_the_os_text_and_nothing_else_is() {
    // The well-known names, and any name verified by osImage or kernelVersion, take OS text.
    for c in [
        os_component("os", "24.04.1", Value::Null),
        os_component("kernel", "6.8.0-45-generic", Value::Null),
        os_component("ubuntu", "Ubuntu 24.04.1 LTS", json!({"nodeInfo": "osImage"})),
        os_component(
            "base",
            "24.04",
            json!({"nodeInfo": "osImage", "match": {"prefix": "Ubuntu 24.04"}}),
        ),
        os_component(
            "kern",
            "6.8",
            json!({"nodeInfo": "kernelVersion", "match": {"regex": "^6\\.8\\.0-[0-9]+-generic$"}}),
        ),
    ] {
        let spec = with(&["components", "0"], c.clone());
        assert_eq!(cel_errors(spec), Vec::<String>::new(), "{c}");
    }
    // OS text is not a version for anything else.
    assert_refused(
        with(&["components", "0", "version"], json!("24.04 LTS")),
        VERSION_MESSAGE,
    );
    assert_refused(
        with(&["components", "0"], os_component("os", "Ubuntu; rm -rf", Value::Null)),
        VERSION_MESSAGE,
    );
    assert_refused(
        with(
            &["components", "0"],
            os_component(
                "os",
                "24.04",
                json!({"nodeInfo": "osImage", "match": {"prefix": "U", "regex": "U"}}),
            ),
        ),
        "spec.components[].verify.match: set exactly one of prefix or regex",
    );
}

#[test]
fn a_bad_match_regex_is_refused_naming_the_field() {
    let spec = with(
        &["components", "0"],
        os_component(
            "os",
            "24.04",
            json!({"nodeInfo": "osImage", "match": {"regex": "Ubuntu (24"}}),
        ),
    );
    let typed: ClusterUpgradeSpec = serde_json::from_value(spec).unwrap();
    let errs = validate(&typed).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "spec.components[0].verify.match.regex");
    assert!(
        errs[0].message.contains("is not a regular expression"),
        "{}",
        errs[0].message
    );
    // A match on a semantic-version component says what it is for.
    let spec = with(
        &["components", "1", "verify"],
        json!({"nodeInfo": "kubeletVersion", "match": {"prefix": "v1.32"}}),
    );
    let typed: ClusterUpgradeSpec = serde_json::from_value(spec).unwrap();
    let errs = validate(&typed).unwrap_err();
    assert_eq!(errs[0].field, "spec.components[1].verify.match", "{errs:?}");
}

#[test]
fn retries_backoff_and_reboot_settings_are_bounded() {
    // The schema's ranges are the API server's to apply (crates/drover/tests/api_surface.rs);
    // the duration rules are CEL; Rust checks all of them again.
    assert_refused(
        with(&["strategy", "retryDelay"], json!("2h")),
        "spec.strategy.retryDelay must be a duration from 0s to 1h, such as 10s or 1m",
    );
    let mut spec = with(&["strategy", "retries"], json!(11));
    spec["components"][0]["upgrade"]["job"]["backoffLimit"] = json!(-1);
    spec["reboot"] = json!({"timeout": "0s", "image": "Not An Image"});
    let typed: ClusterUpgradeSpec = serde_json::from_value(spec).unwrap();
    let fields: Vec<String> = validate(&typed).unwrap_err().into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "spec.components[0].upgrade.job.backoffLimit",
            "spec.strategy.retries",
            "spec.reboot.timeout",
            "spec.reboot.image"
        ]
    );
    let defaults: ClusterUpgradeSpec = serde_json::from_value(good()).unwrap();
    assert_eq!(
        (
            defaults.strategy.retries,
            defaults.strategy.retry_delay.as_str(),
            defaults.reboot.timeout.as_str()
        ),
        (2, "30s", "10m")
    );
    assert_eq!(defaults.components[0].upgrade.job.as_ref().unwrap().backoff_limit, 2);
}

#[test]
fn component_name_is_a_dns_label() {
    assert_refused(
        with(&["components", "0", "name"], json!("Containerd_")),
        "spec.components[].name must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit",
    );
}

#[test]
fn exactly_one_upgrade_method() {
    let both = json!({"job": {"image": "x"}, "workload": {"kind": "Deployment", "namespace": "a", "name": "b"}});
    assert_refused(
        with(&["components", "0", "upgrade"], both),
        "spec.components[].upgrade must set exactly one of job (node-level, run on each node) or workload (cluster-level Deployment/DaemonSet/StatefulSet)",
    );
    assert_refused(
        with(&["components", "0", "upgrade"], json!({})),
        "spec.components[].upgrade must set exactly one of job (node-level, run on each node) or workload (cluster-level Deployment/DaemonSet/StatefulSet)",
    );
}

#[test]
fn max_unavailable_is_not_zero() {
    let message = "spec.strategy.maxUnavailable must be an integer of at least 1 or a percentage from 1% to 100%";
    assert_refused(with(&["strategy", "maxUnavailable"], json!(0)), message);
    assert_refused(with(&["strategy", "maxUnavailable"], json!("0%")), message);
    assert_refused(with(&["strategy", "maxUnavailable"], json!("150%")), message);
    assert_eq!(
        cel_errors(with(&["strategy", "maxUnavailable"], json!(3))),
        Vec::<String>::new()
    );
}

#[test]
fn durations_are_well_formed_and_bounded() {
    let drain = "spec.drain.timeout must be a duration above 0s and at most 24h, such as 90s, 15m or 1h";
    assert_refused(with(&["drain", "timeout"], json!("10 minutes")), drain);
    assert_refused(with(&["drain", "timeout"], json!("0s")), drain);
    assert_refused(with(&["drain", "timeout"], json!("25h")), drain);
    assert_refused(
        with(&["strategy", "soak"], json!("-5m")),
        "spec.strategy.soak must be a duration from 0s to 24h, such as 0s, 90s or 10m",
    );
    let job =
        "spec.components[].upgrade.job.timeout must be a duration above 0s and at most 24h, such as 90s, 10m or 1h30m";
    assert_refused(
        with(&["components", "0", "upgrade", "job", "timeout"], json!("1d")),
        job,
    );
    assert_refused(
        with(&["components", "0", "upgrade", "job", "timeout"], json!("99999h")),
        job,
    );
    assert_eq!(
        cel_errors(with(&["components", "0", "upgrade", "job", "timeout"], json!("1h30m"))),
        Vec::<String>::new()
    );
    assert_eq!(
        cel_errors(with(&["strategy", "soak"], json!("24h"))),
        Vec::<String>::new()
    );
}

#[test]
fn images_env_and_selectors() {
    assert_refused(
        with(&["components", "0", "upgrade", "job", "image"], json!("a b c")),
        "spec.components[].upgrade.job.image must be an image reference such as registry.example.com/upgrade:1.2 (lowercase path, optional :tag and @sha256:digest, no spaces)",
    );
    assert_eq!(
        cel_errors(with(
            &["components", "0", "upgrade", "job", "image"],
            json!(
                "localhost:5000/team/up-grade:v1.2_3@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            )
        )),
        Vec::<String>::new()
    );
    assert_refused(
        with(
            &["components", "0", "upgrade", "job", "env"],
            json!([{"name": "1 bad", "value": "x"}]),
        ),
        "env[].name must be a C identifier: letters, digits and '_', not starting with a digit",
    );
    assert_refused(
        with(
            &["components", "0", "upgrade", "job", "env"],
            json!([{"name": "DROVER_NODE"}]),
        ),
        "env[].name may not be DROVER_COMPONENT, DROVER_VERSION or DROVER_NODE: drover sets those",
    );
    assert_refused(
        with(
            &["components", "0", "upgrade", "job", "env"],
            json!([{"name": "A"}, {"name": "A"}]),
        ),
        "spec.components[].upgrade.job.env[].name must be unique",
    );
    assert_refused(
        with(
            &["nodeSelector"],
            json!({"matchExpressions": [{"key": "zone", "operator": "Exists", "values": ["a"]}]}),
        ),
        "values must be non-empty for the operators In and NotIn, and empty for Exists and DoesNotExist",
    );
    assert_refused(
        with(&["nodeSelector"], json!({"matchLabels": {"zone": "a b"}})),
        "a label value is empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
    );
    assert_eq!(
        cel_errors(with(
            &["nodeSelector"],
            json!({"matchLabels": {"topology.kubernetes.io/zone": "eu-1a"}, "matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]})
        )),
        Vec::<String>::new()
    );
}

#[test]
fn cross_field_rules() {
    assert_refused(
        with(&["components", "0", "name"], json!("my-agent")),
        "spec.components[].stage is required for a name drover does not know; allowed stages: Runtime, Etcd, ControlPlane, Kubelet, Network, Addons",
    );
    assert_eq!(
        cel_errors(with(
            &["components", "0"],
            json!({"name": "my-agent", "stage": "Addons", "version": "1.0.0", "upgrade": {"job": {"image": "x"}}})
        )),
        Vec::<String>::new()
    );
    assert_refused(
        with(&["components", "2", "verify"], json!({"jobSucceeded": true})),
        "spec.components[].verify is for job components only: a workload's rollout status is its verification",
    );
    assert_refused(
        with(&["windows", "0", "end"], json!("22:00")),
        "spec.windows[].end must differ from start: a window of zero length never opens",
    );
}

#[test]
fn window_times_are_valid() {
    assert_refused(
        with(&["windows", "0", "start"], json!("24:00")),
        "spec.windows[].start must be a 24-hour time HH:MM, from 00:00 to 23:59",
    );
    assert_refused(
        with(&["windows", "0", "end"], json!("7:30")),
        "spec.windows[].end must be a 24-hour time HH:MM, from 00:00 to 23:59",
    );
}

#[test]
fn verify_sets_exactly_one_source() {
    let v = json!({"nodeInfo": "kubeletVersion", "jobSucceeded": true});
    assert_refused(
        with(&["components", "1", "verify"], v),
        "spec.components[].verify: set exactly one of nodeInfo, pod or jobSucceeded",
    );
}

#[test]
fn the_schema_has_the_structure_kubectl_and_kstatus_need() {
    let crd = drover_api::crd::crd();
    let v = &crd.spec.versions[0];
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Target", "Updated", "Stage", "Ready", "Reason", "Age"]);
    let s = schema();
    let conditions = &s["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    assert_eq!(s["properties"]["spec"]["properties"]["components"]["minItems"], 1);
}

#[test]
fn durations_never_overflow_and_follow_the_schema() {
    use drover_api::validate::parse_duration;
    assert_eq!(parse_duration("99999999999999999999h"), None);
    assert_eq!(parse_duration("9999999999999999h"), None);
    for bad in ["0", "", "+5m", ".5h", "5.h", "90s0", "1d"] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
    assert_eq!(parse_duration("1.5h"), Some(std::time::Duration::from_secs(5400)));
    assert_eq!(parse_duration("1h30m"), Some(std::time::Duration::from_secs(5400)));
    assert_eq!(parse_duration("0s"), Some(std::time::Duration::ZERO));
}

#[test]
fn health_checks_canary_rollback_zones_and_hooks_are_judged_alike_by_cel_and_drover() {
    let mut spec = good();
    spec["healthChecks"] = json!([
        {"name": "app", "http": {"url": "http://{{nodeIP}}:8080/healthz", "bodyContains": "ok"}, "successThreshold": 3},
        {"name": "alerts", "prometheus": {"url": "http://prometheus:9090", "query": "ALERTS{alertstate=\"firing\"}"}},
        {"name": "errors", "prometheus": {"url": "http://prometheus:9090", "query": "up", "threshold": {"op": ">=", "value": 1}}},
        {"name": "web", "pods": {"selector": {"matchLabels": {"app": "web"}}, "onNode": true, "maxRestarts": 1}},
        {"name": "cp", "controlPlane": {}}
    ]);
    spec["strategy"]["canary"] = json!({"nodes": "10%", "soak": "10m", "requireApproval": true});
    spec["strategy"]["onFailure"] = json!("Rollback");
    spec["strategy"]["rollback"] = json!("All");
    spec["strategy"]["topologyKey"] = json!("topology.kubernetes.io/zone");
    spec["hooks"] = json!({"preDrain": {"image": "example.com/noout:1"}, "postUncordon": {"image": "example.com/noout:1", "timeout": "2m"}});
    spec["approvedCanary"] = json!("0123456789ab");
    assert!(cel_errors(spec.clone()).is_empty());
    let typed: ClusterUpgradeSpec = serde_json::from_value(spec.clone()).unwrap();
    assert_eq!(validate(&typed), Ok(()));

    let bad = |edit: &dyn Fn(&mut Value)| {
        let mut s = spec.clone();
        edit(&mut s);
        let errors = cel_errors(s);
        assert!(!errors.is_empty(), "CEL admits it");
        errors
    };
    let e = bad(&|s| s["healthChecks"][0]["pods"] = json!({"selector": {}}));
    assert!(
        e.iter()
            .any(|m| m.contains("exactly one of http, prometheus, pods or controlPlane")),
        "{e:?}"
    );
    let e = bad(&|s| s["healthChecks"][0]["http"]["url"] = json!("ftp://x"));
    assert!(
        e.iter().any(|m| m.contains("must start with http:// or https://")),
        "{e:?}"
    );
    let e = bad(&|s| s["healthChecks"][1]["interval"] = json!("11m"));
    assert!(e.iter().any(|m| m.contains("from 1s to 10m")), "{e:?}");
    let e = bad(&|s| s["strategy"]["canary"]["nodes"] = json!("0%"));
    assert!(e.iter().any(|m| m.contains("canary.nodes")), "{e:?}");
    let e = bad(&|s| s["strategy"]["type"] = json!("AllAtOnce"));
    assert!(e.iter().any(|m| m.contains("is for Rolling only")), "{e:?}");
    let e = bad(&|s| s["strategy"]["topologyKey"] = json!("zone name"));
    assert!(e.iter().any(|m| m.contains("must be a label key")), "{e:?}");
    let e = bad(&|s| s["hooks"]["preDrain"]["image"] = json!("ceph tools"));
    assert!(e.iter().any(|m| m.contains("must be an image reference")), "{e:?}");
    let e = bad(&|s| s["hooks"]["postUncordon"]["timeout"] = json!("0s"));
    assert!(e.iter().any(|m| m.contains("spec.hooks timeout")), "{e:?}");
}
