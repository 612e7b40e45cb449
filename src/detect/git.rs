//! Local git through its CLI: resolving revisions, merge bases, the changed files between two
//! commits, and file contents at a commit.
//!
//! Every call passes `-c safe.directory=<repo>` (inside the action's container the workspace
//! belongs to another user) and never writes any git config. Few processes are spawned: one
//! long-lived `git cat-file --batch` answers every revision and file lookup.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::{ChangeKind, ChangedFile};

/// A git command failed or could not start.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run `git`; install git or put it on PATH")]
    Spawn(#[source] std::io::Error),
    #[error("`{}` is not inside a git repository; run monoship from your clone, or check out the repository first (actions/checkout)", dir.display())]
    NotARepository { dir: PathBuf },
    #[error("`git {command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error(
        "revision `{rev}` is not usable: revisions cannot contain whitespace or start with `-`"
    )]
    BadRevision { rev: String },
    #[error("lost the connection to `git cat-file`")]
    Batch(#[source] std::io::Error),
}

/// A git work tree, driven through the `git` binary: one-shot commands on [`GitRepo`], and
/// one long-lived `git cat-file --batch` for lookups.
pub struct Git {
    repo: GitRepo,
    batch: Option<CatFile>,
}

/// The one-shot commands; cheap to clone and usable from another thread while [`Git`]
/// answers lookups.
#[derive(Debug, Clone)]
pub struct GitRepo {
    root: PathBuf,
    program: PathBuf,
}

impl Git {
    /// Opens the repository containing `dir` (a folder or any folder below the root).
    ///
    /// # Errors
    /// [`GitError::NotARepository`] when no `.git` is found in `dir` or above it.
    pub fn open(dir: &Path) -> Result<Git, GitError> {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let root = dir
            .ancestors()
            .find(|d| d.join(".git").exists())
            .ok_or_else(|| GitError::NotARepository { dir: dir.clone() })?
            .to_path_buf();
        Ok(Git {
            repo: GitRepo {
                root,
                program: PathBuf::from("git"),
            },
            batch: None,
        })
    }

    /// The repository's top folder.
    pub fn root(&self) -> &Path {
        &self.repo.root
    }

    /// The one-shot commands of this repository.
    pub fn repo(&self) -> &GitRepo {
        &self.repo
    }

    fn batch(&mut self) -> Result<&mut CatFile, GitError> {
        if self.batch.is_none() {
            let mut child = self
                .repo
                .command()
                .args(["cat-file", "--batch"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(GitError::Spawn)?;
            let stdin = child.stdin.take().expect("piped stdin");
            let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
            self.batch = Some(CatFile {
                child,
                stdin,
                stdout,
            });
        }
        Ok(self.batch.as_mut().expect("just set"))
    }

    /// Resolves `rev` to a commit id, or `None` when this clone does not have it.
    ///
    /// # Errors
    /// When the revision is malformed or git cannot be run.
    pub fn resolve_commit(&mut self, rev: &str) -> Result<Option<String>, GitError> {
        check_rev(rev)?;
        let answer = self.batch()?.lookup(&format!("{rev}^{{commit}}"))?;
        Ok(answer.map(|(id, _)| id))
    }

    /// The contents of the blob `id` (from [`GitRepo::tree_index`]), or `None` when the
    /// object is missing or not a blob.
    ///
    /// # Errors
    /// When git cannot be run.
    pub fn read_blob(&mut self, id: &str) -> Result<Option<Vec<u8>>, GitError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let answer = self.batch()?.lookup(id)?;
        Ok(answer.and_then(|(_, (kind, data))| (kind == "blob").then_some(data)))
    }
}

impl GitRepo {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        let mut safe = std::ffi::OsString::from("safe.directory=");
        safe.push(&self.root);
        cmd.arg("-c")
            .arg(safe)
            .arg("-C")
            .arg(&self.root)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<std::process::Output, GitError> {
        self.command().args(args).output().map_err(GitError::Spawn)
    }

    fn failed(args: &[&str], output: &std::process::Output) -> GitError {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let stderr = if stderr.is_empty() {
            format!("exit status {}", output.status)
        } else {
            stderr
        };
        GitError::Failed {
            command: args.join(" "),
            stderr,
        }
    }

