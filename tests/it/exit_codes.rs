//! Exit codes mean what the README says: 2 only when nothing was built, pushed or deployed
//! (each exit-2 path checked against the registry and the cluster afterwards), and 1 for any
//! failure after that, with the run's report still on stderr.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::ship::{image_of, setup, ship_with, Env};
use crate::support::{env_map, monoship, Registry, Run};

/// What a run must leave alone when it exits 2: the registry's repositories and every
/// seeded Deployment's spec, read back from the simulator.
struct Untouched {
    specs: BTreeMap<&'static str, Value>,
}

impl Untouched {
    fn record(env: &Env) -> Untouched {
        let specs = ["cart", "frontend", "email"]
            .into_iter()
            .map(|name| (name, spec_of(env, name)))
            .collect();
        Untouched { specs }
    }

    fn check(&self, env: &Env, case: &str, run: &Run) {
        assert_eq!(run.code, 2, "{case}: {}\n{}", run.stdout, run.stderr);
        assert!(
            env.registry.catalog().is_empty(),
            "{case}: nothing was pushed: {:?}",
            env.registry.catalog()
        );
        for (name, spec) in &self.specs {
            assert_eq!(&spec_of(env, name), spec, "{case}: {name} was not patched");
        }
        assert!(
            env.sim
                .get("deployments", "shop", "checkout")
                .unwrap()
                .is_none(),
            "{case}: no manifest was applied"
        );
    }
}

fn spec_of(env: &Env, name: &str) -> Value {
    env.sim.get("deployments", "shop", name).unwrap().unwrap()["spec"].clone()
}

/// `ship` on the changed shop with `args` replacing the defaults it names.
fn ship_args(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut all = vec![
        "ship",
        "--format",
        "json",
        "--base",
        &env.base,
        "--timeout",
        "60",
    ];
    all.extend_from_slice(args);
    monoship(env.repo.path(), &all, &env_map(vars))
}

#[test]
fn every_exit_2_path_leaves_the_registry_and_the_cluster_untouched() {
    let env = setup(None);
    let untouched = Untouched::record(&env);
    let kubeconfig = env.kubeconfig.path().display().to_string();
    let registry = env.registry.addr.clone();
    let usable = [
        "--registry",
        registry.as_str(),
        "--kubeconfig",
        kubeconfig.as_str(),
    ];

    let unknown_service = [&usable[..], &["--services", "nosuch"]].concat();
    let run = ship_args(&env, &unknown_service, &[]);
    untouched.check(&env, "an unknown service", &run);
    assert!(run.stderr.contains("nosuch"), "{}", run.stderr);

    let run = ship_args(
        &env,
        &[&usable[..], &["--config", "missing.yml"]].concat(),
        &[],
    );
    untouched.check(&env, "a missing config", &run);

    let run = ship_args(
        &env,
        &["--registry", "not a registry", "--kubeconfig", &kubeconfig],
        &[],
    );
    untouched.check(&env, "a malformed registry", &run);

    let run = ship_args(
        &env,
        &[
            "--registry",
            &registry,
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ],
        &[],
    );
    untouched.check(&env, "a kubeconfig that does not exist", &run);

    // A cluster that answers nothing: the port of a listener that is gone.
    let dead = tempfile::NamedTempFile::new().unwrap();
    let port = crate::support::free_port();
    std::fs::write(
        dead.path(),
        kube_sim::kubeconfig_yaml(&format!("http://127.0.0.1:{port}"), None, "default"),
    )
    .unwrap();
    let dead_path = dead.path().display().to_string();
    let run = ship_args(
        &env,
        &["--registry", &registry, "--kubeconfig", &dead_path],
        &[],
    );
    untouched.check(&env, "an unreachable cluster", &run);
    assert!(
        run.stderr
            .contains(&format!("cannot connect to http://127.0.0.1:{port}")),
        "{}",
        run.stderr
    );

    let run = ship_args(
        &env,
        &[&usable[..], &["--head", "no-such-rev"]].concat(),
        &[],
    );
    untouched.check(&env, "an unknown revision", &run);
}

