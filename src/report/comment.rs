//! The sticky pull-request comment: what a run would do (plan) or did (build, ship), per
//! service, in one comment that later runs of the same kind update in place.
//!
//! Pure: a plan, the image and rollout results and a few facts about the config in, Markdown
//! out. [`crate::report::publish`] finds, creates and updates the comment.
//!
//! # Caveats
//! - Everything that comes from the repository or the tools (file names, rules, image
//!   references, error text) is HTML-escaped inside `<code>` or `<pre>`: a file named
//!   `a|b<script>` cannot break a table or add HTML, and `@name` or `#1` in it notifies no one
//!   and links nothing.
//! - GitHub refuses comments over 65,536 characters. Services are dropped from the end
//!   (failures come first) until the comment fits, and the comment then says how many are
//!   missing and points to the job summary.

use std::collections::BTreeMap;

use crate::cli::Command;
use crate::deploy::{RolloutResult, RolloutStatus};
use crate::image::push::{ImageResult, ImageStatus};
use crate::plan::{NodePlan, Plan};
use crate::report::summary::cell;

/// GitHub's limit for a comment body, in characters.
pub const MAX_COMMENT_CHARS: usize = 65_536;
/// Changed files listed per service; the rest are counted.
pub const REASONS_PER_SERVICE: usize = 10;
/// Characters kept of one file name or rule: ten of them must fit however long the names.
const CELL_LIMIT: usize = 300;
/// Characters kept of one error or warning.
const TEXT_LIMIT: usize = 1_500;
/// Warnings shown; the rest are counted.
const WARNINGS_SHOWN: usize = 5;
/// Room kept for the note that says services were left out.
const TRIM_NOTE_ROOM: usize = 600;

/// Which comment a run owns on a pull request: one per config file, command and (for `ship`)
/// environment. A `plan` job and a `ship` job of one pull request keep separate comments, so
/// neither hides the other; two configs in one repository never share one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentKey {
    /// The config path from the repository root, e.g. `.github/monoship.yml`.
    pub config: String,
    pub command: Command,
    /// The deployment environment of a `ship` (see [`crate::report::publish::environment_name`]).
    pub environment: Option<String>,
}

impl CommentKey {
    /// The hidden first line that marks the comment, e.g.
    /// `<!-- monoship:comment config=.github/monoship.yml command=ship environment=production -->`.
    /// Values are percent-encoded, so no config path can end the HTML comment.
    pub fn marker(&self) -> String {
        let mut marker = format!(
            "<!-- monoship:comment config={} command={}",
            marker_value(&self.config),
            command_word(self.command)
        );
        if let Some(env) = &self.environment {
            marker.push_str(&format!(" environment={}", marker_value(env)));
        }
        marker.push_str(" -->");
        marker
    }

    /// Whether `body` is the comment of this key: its first line is the marker.
    pub fn marks(&self, body: &str) -> bool {
        body.lines().next() == Some(self.marker().as_str())
    }
}

/// What the config says a service gets: the build and the deploy targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceTargets {
    /// The Dockerfile, when the service has an image.
    pub dockerfile: Option<String>,
    /// Where `ship` puts the image: `deployment/cart (namespace shop)`, `manifests deploy/*.yaml`.
    pub deploy: Vec<String>,
}

/// Everything one comment says.
#[derive(Debug, Clone, Copy)]
pub struct CommentInput<'a> {
    pub key: &'a CommentKey,
    pub plan: &'a Plan,
    /// Per service, from the config.
    pub targets: &'a BTreeMap<String, ServiceTargets>,
    /// After `build` and `ship`.
    pub images: Option<&'a [ImageResult]>,
    /// After `ship`.
    pub rollouts: Option<&'a [RolloutResult]>,
    /// `$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID`.
    pub run_url: Option<&'a str>,
}

