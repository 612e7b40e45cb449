//! The controllers, run on one tick: garbage collection, the kubelet (pod lifecycle), and the
//! ReplicaSet, Deployment, StatefulSet and DaemonSet controllers.

mod daemonset;
mod deployment;
mod pods;
mod replicaset;
mod statefulset;

use crate::meta;
use crate::resources::{self, TYPES};
use crate::sim::{Shared, State};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub use pods::pod_log;

/// The workload annotation that makes the next rollout of a new pod template fail.
pub const FAIL_NEXT: &str = "sim.monoship.dev/fail-next";

/// The pod annotation recording how the simulator makes that pod fail.
pub const POD_FAILURE: &str = "sim.monoship.dev/failure";

/// How a rollout is made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// New pods never pull their image (`ErrImagePull`, then `ImagePullBackOff`).
    ImagePullBackOff,
    /// New pods start, exit 1, and restart with growing back-off.
    CrashLoopBackOff,
    /// New pods run but never become ready, so the Deployment exceeds its progress deadline.
    ProgressDeadlineExceeded,
    /// New pods stay `Pending`: their containers wait with `CreateContainerConfigError`
    /// (a missing secret).
    CreateContainerConfigError,
}

impl FailMode {
    pub fn parse(s: &str) -> Option<FailMode> {
        match s {
            "ImagePullBackOff" => Some(FailMode::ImagePullBackOff),
            "CrashLoopBackOff" => Some(FailMode::CrashLoopBackOff),
            "ProgressDeadlineExceeded" => Some(FailMode::ProgressDeadlineExceeded),
            "CreateContainerConfigError" => Some(FailMode::CreateContainerConfigError),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::ImagePullBackOff => "ImagePullBackOff",
            FailMode::CrashLoopBackOff => "CrashLoopBackOff",
            FailMode::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            FailMode::CreateContainerConfigError => "CreateContainerConfigError",
        }
    }
}

/// What the controllers remember between ticks that is not in the objects.
#[derive(Debug, Default)]
pub struct ControllerState {
    /// Failure modes by owner: a ReplicaSet uid, or `ns/controllerrevision-name`.
    pub failures: HashMap<String, FailMode>,
    pub pods: HashMap<String, pods::PodSim>,
    /// When each terminating pod's deletion started (by pod uid).
    pub terminating: HashMap<String, i64>,
    /// Event objects by (involved uid, reason, message), to count repeats as the event recorder does.
    pub events: HashMap<(String, String, String), String>,
}

/// One tick's view of time and configuration.
pub struct Ctx {
    pub now_ms: i64,
    pub now: String,
    pub tick_ms: i64,
    pub nodes: usize,
    pub unpullable: Vec<String>,
}

/// Runs the controllers forever, one pass per tick.
pub async fn run(shared: Arc<Shared>) {
    let mut iv = tokio::time::interval(shared.opts.tick.max(std::time::Duration::from_millis(5)));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        iv.tick().await;
        let ctx = Ctx {
            now_ms: shared.clock.now_ms(),
            now: shared.clock.now_rfc3339(),
            tick_ms: shared.opts.tick.as_millis().max(1) as i64,
            nodes: shared.opts.nodes.max(1),
            unpullable: shared
                .unpullable
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        };
        let mut state = shared.lock();
        tick(&mut state, &ctx);
    }
}

pub fn tick(st: &mut State, ctx: &Ctx) {
    collect_garbage(st);
    expire_events(st, ctx);
    pods::sync(st, ctx);
    replicaset::sync_all(st, ctx);
    deployment::sync_all(st, ctx);
    statefulset::sync_all(st, ctx);
    daemonset::sync_all(st, ctx);
}

