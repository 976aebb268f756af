//! The EIP-712 domain ACTP clients sign in: name "AGIRAILS", version "1", the chain id, and the kernel as
//! verifying contract. Signing with any other domain would let a signature be replayed on another kernel.

use alloy_primitives::Address;
use alloy_sol_types::{Eip712Domain, eip712_domain};

/// Domain name.
pub const DOMAIN_NAME: &str = "AGIRAILS";
/// Domain version.
pub const DOMAIN_VERSION: &str = "1";

/// The ACTP domain for the kernel at `kernel` on chain `chain_id`.
pub fn actp_domain(chain_id: u64, kernel: Address) -> Eip712Domain {
    eip712_domain! {
        name: DOMAIN_NAME,
        version: DOMAIN_VERSION,
        chain_id: chain_id,
        verifying_contract: kernel,
    }
}
