//! The job summary (`$GITHUB_STEP_SUMMARY`): one Markdown table row per service, with the
//! reasons, then a Mermaid graph of how changes spread through `depends_on`; all of it kept
//! far below GitHub's 1 MiB limit.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use crate::config::Config;
use crate::deploy::{RolloutResult, RolloutStatus};
use crate::image::push::{ImageResult, ImageStatus};
use crate::plan::{NodePlan, Plan};

/// GitHub rejects summaries over 1 MiB; stay well below so later steps have room.
pub const MAX_SUMMARY_BYTES: usize = 512 * 1024;
/// Reasons shown per row; the rest are counted.
pub const REASONS_PER_ROW: usize = 3;
/// Warnings shown, and characters shown of each; they are repeated as annotations.
const WARNINGS_SHOWN: usize = 10;
const WARNING_CHARS: usize = 1000;
/// Services and groups beyond which the graph is left out: a Mermaid layout of hundreds of
/// nodes is unreadable, and GitHub stops rendering at 500 edges or 50,000 characters.
pub const MAX_GRAPH_NODES: usize = 200;
const MAX_GRAPH_EDGES: usize = 500;
const MAX_GRAPH_CHARS: usize = 50_000;
/// Characters of a name shown in a graph node.
const LABEL_CHARS: usize = 60;

/// Makes text safe inside a Markdown table cell: no HTML, no cell breaks, no line breaks.
pub fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("&#124;"),
            '`' => out.push_str("&#96;"),
            '\\' => out.push_str("&#92;"),
            '*' | '_' | '[' | ']' | '~' | '#' | '!' | '$' => {
                out.push_str(&format!("&#{};", c as u32));
            }
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

fn why(node: &NodePlan) -> String {
    let mut parts: Vec<String> = node
        .reasons
        .iter()
        .take(REASONS_PER_ROW)
        .map(|r| {
            if r.path.is_empty() {
                cell(&r.rule)
            } else {
                format!("<code>{}</code> ({})", cell(&r.path), cell(&r.rule))
            }
        })
        .collect();
    let rest = node.reasons.len().saturating_sub(REASONS_PER_ROW) + node.more_reasons;
    if rest > 0 {
        parts.push(format!("and {rest} more"));
    }
    parts.join("<br>")
}

/// Renders the summary of a plan; `config` gives the graph its `depends_on` edges.
pub fn render_plan(plan: &Plan, config: &Config) -> String {
    render(plan, config, None, None)
}

/// Renders the summary of a run: the plan, the images when they were built, the rollouts
/// when they were deployed, and the dependency graph. Never longer than [`MAX_SUMMARY_BYTES`]:
/// rows that do not fit are counted instead.
pub fn render(
    plan: &Plan,
    config: &Config,
    images: Option<&[ImageResult]>,
    rollouts: Option<&[RolloutResult]>,
) -> String {
    let mut out = headline(plan, images.is_some(), rollouts.is_some());
    out.push_str(&warnings(&plan.warnings));
    let failed = failed_services(images, rollouts);
    let chart = graph(plan, config, &failed).unwrap_or_default();
    out.push_str("| service | changed | why | image | digest | rollout | time |\n|---|---|---|---|---|---|---|\n");
    // Room kept for the line that counts the rows left out.
    let footer_room = 256;
    let rows = plan
        .services
        .iter()
        .filter(|s| s.changed)
        .chain(plan.services.iter().filter(|s| !s.changed));
    let mut shown = 0;
    for s in rows {
        let row = service_row(s, images, rollouts);
        if out.len() + row.len() + footer_room + chart.len() > MAX_SUMMARY_BYTES {
            break;
        }
        out.push_str(&row);
        shown += 1;
    }
    if shown < plan.services.len() {
        out.push_str(&format!(
            "\n{} more services are not shown to keep this summary under GitHub's size limit; `monoship plan --format json` lists them all.\n",
            plan.services.len() - shown
        ));
    }
    if !chart.is_empty() {
        out.push('\n');
        out.push_str(&chart);
    }
    out
}

