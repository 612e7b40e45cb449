//! The GitHub API change source against a GitHub fake on loopback (wiremock), with answers
//! shaped like GitHub's: pull-request file objects, compare objects, `Link` pagination, and
//! rate-limit headers.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monoship::detect::api::{ApiFiles, GithubApi, GithubError};
use monoship::detect::{ChangeKind, ChangedFile};
use serde_json::{json, Value};
use wiremock::matchers::{bearer_token, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REPOSITORY: &str = "octo-org/shop";
const TOKEN: &str = "ghs_fakeInstallationToken0123456789";
const PR_FILES: &str = "/repos/octo-org/shop/pulls/7/files";
/// GitHub's next-page links name the repository by id, not by name.
const PR_FILES_BY_ID: &str = "/repositories/4242/pulls/7/files";

/// Every test finishes well within this, or fails.
async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(15), test)
        .await
        .expect("the test took too long")
}

/// A client for the fake with short back-offs, so retries cost milliseconds.
fn api(server: &MockServer) -> GithubApi {
    GithubApi::new(&server.uri(), REPOSITORY, Some(TOKEN))
        .expect("client for the fake")
        .with_retry_delay(Duration::from_millis(10))
        .with_max_wait(Duration::from_secs(5))
        .with_request_timeout(Duration::from_secs(5))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A response with the headers GitHub puts on every API answer.
fn github_response(status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/json; charset=utf-8")
        .insert_header("x-github-api-version-selected", "2022-11-28")
        .insert_header("x-ratelimit-limit", "5000")
        .insert_header("x-ratelimit-remaining", "4987")
        .insert_header("x-ratelimit-reset", (unix_now() + 1800).to_string())
        .insert_header("x-ratelimit-used", "13")
        .insert_header("x-ratelimit-resource", "core")
}

fn github_error(status: u16, message: &str, docs: &str) -> ResponseTemplate {
    github_response(status).set_body_json(json!({
        "message": message,
        "documentation_url": format!("https://docs.github.com/rest/{docs}"),
        "status": status.to_string(),
    }))
}

/// One diff entry as GitHub's pull-request files and compare endpoints return it.
fn diff_entry(filename: &str, status: &str, previous: Option<&str>) -> Value {
    let sha = format!("{:040x}", fnv(filename));
    let commit = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    let (additions, deletions) = match status {
        "added" => (12, 0),
        "removed" => (0, 9),
        "renamed" => (0, 0),
        _ => (3, 1),
    };
    let mut entry = json!({
        "sha": sha,
        "filename": filename,
        "status": status,
        "additions": additions,
        "deletions": deletions,
        "changes": additions + deletions,
        "blob_url": format!("https://github.com/octo-org/shop/blob/{commit}/{filename}"),
        "raw_url": format!("https://github.com/octo-org/shop/raw/{commit}/{filename}"),
        "contents_url": format!("https://api.github.com/repos/octo-org/shop/contents/{filename}?ref={commit}"),
        "patch": "@@ -1,3 +1,4 @@\n fn main() {\n-    old();\n+    new();\n+    more();\n }",
    });
    if let Some(previous) = previous {
        entry["previous_filename"] = json!(previous);
    }
    if status == "renamed" {
        // A pure rename carries no patch.
        entry.as_object_mut().unwrap().remove("patch");
    }
    entry
}

/// A stable stand-in for a blob hash.
fn fnv(text: &str) -> u128 {
    text.bytes()
        .fold(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d, |hash, byte| {
            (hash ^ u128::from(byte)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b)
        })
}

/// `count` modified files spread over ten services, in a fixed order.
fn modified_files(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("services/svc{}/src/file{i:04}.rs", i % 10))
        .collect()
}

