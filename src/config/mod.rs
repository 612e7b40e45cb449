//! The config file (`.github/monoship.yml` by default): services, groups and where they ship.
//!
//! Loading is strict: unknown keys, unknown dependencies, dependency cycles, bad globs and
//! bad names are errors naming the file, the line and the key, so a typo can never silently
//! turn a rebuild off. The JSON Schema in `schema/monoship.schema.json` is generated from
//! these types (`monoship schema`) and kept in sync by a test.

mod validate;

pub use validate::ACTION_OUTPUTS;
pub mod workload;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::plan::glob;
pub use workload::{WorkloadKind, WorkloadRef, WorkloadRefError};

/// A whole config file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "monoship config")]
pub struct Config {
    /// Services: each is something that can change, and optionally be built and deployed.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// Groups: named path sets with no image (shared code, protos). A service that
    /// `depends_on` a group changes when the group does.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
    /// Where `build` pushes images. `--registry` (input `registry`) overrides it.
    pub registry: Option<RegistryConfig>,
    /// How images are built.
    #[serde(default)]
    pub build: BuildConfig,
    /// The cluster `ship` deploys to when no kubeconfig is given.
    pub cluster: Option<ClusterConfig>,
}

/// The cluster to deploy to. `--kubeconfig` (input `kubeconfig`) takes precedence.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// An EKS cluster: endpoint and CA from `DescribeCluster`, a token minted from the AWS
    /// credentials (and re-minted before its 15 minutes run out).
    pub eks: Option<EksClusterConfig>,
}

/// An EKS cluster by name.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EksClusterConfig {
    /// The cluster's name.
    pub name: String,
    /// AWS region. Default: `AWS_REGION`, then `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// IAM role to assume with the GitHub OIDC token (needs `permissions: id-token: write`).
    pub role_to_assume: Option<String>,
    /// API server URL to use instead of the one EKS names (a proxy, or a simulator in tests).
    pub endpoint: Option<String>,
}

/// Where images go: an OCI registry (`url`, GHCR, Docker Hub, a private one) or AWS ECR
/// (`ecr`). Exactly one of the two.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `HOST[:PORT][/PREFIX]`, e.g. `ghcr.io/acme`. Loopback registries use plain HTTP, as
    /// Docker does; `http://` forces it elsewhere.
    pub url: Option<String>,
    /// User to log in as. The password never goes in the config: it comes from the
    /// `MONOSHIP_REGISTRY_PASSWORD` environment variable (input `registry-password`).
    pub username: Option<String>,
    /// AWS ECR: the login comes from `GetAuthorizationToken` with the AWS credentials.
    pub ecr: Option<EcrConfig>,
    /// Repository folder of the images that pull-request runs push (default `pr`: `cart` of
    /// a pull request goes to `<registry>/pr/cart`), so a protected-branch run never reuses
    /// an image a pull request built.
    pub pull_request_prefix: Option<String>,
}

/// AWS ECR settings. Credentials come from the default chain (environment, web identity,
/// profiles), or from `role_to_assume` exchanged with the GitHub OIDC token inside the action
/// (the job needs `permissions: id-token: write`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EcrConfig {
    /// AWS region. Default: `AWS_REGION`, then `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// Account id of the registry, for cross-account pushes. Default: the caller's account.
    pub registry_id: Option<String>,
    /// IAM role to assume with the GitHub OIDC token.
    pub role_to_assume: Option<String>,
    /// Repository prefix inside the registry, e.g. `shop` for `shop/cart`.
    pub prefix: Option<String>,
    /// Create missing repositories. Default: false (a missing repository is an error).
    #[serde(default)]
    pub create_repositories: bool,
    /// Created repositories scan images on push. Default: true.
    pub scan_on_push: Option<bool>,
    /// Created repositories have immutable tags except `pr-*` and `buildcache`, the two tags
    /// monoship moves (IMMUTABLE_WITH_EXCLUSION). Default: true.
    pub immutable_tags: Option<bool>,
    /// Registry host to push to instead of the one ECR names (a proxy, or a local registry
    /// in tests).
    pub endpoint: Option<String>,
}

