//! The publish stage of a run in GitHub Actions: the sticky pull-request comment at the end,
//! and for `ship` the GitHub Deployments around the deploy stage. Nothing here changes the exit
//! code: every failure is a `::warning::` saying what failed and what to grant.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::{Run, Session};
use crate::cli::Command;
use crate::config::Config;
use crate::deploy::{RolloutResult, RolloutStatus};
use crate::detect::range::Range;
use crate::error::render_chain;
use crate::github::{GithubApi, GithubError};
use crate::image::push::{ImageResult, ImageStatus};
use crate::plan::Plan;
use crate::report::commands::{one_line, Annotation, Level};
use crate::report::comment::{self, CommentInput, CommentKey, ServiceTargets};
use crate::report::publish::{
    commit_statuses, CommentOutcome, DeploymentRecord, DeploymentState, DeploymentStatus,
    StatusInput,
};

/// Events whose pull request gets the comment.
const COMMENT_EVENTS: [&str; 2] = ["pull_request", "pull_request_target"];

/// Posts or updates the run's sticky comment on its pull request, when the `comment` input is
/// on, the event is a pull request and it was no dry run. Call it last: outputs and summary
/// are already written.
pub(crate) fn comment(
    run: &Run<'_>,
    images: Option<&[ImageResult]>,
    rollouts: Option<&[RolloutResult]>,
    log: &mut dyn Write,
) {
    let ctx = run.ctx;
    let Some(a) = ctx.action.as_ref().filter(|a| a.comment) else {
        return;
    };
    if ctx.dry_run || !COMMENT_EVENTS.contains(&a.event_name.as_str()) {
        return;
    }
    let Some(number) = ctx.pull_request else {
        warn(
            log,
            "pull-request comment not posted",
            "the event payload names no pull request".into(),
        );
        return;
    };
    let key = CommentKey {
        config: config_key(&ctx.config_path, &ctx.config_arg, run.git.root()),
        command: ctx.command,
        environment: (ctx.command == Command::Ship).then(|| a.environment.clone()),
    };
    let targets = service_targets(&ctx.config);
    let body = redact(
        comment::render(&CommentInput {
            key: &key,
            plan: run.plan,
            targets: &targets,
            images,
            rollouts,
            run_url: a.run_url.as_deref(),
        }),
        &ctx.sent_secrets(),
    );
    let outcome = with_api(run.session, |api| async move {
        api.upsert_comment(number, &key, &body).await
    });
    let upserted = match outcome {
        Ok(upserted) => upserted,
        Err(message) => return warn(log, "pull-request comment not posted", message),
    };
    for (id, author) in &upserted.ignored {
        notice(log, &ignored_comment(*id, author, &upserted.author));
    }
    let _ = match upserted.outcome {
        CommentOutcome::Created(id) => {
            writeln!(log, "commented on pull request #{number} (comment {id})")
        }
        CommentOutcome::Updated(id) => writeln!(
            log,
            "updated the comment on pull request #{number} (comment {id})"
        ),
    };
}

/// Sets one `monoship/<service>` commit status on the run's head per service of the job, when
/// the `commit-statuses` input is on and it was no dry run. Call it last, like the comment.
/// The first failure (say, no `statuses: write`) is one warning and stops the rest.
pub(crate) fn statuses(
    run: &Run<'_>,
    images: Option<&[ImageResult]>,
    rollouts: Option<&[RolloutResult]>,
    log: &mut dyn Write,
) {
    let ctx = run.ctx;
    let Some(a) = ctx.action.as_ref().filter(|a| a.commit_statuses) else {
        return;
    };
    // On by default: without a token nothing can write statuses, and that is no warning.
    if ctx.dry_run || a.token.is_none() {
        return;
    }
    let services: Vec<String> = match &ctx.scope {
        Range::Services { names, .. } => names.clone(),
        _ => run.plan.services.iter().map(|s| s.name.clone()).collect(),
    };
    let secrets = ctx.sent_secrets();
    let statuses: Vec<_> = commit_statuses(&StatusInput {
        plan: run.plan,
        services: &services,
        images,
        rollouts,
        ship: ctx.command == Command::Ship,
    })
    .into_iter()
    .map(|mut s| {
        s.description = redact(s.description, &secrets);
        s
    })
    .collect();
    if statuses.is_empty() {
        return;
    }
    let sha = run.plan.head.clone();
    let target_url = a.run_url.as_deref();
    let outcome = with_api(run.session, |api| async move {
        for status in &statuses {
            api.create_commit_status(&sha, status, target_url).await?;
        }
        Ok(statuses.len())
    });
    match outcome {
        Ok(n) => {
            let _ = writeln!(log, "set {n} commit status(es) on {}", run.plan.head);
        }
        Err(message) => warn(log, "commit statuses not set", message),
    }
}

