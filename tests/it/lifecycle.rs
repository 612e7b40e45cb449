//! Deploy marks for registry lifecycle policies: every digest `ship` deploys is tagged
//! `deployed-<digest>` in the real registry, a redeploy of it writes nothing, an immutable
//! registry is never asked to move a tag, and the policy of docs/ecr-lifecycle.md keeps those
//! tags (checked against moto's ECR, which validates the policy's schema).

use std::time::Duration;

use monoship::image::lifecycle::{deployed_tag, mark_deployed, MarkError, Marked};
use monoship::image::registry::{OciRegistry, RegistryTarget};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::aws::Moto;
use crate::ship::{rollout, setup, ship, Env};

/// The image entry of `service` in a JSON report.
fn image<'a>(report: &'a Value, service: &str) -> &'a Value {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["service"] == service)
        .unwrap_or_else(|| panic!("no image for {service}: {report}"))
}

/// The registry's tags of `repository`, asked with curl.
fn registry_tags(env: &Env, repository: &str) -> Vec<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(format!(
            "http://{}/v2/{repository}/tags/list",
            env.registry.addr
        ))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags
}

fn marks(tags: &[String]) -> Vec<&String> {
    tags.iter().filter(|t| t.starts_with("deployed-")).collect()
}

#[test]
fn every_deployed_digest_is_tagged_once_however_often_it_is_deployed() {
    let env = setup(None);
    let run = ship(&env, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    for service in ["cart", "frontend"] {
        assert_eq!(rollout(&report, service)["status"], "succeeded");
        let entry = image(&report, service);
        let digest = entry["digest"].as_str().unwrap();
        let mark = deployed_tag(digest).unwrap();
        assert_eq!(
            env.registry.digest(service, &mark, None).as_deref(),
            Some(digest),
            "{service}: the mark names the deployed digest"
        );
        let tags: Vec<&str> = entry["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(tags.contains(&mark.as_str()), "{service}: {tags:?}");
    }
    assert_eq!(marks(&registry_tags(&env, "cart")).len(), 1);

    // The same digest deployed again (the image is reused): the mark is there, unchanged.
    let again = ship(&env, &["--services", "cart"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let report2 = again.json();
    let first = image(&report, "cart")["digest"].clone();
    assert_eq!(image(&report2, "cart")["digest"], first, "reused");
    assert_eq!(image(&report2, "cart")["status"], "reused");
    let mark = deployed_tag(first.as_str().unwrap()).unwrap();
    assert!(
        image(&report2, "cart")["tags"]
            .as_array()
            .unwrap()
            .contains(&Value::from(mark.as_str())),
        "{report2}"
    );
    assert_eq!(
        marks(&registry_tags(&env, "cart")),
        [&mark],
        "one mark per digest"
    );
    assert!(
        report2["warnings"]
            .as_array()
            .is_none_or(|w| w.iter().all(|w| !w.to_string().contains("deployed"))),
        "{report2}"
    );
}

#[test]
fn a_rolled_back_image_gets_no_mark() {
    let env = setup(Some("CrashLoopBackOff"));
    let run = ship(&env, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(rollout(&report, "cart")["status"], "rolled-back");
    assert!(image(&report, "cart")["digest"].is_string(), "{report}");
    assert_eq!(marks(&registry_tags(&env, "cart")), Vec::<&String>::new());
    let tags = image(&report, "cart")["tags"].to_string();
    assert!(!tags.contains("deployed-"), "{tags}");
}

const DIGEST: &str = "sha256:4b1d3c0ffee0000000000000000000000000000000000000000000000000000a";

/// A registry whose `shop/cart` answers HEAD of the mark with `digest`, and refuses every
/// manifest PUT as an immutable ECR repository refuses an existing tag.
async fn immutable_registry(digest: &str) -> (MockServer, OciRegistry) {
    let server = MockServer::start().await;
    let mark = deployed_tag(DIGEST).unwrap();
    Mock::given(method("HEAD"))
        .and(path(format!("/v2/shop/cart/manifests/{mark}")))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Docker-Content-Digest", digest)
                .insert_header("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(
            ResponseTemplate::new(400).set_body_string(
                r#"{"errors":[{"code":"TAG_INVALID","message":"tag is immutable"}]}"#,
            ),
        )
        .expect(0)
        .mount(&server)
        .await;
    let host = server.uri().trim_start_matches("http://").to_string();
    let registry = OciRegistry::new(RegistryTarget::parse(&host, None, None).unwrap())
        .unwrap()
        .with_retry_delay(Duration::from_millis(10));
    (server, registry)
}

#[tokio::test]
async fn an_immutable_registry_is_never_asked_to_write_a_mark_twice() {
    let (server, registry) = immutable_registry(DIGEST).await;
    let marked = tokio::time::timeout(
        Duration::from_secs(20),
        mark_deployed(&registry, "shop/cart", DIGEST),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(marked, Marked::Present(deployed_tag(DIGEST).unwrap()));
    server.verify().await;

    // The mark naming another digest is reported, never overwritten.
    let other = "sha256:4b1d3c0ffee00000ffffffffffffffffffffffffffffffffffffffffffffffff";
    let (server, registry) = immutable_registry(other).await;
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        mark_deployed(&registry, "shop/cart", DIGEST),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(err, MarkError::Taken { .. }), "{err:?}");
    assert!(err.to_string().contains(other), "{err}");
    server.verify().await;
}

/// The JSON blocks of docs/ecr-lifecycle.md that are lifecycle policies.
fn documented_policies() -> Vec<Value> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ecr-lifecycle.md"),
    )
    .unwrap();
    doc.split("```json")
        .skip(1)
        .map(|block| serde_json::from_str(block.split("```").next().unwrap()).unwrap())
        .filter(|v: &Value| v.get("rules").is_some())
        .collect()
}

/// Whether an ECR `tagPatternList` pattern (`*` any run of characters) matches `tag`.
fn pattern_matches(pattern: &str, tag: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == tag;
    }
    let Some(mut rest) = tag.strip_prefix(first) else {
        return false;
    };
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether a rule's selection takes an image tagged `tags`, as ECR documents it: `any`
/// takes every image; `tagged` with a prefix or pattern list takes an image when each entry
/// of the list matches one of its tags.
fn selects(selection: &Value, tags: &[&str]) -> bool {
    match selection["tagStatus"].as_str().unwrap() {
        "any" => true,
        "untagged" => tags.is_empty(),
        _ => {
            let each = |key: &str, hit: &dyn Fn(&str, &str) -> bool| {
                selection[key].as_array().map(|list| {
                    list.iter()
                        .all(|p| tags.iter().any(|t| hit(p.as_str().unwrap(), t)))
                })
            };
            each("tagPrefixList", &|p, t| t.starts_with(p))
                .or_else(|| each("tagPatternList", &pattern_matches))
                .unwrap()
        }
    }
}

#[tokio::test]
async fn the_documented_policy_keeps_marked_images_first_and_ecr_accepts_it() {
    let policies = documented_policies();
    assert!(!policies.is_empty(), "docs/ecr-lifecycle.md has a policy");
    let mark = deployed_tag(DIGEST).unwrap();
    // A reused image: content tag, commit tag and its mark, pushed long ago.
    let running = [
        "src-0123456789abcdef0123456789abcdef01234567",
        "0f1e2d3c",
        &mark,
    ];
    let moto = Moto::start();
    let vars = moto.run_env();
    let env = |k: &str| vars.get(k).cloned();
    let config = monoship::aws::load(&Default::default(), &env, |_| {})
        .await
        .unwrap();
    let client = aws_sdk_ecr::Client::new(&config);
    for (n, policy) in policies.iter().enumerate() {
        let mut rules: Vec<&Value> = policy["rules"].as_array().unwrap().iter().collect();
        rules.sort_by_key(|r| r["rulePriority"].as_u64().unwrap());
        // The first rule to take the running image decides its fate: the mark's rule, which
        // expires nothing under its count.
        let first = rules
            .iter()
            .find(|r| selects(&r["selection"], &running))
            .unwrap_or_else(|| panic!("policy {n}: no rule takes a marked image"));
        let selection = &first["selection"];
        assert!(
            selects(selection, &[&mark]),
            "policy {n}: the first rule to take a marked image is the mark's: {first}"
        );
        assert_eq!(selection["countType"], "imageCountMoreThan", "{first}");
        assert!(
            selection["countNumber"].as_u64().unwrap() >= 1000,
            "{first}"
        );
        assert!(
            !selects(selection, &["src-0123456789abcdef0123456789abcdef01234567"]),
            "policy {n}: an image never deployed is left to the other rules"
        );
        let repository = format!("shop-{n}");
        let text = policy.to_string();
        tokio::time::timeout(Duration::from_secs(30), async {
            client
                .create_repository()
                .repository_name(&repository)
                .send()
                .await
                .unwrap();
            client
                .put_lifecycle_policy()
                .repository_name(&repository)
                .lifecycle_policy_text(&text)
                .send()
                .await
                .unwrap_or_else(|e| panic!("policy {n}: {e:?}"));
        })
        .await
        .unwrap();
    }
}