/// Mounts a pull request's files split into pages of 100, linked the way GitHub links them,
/// each page expected exactly once.
async fn mount_pull_request_pages(server: &MockServer, files: &[String]) {
    let pages: Vec<&[String]> = files.chunks(100).collect();
    let last = pages.len();
    let page_url =
        |page: usize| format!("{}{PR_FILES_BY_ID}?per_page=100&page={page}", server.uri());
    for (index, page) in pages.iter().enumerate() {
        let number = index + 1;
        let mut links = Vec::new();
        if number > 1 {
            links.push(format!("<{}>; rel=\"prev\"", page_url(number - 1)));
        }
        if number < last {
            links.push(format!("<{}>; rel=\"next\"", page_url(number + 1)));
            links.push(format!("<{}>; rel=\"last\"", page_url(last)));
        }
        if number > 1 {
            links.push(format!("<{}>; rel=\"first\"", page_url(1)));
        }
        let body: Vec<Value> = page
            .iter()
            .map(|name| diff_entry(name, "modified", None))
            .collect();
        let mut response = github_response(200).set_body_json(body);
        if !links.is_empty() {
            response = response.insert_header("link", links.join(", "));
        }
        let mock = if number == 1 {
            Mock::given(method("GET"))
                .and(path(PR_FILES))
                .and(query_param_is_missing("page"))
        } else {
            Mock::given(method("GET"))
                .and(path(PR_FILES_BY_ID))
                .and(query_param("page", number.to_string()))
        };
        mock.and(query_param("per_page", "100"))
            .and(bearer_token(TOKEN))
            .respond_with(response)
            .expect(1)
            .named(format!("pull request files, page {number}"))
            .mount(server)
            .await;
    }
}

fn paths(listing: &ApiFiles) -> Vec<&str> {
    listing
        .files
        .iter()
        .map(|file| file.path.as_str())
        .collect()
}

/// Mounts `failure` for the first `times` requests to the pull request's files, then a
/// one-file listing.
async fn mount_failures_then_success(server: &MockServer, failure: ResponseTemplate, times: u64) {
    Mock::given(method("GET"))
        .and(path(PR_FILES))
        .respond_with(failure)
        .up_to_n_times(times)
        .expect(times)
        .named("failing answers")
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(PR_FILES))
        .respond_with(github_response(200).set_body_json(json!([diff_entry(
            "services/cart/main.go",
            "modified",
            None
        )])))
        .expect(1)
        .named("the answer after the failures")
        .mount(server)
        .await;
}

fn comparison(files: Vec<Value>) -> Value {
    let base = "1f0d5e0e2ab1c3d4e5f60718293a4b5c6d7e8f90";
    let head = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807";
    json!({
        "url": format!("https://api.github.com/repos/octo-org/shop/compare/{base}...{head}"),
        "html_url": format!("https://github.com/octo-org/shop/compare/{base}...{head}"),
        "permalink_url": format!("https://github.com/octo-org/shop/compare/octo-org:{base}...octo-org:{head}"),
        "diff_url": format!("https://github.com/octo-org/shop/compare/{base}...{head}.diff"),
        "patch_url": format!("https://github.com/octo-org/shop/compare/{base}...{head}.patch"),
        "base_commit": {"sha": base, "commit": {"message": "Release 1.4"}},
        "merge_base_commit": {"sha": base, "commit": {"message": "Release 1.4"}},
        "status": "ahead",
        "ahead_by": 2,
        "behind_by": 0,
        "total_commits": 2,
        "commits": [
            {"sha": "4a5b6c7d8e9f00112233445566778899aabbccdd", "commit": {"message": "Move the proto"}},
            {"sha": head, "commit": {"message": "Bump cart"}},
        ],
        "files": files,
    })
}

const COMPARE: &str = "/repos/octo-org/shop/compare/1f0d5e0e...9e8d7c6b";
/// Mounts `answer` to `GET at`, expected exactly `times` times.
async fn serve(server: &MockServer, at: &str, answer: ResponseTemplate, times: u64) {
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(answer)
        .expect(times)
        .mount(server)
        .await;
}

/// A page listing one added file.
fn one_added(name: &str) -> ResponseTemplate {
    github_response(200).set_body_json(json!([diff_entry(name, "added", None)]))
}

/// Which listing a case asks for.
#[derive(Clone, Copy, Debug)]
enum Listing {
    /// The files of pull request #7, its total unknown.
    PullRequest,
    /// The comparison of `1f0d5e0e...9e8d7c6b`.
    Compare,
}

impl Listing {
    fn path(self) -> &'static str {
        match self {
            Listing::PullRequest => PR_FILES,
            Listing::Compare => COMPARE,
        }
    }

    async fn list(self, api: &GithubApi) -> Result<ApiFiles, GithubError> {
        match self {
            Listing::PullRequest => api.pull_request_files(7, None).await,
            Listing::Compare => api.compare("1f0d5e0e", "9e8d7c6b").await,
        }
    }
}