/// Why a comment that carries monoship's marker was left alone.
fn ignored_comment(id: u64, author: &str, ours: &str) -> String {
    format!("comment {id} carries monoship's marker but was written by {author:?}, not by the token's identity {ours:?}; it was left as it is")
}

fn notice(log: &mut dyn Write, message: &str) {
    let mut annotation = Annotation::new(Level::Notice, one_line(message));
    annotation.title = Some("monoship".into());
    let _ = writeln!(log, "{annotation}");
}

/// GitHub Deployments of one `ship`, between their `in_progress` and final statuses.
pub(crate) struct Deployments {
    /// (service, deployment id).
    started: Vec<(String, u64)>,
    environment: String,
    log_url: Option<String>,
}

/// Creates a deployment per service about to be deployed (a changed service with deploy
/// targets and an image in the registry) and sets each `queued`. All of them start before the
/// deploy stage; the stage then deploys dependencies first.
///
/// `None` when the `github-deployments` input is off, on a dry run, or when nothing will be
/// deployed (a failed build under `atomic` stops every deploy).
pub(crate) fn start_deployments(
    run: &Run<'_>,
    images: &[ImageResult],
    log: &mut dyn Write,
) -> Option<Deployments> {
    let ctx = run.ctx;
    let a = ctx.action.as_ref().filter(|a| a.github_deployments)?;
    if ctx.dry_run || ctx.command != Command::Ship {
        return None;
    }
    if ctx.deploy.atomic && images.iter().any(|i| i.status == ImageStatus::Failed) {
        return None;
    }
    let records = deployment_records(&ctx.config, run.plan, images, &a.environment);
    if records.is_empty() {
        return None;
    }
    let status = DeploymentStatus {
        state: DeploymentState::Queued,
        description: "monoship deploys it after the services it depends on".into(),
        log_url: a.run_url.clone(),
        environment: a.environment.clone(),
    };
    let results = with_api(run.session, |api| async move {
        let mut out = Vec::new();
        for record in &records {
            let started = async {
                let id = api.create_deployment(record).await?;
                api.create_deployment_status(id, &status).await?;
                Ok::<_, GithubError>(id)
            };
            out.push((
                record.service.clone(),
                started.await.map_err(|e| render_chain(&e)),
            ));
        }
        Ok(out)
    })
    .unwrap_or_else(|message| vec![(String::new(), Err(message))]);
    let mut started = Vec::new();
    for (service, result) in results {
        match result {
            Ok(id) => {
                let _ = writeln!(
                    log,
                    "GitHub deployment {id}: {service} to {}, queued",
                    a.environment
                );
                started.push((service, id));
            }
            Err(message) => warn(log, "GitHub deployment not recorded", message),
        }
    }
    Some(Deployments {
        started,
        environment: a.environment.clone(),
        log_url: a.run_url.clone(),
    })
}

/// One record per changed service with deploy targets and an image that did not fail. Pure.
fn deployment_records(
    config: &Config,
    plan: &Plan,
    images: &[ImageResult],
    environment: &str,
) -> Vec<DeploymentRecord> {
    let targets = service_targets(config);
    plan.changed
        .iter()
        .filter_map(|service| {
            let deploy = targets
                .get(service)
                .map(|t| t.deploy.clone())
                .unwrap_or_default();
            let image = images
                .iter()
                .find(|i| &i.service == service && i.status != ImageStatus::Failed)?
                .image
                .clone()?;
            (!deploy.is_empty()).then(|| DeploymentRecord {
                service: service.clone(),
                image,
                targets: deploy,
                commit: plan.head.clone(),
                environment: environment.to_string(),
            })
        })
        .collect()
}

