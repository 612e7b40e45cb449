//! Which revisions to compare for a GitHub Actions event (SPEC §5). Pure: the payload in, a
//! [`RangeRequest`] out; resolving it against git or the API happens in [`crate::app`].

use serde_json::Value;

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// What to compare, before any git lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// Compare `base` with `head`; with `merge_base`, compare from their merge base instead
    /// (pull requests: what the branch changed, not what the target branch did meanwhile).
    Commits {
        base: String,
        head: String,
        merge_base: bool,
    },
    /// A new branch: compare from its merge base with the default branch.
    NewBranch {
        head: String,
        default_branch: String,
    },
    /// No usable base: every service counts as changed.
    Everything { head: String, why: String },
    /// Nothing was pushed (a deleted branch or tag): nothing changed.
    Nothing { why: String },
}

/// The pull request an event is about, for the API fallback and the comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    /// `pull_request.changed_files` as GitHub counted it, to spot a truncated file list.
    pub changed_files: Option<u64>,
    pub base_sha: String,
    pub head_sha: String,
}

/// The range for one event, and the pull request when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRange {
    pub request: RangeRequest,
    pub pull_request: Option<PullRequest>,
    /// A push that rewrote history (`forced: true`).
    pub forced: bool,
}

/// The event payload could not be used.
#[derive(Debug, thiserror::Error)]
#[error("event `{event}`: {message}")]
pub struct EventError {
    pub event: String,
    pub message: String,
}

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn sha_at(v: &Value, path: &[&str]) -> Option<String> {
    field(v, path)
        .and_then(Value::as_str)
        .filter(|s| is_sha(s))
        .map(str::to_string)
}

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Picks base and head for an event, as SPEC §5 fixes them.
///
/// `github_sha` is `$GITHUB_SHA`, used as head for events without their own.
///
/// # Errors
/// When a field the event must have is missing or malformed.
pub fn range_for_event(
    name: &str,
    payload: &Value,
    github_sha: Option<&str>,
) -> Result<EventRange, EventError> {
    let event = Event { name, payload };
    match name {
        "pull_request"
        | "pull_request_target"
        | "pull_request_review"
        | "pull_request_review_comment" => pull_request_range(&event),
        "push" => push_range(&event),
        "merge_group" => Ok(plain(RangeRequest::Commits {
            base: event.need_sha(&["merge_group", "base_sha"])?,
            head: event.need_sha(&["merge_group", "head_sha"])?,
            merge_base: false,
        })),
        _ => baseless_range(&event, github_sha),
    }
}

/// An event's name and payload, to read fields and word errors.
struct Event<'a> {
    name: &'a str,
    payload: &'a Value,
}

