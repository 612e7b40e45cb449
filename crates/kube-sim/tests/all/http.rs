//! The wire contract, over plain HTTP: watches, optimistic concurrency, patches, faults, auth.

use crate::util::*;
use base64::Engine;
use kube_sim::{Fault, Sim, SimOptions};
use serde_json::json;
use std::time::Duration;

const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments";

fn sim_with_web() -> Sim {
    let sim = Sim::start_blocking(SimOptions::default()).unwrap();
    sim.apply_yaml(&deployment("web", "registry.local/web:1", 1, "", None))
        .unwrap();
    sim
}

#[test]
fn watch_streams_changes_from_a_resource_version() {
    let sim = sim_with_web();
    let list = http(
        &sim,
        "GET",
        &format!("{DEPLOY}?fieldSelector=metadata.name%3Dweb"),
        &[],
        "",
    )
    .json();
    assert_eq!(list["kind"], "DeploymentList");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut w = open_watch(&sim, &format!("{DEPLOY}?watch=1&fieldSelector=metadata.name%3Dweb&resourceVersion={rv}&allowWatchBookmarks=true"));
    sim.apply_yaml(&deployment("web", "registry.local/web:2", 1, "", None))
        .unwrap();
    let mut pending = Vec::new();
    let ev = wait_for(
        Duration::from_secs(10),
        "a MODIFIED event with the new image",
        || {
            let e = next_event(&mut w, &mut pending)?;
            (e["type"] == "MODIFIED"
                && e["object"]["spec"]["template"]["spec"]["containers"][0]["image"]
                    == "registry.local/web:2")
                .then_some(e)
        },
    );
    assert!(
        ev["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > rv.parse::<u64>().unwrap()
    );
    // Bookmarks come too, when allowed.
    wait_for(Duration::from_secs(10), "a BOOKMARK", || {
        (next_event(&mut w, &mut pending)?["type"] == "BOOKMARK").then_some(())
    });
}

#[test]
fn watch_without_resource_version_starts_with_added() {
    let sim = sim_with_web();
    let mut w = open_watch(
        &sim,
        &format!("{DEPLOY}?watch=true&labelSelector=app%3Dweb"),
    );
    let e = next_event(&mut w, &mut Vec::new()).unwrap();
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["name"], "web");
}

