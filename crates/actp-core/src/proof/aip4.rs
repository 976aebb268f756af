//! The AIP-4 delivery proof as the ACTP SDKs sign it (TypeScript `DeliveryProofBuilder`, Python `agirails`
//! `MessageSigner.sign_delivery_proof_message`): the EIP-712 type `DeliveryProof` in the ACTP domain, its wire
//! JSON (`{"type": "agirails.delivery.v1", "version": "1.0.0", ...fields, "signature"}`), and the
//! `did:ethr:<chainId>:<address>` names of provider and requester.
//!
//! Compatibility notes, checked against `agirails` 4.8.0: the domain version is `"1"` (as the TypeScript
//! AIP-4 signer uses; the Python `MessageSigner` must be given `domain_version="1"`); DIDs are strings, so a
//! checksummed and a lowercase DID sign differently (this module writes checksummed ones, as the SDKs do);
//! signatures are 65 bytes `r ‖ s ‖ v` with `v` 27 or 28, and verifiers refuse high-`s` twins.

use alloy_primitives::{Address, B256, Signature, U256};
use alloy_sol_types::{Eip712Domain, sol};
use serde::{Deserialize, Serialize};

use super::ProofError;

sol! {
    /// AIP-4: a provider's signed statement of what it delivered for a transaction (EIP-712, ACTP domain).
    #[derive(Debug, PartialEq, Eq)]
    struct DeliveryProof {
        /// The transaction.
        bytes32 txId;
        /// The provider, `did:ethr:<chainId>:<address>`.
        string provider;
        /// The requester who received the delivery, same form.
        string consumer;
        /// Where the result is stored (an IPFS CID), or empty.
        string resultCID;
        /// keccak256 of the delivered bytes (or of the result's canonical JSON).
        bytes32 resultHash;
        /// An EAS attestation of the delivery, or zero.
        bytes32 easAttestationUID;
        /// Unix time of delivery.
        uint256 deliveredAt;
        /// Chain id, repeated inside the struct.
        uint256 chainId;
        /// Increases with each proof a provider signs.
        uint256 nonce;
    }
}

/// The wire message's `type`.
pub const MESSAGE_TYPE: &str = "agirails.delivery.v1";
/// The wire message's `version`.
pub const MESSAGE_VERSION: &str = "1.0.0";

/// `did:ethr:<chainId>:<checksummed address>`, as the SDKs write it.
pub fn did(chain_id: u64, address: Address) -> String {
    format!("did:ethr:{chain_id}:{}", address.to_checksum(None))
}

/// The chain id (if the DID names one) and address of `did:ethr:<chainId>:<address>`, `did:ethr:<address>` or
/// a bare address, as the SDKs accept them (any case; the chain id in decimal).
pub fn parse_did(text: &str) -> Result<(Option<u64>, Address), ProofError> {
    let bad = || ProofError::Malformed(format!("{text:?} is not a did:ethr or an address"));
    let rest = match text.strip_prefix("did:ethr:") {
        Some(rest) => rest,
        None => return text.parse().map(|a| (None, a)).map_err(|_| bad()),
    };
    let (chain, address) = match rest.rsplit_once(':') {
        Some((chain, address)) => {
            if chain.is_empty() || !chain.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            (Some(chain.parse::<u64>().map_err(|_| bad())?), address)
        }
        None => (None, rest),
    };
    let hex = address.strip_prefix("0x").ok_or_else(bad)?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok((chain, address.parse().map_err(|_| bad())?))
}

impl DeliveryProof {
    /// A proof for `tx_id` on `chain_id` from `provider` to `requester`: no result hash, CID, attestation,
    /// time or nonce yet.
    pub fn new(tx_id: B256, chain_id: u64, provider: Address, requester: Address) -> Self {
        DeliveryProof {
            txId: tx_id,
            provider: did(chain_id, provider),
            consumer: did(chain_id, requester),
            resultCID: String::new(),
            resultHash: B256::ZERO,
            easAttestationUID: B256::ZERO,
            deliveredAt: U256::ZERO,
            chainId: U256::from(chain_id),
            nonce: U256::ZERO,
        }
    }

    /// With the hash of what was delivered.
    #[must_use]
    pub fn with_result_hash(mut self, hash: B256) -> Self {
        self.resultHash = hash;
        self
    }

    /// Delivered at unix time `at`, as the provider's proof number `nonce`.
    #[must_use]
    pub fn delivered_at(mut self, at: u64, nonce: u64) -> Self {
        self.deliveredAt = U256::from(at);
        self.nonce = U256::from(nonce);
        self
    }

    /// The EIP-712 signing hash in `domain`: what the provider signs.
    pub fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        crate::eip712::signing_hash(self, domain)
    }
}

/// The SDKs' wire form of a signed AIP-4 proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireProof {
    /// [`MESSAGE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// [`MESSAGE_VERSION`].
    pub version: String,
    /// The transaction.
    pub tx_id: B256,
    /// The provider's DID.
    pub provider: String,
    /// The requester's DID.
    pub consumer: String,
    /// The result's CID, or empty.
    #[serde(rename = "resultCID", default)]
    pub result_cid: String,
    /// The result hash.
    pub result_hash: B256,
    /// The attestation, or zero.
    #[serde(rename = "easAttestationUID", default)]
    pub eas_attestation_uid: B256,
    /// Unix time of delivery.
    #[serde(with = "number")]
    pub delivered_at: U256,
    /// Chain id.
    #[serde(with = "number")]
    pub chain_id: U256,
    /// The provider's proof number.
    #[serde(with = "number")]
    pub nonce: U256,
    /// `0x` and 65 bytes `r ‖ s ‖ v`.
    pub signature: String,
}