impl Event<'_> {
    fn error(&self, message: String) -> EventError {
        EventError {
            event: self.name.to_string(),
            message,
        }
    }

    /// The commit id at `path`, which the event must have.
    fn need_sha(&self, path: &[&str]) -> Result<String, EventError> {
        sha_at(self.payload, path).ok_or_else(|| {
            self.error(format!(
                "the payload has no commit id at `{}`; is GITHUB_EVENT_PATH the file of this event?",
                path.join(".")
            ))
        })
    }

    /// The string at `path`, or `""`.
    fn text(&self, path: &[&str]) -> &str {
        field(self.payload, path)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// A range without a pull request, for a history that was not rewritten.
fn plain(request: RangeRequest) -> EventRange {
    EventRange {
        request,
        pull_request: None,
        forced: false,
    }
}

/// Pull request events: what the branch changed since it left its base.
fn pull_request_range(event: &Event) -> Result<EventRange, EventError> {
    let base = event.need_sha(&["pull_request", "base", "sha"])?;
    let head = event.need_sha(&["pull_request", "head", "sha"])?;
    let number = field(event.payload, &["pull_request", "number"])
        .or_else(|| event.payload.get("number"))
        .and_then(Value::as_u64)
        .ok_or_else(|| event.error("the payload has no pull request number".into()))?;
    Ok(EventRange {
        request: RangeRequest::Commits {
            base: base.clone(),
            head: head.clone(),
            merge_base: true,
        },
        pull_request: Some(PullRequest {
            number,
            changed_files: field(event.payload, &["pull_request", "changed_files"])
                .and_then(Value::as_u64),
            base_sha: base,
            head_sha: head,
        }),
        forced: false,
    })
}

/// Pushes: `before..after`, a new branch, or nothing for a deleted ref.
fn push_range(event: &Event) -> Result<EventRange, EventError> {
    let payload = event.payload;
    let after = event.text(&["after"]);
    let git_ref = event.text(&["ref"]);
    if after == ZERO_SHA || payload.get("deleted").and_then(Value::as_bool) == Some(true) {
        return Ok(plain(RangeRequest::Nothing {
            why: format!("the push deleted `{git_ref}`; there is nothing to ship"),
        }));
    }
    let head = event.need_sha(&["after"])?;
    let forced = payload
        .get("forced")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let before = event.text(&["before"]);
    let request = if before == ZERO_SHA || before.is_empty() {
        let default_branch = event.text(&["repository", "default_branch"]);
        first_push_request(head, git_ref, default_branch)
    } else if !is_sha(before) {
        return Err(event.error(format!(
            "`before` is not a commit id: `{}`",
            before.escape_debug()
        )));
    } else {
        // Also for force pushes: the old tip is what was there before, so a file that a
        // dropped commit had changed differs between before and after, and must count.
        RangeRequest::Commits {
            base: before.to_string(),
            head,
            merge_base: false,
        }
    };
    Ok(EventRange {
        request,
        pull_request: None,
        forced,
    })
}

/// A ref pushed for the first time: a branch other than the default one is compared with the
/// default branch; anything else has nothing to compare with.
fn first_push_request(head: String, git_ref: &str, default_branch: &str) -> RangeRequest {
    let pushed_branch = git_ref.strip_prefix("refs/heads/");
    if default_branch.is_empty() {
        RangeRequest::Everything {
            head,
            why: "a new branch was pushed and the payload names no default branch to compare with"
                .into(),
        }
    } else if pushed_branch == Some(default_branch) || pushed_branch.is_none() {
        RangeRequest::Everything {
            head,
            why: format!(
                "`{git_ref}` was pushed for the first time and has no earlier commit to compare with"
            ),
        }
    } else {
        RangeRequest::NewBranch {
            head,
            default_branch: default_branch.to_string(),
        }
    }
}

/// Every other event (dispatch, schedule, ...): no base, so everything at `$GITHUB_SHA`.
fn baseless_range(event: &Event, github_sha: Option<&str>) -> Result<EventRange, EventError> {
    let head = github_sha
        .filter(|s| is_sha(s))
        .map(str::to_string)
        .ok_or_else(|| event.error("GITHUB_SHA is not set to a commit id".into()))?;
    Ok(plain(RangeRequest::Everything {
        head,
        why: format!(
            "`{}` events carry no base to compare with; every service counts (set the `services` input to choose)",
            event.name
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/github-events")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
    }

    #[test]
    fn pull_request_uses_merge_base_of_base_and_head() {
        let r =
            range_for_event("pull_request", &fixture("pull_request.opened.json"), None).unwrap();
        assert_eq!(
            r.request,
            RangeRequest::Commits {
                base: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
                head: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
                merge_base: true
            }
        );
        let pr = r.pull_request.unwrap();
        assert_eq!((pr.number, pr.changed_files), (2, Some(1)));
        let r = range_for_event(
            "pull_request_target",
            &fixture("pull_request.synchronize.json"),
            None,
        )
        .unwrap();
        assert!(matches!(
            r.request,
            RangeRequest::Commits {
                merge_base: true,
                ..
            }
        ));
        assert!(range_for_event(
            "pull_request",
            &fixture("pull_request.opened.with-null-body.json"),
            None
        )
        .is_ok());
    }

    #[test]
    fn push_compares_before_and_after() {
        let p = json!({"ref": "refs/heads/feature", "before": A, "after": B, "forced": true,
                       "repository": {"default_branch": "main"}});
        let r = range_for_event("push", &p, None).unwrap();
        assert_eq!(
            r.request,
            RangeRequest::Commits {
                base: A.into(),
                head: B.into(),
                merge_base: false
            }
        );
        assert!(r.forced);
    }

    #[test]
    fn new_branch_uses_default_branch_and_first_push_of_default_is_everything() {
        let p = json!({"ref": "refs/heads/feature", "before": ZERO_SHA, "after": B,
                       "repository": {"default_branch": "main"}});
        assert_eq!(
            range_for_event("push", &p, None).unwrap().request,
            RangeRequest::NewBranch {
                head: B.into(),
                default_branch: "main".into()
            }
        );
        let r = range_for_event("push", &fixture("push.with-new-branch.json"), None).unwrap();
        assert!(
            matches!(r.request, RangeRequest::Everything { .. }),
            "{r:?}"
        );
    }

    #[test]
    fn deleted_ref_is_nothing() {
        let r = range_for_event("push", &fixture("push.json"), None).unwrap();
        assert!(matches!(r.request, RangeRequest::Nothing { .. }), "{r:?}");
    }

    #[test]
    fn merge_group_uses_its_shas() {
        let r = range_for_event(
            "merge_group",
            &fixture("merge_group.checks_requested.json"),
            None,
        )
        .unwrap();
        assert_eq!(
            r.request,
            RangeRequest::Commits {
                base: "380387fbc80638b734a49e1be1c4dfec1c01b33c".into(),
                head: "2ffea6db159f6b6c47a24e778fb9ef40cf6b1c7d".into(),
                merge_base: false
            }
        );
    }

    #[test]
    fn dispatch_and_schedule_ship_everything_at_github_sha() {
        for name in ["workflow_dispatch", "schedule"] {
            let r = range_for_event(name, &fixture("workflow_dispatch.json"), Some(A)).unwrap();
            assert!(matches!(r.request, RangeRequest::Everything { ref head, .. } if head == A));
        }
        assert!(range_for_event("schedule", &json!({}), None).is_err());
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert!(range_for_event("pull_request", &json!({"pull_request": {}}), None).is_err());
        let p = json!({"ref": "refs/heads/x", "before": "not-a-sha", "after": B});
        assert!(range_for_event("push", &p, None).is_err());
        assert!(range_for_event("merge_group", &json!({}), None).is_err());
    }

    #[test]
    fn a_first_push_compares_with_the_default_branch_when_it_can() {
        let head = || B.to_string();
        let everything = |r: &RangeRequest| matches!(r, RangeRequest::Everything { .. });
        assert_eq!(
            first_push_request(head(), "refs/heads/feature", "main"),
            RangeRequest::NewBranch {
                head: head(),
                default_branch: "main".into()
            }
        );
        for (git_ref, default_branch, why) in [
            (
                "refs/heads/main",
                "main",
                "`refs/heads/main` was pushed for the first time",
            ),
            (
                "refs/tags/v1",
                "main",
                "`refs/tags/v1` was pushed for the first time",
            ),
            (
                "refs/heads/feature",
                "",
                "a new branch was pushed and the payload names no default branch",
            ),
        ] {
            let r = first_push_request(head(), git_ref, default_branch);
            assert!(everything(&r), "{git_ref}: {r:?}");
            let RangeRequest::Everything { why: said, .. } = r else {
                unreachable!()
            };
            assert!(said.starts_with(why), "{said}");
        }
    }

    #[test]
    fn push_edge_cases() {
        let deleted = json!({"ref": "refs/heads/x", "before": A, "after": B, "deleted": true});
        let r = range_for_event("push", &deleted, None).unwrap();
        assert_eq!(
            r.request,
            RangeRequest::Nothing {
                why: "the push deleted `refs/heads/x`; there is nothing to ship".into()
            }
        );
        let no_before = json!({"ref": "refs/heads/x", "after": B,
                               "repository": {"default_branch": "main"}});
        assert_eq!(
            range_for_event("push", &no_before, None).unwrap().request,
            RangeRequest::NewBranch {
                head: B.into(),
                default_branch: "main".into()
            }
        );
        let err = range_for_event("push", &json!({"after": "nope"}), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event `push`: the payload has no commit id at `after`; is GITHUB_EVENT_PATH the file of this event?"
        );
        let err = range_for_event(
            "pull_request",
            &json!({"pull_request": {"base": {"sha": A}, "head": {"sha": B}}}),
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "event `pull_request`: the payload has no pull request number"
        );
    }
}
