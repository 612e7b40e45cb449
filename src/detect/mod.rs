//! Detect: which paths changed between two revisions, and where that answer came from.
//!
//! Local git is preferred (no file cap, no rate limit); the GitHub API is the fallback when
//! history is missing. Every source reports both sides of a rename, so a file moved from one
//! service to another marks both.

pub mod api;
pub mod event;
pub(crate) mod git;
pub(crate) mod range;

use serde::Serialize;

/// How a path changed, as git's `--name-status` letters or the GitHub API's `status` words say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    Renamed,
    Copied,
    TypeChanged,
    Unmerged,
    Unknown,
}

impl ChangeKind {
    /// Maps a `git diff --name-status` letter (the first byte; renames carry a score after it).
    pub fn from_git_letter(letter: u8) -> ChangeKind {
        match letter {
            b'A' => ChangeKind::Added,
            b'M' => ChangeKind::Modified,
            b'D' => ChangeKind::Deleted,
            b'R' => ChangeKind::Renamed,
            b'C' => ChangeKind::Copied,
            b'T' => ChangeKind::TypeChanged,
            b'U' => ChangeKind::Unmerged,
            _ => ChangeKind::Unknown,
        }
    }

    /// Maps the GitHub REST API's `status` field of a diff entry.
    pub fn from_api_status(status: &str) -> ChangeKind {
        match status {
            "added" => ChangeKind::Added,
            "modified" => ChangeKind::Modified,
            "removed" => ChangeKind::Deleted,
            "renamed" => ChangeKind::Renamed,
            "copied" => ChangeKind::Copied,
            "changed" => ChangeKind::TypeChanged,
            _ => ChangeKind::Unknown,
        }
    }
}

/// One changed path, repository-relative with `/` separators.
///
/// File names that are not UTF-8 are converted lossily (U+FFFD); globs cannot name such bytes
/// literally anyway, and wildcards still match them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedFile {
    pub path: String,
    pub kind: ChangeKind,
    /// The old name of a rename or the source of a copy. For renames both names count as changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

impl ChangedFile {
    /// Every path this change touches: the path, and the old name of a rename.
    pub fn touched_paths(&self) -> impl Iterator<Item = &str> {
        let previous = match self.kind {
            ChangeKind::Renamed => self.previous.as_deref(),
            _ => None,
        };
        std::iter::once(self.path.as_str()).chain(previous)
    }
}

/// Where the list of changed files came from, as reported in `plan --format json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeSource {
    /// `git diff` in the local clone.
    Git,
    /// The GitHub REST API (pull request files or compare).
    GithubApi,
    /// The user named the services (`--services`); nothing was detected.
    Forced,
    /// Every service counts as changed (no usable base, a truncated API answer, a dispatch).
    All,
}
