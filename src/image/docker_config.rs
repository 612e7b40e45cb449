//! The runner's Docker config folder: the logins docker/login-action wrote (`config.json`
//! `auths`) and the builders docker/setup-buildx-action made (`buildx/instances`). Read only:
//! monoship never writes there, and never logs a credential it finds.
//!
//! The folder is `DOCKER_CONFIG`, else `$HOME/.docker`. A Docker container action sees the
//! runner's temp folder at `/github/runner_temp`, while a `DOCKER_CONFIG` set in the workflow
//! arrives as the host's path (`/home/runner/work/_temp/docker`): [`config_dir`] maps it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::image::hub;
use crate::secret::Secret;

/// Where a Docker container action sees the runner's temp folder.
pub const ACTION_RUNNER_TEMP: &str = "/github/runner_temp";

/// The runner's Docker config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("cannot read the runner's Docker config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Only the place and the kind: the file holds credentials, its text is never shown.
    #[error("the runner's Docker config {path} is not valid JSON ({kind} at line {line}, column {column}); fix or remove it, or point DOCKER_CONFIG at another folder")]
    Parse {
        path: PathBuf,
        kind: &'static str,
        line: usize,
        column: usize,
    },
}

/// One login of the runner's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerLogin {
    pub username: String,
    pub password: Secret,
}

/// What the runner's Docker config folder offers monoship.
#[derive(Debug, Clone, Default)]
pub struct RunnerConfig {
    /// The folder, as monoship sees it.
    pub dir: PathBuf,
    /// Normalized host (`docker.io`, `ghcr.io`, `127.0.0.1:5000`) → its login.
    pub logins: BTreeMap<String, RunnerLogin>,
    /// Hosts whose credentials live in a credential helper (`credsStore`, `credHelpers`),
    /// which a container cannot run.
    pub helper_only: BTreeSet<String>,
    /// Hosts with an entry monoship cannot use, and why (never the value).
    pub skipped: BTreeMap<String, String>,
    /// Whether the folder has `buildx/` (the builders setup-buildx-action made).
    pub has_buildx: bool,
    /// buildx's current builder (`buildx/current`, what `docker buildx use` and
    /// setup-buildx-action's `use: true` write), when its record is in `buildx/instances`.
    pub current_builder: Option<CurrentBuilder>,
}

/// The builder `buildx/current` names, for one Docker endpoint or for all (`Global`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CurrentBuilder {
    #[serde(rename = "Key", default)]
    pub key: String,
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Global", default)]
    pub global: bool,
}

impl RunnerConfig {
    /// The builder buildx would use for the daemon at `endpoint` (`unix:///var/run/docker.sock`
    /// or the `DOCKER_HOST`), as buildx reads `buildx/current`: a global choice, or one made
    /// for that endpoint. `None` for buildx's default builder (the daemon itself).
    pub fn current_builder(&self, endpoint: &str) -> Option<&str> {
        let current = self.current_builder.as_ref()?;
        (current.global || current.key == endpoint).then_some(current.name.as_str())
    }

    /// The runner's login for `host` (any of Docker Hub's names, with or without scheme).
    pub fn login(&self, host: &str) -> Option<&RunnerLogin> {
        self.logins.get(&normalize_host(host))
    }

    /// Why the runner's config cannot help with `host` when it has a credential helper for
    /// it; `None` otherwise.
    pub fn helper_note(&self, host: &str) -> Option<String> {
        let host = normalize_host(host);
        self.helper_only.contains(&host).then(|| {
            format!("the runner's Docker config keeps the login of {host} in a credential helper, which monoship cannot run inside its container; log in with docker/login-action without a helper, or pass the credentials to monoship")
        })
    }
}

/// The runner's Docker config folder: `DOCKER_CONFIG`, else `$HOME/.docker`. In action mode
/// a `DOCKER_CONFIG` that does not exist here but lies in the runner's temp folder (`…/_temp/…`)
/// is taken from [`ACTION_RUNNER_TEMP`]. Pure apart from `exists`.
pub fn config_dir(
    docker_config: Option<&str>,
    home: Option<&str>,
    in_action: bool,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let nonempty = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let Some(dir) = nonempty(docker_config) else {
        return nonempty(home).map(|h| h.join(".docker"));
    };
    if !in_action || exists(&dir) {
        return Some(dir);
    }
    let text = dir.to_string_lossy();
    let rest = match text.find("/_temp/") {
        Some(i) => &text[i + "/_temp/".len()..],
        None if text.trim_end_matches('/').ends_with("/_temp") => "",
        None => return Some(dir),
    };
    Some(Path::new(ACTION_RUNNER_TEMP).join(rest.trim_start_matches('/')))
}

