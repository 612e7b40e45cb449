//! SIGINT and SIGTERM as a value every stage can ask: "has the run been told to stop?". A
//! cancelled workflow sends SIGTERM (then SIGKILL after a grace period), and in the action
//! container monoship is PID 1, where a signal without a handler does nothing at all.

use std::time::Duration;

use tokio::sync::watch;

/// The signal that interrupted a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (a cancelled workflow, `docker stop`).
    Terminate,
}

impl Signal {
    /// `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal number, as shells report a process the signal ended: 130 or 143.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

/// Whether the run was interrupted, and how long in-flight rollouts may still take. Cheap to
/// clone; every clone sees the same signal.
#[derive(Debug, Clone)]
pub struct Interrupt {
    signal: watch::Receiver<Option<Signal>>,
    /// How long a rollout already under way may go on after the signal before it is rolled
    /// back.
    pub grace: Duration,
}

/// Sets the signal of an [`Interrupt`]; what the signal handlers (or a test) hold.
#[derive(Debug)]
pub struct Trigger(watch::Sender<Option<Signal>>);

impl Trigger {
    /// Records `signal`; the first one wins. Whether this was the first.
    pub fn fire(&self, signal: Signal) -> bool {
        self.0.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(signal);
            }
            first
        })
    }
}

/// The grace in-flight rollouts get after a signal, unless configured.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(20);

impl Interrupt {
    /// An interrupt that only `Trigger` sets.
    pub fn new(grace: Duration) -> (Trigger, Interrupt) {
        let (tx, rx) = watch::channel(None);
        (Trigger(tx), Interrupt { signal: rx, grace })
    }

    /// An interrupt that never fires (tests, library use).
    pub fn never() -> Interrupt {
        let (trigger, interrupt) = Interrupt::new(DEFAULT_GRACE);
        // The receiver keeps the last value; a dropped sender just means no signal will come.
        drop(trigger);
        interrupt
    }

    /// The signal received so far, if any.
    pub fn signal(&self) -> Option<Signal> {
        *self.signal.borrow()
    }

    /// Resolves when a signal arrives (at once if one has); never, when none can come.
    pub async fn received(&self) -> Signal {
        let mut rx = self.signal.clone();
        let signal = rx.wait_for(Option::is_some).await.ok().and_then(|s| *s);
        match signal {
            Some(signal) => signal,
            None => std::future::pending().await,
        }
    }

    /// Resolves `grace` after the signal: when a rollout still running must give up.
    pub async fn grace_over(&self) -> Signal {
        let signal = self.received().await;
        tokio::time::sleep(self.grace).await;
        signal
    }
}

/// Installs handlers for SIGINT and SIGTERM on a thread of their own (so a signal is seen
/// even while the run blocks outside the async runtime) and returns the run's [`Interrupt`].
///
/// # Errors
/// When the thread, its runtime or a handler cannot be set up.
pub fn listen(grace: Duration) -> std::io::Result<Interrupt> {
    use tokio::signal::unix::{signal, SignalKind};
    let (trigger, interrupt) = Interrupt::new(grace);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("monoship-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            runtime.block_on(async move {
                let handlers = signal(SignalKind::interrupt())
                    .and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
                let (mut int, mut term) = match handlers {
                    Ok(h) => h,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    let signal = tokio::select! {
                        _ = int.recv() => Signal::Interrupt,
                        _ = term.recv() => Signal::Terminate,
                    };
                    if trigger.fire(signal) {
                        eprintln!(
                            "monoship: {} received: starting nothing new, finishing or rolling back what is in flight (grace {}s)",
                            signal.name(),
                            grace.as_secs()
                        );
                    } else {
                        eprintln!("monoship: {} received; already stopping", signal.name());
                    }
                }
            });
        })?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the signal thread stopped")))?;
    Ok(interrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_is_128_plus_the_signal_number() {
        assert_eq!(Signal::Interrupt.exit_code(), 130);
        assert_eq!(Signal::Terminate.exit_code(), 143);
        assert_eq!(Signal::Terminate.name(), "SIGTERM");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_signal_wins_and_the_grace_runs_from_it() {
        let (trigger, interrupt) = Interrupt::new(Duration::from_secs(20));
        assert_eq!(interrupt.signal(), None);
        let started = tokio::time::Instant::now();
        let waiting = tokio::spawn({
            let interrupt = interrupt.clone();
            async move { interrupt.grace_over().await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        trigger.fire(Signal::Terminate);
        trigger.fire(Signal::Interrupt);
        assert_eq!(interrupt.signal(), Some(Signal::Terminate));
        assert_eq!(waiting.await.unwrap(), Signal::Terminate);
        assert_eq!(started.elapsed(), Duration::from_secs(25));
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_that_cannot_fire_never_resolves() {
        let never = Interrupt::never();
        let waited = tokio::time::timeout(Duration::from_secs(3600), never.received()).await;
        assert!(waited.is_err());
        assert_eq!(never.signal(), None);
    }
}
