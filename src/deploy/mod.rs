//! Deploy: put a service's new image (by digest) into its Kubernetes workloads and follow the
//! rollout until `kubectl rollout status` would call it done, or until a new pod shows a state
//! that never recovers; then optionally roll back the way `kubectl rollout undo` does.
//!
//! [`deploy`] never returns an error: every outcome, including an unreachable cluster, is a
//! [`RolloutResult`] whose `reason` says what happened, so one service's failure does not stop
//! the report of the others.

mod apply;
mod cluster;
pub(crate) mod eks;
pub(crate) mod image;
pub(crate) mod manifests;
pub(crate) mod pods;
pub(crate) mod preflight;
mod recorded;
pub mod rollout;
mod undo;
mod wait;
mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde::Serialize;
use serde_json::{json, Value};

pub use crate::config::workload::{WorkloadKind, WorkloadRef};
use crate::interrupt::{Interrupt, Signal};
use crate::retry::{retry, GaveUp, RetryPolicy, Retrying, Verdict};

pub use apply::{apply_manifests, ManifestDeploy};
pub use cluster::{usual_kubeconfigs, Cluster, TokenError, TOKEN_REFRESH};
pub use recorded::recorded_commit;
pub use rollout::{rollout_status, Status};

/// Annotation on the workload: the commit whose image it runs.
pub const COMMIT_ANNOTATION: &str = "monoship.dev/commit";
/// Annotation on the workload: the committer time of that commit, in Unix seconds, to order
/// deploys whose commits the local clone does not have.
pub const COMMIT_TIME_ANNOTATION: &str = "monoship.dev/commit-time";
/// Annotation on the workload: the CI run that deployed it.
pub const RUN_URL_ANNOTATION: &str = "monoship.dev/run-url";
/// Annotation on the workload: the image the patched container ran before.
pub const PREVIOUS_IMAGE_ANNOTATION: &str = "monoship.dev/previous-image";
/// The annotation `kubectl rollout history` shows as CHANGE-CAUSE.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The field manager of monoship's patches.
pub const FIELD_MANAGER: &str = "monoship";

/// A patch is re-read and tried again after `409 Conflict`, at once, 3 times in all.
const CONFLICTS: RetryPolicy = RetryPolicy::new(3, Duration::ZERO);
/// A request the API server was briefly unable to answer is sent 4 times in all, pausing
/// 250 ms, then 500 ms, then 1 s.
const TRANSIENT: RetryPolicy = RetryPolicy::new(4, Duration::from_millis(250));

/// Whether an error is worth the same request again: throttling, a server error, or a
/// connection that failed.
fn transient(error: &kube::Error) -> Verdict {
    let again = match error {
        kube::Error::Api(s) => s.code == 429 || (500..600).contains(&s.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    };
    if again {
        Verdict::Retry
    } else {
        Verdict::Fatal
    }
}

/// `request` again after a transient failure, under [`TRANSIENT`]. Every request retried
/// this way is idempotent: reads, and patches that carry the resourceVersion they were made
/// from.
async fn with_retries<T, F, Fut>(what: &str, mut request: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    let on_retry = |e: &kube::Error, r: Retrying| {
        let attempt = r.attempt;
        tracing::info!(attempt, error = %describe(e), "{what} failed; trying again");
    };
    retry(&TRANSIENT, transient, on_retry, |_| request())
        .await
        .map_err(GaveUp::into_error)
}

// Kinds and `kind/name` parsing are shared with config validation; the kube resource of a
// kind belongs with the cluster code, so it is added here.
impl WorkloadKind {
    fn api_resource(self) -> ApiResource {
        match self {
            WorkloadKind::Deployment => ApiResource::erase::<Deployment>(&()),
            WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            WorkloadKind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
        }
    }
}

/// One workload: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl Workload {
    /// Places a config's workload in `namespace` when given and not empty, else `default_ns`.
    pub fn in_namespace(
        workload: WorkloadRef,
        namespace: Option<&str>,
        default_ns: &str,
    ) -> Workload {
        let namespace = namespace.filter(|n| !n.is_empty()).unwrap_or(default_ns);
        Workload {
            kind: workload.kind,
            namespace: namespace.to_string(),
            name: workload.name,
        }
    }
}

