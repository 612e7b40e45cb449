//! Secrets: a whole `ship` in action mode, with every kind of credential the tool handles
//! (static AWS keys and session token, the Actions OIDC request token and ID token, the
//! assumed role's session, the ECR password, EKS tokens, the GitHub token, a login in the
//! runner's Docker config), trace logging on,
//! and every byte it writes scanned, including the argv of each docker and git it starts
//! (builds without buildx start no docker at all).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kube_sim::{Sim, SimOptions};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::aws::Moto;
use crate::support::{example_shop, monoship, Registry};

/// moto's fixed ECR token, which the local registry (standing in for the ECR host) accepts.
const ECR_PASSWORD: &str = "123456789012-auth-token";
const STATIC_SECRET: &str = "planted-static-secret-4d1f0c";
const STATIC_SESSION: &str = "planted-static-session-9b27e5";
const REQUEST_TOKEN: &str = "planted-id-token-request-61ac";
const GITHUB_TOKEN: &str = "ghs_plantedGitHubToken00000000000000";
const TOKEN_PATH: &str = "/id-token";
/// A docker/login-action login in the runner's Docker config, for a registry of base images.
const RUNNER_PASSWORD: &str = "planted-runner-login-5c0e72";

fn id_token() -> String {
    let claims = json!({"sub": "repo:octo/shop:ref:refs/heads/main", "aud": "sts.amazonaws.com",
        "iss": "https://token.actions.githubusercontent.com", "repository": "octo/shop",
        "planted": "id-token-body-3e8a"});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([0x42u8; 64])
    )
}

/// A `docker` and a `git` that record their arguments, then run the real ones.
fn recording_shims(dir: &Path, log: &Path) {
    for tool in ["docker", "git"] {
        let real = which(tool);
        let shim = dir.join(tool);
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"{tool} $*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn which(tool: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not on PATH"))
}

