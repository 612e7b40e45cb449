//! Push: get each changed service's image into the registry, by the cheapest honest route.
//!
//! 1. Its content tag (`src-<digest of its inputs>`, see [`crate::image::content`]) already exists:
//!    nothing is built; the stored manifest is copied to the commit tags (`reused`).
//! 2. Otherwise it is built and pushed (`built`). The content tag is pushed last, so it only
//!    exists once the image is complete, and the digest reported is the registry's own
//!    `Docker-Content-Digest` for it, never a guess.
//!
//! Services run in parallel up to a limit; one failure does not stop the others.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::image::build::{failed_line, last_lines, BuildJob, DockerCli};
use crate::image::registry::OciRegistry;

/// How long one build may take.
pub const BUILD_LIMIT: Duration = Duration::from_secs(60 * 60);
/// How long one push may take.
pub const PUSH_LIMIT: Duration = Duration::from_secs(30 * 60);

/// One service's image to get into the registry.
#[derive(Debug, Clone)]
pub struct ImageJob {
    pub service: String,
    /// Repository path inside the registry (with the registry's prefix).
    pub repository: String,
    /// `host/prefix/repository`.
    pub image: String,
    pub content_tag: String,
    /// Tags besides the content tag: the commit id, `pr-<n>`.
    pub commit_tags: Vec<String>,
    pub build: BuildJob,
    /// Repository path of the Dockerfile, for annotations.
    pub dockerfile: String,
    /// Line of each Dockerfile instruction, in order (maps legacy build steps to lines).
    pub instruction_lines: Vec<usize>,
    /// Build even when the registry has the content tag (it is then pushed again).
    pub rebuild: bool,
}

/// What happened to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageStatus {
    Built,
    Reused,
    Failed,
}

/// The result for one service, as `build --format json` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    pub service: String,
    /// `repo@sha256:...` once the image is in the registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub tags: Vec<String>,
    pub status: ImageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub seconds: f64,
    /// Dockerfile and line of a failed build step.
    #[serde(skip)]
    pub failed_at: Option<(String, usize)>,
    /// The build's log, printed in a group.
    #[serde(skip)]
    pub log: Option<String>,
}

impl ImageResult {
    fn failed(job: &ImageJob, started: Instant, error: String) -> ImageResult {
        ImageResult {
            service: job.service.clone(),
            image: None,
            digest: None,
            tags: vec![],
            status: ImageStatus::Failed,
            error: Some(error),
            seconds: started.elapsed().as_secs_f64(),
            failed_at: None,
            log: None,
        }
    }
}

