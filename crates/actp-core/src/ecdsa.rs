//! ECDSA over secp256k1 on the per-request path: recovering who signed a 32-byte hash, and signing one with a
//! local key, with libsecp256k1 (several times faster than the pure-Rust k256 on these machines; see
//! `make bench`). The results are alloy's: RFC 6979 nonces, low `s`, Ethereum's recovery ids.

use alloy_primitives::{Address, B256, Signature, keccak256};
use secp256k1::{
    Message, SECP256K1,
    ecdsa::{RecoverableSignature, RecoveryId},
};

pub use secp256k1::SecretKey;

/// Why a signature does not recover.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the signature does not recover to a public key")]
pub struct RecoverError;

/// The address whose key signed `hash` (no EIP-191 prefix: `hash` is what was signed).
pub fn recover(hash: &B256, signature: &Signature) -> Result<Address, RecoverError> {
    let mut compact = [0u8; 64];
    compact[..32].copy_from_slice(&signature.r().to_be_bytes::<32>());
    compact[32..].copy_from_slice(&signature.s().to_be_bytes::<32>());
    let id = RecoveryId::try_from(i32::from(signature.v())).map_err(|_| RecoverError)?;
    let recoverable = RecoverableSignature::from_compact(&compact, id).map_err(|_| RecoverError)?;
    let key = SECP256K1
        .recover_ecdsa(Message::from_digest(hash.0), &recoverable)
        .map_err(|_| RecoverError)?;
    let uncompressed = key.serialize_uncompressed();
    Ok(Address::from_slice(&keccak256(&uncompressed[1..])[12..]))
}

/// Signs `hash` with `key` (deterministic, low `s`).
pub fn sign(hash: &B256, key: &SecretKey) -> Signature {
    let (id, compact) = SECP256K1
        .sign_ecdsa_recoverable(Message::from_digest(hash.0), key)
        .serialize_compact();
    Signature::from_bytes_and_parity(&compact, i32::from(id) != 0)
}

/// The address of `key`.
pub fn address_of(key: &SecretKey) -> Address {
    let public = secp256k1::PublicKey::from_secret_key(SECP256K1, key);
    Address::from_slice(&keccak256(&public.serialize_uncompressed()[1..])[12..])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;

    #[test]
    fn signs_and_recovers_as_alloy_does() {
        for i in 1..20u8 {
            let local = PrivateKeySigner::random();
            let key = SecretKey::from_byte_array(local.credential().to_bytes().into()).unwrap();
            assert_eq!(address_of(&key), local.address());
            let hash = keccak256([i; 7]);
            let theirs = local.sign_hash_sync(&hash).unwrap();
            let ours = sign(&hash, &key);
            // The same deterministic signature, low s.
            assert_eq!(ours, theirs.normalized_s());
            assert!(ours.normalize_s().is_none());
            assert_eq!(recover(&hash, &ours).unwrap(), local.address());
            assert_eq!(
                recover(&hash, &ours).unwrap(),
                ours.recover_address_from_prehash(&hash).unwrap()
            );
            // Another hash recovers to someone else.
            assert_ne!(recover(&keccak256([i; 8]), &ours).unwrap(), local.address());
        }
    }

    #[test]
    fn garbage_does_not_recover() {
        let zero = Signature::new(
            alloy_primitives::U256::ZERO,
            alloy_primitives::U256::ZERO,
            false,
        );
        assert_eq!(recover(&B256::repeat_byte(1), &zero), Err(RecoverError));
    }
}
