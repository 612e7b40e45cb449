//! `ship` selects from what runs, not only from the event: a service whose workloads run an
//! older commit (a run was cancelled, failed or never happened) is compared from that commit,
//! so the changes those runs left behind ship now.

use std::collections::{BTreeMap, BTreeSet};

use super::cluster::{self, ClusterSession};
use super::dockerfiles::PlanStage;
use super::{Error, Run};
use crate::deploy::{self, Cluster, Workload};
use crate::detect::range::FETCH_HINT;
use crate::detect::ChangeSource;
use crate::plan::{self, NodePlan, Plan, Reason, MAX_REASONS};

/// The plan of `run` widened by the commits its services' workloads run, with the manifests
/// of `session` read again for it; `None` when nothing changes. Only for detected ranges:
/// named services and "everything changed" have nothing to widen.
///
/// # Errors
/// When the manifests of a newly changed service cannot be used (exit 2, nothing pushed).
pub(crate) fn widen(
    run: &Run<'_>,
    session: &mut ClusterSession,
    stage: &PlanStage,
) -> Result<Option<Plan>, Error> {
    if !matches!(run.plan.source, ChangeSource::Git | ChangeSource::GithubApi) {
        return Ok(None);
    }
    let workloads = service_workloads(run, &session.cluster);
    let recorded = read_recorded(run, &session.cluster, &workloads);
    let (bases, mut warnings) = bases(&recorded, run.plan.base.as_deref());
    let mut found = Vec::new();
    for (commit, services) in &bases {
        match run.git.repo().is_ancestor(commit, &run.plan.head) {
            Some(true) => {
                let files = run.git.repo().changed_files(commit, &run.plan.head)?;
                let (verdicts, _) = stage.matcher.decide(&files);
                found.push((commit.as_str(), services, verdicts));
            }
            Some(false) => warnings.push(format!(
                "{} run{} {}, which is not in the history of {}; compared over the event's range only",
                services.join(", "),
                if services.len() == 1 { "s" } else { "" },
                short(commit),
                short(&run.plan.head)
            )),
            None => warnings.push(format!(
                "{} run{} {}, which is not in this clone; compared over the event's range only ({FETCH_HINT})",
                services.join(", "),
                if services.len() == 1 { "s" } else { "" },
                short(commit)
            )),
        }
    }
    let added = since_deployed(run.plan, &found);
    if added.changed == run.plan.changed && warnings.is_empty() {
        return Ok(None);
    }
    let mut widened = added;
    widened.warnings.extend(warnings);
    let widened_run = Run {
        plan: &widened,
        ..*run
    };
    session.manifests = cluster::read_manifests(&widened_run)?;
    Ok(Some(widened))
}

/// Every workload of every service that has one, by service: `workload` entries as written,
/// `manifests` entries by the workloads their documents declare (when they can be read; the
/// deploy reports the ones that cannot).
fn service_workloads(run: &Run<'_>, cluster: &Cluster) -> BTreeMap<String, Vec<Workload>> {
    let config = &run.ctx.config;
    let everyone = Plan {
        changed: config.services.keys().cloned().collect(),
        ..run.plan.clone()
    };
    let all = Run {
        plan: &everyone,
        ..*run
    };
    let documents = cluster::read_manifests(&all).unwrap_or_default();
    let default_ns = cluster.default_namespace();
    let mut out: BTreeMap<String, Vec<Workload>> = BTreeMap::new();
    for (name, service) in &config.services {
        for (index, d) in service.deploy.iter().enumerate() {
            let found: Vec<Workload> = match &d.workload {
                Some(spec) => deploy::parse_workload(spec, d.namespace.as_deref(), default_ns)
                    .into_iter()
                    .collect(),
                None => documents
                    .get(&(name.clone(), index))
                    .into_iter()
                    .flatten()
                    .filter_map(|doc| {
                        let spec = format!("{}/{}", doc.kind, doc.name);
                        deploy::parse_workload(&spec, doc.namespace.as_deref(), default_ns).ok()
                    })
                    .collect(),
            };
            out.entry(name.clone()).or_default().extend(found);
        }
    }
    out
}

/// The commit recorded on each workload of each service (`None`: none recorded, or the
/// workload cannot be read, which the deploy will report).
fn read_recorded(
    run: &Run<'_>,
    cluster: &Cluster,
    workloads: &BTreeMap<String, Vec<Workload>>,
) -> BTreeMap<String, Vec<Option<String>>> {
    let reads = workloads.iter().flat_map(|(service, list)| {
        list.iter().map(move |wl| async move {
            let commit = deploy::recorded_commit(cluster, wl).await;
            let commit = commit.unwrap_or_else(|e| {
                tracing::info!(workload = %wl, error = %crate::error::render_chain(&e), "cannot read the deployed commit");
                None
            });
            (service.clone(), commit)
        })
    });
    let read = run.session.block_on(futures::future::join_all(reads));
    let mut out: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for (service, commit) in read {
        out.entry(service).or_default().push(commit);
    }
    out
}

