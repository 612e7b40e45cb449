//! One run, resolved: flags or action inputs, the event payload and the config become typed
//! settings once, at the start. Stages read these values; none reads the environment, the
//! event file or the raw request again, so precedence (flag over config over default) is
//! decided here and nowhere else.

use std::path::{Component, Path, PathBuf};

use crate::aws::AwsSettings;
use crate::cli::{ActionEnv, Command, DeployOptions, EnvSnapshot, Format, Request};
use crate::config::{Config, EcrConfig, EksClusterConfig};
use crate::detect::event;
use crate::detect::range::Range;
use crate::image::docker_config::builder_name;
use crate::report::publish::{self, ENVIRONMENT_NAME_LIMIT};
use crate::secret::Secret;

/// Default number of images built at once.
pub const DEFAULT_MAX_PARALLEL: usize = 2;

/// Everything a run needs to know before it starts.
#[derive(Debug)]
pub struct RunContext {
    pub command: Command,
    /// The folder the run works in (`-C`, input `working-directory`).
    pub workdir: PathBuf,
    /// The config file as given (relative to `workdir` unless absolute).
    pub config_arg: PathBuf,
    /// The config file's path.
    pub config_path: PathBuf,
    pub config: Config,
    pub scope: Range,
    pub format: Format,
    /// Whether text on stdout gets ANSI colours.
    pub color: bool,
    pub dry_run: bool,
    pub registry: RegistryChoice,
    pub build: BuildOptions,
    pub cluster: ClusterChoice,
    pub deploy: DeployOptions,
    /// The pull request of a `pull_request*` event, for the `pr-<n>` tag and the comment.
    pub pull_request: Option<u64>,
    /// Set in GitHub Actions.
    pub action: Option<ActionRun>,
    pub aws_env: EnvSnapshot,
    /// The role session name and OIDC audience of AWS sessions (inputs `role-session-name`,
    /// `audience`); region and role are resolved into `registry` and `cluster`.
    pub aws_session: AwsSettings,
}

/// Where images go.
#[derive(Debug, Clone)]
pub enum RegistryChoice {
    /// AWS ECR, from the config (no `--registry` given).
    Ecr(EcrConfig),
    /// An OCI registry by address; the password comes from the environment, never the config.
    Url {
        url: String,
        username: Option<String>,
        password: Option<Secret>,
    },
    /// Neither the config nor the command line names one.
    Missing,
}

/// How images are built.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Images built at once: `--max-parallel`, else `build.max_parallel`, else 2.
    pub max_parallel: usize,
    /// Build and push even when the content tag exists.
    pub rebuild: bool,
    /// The Docker daemon and CLI.
    pub docker: crate::cli::DockerSettings,
    /// Write and read a registry layer cache (`build.registry_cache`).
    pub registry_cache: bool,
    /// The buildx builder of every image: input `builder` (`--builder`), else `build.builder`,
    /// else `BUILDX_BUILDER`.
    pub builder: Option<String>,
}

/// The cluster `ship` deploys to.
#[derive(Debug, Clone)]
pub enum ClusterChoice {
    /// An EKS cluster by name, from the config (no `--kubeconfig` given).
    Eks(EksClusterConfig),
    /// A kubeconfig: the given file, else `KUBECONFIG`, `~/.kube/config` or in-cluster.
    Kubeconfig {
        path: Option<PathBuf>,
        context: Option<String>,
    },
}

/// A run inside GitHub Actions: where to report, and to which repository.
#[derive(Debug, Clone)]
pub struct ActionRun {
    pub event_name: String,
    pub repository: Option<String>,
    pub api_url: String,
    pub token: Option<Secret>,
    pub output: Option<PathBuf>,
    pub summary: Option<PathBuf>,
    /// `SERVER/OWNER/REPO`, the image's source label.
    pub source_url: Option<String>,
    /// The link to this workflow run.
    pub run_url: Option<String>,
    pub comment: bool,
    pub github_deployments: bool,
    /// One `monoship/<service>` commit status per service of the job.
    pub commit_statuses: bool,
    /// The environment of the Deployments and the `ship` comment.
    pub environment: String,
    /// The run's folder relative to `$GITHUB_WORKSPACE` (empty when it is the workspace):
    /// annotations name files from the workspace root, or the runner cannot place them when
    /// the repository is checked out into a subfolder.
    pub workspace_dir: PathBuf,
}

