//! kubesim's modules import one another one way only: no cycle among the
//! top-level modules of `src/`, and inside `store` no child (strategies,
//! validation, apply, tables...) uses the store module itself, nor is there
//! a cycle among its children.
//!
//! The graph is read from the source: every path that starts with `crate::`,
//! `super::`, `self::` or a child module's name, in `use` items (grouped ones
//! expanded) and in code, outside comments and string literals. A path ends
//! at the deepest module it names; an item re-exported with `pub use` counts
//! as an import of the module it comes from. The checks run on fixtures
//! first, so the test shows it fails when a cycle is there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type ModPath = Vec<String>;

/// One source file: its module path (`[]` for lib.rs) and its text.
struct File {
    module: ModPath,
    text: String,
}

/// Replaces comments and string and char literals by spaces.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let at = |j: usize| c.get(j).copied().unwrap_or('\0');
        if c[i] == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if (c[i] == 'r' || c[i] == 'b')
            && !at(i.wrapping_sub(1)).is_alphanumeric()
            && (at(i + 1) == '"' || at(i + 1) == '#' || (c[i] == 'b' && at(i + 1) == 'r'))
            && raw_string_end(&c, i).is_some()
        {
            i = raw_string_end(&c, i).unwrap();
            out.push_str("\"\"");
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' && (at(i + 2) == '\'' || (at(i + 1) == '\\' && (i + 2..i + 12).any(|j| at(j) == '\''))) {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime.
            i += 1;
            while i < c.len() && c[i] != '\'' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The index after a raw (byte) string starting at `i`, if one starts there.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        // b"...": an ordinary (byte) string.
        return (c.get(j) == Some(&'"') && j > i).then(|| {
            let mut k = j + 1;
            while k < c.len() && c[k] != '"' {
                k += if c[k] == '\\' { 2 } else { 1 };
            }
            k + 1
        });
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

fn tokens(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let c: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_alphanumeric() || c[i] == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if c[i].is_whitespace() {
            i += 1;
        } else {
            out.push(c[i].to_string());
            i += 1;
        }
    }
    out
}

