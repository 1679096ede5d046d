//! The deployment manifests and the example ClusterUpgrades are real:
//! every document under `deploy/` (the Helm chart's templates aside) and
//! `examples/upgrades/` parses into its typed object with no field lost on
//! the way, the ClusterUpgrades pass drover's own validation, the kustomize
//! base renders with the generated CRD, and `kubectl apply` (server dry run,
//! then for real) accepts it all on a kubesim API server.

mod deploy_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use deploy_support::{Rule, documents, kubectl, repo, rules, yaml_files};
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use serde_json::Value;

/// Every path in `original` is in `back` with the same value: nothing was
/// dropped as an unknown field, nothing changed type.
fn lost_fields(original: &Value, back: &Value, at: &str, out: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => lost_fields(v, w, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost_fields(v, w, &format!("{at}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) => out.push(format!("{at}: {a} became {b}")),
    }
}

/// Parse `doc` as `T` and check the typed object keeps every field.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, what: &str) -> T {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&t).unwrap();
    let mut lost = Vec::new();
    lost_fields(doc, &back, "", &mut lost);
    assert!(lost.is_empty(), "{what}: fields unknown to the typed object: {lost:?}");
    t
}

fn check_cluster_upgrade(doc: &Value, what: &str) {
    let cu: drover_api::ClusterUpgrade = typed(doc, what);
    if let Err(errs) = drover_api::validate::validate(&cu.spec) {
        panic!("{what} is not a valid ClusterUpgrade: {errs:?}");
    }
}

/// One document of any kind drover ships; returns its kind.
fn check_document(doc: &Value, file: &Path) -> String {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let what = format!("{} ({api_version} {kind} {})", file.display(), doc["metadata"]["name"]);
    match (api_version, kind) {
        ("v1", "Namespace") => drop(typed::<Namespace>(doc, &what)),
        ("v1", "ServiceAccount") => drop(typed::<ServiceAccount>(doc, &what)),
        ("v1", "Service") => drop(typed::<Service>(doc, &what)),
        ("apps/v1", "Deployment") => drop(typed::<Deployment>(doc, &what)),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => drop(typed::<ClusterRole>(doc, &what)),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => drop(typed::<ClusterRoleBinding>(doc, &what)),
        ("rbac.authorization.k8s.io/v1", "Role") => drop(typed::<Role>(doc, &what)),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => drop(typed::<RoleBinding>(doc, &what)),
        ("policy/v1", "PodDisruptionBudget") => drop(typed::<PodDisruptionBudget>(doc, &what)),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => drop(typed::<CustomResourceDefinition>(doc, &what)),
        ("drover.dev/v1alpha1", "ClusterUpgrade") => check_cluster_upgrade(doc, &what),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            drop(typed::<ValidatingAdmissionPolicy>(doc, &what))
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
            drop(typed::<ValidatingAdmissionPolicyBinding>(doc, &what))
        }
        ("kustomize.config.k8s.io/v1beta1", "Kustomization") | ("kustomize.config.k8s.io/v1alpha1", "Component") => {
            // Everything it includes exists.
            let dir = file.parent().unwrap();
            for key in ["resources", "components"] {
                for r in doc[key].as_array().into_iter().flatten() {
                    let p = dir.join(r.as_str().unwrap());
                    assert!(p.exists(), "{what}: {key} entry {} does not exist", p.display());
                }
            }
        }
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            // No typed model in k8s-openapi: check the parts that must match the Service.
            let sel = &doc["spec"]["selector"]["matchLabels"];
            assert_eq!(sel["app.kubernetes.io/name"], "drover", "{what}");
            let ports: Vec<&str> = doc["spec"]["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["port"].as_str().unwrap())
                .collect();
            assert_eq!(ports, ["http-metrics"], "{what}: scrapes the Service's named port");
        }
        _ => panic!("{what}: a kind this test does not know; add it"),
    }
    kind.to_string()
}

