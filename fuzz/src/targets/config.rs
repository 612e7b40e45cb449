//! The config loader, `monoship::config::parse`, on YAML text: generated configs (valid ones,
//! hostile names and values, misspelled keys, YAML anchors, tags and deep nesting), the same
//! with a few characters edited, and text with no structure at all.
//!
//! Properties: it never panics; an error names the file and every problem has a line within
//! the text (block-style YAML; flow style and empty text may have none); a config that loads
//! only has names that are safe as output names (and distinct from the action's outputs and
//! from each other up to case), one image repository per built service, known dependencies,
//! no cycle, globs that compile and repository paths that stay inside the repository.

use std::collections::{BTreeMap, BTreeSet};

use proptest::collection::vec;
use proptest::prelude::*;

use monoship::config::{self, Config, ConfigError};

use super::{edits, mutate, spicy_string};
use crate::harness::{self, Budget, Outcome};

#[derive(Debug, Clone)]
pub struct Input {
    pub text: String,
    /// Generated as block-style YAML and not edited afterwards: every problem must have a line.
    pub block_style: bool,
}

const FILE: &str = ".github/monoship.yml";

/// A second YAML document: serde_yaml_ng gives this error no location, so monoship finds the
/// `---` that starts it.
const MULTI_DOCUMENT: &str = "---\nservices: {}\n---\n";

fn name() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => proptest::sample::select(&["cart", "web", "api", "proto", "shared", "_x", "a-b", "A1"][..])
            .prop_map(String::from),
        1 => spicy_string(4),
    ]
}

/// A YAML scalar: plain, quoted or a flow list, from a pool that includes broken globs and
/// paths that leave the repository.
fn scalar() -> impl Strategy<Value = String> + Clone {
    let word = prop_oneof![
        proptest::sample::select(
            &[
                "src/**",
                "!**/*.md",
                "pb/**",
                "src/[x",
                "a/{b,c}",
                "/abs/Dockerfile",
                "../up/Dockerfile",
                "svc/Dockerfile",
                ".",
                "",
                "deployment/cart",
                "cronjob/x",
                "statefulset/",
                "ghcr.io/acme",
                "http://127.0.0.1:5000",
                "0",
                "-1",
                "true",
                "~",
                "null",
                "1e400",
                "*anchor",
                "&anchor x",
                "!!binary aGk=",
                "!custom x",
                "<<: *a",
            ][..]
        )
        .prop_map(String::from),
        spicy_string(5),
    ];
    prop_oneof![
        3 => word.clone(),
        2 => word.clone().prop_map(|w| format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))),
        1 => word.clone().prop_map(|w| format!("'{}'", w.replace('\'', "''"))),
        2 => vec(word, 0..3).prop_map(|v| format!("[{}]", v.iter().map(|w| format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))).collect::<Vec<_>>().join(", "))),
    ]
}

const SERVICE_KEYS: [&str; 12] = [
    "dockerfile",
    "context",
    "paths",
    "depends_on",
    "build_args",
    "target",
    "platforms",
    "repository",
    "deploy",
    "dockerfil",
    "depends-on",
    "<<",
];

fn service_block() -> impl Strategy<Value = String> + Clone {
    let field = prop_oneof![
        4 => (proptest::sample::select(&SERVICE_KEYS[..]), scalar())
            .prop_map(|(k, v)| format!("    {k}: {v}\n")),
        1 => (name(), scalar()).prop_map(|(dep, v)| format!("    depends_on: [{dep}]\n    paths:\n      - {v}\n")),
        1 => (scalar(), scalar()).prop_map(|(w, ns)| format!("    deploy:\n      - workload: {w}\n        namespace: {ns}\n      - manifests: [{w}]\n")),
        1 => (spicy_string(3), scalar()).prop_map(|(k, v)| format!("    build_args:\n      {k:?}: {v}\n")),
    ];
    vec(field, 0..5).prop_map(|f| f.concat())
}

fn document() -> impl Strategy<Value = String> {
    let service = (name(), service_block()).prop_map(|(n, body)| {
        let key = if n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !n.is_empty()
        {
            n
        } else {
            format!("{n:?}")
        };
        format!("  {key}:\n{body}")
    });
    let group = (name(), scalar(), name())
        .prop_map(|(n, p, d)| format!("  {n:?}:\n    paths: [{p}]\n    depends_on: [{d}]\n"));
    let extra = prop_oneof![
        Just(String::new()),
        scalar().prop_map(|u| format!("registry:\n  url: {u}\n")),
        scalar().prop_map(|p| format!("registry:\n  ecr:\n    prefix: {p}\n    region: x\n")),
        Just("registry:\n  url: a\n  ecr: {}\n".to_string()),
        scalar().prop_map(|n| format!("build:\n  max_parallel: {n}\n")),
        scalar().prop_map(|n| format!("cluster:\n  eks:\n    name: {n}\n")),
        Just("anchors: &a {x: 1}\n".to_string()),
        Just(MULTI_DOCUMENT.to_string()),
        (1usize..200).prop_map(|d| format!("deep: {}{}\n", "[".repeat(d), "]".repeat(d))),
        Just("a: &a [*a]\n".to_string()),
        Just("l0: &l0 [x, x, x, x, x, x, x, x, x]\nl1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]\nl2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\nl3: [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]\n".to_string()),
    ];
    (
        vec(service, 0..4),
        vec(group, 0..2),
        extra,
        prop_oneof![Just("\n"), Just("\r\n")],
    )
        .prop_map(|(services, groups, extra, eol)| {
            let mut text = String::from("services:\n");
            if services.is_empty() {
                text = "services: {}\n".into();
            }
            text.push_str(&services.concat());
            if !groups.is_empty() {
                text.push_str("groups:\n");
                text.push_str(&groups.concat());
            }
            text.push_str(&extra);
            text.replace('\n', eol)
        })
}

