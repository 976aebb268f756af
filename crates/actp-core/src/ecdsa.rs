//! ECDSA over secp256k1 on the per-request path: recovering who signed a 32-byte hash, checking that a
//! given address signed it, and signing one with a local key, with libsecp256k1 (several times faster than
//! the pure-Rust k256 on these machines; see `make bench`). The results are alloy's: RFC 6979 nonces, low `s`,
//! Ethereum's recovery ids.
//!
//! [`check`] is what a paywall runs on every paid request: the first signature of an address is recovered,
//! and the public key it recovers to is kept (per process); later signatures of that address are verified
//! against the key, which skips the recovery's square root, inversion and hashing (measured at 15% of a recovery
//! when written, at about 1% in a later run on the same kind of machine).
//! A verification does not look at the recovery bit `v`: [`with_recovery_bit_of`] sets it where a signature
//! goes on chain.

use std::{
    collections::HashMap,
    sync::{LazyLock, RwLock},
};

use alloy_primitives::{Address, B256, Signature, keccak256};
use secp256k1::{
    Message, PublicKey, SECP256K1,
    ecdsa::{RecoverableSignature, RecoveryId},
};

pub use secp256k1::SecretKey;

/// Why a signature does not recover.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the signature does not recover to a public key")]
pub struct RecoverError;

/// The address whose key signed `hash` (no EIP-191 prefix: `hash` is what was signed).
pub fn recover(hash: &B256, signature: &Signature) -> Result<Address, RecoverError> {
    recover_key(hash, signature).map(|key| address_of_key(&key))
}

fn compact(signature: &Signature) -> [u8; 64] {
    let mut compact = [0u8; 64];
    compact[..32].copy_from_slice(&signature.r().to_be_bytes::<32>());
    compact[32..].copy_from_slice(&signature.s().to_be_bytes::<32>());
    compact
}

fn recover_key(hash: &B256, signature: &Signature) -> Result<PublicKey, RecoverError> {
    let id = RecoveryId::try_from(i32::from(signature.v())).map_err(|_| RecoverError)?;
    let recoverable =
        RecoverableSignature::from_compact(&compact(signature), id).map_err(|_| RecoverError)?;
    SECP256K1
        .recover_ecdsa(Message::from_digest(hash.0), &recoverable)
        .map_err(|_| RecoverError)
}

fn address_of_key(key: &PublicKey) -> Address {
    Address::from_slice(&keccak256(&key.serialize_uncompressed()[1..])[12..])
}

/// How many addresses' keys the process keeps before it starts over.
const KNOWN_KEYS: usize = 4_096;

/// The public keys [`check`] recovered, by address.
static KNOWN: LazyLock<RwLock<HashMap<Address, PublicKey>>> = LazyLock::new(RwLock::default);

fn known_key(address: &Address) -> Option<PublicKey> {
    // A panic while holding the lock leaves whole entries behind.
    KNOWN
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(address)
        .copied()
}

/// Keeps `key` for `address` in `known`, which starts over when it holds `capacity` keys.
fn remember(
    known: &mut HashMap<Address, PublicKey>,
    capacity: usize,
    address: Address,
    key: PublicKey,
) {
    if known.len() >= capacity && !known.contains_key(&address) {
        known.clear();
    }
    known.insert(address, key);
}

/// Why a signature is not `expected`'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// It recovers to no key.
    #[error(transparent)]
    Unrecoverable(#[from] RecoverError),
    /// It recovers to another address.
    #[error("signed by {signer}, not by {expected}")]
    OtherSigner {
        /// Who signed.
        signer: Address,
        /// Who should have.
        expected: Address,
    },
}

/// Whether `expected` signed `hash`, at the cost of at most one recovery: verified against `expected`'s
/// public key once the process knows it (by `r` and `s`: the recovery bit is then not checked), recovered
/// otherwise (and the key kept when it is `expected`'s). A signature that does not verify is recovered, so the
/// error names who did sign, and a high-`s` signature (which libsecp256k1 does not verify) is judged as
/// [`recover`] judges it.
pub fn check(hash: &B256, signature: &Signature, expected: Address) -> Result<(), CheckError> {
    let message = Message::from_digest(hash.0);
    if let Some(key) = known_key(&expected)
        && let Ok(standard) = secp256k1::ecdsa::Signature::from_compact(&compact(signature))
        && SECP256K1.verify_ecdsa(message, &standard, &key).is_ok()
    {
        return Ok(());
    }
    let key = recover_key(hash, signature)?;
    let signer = address_of_key(&key);
    if signer != expected {
        return Err(CheckError::OtherSigner { signer, expected });
    }
    remember(
        &mut KNOWN.write().unwrap_or_else(|p| p.into_inner()),
        KNOWN_KEYS,
        expected,
        key,
    );
    Ok(())
}