#[test]
fn every_deploy_document_parses_into_its_typed_object() {
    let files = yaml_files(&repo().join("deploy"), &[repo().join("deploy/helm")]);
    assert!(files.len() >= 10, "deploy/ has its manifests: {files:?}");
    let mut kinds = BTreeSet::new();
    for f in &files {
        for doc in documents(&std::fs::read_to_string(f).unwrap()) {
            kinds.insert(check_document(&doc, f));
        }
    }
    for k in [
        "Kustomization",
        "Component",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(k), "no {k} under deploy/ (found {kinds:?})");
    }
}

#[test]
fn every_example_upgrade_is_a_valid_cluster_upgrade() {
    let files = yaml_files(&repo().join("examples/upgrades"), &[]);
    let names: BTreeSet<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["kubeadm.yaml", "kubespray.yaml", "k3s.yaml"] {
        assert!(names.contains(want), "examples/upgrades/{want} is missing");
    }
    for f in &files {
        let docs = documents(&std::fs::read_to_string(f).unwrap());
        assert!(!docs.is_empty(), "{} is empty", f.display());
        for doc in docs {
            assert_eq!(doc["kind"], "ClusterUpgrade", "{}", f.display());
            check_document(&doc, f);
        }
    }
}

#[test]
fn the_kubespray_example_names_the_kubespray_variable_of_each_component() {
    let text = std::fs::read_to_string(repo().join("examples/upgrades/kubespray.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut components = 0;
    for (i, l) in lines.iter().enumerate() {
        // Component entries sit at four spaces under `components:`.
        if let Some(name) = l.strip_prefix("    - name: ") {
            components += 1;
            let comment = lines[i - 1].trim();
            assert!(
                comment.starts_with("# ") && comment.contains("_version"),
                "component {name} has no comment naming its Kubespray variable (line {})",
                i + 1
            );
        }
    }
    assert!(components >= 8, "the Kubespray example covers Kubespray's components");
}

fn rendered(dir: &str) -> Vec<Value> {
    let out = kubectl(
        None,
        &["kustomize", &repo().join(dir).to_string_lossy()],
        Duration::from_secs(60),
    );
    assert!(out.ok, "kubectl kustomize {dir}: {}", out.text);
    documents(&out.stdout)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_base_renders_with_the_generated_crd_in_drover_system() {
    let docs = rendered("deploy/base");
    let committed = documents(&std::fs::read_to_string(repo().join("crds/clusterupgrades.drover.dev.yaml")).unwrap());
    assert_eq!(committed.len(), 1);
    let crd = find(&docs, "CustomResourceDefinition", "clusterupgrades.drover.dev");
    // kustomize writes the float 0.0 as 0: compare numbers by value.
    let mut changed = Vec::new();
    lost_fields(&committed[0], crd, "", &mut changed);
    lost_fields(crd, &committed[0], "", &mut changed);
    assert!(changed.is_empty(), "deploy/base carries crds/ unchanged: {changed:?}");
    for d in &docs {
        let namespaced = !matches!(
            d["kind"].as_str().unwrap(),
            "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
        );
        if namespaced {
            assert_eq!(d["metadata"]["namespace"], "drover-system", "{}", d["metadata"]["name"]);
        }
        check_document(d, &repo().join("deploy/base/kustomization.yaml"));
    }
    let ha = rendered("deploy/overlays/ha");
    find(&ha, "ServiceMonitor", "drover");
    find(&ha, "PodDisruptionBudget", "drover");
    assert_eq!(ha.len(), docs.len() + 2);
}

#[test]
fn the_deployment_runs_drover_as_specified() {
    let docs = rendered("deploy/base");
    let d: Deployment = serde_json::from_value(find(&docs, "Deployment", "drover").clone()).unwrap();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("drover"));
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let c = &pod.containers[0];
    assert!(c.image.as_deref().unwrap().starts_with("registry.example.com/drover:"));
    let args = c.args.clone().unwrap().join(" ");
    assert!(
        args.starts_with("run --leader-elect --namespace drover-system --http-addr 0.0.0.0:8080"),
        "{args}"
    );
    let env: Vec<(String, String)> = c
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value_from.unwrap().field_ref.unwrap().field_path))
        .collect();
    assert!(env.contains(&("POD_NAME".into(), "metadata.name".into())));
    assert!(env.contains(&("NODE_NAME".into(), "spec.nodeName".into())));
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    let res = c.resources.clone().unwrap();
    for key in ["cpu", "memory"] {
        assert!(res.requests.as_ref().unwrap().contains_key(key), "request {key}");
        assert!(res.limits.as_ref().unwrap().contains_key(key), "limit {key}");
    }
    let probe = |p: Option<k8s_openapi::api::core::v1::Probe>| {
        let g = p.unwrap().http_get.unwrap();
        (g.path.unwrap(), g.port)
    };
    let port = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http-metrics".into());
    assert_eq!(probe(c.liveness_probe.clone()), ("/healthz".to_string(), port.clone()));
    assert_eq!(probe(c.readiness_probe.clone()), ("/readyz".to_string(), port));
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
}