/// Expands a use tree (`a::{b, c::d as e, f::*}`) into its paths.
fn use_paths(toks: &[String]) -> Vec<Vec<String>> {
    fn tree(toks: &[String], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        while *i < toks.len() {
            match toks[*i].as_str() {
                "::" => *i += 1,
                "{" => {
                    *i += 1;
                    loop {
                        tree(toks, i, &path, out);
                        match toks.get(*i).map(String::as_str) {
                            Some(",") => *i += 1,
                            Some("}") => {
                                *i += 1;
                                break;
                            }
                            _ => break,
                        }
                        if toks.get(*i).map(String::as_str) == Some("}") {
                            *i += 1;
                            break;
                        }
                    }
                    return;
                }
                "," | "}" => break,
                "as" => *i += 2,
                t => {
                    path.push(t.to_string());
                    *i += 1;
                }
            }
        }
        if path.len() > prefix.len() {
            out.push(path);
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    tree(toks, &mut i, &[], &mut out);
    out
}

/// A reference to a path: from which file's module, in which (inline)
/// module scope, and whether it is a `pub use`.
struct Reference {
    file: ModPath,
    scope: ModPath,
    path: Vec<String>,
    reexport: bool,
}

/// The module paths declared in `text` as children of `module` (`mod x;`
/// and inline `mod x { ... }`), and every path reference it makes.
fn scan(file: &File) -> (BTreeSet<ModPath>, Vec<Reference>) {
    let toks = tokens(&strip(&file.text));
    let mut children = BTreeSet::new();
    let mut refs = Vec::new();
    // Inline modules: (name, the brace depth they opened at).
    let mut scopes: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let current = |scopes: &[(String, usize)]| -> ModPath {
        let mut m = file.module.clone();
        m.extend(scopes.iter().map(|(n, _)| n.clone()));
        m
    };
    while i < toks.len() {
        let t = toks[i].as_str();
        match t {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if scopes.last().is_some_and(|(_, d)| *d == depth) {
                    scopes.pop();
                }
            }
            "mod" if i + 2 < toks.len() => {
                let name = toks[i + 1].clone();
                let mut m = current(&scopes);
                m.push(name.clone());
                children.insert(m);
                if toks[i + 2] == "{" {
                    scopes.push((name, depth));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            "use" => {
                let reexport = i > 0 && (toks[i - 1] == "pub" || toks[i - 1] == ")");
                let end = (i..toks.len()).find(|&j| toks[j] == ";").unwrap_or(toks.len());
                for path in use_paths(&toks[i + 1..end]) {
                    refs.push(Reference {
                        file: file.module.clone(),
                        scope: current(&scopes),
                        path,
                        reexport,
                    });
                }
                i = end + 1;
                continue;
            }
            _ => {
                let starts_path = matches!(t, "crate" | "super" | "self")
                    || (t.chars().next().is_some_and(|c| c.is_lowercase() || c == '_')
                        && (i == 0 || toks[i - 1] != "::"));
                if starts_path && toks.get(i + 1).map(String::as_str) == Some("::") {
                    let mut path = vec![t.to_string()];
                    let mut j = i + 1;
                    while toks.get(j).map(String::as_str) == Some("::")
                        && toks
                            .get(j + 1)
                            .is_some_and(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'))
                    {
                        path.push(toks[j + 1].clone());
                        j += 2;
                    }
                    refs.push(Reference {
                        file: file.module.clone(),
                        scope: current(&scopes),
                        path,
                        reexport: false,
                    });
                    i = j;
                    continue;
                }
            }
        }
        i += 1;
    }
    (children, refs)
}

/// The module graph: module -> the modules it imports.
struct Graph {
    edges: BTreeMap<ModPath, BTreeSet<ModPath>>,
}

impl Graph {
    fn build(files: &[File]) -> Graph {
        let mut modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
        let mut refs = Vec::new();
        for f in files {
            let (children, r) = scan(f);
            modules.extend(children);
            refs.extend(r);
        }
        // Where a path lands: the deepest module it names and the item after it.
        let absolute = |from: &ModPath, path: &[String]| -> Option<Vec<String>> {
            let mut abs: Vec<String> = from.clone();
            let mut rest = path;
            match path.first().map(String::as_str) {
                Some("crate") => {
                    abs.clear();
                    rest = &path[1..];
                }
                Some("self") => rest = &path[1..],
                Some("super") => {
                    while rest.first().map(String::as_str) == Some("super") {
                        abs.pop()?;
                        rest = &rest[1..];
                    }
                }
                Some(first) => {
                    let mut child = from.clone();
                    child.push(first.to_string());
                    if !modules.contains(&child) {
                        return None; // another crate, a type, a local item
                    }
                }
                None => return None,
            }
            abs.extend(rest.iter().cloned());
            Some(abs)
        };
        let split = |abs: &[String]| -> (ModPath, Option<String>) {
            let mut n = abs.len();
            while n > 0 && !modules.contains(&abs[..n]) {
                n -= 1;
            }
            (abs[..n].to_vec(), abs.get(n).cloned())
        };
        // `pub use` re-exports: (module, name) -> where the name comes from
        // (a module and the item's name there, None for a module).
        let mut reexports: BTreeMap<(ModPath, String), (ModPath, Option<String>)> = BTreeMap::new();
        for r in refs.iter().filter(|r| r.reexport) {
            if let Some(abs) = absolute(&r.scope, &r.path) {
                let (m, item) = split(&abs);
                let name = item.clone().unwrap_or_else(|| m.last().cloned().unwrap_or_default());
                if m != r.scope {
                    reexports.insert((r.scope.clone(), name), (m, item));
                }
            }
        }
        // Each reference is an edge from its file's module (inline modules,
        // such as tests, are part of their file) to where the path lands.
        let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for r in &refs {
            let Some(abs) = absolute(&r.scope, &r.path) else {
                continue;
            };
            let (mut m, mut item) = split(&abs);
            for _ in 0..8 {
                match item.as_ref().and_then(|i| reexports.get(&(m.clone(), i.clone()))) {
                    Some((src, original)) => {
                        m = src.clone();
                        item = original.clone();
                    }
                    None => break,
                }
            }
            if m != r.file {
                edges.entry(r.file.clone()).or_default().insert(m);
            }
        }
        Graph { edges }
    }

    /// The graph with each module cut to its first `depth` segments under
    /// `within` (only modules under `within` kept), without self-edges.
    fn collapsed(&self, within: &[String], depth: usize) -> BTreeMap<String, BTreeSet<String>> {
        let name = |m: &ModPath| -> Option<String> {
            if !m.starts_with(within) {
                return None;
            }
            let cut = &m[..m.len().min(within.len() + depth)];
            Some(if cut.is_empty() {
                "crate".to_string()
            } else {
                cut.join("::")
            })
        };
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, tos) in &self.edges {
            let Some(a) = name(from) else { continue };
            for to in tos {
                if let Some(b) = name(to)
                    && a != b
                {
                    out.entry(a.clone()).or_default().insert(b);
                }
            }
        }
        out
    }
}

/// The cycles of a graph: its strongly connected components of more than
/// one node, each sorted.
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = g.keys().chain(g.values().flatten()).collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for m in g.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> = nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for n in &nodes {
        if !reachable[n].contains(*n) {
            continue;
        }
        let scc: Vec<String> = nodes
            .iter()
            .filter(|m| reachable[n].contains(**m) && reachable[*m].contains(*n))
            .map(|m| m.to_string())
            .collect();
        if !out.contains(&scc) {
            out.push(scc);
        }
    }
    out
}

/// The problems the checks find: top-level cycles, cycles among store's
/// children, and children of store that use the store module.
fn problems(files: &[File]) -> Vec<String> {
    let g = Graph::build(files);
    let mut out = Vec::new();
    for c in cycles(&g.collapsed(&[], 1)) {
        out.push(format!("top-level modules import one another: {}", c.join(" <-> ")));
    }
    let store = vec!["store".to_string()];
    let inner = g.collapsed(&store, 1);
    for c in cycles(&inner) {
        out.push(format!("store's modules import one another: {}", c.join(" <-> ")));
    }
    for (from, tos) in &inner {
        if from != "store" && tos.contains("store") {
            out.push(format!("{from} uses the store module"));
        }
    }
    out
}

fn read_src(src: &Path) -> Vec<File> {
    fn walk(dir: &Path, module: &ModPath, out: &mut Vec<File>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                if module.is_empty() && name == "bin" {
                    continue; // separate crates
                }
                let mut m = module.clone();
                m.push(name);
                walk(&p, &m, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut m = module.clone();
                if !(stem == "mod" || (module.is_empty() && stem == "lib")) {
                    m.push(stem.to_string());
                }
                out.push(File {
                    module: m,
                    text: std::fs::read_to_string(&p).unwrap(),
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(src, &Vec::new(), &mut out);
    out
}

fn fixture(files: &[(&str, &str)]) -> Vec<File> {
    files
        .iter()
        .map(|(m, text)| File {
            module: m.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect(),
            text: text.to_string(),
        })
        .collect()
}

#[test]
fn the_checks_find_cycles() {
    // A top-level cycle through a grouped use and a path in code.
    let f = fixture(&[
        ("", "pub mod a; pub mod b; pub mod c;"),
        ("a", "use crate::{c, b::{Thing as T}};\nfn f() {}"),
        ("b", "pub struct Thing; fn g() { crate::a::f(); }"),
        (
            "c",
            "// crate::a::f() in a comment\nfn h() { let s = \"crate::a::f\"; }",
        ),
    ]);
    assert_eq!(problems(&f), vec!["top-level modules import one another: a <-> b"]);
    // A child of store using the store module (through super::), the store
    // module using the child (a bare child path): both problems.
    let f = fixture(&[
        ("", "pub mod store;"),
        (
            "store",
            "mod strategy; mod resources;\npub use resources::Kind;\npub struct Store;\nfn w() { strategy::of(); }",
        ),
        ("store::strategy", "use super::Store;\nuse super::Kind;\npub fn of() {}"),
        ("store::resources", "pub enum Kind { A }"),
    ]);
    assert_eq!(
        problems(&f),
        vec![
            "store's modules import one another: store <-> store::strategy",
            "store::strategy uses the store module",
        ]
    );
    // Re-exports resolve to their source; inline test modules' super:: is
    // their file; nested super::super reaches the grandparent.
    let f = fixture(&[
        ("", "pub mod store; pub mod sim; pub use store::Store;"),
        (
            "store",
            "mod strategy; mod resources; pub use resources::Kind;\npub struct Store;\nfn w() { strategy::of(); }\n#[cfg(test)] mod tests { use super::*; }",
        ),
        ("store::strategy", "mod pod; use super::Kind; pub fn of() {}"),
        (
            "store::strategy::pod",
            "use super::super::resources::Kind; use crate::store::Kind as K;",
        ),
        ("store::resources", "pub enum Kind { A }"),
        (
            "sim",
            "use crate::Store; fn s() { let x = 'a'; let y = '\\''; let r = r#\"crate::sim\"#; }",
        ),
    ]);
    assert_eq!(problems(&f), Vec::<String>::new());
    let g = Graph::build(&f);
    let pod: ModPath = vec!["store".into(), "strategy".into(), "pod".into()];
    assert_eq!(
        g.edges[&pod],
        BTreeSet::from([vec!["store".to_string(), "resources".to_string()]])
    );
}

#[test]
fn kubesim_modules_import_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_src(&src);
    assert!(files.len() > 40, "read {} files from {}", files.len(), src.display());
    let g = Graph::build(&files);
    let top = g.collapsed(&[], 1);
    let store = g.collapsed(&["store".to_string()], 1);
    for (from, tos) in top.iter().chain(&store) {
        println!("{from} -> {}", tos.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    let problems = problems(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The graph is real: the store is used, and uses its lower layers.
    assert!(top["http"].contains("store"), "{top:?}");
    assert!(store["store"].contains("store::strategy"), "{store:?}");
    assert!(store["store::strategy"].contains("store::validation"), "{store:?}");
}