/// Build settings.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    /// Images built at once. Default: 2. `--max-parallel` (input `max-parallel`) overrides it.
    pub max_parallel: Option<usize>,
    /// Keep BuildKit's layer cache in the registry next to each image (tag `buildcache`),
    /// written for ECR with `image-manifest=true,oci-mediatypes=true`. Needs the buildx plugin;
    /// the legacy builder cannot export a cache and ignores this. Default: false.
    #[serde(default)]
    pub registry_cache: bool,
    /// The buildx builder that builds every image (`docker buildx build --builder NAME --push`),
    /// e.g. the one docker/setup-buildx-action made; it must be visible in the runner's Docker
    /// config. The input `builder` (`--builder`) wins over it, and it over BUILDX_BUILDER, then
    /// buildx's current builder in that config.
    pub builder: Option<String>,
}

/// One service.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Path of the Dockerfile from the repository root. Without it the service is planned (and
    /// deployable from manifests) but never built. Every file its `COPY`/`ADD` instructions read
    /// from the context is an input of the service.
    pub dockerfile: Option<String>,
    /// Build context, from the repository root. Default: the Dockerfile's folder.
    pub context: Option<String>,
    /// Extra input globs (see the glob dialect in the README). A leading `!` excludes, and
    /// exclusions win over inclusions. Exclusions apply to `paths` only, not to Docker inputs.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Services or groups this service depends on: when one of them changes, so does this one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Build arguments (`--build-arg`); they also override `ARG` defaults when reading the
    /// Dockerfile's inputs. Each needs a value: `A: ""` for an empty one (`A:` or `A: null`
    /// is an error, not the text `null`).
    #[serde(default, deserialize_with = "build_arg_values")]
    pub build_args: BTreeMap<String, String>,
    /// Build stage to stop at (`--target`).
    pub target: Option<String>,
    /// Platforms to build for, e.g. `linux/amd64`. Default: the builder's own platform.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Image repository name (lowercased). Default: the service name.
    pub repository: Option<String>,
    /// Where `ship` puts the new image.
    #[serde(default)]
    pub deploy: Vec<DeployTarget>,
}

/// Build args with a value each; a null value is refused at its line.
fn build_arg_values<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    /// One value, read as text when present.
    struct ArgValue(String);
    impl<'de> Deserialize<'de> for ArgValue {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(v) => Ok(ArgValue(v)),
                None => Err(serde::de::Error::custom(
                    "a build arg has no value (YAML reads an empty value or `null` as null); quote it: `\"\"` for an empty value, `\"null\"` for the text",
                )),
            }
        }
    }
    let args = BTreeMap::<String, ArgValue>::deserialize(d)?;
    Ok(args.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// One place a service is deployed: either a workload patched to the new image, or manifests
/// applied server-side with the image substituted by digest.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployTarget {
    /// `kind/name` of a Deployment, StatefulSet or DaemonSet, e.g. `deployment/cart`.
    pub workload: Option<String>,
    /// Namespace of the workload. Default: the kubeconfig context's namespace, else `default`.
    pub namespace: Option<String>,
    /// Container to update. Default: every container running this service's repository.
    pub container: Option<String>,
    /// Manifest files or globs from the repository root, applied server-side.
    #[serde(default)]
    pub manifests: Vec<String>,
}

impl DeployTarget {
    /// The parsed `workload`, when the entry names one; always `Ok` in a config that loaded
    /// (load refuses the others with their line).
    pub fn workload_ref(&self) -> Option<Result<WorkloadRef, WorkloadRefError>> {
        self.workload.as_deref().map(WorkloadRef::parse)
    }
}

/// A group of shared paths.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Globs of the group's files; a leading `!` excludes.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Other groups or services whose changes also change this group.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// The JSON Schema of the config, as checked into `schema/monoship.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Config);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

