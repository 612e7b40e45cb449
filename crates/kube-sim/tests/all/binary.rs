//! The `kube-sim` binary, as SPEC §9 runs it.

use crate::util::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Kills the child when dropped, so a failed assertion does not leak the process.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_binary_serves_kubectl_and_writes_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_kube-sim"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--tick-ms",
                "50",
                "--namespace",
                "shop",
                "--kubeconfig-out",
            ])
            .arg(&kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kube-sim starts"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("kube-sim listening on ")
        .expect("announces its URL")
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let cache = dir.path().join("cache").display().to_string();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--server",
            &url,
            "--cache-dir",
            &cache,
            "--request-timeout=10s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let out = run(
        KUBECTL,
        &args(&["get", "namespace", "shop", "-o", "name"]),
        Duration::from_secs(30),
    );
    assert_eq!(stdout(&out).trim(), "namespace/shop", "{}", stderr(&out));
    let written = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(written.contains(&url), "{written}");
    let out = run(
        KUBECTL,
        &[
            "--kubeconfig".to_string(),
            kubeconfig.display().to_string(),
            "--cache-dir".into(),
            cache.clone(),
            "get".into(),
            "nodes".into(),
        ],
        Duration::from_secs(30),
    );
    assert!(stdout(&out).contains("kube-sim-node-1"), "{}", stderr(&out));
    drop(child);
}

#[test]
fn the_binary_rejects_unknown_flags() {
    let out = run(
        env!("CARGO_BIN_EXE_kube-sim"),
        &["--bogus".to_string()],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown argument"),
        "{}",
        stderr(&out)
    );
}
