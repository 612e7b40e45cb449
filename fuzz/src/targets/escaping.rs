//! What monoship writes for the runner to read, read back with [`crate::runner`]:
//!
//! - `escape_data` / `escape_property` round-trip through the runner's unescaping and leave no
//!   line break (and, for properties, no `:` or `,`);
//! - an annotation, `::add-mask::` or `::group::` line is one log line, one command, with the
//!   message, file and title given back exactly (the runner trims trailing whitespace off the
//!   last property, and drops empty ones: that is allowed for);
//! - `$GITHUB_OUTPUT` text parses to exactly the outputs written, with the runner's reader and
//!   with monoship's own;
//! - the plan printed as text (which the runner scans for commands too) holds no command at all,
//!   whatever the file names, rules and warnings; the step summary escapes every `<`.

use proptest::collection::vec;
use proptest::prelude::*;

use monoship::config::{Config, ServiceConfig};
use monoship::detect::ChangeSource;
use monoship::plan::{NodePlan, Plan, Reason};
use monoship::report::commands::{self, Annotation, Level};
use monoship::report::{outputs, summary, text};

use super::{spicy_string, SPICY_WORDS};
use crate::harness::{self, Budget, Outcome};
use crate::runner;

#[derive(Debug, Clone)]
pub enum Input {
    Text(String),
    Annotation {
        level: u8,
        file: Option<String>,
        line: Option<usize>,
        title: Option<String>,
        message: String,
    },
    Mask(String),
    Group(String),
    Outputs(Vec<(String, String)>),
    Plan {
        services: Vec<Service>,
        warnings: Vec<String>,
        color: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub reasons: Vec<(String, String)>,
    pub more: usize,
    /// Indexes (modulo the number of services) of services this one depends on.
    pub depends_on: Vec<usize>,
}

/// A name the config accepts: it becomes an output name.
pub fn valid_name() -> impl Strategy<Value = String> + Clone {
    let first = prop_oneof![
        proptest::char::range('a', 'z'),
        proptest::char::range('A', 'Z'),
        Just('_'),
    ];
    let rest = prop_oneof![
        proptest::char::range('a', 'z'),
        proptest::char::range('0', '9'),
        Just('-'),
        Just('_'),
    ];
    (first, vec(rest, 0..12)).prop_map(|(f, r)| std::iter::once(f).chain(r).collect())
}

fn rule() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        spicy_string(8).prop_map(|s| format!("Dockerfile COPY {s}")),
        spicy_string(8).prop_map(|s| format!("paths: {s}")),
        valid_name().prop_map(|n| format!("depends_on {n}")),
        Just("ignore file".to_string()),
        spicy_string(8),
    ]
}

fn path() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => spicy_string(10),
        1 => proptest::sample::select(&SPICY_WORDS[..]).prop_map(|w| format!("{w}set-output name=x::y")),
    ]
}

pub fn strategy() -> impl Strategy<Value = Input> {
    let annotation = (
        0u8..3,
        proptest::option::of(spicy_string(12)),
        proptest::option::of(0usize..100_000),
        proptest::option::of(spicy_string(8)),
        spicy_string(16),
    )
        .prop_map(|(level, file, line, title, message)| Input::Annotation {
            level,
            file,
            line,
            title,
            message,
        });
    let service = (
        valid_name(),
        vec((path(), rule()), 0..6),
        0usize..3,
        vec(any::<usize>(), 0..3),
    )
        .prop_map(|(name, reasons, more, depends_on)| Service {
            name,
            reasons,
            more,
            depends_on,
        });
    prop_oneof![
        spicy_string(24).prop_map(Input::Text),
        annotation,
        spicy_string(16).prop_map(Input::Mask),
        spicy_string(16).prop_map(Input::Group),
        vec((valid_name(), spicy_string(16)), 0..6).prop_map(Input::Outputs),
        (
            vec(service, 1..5),
            vec(spicy_string(10), 0..3),
            any::<bool>()
        )
            .prop_map(|(services, warnings, color)| Input::Plan {
                services,
                warnings,
                color
            }),
    ]
}

