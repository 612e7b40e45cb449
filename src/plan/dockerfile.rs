//! What a Dockerfile reads from its build context.
//!
//! [`read_build_inputs`] walks a Dockerfile the way BuildKit's parser does (parser directives,
//! the escape character, line continuations, comments, heredocs) and returns, for every
//! `COPY`/`ADD` source and every `RUN --mount=type=bind` without `from=`, a glob of the context
//! paths it reads. Everything it cannot read with certainty becomes an [`Unreadable`] entry;
//! the planner then counts every file of the context, so a build input is never missed.
//!
//! # Rules
//!
//! - `COPY --from=...` (a stage, an index or an image) reads nothing from the context.
//! - `ADD` sources that are URLs (`http://`, `https://`, `git@`, `git://`, `ssh://`) are skipped,
//!   and so are heredoc sources (`COPY <<EOF /dst`); heredoc bodies are never read as
//!   instructions.
//! - Sources are cleaned like Docker cleans them: `./` and `.` segments dropped, `..` resolved
//!   without leaving the context, `.` or `/` alone mean the whole context.
//! - Plain sources use Go's `filepath.Match` syntax (`*`, `?`, `[...]`, `\` escapes); with
//!   `--parents`, sources and the `/./` pivot use Docker's ignore-file dialect (with `**`).
//! - Variables (`$A`, `${A}`, `${A:-x}`, `${A-x}`, `${A:+x}`, `${A+x}`) are replaced with the
//!   values of `ARG` and `ENV` in scope: global `ARG`s (before the first `FROM`) count inside a
//!   stage only when redeclared there; `ENV` carries into stages built `FROM` an earlier stage;
//!   the service's build args override declared `ARG`s. A variable with no known value (an
//!   `ARG` without default nor build arg, a platform `ARG` like `TARGETARCH`) matches any one
//!   path segment, or nothing. An undeclared variable is empty, as in Docker.
//! - `--exclude` patterns apply when the source is the context root or a wildcard at its top;
//!   for a source below a folder they are ignored (Docker's documentation leaves open whether
//!   they are relative to the source or the context, and ignoring them only risks a rebuild).
//! - Every stage counts: which stage a build stops at (`--target`) does not narrow the inputs.
//! - `ONBUILD` instructions run in other builds and read nothing here.

use std::collections::BTreeMap;

use crate::plan::dockerignore::{
    check_go_pattern, class_glob, go_clean, ignore_dialect_globs, parse_class, push_literal,
};

/// What a Dockerfile reads from its build context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInputs {
    pub sources: Vec<ContextSource>,
    pub unreadable: Vec<Unreadable>,
}

/// One source read from the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextSource {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// How the instruction looked, for change reasons: `Dockerfile COPY ./pb/`.
    pub rule: String,
    /// Context-relative glob (monoship's dialect, see [`crate::plan::glob`]); `""` is the whole
    /// context. The planner matches it and everything below it.
    pub pattern: String,
    /// Context-relative globs of files this instruction leaves out (a match on a folder covers
    /// what is below it).
    pub excludes: Vec<String>,
}

/// An instruction that could not be read with certainty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub line: usize,
    /// The start of the instruction.
    pub instruction: String,
    pub why: String,
}

/// Stands for a variable with no known value while a source is translated; it reads as `*`.
const UNKNOWN: char = '\u{E000}';
/// Most alternatives one source may expand to (each unknown variable doubles them).
const MAX_ALTERNATIVES: usize = 16;
/// Platform `ARG`s whose values contain `/`: no one-segment stand-in covers them.
const PLATFORM_PATH_ARGS: [&str; 2] = ["TARGETPLATFORM", "BUILDPLATFORM"];

/// A variable's value as far as the Dockerfile and the build args tell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Known(String),
    Unknown,
}

type Scope = BTreeMap<String, Value>;

/// Reads the build inputs of a Dockerfile; `build_args` override the defaults of declared
/// `ARG`s, as `docker build --build-arg` does.
pub fn read_build_inputs(dockerfile: &str, build_args: &BTreeMap<String, String>) -> BuildInputs {
    let mut out = BuildInputs::default();
    let instructions = split_instructions(dockerfile, &mut out);
    let mut scopes = Scopes::default();
    for ins in instructions {
        let (keyword, rest) = split_keyword(&ins.text);
        let keyword = keyword.to_ascii_uppercase();
        match keyword.as_str() {
            "FROM" => scopes.enter_stage(rest),
            "ARG" => scopes.declare_args(rest, build_args),
            "ENV" => {
                let problem = scopes.set_env(rest).err();
                out.unreadable
                    .extend(problem.map(|why| unreadable(&ins, why)));
            }
            "COPY" | "ADD" => read_copy(&ins, &keyword, rest, scopes.current(), &mut out),
            "RUN" => read_run_mounts(&ins, rest, scopes.current(), &mut out),
            _ => {}
        }
    }
    out
}

/// The scope of instructions before the first `FROM` see inside a stage: nothing.
static NO_SCOPE: Scope = BTreeMap::new();

/// The variables known at each point of a Dockerfile, as its instructions are read in order.
#[derive(Default)]
struct Scopes {
    /// `ARG`s declared before the first `FROM`.
    global: BTreeMap<String, Value>,
    /// Each stage's scope by its `AS` name, so a later `FROM <name>` inherits its ENV.
    stages: BTreeMap<String, Scope>,
    /// The current stage's scope; `None` before the first `FROM`.
    scope: Option<Scope>,
    /// The `AS` name of the current stage.
    stage: Option<String>,
}

impl Scopes {
    fn current(&self) -> &Scope {
        self.scope.as_ref().unwrap_or(&NO_SCOPE)
    }

    /// `FROM base [AS name]`: a new scope, with the ENV of `base` when it is an earlier stage.
    fn enter_stage(&mut self, rest: &str) {
        let words: Vec<&str> = rest
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let base = words
            .first()
            .map(|w| w.to_ascii_lowercase())
            .unwrap_or_default();
        // ENV carries into a stage built from an earlier one; ARGs do not.
        let mut new_scope: Scope = self.stages.get(&base).cloned().unwrap_or_default();
        new_scope.retain(|k, _| k.starts_with("env:"));
        self.stage = (words.len() >= 3 && words[1].eq_ignore_ascii_case("as"))
            .then(|| words[2].to_ascii_lowercase());
        if let Some(name) = &self.stage {
            self.stages.insert(name.clone(), new_scope.clone());
        }
        self.scope = Some(new_scope);
    }

