//! Counters per request outcome and per delivery outcome, for a metrics endpoint.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

/// Every outcome a request to a paid route can have: `served`, `handler_failed`, or a refusal code.
pub const REQUEST_OUTCOMES: &[&str] = &[
    "served",
    "handler_failed",
    "payment_required",
    "malformed_tx_id",
    "malformed_authorization",
    "body_too_large",
    "body_unreadable",
    "unpriceable",
    "unknown_transaction",
    "wrong_provider",
    "missing_authorization",
    "unauthorized",
    "invalid_state",
    "insufficient_amount",
    "deadline_passed",
    "deadline_too_close",
    "service_mismatch",
    "already_used",
    "chain_unavailable",
    "storage_unavailable",
];

/// Every outcome of an outbox delivery attempt.
pub const DELIVERY_OUTCOMES: &[&str] = &["delivered", "refused", "retried"];

/// Monotonic counters, shared by every clone of the paywall.
#[derive(Debug)]
pub struct Metrics {
    requests: Vec<AtomicU64>,
    deliveries: Vec<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: REQUEST_OUTCOMES.iter().map(|_| AtomicU64::new(0)).collect(),
            deliveries: DELIVERY_OUTCOMES
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

fn bump(names: &[&str], counters: &[AtomicU64], name: &str) {
    if let Some(i) = names.iter().position(|n| *n == name) {
        counters[i].fetch_add(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub(crate) fn request(&self, outcome: &str) {
        bump(REQUEST_OUTCOMES, &self.requests, outcome);
    }

    pub(crate) fn delivery(&self, outcome: &str) {
        bump(DELIVERY_OUTCOMES, &self.deliveries, outcome);
    }

    /// How many requests ended with `outcome` (one of [`REQUEST_OUTCOMES`]).
    pub fn requests(&self, outcome: &str) -> u64 {
        REQUEST_OUTCOMES
            .iter()
            .position(|n| *n == outcome)
            .map_or(0, |i| self.requests[i].load(Ordering::Relaxed))
    }

    /// How many delivery attempts ended with `outcome` (one of [`DELIVERY_OUTCOMES`]).
    pub fn deliveries(&self, outcome: &str) -> u64 {
        DELIVERY_OUTCOMES
            .iter()
            .position(|n| *n == outcome)
            .map_or(0, |i| self.deliveries[i].load(Ordering::Relaxed))
    }

    /// Prometheus text exposition: `actp_paywall_requests_total{outcome=..}` and
    /// `actp_paywall_deliveries_total{outcome=..}`.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP actp_paywall_requests_total Requests to paid routes by outcome.\n");
        out.push_str("# TYPE actp_paywall_requests_total counter\n");
        for (name, c) in REQUEST_OUTCOMES.iter().zip(&self.requests) {
            let _ = writeln!(
                out,
                "actp_paywall_requests_total{{outcome=\"{name}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP actp_paywall_deliveries_total Outbox delivery attempts by outcome.\n");
        out.push_str("# TYPE actp_paywall_deliveries_total counter\n");
        for (name, c) in DELIVERY_OUTCOMES.iter().zip(&self.deliveries) {
            let _ = writeln!(
                out,
                "actp_paywall_deliveries_total{{outcome=\"{name}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_outcomes_and_renders_them() {
        let m = Metrics::default();
        m.request("served");
        m.request("served");
        m.request("already_used");
        m.delivery("delivered");
        assert_eq!(m.requests("served"), 2);
        assert_eq!(m.requests("already_used"), 1);
        let text = m.render_prometheus();
        assert!(text.contains("actp_paywall_requests_total{outcome=\"served\"} 2"));
        assert!(text.contains("actp_paywall_deliveries_total{outcome=\"delivered\"} 1"));
    }
}
