//! Build: which builder makes each image, and the one that needs the docker CLI.
//!
//! Most images are built by the daemon's BuildKit through the Engine API
//! ([`crate::image::engine`]) from a tar of exactly the files the content tag covers
//! ([`crate::image::tarball`]); the legacy builder only where the daemon has no BuildKit.
//! Multi-platform builds and the registry cache need `docker buildx build --push`
//! ([`DockerCli`]); see [`choose_builder`].
//!
//! The CLI logs in to a private `DOCKER_CONFIG` that lives as long as [`DockerCli`], the
//! password through stdin; nothing here ever puts a secret on a command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::image::content::InputFile;
use crate::image::docker_config::{self, RunnerConfig};
pub use crate::image::engine::CommandLog;
use crate::image::engine::{
    body_dropped, build_query, streamed_body, BuildQuery, Engine, EngineError,
};
use crate::image::tarball;
use crate::secret::Secret;

/// The Docker daemon or CLI could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot run `{program}`; the action image ships the Docker CLI, locally install Docker"
    )]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the Docker daemon: {message}. In a workflow, a Docker container action gets the runner's /var/run/docker.sock mounted; elsewhere start Docker or set DOCKER_HOST, and check that this user may use the socket")]
    Daemon { message: String },
    #[error("`docker login` to {host} failed: {message}")]
    Login { host: String, message: String },
    #[error("cannot create a private DOCKER_CONFIG folder")]
    ConfigDir(#[source] std::io::Error),
    #[error("{what} did not finish within {limit:?}")]
    Timeout { what: String, limit: Duration },
    #[error("multi-platform builds and the registry cache need the buildx plugin ({why}), and `{program} buildx` is not installed; the action image ships it, locally install docker-buildx (or drop `platforms` to one platform and `build.registry_cache`)")]
    NoBuildx { program: String, why: String },
    #[error("the builder `{name}` is named (input `builder`, `build.builder`, BUILDX_BUILDER or buildx's current builder in the runner's Docker config), and `{program} buildx` is not installed; the action image ships it, locally install docker-buildx or name no builder")]
    NoBuildxForBuilder { program: String, name: String },
    #[error("the buildx builder `{name}` cannot be found: the runner's Docker config ({config}) does not define it, and no container `buildx_buildkit_{name}0` of a docker-container builder is on the daemon. A container action sees only the runner's temp folder: set `DOCKER_CONFIG: ${{{{ runner.temp }}}}/docker` in the job's env so docker/setup-buildx-action, docker/login-action and monoship share one config, and pass the setup-buildx step's `name` output as input `builder`")]
    NoBuilder { name: String, config: String },
    #[error("cannot re-create the record of the buildx builder `{name}` for its container `buildx_buildkit_{name}0`: {message}")]
    Recreate { name: String, message: String },
    #[error("cannot copy the runner's buildx builders from {path} into monoship's private Docker config")]
    CopyBuilders {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The Docker CLI with a private config folder: the runner's logins merged into its
/// `config.json` and the runner's buildx builders copied in (never linked: buildx writes below
/// `buildx/`, and the runner's folder is never written).
pub struct DockerCli {
    program: PathBuf,
    config: tempfile::TempDir,
    buildx: bool,
}

/// One image to build.
#[derive(Debug, Clone)]
pub struct BuildJob {
    pub service: String,
    /// Absolute paths.
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    /// Full references (`host/repo:tag`), the content tag first.
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub platforms: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Pull the base images (`--pull`): they were looked up by tag for the content tag, so a
    /// copy the daemon holds from before must not stand in for them.
    pub pull: bool,
    /// buildx only: where to write the metadata file with the pushed digest.
    pub metadata_file: Option<PathBuf>,
    /// buildx only: the registry reference of the layer cache (read and written).
    pub cache: Option<RegistryCache>,
    /// The repository's root, which `dockerfile` and `context` are below.
    pub root: PathBuf,
    /// The files the content tag covers: the context sent to the Engine API (repository paths).
    pub inputs: Vec<InputFile>,
    /// The base images to put on the daemon at their digests before an Engine API build.
    pub bases: Vec<BasePull>,
    /// The named buildx builder (`--builder`), which then builds every image.
    pub builder: Option<String>,
}

/// A base image as the Dockerfile names it (arguments substituted) and the digest its
/// content tag was computed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasePull {
    pub reference: String,
    pub digest: String,
}

/// BuildKit's layer cache kept in the registry next to the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCache {
    /// e.g. `ghcr.io/acme/cart:buildcache`.
    pub reference: String,
    /// ECR accepts a cache only as an image manifest with OCI media types.
    pub ecr: bool,
}

