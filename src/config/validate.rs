//! The checks a parsed config must pass, one small pure function per concern. Each returns
//! [`Finding`]s (key path, value, message); [`validate`] locates them in the text. The order
//! of the checks is the order problems are reported in.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{locate, BuildConfig, Config, DeployTarget, Problem, RegistryConfig, ServiceConfig};
use crate::image::registry::{validate_repository, RegistryTarget};
use crate::plan::glob;

/// A problem before it is placed in the file: the key path, the value under it to point at
/// (a list item), and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Finding<'a> {
    pub key: Vec<&'a str>,
    pub value: Option<&'a str>,
    pub message: String,
}

fn finding<'a>(key: &[&'a str], value: Option<&'a str>, message: String) -> Finding<'a> {
    Finding {
        key: key.to_vec(),
        value,
        message,
    }
}

/// Every problem of `config`, located in `text`, in a stable order.
pub(super) fn validate(config: &Config, text: &str) -> Vec<Problem> {
    findings(config)
        .into_iter()
        .map(|f| Problem {
            line: locate(text, &f.key, f.value),
            column: None,
            key: f.key.join("."),
            message: f.message,
        })
        .collect()
}

fn findings(config: &Config) -> Vec<Finding<'_>> {
    let mut out = services_declared(config);
    out.extend(names_shared_by_service_and_group(config));
    out.extend(output_name_collisions(config));
    let known = known_names(config);
    for node in nodes(config) {
        out.extend(name_problem(&node));
        out.extend(pattern_problems(&node));
        out.extend(dependency_problems(&node, &known));
    }
    for (name, service) in &config.services {
        out.extend(build_path_problems(name, service));
        out.extend(deploy_target_problems(name, &service.deploy));
    }
    out.extend(registry_problems(config.registry.as_ref()));
    out.extend(build_problem(&config.build));
    for (name, service) in &config.services {
        out.extend(repository_problem(name, service));
    }
    out.extend(shared_repositories(config));
    out.extend(cycle_problem(config));
    out
}

/// A service or a group, as the checks common to both see it.
struct Node<'a> {
    section: &'static str,
    name: &'a str,
    paths: &'a [String],
    depends_on: &'a [String],
}

/// Services first, then groups, each sorted by name.
fn nodes(config: &Config) -> impl Iterator<Item = Node<'_>> {
    let services = config.services.iter().map(|(name, s)| Node {
        section: "services",
        name,
        paths: &s.paths,
        depends_on: &s.depends_on,
    });
    let groups = config.groups.iter().map(|(name, g)| Node {
        section: "groups",
        name,
        paths: &g.paths,
        depends_on: &g.depends_on,
    });
    services.chain(groups)
}

fn known_names(config: &Config) -> BTreeSet<&str> {
    config
        .services
        .keys()
        .chain(config.groups.keys())
        .map(String::as_str)
        .collect()
}

fn services_declared(config: &Config) -> Vec<Finding<'_>> {
    if !config.services.is_empty() {
        return vec![];
    }
    vec![finding(
        &["services"],
        None,
        "no services are declared; add at least one under `services:`".into(),
    )]
}

fn names_shared_by_service_and_group(config: &Config) -> Vec<Finding<'_>> {
    config
        .groups
        .keys()
        .filter(|name| config.services.contains_key(*name))
        .map(|name| {
            finding(
                &["groups", name],
                None,
                format!("`{name}` is both a service and a group; rename one of them"),
            )
        })
        .collect()
}

/// The step outputs the action writes besides one per service (action.yml `outputs:`).
pub const ACTION_OUTPUTS: [&str; 8] = [
    "changed",
    "matrix",
    "any-changed",
    "base",
    "head",
    "images",
    "deployed",
    "failed",
];

/// Each service becomes a step output of its name, and the runner reads output names without
/// regard to case: a name equal to one of the action's outputs, or to another service's name
/// in another case, would overwrite it.
fn output_name_collisions(config: &Config) -> Vec<Finding<'_>> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, &str> = HashMap::new();
    for name in config.services.keys() {
        let folded = name.to_lowercase();
        if let Some(output) = ACTION_OUTPUTS.iter().find(|o| **o == folded) {
            out.push(finding(
                &["services", name],
                None,
                format!("`{name}` is the name of the action's own output `{output}`, which a service's output would overwrite; rename the service"),
            ));
        } else if let Some(first) = seen.get(&folded) {
            out.push(finding(
                &["services", name],
                None,
                format!("`{name}` and `{first}` differ only in case, and step output names do not; rename one of them"),
            ));
        } else {
            seen.insert(folded, name);
        }
    }
    out
}