    /// The best common ancestor of two commits, or `None` when they share no history in this
    /// clone (unrelated, or cut off by a shallow clone).
    ///
    /// # Errors
    /// When git fails for another reason.
    pub fn merge_base(&self, a: &str, b: &str) -> Result<Option<String>, GitError> {
        check_rev(a)?;
        check_rev(b)?;
        let args = ["merge-base", a, b];
        let output = self.run(&args)?;
        match output.status.code() {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&output.stdout).trim().to_string(),
            )),
            Some(1) if output.stderr.is_empty() => Ok(None),
            _ => Err(Self::failed(&args, &output)),
        }
    }

    /// Whether commit `a` is an ancestor of commit `b`; `None` when git cannot tell (a commit
    /// missing from this clone).
    pub fn is_ancestor(&self, a: &str, b: &str) -> Option<bool> {
        check_rev(a).ok()?;
        check_rev(b).ok()?;
        let output = self.run(&["merge-base", "--is-ancestor", a, b]).ok()?;
        match output.status.code() {
            Some(0) => Some(true),
            Some(1) => Some(false),
            _ => None,
        }
    }

    /// Whether this clone is shallow (history cut off at some depth).
    /// Whether any ref of the repository leads to a commit (a freshly initialised one has
    /// none).
    pub fn has_commits(&self) -> bool {
        self.run(&["rev-list", "-n", "1", "--all"])
            .map(|o| !o.stdout.trim_ascii().is_empty())
            .unwrap_or(true)
    }

    pub fn is_shallow(&self) -> bool {
        self.run(&["rev-parse", "--is-shallow-repository"])
            .map(|o| o.stdout.starts_with(b"true"))
            .unwrap_or(false)
    }

    /// Every path that differs between two commits (two-dot: the trees of `base` and `head`).
    /// Renames are reported as a deletion and an addition, so both names count.
    ///
    /// # Errors
    /// When git fails (for instance when a commit is missing).
    pub fn changed_files(&self, base: &str, head: &str) -> Result<Vec<ChangedFile>, GitError> {
        check_rev(base)?;
        check_rev(head)?;
        let args = [
            "diff",
            "--name-status",
            "-z",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--ignore-submodules=none",
            base,
            head,
            "--",
        ];
        let output = self.run(&args)?;
        if !output.status.success() {
            return Err(Self::failed(&args, &output));
        }
        Ok(parse_name_status(&output.stdout))
    }
}

/// A file of the index with its blob id (`git ls-files -s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub path: String,
    pub mode: String,
    pub id: String,
}

/// One entry of a commit's tree: its object type (`blob`, `tree`, `commit`) and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub kind: String,
    pub id: String,
}

impl GitRepo {
    /// Every entry of `commit`'s tree, folders included, by path: one `git ls-tree` for the
    /// whole commit, so looking up thousands of paths stays linear (asking `commit:path` one
    /// by one makes git scan the parent folder's listing each time).
    ///
    /// # Errors
    /// When git fails.
    pub fn tree_index(&self, commit: &str) -> Result<HashMap<String, TreeEntry>, GitError> {
        check_rev(commit)?;
        let args = ["ls-tree", "-r", "-t", "-z", "--full-tree", commit];
        let output = self.run(&args)?;
        if !output.status.success() {
            return Err(Self::failed(&args, &output));
        }
        Ok(parse_tree_listing(&output.stdout))
    }
}

/// Reads `git ls-tree -z` output: `<mode> <type> <id>\t<path>\0` records.
fn parse_tree_listing(raw: &[u8]) -> HashMap<String, TreeEntry> {
    let mut entries = HashMap::new();
    for record in raw.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let Some(tab) = record.iter().position(|b| *b == b'\t') else {
            continue;
        };
        let head = String::from_utf8_lossy(&record[..tab]);
        let mut fields = head.split(' ');
        let (Some(_mode), Some(kind), Some(id)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = String::from_utf8_lossy(&record[tab + 1..]).into_owned();
        let entry = TreeEntry {
            kind: kind.to_string(),
            id: id.to_string(),
        };
        entries.insert(path, entry);
    }
    entries
}

impl GitRepo {
    /// Every file of the index with its mode and blob id.
    ///
    /// # Errors
    /// When git fails.
    pub fn index_entries(&self) -> Result<Vec<IndexEntry>, GitError> {
        let args = ["ls-files", "-s", "-z", "--full-name"];
        let output = self.run(&args)?;
        if !output.status.success() {
            return Err(Self::failed(&args, &output));
        }
        let mut entries = Vec::new();
        for record in output.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            // "<mode> <id> <stage>\t<path>"
            let Some(tab) = record.iter().position(|b| *b == b'\t') else {
                continue;
            };
            let head = String::from_utf8_lossy(&record[..tab]);
            let mut fields = head.split(' ');
            let (Some(mode), Some(id)) = (fields.next(), fields.next()) else {
                continue;
            };
            entries.push(IndexEntry {
                path: String::from_utf8_lossy(&record[tab + 1..]).into_owned(),
                mode: mode.to_string(),
                id: id.to_string(),
            });
        }
        Ok(entries)
    }

    /// Paths whose work-tree state differs from the index: modified, deleted, untracked and
    /// ignored files (each ignored file listed, not just its folder).
    ///
    /// # Errors
    /// When git fails.
    pub fn work_tree_differences(&self) -> Result<Vec<String>, GitError> {
        let args = [
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--ignored=traditional",
            "--no-renames",
        ];
        let output = self.run(&args)?;
        if !output.status.success() {
            return Err(Self::failed(&args, &output));
        }
        Ok(output
            .stdout
            .split(|b| *b == 0)
            .filter(|r| r.len() > 3)
            .map(|r| String::from_utf8_lossy(&r[3..]).into_owned())
            .collect())
    }

    /// The repository's top folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The committer date of a commit, RFC 3339 (used as the image's `created` label so the
    /// same commit always gives the same label).
    ///
    /// # Errors
    /// When git fails.
    pub fn commit_time(&self, commit: &str) -> Result<Option<String>, GitError> {
        check_rev(commit)?;
        let output = self.run(&["show", "-s", "--format=%cI", commit, "--"])?;
        Ok(output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
            .filter(|s| !s.is_empty()))
    }
}