/// The heading, named after the command that got this far, and the line that counts the
/// changed services.
fn headline(plan: &Plan, built: bool, deployed: bool) -> String {
    let command = match (built, deployed) {
        (_, true) => "ship",
        (true, false) => "build",
        _ => "plan",
    };
    let range = match &plan.base {
        Some(base) => format!("`{}`..`{}`", short(base), short(&plan.head)),
        None => format!("at `{}`", short(&plan.head)),
    };
    format!(
        "### monoship {command}\n\n{} of {} services changed ({range}, {}, source: {}).\n\n",
        plan.changed.len(),
        plan.services.len(),
        crate::report::text::files_phrase(plan.files),
        serde_json::to_value(plan.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    )
}

/// The first [`WARNINGS_SHOWN`] warnings as alerts, clipped, and a count of the rest.
fn warnings(all: &[String]) -> String {
    let mut out = String::new();
    for w in all.iter().take(WARNINGS_SHOWN) {
        out.push_str(&format!(
            "> [!WARNING]\n> {}\n\n",
            cell(&clip(w, WARNING_CHARS))
        ));
    }
    if all.len() > WARNINGS_SHOWN {
        out.push_str(&format!(
            "{} more warnings are in the log.\n\n",
            all.len() - WARNINGS_SHOWN
        ));
    }
    out
}

/// Services whose image failed to build or whose rollout failed or was rolled back.
fn failed_services<'a>(
    images: Option<&'a [ImageResult]>,
    rollouts: Option<&'a [RolloutResult]>,
) -> BTreeSet<&'a str> {
    let failed_images = images
        .unwrap_or_default()
        .iter()
        .filter(|r| r.status == ImageStatus::Failed)
        .map(|r| r.service.as_str());
    let failed_rollouts = rollouts
        .unwrap_or_default()
        .iter()
        .filter(|r| matches!(r.status, RolloutStatus::Failed | RolloutStatus::RolledBack))
        .map(|r| r.service.as_str());
    failed_images.chain(failed_rollouts).collect()
}

/// One table row: the service, whether it changed and why, its image and its rollouts.
fn service_row(
    s: &NodePlan,
    images: Option<&[ImageResult]>,
    rollouts: Option<&[RolloutResult]>,
) -> String {
    let image = images.and_then(|all| all.iter().find(|r| r.service == s.name));
    let (image_cell, digest_cell, time_cell) = image_cells(image);
    let rollout_cell = rollouts
        .map(|all| rollout_cell(all, &s.name))
        .unwrap_or_else(|| "–".into());
    format!(
        "| {} | {} | {} | {image_cell} | {digest_cell} | {rollout_cell} | {time_cell} |\n",
        cell(&s.name),
        if s.changed { "yes" } else { "no" },
        why(s)
    )
}

/// The image, digest and time cells of a row; dashes when the service has no image.
fn image_cells(image: Option<&ImageResult>) -> (String, String, String) {
    let Some(r) = image else {
        return ("–".to_string(), "–".to_string(), "–".to_string());
    };
    let status = match r.status {
        ImageStatus::Built => "built",
        ImageStatus::Reused => "reused",
        ImageStatus::Failed => "**failed**",
    };
    let name = r
        .image
        .as_deref()
        .and_then(|i| i.split_once('@'))
        .map(|(n, _)| format!("<code>{}</code> ", cell(n)))
        .unwrap_or_default();
    let digest = r
        .digest
        .as_deref()
        .map(|d| format!("<code>{}</code>", cell(&d[..d.len().min(19)])))
        .unwrap_or_else(|| "–".into());
    (
        format!("{name}{status}"),
        digest,
        format!("{:.1}s", r.seconds),
    )
}

/// The rollouts of `service`, one workload a line, each reason cut to 200 characters; a dash
/// when it has none.
fn rollout_cell(rollouts: &[RolloutResult], service: &str) -> String {
    let mine: Vec<String> = rollouts
        .iter()
        .filter(|r| r.service == service)
        .map(|r| {
            let status = r.status.as_str();
            let reason = r
                .reason
                .as_deref()
                .map(|x| format!(": {}", cell(&x.chars().take(200).collect::<String>())))
                .unwrap_or_default();
            format!("<code>{}</code> {status}{reason}", cell(&r.workload))
        })
        .collect();
    if mine.is_empty() {
        "–".to_string()
    } else {
        mine.join("<br>")
    }
}