#[test]
fn the_rbac_is_least_privilege() {
    let docs = rendered("deploy/base");
    let cluster = rules(find(&docs, "ClusterRole", "drover"));
    let ns = rules(find(&docs, "Role", "drover-leader-election"));
    // ConfigMaps (workload manifests) and Secrets (health checks'
    // http.secretName): get, in drover's namespace only; never list or watch.
    for (role, resource) in [("drover-manifests", "configmaps"), ("drover-health-secrets", "secrets")] {
        assert_eq!(
            rules(find(&docs, "Role", role)),
            vec![Rule {
                groups: vec!["".into()],
                resources: vec![resource.into()],
                verbs: vec!["get".into()],
            }],
            "{role}"
        );
        assert_eq!(find(&docs, "Role", role)["metadata"]["namespace"], "drover-system");
        let binding = find(&docs, "RoleBinding", role);
        assert_eq!(binding["metadata"]["namespace"], "drover-system");
        assert_eq!(binding["roleRef"]["name"], role);
        assert_eq!(binding["subjects"][0]["name"], "drover");
        assert_eq!(binding["subjects"][0]["namespace"], "drover-system");
    }
    // No other Role or ClusterRole of drover's names Secrets or ConfigMaps.
    let named: Vec<&Value> = docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Role" | "ClusterRole")))
        .filter(|d| {
            !matches!(
                d["metadata"]["name"].as_str(),
                Some("drover-manifests" | "drover-health-secrets")
            )
        })
        .filter(|d| {
            rules(d)
                .iter()
                .any(|r| r.resources.iter().any(|x| x == "secrets" || x == "configmaps"))
        })
        .collect();
    assert!(named.is_empty(), "{named:#?}");
    for r in cluster.iter().chain(&ns) {
        for part in [&r.groups, &r.resources, &r.verbs] {
            assert!(!part.iter().any(|x| x.contains('*')), "no wildcards: {r:?}");
        }
        for secret in ["secrets", "configmaps", "serviceaccounts/token"] {
            assert!(!r.resources.iter().any(|x| x == secret), "no {secret}: {r:?}");
        }
        assert!(
            !r.verbs
                .iter()
                .any(|v| ["escalate", "bind", "impersonate"].contains(&v.as_str()))
        );
    }
    assert_eq!(
        ns,
        vec![Rule {
            groups: vec!["coordination.k8s.io".into()],
            resources: vec!["leases".into()],
            verbs: ["get", "create", "update"].map(String::from).to_vec(),
        }]
    );
    // Leases only where drover runs; never cluster-wide.
    assert!(!cluster.iter().any(|r| r.resources.iter().any(|x| x == "leases")));
    let binding = find(&docs, "ClusterRoleBinding", "drover");
    assert_eq!(binding["subjects"][0]["namespace"], "drover-system");
    assert_eq!(
        find(&docs, "RoleBinding", "drover-leader-election")["subjects"][0]["name"],
        "drover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_base_and_the_examples_to_a_kubesim_server() {
    let server = kubesim::ApiServer::start().await.unwrap();
    let dir = deploy_support::temp_dir("manifests");
    let kc = dir.join("kubeconfig");
    server.write_kubeconfig(&kc).unwrap();
    let base = repo().join("deploy/base").to_string_lossy().into_owned();
    let examples = repo().join("examples/upgrades").to_string_lossy().into_owned();
    let run = |args: Vec<String>| {
        let kc = kc.clone();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl(Some(&kc), &a, Duration::from_secs(90))
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // A server-side dry run changes nothing. Like a real API server, kubesim
    // refuses namespaced objects in a namespace that does not exist yet, so
    // the namespace comes first (see docs/getting-started.md).
    let ns = repo().join("deploy/base/namespace.yaml").to_string_lossy().into_owned();
    let out = run(s(&["apply", "-f", &ns])).await.unwrap();
    assert!(out.ok, "{}", out.text);
    let out = run(s(&["apply", "--dry-run=server", "-k", &base])).await.unwrap();
    assert!(out.ok, "dry run of deploy/base: {}", out.text);
    assert!(
        out.stdout.contains("deployment.apps/drover created (server dry run)"),
        "{}",
        out.text
    );
    let client = server.client().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "drover-system");
    assert!(deployments.get_opt("drover").await.unwrap().is_none());

    // For real, server-side apply (the CRD is too large for client-side apply's annotation).
    let out = run(s(&["apply", "--server-side", "-k", &base])).await.unwrap();
    assert!(out.ok, "apply of deploy/base: {}", out.text);
    let d = deployments.get("drover").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));
    let crs: Api<ClusterRole> = Api::all(client.clone());
    assert_eq!(
        rules(&serde_json::to_value(crs.get("drover").await.unwrap()).unwrap()).len(),
        10
    );

    // With the CRD installed, the examples pass the server's schema and CEL rules.
    let mut accepted = false;
    for _ in 0..50 {
        let out = run(s(&["apply", "--dry-run=server", "-f", &examples])).await.unwrap();
        if out.ok {
            for name in ["kubeadm-v1.32", "kubespray", "k3s"] {
                assert!(
                    out.stdout
                        .contains(&format!("clusterupgrade.drover.dev/{name} created")),
                    "{}",
                    out.text
                );
            }
            accepted = true;
            break;
        }
        // The CRD may take a moment to be served.
        assert!(
            out.text.contains("the server could not find") || out.text.contains("no matches"),
            "{}",
            out.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(accepted, "the examples were never accepted");
    // A broken one is refused with the schema's message.
    let bad = dir.join("bad.yaml");
    let text = std::fs::read_to_string(repo().join("examples/upgrades/k3s.yaml"))
        .unwrap()
        .replace("maxUnavailable: 2", "maxUnavailable: 0");
    std::fs::write(&bad, text).unwrap();
    let out = run(s(&["apply", "--dry-run=server", "-f", &bad.to_string_lossy()]))
        .await
        .unwrap();
    assert!(!out.ok, "maxUnavailable 0 is refused");
    assert!(out.text.contains("maxUnavailable"), "{}", out.text);
    std::fs::remove_dir_all(&dir).ok();
}

/// Run an example upgrade script with drover's environment (plus `extra`);
/// returns whether it succeeded and the last line of its termination message.
fn run_upgrade_script(script: &Path, extra: &[(&str, &str)]) -> (bool, String) {
    let dir = deploy_support::temp_dir("script");
    let log = dir.join("termination-log");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg(script)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("DROVER_COMPONENT", "containerd")
        .env("DROVER_VERSION", "1.7.24")
        .env("DROVER_NODE", "worker-7")
        .env("TERMINATION_LOG", &log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} did not finish in 30s", script.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let message = std::fs::read_to_string(&log).unwrap_or_default();
    std::fs::remove_dir_all(&dir).ok();
    (status.success(), message.lines().last().unwrap_or_default().to_string())
}

#[test]
fn example_upgrade_scripts_read_drovers_env_and_end_with_a_useful_line_on_failure() {
    let images = repo().join("examples/upgrade-images");
    let mut kinds = 0;
    for entry in std::fs::read_dir(&images).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        kinds += 1;
        let script = dir.join("upgrade.sh");
        let text = std::fs::read_to_string(&script).unwrap();
        assert!(text.contains("EXAMPLE"), "{} says it is an example", script.display());
        for var in ["DROVER_COMPONENT", "DROVER_VERSION", "DROVER_NODE"] {
            assert!(text.contains(var), "{} reads {var}", script.display());
        }
        let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        assert!(dockerfile.contains("COPY upgrade.sh"), "{}", dir.display());

        // Without the node's root: a failure whose last line says what and where.
        let (ok, last) = run_upgrade_script(
            &script,
            &[("HOST_ROOT", "/nonexistent"), ("DOWNLOAD_BASE", "http://127.0.0.1:1")],
        );
        assert!(!ok, "{} fails without the node's root", script.display());
        assert!(
            last.starts_with("FAILED: ") && last.contains("containerd 1.7.24 on worker-7") && last.contains("hostRoot"),
            "{}: last line {last:?}",
            script.display()
        );
    }
    assert!(kinds >= 4, "containerd, kubeadm, k3s and kubespray-binaries images");

    // A node root without a package manager: the containerd script says so.
    let fake = deploy_support::temp_dir("fake-root");
    std::fs::create_dir_all(fake.join("etc")).unwrap();
    let (ok, last) = run_upgrade_script(
        &images.join("containerd/upgrade.sh"),
        &[("HOST_ROOT", &fake.to_string_lossy())],
    );
    std::fs::remove_dir_all(&fake).ok();
    assert!(!ok);
    assert_eq!(
        last,
        "FAILED: the node has neither apt-get nor dnf/yum (containerd 1.7.24 on worker-7)"
    );
    // A script refuses to start without drover's variables.
    let (ok, _) = run_upgrade_script(&images.join("kubeadm/upgrade.sh"), &[("DROVER_VERSION", "")]);
    assert!(!ok, "an empty DROVER_VERSION is refused");
}