impl GitRepo {
    /// The committer time of a commit in Unix seconds; `None` when the clone lacks it.
    pub fn commit_seconds(&self, commit: &str) -> Option<i64> {
        check_rev(commit).ok()?;
        let output = self
            .run(&["show", "-s", "--format=%ct", commit, "--"])
            .ok()?;
        if !output.status.success() {
            return None;
        }
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    }
}

fn check_rev(rev: &str) -> Result<(), GitError> {
    if rev.is_empty()
        || rev.starts_with('-')
        || rev.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(GitError::BadRevision {
            rev: rev.escape_debug().to_string(),
        });
    }
    Ok(())
}

/// Parses `git diff --name-status -z` output: `STATUS\0path\0`, or for renames and copies
/// `R<score>\0old\0new\0`.
pub fn parse_name_status(raw: &[u8]) -> Vec<ChangedFile> {
    let mut fields = raw.split(|b| *b == 0).filter(|f| !f.is_empty());
    let mut files = Vec::new();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    while let Some(status) = fields.next() {
        let kind = ChangeKind::from_git_letter(status[0]);
        let Some(first) = fields.next() else { break };
        match kind {
            ChangeKind::Renamed | ChangeKind::Copied => {
                let Some(second) = fields.next() else { break };
                files.push(ChangedFile {
                    path: text(second),
                    kind,
                    previous: Some(text(first)),
                });
            }
            _ => files.push(ChangedFile {
                path: text(first),
                kind,
                previous: None,
            }),
        }
    }
    files
}

/// One `git cat-file --batch` process answering lookups in order.
struct CatFile {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl CatFile {
    /// Asks for one object; `None` when it is missing. Returns its id, type and contents.
    #[allow(clippy::type_complexity)]
    fn lookup(&mut self, query: &str) -> Result<Option<(String, (String, Vec<u8>))>, GitError> {
        writeln!(self.stdin, "{query}").map_err(GitError::Batch)?;
        self.stdin.flush().map_err(GitError::Batch)?;
        let mut header = String::new();
        let n = self
            .stdout
            .read_line(&mut header)
            .map_err(GitError::Batch)?;
        if n == 0 {
            return Err(GitError::Batch(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "git cat-file exited",
            )));
        }
        let parts: Vec<&str> = header.trim_end().split(' ').collect();
        // Missing objects answer "<query> missing" (or "ambiguous"); found ones "<id> <type> <size>".
        if parts.len() != 3 {
            return Ok(None);
        }
        let size: usize = parts[2].parse().map_err(|_| {
            GitError::Batch(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unexpected cat-file header {header:?}"),
            ))
        })?;
        let mut data = vec![0u8; size + 1];
        self.stdout.read_exact(&mut data).map_err(GitError::Batch)?;
        data.pop(); // the newline after the contents
        Ok(Some((parts[0].to_string(), (parts[1].to_string(), data))))
    }
}

impl Drop for CatFile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_parsing() {
        let raw = b"A\0LICENSE\0M\0src/index.ts\0D\0src/main.ts\0R087\0a/old name\0b/new\nname\0T\0link\0";
        let files = parse_name_status(raw);
        assert_eq!(files.len(), 5);
        assert_eq!(files[0].kind, ChangeKind::Added);
        assert_eq!(files[2].kind, ChangeKind::Deleted);
        assert_eq!(files[3].path, "b/new\nname");
        assert_eq!(files[3].previous.as_deref(), Some("a/old name"));
        assert_eq!(
            files[3].touched_paths().collect::<Vec<_>>(),
            vec!["b/new\nname", "a/old name"]
        );
        assert_eq!(files[4].kind, ChangeKind::TypeChanged);
    }

    #[test]
    fn tree_listings_are_indexed_by_path() {
        let raw = b"040000 tree 1111\tsvc\x00100644 blob 2222\tsvc/Dockerfile\x00100644 blob 3333\tsvc/a b\tc\0";
        let index = parse_tree_listing(raw);
        assert_eq!(index.len(), 3);
        assert_eq!(index["svc"].kind, "tree");
        assert_eq!(index["svc/Dockerfile"].id, "2222");
        assert_eq!(index["svc/a b\tc"].id, "3333");
    }

    #[test]
    fn revisions_that_could_be_options_are_refused() {
        for bad in ["", "--output=x", "a b", "a\nb"] {
            assert!(check_rev(bad).is_err(), "{bad:?}");
        }
        assert!(check_rev("HEAD~1").is_ok());
    }
}
