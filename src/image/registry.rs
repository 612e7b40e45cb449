//! OCI registries through the distribution API: does a tag exist, what digest does it point
//! to, and copying a manifest to more tags (how a reused image gets its commit tags without a
//! rebuild). Login for `docker push` is the Docker CLI's business ([`crate::image::build`]); this
//! client authenticates itself with the same credentials (Basic, or the Bearer token flow).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};

use crate::image::hub;
use crate::retry::{retry, RetryPolicy, Retrying, Verdict};
use crate::secret::Secret;

/// Every manifest type a tag may point to; the registry answers with the one it stores.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Where images go: `HOST[:PORT][/PREFIX]`, with optional credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryTarget {
    /// `host[:port]` as Docker writes it in image names (`docker.io` for Docker Hub).
    pub host: String,
    /// `host[:port]` that answers the distribution API: `registry-1.docker.io` for Docker Hub,
    /// else `host`.
    pub api_host: String,
    /// Folder prefix inside the registry (`acme` in `ghcr.io/acme`), without slashes at the ends.
    pub prefix: String,
    /// Plain HTTP: loopback registries (as Docker treats them) or an explicit `http://`.
    pub insecure: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// A registry address or answer that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry `{url}` is not `HOST[:PORT][/PREFIX]`: {why}")]
    BadUrl { url: String, why: String },
    #[error("registry `{url}` cannot be pushed to: {why}")]
    DockerHub { url: String, why: String },
    #[error("image repository `{name}` is not valid: {why}")]
    BadRepository { name: String, why: String },
    #[error("the registry {host} refused the credentials for {what} (HTTP {status}); check the username and MONOSHIP_REGISTRY_PASSWORD (input `registry-password`)")]
    Unauthorized {
        host: String,
        what: String,
        status: u16,
    },
    #[error("the registry {host} needs credentials for {what}: set --registry-username and MONOSHIP_REGISTRY_PASSWORD (inputs registry-username, registry-password), or log in with docker/login-action with `DOCKER_CONFIG: ${{{{ runner.temp }}}}/docker` in the job's env so monoship reads that login")]
    NeedsCredentials { host: String, what: String },
    #[error("the registry {host} answered HTTP {status} for {what} {attempts} times; it may be down, try again later")]
    ServerError {
        host: String,
        what: String,
        status: u16,
        attempts: u32,
    },
    #[error("cannot reach the registry {host} for {what} after {attempts} attempts")]
    Unreachable {
        host: String,
        what: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("the registry {host} answered HTTP {status} for {what}: {message}")]
    Status {
        host: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error("the registry {host} did not finish the requests for {repository} within {}s (the deadline for one image's registry requests); it may be overloaded, try again later", .deadline.as_secs())]
    Deadline {
        host: String,
        repository: String,
        deadline: Duration,
    },
    #[error("the registry {host} answered HTTP 429 (too many requests) for {what} {attempts} times: {}", rate_limit(.host, .message))]
    RateLimited {
        host: String,
        what: String,
        attempts: u32,
        /// The registry's own words (`toomanyrequests: …`, or its `RateLimit-Limit` header
        /// for a `HEAD`, which has no body), or empty.
        message: String,
    },
    #[error("the registry {host} sent no Docker-Content-Digest for {what}")]
    NoDigest { host: String, what: String },
}

