//! The simulator handle: start it, point clients at it, seed objects, inject faults.

use crate::access::Denial;
use crate::api::{self, ApiError};
use crate::controllers::{self, ControllerState};
use crate::meta::Clock;
use crate::resources::{self, TYPES};
use crate::server;
use crate::store::Store;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Where to listen. By default `127.0.0.1:0` (an ephemeral port; see [`Sim::url`]).
    pub listen: SocketAddr,
    /// When set, every request must carry `Authorization: Bearer <token>`. By default `None`
    /// (no authentication).
    pub token: Option<String>,
    /// When set, EKS tokens (`k8s-aws-v1.` + base64url of a presigned STS
    /// `GetCallerIdentity` URL) are accepted and checked as EKS checks them. By default `None`.
    pub eks_cluster: Option<String>,
    /// AWS access key id → secret key pairs. An EKS token signed with one of these access key
    /// ids must carry a valid SigV4 signature (including the `x-k8s-aws-id` header set to
    /// `eks_cluster`). Tokens from other access key ids are accepted on their shape alone.
    /// By default empty.
    pub eks_credentials: Vec<(String, String)>,
    /// How long an EKS token is accepted after its `X-Amz-Date`. By default 15 minutes, as
    /// EKS does; tests shorten it to make a token expire during a rollout.
    pub eks_token_lifetime: Duration,
    /// How often the controllers run. By default 100 ms, which rolls out a 2-replica
    /// Deployment in about a second.
    pub tick: Duration,
    /// How many pretend nodes there are (DaemonSets run one pod on each). By default 2.
    pub nodes: usize,
    /// Namespaces to create at start, besides `default`, `kube-system`, `kube-public` and
    /// `kube-node-lease`. By default none. (Objects cannot be created in a namespace that
    /// does not exist, as on a real cluster.)
    pub namespaces: Vec<String>,
    /// What callers may not do: each [`Denial`] makes matching requests answer
    /// `403 Forbidden` and `SelfSubjectAccessReview`s answer `allowed: false`. By default
    /// none (every caller may do everything). [`Sim::deny`] adds rules later.
    pub denials: Vec<Denial>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            eks_cluster: None,
            eks_credentials: Vec::new(),
            eks_token_lifetime: Duration::from_secs(crate::auth::EKS_TOKEN_LIFETIME_SECS as u64),
            tick: Duration::from_millis(100),
            nodes: 2,
            namespaces: Vec::new(),
            denials: Vec::new(),
        }
    }
}

/// Makes the next `times` requests matching `method` (any when `None`) and `path` answer
/// with `status` and a Kubernetes `Status` body instead of being served.
#[derive(Debug, Clone)]
pub struct Fault {
    /// `GET`, `PATCH`, ...; `None` matches every method.
    pub method: Option<String>,
    /// The request path without query, e.g. `/apis/apps/v1/namespaces/shop/deployments/cart`.
    /// A trailing `*` matches any path with that prefix.
    pub path: String,
    /// 409 answers `Conflict`, 429 `TooManyRequests` (with `Retry-After: 1`), 404 `NotFound`,
    /// 401 `Unauthorized`, 503 `ServiceUnavailable`, anything else `InternalError`.
    pub status: u16,
    /// How many requests to fail. By default 1.
    pub times: u32,
    /// Answer this `text/plain` body instead of a `Status`, as a proxy or load balancer in
    /// front of the API server does.
    pub plain_body: Option<String>,
}

impl Fault {
    /// One request of any method to `path` answers `status`.
    pub fn new(status: u16, path: impl Into<String>) -> Fault {
        Fault {
            method: None,
            path: path.into(),
            status,
            times: 1,
            plain_body: None,
        }
    }

    /// Answer `body` as plain text instead of a `Status`.
    pub fn plain(mut self, body: impl Into<String>) -> Fault {
        self.plain_body = Some(body.into());
        self
    }

    /// Only requests with this method.
    pub fn method(mut self, method: &str) -> Fault {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Fail this many matching requests.
    pub fn times(mut self, times: u32) -> Fault {
        self.times = times;
        self
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && match self.path.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == self.path,
            }
    }
}

/// A request the simulator served, for tests that check what a client sent.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub content_type: Option<String>,
    /// The `Authorization` header as sent (tests check that a client sends its token).
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
    pub body: String,
    /// The status code answered (200 for a watch that started).
    pub status: u16,
}

/// What went wrong in a helper call.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("could not listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start the simulator's runtime")]
    Runtime(#[source] std::io::Error),
    #[error("document {index} is not valid YAML")]
    Yaml {
        index: usize,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("document {index} has no known apiVersion/kind ({api_version}/{kind})")]
    UnknownKind {
        index: usize,
        api_version: String,
        kind: String,
    },
    #[error("unknown resource {0:?} (use a plural like \"deployments\", a kind, or a short name)")]
    UnknownResource(String),
    #[error("the simulator refused the object: {0}")]
    Api(String),
    #[error("could not write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<ApiError> for SimError {
    fn from(e: ApiError) -> Self {
        SimError::Api(e.message)
    }
}