impl fmt::Display for Workload {
    /// `kind/namespace/name`, the `workload` of `ship --format json`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// Reads a config's `workload: kind/name` with [`WorkloadRef::parse`] (the parser config
/// validation uses), in `namespace` when given, else `default_ns`.
///
/// # Errors
/// [`DeployError::Workload`] when `spec` is not `kind/name` with a kind that has a rollout
/// and a one-segment name.
pub fn parse_workload(
    spec: &str,
    namespace: Option<&str>,
    default_ns: &str,
) -> Result<Workload, DeployError> {
    let workload = WorkloadRef::parse(spec).map_err(|why| DeployError::Workload {
        spec: spec.to_string(),
        why: why.to_string(),
    })?;
    Ok(Workload::in_namespace(workload, namespace, default_ns))
}

/// Decides whether the commit a workload runs is newer than the one being deployed, given
/// that commit and its `monoship.dev/commit-time` annotation; see
/// [`DeployContext::older_than_deployed`].
pub type NewerCheck = Arc<dyn Fn(&str, Option<&str>) -> bool + Send + Sync>;

/// The commit a run deploys and the rules all its deploys follow.
#[derive(Clone)]
pub struct DeployContext {
    /// The commit the images were built from; recorded in the `monoship.dev/commit`
    /// annotation.
    pub commit: String,
    /// Its committer time (Unix seconds); recorded in `monoship.dev/commit-time`.
    pub commit_time: Option<i64>,
    /// The CI run, recorded in the `monoship.dev/run-url` annotation.
    pub run_url: Option<String>,
    /// How long a rollout may take, from the first request. A rollback gets the same time
    /// again.
    pub timeout: Duration,
    /// On failure, restore the previous pod template as `kubectl rollout undo` does and wait
    /// for it.
    pub rollback: bool,
    /// Deploy even when the workload runs a newer commit.
    pub force: bool,
    /// Safety check against going backwards. Called with the commit recorded on the workload
    /// (when there is one and it differs from `commit`) and its recorded time; returns `true`
    /// when that commit is newer than `commit`, e.g. `commit` is its ancestor in git. It is
    /// asked again after every `409 Conflict`, so a concurrent newer deploy always wins. The
    /// deploy is then `skipped` unless `force`. `None` deploys whatever runs.
    pub older_than_deployed: Option<NewerCheck>,
    /// The run's SIGINT/SIGTERM: a rollout still running `interrupt.grace` after it is
    /// rolled back (when `rollback`), and a deploy not yet patched is skipped.
    pub interrupt: Interrupt,
}

impl DeployContext {
    /// The commit `object` runs, when it is newer than this one and the deploy is not forced.
    fn newer_on(&self, object: &WorkloadObject) -> Option<String> {
        if self.force {
            return None;
        }
        let deployed = object.annotation(COMMIT_ANNOTATION)?;
        let time = object.annotation(COMMIT_TIME_ANNOTATION);
        let check = self.older_than_deployed.as_ref()?;
        (deployed != self.commit && check(deployed, time)).then(|| deployed.to_string())
    }

    /// The reason of a deploy skipped because `wl` runs the newer commit `deployed`.
    fn newer_reason(&self, wl: &Workload, deployed: &str) -> String {
        format!(
            "{wl} runs {deployed}, newer than {}; pass --force to deploy it anyway",
            self.commit
        )
    }

    /// The annotations every deployed workload gets: commit, its time, the run and the
    /// change cause (`kubectl rollout history`) naming `service` and `image`.
    fn annotations(&self, service: &str, image: &str) -> BTreeMap<&'static str, Value> {
        let mut annotations = BTreeMap::new();
        annotations.insert(COMMIT_ANNOTATION, json!(self.commit));
        if let Some(time) = self.commit_time {
            annotations.insert(COMMIT_TIME_ANNOTATION, json!(time.to_string()));
        }
        if let Some(url) = &self.run_url {
            annotations.insert(RUN_URL_ANNOTATION, json!(url));
        }
        annotations.insert(
            CHANGE_CAUSE_ANNOTATION,
            json!(format!(
                "monoship: {service} {image} (commit {})",
                self.commit
            )),
        );
        annotations
    }
}

impl fmt::Debug for DeployContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeployContext")
            .field("commit", &self.commit)
            .field("commit_time", &self.commit_time)
            .field("run_url", &self.run_url)
            .field("timeout", &self.timeout)
            .field("rollback", &self.rollback)
            .field("force", &self.force)
            .field(
                "older_than_deployed",
                &self.older_than_deployed.as_ref().map(|_| ".."),
            )
            .field("interrupt", &self.interrupt.signal())
            .finish()
    }
}