/// Puts the runner's logins (as `config.json`, owner-only) and its buildx builders (a copy of
/// `buildx/instances`, and of `contexts/` which their endpoints may name) into the private
/// folder `private`.
fn runner_into_private(runner: &RunnerConfig, private: &Path) -> Result<(), DockerError> {
    use std::os::unix::fs::OpenOptionsExt;
    if !runner.logins.is_empty() {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(private.join("config.json"))
            .map_err(DockerError::ConfigDir)?;
        let text = docker_config::private_config_json(&runner.logins);
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(DockerError::ConfigDir)?;
    }
    // The builders, and the docker contexts their nodes may name as endpoints.
    let trees = [
        (
            runner.dir.join("buildx").join("instances"),
            ["buildx", "instances"],
        ),
        (
            runner.dir.join("contexts").join("meta"),
            ["contexts", "meta"],
        ),
        (runner.dir.join("contexts").join("tls"), ["contexts", "tls"]),
    ];
    for (source, [a, b]) in trees {
        if runner.has_buildx && source.is_dir() {
            copy_tree(&source, &private.join(a).join(b)).map_err(|e| {
                DockerError::CopyBuilders {
                    path: source.clone(),
                    source: e,
                }
            })?;
        }
    }
    Ok(())
}

/// Copies the files and folders below `from` into `to` (symbolic links are not followed).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The folder for the CLI's login: owner-only (0700) whatever the umask, since it holds
/// registry credentials, and removed when dropped.
fn private_config_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix("monoship-docker-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

impl DockerCli {
    /// Makes the private config (the runner's logins and builders in it), checks that the
    /// daemon answers and whether buildx is installed.
    ///
    /// # Errors
    /// [`DockerError::Daemon`] when the daemon does not answer, with how to fix it.
    pub async fn connect(
        program: &Path,
        runner: Option<&RunnerConfig>,
    ) -> Result<DockerCli, DockerError> {
        let config = private_config_dir().map_err(DockerError::ConfigDir)?;
        if let Some(runner) = runner {
            runner_into_private(runner, config.path())?;
        }
        let cli = DockerCli {
            program: program.to_path_buf(),
            config,
            buildx: false,
        };
        let version = cli
            .run_captured(
                &["version", "--format", "{{.Server.Version}}"],
                Duration::from_secs(30),
            )
            .await?;
        if !version.success {
            return Err(DockerError::Daemon {
                message: last_lines(&version.output, 3).replace('\n', " "),
            });
        }
        let buildx = cli
            .run_captured(&["buildx", "version"], Duration::from_secs(30))
            .await?
            .success;
        Ok(DockerCli { buildx, ..cli })
    }

    /// Whether `docker buildx` is available (multi-platform builds and the metadata file need it).
    pub fn has_buildx(&self) -> bool {
        self.buildx
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--config")
            .arg(self.config.path())
            .env("DOCKER_CLI_HINTS", "false")
            .env("BUILDKIT_PROGRESS", "plain")
            .kill_on_drop(true);
        cmd
    }

    async fn run_captured(
        &self,
        args: &[&str],
        limit: Duration,
    ) -> Result<CommandLog, DockerError> {
        let mut cmd = self.command();
        cmd.args(args);
        run(cmd, None, limit, &args.join(" ")).await
    }

    /// Logs in to `host`; the password goes through stdin into the private config.
    ///
    /// # Errors
    /// [`DockerError::Login`] with Docker's message (which never contains the password).
    pub async fn login(
        &self,
        host: &str,
        username: &str,
        password: &Secret,
    ) -> Result<(), DockerError> {
        let mut cmd = self.command();
        cmd.args(["login", host, "--username", username, "--password-stdin"]);
        let log = run(
            cmd,
            Some(password.expose().as_bytes()),
            Duration::from_secs(60),
            "docker login",
        )
        .await?;
        if log.success {
            Ok(())
        } else {
            Err(DockerError::Login {
                host: host.to_string(),
                message: last_lines(&log.output, 2).replace('\n', " "),
            })
        }
    }

    /// Whether buildx knows the builder `name` (`docker buildx inspect NAME`).
    ///
    /// # Errors
    /// Only when Docker cannot be started or does not answer in time.
    pub async fn has_builder(&self, name: &str) -> Result<bool, DockerError> {
        let log = self
            .run_captured(&["buildx", "inspect", name], Duration::from_secs(60))
            .await?;
        Ok(log.success)
    }

    /// Re-creates the record of the docker-container builder `name` in the private config,
    /// its one node named `NAME0` as buildx names it: buildx finds the node's container
    /// `buildx_buildkit_NAME0` on the daemon and uses it instead of making one.
    ///
    /// # Errors
    /// [`DockerError::Recreate`] with buildx's message.
    pub async fn recreate_builder(&self, name: &str) -> Result<(), DockerError> {
        let node = format!("{name}0");
        let args = [
            "buildx",
            "create",
            "--name",
            name,
            "--driver",
            "docker-container",
            "--node",
            &node,
        ];
        let log = self.run_captured(&args, Duration::from_secs(60)).await?;
        match log.success {
            true => Ok(()),
            false => Err(DockerError::Recreate {
                name: name.to_string(),
                message: last_lines(&log.output, 2).replace('\n', " "),
            }),
        }
    }

    /// The arguments of `docker buildx build --push` for a job.
    pub fn describe_build(job: &BuildJob) -> Vec<String> {
        build_command(job)
    }

    /// Runs `docker buildx build --push`; its whole log comes back either way.
    ///
    /// # Errors
    /// Only when Docker cannot be started or the build exceeds `limit`.
    pub async fn build(&self, job: &BuildJob, limit: Duration) -> Result<CommandLog, DockerError> {
        let mut cmd = self.command();
        cmd.args(build_command(job));
        run(cmd, None, limit, &format!("the build of {}", job.service)).await
    }
}

/// `docker buildx build --push` arguments for a job.
fn build_command(job: &BuildJob) -> Vec<String> {
    let mut args: Vec<String> = vec!["buildx".into(), "build".into()];
    if let Some(builder) = &job.builder {
        args.push("--builder".into());
        args.push(builder.clone());
    }
    args.push("--push".into());
    args.push("--file".into());
    args.push(job.dockerfile.display().to_string());
    for (k, v) in &job.build_args {
        args.push("--build-arg".into());
        args.push(format!("{k}={v}"));
    }
    if let Some(t) = &job.target {
        args.push("--target".into());
        args.push(t.clone());
    }
    if job.pull {
        args.push("--pull".into());
    }
    if !job.platforms.is_empty() {
        args.push("--platform".into());
        args.push(job.platforms.join(","));
    }
    for (k, v) in &job.labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    for t in &job.tags {
        args.push("--tag".into());
        args.push(t.clone());
    }
    // One image manifest, no attestation index: what ECR, Lambda and `docker pull` expect.
    args.push("--provenance=false".into());
    if let Some(m) = &job.metadata_file {
        args.push("--metadata-file".into());
        args.push(m.display().to_string());
    }
    if let Some(cache) = &job.cache {
        args.push("--cache-from".into());
        args.push(format!("type=registry,ref={}", cache.reference));
        let ecr = if cache.ecr {
            ",image-manifest=true,oci-mediatypes=true"
        } else {
            ""
        };
        args.push("--cache-to".into());
        args.push(format!(
            "type=registry,ref={},mode=max{ecr}",
            cache.reference
        ));
    }
    args.push(job.context.display().to_string());
    args
}

/// Which builder makes an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    /// `docker buildx build --push` (the CLI).
    Buildx,
    /// The daemon's BuildKit through the Engine API (`version=2`).
    BuildKit,
    /// The daemon's legacy builder through the Engine API (`version=1`).
    Legacy,
}

