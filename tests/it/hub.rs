//! Docker Hub as the push registry. Hub itself cannot be reached from the tests, so a loopback
//! fake behaves like it in front of a real `docker-registry`: every `/v2/` request needs a
//! Bearer token, the challenge names `service="registry.docker.io"` and a token service on
//! another port (as `auth.docker.io` is), which takes the account by Basic auth and answers
//! JSON `token`s per scope; on demand it answers 429 `TOOMANYREQUESTS` as Hub does. monoship's
//! registry client talks to it for a `docker.io/<namespace>` target, its API host pointed at
//! the fake (the one field a test changes). The refusals run the real binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use monoship::image::base::{resolve_all, Resolution};
use monoship::image::lifecycle::{mark_deployed, Marked};
use monoship::image::registry::{OciRegistry, RegistryError, RegistryTarget};
use monoship::secret::Secret;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{docker_ok, env_map, monoship, three_services, Registry};

const USER: &str = "acme-bot";
const PASSWORD: &str = "hub-pat-7f3a";

/// Hub's token service: Basic auth with the account, `service=registry.docker.io`, a token
/// per scope. Records the scopes asked.
struct TokenService {
    scopes: Arc<Mutex<Vec<String>>>,
}

impl Respond for TokenService {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let query = |key: &str| {
            request
                .url
                .query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        let authorized = request
            .headers
            .get("authorization")
            .is_some_and(|v| v == basic.as_str());
        if !authorized || query("service").as_deref() != Some("registry.docker.io") {
            return ResponseTemplate::new(401)
                .set_body_string(r#"{"details":"incorrect username or password"}"#);
        }
        let scope = query("scope").unwrap_or_default();
        self.scopes.lock().unwrap().push(scope.clone());
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "token": format!("hub:{scope}"),
            "expires_in": 300,
        }))
    }
}

/// Hub's registry API: a Bearer token of the right scope, else the challenge; then the
/// request goes to the real registry behind it. `throttled` requests first get 429.
struct HubApi {
    realm: String,
    upstream: String,
    throttled: Arc<AtomicU32>,
}

impl Respond for HubApi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let left = self.throttled.load(Ordering::SeqCst);
        if left > 0 {
            self.throttled.store(left - 1, Ordering::SeqCst);
            return ResponseTemplate::new(429)
                .insert_header("ratelimit-limit", "100;w=21600")
                .insert_header("ratelimit-remaining", "0;w=21600")
                .set_body_raw(
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}]}"#,
                "application/json",
            );
        }
        let path = request.url.path();
        let repository = ["/manifests/", "/blobs/", "/tags/"]
            .iter()
            .find_map(|part| path.strip_prefix("/v2/")?.split_once(part))
            .map(|(repository, _)| repository.to_string())
            .unwrap_or_default();
        let actions = match request.method.as_str() {
            "GET" | "HEAD" => "pull",
            _ => "pull,push",
        };
        let scope = format!("repository:{repository}:{actions}");
        let token = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer hub:"))
            .unwrap_or_default();
        let allowed = token == scope || (actions == "pull" && token == format!("{scope},push"));
        if !allowed {
            return ResponseTemplate::new(401)
                .insert_header(
                    "WWW-Authenticate",
                    format!(
                        r#"Bearer realm="{}",service="registry.docker.io",scope="{scope}""#,
                        self.realm
                    ),
                )
                .set_body_raw(
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                    "application/json",
                );
        }
        forward(&self.upstream, request)
    }
}