/// A pull request of `files` modified files, listed with `changed_files` as the event gave it.
struct PagedCase {
    files: usize,
    changed_files: Option<u64>,
    truncated: bool,
}

#[tokio::test]
async fn pull_request_files_follow_link_pages_and_say_when_the_cap_cut_them() {
    let cases = [
        // Three pages, in order, all of them.
        PagedCase {
            files: 250,
            changed_files: Some(250),
            truncated: false,
        },
        // 3,000 files is GitHub's cap, whether or not the event gave a total.
        PagedCase {
            files: 3000,
            changed_files: None,
            truncated: true,
        },
        PagedCase {
            files: 3000,
            changed_files: Some(3500),
            truncated: true,
        },
        // A listing shorter than the pull request's own count.
        PagedCase {
            files: 5,
            changed_files: Some(6),
            truncated: true,
        },
    ];
    for case in cases {
        let label = format!(
            "{} files, changed_files {:?}",
            case.files, case.changed_files
        );
        bounded(async {
            let server = MockServer::start().await;
            let files = modified_files(case.files);
            mount_pull_request_pages(&server, &files).await;

            let listing = api(&server)
                .pull_request_files(7, case.changed_files)
                .await
                .unwrap();

            assert_eq!(paths(&listing), files, "{label}");
            assert!(
                listing
                    .files
                    .iter()
                    .all(|file| file.kind == ChangeKind::Modified && file.previous.is_none()),
                "{label}"
            );
            assert_eq!(listing.truncated, case.truncated, "{label}");
            assert_eq!(listing.reported_total, case.changed_files, "{label}");
            let requests = server.received_requests().await.unwrap();
            assert_eq!(requests.len(), case.files.div_ceil(100), "{label}");
            assert!(
                requests.iter().all(|request| request
                    .url
                    .query()
                    .unwrap()
                    .contains("per_page=100")),
                "{label}"
            );
            server.verify().await;
        })
        .await;
    }
}

#[tokio::test]
async fn pull_request_renames_keep_the_previous_filename() {
    bounded(async {
        let server = MockServer::start().await;
        let body = json!([
            diff_entry(
                "services/payment/api.proto",
                "renamed",
                Some("services/cart/api.proto")
            ),
            diff_entry("services/cart/new.go", "added", None),
            diff_entry("services/cart/old.go", "removed", None),
            diff_entry("services/cart/run.sh", "changed", None),
            diff_entry(
                "services/shipping/copy.go",
                "copied",
                Some("services/cart/copy.go")
            ),
            diff_entry("services/cart/main.go", "modified", None),
        ]);
        serve(
            &server,
            PR_FILES,
            github_response(200).set_body_json(body),
            1,
        )
        .await;

        let listing = api(&server).pull_request_files(7, Some(6)).await.unwrap();

        let changed = |path: &str, kind, previous: Option<&str>| ChangedFile {
            path: path.to_owned(),
            kind,
            previous: previous.map(str::to_owned),
        };
        assert_eq!(
            listing.files,
            [
                changed(
                    "services/payment/api.proto",
                    ChangeKind::Renamed,
                    Some("services/cart/api.proto")
                ),
                changed("services/cart/new.go", ChangeKind::Added, None),
                changed("services/cart/old.go", ChangeKind::Deleted, None),
                changed("services/cart/run.sh", ChangeKind::TypeChanged, None),
                changed(
                    "services/shipping/copy.go",
                    ChangeKind::Copied,
                    Some("services/cart/copy.go")
                ),
                changed("services/cart/main.go", ChangeKind::Modified, None),
            ]
        );
        let rename: Vec<&str> = listing.files[0].touched_paths().collect();
        assert_eq!(
            rename,
            ["services/payment/api.proto", "services/cart/api.proto"]
        );
        assert!(!listing.truncated);
    })
    .await;
}

/// GitHub's answer to the secondary rate limit; `retry-after` is up to the case.
fn secondary_rate_limit() -> ResponseTemplate {
    github_error(
        403,
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        "overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
    )
}

/// `failures` answers of `answer` before the listing comes; the client waits at least `waits`.
struct RetryCase {
    case: &'static str,
    answer: ResponseTemplate,
    failures: u64,
    waits: Duration,
}