impl ActionRun {
    /// `path` (relative to the run's folder, or absolute) as annotations name it.
    pub fn annotation_path(&self, path: &Path) -> String {
        self.workspace_dir.join(path).display().to_string()
    }
}

impl RunContext {
    /// Whether this run reports to GitHub Actions (outputs, summary, workflow commands).
    pub fn in_action(&self) -> bool {
        self.action.is_some()
    }

    /// Secrets to scrub from text sent to GitHub: the token and the registry password.
    pub fn sent_secrets(&self) -> Vec<&str> {
        let token = self
            .action
            .as_ref()
            .and_then(|a| a.token.as_ref())
            .map(Secret::expose);
        let password = match &self.registry {
            RegistryChoice::Url {
                password: Some(p), ..
            } => Some(p.expose()),
            _ => None,
        };
        [token, password].into_iter().flatten().collect()
    }
}

/// Why a request cannot become a run.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("--services names unknown services: {unknown}; known: {known}")]
    UnknownServices { unknown: String, known: String },
    #[error("GITHUB_EVENT_PATH is not set; it must name the event's JSON file")]
    NoEventPath,
    #[error(
        "cannot read the event payload `{path}`; GITHUB_EVENT_PATH must name the event's JSON file"
    )]
    EventFile {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Event(#[from] event::EventError),
    #[error("builder `{name}` is not a buildx builder name (a letter, then letters, digits, `.`, `_` or `-`); set the input `builder` (or `build.builder`, BUILDX_BUILDER) to the `name` output of docker/setup-buildx-action")]
    BuilderName { name: String },
    #[error("the environment name is {length} characters long; GitHub allows at most {ENVIRONMENT_NAME_LIMIT}: shorten the `environment` input")]
    EnvironmentName { length: usize },
}

/// The event payload, read at most once; `None` outside Actions or without an event name.
pub type EventPayload = Option<Result<serde_json::Value, ContextError>>;

/// Reads the event payload a request points at, if any.
pub fn read_event(req: &Request) -> EventPayload {
    let a = req.action.as_ref().filter(|a| !a.event_name.is_empty())?;
    let Some(path) = a.event_path.as_ref() else {
        return Some(Err(ContextError::NoEventPath));
    };
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| ContextError::EventFile {
        path: path.display().to_string(),
        source,
    };
    Some(
        std::fs::read_to_string(path)
            .map_err(|e| failed(Box::new(e)))
            .and_then(|text| serde_json::from_str(&text).map_err(|e| failed(Box::new(e)))),
    )
}

/// Resolves a request against its config and event payload. Pure.
///
/// # Errors
/// Unknown `--services`, or an event payload the range depends on that cannot be used.
pub fn resolve(
    req: &Request,
    config: Config,
    event: EventPayload,
) -> Result<RunContext, ContextError> {
    let pull_request = pull_request_number(req, &event);
    let scope = scope(req, &config, event)?;
    let registry = match registry_choice(req, &config) {
        RegistryChoice::Ecr(ecr) => RegistryChoice::Ecr(EcrConfig {
            region: req.aws.region.clone().or(ecr.region),
            role_to_assume: req.aws.role_to_assume.clone().or(ecr.role_to_assume),
            ..ecr
        }),
        other => other,
    };
    let cluster = match (&req.deploy.kubeconfig, config.cluster.as_ref()) {
        (None, Some(c)) if c.eks.is_some() => {
            let eks = c.eks.clone().expect("checked");
            ClusterChoice::Eks(EksClusterConfig {
                region: req.aws.region.clone().or(eks.region),
                role_to_assume: req.aws.role_to_assume.clone().or(eks.role_to_assume),
                ..eks
            })
        }
        _ => ClusterChoice::Kubeconfig {
            path: req.deploy.kubeconfig.clone(),
            context: req.deploy.context.clone(),
        },
    };
    let build = BuildOptions {
        max_parallel: req
            .max_parallel
            .or(config.build.max_parallel)
            .unwrap_or(DEFAULT_MAX_PARALLEL),
        rebuild: req.rebuild,
        docker: req.docker.clone(),
        registry_cache: config.build.registry_cache,
        builder: req
            .builder
            .clone()
            .or_else(|| config.build.builder.clone())
            .or_else(|| req.docker.builder_env.clone())
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty()),
    };
    if let Some(name) = build.builder.as_deref().filter(|b| !builder_name(b)) {
        return Err(ContextError::BuilderName {
            name: crate::report::commands::one_line(name),
        });
    }
    let action = match &req.action {
        // Only GitHub sees the environment: outside Actions a long context is no problem.
        Some(a) => {
            let environment = environment(req, &cluster);
            let length = environment.chars().count();
            if length > ENVIRONMENT_NAME_LIMIT {
                return Err(ContextError::EnvironmentName { length });
            }
            Some(action_run(a, environment, &req.workdir))
        }
        None => None,
    };
    Ok(RunContext {
        command: req.command,
        workdir: req.workdir.clone(),
        config_arg: req.config.clone(),
        config_path: req.workdir.join(&req.config),
        config,
        scope,
        format: req.format,
        color: req.color,
        dry_run: req.dry_run,
        registry,
        build,
        cluster,
        deploy: req.deploy.clone(),
        pull_request,
        action,
        aws_env: req.aws_env.clone(),
        aws_session: AwsSettings {
            role_session_name: req.aws.role_session_name.clone(),
            audience: req.aws.audience.clone(),
            ..AwsSettings::default()
        },
    })
}

