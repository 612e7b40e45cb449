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
use crate::interrupt::{Interrupt, Signal};

/// How many of a pod's events are kept.
const EVENTS_PER_POD: usize = 12;
/// How long gathering events may add to a failure that is already known.
const EVENTS_TIME: std::time::Duration = std::time::Duration::from_secs(5);

pub enum Outcome {
    Done,
    Failed {
        reason: String,
        events: Vec<String>,
    },
    /// Still running when the grace after a signal ran out.
    Interrupted(Signal),
}

/// Waits until `rollout_status` says done or failed, a new pod is stuck, `deadline`, or the
/// grace after a signal of `interrupt` is over.
/// `latest` is the workload as last written (the patch response), so pods are judged against
/// the new template even before the watch delivers it.
pub async fn wait_rollout(
    cluster: &Cluster,
    wl: &Workload,
    latest: WorkloadObject,
    deadline: Instant,
    interrupt: Option<&Interrupt>,
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
    let mut rollout = Rollout {
        cluster,
        wl,
        latest,
        selector,
        last_message: String::new(),
        say,
    };
    // Made once: the grace runs from the signal, not from the latest change seen.
    let grace_over = grace_over(interrupt);
    tokio::pin!(grace_over);
    loop {
        let outcome = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => Some(rollout.timed_out().await),
            signal = &mut grace_over => Some(Outcome::Interrupted(signal)),
            change = workload_watch.next() => {
                let change = change.map_err(DeployError::api(format!("cannot watch {wl}")))?;
                rollout.workload_changed(change).await?
            }
            change = next_pods(&mut pod_watch) => {
                let pods = change.map(pods_in).unwrap_or_else(|error| {
                    tracing::warn!(%error, "cannot watch the pods of {wl}; only the workload status is followed");
                    pod_watch = None;
                    Vec::new()
                });
                rollout.pods_changed(pods).await
            }
        };
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
}

/// A rollout being followed: the workload as last seen and the progress said so far.
struct Rollout<'a> {
    cluster: &'a Cluster,
    wl: &'a Workload,
    latest: WorkloadObject,
    /// The workload's pod selector as a query; empty when it has none.
    selector: String,
    last_message: String,
    say: &'a (dyn Fn(&str) + Send + Sync),
}

impl Rollout<'_> {
    async fn timed_out(&self) -> Outcome {
        let events = bounded(unready_pod_events(
            self.cluster,
            self.wl,
            &self.latest,
            &self.selector,
        ))
        .await;
        Outcome::Failed {
            reason: timeout_reason(self.wl, &self.last_message),
            events,
        }
    }

    /// Judges the workload as it changed; says progress as it changes.
    async fn workload_changed(&mut self, change: Change) -> Result<Option<Outcome>, DeployError> {
        let Some(object) = workload_in(change) else {
            return Ok(Some(Outcome::Failed {
                reason: format!("{} was deleted during the rollout", self.wl),
                events: Vec::new(),
            }));
        };
        self.latest = WorkloadObject::from_dynamic(self.wl.kind, object)?;
        Ok(match rollout_status(&self.latest) {
            Status::Done(message) => {
                (self.say)(&message);
                Some(Outcome::Done)
            }
            Status::Waiting(message) => {
                if message != self.last_message {
                    (self.say)(&message);
                    self.last_message = message;
                }
                None
            }
            Status::Failed(reason) => {
                let (cluster, wl) = (self.cluster, self.wl);
                let unready = unready_pod_events(cluster, wl, &self.latest, &self.selector);
                let events = bounded(unready).await;
                Some(Outcome::Failed { reason, events })
            }
        })
    }

    /// Fails the rollout when one of `pods` runs the new template and is stuck for good.
    async fn pods_changed(&self, pods: Vec<DynamicObject>) -> Option<Outcome> {
        for pod in pods {
            let Ok(pod) = pod.try_parse::<Pod>() else {
                continue;
            };
            let Some(failure) = pods::fatal_state(&pod) else {
                continue;
            };
            if is_new_pod(self.cluster, self.wl, &self.latest, &pod).await {
                let events = bounded(pod_events(self.cluster, self.wl, &pod)).await;
                let PodFailure { reason, .. } = failure;
                return Some(Outcome::Failed { reason, events });
            }
        }
        None
    }
}

/// The workload a change of its watch shows; `None` once it is gone.
fn workload_in(change: Change) -> Option<DynamicObject> {
    match change {
        Change::Listed(items) => items.into_iter().next(),
        Change::Applied(object) => Some(*object),
        Change::Deleted => None,
    }
}

/// The pods a change of the pod watch shows (none for a deletion).
fn pods_in(change: Change) -> Vec<DynamicObject> {
    match change {
        Change::Listed(items) => items,
        Change::Applied(pod) => vec![*pod],
        Change::Deleted => Vec::new(),
    }
}

/// Why a rollout that ran out of time failed, with the last progress it showed.
fn timeout_reason(wl: &Workload, last_message: &str) -> String {
    let waiting = if last_message.is_empty() {
        String::new()
    } else {
        format!(": {last_message}")
    };
    format!("timed out waiting for the rollout of {wl}{waiting}")
}

async fn grace_over(interrupt: Option<&Interrupt>) -> Signal {
    match interrupt {
        Some(interrupt) => interrupt.grace_over().await,
        None => std::future::pending().await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::WorkloadKind;
    use kube::api::ApiResource;

    fn pod(name: &str) -> DynamicObject {
        DynamicObject::new(name, &ApiResource::erase::<Pod>(&()))
    }

    fn names(objects: &[DynamicObject]) -> Vec<String> {
        objects
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .collect()
    }

    #[test]
    fn a_workload_change_shows_the_workload_until_it_is_deleted() {
        let listed = workload_in(Change::Listed(vec![pod("cart"), pod("other")]));
        assert_eq!(listed.and_then(|o| o.metadata.name), Some("cart".into()));
        assert!(workload_in(Change::Listed(Vec::new())).is_none());
        let applied = workload_in(Change::Applied(Box::new(pod("cart"))));
        assert_eq!(applied.and_then(|o| o.metadata.name), Some("cart".into()));
        assert!(workload_in(Change::Deleted).is_none());
    }

    #[test]
    fn a_pod_change_shows_every_listed_or_applied_pod() {
        assert_eq!(
            names(&pods_in(Change::Listed(vec![pod("a"), pod("b")]))),
            ["a", "b"]
        );
        assert_eq!(names(&pods_in(Change::Applied(Box::new(pod("c"))))), ["c"]);
        assert!(pods_in(Change::Deleted).is_empty());
    }

    #[test]
    fn a_timeout_names_the_workload_and_the_last_progress() {
        let wl = Workload {
            kind: WorkloadKind::Deployment,
            namespace: "shop".into(),
            name: "cart".into(),
        };
        assert_eq!(
            timeout_reason(&wl, ""),
            "timed out waiting for the rollout of deployment/shop/cart"
        );
        assert_eq!(
            timeout_reason(&wl, "1 of 3 updated replicas are available"),
            "timed out waiting for the rollout of deployment/shop/cart: 1 of 3 updated replicas are available"
        );
    }
}
