//! Annotations that fit GitHub's limits. The runner turns only the first 10 errors, 10
//! warnings and 10 notices of a step into annotations (the rest stay in the log, unseen) and
//! cuts each message at 4,096 characters. So every would-be annotation of a run goes through
//! [`within_limits`] once: errors first, one per service when there are too many, and the
//! overflow summarized in the last one of its level.
//!
//! Pure: findings in, annotations out. [`run_findings`] and [`config_findings`] turn a run's
//! results and a config's problems into findings, anchored to the config, Dockerfile or
//! manifest line where there is one.

use crate::config::{self, Problem};
use crate::deploy::{RolloutResult, RolloutStatus};
use crate::image::push::{ImageResult, ImageStatus};
use crate::plan::Plan;
use crate::report::commands::{Annotation, Level};

/// Annotations of one level the runner shows per step.
pub const PER_LEVEL: usize = 10;
/// Longest message kept, in characters; the runner cuts at 4,096, we cut first and say so.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// A would-be annotation and what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The service (or config entry) it is about; `None` for the run as a whole. When a level
    /// holds too many findings, those of one subject become one annotation.
    pub subject: Option<String>,
    pub annotation: Annotation,
}

/// The config file as read, to anchor annotations to its lines.
#[derive(Debug, Clone, Copy)]
pub struct ConfigFile<'a> {
    /// As printed in annotations (the runner makes workspace paths relative).
    pub path: &'a str,
    /// Its text; empty when it could not be read (annotations then name the file only).
    pub text: &'a str,
}

impl ConfigFile<'_> {
    /// An annotation on the line of `keys` (and `value` under it), or on the file.
    fn anchored(&self, level: Level, keys: &[&str], value: Option<&str>) -> Annotation {
        Annotation {
            level,
            file: Some(self.path.to_string()),
            line: config::locate(self.text, keys, value),
            title: None,
            message: String::new(),
        }
    }
}

/// The config's problems, each on its line.
pub fn config_findings(file: &str, problems: &[Problem]) -> Vec<Finding> {
    problems
        .iter()
        .map(|p| Finding {
            subject: config_subject(&p.key),
            annotation: Annotation {
                level: Level::Error,
                file: Some(file.to_string()),
                line: p.line,
                title: Some("monoship config".into()),
                message: p.to_string(),
            },
        })
        .collect()
}

/// `services.cart.depends_on` is about `services.cart`. A dotted service name is cut at its
/// first dot, which only groups a little more eagerly.
fn config_subject(key: &str) -> Option<String> {
    let mut parts = key.splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some(top), Some(name)) if !top.is_empty() => Some(format!("{top}.{name}")),
        (Some(top), None) if !top.is_empty() => Some(top.to_string()),
        _ => None,
    }
}

/// Everything a build or ship run has to say in annotations: failed builds on the Dockerfile
/// line that failed (else the service's config entry), failed rollouts on their manifest
/// document or the service's `deploy` entry, skipped rollouts as notices, and the plan's
/// warnings.
pub fn run_findings(
    plan: &Plan,
    images: &[ImageResult],
    rollouts: Option<&[RolloutResult]>,
    config: ConfigFile<'_>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in images.iter().filter(|r| r.status == ImageStatus::Failed) {
        let mut a = match &r.failed_at {
            Some((file, line)) => Annotation {
                level: Level::Error,
                file: Some(file.clone()),
                line: Some(*line),
                title: None,
                message: String::new(),
            },
            None => config.anchored(Level::Error, &["services", &r.service], None),
        };
        a.title = Some(format!("{} failed to build", r.service));
        a.message = format!("{}: {}", r.service, r.error.as_deref().unwrap_or_default());
        out.push(Finding {
            subject: Some(r.service.clone()),
            annotation: a,
        });
    }
    for r in rollouts.unwrap_or_default() {
        let (level, title) = match r.status {
            RolloutStatus::Failed | RolloutStatus::RolledBack => {
                (Level::Error, format!("{} failed to deploy", r.service))
            }
            RolloutStatus::Skipped => (Level::Notice, format!("{} was not deployed", r.service)),
            RolloutStatus::Succeeded => continue,
        };
        // A manifest's workload on its document; else the config's `deploy` entry, whose
        // name is what `kind/namespace/name` ends with.
        let mut a = match &r.source {
            Some((file, line)) => Annotation {
                level,
                file: Some(file.clone()),
                line: Some(*line),
                title: None,
                message: String::new(),
            },
            None => {
                let name = r.workload.rsplit('/').next().filter(|n| !n.is_empty());
                config.anchored(level, &["services", &r.service, "deploy"], name)
            }
        };
        a.title = Some(title);
        a.message = format!(
            "{} ({}): {}",
            r.service,
            r.workload,
            r.reason.as_deref().unwrap_or(r.status.as_str())
        );
        out.push(Finding {
            subject: Some(r.service.clone()),
            annotation: a,
        });
    }
    out.extend(plan.warnings.iter().map(|w| Finding {
        subject: None,
        annotation: Annotation::new(Level::Warning, w.clone()),
    }));
    out
}