impl RegistryTarget {
    /// Parses `HOST[:PORT][/PREFIX]`, optionally with an `http://` or `https://` scheme.
    ///
    /// # Errors
    /// When the host is empty or the prefix is not a valid repository path.
    pub fn parse(
        url: &str,
        username: Option<String>,
        password: Option<Secret>,
    ) -> Result<RegistryTarget, RegistryError> {
        let bad = |why: &str| RegistryError::BadUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, url),
        };
        let rest = rest.trim_end_matches('/');
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(bad("the host is missing or has spaces"));
        }
        if !prefix.is_empty() {
            validate_repository(prefix).map_err(|e| bad(&e.to_string()))?;
        }
        let hostname = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
        let loopback =
            hostname == "localhost" || hostname.starts_with("127.") || hostname == "[::1]";
        let insecure = match scheme.as_deref() {
            Some("http") => true,
            Some("https") => false,
            Some(other) => return Err(bad(&format!("unknown scheme `{other}`"))),
            None => loopback,
        };
        Ok(RegistryTarget {
            host: hub::image_host(host),
            api_host: hub::api_host(host),
            prefix: prefix.to_string(),
            insecure,
            username,
            password,
        })
    }

    /// [`RegistryTarget::parse`] for the registry monoship pushes to: Docker Hub (any of its
    /// names) takes images only below a user or organisation, `docker.io/<namespace>`.
    ///
    /// # Errors
    /// As [`RegistryTarget::parse`], and a Docker Hub address without a namespace or with
    /// folders below it.
    pub fn parse_push(
        url: &str,
        username: Option<String>,
        password: Option<Secret>,
    ) -> Result<RegistryTarget, RegistryError> {
        let target = RegistryTarget::parse(url, username, password)?;
        if !hub::is_docker_hub(&target.host) {
            return Ok(target);
        }
        let why = match target.prefix.split_once('/') {
            _ if target.prefix.is_empty() => "Docker Hub needs the user or organisation the images belong to: add it, `docker.io/<namespace>` (for example `docker.io/acme`)".to_string(),
            Some((namespace, _)) => format!(
                "Docker Hub has one level of repositories below the user or organisation, so the registry is `docker.io/<namespace>`; use `docker.io/{namespace}` and give each service its repository name"
            ),
            None => return Ok(target),
        };
        Err(RegistryError::DockerHub {
            url: url.to_string(),
            why,
        })
    }

    /// The image name of a repository in this registry: `host/prefix/repository`.
    pub fn image(&self, repository: &str) -> String {
        format!("{}/{}", self.host, self.path(repository))
    }

    /// The repository path inside the registry: `prefix/repository`. On Docker Hub, which has
    /// no folders below the namespace, a folder of the prefix (the pull-request prefix) joins
    /// the name with `-`: `acme/pr` and `cart` make `acme/pr-cart`.
    pub fn path(&self, repository: &str) -> String {
        match self.prefix.split_once('/') {
            _ if self.prefix.is_empty() => repository.to_string(),
            Some((namespace, folder)) if hub::is_docker_hub(&self.host) => {
                format!("{namespace}/{}-{repository}", folder.replace('/', "-"))
            }
            _ => format!("{}/{repository}", self.prefix),
        }
    }

    /// Checks that `repository` (below the prefix) makes a repository this registry takes:
    /// the distribution spec's rules, and on Docker Hub `<namespace>/<name>`.
    ///
    /// # Errors
    /// [`RegistryError::BadRepository`] with the reason.
    pub fn check_repository(&self, repository: &str) -> Result<(), RegistryError> {
        let path = self.path(repository);
        validate_repository(&path)?;
        match hub::is_docker_hub(&self.host) {
            true => match hub::repository_problem(&path) {
                Some(why) => Err(RegistryError::BadRepository { name: path, why }),
                None => Ok(()),
            },
            false => Ok(()),
        }
    }

    fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.insecure { "http" } else { "https" },
            self.api_host
        )
    }
}

/// Checks an image repository path the way the distribution spec does: lowercase components
/// of `[a-z0-9]` separated by `.`, `_`, `__` or `-`, joined with `/`.
///
/// # Errors
/// With the reason when it is not valid.
pub fn validate_repository(name: &str) -> Result<(), RegistryError> {
    let bad = |why: &str| RegistryError::BadRepository {
        name: name.to_string(),
        why: why.to_string(),
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("it must have 1 to 255 characters"));
    }
    for component in name.split('/') {
        let bytes = component.as_bytes();
        if bytes.is_empty() {
            return Err(bad("it has an empty path component"));
        }
        if !bytes[0].is_ascii_lowercase() && !bytes[0].is_ascii_digit()
            || !bytes[bytes.len() - 1].is_ascii_lowercase()
                && !bytes[bytes.len() - 1].is_ascii_digit()
        {
            return Err(bad(
                "each component must start and end with a lowercase letter or digit",
            ));
        }
        let mut prev_sep = false;
        let mut underscores = 0;
        for &b in bytes {
            match b {
                b'a'..=b'z' | b'0'..=b'9' => {
                    prev_sep = false;
                    underscores = 0;
                }
                b'_' => {
                    underscores += 1;
                    if underscores > 2 || (prev_sep && underscores == 1) {
                        return Err(bad("separators must stand between letters or digits"));
                    }
                    prev_sep = true;
                }
                b'.' if !prev_sep => prev_sep = true,
                b'-' => prev_sep = true,
                _ => return Err(bad("use lowercase letters, digits and `.`, `_`, `-` only")),
            }
        }
    }
    Ok(())
}

