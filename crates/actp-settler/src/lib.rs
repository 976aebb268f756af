#![doc = include_str!("../README.md")]
//!
//! [`health`] serves `/health` and `/metrics`; [`Settler::run`] is the daemon's loop.

mod error;
pub mod health;
mod metrics;
mod settler;
mod store;

pub use error::SettlerError;
pub use metrics::{Metrics, Snapshot};
pub use settler::{Settler, SettlerConfig, Shard, Step};
pub use store::{Change, Pending, Store};
