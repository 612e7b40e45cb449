//! The event payload reader, `monoship::detect::event::range_for_event`, fed the way the action
//! feeds it: the bytes of `GITHUB_EVENT_PATH` read as UTF-8 text and parsed as JSON.
//!
//! Inputs: arbitrary bytes; arbitrary JSON; and payloads shaped like GitHub's (pull request,
//! push, merge group) whose fields are full commit ids, almost-ids (short, long, upper-case,
//! SHA-256, all zeros), hostile strings (refs and titles with newlines, `::`, `$(...)`) or
//! values of the wrong type; for every event name monoship knows and a few it does not.
//!
//! Properties: no panic; every commit id in a result is a full lowercase hex id; pull request
//! events compare from the merge base; the reasons monoship will print stay one annotation
//! line when escaped.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use monoship::detect::event::{is_sha, range_for_event, RangeRequest};
use monoship::report::commands::{Annotation, Level};

use super::spicy_string;
use crate::harness::{self, Budget, Outcome};

const EVENTS: [&str; 10] = [
    "pull_request",
    "pull_request_target",
    "pull_request_review",
    "push",
    "merge_group",
    "workflow_dispatch",
    "schedule",
    "release",
    "",
    "push\n::error::x",
];

#[derive(Debug, Clone)]
pub enum Payload {
    Bytes(Vec<u8>),
    Json(Value),
}

#[derive(Debug, Clone)]
pub struct Input {
    pub event: String,
    pub payload: Payload,
    pub github_sha: Option<String>,
}

fn sha_like() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => vec(proptest::sample::select(&b"0123456789abcdef"[..]), 40).prop_map(|b| String::from_utf8(b).expect("ascii")),
        1 => vec(proptest::sample::select(&b"0123456789abcdef"[..]), 64).prop_map(|b| String::from_utf8(b).expect("ascii")),
        1 => Just("0".repeat(40)),
        1 => Just("F95F852BD8FCA8FCC58A9A2D6C842781E32A215E".to_string()),
        1 => Just("f95f852bd8fca8fcc58a9a2d6c842781e32a215".to_string()),
        1 => Just("f95f852bd8fca8fcc58a9a2d6c842781e32a215ee".to_string()),
        1 => Just("f95f852bd8fca8fcc58a9a2d6c842781e32a215\u{e9}".to_string()),
        1 => spicy_string(6),
    ]
}

fn leaf() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        spicy_string(6).prop_map(Value::String),
        sha_like().prop_map(Value::String),
    ]
}

