//! Faults injected into the real components while `ship` runs: API server errors, a Docker
//! daemon that goes away mid-build, a registry that drops a connection mid-push. For each,
//! what monoship reports must be what happened: checked against the cluster and registry.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kube_sim::Fault;

use crate::ship::{image_of, rollout, setup, ship, ship_with};

const CART: &str = "/apis/apps/v1/namespaces/shop/deployments/cart";

#[test]
fn api_server_errors_on_the_patch_are_retried_and_the_deploy_succeeds() {
    let env = setup(None);
    env.sim
        .inject_fault(Fault::new(500, CART).method("PATCH").times(2));
    env.sim
        .inject_fault(Fault::new(503, CART).method("GET").times(1));
    let run = ship(&env, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let plan = run.json();
    assert_eq!(rollout(&plan, "cart")["status"], "succeeded");
    let statuses: Vec<u16> = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.uri.starts_with(CART))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [500, 500, 200], "two refusals, then the patch");
    assert!(image_of(&env, "cart").contains("@sha256:"));
}

#[test]
fn an_api_server_that_keeps_failing_is_reported_failed_and_nothing_changes() {
    let env = setup(None);
    let before = image_of(&env, "cart");
    env.sim
        .inject_fault(Fault::new(500, CART).method("PATCH").times(1000));
    let run = ship(&env, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let plan = run.json();
    let cart = rollout(&plan, "cart");
    assert_eq!(cart["status"], "failed", "{cart}");
    let reason = cart["reason"].as_str().unwrap();
    assert!(
        reason.contains("cannot patch") && reason.contains("500"),
        "{reason}"
    );
    assert_eq!(image_of(&env, "cart"), before, "cart was not changed");
    assert_eq!(
        rollout(&plan, "frontend")["status"],
        "skipped",
        "its dependency failed"
    );
    let patches = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.uri.starts_with(CART))
        .count();
    assert_eq!(patches, 4, "bounded: four attempts");
}

/// A proxy for the Docker socket that cuts every connection, and stops answering, once a
/// build has started.
struct DyingDaemon {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    builds: Arc<AtomicUsize>,
}

impl DyingDaemon {
    fn start() -> DyingDaemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let dead = Arc::new(AtomicBool::new(false));
        let builds = Arc::new(AtomicUsize::new(0));
        let (dead2, builds2) = (dead.clone(), builds.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                if dead2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (dead, builds) = (dead2.clone(), builds2.clone());
                std::thread::spawn(move || relay_until_build(client, &dead, &builds));
            }
        });
        DyingDaemon {
            path,
            _dir: dir,
            builds,
        }
    }
}

fn relay_until_build(mut client: UnixStream, dead: &AtomicBool, builds: &AtomicUsize) {
    let Ok(mut daemon) = UnixStream::connect("/var/run/docker.sock") else {
        return;
    };
    let mut upstream = daemon.try_clone().unwrap();
    let mut downstream = client.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut upstream, &mut downstream);
    });
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if String::from_utf8_lossy(&buf[..n]).contains("/build?") {
            builds.fetch_add(1, Ordering::SeqCst);
            // The daemon dies: this connection and every later one are cut.
            dead.store(true, Ordering::SeqCst);
            let _ = daemon.write_all(&buf[..n.min(64)]);
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        if daemon.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = daemon.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_docker_daemon_that_dies_mid_build_fails_the_images_and_deploys_nothing() {
    let env = setup(None);
    let daemon = DyingDaemon::start();
    let before = image_of(&env, "cart");
    let host = format!("unix://{}", daemon.path.display());
    let vars = crate::support::env_map(&[("DOCKER_HOST", host.as_str())]);
    let run = ship_with(&env, &[], &vars);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(daemon.builds.load(Ordering::SeqCst) >= 1, "a build started");
    let plan = run.json();
    for image in plan["images"].as_array().unwrap() {
        assert_eq!(image["status"], "failed", "{image}");
        assert!(
            image["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{image}"
        );
    }
    assert!(env.registry.catalog().is_empty(), "nothing was pushed");
    for r in plan["rollouts"].as_array().unwrap() {
        assert_eq!(r["status"], "skipped", "atomic: nothing deployed: {r}");
    }
    assert_eq!(image_of(&env, "cart"), before);
}

/// What a [`FlakyRegistry`] does to the first blob upload it relays.
#[derive(Clone)]
pub(crate) enum UploadFault {
    /// Sends half of it, then drops both connections.
    Cut,
    /// Holds it forever, telling the sender once it does.
    Stall(std::sync::mpsc::Sender<()>),
}

/// A TCP proxy for the registry that spoils the first blob upload.
pub(crate) struct FlakyRegistry {
    pub addr: String,
    cuts: Arc<AtomicUsize>,
}

impl FlakyRegistry {
    pub(crate) fn start(upstream: String, fault: UploadFault) -> FlakyRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cuts = Arc::new(AtomicUsize::new(0));
        let cuts2 = cuts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let (upstream, cuts, fault) = (upstream.clone(), cuts2.clone(), fault.clone());
                std::thread::spawn(move || {
                    relay_spoiling_first_upload(client, &upstream, &cuts, &fault)
                });
            }
        });
        FlakyRegistry { addr, cuts }
    }
}

fn relay_spoiling_first_upload(
    mut client: TcpStream,
    upstream: &str,
    cuts: &AtomicUsize,
    fault: &UploadFault,
) {
    let Ok(mut registry) = TcpStream::connect(upstream) else {
        return;
    };
    let mut back = registry.try_clone().unwrap();
    let mut to_client = client.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back, &mut to_client);
    });
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let head = String::from_utf8_lossy(&buf[..n.min(200)]).to_string();
        let upload = (head.starts_with("PATCH ") || head.starts_with("PUT "))
            && head.contains("/blobs/uploads/");
        if upload
            && cuts
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            match fault {
                UploadFault::Cut => {
                    let _ = registry.write_all(&buf[..n / 2]);
                    break;
                }
                UploadFault::Stall(stalled) => {
                    let _ = stalled.send(());
                    // Read on and forward nothing until the client goes away.
                    while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
                    break;
                }
            }
        }
        if registry.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = registry.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_push_cut_mid_upload_is_retried_and_the_reported_digest_is_the_registry_s() {
    let registry = crate::support::Registry::start(None);
    let flaky = FlakyRegistry::start(registry.addr.clone(), UploadFault::Cut);
    let (mut repo, base) = crate::support::example_shop();
    repo.write("src/email/templates/welcome.txt", "cut\n");
    let head = repo.commit("email");
    let run = crate::support::monoship(
        repo.path(),
        &[
            "build",
            "--format",
            "json",
            "--base",
            &base,
            "--registry",
            &flaky.addr,
        ],
        &Default::default(),
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(flaky.cuts.load(Ordering::SeqCst), 1, "an upload was cut");
    let plan = run.json();
    let images = plan["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{plan}");
    assert_eq!(images[0]["status"], "built");
    assert_eq!(
        registry.digest("email", &head, None).as_deref(),
        images[0]["digest"].as_str(),
        "the digest reported is the one the registry holds"
    );
}