/// The `depends_on` graph as a Markdown section: a Mermaid flowchart with an arrow from each
/// service or group to those that depend on it, changed nodes highlighted and failed ones
/// marked. `None` when nothing depends on anything; a one-line note instead of the chart when
/// it would be too large to render.
pub fn graph(plan: &Plan, config: &Config, failed: &BTreeSet<&str>) -> Option<String> {
    let nodes = graph_nodes(plan);
    let edges = dependency_edges(&nodes, config);
    if edges.is_empty() {
        return None;
    }
    let heading = "#### Dependencies\n\n";
    let omitted = |why: String| Some(format!("{heading}Graph omitted: {why}.\n"));
    if nodes.len() > MAX_GRAPH_NODES {
        return omitted(format!(
            "{} services and {} groups, more than the {MAX_GRAPH_NODES} it draws",
            plan.services.len(),
            plan.groups.len()
        ));
    }
    if edges.len() > MAX_GRAPH_EDGES {
        return omitted(format!(
            "{} dependencies, more than the {MAX_GRAPH_EDGES} GitHub draws",
            edges.len()
        ));
    }
    let (chart, any_failed) = mermaid_chart(&nodes, &edges, failed);
    if chart.len() > MAX_GRAPH_CHARS {
        return omitted(format!(
            "{} characters, more than the {MAX_GRAPH_CHARS} GitHub draws",
            chart.len()
        ));
    }
    let mut legend = String::from(
        "An arrow points from a service or group (round ends) to those that `depends_on` it; changed ones are highlighted",
    );
    if any_failed {
        legend.push_str(", failed ones red");
    }
    Some(format!("{heading}{chart}\n{legend}.\n"))
}

/// A node of the graph: a service (`true`) or a group (`false`).
type GraphNode<'a> = (&'a NodePlan, bool);

/// The services, then the groups, of `plan`; a node's position is its id in the chart.
fn graph_nodes(plan: &Plan) -> Vec<GraphNode<'_>> {
    plan.services
        .iter()
        .map(|s| (s, true))
        .chain(plan.groups.iter().map(|g| (g, false)))
        .collect()
}

/// Arrows `(from, to)` between positions in `nodes`, from each dependency to its dependent;
/// names that are not nodes are left out.
fn dependency_edges(nodes: &[GraphNode], config: &Config) -> BTreeSet<(usize, usize)> {
    // Ids are positions (`n0`, `n1`, ...), so no name can break the chart's syntax.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, (node, _)) in nodes.iter().enumerate() {
        ids.entry(node.name.as_str()).or_insert(i);
    }
    let depends_on = config
        .services
        .iter()
        .map(|(n, s)| (n, &s.depends_on))
        .chain(config.groups.iter().map(|(n, g)| (n, &g.depends_on)));
    let mut edges = BTreeSet::new();
    for (name, deps) in depends_on {
        let Some(&to) = ids.get(name.as_str()) else {
            continue;
        };
        for d in deps {
            if let Some(&from) = ids.get(d.as_str()) {
                edges.insert((from, to));
            }
        }
    }
    edges
}

