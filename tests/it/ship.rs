//! `monoship ship` end to end: the example shop, the real Docker daemon, a real registry and
//! the Kubernetes simulator; the cluster's state is read back after each run.

use std::collections::BTreeMap;
use std::time::Duration;

use kube_sim::{Sim, SimOptions};
use serde_json::{json, Value};

use crate::support::{example_shop, monoship, Registry, Repo, Run};

pub(crate) struct Env {
    pub registry: Registry,
    pub sim: Sim,
    pub kubeconfig: tempfile::NamedTempFile,
    pub repo: Repo,
    pub base: String,
}

pub(crate) fn deployment(name: &str, image: &str, annotations: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: shop\n  annotations:\n    seeded: \"yes\"\n{annotations}spec:\n  replicas: 2\n  progressDeadlineSeconds: 20\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: {name}\n          image: {image}\n"
    )
}

pub(crate) fn wait_rolled_out(sim: &Sim, name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = sim.get("deployments", "shop", name).unwrap().unwrap();
        let status = &d["status"];
        if status["observedGeneration"] == d["metadata"]["generation"]
            && status["updatedReplicas"] == 2
            && status["availableReplicas"] == 2
            && status["replicas"] == 2
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} did not roll out: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three rolled-out Deployments in namespace `shop`, running `<registry>/<name>:old`.
pub(crate) fn seed(sim: &Sim, registry: &Registry) {
    for name in ["cart", "frontend", "email"] {
        sim.apply_yaml(&deployment(
            name,
            &format!("{}/{name}:old", registry.addr),
            "",
        ))
        .unwrap();
    }
    for name in ["cart", "frontend", "email"] {
        wait_rolled_out(sim, name);
    }
}

pub(crate) fn setup(fail_cart: Option<&str>) -> Env {
    setup_armed(fail_cart, Duration::from_millis(50))
}

fn setup_with_tick(tick: Duration) -> Env {
    setup_armed(None, tick)
}

fn setup_armed(fail_cart: Option<&str>, tick: Duration) -> Env {
    let registry = Registry::start(None);
    let sim = Sim::start_blocking(SimOptions {
        namespaces: vec!["shop".into()],
        tick,
        ..SimOptions::default()
    })
    .unwrap();
    seed(&sim, &registry);
    if let Some(f) = fail_cart {
        // Armed after the first rollout, so it is the next new template (ours) that fails.
        let annotation = format!("    sim.monoship.dev/fail-next: {f}\n");
        sim.apply_yaml(&deployment(
            "cart",
            &format!("{}/cart:old", registry.addr),
            &annotation,
        ))
        .unwrap();
    }
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    sim.write_kubeconfig(kubeconfig.path()).unwrap();
    let (mut repo, base) = example_shop();
    repo.write("pb/demo.proto", "syntax = \"proto3\"; // ship it\n");
    repo.commit("protos");
    Env {
        registry,
        sim,
        kubeconfig,
        repo,
        base,
    }
}

pub(crate) fn ship(env: &Env, extra: &[&str]) -> Run {
    ship_with(env, extra, &BTreeMap::new())
}

/// The arguments of `ship --format json` on `env` to the cluster of `kubeconfig`, then `extra`:
/// the env's base and registry, 60 s per rollout.
pub(crate) fn ship_args(env: &Env, kubeconfig: &str, extra: &[&str]) -> Vec<String> {
    let fixed = [
        "ship",
        "--format",
        "json",
        "--base",
        &env.base,
        "--registry",
        &env.registry.addr,
        "--kubeconfig",
        kubeconfig,
        "--timeout",
        "60",
    ];
    fixed.iter().chain(extra).map(|a| a.to_string()).collect()
}

/// `ship` on `env` with extra arguments and environment variables.
pub(crate) fn ship_with(env: &Env, extra: &[&str], vars: &BTreeMap<String, String>) -> Run {
    let kubeconfig = env.kubeconfig.path().display().to_string();
    let args = ship_args(env, &kubeconfig, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    monoship(env.repo.path(), &args, vars)
}

pub(crate) fn image_of(env: &Env, name: &str) -> String {
    let d = env.sim.get("deployments", "shop", name).unwrap().unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) fn rollout<'a>(plan: &'a Value, service: &str) -> &'a Value {
    plan["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == service)
        .unwrap_or_else(|| panic!("no rollout for {service}: {plan}"))
}

