//! Plans, images and rollouts for the report tests: one builder each, with parameters for what
//! the tests of each renderer set differently (commits, timings, error text).

use crate::deploy::{RolloutResult, RolloutStatus};
use crate::detect::ChangeSource;
use crate::image::push::{ImageResult, ImageStatus};
use crate::plan::{NodePlan, Plan, Reason};

pub(crate) fn reason(path: &str, rule: &str) -> Reason {
    Reason {
        path: path.into(),
        rule: rule.into(),
    }
}

/// A service or group with `reasons` (`(path, rule)` pairs) listed and `more` counted; changed
/// when it has any.
pub(crate) fn node(name: &str, reasons: &[(&str, &str)], more: usize) -> NodePlan {
    NodePlan {
        name: name.into(),
        changed: !reasons.is_empty(),
        reasons: reasons
            .iter()
            .map(|(path, rule)| reason(path, rule))
            .collect(),
        more_reasons: more,
    }
}

/// A plan from git, `aaaa…` to `bbbb…`, over `files` changed files, no warnings; `changed`
/// names the changed services.
pub(crate) fn plan(services: Vec<NodePlan>, groups: Vec<NodePlan>, files: usize) -> Plan {
    Plan {
        base: Some("a".repeat(40)),
        head: "b".repeat(40),
        source: ChangeSource::Git,
        changed: services
            .iter()
            .filter(|s| s.changed)
            .map(|s| s.name.clone())
            .collect(),
        services,
        groups,
        files,
        warnings: vec![],
    }
}

/// How the images of a test look: where they are pushed, how long each took, and how a failed
/// one failed.
#[derive(Clone, Copy, Default)]
pub(crate) struct Images<'a> {
    pub registry: &'a str,
    pub digest: &'a str,
    pub seconds: f64,
    pub error: &'a str,
    pub failed_at: Option<(&'a str, usize)>,
}

impl Images<'_> {
    /// The image of `service`: pushed as `{registry}/{service}@{digest}`, or, when `status` is
    /// [`ImageStatus::Failed`], none, with the error and where it happened.
    pub(crate) fn of(&self, service: &str, status: ImageStatus) -> ImageResult {
        let ok = status != ImageStatus::Failed;
        ImageResult {
            service: service.into(),
            image: ok.then(|| format!("{}/{service}@{}", self.registry, self.digest)),
            digest: ok.then(|| self.digest.into()),
            tags: vec![],
            status,
            error: (!ok).then(|| self.error.into()),
            warning: None,
            bases_moved: vec![],
            seconds: self.seconds,
            failed_at: self
                .failed_at
                .filter(|_| !ok)
                .map(|(file, line)| (file.into(), line)),
            log: None,
            twin_image: None,
        }
    }
}

/// The rollout of `service` to `deployment/shop/{service}`, taking `seconds`.
pub(crate) fn rollout(
    service: &str,
    status: RolloutStatus,
    reason: Option<&str>,
    seconds: f64,
) -> RolloutResult {
    RolloutResult {
        service: service.into(),
        workload: format!("deployment/shop/{service}"),
        status,
        reason: reason.map(str::to_string),
        seconds,
        events: vec![],
        previous_image: None,
        source: None,
    }
}