/// What to deploy where.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The service's name, for messages.
    pub service: String,
    pub workload: Workload,
    /// The container to update. `None`: every container and init container whose image
    /// belongs to `repository` (compared without tag or digest; see [`image::repository_of`]).
    pub container: Option<String>,
    /// The image name without tag or digest, e.g. `127.0.0.1:5000/shop/cart`.
    pub repository: String,
    /// Another name of the service's images whose containers are updated too: pull-request
    /// and branch runs push to different repositories, and either may have deployed last.
    pub also_repository: Option<String>,
    /// The image to run, by digest: `repository@sha256:...`.
    pub image: String,
    pub context: DeployContext,
}

impl DeployRequest {
    /// Every repository whose containers get the new image.
    fn repositories(&self) -> Vec<&str> {
        std::iter::once(self.repository.as_str())
            .chain(self.also_repository.as_deref())
            .collect()
    }
}

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutStatus {
    Succeeded,
    Failed,
    RolledBack,
    Skipped,
}

impl RolloutStatus {
    /// The word the JSON report uses: `succeeded`, `failed`, `rolled-back`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::Succeeded => "succeeded",
            RolloutStatus::Failed => "failed",
            RolloutStatus::RolledBack => "rolled-back",
            RolloutStatus::Skipped => "skipped",
        }
    }
}

/// One workload's outcome, as `ship --format json` reports it under `rollouts`.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutResult {
    pub service: String,
    /// `kind/namespace/name`.
    pub workload: String,
    pub status: RolloutStatus,
    /// Why it failed, was rolled back or skipped; for a success, a note such as
    /// "already running".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub seconds: f64,
    /// Events of the failing pod (`kubectl describe` lines), for logs and summaries.
    #[serde(skip)]
    pub events: Vec<String>,
    /// The image the updated container ran before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_image: Option<String>,
    /// For a `manifests` target, the file and line of the document the workload came from,
    /// for annotations.
    #[serde(skip)]
    pub source: Option<(String, usize)>,
}

/// What can go wrong before a rollout is followed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot load the kubeconfig {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("{path}: the kubeconfig is not valid YAML ({kind}); fix it or pass another with --kubeconfig")]
    KubeconfigSyntax { path: String, kind: String },
    #[error("cannot parse the kubeconfig {path}: check it with `kubectl config view --kubeconfig <file>`")]
    KubeconfigUnreadable { path: String },
    #[error("no cluster to deploy to: no kubeconfig found (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not in a cluster")]
    NoCluster(#[source] kube::config::InClusterError),
    #[error("no kubeconfig found for context `{context}`: pass --kubeconfig, or set $KUBECONFIG or ~/.kube/config")]
    NoKubeconfig { context: String },
    #[error("cannot use the cluster endpoint {endpoint}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: TokenError,
    },
    #[error("cannot get a token for the cluster")]
    Token(#[source] TokenError),
    #[error("cannot set up the Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("`{spec}` is not a workload: {why}")]
    Workload { spec: String, why: String },
    #[error("{action}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Refused(String),
}

impl DeployError {
    fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> DeployError {
        let action = action.into();
        move |source| DeployError::Api { action, source }
    }
}

/// What kube puts as the reason of an error answer whose body is not a `Status` (a proxy's
/// page, say); the body is then the message.
const NOT_A_STATUS: &str = "Failed to parse error data";

/// A kube error in one line: the API server's message for API errors, and the HTTP status
/// with the start of the body for an answer that is not a `Status`.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(s) if s.reason == NOT_A_STATUS || s.message.trim().is_empty() => {
            format!(
                "HTTP {} from the API server: {}",
                s.code,
                body_excerpt(&s.message)
            )
        }
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => one_line_chain(other),
    }
}

/// The first 200 characters of a body, on one line (an empty body says so).
fn body_excerpt(body: &str) -> String {
    let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return "an empty body".into();
    }
    let excerpt: String = line.chars().take(200).collect();
    if excerpt.len() < line.len() {
        format!("{excerpt}…")
    } else {
        excerpt
    }
}

/// An error and the causes that add something, joined on one line.
fn one_line_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text
}

/// The error and its causes in one line; an API error is told by the API server's message.
fn chain(error: &DeployError) -> String {
    if let DeployError::Api { action, source } = error {
        return format!("{action}: {}", describe(source));
    }
    one_line_chain(error)
}

