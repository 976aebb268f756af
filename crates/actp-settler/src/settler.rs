//! The settlement loop.
//!
//! Each step: read the confirmed blocks after the checkpoint and apply their events to the pending set and
//! the checkpoint in one atomic write; learn the window end of pending transactions whose delivery carried
//! no proof event; then, for every pending transaction whose window has ended, re-read its state at the
//! head and settle those still DELIVERED with `settleBatch`, in groups, a few groups in flight.
//!
//! Why this is safe to kill at any instant: nothing is removed from the pending set until a confirmed block
//! shows the transaction leaving DELIVERED, and nothing is sent without reading its state first, so a
//! restarted daemon re-reads, finds it settled, and sends nothing. Why it survives reorgs: it only reads
//! blocks `confirmations` deep, and decisions to send are taken from a fresh read of the head. Why several
//! daemons do not fight: `settleBatch` skips ids that are no longer DELIVERED (no revert, a few hundred
//! gas), and [`Shard`] lets them split the ids between them.

use std::{
    collections::HashMap,
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use actp_client::{
    ClientError, Kernel, KernelEvent, Watcher, WatcherConfig,
    bindings::EscrowKernel::EscrowKernelEvents,
};
use actp_core::{B256, State};
use futures::{StreamExt, stream};

use crate::{Change, Metrics, SettlerError, SettlerStore, Snapshot, StoreUrl};

/// A share of the ids, so that several daemons split the work: the daemon with `index` takes the ids whose
/// last four bytes are `index` modulo `count`. Written `index/count`, e.g. `0/2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This daemon's share, from 0.
    pub index: u32,
    /// How many daemons share the kernel.
    pub count: u32,
}

impl Shard {
    /// Whether this share owns `id`.
    pub fn owns(&self, id: &B256) -> bool {
        let tail = u32::from_be_bytes([id[28], id[29], id[30], id[31]]);
        self.count == 0 || tail % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("`{s}` is not a shard: write INDEX/COUNT with INDEX < COUNT, e.g. 0/2");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Configuration of a [`Settler`].
#[derive(Debug, Clone)]
pub struct SettlerConfig {
    /// Where the checkpoint and the pending set live: a sled directory (one daemon), or a PostgreSQL database
    /// that several daemons share.
    pub store: StoreUrl,
    /// How long a daemon keeps the transactions it is settling to itself; another daemon takes them over once
    /// the lease has expired (after a crash, say). Longer than a settlement takes to confirm.
    pub lease: Duration,
    /// First block to read when there is no checkpoint yet (the kernel's deployment block).
    pub from_block: u64,
    /// Blocks on top of a block before it is read, and before a settlement receipt counts.
    pub confirmations: u64,
    /// Ids per `settleBatch` call.
    pub batch_size: usize,
    /// Settlement transactions in flight at once.
    pub concurrency: usize,
    /// State reads in flight at once.
    pub read_concurrency: usize,
    /// Largest block range per log query.
    pub max_range: u64,
    /// Pause between steps once caught up.
    pub poll_interval: Duration,
    /// Longest pause after repeated failures (the pause doubles from 250 ms up to this).
    pub max_backoff: Duration,
    /// This daemon's share of the ids (`None`: all of them).
    pub shard: Option<Shard>,
    /// How long a graceful shutdown waits for the step in progress.
    pub shutdown_grace: Duration,
}

impl Default for SettlerConfig {
    fn default() -> Self {
        SettlerConfig {
            store: StoreUrl::Sled(PathBuf::from(".actp/settler")),
            lease: Duration::from_secs(120),
            from_block: 0,
            confirmations: 2,
            batch_size: 100,
            concurrency: 4,
            read_concurrency: 32,
            max_range: 2_000,
            poll_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            shard: None,
            shutdown_grace: Duration::from_secs(15),
        }
    }
}

/// What one [`Settler::step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// The checkpoint reached the confirmed head.
    pub synced: bool,
    /// Transactions sent for settlement in this step.
    pub sent: usize,
    /// Of those, settled by this step's transactions.
    pub settled: u64,
}

/// Blocks after which a parked transaction is read again even if no event closed it.
const PARK_BLOCKS: u64 = 2;
/// Time after which a parked transaction is read again even if the head did not move.
const PARK_TIME: Duration = Duration::from_secs(30);
/// Block ranges read per step before settling what is due (so a long catch-up still settles as it goes).
const RANGES_PER_STEP: usize = 8;

/// The settlement daemon.
#[derive(Debug)]
pub struct Settler {
    kernel: Kernel,
    store: SettlerStore,
    watcher: Watcher,
    config: SettlerConfig,
    metrics: Arc<Metrics>,
    /// Transactions not to read again for a while: seen not DELIVERED at the head (waiting for the confirmed
    /// event that closes them), or just sent. Value: the head and the time when parked.
    parked: HashMap<B256, (u64, Instant)>,
    head: u64,
    /// This daemon's name in the store's leases.
    owner: String,
}

impl Settler {
    /// Opens the settler's database and positions it at its checkpoint (or `config.from_block`).
    pub async fn open(kernel: Kernel, config: SettlerConfig) -> Result<Self, SettlerError> {
        if kernel.signer_address().is_none() {
            return Err(SettlerError::NoSigner);
        }
        let store = SettlerStore::open(&config.store, kernel.chain_id(), kernel.address()).await?;
        let from = store.checkpoint().await?.unwrap_or(config.from_block);
        let watcher = Watcher::new(
            kernel.provider().clone(),
            kernel.address(),
            from,
            WatcherConfig {
                confirmations: config.confirmations,
                max_range: config.max_range,
                ..WatcherConfig::default()
            },
        );
        let metrics = Arc::new(Metrics::default());
        metrics.set_position(from, from.saturating_sub(1));
        metrics.set_backlog(store.pending().await?.len() as u64, 0);
        Ok(Settler {
            kernel,
            store,
            watcher,
            config,
            metrics,
            parked: HashMap::new(),
            head: 0,
            owner: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
        })
    }

