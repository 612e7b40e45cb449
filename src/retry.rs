//! Trying a request again: one policy type for every retry monoship makes, the pure decision
//! it implies (wait how long, or give up), and [`retry`], which runs an operation under it.
//!
//! Every retry in monoship, with its numbers (attempts count the first one):
//!
//! | What is retried | On what | Attempts | Pauses |
//! |---|---|---|---|
//! | Kubernetes reads and patches (`deploy`) | 429, 5xx, connection errors | 4 | 250 ms, 500 ms, 1 s |
//! | A workload patch or manifest apply (`deploy`) | 409 Conflict, after a fresh read | 3 | none |
//! | Kubernetes list/watch (`deploy::watch`) | connection and server errors, 410, 429; up to three 401s in a row | no limit (the rollout's deadline) | 100 ms doubling to 3 s, reset by a delivered change |
//! | Registry manifest requests (`image::registry`) | 5xx, connection errors (10 s to connect, 20 s without data) | 4, and at most 3 minutes for one image's requests in all | 500 ms, 1 s, 2 s (first pause settable) |
//! | GitHub REST requests (`github`) | rate limits; 5xx, network and timeouts when repeatable | 4 | 1 s, 2 s, 4 s (settable); a rate limit waits for its reset, up to 60 s (settable) |
//! | The GitHub OIDC token (`aws`) | 429, 5xx, connection errors | 3 | 500 ms, 1 s |
//! | AWS SDK calls (`aws`, `image::ecr`) | the SDK's standard retry mode | 5 | SDK backoff from 500 ms, at most 10 s |
//!
//! The AWS SDK retries its own calls (its `RetryConfig`); the others go through this module.

use std::future::Future;
use std::time::Duration;

/// How often and how patiently an operation is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included; 0 counts as 1. Default 3.
    pub attempts: u32,
    /// The pause after the first failure. Default 500 ms.
    pub first_delay: Duration,
    /// Each further pause is the previous one times this. Default 2.
    pub factor: u32,
    /// No computed pause is longer than this; a server-requested wait is not capped by it.
    /// Default 30 s.
    pub max_delay: Duration,
    /// The longest server-requested wait (Retry-After, a rate-limit reset) that is waited out;
    /// a longer one gives up at once. Default `None`: any.
    pub max_wait: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new(3, Duration::from_millis(500))
    }
}

/// What an error says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Trying again cannot help.
    Fatal,
    /// It may pass: try again after the policy's pause.
    Retry,
    /// It may pass after the wait the server asked for.
    RetryAfter(Duration),
}

/// Why [`retry`] stopped trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The error was [`Verdict::Fatal`].
    Fatal,
    /// Every attempt failed.
    Exhausted,
    /// The server asked for this wait, longer than the policy's `max_wait`.
    WaitTooLong(Duration),
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Wait(Duration),
    Stop(Stop),
}

/// The last error of an operation [`retry`] gave up on.
#[derive(Debug)]
pub struct GaveUp<E> {
    pub error: E,
    /// Attempts made, the failed last one included.
    pub attempts: u32,
    pub stop: Stop,
}

impl<E> GaveUp<E> {
    /// The last error, for callers to whom the count and reason add nothing.
    pub fn into_error(self) -> E {
        self.error
    }
}

/// A failed attempt about to be tried again, for the caller's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retrying {
    /// The number of the attempt that failed, from 1.
    pub attempt: u32,
    /// The pause before the next one.
    pub wait: Duration,
}

impl RetryPolicy {
    /// `attempts` attempts, pausing `first_delay` after the first failure and doubling the
    /// pause each time, up to 30 s; server-requested waits unbounded.
    pub const fn new(attempts: u32, first_delay: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts,
            first_delay,
            factor: 2,
            max_delay: Duration::from_secs(30),
            max_wait: None,
        }
    }

    /// The pause after `failures` failures in a row (from 1): `first_delay` times `factor` to
    /// the power `failures - 1`, at most `max_delay`.
    pub fn delay(&self, failures: u32) -> Duration {
        let growth = self.factor.saturating_pow(failures.saturating_sub(1));
        self.first_delay.saturating_mul(growth).min(self.max_delay)
    }

    /// What to do after attempt number `attempt` (from 1) failed with `verdict`.
    pub fn decide(&self, attempt: u32, verdict: Verdict) -> Decision {
        let wait = match verdict {
            Verdict::Fatal => return Decision::Stop(Stop::Fatal),
            Verdict::Retry => self.delay(attempt),
            Verdict::RetryAfter(wait) => {
                if self.max_wait.is_some_and(|max| wait > max) {
                    return Decision::Stop(Stop::WaitTooLong(wait));
                }
                wait
            }
        };
        if attempt >= self.attempts.max(1) {
            return Decision::Stop(Stop::Exhausted);
        }
        Decision::Wait(wait)
    }
}