    /// `ARG a=1 b`: a build arg wins over the default; a bare `ARG` in a stage takes the global
    /// value of the same name.
    fn declare_args(&mut self, rest: &str, build_args: &BTreeMap<String, String>) {
        for (name, default) in parse_arg(rest) {
            let value = match build_args.get(&name) {
                Some(v) => Value::Known(v.clone()),
                None => match (&self.scope, default) {
                    (Some(s), Some(d)) => expand_known(&d, s),
                    (None, Some(d)) => expand_known(&d, &global_scope(&self.global)),
                    (Some(_), None) => self.global.get(&name).cloned().unwrap_or(Value::Unknown),
                    (None, None) => Value::Unknown,
                },
            };
            match &mut self.scope {
                Some(s) => {
                    s.insert(format!("arg:{name}"), value);
                }
                None => {
                    self.global.insert(name, value);
                }
            }
        }
    }

    /// `ENV a=1`, inside a stage (before any `FROM` it is ignored).
    ///
    /// # Errors
    /// When neither ENV form fits; the stage is still recorded.
    fn set_env(&mut self, rest: &str) -> Result<(), &'static str> {
        let Some(s) = &mut self.scope else {
            return Ok(());
        };
        let pairs = parse_env(rest);
        for (name, raw) in pairs.iter().flatten() {
            let v = expand_known(raw, s);
            s.insert(format!("env:{name}"), v);
        }
        if let Some(name) = &self.stage {
            self.stages.insert(name.clone(), s.clone());
        }
        pairs
            .map(|_| ())
            .ok_or("an ENV instruction could not be parsed")
    }
}

/// An image a stage starts `FROM`: the reference after `ARG` substitution, and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    pub line: usize,
    pub reference: String,
}

/// The images a Dockerfile's stages start from, and the `FROM` lines whose image cannot be
/// known without building (a platform `ARG`, an `ARG` without a value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseImages {
    /// In order of first use, each once; not `scratch`, not earlier stages.
    pub images: Vec<BaseImage>,
    pub unreadable: Vec<Unreadable>,
}

/// The `ARG`s BuildKit defines for every `FROM` without a declaration; their values depend on
/// the platform built for.
const PLATFORM_ARGS: [&str; 8] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// Reads the image of every stage's `FROM`, as Docker substitutes it: with the `ARG`s
/// declared before the first `FROM` (`build_args` override their defaults). `scratch` and
/// the names of earlier stages are not images; a `--platform` flag does not change the name.
/// Images that `COPY --from=` / `ADD --from=` and `RUN --mount=...,from=` read are base
/// images too (with the stage's `ARG`s substituted), unless they name a stage or its index.
pub fn read_base_images(dockerfile: &str, build_args: &BTreeMap<String, String>) -> BaseImages {
    let mut out = BaseImages::default();
    let mut ignored = BuildInputs::default();
    let instructions = split_instructions(dockerfile, &mut ignored);
    let every_stage: Vec<String> = instructions
        .iter()
        .filter_map(|ins| match split_keyword(&ins.text) {
            (k, rest) if k.eq_ignore_ascii_case("FROM") => from_words(rest).1,
            _ => None,
        })
        .collect();
    let mut scopes = Scopes::default();
    let mut earlier_stages: Vec<String> = Vec::new();
    for ins in &instructions {
        let (keyword, rest) = split_keyword(&ins.text);
        match keyword.to_ascii_uppercase().as_str() {
            "ARG" => scopes.declare_args(rest, build_args),
            "ENV" => {
                let _ = scopes.set_env(rest);
            }
            "FROM" => {
                let (image, name) = from_words(rest);
                out.add(ins, from_image(image, &scopes.global), &earlier_stages);
                earlier_stages.extend(name);
                scopes.enter_stage(rest);
            }
            "COPY" | "ADD" | "RUN" => {
                for from in flag_froms(rest) {
                    if from.bytes().all(|b| b.is_ascii_digit()) {
                        continue; // a stage by its index
                    }
                    let image = expand_flag(&from, scopes.current());
                    out.add(ins, image, &every_stage);
                }
            }
            _ => {}
        }
    }
    out
}

impl BaseImages {
    /// Records the image an instruction reads, unless it is `scratch` or one of `stages`.
    fn add(&mut self, ins: &Instruction, image: Result<String, String>, stages: &[String]) {
        match image {
            Ok(i) if i.eq_ignore_ascii_case("scratch") => {}
            Ok(i) if stages.contains(&i.to_ascii_lowercase()) => {}
            Ok(reference) => {
                if !self.images.iter().any(|i| i.reference == reference) {
                    let line = ins.line;
                    self.images.push(BaseImage { line, reference });
                }
            }
            Err(why) => self.unreadable.push(unreadable(ins, &why)),
        }
    }
}

/// The image word of a `FROM` and its stage name (`AS name`, lowercased), flags skipped.
fn from_words(rest: &str) -> (&str, Option<String>) {
    let words: Vec<&str> = rest
        .split_whitespace()
        .filter(|w| !w.starts_with("--"))
        .collect();
    let name = (words.len() >= 3 && words[1].eq_ignore_ascii_case("as"))
        .then(|| words[2].to_ascii_lowercase());
    (words.first().copied().unwrap_or(""), name)
}

/// The `--from=` values of a `COPY`/`ADD` and the `from=` of each `RUN --mount=`.
fn flag_froms(rest: &str) -> Vec<String> {
    let flags = rest.split_whitespace().take_while(|w| w.starts_with("--"));
    let mut froms = Vec::new();
    for flag in flags {
        if let Some(from) = flag.strip_prefix("--from=") {
            froms.push(from.to_string());
        } else if let Some(spec) = flag.strip_prefix("--mount=") {
            let fields = spec.split(',').filter_map(|f| f.split_once('='));
            froms.extend(
                fields
                    .filter(|(k, _)| k.trim().eq_ignore_ascii_case("from"))
                    .map(|(_, v)| v.trim().trim_matches('"').to_string()),
            );
        }
    }
    froms
}

/// A flag value with the stage's variables substituted; an error when it is not certain.
fn expand_flag(value: &str, scope: &Scope) -> Result<String, String> {
    match expand(value, scope).as_deref() {
        Ok([one]) if !one.contains(UNKNOWN) && !one.is_empty() => Ok(one.clone()),
        Ok(_) => Err(unknown_from(value)),
        Err(e) => Err(format!("the image `{}`: {e}", shorten(value, 60))),
    }
}

/// The image word of a `FROM` with the global `ARG`s substituted; an error when its value
/// is not certain.
fn from_image(word: &str, global: &BTreeMap<String, Value>) -> Result<String, String> {
    let mut scope = global_scope(global);
    for name in PLATFORM_ARGS {
        scope.entry(format!("arg:{name}")).or_insert(Value::Unknown);
    }
    let alternatives =
        expand(word, &scope).map_err(|e| format!("the image `{}`: {e}", shorten(word, 60)))?;
    match alternatives.as_slice() {
        [one] if one.contains(UNKNOWN) => Err(unknown_from(word)),
        [one] if one.is_empty() => Err("the FROM names no image".into()),
        [one] => Ok(one.clone()),
        _ => Err(unknown_from(word)),
    }
}

