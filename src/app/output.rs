//! What a run prints and writes at its end: stdout (text or JSON), and in GitHub Actions the
//! annotations, `$GITHUB_OUTPUT` and the job summary. The rendering is [`crate::report`]'s;
//! this module only decides what goes where.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::{write_err, Error, RunContext};
use crate::cli::Format;
use crate::config::Config;
use crate::deploy::{RolloutResult, RolloutStatus};
use crate::image::push::{ImageResult, ImageStatus};
use crate::plan::Plan;
use crate::report::commands::one_line;
use crate::report::{annotations, outputs, summary, text};

/// Reports a plan: stdout, and in action mode annotations, outputs and summary.
///
/// # Errors
/// When stdout, stderr, the outputs file or the summary cannot be written.
pub(crate) fn report_plan(
    ctx: &RunContext,
    plan: &Plan,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), Error> {
    match ctx.format {
        Format::Json => {
            let json = serde_json::to_string_pretty(plan).expect("a plan serializes");
            writeln!(stdout, "{json}").map_err(write_err("stdout"))?;
        }
        Format::Text => write!(
            stdout,
            "{}",
            text::render_plan(plan, text::Style::new(ctx.color))
        )
        .map_err(write_err("stdout"))?,
    }
    if ctx.in_action() {
        write_plan_files(ctx, plan, stderr)?;
    } else if ctx.format == Format::Json {
        for w in &plan.warnings {
            writeln!(stderr, "warning: {}", one_line(w)).map_err(write_err("stderr"))?;
        }
    }
    Ok(())
}

/// In action mode: the plan's annotations, outputs and summary.
fn write_plan_files(ctx: &RunContext, plan: &Plan, stderr: &mut dyn Write) -> Result<(), Error> {
    let Some(a) = &ctx.action else { return Ok(()) };
    write_annotations(ctx, plan, &[], None, "", stderr)?;
    if let Some(path) = &a.output {
        outputs::append(path, &outputs::plan_outputs(plan, &ctx.config))
            .map_err(write_err(&path.display().to_string()))?;
    }
    if let Some(path) = &a.summary {
        summary::append(path, &summary::render_plan(plan, &ctx.config))
            .map_err(write_err(&path.display().to_string()))?;
    }
    Ok(())
}

/// `build --format json`: the plan plus `images`; `ship` adds `rollouts`.
#[derive(Serialize)]
struct BuildReport<'a> {
    #[serde(flatten)]
    plan: &'a Plan,
    images: &'a [ImageResult],
    #[serde(skip_serializing_if = "Option::is_none")]
    rollouts: Option<&'a [RolloutResult]>,
}

/// Reports a build: stdout, and in action mode outputs, summary and annotations. After a dry
/// run (`images` is `None`) stdout has its report already; the plan's outputs are still
/// written, for the steps that read them.
///
/// # Errors
/// When stdout, stderr, the outputs file or the summary cannot be written.
pub(crate) fn report_build(
    ctx: &RunContext,
    plan: &Plan,
    images: &Option<Vec<ImageResult>>,
    rollouts: Option<&[RolloutResult]>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), Error> {
    let Some(images) = images else {
        return write_plan_files(ctx, plan, stderr);
    };
    print_build(ctx, plan, images, rollouts, stdout)?;
    let Some(a) = &ctx.action else {
        for message in failures(images, rollouts) {
            writeln!(stderr, "error: {}", one_line(&message)).map_err(write_err("stderr"))?;
        }
        return Ok(());
    };
    // Every annotation of the run at once, so GitHub's 10 per level hold for all of them.
    let config_text = std::fs::read_to_string(&ctx.config_path).unwrap_or_default();
    write_annotations(ctx, plan, images, rollouts, &config_text, stderr)?;
    if let Some(path) = &a.output {
        outputs::append(path, &build_outputs(plan, &ctx.config, images, rollouts))
            .map_err(write_err(&path.display().to_string()))?;
    }
    if let Some(path) = &a.summary {
        summary::append(
            path,
            &summary::render(plan, &ctx.config, Some(images), rollouts),
        )
        .map_err(write_err(&path.display().to_string()))?;
    }
    Ok(())
}

/// After images were pushed or deployed, a report that could not be written (stdout, the
/// outputs file, the summary) is told on stderr with what the run did, since the exit code
/// (1) alone would hide a deploy that happened. Best effort: stderr is the last channel.
pub(crate) fn report_unwritten(
    ctx: &RunContext,
    error: &Error,
    images: Option<&[ImageResult]>,
    rollouts: Option<&[RolloutResult]>,
    stderr: &mut dyn Write,
) {
    let message = format!(
        "{}; the run's report follows on stderr",
        crate::error::render_chain(error)
    );
    if ctx.in_action() {
        let annotation = crate::report::commands::Annotation::new(
            crate::report::commands::Level::Error,
            message,
        );
        let _ = writeln!(stderr, "{annotation}");
    } else {
        let _ = writeln!(stderr, "error: {}", one_line(&message));
    }
    let style = text::Style::new(false);
    let mut report = text::render_images(images.unwrap_or_default(), style);
    if let Some(r) = rollouts {
        report.push_str(&text::render_rollouts(r, style));
    }
    let _ = write!(stderr, "{}", crate::report::commands::inert_lines(&report));
}

fn print_build(
    ctx: &RunContext,
    plan: &Plan,
    images: &[ImageResult],
    rollouts: Option<&[RolloutResult]>,
    stdout: &mut dyn Write,
) -> Result<(), Error> {
    let text = match ctx.format {
        Format::Json => {
            let report = BuildReport {
                plan,
                images,
                rollouts,
            };
            serde_json::to_string_pretty(&report).expect("a report serializes") + "\n"
        }
        Format::Text => {
            let style = text::Style::new(ctx.color);
            let mut out = text::render_plan(plan, style) + &text::render_images(images, style);
            if let Some(r) = rollouts {
                out.push_str(&text::render_rollouts(r, style));
            }
            out
        }
    };
    write!(stdout, "{text}").map_err(write_err("stdout"))
}

