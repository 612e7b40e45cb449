//! Action mode: the binary started as the runner starts it (GITHUB_ACTIONS, INPUT_*, a real
//! event payload), checked through the files it writes.

use std::path::Path;

use serde_json::Value;

use crate::support::{
    fixture, pr_payload, run_action, three_services, with_commit_names, with_commits, ActionRun,
    Repo, ShopConfig,
};

/// The shop: web after api, and worker after the `shared` group of `libs/`.
fn config() -> String {
    ShopConfig {
        web_depends_on_api: true,
        shared_libs: true,
        ..ShopConfig::default()
    }
    .yaml()
}

fn repo() -> (Repo, String) {
    let mut repo = three_services(&config());
    repo.write("libs/util.txt", "u\n");
    let base = repo.commit("base");
    (repo, base)
}

/// Runs the action for GitHub's `push` of a new branch, moved to `after` and then changed by
/// `adjust`; the run exits 0.
fn new_branch_push(workspace: &Path, after: &str, adjust: impl FnOnce(&mut Value)) -> ActionRun {
    let mut payload = fixture("push.with-new-branch.json");
    payload["after"] = after.into();
    adjust(&mut payload);
    let r = run_action(workspace, "push", &payload, after, &[]);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    r
}

/// Runs the action for GitHub's `workflow_dispatch` event at `sha` with `env`.
fn dispatch(workspace: &Path, sha: &str, env: &[(&str, &str)]) -> ActionRun {
    run_action(
        workspace,
        "workflow_dispatch",
        &fixture("workflow_dispatch.json"),
        sha,
        env,
    )
}

