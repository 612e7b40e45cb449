//! The build and push stages of a run: from a plan to images in the registry, and their report.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use super::{write_err, Error, PlanStage};
use crate::cli::{Format, Request};
use crate::config::Config;
use crate::deploy::{RolloutResult, RolloutStatus};
use crate::detect::git::Git;
use crate::image::build::{BuildJob, DockerCli};
use crate::image::content::{self, BuildSettings};
use crate::image::push::{self, ImageJob, ImageResult, ImageStatus};
use crate::image::registry::{OciRegistry, RegistryTarget};
use crate::plan::Plan;
use crate::report::commands;
use crate::report::log::print_group;
use crate::report::{annotations, outputs, summary, text};

/// Default number of images built at once.
pub const DEFAULT_MAX_PARALLEL: usize = 2;

/// Builds and pushes the images of the changed services that have a Dockerfile. `None` when
/// it was a dry run (the planned commands were printed on `stdout` instead). Progress, build
/// logs and masks go to `log` (stderr), so `--format json` keeps stdout to one document.
///
/// # Errors
/// Bad input (no registry, a bad registry address or repository): nothing is built then.
pub(crate) fn build_stage(
    req: &Request,
    config: &Config,
    plan: &Plan,
    stage: &PlanStage,
    git: &Git,
    stdout: &mut dyn Write,
    log: &mut dyn Write,
) -> Result<Option<Vec<ImageResult>>, Error> {
    let in_action = req.action.is_some();
    let pull_request = super::pull_request_number(req);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Write {
            path: "the async runtime".into(),
            source,
        })?;
    let ecr_config = config
        .registry
        .as_ref()
        .and_then(|r| r.ecr.clone())
        .filter(|_| req.registry.is_none());
    let mut ecr = None;
    let target = if let Some(ecr_config) = &ecr_config {
        if req.dry_run {
            let prefix = ecr_config
                .prefix
                .as_ref()
                .map(|p| format!("/{p}"))
                .unwrap_or_default();
            RegistryTarget::parse(
                &format!("account.dkr.ecr.region.amazonaws.com{prefix}"),
                None,
                None,
            )
            .map_err(|e| Error::Usage(e.to_string()))?
        } else {
            let (client, target) = runtime.block_on(ecr_login(ecr_config, in_action))?;
            ecr = Some(client);
            target
        }
    } else {
        let url = req
            .registry
            .clone()
            .or_else(|| config.registry.as_ref().and_then(|r| r.url.clone()))
            .ok_or_else(|| {
                Error::Usage("no registry to push to: set `registry.url` (or `registry.ecr`) in the config, or pass --registry (input `registry`)".into())
            })?;
        let username = req
            .registry_username
            .clone()
            .or_else(|| config.registry.as_ref().and_then(|r| r.username.clone()));
        RegistryTarget::parse(&url, username, req.registry_password.clone())
            .map_err(|e| Error::Usage(e.to_string()))?
    };
    if let (true, Some(password)) = (in_action, &target.password) {
        // Masked before anything could print it.
        writeln!(log, "{}", commands::add_mask(password.expose())).map_err(write_err("stderr"))?;
    }
    let username = target.username.clone();
    let files = content::work_tree_files(git.repo())?;
    let by_service = stage.matcher.docker_inputs(&files);
    let root = git.root().to_path_buf();
    let source = req.action.as_ref().and_then(|a| {
        a.repository
            .as_ref()
            .map(|r| format!("{}/{r}", a.server_url))
    });
    let created = git.repo().commit_time(&plan.head).ok().flatten();
    let metadata_dir = tempfile::Builder::new()
        .prefix("monoship-build-")
        .tempdir()
        .map_err(|source| Error::Write {
            path: "a temporary folder".into(),
            source,
        })?;
    let mut jobs = Vec::new();
    for name in &plan.changed {
        let (Some(build), Some(service)) = (stage.builds.get(name), config.services.get(name))
        else {
            continue;
        };
        let repository_name = service
            .repository
            .clone()
            .unwrap_or_else(|| name.to_ascii_lowercase());
        crate::image::registry::validate_repository(&target.path(&repository_name))
            .map_err(|e| Error::Usage(format!("service `{name}`: {e}")))?;
        let empty = Vec::new();
        let selected = by_service.get(name).unwrap_or(&empty);
        let content_tag = content::content_tag(
            selected,
            &BuildSettings {
                dockerfile: &build.dockerfile,
                context: &build.context,
                build_args: Some(&service.build_args),
                target: service.target.as_deref(),
                platforms: &service.platforms,
            },
        );
        let mut commit_tags = vec![plan.head.clone()];
        if let Some(n) = pull_request {
            commit_tags.push(format!("pr-{n}"));
        }
        let image = target.image(&repository_name);
        let mut tags: Vec<String> = commit_tags.iter().map(|t| format!("{image}:{t}")).collect();
        tags.insert(0, format!("{image}:{content_tag}"));
        let dockerfile_text =
            std::fs::read_to_string(root.join(&build.dockerfile)).unwrap_or_default();
        jobs.push(ImageJob {
            service: name.clone(),
            repository: target.path(&repository_name),
            image: image.clone(),
            content_tag,
            commit_tags,
            build: BuildJob {
                service: name.clone(),
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
                labels: push::labels(source.as_deref(), &plan.head, created.as_deref()),
                metadata_file: Some(push::metadata_path(metadata_dir.path(), name)),
                cache: config
                    .build
                    .registry_cache
                    .then(|| crate::image::build::RegistryCache {
                        reference: format!("{image}:buildcache"),
                        ecr: ecr_config.is_some(),
                    }),
            },
            dockerfile: build.dockerfile.clone(),
            instruction_lines: crate::plan::dockerfile::instruction_lines(&dockerfile_text),
            rebuild: req.rebuild,
        });
    }
    if req.dry_run {
        print_dry_run(req, config, plan, &jobs, &target, stdout)?;
        return Ok(None);
    }
    if jobs.is_empty() {
        return Ok(Some(vec![]));
    }
    if let Some(ecr) = &ecr {
        for job in &jobs {
            runtime
                .block_on(ecr.ensure_repository(&job.repository))
                .map_err(|e| {
                    Error::Usage(format!(
                        "service `{}`: {}",
                        job.service,
                        crate::error::render_chain(&e)
                    ))
                })?;
        }
    }
    let max_parallel = req
        .max_parallel
        .or(config.build.max_parallel)
        .unwrap_or(DEFAULT_MAX_PARALLEL);
    let results = runtime.block_on(async {
        let registry = Arc::new(OciRegistry::new(target.clone()).map_err(|e| Error::Usage(e.to_string()))?);
        // The daemon is needed only for images that must be built; its absence fails those.
        let docker = match DockerCli::connect(&req.docker).await {
            Ok(d) => {
                if let (Some(user), Some(password)) = (&username, &target.password) {
                    d.login(&target.host, user, password).await.map_err(|e| Error::Usage(e.to_string()))?;
                }
                Some(Arc::new(d))
            }
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        };
        let docker_missing = docker.is_none();
        // push_images starts jobs in order, `max_parallel` at a time, and the next one as
        // soon as one finishes: the progress lines follow that order.
        let names: Vec<String> = jobs.iter().map(|j| j.service.clone()).collect();
        let mut next = max_parallel.max(1).min(names.len());
        for (i, name) in names.iter().enumerate().take(next) {
            let _ = writeln!(log, "{}", text::image_started(name, i + 1, names.len()));
        }
        let mut results = push::push_images(jobs, docker, registry, max_parallel, |r| {
            let _ = print_progress(r, in_action, log);
            if let Some(name) = names.get(next) {
                next += 1;
                let _ = writeln!(log, "{}", text::image_started(name, next, names.len()));
            }
        })
        .await;
        if docker_missing {
            for r in results.iter_mut().filter(|r| r.status == ImageStatus::Failed) {
                r.error = Some(
                    "the image must be built, but the Docker daemon cannot be reached; in a workflow the runner mounts /var/run/docker.sock into Docker container actions, elsewhere start Docker or set DOCKER_HOST"
                        .into(),
                );
            }
        }
        Ok::<_, Error>(results)
    })?;
    Ok(Some(results))
}

