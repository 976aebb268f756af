//! The requester's voucher: one signature per call that authorizes the call and raises what the provider may
//! take from the session.

use std::{fmt, str::FromStr};

use alloy_primitives::{Address, B256, Signature, U256};
use alloy_signer::SignerSync;
use alloy_sol_types::{Eip712Domain, sol};

use crate::authorization::{AuthorizationError, check_expiry, check_signer, request_hash};

/// Header carrying the voucher of a call paid from a session.
pub const VOUCHER_HEADER: &str = "x-agirails-voucher";

sol! {
    /// The requester's authorization of one call paid from a session, and of the provider taking up to
    /// `cumulative` in total from it (EIP-712, ACTP domain). The kernel checks the same struct at close.
    #[derive(Debug, PartialEq, Eq)]
    struct SessionVoucher {
        /// The session.
        bytes32 txId;
        /// The most the provider may take from the session in total, in token base units.
        uint256 cumulative;
        /// The call: `keccak256(abi.encode(keccak256(METHOD), keccak256(path), bodyHash))`.
        bytes32 requestHash;
        /// Unix time after which the call may no longer be served (the voucher still counts at close).
        uint256 expiresAt;
    }
}

impl SessionVoucher {
    /// The voucher for a call named by `request_hash`.
    pub fn new(tx_id: B256, cumulative: U256, request_hash: B256, expires_at: u64) -> Self {
        SessionVoucher {
            txId: tx_id,
            cumulative,
            requestHash: request_hash,
            expiresAt: U256::from(expires_at),
        }
    }

    /// The voucher for the call `method path` with a body hashing to `body_hash`.
    pub fn for_request(
        tx_id: B256,
        cumulative: U256,
        method: &str,
        path: &str,
        body_hash: B256,
        expires_at: u64,
    ) -> Self {
        Self::new(
            tx_id,
            cumulative,
            request_hash(method, path, body_hash),
            expires_at,
        )
    }

    /// The EIP-712 signing hash the requester signs and the kernel recomputes.
    pub fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        crate::eip712::signing_hash(self, domain)
    }
}

/// The parsed `X-AGIRAILS-VOUCHER` header: the cumulative amount, the expiry, and the requester's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoucherHeader {
    /// The most the provider may take from the session in total, in token base units.
    pub cumulative: U256,
    /// Unix time after which the call may no longer be served.
    pub expires_at: u64,
    /// The requester's signature over the `SessionVoucher` signing hash.
    pub signature: Signature,
}

impl VoucherHeader {
    /// The header for `voucher` with a signature made by any signer (a hardware wallet, a KMS). The signature
    /// must be low-s: the kernel refuses high-s signatures.
    pub fn from_signature(voucher: &SessionVoucher, signature: Signature) -> Self {
        VoucherHeader {
            cumulative: voucher.cumulative,
            expires_at: voucher.expiresAt.saturating_to(),
            signature: signature.normalized_s(),
        }
    }

    /// A header from stored parts: the cumulative amount, the expiry and the 65 signature bytes.
    pub fn from_parts(
        cumulative: U256,
        expires_at: u64,
        signature: &[u8],
    ) -> Result<Self, AuthorizationError> {
        let signature = Signature::try_from(signature).map_err(|_| {
            AuthorizationError::MalformedVoucher("sig is not a 65-byte signature".into())
        })?;
        Ok(VoucherHeader {
            cumulative,
            expires_at,
            signature,
        })
    }

    /// Signs `voucher` as the requester with a local key.
    pub fn sign(
        voucher: &SessionVoucher,
        domain: &Eip712Domain,
        requester: &impl SignerSync,
    ) -> Result<Self, AuthorizationError> {
        let signature = requester
            .sign_hash_sync(&voucher.signing_hash(domain))
            .map_err(|e| AuthorizationError::Signing(e.to_string()))?;
        Ok(Self::from_signature(voucher, signature))
    }

