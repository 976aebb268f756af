//! # actp-settler
//!
//! The settlement daemon as a library (the `actp settle` command runs it): it follows the kernel's events
//! from a checkpoint kept in sled, tracks delivered transactions and the end of their dispute windows, and
//! settles them with `settleBatch` once due.
//!
//! - Restart-safe: killed at any instant it resumes from its checkpoint; it re-reads a transaction's state
//!   before sending, so it never sends a settlement for one already settled.
//! - Reorg-safe: only blocks `confirmations` deep are read and checkpointed.
//! - Survives RPC outages with backoff; [`health`] serves `/health` and Prometheus `/metrics`.
//!
//! ```no_run
//! # async fn demo(kernel: actp_client::Kernel) -> Result<(), actp_settler::SettlerError> {
//! use actp_settler::{Settler, SettlerConfig};
//!
//! let settler = Settler::open(kernel, SettlerConfig { confirmations: 2, ..SettlerConfig::default() })?;
//! settler.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod error;
pub mod health;
mod metrics;
mod settler;
mod store;

pub use error::SettlerError;
pub use metrics::{Metrics, Snapshot};
pub use settler::{Settler, SettlerConfig, Shard, Step};
pub use store::{Change, Pending, Store};
