//! AWS credentials and ECR against moto (`moto_server` on loopback, one per test), the
//! Actions OIDC token service and ECR error answers faked with wiremock. The environment
//! reaches the code only through the `env` closure, so tests running in parallel never
//! share one.

use std::collections::HashMap;
use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ecr::types::ImageTagMutability;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use monoship::aws::{self, AwsError, AwsSettings, OidcClaims};
use monoship::image::ecr::{Ecr, EcrError, EcrSettings, RepositoryState};
use serde_json::json;
use wiremock::matchers::{bearer_token, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ROLE: &str = "arn:aws:iam::123456789012:role/monoship-deploy";
const REQUEST_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.runner-request-token.sig";
const TOKEN_PATH: &str = "/_apis/distributedtask/hubs/Actions/plans/5a1e/jobs/9c0d/idtoken";

/// Every test finishes well within this, or fails.
async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(40), test)
        .await
        .expect("the test took too long")
}

/// `moto_server` on a free loopback port, stopped on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// moto's output, shown when it does not start.
    log: tempfile::NamedTempFile,
}

impl Moto {
    pub fn start() -> Moto {
        let mut last_log = String::new();
        // A port found free can be taken before moto binds it; then try another.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let log = tempfile::NamedTempFile::new().expect("log file");
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("log file"))
                .stderr(log.reopen().expect("log file"))
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "`moto_server` is not on PATH; `.ci/run` installs it \
                     (pip install 'moto[server]==5.2.1')"
                ),
                Err(e) => panic!("cannot start moto_server: {e}"),
            };
            let mut moto = Moto {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
                log,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = moto.child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return moto;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = std::fs::read_to_string(moto.log.path()).unwrap_or_default();
        }
        panic!("moto_server did not start:\n{last_log}");
    }

    /// The environment of a `monoship` run against this moto, with moto's test keys.
    pub fn run_env(&self) -> std::collections::BTreeMap<String, String> {
        crate::support::env_map(&[
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ])
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An environment pointing the SDK at `endpoint` with static test keys.
fn aws_env(endpoint: &str) -> HashMap<String, String> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "MONOSHIPTESTKEY00001"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn reader(vars: HashMap<String, String>) -> impl Fn(&str) -> Option<String> {
    move |name| vars.get(name).cloned()
}

/// A mask callback that remembers what it was given.
fn recording_mask() -> (
    Arc<Mutex<Vec<String>>>,
    impl Fn(&str) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    (seen, move |secret: &str| {
        record.lock().unwrap().push(secret.to_string())
    })
}

async fn config_for(endpoint: &str) -> aws_config::SdkConfig {
    let env = reader(aws_env(endpoint));
    aws::load(&AwsSettings::default(), &env, |_| {})
        .await
        .expect("config")
}

/// A GitHub Actions OIDC token as the runner hands it out: RS256 header, GitHub's claims,
/// and a signature nobody here checks.
fn github_jwt(claims: serde_json::Value) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "x5t": "ykNaY4qM_ta4k2TgZOCEYLkcYlA", "kid": "1F2AB83404C08EC9EA0BB99DAED02186B091DBF4"});
    let signature = [0x5au8; 256];
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn push_claims() -> serde_json::Value {
    json!({
        "jti": "e7c3ae36-0b0b-4a35-9b1e-2f0b1f0d9a11",
        "sub": "repo:octo-org/shop:ref:refs/heads/main",
        "aud": "sts.amazonaws.com",
        "ref": "refs/heads/main",
        "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        "repository": "octo-org/shop",
        "repository_owner": "octo-org",
        "repository_owner_id": "9919",
        "repository_id": "4242",
        "repository_visibility": "private",
        "run_id": "7702914411",
        "run_number": "42",
        "run_attempt": "1",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "ship",
        "event_name": "push",
        "ref_type": "branch",
        "ref_protected": "true",
        "head_ref": "",
        "base_ref": "",
        "workflow_ref": "octo-org/shop/.github/workflows/ship.yml@refs/heads/main",
        "job_workflow_ref": "octo-org/shop/.github/workflows/ship.yml@refs/heads/main",
        "runner_environment": "github-hosted",
        "iss": "https://token.actions.githubusercontent.com",
        "nbf": 1764130000,
        "exp": 1764130900,
        "iat": 1764130300
    })
}

