//! The requester's authorization of one HTTP request: what stops anyone who reads a `TransactionCreated`
//! event from spending someone else's escrow. Pure signing and checking; no clock, no network.
//!
//! A consumer calling a paid route sends two headers:
//! - `X-AGIRAILS-TX-ID: 0x<txId>`
//! - `X-AGIRAILS-AUTHORIZATION: exp=<unix seconds>; sig=0x<65-byte signature>`
//!
//! The signature is the requester's EIP-712 signature, in the ACTP domain (name "AGIRAILS", version "1",
//! chain id, kernel), over
//!
//! ```text
//! RequestAuthorization(bytes32 txId,string method,string path,bytes32 bodyHash,uint256 expiresAt)
//! ```
//!
//! where `method` is the upper-case HTTP method, `path` the request target exactly as sent (path and query,
//! e.g. `/v1/generate?lang=en`), and `bodyHash` the keccak256 of the raw body bytes (of the empty string for no
//! body). The provider rebuilds the struct from the request it received, recovers the signer, and serves only
//! if it is the transaction's requester and `now <= expiresAt`. A signature therefore spends the escrow on
//! this one request to this one kernel's transaction and nothing else; the middleware's one-request-per-
//! transaction claim stops a replay of the same request.
//!
//! ```
//! use actp_core::authorization::{RequestAuthorization, AuthorizationHeader};
//! use actp_core::{Address, B256, eip712::actp_domain, proof::content_hash};
//! use alloy_signer_local::PrivateKeySigner;
//!
//! let requester = PrivateKeySigner::random();
//! let domain = actp_domain(31337, Address::repeat_byte(0xee));
//! let request = RequestAuthorization::new(B256::repeat_byte(1), "post", "/v1/generate", content_hash(b"{}"), 1_700_000_060);
//! let header = AuthorizationHeader::sign(&request, &domain, &requester).unwrap().to_string();
//!
//! // provider side
//! let parsed: AuthorizationHeader = header.parse().unwrap();
//! let rebuilt = RequestAuthorization::new(B256::repeat_byte(1), "POST", "/v1/generate", content_hash(b"{}"), parsed.expires_at);
//! assert_eq!(parsed.verify(&rebuilt, &domain, requester.address(), 1_700_000_000, 300), Ok(()));
//! ```

use std::{fmt, str::FromStr};

use alloy_primitives::{Address, B256, Signature, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_sol_types::{Eip712Domain, SolValue, sol};

/// Header carrying the transaction id.
pub const TX_ID_HEADER: &str = "x-agirails-tx-id";
/// Header carrying the requester's authorization.
pub const AUTHORIZATION_HEADER: &str = "x-agirails-authorization";

sol! {
    /// The requester's authorization of one HTTP request against one transaction (EIP-712, ACTP domain).
    #[derive(Debug, PartialEq, Eq)]
    struct RequestAuthorization {
        /// The transaction whose escrow pays for the request.
        bytes32 txId;
        /// Upper-case HTTP method.
        string method;
        /// Request target exactly as sent: path and query.
        string path;
        /// keccak256 of the raw request body.
        bytes32 bodyHash;
        /// Unix time after which the authorization is void.
        uint256 expiresAt;
    }
}

impl RequestAuthorization {
    /// The authorization of `method path` with a body hashing to `body_hash`, valid until `expires_at`.
    pub fn new(tx_id: B256, method: &str, path: &str, body_hash: B256, expires_at: u64) -> Self {
        RequestAuthorization {
            txId: tx_id,
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            bodyHash: body_hash,
            expiresAt: U256::from(expires_at),
        }
    }

    /// The hash naming the request itself (method, path, body), recorded in delivery proofs:
    /// `keccak256(abi.encode(keccak256(method), keccak256(path), bodyHash))`.
    pub fn request_hash(&self) -> B256 {
        request_hash(&self.method, &self.path, self.bodyHash)
    }
}

/// `keccak256(abi.encode(keccak256(METHOD), keccak256(path), bodyHash))`.
pub fn request_hash(method: &str, path: &str, body_hash: B256) -> B256 {
    let method = method.to_ascii_uppercase();
    keccak256(
        (
            keccak256(method.as_bytes()),
            keccak256(path.as_bytes()),
            body_hash,
        )
            .abi_encode(),
    )
}

/// Why an authorization header is refused. Messages say what the consumer should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    /// The header is not in the `exp=<unix>; sig=0x<hex>` form.
    #[error(
        "malformed X-AGIRAILS-AUTHORIZATION header ({0}): send `exp=<unix seconds>; sig=0x<signature>`"
    )]
    Malformed(String),
    /// The `X-AGIRAILS-VOUCHER` header of a session call is not in the `cum=…; exp=…; sig=0x…` form.
    #[error(
        "malformed X-AGIRAILS-VOUCHER header ({0}): send `cum=<base units>; exp=<unix seconds>; sig=0x<signature>`"
    )]
    MalformedVoucher(String),
    /// `expiresAt` is in the past.
    #[error("authorization expired at {expires_at} (now {now}): sign the request again")]
    Expired {
        /// When it expired.
        expires_at: u64,
        /// The current time.
        now: u64,
    },
    /// `expiresAt` is further ahead than the provider accepts.
    #[error(
        "authorization valid until {expires_at} is too long-lived: expire it at most {max_seconds}s ahead"
    )]
    TooLongLived {
        /// The expiry given.
        expires_at: u64,
        /// The longest validity the provider accepts.
        max_seconds: u64,
    },
    /// The signature does not recover.
    #[error("authorization signature is invalid: {0}")]
    BadSignature(String),
    /// Signed by someone other than the requester (or over another request).
    #[error(
        "authorization was signed by {signer}, not the transaction's requester {requester} (or it covers another method, path or body)"
    )]
    WrongSigner {
        /// Who the signature recovers to.
        signer: Address,
        /// The transaction's requester.
        requester: Address,
    },
    /// Signing failed.
    #[error("could not sign the authorization: {0}")]
    Signing(String),
}