fn name_problem<'a>(node: &Node<'a>) -> Option<Finding<'a>> {
    let name = node.name;
    (!valid_name(name)).then(|| {
        finding(
            &[node.section, name],
            None,
            format!("`{name}` is not a usable name: use letters, digits, `-` and `_`, starting with a letter or `_` (it becomes a step output name)"),
        )
    })
}

/// Names become step output names and image repository names.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn pattern_problems<'a>(node: &Node<'a>) -> Vec<Finding<'a>> {
    let key = [node.section, node.name, "paths"];
    node.paths
        .iter()
        .filter_map(|entry| {
            let (_, pattern) = glob::split_negation(entry);
            let message = if pattern.is_empty() {
                format!("`{entry}` is an empty pattern")
            } else {
                let e = glob::compile(pattern).err()?;
                format!("bad glob `{entry}`: {}", e.kind())
            };
            Some(finding(&key, Some(entry), message))
        })
        .collect()
}

fn dependency_problems<'a>(node: &Node<'a>, known: &BTreeSet<&str>) -> Vec<Finding<'a>> {
    let (name, key) = (node.name, [node.section, node.name, "depends_on"]);
    node.depends_on
        .iter()
        .filter_map(|dep| {
            let message = if dep == name {
                format!("`{name}` depends on itself")
            } else if !known.contains(dep.as_str()) {
                format!(
                    "unknown service or group `{dep}`; known: {}",
                    some_of(known)
                )
            } else {
                return None;
            };
            Some(finding(&key, Some(dep), message))
        })
        .collect()
}

/// The first known names, enough to spot a typo; a config may have thousands.
fn some_of(known: &BTreeSet<&str>) -> String {
    const SHOWN: usize = 20;
    let mut list = known
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if known.len() > SHOWN {
        list.push_str(&format!(" and {} more", known.len() - SHOWN));
    }
    list
}

/// `dockerfile` and `context`: meaningful together, and inside the repository.
fn build_path_problems<'a>(name: &'a str, service: &'a ServiceConfig) -> Vec<Finding<'a>> {
    let mut out = Vec::new();
    if service.dockerfile.is_none() && service.context.is_some() {
        out.push(finding(
            &["services", name, "context"],
            None,
            "a `context` without a `dockerfile` does nothing; add the Dockerfile's path".into(),
        ));
    }
    for (key, path) in [
        ("dockerfile", &service.dockerfile),
        ("context", &service.context),
    ] {
        if let Some(why) = path.as_deref().and_then(bad_repo_path) {
            let path = path.as_deref().unwrap_or_default();
            out.push(finding(
                &["services", name, key],
                None,
                format!("`{path}` {why}"),
            ));
        }
    }
    out
}

/// A repository path must stay inside the repository.
fn bad_repo_path(path: &str) -> Option<&'static str> {
    if path.starts_with('/') {
        Some("is absolute; give it relative to the repository root")
    } else if path.split('/').any(|s| s == "..") {
        Some("leaves the repository (`..`); give it relative to the repository root")
    } else {
        None
    }
}