/// A client for one registry.
pub struct OciRegistry {
    target: RegistryTarget,
    http: reqwest::Client,
    retry: RetryPolicy,
    /// The most time the requests for one repository (one image) may take together.
    deadline: Duration,
    /// Time spent so far in requests, by repository; a build between them does not count.
    spent: Mutex<HashMap<String, Duration>>,
}

/// The registry requests of one image (lookups, retags, labels, retries included) stop after
/// this much time in all, so a registry that accepts connections and never answers fails the
/// image within minutes.
pub const IMAGE_DEADLINE: Duration = Duration::from_secs(180);

/// One attempt gives up when the connection is not made within this time...
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// ...or when the server sends nothing for this long.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Registry requests are sent 4 times in all on 5xx and connection errors, pausing 500 ms,
/// 1 s and 2 s ([`OciRegistry::with_retry_delay`] sets the first pause).
const RETRIES: RetryPolicy = RetryPolicy {
    max_delay: Duration::MAX,
    ..RetryPolicy::new(4, Duration::from_millis(500))
};

/// A failed attempt at a registry request.
enum SendFailure {
    /// A 5xx answer: worth another attempt.
    Server(StatusCode),
    /// 429, a rate limit (with the registry's words): worth another attempt within the
    /// deadline, the limit may be per minute.
    TooMany(String),
    /// No answer: worth another attempt.
    Unreachable(reqwest::Error),
    /// The challenge could not be answered: final.
    Refused(RegistryError),
}

impl SendFailure {
    fn verdict(&self) -> Verdict {
        match self {
            SendFailure::Server(_) | SendFailure::TooMany(_) | SendFailure::Unreachable(_) => {
                Verdict::Retry
            }
            SendFailure::Refused(_) => Verdict::Fatal,
        }
    }
}