fn oidc_settings() -> AwsSettings {
    AwsSettings {
        role_to_assume: Some(ROLE.to_string()),
        ..AwsSettings::default()
    }
}

/// The environment of an Actions job with `id-token: write`, its token service at `server`.
fn oidc_env(aws_endpoint: &str, server: &MockServer) -> HashMap<String, String> {
    // The static keys stay: the role's session must win over them.
    let mut vars = aws_env(aws_endpoint);
    vars.insert("GITHUB_ACTIONS".into(), "true".into());
    vars.insert(
        "ACTIONS_ID_TOKEN_REQUEST_URL".into(),
        format!("{}{TOKEN_PATH}?api-version=2.0", server.uri()),
    );
    vars.insert(
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
        REQUEST_TOKEN.into(),
    );
    vars
}

#[tokio::test]
async fn ecr_login_returns_the_registry_token_as_user_and_password() {
    let moto = Moto::start();
    bounded(async {
        let config = config_for(&moto.endpoint).await;

        let login = Ecr::new(&config, EcrSettings::default())
            .login()
            .await
            .expect("login");
        assert_eq!(login.host, "123456789012.dkr.ecr.us-east-1.amazonaws.com");
        assert_eq!(login.username, "AWS");
        assert_eq!(login.password.expose(), "123456789012-auth-token");
        assert!(login.expires_at.is_some());
        assert!(
            !format!("{login:?}").contains("auth-token"),
            "Debug shows the password"
        );

        let local = EcrSettings {
            endpoint: Some("127.0.0.1:5002".into()),
            ..EcrSettings::default()
        };
        let login = Ecr::new(&config, local).login().await.expect("login");
        assert_eq!(login.host, "127.0.0.1:5002");

        let other_account = EcrSettings {
            registry_id: Some("210987654321".into()),
            ..EcrSettings::default()
        };
        let login = Ecr::new(&config, other_account)
            .login()
            .await
            .expect("login");
        assert_eq!(login.host, "210987654321.dkr.ecr.us-east-1.amazonaws.com");
    })
    .await;
}

