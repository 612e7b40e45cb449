//! The cluster is checked before anything is pushed: unreachable, untrusted or refusing
//! servers, missing namespaces, workloads and containers, and missing permissions
//! (SelfSubjectAccessReviews answered by the simulator's denials) all stop `ship` with exit 2,
//! one message listing every problem, an empty registry and untouched workloads.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube_sim::{Denial, Fault, Sim, SimOptions};
use serde_json::Value;

use crate::ship::{image_of, setup, ship, ship_args, Env};
use crate::support::{free_port, monoship, Run};

/// `ship` on `env` to the cluster of `kubeconfig`.
fn ship_to(env: &Env, kubeconfig: &std::path::Path) -> Run {
    let args = ship_args(env, kubeconfig.to_str().unwrap(), &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    monoship(env.repo.path(), &args, &BTreeMap::new())
}

/// `ship` must stop with exit 2 before pushing, the workloads as they were.
fn assert_stopped(env: &Env, run: &Run) {
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        env.registry.catalog().is_empty(),
        "nothing was pushed: {:?}\n{}",
        env.registry.catalog(),
        run.stderr
    );
    for name in ["cart", "frontend"] {
        if env.sim.get("deployments", "shop", name).unwrap().is_some() {
            assert!(image_of(env, name).ends_with(":old"), "{name} untouched");
        }
    }
    assert!(
        env.sim
            .get("deployments", "shop", "checkout")
            .unwrap()
            .is_none(),
        "no manifest was applied"
    );
}

/// The shop's config with `from` replaced by `to`.
fn edit_config(env: &mut Env, from: &str, to: &str) {
    let path = env.repo.path().join(".github/monoship.yml");
    let config = std::fs::read_to_string(&path).unwrap();
    assert!(config.contains(from), "{config}");
    env.repo
        .write(".github/monoship.yml", &config.replacen(from, to, 1));
    env.repo.commit("config");
}

#[test]
fn every_cluster_problem_is_listed_before_anything_is_pushed() {
    let mut env = setup(None);
    edit_config(
        &mut env,
        "      - workload: deployment/cart\n        namespace: shop\n",
        "      - workload: deployment/cart\n        namespace: shop\n        container: sidecar\n",
    );
    edit_config(
        &mut env,
        "      - workload: deployment/frontend\n        namespace: shop\n",
        "      - workload: deployment/frontend\n        namespace: staging\n",
    );
    env.sim
        .deny(Denial::new("patch", "deployments").namespace("shop"));
    env.sim.deny(Denial::new("watch", "pods"));
    let run = ship(&env, &[]);
    assert_stopped(&env, &run);
    for problem in [
        "cannot take this deploy; nothing was pushed",
        "service cart: deployment/shop/cart has no container \"sidecar\" (it has cart); fix `container` in the config",
        "service frontend: namespace \"staging\" does not exist",
        "service cart: the credentials may not patch deployments.apps \"cart\" in namespace \"shop\"",
        // checkout's manifests are applied server-side: a patch of its Deployment.
        "service checkout: the credentials may not patch deployments.apps \"checkout\" in namespace \"shop\"",
        "may not watch pods in namespace \"shop\"",
    ] {
        assert!(run.stderr.contains(problem), "{problem}:\n{}", run.stderr);
    }
}

#[test]
fn a_missing_workload_or_an_unserved_kind_stops_ship_before_pushing() {
    let mut env = setup(None);
    env.sim.delete("deployments", "shop", "frontend").unwrap();
    env.repo.write(
        "deploy/checkout/widget.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: checkout\n",
    );
    env.repo.commit("a custom resource the cluster lacks");
    let run = ship(&env, &[]);
    assert_stopped(&env, &run);
    for problem in [
        "service frontend: deployment \"frontend\" does not exist in namespace \"shop\"",
        "service checkout: the cluster does not serve example.com/v1 Widget (deploy/checkout/widget.yaml:1)",
    ] {
        assert!(run.stderr.contains(problem), "{problem}:\n{}", run.stderr);
    }
}

#[test]
fn refused_credentials_stop_ship_before_pushing() {
    let env = setup(None);
    let guarded = Sim::start_blocking(SimOptions {
        token: Some("the-right-token".into()),
        ..SimOptions::default()
    })
    .unwrap();
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        kubeconfig.path(),
        kube_sim::kubeconfig_yaml(&guarded.url(), Some("a-revoked-token"), "shop"),
    )
    .unwrap();
    let run = ship_to(&env, kubeconfig.path());
    assert_stopped(&env, &run);
    assert!(
        run.stderr.contains(&format!(
            "the cluster at {} refused the credentials (401",
            guarded.url()
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("a-revoked-token"), "{}", run.stderr);
}

/// `openssl s_server` with a fresh self-signed certificate: an HTTPS API server whose
/// certificate no kubeconfig here trusts. Killed on drop.
struct TlsServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    fn start() -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
            .arg("-cert")
            .arg(dir.path().join("cert.pem"))
            .arg("-key")
            .arg(dir.path().join("key.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "s_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsServer {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_ca_that_does_not_match_stops_ship_before_pushing() {
    let env = setup(None);
    let server = TlsServer::start();
    // Another self-signed certificate as the CA: not the one the server presents.
    let other = TlsServer::start();
    let ca = std::fs::read(other._dir.path().join("cert.pem")).unwrap();
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    let url = format!("https://127.0.0.1:{}", server.port);
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    let doc: Value = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": url, "certificate-authority-data": ca}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    });
    std::fs::write(kubeconfig.path(), doc.to_string()).unwrap();
    let run = ship_to(&env, kubeconfig.path());
    assert_stopped(&env, &run);
    assert!(
        run.stderr
            .contains(&format!("the CA does not match the certificate of {url}")),
        "{}",
        run.stderr
    );
}

#[test]
fn a_cluster_without_access_reviews_is_a_warning_and_the_ship_goes_on() {
    let env = setup(None);
    env.sim.inject_fault(
        Fault::new(
            404,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        )
        .times(1000),
    );
    let run = ship(&env, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("does not answer SelfSubjectAccessReviews (the server could not find the requested resource (404 NotFound))"),
        "{}",
        run.stderr
    );
    assert!(
        image_of(&env, "cart").contains("@sha256:"),
        "cart was deployed"
    );
}
