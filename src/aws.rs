//! AWS credentials for the push and deploy stages: the SDK's default chain, or the job's
//! GitHub OIDC token exchanged for a role session inside the process, so no
//! configure-aws-credentials step is needed and a refused exchange can be explained.
//!
//! Every secret this module obtains (the OIDC request token, the OIDC token, the temporary
//! keys) goes to the caller's `mask` callback before anything else sees it, including the
//! keys of sessions re-minted later in the run.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{
    error::CredentialsError, future, ProvideCredentials, SharedCredentialsProvider,
};
use aws_credential_types::Credentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
use base64::Engine;
use reqwest::StatusCode;

use crate::retry::{retry, RetryPolicy, Retrying, Verdict};
use crate::secret::Secret;

/// The role session name when none is given.
pub const DEFAULT_SESSION_NAME: &str = "monoship";
/// The OIDC audience when none is given: the one AWS's GitHub identity provider expects.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";

/// Attempts of every AWS call before its error is reported (throttling included).
pub(crate) const AWS_MAX_ATTEMPTS: u32 = 5;
/// The OIDC token request is sent 3 times in all on network errors, 429 and 5xx, pausing
/// 500 ms, then 1 s.
const ID_TOKEN_RETRIES: RetryPolicy = RetryPolicy::new(3, Duration::from_millis(500));
const ID_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// A role session is re-minted this long before it expires.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// How to get AWS credentials.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// The region; by default `AWS_REGION`, then `AWS_DEFAULT_REGION`, then the profile's.
    pub region: Option<String>,
    /// A role ARN to assume with the job's GitHub OIDC token. By default none: the
    /// credentials come from the SDK's default chain.
    pub role_to_assume: Option<String>,
    /// The role session name, shown in CloudTrail. By default [`DEFAULT_SESSION_NAME`].
    pub role_session_name: Option<String>,
    /// The OIDC token's audience. By default [`DEFAULT_AUDIENCE`].
    pub audience: Option<String>,
}

/// The claims of a GitHub OIDC token that decide whether a role's trust policy admits it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OidcClaims {
    /// `repo:OWNER/REPO:ref:refs/heads/main`, `repo:OWNER/REPO:environment:NAME`,
    /// `repo:OWNER/REPO:pull_request`, ...: what trust policies match on.
    pub sub: Option<String>,
    /// Audiences; a JWT may carry one string or a list.
    pub aud: Vec<String>,
    /// The `ref` claim: `refs/heads/main`, `refs/pull/7/merge`, `refs/tags/v1`.
    pub git_ref: Option<String>,
    /// The job's deployment environment, when it has one.
    pub environment: Option<String>,
    /// `OWNER/REPO`.
    pub repository: Option<String>,
    /// The workflow file and ref the job comes from: `OWNER/REPO/.github/workflows/F@REF`.
    pub job_workflow_ref: Option<String>,
}

/// AWS credentials that cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS region is configured; set the region in monoship's AWS settings or AWS_REGION"
    )]
    NoRegion,
    #[error("role-to-assume `{role}` is not a role ARN; write it as `arn:aws:iam::ACCOUNT_ID:role/NAME`")]
    BadRoleArn { role: String },
    #[error("role session name `{name}` is invalid; use 2 to 64 letters, digits or `+=,.@_-`")]
    BadSessionName { name: String },
    #[error("{}", no_id_token_message(.role, *.in_actions))]
    NoIdToken { role: String, in_actions: bool },
    #[error("ACTIONS_ID_TOKEN_REQUEST_URL `{url}` is not a URL ({why}); it comes from the runner, re-run the job")]
    BadIdTokenUrl { url: String, why: String },
    #[error("cannot set up an HTTPS client for GitHub's OIDC token service")]
    HttpClient {
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot reach GitHub's OIDC token service after {attempts} attempts; the runner may be having trouble, re-run the job")]
    IdTokenUnreachable {
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("GitHub's OIDC token service answered HTTP {status}{}: {body}; re-run the job, and check it has `permissions: id-token: write`", if *.attempts > 1 { format!(" {} times", .attempts) } else { String::new() })]
    IdTokenStatus {
        status: u16,
        attempts: u32,
        body: String,
    },
    #[error("GitHub's OIDC token service answered without a token ({why}); re-run the job")]
    IdTokenMalformed { why: String },
    #[error("{}", role_refused_message(.role, .code, .message, .claims.as_deref()))]
    RoleRefused {
        role: String,
        /// AWS's error code: `AccessDenied`, `InvalidIdentityToken`, `IDPRejectedClaim`.
        code: String,
        /// AWS's message, as sent.
        message: String,
        /// The token's claims, when it could be decoded.
        claims: Option<Box<OidcClaims>>,
    },
    #[error("AWS STS refused AssumeRoleWithWebIdentity for `{role}` ({code}: {message})")]
    AssumeRoleFailed {
        role: String,
        code: String,
        message: String,
    },
    #[error("cannot reach AWS STS to assume `{role}`")]
    StsUnreachable {
        role: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("AWS STS answered AssumeRoleWithWebIdentity for `{role}` without credentials")]
    NoSessionCredentials { role: String },
}