/// Why `job` needs buildx, if it does: a named builder, more than one platform, or the
/// registry cache. Pure.
pub fn buildx_reason(job: &BuildJob) -> Option<&'static str> {
    if job.builder.is_some() {
        Some("a named builder")
    } else if job.platforms.len() > 1 {
        Some("a service with more than one platform")
    } else if job.cache.is_some() {
        Some("build.registry_cache")
    } else {
        None
    }
}

/// The builder of `job`: buildx when a builder is named or it needs it, else the Engine API with BuildKit when the
/// daemon has it, else the legacy builder. Pure.
pub fn choose_builder(job: &BuildJob, buildkit: bool) -> Builder {
    match (buildx_reason(job), buildkit) {
        (Some(_), _) => Builder::Buildx,
        (None, true) => Builder::BuildKit,
        (None, false) => Builder::Legacy,
    }
}

/// A build or push could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no Docker daemon to build with")]
    NoDaemon,
}

/// The builders of a run: the daemon's API and, when some image needs it, the buildx CLI.
pub struct Builders {
    pub engine: Option<Engine>,
    /// Whether the daemon builds with BuildKit (else its legacy builder).
    pub buildkit: bool,
    pub buildx: Option<DockerCli>,
}

impl Builders {
    /// Builds `job`; buildx also pushes it. The log comes back whether or not it built.
    ///
    /// # Errors
    /// When the builder cannot be reached or started, or `limit` passes.
    pub async fn build(
        &self,
        job: &BuildJob,
        limit: Duration,
    ) -> Result<(Builder, CommandLog), BuildError> {
        let builder = choose_builder(job, self.buildkit);
        let log = match (builder, &self.buildx, &self.engine) {
            (Builder::Buildx, Some(cli), _) => cli.build(job, limit).await?,
            (Builder::Buildx, None, _) | (_, _, None) => return Err(BuildError::NoDaemon),
            (_, _, Some(engine)) => engine_build(engine, job, self.buildkit, limit).await?,
        };
        Ok((builder, log))
    }

