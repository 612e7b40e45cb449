//! The commit a workload runs, as a deploy recorded it (`monoship.dev/commit`): where `ship`
//! starts comparing a service from, so changes of runs that never happened still ship.

use kube::api::{Api, DynamicObject};

use super::{with_retries, Cluster, DeployError, Workload, COMMIT_ANNOTATION};

/// The commit recorded on `wl`; `None` when the workload does not exist or has no record.
///
/// # Errors
/// When the API server cannot be asked.
pub async fn recorded_commit(
    cluster: &Cluster,
    wl: &Workload,
) -> Result<Option<String>, DeployError> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &wl.namespace,
        &wl.kind.api_resource(),
    );
    let object = with_retries("reading the workload", || api.get_opt(&wl.name))
        .await
        .map_err(DeployError::api(format!("cannot read {wl}")))?;
    Ok(object.and_then(|o| {
        o.metadata
            .annotations
            .and_then(|mut a| a.remove(COMMIT_ANNOTATION))
    }))
}
