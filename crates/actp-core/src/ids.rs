//! The ACTP transaction id formula.
//!
//! `txId = keccak256(abi.encodePacked(requester, provider, amount, serviceHash, nonce))`, where `nonce` is
//! the requester's nonce before creation. It contains no chain id and no contract address.

use alloy_primitives::{Address, B256, U256, keccak256};

/// The id the kernel assigns to the transaction `requester` creates with these terms as its `nonce`-th.
///
/// ```
/// use actp_core::{Address, B256, U256, ids::transaction_id};
/// let id = transaction_id(Address::ZERO, Address::repeat_byte(1), U256::from(100_000), B256::ZERO, 0);
/// assert_ne!(id, B256::ZERO);
/// ```
pub fn transaction_id(
    requester: Address,
    provider: Address,
    amount: U256,
    service_hash: B256,
    nonce: u64,
) -> B256 {
    let mut packed = [0u8; 20 + 20 + 32 + 32 + 32];
    packed[..20].copy_from_slice(requester.as_slice());
    packed[20..40].copy_from_slice(provider.as_slice());
    packed[40..72].copy_from_slice(&amount.to_be_bytes::<32>());
    packed[72..104].copy_from_slice(service_hash.as_slice());
    packed[104..].copy_from_slice(&U256::from(nonce).to_be_bytes::<32>());
    keccak256(packed)
}

/// The service hash of a service name: `keccak256(name)`, as ACTP clients derive it from a string.
pub fn service_hash(name: &str) -> B256 {
    keccak256(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    #[test]
    fn matches_abi_encode_packed_layout() {
        let requester = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
        let provider = address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
        let service = keccak256(b"gas-bench/v1");
        let mut manual = Vec::new();
        manual.extend_from_slice(requester.as_slice());
        manual.extend_from_slice(provider.as_slice());
        manual.extend_from_slice(&U256::from(1_000_000u64).to_be_bytes::<32>());
        manual.extend_from_slice(service.as_slice());
        manual.extend_from_slice(&U256::from(3u64).to_be_bytes::<32>());
        assert_eq!(
            transaction_id(requester, provider, U256::from(1_000_000u64), service, 3),
            keccak256(&manual)
        );
        assert_ne!(
            transaction_id(requester, provider, U256::from(1_000_000u64), service, 3),
            transaction_id(requester, provider, U256::from(1_000_000u64), service, 4)
        );
    }
}