/// Loads the AWS configuration every client of the run is built from.
///
/// By default the credentials come from the SDK's default chain: environment keys,
/// `AWS_WEB_IDENTITY_TOKEN_FILE`, profiles, container and instance metadata. When
/// `settings.role_to_assume` is set they come instead from the job's GitHub OIDC token
/// (`ACTIONS_ID_TOKEN_REQUEST_URL` and `_TOKEN`), exchanged with
/// `sts:AssumeRoleWithWebIdentity` now and again whenever the session nears expiry; keys in
/// the environment are then ignored.
///
/// `env` is how this function reads the environment: the region (`AWS_REGION`,
/// `AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL` (which sends every AWS call to that endpoint),
/// static keys (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the
/// `ACTIONS_ID_TOKEN_REQUEST_*` pair and `GITHUB_ACTIONS`.
///
/// `mask` is called with every secret this function or its credentials provider obtains:
/// the OIDC request token, the OIDC token, and each role session's access key id, secret key
/// and session token; always before the secret is used or could be logged. In a GitHub
/// Actions job it should print `::add-mask::` for it. Keys the caller supplied through the
/// environment are not passed to it.
///
/// Every AWS client built from the result retries a call at most 5 times (throttling
/// included) and gives up on one after 2 minutes.
///
/// # Errors
/// No region anywhere; a role to assume without an OIDC token (the job lacks
/// `permissions: id-token: write`); the token service or STS unreachable or refusing, with
/// the token's claims when STS refuses the role.
///
/// # Caveats
/// The rest of the default chain (web identity file, profiles, metadata services) is read by
/// the SDK from the process environment, which it offers no way to substitute.
pub async fn load(
    settings: &AwsSettings,
    env: &dyn Fn(&str) -> Option<String>,
    mask: impl Fn(&str) + Send + Sync + 'static,
) -> Result<SdkConfig, AwsError> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        // The OIDC exchange is two HTTP round trips with retries: more than the default 5 s.
        .identity_cache(
            IdentityCache::lazy()
                .load_timeout(Duration::from_secs(60))
                .buffer_time(REFRESH_BEFORE_EXPIRY)
                .build(),
        );
    let region = settings.region.clone();
    if let Some(region) = region
        .or_else(|| var("AWS_REGION"))
        .or_else(|| var("AWS_DEFAULT_REGION"))
    {
        loader = loader.region(Region::new(region));
    }
    if let Some(endpoint) = var("AWS_ENDPOINT_URL") {
        loader = loader.endpoint_url(endpoint);
    }
    let config = match &settings.role_to_assume {
        None => {
            // The env provider leads the default chain; reading the keys here lets `env`
            // stand in for the process environment.
            if let (Some(id), Some(key)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
            {
                let keys = Credentials::new(id, key, var("AWS_SESSION_TOKEN"), None, "Environment");
                loader = loader.credentials_provider(keys);
            }
            loader.load().await
        }
        Some(role) => {
            validate_role_arn(role)?;
            let session_name =
                (settings.role_session_name.as_deref()).unwrap_or(DEFAULT_SESSION_NAME);
            validate_session_name(session_name)?;
            let audience = settings.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
            let Some(token) = IdTokenRequest::from_env(&var, audience)? else {
                return Err(AwsError::NoIdToken {
                    role: role.clone(),
                    in_actions: var("GITHUB_ACTIONS").as_deref() == Some("true"),
                });
            };
            mask(token.bearer.expose());
            // AssumeRoleWithWebIdentity is unsigned: STS needs no credentials of its own.
            let base = loader.no_credentials().load().await;
            if base.region().is_none() {
                return Err(AwsError::NoRegion);
            }
            let sts = aws_sdk_sts::Client::new(&base);
            let provider =
                GithubOidcCredentials::start(token, role, session_name, sts, Box::new(mask))
                    .await?;
            (base.to_builder())
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build()
        }
    };
    match config.region() {
        Some(_) => Ok(config),
        None => Err(AwsError::NoRegion),
    }
}