/// At most [`PER_LEVEL`] annotations of each level, errors first, then warnings, then
/// notices, each level in the order found. A level with too many findings first merges those
/// of one subject into one annotation (anchored where the first was); if that is still too
/// many, the last annotation of the level says how many more there are (`see`, e.g. "see the
/// job summary", says where to look) and lists them, one line each. Messages are cut at
/// [`MAX_MESSAGE_CHARS`].
pub fn within_limits(findings: Vec<Finding>, see: Option<&str>) -> Vec<Annotation> {
    let mut out = Vec::new();
    for level in [Level::Error, Level::Warning, Level::Notice] {
        let mut mine: Vec<Finding> = findings
            .iter()
            .filter(|f| f.annotation.level == level)
            .cloned()
            .collect();
        if mine.len() > PER_LEVEL {
            mine = merge_by_subject(mine);
        }
        let mut kept: Vec<Annotation> = mine.iter().map(|f| f.annotation.clone()).collect();
        if kept.len() > PER_LEVEL {
            let rest = kept.split_off(PER_LEVEL - 1);
            kept.push(overflow(level, &rest, see));
        }
        for mut a in kept {
            a.message = truncate(&a.message, MAX_MESSAGE_CHARS);
            out.push(a);
        }
    }
    out
}

/// One finding per subject, in the order subjects first appear; findings without a subject
/// stay as they are.
fn merge_by_subject(findings: Vec<Finding>) -> Vec<Finding> {
    let mut merged: Vec<(Finding, Vec<Annotation>)> = Vec::new();
    for f in findings {
        let same = f.subject.as_ref().and_then(|s| {
            merged
                .iter_mut()
                .find(|(m, _)| m.subject.as_ref() == Some(s))
        });
        match same {
            Some((_, parts)) => parts.push(f.annotation),
            None => {
                let first = f.annotation.clone();
                merged.push((f, vec![first]));
            }
        }
    }
    merged
        .into_iter()
        .map(|(mut f, parts)| {
            if parts.len() > 1 {
                let subject = f.subject.clone().unwrap_or_default();
                let anchor = parts.iter().find(|a| a.file.is_some()).unwrap_or(&parts[0]);
                let mut message = format!("{} problems with {subject}:", parts.len());
                for p in &parts {
                    message.push_str("\n- ");
                    if p.file != anchor.file || p.line != anchor.line {
                        if let Some(at) = location(p) {
                            message.push_str(&format!("{at}: "));
                        }
                    }
                    message.push_str(&p.message);
                }
                let same_title = parts.iter().all(|p| p.title == parts[0].title);
                f.annotation = Annotation {
                    level: anchor.level,
                    file: anchor.file.clone(),
                    line: anchor.line,
                    title: if same_title {
                        parts[0].title.clone()
                    } else {
                        Some(subject)
                    },
                    message,
                };
            }
            f
        })
        .collect()
}

fn location(a: &Annotation) -> Option<String> {
    match (&a.file, a.line) {
        (Some(f), Some(l)) => Some(format!("{f}:{l}")),
        (Some(f), None) => Some(f.clone()),
        (None, Some(l)) => Some(format!("line {l}")),
        (None, None) => None,
    }
}