/// The parsed `X-AGIRAILS-AUTHORIZATION` header: an expiry and the requester's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizationHeader {
    /// Unix time after which it is void (also part of the signed struct).
    pub expires_at: u64,
    /// The requester's signature over the `RequestAuthorization` signing hash.
    pub signature: Signature,
}

impl AuthorizationHeader {
    /// The header for `request` with the requester's signature over its EIP-712 signing hash, made by any
    /// signer (a hardware wallet, a KMS).
    pub fn from_signature(request: &RequestAuthorization, signature: Signature) -> Self {
        AuthorizationHeader {
            expires_at: request.expiresAt.saturating_to(),
            signature,
        }
    }

    /// Signs `request` as the requester with a local key.
    pub fn sign(
        request: &RequestAuthorization,
        domain: &Eip712Domain,
        requester: &impl SignerSync,
    ) -> Result<Self, AuthorizationError> {
        let signature = requester
            .sign_hash_sync(&crate::eip712::signing_hash(request, domain))
            .map_err(|e| AuthorizationError::Signing(e.to_string()))?;
        Ok(AuthorizationHeader {
            expires_at: request.expiresAt.saturating_to(),
            signature,
        })
    }

    /// Checks that this header authorizes `request` (rebuilt by the provider from what it received, with
    /// this header's expiry) for `requester` at `now`, expiring at most `max_validity` seconds ahead.
    pub fn verify(
        &self,
        request: &RequestAuthorization,
        domain: &Eip712Domain,
        requester: Address,
        now: u64,
        max_validity: u64,
    ) -> Result<(), AuthorizationError> {
        check_expiry(self.expires_at, now, max_validity)?;
        check_signer(
            &self.signature,
            &crate::eip712::signing_hash(request, domain),
            requester,
        )
    }
}

/// An authorization's expiry at `now`: not past, and at most `max_validity` seconds ahead.
pub(crate) fn check_expiry(
    expires_at: u64,
    now: u64,
    max_validity: u64,
) -> Result<(), AuthorizationError> {
    if now > expires_at {
        return Err(AuthorizationError::Expired { expires_at, now });
    }
    if expires_at > now.saturating_add(max_validity) {
        return Err(AuthorizationError::TooLongLived {
            expires_at,
            max_seconds: max_validity,
        });
    }
    Ok(())
}

/// `requester` signed `hash` with `signature` (at most one recovery: [`crate::ecdsa::check`]).
pub(crate) fn check_signer(
    signature: &Signature,
    hash: &B256,
    requester: Address,
) -> Result<(), AuthorizationError> {
    crate::ecdsa::check(hash, signature, requester).map_err(|e| match e {
        crate::ecdsa::CheckError::Unrecoverable(e) => {
            AuthorizationError::BadSignature(e.to_string())
        }
        crate::ecdsa::CheckError::OtherSigner { signer, .. } => {
            AuthorizationError::WrongSigner { signer, requester }
        }
    })
}

impl fmt::Display for AuthorizationHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exp={}; sig=0x{}",
            self.expires_at,
            alloy_primitives::hex::encode(self.signature.as_bytes())
        )
    }
}

