//! Usage reports: what an agent spent, by provider, route or day.

use std::collections::BTreeMap;

use actp_core::{Address, Amount};
use serde::{Deserialize, Serialize};

use super::{Ledger, LedgerError, Payment, PaymentState, hex};

/// How to group a usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// By provider address.
    #[default]
    Provider,
    /// By `METHOD /path`.
    Route,
    /// By UTC day.
    Day,
}

/// Which payments a usage report covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageQuery {
    /// Grouping.
    pub by: GroupBy,
    /// First UTC day included (`YYYY-MM-DD`).
    pub since: Option<String>,
    /// Last UTC day included.
    pub until: Option<String>,
}

/// One group of a usage report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// The provider, route or day.
    pub key: String,
    /// Calls paid: by an escrow of their own, or from a session.
    pub calls: u64,
    /// Spent: escrowed amounts less refunds.
    pub spent: Amount,
    /// Refunded by the kernel.
    pub refunded: Amount,
    /// Platform fees within `spent` (paid from the provider's side).
    pub fees: Amount,
    /// Still reserved (calls in flight, the unspent deposit of open sessions).
    pub reserved: Amount,
    /// Calls refused or released before any escrow.
    pub released: u64,
    /// Sessions opened (their calls count in `calls`).
    pub sessions: u64,
}

/// A usage report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// The agent.
    pub agent: Address,
    /// The grouping.
    pub by: GroupBy,
    /// One row per group, sorted by key.
    pub rows: Vec<UsageRow>,
    /// All rows together.
    pub total: UsageRow,
}

impl Ledger {
    /// Usage of `agent`, grouped as asked. A session counts each call it paid under that call's route and day,
    /// with the call's charge; its own row (the route and day that opened it) holds the unspent deposit while
    /// it is open, its refund after, and what the provider was paid beyond the receipts (lost calls).
    pub async fn usage(
        &self,
        agent: Address,
        query: &UsageQuery,
    ) -> Result<UsageReport, LedgerError> {
        let mut rows: BTreeMap<String, UsageRow> = BTreeMap::new();
        let mut total = UsageRow {
            key: "total".into(),
            ..UsageRow::default()
        };
        let mut count = |provider: Address, route: &str, day: &str, part: &UsageRow| {
            if query.since.as_deref().is_some_and(|s| day < s)
                || query.until.as_deref().is_some_and(|u| day > u)
            {
                return;
            }
            let key = match query.by {
                GroupBy::Provider => hex(provider),
                GroupBy::Route => route.to_owned(),
                GroupBy::Day => day.to_owned(),
            };
            let row = rows.entry(key.clone()).or_insert_with(|| UsageRow {
                key,
                ..UsageRow::default()
            });
            for row in [row, &mut total] {
                row.add(part);
            }
        };
        for p in self.payments(agent).await? {
            if p.session.is_none()
                || matches!(p.state, PaymentState::Reserved | PaymentState::Released)
            {
                count(p.provider, &p.route, &p.day, &UsageRow::of(&p));
                continue;
            }
            let (reserved, mut spent) = p.holds();
            for c in self.charges(agent, &p.key).await? {
                let paid = c.charge.base_units().min(spent);
                spent -= paid;
                let part = UsageRow {
                    calls: 1,
                    spent: Amount::from_base_units(paid),
                    fees: if p.state == PaymentState::Refunded {
                        Amount::ZERO
                    } else {
                        c.fee
                    },
                    ..UsageRow::default()
                };
                count(p.provider, &c.route, &c.day, &part);
            }
            let part = UsageRow {
                sessions: 1,
                spent: Amount::from_base_units(spent),
                refunded: p.refunded,
                reserved: Amount::from_base_units(reserved),
                ..UsageRow::default()
            };
            count(p.provider, &p.route, &p.day, &part);
        }
        Ok(UsageReport {
            agent,
            by: query.by,
            rows: rows.into_values().collect(),
            total,
        })
    }
}

impl UsageRow {
    /// What one payment (not a session) adds to a row.
    pub(super) fn of(p: &Payment) -> UsageRow {
        let mut row = UsageRow::default();
        match p.state {
            PaymentState::Reserved => row.reserved = p.amount,
            PaymentState::Released => row.released = 1,
            _ => {
                row.calls = 1;
                row.spent = p.spent();
                row.refunded = p.refunded;
                if p.state != PaymentState::Refunded {
                    row.fees = p.fee;
                }
            }
        }
        row
    }

    /// Adds `part` to this row. Saturating: a report never wraps or panics, whatever amounts the ledger holds.
    pub(super) fn add(&mut self, part: &UsageRow) {
        let sum = |a: Amount, b: Amount| {
            Amount::from_base_units(a.base_units().saturating_add(b.base_units()))
        };
        self.calls = self.calls.saturating_add(part.calls);
        self.sessions = self.sessions.saturating_add(part.sessions);
        self.released = self.released.saturating_add(part.released);
        self.spent = sum(self.spent, part.spent);
        self.refunded = sum(self.refunded, part.refunded);
        self.fees = sum(self.fees, part.fees);
        self.reserved = sum(self.reserved, part.reserved);
    }
}