fn deploy_target_problems<'a>(name: &'a str, targets: &'a [DeployTarget]) -> Vec<Finding<'a>> {
    let mut out = Vec::new();
    for target in targets {
        match (&target.workload, target.manifests.is_empty()) {
            (Some(_), false) | (None, true) => out.push(finding(
                &["services", name, "deploy"],
                None,
                "each deploy entry needs exactly one of `workload` or `manifests`".into(),
            )),
            (Some(workload), true) => {
                if let Some(Err(why)) = target.workload_ref() {
                    out.push(finding(
                        &["services", name, "deploy", "workload"],
                        Some(workload),
                        format!("`{workload}` is not a workload: {why}"),
                    ));
                }
            }
            (None, false) => {
                for m in &target.manifests {
                    if let Err(e) = glob::compile(m) {
                        out.push(finding(
                            &["services", name, "deploy", "manifests"],
                            Some(m),
                            format!("bad glob `{m}`: {}", e.kind()),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn registry_problems(registry: Option<&RegistryConfig>) -> Vec<Finding<'static>> {
    let Some(registry) = registry else {
        return vec![];
    };
    let problem = match (&registry.url, &registry.ecr) {
        (Some(url), None) => RegistryTarget::parse_push(url, None, None)
            .err()
            .map(|e| finding(&["registry", "url"], None, e.to_string())),
        (None, Some(ecr)) => ecr
            .prefix
            .as_deref()
            .and_then(|prefix| validate_repository(prefix).err())
            .map(|e| finding(&["registry", "ecr", "prefix"], None, e.to_string())),
        _ => Some(finding(
            &["registry"],
            None,
            "set exactly one of `url` (an OCI registry) or `ecr` (AWS ECR)".into(),
        )),
    };
    let prefix = registry
        .pull_request_prefix
        .as_deref()
        .and_then(|prefix| validate_repository(prefix).err())
        .map(|e| finding(&["registry", "pull_request_prefix"], None, e.to_string()));
    problem.into_iter().chain(prefix).collect()
}

fn build_problem(build: &BuildConfig) -> Option<Finding<'static>> {
    (build.max_parallel == Some(0)).then(|| {
        finding(
            &["build", "max_parallel"],
            None,
            "must be at least 1".into(),
        )
    })
}

/// A built service's image name: `repository`, else the lowercased service name.
fn repository_problem<'a>(name: &'a str, service: &ServiceConfig) -> Option<Finding<'a>> {
    service.dockerfile.as_ref()?;
    let repository = service
        .repository
        .clone()
        .unwrap_or_else(|| name.to_ascii_lowercase());
    let e = validate_repository(&repository).err()?;
    let key = if service.repository.is_some() {
        "repository"
    } else {
        "dockerfile"
    };
    Some(finding(
        &["services", name, key],
        None,
        format!("{e}; set `repository:` to a valid image name"),
    ))
}

/// The image repository a built service pushes to, as [`repository_problem`] derives it.
fn repository_of(name: &str, service: &ServiceConfig) -> Option<String> {
    service.dockerfile.as_ref()?;
    Some(
        service
            .repository
            .clone()
            .unwrap_or_else(|| name.to_ascii_lowercase()),
    )
}

/// Two built services pushing to one repository would overwrite each other's tags and
/// deploy each other's images.
fn shared_repositories(config: &Config) -> Vec<Finding<'_>> {
    let mut first_owner: HashMap<String, &str> = HashMap::new();
    let mut out = Vec::new();
    for (name, service) in &config.services {
        let Some(repository) = repository_of(name, service) else {
            continue;
        };
        match first_owner.get(&repository) {
            Some(first) => {
                let key = if service.repository.is_some() {
                    "repository"
                } else {
                    "dockerfile"
                };
                out.push(finding(
                    &["services", name, key],
                    None,
                    format!("`{name}` and `{first}` both push to the image repository `{repository}`; set `repository:` on one of them to another name"),
                ));
            }
            None => {
                first_owner.insert(repository, name);
            }
        }
    }
    out
}

fn cycle_problem(config: &Config) -> Option<Finding<'_>> {
    let cycle = find_cycle(&dependency_edges(config))?;
    let (section, first) = match config.services.get_key_value(cycle[0]) {
        Some((name, _)) => ("services", name.as_str()),
        None => ("groups", config.groups.get_key_value(cycle[0])?.0.as_str()),
    };
    Some(finding(
        &[section, first, "depends_on"],
        None,
        format!(
            "dependency cycle: {}; remove one of these edges",
            cycle.join(" -> ")
        ),
    ))
}

fn dependency_edges(config: &Config) -> BTreeMap<&str, &[String]> {
    nodes(config).map(|n| (n.name, n.depends_on)).collect()
}

/// Finds one dependency cycle, returned as the path that closes it (`a -> b -> a`).
///
/// Depth-first with an explicit stack: a chain of 100,000 `depends_on` must not overflow the
/// thread's stack.
fn find_cycle<'a>(edges: &BTreeMap<&'a str, &'a [String]>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Fresh,
        Open,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = edges.keys().map(|k| (*k, Mark::Fresh)).collect();
    for root in edges.keys().copied() {
        if marks[root] != Mark::Fresh {
            continue;
        }
        // Each frame: a node on the current path and the index of its next dependency.
        let mut path: Vec<(&str, usize)> = vec![(root, 0)];
        marks.insert(root, Mark::Open);
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let deps = edges.get(node).copied().unwrap_or_default();
            let Some(dep) = deps.get(*next) else {
                marks.insert(node, Mark::Done);
                path.pop();
                continue;
            };
            *next += 1;
            match marks.get(dep.as_str()) {
                Some(Mark::Open) => {
                    let start = path.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[start..].iter().map(|(n, _)| *n).collect();
                    cycle.push(dep.as_str());
                    return Some(cycle);
                }
                Some(Mark::Fresh) => {
                    marks.insert(dep.as_str(), Mark::Open);
                    path.push((dep.as_str(), 0));
                }
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        serde_yaml_ng::from_str(yaml).expect("test config parses")
    }

    /// `key=value: message` for each finding, compact enough for tables.
    fn render(found: Vec<Finding<'_>>) -> Vec<String> {
        found
            .into_iter()
            .map(|f| match f.value {
                Some(v) => format!("{}={v}: {}", f.key.join("."), f.message),
                None => format!("{}: {}", f.key.join("."), f.message),
            })
            .collect()
    }

    fn node<'a>(name: &'a str, paths: &'a [String], depends_on: &'a [String]) -> Node<'a> {
        Node {
            section: "services",
            name,
            paths,
            depends_on,
        }
    }

    #[test]
    fn names_must_be_usable_as_step_outputs() {
        for (name, ok) in [
            ("cart", true),
            ("_x", true),
            ("a-b_c9", true),
            ("9lives", false),
            ("-a", false),
            ("bad name", false),
            ("caf\u{e9}", false),
            ("", false),
        ] {
            assert_eq!(valid_name(name), ok, "{name}");
            assert_eq!(name_problem(&node(name, &[], &[])).is_none(), ok, "{name}");
        }
    }

    #[test]
    fn patterns_report_empty_and_bad_globs_at_their_entry() {
        let paths: Vec<String> = ["src/**", "!", "src/[x", "!docs/[", "!*.md"]
            .map(String::from)
            .to_vec();
        let found = render(pattern_problems(&node("a", &paths, &[])));
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0], "services.a.paths=!: `!` is an empty pattern");
        assert!(
            found[1].starts_with("services.a.paths=src/[x: bad glob `src/[x`: "),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("services.a.paths=!docs/[: bad glob `!docs/[`: "),
            "{found:?}"
        );
    }

    #[test]
    fn dependencies_must_be_known_and_not_the_node_itself() {
        let known = BTreeSet::from(["a", "b", "g"]);
        for (deps, expected) in [
            (vec!["b", "g"], vec![]),
            (
                vec!["a"],
                vec!["services.a.depends_on=a: `a` depends on itself"],
            ),
            (
                vec!["zz", "b"],
                vec!["services.a.depends_on=zz: unknown service or group `zz`; known: a, b, g"],
            ),
        ] {
            let deps: Vec<String> = deps.into_iter().map(String::from).collect();
            assert_eq!(
                render(dependency_problems(&node("a", &[], &deps), &known)),
                expected
            );
        }
    }

    #[test]
    fn build_paths_stay_in_the_repository() {
        for (yaml, expected) in [
            ("dockerfile: a/Dockerfile\ncontext: a", vec![]),
            (
                "context: a",
                vec!["services.s.context: a `context` without a `dockerfile` does nothing; add the Dockerfile's path"],
            ),
            (
                "dockerfile: /a/Dockerfile\ncontext: ../up",
                vec![
                    "services.s.dockerfile: `/a/Dockerfile` is absolute; give it relative to the repository root",
                    "services.s.context: `../up` leaves the repository (`..`); give it relative to the repository root",
                ],
            ),
            ("dockerfile: a/..b/Dockerfile", vec![]),
        ] {
            let service: ServiceConfig = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(render(build_path_problems("s", &service)), expected, "{yaml}");
        }
    }

    #[test]
    fn deploy_targets_use_the_workload_parser_of_deploy() {
        for (yaml, expected) in [
            ("- workload: deployment/cart", vec![]),
            ("- workload: ds/agent", vec![]),
            ("- workload: StatefulSets.apps/db", vec![]),
            ("- manifests: [\"k8s/*.yaml\"]", vec![]),
            (
                "- workload: deployment/a/b",
                vec!["services.s.deploy.workload=deployment/a/b: `deployment/a/b` is not a workload: the name must be one path segment after the kind"],
            ),
            (
                "- workload: cronjob/x",
                vec!["services.s.deploy.workload=cronjob/x: `cronjob/x` is not a workload: the kind must be deployment, statefulset or daemonset"],
            ),
            (
                "- workload: cart",
                vec!["services.s.deploy.workload=cart: `cart` is not a workload: write it as kind/name, e.g. deployment/cart"],
            ),
            (
                "- namespace: x\n- workload: deploy/a\n  manifests: [a.yaml]",
                vec![
                    "services.s.deploy: each deploy entry needs exactly one of `workload` or `manifests`",
                    "services.s.deploy: each deploy entry needs exactly one of `workload` or `manifests`",
                ],
            ),
        ] {
            let targets: Vec<DeployTarget> = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(render(deploy_target_problems("s", &targets)), expected, "{yaml}");
        }
        let targets: Vec<DeployTarget> = serde_yaml_ng::from_str("- manifests: [\"k/[\"]").unwrap();
        let found = render(deploy_target_problems("s", &targets));
        assert!(
            found.len() == 1
                && found[0].starts_with("services.s.deploy.manifests=k/[: bad glob `k/[`: "),
            "{found:?}"
        );
    }

    #[test]
    fn registry_needs_exactly_one_of_url_or_ecr() {
        let exactly_one = "registry: set exactly one of `url` (an OCI registry) or `ecr` (AWS ECR)";
        for (yaml, expected) in [
            ("url: ghcr.io/acme", vec![]),
            ("ecr: {prefix: shop}", vec![]),
            ("{}", vec![exactly_one]),
            ("url: ghcr.io/acme\necr: {}", vec![exactly_one]),
        ] {
            let registry: RegistryConfig = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(
                render(registry_problems(Some(&registry))),
                expected,
                "{yaml}"
            );
        }
        assert!(registry_problems(None).is_empty());
        let bad_prefix: RegistryConfig = serde_yaml_ng::from_str("ecr: {prefix: Shop!}").unwrap();
        let found = render(registry_problems(Some(&bad_prefix)));
        assert!(
            found.len() == 1 && found[0].starts_with("registry.ecr.prefix: "),
            "{found:?}"
        );
    }

    #[test]
    fn parallelism_is_at_least_one() {
        for (max_parallel, problem) in [(None, false), (Some(1), false), (Some(0), true)] {
            let build = BuildConfig {
                max_parallel,
                registry_cache: false,
                builder: None,
            };
            assert_eq!(build_problem(&build).is_some(), problem, "{max_parallel:?}");
        }
    }

    #[test]
    fn repository_names_are_checked_for_built_services_only() {
        for (name, yaml, key) in [
            ("cart", "dockerfile: D", None),
            ("Cart", "dockerfile: D", None),
            ("cart", "repository: \"Bad Name\"", None),
            (
                "cart",
                "dockerfile: D\nrepository: \"bad name\"",
                Some("services.cart.repository"),
            ),
            ("_cart", "dockerfile: D", Some("services._cart.dockerfile")),
        ] {
            let service: ServiceConfig = serde_yaml_ng::from_str(yaml).unwrap();
            let found = repository_problem(name, &service);
            assert_eq!(
                found.as_ref().map(|f| f.key.join(".")),
                key.map(String::from),
                "{name} {yaml}"
            );
            if let Some(f) = found {
                assert!(f
                    .message
                    .ends_with("; set `repository:` to a valid image name"));
            }
        }
    }

    #[test]
    fn cycles_are_found_and_reported_at_their_first_node() {
        for (yaml, expected) in [
            ("services: {a: {depends_on: [b]}, b: {}}", None),
            (
                "services: {a: {depends_on: [g]}}\ngroups: {g: {depends_on: [a]}}",
                Some("services.a.depends_on: dependency cycle: a -> g -> a; remove one of these edges"),
            ),
            (
                "services: {s: {depends_on: [g]}}\ngroups: {g: {depends_on: [h]}, h: {depends_on: [g]}}",
                Some("groups.g.depends_on: dependency cycle: g -> h -> g; remove one of these edges"),
            ),
            (
                "services: {a: {depends_on: [unknown]}}",
                None,
            ),
        ] {
            let c = config(yaml);
            let found = render(cycle_problem(&c).into_iter().collect());
            assert_eq!(found, expected.into_iter().collect::<Vec<_>>(), "{yaml}");
        }
    }

    #[test]
    fn service_names_may_not_take_an_output_or_differ_only_in_case() {
        let c = config("services: {cart: {}, Cart: {}, CART: {}, Changed: {}, matrix: {}, any-changed: {}, web: {}}");
        let reserved = |name: &str, output: &str| {
            format!("services.{name}: `{name}` is the name of the action's own output `{output}`, which a service's output would overwrite; rename the service")
        };
        let case = |name: &str, first: &str| {
            format!("services.{name}: `{name}` and `{first}` differ only in case, and step output names do not; rename one of them")
        };
        assert_eq!(
            render(output_name_collisions(&c)),
            [
                case("Cart", "CART"),
                reserved("Changed", "changed"),
                reserved("any-changed", "any-changed"),
                case("cart", "CART"),
                reserved("matrix", "matrix"),
            ]
        );
    }

    #[test]
    fn the_reserved_names_are_the_outputs_action_yml_declares() {
        let action = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/action.yml"))
            .expect("action.yml");
        let outputs = action
            .split("\noutputs:\n")
            .nth(1)
            .expect("an outputs block");
        let declared: BTreeSet<&str> = outputs
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with(' '))
            .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.ends_with(':'))
            .map(|l| l.trim().trim_end_matches(':'))
            .collect();
        assert_eq!(declared, ACTION_OUTPUTS.into_iter().collect());
    }

    #[test]
    fn two_built_services_may_not_share_a_repository() {
        let c = config(
            "services: {a: {dockerfile: D, repository: shop/x}, b: {dockerfile: D, repository: shop/x}, \
             c: {dockerfile: D}, d: {dockerfile: D, repository: c}, e: {repository: shop/x}, f: {dockerfile: D}}",
        );
        assert_eq!(
            render(shared_repositories(&c)),
            [
                "services.b.repository: `b` and `a` both push to the image repository `shop/x`; set `repository:` on one of them to another name",
                "services.d.repository: `d` and `c` both push to the image repository `c`; set `repository:` on one of them to another name",
            ]
        );
        let c = config("services: {Api: {dockerfile: D}, api: {dockerfile: D}}");
        assert_eq!(
            render(shared_repositories(&c)),
            ["services.api.dockerfile: `api` and `Api` both push to the image repository `api`; set `repository:` on one of them to another name"]
        );
    }

    #[test]
    fn a_chain_of_100_000_dependencies_is_walked_without_recursion() {
        let n = 100_000;
        let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let deps: Vec<Vec<String>> = (0..n)
            .map(|i| {
                if i + 1 < n {
                    vec![names[i + 1].clone()]
                } else {
                    vec![]
                }
            })
            .collect();
        let mut edges: BTreeMap<&str, &[String]> = names
            .iter()
            .zip(&deps)
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        assert_eq!(find_cycle(&edges), None);
        let closing = vec![names[0].clone()];
        edges.insert(names[n - 1].as_str(), &closing);
        let cycle = find_cycle(&edges).expect("the chain closes");
        assert_eq!(cycle.len(), n + 1);
        assert_eq!((cycle[0], cycle[n]), ("s0", "s0"));
    }

    #[test]
    fn problems_come_in_check_order() {
        let c = config(
            "services: {x: {paths: [\"[\"], depends_on: [nope]}, y: {context: c}}\n\
             groups: {x: {}}\nbuild: {max_parallel: 0}\nregistry: {}",
        );
        let keys: Vec<String> = findings(&c).into_iter().map(|f| f.key.join(".")).collect();
        assert_eq!(
            keys,
            [
                "groups.x",
                "services.x.paths",
                "services.x.depends_on",
                "services.y.context",
                "registry",
                "build.max_parallel",
            ]
        );
    }
}
