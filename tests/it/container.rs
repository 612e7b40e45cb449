//! The action's container image, run exactly as a GitHub runner runs a Docker action:
//! `scripts/local-action-image.sh` builds it around this build's binary, and `docker run` gets
//! the runner's mounts (`/github/workspace`, `/github/file_commands`, `/github/workflow`,
//! `/github/home`, the Docker socket), its working folder and its `INPUT_*`/`GITHUB_*`
//! environment. Checked through the files the runner reads back.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    example_shop, pr_payload, run_action, wait_bounded, ActionRun, Registry, Repo,
};

const IMAGE: &str = "monoship:local";

/// Builds the image once per test process, around the binary under test (no release build).
pub(crate) fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let started = Instant::now();
        let child = Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/local-action-image.sh"),
        )
        .arg(IMAGE)
        .env("MONOSHIP_BINARY", env!("CARGO_BIN_EXE_monoship"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scripts/local-action-image.sh starts");
        let run = wait_bounded(child, Duration::from_secs(180));
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        eprintln!("{IMAGE} built in {:.1?}", started.elapsed());
    });
    IMAGE
}

/// The example shop with a pull request that changes the shared protos, while main moved on
/// (email's template, which the merge base keeps out). Returns the repository, the merge base,
/// main's tip (the event's `base.sha`) and the pull request's head.
fn shop_pull_request() -> (Repo, String, String, String) {
    let (mut repo, fork_point) = example_shop();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("pb/demo.proto", "syntax = \"proto3\"; // v2\n");
    let head = repo.commit("protos v2");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("src/email/templates/welcome.txt", "Welcome back!\n");
    let main_tip = repo.commit("email: new welcome");
    repo.git(&["checkout", "-q", "feature"]);
    (repo, fork_point, main_tip, head)
}

