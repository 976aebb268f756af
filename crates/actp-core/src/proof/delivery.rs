//! What a provider's response carries as proof of delivery, and how a requester checks it.
//!
//! Two EIP-712 structs, both in the ACTP domain and both signed by the provider:
//! - the AIP-4 [`DeliveryProof`](super::aip4::DeliveryProof), exactly as the ACTP SDKs sign and verify it;
//! - [`ActpDelivery`], this project's own type: it binds that proof (by its signing hash) to the request
//!   served (the request hash the requester's authorization covers). Its signing hash is the proof hash the
//!   provider records on chain with DELIVERED, so the chain commits to both.
//!
//! A proof signed by an SDK carries no binding; its proof hash is then the AIP-4 signing hash itself.

use alloy_primitives::{Address, B256, Signature};
use alloy_signer::SignerSync;
use alloy_sol_types::{Eip712Domain, sol};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{
    aip4::{self, DeliveryProof, WireProof},
    content_hash,
};

sol! {
    /// This project's binding of an AIP-4 delivery proof to the request it answered (EIP-712, ACTP domain).
    #[derive(Debug, PartialEq, Eq)]
    struct ActpDelivery {
        /// The transaction.
        bytes32 txId;
        /// The AIP-4 `DeliveryProof`'s EIP-712 signing hash.
        bytes32 deliveryProof;
        /// The request served (see `authorization::request_hash`).
        bytes32 requestHash;
    }
}

impl ActpDelivery {
    /// The binding of transaction `tx_id`'s AIP-4 proof, whose EIP-712 signing hash is `delivery_proof`, to
    /// the request `request_hash`.
    pub fn new(tx_id: B256, delivery_proof: B256, request_hash: B256) -> Self {
        ActpDelivery {
            txId: tx_id,
            deliveryProof: delivery_proof,
            requestHash: request_hash,
        }
    }
}

/// Errors reading or checking a delivery proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The header value or file is not a delivery proof.
    #[error("malformed delivery proof: {0}")]
    Malformed(String),
    /// The signature does not recover.
    #[error("the delivery proof signature is invalid: {0}")]
    BadSignature(String),
    /// The signature is the high-`s` twin of a valid one (malleable); the SDKs refuse it too.
    #[error("the delivery proof signature has a high s value (malleable): sign with low s (EIP-2)")]
    Malleable,
    /// Signing failed.
    #[error("could not sign the delivery proof: {0}")]
    Signing(String),
}

/// Why a delivery does not match its proof. Each message says what it means for the requester.
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
    /// The proof is for another chain than the kernel's.
    #[error("the proof is for chain {found}, not {expected}: it was not signed for this kernel")]
    WrongChain {
        /// The kernel's chain.
        expected: u64,
        /// The proof's.
        found: String,
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
    /// Someone other than the provider signed, or the proof names another provider.
    #[error(
        "the proof is signed by {signer}, not by the provider {provider}: dispute within the window"
    )]
    Signer {
        /// Who signed (or whom the proof names).
        signer: Address,
        /// The transaction's provider.
        provider: Address,
    },
    /// The signature does not recover, is malleable, or the proof does not parse.
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

/// The provider's signature binding a proof to the request it answered, alone or in a batch (see
/// [`crate::batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBinding {
    /// The request served.
    pub request_hash: B256,
    /// The provider's signature over the [`ActpDelivery`] signing hash, or over the batch `path` leads to.
    pub signature: Signature,
    /// The binding hash's path to the root of the batch signed (empty: signed alone).
    pub path: Vec<B256>,
}

/// An AIP-4 delivery proof with the provider's signature, and (from this project's paywall) its binding to
/// the request served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDeliveryProof {
    /// The proof.
    pub proof: DeliveryProof,
    /// The provider's signature over `proof.signing_hash(domain)`.
    pub signature: Signature,
    /// The binding to the request, when the provider made one.
    pub binding: Option<RequestBinding>,
}

/// The header's JSON: the SDK wire proof, and this project's binding next to it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeaderJson {
    proof: WireProof,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_hash: Option<B256>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binding: Option<String>,
    /// The binding's path to the batch signed; absent when it was signed alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    binding_batch: Vec<B256>,
}

