//! The production binary has no simulator in it: built with
//! `--no-default-features` (as the Dockerfile builds it), drover's normal
//! dependencies hold neither kubesim nor the demo's progress display. With
//! the default features (the `demo` feature) they hold both, so this test
//! notices when its own check stops seeing anything. And the Dockerfile
//! does build that way.
//!
//! That the binary built this way lacks the `demo` subcommand is checked by
//! .ci/run (docs/testing.md): it builds it and runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The crates the `demo` feature alone brings in.
const DEMO_ONLY: [&str; 2] = ["kubesim", "indicatif"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The package names in `cargo tree -p drover -e normal` with `extra` flags.
fn normal_dependencies(extra: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .args(["tree", "-p", "drover", "-e", "normal", "--prefix", "none"])
        .args(extra)
        .output()
        .expect("running cargo tree");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree {extra:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(
        names.iter().any(|n| n == "drover-controller"),
        "cargo tree {extra:?} does not look like drover's tree:\n{stdout}"
    );
    names
}

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
    let names = normal_dependencies(&["--no-default-features"]);
    for krate in DEMO_ONLY {
        assert!(
            !names.iter().any(|n| n == krate),
            "`cargo tree -p drover --no-default-features -e normal` lists {krate}: the production binary would ship the demo's crates\n{names:#?}"
        );
    }
}

#[test]
fn with_the_default_demo_feature_drover_depends_on_the_simulator() {
    for extra in [&[][..], &["--features", "demo"]] {
        let names = normal_dependencies(extra);
        for krate in DEMO_ONLY {
            assert!(
                names.iter().any(|n| n == krate),
                "cargo tree -p drover -e normal {extra:?} does not list {krate}: the check above would pass for nothing\n{names:#?}"
            );
        }
    }
}
