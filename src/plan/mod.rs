//! Plan: which services a set of changed files touches, and why (SPEC §4). Pure: config,
//! each service's Docker inputs (read at `head` by the caller) and the changed files in; a
//! [`Plan`] out.
//!
//! Every pattern of every service and group goes into one glob set, so matching costs one
//! pass over the changed files whatever the number of services.

pub mod dockerfile;
pub mod dockerignore;
pub mod glob;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::config::Config;
use crate::detect::{ChangeSource, ChangedFile};
use crate::plan::dockerfile::BuildInputs;
use crate::plan::dockerignore::DockerIgnore;
use crate::plan::glob::{CharGlobSet as GlobSet, CharGlobSetBuilder as GlobSetBuilder};

/// At most this many reasons are kept per service; the rest are counted.
pub const MAX_REASONS: usize = 20;

/// Why a service changed: the path and the rule that matched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub path: String,
    pub rule: String,
}

/// The verdict for one service or group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodePlan {
    pub name: String,
    pub changed: bool,
    pub reasons: Vec<Reason>,
    /// Reasons beyond [`MAX_REASONS`], counted but not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub more_reasons: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What `plan` decided, as printed by `plan --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub base: Option<String>,
    pub head: String,
    pub source: ChangeSource,
    /// Names of the changed services, sorted.
    pub changed: Vec<String>,
    /// Every configured service, sorted by name.
    pub services: Vec<NodePlan>,
    /// Every configured group, sorted by name.
    pub groups: Vec<NodePlan>,
    /// How many changed paths were considered.
    pub files: usize,
    /// Things the user should know (a fallback taken, a file list cut short).
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn service(&self, name: &str) -> Option<&NodePlan> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// A service's Docker build, as found at `head`.
#[derive(Debug, Clone)]
pub struct DockerBuild {
    /// Repository path of the Dockerfile.
    pub dockerfile: String,
    /// Repository path of the context folder, `""` for the repository root.
    pub context: String,
    /// Both places an ignore file may live (`<Dockerfile>.dockerignore`, `<context>/.dockerignore`):
    /// creating, changing or deleting either changes what is sent.
    pub ignore_files: Vec<String>,
    /// The ignore rules in force at `head`.
    pub ignore: DockerIgnore,
    pub inputs: BuildInputs,
}

/// A pattern could not be compiled (config globs are checked at load time; Docker sources
/// come from Dockerfiles).
#[derive(Debug, thiserror::Error)]
#[error("{owner}: cannot use pattern `{pattern}` from {origin}")]
pub struct PatternError {
    pub owner: String,
    pub pattern: String,
    pub origin: String,
    #[source]
    pub source: globset::Error,
}

enum EntryKind {
    /// A `paths` glob of the owner; its exclusions apply.
    Paths,
    /// A Docker source; the ignore file and the instruction's `--exclude`s apply.
    DockerSource { source: usize },
    /// Matches without further checks (the Dockerfile, ignore files, an unreadable instruction).
    Plain,
}

struct Entry {
    owner: usize,
    kind: EntryKind,
    rule: String,
}

struct DockerNode {
    context_prefix: String,
    ignore: DockerIgnore,
    source_excludes: Vec<Option<GlobSet>>,
}

struct Node {
    name: String,
    is_service: bool,
    depends_on: Vec<usize>,
    excludes: Option<GlobSet>,
    docker: Option<DockerNode>,
}

/// Every service's and group's rules, compiled once.
pub struct ServiceMatcher {
    nodes: Vec<Node>,
    set: GlobSet,
    entries: Vec<Entry>,
}

fn build_set<'a>(
    patterns: impl IntoIterator<Item = &'a str>,
) -> Result<Option<GlobSet>, (String, globset::Error)> {
    let mut builder = GlobSetBuilder::new();
    let mut any = false;
    for p in patterns {
        builder.add(glob::compile(p).map_err(|e| (p.to_string(), e))?);
        any = true;
    }
    if !any {
        return Ok(None);
    }
    builder.build().map(Some).map_err(|e| (String::new(), e))
}

fn join_prefix(prefix: &str, pattern: &str) -> String {
    match (prefix.is_empty(), pattern.is_empty()) {
        (true, _) => pattern.to_string(),
        (false, true) => prefix.trim_end_matches('/').to_string(),
        (false, false) => format!("{prefix}{pattern}"),
    }
}

