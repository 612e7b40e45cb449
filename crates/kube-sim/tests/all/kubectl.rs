//! Fidelity tests with the real kubectl.

use crate::util::*;
use kube_sim::SimOptions;
use serde_json::Value;
use std::time::Duration;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn image(c: &Cluster, kind: &str, name: &str) -> String {
    c.ok(&[
        "get",
        kind,
        name,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
}

#[test]
fn discovery_serves_what_kubectl_needs() {
    let c = Cluster::start();
    let v = c.ok(&["version", "-o", "json"]);
    assert!(v.contains("\"minor\": \"32\""), "{v}");
    let res = c.ok(&["api-resources"]);
    for line in [
        "deployments",
        "statefulsets",
        "daemonsets",
        "replicasets",
        "controllerrevisions",
        "pods",
        "events",
        "configmaps",
        "services",
        "namespaces",
    ] {
        assert!(res.contains(line), "api-resources lacks {line}:\n{res}");
    }
    let ns = c.ok(&["get", "namespaces"]);
    assert!(ns.contains("default") && ns.contains("Active"), "{ns}");
    let nodes = c.json(&["get", "nodes"]);
    assert_eq!(nodes["items"].as_array().map(Vec::len), Some(2));
}

#[test]
fn apply_then_set_image_then_undo_deployment() {
    let c = Cluster::start();
    let m = c.manifest(
        "web.yaml",
        &deployment("web", "registry.local/web:1", 2, "", None),
    );
    assert!(c
        .ok(&["apply", "-f", &m])
        .contains("deployment.apps/web created"));
    assert!(c
        .ok(&["rollout", "status", "deployment/web", "--timeout=20s"])
        .contains("successfully rolled out"));

    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["status"]["observedGeneration"], 1);
    for k in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        assert_eq!(d["status"][k], 2, "{k} in {}", d["status"]);
    }
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let conds = d["status"]["conditions"].as_array().expect("conditions");
    assert!(conds
        .iter()
        .any(|c| c["type"] == "Available" && c["status"] == "True"));
    assert!(conds
        .iter()
        .any(|c| c["type"] == "Progressing" && c["reason"] == "NewReplicaSetAvailable"));

    let rs = c.json(&["get", "rs", "-l", "app=web"]);
    let rs0 = &rs["items"][0];
    let hash = rs0["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .expect("pod-template-hash");
    assert_eq!(rs0["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(
        rs0["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(rs0["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    let pods = c.json(&["get", "pods", "-l", "app=web"]);
    let pods = pods["items"].as_array().expect("items");
    assert_eq!(pods.len(), 2);
    for p in pods {
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["name"],
            rs0["metadata"]["name"]
        );
    }

    // Re-applying the same manifest changes nothing.
    assert!(c.ok(&["apply", "-f", &m]).contains("unchanged"));

    let new_image = format!("registry.local/web@{DIGEST}");
    assert!(c
        .ok(&[
            "set",
            "image",
            "deployment/web",
            &format!("app={new_image}")
        ])
        .contains("image updated"));
    assert!(c
        .ok(&["rollout", "status", "deployment/web", "--timeout=20s"])
        .contains("successfully rolled out"));
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(d["status"]["updatedReplicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"], "MODE",
        "set image keeps other fields"
    );
    assert_eq!(
        c.json(&["get", "rs", "-l", "app=web"])["items"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("REVISION") && history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let rev1 = c.ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(rev1.contains("registry.local/web:1"), "{rev1}");

    assert!(c
        .ok(&["rollout", "undo", "deployment/web"])
        .contains("rolled back"));
    assert!(c
        .ok(&["rollout", "status", "deployment/web", "--timeout=20s"])
        .contains("successfully rolled out"));
    assert_eq!(image(&c, "deployment", "web"), "registry.local/web:1");
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let skipped = c.ok(&["rollout", "undo", "deployment/web", "--to-revision=3"]);
    assert!(skipped.contains("skipped rollback"), "{skipped}");
}

#[test]
fn server_side_apply_creates_and_updates_with_a_field_manager() {
    let c = Cluster::start();
    let m = c.manifest(
        "api.yaml",
        &deployment("api", "registry.local/api:1", 2, "", None),
    );
    let out = c.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "monoship",
        "-f",
        &m,
    ]);
    assert!(out.contains("serverside-applied"), "{out}");
    c.ok(&["rollout", "status", "deployment/api", "--timeout=20s"]);
    let new = deployment("api", &format!("registry.local/api@{DIGEST}"), 2, "", None);
    let m = c.manifest("api2.yaml", &new);
    c.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "monoship",
        "-f",
        &m,
    ]);
    c.ok(&["rollout", "status", "deployment/api", "--timeout=20s"]);
    let d = c.json(&["get", "deployment", "api", "--show-managed-fields"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("registry.local/api@{DIGEST}")
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(d["metadata"]["generation"], 2);
    let managers: Vec<&Value> = d["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .collect();
    assert!(
        managers
            .iter()
            .any(|m| m["manager"] == "monoship" && m["operation"] == "Apply"),
        "{managers:?}"
    );
    // The server-side dry run changes nothing.
    let m = c.manifest(
        "api3.yaml",
        &deployment("api", "registry.local/api:3", 2, "", None),
    );
    c.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "monoship",
        "--dry-run=server",
        "-f",
        &m,
    ]);
    assert_eq!(
        image(&c, "deployment", "api"),
        format!("registry.local/api@{DIGEST}")
    );
}

/// Sets up `name` rolled out, then annotates `fail-next` and rolls a new image.
fn failing_rollout(c: &Cluster, name: &str, mode: &str) -> std::process::Output {
    let m = c.manifest(
        &format!("{name}.yaml"),
        &deployment(name, "registry.local/app:1", 2, "", Some(3)),
    );
    c.ok(&["apply", "-f", &m]);
    c.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=20s",
    ]);
    c.ok(&[
        "annotate",
        &format!("deployment/{name}"),
        &format!("sim.monoship.dev/fail-next={mode}"),
    ]);
    c.ok(&[
        "set",
        "image",
        &format!("deployment/{name}"),
        "app=registry.local/app:2",
    ]);
    let out = c.kubectl(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=25s",
    ]);
    assert!(
        !out.status.success(),
        "rollout with {mode} must fail: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains(&format!(
            "deployment \"{name}\" exceeded its progress deadline"
        )),
        "stderr: {}",
        stderr(&out)
    );
    out
}

