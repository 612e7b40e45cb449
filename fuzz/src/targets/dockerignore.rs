//! The `.dockerignore` reader and matcher, `monoship::plan::dockerignore::DockerIgnore`.
//!
//! Inputs: ignore files of generated patterns (exceptions, comments, classes, escapes, `**`,
//! leading `/`, `./` and `..`, CRLF, a byte-order mark), edited and unstructured ones, and paths
//! to ask about, non-ASCII ones included.
//!
//! Properties: no panic in `parse` or `is_excluded`; a rejected file names a line within it
//! and the pattern on that line. Against a small reference matcher written from Docker's rules
//! (a pattern becomes `^...$` with `*` = `[^/]*`, `?` = `[^/]` (one character: `é` is one), a
//! `**` segment = any folders;
//! a rule matches a path or any parent folder; the last matching rule wins):
//! - without `!` exceptions, monoship excludes exactly what the reference excludes;
//! - with exceptions, what monoship excludes the reference excludes too (excluding a file
//!   Docker sends to the build would hide a change: a missed rebuild).

use proptest::collection::vec;
use proptest::prelude::*;

use monoship::plan::dockerignore::DockerIgnore;

use super::{edits, line_count, mutate, spicy_string};
use crate::harness::{self, Budget, Outcome};

#[derive(Debug, Clone)]
pub enum Input {
    Free {
        text: String,
        paths: Vec<String>,
    },
    /// Patterns the reference matcher understands exactly, and paths over the same alphabet.
    Reference {
        rules: Vec<(bool, String)>,
        paths: Vec<String>,
    },
}

fn free_line() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => proptest::sample::select(&[
            "*.md", "!README.md", "**/*.go", "node_modules", "/abs", "./dot", "a/../b", "../up",
            "#comment", " # not a comment", "!", "! ", "!/", "[", "[a-", "[z-a]", "[]a]", "[^x]",
            "[!x]", "a\\", "\\*", "**", "a**", "**.md", "a/**/b", "dir/", "  padded  ", "",
            "\t", "?", "[[:alpha:]]", "\\d", "^x", "a$", "(x)", "x|y", "{a,b}", "é?", "!**/keep",
        ][..]).prop_map(String::from),
        1 => spicy_string(4),
    ]
}

fn free() -> impl Strategy<Value = Input> {
    (
        proptest::option::of(Just("\u{feff}")),
        vec(free_line(), 0..8),
        prop_oneof![Just("\n"), Just("\r\n")],
        edits(),
        vec(
            prop_oneof![
                3 => vec(proptest::sample::select(&["a", "b", "README.md", "x.go", "node_modules", "dir", "é", ".", "..", "[", "*"][..]), 1..4).prop_map(|s| s.join("/")),
                1 => spicy_string(6),
            ],
            0..6,
        ),
    )
        .prop_map(|(bom, lines, eol, e, paths)| {
            let text = format!("{}{}", bom.unwrap_or(""), lines.join(eol));
            Input::Free {
                text: mutate(text, e),
                paths,
            }
        })
}

/// One pattern segment over a tiny alphabet, with `*` and `?` but never `**`.
fn pattern_segment() -> impl Strategy<Value = String> + Clone {
    vec(
        proptest::sample::select(&['a', 'b', '.', '-', 'é', '*', '?'][..]),
        1..4,
    )
    .prop_map(|c| c.into_iter().collect::<String>())
    .prop_filter("no ** inside a segment, not . or ..", |s| {
        !s.contains("**") && s != "." && s != ".."
    })
}