impl SignedDeliveryProof {
    /// A signed proof, not bound to a request.
    pub fn new(proof: DeliveryProof, signature: Signature) -> Self {
        SignedDeliveryProof {
            proof,
            signature,
            binding: None,
        }
    }

    /// Signs `proof` with a local key (which must be the provider's), without a binding.
    pub fn sign(
        proof: DeliveryProof,
        domain: &Eip712Domain,
        signer: &impl SignerSync,
    ) -> Result<Self, ProofError> {
        let signature = signer
            .sign_hash_sync(&proof.signing_hash(domain))
            .map_err(|e| ProofError::Signing(e.to_string()))?;
        Ok(Self::new(proof, signature.normalized_s()))
    }

    /// The [`ActpDelivery`] binding this proof to `request_hash`.
    pub fn binding_for(&self, domain: &Eip712Domain, request_hash: B256) -> ActpDelivery {
        ActpDelivery::new(
            self.proof.txId,
            self.proof.signing_hash(domain),
            request_hash,
        )
    }

    /// The hash the provider signs to bind this proof to `request_hash`.
    pub fn binding_hash(&self, domain: &Eip712Domain, request_hash: B256) -> B256 {
        crate::eip712::signing_hash(&self.binding_for(domain, request_hash), domain)
    }

    /// Adds the provider's binding signature over [`Self::binding_hash`].
    pub fn bind(&mut self, request_hash: B256, signature: Signature) {
        self.bind_in_batch(request_hash, signature, Vec::new());
    }

    /// Adds the provider's signature over a batch holding [`Self::binding_hash`], reached through `path`.
    pub fn bind_in_batch(&mut self, request_hash: B256, signature: Signature, path: Vec<B256>) {
        self.binding = Some(RequestBinding {
            request_hash,
            signature,
            path,
        });
    }

    /// The proof hash: what goes on chain. With a binding, the [`ActpDelivery`] signing hash (it commits to
    /// the AIP-4 proof and the request); without, the AIP-4 proof's own signing hash.
    pub fn proof_hash(&self, domain: &Eip712Domain) -> B256 {
        match &self.binding {
            Some(b) => self.binding_hash(domain, b.request_hash),
            None => self.proof.signing_hash(domain),
        }
    }

    /// Who signed the AIP-4 proof. A high-`s` signature is refused, as the SDKs refuse it.
    pub fn signer(&self, domain: &Eip712Domain) -> Result<Address, ProofError> {
        recover(&self.signature, &self.proof.signing_hash(domain))
    }

    /// The SDK wire form of the AIP-4 proof alone (what `MessageSigner.verify_signature` takes).
    pub fn wire_proof(&self) -> WireProof {
        WireProof::new(&self.proof, &self.signature)
    }

    /// The JSON carried in the header: `{"proof": <SDK wire proof>, "requestHash", "binding"}`.
    pub fn to_json(&self) -> String {
        let json = HeaderJson {
            proof: self.wire_proof(),
            request_hash: self.binding.as_ref().map(|b| b.request_hash),
            binding: self.binding.as_ref().map(|b| {
                format!(
                    "0x{}",
                    alloy_primitives::hex::encode(b.signature.as_bytes())
                )
            }),
            binding_batch: self
                .binding
                .as_ref()
                .map(|b| b.path.clone())
                .unwrap_or_default(),
        };
        serde_json::to_string(&json).unwrap_or_default()
    }

