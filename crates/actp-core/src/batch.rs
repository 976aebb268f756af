//! One signature for many hashes: the provider signs the root of a Merkle tree over the hashes of the
//! receipts and request bindings it answers at about the same moment, and each answer carries its hash's
//! path to that root. Under load this takes the provider's signing off the per-call cost (one signature per
//! batch instead of one per call), as TLS batch signing does for handshakes (draft-ietf-tls-batch-signing);
//! the consumer's check still costs one signature verification.
//!
//! - A leaf is an EIP-712 signing hash (a [`SessionReceipt`](crate::session::SessionReceipt)'s or an
//!   [`ActpDelivery`](crate::proof::ActpDelivery)'s), so leaves of different types never collide.
//! - A node is `keccak256` of its two children in ascending order (OpenZeppelin's `MerkleProof` convention);
//!   an odd node is carried up unchanged. A path is the sibling hashes from the leaf up.
//! - The provider signs [`HashBatch`]`(root)` in the ACTP domain. A hash signed alone has an empty path, and
//!   its signature is over the hash itself: the form the provider used before batches, which still checks.

use alloy_primitives::{Address, B256, Signature, keccak256};
use alloy_sol_types::{Eip712Domain, sol};

sol! {
    /// The root of a batch of hashes the provider signs at once (EIP-712, ACTP domain).
    #[derive(Debug, PartialEq, Eq)]
    struct HashBatch {
        /// The Merkle root over the batch's hashes.
        bytes32 root;
    }
}

/// The longest path a checker accepts: a batch of 2^32 hashes. A longer one is refused unread.
pub const MAX_PATH: usize = 32;

/// The parent of two nodes: `keccak256` of the pair in ascending order.
fn parent(a: B256, b: B256) -> B256 {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let mut pair = [0u8; 64];
    pair[..32].copy_from_slice(low.as_slice());
    pair[32..].copy_from_slice(high.as_slice());
    keccak256(pair)
}

/// The root `leaf` reaches through `path`.
pub fn root(leaf: B256, path: &[B256]) -> B256 {
    path.iter()
        .fold(leaf, |node, sibling| parent(node, *sibling))
}

/// What the provider signed for `leaf` reached through `path`: the leaf itself when the path is empty, the
/// [`HashBatch`] signing hash of the root otherwise.
pub fn signing_hash(leaf: B256, path: &[B256], domain: &Eip712Domain) -> B256 {
    if path.is_empty() {
        leaf
    } else {
        crate::eip712::signing_hash(
            &HashBatch {
                root: root(leaf, path),
            },
            domain,
        )
    }
}

/// Why a hash is not signed by whom it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The path is longer than any batch.
    #[error("the batch path has {0} hashes, more than the {MAX_PATH} of any batch")]
    PathTooLong(usize),
    /// The signature is not the expected signer's.
    #[error(transparent)]
    Signature(#[from] crate::ecdsa::CheckError),
}

/// Whether `expected` signed `leaf`, alone or in a batch reached through `path`: one signature check (see
/// [`crate::ecdsa::check`]).
pub fn check(
    leaf: B256,
    path: &[B256],
    signature: &Signature,
    expected: Address,
    domain: &Eip712Domain,
) -> Result<(), BatchError> {
    if path.len() > MAX_PATH {
        return Err(BatchError::PathTooLong(path.len()));
    }
    crate::ecdsa::check(&signing_hash(leaf, path, domain), signature, expected)?;
    Ok(())
}

/// Who signed `leaf`, alone or in a batch reached through `path`.
pub fn recover(
    leaf: B256,
    path: &[B256],
    signature: &Signature,
    domain: &Eip712Domain,
) -> Result<Address, BatchError> {
    if path.len() > MAX_PATH {
        return Err(BatchError::PathTooLong(path.len()));
    }
    crate::ecdsa::recover(&signing_hash(leaf, path, domain), signature)
        .map_err(|e| BatchError::Signature(e.into()))
}