fn any_json() -> impl Strategy<Value = Value> + Clone {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((spicy_string(3), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A field value: usually right, sometimes almost right, sometimes anything.
fn field(
    right: impl Strategy<Value = Value> + Clone + 'static,
) -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        6 => right,
        1 => leaf(),
        1 => any_json(),
    ]
}

fn shaped() -> impl Strategy<Value = Value> {
    let sha = || field(sha_like().prop_map(Value::String));
    let text = || field(spicy_string(8).prop_map(Value::String));
    let refname = field(
        prop_oneof![
            Just("refs/heads/main".to_string()),
            Just("refs/heads/feature".to_string()),
            Just("refs/tags/v1".to_string()),
            spicy_string(6).prop_map(|s| format!("refs/heads/{s}")),
        ]
        .prop_map(Value::String),
    );
    (
        (sha(), sha(), sha(), sha()),
        (refname, text(), text()),
        (
            field(any::<u64>().prop_map(Value::from)),
            field(any::<bool>().prop_map(Value::Bool)),
            field(any::<bool>().prop_map(Value::Bool)),
        ),
        (
            field(any::<u64>().prop_map(Value::from)),
            proptest::sample::subsequence(
                &[
                    "pull_request",
                    "before",
                    "after",
                    "ref",
                    "forced",
                    "deleted",
                    "repository",
                    "merge_group",
                    "number",
                ][..],
                0..3,
            ),
        ),
    )
        .prop_map(
            |(
                (a, b, c, d),
                (git_ref, title, branch),
                (number, forced, deleted),
                (changed, dropped),
            )| {
                let mut v = json!({
                    "pull_request": {
                        "number": number, "title": title, "changed_files": changed,
                        "base": {"sha": a, "ref": branch}, "head": {"sha": b, "ref": branch}
                    },
                    "number": number,
                    "before": c, "after": d, "ref": git_ref, "forced": forced, "deleted": deleted,
                    "repository": {"default_branch": branch},
                    "merge_group": {"base_sha": a, "head_sha": b, "head_ref": git_ref}
                });
                if let Value::Object(m) = &mut v {
                    for key in dropped {
                        m.remove(key);
                    }
                }
                v
            },
        )
}

pub fn strategy() -> impl Strategy<Value = Input> {
    let payload = prop_oneof![
        1 => vec(any::<u8>(), 0..64).prop_map(Payload::Bytes),
        1 => spicy_string(16).prop_map(|s| Payload::Bytes(s.into_bytes())),
        1 => any_json().prop_map(Payload::Json),
        4 => shaped().prop_map(Payload::Json),
        1 => (shaped(), vec((any::<usize>(), any::<u8>()), 1..3)).prop_map(|(v, flips)| {
            let mut bytes = v.to_string().into_bytes();
            for (at, b) in flips {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            Payload::Bytes(bytes)
        }),
    ];
    (
        prop_oneof![
            4 => proptest::sample::select(&EVENTS[..]).prop_map(String::from),
            1 => spicy_string(3),
        ],
        payload,
        proptest::option::of(sha_like()),
    )
        .prop_map(|(event, payload, github_sha)| Input {
            event,
            payload,
            github_sha,
        })
}

pub fn run(budget: &Budget) -> Outcome {
    harness::run("event", strategy(), check, budget)
}

pub fn check(input: &Input) -> Result<(), String> {
    // As the action reads GITHUB_EVENT_PATH: UTF-8 text, then JSON.
    let payload = match &input.payload {
        Payload::Json(v) => v.clone(),
        Payload::Bytes(b) => match std::str::from_utf8(b).map(serde_json::from_str::<Value>) {
            Ok(Ok(v)) => v,
            _ => return Ok(()),
        },
    };
    let range = match range_for_event(&input.event, &payload, input.github_sha.as_deref()) {
        Ok(r) => r,
        Err(e) => return one_annotation(&e.to_string()),
    };
    let bad = |what: &str, id: &str| Err(format!("{what} {id:?} is not a full commit id"));
    match &range.request {
        RangeRequest::Commits {
            base,
            head,
            merge_base,
        } => {
            if !is_sha(base) {
                return bad("base", base);
            }
            if !is_sha(head) {
                return bad("head", head);
            }
            if input.event.starts_with("pull_request") && !merge_base {
                return Err("a pull request does not compare from the merge base".into());
            }
        }
        RangeRequest::NewBranch { head, .. } => {
            if !is_sha(head) {
                return bad("head", head);
            }
        }
        RangeRequest::Everything { head, why } => {
            if !is_sha(head) {
                return bad("head", head);
            }
            one_annotation(why)?;
        }
        RangeRequest::Nothing { why } => one_annotation(why)?,
    }
    if let Some(pr) = &range.pull_request {
        if !is_sha(&pr.base_sha) || !is_sha(&pr.head_sha) {
            return Err(format!("pull request ids {pr:?}"));
        }
    }
    Ok(())
}

/// A message monoship prints as a warning or error must stay one command line.
fn one_annotation(message: &str) -> Result<(), String> {
    let line = Annotation::new(Level::Warning, message).to_string();
    let found = crate::runner::commands(&line);
    match found.as_slice() {
        [(0, c)] if c.data == message => Ok(()),
        _ => Err(format!("{message:?} prints as {line:?}, read as {found:?}")),
    }
}