    /// Pushes `image:tag` through the Engine API.
    ///
    /// # Errors
    /// As [`Builders::build`].
    pub async fn push(
        &self,
        image: &str,
        tag: &str,
        limit: Duration,
    ) -> Result<CommandLog, BuildError> {
        let engine = self.engine.as_ref().ok_or(BuildError::NoDaemon)?;
        Ok(engine.push(image, tag, limit).await?)
    }
}

/// The `/build` query of `job`, its Dockerfile at `dockerfile` in the context tar.
pub fn engine_query(job: &BuildJob, dockerfile: &str, buildkit: bool) -> String {
    build_query(&BuildQuery {
        dockerfile,
        buildkit,
        tags: &job.tags,
        labels: &job.labels,
        build_args: &job.build_args,
        target: job.target.as_deref(),
        platform: match job.platforms.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        },
    })
}

/// Sends the files the content tag covers, as a tar, to the daemon's builder.
async fn engine_build(
    engine: &Engine,
    job: &BuildJob,
    buildkit: bool,
    limit: Duration,
) -> Result<CommandLog, EngineError> {
    let relative = |p: &Path| {
        let path = p.strip_prefix(&job.root).unwrap_or(p);
        path.to_string_lossy().into_owned()
    };
    let platform = match job.platforms.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    let mut pulled = String::new();
    for base in &job.bases {
        match engine
            .pull_base(&base.reference, &base.digest, platform, limit)
            .await?
        {
            Some(log) if !log.success => return Ok(log),
            Some(log) => pulled.push_str(&log.output),
            None => {}
        }
    }
    let (context, dockerfile) = (relative(&job.context), relative(&job.dockerfile));
    let inputs: Vec<&InputFile> = job.inputs.iter().collect();
    let listing = tarball::listing(&inputs, &context, &dockerfile, !buildkit);
    let query = engine_query(job, &listing.dockerfile, buildkit);
    let root = job.root.clone();
    // The context is written while it is sent, a few chunks ahead: never whole in memory.
    let (body, mut writer) = streamed_body();
    let producer = tokio::task::spawn_blocking(move || {
        let written = tarball::write_to(&listing, &root, &mut writer)
            .and_then(|()| std::io::Write::flush(&mut writer));
        if let Err(e) = &written {
            writer.fail(e);
        }
        written
    });
    let what = format!("the build of {}", job.service);
    let built = engine.build(&query, body, limit, &what).await;
    let produced = producer
        .await
        .map_err(|e| EngineError::Context(std::io::Error::other(e.to_string())))?;
    // A file that could not be read explains a failed build better than the cut request.
    let unread = produced.as_ref().err();
    if let Some(e) = unread.filter(|e| !body_dropped(e)) {
        return Err(EngineError::Context(std::io::Error::new(
            e.kind(),
            e.to_string(),
        )));
    }
    let mut built = built?;
    if !built.success && built.output.contains("no active sessions") {
        built.output.push_str(NO_SESSION_HINT);
    }
    Ok(CommandLog {
        output: pulled + &built.output,
        ..built
    })
}