/// A node's `paths` split into inclusions (pattern without `!`, and the entry as written for
/// the change reason) and exclusions (pattern without `!`).
fn split_paths(paths: &[String]) -> (Vec<(&str, &str)>, Vec<&str>) {
    let mut includes = Vec::new();
    let mut excludes = Vec::new();
    for entry in paths {
        match glob::split_negation(entry) {
            (true, pattern) => excludes.push(pattern),
            (false, pattern) => includes.push((pattern, entry.as_str())),
        }
    }
    (includes, excludes)
}

/// The glob prefix of a context's files: its escaped path and `/`, or `""` for the root.
fn context_glob_prefix(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!("{}/", glob::escape(context.trim_end_matches('/')))
    }
}

/// The globs of one Docker source under the context: the source itself and what is below it
/// (a source naming a folder reads all of it); just `**` for the whole context at the root.
fn source_globs(prefix: &str, source: &str) -> Vec<String> {
    let full = join_prefix(prefix, source);
    let below = if full.is_empty() {
        "**".to_string()
    } else {
        format!("{full}/**")
    };
    [full, below]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect()
}

/// Every file of the context, for an instruction that could not be read.
fn whole_context_glob(prefix: &str) -> String {
    if prefix.is_empty() {
        "**".to_string()
    } else {
        format!("{prefix}**")
    }
}

/// The combined glob set under construction: glob `k` of the set means `entries[k]`.
struct PatternIndex {
    builder: GlobSetBuilder,
    entries: Vec<Entry>,
}

impl PatternIndex {
    fn new() -> PatternIndex {
        PatternIndex {
            builder: GlobSetBuilder::new(),
            entries: Vec::new(),
        }
    }

    fn add(
        &mut self,
        pattern: &str,
        entry: Entry,
        owner: &str,
        origin: &str,
    ) -> Result<(), PatternError> {
        let g = glob::compile(pattern).map_err(|source| PatternError {
            owner: owner.to_string(),
            pattern: pattern.to_string(),
            origin: origin.to_string(),
            source,
        })?;
        self.builder.add(g);
        self.entries.push(entry);
        Ok(())
    }

    /// Adds a node's `paths` inclusions; returns its compiled exclusions.
    fn add_paths(
        &mut self,
        owner: usize,
        name: &str,
        paths: &[String],
    ) -> Result<Option<GlobSet>, PatternError> {
        let (includes, excludes) = split_paths(paths);
        for (pattern, entry) in includes {
            let rule = format!("paths: {entry}");
            let kind = EntryKind::Paths;
            self.add(pattern, Entry { owner, kind, rule }, name, "paths")?;
        }
        build_set(excludes).map_err(|(pattern, source)| PatternError {
            owner: name.to_string(),
            pattern,
            origin: "paths".into(),
            source,
        })
    }

    /// Adds what a service's Docker build reads: the Dockerfile, the ignore files, every
    /// source, and the whole context for each unreadable instruction.
    fn add_docker_build(
        &mut self,
        owner: usize,
        name: &str,
        build: &DockerBuild,
    ) -> Result<DockerNode, PatternError> {
        let plain = |rule: String| Entry {
            owner,
            kind: EntryKind::Plain,
            rule,
        };
        let dockerfile = glob::escape(&build.dockerfile);
        self.add(
            &dockerfile,
            plain("Dockerfile".into()),
            name,
            "the Dockerfile path",
        )?;
        for ignore_file in &build.ignore_files {
            let pattern = glob::escape(ignore_file);
            let entry = plain("ignore file".into());
            self.add(&pattern, entry, name, "the ignore file path")?;
        }
        let prefix = context_glob_prefix(&build.context);
        let source_excludes = self.add_docker_sources(owner, name, build, &prefix)?;
        for unreadable in &build.inputs.unreadable {
            let rule = format!(
                "{} line {} could not be read ({}), so every file of the context counts",
                build.dockerfile, unreadable.line, unreadable.why
            );
            let whole = whole_context_glob(&prefix);
            self.add(&whole, plain(rule), name, "an unreadable instruction")?;
        }
        Ok(DockerNode {
            context_prefix: if build.context.is_empty() {
                String::new()
            } else {
                format!("{}/", build.context.trim_end_matches('/'))
            },
            ignore: build.ignore.clone(),
            source_excludes,
        })
    }

