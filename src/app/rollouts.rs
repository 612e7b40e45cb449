//! The deploy stage of `ship`: the new images into their workloads, dependencies first, and
//! each rollout followed to its end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::cluster::ClusterSession;
use super::targets::{next_batch, service_dependencies, targets, Target};
use super::{Error, Run, RunContext};
use crate::deploy::manifests::{self, Document};
use crate::deploy::{
    self, Cluster, DeployContext, DeployRequest, ManifestDeploy, RolloutResult, RolloutStatus,
    Workload, WorkloadRef,
};
use crate::image::push::{ImageResult, ImageStatus};
use crate::report::commands::{one_line, Annotation, Level};

/// How a target is named in results: `kind/namespace/name` for a workload (as deploys report
/// it), the config's words for manifests or a spec that is not a workload.
fn target_label(t: &Target, cluster: &Cluster) -> String {
    match &t.workload {
        Some(w) => resolve_workload(t, w, cluster).to_string(),
        None => t.spec.clone(),
    }
}

fn resolve_workload(t: &Target, w: &WorkloadRef, cluster: &Cluster) -> Workload {
    Workload::in_namespace(
        w.clone(),
        t.namespace.as_deref(),
        cluster.default_namespace(),
    )
}

fn skipped(t: &Target, workload: String, reason: String) -> RolloutResult {
    RolloutResult {
        service: t.service.clone(),
        workload,
        status: RolloutStatus::Skipped,
        reason: Some(reason),
        seconds: 0.0,
        events: vec![],
        previous_image: None,
        source: None,
    }
}

/// Deploys every changed service's image to its workloads and follows the rollouts.
/// `starting` is told the services of each batch just before their rollouts begin.
///
/// # Errors
/// None so far: every outcome, failures included, is a result.
pub(crate) fn deploy_stage(
    run: &Run<'_>,
    session: &ClusterSession,
    images: &[ImageResult],
    starting: &mut dyn FnMut(&[String]),
) -> Result<Vec<RolloutResult>, Error> {
    let cluster = &session.cluster;
    let targets = targets(&run.ctx.config, run.plan);
    if targets.is_empty() {
        return Ok(vec![]);
    }
    let interrupted = run.session.interrupt.signal();
    let never_started =
        interrupted.map(|s| format!("interrupted by {} before it started", s.name()));
    if let Some(why) = never_started.or_else(|| atomic_stop(run.ctx, images)) {
        return Ok(targets
            .iter()
            .map(|t| skipped(t, target_label(t, cluster), why.clone()))
            .collect());
    }
    let context = deploy_context(run);
    let mut results: Vec<RolloutResult> = Vec::new();
    // Dependencies first: a service waits for every service it depends on.
    let mut pending = targets;
    let mut finished: BTreeMap<String, bool> = BTreeMap::new();
    while !pending.is_empty() {
        // After a signal no batch starts; what is left is reported as never started.
        if let Some(signal) = run.session.interrupt.signal() {
            let why = format!("interrupted by {} before it started", signal.name());
            let never_started = pending
                .iter()
                .map(|t| skipped(t, target_label(t, cluster), why.clone()));
            results.extend(never_started);
            break;
        }
        let (ready, waiting) = next_batch(&run.ctx.config, pending);
        let mut jobs: Vec<Job> = Vec::new();
        for t in &ready {
            match prepare(run, session, t, images, &finished, &context) {
                Prepared::Deploy(job) => jobs.push(job),
                Prepared::Skip(skip) => results.push(skip),
            }
        }
        for r in run_batch(run, cluster, jobs, starting) {
            // A deploy skipped because a newer commit runs (or superseded) leaves a working
            // service behind: its dependents go ahead.
            let ok = !matches!(r.status, RolloutStatus::Failed | RolloutStatus::RolledBack);
            let entry = finished.entry(r.service.clone()).or_insert(true);
            *entry = *entry && ok;
            results.push(r);
        }
        for t in &ready {
            finished.entry(t.service.clone()).or_insert(false);
        }
        pending = waiting;
    }
    results.sort_by(|a, b| {
        (a.service.as_str(), a.workload.as_str()).cmp(&(b.service.as_str(), b.workload.as_str()))
    });
    Ok(results)
}