#[tokio::test]
async fn passing_failures_are_retried_until_the_listing_comes() {
    let cases = [
        RetryCase {
            case: "too many requests, with retry-after",
            answer: github_error(
                429,
                "API rate limit exceeded",
                "overview/rate-limits-for-the-rest-api",
            )
            .insert_header("retry-after", "1"),
            failures: 1,
            waits: Duration::from_secs(1),
        },
        RetryCase {
            case: "the secondary rate limit, waited out",
            answer: secondary_rate_limit().insert_header("retry-after", "1"),
            failures: 1,
            waits: Duration::from_secs(1),
        },
        RetryCase {
            case: "server errors, retried with back-off",
            answer: github_response(502)
                .set_body_string("<html><body><h1>502 Bad Gateway</h1></body></html>"),
            failures: 2,
            waits: Duration::ZERO,
        },
    ];
    for RetryCase {
        case,
        answer,
        failures,
        waits,
    } in cases
    {
        bounded(async {
            let server = MockServer::start().await;
            mount_failures_then_success(&server, answer, failures).await;

            let started = Instant::now();
            let listing = api(&server).pull_request_files(7, None).await.unwrap();

            assert_eq!(paths(&listing), ["services/cart/main.go"], "{case}");
            assert!(!listing.truncated, "{case}");
            assert!(
                started.elapsed() >= waits,
                "{case}: the wait was not honoured"
            );
            server.verify().await;
        })
        .await;
    }
}

/// `answer` to `listing`, asked `requests` times, fails with an error that `is` accepts and
/// whose message says each of `says` (and never the token).
struct RefusalCase {
    case: &'static str,
    listing: Listing,
    answer: ResponseTemplate,
    requests: u64,
    is: fn(&GithubError) -> bool,
    says: &'static [&'static str],
}

#[tokio::test]
async fn refusals_fail_with_an_error_that_says_what_to_do() {
    let cases = [
        RefusalCase {
            // GitHub asks for at least a minute here, more than the 5 s this client may wait.
            case: "secondary rate limit without retry-after",
            listing: Listing::PullRequest,
            answer: secondary_rate_limit(),
            requests: 1,
            is: |e| matches!(e, GithubError::RateLimitTooLong { wait_secs: 60, .. }),
            says: &[],
        },
        RefusalCase {
            case: "server errors without end, after three retries",
            listing: Listing::PullRequest,
            answer: github_error(500, "Server Error", "pulls/pulls#list-pull-requests-files"),
            requests: 4,
            is: |e| {
                matches!(
                    e,
                    GithubError::ServerError {
                        status: 500,
                        attempts: 4,
                        ..
                    }
                )
            },
            says: &["pull request #7 in octo-org/shop", "500 (Server Error)"],
        },
        RefusalCase {
            case: "resource not accessible by integration, not retried",
            listing: Listing::PullRequest,
            answer: github_error(
                403,
                "Resource not accessible by integration",
                "pulls/pulls#list-pull-requests-files",
            ),
            requests: 1,
            is: |e| matches!(e, GithubError::PermissionDenied { .. }),
            says: &[
                "`pull-requests: read`",
                "permissions:",
                "fetch-depth: 0",
                "Resource not accessible by integration",
            ],
        },
        RefusalCase {
            case: "a private repository answers not found",
            listing: Listing::PullRequest,
            answer: github_error(404, "Not Found", "pulls/pulls#list-pull-requests-files"),
            requests: 1,
            is: |e| matches!(e, GithubError::NotFound { .. }),
            says: &["`pull-requests: read`", "fetch-depth: 0"],
        },
        RefusalCase {
            case: "bad credentials, not retried",
            listing: Listing::PullRequest,
            answer: github_error(401, "Bad credentials", ""),
            requests: 1,
            is: |e| matches!(e, GithubError::BadCredentials { .. }),
            says: &[],
        },
        RefusalCase {
            case: "a next link to another host, not followed",
            listing: Listing::PullRequest,
            answer: one_added("a.txt").insert_header(
                "link",
                "<https://collector.example/repositories/4242/pulls/7/files?page=2>; rel=\"next\"",
            ),
            requests: 1,
            is: |e| matches!(e, GithubError::ForeignNextLink { .. }),
            says: &[],
        },
        RefusalCase {
            case: "a forbidden comparison",
            listing: Listing::Compare,
            answer: github_error(
                403,
                "Resource not accessible by integration",
                "commits/commits#compare-two-commits",
            ),
            requests: 1,
            is: |e| matches!(e, GithubError::PermissionDenied { .. }),
            says: &["`contents: read`", "comparing 1f0d5e0e...9e8d7c6b"],
        },
    ];
    for RefusalCase {
        case,
        listing,
        answer,
        requests,
        is,
        says,
    } in cases
    {
        bounded(async {
            let server = MockServer::start().await;
            serve(&server, listing.path(), answer, requests).await;

            let error = listing.list(&api(&server)).await.unwrap_err();

            assert!(is(&error), "{case}: {error:?}");
            let message = error.to_string();
            for part in says {
                assert!(message.contains(part), "{case}: no {part:?} in {message}");
            }
            assert!(!message.contains(TOKEN), "{case}: {message}");
            assert!(!format!("{error:?}").contains(TOKEN), "{case}: {error:?}");
            server.verify().await;
        })
        .await;
    }
}

