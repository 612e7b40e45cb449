//! Which files changed in a run's scope: its range resolved against the local clone, and,
//! for an event whose history the clone lacks, against the GitHub API.

use super::api::ApiFiles;
use super::event::{EventRange, RangeRequest};
use super::git::{Git, GitError};
use super::{ChangeSource, ChangedFile};
use crate::github::GithubError;

/// How to get the history a range needs.
pub const FETCH_HINT: &str =
    "fetch the missing history (in GitHub Actions: `fetch-depth: 0` on actions/checkout; locally: `git fetch --unshallow`)";

/// What a run looks at, in the terms detection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Range {
    /// Exactly these services; nothing is detected.
    Services { names: Vec<String>, head: String },
    /// This range and no other: missing history is an error.
    Commits {
        base: String,
        head: String,
        merge_base: bool,
    },
    /// An event's range: history the clone lacks may come from the API. `head` is the run's
    /// commit (`GITHUB_SHA`), for events that name none.
    Event { range: EventRange, head: String },
    /// From the merge base of `head` with the remote default branch.
    SinceDefaultBranch { head: String },
}

/// The changed files and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub base: Option<String>,
    pub head: String,
    pub source: ChangeSource,
    pub files: Vec<ChangedFile>,
    /// Set when every service counts as changed, with the reason.
    pub everything: Option<String>,
    /// Set when the services are named rather than detected.
    pub forced: Option<Vec<String>>,
    /// Whether `head` exists in the local clone (else Dockerfiles are read from the work tree).
    pub head_in_clone: bool,
    pub warnings: Vec<String>,
}

impl Detected {
    fn everything(head: String, why: String, in_clone: bool, warnings: Vec<String>) -> Detected {
        Detected {
            base: None,
            head,
            source: ChangeSource::All,
            files: vec![],
            everything: Some(why),
            forced: None,
            head_in_clone: in_clone,
            warnings,
        }
    }

    fn forced(head: String, names: Vec<String>, warnings: Vec<String>) -> Detected {
        Detected {
            base: None,
            head,
            source: ChangeSource::Forced,
            files: vec![],
            everything: None,
            forced: Some(names),
            head_in_clone: true,
            warnings,
        }
    }
}

/// The GitHub API's listings of changed files, for ranges the clone lacks.
pub trait ChangeListing {
    /// The files of pull request `number` (`changed_files` as the event counted them).
    ///
    /// # Errors
    /// When the API cannot be set up or asked.
    fn pull_request_files(
        &self,
        number: u64,
        changed_files: Option<u64>,
    ) -> Result<ApiFiles, ListingError>;

    /// The files changed from `base` to `head`.
    ///
    /// # Errors
    /// When the API cannot be set up or asked.
    fn compare(&self, base: &str, head: &str) -> Result<ApiFiles, ListingError>;
}

/// Why the API could not list the files.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error("history is missing and GITHUB_REPOSITORY is not set, so the GitHub API cannot be asked; {FETCH_HINT}")]
    NoRepository,
    #[error("cannot set up the GitHub API client; {FETCH_HINT}")]
    Setup(#[source] GithubError),
    #[error("{0}")]
    Request(#[source] GithubError),
}

/// Why the changed files cannot be known.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("revision `{rev}` is not in this clone: {shallow}it may need more history; {FETCH_HINT}, or check the name")]
    MissingRevision { rev: String, shallow: &'static str },
    #[error("revision `{rev}` does not exist: the repository has no commits yet; commit something first")]
    NoCommits { rev: String },
    #[error("`{base}` and `{head}` share no history in this clone; {FETCH_HINT}")]
    NoSharedHistory { base: String, head: String },
    #[error(
        "`{head}` shares no history with `{branch}` in this clone; pass --base, or {FETCH_HINT}"
    )]
    NoMergeBaseWithDefault { head: String, branch: String },
    #[error("cannot find the default branch (no origin/HEAD, main or master) to compare with; pass --base")]
    NoDefaultBranch,
    #[error(transparent)]
    ApiUnavailable(ListingError),
    #[error("the base commit `{base}` is not in this clone and the GitHub API could not list the changed files either; {FETCH_HINT}")]
    ApiFailed {
        base: String,
        #[source]
        source: GithubError,
    },
}