/// `signature` with the recovery bit that recovers `signer` over `hash` (what `ecrecover` on chain needs),
/// or `None` if neither bit does. [`check`] accepts a signature whatever its bit says.
pub fn with_recovery_bit_of(
    hash: &B256,
    signature: &Signature,
    signer: Address,
) -> Option<Signature> {
    [signature.v(), !signature.v()]
        .into_iter()
        .map(|v| Signature::new(signature.r(), signature.s(), v))
        .find(|candidate| recover(hash, candidate) == Ok(signer))
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
    address_of_key(&PublicKey::from_secret_key(SECP256K1, key))
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

    fn key_pair() -> (SecretKey, Address) {
        let local = PrivateKeySigner::random();
        let key = SecretKey::from_byte_array(local.credential().to_bytes().into()).unwrap();
        (key, local.address())
    }

    #[test]
    fn check_recovers_first_then_verifies_against_the_kept_key() {
        let (key, who) = key_pair();
        let (other_key, other) = key_pair();
        let hash = keccak256(b"first");
        let first = sign(&hash, &key);
        assert_eq!(known_key(&who), None);
        assert_eq!(check(&hash, &first, who), Ok(()));
        assert!(known_key(&who).is_some(), "the key is kept");
        // Later signatures verify against the kept key; anything else is still refused, naming its signer.
        let second = keccak256(b"second");
        assert_eq!(check(&second, &sign(&second, &key), who), Ok(()));
        assert_eq!(
            check(&second, &first, who),
            Err(CheckError::OtherSigner {
                signer: recover(&second, &first).unwrap(),
                expected: who
            })
        );
        assert_eq!(
            check(&second, &sign(&second, &other_key), who),
            Err(CheckError::OtherSigner {
                signer: other,
                expected: who
            })
        );
        assert_eq!(
            known_key(&other),
            None,
            "only the expected signer's key is kept"
        );
        // The high-s twin is judged as recovery judges it (libsecp256k1 does not verify high s).
        let high = Signature::new(
            first.r(),
            alloy_primitives::U256::from_be_bytes(secp256k1::constants::CURVE_ORDER) - first.s(),
            !first.v(),
        );
        assert!(high.normalize_s().is_some());
        assert_eq!(check(&hash, &high, who), Ok(()));
    }

    #[test]
    fn check_ignores_the_recovery_bit_of_a_known_key_and_the_bit_can_be_set_again() {
        let (key, who) = key_pair();
        let hash = keccak256(b"voucher");
        let good = sign(&hash, &key);
        let flipped = Signature::new(good.r(), good.s(), !good.v());
        // Unknown key: the flipped bit recovers someone else.
        assert!(matches!(
            check(&hash, &flipped, who),
            Err(CheckError::OtherSigner { .. })
        ));
        assert_eq!(check(&hash, &good, who), Ok(()));
        // Known key: (r, s) verify, whatever the bit.
        assert_eq!(check(&hash, &flipped, who), Ok(()));
        // What goes on chain gets the bit that recovers the signer.
        assert_eq!(with_recovery_bit_of(&hash, &flipped, who), Some(good));
        assert_eq!(with_recovery_bit_of(&hash, &good, who), Some(good));
        assert_eq!(with_recovery_bit_of(&keccak256(b"other"), &good, who), None);
    }

    #[test]
    fn the_kept_keys_start_over_when_full() {
        let (key, who) = key_pair();
        let public = PublicKey::from_secret_key(SECP256K1, &key);
        let mut known = HashMap::new();
        for i in 0..3u8 {
            remember(&mut known, 3, Address::repeat_byte(i), public);
        }
        // A key already kept is replaced in place; a new one when full starts over.
        remember(&mut known, 3, Address::repeat_byte(1), public);
        assert_eq!(known.len(), 3);
        remember(&mut known, 3, who, public);
        assert_eq!(known.len(), 1);
        assert_eq!(known.get(&who), Some(&public));
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
