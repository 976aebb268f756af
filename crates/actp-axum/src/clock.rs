//! The kernel's "now" without a chain read per request.
//!
//! The kernel judges deadlines by `block.timestamp`. On a live chain that trails the wall clock by at most a
//! block; on a devnet that was time-travelled it runs ahead. The clock keeps `offset = max(0, latest block
//! timestamp - wall clock)`, measured when the paywall starts and again in the background at most once per
//! refresh interval (never on the request path), and reads `wall clock + offset`. A clock that errs late is
//! the safe side: the paywall refuses a transaction a little early rather than serve one it cannot deliver.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use std::sync::Mutex;

use actp_client::{Kernel, Result};

pub(crate) struct ChainClock {
    offset: AtomicU64,
    synced_at: Mutex<Option<Instant>>,
    syncing: AtomicBool,
    refresh: Duration,
}

fn wall() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ChainClock {
    pub(crate) fn new(refresh: Duration) -> Self {
        ChainClock {
            offset: AtomicU64::new(0),
            synced_at: Mutex::new(None),
            syncing: AtomicBool::new(false),
            refresh,
        }
    }

    /// The kernel's current time, as well as it is known.
    pub(crate) fn now(&self) -> u64 {
        wall() + self.offset.load(Ordering::Relaxed)
    }

    /// Measures the offset now.
    pub(crate) async fn sync(&self, kernel: &Kernel) -> Result<()> {
        let chain = kernel.chain_time().await?;
        self.offset
            .store(chain.saturating_sub(wall()), Ordering::Relaxed);
        if let Ok(mut at) = self.synced_at.lock() {
            *at = Some(Instant::now());
        }
        Ok(())
    }

    /// Starts a background sync if the last one is older than the refresh interval.
    pub(crate) fn refresh_in_background(self: &Arc<Self>, kernel: &Kernel) {
        let stale = self
            .synced_at
            .lock()
            .map(|at| at.is_none_or(|t| t.elapsed() >= self.refresh))
            .unwrap_or(false);
        if stale && !self.syncing.swap(true, Ordering::AcqRel) {
            let clock = Arc::clone(self);
            let kernel = kernel.clone();
            tokio::spawn(async move {
                if let Err(e) = clock.sync(&kernel).await {
                    tracing::debug!(error = %e, "chain clock sync failed; keeping the last offset");
                }
                clock.syncing.store(false, Ordering::Release);
            });
        }
    }
}
