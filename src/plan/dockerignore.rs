//! Docker's ignore files, and the two path-pattern dialects Docker uses.
//!
//! [`DockerIgnore`] answers which context paths a `.dockerignore` file leaves out of a build.
//! The `pub(crate)` helpers below it translate Docker patterns to `globset` globs, compiled the
//! way the rest of monoship compiles them (`literal_separator(true)`, `backslash_escape(true)`):
//!
//! - the *ignore dialect* of `moby/patternmatcher`, used for ignore files and, by BuildKit, for
//!   `COPY --exclude` and `COPY --parents` sources. Docker turns these patterns into Go regular
//!   expressions, with a few quirks this module reproduces (see [`ignore_dialect_globs`]).
//! - the *source dialect* of Go's `filepath.Match`, used for plain `COPY`/`ADD` sources; only its
//!   syntax check and character classes live here, [`crate::plan::dockerfile`] does the rest.

use globset::GlobBuilder;

use crate::plan::glob::{CharGlobSet, CharGlobSetBuilder};

/// The rules of one ignore file, compiled once so [`DockerIgnore::is_excluded`] stays cheap.
///
/// # Rules
///
/// These are Docker's (`moby/patternmatcher`'s `ignorefile.ReadAll` and `PatternMatcher`):
///
/// - A line whose first character is `#` is a comment; a `#` after leading spaces starts a
///   pattern. A UTF-8 byte-order mark at the start of the file is ignored.
/// - Whitespace around a pattern is trimmed; lines left empty are skipped.
/// - A leading `!` makes the rule an exception that puts paths back into the context.
/// - Each pattern is cleaned like Go's `filepath.Clean` (`a//b/./c/..` is `a/b`) and one leading
///   `/` is dropped, so `/a` and `a` are the same rule.
/// - `*` matches any run of characters except `/`, `?` one character except `/`, `\` escapes the
///   next character, `[...]` is a character class and `[^...]` a negated one. `[!a]` is *not*
///   negated: Docker compiles classes to Go regular expressions, where `!` is an ordinary member.
/// - `**` matches any number of folders, including none: `**/*.md` matches `a.md` and `x/y/a.md`,
///   while `*.md` matches only at the root. Glued to other characters it keeps Docker's quirks:
///   `a**` matches every path that starts with `a`, `**.md` every path that ends with `.md`.
/// - The last rule that matches wins, and a rule that matches a folder matches everything below
///   it.
///
/// # Caveats
///
/// Docker has two implementations that disagree on a few combinations of exceptions (BuildKit's
/// context walk remembers which rules matched a parent folder only when it evaluated them; the
/// classic builder checks every parent folder against every rule). A path counts as excluded
/// only when both exclude it, so a build input is never missed. For the same reason:
///
/// - when a pattern uses a regular-expression quirk that has no exact glob (a `^` outside a
///   class, `\d`, a `*` inside a class, ...), nothing is treated as excluded; [`caveat`] says why;
/// - `?` and classes match one character, as in Docker's regular expressions: `caf?`
///   excludes `café`.
///
/// The default value has no rules and excludes nothing.
///
/// [`caveat`]: DockerIgnore::caveat
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    /// Whether each rule, in file order, is a `!` exception.
    exceptions: Vec<bool>,
    /// Every glob of every rule; glob `g` belongs to rule `glob_rule[g]`.
    set: CharGlobSet,
    glob_rule: Vec<usize>,
    caveat: Option<String>,
}

/// An ignore-file pattern that Docker rejects (`docker build` fails on it).
#[derive(Debug, thiserror::Error)]
#[error("line {line}: bad pattern `{pattern}`")]
pub struct DockerIgnoreError {
    /// 1-based line of the pattern.
    pub line: usize,
    /// The pattern as written, trimmed.
    pub pattern: String,
    /// What is wrong with it.
    #[source]
    pub source: PatternError,
}

/// Why Docker rejects a path pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A `!` with nothing after it.
    #[error("`!` must be followed by a pattern")]
    EmptyException,
    /// Invalid Go `filepath.Match` syntax.
    #[error("{0}")]
    Syntax(&'static str),
    /// A class range like `z-a`, which Docker's regular expressions reject.
    #[error("character range `{0}-{1}` is out of order")]
    RangeOutOfOrder(char, char),
}

/// Most globs one pattern may expand to before we give up on matching it exactly.
const MAX_GLOBS: usize = 16;