fn new_pods(c: &Cluster, name: &str) -> Vec<Value> {
    let pods = c.json(&["get", "pods", "-l", &format!("app={name}")]);
    pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|p| p["spec"]["containers"][0]["image"] == "registry.local/app:2")
        .cloned()
        .collect()
}

fn undo_succeeds(c: &Cluster, name: &str) {
    c.ok(&["rollout", "undo", &format!("deployment/{name}")]);
    let out = c.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=20s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(image(c, "deployment", name), "registry.local/app:1");
}

#[test]
fn fail_next_progress_deadline_exceeded() {
    let c = Cluster::start();
    failing_rollout(&c, "pde", "ProgressDeadlineExceeded");
    let d = c.json(&["get", "deployment", "pde"]);
    assert!(
        d["metadata"]["annotations"]
            .get("sim.monoship.dev/fail-next")
            .is_none(),
        "the annotation is consumed"
    );
    let progressing = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned()
        .unwrap();
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");
    let pods = new_pods(&c, "pde");
    assert!(!pods.is_empty());
    assert_eq!(pods[0]["status"]["phase"], "Running");
    assert_eq!(pods[0]["status"]["containerStatuses"][0]["ready"], false);
    assert_eq!(d["status"]["availableReplicas"], 2, "old pods keep serving");
    undo_succeeds(&c, "pde");
    // The next new template rolls out fine: the annotation was used up.
    c.ok(&["set", "image", "deployment/pde", "app=registry.local/app:3"]);
    c.ok(&["rollout", "status", "deployment/pde", "--timeout=20s"]);
}

