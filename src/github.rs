//! The GitHub REST API client: one octocrab client per run, and the rules every request
//! follows, whoever makes it ([`crate::detect::api`] lists changed files through it,
//! [`crate::report::publish`] comments and records deployments).
//!
//! Requests go through octocrab's raw methods, so this module sees every status and header and
//! owns every retry: a rate limit waits for GitHub's reset (bounded by
//! [`GithubApi::with_max_wait`]), a server or network failure of a request that is safe to
//! repeat backs off exponentially, and nothing else is retried. A `POST` is repeated only after
//! a rate limit, when GitHub did nothing with it: a second comment or deployment is worse than
//! a warning.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octocrab::secrecy::SecretString;
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::Octocrab;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::retry::{retry, RetryPolicy, Retrying, Stop, Verdict};

/// The author of what the workflow's `GITHUB_TOKEN` posts.
pub const ACTIONS_BOT: &str = "github-actions[bot]";
/// Items per page asked of listing endpoints (GitHub's maximum).
pub(crate) const PER_PAGE: u32 = 100;
/// Retries of one request, whatever made it fail (rate limit, server error, network).
const MAX_RETRIES: u32 = 3;
/// Pages followed at most. The 3,000-file cap of pull requests is 30 pages; more means the
/// server loops.
const MAX_PAGES: usize = 100;
/// The wait for a rate limit that names no time; GitHub asks for "at least one minute".
const UNTIMED_LIMIT_WAIT: u64 = 60;
/// How long a GitHub error message may get in our own messages.
const MESSAGE_LIMIT: usize = 300;

const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of the GitHub REST API for one repository.
///
/// By default a rate limit is waited out for up to 60 seconds ([`GithubApi::with_max_wait`]),
/// a server or network failure is retried after 1, 2 and 4 seconds
/// ([`GithubApi::with_retry_delay`]), and each request must finish within 30 seconds
/// ([`GithubApi::with_request_timeout`]). One request is retried at most 3 times in all.
#[derive(Clone)]
pub struct GithubApi {
    /// Made on the first request: octocrab starts a worker task on the current Tokio runtime,
    /// so making it in `new` would tie `new` to a runtime.
    client: OnceLock<Octocrab>,
    token: Option<SecretString>,
    /// `$GITHUB_API_URL` without a trailing slash, e.g. `https://ghe.example/api/v3`.
    api_url: String,
    owner: String,
    repo: String,
    max_wait: Duration,
    retry_delay: Duration,
    request_timeout: Duration,
}

