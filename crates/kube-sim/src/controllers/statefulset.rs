//! The StatefulSet controller: ordered pods `<name>-<ordinal>`, ControllerRevisions, and
//! RollingUpdate with `partition`.

use super::{
    consume_fail_next, create, event, owned_pods, pod_from_template, pod_ready, terminate_pod, Ctx,
};
use crate::meta;
use crate::resources;
use crate::sim::State;
use serde_json::{json, Value};

pub const REVISION_LABEL: &str = "controller-revision-hash";

pub fn sync_all(st: &mut State, ctx: &Ctx) {
    for s in st.store.list_owned(resources::STATEFULSETS, None) {
        sync(st, ctx, &s);
    }
}

/// The patch kubectl and the controllers store in a ControllerRevision: the template with
/// `$patch: replace`.
pub fn revision_data(template: &Value) -> Value {
    let mut t = template.clone();
    t["$patch"] = json!("replace");
    json!({"spec": {"template": t}})
}

/// Finds or creates the ControllerRevision for the owner's current template and returns
/// `(revision name, hash, whether it was created now)`. A template that ran before gets its
/// old revision back, renumbered as the newest.
pub fn ensure_revision(st: &mut State, ctx: &Ctx, owner: &Value) -> (String, String, bool) {
    let ns = meta::namespace(owner).to_string();
    let template = meta::path(owner, &["spec", "template"])
        .cloned()
        .unwrap_or(json!({}));
    let hash = meta::template_hash(&template, 0);
    let name = format!("{}-{hash}", meta::name(owner));
    let revisions = owned_revisions(st, owner);
    let max = revisions
        .iter()
        .map(|r| r["revision"].as_i64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    if let Some(mut r) = revisions.into_iter().find(|r| meta::name(r) == name) {
        if r["revision"].as_i64().unwrap_or(0) < max {
            r["revision"] = json!(max + 1);
            st.store.update(resources::CONTROLLERREVISIONS, r);
        }
        return (name, hash, false);
    }
    let mut labels = meta::path(owner, &["spec", "selector", "matchLabels"])
        .cloned()
        .unwrap_or(json!({}));
    labels["controller.kubernetes.io/hash"] = json!(hash);
    let cr = json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [meta::controller_ref(owner)]},
        "data": revision_data(&template),
        "revision": max + 1,
    });
    create(st, ctx, resources::CONTROLLERREVISIONS, cr);
    (name, hash, true)
}

pub fn owned_revisions(st: &State, owner: &Value) -> Vec<Value> {
    let uid = meta::uid(owner);
    st.store
        .list(resources::CONTROLLERREVISIONS, Some(meta::namespace(owner)))
        .filter(|r| meta::controller_uid(r) == Some(uid))
        .cloned()
        .collect()
}

/// Deletes the oldest revisions beyond `revisionHistoryLimit`, never one in use.
pub fn trim_revisions(st: &mut State, owner: &Value, in_use: &[&str]) {
    let limit = meta::path_i64(owner, &["spec", "revisionHistoryLimit"])
        .unwrap_or(10)
        .max(0) as usize;
    let mut revs = owned_revisions(st, owner);
    revs.retain(|r| !in_use.contains(&meta::name(r)));
    if revs.len() <= limit {
        return;
    }
    revs.sort_by_key(|r| r["revision"].as_i64().unwrap_or(0));
    let n = revs.len() - limit;
    for r in revs.into_iter().take(n) {
        st.store.delete(
            resources::CONTROLLERREVISIONS,
            meta::namespace(&r),
            meta::name(&r),
        );
    }
}

fn template_of_revision(st: &State, ns: &str, rev: &str) -> Option<Value> {
    let cr = st.store.get(resources::CONTROLLERREVISIONS, ns, rev)?;
    let mut t = meta::path(cr, &["data", "spec", "template"])?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    Some(t)
}

