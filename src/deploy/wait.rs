//! Following a rollout: a watch on the workload judged by [`rollout_status`], and a watch on
//! its pods that fails fast when a pod of the new template is stuck for good.

use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DynamicObject, ListParams};
use tokio::time::Instant;

use super::pods::{self, PodFailure};
use super::rollout::{rollout_status, Status};
use super::watch::{Change, ObjectWatch};
use super::{selector_query, template_key, Cluster, DeployError, Workload, WorkloadObject};

/// How many of a pod's events are kept.
const EVENTS_PER_POD: usize = 12;
/// How long gathering events may add to a failure that is already known.
const EVENTS_TIME: std::time::Duration = std::time::Duration::from_secs(5);

pub enum Outcome {
    Done,
    Failed { reason: String, events: Vec<String> },
}

/// Waits until `rollout_status` says done or failed, a new pod is stuck, or `deadline`.
/// `latest` is the workload as last written (the patch response), so pods are judged against
/// the new template even before the watch delivers it.
pub async fn wait_rollout(
    cluster: &Cluster,
    wl: &Workload,
    mut latest: WorkloadObject,
    deadline: Instant,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<Outcome, DeployError> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &wl.namespace,
        &wl.kind.api_resource(),
    );
    let mut workload_watch =
        ObjectWatch::new(api, Some(format!("metadata.name={}", wl.name)), None);
    let selector = latest.selector().map(selector_query).unwrap_or_default();
    let pods_api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &wl.namespace,
        &kube::api::ApiResource::erase::<Pod>(&()),
    );
    let mut pod_watch =
        (!selector.is_empty()).then(|| ObjectWatch::new(pods_api, None, Some(selector.clone())));
    let mut last_message = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                let events = bounded(unready_pod_events(cluster, wl, &latest, &selector)).await;
                let waiting = if last_message.is_empty() { String::new() } else { format!(": {last_message}") };
                return Ok(Outcome::Failed {
                    reason: format!("timed out waiting for the rollout of {wl}{waiting}"),
                    events,
                });
            }
            change = workload_watch.next() => {
                let change = change.map_err(DeployError::api(format!("cannot watch {wl}")))?;
                let object = match change {
                    Change::Listed(items) => items.into_iter().next(),
                    Change::Applied(object) => Some(*object),
                    Change::Deleted => None,
                };
                let Some(object) = object else {
                    return Ok(Outcome::Failed {
                        reason: format!("{wl} was deleted during the rollout"),
                        events: Vec::new(),
                    });
                };
                latest = WorkloadObject::from_dynamic(wl.kind, object)?;
                match rollout_status(&latest) {
                    Status::Done(message) => {
                        say(&message);
                        return Ok(Outcome::Done);
                    }
                    Status::Waiting(message) => {
                        if message != last_message {
                            say(&message);
                            last_message = message;
                        }
                    }
                    Status::Failed(reason) => {
                        let events = bounded(unready_pod_events(cluster, wl, &latest, &selector)).await;
                        return Ok(Outcome::Failed { reason, events });
                    }
                }
            }
            change = next_pods(&mut pod_watch) => {
                let pods = match change {
                    Ok(Change::Listed(items)) => items,
                    Ok(Change::Applied(pod)) => vec![*pod],
                    Ok(Change::Deleted) => Vec::new(),
                    Err(error) => {
                        tracing::warn!(%error, "cannot watch the pods of {wl}; only the workload status is followed");
                        pod_watch = None;
                        Vec::new()
                    }
                };
                for pod in pods {
                    let Ok(pod) = pod.try_parse::<Pod>() else { continue };
                    let Some(failure) = pods::fatal_state(&pod) else { continue };
                    if is_new_pod(cluster, wl, &latest, &pod).await {
                        let events = bounded(pod_events(cluster, wl, &pod)).await;
                        let PodFailure { reason, .. } = failure;
                        return Ok(Outcome::Failed { reason, events });
                    }
                }
            }
        }
    }
}

