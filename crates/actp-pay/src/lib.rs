#![doc = include_str!("../README.md")]
//!
//! In this crate:
//! - [`PayingClient`]: wraps reqwest. On a 402 with ACTP payment instructions it reserves the price in the
//!   [`Ledger`], escrows exactly that price with the route's serviceHash, signs the request authorization,
//!   retries the request with the same txId while the provider fails, verifies the delivery proof, and settles
//!   or disputes by policy. One idempotency key pays at most one escrow.
//! - [`Ledger`]: policies, receipts and per-period totals in sled (one process) or PostgreSQL (a fleet of
//!   agent processes sharing one budget); two-phase reservations so that 100 concurrent calls at a cap, from
//!   any number of processes, never spend past it; usage reports by provider, route or day.
//! - [`SpendPolicy`]: caps per call, per day and per month, in total and per provider; allow and deny lists;
//!   a soft threshold.
//! - [`KillSwitch`]: `actp budget suspend` from any process sharing the store stops new payments before
//!   their next escrow.

mod client;
mod error;
pub mod ledger;
pub mod policy;

pub use client::{
    AfterDelivery, CallBuilder, OnMismatch, PaidResponse, PayConfig, PayingClient, ReconcileReport,
};
pub use error::PayError;
pub use ledger::{
    BudgetError, GroupBy, KillSwitch, Ledger, LedgerError, Payment, PaymentState, SoftLimit,
    Totals, UsageQuery, UsageReport, UsageRow,
};
pub use policy::{CapKind, PolicyError, ProviderCaps, SpendPolicy};