    /// Header form: base64url (no padding) of [`Self::to_json`].
    pub fn to_header_value(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.to_json())
    }

    /// Reads a proof from a header value (base64url) or its JSON: this project's form, or a bare AIP-4 wire
    /// proof signed by an SDK.
    pub fn from_header_value(value: &str) -> Result<Self, ProofError> {
        let value = value.trim();
        let json = if value.starts_with('{') {
            value.as_bytes().to_vec()
        } else {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .map_err(|e| ProofError::Malformed(format!("neither JSON nor base64url: {e}")))?
        };
        let parsed: serde_json::Value = serde_json::from_slice(&json)
            .map_err(|e| ProofError::Malformed(format!("not JSON: {e}")))?;
        let malformed =
            |e: serde_json::Error| ProofError::Malformed(format!("not a delivery proof: {e}"));
        if parsed.get("proof").is_some() {
            let header: HeaderJson = serde_json::from_value(parsed).map_err(malformed)?;
            let (proof, signature) = header.proof.into_parts()?;
            if header.binding_batch.len() > crate::batch::MAX_PATH {
                return Err(ProofError::Malformed(format!(
                    "the binding's batch path of {} hashes is longer than the {} of any batch",
                    header.binding_batch.len(),
                    crate::batch::MAX_PATH
                )));
            }
            let binding = match (header.request_hash, header.binding) {
                (Some(request_hash), Some(signature)) => Some(RequestBinding {
                    request_hash,
                    signature: parse_signature(&signature)?,
                    path: header.binding_batch,
                }),
                (None, None) if header.binding_batch.is_empty() => None,
                _ => {
                    return Err(ProofError::Malformed(
                        "requestHash, binding and bindingBatch come together".into(),
                    ));
                }
            };
            Ok(SignedDeliveryProof {
                proof,
                signature,
                binding,
            })
        } else {
            let wire: WireProof = serde_json::from_value(parsed).map_err(malformed)?;
            let (proof, signature) = wire.into_parts()?;
            Ok(Self::new(proof, signature))
        }
    }
}

fn parse_signature(hex: &str) -> Result<Signature, ProofError> {
    let bytes = alloy_primitives::hex::decode(hex)
        .map_err(|_| ProofError::Malformed("the binding signature is not hex".into()))?;
    Signature::try_from(bytes.as_slice())
        .map_err(|e| ProofError::Malformed(format!("the binding signature is not 65 bytes: {e}")))
}

/// The signer of `hash`, refusing high-`s` signatures.
fn recover(signature: &Signature, hash: &B256) -> Result<Address, ProofError> {
    if signature.normalize_s().is_some() {
        return Err(ProofError::Malleable);
    }
    crate::ecdsa::recover(hash, signature).map_err(|e| ProofError::BadSignature(e.to_string()))
}