/// A manifest as stored: its bytes and media type, so a copy is byte-identical.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl OciRegistry {
    /// A client with bounded timeouts and 3 retries on 5xx and connection errors.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots).
    pub fn new(target: RegistryTarget) -> Result<OciRegistry, RegistryError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("monoship/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| RegistryError::Unreachable {
                host: target.host.clone(),
                what: "setting up the HTTP client".into(),
                attempts: 0,
                source,
            })?;
        Ok(OciRegistry {
            target,
            http,
            retry: RETRIES,
            deadline: IMAGE_DEADLINE,
            spent: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the deadline for one image's registry requests ([`IMAGE_DEADLINE`] by default);
    /// tests make it short.
    pub fn with_image_deadline(mut self, deadline: Duration) -> OciRegistry {
        self.deadline = deadline;
        self
    }

    /// Sets the first retry delay (doubled on each retry); tests make it short.
    pub fn with_retry_delay(mut self, delay: Duration) -> OciRegistry {
        self.retry.first_delay = delay;
        self
    }

    pub fn target(&self) -> &RegistryTarget {
        &self.target
    }

    /// The digest `repository:tag` points to, or `None` when the tag does not exist.
    /// `repository` is the full path inside the registry (with the prefix, see
    /// [`RegistryTarget::path`]).
    ///
    /// # Errors
    /// When the registry refuses the credentials, keeps failing, or cannot be reached.
    pub async fn tag_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>, RegistryError> {
        let (what, response) = self
            .manifest_request(Method::HEAD, repository, tag, None)
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                digest_header(response.headers())
                    .map(Some)
                    .ok_or(RegistryError::NoDigest {
                        host: self.target.host.clone(),
                        what,
                    })
            }
            s => Err(self.status_error(&what, s, String::new())),
        }
    }

    /// Reads the manifest of `repository:reference` as stored.
    ///
    /// # Errors
    /// As [`OciRegistry::tag_digest`], and when it does not exist.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let (what, response) = self
            .manifest_request(Method::GET, repository, reference, None)
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(self.status_error(&what, status, body));
        }
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/vnd.oci.image.manifest.v1+json")
            .to_string();
        let digest = digest_header(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|source| RegistryError::Unreachable {
                host: self.target.host.clone(),
                what: what.clone(),
                attempts: 1,
                source,
            })?
            .to_vec();
        let digest = digest.unwrap_or_else(|| sha256_digest(&bytes));
        Ok(Manifest {
            media_type,
            bytes,
            digest,
        })
    }

    /// Stores `manifest` under `tag` (a retag: no layer moves); returns the digest the
    /// registry reports.
    ///
    /// # Errors
    /// As [`OciRegistry::tag_digest`]; an immutable registry refusing an existing tag is an error.
    pub async fn put_manifest(
        &self,
        repository: &str,
        tag: &str,
        manifest: &Manifest,
    ) -> Result<String, RegistryError> {
        let body = Some((manifest.media_type.as_str(), manifest.bytes.as_slice()));
        let (what, response) = self
            .manifest_request(Method::PUT, repository, tag, body)
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(self.status_error(&what, status, body));
        }
        Ok(digest_header(response.headers()).unwrap_or_else(|| manifest.digest.clone()))
    }

    /// The `org.opencontainers.image.revision` label of the image `repository@digest`: read
    /// from its config blob (for an index, from its first image that is not an attestation).
    /// `None` when the image carries no such label.
    ///
    /// # Errors
    /// As [`OciRegistry::manifest`], and when the manifest or config cannot be read as JSON.
    pub async fn revision_label(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Option<String>, RegistryError> {
        Ok(self
            .labels(repository, digest)
            .await?
            .remove(REVISION_LABEL))
    }

    /// Every label of the image `repository@digest`, from its config blob (for an index, from
    /// its first image that is not an attestation).
    ///
    /// # Errors
    /// As [`OciRegistry::manifest`], and when the manifest or config cannot be read as JSON.
    pub async fn labels(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<HashMap<String, String>, RegistryError> {
        let mut manifest = self.manifest(repository, digest).await?;
        if let Some(image) = first_image(&self.json(&manifest.bytes, digest)?) {
            manifest = self.manifest(repository, &image).await?;
        }
        let parsed = self.json(&manifest.bytes, &manifest.digest)?;
        let Some(config) = parsed["config"]["digest"].as_str() else {
            return Ok(HashMap::new());
        };
        let config = self.blob(repository, config).await?;
        let config = self.json(&config, digest)?;
        let labels = config["config"]["Labels"].as_object().into_iter().flatten();
        Ok(labels
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect())
    }

    /// Up to `n` tags of `repository` that sort after `last`, in the order the registry lists
    /// them (the distribution spec asks for lexical order; a registry that ignores `last`
    /// lists from the start). Empty when the repository does not exist.
    ///
    /// # Errors
    /// As [`OciRegistry::tag_digest`].
    pub async fn tags_after(
        &self,
        repository: &str,
        last: &str,
        n: usize,
    ) -> Result<Vec<String>, RegistryError> {
        let what = format!("the tags of {repository}");
        let mut url = reqwest::Url::parse(&format!(
            "{}/v2/{repository}/tags/list",
            self.target.base_url()
        ))
        .map_err(|e| RegistryError::BadRepository {
            name: repository.to_string(),
            why: e.to_string(),
        })?;
        url.query_pairs_mut()
            .append_pair("n", &n.to_string())
            .append_pair("last", last);
        let scope = format!("repository:{repository}:pull");
        let response = self
            .send(Method::GET, url.as_str(), None, (repository, &what), &scope)
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(vec![]);
        }
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(self.status_error(&what, status, String::from_utf8_lossy(&body).into()));
        }
        let listed = self.json(&body, &what)?;
        let tags = listed["tags"].as_array().into_iter().flatten();
        Ok(tags
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect())
    }

    /// The bytes of blob `digest` of `repository`.
    async fn blob(&self, repository: &str, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let what = format!("{repository}@{digest}");
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.target.base_url());
        let scope = format!("repository:{repository}:pull");
        let response = self
            .send(Method::GET, &url, None, (repository, &what), &scope)
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(self.status_error(&what, status, body));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|source| RegistryError::Unreachable {
                host: self.target.host.clone(),
                what,
                attempts: 1,
                source,
            })?;
        Ok(bytes.to_vec())
    }

    fn json(&self, bytes: &[u8], what: &str) -> Result<serde_json::Value, RegistryError> {
        serde_json::from_slice(bytes).map_err(|e| RegistryError::Status {
            host: self.target.host.clone(),
            what: what.to_string(),
            status: 200,
            message: format!("not JSON: {e}"),
        })
    }

    /// One request on `/v2/<repository>/manifests/<reference>`; returns `repository:reference`
    /// for messages and the response. A body means a push, which needs the push scope.
    async fn manifest_request(
        &self,
        method: Method,
        repository: &str,
        reference: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<(String, reqwest::Response), RegistryError> {
        let what = format!("{repository}:{reference}");
        let url = format!(
            "{}/v2/{repository}/manifests/{reference}",
            self.target.base_url()
        );
        let scope = format!(
            "repository:{repository}:{}",
            if body.is_some() { "pull,push" } else { "pull" }
        );
        let response = self
            .send(method, &url, body, (repository, &what), &scope)
            .await?;
        Ok((what, response))
    }

    fn status_error(&self, what: &str, status: StatusCode, body: String) -> RegistryError {
        let host = self.target.host.clone();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return self.refused(what, status.as_u16());
        }
        let message = body.chars().take(300).collect::<String>();
        RegistryError::Status {
            host,
            what: what.to_string(),
            status: status.as_u16(),
            message,
        }
    }

    /// Sends a request for `repository` (named `what` in messages) within what is left of the
    /// repository's deadline ([`IMAGE_DEADLINE`]).
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<(&str, &[u8])>,
        (repository, what): (&str, &str),
        scope: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let used = *self.spent().entry(repository.into()).or_default();
        let started = Instant::now();
        let sent = self.send_retried(method, url, body, what, scope);
        let outcome = tokio::time::timeout(self.deadline.saturating_sub(used), sent).await;
        *self.spent().entry(repository.into()).or_default() += started.elapsed();
        outcome.unwrap_or_else(|_| {
            Err(RegistryError::Deadline {
                host: self.target.host.clone(),
                repository: repository.to_string(),
                deadline: self.deadline,
            })
        })
    }

    fn spent(&self) -> std::sync::MutexGuard<'_, HashMap<String, Duration>> {
        self.spent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a request, authenticating when challenged and retrying 5xx and connection errors
    /// (see [`RETRIES`]).
    async fn send_retried(
        &self,
        method: Method,
        url: &str,
        body: Option<(&str, &[u8])>,
        what: &str,
        scope: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        // The answer to the first challenge, kept for the attempts after it.
        let auth = &OnceLock::new();
        let attempt = |_| {
            let method = method.clone();
            async move {
                let sent = self.send_once(method.clone(), url, body, auth.get()).await;
                let mut response = sent.map_err(SendFailure::Unreachable)?;
                // A challenge is answered once, within the same attempt.
                if response.status() == StatusCode::UNAUTHORIZED && auth.get().is_none() {
                    let challenge = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let value =
                        (self.authorize(&challenge, scope).await).map_err(SendFailure::Refused)?;
                    let value = auth.get_or_init(|| value);
                    let sent = self.send_once(method, url, body, Some(value)).await;
                    response = sent.map_err(SendFailure::Unreachable)?;
                }
                if response.status().is_server_error() {
                    return Err(SendFailure::Server(response.status()));
                }
                if response.status() == StatusCode::TOO_MANY_REQUESTS {
                    // Hub says which limit in a header; a HEAD's answer has no body.
                    let header = response
                        .headers()
                        .get("ratelimit-limit")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| format!("ratelimit-limit: {v}"));
                    let body = response.bytes().await.unwrap_or_default();
                    let message = match registry_message(&body) {
                        m if m.is_empty() => header.unwrap_or_default(),
                        m => m,
                    };
                    return Err(SendFailure::TooMany(message));
                }
                Ok(response)
            }
        };
        let on_retry = |failure: &SendFailure, r: Retrying| {
            let attempt = r.attempt;
            match failure {
                SendFailure::Server(status) => {
                    tracing::info!(host = %self.target.host, %status, what, attempt, "registry error, retrying");
                }
                SendFailure::TooMany(message) => {
                    tracing::info!(host = %self.target.host, what, attempt, message, "registry rate limit (HTTP 429), retrying");
                }
                _ => {}
            }
        };
        let gave_up = match retry(&self.retry, SendFailure::verdict, on_retry, attempt).await {
            Ok(response) => return Ok(response),
            Err(gave_up) => gave_up,
        };
        let (host, what, attempts) = (self.target.host.clone(), what.to_string(), gave_up.attempts);
        Err(match gave_up.error {
            SendFailure::Server(status) => RegistryError::ServerError {
                host,
                what,
                status: status.as_u16(),
                attempts,
            },
            SendFailure::TooMany(message) => RegistryError::RateLimited {
                host,
                what,
                attempts,
                message,
            },
            SendFailure::Unreachable(source) => RegistryError::Unreachable {
                host,
                what,
                attempts,
                source,
            },
            SendFailure::Refused(error) => error,
        })
    }

    /// One request, with the manifest types accepted and `auth` when there is one.
    async fn send_once(
        &self,
        method: Method,
        url: &str,
        body: Option<(&str, &[u8])>,
        auth: Option<&HeaderValue>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = self
            .http
            .request(method, url)
            .header(ACCEPT, MANIFEST_TYPES);
        if let Some(a) = auth {
            request = request.header(AUTHORIZATION, a.clone());
        }
        if let Some((media_type, bytes)) = body {
            request = request
                .header(CONTENT_TYPE, media_type)
                .body(bytes.to_vec());
        }
        request.send().await
    }

    fn basic(&self) -> Option<HeaderValue> {
        let user = self.target.username.as_deref()?;
        let password = self
            .target
            .password
            .as_ref()
            .map(Secret::expose)
            .unwrap_or("");
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// A refusal: of the credentials given, or for want of any.
    fn refused(&self, what: &str, status: u16) -> RegistryError {
        let host = self.target.host.clone();
        let what = what.to_string();
        if self.target.username.is_none() && self.target.password.is_none() {
            return RegistryError::NeedsCredentials { host, what };
        }
        RegistryError::Unauthorized { host, what, status }
    }

    /// Answers a `WWW-Authenticate` challenge: Basic with the credentials, or a Bearer token
    /// fetched from the realm (anonymously when there are no credentials).
    async fn authorize(&self, challenge: &str, scope: &str) -> Result<HeaderValue, RegistryError> {
        let unauthorized = || self.refused("logging in", 401);
        let (kind, params) = parse_challenge(challenge);
        if kind.eq_ignore_ascii_case("basic") {
            return self.basic().ok_or_else(unauthorized);
        }
        let url = token_url(&params, scope).ok_or_else(unauthorized)?;
        let mut headers = HeaderMap::new();
        if let Some(b) = self.basic() {
            headers.insert(AUTHORIZATION, b);
        }
        let response = self
            .http
            .get(url)
            .headers(headers)
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                host: self.target.host.clone(),
                what: "its token service".into(),
                attempts: 1,
                source,
            })?;
        if !response.status().is_success() {
            return Err(self.refused("a token", response.status().as_u16()));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer =
            response
                .json()
                .await
                .map_err(|source| RegistryError::Unreachable {
                    host: self.target.host.clone(),
                    what: "its token answer".into(),
                    attempts: 1,
                    source,
                })?;
        let token = answer
            .token
            .or(answer.access_token)
            .ok_or_else(unauthorized)?;
        let mut value =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| unauthorized())?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// Which limit a 429 of `host` is, what to do about it, and the registry's `message`.
