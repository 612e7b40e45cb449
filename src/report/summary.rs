//! The job summary (`$GITHUB_STEP_SUMMARY`): one Markdown table row per service, with the
//! reasons, kept far below GitHub's 1 MiB limit.

use std::io::Write;
use std::path::Path;

use crate::plan::{NodePlan, Plan};

/// GitHub rejects summaries over 1 MiB; stay well below so later steps have room.
pub const MAX_SUMMARY_BYTES: usize = 512 * 1024;
/// Reasons shown per row; the rest are counted.
pub const REASONS_PER_ROW: usize = 3;

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

/// Renders the summary of a plan.
pub fn render_plan(plan: &Plan) -> String {
    render(plan, None, None)
}

/// Renders the summary of a run: the plan, and the images when they were built.
pub fn render(
    plan: &Plan,
    images: Option<&[crate::push::ImageResult]>,
    rollouts: Option<&[crate::deploy::RolloutResult]>,
) -> String {
    let command = match (images.is_some(), rollouts.is_some()) {
        (_, true) => "ship",
        (true, false) => "build",
        _ => "plan",
    };
    let mut out = format!("### monoship {command}\n\n");
    let range = match &plan.base {
        Some(base) => format!("`{}`..`{}`", short(base), short(&plan.head)),
        None => format!("at `{}`", short(&plan.head)),
    };
    out.push_str(&format!(
        "{} of {} services changed ({range}, {}, source: {}).\n\n",
        plan.changed.len(),
        plan.services.len(),
        crate::report::text::files_phrase(plan.files),
        serde_json::to_value(plan.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    ));
    for w in &plan.warnings {
        out.push_str(&format!("> [!WARNING]\n> {}\n\n", cell(w)));
    }
    out.push_str("| service | changed | why | image | digest | rollout | time |\n|---|---|---|---|---|---|---|\n");
    let footer_room = 256;
    let mut rows = plan
        .services
        .iter()
        .filter(|s| s.changed)
        .chain(plan.services.iter().filter(|s| !s.changed));
    let mut shown = 0;
    for s in rows.by_ref() {
        let image = images.and_then(|all| all.iter().find(|r| r.service == s.name));
        let (image_cell, digest_cell, time_cell) = match image {
            None => ("–".to_string(), "–".to_string(), "–".to_string()),
            Some(r) => {
                let status = match r.status {
                    crate::push::ImageStatus::Built => "built",
                    crate::push::ImageStatus::Reused => "reused",
                    crate::push::ImageStatus::Failed => "**failed**",
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
        };
        let rollout_cell = rollouts
            .map(|all| {
                let mine: Vec<String> = all
                    .iter()
                    .filter(|r| r.service == s.name)
                    .map(|r| {
                        let status = r.status.as_str();
                        let reason = r
                            .reason
                            .as_deref()
                            .map(|x| {
                                format!(": {}", cell(&x.chars().take(200).collect::<String>()))
                            })
                            .unwrap_or_default();
                        format!("<code>{}</code> {status}{reason}", cell(&r.workload))
                    })
                    .collect();
                if mine.is_empty() {
                    "–".to_string()
                } else {
                    mine.join("<br>")
                }
            })
            .unwrap_or_else(|| "–".into());
        let row = format!(
            "| {} | {} | {} | {image_cell} | {digest_cell} | {rollout_cell} | {time_cell} |\n",
            cell(&s.name),
            if s.changed { "yes" } else { "no" },
            why(s)
        );
        if out.len() + row.len() + footer_room > MAX_SUMMARY_BYTES {
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
    out
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
    use crate::detect::ChangeSource;
    use crate::plan::Reason;

    fn node(name: &str, n: usize) -> NodePlan {
        NodePlan {
            name: name.into(),
            changed: n > 0,
            reasons: (0..n.min(20))
                .map(|i| Reason {
                    path: format!("{name}/f{i}|x<y>.rs"),
                    rule: "paths: **".into(),
                })
                .collect(),
            more_reasons: n.saturating_sub(20),
        }
    }

    #[test]
    fn rows_escape_cells_and_bound_reasons() {
        let plan = Plan {
            base: Some("a".repeat(40)),
            head: "b".repeat(40),
            source: ChangeSource::Git,
            changed: vec!["cart".into()],
            services: vec![node("ads", 0), node("cart", 30)],
            groups: vec![],
            files: 30,
            warnings: vec![],
        };
        let md = render_plan(&plan);
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

    #[test]
    fn huge_plans_are_trimmed_under_the_limit() {
        let services: Vec<_> = (0..20_000)
            .map(|i| node(&format!("service-with-a-long-name-{i:05}"), 25))
            .collect();
        let plan = Plan {
            base: None,
            head: "b".repeat(40),
            source: ChangeSource::All,
            changed: services.iter().map(|s| s.name.clone()).collect(),
            services,
            groups: vec![],
            files: 0,
            warnings: vec![],
        };
        let md = render_plan(&plan);
        assert!(md.len() <= MAX_SUMMARY_BYTES, "{}", md.len());
        assert!(md.contains("more services are not shown"));
    }
}