/// The distinct deployed commits to compare from, each with the services that run it, and a
/// warning naming the services with no usable record. A commit equal to the event's base adds
/// nothing and is left out; a record that is not a commit id is no record. Pure.
fn bases(
    recorded: &BTreeMap<String, Vec<Option<String>>>,
    event_base: Option<&str>,
) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut bases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unrecorded = Vec::new();
    for (service, commits) in recorded {
        let mut seen = BTreeSet::new();
        for commit in commits {
            match commit.as_deref().filter(|c| is_commit_id(c)) {
                Some(c) if Some(c) == event_base => {}
                Some(c) if seen.insert(c) => bases
                    .entry(c.to_string())
                    .or_default()
                    .push(service.clone()),
                Some(_) => {}
                None if !unrecorded.contains(service) => unrecorded.push(service.clone()),
                None => {}
            }
        }
    }
    let warnings = match unrecorded.is_empty() {
        true => vec![],
        false => vec![format!(
            "no deployed commit is recorded on the workloads of {}; compared over the event's range only",
            unrecorded.join(", ")
        )],
    };
    (bases, warnings)
}

/// A full or abbreviated hexadecimal commit id (what monoship records), nothing git could
/// read as an option or a ref expression.
fn is_commit_id(text: &str) -> bool {
    (7..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `plan` with each service of `found` that its deployed commit's diff changes (and the event
/// did not) marked changed, its reasons saying since which commit. Pure.
fn since_deployed(plan: &Plan, found: &[(&str, &Vec<String>, Vec<NodePlan>)]) -> Plan {
    let mut services = plan.services.clone();
    for (commit, names, verdicts) in found {
        for verdict in verdicts
            .iter()
            .filter(|v| v.changed && names.contains(&v.name))
        {
            let Some(service) = services.iter_mut().find(|s| s.name == verdict.name) else {
                continue;
            };
            if service.changed && !service.reasons.iter().any(|r| is_since(&r.rule)) {
                continue;
            }
            service.changed = true;
            for r in &verdict.reasons {
                if service.reasons.len() < MAX_REASONS {
                    service.reasons.push(Reason {
                        path: r.path.clone(),
                        rule: format!("since deployed {}: {}", short(commit), r.rule),
                    });
                } else {
                    service.more_reasons += 1;
                }
            }
            service.more_reasons += verdict.more_reasons;
        }
    }
    plan::assemble(
        plan.base.clone(),
        plan.head.clone(),
        plan.source,
        (services, plan.groups.clone()),
        plan.files,
        plan.warnings.clone(),
    )
}

fn is_since(rule: &str) -> bool {
    rule.starts_with("since deployed ")
}

/// The 7-character id people read.
fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(entries: &[(&str, &[Option<&str>])]) -> BTreeMap<String, Vec<Option<String>>> {
        entries
            .iter()
            .map(|(s, c)| {
                (
                    s.to_string(),
                    c.iter().map(|c| c.map(str::to_string)).collect(),
                )
            })
            .collect()
    }

    const A: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
    const B: &str = "ffffeeeeddddccccbbbbaaaa9999888877776666";

    #[test]
    fn each_distinct_deployed_commit_is_compared_once() {
        let r = recorded(&[
            ("cart", &[Some(A), Some(A)]),
            ("email", &[Some(A)]),
            ("web", &[Some(B), None]),
            ("docs", &[None]),
            ("api", &[Some(B)]),
            ("odd", &[Some("--output=/tmp/x")]),
        ]);
        let (bases, warnings) = bases(&r, Some(B));
        assert_eq!(bases.len(), 1, "the event's base adds nothing: {bases:?}");
        assert_eq!(bases[A], ["cart", "email"]);
        assert_eq!(
            warnings,
            ["no deployed commit is recorded on the workloads of docs, odd, web; compared over the event's range only"]
        );
    }

    fn node(name: &str, changed: bool, rule: &str) -> NodePlan {
        NodePlan {
            name: name.into(),
            changed,
            reasons: changed
                .then(|| Reason {
                    path: format!("src/{name}/main.go"),
                    rule: rule.into(),
                })
                .into_iter()
                .collect(),
            more_reasons: 0,
        }
    }

    #[test]
    fn a_service_changed_since_its_deployed_commit_changes_with_that_reason() {
        let plan = plan::assemble(
            Some(B.into()),
            "head".into(),
            ChangeSource::Git,
            (
                vec![
                    node("cart", true, "paths: src/cart/**"),
                    node("email", false, ""),
                    node("web", false, ""),
                ],
                vec![],
            ),
            1,
            vec![],
        );
        let names = vec!["email".to_string(), "cart".to_string()];
        let verdicts = vec![
            node("cart", true, "Dockerfile"),
            node("email", true, "COPY src/email"),
            node("web", true, "not deployed at A"),
        ];
        let widened = since_deployed(&plan, &[(A, &names, verdicts)]);
        assert_eq!(widened.changed, ["cart", "email"]);
        let email = widened.service("email").unwrap();
        assert_eq!(
            email.reasons[0].rule,
            "since deployed 1a2b3c4: COPY src/email"
        );
        assert_eq!(email.reasons[0].path, "src/email/main.go");
        let cart = widened.service("cart").unwrap();
        assert_eq!(cart.reasons.len(), 1, "the event's reasons stand: {cart:?}");
        assert!(
            !widened.service("web").unwrap().changed,
            "web runs another commit"
        );
    }
}