#[tokio::test]
async fn ensure_repository_creates_with_scan_on_push_and_immutable_tags_once() {
    let moto = Moto::start();
    bounded(async {
        let config = config_for(&moto.endpoint).await;
        let settings = EcrSettings {
            create_repositories: true,
            scan_on_push: true,
            immutable_tags: true,
            ..EcrSettings::default()
        };
        let ecr = Ecr::new(&config, settings);

        assert_eq!(
            ecr.ensure_repository("shop/cart").await.unwrap(),
            RepositoryState::Created
        );
        assert_eq!(
            ecr.ensure_repository("shop/cart").await.unwrap(),
            RepositoryState::Existed
        );

        let plain = Ecr::new(
            &config,
            EcrSettings {
                create_repositories: true,
                ..EcrSettings::default()
            },
        );
        assert_eq!(
            plain.ensure_repository("shop/web").await.unwrap(),
            RepositoryState::Created
        );

        let described = aws_sdk_ecr::Client::new(&config)
            .describe_repositories()
            .repository_names("shop/cart")
            .repository_names("shop/web")
            .send()
            .await
            .expect("DescribeRepositories");
        let settings_of = |name: &str| {
            let repo = described
                .repositories()
                .iter()
                .find(|r| r.repository_name() == Some(name))
                .unwrap_or_else(|| panic!("{name} exists"));
            let scan = repo
                .image_scanning_configuration()
                .map(|c| c.scan_on_push());
            let excluded: Vec<String> = repo
                .image_tag_mutability_exclusion_filters()
                .iter()
                .map(|f| format!("{}:{}", f.filter_type().as_str(), f.filter()))
                .collect();
            (repo.image_tag_mutability().cloned(), scan, excluded)
        };
        // Immutable, but a pull request's moving `pr-<n>` tag stays writable.
        assert_eq!(
            settings_of("shop/cart"),
            (
                Some(ImageTagMutability::ImmutableWithExclusion),
                Some(true),
                vec![
                    "WILDCARD:pr-*".to_string(),
                    "WILDCARD:buildcache".to_string()
                ]
            )
        );
        assert_eq!(
            settings_of("shop/web"),
            (Some(ImageTagMutability::Mutable), Some(false), vec![])
        );

        // As ECR applies it (moto models the rule): `pr-7` moves, a commit tag does not.
        let client = aws_sdk_ecr::Client::new(&config);
        let put = |tag: &'static str, layer: &'static str| {
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "size": 2, "digest": format!("sha256:{}", "c".repeat(64))},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                            "size": 2, "digest": format!("sha256:{}", layer.repeat(64))}],
            });
            client
                .put_image()
                .repository_name("shop/cart")
                .image_tag(tag)
                .image_manifest(manifest.to_string())
                .send()
        };
        put("pr-7", "a").await.expect("first pr-7");
        put("pr-7", "b").await.expect("pr-7 moves");
        put("0123abc", "d").await.expect("first commit tag");
        let refused = put("0123abc", "e").await.unwrap_err();
        assert!(
            refused
                .as_service_error()
                // ECR says ImageTagAlreadyExists; moto, ImageAlreadyExists.
                .is_some_and(|e| e.is_image_tag_already_exists_exception()
                    || e.is_image_already_exists_exception()),
            "{refused:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn missing_repository_without_create_repositories_names_it_and_the_setting() {
    let moto = Moto::start();
    bounded(async {
        let config = config_for(&moto.endpoint).await;
        let ecr = Ecr::new(&config, EcrSettings::default());

        let error = ecr.ensure_repository("shop/cart").await.unwrap_err();
        assert!(matches!(&error, EcrError::RepositoryMissing { repository, .. } if repository == "shop/cart"));
        assert_eq!(
            error.to_string(),
            "ECR repository `shop/cart` does not exist; create it, or set \
             `create_repositories: true` so monoship creates it"
        );
    })
    .await;
}

#[tokio::test]
async fn oidc_token_is_exchanged_at_sts_and_the_session_logs_in_to_ecr() {
    let moto = Moto::start();
    bounded(async {
        let github = MockServer::start().await;
        let jwt = github_jwt(push_claims());
        // One hiccup first: the token request is retried.
        Mock::given(method("GET"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&github)
            .await;
        Mock::given(method("GET"))
            .and(path(TOKEN_PATH))
            .and(query_param("api-version", "2.0"))
            .and(query_param("audience", "sts.amazonaws.com"))
            .and(bearer_token(REQUEST_TOKEN))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"count": 1, "value": jwt})),
            )
            .mount(&github)
            .await;
        let env = reader(oidc_env(&moto.endpoint, &github));
        let (masked, mask) = recording_mask();

        let config = aws::load(&oidc_settings(), &env, mask)
            .await
            .expect("OIDC config");

        let login = Ecr::new(&config, EcrSettings::default())
            .login()
            .await
            .expect("login");
        assert_eq!(login.password.expose(), "123456789012-auth-token");
        let caller = aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await
            .expect("GetCallerIdentity");
        assert_eq!(
            caller.arn(),
            Some("arn:aws:sts::123456789012:assumed-role/monoship-deploy/monoship")
        );

        let masked_now = masked.lock().unwrap().clone();
        assert_eq!(masked_now[..2], [REQUEST_TOKEN.to_string(), jwt.clone()]);
        assert_eq!(
            masked_now.len(),
            5,
            "the token and the three session secrets: {masked_now:?}"
        );
        assert!(
            masked_now[2].starts_with("ASIA"),
            "access key id of a session: {}",
            masked_now[2]
        );

        // Any session handed out, first or re-minted, was masked before.
        let provider = config
            .credentials_provider()
            .expect("a credentials provider");
        let session = provider.provide_credentials().await.expect("credentials");
        let masked_now = masked.lock().unwrap().clone();
        for secret in [
            session.access_key_id(),
            session.secret_access_key(),
            session.session_token().expect("a session token"),
        ] {
            assert!(
                masked_now.iter().any(|m| m == secret),
                "{secret} was not masked"
            );
        }
        assert!(session.expiry().is_some());
    })
    .await;
}