/// The claims of a JWT's payload, without verifying anything: for explaining a refusal.
/// `None` when `jwt` is not three dot-separated parts with a base64url JSON object in the
/// middle.
pub fn decode_claims(jwt: &str) -> Option<OidcClaims> {
    let mut parts = jwt.trim().split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
    let text = |key: &str| claims.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let aud = match claims.get("aud") {
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        Some(serde_json::Value::Array(many)) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Some(OidcClaims {
        sub: text("sub"),
        aud,
        git_ref: text("ref"),
        environment: text("environment"),
        repository: text("repository"),
        job_workflow_ref: text("job_workflow_ref"),
    })
}

/// The retry policy of every AWS client monoship builds: bounded, with backoff.
pub(crate) fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(AWS_MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(500))
        .with_max_backoff(Duration::from_secs(10))
}

/// The time limits of every AWS client monoship builds.
pub(crate) fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(120))
        .build()
}

fn validate_role_arn(role: &str) -> Result<(), AwsError> {
    let parts: Vec<&str> = role.splitn(6, ':').collect();
    let valid = matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if !partition.is_empty() && !account.is_empty() && resource.starts_with("role/") && resource.len() > 5);
    if valid {
        Ok(())
    } else {
        Err(AwsError::BadRoleArn {
            role: role.to_string(),
        })
    }
}

fn validate_session_name(name: &str) -> Result<(), AwsError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    if (2..=64).contains(&name.len()) && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(AwsError::BadSessionName {
            name: name.to_string(),
        })
    }
}

fn no_id_token_message(role: &str, in_actions: bool) -> String {
    if in_actions {
        format!(
            "role-to-assume `{role}` needs the job's GitHub OIDC token, but \
             ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN are not set: add `permissions: id-token: write` \
             to the job (fork pull requests cannot get one)"
        )
    } else {
        format!(
            "role-to-assume `{role}` needs a GitHub OIDC token, which only a GitHub Actions job \
             with `permissions: id-token: write` has (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN); \
             outside Actions, leave role-to-assume unset and use your own AWS credentials"
        )
    }
}

/// Why STS refused the token, next to what the token claims: a trust-policy mismatch is
/// nearly always the cause, and the claims show which one.
fn role_refused_message(
    role: &str,
    code: &str,
    message: &str,
    claims: Option<&OidcClaims>,
) -> String {
    let mut text = format!(
        "AWS refused to let the job's GitHub OIDC token assume `{role}` ({code}: {message})"
    );
    let Some(claims) = claims else {
        text.push_str(
            "; the token's claims could not be decoded; the role's trust policy must allow the \
             token's `sub` and `aud`",
        );
        return text;
    };
    let shown = |value: Option<&str>| match value {
        Some(value) => format!("`{value}`"),
        None => "(none)".to_string(),
    };
    let aud = claims.aud.join(",");
    text.push_str(&format!(
        "; the token has sub {}, aud {}, ref {}, environment {}, repository {}; \
         the role's trust policy must allow this `sub` (condition key \
         `token.actions.githubusercontent.com:sub`, case-sensitive) and this `aud`",
        shown(claims.sub.as_deref()),
        shown((!aud.is_empty()).then_some(aud.as_str())),
        shown(claims.git_ref.as_deref()),
        shown(claims.environment.as_deref()),
        shown(claims.repository.as_deref()),
    ));
    if claims.environment.is_some() {
        text.push_str(
            "; a job with an `environment` gets `repo:OWNER/REPO:environment:NAME` as its `sub`, \
             not the branch",
        );
    }
    text
}

/// How to ask GitHub for the job's OIDC token: from `ACTIONS_ID_TOKEN_REQUEST_URL` and
/// `_TOKEN`, with the audience added.
struct IdTokenRequest {
    http: reqwest::Client,
    url: reqwest::Url,
    bearer: Secret,
}

