//! The plan stage's reading: every service's Dockerfile and ignore file at the head commit
//! (or from the work tree when the clone lacks it), then the pure planner.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::{Error, RunContext};
use crate::config::{self, ConfigError, Problem, ServiceConfig};
use crate::detect::git::{Git, TreeEntry};
use crate::detect::range::Detected;
use crate::plan::dockerfile;
use crate::plan::dockerignore::DockerIgnore;
use crate::plan::{self, DockerBuild, Plan, ServiceMatcher};

/// What planning found out that later stages reuse.
pub(crate) struct PlanStage {
    pub builds: BTreeMap<String, DockerBuild>,
    pub matcher: ServiceMatcher,
}

/// Plans a run: reads the Docker inputs, then decides which services changed and why.
///
/// # Errors
/// A Dockerfile that does not exist, an ignore file or a pattern that cannot be used.
pub(crate) fn plan_stage(
    ctx: &RunContext,
    git: &mut Git,
    d: Detected,
) -> Result<(Plan, PlanStage), Error> {
    // Dockerfiles are read even when detection is skipped, so a missing one is always an error.
    let tree = if d.head_in_clone && has_builds(ctx) {
        Some(git.repo().tree_index(&d.head)?)
    } else {
        None
    };
    let source = Source {
        head: &d.head,
        tree,
        root: git.root().to_path_buf(),
    };
    let builds = docker_builds(ctx, git, &source)?;
    let matcher = ServiceMatcher::new(&ctx.config, &builds)?;
    let verdicts = if let Some(why) = &d.everything {
        plan::everything(&ctx.config, why)
    } else if let Some(chosen) = &d.forced {
        plan::forced(&ctx.config, chosen)
    } else {
        matcher.decide(&d.files)
    };
    let plan = plan::assemble(
        d.base,
        d.head,
        d.source,
        verdicts,
        d.files.len(),
        d.warnings,
    );
    Ok((plan, PlanStage { builds, matcher }))
}

/// Where repository files are read from: the head commit, or the work tree.
struct Source<'a> {
    head: &'a str,
    /// The head commit's tree by path, listed once; `None` when reading the work tree.
    tree: Option<HashMap<String, TreeEntry>>,
    root: PathBuf,
}

impl Source<'_> {
    fn read(&self, git: &mut Git, path: &str) -> Result<Option<String>, Error> {
        let bytes = match &self.tree {
            Some(tree) => match tree.get(path) {
                Some(entry) if entry.kind == "blob" => git.read_blob(&entry.id)?,
                _ => None,
            },
            None => std::fs::read(self.root.join(path)).ok(),
        };
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Whether `path` is a folder (`""` is the repository root).
    fn is_folder(&self, path: &str) -> bool {
        match &self.tree {
            _ if path.is_empty() => true,
            Some(tree) => tree.get(path).is_some_and(|e| e.kind == "tree"),
            None => self.root.join(path).is_dir(),
        }
    }

    fn short_head(&self) -> &str {
        &self.head[..self.head.len().min(12)]
    }
}

fn has_builds(ctx: &RunContext) -> bool {
    ctx.config.services.values().any(|s| s.dockerfile.is_some())
}

/// Reads every service's Dockerfile and ignore file; every missing Dockerfile is reported at
/// once, as config problems.
fn docker_builds(
    ctx: &RunContext,
    git: &mut Git,
    source: &Source<'_>,
) -> Result<BTreeMap<String, DockerBuild>, Error> {
    let config_text = std::fs::read_to_string(&ctx.config_path).unwrap_or_default();
    let mut builds = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, service) in &ctx.config.services {
        let Some(dockerfile) = service.dockerfile.as_deref().map(config::repo_path) else {
            continue;
        };
        let Some(text) = source.read(git, &dockerfile)? else {
            problems.push(missing(
                &config_text,
                name,
                "dockerfile",
                format!(
                    "`{dockerfile}` does not exist at {}; fix the path or add the Dockerfile",
                    source.short_head()
                ),
            ));
            continue;
        };
        let context = context_of(service, &dockerfile);
        if !source.is_folder(&context) {
            problems.push(missing(
                &config_text,
                name,
                "context",
                format!(
                    "the build context `{context}` is not a folder at {}; fix the path or remove `context` to use the Dockerfile's folder",
                    source.short_head()
                ),
            ));
            continue;
        }
        let build = docker_build(git, source, name, service, dockerfile, &text)?;
        builds.insert(name.clone(), build);
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            file: ctx.config_path.display().to_string(),
            problems,
        }
        .into());
    }
    Ok(builds)
}

/// One service's build: its context, the first ignore file that exists, and what its
/// Dockerfile reads.
fn docker_build(
    git: &mut Git,
    source: &Source<'_>,
    name: &str,
    service: &ServiceConfig,
    dockerfile: String,
    text: &str,
) -> Result<DockerBuild, Error> {
    let context = context_of(service, &dockerfile);
    let ignore_files = ignore_files(&dockerfile, &context);
    // Docker reads these from the work tree: none may lead out of it through a link.
    for path in [&dockerfile, &context].into_iter().chain(&ignore_files) {
        super::inside::inside(&source.root, path)?;
    }
    let mut ignore = DockerIgnore::default();
    for file in &ignore_files {
        if let Some(text) = source.read(git, file)? {
            ignore = DockerIgnore::parse(&text).map_err(|e| Error::AtLine {
                file: file.clone(),
                line: e.line,
                message: format!("{e} (service `{name}`); fix the pattern"),
            })?;
            break;
        }
    }
    Ok(DockerBuild {
        inputs: dockerfile::read_build_inputs(text, &service.build_args),
        dockerfile,
        context,
        ignore_files,
        ignore,
    })
}

/// A problem with a service's build path, on the line of its key.
fn missing(config_text: &str, name: &str, key: &str, message: String) -> Problem {
    Problem {
        line: config::locate(config_text, &["services", name, key], None),
        column: None,
        key: format!("services.{name}.{key}"),
        message,
    }
}

/// The service's build context: `context`, else the Dockerfile's folder.
fn context_of(service: &ServiceConfig, dockerfile: &str) -> String {
    service
        .context
        .as_deref()
        .map(config::repo_path)
        .unwrap_or_else(|| default_context(dockerfile))
}

/// Without a `context`, the Dockerfile's folder (the repository root for a top-level one).
fn default_context(dockerfile: &str) -> String {
    dockerfile
        .rsplit_once('/')
        .map(|(dir, _)| dir.to_string())
        .unwrap_or_default()
}

/// The ignore files BuildKit looks for, first match wins: `<Dockerfile>.dockerignore`, then
/// the context's `.dockerignore`.
fn ignore_files(dockerfile: &str, context: &str) -> Vec<String> {
    vec![
        format!("{dockerfile}.dockerignore"),
        if context.is_empty() {
            ".dockerignore".to_string()
        } else {
            format!("{context}/.dockerignore")
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_defaults_to_the_dockerfiles_folder() {
        assert_eq!(default_context("svc/cart/Dockerfile"), "svc/cart");
        assert_eq!(default_context("Dockerfile"), "");
    }

    #[test]
    fn the_dockerfiles_own_ignore_file_comes_before_the_contexts() {
        assert_eq!(
            ignore_files("svc/cart/Dockerfile", "svc"),
            ["svc/cart/Dockerfile.dockerignore", "svc/.dockerignore"]
        );
        assert_eq!(
            ignore_files("Dockerfile", ""),
            ["Dockerfile.dockerignore", ".dockerignore"]
        );
    }
}