    /// Adds each source's globs; returns each source's compiled `--exclude`s, by source.
    fn add_docker_sources(
        &mut self,
        owner: usize,
        name: &str,
        build: &DockerBuild,
        prefix: &str,
    ) -> Result<Vec<Option<GlobSet>>, PatternError> {
        let mut source_excludes = Vec::new();
        for (s, source) in build.inputs.sources.iter().enumerate() {
            let origin = format!("{} line {}", build.dockerfile, source.line);
            for pattern in source_globs(prefix, &source.pattern) {
                let entry = Entry {
                    owner,
                    kind: EntryKind::DockerSource { source: s },
                    rule: source.rule.clone(),
                };
                self.add(&pattern, entry, name, &origin)?;
            }
            let excludes = build_set(source.excludes.iter().map(String::as_str));
            source_excludes.push(excludes.map_err(|(pattern, e)| PatternError {
                owner: name.to_string(),
                pattern,
                origin,
                source: e,
            })?);
        }
        Ok(source_excludes)
    }

    /// Compiles the combined set: one pass over a path finds every entry it may belong to.
    fn build(self) -> Result<(GlobSet, Vec<Entry>), PatternError> {
        let set = self.builder.build().map_err(|source| PatternError {
            owner: String::new(),
            pattern: String::new(),
            origin: "the combined pattern set".into(),
            source,
        })?;
        Ok((set, self.entries))
    }
}