/// A workload as read from the API server.
#[derive(Debug, Clone)]
pub enum WorkloadObject {
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
}

impl WorkloadObject {
    fn from_dynamic(kind: WorkloadKind, object: DynamicObject) -> Result<Self, DeployError> {
        let bad = |e: serde_json::Error| {
            DeployError::Refused(format!(
                "the API server returned a {} this version cannot read: {e}",
                kind.as_str()
            ))
        };
        let value = serde_json::to_value(object).map_err(bad)?;
        Ok(match kind {
            WorkloadKind::Deployment => {
                WorkloadObject::Deployment(serde_json::from_value(value).map_err(bad)?)
            }
            WorkloadKind::StatefulSet => {
                WorkloadObject::StatefulSet(serde_json::from_value(value).map_err(bad)?)
            }
            WorkloadKind::DaemonSet => {
                WorkloadObject::DaemonSet(serde_json::from_value(value).map_err(bad)?)
            }
        })
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            WorkloadObject::Deployment(d) => &d.metadata,
            WorkloadObject::StatefulSet(s) => &s.metadata,
            WorkloadObject::DaemonSet(d) => &d.metadata,
        }
    }

    pub fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            WorkloadObject::Deployment(d) => d.spec.as_ref().map(|s| &s.template),
            WorkloadObject::StatefulSet(s) => s.spec.as_ref().map(|s| &s.template),
            WorkloadObject::DaemonSet(d) => d.spec.as_ref().map(|s| &s.template),
        }
    }

    pub fn selector(&self) -> Option<&LabelSelector> {
        match self {
            WorkloadObject::Deployment(d) => d.spec.as_ref().map(|s| &s.selector),
            WorkloadObject::StatefulSet(s) => s.spec.as_ref().map(|s| &s.selector),
            WorkloadObject::DaemonSet(d) => d.spec.as_ref().map(|s| &s.selector),
        }
    }

    /// Whether the controller has seen the current spec.
    pub fn observed(&self) -> bool {
        let observed = match self {
            WorkloadObject::Deployment(d) => d.status.as_ref().and_then(|s| s.observed_generation),
            WorkloadObject::StatefulSet(s) => s.status.as_ref().and_then(|s| s.observed_generation),
            WorkloadObject::DaemonSet(d) => d.status.as_ref().and_then(|s| s.observed_generation),
        };
        self.metadata().generation.unwrap_or(0) <= observed.unwrap_or(0)
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata()
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }
}

/// A label selector as the `labelSelector` query parameter writes it.
fn selector_query(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// A pod template as JSON without the `pod-template-hash` label the Deployment controller adds
/// to its ReplicaSets, so templates compare as kubectl's `EqualIgnoreHash` does.
fn template_key(template: &PodTemplateSpec) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove("pod-template-hash");
        if labels.is_empty() {
            template.metadata.as_mut().expect("has metadata").labels = None;
        }
    }
    serde_json::to_value(template).unwrap_or(Value::Null)
}

