//! Pod states that never recover by waiting, and how to tell them to a person.

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};

/// Container waiting reasons after which a rollout cannot finish without a new template.
/// `kubectl rollout status` waits for the progress deadline instead.
pub const FATAL_WAITING_REASONS: [&str; 5] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "InvalidImageName",
];

/// Why a pod of the new template will not become ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFailure {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// One line: the pod, the container, the waiting reason and message, and for crash loops
    /// the last exit.
    pub reason: String,
}

/// The first unrecoverable state of `pod`, if it has one: a container (or init container)
/// waiting with one of [`FATAL_WAITING_REASONS`], or `PodScheduled=False` with reason
/// `Unschedulable`.
pub fn fatal_state(pod: &Pod) -> Option<PodFailure> {
    let id = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in containers {
        if let Some(reason) = container_failure(container) {
            return Some(PodFailure {
                reason: format!("pod {id}: {reason}"),
                pod: id,
            });
        }
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })?;
    let message = unschedulable
        .message
        .as_deref()
        .unwrap_or("no reason given");
    Some(PodFailure {
        reason: format!("pod {id} cannot be scheduled: Unschedulable: {message}"),
        pod: id,
    })
}

fn container_failure(container: &ContainerStatus) -> Option<String> {
    let state = container.state.as_ref()?;
    let waiting = state.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    if !FATAL_WAITING_REASONS.contains(&reason) {
        return None;
    }
    let mut line = format!("container {:?} is waiting: {reason}", container.name);
    if let Some(message) = waiting.message.as_deref().filter(|m| !m.is_empty()) {
        line.push_str(&format!(" ({message})"));
    }
    let last = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    if let Some(exit) = last {
        line.push_str(&format!("; last exit code {}", exit.exit_code));
        if let Some(why) = exit.reason.as_deref() {
            line.push_str(&format!(" ({why})"));
        }
        if let Some(message) = exit.message.as_deref().filter(|m| !m.is_empty()) {
            line.push_str(&format!(": {}", message.trim_end()));
        }
    }
    if container.restart_count > 0 {
        let times = if container.restart_count == 1 {
            "time"
        } else {
            "times"
        };
        line.push_str(&format!("; restarted {} {times}", container.restart_count));
    }
    Some(line)
}

/// Whether every container of the pod is ready.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `kubectl describe`'s event lines, oldest first: `Warning  BackOff  <message>` with
/// `(x3)` when the event repeated.
pub fn event_lines(pod: &str, events: &[Event]) -> Vec<String> {
    let mut sorted: Vec<&Event> = events.iter().collect();
    // Timestamps have one-second precision; the resourceVersion orders events within a second.
    sorted.sort_by_key(|e| {
        let when = e
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.first_timestamp.as_ref().map(|t| t.0));
        let version = e
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok());
        (when, version)
    });
    sorted
        .iter()
        .map(|e| {
            let count = match e.count {
                Some(n) if n > 1 => format!(" (x{n})"),
                _ => String::new(),
            };
            format!(
                "{pod}: {} {}{count}: {}",
                e.type_.as_deref().unwrap_or("Normal"),
                e.reason.as_deref().unwrap_or_default(),
                e.message.as_deref().unwrap_or_default().trim_end()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod(status: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "cart-5d8f-abcde", "namespace": "shop"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn image_pull_back_off_is_fatal_with_its_message() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "cart", "image": "r/cart@sha256:1", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"r/cart@sha256:1\""}}}]}));
        let failure = fatal_state(&p).unwrap();
        assert_eq!(failure.pod, "shop/cart-5d8f-abcde");
        assert_eq!(
            failure.reason,
            "pod shop/cart-5d8f-abcde: container \"cart\" is waiting: ImagePullBackOff \
             (Back-off pulling image \"r/cart@sha256:1\")"
        );
    }

    #[test]
    fn crash_loops_report_the_last_exit() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "cart", "image": "i", "imageID": "", "ready": false, "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container=cart"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "fatal error\n"}}}]}));
        assert_eq!(
            fatal_state(&p).unwrap().reason,
            "pod shop/cart-5d8f-abcde: container \"cart\" is waiting: CrashLoopBackOff \
             (back-off 20s restarting failed container=cart); last exit code 1 (Error): fatal error; \
             restarted 2 times"
        );
    }

    #[test]
    fn init_containers_and_scheduling_count_too() {
        let p = pod(json!({"initContainerStatuses": [{
            "name": "migrate", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"x\" not found"}}}]}));
        assert!(fatal_state(&p)
            .unwrap()
            .reason
            .contains("container \"migrate\" is waiting: CreateContainerConfigError"));
        let p = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/2 nodes are available: 2 Insufficient cpu."}]}),
        );
        assert_eq!(
            fatal_state(&p).unwrap().reason,
            "pod shop/cart-5d8f-abcde cannot be scheduled: Unschedulable: 0/2 nodes are available: 2 Insufficient cpu."
        );
    }

    #[test]
    fn transient_states_are_not_fatal() {
        for reason in ["ContainerCreating", "PodInitializing"] {
            let p = pod(
                json!({"containerStatuses": [{"name": "cart", "image": "i", "imageID": "",
                "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason}}}]}),
            );
            assert_eq!(fatal_state(&p), None, "{reason}");
        }
        let p = pod(
            json!({"containerStatuses": [{"name": "cart", "image": "i", "imageID": "",
            "ready": true, "restartCount": 3, "state": {"running": {}}}]}),
        );
        assert_eq!(fatal_state(&p), None);
        assert_eq!(fatal_state(&pod(json!(null))), None);
    }

    #[test]
    fn events_render_oldest_first_with_repeats() {
        let events: Vec<Event> = serde_json::from_value(json!([
            {"metadata": {"name": "b"}, "involvedObject": {}, "type": "Warning", "reason": "BackOff",
             "message": "Back-off restarting failed container", "count": 3, "lastTimestamp": "2026-01-01T00:00:09Z"},
            {"metadata": {"name": "a2", "resourceVersion": "12"}, "involvedObject": {}, "type": "Normal", "reason": "Pulled",
             "message": "Container image \"i\" already present on machine", "lastTimestamp": "2026-01-01T00:00:01Z"},
            {"metadata": {"name": "a1", "resourceVersion": "9"}, "involvedObject": {}, "type": "Normal", "reason": "Scheduled",
             "message": "Successfully assigned shop/cart-1 to node-1", "lastTimestamp": "2026-01-01T00:00:01Z"},
        ]))
        .unwrap();
        assert_eq!(
            event_lines("cart-1", &events),
            [
                "cart-1: Normal Scheduled: Successfully assigned shop/cart-1 to node-1",
                "cart-1: Normal Pulled: Container image \"i\" already present on machine",
                "cart-1: Warning BackOff (x3): Back-off restarting failed container",
            ]
        );
    }
}
