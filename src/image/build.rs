//! Build: images of the changed services through the Docker CLI, as the runner provides it
//! (the daemon's socket mounted, the CLI in the action image). `docker buildx build --push`
//! when the buildx plugin is there, else `docker build` and, in [`crate::image::push`], `docker push`.
//!
//! Logins go to a private `DOCKER_CONFIG` that lives as long as [`DockerCli`], passwords through
//! stdin; nothing here ever puts a secret on a command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

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
}

/// The Docker CLI with a private config folder.
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
}

/// BuildKit's layer cache kept in the registry next to the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCache {
    /// e.g. `ghcr.io/acme/cart:buildcache`.
    pub reference: String,
    /// ECR accepts a cache only as an image manifest with OCI media types.
    pub ecr: bool,
}

/// The result of running one Docker command.
#[derive(Debug, Clone)]
pub struct CommandLog {
    pub success: bool,
    /// stdout and stderr, interleaved as they came.
    pub output: String,
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
    /// Checks that the daemon answers and whether buildx is installed.
    ///
    /// # Errors
    /// [`DockerError::Daemon`] when the daemon does not answer, with how to fix it.
    pub async fn connect(program: &Path) -> Result<DockerCli, DockerError> {
        let config = private_config_dir().map_err(DockerError::ConfigDir)?;
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

    /// The arguments of `docker [buildx] build` for a job, as this CLI would run it.
    pub fn build_args(&self, job: &BuildJob) -> Vec<String> {
        build_command(job, self.buildx)
    }

    /// The arguments of a plain `docker build`, for dry runs.
    pub fn describe_build(job: &BuildJob) -> Vec<String> {
        build_command(job, false)
    }

    /// Runs the build; its whole log comes back either way.
    ///
    /// # Errors
    /// Only when Docker cannot be started or the build exceeds `limit`.
    pub async fn build(&self, job: &BuildJob, limit: Duration) -> Result<CommandLog, DockerError> {
        // The legacy builder turns each `--label` into a step that commits a layer (about half
        // a second each); one LABEL line appended to a copy of the Dockerfile costs one step.
        let mut labelled = None;
        let mut job = job.clone();
        if !self.buildx && job.target.is_none() && !job.labels.is_empty() {
            let dir = tempfile::Builder::new()
                .prefix("monoship-dockerfile-")
                .tempdir()
                .map_err(DockerError::ConfigDir)?;
            let copy = dir.path().join("Dockerfile");
            let mut text = std::fs::read_to_string(&job.dockerfile).unwrap_or_default();
            text.push_str(&label_line(&job.labels));
            std::fs::write(&copy, text).map_err(DockerError::ConfigDir)?;
            let own_ignore = PathBuf::from(format!("{}.dockerignore", job.dockerfile.display()));
            if own_ignore.exists() {
                let _ = std::fs::copy(&own_ignore, dir.path().join("Dockerfile.dockerignore"));
            }
            job.dockerfile = copy;
            job.labels.clear();
            labelled = Some(dir);
        }
        let mut cmd = self.command();
        cmd.args(self.build_args(&job));
        let log = run(cmd, None, limit, &format!("the build of {}", job.service)).await;
        drop(labelled);
        log
    }

    /// Pushes one tag (the legacy builder's second step).
    ///
    /// # Errors
    /// Only when Docker cannot be started or the push exceeds `limit`.
    pub async fn push(&self, reference: &str, limit: Duration) -> Result<CommandLog, DockerError> {
        let mut cmd = self.command();
        cmd.args(["push", reference]);
        run(cmd, None, limit, &format!("docker push {reference}")).await
    }
}

/// One `LABEL` instruction holding every label, quoted: in single quotes (no escapes, so
/// JSON survives whatever the escape character) when there is no `'` in it, else in double
/// quotes with `"` and `\` replaced.
fn label_line(labels: &BTreeMap<String, String>) -> String {
    let quote = |s: &str| match s.contains('"') && !s.contains('\'') {
        true => format!("'{}'", s.replace(['\n', '\r'], "_")),
        false => format!("\"{}\"", s.replace(['"', '\\', '\n', '\r'], "_")),
    };
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
        .collect();
    format!("\nLABEL {}\n", pairs.join(" "))
}

/// `docker [buildx] build` arguments for a job.
fn build_command(job: &BuildJob, buildx: bool) -> Vec<String> {
    let mut args: Vec<String> = if buildx {
        vec!["buildx".into(), "build".into(), "--push".into()]
    } else {
        vec!["build".into()]
    };
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
    if buildx {
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
    }
    args.push(job.context.display().to_string());
    args
}

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

/// The Dockerfile line of the step that failed, read from a build log: BuildKit names it
/// (`Dockerfile:12`); the legacy builder numbers steps (`Step 3/5 :`), which map to
/// instructions in order.
pub fn failed_line(log: &str, instruction_lines: &[usize]) -> Option<usize> {
    let buildkit = log.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix("Dockerfile:")?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse::<usize>()
            .ok()
    });
    if buildkit.is_some() {
        return buildkit;
    }
    let step = log.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix("Step ")?;
        let (n, _) = rest.split_once('/')?;
        n.parse::<usize>().ok()
    })?;
    instruction_lines.get(step.checked_sub(1)?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_lines_come_from_buildkit_or_legacy_step_numbers() {
        let buildkit = "#5 [2/3] COPY missing /x\nERROR: failed to solve\nDockerfile:7\n--------------------\n   7 | >>> COPY missing /x\n";
        assert_eq!(failed_line(buildkit, &[]), Some(7));
        let legacy = "Step 1/3 : FROM scratch\n ---> \nStep 2/3 : COPY missing /x\nCOPY failed: file not found in build context\n";
        assert_eq!(failed_line(legacy, &[1, 4, 9]), Some(4));
        assert_eq!(failed_line("no idea", &[1]), None);
    }

    #[test]
    fn registry_caches_are_buildx_only_and_ecr_compatible() {
        let mut job = BuildJob {
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
        };
        let buildx = build_command(&job, true).join(" ");
        assert!(
            buildx.contains("--cache-from type=registry,ref=1.dkr.ecr.x/cart:buildcache"),
            "{buildx}"
        );
        assert!(buildx.contains("--cache-to type=registry,ref=1.dkr.ecr.x/cart:buildcache,mode=max,image-manifest=true,oci-mediatypes=true"), "{buildx}");
        assert!(
            !build_command(&job, false).join(" ").contains("cache"),
            "the legacy builder cannot export a cache"
        );
        job.cache.as_mut().unwrap().ecr = false;
        assert!(build_command(&job, true).join(" ").ends_with("mode=max /r"));
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

    #[test]
    fn labels_become_one_quoted_instruction() {
        let labels: BTreeMap<String, String> = [
            ("a.b".to_string(), "x\"y".to_string()),
            ("c".to_string(), "z w".to_string()),
            ("d".to_string(), "'\"\n".to_string()),
            ("j".to_string(), r#"{"r:1":"sha256:0"}"#.to_string()),
        ]
        .into();
        assert_eq!(
            label_line(&labels),
            "\nLABEL \"a.b\"='x\"y' \"c\"=\"z w\" \"d\"=\"'__\" \"j\"='{\"r:1\":\"sha256:0\"}'\n"
        );
    }
}
