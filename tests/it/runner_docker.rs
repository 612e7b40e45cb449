//! The runner's Docker config (docker/login-action's logins, docker/setup-buildx-action's
//! builders), against the real daemon and real registries with htpasswd: pushes and private
//! base images work with its logins alone. This machine has no buildx plugin, so the named
//! builder is checked through `MONOSHIP_DOCKER` pointing at a script that records what
//! monoship asks of buildx and stands in for `buildx build --push` with the real CLI's
//! `docker build` and `docker push` in the private config monoship made.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use crate::support::{
    busybox_base_with, content_tag, docker_ok, env_map, monoship, only_image, LocalImages,
    Registry, Repo, Run,
};

const PASSWORD: &str = "Runner-Login-Password-6114";

/// A Docker config folder holding `config.json`, and a HOME without one.
struct RunnerConfig {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl RunnerConfig {
    fn new(config: &Value) -> RunnerConfig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        RunnerConfig {
            dir,
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn home(&self) -> &str {
        self.home.path().to_str().unwrap()
    }
}

fn auth(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

fn app_repo(dockerfile: &str, config_extra: &str) -> Repo {
    let mut repo = Repo::new();
    repo.write(
        ".github/monoship.yml",
        &format!("services:\n  app:\n    dockerfile: app/Dockerfile\n{config_extra}"),
    )
    .write("app/Dockerfile", dockerfile)
    .write("app/data.txt", "data\n");
    repo.commit("app");
    repo
}

fn build(repo: &Path, registry: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["build", "--format", "json", "--services", "app"];
    args.extend_from_slice(&["--registry", registry]);
    args.extend_from_slice(extra);
    monoship(repo, &args, &env_map(env))
}

#[test]
fn a_push_registry_login_comes_from_the_runner_s_docker_config_and_monoship_s_own_wins() {
    let registry = Registry::start(Some(("ci", PASSWORD)));
    let _images = LocalImages(vec![registry.addr.clone()]);
    let repo = app_repo("FROM scratch\nCOPY data.txt /\n", "");
    let none = RunnerConfig::new(&serde_json::json!({}));
    let without = build(
        repo.path(),
        &registry.addr,
        &[],
        &[("DOCKER_CONFIG", none.path()), ("HOME", none.home())],
    );
    assert_eq!(
        without.code, 1,
        "the image fails, nothing pushed: {}",
        without.stderr
    );
    let all = format!("{}{}", without.stdout, without.stderr);
    assert!(
        all.contains(&format!("the registry {} needs credentials", registry.addr)),
        "{all}"
    );
    assert!(
        all.contains("DOCKER_CONFIG: ${{ runner.temp }}/docker"),
        "{all}"
    );
    assert!(registry.catalog().is_empty(), "nothing was pushed");
    // A login kept in a credential helper cannot be run in the container: said so.
    let helper = RunnerConfig::new(&serde_json::json!({
        "auths": {registry.addr.clone(): {}},
        "credsStore": "desktop"
    }));
    let run = build(
        repo.path(),
        &registry.addr,
        &[],
        &[("DOCKER_CONFIG", helper.path())],
    );
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "keeps the login of {} in a credential helper",
            registry.addr
        )),
        "{}",
        run.stderr
    );
    assert!(registry.catalog().is_empty(), "nothing was pushed");

    // docker/login-action's form: `auth`, base64 of user:password.
    let runner = RunnerConfig::new(&serde_json::json!({
        "auths": {
            format!("http://{}/v2/", registry.addr): {"auth": auth("ci", PASSWORD)},
            "https://index.docker.io/v1/": {"auth": auth("hub", "other")}
        }
    }));
    let before = std::fs::read(runner.dir.path().join("config.json")).unwrap();
    let with = build(
        repo.path(),
        &registry.addr,
        &[],
        &[("DOCKER_CONFIG", runner.path()), ("MONOSHIP_LOG", "trace")],
    );
    assert_eq!(with.code, 0, "{}\n{}", with.stdout, with.stderr);
    let image = only_image(&with);
    assert_eq!(image["status"], "built", "{image}");
    assert_eq!(
        registry
            .digest("app", &content_tag(&image), Some(("ci", PASSWORD)))
            .as_deref(),
        image["digest"].as_str(),
        "pushed with the runner's login"
    );
    assert!(!with.stdout.contains(PASSWORD) && !with.stderr.contains(PASSWORD));
    assert_eq!(
        std::fs::read(runner.dir.path().join("config.json")).unwrap(),
        before,
        "the runner's config is never written"
    );
    assert_eq!(std::fs::read_dir(runner.dir.path()).unwrap().count(), 1);

