//! Failures told precisely and within bounds: files that fail to parse are named by line and
//! column without their text, slow servers fail within a documented deadline, and each
//! message says what to do.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use monoship::image::registry::{OciRegistry, RegistryError, RegistryTarget};
use monoship::secret::Secret;

use kube_sim::{Fault, Sim, SimOptions};
use monoship::deploy::{usual_kubeconfigs, Cluster};

use crate::ship::{image_of, rollout, setup, ship, ship_args, ship_with};
use crate::support::{monoship, plan_json, three_services, ShopConfig};

const CART: &str = "/apis/apps/v1/namespaces/shop/deployments/cart";

#[test]
fn a_kubeconfig_that_is_not_yaml_is_told_by_line_and_column_without_the_token() {
    let env = setup(None);
    let broken = "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    \
                  server: http://127.0.0.1:1\nusers:\n- name: sim\n  user:\n    \
                  token: planted-secret-token: oops\n";
    std::fs::write(env.kubeconfig.path(), broken).unwrap();
    let run = ship_with(&env, &[], &BTreeMap::new());
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let path = env.kubeconfig.path().display().to_string();
    assert!(
        run.stderr.contains(&format!("{path}:10:"))
            && run.stderr.contains("the kubeconfig is not valid YAML"),
        "{}",
        run.stderr
    );
    for output in [&run.stderr, &run.stdout] {
        assert!(!output.contains("planted-secret-token"), "{output}");
    }
    assert!(env.registry.catalog().is_empty(), "nothing was pushed");
}

/// A kubeconfig that is not YAML, with a planted token on its tenth line.
const BROKEN_KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  \
    cluster:\n    server: http://127.0.0.1:1\nusers:\n- name: sim\n  user:\n    \
    token: planted-secret-token: oops\n";