/// Why nothing deploys: under `atomic`, any image that failed to build stops every deploy.
fn atomic_stop(ctx: &RunContext, images: &[ImageResult]) -> Option<String> {
    let failed_builds: Vec<&str> = images
        .iter()
        .filter(|i| i.status == ImageStatus::Failed)
        .map(|i| i.service.as_str())
        .collect();
    (ctx.deploy.atomic && !failed_builds.is_empty()).then(|| format!("nothing was deployed because the image of {} failed to build (atomic; pass --no-atomic to deploy the rest)", failed_builds.join(", ")))
}

/// The commit every deploy of the run records, and how to tell whether a workload already
/// runs a newer one.
fn deploy_context(run: &Run<'_>) -> DeployContext {
    let repo = run.git.repo().clone();
    let head = run.plan.head.clone();
    let head_time = repo.commit_seconds(&head);
    // Git decides when the clone has both commits; else the recorded commit times do (a run
    // of an older commit does not have the newer one).
    let older: deploy::NewerCheck = Arc::new(move |deployed: &str, time: Option<&str>| match repo
        .is_ancestor(&head, deployed)
    {
        Some(newer) => newer,
        None => matches!(
            (time.and_then(|t| t.parse::<i64>().ok()), head_time),
            (Some(theirs), Some(ours)) if theirs > ours
        ),
    });
    DeployContext {
        commit: run.plan.head.clone(),
        commit_time: head_time,
        run_url: run.ctx.action.as_ref().and_then(|a| a.run_url.clone()),
        timeout: run.ctx.deploy.timeout,
        rollback: run.ctx.deploy.rollback,
        force: run.ctx.deploy.force,
        older_than_deployed: Some(older),
        interrupt: run.session.interrupt.clone(),
    }
}

/// One deploy to run: a workload patched, or manifests applied.
enum Job {
    Workload(DeployRequest),
    Manifests(ManifestDeploy),
}

impl Job {
    fn service(&self) -> &str {
        match self {
            Job::Workload(r) => &r.service,
            Job::Manifests(m) => &m.service,
        }
    }
}

/// What becomes of one target in its batch.
enum Prepared {
    Deploy(Job),
    /// Not deployed, with the result that says why.
    Skip(RolloutResult),
}

/// The deploy of one target, or the result that says why it is skipped.
fn prepare(
    run: &Run<'_>,
    session: &ClusterSession,
    t: &Target,
    images: &[ImageResult],
    finished: &BTreeMap<String, bool>,
    context: &DeployContext,
) -> Prepared {
    let skip = |workload: String, why: String| Prepared::Skip(skipped(t, workload, why));
    let cluster = &session.cluster;
    if let Some(dep) = service_dependencies(&run.ctx.config, &t.service)
        .into_iter()
        .find(|d| finished.get(d) == Some(&false))
    {
        let why = format!("its dependency {dep} was not deployed");
        return skip(target_label(t, cluster), why);
    }
    let built = images
        .iter()
        .find(|i| i.service == t.service && i.image.is_some());
    let image = built.and_then(|i| i.image.clone());
    let twin_image = built.and_then(|i| i.twin_image.clone());
    let unbuilt = run
        .ctx
        .config
        .services
        .get(&t.service)
        .is_some_and(|s| s.dockerfile.is_none());
    if t.manifests.is_some() {
        if image.is_none() && !unbuilt {
            return skip(t.spec.clone(), "its image is not in the registry".into());
        }
        let documents = session
            .manifests
            .get(&(t.service.clone(), t.index))
            .cloned()
            .unwrap_or_default();
        let images = (image.as_deref(), twin_image.as_deref());
        let deploy = manifest_deploy(run.ctx, cluster, t, documents, images, context);
        return Prepared::Deploy(Job::Manifests(deploy));
    }
    let Some(workload) = t.workload.as_ref().map(|w| resolve_workload(t, w, cluster)) else {
        // Load refuses such a spec; a target without a workload is a manifests one.
        return skip(t.spec.clone(), "not a workload".into());
    };
    let Some(reference) = image else {
        let why = if unbuilt {
            "the service has no dockerfile, so there is no new image"
        } else {
            "its image is not in the registry"
        };
        return skip(workload.to_string(), why.into());
    };
    let repository = reference
        .split_once('@')
        .map(|(r, _)| r.to_string())
        .unwrap_or_default();
    Prepared::Deploy(Job::Workload(DeployRequest {
        service: t.service.clone(),
        workload,
        container: t.container.clone(),
        repository,
        also_repository: twin_image,
        image: reference,
        context: context.clone(),
    }))
}