pub(crate) struct State {
    pub store: Store,
    pub ctl: ControllerState,
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub clock: Clock,
    pub opts: SimOptions,
    pub addr: SocketAddr,
    pub drop_epoch: tokio::sync::watch::Sender<u64>,
    pub faults: Mutex<Vec<Fault>>,
    pub requests: Mutex<VecDeque<RecordedRequest>>,
    pub unpullable: Mutex<Vec<String>>,
    pub denials: Mutex<Vec<Denial>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The authorization rules now.
    pub fn denials(&self) -> Vec<Denial> {
        self.denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A running simulator. Dropping it stops the server and the controllers.
///
/// ```no_run
/// # async fn demo() -> Result<(), kube_sim::SimError> {
/// let sim = kube_sim::Sim::start(kube_sim::SimOptions::default()).await?;
/// sim.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")?;
/// println!("kubectl --server {}", sim.url());
/// # Ok(()) }
/// ```
pub struct Sim {
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("addr", &self.shared.addr)
            .finish()
    }
}

impl Sim {
    /// Starts a simulator on its own thread (so a test that blocks its own runtime cannot
    /// starve it) and returns once it accepts connections.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(opts: SimOptions) -> Result<Sim, SimError> {
        Sim::start_blocking(opts)
    }

    /// [`Sim::start`] for code without an async runtime.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn start_blocking(opts: SimOptions) -> Result<Sim, SimError> {
        let listener =
            std::net::TcpListener::bind(opts.listen).map_err(|source| SimError::Listen {
                addr: opts.listen,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| SimError::Listen {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Listen {
            addr: opts.listen,
            source,
        })?;
        let denials = opts.denials.clone();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                store: Store::default(),
                ctl: ControllerState::default(),
            }),
            clock: Clock::default(),
            opts,
            addr,
            drop_epoch: tokio::sync::watch::channel(0).0,
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(VecDeque::new()),
            unpullable: Mutex::new(Vec::new()),
            denials: Mutex::new(denials),
        });
        seed(&shared);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(SimError::Runtime)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kube-sim-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(_) => return,
                    };
                    tokio::spawn(controllers::run(s.clone()));
                    server::serve(listener, s, rx).await;
                });
            })
            .map_err(SimError::Runtime)?;
        Ok(Sim {
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// A kubeconfig (YAML) whose current context points at this simulator, with the
    /// configured bearer token if any, and `namespace` as the context's namespace.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        kubeconfig_yaml(&self.url(), self.shared.opts.token.as_deref(), namespace)
    }

    /// Writes [`Sim::kubeconfig`] with namespace `default` to `path`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<(), SimError> {
        let path = path.as_ref();
        std::fs::write(path, self.kubeconfig("default")).map_err(|source| SimError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Creates or updates every object in a (multi-document) YAML or JSON text, as
    /// `kubectl apply --server-side --force-conflicts --field-manager kube-sim` would, and
    /// returns them as stored. Namespaced objects
    /// without a namespace go to `default`.
    ///
    /// # Errors
    /// When a document does not parse, has an unknown kind, or is refused (for example its
    /// namespace does not exist).
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>, SimError> {
        let mut docs = Vec::new();
        for (index, de) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let v: Value = serde::Deserialize::deserialize(de)
                .map_err(|source| SimError::Yaml { index, source })?;
            if v.is_null() {
                continue;
            }
            docs.push((index, v));
        }
        let mut out = Vec::new();
        let mut state = self.shared.lock();
        for (index, obj) in docs {
            let api_version = obj
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let kind = obj
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let rtype = resources::by_kind(&api_version, &kind).ok_or(SimError::UnknownKind {
                index,
                api_version,
                kind,
            })?;
            out.push(api::apply_object(
                &mut state,
                &self.shared.clock,
                rtype,
                obj,
                "kube-sim",
            )?);
        }
        Ok(out)
    }

    /// The object, if it exists. `resource` is a plural (`deployments`), singular, kind or
    /// short name (`deploy`); `namespace` is ignored for cluster-scoped types.
    ///
    /// # Errors
    /// When the resource type is unknown.
    pub fn get(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, SimError> {
        let rtype = find_type(resource)?;
        let ns = if TYPES[rtype].namespaced {
            namespace
        } else {
            ""
        };
        Ok(self.shared.lock().store.get(rtype, ns, name).cloned())
    }

    /// The objects of a type, in one namespace or (with `None`) all.
    ///
    /// # Errors
    /// When the resource type is unknown.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Result<Vec<Value>, SimError> {
        let rtype = find_type(resource)?;
        Ok(self.shared.lock().store.list_owned(rtype, namespace))
    }

    /// Deletes an object (dependents follow on the next controller tick). Returns whether it existed.
    ///
    /// # Errors
    /// When the resource type is unknown.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Result<bool, SimError> {
        let rtype = find_type(resource)?;
        let ns = if TYPES[rtype].namespaced {
            namespace
        } else {
            ""
        };
        Ok(self.shared.lock().store.delete(rtype, ns, name).is_some())
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().store.resource_version()
    }

    /// Cuts every open watch connection (abruptly, without the final chunk), as a network
    /// failure would. New watches are served as usual.
    pub fn drop_watches(&self) {
        self.shared.drop_epoch.send_modify(|e| *e += 1);
    }

    /// Forgets the change history: a watch resuming from any resourceVersion before now gets
    /// `410 Gone` ("too old resource version"), as after etcd compaction.
    pub fn compact(&self) {
        self.shared.lock().store.compact();
    }

    /// Adds a fault; see [`Fault`].
    pub fn inject_fault(&self, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(fault);
    }

    /// Moves the simulator's clock forward: timestamps, progress deadlines and EKS token
    /// expiry all see the later time.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Pods that run this exact image reference fail to pull it (`ErrImagePull`, then
    /// `ImagePullBackOff`), whatever the workload's annotations say.
    pub fn mark_image_unpullable(&self, image: &str) {
        self.shared
            .unpullable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(image.to_string());
    }

    /// From now on, callers may not do what `denial` names (403 `Forbidden`, and
    /// `allowed: false` from `SelfSubjectAccessReview`s).
    pub fn deny(&self, denial: Denial) {
        self.shared
            .denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(denial);
    }

    /// The requests served so far (the last 2,000), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.drop_watches();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn find_type(resource: &str) -> Result<usize, SimError> {
    let r = resource.to_ascii_lowercase();
    TYPES
        .iter()
        .position(|t| {
            t.plural == r
                || t.singular == r
                || t.kind.eq_ignore_ascii_case(&r)
                || t.short_names.contains(&r.as_str())
        })
        .ok_or_else(|| SimError::UnknownResource(resource.to_string()))
}