/// A registry host as Docker's config names it, normalized: no scheme, no path, lower case,
/// Docker Hub as `docker.io`. Pure.
pub fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let key = key
        .split_once("://")
        .map_or(key, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match key.as_str() {
        "registry.hub.docker.com" => hub::image_host("docker.io"),
        _ => hub::image_host(&key),
    }
}

/// The key Docker's config and the daemon's auth headers use for `host`: Docker Hub's
/// historical address, any other host as is. Pure.
pub fn config_key(host: &str) -> String {
    hub::auth_address(&normalize_host(host))
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The logins of a `config.json` text at `path` (named in errors). Pure.
///
/// # Errors
/// [`DockerConfigError::Parse`] with the line and column, never the text.
pub fn parse(text: &str, path: &Path) -> Result<RunnerConfig, DockerConfigError> {
    let file: ConfigFile = match text.trim() {
        "" => ConfigFile::default(),
        _ => serde_json::from_str(text).map_err(|e| DockerConfigError::Parse {
            path: path.to_path_buf(),
            kind: match e.classify() {
                serde_json::error::Category::Syntax => "a syntax error",
                serde_json::error::Category::Eof => "it ends too early",
                serde_json::error::Category::Data => "an unexpected value",
                serde_json::error::Category::Io => "a read error",
            },
            line: e.line(),
            column: e.column(),
        })?,
    };
    let mut config = RunnerConfig::default();
    for host in file.cred_helpers.keys() {
        config.helper_only.insert(normalize_host(host));
    }
    for (key, entry) in file.auths {
        let host = normalize_host(&key);
        if host.is_empty() || config.helper_only.contains(&host) {
            continue;
        }
        match login_of(&entry) {
            Ok(Some(login)) => {
                config.logins.insert(host, login);
            }
            Ok(None) if file.creds_store.is_some() => {
                config.helper_only.insert(host);
            }
            Ok(None) => {}
            Err(why) => {
                config.skipped.insert(host, why.into());
            }
        }
    }
    Ok(config)
}

/// The login of one `auths` entry: `auth` (base64 of `user:password`) or `username` and
/// `password`. `None` for an empty entry (its login is in a credential helper).
fn login_of(entry: &AuthEntry) -> Result<Option<RunnerLogin>, &'static str> {
    let nonempty = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_string);
    if let (Some(username), Some(password)) = (nonempty(&entry.username), nonempty(&entry.password))
    {
        let password = Secret::new(password);
        return Ok(Some(RunnerLogin { username, password }));
    }
    if let Some(auth) = nonempty(&entry.auth) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| "its `auth` is not base64")?;
        let text = String::from_utf8(bytes).map_err(|_| "its `auth` is not text")?;
        let (username, password) = text
            .split_once(':')
            .filter(|(u, p)| !u.is_empty() && !p.is_empty())
            .ok_or("its `auth` is not `user:password`")?;
        return Ok(Some(RunnerLogin {
            username: username.to_string(),
            password: Secret::new(password),
        }));
    }
    if nonempty(&entry.identitytoken).is_some() {
        return Err("it holds an identity token, which monoship cannot use");
    }
    Ok(None)
}

/// Reads the folder `dir`: `config.json` (absent: no logins) and whether `buildx/` is there.
///
/// # Errors
/// As [`parse`], and when `config.json` exists but cannot be read.
pub fn load(dir: &Path) -> Result<RunnerConfig, DockerConfigError> {
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(DockerConfigError::Read { path, source }),
    };
    let mut config = parse(&text, &path)?;
    config.dir = dir.to_path_buf();
    config.has_buildx = dir.join("buildx").is_dir();
    config.current_builder = read_current_builder(&dir.join("buildx"));
    for (host, why) in &config.skipped {
        tracing::warn!(
            "the runner's Docker config has a login for {host} that monoship cannot use: {why}"
        );
    }
    for host in &config.helper_only {
        tracing::debug!("the runner's Docker config keeps the login of {host} in a credential helper, which monoship cannot run in a container");
    }
    Ok(config)
}

