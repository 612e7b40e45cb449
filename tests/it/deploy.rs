//! Deploy against the in-process Kubernetes simulator (real HTTP), checked with the real
//! `kubectl` where it has an opinion.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube_sim::{Fault, Sim, SimOptions};
use monoship::deploy::rollout::{daemonset_status, deployment_status, statefulset_status};
use monoship::deploy::{
    deploy, parse_workload, Cluster, DeployContext, DeployRequest, RolloutResult, RolloutStatus,
    Status,
};
use serde_json::Value;

const KUBECTL: &str = "/usr/bin/kubectl";
const REPO: &str = "127.0.0.1:5000/shop/cart";
const OLD: &str = "127.0.0.1:5000/shop/cart:old";
/// The progress deadline of the seeded Deployment: short, so a failure the pods do not show
/// still ends quickly, and long enough that "early" is measurable.
const DEADLINE_SECS: u64 = 5;

fn digest(n: u8) -> String {
    format!("{REPO}@sha256:{}", format!("{n:02x}").repeat(32))
}

struct Env {
    sim: Sim,
    dir: tempfile::TempDir,
    cluster: Cluster,
}

impl Env {
    async fn start() -> Env {
        let sim = Sim::start(SimOptions {
            namespaces: vec!["shop".into()],
            tick: Duration::from_millis(50),
            ..SimOptions::default()
        })
        .await
        .expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, sim.kubeconfig("shop")).expect("kubeconfig written");
        let cluster = Cluster::from_kubeconfig(Some(&kubeconfig), None)
            .await
            .expect("cluster from kubeconfig");
        assert_eq!(cluster.default_namespace(), "shop");
        Env { sim, dir, cluster }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// An environment whose deployment `cart` runs [`OLD`], rolled out.
    async fn with_cart() -> Env {
        let env = Env::start().await;
        env.seed_deployment(&[]);
        env.rolled_out("deployments", "cart").await;
        env
    }

    /// The cart Deployment: the service's container, plus a sidecar from the same path on
    /// another registry port (which must not be touched).
    fn seed_deployment(&self, annotations: &[(&str, &str)]) {
        let annotations: String = if annotations.is_empty() {
            " {}".into()
        } else {
            annotations
                .iter()
                .map(|(k, v)| format!("\n    {k}: \"{v}\""))
                .collect()
        };
        self.sim
            .apply_yaml(&format!(
                r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cart
  namespace: shop
  annotations:{annotations}
spec:
  replicas: 2
  progressDeadlineSeconds: {DEADLINE_SECS}
  selector:
    matchLabels: {{app: cart}}
  template:
    metadata:
      labels: {{app: cart}}
    spec:
      containers:
      - name: cart
        image: {OLD}
      - name: proxy
        image: 127.0.0.1:5001/shop/cart:old
"#
            ))
            .expect("deployment applied");
    }

    fn object(&self, resource: &str, name: &str) -> Value {
        self.sim
            .get(resource, "shop", name)
            .expect("known resource")
            .unwrap_or_else(|| panic!("{resource}/{name} exists"))
    }