    // A wrong runner login loses to monoship's own credentials for the same host.
    let wrong = RunnerConfig::new(&serde_json::json!({
        "auths": {registry.addr.clone(): {"username": "ci", "password": "wrong"}}
    }));
    let repo = app_repo("FROM scratch\nCOPY data.txt /x\n", "");
    let own = build(
        repo.path(),
        &registry.addr,
        &["--registry-username", "ci"],
        &[
            ("DOCKER_CONFIG", wrong.path()),
            ("MONOSHIP_REGISTRY_PASSWORD", PASSWORD),
        ],
    );
    assert_eq!(own.code, 0, "{}\n{}", own.stdout, own.stderr);
}

#[test]
fn a_runner_config_that_is_not_json_is_exit_2_naming_its_line_and_never_its_text() {
    let registry = Registry::start(None);
    let repo = app_repo("FROM scratch\nCOPY data.txt /\n", "");
    let dir = tempfile::tempdir().unwrap();
    let secret = auth("ci", "Never-Shown-Config-Text-88");
    std::fs::write(
        dir.path().join("config.json"),
        format!("{{\n  \"auths\": {{\"h\": {{\"auth\": \"{secret}\"}}\n  oops\n}}\n"),
    )
    .unwrap();
    let run = build(
        repo.path(),
        &registry.addr,
        &[],
        &[("DOCKER_CONFIG", dir.path().to_str().unwrap())],
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("config.json is not valid JSON") && run.stderr.contains("line 3"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&secret) && !run.stderr.contains("oops"));
    assert!(registry.catalog().is_empty(), "nothing was pushed");
}

#[test]
fn a_private_base_image_resolves_and_pulls_with_the_runner_s_login() {
    let private = Registry::start(Some(("ci", PASSWORD)));
    let push = Registry::start(None);
    let _images = LocalImages(vec![private.addr.clone(), push.addr.clone()]);
    // Pushed, then removed from the daemon: the build must pull it.
    let base = busybox_base_with(&private, Some(("ci", PASSWORD)));
    let base_digest = private
        .digest("base/busybox", "1", Some(("ci", PASSWORD)))
        .unwrap();
    let repo = app_repo(&format!("FROM {base}\nRUN echo ran > /ran\n"), "");

    let none = RunnerConfig::new(&serde_json::json!({}));
    let without = build(
        repo.path(),
        &push.addr,
        &[],
        &[("DOCKER_CONFIG", none.path()), ("HOME", none.home())],
    );
    let image = only_image(&without);
    let warning = image["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("cannot be resolved")
            && warning.contains(&format!(
                "{} refused a lookup without credentials",
                private.addr
            )),
        "{image}\n{}",
        without.stderr
    );

    let runner = RunnerConfig::new(&serde_json::json!({
        "auths": {private.addr.clone(): {"auth": auth("ci", PASSWORD)}}
    }));
    let with = build(
        repo.path(),
        &push.addr,
        &[],
        &[("DOCKER_CONFIG", runner.path())],
    );
    assert_eq!(with.code, 0, "{}\n{}", with.stdout, with.stderr);
    let image = only_image(&with);
    assert_eq!(image["status"], "built", "{image}");
    assert!(image["warning"].is_null(), "{image}");
    let tag = content_tag(&image);
    let digest = image["digest"].as_str().unwrap();
    let manifest = curl_json(&format!("http://{}/v2/app/manifests/{digest}", push.addr));
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config = curl_json(&format!(
        "http://{}/v2/app/blobs/{config_digest}",
        push.addr
    ));
    let label = config["config"]["Labels"]["dev.monoship.base-images"]
        .as_str()
        .unwrap_or_else(|| panic!("no label: {config}"));
    let label: Value = serde_json::from_str(label).unwrap();
    assert_eq!(label[&base], base_digest.as_str(), "{label}");
    assert!(tag.len() > "src-".len());
    assert!(!with.stdout.contains(PASSWORD) && !with.stderr.contains(PASSWORD));
}

