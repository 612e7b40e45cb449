//! Rolling back as `kubectl rollout undo` does (`pkg/polymorphichelpers/rollback.go`), with one
//! difference: the target is the revision whose template is the one monoship replaced, when
//! it is still in the history; kubectl's "previous revision" otherwise.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

use super::{
    selector_query, template_key, Cluster, DeployError, Workload, WorkloadKind, WorkloadObject,
    FIELD_MANAGER,
};

const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// Deployment annotations that `kubectl rollout undo` keeps from the Deployment instead of
/// taking them from the ReplicaSet.
const KEPT_ANNOTATIONS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

pub enum Undo {
    /// The workload after the rollback patch.
    Patched(WorkloadObject),
    /// Nothing to do, as kubectl words it ("skipped rollback (...)").
    Skipped(String),
}

/// Restores `previous` (the template before the deploy) on the workload.
///
/// For a StatefulSet it then also deletes the pods of the failed revision that are not ready:
/// the StatefulSet controller waits for such a pod forever instead of replacing it, and
/// Kubernetes documents this deletion as the way to finish the rollback ("forced rollback").
/// kubectl does not do it.
pub async fn undo(
    cluster: &Cluster,
    wl: &Workload,
    previous: &PodTemplateSpec,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<Undo, DeployError> {
    match wl.kind {
        WorkloadKind::Deployment => undo_deployment(cluster, wl, previous).await,
        WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => {
            undo_from_history(cluster, wl, previous, say).await
        }
    }
}

fn controlled_by(meta: &ObjectMeta, uid: Option<&str>) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid)
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The ReplicaSet to go back to: the one running `previous`, else kubectl's choice, the
/// second-highest revision.
///
/// # Errors
/// "no rollout history found" when there is no other revision, as kubectl says.
pub fn pick_replica_set<'a>(
    replica_sets: &'a [ReplicaSet],
    current: &PodTemplateSpec,
    previous: &PodTemplateSpec,
) -> Result<&'a ReplicaSet, String> {
    let template = |rs: &ReplicaSet| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .map(template_key)
    };
    let (previous, current) = (template_key(previous), template_key(current));
    if previous != current {
        if let Some(rs) = replica_sets
            .iter()
            .find(|rs| template(rs).as_ref() == Some(&previous))
        {
            return Ok(rs);
        }
    }
    let mut revisions: Vec<i64> = replica_sets.iter().map(revision_of).collect();
    revisions.sort_unstable();
    revisions.dedup();
    let Some(&second) = revisions.iter().rev().nth(1) else {
        return Err("no rollout history found".into());
    };
    Ok(replica_sets
        .iter()
        .find(|rs| revision_of(rs) == second)
        .expect("the revision came from this list"))
}

/// kubectl's JSON patch: the ReplicaSet's template without `pod-template-hash`, and the
/// ReplicaSet's annotations plus the Deployment's own bookkeeping ones.
pub fn deployment_undo_patch(deployment: &Deployment, rs: &ReplicaSet) -> Value {
    let mut template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove("pod-template-hash");
    }
    let mut annotations = BTreeMap::new();
    let own = deployment.metadata.annotations.clone().unwrap_or_default();
    for key in KEPT_ANNOTATIONS {
        if let Some(value) = own.get(key) {
            annotations.insert(key.to_string(), value.clone());
        }
    }
    for (key, value) in rs.metadata.annotations.iter().flatten() {
        if !KEPT_ANNOTATIONS.contains(&key.as_str()) {
            annotations.insert(key.clone(), value.clone());
        }
    }
    json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ])
}

