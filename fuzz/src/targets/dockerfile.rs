//! The Dockerfile reader, `monoship::plan::dockerfile::read_build_inputs`.
//!
//! Inputs: Dockerfiles built from instructions (every `COPY`/`ADD` flag, JSON and shell forms,
//! variables in all their spellings, `RUN --mount`, heredocs, parser directives, continuations,
//! CRLF), the same with a few characters edited, and unstructured text; build args too.
//!
//! Properties: no panic; every reported line is within the file; every source glob (and the
//! `/**` the planner adds) and every exclude compiles, so the planner never stops on them; no
//! source climbs out of the context with `..`; a heredoc body is never read as instructions;
//! and a `COPY` of a known path, written any way Docker accepts (`./`, a leading `/`, globs
//! that match it, `$VAR`s with defaults, build args or unknown values, JSON form, flags), is
//! covered by the inputs found: the file changing would rebuild the service.

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::prelude::*;

use monoship::plan::dockerfile::{read_base_images, read_build_inputs, BuildInputs};

use super::{edits, line_count, mutate, spicy_string};
use crate::harness::{self, Budget, Outcome};

/// Written in a heredoc body; no source may mention it.
const BODY_MARKER: &str = "heredoc-body-marker";

#[derive(Debug, Clone)]
pub enum Input {
    /// Anything: properties that hold for every text.
    Text {
        text: String,
        build_args: BTreeMap<String, String>,
        /// Generated, not edited, no continuations: heredoc bodies must stay unread.
        pristine: bool,
    },
    /// A Dockerfile that copies `path` (written as `source`) into the image.
    Copy {
        text: String,
        build_args: BTreeMap<String, String>,
        path: String,
    },
}

fn source_word() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        6 => proptest::sample::select(&[
            ".", "./", "..", "../x", "src", "src/", "src/*.go", "*", "?", "[a-c]*", "[!x]",
            "[^x]", "[z-a]", "[", "\\*", "a\\", "${V}", "$V", "${V:-d}", "${V:+p}", "${V-d}",
            "${V+p}", "${UNSET}/x", "${TARGETARCH}/bin", "${TARGETPLATFORM}", "${V", "$", "/abs",
            "http://example.invalid/f", "git@example.invalid:a/b", "<<EOF", "\"quoted dir\"",
            "'single'", "**", "pb/**/x", "{a,b}", "~", "%", ":", "a,b", "./a/./b/../c",
            "/./pivot/x", "a/./b",
        ][..]).prop_map(String::from),
        1 => spicy_string(3),
    ]
}

fn flag() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        6 => proptest::sample::select(&[
            "--from=build", "--from=0", "--chown=1:1", "--chmod=755", "--link", "--parents",
            "--exclude=*.md", "--exclude=", "--exclude=[", "--exclude=${V}", "--keep-git-dir=true",
            "--checksum=sha256:00", "--unknown", "--from", "--", "--link=false",
        ][..]).prop_map(String::from),
        1 => spicy_string(2).prop_map(|s| format!("--{s}")),
    ]
}