/// The tree over `leaves`: what to sign (the leaf itself for a batch of one, as [`signing_hash`] says) and
/// each leaf's path, in the leaves' order. `None` for no leaves.
pub fn tree(leaves: &[B256], domain: &Eip712Domain) -> Option<(B256, Vec<Vec<B256>>)> {
    let mut level = leaves.to_vec();
    let mut paths = vec![Vec::new(); leaves.len()];
    // Where each leaf's node sits in the current level.
    let mut at: Vec<usize> = (0..leaves.len()).collect();
    while level.len() > 1 {
        for (leaf, index) in at.iter_mut().enumerate() {
            if let Some(sibling) = level.get(*index ^ 1) {
                paths[leaf].push(*sibling);
            }
            *index /= 2;
        }
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => parent(*a, *b),
                [odd] => *odd,
                _ => unreachable!("chunks of two"),
            })
            .collect();
    }
    // What is signed is what a checker rebuilds from any leaf and its path.
    let signed = signing_hash(*leaves.first()?, paths.first()?, domain);
    Some((signed, paths))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn domain() -> Eip712Domain {
        crate::eip712::actp_domain(31337, Address::repeat_byte(0xee))
    }

    fn leaves(n: usize) -> Vec<B256> {
        (0..n as u64).map(|i| keccak256(i.to_be_bytes())).collect()
    }

    #[test]
    fn every_leaf_reaches_what_was_signed_through_its_path() {
        let domain = domain();
        for n in 1..=33 {
            let leaves = leaves(n);
            let (signed, paths) = tree(&leaves, &domain).unwrap();
            assert_eq!(paths.len(), n);
            for (leaf, path) in leaves.iter().zip(&paths) {
                assert_eq!(signing_hash(*leaf, path, &domain), signed, "{n} leaves");
                // A path is at most the tree's height.
                assert!(path.len() <= (usize::BITS - (n - 1).leading_zeros()) as usize);
            }
        }
    }

    #[test]
    fn a_leaf_alone_is_signed_as_itself() {
        let leaf = keccak256(b"one");
        let (signed, paths) = tree(&[leaf], &domain()).unwrap();
        assert_eq!(signed, leaf);
        assert_eq!(paths, vec![Vec::<B256>::new()]);
        assert_eq!(tree(&[], &domain()), None);
    }

    #[test]
    fn a_path_proves_only_its_own_leaf() {
        let domain = domain();
        let leaves = leaves(5);
        let (signed, paths) = tree(&leaves, &domain).unwrap();
        // Another leaf, or a path with a sibling changed, or cut short, reaches something else.
        assert_ne!(signing_hash(leaves[1], &paths[0], &domain), signed);
        let mut altered = paths[0].clone();
        altered[1] = keccak256(b"other");
        assert_ne!(signing_hash(leaves[0], &altered, &domain), signed);
        assert_ne!(signing_hash(leaves[0], &paths[0][..1], &domain), signed);
        // The root itself is not a leaf of its batch: signing it alone differs from signing the batch.
        assert_ne!(root(leaves[0], &paths[0]), signed);
    }

    #[test]
    fn one_signature_checks_for_every_leaf_and_only_for_its_signer() {
        let domain = domain();
        let key = crate::ecdsa::SecretKey::from_byte_array([9; 32]).unwrap();
        let signer = crate::ecdsa::address_of(&key);
        let leaves = leaves(7);
        let (signed, paths) = tree(&leaves, &domain).unwrap();
        let signature = crate::ecdsa::sign(&signed, &key);
        for (leaf, path) in leaves.iter().zip(&paths) {
            check(*leaf, path, &signature, signer, &domain).unwrap();
            assert_eq!(recover(*leaf, path, &signature, &domain).unwrap(), signer);
        }
        let other = Address::repeat_byte(1);
        assert!(matches!(
            check(leaves[3], &paths[3], &signature, other, &domain),
            Err(BatchError::Signature(
                crate::ecdsa::CheckError::OtherSigner { .. }
            ))
        ));
        let long = vec![B256::ZERO; MAX_PATH + 1];
        assert_eq!(
            check(leaves[0], &long, &signature, signer, &domain),
            Err(BatchError::PathTooLong(MAX_PATH + 1))
        );
    }
}