fn ordinal(pod: &Value, set: &str) -> Option<i64> {
    meta::name(pod)
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn sync(st: &mut State, ctx: &Ctx, set: &Value) {
    let ns = meta::namespace(set).to_string();
    let name = meta::name(set).to_string();
    let (update_rev, _, created) = ensure_revision(st, ctx, set);
    if created {
        if let Some(mode) = consume_fail_next(st, resources::STATEFULSETS, set) {
            st.ctl.failures.insert(format!("{ns}/{update_rev}"), mode);
        }
    }
    let current_rev = meta::path_str(set, &["status", "currentRevision"])
        .filter(|r| {
            st.store
                .get(resources::CONTROLLERREVISIONS, &ns, r)
                .is_some()
        })
        .unwrap_or(&update_rev)
        .to_string();
    let want = meta::path_i64(set, &["spec", "replicas"])
        .unwrap_or(1)
        .max(0);
    let rolling = meta::path_str(set, &["spec", "updateStrategy", "type"])
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = meta::path_i64(
        set,
        &["spec", "updateStrategy", "rollingUpdate", "partition"],
    )
    .unwrap_or(0);
    let parallel = meta::path_str(set, &["spec", "podManagementPolicy"]) == Some("Parallel");
    let mut pods = owned_pods(st, set);
    pods.sort_by_key(|p| ordinal(p, &name).unwrap_or(i64::MAX));
    let rev_of = |p: &Value| meta::label(p, REVISION_LABEL).unwrap_or("").to_string();

    // Create missing ordinals in order; with OrderedReady, only after the ones before are ready.
    for ord in 0..want {
        if pods.iter().any(|p| ordinal(p, &name) == Some(ord)) {
            continue;
        }
        let predecessors_ready = pods
            .iter()
            .filter(|p| ordinal(p, &name).is_some_and(|o| o < ord))
            .all(pod_ready);
        if !parallel && !predecessors_ready {
            break;
        }
        let rev = if rolling && ord < partition {
            current_rev.clone()
        } else {
            update_rev.clone()
        };
        let Some(template) = template_of_revision(st, &ns, &rev) else {
            break;
        };
        let pod_name = format!("{name}-{ord}");
        if st.store.get(resources::PODS, &ns, &pod_name).is_some() {
            // The previous pod of this ordinal is still terminating.
            if parallel {
                continue;
            }
            break;
        }
        let failure = st.ctl.failures.get(&format!("{ns}/{rev}")).copied();
        let mut pod = pod_from_template(
            &template,
            &pod_name,
            set,
            &[
                (REVISION_LABEL, rev.clone()),
                ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                ("apps.kubernetes.io/pod-index", ord.to_string()),
            ],
            failure,
        );
        meta::set_path(&mut pod, &["spec", "hostname"], json!(pod_name));
        if let Some(svc) = meta::path_str(set, &["spec", "serviceName"]).filter(|s| !s.is_empty()) {
            meta::set_path(&mut pod, &["spec", "subdomain"], json!(svc));
        }
        let pod = create(st, ctx, resources::PODS, pod);
        let msg = format!("create Pod {pod_name} in StatefulSet {name} successful");
        event(
            st,
            ctx,
            set,
            "Normal",
            "SuccessfulCreate",
            &msg,
            "statefulset-controller",
        );
        pods.push(pod);
        if !parallel {
            break;
        }
    }
    let all_ready = pods.len() as i64 >= want && pods.iter().all(pod_ready);
    // Remove ordinals beyond the replica count, highest first.
    let mut condemned: Vec<Value> = pods
        .iter()
        .filter(|p| ordinal(p, &name).is_none_or(|o| o >= want))
        .cloned()
        .collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(p, &name).unwrap_or(i64::MAX)));
    if let Some(p) = condemned.first() {
        if parallel || pods.iter().all(pod_ready) {
            terminate_pod(st, ctx.now_ms / 1000, &ns, meta::name(p));
            let msg = format!(
                "delete Pod {} in StatefulSet {name} successful",
                meta::name(p)
            );
            event(
                st,
                ctx,
                set,
                "Normal",
                "SuccessfulDelete",
                &msg,
                "statefulset-controller",
            );
            let gone = meta::name(p).to_string();
            pods.retain(|x| meta::name(x) != gone);
        }
    } else if rolling && all_ready {
        // Roll one pod at a time, highest ordinal first, down to the partition.
        let stale = pods
            .iter()
            .rev()
            .find(|p| ordinal(p, &name).is_some_and(|o| o >= partition) && rev_of(p) != update_rev)
            .cloned();
        if let Some(p) = stale {
            terminate_pod(st, ctx.now_ms / 1000, &ns, meta::name(&p));
            let msg = format!(
                "delete Pod {} in StatefulSet {name} successful",
                meta::name(&p)
            );
            event(
                st,
                ctx,
                set,
                "Normal",
                "SuccessfulDelete",
                &msg,
                "statefulset-controller",
            );
            pods.retain(|x| meta::name(x) != meta::name(&p));
        }
    }

    let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
    let current = pods.iter().filter(|p| rev_of(p) == current_rev).count() as i64;
    let updated = pods.iter().filter(|p| rev_of(p) == update_rev).count() as i64;
    let count = pods.len() as i64;
    let (mut current_rev, mut current) = (current_rev, current);
    if rolling && updated == count && ready == count && count == want {
        current_rev = update_rev.clone();
        current = updated;
    }
    let mut status = json!({
        "observedGeneration": meta::path_i64(set, &["metadata", "generation"]).unwrap_or(1),
        "replicas": count, "readyReplicas": ready, "availableReplicas": ready,
        "currentReplicas": current, "updatedReplicas": updated,
        "currentRevision": current_rev, "updateRevision": update_rev, "collisionCount": 0,
    });
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| {
            matches!(
                k.as_str(),
                "observedGeneration" | "replicas" | "availableReplicas" | "collisionCount"
            ) || v.as_i64() != Some(0)
        });
    }
    trim_revisions(st, set, &[&current_rev, &update_rev]);
    let Some(mut cur) = st.store.get(resources::STATEFULSETS, &ns, &name).cloned() else {
        return;
    };
    if cur.get("status") != Some(&status) {
        cur["status"] = status;
        st.store.update(resources::STATEFULSETS, cur);
    }
}