/// Runs one batch of deploys at once and returns their results.
fn run_batch(
    run: &Run<'_>,
    cluster: &Cluster,
    jobs: Vec<Job>,
    starting: &mut dyn FnMut(&[String]),
) -> Vec<RolloutResult> {
    let mut batch: Vec<String> = jobs.iter().map(Job::service).map(str::to_string).collect();
    batch.dedup();
    if !batch.is_empty() {
        starting(&batch);
    }
    let progress = |line: &str| eprintln!("{}", one_line(line));
    let started = Instant::now();
    let done = run
        .session
        .block_on(futures::future::join_all(jobs.iter().map(|job| async {
            match job {
                Job::Workload(r) => vec![deploy::deploy(cluster, r, &progress).await],
                Job::Manifests(m) => deploy::apply_manifests(cluster, m, &progress).await,
            }
        })));
    tracing::debug!(elapsed = ?started.elapsed(), count = done.len(), "rollouts finished");
    done.into_iter().flatten().collect()
}

/// A `manifests` target with the service's image substituted by digest (when it has one);
/// every image found is told on stderr, and a target where none matched gets a warning.
fn manifest_deploy(
    ctx: &RunContext,
    cluster: &Cluster,
    t: &Target,
    mut documents: Vec<Document>,
    (image, twin_image): (Option<&str>, Option<&str>),
    context: &DeployContext,
) -> ManifestDeploy {
    if let Some(image) = image {
        let repository = image.split_once('@').map_or(image, |(r, _)| r);
        let mut uses = manifests::substitute(&mut documents, repository, image);
        if let Some(branch) = twin_image {
            // The same containers in the same order: the second pass adds what it replaced.
            let again = manifests::substitute(&mut documents, branch, image);
            for (first, second) in uses.iter_mut().zip(again) {
                first.replaced_by = first.replaced_by.take().or(second.replaced_by);
            }
        }
        for u in &uses {
            eprintln!("{}", one_line(&format!("{}: {}", t.service, u.describe())));
        }
        if !uses.iter().any(|u| u.replaced_by.is_some()) {
            let message = format!(
                "{}: no container in {} runs an image of repository `{}`, so the manifests were applied without the new image",
                t.service,
                t.spec,
                manifests::repository_path(repository)
            );
            match (ctx.in_action(), documents.first()) {
                (true, Some(doc)) => {
                    let mut warning = Annotation::new(Level::Warning, message);
                    warning.file = Some(doc.file.clone());
                    warning.line = Some(doc.line);
                    eprintln!("{warning}");
                }
                _ => eprintln!("warning: {}", one_line(&message)),
            }
        }
    }
    ManifestDeploy {
        service: t.service.clone(),
        label: t.spec.clone(),
        documents,
        namespace: t
            .namespace
            .clone()
            .unwrap_or_else(|| cluster.default_namespace().to_string()),
        image: image.unwrap_or("the images as written").to_string(),
        context: context.clone(),
    }
}