/// Deletes objects whose owners are all gone (background cascading deletion).
fn collect_garbage(st: &mut State) {
    let uids = st.store.all_uids();
    let mut doomed = Vec::new();
    for (t, ns, name) in st.store.all_keys() {
        let Some(obj) = st.store.get(t, &ns, &name) else {
            continue;
        };
        let owners: Vec<&str> = meta::path(obj, &["metadata", "ownerReferences"])
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("uid").and_then(Value::as_str))
            .collect();
        if !owners.is_empty() && owners.iter().all(|u| !uids.contains(*u)) {
            doomed.push((t, ns, name));
        }
    }
    for (t, ns, name) in doomed {
        if let Some(obj) = st.store.delete(t, &ns, &name) {
            st.ctl.pods.remove(meta::uid(&obj));
            st.ctl.failures.remove(meta::uid(&obj));
        }
    }
}

/// Events live an hour, as with the apiserver's default `--event-ttl`.
fn expire_events(st: &mut State, ctx: &Ctx) {
    let cutoff = ctx.now_ms / 1000 - 3600;
    let old: Vec<(String, String)> = st
        .store
        .list(resources::EVENTS, None)
        .filter(|e| {
            meta::path_str(e, &["lastTimestamp"])
                .and_then(meta::parse_rfc3339)
                .is_some_and(|t| t < cutoff)
        })
        .map(|e| (meta::namespace(e).to_string(), meta::name(e).to_string()))
        .collect();
    for (ns, name) in old {
        st.store.delete(resources::EVENTS, &ns, &name);
    }
    if !st.ctl.events.is_empty() && st.ctl.events.len() > 4096 {
        st.ctl.events.clear();
    }
}

/// Stores a new object made by a controller (uid, creation time, generation filled in).
pub fn create(st: &mut State, ctx: &Ctx, rtype: usize, mut obj: Value) -> Value {
    let t = &TYPES[rtype];
    obj["apiVersion"] = json!(t.api_version());
    obj["kind"] = json!(t.kind);
    meta::set_path(&mut obj, &["metadata", "uid"], json!(meta::new_uid()));
    meta::set_path(&mut obj, &["metadata", "creationTimestamp"], json!(ctx.now));
    if t.generation {
        meta::set_path(&mut obj, &["metadata", "generation"], json!(1));
    }
    st.store.create(rtype, obj)
}

/// Records an Event about `involved`, counting repeats of the same reason and message.
pub fn event(
    st: &mut State,
    ctx: &Ctx,
    involved: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = meta::namespace(involved).to_string();
    let ns = if ns.is_empty() {
        "default".to_string()
    } else {
        ns
    };
    let key = (
        meta::uid(involved).to_string(),
        reason.to_string(),
        message.to_string(),
    );
    if let Some(name) = st.ctl.events.get(&key).cloned() {
        if let Some(mut e) = st.store.get(resources::EVENTS, &ns, &name).cloned() {
            let count = e["count"].as_i64().unwrap_or(1) + 1;
            e["count"] = json!(count);
            e["lastTimestamp"] = json!(ctx.now);
            st.store.update(resources::EVENTS, e);
            return;
        }
    }
    let name = format!("{}.{:016x}", meta::name(involved), meta::random_u64());
    let obj = json!({
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta::name(involved),
            "namespace": meta::namespace(involved), "uid": meta::uid(involved),
            "resourceVersion": involved["metadata"]["resourceVersion"],
        },
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component},
        "firstTimestamp": ctx.now, "lastTimestamp": ctx.now, "count": 1,
        "reportingComponent": component, "reportingInstance": "",
    });
    create(st, ctx, resources::EVENTS, obj);
    st.ctl.events.insert(key, name);
}

/// A pretend node.
pub fn node_object(i: usize, now: &str) -> Value {
    let name = node_name(i);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": format!("10.0.0.{}", 10 + i)}, {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "nodeInfo": {
                "architecture": "amd64", "bootID": format!("boot-{i}"), "containerRuntimeVersion": "containerd://1.7.0",
                "kernelVersion": "6.1.0", "kubeProxyVersion": "", "kubeletVersion": format!("v1.{}.0", crate::api::VERSION_MINOR),
                "machineID": format!("machine-{i}"), "operatingSystem": "linux", "osImage": "kube-sim", "systemUUID": format!("uuid-{i}"),
            },
        },
    })
}

