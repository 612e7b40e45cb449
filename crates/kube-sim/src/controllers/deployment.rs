//! The Deployment controller: one ReplicaSet per pod template (named
//! `<deployment>-<pod-template-hash>`), revisions, RollingUpdate and Recreate, and the
//! status and conditions `kubectl rollout status` reads.

use super::{consume_fail_next, copied_annotations, create, event, Ctx};
use crate::meta;
use crate::resources;
use crate::sim::State;
use serde_json::{json, Value};

const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX: &str = "deployment.kubernetes.io/max-replicas";
const HASH: &str = "pod-template-hash";

pub fn sync_all(st: &mut State, ctx: &Ctx) {
    for d in st.store.list_owned(resources::DEPLOYMENTS, None) {
        sync(st, ctx, &d);
    }
}

fn revision(o: &Value) -> i64 {
    meta::annotation(o, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas(o: &Value) -> i64 {
    meta::path_i64(o, &["spec", "replicas"]).unwrap_or(0)
}

fn status_int(o: &Value, k: &str) -> i64 {
    meta::path_i64(o, &["status", k]).unwrap_or(0)
}

/// The template without the `pod-template-hash` label, for comparing a ReplicaSet's
/// template with the Deployment's.
fn without_hash(tpl: &Value) -> Value {
    let mut t = tpl.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(HASH);
    }
    t
}

/// Sets a condition as the deployment controller does: unchanged when status and reason
/// are the same; `lastTransitionTime` kept when only the reason changes.
fn set_condition(
    conds: &mut Vec<Value>,
    t: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
    touch: bool,
) {
    let mut c = json!({"type": t, "status": status, "lastUpdateTime": now, "lastTransitionTime": now, "reason": reason, "message": message});
    if let Some(i) = conds.iter().position(|x| x["type"] == t) {
        let cur = &conds[i];
        if cur["status"] == status && cur["reason"] == reason && !touch {
            return;
        }
        if cur["status"] == status {
            c["lastTransitionTime"] = cur["lastTransitionTime"].clone();
        }
        conds[i] = c;
    } else {
        conds.push(c);
    }
}

fn scale(st: &mut State, ctx: &Ctx, d: &Value, rs: &mut Value, to: i64, max_replicas: i64) {
    let from = replicas(rs);
    let mut cur = st
        .store
        .get(resources::REPLICASETS, meta::namespace(rs), meta::name(rs))
        .cloned()
        .unwrap_or_else(|| rs.clone());
    meta::set_path(&mut cur, &["spec", "replicas"], json!(to));
    meta::set_path(
        &mut cur,
        &["metadata", "annotations", DESIRED],
        json!(replicas(d).to_string()),
    );
    meta::set_path(
        &mut cur,
        &["metadata", "annotations", MAX],
        json!(max_replicas.to_string()),
    );
    *rs = st.store.update(resources::REPLICASETS, cur);
    if from != to {
        let dir = if to > from { "up" } else { "down" };
        let msg = format!(
            "Scaled {dir} replica set {} from {from} to {to}",
            meta::name(rs)
        );
        event(
            st,
            ctx,
            d,
            "Normal",
            "ScalingReplicaSet",
            &msg,
            "deployment-controller",
        );
    }
}

fn sync(st: &mut State, ctx: &Ctx, d: &Value) {
    if d.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return;
    }
    let ns = meta::namespace(d).to_string();
    let uid = meta::uid(d).to_string();
    let name = meta::name(d).to_string();
    let mut all: Vec<Value> = st
        .store
        .list(resources::REPLICASETS, Some(&ns))
        .filter(|rs| meta::controller_uid(rs) == Some(uid.as_str()))
        .cloned()
        .collect();
    let template = meta::path(d, &["spec", "template"])
        .cloned()
        .unwrap_or(json!({}));
    let want = replicas(d);
    let paused = meta::path(d, &["spec", "paused"]).and_then(Value::as_bool) == Some(true);
    let strategy = meta::path_str(d, &["spec", "strategy", "type"])
        .unwrap_or("RollingUpdate")
        .to_string();
    let max_surge = if strategy == "RollingUpdate" {
        meta::int_or_percent(
            meta::path(d, &["spec", "strategy", "rollingUpdate", "maxSurge"]),
            want,
            "25%",
            true,
        )
    } else {
        0
    };
    let mut max_unavailable = if strategy == "RollingUpdate" {
        meta::int_or_percent(
            meta::path(d, &["spec", "strategy", "rollingUpdate", "maxUnavailable"]),
            want,
            "25%",
            false,
        )
    } else {
        0
    };
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    max_unavailable = max_unavailable.min(want);
    let mut conds: Vec<Value> = meta::path(d, &["status", "conditions"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut annotations = meta::path(d, &["metadata", "annotations"])
        .cloned()
        .unwrap_or(json!({}));
    let has_deadline = meta::path_i64(d, &["spec", "progressDeadlineSeconds"]).is_some();

    let want_tpl = without_hash(&template);
    let new_idx = all.iter().position(|rs| {
        meta::path(rs, &["spec", "template"]).map(without_hash) == Some(want_tpl.clone())
    });
    let max_old_rev = all
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_idx)
        .map(|(_, rs)| revision(rs))
        .max()
        .unwrap_or(0);

    let mut new_rs: Option<Value> = None;
    if let Some(i) = new_idx {
        let mut rs = all.remove(i);
        let rev = revision(&rs);
        let mut changed = false;
        let mut a = copied_annotations(d);
        if rev <= max_old_rev {
            // A template that ran before (a rollback): its ReplicaSet becomes the newest revision.
            let mut history: Vec<String> = meta::annotation(&rs, REVISION_HISTORY)
                .map(|h| h.split(',').map(String::from).collect())
                .unwrap_or_default();
            if rev > 0 {
                history.push(rev.to_string());
            }
            a.insert(REVISION.into(), json!((max_old_rev + 1).to_string()));
            a.insert(REVISION_HISTORY.into(), json!(history.join(",")));
        } else {
            a.insert(REVISION.into(), json!(rev.to_string()));
            if let Some(h) = meta::annotation(&rs, REVISION_HISTORY) {
                a.insert(REVISION_HISTORY.into(), json!(h));
            }
        }
        for k in [DESIRED, MAX] {
            if let Some(v) = meta::annotation(&rs, k) {
                a.insert(k.into(), json!(v));
            }
        }
        if meta::path(&rs, &["metadata", "annotations"]) != Some(&Value::Object(a.clone())) {
            meta::set_path(&mut rs, &["metadata", "annotations"], Value::Object(a));
            changed = true;
        }
        if changed {
            rs = st.store.update(resources::REPLICASETS, rs);
        }
        if meta::annotation(d, REVISION) != meta::annotation(&rs, REVISION)
            && has_deadline
            && !paused
        {
            let msg = format!("Found new replica set \"{}\"", meta::name(&rs));
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                "FoundNewReplicaSet",
                &msg,
                &ctx.now,
                true,
            );
        }
        new_rs = Some(rs);
    } else if !paused {
        let hash = meta::template_hash(
            &want_tpl,
            meta::path_i64(d, &["status", "collisionCount"]).unwrap_or(0),
        );
        let rs_name = format!("{name}-{hash}");
        let mut tpl = template.clone();
        meta::set_path(&mut tpl, &["metadata", "labels", HASH], json!(hash));
        let mut selector = meta::path(d, &["spec", "selector"])
            .cloned()
            .unwrap_or(json!({}));
        meta::set_path(&mut selector, &["matchLabels", HASH], json!(hash));
        let mut a = copied_annotations(d);
        a.insert(REVISION.into(), json!((max_old_rev + 1).to_string()));
        a.insert(DESIRED.into(), json!(want.to_string()));
        a.insert(MAX.into(), json!((want + max_surge).to_string()));
        let mut spec = json!({"replicas": 0, "selector": selector, "template": tpl});
        if let Some(m) = meta::path(d, &["spec", "minReadySeconds"]) {
            spec["minReadySeconds"] = m.clone();
        }
        let rs = json!({
            "metadata": {"name": rs_name, "namespace": ns, "labels": meta::path(&tpl, &["metadata", "labels"]).cloned().unwrap_or(json!({})),
                "annotations": a, "ownerReferences": [meta::controller_ref(d)]},
            "spec": spec,
            "status": {"replicas": 0},
        });
        if st
            .store
            .get(resources::REPLICASETS, &ns, &rs_name)
            .is_some()
        {
            // A hash collision with a ReplicaSet of another template: try again with the next count.
            let count = meta::path_i64(d, &["status", "collisionCount"]).unwrap_or(0) + 1;
            if let Some(mut cur) = st.store.get(resources::DEPLOYMENTS, &ns, &name).cloned() {
                meta::set_path(&mut cur, &["status", "collisionCount"], json!(count));
                st.store.update(resources::DEPLOYMENTS, cur);
            }
            return;
        }
        let rs = create(st, ctx, resources::REPLICASETS, rs);
        if let Some(mode) = consume_fail_next(st, resources::DEPLOYMENTS, d) {
            st.ctl.failures.insert(meta::uid(&rs).to_string(), mode);
            if let Some(a) = annotations.as_object_mut() {
                a.remove(super::FAIL_NEXT);
            }
        }
        if has_deadline {
            let msg = format!("Created new replica set \"{rs_name}\"");
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                &msg,
                &ctx.now,
                true,
            );
        }
        new_rs = Some(rs);
    }
    let mut old = all;
    old.sort_by_key(|rs| {
        meta::path_str(rs, &["metadata", "creationTimestamp"])
            .unwrap_or("")
            .to_string()
    });

    if !paused {
        if let Some(new) = new_rs.as_mut() {
            if strategy == "Recreate" {
                for rs in old.iter_mut().filter(|rs| replicas(rs) > 0) {
                    scale(st, ctx, d, rs, 0, want);
                }
                let old_pods: i64 = old.iter().map(|rs| status_int(rs, "replicas")).sum();
                if old_pods == 0 && replicas(new) != want {
                    scale(st, ctx, d, new, want, want);
                }
            } else {
                rolling_update(st, ctx, d, new, &mut old, want, max_surge, max_unavailable);
            }
        }
        cleanup(st, d, &old);
    }

    // Status, from the ReplicaSets' own status.
    let mut rss: Vec<&Value> = old.iter().collect();
    if let Some(n) = &new_rs {
        rss.push(n);
    }
    let sum = |k: &str| rss.iter().map(|rs| status_int(rs, k)).sum::<i64>();
    let total_spec: i64 = rss.iter().map(|rs| replicas(rs)).sum();
    let available = sum("availableReplicas");
    let updated = new_rs.as_ref().map_or(0, |n| status_int(n, "replicas"));
    let observed = meta::path_i64(d, &["metadata", "generation"]).unwrap_or(1);
    let new_status = json!({
        "observedGeneration": observed,
        "replicas": sum("replicas"),
        "updatedReplicas": updated,
        "readyReplicas": sum("readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": (total_spec - available).max(0),
    });
    let old_status = d.get("status").cloned().unwrap_or(json!({}));
    let si = |s: &Value, k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0);

    if available >= want - max_unavailable {
        set_condition(
            &mut conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &ctx.now,
            false,
        );
    } else {
        set_condition(
            &mut conds,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &ctx.now,
            false,
        );
    }
    if paused && has_deadline {
        set_condition(
            &mut conds,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            &ctx.now,
            false,
        );
    } else if has_deadline {
        let current = conds.iter().find(|c| c["type"] == "Progressing").cloned();
        let complete_already = si(&new_status, "replicas") == updated
            && current
                .as_ref()
                .is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
        let rs_name = new_rs
            .as_ref()
            .map(|n| meta::name(n).to_string())
            .unwrap_or_default();
        if !complete_already {
            let complete =
                updated == want && si(&new_status, "replicas") == want && available == want;
            let old_replicas = |s: &Value| si(s, "replicas") - si(s, "updatedReplicas");
            let progressing = updated > si(&old_status, "updatedReplicas")
                || old_replicas(&new_status) < old_replicas(&old_status)
                || si(&new_status, "readyReplicas") > si(&old_status, "readyReplicas")
                || available > si(&old_status, "availableReplicas");
            if complete {
                let msg = format!("ReplicaSet \"{rs_name}\" has successfully progressed.");
                set_condition(
                    &mut conds,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &msg,
                    &ctx.now,
                    true,
                );
            } else if progressing {
                let msg = format!("ReplicaSet \"{rs_name}\" is progressing.");
                set_condition(
                    &mut conds,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &msg,
                    &ctx.now,
                    true,
                );
            } else if let Some(c) = current.filter(|c| c["reason"] != "ProgressDeadlineExceeded") {
                let deadline =
                    meta::path_i64(d, &["spec", "progressDeadlineSeconds"]).unwrap_or(600);
                let from = c["lastUpdateTime"]
                    .as_str()
                    .and_then(meta::parse_rfc3339)
                    .unwrap_or(i64::MAX);
                if from.saturating_add(deadline) < ctx.now_ms / 1000 {
                    let msg = format!("ReplicaSet \"{rs_name}\" has timed out progressing.");
                    set_condition(
                        &mut conds,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        &msg,
                        &ctx.now,
                        true,
                    );
                }
            }
        }
    }
    // Available first, then Progressing, as the controller orders them.
    conds.sort_by_key(|c| if c["type"] == "Available" { 0 } else { 1 });
    let mut status = new_status;
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| k == "observedGeneration" || v.as_i64() != Some(0));
        if let Some(c) = meta::path(d, &["status", "collisionCount"]) {
            m.insert("collisionCount".into(), c.clone());
        }
        if !conds.is_empty() {
            m.insert("conditions".into(), Value::Array(conds));
        }
    }
    if let Some(rev) = new_rs.as_ref().and_then(|n| meta::annotation(n, REVISION)) {
        annotations[REVISION] = json!(rev);
    }
    let Some(mut cur) = st.store.get(resources::DEPLOYMENTS, &ns, &name).cloned() else {
        return;
    };
    if let Some(a) = cur
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        // Keep whatever a client wrote since this pass read the deployment, except the revision.
        let mut merged = a.clone();
        if let Some(r) = annotations.get(REVISION) {
            merged.insert(REVISION.into(), r.clone());
        }
        annotations = Value::Object(merged);
    }
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        meta::set_path(&mut cur, &["metadata", "annotations"], annotations);
    }
    cur["status"] = status;
    st.store.update(resources::DEPLOYMENTS, cur);
}

