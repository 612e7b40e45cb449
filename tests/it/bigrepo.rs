//! The synthetic benchmark monorepo (bench/make_bigrepo.sh): 20,050 files, 5,000
//! changed, 200 services. The plan must be exactly svc-000..svc-049.

use crate::support::{checked_stdout, plan_json};
use std::path::Path;
use std::process::Command;

/// The monoship config equivalent to the benchmark's paths-filter filters.
pub fn bigrepo_config(services: usize) -> String {
    let mut text = String::from("services:\n");
    for s in 0..services {
        text.push_str(&format!(
            "  svc-{s:03}:\n    paths: [\"services/svc-{s:03}/**\", \"libs/**\"]\n"
        ));
    }
    text
}

#[test]
fn the_synthetic_monorepo_plans_exactly_the_touched_services() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bigrepo");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/make_bigrepo.sh");
    checked_stdout(Command::new("bash").arg(&script).arg(&dir));
    let env = std::fs::read_to_string(tmp.path().join("bigrepo.env")).unwrap();
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    std::fs::write(tmp.path().join("monoship.yml"), bigrepo_config(200)).unwrap();
    let config = tmp.path().join("monoship.yml");
    let run = plan_json(
        &dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "--base",
            &var("BASE_SHA"),
            "--head",
            &var("HEAD_SHA"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let want: Vec<String> = (0..50).map(|s| format!("svc-{s:03}")).collect();
    assert_eq!(run.changed(), want);
    let plan = run.json();
    assert_eq!(plan["files"], 5000);
    assert_eq!(plan["services"].as_array().unwrap().len(), 200);
    let first = &plan["services"][0];
    assert_eq!(
        first["reasons"].as_array().unwrap().len() as u64 + first["more_reasons"].as_u64().unwrap(),
        100
    );
}
