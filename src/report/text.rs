//! Human-readable output for the terminal: the plan, images and rollouts on stdout, and
//! build progress lines for stderr. Colour is plain ANSI SGR codes, used only when the caller
//! says so ([`Style::COLOR`]); every piece of user text goes through [`one_line`] first, so a
//! name cannot move the cursor or start a workflow command.

use crate::deploy::{RolloutResult, RolloutStatus};
use crate::image::push::{ImageResult, ImageStatus};
use crate::plan::{NodePlan, Plan};
use crate::report::commands::one_line;

/// Reasons shown per changed service; the rest are counted.
pub const REASONS_SHOWN: usize = 3;
/// Unchanged services named; the rest are counted.
pub const UNCHANGED_NAMED: usize = 12;
/// Names wider than this do not widen the reasons column.
const NAME_COLUMN: usize = 24;

/// Plain text, or text with ANSI colours for a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    color: bool,
}

impl Style {
    pub const PLAIN: Style = Style { color: false };
    pub const COLOR: Style = Style { color: true };

    /// [`Style::COLOR`] when `color` is true.
    pub fn new(color: bool) -> Style {
        Style { color }
    }

    fn paint(self, sgr: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(self, t: &str) -> String {
        self.paint("1", t)
    }
    fn dim(self, t: &str) -> String {
        self.paint("2", t)
    }
    fn green(self, t: &str) -> String {
        self.paint("32", t)
    }
    fn yellow(self, t: &str) -> String {
        self.paint("33", t)
    }
    fn red(self, t: &str) -> String {
        self.paint("1;31", t)
    }
    fn cyan(self, t: &str) -> String {
        self.paint("36", t)
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Renders a plan for people: the range, each changed service with its first reasons, and
/// the unchanged ones counted (the first few named).
pub fn render_plan(plan: &Plan, style: Style) -> String {
    let mut out = plan_heading(plan, style);
    let changed: Vec<&NodePlan> = plan.services.iter().filter(|s| s.changed).collect();
    let width = changed
        .iter()
        .map(|s| one_line(&s.name).chars().count())
        .max()
        .unwrap_or(0)
        .min(NAME_COLUMN);
    for s in changed {
        out.push_str(&changed_service(s, width, style));
    }
    out.push_str(&unchanged_services(plan, style));
    out
}

/// The range and source, the warnings, and the heading of the changed services.
fn plan_heading(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    let range = match &plan.base {
        Some(base) => format!("{}..{}", short(base), short(&plan.head)),
        None => format!("at {}", short(&plan.head)),
    };
    let source = serde_json::to_value(plan.source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    out.push_str(&format!(
        "{} {} ({source}, {})\n",
        style.bold("plan"),
        one_line(&range),
        files_phrase(plan.files)
    ));
    for w in &plan.warnings {
        out.push_str(&format!("{} {}\n", style.yellow("warning:"), one_line(w)));
    }
    let heading = format!("changed ({}/{}):", plan.changed.len(), plan.services.len());
    out.push_str(&style.bold(&heading));
    if plan.changed.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
    }
    out
}

/// The lines of one changed service: its name padded to `width`, then its first reasons,
/// one a line, and a count of the rest.
fn changed_service(s: &NodePlan, width: usize, style: Style) -> String {
    let mut out = String::new();
    let name = one_line(&s.name);
    // Padding is added outside the colour codes, so columns line up either way.
    let pad = " ".repeat(width.saturating_sub(name.chars().count()));
    let indent = " ".repeat(width.max(name.chars().count()));
    for (i, r) in s.reasons.iter().take(REASONS_SHOWN).enumerate() {
        let who = if i == 0 {
            format!("{}{pad}", style.green(&name))
        } else {
            indent.clone()
        };
        if r.path.is_empty() {
            out.push_str(&format!("  {who}  {}\n", one_line(&r.rule)));
        } else {
            out.push_str(&format!(
                "  {who}  {}  {}\n",
                one_line(&r.path),
                style.dim(&format!("<- {}", one_line(&r.rule)))
            ));
        }
    }
    if s.reasons.is_empty() {
        out.push_str(&format!("  {}{pad}\n", style.green(&name)));
    }
    let rest = s.reasons.len().saturating_sub(REASONS_SHOWN) + s.more_reasons;
    if rest > 0 {
        out.push_str(&format!(
            "  {indent}  {}\n",
            style.dim(&format!("... and {rest} more"))
        ));
    }
    out
}

/// One line counting the unchanged services and naming the first [`UNCHANGED_NAMED`];
/// empty when every service changed.
fn unchanged_services(plan: &Plan, style: Style) -> String {
    let unchanged: Vec<String> = plan
        .services
        .iter()
        .filter(|s| !s.changed)
        .map(|s| one_line(&s.name))
        .collect();
    if unchanged.is_empty() {
        return String::new();
    }
    let mut names = unchanged
        .iter()
        .take(UNCHANGED_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if unchanged.len() > UNCHANGED_NAMED {
        names.push_str(&format!(
            ", ... and {} more",
            unchanged.len() - UNCHANGED_NAMED
        ));
    }
    let mut line = style.dim(&format!("unchanged ({}): {names}", unchanged.len()));
    line.push('\n');
    line
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
pub fn render_images(images: &[ImageResult], style: Style) -> String {
    if images.is_empty() {
        return "images: none to build\n".into();
    }
    let mut out = style.bold(&format!("images ({}):", images.len()));
    out.push('\n');
    let width = images
        .iter()
        .map(|r| one_line(&r.service).chars().count())
        .max()
        .unwrap_or(0)
        .min(NAME_COLUMN);
    for r in images {
        let name = format!("{:width$}", one_line(&r.service));
        let line = match r.status {
            ImageStatus::Built | ImageStatus::Reused => format!(
                "  {name}  {}  {}  ({:.1}s)",
                if r.status == ImageStatus::Built {
                    style.green("built ")
                } else {
                    style.cyan("reused")
                },
                one_line(r.image.as_deref().unwrap_or("")),
                r.seconds
            ),
            ImageStatus::Failed => format!(
                "  {name}  {}  {}",
                style.red("FAILED"),
                one_line(first_line(r.error.as_deref()))
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn first_line(text: Option<&str>) -> &str {
    text.unwrap_or("").lines().next().unwrap_or("")
}

/// Renders rollout results: one line per workload.
pub fn render_rollouts(rollouts: &[RolloutResult], style: Style) -> String {
    if rollouts.is_empty() {
        return "rollouts: none\n".into();
    }
    let mut out = style.bold(&format!("rollouts ({}):", rollouts.len()));
    out.push('\n');
    for r in rollouts {
        let word = r.status.as_str();
        let status = match r.status {
            RolloutStatus::Succeeded => style.green(word),
            RolloutStatus::Failed | RolloutStatus::RolledBack => style.red(word),
            RolloutStatus::Skipped => style.yellow(word),
        };
        let reason = r
            .reason
            .as_deref()
            .map(|x| format!(": {}", one_line(x)))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}  {}  {status} in {:.1}s{reason}\n",
            one_line(&r.service),
            one_line(&r.workload),
            r.seconds
        ));
    }
    out
}

/// The progress line for an image whose build (or reuse check) starts: `cart: building (1/3)`.
pub fn image_started(service: &str, number: usize, total: usize) -> String {
    format!("{}: building ({number}/{total})", one_line(service))
}

/// The progress line for a finished image:
/// `cart: pushed 127.0.0.1:5000/shop/cart@sha256:... in 1.2s`.
pub fn image_finished(r: &ImageResult) -> String {
    let service = one_line(&r.service);
    let image = one_line(r.image.as_deref().unwrap_or("(no image)"));
    match r.status {
        ImageStatus::Built => format!(
            "{service}: pushed {image} in {:.1}s{}",
            r.seconds,
            bases_moved(r)
        ),
        ImageStatus::Reused => format!(
            "{service}: reused {image} (inputs unchanged) in {:.1}s",
            r.seconds
        ),
        ImageStatus::Failed => format!(
            "{service}: FAILED in {:.1}s: {}",
            r.seconds,
            one_line(first_line(r.error.as_deref()).trim_end_matches(':'))
        ),
    }
}

/// `; base image X moved (sha256:… -> sha256:…)` for each base that moved, or nothing.
fn bases_moved(r: &ImageResult) -> String {
    let short = |d: &str| d.chars().take(19).collect::<String>();
    r.bases_moved
        .iter()
        .map(|m| {
            format!(
                "; base image {} moved ({} -> {})",
                one_line(&m.image),
                short(&m.was),
                short(&m.now)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{node, plan, rollout, Images};

    const IMAGES: Images = Images {
        registry: "127.0.0.1:5000/shop",
        digest: "sha256:abc",
        seconds: 1.25,
        error: "the build failed:\nCOPY failed",
        failed_at: None,
    };

    fn shop() -> Plan {
        let api = node("api", &[("pb/api.proto", "Dockerfile COPY pb/")], 0);
        let web = node(
            "frontend",
            &[
                ("pb/api.proto", "depends_on api"),
                ("web/a.txt", "paths: web/**"),
                ("web/b.txt", "paths: web/**"),
                ("web/c.txt", "paths: web/**"),
            ],
            2,
        );
        let forced = node("jobs", &[("", "named in --services")], 0);
        let services = vec![
            api,
            node("docs", &[], 0),
            web,
            forced,
            node("worker", &[], 0),
        ];
        Plan {
            warnings: vec!["the base commit is not in this clone;\nused the API".into()],
            ..plan(services, vec![], 4)
        }
    }

    #[test]
    fn plans_render_plain_and_in_colour() {
        let rows: [(Plan, Style, &str); 3] = [
            (
                shop(),
                Style::COLOR,
                "\x1b[1mplan\x1b[0m aaaaaaaaaaaa..bbbbbbbbbbbb (git, 4 changed files)
\x1b[33mwarning:\x1b[0m the base commit is not in this clone;\\nused the API
\x1b[1mchanged (3/5):\x1b[0m
  \x1b[32mapi\x1b[0m       pb/api.proto  \x1b[2m<- Dockerfile COPY pb/\x1b[0m
  \x1b[32mfrontend\x1b[0m  pb/api.proto  \x1b[2m<- depends_on api\x1b[0m
            web/a.txt  \x1b[2m<- paths: web/**\x1b[0m
            web/b.txt  \x1b[2m<- paths: web/**\x1b[0m
            \x1b[2m... and 3 more\x1b[0m
  \x1b[32mjobs\x1b[0m      named in --services
\x1b[2munchanged (2): docs, worker\x1b[0m
",
            ),
            (
                plan(vec![node("api", &[], 0)], vec![], 4),
                Style::PLAIN,
                "plan aaaaaaaaaaaa..bbbbbbbbbbbb (git, 4 changed files)
changed (0/1): none
unchanged (1): api
",
            ),
            (
                plan(
                    (0..15).map(|i| node(&format!("s{i:02}"), &[], 0)).collect(),
                    vec![],
                    4,
                ),
                Style::COLOR,
                "\x1b[1mplan\x1b[0m aaaaaaaaaaaa..bbbbbbbbbbbb (git, 4 changed files)
\x1b[1mchanged (0/15):\x1b[0m none
\x1b[2munchanged (15): s00, s01, s02, s03, s04, s05, s06, s07, s08, s09, s10, s11, ... and 3 more\x1b[0m
",
            ),
        ];
        for (i, (plan, style, want)) in rows.iter().enumerate() {
            assert_eq!(render_plan(plan, *style), *want, "row {i}");
        }
        let plain = render_plan(&shop(), Style::PLAIN);
        assert!(plain.ends_with("docs, worker\n"), "{plain}");
        insta::assert_snapshot!(plain);
    }

    #[test]
    fn a_name_wider_than_the_column_indents_its_own_reasons() {
        let long = "a-service-name-of-30-characters";
        let s = node(long, &[("x", "paths: **"), ("y", "paths: **")], 1);
        let indent = " ".repeat(long.len());
        assert_eq!(
            changed_service(&s, 4, Style::PLAIN),
            format!(
                "  {long}  x  <- paths: **\n  {indent}  y  <- paths: **\n  {indent}  ... and 1 more\n"
            )
        );
        let bare = NodePlan {
            changed: true,
            ..node("api", &[], 0)
        };
        assert_eq!(changed_service(&bare, 6, Style::PLAIN), "  api   \n");
    }

    #[test]
    fn no_unchanged_services_means_no_line() {
        let all_changed = plan(vec![node("api", &[("x", "paths: **")], 0)], vec![], 1);
        assert_eq!(unchanged_services(&all_changed, Style::COLOR), "");
    }

    #[test]
    fn names_cannot_smuggle_escape_codes_or_lines() {
        let evil = node("x\x1b[2J\n::error::y", &[("a\rb", "paths: **")], 0);
        for style in [Style::PLAIN, Style::COLOR] {
            let out = render_plan(&plan(vec![evil.clone()], vec![], 4), style);
            assert_eq!(out.lines().count(), 3, "{out:?}");
            assert!(out.contains("x\\u{1b}[2J\\n::error::y"), "{out:?}");
            assert!(out.contains("a\\rb"), "{out:?}");
            let codes = out.matches('\x1b').count();
            assert_eq!(codes, if style == Style::COLOR { 8 } else { 0 }, "{out:?}");
        }
    }

    #[test]
    fn images_and_rollouts_render_plain_and_in_colour() {
        let images = [
            IMAGES.of("cart", ImageStatus::Built),
            IMAGES.of("checkout", ImageStatus::Reused),
            IMAGES.of("email", ImageStatus::Failed),
        ];
        let rollouts = [
            rollout("cart", RolloutStatus::Succeeded, None, 3.0),
            rollout(
                "checkout",
                RolloutStatus::RolledBack,
                Some("CrashLoopBackOff"),
                3.0,
            ),
            rollout(
                "email",
                RolloutStatus::Skipped,
                Some("its image failed"),
                3.0,
            ),
        ];
        assert_eq!(
            render_images(&images, Style::PLAIN),
            "images (3):
  cart      built   127.0.0.1:5000/shop/cart@sha256:abc  (1.2s)
  checkout  reused  127.0.0.1:5000/shop/checkout@sha256:abc  (1.2s)
  email     FAILED  the build failed:
"
        );
        assert_eq!(
            render_images(&images, Style::COLOR),
            "\x1b[1mimages (3):\x1b[0m
  cart      \x1b[32mbuilt \x1b[0m  127.0.0.1:5000/shop/cart@sha256:abc  (1.2s)
  checkout  \x1b[36mreused\x1b[0m  127.0.0.1:5000/shop/checkout@sha256:abc  (1.2s)
  email     \x1b[1;31mFAILED\x1b[0m  the build failed:
"
        );
        assert_eq!(
            render_rollouts(&rollouts, Style::PLAIN),
            "rollouts (3):
  cart  deployment/shop/cart  succeeded in 3.0s
  checkout  deployment/shop/checkout  rolled-back in 3.0s: CrashLoopBackOff
  email  deployment/shop/email  skipped in 3.0s: its image failed
"
        );
        assert_eq!(
            render_rollouts(&rollouts, Style::COLOR),
            "\x1b[1mrollouts (3):\x1b[0m
  cart  deployment/shop/cart  \x1b[32msucceeded\x1b[0m in 3.0s
  checkout  deployment/shop/checkout  \x1b[1;31mrolled-back\x1b[0m in 3.0s: CrashLoopBackOff
  email  deployment/shop/email  \x1b[33mskipped\x1b[0m in 3.0s: its image failed
"
        );
        assert_eq!(render_images(&[], Style::COLOR), "images: none to build\n");
    }

    #[test]
    fn progress_lines() {
        assert_eq!(image_started("cart", 1, 3), "cart: building (1/3)");
        let rows = [
            (
                ImageStatus::Built,
                "cart: pushed 127.0.0.1:5000/shop/cart@sha256:abc in 1.2s",
            ),
            (
                ImageStatus::Reused,
                "cart: reused 127.0.0.1:5000/shop/cart@sha256:abc (inputs unchanged) in 1.2s",
            ),
            (
                ImageStatus::Failed,
                "cart: FAILED in 1.2s: the build failed",
            ),
        ];
        for (status, want) in rows {
            assert_eq!(image_finished(&IMAGES.of("cart", status)), want);
        }
        assert_eq!(image_started("a\nb", 2, 2), "a\\nb: building (2/2)");
        let mut moved = IMAGES.of("cart", ImageStatus::Built);
        moved.bases_moved = vec![crate::image::base::MovedBase {
            image: "ghcr.io/acme/base:1".into(),
            was: format!("sha256:{}", "a".repeat(64)),
            now: format!("sha256:{}", "b".repeat(64)),
        }];
        assert_eq!(
            image_finished(&moved),
            "cart: pushed 127.0.0.1:5000/shop/cart@sha256:abc in 1.2s; base image ghcr.io/acme/base:1 moved (sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb)"
        );
    }

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