/// Renders the comment body: the marker, a verdict, and one collapsible section per changed
/// service (failures first and open), at most [`MAX_COMMENT_CHARS`] characters.
pub fn render(input: &CommentInput) -> String {
    let plan = input.plan;
    let mut head = format!("{}\n", input.key.marker());
    head.push_str(&title(input));
    head.push_str(&range_line(plan));
    head.push_str(&format!("{}\n\n", verdict(input)));
    for w in plan.warnings.iter().take(WARNINGS_SHOWN) {
        head.push_str(&format!(
            "> [!WARNING]\n> {}\n\n",
            cell(&clip(w, TEXT_LIMIT))
        ));
    }
    if plan.warnings.len() > WARNINGS_SHOWN {
        head.push_str(&format!(
            "> {} more warnings are in the job summary.\n\n",
            plan.warnings.len() - WARNINGS_SHOWN
        ));
    }
    let footer = footer(input);

    let mut sections: Vec<(bool, &NodePlan)> = plan
        .services
        .iter()
        .filter(|s| s.changed)
        .map(|s| (needs_attention(input, &s.name), s))
        .collect();
    // Failures first, so trimming never hides them; then by name.
    sections.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let unchanged = unchanged_section(plan);

    let mut body = head;
    let mut used = body.chars().count() + footer.chars().count();
    let budget = MAX_COMMENT_CHARS.saturating_sub(TRIM_NOTE_ROOM);
    let mut shown = 0;
    for (failed, service) in &sections {
        let section = service_section(input, service, *failed);
        let size = section.chars().count();
        if used + size > budget {
            break;
        }
        body.push_str(&section);
        used += size;
        shown += 1;
    }
    let left_out = sections.len() - shown;
    let unchanged_count = plan.services.len() - sections.len();
    if left_out == 0 && used + unchanged.chars().count() <= budget {
        body.push_str(&unchanged);
    } else if unchanged_count > 0 {
        body.push_str(&format!(
            "{} did not change.\n\n",
            count(unchanged_count, "service")
        ));
    }
    if left_out > 0 {
        body.push_str(&format!(
            "> [!NOTE]\n> {left_out} more changed services are not shown, to keep this comment under GitHub's limit of 65,536 characters; {}.\n\n",
            summary_pointer(input.run_url)
        ));
    }
    body.push_str(&footer);
    clip_chars(body, MAX_COMMENT_CHARS)
}

fn command_word(command: Command) -> &'static str {
    match command {
        Command::Plan => "plan",
        Command::Build => "build",
        Command::Ship => "ship",
    }
}

/// Keeps `[A-Za-z0-9._/-]` and percent-encodes every other byte.
fn marker_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"._/-".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn title(input: &CommentInput) -> String {
    let command = command_word(input.key.command);
    match &input.key.environment {
        Some(env) => format!("### monoship {command} to {}\n\n", code(env)),
        None => format!("### monoship {command}\n\n"),
    }
}

