//! Deploying a service's manifests: every document applied server-side (field manager
//! `monoship`, conflicts forced as `kubectl apply --server-side --force-conflicts` does), then
//! the rollout of every Deployment, StatefulSet and DaemonSet among them followed like a
//! `workload` target, and rolled back on failure when the workload existed before.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::Instant;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, Scope};
use serde_json::{json, Value};

use super::manifests::Document;
use super::{
    chain, describe, follow, with_retries, within, Cluster, DeployContext, DeployError,
    PatchFailure, RolloutResult, RolloutStatus, Workload, WorkloadKind, WorkloadObject, CONFLICTS,
    FIELD_MANAGER,
};
use crate::retry::retry;

/// One `manifests` deploy target, its images already substituted.
#[derive(Clone)]
pub struct ManifestDeploy {
    pub service: String,
    /// What the config says, e.g. `manifests deploy/checkout/*.yaml`; the `workload` of the
    /// result when the manifests hold no workload.
    pub label: String,
    pub documents: Vec<Document>,
    /// The namespace of documents that name none (the target's, else the cluster's default).
    pub namespace: String,
    /// The image the manifests now run, for the change-cause annotation.
    pub image: String,
    pub context: DeployContext,
}

/// A document ready to apply.
struct Resolved<'a> {
    doc: &'a Document,
    resource: ApiResource,
    namespace: Option<String>,
    workload: Option<Workload>,
}

/// Applies `req`'s manifests and follows their workloads; see the module docs. Never fails:
/// one result per workload (or one for the whole target when it has none) says what happened.
pub async fn apply_manifests(
    cluster: &Cluster,
    req: &ManifestDeploy,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Vec<RolloutResult> {
    let started = Instant::now();
    let say = |line: &str| progress(&format!("{}: {line}", req.service));
    let deadline = tokio::time::Instant::now() + req.context.timeout;
    let outcome = within(deadline, "applying", prepare_and_apply(cluster, req, &say)).await;
    let one = |status, reason: String| {
        vec![RolloutResult {
            service: req.service.clone(),
            workload: req.label.clone(),
            status,
            reason: Some(reason),
            seconds: started.elapsed().as_secs_f64(),
            events: vec![],
            previous_image: None,
            source: req.documents.first().map(|d| (d.file.clone(), d.line)),
        }]
    };
    let applied = match outcome {
        Ok(Applied::Refused(why)) => return one(RolloutStatus::Skipped, why),
        Ok(Applied::Done(applied)) => applied,
        Err(error) => return one(RolloutStatus::Failed, chain(&error)),
    };
    if applied.workloads.is_empty() {
        return one(
            RolloutStatus::Succeeded,
            format!(
                "applied {} object(s); none has a rollout to follow",
                applied.objects
            ),
        );
    }
    let follows = applied.workloads.into_iter().map(|applied| {
        let following = Following {
            cluster,
            req,
            deadline,
            started,
            say: &say,
        };
        following.follow(applied)
    });
    futures::future::join_all(follows).await
}

/// What following one applied workload needs from its target.
struct Following<'a> {
    cluster: &'a Cluster,
    req: &'a ManifestDeploy,
    deadline: tokio::time::Instant,
    started: Instant,
    say: &'a (dyn Fn(&str) + Send + Sync),
}

impl Following<'_> {
    /// Follows the rollout of `applied` and rolls it back on failure when it existed before.
    async fn follow(self, applied: AppliedWorkload) -> RolloutResult {
        let AppliedWorkload {
            workload: wl,
            object,
            previous,
            source,
        } = applied;
        let req = self.req;
        let mut result = RolloutResult {
            service: req.service.clone(),
            workload: wl.to_string(),
            status: RolloutStatus::Failed,
            reason: None,
            seconds: 0.0,
            events: vec![],
            previous_image: None,
            source: Some(source),
        };
        let created = previous.is_none();
        let rollback_to = previous.filter(|_| req.context.rollback);
        let (deadline, say) = (self.deadline, self.say);
        let followed = follow(
            self.cluster,
            &wl,
            object,
            rollback_to,
            &req.context,
            deadline,
            say,
            &mut result,
        );
        if let Err(error) = followed.await {
            result.status = RolloutStatus::Failed;
            result.reason = Some(chain(&error));
        }
        if created && req.context.rollback && result.status == RolloutStatus::Failed {
            let reason = result.reason.take().unwrap_or_default();
            result.reason = Some(format!(
                "{reason}; not rolled back: the manifests created {wl}, there is no earlier version"
            ));
        }
        result.seconds = self.started.elapsed().as_secs_f64();
        result
    }
}

enum Applied {
    /// Nothing applied, on purpose (a newer commit runs).
    Refused(String),
    Done(AppliedObjects),
}

struct AppliedObjects {
    objects: usize,
    workloads: Vec<AppliedWorkload>,
}

/// A workload as applied.
struct AppliedWorkload {
    workload: Workload,
    object: WorkloadObject,
    /// Its pod template before (`None`: the manifests created it).
    previous: Option<PodTemplateSpec>,
    /// The file and line of its document.
    source: (String, usize),
}