fn curl_json(url: &str) -> Value {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "10", "-H"])
        .arg("Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {url}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A stand-in for a docker CLI with buildx: records each call's arguments in `calls.log`;
/// `buildx inspect NAME` succeeds when the private config has the builder's record,
/// `buildx create` writes one, `buildx build` copies the private config aside and then builds
/// and pushes each tag with the real CLI in that same config. Anything else is the real CLI.
const RECORDING_DOCKER: &str = r#"#!/bin/sh
set -eu
record="$RECORD_DIR"
echo "$*" >> "$record/calls.log"
config=""
if [ "${1:-}" = "--config" ]; then config="$2"; shift 2; fi
real() { DOCKER_BUILDKIT=0 /usr/bin/docker --config "$config" "$@"; }
if [ "${1:-}" != "buildx" ]; then real "$@"; exit $?; fi
shift
case "${1:-}" in
  version) echo "github.com/docker/buildx v0.0.0-recording"; exit 0 ;;
  inspect) [ -f "$config/buildx/instances/$2" ] || { echo "ERROR: no builder \"$2\" found" >&2; exit 1; }; exit 0 ;;
  create) mkdir -p "$config/buildx/instances"; echo '{"Name":"'"$3"'","Driver":"docker-container"}' > "$config/buildx/instances/$3"; exit 0 ;;
  build) ;;
  *) echo "unexpected buildx $1" >&2; exit 3 ;;
esac
shift
mkdir -p "$record/private"
cp -R "$config/." "$record/private/"
file=""; tags=""; labels=""
while [ $# -gt 1 ]; do
  case "$1" in
    --file) file="$2"; shift 2 ;;
    --tag) tags="$tags $2"; shift 2 ;;
    --label) labels="$labels|$2"; shift 2 ;;
    --builder|--platform|--metadata-file|--cache-from|--cache-to|--build-arg|--target) shift 2 ;;
    *) shift ;;
  esac
done
context="$1"
set --
for t in $tags; do set -- "$@" -t "$t"; done
IFS='|'
for l in $labels; do [ -n "$l" ] && set -- "$@" --label "$l"; done
unset IFS
real build -q -f "$file" "$@" "$context"
for t in $tags; do real push "$t"; done
"#;

struct Recording {
    dir: tempfile::TempDir,
    script: std::path::PathBuf,
}

impl Recording {
    fn new() -> Recording {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("docker");
        std::fs::write(&script, RECORDING_DOCKER).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Recording { dir, script }
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default()
    }

    fn env<'a>(&'a self, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("MONOSHIP_DOCKER", self.script.to_str().unwrap()),
            ("RECORD_DIR", self.dir.path().to_str().unwrap()),
        ];
        env.extend_from_slice(more);
        env
    }
}