#[test]
fn watch_from_a_compacted_resource_version_is_gone() {
    let sim = sim_with_web();
    sim.compact();
    let mut w = open_watch(&sim, &format!("{DEPLOY}?watch=1&resourceVersion=1"));
    let e = next_event(&mut w, &mut Vec::new()).unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(e["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with("too old resource version"));
    assert!(
        next_event(&mut w, &mut Vec::new()).is_none(),
        "the stream ends after the error"
    );
}

#[test]
fn drop_watches_cuts_open_streams() {
    let sim = sim_with_web();
    let rv = sim.resource_version();
    let mut w = open_watch(&sim, &format!("{DEPLOY}?watch=1&resourceVersion={rv}"));
    sim.drop_watches();
    let started = std::time::Instant::now();
    // Events already on their way may still arrive; then the stream is cut.
    let mut pending = Vec::new();
    while next_event(&mut w, &mut pending).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the watch was not cut"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the watch was not cut"
    );
    // New watches still work.
    let mut w = open_watch(&sim, &format!("{DEPLOY}?watch=1"));
    assert_eq!(
        next_event(&mut w, &mut Vec::new()).unwrap()["type"],
        "ADDED"
    );
}

#[test]
fn watch_timeout_seconds_ends_the_stream() {
    let sim = Sim::start_blocking(SimOptions::default()).unwrap();
    let rv = sim.resource_version();
    let started = std::time::Instant::now();
    let mut w = open_watch(
        &sim,
        &format!("/api/v1/namespaces?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
    );
    assert!(next_event(&mut w, &mut Vec::new()).is_none());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn put_with_a_stale_resource_version_conflicts() {
    let sim = sim_with_web();
    // Let the controllers finish writing status first.
    let cur = wait_for(Duration::from_secs(10), "the rollout", || {
        let d = http(&sim, "GET", &format!("{DEPLOY}/web"), &[], "").json();
        (d["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["reason"] == "NewReplicaSetAvailable"))
        .then_some(d)
    });
    let mut stale = cur.clone();
    stale["metadata"]["labels"]["x"] = json!("1");
    let ok = http(
        &sim,
        "PUT",
        &format!("{DEPLOY}/web"),
        &[("Content-Type", "application/json")],
        &stale.to_string(),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.json()["metadata"]["generation"],
        1,
        "metadata changes keep the generation"
    );
    let again = http(
        &sim,
        "PUT",
        &format!("{DEPLOY}/web"),
        &[("Content-Type", "application/json")],
        &stale.to_string(),
    );
    assert_eq!(again.status, 409);
    let s = again.json();
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["reason"], "Conflict");
    assert!(s["message"]
        .as_str()
        .unwrap()
        .contains("the object has been modified"));
}

#[test]
fn patches_of_every_type() {
    let sim = sim_with_web();
    let path = format!("{DEPLOY}/web");
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.local/web:2"}]}}}});
    let r = http(
        &sim,
        "PATCH",
        &path,
        &[("Content-Type", "application/strategic-merge-patch+json")],
        &smp.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/web:2"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "test"
    );
    assert_eq!(d["metadata"]["generation"], 2);

    let mp = json!({"metadata": {"labels": {"team": "a"}}});
    let r = http(
        &sim,
        "PATCH",
        &path,
        &[("Content-Type", "application/merge-patch+json")],
        &mp.to_string(),
    );
    assert_eq!(r.json()["metadata"]["labels"]["team"], "a");
    assert_eq!(r.json()["metadata"]["generation"], 2);

    let jp = json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]);
    let r = http(
        &sim,
        "PATCH",
        &path,
        &[("Content-Type", "application/json-patch+json")],
        &jp.to_string(),
    );
    assert_eq!(r.json()["spec"]["replicas"], 3);

    let bad = json!([{"op": "replace", "path": "/spec/nothing/here", "value": 3}]);
    let r = http(
        &sim,
        "PATCH",
        &path,
        &[("Content-Type", "application/json-patch+json")],
        &bad.to_string(),
    );
    assert_eq!(r.status, 422);

    let apply = deployment("web", "registry.local/web:4", 3, "", None);
    let r = http(
        &sim,
        "PATCH",
        &format!("{path}?fieldManager=monoship&force=true"),
        &[("Content-Type", "application/apply-patch+yaml")],
        &apply,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/web:4"
    );
    let r = http(
        &sim,
        "PATCH",
        &format!("{DEPLOY}/other?fieldManager=monoship"),
        &[("Content-Type", "application/apply-patch+yaml")],
        &deployment("other", "registry.local/o:1", 1, "", None),
    );
    assert_eq!(r.status, 201, "apply creates: {}", r.body);
    let r = http(
        &sim,
        "PATCH",
        &path,
        &[("Content-Type", "application/apply-patch+yaml")],
        &apply,
    );
    assert_eq!(r.status, 422, "apply needs a field manager");

    // Status and scale subresources.
    let r = http(&sim, "GET", &format!("{path}/scale"), &[], "");
    assert_eq!(r.json()["spec"]["replicas"], 3);
    let r = http(
        &sim,
        "PATCH",
        &format!("{path}/scale"),
        &[("Content-Type", "application/merge-patch+json")],
        r#"{"spec":{"replicas":1}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        sim.get("deploy", "default", "web").unwrap().unwrap()["spec"]["replicas"],
        1
    );
}

#[test]
fn injected_faults_answer_then_clear() {
    let sim = sim_with_web();
    let path = format!("{DEPLOY}/web");
    sim.inject_fault(Fault::new(500, &path).method("PATCH").times(2));
    sim.inject_fault(Fault::new(409, format!("{DEPLOY}*")).method("PUT"));
    for _ in 0..2 {
        let r = http(
            &sim,
            "PATCH",
            &path,
            &[("Content-Type", "application/merge-patch+json")],
            "{}",
        );
        assert_eq!(r.status, 500);
        assert_eq!(r.json()["reason"], "InternalError");
    }
    assert_eq!(
        http(
            &sim,
            "PATCH",
            &path,
            &[("Content-Type", "application/merge-patch+json")],
            "{}"
        )
        .status,
        200
    );
    assert_eq!(
        http(&sim, "GET", &path, &[], "").status,
        200,
        "other methods are not affected"
    );
    // Without a resourceVersion the update is unconditional (the controllers are busy).
    let mut body = http(&sim, "GET", &path, &[], "").json();
    body["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let body = body.to_string();
    assert_eq!(
        http(
            &sim,
            "PUT",
            &path,
            &[("Content-Type", "application/json")],
            &body
        )
        .status,
        409
    );
    assert_eq!(
        http(
            &sim,
            "PUT",
            &path,
            &[("Content-Type", "application/json")],
            &body
        )
        .status,
        200
    );
    assert!(sim
        .requests()
        .iter()
        .any(|r| r.method == "PUT" && r.status == 409));
}

#[test]
fn generation_changes_only_with_the_spec_and_status_is_separate() {
    let sim = sim_with_web();
    let d = wait_for(Duration::from_secs(10), "the rollout", || {
        let d = sim.get("deployments", "default", "web").unwrap()?;
        (d["status"]["availableReplicas"] == 1).then_some(d)
    });
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["status"]["observedGeneration"], 1);
    // Status written through the main resource is ignored.
    let mut put = d.clone();
    put["status"] = json!({"replicas": 42});
    put["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let r = http(
        &sim,
        "PUT",
        &format!("{DEPLOY}/web"),
        &[("Content-Type", "application/json")],
        &put.to_string(),
    );
    assert_ne!(r.json()["status"]["replicas"], 42);
    assert_eq!(r.json()["metadata"]["generation"], 1);
}

#[test]
fn fail_next_is_consumed_by_the_rollout_of_a_new_template() {
    let sim = sim_with_web();
    wait_for(Duration::from_secs(10), "the first rollout", || {
        (sim.get("deployments", "default", "web").unwrap()?["status"]["availableReplicas"] == 1)
            .then_some(())
    });
    let annotated = deployment(
        "web",
        "registry.local/web:1",
        1,
        "sim.monoship.dev/fail-next: ImagePullBackOff",
        None,
    );
    sim.apply_yaml(&annotated).unwrap();
    // No new template yet: nothing fails and the annotation stays.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sim.get("deployments", "default", "web").unwrap().unwrap()["metadata"]["annotations"]
            ["sim.monoship.dev/fail-next"]
            .is_string()
    );
    sim.apply_yaml(&annotated.replace("web:1", "web:2"))
        .unwrap();
    let pod = wait_for(Duration::from_secs(10), "a pod failing to pull", || {
        sim.list("pods", Some("default"))
            .unwrap()
            .into_iter()
            .find(|p| {
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    .as_str()
                    .is_some_and(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
            })
    });
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "registry.local/web:2"
    );
    assert!(
        sim.get("deployments", "default", "web").unwrap().unwrap()["metadata"]["annotations"]
            .get("sim.monoship.dev/fail-next")
            .is_none()
    );
}

#[test]
fn unpullable_images_fail_whatever_the_annotations() {
    let sim = Sim::start_blocking(SimOptions::default()).unwrap();
    sim.mark_image_unpullable("registry.local/missing:1");
    sim.apply_yaml(&deployment("m", "registry.local/missing:1", 1, "", None))
        .unwrap();
    wait_for(Duration::from_secs(10), "ImagePullBackOff", || {
        sim.list("pods", Some("default"))
            .unwrap()
            .into_iter()
            .find(|p| {
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    == "ImagePullBackOff"
            })
    });
}

fn eks_token(date: &str) -> String {
    let url = format!(
        "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIAEXAMPLE%2F{}%2Feu-west-1%2Fsts%2Faws4_request&X-Amz-Date={date}&X-Amz-Expires=60\
         &X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=0000",
        &date[..8]
    );
    format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    )
}

