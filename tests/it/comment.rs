//! The sticky pull-request comment and GitHub Deployments, with the real binary in action mode
//! against a GitHub fake that keeps state: issue comments paged as GitHub pages them (`Link`
//! headers, repository-id URLs), deployments and their statuses. Tests assert on what the fake
//! holds afterwards.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{
    pr_payload, run_action, three_services, with_commit_names, ActionRun, Repo, ShopConfig,
};

const TOKEN: &str = "ghs_commentTestToken0123456789";
const REPOSITORY: &str = "octo/shop";
/// GitHub's next-page links name the repository by id.
const REPOSITORY_ID: u64 = 4242;
const PULL_REQUEST: u64 = 2;
const RUN_URL: &str = "https://github.com/octo/shop/actions/runs/4242";
const FORK_403: &str = "Resource not accessible by integration";

/// What the fake GitHub holds.
#[derive(Default)]
struct Forge {
    comments: Vec<Value>,
    deployments: Vec<Value>,
    /// (deployment id, status).
    statuses: Vec<(u64, Value)>,
    /// (commit, what was posted) of each commit status.
    commit_statuses: Vec<(String, Value)>,
    /// `METHOD path?query` of every request, in order.
    requests: Vec<String>,
    /// Requests that came without the token.
    unauthorized: usize,
    /// A fork's pull request: the token may read but not write.
    read_only: bool,
    /// GitHub creates the comment, then answers 502 (a gateway timeout after the work).
    fails_after_creating: bool,
    /// The login of a user's token; `None`: an installation token (`GITHUB_TOKEN`), which
    /// `GET /user` refuses and whose comments are `github-actions[bot]`'s.
    token_user: Option<&'static str>,
    next_id: u64,
}

impl Forge {
    /// The requests but those setting commit statuses (the comment tests' subject).
    fn comment_requests(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|r| !r.contains("/statuses/"))
            .cloned()
            .collect()
    }

    /// Who the comments the token posts are by.
    fn author(&self) -> &'static str {
        self.token_user.unwrap_or("github-actions[bot]")
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        1_000_000 + self.next_id
    }

    fn comment(&mut self, api: &str, body: &str, login: &str) -> Value {
        let id = self.id();
        let bot = login.ends_with("[bot]");
        json!({
            "id": id,
            "node_id": format!("IC_kwDOAbc{id}"),
            "url": format!("{api}/repos/{REPOSITORY}/issues/comments/{id}"),
            "html_url": format!("https://github.com/{REPOSITORY}/pull/{PULL_REQUEST}#issuecomment-{id}"),
            "issue_url": format!("{api}/repos/{REPOSITORY}/issues/{PULL_REQUEST}"),
            "body": body,
            "user": {
                "login": login,
                "id": if bot { 41898282 } else { 583231 },
                "node_id": "MDQ6VXNlcjU4MzIzMQ==",
                "type": if bot { "Bot" } else { "User" },
                "site_admin": false,
            },
            "created_at": "2024-05-01T10:00:00Z",
            "updated_at": "2024-05-01T10:00:00Z",
            "author_association": if bot { "NONE" } else { "MEMBER" },
            "performed_via_github_app": null,
            "reactions": {"url": format!("{api}/repos/{REPOSITORY}/issues/comments/{id}/reactions"), "total_count": 0, "+1": 0, "-1": 0},
        })
    }
}

/// GitHub's REST API for one repository, as far as monoship uses it.
struct GithubFake {
    forge: Arc<Mutex<Forge>>,
    api: String,
}

fn github_json(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/json; charset=utf-8")
        .insert_header("x-github-api-version-selected", "2022-11-28")
        .insert_header("x-ratelimit-limit", "5000")
        .insert_header("x-ratelimit-remaining", "4990")
        .insert_header("x-ratelimit-reset", "4102444799")
        .insert_header("x-ratelimit-resource", "core")
        .set_body_json(body)
}

fn github_error(status: u16, message: &str, docs: &str) -> ResponseTemplate {
    github_json(
        status,
        json!({"message": message, "documentation_url": format!("https://docs.github.com/rest/{docs}"), "status": status.to_string()}),
    )
}

