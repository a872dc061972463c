//! Waiting for a dependency, with backoff, and saying why.
//!
//! Every transient fault (Redis restarting, Postgres not up yet) goes through
//! [`Backoff`]: exponential delays with jitter from `backon`, capped, never giving
//! up, and each retry logged with its cause: `waiting for redis: connection refused`.

use std::future::Future;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;

/// Exponential backoff from 100 ms to 5 s with jitter, without limit.
pub struct Backoff {
    inner: backon::ExponentialBackoff,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            inner: backon::ExponentialBuilder::default()
                .with_min_delay(min)
                .with_max_delay(max)
                .with_jitter()
                .without_max_times()
                .build(),
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        self.inner.next().unwrap_or(Duration::from_secs(5))
    }

    /// Sleeps for the next delay; false if `token` was cancelled first.
    pub async fn sleep(&mut self, token: &CancellationToken) -> bool {
        let d = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = token.cancelled() => false,
        }
    }
}

/// Calls `attempt` until it succeeds, logging `waiting for <what>: <cause>` at
/// each failure and backing off. `None` when `token` is cancelled meanwhile.
pub async fn wait_for<T, E, F, Fut>(
    what: &str,
    token: &CancellationToken,
    mut attempt: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::default();
    loop {
        let res = tokio::select! {
            r = attempt() => r,
            _ = token.cancelled() => return None,
        };
        match res {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(cause = %e, "waiting for {what}");
                if !backoff.sleep(token).await {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retries_until_success() {
        let n = AtomicU32::new(0);
        let token = CancellationToken::new();
        let v = wait_for("thing", &token, || async {
            if n.fetch_add(1, Ordering::SeqCst) < 3 {
                Err("not yet")
            } else {
                Ok(42)
            }
        })
        .await;
        assert_eq!(v, Some(42));
        assert_eq!(n.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_waiting() {
        let token = CancellationToken::new();
        let t = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            t.cancel();
        });
        let v: Option<()> = wait_for("never", &token, || async { Err::<(), _>("down") }).await;
        assert_eq!(v, None);
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(2)),
            "{delays:?}"
        );
        assert!(delays[9] >= Duration::from_millis(500), "{delays:?}");
    }
}