fn path_segment() -> impl Strategy<Value = String> + Clone {
    vec(
        proptest::sample::select(&['a', 'b', '.', '-', 'é'][..]),
        1..4,
    )
    .prop_map(|c| c.into_iter().collect::<String>())
    .prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn reference() -> impl Strategy<Value = Input> {
    let pattern = (
        pattern_segment(),
        vec(
            prop_oneof![3 => pattern_segment(), 1 => Just("**".to_string())],
            0..3,
        ),
    )
        .prop_map(|(first, rest)| {
            std::iter::once(first)
                .chain(rest)
                .collect::<Vec<_>>()
                .join("/")
        });
    (
        vec(
            (prop_oneof![3 => Just(false), 1 => Just(true)], pattern),
            1..5,
        ),
        vec(vec(path_segment(), 1..5).prop_map(|s| s.join("/")), 1..8),
    )
        .prop_map(|(rules, paths)| Input::Reference { rules, paths })
}

pub fn strategy() -> impl Strategy<Value = Input> {
    prop_oneof![
        1 => free(),
        1 => reference(),
    ]
}

pub fn run(budget: &Budget) -> Outcome {
    harness::run("dockerignore", strategy(), check, budget)
}

pub fn check(input: &Input) -> Result<(), String> {
    match input {
        Input::Free { text, paths } => {
            match DockerIgnore::parse(text) {
                Ok(ignore) => {
                    for p in paths {
                        let _ = ignore.is_excluded(p);
                    }
                }
                Err(e) => {
                    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
                    let lines: Vec<&str> = text.split('\n').collect();
                    if e.line == 0 || e.line > line_count(text) {
                        return Err(format!("error line {} outside the file", e.line));
                    }
                    let raw = lines[e.line - 1];
                    let raw = raw.strip_suffix('\r').unwrap_or(raw);
                    if raw.trim() != e.pattern {
                        return Err(format!(
                            "error names pattern {:?} but line {} is {raw:?}",
                            e.pattern, e.line
                        ));
                    }
                }
            }
            Ok(())
        }
        Input::Reference { rules, paths } => {
            let text: String = rules
                .iter()
                .map(|(exception, p)| format!("{}{p}\n", if *exception { "!" } else { "" }))
                .collect();
            let ignore = DockerIgnore::parse(&text)
                .map_err(|e| format!("a valid file was rejected: {e}"))?;
            if let Some(why) = ignore.caveat() {
                return Err(format!("plain patterns hit a caveat: {why}"));
            }
            let exceptions = rules.iter().any(|(e, _)| *e);
            for path in paths {
                let got = ignore.is_excluded(path);
                let want = reference_excluded(rules, path);
                if exceptions {
                    if got && !want {
                        return Err(format!(
                            "{path:?} is excluded, but Docker's classic builder sends it: {text:?}"
                        ));
                    }
                } else if got != want {
                    return Err(format!(
                        "{path:?}: monoship says excluded={got}, Docker's rules say {want}: {text:?}"
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Docker's classic rule: the last rule that matches the path or one of its parent folders.
fn reference_excluded(rules: &[(bool, String)], path: &str) -> bool {
    let prefixes: Vec<&str> = path
        .match_indices('/')
        .map(|(i, _)| &path[..i])
        .chain(std::iter::once(path))
        .collect();
    let mut excluded = false;
    for (exception, pattern) in rules {
        let tokens = tokens(pattern);
        if prefixes
            .iter()
            .any(|p| matches(&tokens, &p.chars().collect::<Vec<_>>()))
        {
            excluded = !exception;
        }
    }
    excluded
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Char(char),
    /// `*`: any run without `/`.
    Star,
    /// `?`: one character but `/`.
    Any,
    /// `**/` in the middle: any number of whole folders, including none.
    Folders,
    /// `**` at the end (after `/`): anything.
    Rest,
}

fn tokens(pattern: &str) -> Vec<Token> {
    let segments: Vec<&str> = pattern.split('/').collect();
    let mut out = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if *seg == "**" {
            out.push(if last { Token::Rest } else { Token::Folders });
            continue;
        }
        for c in seg.chars() {
            out.push(match c {
                '*' => Token::Star,
                '?' => Token::Any,
                c => Token::Char(c),
            });
        }
        if !last {
            out.push(Token::Char('/'));
        }
    }
    out
}

/// Matches per character, as Docker's regular expressions do (`?` matches `é`).
fn matches(tokens: &[Token], path: &[char]) -> bool {
    match tokens.split_first() {
        None => path.is_empty(),
        Some((Token::Char(c), rest)) => path.first() == Some(c) && matches(rest, &path[1..]),
        Some((Token::Any, rest)) => {
            path.first().is_some_and(|c| *c != '/') && matches(rest, &path[1..])
        }
        Some((Token::Star, rest)) => {
            let run = path.iter().take_while(|c| **c != '/').count();
            (0..=run).any(|n| matches(rest, &path[n..]))
        }
        Some((Token::Folders, rest)) => {
            // `(.*/)?`: nothing, or anything up to and including some `/`.
            matches(rest, path)
                || path
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c == '/')
                    .any(|(i, _)| matches(rest, &path[i + 1..]))
        }
        Some((Token::Rest, _)) => true,
    }
}
