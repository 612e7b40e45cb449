//! Amazon ECR as a push target: the Docker login from `GetAuthorizationToken`, and making
//! sure a service's repository exists before its image is pushed.

use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::{
    ImageScanningConfiguration, ImageTagMutability, ImageTagMutabilityExclusionFilter,
    ImageTagMutabilityExclusionFilterType,
};
use base64::Engine;

use crate::aws::AWS_MAX_ATTEMPTS;
use crate::secret::Secret;

/// Tags monoship moves from one image to the next, kept mutable in the repositories it creates
/// with immutable tags (ECR wildcard filters).
pub const MOVING_TAGS: &[&str] = &["pr-*", "buildcache"];

/// How monoship uses ECR.
#[derive(Debug, Clone, Default)]
pub struct EcrSettings {
    /// The registry's account id. By default the caller's own account; cross-account pushes
    /// set it (the repository policy must then grant the caller).
    pub registry_id: Option<String>,
    /// Create a repository that does not exist yet. By default false: a missing repository
    /// is an error.
    pub create_repositories: bool,
    /// Created repositories scan each pushed image. False in `EcrSettings::default()`; the
    /// config's `registry.ecr.scan_on_push` defaults to true.
    pub scan_on_push: bool,
    /// Created repositories refuse to move an existing tag (`IMMUTABLE`). False (`MUTABLE`) in
    /// `EcrSettings::default()`; the config's `registry.ecr.immutable_tags` defaults to true.
    pub immutable_tags: bool,
    /// The registry host to push to and log in at (`HOST[:PORT]`). By default the host of
    /// the `proxyEndpoint` ECR returns with the token.
    pub endpoint: Option<String>,
}

/// An ECR client for one registry.
#[derive(Debug, Clone)]
pub struct Ecr {
    client: aws_sdk_ecr::Client,
    settings: EcrSettings,
    /// Whether the configuration has a credentials provider at all.
    has_credentials: bool,
}