impl DockerIgnore {
    /// Reads the text of an ignore file.
    ///
    /// # Errors
    /// When a pattern is one Docker rejects: a lone `!`, an unclosed `[`, a trailing `\`, a
    /// misplaced `-` or `]` in a class, or a class range out of order.
    pub fn parse(text: &str) -> Result<DockerIgnore, DockerIgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut exceptions = Vec::new();
        let mut builder = CharGlobSetBuilder::new();
        let mut glob_rule = Vec::new();
        let mut caveat = None;
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let bad = |source| DockerIgnoreError {
                line,
                pattern: raw.trim().to_string(),
                source,
            };
            let Some((exception, pattern)) = read_rule(raw).map_err(bad)? else {
                continue;
            };
            check_ignore_pattern(&pattern).map_err(bad)?;
            if caveat.is_some() {
                // Keep checking the syntax of the remaining lines; nothing is matched anyway.
                continue;
            }
            let rule = exceptions.len();
            exceptions.push(exception);
            match ignore_dialect_globs(&pattern, None) {
                Ok(globs) => {
                    for glob in globs {
                        match compile(&glob) {
                            Ok(g) => {
                                builder.add(g);
                                glob_rule.push(rule);
                            }
                            Err(e) => {
                                caveat = Some(format!(
                                    "line {line}: `{}` did not compile ({e})",
                                    raw.trim()
                                ))
                            }
                        }
                    }
                }
                Err(why) => caveat = Some(format!("line {line}: `{}` {why}", raw.trim())),
            }
        }
        let set = match builder.build() {
            Ok(set) => set,
            Err(e) => {
                caveat
                    .get_or_insert_with(|| format!("the patterns did not compile together ({e})"));
                CharGlobSet::default()
            }
        };
        Ok(DockerIgnore {
            exceptions,
            set,
            glob_rule,
            caveat,
        })
    }

    /// Whether Docker leaves `path` out of the build context.
    ///
    /// `path` is relative to the context, `/`-separated, without a leading `./` or `/`.
    pub fn is_excluded(&self, path: &str) -> bool {
        if self.exceptions.is_empty() || self.caveat.is_some() || path.is_empty() {
            return false;
        }
        if !self.exceptions.contains(&true) {
            // Without exceptions both Docker implementations agree: a rule matches the path or a parent.
            return prefixes(path).any(|p| self.set.is_match(p));
        }
        let rules = self.exceptions.len();
        let mut hits = Vec::new();
        let mut rule_hit = vec![false; rules];
        let mut parent_matched = vec![false; rules];
        let mut matched_here = vec![false; rules];
        let mut classic_last: Option<usize> = None;
        let mut walk_excluded = false;
        for prefix in prefixes(path) {
            self.set.matches_into(prefix, &mut hits);
            rule_hit.fill(false);
            for &g in &hits {
                rule_hit[self.glob_rule[g]] = true;
            }
            // Classic builder: the last rule matching the path or any parent wins.
            if let Some(last) = rule_hit.iter().rposition(|&hit| hit) {
                classic_last = classic_last.max(Some(last));
            }
            // BuildKit's walk (fsutil + MatchesUsingParentResults): a rule that matched the parent
            // folder matches; a rule that cannot change the verdict so far is skipped and, for
            // the folders below, counts as not matched.
            let mut excluded = false;
            for rule in 0..rules {
                let exception = self.exceptions[rule];
                let hit = parent_matched[rule] || (exception == excluded && rule_hit[rule]);
                matched_here[rule] = hit;
                if hit {
                    excluded = !exception;
                }
            }
            std::mem::swap(&mut parent_matched, &mut matched_here);
            walk_excluded = excluded;
        }
        let classic_excluded = classic_last.is_some_and(|rule| !self.exceptions[rule]);
        classic_excluded && walk_excluded
    }

    /// Why this ignore file excludes nothing although it has rules, if so: a pattern relies on a
    /// regular-expression quirk of Docker that cannot be matched exactly.
    pub fn caveat(&self) -> Option<&str> {
        self.caveat.as_deref()
    }
}

/// The path itself and each parent folder, shortest first: `a`, `a/b`, `a/b/c`.
fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(|(i, _)| &path[..i])
        .chain(std::iter::once(path))
}

/// Applies `ignorefile.ReadAll` and `PatternMatcher::New` to one line: `None` for comments and
/// blank lines, else whether the rule is an exception and its cleaned pattern.
fn read_rule(raw: &str) -> Result<Option<(bool, String)>, PatternError> {
    if raw.starts_with('#') {
        return Ok(None);
    }
    let pattern = raw.trim();
    if pattern.is_empty() {
        return Ok(None);
    }
    let (invert, pattern) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, pattern),
    };
    let mut cleaned = if pattern.is_empty() {
        String::new()
    } else {
        go_clean(pattern)
    };
    if cleaned.len() > 1 && cleaned.starts_with('/') {
        cleaned.remove(0);
    }
    // PatternMatcher cleans the pattern again with its `!`, which turns `!/` into a lone `!`.
    let full = go_clean(&if invert {
        format!("!{cleaned}")
    } else {
        cleaned
    });
    match full.strip_prefix('!') {
        Some("") => Err(PatternError::EmptyException),
        Some(rest) => Ok(Some((true, rest.to_string()))),
        None => Ok(Some((false, full))),
    }
}