/// Logs in to ECR: AWS credentials (default chain or GitHub OIDC), then the registry token.
/// Every credential is masked (in Actions) before it is used.
async fn ecr_login(
    ecr_config: &crate::config::EcrConfig,
    in_action: bool,
) -> Result<(crate::image::ecr::Ecr, RegistryTarget), Error> {
    let settings = crate::aws::AwsSettings {
        region: ecr_config.region.clone(),
        role_to_assume: ecr_config.role_to_assume.clone(),
        ..Default::default()
    };
    let env = |k: &str| std::env::var(k).ok();
    let mask = move |secret: &str| {
        if in_action {
            eprintln!("{}", commands::add_mask(secret));
        }
    };
    let sdk = crate::aws::load(&settings, &env, mask)
        .await
        .map_err(|e| Error::Usage(crate::error::render_chain(&e)))?;
    let client = crate::image::ecr::Ecr::new(
        &sdk,
        crate::image::ecr::EcrSettings {
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
        .map_err(|e| Error::Usage(crate::error::render_chain(&e)))?;
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
    )
    .map_err(|e| Error::Usage(e.to_string()))?;
    Ok((client, target))
}

fn print_progress(r: &ImageResult, in_action: bool, out: &mut dyn Write) -> std::io::Result<()> {
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
    req: &Request,
    config: &Config,
    plan: &Plan,
    jobs: &[ImageJob],
    target: &RegistryTarget,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let images: Vec<DryRunImage> = jobs
        .iter()
        .map(|job| {
            let mut commands = vec![
                format!(
                    "registry: HEAD {}/v2/{}/manifests/{} (reuse when it exists)",
                    target.host, job.repository, job.content_tag
                ),
                format!("docker {}", DockerCli::describe_build(&job.build).join(" ")),
            ];
            for tag in job
                .commit_tags
                .iter()
                .chain(std::iter::once(&job.content_tag))
            {
                commands.push(format!("docker push {}:{tag}", job.image));
            }
            DryRunImage {
                service: &job.service,
                image: &job.image,
                commands,
            }
        })
        .collect();
    let deploys = match req.command {
        crate::cli::Command::Ship => super::rollouts::dry_run_deploys(config, plan),
        _ => vec![],
    };
    let w = write_err("stdout");
    match req.format {
        Format::Json => {
            #[derive(Serialize)]
            struct DryRun<'a> {
                images: Vec<DryRunImage<'a>>,
                deploys: Vec<super::rollouts::DryRunDeploy>,
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
            let json = serde_json::to_string_pretty(&report).expect("a dry run serializes");
            writeln!(out, "{json}").map_err(&w)?;
        }
        Format::Text => {
            for image in &images {
                writeln!(out, "# {}", image.service).map_err(&w)?;
                for command in &image.commands {
                    writeln!(out, "{command}").map_err(&w)?;
                }
            }
            for d in &deploys {
                writeln!(out, "deploy {}: {}", d.service, d.action).map_err(&w)?;
            }
        }
    }
    Ok(())
}

/// One image a dry run would build and push, and the commands for it.
#[derive(Serialize)]
struct DryRunImage<'a> {
    service: &'a str,
    image: &'a str,
    commands: Vec<String>,
}

