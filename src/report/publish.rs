//! Publish: the run's report on GitHub itself, past the files of the job. The sticky
//! pull-request comment (rendered by [`crate::report::comment`]) and, for `ship`, GitHub
//! Deployments with their statuses.
//!
//! Requests go through [`GithubApi`] (retries, rate limits, token handling). Callers treat every
//! error here as a warning: by the time anything is published, images are pushed and rollouts
//! done, and a missing comment must not fail a deploy.

use std::ops::ControlFlow;

use serde::Deserialize;
use serde_json::json;

use crate::deploy::{RolloutResult, RolloutStatus};
use crate::github::{parse, Call, GithubApi, GithubError, PER_PAGE};
use crate::image::push::{ImageResult, ImageStatus};
use crate::plan::Plan;
use crate::report::comment::CommentKey;

/// The workflow permission a comment needs.
pub const COMMENT_PERMISSION: &str = "pull-requests: write";
/// The workflow permission Deployments need.
pub const DEPLOYMENTS_PERMISSION: &str = "deployments: write";
/// The workflow permission commit statuses need.
pub const STATUSES_PERMISSION: &str = "statuses: write";
/// The environment of Deployments and of the `ship` comment when nothing names one.
pub const DEFAULT_ENVIRONMENT: &str = "production";
/// GitHub's limit for a deployment's or status's description.
const DESCRIPTION_LIMIT: usize = 140;
/// GitHub's limit for an environment name.
pub const ENVIRONMENT_NAME_LIMIT: usize = 255;

const FORK_HINT: &str = "; a pull request from a fork gets a read-only token whatever `permissions:` says, so there the job summary is the report";

/// What happened to the sticky comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentOutcome {
    /// A new comment, with its id.
    Created(u64),
    /// The comment with this id was updated in place.
    Updated(u64),
}

/// A GitHub deployment state, as `POST …/deployments/{id}/statuses` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    /// Waiting for the services it depends on.
    Queued,
    InProgress,
    Success,
    Failure,
    /// The deployment never happened (skipped because a dependency or a build failed).
    Error,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Queued => "queued",
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            DeploymentState::Error => "error",
        }
    }
}

/// One deployment to record: a service's image going to an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    pub service: String,
    /// `repo@sha256:…`.
    pub image: String,
    /// Where the image goes, as the config names it.
    pub targets: Vec<String>,
    /// The commit deployed (the run's head).
    pub commit: String,
    pub environment: String,
}

/// One status of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentStatus {
    pub state: DeploymentState,
    pub description: String,
    /// The workflow run, shown as the deployment's log.
    pub log_url: Option<String>,
    pub environment: String,
}

/// A commit status state, as `POST …/statuses/{sha}` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    Success,
    Failure,
    /// The service's stage never finished (a dependency failed, or the stage stopped).
    Error,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }
}

/// One service's commit status: context `monoship/<service>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub context: String,
    pub state: StatusState,
    pub description: String,
}

/// What the run knows of each service, for its commit status: `images` is `None` for `plan`,
/// `rollouts` is `None` unless the deploy stage of a `ship` ran.
pub struct StatusInput<'a> {
    pub plan: &'a Plan,
    /// The services of this job (all configured ones unless `services` narrowed it).
    pub services: &'a [String],
    pub images: Option<&'a [ImageResult]>,
    pub rollouts: Option<&'a [RolloutResult]>,
    /// `ship` (rollouts expected) rather than `build` or `plan`.
    pub ship: bool,
}

/// One status per service of the job, so branch protection can require each one: unchanged
/// and shipped services succeed, failed builds and rollouts fail. Pure.
pub fn commit_statuses(input: &StatusInput<'_>) -> Vec<CommitStatus> {
    input
        .services
        .iter()
        .map(|service| {
            let (state, description) = service_status(input, service);
            CommitStatus {
                context: format!("monoship/{service}"),
                state,
                description: clip(&description),
            }
        })
        .collect()
}