/// Whether `name` is a name buildx accepts for a builder. Pure.
pub fn builder_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `current` of the buildx folder `buildx`, when it names a builder whose record is there.
/// Anything else (no file, not JSON, the default builder) is no current builder.
fn read_current_builder(buildx: &Path) -> Option<CurrentBuilder> {
    let text = std::fs::read_to_string(buildx.join("current")).ok()?;
    let current: CurrentBuilder = match serde_json::from_str(&text) {
        Ok(c) => c,
        Err(_) => {
            tracing::debug!(
                "{} is not buildx's JSON; no current builder",
                buildx.join("current").display()
            );
            return None;
        }
    };
    let known =
        builder_name(&current.name) && buildx.join("instances").join(&current.name).is_file();
    known.then_some(current)
}

/// The `config.json` of monoship's private Docker config: every login, each as `auth`. Pure.
pub fn private_config_json(logins: &BTreeMap<String, RunnerLogin>) -> String {
    let auths: serde_json::Map<String, serde_json::Value> = logins
        .iter()
        .map(|(host, login)| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                login.username,
                login.password.expose()
            ));
            (config_key(host), serde_json::json!({ "auth": auth }))
        })
        .collect();
    serde_json::json!({ "auths": auths }).to_string()
}

/// The login for `host` by precedence: monoship's own (the ECR token, registry-username and
/// password) when they are for `host`, else the runner's, else none (anonymous). Pure.
pub fn choose_login(
    own: Option<(&str, &str, &Secret)>,
    runner: &RunnerConfig,
    host: &str,
) -> Option<RunnerLogin> {
    if let Some((own_host, username, password)) = own {
        if normalize_host(own_host) == normalize_host(host) {
            return Some(RunnerLogin {
                username: username.to_string(),
                password: password.clone(),
            });
        }
    }
    runner.login(host).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn docker_config_from_the_workflow_is_found_below_the_runner_temp() {
        let none = |_: &Path| false;
        let all = |_: &Path| true;
        let host = Some("/home/runner/work/_temp/docker");
        assert_eq!(
            config_dir(host, Some("/github/home"), true, &none),
            Some(PathBuf::from("/github/runner_temp/docker"))
        );
        assert_eq!(
            config_dir(host, None, true, &all),
            Some(PathBuf::from("/home/runner/work/_temp/docker")),
            "a path that exists is taken as is"
        );
        assert_eq!(
            config_dir(host, None, false, &none),
            Some(PathBuf::from("/home/runner/work/_temp/docker")),
            "outside an action, never mapped"
        );
        assert_eq!(
            config_dir(Some("/home/runner/work/_temp"), None, true, &none),
            Some(PathBuf::from("/github/runner_temp"))
        );
        assert_eq!(
            config_dir(Some("/opt/docker"), None, true, &none),
            Some(PathBuf::from("/opt/docker"))
        );
        assert_eq!(
            config_dir(Some(" "), Some("/github/home"), true, &none),
            Some(PathBuf::from("/github/home/.docker"))
        );
        assert_eq!(config_dir(None, None, true, &none), None);
    }

    #[test]
    fn hosts_are_normalized_as_docker_names_them() {
        for (key, host) in [
            ("https://index.docker.io/v1/", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("docker.io", "docker.io"),
            ("https://GHCR.io", "ghcr.io"),
            ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
            (
                "123.dkr.ecr.eu-west-1.amazonaws.com",
                "123.dkr.ecr.eu-west-1.amazonaws.com",
            ),
        ] {
            assert_eq!(normalize_host(key), host, "{key}");
        }
        assert_eq!(config_key("registry-1.docker.io"), hub::AUTH_ADDRESS);
        assert_eq!(config_key("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn auths_are_read_in_every_form_and_helpers_are_named() {
        let text = format!(
            r#"{{
  "auths": {{
    "https://index.docker.io/v1/": {{"auth": "{hub}"}},
    "ghcr.io": {{"username": "octo", "password": "gh-pass"}},
    "bad.example": {{"auth": "!!not base64!!"}},
    "nocolon.example": {{"auth": "{nocolon}"}},
    "token.example": {{"identitytoken": "t"}},
    "store.example": {{}},
    "helper.example": {{"auth": "{helper}"}}
  }},
  "credsStore": "desktop",
  "credHelpers": {{"helper.example": "ecr-login", "https://ecr.example/": "ecr-login"}}
}}"#,
            hub = b64("me:hub:pass"),
            nocolon = b64("justuser"),
            helper = b64("x:y"),
        );
        let config = parse(&text, Path::new("/c/config.json")).unwrap();
        let hub = config.login("registry-1.docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.expose()),
            ("me", "hub:pass"),
            "the password may hold colons"
        );
        let gh = config.login("https://ghcr.io").unwrap();
        assert_eq!(
            (gh.username.as_str(), gh.password.expose()),
            ("octo", "gh-pass")
        );
        assert_eq!(config.logins.len(), 2, "{:?}", config.logins.keys());
        assert_eq!(
            config.helper_only,
            ["ecr.example", "helper.example", "store.example"]
                .map(String::from)
                .into()
        );
        assert!(config
            .helper_note("store.example")
            .unwrap()
            .contains("credential helper"));
        assert_eq!(config.helper_note("ghcr.io"), None);
        assert_eq!(
            config.skipped.keys().collect::<Vec<_>>(),
            ["bad.example", "nocolon.example", "token.example"]
        );
        let shown = format!("{config:?} {:?}", config.skipped);
        assert!(
            !shown.contains("gh-pass") && !shown.contains("hub:pass"),
            "{shown}"
        );
        // Without a store an empty entry is just empty.
        let empty = parse(r#"{"auths": {"a.example": {}}}"#, Path::new("c")).unwrap();
        assert!(empty.logins.is_empty() && empty.helper_only.is_empty());
        assert!(parse("", Path::new("c")).unwrap().logins.is_empty());
    }

    #[test]
    fn a_broken_config_names_its_place_and_never_its_text() {
        let text = "{\n  \"auths\": {\"h\": {\"auth\": \"c2VjcmV0LXZhbHVl\"}\n  oops\n}";
        let e = parse(text, Path::new("/c/config.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/c/config.json") && e.contains("line 3"), "{e}");
        assert!(!e.contains("c2VjcmV0") && !e.contains("oops"), "{e}");
        let wrong = parse(r#"{"auths": {"h": {"auth": 12345678}}}"#, Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains("unexpected value") && !wrong.contains("12345678"),
            "{wrong}"
        );
    }

    #[test]
    fn monoship_s_own_login_wins_then_the_runner_s_then_none() {
        let config = parse(
            &format!(
                r#"{{"auths": {{"reg.example": {{"auth": "{}"}}}}}}"#,
                b64("runner:rp")
            ),
            Path::new("c"),
        )
        .unwrap();
        let own = Secret::new("own-pass");
        let chosen =
            choose_login(Some(("reg.example", "ci", &own)), &config, "reg.example").unwrap();
        assert_eq!(
            (chosen.username.as_str(), chosen.password.expose()),
            ("ci", "own-pass")
        );
        let other =
            choose_login(Some(("push.example", "ci", &own)), &config, "reg.example").unwrap();
        assert_eq!(
            other.username, "runner",
            "monoship's login is for another host"
        );
        assert_eq!(
            choose_login(None, &config, "reg.example").unwrap().username,
            "runner"
        );
        assert_eq!(choose_login(None, &config, "elsewhere.example"), None);
    }

    #[test]
    fn the_private_config_holds_each_login_as_auth() {
        let mut logins = BTreeMap::new();
        logins.insert(
            "docker.io".to_string(),
            RunnerLogin {
                username: "u".into(),
                password: Secret::new("p"),
            },
        );
        let json: serde_json::Value = serde_json::from_str(&private_config_json(&logins)).unwrap();
        assert_eq!(json["auths"][hub::AUTH_ADDRESS]["auth"], b64("u:p"));
    }
}