#[test]
fn no_credential_reaches_argv_logs_outputs_or_the_summary() {
    let moto = Moto::start();
    let registry = Registry::start(Some(("AWS", ECR_PASSWORD)));
    // The token service runs on its own thread for as long as the test does.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .and(path(TOKEN_PATH))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(json!({"count": 1, "value": id_token()})),
                )
                .mount(&server)
                .await;
            tx.send(server.uri()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let github_uri = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(crate::ship::eks::create_cluster(&moto, "prod"));
    let sim = Sim::start_blocking(SimOptions {
        namespaces: vec!["shop".into()],
        tick: Duration::from_millis(50),
        eks_cluster: Some("prod".into()),
        ..SimOptions::default()
    })
    .unwrap();
    crate::ship::seed(&sim, &registry);

    let (mut repo, base) = example_shop();
    let config = std::fs::read_to_string(repo.path().join(".github/monoship.yml")).unwrap();
    let role = "arn:aws:iam::123456789012:role/monoship-deploy";
    repo.write(
        ".github/monoship.yml",
        &format!(
            "{config}registry:\n  ecr:\n    region: us-east-1\n    create_repositories: true\n    role_to_assume: {role}\n    endpoint: {}\ncluster:\n  eks:\n    name: prod\n    region: us-east-1\n    role_to_assume: {role}\n    endpoint: {}\n",
            registry.addr,
            sim.url()
        ),
    );
    repo.write("pb/demo.proto", "secrets\n");
    repo.commit("ship with every credential");
    // The seeded workloads run the registry's images; ECR names them without a prefix.
    for name in ["cart", "frontend"] {
        let d = sim.get("deployments", "shop", name).unwrap().unwrap();
        let mut d = d.clone();
        d["spec"]["template"]["spec"]["containers"][0]["image"] =
            json!(format!("{}/{name}:old", registry.addr));
        sim.apply_yaml(&serde_json::to_string(&d).unwrap()).unwrap();
    }

    let files = tempfile::tempdir().unwrap();
    let (output, summary, argv) = (
        files.path().join("output"),
        files.path().join("summary"),
        files.path().join("argv"),
    );
    let shims = files.path().join("bin");
    std::fs::create_dir(&shims).unwrap();
    let runner_docker = files.path().join("docker");
    std::fs::create_dir(&runner_docker).unwrap();
    let login = base64::engine::general_purpose::STANDARD.encode(format!("bot:{RUNNER_PASSWORD}"));
    std::fs::write(
        runner_docker.join("config.json"),
        json!({"auths": {"bases.example:5000": {"auth": login}}}).to_string(),
    )
    .unwrap();
    recording_shims(&shims, &argv);
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let token_url = format!("{github_uri}{TOKEN_PATH}?api-version=2.0");
    let workspace = repo.path().display().to_string();
    let vars: BTreeMap<String, String> = [
        ("PATH", path.as_str()),
        ("MONOSHIP_LOG", "trace"),
        ("GITHUB_ACTIONS", "true"),
        ("INPUT_COMMAND", "ship"),
        ("INPUT_BASE", base.as_str()),
        ("INPUT_HEAD", "HEAD"),
        ("INPUT_TIMEOUT", "60"),
        ("INPUT_TOKEN", GITHUB_TOKEN),
        // The commit statuses go to the loopback fake, never to api.github.com.
        ("GITHUB_API_URL", github_uri.as_str()),
        ("GITHUB_REPOSITORY", "octo/shop"),
        ("GITHUB_RUN_ID", "77"),
        ("GITHUB_WORKSPACE", workspace.as_str()),
        ("GITHUB_OUTPUT", output.to_str().unwrap()),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", token_url.as_str()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN),
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "plantedstatickeyid"),
        ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET),
        ("AWS_SESSION_TOKEN", STATIC_SESSION),
        ("AWS_REGION", "us-east-1"),
        ("DOCKER_CONFIG", runner_docker.to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let run = monoship(Path::new("/"), &[], &vars);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    // What the tool handled: the planted values, the ECR password, and what only the servers
    // saw: the EKS tokens the simulator was sent.
    let eks_tokens: Vec<String> = sim
        .requests()
        .iter()
        .filter_map(|r| r.authorization.as_deref())
        .filter_map(|a| a.strip_prefix("Bearer "))
        .map(str::to_string)
        .collect();
    assert!(!eks_tokens.is_empty(), "the deploy used EKS tokens");
    let mut secrets: Vec<String> = [
        STATIC_SECRET,
        STATIC_SESSION,
        REQUEST_TOKEN,
        GITHUB_TOKEN,
        ECR_PASSWORD,
        RUNNER_PASSWORD,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    secrets.push(id_token());
    secrets.extend(eks_tokens.iter().cloned());
    secrets.sort();
    secrets.dedup();

    // Everything masked must be one of those or the assumed role's session: collect the masks.
    let masks: Vec<String> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("::add-mask::"))
        .map(str::to_string)
        .collect();
    for secret in &secrets {
        assert!(
            masks.contains(secret),
            "{} was used without being masked first",
            &secret[..secret.len().min(24)]
        );
    }
    let session: Vec<&String> = masks.iter().filter(|m| !secrets.contains(m)).collect();
    // Access key ids are masked too, as configure-aws-credentials does, but they are
    // identifiers (AWS prints them in CloudTrail, the SDK in its debug logs): only the secret
    // key and the session token must stay unseen.
    let (key_ids, session_secrets): (Vec<&String>, Vec<&String>) =
        session.into_iter().partition(|m| m.starts_with("ASIA"));
    assert!(
        !key_ids.is_empty() && session_secrets.len() >= 2,
        "the assumed role's key id, secret and session token are masked: {} {}",
        key_ids.len(),
        session_secrets.len()
    );

    let argv = std::fs::read_to_string(&argv).unwrap();
    assert!(
        argv.lines().any(|l| l.starts_with("git ")),
        "the shims record: {argv}"
    );
    // The password goes to the daemon in Engine API headers; no docker CLI runs at all.
    assert!(
        !argv.lines().any(|l| l.starts_with("docker")),
        "builds and pushes go through the Engine API: {argv}"
    );
    let stderr_without_masks: String = run
        .stderr
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect::<Vec<_>>()
        .join("\n");
    let written = [
        ("stdout", run.stdout.clone()),
        ("stderr (trace logging)", stderr_without_masks),
        ("$GITHUB_OUTPUT", std::fs::read_to_string(&output).unwrap()),
        (
            "$GITHUB_STEP_SUMMARY",
            std::fs::read_to_string(&summary).unwrap(),
        ),
        ("argv of docker and git", argv),
    ];
    let mut planted = 0;
    for secret in secrets.iter().chain(session_secrets.iter().copied()) {
        planted += 1;
        for (place, text) in &written {
            assert!(
                !text.contains(secret.as_str()),
                "a credential ({}...) reached {place}",
                &secret[..secret.len().min(12)]
            );
        }
    }
    assert!(planted >= 10, "{planted} credentials checked");
    assert!(
        run.stderr.lines().count() > 50,
        "trace logging was on: {} lines",
        run.stderr.lines().count()
    );
}
