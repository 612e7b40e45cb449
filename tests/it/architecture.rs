//! The shape of `src/`: module imports form no cycle. A folder's `mod.rs` may use its own
//! children (it is their facade); every other reference between two files is an edge, and
//! the edges must form a DAG so each stage can be read without the ones after it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path (`deploy::eks`) for every file of the library.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut segments: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if segments.last().is_some_and(|s| s == "mod") {
                segments.pop();
            }
            let name = match segments.as_slice() {
                [only] if only == "lib" => String::new(),
                [only] if only == "main" => continue,
                _ => segments.join("::"),
            };
            out.insert(name, path);
        }
    }
    out
}

/// The file's code without its unit tests and without comments.
fn code_of(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path written as `crate::a::b` or `super::a` in `code`, with `{x, y}` groups expanded
/// to their first segment, made absolute for the module `me`.
fn references(code: &str, me: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start).map(|i| i + from) {
            from = i + start.len();
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
                continue;
            }
            let mut base: Vec<String> = if start == "crate::" {
                vec![]
            } else {
                let mut parent: Vec<String> = me
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                // In `deploy/mod.rs`, `super` is the crate; in `deploy/wait.rs` it is `deploy`.
                parent.pop();
                parent
            };
            let mut rest = &code[from..];
            loop {
                let ident: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if ident == "super" {
                    base.pop();
                } else if !ident.is_empty() {
                    base.push(ident.clone());
                }
                rest = &rest[ident.len()..];
                if let Some(r) = rest.strip_prefix("::") {
                    rest = r;
                    if let Some(group) = rest.strip_prefix('{') {
                        let end = group.find('}').unwrap_or(group.len());
                        for item in group[..end].split(',') {
                            let first: String = item
                                .trim()
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            if !first.is_empty() && first != "self" {
                                let mut path = base.clone();
                                path.push(first);
                                found.push(path);
                            }
                        }
                        break;
                    }
                    continue;
                }
                break;
            }
            found.push(base);
        }
    }
    found
}

/// The module a path lands in: its longest prefix that is a file of the library.
fn owner(path: &[String], modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

fn is_child_of(child: &str, parent: &str) -> bool {
    let parent_depth = parent.split("::").filter(|s| !s.is_empty()).count();
    let child_segments: Vec<&str> = child.split("::").collect();
    child_segments.len() == parent_depth + 1
        && (parent.is_empty() || child.starts_with(&format!("{parent}::")))
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    let mut graph = BTreeMap::new();
    for (me, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let mut edges = BTreeSet::new();
        for path in references(&code_of(&text), me) {
            let Some(target) = owner(&path, &modules) else {
                continue;
            };
            if &target == me || is_child_of(&target, me) {
                continue;
            }
            edges.insert(target);
        }
        graph.insert(me.clone(), edges);
    }
    graph
}

/// A cycle of `graph`, if it has one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let at = path.iter().position(|p| p == node).unwrap();
                let mut cycle = path[at..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn library_modules_import_each_other_without_cycles() {
    let graph = import_graph();
    // The graph is real: the orchestration reaches every stage.
    let app = &graph["app"];
    for stage in ["detect", "plan", "config"] {
        assert!(
            app.iter().any(|m| m.starts_with(stage)),
            "app -> {stage}: {app:?}"
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle in src/: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
}

#[test]
fn references_resolve_groups_and_super() {
    let code = "use crate::report::{annotations, outputs::Thing};\nuse super::pods::is_ready;";
    let refs = references(code, "deploy::wait");
    assert!(refs.contains(&vec!["report".into(), "annotations".into()]));
    assert!(refs.contains(&vec!["report".into(), "outputs".into()]));
    assert!(refs.contains(&vec!["deploy".into(), "pods".into(), "is_ready".into()]));
}

/// CI runs on a bare clone: whatever the tests, benchmarks and scripts read must be inside
/// the repository, never in a folder beside it.
#[test]
fn tests_and_scripts_read_nothing_beside_the_clone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offenders = Vec::new();
    let mut stack: Vec<PathBuf> = ["src", "tests", "bench", "scripts", ".ci", ".github"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.map(|e| e.unwrap().path()) {
            if path.is_dir() && !path.ends_with(".ci/.venv") && !path.ends_with("bench/out") {
                stack.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                if text.contains(&format!("../{}/", "shared")) {
                    offenders.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
    }
    assert!(offenders.is_empty(), "read from ../shared: {offenders:?}");
}