fn range_line(plan: &Plan) -> String {
    let range = match &plan.base {
        Some(base) => format!("{}..{}", code(short(base)), code(short(&plan.head))),
        None => format!("at {}", code(short(&plan.head))),
    };
    let source = serde_json::to_value(plan.source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    format!(
        "**{} of {} services changed** ({range}, {}, source: {source}).\n\n",
        plan.changed.len(),
        plan.services.len(),
        crate::report::text::files_phrase(plan.files),
    )
}

/// One line on the outcome: what would happen (plan) or what did.
fn verdict(input: &CommentInput) -> String {
    let plan = input.plan;
    if plan.changed.is_empty() {
        return "Nothing to build or deploy.".into();
    }
    let Some(images) = input.images else {
        let builds = plan
            .changed
            .iter()
            .filter(|s| target(input, s).dockerfile.is_some())
            .count();
        let deploys: usize = plan
            .changed
            .iter()
            .map(|s| target(input, s).deploy.len())
            .sum();
        return format!(
            "Would build {} and deploy {}.",
            count(builds, "image"),
            count(deploys, "target")
        );
    };
    let of = |status: ImageStatus| images.iter().filter(|i| i.status == status).count();
    let mut parts = vec![format!(
        "{} built, {} reused",
        count(of(ImageStatus::Built), "image"),
        of(ImageStatus::Reused)
    )];
    if of(ImageStatus::Failed) > 0 {
        parts.push(format!("**{} failed to build**", of(ImageStatus::Failed)));
    }
    if let Some(rollouts) = input.rollouts {
        let of = |status: RolloutStatus| rollouts.iter().filter(|r| r.status == status).count();
        parts.push(format!(
            "{} succeeded",
            count(of(RolloutStatus::Succeeded), "rollout")
        ));
        for (status, word) in [
            (RolloutStatus::Failed, "failed"),
            (RolloutStatus::RolledBack, "rolled back"),
        ] {
            if of(status) > 0 {
                parts.push(format!("**{} {word}**", of(status)));
            }
        }
        if of(RolloutStatus::Skipped) > 0 {
            parts.push(format!("{} skipped", of(RolloutStatus::Skipped)));
        }
    }
    format!("{}.", parts.join(", "))
}

fn needs_attention(input: &CommentInput, service: &str) -> bool {
    let image_failed = input.images.is_some_and(|all| {
        all.iter()
            .any(|i| i.service == service && i.status == ImageStatus::Failed)
    });
    let rollout_failed = input.rollouts.is_some_and(|all| {
        all.iter().any(|r| {
            r.service == service
                && matches!(r.status, RolloutStatus::Failed | RolloutStatus::RolledBack)
        })
    });
    image_failed || rollout_failed
}

fn target<'a>(input: &'a CommentInput, service: &str) -> &'a ServiceTargets {
    static NONE: ServiceTargets = ServiceTargets {
        dockerfile: None,
        deploy: Vec::new(),
    };
    input.targets.get(service).unwrap_or(&NONE)
}

