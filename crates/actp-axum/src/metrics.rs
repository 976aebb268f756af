//! Counters per request outcome and per delivery outcome, for a metrics endpoint.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::Refusal;

/// The outcomes of a request to a paid route that are not refusals.
pub const HANDLED_OUTCOMES: &[&str] = &["served", "handler_failed"];

/// Every outcome a request to a paid route can have: [`HANDLED_OUTCOMES`], then each refusal's code
/// ([`Refusal::CODES`], declared once beside the refusals).
pub fn request_outcomes() -> impl Iterator<Item = &'static str> {
    HANDLED_OUTCOMES.iter().chain(Refusal::CODES).copied()
}

/// Every outcome of an outbox delivery attempt.
pub const DELIVERY_OUTCOMES: &[&str] = &["delivered", "refused", "retried"];

/// Monotonic counters, shared by every clone of the paywall.
#[derive(Debug)]
pub struct Metrics {
    /// [`request_outcomes`], in order.
    outcomes: Vec<&'static str>,
    requests: Vec<AtomicU64>,
    deliveries: Vec<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let outcomes: Vec<&'static str> = request_outcomes().collect();
        Metrics {
            requests: outcomes.iter().map(|_| AtomicU64::new(0)).collect(),
            outcomes,
            deliveries: DELIVERY_OUTCOMES
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

fn bump(names: &[&str], counters: &[AtomicU64], name: &str) {
    let i = names.iter().position(|n| *n == name);
    debug_assert!(i.is_some(), "no counter for the outcome {name}");
    if let Some(i) = i {
        counters[i].fetch_add(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub(crate) fn request(&self, outcome: &str) {
        bump(&self.outcomes, &self.requests, outcome);
    }

    pub(crate) fn delivery(&self, outcome: &str) {
        bump(DELIVERY_OUTCOMES, &self.deliveries, outcome);
    }

    /// How many requests ended with `outcome` (one of [`request_outcomes`]).
    pub fn requests(&self, outcome: &str) -> u64 {
        self.outcomes
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
        for (name, c) in self.outcomes.iter().zip(&self.requests) {
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

    /// Every refusal is counted under its own code, and rendered.
    #[test]
    fn every_refusal_code_has_a_counter() {
        let m = Metrics::default();
        for code in Refusal::CODES {
            m.request(code);
        }
        let text = m.render_prometheus();
        for code in Refusal::CODES {
            assert_eq!(m.requests(code), 1, "{code}");
            assert!(
                text.contains(&format!(
                    "actp_paywall_requests_total{{outcome=\"{code}\"}} 1"
                )),
                "{code}"
            );
        }
        assert_eq!(m.requests("served"), 0);
    }
}