#[allow(clippy::too_many_arguments)]
fn rolling_update(
    st: &mut State,
    ctx: &Ctx,
    d: &Value,
    new: &mut Value,
    old: &mut [Value],
    want: i64,
    max_surge: i64,
    max_unavailable: i64,
) {
    let max_total = want + max_surge;
    // Scale the new ReplicaSet up within the surge allowance.
    let current: i64 = old.iter().map(replicas).sum::<i64>() + replicas(new);
    let new_count = replicas(new);
    if new_count > want {
        scale(st, ctx, d, new, want, max_total);
    } else if new_count < want && current < max_total {
        let to = (new_count + max_total - current).min(want);
        scale(st, ctx, d, new, to, max_total);
    }
    // Scale old ReplicaSets down while keeping enough pods available.
    let old_count: i64 = old.iter().map(replicas).sum();
    if old_count == 0 {
        return;
    }
    let all_count = old_count + replicas(new);
    let min_available = want - max_unavailable;
    let new_unavailable = replicas(new) - status_int(new, "availableReplicas");
    let mut budget = all_count - min_available - new_unavailable;
    if budget <= 0 {
        return;
    }
    // First the unhealthy old pods, which do not count towards availability anyway.
    for rs in old.iter_mut() {
        if budget <= 0 {
            break;
        }
        let unhealthy = replicas(rs) - status_int(rs, "availableReplicas");
        if unhealthy <= 0 {
            continue;
        }
        let by = unhealthy.min(budget);
        let to = replicas(rs) - by;
        scale(st, ctx, d, rs, to, max_total);
        budget -= by;
    }
    // Then healthy ones, as far as availability allows.
    let available: i64 = old
        .iter()
        .map(|rs| status_int(rs, "availableReplicas"))
        .sum::<i64>()
        + status_int(new, "availableReplicas");
    let mut budget = available - min_available;
    for rs in old.iter_mut() {
        if budget <= 0 {
            break;
        }
        if replicas(rs) == 0 {
            continue;
        }
        let by = replicas(rs).min(budget);
        let to = replicas(rs) - by;
        scale(st, ctx, d, rs, to, max_total);
        budget -= by;
    }
}

/// Deletes the oldest empty ReplicaSets beyond `revisionHistoryLimit`.
fn cleanup(st: &mut State, d: &Value, old: &[Value]) {
    let limit = meta::path_i64(d, &["spec", "revisionHistoryLimit"])
        .unwrap_or(10)
        .max(0) as usize;
    let mut empty: Vec<&Value> = old
        .iter()
        .filter(|rs| replicas(rs) == 0 && status_int(rs, "replicas") == 0)
        .collect();
    if empty.len() <= limit {
        return;
    }
    empty.sort_by_key(|rs| revision(rs));
    let n = empty.len() - limit;
    for rs in empty.into_iter().take(n) {
        st.store
            .delete(resources::REPLICASETS, meta::namespace(rs), meta::name(rs));
    }
}