/// One `<details>` block: a one-line summary, then why it changed and what happened.
fn service_section(input: &CommentInput, service: &NodePlan, failed: bool) -> String {
    let name = &service.name;
    let targets = target(input, name);
    let image = input
        .images
        .and_then(|all| all.iter().find(|i| &i.service == name));
    let rollouts: Vec<&RolloutResult> = input
        .rollouts
        .map(|all| all.iter().filter(|r| &r.service == name).collect())
        .unwrap_or_default();

    let mut summary = vec![format!(
        "{}<b>{}</b>",
        if failed { "❌ " } else { "" },
        cell(name)
    )];
    // One path can match several rules; count it once.
    let files = service
        .reasons
        .iter()
        .filter(|r| !r.path.is_empty())
        .map(|r| r.path.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if files + service.more_reasons > 0 {
        summary.push(count(files + service.more_reasons, "changed file"));
    }
    match (input.images, image) {
        (None, _) if targets.dockerfile.is_some() => summary.push("would build".into()),
        (Some(_), Some(i)) => summary.push(image_word(i.status).into()),
        _ => {}
    }
    if input.rollouts.is_some() {
        for r in &rollouts {
            summary.push(format!("{} {}", code(&r.workload), rollout_word(r.status)));
        }
    } else if input.images.is_none() && !targets.deploy.is_empty() {
        summary.push("would deploy".into());
    }

    let mut out = format!(
        "<details{}><summary>{}</summary>\n\n",
        if failed { " open" } else { "" },
        summary.join(" · ")
    );
    out.push_str(&reasons_table(service));
    match (input.images, image) {
        (None, _) => out.push_str(&plan_targets(targets)),
        (Some(_), None) => out.push_str("No image: the service has no Dockerfile.\n\n"),
        (Some(_), Some(i)) => out.push_str(&image_lines(i)),
    }
    if input.rollouts.is_some() {
        out.push_str(&rollout_table(&rollouts));
    } else if input.images.is_some() && !targets.deploy.is_empty() {
        out.push_str(&format!(
            "`ship` deploys it to {}.\n\n",
            targets
                .deploy
                .iter()
                .map(|d| code(d))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push_str("</details>\n\n");
    out
}

fn reasons_table(service: &NodePlan) -> String {
    if service.reasons.is_empty() {
        return String::new();
    }
    let mut out = String::from("| changed file | rule |\n|---|---|\n");
    for r in service.reasons.iter().take(REASONS_PER_SERVICE) {
        let path = if r.path.is_empty() {
            "–".to_string()
        } else {
            code(&clip(&r.path, CELL_LIMIT))
        };
        out.push_str(&format!(
            "| {path} | {} |\n",
            code(&clip(&r.rule, CELL_LIMIT))
        ));
    }
    let rest = service.reasons.len().saturating_sub(REASONS_PER_SERVICE) + service.more_reasons;
    if rest > 0 {
        out.push_str(&format!("| … and {rest} more | |\n"));
    }
    out.push('\n');
    out
}

fn plan_targets(targets: &ServiceTargets) -> String {
    let mut out = String::new();
    match &targets.dockerfile {
        Some(d) => out.push_str(&format!("Would build {}", code(d))),
        None => out.push_str("No Dockerfile, so nothing to build"),
    }
    if targets.deploy.is_empty() {
        out.push_str("; no deploy targets.\n\n");
    } else {
        out.push_str(&format!(
            "; `ship` would deploy it to {}.\n\n",
            targets
                .deploy
                .iter()
                .map(|d| code(d))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

fn image_lines(i: &ImageResult) -> String {
    let mut out = String::new();
    match (&i.image, i.status) {
        (Some(image), ImageStatus::Reused) => out.push_str(&format!(
            "Image {}, reused: an image of the same inputs was already pushed ({:.1} s).\n\n",
            code(image),
            i.seconds
        )),
        (Some(image), _) => out.push_str(&format!(
            "Image {}, built and pushed in {:.1} s.\n\n",
            code(image),
            i.seconds
        )),
        (None, _) => {
            out.push_str(&format!(
                "**The image failed to build** after {:.1} s",
                i.seconds
            ));
            if let Some((file, line)) = &i.failed_at {
                out.push_str(&format!(" at {}", code(&format!("{file}:{line}"))));
            }
            out.push_str(":\n\n");
            out.push_str(&pre(i.error.as_deref().unwrap_or("no error message")));
        }
    }
    out
}

fn rollout_table(rollouts: &[&RolloutResult]) -> String {
    if rollouts.is_empty() {
        return "Not deployed: the service has no deploy targets.\n\n".into();
    }
    let mut out = String::from("| workload | rollout | time |\n|---|---|---|\n");
    let mut details = String::new();
    for r in rollouts {
        let reason = r
            .reason
            .as_deref()
            .map(|x| format!(": {}", code(&clip(x, CELL_LIMIT))))
            .unwrap_or_default();
        out.push_str(&format!(
            "| {} | {}{reason} | {:.1} s |\n",
            code(&r.workload),
            rollout_word(r.status),
            r.seconds
        ));
        let failed = matches!(r.status, RolloutStatus::Failed | RolloutStatus::RolledBack);
        if failed
            && (!r.events.is_empty() || r.reason.as_ref().is_some_and(|x| x.len() > CELL_LIMIT))
        {
            let mut text = r.reason.clone().unwrap_or_default();
            for e in r.events.iter().take(10) {
                text.push('\n');
                text.push_str(e);
            }
            details.push_str(&format!("{}:\n\n", code(&r.workload)));
            details.push_str(&pre(&text));
        }
    }
    out.push('\n');
    out.push_str(&details);
    out
}

fn unchanged_section(plan: &Plan) -> String {
    let names: Vec<String> = plan
        .services
        .iter()
        .filter(|s| !s.changed)
        .map(|s| code(&s.name))
        .collect();
    if names.is_empty() {
        return String::new();
    }
    format!(
        "<details><summary>{} did not change</summary>\n\n{}\n\n</details>\n\n",
        count(names.len(), "service"),
        names.join(", ")
    )
}

fn footer(input: &CommentInput) -> String {
    let report = match input.run_url {
        Some(url) => format!(
            "[workflow run]({}) · its job summary has the full report",
            link_target(url)
        ),
        None => "the job summary of this run has the full report".into(),
    };
    format!(
        "<sub>monoship · commit {} · {report}</sub>\n",
        code(short(&input.plan.head))
    )
}

fn summary_pointer(run_url: Option<&str>) -> String {
    match run_url {
        Some(url) => format!(
            "the job summary of [this run]({}) lists them all",
            link_target(url)
        ),
        None => "this run's job summary lists them all".into(),
    }
}

/// A URL as a Markdown link target: no spaces, parentheses or angle brackets to end it early.
fn link_target(url: &str) -> String {
    url.chars()
        .flat_map(|c| match c {
            ' ' | '(' | ')' | '<' | '>' | '"' | '\'' | '[' | ']' => {
                let mut buf = [0; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect::<Vec<_>>()
            }
            c if c.is_control() => Vec::new(),
            c => vec![c.to_string()],
        })
        .collect()
}

fn image_word(status: ImageStatus) -> &'static str {
    match status {
        ImageStatus::Built => "built",
        ImageStatus::Reused => "reused",
        ImageStatus::Failed => "build failed",
    }
}

fn rollout_word(status: RolloutStatus) -> &'static str {
    match status {
        RolloutStatus::Succeeded => "✅ succeeded",
        RolloutStatus::Failed => "❌ failed",
        RolloutStatus::RolledBack => "↩️ rolled back",
        RolloutStatus::Skipped => "⏭️ skipped",
    }
}

/// Untrusted text as inline code: HTML-escaped, one line, no table breaks.
fn code(text: &str) -> String {
    format!("<code>{}</code>", cell(text))
}

/// Untrusted multi-line text as a `<pre>` block, bounded.
fn pre(text: &str) -> String {
    let mut out = String::from("<pre>");
    for c in clip(text.trim_end(), TEXT_LIMIT).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' => out.push('\n'),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push_str("</pre>\n\n");
    out
}

/// At most `limit` characters of `text`, with `…` when cut.
fn clip(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn clip_chars(text: String, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => text[..cut].to_string(),
        None => text,
    }
}

fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn short(sha: &str) -> &str {
    match sha.char_indices().nth(12) {
        Some((cut, _)) => &sha[..cut],
        None => sha,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{self, node, reason, rollout, Images};

    const BASE: &str = "1111111111111111111111111111111111111111";
    const HEAD: &str = "2222222222222222222222222222222222222222";
    const RUN: &str = "https://github.com/octo/shop/actions/runs/42";
    const IMAGES: Images = Images {
        registry: "registry.example",
        digest: "sha256:abababababababababababababababababababababababababababababababab",
        seconds: 12.25,
        error: "RUN make failed: exit code 2\nmake: *** [all] Error 2",
        failed_at: Some(("src/cart/Dockerfile", 7)),
    };

    /// A plan between the commits the comments name.
    fn plan(services: Vec<NodePlan>, files: usize) -> Plan {
        Plan {
            base: Some(BASE.into()),
            head: HEAD.into(),
            ..fixtures::plan(services, vec![], files)
        }
    }

    fn shop_plan() -> Plan {
        let cart = [
            ("pb/demo.proto", "Dockerfile COPY ./pb/"),
            ("src/cart/main.go", "Dockerfile COPY src/cart/"),
        ];
        plan(
            vec![
                node("ads", &[], 0),
                node("cart", &cart, 0),
                node("frontend", &[("pb/demo.proto", "depends_on cart")], 0),
            ],
            2,
        )
    }

    fn shop_targets() -> BTreeMap<String, ServiceTargets> {
        let t = |dockerfile: &str, deploy: &str| ServiceTargets {
            dockerfile: Some(dockerfile.into()),
            deploy: vec![deploy.into()],
        };
        BTreeMap::from([
            (
                "ads".into(),
                t("src/ads/Dockerfile", "deployment/ads (namespace shop)"),
            ),
            (
                "cart".into(),
                t("src/cart/Dockerfile", "deployment/cart (namespace shop)"),
            ),
            (
                "frontend".into(),
                t(
                    "src/frontend/Dockerfile",
                    "deployment/frontend (namespace shop)",
                ),
            ),
        ])
    }

    fn key(command: Command) -> CommentKey {
        CommentKey {
            config: ".github/monoship.yml".into(),
            command,
            environment: (command == Command::Ship).then(|| "staging".into()),
        }
    }

    fn input<'a>(
        key: &'a CommentKey,
        plan: &'a Plan,
        targets: &'a BTreeMap<String, ServiceTargets>,
        images: Option<&'a [ImageResult]>,
        rollouts: Option<&'a [RolloutResult]>,
    ) -> CommentInput<'a> {
        CommentInput {
            key,
            plan,
            targets,
            images,
            rollouts,
            run_url: Some(RUN),
        }
    }

    /// The snapshot of a comment; insta ignores trailing newlines, so the one GitHub shows
    /// after the footer is checked here.
    fn assert_comment_snapshot(name: &str, body: &str) {
        assert!(body.ends_with("full report</sub>\n"), "{body}");
        insta::assert_snapshot!(name, body);
    }

    #[test]
    fn plan_comment_says_what_would_be_built_and_deployed_and_why() {
        let (plan, targets, key) = (shop_plan(), shop_targets(), key(Command::Plan));
        let body = render(&input(&key, &plan, &targets, None, None));
        assert_comment_snapshot(
            "plan_comment_says_what_would_be_built_and_deployed_and_why",
            &body,
        );
    }

    #[test]
    fn build_comment_shows_built_and_reused_images_by_digest() {
        let (plan, targets, key) = (shop_plan(), shop_targets(), key(Command::Build));
        let images = [
            IMAGES.of("cart", ImageStatus::Built),
            IMAGES.of("frontend", ImageStatus::Reused),
        ];
        let body = render(&input(&key, &plan, &targets, Some(&images), None));
        assert_comment_snapshot(
            "build_comment_shows_built_and_reused_images_by_digest",
            &body,
        );
    }

    #[test]
    fn ship_comment_puts_failed_rollouts_first_and_open() {
        let (plan, targets, key) = (shop_plan(), shop_targets(), key(Command::Ship));
        let images = [
            IMAGES.of("cart", ImageStatus::Built),
            IMAGES.of("frontend", ImageStatus::Reused),
        ];
        let rollouts = [
            rollout("cart", RolloutStatus::Succeeded, None, 8.0),
            rollout(
                "frontend",
                RolloutStatus::RolledBack,
                Some("pod frontend-abc: CrashLoopBackOff (back-off restarting failed container)"),
                8.0,
            ),
        ];
        let body = render(&input(
            &key,
            &plan,
            &targets,
            Some(&images),
            Some(&rollouts),
        ));
        assert_comment_snapshot("ship_comment_puts_failed_rollouts_first_and_open", &body);
    }

    #[test]
    fn a_failed_build_shows_its_error_and_line_and_the_skipped_rollouts() {
        let (plan, targets, key) = (shop_plan(), shop_targets(), key(Command::Ship));
        let images = [
            IMAGES.of("cart", ImageStatus::Failed),
            IMAGES.of("frontend", ImageStatus::Reused),
        ];
        let why = "nothing was deployed because the image of cart failed to build";
        let rollouts = [
            rollout("cart", RolloutStatus::Skipped, Some(why), 8.0),
            rollout("frontend", RolloutStatus::Skipped, Some(why), 8.0),
        ];
        let mut input = input(&key, &plan, &targets, Some(&images), Some(&rollouts));
        input.run_url = None;
        let body = render(&input);
        assert!(
            body.contains(
                "0 images built, 1 reused, **1 failed to build**, 0 rollouts succeeded, 2 skipped."
            ),
            "{body}"
        );
        assert!(body.contains("<details open><summary>❌ <b>cart</b> · 2 changed files · build failed · <code>deployment/shop/cart</code> ⏭️ skipped</summary>"), "{body}");
        assert!(body.contains("**The image failed to build** after 12.2 s at <code>src/cart/Dockerfile:7</code>:\n\n<pre>RUN make failed: exit code 2\nmake: *** [all] Error 2</pre>"), "{body}");
        assert!(body.find("<b>cart</b>") < body.find("<b>frontend</b>"));
        assert!(body.ends_with("<sub>monoship · commit <code>222222222222</code> · the job summary of this run has the full report</sub>\n"), "{body}");
    }

    #[test]
    fn a_path_matched_by_two_rules_counts_once() {
        let mut plan = shop_plan();
        plan.services[2]
            .reasons
            .push(reason("pb/demo.proto", "Dockerfile COPY pb/"));
        let (targets, key) = (shop_targets(), key(Command::Plan));
        let body = render(&input(&key, &plan, &targets, None, None));
        assert!(
            body.contains("<summary><b>frontend</b> · 1 changed file · would build"),
            "{body}"
        );
        assert_eq!(body.matches("| <code>pb/demo.proto</code> |").count(), 3);
    }

    #[test]
    fn very_long_file_names_are_clipped_so_the_service_still_shows() {
        let mut plan = shop_plan();
        plan.services[1].reasons = (0..20)
            .map(|i| reason(&format!("{i}{}", "<|>".repeat(2_000)), "paths: **"))
            .collect();
        let (targets, key) = (shop_targets(), key(Command::Plan));
        let body = render(&input(&key, &plan, &targets, None, None));
        assert!(body.chars().count() <= MAX_COMMENT_CHARS);
        assert!(
            body.contains("<summary><b>cart</b> · 20 changed files"),
            "{body}"
        );
        assert!(body.contains("…</code> | <code>paths: &#42;&#42;</code> |"));
        assert!(!body.contains("more changed services are not shown"));
    }

    #[test]
    fn nothing_changed_says_so() {
        let mut plan = shop_plan();
        plan.changed.clear();
        for s in &mut plan.services {
            s.changed = false;
            s.reasons.clear();
        }
        let (targets, key) = (shop_targets(), key(Command::Plan));
        let body = render(&input(&key, &plan, &targets, None, None));
        assert!(body.contains("**0 of 3 services changed**"), "{body}");
        assert!(body.contains("Nothing to build or deploy."), "{body}");
        assert!(!body.contains("<details><summary><b>"), "{body}");
        assert!(
            body.contains("<details><summary>3 services did not change</summary>"),
            "{body}"
        );
    }

    #[test]
    fn hostile_file_names_cannot_break_the_table_or_inject_html() {
        let hostile = [
            "a|b.txt",
            "<img src=x onerror=alert(1)>.md",
            "`rm -rf`.sh",
            "line\nbreak | --- |",
            "</details></summary><script>x</script>",
            "@octocat fixes #1 [x](javascript:alert(1))",
            "a\r\n| evil | row |",
        ];
        let mut plan = shop_plan();
        plan.services[1].reasons = hostile
            .iter()
            .map(|p| reason(p, "paths: **/*|<b>`"))
            .collect();
        plan.warnings = vec!["warning <script>|`x`\n::error::forged".into()];
        let (targets, key) = (shop_targets(), key(Command::Plan));
        let body = render(&input(&key, &plan, &targets, None, None));
        for raw in [
            "<img",
            "<script",
            "`rm",
            "|b.txt",
            "</summary><script",
            "\r",
        ] {
            assert!(!body.contains(raw), "{raw:?} got through:\n{body}");
        }
        assert!(body.contains("<code>a&#124;b.txt</code>"), "{body}");
        assert!(
            body.contains("<code>&lt;img src=x onerror=alert(1)&gt;.md</code>"),
            "{body}"
        );
        assert!(body.contains("<code>&#96;rm -rf&#96;.sh</code>"), "{body}");
        // Every table row keeps its two cells: no name adds a cell or a line.
        let rows: Vec<&str> = body.lines().filter(|l| l.starts_with("| <code>")).collect();
        assert_eq!(rows.len(), hostile.len() + 1, "{body}");
        for row in rows {
            assert_eq!(row.matches(" | ").count(), 1, "{row}");
            assert!(row.ends_with(" |"), "{row}");
        }
        assert_eq!(
            body.matches("<details").count(),
            body.matches("</details>").count(),
            "{body}"
        );
        // @mentions and #references only link outside code.
        assert!(
            body.contains("<code>@octocat fixes &#35;1 &#91;x&#93;(javascript:alert(1))</code>"),
            "{body}"
        );
    }

    #[test]
    fn a_500_service_plan_is_trimmed_under_the_limit_with_a_pointer() {
        let services: Vec<NodePlan> = (0..500)
            .map(|i| NodePlan {
                name: format!("service-{i:03}"),
                changed: true,
                // Multi-byte characters: the limit counts characters, not bytes.
                reasons: (0..20)
                    .map(|j| {
                        reason(
                            &format!("services/über-{i:03}/src/modül-{j:02}.rs"),
                            "paths: services/**",
                        )
                    })
                    .collect(),
                more_reasons: 80,
            })
            .collect();
        let plan = plan(services, 50_000);
        let targets = BTreeMap::new();
        let key = key(Command::Plan);
        let body = render(&input(&key, &plan, &targets, None, None));
        let chars = body.chars().count();
        assert!(chars <= MAX_COMMENT_CHARS, "{chars} characters");
        assert!(
            body.len() > MAX_COMMENT_CHARS,
            "the test needs more bytes than characters"
        );
        assert!(
            chars > MAX_COMMENT_CHARS - 5_000,
            "the room is used: {chars}"
        );
        assert!(body.starts_with(&key.marker()));
        assert!(body.contains("**500 of 500 services changed**"));
        let shown = body.matches("<details><summary><b>").count();
        assert!((10..500).contains(&shown), "{shown} shown");
        assert!(
            body.contains(&format!("> {} more changed services are not shown, to keep this comment under GitHub's limit of 65,536 characters; the job summary of [this run]({RUN}) lists them all.", 500 - shown)),
            "{}",
            &body[body.len() - 1_000..]
        );
        assert!(body.contains("| … and 90 more | |"));
        assert_eq!(
            body.matches("<details").count(),
            body.matches("</details>").count()
        );
        assert!(body.ends_with("</sub>\n"));
    }

    #[test]
    fn markers_are_keyed_by_config_command_and_environment() {
        assert_eq!(
            key(Command::Ship).marker(),
            "<!-- monoship:comment config=.github/monoship.yml command=ship environment=staging -->"
        );
        assert_eq!(
            key(Command::Plan).marker(),
            "<!-- monoship:comment config=.github/monoship.yml command=plan -->"
        );
        let odd = CommentKey {
            config: "deploy/a b-->c.yml".into(),
            command: Command::Ship,
            environment: Some("prod --> <x>".into()),
        };
        let marker = odd.marker();
        assert_eq!(
            marker,
            "<!-- monoship:comment config=deploy/a%20b--%3Ec.yml command=ship environment=prod%20--%3E%20%3Cx%3E -->"
        );
        assert_eq!(marker.matches("-->").count(), 1);
        let plan_key = key(Command::Plan);
        assert!(plan_key.marks(&format!("{}\r\n### monoship plan", plan_key.marker())));
        assert!(!plan_key.marks(&key(Command::Build).marker()));
        assert!(!plan_key.marks(&format!("> quoted\n{}", plan_key.marker())));
        assert!(!key(Command::Ship).marks(&format!("{}\n", plan_key.marker())));
    }
}
