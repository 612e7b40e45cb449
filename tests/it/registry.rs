//! The registry client against loopback fakes for what a real local registry cannot do on
//! demand: 5xx answers, a GHCR-style Bearer token service.

use std::time::Duration;

use monoship::image::registry::{OciRegistry, RegistryError, RegistryTarget};
use monoship::secret::Secret;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn client(server: &MockServer, user: Option<(&str, &str)>) -> OciRegistry {
    let host = server.uri().trim_start_matches("http://").to_string();
    let target = RegistryTarget::parse(
        &host,
        user.map(|(u, _)| u.to_string()),
        user.map(|(_, p)| Secret::new(p)),
    )
    .unwrap();
    OciRegistry::new(target)
        .unwrap()
        .with_retry_delay(Duration::from_millis(10))
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/v2/shop/cart/manifests/v1"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/v2/shop/cart/manifests/v1"))
        .respond_with(ResponseTemplate::new(200).insert_header("Docker-Content-Digest", DIGEST))
        .mount(&server)
        .await;
    let digest = client(&server, None)
        .tag_digest("shop/cart", "v1")
        .await
        .unwrap();
    assert_eq!(digest.as_deref(), Some(DIGEST));
}

#[tokio::test]
async fn endless_server_errors_fail_clearly_after_bounded_retries() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(500))
        .expect(4)
        .mount(&server)
        .await;
    let err = client(&server, None)
        .tag_digest("cart", "v1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::ServerError {
                status: 500,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("answered HTTP 500 for cart:v1 4 times"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_tags_are_none_not_errors() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    assert_eq!(
        client(&server, None)
            .tag_digest("cart", "nope")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn bearer_challenges_fetch_a_token_with_the_credentials() {
    let server = MockServer::start().await;
    let realm = format!("{}/token", server.uri());
    Mock::given(method("HEAD"))
        .and(path("/v2/acme/cart/manifests/v1"))
        .and(header("authorization", "Bearer tok-123"))
        .respond_with(ResponseTemplate::new(200).insert_header("Docker-Content-Digest", DIGEST))
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/v2/acme/cart/manifests/v1"))
        .respond_with(ResponseTemplate::new(401).insert_header("WWW-Authenticate", format!(r#"Bearer realm="{realm}",service="registry.test",scope="repository:acme/cart:pull""#)))
        .mount(&server)
        .await;
    // base64("bot:pw")
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("service", "registry.test"))
        .and(query_param("scope", "repository:acme/cart:pull"))
        .and(header("authorization", "Basic Ym90OnB3"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "tok-123"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let digest = client(&server, Some(("bot", "pw")))
        .tag_digest("acme/cart", "v1")
        .await
        .unwrap();
    assert_eq!(digest.as_deref(), Some(DIGEST));
}

#[tokio::test]
async fn refused_credentials_say_what_to_check() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("WWW-Authenticate", r#"Basic realm="x""#),
        )
        .mount(&server)
        .await;
    let err = client(&server, Some(("bot", "wrong")))
        .tag_digest("cart", "v1")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("refused the credentials")
            && err.to_string().contains("MONOSHIP_REGISTRY_PASSWORD"),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("wrong"));
}

#[tokio::test]
async fn retagging_copies_the_manifest_bytes_and_type() {
    let server = MockServer::start().await;
    let manifest =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#.to_vec();
    Mock::given(method("GET"))
        .and(path(format!("/v2/cart/manifests/{DIGEST}")))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Docker-Content-Digest", DIGEST)
                .set_body_raw(
                    manifest.clone(),
                    "application/vnd.oci.image.manifest.v1+json",
                ),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v2/cart/manifests/abc123"))
        .and(header(
            "content-type",
            "application/vnd.oci.image.manifest.v1+json",
        ))
        .respond_with(ResponseTemplate::new(201).insert_header("Docker-Content-Digest", DIGEST))
        .expect(1)
        .mount(&server)
        .await;
    let registry = client(&server, None);
    let m = registry.manifest("cart", DIGEST).await.unwrap();
    assert_eq!(m.bytes, manifest);
    assert_eq!(
        registry.put_manifest("cart", "abc123", &m).await.unwrap(),
        DIGEST
    );
    let puts = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT")
        .collect::<Vec<_>>();
    assert_eq!(puts[0].body, manifest, "the copy is byte-identical");
}

/// Base images: one on another registry, asked anonymously through its Bearer token service
/// (a `HEAD` without a digest, then a `GET`); one on the push registry, asked with its
/// credentials; one pinned by digest, not asked at all.
#[tokio::test]
async fn base_images_resolve_anonymously_elsewhere_with_credentials_at_home_and_pinned_not_at_all()
{
    use monoship::image::base::{resolve_all, Resolution};
    use wiremock::matchers::header_exists;
    let other = MockServer::start().await;
    let home = MockServer::start().await;
    let host = |s: &MockServer| s.uri().trim_start_matches("http://").to_string();
    let challenge = format!(r#"Bearer realm="{}/token",service="other""#, other.uri());
    Mock::given(path("/v2/acme/base/manifests/1"))
        .and(header("authorization", "Bearer anon-token"))
        .and(method("HEAD"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&other)
        .await;
    Mock::given(path("/v2/acme/base/manifests/1"))
        .and(header("authorization", "Bearer anon-token"))
        .and(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Docker-Content-Digest", DIGEST)
                .insert_header("Content-Type", "application/vnd.oci.image.index.v1+json")
                .set_body_string(r#"{"schemaVersion":2,"manifests":[]}"#),
        )
        .mount(&other)
        .await;
    Mock::given(path("/v2/acme/base/manifests/1"))
        .respond_with(ResponseTemplate::new(401).insert_header("WWW-Authenticate", challenge))
        .mount(&other)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("scope", "repository:acme/base:pull"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"anon-token"}"#))
        .mount(&other)
        .await;
    let home_digest = DIGEST.replace("0123", "4567");
    Mock::given(method("HEAD"))
        .and(path("/v2/team/base/manifests/2"))
        .and(header("authorization", "Basic Y2k6cHc=")) // ci:pw
        .respond_with(
            ResponseTemplate::new(200).insert_header("Docker-Content-Digest", home_digest.as_str()),
        )
        .mount(&home)
        .await;
    Mock::given(header_exists("host"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("WWW-Authenticate", "Basic realm=\"home\""),
        )
        .mount(&home)
        .await;
    let references = [
        format!("{}/acme/base:1", host(&other)),
        format!("{}/team/base:2", host(&home)),
        format!("{}/pinned@{DIGEST}", host(&other)),
    ];
    let resolved = resolve_all(
        &references,
        &client(&home, Some(("ci", "pw"))),
        &Default::default(),
    )
    .await;
    let digest = |d: &str, by_tag| Resolution::Digest {
        digest: d.to_string(),
        by_tag,
    };
    assert_eq!(resolved[&references[0]], digest(DIGEST, true));
    assert_eq!(resolved[&references[1]], digest(&home_digest, true));
    assert_eq!(resolved[&references[2]], digest(DIGEST, false));
    let asked = other.received_requests().await.unwrap();
    assert!(
        asked.iter().all(|r| !r.url.path().contains("pinned")),
        "{asked:?}"
    );
    let token_requests: Vec<_> = asked.iter().filter(|r| r.url.path() == "/token").collect();
    assert!(!token_requests.is_empty());
    assert!(
        token_requests
            .iter()
            .all(|r| !r.headers.contains_key("authorization")),
        "the push registry's credentials never go to another registry"
    );
}
