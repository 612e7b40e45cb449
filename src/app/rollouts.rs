//! The deploy stage of `ship`: the new images into their workloads, dependencies first, and
//! each rollout followed to its end.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use super::{write_err, Error};
use crate::cli::Request;
use crate::config::Config;
use crate::deploy::{self, Cluster, DeployRequest, RolloutResult, RolloutStatus};
use crate::detect::git::Git;
use crate::plan::Plan;
use crate::push::{ImageResult, ImageStatus};
use crate::report::commands::one_line;

/// Loads the cluster's kubeconfig, before anything is built: a `ship` that cannot reach its
/// cluster should stop before it pushes.
///
/// # Errors
/// When no kubeconfig can be loaded (exit 2).
pub(crate) fn connect(req: &Request, config: &Config) -> Result<ClusterSession, Error> {
    // The client's background worker lives on this runtime: the same one must run the deploys.
    let runtime = runtime()?;
    let eks = config
        .cluster
        .as_ref()
        .and_then(|c| c.eks.clone())
        .filter(|_| req.deploy.kubeconfig.is_none());
    if let Some(eks) = eks {
        let cluster = runtime.block_on(connect_eks(&eks, req.action.is_some()))?;
        return Ok(ClusterSession { runtime, cluster });
    }
    let cluster = runtime
        .block_on(Cluster::from_kubeconfig(
            req.deploy.kubeconfig.as_deref(),
            req.deploy.context.as_deref(),
        ))
        .map_err(|e| {
            Error::Usage(format!(
                "cannot use the cluster: {}; pass --kubeconfig (input `kubeconfig`) and --context",
                super::render_chain(&e)
            ))
        })?;
    Ok(ClusterSession { runtime, cluster })
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
        .map_err(|e| Error::Usage(super::render_chain(&e)))?;
    let info = crate::eks::describe(&sdk, &eks.name)
        .await
        .map_err(|e| Error::Usage(super::render_chain(&e)))?;
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
            super::render_chain(&e)
        ))
    })?;
    let endpoint = eks.endpoint.clone().unwrap_or(info.endpoint);
    // The CA only matters for TLS; a plain-HTTP override (a simulator) has none to check.
    let ca = info.ca_b64.filter(|_| endpoint.starts_with("https://"));
    let name = eks.name.clone();
    let source = move || -> Result<String, crate::deploy::TokenError> {
        let token = crate::eks::token(&credentials, &region, &name, std::time::SystemTime::now())?;
        mask(&token);
        Ok(token)
    };
    Cluster::with_token_source(&endpoint, ca.as_deref(), source)
        .await
        .map_err(|e| {
            Error::Usage(format!(
                "cannot use EKS cluster `{}`: {}",
                eks.name,
                super::render_chain(&e)
            ))
        })
}

/// A cluster client and the runtime its connections live on.
pub(crate) struct ClusterSession {
    runtime: tokio::runtime::Runtime,
    cluster: Cluster,
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
    spec: String,
    namespace: Option<String>,
    container: Option<String>,
}

fn targets(config: &Config, plan: &Plan) -> Vec<Target> {
    let mut out = Vec::new();
    for name in &plan.changed {
        let Some(service) = config.services.get(name) else {
            continue;
        };
        for d in &service.deploy {
            let spec = match &d.workload {
                Some(w) => w.clone(),
                None => format!("manifests {}", d.manifests.join(", ")),
            };
            out.push(Target {
                service: name.clone(),
                spec,
                namespace: d.namespace.clone(),
                container: d.container.clone(),
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

fn skipped(t: &Target, workload: String, reason: String) -> RolloutResult {
    RolloutResult {
        service: t.service.clone(),
        workload,
        status: RolloutStatus::Skipped,
        reason: Some(reason),
        seconds: 0.0,
        events: vec![],
        previous_image: None,
    }
}

/// Deploys every changed service's image to its workloads and follows the rollouts.
///
/// # Errors
/// Only for bad input found late (a malformed workload spec was already rejected by the config).
pub(crate) fn deploy_stage(
    req: &Request,
    session: &ClusterSession,
    config: &Config,
    plan: &Plan,
    images: &[ImageResult],
    git: &Git,
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
            .map(|t| skipped(t, t.spec.clone(), why.clone()))
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
    let older: deploy::NewerCheck =
        Arc::new(move |deployed: &str| repo.is_ancestor(&head, deployed) == Some(true));
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
        let mut requests = Vec::new();
        for t in &ready {
            let failed_dep = service_dependencies(config, &t.service)
                .into_iter()
                .find(|d| finished.get(d) == Some(&false));
            let image = images
                .iter()
                .find(|i| i.service == t.service && i.image.is_some());
            let workload = match t.spec.starts_with("manifests ") {
                true => None,
                false => deploy::parse_workload(
                    &t.spec,
                    t.namespace.as_deref(),
                    cluster.default_namespace(),
                )
                .ok(),
            };
            match (failed_dep, image, workload) {
                (Some(dep), _, _) => results.push(skipped(t, t.spec.clone(), format!("its dependency {dep} failed to deploy"))),
                (_, _, None) if t.spec.starts_with("manifests ") => results.push(skipped(t, t.spec.clone(), "deploying manifests is not available in this version of monoship; use a `workload` target".into())),
                (_, _, None) => results.push(skipped(t, t.spec.clone(), format!("`{}` is not a workload", t.spec))),
                (_, None, Some(w)) => {
                    let why = if config.services.get(&t.service).is_some_and(|s| s.dockerfile.is_none()) { "the service has no dockerfile, so there is no new image" } else { "its image is not in the registry" };
                    results.push(skipped(t, w.to_string(), why.into()));
                }
                (None, Some(image), Some(w)) => {
                    let reference = image.image.clone().unwrap_or_default();
                    let repository = reference.split_once('@').map(|(r, _)| r.to_string()).unwrap_or_default();
                    requests.push(DeployRequest {
                        service: t.service.clone(),
                        workload: w,
                        container: t.container.clone(),
                        repository,
                        image: reference,
                        commit: plan.head.clone(),
                        run_url: run_url.clone(),
                        timeout: req.deploy.timeout,
                        rollback: req.deploy.rollback,
                        force: req.deploy.force,
                        older_than_deployed: Some(older.clone()),
                    });
                }
            }
        }
        let started = Instant::now();
        let done = runtime.block_on(futures::future::join_all(
            requests
                .iter()
                .map(|r| deploy::deploy(cluster, r, &progress)),
        ));
        tracing::debug!(elapsed = ?started.elapsed(), count = done.len(), "rollouts finished");
        for r in done {
            let ok = matches!(r.status, RolloutStatus::Succeeded);
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

/// `ship --dry-run`: what would be deployed where.
///
/// # Errors
/// When stdout cannot be written.
pub(crate) fn print_dry_run(
    _req: &Request,
    config: &Config,
    plan: &Plan,
    out: &mut dyn Write,
) -> Result<(), Error> {
    for t in targets(config, plan) {
        writeln!(
            out,
            "deploy {}: patch {} to the image built above, then wait for its rollout",
            t.service, t.spec
        )
        .map_err(write_err("stdout"))?;
    }
    Ok(())
}