#[test]
fn fail_next_image_pull_back_off() {
    let c = Cluster::start();
    failing_rollout(&c, "pull", "ImagePullBackOff");
    let pods = new_pods(&c, "pull");
    let p = &pods[0];
    assert_eq!(p["status"]["phase"], "Pending");
    let waiting = &p["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "ImagePullBackOff", "{waiting}");
    assert!(waiting["message"]
        .as_str()
        .unwrap()
        .contains("registry.local/app:2"));
    let events = c.json(&[
        "get",
        "events",
        "--field-selector",
        &format!(
            "involvedObject.name={}",
            p["metadata"]["name"].as_str().unwrap()
        ),
    ]);
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"Failed") && reasons.contains(&"BackOff"),
        "{reasons:?}"
    );
    let described = c.ok(&["describe", "pod", p["metadata"]["name"].as_str().unwrap()]);
    assert!(described.contains("ImagePullBackOff"), "{described}");
    undo_succeeds(&c, "pull");
}

#[test]
fn fail_next_crash_loop_back_off() {
    let c = Cluster::start();
    failing_rollout(&c, "crash", "CrashLoopBackOff");
    let pods = new_pods(&c, "crash");
    let name = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    // Caught in the back-off, the container has restarted and shows how its last run ended.
    let cs = wait_for(Duration::from_secs(10), "CrashLoopBackOff", || {
        let p = c.json(&["get", "pod", &name]);
        let cs = p["status"]["containerStatuses"][0].clone();
        (cs["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(cs)
    });
    assert!(cs["restartCount"].as_i64().unwrap() >= 1, "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1, "{cs}");
    let events = c.json(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name},reason=BackOff"),
    ]);
    assert!(!events["items"].as_array().unwrap().is_empty());
    assert!(c.ok(&["logs", &name]).contains("exiting"));
    undo_succeeds(&c, "crash");
}

fn statefulset(image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  replicas: 2
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      containers: [{{name: db, image: {image}}}]
"
    )
}

#[test]
fn statefulset_rollout_status_history_and_undo() {
    let c = Cluster::start();
    c.ok(&[
        "apply",
        "-f",
        &c.manifest("db.yaml", &statefulset("registry.local/db:1")),
    ]);
    let out = c.ok(&["rollout", "status", "statefulset/db", "--timeout=20s"]);
    assert!(
        out.contains("rolling update complete") || out.contains("roll out complete"),
        "{out}"
    );
    let pods = c.json(&["get", "pods", "-l", "app=db"]);
    let names: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["db-0", "db-1"]);
    c.ok(&["set", "image", "statefulset/db", "db=registry.local/db:2"]);
    c.ok(&["rollout", "status", "statefulset/db", "--timeout=20s"]);
    let s = c.json(&["get", "statefulset", "db"]);
    assert_eq!(
        s["status"]["currentRevision"],
        s["status"]["updateRevision"]
    );
    assert_eq!(s["status"]["updatedReplicas"], 2);
    let history = c.ok(&["rollout", "history", "statefulset/db"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    c.ok(&["rollout", "undo", "statefulset/db"]);
    c.ok(&["rollout", "status", "statefulset/db", "--timeout=20s"]);
    assert_eq!(image(&c, "statefulset", "db"), "registry.local/db:1");
    let pod = c.json(&["get", "pod", "db-0"]);
    assert_eq!(pod["spec"]["containers"][0]["image"], "registry.local/db:1");
}

#[test]
fn daemonset_rollout_status_and_undo() {
    let c = Cluster::start();
    let ds = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: registry.local/agent:1}]