fn amz_date(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_secs;
    // Format as YYYYMMDDTHHMMSSZ via the civil-from-days algorithm.
    let (days, rem) = (now.div_euclid(86400), now.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[test]
fn eks_tokens_are_accepted_until_they_expire() {
    let sim = Sim::start_blocking(SimOptions {
        eks_cluster: Some("prod".into()),
        ..SimOptions::default()
    })
    .unwrap();
    let token = eks_token(&amz_date(-60));
    let auth = format!("Bearer {token}");
    let r = http(
        &sim,
        "GET",
        "/api/v1/namespaces",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = sim.requests().pop().unwrap();
    assert_eq!(seen.authorization.as_deref(), Some(auth.as_str()));
    let r = http(&sim, "GET", "/api/v1/namespaces", &[], "");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Unauthorized");
    sim.advance_clock(Duration::from_secs(15 * 60));
    let r = http(
        &sim,
        "GET",
        "/api/v1/namespaces",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(r.status, 401, "expired 15 minutes after X-Amz-Date");
    assert!(r.body.contains("expired"), "{}", r.body);
    assert_eq!(
        http(&sim, "GET", "/healthz", &[], "").status,
        200,
        "health needs no token"
    );
}

#[test]
fn streaming_list_ends_its_initial_events_with_a_bookmark() {
    let sim = sim_with_web();
    let mut w = open_watch(
        &sim,
        &format!("{DEPLOY}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"),
    );
    let mut pending = Vec::new();
    assert_eq!(next_event(&mut w, &mut pending).unwrap()["type"], "ADDED");
    let b = next_event(&mut w, &mut pending).unwrap();
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(
        b["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[test]
fn fail_next_applies_to_statefulsets_and_daemonsets_too() {
    let sim = Sim::start_blocking(SimOptions::default()).unwrap();
    sim.apply_yaml(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  annotations: {sim.monoship.dev/fail-next: CrashLoopBackOff}
spec:
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: registry.local/db:1}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  annotations: {sim.monoship.dev/fail-next: ImagePullBackOff}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: registry.local/agent:1}]}
",
    )
    .unwrap();
    let waiting = |name_prefix: &str, reason: &str| {
        sim.list("pods", Some("default"))
            .unwrap()
            .into_iter()
            .any(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with(name_prefix)
                    && p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == reason
            })
    };
    wait_for(Duration::from_secs(10), "db-0 in CrashLoopBackOff", || {
        waiting("db-", "CrashLoopBackOff").then_some(())
    });
    wait_for(
        Duration::from_secs(10),
        "agent pods in ImagePullBackOff",
        || waiting("agent-", "ImagePullBackOff").then_some(()),
    );
    let sts = sim.get("statefulsets", "default", "db").unwrap().unwrap();
    assert!(sts["metadata"]["annotations"]
        .get("sim.monoship.dev/fail-next")
        .is_none());
    assert_eq!(sts["status"]["readyReplicas"].as_i64().unwrap_or(0), 0);
}

#[test]
fn service_cluster_ip_survives_a_put_that_omits_it() {
    let sim = Sim::start_blocking(SimOptions {
        namespaces: vec!["shop".into()],
        ..SimOptions::default()
    })
    .unwrap();
    let svc = sim
        .apply_yaml("apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\nspec: {ports: [{port: 80}]}\n")
        .unwrap()
        .remove(0);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 81}]}});
    let r = http(
        &sim,
        "PUT",
        "/api/v1/namespaces/shop/services/s",
        &[("Content-Type", "application/json")],
        &body.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["spec"]["clusterIP"], ip.as_str());
}

