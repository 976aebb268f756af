//! Signers: any alloy signer that signs transactions and hashes (a local key, an encrypted keystore, a
//! hardware wallet, a KMS or a remote signer), behind one cheap handle. The key never appears in `Debug`,
//! `Display`, logs or errors: only the address does.

use std::{fmt, path::Path, sync::Arc};

use actp_core::{Address, B256};
use alloy::{
    network::{FullSigner, TxSigner},
    primitives::Signature,
    signers::local::{LocalSigner, PrivateKeySigner},
    sol_types::{Eip712Domain, SolStruct},
};

use k256::ecdsa::signature::hazmat::PrehashSigner;

use crate::{ClientError, Result};

/// What a signer must be able to do here: sign transactions ([`TxSigner`]) and 32-byte hashes
/// ([`alloy::signers::Signer`], for EIP-712 request authorizations and delivery proofs). Every alloy signer
/// does (`PrivateKeySigner`, `LedgerSigner`, `AwsSigner`, `GcpSigner`, ...), and so can your own.
pub type DynSigner = dyn FullSigner<Signature> + Send + Sync + 'static;

/// A signing account. Cheap to clone; `Debug` and `Display` show the address only.
///
/// ```
/// use actp_client::Signer;
/// let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"; // anvil dev key 1
/// let signer = Signer::from_private_key(key).unwrap();
/// let shown = format!("{signer:?}");
/// assert!(shown.contains("0x70997970") && !shown.contains("59c6995e"));
/// // or: Signer::from_keystore(Path::new("key.json"), &password)
/// // or any alloy signer: Signer::new(aws_kms_signer)
/// ```
#[derive(Clone)]
pub struct Signer {
    inner: Arc<DynSigner>,
    address: Address,
}

/// A local key's credential for alloy's [`LocalSigner`]: it signs through libsecp256k1, the same RFC 6979
/// signatures as k256 does, several times faster here (the paywall signs a receipt or a proof per request, the
/// outbox a transaction per delivery). The key is erased when dropped.
struct SecpKey(actp_core::ecdsa::SecretKey);

impl Drop for SecpKey {
    fn drop(&mut self) {
        self.0.non_secure_erase();
    }
}

impl PrehashSigner<(k256::ecdsa::Signature, k256::ecdsa::RecoveryId)> for SecpKey {
    fn sign_prehash(
        &self,
        prehash: &[u8],
    ) -> std::result::Result<(k256::ecdsa::Signature, k256::ecdsa::RecoveryId), k256::ecdsa::Error>
    {
        let hash = B256::try_from(prehash).map_err(|_| k256::ecdsa::Error::new())?;
        let signature = actp_core::ecdsa::sign(&hash, &self.0);
        let ecdsa = k256::ecdsa::Signature::from_scalars(
            signature.r().to_be_bytes::<32>(),
            signature.s().to_be_bytes::<32>(),
        )?;
        let id = k256::ecdsa::RecoveryId::from_byte(u8::from(signature.v()))
            .ok_or_else(k256::ecdsa::Error::new)?;
        Ok((ecdsa, id))
    }
}

impl Signer {
    /// Any alloy signer that signs both transactions and hashes: a hardware wallet, a KMS key, a remote
    /// signer, or a local key.
    pub fn new<S>(signer: S) -> Self
    where
        S: FullSigner<Signature> + Send + Sync + 'static,
    {
        Self::from_arc(Arc::new(signer))
    }

    /// A signer already behind an `Arc`.
    pub fn from_arc(inner: Arc<DynSigner>) -> Self {
        let address = TxSigner::address(&inner);
        Signer { inner, address }
    }

    /// A local key. It signs (hashes and transactions) through libsecp256k1.
    pub fn local(key: PrivateKeySigner) -> Self {
        match actp_core::ecdsa::SecretKey::from_byte_array(key.credential().to_bytes().into()) {
            Ok(secret) if actp_core::ecdsa::address_of(&secret) == key.address() => Signer::new(
                LocalSigner::new_with_credential(SecpKey(secret), key.address(), key.chain_id()),
            ),
            _ => Signer::new(key),
        }
    }

    /// From a hex private key (with or without `0x`). The error never echoes the input.
    pub fn from_private_key(hex_key: &str) -> Result<Self> {
        hex_key
            .trim()
            .parse::<PrivateKeySigner>()
            .map(Signer::local)
            .map_err(|_| ClientError::Signer("not a valid 32-byte hex private key".into()))
    }

    /// From an encrypted keystore file and its password.
    pub fn from_keystore(path: &Path, password: &str) -> Result<Self> {
        PrivateKeySigner::decrypt_keystore(path, password)
            .map(Signer::local)
            .map_err(|e| {
                let why = e.to_string();
                let hint = if why.to_ascii_lowercase().contains("mac") {
                    "wrong password"
                } else {
                    "unreadable keystore"
                };
                ClientError::Signer(format!("cannot open keystore {}: {hint}", path.display()))
            })
    }

    /// A fresh random local key (tests, throwaway accounts).
    pub fn random() -> Self {
        Signer::local(PrivateKeySigner::random())
    }