/// BuildKit without a client session pulls without credentials.
const NO_SESSION_HINT: &str = "a base image could not be pulled: BuildKit through the Engine API has no credentials of its own; monoship pulls base images of the registry it pushes to, any other private base must be pulled on the runner first (`docker pull` after docker/login-action)\n";

async fn run(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    limit: Duration,
    what: &str,
) -> Result<CommandLog, DockerError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|source| DockerError::Spawn { program, source })?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A closed pipe means the command failed; its output says why.
        let _ = pipe.write_all(data).await;
        drop(pipe);
    }
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| DockerError::Timeout {
            what: what.to_string(),
            limit,
        })?
        .map_err(|source| DockerError::Spawn {
            program: what.to_string(),
            source,
        })?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(CommandLog {
        success: output.status.success(),
        output: text,
    })
}

/// The last `n` non-empty lines of a log, without the legacy builder's deprecation notice.
pub fn last_lines(log: &str, n: usize) -> String {
    let notice = [
        "DEPRECATED: The legacy builder",
        "Install the buildx component",
        "docs.docker.com/go/buildx",
    ];
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.trim().is_empty() && !notice.iter().any(|n| l.contains(n)))
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The Dockerfile line of the step that failed, read from a build log and the Dockerfile's
/// instructions (first line, text): buildx names it (`Dockerfile:12`); the Engine API's
/// BuildKit log names the failed step (`#7 ERROR:` after `#7 [build 2/3] RUN make`), found by
/// its stage and text; the legacy builder numbers steps (`Step 3/5 :`) in instruction order.
pub fn failed_line(log: &str, instructions: &[(usize, String)]) -> Option<usize> {
    let buildx = log.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix("Dockerfile:")?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse::<usize>()
            .ok()
    });
    if let Some(line) = buildx.or_else(|| failed_step_line(log, instructions)) {
        return Some(line);
    }
    let step = log.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix("Step ")?;
        let (n, _) = rest.split_once('/')?;
        n.parse::<usize>().ok()
    })?;
    instructions.get(step.checked_sub(1)?).map(|i| i.0)
}