impl ServiceMatcher {
    /// Compiles the rules of `config`; `docker` holds the Docker build of each service that has one.
    ///
    /// # Errors
    /// When a pattern derived from a Dockerfile cannot be compiled.
    pub fn new(
        config: &Config,
        docker: &BTreeMap<String, DockerBuild>,
    ) -> Result<ServiceMatcher, PatternError> {
        // Services first, then groups; a node's number is its place in this list.
        let names: Vec<(&String, bool)> = config
            .services
            .keys()
            .map(|n| (n, true))
            .chain(config.groups.keys().map(|n| (n, false)))
            .collect();
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_str(), i))
            .collect();
        let mut patterns = PatternIndex::new();
        let mut nodes = Vec::with_capacity(names.len());
        for (i, &(name, is_service)) in names.iter().enumerate() {
            let (paths, depends_on) = if is_service {
                let s = &config.services[name];
                (&s.paths, &s.depends_on)
            } else {
                let g = &config.groups[name];
                (&g.paths, &g.depends_on)
            };
            let excludes = patterns.add_paths(i, name, paths)?;
            let docker = match docker.get(name) {
                Some(build) => Some(patterns.add_docker_build(i, name, build)?),
                None => None,
            };
            nodes.push(Node {
                name: name.to_string(),
                is_service,
                depends_on: depends_on
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).copied())
                    .collect(),
                excludes,
                docker,
            });
        }
        let (set, entries) = patterns.build()?;
        Ok(ServiceMatcher {
            nodes,
            set,
            entries,
        })
    }

    /// Whether entry `e` really claims `path` once exclusions and ignore rules are applied.
    fn accepts(&self, e: &Entry, path: &str) -> bool {
        let node = &self.nodes[e.owner];
        match e.kind {
            EntryKind::Plain => true,
            EntryKind::Paths => !node.excludes.as_ref().is_some_and(|x| x.is_match(path)),
            EntryKind::DockerSource { source } => {
                let Some(docker) = &node.docker else {
                    return true;
                };
                let Some(rel) = path.strip_prefix(docker.context_prefix.as_str()) else {
                    return false;
                };
                if docker.ignore.is_excluded(rel) {
                    return false;
                }
                match &docker.source_excludes[source] {
                    Some(ex) => !self_or_parent_matches(ex, rel),
                    None => true,
                }
            }
        }
    }

    /// Decides every service and group for `files`.
    pub fn plan(&self, files: &[ChangedFile]) -> Vec<(usize, Vec<Reason>, usize)> {
        let mut direct: Vec<(Vec<Reason>, usize)> = vec![(Vec::new(), 0); self.nodes.len()];
        let mut hits = Vec::new();
        let mut claimed: Vec<usize> = Vec::new();
        for file in files {
            for path in file.touched_paths() {
                self.set.matches_into(path, &mut hits);
                claimed.clear();
                for &h in &hits {
                    let e = &self.entries[h];
                    if claimed.contains(&e.owner) || !self.accepts(e, path) {
                        continue;
                    }
                    claimed.push(e.owner);
                    let (reasons, more) = &mut direct[e.owner];
                    if reasons.len() < MAX_REASONS {
                        reasons.push(Reason {
                            path: path.to_string(),
                            rule: e.rule.clone(),
                        });
                    } else {
                        *more += 1;
                    }
                }
            }
        }
        direct
            .into_iter()
            .enumerate()
            .map(|(i, (r, m))| (i, r, m))
            .collect()
    }

    /// The first reason each node changed for, directly or through its dependencies.
    ///
    /// Depth-first with an explicit stack, so a `depends_on` chain of any length cannot
    /// overflow the thread's stack. Config validation rejects cycles; should one get here, a
    /// node met again on the current path counts as unchanged, so the walk still ends.
    fn first_reasons(&self, direct: &[(Vec<Reason>, usize)]) -> Vec<Option<Reason>> {
        #[derive(Clone)]
        enum State {
            Unknown,
            Open,
            Known(Option<Reason>),
        }
        let mut state = vec![State::Unknown; self.nodes.len()];
        for root in 0..self.nodes.len() {
            if !matches!(state[root], State::Unknown) {
                continue;
            }
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            state[root] = State::Open;
            while let Some(&(node, next)) = path.last() {
                let mut found = direct[node].0.first().cloned();
                let mut descend = None;
                let mut k = next;
                let deps = &self.nodes[node].depends_on;
                while found.is_none() && k < deps.len() {
                    match &state[deps[k]] {
                        State::Known(r) => found = r.clone(),
                        State::Open => {}
                        State::Unknown => {
                            descend = Some(deps[k]);
                            break;
                        }
                    }
                    k += 1;
                }
                if let Some(dep) = descend {
                    path.last_mut().expect("not empty").1 = k;
                    state[dep] = State::Open;
                    path.push((dep, 0));
                    continue;
                }
                state[node] = State::Known(found);
                path.pop();
            }
        }
        state
            .into_iter()
            .map(|s| match s {
                State::Known(r) => r,
                State::Unknown | State::Open => None,
            })
            .collect()
    }

    /// Applies `depends_on` transitively to direct verdicts.
    fn close(&self, mut direct: Vec<(Vec<Reason>, usize)>) -> Vec<(Vec<Reason>, usize)> {
        let first = self.first_reasons(&direct);
        let mut added = vec![Vec::new(); self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for &d in &node.depends_on {
                if let Some(r) = &first[d] {
                    added[i].push(Reason {
                        path: r.path.clone(),
                        rule: format!("depends_on {}", self.nodes[d].name),
                    });
                }
            }
        }
        for (i, extra) in added.into_iter().enumerate() {
            let (reasons, more) = &mut direct[i];
            for r in extra {
                if reasons.len() < MAX_REASONS {
                    reasons.push(r);
                } else {
                    *more += 1;
                }
            }
        }
        direct
    }

    /// The full plan for `files`.
    pub fn decide(&self, files: &[ChangedFile]) -> (Vec<NodePlan>, Vec<NodePlan>) {
        let direct = self
            .plan(files)
            .into_iter()
            .map(|(_, r, m)| (r, m))
            .collect();
        let closed = self.close(direct);
        let mut services = Vec::new();
        let mut groups = Vec::new();
        for (node, (reasons, more)) in self.nodes.iter().zip(closed) {
            let plan = NodePlan {
                name: node.name.clone(),
                changed: !reasons.is_empty(),
                reasons,
                more_reasons: more,
            };
            if node.is_service {
                services.push(plan)
            } else {
                groups.push(plan)
            }
        }
        (services, groups)
    }
}

impl ServiceMatcher {
    /// The Docker build inputs of each service among `files` (sources the Dockerfile reads,
    /// the Dockerfile, the ignore file), for content addresses.
    pub fn docker_inputs<'a>(
        &self,
        files: &'a [crate::image::content::InputFile],
    ) -> BTreeMap<String, Vec<&'a crate::image::content::InputFile>> {
        let mut out: BTreeMap<String, Vec<&crate::image::content::InputFile>> = BTreeMap::new();
        let mut hits = Vec::new();
        let mut claimed: Vec<usize> = Vec::new();
        for file in files {
            self.set.matches_into(&file.path, &mut hits);
            claimed.clear();
            for &h in &hits {
                let e = &self.entries[h];
                let docker = matches!(e.kind, EntryKind::DockerSource { .. })
                    || (matches!(e.kind, EntryKind::Plain) && self.nodes[e.owner].docker.is_some());
                if !docker || claimed.contains(&e.owner) || !self.accepts(e, &file.path) {
                    continue;
                }
                claimed.push(e.owner);
                out.entry(self.nodes[e.owner].name.clone())
                    .or_default()
                    .push(file);
            }
        }
        out
    }
}

