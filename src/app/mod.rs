//! Orchestration: detect → plan → (build → push → deploy) → report. Each stage hands the next
//! a plain value; nothing reaches back.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

mod github;
mod images;
mod rollouts;

use crate::cli::{ActionEnv, Command, Format, Request};
use crate::config::{self, Config, ConfigError, Problem};
use crate::detect::api::{GithubApi, GithubError};
use crate::detect::event::{self, RangeRequest};
use crate::detect::git::{Git, GitError};
use crate::detect::{ChangeSource, ChangedFile};
use crate::error::render_chain;
use crate::plan::dockerfile;
use crate::plan::dockerignore::DockerIgnore;
use crate::plan::{self, DockerBuild, Plan, ServiceMatcher};
use crate::report::commands::{Annotation, Level};
use crate::report::{annotations, outputs, summary, text};

/// Why a run stopped. Every variant so far is bad input or a bad environment: exit 2, and
/// nothing was built, pushed or deployed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Event(#[from] event::EventError),
    #[error(
        "cannot read the event payload `{path}`; GITHUB_EVENT_PATH must name the event's JSON file"
    )]
    EventFile {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{message}")]
    History { message: String },
    #[error("{message}")]
    GithubFallback {
        message: String,
        #[source]
        source: GithubError,
    },
    /// A line of a repository file (an ignore file, a manifest) that cannot be used.
    #[error("{file}:{line}: {message}")]
    AtLine {
        file: String,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Pattern(#[from] plan::PatternError),
    #[error("cannot write `{path}`")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code for this error (SPEC §2).
    pub fn exit_code(&self) -> u8 {
        2
    }

    /// Annotations for this error, anchored to a file and line where there is one, within
    /// GitHub's limit of 10 per step.
    pub fn annotations(&self) -> Vec<Annotation> {
        match self {
            Error::Config(e) if !e.problems().is_empty() => annotations::within_limits(
                annotations::config_findings(&e.file(), e.problems()),
                None,
            ),
            Error::AtLine {
                file,
                line,
                message,
            } => vec![Annotation {
                level: Level::Error,
                file: Some(file.clone()),
                line: Some(*line),
                title: Some("monoship".into()),
                message: message.clone(),
            }],
            other => vec![Annotation::new(Level::Error, render_chain(other))],
        }
    }
}

/// Credentials the job hands over in the environment or as inputs. The runner masks secrets it
/// knows of, but a value computed in an earlier step and passed along is not one of them.
const SECRET_VARIABLES: [&str; 7] = [
    "INPUT_TOKEN",
    "GITHUB_TOKEN",
    "INPUT_REGISTRY-PASSWORD",
    "MONOSHIP_REGISTRY_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
];

/// Masks every credential of [`SECRET_VARIABLES`] before anything could print it.
fn mask_environment_secrets(stderr: &mut dyn Write) -> Result<(), Error> {
    for name in SECRET_VARIABLES {
        let Some(value) = std::env::var_os(name) else {
            continue;
        };
        let value = value.to_string_lossy();
        if !value.trim().is_empty() {
            writeln!(
                stderr,
                "{}",
                crate::report::commands::add_mask(value.trim())
            )
            .map_err(write_err("stderr"))?;
        }
    }
    Ok(())
}

/// Runs one request, printing the result to `stdout`; returns the exit code.
///
/// # Errors
/// Bad input or environment (see [`Error`]); nothing has been built, pushed or deployed then.
pub fn run(req: &Request, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<u8, Error> {
    let started = std::time::Instant::now();
    if req.action.is_some() {
        mask_environment_secrets(stderr)?;
    }
    let config_path = req.workdir.join(&req.config);
    let config = config::load(&config_path)?;
    tracing::debug!(elapsed = ?started.elapsed(), services = config.services.len(), "config loaded");
    let mut git = Git::open(&req.workdir)?;
    let detected = detect(req, &config, &mut git)?;
    tracing::debug!(elapsed = ?started.elapsed(), files = detected.files.len(), "changes detected");
    let (plan, stage) = plan_stage(&config, &config_path, &mut git, detected)?;
    tracing::debug!(elapsed = ?started.elapsed(), changed = plan.changed.len(), "planned");
    match req.command {
        Command::Plan => {
            report_plan(req, &config, &plan, stdout, stderr)?;
            github::comment(req, &config, git.root(), &plan, None, None, stderr);
            Ok(0)
        }
        Command::Build | Command::Ship => {
            // A ship that cannot use its cluster stops before anything is pushed.
            let cluster = match req.command {
                Command::Ship if !req.dry_run => {
                    Some(rollouts::connect(req, &config, &plan, &git)?)
                }
                _ => None,
            };
            let images = images::build_stage(req, &config, &plan, &stage, &git, stdout, stderr)?;
            let rollouts = match (&cluster, &images) {
                (Some(cluster), Some(images)) => {
                    let deployments =
                        github::start_deployments(req, &config, &plan, images, stderr);
                    let mut starting = |services: &[String]| {
                        github::deployments_in_progress(
                            req,
                            deployments.as_ref(),
                            services,
                            &mut *stderr,
                        )
                    };
                    let deployed = rollouts::deploy_stage(
                        req,
                        cluster,
                        &config,
                        &plan,
                        images,
                        &git,
                        &mut starting,
                    );
                    github::finish_deployments(req, deployments, deployed.as_deref().ok(), stderr);
                    Some(deployed?)
                }
                _ => None,
            };
            images::report_build(
                req,
                &config,
                &plan,
                &images,
                rollouts.as_deref(),
                stdout,
                stderr,
            )?;
            github::comment(
                req,
                &config,
                git.root(),
                &plan,
                images.as_deref(),
                rollouts.as_deref(),
                stderr,
            );
            let build_failed = images.as_ref().is_some_and(|i| {
                i.iter()
                    .any(|r| r.status == crate::image::push::ImageStatus::Failed)
            });
            let deploy_failed = rollouts.as_ref().is_some_and(|r| {
                r.iter().any(|r| {
                    matches!(
                        r.status,
                        crate::deploy::RolloutStatus::Failed
                            | crate::deploy::RolloutStatus::RolledBack
                    )
                })
            });
            Ok(if build_failed || deploy_failed { 1 } else { 0 })
        }
    }
}

/// What planning found out that later stages reuse.
pub(crate) struct PlanStage {
    pub builds: BTreeMap<String, DockerBuild>,
    pub matcher: ServiceMatcher,
}

/// The changed files and where they came from.
struct Detected {
    base: Option<String>,
    head: String,
    source: ChangeSource,
    files: Vec<ChangedFile>,
    /// Set when every service counts as changed, with the reason.
    everything: Option<String>,
    forced: Option<Vec<String>>,
    /// Whether `head` exists in the local clone (else Dockerfiles are read from the work tree).
    head_in_clone: bool,
    warnings: Vec<String>,
}

const FETCH_HINT: &str =
    "fetch the missing history (in GitHub Actions: `fetch-depth: 0` on actions/checkout; locally: `git fetch --unshallow`)";

fn detect(req: &Request, config: &Config, git: &mut Git) -> Result<Detected, Error> {
    let action = req.action.as_ref();
    let mut warnings = Vec::new();
    let default_head = || {
        req.head
            .clone()
            .or_else(|| action.and_then(|a| a.sha.clone()))
            .unwrap_or_else(|| "HEAD".into())
    };
    if let Some(chosen) = &req.services {
        let forced = expand_services(config, chosen)?;
        let head = resolve(git, &default_head())?;
        return Ok(Detected {
            base: None,
            head,
            source: ChangeSource::Forced,
            files: vec![],
            everything: None,
            forced: Some(forced),
            head_in_clone: true,
            warnings,
        });
    }
    let (request, pull_request, forced_push) = match (&req.base, action) {
        (Some(base), _) => (
            RangeRequest::Commits {
                base: base.clone(),
                head: default_head(),
                merge_base: req.merge_base,
            },
            None,
            false,
        ),
        (None, Some(a)) if !a.event_name.is_empty() && req.head.is_none() => {
            let payload = read_event(a)?;
            let r = event::range_for_event(&a.event_name, &payload, a.sha.as_deref())?;
            (r.request, r.pull_request, r.forced)
        }
        (None, _) => {
            let head = default_head();
            let (name, id) = default_branch(git)?;
            let head_id = resolve(git, &head)?;
            let base = git.repo().merge_base(&id, &head_id)?.ok_or_else(|| Error::History {
                message: format!("`{head}` shares no history with `{name}` in this clone; pass --base, or {FETCH_HINT}"),
            })?;
            (
                RangeRequest::Commits {
                    base,
                    head: head_id,
                    merge_base: false,
                },
                None,
                false,
            )
        }
    };
    let everything = |head: String, why: String, in_clone: bool, warnings: Vec<String>| Detected {
        base: None,
        head,
        source: ChangeSource::All,
        files: vec![],
        everything: Some(why),
        forced: None,
        head_in_clone: in_clone,
        warnings,
    };
    match request {
        RangeRequest::Nothing { why } => {
            let head = resolve(git, &default_head()).unwrap_or_default();
            warnings.push(why);
            Ok(Detected {
                base: None,
                head,
                source: ChangeSource::Git,
                files: vec![],
                everything: None,
                forced: Some(vec![]),
                head_in_clone: true,
                warnings,
            })
        }
        RangeRequest::Everything { head, why } => {
            let (head, in_clone) = resolve_or_keep(git, &head)?;
            Ok(everything(head, why, in_clone, warnings))
        }
        RangeRequest::NewBranch {
            head,
            default_branch,
        } => {
            let (head, in_clone) = resolve_or_keep(git, &head)?;
            let base_ref = [
                format!("refs/remotes/origin/{default_branch}"),
                format!("refs/heads/{default_branch}"),
            ]
            .into_iter()
            .find_map(|r| git.resolve_commit(&r).ok().flatten());
            let merge_base = match (&base_ref, in_clone) {
                (Some(b), true) => git.repo().merge_base(b, &head)?,
                _ => None,
            };
            match merge_base {
                Some(base) => {
                    let files = git.repo().changed_files(&base, &head)?;
                    Ok(GitDiff { base, head, files }.into_detected(warnings))
                }
                None => {
                    let why = format!("a new branch was pushed and its merge base with `{default_branch}` is not in this clone, so every service counts; {FETCH_HINT}");
                    warnings.push(why.clone());
                    Ok(everything(head, why, in_clone, warnings))
                }
            }
        }
        RangeRequest::Commits {
            base,
            head,
            merge_base,
        } => {
            let local = diff_while_resolving(git, &base, &head, merge_base)?;
            if let Some(found) = local.found {
                return Ok(found.into_detected(warnings));
            }
            if action.is_none() || req.base.is_some() {
                return Err(match (&local.head, &local.base) {
                    (None, _) => missing(&head, git),
                    (_, None) => missing(&base, git),
                    _ => Error::History {
                        message: format!(
                            "`{base}` and `{head}` share no history in this clone; {FETCH_HINT}"
                        ),
                    },
                });
            }
            // Action mode: history is missing locally, so ask the API.
            let head_id = local.head;
            let a = action.expect("action mode");
            let head_in_clone = head_id.is_some();
            let head = head_id.unwrap_or(head);
            if forced_push {
                let why = format!("the force-pushed-over commit `{base}` is not in this clone, so every service counts; {FETCH_HINT}");
                warnings.push(why.clone());
                return Ok(everything(head, why, head_in_clone, warnings));
            }
            let api = github_api(a)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| Error::Write {
                    path: "tokio runtime".into(),
                    source,
                })?;
            let listing = match &pull_request {
                Some(pr) => runtime.block_on(api.pull_request_files(pr.number, pr.changed_files)),
                None => runtime.block_on(api.compare(&base, &head)),
            }
            .map_err(|source| Error::GithubFallback {
                message: format!("the base commit `{base}` is not in this clone and the GitHub API could not list the changed files either; {FETCH_HINT}"),
                source,
            })?;
            warnings.push(format!("the base commit `{base}` is not in this clone; the changed files came from the GitHub API (set `fetch-depth: 0` on actions/checkout to use git)"));
            if !head_in_clone {
                warnings.push(format!("the head commit `{head}` is not in this clone; Dockerfiles and ignore files were read from the work tree"));
            }
            if listing.truncated {
                let why = "GitHub's API lists at most 3,000 files of a pull request and 300 of a comparison, and this change is larger, so every service counts".to_string();
                warnings.push(format!("{why}; {FETCH_HINT}"));
                return Ok(everything(head, why, head_in_clone, warnings));
            }
            Ok(Detected {
                base: Some(base),
                head,
                source: ChangeSource::GithubApi,
                files: listing.files,
                everything: None,
                forced: None,
                head_in_clone,
                warnings,
            })
        }
    }
}

/// What the local clone knows about a range.
struct LocalRange {
    base: Option<String>,
    head: Option<String>,
    /// The diff, when both commits (and their merge base, if asked) are in the clone.
    found: Option<GitDiff>,
}

struct GitDiff {
    base: String,
    head: String,
    files: Vec<ChangedFile>,
}

impl GitDiff {
    fn into_detected(self, warnings: Vec<String>) -> Detected {
        Detected {
            base: Some(self.base),
            head: self.head,
            source: ChangeSource::Git,
            files: self.files,
            everything: None,
            forced: None,
            head_in_clone: true,
            warnings,
        }
    }
}

/// The diff thread's answer: the merge base it used (if asked) and the files, or `None` when
/// there is no merge base in this clone.
type DiffOutcome = Result<Option<(Option<String>, Vec<ChangedFile>)>, GitError>;

/// Resolves `base` and `head` while `git diff` already runs on another thread: the diff is
/// the slow part, and starting it at once keeps `plan` close to the cost of `git diff` alone.
fn diff_while_resolving(
    git: &mut Git,
    base: &str,
    head: &str,
    merge_base: bool,
) -> Result<LocalRange, Error> {
    let repo = git.repo().clone();
    let (base_id, head_id, diffed) = std::thread::scope(|scope| {
        let job = scope.spawn(|| -> DiffOutcome {
            let from = if merge_base {
                match repo.merge_base(base, head)? {
                    Some(m) => Some(m),
                    None => return Ok(None),
                }
            } else {
                None
            };
            let files = repo.changed_files(from.as_deref().unwrap_or(base), head)?;
            Ok(Some((from, files)))
        });
        let base_id = git.resolve_commit(base);
        let head_id = git.resolve_commit(head);
        (
            base_id,
            head_id,
            job.join().expect("the diff thread does not panic"),
        )
    });
    let (base_id, head_id) = (base_id?, head_id?);
    let found = match (&base_id, &head_id) {
        // A missing commit makes the diff fail; that failure is reported as the missing commit.
        (Some(b), Some(h)) => match diffed {
            Ok(Some((from, files))) => Some(GitDiff {
                base: from.unwrap_or_else(|| b.clone()),
                head: h.clone(),
                files,
            }),
            Ok(None) => None,
            Err(e) => return Err(e.into()),
        },
        _ => None,
    };
    Ok(LocalRange {
        base: base_id,
        head: head_id,
        found,
    })
}

fn missing(rev: &str, git: &Git) -> Error {
    let shallow = if git.repo().is_shallow() {
        "this clone is shallow, and "
    } else {
        ""
    };
    Error::History { message: format!("revision `{rev}` is not in this clone: {shallow}it may need more history; {FETCH_HINT}, or check the name") }
}

fn resolve(git: &mut Git, rev: &str) -> Result<String, Error> {
    git.resolve_commit(rev)?.ok_or_else(|| missing(rev, git))
}

fn resolve_or_keep(git: &mut Git, rev: &str) -> Result<(String, bool), Error> {
    Ok(match git.resolve_commit(rev)? {
        Some(id) => (id, true),
        None => (rev.to_string(), false),
    })
}

fn default_branch(git: &mut Git) -> Result<(String, String), Error> {
    for candidate in [
        "refs/remotes/origin/HEAD",
        "refs/remotes/origin/main",
        "refs/remotes/origin/master",
        "refs/heads/main",
        "refs/heads/master",
    ] {
        if let Some(id) = git.resolve_commit(candidate)? {
            return Ok((
                candidate
                    .trim_start_matches("refs/remotes/")
                    .trim_start_matches("refs/heads/")
                    .to_string(),
                id,
            ));
        }
    }
    Err(Error::Usage("cannot find the default branch (no origin/HEAD, main or master) to compare with; pass --base".into()))
}

/// The pull request of a `pull_request*` event, for the `pr-<n>` tag.
fn pull_request_number(req: &Request) -> Option<u64> {
    let a = req.action.as_ref()?;
    if !a.event_name.starts_with("pull_request") {
        return None;
    }
    let payload = read_event(a).ok()?;
    event::range_for_event(&a.event_name, &payload, a.sha.as_deref())
        .ok()?
        .pull_request
        .map(|p| p.number)
}

fn read_event(a: &ActionEnv) -> Result<serde_json::Value, Error> {
    let path = a.event_path.as_ref().ok_or_else(|| {
        Error::Usage("GITHUB_EVENT_PATH is not set; it must name the event's JSON file".into())
    })?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::EventFile {
        path: path.display().to_string(),
        source: Box::new(e),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::EventFile {
        path: path.display().to_string(),
        source: Box::new(e),
    })
}

fn github_api(a: &ActionEnv) -> Result<GithubApi, Error> {
    let repository = a.repository.as_deref().ok_or_else(|| Error::Usage(format!("history is missing and GITHUB_REPOSITORY is not set, so the GitHub API cannot be asked; {FETCH_HINT}")))?;
    GithubApi::new(&a.api_url, repository, a.token.as_deref()).map_err(|source| {
        Error::GithubFallback {
            message: format!("cannot set up the GitHub API client; {FETCH_HINT}"),
            source,
        }
    })
}

fn expand_services(config: &Config, chosen: &[String]) -> Result<Vec<String>, Error> {
    if chosen.iter().any(|c| c == "all") {
        return Ok(config.services.keys().cloned().collect());
    }
    let unknown: Vec<&str> = chosen
        .iter()
        .filter(|c| !config.services.contains_key(*c))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(Error::Usage(format!(
            "--services names unknown services: {}; known: {}",
            unknown.join(", "),
            config
                .services
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut v = chosen.to_vec();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Reads every service's Dockerfile and ignore file at `head` (or from the work tree when
/// `head` is not in the clone).
fn docker_builds(
    config: &Config,
    config_path: &Path,
    git: &mut Git,
    head: &str,
    head_in_clone: bool,
) -> Result<BTreeMap<String, DockerBuild>, Error> {
    let root = git.root().to_path_buf();
    let config_text = std::fs::read_to_string(config_path).unwrap_or_default();
    let read = |git: &mut Git, path: &str| -> Result<Option<String>, Error> {
        let bytes = if head_in_clone {
            git.read_file(head, path)?
        } else {
            std::fs::read(root.join(path)).ok()
        };
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let mut builds = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, service) in &config.services {
        let Some(dockerfile) = service.dockerfile.as_deref().map(config::repo_path) else {
            continue;
        };
        let Some(text) = read(git, &dockerfile)? else {
            problems.push(Problem {
                line: config::locate(&config_text, &["services", name, "dockerfile"], None),
                key: format!("services.{name}.dockerfile"),
                message: format!(
                    "`{dockerfile}` does not exist at {}; fix the path or add the Dockerfile",
                    short(head)
                ),
            });
            continue;
        };
        let context = match service.context.as_deref().map(config::repo_path) {
            Some(c) => c,
            None => dockerfile
                .rsplit_once('/')
                .map(|(dir, _)| dir.to_string())
                .unwrap_or_default(),
        };
        let ignore_files = vec![
            format!("{dockerfile}.dockerignore"),
            if context.is_empty() {
                ".dockerignore".to_string()
            } else {
                format!("{context}/.dockerignore")
            },
        ];
        let mut ignore = DockerIgnore::default();
        for file in &ignore_files {
            if let Some(text) = read(git, file)? {
                ignore = DockerIgnore::parse(&text).map_err(|e| Error::AtLine {
                    file: file.clone(),
                    line: e.line,
                    message: format!("{e} (service `{name}`); fix the pattern"),
                })?;
                break;
            }
        }
        let inputs = dockerfile::read_build_inputs(&text, &service.build_args);
        builds.insert(
            name.clone(),
            DockerBuild {
                dockerfile,
                context,
                ignore_files,
                ignore,
                inputs,
            },
        );
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            file: config_path.display().to_string(),
            problems,
        }
        .into());
    }
    Ok(builds)
}

fn write_err(path: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_string(),
        source,
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn plan_stage(
    config: &Config,
    config_path: &Path,
    git: &mut Git,
    d: Detected,
) -> Result<(Plan, PlanStage), Error> {
    // Dockerfiles are read even when detection is skipped, so a missing one is always an error.
    let builds = docker_builds(config, config_path, git, &d.head, d.head_in_clone)?;
    let matcher = ServiceMatcher::new(config, &builds)?;
    let verdicts = if let Some(why) = &d.everything {
        plan::everything(config, why)
    } else if let Some(chosen) = &d.forced {
        plan::forced(config, chosen)
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

fn report_plan(
    req: &Request,
    config: &Config,
    plan: &Plan,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), Error> {
    match req.format {
        Format::Json => {
            let json = serde_json::to_string_pretty(plan).expect("a plan serializes");
            writeln!(stdout, "{json}").map_err(write_err("stdout"))?;
        }
        Format::Text => write!(
            stdout,
            "{}",
            text::render_plan(plan, text::Style::new(req.color))
        )
        .map_err(write_err("stdout"))?,
    }
    if let Some(a) = &req.action {
        let config_path = req.workdir.join(&req.config).display().to_string();
        let found = annotations::run_findings(
            plan,
            &[],
            None,
            annotations::ConfigFile {
                path: &config_path,
                text: "",
            },
        );
        for w in annotations::within_limits(found, Some("see the job summary")) {
            writeln!(stderr, "{w}").map_err(write_err("stderr"))?;
        }
        if let Some(path) = &a.output {
            outputs::append(path, &outputs::plan_outputs(plan, config))
                .map_err(write_err(&path.display().to_string()))?;
        }
        if let Some(path) = &a.summary {
            summary::append(path, &summary::render_plan(plan, config))
                .map_err(write_err(&path.display().to_string()))?;
        }
    } else if req.format == Format::Json {
        for w in &plan.warnings {
            writeln!(stderr, "warning: {}", crate::report::commands::one_line(w))
                .map_err(write_err("stderr"))?;
        }
    }
    Ok(())
}
