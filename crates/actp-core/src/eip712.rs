//! The EIP-712 domain ACTP clients sign in: name "AGIRAILS", version "1", the chain id, and the kernel as
//! verifying contract. Signing with any other domain would let a signature be replayed on another kernel.
//!
//! [`signing_hash`] is what every ACTP struct is signed and verified by: alloy's `eip712_signing_hash`,
//! without recomputing per call what never changes (the domain's separator, the struct's type hash).

use std::{any::TypeId, cell::RefCell};

use alloy_primitives::{Address, B256, Keccak256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct, eip712_domain};

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

thread_local! {
    /// The last domain this thread hashed in, with its separator.
    static SEPARATOR: RefCell<Option<(Eip712Domain, B256)>> = const { RefCell::new(None) };
    /// The type hash of each struct this thread hashed.
    static TYPE_HASHES: RefCell<Vec<(TypeId, B256)>> = const { RefCell::new(Vec::new()) };
}

/// `domain`'s separator (its `hashStruct`), computed once per thread while the domain stays the same: four
/// keccaks and three allocations otherwise, on every signature made or checked.
pub fn separator(domain: &Eip712Domain) -> B256 {
    SEPARATOR.with(|cell| {
        let mut cached = cell.borrow_mut();
        match &*cached {
            Some((known, separator)) if known == domain => *separator,
            _ => {
                let separator = domain.separator();
                *cached = Some((domain.clone(), separator));
                separator
            }
        }
    })
}

/// `T`'s type hash, computed once per thread.
fn type_hash<T: SolStruct + 'static>(value: &T) -> B256 {
    let id = TypeId::of::<T>();
    TYPE_HASHES.with(|cell| {
        if let Some((_, hash)) = cell.borrow().iter().find(|(t, _)| *t == id) {
            return *hash;
        }
        let hash = value.eip712_type_hash();
        cell.borrow_mut().push((id, hash));
        hash
    })
}

/// The EIP-712 signing hash of `value` in `domain`: `keccak256(0x1901 ‖ separator ‖ hashStruct(value))`, as
/// `SolStruct::eip712_signing_hash` computes it.
pub fn signing_hash<T: SolStruct + 'static>(value: &T, domain: &Eip712Domain) -> B256 {
    let mut hasher = Keccak256::new();
    hasher.update(type_hash(value));
    hasher.update(value.eip712_encode_data());
    let struct_hash = hasher.finalize();
    let mut digest = [0u8; 66];
    digest[0] = 0x19;
    digest[1] = 0x01;
    digest[2..34].copy_from_slice(separator(domain).as_slice());
    digest[34..].copy_from_slice(struct_hash.as_slice());
    keccak256(digest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use alloy_primitives::U256;

    use super::*;
    use crate::{authorization::RequestAuthorization, session::SessionVoucher};

    #[test]
    fn signing_hashes_are_alloys_across_domains_and_types() {
        let domains = [
            actp_domain(31_337, Address::repeat_byte(1)),
            actp_domain(8_453, Address::repeat_byte(1)),
            actp_domain(31_337, Address::repeat_byte(2)),
        ];
        for round in 0..3 {
            for domain in &domains {
                let voucher = SessionVoucher::new(
                    B256::repeat_byte(round),
                    U256::from(round),
                    B256::repeat_byte(9),
                    77,
                );
                let request = RequestAuthorization::new(
                    B256::repeat_byte(round),
                    "POST",
                    "/v1",
                    B256::ZERO,
                    99,
                );
                assert_eq!(
                    signing_hash(&voucher, domain),
                    voucher.eip712_signing_hash(domain)
                );
                assert_eq!(
                    signing_hash(&request, domain),
                    request.eip712_signing_hash(domain)
                );
                assert_eq!(separator(domain), domain.separator());
            }
        }
    }
}