#[tokio::test]
async fn role_without_id_token_variables_asks_for_id_token_write() {
    bounded(async {
        let mut vars = aws_env("http://127.0.0.1:9");
        vars.insert("GITHUB_ACTIONS".into(), "true".into());
        let error = aws::load(&oidc_settings(), &reader(vars.clone()), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            AwsError::NoIdToken {
                in_actions: true,
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            "role-to-assume `arn:aws:iam::123456789012:role/monoship-deploy` needs the job's \
             GitHub OIDC token, but ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN are not set: add \
             `permissions: id-token: write` to the job (fork pull requests cannot get one)"
        );

        vars.remove("GITHUB_ACTIONS");
        let error = aws::load(&oidc_settings(), &reader(vars), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            AwsError::NoIdToken {
                in_actions: false,
                ..
            }
        ));
        assert!(
            error.to_string().contains("leave role-to-assume unset"),
            "{error}"
        );
    })
    .await;
}

#[tokio::test]
async fn refused_token_request_reports_the_status_without_retrying() {
    bounded(async {
        let github = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(TOKEN_PATH))
            .respond_with(
                ResponseTemplate::new(403).set_body_json(
                    json!({"message": "Unable to get ACTIONS_ID_TOKEN_REQUEST_URL"}),
                ),
            )
            .expect(1)
            .mount(&github)
            .await;
        let env = reader(oidc_env("http://127.0.0.1:9", &github));

        let error = aws::load(&oidc_settings(), &env, |_| {}).await.unwrap_err();
        assert!(
            matches!(
                error,
                AwsError::IdTokenStatus {
                    status: 403,
                    attempts: 1,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(!error.to_string().contains(REQUEST_TOKEN));
    })
    .await;
}

#[test]
fn bad_role_and_session_names_are_refused_before_any_call() {
    let env = reader(aws_env("http://127.0.0.1:9"));
    let load = |settings: AwsSettings| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(aws::load(&settings, &env, |_| {}))
            .unwrap_err()
    };
    let role = |role: &str| AwsSettings {
        role_to_assume: Some(role.into()),
        ..oidc_settings()
    };
    for bad in [
        "monoship-deploy",
        "arn:aws:iam::123456789012:user/ci",
        "arn:aws:iam::123456789012:role/",
    ] {
        assert!(
            matches!(load(role(bad)), AwsError::BadRoleArn { .. }),
            "{bad}"
        );
    }
    for bad in ["x", "has space", &"n".repeat(65)] {
        let settings = AwsSettings {
            role_session_name: Some(bad.to_string()),
            ..oidc_settings()
        };
        assert!(
            matches!(load(settings), AwsError::BadSessionName { .. }),
            "{bad}"
        );
    }
}

#[test]
fn decode_claims_reads_github_tokens_and_rejects_what_is_not_a_jwt() {
    let claims = aws::decode_claims(&github_jwt(push_claims())).expect("claims");
    assert_eq!(
        claims,
        OidcClaims {
            sub: Some("repo:octo-org/shop:ref:refs/heads/main".into()),
            aud: vec!["sts.amazonaws.com".into()],
            git_ref: Some("refs/heads/main".into()),
            environment: None,
            repository: Some("octo-org/shop".into()),
            job_workflow_ref: Some(
                "octo-org/shop/.github/workflows/ship.yml@refs/heads/main".into()
            ),
        }
    );

    let environment = aws::decode_claims(&github_jwt(json!({
        "sub": "repo:octo-org/shop:environment:production",
        "aud": ["sts.amazonaws.com", "https://github.com/octo-org"],
        "environment": "production",
        "ref": "refs/heads/main",
    })))
    .expect("claims");
    assert_eq!(
        environment.sub.as_deref(),
        Some("repo:octo-org/shop:environment:production")
    );
    assert_eq!(
        environment.aud,
        ["sts.amazonaws.com", "https://github.com/octo-org"]
    );
    assert_eq!(environment.environment.as_deref(), Some("production"));
    assert_eq!(environment.repository, None);

    // Padding some encoders add is tolerated.
    let payload =
        base64::engine::general_purpose::URL_SAFE.encode(r#"{"sub":"repo:o/r:pull_request"}"#);
    assert!(payload.ends_with('='));
    let padded = aws::decode_claims(&format!("e30.{payload}.c2ln")).expect("claims");
    assert_eq!(padded.sub.as_deref(), Some("repo:o/r:pull_request"));

    let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"s"}"#);
    for not_a_jwt in [
        "",
        "not a token",
        &format!("e30.{payload}"),
        &format!("e30.{payload}.c2ln.extra"),
        "e30.!!!.c2ln",
        &format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode("not json")),
        &format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode("[1,2]")),
    ] {
        assert_eq!(aws::decode_claims(not_a_jwt), None, "{not_a_jwt:?}");
    }
}

