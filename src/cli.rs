//! Command-line and action-input parsing into one [`Request`]. The CLI and the action share
//! every semantic; only where the values come from differs.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Command {
    Plan,
    Build,
    Ship,
}

/// How to print the result on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// When `--format text` output gets ANSI colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour, given `NO_COLOR` and whether stdout is a terminal.
    pub fn enabled(self, no_color: Option<&str>, stdout_is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => no_color.is_none_or(str::is_empty) && stdout_is_terminal,
        }
    }
}

/// Values that only exist when running as a GitHub Action.
#[derive(Debug, Clone, Default)]
pub struct ActionEnv {
    pub event_name: String,
    pub event_path: Option<PathBuf>,
    pub sha: Option<String>,
    pub repository: Option<String>,
    pub api_url: String,
    /// `$GITHUB_SERVER_URL`, for the image's source label.
    pub server_url: String,
    /// `$GITHUB_RUN_ID`, for the run link recorded on workloads.
    pub run_id: Option<String>,
    pub token: Option<String>,
    pub output: Option<PathBuf>,
    pub summary: Option<PathBuf>,
    /// Post or update the sticky pull-request comment (input `comment`, default true; CLI
    /// `--comment`, default false). Only `pull_request` and `pull_request_target` events.
    pub comment: bool,
    /// Record each deployed service as a GitHub Deployment (input `github-deployments`, CLI
    /// `ship --github-deployments`; default false).
    pub github_deployments: bool,
    /// Set a `monoship/<service>` commit status per service (input `commit-statuses`, default
    /// true; CLI `--commit-statuses`, default false).
    pub commit_statuses: bool,
    /// The environment `ship` deploys to (input `environment`, CLI `--environment`); see
    /// [`crate::report::publish::environment_name`] for the default.
    pub environment: Option<String>,
    /// The values of [`SECRET_VARIABLES`] that are set, masked before anything is printed.
    pub secrets: Vec<crate::secret::Secret>,
    /// `$GITHUB_WORKSPACE`: annotations name files relative to it.
    pub workspace: Option<PathBuf>,
    /// Warnings about the inputs (a deprecated name), shown before the run starts.
    pub warnings: Vec<String>,
}

/// One run, from the CLI or from action inputs.
#[derive(Debug, Clone)]
pub struct Request {
    pub command: Command,
    /// Folder inside the repository to run in.
    pub workdir: PathBuf,
    /// Config path, relative to `workdir` unless absolute.
    pub config: PathBuf,
    pub base: Option<String>,
    pub head: Option<String>,
    /// Compare from the merge base of `base` and `head`.
    pub merge_base: bool,
    /// Forced set of services (`all` expands to every one).
    pub services: Option<Vec<String>>,
    pub format: Format,
    /// Whether text on stdout gets ANSI colours (`--color`; never in action mode).
    pub color: bool,
    pub dry_run: bool,
    /// Registry `HOST[:PORT][/PREFIX]` overriding the config's.
    pub registry: Option<String>,
    pub registry_username: Option<String>,
    /// From `MONOSHIP_REGISTRY_PASSWORD` or the `registry-password` input, never argv.
    pub registry_password: Option<crate::secret::Secret>,
    pub max_parallel: Option<usize>,
    /// Build and push even when the registry has an image of the same inputs.
    pub rebuild: bool,
    /// The Docker daemon and CLI.
    pub docker: DockerSettings,
    /// The buildx builder to build every image with (`--builder`, input `builder`).
    pub builder: Option<String>,
    pub deploy: DeployOptions,
    pub action: Option<ActionEnv>,
    /// The variables AWS credentials are loaded from, read once here so that no stage reads
    /// the process environment itself.
    pub aws_env: EnvSnapshot,
    /// AWS settings given as inputs (`aws-region`, `role-to-assume`, `role-session-name`,
    /// `audience`); each set one wins over the config's `registry.ecr` and `cluster.eks`.
    pub aws: crate::aws::AwsSettings,
}

/// Environment variables captured at start. Never printed: some are credentials.
#[derive(Clone, Default)]
pub struct EnvSnapshot(std::collections::BTreeMap<String, String>);