";
    c.ok(&["apply", "-f", &c.manifest("ds.yaml", ds)]);
    let out = c.ok(&["rollout", "status", "daemonset/agent", "--timeout=20s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = c.json(&["get", "daemonset", "agent"]);
    assert_eq!(d["status"]["desiredNumberScheduled"], 2);
    assert_eq!(d["status"]["numberAvailable"], 2);
    c.ok(&[
        "set",
        "image",
        "daemonset/agent",
        "agent=registry.local/agent:2",
    ]);
    c.ok(&["rollout", "status", "daemonset/agent", "--timeout=20s"]);
    let d = c.json(&["get", "daemonset", "agent"]);
    assert_eq!(d["status"]["updatedNumberScheduled"], 2);
    c.ok(&["rollout", "undo", "daemonset/agent"]);
    c.ok(&["rollout", "status", "daemonset/agent", "--timeout=20s"]);
    assert_eq!(image(&c, "daemonset", "agent"), "registry.local/agent:1");
}

#[test]
fn get_watch_sees_modified_events() {
    let c = Cluster::start();
    c.sim
        .apply_yaml(&deployment("w", "registry.local/w:1", 1, "", None))
        .unwrap();
    let watch = |extra: &'static [&'static str], cache: &str| {
        let mut args: Vec<String> = vec![
            "--kubeconfig".into(),
            c.kubeconfig().display().to_string(),
            "--cache-dir".into(),
            c.dir.path().join(cache).display().to_string(),
            "--request-timeout=4s".into(),
            "get".into(),
            "deployment".into(),
            "w".into(),
            "-w".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        std::thread::spawn(move || run(KUBECTL, &args, Duration::from_secs(30)))
    };
    let json_watch = watch(&["--output-watch-events", "-o", "json"], "cache-json");
    let table_watch = watch(&[], "cache-table");
    // Wait until both watches are open, then change the deployment.
    wait_for(Duration::from_secs(10), "the watches to open", || {
        let n = c
            .sim
            .requests()
            .iter()
            .filter(|r| r.uri.contains("watch=true") || r.uri.contains("watch=1"))
            .count();
        (n >= 2).then_some(())
    });
    c.sim
        .apply_yaml(&deployment("w", "registry.local/w:2", 1, "", None))
        .unwrap();

    let out = json_watch.join().expect("watcher thread");
    let text = stdout(&out);
    let events: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|e| e.expect("JSON events"))
        .collect();
    assert!(
        events.iter().any(|e| e["type"] == "MODIFIED"),
        "{text}\n{}",
        stderr(&out)
    );
    assert!(events
        .iter()
        .any(
            |e| e["object"]["spec"]["template"]["spec"]["containers"][0]["image"]
                == "registry.local/w:2"
        ));

    // The human-readable watch prints the header once, then a row per change.
    let out = table_watch.join().expect("watcher thread");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("UP-TO-DATE"),
        "{text}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("NAME")).count(),
        1,
        "{text}"
    );
    assert!(
        lines.len() > 2 && lines[1..].iter().all(|l| l.starts_with("w ")),
        "{text}"
    );
}

/// kubectl (client-go) never sends credentials over plain HTTP, so against the simulator it
/// can only show the refusal; the accepted token is checked over HTTP in `http.rs`.
#[test]
fn kubectl_without_credentials_is_refused_when_a_token_is_required() {
    let c = Cluster::with(SimOptions {
        token: Some("s3cret".into()),
        ..SimOptions::default()
    });
    let out = c.kubectl(&["get", "pods"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("You must be logged in to the server"),
        "{}",
        stderr(&out)
    );
    let authorized = http(
        &c.sim,
        "GET",
        "/api/v1/namespaces/default/pods",
        &[("Authorization", "Bearer s3cret")],
        "",
    );
    assert_eq!(authorized.status, 200);
    let refused = http(
        &c.sim,
        "GET",
        "/api/v1/namespaces/default/pods",
        &[("Authorization", "Bearer nope")],
        "",
    );
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["reason"], "Unauthorized");
    assert!(c.sim.kubeconfig("default").contains("token: s3cret"));
}

