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
//! - `?` and `[...]` match one character, whatever its length in bytes: `caf?` matches `café`.
//!
//! In `paths` lists a leading `!` turns a pattern into an exclusion; exclusions win over
//! inclusions regardless of order.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use regex::{Regex, RegexSet};

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

/// A set of globs whose `?` and `[...]` match one character.
///
/// `globset` matches bytes, so its `?` matches one byte of `é` and `[!a]` misses it. Here
/// `globset` answers for ASCII paths and for globs without `?` or `[` (the byte answer is the
/// character answer there); for the other globs, a non-ASCII path is matched by the same
/// regular expression compiled to match characters.
#[derive(Debug, Clone)]
pub struct CharGlobSet {
    set: GlobSet,
    /// Whether glob `i` has a `?` or a `[`.
    per_char: Vec<bool>,
    /// The per-character globs' indices, and their character-wise expressions.
    exact: Vec<usize>,
    exact_set: Option<RegexSet>,
    exact_each: Vec<Option<Regex>>,
}

impl Default for CharGlobSet {
    fn default() -> Self {
        CharGlobSet {
            set: GlobSet::empty(),
            per_char: Vec::new(),
            exact: Vec::new(),
            exact_set: None,
            exact_each: Vec::new(),
        }
    }
}

/// Builds a [`CharGlobSet`]; globs are numbered in the order they are added.
pub struct CharGlobSetBuilder {
    builder: GlobSetBuilder,
    per_char: Vec<bool>,
    exact: Vec<(usize, String)>,
}

impl Default for CharGlobSetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CharGlobSetBuilder {
    pub fn new() -> Self {
        CharGlobSetBuilder {
            builder: GlobSetBuilder::new(),
            per_char: Vec::new(),
            exact: Vec::new(),
        }
    }

    pub fn add(&mut self, glob: Glob) -> &mut Self {
        let per_char = glob.glob().contains(['?', '[']);
        if per_char {
            self.exact
                .push((self.per_char.len(), char_regex(glob.regex())));
        }
        self.per_char.push(per_char);
        self.builder.add(glob);
        self
    }

    /// # Errors
    /// When `globset` cannot build the set (too large).
    pub fn build(self) -> Result<CharGlobSet, globset::Error> {
        let set = self.builder.build()?;
        let (exact, expressions): (Vec<usize>, Vec<String>) = self.exact.into_iter().unzip();
        // One set answers all at once; should it exceed the size limit, each is tried alone.
        let exact_set = RegexSet::new(&expressions).ok();
        let exact_each = if exact_set.is_some() {
            Vec::new()
        } else {
            expressions.iter().map(|e| Regex::new(e).ok()).collect()
        };
        Ok(CharGlobSet {
            set,
            per_char: self.per_char,
            exact,
            exact_set,
            exact_each,
        })
    }
}

impl CharGlobSet {
    pub fn is_empty(&self) -> bool {
        self.per_char.is_empty()
    }

    pub fn is_match(&self, path: &str) -> bool {
        let mut hits = Vec::new();
        self.matches_into(path, &mut hits);
        !hits.is_empty()
    }

    /// Puts the indices of the globs matching `path` into `into`, in ascending order.
    pub fn matches_into(&self, path: &str, into: &mut Vec<usize>) {
        self.set.matches_into(path, into);
        if path.is_ascii() || self.exact.is_empty() {
            return;
        }
        into.retain(|&g| !self.per_char[g]);
        match &self.exact_set {
            Some(set) => into.extend(set.matches(path).into_iter().map(|i| self.exact[i])),
            None => {
                for (i, re) in self.exact_each.iter().enumerate() {
                    // A glob that would not compile keeps the byte answer.
                    let hit = match re {
                        Some(re) => re.is_match(path),
                        None => self.set.matches(path).contains(&self.exact[i]),
                    };
                    if hit {
                        into.push(self.exact[i]);
                    }
                }
            }
        }
        into.sort_unstable();
    }
}

/// Turns `globset`'s byte-wise expression into one over characters: the `(?-u)` flag goes,
/// and the `\xNN` escapes of a non-ASCII character become the character again.
fn char_regex(byte_regex: &str) -> String {
    let body = byte_regex.strip_prefix("(?-u)").unwrap_or(byte_regex);
    let mut out = String::from("(?s)");
    let mut bytes: Vec<u8> = Vec::new();
    let flush = |bytes: &mut Vec<u8>, out: &mut String| {
        if !bytes.is_empty() {
            out.push_str(&regex::escape(&String::from_utf8_lossy(bytes)));
            bytes.clear();
        }
    };
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush(&mut bytes, &mut out);
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(b) => bytes.push(b),
                    Err(_) => {
                        flush(&mut bytes, &mut out);
                        out.push_str("\\x");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => {
                flush(&mut bytes, &mut out);
                out.push('\\');
                out.push(other);
            }
            None => {
                flush(&mut bytes, &mut out);
                out.push('\\');
            }
        }
    }
    flush(&mut bytes, &mut out);
    out
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

    fn set_matches(patterns: &[&str], path: &str) -> Vec<usize> {
        let mut builder = CharGlobSetBuilder::new();
        for p in patterns {
            builder.add(compile(p).unwrap());
        }
        let mut hits = Vec::new();
        builder.build().unwrap().matches_into(path, &mut hits);
        hits
    }

    #[test]
    fn question_marks_and_classes_match_one_character() {
        for (pattern, path, want) in [
            ("caf?", "café", true),
            ("caf?", "cafe", true),
            ("caf?", "caf", false),
            ("caf??", "café", false),
            ("?", "日", true),
            ("??", "日", false),
            ("x/?/y", "x/😀/y", true),
            ("[!a]bc", "ébc", true),
            ("[^a]bc", "ébc", true),
            ("[a-z]bc", "ébc", false),
            ("[é]x", "éx", true),
            ("[é]x", "ex", false),
            ("[à-é]x", "èx", true),
            ("caf\\?", "café", false),
            ("café/*", "café/a", true),
            ("**/[!.]*", "dir/ünï", true),
            ("caf?", "caf/", false),
            ("a?", "a/", false),
        ] {
            let got = !set_matches(&[pattern], path).is_empty();
            assert_eq!(got, want, "{pattern} vs {path}");
        }
        // Indices stay those of the globs, in order, when byte and character answers mix.
        assert_eq!(set_matches(&["*", "caf?", "x", "café"], "café"), [0, 1, 3]);
        assert_eq!(set_matches(&["caf?"], "cafxy"), Vec::<usize>::new());
    }

    #[test]
    fn character_expressions_decode_non_ascii_escapes() {
        assert_eq!(char_regex("(?-u)^caf\\xc3\\xa9$"), "(?s)^café$");
        assert_eq!(char_regex("(?-u)^a\\\\x41$"), "(?s)^a\\\\x41$");
        assert_eq!(char_regex("(?-u)^[^/]\\.md$"), "(?s)^[^/]\\.md$");
    }

    #[test]
    fn bad_globs_are_errors() {
        for bad in ["a/[b", "a{b"] {
            assert!(compile(bad).is_err(), "{bad}");
        }
    }
}