#[test]
fn a_named_builder_builds_every_image_with_the_runner_s_logins_and_builders() {
    let registry = Registry::start(Some(("ci", PASSWORD)));
    let _images = LocalImages(vec![registry.addr.clone()]);
    let runner = RunnerConfig::new(&serde_json::json!({
        "auths": {
            registry.addr.clone(): {"auth": auth("ci", PASSWORD)},
            "https://other.example:5000/v1/": {"username": "o", "password": "other-pass"}
        }
    }));
    let instances = runner.dir.path().join("buildx/instances");
    std::fs::create_dir_all(&instances).unwrap();
    std::fs::write(
        instances.join("ci-builder"),
        r#"{"Name":"ci-builder","Driver":"docker-container"}"#,
    )
    .unwrap();
    let context = runner.dir.path().join("contexts/meta/0123abcd");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("meta.json"), r#"{"Name":"builders"}"#).unwrap();
    let repo = app_repo(
        "FROM scratch\nCOPY data.txt /\n",
        "build:\n  builder: from-config\n",
    );

    // The dry run names the builder: the input (`--builder`) over `build.builder` over
    // BUILDX_BUILDER.
    for (extra, env, shown) in [
        (&["--builder", "ci-builder"][..], "from-env", "ci-builder"),
        (&[][..], "from-env", "from-config"),
    ] {
        let mut args = vec!["--dry-run"];
        args.extend_from_slice(extra);
        let run = build(
            repo.path(),
            &registry.addr,
            &args,
            &[("BUILDX_BUILDER", env)],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let commands = run.json()["dry_run"]["images"][0]["commands"].to_string();
        assert!(
            commands.contains(&format!("docker buildx build --builder {shown} --push")),
            "{commands}"
        );
    }
    let plain = app_repo("FROM scratch\nCOPY data.txt /\n", "");
    let run = build(
        plain.path(),
        &registry.addr,
        &["--dry-run"],
        &[("BUILDX_BUILDER", "from-env")],
    );
    assert!(
        run.json()["dry_run"]["images"][0]["commands"]
            .to_string()
            .contains("--builder from-env"),
        "{}",
        run.stdout
    );

    let recording = Recording::new();
    let run = build(
        plain.path(),
        &registry.addr,
        &[],
        &recording.env(&[
            ("DOCKER_CONFIG", runner.path()),
            ("BUILDX_BUILDER", "ci-builder"),
        ]),
    );
    assert_eq!(
        run.code,
        0,
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        recording.calls()
    );
    let image = only_image(&run);
    assert_eq!(image["status"], "built", "{image}");
    assert!(
        registry
            .digest("app", &content_tag(&image), Some(("ci", PASSWORD)))
            .is_some(),
        "pushed with the merged login"
    );
    let calls = recording.calls();
    assert!(calls.contains("buildx inspect ci-builder"), "{calls}");
    assert!(
        calls.contains(" buildx build --builder ci-builder --push "),
        "{calls}"
    );
    assert!(!calls.contains(PASSWORD), "no secret in argv: {calls}");
    let private = recording.dir.path().join("private");
    let merged: Value =
        serde_json::from_str(&std::fs::read_to_string(private.join("config.json")).unwrap())
            .unwrap();
    assert!(
        merged["auths"][&registry.addr]["auth"].is_string(),
        "{merged}"
    );
    assert_eq!(
        merged["auths"]["other.example:5000"]["auth"],
        auth("o", "other-pass"),
        "every login of the runner is merged in"
    );
    assert!(private.join("buildx/instances/ci-builder").is_file());
    assert!(
        private.join("contexts/meta/0123abcd/meta.json").is_file(),
        "the contexts the builder's nodes may name"
    );
    assert!(!runner.dir.path().join("buildx/refs").exists());
    assert!(!run.stderr.contains(PASSWORD) && !run.stdout.contains(PASSWORD));
}

#[test]
fn a_named_builder_that_cannot_be_found_is_exit_2_with_nothing_built() {
    let registry = Registry::start(None);
    let runner = RunnerConfig::new(&serde_json::json!({}));
    let repo = app_repo("FROM scratch\nCOPY data.txt /\n", "");
    let recording = Recording::new();
    let name = format!("gone{}", registry.addr.rsplit(':').next().unwrap());
    let run = build(
        repo.path(),
        &registry.addr,
        &["--builder", &name],
        &recording.env(&[("DOCKER_CONFIG", runner.path())]),
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains(&format!("the buildx builder `{name}` cannot be found"))
            && run
                .stderr
                .contains("DOCKER_CONFIG: ${{ runner.temp }}/docker"),
        "{}",
        run.stderr
    );
    let calls = recording.calls();
    assert!(!calls.contains("buildx build"), "{calls}");
    assert!(registry.catalog().is_empty(), "nothing was pushed");

    // A docker-container builder's node still on the daemon: its record is re-created and
    // the build goes through it.
    let image = format!("monoship-h4-node-{name}:1");
    let empty = tempfile::tempdir().unwrap();
    let tar = empty.path().join("empty.tar");
    let made = Command::new("tar")
        .arg("-C")
        .arg(empty.path())
        .arg("-cf")
        .arg(&tar)
        .arg("--files-from=/dev/null")
        .status()
        .unwrap();
    assert!(made.success());
    docker_ok(&["import", tar.to_str().unwrap(), &image]);
    let container = format!("buildx_buildkit_{name}0");
    let _cleanup = Container(container.clone(), image.clone());
    docker_ok(&["create", "--name", &container, &image, "/none"]);
    let run = build(
        repo.path(),
        &registry.addr,
        &["--builder", &name],
        &recording.env(&[("DOCKER_CONFIG", runner.path())]),
    );
    let _images = LocalImages(vec![registry.addr.clone()]);
    assert_eq!(
        run.code,
        0,
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        recording.calls()
    );
    let calls = recording.calls();
    assert!(
        calls.contains(&format!(
            "buildx create --name {name} --driver docker-container --node {name}0"
        )),
        "{calls}"
    );
    assert!(
        calls.contains(&format!("buildx build --builder {name} --push")),
        "{calls}"
    );
}

/// Removes a container and its image when dropped.
struct Container(String, String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("/usr/bin/docker")
            .args(["rm", "-f", &self.0])
            .output();
        let _ = Command::new("/usr/bin/docker")
            .args(["rmi", "-f", &self.1])
            .output();
    }
}