fn unknown_from(word: &str) -> String {
    format!(
        "the image `{}` depends on an ARG without a value (or the platform)",
        shorten(word, 60)
    )
}

/// Every instruction's first line and text (continuations joined), in order: the legacy
/// builder's `Step N` is the Nth, a BuildKit step is found by its text.
pub fn instructions(dockerfile: &str) -> Vec<(usize, String)> {
    let mut ignored = BuildInputs::default();
    split_instructions(dockerfile, &mut ignored)
        .into_iter()
        .map(|i| (i.line, i.text))
        .collect()
}

fn global_scope(global: &BTreeMap<String, Value>) -> Scope {
    global
        .iter()
        .map(|(k, v)| (format!("arg:{k}"), v.clone()))
        .collect()
}

fn lookup(scope: &Scope, name: &str) -> Option<Value> {
    scope
        .get(&format!("env:{name}"))
        .or_else(|| scope.get(&format!("arg:{name}")))
        .cloned()
}

/// One logical instruction: its text with continuations joined, and its first line.
struct Instruction {
    line: usize,
    text: String,
}

fn unreadable(ins: &Instruction, why: &str) -> Unreadable {
    Unreadable {
        line: ins.line,
        instruction: shorten(&ins.text, 80),
        why: why.to_string(),
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// The parser directives at the top of the file; only `escape` changes how we read.
fn escape_directive(lines: &[&str]) -> char {
    let mut escape = '\\';
    for line in lines {
        let t = line.trim();
        let Some(body) = t.strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = body.split_once('=') else {
            break;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            break;
        }
        if key.eq_ignore_ascii_case("escape") {
            match value.trim() {
                "`" => escape = '`',
                "\\" => escape = '\\',
                _ => {}
            }
        }
    }
    escape
}

/// Splits a Dockerfile into logical instructions, skipping comments, blank lines and heredoc
/// bodies. Problems (an unterminated heredoc) are recorded in `out`.
fn split_instructions(text: &str, out: &mut BuildInputs) -> Vec<Instruction> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let escape = escape_directive(&lines);
    let mut instructions = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first = lines[i].trim_start();
        if first.is_empty() || first.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let mut text = String::new();
        loop {
            let line = lines[i];
            let trimmed_end = line.trim_end();
            if let Some(body) = trimmed_end.strip_suffix(escape) {
                // A continuation, unless the escape character is itself escaped.
                let escaped_escape = body.ends_with(escape)
                    && !body[..body.len() - escape.len_utf8()].ends_with(escape);
                if !escaped_escape {
                    text.push_str(body);
                    i += 1;
                    // Comment and empty lines inside a continuation are dropped.
                    while i < lines.len()
                        && (lines[i].trim().is_empty() || lines[i].trim_start().starts_with('#'))
                    {
                        i += 1;
                    }
                    if i < lines.len() {
                        continue;
                    }
                    break;
                }
            }
            text.push_str(line);
            i += 1;
            break;
        }
        let ins = Instruction {
            line: start + 1,
            text: text.trim().to_string(),
        };
        i = skip_heredocs(&ins, &lines, i, out);
        instructions.push(ins);
    }
    instructions
}

/// Skips the bodies of the heredocs `ins` opens, which start at `lines[i]`; returns the line
/// after the last one. An unclosed heredoc is recorded in `out`.
fn skip_heredocs(ins: &Instruction, lines: &[&str], mut i: usize, out: &mut BuildInputs) -> usize {
    let (keyword, rest) = split_keyword(&ins.text);
    if !matches!(
        keyword.to_ascii_uppercase().as_str(),
        "RUN" | "COPY" | "ADD"
    ) {
        return i;
    }
    for (strip_tabs, delimiter) in heredoc_delimiters(rest) {
        let mut closed = false;
        while i < lines.len() {
            let l = if strip_tabs {
                lines[i].trim_start_matches('\t')
            } else {
                lines[i]
            };
            i += 1;
            if l == delimiter {
                closed = true;
                break;
            }
        }
        if !closed {
            out.unreadable.push(unreadable(
                ins,
                &format!("the heredoc `{delimiter}` is never closed"),
            ));
        }
    }
    i
}

fn split_keyword(text: &str) -> (&str, &str) {
    let t = text.trim_start();
    match t.find(char::is_whitespace) {
        Some(i) => (&t[..i], t[i..].trim_start()),
        None => (t, ""),
    }
}

/// The heredocs an instruction opens, in order: whether `<<-` strips tabs, and the delimiter.
fn heredoc_delimiters(rest: &str) -> Vec<(bool, String)> {
    let mut found = Vec::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i + 2 < bytes.len() + 1 {
        if bytes[i..].starts_with(b"<<") && !bytes[i..].starts_with(b"<<<") {
            let mut j = i + 2;
            let strip = bytes.get(j) == Some(&b'-');
            if strip {
                j += 1;
            }
            let quote = bytes.get(j).copied().filter(|b| *b == b'"' || *b == b'\'');
            if quote.is_some() {
                j += 1;
            }
            let name_start = j;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            if j > name_start
                && (bytes[name_start].is_ascii_alphabetic() || bytes[name_start] == b'_')
            {
                if let Some(q) = quote {
                    if bytes.get(j) != Some(&q) {
                        i = j;
                        continue;
                    }
                }
                found.push((strip, rest[name_start..j].to_string()));
            }
            i = j.max(i + 2);
        } else {
            i += 1;
        }
    }
    found
}

/// `ARG a=1 b c="x y"`: names with optional defaults (quotes removed).
fn parse_arg(rest: &str) -> Vec<(String, Option<String>)> {
    shell_words(rest)
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w, None),
        })
        .collect()
}

