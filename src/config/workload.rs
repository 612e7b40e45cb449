//! A workload as a config names it (`deployment/cart`): parsed once, with the names kubectl
//! accepts, by config validation at load and by deploy. Pure, so both can use it without a
//! cycle (deploy adds the namespace and the kube resource).

use std::fmt;
use std::str::FromStr;

/// A workload kind that has a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    /// The lowercase name kubectl uses: `deployment`, `statefulset`, `daemonset`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
        }
    }

    /// Reads a kind as kubectl does: singular, plural, short name (`deploy`, `sts`, `ds`) or
    /// with the group (`deployment.apps`), in any case. `None` for a kind without a rollout.
    pub fn from_resource_name(kind: &str) -> Option<WorkloadKind> {
        let kind = kind.to_ascii_lowercase();
        let kind = kind.strip_suffix(".apps").unwrap_or(&kind);
        match kind {
            "deployment" | "deployments" | "deploy" => Some(WorkloadKind::Deployment),
            "statefulset" | "statefulsets" | "sts" => Some(WorkloadKind::StatefulSet),
            "daemonset" | "daemonsets" | "ds" => Some(WorkloadKind::DaemonSet),
            _ => None,
        }
    }
}

/// A config's `workload: kind/name`, without the namespace (a separate, optional key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub name: String,
}

/// Why a `workload` string is not `kind/name`; the text follows "`<spec>` is not a workload: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadRefError {
    #[error("write it as kind/name, e.g. deployment/cart")]
    NoSlash,
    #[error("the kind must be deployment, statefulset or daemonset")]
    UnknownKind { kind: String },
    #[error("the name must be one path segment after the kind")]
    BadName,
}

impl WorkloadRef {
    /// Parses `kind/name`; see [`WorkloadKind::from_resource_name`] for the kinds.
    ///
    /// # Errors
    /// When `spec` has no `/`, the kind has no rollout, or the name is empty or has a `/`.
    pub fn parse(spec: &str) -> Result<WorkloadRef, WorkloadRefError> {
        let (kind, name) = spec.split_once('/').ok_or(WorkloadRefError::NoSlash)?;
        let kind = WorkloadKind::from_resource_name(kind).ok_or_else(|| {
            WorkloadRefError::UnknownKind {
                kind: kind.to_string(),
            }
        })?;
        if name.is_empty() || name.contains('/') {
            return Err(WorkloadRefError::BadName);
        }
        Ok(WorkloadRef {
            kind,
            name: name.to_string(),
        })
    }
}

impl FromStr for WorkloadRef {
    type Err = WorkloadRefError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        WorkloadRef::parse(spec)
    }
}

impl fmt::Display for WorkloadRef {
    /// `kind/name`, the kind in kubectl's singular lowercase form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_like_kubectl_resource_names() {
        use WorkloadKind::*;
        for (written, kind) in [
            ("deployment", Some(Deployment)),
            ("Deployments", Some(Deployment)),
            ("deploy", Some(Deployment)),
            ("deployment.apps", Some(Deployment)),
            ("DEPLOY.APPS", Some(Deployment)),
            ("statefulset", Some(StatefulSet)),
            ("statefulsets.apps", Some(StatefulSet)),
            ("sts", Some(StatefulSet)),
            ("daemonset", Some(DaemonSet)),
            ("DaemonSets", Some(DaemonSet)),
            ("ds", Some(DaemonSet)),
            ("cronjob", None),
            ("job", None),
            ("deployment.batch", None),
            ("", None),
        ] {
            assert_eq!(WorkloadKind::from_resource_name(written), kind, "{written}");
        }
    }

    #[test]
    fn refs_parse_kind_and_one_segment_name() {
        let r = WorkloadRef::parse("Deploy/cart").unwrap();
        assert_eq!(
            r,
            WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "cart".into()
            }
        );
        assert_eq!(r.to_string(), "deployment/cart");
        assert_eq!(
            "ds/agent".parse::<WorkloadRef>().unwrap().kind,
            WorkloadKind::DaemonSet
        );
        for (spec, error) in [
            ("cart", WorkloadRefError::NoSlash),
            (
                "job/x",
                WorkloadRefError::UnknownKind { kind: "job".into() },
            ),
            ("/x", WorkloadRefError::UnknownKind { kind: "".into() }),
            ("deployment/", WorkloadRefError::BadName),
            ("deployment/a/b", WorkloadRefError::BadName),
        ] {
            assert_eq!(WorkloadRef::parse(spec), Err(error), "{spec}");
        }
    }
}