/// Deploys `req.image` to `req.workload` and follows the rollout; see the module docs.
/// Progress lines (`cart: Waiting for deployment "cart" rollout to finish: ...`) go to
/// `progress` as they change.
pub async fn deploy(
    cluster: &Cluster,
    req: &DeployRequest,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> RolloutResult {
    let started = Instant::now();
    let mut result = RolloutResult {
        service: req.service.clone(),
        workload: req.workload.to_string(),
        status: RolloutStatus::Failed,
        reason: None,
        seconds: 0.0,
        events: Vec::new(),
        previous_image: None,
        source: None,
    };
    let say = |line: &str| progress(&format!("{}: {line}", req.service));
    if let Err(error) = run(cluster, req, &say, &mut result).await {
        result.status = RolloutStatus::Failed;
        result.reason = Some(chain(&error));
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

async fn run(
    cluster: &Cluster,
    req: &DeployRequest,
    say: &(dyn Fn(&str) + Send + Sync),
    result: &mut RolloutResult,
) -> Result<(), DeployError> {
    let deadline = tokio::time::Instant::now() + req.context.timeout;
    let wl = &req.workload;
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &wl.namespace,
        &wl.kind.api_resource(),
    );
    let object = within(deadline, "reading", read_workload(&api, wl)).await?;
    let template = object.template().cloned().unwrap_or_default();
    let picked = image::pick_containers(&template, req.container.as_deref(), &req.repositories())
        .map_err(|why| DeployError::Refused(format!("{wl}: {why}")))?;

    let ctx = &req.context;
    let newer = |o: &WorkloadObject| ctx.newer_on(o);
    if let Some(deployed) = newer(&object) {
        result.status = RolloutStatus::Skipped;
        result.reason = Some(ctx.newer_reason(wl, &deployed));
        return Ok(());
    }

    if let Some(signal) = ctx.interrupt.signal() {
        result.status = RolloutStatus::Skipped;
        result.reason = Some(format!(
            "interrupted by {} before it started",
            signal.name()
        ));
        return Ok(());
    }
    let already = picked.iter().all(|c| c.image == req.image);
    let patched = if already {
        say(&format!("already running {}", req.image));
        object
    } else {
        result.previous_image = picked.first().map(|c| c.image.clone());
        let patching = patch_image(&api, wl, req, object, &newer);
        let (patched, picked) = match within(deadline, "patching", patching).await? {
            Patched::Done(object, picked) => (object, picked),
            Patched::Newer(deployed) => {
                result.status = RolloutStatus::Skipped;
                result.reason = Some(ctx.newer_reason(wl, &deployed));
                return Ok(());
            }
        };
        say(&format!(
            "set {} to {}",
            container_names(&picked),
            req.image
        ));
        patched
    };

    let previous = (!already && req.context.rollback).then_some(template);
    follow(
        cluster,
        wl,
        patched,
        previous,
        &req.context,
        deadline,
        say,
        result,
    )
    .await?;
    if already && result.status == RolloutStatus::Succeeded {
        result.reason = Some(format!("already running {}", req.image));
    }
    Ok(())
}

/// Follows a rollout to its end and, when it fails or is interrupted, rolls back to
/// `previous` (the pod template before the deploy) when given, with the context's timeout
/// (after a signal: its grace) for the rollback. Sets `result`'s status and reason.
#[allow(clippy::too_many_arguments)]
async fn follow(
    cluster: &Cluster,
    wl: &Workload,
    patched: WorkloadObject,
    previous: Option<PodTemplateSpec>,
    context: &DeployContext,
    deadline: tokio::time::Instant,
    say: &(dyn Fn(&str) + Send + Sync),
    result: &mut RolloutResult,
) -> Result<(), DeployError> {
    let ours = patched.template().map(template_key);
    let new_images = patched.template().map(template_images).unwrap_or_default();
    let interrupt = Some(&context.interrupt);
    let outcome = wait::wait_rollout(cluster, wl, patched, deadline, interrupt, say).await?;
    // Another deploy may have changed the workload meanwhile: then this rollout is not ours to
    // judge, and rolling back would undo theirs.
    if let Some(why) = superseded(cluster, wl, ours.as_ref(), deadline).await {
        say(&why);
        result.status = RolloutStatus::Skipped;
        result.reason = Some(why);
        return Ok(());
    }
    let (reason, events) = match outcome {
        wait::Outcome::Done => {
            result.status = RolloutStatus::Succeeded;
            return Ok(());
        }
        wait::Outcome::Failed { reason, events } => (reason, events),
        wait::Outcome::Interrupted(signal) => {
            let reason = interrupted_reason(signal, context, &new_images, previous.is_some());
            (reason, Vec::new())
        }
    };
    say(&reason);
    result.status = RolloutStatus::Failed;
    result.events = events;
    result.reason = Some(reason.clone());
    let Some(template) = previous else {
        return Ok(());
    };
    say("rolling back");
    // After a signal the rollback gets the grace again, not the whole timeout: the runner
    // kills the step soon.
    let rollback_time = match context.interrupt.signal() {
        Some(_) => context.interrupt.grace.min(context.timeout),
        None => context.timeout,
    };
    let rollback_deadline = tokio::time::Instant::now() + rollback_time;
    let undo = undo::undo(cluster, wl, &template, say);
    let restored = match within(rollback_deadline, "rolling back", undo).await {
        Ok(undo::Undo::Patched(object)) => object,
        Ok(undo::Undo::Skipped(why)) => {
            result.reason = Some(format!("{reason}; rollback {why}"));
            return Ok(());
        }
        Err(error) => {
            result.reason = Some(format!("{reason}; rollback failed: {}", chain(&error)));
            return Ok(());
        }
    };
    match wait::wait_rollout(cluster, wl, restored, rollback_deadline, None, say).await {
        Ok(wait::Outcome::Done) => {
            result.status = RolloutStatus::RolledBack;
            if context.interrupt.signal().is_some() {
                let to = template_images(&template).join(", ");
                result.reason = Some(format!("{reason}; rolled back to {to}"));
            }
        }
        Ok(wait::Outcome::Interrupted(_)) => unreachable!("a rollback is not interrupted"),
        Ok(wait::Outcome::Failed { reason: why, .. }) => {
            result.reason = Some(format!(
                "{reason}; the rollback did not finish either: {why}"
            ));
        }
        Err(error) => {
            result.reason = Some(format!("{reason}; rollback failed: {}", chain(&error)));
        }
    }
    Ok(())
}

/// Why the rollout was superseded, when the workload's pod template is no longer `ours`: the
/// images it runs now and the commit recorded by whoever changed it.
async fn superseded(
    cluster: &Cluster,
    wl: &Workload,
    ours: Option<&Value>,
    deadline: tokio::time::Instant,
) -> Option<String> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &wl.namespace,
        &wl.kind.api_resource(),
    );
    // A rollout that ran out of time still gets a few seconds for this one read.
    let deadline = deadline.max(tokio::time::Instant::now() + Duration::from_secs(5));
    let current = within(deadline, "reading", read_workload(&api, wl))
        .await
        .ok()?;
    let template = current.template()?;
    if Some(&template_key(template)) == ours {
        return None;
    }
    let images = template_images(template);
    let by = current
        .annotation(COMMIT_ANNOTATION)
        .map(|c| format!(" (commit {c})"))
        .unwrap_or_default();
    Some(format!(
        "superseded: while this rollout ran, another deploy changed {wl}, which now runs {}{by}; not judged and not rolled back",
        images.join(", ")
    ))
}