/// `ENV a=1 b="x y"` or the legacy `ENV a the rest`; `None` when neither form fits.
fn parse_env(rest: &str) -> Option<Vec<(String, String)>> {
    let words = shell_words(rest);
    let first = words.first()?;
    if first.contains('=') {
        words
            .into_iter()
            .map(|w| {
                w.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    } else {
        let (name, value) = split_keyword(rest);
        Some(vec![(name.to_string(), value.to_string())])
    }
}

/// Splits on whitespace outside quotes, removing the quotes (values keep `$` for expansion).
fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            // Outside quotes Docker's lexer drops the backslash and keeps the next character
            // as it is, so `\*.txt` reaches the pattern match as `*.txt`, a wildcard. `\$`
            // stays escaped for the expansion that follows.
            (None, '\\') => {
                match chars.next() {
                    Some('$') => cur.push_str("\\$"),
                    Some(n) => cur.push(n),
                    None => cur.push('\\'),
                }
                in_word = true;
            }
            (Some('"'), '\\') => {
                match chars.peek() {
                    Some(&n) if n == '"' || n == '\\' => {
                        cur.push(n);
                        chars.next();
                    }
                    _ => cur.push('\\'),
                }
                in_word = true;
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Expands variables where every value must be known (ARG defaults, ENV values).
fn expand_known(raw: &str, scope: &Scope) -> Value {
    match expand(raw, scope) {
        Ok(alts) if alts.len() == 1 && !alts[0].contains(UNKNOWN) => {
            Value::Known(alts.into_iter().next().unwrap_or_default())
        }
        _ => Value::Unknown,
    }
}

/// Expands `$VAR` forms in `raw`. Unknown values become [`UNKNOWN`], and also the empty
/// string, as alternatives.
fn expand(raw: &str, scope: &Scope) -> Result<Vec<String>, String> {
    let chars: Vec<char> = raw.chars().collect();
    let mut alts = vec![String::new()];
    let push_all = |alts: &mut Vec<String>, s: &str| alts.iter_mut().for_each(|a| a.push_str(s));
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && chars.get(i + 1) == Some(&'$') {
            push_all(&mut alts, "\\$");
            i += 2;
            continue;
        }
        if c != '$' {
            push_all(&mut alts, c.encode_utf8(&mut [0; 4]));
            i += 1;
            continue;
        }
        let Some(reference) = read_reference(&chars, i)? else {
            // A `$` not followed by a name stands for itself.
            push_all(&mut alts, "$");
            i += 1;
            continue;
        };
        let outcomes = reference_outcomes(&reference, scope)?;
        alts = combine(&alts, &outcomes)?;
        i = reference.next;
    }
    Ok(alts)
}

/// A variable reference in a Dockerfile word: `$NAME` or `${NAME<modifier><word>}`.
#[derive(Debug, PartialEq, Eq)]
struct Reference {
    name: String,
    /// `""`, `:-`, `-`, `:+` or `+`.
    modifier: &'static str,
    word: String,
    /// The index just after the reference.
    next: usize,
}

/// Reads the reference starting at `chars[at]` (a `$`); `None` when no name follows it.
fn read_reference(chars: &[char], at: usize) -> Result<Option<Reference>, String> {
    let reference = if chars.get(at + 1) == Some(&'{') {
        let close = chars[at + 2..]
            .iter()
            .position(|&c| c == '}')
            .ok_or("a `${` is never closed")?
            + at
            + 2;
        let inner: String = chars[at + 2..close].iter().collect();
        let name_len = inner
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .count();
        let tail = &inner[name_len..];
        let (modifier, word) = [":-", ":+", "-", "+"]
            .into_iter()
            .find_map(|m| tail.strip_prefix(m).map(|w| (m, w)))
            .or(tail.is_empty().then_some(("", "")))
            .ok_or_else(|| format!("the expansion `${{{inner}}}` is not one monoship reads"))?;
        Reference {
            name: inner[..name_len].to_string(),
            modifier,
            word: word.to_string(),
            next: close + 1,
        }
    } else {
        let len = chars[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .count();
        if len == 0 {
            return Ok(None);
        }
        Reference {
            name: chars[at + 1..at + 1 + len].iter().collect(),
            modifier: "",
            word: String::new(),
            next: at + 1 + len,
        }
    };
    if reference.name.is_empty() {
        return Err("a `${}` has no variable name".into());
    }
    Ok(Some(reference))
}

/// Each value a reference can take, given what is known of its variable.
fn reference_outcomes(reference: &Reference, scope: &Scope) -> Result<Vec<String>, String> {
    let name = reference.name.as_str();
    if PLATFORM_PATH_ARGS.contains(&name) && lookup(scope, name).is_some() {
        return Err(format!("`${name}` holds a platform with `/` in it"));
    }
    let value = lookup(scope, name);
    let word_alts = expand(&reference.word, scope)?;
    Ok(match (value, reference.modifier) {
        (Some(Value::Known(v)), "") => vec![v],
        (None, "") => vec![String::new()],
        (Some(Value::Unknown), "") => vec![UNKNOWN.to_string(), String::new()],
        (Some(Value::Known(v)), ":-") if !v.is_empty() => vec![v],
        (Some(Value::Known(v)), "-") => vec![v],
        (Some(Value::Known(_)) | None, ":-" | "-") => word_alts,
        (Some(Value::Unknown), ":-" | "-") => std::iter::once(UNKNOWN.to_string())
            .chain(word_alts)
            .collect(),
        (Some(Value::Known(v)), ":+") if !v.is_empty() => word_alts,
        (Some(Value::Known(_)), "+") => word_alts,
        (Some(Value::Known(_)) | None, ":+" | "+") => vec![String::new()],
        (Some(Value::Unknown), _) => std::iter::once(String::new()).chain(word_alts).collect(),
        _ => return Err("an expansion could not be read".into()),
    })
}

/// Every alternative so far followed by every outcome, within [`MAX_ALTERNATIVES`].
fn combine(alts: &[String], outcomes: &[String]) -> Result<Vec<String>, String> {
    let mut next = Vec::with_capacity(alts.len() * outcomes.len());
    for a in alts {
        for o in outcomes {
            next.push(format!("{a}{o}"));
        }
    }
    next.dedup();
    if next.len() > MAX_ALTERNATIVES {
        return Err("too many variables with unknown values".into());
    }
    Ok(next)
}

/// Flags of COPY/ADD (and the values we need).
#[derive(Default)]
struct CopyFlags {
    from: bool,
    parents: bool,
    excludes: Vec<String>,
}

fn read_flags<'a>(words: &'a [String], keyword: &str) -> Result<(CopyFlags, &'a [String]), String> {
    let mut flags = CopyFlags::default();
    let mut n = 0;
    for w in words {
        let Some(flag) = w.strip_prefix("--") else {
            break;
        };
        n += 1;
        let (name, value) = match flag.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (flag, None),
        };
        let boolean = |v: Option<&str>| {
            matches!(
                v,
                None | Some("true") | Some("True") | Some("TRUE") | Some("1")
            )
        };
        match (name, value) {
            ("from", Some(_)) => flags.from = true,
            ("chown" | "chmod" | "checksum", Some(_)) => {}
            ("link", v) => {
                let _ = boolean(v);
            }
            ("parents", v) => flags.parents = boolean(v),
            ("exclude", Some(p)) => flags.excludes.push(p.to_string()),
            ("keep-git-dir" | "unpack", _) if keyword == "ADD" => {}
            _ => return Err(format!("the flag `--{flag}` is not one monoship knows")),
        }
    }
    Ok((flags, &words[n..]))
}

fn is_url(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    ["http://", "https://", "git@", "git://", "ssh://"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// The words of a `COPY`/`ADD` after the keyword: flags, sources and destination, from the
/// shell form or the JSON form (flags before the array).
fn copy_words(rest: &str, json_form: bool) -> Result<Vec<String>, &'static str> {
    if json_form {
        let start = rest.find('[').unwrap_or(0);
        let mut words: Vec<String> = rest[..start]
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let list = serde_json::from_str::<Vec<String>>(rest[start..].trim())
            .map_err(|_| "its JSON form does not parse")?;
        words.extend(list);
        return Ok(words);
    }
    // Flags followed by something that looks like a JSON array but was not read as one.
    let start = rest.find(" [").map(|i| i + 1);
    Ok(match start {
        Some(s)
            if rest[..s].split_whitespace().all(|w| w.starts_with("--"))
                && rest[s..].trim_end().ends_with(']') =>
        {
            let mut words: Vec<String> = rest[..s].split_whitespace().map(str::to_string).collect();
            match serde_json::from_str::<Vec<String>>(rest[s..].trim()) {
                Ok(list) => words.extend(list),
                Err(_) => words.extend(shell_words(&rest[s..])),
            }
            words
        }
        _ => rest.split_whitespace().map(str::to_string).collect(),
    })
}

/// Whether the arguments are the JSON form: like Docker, only when the whole text parses as
/// a JSON array of strings; `[abc]*.txt /d/` is the shell form with a pattern.
fn is_json_form(rest: &str) -> bool {
    let rest = rest.trim();
    rest.starts_with('[') && serde_json::from_str::<Vec<String>>(rest).is_ok()
}

fn read_copy(ins: &Instruction, keyword: &str, rest: &str, scope: &Scope, out: &mut BuildInputs) {
    let json_form = is_json_form(rest);
    let words = match copy_words(rest, json_form) {
        Ok(words) => words,
        Err(why) => {
            out.unreadable.push(unreadable(ins, why));
            return;
        }
    };
    let (flags, args) = match read_flags(&words, keyword) {
        Ok(x) => x,
        Err(why) => {
            out.unreadable.push(unreadable(ins, &why));
            return;
        }
    };
    if flags.from {
        return;
    }
    if args.len() < 2 {
        out.unreadable.push(unreadable(
            ins,
            "it needs at least one source and a destination",
        ));
        return;
    }
    for source in &args[..args.len() - 1] {
        // Heredoc bodies and URLs are not read from the context.
        if source.starts_with("<<") || is_url(source) {
            continue;
        }
        let copy = CopySource {
            ins,
            rule: format!("Dockerfile {keyword} {}", shorten(source, 60)),
            source,
            flags: &flags,
            scope,
        };
        let unquoted = if json_form {
            source.clone()
        } else {
            shell_words(source).join(" ")
        };
        match expand(&unquoted, scope) {
            Ok(alternatives) => {
                for alt in alternatives {
                    copy.read_alternative(&alt, out);
                }
            }
            Err(why) => out.unreadable.push(unreadable(ins, &why)),
        }
    }
}

/// One source of a `COPY`/`ADD`, with what translating it needs.
struct CopySource<'a> {
    ins: &'a Instruction,
    rule: String,
    /// As written, for messages.
    source: &'a str,
    flags: &'a CopyFlags,
    scope: &'a Scope,
}

impl CopySource<'_> {
    /// Records the globs of one expansion of the source, or why it cannot be read.
    fn read_alternative(&self, alt: &str, out: &mut BuildInputs) {
        let translated = if self.flags.parents {
            parents_globs(alt)
        } else {
            plain_glob(alt).map(|g| vec![g])
        };
        let globs = match translated {
            Ok(globs) => globs,
            Err(why) => {
                let why = format!("the source `{}` {why}", shorten(self.source, 40));
                out.unreadable.push(unreadable(self.ins, &why));
                return;
            }
        };
        let excludes = match exclude_globs(&self.flags.excludes, alt, self.scope) {
            Ok(x) => x,
            Err(why) => {
                out.unreadable.push(unreadable(self.ins, &why));
                return;
            }
        };
        for pattern in globs {
            let source = ContextSource {
                line: self.ins.line,
                rule: self.rule.clone(),
                pattern,
                excludes: excludes.clone(),
            };
            if !out.sources.contains(&source) {
                out.sources.push(source);
            }
        }
    }
}