/// The workloads as they were before the apply, by `kind/namespace/name` (`None`: absent).
type Before = BTreeMap<String, Option<WorkloadObject>>;

async fn prepare_and_apply(
    cluster: &Cluster,
    req: &ManifestDeploy,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<Applied, DeployError> {
    let resolved = resolve(cluster, req).await?;
    let mut before = match read_before(cluster, req, &resolved).await? {
        ControlFlow::Continue(before) => before,
        ControlFlow::Break(why) => return Ok(Applied::Refused(why)),
    };
    let mut workloads = Vec::new();
    for r in &resolved {
        let existing = r
            .workload
            .as_ref()
            .and_then(|wl| before.get(&wl.to_string()).cloned().flatten());
        let applied = match apply_one(cluster, req, r, existing).await? {
            ControlFlow::Continue(applied) => applied,
            ControlFlow::Break(why) => return Ok(Applied::Refused(why)),
        };
        say(&format!(
            "applied {} from {}:{}",
            r.doc.title(),
            r.doc.file,
            r.doc.line
        ));
        if let Some(wl) = &r.workload {
            let previous = before
                .remove(&wl.to_string())
                .flatten()
                .and_then(|o| o.template().cloned());
            let object = WorkloadObject::from_dynamic(wl.kind, applied)?;
            let source = (r.doc.file.clone(), r.doc.line);
            workloads.push(AppliedWorkload {
                workload: wl.clone(),
                object,
                previous,
                source,
            });
        }
    }
    Ok(Applied::Done(AppliedObjects {
        objects: resolved.len(),
        workloads,
    }))
}

/// Reads the workloads before anything is applied: for the commit check (nothing is applied
/// when one runs a newer commit, `Break` says why) and for the template to roll back to.
async fn read_before(
    cluster: &Cluster,
    req: &ManifestDeploy,
    resolved: &[Resolved<'_>],
) -> Result<ControlFlow<String, Before>, DeployError> {
    let mut before = Before::new();
    for r in resolved {
        let Some(wl) = &r.workload else { continue };
        let existing = read_current(&dynamic_api(cluster, r), wl).await?;
        if let Some(deployed) = existing.as_ref().and_then(|o| req.context.newer_on(o)) {
            let why = req.context.newer_reason(wl, &deployed);
            return Ok(ControlFlow::Break(format!("nothing was applied: {why}")));
        }
        before.insert(wl.to_string(), existing);
    }
    Ok(ControlFlow::Continue(before))
}

/// The workload as it is now, or `None` when it does not exist.
async fn read_current(
    api: &Api<DynamicObject>,
    wl: &Workload,
) -> Result<Option<WorkloadObject>, DeployError> {
    match with_retries("reading", || api.get_opt(&wl.name)).await {
        Ok(found) => found
            .map(|o| WorkloadObject::from_dynamic(wl.kind, o))
            .transpose(),
        Err(e) => Err(DeployError::api(format!("cannot read {wl}"))(e)),
    }
}

/// Applies one document; `existing` is its workload as read before. On a workload that
/// exists, the resourceVersion read makes the apply conditional: a deploy that got in
/// between gives 409, and is looked at before trying again (see `CONFLICTS`); `Break` says
/// why it was not applied.
async fn apply_one(
    cluster: &Cluster,
    req: &ManifestDeploy,
    r: &Resolved<'_>,
    existing: Option<WorkloadObject>,
) -> Result<ControlFlow<String, DynamicObject>, DeployError> {
    let api = &dynamic_api(cluster, r);
    let params = &PatchParams::apply(FIELD_MANAGER).force();
    // The document as last sent: a resourceVersion stays on it until a newer read replaces it.
    let sent = &Mutex::new(prepared_document(r, req));
    let first_version = &existing.and_then(|o| o.metadata().resource_version.clone());
    let attempt = |attempt: u32| async move {
        let version = if attempt == 1 {
            first_version.clone()
        } else {
            let wl = r.workload.as_ref().expect("only workloads carry a version");
            let current = read_current(api, wl).await.map_err(PatchFailure::Fatal)?;
            if let Some(deployed) = current.as_ref().and_then(|o| req.context.newer_on(o)) {
                let why = req.context.newer_reason(wl, &deployed);
                return Ok(ControlFlow::Break(format!("{wl} was not applied: {why}")));
            }
            current.and_then(|o| o.metadata().resource_version.clone())
        };
        let object = {
            let mut sent = sent.lock().expect("no attempt panics while holding it");
            if let Some(v) = &version {
                set_metadata(&mut sent, "resourceVersion", v);
            }
            sent.clone()
        };
        let patch = Patch::Apply(&object);
        match with_retries("applying", || api.patch(&r.doc.name, params, &patch)).await {
            Ok(applied) => Ok(ControlFlow::Continue(applied)),
            Err(kube::Error::Api(s)) if s.code == 409 && version.is_some() => {
                Err(PatchFailure::Conflict(kube::Error::Api(s)))
            }
            Err(e) => Err(PatchFailure::Fatal(cannot_apply(r, &e))),
        }
    };
    match retry(&CONFLICTS, PatchFailure::verdict, |_, _| {}, attempt).await {
        Ok(applied) => Ok(applied),
        Err(gave_up) => Err(match gave_up.error {
            PatchFailure::Conflict(e) => cannot_apply(r, &e),
            PatchFailure::Fatal(error) => error,
        }),
    }
}

fn cannot_apply(r: &Resolved<'_>, error: &kube::Error) -> DeployError {
    DeployError::Refused(format!(
        "cannot apply {} ({}:{}): {}",
        r.doc.title(),
        r.doc.file,
        r.doc.line,
        describe(error)
    ))
}

/// The document as it is sent: a workload gets the deploy's annotations, and a namespaced
/// document the namespace it goes to.
fn prepared_document(r: &Resolved<'_>, req: &ManifestDeploy) -> Value {
    let mut object = r.doc.object.clone();
    if r.workload.is_some() {
        annotate(&mut object, req);
    }
    if let Some(ns) = &r.namespace {
        set_metadata(&mut object, "namespace", ns);
    }
    object
}

/// Sets `metadata.<key>` of a document that has a `metadata` object; others are left alone.
fn set_metadata(object: &mut Value, key: &str, value: &str) {
    if let Value::Object(map) = object {
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.insert(key.into(), json!(value));
        }
    }
}

/// Finds each document's resource through discovery and its namespace; Namespaces and
/// CustomResourceDefinitions go first so what lives in them can be applied after.
/// The resource and capabilities the cluster serves for a document's apiVersion and kind.
pub(super) async fn discover(
    cluster: &Cluster,
    doc: &Document,
) -> kube::Result<(ApiResource, ApiCapabilities)> {
    let (group, version) = doc
        .api_version
        .split_once('/')
        .unwrap_or(("", doc.api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &doc.kind);
    with_retries("discovery", || {
        kube::discovery::pinned_kind(&cluster.client, &gvk)
    })
    .await
}

async fn resolve<'a>(
    cluster: &Cluster,
    req: &'a ManifestDeploy,
) -> Result<Vec<Resolved<'a>>, DeployError> {
    let mut found: BTreeMap<(String, String), (ApiResource, ApiCapabilities)> = BTreeMap::new();
    let mut out = Vec::new();
    for doc in &req.documents {
        let key = (doc.api_version.clone(), doc.kind.clone());
        if !found.contains_key(&key) {
            let pinned = discover(cluster, doc).await.map_err(|e| {
                DeployError::Refused(format!(
                    "the cluster does not serve {} {} ({}:{}): {}",
                    doc.api_version,
                    doc.kind,
                    doc.file,
                    doc.line,
                    describe(&e)
                ))
            })?;
            found.insert(key.clone(), pinned);
        }
        let (resource, caps) = found[&key].clone();
        let namespace = (caps.scope == Scope::Namespaced).then(|| {
            doc.namespace
                .clone()
                .unwrap_or_else(|| req.namespace.clone())
        });
        let kind = match (resource.group.as_str(), doc.kind.as_str()) {
            ("apps", "Deployment") => Some(WorkloadKind::Deployment),
            ("apps", "StatefulSet") => Some(WorkloadKind::StatefulSet),
            ("apps", "DaemonSet") => Some(WorkloadKind::DaemonSet),
            _ => None,
        };
        let workload = match (kind, &namespace) {
            (Some(kind), Some(ns)) => Some(Workload {
                kind,
                namespace: ns.clone(),
                name: doc.name.clone(),
            }),
            _ => None,
        };
        out.push(Resolved {
            doc,
            resource,
            namespace,
            workload,
        });
    }
    out.sort_by_key(|r| match r.doc.kind.as_str() {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        _ => 2,
    });
    Ok(out)
}