/// Resolves `range` to changed files. `api` lists files when an event's history is missing
/// (`None` outside GitHub Actions).
///
/// # Errors
/// A revision missing from the clone (outside the API fallback), or git failing.
pub fn detect(
    range: &Range,
    git: &mut Git,
    api: Option<&dyn ChangeListing>,
) -> Result<Detected, DetectError> {
    match range {
        Range::Services { names, head } => {
            Ok(Detected::forced(resolve(git, head)?, names.clone(), vec![]))
        }
        Range::Commits {
            base,
            head,
            merge_base,
        } => commits(git, base, head, *merge_base, None, vec![]),
        Range::SinceDefaultBranch { head } => {
            let (name, id) = default_branch(git)?;
            let head_id = resolve(git, head)?;
            let base = git.repo().merge_base(&id, &head_id)?.ok_or_else(|| {
                DetectError::NoMergeBaseWithDefault {
                    head: head.clone(),
                    branch: name,
                }
            })?;
            commits(git, &base, &head_id, false, None, vec![])
        }
        Range::Event { range, head } => from_event(range, head, git, api),
    }
}

fn from_event(
    event: &EventRange,
    run_head: &str,
    git: &mut Git,
    api: Option<&dyn ChangeListing>,
) -> Result<Detected, DetectError> {
    let mut warnings = Vec::new();
    match &event.request {
        RangeRequest::Nothing { why } => {
            let head = resolve(git, run_head).unwrap_or_default();
            warnings.push(why.clone());
            Ok(Detected {
                source: ChangeSource::Git,
                ..Detected::forced(head, vec![], warnings)
            })
        }
        RangeRequest::Everything { head, why } => {
            let (head, in_clone) = resolve_or_keep(git, head)?;
            Ok(Detected::everything(head, why.clone(), in_clone, warnings))
        }
        RangeRequest::NewBranch {
            head,
            default_branch,
        } => new_branch(git, head, default_branch, warnings),
        RangeRequest::Commits {
            base,
            head,
            merge_base,
        } => {
            let fallback = Fallback { event, api };
            commits(git, base, head, *merge_base, Some(fallback), warnings)
        }
    }
}

fn new_branch(
    git: &mut Git,
    head: &str,
    default_branch: &str,
    mut warnings: Vec<String>,
) -> Result<Detected, DetectError> {
    let (head, in_clone) = resolve_or_keep(git, head)?;
    let base_ref = [
        format!("refs/remotes/origin/{default_branch}"),
        format!("refs/heads/{default_branch}"),
    ]
    .into_iter()
    .find_map(|r| git.resolve_commit(&r).ok().flatten());
    let merge_base = match (&base_ref, in_clone) {
        (Some(b), true) => git.repo().merge_base(b, &head)?,
        _ => None,
    };
    match merge_base {
        Some(base) => {
            let files = git.repo().changed_files(&base, &head)?;
            Ok(GitDiff { base, head, files }.into_detected(warnings))
        }
        None => {
            let why = format!("a new branch was pushed and its merge base with `{default_branch}` is not in this clone, so every service counts; {FETCH_HINT}");
            warnings.push(why.clone());
            Ok(Detected::everything(head, why, in_clone, warnings))
        }
    }
}

/// The way to changed files when an event's history is not in the clone.
#[derive(Clone, Copy)]
struct Fallback<'a> {
    event: &'a EventRange,
    api: Option<&'a dyn ChangeListing>,
}

fn commits(
    git: &mut Git,
    base: &str,
    head: &str,
    merge_base: bool,
    fallback: Option<Fallback<'_>>,
    warnings: Vec<String>,
) -> Result<Detected, DetectError> {
    let local = diff_while_resolving(git, base, head, merge_base)?;
    if let Some(found) = local.found {
        return Ok(found.into_detected(warnings));
    }
    let Some((fallback, api)) = fallback.and_then(|f| f.api.map(|api| (f, api))) else {
        return Err(match (&local.head, &local.base) {
            (None, _) => missing(head, git),
            (_, None) => missing(base, git),
            _ => DetectError::NoSharedHistory {
                base: base.to_string(),
                head: head.to_string(),
            },
        });
    };
    let head_in_clone = local.head.is_some();
    let head = local.head.unwrap_or_else(|| head.to_string());
    from_api(fallback.event, api, base, head, head_in_clone, warnings)
}