/// Why a GitHub API request failed. Each message says what was asked, what GitHub answered,
/// and what to do; `hint` is the caller's way around the API, when it has one.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub API URL {url:?} is not an http(s) URL; set GITHUB_API_URL to e.g. https://api.github.com or https://HOST/api/v3")]
    InvalidApiUrl {
        url: String,
        #[source]
        source: Option<Box<octocrab::Error>>,
    },
    #[error("repository {repository:?} is not of the form \"owner/name\" (GITHUB_REPOSITORY)")]
    InvalidRepository { repository: String },
    #[error("revision {revision:?} cannot be compared through the GitHub API; pass a commit SHA or branch name")]
    InvalidRevision { revision: String },
    #[error("the GitHub token contains characters that cannot be sent in an HTTP header; check the secret for stray spaces, quotes or newlines")]
    InvalidToken,
    #[error("{what}: could not set up the HTTPS client for the GitHub API (is a CA certificate bundle installed?)")]
    Client {
        what: String,
        #[source]
        source: Box<octocrab::Error>,
    },
    #[error("{what}: GitHub rejected the token (401 {message}); check that it is valid and has not expired")]
    BadCredentials { what: String, message: String },
    #[error("{what}: GitHub refused access (403 {message}); grant `{permission}` in the workflow's `permissions:`{hint}")]
    PermissionDenied {
        what: String,
        message: String,
        permission: &'static str,
        hint: &'static str,
    },
    #[error("{what}: GitHub answered 404 ({message}); it does not exist or the token cannot see it (a private repository needs `{permission}` in the workflow's `permissions:`){hint}")]
    NotFound {
        what: String,
        message: String,
        permission: &'static str,
        hint: &'static str,
    },
    #[error("{what}: GitHub answered {status} ({message})")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    #[error("{what}: GitHub's rate limit resets at {resets_at} ({wait_secs} s from now), later than monoship waits ({max_wait_secs} s); re-run the job after the reset{hint}")]
    RateLimitTooLong {
        what: String,
        resets_at: String,
        wait_secs: u64,
        max_wait_secs: u64,
        hint: &'static str,
    },
    #[error("{what}: still rate limited by GitHub after {attempts} attempts (the limit resets at {resets_at}); re-run the job later{hint}")]
    StillRateLimited {
        what: String,
        attempts: u32,
        resets_at: String,
        hint: &'static str,
    },
    #[error("{what}: GitHub answered {status} ({message}) to {attempts} attempts; GitHub may be having an outage: re-run the job later{hint}")]
    ServerError {
        what: String,
        status: u16,
        message: String,
        attempts: u32,
        hint: &'static str,
    },
    #[error("{what}: could not reach the GitHub API at {api_url} in {attempts} attempts")]
    Unreachable {
        what: String,
        api_url: String,
        attempts: u32,
        #[source]
        source: Box<octocrab::Error>,
    },
    #[error("{what}: the GitHub API at {api_url} did not answer within {timeout:?}, {attempts} attempts")]
    Timeout {
        what: String,
        api_url: String,
        timeout: Duration,
        attempts: u32,
    },
    #[error("{what}: GitHub's answer is not the JSON monoship expects")]
    InvalidResponse {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: GitHub's next-page link {link:?} does not point into the API at {api_url}")]
    ForeignNextLink {
        what: String,
        link: String,
        api_url: String,
    },
}

/// What a request is for, as error messages name it.
pub(crate) struct Call {
    pub what: String,
    /// The workflow permission the request needs.
    pub permission: &'static str,
    /// Appended to errors that a user could avoid another way, e.g. ", or set `fetch-depth: 0`
    /// …"; empty when there is none.
    pub hint: &'static str,
    /// Whether a server or network failure may be retried: GitHub may have done a `POST`
    /// before failing, so only rate limits (nothing done) are retried then.
    pub repeatable: bool,
}

/// One HTTP answer, with the headers this module reads.
pub(crate) struct Reply {
    pub status: u16,
    retry_after: Option<u64>,
    remaining: Option<u64>,
    reset: Option<u64>,
    /// The `rel="next"` target of the `Link` header.
    pub next: Option<String>,
    pub body: String,
}

/// How a paged listing ended.
pub(crate) struct Pages {
    /// Pages read.
    pub read: usize,
    /// More pages were linked than monoship follows (see `MAX_PAGES`).
    pub stopped_early: bool,
}