#[tokio::test]
async fn exhausted_rate_limit_resetting_far_ahead_fails_at_once_naming_the_reset() {
    bounded(async {
        let server = MockServer::start().await;
        let reset = unix_now() + 3600;
        let limited = github_error(
            403,
            "API rate limit exceeded for installation ID 123.",
            "overview/rate-limits-for-the-rest-api",
        )
        .insert_header("x-ratelimit-remaining", "0")
        .insert_header("x-ratelimit-used", "5000")
        .insert_header("x-ratelimit-reset", reset.to_string());
        serve(&server, PR_FILES, limited, 1).await;

        let started = Instant::now();
        let error = api(&server).pull_request_files(7, None).await.unwrap_err();

        assert!(
            started.elapsed() < Duration::from_secs(2),
            "it waited for the reset"
        );
        let GithubError::RateLimitTooLong {
            ref resets_at,
            wait_secs,
            ..
        } = error
        else {
            panic!("expected RateLimitTooLong, got {error:?}");
        };
        assert!((3590..=3600).contains(&wait_secs), "wait {wait_secs}");
        let message = error.to_string();
        assert!(
            message.contains(&format!("resets at {resets_at}")),
            "{message}"
        );
        assert!(
            resets_at.ends_with('Z') && resets_at.len() == 20,
            "{resets_at}"
        );
        assert!(message.contains("fetch-depth: 0"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn compare_lists_files_and_renames() {
    bounded(async {
        let server = MockServer::start().await;
        let body = comparison(vec![
            diff_entry(
                "services/payment/api.proto",
                "renamed",
                Some("services/cart/api.proto"),
            ),
            diff_entry("services/cart/main.go", "modified", None),
        ]);
        Mock::given(method("GET"))
            .and(path(COMPARE))
            .and(query_param_is_missing("per_page"))
            .respond_with(github_response(200).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;

        let listing = api(&server).compare("1f0d5e0e", "9e8d7c6b").await.unwrap();

        assert_eq!(
            listing.files[0],
            ChangedFile {
                path: "services/payment/api.proto".to_owned(),
                kind: ChangeKind::Renamed,
                previous: Some("services/cart/api.proto".to_owned()),
            }
        );
        assert_eq!(listing.files[1].path, "services/cart/main.go");
        assert_eq!(listing.files[1].kind, ChangeKind::Modified);
        assert!(!listing.truncated);
        assert_eq!(listing.reported_total, None);
    })
    .await;
}

#[tokio::test]
async fn compare_with_300_files_is_truncated() {
    bounded(async {
        let server = MockServer::start().await;
        let files = modified_files(300)
            .iter()
            .map(|name| diff_entry(name, "modified", None))
            .collect();
        serve(
            &server,
            COMPARE,
            github_response(200).set_body_json(comparison(files)),
            1,
        )
        .await;

        let listing = api(&server).compare("1f0d5e0e", "9e8d7c6b").await.unwrap();

        assert_eq!(listing.files.len(), 300);
        assert!(listing.truncated);
    })
    .await;
}

#[tokio::test]
async fn enterprise_path_prefix_is_kept_on_every_page() {
    bounded(async {
        let server = MockServer::start().await;
        let next = format!(
            "{}/api/v3{PR_FILES_BY_ID}?per_page=100&page=2",
            server.uri()
        );
        Mock::given(method("GET"))
            .and(path(format!("/api/v3{PR_FILES}")))
            .and(query_param("per_page", "100"))
            .respond_with(one_added("a.txt").insert_header(
                "link",
                format!("<{next}>; rel=\"next\", <{next}>; rel=\"last\""),
            ))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/api/v3{PR_FILES_BY_ID}")))
            .and(query_param("page", "2"))
            .and(bearer_token(TOKEN))
            .respond_with(one_added("b.txt"))
            .expect(1)
            .mount(&server)
            .await;

        let api = GithubApi::new(
            &format!("{}/api/v3/", server.uri()),
            REPOSITORY,
            Some(TOKEN),
        )
        .unwrap();
        let listing = api.pull_request_files(7, Some(2)).await.unwrap();

        assert_eq!(paths(&listing), ["a.txt", "b.txt"]);
        assert!(!listing.truncated);
    })
    .await;
}

#[tokio::test]
async fn public_repository_needs_no_token() {
    bounded(async {
        let server = MockServer::start().await;
        serve(&server, PR_FILES, one_added("a.txt"), 1).await;

        let api = GithubApi::new(&server.uri(), REPOSITORY, Some("  ")).unwrap();
        let listing = api.pull_request_files(7, None).await.unwrap();

        assert_eq!(paths(&listing), ["a.txt"]);
        let requests = server.received_requests().await.unwrap();
        assert!(!requests[0].headers.contains_key("authorization"));
    })
    .await;
}

#[tokio::test]
async fn unreachable_api_fails_after_bounded_retries() {
    bounded(async {
        // A port that was just free: nothing listens there.
        let port = crate::support::free_port();
        let api = GithubApi::new(&format!("http://127.0.0.1:{port}"), REPOSITORY, Some(TOKEN))
            .unwrap()
            .with_retry_delay(Duration::from_millis(10));

        let error = api.pull_request_files(7, None).await.unwrap_err();

        assert!(
            matches!(error, GithubError::Unreachable { attempts: 4, .. }),
            "{error:?}"
        );
        assert!(std::error::Error::source(&error).is_some());
    })
    .await;
}

#[tokio::test]
async fn slow_api_times_out_after_bounded_retries() {
    bounded(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(PR_FILES))
            .respond_with(
                github_response(200)
                    .set_body_json(json!([]))
                    .set_delay(Duration::from_secs(3)),
            )
            .mount(&server)
            .await;
        let api = api(&server).with_request_timeout(Duration::from_millis(100));

        let error = api.pull_request_files(7, None).await.unwrap_err();

        assert!(
            matches!(error, GithubError::Timeout { attempts: 4, .. }),
            "{error:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_settings_are_refused_without_echoing_the_token() {
    bounded(async {
        let error = GithubApi::new("api.github.com", REPOSITORY, None).unwrap_err();
        assert!(
            matches!(error, GithubError::InvalidApiUrl { .. }),
            "{error:?}"
        );

        let error = GithubApi::new("https://api.github.com", "shop", None).unwrap_err();
        assert!(
            matches!(error, GithubError::InvalidRepository { .. }),
            "{error:?}"
        );

        let broken_token = "ghs_abc\ndef";
        let error =
            GithubApi::new("https://api.github.com", REPOSITORY, Some(broken_token)).unwrap_err();
        assert!(matches!(error, GithubError::InvalidToken), "{error:?}");
        assert!(!error.to_string().contains("ghs_abc"));

        let api = GithubApi::new("https://api.github.com", REPOSITORY, Some(TOKEN)).unwrap();
        assert!(!format!("{api:?}").contains(TOKEN));
    })
    .await;
}

/// The app makes the client first and its runtime second, then drives requests with
/// `block_on`; the client must not need a runtime until it sends.
#[test]
fn client_made_outside_a_runtime_works_inside_one() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(async {
        let server = MockServer::start().await;
        serve(&server, PR_FILES, one_added("a.txt"), 1).await;
        server
    });

    let api = GithubApi::new(&server.uri(), REPOSITORY, Some(TOKEN)).unwrap();
    let listing = runtime
        .block_on(bounded(api.pull_request_files(7, None)))
        .unwrap();

    assert_eq!(paths(&listing), ["a.txt"]);
    runtime.block_on(server.verify());
}