    /// The voucher this header signs for the call the provider received: `tx_id`, `method path`, `body_hash`.
    pub fn voucher(
        &self,
        tx_id: B256,
        method: &str,
        path: &str,
        body_hash: B256,
    ) -> SessionVoucher {
        SessionVoucher::for_request(
            tx_id,
            self.cumulative,
            method,
            path,
            body_hash,
            self.expires_at,
        )
    }

    /// Checks that this header's signature is `requester`'s over `voucher` (rebuilt from the call received) at
    /// `now`, expiring at most `max_validity` seconds ahead. At most one signature recovery: once this thread
    /// knows `requester`'s key, the signature is verified against it by `r` and `s`, so its recovery bit is
    /// not checked; [`VoucherHeader::for_chain`] sets it before the voucher goes on chain.
    pub fn verify(
        &self,
        voucher: &SessionVoucher,
        domain: &Eip712Domain,
        requester: Address,
        now: u64,
        max_validity: u64,
    ) -> Result<(), AuthorizationError> {
        check_expiry(self.expires_at, now, max_validity)?;
        if self.signature.normalize_s().is_some() {
            return Err(AuthorizationError::BadSignature(
                "high-s signature: send the low-s form (the kernel refuses high s)".into(),
            ));
        }
        check_signer(&self.signature, &voucher.signing_hash(domain), requester)
    }

    /// This header with the recovery bit that makes the kernel's `ecrecover` find `requester` over `voucher`
    /// in `domain`; `None` if no bit does (the signature is not `requester`'s).
    pub fn for_chain(
        self,
        voucher: &SessionVoucher,
        domain: &Eip712Domain,
        requester: Address,
    ) -> Option<Self> {
        let signature = crate::ecdsa::with_recovery_bit_of(
            &voucher.signing_hash(domain),
            &self.signature,
            requester,
        )?;
        Some(VoucherHeader { signature, ..self })
    }
}

impl fmt::Display for VoucherHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cum={}; exp={}; sig=0x{}",
            self.cumulative,
            self.expires_at,
            alloy_primitives::hex::encode(self.signature.as_bytes())
        )
    }
}

