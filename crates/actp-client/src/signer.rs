//! Signers: a raw private key or an encrypted Ethereum keystore (JSON v3) with a password. The key never
//! appears in `Debug`, `Display`, logs or errors: only the address does.

use std::{fmt, path::Path};

use alloy::signers::local::PrivateKeySigner;

use crate::{ClientError, Result};

/// A local signing key. `Debug` shows the address only.
///
/// ```
/// use actp_client::Signer;
/// let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"; // anvil dev key 1
/// let signer = Signer::from_private_key(key).unwrap();
/// let shown = format!("{signer:?}");
/// assert!(shown.contains("0x70997970") && !shown.contains("59c6995e"));
/// // or: Signer::from_keystore(Path::new("key.json"), &password)
/// ```
#[derive(Clone)]
pub struct Signer(PrivateKeySigner);

impl Signer {
    /// From a hex private key (with or without `0x`). The error never echoes the input.
    pub fn from_private_key(hex_key: &str) -> Result<Self> {
        hex_key
            .trim()
            .parse::<PrivateKeySigner>()
            .map(Signer)
            .map_err(|_| ClientError::Signer("not a valid 32-byte hex private key".into()))
    }

    /// From an encrypted keystore file and its password.
    pub fn from_keystore(path: &Path, password: &str) -> Result<Self> {
        PrivateKeySigner::decrypt_keystore(path, password)
            .map(Signer)
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

    /// Wraps an alloy signer.
    pub fn from_alloy(signer: PrivateKeySigner) -> Self {
        Signer(signer)
    }

    /// A fresh random key (tests, throwaway accounts).
    pub fn random() -> Self {
        Signer(PrivateKeySigner::random())
    }

    /// The address.
    pub fn address(&self) -> actp_core::Address {
        self.0.address()
    }

    /// The underlying alloy signer (for EIP-712 signing in `actp-core`).
    pub fn inner(&self) -> &PrivateKeySigner {
        &self.0
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address())
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
}