/// A request's method and body (`GET` has none).
enum Verb<'a> {
    Get,
    Post(&'a serde_json::Value),
    Patch(&'a serde_json::Value),
}

impl GithubApi {
    /// A client for `repository` ("owner/name") at `api_url` (`$GITHUB_API_URL`, which may
    /// carry a path prefix such as `https://HOST/api/v3`).
    ///
    /// A token is optional (public repositories); an empty one counts as none. It is sent
    /// only to `api_url`'s host and is never logged or put in an error.
    ///
    /// No runtime is needed here: the HTTP client is made on the first request, on the Tokio
    /// runtime that runs it, so use one `GithubApi` within one runtime.
    ///
    /// # Errors
    ///
    /// A URL that is not http(s), a repository not of the form "owner/name", or a token that
    /// cannot be sent as a header value. A TLS set-up failure (no CA certificates) shows at
    /// the first request, as [`GithubError::Client`].
    pub fn new(
        api_url: &str,
        repository: &str,
        token: Option<&str>,
    ) -> Result<GithubApi, GithubError> {
        let api_url = api_url.trim().trim_end_matches('/');
        let invalid_url = |source| GithubError::InvalidApiUrl {
            url: api_url.to_owned(),
            source,
        };
        if url_origin(api_url).is_none() {
            return Err(invalid_url(None));
        }
        // The builder is thrown away; it checks the URL the way the client will read it.
        Octocrab::builder()
            .base_uri(api_url)
            .map_err(|source| invalid_url(Some(Box::new(source))))?;
        let (owner, repo) = split_repository(repository)?;
        let token = token.map(str::trim).filter(|token| !token.is_empty());
        // octocrab unwraps the header value it makes of the token; check it here instead.
        if token.is_some_and(|token| !token.bytes().all(|byte| byte.is_ascii_graphic())) {
            return Err(GithubError::InvalidToken);
        }

        Ok(GithubApi {
            client: OnceLock::new(),
            token: token.map(|token| SecretString::from(token.to_owned())),
            api_url: api_url.to_owned(),
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            max_wait: DEFAULT_MAX_WAIT,
            retry_delay: DEFAULT_RETRY_DELAY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// The longest wait for a rate limit to reset. A limit that resets later fails at once
    /// with [`GithubError::RateLimitTooLong`]. By default this is 60 seconds.
    pub fn with_max_wait(mut self, max_wait: Duration) -> GithubApi {
        self.max_wait = max_wait;
        self
    }

    /// The first back-off after a server (5xx) or network failure; each further retry waits
    /// twice as long. By default this is 1 second.
    pub fn with_retry_delay(mut self, delay: Duration) -> GithubApi {
        self.retry_delay = delay;
        self
    }

    /// How long one request (connect, headers and body) may take. By default this is 30
    /// seconds.
    pub fn with_request_timeout(mut self, timeout: Duration) -> GithubApi {
        self.request_timeout = timeout;
        self
    }

    /// `owner/name` of the repository.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    /// The URL of `path` under the repository: `{api}/repos/{owner}/{repo}{path}`.
    pub(crate) fn repo_url(&self, path: &str) -> String {
        format!("{}/repos/{}/{}{path}", self.api_url, self.owner, self.repo)
    }

    /// The login the token acts as, which is the author of anything it posts: `GET /user`'s
    /// `login` for a user's token (a personal access token, an OAuth or user-to-server token).
    /// An installation token (the workflow's `GITHUB_TOKEN`) may not read `/user` (403 or
    /// 404); GitHub posts its comments as [`ACTIONS_BOT`], which is then the answer.
    ///
    /// # Errors
    /// When GitHub cannot be asked, or rejects the token (401).
    pub async fn token_login(&self) -> Result<String, GithubError> {
        #[derive(Deserialize)]
        struct User {
            login: String,
        }
        let call = Call {
            what: "finding who the GitHub token belongs to".into(),
            permission: "none",
            hint: "",
            repeatable: true,
        };
        match self.get(&format!("{}/user", self.api_url), &call).await {
            Ok(reply) => Ok(parse::<User>(&reply.body, &call)?.login),
            Err(GithubError::PermissionDenied { .. } | GithubError::NotFound { .. }) => {
                Ok(ACTIONS_BOT.to_string())
            }
            Err(e) => Err(e),
        }
    }

    /// The octocrab client, made on first use. Call it on a Tokio runtime.
    fn client(&self, call: &Call) -> Result<&Octocrab, GithubError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client_error = |source| GithubError::Client {
            what: call.what.clone(),
            source: Box::new(source),
        };
        let mut builder = Octocrab::builder()
            // Our loop retries, reading GitHub's rate-limit headers; octocrab's own retry layer
            // would retry 5xx and 429 again underneath it, so it is off.
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(CONNECT_TIMEOUT))
            .base_uri(self.api_url.as_str())
            .map_err(client_error)?;
        if let Some(token) = &self.token {
            builder = builder.personal_token(token.clone());
        }
        let client = builder.build().map_err(client_error)?;
        Ok(self.client.get_or_init(|| client))
    }

    /// GETs `url`, retrying rate limits and transient failures, and returns a 2xx answer.
    pub(crate) async fn get(&self, url: &str, call: &Call) -> Result<Reply, GithubError> {
        self.request(Verb::Get, url, call).await
    }

    /// POSTs `body` as JSON to `url` and returns a 2xx answer. Retried only after a rate
    /// limit, unless `call.repeatable` says repeating it is harmless.
    pub(crate) async fn post(
        &self,
        url: &str,
        body: &serde_json::Value,
        call: &Call,
    ) -> Result<Reply, GithubError> {
        self.request(Verb::Post(body), url, call).await
    }

    /// PATCHes `url` with `body` as JSON and returns a 2xx answer.
    pub(crate) async fn patch(
        &self,
        url: &str,
        body: &serde_json::Value,
        call: &Call,
    ) -> Result<Reply, GithubError> {
        self.request(Verb::Patch(body), url, call).await
    }

    /// GETs `first_url` and every page its `Link: rel="next"` headers lead to, in order,
    /// handing each page's items to `visit` until it breaks.
    pub(crate) async fn for_each_page<T: DeserializeOwned>(
        &self,
        first_url: String,
        call: &Call,
        mut visit: impl FnMut(Vec<T>) -> ControlFlow<()>,
    ) -> Result<Pages, GithubError> {
        let mut url = first_url;
        let mut read = 0;
        loop {
            let reply = self.get(&url, call).await?;
            let items: Vec<T> = parse(&reply.body, call)?;
            read += 1;
            if visit(items).is_break() {
                return Ok(Pages {
                    read,
                    stopped_early: false,
                });
            }
            let Some(next) = reply.next else {
                return Ok(Pages {
                    read,
                    stopped_early: false,
                });
            };
            if read == MAX_PAGES {
                return Ok(Pages {
                    read,
                    stopped_early: true,
                });
            }
            url = self.next_page_url(&next, call)?;
        }
    }

    /// Sends one request, retrying rate limits (and, when repeatable, transient failures)
    /// under [`GithubApi::retry_policy`].
    async fn request(&self, verb: Verb<'_>, url: &str, call: &Call) -> Result<Reply, GithubError> {
        let client = self.client(call)?;
        let repeatable = call.repeatable || matches!(verb, Verb::Get | Verb::Patch(_));
        let verb = &verb;
        let attempt = |_| async move {
            match self.send(client, verb, url).await {
                Ok(reply) if (200..300).contains(&reply.status) => Ok(reply),
                Ok(reply) => Err(self.judge(reply, call)),
                Err(Transient::Unreachable(source)) => Err(match source {
                    // A malformed URL stays malformed however often it is sent.
                    octocrab::Error::UriParse { .. } | octocrab::Error::Uri { .. } => {
                        Failure::Fatal(GithubError::ForeignNextLink {
                            what: call.what.clone(),
                            link: url.to_owned(),
                            api_url: self.api_url.clone(),
                        })
                    }
                    source => Failure::Retry(Transient::Unreachable(source)),
                }),
                Err(transient) => Err(Failure::Retry(transient)),
            }
        };
        let on_retry = |failure: &Failure, r: Retrying| {
            if let Failure::Retry(transient) = failure {
                let (retry, wait) = (r.attempt, r.wait);
                tracing::info!(
                    "{}: {}; retry {retry} of {MAX_RETRIES} in {wait:?}",
                    call.what,
                    transient.describe()
                );
            }
        };
        let classify = |failure: &Failure| failure.verdict(repeatable);
        let policy = self.retry_policy();
        let gave_up = match retry(&policy, classify, on_retry, attempt).await {
            Ok(reply) => return Ok(reply),
            Err(gave_up) => gave_up,
        };
        Err(match (gave_up.error, gave_up.stop) {
            (Failure::Fatal(error), _) => error,
            (
                Failure::Retry(Transient::RateLimited {
                    wait_secs,
                    resets_at,
                }),
                Stop::WaitTooLong(_),
            ) => GithubError::RateLimitTooLong {
                what: call.what.clone(),
                resets_at: utc_timestamp(resets_at),
                wait_secs,
                max_wait_secs: self.max_wait.as_secs(),
                hint: call.hint,
            },
            (Failure::Retry(transient), _) => self.gave_up(transient, call, gave_up.attempts),
        })
    }

    /// Every request is sent at most `MAX_RETRIES + 1` times; a transient failure pauses
    /// `retry_delay`, doubling, and a rate limit waits for its reset, up to `max_wait`.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: MAX_RETRIES + 1,
            first_delay: self.retry_delay,
            factor: 2,
            max_delay: Duration::MAX,
            max_wait: Some(self.max_wait),
        }
    }

    /// One request to `url`, bounded by the request timeout.
    async fn send(
        &self,
        client: &Octocrab,
        verb: &Verb<'_>,
        url: &str,
    ) -> Result<Reply, Transient> {
        let method = match verb {
            Verb::Get => "GET",
            Verb::Post(_) => "POST",
            Verb::Patch(_) => "PATCH",
        };
        tracing::debug!(%url, method, "GitHub API request");
        let request = async {
            let response = match verb {
                Verb::Get => client._get(url).await?,
                Verb::Post(body) => client._post(url, Some(*body)).await?,
                Verb::Patch(body) => client._patch(url, Some(*body)).await?,
            };
            let header = |name: &str| {
                let value = response.headers().get(name)?.to_str().ok()?;
                value.trim().parse::<u64>().ok()
            };
            let status = response.status().as_u16();
            let retry_after = header("retry-after");
            let remaining = header("x-ratelimit-remaining");
            let reset = header("x-ratelimit-reset");
            let next = response
                .headers()
                .get_all("link")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .find_map(next_link)
                .map(str::to_owned);
            let body = client.body_to_string(response).await?;
            Ok(Reply {
                status,
                retry_after,
                remaining,
                reset,
                next,
                body,
            })
        };
        match tokio::time::timeout(self.request_timeout, request).await {
            Ok(Ok(reply)) => {
                tracing::debug!(%url, status = reply.status, "GitHub API answered");
                Ok(reply)
            }
            Ok(Err(source)) => Err(Transient::Unreachable(source)),
            Err(_elapsed) => Err(Transient::TimedOut),
        }
    }

    /// Sorts a non-2xx answer into "wait and retry" and "give up now".
    fn judge(&self, reply: Reply, call: &Call) -> Failure {
        let message = github_message(&reply.body);
        if let Some((wait_secs, resets_at)) = rate_limit_wait(&reply, &message, unix_now()) {
            return Failure::Retry(Transient::RateLimited {
                wait_secs,
                resets_at,
            });
        }
        let what = call.what.clone();
        let (permission, hint) = (call.permission, call.hint);
        Failure::Fatal(match reply.status {
            401 => GithubError::BadCredentials { what, message },
            403 => GithubError::PermissionDenied {
                what,
                message,
                permission,
                hint,
            },
            404 => GithubError::NotFound {
                what,
                message,
                permission,
                hint,
            },
            500..=599 => {
                return Failure::Retry(Transient::Server {
                    status: reply.status,
                    message,
                })
            }
            status => GithubError::Status {
                what,
                status,
                message,
            },
        })
    }

    /// The error for a request whose retries ran out.
    fn gave_up(&self, transient: Transient, call: &Call, attempts: u32) -> GithubError {
        let what = call.what.clone();
        match transient {
            Transient::RateLimited { resets_at, .. } => GithubError::StillRateLimited {
                what,
                attempts,
                resets_at: utc_timestamp(resets_at),
                hint: call.hint,
            },
            Transient::Server { status, message } => GithubError::ServerError {
                what,
                status,
                message,
                attempts,
                hint: call.hint,
            },
            Transient::Unreachable(source) => GithubError::Unreachable {
                what,
                api_url: self.api_url.clone(),
                attempts,
                source: Box::new(source),
            },
            Transient::TimedOut => GithubError::Timeout {
                what,
                api_url: self.api_url.clone(),
                timeout: self.request_timeout,
                attempts,
            },
        }
    }

    /// The absolute URL of a `rel="next"` link, refused unless it stays on the API's host
    /// (the token goes wherever the next request goes).
    fn next_page_url(&self, link: &str, call: &Call) -> Result<String, GithubError> {
        let origin = url_origin(&self.api_url).unwrap_or_default();
        let absolute = if link.starts_with('/') {
            format!("{origin}{link}")
        } else {
            link.to_owned()
        };
        let same_host = url_origin(&absolute).is_some_and(|other| other == origin);
        if same_host && !absolute.contains(|c: char| c.is_whitespace() || c.is_control()) {
            Ok(absolute)
        } else {
            Err(GithubError::ForeignNextLink {
                what: call.what.clone(),
                link: link.to_owned(),
                api_url: self.api_url.clone(),
            })
        }
    }
}