#[test]
fn a_kubeconfig_found_without_the_flag_is_told_by_line_and_column_without_the_token() {
    let env = setup(None);
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, BROKEN_KUBECONFIG).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    let home_config = home.join(".kube/config");
    std::fs::write(&home_config, BROKEN_KUBECONFIG).unwrap();
    let good = env.kubeconfig.path().display().to_string();
    let missing = dir.path().join("missing.yml").display().to_string();
    let home = home.display().to_string();
    let list = format!("{good}:{missing}:{}", broken.display());
    // (KUBECONFIG, HOME, --context, the file told)
    let cases = [
        (Some(list.as_str()), None, None, &broken),
        (Some(list.as_str()), None, Some("kube-sim"), &broken),
        (None, Some(home.as_str()), None, &home_config),
        (None, Some(home.as_str()), Some("kube-sim"), &home_config),
        // An empty KUBECONFIG is unset, as kubectl takes it.
        (Some(""), Some(home.as_str()), None, &home_config),
    ];
    for (kubeconfig, home, context, told) in cases {
        let mut vars = BTreeMap::new();
        if let Some(k) = kubeconfig {
            vars.insert("KUBECONFIG".to_string(), k.to_string());
        }
        // Without its own HOME, the runner's ~/.kube/config is out of the way.
        vars.insert(
            "HOME".to_string(),
            home.unwrap_or("/nonexistent").to_string(),
        );
        let mut args = without_kubeconfig_flag(&ship_args(&env, "", &[]));
        if let Some(c) = context {
            args.extend(["--context".to_string(), c.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = monoship(env.repo.path(), &args, &vars);
        let case = format!("KUBECONFIG={kubeconfig:?} HOME={home:?} context={context:?}");
        assert_eq!(run.code, 2, "{case}\n{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(&format!("{}:10:", told.display()))
                && run.stderr.contains("the kubeconfig is not valid YAML"),
            "{case}\n{}",
            run.stderr
        );
        for output in [&run.stderr, &run.stdout] {
            assert!(!output.contains("planted-secret-token"), "{case}\n{output}");
        }
    }
    assert!(env.registry.catalog().is_empty(), "nothing was pushed");
}

/// `args` without `--kubeconfig` and its value.
fn without_kubeconfig_flag(args: &[String]) -> Vec<String> {
    let at = args.iter().position(|a| a == "--kubeconfig").unwrap();
    let mut out = args.to_vec();
    out.drain(at..at + 2);
    out
}

#[tokio::test]
async fn the_usual_kubeconfigs_skip_missing_files_and_merge_the_rest() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.yml");
    std::fs::write(&first, sim.kubeconfig("shop")).unwrap();
    // A second file with the same names but another server: the first to set them wins.
    let second = dir.path().join("second.yml");
    std::fs::write(
        &second,
        kube_sim::kubeconfig_yaml("http://127.0.0.1:1", None, "other"),
    )
    .unwrap();
    let list = format!(
        "{}:{}:{}",
        dir.path().join("missing.yml").display(),
        first.display(),
        second.display()
    );
    let files = usual_kubeconfigs(Some(&list), Some("/home/x"));
    assert_eq!(files.len(), 3, "{files:?}");
    let cluster = tokio::time::timeout(
        Duration::from_secs(20),
        Cluster::from_usual_kubeconfigs(&files, None),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(cluster.server(), sim.url().trim_end_matches('/'));
    assert_eq!(cluster.default_namespace(), "shop");
    // Nothing found and a context asked for: told, not the in-cluster account.
    let nothing = [dir.path().join("absent.yml")];
    let err = Cluster::from_usual_kubeconfigs(&nothing, Some("prod"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no kubeconfig found for context `prod`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_registry_that_accepts_and_never_answers_fails_within_the_image_deadline() {
    // Accepts every connection and holds it open without a byte in answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let target = RegistryTarget::parse(&host, None, None).unwrap();
    let registry = OciRegistry::new(target)
        .unwrap()
        .with_retry_delay(Duration::from_millis(10))
        .with_image_deadline(Duration::from_secs(2));
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        registry.tag_digest("shop/cart", "v1"),
    )
    .await
    .expect("the deadline stops the requests");
    let elapsed = started.elapsed();
    let err = outcome.unwrap_err();
    assert!(matches!(err, RegistryError::Deadline { .. }), "{err:?}");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("the registry {host}"))
            && shown.contains("shop/cart")
            && shown.contains("within 2s"),
        "{shown}"
    );
    // The budget is the image's: a later request for it fails at once.
    let again = Instant::now();
    assert!(registry.manifest("shop/cart", "v1").await.is_err());
    assert!(again.elapsed() < Duration::from_secs(1));
    silent.abort();
}

/// A patch that meets a plain-text 5xx (a proxy's page, not a `Status`) on every attempt.
fn ship_against_a_proxy_error(status: u16) {
    let env = setup(None);
    let before = image_of(&env, "cart");
    let page = format!("<html><body>\n<h1>{status} Bad gateway</h1>\n</body></html>");
    env.sim.inject_fault(
        Fault::new(status, CART)
            .method("PATCH")
            .plain(page)
            .times(1000),
    );
    let run = ship(&env, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let cart = rollout(&run.json(), "cart").clone();
    assert_eq!(cart["status"], "failed", "{cart}");
    let reason = cart["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "HTTP {status} from the API server: <html><body> <h1>{status} Bad gateway</h1>"
        )),
        "{status}: {reason}"
    );
    assert_eq!(image_of(&env, "cart"), before, "cart was not changed");
    let patches = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.uri.starts_with(CART))
        .count();
    assert_eq!(
        patches, 4,
        "{status}: 4 attempts, as docs/reference.md says"
    );
}

#[test]
fn a_plain_text_503_is_told_by_status_and_body_and_tried_4_times() {
    ship_against_a_proxy_error(503);
}

#[test]
fn a_plain_text_500_is_told_by_status_and_body_and_tried_4_times() {
    ship_against_a_proxy_error(500);
}

#[test]
fn a_repository_without_commits_is_told_to_commit_first() {
    let repo = three_services(&ShopConfig::default().yaml());
    let run = plan_json(repo.path(), &["--base", "HEAD~1", "--head", "HEAD"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("the repository has no commits yet; commit something first"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("more history"), "{}", run.stderr);
}

#[tokio::test]
async fn a_registry_given_no_credentials_says_how_to_give_them() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("HEAD"))
        .respond_with(
            wiremock::ResponseTemplate::new(401)
                .insert_header("WWW-Authenticate", "Basic realm=\"registry\""),
        )
        .mount(&server)
        .await;
    let host = server.uri().trim_start_matches("http://").to_string();
    let anonymous = OciRegistry::new(RegistryTarget::parse(&host, None, None).unwrap()).unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        anonymous.tag_digest("shop/cart", "v1"),
    )
    .await
    .unwrap()
    .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("the registry {host} needs credentials"))
            && shown.contains(
                "set --registry-username and MONOSHIP_REGISTRY_PASSWORD (inputs registry-username, registry-password)"
            ),
        "{shown}"
    );
    assert!(!shown.contains("refused"), "{shown}");
    // With credentials given, a refusal is still about them.
    let target = RegistryTarget::parse(&host, Some("ci".into()), Some(Secret::new("wrong")));
    let err = OciRegistry::new(target.unwrap())
        .unwrap()
        .tag_digest("shop/cart", "v1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refused the credentials"), "{err}");
}
