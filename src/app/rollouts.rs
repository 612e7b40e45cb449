//! The deploy stage of `ship`: the new images into their workloads, dependencies first, and
//! each rollout followed to its end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use super::Error;
use crate::cli::Request;
use crate::config::Config;
use crate::deploy::manifests::{self, Document};
use crate::deploy::{
    self, Cluster, DeployContext, DeployRequest, ManifestDeploy, RolloutResult, RolloutStatus,
};
use crate::detect::git::Git;
use crate::image::push::{ImageResult, ImageStatus};
use crate::plan::Plan;
use crate::report::commands::{one_line, Annotation, Level};

/// Loads the cluster's kubeconfig, before anything is built: a `ship` that cannot reach its
/// cluster should stop before it pushes.
///
/// # Errors
/// When no kubeconfig can be loaded (exit 2).
pub(crate) fn connect(
    req: &Request,
    config: &Config,
    plan: &Plan,
    git: &Git,
) -> Result<ClusterSession, Error> {
    let manifests = read_manifests(config, plan, git)?;
    let (runtime, cluster) = connect_cluster(req, config)?;
    Ok(ClusterSession {
        runtime,
        cluster,
        manifests,
    })
}

fn connect_cluster(
    req: &Request,
    config: &Config,
) -> Result<(tokio::runtime::Runtime, Cluster), Error> {
    // The client's background worker lives on this runtime: the same one must run the deploys.
    let runtime = runtime()?;
    let eks = config
        .cluster
        .as_ref()
        .and_then(|c| c.eks.clone())
        .filter(|_| req.deploy.kubeconfig.is_none());
    if let Some(eks) = eks {
        let cluster = runtime.block_on(connect_eks(&eks, req.action.is_some()))?;
        return Ok((runtime, cluster));
    }
    let cluster = runtime
        .block_on(Cluster::from_kubeconfig(
            req.deploy.kubeconfig.as_deref(),
            req.deploy.context.as_deref(),
        ))
        .map_err(|e| {
            Error::Usage(format!(
                "cannot use the cluster: {}; pass --kubeconfig (input `kubeconfig`) and --context",
                crate::error::render_chain(&e)
            ))
        })?;
    Ok((runtime, cluster))
}

/// An EKS cluster: endpoint and CA from DescribeCluster, tokens minted from the credentials
/// (each masked in Actions before use).
async fn connect_eks(
    eks: &crate::config::EksClusterConfig,
    in_action: bool,
) -> Result<Cluster, Error> {
    use aws_credential_types::provider::ProvideCredentials;
    let mask = move |secret: &str| {
        if in_action {
            eprintln!("{}", crate::report::commands::add_mask(secret));
        }
    };
    let settings = crate::aws::AwsSettings {
        region: eks.region.clone(),
        role_to_assume: eks.role_to_assume.clone(),
        ..Default::default()
    };
    let env = |k: &str| std::env::var(k).ok();
    let sdk = crate::aws::load(&settings, &env, mask)
        .await
        .map_err(|e| Error::Usage(crate::error::render_chain(&e)))?;
    let info = crate::deploy::eks::describe(&sdk, &eks.name)
        .await
        .map_err(|e| Error::Usage(crate::error::render_chain(&e)))?;
    let region = sdk.region().map(|r| r.to_string()).ok_or_else(|| {
        Error::Usage(
            "no AWS region for the EKS cluster: set `cluster.eks.region` or AWS_REGION".into(),
        )
    })?;
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| Error::Usage("no AWS credentials to sign the EKS token with".into()))?;
    let credentials = provider.provide_credentials().await.map_err(|e| {
        Error::Usage(format!(
            "no AWS credentials to sign the EKS token with: {}",
            crate::error::render_chain(&e)
        ))
    })?;
    let endpoint = eks.endpoint.clone().unwrap_or(info.endpoint);
    // The CA only matters for TLS; a plain-HTTP override (a simulator) has none to check.
    let ca = info.ca_b64.filter(|_| endpoint.starts_with("https://"));
    let name = eks.name.clone();
    let current = Arc::new(std::sync::Mutex::new(credentials));
    tokio::spawn(keep_fresh(provider.clone(), Arc::clone(&current)));
    let source = move || -> Result<String, crate::deploy::TokenError> {
        let credentials = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let token =
            crate::deploy::eks::token(&credentials, &region, &name, std::time::SystemTime::now())?;
        mask(&token);
        Ok(token)
    };
    Cluster::with_token_source(&endpoint, ca.as_deref(), source)
        .await
        .map_err(|e| {
            Error::Usage(format!(
                "cannot use EKS cluster `{}`: {}",
                eks.name,
                crate::error::render_chain(&e)
            ))
        })
}