impl fmt::Debug for GithubApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubApi")
            .field("api_url", &self.api_url)
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("max_wait", &self.max_wait)
            .field("retry_delay", &self.retry_delay)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

enum Failure {
    Retry(Transient),
    Fatal(GithubError),
}

impl Failure {
    /// A rate limit waits for its reset; other transient failures are retried only when the
    /// request is `repeatable`.
    fn verdict(&self, repeatable: bool) -> Verdict {
        match self {
            Failure::Retry(Transient::RateLimited { wait_secs, .. }) => {
                Verdict::RetryAfter(Duration::from_secs(*wait_secs))
            }
            Failure::Retry(_) if repeatable => Verdict::Retry,
            Failure::Retry(_) | Failure::Fatal(_) => Verdict::Fatal,
        }
    }
}

/// A failure that may pass if the request is sent again.
enum Transient {
    /// Wait `wait_secs`; the limit resets at `resets_at` (Unix seconds).
    RateLimited {
        wait_secs: u64,
        resets_at: u64,
    },
    Server {
        status: u16,
        message: String,
    },
    Unreachable(octocrab::Error),
    TimedOut,
}

impl Transient {
    fn describe(&self) -> String {
        match self {
            Transient::RateLimited { resets_at, .. } => {
                format!("rate limited until {}", utc_timestamp(*resets_at))
            }
            Transient::Server { status, .. } => format!("GitHub answered {status}"),
            Transient::Unreachable(_) => "could not reach GitHub".to_owned(),
            Transient::TimedOut => "GitHub did not answer in time".to_owned(),
        }
    }
}

