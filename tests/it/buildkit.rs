//! The daemon's BuildKit through the Engine API, for real: what the pushed image holds, what
//! the build saw (exactly the files the content tag covers), and what never reaches an image
//! or a log. Base images come from a busybox root file system pushed to the test registry.

use std::path::Path;

use serde_json::Value;

use crate::support::{
    busybox_base, busybox_base_with, content_tag, docker_ok, env_map, image_files, monoship,
    only_image, saved_image, Registry, Repo, Run,
};

const TOKEN: &str = "tok-Build-Arg-Value-5521";

fn build(repo: &Path, registry: &Registry, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["build", "--format", "json", "--registry", &registry.addr];
    args.extend_from_slice(extra);
    monoship(repo, &args, &env_map(env))
}

/// A repository with one service `app` in `app/`, built by the given Dockerfile; `target`
/// final, build args VERSION and TOKEN.
fn app_repo(dockerfile: &str) -> (Repo, String) {
    let mut repo = Repo::new();
    repo.write(
        ".github/monoship.yml",
        &format!("services:\n  app:\n    dockerfile: app/Dockerfile\n    target: final\n    build_args:\n      VERSION: \"1.2.3\"\n      TOKEN: \"{TOKEN}\"\n"),
    );
    repo.write("app/Dockerfile", dockerfile);
    repo.write("app/data.txt", "read through a bind mount\n");
    // Reads the build arg from its environment, so no instruction shows the value.
    repo.write(
        "app/hash-token.sh",
        "echo -n \"$TOKEN\" | sha256sum | cut -d' ' -f1 > /token.sha\n",
    );
    repo.write("app/Dockerfile.dockerignore", "ignored.txt\n");
    repo.write(
        "app/ignored.txt",
        "kept out by app/Dockerfile.dockerignore\n",
    );
    let base = repo.commit("app");
    (repo, base)
}

fn multi_stage(base: &str) -> String {
    format!(
        "FROM {base} AS build\n\
         ARG TOKEN\n\
         RUN --mount=type=bind,source=hash-token.sh,target=/hash-token.sh sh /hash-token.sh\n\
         RUN --mount=type=bind,source=data.txt,target=/data.txt cat /data.txt > /from-mount\n\
         \n\
         FROM {base} AS final\n\
         ARG VERSION\n\
         RUN echo \"$VERSION\" > /version\n\
         COPY --from=build /token.sha /from-mount /\n\
         COPY . /app/\n\
         \n\
         FROM final AS debug\n\
         RUN touch /debug\n"
    )
}

fn read(dir: &tempfile::TempDir, path: &str) -> String {
    std::fs::read_to_string(dir.path().join("fs").join(path))
        .unwrap_or_else(|e| panic!("{path} in the image: {e}"))
}

#[test]
fn buildkit_builds_the_target_with_labels_build_args_and_bind_mounts() {
    let registry = Registry::start(None);
    let base = busybox_base(&registry);
    let (repo, _) = app_repo(&multi_stage(&base));
    let head = repo.git(&["rev-parse", "HEAD"]);
    let run = build(repo.path(), &registry, &["--services", "app"], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let image = only_image(&run);
    assert_eq!(image["status"], "built", "{image}");
    let reference = format!("{}/app:{}", registry.addr, content_tag(&image));
    assert_eq!(
        registry
            .digest("app", &content_tag(&image), None)
            .as_deref(),
        image["digest"].as_str()
    );

    let inspect: Value =
        serde_json::from_str(&docker_ok(&["image", "inspect", &reference]).stdout).unwrap();
    let labels = &inspect[0]["Config"]["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        head.as_str(),
        "{labels}"
    );

    let files = image_files(&reference);
    assert_eq!(
        read(&files, "version"),
        "1.2.3\n",
        "a build arg reached RUN"
    );
    assert_eq!(read(&files, "from-mount"), "read through a bind mount\n");
    let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, TOKEN.as_bytes());
    let hex: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        read(&files, "token.sha").trim(),
        hex,
        "the build stage saw TOKEN"
    );
    assert_eq!(read(&files, "app/data.txt"), "read through a bind mount\n");
    assert!(
        !files.path().join("fs/debug").exists(),
        "the target stage, not the last"
    );
    assert!(
        !files.path().join("fs/app/ignored.txt").exists(),
        "app/Dockerfile.dockerignore keeps it out of COPY . /app/"
    );

    // TOKEN is used by a stage the image does not keep, through its environment.
    let saved = saved_image(&reference);
    assert!(
        !saved.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the build arg's value is in a layer, the config or the history"
    );
    let history = docker_ok(&["history", "--no-trunc", &reference]).stdout;
    assert!(!history.contains(TOKEN), "{history}");
    assert!(
        history.contains("buildkit.dockerfile.v0"),
        "BuildKit built it: {history}"
    );
    assert!(
        !run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN),
        "{}",
        run.stderr
    );
}