/// Compiles a glob the way monoship's planner does.
pub(crate) fn compile(glob: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
}

/// Go's `path.Clean`: drops empty and `.` segments, resolves `..` lexically, and returns `.` for
/// an empty result (`/` when the path is absolute).
pub(crate) fn go_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|s| *s != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// A `[...]` character class, parsed with Go's `filepath.Match` syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Class {
    pub negated: bool,
    /// Inclusive ranges; a single character is `(c, c)`. Escapes are resolved.
    pub ranges: Vec<(char, char)>,
    /// The text between the brackets as written (after an optional `^`).
    pub raw: String,
}

/// Parses a class whose `[` is just before `chars[start]`; returns it and the index after `]`.
pub(crate) fn parse_class(chars: &[char], start: usize) -> Result<(Class, usize), PatternError> {
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let body = i;
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            i += 1;
            break;
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
    let raw = chars[body..i - 1].iter().collect();
    Ok((
        Class {
            negated,
            ranges,
            raw,
        },
        i,
    ))
}

/// One (possibly escaped) class member; Go requires more pattern after it.
fn class_char(chars: &[char], i: usize) -> Result<(char, usize), PatternError> {
    const UNCLOSED: PatternError =
        PatternError::Syntax("a `[` character class is never closed with `]`");
    let (c, next) = match chars.get(i) {
        None => return Err(UNCLOSED),
        Some('-' | ']') => {
            return Err(PatternError::Syntax(
                "`-` or `]` is misplaced in a character class",
            ))
        }
        Some('\\') => match chars.get(i + 1) {
            Some(&c) => (c, i + 2),
            None => return Err(UNCLOSED),
        },
        Some(&c) => (c, i + 1),
    };
    if next >= chars.len() {
        return Err(UNCLOSED);
    }
    Ok((c, next))
}

/// Checks Go's `filepath.Match` syntax: every `\` escapes something and every class is valid.
pub(crate) fn check_go_pattern(pattern: &str) -> Result<(), PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 >= chars.len() => {
                return Err(PatternError::Syntax("the pattern ends with a lone `\\`"))
            }
            '\\' => i += 2,
            '[' => i = parse_class(&chars, i + 1)?.1,
            _ => i += 1,
        }
    }
    Ok(())
}

/// The checks Docker applies to an ignore-dialect pattern: Go syntax first, then its regular
/// expression, which rejects class ranges out of order.
pub(crate) fn check_ignore_pattern(pattern: &str) -> Result<(), PatternError> {
    check_go_pattern(pattern)?;
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '[' => {
                let (class, next) = parse_class(&chars, i + 1)?;
                if let Some(&(lo, hi)) = class.ranges.iter().find(|(lo, hi)| lo > hi) {
                    return Err(PatternError::RangeOutOfOrder(lo, hi));
                }
                i = next;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Appends `c` to a glob so that it matches only itself.
pub(crate) fn push_literal(glob: &mut String, c: char) {
    if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\' | ',') {
        glob.push('\\');
    }
    glob.push(c);
}

/// Escapes every glob metacharacter of `text`.
pub(crate) fn literal(text: &str) -> String {
    let mut glob = String::with_capacity(text.len());
    for c in text.chars() {
        push_literal(&mut glob, c);
    }
    glob
}

/// A glob for one character except `/`. `globset` matches bytes; with `per_char`, the glob also
/// matches the 2 to 4 bytes of a non-ASCII character.
pub(crate) fn one_char(per_char: bool) -> &'static str {
    if per_char {
        "{?,??,???,????}"
    } else {
        "?"
    }
}

