//! The DaemonSet controller: one pod per pretend node, rolled `maxUnavailable` at a time.

use super::statefulset::{ensure_revision, trim_revisions, REVISION_LABEL};
use super::{
    consume_fail_next, create, event, node_name, owned_pods, pod_from_template, pod_ready,
    terminate_pod, Ctx,
};
use crate::meta;
use crate::resources;
use crate::sim::State;
use serde_json::{json, Value};

pub fn sync_all(st: &mut State, ctx: &Ctx) {
    for ds in st.store.list_owned(resources::DAEMONSETS, None) {
        sync(st, ctx, &ds);
    }
}

fn sync(st: &mut State, ctx: &Ctx, ds: &Value) {
    let ns = meta::namespace(ds).to_string();
    let name = meta::name(ds).to_string();
    let (rev_name, hash, created) = ensure_revision(st, ctx, ds);
    if created {
        if let Some(mode) = consume_fail_next(st, resources::DAEMONSETS, ds) {
            st.ctl.failures.insert(format!("{ns}/{rev_name}"), mode);
        }
    }
    let failure = st.ctl.failures.get(&format!("{ns}/{rev_name}")).copied();
    let generation = meta::path_i64(ds, &["metadata", "generation"]).unwrap_or(1);
    let nodes: Vec<String> = (1..=ctx.nodes).map(node_name).collect();
    let desired = nodes.len() as i64;
    let rolling = meta::path_str(ds, &["spec", "updateStrategy", "type"])
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let mut max_unavailable = meta::int_or_percent(
        meta::path(
            ds,
            &["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"],
        ),
        desired,
        "1",
        true,
    );
    if max_unavailable <= 0 {
        max_unavailable = 1;
    }
    let template = meta::path(ds, &["spec", "template"])
        .cloned()
        .unwrap_or(json!({}));
    let mut pods = owned_pods(st, ds);
    let on = |pods: &[Value], n: &str| -> Vec<Value> {
        pods.iter()
            .filter(|p| meta::path_str(p, &["spec", "nodeName"]) == Some(n))
            .cloned()
            .collect()
    };
    for n in &nodes {
        if !on(&pods, n).is_empty() {
            continue;
        }
        let pod_name = format!("{name}-{}", meta::random_suffix(5));
        let mut pod = pod_from_template(
            &template,
            &pod_name,
            ds,
            &[
                (REVISION_LABEL, hash.clone()),
                ("pod-template-generation", generation.to_string()),
            ],
            failure,
        );
        meta::set_path(&mut pod, &["spec", "nodeName"], json!(n));
        let pod = create(st, ctx, resources::PODS, pod);
        event(
            st,
            ctx,
            ds,
            "Normal",
            "SuccessfulCreate",
            &format!("Created pod: {pod_name}"),
            "daemonset-controller",
        );
        pods.push(pod);
    }
    if rolling {
        let mut unavailable = nodes
            .iter()
            .filter(|n| !on(&pods, n).iter().any(pod_ready))
            .count() as i64;
        let mut stale: Vec<Value> = pods
            .iter()
            .filter(|p| meta::label(p, REVISION_LABEL) != Some(hash.as_str()))
            .cloned()
            .collect();
        // Unready old pods go first; they cost no availability.
        stale.sort_by_key(pod_ready);
        for p in stale {
            let costs = pod_ready(&p);
            if costs && unavailable >= max_unavailable {
                break;
            }
            terminate_pod(st, ctx.now_ms / 1000, &ns, meta::name(&p));
            event(
                st,
                ctx,
                ds,
                "Normal",
                "SuccessfulDelete",
                &format!("Deleted pod: {}", meta::name(&p)),
                "daemonset-controller",
            );
            pods.retain(|x| meta::name(x) != meta::name(&p));
            if costs {
                unavailable += 1;
            }
        }
    }
    let scheduled = nodes.iter().filter(|n| !on(&pods, n).is_empty()).count() as i64;
    let ready = nodes
        .iter()
        .filter(|n| on(&pods, n).iter().any(pod_ready))
        .count() as i64;
    let updated = nodes
        .iter()
        .filter(|n| {
            on(&pods, n)
                .iter()
                .any(|p| meta::label(p, REVISION_LABEL) == Some(hash.as_str()))
        })
        .count() as i64;
    let mut status = json!({
        "observedGeneration": generation,
        "desiredNumberScheduled": desired, "currentNumberScheduled": scheduled, "numberMisscheduled": 0,
        "numberReady": ready, "numberAvailable": ready, "numberUnavailable": desired - ready,
        "updatedNumberScheduled": updated,
    });
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| {
            matches!(
                k.as_str(),
                "observedGeneration"
                    | "desiredNumberScheduled"
                    | "currentNumberScheduled"
                    | "numberMisscheduled"
                    | "numberReady"
            ) || v.as_i64() != Some(0)
        });
    }
    trim_revisions(st, ds, &[&rev_name]);
    let Some(mut cur) = st.store.get(resources::DAEMONSETS, &ns, &name).cloned() else {
        return;
    };
    if cur.get("status") != Some(&status) {
        cur["status"] = status;
        st.store.update(resources::DAEMONSETS, cur);
    }
}