/// `--exclude` globs, kept only when the source starts at the context root (see module docs).
fn exclude_globs(excludes: &[String], source: &str, scope: &Scope) -> Result<Vec<String>, String> {
    if excludes.is_empty() {
        return Ok(vec![]);
    }
    let cleaned = clean_source(source);
    let first_segment = cleaned.split('/').next().unwrap_or("");
    let at_root = cleaned.is_empty()
        || first_segment.contains(['*', '?', '['])
        || first_segment.contains(UNKNOWN);
    if !at_root {
        return Ok(vec![]);
    }
    let mut globs = Vec::new();
    for e in excludes {
        for alt in expand(e, scope)? {
            if alt.contains(UNKNOWN) {
                // An exclusion we cannot pin down might drop a real input: leave it out.
                continue;
            }
            let cleaned = clean_source(&alt);
            if cleaned.is_empty() {
                continue;
            }
            match ignore_dialect_globs(&cleaned, None) {
                Ok(g) => globs.extend(g),
                Err(_) => continue,
            }
        }
    }
    Ok(globs)
}

/// Cleans a source like Docker: rooted at the context, `..` cannot leave it, `.` is the root.
fn clean_source(source: &str) -> String {
    let cleaned = go_clean(&format!("/{source}"));
    cleaned.trim_start_matches('/').to_string()
}

/// A mount source is a path, not a pattern: every character stands for itself (a `\` too),
/// except an unknown variable, which matches one segment.
fn literal_glob(source: &str) -> String {
    let mut glob = String::new();
    for c in clean_source(source).chars() {
        match c {
            UNKNOWN => glob.push('*'),
            c => push_literal(&mut glob, c),
        }
    }
    glob
}

/// Translates a plain source (Go `filepath.Match` syntax) to a glob.
fn plain_glob(source: &str) -> Result<String, String> {
    let cleaned = clean_source(source);
    let check = cleaned.replace(UNKNOWN, "x");
    check_go_pattern(&check).map_err(|e| format!("is not a valid pattern ({e})"))?;
    let chars: Vec<char> = cleaned.chars().collect();
    let mut glob = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            // Go's `filepath.Match` has no `**`: a run of stars is one `*`, inside one folder
            // (checked against `docker build`: `src/**/x.go` copies `src/a/x.go` only).
            UNKNOWN | '*' => {
                if !glob.ends_with('*') || glob.ends_with("\\*") {
                    glob.push('*');
                }
            }
            '?' => glob.push('?'),
            '\\' => {
                if let Some(&e) = chars.get(i) {
                    push_literal(&mut glob, e);
                    i += 1;
                }
            }
            '[' => {
                let (class, next) =
                    parse_class(&chars, i).map_err(|e| format!("is not a valid pattern ({e})"))?;
                let (g, _) = class_glob(&class, false)?;
                glob.push_str(&g);
                i = next;
            }
            c => push_literal(&mut glob, c),
        }
    }
    Ok(glob)
}

