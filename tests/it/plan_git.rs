//! `monoship plan` on real git repositories: what counts as a change (SPEC §4).

use crate::support::{monoship, plan_json, Repo, ShopConfig};
use std::collections::BTreeMap;

/// The shop with everything: web after api, worker after `shared` and blind to Markdown,
/// and a `docs` service.
fn config() -> String {
    ShopConfig {
        web_depends_on_api: true,
        worker_skips_markdown: true,
        docs: true,
        shared_libs: true,
    }
    .yaml()
}

/// A repository with three services and a shared folder, committed once.
fn shop() -> (Repo, String) {
    let mut repo = Repo::new();
    repo.write(".github/monoship.yml", &config())
        .write(
            "services/api/Dockerfile",
            "FROM scratch\nCOPY pb/ /pb/\nCOPY services/api/src /app\n",
        )
        .write("services/api/src/main.rs", "fn main() {}\n")
        .write("services/api/notes.txt", "not copied\n")
        .write("pb/api.proto", "syntax = \"proto3\";\n")
        .write("services/web/Dockerfile", "FROM scratch\nCOPY . /site\n")
        .write("services/web/.dockerignore", "*.md\n")
        .write("services/web/index.html", "<p>hi</p>\n")
        .write("services/web/README.md", "# web\n")
        .write("services/worker/job.sh", "echo\n")
        .write("services/worker/README.md", "# worker\n")
        .write("libs/util.txt", "u\n")
        .write("docs/index.md", "# docs\n");
    let base = repo.commit("base");
    (repo, base)
}

/// Commits the work tree and plans from `base`: the changed services.
fn changed_after(repo: &mut Repo, base: &str) -> Vec<String> {
    repo.commit("change");
    changed_since(repo, base)
}

/// The services changed from `base` to the head, by a plan that succeeds.
fn changed_since(repo: &Repo, base: &str) -> Vec<String> {
    let run = plan_json(repo.path(), &["--base", base]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.changed()
}

/// The entry named `name` in the `list` (`services` or `groups`) of a JSON plan.
fn entry<'a>(plan: &'a serde_json::Value, list: &str, name: &str) -> &'a serde_json::Value {
    plan[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}: {plan}"))
}