fn instruction() -> impl Strategy<Value = String> + Clone {
    let copy = (
        proptest::sample::select(&["COPY", "ADD", "copy", "Add"][..]),
        vec(flag(), 0..3),
        vec(source_word(), 1..4),
        any::<bool>(),
    )
        .prop_map(|(kw, flags, sources, json)| {
            if json {
                let list: Vec<String> = sources
                    .iter()
                    .chain(std::iter::once(&"/dst/".to_string()))
                    .map(|s| serde_json::to_string(s).expect("a string serializes"))
                    .collect();
                format!("{kw} {} [{}]", flags.join(" "), list.join(", "))
            } else {
                format!("{kw} {} {} /dst/", flags.join(" "), sources.join(" "))
            }
        });
    let mount =
        source_word().prop_map(|s| format!("RUN --mount=type=bind,source={s},target=/m make"));
    prop_oneof![
        2 => proptest::sample::select(&[
            "FROM scratch", "FROM alpine AS build", "FROM build", "FROM --platform=$BUILDPLATFORM base as b2",
            "FROM ${BASE}", "from b2", "ARG V", "ARG V=src", "ARG V=", "ARG V1=a V2", "ARG TARGETARCH",
            "ARG BASE=alpine", "ENV V=lib", "ENV V lib", "ENV A=\"x y\" B=z", "ENV V=${V}/sub",
            "ENV", "RUN echo hi", "RUN --mount=type=bind,target=/ctx true",
            "RUN --mount=type=bind,from=build,source=x,target=/y true", "RUN --mount=type=cache,target=/c true",
            "RUN --mount=type=secret,id=a cat", "ONBUILD COPY . /x", "WORKDIR /app", "LABEL a=b",
            "# comment", "", " \t", "COPY", "COPY onlyone", "ADD [\"broken\", ", "COPY [\"a\",\"/b\"] extra",
            "COPY <<EOF /x\nbody\nEOF", "RUN <<-EOT\n\tbody\n\tEOT", "RUN <<X", "COPY <<A <<B /d\na\nA\nb\nB",
            "RUN <<EOF\nCOPY heredoc-body-marker /x\nADD heredoc-body-marker /y\nEOF",
        ][..]).prop_map(String::from),
        4 => copy,
        1 => mount,
        1 => spicy_string(8),
    ]
}

fn directives() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => Just(String::new()),
        1 => Just("# escape=`\n".to_string()),
        1 => Just("# syntax=docker/dockerfile:1\n# escape=\\\n".to_string()),
        1 => Just("\u{feff}# ESCAPE = `\n".to_string()),
        1 => Just("#escape=x\n".to_string()),
    ]
}

fn build_args() -> impl Strategy<Value = BTreeMap<String, String>> + Clone {
    proptest::collection::btree_map(
        proptest::sample::select(&["V", "V1", "V2", "BASE", "TARGETARCH", "UNSET"][..])
            .prop_map(String::from),
        prop_oneof![
            Just("src".to_string()),
            Just(String::new()),
            spicy_string(3)
        ],
        0..3,
    )
}

fn free_text() -> impl Strategy<Value = Input> {
    let lines = vec((instruction(), any::<bool>()), 0..10);
    (
        directives(),
        lines,
        prop_oneof![Just("\n"), Just("\r\n")],
        build_args(),
        edits(),
    )
        .prop_map(|(directives, lines, eol, build_args, e)| {
            let continuation = if directives.contains('`') { "`" } else { "\\" };
            let mut text = directives;
            let mut joined = false;
            for (line, cont) in lines {
                text.push_str(&line);
                if cont {
                    text.push(' ');
                    text.push_str(continuation);
                    joined = true;
                }
                text.push('\n');
            }
            // Any line ending in an escape character continues into the next one, which can
            // turn `RUN <<EOF` into something else; then the body is read, as Docker would.
            let continued = text.lines().any(|l| l.trim_end().ends_with(['\\', '`']));
            let pristine = e.is_empty() && !joined && !continued;
            let text = mutate(text.replace('\n', eol), e);
            Input::Text {
                text,
                build_args,
                pristine,
            }
        })
}

fn segment() -> impl Strategy<Value = String> + Clone {
    vec(
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            2 => proptest::char::range('0', '9'),
            1 => Just('.'),
            1 => Just('-'),
            1 => Just('_'),
        ],
        1..6,
    )
    .prop_map(|c| c.into_iter().collect::<String>())
    .prop_filter("not . or ..", |s| s != "." && s != "..")
}

/// How the known path is written in the `COPY`.
#[derive(Debug, Clone, Copy)]
enum Spelling {
    Plain,
    DotSlash,
    Rooted,
    TrailingSlash,
    Detour,
    Question,
    Star,
    Class,
    ArgDefault,
    BuildArg,
    ArgUnknown,
    Env,
    Json,
}

