//! Retrying transient RPC failures with exponential backoff and full jitter, never sooner than the server's
//! `Retry-After`. Only errors that say they are retryable are retried; a revert, a rejection or a TLS
//! failure never is.

use std::{future::Future, time::Duration};

use rand::Rng;

use crate::ClientError;

/// The longest `Retry-After` honoured: a server asking for more gets retried after this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// First backoff.
    pub initial: Duration,
    /// Longest backoff.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 1,
        initial: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// Runs `op` until it succeeds, fails with a non-retryable error, or attempts run out.
    pub async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut backoff = self.initial;
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.attempts => {
                    // full jitter: a random wait in [0, backoff], but never sooner than the server asked
                    let jitter = rand::rng().random_range(Duration::ZERO..=backoff);
                    let wait = jitter.max(e.retry_after().unwrap_or_default().min(MAX_RETRY_AFTER));
                    tracing::debug!(what, attempt, ?wait, error = %e, "transient RPC error, retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(self.max);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_retry_waits_at_least_what_the_server_asked() {
        let policy = RetryPolicy {
            attempts: 3,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(1),
        };
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let answer = policy
            .run("test", || {
                calls += 1;
                let first = calls == 1;
                async move {
                    if first {
                        Err(ClientError::Rpc {
                            message: "429".into(),
                            retryable: true,
                            retry_after: Some(Duration::from_secs(3)),
                        })
                    } else {
                        Ok(calls)
                    }
                }
            })
            .await;
        assert_eq!(answer.ok(), Some(2));
        assert!(
            started.elapsed() >= Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn errors_that_are_not_retryable_are_returned_at_once() {
        let mut calls = 0;
        let answer: Result<(), ClientError> = RetryPolicy::default()
            .run("test", || {
                calls += 1;
                async {
                    Err(ClientError::Tls {
                        untrusted: true,
                        reason: "UnknownIssuer".into(),
                    })
                }
            })
            .await;
        assert!(matches!(answer, Err(ClientError::Tls { .. })));
        assert_eq!(calls, 1);
    }
}
