//! Workflow commands (`::error ...::`), escaped exactly as the runner parses them, so no file
//! name, branch name or message can end a command early or forge another one.

use std::fmt;

/// Escapes a command's message: `%`, CR and LF (the runner's `EscapeData`).
pub fn escape_data(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a command property value: as [`escape_data`], plus `:` and `,`.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Makes text safe to print as one log line, or as part of one: control characters become
/// visible escapes, so a name holding `\n::error::` cannot start a workflow command on a line
/// of its own. The runner also reads a command from a line that starts with `::` once leading
/// whitespace is trimmed, and a legacy `##[command]` anywhere in a line: text that would start
/// with `::` after its own leading whitespace gets its first `:` escaped (`\u{3a}`), and every
/// `##[` its `[` (`\u{5b}`), so an indented file name cannot forge a command either.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if out.contains("##[") {
        out = out.replace("##[", "##\\u{5b}");
    }
    // Rust's and .NET's whitespace are the same Unicode White_Space set.
    let lead = out.len() - out.trim_start().len();
    if out[lead..].starts_with("::") {
        out.replace_range(lead..lead + 1, "\\u{3a}");
    }
    out
}

/// Annotation levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
}

/// An annotation, anchored to a file and line when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub level: Level,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub title: Option<String>,
    pub message: String,
}

impl Annotation {
    pub fn new(level: Level, message: impl Into<String>) -> Annotation {
        Annotation {
            level,
            file: None,
            line: None,
            title: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Annotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
        };
        let mut props = Vec::new();
        if let Some(file) = &self.file {
            props.push(format!("file={}", escape_property(file)));
        }
        if let Some(line) = self.line {
            props.push(format!("line={line}"));
        }
        if let Some(title) = &self.title {
            props.push(format!("title={}", escape_property(title)));
        }
        if props.is_empty() {
            write!(f, "::{name}::{}", escape_data(&self.message))
        } else {
            write!(
                f,
                "::{name} {}::{}",
                props.join(","),
                escape_data(&self.message)
            )
        }
    }
}

/// `::add-mask::` for a secret; print it before anything could print the secret.
pub fn add_mask(secret: &str) -> String {
    format!("::add-mask::{}", escape_data(secret))
}

/// Opens a collapsible log group.
pub fn group(title: &str) -> String {
    format!("::group::{}", escape_data(title))
}

/// Closes the open log group.
pub const END_GROUP: &str = "::endgroup::";

/// Log output made inert line by line: each line through [`one_line`], the line breaks kept.
/// Log lines quote servers and repository names and must never read as workflow commands.
pub fn inert_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        out.push_str(&one_line(body));
        out.push_str(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_table() {
        let rows = [
            ("plain", "plain", "plain"),
            ("100%", "100%25", "100%25"),
            ("a\nb", "a%0Ab", "a%0Ab"),
            ("a\r\nb", "a%0D%0Ab", "a%0D%0Ab"),
            ("x::y", "x::y", "x%3A%3Ay"),
            ("a,b", "a,b", "a%2Cb"),
            ("%0A", "%250A", "%250A"),
        ];
        for (raw, data, prop) in rows {
            assert_eq!(escape_data(raw), data, "{raw:?}");
            assert_eq!(escape_property(raw), prop, "{raw:?}");
        }
    }

    #[test]
    fn annotation_cannot_be_forged_by_its_message_or_file() {
        let a = Annotation {
            level: Level::Error,
            file: Some("evil,line=1::\n::warning::x".into()),
            line: Some(3),
            title: None,
            message: "bad\n::error::forged".into(),
        };
        let s = a.to_string();
        assert_eq!(s.lines().count(), 1);
        assert_eq!(
            s,
            "::error file=evil%2Cline=1%3A%3A%0A%3A%3Awarning%3A%3Ax,line=3::bad%0A::error::forged"
        );
    }

    #[test]
    fn log_lines_keep_their_breaks_and_lose_their_commands() {
        let log = " INFO retrying: bad\n::error::forged\n  ##[warning]old\nplain\n";
        let inert = inert_lines(log);
        assert_eq!(inert.lines().count(), 4);
        assert!(inert.ends_with("plain\n"));
        for line in inert.lines() {
            assert!(!line.trim_start().starts_with("::"), "{line}");
            assert!(!line.contains("##["), "{line}");
        }
    }

    #[test]
    fn one_line_neutralizes_control_characters() {
        assert_eq!(one_line("a\n::error::x\tb"), "a\\n::error::x\\tb");
    }

    #[test]
    fn one_line_cannot_start_a_command_or_hold_a_legacy_one() {
        assert_eq!(one_line("::error::x"), "\\u{3a}:error::x");
        assert_eq!(one_line(" \u{a0}::warning::x"), " \u{a0}\\u{3a}:warning::x");
        assert_eq!(one_line("a ##[error]x"), "a ##\\u{5b}error]x");
        assert_eq!(one_line("a::b"), "a::b");
    }
}