/// The image entry of `service` in a JSON report.
fn built<'a>(plan: &'a Value, service: &str) -> &'a Value {
    plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["service"] == service)
        .unwrap_or_else(|| panic!("no image for {service}: {plan}"))
}

/// The reason of `rollout` says `part`.
fn assert_reason(rollout: &Value, part: &str) {
    let reason = rollout["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(part), "{rollout}");
}

#[test]
fn ship_deploys_exactly_the_changed_services_by_digest() {
    let env = setup(None);
    let run = ship(&env, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let plan = run.json();
    for service in ["cart", "frontend"] {
        let image = plan["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["service"] == service)
            .unwrap()["image"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(image.contains("@sha256:"), "{image}");
        assert_eq!(
            image_of(&env, service),
            image,
            "{service} runs the new image by digest"
        );
        let r = rollout(&plan, service);
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["workload"], format!("deployment/shop/{service}"));
        let d = env
            .sim
            .get("deployments", "shop", service)
            .unwrap()
            .unwrap();
        assert_eq!(
            d["metadata"]["annotations"]["monoship.dev/commit"],
            plan["head"]
        );
    }
    assert!(
        image_of(&env, "email").ends_with("/email:old"),
        "email did not change and was not touched"
    );
    // checkout deploys from its manifests: applied server-side, the image substituted.
    let checkout = rollout(&plan, "checkout");
    assert_eq!(checkout["status"], "succeeded", "{checkout}");
    assert_eq!(checkout["workload"], "deployment/shop/checkout");
    let image = built(&plan, "checkout")["image"].clone();
    assert_eq!(json!(image_of(&env, "checkout")), image);
    let d = env
        .sim
        .get("deployments", "shop", "checkout")
        .unwrap()
        .unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["monoship.dev/commit"],
        plan["head"]
    );
    let managers: Vec<&Value> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["manager"])
        .collect();
    assert!(managers.contains(&&json!("monoship")), "{managers:?}");
    assert!(
        run.stderr.contains(&format!(
            "checkout: deploy/checkout/deployment.yaml:16: Deployment/checkout container checkout: checkout:placeholder -> {}",
            image.as_str().unwrap()
        )),
        "each substitution is told with its line: {}",
        run.stderr
    );
}

#[test]
fn a_failing_manifest_rollout_is_rolled_back_to_the_applied_version_before() {
    let env = setup(None);
    let old = format!("{}/checkout:old", env.registry.addr);
    env.sim
        .apply_yaml(&deployment("checkout", &old, ""))
        .unwrap();
    wait_rolled_out(&env.sim, "checkout");
    let armed = deployment(
        "checkout",
        &old,
        "    sim.monoship.dev/fail-next: ImagePullBackOff\n",
    );
    env.sim.apply_yaml(&armed).unwrap();
    let run = ship(&env, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let plan = run.json();
    let checkout = rollout(&plan, "checkout");
    assert_eq!(checkout["status"], "rolled-back", "{checkout}");
    let reason = checkout["reason"].as_str().unwrap();
    assert!(
        reason.contains("ErrImagePull") || reason.contains("ImagePullBackOff"),
        "{checkout}"
    );
    assert_eq!(
        image_of(&env, "checkout"),
        old,
        "the template before is back"
    );
    assert_eq!(rollout(&plan, "cart")["status"], "succeeded");
}

#[test]
fn a_broken_manifest_stops_ship_before_anything_is_pushed() {
    let env = setup(None);
    let mut repo = env.repo;
    repo.write(
        "deploy/checkout/extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n",
    );
    repo.commit("a manifest without a name");
    let env = Env { repo, ..env };
    let run = ship(&env, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("deploy/checkout/extra.yaml:1: ConfigMap has no `metadata.name`"),
        "{}",
        run.stderr
    );
    assert!(env.registry.catalog().is_empty(), "nothing was pushed");
}

#[test]
fn a_crash_looping_rollout_fails_early_and_is_rolled_back() {
    let env = setup(Some("CrashLoopBackOff"));
    let old = image_of(&env, "cart");
    let started = std::time::Instant::now();
    let run = ship(&env, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "detected before the 20 s progress deadline"
    );
    let plan = run.json();
    let cart = rollout(&plan, "cart");
    assert_eq!(cart["status"], "rolled-back", "{cart}");
    assert_reason(cart, "CrashLoopBackOff");
    assert_eq!(image_of(&env, "cart"), old, "the previous template is back");
    let frontend = rollout(&plan, "frontend");
    assert_eq!(
        frontend["status"], "skipped",
        "frontend depends on cart: {frontend}"
    );
    assert_eq!(frontend["workload"], "deployment/shop/frontend");
    assert_eq!(frontend["reason"], "its dependency cart was not deployed");
    assert!(run.stderr.contains("error: cart"), "{}", run.stderr);
}

#[test]
fn a_ship_without_a_usable_cluster_stops_before_pushing() {
    let registry = Registry::start(None);
    let (mut repo, base) = example_shop();
    repo.write("pb/demo.proto", "x\n");
    repo.commit("protos");
    let args = [
        "ship",
        "--base",
        &base,
        "--registry",
        &registry.addr,
        "--kubeconfig",
        "/nonexistent/kubeconfig",
    ];
    let run = monoship(repo.path(), &args, &BTreeMap::new());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot use the cluster"),
        "{}",
        run.stderr
    );
    assert!(registry.catalog().is_empty(), "nothing was pushed");
}

#[test]
fn in_action_mode_ship_writes_deployed_and_failed_outputs_and_the_rollout_column() {
    let env = setup(None);
    let files = tempfile::tempdir().unwrap();
    let (output, summary) = (files.path().join("output"), files.path().join("summary"));
    let kubeconfig = env.kubeconfig.path().display().to_string();
    let vars = [
        ("GITHUB_ACTIONS", "true"),
        ("INPUT_COMMAND", "ship"),
        ("INPUT_BASE", env.base.as_str()),
        ("INPUT_HEAD", "HEAD"),
        ("INPUT_REGISTRY", env.registry.addr.as_str()),
        ("INPUT_KUBECONFIG", kubeconfig.as_str()),
        ("INPUT_TIMEOUT", "60"),
        ("GITHUB_REPOSITORY", "octo/shop"),
        ("GITHUB_RUN_ID", "4242"),
        ("GITHUB_WORKSPACE", env.repo.path().to_str().unwrap()),
        ("GITHUB_OUTPUT", output.to_str().unwrap()),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
    ];
    let vars = crate::support::env_map(&vars);
    let run = monoship(std::path::Path::new("/"), &[], &vars);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let outputs = monoship::report::outputs::parse(&std::fs::read_to_string(&output).unwrap());
    let get = |name: &str| {
        outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no output {name}: {outputs:?}"))
    };
    assert_eq!(get("deployed"), r#"["cart","checkout","frontend"]"#);
    assert_eq!(get("failed"), "[]");
    let summary = std::fs::read_to_string(&summary).unwrap();
    let cart = summary.lines().find(|l| l.starts_with("| cart ")).unwrap();
    assert!(
        cart.contains("<code>deployment/shop/cart</code> succeeded"),
        "{cart}"
    );
    let d = env.sim.get("deployments", "shop", "cart").unwrap().unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["monoship.dev/run-url"],
        "https://github.com/octo/shop/actions/runs/4242"
    );
}

pub(crate) mod eks {
    use super::*;
    use crate::aws::Moto;

    pub(crate) async fn create_cluster(moto: &Moto, name: &str) {
        let creds =
            aws_credential_types::Credentials::new("testing", "testing", None, None, "test");
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(creds)
            .load()
            .await;
        let eks = aws_sdk_eks::Client::new(&sdk);
        let vpc = aws_sdk_eks::types::VpcConfigRequest::builder()
            .subnet_ids("subnet-1")
            .build();
        eks.create_cluster()
            .name(name)
            .role_arn("arn:aws:iam::123456789012:role/eks")
            .resources_vpc_config(vpc)
            .send()
            .await
            .expect("moto creates the cluster");
    }

    /// Ships the example's proto change to an EKS cluster named `prod` in moto, served by a
    /// simulator that accepts tokens for `token_lifetime` and moves every `tick`.
    fn ship_to_eks(token_lifetime: Duration, tick: Duration) -> (Run, Sim) {
        let moto = Moto::start();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(create_cluster(&moto, "prod"));
        let registry = Registry::start(None);
        // The simulator checks every request's EKS token: prefix, STS host, signed x-k8s-aws-id,
        // expiry, and the SigV4 signature with the secret it is given.
        let sim = Sim::start_blocking(SimOptions {
            namespaces: vec!["shop".into()],
            tick,
            eks_token_lifetime: token_lifetime,
            eks_cluster: Some("prod".into()),
            eks_credentials: vec![("testing".into(), "testing".into())],
            ..SimOptions::default()
        })
        .unwrap();
        seed(&sim, &registry);
        let (mut repo, base) = example_shop();
        let config = std::fs::read_to_string(repo.path().join(".github/monoship.yml")).unwrap();
        repo.write(".github/monoship.yml", &format!("{config}cluster:\n  eks:\n    name: prod\n    region: us-east-1\n    endpoint: {}\n", sim.url()));
        repo.write("pb/demo.proto", "eks\n");
        repo.commit("to prod");
        let vars = moto.run_env();
        let run = monoship(
            repo.path(),
            &[
                "ship",
                "--format",
                "json",
                "--base",
                &base,
                "--registry",
                &registry.addr,
                "--timeout",
                "60",
            ],
            &vars,
        );
        (run, sim)
    }

    #[test]
    fn ship_to_an_eks_cluster_by_name_with_a_signed_token() {
        let (run, sim) = ship_to_eks(Duration::from_secs(15 * 60), Duration::from_millis(50));
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let plan = run.json();
        assert_eq!(rollout(&plan, "cart")["status"], "succeeded");
        let authorized = sim
            .requests()
            .iter()
            .filter(|r| {
                r.authorization
                    .as_deref()
                    .is_some_and(|a| a.starts_with("Bearer k8s-aws-v1."))
            })
            .count();
        assert!(authorized > 0, "requests carried EKS tokens");
        assert!(
            !run.stderr.contains("k8s-aws-v1."),
            "tokens are never printed outside Actions"
        );
    }

    #[test]
    fn a_token_that_expires_during_the_rollout_is_replaced_and_the_rollout_finishes() {
        // Tokens live 2 s here instead of 15 minutes, and the rollouts take longer than that.
        let (run, sim) = ship_to_eks(Duration::from_secs(2), Duration::from_millis(400));
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let plan = run.json();
        for service in ["cart", "frontend", "checkout"] {
            assert_eq!(rollout(&plan, service)["status"], "succeeded", "{plan}");
        }
        let requests = sim.requests();
        let refused = requests.iter().filter(|r| r.status == 401).count();
        assert!(refused > 0, "a token expired during the run");
        let tokens: std::collections::BTreeSet<&str> = requests
            .iter()
            .filter(|r| r.status != 401)
            .filter_map(|r| r.authorization.as_deref())
            .collect();
        assert!(
            tokens.len() >= 2,
            "a new token was minted and accepted: {}",
            tokens.len()
        );
        let last = requests.last().unwrap();
        assert_ne!(last.status, 401, "the run ended on an accepted token");
    }
}

/// Two runs deploy cart at once: an older commit (A) and a newer one (B), from separate
/// clones as two CI runs would be, so A's clone does not know B. Whatever the interleaving,
/// B's image ends up running, B succeeds, and A never fails, rolls back or overwrites B.
#[test]
fn two_concurrent_deploys_of_one_service_leave_the_newer_commit_running() {
    let env = setup_with_tick(Duration::from_millis(200));
    let mut newer = env.repo.clone_with(&[]);
    newer.write("src/cart/main.go", "package main // B\n");
    newer.commit("cart B");
    let older_head = env.repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    let newer_head = newer.git(&["rev-parse", "HEAD"]).trim().to_string();

    let run_in = |dir: std::path::PathBuf| {
        let (base, registry) = (env.base.clone(), env.registry.addr.clone());
        let kubeconfig = env.kubeconfig.path().display().to_string();
        std::thread::spawn(move || {
            let args = [
                "ship",
                "--format",
                "json",
                "--base",
                &base,
                "--registry",
                &registry,
                "--kubeconfig",
                &kubeconfig,
                "--timeout",
                "60",
            ];
            monoship(&dir, &args, &BTreeMap::new())
        })
    };
    let a = run_in(env.repo.path().to_path_buf());
    let b = run_in(newer.path().to_path_buf());
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!(b.code, 0, "B: {}\n{}", b.stdout, b.stderr);
    assert_eq!(a.code, 0, "A never fails: {}\n{}", a.stdout, a.stderr);
    let (a, b) = (a.json(), b.json());
    assert_eq!(a["head"], older_head.as_str());
    assert_eq!(b["head"], newer_head.as_str());
    assert_eq!(rollout(&b, "cart")["status"], "succeeded", "{b}");
    let a_cart = rollout(&a, "cart");
    assert!(
        a_cart["status"] == "succeeded" || a_cart["status"] == "skipped",
        "{a_cart}"
    );
    let b_image = built(&b, "cart")["image"].clone();
    assert_eq!(
        json!(image_of(&env, "cart")),
        b_image,
        "B's image runs: A={a_cart}"
    );
    let d = env.sim.get("deployments", "shop", "cart").unwrap().unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["monoship.dev/commit"],
        newer_head.as_str()
    );
}

