//! Human-readable output for the terminal.

use crate::plan::Plan;
use crate::report::commands::one_line;

/// Renders a plan for people: the range, the changed services with their first reasons, and
/// the unchanged ones on one line.
pub fn render_plan(plan: &Plan) -> String {
    let mut out = String::new();
    let range = match &plan.base {
        Some(base) => format!(
            "{}..{}",
            &base[..base.len().min(12)],
            &plan.head[..plan.head.len().min(12)]
        ),
        None => format!("at {}", &plan.head[..plan.head.len().min(12)]),
    };
    let source = serde_json::to_value(plan.source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    out.push_str(&format!(
        "plan {range} ({source}, {})\n",
        files_phrase(plan.files)
    ));
    for w in &plan.warnings {
        out.push_str(&format!("warning: {}\n", one_line(w)));
    }
    out.push_str(&format!(
        "changed ({}/{}):",
        plan.changed.len(),
        plan.services.len()
    ));
    if plan.changed.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
    }
    let width = plan
        .services
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for s in plan.services.iter().filter(|s| s.changed) {
        for (i, r) in s.reasons.iter().take(3).enumerate() {
            let name = if i == 0 { s.name.as_str() } else { "" };
            if r.path.is_empty() {
                out.push_str(&format!("  {name:width$}  {}\n", one_line(&r.rule)));
            } else {
                out.push_str(&format!(
                    "  {name:width$}  {}  <- {}\n",
                    one_line(&r.path),
                    one_line(&r.rule)
                ));
            }
        }
        let rest = s.reasons.len().saturating_sub(3) + s.more_reasons;
        if rest > 0 {
            out.push_str(&format!("  {:width$}  ... and {rest} more\n", ""));
        }
    }
    let unchanged: Vec<&str> = plan
        .services
        .iter()
        .filter(|s| !s.changed)
        .map(|s| s.name.as_str())
        .collect();
    if !unchanged.is_empty() {
        out.push_str(&format!(
            "unchanged ({}): {}\n",
            unchanged.len(),
            unchanged.join(", ")
        ));
    }
    out
}

/// "1 changed file", "5,000 changed files".
pub fn files_phrase(n: usize) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped} changed file{}", if n == 1 { "" } else { "s" })
}

/// Renders build results: one line per image.
pub fn render_images(images: &[crate::push::ImageResult]) -> String {
    use crate::push::ImageStatus;
    if images.is_empty() {
        return "images: none to build\n".into();
    }
    let mut out = format!("images ({}):\n", images.len());
    let width = images.iter().map(|r| r.service.len()).max().unwrap_or(0);
    for r in images {
        let line = match r.status {
            ImageStatus::Built | ImageStatus::Reused => format!(
                "  {:width$}  {:<6}  {}  ({:.1}s)",
                r.service,
                if r.status == ImageStatus::Built {
                    "built"
                } else {
                    "reused"
                },
                r.image.as_deref().unwrap_or(""),
                r.seconds
            ),
            ImageStatus::Failed => format!(
                "  {:width$}  FAILED  {}",
                r.service,
                r.error
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            ),
        };
        out.push_str(&one_line(&line));
        out.push('\n');
    }
    out
}

/// Renders rollout results: one line per workload.
pub fn render_rollouts(rollouts: &[crate::deploy::RolloutResult]) -> String {
    if rollouts.is_empty() {
        return "rollouts: none\n".into();
    }
    let mut out = format!("rollouts ({}):\n", rollouts.len());
    for r in rollouts {
        let status = r.status.as_str();
        let reason = r
            .reason
            .as_deref()
            .map(|x| format!(": {x}"))
            .unwrap_or_default();
        out.push_str(&one_line(&format!(
            "  {}  {}  {status} in {:.1}s{reason}",
            r.service, r.workload, r.seconds
        )));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::deploy::RolloutStatus;

    #[test]
    fn rollout_words_match_the_json_report() {
        for s in [
            RolloutStatus::Succeeded,
            RolloutStatus::Failed,
            RolloutStatus::RolledBack,
            RolloutStatus::Skipped,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn file_counts_read_like_english() {
        assert_eq!(super::files_phrase(1), "1 changed file");
        assert_eq!(super::files_phrase(50_000), "50,000 changed files");
    }
}
