//! Step outputs (`$GITHUB_OUTPUT`). Every value is written in the heredoc form with a random
//! delimiter, so no value (a JSON list of file names, say) can end early or add an output.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::config::Config;
use crate::plan::Plan;

/// The outputs of `plan`, in the order they are written (SPEC §6).
pub fn plan_outputs(plan: &Plan, config: &Config) -> Vec<(String, String)> {
    let include: Vec<_> = plan
        .changed
        .iter()
        .map(|name| {
            let s = &config.services[name];
            let mut entry = serde_json::Map::new();
            entry.insert("service".into(), json!(name));
            if let Some(d) = &s.dockerfile {
                entry.insert("dockerfile".into(), json!(d));
            }
            if let Some(c) = &s.context {
                entry.insert("context".into(), json!(c));
            }
            serde_json::Value::Object(entry)
        })
        .collect();
    let mut out = vec![
        (
            "changed".to_string(),
            serde_json::to_string(&plan.changed).expect("strings serialize"),
        ),
        (
            "matrix".to_string(),
            json!({ "include": include }).to_string(),
        ),
        (
            "any-changed".to_string(),
            (!plan.changed.is_empty()).to_string(),
        ),
        ("base".to_string(), plan.base.clone().unwrap_or_default()),
        ("head".to_string(), plan.head.clone()),
    ];
    for s in &plan.services {
        out.push((s.name.clone(), s.changed.to_string()));
    }
    out
}

/// Jobs GitHub runs from one matrix; a larger `strategy.matrix` fails the workflow.
pub const MAX_MATRIX_JOBS: usize = 256;

/// A warning when the `matrix` output holds more jobs than GitHub runs from one matrix.
pub fn matrix_warning(plan: &Plan) -> Option<String> {
    let jobs = plan.changed.len();
    (jobs > MAX_MATRIX_JOBS).then(|| {
        format!(
            "the `matrix` output lists {jobs} services, more than the {MAX_MATRIX_JOBS} jobs \
             GitHub runs from one matrix: a job using it fails; split the services between \
             workflows, or build them in one job"
        )
    })
}

/// Renders outputs in the runner's file format with the given delimiter.
///
/// # Panics
/// When the delimiter occurs in a name or value: pick another one ([`append`] does).
pub fn render(outputs: &[(String, String)], delimiter: &str) -> String {
    let mut text = String::new();
    for (name, value) in outputs {
        assert!(
            !name.contains(delimiter) && !value.contains(delimiter),
            "delimiter collides with an output"
        );
        text.push_str(&format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
    }
    text
}

/// A delimiter no one can guess: `ghadelimiter_` and 128 random bits.
pub fn random_delimiter() -> String {
    let mut bytes = [0u8; 16];
    // /dev/urandom exists on every runner; fall back to time and address entropy elsewhere.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ (&bytes as *const _ as usize as u128);
        bytes = seed.to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("ghadelimiter_{hex}")
}

/// Appends outputs to the `$GITHUB_OUTPUT` file.
///
/// # Errors
/// When the file cannot be written.
pub fn append(path: &Path, outputs: &[(String, String)]) -> std::io::Result<()> {
    let delimiter = loop {
        let d = random_delimiter();
        if outputs
            .iter()
            .all(|(n, v)| !n.contains(&d) && !v.contains(&d))
        {
            break d;
        }
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(render(outputs, &delimiter).as_bytes())
}

/// Parses an output file the way the runner does, for tests and self-checks.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.split('\n');
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        if let Some((name, delimiter)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delimiter {
                    break;
                }
                value.push(l);
            }
            out.push((name.to_string(), value.join("\n")));
        } else if let Some((name, value)) = line.split_once('=') {
            out.push((name.to_string(), value.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_over_more_services_than_github_runs_is_warned_of() {
        let plan_of = |n: usize| {
            let services = (0..n)
                .map(|i| crate::report::fixtures::node(&format!("s{i:03}"), &[("p", "r")], 0))
                .collect();
            crate::report::fixtures::plan(services, vec![], 1)
        };
        assert_eq!(matrix_warning(&plan_of(MAX_MATRIX_JOBS)), None);
        let warning = matrix_warning(&plan_of(MAX_MATRIX_JOBS + 1)).unwrap();
        assert!(
            warning.contains("lists 257 services, more than the 256 jobs"),
            "{warning}"
        );
    }

    #[test]
    fn heredoc_values_survive_newlines_and_lookalike_lines() {
        let outputs = vec![
            ("changed".to_string(), "[\"a\"]".to_string()),
            (
                "evil".to_string(),
                "x\nchanged<<EOF\ny\nEOF\nz=1".to_string(),
            ),
        ];
        let d = random_delimiter();
        assert!(d.starts_with("ghadelimiter_") && d.len() == 13 + 32);
        assert_ne!(d, random_delimiter());
        assert_eq!(parse(&render(&outputs, &d)), outputs);
    }
}