fn service_status(input: &StatusInput<'_>, service: &str) -> (StatusState, String) {
    let plan = input.plan;
    if !plan.changed.iter().any(|c| c == service) {
        return match &plan.base {
            Some(base) => (
                StatusState::Success,
                format!("unchanged since {}", short(base)),
            ),
            None => (StatusState::Success, "unchanged".into()),
        };
    }
    let Some(images) = input.images else {
        return (StatusState::Success, "changed: planned".into());
    };
    let Some(image) = images.iter().find(|i| i.service == service) else {
        return (
            StatusState::Error,
            "changed, but no image was built (the build stage stopped)".into(),
        );
    };
    let built = match image.status {
        ImageStatus::Failed => {
            let error = image.error.as_deref().unwrap_or("no reason given");
            return (StatusState::Failure, format!("build failed: {error}"));
        }
        ImageStatus::Built => "built",
        ImageStatus::Reused => "image reused",
    };
    if !input.ship {
        return (StatusState::Success, built.into());
    }
    let Some(rollouts) = input.rollouts else {
        return (
            StatusState::Error,
            format!("{built}, not deployed: the deploy stage did not run"),
        );
    };
    rollout_status(built, rollouts.iter().filter(|r| r.service == service))
}

fn rollout_status<'r>(
    built: &str,
    mine: impl Iterator<Item = &'r RolloutResult>,
) -> (StatusState, String) {
    let mine: Vec<&RolloutResult> = mine.collect();
    let word = |r: &RolloutResult| {
        format!(
            "{} {}: {}",
            r.workload,
            r.status.as_str(),
            r.reason.as_deref().unwrap_or("no reason given")
        )
    };
    let failed = |s: RolloutStatus| matches!(s, RolloutStatus::Failed | RolloutStatus::RolledBack);
    if let Some(r) = mine.iter().find(|r| failed(r.status)) {
        return (StatusState::Failure, word(r));
    }
    if let Some(r) = mine.iter().find(|r| r.status == RolloutStatus::Skipped) {
        return (StatusState::Error, word(r));
    }
    match mine.len() {
        0 => (StatusState::Success, format!("{built}; nothing to deploy")),
        n => (
            StatusState::Success,
            format!("{built}; deployed {n} workload(s)"),
        ),
    }
}

/// A commit's first 7 characters, as GitHub shows it.
fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// The environment a `ship` deploys to, as Deployments and the `ship` comment name it: the
/// `environment` input, else the kubeconfig context, else the EKS cluster's name, else
/// `production`.
pub fn environment_name(
    input: Option<&str>,
    context: Option<&str>,
    eks_cluster: Option<&str>,
) -> String {
    [input, context, eks_cluster]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|name| !name.is_empty())
        .unwrap_or(DEFAULT_ENVIRONMENT)
        .to_string()
}

#[derive(Deserialize)]
struct IssueComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<Author>,
}

#[derive(Deserialize)]
struct Author {
    login: String,
}

/// The sticky comment's fate, and the comments that carry its marker but were left alone
/// because someone else wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    pub outcome: CommentOutcome,
    /// The login the comment is posted as (the token's).
    pub author: String,
    /// `(comment id, its author)` of every marked comment by another author.
    pub ignored: Vec<(u64, String)>,
}

/// Which comment of a page is ours: the first whose first line is the marker and whose
/// author is `author`; the marked comments of anyone else are added to `ignored`. Pure.
fn ours_on_page(
    comments: Vec<IssueComment>,
    key: &CommentKey,
    author: &str,
    ignored: &mut Vec<(u64, String)>,
) -> Option<u64> {
    for c in comments {
        if !c.body.as_deref().is_some_and(|b| key.marks(b)) {
            continue;
        }
        let login = c.user.map(|u| u.login).unwrap_or_default();
        if login == author {
            return Some(c.id);
        }
        ignored.push((c.id, login));
    }
    None
}

#[derive(Deserialize)]
struct Created {
    id: u64,
}