impl FromStr for AuthorizationHeader {
    type Err = AuthorizationError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let mut expires_at = None;
        let mut signature = None;
        for part in value.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, val) = part
                .split_once('=')
                .ok_or_else(|| AuthorizationError::Malformed(format!("`{part}` has no `=`")))?;
            match key.trim() {
                "exp" => {
                    let exp = val.trim().parse::<u64>().map_err(|_| {
                        AuthorizationError::Malformed(format!("exp `{val}` is not unix seconds"))
                    })?;
                    expires_at = Some(exp);
                }
                "sig" => {
                    let bytes = alloy_primitives::hex::decode(val.trim())
                        .map_err(|_| AuthorizationError::Malformed("sig is not hex".into()))?;
                    let sig = Signature::try_from(bytes.as_slice()).map_err(|_| {
                        AuthorizationError::Malformed("sig is not a 65-byte signature".into())
                    })?;
                    signature = Some(sig);
                }
                other => {
                    return Err(AuthorizationError::Malformed(format!(
                        "unknown field `{other}`"
                    )));
                }
            }
        }
        match (expires_at, signature) {
            (Some(expires_at), Some(signature)) => Ok(AuthorizationHeader {
                expires_at,
                signature,
            }),
            (None, _) => Err(AuthorizationError::Malformed("missing exp".into())),
            (_, None) => Err(AuthorizationError::Malformed("missing sig".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::eip712::actp_domain;
    use alloy_signer_local::PrivateKeySigner;

    fn setup() -> (PrivateKeySigner, Eip712Domain, RequestAuthorization) {
        let signer = PrivateKeySigner::random();
        let domain = actp_domain(31337, Address::repeat_byte(0xee));
        let req = RequestAuthorization::new(
            B256::repeat_byte(1),
            "POST",
            "/v1/x?y=1",
            keccak256(b"body"),
            1_000,
        );
        (signer, domain, req)
    }

    #[test]
    fn binds_method_path_body_tx_and_domain() {
        let (signer, domain, req) = setup();
        let h = AuthorizationHeader::sign(&req, &domain, &signer).unwrap();
        let who = signer.address();
        assert_eq!(h.verify(&req, &domain, who, 900, 300), Ok(()));
        let other = |f: &dyn Fn(&mut RequestAuthorization)| {
            let mut r = req.clone();
            f(&mut r);
            h.verify(&r, &domain, who, 900, 300)
        };
        assert!(matches!(
            other(&|r| r.method = "GET".into()),
            Err(AuthorizationError::WrongSigner { .. })
        ));
        assert!(matches!(
            other(&|r| r.path = "/v1/x".into()),
            Err(AuthorizationError::WrongSigner { .. })
        ));
        assert!(matches!(
            other(&|r| r.bodyHash = B256::ZERO),
            Err(AuthorizationError::WrongSigner { .. })
        ));
        assert!(matches!(
            other(&|r| r.txId = B256::ZERO),
            Err(AuthorizationError::WrongSigner { .. })
        ));
        let other_kernel = actp_domain(31337, Address::repeat_byte(0xef));
        assert!(matches!(
            h.verify(&req, &other_kernel, who, 900, 300),
            Err(AuthorizationError::WrongSigner { .. })
        ));
        assert!(matches!(
            h.verify(&req, &domain, Address::repeat_byte(3), 900, 300),
            Err(AuthorizationError::WrongSigner { .. })
        ));
    }

    #[test]
    fn expiry_rules() {
        let (signer, domain, req) = setup();
        let h = AuthorizationHeader::sign(&req, &domain, &signer).unwrap();
        assert_eq!(
            h.verify(&req, &domain, signer.address(), 1_000, 300),
            Ok(())
        );
        assert_eq!(
            h.verify(&req, &domain, signer.address(), 1_001, 300),
            Err(AuthorizationError::Expired {
                expires_at: 1_000,
                now: 1_001
            })
        );
        assert_eq!(
            h.verify(&req, &domain, signer.address(), 100, 300),
            Err(AuthorizationError::TooLongLived {
                expires_at: 1_000,
                max_seconds: 300
            })
        );
    }

    #[test]
    fn header_round_trip_and_malformed() {
        let (signer, domain, req) = setup();
        let h = AuthorizationHeader::sign(&req, &domain, &signer).unwrap();
        assert_eq!(h.to_string().parse::<AuthorizationHeader>().unwrap(), h);
        for bad in [
            "",
            "exp=1",
            "sig=0x00",
            "exp=x; sig=0x00",
            "exp=1; sig=zz",
            "exp=1; sig=0x0011",
            "foo=1",
            "exp",
        ] {
            assert!(
                matches!(
                    bad.parse::<AuthorizationHeader>(),
                    Err(AuthorizationError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }
}