/// Renders a class as a glob.
///
/// Go's `filepath.Match` and Go regular expressions both let a class match `/` (`[^a]` does);
/// `globset` classes never do, so `/` becomes an alternative: `{[!a],/}`. With `per_char`, a
/// negated class also matches a whole non-ASCII character (see [`one_char`]).
///
/// # Errors
/// For a class that matches nothing, or one with members past ASCII that `globset` cannot
/// read back. Members past ASCII are matched per character by [`CharGlobSet`].
pub(crate) fn class_glob(class: &Class, per_char: bool) -> Result<(String, bool), String> {
    let mut members = [false; 128];
    // Members past ASCII, as glob class text: `é`, `à-é`.
    let mut wide = String::new();
    for &(lo, hi) in &class.ranges {
        if lo.is_ascii() {
            for c in lo..=hi.min('\u{7f}') {
                members[c as usize] = true;
            }
        }
        if !hi.is_ascii() {
            let lo = lo.max('\u{80}');
            wide.push(lo);
            if hi > lo {
                wide.push('-');
                wide.push(hi);
            }
        }
    }
    let matches_slash = members[usize::from(b'/')] != class.negated;
    members[usize::from(b'/')] = false;
    if !wide.is_empty() {
        return wide_class_glob(&members, class.negated, &wide, matches_slash);
    }
    let count = members.iter().filter(|&&m| m).count();
    let mut alternatives = Vec::new();
    if class.negated {
        let body = if count == 0 {
            one_char(false).to_string()
        } else {
            format!("[!{}]", class_members(&members, true))
        };
        alternatives.push(body.clone());
        if per_char {
            alternatives.extend(
                ["?", "??", "???"]
                    .iter()
                    .map(|more| format!("{body}{more}")),
            );
        }
    } else if count == 1 {
        let c = members
            .iter()
            .position(|&m| m)
            .map(|c| char::from(c as u8))
            .unwrap_or('?');
        alternatives.push(literal(&c.to_string()));
    } else if count > 1 {
        let body = class_members(&members, false);
        if body.starts_with(['!', '^']) {
            // Only `!` and `^` are left; as the first member either would negate the class.
            alternatives.extend(body.chars().map(|c| c.to_string()));
        } else {
            alternatives.push(format!("[{body}]"));
        }
    }
    if matches_slash {
        alternatives.push("/".into());
    }
    match alternatives.len() {
        0 => Err("has a `[...]` class that matches no character".into()),
        1 => Ok((alternatives.remove(0), matches_slash)),
        _ => Ok((format!("{{{}}}", alternatives.join(",")), matches_slash)),
    }
}

/// A class with members past ASCII: they go right after the `[` (or a leading `]`), where they
/// cannot form a range with `-` or read as a negation. Matching them per character is
/// [`CharGlobSet`]'s job.
fn wide_class_glob(
    members: &[bool; 128],
    negated: bool,
    wide: &str,
    matches_slash: bool,
) -> Result<(String, bool), String> {
    let body = class_members(members, negated);
    let (lead, rest) = body.split_at(usize::from(body.starts_with(']')));
    let bang = if negated { "!" } else { "" };
    let class = format!("[{bang}{lead}{wide}{rest}]");
    if compile(&class).is_err() {
        return Err("has a `[...]` class monoship cannot translate".into());
    }
    let glob = if matches_slash {
        format!("{{{class},/}}")
    } else {
        class
    };
    Ok((glob, matches_slash))
}

/// The members of a `globset` class in an order `globset` reads back unchanged: `]` first,
/// `-` last, `!` and `^` never first, `[` never right before `:`.
fn class_members(members: &[bool; 128], negated: bool) -> String {
    const SPECIAL: [char; 5] = [']', '-', '!', '^', '['];
    let mut runs = String::new();
    let mut c = 0usize;
    while c < 128 {
        let ch = char::from(c as u8);
        if !members[c] || SPECIAL.contains(&ch) {
            c += 1;
            continue;
        }
        let start = c;
        while c + 1 < 128 && members[c + 1] && !SPECIAL.contains(&char::from((c + 1) as u8)) {
            c += 1;
        }
        runs.push(ch);
        if c > start {
            if c > start + 1 {
                runs.push('-');
            }
            runs.push(char::from(c as u8));
        }
        c += 1;
    }
    let has = |ch: char| members[ch as usize];
    let mut out = String::new();
    if has(']') {
        out.push(']');
    }
    let mut tail = String::new();
    for ch in ['!', '^', '['] {
        if has(ch) {
            tail.push(ch);
        }
    }
    if out.is_empty() && runs.is_empty() && !negated && tail.starts_with(['!', '^']) {
        // Move `[` (or a `-`) in front so the class does not read as negated.
        if let Some(pos) = tail.find('[') {
            tail.remove(pos);
            out.push('[');
        } else if has('-') {
            out.push('-');
            out.push_str(&tail);
            return out;
        }
    }
    out.push_str(&runs);
    out.push_str(&tail);
    if has('-') {
        out.push('-');
    }
    out
}

