//! A watcher that streams the kernel's events from a given block, behind a configurable number of
//! confirmations, and carries on by itself after a dropped connection (it resumes from the last block it
//! delivered). It only reads; it never sends.

use std::time::Duration;

use actp_core::{Address, B256};
use alloy::{
    providers::{DynProvider, Provider},
    rpc::types::{Filter, Log},
    sol_types::SolEventInterface,
};
use futures::Stream;

use crate::{
    ClientError, LogReader, RetryPolicy, bindings::EscrowKernel::EscrowKernelEvents,
    kernel::rpc_error,
};

/// One decoded kernel event with where it happened.
#[derive(Debug, Clone)]
pub struct KernelEvent {
    /// Block number.
    pub block_number: u64,
    /// Transaction that emitted it.
    pub tx_hash: B256,
    /// Position in the block.
    pub log_index: u64,
    /// The event.
    pub event: EscrowKernelEvents,
}

/// Configuration of a [`Watcher`].
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// Only blocks at least this deep are read (0: up to the head).
    pub confirmations: u64,
    /// Pause between polls once caught up.
    pub poll_interval: Duration,
    /// Most blocks read per poll, and the largest block range per `eth_getLogs` (halved while the node
    /// refuses a range; see [`LogReader`]).
    pub max_range: u64,
    /// Retries per request before an error is reported (the stream goes on after reporting it).
    pub retry: RetryPolicy,
}

impl Default for WatcherConfig {
    fn default() -> Self {
        WatcherConfig {
            confirmations: 0,
            poll_interval: Duration::from_millis(500),
            max_range: 2_000,
            retry: RetryPolicy::default(),
        }
    }
}

/// What one [`Watcher::poll`] read.
#[derive(Debug, Clone)]
pub struct Polled {
    /// The events of the blocks read, in order.
    pub events: Vec<KernelEvent>,
    /// The first block not yet read (a checkpoint to resume from).
    pub next_block: u64,
    /// The chain head when polled.
    pub head: u64,
    /// Whether any block was read.
    pub read: bool,
}

/// Streams kernel events in order, block by block.
///
/// ```no_run
/// # async fn demo(devnet: &actp_client::Devnet) {
/// use actp_client::{Watcher, WatcherConfig};
/// use futures::StreamExt;
///
/// let d = devnet.deployment();
/// let config = WatcherConfig { confirmations: 2, ..WatcherConfig::default() };
/// let mut events = Box::pin(Watcher::new(devnet.provider(), d.kernel, d.block, config).into_stream());
/// while let Some(event) = events.next().await {
///     match event {
///         Ok(e) => println!("block {}: {:?}", e.block_number, e.event),
///         Err(e) => eprintln!("will retry: {e}"), // the stream goes on from the same block
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Watcher {
    provider: DynProvider,
    kernel: Address,
    next_block: u64,
    config: WatcherConfig,
    logs: LogReader,
}

impl Watcher {
    /// Events of `kernel` from block `from_block` on (its deployment block, for a whole history).
    pub fn new(
        provider: DynProvider,
        kernel: Address,
        from_block: u64,
        config: WatcherConfig,
    ) -> Self {
        Watcher {
            logs: LogReader::new(config.max_range, config.retry),
            provider,
            kernel,
            next_block: from_block,
            config,
        }
    }

    /// The first block not yet delivered (a checkpoint to resume from).
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// The next batch of events: every event of the blocks from `next_block` up to the confirmed head (at
    /// most `max_range` blocks), and the block after the last one read. Waits while there is nothing new.
    /// Transient errors are retried; a persistent one is returned, and the next call starts again from the
    /// same block.
    pub async fn next_batch(&mut self) -> Result<(Vec<KernelEvent>, u64), ClientError> {
        loop {
            let polled = self.poll().await?;
            if polled.read {
                return Ok((polled.events, polled.next_block));
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// Reads the next range of confirmed blocks if there is one, without waiting: `read` is false (and
    /// `events` empty) when the confirmed head has not moved past `next_block`. `head` is the chain head it
    /// saw, for lag reporting. Errors leave `next_block` where it was.
    pub async fn poll(&mut self) -> Result<Polled, ClientError> {
        let head = self
            .config
            .retry
            .run("blockNumber", || async {
                self.provider.get_block_number().await.map_err(rpc_error)
            })
            .await?;
        let nothing = |next_block| Polled {
            events: Vec::new(),
            next_block,
            head,
            read: false,
        };
        let Some(safe) = head.checked_sub(self.config.confirmations) else {
            return Ok(nothing(self.next_block));
        };
        if safe < self.next_block {
            return Ok(nothing(self.next_block));
        }
        let to = safe.min(self.next_block + self.config.max_range.max(1) - 1);
        let filter = Filter::new().address(self.kernel);
        let logs = self
            .logs
            .read(&self.provider, &filter, self.next_block, to)
            .await?;
        self.next_block = to + 1;
        Ok(Polled {
            events: logs.iter().filter_map(decode).collect(),
            next_block: self.next_block,
            head,
            read: true,
        })
    }

    /// An endless stream of events (errors are yielded and the stream continues from the same block).
    pub fn into_stream(self) -> impl Stream<Item = Result<KernelEvent, ClientError>> {
        futures::stream::unfold(
            (self, std::collections::VecDeque::new()),
            |(mut w, mut queue)| async move {
                loop {
                    if let Some(ev) = queue.pop_front() {
                        return Some((Ok(ev), (w, queue)));
                    }
                    match w.next_batch().await {
                        Ok((events, _)) => queue.extend(events),
                        Err(e) => {
                            tokio::time::sleep(w.config.poll_interval).await;
                            return Some((Err(e), (w, queue)));
                        }
                    }
                }
            },
        )
    }
}

fn decode(log: &Log) -> Option<KernelEvent> {
    let event = EscrowKernelEvents::decode_raw_log(log.topics(), &log.data().data).ok()?;
    Some(KernelEvent {
        block_number: log.block_number?,
        tx_hash: log.transaction_hash?,
        log_index: log.log_index?,
        event,
    })
}
