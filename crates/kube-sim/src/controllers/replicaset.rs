//! The ReplicaSet controller: keeps `spec.replicas` pods and reports their readiness.

use super::{create, event, owned_pods, pod_from_template, pod_ready, terminate_pod, Ctx};
use crate::meta;
use crate::resources;
use crate::sim::State;
use serde_json::{json, Value};

pub fn sync_all(st: &mut State, ctx: &Ctx) {
    for rs in st.store.list_owned(resources::REPLICASETS, None) {
        sync(st, ctx, rs);
    }
}

/// Ranks pods for deletion: unscheduled, then pending, then not ready, then ready; newer first.
fn deletion_rank(p: &Value) -> (u8, std::cmp::Reverse<String>) {
    let rank = if meta::path_str(p, &["spec", "nodeName"]).is_none_or(str::is_empty) {
        0
    } else if meta::path_str(p, &["status", "phase"]) == Some("Pending") {
        1
    } else if !pod_ready(p) {
        2
    } else {
        3
    };
    let created = meta::path_str(p, &["metadata", "creationTimestamp"])
        .unwrap_or("")
        .to_string();
    (rank, std::cmp::Reverse(created))
}

/// When the pod's `Ready` condition last turned true.
fn ready_since(p: &Value) -> Option<i64> {
    meta::path(p, &["status", "conditions"])?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .get("lastTransitionTime")?
        .as_str()
        .and_then(meta::parse_rfc3339)
}

fn sync(st: &mut State, ctx: &Ctx, rs: Value) {
    let want = meta::path_i64(&rs, &["spec", "replicas"])
        .unwrap_or(1)
        .max(0) as usize;
    let mut pods = owned_pods(st, &rs);
    let template = meta::path(&rs, &["spec", "template"])
        .cloned()
        .unwrap_or(json!({}));
    let failure = st.ctl.failures.get(meta::uid(&rs)).copied();
    while pods.len() < want {
        let name = format!("{}-{}", meta::name(&rs), meta::random_suffix(5));
        let pod = pod_from_template(&template, &name, &rs, &[], failure);
        let pod = create(st, ctx, resources::PODS, pod);
        event(
            st,
            ctx,
            &rs,
            "Normal",
            "SuccessfulCreate",
            &format!("Created pod: {name}"),
            "replicaset-controller",
        );
        pods.push(pod);
    }
    if pods.len() > want {
        pods.sort_by_key(deletion_rank);
        let extra = pods.len() - want;
        for p in pods.drain(..extra) {
            terminate_pod(st, ctx.now_ms / 1000, meta::namespace(&p), meta::name(&p));
            event(
                st,
                ctx,
                &rs,
                "Normal",
                "SuccessfulDelete",
                &format!("Deleted pod: {}", meta::name(&p)),
                "replicaset-controller",
            );
        }
    }
    let ready = pods.iter().filter(|p| pod_ready(p)).count();
    // Available: ready for at least `minReadySeconds`.
    let min_ready = meta::path_i64(&rs, &["spec", "minReadySeconds"]).unwrap_or(0);
    let available = pods
        .iter()
        .filter(|p| {
            pod_ready(p) && ready_since(p).is_none_or(|t| t + min_ready <= ctx.now_ms / 1000)
        })
        .count();
    let mut status = json!({
        "replicas": pods.len(),
        "fullyLabeledReplicas": pods.len(),
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": meta::path_i64(&rs, &["metadata", "generation"]).unwrap_or(1),
    });
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| k == "replicas" || k == "observedGeneration" || v.as_i64() != Some(0));
    }
    if rs.get("status") != Some(&status) {
        if let Some(mut cur) = st
            .store
            .get(
                resources::REPLICASETS,
                meta::namespace(&rs),
                meta::name(&rs),
            )
            .cloned()
        {
            cur["status"] = status;
            st.store.update(resources::REPLICASETS, cur);
        }
    }
}
