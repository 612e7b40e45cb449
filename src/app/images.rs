//! The build and push stages of a run: from a plan to images in the registry.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use super::context::RegistryChoice;
use super::dockerfiles::PlanStage;
use super::{write_err, Error, Run, RunContext};
use crate::cli::{Command, Format};
use crate::config::{EcrConfig, ServiceConfig};
use crate::image::base::{self, Bases, ImageRef, BASE_IMAGES_LABEL};
use crate::image::build::{
    buildx_reason, choose_builder, BasePull, BuildJob, Builder, Builders, DockerCli, DockerError,
    RegistryCache,
};
use crate::image::content::{self, BuildSettings, InputFile};
use crate::image::docker_config::{self, DockerConfigError, RunnerConfig};
use crate::image::ecr::{Ecr, EcrError, EcrSettings};
use crate::image::engine::{self, DockerAddress, Engine, EngineError};
use crate::image::push::{self, ImageJob, ImageResult, ImageStatus};
use crate::image::registry::{OciRegistry, RegistryError, RegistryTarget};
use crate::plan::dockerfile::read_base_images;
use crate::plan::{DockerBuild, Plan};
use crate::report::commands::{self, Annotation, Level};
use crate::report::log::print_group;
use crate::report::text;

/// Why the images cannot be built or pushed at all (each image's own failure is a result).
#[derive(Debug, thiserror::Error)]
pub enum ImageStageError {
    #[error("no registry to push to: set `registry.url` (or `registry.ecr`) in the config, or pass --registry (input `registry`)")]
    NoRegistry,
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("service `{service}` cannot be pushed")]
    Repository {
        service: String,
        #[source]
        source: RegistryError,
    },
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    #[error(transparent)]
    EcrLogin(Box<EcrError>),
    #[error("service `{service}` pushes to {repository}, where pull-request runs push the images of service `{other}`; give one of them another `repository:`, or set `registry.pull_request_prefix`")]
    SharedRepository {
        service: String,
        other: String,
        repository: String,
    },
    #[error("service `{service}`: no ECR repository to push to")]
    EcrRepository {
        service: String,
        #[source]
        source: Box<EcrError>,
    },
    #[error(transparent)]
    DockerLogin(#[from] DockerError),
    #[error(transparent)]
    DockerHost(#[from] EngineError),
    #[error(transparent)]
    RunnerConfig(#[from] DockerConfigError),
    #[error("cannot create a temporary folder for the build metadata")]
    TempDir(#[source] std::io::Error),
}

/// The images of a build could not be had: the Docker daemon was needed and is not there.
const NO_DAEMON: &str = "the image must be built, but the Docker daemon cannot be reached; in a workflow the runner mounts /var/run/docker.sock into Docker container actions, elsewhere start Docker or set DOCKER_HOST";

/// Builds and pushes the images of the changed services that have a Dockerfile. `None` when
/// it was a dry run (the planned commands were printed on `stdout` instead). Progress, build
/// logs and masks go to `log` (stderr), so `--format json` keeps stdout to one document.
///
/// # Errors
/// Bad input (no registry, a bad registry address or repository): nothing is built then.
pub(crate) fn build_stage(
    run: &Run<'_>,
    stage: &PlanStage,
    stdout: &mut dyn Write,
    log: &mut dyn Write,
) -> Result<Option<Built>, Error> {
    let ctx = run.ctx;
    let runner = runner_config(ctx)?;
    let (ecr, mut target) = registry_target(run)?;
    runner_login(ctx, &runner, &mut target, log)?;
    let pull_requests = pull_request_target(ctx, &target)?;
    check_pull_request_repositories(&ctx.config.services, &target, &pull_requests)?;
    let (target, twin_target) = match is_pull_request(ctx) {
        true => (pull_requests, target),
        false => (target, pull_requests),
    };
    if let (true, Some(password)) = (ctx.in_action(), &target.password) {
        // Masked before anything could print it.
        writeln!(log, "{}", commands::add_mask(password.expose())).map_err(write_err("stderr"))?;
    }
    let metadata_dir = tempfile::Builder::new()
        .prefix("monoship-build-")
        .tempdir()
        .map_err(ImageStageError::TempDir)?;
    let files = content::work_tree_files(run.git.repo())?;
    let settings = JobSettings {
        target: &target,
        root: run.git.root().to_path_buf(),
        commit_tags: commit_tags(&run.plan.head, ctx.pull_request),
        labels: push::labels(
            ctx.action.as_ref().and_then(|a| a.source_url.as_deref()),
            &run.plan.head,
            run.git
                .repo()
                .commit_time(&run.plan.head)
                .ok()
                .flatten()
                .as_deref(),
        ),
        metadata_dir: metadata_dir.path().to_path_buf(),
        registry_cache: ctx
            .build
            .registry_cache
            .then_some(matches!(ctx.registry, RegistryChoice::Ecr(_))),
        rebuild: ctx.build.rebuild,
        twin_target: Some(&twin_target),
        builder: named_builder(ctx, &runner, log),
    };
    // A daemon address monoship cannot use is bad input, refused before anything is built.
    docker_address(ctx)?;
    let dockerfiles = changed_dockerfiles(ctx, run.plan, stage, &settings.root);
    check_repositories(ctx, &dockerfiles, &target)?;
    let registry = Arc::new(OciRegistry::new(target.clone()).map_err(ImageStageError::from)?);
    let bases = service_bases(run, &dockerfiles, &registry, &runner);
    let jobs = image_jobs(
        ctx,
        run.plan,
        stage,
        &files,
        &settings,
        (&dockerfiles, &bases),
    )?;
    if ctx.dry_run {
        print_dry_run(ctx, run.plan, &jobs, &target, stdout)?;
        return Ok(None);
    }
    if jobs.is_empty() {
        return Ok(Some(Built {
            results: vec![],
            target,
        }));
    }
    let repo = run.git.repo().clone();
    let head = run.plan.head.clone();
    // Only an image built from this commit's own history may stand in for a build.
    let trusted: push::TrustedRevision =
        Arc::new(move |revision| repo.is_ancestor(revision, &head) == Some(true));
    let results = run.session.block_on(push_all(
        run,
        jobs,
        (registry, ecr.as_ref()),
        trusted,
        &runner,
        log,
    ))?;
    Ok(Some(Built { results, target }))
}

/// The images of a run, and the registry they were pushed to (logged in), which the deploy
/// stage tags each deployed digest in.
pub(crate) struct Built {
    pub results: Vec<ImageResult>,
    pub target: RegistryTarget,
}

/// The runner's Docker config (logins, buildx builders); empty when there is no folder.
///
/// # Errors
/// Bad input: its `config.json` cannot be read or parsed.
fn runner_config(ctx: &RunContext) -> Result<RunnerConfig, ImageStageError> {
    match &ctx.build.docker.config_dir {
        Some(dir) => Ok(docker_config::load(dir)?),
        None => Ok(RunnerConfig::default()),
    }
}

/// The buildx builder of every image: the one named (input `builder`, `build.builder`,
/// `BUILDX_BUILDER`), else buildx's current builder in the runner's Docker config (what
/// `docker buildx use` and setup-buildx-action chose), said on `log`; `None`: buildx's
/// default, the daemon itself, which the Engine API reaches directly.
fn named_builder(ctx: &RunContext, runner: &RunnerConfig, log: &mut dyn Write) -> Option<String> {
    if let Some(name) = &ctx.build.builder {
        return Some(name.clone());
    }
    let endpoint = match ctx.build.docker.host.as_deref() {
        Some(host) => host.to_string(),
        None => format!("unix://{}", engine::DEFAULT_SOCKET),
    };
    let name = runner.current_builder(&endpoint)?;
    let _ = writeln!(
        log,
        "images are built with buildx's current builder `{name}` ({}/buildx/current); name another with the input `builder`",
        runner.dir.display()
    );
    Some(name.to_string())
}

/// Gives `target` the runner's login for its host when monoship has none of its own (its
/// own wins), masks every login of the runner's config (in Actions), and warns when the
/// push registry's login is in a credential helper monoship cannot run.
fn runner_login(
    ctx: &RunContext,
    runner: &RunnerConfig,
    target: &mut RegistryTarget,
    log: &mut dyn Write,
) -> Result<(), Error> {
    if let (None, None, Some(login)) = (
        &target.username,
        &target.password,
        runner.login(&target.host),
    ) {
        target.username = Some(login.username.clone());
        target.password = Some(login.password.clone());
    }
    if ctx.in_action() {
        // Masked before anything could print them, though nothing does.
        for login in runner.logins.values() {
            writeln!(log, "{}", commands::add_mask(login.password.expose()))
                .map_err(write_err("stderr"))?;
        }
    }
    if let (None, Some(note)) = (&target.password, runner.helper_note(&target.host)) {
        writeln!(log, "warning: {note}").map_err(write_err("stderr"))?;
    }
    Ok(())
}

/// Checks (and, when allowed, creates) the ECR repository of every job, once the builders
/// are ready and before anything is built.
async fn ensure_repositories(ecr: &Ecr, jobs: &[ImageJob]) -> Result<(), ImageStageError> {
    for job in jobs {
        ecr.ensure_repository(&job.repository)
            .await
            .map_err(|source| ImageStageError::EcrRepository {
                service: job.service.clone(),
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// The Docker daemon's address from `DOCKER_HOST`; one monoship cannot use is bad input.
fn docker_address(ctx: &RunContext) -> Result<DockerAddress, ImageStageError> {
    let docker = &ctx.build.docker;
    Ok(engine::docker_address(
        docker.host.as_deref(),
        docker.tls_verify,
    )?)
}

/// The repository folder of pull-request images when `registry.pull_request_prefix` is unset.
pub(crate) const PULL_REQUEST_PREFIX: &str = "pr";

/// Whether this run builds a pull request (event `pull_request*`).
fn is_pull_request(ctx: &RunContext) -> bool {
    ctx.action
        .as_ref()
        .is_some_and(|a| a.event_name.starts_with("pull_request"))
        || ctx.pull_request.is_some()
}

/// Where pull-request runs push: below the pull-request prefix of `target`, so their tags
/// never name an image a protected-branch run reuses.
fn pull_request_target(
    ctx: &RunContext,
    target: &RegistryTarget,
) -> Result<RegistryTarget, ImageStageError> {
    let prefix = ctx
        .config
        .registry
        .as_ref()
        .and_then(|r| r.pull_request_prefix.as_deref())
        .unwrap_or(PULL_REQUEST_PREFIX);
    let mut target = target.clone();
    target.prefix = target.path(prefix);
    crate::image::registry::validate_repository(&target.prefix)?;
    Ok(target)
}

/// Where images go, logged in: ECR (a placeholder on a dry run) or the registry by address.
fn registry_target(run: &Run<'_>) -> Result<(Option<Ecr>, RegistryTarget), Error> {
    let ctx = run.ctx;
    let target = match &ctx.registry {
        RegistryChoice::Ecr(ecr) if ctx.dry_run => {
            let prefix = ecr
                .prefix
                .as_ref()
                .map(|p| format!("/{p}"))
                .unwrap_or_default();
            let placeholder = format!("account.dkr.ecr.region.amazonaws.com{prefix}");
            RegistryTarget::parse(&placeholder, None, None).map_err(ImageStageError::from)?
        }
        RegistryChoice::Ecr(ecr) => {
            let (client, target) = run.session.block_on(ecr_login(ctx, ecr))?;
            return Ok((Some(client), target));
        }
        RegistryChoice::Url {
            url,
            username,
            password,
        } => RegistryTarget::parse_push(url, username.clone(), password.clone())
            .map_err(ImageStageError::from)?,
        RegistryChoice::Missing => return Err(ImageStageError::NoRegistry.into()),
    };
    Ok((None, target))
}

/// Logs in to ECR: AWS credentials (default chain or GitHub OIDC), then the registry token.
/// Every credential is masked (in Actions) before it is used.
async fn ecr_login(
    ctx: &RunContext,
    ecr_config: &EcrConfig,
) -> Result<(Ecr, RegistryTarget), ImageStageError> {
    let settings = crate::aws::AwsSettings {
        region: ecr_config.region.clone(),
        role_to_assume: ecr_config.role_to_assume.clone(),
        ..ctx.aws_session.clone()
    };
    let in_action = ctx.in_action();
    let mask = move |secret: &str| {
        if in_action {
            eprintln!("{}", commands::add_mask(secret));
        }
    };
    let sdk = crate::aws::load(&settings, &|k| ctx.aws_env.get(k), mask).await?;
    let client = Ecr::new(
        &sdk,
        EcrSettings {
            registry_id: ecr_config.registry_id.clone(),
            create_repositories: ecr_config.create_repositories,
            scan_on_push: ecr_config.scan_on_push.unwrap_or(true),
            immutable_tags: ecr_config.immutable_tags.unwrap_or(true),
            endpoint: ecr_config.endpoint.clone(),
        },
    );
    let login = client
        .login()
        .await
        .map_err(|e| ImageStageError::EcrLogin(Box::new(e)))?;
    if in_action {
        eprintln!("{}", commands::add_mask(login.password.expose()));
    }
    let url = match &ecr_config.prefix {
        Some(p) => format!("{}/{p}", login.host),
        None => login.host.clone(),
    };
    let target = RegistryTarget::parse(
        &url,
        Some(login.username.clone()),
        Some(login.password.clone()),
    )?;
    Ok((client, target))
}

/// The commit tags of every image: the commit id, and `pr-<n>` on a pull request.
fn commit_tags(head: &str, pull_request: Option<u64>) -> Vec<String> {
    let mut tags = vec![head.to_string()];
    if let Some(n) = pull_request {
        tags.push(format!("pr-{n}"));
    }
    tags
}

/// What every image job of a run shares.
struct JobSettings<'a> {
    target: &'a RegistryTarget,
    root: std::path::PathBuf,
    commit_tags: Vec<String>,
    labels: BTreeMap<String, String>,
    metadata_dir: std::path::PathBuf,
    /// `Some(ecr)` when a registry cache is written (ECR needs its own cache format).
    registry_cache: Option<bool>,
    rebuild: bool,
    /// Where the runs of the other side push (branch runs for a pull request, and the
    /// reverse), whose images a deploy replaces too.
    twin_target: Option<&'a RegistryTarget>,
    /// The named buildx builder that builds every image.
    builder: Option<String>,
}

/// The Dockerfile of each changed service that has one, as the work tree holds it (what
/// Docker builds).
fn changed_dockerfiles(
    ctx: &RunContext,
    plan: &Plan,
    stage: &PlanStage,
    root: &std::path::Path,
) -> BTreeMap<String, String> {
    plan.changed
        .iter()
        .filter(|name| ctx.config.services.contains_key(*name))
        .filter_map(|name| {
            let build = stage.builds.get(name)?;
            let text = std::fs::read_to_string(root.join(&build.dockerfile)).unwrap_or_default();
            Some((name.clone(), text))
        })
        .collect()
}

/// The base images of each service, looked up in their registries (all at once, each
/// reference once); a dry run looks nothing up. A signal stops the lookups.
fn service_bases(
    run: &Run<'_>,
    dockerfiles: &BTreeMap<String, String>,
    registry: &OciRegistry,
    runner: &RunnerConfig,
) -> BTreeMap<String, Bases> {
    let no_args = BTreeMap::new();
    let found: BTreeMap<&String, _> = dockerfiles
        .iter()
        .map(|(name, text)| {
            let args = run.ctx.config.services.get(name).map(|s| &s.build_args);
            (name, read_base_images(text, args.unwrap_or(&no_args)))
        })
        .collect();
    let references: Vec<String> = found
        .values()
        .flat_map(|f| f.images.iter().map(|i| i.reference.clone()))
        .collect();
    let resolved = match run.ctx.dry_run || references.is_empty() {
        true => Default::default(),
        false => run.session.block_on(async {
            tokio::select! {
                biased;
                _ = run.session.interrupt.received() => Default::default(),
                resolved = base::resolve_all(&references, registry, runner) => resolved,
            }
        }),
    };
    found
        .into_iter()
        .map(|(name, f)| (name.clone(), Bases::of(&f, &resolved)))
        .collect()
}

/// One job per changed service with a Dockerfile, in plan order.
fn image_jobs(
    ctx: &RunContext,
    plan: &Plan,
    stage: &PlanStage,
    files: &[InputFile],
    settings: &JobSettings<'_>,
    (dockerfiles, bases): (&BTreeMap<String, String>, &BTreeMap<String, Bases>),
) -> Result<Vec<ImageJob>, ImageStageError> {
    let by_service = stage.matcher.docker_inputs(files);
    let mut jobs = Vec::new();
    for name in &plan.changed {
        let (Some(build), Some(service)) = (stage.builds.get(name), ctx.config.services.get(name))
        else {
            continue;
        };
        let selected = by_service.get(name).map(Vec::as_slice).unwrap_or_default();
        let dockerfile_text = dockerfiles
            .get(name)
            .map(String::as_str)
            .unwrap_or_default();
        let bases = bases.get(name).cloned().unwrap_or_default();
        let job = image_job(name, service, build, selected, settings, bases)?;
        jobs.push(ImageJob {
            instructions: crate::plan::dockerfile::instructions(dockerfile_text),
            ..job
        });
    }
    Ok(jobs)
}

/// A repository the registry cannot take is bad input, refused before any lookup or build.
fn check_repositories(
    ctx: &RunContext,
    dockerfiles: &BTreeMap<String, String>,
    target: &RegistryTarget,
) -> Result<(), ImageStageError> {
    for name in dockerfiles.keys() {
        if let Some(service) = ctx.config.services.get(name) {
            check_repository(target, name, service)?;
        }
    }
    Ok(())
}

/// The repository name of service `name` (below the registry's prefix), checked against what
/// `target` takes. Pure.
fn check_repository(
    target: &RegistryTarget,
    name: &str,
    service: &ServiceConfig,
) -> Result<String, ImageStageError> {
    let repository_name = repository_name(name, service);
    target
        .check_repository(&repository_name)
        .map_err(|source| ImageStageError::Repository {
            service: name.to_string(),
            source,
        })?;
    Ok(repository_name)
}

/// The repository of service `name` below the registry's prefix: `repository`, else the name
/// in lower case.
fn repository_name(name: &str, service: &ServiceConfig) -> String {
    service
        .repository
        .clone()
        .unwrap_or_else(|| name.to_ascii_lowercase())
}

/// Refuses two services of which one's branch images and the other's pull-request images
/// would share a repository (`repository: pr/cart` beside `cart`, or `pr-cart` beside `cart`
/// on Docker Hub, where the pull-request folder joins the name): a pull request would push
/// into the other service's repository. Pure.
fn check_pull_request_repositories(
    services: &BTreeMap<String, ServiceConfig>,
    branch: &RegistryTarget,
    pull_requests: &RegistryTarget,
) -> Result<(), ImageStageError> {
    let paths = |target: &RegistryTarget| -> BTreeMap<String, String> {
        services
            .iter()
            .map(|(name, service)| {
                let path = target.path(&repository_name(name, service));
                (path.to_ascii_lowercase(), name.clone())
            })
            .collect()
    };
    let pull_request_paths = paths(pull_requests);
    for (path, service) in paths(branch) {
        if let Some(other) = pull_request_paths.get(&path) {
            return Err(ImageStageError::SharedRepository {
                service,
                other: other.clone(),
                repository: format!("{}/{path}", branch.host),
            });
        }
    }
    Ok(())
}

/// The job of one service: its repository, content tag and build. Pure.
fn image_job(
    name: &str,
    service: &ServiceConfig,
    build: &DockerBuild,
    selected: &[&InputFile],
    settings: &JobSettings<'_>,
    bases: Bases,
) -> Result<ImageJob, ImageStageError> {
    let target = settings.target;
    let repository_name = check_repository(target, name, service)?;
    let content_tag = content::content_tag(
        selected,
        &BuildSettings {
            dockerfile: &build.dockerfile,
            context: &build.context,
            build_args: Some(&service.build_args),
            target: service.target.as_deref(),
            platforms: &service.platforms,
        },
        &bases,
    );
    let mut labels = settings.labels.clone();
    labels.insert(BASE_IMAGES_LABEL.into(), bases.label());
    let image = target.image(&repository_name);
    let tags = std::iter::once(&content_tag)
        .chain(&settings.commit_tags)
        .map(|t| format!("{image}:{t}"))
        .collect();
    let root = &settings.root;
    Ok(ImageJob {
        service: name.to_string(),
        repository: target.path(&repository_name),
        image: image.clone(),
        content_tag,
        commit_tags: settings.commit_tags.clone(),
        build: BuildJob {
            service: name.to_string(),
            dockerfile: root.join(&build.dockerfile),
            context: if build.context.is_empty() {
                root.clone()
            } else {
                root.join(&build.context)
            },
            tags,
            build_args: service.build_args.clone(),
            target: service.target.clone(),
            platforms: service.platforms.clone(),
            labels,
            pull: bases.by_tag,
            metadata_file: Some(push::metadata_path(&settings.metadata_dir, name)),
            cache: settings.registry_cache.map(|ecr| RegistryCache {
                reference: format!("{image}:buildcache"),
                ecr,
            }),
            root: root.clone(),
            inputs: selected.iter().map(|f| (*f).clone()).collect(),
            bases: bases
                .digests
                .iter()
                .map(|(reference, digest)| BasePull {
                    reference: reference.clone(),
                    digest: digest.clone(),
                })
                .collect(),
            builder: settings.builder.clone(),
        },
        dockerfile: build.dockerfile.clone(),
        instructions: vec![],
        rebuild: settings.rebuild,
        twin_image: settings.twin_target.map(|t| t.image(&repository_name)),
        bases,
    })
}

/// The buildx CLI, logged in, for the images that need it (`why`): the runner's logins and
/// builders in its private config, monoship's own login over them. A named builder it cannot
/// find is re-created when its docker-container node runs on the daemon (`engine`).
///
/// # Errors
/// Bad input: buildx is needed and not installed, the login fails, or the named builder
/// cannot be found.
async fn buildx_cli(
    ctx: &RunContext,
    target: &RegistryTarget,
    (why, builder): (&str, Option<&str>),
    runner: &RunnerConfig,
    engine: Option<&Engine>,
) -> Result<Option<DockerCli>, ImageStageError> {
    let program = &ctx.build.docker.program;
    let no_buildx = || match builder {
        Some(name) => DockerError::NoBuildxForBuilder {
            program: program.display().to_string(),
            name: name.to_string(),
        },
        None => DockerError::NoBuildx {
            program: program.display().to_string(),
            why: why.to_string(),
        },
    };
    let cli = match DockerCli::connect(program, Some(runner)).await {
        Ok(cli) => cli,
        Err(DockerError::Spawn { .. }) => return Err(no_buildx().into()),
        Err(e) => {
            tracing::warn!("{}", crate::error::render_chain(&e));
            return Ok(None);
        }
    };
    if !cli.has_buildx() {
        return Err(no_buildx().into());
    }
    if let (Some(user), Some(password)) = (&target.username, &target.password) {
        // Docker Hub logs in at the address the CLI stores it by.
        let server = crate::image::hub::auth_address(&target.host);
        cli.login(&server, user, password).await?;
    }
    if let Some(name) = builder {
        if !cli.has_builder(name).await? {
            let container = format!("buildx_buildkit_{name}0");
            let running = match engine {
                Some(engine) => engine.container_exists(&container).await?,
                None => false,
            };
            if !running {
                let config = match &ctx.build.docker.config_dir {
                    Some(dir) => dir.display().to_string(),
                    None => "none: neither DOCKER_CONFIG nor HOME is set".into(),
                };
                return Err(DockerError::NoBuilder {
                    name: name.to_string(),
                    config,
                }
                .into());
            }
            tracing::info!("the buildx builder `{name}` is not in the runner's Docker config; its record is re-created for the container {container}");
            cli.recreate_builder(name).await?;
        }
    }
    Ok(Some(cli))
}

/// The daemon's API, logged in to the registry, or `None` (with a warning) when it does not
/// answer. Says once when the daemon has no BuildKit.
///
/// # Errors
/// The registry refuses the credentials.
async fn engine_client(
    address: DockerAddress,
    target: &RegistryTarget,
    runner: &RunnerConfig,
    log: &mut dyn Write,
) -> Result<Option<Engine>, ImageStageError> {
    let mut engine = match Engine::connect(address).await {
        Ok(engine) => engine,
        Err(e) => {
            tracing::warn!("{}", crate::error::render_chain(&e));
            return Ok(None);
        }
    };
    if !engine.has_buildkit() {
        let _ = writeln!(log, "warning: the Docker daemon offers no BuildKit (it needs a Linux daemon with API 1.39 or later); images are built with its legacy builder");
    }
    if let (Some(user), Some(password)) = (&target.username, &target.password) {
        engine.login(&target.host, user, password);
        engine.check_login().await?;
    }
    let push_host = docker_config::normalize_host(&target.host);
    for (host, login) in runner.logins.iter().filter(|(h, _)| **h != push_host) {
        engine.add_login(host, &login.username, &login.password);
    }
    Ok(Some(engine))
}

/// Builds and pushes `jobs`, `max_parallel` at a time, telling progress on `log`.
async fn push_all(
    run: &Run<'_>,
    jobs: Vec<ImageJob>,
    (registry, ecr): (Arc<OciRegistry>, Option<&Ecr>),
    trusted: push::TrustedRevision,
    runner: &RunnerConfig,
    log: &mut dyn Write,
) -> Result<Vec<ImageResult>, Error> {
    let ctx = run.ctx;
    let target = registry.target().clone();
    let address = docker_address(ctx)?;
    let engine = engine_client(address, &target, runner, log).await?;
    let buildx = match jobs.iter().find_map(|j| buildx_reason(&j.build)) {
        Some(why) => {
            let builder = jobs.iter().find_map(|j| j.build.builder.as_deref());
            buildx_cli(ctx, &target, (why, builder), runner, engine.as_ref()).await?
        }
        None => None,
    };
    // Repositories are made only once nothing else can refuse the run before a build.
    if let Some(ecr) = ecr {
        ensure_repositories(ecr, &jobs).await?;
    }
    // The daemon is needed only for images that must be built; its absence fails those.
    let docker = match (engine, buildx) {
        (None, None) => None,
        (engine, buildx) => Some(Arc::new(Builders {
            buildkit: engine.as_ref().is_some_and(Engine::has_buildkit)
                && !ctx.build.docker.legacy_builder,
            engine,
            buildx,
        })),
    };
    let docker_missing = docker.is_none();
    let in_action = ctx.in_action();
    let max_parallel = ctx.build.max_parallel;
    // push_images starts jobs in order, `max_parallel` at a time, and the next one as soon
    // as one finishes: the progress lines follow that order.
    let names: Vec<String> = jobs.iter().map(|j| j.service.clone()).collect();
    let mut next = max_parallel.max(1).min(names.len());
    for (i, name) in names.iter().enumerate().take(next) {
        let _ = writeln!(log, "{}", text::image_started(name, i + 1, names.len()));
    }
    let interrupt = &run.session.interrupt;
    let mut results = push::push_images(
        jobs,
        docker,
        registry,
        trusted,
        max_parallel,
        interrupt,
        |r| {
            let _ = print_progress(r, in_action, log);
            if let Some(name) = names.get(next) {
                next += 1;
                let _ = writeln!(log, "{}", text::image_started(name, next, names.len()));
            }
        },
    )
    .await;
    if docker_missing {
        for r in results
            .iter_mut()
            .filter(|r| r.status == ImageStatus::Failed)
        {
            r.error = Some(NO_DAEMON.into());
        }
    }
    Ok(results)
}

fn print_progress(r: &ImageResult, in_action: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(warning) = &r.warning {
        let message = format!("{}: {warning}", r.service);
        match in_action {
            true => writeln!(out, "{}", Annotation::new(Level::Warning, message))?,
            false => writeln!(out, "warning: {}", commands::one_line(&message))?,
        }
    }
    if in_action {
        if let Some(log) = &r.log {
            print_group(out, &format!("build {}", r.service), log)?;
        }
    }
    writeln!(out, "{}", text::image_finished(r))
}

/// A dry run: what would be checked, built, pushed and (for `ship`) deployed, and nothing
/// done. With `--format json`, one document: the plan plus `dry_run`.
fn print_dry_run(
    ctx: &RunContext,
    plan: &Plan,
    jobs: &[ImageJob],
    target: &RegistryTarget,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let images: Vec<DryRunImage> = jobs
        .iter()
        .map(|job| dry_run_image(job, target, ctx.build.docker.legacy_builder))
        .collect();
    let deploys = match ctx.command {
        Command::Ship => super::targets::dry_run_deploys(&ctx.config, plan),
        _ => vec![],
    };
    let text = match ctx.format {
        Format::Json => {
            #[derive(Serialize)]
            struct DryRun<'a> {
                images: Vec<DryRunImage<'a>>,
                deploys: Vec<super::targets::DryRunDeploy>,
            }
            #[derive(Serialize)]
            struct Report<'a> {
                #[serde(flatten)]
                plan: &'a Plan,
                dry_run: DryRun<'a>,
            }
            let report = Report {
                plan,
                dry_run: DryRun { images, deploys },
            };
            serde_json::to_string_pretty(&report).expect("a dry run serializes") + "\n"
        }
        Format::Text => {
            let mut text = String::new();
            for image in &images {
                text.push_str(&format!("# {}\n", image.service));
                for command in &image.commands {
                    text.push_str(&format!("{command}\n"));
                }
            }
            for d in &deploys {
                text.push_str(&format!("deploy {}: {}\n", d.service, d.action));
            }
            text
        }
    };
    write!(out, "{text}").map_err(write_err("stdout"))
}

/// The commands a dry run shows for one image: the base image lookups, the registry check,
/// then the buildx command, or the Engine API calls (BuildKit unless `legacy`). Pure.
fn dry_run_image<'a>(job: &'a ImageJob, target: &RegistryTarget, legacy: bool) -> DryRunImage<'a> {
    let mut commands: Vec<String> = job
        .bases
        .pending
        .iter()
        .filter_map(|reference| {
            let r = ImageRef::parse(reference).ok()?;
            Some(format!(
                "registry: HEAD {}/v2/{}/manifests/{} (base image {}; its digest is the {} part of the content tag)",
                r.registry, r.repository, r.tag, commands::one_line(reference), content::BASES_NOT_LOOKED_UP
            ))
        })
        .collect();
    commands.push(format!(
        "registry: HEAD {}/v2/{}/manifests/{} (reuse when it exists)",
        target.host, job.repository, job.content_tag
    ));
    let builder = choose_builder(&job.build, !legacy);
    if builder == Builder::Buildx {
        commands.push(format!(
            "docker {}",
            DockerCli::describe_build(&job.build).join(" ")
        ));
    } else {
        let relative = |p: &std::path::Path| {
            p.strip_prefix(&job.build.root)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };
        let inputs: Vec<&InputFile> = job.build.inputs.iter().collect();
        let listing = crate::image::tarball::listing(
            &inputs,
            &relative(&job.build.context),
            &relative(&job.build.dockerfile),
            legacy,
        );
        let query = crate::image::build::engine_query(&job.build, &listing.dockerfile, !legacy);
        commands.push(format!(
            "engine: POST /build?{query} (a context of {} files)",
            listing.entries.len()
        ));
        for tag in job
            .commit_tags
            .iter()
            .chain(std::iter::once(&job.content_tag))
        {
            commands.push(format!("engine: POST /images/{}/push?tag={tag}", job.image));
        }
    }
    DryRunImage {
        service: &job.service,
        image: &job.image,
        commands,
    }
}

/// One image a dry run would build and push, and the commands for it.
#[derive(Serialize)]
struct DryRunImage<'a> {
    service: &'a str,
    image: &'a str,
    commands: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_request_adds_its_tag_after_the_commit() {
        assert_eq!(commit_tags("abc", None), ["abc"]);
        assert_eq!(commit_tags("abc", Some(12)), ["abc", "pr-12"]);
    }

    fn settings(target: &RegistryTarget) -> JobSettings<'_> {
        JobSettings {
            target,
            root: "/repo".into(),
            commit_tags: commit_tags("c0ffee", Some(3)),
            labels: BTreeMap::new(),
            metadata_dir: "/tmp/meta".into(),
            registry_cache: Some(false),
            rebuild: false,
            twin_target: None,
            builder: None,
        }
    }

    fn build(dockerfile: &str, context: &str) -> DockerBuild {
        DockerBuild {
            dockerfile: dockerfile.into(),
            context: context.into(),
            ignore_files: vec![],
            ignore: Default::default(),
            inputs: crate::plan::dockerfile::read_build_inputs("FROM scratch\n", &BTreeMap::new()),
        }
    }

    #[test]
    fn a_job_tags_its_content_first_then_its_commits() {
        let target = RegistryTarget::parse("localhost:5000/acme", None, None).unwrap();
        let service = ServiceConfig::default();
        let job = image_job(
            "Cart",
            &service,
            &build("svc/cart/Dockerfile", "svc/cart"),
            &[],
            &settings(&target),
            Bases::default(),
        )
        .unwrap();
        assert_eq!(
            job.repository, "acme/cart",
            "repository names are lowercased"
        );
        assert_eq!(job.image, "localhost:5000/acme/cart");
        assert!(job.content_tag.starts_with("src-"), "{}", job.content_tag);
        assert_eq!(
            job.build.tags,
            [
                format!("localhost:5000/acme/cart:{}", job.content_tag),
                "localhost:5000/acme/cart:c0ffee".into(),
                "localhost:5000/acme/cart:pr-3".into(),
            ]
        );
        assert_eq!(job.build.context, std::path::Path::new("/repo/svc/cart"));
        assert_eq!(
            job.build.cache.as_ref().map(|c| c.reference.as_str()),
            Some("localhost:5000/acme/cart:buildcache")
        );
        let root_context = image_job(
            "a",
            &service,
            &build("Dockerfile", ""),
            &[],
            &settings(&target),
            Bases::default(),
        )
        .unwrap();
        assert_eq!(root_context.build.context, std::path::Path::new("/repo"));
    }

    #[test]
    fn the_twin_of_a_job_is_its_image_on_the_other_side() {
        let target = RegistryTarget::parse("localhost:5000/acme", None, None).unwrap();
        let twin = RegistryTarget {
            prefix: target.path(PULL_REQUEST_PREFIX),
            ..target.clone()
        };
        let settings = JobSettings {
            twin_target: Some(&twin),
            ..settings(&target)
        };
        let job = image_job(
            "cart",
            &ServiceConfig::default(),
            &build("Dockerfile", ""),
            &[],
            &settings,
            Bases::default(),
        )
        .unwrap();
        assert_eq!(job.image, "localhost:5000/acme/cart");
        assert_eq!(
            job.twin_image.as_deref(),
            Some("localhost:5000/acme/pr/cart")
        );
    }

    #[test]
    fn a_repository_the_registry_refuses_is_an_error_naming_the_service() {
        let target = RegistryTarget::parse("localhost:5000", None, None).unwrap();
        let service = ServiceConfig {
            repository: Some("Bad Name".into()),
            ..Default::default()
        };
        let err = image_job(
            "cart",
            &service,
            &build("Dockerfile", ""),
            &[],
            &settings(&target),
            Bases::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("service `cart`"), "{err}");
    }

    #[test]
    fn a_service_in_another_s_pull_request_repository_is_refused() {
        let services = |pairs: &[(&str, Option<&str>)]| -> BTreeMap<String, ServiceConfig> {
            pairs
                .iter()
                .map(|(name, repository)| {
                    let service = ServiceConfig {
                        repository: repository.map(str::to_string),
                        ..Default::default()
                    };
                    (name.to_string(), service)
                })
                .collect()
        };
        let check = |registry: &str, pairs: &[(&str, Option<&str>)]| {
            let target = RegistryTarget::parse(registry, None, None).unwrap();
            let mut pull_requests = target.clone();
            pull_requests.prefix = target.path(PULL_REQUEST_PREFIX);
            check_pull_request_repositories(&services(pairs), &target, &pull_requests)
                .map_err(|e| e.to_string())
        };
        let err = check("ghcr.io/acme", &[("cart", None), ("x", Some("pr/cart"))]).unwrap_err();
        assert_eq!(err, "service `x` pushes to ghcr.io/acme/pr/cart, where pull-request runs push the images of service `cart`; give one of them another `repository:`, or set `registry.pull_request_prefix`");
        let err = check("docker.io/acme", &[("cart", None), ("pr-cart", None)]).unwrap_err();
        assert!(
            err.starts_with("service `pr-cart` pushes to docker.io/acme/pr-cart,"),
            "{err}"
        );
        assert!(check("docker.io/acme", &[("cart", None), ("pr", None)]).is_ok());
        assert!(check("ghcr.io/acme", &[("cart", None), ("pr-cart", None)]).is_ok());
        assert!(check("localhost:5000", &[("cart", None), ("email", None)]).is_ok());
    }
}
