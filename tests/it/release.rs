//! The release flow's git half (`scripts/release-commit.sh`), run on real repositories: a tag
//! is only ever created on a commit of the `releases` branch whose action.yml pins the image
//! by digest, and bad input changes nothing.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::Repo;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn action_yml(image_line: &str) -> String {
    format!("name: monoship\nruns:\n  using: docker\n{image_line}\n")
}

/// A repository whose main has an unpinned action.yml, as this one's has.
fn project() -> (Repo, String) {
    let mut repo = Repo::new();
    repo.write("action.yml", &action_yml("  image: Dockerfile"))
        .write("src/main.rs", "fn main() {}\n");
    let head = repo.commit("first");
    (repo, head)
}

fn release(repo: &Repo, args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/release-commit.sh");
    Command::new("bash")
        .arg(script)
        .args(args)
        .current_dir(repo.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo.path())
        .env("GIT_AUTHOR_NAME", "release")
        .env("GIT_AUTHOR_EMAIL", "release@example.invalid")
        .env("GIT_COMMITTER_NAME", "release")
        .env("GIT_COMMITTER_EMAIL", "release@example.invalid")
        .output()
        .expect("bash runs")
}

fn refs(repo: &Repo) -> String {
    repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
}

#[test]
fn a_release_tag_names_a_pinned_commit_on_the_releases_branch() {
    let (mut repo, first) = project();
    let image = format!("ghcr.io/acme/monoship@{DIGEST}");
    let out = release(&repo, &["v1.2.0", &image]);
    assert!(out.status.success(), "{out:?}");
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();

    assert_eq!(repo.git(&["rev-parse", "v1.2.0^{commit}"]), commit);
    assert_eq!(repo.git(&["rev-parse", "v1^{commit}"]), commit);
    assert_eq!(repo.git(&["rev-parse", "releases"]), commit);
    assert_eq!(
        repo.git(&["show", "v1.2.0:action.yml"]),
        action_yml(&format!("  image: docker://{image}")).trim_end()
    );
    // One line changed, nothing else; main, its work tree and its index untouched.
    assert_eq!(
        repo.git(&["diff", "--name-only", &first, &commit]),
        "action.yml"
    );
    assert_eq!(repo.git(&["rev-parse", "main"]), first);
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert_eq!(repo.git(&["cat-file", "-t", "v1.2.0"]), "tag");

    // The next release is cut from a later main and keeps the branch's history.
    repo.write("src/main.rs", "fn main() { println!(); }\n");
    let second = repo.commit("second");
    let out = release(&repo, &["v1.3.0-rc.1", &image]);
    assert!(out.status.success(), "{out:?}");
    let rc = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        repo.git(&["rev-list", "--parents", "-n1", &rc]),
        format!("{rc} {commit} {second}")
    );
    // A pre-release leaves the major tag where it was.
    assert_eq!(repo.git(&["rev-parse", "v1^{commit}"]), commit);
}

#[test]
fn bad_input_or_an_existing_tag_changes_nothing() {
    let (repo, _) = project();
    let image = format!("ghcr.io/acme/monoship@{DIGEST}");
    assert!(release(&repo, &["v1.0.0", &image]).status.success());
    let before = refs(&repo);
    let cases: [(&[&str], &str); 5] = [
        (&["1.0.1", &image], "look like v1.2.3"),
        (
            &["v1.0.1", "ghcr.io/acme/monoship:1.0.1"],
            "named by digest",
        ),
        (
            &["v1.0.1", "ghcr.io/acme/monoship@sha256:abc"],
            "named by digest",
        ),
        (&["v1.0.0", &image], "exists already"),
        // A release commit is no source for another: its action.yml is pinned already.
        (
            &["v1.0.1", &image, "releases"],
            "no single '  image: Dockerfile' line",
        ),
    ];
    for (args, message) in cases {
        let out = release(&repo, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(refs(&repo), before, "{args:?} changed a ref");
    }
}
