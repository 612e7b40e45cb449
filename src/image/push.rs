//! Push: get each changed service's image into the registry, by the cheapest honest route.
//!
//! 1. Its content tag (`src-<inputs>-<bases>`, see [`crate::image::content`]) already exists
//!    and the image's revision label names a commit the run trusts (one in the history of
//!    its head): nothing is built; the stored manifest is copied to the commit tags
//!    (`reused`). Anything else under the tag (no label, a commit that never merged) is
//!    rebuilt and pushed over, with a warning: a tag's content is never taken on trust.
//!    A base image that cannot be resolved to a digest skips this step, with a warning.
//! 2. Otherwise it is built and pushed (`built`); when an image of the same files was built
//!    on other base digests, the result names the bases that moved. The content tag is pushed last, so it only
//!    exists once the image is complete, and the digest reported is the registry's own
//!    `Docker-Content-Digest` for it, never a guess.
//!
//! Services run in parallel up to a limit; one failure does not stop the others.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::image::base::{self, Bases, MovedBase};
use crate::image::build::{failed_line, last_lines, BuildJob, Builder, Builders};
use crate::image::registry::{OciRegistry, REVISION_LABEL};
use crate::interrupt::{Interrupt, Signal};

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
    /// First line and text of each Dockerfile instruction, in order (maps a failed build
    /// step to its line).
    pub instructions: Vec<(usize, String)>,
    /// Build even when the registry has the content tag (it is then pushed again).
    pub rebuild: bool,
    /// The same service's image name on the other side (branch runs for a pull request, the
    /// pull-request prefix for a branch run), whose containers a deploy updates too.
    pub twin_image: Option<String>,
    /// The digests of its base images, as its content tag covers them.
    pub bases: Bases,
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
    /// Something the user should know, such as an existing image that was not trusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The base images that moved since an image of the same files was built (why it was
    /// built again).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bases_moved: Vec<MovedBase>,
    pub seconds: f64,
    /// Dockerfile and line of a failed build step.
    #[serde(skip)]
    pub failed_at: Option<(String, usize)>,
    /// The build's log, printed in a group.
    #[serde(skip)]
    pub log: Option<String>,
    /// See [`ImageJob::twin_image`].
    #[serde(skip)]
    pub twin_image: Option<String>,
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
            warning: None,
            bases_moved: vec![],
            seconds: started.elapsed().as_secs_f64(),
            failed_at: None,
            log: None,
            twin_image: job.twin_image.clone(),
        }
    }

    /// The image is in the registry as `digest`, under every tag of `job`.
    fn stored(job: &ImageJob, digest: String, status: ImageStatus, started: Instant) -> Self {
        ImageResult {
            service: job.service.clone(),
            image: Some(format!("{}@{digest}", job.image)),
            digest: Some(digest),
            tags: all_tags(job),
            status,
            error: None,
            warning: None,
            bases_moved: vec![],
            seconds: started.elapsed().as_secs_f64(),
            failed_at: None,
            log: None,
            twin_image: job.twin_image.clone(),
        }
    }

    fn with_log(mut self, log: String) -> Self {
        self.log = Some(log);
        self
    }
}