#[test]
fn advancing_the_clock_passes_the_progress_deadline() {
    let sim = Sim::start_blocking(SimOptions::default()).unwrap();
    sim.apply_yaml(&deployment(
        "slow",
        "registry.local/slow:1",
        1,
        "sim.monoship.dev/fail-next: ProgressDeadlineExceeded",
        None,
    ))
    .unwrap();
    wait_for(Duration::from_secs(10), "the new pod", || {
        (sim.list("pods", Some("default")).unwrap().len() == 1).then_some(())
    });
    sim.advance_clock(Duration::from_secs(601));
    wait_for(Duration::from_secs(10), "ProgressDeadlineExceeded", || {
        let d = sim.get("deployments", "default", "slow").unwrap()?;
        d["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["reason"] == "ProgressDeadlineExceeded")
            .then_some(())
    });
}

#[test]
fn fail_next_create_container_config_error() {
    let sim = Sim::start_blocking(SimOptions::default()).unwrap();
    sim.apply_yaml(&deployment(
        "cfg",
        "registry.local/cfg:1",
        1,
        "sim.monoship.dev/fail-next: CreateContainerConfigError",
        None,
    ))
    .unwrap();
    let pod = wait_for(
        Duration::from_secs(10),
        "CreateContainerConfigError",
        || {
            sim.list("pods", Some("default"))
                .unwrap()
                .into_iter()
                .find(|p| {
                    p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                        == "CreateContainerConfigError"
                })
        },
    );
    assert_eq!(pod["status"]["phase"], "Pending");
}

#[test]
fn scaled_down_pods_terminate_gracefully() {
    let sim = Sim::start_blocking(SimOptions::default()).unwrap();
    sim.apply_yaml(&deployment("g", "registry.local/g:1", 2, "", None))
        .unwrap();
    wait_for(Duration::from_secs(10), "two ready pods", || {
        (sim.get("deployments", "default", "g").unwrap()?["status"]["availableReplicas"] == 2)
            .then_some(())
    });
    sim.apply_yaml(&deployment("g", "registry.local/g:1", 1, "", None))
        .unwrap();
    let doomed = wait_for(Duration::from_secs(10), "a terminating pod", || {
        sim.list("pods", Some("default"))
            .unwrap()
            .into_iter()
            .find(|p| p["metadata"]["deletionTimestamp"].is_string())
    });
    assert_eq!(doomed["metadata"]["deletionGracePeriodSeconds"], 30);
    let name = doomed["metadata"]["name"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(10), "the pod to be gone", || {
        sim.get("pods", "default", &name)
            .unwrap()
            .is_none()
            .then_some(())
    });
    let d = sim.get("deployments", "default", "g").unwrap().unwrap();
    assert_eq!(d["status"]["replicas"], 1);
    // An API delete is graceful too, unless the grace period is 0.
    let pod = sim.list("pods", Some("default")).unwrap().remove(0);
    let path = format!(
        "/api/v1/namespaces/default/pods/{}",
        pod["metadata"]["name"].as_str().unwrap()
    );
    let r = http(&sim, "DELETE", &path, &[], "");
    assert_eq!(r.status, 200);
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
    let r = http(
        &sim,
        "DELETE",
        &format!("{path}?gracePeriodSeconds=0"),
        &[],
        "",
    );
    assert_eq!(r.json()["kind"], "Status");
    assert_eq!(http(&sim, "GET", &path, &[], "").status, 404);
}