#[test]
fn errors_read_like_the_apiserver() {
    let c = Cluster::start();
    let out = c.kubectl(&["get", "deployment", "nope"]);
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (NotFound): deployments.apps \"nope\" not found"
    );
    let m = c.manifest(
        "e.yaml",
        &deployment("e", "registry.local/e:1", 1, "", None),
    );
    c.ok(&["create", "-f", &m]);
    let out = c.kubectl(&["create", "-f", &m]);
    assert!(
        stderr(&out).contains("Error from server (AlreadyExists): error when creating"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("deployments.apps \"e\" already exists"),
        "{}",
        stderr(&out)
    );
    let out = c.kubectl(&["create", "-n", "missing", "-f", &m]);
    assert!(
        stderr(&out).contains("namespaces \"missing\" not found"),
        "{}",
        stderr(&out)
    );
    let bad = deployment("bad", "registry.local/e:1", 1, "", None).replace(
        "labels: {app: bad}\n    spec",
        "labels: {app: other}\n    spec",
    );
    let out = c.kubectl(&["apply", "-f", &c.manifest("bad.yaml", &bad)]);
    assert!(
        stderr(&out).contains("`selector` does not match template `labels`"),
        "{}",
        stderr(&out)
    );
    // Deleting cascades to ReplicaSets and pods.
    c.ok(&["rollout", "status", "deployment/e", "--timeout=20s"]);
    c.ok(&["delete", "deployment", "e"]);
    wait_for(
        Duration::from_secs(10),
        "dependents to be collected",
        || {
            let pods = c.sim.list("pods", Some("default")).unwrap();
            let rs = c.sim.list("replicasets", Some("default")).unwrap();
            (pods.is_empty() && rs.is_empty()).then_some(())
        },
    );
}

#[test]
fn scale_and_restart_work() {
    let c = Cluster::start();
    c.ok(&[
        "apply",
        "-f",
        &c.manifest(
            "s.yaml",
            &deployment("s", "registry.local/s:1", 1, "", None),
        ),
    ]);
    c.ok(&["rollout", "status", "deployment/s", "--timeout=20s"]);
    c.ok(&["scale", "deployment/s", "--replicas=3"]);
    c.ok(&["rollout", "status", "deployment/s", "--timeout=20s"]);
    assert_eq!(
        c.json(&["get", "deployment", "s"])["status"]["availableReplicas"],
        3
    );
    c.ok(&["rollout", "restart", "deployment/s"]);
    c.ok(&["rollout", "status", "deployment/s", "--timeout=20s"]);
    let d = c.json(&["get", "deployment", "s"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
}

#[test]
fn server_side_apply_removes_fields_the_manager_stopped_applying() {
    let c = Cluster::start();
    let with_env = deployment("p", "registry.local/p:1", 1, "", None);
    c.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "monoship",
        "-f",
        &c.manifest("p1.yaml", &with_env),
    ]);
    c.ok(&["label", "deployment/p", "team=shop"]);
    let without_env = with_env
        .replace("        env: [{name: MODE, value: test}]\n", "")
        .replace(
            "labels: {app: p}\n  annotations",
            "labels: {app: p, tier: web}\n  annotations",
        );
    assert_ne!(with_env, without_env);
    c.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "monoship",
        "-f",
        &c.manifest("p2.yaml", &without_env),
    ]);
    let d = c.json(&["get", "deployment", "p"]);
    assert!(
        d["spec"]["template"]["spec"]["containers"][0]
            .get("env")
            .is_none(),
        "{}",
        d["spec"]
    );
    assert_eq!(
        d["metadata"]["labels"]["team"], "shop",
        "another manager's label stays"
    );
    assert_eq!(d["metadata"]["labels"]["tier"], "web");
}

#[test]
fn server_side_apply_reports_conflicts_unless_forced() {
    let c = Cluster::start();
    let v1 = deployment("cf", "registry.local/cf:1", 1, "", None);
    c.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "monoship",
        "-f",
        &c.manifest("cf1.yaml", &v1),
    ]);
    c.ok(&[
        "set",
        "image",
        "deployment/cf",
        "app=registry.local/cf:hotfix",
    ]);
    let v2 = c.manifest("cf2.yaml", &v1.replace("cf:1", "cf:2"));
    let out = c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        "monoship",
        "-f",
        &v2,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(r#"Apply failed with 1 conflict: conflict with "kubectl-set" using apps/v1: .spec.template.spec.containers[name="app"].image"#),
        "{}",
        stderr(&out)
    );
    assert_eq!(image(&c, "deployment", "cf"), "registry.local/cf:hotfix");
    c.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "monoship",
        "--force-conflicts",
        "-f",
        &v2,
    ]);
    assert_eq!(image(&c, "deployment", "cf"), "registry.local/cf:2");
    // The field changed hands: the next apply is not a conflict.
    c.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "monoship",
        "-f",
        &v2,
    ]);
    let d = c.json(&["get", "deployment", "cf", "--show-managed-fields"]);
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(!managers.contains(&"kubectl-set"), "{managers:?}");
}