/// Translates a `--parents` source: the `/./` pivot only moves the destination, and the
/// pattern uses Docker's ignore-file dialect.
fn parents_globs(source: &str) -> Result<Vec<String>, String> {
    let cleaned = clean_source(&source.replace("/./", "/"));
    if cleaned.is_empty() {
        return Ok(vec![String::new()]);
    }
    ignore_dialect_globs(&cleaned, Some(UNKNOWN))
}

/// `RUN --mount=type=bind,source=x` (no `from=`) reads `x` from the context; without
/// `source`, the whole context.
fn read_run_mounts(ins: &Instruction, rest: &str, scope: &Scope, out: &mut BuildInputs) {
    for word in rest.split_whitespace() {
        let Some(spec) = word.strip_prefix("--mount=") else {
            if word.starts_with("--") {
                continue;
            }
            break;
        };
        let mut fields = BTreeMap::new();
        for part in spec.split(',') {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            fields.insert(
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            );
        }
        let kind = fields.get("type").map(String::as_str).unwrap_or("bind");
        if kind != "bind" || fields.contains_key("from") {
            continue;
        }
        let source = fields
            .get("source")
            .or_else(|| fields.get("src"))
            .cloned()
            .unwrap_or_default();
        let rule = format!(
            "Dockerfile RUN --mount=type=bind,source={}",
            shorten(&source, 40)
        );
        match expand(&source, scope) {
            Ok(alts) => {
                for alt in alts {
                    let s = ContextSource {
                        line: ins.line,
                        rule: rule.clone(),
                        pattern: literal_glob(&alt),
                        excludes: vec![],
                    };
                    if !out.sources.contains(&s) {
                        out.sources.push(s);
                    }
                }
            }
            Err(why) => out.unreadable.push(unreadable(ins, &why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(dockerfile: &str) -> BuildInputs {
        read_build_inputs(dockerfile, &BTreeMap::new())
    }

    fn patterns(dockerfile: &str) -> Vec<String> {
        let r = inputs(dockerfile);
        assert!(
            r.unreadable.is_empty(),
            "unexpected unreadable: {:?}",
            r.unreadable
        );
        r.sources.into_iter().map(|s| s.pattern).collect()
    }

    #[test]
    fn base_images_are_the_froms_with_arguments_substituted() {
        let dockerfile = "ARG REG=r.example:5000\nARG TAG\nFROM --platform=$BUILDPLATFORM $REG/base:${TAG} AS build\nFROM build AS test\nFROM scratch\nFROM $UNKNOWN/x\nFROM alpine\nFROM r.example:5000/base:2\n";
        let args: BTreeMap<String, String> = [("TAG".to_string(), "2".to_string())].into();
        let images = |args: &BTreeMap<String, String>| -> Vec<String> {
            let found = read_base_images(dockerfile, args);
            found.images.into_iter().map(|i| i.reference).collect()
        };
        // An undeclared variable is empty, as Docker has it: a name the registry lookup refuses.
        assert_eq!(images(&args), ["r.example:5000/base:2", "/x", "alpine"]);
        assert_eq!(
            images(&BTreeMap::new()),
            ["/x", "alpine", "r.example:5000/base:2"]
        );
    }

    #[test]
    fn sources_table() {
        let rows: &[(&str, &[&str])] = &[
            ("FROM scratch\nCOPY pb/ /pb/\n", &["pb"]),
            ("FROM scratch\nCOPY ./pb/ /pb/\n", &["pb"]),
            ("FROM scratch\nCOPY . /app\n", &[""]),
            ("FROM scratch\nCOPY / /app\n", &[""]),
            ("FROM scratch\nCOPY ../../etc/x /app\n", &["etc/x"]),
            ("FROM scratch\nCOPY a b c /dst/\n", &["a", "b", "c"]),
            ("FROM scratch\ncopy a /dst\n", &["a"]),
            ("FROM scratch\nCOPY [\"a b\", \"c\", \"/dst/\"]\n", &["a b", "c"]),
            ("FROM scratch\nCOPY --chown=1:1 --chmod=644 --link src/*.go /app/\n", &["src/*.go"]),
            ("FROM scratch\nCOPY --from=build /out /app\n", &[]),
            ("FROM scratch\nCOPY --from=0 /out /app\n", &[]),
            ("FROM scratch\nADD https://example.com/x.tgz /x\nADD git@github.com:a/b.git /b\nADD local.tgz /\n", &["local.tgz"]),
            ("FROM scratch\nCOPY file[0-9].txt /\n", &["file[0-9].txt"]),
            ("FROM scratch\nCOPY file[^0-9].txt /\n", &["file{[!0-9],/}.txt"]),
            ("FROM scratch\nCOPY a{b}.txt /\n", &["a\\{b\\}.txt"]),
            // Unquoted, Docker drops the backslash: the star is a wildcard (checked against
            // `docker build`); quoted, it stays and the star is literal.
            ("FROM scratch\nCOPY a\\*b /\n", &["a*b"]),
            ("FROM scratch\nCOPY \\*.txt /dst/\n", &["*.txt"]),
            ("FROM scratch\nCOPY \"a\\*b\" /\n", &["a\\*b"]),
            ("FROM scratch\nCOPY src \\\n  # a comment inside\n\n  lib /app/\n", &["src", "lib"]),
            ("# escape=`\nFROM scratch\nCOPY src `\n  lib C:\\app\\\n", &["src", "lib"]),
            ("FROM scratch\nCOPY --parents ./x/./y/*.go /dst\n", &["x/y/*.go"]),
            ("FROM scratch\nCOPY --parents src/**/*.go /dst\n", &["src/**/*.go"]),
            ("FROM scratch\nRUN --mount=type=bind,source=go.mod,target=/go.mod go build\n", &["go.mod"]),
            ("FROM scratch\nRUN --mount=type=bind,target=/src make\n", &[""]),
            ("FROM scratch\nRUN --mount=type=bind,from=build,source=/x,target=/x true\n", &[]),
            ("FROM scratch\nRUN --mount=type=cache,target=/root/.cache true\n", &[]),
            ("FROM scratch\nONBUILD COPY . /app\n", &[]),
            // `**` is `*` in a plain source; a source starting with `[` is a class.
            ("FROM scratch\nCOPY src/**/x.go /d/\n", &["src/*/x.go"]),
            ("FROM scratch\nCOPY src/** a*** /d/\n", &["src/*", "a*"]),
            ("FROM scratch\nCOPY \"a\\\\**\" /d/\n", &["a\\**"]),
            ("FROM scratch\nCOPY [c]af? /d/\n", &["caf?"]),
            ("FROM scratch\nCOPY [abc]*.txt lib /d/\n", &["[a-c]*.txt", "lib"]),
            ("FROM scratch\nCOPY --chown=1 [ab]x /d/\n", &["[ab]x"]),
        ];
        for (dockerfile, want) in rows {
            assert_eq!(
                patterns(dockerfile),
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{dockerfile}"
            );
        }
    }

    #[test]
    fn heredocs_are_skipped_with_their_bodies() {
        let d = "FROM scratch\nCOPY <<EOF /etc/conf\nCOPY secret /x\nEOF\nRUN <<-'SCRIPT' bash\n\tCOPY nope /y\n\tSCRIPT\nCOPY <<A <<B /dst/\nADD a /\nA\nADD b /\nB\nCOPY real /z\n";
        assert_eq!(patterns(d), vec!["real"]);
        let open = inputs("FROM scratch\nCOPY <<EOF /x\nnever closed\n");
        assert_eq!(open.unreadable.len(), 1);
    }

    #[test]
    fn args_and_envs_are_substituted() {
        let d = "ARG SVC=cart\nARG OTHER=x\nFROM scratch\nARG SVC\nENV DIR=src/$SVC\nCOPY ${DIR}/main.go $OTHER/ /app/\n";
        // OTHER is global and not redeclared: empty inside the stage, as in Docker.
        assert_eq!(patterns(d), vec!["src/cart/main.go", ""]);
        let mut args = BTreeMap::new();
        args.insert("SVC".to_string(), "web".to_string());
        let r = read_build_inputs(d, &args);
        assert_eq!(r.sources[0].pattern, "src/web/main.go");
        // build args only reach declared ARGs
        let mut args = BTreeMap::new();
        args.insert("DIR".to_string(), "nope".to_string());
        assert_eq!(
            read_build_inputs("FROM scratch\nCOPY ${DIR:-lib}/ /\n", &args).sources[0].pattern,
            "lib"
        );
    }

    #[test]
    fn unknown_values_match_one_segment_or_nothing() {
        let d = "FROM scratch\nARG NAME\nCOPY services/${NAME}/app /app\n";
        assert_eq!(patterns(d), vec!["services/*/app", "services/app"]);
        let d = "FROM scratch\nARG TARGETARCH\nCOPY bin/$TARGETARCH/tool /\n";
        assert_eq!(patterns(d), vec!["bin/*/tool", "bin/tool"]);
        let d = "FROM scratch\nARG TARGETPLATFORM\nCOPY out/$TARGETPLATFORM/x /\n";
        assert_eq!(inputs(d).unreadable.len(), 1);
    }

    #[test]
    fn env_carries_into_child_stages() {
        let d = "FROM scratch AS base\nENV APP=svc/a\nFROM base AS child\nCOPY $APP/ /app\nFROM scratch\nCOPY $APP/x /\n";
        assert_eq!(patterns(d), vec!["svc/a", "x"]);
    }

    #[test]
    fn excludes_apply_at_the_context_root_only() {
        let r = inputs("FROM scratch\nCOPY --exclude=*.md --exclude=docs . /app\n");
        assert_eq!(r.sources[0].excludes, vec!["*.md", "docs"]);
        let r = inputs("FROM scratch\nCOPY --exclude=*.md src/ /app\n");
        assert!(r.sources[0].excludes.is_empty());
    }

    #[test]
    fn what_cannot_be_read_is_reported_with_its_line() {
        let rows = [
            ("FROM scratch\nCOPY --frobnicate x /y\n", "--frobnicate"),
            ("FROM scratch\nCOPY onlyone\n", "at least one source"),
            ("FROM scratch\nCOPY [\"a\", \"/b\"\n", "not a valid pattern"),
            ("FROM scratch\nCOPY ${X/a/b} /y\n", "not one monoship reads"),
            ("FROM scratch\nCOPY ${X /y\n", "never closed"),
            ("FROM scratch\nCOPY a[ /y\n", "not a valid pattern"),
        ];
        for (d, why) in rows {
            let r = inputs(d);
            assert_eq!(r.unreadable.len(), 1, "{d}: {r:?}");
            assert_eq!(r.unreadable[0].line, 2);
            assert!(
                r.unreadable[0].why.contains(why),
                "{d}: {}",
                r.unreadable[0].why
            );
        }
    }

    #[test]
    fn rules_show_the_source_as_written() {
        let r = inputs("FROM scratch\n\nCOPY ./pb/ /pb/\nADD src/*.go /app/\n");
        assert_eq!(r.sources[0].rule, "Dockerfile COPY ./pb/");
        assert_eq!(r.sources[0].line, 3);
        assert_eq!(r.sources[1].rule, "Dockerfile ADD src/*.go");
    }

    #[test]
    fn references_are_read_with_their_modifier_and_end() {
        let read = |s: &str| read_reference(&s.chars().collect::<Vec<_>>(), 0);
        let r = |name: &str, modifier, word: &str, next| {
            Ok(Some(Reference {
                name: name.into(),
                modifier,
                word: word.into(),
                next,
            }))
        };
        assert_eq!(read("$A/x"), r("A", "", "", 2));
        assert_eq!(read("${A}x"), r("A", "", "", 4));
        assert_eq!(read("${A:-d/e}"), r("A", ":-", "d/e", 9));
        assert_eq!(read("${A-}"), r("A", "-", "", 5));
        assert_eq!(read("${A:+x}"), r("A", ":+", "x", 7));
        assert_eq!(read("${A+x}"), r("A", "+", "x", 6));
        assert_eq!(read("$/x"), Ok(None));
        assert_eq!(read("$"), Ok(None));
        assert_eq!(read("${A"), Err("a `${` is never closed".into()));
        assert_eq!(read("${}"), Err("a `${}` has no variable name".into()));
        assert_eq!(read("${:-x}"), Err("a `${}` has no variable name".into()));
        assert_eq!(
            read("${A/x/y}"),
            Err("the expansion `${A/x/y}` is not one monoship reads".into())
        );
    }

    #[test]
    fn outcomes_follow_what_is_known_of_the_variable() {
        let scope: Scope = [
            ("arg:K", Value::Known("k".into())),
            ("arg:E", Value::Known(String::new())),
            ("arg:U", Value::Unknown),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let u = UNKNOWN.to_string();
        for (name, modifier, expected) in [
            ("K", "", vec!["k".to_string()]),
            ("N", "", vec![String::new()]),
            ("U", "", vec![u.clone(), String::new()]),
            ("K", ":-", vec!["k".into()]),
            ("E", ":-", vec!["w".into()]),
            ("E", "-", vec![String::new()]),
            ("N", "-", vec!["w".into()]),
            ("U", ":-", vec![u.clone(), "w".into()]),
            ("K", ":+", vec!["w".into()]),
            ("E", ":+", vec![String::new()]),
            ("E", "+", vec!["w".into()]),
            ("N", "+", vec![String::new()]),
            ("U", "+", vec![String::new(), "w".into()]),
        ] {
            let reference = Reference {
                name: name.into(),
                modifier,
                word: "w".into(),
                next: 0,
            };
            assert_eq!(
                reference_outcomes(&reference, &scope),
                Ok(expected),
                "{name} {modifier}"
            );
        }
    }

    #[test]
    fn alternatives_multiply_up_to_a_limit() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            combine(&s(&["a", "b"]), &s(&["1", ""])),
            Ok(s(&["a1", "a", "b1", "b"]))
        );
        assert_eq!(combine(&s(&["a"]), &s(&["", ""])), Ok(s(&["a"])));
        let sixteen: Vec<String> = (0..16).map(|i| i.to_string()).collect();
        assert_eq!(combine(&sixteen, &s(&["x"])).map(|v| v.len()), Ok(16));
        assert_eq!(
            combine(&sixteen, &s(&["x", "y"])),
            Err("too many variables with unknown values".into())
        );
    }

    #[test]
    fn copy_words_read_shell_and_json_forms() {
        let w = |rest: &str| copy_words(rest, rest.trim_start().starts_with('['));
        let s = |v: &[&str]| Ok(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(w("a b /dst"), s(&["a", "b", "/dst"]));
        assert_eq!(w(r#"["a b", "/dst"]"#), s(&["a b", "/dst"]));
        assert_eq!(w(r#"--chown=1 ["a", "/d"]"#), s(&["--chown=1", "a", "/d"]));
        assert_eq!(w(r#"--chown=1 ['a', /d]"#), s(&["--chown=1", "[a,", "/d]"]));
        assert_eq!(w("[not json"), Err("its JSON form does not parse"));
    }

    #[test]
    fn scopes_follow_stages_args_and_envs() {
        let mut scopes = Scopes::default();
        let args = BTreeMap::from([("B".to_string(), "from-cli".to_string())]);
        scopes.declare_args("G=g B=b", &args);
        assert!(scopes.current().is_empty());
        scopes.enter_stage("--platform=x img AS base");
        scopes.declare_args("G B", &args);
        assert_eq!(scopes.set_env("E=$G-$B"), Ok(()));
        let known = |scopes: &Scopes, key: &str| scopes.current().get(key).cloned();
        assert_eq!(known(&scopes, "arg:G"), Some(Value::Known("g".into())));
        assert_eq!(
            known(&scopes, "env:E"),
            Some(Value::Known("g-from-cli".into()))
        );
        scopes.enter_stage("BASE");
        assert_eq!(known(&scopes, "arg:G"), None);
        assert_eq!(
            known(&scopes, "env:E"),
            Some(Value::Known("g-from-cli".into()))
        );
        assert_eq!(
            scopes.set_env(""),
            Err("an ENV instruction could not be parsed")
        );
    }

    #[test]
    fn base_images_table() {
        let args = BTreeMap::from([("TAG".to_string(), "from-cli".to_string())]);
        // Dockerfile, the images with their lines, why the unreadable ones are
        type Row<'a> = (&'a str, &'a [(usize, &'a str)], &'a [&'a str]);
        let rows: &[Row] = &[
            ("FROM alpine:3.20\n", &[(1, "alpine:3.20")], &[]),
            ("FROM scratch\nFROM SCRATCH\n", &[], &[]),
            (
                "FROM golang:1.23 AS build\nFROM build AS test\nFROM Build\nFROM gcr.io/distroless/static\n",
                &[(1, "golang:1.23"), (4, "gcr.io/distroless/static")],
                &[],
            ),
            ("FROM --platform=$BUILDPLATFORM golang AS b\n", &[(1, "golang")], &[]),
            // Global ARGs, a build arg over a default, and a stage's ARG (not seen by FROM).
            (
                "ARG REG=ghcr.io/acme\nARG TAG=1\nFROM $REG/base:${TAG}\nARG NEXT=x\nFROM base:$NEXT\n",
                &[(3, "ghcr.io/acme/base:from-cli"), (5, "base:")],
                &[],
            ),
            ("ARG V=1\nFROM a:${V:-2}\nFROM a:${NONE:-2}\n", &[(2, "a:1"), (3, "a:2")], &[]),
            ("FROM a@sha256:abc\nFROM a@sha256:abc AS again\n", &[(1, "a@sha256:abc")], &[]),
            // An ARG without a value, a platform ARG, an empty name: not knowable.
            ("ARG IMG\nFROM $IMG\n", &[], &["depends on an ARG"]),
            ("FROM base-$TARGETARCH\n", &[], &["depends on an ARG"]),
            ("FROM x:$TARGETPLATFORM\n", &[], &["holds a platform"]),
            ("FROM $UNDECLARED\n", &[], &["names no image"]),
            ("FROM a:${X\n", &[], &["never closed"]),
            // Images read by COPY/ADD --from and RUN --mount from=; stages (by name, also a
            // later one, or index) are not images.
            (
                "FROM a AS one\nCOPY --from=one /x /x\nCOPY --from=0 /x /x\nCOPY --from=TWO /x /x\nCOPY --chown=1 --from=tool:1 /t /t\nADD --from=b:2 /y /y\nFROM b AS two\n",
                &[(1, "a"), (5, "tool:1"), (6, "b:2"), (7, "b")],
                &[],
            ),
            (
                "FROM a\nRUN --mount=type=bind,from=m:1,target=/m --mount=type=cache,target=/c true\n",
                &[(1, "a"), (2, "m:1")],
                &[],
            ),
            (
                "FROM a\nARG T=9\nARG U\nCOPY --from=t:$T /x /x\nCOPY --from=u:$U /x /x\nCOPY --from=scratch /x /x\n",
                &[(1, "a"), (4, "t:9")],
                &["depends on an ARG"],
            ),
        ];
        for (dockerfile, images, unreadable) in rows {
            let found = read_base_images(dockerfile, &args);
            let got: Vec<(usize, &str)> = found
                .images
                .iter()
                .map(|i| (i.line, i.reference.as_str()))
                .collect();
            assert_eq!(&got, images, "{dockerfile}");
            assert_eq!(
                found.unreadable.len(),
                unreadable.len(),
                "{dockerfile}: {found:?}"
            );
            for (u, why) in found.unreadable.iter().zip(unreadable.iter()) {
                assert!(u.why.contains(why), "{dockerfile}: {}", u.why);
            }
        }
    }
}