/// The fenced Mermaid flowchart of `nodes` and `edges`, and whether any node is marked failed.
fn mermaid_chart(
    nodes: &[GraphNode],
    edges: &BTreeSet<(usize, usize)>,
    failed: &BTreeSet<&str>,
) -> (String, bool) {
    let mut chart = String::from("```mermaid\nflowchart LR\n");
    for (i, (node, is_service)) in nodes.iter().enumerate() {
        let label = mermaid_label(&node.name);
        if *is_service {
            chart.push_str(&format!("  n{i}[\"{label}\"]\n"));
        } else {
            chart.push_str(&format!("  n{i}([\"{label}\"])\n"));
        }
    }
    for (from, to) in edges {
        chart.push_str(&format!("  n{from} --> n{to}\n"));
    }
    let class = |pick: &dyn Fn(&NodePlan) -> bool| -> Vec<String> {
        nodes
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| pick(n))
            .map(|(i, _)| format!("n{i}"))
            .collect()
    };
    let is_failed = |n: &NodePlan| failed.contains(n.name.as_str());
    let changed = class(&|n| n.changed && !is_failed(n));
    let broken = class(&is_failed);
    if !changed.is_empty() {
        chart.push_str(
            "  classDef changed fill:#fff3bf,stroke:#e8590c,stroke-width:2px,color:#000\n",
        );
        chart.push_str(&format!("  class {} changed\n", changed.join(",")));
    }
    if !broken.is_empty() {
        chart.push_str(
            "  classDef failed fill:#ffc9c9,stroke:#c92a2a,stroke-width:2px,color:#000\n",
        );
        chart.push_str(&format!("  class {} failed\n", broken.join(",")));
    }
    chart.push_str("```\n");
    (chart, !broken.is_empty())
}

/// A name as the text of a quoted Mermaid label: letters, digits and a few harmless marks
/// stay; everything else (quotes, `<`, `>`, `#`, `;`, brackets, backticks, control
/// characters) becomes a `#NNN;` entity, which Mermaid shows as the character itself.
pub fn mermaid_label(name: &str) -> String {
    let mut out = String::new();
    for c in clip(name, LABEL_CHARS).chars() {
        if c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '/' | ':' | '@' | '+' | '…')
        {
            out.push(c);
        } else {
            out.push_str(&format!("#{};", c as u32));
        }
    }
    out
}