/// The Helm chart's template without its Go-template actions: lines that
/// are only an action (`{{- if … }}`, `{{- include … | nindent 4 }}`,
/// `{{- end }}`) are dropped, an inline `{{ .Values.x }}` of a scalar becomes
/// its default from values.yaml and any other inline action the string
/// `TEMPLATED`, which leaves YAML whose literal parts can be compared with
/// `deploy/base`. (Helm is not available here; this checks the structure,
/// not the rendering.)
fn strip_template(text: &str, values: &Value) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("{{") && t.ends_with("}}") && t.matches("{{").count() == 1 {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("{{") {
            out.push_str(&rest[..i]);
            let j = rest[i..].find("}}").expect("an action closes on its line") + i + 2;
            let action = rest[i + 2..j - 2].trim_matches(|c: char| c == '-' || c.is_whitespace());
            let value = action
                .strip_prefix(".Values.")
                .and_then(|path| path.split('.').try_fold(values, |v, k| v.get(k)));
            match value {
                Some(Value::String(v)) => out.push_str(v),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
                _ => out.push_str("TEMPLATED"),
            }
            rest = &rest[j..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// Every `{{ … }}` action of a template, trimmed of `{{-`/`-}}`.
fn actions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let j = rest[i..].find("}}").expect("closed action") + i;
        out.push(
            rest[i + 2..j]
                .trim_matches(|c: char| c == '-' || c.is_whitespace())
                .to_string(),
        );
        rest = &rest[j + 2..];
    }
    out
}

#[test]
fn the_helm_chart_renders_the_same_objects_and_rules_as_the_base() {
    let chart = repo().join("deploy/helm/drover");
    let meta = &documents(&std::fs::read_to_string(chart.join("Chart.yaml")).unwrap())[0];
    assert_eq!(meta["apiVersion"], "v2");
    assert_eq!(meta["name"], "drover");
    assert_eq!(
        meta["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "the chart deploys this version"
    );
    let values = &documents(&std::fs::read_to_string(chart.join("values.yaml")).unwrap())[0];
    for key in [
        "image",
        "replicas",
        "resources",
        "namespace",
        "leaderElection",
        "serviceMonitor",
        "pdb",
    ] {
        assert!(values.get(key).is_some(), "values.yaml has {key}");
    }
    assert_eq!(
        std::fs::read_to_string(chart.join("crds/clusterupgrades.drover.dev.yaml")).unwrap(),
        std::fs::read_to_string(repo().join("crds/clusterupgrades.drover.dev.yaml")).unwrap(),
        "deploy/helm/drover/crds/ is stale: cp crds/clusterupgrades.drover.dev.yaml deploy/helm/drover/crds/"
    );

    let mut docs = Vec::new();
    let mut files = std::fs::read_dir(chart.join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    files.sort();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        // Blocks close, and every value used is defined.
        let acts = actions(&text);
        let opens = acts
            .iter()
            .filter(|a| ["if ", "with ", "range ", "define "].iter().any(|k| a.starts_with(k)))
            .count();
        let ends = acts.iter().filter(|a| *a == "end").count();
        assert_eq!(opens, ends, "{}: every block has its end", f.display());
        for a in &acts {
            for part in a.split_whitespace().filter_map(|w| w.strip_prefix(".Values.")) {
                let mut v = values;
                for key in part.split('.') {
                    v = v
                        .get(key)
                        .unwrap_or_else(|| panic!("{}: .Values.{part} is not in values.yaml", f.display()));
                }
            }
        }
        if f.extension().is_some_and(|x| x == "yaml") {
            docs.extend(documents(&strip_template(&text, values)));
        }
    }

    // The same objects as the base and the optional components, the CRD aside.
    let base = rendered("deploy/overlays/ha");
    let key = |d: &Value| {
        format!(
            "{} {}",
            d["kind"].as_str().unwrap(),
            d["metadata"]["name"].as_str().unwrap()
        )
    };
    let want: BTreeSet<String> = base
        .iter()
        .filter(|d| d["kind"] != "CustomResourceDefinition")
        .map(key)
        .collect();
    let got: BTreeSet<String> = docs.iter().map(key).collect();
    assert_eq!(got, want, "the chart's objects");

    for (kind, name) in [
        ("ClusterRole", "drover"),
        ("ClusterRole", "drover-clusterupgrades-view"),
        ("Role", "drover-leader-election"),
        ("Role", "drover-manifests"),
        ("Role", "drover-health-secrets"),
    ] {
        assert_eq!(
            rules(find(&docs, kind, name)),
            rules(find(&base, kind, name)),
            "{kind} {name}: the chart's rules are the base's"
        );
    }
    assert_eq!(
        find(&docs, "ClusterRole", "drover-clusterupgrades-view")["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );

    let pod = |docs: &[Value]| find(docs, "Deployment", "drover")["spec"]["template"]["spec"].clone();
    let (ours, theirs) = (pod(&docs), pod(&base));
    assert_eq!(ours["securityContext"], theirs["securityContext"]);
    assert_eq!(ours["serviceAccountName"], theirs["serviceAccountName"]);
    let (c, b) = (&ours["containers"][0], &theirs["containers"][0]);
    for field in ["env", "ports", "livenessProbe", "readinessProbe", "securityContext"] {
        assert_eq!(c[field], b[field], "the chart's container {field}");
    }
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for a in [
        "run",
        "--leader-elect",
        "--namespace",
        "--http-addr",
        "0.0.0.0:8080",
        "--log-format",
    ] {
        assert!(args.contains(&a), "the chart's args have {a}: {args:?}");
    }
    assert_eq!(
        find(&docs, "Service", "drover-metrics")["spec"]["ports"],
        find(&base, "Service", "drover-metrics")["spec"]["ports"]
    );
    assert_eq!(
        find(&docs, "PodDisruptionBudget", "drover")["spec"]["maxUnavailable"],
        find(&base, "PodDisruptionBudget", "drover")["spec"]["maxUnavailable"]
    );
}

#[test]
fn the_operations_guide_documents_exactly_the_metrics_drover_exports() {
    let m = drover_controller::Metrics::default();
    // Give every labelled family a value so it is encoded.
    m.set_counts("u", &drover_api::NodeCounts::default());
    let step = drover_controller::metrics::StepLabels {
        step: "Drain".into(),
        outcome: "done".into(),
    };
    m.steps.get_or_create(&step).inc();
    m.step_duration
        .get_or_create(&drover_controller::metrics::StepKind { step: "Drain".into() })
        .observe(1.0);
    let upgrade = drover_controller::metrics::UpgradeLabels { upgrade: "u".into() };
    m.rollouts_completed.get_or_create(&upgrade).inc();
    m.drain_blocks.get_or_create(&upgrade).inc();
    let exported: BTreeSet<String> = m
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            }
        })
        .collect();
    assert!(exported.len() >= 10, "{exported:?}");

    let doc = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let table: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `drover_"))
        .map(|l| format!("drover_{}", l.split('`').next().unwrap()))
        .collect();
    assert_eq!(table, exported, "the metrics table in docs/operations.md");
}

#[test]
fn relative_links_in_the_product_docs_resolve() {
    let mut files = vec![repo().join("README.md"), repo().join("deploy/helm/drover/README.md")];
    for d in [
        "getting-started",
        "user-guide",
        "status-reasons",
        "operations",
        "design",
    ] {
        files.push(repo().join(format!("docs/{d}.md")));
    }
    files.push(repo().join("examples/upgrade-images/README.md"));
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            let tail = &rest[i + 2..];
            let end = tail.find(')').unwrap();
            let target = &tail[..end];
            rest = &tail[end..];
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = f.parent().unwrap().join(path);
            assert!(resolved.exists(), "{}: link {target} does not resolve", f.display());
        }
    }
}

