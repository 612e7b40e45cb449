//! Logs of other programs (a build, a push) shown in the job log, folded and made inert.

use std::io::Write;

use crate::report::commands::{group, END_GROUP};
use crate::report::outputs::random_delimiter;

/// Writes a log to stdout inside a collapsible group, with workflow commands in it disabled
/// so a build's output cannot forge annotations or masks.
pub fn print_group(out: &mut dyn Write, title: &str, log: &str) -> std::io::Result<()> {
    let token = random_delimiter();
    writeln!(out, "{}", group(title))?;
    writeln!(out, "::stop-commands::{token}")?;
    for line in log.lines() {
        writeln!(out, "{line}")?;
    }
    writeln!(out, "::{token}::")?;
    writeln!(out, "{END_GROUP}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_stop_commands_inside_logs() {
        let mut out = Vec::new();
        print_group(&mut out, "build cart", "step\n::error::forged\n").unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "::group::build cart");
        let token = lines[1].strip_prefix("::stop-commands::").unwrap();
        assert!(token.len() > 20);
        assert_eq!(lines[4], format!("::{token}::"));
        assert_eq!(lines[5], "::endgroup::");
    }
}