/// The last annotation of a level: how many more, and one line about each.
fn overflow(level: Level, rest: &[Annotation], see: Option<&str>) -> Annotation {
    let kind = match (level, rest.len()) {
        (Level::Error, 1) => "error",
        (Level::Error, _) => "errors",
        (Level::Warning, 1) => "warning",
        (Level::Warning, _) => "warnings",
        (Level::Notice, 1) => "notice",
        (Level::Notice, _) => "notices",
    };
    let mut message = match see {
        Some(see) => format!("and {} more {kind}; {see}:", rest.len()),
        None => format!("and {} more {kind}:", rest.len()),
    };
    for a in rest {
        let first = a.message.lines().next().unwrap_or_default();
        message.push_str("\n- ");
        match (&a.title, location(a)) {
            (Some(t), Some(at)) => message.push_str(&format!("{t} ({at}): {first}")),
            (Some(t), None) => message.push_str(&format!("{t}: {first}")),
            (None, Some(at)) => message.push_str(&format!("{at}: {first}")),
            (None, None) => message.push_str(first),
        }
        if message.chars().count() > MAX_MESSAGE_CHARS {
            break;
        }
    }
    Annotation {
        level,
        file: None,
        line: None,
        title: Some(format!("monoship: {} more {kind}", rest.len())),
        message,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::ChangeSource;
    use crate::report::fixtures::{self, plan, Images};

    fn error(subject: &str, line: usize) -> Finding {
        Finding {
            subject: Some(subject.into()),
            annotation: Annotation {
                level: Level::Error,
                file: Some("m.yml".into()),
                line: Some(line),
                title: Some(format!("{subject} failed")),
                message: format!("{subject}: broke at {line}"),
            },
        }
    }

    fn warning(message: &str) -> Finding {
        Finding {
            subject: None,
            annotation: Annotation::new(Level::Warning, message),
        }
    }

    fn count(all: &[Annotation], level: Level) -> usize {
        all.iter().filter(|a| a.level == level).count()
    }

    #[test]
    fn few_findings_pass_unchanged_with_errors_first() {
        let findings = vec![
            warning("w1"),
            error("cart", 3),
            warning("w2"),
            error("cart", 9),
        ];
        let out = within_limits(findings.clone(), Some("see the job summary"));
        let want: Vec<Annotation> = [1, 3, 0, 2]
            .into_iter()
            .map(|i| findings[i].annotation.clone())
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn more_than_ten_errors_become_ten_with_the_overflow_last() {
        let findings: Vec<Finding> = (0..25)
            .map(|i| error(&format!("svc-{i:02}"), i + 1))
            .chain([warning("shallow clone")])
            .collect();
        let out = within_limits(findings, Some("see the job summary"));
        assert_eq!(count(&out, Level::Error), PER_LEVEL);
        assert_eq!(count(&out, Level::Warning), 1);
        assert_eq!(out[0].message, "svc-00: broke at 1");
        assert_eq!(out[8].message, "svc-08: broke at 9");
        let last = &out[9];
        assert_eq!(last.level, Level::Error);
        assert_eq!(last.file, None);
        assert_eq!(last.title.as_deref(), Some("monoship: 16 more errors"));
        assert!(
            last.message
                .starts_with("and 16 more errors; see the job summary:\n- svc-09 failed (m.yml:10): svc-09: broke at 10\n"),
            "{}",
            last.message
        );
        assert!(
            last.message.ends_with("svc-24: broke at 25"),
            "{}",
            last.message
        );
        assert_eq!(out[10].level, Level::Warning, "warnings come after errors");
    }

    #[test]
    fn too_many_findings_merge_per_service_before_overflowing() {
        // 3 services x 5 rollout failures: 15 errors become 3, each listing its 5.
        let findings: Vec<Finding> = ["cart", "checkout", "email"]
            .iter()
            .flat_map(|s| (1..=5).map(move |l| error(s, l * 10)))
            .collect();
        let out = within_limits(findings, None);
        assert_eq!(out.len(), 3);
        let cart = &out[0];
        assert_eq!((cart.file.as_deref(), cart.line), (Some("m.yml"), Some(10)));
        assert_eq!(cart.title.as_deref(), Some("cart failed"));
        assert_eq!(
            cart.message,
            "5 problems with cart:\n- cart: broke at 10\n- m.yml:20: cart: broke at 20\n- m.yml:30: cart: broke at 30\n- m.yml:40: cart: broke at 40\n- m.yml:50: cart: broke at 50"
        );
    }

    #[test]
    fn every_level_is_capped_and_messages_are_cut() {
        let mut findings: Vec<Finding> = (0..30).map(|i| warning(&format!("w{i}"))).collect();
        findings.extend((0..12).map(|i| Finding {
            subject: None,
            annotation: Annotation::new(Level::Notice, "n".repeat(5000 + i)),
        }));
        let out = within_limits(findings, None);
        assert_eq!(count(&out, Level::Warning), PER_LEVEL);
        assert_eq!(count(&out, Level::Notice), PER_LEVEL);
        assert!(out[9].message.starts_with("and 21 more warnings:\n- w9\n"));
        for a in &out {
            assert!(
                a.message.chars().count() <= MAX_MESSAGE_CHARS,
                "{}",
                a.message.len()
            );
        }
        assert!(out[10].message.ends_with('…'));
    }

    #[test]
    fn config_problems_are_grouped_by_their_entry() {
        let problems = vec![
            Problem {
                line: Some(7),
                column: None,
                key: "services.web.depends_on".into(),
                message: "unknown service or group `apii`".into(),
            },
            Problem {
                line: None,
                column: None,
                key: String::new(),
                message: "empty".into(),
            },
        ];
        let f = config_findings("c.yml", &problems);
        assert_eq!(f[0].subject.as_deref(), Some("services.web"));
        assert_eq!(
            f[0].annotation.to_string(),
            "::error file=c.yml,line=7,title=monoship config::services.web.depends_on: unknown service or group `apii`"
        );
        assert_eq!(f[1].subject, None);
    }

    #[test]
    fn run_findings_anchor_to_the_dockerfile_or_the_config() {
        let config_text = "services:\n  cart:\n    dockerfile: src/cart/Dockerfile\n    deploy:\n      - workload: deployment/cart\n  email:\n    deploy:\n      - workload: deployment/mailer\n";
        let failed = Images {
            seconds: 1.0,
            error: "the build failed",
            ..Images::default()
        };
        let rollout = |service: &str, status| {
            fixtures::rollout(service, status, Some("ImagePullBackOff"), 2.0)
        };
        let plan = Plan {
            base: None,
            head: "h".into(),
            source: ChangeSource::Forced,
            warnings: vec!["history was shallow".into()],
            ..plan(vec![], vec![], 0)
        };
        let images = [
            Images {
                failed_at: Some(("src/cart/Dockerfile", 3)),
                ..failed
            }
            .of("cart", ImageStatus::Failed),
            failed.of("email", ImageStatus::Failed),
        ];
        let rollouts = [
            RolloutResult {
                workload: "deployment/shop/mailer".into(),
                ..rollout("email", RolloutStatus::RolledBack)
            },
            rollout("cart", RolloutStatus::Skipped),
            rollout("cart", RolloutStatus::Succeeded),
            RolloutResult {
                source: Some(("deploy/web/app.yaml".into(), 12)),
                ..rollout("web", RolloutStatus::Failed)
            },
        ];
        let found = run_findings(
            &plan,
            &images,
            Some(&rollouts),
            ConfigFile {
                path: "/w/.github/monoship.yml",
                text: config_text,
            },
        );
        let lines: Vec<String> = within_limits(found, None)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "::error file=src/cart/Dockerfile,line=3,title=cart failed to build::cart: the build failed",
                "::error file=/w/.github/monoship.yml,line=6,title=email failed to build::email: the build failed",
                "::error file=/w/.github/monoship.yml,line=8,title=email failed to deploy::email (deployment/shop/mailer): ImagePullBackOff",
                "::error file=deploy/web/app.yaml,line=12,title=web failed to deploy::web (deployment/shop/web): ImagePullBackOff",
                "::warning::history was shallow",
                "::notice file=/w/.github/monoship.yml,line=5,title=cart was not deployed::cart (deployment/shop/cart): ImagePullBackOff",
            ]
        );
    }
}
