//! Property-based fuzzing of monoship's readers of untrusted input (config, Dockerfile,
//! `.dockerignore`, event payload) and of what it writes for the Actions runner to read
//! (workflow commands, `$GITHUB_OUTPUT`, the plan text and the step summary).
//!
//! Each target in [`targets::ALL`] pairs a generator with properties; [`harness::run`] runs it
//! for a number of cases or seconds. `cargo test -p monoship-fuzz` runs every target briefly
//! (`PROPTEST_CASES` sets how many cases); the binary runs them for longer:
//!
//! ```text
//! cargo run -p monoship-fuzz --release -- --target all --seconds 120
//! cargo run -p monoship-fuzz -- --target escaping --cases 20000 --seed 7
//! ```
//!
//! Coverage-guided fuzzing (`cargo fuzz`) needs a nightly toolchain; these targets need none, so
//! they also run in CI.

// Generators list their cases in one place; the length limit is for monoship itself.
#![allow(clippy::too_many_lines)]

pub mod harness;
pub mod runner;
pub mod targets;

#[cfg(test)]
mod tests {
    use crate::harness::{with_big_stack, Budget};
    use crate::targets::ALL;

    /// Cases per target for `cargo test`: `PROPTEST_CASES`, else a few hundred (about a second).
    fn cases() -> u64 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300)
    }

    fn short_run(name: &str) {
        let target = ALL.iter().find(|t| t.name == name).expect("a target");
        let outcome = with_big_stack(|| {
            (target.run)(&Budget {
                cases: Some(cases()),
                seconds: None,
                seed: 0x6d6f_6e6f,
            })
        });
        assert!(
            outcome.passed(),
            "{name}: {}",
            outcome.failure.unwrap_or_default()
        );
    }

    #[test]
    fn config() {
        short_run("config");
    }

    #[test]
    fn dockerfile() {
        short_run("dockerfile");
    }

    #[test]
    fn dockerignore() {
        short_run("dockerignore");
    }

    #[test]
    fn event() {
        short_run("event");
    }

    #[test]
    fn escaping() {
        short_run("escaping");
    }
}