/// Docker's rule: a pattern matching a folder covers everything below it.
fn self_or_parent_matches(set: &GlobSet, path: &str) -> bool {
    if set.is_match(path) {
        return true;
    }
    path.match_indices('/')
        .any(|(i, _)| set.is_match(&path[..i]))
}

/// Every service changed for one stated reason (no usable base, a truncated list, a dispatch).
pub fn everything(config: &Config, why: &str) -> (Vec<NodePlan>, Vec<NodePlan>) {
    let all = |names: Vec<&String>| {
        names
            .into_iter()
            .map(|n| NodePlan {
                name: n.clone(),
                changed: true,
                reasons: vec![Reason {
                    path: String::new(),
                    rule: why.to_string(),
                }],
                more_reasons: 0,
            })
            .collect()
    };
    (
        all(config.services.keys().collect()),
        all(config.groups.keys().collect()),
    )
}

/// Exactly the named services changed (`--services`); groups are not evaluated.
pub fn forced(config: &Config, chosen: &[String]) -> (Vec<NodePlan>, Vec<NodePlan>) {
    let services = config
        .services
        .keys()
        .map(|n| {
            let on = chosen.iter().any(|c| c == n);
            NodePlan {
                name: n.clone(),
                changed: on,
                reasons: if on {
                    vec![Reason {
                        path: String::new(),
                        rule: "named in --services".into(),
                    }]
                } else {
                    vec![]
                },
                more_reasons: 0,
            }
        })
        .collect();
    let groups = config
        .groups
        .keys()
        .map(|n| NodePlan {
            name: n.clone(),
            changed: false,
            reasons: vec![],
            more_reasons: 0,
        })
        .collect();
    (services, groups)
}

