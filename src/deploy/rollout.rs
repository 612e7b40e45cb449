//! Rollout judgement, ported from `kubectl rollout status` (`pkg/polymorphichelpers/
//! rollout_status.go`): the same checks in the same order, and the same messages without
//! kubectl's trailing newline. Pure functions over the objects the API server returns.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};

use super::WorkloadObject;

/// How a rollout stands after one look at its workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Finished; the message is the one kubectl prints last.
    Done(String),
    /// Still going; the message is kubectl's progress line.
    Waiting(String),
    /// Will not finish by waiting: kubectl exits non-zero with this message.
    Failed(String),
}

const ROLLING_UPDATE: &str = "RollingUpdate";

/// Judges a workload as `kubectl rollout status` does.
///
/// A strategy type the server left unset counts as `RollingUpdate`, the API server's default.
pub fn rollout_status(object: &WorkloadObject) -> Status {
    match object {
        WorkloadObject::Deployment(d) => deployment_status(d),
        WorkloadObject::StatefulSet(s) => statefulset_status(s),
        WorkloadObject::DaemonSet(d) => daemonset_status(d),
    }
}

/// `DeploymentStatusViewer.Status` without a pinned revision. Crash-looping pods are not seen
/// here (kubectl waits for the progress deadline); `deploy` watches pods for that.
pub fn deployment_status(deployment: &Deployment) -> Status {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    if generation > status.observed_generation.unwrap_or(0) {
        return Status::Waiting("Waiting for deployment spec update to be observed...".into());
    }
    let progress_deadline_exceeded = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if progress_deadline_exceeded {
        return Status::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let desired = deployment.spec.as_ref().and_then(|s| s.replicas);
    if let Some(desired) = desired.filter(|&d| updated < d) {
        return Status::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {desired} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return Status::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return Status::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    Status::Done(format!("deployment {name:?} successfully rolled out"))
}

/// `StatefulSetStatusViewer.Status`. As in kubectl, a `rollingUpdate` block (which the API
/// server always defaults, with partition 0) ends the check at "partitioned roll out
/// complete" once enough pods are updated and all are ready.
pub fn statefulset_status(set: &StatefulSet) -> Status {
    let spec = set.spec.clone().unwrap_or_default();
    let strategy = spec.update_strategy.unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or(ROLLING_UPDATE) != ROLLING_UPDATE {
        return Status::Failed(format!(
            "rollout status is only available for {ROLLING_UPDATE} strategy type"
        ));
    }
    let status = set.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || set.metadata.generation.unwrap_or(0) > observed {
        return Status::Waiting("Waiting for statefulset spec update to be observed...".into());
    }
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    if let Some(replicas) = spec.replicas.filter(|&r| ready < r) {
        return Status::Waiting(format!(
            "Waiting for {} pods to be ready...",
            replicas - ready
        ));
    }
    if let Some(rolling) = strategy.rolling_update {
        if let (Some(replicas), Some(partition)) = (spec.replicas, rolling.partition) {
            if updated < replicas - partition {
                return Status::Waiting(format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                    replicas - partition
                ));
            }
        }
        return Status::Done(format!(
            "partitioned roll out complete: {updated} new pods have been updated..."
        ));
    }
    let update_revision = status.update_revision.unwrap_or_default();
    let current_revision = status.current_revision.unwrap_or_default();
    if update_revision != current_revision {
        return Status::Waiting(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."
        ));
    }
    Status::Done(format!(
        "statefulset rolling update complete {} pods at revision {current_revision}...",
        status.current_replicas.unwrap_or(0)
    ))
}

