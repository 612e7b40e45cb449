//! Which existing images a run may reuse: pull-request images live apart from branch images,
//! and an image under a content tag is reused only when its revision label names a commit of
//! the run's own history. Real Docker daemon, real registry, the Kubernetes simulator.

use std::process::Command;
use std::time::Duration;

use crate::ship::{image_of, rollout, setup, ship};
use crate::support::{monoship, pr_payload, run_action, wait_bounded, Run};

/// The content tag `build` would push for `service` at the repository's HEAD, from a dry run.
fn content_tag(env: &crate::ship::Env, service: &str) -> String {
    let run = monoship(
        env.repo.path(),
        &[
            "build",
            "--dry-run",
            "--format",
            "json",
            "--base",
            &env.base,
            "--registry",
            &env.registry.addr,
        ],
        &Default::default(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.json();
    let image = report["dry_run"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["service"] == service)
        .unwrap_or_else(|| panic!("no image for {service}: {report}"))
        .clone();
    image["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str()?.strip_prefix("engine: POST /images/"))
        .find_map(|c| {
            c.split_once("?tag=src-")
                .map(|(_, tag)| format!("src-{tag}"))
        })
        .unwrap_or_else(|| panic!("no content tag in {image}"))
}

/// Runs `docker` with `args`, bounded in time; fails the test unless it succeeds.
fn docker(args: &[&str]) -> Run {
    let child = Command::new("docker")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker runs");
    let run = wait_bounded(child, Duration::from_secs(120));
    assert_eq!(run.code, 0, "docker {args:?}: {}", run.stderr);
    run
}

/// Builds an image FROM scratch holding `content`, labelled as built from `revision`, and
/// pushes it as `reference`.
fn plant(reference: &str, content: &str, revision: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("planted"), content).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY planted /planted\n",
    )
    .unwrap();
    let label = format!("org.opencontainers.image.revision={revision}");
    let context = dir.path().display().to_string();
    docker(&["build", "-q", "--label", &label, "-t", reference, &context]);
    docker(&["push", "-q", reference]);
    let _ = Command::new("docker")
        .args(["rmi", "-f", reference])
        .output();
}

/// A pull request's build pushes, under cart's content tag on main, an image with other
/// content, labelled with the pull request's commit (which never merges). The main run does
/// not reuse it: it rebuilds, says why, and deploys the rebuilt digest.
#[test]
fn an_image_planted_under_the_content_tag_by_a_pull_request_is_rebuilt_not_deployed() {
    let mut env = setup(None);
    let main = env.repo.git(&["rev-parse", "HEAD"]);
    env.repo.git(&["checkout", "-q", "-b", "attack"]);
    env.repo.write("README.md", "never merged\n");
    let unmerged = env.repo.commit("a pull request");
    env.repo.git(&["checkout", "-q", "main"]);
    assert_eq!(env.repo.git(&["rev-parse", "HEAD"]), main);

    let tag = content_tag(&env, "cart");
    plant(
        &format!("{}/cart:{tag}", env.registry.addr),
        "planted",
        &unmerged,
    );
    let planted = env.registry.digest("cart", &tag, None).expect("planted");

    let run = ship(&env, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let cart = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["service"] == "cart")
        .unwrap()
        .clone();
    assert_eq!(cart["status"], "built", "{cart}");
    let rebuilt = cart["digest"].as_str().unwrap();
    assert_ne!(rebuilt, planted, "the planted image was reused");
    assert!(
        cart["warning"].as_str().unwrap().contains(&unmerged),
        "{cart}"
    );
    assert!(
        run.stderr
            .contains(&format!("warning: cart: {}/cart:{tag}", env.registry.addr)),
        "{}",
        run.stderr
    );
    assert_eq!(rollout(&report, "cart")["status"], "succeeded");
    assert_eq!(
        image_of(&env, "cart"),
        format!("{}/cart@{rebuilt}", env.registry.addr),
        "the rebuilt image runs"
    );
    assert_eq!(
        env.registry.digest("cart", &tag, None).as_deref(),
        Some(rebuilt),
        "the content tag now names the rebuilt image"
    );

    // The rebuilt image carries this commit's label: the next run reuses it.
    let again = ship(&env, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let images = again.json()["images"].clone();
    let cart = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["service"] == "cart");
    assert_eq!(cart.unwrap()["status"], "reused", "{images}");
}

/// A pull-request run pushes below `pr/` only; a branch run at the same commit finds nothing
/// to reuse under its own names and builds, and a pull-request ship still updates workloads
/// that run the branch's images.
#[test]
fn pull_request_images_live_below_their_own_prefix() {
    let env = setup(None);
    let head = env.repo.git(&["rev-parse", "HEAD"]);
    let kubeconfig = env.kubeconfig.path().display().to_string();
    let payload = pr_payload("synchronize", &env.base, &head);
    let pr = run_action(
        env.repo.path(),
        "pull_request",
        &payload,
        &head,
        &[
            ("INPUT_COMMAND", "ship"),
            ("INPUT_REGISTRY", &env.registry.addr),
            ("INPUT_KUBECONFIG", &kubeconfig),
            ("INPUT_TIMEOUT", "60"),
        ],
    );
    assert_eq!(pr.run.code, 0, "{}", pr.run.stderr);
    let mut catalog = env.registry.catalog();
    catalog.sort();
    assert_eq!(catalog, ["pr/cart", "pr/checkout", "pr/frontend"]);
    let cart = image_of(&env, "cart");
    assert!(
        cart.starts_with(&format!("{}/pr/cart@sha256:", env.registry.addr)),
        "the pull request's image replaced the branch image: {cart}"
    );
    let checkout = image_of(&env, "checkout");
    assert!(checkout.contains("/pr/checkout@sha256:"), "{checkout}");

    let branch = ship(&env, &[]);
    assert_eq!(branch.code, 0, "{}", branch.stderr);
    let report = branch.json();
    for image in report["images"].as_array().unwrap() {
        assert_eq!(image["status"], "built", "{image}");
    }
    assert_eq!(rollout(&report, "cart")["status"], "succeeded", "{report}");
    assert!(
        image_of(&env, "cart").starts_with(&format!("{}/cart@sha256:", env.registry.addr)),
        "a branch deploy replaces the pull request's image"
    );
}