/// Reads a JSON answer.
pub(crate) fn parse<T: DeserializeOwned>(body: &str, call: &Call) -> Result<T, GithubError> {
    serde_json::from_str(body).map_err(|source| GithubError::InvalidResponse {
        what: call.what.clone(),
        source,
    })
}

/// How long to wait before retrying a 403 or 429 that is a rate limit, and when the limit
/// resets (Unix seconds); `None` when the answer is no rate limit.
///
/// GitHub's rules: `retry-after` names the wait; else `x-ratelimit-remaining: 0` means wait
/// until `x-ratelimit-reset`; else a rate-limit message (primary or secondary) or a 429 means
/// wait at least a minute.
fn rate_limit_wait(reply: &Reply, message: &str, now: u64) -> Option<(u64, u64)> {
    if reply.status != 403 && reply.status != 429 {
        return None;
    }
    if let Some(seconds) = reply.retry_after {
        return Some((seconds, now.saturating_add(seconds)));
    }
    if let (Some(0), Some(reset)) = (reply.remaining, reply.reset) {
        // At least a second, in case our clock runs ahead of GitHub's.
        return Some((reset.saturating_sub(now).max(1), reset.max(now)));
    }
    let said_rate_limit = message.to_ascii_lowercase().contains("rate limit");
    (said_rate_limit || reply.status == 429 || reply.remaining == Some(0))
        .then_some((UNTIMED_LIMIT_WAIT, now + UNTIMED_LIMIT_WAIT))
}