#[test]
fn the_status_reasons_guide_explains_every_reason_drover_writes() {
    // Each reason drover writes is named in docs/status-reasons.md, and
    // every section of the guide (`### `Reason``) and every row of its
    // healthy-states table (the reason column) is a reason drover has.
    let doc = std::fs::read_to_string(repo().join("docs/status-reasons.md")).unwrap();
    for r in drover_api::Reason::ALL {
        assert!(
            doc.contains(&format!("`{r}`")),
            "docs/status-reasons.md does not explain the reason {r}"
        );
    }
    // The conditions table of docs/api.md has a row for each too.
    let api = std::fs::read_to_string(repo().join("docs/api.md")).unwrap();
    let table = &api[api.find("### Conditions and reasons").unwrap()..];
    let table = &table[..table.find("\n\n`").unwrap_or(table.len())];
    for r in drover_api::Reason::ALL {
        if *r == drover_api::Reason::AsExpected {
            continue; // Stalled=False's reason, not a situation's
        }
        assert!(
            table.contains(&format!("`{r}`")),
            "the conditions table of docs/api.md has no row for {r}"
        );
    }
    let known: BTreeSet<&str> = drover_api::Reason::ALL.iter().map(|r| r.as_str()).collect();
    let sections = doc.lines().filter_map(|l| l.strip_prefix("### `"));
    let rows = doc
        .lines()
        .filter(|l| l.starts_with("| True |") || l.starts_with("| False |"))
        .filter_map(|l| l.split('|').nth(4))
        .filter_map(|cell| cell.trim().strip_prefix('`'));
    let named: Vec<&str> = sections.chain(rows).filter_map(|c| c.split('`').next()).collect();
    assert!(named.len() >= 15, "{named:?}");
    for d in named {
        assert!(
            known.contains(d),
            "docs/status-reasons.md explains {d:?}, which is not a reason drover writes"
        );
    }
}
