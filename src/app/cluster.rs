//! Before `ship` builds anything: the cluster client (a kubeconfig, or EKS by name) and the
//! manifests each changed service applies, so a cluster that cannot be used or a broken
//! manifest stops the run with nothing pushed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;

use super::context::ClusterChoice;
use super::targets::targets;
use super::{Error, Run, RunContext};
use crate::config::EksClusterConfig;
use crate::deploy::manifests::{self, Document};
use crate::deploy::preflight::{self, ManifestCheck, PreflightError, WorkloadCheck};
use crate::deploy::{Cluster, DeployError, TokenError};
use crate::detect::git::Git;
use crate::plan::glob;
use crate::report::commands::{one_line, Annotation, Level};

/// Why the cluster cannot be used, or a manifest cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot use the cluster; pass --kubeconfig and --context (inputs `kubeconfig` and `kube-context`)")]
    Kubeconfig(#[source] DeployError),
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    #[error(transparent)]
    Describe(crate::deploy::eks::EksError),
    #[error("no AWS region for the EKS cluster: set `cluster.eks.region` or AWS_REGION")]
    NoRegion,
    #[error("no AWS credentials to sign the EKS token with")]
    NoCredentials(#[source] Option<aws_credential_types::provider::error::CredentialsError>),
    #[error("cannot use EKS cluster `{name}`")]
    Eks {
        name: String,
        #[source]
        source: DeployError,
    },
    #[error("cannot read manifest {path} of service {service}")]
    ReadManifest {
        path: String,
        service: String,
        #[source]
        source: std::io::Error,
    },
    #[error("service {service}: bad manifest glob `{pattern}`: {why}")]
    ManifestGlob {
        service: String,
        pattern: String,
        why: String,
    },
    #[error("service {service}: `deploy.manifests` {patterns} matches no file in the repository")]
    NoManifest { service: String, patterns: String },
    #[error(transparent)]
    Preflight(#[from] PreflightError),
}

/// A cluster client, with the manifests to apply.
pub(crate) struct ClusterSession {
    pub cluster: Cluster,
    pub manifests: ManifestFiles,
}

/// The documents of each changed service's `manifests` targets, by service and deploy entry.
pub(crate) type ManifestFiles = BTreeMap<(String, usize), Vec<Document>>;

/// Reads the manifests and connects to the cluster, before anything is built: a `ship` that
/// cannot reach its cluster should stop before it pushes.
///
/// # Errors
/// When no kubeconfig can be loaded, EKS cannot be asked, or a manifest cannot be used.
pub(crate) fn connect(run: &Run<'_>) -> Result<ClusterSession, Error> {
    let manifests = read_manifests(run)?;
    let ctx = run.ctx;
    // The client's background worker lives on the session's runtime, which runs the deploys.
    let cluster = match &ctx.cluster {
        ClusterChoice::Eks(eks) => run.session.block_on(connect_eks(ctx, eks))?,
        ClusterChoice::Kubeconfig { path, context } => run
            .session
            .block_on(async {
                match path {
                    Some(path) => Cluster::from_kubeconfig(Some(path), context.as_deref()).await,
                    None => {
                        let usual = &ctx.deploy.usual_kubeconfigs;
                        Cluster::from_usual_kubeconfigs(usual, context.as_deref()).await
                    }
                }
            })
            .map_err(ClusterError::Kubeconfig)?,
    };
    let (workloads, manifest_checks) = preflight_targets(run, &cluster, &manifests);
    let warnings = run
        .session
        .block_on(preflight::check(&cluster, &workloads, &manifest_checks))
        .map_err(ClusterError::from)?;
    for warning in warnings {
        if ctx.in_action() {
            eprintln!("{}", Annotation::new(Level::Warning, warning));
        } else {
            eprintln!("warning: {}", one_line(&warning));
        }
    }
    Ok(ClusterSession { cluster, manifests })
}

/// What the preflight checks: each changed service's `workload` targets (a spec that is not
/// a workload is left to the deploy, which reports it) and `manifests` targets.
fn preflight_targets(
    run: &Run<'_>,
    cluster: &Cluster,
    manifests: &ManifestFiles,
) -> (Vec<WorkloadCheck>, Vec<ManifestCheck>) {
    let mut workloads = Vec::new();
    let mut manifest_checks = Vec::new();
    for t in targets(&run.ctx.config, run.plan) {
        let namespace = t.namespace.clone();
        if t.manifests.is_some() {
            manifest_checks.push(ManifestCheck {
                service: t.service.clone(),
                documents: manifests
                    .get(&(t.service.clone(), t.index))
                    .cloned()
                    .unwrap_or_default(),
                namespace: namespace.unwrap_or_else(|| cluster.default_namespace().to_string()),
            });
        } else if unbuilt(run, &t.service) {
            // Skipped by the deploy: there is no new image to put in the workload.
            continue;
        } else if let Ok(workload) = crate::deploy::parse_workload(
            &t.spec,
            namespace.as_deref(),
            cluster.default_namespace(),
        ) {
            workloads.push(WorkloadCheck {
                service: t.service.clone(),
                workload,
                container: t.container.clone(),
            });
        }
    }
    (workloads, manifest_checks)
}

/// An EKS cluster: endpoint and CA from DescribeCluster, tokens minted from the credentials
/// (each masked in Actions before use).
async fn connect_eks(ctx: &RunContext, eks: &EksClusterConfig) -> Result<Cluster, ClusterError> {
    let in_action = ctx.in_action();
    let mask = move |secret: &str| {
        if in_action {
            eprintln!("{}", crate::report::commands::add_mask(secret));
        }
    };
    let settings = crate::aws::AwsSettings {
        region: eks.region.clone(),
        role_to_assume: eks.role_to_assume.clone(),
        ..ctx.aws_session.clone()
    };
    let sdk = crate::aws::load(&settings, &|k| ctx.aws_env.get(k), mask).await?;
    let info = crate::deploy::eks::describe(&sdk, &eks.name)
        .await
        .map_err(ClusterError::Describe)?;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or(ClusterError::NoRegion)?;
    let provider = sdk
        .credentials_provider()
        .ok_or(ClusterError::NoCredentials(None))?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| ClusterError::NoCredentials(Some(e)))?;
    let endpoint = eks.endpoint.clone().unwrap_or(info.endpoint);
    // The CA only matters for TLS; a plain-HTTP override (a simulator) has none to check.
    let ca = info.ca_b64.filter(|_| endpoint.starts_with("https://"));
    let name = eks.name.clone();
    let current = Arc::new(Mutex::new(credentials));
    tokio::spawn(keep_fresh(provider.clone(), Arc::clone(&current)));
    let source = move || -> Result<String, TokenError> {
        let credentials = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let token = crate::deploy::eks::token(&credentials, &region, &name, SystemTime::now())?;
        mask(&token);
        Ok(token)
    };
    Cluster::with_token_source(&endpoint, ca.as_deref(), source)
        .await
        .map_err(|source| ClusterError::Eks {
            name: eks.name.clone(),
            source,
        })
}

/// Replaces temporary credentials (an assumed role's last an hour) five minutes before they
/// expire, for as long as the run lasts, so tokens minted late in a long ship are still
/// signed with valid keys.
async fn keep_fresh(provider: SharedCredentialsProvider, current: Arc<Mutex<Credentials>>) {
    const EARLY: Duration = Duration::from_secs(5 * 60);
    const RETRY: Duration = Duration::from_secs(30);
    loop {
        let expiry = current.lock().unwrap_or_else(|p| p.into_inner()).expiry();
        let Some(expiry) = expiry else { return };
        let wait = expiry
            .duration_since(SystemTime::now())
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

fn unbuilt(run: &Run<'_>, service: &str) -> bool {
    run.ctx
        .config
        .services
        .get(service)
        .is_some_and(|s| s.dockerfile.is_none())
}

/// Reads the manifests of every changed service from the work tree, before anything is built,
/// so a missing file or a broken document stops the run with nothing pushed.
///
/// # Errors
/// When a pattern matches no file or a document cannot be used (exit 2, with file and line).
pub(crate) fn read_manifests(run: &Run<'_>) -> Result<ManifestFiles, Error> {
    let mut out = ManifestFiles::new();
    let mut files: Option<Vec<String>> = None;
    for t in targets(&run.ctx.config, run.plan) {
        let Some(patterns) = &t.manifests else {
            continue;
        };
        let candidates = match &mut files {
            Some(f) => f,
            None => files.insert(repository_files(run.git)?),
        };
        let mut documents = Vec::new();
        for path in matching(patterns, candidates, &t.service)? {
            super::inside::inside(run.git.root(), &path)?;
            let text = std::fs::read_to_string(run.git.root().join(&path)).map_err(|source| {
                ClusterError::ReadManifest {
                    path: path.clone(),
                    service: t.service.clone(),
                    source,
                }
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

/// The files that `patterns` (globs from the root; `!` excludes) select, sorted. Pure.
fn matching(
    patterns: &[String],
    files: &[String],
    service: &str,
) -> Result<Vec<String>, ClusterError> {
    let mut include = globset::GlobSetBuilder::new();
    let mut exclude = globset::GlobSetBuilder::new();
    let bad = |pattern: &str, why: String| ClusterError::ManifestGlob {
        service: service.to_string(),
        pattern: pattern.to_string(),
        why,
    };
    for p in patterns {
        let (negated, pattern) = glob::split_negation(p);
        let compiled = glob::compile(pattern).map_err(|e| bad(p, e.kind().to_string()))?;
        if negated {
            exclude.add(compiled);
        } else {
            include.add(compiled);
        }
    }
    let build = |b: globset::GlobSetBuilder| {
        b.build()
            .map_err(|e| bad(&patterns.join(", "), e.to_string()))
    };
    let (include, exclude) = (build(include)?, build(exclude)?);
    let picked: Vec<String> = files
        .iter()
        .filter(|f| include.is_match(f.as_str()) && !exclude.is_match(f.as_str()))
        .cloned()
        .collect();
    if picked.is_empty() {
        return Err(ClusterError::NoManifest {
            service: service.to_string(),
            patterns: patterns.join(", "),
        });
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::future;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        let current = Arc::new(Mutex::new(first));
        tokio::spawn(keep_fresh(provider, Arc::clone(&current)));
        // 40 s before the 5-minute margin is reached, the renewal is due.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(current.lock().unwrap().access_key_id(), "key-0");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(current.lock().unwrap().access_key_id(), "key-1");
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert_eq!(current.lock().unwrap().access_key_id(), "key-2");
    }

    #[test]
    fn manifest_globs_select_and_exclude() {
        let files: Vec<String> = ["k8s/a.yml", "k8s/b.yml", "k8s/test/c.yml", "README.md"]
            .map(String::from)
            .to_vec();
        let patterns = ["k8s/**/*.yml".to_string(), "!k8s/test/**".to_string()];
        assert_eq!(
            matching(&patterns, &files, "cart").unwrap(),
            ["k8s/a.yml", "k8s/b.yml"]
        );
        let none = matching(&["deploy/*.yml".to_string()], &files, "cart").unwrap_err();
        assert_eq!(
            none.to_string(),
            "service cart: `deploy.manifests` deploy/*.yml matches no file in the repository"
        );
    }
}