/// Sends `request` to the registry at `upstream` (HTTP/1.1, one connection) and answers what
/// it answered: status, body, and the headers a client reads.
fn forward(upstream: &str, request: &Request) -> ResponseTemplate {
    let mut stream = TcpStream::connect(upstream).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let target = match request.url.query() {
        Some(q) => format!("{}?{q}", request.url.path()),
        None => request.url.path().to_string(),
    };
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\nContent-Length: {}\r\n",
        request.method,
        request.body.len()
    );
    for name in ["accept", "content-type"] {
        if let Some(v) = request.headers.get(name).and_then(|v| v.to_str().ok()) {
            head.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&request.body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&answer[..end]).to_string();
    let mut body = answer[end + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut response = ResponseTemplate::new(status);
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "docker-content-digest" | "content-type" | "location" => {
                response = response.insert_header(name.as_str(), value);
            }
            _ => {}
        }
    }
    if chunked {
        body = dechunk(&body);
    }
    if request.method.as_str() == "HEAD" {
        return response;
    }
    response.set_body_bytes(body)
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[end + 2..end + 2 + size]);
        rest = &rest[end + 2 + size + 2..];
    }
}

/// The fake Hub: its API and its token service on two loopback ports, in front of `upstream`.
struct FakeHub {
    api: MockServer,
    _tokens: MockServer,
    scopes: Arc<Mutex<Vec<String>>>,
    throttled: Arc<AtomicU32>,
}

impl FakeHub {
    async fn start(upstream: &str) -> FakeHub {
        let tokens = MockServer::start().await;
        let scopes = Arc::new(Mutex::new(Vec::new()));
        Mock::given(wiremock::matchers::path("/token"))
            .respond_with(TokenService {
                scopes: scopes.clone(),
            })
            .mount(&tokens)
            .await;
        let api = MockServer::start().await;
        let throttled = Arc::new(AtomicU32::new(0));
        Mock::given(wiremock::matchers::path_regex("^/v2/"))
            .respond_with(HubApi {
                realm: format!("{}/token", tokens.uri()),
                upstream: upstream.to_string(),
                throttled: throttled.clone(),
            })
            .mount(&api)
            .await;
        FakeHub {
            api,
            _tokens: tokens,
            scopes,
            throttled,
        }
    }

    /// A client for `registry` (a `docker.io` spelling) with the account's credentials, its API
    /// host pointed at the fake.
    fn client(&self, registry: &str, password: &str) -> OciRegistry {
        let mut target = RegistryTarget::parse_push(
            registry,
            Some(USER.to_string()),
            Some(Secret::new(password)),
        )
        .unwrap();
        assert_eq!(target.api_host, "registry-1.docker.io", "{registry}");
        target.api_host = self.api.uri().trim_start_matches("http://").to_string();
        target.insecure = true;
        OciRegistry::new(target)
            .unwrap()
            .with_retry_delay(Duration::from_millis(10))
    }

    fn scopes(&self) -> Vec<String> {
        std::mem::take(&mut *self.scopes.lock().unwrap())
    }
}

/// A one-file image labelled with `revision`, pushed to the real registry as
/// `repository:tag` (the daemon treats loopback registries as insecure); its digest.
fn pushed_image(registry: &Registry, repository: &str, tag: &str, revision: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hello.txt"),
        format!("{repository} {revision}\n"),
    )
    .unwrap();
    let tar = dir.path().join("rootfs.tar");
    crate::support::checked_stdout(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .arg("-cf")
            .arg(&tar)
            .arg("hello.txt"),
    );
    let reference = format!("{}/{repository}:{tag}", registry.addr);
    let label = format!("LABEL org.opencontainers.image.revision={revision}");
    docker_ok(&[
        "import",
        "--change",
        &label,
        tar.to_str().unwrap(),
        &reference,
    ]);
    docker_ok(&["push", &reference]);
    docker_ok(&["rmi", &reference]);
    registry.digest(repository, tag, None).unwrap()
}

const REVISION: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c";
const CONTENT_TAG: &str = "src-0123456789abcdef0123456789abcdef-fedcba9876543210";