fn dynamic_api(cluster: &Cluster, r: &Resolved<'_>) -> Api<DynamicObject> {
    match &r.namespace {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &r.resource),
        None => Api::all_with(cluster.client.clone(), &r.resource),
    }
}

/// The same record a `workload` deploy leaves: commit, its time, run and change cause.
fn annotate(object: &mut Value, req: &ManifestDeploy) {
    let Value::Object(map) = object else { return };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    let Value::Object(meta) = meta else { return };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    let Value::Object(annotations) = annotations else {
        return;
    };
    for (key, value) in req.context.annotations(&req.service, &req.image) {
        annotations.insert(key.into(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_fields_are_set_only_where_metadata_is_an_object() {
        let mut doc = json!({"kind": "Deployment", "metadata": {"name": "cart"}});
        set_metadata(&mut doc, "namespace", "shop");
        set_metadata(&mut doc, "resourceVersion", "41");
        set_metadata(&mut doc, "resourceVersion", "42");
        assert_eq!(
            doc,
            json!({"kind": "Deployment",
                "metadata": {"name": "cart", "namespace": "shop", "resourceVersion": "42"}})
        );
        for untouched in [
            json!({"kind": "Namespace"}),
            json!({"metadata": null}),
            json!([1]),
        ] {
            let mut doc = untouched.clone();
            set_metadata(&mut doc, "namespace", "shop");
            assert_eq!(doc, untouched);
        }
    }
}