fn scope(req: &Request, config: &Config, event: EventPayload) -> Result<Range, ContextError> {
    let action = req.action.as_ref();
    let head = req
        .head
        .clone()
        .or_else(|| action.and_then(|a| a.sha.clone()))
        .unwrap_or_else(|| "HEAD".into());
    if let Some(chosen) = &req.services {
        return Ok(Range::Services {
            names: expand_services(config, chosen)?,
            head,
        });
    }
    if let Some(base) = &req.base {
        return Ok(Range::Commits {
            base: base.clone(),
            head,
            merge_base: req.merge_base,
        });
    }
    match (action, event) {
        (Some(a), Some(payload)) if req.head.is_none() => Ok(Range::Event {
            range: event::range_for_event(&a.event_name, &payload?, a.sha.as_deref())?,
            head,
        }),
        _ => Ok(Range::SinceDefaultBranch { head }),
    }
}

/// `--services`, with `all` expanded, sorted and without repeats.
fn expand_services(config: &Config, chosen: &[String]) -> Result<Vec<String>, ContextError> {
    if chosen.iter().any(|c| c == "all") {
        return Ok(config.services.keys().cloned().collect());
    }
    let unknown: Vec<&str> = chosen
        .iter()
        .filter(|c| !config.services.contains_key(*c))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(ContextError::UnknownServices {
            unknown: unknown.join(", "),
            known: config
                .services
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut v = chosen.to_vec();
    v.sort();
    v.dedup();
    Ok(v)
}

/// The pull request of a `pull_request*` event; an unreadable payload has none (the range
/// reports it when the range depends on it).
fn pull_request_number(req: &Request, event: &EventPayload) -> Option<u64> {
    let a = req.action.as_ref()?;
    if !a.event_name.starts_with("pull_request") {
        return None;
    }
    let payload = event.as_ref()?.as_ref().ok()?;
    event::range_for_event(&a.event_name, payload, a.sha.as_deref())
        .ok()?
        .pull_request
        .map(|p| p.number)
}

/// `--registry` wins over the config's registry; the config's `ecr` applies only without it.
fn registry_choice(req: &Request, config: &Config) -> RegistryChoice {
    let configured = config.registry.as_ref();
    if req.registry.is_none() {
        if let Some(ecr) = configured.and_then(|r| r.ecr.clone()) {
            return RegistryChoice::Ecr(ecr);
        }
    }
    let url = req
        .registry
        .clone()
        .or_else(|| configured.and_then(|r| r.url.clone()));
    match url {
        Some(url) => RegistryChoice::Url {
            url,
            username: req
                .registry_username
                .clone()
                .or_else(|| configured.and_then(|r| r.username.clone())),
            password: req.registry_password.clone(),
        },
        None => RegistryChoice::Missing,
    }
}

/// The environment of this `ship`: input, else context, else EKS cluster (when no kubeconfig
/// overrides it), else `production`.
fn environment(req: &Request, cluster: &ClusterChoice) -> String {
    let eks = match cluster {
        ClusterChoice::Eks(e) => Some(e.name.as_str()),
        ClusterChoice::Kubeconfig { .. } => None,
    };
    publish::environment_name(
        req.action.as_ref().and_then(|a| a.environment.as_deref()),
        req.deploy.context.as_deref(),
        eks,
    )
}

/// `workdir` relative to the workspace, by their names alone; empty when it is not inside.
fn workspace_dir(workspace: Option<&Path>, workdir: &Path) -> PathBuf {
    let plain = |p: &Path| -> PathBuf {
        p.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect()
    };
    match workspace {
        Some(ws) => plain(workdir)
            .strip_prefix(plain(ws))
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        None if workdir.is_relative() => plain(workdir),
        None => PathBuf::new(),
    }
}

fn action_run(a: &ActionEnv, environment: String, workdir: &Path) -> ActionRun {
    ActionRun {
        workspace_dir: workspace_dir(a.workspace.as_deref(), workdir),
        event_name: a.event_name.clone(),
        repository: a.repository.clone(),
        api_url: a.api_url.clone(),
        token: a.token.clone().map(Secret::new),
        output: a.output.clone(),
        summary: a.summary.clone(),
        source_url: a
            .repository
            .as_ref()
            .map(|r| format!("{}/{r}", a.server_url)),
        run_url: match (&a.repository, &a.run_id) {
            (Some(r), Some(id)) => Some(format!("{}/{r}/actions/runs/{id}", a.server_url)),
            _ => None,
        },
        comment: a.comment,
        github_deployments: a.github_deployments,
        commit_statuses: a.commit_statuses,
        environment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{self, Invocation};

    fn request(args: &[&str], vars: &[(&str, &str)]) -> Request {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let args = std::iter::once("monoship")
            .chain(args.iter().copied())
            .map(std::ffi::OsString::from)
            .collect();
        match cli::parse(args, &env).unwrap() {
            Invocation::Run(r) => *r,
            Invocation::PrintSchema => panic!("not a run"),
        }
    }

    fn config(yaml: &str) -> Config {
        crate::config::parse(yaml, "m.yml").unwrap()
    }

    const THREE: &str = "services:\n  b: {paths: [b/**]}\n  a: {paths: [a/**]}\n  c: {paths: [c/**]}\nregistry:\n  url: registry.example/acme\n  username: ci\n";

    #[test]
    fn the_builder_is_the_input_else_the_config_else_buildx_builder() {
        let with_builder = format!("{THREE}build:\n  builder: from-config\n");
        let builder = |args: &[&str], vars: &[(&str, &str)], yaml: &str| {
            resolve(&request(args, vars), config(yaml), None).map(|c| c.build.builder)
        };
        let env = [("BUILDX_BUILDER", "from-env")];
        let flag = ["build", "--services", "a", "--builder", "from-flag"];
        let plain = ["build", "--services", "a"];
        assert_eq!(
            builder(&flag, &env, &with_builder).unwrap().as_deref(),
            Some("from-flag")
        );
        assert_eq!(
            builder(&plain, &env, &with_builder).unwrap().as_deref(),
            Some("from-config")
        );
        assert_eq!(
            builder(&plain, &env, THREE).unwrap().as_deref(),
            Some("from-env")
        );
        assert_eq!(
            builder(&plain, &[("BUILDX_BUILDER", " ")], THREE).unwrap(),
            None
        );
        let action = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_WORKSPACE", "/w"),
            ("INPUT_COMMAND", "build"),
            ("INPUT_BUILDER", "from-input"),
            ("BUILDX_BUILDER", "from-env"),
        ];
        assert_eq!(
            builder(&[], &action, &with_builder).unwrap().as_deref(),
            Some("from-input")
        );
        for bad in ["_rm", "a b", "x;y", "0abc"] {
            let flag = ["build", "--services", "a", "--builder", bad];
            let e = builder(&flag, &[], THREE).unwrap_err().to_string();
            assert!(e.contains("is not a buildx builder name"), "{bad}: {e}");
        }
    }

    #[test]
    fn services_are_expanded_sorted_and_checked() {
        let ctx = resolve(
            &request(&["plan", "--services", "c,a,c"], &[]),
            config(THREE),
            None,
        )
        .unwrap();
        assert_eq!(
            ctx.scope,
            Range::Services {
                names: vec!["a".into(), "c".into()],
                head: "HEAD".into()
            }
        );
        let all = resolve(
            &request(&["plan", "--services", "all"], &[]),
            config(THREE),
            None,
        );
        assert!(matches!(all.unwrap().scope, Range::Services { names, .. } if names.len() == 3));
        let err = resolve(
            &request(&["plan", "--services", "a,zz"], &[]),
            config(THREE),
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--services names unknown services: zz; known: a, b, c"
        );
    }

    #[test]
    fn a_base_is_a_fixed_range_and_no_base_compares_with_the_default_branch() {
        let ctx = resolve(
            &request(&["plan", "--base", "v1", "--merge-base"], &[]),
            config(THREE),
            None,
        )
        .unwrap();
        assert_eq!(
            ctx.scope,
            Range::Commits {
                base: "v1".into(),
                head: "HEAD".into(),
                merge_base: true
            }
        );
        let ctx = resolve(&request(&["plan", "--head", "x"], &[]), config(THREE), None).unwrap();
        assert_eq!(ctx.scope, Range::SinceDefaultBranch { head: "x".into() });
    }

    #[test]
    fn the_registry_flag_wins_over_the_config_and_its_ecr() {
        let with_ecr = THREE.replace(
            "  url: registry.example/acme\n  username: ci\n",
            "  ecr: {region: eu-west-1}\n",
        );
        let ctx = resolve(&request(&["build"], &[]), config(&with_ecr), None).unwrap();
        assert!(matches!(ctx.registry, RegistryChoice::Ecr(_)));
        let req = request(
            &["build", "--registry", "localhost:5000/x"],
            &[("MONOSHIP_REGISTRY_PASSWORD", "pw")],
        );
        let ctx = resolve(&req, config(&with_ecr), None).unwrap();
        match ctx.registry {
            RegistryChoice::Url {
                url,
                username,
                password,
            } => {
                assert_eq!(url, "localhost:5000/x");
                assert_eq!(username, None);
                assert_eq!(password.unwrap().expose(), "pw");
            }
            other => panic!("{other:?}"),
        }
        // The config's user still applies to a registry given on the command line.
        let ctx = resolve(
            &request(&["build", "--registry", "h:1"], &[]),
            config(THREE),
            None,
        );
        assert!(
            matches!(ctx.unwrap().registry, RegistryChoice::Url { username: Some(u), .. } if u == "ci")
        );
        let none = resolve(
            &request(&["build"], &[]),
            config("services:\n  a: {paths: [a/**]}\n"),
            None,
        )
        .unwrap();
        assert!(matches!(none.registry, RegistryChoice::Missing));
    }

    #[test]
    fn max_parallel_comes_from_the_flag_then_the_config_then_the_default() {
        let with_build = format!("{THREE}build:\n  max_parallel: 5\n");
        let flag = request(&["build", "--max-parallel", "3"], &[]);
        assert_eq!(
            resolve(&flag, config(&with_build), None)
                .unwrap()
                .build
                .max_parallel,
            3
        );
        let plain = request(&["build"], &[]);
        assert_eq!(
            resolve(&plain, config(&with_build), None)
                .unwrap()
                .build
                .max_parallel,
            5
        );
        assert_eq!(
            resolve(&plain, config(THREE), None)
                .unwrap()
                .build
                .max_parallel,
            DEFAULT_MAX_PARALLEL
        );
    }

    #[test]
    fn a_kubeconfig_overrides_the_eks_cluster_and_names_the_environment() {
        let eks = format!("{THREE}cluster:\n  eks: {{name: prod-eu}}\n");
        let action = [("GITHUB_ACTIONS", "true"), ("GITHUB_REPOSITORY", "o/r")];
        let ctx = resolve(&request(&["ship"], &action), config(&eks), None).unwrap();
        assert!(matches!(&ctx.cluster, ClusterChoice::Eks(e) if e.name == "prod-eu"));
        assert_eq!(ctx.action.unwrap().environment, "prod-eu");
        let req = request(
            &["ship", "--kubeconfig", "k.yml", "--context", "staging"],
            &action,
        );
        let ctx = resolve(&req, config(&eks), None).unwrap();
        assert!(
            matches!(&ctx.cluster, ClusterChoice::Kubeconfig { path: Some(_), context: Some(c) } if c == "staging")
        );
        assert_eq!(ctx.action.unwrap().environment, "staging");
    }

    #[test]
    fn the_event_gives_the_range_and_the_pull_request_once() {
        let payload = serde_json::json!({
            "number": 7,
            "pull_request": {
                "number": 7,
                "changed_files": 2,
                "base": {"sha": "a".repeat(40)},
                "head": {"sha": "b".repeat(40)}
            }
        });
        let vars = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_EVENT_PATH", "/nonexistent"),
        ];
        let req = request(&[], &vars);
        let ctx = resolve(&req, config(THREE), Some(Ok(payload))).unwrap();
        assert_eq!(ctx.pull_request, Some(7));
        assert!(
            matches!(ctx.scope, Range::Event { range: ref e, .. } if e.pull_request.as_ref().is_some_and(|p| p.number == 7))
        );
        // The payload matters only when the range comes from it.
        let unreadable = || Some(Err(ContextError::NoEventPath));
        assert!(resolve(&req, config(THREE), unreadable()).is_err());
        let forced = request(&[], &[vars[0], vars[1], vars[2], ("INPUT_SERVICES", "a")]);
        let ctx = resolve(&forced, config(THREE), unreadable()).unwrap();
        assert_eq!(ctx.pull_request, None);
    }

    #[test]
    fn the_run_url_and_source_label_come_from_the_server_and_repository() {
        let vars = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "acme/shop"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_SERVER_URL", "https://ghe.example"),
        ];
        let ctx = resolve(&request(&["plan"], &vars), config(THREE), None).unwrap();
        let a = ctx.action.unwrap();
        assert_eq!(
            a.source_url.as_deref(),
            Some("https://ghe.example/acme/shop")
        );
        assert_eq!(
            a.run_url.as_deref(),
            Some("https://ghe.example/acme/shop/actions/runs/42")
        );
        assert_eq!(a.environment, "production");
    }

    #[test]
    fn an_environment_name_longer_than_githubs_limit_is_refused() {
        let long = "e".repeat(256);
        let vars = [("GITHUB_ACTIONS", "true")];
        let req = request(&["ship", "--environment", &long], &vars);
        let err = resolve(&req, config(THREE), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the environment name is 256 characters"),
            "{err}"
        );
        let fits = request(&["ship", "--environment", &long[..255]], &vars);
        assert!(resolve(&fits, config(THREE), None).is_ok());
    }

    #[test]
    fn aws_inputs_override_the_region_and_role_of_ecr_and_eks() {
        let aws = format!(
            "{}cluster:\n  eks: {{name: prod, region: eu-west-1, role_to_assume: arn:config}}\n",
            THREE.replace(
                "  url: registry.example/acme\n  username: ci\n",
                "  ecr: {region: eu-west-1, role_to_assume: arn:config, prefix: shop}\n"
            )
        );
        let plain = resolve(&request(&["ship"], &[]), config(&aws), None).unwrap();
        assert!(
            matches!(&plain.registry, RegistryChoice::Ecr(e) if e.region.as_deref() == Some("eu-west-1") && e.role_to_assume.as_deref() == Some("arn:config"))
        );
        let vars = [
            ("GITHUB_ACTIONS", "true"),
            ("INPUT_AWS-REGION", "us-east-2"),
            ("INPUT_ROLE-TO-ASSUME", "arn:input"),
            ("INPUT_ROLE-SESSION-NAME", "run-7"),
            ("INPUT_AUDIENCE", "sts.example"),
        ];
        let ctx = resolve(&request(&[], &vars), config(&aws), None).unwrap();
        match (&ctx.registry, &ctx.cluster) {
            (RegistryChoice::Ecr(ecr), ClusterChoice::Eks(eks)) => {
                for (region, role) in [
                    (&ecr.region, &ecr.role_to_assume),
                    (&eks.region, &eks.role_to_assume),
                ] {
                    assert_eq!(region.as_deref(), Some("us-east-2"));
                    assert_eq!(role.as_deref(), Some("arn:input"));
                }
                assert_eq!(ecr.prefix.as_deref(), Some("shop"), "the rest stays");
                assert_eq!(eks.name, "prod");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ctx.aws_session.role_session_name.as_deref(), Some("run-7"));
        assert_eq!(ctx.aws_session.audience.as_deref(), Some("sts.example"));
        // Only the inputs given win.
        let region_only = [
            ("GITHUB_ACTIONS", "true"),
            ("INPUT_AWS-REGION", "us-east-2"),
        ];
        let ctx = resolve(&request(&[], &region_only), config(&aws), None).unwrap();
        assert!(
            matches!(&ctx.cluster, ClusterChoice::Eks(e) if e.region.as_deref() == Some("us-east-2") && e.role_to_assume.as_deref() == Some("arn:config"))
        );
    }

    #[test]
    fn annotations_name_files_from_the_workspace_root() {
        let vars = |dir: &'static str| {
            [
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_WORKSPACE", "/github/workspace"),
                ("INPUT_WORKING-DIRECTORY", dir),
            ]
        };
        let ctx = resolve(&request(&[], &vars("./shop/")), config(THREE), None).unwrap();
        let action = ctx.action.unwrap();
        assert_eq!(
            action.annotation_path(Path::new("src/cart/Dockerfile")),
            "shop/src/cart/Dockerfile"
        );
        let ctx = resolve(&request(&[], &vars("")), config(THREE), None).unwrap();
        assert_eq!(
            ctx.action
                .unwrap()
                .annotation_path(Path::new(".github/monoship.yml")),
            ".github/monoship.yml"
        );
        assert_eq!(
            workspace_dir(Some(Path::new("/w")), Path::new("/elsewhere")),
            PathBuf::new()
        );
        assert_eq!(
            workspace_dir(None, Path::new("./a/b")),
            PathBuf::from("a/b")
        );
    }

    #[test]
    fn request_debug_never_shows_credentials() {
        let vars = [
            ("GITHUB_ACTIONS", "true"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-key"),
            ("INPUT_TOKEN", "ghs_secrettoken"),
        ];
        let ctx = resolve(&request(&["plan"], &vars), config(THREE), None).unwrap();
        let shown = format!("{ctx:?}");
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(!shown.contains("ghs_secrettoken"), "{shown}");
        assert!(shown.contains("AWS_SECRET_ACCESS_KEY"));
    }
}