/// `build --format json`: the plan plus `images`; `ship` adds `rollouts`.
#[derive(Serialize)]
struct BuildReport<'a> {
    #[serde(flatten)]
    plan: &'a Plan,
    images: &'a [ImageResult],
    #[serde(skip_serializing_if = "Option::is_none")]
    rollouts: Option<&'a [RolloutResult]>,
}

/// Reports a build: stdout, and in action mode outputs, summary and annotations.
pub(crate) fn report_build(
    req: &Request,
    config: &Config,
    plan: &Plan,
    images: &Option<Vec<ImageResult>>,
    rollouts: Option<&[RolloutResult]>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), Error> {
    let Some(images) = images else { return Ok(()) };
    match req.format {
        Format::Json => {
            let json = serde_json::to_string_pretty(&BuildReport {
                plan,
                images,
                rollouts,
            })
            .expect("a report serializes");
            writeln!(stdout, "{json}").map_err(write_err("stdout"))?;
        }
        Format::Text => {
            let style = text::Style::new(req.color);
            write!(stdout, "{}", text::render_plan(plan, style)).map_err(write_err("stdout"))?;
            write!(stdout, "{}", text::render_images(images, style))
                .map_err(write_err("stdout"))?;
            if let Some(r) = rollouts {
                write!(stdout, "{}", text::render_rollouts(r, style))
                    .map_err(write_err("stdout"))?;
            }
        }
    }
    if req.action.is_some() {
        // Every annotation of the run at once, so GitHub's 10 per level hold for all of them.
        let config_path = req.workdir.join(&req.config);
        let config_text = std::fs::read_to_string(&config_path).unwrap_or_default();
        let config_path = config_path.display().to_string();
        let found = annotations::run_findings(
            plan,
            images,
            rollouts,
            annotations::ConfigFile {
                path: &config_path,
                text: &config_text,
            },
        );
        for a in annotations::within_limits(found, Some("see the job summary")) {
            writeln!(stderr, "{a}").map_err(write_err("stderr"))?;
        }
    } else {
        let failed_rollouts = rollouts
            .unwrap_or_default()
            .iter()
            .filter(|r| matches!(r.status, RolloutStatus::Failed | RolloutStatus::RolledBack))
            .map(|r| {
                format!(
                    "{} ({}): {}",
                    r.service,
                    r.workload,
                    r.reason.clone().unwrap_or_default()
                )
            });
        let failed_images = images
            .iter()
            .filter(|r| r.status == ImageStatus::Failed)
            .map(|r| format!("{}: {}", r.service, r.error.clone().unwrap_or_default()));
        for message in failed_rollouts.chain(failed_images) {
            writeln!(stderr, "error: {}", commands::one_line(&message))
                .map_err(write_err("stderr"))?;
        }
    }
    if let Some(a) = &req.action {
        if let Some(path) = &a.output {
            let mut out = outputs::plan_outputs(plan, config);
            let map: BTreeMap<&str, &str> = images
                .iter()
                .filter_map(|r| r.image.as_deref().map(|i| (r.service.as_str(), i)))
                .collect();
            out.push((
                "images".into(),
                serde_json::to_string(&map).expect("strings serialize"),
            ));
            if let Some(r) = rollouts {
                let names = |pred: fn(&RolloutStatus) -> bool| {
                    let mut v: Vec<&str> = r
                        .iter()
                        .filter(|x| pred(&x.status))
                        .map(|x| x.service.as_str())
                        .collect();
                    v.dedup();
                    serde_json::to_string(&v).expect("strings serialize")
                };
                out.push(("deployed".into(), names(|s| *s == RolloutStatus::Succeeded)));
                out.push((
                    "failed".into(),
                    names(|s| matches!(s, RolloutStatus::Failed | RolloutStatus::RolledBack)),
                ));
            }
            outputs::append(path, &out).map_err(write_err(&path.display().to_string()))?;
        }
        if let Some(path) = &a.summary {
            summary::append(path, &summary::render(plan, config, Some(images), rollouts))
                .map_err(write_err(&path.display().to_string()))?;
        }
    }
    Ok(())
}
