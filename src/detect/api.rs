//! The GitHub REST API as a source of changed files, for runs without local history.
//!
//! Two listings: a pull request's files (paginated, and cut by GitHub at 3,000 files) and the
//! comparison of two commits (not paginated, cut at 300 files). Each listing says when a cap
//! cut it short, so the planner can count every service as changed rather than miss one.
//! Requests, retries and errors are [`crate::github`]'s.

use serde::Deserialize;

use crate::github::{parse, Call, PER_PAGE};
pub use crate::github::{GithubApi, GithubError};

use super::{ChangeKind, ChangedFile};

/// GitHub lists at most this many files of a pull request.
pub const PULL_REQUEST_FILE_CAP: usize = 3000;
/// GitHub's compare endpoint lists at most this many files.
pub const COMPARE_FILE_CAP: usize = 300;

const PULL_REQUEST_PERMISSION: &str = "pull-requests: read";
const COMPARE_PERMISSION: &str = "contents: read";
/// The way around the API, added to the errors a user can act on.
const WITHOUT_API: &str =
    ", or set `fetch-depth: 0` on actions/checkout so monoship diffs with git and needs no API";

/// Files of one listing, and whether GitHub cut the list short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFiles {
    /// The files in GitHub's order.
    pub files: Vec<ChangedFile>,
    /// GitHub's file cap was reached: `files` may miss some changed files.
    pub truncated: bool,
    /// How many files the change has by GitHub's own count, when known (a pull request's
    /// `changed_files`; the compare endpoint reports none).
    pub reported_total: Option<u64>,
}

impl GithubApi {
    /// All files of a pull request: `GET /repos/{owner}/{repo}/pulls/{number}/files`, 100 per
    /// page, following `Link: rel="next"` over every page.
    ///
    /// `changed_files` is `pull_request.changed_files` from the event, if known. The result is
    /// `truncated` when GitHub's 3,000-file cap was hit: 3,000 or more files came back, or
    /// fewer than `changed_files`.
    ///
    /// # Errors
    ///
    /// See [`GithubError`]; a missing `pull-requests: read` permission is
    /// [`GithubError::PermissionDenied`].
    pub async fn pull_request_files(
        &self,
        number: u64,
        changed_files: Option<u64>,
    ) -> Result<ApiFiles, GithubError> {
        let call = Call {
            what: format!(
                "listing the files of pull request #{number} in {}",
                self.repository()
            ),
            permission: PULL_REQUEST_PERMISSION,
            hint: WITHOUT_API,
            repeatable: true,
        };
        let url = self.repo_url(&format!("/pulls/{number}/files?per_page={PER_PAGE}"));
        let mut files = Vec::new();
        let pages = self
            .for_each_page(url, &call, |entries: Vec<DiffEntry>| {
                files.extend(entries.into_iter().map(DiffEntry::into_changed_file));
                std::ops::ControlFlow::Continue(())
            })
            .await?;

        let listed = files.len() as u64;
        let truncated = pages.stopped_early
            || files.len() >= PULL_REQUEST_FILE_CAP
            || changed_files.is_some_and(|total| total > listed);
        tracing::debug!(
            pull_request = number,
            listed,
            pages = pages.read,
            truncated,
            "pull request files from the GitHub API"
        );
        Ok(ApiFiles {
            files,
            truncated,
            reported_total: changed_files,
        })
    }

    /// The files of `GET /repos/{owner}/{repo}/compare/{base}...{head}` (what changed on
    /// `head` since its merge-base with `base`).
    ///
    /// The result is `truncated` when 300 or more files came back: compare lists at most 300
    /// files and does not paginate them.
    ///
    /// # Errors
    ///
    /// See [`GithubError`]; a missing `contents: read` permission is
    /// [`GithubError::PermissionDenied`], an unknown commit [`GithubError::NotFound`].
    pub async fn compare(&self, base: &str, head: &str) -> Result<ApiFiles, GithubError> {
        let call = Call {
            what: format!("comparing {base}...{head} in {}", self.repository()),
            permission: COMPARE_PERMISSION,
            hint: WITHOUT_API,
            repeatable: true,
        };
        // No paging parameters: with them GitHub pages the commits, and files stay at 300.
        let url = self.repo_url(&format!(
            "/compare/{}...{}",
            revision_segment(base)?,
            revision_segment(head)?
        ));
        let reply = self.get(&url, &call).await?;
        let comparison: Comparison = parse(&reply.body, &call)?;
        let files: Vec<ChangedFile> = comparison
            .files
            .unwrap_or_default()
            .into_iter()
            .map(DiffEntry::into_changed_file)
            .collect();
        let truncated = files.len() >= COMPARE_FILE_CAP;
        tracing::debug!(
            listed = files.len(),
            truncated,
            "compared {base}...{head} through the GitHub API"
        );
        Ok(ApiFiles {
            files,
            truncated,
            reported_total: None,
        })
    }
}

/// One entry of a pull request's files or a comparison's `files`. Only the fields used are
/// read, so extra or missing diff details (`patch`, `blob_url`) never fail a listing.
#[derive(Deserialize)]
struct DiffEntry {
    filename: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    previous_filename: Option<String>,
}

impl DiffEntry {
    fn into_changed_file(self) -> ChangedFile {
        ChangedFile {
            path: self.filename,
            kind: ChangeKind::from_api_status(self.status.as_deref().unwrap_or_default()),
            previous: self.previous_filename,
        }
    }
}

#[derive(Deserialize)]
struct Comparison {
    #[serde(default)]
    files: Option<Vec<DiffEntry>>,
}

/// A revision as a URL path segment of `compare/{base}...{head}`: percent-encoded except for
/// the characters of SHAs, branch names and `owner:branch`.
fn revision_segment(revision: &str) -> Result<String, GithubError> {
    if revision.is_empty() || revision.contains("...") || revision.contains(char::is_control) {
        return Err(GithubError::InvalidRevision {
            revision: revision.to_owned(),
        });
    }
    let mut segment = String::with_capacity(revision.len());
    for byte in revision.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/:".contains(&byte) {
            segment.push(char::from(byte));
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_path_segments() {
        assert_eq!(revision_segment("feature/x").unwrap(), "feature/x");
        assert_eq!(revision_segment("fork:topic#1").unwrap(), "fork:topic%231");
        assert!(revision_segment("").is_err());
        assert!(revision_segment("a...b").is_err());
    }
}
