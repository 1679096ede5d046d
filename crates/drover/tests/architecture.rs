//! The shape the design promises (docs/design.md), checked on the source
//! and on cargo's own dependency graph: nodeops does not depend on the
//! planner, the planner on no client, the production binary carries no
//! simulator, and no crate's top-level modules import each other in a
//! circle.
//!
//! The production binary is drover built with `--no-default-features` (as
//! the Dockerfile builds it): its normal dependencies hold neither kubesim
//! nor the demo's progress display. With the default features (the `demo`
//! feature) they hold both, so the check notices when it stops seeing
//! anything. That the binary built this way lacks the `demo` subcommand is
//! checked by .ci/run (docs/testing.md): it builds it and runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The package names in `cargo tree -p <package> -e normal` with `extra` arguments.
fn tree(package: &str, extra: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .args(extra)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The crates the `demo` feature alone brings in.
const DEMO_ONLY: [&str; 2] = ["kubesim", "indicatif"];

#[test]
fn the_image_is_built_without_default_features() {
    let dockerfile = std::fs::read_to_string(workspace().join("Dockerfile")).expect("the Dockerfile");
    let build = dockerfile
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build in the Dockerfile");
    assert!(
        build.contains("-p drover") && build.contains("--no-default-features"),
        "the Dockerfile's build keeps the demo (and kubesim) in the image: {build}"
    );
}

#[test]
fn without_default_features_drover_depends_on_no_simulator() {
    let names = tree("drover", &["--no-default-features"]);
    assert!(names.contains("drover-controller"), "not drover's tree: {names:?}");
    for krate in DEMO_ONLY {
        assert!(
            !names.contains(krate),
            "`cargo tree -p drover --no-default-features -e normal` lists {krate}: the production binary would ship the demo's crates\n{names:#?}"
        );
    }
}

#[test]
fn with_the_default_demo_feature_drover_depends_on_the_simulator() {
    for extra in [&[][..], &["--features", "demo"]] {
        let names = tree("drover", extra);
        for krate in DEMO_ONLY {
            assert!(
                names.contains(krate),
                "cargo tree -p drover -e normal {extra:?} does not list {krate}: the check above would pass for nothing\n{names:#?}"
            );
        }
    }
}

#[test]
fn nodeops_depends_on_the_api_and_not_on_the_planner() {
    let deps = tree("drover-nodeops", &[]);
    assert!(deps.contains("drover-api"), "{deps:?}");
    assert!(
        !deps.contains("drover-plan"),
        "nodeops must not depend on the planner: {deps:?}"
    );
}

#[test]
fn the_planner_depends_on_no_client_and_no_other_drover_crate_but_the_api() {
    let deps = tree("drover-plan", &[]);
    for forbidden in ["drover-nodeops", "drover-controller", "kubesim", "tokio", "hyper"] {
        assert!(!deps.contains(forbidden), "drover-plan pulls in {forbidden}: {deps:?}");
    }
    assert!(deps.contains("drover-api"), "{deps:?}");
}

/// The top-level module of each source file of a crate (`src/a.rs` and
/// `src/a/**` are `a`; the crate root is left out), and the top-level
/// modules it names through `crate::`.
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .to_string();
        let module = first.trim_end_matches(".rs").to_string();
        if rel.components().count() == 1 && ["lib", "main"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let to = edges.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `drover_crate::`
            }
            let rest = &code[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                to.insert(name);
            }
        }
        // `use crate::{a, b::c}` names several.
        for (i, _) in code.match_indices("crate::{") {
            for item in braced_items(&code[i + "crate::{".len()..]) {
                if item != module && item != "self" {
                    to.insert(item);
                }
            }
        }
    }
    edges
}

/// The leading identifier of each item of a `{…}` list, given the text
/// after its opening brace: `a, b::c, d::{e, f}}` gives a, b, d.
fn braced_items(rest: &str) -> Vec<String> {
    let mut items = Vec::new();
    let (mut depth, mut piece) = (1, String::new());
    for c in rest.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 || (c == ',' && depth == 1) {
            let name: String = piece
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                items.push(name);
            }
            piece.clear();
            if depth == 0 {
                break;
            }
        } else {
            piece.push(c);
        }
    }
    items
}

/// A circle among the modules, if any, as the path that closes it.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut c = path[at..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if !done.insert(m.to_string()) {
            return None;
        }
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, path) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|m| visit(m, edges, &mut done, &mut Vec::new()))
}

#[test]
fn the_circle_finder_finds_a_circle_and_passes_a_line() {
    let e = |pairs: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            m.entry(a.to_string()).or_default().insert(b.to_string());
        }
        m
    };
    assert_eq!(circle(&e(&[("a", "b"), ("b", "c")])), None);
    let c = circle(&e(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap();
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4, "{c:?}");
    assert_eq!(braced_items("a, b::c, d::{e, f}};"), ["a", "b", "d"]);
}

#[test]
fn no_crate_has_an_import_circle_among_its_modules() {
    let crates = workspace().join("crates");
    let mut found = Vec::new();
    let mut checked = 0;
    for e in std::fs::read_dir(&crates).unwrap() {
        let src = e.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let edges = module_edges(&src);
        checked += edges.len();
        if let Some(c) = circle(&edges) {
            found.push(format!("{}: {}", src.display(), c.join(" → ")));
        }
    }
    assert!(checked > 50, "only {checked} modules read: is the walk right?");
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}