/// `kube-sim-node-1`, ...
pub fn node_name(i: usize) -> String {
    format!("kube-sim-node-{i}")
}

/// Takes the `fail-next` annotation off a workload (it is consumed by the rollout it fails)
/// and returns its mode.
pub fn consume_fail_next(st: &mut State, rtype: usize, workload: &Value) -> Option<FailMode> {
    let mode = FailMode::parse(meta::annotation(workload, FAIL_NEXT)?)?;
    let mut w = st
        .store
        .get(rtype, meta::namespace(workload), meta::name(workload))?
        .clone();
    if let Some(a) = w
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(FAIL_NEXT);
    }
    st.store.update(rtype, w);
    Some(mode)
}

/// Whether a pod counts as ready (its `Ready` condition is true).
pub fn pod_ready(p: &Value) -> bool {
    meta::path(p, &["status", "conditions"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The active (not terminating) pods controlled by `owner` (by uid), in its namespace.
pub fn owned_pods(st: &State, owner: &Value) -> Vec<Value> {
    let uid = meta::uid(owner);
    st.store
        .list(resources::PODS, Some(meta::namespace(owner)))
        .filter(|p| meta::controller_uid(p) == Some(uid) && !terminating(p))
        .cloned()
        .collect()
}

/// Whether the object is being deleted (`metadata.deletionTimestamp` is set).
pub fn terminating(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Starts a pod's graceful deletion: it shows as `Terminating` until the kubelet removes it
/// (after two ticks: the containers are taken to stop at once on SIGTERM).
pub fn terminate_pod(st: &mut State, now_secs: i64, ns: &str, name: &str) -> Option<Value> {
    let mut p = st.store.get(resources::PODS, ns, name)?.clone();
    if terminating(&p) {
        return Some(p);
    }
    let grace = meta::path_i64(&p, &["spec", "terminationGracePeriodSeconds"]).unwrap_or(30);
    meta::set_path(
        &mut p,
        &["metadata", "deletionTimestamp"],
        json!(meta::format_rfc3339(now_secs + grace)),
    );
    meta::set_path(
        &mut p,
        &["metadata", "deletionGracePeriodSeconds"],
        json!(grace),
    );
    Some(st.store.update(resources::PODS, p))
}

/// A pod made from a template, owned by `owner`.
pub fn pod_from_template(
    template: &Value,
    name: &str,
    owner: &Value,
    labels: &[(&str, String)],
    failure: Option<FailMode>,
) -> Value {
    let mut md = template.get("metadata").cloned().unwrap_or(json!({}));
    if let Some(m) = md.as_object_mut() {
        m.remove("creationTimestamp");
    }
    md["name"] = json!(name);
    md["namespace"] = json!(meta::namespace(owner));
    md["ownerReferences"] = json!([meta::controller_ref(owner)]);
    for (k, v) in labels {
        meta::set_path(&mut md, &["labels", k], json!(v));
    }
    if let Some(f) = failure {
        meta::set_path(&mut md, &["annotations", POD_FAILURE], json!(f.as_str()));
    }
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    crate::defaults::pod_spec(&mut spec);
    json!({"metadata": md, "spec": spec, "status": {"phase": "Pending", "qosClass": "BestEffort"}})
}

/// The deployment's annotations that a new ReplicaSet copies.
pub fn copied_annotations(owner: &Value) -> serde_json::Map<String, Value> {
    const SKIP: &[&str] = &[
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    ];
    meta::path(owner, &["metadata", "annotations"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| !SKIP.contains(&k.as_str()) && !k.starts_with("sim.monoship.dev/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
