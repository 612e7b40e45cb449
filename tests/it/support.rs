//! Test fixtures: throwaway git repositories and a way to run the real binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A git repository in a temp dir, committed with fixed identities and dates.
pub struct Repo {
    pub dir: tempfile::TempDir,
    ticks: u32,
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repo { dir, ticks: 0 };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// Adopts an existing clone.
    pub fn attach(dir: tempfile::TempDir) -> Repo {
        Repo { dir, ticks: 100 }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let mut git = self.git_command();
        git.args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.path());
        checked_stdout(&mut git)
    }

    /// `git -C <repo>` with a fixed identity and no commit signing.
    fn git_command(&self) -> Command {
        let mut git = Command::new("git");
        git.arg("-C").arg(self.path()).args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ]);
        git
    }

    /// A clone of this repository (`git clone -q`, then `options`) in a new temp dir. The
    /// source is a `file://` URL, so options such as `--depth 1` are honoured.
    pub fn clone_with(&self, options: &[&str]) -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("file://{}", self.path().display());
        checked_stdout(
            Command::new("git")
                .args(["clone", "-q"])
                .args(options)
                .arg(url)
                .arg(dir.path()),
        );
        Repo::attach(dir)
    }

    pub fn write(&self, path: &str, contents: &str) -> &Repo {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
        self
    }

    pub fn remove(&self, path: &str) -> &Repo {
        std::fs::remove_file(self.path().join(path)).unwrap();
        self
    }

    /// Stages everything and commits; returns the new commit id.
    pub fn commit(&mut self, message: &str) -> String {
        self.ticks += 1;
        // One minute per commit; an adopted clone starts later than anything it came from.
        let date = format!(
            "2024-01-01T{:02}:{:02}:00Z",
            self.ticks / 60,
            self.ticks % 60
        );
        self.git(&["add", "-A"]);
        checked_stdout(
            self.git_command()
                .args(["commit", "-q", "--allow-empty", "-m", message])
                .env("GIT_AUTHOR_DATE", &date)
                .env("GIT_COMMITTER_DATE", &date),
        );
        self.git(&["rev-parse", "HEAD"])
    }
}

