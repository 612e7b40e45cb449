//! Base images in the content key, against the real Docker daemon and real registries on
//! loopback: a base that moves under its tag rebuilds the service and the result names it; a
//! base that cannot be resolved always builds, with a warning; a pinned base costs no request.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{checked_stdout, free_port, monoship, LocalImages, Registry, Repo, Run};

/// `/usr/bin/docker` with a time bound.
fn docker(args: &[&str]) -> String {
    let mut command = Command::new("timeout");
    command.arg("180").arg("/usr/bin/docker").args(args);
    checked_stdout(&mut command)
}

/// Builds an image `FROM scratch` holding one file with `content`, tagged `reference`;
/// pushes it unless `push` is false.
fn base_image(reference: &str, content: &str, push: bool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.txt"), content).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY base.txt /base.txt\n",
    )
    .unwrap();
    docker(&["build", "-q", "-t", reference, dir.path().to_str().unwrap()]);
    if push {
        docker(&["push", "-q", reference]);
    }
}

/// GET on the registry with curl (not monoship's client): the body and the content type.
fn get(registry: &str, path: &str) -> (Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "10", "-H"])
        .arg("Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
        .args(["-w", "\n%{content_type}"])
        .arg(format!("http://{registry}/v2/{path}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {path}");
    let split = out.stdout.iter().rposition(|b| *b == b'\n').unwrap();
    let content_type = String::from_utf8_lossy(&out.stdout[split + 1..]).to_string();
    (out.stdout[..split].to_vec(), content_type)
}

/// The image config of `repository:tag` (labels, layer diff ids).
fn image_config(registry: &str, repository: &str, tag: &str) -> Value {
    let (manifest, _) = get(registry, &format!("{repository}/manifests/{tag}"));
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap();
    let (config, _) = get(registry, &format!("{repository}/blobs/{config}"));
    serde_json::from_slice(&config).unwrap()
}

/// Points `repository:to` at the manifest of `repository:from`, in the registry only: the
/// daemon's own copy of the image under `to` stays as it was.
fn move_tag(registry: &str, repository: &str, from: &str, to: &str) {
    let (manifest, content_type) = get(registry, &format!("{repository}/manifests/{from}"));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest).unwrap();
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "10", "-X", "PUT", "-H"])
        .arg(format!("Content-Type: {content_type}"))
        .arg("--data-binary")
        .arg(format!("@{}", file.path().display()))
        .arg(format!("http://{registry}/v2/{repository}/manifests/{to}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "PUT {repository}:{to}");
}

/// A repository with one service, `app`, built from `dockerfile`.
fn app_repo(dockerfile: &str) -> Repo {
    app_repo_with(dockerfile, "")
}

/// [`app_repo`] with more settings for `app` (lines indented by four spaces).
fn app_repo_with(dockerfile: &str, settings: &str) -> Repo {
    let mut repo = Repo::new();
    repo.write(
        ".github/monoship.yml",
        &format!("services:\n  app:\n    dockerfile: app/Dockerfile\n    context: .\n{settings}"),
    )
    .write("app/Dockerfile", dockerfile)
    .write("app/x.txt", "x\n");
    repo.commit("app");
    repo
}

fn build_app(repo: &Path, registry: &str) -> (Run, Value) {
    let env = Default::default();
    let args = ["build", "--format", "json", "--services", "app"];
    let run = monoship(repo, &[&args[..], &["--registry", registry]].concat(), &env);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let app = run.json()["images"][0].clone();
    assert_eq!(app["service"], "app", "{app}");
    (run, app)
}

fn base_label(registry: &str, image: &Value) -> Value {
    let digest = image["digest"].as_str().unwrap();
    let config = image_config(registry, "app", digest);
    let label = config["config"]["Labels"]["dev.monoship.base-images"]
        .as_str()
        .unwrap_or_else(|| panic!("no base-images label: {config}"));
    serde_json::from_str(label).unwrap()
}

#[test]
fn a_base_that_moved_under_its_tag_rebuilds_naming_the_base_and_then_is_reused() {
    let registry = Registry::start(None);
    let addr = registry.addr.clone();
    let _cleanup = LocalImages(vec![addr.clone()]);
    let base = format!("{addr}/base:1");
    base_image(&base, "one\n", true);
    base_image(&format!("{addr}/base:2"), "two\n", true);
    let (one, two) = (
        registry.digest("base", "1", None).unwrap(),
        registry.digest("base", "2", None).unwrap(),
    );
    let repo = app_repo(&format!("FROM {base}\nCOPY app/x.txt /x.txt\n"));

    // A dry run says which lookup it would make, and that the tag waits for it.
    let env = Default::default();
    let dry = [
        "build",
        "--dry-run",
        "--services",
        "app",
        "--registry",
        &addr,
    ];
    let dry = monoship(repo.path(), &dry, &env);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let lookup = format!("registry: HEAD {addr}/v2/base/manifests/1 (base image {base};");
    assert!(dry.stdout.contains(&lookup), "{}", dry.stdout);
    assert!(
        dry.stdout
            .contains("-<base-digests> (reuse when it exists)"),
        "{}",
        dry.stdout
    );

    let (_, first) = build_app(repo.path(), &addr);
    assert_eq!(first["status"], "built", "{first}");
    assert_eq!(base_label(&addr, &first), serde_json::json!({ &base: one }));
    assert!(first.get("bases_moved").is_none(), "{first}");

    // The tag moves in the registry only; the daemon still holds the old image as base:1.
    move_tag(&addr, "base", "2", "1");
    assert_eq!(
        registry.digest("base", "1", None).as_deref(),
        Some(two.as_str())
    );
    let (run, second) = build_app(repo.path(), &addr);
    assert_eq!(second["status"], "built", "{second}");
    assert_eq!(
        second["bases_moved"],
        serde_json::json!([{ "image": &base, "was": &one, "now": &two }])
    );
    let short = |d: &str| d[..19].to_string();
    let line = format!(
        "base image {base} moved ({} -> {})",
        short(&one),
        short(&two)
    );
    assert!(run.stderr.contains(&line), "{}", run.stderr);
    assert_eq!(
        base_label(&addr, &second),
        serde_json::json!({ &base: two })
    );
    assert_ne!(first["tags"][1], second["tags"][1], "a new content tag");
    // The builder pulled the base the registry holds now, not the daemon's old copy.
    let layers = |config: Value| config["rootfs"]["diff_ids"].clone();
    let built = layers(image_config(
        &addr,
        "app",
        second["digest"].as_str().unwrap(),
    ));
    assert_eq!(built[0], layers(image_config(&addr, "base", "2"))[0]);

    let (_, third) = build_app(repo.path(), &addr);
    assert_eq!(third["status"], "reused", "{third}");
    assert_eq!(third["digest"], second["digest"]);
}

#[test]
fn a_base_that_cannot_be_resolved_is_always_built_with_a_warning_naming_it() {
    let registry = Registry::start(None);
    let closed = free_port();
    let _cleanup = LocalImages(vec![registry.addr.clone(), format!("127.0.0.1:{closed}")]);
    // Both exist in the daemon only: one registry has no such tag, the other is not there.
    let missing = format!("{}/local-only:1", registry.addr);
    let unreachable = format!("127.0.0.1:{closed}/gone:1");
    base_image(&missing, "local\n", false);
    base_image(&unreachable, "gone\n", false);
    let repo = app_repo(&format!(
        "FROM {unreachable} AS other\nFROM {missing}\nCOPY app/x.txt /x.txt\n"
    ));
    for attempt in ["first", "second"] {
        let (run, app) = build_app(repo.path(), &registry.addr);
        assert_eq!(app["status"], "built", "{attempt}: {app}");
        let warning = app["warning"].as_str().unwrap_or_else(|| panic!("{app}"));
        assert!(
            warning.contains(&format!("`{missing}`")) && warning.contains("HTTP 404"),
            "{warning}"
        );
        assert!(
            warning.contains(&format!("`{unreachable}`")) && warning.contains("cannot reach"),
            "{warning}"
        );
        assert!(
            run.stderr.contains("warning: app: the base image"),
            "{}",
            run.stderr
        );
        assert_eq!(base_label(&registry.addr, &app), serde_json::json!({}));
    }
}

#[test]
fn a_base_pinned_by_digest_is_taken_as_is_without_a_request() {
    let bases = Registry::start(None);
    let registry = Registry::start(None);
    let _cleanup = LocalImages(vec![bases.addr.clone(), registry.addr.clone()]);
    base_image(&format!("{}/base:1", bases.addr), "pinned\n", true);
    let digest = bases.digest("base", "1", None).unwrap();
    let pinned = format!("{}/base@{digest}", bases.addr);
    // The registry of the base is gone: any request for it would fail and warn.
    drop(bases);
    let repo = app_repo(&format!("FROM {pinned}\nCOPY app/x.txt /x.txt\n"));
    let (_, first) = build_app(repo.path(), &registry.addr);
    assert_eq!(first["status"], "built", "{first}");
    assert!(first.get("warning").is_none(), "{first}");
    assert_eq!(
        base_label(&registry.addr, &first),
        serde_json::json!({ &pinned: digest })
    );
    let (_, again) = build_app(repo.path(), &registry.addr);
    assert_eq!(again["status"], "reused", "{again}");
}

/// A base on another registry, looked up anonymously, whose tag moved there while the daemon
/// kept its old copy under the same name: the build uses the digest the content tag names
/// (monoship puts it on the daemon first, for the one platform the service names), not the
/// daemon's copy.
#[test]
fn a_base_in_another_registry_is_built_at_the_digest_its_tag_names_now() {
    let bases = Registry::start(None);
    let registry = Registry::start(None);
    let _cleanup = LocalImages(vec![bases.addr.clone(), registry.addr.clone()]);
    let base = format!("{}/base:1", bases.addr);
    base_image(&base, "one\n", true);
    base_image(&format!("{}/base:2", bases.addr), "two\n", true);
    let repo = app_repo_with(
        &format!("FROM {base}\nCOPY app/x.txt /x.txt\n"),
        "    platforms: [linux/amd64]\n",
    );
    let (_, first) = build_app(repo.path(), &registry.addr);
    assert_eq!(first["status"], "built", "{first}");

    move_tag(&bases.addr, "base", "2", "1");
    let two = bases.digest("base", "2", None).unwrap();
    let (_, second) = build_app(repo.path(), &registry.addr);
    assert_eq!(second["status"], "built", "{second}");
    assert_eq!(
        base_label(&registry.addr, &second),
        serde_json::json!({ &base: two })
    );
    let layers = |config: Value| config["rootfs"]["diff_ids"].clone();
    let built = layers(image_config(
        &registry.addr,
        "app",
        second["digest"].as_str().unwrap(),
    ));
    assert_eq!(built[0], layers(image_config(&bases.addr, "base", "2"))[0]);
    // The daemon's copy of the name is now the digest the registry holds.
    let local = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &base,
    ]);
    assert!(local.contains(&two), "{local}");
}
