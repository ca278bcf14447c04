//! The one way hybrid tries again and waits for something: exponential
//! backoff with full jitter ("Exponential Backoff And Jitter", AWS
//! Architecture Blog: a random wait up to the doubled cap, so callers that
//! failed together do not retry together), bounded by a deadline or a
//! number of attempts. Polling a condition (a node Ready, an instance
//! stopped, an image available) is the same policy with a steady cap
//! (`Backoff::steady`). Whether an error deserves another try, and what a
//! spent policy means, is the caller's decision (`CloudError::
//! is_transient` for AWS, a timeout error naming what was awaited); this
//! module only decides how long to wait and when to stop.

use std::time::{Duration, Instant};

/// An error that may go away by itself (throttling, a dropped connection,
/// a server's own failure), unlike a refusal that will not.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// How the waits between tries grow: from `first`, doubling, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// For polling: every wait between half of `interval` and all of it
    /// ("equal jitter"), so runs polling one server do not line up and
    /// the rate stays near the interval's.
    pub const fn steady(interval: Duration) -> Self {
        Self { first: interval, max: interval }
    }

    /// The wait before retry `n` (1 for the first retry) for a uniform
    /// `jitter` in [0, 1): anywhere from nothing up to the capped doubling.
    pub fn delay(&self, n: u32, jitter: f64) -> Duration {
        let jitter = jitter.clamp(0.0, 1.0);
        if self.first == self.max {
            return self.first / 2 + (self.first / 2).mul_f64(jitter);
        }
        let cap = self.first.saturating_mul(1u32 << n.saturating_sub(1).min(20)).min(self.max);
        cap.mul_f64(jitter).max(self.first.min(cap) / 4)
    }
}

/// One sequence of tries under a policy.
#[derive(Debug)]
pub struct Retry {
    backoff: Backoff,
    deadline: Option<Duration>,
    attempts: Option<u32>,
    start: Instant,
    retries: u32,
    /// When `report_due` last said yes, measured from `start`.
    reported: Option<Duration>,
}

impl Retry {
    pub fn new(backoff: Backoff) -> Self {
        Self { backoff, deadline: None, attempts: None, start: Instant::now(), retries: 0, reported: None }
    }

    /// A poll: looks every `interval` (jittered, `Backoff::steady`) until
    /// `deadline` has passed since the first.
    pub fn polling(interval: Duration, deadline: Duration) -> Self {
        Self::new(Backoff::steady(interval)).deadline(deadline)
    }

    /// Give up once this much time has passed since the first try.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Give up after this many tries in all.
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = Some(attempts);
        self
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Retries made so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Whether the deadline has passed: the try under way is the last.
    pub fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| self.start.elapsed() >= d)
    }

    /// Whether a long wait should say so again: the first time, then once
    /// `every` has passed since the last time it did.
    pub fn report_due(&mut self, every: Duration) -> bool {
        let now = self.start.elapsed();
        let due = self.reported.is_none_or(|last| now >= last + every);
        if due {
            self.reported = Some(now);
        }
        due
    }

    /// The wait before the next try, or `None` when the policy is spent
    /// (out of attempts, or the wait would end past the deadline).
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.attempts.is_some_and(|a| self.retries + 1 >= a) {
            return None;
        }
        let delay = self.backoff.delay(self.retries + 1, rand::random::<f64>());
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_sub(self.start.elapsed());
            if left.is_zero() {
                return None;
            }
            self.retries += 1;
            return Some(delay.min(left));
        }
        self.retries += 1;
        Some(delay)
    }

    /// One look of a poll, which may fail: `Ok(Some(v))` to go on with;
    /// after a transient failure, `Ok(None)` once the next wait is over
    /// (look again); the error when it is permanent or the policy is
    /// spent. So a throttle or a dropped answer never ends a long wait.
    pub async fn tolerate<T, E: Transient>(&mut self, look: Result<T, E>) -> Result<Option<T>, E> {
        match look {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                if e.is_transient() && self.wait().await {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Sleeps before the next try; false when the policy is spent.
    pub async fn wait(&mut self) -> bool {
        match self.next_delay() {
            Some(d) => {
                tokio::time::sleep(d).await;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_jitter_spreads_them() {
        let b = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        assert_eq!(b.delay(1, 0.999_999), Duration::from_millis(200).mul_f64(0.999_999));
        assert_eq!(b.delay(3, 0.999_999), Duration::from_millis(800).mul_f64(0.999_999));
        assert!(b.delay(30, 0.999_999) <= Duration::from_secs(5), "capped");
        // Full jitter, with a floor so a retry never spins.
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(50));
        assert!(b.delay(3, 0.5) < b.delay(3, 0.9));
    }

    #[test]
    fn attempts_and_deadlines_end_a_retry() {
        let mut r = Retry::new(Backoff::new(Duration::from_millis(1), Duration::from_millis(2))).attempts(3);
        assert!(r.next_delay().is_some() && r.next_delay().is_some());
        assert_eq!(r.next_delay(), None, "three tries: two retries");
        let mut r = Retry::new(Backoff::new(Duration::from_secs(1), Duration::from_secs(1))).deadline(Duration::ZERO);
        assert_eq!(r.next_delay(), None);
        let mut r = Retry::new(Backoff::new(Duration::from_secs(10), Duration::from_secs(10))).deadline(Duration::from_secs(3));
        assert!(r.next_delay().unwrap() <= Duration::from_secs(3), "never waits past the deadline");
        assert!(!r.past_deadline());
        let r = Retry::new(Backoff::steady(Duration::from_secs(1))).deadline(Duration::ZERO);
        assert!(r.past_deadline(), "the try under way is the last");
    }

    #[test]
    fn steady_polls_stay_between_half_and_the_interval() {
        let b = Backoff::steady(Duration::from_secs(4));
        for n in [1, 2, 10] {
            assert_eq!(b.delay(n, 0.0), Duration::from_secs(2));
            assert!(b.delay(n, 0.999) < Duration::from_secs(4));
        }
    }

    #[derive(Debug, PartialEq)]
    struct Fails(bool);
    impl Transient for Fails {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn a_poll_looks_again_after_transient_failures_only() {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
            let mut r = Retry::new(Backoff::steady(Duration::from_millis(1))).deadline(Duration::from_secs(5));
            assert_eq!(r.tolerate::<u8, Fails>(Ok(7)).await, Ok(Some(7)));
            assert_eq!(r.tolerate::<u8, _>(Err(Fails(true))).await, Ok(None), "a throttle: look again");
            assert_eq!(r.tolerate::<u8, _>(Err(Fails(false))).await, Err(Fails(false)), "a refusal ends it");
            let mut spent = Retry::new(Backoff::steady(Duration::from_millis(1))).deadline(Duration::ZERO);
            assert_eq!(spent.tolerate::<u8, _>(Err(Fails(true))).await, Err(Fails(true)), "past the deadline");
        });
    }

    #[test]
    fn reports_are_due_first_and_then_once_per_period() {
        let mut r = Retry::new(Backoff::steady(Duration::from_millis(1)));
        assert!(r.report_due(Duration::from_secs(60)), "the first look is reported");
        assert!(!r.report_due(Duration::from_secs(60)));
        assert!(r.report_due(Duration::ZERO));
    }
}