#[test]
fn pull_request_outputs_and_summary_are_exact() {
    let (mut repo, base) = repo();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("pb/api.proto", "p2\n");
    let head = repo.commit("proto");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("libs/util.txt", "main moved on\n");
    let main_tip = repo.commit("lib on main");
    let r = run_action(
        repo.path(),
        "pull_request",
        &pr_payload("synchronize", &main_tip, &head),
        &head,
        &[],
    );
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    let want: Vec<(String, String)> = [
        ("changed", r#"["api","web"]"#.to_string()),
        ("matrix", r#"{"include":[{"context":".","dockerfile":"services/api/Dockerfile","service":"api"},{"dockerfile":"services/web/Dockerfile","service":"web"}]}"#.to_string()),
        ("any-changed", "true".to_string()),
        ("base", base.clone()),
        ("head", head.clone()),
        ("api", "true".to_string()),
        ("web", "true".to_string()),
        ("worker", "false".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(r.outputs, want);
    // The summary file ends with the blank line that separates it from the next step's.
    assert!(r.summary.ends_with("highlighted.\n\n"), "{}", r.summary);
    insta::assert_snapshot!(with_commit_names(&r.summary, &base, &head));
}

#[test]
fn push_compares_before_with_after_even_when_forced() {
    let (mut repo, base) = repo();
    repo.write("services/worker/job.sh", "echo dropped\n");
    let dropped = repo.commit("later dropped by a force push");
    repo.git(&["reset", "-q", "--hard", &base]);
    repo.write("pb/api.proto", "p3\n");
    let after = repo.commit("rewritten");
    let r = new_branch_push(repo.path(), &after, |payload| {
        payload["before"] = dropped.clone().into();
        payload["ref"] = "refs/heads/feature".into();
        payload["forced"] = true.into();
    });
    // worker's change was undone by the force push: what is deployed must change back too.
    assert_eq!(r.output("changed"), r#"["api","web","worker"]"#);
}

#[test]
fn a_new_branch_compares_with_its_merge_base_on_the_default_branch() {
    let (mut origin, _) = repo();
    origin.write("libs/util.txt", "main\n");
    origin.commit("main work");
    let mut work = origin.clone_with(&[]);
    work.git(&["checkout", "-q", "-b", "topic"]);
    work.write("services/worker/job.sh", "echo 2\n");
    work.commit("one");
    work.write("services/worker/job.sh", "echo 3\n");
    let after = work.commit("two");
    let r = new_branch_push(work.path(), &after, |payload| {
        payload["ref"] = "refs/heads/topic".into();
        payload["repository"]["default_branch"] = "main".into();
    });
    assert_eq!(r.output("changed"), r#"["worker"]"#);
}

#[test]
fn the_first_push_of_the_default_branch_ships_everything_with_a_reason() {
    let (repo, base) = repo();
    let r = new_branch_push(repo.path(), &base, |_| {});
    assert_eq!(r.output("changed"), r#"["api","web","worker"]"#);
    assert!(r.summary.contains("source: all"), "{}", r.summary);
}

#[test]
fn a_deleted_branch_changes_nothing() {
    let (repo, base) = repo();
    let r = run_action(repo.path(), "push", &fixture("push.json"), &base, &[]);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    assert_eq!(r.output("any-changed"), "false");
}

#[test]
fn merge_group_uses_base_and_head_sha() {
    let (mut repo, base) = repo();
    repo.write("libs/util.txt", "queued\n");
    let head = repo.commit("queued");
    let payload = with_commits(
        &fixture("merge_group.checks_requested.json"),
        &[
            ("380387fbc80638b734a49e1be1c4dfec1c01b33c", &base),
            ("2ffea6db159f6b6c47a24e778fb9ef40cf6b1c7d", &head),
        ],
    );
    let r = run_action(repo.path(), "merge_group", &payload, &head, &[]);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    assert_eq!(r.output("changed"), r#"["worker"]"#);
}

#[test]
fn dispatch_ships_everything_unless_services_are_named() {
    let (repo, base) = repo();
    let r = dispatch(repo.path(), &base, &[]);
    assert_eq!(r.output("changed"), r#"["api","web","worker"]"#);
    let r = dispatch(repo.path(), &base, &[("INPUT_SERVICES", "web")]);
    assert_eq!(r.output("changed"), r#"["web"]"#);
    assert_eq!(r.output("api"), "false");
}

#[test]
fn config_errors_become_annotations_on_the_config_line() {
    let (mut repo, base) = repo();
    repo.write(
        ".github/monoship.yml",
        &config().replace("depends_on: [api]", "depends_on: [apii]"),
    );
    repo.commit("typo");
    let r = dispatch(repo.path(), &base, &[]);
    assert_eq!(r.run.code, 2);
    assert!(
        r.outputs.is_empty(),
        "no outputs on bad input: {:?}",
        r.outputs
    );
    let line = r.stderr_line("::error ");
    assert!(line.starts_with("::error file="), "{line}");
    assert!(line.contains(".github/monoship.yml,line=7,title=monoship config::services.web.depends_on: unknown service or group `apii`"), "{line}");
}

#[test]
fn an_unreadable_event_payload_is_exit_2() {
    let (repo, base) = repo();
    let r = run_action(
        repo.path(),
        "push",
        &Value::String("not an object".into()),
        &base,
        &[],
    );
    assert_eq!(r.run.code, 2, "{}", r.run.stderr);
    assert!(
        r.run.stderr.contains("::error::event `push`"),
        "{}",
        r.run.stderr
    );
}

#[test]
fn an_unknown_command_input_is_exit_2() {
    let (repo, base) = repo();
    let r = dispatch(repo.path(), &base, &[("INPUT_COMMAND", "deploy")]);
    assert_eq!(r.run.code, 2);
    assert!(
        r.run
            .stderr
            .contains("input `command` must be plan, build or ship, not `deploy`"),
        "{}",
        r.run.stderr
    );
}

mod api_fallback {
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// A shallow clone of a pull request's head: the base commit is not in it.
    fn shallow_pr() -> (Repo, Repo, String, String) {
        let (mut origin, base) = repo();
        origin.write("services/worker/job.sh", "echo pr\n");
        origin.write("pb/api.proto", "p9\n");
        let head = origin.commit("pr work");
        let clone = origin.clone_with(&["--depth", "1"]);
        (origin, clone, base, head)
    }

    fn file(name: &str, status: &str) -> Value {
        serde_json::json!({"sha": "0".repeat(40), "filename": name, "status": status, "additions": 1, "deletions": 0, "changes": 1,
            "blob_url": "https://github.com/octo/shop/blob/x", "raw_url": "https://github.com/octo/shop/raw/x",
            "contents_url": "https://api.github.com/repos/octo/shop/contents/x", "patch": "@@ -1 +1 @@"})
    }

    async fn run_against(server: &MockServer, clone: &Path, base: &str, head: &str) -> ActionRun {
        let uri = server.uri();
        let (clone, base, head) = (clone.to_path_buf(), base.to_string(), head.to_string());
        tokio::task::spawn_blocking(move || {
            run_action(
                &clone,
                "pull_request",
                &pr_payload("synchronize", &base, &head),
                &head,
                &[("GITHUB_API_URL", &uri), ("INPUT_TOKEN", "test-token-123")],
            )
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn missing_history_falls_back_to_the_pull_request_files() {
        let (_origin, clone, base, head) = shallow_pr();
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/repos/octo/shop/pulls/2/files"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
                file("services/worker/job.sh", "modified"),
                file("pb/api.proto", "modified")
            ])))
            .mount(&server)
            .await;
        let r = run_against(&server, clone.path(), &base, &head).await;
        assert_eq!(r.run.code, 0, "{}", r.run.stderr);
        assert_eq!(r.output("changed"), r#"["api","web","worker"]"#);
        assert!(r.summary.contains("source: github-api"), "{}", r.summary);
        assert!(
            r.run.stderr.contains("::warning::"),
            "the fallback is announced: {}",
            r.run.stderr
        );
        assert!(
            r.run.stderr.contains("::add-mask::test-token-123"),
            "the token is masked before use"
        );
        let unmasked = r
            .run
            .stderr
            .lines()
            .filter(|l| !l.starts_with("::add-mask::"))
            .any(|l| l.contains("test-token-123"));
        assert!(!unmasked && !r.summary.contains("test-token-123"));
    }

    #[tokio::test]
    async fn a_truncated_listing_counts_every_service() {
        let (_origin, clone, base, head) = shallow_pr();
        let server = MockServer::start().await;
        let mut payload_files = Vec::new();
        for i in 0..3 {
            payload_files.push(file(&format!("docs/{i}.md"), "added"));
        }
        Mock::given(method("GET"))
            .and(path("/repos/octo/shop/pulls/2/files"))
            .respond_with(ResponseTemplate::new(200).set_body_json(Value::Array(payload_files)))
            .mount(&server)
            .await;
        // The fixture says changed_files = 1; make GitHub's count larger than the listing.
        let (clone_path, b, h, uri) = (
            clone.path().to_path_buf(),
            base.clone(),
            head.clone(),
            server.uri(),
        );
        let r = tokio::task::spawn_blocking(move || {
            let mut p = pr_payload("synchronize", &b, &h);
            p["pull_request"]["changed_files"] = 3500.into();
            run_action(
                &clone_path,
                "pull_request",
                &p,
                &h,
                &[("GITHUB_API_URL", &uri), ("INPUT_TOKEN", "t")],
            )
        })
        .await
        .unwrap();
        assert_eq!(r.run.code, 0, "{}", r.run.stderr);
        assert_eq!(r.output("changed"), r#"["api","web","worker"]"#);
        assert!(r.run.stderr.contains("3,000"), "{}", r.run.stderr);
    }

    #[tokio::test]
    async fn a_token_without_permission_is_exit_2_with_the_fix() {
        let (_origin, clone, base, head) = shallow_pr();
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/repos/octo/shop/pulls/2/files"))
            .respond_with(ResponseTemplate::new(403).set_body_json(serde_json::json!({
                "message": "Resource not accessible by integration",
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#list-pull-requests-files"})))
            .mount(&server)
            .await;
        let r = run_against(&server, clone.path(), &base, &head).await;
        assert_eq!(r.run.code, 2, "{}", r.run.stderr);
        assert!(
            r.run.stderr.contains("pull-requests: read"),
            "{}",
            r.run.stderr
        );
        assert!(r.run.stderr.contains("fetch-depth: 0"), "{}", r.run.stderr);
        assert!(r.outputs.is_empty());
    }
}

#[test]
fn without_a_command_a_pull_request_plans_and_a_push_ships() {
    let (mut repo, base) = repo();
    repo.write("pb/api.proto", "p2\n");
    let head = repo.commit("proto");
    let no_command = [("INPUT_COMMAND", "")];
    let pr = run_action(
        repo.path(),
        "pull_request",
        &pr_payload("opened", &base, &head),
        &head,
        &no_command,
    );
    assert_eq!(pr.run.code, 0, "{}", pr.run.stderr);
    assert_eq!(pr.output("changed"), r#"["api","web"]"#);
    assert!(
        !pr.outputs.iter().any(|(name, _)| name == "images"),
        "a plan pushes nothing: {:?}",
        pr.outputs
    );
    // The same change pushed: `ship`, which first needs a cluster and says so before anything.
    let mut payload = fixture("push.json");
    payload["before"] = base.clone().into();
    payload["after"] = head.clone().into();
    payload["deleted"] = false.into();
    let push = run_action(repo.path(), "push", &payload, &head, &no_command);
    assert_eq!(push.run.code, 2, "{}", push.run.stderr);
    assert!(
        push.run.stderr.contains("cannot use the cluster"),
        "{}",
        push.run.stderr
    );
    assert!(push.outputs.is_empty(), "{:?}", push.outputs);
}

#[test]
fn a_dry_run_ship_still_writes_the_outputs() {
    let (mut repo, base) = repo();
    repo.write("services/worker/job.sh", "echo 2\n");
    let head = repo.commit("worker");
    let r = dispatch(
        repo.path(),
        &head,
        &[
            ("INPUT_COMMAND", "ship"),
            ("INPUT_DRY-RUN", "true"),
            ("INPUT_BASE", &base),
            ("INPUT_REGISTRY", "127.0.0.1:9/shop"),
        ],
    );
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    assert_eq!(r.output("changed"), r#"["worker"]"#);
    assert_eq!(r.output("any-changed"), "true");
    assert!(r.summary.contains("worker"), "{}", r.summary);
}

#[test]
fn runner_debug_turns_on_debug_logs() {
    let (repo, base) = repo();
    let quiet = dispatch(repo.path(), &base, &[]);
    assert!(
        !quiet.run.stderr.contains("config loaded"),
        "{}",
        quiet.run.stderr
    );
    let debug = dispatch(repo.path(), &base, &[("RUNNER_DEBUG", "1")]);
    assert_eq!(debug.run.code, 0, "{}", debug.run.stderr);
    assert!(
        debug.run.stderr.contains("config loaded"),
        "{}",
        debug.run.stderr
    );
}

#[test]
fn the_old_context_input_still_works_with_a_deprecation_warning() {
    let (repo, base) = repo();
    let r = dispatch(repo.path(), &base, &[("INPUT_CONTEXT", "staging")]);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    let warning = r.stderr_line("::warning::");
    assert!(warning.contains("`context` is deprecated"), "{warning}");
    assert!(warning.contains("`kube-context`"), "{warning}");
    let r = dispatch(repo.path(), &base, &[("INPUT_KUBE-CONTEXT", "staging")]);
    assert!(!r.run.stderr.contains("deprecated"), "{}", r.run.stderr);
}

#[test]
fn a_matrix_of_more_than_256_services_is_warned_of() {
    let mut config = String::from("services:\n");
    for i in 0..257 {
        config.push_str(&format!("  s{i:03}:\n    paths: [\"s/{i:03}/**\"]\n"));
    }
    let mut repo = Repo::new();
    repo.write(".github/monoship.yml", &config);
    let sha = repo.commit("many services");
    let r = dispatch(repo.path(), &sha, &[]);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    let warning = r.stderr_line("::warning::");
    assert!(
        warning.contains("lists 257 services, more than the 256 jobs"),
        "{warning}"
    );
    let fewer = config.replace("  s256:\n    paths: [\"s/256/**\"]\n", "");
    repo.write(".github/monoship.yml", &fewer);
    let sha = repo.commit("256 services");
    let r = dispatch(repo.path(), &sha, &[]);
    assert!(!r.run.stderr.contains("256 jobs"), "{}", r.run.stderr);
}

#[test]
fn a_refused_loopback_registry_explains_the_container_network() {
    let (mut repo, base) = repo();
    repo.write("pb/api.proto", "p2\n");
    let head = repo.commit("proto");
    // A port that was free a moment ago: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let registry = format!("127.0.0.1:{port}/shop");
    let env = [
        ("INPUT_COMMAND", "build"),
        ("INPUT_BASE", base.as_str()),
        ("INPUT_REGISTRY", registry.as_str()),
    ];
    let r = dispatch(repo.path(), &head, &env);
    assert_eq!(r.run.code, 1, "{}", r.run.stderr);
    let error = r.stderr_line("::error ");
    assert!(error.contains("Connection refused"), "{error}");
    assert!(
        error.contains("inside the action's container loopback is the container itself"),
        "{error}"
    );
    assert!(error.contains("service container's name"), "{error}");
}