/// A config that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file `{}`; pass --config (action input `config`) if it lives elsewhere", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read, and one or more problems were found.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Every problem with its location, for annotations.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            ConfigError::Read { .. } => &[],
        }
    }

    /// The config file this error is about.
    pub fn file(&self) -> String {
        match self {
            ConfigError::Invalid { file, .. } => file.clone(),
            ConfigError::Read { path, .. } => path.display().to_string(),
        }
    }
}

/// One thing wrong in a config: where, which key, what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when it could be found.
    pub line: Option<usize>,
    /// 1-based column, when the YAML reader gave one.
    pub column: Option<usize>,
    /// Dotted key path, e.g. `services.cart.depends_on`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

fn render_problems(file: &str, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match (p.line, p.column) {
            (Some(line), Some(column)) => out.push_str(&format!("{file}:{line}:{column}: {p}")),
            (Some(line), None) => out.push_str(&format!("{file}:{line}: {p}")),
            _ => out.push_str(&format!("{file}: {p}")),
        }
    }
    out
}

/// Reads and validates a config file. Dockerfiles are checked later, at the head revision.
///
/// # Errors
/// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Invalid`] with every
/// problem found otherwise.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates config text; `file` names it in errors.
///
/// Problems name a line and, for YAML errors, a column; they never quote a value from the
/// file, which could be a secret pasted in the wrong place.
///
/// # Errors
/// [`ConfigError::Invalid`] listing every problem found.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        file: file.to_string(),
        problems,
    };
    if text.trim().is_empty() {
        return Err(invalid(vec![Problem {
            line: None,
            column: None,
            key: String::new(),
            message: "the config is empty; declare at least one service under `services:`".into(),
        }]));
    }
    if let Err(shape) = yaml::check(text, yaml::budget_for(text)) {
        return Err(invalid(vec![shape_problem(shape)]));
    }
    let config: Config =
        serde_yaml_ng::from_str(text).map_err(|e| invalid(vec![yaml_problem(&e, text)]))?;
    let problems = validate::validate(&config, text);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(invalid(problems))
    }
}

