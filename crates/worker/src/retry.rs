//! What happens to a build a fault stopped. Every claim counts as an attempt;
//! only a graceful shutdown of the worker gives it back. While attempts are
//! left, the build goes back to the queue and waits `retry_base`, doubled for
//! each attempt after the first, capped at `retry_cap`. After `max_attempts`
//! it fails with a message that says what went wrong and what to do, while
//! the cause itself (which may name storage endpoints or server paths) stays
//! in the server's log.

use std::time::Duration;

/// Why an attempt stopped without an outcome, though the build may succeed
/// if tried again.
#[derive(Debug)]
pub(crate) enum Fault {
    /// Storage, the database or the machine failed for now.
    Transient(String),
    /// The inspector panicked while checking the package.
    Crash(String),
}

impl Fault {
    pub(crate) fn cause(&self) -> &str {
        match self {
            Fault::Transient(cause) | Fault::Crash(cause) => cause,
        }
    }

    /// The build log line for an attempt that will be retried.
    pub(crate) fn retry_line(&self, attempt: i32, max_attempts: i32, delay: Duration) -> String {
        let what = match self {
            Fault::Transient(_) => "The build was interrupted by a temporary fault of the server",
            Fault::Crash(_) => "Checking the deployment package crashed the server's inspector",
        };
        format!("{what} (attempt {attempt} of {max_attempts}); it is retried in {delay:?}")
    }

    /// The build's error message once no attempt is left; what stopped the
    /// last attempt decides it.
    pub(crate) fn give_up_message(&self, attempts: i32) -> String {
        match self {
            Fault::Transient(_) => format!(
                "The build was interrupted by temporary faults of the server {attempts} times: \
                 rebuild the revision to try again later, and if it keeps failing, ask the \
                 server's administrator to look at the server log"
            ),
            Fault::Crash(_) => format!(
                "Checking the deployment package crashed the server's inspector, and the build \
                 was given up after {attempts} attempts: report this to the server's \
                 administrator (the server log has the details), or upload a different package"
            ),
        }
    }
}

/// How long a build waits before the attempt after `attempts`.
/// (`retry_base` doubled per attempt, up to `retry_cap`: see `WorkerConfig`)
pub(crate) fn backoff(base: Duration, cap: Duration, attempts: i32) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 31) as u32;
    base.saturating_mul(1 << doublings).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_per_attempt_up_to_the_cap() {
        let (base, cap) = (Duration::from_secs(10), Duration::from_secs(60));
        let waits: Vec<u64> = (1..=6)
            .map(|attempts| backoff(base, cap, attempts).as_secs())
            .collect();
        assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
        assert_eq!(backoff(base, cap, i32::MAX), cap);
        assert_eq!(backoff(base, cap, 0), base);
    }
}