    /// Polls the simulator until the workload is rolled out, as kubectl judges it.
    async fn rolled_out(&self, resource: &str, name: &str) {
        let started = Instant::now();
        loop {
            if let Status::Done(_) = judge(resource, self.object(resource, name)) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{resource}/{name} did not roll out: {:?}",
                judge(resource, self.object(resource, name))
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn template_image(&self, resource: &str, name: &str, container: usize) -> String {
        self.object(resource, name)["spec"]["template"]["spec"]["containers"][container]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `kubectl rollout status`: (exit success, last line of output).
    async fn kubectl_rollout_status(&self, target: &str) -> (bool, String) {
        let run = tokio::process::Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(["-n", "shop", "rollout", "status", target, "--timeout=20s"])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("kubectl finishes")
            .expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default().to_string();
        let err = String::from_utf8_lossy(&out.stderr);
        (
            out.status.success(),
            format!("{last}{err}").trim().to_string(),
        )
    }
}

fn judge(resource: &str, object: Value) -> Status {
    match resource {
        "deployments" => deployment_status(&serde_json::from_value::<Deployment>(object).unwrap()),
        "statefulsets" => {
            statefulset_status(&serde_json::from_value::<StatefulSet>(object).unwrap())
        }
        _ => daemonset_status(&serde_json::from_value::<DaemonSet>(object).unwrap()),
    }
}

fn request(workload: &str, image: &str) -> DeployRequest {
    DeployRequest {
        service: "cart".into(),
        workload: parse_workload(workload, None, "shop").unwrap(),
        container: None,
        repository: REPO.into(),
        also_repository: None,
        image: image.into(),
        context: DeployContext {
            commit: "c0ffee".into(),
            commit_time: None,
            run_url: Some("https://ci.example/runs/7".into()),
            timeout: Duration::from_secs(20),
            rollback: true,
            force: false,
            older_than_deployed: None,
            interrupt: monoship::interrupt::Interrupt::never(),
        },
    }
}

/// `request` with its context changed by `change`.
fn request_with(
    workload: &str,
    image: &str,
    change: impl FnOnce(&mut DeployContext),
) -> DeployRequest {
    let mut req = request(workload, image);
    change(&mut req.context);
    req
}

/// Progress lines with the time each arrived.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<(Instant, String)>>>);

impl Lines {
    fn sink(&self) -> impl Fn(&str) + Send + Sync + '_ {
        move |line: &str| {
            self.0
                .lock()
                .unwrap()
                .push((Instant::now(), line.to_string()))
        }
    }

    fn text(&self) -> String {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn last(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .last()
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }

    fn first_containing(&self, needle: &str) -> Option<Instant> {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }
}

async fn run_deploy(env: &Env, req: &DeployRequest, lines: &Lines) -> RolloutResult {
    let sink = lines.sink();
    tokio::time::timeout(Duration::from_secs(60), deploy(&env.cluster, req, &sink))
        .await
        .expect("deploy returns within its own timeouts")
}

fn annotation(object: &Value, key: &str) -> Option<String> {
    object["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
async fn a_deployment_gets_the_digest_and_kubectl_agrees_it_rolled_out() {
    let env = Env::with_cart().await;

    // Note when the simulator's Deployment becomes complete, to measure how soon deploy sees it.
    let done_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done_at, stop) = (done_at.clone(), stop.clone());
        let sim = &env.sim;
        let image = digest(1);
        async move {
            while !stop.load(Ordering::SeqCst) {
                let object = sim.get("deployments", "shop", "cart").unwrap().unwrap();
                let on_new = object["spec"]["template"]["spec"]["containers"][0]["image"] == image;
                if on_new && matches!(judge("deployments", object), Status::Done(_)) {
                    done_at.lock().unwrap().get_or_insert_with(Instant::now);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let lines = Lines::default();
    let req = request("deployment/cart", &digest(1));
    let (result, ()) = tokio::join!(
        async {
            let r = run_deploy(&env, &req, &lines).await;
            stop.store(true, Ordering::SeqCst);
            (r, Instant::now())
        },
        watcher
    );
    let (result, returned_at) = result;
    assert_succeeded(&result, &lines);
    assert_eq!(result.reason, None);
    assert_eq!(result.workload, "deployment/shop/cart");
    assert_eq!(result.previous_image.as_deref(), Some(OLD));
    if let Some(done) = *done_at.lock().unwrap() {
        eprintln!(
            "measure: deploy returned {:?} after the simulator's Deployment became complete",
            returned_at.saturating_duration_since(done)
        );
    }

    let object = env.object("deployments", "cart");
    assert_eq!(env.template_image("deployments", "cart", 0), digest(1));
    assert_eq!(
        env.template_image("deployments", "cart", 1),
        "127.0.0.1:5001/shop/cart:old",
        "the other registry's image is not the service's"
    );
    assert_eq!(
        annotation(&object, "monoship.dev/commit").as_deref(),
        Some("c0ffee")
    );
    assert_eq!(
        annotation(&object, "monoship.dev/run-url").as_deref(),
        Some("https://ci.example/runs/7")
    );
    assert_eq!(
        annotation(&object, "monoship.dev/previous-image").as_deref(),
        Some(OLD)
    );
    assert!(annotation(&object, "kubernetes.io/change-cause")
        .unwrap()
        .contains(&digest(1)));

    let text = lines.text();
    assert!(
        text.contains("cart: Waiting for deployment \"cart\" rollout to finish: "),
        "{text}"
    );
    let (ok, kubectl_says) = env.kubectl_rollout_status("deployment/cart").await;
    assert!(ok, "{kubectl_says}");
    assert_eq!(format!("cart: {kubectl_says}"), lines.last());

    // Deploying the same image again patches nothing.
    let patches_before = patch_count(&env);
    let again = run_deploy(&env, &req, &Lines::default()).await;
    assert_eq!(again.status, RolloutStatus::Succeeded);
    assert!(again.reason.unwrap().starts_with("already running"));
    assert_eq!(patch_count(&env), patches_before);
}

fn patch_count(env: &Env) -> usize {
    env.sim
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count()
}

/// Deploys a digest with `fail-next` set and returns the result with the progress lines.
async fn failing_deploy(env: &Env, mode: &str, rollback: bool) -> (RolloutResult, Lines, Instant) {
    // The first rollout is the creation itself: mark only the one that follows.
    env.seed_deployment(&[]);
    env.rolled_out("deployments", "cart").await;
    env.seed_deployment(&[("sim.monoship.dev/fail-next", mode)]);
    let lines = Lines::default();
    let req = request_with("deployment/cart", &digest(2), |c| c.rollback = rollback);
    let started = Instant::now();
    let result = run_deploy(env, &req, &lines).await;
    (result, lines, started)
}

async fn assert_rolled_back(env: &Env, result: &RolloutResult, lines: &Lines) {
    assert_eq!(
        result.status,
        RolloutStatus::RolledBack,
        "{result:?}\n{}",
        lines.text()
    );
    assert_eq!(env.template_image("deployments", "cart", 0), OLD);
    let (ok, kubectl_says) = env.kubectl_rollout_status("deployment/cart").await;
    assert!(ok, "{kubectl_says}");
    assert_eq!(kubectl_says, "deployment \"cart\" successfully rolled out");
}

#[tokio::test]
async fn image_pull_back_off_fails_early_and_is_rolled_back() {
    let env = Env::start().await;
    let (result, lines, started) = failing_deploy(&env, "ImagePullBackOff", true).await;
    let reason = result.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("container \"cart\" is waiting: ErrImagePull")
            || reason.contains("container \"cart\" is waiting: ImagePullBackOff"),
        "{reason}"
    );
    assert!(
        reason.contains(&digest(2)),
        "the pull message names the image: {reason}"
    );
    let failed_after = lines.first_containing("is waiting").unwrap() - started;
    eprintln!("measure: ImagePullBackOff deploy failed {failed_after:?} after it started (progress deadline {DEADLINE_SECS} s)");
    assert!(
        failed_after < Duration::from_secs(DEADLINE_SECS) / 2,
        "detected after {failed_after:?}"
    );
    assert!(
        result
            .events
            .iter()
            .any(|e| e.contains("Failed to pull image")),
        "{:?}",
        result.events
    );
    assert_rolled_back(&env, &result, &lines).await;
}

#[tokio::test]
async fn crash_loop_back_off_fails_early_and_is_rolled_back() {
    let env = Env::with_cart().await;
    env.seed_deployment(&[("sim.monoship.dev/fail-next", "CrashLoopBackOff")]);

    // Note when a pod first shows CrashLoopBackOff in the simulator.
    let crashed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let spotter = async {
        while !stop.load(Ordering::SeqCst) {
            let pods = env.sim.list("pods", Some("shop")).unwrap();
            let crashing = pods.iter().any(|p| {
                p["status"]["containerStatuses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["state"]["waiting"]["reason"] == "CrashLoopBackOff")
            });
            if crashing {
                crashed_at.lock().unwrap().get_or_insert_with(Instant::now);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let lines = Lines::default();
    let req = request("deployment/cart", &digest(3));
    let started = Instant::now();
    let (result, ()) = tokio::join!(
        async {
            let r = run_deploy(&env, &req, &lines).await;
            stop.store(true, Ordering::SeqCst);
            r
        },
        spotter
    );
    let reason = result.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("container \"cart\" is waiting: CrashLoopBackOff"),
        "{reason}\n{}",
        lines.text()
    );
    assert!(reason.contains("last exit code 1 (Error)"), "{reason}");
    let reported = lines.first_containing("CrashLoopBackOff").unwrap();
    eprintln!(
        "measure: CrashLoopBackOff deploy failed {:?} after it started (progress deadline {DEADLINE_SECS} s)",
        reported - started
    );
    assert!(
        reported - started < Duration::from_secs(DEADLINE_SECS) / 2,
        "detected after {:?}",
        reported - started
    );
    if let Some(crashed) = *crashed_at.lock().unwrap() {
        eprintln!(
            "measure: CrashLoopBackOff reported {:?} after the simulator's pod showed it",
            reported.saturating_duration_since(crashed)
        );
    }
    assert!(
        result.events.iter().any(|e| e.contains("BackOff")),
        "{:?}",
        result.events
    );
    assert_rolled_back(&env, &result, &lines).await;
}

#[tokio::test]
async fn a_progress_deadline_fails_through_the_condition_and_is_rolled_back() {
    let env = Env::start().await;
    let (result, lines, started) = failing_deploy(&env, "ProgressDeadlineExceeded", true).await;
    assert_eq!(
        result.reason.as_deref(),
        Some("deployment \"cart\" exceeded its progress deadline"),
        "{}",
        lines.text()
    );
    assert!(started.elapsed() >= Duration::from_secs(DEADLINE_SECS));
    // The events of the new, unready pods explain it.
    assert!(
        result
            .events
            .iter()
            .any(|e| e.contains(&format!("Pulled: Container image \"{}\"", digest(2)))),
        "{:?}",
        result.events
    );
    assert_rolled_back(&env, &result, &lines).await;
}

#[tokio::test]
async fn without_rollback_a_failure_leaves_the_new_template() {
    let env = Env::start().await;
    let (result, lines, _) = failing_deploy(&env, "CreateContainerConfigError", false).await;
    assert_eq!(result.status, RolloutStatus::Failed, "{}", lines.text());
    let reason = result.reason.unwrap_or_default();
    assert!(
        reason.contains("CreateContainerConfigError (secret \"cart-config\" not found)"),
        "{reason}"
    );
    assert_eq!(env.template_image("deployments", "cart", 0), digest(2));
}

#[tokio::test]
async fn a_dropped_watch_is_resumed() {
    let env = Env::with_cart().await;
    let done = AtomicBool::new(false);
    let lines = Lines::default();
    let req = request("deployment/cart", &digest(4));
    let (result, ()) = tokio::join!(
        async {
            let r = run_deploy(&env, &req, &lines).await;
            done.store(true, Ordering::SeqCst);
            r
        },
        async {
            while !done.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(120)).await;
                env.sim.drop_watches();
            }
        }
    );
    assert_succeeded(&result, &lines);
    let watches = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.uri.contains("/deployments?") && r.uri.contains("watch=true"))
        .count();
    assert!(watches >= 2, "the watch was opened {watches} times");
}

#[tokio::test]
async fn a_conflict_on_the_patch_is_retried() {
    let env = Env::with_cart().await;
    env.sim.inject_fault(
        Fault::new(409, "/apis/apps/v1/namespaces/shop/deployments/cart")
            .method("PATCH")
            .times(1),
    );
    let result = run_deploy(
        &env,
        &request("deployment/cart", &digest(5)),
        &Lines::default(),
    )
    .await;
    assert_eq!(result.status, RolloutStatus::Succeeded, "{result:?}");
    let patches: Vec<u16> = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.status)
        .collect();
    assert_eq!(patches, [409, 200]);
    assert_eq!(env.template_image("deployments", "cart", 0), digest(5));
}

#[tokio::test]
async fn an_older_commit_is_skipped_unless_forced() {
    let env = Env::start().await;
    env.seed_deployment(&[("monoship.dev/commit", "newer1")]);
    env.rolled_out("deployments", "cart").await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let check = {
        let asked = asked.clone();
        Arc::new(move |deployed: &str, _time: Option<&str>| {
            asked.lock().unwrap().push(deployed.to_string());
            deployed == "newer1"
        })
    };
    let req = request_with("deployment/cart", &digest(6), |c| {
        c.older_than_deployed = Some(check)
    });
    let result = run_deploy(&env, &req, &Lines::default()).await;
    assert_eq!(result.status, RolloutStatus::Skipped);
    assert_eq!(
        result.reason.as_deref(),
        Some(
            "deployment/shop/cart runs newer1, newer than c0ffee; pass --force to deploy it anyway"
        )
    );
    assert_eq!(*asked.lock().unwrap(), ["newer1"]);
    assert_eq!(env.template_image("deployments", "cart", 0), OLD);

    let mut forced = req;
    forced.context.force = true;
    let forced = run_deploy(&env, &forced, &Lines::default()).await;
    assert_eq!(forced.status, RolloutStatus::Succeeded, "{forced:?}");
    assert_eq!(env.template_image("deployments", "cart", 0), digest(6));
}

#[tokio::test]
async fn statefulsets_and_daemonsets_roll_out() {
    let env = Env::start().await;
    let both = format!("{}---{}", db_statefulset(""), agent_daemonset("", true));
    env.sim.apply_yaml(&both).expect("applied");
    env.rolled_out("statefulsets", "db").await;
    env.rolled_out("daemonsets", "agent").await;
    for (workload, resource, name) in [
        ("statefulset/db", "statefulsets", "db"),
        ("daemonset/agent", "daemonsets", "agent"),
    ] {
        let lines = Lines::default();
        let result = run_deploy(&env, &request(workload, &digest(7)), &lines).await;
        assert_succeeded(&result, &lines);
        assert_eq!(env.template_image(resource, name, 0), digest(7));
        let (ok, kubectl_says) = env.kubectl_rollout_status(workload).await;
        assert!(ok, "{kubectl_says}");
        assert_eq!(format!("cart: {kubectl_says}"), lines.last());
    }
    let agent = env.object("daemonsets", "agent");
    assert_eq!(
        agent["spec"]["template"]["spec"]["initContainers"][0]["image"],
        digest(7).as_str(),
        "init containers of the repository are updated too"
    );
}

/// The StatefulSet `db` of two replicas running [`OLD`], with `annotations` (flow-map entries).
fn db_statefulset(annotations: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: shop
  annotations: {{{annotations}}}
spec:
  replicas: 2
  serviceName: db
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      containers: [{{name: db, image: "{OLD}"}}]
"#
    )
}

/// The DaemonSet `agent` running [`OLD`], with `annotations` (flow-map entries), and an init
/// container `setup` of the same image when `init` is set.
fn agent_daemonset(annotations: &str, init: bool) -> String {
    let init = if init {
        format!("\n      initContainers: [{{name: setup, image: \"{OLD}\"}}]")
    } else {
        String::new()
    };
    format!(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: shop
  annotations: {{{annotations}}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec:{init}
      containers: [{{name: agent, image: "{OLD}"}}]
"#
    )
}

/// The rollout succeeded; the log lines say why when it did not.
fn assert_succeeded(result: &RolloutResult, lines: &Lines) {
    assert_eq!(
        result.status,
        RolloutStatus::Succeeded,
        "{result:?}\n{}",
        lines.text()
    );
}

/// Applies `manifest("")`, waits for its rollout, arms `fail-next: mode`, deploys digest `n`
/// to `spec` and checks that it was rolled back.
async fn rolled_back(
    env: &Env,
    (resource, spec): (&str, &str),
    manifest: impl Fn(&str) -> String,
    mode: &str,
    n: u8,
) -> RolloutResult {
    let name = spec.rsplit('/').next().expect("kind/name");
    env.sim.apply_yaml(&manifest("")).expect("applied");
    env.rolled_out(resource, name).await;
    let armed = manifest(&format!("sim.monoship.dev/fail-next: {mode}"));
    env.sim.apply_yaml(&armed).expect("applied");
    let lines = Lines::default();
    let result = run_deploy(env, &request(spec, &digest(n)), &lines).await;
    assert_eq!(
        result.status,
        RolloutStatus::RolledBack,
        "{result:?}\n{}",
        lines.text()
    );
    result
}

#[tokio::test]
async fn a_daemonset_crash_loop_is_rolled_back_through_its_history() {
    let env = Env::start().await;
    let result = rolled_back(
        &env,
        ("daemonsets", "daemonset/agent"),
        |annotations| agent_daemonset(annotations, false),
        "CrashLoopBackOff",
        8,
    )
    .await;
    assert!(result.reason.unwrap().contains("CrashLoopBackOff"));
    assert_eq!(env.template_image("daemonsets", "agent", 0), OLD);
}

#[tokio::test]
async fn an_unknown_workload_fails_with_a_clear_reason() {
    let env = Env::start().await;
    let result = run_deploy(
        &env,
        &request("deployment/nope", &digest(9)),
        &Lines::default(),
    )
    .await;
    assert_eq!(result.status, RolloutStatus::Failed);
    assert_eq!(
        result.reason.as_deref(),
        Some("deployment \"nope\" not found in namespace \"shop\"")
    );

    env.seed_deployment(&[]);
    let other = DeployRequest {
        repository: "ghcr.io/shop/cart".into(),
        ..request("deployment/cart", &digest(9))
    };
    let result = run_deploy(&env, &other, &Lines::default()).await;
    assert_eq!(result.status, RolloutStatus::Failed);
    let reason = result.reason.unwrap();
    assert!(
        reason.starts_with("deployment/shop/cart: no container runs an image of ghcr.io/shop/cart"),
        "{reason}"
    );
    assert!(reason.contains(&format!("cart runs {OLD}")), "{reason}");
}

/// A simulator that accepts only the bearer token `t0ken`.
async fn token_sim() -> Sim {
    Sim::start(SimOptions {
        namespaces: vec!["shop".into()],
        token: Some("t0ken".into()),
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

#[tokio::test]
async fn a_token_source_authenticates_every_request() {
    let sim = token_sim().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let cluster = Cluster::with_token_source(&sim.url(), None, move || {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok("t0ken".to_string())
    })
    .await
    .expect("cluster");
    let result = deploy(
        &cluster,
        &request("deployment/nope", &digest(1)),
        &|_: &str| {},
    )
    .await;
    assert_eq!(
        result.reason.as_deref(),
        Some("deployment \"nope\" not found in namespace \"shop\""),
        "the request was authorized"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the token is reused until it ages"
    );
    assert!(sim
        .requests()
        .iter()
        .all(|r| r.authorization.as_deref() == Some("Bearer t0ken")));

    let wrong = Cluster::with_token_source(&sim.url(), None, || Ok("wrong".to_string()))
        .await
        .expect("cluster");
    let result = deploy(
        &wrong,
        &request("deployment/nope", &digest(1)),
        &|_: &str| {},
    )
    .await;
    assert_eq!(result.status, RolloutStatus::Failed);
    let reason = result.reason.unwrap();
    assert!(reason.contains("401"), "{reason}");
    assert!(
        !reason.contains("wrong"),
        "the token is never shown: {reason}"
    );

    let url = sim.url();
    let broken = Cluster::with_token_source(&url, None, || Err("no credentials".into()));
    let err = broken.await.unwrap_err().to_string();
    assert_eq!(err, "cannot get a token for the cluster");
}

#[tokio::test]
async fn tokens_are_minted_again_as_they_age_and_after_a_401() {
    let sim = token_sim().await;
    // Aging: a source asked again once its token is 300 ms old.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let cluster = Cluster::with_token_source_every(
        &sim.url(),
        None,
        move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok("t0ken".to_string())
        },
        Duration::from_millis(300),
    )
    .await
    .expect("cluster");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let result = deploy(
            &cluster,
            &request("deployment/nope", &digest(1)),
            &|_: &str| {},
        )
        .await;
        assert!(result.reason.unwrap().contains("not found"), "authorized");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "the first token, then one per aged use"
    );

    // Refused: the first token is rejected, a new one is minted and the request sent again.
    let minted = Arc::new(AtomicUsize::new(0));
    let counter = minted.clone();
    let cluster = Cluster::with_token_source(&sim.url(), None, move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Ok(if n == 0 { "expired" } else { "t0ken" }.to_string())
    })
    .await
    .expect("cluster");
    let before = sim.requests().len();
    let result = deploy(
        &cluster,
        &request("deployment/nope", &digest(1)),
        &|_: &str| {},
    )
    .await;
    assert_eq!(
        result.reason.as_deref(),
        Some("deployment \"nope\" not found in namespace \"shop\""),
        "the replayed request was authorized"
    );
    assert_eq!(minted.load(Ordering::SeqCst), 2);
    let statuses: Vec<u16> = sim.requests()[before..].iter().map(|r| r.status).collect();
    assert_eq!(
        statuses[..2],
        [401, 404],
        "refused once, then replayed: {statuses:?}"
    );
}

#[tokio::test]
async fn a_statefulset_image_pull_failure_is_rolled_back_through_its_history() {
    let env = Env::start().await;
    let result = rolled_back(
        &env,
        ("statefulsets", "statefulset/db"),
        db_statefulset,
        "ImagePullBackOff",
        10,
    )
    .await;
    assert!(result
        .reason
        .unwrap()
        .contains("container \"db\" is waiting"));
    assert_eq!(env.template_image("statefulsets", "db", 0), OLD);
    let (ok, kubectl_says) = env.kubectl_rollout_status("statefulset/db").await;
    assert!(ok, "{kubectl_says}");
}

#[tokio::test]
async fn the_timeout_bounds_the_wait_and_names_the_last_state() {
    let env = Env::with_cart().await;
    env.seed_deployment(&[("sim.monoship.dev/fail-next", "ProgressDeadlineExceeded")]);
    let req = request_with("deployment/cart", &digest(11), |c| {
        c.timeout = Duration::from_millis(1500);
        c.rollback = false;
    });
    let started = Instant::now();
    let result = run_deploy(&env, &req, &Lines::default()).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(result.status, RolloutStatus::Failed);
    let reason = result.reason.unwrap();
    assert!(
        reason.starts_with(
            "timed out waiting for the rollout of deployment/shop/cart: Waiting for deployment \"cart\" rollout to finish: "
        ),
        "{reason}"
    );
}