    /// The address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a 32-byte hash. The signature is normalized to low `s` (EIP-2), which verifiers such as the
    /// ACTP SDKs require, whatever the backend returned.
    pub async fn sign_hash(&self, hash: &B256) -> Result<Signature> {
        alloy::signers::Signer::sign_hash(&*self.inner, hash)
            .await
            .map(Signature::normalized_s)
            .map_err(|e| ClientError::Signer(format!("the signer refused to sign: {e}")))
    }

    /// Signs an EIP-712 struct in `domain` (its signing hash).
    pub async fn sign_typed<T: SolStruct + 'static>(
        &self,
        value: &T,
        domain: &Eip712Domain,
    ) -> Result<Signature> {
        self.sign_hash(&actp_core::eip712::signing_hash(value, domain))
            .await
    }

    /// The transaction signer, for alloy's wallet.
    pub(crate) fn tx_signer(&self) -> Arc<DynSigner> {
        Arc::clone(&self.inner)
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    #[test]
    fn debug_and_errors_never_show_the_key() {
        let s = Signer::from_private_key(KEY).unwrap();
        let shown = format!("{s:?} {s}");
        assert!(!shown.contains(&KEY[2..12]), "{shown}");
        assert!(shown.contains("0x70997970"), "{shown}");
        let err = Signer::from_private_key("0x1234deadbeef")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("deadbeef"), "{err}");
    }

    #[test]
    fn keystore_round_trip_and_wrong_password() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand08::thread_rng();
        let (signer, name) = PrivateKeySigner::encrypt_keystore(
            dir.path(),
            &mut rng,
            [7u8; 32],
            "correct horse",
            None,
        )
        .unwrap();
        let path = dir.path().join(name);
        let loaded = Signer::from_keystore(&path, "correct horse").unwrap();
        assert_eq!(loaded.address(), signer.address());
        let err = Signer::from_keystore(&path, "wrong")
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrong password"), "{err}");
        assert!(!err.contains("correct horse"));
    }

    /// A backend that answers with the high-`s` twin of a valid signature (as some KMS do).
    struct HighS(PrivateKeySigner);

    #[async_trait::async_trait]
    impl alloy::signers::Signer for HighS {
        async fn sign_hash(&self, hash: &B256) -> alloy::signers::Result<Signature> {
            let low = alloy::signers::SignerSync::sign_hash_sync(&self.0, hash)?;
            let n = alloy::primitives::U256::from_be_slice(&[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c,
                0xd0, 0x36, 0x41, 0x41,
            ]);
            Ok(Signature::new(low.r(), n - low.s(), !low.v()))
        }
        fn address(&self) -> Address {
            self.0.address()
        }
        fn chain_id(&self) -> Option<u64> {
            None
        }
        fn set_chain_id(&mut self, _: Option<u64>) {}
    }

    #[async_trait::async_trait]
    impl TxSigner<Signature> for HighS {
        fn address(&self) -> Address {
            self.0.address()
        }
        async fn sign_transaction(
            &self,
            tx: &mut dyn alloy::consensus::SignableTransaction<Signature>,
        ) -> alloy::signers::Result<Signature> {
            TxSigner::sign_transaction(&self.0, tx).await
        }
    }

    #[tokio::test]
    async fn signatures_come_out_low_s_and_recover_to_the_signer() {
        let backend = PrivateKeySigner::random();
        let who = backend.address();
        let signer = Signer::new(HighS(backend));
        let hash = B256::repeat_byte(0x42);
        let raw = alloy::signers::Signer::sign_hash(&*signer.inner, &hash)
            .await
            .unwrap();
        assert!(raw.normalize_s().is_some(), "the backend answers high s");
        let signature = signer.sign_hash(&hash).await.unwrap();
        assert!(signature.normalize_s().is_none(), "normalized to low s");
        assert_eq!(signature.recover_address_from_prehash(&hash).unwrap(), who);
    }

    #[tokio::test]
    async fn a_local_key_signs_hashes_and_transactions_exactly_as_alloy_does() {
        use alloy::{consensus::TxEip1559, network::TxSignerSync, primitives::TxKind};
        let key = PrivateKeySigner::random();
        let fast = Signer::local(key.clone());
        let plain = Signer::new(key.clone());
        assert_eq!(fast.address(), plain.address());
        for i in 0..8u8 {
            let hash = B256::repeat_byte(i);
            assert_eq!(
                fast.sign_hash(&hash).await.unwrap(),
                plain.sign_hash(&hash).await.unwrap()
            );
        }
        let tx = || TxEip1559 {
            chain_id: 31_337,
            nonce: 7,
            gas_limit: 100_000,
            max_fee_per_gas: 2_000_000_000,
            to: TxKind::Call(Address::repeat_byte(1)),
            ..TxEip1559::default()
        };
        let ours = TxSigner::sign_transaction(&*fast.tx_signer(), &mut tx())
            .await
            .unwrap();
        let theirs = key.sign_transaction_sync(&mut tx()).unwrap();
        assert_eq!(ours, theirs);
    }
}
