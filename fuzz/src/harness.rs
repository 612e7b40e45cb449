//! Runs one target: generated inputs through a property, for a number of cases or seconds.
//!
//! A target is a proptest [`Strategy`] and a check. The check returns `Err` when a property
//! does not hold (a *violation*); a panic inside it is a *crash*. Either stops the target,
//! after proptest has shrunk the input to a small one, which is printed.

use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// How long to run a target.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Stop after this many generated cases (shrinking steps are not counted here).
    pub cases: Option<u64>,
    /// Stop after this much time; checked between batches of [`BATCH`] cases.
    pub seconds: Option<f64>,
    /// Seed of the input generator: the same seed and budget replay the same inputs.
    pub seed: u64,
}

/// Cases generated between two looks at the clock.
pub const BATCH: u64 = 256;

/// What one target run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub target: &'static str,
    /// Every call of the check: generated cases and shrinking steps.
    pub executions: u64,
    /// Panics (0 or 1: a target stops at its first failure).
    pub crashes: u64,
    /// Properties that did not hold (0 or 1).
    pub violations: u64,
    pub elapsed: Duration,
    /// The longest single execution, to spot inputs that make a reader slow.
    pub slowest: Duration,
    /// The failure, with the shrunk input.
    pub failure: Option<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.crashes == 0 && self.violations == 0
    }
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Panics inside a run are expected (shrinking replays them); record them instead of printing.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                LAST_PANIC.with(|l| *l.borrow_mut() = info.to_string());
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f` on a thread with a large stack: deeply nested generated values (JSON, YAML) and
/// unoptimized builds need more than a test thread's 2 MiB.
pub fn with_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn_scoped(scope, f)
            .expect("a thread starts")
            .join()
            .unwrap_or_else(|e| panic::resume_unwind(e))
    })
}

/// 32 seed bytes from a number (splitmix64), so batch `n` of seed `s` is always the same.
fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut state = seed;
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// Runs `check` on inputs from `strategy` within `budget`.
pub fn run<S>(
    target: &'static str,
    strategy: S,
    check: fn(&S::Value) -> Result<(), String>,
    budget: &Budget,
) -> Outcome
where
    S: Strategy,
    S::Value: Debug,
{
    install_quiet_hook();
    let started = Instant::now();
    let deadline = budget.seconds.map(|s| started + Duration::from_secs_f64(s));
    let executions = Cell::new(0u64);
    let slowest = Cell::new(Duration::ZERO);
    let mut generated = 0u64;
    let mut failure = None;
    let (mut crashes, mut violations) = (0, 0);
    for batch in 0u64.. {
        let remaining = budget.cases.map(|c| c.saturating_sub(generated));
        let cases = match (remaining, deadline) {
            (Some(0), _) => break,
            (Some(r), Some(_)) => r.min(BATCH),
            (Some(r), None) => r,
            (None, Some(_)) => BATCH,
            (None, None) => BATCH,
        };
        let config = Config {
            cases: u32::try_from(cases).unwrap_or(u32::MAX),
            failure_persistence: None,
            max_shrink_iters: 4096,
            ..Config::default()
        };
        let rng = TestRng::from_seed(
            RngAlgorithm::ChaCha,
            &seed_bytes(budget.seed ^ batch.wrapping_mul(0xA24B_AED4_963E_E407)),
        );
        let mut runner = TestRunner::new_with_rng(config, rng);
        QUIET.with(|q| q.set(true));
        let result = runner.run(&strategy, |value| {
            executions.set(executions.get() + 1);
            let t = Instant::now();
            let verdict = panic::catch_unwind(AssertUnwindSafe(|| check(&value)));
            slowest.set(slowest.get().max(t.elapsed()));
            match verdict {
                Ok(Ok(())) => Ok(()),
                Ok(Err(why)) => Err(TestCaseError::fail(format!("violation: {why}"))),
                Err(_) => Err(TestCaseError::fail(format!(
                    "crash: {}",
                    LAST_PANIC.with(|l| l.borrow().clone())
                ))),
            }
        });
        QUIET.with(|q| q.set(false));
        generated += cases;
        match result {
            Ok(()) => {}
            Err(TestError::Fail(reason, value)) => {
                let reason = reason.message().to_string();
                if reason.starts_with("crash") {
                    crashes += 1;
                } else {
                    violations += 1;
                }
                failure = Some(format!("{reason}\nminimal input: {value:#?}"));
                break;
            }
            Err(TestError::Abort(reason)) => {
                violations += 1;
                failure = Some(format!("aborted: {}", reason.message()));
                break;
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d)
            || (remaining.is_none() && deadline.is_none())
        {
            break;
        }
    }
    Outcome {
        target,
        executions: executions.get(),
        crashes,
        violations,
        elapsed: started.elapsed(),
        slowest: slowest.get(),
        failure,
    }
}