pub fn run(budget: &Budget) -> Outcome {
    harness::run("escaping", strategy(), check, budget)
}

fn one_command(rendered: &str) -> Result<runner::Command, String> {
    let lines = runner::log_lines(rendered);
    if lines.len() != 1 {
        return Err(format!(
            "{rendered:?} is {} log lines, not one",
            lines.len()
        ));
    }
    runner::parse_command(lines[0]).ok_or_else(|| format!("{rendered:?} is not a command"))
}

/// What the runner gives back for a property written with `escape_property`: it trims the end
/// of the last property, and drops a property whose value is empty.
fn expected_property(value: Option<&str>, last: bool) -> Option<String> {
    let escaped = commands::escape_property(value?);
    let escaped = if last { escaped.trim_end() } else { &escaped };
    (!escaped.is_empty()).then(|| runner::unescape_property(escaped))
}

pub fn check(input: &Input) -> Result<(), String> {
    match input {
        Input::Text(s) => {
            let data = commands::escape_data(s);
            if data.contains(['\r', '\n']) {
                return Err(format!("escape_data left a line break: {data:?}"));
            }
            if runner::unescape_data(&data) != *s {
                return Err(format!("escape_data does not round-trip: {data:?}"));
            }
            let prop = commands::escape_property(s);
            if prop.contains(['\r', '\n', ':', ',']) {
                return Err(format!("escape_property left a separator: {prop:?}"));
            }
            if runner::unescape_property(&prop) != *s {
                return Err(format!("escape_property does not round-trip: {prop:?}"));
            }
            let line = commands::one_line(s);
            if runner::log_lines(&line).len() > 1 || line.contains(['\r', '\n']) {
                return Err(format!("one_line is several lines: {line:?}"));
            }
            // Printed at the start of a line, indented or not, it is still no command.
            for printed in [line.clone(), format!("  {line}"), format!("x {line}")] {
                if let Some((_, c)) = runner::commands(&printed).into_iter().next() {
                    return Err(format!(
                        "one_line text {printed:?} is a `{}` command",
                        c.name
                    ));
                }
            }
            let cell = summary::cell(s);
            if cell.contains(['<', '>', '|', '`', '\r', '\n']) {
                return Err(format!("summary cell left markup: {cell:?}"));
            }
            Ok(())
        }
        Input::Annotation {
            level,
            file,
            line,
            title,
            message,
        } => {
            let (level, name) = match level {
                0 => (Level::Error, "error"),
                1 => (Level::Warning, "warning"),
                _ => (Level::Notice, "notice"),
            };
            let a = Annotation {
                level,
                file: file.clone(),
                line: *line,
                title: title.clone(),
                message: message.clone(),
            };
            let cmd = one_command(&a.to_string())?;
            let want_file = expected_property(file.as_deref(), line.is_none() && title.is_none());
            let want_title = expected_property(title.as_deref(), true);
            let got = (
                cmd.name.as_str(),
                cmd.property("file").map(str::to_string),
                cmd.property("line").map(str::to_string),
                cmd.property("title").map(str::to_string),
                cmd.data.as_str(),
                cmd.properties.len(),
            );
            let want_count = [want_file.is_some(), line.is_some(), want_title.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            let want = (
                name,
                want_file,
                line.map(|l| l.to_string()),
                want_title,
                message.as_str(),
                want_count,
            );
            if got != want {
                return Err(format!("{a} reads back as {got:?}, not {want:?}"));
            }
            Ok(())
        }
        Input::Mask(secret) => {
            let cmd = one_command(&commands::add_mask(secret))?;
            if cmd.name != "add-mask" || cmd.data != *secret {
                return Err(format!("mask reads back as {cmd:?}"));
            }
            Ok(())
        }
        Input::Group(title) => {
            let cmd = one_command(&commands::group(title))?;
            if cmd.name != "group" || cmd.data != *title {
                return Err(format!("group reads back as {cmd:?}"));
            }
            Ok(())
        }
        Input::Outputs(pairs) => {
            let delimiter = outputs::random_delimiter();
            let text = outputs::render(pairs, &delimiter);
            let read = runner::parse_file_command(&text)
                .map_err(|e| format!("the runner rejects {text:?}: {e}"))?;
            if read != *pairs {
                return Err(format!("{text:?} reads back as {read:?}"));
            }
            let own = outputs::parse(&text);
            if own != *pairs {
                return Err(format!("monoship's parser reads {text:?} as {own:?}"));
            }
            Ok(())
        }
        Input::Plan {
            services,
            warnings,
            color,
        } => {
            let (plan, config) = plan_of(services, warnings);
            let printed = text::render_plan(&plan, text::Style::new(*color));
            if let Some((i, cmd)) = runner::commands(&printed).into_iter().next() {
                let line = runner::log_lines(&printed)[i];
                return Err(format!(
                    "the plan text forges a `{}` command on line {}: {line:?}",
                    cmd.name,
                    i + 1
                ));
            }
            for w in warnings {
                let cmd = one_command(&Annotation::new(Level::Warning, w.clone()).to_string())?;
                if cmd.data != *w {
                    return Err(format!("warning {w:?} reads back as {:?}", cmd.data));
                }
            }
            let md = summary::render_plan(&plan, &config);
            if let Some(tag) = raw_markup(&md) {
                return Err(format!("the summary has raw markup {tag:?}: {md:?}"));
            }
            for s in &plan.services {
                let start = format!("| {} |", summary::cell(&s.name));
                let rows = md.lines().filter(|l| l.starts_with(&start)).count();
                if rows != 1 {
                    return Err(format!("{} has {rows} summary rows: {md:?}", s.name));
                }
            }
            Ok(())
        }
    }
}

/// Tags monoship writes into the summary itself.
const OWN_TAGS: [&str; 10] = [
    "<code>",
    "</code>",
    "<br>",
    "<br/>",
    "<details>",
    "</details>",
    "<summary>",
    "</summary>",
    "<sub>",
    "</sub>",
];

/// A `<` that starts an HTML tag, comment or declaration monoship did not write.
fn raw_markup(md: &str) -> Option<&str> {
    md.match_indices('<').map(|(i, _)| &md[i..]).find(|rest| {
        let starts_tag = rest[1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'));
        starts_tag && !OWN_TAGS.iter().any(|t| rest.starts_with(t))
    })
}

fn plan_of(services: &[Service], warnings: &[String]) -> (Plan, Config) {
    let mut nodes: Vec<NodePlan> = services
        .iter()
        .map(|s| NodePlan {
            name: s.name.clone(),
            changed: !s.reasons.is_empty(),
            reasons: s
                .reasons
                .iter()
                .map(|(path, rule)| Reason {
                    path: path.clone(),
                    rule: rule.clone(),
                })
                .collect(),
            more_reasons: s.more,
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|a, b| a.name == b.name);
    let mut config = Config::default();
    for s in services {
        let depends_on = s
            .depends_on
            .iter()
            .map(|i| nodes[i % nodes.len()].name.clone())
            .filter(|d| *d != s.name)
            .collect();
        config.services.insert(
            s.name.clone(),
            ServiceConfig {
                depends_on,
                ..ServiceConfig::default()
            },
        );
    }
    let plan = Plan {
        base: Some("a".repeat(40)),
        head: "b".repeat(40),
        source: ChangeSource::Git,
        changed: nodes
            .iter()
            .filter(|n| n.changed)
            .map(|n| n.name.clone())
            .collect(),
        services: nodes,
        groups: vec![],
        files: services.iter().map(|s| s.reasons.len()).sum(),
        warnings: warnings.to_vec(),
    };
    (plan, config)
}