fn shape_problem(shape: yaml::Shape) -> Problem {
    let place = |at: Option<(usize, usize)>| match at {
        Some((line, column)) => format!("line {line} column {column}"),
        None => "an unknown place".into(),
    };
    match shape {
        yaml::Shape::DuplicateKey { key, first, second } => Problem {
            line: second.map(|(l, _)| l),
            column: second.map(|(_, c)| c),
            key: String::new(),
            message: format!(
                "the key `{}` is written twice in one mapping, at {} and at {}; YAML would keep only the last one, so merge the two or rename one",
                shorten(&key, 60).escape_debug(),
                place(first),
                place(second)
            ),
        },
        yaml::Shape::TooLarge { budget, at } => Problem {
            line: at.map(|(l, _)| l),
            column: at.map(|(_, c)| c),
            key: String::new(),
            message: format!(
                "aliases (`*name`) expand the config past {} MiB; repeat less through aliases",
                budget >> 20
            ),
        },
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The line of the `---` that starts a second document, when there is one.
fn second_document(text: &str) -> Option<usize> {
    let mut content = false;
    for (i, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker && content {
            return Some(i + 1);
        }
        let trimmed = line.trim();
        content |= !marker && !trimmed.is_empty() && !trimmed.starts_with('#');
    }
    None
}

fn yaml_problem(e: &serde_yaml_ng::Error, text: &str) -> Problem {
    if e.location().is_none() && e.to_string().contains("more than one document") {
        return Problem {
            line: second_document(text),
            column: None,
            key: String::new(),
            message: "the config holds more than one YAML document; keep one (remove this `---` and what follows, or merge it into the first)".into(),
        };
    }
    // serde_yaml_ng renders "key.path: message at line L column C"; keep the key separate.
    let raw = e.to_string();
    let message = match raw.find(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw,
    };
    let (key, message) = match message.split_once(": ") {
        Some((k, m)) if !k.contains(' ') => (k.to_string(), m.to_string()),
        _ => (String::new(), message),
    };
    let message = without_unknown_key(&without_values(&message));
    let hint = if message.contains("unknown field") {
        " (check the spelling; the JSON Schema in schema/monoship.schema.json lists every key)"
    } else if message.starts_with("invalid type: ") {
        "; see the config reference (docs/reference.md) for the type of each key"
    } else {
        ""
    };
    Problem {
        line: e.location().map(|l| l.line()),
        column: e.location().map(|l| l.column()),
        key,
        message: format!("{message}{hint}"),
    }
}

/// An unknown key is named when it reads like a mistyped key (`dockerfil`), not when it could
/// be a value pasted in the wrong place (a token); the line and column point at it either way.
fn without_unknown_key(message: &str) -> String {
    const UNKNOWN: &str = "unknown field `";
    let Some(at) = message.find(UNKNOWN) else {
        return message.to_string();
    };
    let (before, rest) = (&message[..at], &message[at + UNKNOWN.len()..]);
    let Some((key, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let key_like = key.len() <= 32
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if key_like {
        message.to_string()
    } else {
        format!("{before}unknown field{tail}")
    }
}

/// serde names the value it could not use (`invalid type: string "…", expected …`); keep only
/// its kind, so a secret pasted into the config is never printed back.
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        // Usually at the start; after a key path when the path has a space in it.
        let Some(at) = message.find(prefix) else {
            continue;
        };
        let (before, rest) = (&message[..at], &message[at + prefix.len()..]);
        // The expectation comes from our types; the value, before it, may hold anything.
        let (found, expected) = match rest.rfind(", expected ") {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let kind = match found.split(' ').next().unwrap_or("") {
            "string" => "a string",
            "integer" => "an integer",
            "floating" => "a number",
            "boolean" => "a boolean",
            "character" => "a character",
            "map" => "a mapping",
            "sequence" => "a sequence",
            "unit" => "null",
            _ => "a value",
        };
        return format!("{before}{prefix}{kind}{expected}");
    }
    message.to_string()
}

/// A repository path as configured, cleaned: no leading `./` or `/`, no trailing `/`, and
/// `.` for the repository root becomes `""`.
pub fn repo_path(path: &str) -> String {
    let p = glob::normalize(path.trim()).trim_end_matches('/');
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

/// Finds the 1-based line of a key path in block-style YAML, and of a list item or value
/// under it when `value` is given. Falls back to the deepest key found.
pub fn locate(text: &str, path: &[&str], value: Option<&str>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found: Option<usize> = None;
    let mut from = 0usize;
    let mut min_indent: Option<usize> = None;
    for key in path {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if let Some(parent) = min_indent {
                if indent <= parent && i > from {
                    break; // left the parent's block
                }
            }
            let bare = trimmed.trim_start_matches("- ");
            let key_part = bare
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(['"', '\'']);
            if key_part == *key && bare.contains(':') {
                hit = Some((i, indent));
                break;
            }
        }
        match hit {
            Some((i, indent)) => {
                found = Some(i);
                from = i + 1;
                min_indent = Some(indent);
            }
            None => break,
        }
    }
    let line = found?;
    if let Some(value) = value {
        for (i, l) in lines.iter().enumerate().skip(line) {
            if i > line {
                let trimmed = l.trim_start();
                let indent = l.len() - trimmed.len();
                if !trimmed.is_empty()
                    && !trimmed.starts_with('#')
                    && indent <= min_indent.unwrap_or(0)
                    && !trimmed.starts_with("- ")
                {
                    break;
                }
            }
            if l.contains(value) {
                return Some(i + 1);
            }
        }
    }
    Some(line + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, "m.yml") {
            Ok(_) => vec![],
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    #[test]
    fn minimal_config_from_the_spec_loads() {
        let text = r#"
services:
  cart:
    dockerfile: src/cart/src/Dockerfile
    context: .
    paths: ["deploy/cart/**", "!**/*.md"]
    depends_on: [proto]
    deploy:
      - workload: deployment/cart
        namespace: shop
        container: cart
      - manifests: ["deploy/cart/*.yaml"]
groups:
  proto:
    paths: ["pb/**"]
"#;
        let c = parse(text, "m.yml").unwrap();
        assert_eq!(c.services["cart"].depends_on, vec!["proto"]);
        assert_eq!(c.services["cart"].deploy.len(), 2);
        assert_eq!(c.groups["proto"].paths, vec!["pb/**"]);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "services:\n  cart:\n    dockerfil: a/Dockerfile\n";
        let p = problems(text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("m.yml:3:5: services.cart: unknown field `dockerfil`"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn the_pull_request_prefix_must_be_a_repository_path() {
        let text = "services:\n  a: {paths: [a/**]}\nregistry:\n  url: r.example\n  pull_request_prefix: PR!\n";
        let p = problems(text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("m.yml:5: registry.pull_request_prefix: "),
            "{}",
            p[0]
        );
        assert!(problems(&text.replace("PR!", "previews/pr")).is_empty());
    }

    #[test]
    fn semantic_problems_are_all_reported_with_lines() {
        let text = "\
services:
  cart:
    depends_on: [protoo]
    paths:
      - \"src/**\"
      - \"src/[x\"
  web:
    depends_on: [web]
groups:
  proto:
    paths: [\"pb/**\"]
";
        let p = problems(text);
        assert!(
            p.iter().any(|l| l.starts_with(
                "m.yml:3: services.cart.depends_on: unknown service or group `protoo`"
            )),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("m.yml:6: services.cart.paths: bad glob `src/[x`")),
            "{p:?}"
        );
        assert!(p.iter().any(|l| l.starts_with("m.yml:8: services.web.depends_on: `web` depends on itself")), "{p:?}");
    }

    #[test]
    fn cycles_are_named() {
        let text = "services:\n  a:\n    depends_on: [g]\ngroups:\n  g:\n    depends_on: [a]\n";
        let p = problems(text);
        assert!(
            p.iter()
                .any(|l| l.contains("dependency cycle: a -> g -> a")),
            "{p:?}"
        );
    }

    #[test]
    fn names_and_paths_are_checked() {
        let p = problems("services:\n  \"bad name\":\n    dockerfile: /abs/Dockerfile\n");
        assert!(p.iter().any(|l| l.contains("not a usable name")), "{p:?}");
        assert!(p.iter().any(|l| l.contains("is absolute")), "{p:?}");
        let p = problems("services:\n  a:\n    deploy:\n      - workload: cronjob/x\n");
        assert!(
            p.iter()
                .any(|l| l.contains("m.yml:4: services.a.deploy.workload")),
            "{p:?}"
        );
        let p = problems("services:\n  a:\n    deploy:\n      - namespace: x\n");
        assert!(
            p.iter()
                .any(|l| l.contains("exactly one of `workload` or `manifests`")),
            "{p:?}"
        );
    }

    #[test]
    fn every_workload_form_deploy_accepts_loads() {
        for workload in [
            "ds/agent",
            "sts/db",
            "Deployment.apps/cart",
            "daemonsets/agent",
        ] {
            let text = format!("services:\n  a:\n    deploy:\n      - workload: {workload}\n");
            assert_eq!(problems(&text), Vec::<String>::new(), "{workload}");
        }
    }

    #[test]
    fn a_workload_name_with_a_slash_is_refused_at_its_line() {
        let text = "services:\n  a:\n    dockerfile: a/Dockerfile\n    deploy:\n      - workload: deployment/a/b\n";
        assert_eq!(
            problems(text),
            ["m.yml:5: services.a.deploy.workload: `deployment/a/b` is not a workload: the name must be one path segment after the kind"]
        );
    }

    #[test]
    fn empty_and_serviceless_configs_are_errors() {
        assert!(problems("")[0].contains("empty"));
        assert!(problems("groups: {}\n")[0].contains("no services"));
    }

    #[test]
    fn checked_in_schema_matches_the_types() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/monoship.schema.json");
        let generated = json_schema();
        if std::env::var_os("MONOSHIP_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "schema/monoship.schema.json is stale; run `MONOSHIP_UPDATE_SCHEMA=1 cargo test --lib config` and commit it"
        );
    }

    #[test]
    fn parse_errors_never_quote_the_text() {
        let secret = "planted_0123456789abcdefSECRETxyzABCDEF012345";
        for text in [
            format!("{secret}\n"),
            format!("\"{secret}\"\n"),
            format!("services:\n  a:\n    paths: \"{secret}\"\n"),
            format!("services:\n  a:\n    dockerfile: [\"{secret}\"]\n"),
            format!("services:\n  a:\n    paths: [\"{secret}\n"),
            format!("services: [{secret}, 1]\n"),
            format!("services:\n  \"a b\":\n    paths: \"{secret}\"\n"),
            format!("services:\n  \"a b\":\n    {secret}: 1\n"),
            format!("services:\n  a: {{{secret}: 1}}\n  b: 5\n"),
        ] {
            let p = problems(&text);
            assert!(!p.is_empty(), "{text}");
            for line in &p {
                assert!(!line.contains("SECRET"), "{text}: {line}");
                assert!(line.starts_with("m.yml:"), "{line}");
            }
        }
        assert_eq!(
            problems(&format!("{secret}\n")),
            ["m.yml:1:1: invalid type: a string, expected struct Config; see the config reference (docs/reference.md) for the type of each key"]
        );
        assert_eq!(
            problems("services:\n  a:\n    paths: 5\n"),
            ["m.yml:3:12: services.a.paths: invalid type: an integer, expected a sequence; see the config reference (docs/reference.md) for the type of each key"]
        );
    }

    #[test]
    fn a_key_written_twice_names_both_lines() {
        let text = "services:\n  a:\n    paths: [\"x/**\"]\n  b: {}\n  a:\n    paths: [\"y/**\"]\n";
        assert_eq!(
            problems(text),
            ["m.yml:5:3: the key `a` is written twice in one mapping, at line 2 column 3 and at line 5 column 3; YAML would keep only the last one, so merge the two or rename one"]
        );
    }

    #[test]
    fn alias_bombs_are_refused_before_they_expand() {
        let long = "x".repeat(1 << 20);
        let mut text = format!("x-long: &s \"{long}\"\nservices:\n  a:\n    paths: [");
        text.push_str(&["*s"; 64].join(", "));
        text.push_str("]\n");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("m.yml:") && p[0].contains("aliases (`*name`) expand the config past"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn build_args_need_a_value() {
        for value in ["null", "~", ""] {
            let text = format!("services:\n  a:\n    build_args:\n      A: {value}\n");
            let p = problems(&text);
            assert_eq!(p.len(), 1, "{value}: {p:?}");
            assert!(
                p[0].starts_with("m.yml:4:") && p[0].contains("a build arg has no value"),
                "{value}: {}",
                p[0]
            );
        }
        let c = parse(
            "services:\n  a:\n    build_args: {A: \"null\", B: \"\", C: 1.50, D: true}\n",
            "m.yml",
        )
        .unwrap();
        let args = &c.services["a"].build_args;
        assert_eq!(
            [&args["A"], &args["B"], &args["C"], &args["D"]],
            ["null", "", "1.50", "true"]
        );
    }

    #[test]
    fn a_second_document_is_refused_at_its_marker() {
        for (text, line) in [
            ("services: {}\n---\nservices: {}\n", 2),
            ("---\nservices: {}\n---\nservices: {}\n", 3),
            ("# c\n---\nservices:\n  a: {}\n---\n", 5),
        ] {
            let ConfigError::Invalid { problems, .. } = parse(text, "m.yml").unwrap_err() else {
                panic!("{text}")
            };
            assert_eq!(problems[0].line, Some(line), "{text}: {problems:?}");
            assert!(problems[0].message.contains("more than one YAML document"));
        }
    }
}