/// Gets every job's image into the registry, at most `max_parallel` at once, calling `done`
/// as each finishes. `docker` is needed only for images that must be built.
pub async fn push_images(
    jobs: Vec<ImageJob>,
    docker: Option<Arc<DockerCli>>,
    registry: Arc<OciRegistry>,
    max_parallel: usize,
    mut done: impl FnMut(&ImageResult),
) -> Vec<ImageResult> {
    let limit = Arc::new(tokio::sync::Semaphore::new(max_parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for job in jobs {
        let (limit, docker, registry) = (limit.clone(), docker.clone(), registry.clone());
        set.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            one_image(job, docker.as_deref(), &registry).await
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = set.join_next().await {
        let result = joined.expect("an image task does not panic");
        done(&result);
        results.push(result);
    }
    results.sort_by(|a, b| a.service.cmp(&b.service));
    results
}

async fn one_image(
    job: ImageJob,
    docker: Option<&DockerCli>,
    registry: &OciRegistry,
) -> ImageResult {
    let started = Instant::now();
    let stored = match job.rebuild {
        true => Ok(None),
        false => registry.tag_digest(&job.repository, &job.content_tag).await,
    };
    match stored {
        Ok(Some(digest)) => reuse(&job, registry, digest, started).await,
        Ok(None) => match docker {
            Some(docker) => build_and_push(&job, docker, registry, started).await,
            None => ImageResult::failed(&job, started, "no Docker daemon to build with".into()),
        },
        Err(e) => ImageResult::failed(
            &job,
            started,
            format!(
                "cannot ask the registry whether {}:{} exists: {}",
                job.image,
                job.content_tag,
                crate::error::render_chain(&e)
            ),
        ),
    }
}

/// The content tag exists: give the same manifest the commit tags.
async fn reuse(
    job: &ImageJob,
    registry: &OciRegistry,
    digest: String,
    started: Instant,
) -> ImageResult {
    let mut manifest = None;
    for tag in &job.commit_tags {
        match registry.tag_digest(&job.repository, tag).await {
            Ok(Some(existing)) if existing == digest => continue, // re-run: already tagged
            Ok(_) => {}
            Err(e) => return ImageResult::failed(job, started, crate::error::render_chain(&e)),
        }
        if manifest.is_none() {
            match registry.manifest(&job.repository, &digest).await {
                Ok(m) => manifest = Some(m),
                Err(e) => return ImageResult::failed(job, started, crate::error::render_chain(&e)),
            }
        }
        if let Err(e) = registry
            .put_manifest(&job.repository, tag, manifest.as_ref().expect("just read"))
            .await
        {
            return ImageResult::failed(
                job,
                started,
                format!("cannot add tag {tag}: {}", crate::error::render_chain(&e)),
            );
        }
    }
    ImageResult {
        service: job.service.clone(),
        image: Some(format!("{}@{digest}", job.image)),
        digest: Some(digest),
        tags: all_tags(job),
        status: ImageStatus::Reused,
        error: None,
        seconds: started.elapsed().as_secs_f64(),
        failed_at: None,
        log: None,
    }
}

fn all_tags(job: &ImageJob) -> Vec<String> {
    job.commit_tags
        .iter()
        .chain(std::iter::once(&job.content_tag))
        .cloned()
        .collect()
}

async fn build_and_push(
    job: &ImageJob,
    docker: &DockerCli,
    registry: &OciRegistry,
    started: Instant,
) -> ImageResult {
    let mut log = String::new();
    let built = docker.build(&job.build, BUILD_LIMIT).await;
    let built = match built {
        Ok(b) => b,
        Err(e) => return ImageResult::failed(job, started, crate::error::render_chain(&e)),
    };
    log.push_str(&built.output);
    if !built.success {
        let line = failed_line(&built.output, &job.instruction_lines);
        let mut r = ImageResult::failed(
            job,
            started,
            format!("the build failed:\n{}", last_lines(&built.output, 8)),
        );
        r.failed_at = line.map(|l| (job.dockerfile.clone(), l));
        r.log = Some(log);
        return r;
    }
    if !docker.has_buildx() {
        // Commit tags first, the content tag last: it marks a complete image.
        for tag in all_tags(job) {
            let reference = format!("{}:{tag}", job.image);
            match docker.push(&reference, PUSH_LIMIT).await {
                Ok(p) => {
                    log.push_str(&p.output);
                    if !p.success {
                        let mut r = ImageResult::failed(
                            job,
                            started,
                            format!(
                                "docker push {reference} failed: {}",
                                last_lines(&p.output, 3)
                            ),
                        );
                        r.log = Some(log);
                        return r;
                    }
                }
                Err(e) => return ImageResult::failed(job, started, crate::error::render_chain(&e)),
            }
        }
    }
    match registry.tag_digest(&job.repository, &job.content_tag).await {
        Ok(Some(digest)) => ImageResult {
            service: job.service.clone(),
            image: Some(format!("{}@{digest}", job.image)),
            digest: Some(digest),
            tags: all_tags(job),
            status: ImageStatus::Built,
            error: None,
            seconds: started.elapsed().as_secs_f64(),
            failed_at: None,
            log: Some(log),
        },
        Ok(None) => {
            let mut r = ImageResult::failed(
                job,
                started,
                format!(
                    "the push reported success but the registry has no {}:{}",
                    job.image, job.content_tag
                ),
            );
            r.log = Some(log);
            r
        }
        Err(e) => {
            let mut r = ImageResult::failed(
                job,
                started,
                format!(
                    "cannot read the pushed digest: {}",
                    crate::error::render_chain(&e)
                ),
            );
            r.log = Some(log);
            r
        }
    }
}

/// OCI labels of an image.
pub fn labels(
    source: Option<&str>,
    revision: &str,
    created: Option<&str>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Some(s) = source {
        labels.insert("org.opencontainers.image.source".into(), s.to_string());
    }
    labels.insert(
        "org.opencontainers.image.revision".into(),
        revision.to_string(),
    );
    if let Some(c) = created {
        labels.insert("org.opencontainers.image.created".into(), c.to_string());
    }
    labels
}

/// Where buildx writes a job's metadata file.
pub fn metadata_path(dir: &std::path::Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.metadata.json"))
}
