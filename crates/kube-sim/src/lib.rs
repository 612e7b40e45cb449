//! `kube-sim`: a small Kubernetes API server simulator that speaks real HTTP, so that
//! `kubectl --server http://127.0.0.1:PORT` and Kubernetes client libraries can drive it.
//!
//! It serves discovery, apps/v1 Deployments, StatefulSets, DaemonSets, ReplicaSets and
//! ControllerRevisions, and core/v1 Pods, Events, ConfigMaps, Secrets, Services,
//! ServiceAccounts, PersistentVolumeClaims, Namespaces and Nodes, with get, list (label and
//! field selectors), watch, create, update, delete and all four patch types. Controllers
//! roll workloads out on a fast tick, and the workload annotation
//! `sim.monoship.dev/fail-next` (`ImagePullBackOff`, `CrashLoopBackOff`,
//! `ProgressDeadlineExceeded`, or the extra `CreateContainerConfigError`) makes the next
//! rollout of a new pod template fail that way. The crate's README lists what is and is not
//! simulated.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_sim::SimError> {
//! use kube_sim::{Sim, SimOptions};
//! let sim = Sim::start(SimOptions { token: Some("t0ken".into()), ..SimOptions::default() }).await?;
//! sim.write_kubeconfig("/tmp/kubeconfig")?;
//! let deploy = sim.get("deployments", "default", "web")?;
//! # Ok(()) }
//! ```
//!
//! # Caveats
//! Plain HTTP only (kubectl sends no credentials over it). Server-side apply merges with
//! strategic-merge rules and tracks field managers with an approximate field-set model
//! (list keys are guessed, not read from OpenAPI). `limit`/`continue` are ignored (every
//! list is one page). Pods terminate in two ticks, whatever their grace period.

// A test component: its controllers keep each reconcile loop in one piece, mirroring the
// upstream controllers they imitate; the length limit is for monoship itself.
#![allow(clippy::too_many_lines)]

mod access;
mod api;
mod auth;
mod controllers;
mod defaults;
mod fields;
mod meta;
mod openapi;
pub mod patch;
mod resources;
mod selectors;
mod server;
mod sim;
mod store;
mod tables;
mod watch;

pub use access::Denial;
pub use auth::{
    verify_eks_token, EksCaller, EksTokenError, EKS_TOKEN_LIFETIME_SECS, EKS_TOKEN_PREFIX,
};
pub use controllers::{FAIL_NEXT, POD_FAILURE};
pub use sim::{kubeconfig_yaml, Fault, RecordedRequest, Sim, SimError, SimOptions};