impl IdTokenRequest {
    /// Reads the runner's variables; `None` when the job has no `id-token: write`.
    fn from_env(
        var: &dyn Fn(&str) -> Option<String>,
        audience: &str,
    ) -> Result<Option<IdTokenRequest>, AwsError> {
        let (Some(url), Some(bearer)) = (
            var("ACTIONS_ID_TOKEN_REQUEST_URL"),
            var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
        ) else {
            return Ok(None);
        };
        let mut parsed = reqwest::Url::parse(&url).map_err(|e| AwsError::BadIdTokenUrl {
            url: url.clone(),
            why: e.to_string(),
        })?;
        parsed.query_pairs_mut().append_pair("audience", audience);
        let http = reqwest::Client::builder()
            .timeout(ID_TOKEN_TIMEOUT)
            .connect_timeout(ID_TOKEN_TIMEOUT / 2)
            .build()
            .map_err(|source| AwsError::HttpClient { source })?;
        Ok(Some(IdTokenRequest {
            http,
            url: parsed,
            bearer: Secret::new(bearer),
        }))
    }

    /// `GET` the token, retried on network errors, 429 and 5xx (see [`ID_TOKEN_RETRIES`]).
    /// `mask` sees it first.
    async fn fetch(&self, mask: &(dyn Fn(&str) + Send + Sync)) -> Result<Secret, AwsError> {
        let attempt = |attempt| async move {
            let sent = (self.http.get(self.url.clone()))
                .bearer_auth(self.bearer.expose())
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    let token = read_id_token(response, attempt).await;
                    token.map_err(IdTokenFailure::Fatal)
                }
                Ok(response) => Err(IdTokenFailure::Status(response)),
                Err(source) => Err(IdTokenFailure::Unreachable(source)),
            }
        };
        let on_retry = |failure: &IdTokenFailure, r: Retrying| {
            let retry = match failure {
                IdTokenFailure::Status(response) => format!("HTTP {}", response.status()),
                // reqwest's message names the URL, which holds no secret.
                IdTokenFailure::Unreachable(source) => source.to_string(),
                IdTokenFailure::Fatal(error) => error.to_string(),
            };
            let delay = r.wait;
            tracing::warn!("GitHub OIDC token request failed ({retry}); retrying in {delay:?}");
        };
        let classify = IdTokenFailure::verdict;
        let gave_up = match retry(&ID_TOKEN_RETRIES, classify, on_retry, attempt).await {
            Ok(jwt) => {
                mask(&jwt);
                return Ok(Secret::new(jwt));
            }
            Err(gave_up) => gave_up,
        };
        let attempts = gave_up.attempts;
        Err(match gave_up.error {
            IdTokenFailure::Status(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                AwsError::IdTokenStatus {
                    status,
                    attempts,
                    body: shorten(body.trim(), 300),
                }
            }
            IdTokenFailure::Unreachable(source) => {
                AwsError::IdTokenUnreachable { attempts, source }
            }
            IdTokenFailure::Fatal(error) => error,
        })
    }
}

/// A failed attempt at the OIDC token.
enum IdTokenFailure {
    /// An answer that is not a success; its body is read only for the final error.
    Status(reqwest::Response),
    Unreachable(reqwest::Error),
    /// A success that holds no token.
    Fatal(AwsError),
}

impl IdTokenFailure {
    fn verdict(&self) -> Verdict {
        let again = match self {
            IdTokenFailure::Status(response) => id_token_status_is_transient(response.status()),
            IdTokenFailure::Unreachable(_) => true,
            IdTokenFailure::Fatal(_) => false,
        };
        if again {
            Verdict::Retry
        } else {
            Verdict::Fatal
        }
    }
}

/// Whether the token service may answer differently soon: throttling or a server error.
fn id_token_status_is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The JWT of a successful answer, `attempt` being the attempt that got it.
async fn read_id_token(response: reqwest::Response, attempt: u32) -> Result<String, AwsError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        value: Option<String>,
    }
    let body = response
        .bytes()
        .await
        .map_err(|source| AwsError::IdTokenUnreachable {
            attempts: attempt,
            source,
        })?;
    let answer: Answer = serde_json::from_slice(&body).map_err(|e| AwsError::IdTokenMalformed {
        why: format!("not JSON: {e}"),
    })?;
    answer
        .value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| AwsError::IdTokenMalformed {
            why: "no `value`".to_string(),
        })
}

/// Role sessions minted from the job's OIDC token: one now, then a new one whenever the
/// SDK's identity cache finds the current one near expiry.
#[derive(Clone)]
struct GithubOidcCredentials {
    inner: Arc<OidcExchange>,
}

struct OidcExchange {
    token: IdTokenRequest,
    role: String,
    session_name: String,
    sts: aws_sdk_sts::Client,
    mask: Box<dyn Fn(&str) + Send + Sync>,
    /// The session minted by [`GithubOidcCredentials::start`], handed out once.
    first: Mutex<Option<Credentials>>,
}