/// Action mode with history missing locally: ask the API.
fn from_api(
    event: &EventRange,
    api: &dyn ChangeListing,
    base: &str,
    head: String,
    head_in_clone: bool,
    mut warnings: Vec<String>,
) -> Result<Detected, DetectError> {
    if event.forced {
        let why = format!("the force-pushed-over commit `{base}` is not in this clone, so every service counts; {FETCH_HINT}");
        warnings.push(why.clone());
        return Ok(Detected::everything(head, why, head_in_clone, warnings));
    }
    let listing = match &event.pull_request {
        Some(pr) => api.pull_request_files(pr.number, pr.changed_files),
        None => api.compare(base, &head),
    };
    let listing = listing.map_err(|e| match e {
        ListingError::Request(source) => DetectError::ApiFailed {
            base: base.to_string(),
            source,
        },
        other => DetectError::ApiUnavailable(other),
    })?;
    warnings.push(format!("the base commit `{base}` is not in this clone; the changed files came from the GitHub API (set `fetch-depth: 0` on actions/checkout to use git)"));
    if !head_in_clone {
        warnings.push(format!("the head commit `{head}` is not in this clone; Dockerfiles and ignore files were read from the work tree"));
    }
    if listing.truncated {
        let why = "GitHub's API lists at most 3,000 files of a pull request and 300 of a comparison, and this change is larger, so every service counts".to_string();
        warnings.push(format!("{why}; {FETCH_HINT}"));
        return Ok(Detected::everything(head, why, head_in_clone, warnings));
    }
    Ok(Detected {
        base: Some(base.to_string()),
        head,
        source: ChangeSource::GithubApi,
        files: listing.files,
        everything: None,
        forced: None,
        head_in_clone,
        warnings,
    })
}

/// What the local clone knows about a range.
struct LocalRange {
    base: Option<String>,
    head: Option<String>,
    /// The diff, when both commits (and their merge base, if asked) are in the clone.
    found: Option<GitDiff>,
}

struct GitDiff {
    base: String,
    head: String,
    files: Vec<ChangedFile>,
}

impl GitDiff {
    fn into_detected(self, warnings: Vec<String>) -> Detected {
        Detected {
            base: Some(self.base),
            head: self.head,
            source: ChangeSource::Git,
            files: self.files,
            everything: None,
            forced: None,
            head_in_clone: true,
            warnings,
        }
    }
}

/// The diff thread's answer: the merge base it used (if asked) and the files, or `None` when
/// there is no merge base in this clone.
type DiffOutcome = Result<Option<(Option<String>, Vec<ChangedFile>)>, GitError>;

/// Resolves `base` and `head` while `git diff` already runs on another thread: the diff is
/// the slow part, and starting it at once keeps `plan` close to the cost of `git diff` alone.
fn diff_while_resolving(
    git: &mut Git,
    base: &str,
    head: &str,
    merge_base: bool,
) -> Result<LocalRange, DetectError> {
    let repo = git.repo().clone();
    let (base_id, head_id, diffed) = std::thread::scope(|scope| {
        let job = scope.spawn(|| -> DiffOutcome {
            let from = if merge_base {
                match repo.merge_base(base, head)? {
                    Some(m) => Some(m),
                    None => return Ok(None),
                }
            } else {
                None
            };
            let files = repo.changed_files(from.as_deref().unwrap_or(base), head)?;
            Ok(Some((from, files)))
        });
        let base_id = git.resolve_commit(base);
        let head_id = git.resolve_commit(head);
        (
            base_id,
            head_id,
            job.join().expect("the diff thread does not panic"),
        )
    });
    let (base_id, head_id) = (base_id?, head_id?);
    let found = match (&base_id, &head_id) {
        // A missing commit makes the diff fail; that failure is reported as the missing commit.
        (Some(b), Some(h)) => match diffed {
            Ok(Some((from, files))) => Some(GitDiff {
                base: from.unwrap_or_else(|| b.clone()),
                head: h.clone(),
                files,
            }),
            Ok(None) => None,
            Err(e) => return Err(e.into()),
        },
        _ => None,
    };
    Ok(LocalRange {
        base: base_id,
        head: head_id,
        found,
    })
}

fn missing(rev: &str, git: &Git) -> DetectError {
    if !git.repo().has_commits() {
        return DetectError::NoCommits {
            rev: rev.to_string(),
        };
    }
    DetectError::MissingRevision {
        rev: rev.to_string(),
        shallow: if git.repo().is_shallow() {
            "this clone is shallow, and "
        } else {
            ""
        },
    }
}

fn resolve(git: &mut Git, rev: &str) -> Result<String, DetectError> {
    git.resolve_commit(rev)?.ok_or_else(|| missing(rev, git))
}

fn resolve_or_keep(git: &mut Git, rev: &str) -> Result<(String, bool), DetectError> {
    Ok(match git.resolve_commit(rev)? {
        Some(id) => (id, true),
        None => (rev.to_string(), false),
    })
}

fn default_branch(git: &mut Git) -> Result<(String, String), DetectError> {
    for candidate in [
        "refs/remotes/origin/HEAD",
        "refs/remotes/origin/main",
        "refs/remotes/origin/master",
        "refs/heads/main",
        "refs/heads/master",
    ] {
        if let Some(id) = git.resolve_commit(candidate)? {
            return Ok((
                candidate
                    .trim_start_matches("refs/remotes/")
                    .trim_start_matches("refs/heads/")
                    .to_string(),
                id,
            ));
        }
    }
    Err(DetectError::NoDefaultBranch)
}