#[test]
fn refused_role_shows_the_claims_and_the_trust_policy_fix_never_the_token() {
    let jwt = github_jwt(push_claims());
    let refused = AwsError::RoleRefused {
        role: ROLE.into(),
        code: "AccessDenied".into(),
        message: "Not authorized to perform sts:AssumeRoleWithWebIdentity".into(),
        claims: aws::decode_claims(&jwt).map(Box::new),
    };
    let text = refused.to_string();
    assert_eq!(
        text,
        "AWS refused to let the job's GitHub OIDC token assume \
         `arn:aws:iam::123456789012:role/monoship-deploy` (AccessDenied: Not authorized to \
         perform sts:AssumeRoleWithWebIdentity); the token has sub \
         `repo:octo-org/shop:ref:refs/heads/main`, aud `sts.amazonaws.com`, ref \
         `refs/heads/main`, environment (none), repository `octo-org/shop`; the role's trust \
         policy must allow this `sub` (condition key `token.actions.githubusercontent.com:sub`, \
         case-sensitive) and this `aud`"
    );
    assert!(!text.contains(&jwt) && !text.contains(jwt.split('.').nth(1).unwrap()));

    let environment = AwsError::RoleRefused {
        role: ROLE.into(),
        code: "InvalidIdentityToken".into(),
        message: "Incorrect token audience".into(),
        claims: Some(Box::new(OidcClaims {
            sub: Some("repo:octo-org/shop:environment:production".into()),
            aud: vec!["sigstore".into()],
            environment: Some("production".into()),
            ..OidcClaims::default()
        })),
    };
    let text = environment.to_string();
    assert!(
        text.contains("sub `repo:octo-org/shop:environment:production`, aud `sigstore`"),
        "{text}"
    );
    assert!(text.contains("environment `production`"), "{text}");
    assert!(
        text.ends_with("gets `repo:OWNER/REPO:environment:NAME` as its `sub`, not the branch"),
        "{text}"
    );

    let undecodable = AwsError::RoleRefused {
        role: ROLE.into(),
        code: "InvalidIdentityToken".into(),
        message: "Couldn't retrieve verification key from your identity provider".into(),
        claims: None,
    };
    assert!(undecodable.to_string().contains("could not be decoded"));
}