fn rate_limit(host: &str, message: &str) -> String {
    let limit = match hub::is_docker_hub(host) {
        true => hub::RATE_LIMIT,
        false => "the registry limits the rate of requests; wait and run again",
    };
    match message.is_empty() {
        true => format!("{limit}."),
        false => format!("{limit}. It said: {message}"),
    }
}

/// The first error of a distribution API error body (`{"errors":[{"code","message"}]}`) as
/// `code: message` in lowercase code, else the start of the body. Pure.
fn registry_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let first = parsed.as_ref().and_then(|v| v["errors"].get(0));
    match first {
        Some(e) => format!(
            "{}: {}",
            e["code"].as_str().unwrap_or("error").to_ascii_lowercase(),
            e["message"].as_str().unwrap_or_default()
        ),
        None => String::from_utf8_lossy(body)
            .trim()
            .chars()
            .take(300)
            .collect(),
    }
}

/// The label monoship writes on every image: the commit it was built from.
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";

/// For an index (multi-platform image), the digest of its first image manifest; BuildKit's
/// attestations (platform `unknown/unknown`) are not images. Pure.
fn first_image(manifest: &serde_json::Value) -> Option<String> {
    manifest["manifests"]
        .as_array()?
        .iter()
        .find(|m| m["platform"]["os"] != "unknown")
        .and_then(|m| m["digest"].as_str())
        .map(str::to_string)
}

