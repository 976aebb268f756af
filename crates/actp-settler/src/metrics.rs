//! What the daemon has done and where it is, shared with the health endpoint and the progress display.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

/// Counters and gauges of a settler.
#[derive(Debug, Default)]
pub struct Metrics {
    settled: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    gas: AtomicU64,
    rpc_errors: AtomicU64,
    backlog: AtomicU64,
    due: AtomicU64,
    lag_blocks: AtomicU64,
    checkpoint: AtomicU64,
    healthy: AtomicBool,
}

/// A copy of the metrics at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Snapshot {
    /// Transactions this process settled.
    pub settled: u64,
    /// Transactions sent in a batch that the kernel skipped (settled by someone else meanwhile).
    pub skipped: u64,
    /// Transactions whose settlement failed (the batch reverted or was refused); they are retried.
    pub failed: u64,
    /// Settlement transactions mined.
    pub batches: u64,
    /// Gas used by them.
    pub gas: u64,
    /// RPC failures survived.
    pub rpc_errors: u64,
    /// Delivered transactions not yet seen settled.
    pub backlog: u64,
    /// Of those, the ones whose window has ended.
    pub due: u64,
    /// Blocks between the chain head and the checkpoint.
    pub lag_blocks: u64,
    /// The first block not yet read.
    pub checkpoint: u64,
    /// Whether the last step succeeded.
    pub healthy: bool,
}

impl Metrics {
    pub(crate) fn add_settled(&self, settled: u64, skipped: u64, gas: u64, batches: u64) {
        self.settled.fetch_add(settled, Ordering::Relaxed);
        self.skipped.fetch_add(skipped, Ordering::Relaxed);
        self.gas.fetch_add(gas, Ordering::Relaxed);
        self.batches.fetch_add(batches, Ordering::Relaxed);
    }

    pub(crate) fn add_failed(&self, n: u64) {
        self.failed.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn rpc_error(&self) {
        self.rpc_errors.fetch_add(1, Ordering::Relaxed);
        self.healthy.store(false, Ordering::Relaxed);
    }

    pub(crate) fn set_healthy(&self) {
        self.healthy.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_position(&self, checkpoint: u64, head: u64) {
        self.checkpoint.store(checkpoint, Ordering::Relaxed);
        self.lag_blocks.store(
            head.saturating_sub(checkpoint.saturating_sub(1)),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn set_backlog(&self, backlog: u64, due: u64) {
        self.backlog.store(backlog, Ordering::Relaxed);
        self.due.store(due, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            settled: get(&self.settled),
            skipped: get(&self.skipped),
            failed: get(&self.failed),
            batches: get(&self.batches),
            gas: get(&self.gas),
            rpc_errors: get(&self.rpc_errors),
            backlog: get(&self.backlog),
            due: get(&self.due),
            lag_blocks: get(&self.lag_blocks),
            checkpoint: get(&self.checkpoint),
            healthy: self.healthy.load(Ordering::Relaxed),
        }
    }

    /// Prometheus text exposition (`actp_settler_*`).
    pub fn render_prometheus(&self) -> String {
        let s = self.snapshot();
        let rows: [(&str, &str, &str, u64); 11] = [
            (
                "settled_total",
                "counter",
                "Transactions settled by this process.",
                s.settled,
            ),
            (
                "skipped_total",
                "counter",
                "Transactions in a batch the kernel skipped (already settled).",
                s.skipped,
            ),
            (
                "failed_total",
                "counter",
                "Transactions whose settlement failed (retried).",
                s.failed,
            ),
            (
                "batches_total",
                "counter",
                "Settlement transactions mined.",
                s.batches,
            ),
            (
                "gas_used_total",
                "counter",
                "Gas used by settlement transactions.",
                s.gas,
            ),
            (
                "rpc_errors_total",
                "counter",
                "RPC failures survived.",
                s.rpc_errors,
            ),
            (
                "backlog",
                "gauge",
                "Delivered transactions not yet seen settled.",
                s.backlog,
            ),
            (
                "due",
                "gauge",
                "Delivered transactions whose dispute window has ended.",
                s.due,
            ),
            (
                "lag_blocks",
                "gauge",
                "Blocks between the chain head and the checkpoint.",
                s.lag_blocks,
            ),
            (
                "checkpoint_block",
                "gauge",
                "First block not yet read.",
                s.checkpoint,
            ),
            (
                "up",
                "gauge",
                "1 when the last step succeeded.",
                u64::from(s.healthy),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP actp_settler_{name} {help}");
            let _ = writeln!(out, "# TYPE actp_settler_{name} {kind}");
            let _ = writeln!(out, "actp_settler_{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let m = Metrics::default();
        m.add_settled(5, 1, 1000, 1);
        m.set_position(11, 12);
        m.set_backlog(7, 3);
        m.set_healthy();
        let text = m.render_prometheus();
        for line in [
            "actp_settler_settled_total 5",
            "actp_settler_skipped_total 1",
            "actp_settler_backlog 7",
            "actp_settler_due 3",
            "actp_settler_lag_blocks 2",
            "actp_settler_up 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
