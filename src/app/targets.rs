//! The deploy targets of a run, and the order they deploy in: pure planning over the config
//! and the plan, before any cluster is involved.

use std::collections::BTreeSet;

use crate::config::workload::WorkloadRef;
use crate::config::Config;
use crate::plan::Plan;

/// One workload to update, before its dependencies are considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub service: String,
    /// The position of the entry in the service's `deploy` list.
    pub index: usize,
    pub spec: String,
    /// The workload of a `workload` target, parsed by the parser load validated it with.
    pub workload: Option<WorkloadRef>,
    pub namespace: Option<String>,
    pub container: Option<String>,
    /// The globs of a `manifests` target.
    pub manifests: Option<Vec<String>>,
}

/// Every deploy target of every changed service, in plan order.
pub(crate) fn targets(config: &Config, plan: &Plan) -> Vec<Target> {
    let mut out = Vec::new();
    for name in &plan.changed {
        let Some(service) = config.services.get(name) else {
            continue;
        };
        for (index, d) in service.deploy.iter().enumerate() {
            let spec = match &d.workload {
                Some(w) => w.clone(),
                None => format!("manifests {}", d.manifests.join(", ")),
            };
            out.push(Target {
                service: name.clone(),
                index,
                spec,
                workload: d.workload_ref().and_then(Result::ok),
                namespace: d.namespace.clone(),
                container: d.container.clone(),
                manifests: d.workload.is_none().then(|| d.manifests.clone()),
            });
        }
    }
    out
}

/// Every service a service depends on, through groups, transitively.
pub(crate) fn service_dependencies(config: &Config, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = config
        .services
        .get(name)
        .map(|s| s.depends_on.clone())
        .unwrap_or_default();
    let mut services = BTreeSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(s) = config.services.get(&n) {
            services.insert(n.clone());
            stack.extend(s.depends_on.iter().cloned());
        } else if let Some(g) = config.groups.get(&n) {
            stack.extend(g.depends_on.iter().cloned());
        }
    }
    services
}

/// Splits `pending` into the targets that can deploy now (none of their dependencies is still
/// pending) and the rest. Never returns an empty first half while targets remain: the config
/// forbids cycles, but a loop must end anyway. Pure.
pub(crate) fn next_batch(config: &Config, pending: Vec<Target>) -> (Vec<Target>, Vec<Target>) {
    let deploying: BTreeSet<String> = pending.iter().map(|t| t.service.clone()).collect();
    let (ready, waiting): (Vec<Target>, Vec<Target>) = pending.into_iter().partition(|t| {
        service_dependencies(config, &t.service)
            .iter()
            .all(|d| !deploying.contains(d))
    });
    if ready.is_empty() {
        (waiting, Vec::new())
    } else {
        (ready, waiting)
    }
}

/// `ship --dry-run`: what would be deployed where, one entry per deploy target.
pub(crate) fn dry_run_deploys(config: &Config, plan: &Plan) -> Vec<DryRunDeploy> {
    targets(config, plan)
        .into_iter()
        .map(|t| {
            let action = match &t.manifests {
                Some(globs) => format!(
                    "apply {} server-side (field manager monoship) with the image built above substituted by digest, then wait for their rollouts",
                    globs.join(", ")
                ),
                None => format!(
                    "patch {} to the image built above, then wait for its rollout",
                    t.spec
                ),
            };
            DryRunDeploy {
                service: t.service,
                action,
            }
        })
        .collect()
}

/// One deploy a dry run would make.
#[derive(serde::Serialize)]
pub(crate) struct DryRunDeploy {
    pub service: String,
    pub action: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIN: &str = "
groups:
  proto: {paths: [pb/**]}
services:
  api:
    paths: [api/**]
    deploy: [{workload: deployment/api}]
  web:
    paths: [web/**]
    depends_on: [proto, api]
    deploy: [{workload: deployment/web}, {manifests: [k8s/web/*.yml]}]
  worker:
    paths: [worker/**]
    depends_on: [web]
    deploy: [{workload: daemonset/worker, namespace: jobs, container: main}]
";

    fn config() -> Config {
        crate::config::parse(CHAIN, "m.yml").unwrap()
    }

    fn plan(changed: &[&str]) -> Plan {
        let nodes = changed
            .iter()
            .map(|n| crate::report::fixtures::node(n, &[("x", "y")], 0))
            .collect();
        crate::report::fixtures::plan(nodes, vec![], 1)
    }

    #[test]
    fn targets_follow_the_plan_and_the_deploy_entries() {
        let t = targets(&config(), &plan(&["web", "worker"]));
        let specs: Vec<(&str, usize, &str)> = t
            .iter()
            .map(|t| (t.service.as_str(), t.index, t.spec.as_str()))
            .collect();
        assert_eq!(
            specs,
            [
                ("web", 0, "deployment/web"),
                ("web", 1, "manifests k8s/web/*.yml"),
                ("worker", 0, "daemonset/worker")
            ]
        );
        assert_eq!(
            t[1].manifests.as_deref(),
            Some(&["k8s/web/*.yml".to_string()][..])
        );
        assert_eq!(t[2].namespace.as_deref(), Some("jobs"));
        assert_eq!(t[2].container.as_deref(), Some("main"));
    }

    #[test]
    fn dependencies_are_found_through_groups_and_transitively() {
        let deps = service_dependencies(&config(), "worker");
        assert_eq!(deps, ["api", "web"].map(String::from).into());
        assert!(service_dependencies(&config(), "api").is_empty());
    }

    #[test]
    fn batches_deploy_dependencies_first() {
        let config = config();
        let mut pending = targets(&config, &plan(&["api", "web", "worker"]));
        let mut order = Vec::new();
        while !pending.is_empty() {
            let (ready, waiting) = next_batch(&config, pending);
            let mut services: Vec<String> = ready.into_iter().map(|t| t.service).collect();
            services.dedup();
            order.push(services);
            pending = waiting;
        }
        assert_eq!(order, [vec!["api"], vec!["web"], vec!["worker"]]);
    }

    #[test]
    fn a_batch_is_never_empty_while_targets_remain() {
        // Only `worker` changed: `web` is not pending, so it does not hold `worker` back.
        let config = config();
        let (ready, waiting) = next_batch(&config, targets(&config, &plan(&["worker"])));
        assert_eq!(ready.len(), 1);
        assert!(waiting.is_empty());
    }
}