/// Runs `command` and fails the test with its stderr unless it succeeds; its stdout, trimmed.
pub fn checked_stdout(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The `changed` list of a JSON plan.
    pub fn changed(&self) -> Vec<String> {
        self.json()["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// The first `::error` workflow command on stderr.
    pub fn error_annotation(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("::error "))
            .unwrap_or_else(|| panic!("no ::error line:\n{}", self.stderr))
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_monoship"))
}

/// The `monoship` command with `args` in `dir`: a clean environment plus `env`, no stdin,
/// stdout and stderr piped.
pub fn monoship_command(dir: &Path, args: &[&str], env: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args).current_dir(dir).env_clear();
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `monoship` with `args` in `dir`, a clean environment plus `env`, bounded in time.
pub fn monoship(dir: &Path, args: &[&str], env: &BTreeMap<String, String>) -> Run {
    let child = monoship_command(dir, args, env)
        .spawn()
        .expect("monoship starts");
    wait_bounded(child, Duration::from_secs(120))
}

pub fn wait_bounded(child: std::process::Child, limit: Duration) -> Run {
    // Read the pipes on another thread so a chatty child never blocks on a full pipe.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out: Output = match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for child"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("process did not finish within {limit:?}");
        }
    };
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `monoship plan --format json` with extra args, no extra environment.
pub fn plan_json(dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["plan", "--format", "json"];
    args.extend_from_slice(extra);
    monoship(dir, &args, &BTreeMap::new())
}

/// A real registry (Debian's `docker-registry`, distribution 2.8) on a free loopback port,
/// plain or with htpasswd auth; stopped when dropped.
pub struct Registry {
    pub addr: String,
    /// The htpasswd account, which [`Registry::catalog`] reads with.
    auth: Option<(String, String)>,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils) is installed by .ci/run");
            assert!(out.status.success());
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed by .ci/run (apt-get install docker-registry)");
        let registry = Registry {
            addr,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            child,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `Docker-Content-Digest` of a tag, asked with curl (not with monoship's own client).
    pub fn digest(
        &self,
        repository: &str,
        tag: &str,
        auth: Option<(&str, &str)>,
    ) -> Option<String> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sI", "--max-time", "10", "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"]);
        if let Some((u, p)) = auth {
            cmd.args(["-u", &format!("{u}:{p}")]);
        }
        let out = cmd
            .arg(format!(
                "http://{}/v2/{repository}/manifests/{tag}",
                self.addr
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !text.starts_with("HTTP/1.1 200") {
            return None;
        }
        text.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("docker-content-digest: ")
                .map(|d| d.trim().to_string())
        })
    }

    /// Repositories in the registry.
    pub fn catalog(&self) -> Vec<String> {
        let mut curl = Command::new("curl");
        curl.args(["-sf", "--max-time", "10"]);
        if let Some((user, password)) = &self.auth {
            curl.arg("-u").arg(format!("{user}:{password}"));
        }
        let out = curl
            .arg(format!("http://{}/v2/_catalog", self.addr))
            .output()
            .unwrap();
        // A refused or broken answer must fail the test, not read as an empty registry.
        assert!(out.status.success(), "GET /v2/_catalog of {}", self.addr);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["repositories"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The bundled example shop (examples/shop) committed into a fresh repository.
pub fn example_shop() -> (Repo, String) {
    let mut repo = Repo::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop");
    let status = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", src.display()))
        .arg(repo.path())
        .status()
        .unwrap();
    assert!(status.success());
    let base = repo.commit("the shop");
    (repo, base)
}

/// An environment for [`monoship`] from string pairs.
pub fn env_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The config of the shop most tests plan: `api` built from the repository root, `web` from
/// its own folder, `worker` a script under `services/worker/`; each field adds one thing, and
/// the default adds none.
#[derive(Clone, Copy, Default)]
pub struct ShopConfig {
    /// `web` depends on `api`.
    pub web_depends_on_api: bool,
    /// `worker`'s paths leave out Markdown files.
    pub worker_skips_markdown: bool,
    /// A fourth service, `docs`, of `docs/**`.
    pub docs: bool,
    /// `worker` depends on a group `shared` of `libs/**`.
    pub shared_libs: bool,
}

impl ShopConfig {
    /// The config as `.github/monoship.yml` holds it.
    pub fn yaml(self) -> String {
        let mut yaml = String::from(
            "services:\n  api:\n    dockerfile: services/api/Dockerfile\n    context: .\n  web:\n    dockerfile: services/web/Dockerfile\n",
        );
        if self.web_depends_on_api {
            yaml.push_str("    depends_on: [api]\n");
        }
        yaml.push_str("  worker:\n    paths: [\"services/worker/**\"");
        if self.worker_skips_markdown {
            yaml.push_str(", \"!**/*.md\"");
        }
        yaml.push_str("]\n");
        if self.shared_libs {
            yaml.push_str("    depends_on: [shared]\n");
        }
        if self.docs {
            yaml.push_str("  docs:\n    paths: [\"docs/**\"]\n");
        }
        if self.shared_libs {
            yaml.push_str("groups:\n  shared:\n    paths: [\"libs/**\"]\n");
        }
        yaml
    }
}

/// api (built from the root, copying `pb/`), web (built from its own folder) and worker (a
/// script) as `config` declares them; written, not committed.
pub fn three_services(config: &str) -> Repo {
    let repo = Repo::new();
    repo.write(".github/monoship.yml", config)
        .write("services/api/Dockerfile", "FROM scratch\nCOPY pb/ /pb/\n")
        .write("services/web/Dockerfile", "FROM scratch\nCOPY . /site\n")
        .write("services/web/index.html", "hi\n")
        .write("services/worker/job.sh", "echo\n")
        .write("pb/api.proto", "p\n");
    repo
}

/// A webhook payload as GitHub sent it, vendored in `tests/fixtures/github-events`.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/github-events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `payload` with each `(recorded, test)` pair of commit ids swapped, so that it points at a
/// test repository's commits.
pub fn with_commits(payload: &Value, commits: &[(&str, &str)]) -> Value {
    let text = commits
        .iter()
        .fold(payload.to_string(), |text, (recorded, test)| {
            text.replace(recorded, test)
        });
    serde_json::from_str(&text).unwrap()
}

/// The `pull_request.{action}` fixture pointed at `base` and `head`.
pub fn pr_payload(action: &str, base: &str, head: &str) -> Value {
    with_commits(
        &fixture(&format!("pull_request.{action}.json")),
        &[
            ("f95f852bd8fca8fcc58a9a2d6c842781e32a215e", base),
            ("ec26c3e57ca3a959ca5aad62de7213c562f8c821", head),
        ],
    )
}

/// What an action step left for the runner to read back.
pub struct ActionRun {
    pub run: Run,
    /// `$GITHUB_OUTPUT`, parsed.
    pub outputs: Vec<(String, String)>,
    /// `$GITHUB_OUTPUT` as written (absent: empty).
    pub output_file: String,
    pub summary: String,
}

impl ActionRun {
    /// Reads the outputs and summary files `run` wrote (absent: empty).
    pub fn read(run: Run, output: &Path, summary: &Path) -> ActionRun {
        let output_file = std::fs::read_to_string(output).unwrap_or_default();
        ActionRun {
            run,
            outputs: monoship::report::outputs::parse(&output_file),
            output_file,
            summary: std::fs::read_to_string(summary).unwrap_or_default(),
        }
    }

    pub fn output(&self, name: &str) -> &str {
        self.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no output {name}: {:?}\n{}", self.outputs, self.run.stderr))
    }

    /// The first line of stderr that starts with `prefix`, such as `::warning`.
    pub fn stderr_line(&self, prefix: &str) -> &str {
        self.run
            .stderr
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line:\n{}", self.run.stderr))
    }
}

/// Runs the binary as the runner starts an action step: `event` with `payload` at `sha`, the
/// workspace `workspace`, repository octo/shop and `INPUT_COMMAND=plan`; `env` comes last and
/// may override any of these.
pub fn run_action(
    workspace: &Path,
    event: &str,
    payload: &Value,
    sha: &str,
    env: &[(&str, &str)],
) -> ActionRun {
    let files = tempfile::tempdir().unwrap();
    let event_path = files.path().join("event.json");
    std::fs::write(&event_path, payload.to_string()).unwrap();
    let (output, summary) = (files.path().join("output"), files.path().join("summary"));
    let mut vars = env_map(&[
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_EVENT_NAME", event),
        ("GITHUB_SHA", sha),
        ("GITHUB_REPOSITORY", "octo/shop"),
        ("INPUT_COMMAND", "plan"),
        ("GITHUB_EVENT_PATH", &event_path.display().to_string()),
        ("GITHUB_WORKSPACE", &workspace.display().to_string()),
        ("GITHUB_OUTPUT", &output.display().to_string()),
        ("GITHUB_STEP_SUMMARY", &summary.display().to_string()),
    ]);
    vars.extend(env_map(env));
    let run = monoship(Path::new("/"), &[], &vars);
    ActionRun::read(run, &output, &summary)
}

/// `text` with the short ids of `base` and `head` named, so a snapshot holds whichever
/// commits a test makes.
pub fn with_commit_names(text: &str, base: &str, head: &str) -> String {
    text.replace(&base[..12], "{base}")
        .replace(&head[..12], "{head}")
}

/// Runs `docker` with `args`, bounded in time; fails the test unless it succeeds.
pub fn docker_ok(args: &[&str]) -> Run {
    let child = Command::new("docker")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker runs");
    let run = wait_bounded(child, Duration::from_secs(120));
    assert_eq!(run.code, 0, "docker {args:?}: {}", run.stderr);
    run
}

/// A base image with a shell, pushed to `registry` as `base/busybox:1`: a root file system of
/// Debian's busybox-static (`/bin/busybox`, `/bin/sh` linking to it), `docker import`ed, since
/// nothing can be pulled from outside. The daemon treats loopback registries as insecure.
pub fn busybox_base(registry: &Registry) -> String {
    busybox_base_with(registry, None)
}

/// [`busybox_base`] for a registry with htpasswd `auth`: the push logs in with a private
/// docker config folder.
pub fn busybox_base_with(registry: &Registry, auth: Option<(&str, &str)>) -> String {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed by scripts/test.sh");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    let tar = dir.path().join("rootfs.tar");
    checked_stdout(
        Command::new("tar")
            .arg("-C")
            .arg(dir.path().join("rootfs"))
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    let reference = format!("{}/base/busybox:1", registry.addr);
    docker_ok(&["import", tar.to_str().unwrap(), &reference]);
    let config = dir.path().join("docker-config");
    let config = config.to_str().unwrap();
    if let Some((user, password)) = auth {
        let mut login = Command::new("docker")
            .args([
                "--config",
                config,
                "login",
                "-u",
                user,
                "--password-stdin",
                &registry.addr,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker runs");
        std::io::Write::write_all(&mut login.stdin.take().unwrap(), password.as_bytes()).unwrap();
        let run = wait_bounded(login, Duration::from_secs(60));
        assert_eq!(run.code, 0, "docker login: {}", run.stderr);
    }
    docker_ok(&["--config", config, "push", &reference]);
    // Builds must get it from the registry, as on a fresh runner.
    docker_ok(&["rmi", &reference]);
    reference
}

/// The bytes of `docker save` of a local image: every layer (uncompressed), its config and
/// history, for looking for strings that must not be there.
pub fn saved_image(reference: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image.tar");
    docker_ok(&["save", "-o", file.to_str().unwrap(), reference]);
    std::fs::read(file).unwrap()
}

/// The file system of a local image, exported into a temp dir.
pub fn image_files(reference: &str) -> tempfile::TempDir {
    let id = docker_ok(&["create", reference, "/bin/sh"])
        .stdout
        .trim()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("fs.tar");
    docker_ok(&["export", "-o", tar.to_str().unwrap(), &id]);
    docker_ok(&["rm", &id]);
    let root = dir.path().join("fs");
    std::fs::create_dir(&root).unwrap();
    checked_stdout(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-xf")
            .arg(&tar),
    );
    std::fs::remove_file(tar).unwrap();
    dir
}

/// The one image of a `build --format json` run.
pub fn only_image(run: &Run) -> Value {
    let images = run.json()["images"].clone();
    assert_eq!(
        images.as_array().map(Vec::len),
        Some(1),
        "{images}\n{}",
        run.stderr
    );
    images[0].clone()
}

/// The `src-…` tag of an image of a JSON report.
pub fn content_tag(image: &Value) -> String {
    image["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|t| t.starts_with("src-"))
        .expect("a content tag")
        .to_string()
}

/// Removes the daemon's images of the registries at `addrs` (`host:port`) when dropped, so
/// the shared daemon keeps nothing of a test.
pub struct LocalImages(pub Vec<String>);

impl Drop for LocalImages {
    fn drop(&mut self) {
        for addr in &self.0 {
            let filter = format!("reference={addr}/*");
            let listed = Command::new("/usr/bin/docker")
                .args(["image", "ls", "--filter", &filter, "--format"])
                .arg("{{.Repository}}:{{.Tag}}")
                .output();
            let Ok(listed) = listed else { continue };
            for image in String::from_utf8_lossy(&listed.stdout).lines() {
                let _ = Command::new("/usr/bin/docker")
                    .args(["rmi", "-f", image.trim()])
                    .output();
            }
        }
    }
}
