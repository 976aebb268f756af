//! Delivery proofs: what a provider delivered, hashed and signed so the consumer (and a mediator) can check
//! it against the hash on chain. Hashing only; this module never reads files or sockets itself.
//!
//! - content hash: `keccak256` of the raw bytes, also streaming ([`ContentHasher`] implements `Write`);
//! - result hash of a JSON value: keccak256 of its RFC 8785 canonical form ([`crate::canonical`]);
//! - [`DeliveryProof`]: an EIP-712 struct in the ACTP domain; its signing hash is the proof hash that goes on
//!   chain in the 64-byte DELIVERED proof `abi.encode(uint256 window, bytes32 proofHash)`.
//!
//! ```
//! use actp_core::proof::{DeliveryProof, SignedDeliveryProof, content_hash};
//! use actp_core::{Address, B256, eip712::actp_domain};
//! use alloy_signer_local::PrivateKeySigner;
//!
//! let provider = PrivateKeySigner::random();
//! let domain = actp_domain(31337, Address::repeat_byte(0xee));
//! let proof = DeliveryProof {
//!     txId: B256::repeat_byte(1),
//!     provider: provider.address(),
//!     consumer: Address::repeat_byte(2),
//!     resultHash: content_hash(b"the response body"),
//!     requestHash: B256::ZERO,
//!     deliveredAt: 1_700_000_000u64.try_into().unwrap(),
//!     chainId: 31337u64.try_into().unwrap(),
//!     nonce: Default::default(),
//! };
//! let signed = SignedDeliveryProof::sign(proof, &domain, &provider).unwrap();
//! assert_eq!(signed.signer(&domain).unwrap(), provider.address());
//! let header = signed.to_header_value();
//! assert_eq!(SignedDeliveryProof::from_header_value(&header).unwrap(), signed);
//! ```

use std::io;

use alloy_primitives::{Address, B256, Signature, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_sol_types::{Eip712Domain, SolStruct, sol};
use base64::Engine as _;
use sha3::{Digest, Keccak256};

sol! {
    /// A provider's signed statement of what it delivered for a transaction (EIP-712, ACTP domain).
    #[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    struct DeliveryProof {
        /// The transaction.
        bytes32 txId;
        /// The provider (the signer).
        address provider;
        /// The requester who received the delivery.
        address consumer;
        /// keccak256 of the delivered bytes exactly as sent.
        bytes32 resultHash;
        /// keccak256 identifying the request served (see `authorization::request_hash`).
        bytes32 requestHash;
        /// Unix time of delivery.
        uint256 deliveredAt;
        /// Chain id, repeated inside the struct for readers that see only the struct.
        uint256 chainId;
        /// Distinguishes several proofs for one transaction (0 for the single delivery of pay-per-call).
        uint256 nonce;
    }
}

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
    inner: Keccak256,
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
        B256::from_slice(&self.inner.finalize())
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

/// Errors reading or checking a delivery proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The header value is not a proof this library wrote.
    #[error("malformed delivery proof: {0}")]
    Malformed(String),
    /// The signature does not recover.
    #[error("the delivery proof signature is invalid: {0}")]
    BadSignature(String),
    /// Signing failed.
    #[error("could not sign the delivery proof: {0}")]
    Signing(String),
}

/// Why a delivery does not match its proof. Each message says what it means for the consumer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryMismatch {
    /// The proof is not for this transaction.
    #[error("the proof is for transaction {found}, not {expected}")]
    WrongTransaction {
        /// The transaction paid for.
        expected: B256,
        /// The one in the proof.
        found: B256,
    },
    /// The body received does not hash to the proof's result hash.
    #[error(
        "the body received hashes to {received}, the proof says {claimed}: the delivery was altered or is not what was signed; dispute within the window"
    )]
    Body {
        /// keccak256 of the bytes received.
        received: B256,
        /// The proof's resultHash.
        claimed: B256,
    },
    /// Someone other than the provider signed.
    #[error(
        "the proof is signed by {signer}, not by the provider {provider}: dispute within the window"
    )]
    Signer {
        /// Who signed.
        signer: Address,
        /// The transaction's provider.
        provider: Address,
    },
    /// The signature does not recover.
    #[error("{0}")]
    Signature(ProofError),
    /// The proof hash announced (header or chain) is not this proof's hash.
    #[error("the proof hash announced is {announced}, this proof hashes to {actual}")]
    ProofHash {
        /// The hash announced (response header or the chain).
        announced: B256,
        /// This proof's hash.
        actual: B256,
    },
}