/// One token of an ignore-dialect pattern, as `PatternMatcher::compile` reads it.
enum Token {
    Literal(char),
    /// `\` and the character after it.
    Escaped(char),
    Star,
    Question,
    Class(Class),
    /// `**` in the middle, with a following `/` eaten: any run of folders, or nothing.
    Folders,
    /// `**` at the end: anything.
    Rest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchKind {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// Translates a cleaned ignore-dialect pattern (no leading `!`) to globs; the pattern matches a
/// path when any of the globs does.
///
/// `unknown`, when given, is a character that stands for an unknown value and reads as `*`.
///
/// Docker compiles the pattern to a Go regular expression, or compares strings for patterns
/// without wildcards (`a/**` is a prefix test, `**/a` and `**.md` suffix tests). Those cases are
/// reproduced exactly, including `**` glued to other characters (`a**b` matches `ab` and
/// `a…/b`).
///
/// # Errors
/// With the reason, when the pattern uses a regular-expression quirk with no exact glob: `^`
/// outside a class (an anchor), `\` before a letter or digit (`\d` is a class), `*`, `?` or
/// `[:` inside a class, or too many alternatives.
pub(crate) fn ignore_dialect_globs(
    pattern: &str,
    unknown: Option<char>,
) -> Result<Vec<String>, String> {
    let (tokens, kind) = tokenize(pattern, unknown)?;
    Ok(match kind {
        MatchKind::Exact => vec![literal(pattern)],
        MatchKind::Prefix => {
            let start = literal(&pattern[..pattern.len() - 2]);
            if start.ends_with('/') {
                vec![format!("{start}**")]
            } else {
                vec![format!("{start}*"), format!("{start}*/**")]
            }
        }
        MatchKind::Suffix => {
            let end = &pattern[2..];
            vec![match end.strip_prefix('/') {
                _ if end.is_empty() => "**".to_string(),
                Some(rest) => format!("**/{}", literal(rest)),
                None => format!("**/*{}", literal(end)),
            }]
        }
        MatchKind::Regex => regex_globs(&tokens)?,
    })
}

/// Reads a pattern into tokens, and how Docker compares it: a string test for patterns
/// without wildcards (exact, `a/**` prefix, `**/a` suffix), else a regular expression.
fn tokenize(pattern: &str, unknown: Option<char>) -> Result<(Vec<Token>, MatchKind), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut kind = MatchKind::Exact;
    let mut i = 0;
    while i < chars.len() {
        let first_token = tokens.is_empty() && kind == MatchKind::Exact;
        let c = chars[i];
        i += 1;
        let (token, regex) = if Some(c) == unknown {
            (Token::Star, true)
        } else if c == '*' && chars.get(i) == Some(&'*') {
            i = double_star(&chars, i + 1, first_token, &mut kind, &mut tokens);
            continue;
        } else {
            let (token, next) = single_token(&chars, i, c, unknown)?;
            i = next;
            // Only a plain character keeps a string test; `]` and a trailing `\` are regex text.
            let regex = !matches!(token, Token::Literal(_)) || c == ']' || c == '\\';
            (token, regex)
        };
        if regex {
            kind = MatchKind::Regex;
        }
        tokens.push(token);
    }
    Ok((tokens, kind))
}

/// A `**` whose second `*` ends before `chars[i]`: a following `/` is eaten; at the end of the
/// pattern it is a prefix test (or [`Token::Rest`] after wildcards), elsewhere
/// [`Token::Folders`]; at the start, a suffix test. Returns where reading goes on.
fn double_star(
    chars: &[char],
    mut i: usize,
    first_token: bool,
    kind: &mut MatchKind,
    tokens: &mut Vec<Token>,
) -> usize {
    if chars.get(i) == Some(&'/') {
        i += 1;
    }
    if i == chars.len() {
        if *kind == MatchKind::Exact {
            *kind = MatchKind::Prefix;
        } else {
            tokens.push(Token::Rest);
            *kind = MatchKind::Regex;
        }
    } else {
        tokens.push(Token::Folders);
        *kind = MatchKind::Regex;
    }
    if first_token {
        *kind = MatchKind::Suffix;
    }
    i
}

/// The token for `c`, read just before `chars[i]` (not the start of a `**`), and where
/// reading goes on.
fn single_token(
    chars: &[char],
    i: usize,
    c: char,
    unknown: Option<char>,
) -> Result<(Token, usize), String> {
    Ok(match c {
        '*' => (Token::Star, i),
        '?' => (Token::Question, i),
        '\\' => match chars.get(i) {
            Some(&e) if Some(e) == unknown => (Token::Star, i + 1),
            Some(&e) => (Token::Escaped(e), i + 1),
            None => (Token::Literal('\\'), i),
        },
        '[' => {
            let (class, next) =
                parse_class(chars, i).map_err(|e| format!("is not a valid pattern ({e})"))?;
            let raw = class.raw.as_str();
            if raw.contains(['*', '?']) || raw.contains("[:") || escapes_letter(raw) {
                return Err(
                    "uses a `[...]` class that Docker reads as a different regular expression"
                        .into(),
                );
            }
            (Token::Class(class), next)
        }
        c => (Token::Literal(c), i),
    })
}

/// Whether a class body as written escapes a letter or digit (`\d`, which Go regexes read as a class).
fn escapes_letter(raw: &str) -> bool {
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.next().is_some_and(|e| !e.is_ascii_punctuation()) {
            return true;
        }
    }
    false
}