/// The images of a pod template's containers, in order.
fn template_images(template: &PodTemplateSpec) -> Vec<String> {
    template
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| c.image.clone())
        .collect()
}

/// Why a rollout still running at the end of the grace after `signal` failed; without a
/// rollback it says what the workload was left at. Pure.
fn interrupted_reason(
    signal: Signal,
    context: &DeployContext,
    new_images: &[String],
    rolling_back: bool,
) -> String {
    let unfinished = format!(
        "interrupted by {}: the rollout did not finish within the {}s grace",
        signal.name(),
        context.interrupt.grace.as_secs()
    );
    if rolling_back {
        unfinished
    } else {
        format!("{unfinished}; left at {}", new_images.join(", "))
    }
}

/// `step` (a request or two) bounded by the deploy's deadline.
async fn within<T>(
    deadline: tokio::time::Instant,
    what: &str,
    step: impl std::future::Future<Output = Result<T, DeployError>>,
) -> Result<T, DeployError> {
    tokio::time::timeout_at(deadline, step)
        .await
        .unwrap_or_else(|_| {
            Err(DeployError::Refused(format!(
                "timed out {what} the workload"
            )))
        })
}

fn container_names(picked: &[image::Picked]) -> String {
    let names: Vec<String> = picked
        .iter()
        .map(|c| {
            if c.init {
                format!("init container {}", c.name)
            } else {
                format!("container {}", c.name)
            }
        })
        .collect();
    names.join(", ")
}

async fn read_workload(
    api: &Api<DynamicObject>,
    wl: &Workload,
) -> Result<WorkloadObject, DeployError> {
    match with_retries("reading the workload", || api.get_opt(&wl.name)).await {
        Ok(Some(object)) => WorkloadObject::from_dynamic(wl.kind, object),
        Ok(None) => Err(DeployError::Refused(format!(
            "{} {:?} not found in namespace {:?}",
            wl.kind.as_str(),
            wl.name,
            wl.namespace
        ))),
        Err(e) => Err(DeployError::api(format!("cannot read {wl}"))(e)),
    }
}

/// How an image patch ended.
enum Patched {
    Done(WorkloadObject, Vec<image::Picked>),
    /// A concurrent deploy of a newer commit got there first; nothing was patched.
    Newer(String),
}