impl FromStr for VoucherHeader {
    type Err = AuthorizationError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let malformed = |why: String| AuthorizationError::MalformedVoucher(why);
        let (mut cumulative, mut expires_at, mut signature) = (None, None, None);
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, val) = part
                .split_once('=')
                .ok_or_else(|| malformed(format!("`{part}` has no `=`")))?;
            let val = val.trim();
            match key.trim() {
                "cum" => {
                    // Decimal digits only: no sign, no hex, no exponent.
                    if val.is_empty() || !val.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(malformed(format!("cum `{val}` is not base units")));
                    }
                    let cum = U256::from_str_radix(val, 10)
                        .map_err(|_| malformed(format!("cum `{val}` is too large")))?;
                    cumulative = Some(cum);
                }
                "exp" => {
                    let exp = val
                        .parse::<u64>()
                        .map_err(|_| malformed(format!("exp `{val}` is not unix seconds")))?;
                    expires_at = Some(exp);
                }
                "sig" => {
                    let bytes = alloy_primitives::hex::decode(val)
                        .map_err(|_| malformed("sig is not hex".into()))?;
                    let sig = Signature::try_from(bytes.as_slice())
                        .map_err(|_| malformed("sig is not a 65-byte signature".into()))?;
                    signature = Some(sig);
                }
                other => return Err(malformed(format!("unknown field `{other}`"))),
            }
        }
        Ok(VoucherHeader {
            cumulative: cumulative.ok_or_else(|| malformed("missing cum".into()))?,
            expires_at: expires_at.ok_or_else(|| malformed("missing exp".into()))?,
            signature: signature.ok_or_else(|| malformed("missing sig".into()))?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use alloy_sol_types::SolStruct;

    use super::*;
    use crate::eip712::actp_domain;
    use alloy_primitives::keccak256;
    use alloy_signer_local::PrivateKeySigner;

    fn setup() -> (PrivateKeySigner, Eip712Domain, SessionVoucher) {
        let signer = PrivateKeySigner::random();
        let domain = actp_domain(31337, Address::repeat_byte(0xee));
        let voucher = SessionVoucher::for_request(
            B256::repeat_byte(1),
            U256::from(5_000),
            "post",
            "/v1/chat?x=1",
            keccak256(b"body"),
            1_000,
        );
        (signer, domain, voucher)
    }

    /// The type hash the kernel uses (KernelSessions.VOUCHER_TYPEHASH).
    #[test]
    fn the_type_is_the_kernels() {
        assert_eq!(
            SessionVoucher::eip712_type_hash(&setup().2),
            keccak256(
                "SessionVoucher(bytes32 txId,uint256 cumulative,bytes32 requestHash,uint256 expiresAt)"
            )
        );
    }

    /// The digest, spelled out as the kernel computes it (KernelSessions._voucherDigest): the struct hash of
    /// the four words under the type hash, then `0x1901 ‖ domain separator ‖ struct hash`.
    #[test]
    fn the_digest_is_the_kernels() {
        let domain = actp_domain(31337, Address::repeat_byte(0xee));
        let voucher = SessionVoucher::new(
            B256::repeat_byte(1),
            U256::from(5_000),
            B256::repeat_byte(2),
            1_000,
        );
        let type_hash = keccak256(
            "SessionVoucher(bytes32 txId,uint256 cumulative,bytes32 requestHash,uint256 expiresAt)",
        );
        let mut encoded = type_hash.to_vec();
        encoded.extend_from_slice(B256::repeat_byte(1).as_slice());
        encoded.extend_from_slice(&U256::from(5_000).to_be_bytes::<32>());
        encoded.extend_from_slice(B256::repeat_byte(2).as_slice());
        encoded.extend_from_slice(&U256::from(1_000).to_be_bytes::<32>());
        let struct_hash = keccak256(&encoded);
        let mut digest = vec![0x19, 0x01];
        digest.extend_from_slice(domain.separator().as_slice());
        digest.extend_from_slice(struct_hash.as_slice());
        assert_eq!(voucher.signing_hash(&domain), keccak256(&digest));
    }

    #[test]
    fn binds_every_field_and_the_domain() {
        let (signer, domain, voucher) = setup();
        let h = VoucherHeader::sign(&voucher, &domain, &signer).unwrap();
        let who = signer.address();
        let rebuilt = h.voucher(
            B256::repeat_byte(1),
            "POST",
            "/v1/chat?x=1",
            keccak256(b"body"),
        );
        assert_eq!(rebuilt, voucher);
        assert_eq!(h.verify(&rebuilt, &domain, who, 900, 300), Ok(()));
        let wrong = |v: SessionVoucher| {
            matches!(
                h.verify(&v, &domain, who, 900, 300),
                Err(AuthorizationError::WrongSigner { .. })
            )
        };
        assert!(wrong(h.voucher(
            B256::ZERO,
            "POST",
            "/v1/chat?x=1",
            keccak256(b"body")
        )));
        assert!(wrong(h.voucher(
            B256::repeat_byte(1),
            "GET",
            "/v1/chat?x=1",
            keccak256(b"body")
        )));
        assert!(wrong(h.voucher(
            B256::repeat_byte(1),
            "POST",
            "/v1/chat",
            keccak256(b"body")
        )));
        assert!(wrong(h.voucher(
            B256::repeat_byte(1),
            "POST",
            "/v1/chat?x=1",
            B256::ZERO
        )));
        let mut more = voucher.clone();
        more.cumulative = U256::from(5_001);
        assert!(wrong(more));
        assert!(matches!(
            h.verify(
                &voucher,
                &actp_domain(31337, Address::repeat_byte(0xef)),
                who,
                900,
                300
            ),
            Err(AuthorizationError::WrongSigner { .. })
        ));
    }

    #[test]
    fn the_recovery_bit_is_set_for_the_chain() {
        let (signer, domain, voucher) = setup();
        let h = VoucherHeader::sign(&voucher, &domain, &signer).unwrap();
        let who = signer.address();
        let flipped = VoucherHeader {
            signature: Signature::new(h.signature.r(), h.signature.s(), !h.signature.v()),
            ..h
        };
        // Once the requester's key is known, a voucher is checked by `r` and `s`: the bit may be the other one.
        assert_eq!(h.verify(&voucher, &domain, who, 900, 300), Ok(()));
        assert_eq!(flipped.verify(&voucher, &domain, who, 900, 300), Ok(()));
        // The chain gets the bit that recovers the requester, whichever was sent.
        assert_eq!(flipped.for_chain(&voucher, &domain, who), Some(h));
        assert_eq!(h.for_chain(&voucher, &domain, who), Some(h));
        assert_eq!(
            h.for_chain(&voucher, &domain, Address::repeat_byte(3)),
            None
        );
    }

    #[test]
    fn expiry_and_high_s() {
        let (signer, domain, voucher) = setup();
        let h = VoucherHeader::sign(&voucher, &domain, &signer).unwrap();
        let who = signer.address();
        assert_eq!(
            h.verify(&voucher, &domain, who, 1_001, 300),
            Err(AuthorizationError::Expired {
                expires_at: 1_000,
                now: 1_001
            })
        );
        assert_eq!(
            h.verify(&voucher, &domain, who, 100, 300),
            Err(AuthorizationError::TooLongLived {
                expires_at: 1_000,
                max_seconds: 300
            })
        );
        // The high-s twin of a valid signature recovers to the same signer; the kernel would refuse it.
        let s = h.signature.s();
        let n = U256::from_be_bytes(alloy_primitives::hex!(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141"
        ));
        let high = Signature::new(h.signature.r(), n - s, !h.signature.v());
        let twin = VoucherHeader {
            signature: high,
            ..h
        };
        assert!(matches!(
            twin.verify(&voucher, &domain, who, 900, 300),
            Err(AuthorizationError::BadSignature(_))
        ));
        // from_signature normalizes what a remote signer returns
        assert_eq!(VoucherHeader::from_signature(&voucher, high), h);
    }

    #[test]
    fn header_round_trip_and_malformed() {
        let (signer, domain, voucher) = setup();
        let h = VoucherHeader::sign(&voucher, &domain, &signer).unwrap();
        assert_eq!(h.to_string().parse::<VoucherHeader>().unwrap(), h);
        assert_eq!(
            VoucherHeader::from_parts(h.cumulative, h.expires_at, &h.signature.as_bytes()).unwrap(),
            h
        );
        assert!(VoucherHeader::from_parts(h.cumulative, h.expires_at, &[0; 64]).is_err());
        let sig = alloy_primitives::hex::encode(h.signature.as_bytes());
        for bad in [
            String::new(),
            "cum=1; exp=1".into(),
            format!("exp=1; sig=0x{sig}"),
            format!("cum=1; sig=0x{sig}"),
            format!("cum=-1; exp=1; sig=0x{sig}"),
            format!("cum=0x10; exp=1; sig=0x{sig}"),
            format!("cum=1e3; exp=1; sig=0x{sig}"),
            format!("cum={}0; exp=1; sig=0x{sig}", U256::MAX),
            format!("cum=1; exp=x; sig=0x{sig}"),
            "cum=1; exp=1; sig=0x0011".into(),
            "cum=1; exp=1; sig=zz".into(),
            "cum=1; exp=1; sig=0x00; foo=1".into(),
            "cum".into(),
        ] {
            let err = bad.parse::<VoucherHeader>().unwrap_err();
            assert!(
                matches!(err, AuthorizationError::MalformedVoucher(_)),
                "{bad}"
            );
            assert!(err.to_string().contains("X-AGIRAILS-VOUCHER"), "{err}");
        }
    }
}
