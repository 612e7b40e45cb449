//! SIGINT and SIGTERM in the middle of a run: nothing new starts, a build under way is
//! cancelled, a rollout under way gets its grace and is then rolled back in the simulator,
//! the report says so, the private Docker config is gone, and the exit code is 130 or 143.
//! Signals are sent with the `kill` command and `docker kill`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::container::{container_name, image};
use crate::faults::{FlakyRegistry, UploadFault};
use crate::ship::{image_of, rollout, setup, ship_args};
use crate::support::{monoship_command, Registry, Repo, Run};

/// The binary started as `support::monoship` starts it, but not waited for.
fn spawn(dir: &Path, args: &[&str], env: &BTreeMap<String, String>) -> Child {
    monoship_command(dir, args, env)
        .spawn()
        .expect("monoship starts")
}

/// A running process whose output is read as it comes.
struct Running {
    pid: u32,
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
    stderr: String,
    stdout: std::thread::JoinHandle<String>,
}

impl Running {
    fn new(mut child: Child) -> Running {
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        Running {
            pid: child.id(),
            child,
            stderr_lines: rx,
            stderr: String::new(),
            stdout,
        }
    }

    /// Reads stderr until a line contains `needle`, at most `limit`.
    fn wait_for_line(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push_str(&line);
                    self.stderr.push('\n');
                    if line.contains(needle) {
                        return;
                    }
                }
                Err(_) => {
                    self.kill_hard();
                    panic!("no line with {needle:?} within {limit:?}:\n{}", self.stderr);
                }
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the exit, at most `limit`.
    fn finish(mut self, limit: Duration) -> Run {
        let deadline = Instant::now() + limit;
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                self.kill_hard();
                while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(1)) {
                    self.stderr.push_str(&line);
                    self.stderr.push('\n');
                }
                panic!("did not exit within {limit:?}:\n{}", self.stderr);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(5)) {
            self.stderr.push_str(&line);
            self.stderr.push('\n');
        }
        Run {
            code,
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr,
        }
    }
}

