//! Orchestration: detect → plan → (build → push → deploy) → report. The request is resolved
//! once into a [`RunContext`]; each stage then hands the next a plain value, and nothing
//! reaches back. Effects shared by the stages (the async runtime, the GitHub client) are
//! made once per run, in a [`Session`].

use std::io::Write;

mod cluster;
mod context;
mod deployed;
mod dockerfiles;
mod github;
mod images;
mod inside;
mod marks;
mod output;
mod rollouts;
mod session;
mod targets;

pub(crate) use context::RunContext;
pub(crate) use session::Session;

use crate::cli::{Command, Request};
use crate::config::{self, ConfigError};
use crate::deploy::{RolloutResult, RolloutStatus};
use crate::detect::git::{Git, GitError};
use crate::detect::range::{self, DetectError};
use crate::error::render_chain;
use crate::image::push::{ImageResult, ImageStatus};
use crate::interrupt::{self, Signal};
use crate::plan::Plan;
use crate::report::annotations;
use crate::report::commands::{add_mask, Annotation, Level};

/// Why a run stopped before it changed anything: bad input or a bad environment. Exit 2, and
/// nothing was built, pushed or deployed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Context(#[from] context::ContextError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// A line of a repository file (an ignore file, a manifest) that cannot be used.
    #[error("{file}:{line}: {message}")]
    AtLine {
        file: String,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Pattern(#[from] crate::plan::PatternError),
    #[error(transparent)]
    Images(Box<images::ImageStageError>),
    #[error(transparent)]
    Cluster(Box<cluster::ClusterError>),
    #[error(transparent)]
    Escape(#[from] inside::Escape),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot install the SIGINT and SIGTERM handlers")]
    Signals(#[source] std::io::Error),
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

// Boxed: these two are the largest, and every stage returns `Error`.
impl From<images::ImageStageError> for Error {
    fn from(e: images::ImageStageError) -> Error {
        Error::Images(Box::new(e))
    }
}

impl From<cluster::ClusterError> for Error {
    fn from(e: cluster::ClusterError) -> Error {
        Error::Cluster(Box::new(e))
    }
}

fn write_err(path: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_string(),
        source,
    }
}

/// Runs one request, printing the result to `stdout`; returns the exit code.
///
/// # Errors
/// Bad input or environment (see [`Error`]); nothing has been built, pushed or deployed then.
pub fn run(req: &Request, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<u8, Error> {
    let started = std::time::Instant::now();
    // First of all: in the action container monoship is PID 1, deaf to signals without these.
    let interrupt = interrupt::listen(req.deploy.interrupt_grace).map_err(Error::Signals)?;
    if let Some(a) = &req.action {
        // Before anything could print them.
        for secret in &a.secrets {
            writeln!(stderr, "{}", add_mask(secret.expose())).map_err(write_err("stderr"))?;
        }
    }
    if req.config.is_relative() {
        // A config path given absolute is the caller's choice; one in the checkout is not.
        inside::inside(&req.workdir, &req.config.to_string_lossy())?;
    }
    let config = config::load(&req.workdir.join(&req.config))?;
    tracing::debug!(elapsed = ?started.elapsed(), services = config.services.len(), "config loaded");
    let ctx = context::resolve(req, config, context::read_event(req))?;
    let session = Session::new(ctx.action.as_ref(), interrupt)?;
    let mut git = Git::open(&ctx.workdir)?;
    let detected = range::detect(&ctx.scope, &mut git, session.change_listing())?;
    tracing::debug!(elapsed = ?started.elapsed(), files = detected.files.len(), "changes detected");
    let (plan, stage) = dockerfiles::plan_stage(&ctx, &mut git, detected)?;
    tracing::debug!(elapsed = ?started.elapsed(), changed = plan.changed.len(), "planned");
    let run = Run {
        ctx: &ctx,
        session: &session,
        git: &git,
        plan: &plan,
    };
    match ctx.command {
        Command::Plan => {
            let noted = with_interrupt_note(&run);
            let run = Run {
                plan: noted.as_ref().unwrap_or(run.plan),
                ..run
            };
            output::report_plan(&ctx, run.plan, stdout, stderr)?;
            github::comment(&run, None, None, stderr);
            github::statuses(&run, None, None, stderr);
            Ok(interrupted_code(&run).unwrap_or(0))
        }
        Command::Build | Command::Ship => ship(&run, &stage, stdout, stderr),
    }
}

/// One run's resolved settings and shared effects, and the plan every later stage follows.
pub(crate) struct Run<'a> {
    pub ctx: &'a RunContext,
    pub session: &'a Session,
    pub git: &'a Git,
    pub plan: &'a Plan,
}

/// `build` and `ship`: images, then (for `ship`) rollouts, then the report.
fn ship(
    run: &Run<'_>,
    stage: &dockerfiles::PlanStage,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<u8, Error> {
    let ctx = run.ctx;
    // A ship that cannot use its cluster stops before anything is pushed.
    let mut cluster = match ctx.command {
        Command::Ship if !ctx.dry_run => Some(cluster::connect(run)?),
        _ => None,
    };
    // What the workloads run widens the plan: changes of runs that never happened ship too.
    let widened = match &mut cluster {
        Some(session) => deployed::widen(run, session, stage)?,
        None => None,
    };
    let run = &Run {
        plan: widened.as_ref().unwrap_or(run.plan),
        ..*run
    };
    let built = images::build_stage(run, stage, stdout, stderr)?;
    let (mut images, target) = match built {
        Some(b) => (Some(b.results), Some(b.target)),
        None => (None, None),
    };
    let rollouts = match (&cluster, &images) {
        (Some(cluster), Some(images)) => {
            Some(deploy_with_deployments(run, cluster, images, stderr)?)
        }
        _ => None,
    };
    let mark_warnings = match (&target, &mut images, &rollouts) {
        (Some(target), Some(images), Some(rollouts)) => {
            marks::mark_deployed_images(run, target, images, rollouts)
        }
        _ => vec![],
    };
    let marked = with_warnings(run, mark_warnings);
    let run = &Run {
        plan: marked.as_ref().unwrap_or(run.plan),
        ..*run
    };
    let noted = with_interrupt_note(run);
    let run = &Run {
        plan: noted.as_ref().unwrap_or(run.plan),
        ..*run
    };
    let mut code = exit_code(images.as_deref(), rollouts.as_deref());
    let reported =
        output::report_build(ctx, run.plan, &images, rollouts.as_deref(), stdout, stderr);
    if let Err(error) = reported {
        // Images are in the registry and workloads may run them: that is not exit 2.
        if !changed_something(images.as_deref(), rollouts.as_deref()) {
            return Err(error);
        }
        output::report_unwritten(ctx, &error, images.as_deref(), rollouts.as_deref(), stderr);
        code = 1;
    }
    github::comment(run, images.as_deref(), rollouts.as_deref(), stderr);
    github::statuses(run, images.as_deref(), rollouts.as_deref(), stderr);
    Ok(interrupted_code(run).unwrap_or(code))
}

/// Whether the run got as far as the registry or the cluster: from there on, a failure is
/// exit 1, never 2 (SPEC §2: exit 2 means nothing was built, pushed or deployed).
fn changed_something(images: Option<&[ImageResult]>, rollouts: Option<&[RolloutResult]>) -> bool {
    !images.unwrap_or_default().is_empty() || !rollouts.unwrap_or_default().is_empty()
}

/// The plan with `warnings` added, when there are any; every report shows the plan's warnings.
fn with_warnings(run: &Run<'_>, warnings: Vec<String>) -> Option<Plan> {
    if warnings.is_empty() {
        return None;
    }
    let mut plan = run.plan.clone();
    plan.warnings.extend(warnings);
    Some(plan)
}

/// The plan with a warning that the run was interrupted, when it was; every report (text,
/// JSON, summary, comment, annotations) shows the plan's warnings.
fn with_interrupt_note(run: &Run<'_>) -> Option<Plan> {
    let signal = run.session.interrupt.signal()?;
    let mut plan = run.plan.clone();
    plan.warnings
        .push(interrupt_note(signal, run.session.interrupt.grace));
    Some(plan)
}

/// What an interrupted run says once, above the per-workload results. Pure.
fn interrupt_note(signal: Signal, grace: std::time::Duration) -> String {
    format!(
        "interrupted by {}: nothing new was started; rollouts under way had {}s to finish, then were rolled back (or left, without rollback); each image and rollout below says where it stopped",
        signal.name(),
        grace.as_secs()
    )
}

/// 130 or 143 when a signal interrupted the run (SPEC §2).
fn interrupted_code(run: &Run<'_>) -> Option<u8> {
    run.session.interrupt.signal().map(Signal::exit_code)
}

/// The deploy stage between the GitHub Deployments' `queued` and final statuses.
fn deploy_with_deployments(
    run: &Run<'_>,
    cluster: &cluster::ClusterSession,
    images: &[ImageResult],
    stderr: &mut dyn Write,
) -> Result<Vec<RolloutResult>, Error> {
    let deployments = github::start_deployments(run, images, stderr);
    let mut starting = |services: &[String]| {
        github::deployments_in_progress(run, deployments.as_ref(), services, &mut *stderr)
    };
    let deployed = rollouts::deploy_stage(run, cluster, images, &mut starting);
    github::finish_deployments(run, deployments, deployed.as_deref().ok(), stderr);
    deployed
}

/// 1 when an image failed or a rollout failed (rolled back or not), else 0.
fn exit_code(images: Option<&[ImageResult]>, rollouts: Option<&[RolloutResult]>) -> u8 {
    let build_failed = images
        .unwrap_or_default()
        .iter()
        .any(|r| r.status == ImageStatus::Failed);
    let deploy_failed = rollouts
        .unwrap_or_default()
        .iter()
        .any(|r| matches!(r.status, RolloutStatus::Failed | RolloutStatus::RolledBack));
    u8::from(build_failed || deploy_failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn a_failed_image_or_rollout_fails_the_run() {
        let image = |status| fixtures::Images::default().of("cart", status);
        let rollout = |status| fixtures::rollout("cart", status, None, 1.0);
        let pushed = [image(ImageStatus::Built)];
        assert_eq!(exit_code(Some(&pushed), None), 0);
        assert_eq!(exit_code(Some(&[image(ImageStatus::Failed)]), None), 1);
        for (status, code) in [
            (RolloutStatus::Succeeded, 0),
            (RolloutStatus::Skipped, 0),
            (RolloutStatus::Failed, 1),
            (RolloutStatus::RolledBack, 1),
        ] {
            assert_eq!(
                exit_code(Some(&pushed), Some(&[rollout(status)])),
                code,
                "{status:?}"
            );
        }
        assert_eq!(exit_code(None, None), 0, "a dry run fails nothing");
    }

    #[test]
    fn a_run_changed_something_once_an_image_or_rollout_exists() {
        let image = fixtures::Images::default().of("cart", ImageStatus::Built);
        let rollout = fixtures::rollout("cart", RolloutStatus::Succeeded, None, 1.0);
        assert!(!changed_something(None, None), "a dry run");
        assert!(!changed_something(Some(&[]), None), "nothing to build");
        assert!(changed_something(Some(&[image]), None));
        assert!(changed_something(Some(&[]), Some(&[rollout])));
    }

    #[test]
    fn the_interrupt_note_names_the_signal_and_the_grace() {
        let note = interrupt_note(Signal::Terminate, std::time::Duration::from_secs(20));
        assert!(note.starts_with("interrupted by SIGTERM: "), "{note}");
        assert!(note.contains("had 20s to finish"), "{note}");
    }
}