/// Checks a delivery as its requester should, for proofs from this project's paywall and from the SDKs: the
/// proof names `tx_id` and the kernel's chain; the body hashes to its `resultHash` (keccak256 of the bytes,
/// or of the body's canonical JSON, as the SDKs compute it); the provider signed it and it names the
/// provider; its binding, if any, is the provider's too; and the proof hash announced alongside (the
/// `X-AGIRAILS-PROOF-HASH` header, or the hash recorded on chain), when given, is its proof hash. Returns the
/// proof hash.
pub fn verify_delivery(
    signed: &SignedDeliveryProof,
    body: &[u8],
    tx_id: B256,
    provider: Address,
    domain: &Eip712Domain,
    announced: Option<B256>,
) -> Result<B256, DeliveryMismatch> {
    let proof = &signed.proof;
    if proof.txId != tx_id {
        return Err(DeliveryMismatch::WrongTransaction {
            expected: tx_id,
            found: proof.txId,
        });
    }
    let chain = domain
        .chain_id
        .map(|c| c.saturating_to::<u64>())
        .unwrap_or_default();
    if proof.chainId != alloy_primitives::U256::from(chain) {
        return Err(DeliveryMismatch::WrongChain {
            expected: chain,
            found: proof.chainId.to_string(),
        });
    }
    let received = content_hash(body);
    let canonical = || {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .map(|v| crate::canonical::result_hash(&v))
    };
    if received != proof.resultHash && canonical() != Some(proof.resultHash) {
        return Err(DeliveryMismatch::Body {
            received,
            claimed: proof.resultHash,
        });
    }
    let signer = signed.signer(domain).map_err(DeliveryMismatch::Signature)?;
    let (did_chain, named) =
        aip4::parse_did(&proof.provider).map_err(DeliveryMismatch::Signature)?;
    if let Some(c) = did_chain
        && c != chain
    {
        return Err(DeliveryMismatch::WrongChain {
            expected: chain,
            found: c.to_string(),
        });
    }
    for who in [signer, named] {
        if who != provider {
            return Err(DeliveryMismatch::Signer {
                signer: who,
                provider,
            });
        }
    }
    if let Some(binding) = &signed.binding {
        if binding.path.len() > crate::batch::MAX_PATH {
            return Err(DeliveryMismatch::Signature(ProofError::Malformed(
                "the binding's batch path is longer than any batch".into(),
            )));
        }
        let hash = crate::batch::signing_hash(
            signed.binding_hash(domain, binding.request_hash),
            &binding.path,
            domain,
        );
        let bound_by = recover(&binding.signature, &hash).map_err(DeliveryMismatch::Signature)?;
        if bound_by != provider {
            return Err(DeliveryMismatch::Signer {
                signer: bound_by,
                provider,
            });
        }
    }
    let actual = signed.proof_hash(domain);
    match announced {
        Some(announced) if announced != actual => {
            Err(DeliveryMismatch::ProofHash { announced, actual })
        }
        _ => Ok(actual),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use alloy_signer_local::PrivateKeySigner;

    fn setup() -> (PrivateKeySigner, Eip712Domain, SignedDeliveryProof, B256) {
        let provider = PrivateKeySigner::random();
        let domain = crate::eip712::actp_domain(31337, Address::repeat_byte(0xee));
        let tx = B256::repeat_byte(1);
        let proof = DeliveryProof::new(tx, 31337, provider.address(), Address::repeat_byte(2))
            .with_result_hash(content_hash(b"body"))
            .delivered_at(1, 7);
        let mut signed = SignedDeliveryProof::sign(proof, &domain, &provider).unwrap();
        let request = B256::repeat_byte(3);
        let binding = provider
            .sign_hash_sync(&signed.binding_hash(&domain, request))
            .unwrap();
        signed.bind(request, binding);
        (provider, domain, signed, tx)
    }

    #[test]
    fn verify_delivery_catches_each_mismatch() {
        let (provider, domain, signed, tx) = setup();
        let hash = signed.proof_hash(&domain);
        let ok = verify_delivery(
            &signed,
            b"body",
            tx,
            provider.address(),
            &domain,
            Some(hash),
        );
        assert_eq!(ok, Ok(hash));
        let v = |s: &SignedDeliveryProof, body: &[u8], tx, who, announced| {
            verify_delivery(s, body, tx, who, &domain, announced).unwrap_err()
        };
        let me = provider.address();
        assert!(matches!(
            v(&signed, b"other", tx, me, None),
            DeliveryMismatch::Body { .. }
        ));
        assert!(matches!(
            v(&signed, b"body", B256::ZERO, me, None),
            DeliveryMismatch::WrongTransaction { .. }
        ));
        assert!(matches!(
            v(&signed, b"body", tx, Address::repeat_byte(9), None),
            DeliveryMismatch::Signer { .. }
        ));
        assert!(matches!(
            v(&signed, b"body", tx, me, Some(B256::ZERO)),
            DeliveryMismatch::ProofHash { .. }
        ));
        // The high-s twin of a valid signature is refused.
        let mut high = signed.clone();
        let s = signed.signature;
        let n = alloy_primitives::U256::from_be_slice(&alloy_primitives::hex!(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
        ));
        high.signature = Signature::new(s.r(), n - s.s(), !s.v());
        assert!(matches!(
            v(&high, b"body", tx, me, None),
            DeliveryMismatch::Signature(ProofError::Malleable)
        ));
        // A binding by someone else.
        let mut rebound = signed.clone();
        let stranger = PrivateKeySigner::random();
        let request = B256::repeat_byte(4);
        let sig = stranger
            .sign_hash_sync(&rebound.binding_hash(&domain, request))
            .unwrap();
        rebound.bind(request, sig);
        assert!(matches!(
            v(&rebound, b"body", tx, me, None),
            DeliveryMismatch::Signer { .. }
        ));
        // A proof that names another provider than its signer.
        let mut renamed = signed.clone();
        renamed.proof.provider = aip4::did(31337, Address::repeat_byte(9));
        let sig = provider
            .sign_hash_sync(&renamed.proof.signing_hash(&domain))
            .unwrap();
        renamed.signature = sig;
        renamed.binding = None;
        assert!(matches!(
            v(&renamed, b"body", tx, me, None),
            DeliveryMismatch::Signer { .. }
        ));
        // Signed for another chain.
        let other_chain = crate::eip712::actp_domain(1, Address::repeat_byte(0xee));
        assert!(matches!(
            verify_delivery(&signed, b"body", tx, me, &other_chain, None),
            Err(DeliveryMismatch::WrongChain { .. })
        ));
    }

    #[test]
    fn header_round_trip_and_bare_sdk_proofs() {
        let (provider, domain, signed, tx) = setup();
        let header = signed.to_header_value();
        assert_eq!(
            SignedDeliveryProof::from_header_value(&header).unwrap(),
            signed
        );
        assert_eq!(
            SignedDeliveryProof::from_header_value(&signed.to_json()).unwrap(),
            signed
        );
        // The bare AIP-4 part, as an SDK user receives and sends it.
        let bare = serde_json::to_string(&signed.wire_proof()).unwrap();
        let parsed = SignedDeliveryProof::from_header_value(&bare).unwrap();
        assert_eq!(parsed.binding, None);
        assert_eq!(
            verify_delivery(&parsed, b"body", tx, provider.address(), &domain, None),
            Ok(signed.proof.signing_hash(&domain))
        );
    }

    #[test]
    fn a_binding_signed_in_a_batch_checks_and_keeps_its_path_on_the_wire() {
        let (provider, domain, mut signed, tx) = setup();
        let request = B256::repeat_byte(3);
        let leaf = signed.binding_hash(&domain, request);
        let others = [B256::repeat_byte(5), B256::repeat_byte(6)];
        let (root, paths) = crate::batch::tree(&[others[0], leaf, others[1]], &domain).unwrap();
        let signature = provider.sign_hash_sync(&root).unwrap();
        signed.bind_in_batch(request, signature, paths[1].clone());
        let parsed = SignedDeliveryProof::from_header_value(&signed.to_header_value()).unwrap();
        assert_eq!(parsed, signed);
        assert!(signed.to_json().contains("\"bindingBatch\":[\"0x"));
        // The proof hash on chain is the binding's own hash, whatever batch signed it.
        let hash = verify_delivery(&parsed, b"body", tx, provider.address(), &domain, None);
        assert_eq!(hash, Ok(leaf));
        // Another leaf's path does not make the batch's signature a binding of this proof.
        let mut wrong = signed.clone();
        wrong.binding.as_mut().unwrap().path = paths[0].clone();
        assert!(matches!(
            verify_delivery(&wrong, b"body", tx, provider.address(), &domain, None),
            Err(DeliveryMismatch::Signer { .. } | DeliveryMismatch::Signature(_))
        ));
        // A batch path without a binding is malformed.
        let json = signed
            .to_json()
            .replace(
                &format!(
                    "\"binding\":\"0x{}\",",
                    alloy_primitives::hex::encode(signature.as_bytes())
                ),
                "",
            )
            .replace(&format!("\"requestHash\":\"{request}\","), "");
        assert!(
            matches!(
                SignedDeliveryProof::from_header_value(&json),
                Err(ProofError::Malformed(_))
            ),
            "{json}"
        );
    }

    #[test]
    fn a_json_body_may_be_hashed_canonically() {
        let provider = PrivateKeySigner::random();
        let domain = crate::eip712::actp_domain(31337, Address::repeat_byte(0xee));
        let value = serde_json::json!({"text": "hello", "answer": 42});
        let proof = DeliveryProof::new(B256::ZERO, 31337, provider.address(), Address::ZERO)
            .with_result_hash(crate::canonical::result_hash(&value));
        let signed = SignedDeliveryProof::sign(proof, &domain, &provider).unwrap();
        let body = br#"{ "answer": 42, "text": "hello" }"#;
        assert!(
            verify_delivery(&signed, body, B256::ZERO, provider.address(), &domain, None).is_ok()
        );
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        for bad in ["%%%", "e30", "{\"proof\": 1}", "{\"type\": \"other\"}"] {
            assert!(
                matches!(
                    SignedDeliveryProof::from_header_value(bad),
                    Err(ProofError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }
}