#[test]
fn delete_with_orphan_keeps_the_replicasets() {
    let c = Cluster::start();
    c.ok(&[
        "apply",
        "-f",
        &c.manifest(
            "o.yaml",
            &deployment("o", "registry.local/o:1", 1, "", None),
        ),
    ]);
    c.ok(&["rollout", "status", "deployment/o", "--timeout=20s"]);
    c.ok(&["delete", "deployment", "o", "--cascade=orphan"]);
    // Give the garbage collector a few ticks to (not) act.
    let deadline = std::time::Instant::now() + Duration::from_millis(500);
    while std::time::Instant::now() < deadline {
        assert_eq!(c.sim.list("replicasets", Some("default")).unwrap().len(), 1);
        std::thread::sleep(Duration::from_millis(50));
    }
    let rs = &c.sim.list("replicasets", Some("default")).unwrap()[0];
    assert!(rs["metadata"].get("ownerReferences").is_none());
}

#[test]
fn min_ready_seconds_delays_availability() {
    let c = Cluster::start();
    let m = deployment("mr", "registry.local/mr:1", 1, "", None)
        .replace("  replicas: 1\n", "  replicas: 1\n  minReadySeconds: 2\n");
    c.ok(&["apply", "-f", &c.manifest("mr.yaml", &m)]);
    let started = std::time::Instant::now();
    c.ok(&["rollout", "status", "deployment/mr", "--timeout=20s"]);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "available only after minReadySeconds"
    );
}

#[test]
fn auth_can_i_and_forbidden_answers_follow_the_denials() {
    let c = Cluster::with(SimOptions {
        namespaces: vec!["shop".into()],
        denials: vec![kube_sim::Denial::new("patch", "deployments").namespace("shop")],
        ..SimOptions::default()
    });
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let out = c.kubectl(&all);
        (out.status.code(), stdout(&out).trim().to_string())
    };
    assert_eq!(
        can(&["patch", "deployments", "-n", "shop"]),
        (Some(1), "no".to_string())
    );
    assert_eq!(
        can(&["patch", "deployment.apps/cart", "-n", "shop"]),
        (Some(1), "no".to_string())
    );
    assert_eq!(
        can(&["get", "deployments", "-n", "shop"]),
        (Some(0), "yes".to_string())
    );
    assert_eq!(
        can(&["patch", "deployments", "-n", "default"]),
        (Some(0), "yes".to_string())
    );
    // The rule bites on the request itself, worded as RBAC words it.
    c.sim.deny(kube_sim::Denial::new("list", "pods"));
    assert_eq!(can(&["list", "pods"]), (Some(1), "no".to_string()));
    let out = c.kubectl(&["get", "pods", "-n", "shop"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "Error from server (Forbidden): pods is forbidden: User \"kube-sim-user\" cannot list resource \"pods\" in API group \"\" in the namespace \"shop\""
        ),
        "{}",
        stderr(&out)
    );
    let m = c.manifest(
        "web.yaml",
        &deployment("web", "registry.local/web:1", 1, "", None),
    );
    c.ok(&["apply", "-n", "shop", "-f", &m]);
    let out = c.kubectl(&[
        "set",
        "image",
        "-n",
        "shop",
        "deployment/web",
        "app=registry.local/web:2",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "deployments.apps \"web\" is forbidden: User \"kube-sim-user\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"shop\""
        ),
        "{}",
        stderr(&out)
    );
}
