//! `monoship build` against the real Docker daemon and a real registry on loopback: images of
//! exactly the changed services, content-addressed, reported with the registry's digests.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::{example_shop, monoship, Registry, Repo, Run};

fn build(repo: &Path, registry: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["build", "--format", "json", "--registry", registry];
    args.extend_from_slice(extra);
    let env = crate::support::env_map(env);
    monoship(repo, &args, &env)
}

fn images(run: &Run) -> Vec<Value> {
    run.json()["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images:\n{}\n{}", run.stdout, run.stderr))
        .clone()
}

fn by_service<'a>(images: &'a [Value], service: &str) -> &'a Value {
    images
        .iter()
        .find(|i| i["service"] == service)
        .unwrap_or_else(|| panic!("no image for {service}: {images:?}"))
}

/// The example with its protos changed: cart, checkout and frontend must be built.
fn changed_shop() -> (Repo, String, String) {
    let (mut repo, base) = example_shop();
    repo.write("pb/demo.proto", "syntax = \"proto3\"; // v2\n");
    let head = repo.commit("protos v2");
    (repo, base, head)
}

#[test]
fn build_pushes_exactly_the_changed_services_with_the_registry_digests() {
    let registry = Registry::start(None);
    let (repo, base, head) = changed_shop();
    let target = format!("{}/shop", registry.addr);
    let run = build(repo.path(), &target, &["--base", &base], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let images = images(&run);
    let names: Vec<&str> = images
        .iter()
        .map(|i| i["service"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cart", "checkout", "frontend"]);
    for image in &images {
        assert_eq!(image["status"], "built", "{image}");
        let service = image["service"].as_str().unwrap();
        let repository = format!("shop/{service}");
        let digest = image["digest"].as_str().unwrap();
        let tags: Vec<&str> = image["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(tags.contains(&head.as_str()), "{tags:?}");
        for tag in &tags {
            assert_eq!(
                registry.digest(&repository, tag, None).as_deref(),
                Some(digest),
                "{repository}:{tag}"
            );
        }
        assert_eq!(
            image["image"],
            format!("{}/{repository}@{digest}", registry.addr)
        );
    }
    let mut catalog = registry.catalog();
    catalog.sort();
    assert_eq!(
        catalog,
        ["shop/cart", "shop/checkout", "shop/frontend"],
        "email did not change and was not pushed"
    );

    // Nothing changed since: nothing is built, every image is reused with the same digest.
    let again = build(repo.path(), &target, &["--base", &base], &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    for image in images.iter() {
        let second = by_service(&images_of(&again), image["service"].as_str().unwrap()).clone();
        assert_eq!(second["status"], "reused");
        assert_eq!(second["digest"], image["digest"]);
    }

    // --rebuild builds and pushes them again (a base image may have moved under its tag).
    let rebuilt = build(repo.path(), &target, &["--base", &base, "--rebuild"], &[]);
    assert_eq!(rebuilt.code, 0, "{}", rebuilt.stderr);
    for image in images_of(&rebuilt) {
        assert_eq!(image["status"], "built", "{image}");
    }
}

fn images_of(run: &Run) -> Vec<Value> {
    images(run)
}

#[test]
fn a_revert_reuses_the_image_built_before_and_immutable_tags_stay_untouched() {
    let registry = Registry::start(None);
    let (mut repo, base) = example_shop();
    let target = registry.addr.clone();
    let first = build(repo.path(), &target, &["--services", "cart"], &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let original = by_service(&images(&first), "cart")["digest"].clone();
    repo.write(
        "src/cart/main.go",
        "package main\n\nfunc main() { println(1) }\n",
    );
    repo.commit("change cart");
    let changed = build(repo.path(), &target, &["--base", &base], &[]);
    let changed_digest = by_service(&images(&changed), "cart")["digest"].clone();
    assert_ne!(changed_digest, original);
    repo.git(&["revert", "--no-edit", "HEAD"]);
    let reverted = build(repo.path(), &target, &["--base", "HEAD~1"], &[]);
    assert_eq!(reverted.code, 0, "{}", reverted.stderr);
    let reverted_images = images(&reverted);
    let cart = by_service(&reverted_images, "cart");
    assert_eq!(cart["status"], "reused", "{cart}");
    assert_eq!(cart["digest"], original);
    let head = repo.git(&["rev-parse", "HEAD"]);
    assert_eq!(
        registry.digest("cart", &head, None).as_deref(),
        original.as_str(),
        "the revert's commit tag points at the old image"
    );
}

#[test]
fn a_failing_dockerfile_fails_its_service_only_with_an_annotation_on_the_line() {
    let registry = Registry::start(None);
    let (mut repo, base) = example_shop();
    repo.write("pb/demo.proto", "v3\n");
    repo.write("src/frontend/Dockerfile", "FROM scratch\nCOPY [\"pb/demo.proto\", \"/app/pb/\"]\nCOPY src/frontend/missing.txt /app/\n");
    let head = repo.commit("broken frontend");
    let files = tempfile::tempdir().unwrap();
    let output = files.path().join("output");
    let env = [
        ("GITHUB_ACTIONS", "true"),
        ("INPUT_COMMAND", "build"),
        ("INPUT_BASE", base.as_str()),
        ("INPUT_HEAD", head.as_str()),
        ("INPUT_REGISTRY", registry.addr.as_str()),
        ("GITHUB_WORKSPACE", repo.path().to_str().unwrap()),
        ("GITHUB_OUTPUT", output.to_str().unwrap()),
    ];
    let env = crate::support::env_map(&env);
    let run = monoship(Path::new("/"), &[], &env);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let annotation = run.error_annotation();
    assert!(annotation.starts_with("::error file=src/frontend/Dockerfile,line=3,title=frontend failed to build::frontend: the build failed"), "{annotation}");
    assert!(
        run.stderr.contains("::group::build frontend"),
        "the failing build's log is grouped"
    );
    assert!(
        annotation.contains("missing.txt\" not found") && annotation.contains("#4 ERROR:"),
        "{annotation}"
    );
    let outputs = monoship::report::outputs::parse(&std::fs::read_to_string(&output).unwrap());
    let images: Value =
        serde_json::from_str(&outputs.iter().find(|(n, _)| n == "images").unwrap().1).unwrap();
    assert!(
        images["cart"].as_str().unwrap().contains("@sha256:"),
        "{images}"
    );
    assert!(
        images["checkout"].as_str().unwrap().contains("@sha256:"),
        "{images}"
    );
    assert!(
        images.get("frontend").is_none(),
        "a failed image has no output: {images}"
    );
    assert_eq!(
        registry.digest("frontend", &head, None),
        None,
        "nothing half-pushed"
    );
}

/// actions/checkout with `path: shop`: the runner reads annotation files from the workspace
/// root, so they must name the subfolder too.
#[test]
fn annotations_name_files_from_the_workspace_root_when_checked_out_into_a_subfolder() {
    let registry = Registry::start(None);
    let (mut repo, base) = example_shop();
    repo.write(
        "src/frontend/Dockerfile",
        "FROM scratch\nCOPY src/frontend/missing.txt /app/\n",
    );
    let head = repo.commit("broken frontend");
    let workspace = repo.path().parent().unwrap();
    let folder = repo.path().file_name().unwrap().to_str().unwrap();
    let env = crate::support::env_map(&[
        ("GITHUB_ACTIONS", "true"),
        ("INPUT_COMMAND", "build"),
        ("INPUT_BASE", base.as_str()),
        ("INPUT_HEAD", head.as_str()),
        ("INPUT_REGISTRY", registry.addr.as_str()),
        ("INPUT_WORKING-DIRECTORY", folder),
        ("GITHUB_WORKSPACE", workspace.to_str().unwrap()),
    ]);
    let run = monoship(Path::new("/"), &[], &env);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let annotation = run.error_annotation();
    let want =
        format!("::error file={folder}/src/frontend/Dockerfile,line=2,title=frontend failed");
    assert!(annotation.starts_with(&want), "{annotation}");
}

#[test]
fn registry_credentials_log_in_and_never_show_up() {
    let password = "s3cret-Registry-pw-9182";
    let registry = Registry::start(Some(("ci", password)));
    let (repo, _, _) = changed_shop();
    let files = tempfile::tempdir().unwrap();
    let (output, summary) = (files.path().join("output"), files.path().join("summary"));
    let env = [
        ("GITHUB_ACTIONS", "true"),
        ("INPUT_COMMAND", "build"),
        ("INPUT_BASE", "HEAD~1"),
        ("INPUT_HEAD", "HEAD"),
        ("INPUT_REGISTRY", registry.addr.as_str()),
        ("INPUT_REGISTRY-USERNAME", "ci"),
        ("INPUT_REGISTRY-PASSWORD", password),
        ("MONOSHIP_LOG", "trace"),
        ("GITHUB_WORKSPACE", repo.path().to_str().unwrap()),
        ("GITHUB_OUTPUT", output.to_str().unwrap()),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
    ];
    let env = crate::support::env_map(&env);
    let run = monoship(Path::new("/"), &[], &env);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(registry
        .digest(
            "cart",
            &repo.git(&["rev-parse", "HEAD"]),
            Some(("ci", password))
        )
        .is_some());
    let mask_line = format!("::add-mask::{password}");
    let first_mention = run.stderr.find(password).expect("the password is masked");
    assert_eq!(
        first_mention,
        run.stderr.find(&mask_line).unwrap() + "::add-mask::".len(),
        "the mask comes first"
    );
    let everything = [
        run.stdout.clone(),
        run.stderr
            .lines()
            .filter(|l| *l != mask_line)
            .collect::<Vec<_>>()
            .join("\n"),
        std::fs::read_to_string(&output).unwrap(),
        std::fs::read_to_string(&summary).unwrap(),
    ];
    for (i, text) in everything.iter().enumerate() {
        assert!(
            !text.contains(password),
            "the password leaked into stream {i}"
        );
    }

    // A wrong password: a clear error, nothing pushed.
    let (other, _, _) = changed_shop();
    let mut env = env.clone();
    env.insert(
        "GITHUB_WORKSPACE".into(),
        other.path().display().to_string(),
    );
    env.insert(
        "INPUT_REGISTRY-PASSWORD".into(),
        "wrong-password-771".into(),
    );
    let run = monoship(Path::new("/"), &[], &env);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(&registry.addr) && run.stderr.to_lowercase().contains("login"),
        "{}",
        run.stderr
    );
    assert!(!run
        .stderr
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .any(|l| l.contains("wrong-password-771")));
}

#[test]
fn an_unreachable_daemon_fails_the_builds_and_says_how_to_mount_the_socket() {
    let registry = Registry::start(None);
    let (repo, base, _) = changed_shop();
    let run = build(
        repo.path(),
        &registry.addr,
        &["--base", &base],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    for image in images(&run) {
        assert_eq!(image["status"], "failed");
        assert!(
            image["error"]
                .as_str()
                .unwrap()
                .contains("/var/run/docker.sock"),
            "{image}"
        );
    }
    assert!(registry.catalog().is_empty());
}

#[test]
fn dry_run_prints_the_commands_and_touches_nothing() {
    let registry = Registry::start(None);
    let (repo, base, _) = changed_shop();
    let env = BTreeMap::new();
    let run = monoship(
        repo.path(),
        &[
            "build",
            "--dry-run",
            "--base",
            &base,
            "--registry",
            &registry.addr,
        ],
        &env,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("engine: POST /build?version=2&dockerfile=src%2Fcart%2FDockerfile"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "engine: POST /images/{}/cart/push?tag=",
            registry.addr
        )),
        "{}",
        run.stdout
    );
    assert!(registry.catalog().is_empty());

    // As JSON, a ship dry run is one document: the plan, the images and the deploys.
    let run = monoship(
        repo.path(),
        &[
            "ship",
            "--dry-run",
            "--format",
            "json",
            "--base",
            &base,
            "--registry",
            &registry.addr,
        ],
        &env,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.json();
    let images = report["dry_run"]["images"].as_array().unwrap();
    let services: Vec<&str> = images
        .iter()
        .map(|i| i["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["cart", "checkout", "frontend"], "{report}");
    assert_eq!(report["changed"], serde_json::json!(services));
    assert!(images[0]["commands"][1]
        .as_str()
        .unwrap()
        .starts_with("engine: POST /build?version=2"));
    let deploys = report["dry_run"]["deploys"].as_array().unwrap();
    assert!(
        deploys.iter().any(|d| d["service"] == "cart"
            && d["action"]
                .as_str()
                .unwrap()
                .starts_with("patch deployment/cart")),
        "{report}"
    );
    assert!(registry.catalog().is_empty());
}

#[test]
fn build_without_a_registry_is_exit_2() {
    let (repo, base, _) = changed_shop();
    let run = monoship(repo.path(), &["build", "--base", &base], &BTreeMap::new());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no registry to push to"),
        "{}",
        run.stderr
    );
}

mod ecr {
    use super::*;
    use crate::aws::Moto;

    /// moto's fixed ECR token, which the local registry accepts: a real login with it.
    const ECR_PASSWORD: &str = "123456789012-auth-token";

    fn with_ecr(repo: &mut Repo, registry: &Registry, create: bool) {
        let config = std::fs::read_to_string(repo.path().join(".github/monoship.yml")).unwrap();
        let ecr = format!("registry:\n  ecr:\n    region: us-east-1\n    prefix: shop\n    create_repositories: {create}\n    endpoint: {}\n", registry.addr);
        repo.write(".github/monoship.yml", &format!("{config}{ecr}"));
        repo.commit("push to ECR");
    }

    #[test]
    fn ecr_logs_in_creates_repositories_and_pushes() {
        let moto = Moto::start();
        let registry = Registry::start(Some(("AWS", ECR_PASSWORD)));
        let (mut repo, base) = example_shop();
        with_ecr(&mut repo, &registry, true);
        repo.write("pb/demo.proto", "ecr\n");
        let head = repo.commit("protos");
        let env = moto.run_env();
        let run = monoship(
            repo.path(),
            &["build", "--format", "json", "--base", &base],
            &env,
        );
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        for image in images(&run) {
            assert_eq!(image["status"], "built", "{image}");
            let repository = format!("shop/{}", image["service"].as_str().unwrap());
            assert_eq!(
                registry
                    .digest(&repository, &head, Some(("AWS", ECR_PASSWORD)))
                    .as_deref(),
                image["digest"].as_str()
            );
        }
        // The repositories now exist in ECR: without create_repositories the next run works.
        let (mut again, base2) = example_shop();
        with_ecr(&mut again, &registry, false);
        again.write("pb/demo.proto", "ecr again\n");
        again.commit("protos");
        let run = monoship(
            again.path(),
            &["build", "--format", "json", "--base", &base2],
            &env,
        );
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    }

    #[test]
    fn a_missing_ecr_repository_is_exit_2_naming_the_setting() {
        let moto = Moto::start();
        let registry = Registry::start(Some(("AWS", ECR_PASSWORD)));
        let (mut repo, base) = example_shop();
        with_ecr(&mut repo, &registry, false);
        repo.write("pb/demo.proto", "ecr\n");
        repo.commit("protos");
        let run = monoship(repo.path(), &["build", "--base", &base], &moto.run_env());
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains("create_repositories"), "{}", run.stderr);
        assert!(registry.catalog().is_empty(), "nothing was pushed");
    }
}