/// An ECR error as the service sends it (awsJson 1.1).
fn ecr_error(code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(400)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .insert_header("x-amzn-requestid", "0f4c1d1e-5a7b-4a8e-9d5e-1f6c2b3a4d5e")
        .set_body_json(json!({"__type": code, "message": message}))
}

fn ecr_call(operation: &str) -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(header(
        "x-amz-target",
        format!("AmazonEC2ContainerRegistry_V20150921.{operation}").as_str(),
    ))
}

#[tokio::test]
async fn ecr_refusals_name_the_missing_permission_and_the_repository() {
    bounded(async {
        let fake = MockServer::start().await;
        ecr_call("DescribeRepositories")
            .respond_with(ecr_error(
                "RepositoryNotFoundException",
                "The repository with name 'shop/cart' does not exist in the registry with id '123456789012'",
            ))
            .mount(&fake)
            .await;
        ecr_call("CreateRepository")
            .respond_with(ecr_error(
                "AccessDeniedException",
                "User: arn:aws:sts::123456789012:assumed-role/monoship-deploy/monoship is not \
                 authorized to perform: ecr:CreateRepository on resource: \
                 arn:aws:ecr:us-east-1:123456789012:repository/shop/cart",
            ))
            .mount(&fake)
            .await;
        ecr_call("GetAuthorizationToken")
            .respond_with(ecr_error("ExpiredTokenException", "The security token included in the request is expired"))
            .mount(&fake)
            .await;
        let config = config_for(&fake.uri()).await;
        let ecr = Ecr::new(&config, EcrSettings { create_repositories: true, ..EcrSettings::default() });

        let denied = ecr.ensure_repository("shop/cart").await.unwrap_err();
        assert!(
            matches!(&denied, EcrError::AccessDenied { action: "ecr:CreateRepository", repository: Some(r), .. } if r == "shop/cart"),
            "{denied:?}"
        );
        let text = denied.to_string();
        assert!(text.starts_with("AWS denied `ecr:CreateRepository` on repository `shop/cart`: User: arn:aws:sts::"), "{text}");
        assert!(text.ends_with("grant `ecr:CreateRepository` to the role or user monoship runs as"), "{text}");

        let expired = ecr.login().await.unwrap_err();
        assert!(matches!(&expired, EcrError::BadCredentials { action: "ecr:GetAuthorizationToken", .. }), "{expired:?}");
        assert!(expired.to_string().contains("expired or invalid"), "{expired}");
    })
    .await;
}