/// Runs `op` (given the attempt number, from 1) until it succeeds or `policy` gives up.
/// `classify` judges each error; `on_retry` hears of each failure that will be tried again,
/// before the pause.
///
/// # Errors
/// The last error, with the attempts made and why they stopped.
pub async fn retry<T, E, Fut>(
    policy: &RetryPolicy,
    mut classify: impl FnMut(&E) -> Verdict,
    mut on_retry: impl FnMut(&E, Retrying),
    mut op: impl FnMut(u32) -> Fut,
) -> Result<T, GaveUp<E>>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        let error = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        match policy.decide(attempt, classify(&error)) {
            Decision::Wait(wait) => {
                on_retry(&error, Retrying { attempt, wait });
                // A zero pause (conflicts) goes straight on, without a trip through the timer.
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                attempt += 1;
            }
            Decision::Stop(stop) => {
                return Err(GaveUp {
                    error,
                    attempts: attempt,
                    stop,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_grow_by_the_factor_up_to_the_cap() {
        let policy = RetryPolicy {
            attempts: u32::MAX,
            first_delay: 100 * MS,
            factor: 2,
            max_delay: 3000 * MS,
            max_wait: None,
        };
        let delays: Vec<u128> = (1..=8).map(|n| policy.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3000, 3000, 3000]);
        // Far past any realistic count the arithmetic saturates instead of panicking.
        assert_eq!(policy.delay(u32::MAX), 3000 * MS);
        let flat = RetryPolicy {
            factor: 1,
            ..RetryPolicy::new(3, 250 * MS)
        };
        assert_eq!(flat.delay(3), 250 * MS);
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let policy = RetryPolicy::default();
        assert_eq!(
            (policy.attempts, policy.first_delay, policy.factor),
            (3, 500 * MS, 2)
        );
        assert_eq!(
            (policy.max_delay, policy.max_wait),
            (Duration::from_secs(30), None)
        );
    }

    #[test]
    fn decisions_wait_until_the_attempts_run_out() {
        let policy = RetryPolicy::new(3, 500 * MS);
        assert_eq!(policy.decide(1, Verdict::Retry), Decision::Wait(500 * MS));
        assert_eq!(policy.decide(2, Verdict::Retry), Decision::Wait(1000 * MS));
        assert_eq!(
            policy.decide(3, Verdict::Retry),
            Decision::Stop(Stop::Exhausted)
        );
        assert_eq!(
            policy.decide(1, Verdict::Fatal),
            Decision::Stop(Stop::Fatal)
        );
        let once = RetryPolicy::new(0, 500 * MS);
        assert_eq!(
            once.decide(1, Verdict::Retry),
            Decision::Stop(Stop::Exhausted)
        );
    }

    #[test]
    fn server_waits_are_honoured_uncapped_but_bounded_by_max_wait() {
        let policy = RetryPolicy {
            max_delay: 2000 * MS,
            max_wait: Some(Duration::from_secs(60)),
            ..RetryPolicy::new(4, 1000 * MS)
        };
        let asked = Duration::from_secs(30);
        assert_eq!(
            policy.decide(1, Verdict::RetryAfter(asked)),
            Decision::Wait(asked)
        );
        let too_long = Duration::from_secs(61);
        // Too long a wait stops even when attempts remain, and before the count is checked.
        assert_eq!(
            policy.decide(1, Verdict::RetryAfter(too_long)),
            Decision::Stop(Stop::WaitTooLong(too_long))
        );
        assert_eq!(
            policy.decide(4, Verdict::RetryAfter(too_long)),
            Decision::Stop(Stop::WaitTooLong(too_long))
        );
        assert_eq!(
            policy.decide(4, Verdict::RetryAfter(asked)),
            Decision::Stop(Stop::Exhausted)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_pauses_between_attempts_and_reports_the_last_error() {
        let policy = RetryPolicy::new(4, 250 * MS);
        let started = tokio::time::Instant::now();
        let mut heard = Vec::new();
        let outcome: Result<(), _> = retry(
            &policy,
            |_: &u32| Verdict::Retry,
            |e, r| heard.push((*e, r.attempt, r.wait.as_millis())),
            |attempt| async move { Err(attempt * 10) },
        )
        .await;
        let gave_up = outcome.unwrap_err();
        assert_eq!(
            (gave_up.error, gave_up.attempts, gave_up.stop),
            (40, 4, Stop::Exhausted)
        );
        assert_eq!(heard, [(10, 1, 250), (20, 2, 500), (30, 3, 1000)]);
        assert_eq!(started.elapsed(), 1750 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_at_a_fatal_error_and_returns_a_success() {
        let policy = RetryPolicy::new(5, 100 * MS);
        let started = tokio::time::Instant::now();
        let outcome: Result<(), GaveUp<&str>> = retry(
            &policy,
            |e: &&str| match *e {
                "busy" => Verdict::RetryAfter(Duration::from_secs(7)),
                _ => Verdict::Fatal,
            },
            |_, _| {},
            |attempt| async move { Err(if attempt < 3 { "busy" } else { "denied" }) },
        )
        .await;
        let gave_up = outcome.unwrap_err();
        assert_eq!(
            (gave_up.error, gave_up.attempts, gave_up.stop),
            ("denied", 3, Stop::Fatal)
        );
        assert_eq!(started.elapsed(), Duration::from_secs(14));

        let ok = retry(
            &policy,
            |_: &()| Verdict::Retry,
            |_, _| {},
            |attempt| async move {
                if attempt == 2 {
                    Ok(attempt)
                } else {
                    Err(())
                }
            },
        )
        .await;
        assert_eq!(ok.unwrap(), 2);
    }
}