/// What `push` does for an image already in the registry, on a `docker.io/acme` target: find
/// the content tag, read its revision label, copy the manifest to the commit tag, list the
/// tags; and the deploy mark of `ship`; every request through Hub's token flow with the account, pull scope for reads and
/// push scope for the copy. Image names are written as Docker writes them.
#[tokio::test]
async fn a_hub_target_reuses_and_retags_through_the_token_service_with_the_credentials() {
    let registry = Registry::start(None);
    // Set up before the fakes start; the blocking calls hold up nothing else.
    let digest = pushed_image(&registry, "acme/cart", CONTENT_TAG, REVISION);
    let hub = FakeHub::start(&registry.addr).await;
    for spelling in [
        "docker.io/acme",
        "index.docker.io/acme",
        "registry-1.docker.io/acme",
    ] {
        let client = hub.client(spelling, PASSWORD);
        assert_eq!(client.target().image("cart"), "docker.io/acme/cart");
        assert_eq!(client.target().host, "docker.io");
    }
    let client = hub.client("docker.io/acme", PASSWORD);
    let repository = client.target().path("cart");
    assert_eq!(repository, "acme/cart");

    let found = client.tag_digest(&repository, CONTENT_TAG).await.unwrap();
    assert_eq!(found.as_deref(), Some(digest.as_str()));
    assert_eq!(
        client
            .tag_digest(&repository, "src-nothing-here")
            .await
            .unwrap(),
        None
    );
    let revision = client.revision_label(&repository, &digest).await.unwrap();
    assert_eq!(revision.as_deref(), Some(REVISION));
    let manifest = client.manifest(&repository, &digest).await.unwrap();
    let copied = client
        .put_manifest(&repository, REVISION, &manifest)
        .await
        .unwrap();
    assert_eq!(copied, digest);
    // Read back from the registry itself, not through monoship's client.
    assert_eq!(
        registry.digest("acme/cart", REVISION, None).as_deref(),
        Some(digest.as_str())
    );
    // A deploy's mark goes the same way.
    let marked = mark_deployed(&client, &repository, &digest).await.unwrap();
    let Marked::Added(mark) = marked else {
        panic!("{marked:?}")
    };
    assert_eq!(
        registry.digest("acme/cart", &mark, None).as_deref(),
        Some(digest.as_str())
    );
    let mut tags = client.tags_after(&repository, "", 100).await.unwrap();
    tags.sort();
    assert_eq!(tags, [REVISION, mark.as_str(), CONTENT_TAG]);

    let scopes = hub.scopes();
    assert!(
        scopes.contains(&"repository:acme/cart:pull".to_string()),
        "{scopes:?}"
    );
    assert!(
        scopes.contains(&"repository:acme/cart:pull,push".to_string()),
        "{scopes:?}"
    );

    // Wrong credentials: the token service refuses them, and the error says what to check
    // without the password.
    let wrong = hub.client("docker.io/acme", "not-the-pat");
    let err = wrong
        .tag_digest(&repository, CONTENT_TAG)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("docker.io") && text.contains("MONOSHIP_REGISTRY_PASSWORD"),
        "{text}"
    );
    assert!(!text.contains("not-the-pat"), "{text}");
}

/// Base images on Hub, when Hub is the push registry, are asked with the push credentials
/// (Hub's private repositories need them): `acme/base:1` and `docker.io/acme/base:1` both go
/// to the target's API host with the account's token.
#[tokio::test]
async fn hub_base_images_are_looked_up_with_the_push_credentials_when_hub_is_the_push_registry() {
    let registry = Registry::start(None);
    let digest = pushed_image(&registry, "acme/base", "1", REVISION);
    let hub = FakeHub::start(&registry.addr).await;
    let client = hub.client("docker.io/acme", PASSWORD);
    let references = [
        "acme/base:1".to_string(),
        "docker.io/acme/base:1".to_string(),
        "index.docker.io/acme/base:1".to_string(),
    ];
    let resolved = resolve_all(&references, &client, &Default::default()).await;
    for reference in &references {
        assert_eq!(
            resolved[reference],
            Resolution::Digest {
                digest: digest.clone(),
                by_tag: true
            },
            "{reference}"
        );
    }
    assert!(
        hub.scopes()
            .iter()
            .all(|s| s == "repository:acme/base:pull"),
        "the lookups went through the token service with the account"
    );
}