pub fn strategy() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => (document(), edits()).prop_map(|(text, e)| {
            let block_style = e.is_empty();
            Input { text: mutate(text, e), block_style }
        }),
        1 => spicy_string(40).prop_map(|text| Input { text, block_style: false }),
        1 => any::<String>().prop_map(|text| Input { text, block_style: false }),
    ]
}

pub fn run(budget: &Budget) -> Outcome {
    harness::run("config", strategy(), check, budget)
}

pub fn check(input: &Input) -> Result<(), String> {
    let text = &input.text;
    match config::parse(text, FILE) {
        Ok(config) => check_loaded(&config),
        Err(ConfigError::Read { .. }) => Err("parse() returned a read error".into()),
        Err(e @ ConfigError::Invalid { .. }) => {
            let rendered = e.to_string();
            if e.problems().is_empty() {
                return Err("an invalid config with no problem listed".into());
            }
            if !rendered.starts_with(FILE) {
                return Err(format!("the error does not name the file: {rendered:?}"));
            }
            let lines = yaml_line_count(text);
            for p in e.problems() {
                match p.line {
                    Some(l) if l == 0 || l > lines + 1 => {
                        return Err(format!("line {l} is outside the {lines}-line text: {p}"));
                    }
                    None if input.block_style && !text.trim().is_empty() => {
                        return Err(format!("a problem without a line: {p}"));
                    }
                    _ => {}
                }
            }
            Ok(())
        }
    }
}

/// Lines as YAML counts them: `\n`, `\r\n`, a lone `\r`, and also NEL, LS and PS.
fn yaml_line_count(text: &str) -> usize {
    let breaks = text.replace("\r\n", "\n");
    1 + breaks
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
}

/// What the rest of monoship relies on once a config has loaded.
fn check_loaded(c: &Config) -> Result<(), String> {
    let known: BTreeSet<&str> = c
        .services
        .keys()
        .chain(c.groups.keys())
        .map(String::as_str)
        .collect();
    if c.services.is_empty() {
        return Err("a config without services loaded".into());
    }
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, paths, deps) in c
        .services
        .iter()
        .map(|(n, s)| (n, &s.paths, &s.depends_on))
        .chain(c.groups.iter().map(|(n, g)| (n, &g.paths, &g.depends_on)))
    {
        let mut chars = name.chars();
        let safe = chars
            .next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !safe {
            return Err(format!(
                "unsafe name {name:?} loaded; it becomes an output name"
            ));
        }
        for p in paths {
            let (_, pattern) = monoship::plan::glob::split_negation(p);
            if monoship::plan::glob::compile(pattern).is_err() {
                return Err(format!("glob {p:?} of {name} loaded but does not compile"));
            }
        }
        for d in deps {
            if !known.contains(d.as_str()) {
                return Err(format!("{name} depends on unknown {d:?}"));
            }
        }
        edges.insert(name, deps.iter().map(String::as_str).collect());
    }
    if c.services.keys().any(|n| c.groups.contains_key(n)) {
        return Err("a name is both a service and a group".into());
    }
    // Service names become output names, which the runner compares without case.
    let mut folded = BTreeSet::new();
    for name in c.services.keys() {
        let lower = name.to_lowercase();
        if config::ACTION_OUTPUTS.contains(&lower.as_str()) || !folded.insert(lower) {
            return Err(format!(
                "service {name:?} loaded but takes another output's name"
            ));
        }
    }
    let mut repositories = BTreeSet::new();
    for (name, s) in c.services.iter().filter(|(_, s)| s.dockerfile.is_some()) {
        let repository = s
            .repository
            .clone()
            .unwrap_or_else(|| name.to_ascii_lowercase());
        if !repositories.insert(repository) {
            return Err(format!(
                "service {name:?} loaded but shares an image repository"
            ));
        }
    }
    if let Some(node) = cycle(&edges) {
        return Err(format!("a dependency cycle through {node} loaded"));
    }
    for (name, s) in &c.services {
        for path in s.dockerfile.iter().chain(s.context.iter()) {
            if path.starts_with('/') || path.split('/').any(|seg| seg == "..") {
                return Err(format!("{name}: path {path:?} leaves the repository"));
            }
        }
    }
    Ok(())
}

fn cycle<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<&'a str> {
    // Kahn's algorithm: whatever cannot be removed lies on or behind a cycle.
    let mut indegree: BTreeMap<&str, usize> = edges.keys().map(|k| (*k, 0)).collect();
    for deps in edges.values() {
        for d in deps {
            *indegree.entry(d).or_default() += 1;
        }
    }
    let mut ready: Vec<&str> = indegree
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut removed = 0;
    while let Some(node) = ready.pop() {
        removed += 1;
        for d in edges.get(node).into_iter().flatten() {
            let n = indegree.get_mut(d).expect("counted");
            *n -= 1;
            if *n == 0 {
                ready.push(d);
            }
        }
    }
    (removed < indegree.len())
        .then(|| indegree.iter().find(|(_, n)| **n > 0).map(|(k, _)| *k))
        .flatten()
}