/// Replaces temporary credentials (an assumed role's last an hour) five minutes before they
/// expire, for as long as the run lasts, so tokens minted late in a long ship are still
/// signed with valid keys.
async fn keep_fresh(
    provider: aws_credential_types::provider::SharedCredentialsProvider,
    current: Arc<std::sync::Mutex<aws_credential_types::Credentials>>,
) {
    use aws_credential_types::provider::ProvideCredentials;
    const EARLY: std::time::Duration = std::time::Duration::from_secs(5 * 60);
    const RETRY: std::time::Duration = std::time::Duration::from_secs(30);
    loop {
        let expiry = current.lock().unwrap_or_else(|p| p.into_inner()).expiry();
        let Some(expiry) = expiry else { return };
        let wait = expiry
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(EARLY)
            .max(RETRY);
        tokio::time::sleep(wait).await;
        match provider.provide_credentials().await {
            Ok(fresh) => *current.lock().unwrap_or_else(|p| p.into_inner()) = fresh,
            Err(error) => tracing::warn!(
                error = %crate::error::render_chain(&error),
                "could not renew the AWS credentials for the EKS token; retrying"
            ),
        }
    }
}

/// A cluster client and the runtime its connections live on, with the manifests to apply.
pub(crate) struct ClusterSession {
    runtime: tokio::runtime::Runtime,
    cluster: Cluster,
    manifests: ManifestFiles,
}

/// The documents of each changed service's `manifests` targets, by service and deploy entry.
type ManifestFiles = BTreeMap<(String, usize), Vec<Document>>;

/// Reads the manifests of every changed service from the work tree, before anything is built,
/// so a missing file or a broken document stops the run with nothing pushed.
///
/// # Errors
/// When a pattern matches no file or a document cannot be used (exit 2, with file and line).
fn read_manifests(config: &Config, plan: &Plan, git: &Git) -> Result<ManifestFiles, Error> {
    let mut out = ManifestFiles::new();
    let mut files: Option<Vec<String>> = None;
    for t in targets(config, plan) {
        let Some(patterns) = &t.manifests else {
            continue;
        };
        let candidates = match &mut files {
            Some(f) => f,
            None => files.insert(repository_files(git)?),
        };
        let mut documents = Vec::new();
        for path in matching(patterns, candidates, &t.service)? {
            let text = std::fs::read_to_string(git.root().join(&path)).map_err(|e| {
                Error::Usage(format!(
                    "cannot read manifest {path} of service {}: {e}",
                    t.service
                ))
            })?;
            documents.extend(manifests::read_documents(&path, &text).map_err(|e| {
                Error::AtLine {
                    file: e.file,
                    line: e.line,
                    message: format!(
                        "{} (a manifest of service `{}`); fix the file or the service's `deploy.manifests`",
                        e.why, t.service
                    ),
                }
            })?);
        }
        out.insert((t.service.clone(), t.index), documents);
    }
    Ok(out)
}

/// Tracked files and untracked ones, as paths from the repository root.
fn repository_files(git: &Git) -> Result<Vec<String>, Error> {
    let mut files: Vec<String> = git
        .repo()
        .index_entries()?
        .into_iter()
        .map(|e| e.path)
        .collect();
    files.extend(git.repo().work_tree_differences()?);
    files.sort();
    files.dedup();
    Ok(files)
}

/// The files that `patterns` (globs from the root; `!` excludes) select, sorted.
fn matching(patterns: &[String], files: &[String], service: &str) -> Result<Vec<String>, Error> {
    let mut include = globset::GlobSetBuilder::new();
    let mut exclude = globset::GlobSetBuilder::new();
    for p in patterns {
        let (negated, pattern) = crate::plan::glob::split_negation(p);
        let glob = crate::plan::glob::compile(pattern).map_err(|e| {
            Error::Usage(format!(
                "service {service}: bad manifest glob `{p}`: {}",
                e.kind()
            ))
        })?;
        if negated {
            exclude.add(glob);
        } else {
            include.add(glob);
        }
    }
    let build = |b: globset::GlobSetBuilder| {
        b.build()
            .map_err(|e| Error::Usage(format!("service {service}: bad manifest globs: {e}")))
    };
    let (include, exclude) = (build(include)?, build(exclude)?);
    let picked: Vec<String> = files
        .iter()
        .filter(|f| include.is_match(f.as_str()) && !exclude.is_match(f.as_str()))
        .cloned()
        .collect();
    if picked.is_empty() {
        return Err(Error::Usage(format!(
            "service {service}: `deploy.manifests` {} matches no file in the repository",
            patterns.join(", ")
        )));
    }
    Ok(picked)
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Write {
            path: "the async runtime".into(),
            source,
        })
}

/// One workload to update, before its dependencies are considered.
struct Target {
    service: String,
    /// The position of the entry in the service's `deploy` list.
    index: usize,
    spec: String,
    namespace: Option<String>,
    container: Option<String>,
    /// The globs of a `manifests` target.
    manifests: Option<Vec<String>>,
}