    /// The metrics, shared (for the health endpoint and progress display).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// One step: read confirmed events, then settle what is due.
    pub async fn step(&mut self) -> Result<Step, SettlerError> {
        let synced = self.read_events().await?;
        self.learn_windows().await?;
        let (sent, settled) = self.settle_due().await?;
        self.metrics.set_healthy();
        Ok(Step {
            synced,
            sent,
            settled,
        })
    }

    /// Settles everything due, then returns (for cron): steps until the checkpoint reaches the head and a
    /// step finds nothing more to send. Transient failures are retried with backoff, at most `attempts`
    /// times in a row.
    pub async fn run_once(&mut self, attempts: u32) -> Result<Snapshot, SettlerError> {
        let mut failures = 0;
        let mut backoff = Duration::ZERO;
        loop {
            match self.step().await {
                Ok(step) => {
                    failures = 0;
                    if step.synced && step.sent == 0 {
                        break;
                    }
                }
                Err(e) if e.is_retryable() && failures + 1 < attempts => {
                    failures += 1;
                    self.metrics.rpc_error();
                    backoff = self.next_backoff(backoff);
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "step failed");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.store.flush().await?;
        Ok(self.metrics.snapshot())
    }

    /// Runs until `shutdown` completes, surviving RPC outages with backoff. On shutdown the step in
    /// progress gets `shutdown_grace` to finish. Returns the final metrics; only a storage failure stops
    /// it early.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Snapshot, SettlerError> {
        tokio::pin!(shutdown);
        let mut backoff = Duration::ZERO;
        let mut stopping = false;
        while !stopping {
            let outcome = {
                let grace = self.config.shutdown_grace;
                let step = self.step();
                tokio::pin!(step);
                tokio::select! {
                    r = &mut step => r,
                    () = &mut shutdown => {
                        stopping = true;
                        tracing::info!("shutting down: finishing the step in progress");
                        match tokio::time::timeout(grace, &mut step).await {
                            Ok(r) => r,
                            Err(_) => break,
                        }
                    }
                }
            };
            let pause = match outcome {
                Ok(step) => {
                    backoff = Duration::ZERO;
                    if step.settled > 0 {
                        let s = self.metrics.snapshot();
                        tracing::info!(
                            settled = step.settled,
                            backlog = s.backlog,
                            total = s.settled,
                            "settled"
                        );
                    }
                    if step.synced && step.sent == 0 {
                        self.config.poll_interval
                    } else {
                        Duration::ZERO
                    }
                }
                Err(e) if e.is_retryable() => {
                    self.metrics.rpc_error();
                    backoff = self.next_backoff(backoff);
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "step failed; will retry");
                    backoff
                }
                Err(e) => return Err(e),
            };
            if !stopping && !pause.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = &mut shutdown => stopping = true,
                }
            }
        }
        self.store.flush().await?;
        Ok(self.metrics.snapshot())
    }

    fn next_backoff(&self, last: Duration) -> Duration {
        (last * 2)
            .max(Duration::from_millis(250))
            .min(self.config.max_backoff)
    }

    /// Reads up to [`RANGES_PER_STEP`] ranges of confirmed blocks; true when it reached the confirmed head.
    async fn read_events(&mut self) -> Result<bool, SettlerError> {
        let mut synced = false;
        let mut wrote = false;
        for _ in 0..RANGES_PER_STEP {
            let polled = self.watcher.poll().await?;
            self.head = polled.head;
            if polled.read {
                let changes: Vec<(u64, Change)> = polled
                    .events
                    .iter()
                    .filter_map(|e| change_of(e).map(|c| (e.block_number, c)))
                    .collect();
                self.store.apply(&changes, polled.next_block).await?;
                wrote = true;
            }
            self.metrics.set_position(polled.next_block, polled.head);
            if !polled.read || polled.next_block + self.config.confirmations > polled.head {
                synced = true;
                break;
            }
        }
        if wrote {
            self.store.flush().await?;
        }
        Ok(synced)
    }

    fn is_parked(&self, id: &B256) -> bool {
        self.parked.get(id).is_some_and(|(head, at)| {
            self.head <= head + self.config.confirmations + PARK_BLOCKS && at.elapsed() < PARK_TIME
        })
    }

    fn park(&mut self, id: B256) {
        self.parked.insert(id, (self.head, Instant::now()));
    }

    fn owns(&self, id: &B256) -> bool {
        self.config.shard.is_none_or(|s| s.owns(id))
    }

    /// Reads the window end of pending transactions delivered without a proof event.
    async fn learn_windows(&mut self) -> Result<(), SettlerError> {
        let unknown: Vec<B256> = self
            .store
            .pending()
            .await?
            .into_iter()
            .filter(|p| p.window_end.is_none() && self.owns(&p.id) && !self.is_parked(&p.id))
            .map(|p| p.id)
            .collect();
        let kernel = self.kernel.clone();
        let kernel = &kernel;
        let reads: Vec<_> = stream::iter(unknown)
            .map(|id| async move { (id, kernel.get(id).await) })
            .buffer_unordered(self.config.read_concurrency.max(1))
            .collect()
            .await;
        for (id, read) in reads {
            let record = read?;
            match record.window_end() {
                Some(end) if record.state == State::Delivered => {
                    self.store.set_window_end(id, end).await?;
                }
                _ => self.park(id),
            }
        }
        Ok(())
    }

    /// Settles what is due; returns (ids sent, ids settled).
    async fn settle_due(&mut self) -> Result<(usize, u64), SettlerError> {
        let now = self.kernel.chain_time().await?;
        let pending = self.store.pending().await?;
        self.parked
            .retain(|id, _| pending.iter().any(|p| p.id == *id));
        let due: Vec<B256> = pending
            .iter()
            .filter(|p| p.window_end.is_some_and(|end| end < now) && self.owns(&p.id))
            .map(|p| p.id)
            .collect();
        self.metrics
            .set_backlog(pending.len() as u64, due.len() as u64);
        let limit = self.config.batch_size.max(1) * self.config.concurrency.max(1);
        let candidates: Vec<B256> = due
            .into_iter()
            .filter(|id| !self.is_parked(id))
            .take(limit)
            .collect();
        // Another daemon sharing the store may be settling some of them: keep to those leased to this one.
        let candidates = self
            .store
            .lease(&self.owner, &candidates, self.config.lease)
            .await?;
        if candidates.is_empty() {
            return Ok((0, 0));
        }

        // Re-read each at the head: only what is still DELIVERED and past its window is sent.
        let kernel = self.kernel.clone();
        let kernel = &kernel;
        let reads: Vec<_> = stream::iter(candidates)
            .map(|id| async move { (id, kernel.get(id).await) })
            .buffer_unordered(self.config.read_concurrency.max(1))
            .collect()
            .await;
        let mut ready = Vec::new();
        for (id, read) in reads {
            let record = read?;
            if record.state == State::Delivered && record.window_end().is_some_and(|e| e < now) {
                ready.push(id);
            } else {
                self.park(id);
            }
        }
        if ready.is_empty() {
            return Ok((0, 0));
        }

        let groups: Vec<Vec<B256>> = ready
            .chunks(self.config.batch_size.max(1))
            .map(<[B256]>::to_vec)
            .collect();
        let results: Vec<_> = stream::iter(groups)
            .map(|ids| async move {
                let result = settle_group(kernel, &ids).await;
                (ids, result)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let mut settled_total = 0;
        let mut first_error = None;
        for (ids, result) in results {
            // Sent or not, these are read again before anything else is sent for them.
            for id in &ids {
                self.park(*id);
            }
            match result {
                Ok(outcome) => {
                    settled_total += outcome.settled;
                    let skipped =
                        (ids.len() as u64).saturating_sub(outcome.settled + outcome.failed);
                    self.metrics.add_settled(
                        outcome.settled,
                        skipped,
                        outcome.gas,
                        outcome.batches,
                    );
                    self.metrics.add_failed(outcome.failed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, ids = ids.len(), "settlement batch failed");
                    self.metrics.add_failed(ids.len() as u64);
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e.into());
        }
        Ok((ready.len(), settled_total))
    }
}

#[derive(Default)]
struct GroupOutcome {
    settled: u64,
    failed: u64,
    gas: u64,
    batches: u64,
}

/// Settles a group with one `settleBatch`; if the kernel refuses the group as a whole (a token refusing a
/// transfer to one provider, say), settles its ids one by one so that one bad id cannot hold up the rest.
async fn settle_group(kernel: &Kernel, ids: &[B256]) -> Result<GroupOutcome, ClientError> {
    match kernel.settle_batch(ids).await {
        Ok((settled, sent)) => {
            tracing::debug!(tx = %sent.tx_hash, settled, sent = ids.len(), gas = sent.gas_used, "settleBatch mined");
            Ok(GroupOutcome {
                settled,
                failed: 0,
                gas: sent.gas_used,
                batches: 1,
            })
        }
        Err(e)
            if ids.len() > 1
                && !e.is_retryable()
                && !matches!(e, ClientError::ReceiptTimeout { .. }) =>
        {
            tracing::warn!(error = %e, ids = ids.len(), "batch refused; settling its ids one by one");
            let mut outcome = GroupOutcome::default();
            for id in ids {
                match kernel.settle_batch(std::slice::from_ref(id)).await {
                    Ok((n, sent)) => {
                        outcome.settled += n;
                        outcome.gas += sent.gas_used;
                        outcome.batches += 1;
                    }
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, tx_id = %id, "settlement refused");
                        outcome.failed += 1;
                    }
                }
            }
            Ok(outcome)
        }
        Err(e) => Err(e),
    }
}

/// What a confirmed event changes in the pending set.
fn change_of(event: &KernelEvent) -> Option<Change> {
    match &event.event {
        EscrowKernelEvents::StateTransitioned(e) => {
            if e.newState == State::Delivered.code() {
                Some(Change::Delivered(e.transactionId, None))
            } else if e.oldState == State::Delivered.code() {
                Some(Change::Closed(e.transactionId))
            } else {
                None
            }
        }
        EscrowKernelEvents::DeliveryProofRecorded(e) => Some(Change::Delivered(
            e.transactionId,
            Some(e.disputeWindowEnd.saturating_to()),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn shards_split_ids_and_parse() {
        let s0: Shard = "0/2".parse().unwrap();
        let s1: Shard = "1/2".parse().unwrap();
        for b in 0..=255u8 {
            let id = B256::repeat_byte(b);
            assert!(s0.owns(&id) ^ s1.owns(&id));
        }
        for bad in ["2/2", "1", "a/b", "0/0"] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.contains("INDEX/COUNT"), "{err}");
        }
    }
}
