//! What people read: the text plan on a terminal or a pipe, the job summary's graph, and
//! annotations held to GitHub's 10 per level.

use std::path::Path;

use crate::support::{env_map, example_shop, monoship, with_commit_names, Repo};

const ESC: char = '\x1b';

#[test]
fn text_is_plain_on_a_pipe_and_coloured_when_asked() {
    let (mut repo, base) = example_shop();
    repo.write("pb/demo.proto", "v2\n");
    repo.commit("protos");
    let plain = monoship(repo.path(), &["plan", "--base", &base], &env_map(&[]));
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert!(!plain.stdout.contains(ESC), "{:?}", plain.stdout);
    assert!(plain.stdout.contains("changed (3/4):"), "{}", plain.stdout);
    assert!(
        plain.stdout.contains("unchanged (1): email"),
        "{}",
        plain.stdout
    );

    let args = ["plan", "--base", &base, "--color", "always"];
    // NO_COLOR only turns off the automatic choice: an explicit `always` wins.
    let coloured = monoship(repo.path(), &args, &env_map(&[("NO_COLOR", "1")]));
    assert_eq!(coloured.code, 0, "{}", coloured.stderr);
    assert!(
        coloured.stdout.contains("\x1b[32mcart\x1b[0m"),
        "{:?}",
        coloured.stdout
    );
    let without: String = strip_ansi(&coloured.stdout);
    assert_eq!(without, plain.stdout, "colour changes nothing but colour");

    let json = monoship(
        repo.path(),
        &[
            "plan", "--base", &base, "--format", "json", "--color", "always",
        ],
        &env_map(&[]),
    );
    assert!(!json.stdout.contains(ESC), "JSON is never coloured");
    json.json();
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == ESC {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn the_summary_draws_the_dependencies_of_the_example() {
    let (mut repo, base) = example_shop();
    repo.write("pb/demo.proto", "v2\n");
    let head = repo.commit("protos");
    let files = tempfile::tempdir().unwrap();
    let summary = files.path().join("summary");
    let env = env_map(&[
        ("GITHUB_ACTIONS", "true"),
        ("INPUT_COMMAND", "plan"),
        ("INPUT_BASE", &base),
        ("INPUT_HEAD", &head),
        ("GITHUB_WORKSPACE", repo.path().to_str().unwrap()),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
    ]);
    let run = monoship(Path::new("/"), &[], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("```mermaid\n"), "{md}");
    // In the graph, services cart, checkout, email, frontend are n0..n3; the group proto is n4.
    insta::assert_snapshot!(with_commit_names(&md, &base, &head));
}

#[test]
fn more_than_ten_config_errors_become_ten_annotations() {
    let mut repo = Repo::new();
    let mut config = String::from("services:\n");
    for i in 0..15 {
        config.push_str(&format!(
            "  s{i:02}:\n    paths: [\"s{i:02}/**\"]\n    depends_on: [nope{i:02}]\n"
        ));
    }
    repo.write(".github/monoship.yml", &config);
    repo.commit("typos");
    let env = env_map(&[
        ("GITHUB_ACTIONS", "true"),
        ("INPUT_COMMAND", "plan"),
        ("GITHUB_WORKSPACE", repo.path().to_str().unwrap()),
    ]);
    let run = monoship(Path::new("/"), &[], &env);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("::error"))
        .collect();
    assert_eq!(errors.len(), 10, "{}", run.stderr);
    assert!(
        errors[0].contains("line=4,title=monoship config::services.s00.depends_on"),
        "{}",
        errors[0]
    );
    let last = errors[9];
    assert!(
        last.starts_with(
            "::error title=monoship%3A 6 more errors::and 6 more errors:%0A- monoship config ("
        ),
        "{last}"
    );
    assert!(last.contains("services.s14.depends_on"), "{last}");
}