#[test]
fn a_file_the_dockerfile_ignore_excludes_changes_neither_the_image_nor_its_tag() {
    let registry = Registry::start(None);
    let (mut repo, _) = app_repo("FROM scratch AS final\nCOPY . /app/\n");
    let first = build(repo.path(), &registry, &["--services", "app"], &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let first = only_image(&first);
    let reference = format!("{}/app:{}", registry.addr, content_tag(&first));
    let files = image_files_of_scratch(&reference);
    assert!(files.contains(&"app/data.txt".to_string()), "{files:?}");
    assert!(!files.iter().any(|f| f.contains("ignored")), "{files:?}");

    repo.write("app/ignored.txt", "changed, still ignored\n");
    repo.commit("touch the ignored file");
    let again = build(repo.path(), &registry, &["--services", "app"], &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let again = only_image(&again);
    assert_eq!(content_tag(&again), content_tag(&first));
    assert_eq!(
        (&again["status"], &again["digest"]),
        (&"reused".into(), &first["digest"])
    );
}

/// The paths in an image without a shell: `docker save`'s layer tars, listed with `tar`.
fn image_files_of_scratch(reference: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("image.tar");
    std::fs::write(&saved, saved_image(reference)).unwrap();
    let unpacked = dir.path().join("image");
    std::fs::create_dir(&unpacked).unwrap();
    crate::support::checked_stdout(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(&unpacked)
            .arg("-xf")
            .arg(&saved),
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let mut files = vec![];
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        let listed = crate::support::checked_stdout(
            std::process::Command::new("tar")
                .arg("-tf")
                .arg(unpacked.join(layer.as_str().unwrap())),
        );
        files.extend(
            listed
                .lines()
                .map(|l| l.trim_start_matches("./").to_string()),
        );
    }
    files
}

/// Issue 12: the legacy builder reads no `<Dockerfile>.dockerignore`, but it reads what
/// monoship sends, which is what the content tag covers: the same files either way.
#[test]
fn the_legacy_builder_sees_the_same_files_as_buildkit() {
    let registry = Registry::start(None);
    let (repo, _) = app_repo("FROM scratch AS final\nCOPY . /app/\n");
    let run = build(
        repo.path(),
        &registry,
        &["--services", "app"],
        &[("DOCKER_BUILDKIT", "0")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let image = only_image(&run);
    assert_eq!(image["status"], "built");
    let reference = format!("{}/app:{}", registry.addr, content_tag(&image));
    let files = image_files_of_scratch(&reference);
    assert!(files.contains(&"app/data.txt".to_string()), "{files:?}");
    assert!(!files.iter().any(|f| f.contains("ignored")), "{files:?}");
    let inspect: Value =
        serde_json::from_str(&docker_ok(&["image", "inspect", &reference]).stdout).unwrap();
    assert!(
        inspect[0]["Config"]["Labels"]["org.opencontainers.image.revision"].is_string(),
        "{inspect}"
    );
    let dry = monoship(
        repo.path(),
        &[
            "build",
            "--dry-run",
            "--services",
            "app",
            "--registry",
            &registry.addr,
        ],
        &env_map(&[("DOCKER_BUILDKIT", "0")]),
    );
    assert!(
        dry.stdout.contains("POST /build?version=1&"),
        "{}",
        dry.stdout
    );
    let history = docker_ok(&["history", "--no-trunc", &reference]).stdout;
    assert!(
        !history.contains("buildkit"),
        "the legacy builder built it: {history}"
    );
}

#[test]
fn a_failing_run_step_is_annotated_on_its_dockerfile_line() {
    let registry = Registry::start(None);
    let base = busybox_base(&registry);
    let dockerfile = format!(
        "FROM {base} AS build\nRUN echo fine\nRUN echo about to fail && \\\n    exit 3\n\nFROM build AS final\nRUN true\n"
    );
    let (repo, _) = app_repo(&dockerfile);
    let files = tempfile::tempdir().unwrap();
    let env = env_map(&[
        ("GITHUB_ACTIONS", "true"),
        ("INPUT_COMMAND", "build"),
        ("INPUT_SERVICES", "app"),
        ("INPUT_REGISTRY", registry.addr.as_str()),
        ("GITHUB_WORKSPACE", repo.path().to_str().unwrap()),
        (
            "GITHUB_OUTPUT",
            files.path().join("output").to_str().unwrap(),
        ),
    ]);
    let run = monoship(Path::new("/"), &[], &env);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let annotation = run.error_annotation();
    assert!(
        annotation.starts_with("::error file=app/Dockerfile,line=3,title=app failed to build::"),
        "{annotation}"
    );
    assert!(annotation.contains("exit code: 3"), "{annotation}");
    assert!(
        run.stderr.contains("about to fail"),
        "the step's output is in the log"
    );
}

#[test]
fn several_platforms_or_the_registry_cache_without_buildx_is_exit_2() {
    let registry = Registry::start(None);
    for extra in [
        "    platforms: [linux/amd64, linux/arm64]\n",
        "build:\n  registry_cache: true\n",
    ] {
        let (mut repo, _) = app_repo("FROM scratch\nCOPY data.txt /\n");
        let config = std::fs::read_to_string(repo.path().join(".github/monoship.yml")).unwrap();
        repo.write(".github/monoship.yml", &format!("{config}{extra}"));
        repo.commit("needs buildx");
        // This machine's docker CLI has no buildx plugin.
        let run = build(repo.path(), &registry, &["--services", "app"], &[]);
        assert_eq!(run.code, 2, "{extra}: {}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr
                .contains("multi-platform builds and the registry cache need the buildx plugin"),
            "{}",
            run.stderr
        );
    }
    assert!(registry.catalog().is_empty(), "nothing was pushed");
}

#[test]
fn a_docker_host_monoship_cannot_speak_to_is_exit_2() {
    let registry = Registry::start(None);
    let (repo, _) = app_repo("FROM scratch\nCOPY data.txt /\n");
    for (name, value, says) in [
        (
            "DOCKER_HOST",
            "ssh://ci@build-host",
            "DOCKER_HOST=ssh://ci@build-host is not supported",
        ),
        ("DOCKER_TLS_VERIFY", "1", "DOCKER_TLS_VERIFY is set"),
    ] {
        let run = build(
            repo.path(),
            &registry,
            &["--services", "app"],
            &[(name, value)],
        );
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains(says), "{}", run.stderr);
    }
    assert!(registry.catalog().is_empty(), "nothing was pushed");
}

/// The registry password travels in the daemon's auth headers only: it is in no layer, no
/// history entry, and no log.
#[test]
fn a_registry_password_reaches_no_layer_history_or_log() {
    let password = "Registry-Password-In-No-Layer-3381";
    let registry = Registry::start(Some(("ci", password)));
    let (repo, _) = app_repo("FROM scratch AS final\nCOPY . /app/\n");
    let run = build(
        repo.path(),
        &registry,
        &["--services", "app", "--registry-username", "ci"],
        &[
            ("MONOSHIP_REGISTRY_PASSWORD", password),
            ("MONOSHIP_LOG", "trace"),
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let image = only_image(&run);
    let reference = format!("{}/app:{}", registry.addr, content_tag(&image));
    assert!(
        registry
            .digest("app", &content_tag(&image), Some(("ci", password)))
            .is_some(),
        "pushed with the credentials"
    );
    let saved = saved_image(&reference);
    assert!(!saved
        .windows(password.len())
        .any(|w| w == password.as_bytes()));
    let history = docker_ok(&["history", "--no-trunc", &reference]).stdout;
    assert!(!history.contains(password), "{history}");
    assert!(!run.stdout.contains(password) && !run.stderr.contains(password));
}

/// BuildKit without a client session cannot pull with credentials: a base image in the
/// registry monoship pushes to is pulled through the daemon first, with the same login.
#[test]
fn a_base_image_in_the_private_push_registry_is_pulled_with_its_login() {
    let password = "Base-Pull-Password-7730";
    let registry = Registry::start(Some(("ci", password)));
    let base = busybox_base_with(&registry, Some(("ci", password)));
    let (repo, _) = app_repo(&format!("FROM {base} AS final\nRUN echo ran > /ran\n"));
    let run = build(
        repo.path(),
        &registry,
        &["--services", "app", "--registry-username", "ci"],
        &[("MONOSHIP_REGISTRY_PASSWORD", password)],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let image = only_image(&run);
    assert_eq!(image["status"], "built", "{image}");
    let files = image_files(&format!("{}/app:{}", registry.addr, content_tag(&image)));
    assert_eq!(read(&files, "ran"), "ran\n");
    assert!(!run.stderr.contains(password));
}

/// A service whose images would land where pull-request runs push another service's images
/// (`repository: pr/app` beside `app`) is refused before anything is built or pushed.
#[test]
fn a_service_in_another_s_pull_request_repository_is_exit_2_with_nothing_pushed() {
    let registry = Registry::start(None);
    let (mut repo, _) = app_repo("FROM scratch\nCOPY data.txt /\n");
    let config = std::fs::read_to_string(repo.path().join(".github/monoship.yml")).unwrap();
    repo.write(
        ".github/monoship.yml",
        &format!("{config}  shadow:\n    dockerfile: app/Dockerfile\n    repository: pr/app\n"),
    );
    repo.commit("a service in the pull-request folder");
    let run = build(repo.path(), &registry, &["--services", "all"], &[]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let says = format!(
        "service `shadow` pushes to {}/pr/app, where pull-request runs push the images of service `app`",
        registry.addr
    );
    assert!(run.stderr.contains(&says), "{}", run.stderr);
    assert!(registry.catalog().is_empty(), "nothing was pushed");
}