/// `s` cut to `max` characters, the last one `…` when anything was cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Appends to the `$GITHUB_STEP_SUMMARY` file.
///
/// # Errors
/// When the file cannot be written.
pub fn append(path: &Path, markdown: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(markdown.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupConfig;
    use crate::config::ServiceConfig;
    use crate::deploy::RolloutStatus;
    use crate::detect::ChangeSource;
    use crate::image::push::ImageStatus;
    use crate::report::fixtures::{plan, reason, rollout, Images};

    /// A service with `n` reasons, at most 20 of them listed.
    fn node(name: &str, n: usize) -> NodePlan {
        NodePlan {
            name: name.into(),
            changed: n > 0,
            reasons: (0..n.min(20))
                .map(|i| reason(&format!("{name}/f{i}|x<y>.rs"), "paths: **"))
                .collect(),
            more_reasons: n.saturating_sub(20),
        }
    }

    #[test]
    fn rows_escape_cells_and_bound_reasons() {
        let plan = plan(vec![node("ads", 0), node("cart", 30)], vec![], 30);
        let md = render_plan(&plan, &Config::default());
        let cart = md.lines().find(|l| l.starts_with("| cart")).unwrap();
        assert!(
            cart.contains("<code>cart/f0&#124;x&lt;y&gt;.rs</code>"),
            "{cart}"
        );
        assert!(cart.contains("and 27 more"), "{cart}");
        assert_eq!(cart.matches(" | ").count(), 6);
        // changed services come first
        assert!(md.find("| cart").unwrap() < md.find("| ads").unwrap());
    }

    /// A shop of four services and one group: `cart` and `frontend` depend on the group
    /// `proto`, `frontend` also on `cart`; `email` stands alone.
    fn shop() -> (Plan, Config) {
        let cart = NodePlan {
            reasons: vec![
                reason("pb/demo.proto", "Dockerfile COPY ./pb/"),
                reason("src/cart/main.go", "Dockerfile COPY src/cart/"),
                reason("src/cart/go.mod", "Dockerfile COPY src/cart/"),
                reason("src/cart/go.sum", "Dockerfile COPY src/cart/"),
            ],
            more_reasons: 2,
            ..node("cart", 1)
        };
        let frontend = NodePlan {
            reasons: vec![reason("", "named in --services")],
            ..node("frontend", 1)
        };
        let services = vec![node("ads", 0), cart, node("email", 0), frontend];
        let mut plan = plan(services, vec![node("proto", 1)], 7);
        plan.warnings = (0..12)
            .map(|i| format!("warning {i}: <b>|x|</b>"))
            .collect();
        let mut config = Config::default();
        let depends = |on: &[&str]| ServiceConfig {
            depends_on: on.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        };
        for (name, on) in [
            ("ads", &[][..]),
            ("cart", &["proto"][..]),
            ("email", &[][..]),
            ("frontend", &["proto", "cart"][..]),
        ] {
            config.services.insert(name.into(), depends(on));
        }
        config.groups.insert("proto".into(), GroupConfig::default());
        (plan, config)
    }

    const IMAGES: Images = Images {
        registry: "registry.example/shop",
        digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        seconds: 42.25,
        error: "the build failed",
        failed_at: None,
    };

    #[test]
    fn a_plan_summary_reads_as_before() {
        let (plan, config) = shop();
        let md = render_plan(&plan, &config);
        assert!(md.ends_with("highlighted.\n"), "{md}");
        insta::assert_snapshot!(md);
    }

    #[test]
    fn a_build_summary_without_a_base_reads_as_before() {
        let (mut plan, config) = shop();
        plan.base = None;
        plan.warnings.truncate(1);
        let images = [
            IMAGES.of("cart", ImageStatus::Built),
            IMAGES.of("frontend", ImageStatus::Reused),
        ];
        let md = render(&plan, &config, Some(&images), None);
        assert!(md.ends_with("highlighted.\n"), "{md}");
        insta::assert_snapshot!(md);
    }

    #[test]
    fn a_ship_summary_marks_failures_in_rows_and_graph() {
        let (mut plan, config) = shop();
        plan.warnings.clear();
        let images = [
            IMAGES.of("cart", ImageStatus::Built),
            IMAGES.of("frontend", ImageStatus::Failed),
        ];
        let rollouts = [
            rollout("cart", RolloutStatus::Succeeded, None, 3.0),
            rollout(
                "cart",
                RolloutStatus::RolledBack,
                Some(&"x".repeat(300)),
                9.5,
            ),
            rollout(
                "frontend",
                RolloutStatus::Skipped,
                Some("its image failed"),
                0.0,
            ),
        ];
        let md = render(&plan, &config, Some(&images), Some(&rollouts));
        assert!(md.ends_with("failed ones red.\n"), "{md}");
        insta::assert_snapshot!(md);
    }

    #[test]
    fn edges_run_from_dependency_to_dependent_and_skip_unknown_names() {
        let (plan, mut config) = shop();
        config.services.get_mut("email").unwrap().depends_on = vec!["gone".into()];
        config.services.insert(
            "not-planned".into(),
            ServiceConfig {
                depends_on: vec!["cart".into()],
                ..Default::default()
            },
        );
        let edges: Vec<_> = dependency_edges(&graph_nodes(&plan), &config)
            .into_iter()
            .collect();
        // cart is n1, frontend n3, the group proto n4.
        assert_eq!(edges, [(1, 3), (4, 1), (4, 3)]);
    }

    #[test]
    fn failed_images_and_failed_or_rolled_back_rollouts_mark_their_services() {
        let images = [
            IMAGES.of("cart", ImageStatus::Failed),
            IMAGES.of("ads", ImageStatus::Built),
        ];
        let rollouts = [
            rollout("email", RolloutStatus::Failed, None, 1.0),
            rollout("web", RolloutStatus::RolledBack, None, 1.0),
            rollout("ads", RolloutStatus::Skipped, None, 1.0),
            rollout("docs", RolloutStatus::Succeeded, None, 1.0),
        ];
        let failed = failed_services(Some(&images), Some(&rollouts));
        assert_eq!(failed, BTreeSet::from(["cart", "email", "web"]));
        assert!(failed_services(None, None).is_empty());
    }

    #[test]
    fn image_and_rollout_cells_show_dashes_for_what_is_missing() {
        let dash = || "–".to_string();
        assert_eq!(image_cells(None), (dash(), dash(), dash()));
        assert_eq!(
            image_cells(Some(&IMAGES.of("cart", ImageStatus::Failed))),
            ("**failed**".to_string(), dash(), "42.2s".to_string())
        );
        let rollouts = [rollout("cart", RolloutStatus::Succeeded, None, 1.0)];
        assert_eq!(rollout_cell(&rollouts, "ads"), "–");
        assert_eq!(
            rollout_cell(&rollouts, "cart"),
            "<code>deployment/shop/cart</code> succeeded"
        );
    }

    #[test]
    fn huge_plans_are_trimmed_under_the_limit() {
        let services: Vec<_> = (0..20_000)
            .map(|i| node(&format!("service-with-a-long-name-{i:05}"), 25))
            .collect();
        let plan = Plan {
            base: None,
            source: ChangeSource::All,
            ..plan(services, vec![], 0)
        };
        let md = render_plan(&plan, &chain_config(&plan));
        assert!(md.len() <= MAX_SUMMARY_BYTES, "{}", md.len());
        assert!(md.contains("more services are not shown"));
        assert!(
            md.contains("Graph omitted: 20000 services"),
            "the graph is not drawn"
        );
    }

    /// Every service depends on the one before it.
    fn chain_config(plan: &Plan) -> Config {
        let mut config = Config::default();
        let mut previous: Option<&str> = None;
        for s in &plan.services {
            config.services.insert(
                s.name.clone(),
                ServiceConfig {
                    depends_on: previous.map(|p| vec![p.to_string()]).unwrap_or_default(),
                    ..Default::default()
                },
            );
            previous = Some(&s.name);
        }
        config
    }

    /// The lines of the Mermaid block.
    fn mermaid(md: &str) -> Vec<&str> {
        let start = md.find("```mermaid\n").expect("a mermaid block") + "```mermaid\n".len();
        let len = md[start..].find("\n```\n").expect("the block is closed");
        md[start..start + len].lines().collect()
    }

    #[test]
    fn the_graph_survives_hostile_names() {
        let names = [
            "a\"b",
            "x<y>z",
            "end",
            "evil\n```\n# heading",
            "semi;colon#35;",
            "pay-ments.v2",
            "[brackets](and)|pipes{}",
        ];
        let services: Vec<NodePlan> = names
            .iter()
            .enumerate()
            .map(|(i, n)| node(n, i % 2))
            .collect();
        let mut plan = plan(services, vec![node("proto \"shared\"", 1)], 1);
        plan.services.sort_by(|a, b| a.name.cmp(&b.name));
        let mut config = Config::default();
        for n in names {
            config.services.insert(
                n.to_string(),
                ServiceConfig {
                    depends_on: vec!["proto \"shared\"".into()],
                    ..Default::default()
                },
            );
        }
        config
            .services
            .get_mut("end")
            .unwrap()
            .depends_on
            .push("a\"b".into());
        config
            .groups
            .insert("proto \"shared\"".into(), Default::default());
        let md = render_plan(&plan, &config);
        assert_eq!(md.matches("```").count(), 2, "one fenced block: {md}");
        let lines = mermaid(&md);
        assert_eq!(lines[0], "flowchart LR");
        let node_lines: Vec<&str> = lines[1..=plan.services.len() + 1].to_vec();
        for (i, line) in node_lines.iter().enumerate() {
            let label = line
                .strip_prefix(&format!("  n{i}[\""))
                .or_else(|| line.strip_prefix(&format!("  n{i}([\"")))
                .unwrap_or_else(|| panic!("{line}"));
            let label = label
                .strip_suffix("\"]")
                .or_else(|| label.strip_suffix("\"])"))
                .unwrap_or_else(|| panic!("{line}"));
            assert!(
                label
                    .chars()
                    .all(|c| c.is_alphanumeric() || " -_./:@+#;".contains(c)),
                "{line}"
            );
        }
        let at = |name: &str| plan.services.iter().position(|s| s.name == name).unwrap();
        let (quoted, end) = (at("a\"b"), at("end"));
        assert!(
            lines.contains(&format!("  n{quoted}[\"a#34;b\"]").as_str()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"  n7([\"proto #34;shared#34;\"])"),
            "{lines:?}"
        );
        assert!(
            lines.contains(&format!("  n{quoted} --> n{end}").as_str()),
            "{lines:?}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.contains(" --> ")).count(),
            names.len() + 1
        );
        let changed: Vec<String> = plan
            .services
            .iter()
            .chain(&plan.groups)
            .enumerate()
            .filter(|(_, s)| s.changed)
            .map(|(i, _)| format!("n{i}"))
            .collect();
        assert!(lines.contains(&format!("  class {} changed", changed.join(",")).as_str()));
        assert!(md.ends_with("changed ones are highlighted.\n"), "{md}");
        insta::assert_snapshot!(md);
    }

    #[test]
    fn labels_escape_every_special_character() {
        let rows = [
            ("cart", "cart"),
            ("pay-ments.v2", "pay-ments.v2"),
            ("a\"b", "a#34;b"),
            ("<script>", "#60;script#62;"),
            ("#35;", "#35;35#59;"),
            ("a\nb", "a#10;b"),
            ("`x`", "#96;x#96;"),
            ("é", "é"),
        ];
        for (name, label) in rows {
            assert_eq!(mermaid_label(name), label, "{name:?}");
        }
        let long = mermaid_label(&"x".repeat(500));
        assert_eq!(long.chars().count(), LABEL_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_failed_service_is_marked_and_no_edges_means_no_graph() {
        let plan = plan(vec![node("api", 1), node("web", 1)], vec![], 1);
        let mut config = Config::default();
        config
            .services
            .insert("api".into(), ServiceConfig::default());
        assert!(!render_plan(&plan, &config).contains("mermaid"));
        config.services.insert(
            "web".into(),
            ServiceConfig {
                depends_on: vec!["api".into()],
                ..Default::default()
            },
        );
        let failed = BTreeSet::from(["web"]);
        let md = graph(&plan, &config, &failed).unwrap();
        let lines = mermaid(&md);
        assert!(lines.contains(&"  n0 --> n1"), "{lines:?}");
        assert!(lines.contains(&"  class n0 changed"), "{lines:?}");
        assert!(lines.contains(&"  class n1 failed"), "{lines:?}");
    }

    #[test]
    fn five_hundred_services_stay_under_the_limit_without_a_graph() {
        let services: Vec<_> = (0..500)
            .map(|i| node(&format!("svc-{i:03}-{}", "\"<>#".repeat(200)), 25))
            .collect();
        let mut plan = plan(services, vec![], 1);
        plan.warnings = vec!["w".repeat(100_000); 50];
        let md = render_plan(&plan, &chain_config(&plan));
        assert!(md.len() <= MAX_SUMMARY_BYTES, "{}", md.len());
        assert!(
            md.contains("Graph omitted: 500 services and 0 groups"),
            "{md}"
        );
        assert!(!md.contains("```"));
        assert!(md.contains("40 more warnings are in the log."));
    }

    #[test]
    fn the_largest_graph_drawn_fits_with_the_table() {
        // 200 nodes with names that need escaping everywhere: the chart is left out when it
        // grows past what GitHub renders, and the summary stays under its limit either way.
        for name in ["svc", "\"<>#;"] {
            let services: Vec<_> = (0..MAX_GRAPH_NODES)
                .map(|i| node(&format!("{i:03}{}", name.repeat(40)), 25))
                .collect();
            let plan = plan(services, vec![], 1);
            let md = render_plan(&plan, &chain_config(&plan));
            assert!(md.len() <= MAX_SUMMARY_BYTES, "{}", md.len());
            if name == "svc" {
                assert_eq!(mermaid(&md).len(), 1 + 200 + 199 + 2);
            } else {
                assert!(
                    md.contains("Graph omitted:") && md.contains("characters"),
                    "{md}"
                );
            }
        }
    }
}