#[test]
fn a_registry_that_refuses_the_login_is_exit_2_with_nothing_pushed() {
    let env = setup(None);
    let untouched = Untouched::record(&env);
    let guarded = Registry::start(Some(("ci", "right-password")));
    let kubeconfig = env.kubeconfig.path().display().to_string();
    let run = ship_args(
        &env,
        &[
            "--registry",
            &guarded.addr,
            "--registry-username",
            "ci",
            "--kubeconfig",
            &kubeconfig,
        ],
        &[("MONOSHIP_REGISTRY_PASSWORD", "wrong-password")],
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(guarded.catalog().is_empty());
    untouched.check(&env, "a refused registry login", &run);
}

#[test]
fn a_missing_manifest_is_exit_2_with_nothing_pushed() {
    let env = setup(None);
    let untouched = Untouched::record(&env);
    let mut repo = env.repo;
    repo.remove("deploy/checkout/deployment.yaml");
    repo.commit("no manifest");
    let env = Env { repo, ..env };
    let run = ship_with(&env, &[], &BTreeMap::new());
    untouched.check(&env, "a missing manifest", &run);
    assert!(run.stderr.contains("matches no file"), "{}", run.stderr);
}

#[test]
fn a_manifest_linked_out_of_the_repository_is_exit_2_and_never_read() {
    let env = setup(None);
    let untouched = Untouched::record(&env);
    // A file beside the checkout, as a runner's kubeconfig would be.
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("kubeconfig");
    std::fs::write(&secret, "token: planted-secret-value\n").unwrap();
    let mut repo = env.repo;
    repo.remove("deploy/checkout/deployment.yaml");
    std::os::unix::fs::symlink(&secret, repo.path().join("deploy/checkout/deployment.yaml"))
        .unwrap();
    repo.commit("link the manifest out");
    let env = Env { repo, ..env };
    let run = ship_with(&env, &[], &BTreeMap::new());
    untouched.check(&env, "a manifest linked out", &run);
    assert!(
        run.stderr
            .contains("`deploy/checkout/deployment.yaml` leads outside the repository"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&secret.display().to_string()),
        "the target is named"
    );
    assert!(
        !run.stderr.contains("planted-secret-value"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stdout.contains("planted-secret-value"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_outputs_file_that_cannot_be_written_after_a_deploy_is_exit_1_with_the_report_on_stderr() {
    let env = setup(None);
    let files = tempfile::tempdir().unwrap();
    // A directory where the outputs file should be: appending to it fails.
    let output = files.path().join("output");
    std::fs::create_dir(&output).unwrap();
    let summary = files.path().join("summary");
    let kubeconfig = env.kubeconfig.path().display().to_string();
    let vars = env_map(&[
        ("GITHUB_ACTIONS", "true"),
        ("INPUT_COMMAND", "ship"),
        ("INPUT_BASE", env.base.as_str()),
        ("INPUT_HEAD", "HEAD"),
        ("INPUT_REGISTRY", env.registry.addr.as_str()),
        ("INPUT_KUBECONFIG", kubeconfig.as_str()),
        ("INPUT_TIMEOUT", "60"),
        ("GITHUB_REPOSITORY", "octo/shop"),
        ("GITHUB_WORKSPACE", env.repo.path().to_str().unwrap()),
        ("GITHUB_OUTPUT", output.to_str().unwrap()),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
    ]);
    let run = monoship(Path::new("/"), &[], &vars);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("::error"))
        .unwrap_or_else(|| panic!("no error annotation:\n{}", run.stderr));
    assert!(
        error.contains(&format!("cannot write `{}`", output.display())),
        "{error}"
    );
    let cart = image_of(&env, "cart");
    assert!(cart.contains("@sha256:"), "cart was deployed: {cart}");
    assert!(
        run.stderr.contains("deployment/shop/cart  succeeded"),
        "stderr says what was deployed:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains(&cart), "{}", run.stderr);
}

#[test]
fn a_config_linked_out_of_the_repository_is_exit_2_and_never_quoted() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("credentials.yml");
    std::fs::write(&secret, "aws_secret_access_key: planted-secret-value\n").unwrap();
    let mut repo = crate::support::Repo::new();
    repo.write("a/file", "x\n");
    std::fs::create_dir_all(repo.path().join(".github")).unwrap();
    std::os::unix::fs::symlink(&secret, repo.path().join(".github/monoship.yml")).unwrap();
    repo.commit("a config that is a link out");
    let run = crate::support::plan_json(repo.path(), &["--services", "all"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("`.github/monoship.yml` leads outside the repository"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("planted-secret-value"),
        "{}",
        run.stderr
    );
    // Given by absolute path, the same file is the caller's choice and is read (and refused
    // as a config without quoting it).
    let path = secret.display().to_string();
    let run = crate::support::plan_json(repo.path(), &["--config", &path]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(!run.stderr.contains("leads outside"), "{}", run.stderr);
}

#[test]
fn a_dockerfile_or_ignore_file_linked_out_of_the_repository_is_exit_2() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("kubeconfig");
    std::fs::write(&secret, "token: planted-secret-value\n").unwrap();
    for linked in ["svc/Dockerfile", "svc/.dockerignore"] {
        let mut repo = crate::support::Repo::new();
        repo.write(
            ".github/monoship.yml",
            "services:\n  svc: {dockerfile: svc/Dockerfile}\n",
        )
        .write("svc/app.txt", "x\n");
        if linked != "svc/Dockerfile" {
            repo.write("svc/Dockerfile", "FROM scratch\nCOPY app.txt /\n");
        }
        std::os::unix::fs::symlink(&secret, repo.path().join(linked)).unwrap();
        repo.commit("a build file that is a link out");
        let run = crate::support::plan_json(repo.path(), &["--services", "all"]);
        assert_eq!(run.code, 2, "{linked}: {}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr
                .contains(&format!("`{linked}` leads outside the repository")),
            "{linked}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("planted-secret-value"),
            "{}",
            run.stderr
        );
    }
}