async fn next_pods(watch: &mut Option<ObjectWatch>) -> kube::Result<Change> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Whether `pod` runs the workload's current template: for a Deployment, its ReplicaSet's
/// template equals the Deployment's (ignoring `pod-template-hash`); for a StatefulSet, its
/// `controller-revision-hash` is the update revision; for a DaemonSet, it is the newest
/// ControllerRevision's. Old pods (which may be failing from an earlier deploy) do not count.
async fn is_new_pod(cluster: &Cluster, wl: &Workload, latest: &WorkloadObject, pod: &Pod) -> bool {
    let uid = latest.metadata().uid.as_deref();
    let controlled =
        |refs: &Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
            refs.iter()
                .flatten()
                .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid)
        };
    let revision_label = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("controller-revision-hash"))
        .cloned();
    match latest {
        WorkloadObject::Deployment(d) => {
            let owner = pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.controller == Some(true) && r.kind == "ReplicaSet");
            let Some(owner) = owner else { return false };
            let api: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), &wl.namespace);
            let Ok(rs) = api.get(&owner.name).await else {
                return false;
            };
            let (Some(rs_spec), Some(spec)) = (rs.spec.as_ref(), d.spec.as_ref()) else {
                return false;
            };
            controlled(&rs.metadata.owner_references)
                && rs_spec.template.as_ref().map(template_key) == Some(template_key(&spec.template))
        }
        WorkloadObject::StatefulSet(s) => {
            let update = s.status.as_ref().and_then(|st| st.update_revision.clone());
            latest.observed() && revision_label.is_some() && revision_label == update
        }
        WorkloadObject::DaemonSet(_) => {
            let Some(hash) = revision_label else {
                return false;
            };
            if !latest.observed() {
                return false;
            }
            let selector = latest.selector().map(selector_query).unwrap_or_default();
            let api: Api<ControllerRevision> =
                Api::namespaced(cluster.client.clone(), &wl.namespace);
            let Ok(list) = api.list(&ListParams::default().labels(&selector)).await else {
                return false;
            };
            let newest = list
                .items
                .into_iter()
                .filter(|r| controlled(&r.metadata.owner_references))
                .max_by_key(|r| r.revision);
            newest.is_some_and(|r| {
                let name = r.metadata.name.unwrap_or_default();
                name == hash || name.ends_with(&format!("-{hash}"))
            })
        }
    }
}

/// The recent events of a pod, as `kubectl describe pod` lists them.
async fn pod_events(cluster: &Cluster, wl: &Workload, pod: &Pod) -> Vec<String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), &wl.namespace);
    let params = ListParams::default().fields(&format!(
        "involvedObject.kind=Pod,involvedObject.name={name}"
    ));
    match api.list(&params).await {
        Ok(list) => {
            let mut lines = pods::event_lines(&name, &list.items);
            let skip = lines.len().saturating_sub(EVENTS_PER_POD);
            lines.drain(..skip);
            lines
        }
        Err(error) => vec![format!(
            "{name}: cannot list its events: {}",
            super::describe(&error)
        )],
    }
}

/// Events of up to two new pods that are not ready, to explain a progress deadline or a
/// timeout.
async fn unready_pod_events(
    cluster: &Cluster,
    wl: &Workload,
    latest: &WorkloadObject,
    selector: &str,
) -> Vec<String> {
    if selector.is_empty() {
        return Vec::new();
    }
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &wl.namespace);
    let Ok(list) = api.list(&ListParams::default().labels(selector)).await else {
        return Vec::new();
    };
    let mut events = Vec::new();
    let mut shown = 0;
    for pod in list.items.iter().filter(|p| !pods::is_ready(p)) {
        if shown == 2 {
            break;
        }
        if is_new_pod(cluster, wl, latest, pod).await {
            events.extend(pod_events(cluster, wl, pod).await);
            shown += 1;
        }
    }
    events
}

/// Events are an explanation, not a verdict: give up on them rather than delay the result.
async fn bounded(gather: impl std::future::Future<Output = Vec<String>>) -> Vec<String> {
    tokio::time::timeout(EVENTS_TIME, gather)
        .await
        .unwrap_or_else(|_| vec!["(timed out reading the pods' events)".into()])
}