#[test]
fn a_shared_folder_copied_by_a_dockerfile_rebuilds_the_service_and_its_dependents() {
    let (mut repo, base) = shop();
    repo.write("pb/api.proto", "syntax = \"proto3\"; // v2\n");
    repo.commit("proto");
    let run = plan_json(repo.path(), &["--base", &base]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let plan = run.json();
    assert_eq!(plan["changed"], serde_json::json!(["api", "web"]));
    assert_eq!(plan["source"], "git");
    assert_eq!(plan["base"], base.as_str());
    assert_eq!(plan["head"].as_str().unwrap().len(), 40);
    let api = entry(&plan, "services", "api");
    assert_eq!(api["reasons"][0]["path"], "pb/api.proto");
    assert!(
        api["reasons"][0]["rule"].as_str().unwrap().contains("COPY"),
        "{api}"
    );
    let web = entry(&plan, "services", "web");
    assert_eq!(web["reasons"][0]["rule"], "depends_on api");
    assert_eq!(
        plan["services"].as_array().unwrap().len(),
        4,
        "every service is listed"
    );
}

#[test]
fn files_the_dockerfile_does_not_copy_do_not_count() {
    let (mut repo, base) = shop();
    repo.write("services/api/notes.txt", "still not copied\n");
    assert_eq!(changed_after(&mut repo, &base), Vec::<String>::new());
}

#[test]
fn ignore_file_rules_apply_and_the_ignore_file_itself_counts() {
    let (mut repo, base) = shop();
    repo.write("services/web/README.md", "# web, edited\n");
    let head = repo.commit("readme");
    assert_eq!(changed_since(&repo, &base), Vec::<String>::new());
    repo.write("services/web/.dockerignore", "*.md\n*.html\n");
    assert_eq!(changed_after(&mut repo, &head), vec!["web"]);
}

#[test]
fn a_per_dockerfile_ignore_file_wins_over_the_context_one() {
    let (mut repo, _) = shop();
    repo.write("services/web/Dockerfile.dockerignore", "index.html\n");
    let base = repo.commit("own ignore file");
    // README.md is no longer ignored (the context's .dockerignore no longer applies)...
    repo.write("services/web/README.md", "# web v2\n");
    let mid = repo.commit("readme");
    assert_eq!(changed_since(&repo, &base), vec!["web"]);
    // ...and index.html is.
    repo.write("services/web/index.html", "<p>v2</p>\n");
    assert_eq!(changed_after(&mut repo, &mid), Vec::<String>::new());
}

#[test]
fn renames_across_services_mark_both_sides() {
    let (mut repo, base) = shop();
    repo.git(&["mv", "services/worker/job.sh", "docs/job.sh"]);
    assert_eq!(changed_after(&mut repo, &base), vec!["docs", "worker"]);
}

#[test]
fn deletions_count() {
    let (mut repo, base) = shop();
    repo.remove("services/api/src/main.rs");
    assert_eq!(changed_after(&mut repo, &base), vec!["api", "web"]);
}

#[test]
fn paths_exclusions_win_and_groups_propagate() {
    let (mut repo, base) = shop();
    repo.write("services/worker/README.md", "# worker v2\n");
    let mid = repo.commit("worker readme");
    assert_eq!(changed_since(&repo, &base), Vec::<String>::new());
    repo.write("libs/util.txt", "u2\n");
    let run = {
        repo.commit("lib");
        plan_json(repo.path(), &["--base", &mid])
    };
    assert_eq!(run.changed(), vec!["worker"]);
    let plan = run.json();
    let shared = entry(&plan, "groups", "shared");
    assert_eq!(shared["changed"], true);
}

#[test]
fn the_dockerfile_itself_counts() {
    let (mut repo, base) = shop();
    repo.write(
        "services/api/Dockerfile",
        "FROM scratch\nCOPY pb/ /pb/\nCOPY services/api/src /app\nLABEL x=y\n",
    );
    assert_eq!(changed_after(&mut repo, &base), vec!["api", "web"]);
}

#[test]
fn dockerfiles_are_read_at_head_not_from_the_work_tree() {
    let (mut repo, base) = shop();
    repo.write("services/api/notes.txt", "edited\n");
    let head = repo.commit("notes");
    // The work tree's Dockerfile copies notes.txt, the committed one does not.
    repo.write(
        "services/api/Dockerfile",
        "FROM scratch\nCOPY services/api/ /app\n",
    );
    let run = plan_json(repo.path(), &["--base", &base, "--head", &head]);
    assert_eq!(run.changed(), Vec::<String>::new(), "{}", run.stdout);
    // At a head whose Dockerfile copies the whole folder, the same change counts.
    repo.git(&["add", "-A"]);
    let later = repo.commit("copy all");
    repo.git(&["reset", "-q", "--hard", &head]);
    let run = plan_json(repo.path(), &["--base", &base, "--head", &later]);
    assert_eq!(run.changed(), vec!["api", "web"]);
}

#[test]
fn unusual_file_names_flow_through_exactly() {
    let (mut repo, base) = shop();
    let names = [
        "libs/with space.txt",
        "libs/quote\"s'.txt",
        "libs/ünïcødé.txt",
        "libs/new\nline.txt",
        "libs/100%::x,y.txt",
    ];
    for n in names {
        repo.write(n, "x\n");
    }
    repo.commit("odd names");
    let run = plan_json(repo.path(), &["--base", &base]);
    assert_eq!(run.changed(), vec!["worker"]);
    let plan = run.json();
    let shared = entry(&plan, "groups", "shared");
    let mut paths: Vec<&str> = shared["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    paths.sort();
    let mut want = names.to_vec();
    want.sort();
    assert_eq!(paths, want);
}

#[test]
fn merge_commits_compare_trees() {
    let (mut repo, base) = shop();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("docs/a.md", "a\n");
    repo.commit("docs on feature");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("libs/util.txt", "main change\n");
    repo.commit("lib on main");
    repo.git(&["merge", "-q", "--no-ff", "-m", "merge", "feature"]);
    let run = plan_json(repo.path(), &["--base", &base]);
    assert_eq!(run.changed(), vec!["docs", "worker"]);
    // From the first parent, only what the merge brought in.
    let run = plan_json(repo.path(), &["--base", "HEAD^1"]);
    assert_eq!(run.changed(), vec!["docs"]);
}

#[test]
fn default_base_is_the_merge_base_with_the_remote_default_branch() {
    let (mut origin, _) = shop();
    origin.commit("second");
    let mut work = origin.clone_with(&[]);
    work.git(&["checkout", "-q", "-b", "topic"]);
    work.write("docs/new.md", "n\n");
    work.commit("topic work");
    // main moves on upstream; that must not count for the topic branch.
    origin.write("libs/util.txt", "upstream\n");
    origin.commit("upstream");
    work.git(&["fetch", "-q", "origin"]);
    let run = plan_json(work.path(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.changed(), vec!["docs"]);
}

#[test]
fn forced_services_skip_detection() {
    let (repo, _) = shop();
    let run = plan_json(repo.path(), &["--services", "web,api"]);
    let plan = run.json();
    assert_eq!(plan["changed"], serde_json::json!(["api", "web"]));
    assert_eq!(plan["source"], "forced");
    let run = plan_json(repo.path(), &["--services", "all"]);
    assert_eq!(run.changed(), vec!["api", "docs", "web", "worker"]);
    let run = plan_json(repo.path(), &["--services", "nope"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown services: nope"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unreadable_instruction_counts_the_whole_context_and_says_why() {
    let (mut repo, _) = shop();
    repo.write(
        "services/api/Dockerfile",
        "FROM scratch\nCOPY --frobnicate=1 x /y\nCOPY pb/ /pb/\n",
    );
    let base = repo.commit("odd flag");
    repo.write("services/api/notes.txt", "edited\n");
    repo.commit("notes");
    let run = plan_json(repo.path(), &["--base", &base]);
    assert_eq!(run.changed(), vec!["api", "web"]);
    let plan = run.json();
    let rule = plan["services"][0]["reasons"][0]["rule"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        rule.contains("line 2") && rule.contains("could not be read"),
        "{rule}"
    );
}

#[test]
fn text_output_reads_like_a_plan() {
    let (mut repo, base) = shop();
    repo.write("pb/api.proto", "v2\n");
    repo.commit("proto");
    let run = monoship(repo.path(), &["plan", "--base", &base], &BTreeMap::new());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("changed (2/4):"), "{}", run.stdout);
    assert!(run.stdout.contains("pb/api.proto"), "{}", run.stdout);
    assert!(
        run.stdout.contains("unchanged (2): docs, worker"),
        "{}",
        run.stdout
    );
}

mod bad_input {
    use super::*;

    fn expect_exit_2(repo: &Repo, args: &[&str], needles: &[&str]) {
        let run = plan_json(repo.path(), args);
        assert_eq!(
            run.code, 2,
            "stdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        assert!(
            run.stdout.is_empty(),
            "nothing on stdout on failure: {}",
            run.stdout
        );
        for n in needles {
            assert!(
                run.stderr.contains(n),
                "stderr lacks {n:?}:\n{}",
                run.stderr
            );
        }
    }

    #[test]
    fn config_problems_name_file_line_and_key() {
        let (mut repo, _) = shop();
        repo.write(
            ".github/monoship.yml",
            &config().replace("    depends_on: [api]", "    depends_on: [apii]"),
        );
        repo.commit("typo");
        expect_exit_2(
            &repo,
            &["--base", "HEAD"],
            &[".github/monoship.yml:7: services.web.depends_on: unknown service or group `apii`"],
        );
        repo.write(
            ".github/monoship.yml",
            &config().replace("    context: .", "    contxt: ."),
        );
        expect_exit_2(
            &repo,
            &["--base", "HEAD"],
            &[".github/monoship.yml:4:5: services.api: unknown field `contxt`"],
        );
        repo.write(
            ".github/monoship.yml",
            &config().replace("\"docs/**\"", "\"docs/[**\""),
        );
        expect_exit_2(
            &repo,
            &["--base", "HEAD"],
            &["services.docs.paths: bad glob `docs/[**`"],
        );
        repo.write(
            ".github/monoship.yml",
            &config().replace(
                "    paths: [\"libs/**\"]",
                "    paths: [\"libs/**\"]\n    depends_on: [worker]",
            ),
        );
        expect_exit_2(&repo, &["--base", "HEAD"], &["dependency cycle"]);
    }

    #[test]
    fn a_missing_dockerfile_is_named() {
        let (mut repo, _) = shop();
        repo.write(
            ".github/monoship.yml",
            &config().replace("services/web/Dockerfile", "services/web/Dockerfil"),
        );
        repo.commit("typo");
        expect_exit_2(
            &repo,
            &["--base", "HEAD"],
            &[":6: services.web.dockerfile: `services/web/Dockerfil` does not exist at"],
        );
    }

    #[test]
    fn a_missing_config_says_where_it_looked() {
        let repo = Repo::new();
        expect_exit_2(
            &repo,
            &["--base", "HEAD"],
            &[
                "cannot read config file `./.github/monoship.yml`",
                "--config",
            ],
        );
    }

    #[test]
    fn revisions_that_do_not_resolve_are_errors() {
        let (repo, _) = shop();
        expect_exit_2(
            &repo,
            &["--base", "no-such-branch"],
            &["revision `no-such-branch` is not in this clone"],
        );
        expect_exit_2(
            &repo,
            &["--base", "HEAD", "--head=--output=/tmp/x"],
            &["is not usable"],
        );
    }

    #[test]
    fn a_shallow_clone_without_the_base_says_how_to_fetch() {
        let (mut origin, base) = shop();
        origin.write("docs/x.md", "x\n");
        origin.commit("two");
        origin.write("docs/y.md", "y\n");
        origin.commit("three");
        let shallow = origin.clone_with(&["--depth", "1"]);
        expect_exit_2(
            &shallow,
            &["--base", &base],
            &["is not in this clone", "shallow", "fetch-depth: 0"],
        );
    }
}
