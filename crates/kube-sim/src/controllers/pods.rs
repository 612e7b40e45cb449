//! A pretend kubelet: schedules pods, "pulls" images and runs containers, or fails them the
//! way a real kubelet reports failures.

use super::{event, Ctx, FailMode, POD_FAILURE};
use crate::meta;
use crate::resources;
use crate::sim::State;
use serde_json::{json, Value};

/// What the kubelet remembers about a pod.
#[derive(Debug, Clone)]
pub struct PodSim {
    created_ms: i64,
    /// 0 created, 1 scheduled, 2 containers started (or failing).
    stage: u8,
    started_at: String,
    /// Per container: how it fails, if it does.
    modes: Vec<Option<FailMode>>,
    crash: Vec<Crash>,
    pull_backoff: bool,
    ip: String,
    container_id: String,
}

#[derive(Debug, Clone, Default)]
struct Crash {
    /// 0 running, 1 terminated, 2 waiting in back-off.
    phase: u8,
    since_ms: i64,
    restarts: i64,
    started_at: String,
    last_terminated: Option<Value>,
}

fn containers(pod: &Value) -> Vec<Value> {
    meta::path(pod, &["spec", "containers"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// `nginx` → `docker.io/library/nginx:latest`, as containerd names images in messages.
fn full_ref(image: &str) -> String {
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let base = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[base..].rfind(':') {
        Some(i) => (&name_tag[..base + i], Some(&name_tag[base + i + 1..])),
        None => (name_tag, None),
    };
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let name = if has_registry {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    match (tag, digest) {
        (Some(t), Some(d)) => format!("{name}:{t}@{d}"),
        (None, Some(d)) => format!("{name}@{d}"),
        (t, None) => format!("{name}:{}", t.unwrap_or("latest")),
    }
}

fn image_id(image: &str) -> String {
    let r = full_ref(image);
    if r.contains('@') {
        r
    } else {
        let name = r.rsplit_once(':').map(|(n, _)| n).unwrap_or(&r);
        format!("{name}@sha256:{:08x}{:056x}", meta::fnv32a(r.as_bytes()), 0)
    }
}

fn pull_error(image: &str) -> String {
    let r = full_ref(image);
    format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{r}\": failed to resolve reference \"{r}\": {r}: not found")
}

/// What the kubelet says when a container's configuration cannot be built.
fn config_error(container: &str) -> String {
    format!("secret \"{container}-config\" not found")
}

/// The text `kubectl logs` gets for a pod.
pub fn pod_log(pod: &Value) -> String {
    match meta::annotation(pod, POD_FAILURE) {
        Some("CrashLoopBackOff") => {
            "kube-sim: starting\nkube-sim: fatal error, exiting with status 1\n".into()
        }
        _ => "kube-sim: started\n".into(),
    }
}

pub fn sync(st: &mut State, ctx: &Ctx) {
    let pods = st.store.list_owned(resources::PODS, None);
    let live: std::collections::HashSet<String> =
        pods.iter().map(|p| meta::uid(p).to_string()).collect();
    st.ctl.pods.retain(|uid, _| live.contains(uid));
    st.ctl.terminating.retain(|uid, _| live.contains(uid));
    for pod in pods {
        sync_pod(st, ctx, pod);
    }
}

fn sync_pod(st: &mut State, ctx: &Ctx, mut pod: Value) {
    let uid = meta::uid(&pod).to_string();
    if super::terminating(&pod) {
        // The containers stop at once; the pod is gone two ticks after deletion started.
        let since = *st.ctl.terminating.entry(uid.clone()).or_insert(ctx.now_ms);
        if ctx.now_ms - since >= 2 * ctx.tick_ms {
            st.store
                .delete(resources::PODS, meta::namespace(&pod), meta::name(&pod));
            st.ctl.terminating.remove(&uid);
            st.ctl.pods.remove(&uid);
        }
        return;
    }
    let cs = containers(&pod);
    let sim = st.ctl.pods.entry(uid.clone()).or_insert_with(|| {
        let annotated = meta::annotation(&pod, POD_FAILURE).and_then(FailMode::parse);
        let modes = cs
            .iter()
            .map(|c| {
                let img = c["image"].as_str().unwrap_or("");
                if ctx.unpullable.iter().any(|u| u == img) {
                    Some(FailMode::ImagePullBackOff)
                } else {
                    annotated
                }
            })
            .collect();
        PodSim {
            created_ms: ctx.now_ms,
            stage: 0,
            started_at: String::new(),
            modes,
            crash: vec![Crash::default(); cs.len()],
            pull_backoff: false,
            ip: format!(
                "10.244.{}.{}",
                meta::random_u64() % 250 + 1,
                meta::random_u64() % 250 + 2
            ),
            container_id: format!("{:016x}{:016x}", meta::random_u64(), meta::random_u64()),
        }
    });
    let mut sim = sim.clone();
    let ticks = (ctx.now_ms - sim.created_ms) / ctx.tick_ms;
    let mut events: Vec<(&str, &str, String)> = Vec::new();
    let pod_ref = format!("{}_{}({})", meta::name(&pod), meta::namespace(&pod), uid);

    if sim.stage == 0 && ticks >= 1 {
        sim.stage = 1;
        if meta::path_str(&pod, &["spec", "nodeName"]).is_none_or(str::is_empty) {
            let n = (meta::fnv32a(uid.as_bytes()) as usize % ctx.nodes) + 1;
            meta::set_path(&mut pod, &["spec", "nodeName"], json!(super::node_name(n)));
        }
        let node = meta::path_str(&pod, &["spec", "nodeName"])
            .unwrap_or("")
            .to_string();
        events.push((
            "Normal",
            "Scheduled",
            format!(
                "Successfully assigned {}/{} to {node}",
                meta::namespace(&pod),
                meta::name(&pod)
            ),
        ));
    }
    if sim.stage == 1 && ticks >= 2 {
        sim.stage = 2;
        sim.started_at = ctx.now.clone();
        for (i, c) in cs.iter().enumerate() {
            let (name, image) = (
                c["name"].as_str().unwrap_or(""),
                c["image"].as_str().unwrap_or(""),
            );
            match sim.modes.get(i).copied().flatten() {
                Some(FailMode::ImagePullBackOff) => {
                    events.push(("Normal", "Pulling", format!("Pulling image \"{image}\"")));
                    events.push((
                        "Warning",
                        "Failed",
                        format!("Failed to pull image \"{image}\": {}", pull_error(image)),
                    ));
                    events.push(("Warning", "Failed", "Error: ErrImagePull".into()));
                }
                Some(FailMode::CreateContainerConfigError) => {
                    events.push((
                        "Normal",
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    ));
                    events.push((
                        "Warning",
                        "Failed",
                        format!("Error: {}", config_error(name)),
                    ));
                }
                mode => {
                    events.push((
                        "Normal",
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    ));
                    events.push(("Normal", "Created", format!("Created container: {name}")));
                    events.push(("Normal", "Started", format!("Started container {name}")));
                    if mode == Some(FailMode::CrashLoopBackOff) {
                        sim.crash[i] = Crash {
                            phase: 0,
                            since_ms: ctx.now_ms,
                            restarts: 0,
                            started_at: ctx.now.clone(),
                            last_terminated: None,
                        };
                    }
                }
            }
        }
    }
    if sim.stage == 2 {
        if !sim.pull_backoff && ticks >= 4 && sim.modes.contains(&Some(FailMode::ImagePullBackOff))
        {
            sim.pull_backoff = true;
            for (i, c) in cs.iter().enumerate() {
                if sim.modes.get(i).copied().flatten() == Some(FailMode::ImagePullBackOff) {
                    let image = c["image"].as_str().unwrap_or("");
                    events.push((
                        "Normal",
                        "BackOff",
                        format!("Back-off pulling image \"{image}\""),
                    ));
                    events.push(("Warning", "Failed", "Error: ImagePullBackOff".into()));
                }
            }
        }
        for (i, c) in cs.iter().enumerate() {
            let mode = sim.modes.get(i).copied().flatten();
            let name = c["name"].as_str().unwrap_or("");
            if mode == Some(FailMode::ProgressDeadlineExceeded) && ticks == 3 {
                events.push((
                    "Warning",
                    "Unhealthy",
                    "Readiness probe failed: HTTP probe failed with statuscode: 503".into(),
                ));
            }
            if mode != Some(FailMode::CrashLoopBackOff) {
                continue;
            }
            let cr = &mut sim.crash[i];
            let elapsed = (ctx.now_ms - cr.since_ms) / ctx.tick_ms;
            let backoff_ticks = (10_i64 << (cr.restarts - 1).clamp(0, 2)).min(50);
            match cr.phase {
                0 if elapsed >= 1 => {
                    cr.phase = 1;
                    cr.since_ms = ctx.now_ms;
                    cr.last_terminated =
                        Some(json!({"terminated": {"exitCode": 1, "reason": "Error",
                        "message": "kube-sim: fatal error, exiting with status 1",
                        "startedAt": cr.started_at, "finishedAt": ctx.now,
                        "containerID": format!("containerd://{}{i}", sim.container_id)}}));
                    cr.restarts += 1;
                }
                1 if elapsed >= 2 => {
                    cr.phase = 2;
                    cr.since_ms = ctx.now_ms;
                    events.push((
                        "Warning",
                        "BackOff",
                        format!("Back-off restarting failed container {name} in pod {pod_ref}"),
                    ));
                }
                2 if elapsed >= backoff_ticks => {
                    cr.phase = 0;
                    cr.since_ms = ctx.now_ms;
                    cr.started_at = ctx.now.clone();
                    let image = c["image"].as_str().unwrap_or("");
                    events.push((
                        "Normal",
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    ));
                    events.push(("Normal", "Created", format!("Created container: {name}")));
                    events.push(("Normal", "Started", format!("Started container {name}")));
                }
                _ => {}
            }
        }
    }
    pod["status"] = status(&pod, &sim, &cs, ctx);
    st.ctl.pods.insert(uid, sim);
    let stored = st.store.update(resources::PODS, pod);
    for (t, reason, msg) in events {
        let from = if reason == "Scheduled" {
            "default-scheduler"
        } else {
            "kubelet"
        };
        event(st, ctx, &stored, t, reason, &msg, from);
    }
}

fn cond(t: &str, ok: bool, now: &str, reason: Option<&str>, msg: Option<String>) -> Value {
    let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = msg {
        c["message"] = json!(m);
    }
    c
}

fn status(pod: &Value, sim: &PodSim, cs: &[Value], ctx: &Ctx) -> Value {
    let since = if sim.started_at.is_empty() {
        ctx.now.clone()
    } else {
        sim.started_at.clone()
    };
    let created = meta::path_str(pod, &["metadata", "creationTimestamp"])
        .unwrap_or(&ctx.now)
        .to_string();
    if sim.stage == 0 {
        return json!({"phase": "Pending", "qosClass": "BestEffort"});
    }
    let node_ip = "10.0.0.11";
    if sim.stage == 1 {
        return json!({"phase": "Pending", "qosClass": "BestEffort", "hostIP": node_ip, "startTime": created,
            "conditions": [cond("PodScheduled", true, &created, None, None)],
            "containerStatuses": cs.iter().map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false,
                "restartCount": 0, "started": false, "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}})).collect::<Vec<_>>()});
    }
    let mut statuses = Vec::new();
    let mut unready = Vec::new();
    let mut pending = false;
    for (i, c) in cs.iter().enumerate() {
        let name = c["name"].as_str().unwrap_or("");
        let image = c["image"].as_str().unwrap_or("");
        let cid = format!("containerd://{}{i}", sim.container_id);
        let running = json!({"running": {"startedAt": since}});
        let (state, last, ready, started, restarts, id) = match sim.modes.get(i).copied().flatten()
        {
            None => (running, json!({}), true, true, 0, image_id(image)),
            Some(FailMode::ProgressDeadlineExceeded) => {
                (running, json!({}), false, true, 0, image_id(image))
            }
            Some(FailMode::ImagePullBackOff) => {
                pending = true;
                let w = if sim.pull_backoff {
                    json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{image}\": ErrImagePull: {}", pull_error(image))}})
                } else {
                    json!({"waiting": {"reason": "ErrImagePull", "message": pull_error(image)}})
                };
                (w, json!({}), false, false, 0, String::new())
            }
            Some(FailMode::CreateContainerConfigError) => {
                pending = true;
                let w = json!({"waiting": {"reason": "CreateContainerConfigError", "message": config_error(name)}});
                (w, json!({}), false, false, 0, image_id(image))
            }
            Some(FailMode::CrashLoopBackOff) => {
                let cr = &sim.crash[i];
                let last = cr.last_terminated.clone().unwrap_or(json!({}));
                let st = match cr.phase {
                    0 => json!({"running": {"startedAt": cr.started_at}}),
                    1 => last.clone(),
                    _ => json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                        "back-off {}s restarting failed container={name} pod={}_{}({})",
                        10 << (cr.restarts - 1).clamp(0, 5), meta::name(pod), meta::namespace(pod), meta::uid(pod))}}),
                };
                // Just terminated: the run before this one (a kubelet keeps one), if any.
                let last = if cr.phase == 1 && cr.restarts <= 1 {
                    json!({})
                } else {
                    last
                };
                (st, last, false, cr.phase == 0, cr.restarts, image_id(image))
            }
        };
        if !ready {
            unready.push(name.to_string());
        }
        let mut s = json!({"name": name, "image": image, "imageID": id, "ready": ready, "restartCount": restarts,
            "started": started, "state": state, "lastState": last});
        if !pending || started {
            s["containerID"] = json!(cid);
        }
        statuses.push(s);
    }
    let all_ready = unready.is_empty();
    let not_ready_msg = format!("containers with unready status: [{}]", unready.join(" "));
    let reason = (!all_ready).then_some("ContainersNotReady");
    let msg = (!all_ready).then(|| not_ready_msg.clone());
    json!({
        "phase": if pending { "Pending" } else { "Running" },
        "qosClass": "BestEffort",
        "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
        "podIP": sim.ip, "podIPs": [{"ip": sim.ip}],
        "startTime": created,
        "conditions": [
            cond("PodReadyToStartContainers", true, &since, None, None),
            cond("Initialized", true, &created, None, None),
            cond("Ready", all_ready, &since, reason, msg.clone()),
            cond("ContainersReady", all_ready, &since, reason, msg),
            cond("PodScheduled", true, &created, None, None),
        ],
        "containerStatuses": statuses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_are_expanded_like_containerd() {
        assert_eq!(full_ref("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full_ref("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(full_ref("org/app:v1"), "docker.io/org/app:v1");
        assert_eq!(
            full_ref("127.0.0.1:5000/svc/api@sha256:ab"),
            "127.0.0.1:5000/svc/api@sha256:ab"
        );
        assert_eq!(full_ref("ghcr.io/o/a:1"), "ghcr.io/o/a:1");
    }
}
