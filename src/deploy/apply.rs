//! Deploying a service's manifests: every document applied server-side (field manager
//! `monoship`, conflicts forced as `kubectl apply --server-side --force-conflicts` does), then
//! the rollout of every Deployment, StatefulSet and DaemonSet among them followed like a
//! `workload` target, and rolled back on failure when the workload existed before.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, Scope};
use serde_json::{json, Value};

use super::manifests::Document;
use super::{
    chain, describe, follow, with_retries, within, Cluster, DeployContext, DeployError,
    RolloutResult, RolloutStatus, Workload, WorkloadKind, WorkloadObject, FIELD_MANAGER,
};

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
    let follows = applied.workloads.into_iter().map(|w| {
        let AppliedWorkload { workload: wl, object, previous, source } = w;
        let say = &say;
        async move {
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
            if let Err(error) = follow(
                cluster,
                &wl,
                object,
                rollback_to,
                req.context.timeout,
                deadline,
                say,
                &mut result,
            )
            .await
            {
                result.status = RolloutStatus::Failed;
                result.reason = Some(chain(&error));
            }
            if created && req.context.rollback && result.status == RolloutStatus::Failed {
                let reason = result.reason.take().unwrap_or_default();
                result.reason = Some(format!(
                    "{reason}; not rolled back: the manifests created {wl}, there is no earlier version"
                ));
            }
            result.seconds = started.elapsed().as_secs_f64();
            result
        }
    });
    futures::future::join_all(follows).await
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

async fn prepare_and_apply(
    cluster: &Cluster,
    req: &ManifestDeploy,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<Applied, DeployError> {
    let resolved = resolve(cluster, req).await?;

    // Read the workloads first: for the commit check (nothing is applied when one runs a
    // newer commit) and for the template to roll back to.
    let mut before: BTreeMap<String, Option<WorkloadObject>> = BTreeMap::new();
    for r in &resolved {
        let Some(wl) = &r.workload else { continue };
        let api = dynamic_api(cluster, r);
        let existing = match with_retries("reading", || api.get_opt(&wl.name)).await {
            Ok(found) => found
                .map(|o| WorkloadObject::from_dynamic(wl.kind, o))
                .transpose()?,
            Err(e) => return Err(DeployError::api(format!("cannot read {wl}"))(e)),
        };
        if let Some(deployed) = existing.as_ref().and_then(|o| req.context.newer_on(o)) {
            let why = req.context.newer_reason(wl, &deployed);
            return Ok(Applied::Refused(format!("nothing was applied: {why}")));
        }
        before.insert(wl.to_string(), existing);
    }

    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut workloads = Vec::new();
    for r in &resolved {
        let mut object = r.doc.object.clone();
        if r.workload.is_some() {
            annotate(&mut object, req);
        }
        if let (Some(ns), Value::Object(map)) = (&r.namespace, &mut object) {
            if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                meta.insert("namespace".into(), json!(ns));
            }
        }
        let api = dynamic_api(cluster, r);
        let existing = r
            .workload
            .as_ref()
            .and_then(|wl| before.get(&wl.to_string()).cloned().flatten());
        let mut version = existing.and_then(|o| o.metadata().resource_version.clone());
        let mut attempt = 1;
        let applied = loop {
            // On a workload that exists, the resourceVersion read makes the apply conditional:
            // a deploy that got in between gives 409, and is looked at before trying again.
            if let (Some(v), Value::Object(map)) = (&version, &mut object) {
                if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                    meta.insert("resourceVersion".into(), json!(v));
                }
            }
            let patch = Patch::Apply(&object);
            match with_retries("applying", || api.patch(&r.doc.name, &params, &patch)).await {
                Ok(applied) => break applied,
                Err(kube::Error::Api(s))
                    if s.code == 409 && version.is_some() && attempt < super::CONFLICT_ATTEMPTS =>
                {
                    attempt += 1;
                    let wl = r.workload.as_ref().expect("only workloads carry a version");
                    let current = match with_retries("reading", || api.get_opt(&wl.name)).await {
                        Ok(found) => found
                            .map(|o| WorkloadObject::from_dynamic(wl.kind, o))
                            .transpose()?,
                        Err(e) => return Err(DeployError::api(format!("cannot read {wl}"))(e)),
                    };
                    if let Some(deployed) = current.as_ref().and_then(|o| req.context.newer_on(o)) {
                        let why = req.context.newer_reason(wl, &deployed);
                        return Ok(Applied::Refused(format!("{wl} was not applied: {why}")));
                    }
                    version = current.and_then(|o| o.metadata().resource_version.clone());
                }
                Err(e) => {
                    return Err(DeployError::Refused(format!(
                        "cannot apply {} ({}:{}): {}",
                        r.doc.title(),
                        r.doc.file,
                        r.doc.line,
                        describe(&e)
                    )))
                }
            }
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

/// Finds each document's resource through discovery and its namespace; Namespaces and
/// CustomResourceDefinitions go first so what lives in them can be applied after.
async fn resolve<'a>(
    cluster: &Cluster,
    req: &'a ManifestDeploy,
) -> Result<Vec<Resolved<'a>>, DeployError> {
    let mut found: BTreeMap<(String, String), (ApiResource, ApiCapabilities)> = BTreeMap::new();
    let mut out = Vec::new();
    for doc in &req.documents {
        let key = (doc.api_version.clone(), doc.kind.clone());
        if !found.contains_key(&key) {
            let (group, version) = doc
                .api_version
                .split_once('/')
                .unwrap_or(("", doc.api_version.as_str()));
            let gvk = GroupVersionKind::gvk(group, version, &doc.kind);
            let pinned = with_retries("discovery", || {
                kube::discovery::pinned_kind(&cluster.client, &gvk)
            })
            .await
            .map_err(|e| {
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
