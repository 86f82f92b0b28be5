//! Attempts with exponential backoff. The decision (wait how long, or give
//! up) is a pure function of the policy and the attempts so far; [`run`]
//! only loops over it, so the tests choose milliseconds and a fake sleep.

use std::fmt;
use std::time::Duration;

/// How often and how patiently an operation is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all, the first one included (at least 1).
    pub attempts: u32,
    /// The wait after the first failure; doubled after each further one.
    pub first_wait: Duration,
    /// No wait is longer than this.
    pub max_wait: Duration,
}

impl Default for Policy {
    /// 10 attempts (the appliance vendors' number), waits of 5 s doubling
    /// up to 5 min: about 20 minutes from the first to the last attempt.
    fn default() -> Policy {
        Policy {
            attempts: 10,
            first_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(300),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Stop: the attempts are used up, or the error will not go away.
    GiveUp,
}

/// The decision after `failed` attempts have failed (1 after the first),
/// the last one with an error that is `retryable` or not.
pub fn decide(policy: &Policy, failed: u32, retryable: bool) -> Decision {
    if !retryable || failed >= policy.attempts.max(1) {
        return Decision::GiveUp;
    }
    let doublings = failed.saturating_sub(1).min(31);
    let wait = policy
        .first_wait
        .checked_mul(1u32 << doublings)
        .unwrap_or(policy.max_wait);
    Decision::RetryAfter(wait.min(policy.max_wait))
}

/// An error that knows whether trying again can help.
pub trait Retryable {
    fn retryable(&self) -> bool;
}

/// Every attempt failed: the errors in order, the first attempt's first.
#[derive(Debug)]
pub struct Exhausted<E> {
    pub errors: Vec<E>,
    /// Whether the last error ended the attempts early (not retryable).
    pub gave_up_early: bool,
}

impl<E: fmt::Display> fmt::Display for Exhausted<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        if self.gave_up_early {
            write!(
                f,
                "gave up after {n} attempt(s), the last error cannot go away by retrying:"
            )?;
        } else {
            write!(f, "all {n} attempt(s) failed:")?;
        }
        for (i, e) in self.errors.iter().enumerate() {
            write!(f, "\n  attempt {}: {e}", i + 1)?;
        }
        Ok(())
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Exhausted<E> {}

/// Runs `op` (given the 1-based attempt number) until it succeeds or
/// [`decide`] gives up, sleeping through `sleep` between attempts.
pub fn run<T, E: Retryable + fmt::Display>(
    policy: &Policy,
    mut sleep: impl FnMut(Duration),
    mut op: impl FnMut(u32) -> Result<T, E>,
) -> Result<T, Exhausted<E>> {
    let mut errors = Vec::new();
    loop {
        let attempt = errors.len() as u32 + 1;
        match op(attempt) {
            Ok(value) => return Ok(value),
            Err(e) => {
                let retryable = e.retryable();
                errors.push(e);
                match decide(policy, attempt, retryable) {
                    Decision::RetryAfter(wait) => {
                        log::warn!(
                            "attempt {attempt} of {} failed: {}; next in {:.1} s",
                            policy.attempts,
                            errors[errors.len() - 1],
                            wait.as_secs_f64()
                        );
                        sleep(wait);
                    }
                    Decision::GiveUp => {
                        return Err(Exhausted {
                            errors,
                            gave_up_early: !retryable,
                        })
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn policy() -> Policy {
        Policy {
            attempts: 10,
            first_wait: MS(100),
            max_wait: MS(1000),
        }
    }

    #[test]
    fn waits_double_up_to_the_cap() {
        let waits: Vec<_> = (1..10).map(|n| decide(&policy(), n, true)).collect();
        let expected: Vec<_> = [100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000]
            .iter()
            .map(|&ms| Decision::RetryAfter(MS(ms)))
            .collect();
        assert_eq!(waits, expected);
    }

    #[test]
    fn gives_up_after_the_last_attempt_or_a_permanent_error() {
        assert_eq!(decide(&policy(), 10, true), Decision::GiveUp);
        assert_eq!(decide(&policy(), 11, true), Decision::GiveUp);
        assert_eq!(decide(&policy(), 1, false), Decision::GiveUp);
        let once = Policy {
            attempts: 0,
            ..policy()
        };
        assert_eq!(decide(&once, 1, true), Decision::GiveUp);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let p = Policy {
            attempts: u32::MAX,
            first_wait: Duration::from_secs(u64::MAX / 4),
            max_wait: Duration::from_secs(60),
        };
        assert_eq!(
            decide(&p, 1000, true),
            Decision::RetryAfter(Duration::from_secs(60))
        );
        assert_eq!(
            decide(&p, 2, true),
            Decision::RetryAfter(Duration::from_secs(60))
        );
    }

    #[derive(Debug)]
    struct Failure(u32, bool);
    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "failure {}", self.0)
        }
    }
    impl Retryable for Failure {
        fn retryable(&self) -> bool {
            self.1
        }
    }

    #[test]
    fn run_returns_every_error_and_sleeps_between() {
        let mut slept = Vec::new();
        let result: Result<(), _> = run(&policy(), |d| slept.push(d), |n| Err(Failure(n, true)));
        let err = result.unwrap_err();
        assert_eq!(err.errors.len(), 10);
        assert_eq!(slept.len(), 9);
        let text = err.to_string();
        assert!(text.starts_with("all 10 attempt(s) failed:"), "{text}");
        assert!(text.contains("attempt 1: failure 1") && text.contains("attempt 10: failure 10"));
    }

    #[test]
    fn run_stops_on_success_and_on_a_permanent_error() {
        let mut calls = 0;
        let ok = run(
            &policy(),
            |_| {},
            |n| {
                calls += 1;
                if n < 3 {
                    Err(Failure(n, true))
                } else {
                    Ok(n)
                }
            },
        );
        assert_eq!(ok.unwrap(), 3);
        assert_eq!(calls, 3);
        let err = run::<(), _>(&policy(), |_| {}, |n| Err(Failure(n, n < 2))).unwrap_err();
        assert_eq!(err.errors.len(), 2);
        assert!(err.gave_up_early);
        assert!(err.to_string().starts_with("gave up after 2 attempt(s)"));
    }
}