/// Hub's 429: retried on the registry client's policy (4 attempts in all), then an error that
/// names the limit and carries Hub's words; a limit that lifts within the retries is no error.
#[tokio::test]
async fn hub_rate_limits_are_retried_then_named_with_hubs_words() {
    let registry = Registry::start(None);
    // Set up before the fakes start; the blocking calls hold up nothing else.
    let digest = pushed_image(&registry, "acme/cart", CONTENT_TAG, REVISION);
    let hub = FakeHub::start(&registry.addr).await;
    let client = hub.client("docker.io/acme", PASSWORD);

    hub.throttled.store(2, Ordering::SeqCst);
    let found = client.tag_digest("acme/cart", CONTENT_TAG).await.unwrap();
    assert_eq!(found.as_deref(), Some(digest.as_str()));

    hub.throttled.store(1000, Ordering::SeqCst);
    let err = client
        .tag_digest("acme/cart", CONTENT_TAG)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::RateLimited { attempts: 4, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("answered HTTP 429 (too many requests) for acme/cart:src-"),
        "{text}"
    );
    assert!(text.contains("Docker Hub's rate limit on pulls"), "{text}");
    // A HEAD's answer has no body: Hub's header says which limit.
    assert!(
        text.ends_with("It said: ratelimit-limit: 100;w=21600"),
        "{text}"
    );
    assert_eq!(hub.throttled.load(Ordering::SeqCst), 1000 - 4);
    // A GET's answer carries Hub's words.
    let err = client
        .manifest("acme/cart", CONTENT_TAG)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("It said: toomanyrequests: You have reached your pull rate limit."),
        "{err}"
    );
}

/// `docker.io` without a namespace, or with folders below it, and a repository Hub cannot
/// take: exit 2 with what to write instead, before any image is built.
#[test]
fn hub_targets_without_a_namespace_or_with_deeper_repositories_are_refused_before_building() {
    let mut repo = three_services(
        "services:\n  api:\n    dockerfile: services/api/Dockerfile\n    context: .\n  web:\n    dockerfile: services/web/Dockerfile\n    repository: team/web\n",
    );
    let base = repo.commit("services");
    repo.write("pb/api.proto", "p2\n")
        .write("services/web/index.html", "hi2\n");
    repo.commit("change both");
    let namespace = "monoshiphubtest";
    let build = |registry: &str| {
        monoship(
            repo.path(),
            &["build", "--registry", registry, "--base", &base],
            &env_map(&[("MONOSHIP_REGISTRY_PASSWORD", PASSWORD)]),
        )
    };
    for registry in [
        "docker.io",
        "index.docker.io",
        "https://registry-1.docker.io/",
    ] {
        let run = build(registry);
        assert_eq!(run.code, 2, "{registry}: {}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("add it, `docker.io/<namespace>`"),
            "{registry}: {}",
            run.stderr
        );
    }
    let deep = format!("docker.io/{namespace}/team");
    let run = build(&deep);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("use `docker.io/{namespace}`")),
        "{}",
        run.stderr
    );
    let run = build(&format!("docker.io/{namespace}"));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("service `web` cannot be pushed")
            && run.stderr.contains(&format!("`{namespace}/team/web`"))
            && run
                .stderr
                .contains("one level below the user or organisation"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(PASSWORD), "{}", run.stderr);
    // The config's `registry.url` is checked the same way, as a config finding.
    repo.write(
        ".github/monoship.yml",
        "registry:\n  url: docker.io\nservices:\n  api:\n    dockerfile: services/api/Dockerfile\n    context: .\n",
    );
    let run = monoship(repo.path(), &["build", "--base", &base], &env_map(&[]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("registry.url") && run.stderr.contains("docker.io/<namespace>"),
        "{}",
        run.stderr
    );
    // Nothing was built: the daemon holds no image of the namespace.
    let images = docker_ok(&["image", "ls", "--format", "{{.Repository}}"]).stdout;
    assert!(!images.lines().any(|l| l.contains(namespace)), "{images}");
}
