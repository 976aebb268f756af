//! Event logs read in block ranges a node accepts. Public RPCs cap `eth_getLogs` by blocks or by results;
//! the reader asks for at most the configured range, halves it while the node answers "range too large" or
//! "too many results", and grows it again after a run of successes. Each block is read exactly once, in
//! order.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use alloy::{
    providers::{DynProvider, Provider},
    rpc::types::{Filter, Log},
    transports::{RpcError, TransportErrorKind},
};

use crate::{ClientError, Result, RetryPolicy};

/// Successful queries in a row after which the range doubles again (up to the configured maximum).
const GROW_AFTER: u32 = 8;

/// Reads logs in adaptive block ranges. Cheap to clone; clones share what they learned about the node.
#[derive(Debug, Clone)]
pub struct LogReader {
    max_range: u64,
    range: Arc<AtomicU64>,
    retry: RetryPolicy,
}

impl LogReader {
    /// A reader asking for at most `max_range` blocks per query (at least 1).
    pub fn new(max_range: u64, retry: RetryPolicy) -> Self {
        let max_range = max_range.max(1);
        LogReader {
            max_range,
            range: Arc::new(AtomicU64::new(max_range)),
            retry,
        }
    }

    /// The range the next query asks for.
    pub fn current_range(&self) -> u64 {
        self.range.load(Ordering::Relaxed)
    }

    /// Every log of `filter` in blocks `from..=to` (the filter's own block range is replaced), in order.
    /// Transient failures are retried by the policy; a range the node refuses is halved, down to one block.
    pub async fn read(
        &self,
        provider: &DynProvider,
        filter: &Filter,
        from: u64,
        to: u64,
    ) -> Result<Vec<Log>> {
        let mut logs = Vec::new();
        let mut cursor = from;
        let mut streak = 0u32;
        while cursor <= to {
            let range = self.current_range();
            let end = to.min(cursor.saturating_add(range - 1));
            let query = filter.clone().from_block(cursor).to_block(end);
            let answer = self
                .retry
                .run("getLogs", || async {
                    provider.get_logs(&query).await.map_err(range_or_transport)
                })
                .await;
            match answer {
                Ok(found) => {
                    logs.extend(found);
                    cursor = end + 1;
                    streak += 1;
                    if streak >= GROW_AFTER && range < self.max_range {
                        self.range
                            .store((range * 2).min(self.max_range), Ordering::Relaxed);
                        streak = 0;
                    }
                }
                Err(ClientError::LogRangeTooLarge { message }) if end > cursor => {
                    let smaller = (end - cursor).div_ceil(2).max(1);
                    tracing::debug!(blocks = end - cursor + 1, smaller, %message, "the node refused the log range; halving it");
                    self.range.store(smaller, Ordering::Relaxed);
                    streak = 0;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(logs)
    }
}

/// An `eth_getLogs` error: the node's refusal of the range (too many blocks or results) kept apart, because
/// some providers send it with a rate-limit code (Infura: -32005) that would otherwise be retried as is.
fn range_or_transport(err: RpcError<TransportErrorKind>) -> ClientError {
    let text = match &err {
        RpcError::ErrorResp(payload) => Some(payload.message.to_string()),
        RpcError::Transport(TransportErrorKind::HttpError(http)) if http.status < 500 => {
            Some(http.body.clone())
        }
        _ => None,
    };
    if let Some(text) = text
        && is_range_refusal(&text)
    {
        return ClientError::LogRangeTooLarge {
            message: crate::redact_urls(&text),
        };
    }
    crate::kernel::rpc_error(err)
}

/// The wording of range refusals by common nodes and providers (geth, reth, erigon, Infura, Alchemy,
/// QuickNode, Ankr, Chainstack, Base's public endpoints).
fn is_range_refusal(message: &str) -> bool {
    const NEEDLES: &[&str] = &[
        "block range",
        "range too large",
        "range is too large",
        "range too wide",
        "range is too wide",
        "too many results",
        "query returned more than",
        "more than 10000 results",
        "response size",
        "max block range",
        "maximum block range",
        "query exceeds",
        "exceeds max",
        "limited to a",
        "too many logs",
        "logs limit",
        "range limit",
        "range exceeds",
    ];
    let m = message.to_ascii_lowercase();
    NEEDLES.iter().any(|needle| m.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_range_refusals_are_recognised() {
        for text in [
            "query returned more than 10000 results. Try with this block range [0x1, 0x2].",
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
            "eth_getLogs is limited to a 10,000 range",
            "block range is too wide",
            "exceed maximum block range: 5000",
            "query exceeds max block range 1000",
        ] {
            assert!(is_range_refusal(text), "{text}");
        }
        for text in [
            "execution reverted",
            "rate limit exceeded",
            "header not found",
        ] {
            assert!(!is_range_refusal(text), "{text}");
        }
    }
}