async fn undo_deployment(
    cluster: &Cluster,
    wl: &Workload,
    previous: &PodTemplateSpec,
) -> Result<Undo, DeployError> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &wl.namespace);
    let deployment = api
        .get(&wl.name)
        .await
        .map_err(DeployError::api(format!("cannot read {wl}")))?;
    let spec = deployment.spec.clone().unwrap_or_default();
    if spec.paused == Some(true) {
        return Err(DeployError::Refused(
            "you cannot rollback a paused deployment; resume it first with kubectl rollout resume"
                .into(),
        ));
    }
    let rs_api: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), &wl.namespace);
    let selector = selector_query(&spec.selector);
    let all = rs_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(DeployError::api(format!(
            "cannot list the ReplicaSets of {wl}"
        )))?;
    let uid = deployment.metadata.uid.as_deref();
    let owned: Vec<ReplicaSet> = all
        .items
        .into_iter()
        .filter(|rs| controlled_by(&rs.metadata, uid))
        .collect();
    let target = pick_replica_set(&owned, &spec.template, previous)
        .map_err(|why| DeployError::Refused(format!("cannot roll back {wl}: {why}")))?;
    let target_template = target.spec.as_ref().and_then(|s| s.template.as_ref());
    if target_template.map(template_key) == Some(template_key(&spec.template)) {
        return Ok(Undo::Skipped(format!(
            "skipped rollback (current template already matches revision {})",
            revision_of(target)
        )));
    }
    let patch = deployment_undo_patch(&deployment, target);
    let body = serde_json::to_vec(&patch).expect("a JSON value serializes");
    let url = format!(
        "/apis/apps/v1/namespaces/{}/deployments/{}?fieldManager={FIELD_MANAGER}",
        wl.namespace, wl.name
    );
    let request = http::Request::patch(url)
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(body)
        .expect("a valid request");
    let updated: DynamicObject = cluster
        .client
        .request(request)
        .await
        .map_err(DeployError::api(format!("cannot roll back {wl}")))?;
    Ok(Undo::Patched(WorkloadObject::from_dynamic(
        wl.kind, updated,
    )?))
}

/// The pod template a ControllerRevision stores (`data.spec.template`, minus the
/// `$patch: replace` directive).
fn revision_template(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let data = revision.data.as_ref()?;
    let template = data.0.get("spec")?.get("template")?;
    serde_json::from_value(template.clone()).ok()
}

/// The ControllerRevision to go back to: the one holding `previous`, else kubectl's choice,
/// the one before the newest.
///
/// # Errors
/// "no last revision to roll back to" when the history has one entry, as kubectl says.
pub fn pick_revision<'a>(
    history: &'a [ControllerRevision],
    current: &PodTemplateSpec,
    previous: &PodTemplateSpec,
) -> Result<&'a ControllerRevision, String> {
    let (previous, current) = (template_key(previous), template_key(current));
    let mut sorted: Vec<&ControllerRevision> = history.iter().collect();
    sorted.sort_by_key(|r| r.revision);
    if previous != current {
        let holding = sorted
            .iter()
            .rev()
            .find(|r| revision_template(r).map(|t| template_key(&t)).as_ref() == Some(&previous));
        if let Some(r) = holding {
            return Ok(r);
        }
    }
    if sorted.len() <= 1 {
        return Err("no last revision to roll back to".into());
    }
    Ok(sorted[sorted.len() - 2])
}

async fn undo_from_history(
    cluster: &Cluster,
    wl: &Workload,
    previous: &PodTemplateSpec,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<Undo, DeployError> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &wl.namespace,
        &wl.kind.api_resource(),
    );
    let object = api
        .get(&wl.name)
        .await
        .map_err(DeployError::api(format!("cannot read {wl}")))?;
    let object = WorkloadObject::from_dynamic(wl.kind, object)?;
    let current = object.template().cloned().unwrap_or_default();
    let selector = object.selector().map(selector_query).unwrap_or_default();
    let revisions: Api<ControllerRevision> = Api::namespaced(cluster.client.clone(), &wl.namespace);
    let all = revisions
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(DeployError::api(format!(
            "cannot list the revisions of {wl}"
        )))?;
    let uid = object.metadata().uid.as_deref();
    let history: Vec<ControllerRevision> = all
        .items
        .into_iter()
        .filter(|r| controlled_by(&r.metadata, uid))
        .collect();
    let target = pick_revision(&history, &current, previous)
        .map_err(|why| DeployError::Refused(format!("cannot roll back {wl}: {why}")))?;
    if revision_template(target).map(|t| template_key(&t)) == Some(template_key(&current)) {
        return Ok(Undo::Skipped(format!(
            "skipped rollback (current template already matches revision {})",
            target.revision
        )));
    }
    let data = target
        .data
        .as_ref()
        .map(|d| d.0.clone())
        .unwrap_or(Value::Null);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let updated = api
        .patch(&wl.name, &params, &Patch::Strategic(data))
        .await
        .map_err(DeployError::api(format!("cannot roll back {wl}")))?;
    if let WorkloadObject::StatefulSet(set) = &object {
        let failed = set.status.as_ref().and_then(|s| s.update_revision.clone());
        if let Some(failed) = failed {
            delete_broken_pods(cluster, wl, &selector, &failed, say).await?;
        }
    }
    Ok(Undo::Patched(WorkloadObject::from_dynamic(
        wl.kind, updated,
    )?))
}