impl WireProof {
    /// The wire form of `proof` signed with `signature` (`v` written as 27 or 28).
    pub fn new(proof: &DeliveryProof, signature: &Signature) -> Self {
        WireProof {
            kind: MESSAGE_TYPE.into(),
            version: MESSAGE_VERSION.into(),
            tx_id: proof.txId,
            provider: proof.provider.clone(),
            consumer: proof.consumer.clone(),
            result_cid: proof.resultCID.clone(),
            result_hash: proof.resultHash,
            eas_attestation_uid: proof.easAttestationUID,
            delivered_at: proof.deliveredAt,
            chain_id: proof.chainId,
            nonce: proof.nonce,
            signature: format!("0x{}", alloy_primitives::hex::encode(signature.as_bytes())),
        }
    }

    /// The signed struct and its signature; a type other than [`MESSAGE_TYPE`] or a signature that is not
    /// 65 bytes is refused.
    pub fn into_parts(self) -> Result<(DeliveryProof, Signature), ProofError> {
        if self.kind != MESSAGE_TYPE {
            return Err(ProofError::Malformed(format!(
                "type {:?} is not an AIP-4 delivery proof ({MESSAGE_TYPE})",
                self.kind
            )));
        }
        let bytes = alloy_primitives::hex::decode(&self.signature)
            .map_err(|_| ProofError::Malformed("the signature is not hex".into()))?;
        let signature = Signature::try_from(bytes.as_slice()).map_err(|e| {
            ProofError::Malformed(format!("the signature is not 65 bytes r|s|v: {e}"))
        })?;
        let proof = DeliveryProof {
            txId: self.tx_id,
            provider: self.provider,
            consumer: self.consumer,
            resultCID: self.result_cid,
            resultHash: self.result_hash,
            easAttestationUID: self.eas_attestation_uid,
            deliveredAt: self.delivered_at,
            chainId: self.chain_id,
            nonce: self.nonce,
        };
        Ok((proof, signature))
    }
}

/// A `uint256` as a JSON number (what the SDKs write), read from a number or a decimal string.
mod number {
    use alloy_primitives::U256;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(value: &U256, s: S) -> Result<S::Ok, S::Error> {
        match u64::try_from(*value) {
            Ok(n) => s.serialize_u64(n),
            Err(_) => s.serialize_str(&value.to_string()),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(U256::from(n)),
            Raw::Text(t) => t
                .parse::<U256>()
                .map_err(|_| D::Error::custom(format!("{t:?} is not an unsigned integer"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use alloy_sol_types::SolStruct;

    use super::*;
    use crate::eip712::actp_domain;

    /// A proof the Python SDK (`agirails` 4.8.0) signed with anvil's key 1, and the digest it computed.
    const SDK_SIGNED: &str = r#"{"type":"agirails.delivery.v1","version":"1.0.0",
        "txId":"0xabababababababababababababababababababababababababababababababab",
        "provider":"did:ethr:31337:0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "consumer":"did:ethr:31337:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "resultCID":"","resultHash":"0xc550e960cb358110d0127e61c6d2beea4687b38c27189698ac60aad053fbca1b",
        "easAttestationUID":"0x0000000000000000000000000000000000000000000000000000000000000000",
        "deliveredAt":1700000000,"chainId":31337,"nonce":1,
        "signature":"0x40ba9655565498db336d75c6a9e18d204827fc50073c3b45459912b3168f1893754449c88f05807f425caf6d9bfe6033e1271f3b48c6169229356ccad671b4521b"}"#;

    #[test]
    fn the_sdk_digest_and_signer_are_reproduced_byte_for_byte() {
        let wire: WireProof = serde_json::from_str(SDK_SIGNED).unwrap();
        let (proof, signature) = wire.clone().into_parts().unwrap();
        let domain = actp_domain(
            31337,
            "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
                .parse()
                .unwrap(),
        );
        let digest = proof.signing_hash(&domain);
        assert_eq!(
            digest,
            "0x83b2f2b09d289ab1fabcfb615184d3b0b4f70cb28d17438b480212ce2a4777ee"
                .parse::<B256>()
                .unwrap()
        );
        assert_eq!(
            proof.eip712_type_hash(),
            "0x425ced2de607050b98321400e4411aa0eee4eb375290b412216b6cece62260da"
                .parse::<B256>()
                .unwrap(),
            "typeHash"
        );
        assert_eq!(
            signature.recover_address_from_prehash(&digest).unwrap(),
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
                .parse::<Address>()
                .unwrap()
        );
        // Written back exactly as the SDK wrote it.
        assert_eq!(WireProof::new(&proof, &signature), wire);
    }

    #[test]
    fn dids() {
        let a: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
            .parse()
            .unwrap();
        assert_eq!(
            did(84532, a),
            "did:ethr:84532:0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        );
        assert_eq!(parse_did(&did(84532, a)).unwrap(), (Some(84532), a));
        assert_eq!(
            parse_did("did:ethr:0x70997970c51812dc3a010c7d01b50e0d17dc79c8").unwrap(),
            (None, a)
        );
        assert_eq!(
            parse_did("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").unwrap(),
            (None, a)
        );
        for bad in [
            "did:ethr:0x1:0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "did:ethr:base:0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "did:ethr:1:0x7099",
            "did:web:example.com",
            "",
        ] {
            assert!(parse_did(bad).is_err(), "{bad}");
        }
    }
}
