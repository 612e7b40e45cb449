//! The path-glob dialect of monoship configs.
//!
//! Patterns are matched against repository-relative paths with `/` separators:
//! - `*`, `?` and `[...]` never match `/`; `[!a]` and `[^a]` are negated classes.
//! - `**` matches any number of folders, including none: `a/**/b` matches `a/b`.
//! - Patterns are anchored at the repository root: `*.md` matches `README.md` but not
//!   `docs/a.md`; write `**/*.md` for any depth.
//! - A leading `./` or `/` is ignored.
//! - `dir/**` matches everything below `dir`, not `dir` itself (git never reports a bare folder).
//! - Dot-files are matched like any file: `*` matches `.env`.
//! - `{a,b}` is alternation; `\` escapes the next character.
//! - Matching is case-sensitive.
//!
//! In `paths` lists a leading `!` turns a pattern into an exclusion; exclusions win over
//! inclusions regardless of order.

use globset::{Glob, GlobBuilder};

/// Builds a glob in monoship's dialect (see the module docs).
///
/// # Errors
/// When the pattern is not valid glob syntax (an unclosed `[` or `{`, a nested `{`).
pub fn compile(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(normalize(pattern))
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
}

/// Strips the prefixes the dialect ignores: leading `./` (repeated) and `/`.
pub fn normalize(pattern: &str) -> &str {
    let mut p = pattern;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            return p;
        }
    }
}

/// Escapes glob metacharacters so `literal` matches only itself.
pub fn escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A `paths` entry split into its sense and its pattern: `!x` excludes `x`.
pub fn split_negation(entry: &str) -> (bool, &str) {
    match entry.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_match(pattern: &str, path: &str) -> bool {
        compile(pattern).unwrap().compile_matcher().is_match(path)
    }

    #[test]
    fn dialect_table() {
        let rows = [
            ("*.md", "README.md", true),
            ("*.md", "docs/a.md", false),
            ("**/*.md", "docs/a.md", true),
            ("**/*.md", "a.md", true),
            ("a/*/c", "a/b/c", true),
            ("a/*/c", "a/b/x/c", false),
            ("a?c", "a/c", false),
            ("a?c", "abc", true),
            ("services/[ab]/*.rs", "services/a/x.rs", true),
            ("services/[ab]/*.rs", "services/a/y/x.rs", false),
            ("services/[!a]/*.rs", "services/b/x.rs", true),
            ("services/[!a]/*.rs", "services/a/x.rs", false),
            ("services/[^a]/*.rs", "services/b/x.rs", true),
            ("src/**", "src/a/b/c.rs", true),
            ("src/**", "src", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("./services/a/**", "services/a/x.rs", true),
            ("/services/a/**", "services/a/x.rs", true),
            ("*", ".env", true),
            ("**/*.js", ".test/.test.js", true),
            ("{pb,proto}/**", "proto/a.proto", true),
            ("libs/*.toml", "libs/nested/common.toml", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("Src/**", "src/a", false),
        ];
        for (pattern, path, want) in rows {
            assert_eq!(is_match(pattern, path), want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn escape_makes_literal() {
        let weird = "a[1]{x,y}*?.txt";
        assert!(is_match(&escape(weird), weird));
        assert!(!is_match(&escape(weird), "a1x.txt"));
    }

    #[test]
    fn bad_globs_are_errors() {
        for bad in ["a/[b", "a{b"] {
            assert!(compile(bad).is_err(), "{bad}");
        }
    }
}