/// Whether an image built from the commit its revision label names may be reused: `true`
/// when that commit is in the history of the run's head.
pub type TrustedRevision = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Gets every job's image into the registry, at most `max_parallel` at once, calling `done`
/// as each finishes. `builders` are needed only for images that must be built; `trusted`
/// decides which existing images may be reused.
pub async fn push_images(
    jobs: Vec<ImageJob>,
    builders: Option<Arc<Builders>>,
    registry: Arc<OciRegistry>,
    trusted: TrustedRevision,
    max_parallel: usize,
    interrupt: &Interrupt,
    mut done: impl FnMut(&ImageResult),
) -> Vec<ImageResult> {
    let limit = Arc::new(tokio::sync::Semaphore::new(max_parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for job in jobs {
        let (limit, builders, registry) = (limit.clone(), builders.clone(), registry.clone());
        let (trusted, interrupt) = (trusted.clone(), interrupt.clone());
        set.spawn(async move {
            let started = Instant::now();
            let interrupted = |when: &str, signal: Signal| {
                let why = format!("interrupted by {}{when}", signal.name());
                ImageResult::failed(&job, started, why)
            };
            // After a signal no job starts, and one under way is dropped, which closes its
            // connection to the daemon (or kills its `docker` child) and so cancels the build
            // or push.
            let _permit = tokio::select! {
                biased;
                signal = interrupt.received() => return interrupted(" before it started", signal),
                permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            tokio::select! {
                biased;
                signal = interrupt.received() => interrupted("", signal),
                result = one_image(&job, builders.as_deref(), &registry, &*trusted) => result,
            }
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
    job: &ImageJob,
    builders: Option<&Builders>,
    registry: &OciRegistry,
    trusted: &(dyn Fn(&str) -> bool + Send + Sync),
) -> ImageResult {
    let started = Instant::now();
    // A base without a digest leaves the content tag without meaning: always build.
    let unresolved = job.bases.unresolved_warning();
    let stored = match job.rebuild || unresolved.is_some() {
        true => Ok(None),
        false => registry.tag_digest(&job.repository, &job.content_tag).await,
    };
    let mut bases_moved = vec![];
    let (stored, warning) = match stored {
        Ok(Some(digest)) => match distrust(job, registry, &digest, trusted).await {
            None => (Ok(Some(digest)), None),
            Some(why) => (Ok(None), Some(why)),
        },
        Ok(None) if !job.rebuild && unresolved.is_none() && !job.bases.digests.is_empty() => {
            bases_moved = base::moved_since_last_build(
                registry,
                &job.repository,
                &job.content_tag,
                &job.bases.digests,
            )
            .await;
            (Ok(None), None)
        }
        other => (other, unresolved),
    };
    let result = match stored {
        Ok(Some(digest)) => reuse(job, registry, digest, started).await,
        Ok(None) => match builders {
            Some(builders) => build_and_push(job, builders, registry, started).await,
            None => ImageResult::failed(job, started, "no Docker daemon to build with".into()),
        },
        Err(e) => ImageResult::failed(
            job,
            started,
            format!(
                "cannot ask the registry whether {}:{} exists: {}",
                job.image,
                job.content_tag,
                crate::error::render_chain(&e)
            ),
        ),
    };
    ImageResult {
        warning,
        bases_moved,
        ..result
    }
}

/// Why the image stored as `digest` under the content tag must not be reused, or `None`
/// when its revision label names a trusted commit.
async fn distrust(
    job: &ImageJob,
    registry: &OciRegistry,
    digest: &str,
    trusted: &(dyn Fn(&str) -> bool + Send + Sync),
) -> Option<String> {
    let tag = format!("{}:{}", job.image, job.content_tag);
    let why = match registry.revision_label(&job.repository, digest).await {
        Ok(Some(revision)) if trusted(&revision) => return None,
        Ok(Some(revision)) => format!(
            "its {REVISION_LABEL} label names {revision}, which is not in the history of this commit"
        ),
        Ok(None) => format!("it has no {REVISION_LABEL} label"),
        Err(e) => format!(
            "its labels cannot be read: {}",
            crate::error::render_chain(&e)
        ),
    };
    Some(format!(
        "{tag} ({digest}) was not reused because {why}; it was rebuilt and pushed over"
    ))
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
    ImageResult::stored(job, digest, ImageStatus::Reused, started)
}

fn all_tags(job: &ImageJob) -> Vec<String> {
    job.commit_tags
        .iter()
        .chain(std::iter::once(&job.content_tag))
        .cloned()
        .collect()
}

/// Builds the image, pushes it unless buildx already did, and reads back the digest the
/// registry stores under the content tag.
async fn build_and_push(
    job: &ImageJob,
    builders: &Builders,
    registry: &OciRegistry,
    started: Instant,
) -> ImageResult {
    let (builder, log) = match build(job, builders, started).await {
        Ok(built) => built,
        Err(failed) => return failed,
    };
    let log = match push_tags(job, builders, builder, started, log).await {
        Ok(log) => log,
        Err(failed) => return failed,
    };
    match registry.tag_digest(&job.repository, &job.content_tag).await {
        Ok(Some(digest)) => ImageResult {
            log: Some(log),
            ..ImageResult::stored(job, digest, ImageStatus::Built, started)
        },
        Ok(None) => ImageResult::failed(
            job,
            started,
            format!(
                "the push reported success but the registry has no {}:{}",
                job.image, job.content_tag
            ),
        )
        .with_log(log),
        Err(e) => ImageResult::failed(
            job,
            started,
            format!(
                "cannot read the pushed digest: {}",
                crate::error::render_chain(&e)
            ),
        )
        .with_log(log),
    }
}

/// Runs the build; its output is the start of the image's log.
async fn build(
    job: &ImageJob,
    builders: &Builders,
    started: Instant,
) -> Result<(Builder, String), ImageResult> {
    let (builder, built) = builders
        .build(&job.build, BUILD_LIMIT)
        .await
        .map_err(|e| ImageResult::failed(job, started, crate::error::render_chain(&e)))?;
    if built.success {
        Ok((builder, built.output))
    } else {
        Err(build_failure(job, started, built.output))
    }
}

/// A failed build, pointing at the Dockerfile line of the step that failed when the log
/// names it.
fn build_failure(job: &ImageJob, started: Instant, output: String) -> ImageResult {
    let line = failed_line(&output, &job.instructions);
    let mut failed = ImageResult::failed(
        job,
        started,
        with_rate_limit_hint(
            format!("the build failed:\n{}", last_lines(&output, 8)),
            &output,
        ),
    );
    failed.failed_at = line.map(|l| (job.dockerfile.clone(), l));
    failed.with_log(output)
}

/// Pushes every tag through the daemon (buildx pushes as it builds), adding the output to
/// `log`: commit tags first, the content tag last, as it marks a complete image.
async fn push_tags(
    job: &ImageJob,
    builders: &Builders,
    builder: Builder,
    started: Instant,
    mut log: String,
) -> Result<String, ImageResult> {
    if builder == Builder::Buildx {
        return Ok(log);
    }
    for tag in all_tags(job) {
        let reference = format!("{}:{tag}", job.image);
        let pushed = builders
            .push(&job.image, &tag, PUSH_LIMIT)
            .await
            .map_err(|e| ImageResult::failed(job, started, crate::error::render_chain(&e)))?;
        log.push_str(&pushed.output);
        if !pushed.success {
            let error = with_rate_limit_hint(
                format!(
                    "the push of {reference} failed: {}",
                    last_lines(&pushed.output, 3)
                ),
                &pushed.output,
            );
            return Err(ImageResult::failed(job, started, error).with_log(log));
        }
    }
    Ok(log)
}

/// `error`, and what to do when `log` shows a registry's rate limit. Pure.
fn with_rate_limit_hint(error: String, log: &str) -> String {
    match crate::image::hub::rate_limit_hint(log) {
        Some(hint) => format!("{error}\n{hint}"),
        None => error,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::build::BuildJob;

    fn job() -> ImageJob {
        ImageJob {
            service: "cart".into(),
            repository: "shop/cart".into(),
            image: "127.0.0.1:5000/shop/cart".into(),
            content_tag: "src-abc".into(),
            commit_tags: vec!["c0ffee".into(), "pr-7".into()],
            build: BuildJob {
                service: "cart".into(),
                dockerfile: "/repo/cart/Dockerfile".into(),
                context: "/repo/cart".into(),
                tags: vec![],
                build_args: BTreeMap::new(),
                target: None,
                platforms: vec![],
                labels: BTreeMap::new(),
                pull: false,
                metadata_file: None,
                cache: None,
                root: "/repo".into(),
                inputs: vec![],
                bases: vec![],
                builder: None,
            },
            dockerfile: "cart/Dockerfile".into(),
            instructions: crate::plan::dockerfile::instructions("FROM a\n\nRUN make\n\nCOPY x y\n"),
            rebuild: false,
            twin_image: None,
            bases: Bases::default(),
        }
    }

    #[test]
    fn the_content_tag_comes_last_as_it_marks_a_complete_image() {
        assert_eq!(all_tags(&job()), ["c0ffee", "pr-7", "src-abc"]);
    }

    #[test]
    fn a_stored_image_is_named_by_digest_with_every_tag() {
        let r = ImageResult::stored(
            &job(),
            "sha256:ab".into(),
            ImageStatus::Built,
            Instant::now(),
        );
        assert_eq!(
            r.image.as_deref(),
            Some("127.0.0.1:5000/shop/cart@sha256:ab")
        );
        assert_eq!(
            (r.digest.as_deref(), r.status),
            (Some("sha256:ab"), ImageStatus::Built)
        );
        assert_eq!(r.tags, ["c0ffee", "pr-7", "src-abc"]);
        assert!(r.error.is_none() && r.log.is_none());
    }

    #[test]
    fn a_failed_build_points_at_its_dockerfile_line_and_keeps_the_log() {
        let output =
            "#6 [2/3] RUN make\n#6 ERROR: process \"/bin/sh -c make\" did not complete successfully: exit code: 2\nERROR: exit code: 2\n"
                .to_string();
        let r = build_failure(&job(), Instant::now(), output.clone());
        assert_eq!(r.status, ImageStatus::Failed);
        assert_eq!(r.failed_at, Some(("cart/Dockerfile".into(), 3)));
        assert!(r
            .error
            .as_deref()
            .unwrap()
            .starts_with("the build failed:\n#6 [2/3] RUN make"));
        assert_eq!(r.log, Some(output));
        let silent = build_failure(&job(), Instant::now(), "no step named".into());
        assert_eq!(silent.failed_at, None);
    }
}