/// GitHub's `message` from an error body, or the start of a body that is not GitHub's JSON,
/// on one line and bounded.
fn github_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        message: String,
    }
    let message = match serde_json::from_str::<ErrorBody>(body) {
        Ok(error) => error.message,
        Err(_) => body.to_owned(),
    };
    let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MESSAGE_LIMIT) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None if one_line.is_empty() => "no message".to_owned(),
        None => one_line,
    }
}

/// The target of the `rel="next"` link in a `Link` header (RFC 8288) as GitHub writes it:
/// `<https://…&page=2>; rel="next", <https://…&page=5>; rel="last"`.
fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|param| {
            param.split_once('=').is_some_and(|(key, value)| {
                key.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            })
        });
        is_next.then_some(target.trim())
    })
}

/// `scheme://authority` of an http(s) URL, or `None` for anything else.
fn url_origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    if authority.is_empty() || authority.contains(|c: char| c.is_whitespace() || c == '@') {
        return None;
    }
    Some(&url[..scheme.len() + 3 + authority_len])
}

/// Splits "owner/name", accepting only the characters GitHub allows in either.
fn split_repository(repository: &str) -> Result<(&str, &str), GithubError> {
    let invalid = || GithubError::InvalidRepository {
        repository: repository.to_owned(),
    };
    let (owner, repo) = repository.trim().split_once('/').ok_or_else(invalid)?;
    let allowed = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
    };
    if allowed(owner) && allowed(repo) {
        Ok((owner, repo))
    } else {
        Err(invalid())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_timestamp(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX / 2);
    let second_of_day = unix % 86_400;
    // Proleptic Gregorian date from a day count, with years starting in March so the leap
    // day comes last; eras are the 400-year cycles of 146,097 days.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_finds_next_among_others() {
        let header = "<https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=2>; rel=\"next\", \
                      <https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=3>; rel=\"last\"";
        assert_eq!(
            next_link(header),
            Some("https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=2")
        );
        let last_page = "<https://h/x?page=1>; rel=\"first\", <https://h/x?page=2>; rel=\"prev\"";
        assert_eq!(next_link(last_page), None);
        assert_eq!(
            next_link("<https://h/x?page=3>;rel=next"),
            Some("https://h/x?page=3")
        );
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn url_origin_keeps_scheme_and_host_only() {
        assert_eq!(
            url_origin("https://ghe.example/api/v3"),
            Some("https://ghe.example")
        );
        assert_eq!(
            url_origin("http://127.0.0.1:8080"),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(url_origin("ftp://host"), None);
        assert_eq!(url_origin("api.github.com"), None);
        assert_eq!(url_origin("https:///path"), None);
    }

    #[test]
    fn utc_timestamp_matches_known_dates() {
        for (unix, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_767_225_600, "2026-01-01T00:00:00Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ] {
            assert_eq!(utc_timestamp(unix), text);
        }
    }

    fn reply(
        status: u16,
        retry_after: Option<u64>,
        remaining: Option<u64>,
        reset: Option<u64>,
    ) -> Reply {
        Reply {
            status,
            retry_after,
            remaining,
            reset,
            next: None,
            body: String::new(),
        }
    }

    #[test]
    fn rate_limit_wait_follows_githubs_rules() {
        let now = 1_000;
        assert_eq!(
            rate_limit_wait(&reply(429, Some(7), None, None), "", now),
            Some((7, 1_007))
        );
        assert_eq!(
            rate_limit_wait(
                &reply(403, None, Some(0), Some(1_030)),
                "API rate limit exceeded",
                now
            ),
            Some((30, 1_030))
        );
        assert_eq!(
            rate_limit_wait(&reply(403, None, Some(0), Some(900)), "", now),
            Some((1, 1_000))
        );
        assert_eq!(
            rate_limit_wait(
                &reply(403, None, Some(4_000), None),
                "You have exceeded a secondary rate limit",
                now
            ),
            Some((60, 1_060))
        );
        assert_eq!(
            rate_limit_wait(&reply(429, None, None, None), "", now),
            Some((60, 1_060))
        );
        assert_eq!(
            rate_limit_wait(
                &reply(403, None, Some(4_000), Some(2_000)),
                "Resource not accessible by integration",
                now
            ),
            None
        );
        assert_eq!(
            rate_limit_wait(&reply(500, Some(5), None, None), "", now),
            None
        );
    }

    #[test]
    fn github_message_reads_json_or_bounds_text() {
        assert_eq!(
            github_message(
                r#"{"message":"Not Found","documentation_url":"https://docs.github.com"}"#
            ),
            "Not Found"
        );
        assert_eq!(
            github_message("<html>\n  Bad\n gateway</html>"),
            "<html> Bad gateway</html>"
        );
        assert_eq!(github_message(""), "no message");
        assert_eq!(
            github_message(&"x".repeat(1_000)).chars().count(),
            MESSAGE_LIMIT + 1
        );
    }

    #[test]
    fn requests_back_off_1_2_4_seconds_and_wait_out_rate_limits_up_to_a_minute() {
        use crate::retry::Decision;
        let api = GithubApi::new("https://api.github.com", "o/r", None).unwrap();
        let policy = api.retry_policy();
        let secs = Duration::from_secs;
        let decisions: Vec<Decision> = (1..=4).map(|n| policy.decide(n, Verdict::Retry)).collect();
        assert_eq!(
            decisions,
            [
                Decision::Wait(secs(1)),
                Decision::Wait(secs(2)),
                Decision::Wait(secs(4)),
                Decision::Stop(Stop::Exhausted)
            ]
        );
        assert_eq!(
            policy.decide(1, Verdict::RetryAfter(secs(60))),
            Decision::Wait(secs(60))
        );
        assert_eq!(
            policy.decide(1, Verdict::RetryAfter(secs(61))),
            Decision::Stop(Stop::WaitTooLong(secs(61)))
        );
        let patient = api.with_max_wait(secs(600)).with_retry_delay(secs(3));
        assert_eq!(
            patient.retry_policy().decide(2, Verdict::Retry),
            Decision::Wait(secs(6))
        );
    }

    #[test]
    fn only_rate_limits_are_retried_for_requests_that_are_not_repeatable() {
        let limited = Failure::Retry(Transient::RateLimited {
            wait_secs: 7,
            resets_at: 0,
        });
        let server = || {
            Failure::Retry(Transient::Server {
                status: 502,
                message: "Bad Gateway".into(),
            })
        };
        for repeatable in [true, false] {
            assert_eq!(
                limited.verdict(repeatable),
                Verdict::RetryAfter(Duration::from_secs(7))
            );
        }
        assert_eq!(server().verdict(true), Verdict::Retry);
        assert_eq!(server().verdict(false), Verdict::Fatal);
        assert_eq!(
            Failure::Retry(Transient::TimedOut).verdict(false),
            Verdict::Fatal
        );
        let fatal = Failure::Fatal(GithubError::InvalidToken);
        assert_eq!(fatal.verdict(true), Verdict::Fatal);
    }

    #[test]
    fn repositories_are_checked() {
        assert_eq!(
            split_repository("octo-org/my.repo_1").unwrap(),
            ("octo-org", "my.repo_1")
        );
        for bad in [
            "", "owner", "owner/", "/repo", "a/b/c", "a/..", "a b/c", "a/b?x",
        ] {
            assert!(split_repository(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