/// Marks the deployments of `services` `in_progress`: their rollouts start now.
pub(crate) fn deployments_in_progress(
    run: &Run<'_>,
    deployments: Option<&Deployments>,
    services: &[String],
    log: &mut dyn Write,
) {
    let Some(d) = deployments else {
        return;
    };
    let ids: Vec<u64> = d
        .started
        .iter()
        .filter(|(service, _)| services.contains(service))
        .map(|(_, id)| *id)
        .collect();
    if ids.is_empty() {
        return;
    }
    let status = DeploymentStatus {
        state: DeploymentState::InProgress,
        description: "monoship is rolling it out".into(),
        log_url: d.log_url.clone(),
        environment: d.environment.clone(),
    };
    let results = with_api(run.session, |api| async move {
        let mut out = Vec::new();
        for id in &ids {
            let result = api.create_deployment_status(*id, &status).await;
            out.push((*id, result.map_err(|e| render_chain(&e))));
        }
        Ok(out)
    })
    .unwrap_or_else(|message| vec![(0, Err(message))]);
    for (id, result) in results {
        match result {
            Ok(()) => {
                let _ = writeln!(log, "GitHub deployment {id}: in_progress");
            }
            Err(message) => warn(log, "GitHub deployment status not set", message),
        }
    }
}

/// Sets each started deployment's final status from its rollouts: `failure` when one failed
/// or was rolled back, `success` when one succeeded, else `error` (it was skipped, or the
/// deploy stage stopped: `rollouts` is `None`).
pub(crate) fn finish_deployments(
    run: &Run<'_>,
    deployments: Option<Deployments>,
    rollouts: Option<&[RolloutResult]>,
    log: &mut dyn Write,
) {
    let Some(d) = deployments.filter(|d| !d.started.is_empty()) else {
        return;
    };
    let secrets = run.ctx.sent_secrets();
    let statuses: Vec<(u64, DeploymentStatus)> = d
        .started
        .iter()
        .map(|(service, id)| {
            let mine: Vec<&RolloutResult> = rollouts
                .unwrap_or_default()
                .iter()
                .filter(|r| &r.service == service)
                .collect();
            let (state, description) = final_state(&mine, rollouts.is_some());
            let status = DeploymentStatus {
                state,
                description: redact(description, &secrets),
                log_url: d.log_url.clone(),
                environment: d.environment.clone(),
            };
            (*id, status)
        })
        .collect();
    let results = with_api(run.session, |api| async move {
        let mut out = Vec::new();
        for (id, status) in &statuses {
            let result = api.create_deployment_status(*id, status).await;
            out.push((*id, status.state, result.map_err(|e| render_chain(&e))));
        }
        Ok(out)
    })
    .unwrap_or_else(|message| vec![(0, DeploymentState::Error, Err(message))]);
    for (id, state, result) in results {
        match result {
            Ok(()) => {
                let _ = writeln!(log, "GitHub deployment {id}: {}", state.as_str());
            }
            Err(message) => warn(log, "GitHub deployment status not set", message),
        }
    }
}

fn final_state(rollouts: &[&RolloutResult], stage_finished: bool) -> (DeploymentState, String) {
    if !stage_finished {
        return (
            DeploymentState::Error,
            "the deploy stage stopped before this service was deployed".into(),
        );
    }
    let reason = |r: &RolloutResult| {
        format!(
            "{} {}: {}",
            r.workload,
            r.status.as_str(),
            r.reason.as_deref().unwrap_or("no reason given")
        )
    };
    if let Some(r) = rollouts
        .iter()
        .find(|r| matches!(r.status, RolloutStatus::Failed | RolloutStatus::RolledBack))
    {
        return (DeploymentState::Failure, reason(r));
    }
    let succeeded: Vec<&str> = rollouts
        .iter()
        .filter(|r| r.status == RolloutStatus::Succeeded)
        .map(|r| r.workload.as_str())
        .collect();
    if !succeeded.is_empty() {
        let seconds = rollouts.iter().map(|r| r.seconds).fold(0.0, f64::max);
        return (
            DeploymentState::Success,
            format!("rolled out {} in {seconds:.1} s", succeeded.join(", ")),
        );
    }
    match rollouts.first() {
        Some(r) => (DeploymentState::Error, reason(r)),
        None => (DeploymentState::Error, "nothing was rolled out".into()),
    }
}

