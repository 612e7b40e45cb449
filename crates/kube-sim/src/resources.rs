//! The resource types the simulator serves, as discovery describes them.

/// One served resource type (one group/version/plural).
#[derive(Debug)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Whether the type has a `/status` subresource (its status is not writable through the main resource).
    pub status: bool,
    /// Whether the type has a `/scale` subresource.
    pub scale: bool,
    /// Whether a spec change bumps `metadata.generation`.
    pub generation: bool,
}

impl ResourceType {
    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` or `pods`, as the apiserver names a resource in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

macro_rules! rt {
    ($g:expr, $v:expr, $p:expr, $s:expr, $k:expr, $ns:expr, $short:expr, $cat:expr, $status:expr, $scale:expr, $gen:expr) => {
        ResourceType {
            group: $g,
            version: $v,
            plural: $p,
            singular: $s,
            kind: $k,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            status: $status,
            scale: $scale,
            generation: $gen,
        }
    };
}

/// Every served type. Indexes into this table identify a type throughout the crate.
#[rustfmt::skip]
pub static TYPES: &[ResourceType] = &[
    //  group, version, plural, singular, kind, namespaced, short names, categories, status, scale, generation
    rt!("", "v1", "namespaces", "namespace", "Namespace", false, &["ns"], NONE, true, false, false),
    rt!("", "v1", "nodes", "node", "Node", false, &["no"], NONE, true, false, false),
    rt!("", "v1", "pods", "pod", "Pod", true, &["po"], ALL, true, false, false),
    rt!("", "v1", "events", "event", "Event", true, &["ev"], NONE, false, false, false),
    rt!("", "v1", "configmaps", "configmap", "ConfigMap", true, &["cm"], NONE, false, false, false),
    rt!("", "v1", "secrets", "secret", "Secret", true, NONE, NONE, false, false, false),
    rt!("", "v1", "services", "service", "Service", true, &["svc"], ALL, true, false, false),
    rt!("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, &["sa"], NONE, false, false, false),
    rt!("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true, &["pvc"], NONE, true, false, false),
    rt!("apps", "v1", "deployments", "deployment", "Deployment", true, &["deploy"], ALL, true, true, true),
    rt!("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, &["rs"], ALL, true, true, true),
    rt!("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true, &["sts"], ALL, true, true, true),
    rt!("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, &["ds"], ALL, true, false, true),
    rt!("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", true, NONE, NONE, false, false, false),
    // Stored and served, but no controller acts on them.
    rt!("batch", "v1", "jobs", "job", "Job", true, NONE, ALL, true, false, true),
    rt!("batch", "v1", "cronjobs", "cronjob", "CronJob", true, &["cj"], ALL, true, false, true),
    rt!("networking.k8s.io", "v1", "ingresses", "ingress", "Ingress", true, &["ing"], NONE, true, false, false),
    rt!("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", true, &["pdb"], NONE, true, false, true),
    rt!("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true, &["hpa"], ALL, true, false, false),
];

pub const NAMESPACES: usize = 0;
pub const NODES: usize = 1;
pub const PODS: usize = 2;
pub const EVENTS: usize = 3;
pub const DEPLOYMENTS: usize = 9;
pub const REPLICASETS: usize = 10;
pub const STATEFULSETS: usize = 11;
pub const DAEMONSETS: usize = 12;
pub const CONTROLLERREVISIONS: usize = 13;
#[cfg(test)]
pub const CONFIGMAPS_FOR_TESTS: usize = 4;

/// The type served at `group`/`version`/`plural`.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<usize> {
    TYPES
        .iter()
        .position(|t| t.group == group && t.version == version && t.plural == plural)
}

/// The type of an object by its `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<usize> {
    TYPES
        .iter()
        .position(|t| t.api_version() == api_version && t.kind == kind)
}

/// The groups in discovery order (core is served under `/api`).
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for t in TYPES {
        if !t.group.is_empty() && !out.contains(&t.group) {
            out.push(t.group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_point_at_their_types() {
        assert_eq!(TYPES[NAMESPACES].kind, "Namespace");
        assert_eq!(TYPES[NODES].kind, "Node");
        assert_eq!(TYPES[PODS].kind, "Pod");
        assert_eq!(TYPES[EVENTS].kind, "Event");
        assert_eq!(TYPES[DEPLOYMENTS].kind, "Deployment");
        assert_eq!(TYPES[REPLICASETS].kind, "ReplicaSet");
        assert_eq!(TYPES[STATEFULSETS].kind, "StatefulSet");
        assert_eq!(TYPES[DAEMONSETS].kind, "DaemonSet");
        assert_eq!(TYPES[CONTROLLERREVISIONS].kind, "ControllerRevision");
    }
}