/// Assembles a [`Plan`] from verdicts.
pub fn assemble(
    base: Option<String>,
    head: String,
    source: ChangeSource,
    (services, groups): (Vec<NodePlan>, Vec<NodePlan>),
    files: usize,
    warnings: Vec<String>,
) -> Plan {
    let changed = services
        .iter()
        .filter(|s| s.changed)
        .map(|s| s.name.clone())
        .collect();
    Plan {
        base,
        head,
        source,
        changed,
        services,
        groups,
        files,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::ChangeKind;
    use crate::plan::dockerfile::read_build_inputs;

    #[test]
    fn paths_split_into_inclusions_and_exclusions() {
        let paths: Vec<String> = ["src/**", "!**/*.md", "docs/*", "!tmp"]
            .map(String::from)
            .to_vec();
        let (includes, excludes) = split_paths(&paths);
        assert_eq!(includes, [("src/**", "src/**"), ("docs/*", "docs/*")]);
        assert_eq!(excludes, ["**/*.md", "tmp"]);
    }

    #[test]
    fn docker_sources_cover_themselves_and_what_is_below() {
        for (context, source, expected) in [
            ("", "", vec!["**"]),
            ("", "pb", vec!["pb", "pb/**"]),
            ("svc/", "", vec!["svc", "svc/**"]),
            ("svc", "a/*.go", vec!["svc/a/*.go", "svc/a/*.go/**"]),
            ("we[ird]", "x", vec!["we\\[ird\\]/x", "we\\[ird\\]/x/**"]),
        ] {
            let prefix = context_glob_prefix(context);
            assert_eq!(
                source_globs(&prefix, source),
                expected,
                "{context} {source}"
            );
        }
        assert_eq!(whole_context_glob(""), "**");
        assert_eq!(whole_context_glob(&context_glob_prefix("svc")), "svc/**");
    }

    fn changed(path: &str) -> ChangedFile {
        ChangedFile {
            path: path.into(),
            kind: ChangeKind::Modified,
            previous: None,
        }
    }

    fn matcher() -> ServiceMatcher {
        let config: Config = serde_yaml_ng::from_str(
            "services:\n  api:\n    dockerfile: api/Dockerfile\n    depends_on: [proto]\n  \
             docs:\n    paths: [\"docs/**\", \"!docs/drafts/**\"]\ngroups:\n  proto:\n    paths: [\"pb/**\"]\n",
        )
        .unwrap();
        let inputs = read_build_inputs(
            "FROM x\nCOPY --exclude=*.md . /app\nCOPY --bogus a /b\n",
            &BTreeMap::new(),
        );
        let build = DockerBuild {
            dockerfile: "api/Dockerfile".into(),
            context: "api".into(),
            ignore_files: vec!["api/.dockerignore".into()],
            ignore: DockerIgnore::parse("tmp\n").unwrap(),
            inputs,
        };
        ServiceMatcher::new(&config, &BTreeMap::from([("api".to_string(), build)])).unwrap()
    }

    fn verdicts(m: &ServiceMatcher, path: &str) -> Vec<(String, Vec<String>)> {
        let (services, groups) = m.decide(&[changed(path)]);
        services
            .into_iter()
            .chain(groups)
            .filter(|n| n.changed)
            .map(|n| (n.name, n.reasons.into_iter().map(|r| r.rule).collect()))
            .collect()
    }

    #[test]
    fn a_change_travels_down_a_chain_of_100_000_dependencies() {
        let n = 100_000;
        let mut text = String::from("services:\n");
        for i in 0..n {
            if i + 1 < n {
                text.push_str(&format!("  s{i}: {{depends_on: [s{}]}}\n", i + 1));
            } else {
                text.push_str(&format!("  s{i}: {{paths: [\"leaf/**\"]}}\n"));
            }
        }
        let config: Config = serde_yaml_ng::from_str(&text).unwrap();
        let m = ServiceMatcher::new(&config, &BTreeMap::new()).unwrap();
        let (services, _) = m.decide(&[changed("leaf/x")]);
        assert!(services.iter().all(|s| s.changed));
        let s0 = services.iter().find(|s| s.name == "s0").unwrap();
        assert_eq!(s0.reasons[0].path, "leaf/x");
        assert_eq!(s0.reasons[0].rule, "depends_on s1");
    }

    #[test]
    fn a_copy_source_with_a_question_mark_claims_a_non_ascii_file() {
        let config: Config =
            serde_yaml_ng::from_str("services:\n  api:\n    dockerfile: api/Dockerfile\n").unwrap();
        let build = DockerBuild {
            dockerfile: "api/Dockerfile".into(),
            context: "api".into(),
            ignore_files: vec![],
            ignore: DockerIgnore::parse("x?z\n").unwrap(),
            inputs: read_build_inputs("FROM x\nCOPY caf? [^a]bc x?z /d/\n", &BTreeMap::new()),
        };
        let m =
            ServiceMatcher::new(&config, &BTreeMap::from([("api".to_string(), build)])).unwrap();
        for (path, want) in [
            ("api/café", true),
            ("api/cafe", true),
            ("api/cafés", false),
            ("api/ébc", true),
            ("api/abc", false),
            // The ignore file's `?` leaves out `xéz` as Docker does.
            ("api/xéz", false),
        ] {
            assert_eq!(!verdicts(&m, path).is_empty(), want, "{path}");
        }
    }

    #[test]
    fn the_combined_set_keeps_each_rule_with_its_owner() {
        let m = matcher();
        let v = |path| verdicts(&m, path);
        let api = |rules: &[&str]| {
            (
                "api".to_string(),
                rules.iter().map(|r| r.to_string()).collect(),
            )
        };
        assert_eq!(v("api/main.go"), [api(&["Dockerfile COPY ."])]);
        assert_eq!(v("api/Dockerfile"), [api(&["Dockerfile"])]);
        assert_eq!(v("api/.dockerignore"), [api(&["ignore file"])]);
        // The ignore file and `--exclude` leave files out; the unreadable COPY does not.
        for path in ["api/tmp/x", "api/README.md"] {
            let found = v(path);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].1[0].contains("could not be read"), "{found:?}");
        }
        assert_eq!(
            v("pb/a.proto"),
            [
                api(&["depends_on proto"]),
                ("proto".to_string(), vec!["paths: pb/**".to_string()])
            ]
        );
        assert_eq!(
            v("docs/a.md"),
            [("docs".to_string(), vec!["paths: docs/**".to_string()])]
        );
        assert!(v("docs/drafts/a.md").is_empty());
        assert!(v("elsewhere").is_empty());
    }
}
