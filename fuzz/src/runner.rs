//! The GitHub Actions runner's readers, written again from its behaviour so that what monoship
//! prints can be read back the way the runner reads it: log lines and the workflow commands in
//! them, and the `$GITHUB_OUTPUT` file.
//!
//! Standard library only: the integration tests include this file with `#[path]`.
//!
//! What is modelled (Linux runners):
//!
//! - Log lines end at `\n`, `\r\n` or a lone `\r` (.NET's `StreamReader.ReadLine`).
//! - A line is a command when, after leading whitespace is trimmed, it starts with `::`, a
//!   registered command name follows (up to a space or the next `::`), and a second `::` ends
//!   the command part: `::name k=v,k=v::data`. Property values are unescaped `%0D`, `%0A`,
//!   `%3A`, `%2C`, then `%25`; data `%0D`, `%0A`, then `%25`.
//! - The legacy form `##[name k=v;k=v]data` counts anywhere in a line, not only at its start.
//! - `::stop-commands::TOKEN` turns every command off until a line `::TOKEN::`.
//! - `$GITHUB_OUTPUT` holds `name=value` lines and `name<<DELIM` ... `DELIM` blocks; the first
//!   of `=` and `<<` on a line decides the form, and a block's value is every byte between its
//!   first line and the newline before the delimiter line.

use std::collections::BTreeMap;

/// Commands the runner acts on.
pub const COMMANDS: [&str; 16] = [
    "add-mask",
    "add-matcher",
    "add-path",
    "debug",
    "echo",
    "endgroup",
    "error",
    "group",
    "internal-set-repo-path",
    "notice",
    "remove-matcher",
    "save-state",
    "set-env",
    "set-output",
    "stop-commands",
    "warning",
];

/// One workflow command as the runner understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    /// Property names are case-insensitive for the runner; kept as written here.
    pub properties: BTreeMap<String, String>,
    pub data: String,
    /// Read from the legacy `##[...]` form.
    pub legacy: bool,
}

impl Command {
    /// A property by name, ignoring case as the runner does.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits process output into log lines: `\n`, `\r\n` and a lone `\r` each end a line.
pub fn log_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&text[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&text[start..i]);
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Undoes `%XX` escapes by plain replacement, in the runner's order.
fn unescape(s: &str, mappings: &[(&str, &str)]) -> String {
    let mut out = s.to_string();
    for (escaped, raw) in mappings {
        out = out.replace(escaped, raw);
    }
    out
}

/// The runner's unescaping of command data.
pub fn unescape_data(s: &str) -> String {
    unescape(s, &[("%0D", "\r"), ("%0A", "\n"), ("%25", "%")])
}

/// The runner's unescaping of command property values.
pub fn unescape_property(s: &str) -> String {
    unescape(
        s,
        &[
            ("%0D", "\r"),
            ("%0A", "\n"),
            ("%3A", ":"),
            ("%2C", ","),
            ("%25", "%"),
        ],
    )
}

fn unescape_legacy(s: &str) -> String {
    unescape(
        s,
        &[
            ("%3B", ";"),
            ("%0D", "\r"),
            ("%0A", "\n"),
            ("%5D", "]"),
            ("%25", "%"),
        ],
    )
}

/// Reads one log line as the runner does: the `::` form first, then the legacy `##[` form.
pub fn parse_command(line: &str) -> Option<Command> {
    parse_with(line, None)
}

fn parse_with(line: &str, extra: Option<&str>) -> Option<Command> {
    parse_v2(line, extra).or_else(|| parse_legacy(line, extra))
}

/// Command names are matched ignoring case; they are returned lowercased.
fn registered(name: &str, extra: Option<&str>) -> Option<String> {
    let known = COMMANDS.iter().any(|c| c.eq_ignore_ascii_case(name))
        || extra.is_some_and(|t| t.eq_ignore_ascii_case(name));
    (known && !name.is_empty()).then(|| name.to_ascii_lowercase())
}

fn parse_v2(line: &str, extra: Option<&str>) -> Option<Command> {
    // .NET's TrimStart and Rust's trim_start both trim Unicode White_Space.
    let message = line.trim_start();
    let rest = message.strip_prefix("::")?;
    let end = rest.find("::")?;
    let info = &rest[..end];
    let (name, props) = match info.find(' ') {
        Some(space) => (&info[..space], Some(&info[space + 1..])),
        None => (info, None),
    };
    let name = registered(name, extra)?;
    let mut properties = BTreeMap::new();
    if let Some(props) = props {
        // Only a space after the name at index 0 yields an empty name, which is not registered.
        for pair in props.trim().split(',').filter(|p| !p.is_empty()) {
            if let Some((k, v)) = split_pair(pair) {
                properties.insert(k.to_string(), unescape_property(v));
            }
        }
    }
    Some(Command {
        name,
        properties,
        data: unescape_data(&rest[end + 2..]),
        legacy: false,
    })
}

/// `Split('=', 2, RemoveEmptyEntries)` keeping only two-part results.
fn split_pair(pair: &str) -> Option<(&str, &str)> {
    let pair = pair.trim_start_matches('=');
    let (k, v) = pair.split_once('=')?;
    (!k.is_empty() && !v.is_empty()).then_some((k, v))
}

fn parse_legacy(line: &str, extra: Option<&str>) -> Option<Command> {
    let start = line.find("##[")?;
    let close = start + line[start..].find(']')?;
    let info = &line[start + 3..close];
    let (name, props) = match info.find(' ') {
        Some(space) => (&info[..space], Some(&info[space + 1..])),
        None => (info, None),
    };
    let name = registered(name, extra)?;
    let mut properties = BTreeMap::new();
    for pair in props.into_iter().flat_map(|p| p.split(';')) {
        if let Some((k, v)) = split_pair(pair) {
            properties.insert(k.to_string(), unescape_legacy(v));
        }
    }
    Some(Command {
        name,
        properties,
        data: unescape_legacy(&line[close + 1..]),
        legacy: true,
    })
}

/// Every command the runner would act on in `text` (one process stream), with the 0-based index
/// of its log line. `::stop-commands::TOKEN` turns processing off until a line that reads as
/// the command `TOKEN` (in either form); nothing in between is acted on.
pub fn commands(text: &str) -> Vec<(usize, Command)> {
    let mut out = Vec::new();
    let mut stopped_until: Option<String> = None;
    for (i, line) in log_lines(text).into_iter().enumerate() {
        if let Some(token) = &stopped_until {
            let resumes =
                parse_with(line, Some(token)).is_some_and(|c| c.name.eq_ignore_ascii_case(token));
            if resumes {
                stopped_until = None;
            }
            continue;
        }
        let Some(cmd) = parse_command(line) else {
            continue;
        };
        if cmd.name == "stop-commands" && !cmd.data.is_empty() {
            stopped_until = Some(cmd.data.clone());
        }
        out.push((i, cmd));
    }
    out
}

/// Reads a `$GITHUB_OUTPUT` (or `$GITHUB_ENV`) file as the runner does on Linux.
///
/// # Errors
/// The runner's own complaints: a line in neither form, an empty name or delimiter, a missing
/// delimiter line, or a value line without its newline at the end of the file.
pub fn parse_file_command(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut index = 0;
    while let Some((line, _)) = read_line(text, &mut index) {
        if line.is_empty() {
            continue;
        }
        let equals = line.find('=');
        let heredoc = line.find("<<");
        match (equals, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let (key, value) = line.split_at(e);
                if key.is_empty() {
                    return Err(format!("invalid format `{line}`: empty name"));
                }
                out.push((key.to_string(), value[1..].to_string()));
            }
            (_, Some(h)) => {
                let (key, rest) = line.split_at(h);
                let delimiter = &rest[2..];
                if key.is_empty() || delimiter.is_empty() {
                    return Err(format!("invalid format `{line}`: empty name or delimiter"));
                }
                let start = index;
                let mut end = index;
                loop {
                    match read_line(text, &mut index) {
                        None => return Err(format!("matching delimiter not found `{delimiter}`")),
                        Some((l, _)) if l == delimiter => break,
                        Some((_, false)) => return Err("EOF marker missing new line".to_string()),
                        Some((_, true)) => end = index - 1,
                    }
                }
                let value = if end > start { &text[start..end] } else { "" };
                out.push((key.to_string(), value.to_string()));
            }
            _ => return Err(format!("invalid format `{line}`")),
        }
    }
    Ok(out)
}