/// What `docker login` needs for an ECR registry. The password is valid for 12 hours.
#[derive(Debug, Clone)]
pub struct EcrLogin {
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com`, or [`EcrSettings::endpoint`] when set.
    pub host: String,
    /// Always `AWS`.
    pub username: String,
    /// A credential: mask it (`::add-mask::`) before anything could print it.
    pub password: Secret,
    /// When ECR stops accepting the password.
    pub expires_at: Option<SystemTime>,
}

/// What [`Ecr::ensure_repository`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryState {
    Existed,
    Created,
}

/// An ECR call that failed, after the SDK's retries.
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error("AWS denied `{action}`{}: {message}; grant `{action}` to the role or user monoship runs as{}", on(.repository, .registry), if .registry.is_some() { " (cross-account: the repository policy must grant it too)" } else { "" })]
    AccessDenied {
        /// The IAM action: `ecr:GetAuthorizationToken`, `ecr:DescribeRepositories`, ...
        action: &'static str,
        repository: Option<String>,
        registry: Option<String>,
        message: String,
    },
    #[error("AWS rejected the credentials for `{action}` ({code}: {message}): they are expired or invalid; check role-to-assume or the AWS credentials the job provides")]
    BadCredentials {
        action: &'static str,
        code: String,
        message: String,
    },
    #[error("no AWS credentials for `{action}`: set role-to-assume (with `permissions: id-token: write`), or provide AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a web identity token file")]
    NoCredentials {
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot get AWS credentials for `{action}`")]
    CredentialsFailed {
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("AWS throttled `{action}`{} {attempts} times in a row; try again later, or run fewer jobs against this account at once", on(.repository, .registry))]
    Throttled {
        action: &'static str,
        repository: Option<String>,
        registry: Option<String>,
        attempts: u32,
    },
    #[error("ECR repository `{repository}` does not exist{}; create it, or set `create_repositories: true` so monoship creates it", in_registry(.registry))]
    RepositoryMissing {
        repository: String,
        registry: Option<String>,
    },
    #[error("ECR answered `{action}`{} with {code}: {message}", on(.repository, .registry))]
    Service {
        action: &'static str,
        repository: Option<String>,
        registry: Option<String>,
        code: String,
        message: String,
    },
    #[error("cannot reach ECR for `{action}`{}", on(.repository, .registry))]
    Unreachable {
        action: &'static str,
        repository: Option<String>,
        registry: Option<String>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("ECR's GetAuthorizationToken answer cannot be used: {why}")]
    BadAuthorization { why: String },
}

impl Ecr {
    /// A client from `config` (see [`crate::aws::load`]), with monoship's bounded retries
    /// and time limits whatever `config` holds.
    pub fn new(config: &SdkConfig, settings: EcrSettings) -> Ecr {
        let conf = aws_sdk_ecr::config::Builder::from(config)
            .retry_config(crate::aws::retry_config())
            .timeout_config(crate::aws::timeout_config())
            .build();
        let has_credentials = config.credentials_provider().is_some();
        Ecr {
            client: aws_sdk_ecr::Client::from_conf(conf),
            settings,
            has_credentials,
        }
    }

    /// The Docker login for the registry, from `ecr:GetAuthorizationToken`.
    ///
    /// The token opens every registry the caller may use, so none is named in the call
    /// (AWS deprecated `registryIds`); for a cross-account [`EcrSettings::registry_id`] the
    /// host is the returned `proxyEndpoint` with that account in place of the caller's.
    ///
    /// # Errors
    /// The call fails or is denied, or its token is not base64 `AWS:PASSWORD`.
    pub async fn login(&self) -> Result<EcrLogin, EcrError> {
        const ACTION: &str = "ecr:GetAuthorizationToken";
        let registry = self.settings.registry_id.as_deref();
        let answer = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| self.classify(e, ACTION, None, registry))?;
        let bad = |why: &str| EcrError::BadAuthorization {
            why: why.to_string(),
        };
        let data = answer
            .authorization_data()
            .first()
            .ok_or_else(|| bad("no authorization data"))?;
        let token = data.authorization_token().ok_or_else(|| bad("no token"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| bad("the token is not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad("the token is not text"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad("the token is not `USER:PASSWORD`"))?;
        let host = match (&self.settings.endpoint, data.proxy_endpoint()) {
            (Some(endpoint), _) => registry_host(endpoint),
            (None, Some(proxy)) => registry_host(proxy),
            (None, None) => return Err(bad("no proxyEndpoint, and no endpoint is configured")),
        };
        let host = match registry {
            Some(account) if self.settings.endpoint.is_none() => with_account(&host, account),
            _ => host,
        };
        Ok(EcrLogin {
            host,
            username: username.to_string(),
            password: Secret::new(password),
            expires_at: data
                .expires_at()
                .and_then(|at| SystemTime::try_from(*at).ok()),
        })
    }

    /// Makes sure the repository `name` exists, creating it when
    /// [`EcrSettings::create_repositories`] allows, with the scan-on-push and tag-mutability
    /// settings. An existing repository is left as it is. A repository created meanwhile by
    /// another job counts as existing.
    ///
    /// # Errors
    /// The repository is missing and may not be created, or a call fails or is denied.
    pub async fn ensure_repository(&self, name: &str) -> Result<RepositoryState, EcrError> {
        let registry = self.settings.registry_id.clone();
        let described = self
            .client
            .describe_repositories()
            .set_registry_id(registry.clone())
            .repository_names(name)
            .send()
            .await;
        match described {
            Ok(_) => return Ok(RepositoryState::Existed),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_repository_not_found_exception()) => {}
            Err(e) => {
                return Err(self.classify(
                    e,
                    "ecr:DescribeRepositories",
                    Some(name),
                    registry.as_deref(),
                ))
            }
        }
        if !self.settings.create_repositories {
            return Err(EcrError::RepositoryMissing {
                repository: name.to_string(),
                registry,
            });
        }
        // Immutable, except the tags that move by design: `pr-<n>` names a pull request's
        // latest image, `buildcache` the latest layer cache.
        let (mutability, exclusions) = if self.settings.immutable_tags {
            let moving = MOVING_TAGS
                .iter()
                .map(|filter| {
                    ImageTagMutabilityExclusionFilter::builder()
                        .filter_type(ImageTagMutabilityExclusionFilterType::Wildcard)
                        .filter(*filter)
                        .build()
                        .expect("type and filter are set")
                })
                .collect();
            (ImageTagMutability::ImmutableWithExclusion, Some(moving))
        } else {
            (ImageTagMutability::Mutable, None)
        };
        let scanning = ImageScanningConfiguration::builder()
            .scan_on_push(self.settings.scan_on_push)
            .build();
        let created = self
            .client
            .create_repository()
            .set_registry_id(registry.clone())
            .repository_name(name)
            .image_tag_mutability(mutability)
            .set_image_tag_mutability_exclusion_filters(exclusions)
            .image_scanning_configuration(scanning)
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::info!("created ECR repository {name}");
                Ok(RepositoryState::Created)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_repository_already_exists_exception()) =>
            {
                Ok(RepositoryState::Existed)
            }
            Err(e) => {
                Err(self.classify(e, "ecr:CreateRepository", Some(name), registry.as_deref()))
            }
        }
    }

    /// Sorts an SDK error into what the user has to do about it.
    fn classify<E>(
        &self,
        error: SdkError<E>,
        action: &'static str,
        repository: Option<&str>,
        registry: Option<&str>,
    ) -> EcrError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let repository = repository.map(str::to_string);
        let registry = registry.map(str::to_string);
        let (code, message) = match &error {
            SdkError::ServiceError(_) => (
                error.code().unwrap_or("unknown").to_string(),
                error.message().unwrap_or("no message").to_string(),
            ),
            // Without credentials the call fails before any request is sent.
            SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
                if !self.has_credentials || credentials_failure(&error).is_some() =>
            {
                let source = Box::new(error);
                return match credentials_failure(&*source) {
                    None | Some(CredentialsError::CredentialsNotLoaded(_)) => {
                        EcrError::NoCredentials { action, source }
                    }
                    Some(_) => EcrError::CredentialsFailed { action, source },
                };
            }
            _ => {
                return EcrError::Unreachable {
                    action,
                    repository,
                    registry,
                    source: Box::new(error),
                }
            }
        };
        match code.as_str() {
            "AccessDeniedException" | "AccessDenied" => EcrError::AccessDenied {
                action,
                repository,
                registry,
                message,
            },
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch" => EcrError::BadCredentials {
                action,
                code,
                message,
            },
            "ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded" => {
                EcrError::Throttled {
                    action,
                    repository,
                    registry,
                    attempts: AWS_MAX_ATTEMPTS,
                }
            }
            _ => EcrError::Service {
                action,
                repository,
                registry,
                code,
                message,
            },
        }
    }
}

/// `HOST[:PORT]` of a registry URL: no scheme, no trailing slash.
fn registry_host(url: &str) -> String {
    let host = url.split_once("://").map_or(url, |(_, rest)| rest);
    host.trim_end_matches('/').to_string()
}

/// `ACCOUNT.dkr.ecr.REGION.amazonaws.com` with another account in front.
fn with_account(host: &str, account: &str) -> String {
    match host.split_once(".dkr.ecr.") {
        Some((_, rest)) => format!("{account}.dkr.ecr.{rest}"),
        None => host.to_string(),
    }
}

/// The credentials failure in an error chain, if that is what failed.
fn credentials_failure<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a CredentialsError> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(failure) = error.downcast_ref::<CredentialsError>() {
            return Some(failure);
        }
        next = error.source();
    }
    None
}

fn on(repository: &Option<String>, registry: &Option<String>) -> String {
    match repository {
        Some(repository) => format!(" on repository `{repository}`{}", in_registry(registry)),
        None => in_registry(registry),
    }
}

fn in_registry(registry: &Option<String>) -> String {
    match registry {
        Some(registry) => format!(" in registry {registry}"),
        None => String::new(),
    }
}
