//! The core's architecture rules, checked on its source (see `docs/ARCHITECTURE.md`):
//!
//! - every module imports only from the layers below its own (the order is [`LAYERS`]);
//! - no import cycle among the modules (one file is one module);
//! - no SQL text outside `src/store/` (and the SQL port's conformance suite, which tests the
//!   port itself).
//!
//! Test code (`#[cfg(test)]` modules) is not checked: a unit test may use any adapter.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, bottom first: a module of one layer may import its own top-level module and
/// any module of a lower layer, nothing else.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["model", "webhooks"],
    &["config"],
    &["ports"],
    &["store", "room", "smtp"],
    &["services"],
    &["api", "queue"],
    &["memory"],
];

/// Files outside the store that may hold SQL text, and why.
const SQL_ALLOWED: &[(&str, &str)] = &[(
    "ports/conformance.rs",
    "the SQL port's conformance suite runs its own statements against each backend",
)];

/// Words that start or shape a SQL statement, as the core writes them.
const SQL_WORDS: &[&str] = &[
    "SELECT ",
    "INSERT INTO",
    "INSERT OR",
    "UPDATE ",
    "DELETE FROM",
    "CREATE TABLE",
    "ALTER TABLE",
    " WHERE ",
    "ON CONFLICT",
];

struct Module {
    /// `a::b` for `src/a/b.rs` or `src/a/b/mod.rs`; empty for `lib.rs`.
    path: Vec<String>,
    /// Source without test modules and comments.
    code: String,
    /// Relative file name, for messages.
    file: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file as the checks see it: up to its first `#[cfg(test)]`, without comments.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| match line.trim_start() {
            l if l.starts_with("//") => "",
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn modules() -> Vec<Module> {
    let src = src_dir();
    let mut files = Vec::new();
    collect(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let rel = file.strip_prefix(&src).expect("under src");
            let mut path: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if path.last().is_some_and(|l| l == "mod" || l == "lib") {
                path.pop();
            }
            Module {
                path,
                code: code_of(&fs::read_to_string(&file).expect("read source")),
                file: rel.to_string_lossy().into_owned(),
            }
        })
        .collect()
}

/// Every `crate::...` path in `code`, with brace groups expanded one level
/// (`crate::a::{b, c::d}` gives `a::b` and `a::c::d`).
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let preceded = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded {
            continue;
        }
        let prefix: Vec<String> = path_segments(rest);
        let after = &rest[prefix
            .iter()
            .map(|s| s.len() + 2)
            .sum::<usize>()
            .min(rest.len())..];
        if let Some(group) = after.strip_prefix('{') {
            let body = group.split('}').next().unwrap_or_default();
            for item in body.split(',') {
                let mut path = prefix.clone();
                path.extend(path_segments(item.trim()));
                out.push(path);
            }
        } else {
            out.push(prefix);
        }
    }
    out
}

/// The leading `a::b::c` segments of `text` (lower-case module names only).
fn path_segments(text: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let len = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            break;
        }
        segments.push(rest[..len].to_owned());
        match rest[len..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    segments
}

fn layer_of(top: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&top))
        .unwrap_or_else(|| panic!("module `{top}` is in no layer: add it to LAYERS"))
}

/// The module a path refers to: its longest prefix that is a module of the crate.
fn resolve(path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains(p))
}

#[test]
fn every_import_points_down_the_layers_and_no_module_cycle_exists() {
    let modules = modules();
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let mut violations = Vec::new();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for module in modules.iter().filter(|m| !m.path.is_empty()) {
        let own = layer_of(&module.path[0]);
        for path in crate_paths(&module.code) {
            let Some(target) = resolve(&path, &known) else {
                continue;
            };
            if target.is_empty() || target == module.path {
                continue;
            }
            let theirs = layer_of(&target[0]);
            if target[0] != module.path[0] && theirs >= own {
                violations.push(format!(
                    "{} imports crate::{} (layer {theirs} is not below layer {own})",
                    module.file,
                    target.join("::")
                ));
            }
            // A module's parent is not a dependency edge for cycles (it declares it).
            if !module.path.starts_with(&target) {
                edges.entry(module.path.clone()).or_default().insert(target);
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layers:\n{}",
        violations.join("\n")
    );
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        panic!("import cycle: {}", names.join(" -> "));
    }
}

fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut marks, &mut Vec::new()))
}

#[test]
fn sql_lives_only_in_the_store() {
    let mut found = Vec::new();
    for module in modules() {
        if module.path.first().is_some_and(|top| top == "store")
            || SQL_ALLOWED.iter().any(|(file, _)| *file == module.file)
        {
            continue;
        }
        for (n, line) in module.code.lines().enumerate() {
            if SQL_WORDS.iter().any(|word| line.contains(word)) && line.contains('"') {
                found.push(format!("{}:{}: {}", module.file, n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "SQL outside src/store ({} lines):\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_checks_see_imports_and_sql() {
    // The checks above must be able to fail: a parsed import and a cycle are found.
    let paths = crate_paths("use crate::ports::{Sql, SqlExt as _};\nuse crate::model::ids;");
    assert!(paths.contains(&vec!["ports".to_owned()]));
    assert!(paths.contains(&vec!["model".to_owned(), "ids".to_owned()]));
    let a = vec!["a".to_owned()];
    let b = vec!["b".to_owned()];
    let edges = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert!(find_cycle(&edges).is_some());
    assert!(code_of("let x = 1;\n// SELECT\n#[cfg(test)]\nSELECT").contains("let x"));
    assert!(!code_of("// SELECT * FROM t\n#[cfg(test)]\n\"SELECT 1\"").contains("SELECT"));
}