#[test]
fn a_workload_running_a_newer_commit_is_not_taken_back() {
    let mut env = setup(None);
    let older = env.repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    env.repo
        .write("src/cart/main.go", "package main // later\n");
    let newer = env.repo.commit("a later cart");
    env.repo.git(&["reset", "-q", "--hard", &older]);
    let annotation = format!("    monoship.dev/commit: {newer}\n");
    let running = format!("{}/cart:newer", env.registry.addr);
    env.sim
        .apply_yaml(&deployment("cart", &running, &annotation))
        .unwrap();
    wait_rolled_out(&env.sim, "cart");
    let run = ship(&env, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let plan = run.json();
    let cart = rollout(&plan, "cart");
    assert_eq!(cart["status"], "skipped", "{cart}");
    assert_reason(
        cart,
        &format!("runs {newer}, newer than {older}; pass --force"),
    );
    assert_eq!(
        image_of(&env, "cart"),
        running,
        "the newer commit keeps running"
    );
    assert_eq!(
        rollout(&plan, "frontend")["status"],
        "succeeded",
        "a dependency that runs a newer commit does not hold its dependents back"
    );
    let forced = ship(&env, &["--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_eq!(rollout(&forced.json(), "cart")["status"], "succeeded");
    assert_ne!(image_of(&env, "cart"), running);
}

#[test]
fn watches_cut_during_the_rollouts_are_resumed() {
    let env = setup_with_tick(Duration::from_millis(200));
    let done = std::sync::atomic::AtomicBool::new(false);
    let run = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(300));
                env.sim.drop_watches();
            }
        });
        let run = ship(&env, &[]);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        run
    });
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let plan = run.json();
    for service in ["cart", "frontend", "checkout"] {
        assert_eq!(rollout(&plan, service)["status"], "succeeded", "{plan}");
    }
    let watches = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.uri.contains("watch=true") || r.uri.contains("watch=1"))
        .count();
    // Three rollouts open about six watches when nothing cuts them; 42 were seen here.
    assert!(
        watches >= 12,
        "watches were opened again after each cut: {watches}"
    );
}
