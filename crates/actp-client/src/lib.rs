#![doc = include_str!("../README.md")]
//!
//! In this crate:
//! - [`bindings`]: contract bindings generated from the committed ABI;
//! - [`Kernel`]: every kernel operation, safe to call concurrently from one signer, with typed reverts
//!   ([`ClientError::Rejected`] carries the kernel's [`Rejection`](actp_core::Rejection)), retries of
//!   transient RPC failures, and receipts awaited with a timeout;
//! - [`Watcher`]: kernel events from a block on, behind confirmations, resuming after dropped connections;
//! - [`Signer`]: any alloy signer (a private key, an encrypted keystore, a hardware wallet, a KMS), never
//!   shown;
//! - [`HttpOptions`]: TLS (rustls, the system's trust store and extra CAs) for every HTTP client;
//! - [`Network`]: Base, Base Sepolia and the devnet, with their USDC and defaults;
//! - [`LogReader`]: event logs in block ranges public RPCs accept;
//! - [`Devnet`] (feature `devnet`): anvil with the kernel deployed and funded dev accounts, stopped on drop;
//! - [`deploy()`]: deployment of MockUSDC and the kernel from Rust.

pub mod bindings;
mod deploy;
#[cfg(feature = "devnet")]
mod devnet;
mod error;
mod http;
mod kernel;
mod logs;
mod network;
mod retry;
mod revert;
mod signer;
mod watcher;

pub use deploy::{DeployOptions, Deployment, deploy};
#[cfg(feature = "devnet")]
pub use devnet::{Devnet, DevnetOptions, find_anvil};
pub use error::{ClientError, Result, TokenError, from_reqwest, redact_urls};
pub use http::{HttpOptions, TlsFailure, tls_failure};
pub use kernel::{
    ClientConfig, Created, Kernel, OpenSession, Sent, SessionTerms, TransactionRecord,
    http_provider,
};
pub use logs::LogReader;
pub use network::{BASE, BASE_SEPOLIA, DEVNET, Network};
pub use retry::RetryPolicy;
pub use revert::decode_revert;
pub use signer::{DynSigner, Signer};
pub use watcher::{KernelEvent, Polled, Watcher, WatcherConfig};
