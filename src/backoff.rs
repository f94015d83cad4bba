//! The one retry policy of pgcd: exponential backoff with jitter, capped,
//! with an optional budget of attempts or time. Steps, operations, status
//! reports, fetches, joins and the agent's start-up all retry through it,
//! so "how long until pgcd tries again" is decided here and nowhere else.
//!
//! It also rate-limits the log line a retry loop writes ([`Backoff::should_log`]),
//! so a loop that waits for minutes says so every few seconds, not every try.

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A retry schedule: `initial`, doubling up to `max`, each delay jittered
/// by up to a quarter so that agents started together do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempts: u32,
    limit: Option<u32>,
    deadline: Option<Instant>,
    started: Instant,
    last_log: Option<Instant>,
    log_every: Duration,
}

impl Backoff {
    /// A schedule from `initial` up to `max`, without a budget.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempts: 0,
            limit: None,
            deadline: None,
            started: Instant::now(),
            last_log: None,
            log_every: Duration::from_secs(5),
        }
    }

    /// For talking to etcd or a peer that is starting: 200 ms up to 5 s.
    pub fn transient() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// For a plan step that failed: 1 s, 2 s, 4 s, ... up to 5 minutes.
    pub fn step() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }

    /// At most `n` attempts in all (the first one included).
    pub fn attempts(mut self, n: u32) -> Self {
        self.limit = Some(n.max(1));
        self
    }

    /// Give up once `budget` has passed since the schedule was made.
    pub fn within(mut self, budget: Duration) -> Self {
        self.deadline = Some(Instant::now() + budget);
        self
    }

    /// How many delays have been handed out (failed attempts so far).
    pub fn failures(&self) -> u32 {
        self.attempts
    }

    /// How long since the schedule was made.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempts = 0;
        self.started = Instant::now();
    }

    /// The delay before the next attempt, or `None` when the budget is
    /// spent. Counts the failure that asked for it.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.attempts += 1;
        if self.limit.is_some_and(|l| self.attempts >= l) {
            return None;
        }
        let exp = self.attempts.saturating_sub(1).min(20);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let delay = base + jitter(base / 4);
        if self.deadline.is_some_and(|d| Instant::now() + delay > d) {
            return None;
        }
        Some(delay)
    }

    /// Waits out the next delay; `false` when the budget is spent or
    /// `cancel` fired (then the caller stops retrying).
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let Some(delay) = self.next_delay() else {
            return false;
        };
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    /// Whether a retry loop should write its "still waiting" line now: on
    /// the first failure, then every few seconds.
    pub fn should_log(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= self.log_every);
        if due {
            self.last_log = Some(now);
        }
        due
    }
}

/// Up to `max`, from the clock's low bits: enough to spread agents apart,
/// no need for a random number generator here.
fn jitter(max: Duration) -> Duration {
    let nanos = max.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    Duration::from_nanos(seed.wrapping_mul(6364136223846793005) % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_at_most_a_quarter_of_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let got: Vec<Duration> = (0..6).map(|_| b.next_delay().unwrap()).collect();
        let bases = [100, 200, 400, 800, 800, 800];
        for (d, base) in got.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(*d >= base && *d <= base + base / 4, "{d:?} for {base:?}");
        }
        assert_eq!(b.failures(), 6);
    }

    #[test]
    fn a_budget_of_attempts_ends_the_schedule() {
        let mut b = Backoff::step().attempts(3);
        assert!(b.next_delay().is_some());
        assert!(b.next_delay().is_some());
        assert!(b.next_delay().is_none(), "the third attempt was the last");
    }

    #[test]
    fn a_time_budget_ends_the_schedule() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1))
            .within(Duration::from_millis(10));
        assert!(b.next_delay().is_none());
    }

    #[test]
    fn the_waiting_line_is_written_at_most_every_few_seconds() {
        let mut b = Backoff::transient();
        assert!(b.should_log());
        assert!(!b.should_log());
    }

    #[tokio::test]
    async fn cancelling_ends_a_wait_at_once() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let t = Instant::now();
        assert!(!b.wait(&cancel).await);
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