impl Respond for GithubFake {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut forge = self.forge.lock().unwrap();
        let path = request.url.path().to_string();
        let query: BTreeMap<String, String> = request.url.query_pairs().into_owned().collect();
        forge.requests.push(format!(
            "{} {path}{}",
            request.method,
            request
                .url
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default()
        ));
        let authorized = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {TOKEN}").as_str());
        if !authorized {
            forge.unauthorized += 1;
            return github_error(401, "Bad credentials", "overview/resources-in-the-rest-api");
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if (request.method.as_str(), path.as_str()) == ("GET", "/user") {
            return match forge.token_user {
                Some(login) => {
                    github_json(200, json!({"login": login, "id": 583231, "type": "User"}))
                }
                None => github_error(403, FORK_403, "users/users#get-the-authenticated-user"),
            };
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let repo_prefix: Vec<&str> = REPOSITORY.split('/').collect();
        let rest: Vec<&str> = match segments.as_slice() {
            ["repos", owner, name, rest @ ..] if [*owner, *name] == repo_prefix[..] => {
                rest.to_vec()
            }
            ["repositories", id, rest @ ..] if *id == REPOSITORY_ID.to_string() => rest.to_vec(),
            _ => return github_error(404, "Not Found", "repos"),
        };
        let method = request.method.as_str();
        match (method, rest.as_slice()) {
            ("GET", ["issues", number, "comments"]) if *number == PULL_REQUEST.to_string() => {
                let per_page: usize = query
                    .get("per_page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(30)
                    .min(100);
                let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let pages = forge.comments.len().div_ceil(per_page).max(1);
                let items: Vec<Value> = forge
                    .comments
                    .iter()
                    .skip((page - 1) * per_page)
                    .take(per_page)
                    .cloned()
                    .collect();
                let link = |p: usize, rel: &str| {
                    format!(
                        "<{}/repositories/{REPOSITORY_ID}/issues/{PULL_REQUEST}/comments?per_page={per_page}&page={p}>; rel=\"{rel}\"",
                        self.api
                    )
                };
                let mut links = Vec::new();
                if page > 1 {
                    links.push(link(page - 1, "prev"));
                }
                if page < pages {
                    links.push(link(page + 1, "next"));
                    links.push(link(pages, "last"));
                }
                if page > 1 {
                    links.push(link(1, "first"));
                }
                let mut response = github_json(200, Value::Array(items));
                if !links.is_empty() {
                    response = response.insert_header("link", links.join(", "));
                }
                response
            }
            ("POST", ["issues", number, "comments"]) if *number == PULL_REQUEST.to_string() => {
                if forge.read_only {
                    return github_error(403, FORK_403, "issues/comments#create-an-issue-comment");
                }
                let Some(text) = body["body"].as_str() else {
                    return github_error(
                        422,
                        "Invalid request.\n\n\"body\" wasn't supplied.",
                        "issues/comments#create-an-issue-comment",
                    );
                };
                if text.chars().count() > 65_536 {
                    return github_error(
                        422,
                        "Validation Failed: body is too long (maximum is 65536 characters)",
                        "issues/comments#create-an-issue-comment",
                    );
                }
                let author = forge.author();
                let comment = forge.comment(&self.api, text, author);
                forge.comments.push(comment.clone());
                if forge.fails_after_creating {
                    return github_error(502, "Server Error", "issues/comments");
                }
                github_json(201, comment)
            }
            ("PATCH", ["issues", "comments", id]) => {
                if forge.read_only {
                    return github_error(403, FORK_403, "issues/comments#update-an-issue-comment");
                }
                let Some(text) = body["body"].as_str().map(str::to_string) else {
                    return github_error(
                        422,
                        "Invalid request.",
                        "issues/comments#update-an-issue-comment",
                    );
                };
                let id: u64 = id.parse().unwrap_or(0);
                let Some(comment) = forge.comments.iter_mut().find(|c| c["id"] == id) else {
                    return github_error(
                        404,
                        "Not Found",
                        "issues/comments#update-an-issue-comment",
                    );
                };
                comment["body"] = json!(text);
                comment["updated_at"] = json!("2024-05-02T10:00:00Z");
                github_json(200, comment.clone())
            }
            ("POST", ["deployments"]) => {
                if forge.read_only {
                    return github_error(
                        403,
                        FORK_403,
                        "deployments/deployments#create-a-deployment",
                    );
                }
                let (Some(reference), Some(environment)) =
                    (body["ref"].as_str(), body["environment"].as_str())
                else {
                    return github_error(
                        422,
                        "Invalid request.",
                        "deployments/deployments#create-a-deployment",
                    );
                };
                let id = forge.id();
                let deployment = json!({
                    "url": format!("{}/repos/{REPOSITORY}/deployments/{id}", self.api),
                    "id": id,
                    "node_id": format!("DE_kwDO{id}"),
                    "sha": reference,
                    "ref": reference,
                    "task": body.get("task").cloned().unwrap_or(json!("deploy")),
                    "payload": body.get("payload").cloned().unwrap_or(json!({})),
                    "original_environment": environment,
                    "environment": environment,
                    "description": body.get("description").cloned().unwrap_or(Value::Null),
                    "creator": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
                    "created_at": "2024-05-01T10:00:00Z",
                    "updated_at": "2024-05-01T10:00:00Z",
                    "statuses_url": format!("{}/repos/{REPOSITORY}/deployments/{id}/statuses", self.api),
                    "repository_url": format!("{}/repos/{REPOSITORY}", self.api),
                    "transient_environment": body.get("transient_environment").cloned().unwrap_or(json!(false)),
                    "production_environment": environment == "production",
                    // What the client sent, for the tests.
                    "request": body.clone(),
                });
                forge.deployments.push(deployment.clone());
                github_json(201, deployment)
            }
            ("POST", ["statuses", sha]) => {
                if forge.read_only {
                    return github_error(403, FORK_403, "commits/statuses#create-a-commit-status");
                }
                let states = ["error", "failure", "pending", "success"];
                if !body["state"].as_str().is_some_and(|s| states.contains(&s)) {
                    return github_error(
                        422,
                        "Validation Failed",
                        "commits/statuses#create-a-commit-status",
                    );
                }
                let id = forge.id();
                forge.commit_statuses.push((sha.to_string(), body.clone()));
                github_json(
                    201,
                    json!({
                        "url": format!("{}/repos/{REPOSITORY}/statuses/{sha}", self.api),
                        "id": id,
                        "state": body["state"],
                        "description": body.get("description").cloned().unwrap_or(Value::Null),
                        "target_url": body.get("target_url").cloned().unwrap_or(Value::Null),
                        "context": body.get("context").cloned().unwrap_or(json!("default")),
                        "created_at": "2024-05-01T10:00:01Z",
                        "updated_at": "2024-05-01T10:00:01Z",
                    }),
                )
            }
            ("POST", ["deployments", id, "statuses"]) => {
                let Some(id) = id
                    .parse::<u64>()
                    .ok()
                    .filter(|id| forge.deployments.iter().any(|d| d["id"] == *id))
                else {
                    return github_error(
                        404,
                        "Not Found",
                        "deployments/statuses#create-a-deployment-status",
                    );
                };
                let status_id = forge.id();
                let status = json!({
                    "url": format!("{}/repos/{REPOSITORY}/deployments/{id}/statuses/{status_id}", self.api),
                    "id": status_id,
                    "state": body["state"],
                    "description": body.get("description").cloned().unwrap_or(json!("")),
                    "environment": body.get("environment").cloned().unwrap_or(Value::Null),
                    "target_url": body.get("log_url").cloned().unwrap_or(json!("")),
                    "log_url": body.get("log_url").cloned().unwrap_or(json!("")),
                    "created_at": "2024-05-01T10:00:01Z",
                    "deployment_url": format!("{}/repos/{REPOSITORY}/deployments/{id}", self.api),
                    "request": body.clone(),
                });
                forge.statuses.push((id, status.clone()));
                github_json(201, status)
            }
            _ => github_error(404, "Not Found", "repos"),
        }
    }
}

/// The fake on its own thread and runtime, so tests can block on the binary.
struct Github {
    uri: String,
    forge: Arc<Mutex<Forge>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Github {
    fn start(forge: Forge) -> Github {
        let forge = Arc::new(Mutex::new(forge));
        let (uri_tx, uri_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = forge.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let server = MockServer::start().await;
                Mock::given(any())
                    .respond_with(GithubFake {
                        forge: shared,
                        api: server.uri(),
                    })
                    .mount(&server)
                    .await;
                uri_tx.send(server.uri()).unwrap();
                let _ = stopped.await;
            });
        });
        let uri = uri_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the GitHub fake starts");
        Github {
            uri,
            forge,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn forge(&self) -> std::sync::MutexGuard<'_, Forge> {
        self.forge.lock().unwrap()
    }

    /// Comments whose first line is monoship's marker.
    fn monoship_comments(&self) -> Vec<Value> {
        self.forge()
            .comments
            .iter()
            .filter(|c| {
                c["body"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("<!-- monoship:comment "))
            })
            .cloned()
            .collect()
    }
}

impl Drop for Github {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The shop with web after api.
fn config() -> String {
    ShopConfig {
        web_depends_on_api: true,
        ..ShopConfig::default()
    }
    .yaml()
}

/// A pull request that changes `pb/api.proto` (so `api` and `web`): (repo, base, head).
fn pull_request_repo() -> (Repo, String, String) {
    let mut repo = three_services(&config());
    let base = repo.commit("base");
    repo.write("pb/api.proto", "p2\n");
    let head = repo.commit("proto");
    (repo, base, head)
}

/// Runs the action in `workspace` for a `pull_request` event, reporting to `github`.
fn run_on_pull_request(
    workspace: &Path,
    github: &Github,
    base: &str,
    head: &str,
    extra: &[(&str, &str)],
) -> ActionRun {
    let env = [
        &[
            ("GITHUB_REPOSITORY", REPOSITORY),
            ("GITHUB_RUN_ID", "4242"),
            ("GITHUB_API_URL", github.uri.as_str()),
            ("INPUT_TOKEN", TOKEN),
        ],
        extra,
    ]
    .concat();
    let payload = pr_payload("synchronize", base, head);
    let r = run_action(workspace, "pull_request", &payload, head, &env);
    // The token shows only where the runner learns to mask it.
    let unmasked = r
        .run
        .stderr
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .any(|l| l.contains(TOKEN));
    assert!(
        !unmasked && !r.run.stdout.contains(TOKEN) && !r.summary.contains(TOKEN),
        "the token was printed:\n{}",
        r.run.stderr
    );
    r
}

/// The plan of [`pull_request_repo`]'s pull request, with `extra` inputs, reported to a GitHub
/// fake holding `forge`; the run exits 0.
fn plan_pull_request(forge: Forge, extra: &[(&str, &str)]) -> (Github, ActionRun) {
    let (repo, base, head) = pull_request_repo();
    let github = Github::start(forge);
    let r = run_on_pull_request(repo.path(), &github, &base, &head, extra);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    (github, r)
}

/// `count` comments by people and other bots, none of them monoship's.
fn others(forge: &mut Forge, api: &str, count: usize) {
    for i in 0..count {
        let body = match i % 3 {
            0 => format!("LGTM {i}"),
            1 => format!("<!-- Sticky Pull Request Comment -->\nCoverage report {i}"),
            _ => format!("Quoting monoship:\n> <!-- monoship:comment config=.github/monoship.yml command=plan -->\n{i}"),
        };
        let login = if i % 3 == 1 {
            "coverage[bot]"
        } else {
            "octocat"
        };
        let comment = forge.comment(api, &body, login);
        forge.comments.push(comment);
    }
}

const PLAN_MARKER: &str = "<!-- monoship:comment config=.github/monoship.yml command=plan -->";

#[test]
fn a_pull_request_plan_creates_the_comment_when_none_is_marked() {
    let (repo, base, head) = pull_request_repo();
    let github = Github::start(Forge::default());
    {
        let api = github.uri.clone();
        others(&mut github.forge(), &api, 3);
    }
    let r = run_on_pull_request(repo.path(), &github, &base, &head, &[]);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    assert_eq!(r.output("changed"), r#"["api","web"]"#);
    assert!(
        r.summary.contains("### monoship plan"),
        "the summary came first"
    );

    let mine = github.monoship_comments();
    assert_eq!(mine.len(), 1, "{:?}", github.forge().requests);
    let body = mine[0]["body"].as_str().unwrap();
    assert_eq!(body.lines().next(), Some(PLAN_MARKER));
    assert!(body.contains("**2 of 3 services changed**"), "{body}");
    assert!(
        body.contains("| <code>pb/api.proto</code> | <code>Dockerfile COPY pb/</code> |"),
        "{body}"
    );
    assert!(
        body.contains("Would build <code>services/api/Dockerfile</code>"),
        "{body}"
    );
    assert!(body.contains(RUN_URL), "{body}");
    assert!(body.ends_with("</sub>\n"), "{body}");
    insta::assert_snapshot!(with_commit_names(body, &base, &head));
    let forge = github.forge();
    assert_eq!(forge.comments.len(), 4, "the others are untouched");
    assert_eq!(forge.unauthorized, 0);
    assert_eq!(
        forge.comment_requests(),
        [
            "GET /user".to_string(),
            format!("GET /repos/{REPOSITORY}/issues/{PULL_REQUEST}/comments?per_page=100"),
            format!("POST /repos/{REPOSITORY}/issues/{PULL_REQUEST}/comments"),
        ]
    );
    assert!(
        r.run.stderr.contains("commented on pull request #2"),
        "{}",
        r.run.stderr
    );
}

#[test]
fn a_second_run_updates_the_comment_found_on_page_two() {
    let (mut repo, base, _) = pull_request_repo();
    let github = Github::start(Forge::default());
    let (ours, build_comment) = {
        let api = github.uri.clone();
        let mut forge = github.forge();
        others(&mut forge, &api, 120);
        let ours = forge.comment(
            &api,
            &format!("{PLAN_MARKER}\nstale plan"),
            "github-actions[bot]",
        );
        forge.comments.push(ours.clone());
        // The comment of another command is another comment.
        let build = forge.comment(
            &api,
            "<!-- monoship:comment config=.github/monoship.yml command=build -->\nbuild",
            "github-actions[bot]",
        );
        forge.comments.push(build.clone());
        others(&mut forge, &api, 30);
        (ours, build)
    };
    repo.write("services/worker/job.sh", "echo 2\n");
    let head = repo.commit("worker too");
    let r = run_on_pull_request(repo.path(), &github, &base, &head, &[]);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);

    let forge = github.forge();
    assert_eq!(forge.comments.len(), 152, "no comment was added");
    let updated = forge
        .comments
        .iter()
        .find(|c| c["id"] == ours["id"])
        .unwrap();
    let body = updated["body"].as_str().unwrap();
    assert!(
        body.starts_with(&format!("{PLAN_MARKER}\n### monoship plan")),
        "{body}"
    );
    assert!(!body.contains("stale plan"), "{body}");
    assert!(body.contains("**3 of 3 services changed**"), "{body}");
    assert!(body.contains("<b>worker</b>"), "{body}");
    let build = forge
        .comments
        .iter()
        .find(|c| c["id"] == build_comment["id"])
        .unwrap();
    assert_eq!(
        build["body"], build_comment["body"],
        "the build comment is untouched"
    );
    // Page 2 came from the `Link` header, and the search stopped where the marker was.
    assert_eq!(
        forge.comment_requests(),
        [
            "GET /user".to_string(),
            format!("GET /repos/{REPOSITORY}/issues/{PULL_REQUEST}/comments?per_page=100"),
            format!("GET /repositories/{REPOSITORY_ID}/issues/{PULL_REQUEST}/comments?per_page=100&page=2"),
            format!("PATCH /repos/{REPOSITORY}/issues/comments/{}", ours["id"]),
        ]
    );
    assert!(
        r.run
            .stderr
            .contains("updated the comment on pull request #2"),
        "{}",
        r.run.stderr
    );
}

/// A marked comment by `login`, added to the forge; returns it.
fn marked_by(github: &Github, login: &str, text: &str) -> Value {
    let api = github.uri.clone();
    let mut forge = github.forge();
    let comment = forge.comment(&api, &format!("{PLAN_MARKER}\n{text}"), login);
    forge.comments.push(comment.clone());
    comment
}

fn body_of(github: &Github, id: &Value) -> String {
    let forge = github.forge();
    let c = forge.comments.iter().find(|c| c["id"] == *id).unwrap();
    c["body"].as_str().unwrap().to_string()
}

#[test]
fn a_marked_comment_by_someone_else_is_never_edited() {
    let (repo, base, head) = pull_request_repo();
    let github = Github::start(Forge::default());
    // Anyone may paste the marker; the workflow's token posts as github-actions[bot].
    let planted = marked_by(&github, "mallory", "click [here](https://evil.example)");
    let r = run_on_pull_request(repo.path(), &github, &base, &head, &[]);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    assert!(body_of(&github, &planted["id"]).contains("evil.example"));
    let mine = github.monoship_comments();
    assert_eq!(mine.len(), 2, "a comment of our own was added");
    assert_eq!(mine[1]["user"]["login"], "github-actions[bot]");
    assert!(!r.run.stderr.contains("::error"), "{}", r.run.stderr);
    let notice = r.stderr_line("::notice");
    assert!(
        notice.contains(&format!(
            "comment {} carries monoship's marker",
            planted["id"]
        )) && notice.contains("\"mallory\"")
            && notice.contains("github-actions[bot]"),
        "{notice}"
    );

    // The next run finds its own comment, past the planted one, and updates it.
    let r = run_on_pull_request(repo.path(), &github, &base, &head, &[]);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    assert_eq!(github.monoship_comments().len(), 2, "no third comment");
    assert!(body_of(&github, &planted["id"]).contains("evil.example"));
    assert!(
        r.run.stderr.contains(&format!(
            "updated the comment on pull request #2 (comment {})",
            mine[1]["id"]
        )),
        "{}",
        r.run.stderr
    );
}

#[test]
fn a_user_token_updates_the_comment_of_its_own_login() {
    let (repo, base, head) = pull_request_repo();
    let github = Github::start(Forge {
        token_user: Some("release-bot"),
        ..Forge::default()
    });
    let actions = marked_by(
        &github,
        "github-actions[bot]",
        "from another workflow's token",
    );
    let ours = marked_by(&github, "release-bot", "stale plan");
    let r = run_on_pull_request(repo.path(), &github, &base, &head, &[]);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    assert_eq!(github.forge().comments.len(), 2, "nothing was added");
    assert!(body_of(&github, &actions["id"]).ends_with("from another workflow's token"));
    let updated = body_of(&github, &ours["id"]);
    assert!(
        updated.starts_with(&format!("{PLAN_MARKER}\n### monoship plan")),
        "{updated}"
    );
}

#[test]
fn a_fork_token_that_cannot_comment_is_a_warning_and_exit_0() {
    let forge = Forge {
        read_only: true,
        ..Forge::default()
    };
    let (github, r) = plan_pull_request(forge, &[]);
    assert_eq!(
        r.output("changed"),
        r#"["api","web"]"#,
        "outputs are written"
    );
    assert!(!r.summary.is_empty(), "the summary is written");
    let warning = r.stderr_line("::warning");
    assert!(
        warning.contains("pull-request comment not posted"),
        "{warning}"
    );
    assert!(warning.contains("`pull-requests: write`"), "{warning}");
    assert!(warning.contains(FORK_403), "{warning}");
    assert!(warning.contains("fork"), "{warning}");
    assert!(!r.run.stderr.contains("::error"), "{}", r.run.stderr);
    assert!(github.forge().comments.is_empty());
}

#[test]
fn a_comment_post_that_fails_after_github_acted_is_not_repeated() {
    let forge = Forge {
        fails_after_creating: true,
        ..Forge::default()
    };
    let (github, r) = plan_pull_request(forge, &[]);
    assert_eq!(
        github.monoship_comments().len(),
        1,
        "one comment, not one per retry"
    );
    let warning = r.stderr_line("::warning");
    assert!(
        warning.contains("commenting on pull request #2"),
        "{warning}"
    );
    assert!(warning.contains("502"), "{warning}");
}

#[test]
fn the_comment_input_turns_it_off() {
    let (github, _) = plan_pull_request(Forge::default(), &[("INPUT_COMMENT", "false")]);
    assert!(github.forge().comment_requests().is_empty(), "no comment");
    // A matrix job over services stays quiet by default, and comments when asked.
    let (github, _) = plan_pull_request(Forge::default(), &[("INPUT_SERVICES", "api")]);
    assert!(github.forge().comment_requests().is_empty(), "no comment");
    let asked = [("INPUT_SERVICES", "api"), ("INPUT_COMMENT", "true")];
    let (github, _) = plan_pull_request(Forge::default(), &asked);
    assert!(
        !github.forge().comment_requests().is_empty(),
        "the comment was posted"
    );
}

/// `(commit, context, state, description)` of each commit status the fake holds.
fn commit_statuses(github: &Github) -> Vec<(String, String, String, String)> {
    github
        .forge()
        .commit_statuses
        .iter()
        .map(|(sha, s)| {
            assert_eq!(s["target_url"], RUN_URL, "{s}");
            let text = |key: &str| s[key].as_str().unwrap_or_default().to_string();
            (
                sha.clone(),
                text("context"),
                text("state"),
                text("description"),
            )
        })
        .collect()
}

#[test]
fn a_pull_request_plan_sets_a_commit_status_per_service() {
    let (repo, base, head) = pull_request_repo();
    let github = Github::start(Forge::default());
    let r = run_on_pull_request(repo.path(), &github, &base, &head, &[]);
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    let status = |service: &str, description: &str| {
        (
            head.clone(),
            format!("monoship/{service}"),
            "success".to_string(),
            description.to_string(),
        )
    };
    assert_eq!(
        commit_statuses(&github),
        [
            status("api", "changed: planned"),
            status("web", "changed: planned"),
            status("worker", &format!("unchanged since {}", &base[..7])),
        ]
    );
    assert!(!r.run.stderr.contains("::warning"), "{}", r.run.stderr);
    assert!(
        r.run.stderr.contains("set 3 commit status(es)"),
        "{}",
        r.run.stderr
    );

    // A matrix job sets the statuses of its own services only.
    let github = Github::start(Forge::default());
    let r = run_on_pull_request(
        repo.path(),
        &github,
        &base,
        &head,
        &[("INPUT_SERVICES", "web")],
    );
    assert_eq!(r.run.code, 0, "{}", r.run.stderr);
    assert_eq!(
        commit_statuses(&github),
        [status("web", "changed: planned")]
    );
}

#[test]
fn commit_statuses_are_off_on_request_and_on_dry_runs() {
    for off in [
        ("INPUT_COMMIT-STATUSES", "false"),
        ("INPUT_DRY-RUN", "true"),
    ] {
        let (github, _) = plan_pull_request(Forge::default(), &[off]);
        assert!(commit_statuses(&github).is_empty(), "{off:?}");
        let asked = github.forge().requests.clone();
        assert!(
            asked.iter().all(|r| !r.contains("/statuses/")),
            "{off:?}: {asked:?}"
        );
    }
}

#[test]
fn a_token_that_cannot_write_statuses_is_one_warning_and_exit_0() {
    let forge = Forge {
        read_only: true,
        ..Forge::default()
    };
    let (github, r) = plan_pull_request(forge, &[("INPUT_COMMENT", "false")]);
    let warnings: Vec<&str> = r
        .run
        .stderr
        .lines()
        .filter(|l| l.starts_with("::warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.run.stderr);
    assert!(
        warnings[0].contains("commit statuses not set"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("`statuses: write`"), "{}", warnings[0]);
    assert!(warnings[0].contains(FORK_403), "{}", warnings[0]);
    let tried = github.forge().requests.clone();
    assert_eq!(
        tried.iter().filter(|r| r.contains("/statuses/")).count(),
        1,
        "the first refusal stops the rest: {tried:?}"
    );
}

#[test]
fn another_api_error_is_a_warning_that_says_what_failed() {
    // A token GitHub does not know.
    let (_github, r) = plan_pull_request(Forge::default(), &[("INPUT_TOKEN", "ghs_expiredToken")]);
    let warning = r.stderr_line("::warning");
    assert!(
        warning.contains("finding who the GitHub token belongs to"),
        "{warning}"
    );
    assert!(warning.contains("401 Bad credentials"), "{warning}");
    assert!(!warning.contains("ghs_expiredToken"), "{warning}");
}

mod deployments {
    use super::*;
    use crate::support::{example_shop, Registry};
    use kube_sim::{Sim, SimOptions};

    fn deployment(name: &str, image: &str) -> String {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  replicas: 2\n  progressDeadlineSeconds: 20\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: {name}\n          image: {image}\n"
        )
    }

    fn rolled_out(sim: &Sim, name: &str) -> bool {
        let d = sim.get("deployments", "shop", name).unwrap().unwrap();
        let s = &d["status"];
        s["observedGeneration"] == d["metadata"]["generation"]
            && s["updatedReplicas"] == 2
            && s["availableReplicas"] == 2
    }

    #[test]
    fn ship_records_a_deployment_per_service_queued_in_progress_then_final() {
        let registry = Registry::start(None);
        let sim = Sim::start_blocking(SimOptions {
            namespaces: vec!["shop".into()],
            tick: Duration::from_millis(50),
            ..SimOptions::default()
        })
        .unwrap();
        for name in ["cart", "frontend"] {
            sim.apply_yaml(&deployment(name, &format!("{}/{name}:old", registry.addr)))
                .unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !["cart", "frontend"].iter().all(|n| rolled_out(&sim, n)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the seed did not roll out"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        sim.write_kubeconfig(kubeconfig.path()).unwrap();
        let (mut repo, base) = example_shop();
        repo.write("pb/demo.proto", "syntax = \"proto3\"; // deployments\n");
        let head = repo.commit("protos");
        let github = Github::start(Forge::default());

        let r = run_on_pull_request(
            repo.path(),
            &github,
            &base,
            &head,
            &[
                ("INPUT_COMMAND", "ship"),
                ("INPUT_REGISTRY", &registry.addr),
                ("INPUT_KUBECONFIG", kubeconfig.path().to_str().unwrap()),
                ("INPUT_TIMEOUT", "60"),
                ("INPUT_GITHUB-DEPLOYMENTS", "true"),
                ("INPUT_ENVIRONMENT", "staging"),
            ],
        );
        let images: BTreeMap<String, String> = serde_json::from_str(r.output("images")).unwrap();
        let deployed: Vec<String> = serde_json::from_str(r.output("deployed")).unwrap();
        assert!(
            deployed.contains(&"cart".to_string()) && deployed.contains(&"frontend".to_string()),
            "{deployed:?}\n{}",
            r.run.stderr
        );

        let forge = github.forge();
        for service in ["cart", "frontend"] {
            let d = forge
                .deployments
                .iter()
                .find(|d| d["payload"]["service"] == service)
                .unwrap_or_else(|| panic!("no deployment of {service}: {:?}", forge.requests));
            let sent = &d["request"];
            assert_eq!(sent["ref"], head.as_str());
            assert_eq!(sent["environment"], "staging");
            assert_eq!(sent["auto_merge"], false);
            assert_eq!(sent["required_contexts"], json!([]));
            assert_eq!(sent["task"], format!("deploy:{service}"));
            assert_eq!(sent["payload"]["image"], images[service].as_str());
            assert!(images[service].contains("@sha256:"));
            assert_eq!(
                sent["payload"]["targets"],
                json!([format!("deployment/{service} (namespace shop)")])
            );
            let states: Vec<(&str, &Value)> = forge
                .statuses
                .iter()
                .filter(|(id, _)| d["id"] == *id)
                .map(|(_, s)| (s["state"].as_str().unwrap(), &s["request"]))
                .collect();
            assert_eq!(
                states.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                ["queued", "in_progress", "success"],
                "{service}"
            );
            for (_, sent) in &states {
                assert_eq!(sent["log_url"], RUN_URL);
                assert_eq!(sent["environment"], "staging");
                assert!(sent["description"].as_str().unwrap().chars().count() <= 140);
            }
            assert_eq!(states[2].1["auto_inactive"], false);
        }
        // Every deployment was queued, started when its rollout did, and got a final status.
        for d in &forge.deployments {
            let count = forge
                .statuses
                .iter()
                .filter(|(id, _)| d["id"] == *id)
                .count();
            assert_eq!(count, 3, "{d}");
        }
        // Each deployed service's commit status says so.
        for service in ["cart", "frontend"] {
            let (sha, sent) = forge
                .commit_statuses
                .iter()
                .find(|(_, s)| s["context"] == format!("monoship/{service}"))
                .unwrap_or_else(|| panic!("no status of {service}: {:?}", forge.requests));
            assert_eq!(sha, &head);
            assert_eq!(sent["state"], "success", "{sent}");
            assert!(
                sent["description"].as_str().unwrap().contains("deployed"),
                "{sent}"
            );
        }
        // The ship comment is its own, keyed by the environment.
        let ship = forge
            .comments
            .iter()
            .find_map(|c| c["body"].as_str())
            .expect("the ship comment");
        assert!(ship.starts_with("<!-- monoship:comment config=.github/monoship.yml command=ship environment=staging -->\n### monoship ship to <code>staging</code>"), "{ship}");
        assert!(
            ship.contains("<code>deployment/shop/cart</code> ✅ succeeded"),
            "{ship}"
        );
        assert!(ship.contains(&images["cart"]), "{ship}");
        // Outputs and summary were written before GitHub was told anything.
        assert!(r.summary.contains("### monoship ship"), "{}", r.summary);
    }
}
