//! Before anything is pushed: can this cluster take the deploys? The API server must answer
//! and accept the credentials; every `workload` target's namespace, workload and container
//! must exist; every manifest's kind must be served; and SelfSubjectAccessReviews must allow
//! each verb the deploy and the rollout follower use. Every problem is collected, so one run
//! tells the operator everything to fix.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::Scope;

use super::manifests::Document;
use super::{
    describe, one_line_chain, transient, with_retries, Cluster, Workload, WorkloadKind, TRANSIENT,
};
use crate::retry::{retry, GaveUp, Retrying, Verdict};

/// A `workload` target to check.
#[derive(Debug, Clone)]
pub struct WorkloadCheck {
    pub service: String,
    pub workload: Workload,
    /// The container the config names, which must be in the pod template.
    pub container: Option<String>,
}

/// A `manifests` target to check: its documents, and the namespace of those that name none.
#[derive(Debug, Clone)]
pub struct ManifestCheck {
    pub service: String,
    pub documents: Vec<Document>,
    pub namespace: String,
}

/// Why the cluster cannot take the deploys.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("cannot connect to {server}: check the server address in the kubeconfig (or the EKS endpoint) and that this runner can reach it")]
    Unreachable {
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error("the CA does not match the certificate of {server}: check `certificate-authority-data` in the kubeconfig (or the EKS cluster's CA)")]
    Certificate {
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error("the cluster at {server} refused the credentials ({answer}): check the kubeconfig's user, token or exec plugin (or the EKS access entry of the AWS role)")]
    Credentials { server: String, answer: String },
    #[error("the cluster at {server} cannot take this deploy; nothing was pushed:\n{}", list(.problems))]
    Problems {
        server: String,
        problems: Vec<String>,
    },
}

fn list(problems: &[String]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
    lines.join("\n")
}

