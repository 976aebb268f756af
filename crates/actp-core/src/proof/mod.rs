//! Delivery proofs: what a provider delivered, hashed and signed so the requester (and a mediator) can check
//! it against the hash on chain, in the format the ACTP SDKs sign and verify. Hashing and signature checks
//! only; this module never reads files or sockets itself.
//!
//! - content hash: `keccak256` of the raw bytes, also streaming ([`ContentHasher`] implements `Write`);
//! - result hash of a JSON value: keccak256 of its RFC 8785 canonical form ([`crate::canonical`]);
//! - [`aip4`]: the AIP-4 `DeliveryProof` the TypeScript and Python SDKs sign, its wire JSON and its DIDs;
//! - [`SignedDeliveryProof`]: an AIP-4 proof signed by the provider, plus this project's binding of it to the
//!   request served ([`ActpDelivery`], its own EIP-712 type); its [proof hash](SignedDeliveryProof::proof_hash)
//!   goes on chain in the 64-byte DELIVERED proof `abi.encode(uint256 window, bytes32 proofHash)`;
//! - [`verify_delivery`]: what a requester checks, for proofs from this project's paywall and from the SDKs.
//!
//! ```
//! use actp_core::proof::{SignedDeliveryProof, aip4, content_hash, verify_delivery};
//! use actp_core::{Address, B256, U256, eip712::actp_domain};
//! use alloy_signer::SignerSync;
//! use alloy_signer_local::PrivateKeySigner;
//!
//! let provider = PrivateKeySigner::random();
//! let requester = Address::repeat_byte(2);
//! let domain = actp_domain(31337, Address::repeat_byte(0xee));
//! let body = b"the response body";
//! let proof = aip4::DeliveryProof::new(B256::repeat_byte(1), 31337, provider.address(), requester)
//!     .with_result_hash(content_hash(body))
//!     .delivered_at(1_700_000_000, 1);
//! let signature = provider.sign_hash_sync(&proof.signing_hash(&domain)).unwrap();
//! let mut signed = SignedDeliveryProof::new(proof, signature);
//! let request_hash = B256::repeat_byte(3);
//! let binding = signed.binding_hash(&domain, request_hash);
//! signed.bind(request_hash, provider.sign_hash_sync(&binding).unwrap());
//! let header = signed.to_header_value();
//! let parsed = SignedDeliveryProof::from_header_value(&header).unwrap();
//! let hash = verify_delivery(&parsed, body, B256::repeat_byte(1), provider.address(), &domain, None).unwrap();
//! assert_eq!(hash, signed.proof_hash(&domain));
//! ```

use std::io;

use alloy_primitives::{B256, U256, keccak256};

pub mod aip4;
mod delivery;

pub use delivery::{
    ActpDelivery, DeliveryMismatch, ProofError, RequestBinding, SignedDeliveryProof,
    verify_delivery,
};

/// keccak256 of the raw bytes of a deliverable.
pub fn content_hash(bytes: &[u8]) -> B256 {
    keccak256(bytes)
}

/// Streaming keccak256 for deliverables too large to hold in memory: feed it with `update` or
/// `std::io::copy`, then `finalize`.
///
/// ```
/// use actp_core::proof::{ContentHasher, content_hash};
/// let mut h = ContentHasher::new();
/// std::io::copy(&mut &b"hello world"[..], &mut h).unwrap();
/// assert_eq!(h.finalize(), content_hash(b"hello world"));
/// ```
#[derive(Clone, Default)]
pub struct ContentHasher {
    /// alloy's hasher: keccak-asm's assembly permutation (the `asm-keccak` feature).
    inner: alloy_primitives::Keccak256,
    len: u64,
}

impl ContentHasher {
    /// An empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// How many bytes were fed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The content hash of everything fed.
    pub fn finalize(self) -> B256 {
        self.inner.finalize()
    }
}

impl io::Write for ContentHasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The DELIVERED proof bytes: empty (the requester's window), `abi.encode(window)`, or with a proof hash the
/// 64-byte form `abi.encode(uint256 window, bytes32 proofHash)`. A window of 0 means the requester's.
pub fn delivery_proof_bytes(window: u64, proof_hash: Option<B256>) -> Vec<u8> {
    match (window, proof_hash) {
        (0, None) => Vec::new(),
        (w, None) => U256::from(w).to_be_bytes::<32>().to_vec(),
        (w, Some(h)) => {
            let mut out = U256::from(w).to_be_bytes::<32>().to_vec();
            out.extend_from_slice(h.as_slice());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write as _;

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut h = ContentHasher::new();
        for chunk in data.chunks(4093) {
            h.write_all(chunk).unwrap();
        }
        assert_eq!(h.len(), data.len() as u64);
        assert_eq!(h.finalize(), content_hash(&data));
        assert_eq!(
            ContentHasher::new().finalize(),
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
                .parse::<B256>()
                .unwrap()
        );
    }

    #[test]
    fn proof_bytes_forms() {
        assert!(delivery_proof_bytes(0, None).is_empty());
        assert_eq!(delivery_proof_bytes(3600, None).len(), 32);
        let b = delivery_proof_bytes(0, Some(B256::repeat_byte(7)));
        assert_eq!(b.len(), 64);
        assert_eq!(&b[32..], B256::repeat_byte(7).as_slice());
    }
}