/// `DaemonSetStatusViewer.Status`.
pub fn daemonset_status(set: &DaemonSet) -> Status {
    let name = set.metadata.name.as_deref().unwrap_or_default();
    let strategy = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or(ROLLING_UPDATE);
    if strategy != ROLLING_UPDATE {
        return Status::Failed(format!(
            "rollout status is only available for {ROLLING_UPDATE} strategy type"
        ));
    }
    let status = set.status.clone().unwrap_or_default();
    if set.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return Status::Waiting("Waiting for daemon set spec update to be observed...".into());
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    if updated < desired {
        return Status::Waiting(format!(
            "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
        ));
    }
    if available < desired {
        return Status::Waiting(format!(
            "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
        ));
    }
    Status::Done(format!("daemon set {name:?} successfully rolled out"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn deployment(generation: i64, replicas: i64, status: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "cart", "generation": generation},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn deployment_messages_match_kubectl() {
        let table = [
            (
                deployment(3, 2, json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2})),
                Status::Waiting("Waiting for deployment spec update to be observed...".into()),
            ),
            (
                deployment(3, 2, json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2})),
                Status::Waiting("Waiting for deployment \"cart\" rollout to finish: 1 out of 2 new replicas have been updated...".into()),
            ),
            (
                deployment(3, 2, json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2})),
                Status::Waiting("Waiting for deployment \"cart\" rollout to finish: 1 old replicas are pending termination...".into()),
            ),
            (
                deployment(3, 2, json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1})),
                Status::Waiting("Waiting for deployment \"cart\" rollout to finish: 1 of 2 updated replicas are available...".into()),
            ),
            (
                deployment(3, 2, json!({"observedGeneration": 4, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2})),
                Status::Done("deployment \"cart\" successfully rolled out".into()),
            ),
            (
                // Only the reason counts, not the condition's status; and it wins over counts.
                deployment(3, 2, json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1,
                    "conditions": [{"type": "Progressing", "status": "True", "reason": "ProgressDeadlineExceeded"}]})),
                Status::Failed("deployment \"cart\" exceeded its progress deadline".into()),
            ),
            (
                // The previous rollout's "complete" condition does not fool it.
                deployment(4, 2, json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
                    "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]})),
                Status::Waiting("Waiting for deployment spec update to be observed...".into()),
            ),
            (
                // No status at all yet (generation 1, observed 0).
                deployment(1, 2, json!(null)),
                Status::Waiting("Waiting for deployment spec update to be observed...".into()),
            ),
        ];
        for (object, want) in table {
            assert_eq!(deployment_status(&object), want, "{:?}", object.status);
        }
    }

    #[test]
    fn deployment_without_spec_replicas_skips_the_first_count() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "cart", "generation": 1},
            "spec": {"selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "replicas": 0, "updatedReplicas": 0}}))
        .unwrap();
        assert_eq!(
            deployment_status(&d),
            Status::Done("deployment \"cart\" successfully rolled out".into())
        );
    }

    fn statefulset(strategy: Value, status: Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "generation": 2},
            "spec": {"replicas": 3, "selector": {}, "serviceName": "db", "template": {}, "updateStrategy": strategy},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn statefulset_messages_match_kubectl() {
        let plain = json!({"type": "RollingUpdate"});
        let partitioned = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}});
        let table = [
            (
                statefulset(json!({"type": "OnDelete"}), json!({"replicas": 3})),
                Status::Failed("rollout status is only available for RollingUpdate strategy type".into()),
            ),
            (
                statefulset(plain.clone(), json!({"replicas": 3, "observedGeneration": 0})),
                Status::Waiting("Waiting for statefulset spec update to be observed...".into()),
            ),
            (
                statefulset(plain.clone(), json!({"replicas": 3, "observedGeneration": 1})),
                Status::Waiting("Waiting for statefulset spec update to be observed...".into()),
            ),
            (
                statefulset(plain.clone(), json!({"replicas": 3, "observedGeneration": 2, "readyReplicas": 1})),
                Status::Waiting("Waiting for 2 pods to be ready...".into()),
            ),
            (
                statefulset(partitioned.clone(), json!({"replicas": 3, "observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1})),
                Status::Waiting("Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...".into()),
            ),
            (
                statefulset(partitioned, json!({"replicas": 3, "observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 2})),
                Status::Done("partitioned roll out complete: 2 new pods have been updated...".into()),
            ),
            (
                // kubectl's quirk: a defaulted rollingUpdate (partition 0) never compares revisions.
                statefulset(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                    json!({"replicas": 3, "observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 3})),
                Status::Done("partitioned roll out complete: 3 new pods have been updated...".into()),
            ),
            (
                statefulset(plain.clone(), json!({"replicas": 3, "observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1,
                    "currentRevision": "db-1", "updateRevision": "db-2"})),
                Status::Waiting("waiting for statefulset rolling update to complete 1 pods at revision db-2...".into()),
            ),
            (
                statefulset(plain, json!({"replicas": 3, "observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 3,
                    "currentReplicas": 3, "currentRevision": "db-2", "updateRevision": "db-2"})),
                Status::Done("statefulset rolling update complete 3 pods at revision db-2...".into()),
            ),
        ];
        for (object, want) in table {
            assert_eq!(statefulset_status(&object), want, "{:?}", object.status);
        }
    }

    fn daemonset(strategy: &str, generation: i64, status: Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "generation": generation},
            "spec": {"selector": {}, "template": {}, "updateStrategy": {"type": strategy}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn daemonset_messages_match_kubectl() {
        let counts = |observed: i64, updated: i32, available: i32| {
            json!({"observedGeneration": observed, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                "numberMisscheduled": 0, "numberReady": available, "updatedNumberScheduled": updated,
                "numberAvailable": available})
        };
        let table = [
            (
                daemonset("OnDelete", 2, counts(2, 2, 2)),
                Status::Failed("rollout status is only available for RollingUpdate strategy type".into()),
            ),
            (
                daemonset("RollingUpdate", 2, counts(1, 2, 2)),
                Status::Waiting("Waiting for daemon set spec update to be observed...".into()),
            ),
            (
                daemonset("RollingUpdate", 2, counts(2, 1, 2)),
                Status::Waiting("Waiting for daemon set \"agent\" rollout to finish: 1 out of 2 new pods have been updated...".into()),
            ),
            (
                daemonset("RollingUpdate", 2, counts(2, 2, 1)),
                Status::Waiting("Waiting for daemon set \"agent\" rollout to finish: 1 of 2 updated pods are available...".into()),
            ),
            (
                daemonset("RollingUpdate", 2, counts(2, 2, 2)),
                Status::Done("daemon set \"agent\" successfully rolled out".into()),
            ),
        ];
        for (object, want) in table {
            assert_eq!(daemonset_status(&object), want, "{:?}", object.status);
        }
    }
}