/// Words joined by single spaces, for comparing instruction texts.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The line of the BuildKit step marked `#N ERROR:` in a plain progress log.
fn failed_step_line(log: &str, instructions: &[(usize, String)]) -> Option<usize> {
    let failed = log.lines().rev().find_map(|l| {
        let (n, rest) = l.strip_prefix('#')?.split_once(' ')?;
        rest.starts_with("ERROR:").then_some(n)
    })?;
    let prefix = format!("#{failed} ");
    let name = log.lines().find_map(|l| l.strip_prefix(&prefix))?;
    let (step, text) = name.strip_prefix('[')?.split_once("] ")?;
    // `[linux/amd64 build 2/3]`: platforms have a slash, the counter too.
    let mut tokens: Vec<&str> = step.split_whitespace().collect();
    tokens.pop();
    let stage = tokens.into_iter().rev().find(|t| !t.contains('/'));
    let candidates = stage_instructions(instructions, stage);
    let (text, keyword) = (
        words(text),
        words(text).split(' ').next()?.to_ascii_uppercase(),
    );
    if let Some(i) = candidates.iter().find(|i| words(&i.1) == text) {
        return Some(i.0);
    }
    let same: Vec<&&(usize, String)> = candidates
        .iter()
        .filter(|i| {
            i.1.split_whitespace().next().map(str::to_ascii_uppercase) == Some(keyword.clone())
        })
        .collect();
    // A FROM names its image in full, a RUN shows its arguments expanded.
    let expanded = same.iter().find(|i| {
        let before = words(&i.1);
        text.starts_with(before.split('$').next().unwrap_or_default())
    });
    match same.as_slice() {
        [only] => Some(only.0),
        _ => expanded.map(|i| i.0),
    }
}

/// A stage's name (lowercase) and instructions.
type Stage<'a> = (Option<String>, Vec<&'a (usize, String)>);