/// A kubeconfig pointing at `url`.
pub fn kubeconfig_yaml(url: &str, token: Option<&str>, namespace: &str) -> String {
    let user = match token {
        Some(t) => json!({"token": t}),
        None => json!({}),
    };
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-sim", "cluster": {"server": url}}],
        "users": [{"name": "kube-sim", "user": user}],
        "contexts": [{"name": "kube-sim", "context": {"cluster": "kube-sim", "user": "kube-sim", "namespace": namespace}}],
        "current-context": "kube-sim",
    });
    serde_yaml_ng::to_string(&doc).unwrap_or_default()
}

/// The objects every cluster starts with: the system namespaces and the nodes.
fn seed(shared: &Shared) {
    let mut state = shared.lock();
    let system = ["default", "kube-system", "kube-public", "kube-node-lease"].map(String::from);
    for ns in system.iter().chain(&shared.opts.namespaces) {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let _ = api::apply_object(
            &mut state,
            &shared.clock,
            resources::NAMESPACES,
            obj,
            "kube-sim",
        );
    }
    for i in 1..=shared.opts.nodes.max(1) {
        let obj = controllers::node_object(i, &shared.clock.now_rfc3339());
        let _ = api::apply_object(&mut state, &shared.clock, resources::NODES, obj, "kube-sim");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Sim>();
        shareable::<SimOptions>();
        shareable::<SimError>();
    }

    #[test]
    fn helpers_resolve_resource_names() {
        for name in ["deployments", "deployment", "Deployment", "deploy"] {
            assert_eq!(find_type(name).unwrap(), resources::DEPLOYMENTS, "{name}");
        }
        assert!(matches!(
            find_type("widgets"),
            Err(SimError::UnknownResource(_))
        ));
    }

    #[test]
    fn apply_yaml_reports_bad_documents() {
        let sim = Sim::start_blocking(SimOptions::default()).unwrap();
        assert!(matches!(
            sim.apply_yaml("a: [b"),
            Err(SimError::Yaml { .. })
        ));
        assert!(matches!(
            sim.apply_yaml("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"),
            Err(SimError::UnknownKind { .. })
        ));
        let err = sim
            .apply_yaml(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: nowhere}\n",
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("namespaces \"nowhere\" not found"),
            "{err}"
        );
        let cms = sim
            .apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n---\n")
            .unwrap();
        assert_eq!(cms.len(), 1);
        assert_eq!(
            sim.get("cm", "default", "c").unwrap().unwrap()["data"]["a"],
            "b"
        );
    }
}
