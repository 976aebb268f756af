#![doc = include_str!("../README.md")]
//!
//! [`health`] serves `/health` and `/metrics`; [`Settler::run`] is the daemon's loop.

mod error;
pub mod health;
mod metrics;
mod settler;

pub use actp_store::{
    StoreUrl,
    settler::{Change, Pending, SettlerStore},
};
pub use error::SettlerError;
pub use metrics::{Metrics, Snapshot};
pub use settler::{Settler, SettlerConfig, Shard, Step};