/// The instructions of one stage: by name, `stage-N`, or the first when unnamed.
fn stage_instructions<'a>(
    instructions: &'a [(usize, String)],
    stage: Option<&str>,
) -> Vec<&'a (usize, String)> {
    let mut stages: Vec<Stage<'a>> = vec![];
    for i in instructions {
        let words: Vec<&str> = i.1.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            let name = words
                .windows(2)
                .find(|w| w[0].eq_ignore_ascii_case("AS"))
                .map(|w| w[1].to_ascii_lowercase());
            stages.push((name, vec![]));
        }
        if let Some(last) = stages.last_mut() {
            last.1.push(i);
        }
    }
    let index = match stage {
        None => Some(0),
        Some(s) => stages
            .iter()
            .position(|(name, _)| name.as_deref() == Some(&s.to_ascii_lowercase()))
            .or_else(|| s.strip_prefix("stage-")?.parse().ok()),
    };
    index
        .and_then(|i| stages.into_iter().nth(i))
        .map(|(_, list)| list)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instructions(dockerfile: &str) -> Vec<(usize, String)> {
        crate::plan::dockerfile::instructions(dockerfile)
    }

    #[test]
    fn failed_lines_come_from_buildx_or_legacy_step_numbers() {
        let buildx = "#5 [2/3] COPY missing /x\nERROR: failed to solve\nDockerfile:7\n--------------------\n   7 | >>> COPY missing /x\n";
        assert_eq!(failed_line(buildx, &[]), Some(7));
        let legacy = "Step 1/3 : FROM scratch\n ---> \nStep 2/3 : COPY missing /x\nCOPY failed: file not found in build context\n";
        let lines = [
            (1, "FROM scratch".to_string()),
            (4, "COPY missing /x".into()),
            (9, "CMD x".into()),
        ];
        assert_eq!(failed_line(legacy, &lines), Some(4));
        assert_eq!(failed_line("no idea", &lines), None);
    }

    #[test]
    fn failed_buildkit_steps_are_found_by_stage_and_text() {
        let dockerfile = "FROM base:1 AS build\nARG V\nRUN make \\\n  all\nRUN echo $V > /v\n\nFROM scratch\nCOPY --from=build /v /v\nCOPY missing /m\nFROM build\nRUN make\n";
        let ins = instructions(dockerfile);
        let log = |step: &str| {
            format!("#1 [internal] load remote build context\n#1 DONE 0.0s\n#4 {step}\n#4 some output\n#5 [x 1/1] RUN other\n#4 ERROR: exit code: 2\nERROR: exit code: 2\n")
        };
        assert_eq!(
            failed_line(&log("[build 2/3] RUN make all"), &ins),
            Some(3),
            "continuations joined"
        );
        assert_eq!(
            failed_line(&log("[build 3/3] RUN echo 1.2 > /v"), &ins),
            Some(5),
            "arguments expanded"
        );
        assert_eq!(
            failed_line(&log("[build 1/3] FROM docker.io/library/base:1"), &ins),
            Some(1)
        );
        assert_eq!(
            failed_line(&log("[stage-1 2/2] COPY missing /m"), &ins),
            Some(9)
        );
        assert_eq!(
            failed_line(&log("[linux/arm64 stage-2 2/2] RUN make"), &ins),
            Some(11)
        );
        let single = instructions("FROM scratch\nCOPY a /a\nCOPY b /b\n");
        assert_eq!(failed_line(&log("[2/2] COPY b /b"), &single), Some(3));
        assert_eq!(failed_line(&log("[2/2] ADD c /c"), &single), None);
    }

    fn buildx_job() -> BuildJob {
        BuildJob {
            service: "cart".into(),
            dockerfile: "/r/Dockerfile".into(),
            context: "/r".into(),
            tags: vec!["h/cart:t".into()],
            build_args: BTreeMap::new(),
            target: None,
            platforms: vec![],
            labels: BTreeMap::new(),
            pull: false,
            metadata_file: None,
            cache: Some(RegistryCache {
                reference: "1.dkr.ecr.x/cart:buildcache".into(),
                ecr: true,
            }),
            root: "/r".into(),
            inputs: vec![],
            bases: vec![],
            builder: None,
        }
    }

    #[test]
    fn registry_caches_are_ecr_compatible() {
        let mut job = buildx_job();
        let buildx = build_command(&job).join(" ");
        assert!(
            buildx.contains("--cache-from type=registry,ref=1.dkr.ecr.x/cart:buildcache"),
            "{buildx}"
        );
        assert!(buildx.contains("--cache-to type=registry,ref=1.dkr.ecr.x/cart:buildcache,mode=max,image-manifest=true,oci-mediatypes=true"), "{buildx}");
        job.cache.as_mut().unwrap().ecr = false;
        assert!(build_command(&job).join(" ").ends_with("mode=max /r"));
    }

    #[test]
    fn buildx_only_for_several_platforms_or_the_registry_cache() {
        let cached = buildx_job();
        assert_eq!(choose_builder(&cached, true), Builder::Buildx);
        assert_eq!(buildx_reason(&cached), Some("build.registry_cache"));
        let plain = BuildJob {
            cache: None,
            ..cached
        };
        assert_eq!(choose_builder(&plain, true), Builder::BuildKit);
        assert_eq!(choose_builder(&plain, false), Builder::Legacy);
        let one = BuildJob {
            platforms: vec!["linux/arm64".into()],
            ..plain.clone()
        };
        assert_eq!(
            choose_builder(&one, true),
            Builder::BuildKit,
            "one platform is a query parameter"
        );
        let two = BuildJob {
            platforms: vec!["linux/arm64".into(), "linux/amd64".into()],
            ..plain
        };
        assert_eq!(choose_builder(&two, false), Builder::Buildx);
        assert_eq!(
            buildx_reason(&two),
            Some("a service with more than one platform")
        );
    }

    #[test]
    fn the_login_folder_is_owner_only_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_config_dir().unwrap();
        let path = dir.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        drop(dir);
        assert!(!path.exists(), "{} is removed", path.display());
    }
}