/// One access question: may we `verb` the `resource` (plural) of `group` in `namespace`?
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Access {
    verb: &'static str,
    group: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

impl Access {
    fn describe(&self) -> String {
        let resource = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let name = self
            .name
            .as_deref()
            .map(|n| format!(" {n:?}"))
            .unwrap_or_default();
        let scope = match &self.namespace {
            Some(ns) => format!(" in namespace {ns:?}"),
            None => String::new(),
        };
        format!("{} {resource}{name}{scope}", self.verb)
    }
}

/// What the deploy of a workload and its rollout follower do in its namespace: read, patch
/// and watch the workload; list and watch its pods; list its ReplicaSets or
/// ControllerRevisions (rollback) and the pods' events (failure reports).
fn follower_access(wl: &Workload, verbs: &[&'static str]) -> Vec<Access> {
    let ns = Some(wl.namespace.clone());
    let ask = |verb, group: &str, resource: &str, name: Option<&str>| Access {
        verb,
        group: group.into(),
        resource: resource.into(),
        namespace: ns.clone(),
        name: name.map(str::to_string),
    };
    let plural = format!("{}s", wl.kind.as_str());
    let mut out: Vec<Access> = verbs
        .iter()
        .map(|v| ask(v, "apps", &plural, Some(&wl.name)))
        .collect();
    out.push(ask("list", "apps", &plural, None));
    out.push(ask("watch", "apps", &plural, None));
    out.push(ask("list", "", "pods", None));
    out.push(ask("watch", "", "pods", None));
    let history = match wl.kind {
        WorkloadKind::Deployment => "replicasets",
        WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => "controllerrevisions",
    };
    out.push(ask("list", "apps", history, None));
    out.push(ask("list", "", "events", None));
    out
}

/// Checks the cluster for `workloads` and `manifests`; returns warnings (a check that could
/// not be made) when it can take them.
///
/// # Errors
/// A connection, certificate or credential failure at once; else every problem found.
pub async fn check(
    cluster: &Cluster,
    workloads: &[WorkloadCheck],
    manifests: &[ManifestCheck],
) -> Result<Vec<String>, PreflightError> {
    probe(cluster).await?;
    let mut problems = Vec::new();
    let mut accesses: BTreeMap<Access, Vec<String>> = BTreeMap::new();
    let mut namespaces: BTreeMap<String, String> = BTreeMap::new();
    for w in workloads {
        for a in follower_access(&w.workload, &["get", "patch"]) {
            accesses.entry(a).or_default().push(w.service.clone());
        }
    }
    for m in manifests {
        manifest_accesses(cluster, m, &mut accesses, &mut namespaces, &mut problems).await;
    }
    let mut warnings = Vec::new();
    let denied = review_all(cluster, &accesses, &mut warnings).await?;
    for (access, services) in &accesses {
        if denied.contains(access) {
            problems.push(format!(
                "service {}: the credentials may not {} (SelfSubjectAccessReview); grant it in the deployer's Role",
                services.join(", "),
                access.describe()
            ));
        }
    }
    for w in workloads {
        if let Some(problem) = check_workload(cluster, w).await {
            problems.push(problem);
        }
    }
    for (ns, service) in &namespaces {
        if let Some(problem) = missing_namespace(cluster, ns).await {
            problems.push(format!("service {service}: {problem}"));
        }
    }
    if problems.is_empty() {
        Ok(warnings)
    } else {
        problems.dedup();
        Err(PreflightError::Problems {
            server: cluster.server().to_string(),
            problems,
        })
    }
}

/// `GET /version` with the credentials: does the server answer, over a trusted certificate,
/// and accept us?
async fn probe(cluster: &Cluster) -> Result<(), PreflightError> {
    let server = cluster.server().to_string();
    // A certificate that does not verify will not verify on a second try either.
    let classify = |e: &kube::Error| {
        if untrusted_certificate(e) {
            Verdict::Fatal
        } else {
            transient(e)
        }
    };
    let on_retry = |e: &kube::Error, r: Retrying| {
        let attempt = r.attempt;
        tracing::info!(attempt, error = %describe(e), "reaching the cluster failed; trying again");
    };
    let answer = retry(&TRANSIENT, classify, on_retry, |_| {
        cluster.client.apiserver_version()
    })
    .await
    .map_err(GaveUp::into_error);
    match answer {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => {
            Err(PreflightError::Credentials {
                server,
                answer: format!("{} {}: {}", s.code, s.reason, s.message),
            })
        }
        Err(source) if untrusted_certificate(&source) => {
            Err(PreflightError::Certificate { server, source })
        }
        Err(source) => Err(PreflightError::Unreachable { server, source }),
    }
}

/// Whether the TLS handshake failed on the server's certificate (rustls words it "invalid
/// peer certificate").
fn untrusted_certificate(error: &kube::Error) -> bool {
    one_line_chain(error).contains("invalid peer certificate")
}

/// The accesses a manifests target needs (server-side apply creates or patches each
/// document; workloads are followed), and the namespaces it needs to exist. A kind the
/// cluster does not serve is a problem.
async fn manifest_accesses(
    cluster: &Cluster,
    m: &ManifestCheck,
    accesses: &mut BTreeMap<Access, Vec<String>>,
    namespaces: &mut BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
    let created: BTreeSet<&str> = m
        .documents
        .iter()
        .filter(|d| d.kind == "Namespace")
        .map(|d| d.name.as_str())
        .collect();
    for doc in &m.documents {
        let pinned = super::apply::discover(cluster, doc).await;
        let (resource, caps) = match pinned {
            Ok(found) => found,
            Err(e) => {
                problems.push(format!(
                    "service {}: the cluster does not serve {} {} ({}:{}): {}",
                    m.service,
                    doc.api_version,
                    doc.kind,
                    doc.file,
                    doc.line,
                    describe(&e)
                ));
                continue;
            }
        };
        let namespace = (caps.scope == Scope::Namespaced)
            .then(|| doc.namespace.clone().unwrap_or_else(|| m.namespace.clone()));
        if let Some(ns) = namespace.as_deref().filter(|ns| !created.contains(ns)) {
            namespaces
                .entry(ns.to_string())
                .or_insert(m.service.clone());
        }
        let workload = match (resource.group.as_str(), doc.kind.as_str(), &namespace) {
            ("apps", "Deployment", Some(_)) => Some(WorkloadKind::Deployment),
            ("apps", "StatefulSet", Some(_)) => Some(WorkloadKind::StatefulSet),
            ("apps", "DaemonSet", Some(_)) => Some(WorkloadKind::DaemonSet),
            _ => None,
        }
        .map(|kind| Workload {
            kind,
            namespace: namespace.clone().unwrap_or_default(),
            name: doc.name.clone(),
        });
        // Server-side apply patches an object that exists and creates one that does not.
        let api: Api<DynamicObject> = match &namespace {
            Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &resource),
            None => Api::all_with(cluster.client.clone(), &resource),
        };
        let absent = matches!(
            with_retries("reading a manifest's object", || api.get_opt(&doc.name)).await,
            Ok(None)
        );
        let needed = apply_access(&resource, namespace, &doc.name, absent, workload.as_ref());
        for a in needed {
            let services = accesses.entry(a).or_default();
            if !services.contains(&m.service) {
                services.push(m.service.clone());
            }
        }
    }
}

/// What server-side apply of one object needs: `get` and `patch` on it, `create` when it is
/// `absent`, and for a workload what its rollout follower reads. Pure.
fn apply_access(
    resource: &kube::api::ApiResource,
    namespace: Option<String>,
    name: &str,
    absent: bool,
    workload: Option<&Workload>,
) -> Vec<Access> {
    let ask = |verb, name: Option<&str>| Access {
        verb,
        group: resource.group.clone(),
        resource: resource.plural.clone(),
        namespace: namespace.clone(),
        name: name.map(str::to_string),
    };
    let mut needed = vec![ask("get", Some(name)), ask("patch", Some(name))];
    if absent {
        needed.push(ask("create", None));
    }
    if let Some(wl) = workload {
        needed.extend(follower_access(wl, &[]));
    }
    needed
}

/// Asks a SelfSubjectAccessReview for each access; returns those denied. A server that does
/// not serve the reviews (404) is a warning: the deploy then finds out for itself.
async fn review_all(
    cluster: &Cluster,
    accesses: &BTreeMap<Access, Vec<String>>,
    warnings: &mut Vec<String>,
) -> Result<BTreeSet<Access>, PreflightError> {
    let api: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let mut denied = BTreeSet::new();
    let params = PostParams::default();
    for access in accesses.keys() {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(access.verb.to_string()),
                    group: Some(access.group.clone()),
                    resource: Some(access.resource.clone()),
                    namespace: access.namespace.clone(),
                    name: access.name.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = with_retries("asking a SelfSubjectAccessReview", || {
            api.create(&params, &review)
        })
        .await;
        match answer {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => {
                denied.insert(access.clone());
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                warnings.push(format!(
                    "the cluster at {} does not answer SelfSubjectAccessReviews ({}), so permissions were not checked before the push",
                    cluster.server(),
                    describe(&kube::Error::Api(s))
                ));
                return Ok(denied);
            }
            Err(kube::Error::Api(s)) if s.code == 401 => {
                return Err(PreflightError::Credentials {
                    server: cluster.server().to_string(),
                    answer: format!("{} {}: {}", s.code, s.reason, s.message),
                });
            }
            Err(e) => {
                warnings.push(format!(
                    "could not ask whether the credentials may {}: {}",
                    access.describe(),
                    describe(&e)
                ));
            }
        }
    }
    Ok(denied)
}

/// The workload must exist in its namespace, with the container the config names.
async fn check_workload(cluster: &Cluster, w: &WorkloadCheck) -> Option<String> {
    let wl = &w.workload;
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &wl.namespace,
        &wl.kind.api_resource(),
    );
    let found = with_retries("reading the workload", || api.get_opt(&wl.name)).await;
    let object = match found {
        Ok(Some(object)) => object,
        Ok(None) => {
            let why = missing_namespace(cluster, &wl.namespace)
                .await
                .unwrap_or_else(|| {
                    format!(
                        "{} {:?} does not exist in namespace {:?}; create it, or fix `workload` and `namespace` in the config",
                        wl.kind.as_str(),
                        wl.name,
                        wl.namespace
                    )
                });
            return Some(format!("service {}: {why}", w.service));
        }
        // A refused read is reported by the access reviews, or by the deploy itself.
        Err(kube::Error::Api(s)) if s.code == 403 => return None,
        Err(e) => {
            return Some(format!(
                "service {}: cannot read {wl}: {}",
                w.service,
                describe(&e)
            ))
        }
    };
    let container = w.container.as_deref()?;
    let containers = container_names(&object.data);
    if containers.iter().any(|c| c == container) {
        return None;
    }
    Some(format!(
        "service {}: {wl} has no container {container:?} (it has {}); fix `container` in the config",
        w.service,
        containers.join(", ")
    ))
}

