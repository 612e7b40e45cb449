//! The effects a run shares across stages, made once: the async runtime every network call
//! runs on, and the GitHub client that detection (changed files) and the report (comment,
//! Deployments) both use, and the run's [`Interrupt`] (SIGINT, SIGTERM) every stage asks.

use std::cell::OnceCell;
use std::future::Future;

use super::context::ActionRun;
use super::Error;
use crate::detect::api::ApiFiles;
use crate::detect::range::{ChangeListing, ListingError};
use crate::github::{GithubApi, GithubError};
use crate::interrupt::Interrupt;
use crate::secret::Secret;

/// One run's runtime, GitHub client and interrupt.
pub(crate) struct Session {
    runtime: tokio::runtime::Runtime,
    /// Set by SIGINT or SIGTERM: start nothing new, finish or roll back what is in flight.
    pub interrupt: Interrupt,
    github: Option<GithubSettings>,
    client: OnceCell<GithubApi>,
}

/// Where the GitHub client points; it is built on first use, so runs that never call GitHub
/// never need a repository or token.
struct GithubSettings {
    api_url: String,
    repository: Option<String>,
    token: Option<Secret>,
}

/// Why the GitHub client cannot be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("GITHUB_REPOSITORY is not set, so there is no repository to report to")]
    NoRepository,
    #[error("there is no GitHub token: the `token` input is empty (its default is `${{{{ github.token }}}}`) and GITHUB_TOKEN is unset")]
    NoToken,
    #[error(transparent)]
    Setup(GithubError),
}

impl Session {
    /// A session for a run; `action` is `None` outside GitHub Actions (no GitHub client then).
    /// `interrupt` is the run's, with its signal handlers already installed.
    ///
    /// # Errors
    /// When the runtime cannot start.
    pub(crate) fn new(action: Option<&ActionRun>, interrupt: Interrupt) -> Result<Session, Error> {
        // One thread: the stages are sequential, and the cluster client's background worker
        // must live on the runtime that later runs the deploys.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Ok(Session {
            runtime,
            interrupt,
            github: action.map(|a| GithubSettings {
                api_url: a.api_url.clone(),
                repository: a.repository.clone(),
                token: a.token.clone(),
            }),
            client: OnceCell::new(),
        })
    }

    /// Runs `future` to completion on the run's runtime.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The GitHub client; `None` outside GitHub Actions.
    pub(crate) fn github(&self, need_token: bool) -> Option<Result<&GithubApi, ClientError>> {
        let settings = self.github.as_ref()?;
        Some(self.client_for(settings, need_token))
    }

    fn client_for(
        &self,
        settings: &GithubSettings,
        need_token: bool,
    ) -> Result<&GithubApi, ClientError> {
        let repository = settings
            .repository
            .as_deref()
            .ok_or(ClientError::NoRepository)?;
        if need_token && settings.token.is_none() {
            return Err(ClientError::NoToken);
        }
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let token = settings.token.as_ref().map(Secret::expose);
        let client =
            GithubApi::new(&settings.api_url, repository, token).map_err(ClientError::Setup)?;
        Ok(self.client.get_or_init(|| client))
    }

    /// The API listing of changed files, in GitHub Actions.
    pub(crate) fn change_listing(&self) -> Option<&dyn ChangeListing> {
        self.github.as_ref().map(|_| self as &dyn ChangeListing)
    }
}

impl Session {
    fn listing_client(&self) -> Result<&GithubApi, ListingError> {
        match self.github(false).expect("only asked in GitHub Actions") {
            Ok(client) => Ok(client),
            Err(ClientError::Setup(e)) => Err(ListingError::Setup(e)),
            Err(_) => Err(ListingError::NoRepository),
        }
    }
}

impl ChangeListing for Session {
    fn pull_request_files(
        &self,
        number: u64,
        changed_files: Option<u64>,
    ) -> Result<ApiFiles, ListingError> {
        let client = self.listing_client()?;
        self.block_on(client.pull_request_files(number, changed_files))
            .map_err(ListingError::Request)
    }

    fn compare(&self, base: &str, head: &str) -> Result<ApiFiles, ListingError> {
        let client = self.listing_client()?;
        self.block_on(client.compare(base, head))
            .map_err(ListingError::Request)
    }
}