#[tokio::test]
async fn ecr_throttling_is_retried_then_reported() {
    bounded(async {
        let fake = MockServer::start().await;
        ecr_call("DescribeRepositories")
            .respond_with(ecr_error("ThrottlingException", "Rate exceeded"))
            .expect(5)
            .mount(&fake)
            .await;
        let config = config_for(&fake.uri()).await;

        let error = Ecr::new(&config, EcrSettings::default())
            .ensure_repository("shop/cart")
            .await
            .unwrap_err();
        assert!(
            matches!(&error, EcrError::Throttled { attempts: 5, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "AWS throttled `ecr:DescribeRepositories` on repository `shop/cart` 5 times in a row; \
             try again later, or run fewer jobs against this account at once"
        );
    })
    .await;
}

#[tokio::test]
async fn ecr_without_credentials_says_where_they_come_from() {
    bounded(async {
        // No credentials provider at all: the call fails before a request is sent.
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let error = Ecr::new(&config, EcrSettings::default())
            .login()
            .await
            .unwrap_err();
        assert!(
            matches!(&error, EcrError::NoCredentials { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("permissions: id-token: write"),
            "{error}"
        );
    })
    .await;
}

/// The action's AWS inputs win over the config: the config names neither a role nor an
/// audience, the inputs do, and the login to ECR goes through that role's OIDC session.
#[tokio::test]
async fn aws_inputs_choose_the_role_and_audience_of_an_action_run() {
    let moto = Moto::start();
    bounded(async {
        let github = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(TOKEN_PATH))
            .and(query_param("audience", "sts.example.internal"))
            .and(bearer_token(REQUEST_TOKEN))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"count": 1, "value": github_jwt(push_claims())}),
            ))
            .expect(1)
            .mount(&github)
            .await;
        let config = "services:\n  api:\n    paths: [\"services/api/**\"]\nregistry:\n  ecr: {region: eu-west-1}\n";
        let mut repo = crate::support::Repo::new();
        repo.write(".github/monoship.yml", config);
        let sha = repo.commit("base");
        let vars: Vec<(String, String)> = oidc_env(&moto.endpoint, &github)
            .into_iter()
            .chain(
                [
                    ("INPUT_COMMAND", "build"),
                    ("INPUT_ROLE-TO-ASSUME", ROLE),
                    ("INPUT_AUDIENCE", "sts.example.internal"),
                    ("INPUT_ROLE-SESSION-NAME", "monoship-run-7"),
                    ("INPUT_AWS-REGION", "us-east-1"),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string())),
            )
            .collect();
        let run = tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let payload = crate::support::fixture("push.json");
            crate::support::run_action(repo.path(), "push", &payload, &sha, &env)
        })
        .await
        .unwrap();
        assert_eq!(run.run.code, 0, "{}", run.run.stderr);
        assert_eq!(run.output("images"), "{}");
        let masked = run.run.stderr.lines().filter(|l| l.starts_with("::add-mask::ASIA"));
        assert_eq!(masked.count(), 1, "the role's session was used: {}", run.run.stderr);
    })
    .await;
}

/// The ECR repositories moto holds.
fn ecr_repositories(endpoint: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bounded(async {
        let config = config_for(endpoint).await;
        let listed = aws_sdk_ecr::Client::new(&config)
            .describe_repositories()
            .send()
            .await
            .expect("DescribeRepositories");
        listed
            .repositories()
            .iter()
            .filter_map(|r| r.repository_name().map(str::to_string))
            .collect()
    }))
}

/// A run that stops with exit 2 before building leaves no ECR repository behind, even with
/// `create_repositories`: repositories are made only once the builders are ready (here
/// buildx, which this machine lacks, for two platforms). The same run for one platform
/// creates the repository and pushes to it.
#[test]
fn a_run_refused_before_building_creates_no_ecr_repository() {
    use crate::support::{env_map, monoship, Registry, Repo};
    let moto = Moto::start();
    // The ECR host: moto's fixed token is the password of user AWS.
    let registry = Registry::start(Some(("AWS", "123456789012-auth-token")));
    let mut repo = Repo::new();
    let config = |platforms: &str| {
        format!(
            "services:\n  app:\n    dockerfile: app/Dockerfile\n    platforms: [{platforms}]\nregistry:\n  ecr:\n    region: us-east-1\n    create_repositories: true\n    endpoint: {}\n",
            registry.addr
        )
    };
    repo.write("app/Dockerfile", "FROM scratch\nCOPY data.txt /\n")
        .write("app/data.txt", "1\n")
        .write(".github/monoship.yml", &config("linux/amd64, linux/arm64"));
    repo.commit("two platforms");
    let vars: Vec<(String, String)> = aws_env(&moto.endpoint).into_iter().collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args = ["build", "--format", "json", "--services", "app"];
    let run = monoship(repo.path(), &args, &env_map(&vars));
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("need the buildx plugin"),
        "{}",
        run.stderr
    );
    assert_eq!(ecr_repositories(&moto.endpoint), Vec::<String>::new());
    assert!(registry.catalog().is_empty());

    repo.write(".github/monoship.yml", &config("linux/amd64"));
    repo.commit("one platform");
    let run = monoship(repo.path(), &args, &env_map(&vars));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(ecr_repositories(&moto.endpoint), ["app"]);
    assert_eq!(registry.catalog(), ["app"]);
}