impl EnvSnapshot {
    /// Captures `names` through `env`.
    pub fn capture(names: &[&str], env: &dyn Fn(&str) -> Option<String>) -> EnvSnapshot {
        EnvSnapshot(
            names
                .iter()
                .filter_map(|n| env(n).map(|v| (n.to_string(), v)))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl std::fmt::Debug for EnvSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// Every variable [`crate::aws::load`] reads (the SDK's own default chain reads the process
/// environment itself).
pub const AWS_VARIABLES: [&str; 9] = [
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GITHUB_ACTIONS",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
];

/// Credentials the job hands over in the environment or as inputs. The runner masks secrets it
/// knows of, but a value computed in an earlier step and passed along is not one of them.
pub const SECRET_VARIABLES: [&str; 7] = [
    "INPUT_TOKEN",
    "GITHUB_TOKEN",
    "INPUT_REGISTRY-PASSWORD",
    "MONOSHIP_REGISTRY_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
];

/// How `ship` deploys.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// Kubeconfig file; `None`: `KUBECONFIG`, `~/.kube/config`, in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// Where a kubeconfig is looked for without `kubeconfig`: the files of `KUBECONFIG`,
    /// else `~/.kube/config` (see [`crate::deploy::usual_kubeconfigs`]), read here so that
    /// no stage reads the environment.
    pub usual_kubeconfigs: Vec<PathBuf>,
    pub context: Option<String>,
    /// Undo a failed rollout as `kubectl rollout undo` does (default on).
    pub rollback: bool,
    /// Deploy even over a workload that runs a newer commit.
    pub force: bool,
    /// Deploy nothing when any build failed (default on).
    pub atomic: bool,
    /// How long each rollout may take.
    pub timeout: std::time::Duration,
    /// After SIGINT or SIGTERM, how long rollouts under way may still finish before they are
    /// rolled back (default 20 s).
    pub interrupt_grace: std::time::Duration,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            kubeconfig: None,
            usual_kubeconfigs: Vec::new(),
            context: None,
            rollback: true,
            force: false,
            atomic: true,
            timeout: std::time::Duration::from_secs(600),
            interrupt_grace: crate::interrupt::DEFAULT_GRACE,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "monoship",
    version,
    about = "Ship only what changed in a monorepo."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Which services changed between two revisions, and why.
    Plan(Shared),
    /// Plan, then build and push the images of the changed services.
    Build {
        #[command(flatten)]
        shared: Shared,
        #[command(flatten)]
        push: PushArgs,
    },
    /// Build, then deploy the new images by digest and follow each rollout.
    Ship {
        #[command(flatten)]
        shared: Shared,
        #[command(flatten)]
        push: PushArgs,
        #[command(flatten)]
        deploy: DeployArgs,
        #[command(flatten)]
        github: GithubDeployArgs,
    },
    /// Print the JSON Schema of the config file.
    Schema,
}

#[derive(Debug, clap::Args)]
struct Shared {
    /// Config file.
    #[arg(long, default_value = ".github/monoship.yml")]
    config: PathBuf,
    /// Base revision. Default: the merge base of HEAD with the remote default branch.
    #[arg(long)]
    base: Option<String>,
    /// Head revision.
    #[arg(long, default_value = "HEAD")]
    head: String,
    /// Compare from the merge base of --base and --head (what the branch changed).
    #[arg(long)]
    merge_base: bool,
    /// Skip detection: exactly these services (comma-separated; `all` for every one).
    #[arg(long, value_delimiter = ',')]
    services: Option<Vec<String>>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Colour the text output: auto (a terminal, and NO_COLOR unset), always or never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// Do everything up to the first side effect and print what would be run.
    #[arg(long)]
    dry_run: bool,
    /// Run in this folder instead of the current one.
    #[arg(short = 'C', long, default_value = ".")]
    dir: PathBuf,
    /// In a GitHub Actions pull-request job, post or update monoship's sticky comment on the
    /// pull request (the action does by default).
    #[arg(long)]
    comment: bool,
    /// In GitHub Actions, set a `monoship/<service>` commit status on the head commit for each
    /// service (the action does by default).
    #[arg(long)]
    commit_statuses: bool,
}

#[derive(Debug, clap::Args)]
struct PushArgs {
    /// Push to this OCI registry (`HOST[:PORT][/PREFIX]`) instead of the config's. The password
    /// comes from the MONOSHIP_REGISTRY_PASSWORD environment variable.
    #[arg(long)]
    registry: Option<String>,
    /// User for the registry.
    #[arg(long)]
    registry_username: Option<String>,
    /// Images built at once (default: the config's `build.max_parallel`, else 2).
    #[arg(long)]
    max_parallel: Option<usize>,
    /// Build and push even when the registry already has an image of the same inputs (the
    /// repository's files, the build settings and the digests of the base images).
    #[arg(long)]
    rebuild: bool,
    /// Build every image with this buildx builder (`docker buildx build --builder NAME
    /// --push`), e.g. the one docker/setup-buildx-action made (default: the config's
    /// `build.builder`, else BUILDX_BUILDER).
    #[arg(long)]
    builder: Option<String>,
}

#[derive(Debug, clap::Args)]
struct GithubDeployArgs {
    /// In GitHub Actions, record each deployed service as a GitHub Deployment with statuses.
    #[arg(long)]
    github_deployments: bool,
    /// Environment of the GitHub Deployments and of the ship comment (default: --context, else
    /// the EKS cluster's name, else `production`).
    #[arg(long)]
    environment: Option<String>,
}

#[derive(Debug, clap::Args)]
struct DeployArgs {
    /// Kubeconfig of the cluster to deploy to (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long)]
    context: Option<String>,
    /// Leave a failed rollout as it is instead of undoing it.
    #[arg(long)]
    no_rollback: bool,
    /// Deploy even over a workload that runs a newer commit.
    #[arg(long)]
    force: bool,
    /// Deploy the services that built even when another failed.
    #[arg(long)]
    no_atomic: bool,
    /// Seconds each rollout may take.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Seconds rollouts under way may still take after SIGINT or SIGTERM before they are
    /// rolled back.
    #[arg(long, default_value_t = 20)]
    interrupt_grace: u64,
}

impl DeployArgs {
    fn options(self, env: &dyn Fn(&str) -> Option<String>) -> DeployOptions {
        DeployOptions {
            kubeconfig: self.kubeconfig,
            usual_kubeconfigs: usual_kubeconfigs(env),
            context: self.context,
            rollback: !self.no_rollback,
            force: self.force,
            atomic: !self.no_atomic,
            timeout: std::time::Duration::from_secs(self.timeout.max(1)),
            interrupt_grace: std::time::Duration::from_secs(self.interrupt_grace.max(1)),
        }
    }
}

/// What the process was asked to do.
pub enum Invocation {
    Run(Box<Request>),
    PrintSchema,
}

/// Bad arguments or inputs.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Reads the command line, or the action inputs when running as an action without a
/// subcommand (`GITHUB_ACTIONS=true`).
///
/// # Errors
/// Clap's own error (printed by the caller with its exit code) or a [`UsageError`].
pub fn parse(
    args: Vec<std::ffi::OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, Box<dyn std::error::Error>> {
    let in_action = env("GITHUB_ACTIONS").as_deref() == Some("true");
    if in_action && args.len() <= 1 {
        return Ok(Invocation::Run(Box::new(from_action_env(env)?)));
    }
    let cli = Cli::try_parse_from(args)?;
    match cli.command {
        None => Err(Box::new(UsageError(
            "no command given; try `monoship plan --help`".into(),
        ))),
        Some(Sub::Schema) => Ok(Invocation::PrintSchema),
        Some(Sub::Plan(s)) => Ok(Invocation::Run(Box::new(request(
            Command::Plan,
            s,
            None,
            in_action,
            env,
        )))),
        Some(Sub::Build { shared, push }) => Ok(Invocation::Run(Box::new(request(
            Command::Build,
            shared,
            Some(push),
            in_action,
            env,
        )))),
        Some(Sub::Ship {
            shared,
            push,
            deploy,
            github,
        }) => {
            let mut r = request(Command::Ship, shared, Some(push), in_action, env);
            r.deploy = deploy.options(env);
            if let Some(a) = r.action.as_mut() {
                a.github_deployments = github.github_deployments;
                a.environment = github.environment;
            }
            Ok(Invocation::Run(Box::new(r)))
        }
    }
}

fn request(
    command: Command,
    s: Shared,
    push: Option<PushArgs>,
    in_action: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Request {
    let push = push.unwrap_or(PushArgs {
        registry: None,
        registry_username: None,
        max_parallel: None,
        rebuild: false,
        builder: None,
    });
    Request {
        command,
        workdir: s.dir,
        config: s.config,
        base: s.base,
        head: Some(s.head),
        merge_base: s.merge_base,
        services: s.services,
        format: s.format,
        color: s.color.enabled(
            env("NO_COLOR").as_deref(),
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
        ),
        dry_run: s.dry_run,
        registry: push.registry,
        registry_username: push.registry_username,
        registry_password: env("MONOSHIP_REGISTRY_PASSWORD")
            .filter(|p| !p.is_empty())
            .map(crate::secret::Secret::new),
        max_parallel: push.max_parallel,
        rebuild: push.rebuild,
        docker: docker_settings(env, in_action),
        builder: push.builder,
        deploy: DeployOptions::default(),
        aws_env: EnvSnapshot::capture(&AWS_VARIABLES, env),
        aws: crate::aws::AwsSettings::default(),
        action: if in_action {
            Some(ActionEnv {
                comment: s.comment,
                commit_statuses: s.commit_statuses,
                ..action_env(env)
            })
        } else {
            None
        },
    }
}

/// The kubeconfig files of `KUBECONFIG`, else `~/.kube/config`.
fn usual_kubeconfigs(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    crate::deploy::usual_kubeconfigs(env("KUBECONFIG").as_deref(), env("HOME").as_deref())
}

/// Where the Docker daemon is and how to build with it, from the variables Docker's own
/// tools read.
#[derive(Debug, Clone, Default)]
pub struct DockerSettings {
    /// The Docker CLI, for buildx only (`MONOSHIP_DOCKER`, default `docker`).
    pub program: PathBuf,
    /// `DOCKER_HOST`.
    pub host: Option<String>,
    /// `DOCKER_TLS_VERIFY` set (to anything but empty).
    pub tls_verify: bool,
    /// `DOCKER_BUILDKIT=0`: the legacy builder, as with the docker CLI.
    pub legacy_builder: bool,
    /// The runner's Docker config folder (`DOCKER_CONFIG`, else `$HOME/.docker`; see
    /// [`crate::image::docker_config::config_dir`]): its logins and buildx builders are used.
    pub config_dir: Option<PathBuf>,
    /// `BUILDX_BUILDER`: the builder buildx itself would use.
    pub builder_env: Option<String>,
}

fn docker_settings(env: &dyn Fn(&str) -> Option<String>, in_action: bool) -> DockerSettings {
    DockerSettings {
        config_dir: crate::image::docker_config::config_dir(
            env("DOCKER_CONFIG").as_deref(),
            env("HOME").as_deref(),
            in_action,
            &|p| p.exists(),
        ),
        builder_env: env("BUILDX_BUILDER").filter(|b| !b.trim().is_empty()),
        program: PathBuf::from(
            env("MONOSHIP_DOCKER")
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "docker".into()),
        ),
        host: env("DOCKER_HOST").filter(|h| !h.is_empty()),
        tls_verify: env("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty()),
        legacy_builder: env("DOCKER_BUILDKIT")
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false")),
    }
}

fn action_env(env: &dyn Fn(&str) -> Option<String>) -> ActionEnv {
    let nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    ActionEnv {
        event_name: nonempty("GITHUB_EVENT_NAME").unwrap_or_default(),
        event_path: nonempty("GITHUB_EVENT_PATH").map(PathBuf::from),
        sha: nonempty("GITHUB_SHA"),
        repository: nonempty("GITHUB_REPOSITORY"),
        api_url: nonempty("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into()),
        server_url: nonempty("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into()),
        run_id: nonempty("GITHUB_RUN_ID"),
        token: nonempty("INPUT_TOKEN").or_else(|| nonempty("GITHUB_TOKEN")),
        output: nonempty("GITHUB_OUTPUT").map(PathBuf::from),
        summary: nonempty("GITHUB_STEP_SUMMARY").map(PathBuf::from),
        comment: false,
        github_deployments: false,
        commit_statuses: false,
        environment: None,
        workspace: nonempty("GITHUB_WORKSPACE").map(PathBuf::from),
        warnings: Vec::new(),
        secrets: SECRET_VARIABLES
            .iter()
            .filter_map(|n| env(n))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(crate::secret::Secret::new)
            .collect(),
    }
}

/// The log filter: `MONOSHIP_LOG` when set (e.g. `debug`); else monoship's own debug logs when
/// the job is re-run with debug logging (`RUNNER_DEBUG=1`), else warnings only.
pub fn log_filter(monoship_log: Option<&str>, runner_debug: Option<&str>) -> String {
    match (monoship_log.map(str::trim), runner_debug.map(str::trim)) {
        (Some(chosen), _) if !chosen.is_empty() => chosen.to_string(),
        (_, Some("1")) => "warn,monoship=debug".to_string(),
        _ => "warn".to_string(),
    }
}

/// The action's inputs: `INPUT_*` variables (names uppercased, hyphens kept: `INPUT_DRY-RUN`),
/// trimmed, empty ones unset.
struct Inputs<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Inputs<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.env)(&format!("INPUT_{}", name.to_uppercase().replace(' ', "_")))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// A boolean input, `default` when unset; only `true` and `false` (any case GitHub's
    /// YAML writes) are accepted.
    fn flag_or(&self, name: &str, default: bool) -> Result<bool, UsageError> {
        match self.get(name).as_deref() {
            None => Ok(default),
            Some("true") | Some("True") | Some("TRUE") => Ok(true),
            Some("false") | Some("False") | Some("FALSE") => Ok(false),
            Some(other) => Err(UsageError(format!(
                "input `{name}` must be `true` or `false`, not `{other}`"
            ))),
        }
    }

    fn flag(&self, name: &str) -> Result<bool, UsageError> {
        self.flag_or(name, false)
    }

    /// A positive whole number; `what` completes "must be a positive ...".
    fn positive<T: std::str::FromStr + PartialOrd + Default>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, UsageError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        match v.parse::<T>() {
            Ok(n) if n > T::default() => Ok(Some(n)),
            _ => Err(UsageError(format!(
                "input `{name}` must be a positive {what}, not `{v}`"
            ))),
        }
    }
}

/// The command when the `command` input is empty (SPEC §2): a pull request only plans (its
/// code is not reviewed yet, and a fork's has no secrets); every other event ships.
pub fn default_command(event_name: &str) -> Command {
    match event_name {
        "pull_request" | "pull_request_target" => Command::Plan,
        _ => Command::Ship,
    }
}

/// Reads the action's inputs into a request.
fn from_action_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Request, UsageError> {
    let input = Inputs { env };
    let command = match input.get("command").as_deref() {
        None => default_command(env("GITHUB_EVENT_NAME").unwrap_or_default().trim()),
        Some("plan") => Command::Plan,
        Some("build") => Command::Build,
        Some("ship") => Command::Ship,
        Some(other) => {
            return Err(UsageError(format!(
                "input `command` must be plan, build or ship, not `{other}`"
            )))
        }
    };
    let workspace = env("GITHUB_WORKSPACE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let workdir = match input.get("working-directory") {
        Some(dir) => workspace.join(dir),
        None => workspace,
    };
    let (deploy, warnings) = deploy_inputs(&input)?;
    Ok(Request {
        command,
        workdir,
        config: input
            .get("config")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".github/monoship.yml")),
        base: input.get("base"),
        head: input.get("head"),
        merge_base: input.flag("merge-base")?,
        services: input.get("services").map(|s| {
            s.split([',', '\n'])
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        }),
        format: Format::Text,
        color: false,
        dry_run: input.flag("dry-run")?,
        registry: input.get("registry"),
        registry_username: input.get("registry-username"),
        registry_password: input
            .get("registry-password")
            .or_else(|| env("MONOSHIP_REGISTRY_PASSWORD").filter(|p| !p.is_empty()))
            .map(crate::secret::Secret::new),
        max_parallel: input.positive("max-parallel", "number")?,
        rebuild: input.flag("rebuild")?,
        docker: docker_settings(env, true),
        builder: input.get("builder"),
        deploy,
        aws_env: EnvSnapshot::capture(&AWS_VARIABLES, env),
        aws: aws_inputs(&input),
        action: Some(ActionEnv {
            // Jobs of a matrix over `services` would all update one comment: off unless asked.
            comment: input.flag_or("comment", input.get("services").is_none())?,
            github_deployments: input.flag("github-deployments")?,
            commit_statuses: input.flag_or("commit-statuses", true)?,
            environment: input.get("environment"),
            warnings,
            ..action_env(env)
        }),
    })
}

/// The AWS inputs, named as aws-actions/configure-aws-credentials names them.
fn aws_inputs(input: &Inputs<'_>) -> crate::aws::AwsSettings {
    crate::aws::AwsSettings {
        region: input.get("aws-region"),
        role_to_assume: input.get("role-to-assume"),
        role_session_name: input.get("role-session-name"),
        audience: input.get("audience"),
    }
}

/// The deploy inputs, and a warning when the kubeconfig context comes from the old input name
/// `context` (which docker/build-push-action users read as the build context).
fn deploy_inputs(input: &Inputs<'_>) -> Result<(DeployOptions, Vec<String>), UsageError> {
    let mut warnings = Vec::new();
    let context = match (input.get("kube-context"), input.get("context")) {
        (Some(kube), Some(old)) if kube != old => {
            return Err(UsageError(format!(
                "inputs `kube-context` (`{kube}`) and `context` (`{old}`) disagree; set only \
                 `kube-context` (`context` is its deprecated name)"
            )))
        }
        (Some(kube), _) => Some(kube),
        (None, Some(old)) => {
            warnings.push(
                "input `context` is deprecated: rename it to `kube-context` (the kubeconfig \
                 context to deploy to)"
                    .to_string(),
            );
            Some(old)
        }
        (None, None) => None,
    };
    let options = DeployOptions {
        kubeconfig: input.get("kubeconfig").map(PathBuf::from),
        usual_kubeconfigs: usual_kubeconfigs(input.env),
        context,
        rollback: input.flag_or("rollback", true)?,
        force: input.flag("force")?,
        atomic: input.flag_or("atomic", true)?,
        timeout: std::time::Duration::from_secs(
            input
                .positive("timeout", "number of seconds")?
                .unwrap_or(600),
        ),
        interrupt_grace: input
            .positive("interrupt-grace", "number of seconds")?
            .map_or(
                crate::interrupt::DEFAULT_GRACE,
                std::time::Duration::from_secs,
            ),
    };
    Ok((options, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn inputs_are_trimmed_and_empty_ones_unset() {
        let env = inputs(&[("INPUT_BASE", "  main \n"), ("INPUT_HEAD", "   ")]);
        let input = Inputs { env: &env };
        assert_eq!(input.get("base").as_deref(), Some("main"));
        assert_eq!(input.get("head"), None);
    }

    #[test]
    fn booleans_take_yaml_spellings_and_refuse_the_rest() {
        let env = inputs(&[("INPUT_FORCE", "True"), ("INPUT_ATOMIC", "yes")]);
        let input = Inputs { env: &env };
        assert!(input.flag("force").unwrap());
        assert!(
            input.flag_or("rollback", true).unwrap(),
            "unset keeps the default"
        );
        assert_eq!(
            input.flag("atomic").unwrap_err().to_string(),
            "input `atomic` must be `true` or `false`, not `yes`"
        );
    }

    #[test]
    fn numbers_must_be_positive() {
        let env = inputs(&[("INPUT_TIMEOUT", "0"), ("INPUT_MAX-PARALLEL", "4")]);
        let input = Inputs { env: &env };
        assert_eq!(
            input.positive::<usize>("max-parallel", "number").unwrap(),
            Some(4)
        );
        assert_eq!(
            input
                .positive::<u64>("timeout", "number of seconds")
                .unwrap_err()
                .to_string(),
            "input `timeout` must be a positive number of seconds, not `0`"
        );
        assert_eq!(input.positive::<u64>("missing", "number").unwrap(), None);
    }

    #[test]
    fn without_a_command_input_pull_requests_plan_and_other_events_ship() {
        for (event, want) in [
            ("pull_request", Command::Plan),
            ("pull_request_target", Command::Plan),
            ("push", Command::Ship),
            ("merge_group", Command::Ship),
            ("workflow_dispatch", Command::Ship),
            ("schedule", Command::Ship),
        ] {
            let vars = [("GITHUB_EVENT_NAME", event), ("INPUT_COMMAND", " ")];
            let env = move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            };
            assert_eq!(from_action_env(&env).unwrap().command, want, "{event}");
        }
        let env = inputs(&[
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("INPUT_COMMAND", "build"),
        ]);
        assert_eq!(
            from_action_env(&env).unwrap().command,
            Command::Build,
            "an explicit command wins"
        );
    }

    #[test]
    fn kube_context_is_the_input_and_context_still_works_with_a_warning() {
        let env = inputs(&[("INPUT_KUBE-CONTEXT", "prod")]);
        let req = from_action_env(&env).unwrap();
        assert_eq!(req.deploy.context.as_deref(), Some("prod"));
        assert!(req.action.unwrap().warnings.is_empty());
        let env = inputs(&[("INPUT_CONTEXT", "staging")]);
        let req = from_action_env(&env).unwrap();
        assert_eq!(req.deploy.context.as_deref(), Some("staging"));
        let warnings = req.action.unwrap().warnings;
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("rename it to `kube-context`"),
            "{warnings:?}"
        );
        let env = inputs(&[("INPUT_CONTEXT", "a"), ("INPUT_KUBE-CONTEXT", "b")]);
        let err = from_action_env(&env).unwrap_err().to_string();
        assert!(err.contains("disagree"), "{err}");
    }

    #[test]
    fn aws_inputs_are_read_under_configure_aws_credentials_names() {
        let env = inputs(&[
            ("INPUT_AWS-REGION", "eu-central-1"),
            (
                "INPUT_ROLE-TO-ASSUME",
                "arn:aws:iam::123456789012:role/deploy",
            ),
            ("INPUT_ROLE-SESSION-NAME", "ci-42"),
            ("INPUT_AUDIENCE", "sts.example"),
        ]);
        let aws = from_action_env(&env).unwrap().aws;
        assert_eq!(aws.region.as_deref(), Some("eu-central-1"));
        assert_eq!(
            aws.role_to_assume.as_deref(),
            Some("arn:aws:iam::123456789012:role/deploy")
        );
        assert_eq!(aws.role_session_name.as_deref(), Some("ci-42"));
        assert_eq!(aws.audience.as_deref(), Some("sts.example"));
    }

    #[test]
    fn runner_debug_turns_on_monoships_debug_logs_unless_monoship_log_chooses() {
        assert_eq!(log_filter(None, None), "warn");
        assert_eq!(log_filter(None, Some("0")), "warn");
        assert_eq!(log_filter(None, Some("1")), "warn,monoship=debug");
        assert_eq!(log_filter(Some("trace"), Some("1")), "trace");
        assert_eq!(log_filter(Some(" "), Some("1")), "warn,monoship=debug");
    }

    #[test]
    fn the_action_ships_by_default_and_a_matrix_over_services_does_not_comment() {
        let env = inputs(&[("GITHUB_WORKSPACE", "/w"), ("INPUT_SERVICES", "a,\nb")]);
        let req = from_action_env(&env).unwrap();
        assert_eq!(req.command, Command::Ship);
        assert_eq!(
            req.services.as_deref(),
            Some(&["a".to_string(), "b".to_string()][..])
        );
        assert!(!req.action.as_ref().unwrap().comment);
        assert!(req.deploy.rollback && req.deploy.atomic);
        assert_eq!(req.deploy.timeout, std::time::Duration::from_secs(600));
        assert_eq!(
            req.deploy.interrupt_grace,
            std::time::Duration::from_secs(20)
        );
    }

    #[test]
    fn commit_statuses_are_on_in_the_action_and_asked_for_on_the_cli() {
        let statuses = |pairs: &'static [(&'static str, &'static str)]| {
            from_action_env(&inputs(pairs)).map(|r| r.action.unwrap().commit_statuses)
        };
        assert!(statuses(&[("INPUT_SERVICES", "a")]).unwrap());
        assert!(!statuses(&[("INPUT_COMMIT-STATUSES", "false")]).unwrap());
        let bad = statuses(&[("INPUT_COMMIT-STATUSES", "yes")]).unwrap_err();
        assert!(bad.to_string().contains("commit-statuses"), "{bad}");

        let cli = |args: &[&str]| {
            let env = inputs(&[("GITHUB_ACTIONS", "true")]);
            let argv = args.iter().map(std::ffi::OsString::from).collect();
            match parse(argv, &env).unwrap() {
                Invocation::Run(r) => r.action.unwrap().commit_statuses,
                _ => panic!("not a run"),
            }
        };
        assert!(!cli(&["monoship", "plan"]));
        assert!(cli(&["monoship", "plan", "--commit-statuses"]));
    }

    #[test]
    fn the_interrupt_grace_comes_from_its_input() {
        let env = inputs(&[("GITHUB_WORKSPACE", "/w"), ("INPUT_INTERRUPT-GRACE", "5")]);
        let req = from_action_env(&env).unwrap();
        assert_eq!(
            req.deploy.interrupt_grace,
            std::time::Duration::from_secs(5)
        );
    }
}
