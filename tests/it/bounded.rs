//! Failures told precisely and within bounds: files that fail to parse are named by line and
//! column without their text, slow servers fail within a documented deadline, and each
//! message says what to do.

use std::collections::BTreeMap;

use crate::ship::{setup, ship_with};

#[test]
fn a_kubeconfig_that_is_not_yaml_is_told_by_line_and_column_without_the_token() {
    let env = setup(None);
    let broken = "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    \
                  server: http://127.0.0.1:1\nusers:\n- name: sim\n  user:\n    \
                  token: planted-secret-token: oops\n";
    std::fs::write(env.kubeconfig.path(), broken).unwrap();
    let run = ship_with(&env, &[], &BTreeMap::new());
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let path = env.kubeconfig.path().display().to_string();
    assert!(
        run.stderr.contains(&format!("{path}:10:"))
            && run.stderr.contains("the kubeconfig is not valid YAML"),
        "{}",
        run.stderr
    );
    for output in [&run.stderr, &run.stdout] {
        assert!(!output.contains("planted-secret-token"), "{output}");
    }
    assert!(env.registry.catalog().is_empty(), "nothing was pushed");
}