/// docker/setup-buildx-action (`use: true`) and `docker buildx use` record the builder they
/// chose in `buildx/current`, for one daemon endpoint or for all. With no builder named,
/// monoship builds every image with that builder when its record is there, as the docker CLI
/// would; a choice made for another endpoint, a record that is missing, or buildx's default
/// leave the images to the daemon's BuildKit through the Engine API.
#[test]
fn buildx_s_current_builder_in_the_runner_s_config_builds_when_none_is_named() {
    let registry = Registry::start(None);
    let runner = RunnerConfig::new(&serde_json::json!({}));
    let buildx = runner.dir.path().join("buildx");
    std::fs::create_dir_all(buildx.join("instances")).unwrap();
    std::fs::write(
        buildx.join("instances/ci-builder"),
        r#"{"Name":"ci-builder","Driver":"docker-container"}"#,
    )
    .unwrap();
    let repo = app_repo("FROM scratch\nCOPY data.txt /\n", "");
    let dry_run = |current: &str, env: &[(&str, &str)]| {
        std::fs::write(buildx.join("current"), current).unwrap();
        let mut vars = vec![("DOCKER_CONFIG", runner.path())];
        vars.extend_from_slice(env);
        let run = build(repo.path(), &registry.addr, &["--dry-run"], &vars);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let commands = run.json()["dry_run"]["images"][0]["commands"].to_string();
        (commands, run.stderr)
    };
    let on_socket = r#"{"Key":"unix:///var/run/docker.sock","Name":"ci-builder","Global":false}"#;
    let (commands, stderr) = dry_run(on_socket, &[]);
    assert!(
        commands.contains("docker buildx build --builder ci-builder --push"),
        "{commands}"
    );
    assert!(
        stderr.contains("buildx's current builder `ci-builder`"),
        "{stderr}"
    );
    // A builder named wins over buildx's choice.
    let (commands, _) = dry_run(on_socket, &[("BUILDX_BUILDER", "other")]);
    assert!(commands.contains("--builder other --push"), "{commands}");
    let global = r#"{"Key":"tcp://elsewhere:2375","Name":"ci-builder","Global":true}"#;
    let (commands, _) = dry_run(global, &[]);
    assert!(commands.contains("--builder ci-builder"), "{commands}");
    for current in [
        r#"{"Key":"tcp://elsewhere:2375","Name":"ci-builder","Global":false}"#,
        r#"{"Key":"unix:///var/run/docker.sock","Name":"gone","Global":false}"#,
        r#"{"Key":"unix:///var/run/docker.sock","Name":"","Global":false}"#,
        "not json",
    ] {
        let (commands, stderr) = dry_run(current, &[]);
        assert!(
            commands.contains("engine: POST /build?") && !commands.contains("buildx"),
            "{current}: {commands}"
        );
        assert!(!stderr.contains("current builder"), "{current}: {stderr}");
    }
}