/// One `\n`-terminated line from `index`, and whether it had its newline.
fn read_line<'a>(text: &'a str, index: &mut usize) -> Option<(&'a str, bool)> {
    if *index >= text.len() {
        return None;
    }
    let from = *index;
    match text[from..].find('\n') {
        Some(i) => {
            *index = from + i + 1;
            Some((&text[from..from + i], true))
        }
        None => {
            *index = text.len();
            Some((&text[from..], false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_after_leading_whitespace_and_legacy_anywhere() {
        let c = parse_command("  ::warning file=a%2Cb,line=3::x%0Ay").unwrap();
        assert_eq!(c.name, "warning");
        assert_eq!(c.property("FILE"), Some("a,b"));
        assert_eq!(c.data, "x\ny");
        assert!(parse_command("x ::warning::y").is_none());
        assert!(parse_command("::unknown::y").is_none());
        let l = parse_command("text ##[error]boom").unwrap();
        assert!(l.legacy && l.name == "error" && l.data == "boom");
    }

    #[test]
    fn stop_commands_blocks_are_skipped() {
        let text =
            "::stop-commands::t0k\n::error::hidden\n##[error]hidden\n::t0k::\n::notice::shown\n";
        let found = commands(text);
        let names: Vec<_> = found.iter().map(|(_, c)| c.name.as_str()).collect();
        assert_eq!(names, ["stop-commands", "notice"]);
    }

    #[test]
    fn output_files_read_like_the_runner() {
        let text = "a=1\nb<<EOF\nx\n\ny\nEOF\nc<<EOF\nEOF\nd=x<<y\n";
        let got = parse_file_command(text).unwrap();
        let want = [("a", "1"), ("b", "x\n\ny"), ("c", ""), ("d", "x<<y")];
        assert_eq!(
            got,
            want.map(|(k, v)| (k.to_string(), v.to_string())).to_vec()
        );
        assert!(parse_file_command("a<<EOF\nno end\n").is_err());
        assert!(parse_file_command("a<<EOF\nx").is_err());
        assert_eq!(log_lines("a\r\nb\rc\n\nd"), ["a", "b", "c", "", "d"]);
    }
}