/// An HTTP server whose one file never finishes downloading: a build that `ADD`s it is under
/// way for as long as the test wants. The receivers get a message when the download starts,
/// and when the downloader hangs up (the build was cancelled).
fn endless_download() -> (String, mpsc::Receiver<()>, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/big.bin", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (tx, closed_tx) = (tx.clone(), closed_tx.clone());
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = tx.send(());
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000000\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    let _ = closed_tx.send(());
                    return;
                }
                // A byte every 100 ms, for at most two minutes.
                for _ in 0..1200 {
                    if stream.write_all(b"x").is_err() {
                        let _ = closed_tx.send(());
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    (url, rx, closed)
}

/// A repository with one service, `slow`, whose image `ADD`s `url`.
fn slow_service(url: &str) -> (Repo, String) {
    let mut repo = Repo::new();
    repo.write(
        ".github/monoship.yml",
        "services:\n  slow:\n    dockerfile: Dockerfile\n",
    )
    .write("Dockerfile", &format!("FROM scratch\nADD {url} /big.bin\n"));
    let head = repo.commit("slow");
    (repo, head)
}

/// Entries of `dir` whose name starts with `prefix`.
fn entries(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn sigterm_during_a_rollout_rolls_it_back_after_the_grace_and_exits_143() {
    // cart's new pods never get ready (until a 20 s progress deadline the grace ends first);
    // frontend depends on cart, so its batch would start after cart's.
    let env = setup(Some("ProgressDeadlineExceeded"));
    let old = image_of(&env, "cart");
    let kubeconfig = env.kubeconfig.path().display().to_string();
    let args = ship_args(&env, &kubeconfig, &["--interrupt-grace", "2"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut running = Running::new(spawn(env.repo.path(), &args, &BTreeMap::new()));
    running.wait_for_line("cart: set container cart to", Duration::from_secs(90));
    let signalled = Instant::now();
    running.signal("TERM");
    let run = running.finish(Duration::from_secs(60));
    assert_eq!(run.code, 143, "{}\n{}", run.stdout, run.stderr);
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "{:?}",
        signalled.elapsed()
    );
    let report = run.json();
    let cart = rollout(&report, "cart");
    assert_eq!(cart["status"], "rolled-back", "{cart}");
    let reason = cart["reason"].as_str().unwrap();
    assert!(
        reason
            .starts_with("interrupted by SIGTERM: the rollout did not finish within the 2s grace"),
        "{reason}"
    );
    assert!(
        reason.ends_with(&format!("rolled back to {old}")),
        "{reason}"
    );
    assert_eq!(
        image_of(&env, "cart"),
        old,
        "the cluster runs the old image"
    );
    let frontend = rollout(&report, "frontend");
    assert_eq!(frontend["status"], "skipped", "{frontend}");
    assert_eq!(
        frontend["reason"], "interrupted by SIGTERM before it started",
        "{frontend}"
    );
    assert!(
        image_of(&env, "frontend").ends_with("/frontend:old"),
        "frontend was not touched"
    );
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().starts_with("interrupted by SIGTERM")),
        "{warnings:?}"
    );
}

#[test]
fn sigterm_during_a_push_cancels_it_and_pushes_no_commit_tag() {
    let registry = Registry::start(None);
    let (stalled_tx, stalled) = mpsc::channel();
    let proxy = FlakyRegistry::start(registry.addr.clone(), UploadFault::Stall(stalled_tx));
    let (mut repo, base) = crate::support::example_shop();
    repo.write("src/email/templates/welcome.txt", "stalled\n");
    let head = repo.commit("email");
    let args = [
        "build",
        "--format",
        "json",
        "--base",
        &base,
        "--registry",
        &proxy.addr,
    ];
    let running = Running::new(spawn(repo.path(), &args, &BTreeMap::new()));
    stalled
        .recv_timeout(Duration::from_secs(120))
        .expect("the push starts uploading");
    running.signal("TERM");
    let run = running.finish(Duration::from_secs(30));
    assert_eq!(run.code, 143, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let email = &report["images"][0];
    assert_eq!(email["service"], "email", "{report}");
    assert_eq!(email["status"], "failed", "{email}");
    assert_eq!(email["error"], "interrupted by SIGTERM", "{email}");
    assert_eq!(
        registry.digest("email", &head, None),
        None,
        "no commit tag was pushed"
    );
    assert!(
        report["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w
                .as_str()
                .is_some_and(|w| w.starts_with("interrupted by SIGTERM")))),
        "{report}"
    );
}

#[test]
fn sigint_during_a_build_cancels_it_in_the_daemon_and_pushes_nothing() {
    let (url, download_started, download_closed) = endless_download();
    let (repo, head) = slow_service(&url);
    let registry = Registry::start(None);
    let temp = tempfile::tempdir().unwrap();
    let vars = BTreeMap::from([("TMPDIR".to_string(), temp.path().display().to_string())]);
    let args = [
        "build",
        "--format",
        "json",
        "--services",
        "slow",
        "--registry",
        &registry.addr,
    ];
    let running = Running::new(spawn(repo.path(), &args, &vars));
    download_started
        .recv_timeout(Duration::from_secs(60))
        .expect("the build starts downloading");
    assert_eq!(
        entries(temp.path(), "monoship-docker-").len(),
        0,
        "no docker CLI config: the build goes through the Engine API"
    );
    running.signal("INT");
    let run = running.finish(Duration::from_secs(30));
    assert_eq!(run.code, 130, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let slow = &report["images"][0];
    assert_eq!(slow["service"], "slow");
    assert_eq!(slow["status"], "failed", "{slow}");
    assert_eq!(slow["error"], "interrupted by SIGINT", "{slow}");
    assert_eq!(registry.digest("slow", &head, None), None, "nothing pushed");
    assert_eq!(
        entries(temp.path(), "monoship-").len(),
        0,
        "the build folders are removed"
    );
    download_closed
        .recv_timeout(Duration::from_secs(30))
        .expect("the daemon cancels the build when monoship hangs up: the download stops");
}

/// In the action's container monoship is PID 1, which the kernel protects from signals it
/// has no handler for: without handlers `docker stop` would wait for its SIGKILL.
#[test]
fn sigterm_to_the_action_container_as_pid_1_exits_143_promptly() {
    let (url, download_started, _) = endless_download();
    let (repo, head) = slow_service(&url);
    let registry = Registry::start(None);
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("event.json"), "{}").unwrap();
    std::fs::write(files.path().join("output"), "").unwrap();
    std::fs::write(files.path().join("summary"), "").unwrap();
    let container = container_name();
    let mount = |host: &Path, inside: &str| format!("{}:{inside}", host.display());
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--name", &container.0, "--rm", "--network", "host"])
        .args(["--workdir", "/github/workspace"])
        .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
        .args(["-v", &mount(repo.path(), "/github/workspace")])
        .args(["-v", &mount(files.path(), "/github/files")]);
    for var in [
        "GITHUB_ACTIONS=true".to_string(),
        "GITHUB_EVENT_NAME=workflow_dispatch".into(),
        "GITHUB_EVENT_PATH=/github/files/event.json".into(),
        "GITHUB_WORKSPACE=/github/workspace".into(),
        "GITHUB_REPOSITORY=octo/shop".into(),
        "GITHUB_OUTPUT=/github/files/output".into(),
        "GITHUB_STEP_SUMMARY=/github/files/summary".into(),
        "GITHUB_API_URL=http://127.0.0.1:9".into(),
        format!("GITHUB_SHA={head}"),
        "INPUT_COMMAND=build".into(),
        "INPUT_SERVICES=slow".into(),
        "INPUT_COMMENT=false".into(),
        format!("INPUT_REGISTRY={}", registry.addr),
    ] {
        cmd.args(["-e", &var]);
    }
    let child = cmd
        .arg(image())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker runs");
    let running = Running::new(child);
    download_started
        .recv_timeout(Duration::from_secs(90))
        .expect("the build in the container starts downloading");
    let signalled = Instant::now();
    let kill = Command::new("docker")
        .args(["kill", "--signal", "TERM", &container.0])
        .output()
        .unwrap();
    assert!(kill.status.success(), "{kill:?}");
    // Without a handler the download (two minutes) would go on: 60 s leaves room for a busy
    // daemon to remove the container.
    let run = running.finish(Duration::from_secs(60));
    eprintln!(
        "the container exited {:.1?} after SIGTERM",
        signalled.elapsed()
    );
    assert_eq!(run.code, 143, "{}\n{}", run.stdout, run.stderr);
    let outputs = std::fs::read_to_string(files.path().join("output")).unwrap();
    let summary = std::fs::read_to_string(files.path().join("summary")).unwrap();
    assert!(summary.contains("interrupted by SIGTERM"), "{summary}");
    assert!(
        outputs.contains("images"),
        "outputs are still written:\n{outputs}"
    );
    drop(container);
}