fn digest_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    format!("sha256:{}", hex(d.as_ref()))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a Bearer challenge's token comes from: its realm, asked for its service and its
/// scope (else `scope`, the one the request needs); `None` without a usable realm.
fn token_url(params: &[(String, String)], scope: &str) -> Option<reqwest::Url> {
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut url = reqwest::Url::parse(param("realm")?).ok()?;
    if let Some(service) = param("service") {
        url.query_pairs_mut().append_pair("service", service);
    }
    let scope = param("scope").unwrap_or(scope);
    url.query_pairs_mut().append_pair("scope", scope);
    Some(url)
}

/// Splits `Bearer realm="x",service="y"` into the scheme and its parameters.
fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let (kind, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (quoted[..end].to_string(), &quoted[end + 1..]),
                None => (quoted.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].to_string(), &after[end..]),
                None => (after.to_string(), ""),
            }
        };
        params.push((key, value));
        rest = remaining.trim_start_matches(',').trim();
    }
    (kind.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_prefixes_ports_and_schemes() {
        let t = RegistryTarget::parse("ghcr.io/acme/team", None, None).unwrap();
        assert_eq!(
            (t.host.as_str(), t.prefix.as_str(), t.insecure),
            ("ghcr.io", "acme/team", false)
        );
        assert_eq!(t.image("cart"), "ghcr.io/acme/team/cart");
        let t = RegistryTarget::parse("127.0.0.1:5000", None, None).unwrap();
        assert!(t.insecure);
        assert_eq!(t.image("cart"), "127.0.0.1:5000/cart");
        let t = RegistryTarget::parse("http://registry.internal:5000/x", None, None).unwrap();
        assert!(t.insecure);
        for bad in ["", "/x", "ftp://h", "host/UPPER", "a b"] {
            assert!(RegistryTarget::parse(bad, None, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_hub_targets_write_docker_io_and_ask_registry_1() {
        for spelling in [
            "docker.io/acme",
            "index.docker.io/acme",
            "registry-1.docker.io/acme",
            "https://docker.io/acme/",
            "DOCKER.IO/acme",
        ] {
            let t = RegistryTarget::parse_push(spelling, None, None)
                .unwrap_or_else(|e| panic!("{spelling}: {e}"));
            assert_eq!(
                (t.host.as_str(), t.api_host.as_str(), t.prefix.as_str()),
                ("docker.io", "registry-1.docker.io", "acme"),
                "{spelling}"
            );
            assert!(!t.insecure);
            assert_eq!(t.image("cart"), "docker.io/acme/cart");
            assert_eq!(t.base_url(), "https://registry-1.docker.io");
            assert!(t.check_repository("cart").is_ok());
        }
        let other = RegistryTarget::parse_push("ghcr.io/acme/team", None, None).unwrap();
        assert_eq!(other.api_host, "ghcr.io");
        assert!(other.check_repository("shop/cart").is_ok());
    }

    #[test]
    fn docker_hub_needs_a_namespace_and_one_level_below_it() {
        for alone in [
            "docker.io",
            "index.docker.io/",
            "https://registry-1.docker.io",
        ] {
            let e = RegistryTarget::parse_push(alone, None, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{alone}`")), "{e}");
            assert!(e.contains("`docker.io/<namespace>`"), "{e}");
        }
        let e = RegistryTarget::parse_push("docker.io/acme/team", None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("use `docker.io/acme`"), "{e}");
        // Base image lookups ask Hub without a namespace.
        assert!(RegistryTarget::parse("registry-1.docker.io", None, None).is_ok());
        let t = RegistryTarget::parse_push("docker.io/acme", None, None).unwrap();
        let e = t.check_repository("shop/cart").unwrap_err().to_string();
        assert!(
            e.contains("`acme/shop/cart`") && e.contains("one level below"),
            "{e}"
        );
    }

    #[test]
    fn a_folder_below_a_hub_namespace_joins_the_name() {
        let t = RegistryTarget::parse_push("docker.io/acme", None, None).unwrap();
        let pr = RegistryTarget {
            prefix: t.path("pr"),
            ..t.clone()
        };
        assert_eq!(pr.prefix, "acme/pr");
        assert_eq!(pr.image("cart"), "docker.io/acme/pr-cart");
        assert!(pr.check_repository("cart").is_ok());
        assert!(pr.check_repository("shop/cart").is_err());
        let deeper = RegistryTarget {
            prefix: t.path("pr/x"),
            ..t
        };
        assert_eq!(deeper.path("cart"), "acme/pr-x-cart");
        // Elsewhere a folder stays a folder.
        let g = RegistryTarget::parse_push("ghcr.io/acme/pr", None, None).unwrap();
        assert_eq!(g.image("cart"), "ghcr.io/acme/pr/cart");
    }

    #[test]
    fn rate_limits_name_the_limit_and_the_registrys_words() {
        let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
        let message = registry_message(body);
        assert_eq!(
            message,
            "toomanyrequests: You have reached your pull rate limit."
        );
        assert_eq!(registry_message(b" slow down \n"), "slow down");
        let hub = RegistryError::RateLimited {
            host: "docker.io".into(),
            what: "acme/cart:v1".into(),
            attempts: 4,
            message,
        }
        .to_string();
        assert!(
            hub.starts_with("the registry docker.io answered HTTP 429 (too many requests) for acme/cart:v1 4 times: Docker Hub's rate limit on pulls"),
            "{hub}"
        );
        assert!(
            hub.ends_with("(registry-username, MONOSHIP_REGISTRY_PASSWORD). It said: toomanyrequests: You have reached your pull rate limit."),
            "{hub}"
        );
        let other = RegistryError::RateLimited {
            host: "ghcr.io".into(),
            what: "x".into(),
            attempts: 4,
            message: String::new(),
        }
        .to_string();
        assert!(
            other.ends_with("the registry limits the rate of requests; wait and run again."),
            "{other}"
        );
        assert_eq!(
            SendFailure::TooMany(String::new()).verdict(),
            Verdict::Retry
        );
    }

    #[test]
    fn repository_names_follow_the_distribution_spec() {
        for ok in ["cart", "shop/cart", "a.b-c__d", "x9"] {
            assert!(validate_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "Cart",
            "-cart",
            "cart-",
            "a//b",
            "a___b",
            "a..b",
            "caf\u{e9}",
        ] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_index_is_read_through_its_first_image_not_an_attestation() {
        let index = serde_json::json!({"manifests": [
            {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
        ]});
        assert_eq!(first_image(&index).as_deref(), Some("sha256:amd"));
        let image = serde_json::json!({"config": {"digest": "sha256:c"}, "layers": []});
        assert_eq!(first_image(&image), None);
    }

    #[test]
    fn challenges_parse() {
        let (kind, params) = parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull""#,
        );
        assert_eq!(kind, "Bearer");
        assert_eq!(params[0], ("realm".into(), "https://ghcr.io/token".into()));
        assert_eq!(params[2], ("scope".into(), "repository:a/b:pull".into()));
        let (kind, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((kind.as_str(), params.len()), ("Basic", 1));
    }

    #[test]
    fn requests_are_tried_four_times_pausing_half_a_second_then_doubling() {
        use crate::retry::{Decision, Stop};
        let waits: Vec<Decision> = (1..=4).map(|n| RETRIES.decide(n, Verdict::Retry)).collect();
        let ms = Duration::from_millis;
        assert_eq!(
            waits,
            [
                Decision::Wait(ms(500)),
                Decision::Wait(ms(1000)),
                Decision::Wait(ms(2000)),
                Decision::Stop(Stop::Exhausted)
            ]
        );
        let refused = SendFailure::Refused(RegistryError::NoDigest {
            host: "h".into(),
            what: "w".into(),
        });
        assert_eq!(refused.verdict(), Verdict::Fatal);
        assert_eq!(
            SendFailure::Server(StatusCode::BAD_GATEWAY).verdict(),
            Verdict::Retry
        );
    }

    #[test]
    fn token_urls_ask_the_realm_for_the_service_and_scope() {
        let (_, params) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example""#,
        );
        let url = token_url(&params, "repository:shop/cart:pull").unwrap();
        assert_eq!(
            url.as_str(),
            "https://auth.example/token?service=registry.example&scope=repository%3Ashop%2Fcart%3Apull"
        );
        let (_, params) =
            parse_challenge(r#"Bearer realm="https://a.example/t?x=1",scope="repository:a:pull""#);
        let url = token_url(&params, "repository:a:pull,push").unwrap();
        assert_eq!(
            url.as_str(),
            "https://a.example/t?x=1&scope=repository%3Aa%3Apull"
        );
        let (_, params) = parse_challenge(r#"Bearer service="s""#);
        assert!(token_url(&params, "x").is_none());
        let (_, params) = parse_challenge(r#"Bearer realm="not a url""#);
        assert!(token_url(&params, "x").is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let t = RegistryTarget::parse("h", Some("u".into()), Some(s)).unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