/// Checks a delivery as its consumer should: the proof names `tx_id`, the body hashes to its `resultHash`,
/// the provider signed it, and (when given) the proof hash announced alongside (the
/// `X-AGIRAILS-PROOF-HASH` header, or the hash recorded on chain) is its hash. Returns the proof hash.
pub fn verify_delivery(
    signed: &SignedDeliveryProof,
    body: &[u8],
    tx_id: B256,
    provider: Address,
    domain: &Eip712Domain,
    announced: Option<B256>,
) -> Result<B256, DeliveryMismatch> {
    if signed.proof.txId != tx_id {
        return Err(DeliveryMismatch::WrongTransaction {
            expected: tx_id,
            found: signed.proof.txId,
        });
    }
    let received = content_hash(body);
    if received != signed.proof.resultHash {
        return Err(DeliveryMismatch::Body {
            received,
            claimed: signed.proof.resultHash,
        });
    }
    let signer = signed.signer(domain).map_err(DeliveryMismatch::Signature)?;
    if signer != provider || signed.proof.provider != provider {
        return Err(DeliveryMismatch::Signer { signer, provider });
    }
    let actual = signed.proof.proof_hash(domain);
    match announced {
        Some(announced) if announced != actual => {
            Err(DeliveryMismatch::ProofHash { announced, actual })
        }
        _ => Ok(actual),
    }
}

/// A delivery proof with the provider's signature over its EIP-712 hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedDeliveryProof {
    /// The proof.
    pub proof: DeliveryProof,
    /// The provider's signature over `proof.eip712_signing_hash(domain)`.
    pub signature: Signature,
}

impl DeliveryProof {
    /// The proof hash: the EIP-712 signing hash in the ACTP domain. This is what goes on chain.
    pub fn proof_hash(&self, domain: &Eip712Domain) -> B256 {
        self.eip712_signing_hash(domain)
    }
}

impl SignedDeliveryProof {
    /// Signs `proof` with `signer` (which must be the provider).
    pub fn sign(
        proof: DeliveryProof,
        domain: &Eip712Domain,
        signer: &impl SignerSync,
    ) -> Result<Self, ProofError> {
        let signature = signer
            .sign_hash_sync(&proof.proof_hash(domain))
            .map_err(|e| ProofError::Signing(e.to_string()))?;
        Ok(SignedDeliveryProof { proof, signature })
    }

    /// The address that signed.
    pub fn signer(&self, domain: &Eip712Domain) -> Result<Address, ProofError> {
        self.signature
            .recover_address_from_prehash(&self.proof.proof_hash(domain))
            .map_err(|e| ProofError::BadSignature(e.to_string()))
    }

    /// Compact header form: base64url (no padding) of the JSON of the signed proof.
    pub fn to_header_value(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads the header form.
    pub fn from_header_value(value: &str) -> Result<Self, ProofError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value.trim())
            .map_err(|e| ProofError::Malformed(format!("not base64url: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ProofError::Malformed(format!("not a signed proof: {e}")))
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

    #[test]
    fn malformed_header_is_a_typed_error() {
        assert!(matches!(
            SignedDeliveryProof::from_header_value("%%%"),
            Err(ProofError::Malformed(_))
        ));
        assert!(matches!(
            SignedDeliveryProof::from_header_value("e30"),
            Err(ProofError::Malformed(_))
        ));
    }

    #[test]
    fn verify_delivery_catches_each_mismatch() {
        use alloy_signer_local::PrivateKeySigner;
        let provider = PrivateKeySigner::random();
        let domain = crate::eip712::actp_domain(31337, Address::repeat_byte(0xee));
        let tx = B256::repeat_byte(1);
        let proof = DeliveryProof {
            txId: tx,
            provider: provider.address(),
            consumer: Address::repeat_byte(2),
            resultHash: content_hash(b"body"),
            requestHash: B256::ZERO,
            deliveredAt: U256::from(1u64),
            chainId: U256::from(31337u64),
            nonce: U256::ZERO,
        };
        let signed = SignedDeliveryProof::sign(proof.clone(), &domain, &provider).unwrap();
        let hash = proof.proof_hash(&domain);
        let ok = verify_delivery(
            &signed,
            b"body",
            tx,
            provider.address(),
            &domain,
            Some(hash),
        );
        assert_eq!(ok, Ok(hash));
        let v = |body: &[u8], tx, who, announced| {
            verify_delivery(&signed, body, tx, who, &domain, announced).unwrap_err()
        };
        assert!(matches!(
            v(b"other", tx, provider.address(), None),
            DeliveryMismatch::Body { .. }
        ));
        assert!(matches!(
            v(b"body", B256::ZERO, provider.address(), None),
            DeliveryMismatch::WrongTransaction { .. }
        ));
        assert!(matches!(
            v(b"body", tx, Address::repeat_byte(9), None),
            DeliveryMismatch::Signer { .. }
        ));
        assert!(matches!(
            v(b"body", tx, provider.address(), Some(B256::ZERO)),
            DeliveryMismatch::ProofHash { .. }
        ));
    }
}