/// The strategic merge patch that sets the images and records the deploy. It carries the
/// resourceVersion that was read, so a concurrent change makes it fail with `409 Conflict`
/// instead of silently mixing with it.
fn image_patch(object: &WorkloadObject, picked: &[image::Picked], req: &DeployRequest) -> Value {
    let entries = |init: bool| -> Vec<Value> {
        picked
            .iter()
            .filter(|c| c.init == init)
            .map(|c| json!({"name": c.name, "image": req.image}))
            .collect()
    };
    let mut spec = serde_json::Map::new();
    for (key, init) in [("containers", false), ("initContainers", true)] {
        let list = entries(init);
        if !list.is_empty() {
            spec.insert(key.into(), Value::Array(list));
        }
    }
    let mut annotations = req.context.annotations(&req.service, &req.image);
    if let Some(previous) = picked.first() {
        annotations.insert(PREVIOUS_IMAGE_ANNOTATION, json!(previous.image));
    }
    json!({
        "metadata": {
            "resourceVersion": object.metadata().resource_version,
            "annotations": annotations,
        },
        "spec": {"template": {"spec": spec}},
    })
}

/// A failed patch attempt: a conflict is tried again on a fresh read, anything else ends it.
enum PatchFailure {
    Conflict(kube::Error),
    Fatal(DeployError),
}

impl PatchFailure {
    fn verdict(&self) -> Verdict {
        match self {
            PatchFailure::Conflict(_) => Verdict::Retry,
            PatchFailure::Fatal(_) => Verdict::Fatal,
        }
    }
}

