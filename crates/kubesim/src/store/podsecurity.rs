//! PodSecurity admission, a small subset: a namespace labelled
//! `pod-security.kubernetes.io/enforce: baseline` or `restricted` refuses
//! pods that use host namespaces (hostNetwork, hostPID, hostIPC), hostPath
//! volumes or privileged containers, with 403 Forbidden in the real
//! server's words (`violates PodSecurity "baseline:latest": …`). These are
//! baseline's checks that drover's upgrade and backup pods meet; the rest of
//! baseline (capabilities, host ports, sysctls, AppArmor, SELinux, seccomp)
//! and restricted's further checks (runAsNonRoot, allowPrivilegeEscalation,
//! volume types…) are not simulated: a pod they alone would refuse is
//! admitted here. Cluster-wide defaults (an AdmissionConfiguration) and
//! exemptions are not simulated either; `warn` and `audit` labels are ignored.

use serde_json::Value;

pub const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";

/// Why the namespace's enforce level refuses the pod, as the real server
/// words it after `pods "<name>" is forbidden: `; None when admitted.
/// `label` reads one of the namespace's labels.
pub(super) fn refusal<'a>(label: impl Fn(&str) -> Option<&'a str>, pod: &Value) -> Option<String> {
    let level = label(ENFORCE)?;
    if level != "baseline" && level != "restricted" {
        return None;
    }
    let version = label(ENFORCE_VERSION).unwrap_or("latest");
    let spec = &pod["spec"];
    let mut violations = Vec::new();
    let host: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec[**f] == true)
        .map(|f| format!("{f}=true"))
        .collect();
    if !host.is_empty() {
        violations.push(format!("host namespaces ({})", host.join(", ")));
    }
    let host_paths: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["hostPath"].is_object())
        .map(|v| format!("{:?}", v["name"].as_str().unwrap_or_default()))
        .collect();
    if !host_paths.is_empty() {
        let noun = if host_paths.len() == 1 { "volume" } else { "volumes" };
        violations.push(format!("hostPath volumes ({noun} {})", host_paths.join(", ")));
    }
    let privileged: Vec<String> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .filter(|c| c["securityContext"]["privileged"] == true)
        .map(|c| format!("{:?}", c["name"].as_str().unwrap_or_default()))
        .collect();
    if !privileged.is_empty() {
        let noun = if privileged.len() == 1 {
            "container"
        } else {
            "containers"
        };
        violations.push(format!(
            "privileged ({noun} {} must not set securityContext.privileged=true)",
            privileged.join(", ")
        ));
    }
    (!violations.is_empty()).then(|| format!("violates PodSecurity \"{level}:{version}\": {}", violations.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ns(level: &'static str) -> impl Fn(&str) -> Option<&'static str> {
        move |k| (k == ENFORCE).then_some(level)
    }

    #[test]
    fn baseline_refuses_host_namespaces_host_paths_and_privileged_containers_in_the_servers_words() {
        let pod = json!({"spec": {
            "hostPID": true,
            "volumes": [{"name": "host-root", "hostPath": {"path": "/"}}, {"name": "tmp", "emptyDir": {}}],
            "containers": [{"name": "upgrade", "securityContext": {"privileged": true}}]
        }});
        assert_eq!(
            refusal(ns("baseline"), &pod).as_deref(),
            Some(
                "violates PodSecurity \"baseline:latest\": host namespaces (hostPID=true), hostPath volumes (volume \"host-root\"), privileged (container \"upgrade\" must not set securityContext.privileged=true)"
            )
        );
        assert!(
            refusal(ns("restricted"), &pod)
                .unwrap()
                .contains("\"restricted:latest\"")
        );
        assert_eq!(refusal(ns("privileged"), &pod), None);
        assert_eq!(refusal(|_| None, &pod), None);
        let plain = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(refusal(ns("baseline"), &plain), None);
    }
}
