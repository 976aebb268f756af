#![doc = include_str!("../README.md")]
//!
//! Modules:
//! - [`model`]: the lifecycle model ([`model::apply`]) and an in-memory kernel ([`model::KernelModel`]);
//! - [`ids`]: the ACTP transaction id formula;
//! - [`fee`]: platform fee arithmetic;
//! - [`amount`]: parsing and printing token amounts without floating point;
//! - [`meter`]: metered prices (a maximum per call plus prices per unit of usage);
//! - [`canonical`]: RFC 8785 canonical JSON and the ACTP result hash;
//! - [`checksum`]: EIP-55 checksummed addresses in JSON;
//! - [`proof`]: content hashes (also streaming), EIP-712 delivery proofs, the 64-byte on-chain proof;
//! - [`authorization`]: the requester's EIP-712 authorization of one HTTP request;
//! - [`session`]: sessions: the requester's vouchers and the provider's chained receipts;
//! - [`batch`]: one provider signature over many receipts and request bindings (a Merkle root).

pub mod amount;
pub mod authorization;
pub mod batch;
pub mod canonical;
pub mod checksum;
pub mod ecdsa;
pub mod eip712;
pub mod fee;
pub mod http;
pub mod ids;
pub mod meter;
pub mod model;
pub mod proof;
mod rejection;
pub mod session;
mod state;

pub use alloy_primitives::{Address, B256, Bytes, Signature, U256};
pub use amount::{Amount, AmountError};
pub use rejection::Rejection;
pub use state::{State, UnknownState};

/// Limits and constants of the escrow kernel (the same values as its Solidity constants).
pub mod limits {
    /// Smallest transaction amount in token base units (0.05 of a 6-decimal token).
    pub const MIN_AMOUNT: u64 = 50_000;
    /// Largest transaction amount in token base units (1e9 of a 6-decimal token).
    pub const MAX_AMOUNT: u64 = 1_000_000_000_000_000;
    /// How far ahead of creation a deadline may lie, in seconds.
    pub const MAX_DEADLINE_AHEAD: u64 = 365 * 86_400;
    /// Shortest dispute window, in seconds.
    pub const MIN_DISPUTE_WINDOW: u64 = 3_600;
    /// Longest dispute window, in seconds.
    pub const MAX_DISPUTE_WINDOW: u64 = 30 * 86_400;
    /// Highest platform fee rate, in basis points.
    pub const MAX_PLATFORM_FEE_BPS: u16 = 500;
    /// Delay between scheduling and applying a fee change, in seconds.
    pub const FEE_CHANGE_DELAY: u64 = 2 * 86_400;
    /// Delay between approving a mediator and its first resolution, in seconds.
    pub const MEDIATOR_DELAY: u64 = 2 * 86_400;
    /// Latest representable timestamp (the kernel stores 32-bit times).
    pub const MAX_TIMESTAMP: u64 = u32::MAX as u64;
}
