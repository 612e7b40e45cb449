//! One target per reader of untrusted input, and one for what monoship writes back out.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::harness::{Budget, Outcome};

pub mod config;
pub mod dockerfile;
pub mod dockerignore;
pub mod escaping;
pub mod event;

/// A named target.
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&Budget) -> Outcome,
}

/// Every target, in the order `--target all` runs them.
pub const ALL: [Target; 5] = [
    Target {
        name: "config",
        about: "config loader: YAML text in; no panic, every error names a line",
        run: config::run,
    },
    Target {
        name: "dockerfile",
        about: "Dockerfile reader: no panic, lines in range, globs compile, COPY sources covered",
        run: dockerfile::run,
    },
    Target {
        name: "dockerignore",
        about: ".dockerignore reader and matcher, against a reference matcher",
        run: dockerignore::run,
    },
    Target {
        name: "event",
        about: "event payload reader: arbitrary bytes and JSON; no panic, only full commit ids out",
        run: event::run,
    },
    Target {
        name: "escaping",
        about: "workflow commands, $GITHUB_OUTPUT, plan text and summary, read back as the runner reads them",
        run: escaping::run,
    },
];

/// Characters that mean something to some reader: workflow commands, output heredocs, YAML,
/// globs, shells, Markdown and HTML; plus whitespace the runner trims and non-ASCII.
pub const SPICY_CHARS: [char; 44] = [
    '%', '\r', '\n', ':', ',', '=', ';', '[', ']', '#', '!', '*', '?', '{', '}', '$', '(', ')',
    '`', '"', '\'', '\\', '<', '>', '|', '&', '/', '.', '-', ' ', '\t', '\0', '@', '^', '~',
    '\u{85}', '\u{a0}', '\u{2028}', '\u{feff}', '\u{e000}', '\u{fffd}', 'é', 'ß', '😀',
];

/// Fragments that try to end a value early or start something new.
pub const SPICY_WORDS: [&str; 30] = [
    "::",
    "::error::",
    "::warning file=x,line=1::",
    "::set-output name=changed::",
    "::add-mask::",
    "::stop-commands::",
    "##[error]",
    "##[set-output name=x;]",
    "%25",
    "%0A",
    "%0D",
    "%3A",
    "%2C",
    "<<",
    "<<EOF",
    "EOF",
    "ghadelimiter_",
    "$(id)",
    "`id`",
    "<script>alert(1)</script>",
    "${A}",
    "**",
    "../",
    "./",
    "\r\n",
    "\n::",
    "  ",
    "- ",
    "\"",
    "x=y",
];

/// Text built from spicy characters, spicy words, plain letters and any character at all.
pub fn spicy_string(max_pieces: usize) -> impl Strategy<Value = String> + Clone {
    let piece = prop_oneof![
        4 => proptest::sample::select(&SPICY_CHARS[..]).prop_map(String::from),
        3 => proptest::sample::select(&SPICY_WORDS[..]).prop_map(String::from),
        3 => vec(proptest::char::range('a', 'z'), 1..6).prop_map(|c| c.into_iter().collect()),
        1 => any::<char>().prop_map(String::from),
    ];
    vec(piece, 0..max_pieces).prop_map(|v| v.concat())
}

/// Replaces, inserts or deletes a few characters, to push structured text off its grammar.
pub fn mutate(text: String, edits: Vec<(usize, u8, char)>) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for (at, op, c) in edits {
        let at = if chars.is_empty() {
            0
        } else {
            at % (chars.len() + 1)
        };
        match op % 3 {
            0 if at < chars.len() => chars[at] = c,
            1 => chars.insert(at, c),
            _ if at < chars.len() => {
                chars.remove(at);
            }
            _ => chars.push(c),
        }
    }
    chars.into_iter().collect()
}

/// Edits for [`mutate`]: none most of the time.
pub fn edits() -> impl Strategy<Value = Vec<(usize, u8, char)>> + Clone {
    let c = prop_oneof![
        3 => proptest::sample::select(&SPICY_CHARS[..]),
        1 => any::<char>(),
    ];
    prop_oneof![
        3 => Just(Vec::new()),
        1 => vec((any::<usize>(), any::<u8>(), c), 1..4),
    ]
}

/// Number of lines of `text` as an editor counts them (a final newline adds none).
pub fn line_count(text: &str) -> usize {
    text.split('\n').count().max(1)
}
