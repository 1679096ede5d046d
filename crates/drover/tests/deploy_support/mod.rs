//! Helpers shared by the manifest and RBAC tests: files, YAML documents,
//! RBAC rules, and `kubectl` with a timeout.

#![allow(dead_code)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "drover-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every `.yaml`/`.yml` file under `dir`, sorted, skipping the `exclude` trees.
pub fn yaml_files(dir: &Path, exclude: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if exclude.iter().any(|e| d.starts_with(e)) {
            continue;
        }
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The non-empty YAML documents of a stream, as JSON values (anchors resolved).
pub fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).expect("valid YAML");
            serde_json::to_value(v).expect("YAML that is also JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// One RBAC policy rule (resource rules only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
}

/// The rules of a Role or ClusterRole document.
pub fn rules(role: &Value) -> Vec<Rule> {
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            assert!(
                r.get("nonResourceURLs").is_none(),
                "drover needs no non-resource URL rules"
            );
            Rule {
                groups: list(&r["apiGroups"]),
                resources: list(&r["resources"]),
                verbs: list(&r["verbs"]),
            }
        })
        .collect()
}

impl Rule {
    /// Whether this rule allows `verb` on `group`/`resource` (with `/subresource`).
    pub fn allows(&self, group: &str, resource: &str, verb: &str) -> bool {
        let any = |xs: &[String], x: &str| xs.iter().any(|y| y == "*" || y == x);
        any(&self.groups, group) && any(&self.resources, resource) && any(&self.verbs, verb)
    }
}

/// What a kubectl run came to.
#[derive(Debug)]
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    /// stdout and stderr together, for messages.
    pub text: String,
}

/// Run `/usr/bin/kubectl` (or `kubectl` on the PATH), killed after `timeout`.
pub fn kubectl(kubeconfig: Option<&Path>, args: &[&str], timeout: Duration) -> Output {
    let bin = if Path::new("/usr/bin/kubectl").exists() {
        "/usr/bin/kubectl"
    } else {
        "kubectl"
    };
    let mut cmd = Command::new(bin);
    if let Some(kc) = kubeconfig {
        cmd.arg("--kubeconfig").arg(kc);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    // Read both pipes on threads so a chatty kubectl cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap();
    let stderr = err_t.join().unwrap();
    let text = format!(
        "kubectl {}{}\n{stdout}{stderr}",
        args.join(" "),
        if status.is_none() { " (killed: timed out)" } else { "" }
    );
    Output {
        ok: status.is_some_and(|s| s.success()),
        stdout,
        text,
    }
}
