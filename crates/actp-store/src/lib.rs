#![doc = include_str!("../README.md")]
//!
//! [`StoreUrl`] says where a store lives. Each component has its own store type on top:
//! [`settler::SettlerStore`], the settlement daemon's checkpoint and pending set; [`ledger::LedgerStore`],
//! the paying client's records per agent; and [`paywall`], a provider's claims, outbox and sessions shared by
//! its replicas. [`pg`] holds the connection
//! pool and the migrations.

pub mod error;
pub mod ledger;
pub mod paywall;
pub mod pg;
pub mod settler;
mod url;

pub use error::StoreError;
pub use url::StoreUrl;