fn targets(config: &Config, plan: &Plan) -> Vec<Target> {
    let mut out = Vec::new();
    for name in &plan.changed {
        let Some(service) = config.services.get(name) else {
            continue;
        };
        for (index, d) in service.deploy.iter().enumerate() {
            let spec = match &d.workload {
                Some(w) => w.clone(),
                None => format!("manifests {}", d.manifests.join(", ")),
            };
            out.push(Target {
                service: name.clone(),
                index,
                spec,
                namespace: d.namespace.clone(),
                container: d.container.clone(),
                manifests: d.workload.is_none().then(|| d.manifests.clone()),
            });
        }
    }
    out
}

/// Every service a service depends on, through groups, transitively.
fn service_dependencies(config: &Config, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = config
        .services
        .get(name)
        .map(|s| s.depends_on.clone())
        .unwrap_or_default();
    let mut services = BTreeSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(s) = config.services.get(&n) {
            services.insert(n.clone());
            stack.extend(s.depends_on.iter().cloned());
        } else if let Some(g) = config.groups.get(&n) {
            stack.extend(g.depends_on.iter().cloned());
        }
    }
    services
}

/// How a target is named in results: `kind/namespace/name` for a workload (as deploys report
/// it), the config's words for manifests or a spec that is not a workload.
fn target_label(t: &Target, cluster: &Cluster) -> String {
    if t.manifests.is_some() {
        return t.spec.clone();
    }
    deploy::parse_workload(&t.spec, t.namespace.as_deref(), cluster.default_namespace())
        .map(|w| w.to_string())
        .unwrap_or_else(|_| t.spec.clone())
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
///
/// # Errors
/// Only for bad input found late (a malformed workload spec was already rejected by the config).
/// `starting` is told the services of each batch just before their rollouts begin.
pub(crate) fn deploy_stage(
    req: &Request,
    session: &ClusterSession,
    config: &Config,
    plan: &Plan,
    images: &[ImageResult],
    git: &Git,
    starting: &mut dyn FnMut(&[String]),
) -> Result<Vec<RolloutResult>, Error> {
    let (runtime, cluster) = (&session.runtime, &session.cluster);
    let targets = targets(config, plan);
    if targets.is_empty() {
        return Ok(vec![]);
    }
    let failed_builds: Vec<&str> = images
        .iter()
        .filter(|i| i.status == ImageStatus::Failed)
        .map(|i| i.service.as_str())
        .collect();
    let mut results: Vec<RolloutResult> = Vec::new();
    if req.deploy.atomic && !failed_builds.is_empty() {
        let why = format!("nothing was deployed because the image of {} failed to build (atomic; pass --no-atomic to deploy the rest)", failed_builds.join(", "));
        return Ok(targets
            .iter()
            .map(|t| skipped(t, target_label(t, cluster), why.clone()))
            .collect());
    }
    let run_url = req
        .action
        .as_ref()
        .and_then(|a| match (&a.repository, &a.run_id) {
            (Some(r), Some(id)) => Some(format!("{}/{r}/actions/runs/{id}", a.server_url)),
            _ => None,
        });
    let repo = git.repo().clone();
    let head = plan.head.clone();
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
    let context = DeployContext {
        commit: plan.head.clone(),
        commit_time: head_time,
        run_url,
        timeout: req.deploy.timeout,
        rollback: req.deploy.rollback,
        force: req.deploy.force,
        older_than_deployed: Some(older),
    };
    // Dependencies first: a service waits for every service it depends on.
    let mut pending: Vec<Target> = targets;
    let mut finished: BTreeMap<String, bool> = BTreeMap::new();
    let progress = |line: &str| eprintln!("{}", one_line(line));
    while !pending.is_empty() {
        let deploying: BTreeSet<String> = pending.iter().map(|t| t.service.clone()).collect();
        let (ready, waiting): (Vec<Target>, Vec<Target>) = pending.into_iter().partition(|t| {
            service_dependencies(config, &t.service)
                .iter()
                .all(|d| !deploying.contains(d))
        });
        // The config forbids cycles, so something is always ready; never loop forever anyway.
        let (ready, waiting) = if ready.is_empty() {
            (waiting, Vec::new())
        } else {
            (ready, waiting)
        };
        let mut jobs: Vec<Job> = Vec::new();
        for t in &ready {
            let failed_dep = service_dependencies(config, &t.service)
                .into_iter()
                .find(|d| finished.get(d) == Some(&false));
            let image = images
                .iter()
                .find(|i| i.service == t.service && i.image.is_some())
                .and_then(|i| i.image.clone());
            let unbuilt = config
                .services
                .get(&t.service)
                .is_some_and(|s| s.dockerfile.is_none());
            if let Some(dep) = failed_dep {
                results.push(skipped(
                    t,
                    target_label(t, cluster),
                    format!("its dependency {dep} was not deployed"),
                ));
                continue;
            }
            if t.manifests.is_some() {
                let documents = session
                    .manifests
                    .get(&(t.service.clone(), t.index))
                    .cloned()
                    .unwrap_or_default();
                match (&image, unbuilt) {
                    (None, false) => results.push(skipped(
                        t,
                        t.spec.clone(),
                        "its image is not in the registry".into(),
                    )),
                    _ => jobs.push(Job::Manifests(manifest_deploy(
                        req,
                        cluster,
                        t,
                        documents,
                        image.as_deref(),
                        &context,
                    ))),
                }
                continue;
            }
            let workload = match deploy::parse_workload(
                &t.spec,
                t.namespace.as_deref(),
                cluster.default_namespace(),
            ) {
                Ok(w) => w,
                Err(e) => {
                    results.push(skipped(t, t.spec.clone(), e.to_string()));
                    continue;
                }
            };
            let Some(reference) = image else {
                let why = if unbuilt {
                    "the service has no dockerfile, so there is no new image"
                } else {
                    "its image is not in the registry"
                };
                results.push(skipped(t, workload.to_string(), why.into()));
                continue;
            };
            let repository = reference
                .split_once('@')
                .map(|(r, _)| r.to_string())
                .unwrap_or_default();
            jobs.push(Job::Workload(DeployRequest {
                service: t.service.clone(),
                workload,
                container: t.container.clone(),
                repository,
                image: reference,
                context: context.clone(),
            }));
        }
        let mut batch: Vec<String> = jobs.iter().map(Job::service).map(str::to_string).collect();
        batch.dedup();
        if !batch.is_empty() {
            starting(&batch);
        }
        let started = Instant::now();
        let done = runtime.block_on(futures::future::join_all(jobs.iter().map(|job| async {
            match job {
                Job::Workload(r) => vec![deploy::deploy(cluster, r, &progress).await],
                Job::Manifests(m) => deploy::apply_manifests(cluster, m, &progress).await,
            }
        })));
        tracing::debug!(elapsed = ?started.elapsed(), count = done.len(), "rollouts finished");
        let done = done.into_iter().flatten();
        for r in done {
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

/// A `manifests` target with the service's image substituted by digest (when it has one);
/// every image found is told on stderr, and a target where none matched gets a warning.
fn manifest_deploy(
    req: &Request,
    cluster: &Cluster,
    t: &Target,
    mut documents: Vec<Document>,
    image: Option<&str>,
    context: &DeployContext,
) -> ManifestDeploy {
    if let Some(image) = image {
        let repository = image.split_once('@').map_or(image, |(r, _)| r);
        let uses = manifests::substitute(&mut documents, repository, image);
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
            match (req.action.is_some(), documents.first()) {
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

/// `ship --dry-run`: what would be deployed where, one entry per deploy target.
pub(crate) fn dry_run_deploys(config: &Config, plan: &Plan) -> Vec<DryRunDeploy> {
    targets(config, plan)
        .into_iter()
        .map(|t| {
            let action = match &t.manifests {
                Some(globs) => format!(
                    "apply {} server-side (field manager monoship) with the image built above substituted by digest, then wait for their rollouts",
                    globs.join(", ")
                ),
                None => format!(
                    "patch {} to the image built above, then wait for its rollout",
                    t.spec
                ),
            };
            DryRunDeploy {
                service: t.service,
                action,
            }
        })
        .collect()
}

/// One deploy a dry run would make.
#[derive(serde::Serialize)]
pub(crate) struct DryRunDeploy {
    pub service: String,
    pub action: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
    use aws_credential_types::Credentials;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, SystemTime};

    /// Hands out credentials that expire 5 minutes and 40 seconds after they are made, each
    /// with a new key id.
    #[derive(Debug)]
    struct ShortLived(AtomicUsize);

    impl ProvideCredentials for ShortLived {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("key-{n}"),
                "secret",
                Some("session".into()),
                Some(SystemTime::now() + Duration::from_secs(340)),
                "test",
            )))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn credentials_are_renewed_before_they_expire() {
        let provider = SharedCredentialsProvider::new(ShortLived(AtomicUsize::new(0)));
        let first = provider.provide_credentials().await.unwrap();
        let current = Arc::new(std::sync::Mutex::new(first));
        tokio::spawn(keep_fresh(provider, Arc::clone(&current)));
        // 40 s before the 5-minute margin is reached, the renewal is due.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(current.lock().unwrap().access_key_id(), "key-0");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(current.lock().unwrap().access_key_id(), "key-1");
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert_eq!(current.lock().unwrap().access_key_id(), "key-2");
    }
}