impl GithubApi {
    /// Updates the pull request's comment marked by `key`, or creates it: the comments are
    /// listed 100 a page (`Link: rel="next"`) until the first whose first line is the marker
    /// and whose author is the token's login ([`GithubApi::token_login`]); that one is
    /// `PATCH`ed, else a new one is `POST`ed. A marked comment by anyone else is never edited
    /// (anyone can paste the marker); it is listed in [`Upserted::ignored`]. `body` must start
    /// with the marker.
    ///
    /// # Errors
    /// See [`GithubError`]; a token that may not comment (a fork's pull request, a missing
    /// `pull-requests: write`) is [`GithubError::PermissionDenied`] or
    /// [`GithubError::NotFound`].
    pub async fn upsert_comment(
        &self,
        pull_request: u64,
        key: &CommentKey,
        body: &str,
    ) -> Result<Upserted, GithubError> {
        let author = self.token_login().await?;
        let repository = self.repository();
        let find = Call {
            what: format!(
                "finding monoship's comment on pull request #{pull_request} in {repository}"
            ),
            permission: COMMENT_PERMISSION,
            hint: FORK_HINT,
            repeatable: true,
        };
        let mut found = None;
        let mut ignored = Vec::new();
        self.for_each_page(
            self.repo_url(&format!(
                "/issues/{pull_request}/comments?per_page={PER_PAGE}"
            )),
            &find,
            |comments: Vec<IssueComment>| {
                found = ours_on_page(comments, key, &author, &mut ignored);
                match found {
                    Some(_) => ControlFlow::Break(()),
                    None => ControlFlow::Continue(()),
                }
            },
        )
        .await?;
        let payload = json!({ "body": body });
        let outcome = match found {
            Some(id) => {
                let call = Call {
                    what: format!(
                        "updating comment {id} on pull request #{pull_request} in {repository}"
                    ),
                    permission: COMMENT_PERMISSION,
                    hint: FORK_HINT,
                    repeatable: true,
                };
                self.patch(
                    &self.repo_url(&format!("/issues/comments/{id}")),
                    &payload,
                    &call,
                )
                .await?;
                CommentOutcome::Updated(id)
            }
            None => {
                let call = Call {
                    what: format!("commenting on pull request #{pull_request} in {repository}"),
                    permission: COMMENT_PERMISSION,
                    hint: FORK_HINT,
                    repeatable: false,
                };
                let reply = self
                    .post(
                        &self.repo_url(&format!("/issues/{pull_request}/comments")),
                        &payload,
                        &call,
                    )
                    .await?;
                let created: Created = parse(&reply.body, &call)?;
                CommentOutcome::Created(created.id)
            }
        };
        Ok(Upserted {
            outcome,
            author,
            ignored,
        })
    }

    /// Creates a deployment of `record.commit` to `record.environment` and returns its id:
    /// `auto_merge: false` and `required_contexts: []`, so GitHub neither merges branches nor
    /// waits for commit statuses; `task` is `deploy:<service>` and `payload` holds the image.
    ///
    /// # Errors
    /// See [`GithubError`]; a missing `deployments: write` is [`GithubError::PermissionDenied`].
    pub async fn create_deployment(&self, record: &DeploymentRecord) -> Result<u64, GithubError> {
        let call = Call {
            what: format!(
                "creating a deployment of {} to {} in {}",
                record.service,
                record.environment,
                self.repository()
            ),
            permission: DEPLOYMENTS_PERMISSION,
            hint: "",
            repeatable: false,
        };
        let body = json!({
            "ref": record.commit,
            "task": format!("deploy:{}", record.service),
            "auto_merge": false,
            "required_contexts": [],
            "environment": record.environment,
            "transient_environment": false,
            "description": clip(&format!("monoship: {} to {}", record.service, record.targets.join(", "))),
            "payload": {
                "service": record.service,
                "image": record.image,
                "targets": record.targets,
            },
        });
        let reply = self
            .post(&self.repo_url("/deployments"), &body, &call)
            .await?;
        let created: Created = parse(&reply.body, &call)?;
        Ok(created.id)
    }

    /// Adds a status to deployment `id`. A final status leaves the other services'
    /// deployments of the environment as they are (`auto_inactive: false`): each service is
    /// its own deployment, and one service's success does not retire another's.
    ///
    /// # Errors
    /// See [`GithubError`].
    pub async fn create_deployment_status(
        &self,
        id: u64,
        status: &DeploymentStatus,
    ) -> Result<(), GithubError> {
        let call = Call {
            what: format!(
                "setting deployment {id} in {} to {}",
                self.repository(),
                status.state.as_str()
            ),
            permission: DEPLOYMENTS_PERMISSION,
            hint: "",
            repeatable: false,
        };
        let mut body = json!({
            "state": status.state.as_str(),
            "description": clip(&status.description),
            "environment": status.environment,
            "auto_inactive": false,
        });
        if let Some(url) = &status.log_url {
            body["log_url"] = json!(url);
        }
        self.post(
            &self.repo_url(&format!("/deployments/{id}/statuses")),
            &body,
            &call,
        )
        .await?;
        Ok(())
    }
}