/// Deletes the StatefulSet's pods of revision `failed` that are not ready, so the controller
/// recreates them from the restored template.
async fn delete_broken_pods(
    cluster: &Cluster,
    wl: &Workload,
    selector: &str,
    failed: &str,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), DeployError> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &wl.namespace);
    let selector = format!("{selector},controller-revision-hash={failed}");
    let pods = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(DeployError::api(format!("cannot list the pods of {wl}")))?;
    for pod in pods.items.iter().filter(|p| !super::pods::is_ready(p)) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => say(&format!(
                "deleted pod {name} of the failed revision so the StatefulSet recreates it"
            )),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(DeployError::api(format!("cannot delete pod {name}"))(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({"metadata": {"labels": {"app": "cart"}},
            "spec": {"containers": [{"name": "cart", "image": image}]}}))
        .unwrap()
    }

    fn replica_set(revision: i64, image: &str, hash: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": format!("cart-{hash}"), "annotations": {
                "deployment.kubernetes.io/revision": revision.to_string(),
                "kubernetes.io/change-cause": format!("deploy {image}"),
                "monoship.dev/commit": format!("commit-{revision}")}},
            "spec": {"selector": {}, "template": {"metadata": {"labels": {"app": "cart", "pod-template-hash": hash}},
                "spec": {"containers": [{"name": "cart", "image": image}]}}}}))
        .unwrap()
    }

    #[test]
    fn the_replaced_template_is_preferred_then_the_previous_revision() {
        let sets = [
            replica_set(1, "a", "h1"),
            replica_set(3, "c", "h3"),
            replica_set(2, "b", "h2"),
        ];
        let picked = pick_replica_set(&sets, &template("c"), &template("a")).unwrap();
        assert_eq!(revision_of(picked), 1);
        // The replaced template is gone from the history: kubectl's second-highest revision.
        let picked = pick_replica_set(&sets, &template("c"), &template("z")).unwrap();
        assert_eq!(revision_of(picked), 2);
        let err = pick_replica_set(&sets[..1], &template("a"), &template("a")).unwrap_err();
        assert_eq!(err, "no rollout history found");
    }

    #[test]
    fn the_undo_patch_is_kubectls() {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "cart", "annotations": {
                "deployment.kubernetes.io/revision": "3",
                "kubernetes.io/change-cause": "deploy c",
                "monoship.dev/commit": "commit-3",
                "sim.monoship.dev/fail-next": "CrashLoopBackOff"}},
            "spec": {"selector": {}, "template": {}}}))
        .unwrap();
        let patch = deployment_undo_patch(&deployment, &replica_set(1, "a", "h1"));
        assert_eq!(
            patch,
            json!([
                {"op": "replace", "path": "/spec/template", "value": {
                    "metadata": {"labels": {"app": "cart"}},
                    "spec": {"containers": [{"name": "cart", "image": "a"}]}}},
                {"op": "replace", "path": "/metadata/annotations", "value": {
                    "deployment.kubernetes.io/revision": "3",
                    "kubernetes.io/change-cause": "deploy a",
                    "monoship.dev/commit": "commit-1"}},
            ])
        );
    }

    fn revision(number: i64, image: &str) -> ControllerRevision {
        serde_json::from_value(json!({"metadata": {"name": format!("db-{number}")}, "revision": number,
            "data": {"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"app": "cart"}},
                "spec": {"containers": [{"name": "cart", "image": image}]}}}}}))
        .unwrap()
    }

    #[test]
    fn controller_revisions_are_picked_like_kubectl() {
        let history = [revision(2, "b"), revision(1, "a"), revision(3, "c")];
        assert_eq!(
            pick_revision(&history, &template("c"), &template("a"))
                .unwrap()
                .revision,
            1
        );
        assert_eq!(
            pick_revision(&history, &template("c"), &template("z"))
                .unwrap()
                .revision,
            2
        );
        assert_eq!(
            pick_revision(&history[..1], &template("b"), &template("b")).unwrap_err(),
            "no last revision to roll back to"
        );
    }
}