const SPELLINGS: [Spelling; 13] = [
    Spelling::Plain,
    Spelling::DotSlash,
    Spelling::Rooted,
    Spelling::TrailingSlash,
    Spelling::Detour,
    Spelling::Question,
    Spelling::Star,
    Spelling::Class,
    Spelling::ArgDefault,
    Spelling::BuildArg,
    Spelling::ArgUnknown,
    Spelling::Env,
    Spelling::Json,
];

fn covered_copy() -> impl Strategy<Value = Input> {
    let preamble = vec(
        proptest::sample::select(
            &[
                "RUN echo hi",
                "LABEL x=y",
                "# comment",
                "WORKDIR /w",
                "ENV OTHER=1",
                "ARG UNRELATED=z",
                "FROM scratch AS later",
                "COPY --from=build /a /b",
                "RUN <<EOF\necho\nEOF",
                "",
            ][..],
        ),
        0..4,
    );
    (
        vec(segment(), 1..4),
        proptest::sample::select(&SPELLINGS[..]),
        preamble,
        proptest::sample::select(
            &["", "--chown=1:1 ", "--link ", "--chmod=644 ", "--parents "][..],
        ),
        proptest::sample::select(&["COPY", "ADD"][..]),
        any::<usize>(),
    )
        .prop_map(|(segments, spelling, preamble, flag, kw, pick)| {
            let path = segments.join("/");
            let first = &segments[0];
            let rest = segments[1..].join("/");
            let after = |head: &str| {
                if rest.is_empty() {
                    head.to_string()
                } else {
                    format!("{head}/{rest}")
                }
            };
            let mut build_args = BTreeMap::new();
            let mut decl = String::new();
            let source = match spelling {
                Spelling::Plain | Spelling::Json => path.clone(),
                Spelling::DotSlash => format!("./{path}"),
                Spelling::Rooted => format!("/{path}"),
                Spelling::TrailingSlash => format!("{path}/"),
                Spelling::Detour => format!("zz/../{path}"),
                Spelling::Question | Spelling::Star | Spelling::Class => {
                    let chars: Vec<char> = first.chars().collect();
                    let at = pick % chars.len();
                    let head: String = match spelling {
                        Spelling::Question => chars
                            .iter()
                            .enumerate()
                            .map(|(i, c)| if i == at { '?' } else { *c })
                            .collect(),
                        Spelling::Star => chars[..at].iter().collect::<String>() + "*",
                        _ if chars[at].is_ascii_alphanumeric() => format!(
                            "{}[{}]{}",
                            chars[..at].iter().collect::<String>(),
                            chars[at],
                            chars[at + 1..].iter().collect::<String>()
                        ),
                        _ => first.clone(),
                    };
                    after(&head)
                }
                Spelling::ArgDefault => {
                    decl = format!("ARG V={first}\n");
                    after("${V}")
                }
                Spelling::BuildArg => {
                    decl = "ARG V=other\n".to_string();
                    build_args.insert("V".to_string(), first.clone());
                    after("$V")
                }
                Spelling::ArgUnknown => {
                    decl = "ARG V\n".to_string();
                    after("${V}")
                }
                Spelling::Env => {
                    decl = format!("ENV V={first}\n");
                    after("${V:-nope}")
                }
            };
            let copy = match spelling {
                Spelling::Json => format!(
                    "{kw} {flag}[{}, \"/dst/\"]",
                    serde_json::to_string(&source).expect("serializes")
                ),
                _ => format!("{kw} {flag}{source} /dst/"),
            };
            let text = format!("FROM alpine\n{}\n{decl}{copy}\n", preamble.join("\n"));
            Input::Copy {
                text,
                build_args,
                path,
            }
        })
}

pub fn strategy() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => free_text(),
        3 => covered_copy(),
        1 => (spicy_string(40), build_args()).prop_map(|(text, build_args)| Input::Text { text, build_args, pristine: false }),
    ]
}