impl GithubApi {
    /// Sets the status `status.context` of commit `sha`, linking to `target_url`.
    ///
    /// # Errors
    /// See [`GithubError`]; a missing `statuses: write` is [`GithubError::PermissionDenied`].
    pub async fn create_commit_status(
        &self,
        sha: &str,
        status: &CommitStatus,
        target_url: Option<&str>,
    ) -> Result<(), GithubError> {
        let call = Call {
            what: format!(
                "setting commit status {} of {sha} in {}",
                status.context,
                self.repository()
            ),
            permission: STATUSES_PERMISSION,
            hint: FORK_HINT,
            repeatable: true,
        };
        let mut body = json!({
            "state": status.state.as_str(),
            "context": status.context,
            "description": clip(&status.description),
        });
        if let Some(url) = target_url {
            body["target_url"] = json!(url);
        }
        self.post(&self.repo_url(&format!("/statuses/{sha}")), &body, &call)
            .await?;
        Ok(())
    }
}

/// A description within GitHub's 140 characters, on one line.
fn clip(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(DESCRIPTION_LIMIT - 1) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::fixtures::{self, node, rollout, Images};

    /// `(service, state, description)` of each status.
    fn statuses(input: &StatusInput<'_>) -> Vec<(String, &'static str, String)> {
        commit_statuses(input)
            .into_iter()
            .map(|s| (s.context, s.state.as_str(), s.description))
            .collect()
    }

    #[test]
    fn each_service_of_the_job_gets_a_status_by_what_happened_to_it() {
        let plan = fixtures::plan(
            vec![
                node("api", &[("api/x", "api/**")], 0),
                node("cart", &[("cart/x", "cart/**")], 0),
                node("docs", &[], 0),
                node("web", &[("web/x", "web/**")], 0),
            ],
            vec![],
            3,
        );
        let services: Vec<String> = ["api", "cart", "docs", "web"].map(String::from).into();
        let images = Images {
            registry: "r.example",
            digest: "sha256:1",
            error: "RUN make: exit 2",
            ..Images::default()
        };
        let built = [
            images.of("api", ImageStatus::Built),
            images.of("cart", ImageStatus::Reused),
            images.of("web", ImageStatus::Failed),
        ];
        let rolled = [
            rollout("api", RolloutStatus::Succeeded, None, 1.0),
            rollout(
                "cart",
                RolloutStatus::RolledBack,
                Some("CrashLoopBackOff"),
                2.0,
            ),
        ];
        let unchanged = (
            "monoship/docs".to_string(),
            "success",
            "unchanged since aaaaaaa".to_string(),
        );
        let row = |service: &str, state, description: &str| {
            (
                format!("monoship/{service}"),
                state,
                description.to_string(),
            )
        };
        // (images, rollouts, ship, the statuses of api, cart, docs and web)
        type Case<'a, E> = (
            Option<&'a [ImageResult]>,
            Option<&'a [RolloutResult]>,
            bool,
            E,
        );
        let table: [Case<'_, _>; 4] = [
            (
                None,
                None,
                false,
                [
                    row("api", "success", "changed: planned"),
                    row("cart", "success", "changed: planned"),
                    unchanged.clone(),
                    row("web", "success", "changed: planned"),
                ],
            ),
            (
                Some(&built),
                None,
                false,
                [
                    row("api", "success", "built"),
                    row("cart", "success", "image reused"),
                    unchanged.clone(),
                    row("web", "failure", "build failed: RUN make: exit 2"),
                ],
            ),
            (
                Some(&built),
                Some(&rolled),
                true,
                [
                    row("api", "success", "built; deployed 1 workload(s)"),
                    row(
                        "cart",
                        "failure",
                        "deployment/shop/cart rolled-back: CrashLoopBackOff",
                    ),
                    unchanged.clone(),
                    row("web", "failure", "build failed: RUN make: exit 2"),
                ],
            ),
            (
                Some(&built),
                None,
                true,
                [
                    row(
                        "api",
                        "error",
                        "built, not deployed: the deploy stage did not run",
                    ),
                    row(
                        "cart",
                        "error",
                        "image reused, not deployed: the deploy stage did not run",
                    ),
                    unchanged.clone(),
                    row("web", "failure", "build failed: RUN make: exit 2"),
                ],
            ),
        ];
        for (images, rollouts, ship, expected) in table {
            let input = StatusInput {
                plan: &plan,
                services: &services,
                images,
                rollouts,
                ship,
            };
            assert_eq!(
                statuses(&input),
                expected,
                "images {images:?} rollouts {rollouts:?}"
            );
        }
    }

    #[test]
    fn only_the_job_s_services_get_statuses_and_a_service_without_workloads_succeeds() {
        let plan = fixtures::plan(
            vec![node("api", &[("api/x", "api/**")], 0), node("docs", &[], 0)],
            vec![],
            1,
        );
        let built = [Images::default().of("api", ImageStatus::Built)];
        let skipped = [rollout(
            "api",
            RolloutStatus::Skipped,
            Some("its dependency proto failed"),
            0.0,
        )];
        let only_api = ["api".to_string()];
        let input = |rollouts| StatusInput {
            plan: &plan,
            services: &only_api,
            images: Some(&built),
            rollouts,
            ship: true,
        };
        assert_eq!(
            statuses(&input(Some(&[]))),
            [(
                "monoship/api".to_string(),
                "success",
                "built; nothing to deploy".to_string()
            )]
        );
        assert_eq!(
            statuses(&input(Some(&skipped))),
            [(
                "monoship/api".to_string(),
                "error",
                "deployment/shop/api skipped: its dependency proto failed".to_string()
            )]
        );
        let no_base = Plan {
            base: None,
            ..plan.clone()
        };
        let docs = ["docs".to_string()];
        let unchanged = commit_statuses(&StatusInput {
            plan: &no_base,
            services: &docs,
            images: None,
            rollouts: None,
            ship: false,
        });
        assert_eq!(unchanged[0].description, "unchanged");
    }

    #[test]
    fn environment_falls_back_from_input_to_context_to_cluster() {
        assert_eq!(
            environment_name(Some("staging"), Some("kind-dev"), Some("prod")),
            "staging"
        );
        assert_eq!(
            environment_name(None, Some("kind-dev"), Some("prod")),
            "kind-dev"
        );
        assert_eq!(environment_name(Some(" "), None, Some("prod")), "prod");
        assert_eq!(environment_name(None, None, None), "production");
    }

    #[test]
    fn only_a_marked_comment_by_the_token_s_login_is_ours() {
        let key = CommentKey {
            config: ".github/monoship.yml".into(),
            command: crate::cli::Command::Plan,
            environment: None,
        };
        let marked = format!("{}\nplan", key.marker());
        let comment = |id, body: &str, login: &str| IssueComment {
            id,
            body: Some(body.to_string()),
            user: Some(Author {
                login: login.into(),
            }),
        };
        let page = vec![
            comment(1, &marked, "mallory"),
            comment(2, "LGTM", "github-actions[bot]"),
            comment(3, &marked, "github-actions[bot]"),
            comment(4, &marked, "github-actions[bot]"),
        ];
        let mut ignored = Vec::new();
        let ours = ours_on_page(page, &key, "github-actions[bot]", &mut ignored);
        assert_eq!(ours, Some(3));
        assert_eq!(ignored, [(1, "mallory".to_string())]);
        let mut ignored = Vec::new();
        let none = ours_on_page(
            vec![comment(5, &marked, "octocat")],
            &key,
            "deployer",
            &mut ignored,
        );
        assert_eq!(none, None);
        assert_eq!(ignored.len(), 1);
    }

    #[test]
    fn descriptions_fit_githubs_limit() {
        assert_eq!(clip("a\nb"), "a b");
        let long = clip(&"x".repeat(500));
        assert_eq!(long.chars().count(), DESCRIPTION_LIMIT);
        assert!(long.ends_with('…'));
    }
}