/// The runner's workspace belongs to the runner's user and the container runs as root, which
/// makes git refuse it ("dubious ownership"). When the tests run as root, hand the repository
/// to another user so that this happens here too (and `Repo::git` refuses it from then on).
fn hand_to_the_runner_user(path: &Path) {
    if std::fs::metadata(path).unwrap().uid() == 0 {
        let status = Command::new("chown")
            .args(["-R", "1001:1001"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
    assert_ne!(std::fs::metadata(path).unwrap().uid(), 0);
}

/// Removes the container when the test ends, also when it timed out or panicked.
pub(crate) struct Container(pub String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub(crate) fn container_name() -> Container {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    Container(format!(
        "monoship-it-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Runs the action image the way the runner does (`docker run` with its mounts, working
/// folder and environment) for a `pull_request` event at `head`; `docker_args` go before the
/// image name. Returns what the runner reads back after the step.
fn run_step(
    workspace: &Path,
    event: &Value,
    head: &str,
    inputs: &[(&str, &str)],
    docker_args: &[&str],
) -> ActionRun {
    let image = image();
    let temp = tempfile::tempdir().unwrap();
    let folder = |name: &str| {
        let dir = temp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        dir
    };
    let (home, workflow, commands) = (
        folder("_github_home"),
        folder("_github_workflow"),
        folder("_runner_file_commands"),
    );
    std::fs::write(workflow.join("event.json"), event.to_string()).unwrap();
    // The runner creates the file-command files before the step; the step appends to them.
    let (output, summary) = ("set_output_0c7e4b9a", "step_summary_0c7e4b9a");
    std::fs::write(commands.join(output), "").unwrap();
    std::fs::write(commands.join(summary), "").unwrap();

    let container = container_name();
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--name", &container.0, "--rm"])
        .args(["--workdir", "/github/workspace"]);
    // The sticky pull-request comment needs the GitHub API, which tests/it/github.rs fakes; no
    // API is reachable from here, and the real one must never be called from a test.
    cmd.args(["-e", "INPUT_COMMENT=false"]);
    for (name, value) in inputs {
        cmd.arg("-e")
            .arg(format!("INPUT_{}={value}", name.to_uppercase()));
    }
    let output_env = format!("GITHUB_OUTPUT=/github/file_commands/{output}");
    let summary_env = format!("GITHUB_STEP_SUMMARY=/github/file_commands/{summary}");
    let sha_env = format!("GITHUB_SHA={head}");
    for var in [
        "HOME=/github/home",
        "CI=true",
        "GITHUB_ACTIONS=true",
        "GITHUB_EVENT_NAME=pull_request",
        "GITHUB_EVENT_PATH=/github/workflow/event.json",
        "GITHUB_WORKSPACE=/github/workspace",
        "GITHUB_REPOSITORY=octo/shop",
        "GITHUB_REF=refs/pull/2/merge",
        "GITHUB_SERVER_URL=https://github.com",
        "GITHUB_API_URL=http://127.0.0.1:9",
        "RUNNER_OS=Linux",
        &sha_env,
        &output_env,
        &summary_env,
    ] {
        cmd.args(["-e", var]);
    }
    let mount = |host: &Path, inside: &str| format!("{}:{inside}", host.display());
    cmd.args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
        .args(["-v", &mount(&home, "/github/home")])
        .args(["-v", &mount(&workflow, "/github/workflow")])
        .args(["-v", &mount(&commands, "/github/file_commands")])
        .args(["-v", &mount(workspace, "/github/workspace")])
        .args(docker_args)
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let run = wait_bounded(cmd.spawn().expect("docker runs"), Duration::from_secs(120));
    eprintln!("the action's container ran in {:.1?}", started.elapsed());
    drop(container);
    ActionRun::read(run, &commands.join(output), &commands.join(summary))
}

#[test]
fn plan_in_the_action_image_as_the_runner_runs_it() {
    let (repo, fork_point, main_tip, head) = shop_pull_request();
    hand_to_the_runner_user(repo.path());
    let event = pr_payload("opened", &main_tip, &head);

    // The premise: plain git, as root in this image, refuses the workspace.
    let git = wait_bounded(
        Command::new("docker")
            .args(["run", "--rm", "--entrypoint", "/usr/bin/git"])
            .args(["--workdir", "/github/workspace", "-v"])
            .arg(format!("{}:/github/workspace", repo.path().display()))
            .args([image(), "rev-parse", "HEAD"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(60),
    );
    assert_ne!(git.code, 0, "{}", git.stdout);
    assert!(git.stderr.contains("dubious ownership"), "{}", git.stderr);

    let step = run_step(repo.path(), &event, &head, &[("command", "plan")], &[]);
    assert_eq!(step.run.code, 0, "{}\n{}", step.run.stdout, step.run.stderr);
    assert!(
        !step.run.stderr.contains("::error") && !step.run.stderr.contains("::warning"),
        "{}",
        step.run.stderr
    );
    assert_eq!(step.output("changed"), r#"["cart","checkout","frontend"]"#);
    assert_eq!(step.output("any-changed"), "true");
    assert_eq!(
        step.output("base"),
        fork_point,
        "the merge base, not main's tip"
    );
    assert_eq!(step.output("head"), head);
    for (service, changed) in [
        ("cart", "true"),
        ("checkout", "true"),
        ("email", "false"),
        ("frontend", "true"),
    ] {
        assert_eq!(step.output(service), changed, "{service}");
    }
    let matrix: Value = serde_json::from_str(step.output("matrix")).unwrap();
    assert_eq!(
        matrix,
        json!({"include": [
            {"service": "cart", "dockerfile": "src/cart/Dockerfile", "context": "."},
            {"service": "checkout", "dockerfile": "src/checkout/Dockerfile", "context": "."},
            {"service": "frontend", "dockerfile": "src/frontend/Dockerfile", "context": "."},
        ]})
    );
    assert!(
        step.summary.starts_with(&format!(
            "### monoship plan\n\n3 of 4 services changed (`{}`..`{}`, 1 changed file, source: git).\n",
            &fork_point[..12],
            &head[..12]
        )),
        "{}",
        step.summary
    );
    for row in [
        "| cart | yes | <code>pb/demo.proto</code>",
        "| checkout | yes | <code>pb/demo.proto</code>",
        "| frontend | yes | <code>pb/demo.proto</code>",
        "| email | no |",
    ] {
        assert!(step.summary.contains(row), "{row}:\n{}", step.summary);
    }

    // The image answers exactly as the binary does when started directly.
    let direct = run_action(
        repo.path(),
        "pull_request",
        &event,
        &head,
        &[("INPUT_COMMENT", "false")],
    );
    assert_eq!(direct.run.code, 0, "{}", direct.run.stderr);
    assert_eq!(step.outputs, direct.outputs);
    assert_eq!(step.summary, direct.summary);
}

/// `build` from inside the image drives the host's daemon through the mounted socket, with the
/// build context read from `/github/workspace`. One difference from the runner: the registry
/// listens on the host's loopback, so the container shares the host's network (the runner puts
/// it on a bridge network, from where a registry such as ghcr.io is reachable just the same).
#[test]
fn build_in_the_action_image_pushes_through_the_mounted_docker_socket() {
    let registry = Registry::start(None);
    let (repo, _, main_tip, head) = shop_pull_request();
    hand_to_the_runner_user(repo.path());
    let target = format!("{}/shop", registry.addr);
    let step = run_step(
        repo.path(),
        &pr_payload("opened", &main_tip, &head),
        &head,
        &[("command", "build"), ("registry", &target)],
        &["--network", "host"],
    );
    remove_local_tags(&format!("{target}/"));
    assert_eq!(step.run.code, 0, "{}\n{}", step.run.stdout, step.run.stderr);
    assert_eq!(step.output("changed"), r#"["cart","checkout","frontend"]"#);
    let images: Value = serde_json::from_str(step.output("images")).unwrap();
    let images = images.as_object().unwrap();
    assert_eq!(
        images.keys().collect::<Vec<_>>(),
        ["cart", "checkout", "frontend"]
    );
    // A pull request's images go below `pr/`, apart from the branch images.
    for (service, image) in images {
        let digest = registry
            .digest(&format!("shop/pr/{service}"), &head, None)
            .unwrap_or_else(|| panic!("no shop/pr/{service}:{head} in the registry"));
        assert_eq!(image, &format!("{target}/pr/{service}@{digest}"));
        // The summary row names the repository and the digest (abbreviated).
        let row = step
            .summary
            .lines()
            .find(|l| l.starts_with(&format!("| {service} | yes |")))
            .unwrap_or_else(|| panic!("no row for {service}:\n{}", step.summary));
        assert!(row.contains(&format!("{target}/pr/{service}")), "{row}");
        assert!(row.contains(&digest[..19]), "{digest}: {row}");
    }
    let mut catalog = registry.catalog();
    catalog.sort();
    assert_eq!(
        catalog,
        ["shop/pr/cart", "shop/pr/checkout", "shop/pr/frontend"]
    );
}

/// Untags the images the daemon kept of a test registry (the registry itself is gone after the
/// test), so repeated runs do not pile them up.
fn remove_local_tags(prefix: &str) {
    let out = Command::new("docker")
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .unwrap();
    let tags: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect();
    if !tags.is_empty() {
        let _ = Command::new("docker")
            .arg("rmi")
            .args(&tags)
            .stdout(Stdio::null())
            .status();
    }
}

/// The local image passes the contents check the release image passes in release.yml.
#[test]
fn the_local_image_holds_what_the_release_image_holds() {
    let image = image();
    let child =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-action-image.sh"))
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("scripts/check-action-image.sh starts");
    let run = wait_bounded(child, Duration::from_secs(60));
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains(&format!("monoship {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        run.stderr
    );
}