/// Patches `req`'s image into `object`'s workload; after a `409 Conflict` it reads the
/// workload again and, unless a newer commit got there first, patches that (see
/// [`CONFLICTS`]).
async fn patch_image(
    api: &Api<DynamicObject>,
    wl: &Workload,
    req: &DeployRequest,
    object: WorkloadObject,
    newer: &(dyn Fn(&WorkloadObject) -> Option<String> + Send + Sync),
) -> Result<Patched, DeployError> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let (first, params) = (&object, &params);
    let attempt = |attempt: u32| async move {
        let object = if attempt == 1 {
            first.clone()
        } else {
            let object = read_workload(api, wl).await.map_err(PatchFailure::Fatal)?;
            // Whoever changed it may have deployed a newer commit.
            if let Some(deployed) = newer(&object) {
                return Ok(Patched::Newer(deployed));
            }
            object
        };
        let template = object.template().cloned().unwrap_or_default();
        let picked =
            image::pick_containers(&template, req.container.as_deref(), &req.repositories())
                .map_err(|why| PatchFailure::Fatal(DeployError::Refused(format!("{wl}: {why}"))))?;
        let patch = Patch::Strategic(image_patch(&object, &picked, req));
        match with_retries("patching", || api.patch(&wl.name, params, &patch)).await {
            Ok(updated) => WorkloadObject::from_dynamic(wl.kind, updated)
                .map(|object| Patched::Done(object, picked))
                .map_err(PatchFailure::Fatal),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Err(PatchFailure::Conflict(kube::Error::Api(s)))
            }
            Err(e) => Err(PatchFailure::Fatal(DeployError::api(format!(
                "cannot patch {wl}"
            ))(e))),
        }
    };
    let on_retry = |_: &PatchFailure, r: Retrying| {
        let attempt = r.attempt;
        tracing::info!(workload = %wl, attempt, "conflict while patching; reading it again");
    };
    match retry(&CONFLICTS, PatchFailure::verdict, on_retry, attempt).await {
        Ok(patched) => Ok(patched),
        Err(gave_up) => Err(match gave_up.error {
            PatchFailure::Conflict(e) => DeployError::api(format!("cannot patch {wl}"))(e),
            PatchFailure::Fatal(error) => error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_parse_like_kubectl_resource_names() {
        let w = parse_workload("deployment/cart", Some("shop"), "default").unwrap();
        assert_eq!(w.to_string(), "deployment/shop/cart");
        let w = parse_workload("Deploy/cart", None, "team").unwrap();
        assert_eq!(w.to_string(), "deployment/team/cart");
        let w = parse_workload("statefulsets.apps/db", Some(""), "default").unwrap();
        assert_eq!(w.to_string(), "statefulset/default/db");
        assert_eq!(
            parse_workload("ds/agent", None, "x").unwrap().kind,
            WorkloadKind::DaemonSet
        );
        for bad in ["cart", "job/x", "deployment/", "deployment/a/b"] {
            let err = parse_workload(bad, None, "default")
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("`{bad}` is not a workload: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn transient_failures_are_retried_4_times_and_conflicts_3_times_at_once() {
        use crate::retry::{Decision, Stop};
        let ms = Duration::from_millis;
        let decide = |policy: &RetryPolicy, n| policy.decide(n, Verdict::Retry);
        let transient_waits: Vec<Decision> = (1..=4).map(|n| decide(&TRANSIENT, n)).collect();
        assert_eq!(
            transient_waits,
            [
                Decision::Wait(ms(250)),
                Decision::Wait(ms(500)),
                Decision::Wait(ms(1000)),
                Decision::Stop(Stop::Exhausted)
            ]
        );
        let conflict_waits: Vec<Decision> = (1..=3).map(|n| decide(&CONFLICTS, n)).collect();
        assert_eq!(
            conflict_waits,
            [
                Decision::Wait(Duration::ZERO),
                Decision::Wait(Duration::ZERO),
                Decision::Stop(Stop::Exhausted)
            ]
        );
        let api = |code| {
            kube::Error::Api(
                kube::core::Status::failure("m", "R")
                    .with_code(code)
                    .boxed(),
            )
        };
        for again in [429, 500, 503] {
            assert_eq!(transient(&api(again)), Verdict::Retry, "{again}");
        }
        for fatal in [400, 403, 404, 409, 422] {
            assert_eq!(transient(&api(fatal)), Verdict::Fatal, "{fatal}");
        }
    }

    #[test]
    fn an_interrupted_rollout_says_the_grace_and_where_it_was_left() {
        let (_trigger, interrupt) = Interrupt::new(Duration::from_secs(7));
        let context = DeployContext {
            commit: "c0ffee".into(),
            commit_time: None,
            run_url: None,
            timeout: Duration::from_secs(60),
            rollback: false,
            force: false,
            older_than_deployed: None,
            interrupt,
        };
        let new = ["r/cart@sha256:ab".to_string()];
        let unfinished = "interrupted by SIGINT: the rollout did not finish within the 7s grace";
        assert_eq!(
            interrupted_reason(Signal::Interrupt, &context, &new, true),
            unfinished
        );
        assert_eq!(
            interrupted_reason(Signal::Interrupt, &context, &new, false),
            format!("{unfinished}; left at r/cart@sha256:ab")
        );
    }

    #[test]
    fn selectors_render_as_query_strings() {
        let s: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "cart", "tier": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"}]}))
        .unwrap();
        assert_eq!(
            selector_query(&s),
            "app=cart,tier=web,env in (a,b),!canary,zone"
        );
    }

    #[test]
    fn results_serialize_as_the_ship_json_shape() {
        let r = RolloutResult {
            service: "cart".into(),
            workload: "deployment/shop/cart".into(),
            status: RolloutStatus::RolledBack,
            reason: Some("why".into()),
            seconds: 1.5,
            events: vec!["hidden".into()],
            previous_image: None,
            source: None,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"service": "cart", "workload": "deployment/shop/cart", "status": "rolled-back",
                "reason": "why", "seconds": 1.5})
        );
    }

    #[test]
    fn the_image_patch_merges_containers_by_name_and_records_the_deploy() {
        let object = WorkloadObject::Deployment(Box::new(
            serde_json::from_value(
                json!({"metadata": {"name": "cart", "resourceVersion": "42"},
                "spec": {"selector": {}, "template": {}}}),
            )
            .unwrap(),
        ));
        let picked = vec![
            image::Picked {
                name: "cart".into(),
                init: false,
                image: "r/cart:old".into(),
            },
            image::Picked {
                name: "migrate".into(),
                init: true,
                image: "r/cart:old".into(),
            },
        ];
        let req = DeployRequest {
            service: "cart".into(),
            workload: parse_workload("deployment/cart", None, "shop").unwrap(),
            container: None,
            repository: "r/cart".into(),
            also_repository: None,
            image: "r/cart@sha256:ab".into(),
            context: DeployContext {
                commit: "c0ffee".into(),
                commit_time: None,
                run_url: None,
                timeout: Duration::from_secs(1),
                rollback: false,
                force: false,
                older_than_deployed: None,
                interrupt: Interrupt::never(),
            },
        };
        assert_eq!(
            image_patch(&object, &picked, &req),
            json!({
                "metadata": {"resourceVersion": "42", "annotations": {
                    "monoship.dev/commit": "c0ffee",
                    "monoship.dev/previous-image": "r/cart:old",
                    "kubernetes.io/change-cause": "monoship: cart r/cart@sha256:ab (commit c0ffee)"}},
                "spec": {"template": {"spec": {
                    "containers": [{"name": "cart", "image": "r/cart@sha256:ab"}],
                    "initContainers": [{"name": "migrate", "image": "r/cart@sha256:ab"}]}}}
            })
        );
    }
}