/// The config path from the repository root, so two jobs with different working directories
/// never share a comment.
fn config_key(path: &Path, as_given: &Path, repo_root: &Path) -> String {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let relative = canonical(path)
        .strip_prefix(canonical(repo_root))
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| as_given.to_path_buf());
    relative.to_string_lossy().replace('\\', "/")
}

fn service_targets(config: &Config) -> BTreeMap<String, ServiceTargets> {
    config
        .services
        .iter()
        .map(|(name, s)| {
            let deploy = s
                .deploy
                .iter()
                .map(|d| match (&d.workload, &d.namespace) {
                    (Some(w), Some(ns)) => format!("{w} (namespace {ns})"),
                    (Some(w), None) => w.clone(),
                    (None, _) => format!("manifests {}", d.manifests.join(", ")),
                })
                .collect();
            (
                name.clone(),
                ServiceTargets {
                    dockerfile: s.dockerfile.clone(),
                    deploy,
                },
            )
        })
        .collect()
}

/// Runs `work` against the run's repository with the run's one GitHub client; any failure,
/// set-up included, comes back as a one-paragraph message.
fn with_api<'s, T, F, Fut>(session: &'s Session, work: F) -> Result<T, String>
where
    F: FnOnce(&'s GithubApi) -> Fut,
    Fut: std::future::Future<Output = Result<T, GithubError>>,
{
    let api = match session.github(true) {
        Some(Ok(api)) => api,
        Some(Err(e)) => return Err(render_chain(&e)),
        None => return Err("not running in GitHub Actions".into()),
    };
    session.block_on(work(api)).map_err(|e| render_chain(&e))
}

/// Text sent to GitHub with the run's secrets scrubbed: unlike the log, a comment or a
/// deployment status is not masked by the runner.
fn redact(mut text: String, secrets: &[&str]) -> String {
    for secret in secrets {
        if secret.trim().len() >= 4 {
            text = text.replace(secret.trim(), "***");
        }
    }
    text
}

fn warn(log: &mut dyn Write, title: &str, message: String) {
    let annotation = Annotation {
        level: Level::Warning,
        file: None,
        line: None,
        title: Some(title.into()),
        message: one_line_chain(&message),
    };
    let _ = writeln!(log, "{annotation}");
}

/// A cause chain on one line (annotations show one paragraph best).
fn one_line_chain(message: &str) -> String {
    one_line(&message.replace("\n  caused by: ", ": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(workload: &str, status: RolloutStatus, reason: Option<&str>) -> RolloutResult {
        RolloutResult {
            service: "cart".into(),
            workload: workload.into(),
            status,
            reason: reason.map(str::to_string),
            seconds: 3.25,
            events: vec![],
            previous_image: None,
            source: None,
        }
    }

    #[test]
    fn a_failed_workload_fails_the_deployment_and_skipped_ones_are_errors() {
        let ok = rollout("deployment/shop/cart", RolloutStatus::Succeeded, None);
        let back = rollout(
            "deployment/shop/cart-worker",
            RolloutStatus::RolledBack,
            Some("CrashLoopBackOff"),
        );
        let skipped = rollout(
            "deployment/shop/cart",
            RolloutStatus::Skipped,
            Some("its dependency proto failed to deploy"),
        );
        assert_eq!(
            final_state(&[&ok, &back], true),
            (
                DeploymentState::Failure,
                "deployment/shop/cart-worker rolled-back: CrashLoopBackOff".into()
            )
        );
        assert_eq!(
            final_state(&[&ok], true),
            (
                DeploymentState::Success,
                "rolled out deployment/shop/cart in 3.2 s".into()
            )
        );
        assert_eq!(
            final_state(&[&skipped], true),
            (
                DeploymentState::Error,
                "deployment/shop/cart skipped: its dependency proto failed to deploy".into()
            )
        );
        assert_eq!(final_state(&[&ok], false).0, DeploymentState::Error);
        assert_eq!(final_state(&[], true).0, DeploymentState::Error);
    }
}