impl GithubOidcCredentials {
    /// Exchanges a first token now, so a refusal surfaces here with the token's claims
    /// rather than inside the first AWS call.
    async fn start(
        token: IdTokenRequest,
        role: &str,
        session_name: &str,
        sts: aws_sdk_sts::Client,
        mask: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<GithubOidcCredentials, AwsError> {
        let exchange = OidcExchange {
            token,
            role: role.to_string(),
            session_name: session_name.to_string(),
            sts,
            mask,
            first: Mutex::new(None),
        };
        let first = exchange.exchange().await?;
        *exchange.first.lock().unwrap() = Some(first);
        Ok(GithubOidcCredentials {
            inner: Arc::new(exchange),
        })
    }
}

impl fmt::Debug for GithubOidcCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubOidcCredentials")
            .field("role", &self.inner.role)
            .field("session_name", &self.inner.session_name)
            .finish_non_exhaustive()
    }
}

impl ProvideCredentials for GithubOidcCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let first = self.inner.first.lock().unwrap().take();
            let fresh = |c: &Credentials| {
                c.expiry()
                    .is_some_and(|at| at > SystemTime::now() + REFRESH_BEFORE_EXPIRY)
            };
            match first {
                Some(credentials) if fresh(&credentials) => Ok(credentials),
                _ => self
                    .inner
                    .exchange()
                    .await
                    .map_err(CredentialsError::provider_error),
            }
        })
    }
}

impl OidcExchange {
    /// A new OIDC token, exchanged for a role session.
    async fn exchange(&self) -> Result<Credentials, AwsError> {
        let jwt = self.token.fetch(&*self.mask).await?;
        let claims = decode_claims(jwt.expose());
        if let Some(sub) = claims.as_ref().and_then(|c| c.sub.as_deref()) {
            tracing::info!(
                "assuming {} with the job's OIDC token (sub {sub})",
                self.role
            );
        }
        let answer = (self.sts.assume_role_with_web_identity())
            .role_arn(&self.role)
            .role_session_name(&self.session_name)
            .web_identity_token(jwt.expose())
            .send()
            .await
            .map_err(|e| self.sts_error(e, claims))?;
        let Some(session) = answer.credentials() else {
            return Err(AwsError::NoSessionCredentials {
                role: self.role.clone(),
            });
        };
        (self.mask)(session.access_key_id());
        (self.mask)(session.secret_access_key());
        (self.mask)(session.session_token());
        Ok(Credentials::new(
            session.access_key_id(),
            session.secret_access_key(),
            Some(session.session_token().to_string()),
            SystemTime::try_from(*session.expiration()).ok(),
            "GithubOidc",
        ))
    }

    fn sts_error(
        &self,
        error: SdkError<AssumeRoleWithWebIdentityError>,
        claims: Option<OidcClaims>,
    ) -> AwsError {
        let role = self.role.clone();
        if !matches!(error, SdkError::ServiceError(_)) {
            return AwsError::StsUnreachable {
                role,
                source: Box::new(error),
            };
        }
        let code = error.code().unwrap_or("unknown").to_string();
        let message = error.message().unwrap_or("no message").to_string();
        match code.as_str() {
            "AccessDenied" | "InvalidIdentityToken" | "IDPRejectedClaim" => AwsError::RoleRefused {
                role,
                code,
                message,
                claims: claims.map(Box::new),
            },
            _ => AwsError::AssumeRoleFailed {
                role,
                code,
                message,
            },
        }
    }
}

/// At most `max` characters of `text`, marked when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::{Decision, Stop};

    #[test]
    fn the_id_token_is_asked_3_times_on_throttling_and_server_errors() {
        let ms = Duration::from_millis;
        let decisions: Vec<Decision> = (1..=3)
            .map(|n| ID_TOKEN_RETRIES.decide(n, Verdict::Retry))
            .collect();
        assert_eq!(
            decisions,
            [
                Decision::Wait(ms(500)),
                Decision::Wait(ms(1000)),
                Decision::Stop(Stop::Exhausted)
            ]
        );
        for again in [429, 500, 502, 503] {
            assert!(id_token_status_is_transient(
                StatusCode::from_u16(again).unwrap()
            ));
        }
        for final_answer in [400, 401, 403, 404] {
            let status = StatusCode::from_u16(final_answer).unwrap();
            assert!(!id_token_status_is_transient(status));
        }
    }
}