fn write_annotations(
    ctx: &RunContext,
    plan: &Plan,
    images: &[ImageResult],
    rollouts: Option<&[RolloutResult]>,
    config_text: &str,
    stderr: &mut dyn Write,
) -> Result<(), Error> {
    let Some(action) = &ctx.action else {
        return Ok(());
    };
    let config_path = ctx.config_arg.display().to_string();
    let mut found = annotations::run_findings(
        plan,
        images,
        rollouts,
        annotations::ConfigFile {
            path: &config_path,
            text: config_text,
        },
    );
    // Found relative to the run's folder; the runner reads them from the workspace root.
    for f in &mut found {
        if let Some(file) = f.annotation.file.as_mut() {
            *file = action.annotation_path(std::path::Path::new(file));
        }
        if let Some(hint) = crate::error::loopback_refused_hint(&f.annotation.message) {
            f.annotation.message = format!("{}\n{hint}", f.annotation.message);
        }
    }
    let found = found
        .into_iter()
        .chain(outputs::matrix_warning(plan).map(|w| annotations::Finding {
            subject: None,
            annotation: crate::report::commands::Annotation::new(
                crate::report::commands::Level::Warning,
                w,
            ),
        }));
    for a in annotations::within_limits(found.collect(), Some("see the job summary")) {
        writeln!(stderr, "{a}").map_err(write_err("stderr"))?;
    }
    Ok(())
}

/// One line per failed rollout, then per failed image, for stderr outside Actions.
fn failures(images: &[ImageResult], rollouts: Option<&[RolloutResult]>) -> Vec<String> {
    let failed_rollouts = rollouts
        .unwrap_or_default()
        .iter()
        .filter(|r| matches!(r.status, RolloutStatus::Failed | RolloutStatus::RolledBack))
        .map(|r| {
            format!(
                "{} ({}): {}",
                r.service,
                r.workload,
                r.reason.clone().unwrap_or_default()
            )
        });
    let failed_images = images
        .iter()
        .filter(|r| r.status == ImageStatus::Failed)
        .map(|r| format!("{}: {}", r.service, r.error.clone().unwrap_or_default()));
    failed_rollouts.chain(failed_images).collect()
}

/// The plan's outputs plus `images` (service to image by digest) and, for `ship`,
/// `deployed` and `failed` (service names).
fn build_outputs(
    plan: &Plan,
    config: &Config,
    images: &[ImageResult],
    rollouts: Option<&[RolloutResult]>,
) -> Vec<(String, String)> {
    let mut out = outputs::plan_outputs(plan, config);
    let map: BTreeMap<&str, &str> = images
        .iter()
        .filter_map(|r| r.image.as_deref().map(|i| (r.service.as_str(), i)))
        .collect();
    out.push((
        "images".into(),
        serde_json::to_string(&map).expect("strings serialize"),
    ));
    if let Some(r) = rollouts {
        let names = |pred: fn(&RolloutStatus) -> bool| {
            let mut v: Vec<&str> = r
                .iter()
                .filter(|x| pred(&x.status))
                .map(|x| x.service.as_str())
                .collect();
            v.dedup();
            serde_json::to_string(&v).expect("strings serialize")
        };
        out.push(("deployed".into(), names(|s| *s == RolloutStatus::Succeeded)));
        out.push((
            "failed".into(),
            names(|s| matches!(s, RolloutStatus::Failed | RolloutStatus::RolledBack)),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    fn images() -> Vec<ImageResult> {
        let registry = fixtures::Images {
            registry: "r.example/acme",
            digest: "sha256:abc",
            error: "no space left",
            ..Default::default()
        };
        vec![
            registry.of("cart", ImageStatus::Built),
            registry.of("email", ImageStatus::Failed),
        ]
    }

    #[test]
    fn outputs_name_each_image_and_each_rollout_outcome_once() {
        let plan = fixtures::plan(vec![fixtures::node("cart", &[("a", "b")], 0)], vec![], 1);
        let rollouts = [
            fixtures::rollout("cart", RolloutStatus::Succeeded, None, 1.0),
            fixtures::rollout("cart", RolloutStatus::Succeeded, None, 1.0),
            fixtures::rollout("pay", RolloutStatus::RolledBack, Some("crash"), 1.0),
        ];
        let config =
            crate::config::parse("services:\n  cart: {paths: [cart/**]}\n", "m.yml").unwrap();
        let out: BTreeMap<String, String> =
            build_outputs(&plan, &config, &images(), Some(&rollouts))
                .into_iter()
                .collect();
        assert_eq!(
            out["images"],
            r#"{"cart":"r.example/acme/cart@sha256:abc"}"#
        );
        assert_eq!(out["deployed"], r#"["cart"]"#);
        assert_eq!(out["failed"], r#"["pay"]"#);
        let build_only: BTreeMap<String, String> = build_outputs(&plan, &config, &images(), None)
            .into_iter()
            .collect();
        assert!(!build_only.contains_key("deployed"));
    }

    #[test]
    fn failures_list_rollouts_before_images() {
        let rollouts = [fixtures::rollout(
            "pay",
            RolloutStatus::Failed,
            Some("CrashLoopBackOff"),
            1.0,
        )];
        assert_eq!(
            failures(&images(), Some(&rollouts)),
            [
                "pay (deployment/shop/pay): CrashLoopBackOff",
                "email: no space left"
            ]
        );
    }
}