pub fn run(budget: &Budget) -> Outcome {
    harness::run("dockerfile", strategy(), check, budget)
}

pub fn check(input: &Input) -> Result<(), String> {
    let (text, build_args) = match input {
        Input::Text {
            text, build_args, ..
        }
        | Input::Copy {
            text, build_args, ..
        } => (text, build_args),
    };
    let inputs = read_build_inputs(text, build_args);
    let lines = line_count(text);
    // The base images reader walks the same instructions: it never panics either, and its
    // lines are the file's.
    let bases = read_base_images(text, build_args);
    let base_lines = bases.images.iter().map(|i| i.line);
    if let Some(line) = base_lines
        .chain(bases.unreadable.iter().map(|u| u.line))
        .find(|l| *l == 0 || *l > lines)
    {
        return Err(format!(
            "base image line {line} is outside the {lines}-line file"
        ));
    }
    for line in inputs
        .sources
        .iter()
        .map(|s| s.line)
        .chain(inputs.unreadable.iter().map(|u| u.line))
    {
        if line == 0 || line > lines {
            return Err(format!("line {line} is outside the {lines}-line file"));
        }
    }
    for s in &inputs.sources {
        let below = if s.pattern.is_empty() {
            "**".to_string()
        } else {
            format!("{}/**", s.pattern)
        };
        for p in [s.pattern.as_str(), below.as_str()]
            .into_iter()
            .chain(s.excludes.iter().map(String::as_str))
        {
            if let Err(e) = monoship::plan::glob::compile(p) {
                return Err(format!(
                    "line {}: glob {p:?} does not compile ({e}); the plan would stop",
                    s.line
                ));
            }
        }
        // `\..` is not `..` to Docker's path cleaning, so the pattern keeps a `..` segment that
        // no context path has: nothing matches it there, nor in monoship's translation.
        let escaped_dots = s.rule.contains("\\.");
        // `**` glued to `..` (`--parents **../x`) is a regular expression in Docker too that no
        // cleaned path matches; a literal `..` segment then matches nothing on either side.
        let glued_globstar = s.pattern.contains("**");
        if !glued_globstar
            && !escaped_dots
            && monoship::plan::glob::normalize(&s.pattern)
                .split('/')
                .any(|seg| seg == "..")
        {
            return Err(format!("source {:?} climbs out of the context", s.pattern));
        }
    }
    match input {
        Input::Text { pristine: true, .. } => {
            if let Some(s) = inputs
                .sources
                .iter()
                .find(|s| s.pattern.contains(BODY_MARKER))
            {
                return Err(format!("a heredoc body was read as an instruction: {s:?}"));
            }
        }
        Input::Copy { path, .. } if !covers(&inputs, path) => {
            return Err(format!("{path:?} is copied but not covered: {inputs:#?}"));
        }
        _ => {}
    }
    Ok(())
}

/// Whether a change to `path` counts for these inputs, as the planner decides it (without an
/// ignore file): an unreadable instruction covers everything; a source covers what its glob
/// matches and everything below, unless one of its excludes matches.
fn covers(inputs: &BuildInputs, path: &str) -> bool {
    if !inputs.unreadable.is_empty() {
        return true;
    }
    let prefixes: Vec<&str> = path
        .match_indices('/')
        .map(|(i, _)| &path[..i])
        .chain(std::iter::once(path))
        .collect();
    inputs.sources.iter().any(|s| {
        let hit = s.pattern.is_empty()
            || monoship::plan::glob::compile(&s.pattern).is_ok_and(|g| {
                let m = g.compile_matcher();
                prefixes.iter().any(|p| m.is_match(p))
            });
        let excluded = s.excludes.iter().any(|e| {
            monoship::plan::glob::compile(e).is_ok_and(|g| {
                let m = g.compile_matcher();
                prefixes.iter().any(|p| m.is_match(p))
            })
        });
        hit && !excluded
    })
}