/// The names of a workload's containers and init containers.
fn container_names(object: &serde_json::Value) -> Vec<String> {
    let spec = &object["spec"]["template"]["spec"];
    ["containers", "initContainers"]
        .iter()
        .filter_map(|key| spec[key].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// Why `namespace` is a problem: it does not exist. `None` when it exists, or when the
/// credentials may not read namespaces (common for a namespaced deployer).
async fn missing_namespace(cluster: &Cluster, namespace: &str) -> Option<String> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    match with_retries("reading the namespace", || api.get_opt(namespace)).await {
        Ok(None) => Some(format!(
            "namespace {namespace:?} does not exist; create it, or fix `namespace` in the config"
        )),
        Ok(Some(_)) | Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_is_followed_through_its_pods_replicasets_and_events() {
        let wl = Workload {
            kind: WorkloadKind::Deployment,
            namespace: "shop".into(),
            name: "cart".into(),
        };
        let asked: Vec<String> = follower_access(&wl, &["get", "patch"])
            .iter()
            .map(Access::describe)
            .collect();
        assert_eq!(
            asked,
            [
                "get deployments.apps \"cart\" in namespace \"shop\"",
                "patch deployments.apps \"cart\" in namespace \"shop\"",
                "list deployments.apps in namespace \"shop\"",
                "watch deployments.apps in namespace \"shop\"",
                "list pods in namespace \"shop\"",
                "watch pods in namespace \"shop\"",
                "list replicasets.apps in namespace \"shop\"",
                "list events in namespace \"shop\"",
            ]
        );
    }

    #[test]
    fn apply_asks_create_only_for_an_object_that_does_not_exist() {
        let resource = kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let asked = |absent| -> Vec<String> {
            apply_access(&resource, Some("shop".into()), "settings", absent, None)
                .iter()
                .map(Access::describe)
                .collect()
        };
        assert_eq!(
            asked(false),
            [
                "get configmaps \"settings\" in namespace \"shop\"",
                "patch configmaps \"settings\" in namespace \"shop\"",
            ]
        );
        assert_eq!(asked(true)[2], "create configmaps in namespace \"shop\"");
    }

    #[test]
    fn container_names_include_init_containers() {
        let object = serde_json::json!({"spec": {"template": {"spec": {
            "containers": [{"name": "app"}], "initContainers": [{"name": "migrate"}]}}}});
        assert_eq!(container_names(&object), ["app", "migrate"]);
    }
}