fn regex_globs(tokens: &[Token]) -> Result<Vec<String>, String> {
    let mut globs = vec![String::new()];
    for (index, token) in tokens.iter().enumerate() {
        match token {
            Token::Literal('^') if index == 0 => {}
            Token::Literal('^') => {
                return Err(
                    "uses `^` outside a `[...]` class, which Docker reads as a regex anchor".into(),
                )
            }
            Token::Literal(c) => globs.iter_mut().for_each(|g| push_literal(g, *c)),
            Token::Escaped(c) if c.is_ascii_punctuation() => {
                globs.iter_mut().for_each(|g| push_literal(g, *c))
            }
            Token::Escaped(c) => {
                return Err(format!(
                    "escapes `{c}`, which Docker reads as a regex escape"
                ))
            }
            Token::Star => globs.iter_mut().for_each(|g| g.push('*')),
            Token::Question => globs.iter_mut().for_each(|g| g.push('?')),
            Token::Class(class) => {
                let (glob, _) = class_glob(class, false)?;
                globs.iter_mut().for_each(|g| g.push_str(&glob));
            }
            Token::Folders => {
                globs = globs
                    .into_iter()
                    .flat_map(|g| {
                        if g.is_empty() || g.ends_with('/') {
                            vec![format!("{g}**/")]
                        } else {
                            // `a(.*/)?b`: `ab`, or `a`, anything ending in `/`, then `b`.
                            vec![g.clone(), format!("{g}*/**/")]
                        }
                    })
                    .collect();
            }
            Token::Rest => {
                globs = globs
                    .into_iter()
                    .flat_map(|g| {
                        if g.is_empty() {
                            vec!["**".to_string()]
                        } else if g.ends_with('/') {
                            vec![format!("{g}**")]
                        } else {
                            vec![format!("{g}*"), format!("{g}*/**")]
                        }
                    })
                    .collect();
            }
        }
        if globs.len() > MAX_GLOBS {
            return Err("needs too many globs to match exactly".into());
        }
    }
    Ok(globs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(ignore: &str, path: &str) -> bool {
        DockerIgnore::parse(ignore).unwrap().is_excluded(path)
    }

    #[test]
    fn matches_like_docker() {
        // (ignore file, path, excluded)
        let rows: &[(&str, &str, bool)] = &[
            // plain names cover everything below them
            ("node_modules", "node_modules", true),
            ("node_modules", "node_modules/a/b.js", true),
            ("node_modules", "src/node_modules/a.js", false),
            ("node_modules/", "node_modules/a.js", true),
            // `*` stays in one segment; `*.md` only at the root
            ("*.md", "README.md", true),
            ("*.md", "docs/README.md", false),
            ("*/*.md", "docs/README.md", true),
            ("*/*.md", "docs/x/README.md", false),
            ("*", "anything/at/all", true),
            ("*", ".env", true),
            // `**` spans folders, including none
            ("**/*.md", "README.md", true),
            ("**/*.md", "a/b/c/README.md", true),
            ("**/*.md", "a/b/c/README.mdx", false),
            ("docs/**", "docs/a/b", true),
            ("docs/**/*.png", "docs/x.png", true),
            ("docs/**/*.png", "docs/a/b/x.png", true),
            ("docs/**/*.png", "img/x.png", false),
            ("**", "a/b", true),
            ("**/test", "test", true),
            ("**/test", "a/test/b.go", true),
            ("**/test", "a/latest", false),
            // Docker's quirks for `**` glued to other characters
            ("**.md", "a/b/README.md", true),
            ("**.md", "xmd", false),
            ("**md", "a/xmd", true),
            ("a**", "abc/d", true),
            ("a**", "xa", false),
            ("a**b", "ab", true),
            ("a**b", "ax/b", true),
            ("a**b", "a/x/y/b", true),
            ("a**b", "axb", false),
            ("x/a**/b", "x/ab", true),
            ("*a**", "za", true),
            ("*a**", "za/q", true),
            // `?` and classes
            ("?.txt", "a.txt", true),
            ("?.txt", "ab.txt", false),
            ("file[0-9].log", "file7.log", true),
            ("file[0-9].log", "filex.log", false),
            ("[!a]bc", "!bc", true),
            ("[!a]bc", "abc", true),
            ("[!a]bc", "xbc", false),
            ("[^a]bc", "xbc", true),
            ("[^a]bc", "abc", false),
            ("x[^a]y", "x/y", true),
            // escapes
            ("\\*.md", "*.md", true),
            ("\\*.md", "a.md", false),
            ("a\\?b", "a?b", true),
            ("a\\?b", "axb", false),
            ("\\[x]", "[x]", true),
            // cleaning: leading `/`, `./`, `..`, doubled slashes
            ("/build", "build/out.o", true),
            ("./build", "build/out.o", true),
            ("a/../build", "build", true),
            ("a//b", "a/b", true),
            ("  spaced  ", "spaced", true),
            // comments and blank lines
            ("# comment\n\nbuild", "build", true),
            ("# build", "# build", false),
            (" # build", "# build", true),
            ("\u{feff}build", "build", true),
            ("build\r\n", "build", true),
            // exceptions: the last matching rule wins
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md", "CHANGES.md", true),
            ("*.md\n!README.md\nREADME.md", "README.md", true),
            ("! README.md\n*.md", "README.md", true),
            ("docs\n!docs/keep.txt", "docs/keep.txt", false),
            ("docs\n!docs/keep.txt", "docs/other.txt", true),
            ("*\n!src", "src/main.rs", false),
            ("*\n!src", "target/x", true),
            ("*\n!src\nsrc/gen", "src/gen/x.rs", true),
            ("**/*.go\n!cmd/**", "cmd/a/main.go", false),
            ("**/*.go\n!cmd/**", "pkg/a.go", true),
            // where Docker's two implementations disagree, a path is excluded only if both exclude it
            ("a\n!a/x\na", "a/x", false),
            ("a/b\n!a", "a/b/x", false),
        ];
        for &(ignore, path, want) in rows {
            assert_eq!(
                excluded(ignore, path),
                want,
                "ignore {ignore:?}, path {path:?}"
            );
        }
    }

    #[test]
    fn rejects_what_docker_rejects() {
        let rows: &[(&str, usize, PatternError)] = &[
            ("!", 1, PatternError::EmptyException),
            ("a\n!  ", 2, PatternError::EmptyException),
            ("!/", 1, PatternError::EmptyException),
            (
                "src/[a",
                1,
                PatternError::Syntax("a `[` character class is never closed with `]`"),
            ),
            (
                "[]a]",
                1,
                PatternError::Syntax("`-` or `]` is misplaced in a character class"),
            ),
            (
                "[-a]",
                1,
                PatternError::Syntax("`-` or `]` is misplaced in a character class"),
            ),
            (
                "ok\nx\\",
                2,
                PatternError::Syntax("the pattern ends with a lone `\\`"),
            ),
            ("[z-a]", 1, PatternError::RangeOutOfOrder('z', 'a')),
        ];
        for (text, line, source) in rows {
            let err = DockerIgnore::parse(text).unwrap_err();
            assert_eq!((err.line, &err.source), (*line, source), "{text:?}");
        }
        let err = DockerIgnore::parse("a\n  [x  ").unwrap_err();
        assert_eq!(err.to_string(), "line 2: bad pattern `[x`");
    }

    #[test]
    fn regex_quirks_without_a_glob_exclude_nothing() {
        for text in ["a^b*", "\\d*", "[a*]b", "[[:alpha:]]x"] {
            let ignore = DockerIgnore::parse(&format!("build\n{text}")).unwrap();
            assert!(ignore.caveat().is_some(), "{text}");
            assert!(!ignore.is_excluded("build"), "{text}");
        }
        let ignore = DockerIgnore::parse("^a*").unwrap();
        assert!(ignore.caveat().is_none());
        assert!(ignore.is_excluded("abc"));
    }

    #[test]
    fn single_character_rules_match_non_ascii_characters() {
        assert!(excluded("caf?", "café"));
        assert!(excluded("caf?", "cafe"));
        assert!(!excluded("caf??", "café"));
        assert!(excluded("café", "café"));
        assert!(excluded("*", "über/x"));
        assert!(excluded("[^a]bc", "ébc"));
        assert!(!excluded("[a-z]bc", "ébc"));
        assert!(excluded("docs/?/x", "docs/ü/x/y"));
        assert!(!excluded("caf?\n!café", "café"));
        assert!(excluded("[é]x", "éx"));
        assert!(!excluded("[é]x", "ex"));
        assert!(excluded("[a-é]x", "èx"));
        assert!(excluded("[a-é]x", "bx"));
        assert!(!excluded("[^é]x", "éx"));
        assert!(excluded("[^é]x", "ex"));
        assert!(excluded("[\\]é\\-]x", "-x"));
        assert!(excluded("[\\]é\\-]x", "]x"));
        assert!(excluded("[\\]é\\-]x", "éx"));
        assert!(!excluded("[\\]é\\-]x", "ex"));
    }

    #[test]
    fn empty_and_default_exclude_nothing() {
        assert!(!DockerIgnore::default().is_excluded("a"));
        assert!(!excluded("", "a"));
        assert!(!excluded("# only a comment", "a"));
        assert!(!excluded("/", "a"));
        assert!(!excluded(".", "a"));
        assert!(!excluded("../a", "a"));
    }

    #[test]
    fn translates_the_ignore_dialect() {
        let rows: &[(&str, &[&str])] = &[
            ("a/b", &["a/b"]),
            ("a{b}", &["a\\{b\\}"]),
            ("a,b", &["a\\,b"]),
            ("a/**", &["a/**"]),
            ("ab**", &["ab*", "ab*/**"]),
            ("**", &["**"]),
            ("**/a", &["**/a"]),
            ("**.md", &["**/*.md"]),
            ("**/*.md", &["**/*.md"]),
            ("a/**/b", &["a/**/b"]),
            ("a**b", &["ab", "a*/**/b"]),
            ("a*/**", &["a*/**"]),
            ("*a**", &["*a*", "*a*/**"]),
            ("[!a]", &["[a!]"]),
            ("[^a]", &["{[!a],/}"]),
            ("[^/]", &["?"]),
            ("[a-c]x", &["[a-c]x"]),
            ("[a]", &["a"]),
            ("[/]", &["/"]),
            ("[!^]", &["{!,^}"]),
            ("[\\]a]", &["[]a]"]),
        ];
        for (pattern, want) in rows {
            let got =
                ignore_dialect_globs(pattern, None).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(
                got,
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{pattern}"
            );
            for glob in &got {
                compile(glob).unwrap_or_else(|e| panic!("{pattern} -> {glob}: {e}"));
            }
        }
        assert_eq!(
            ignore_dialect_globs("a\u{e000}b", Some('\u{e000}')).unwrap(),
            vec!["a*b".to_string()]
        );
    }

    /// Class ranges, negated?, expected glob, paths it must match, paths it must not.
    type ClassRow<'a> = (
        &'a [(char, char)],
        bool,
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
    );

    #[test]
    fn renders_awkward_classes_so_globset_reads_them_back() {
        let rows: &[ClassRow] = &[
            (
                &[(']', ']'), ('a', 'a')],
                false,
                "[]a]",
                &["]", "a"],
                &["b"],
            ),
            (
                &[('!', '!'), ('a', 'a')],
                false,
                "[a!]",
                &["!", "a"],
                &["b"],
            ),
            (
                &[('-', '-'), ('a', 'a')],
                false,
                "[a-]",
                &["-", "a"],
                &["b"],
            ),
            (
                &[('[', '['), (':', ':')],
                false,
                "[:[]",
                &["[", ":"],
                &["]"],
            ),
            (
                &[('!', '!'), ('^', '^')],
                false,
                "{!,^}",
                &["!", "^"],
                &["a"],
            ),
            (
                &[('!', '!'), ('^', '^'), ('[', '[')],
                false,
                "[[!^]",
                &["!", "^", "["],
                &["a"],
            ),
            (&[('a', 'a')], true, "{[!a],/}", &["b", "!", "/"], &["a"]),
            (
                &[('+', '0')],
                false,
                "{[+,.0-],/}",
                &["+", ",", "-", ".", "0", "/"],
                &["1"],
            ),
        ];
        for &(ranges, negated, want, yes, no) in rows {
            let class = Class {
                negated,
                ranges: ranges.to_vec(),
                raw: String::new(),
            };
            let (glob, _) = class_glob(&class, false).unwrap();
            assert_eq!(glob, want);
            let matcher = compile(&glob).unwrap().compile_matcher();
            for y in yes {
                assert!(matcher.is_match(y), "{glob} should match {y}");
            }
            for n in no {
                assert!(!matcher.is_match(n), "{glob} should not match {n}");
            }
        }
    }

    #[test]
    fn cleans_like_go() {
        let rows = [
            ("", "."),
            ("a/b/../c", "a/c"),
            ("/../a", "/a"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("./a//b/", "a/b"),
            ("/", "/"),
        ];
        for (path, want) in rows {
            assert_eq!(go_clean(path), want, "{path}");
        }
    }

    #[test]
    fn many_paths_stay_fast() {
        let ignore =
            DockerIgnore::parse("**/*.log\n!keep/**\nnode_modules\n*.tmp\n!important.tmp\n")
                .unwrap();
        let start = std::time::Instant::now();
        let mut count = 0;
        for i in 0..50_000 {
            if ignore.is_excluded(&format!("svc-{}/src/mod-{}/file-{i}.log", i % 200, i % 10)) {
                count += 1;
            }
        }
        assert_eq!(count, 50_000);
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn patterns_are_compared_the_way_docker_compares_them() {
        use MatchKind::*;
        let unknown = Some('\u{E000}');
        for (pattern, kind, tokens) in [
            ("a/b", Exact, 3),
            ("a/**", Prefix, 2),
            ("**/a", Suffix, 2),
            ("**.md", Suffix, 4),
            ("**", Suffix, 0),
            ("a*/**", Regex, 4),
            ("a/**/b", Regex, 4),
            ("a]", Regex, 2),
            ("a\\", Regex, 2),
            ("a\\.b", Regex, 3),
            ("[ab]", Regex, 1),
            ("?", Regex, 1),
            ("a\u{E000}", Regex, 2),
            ("a\\\u{E000}", Regex, 2),
        ] {
            let (found, k) = tokenize(pattern, unknown).unwrap();
            assert_eq!((k, found.len()), (kind, tokens), "{pattern}");
        }
        let (found, _) = tokenize("a\\\u{E000}", unknown).unwrap();
        assert!(matches!(found[1], Token::Star));
        assert!(tokenize("[a", None).is_err());
        assert!(tokenize("[*]", None).is_err());
    }
}
