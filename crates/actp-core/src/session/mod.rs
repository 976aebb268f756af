//! Sessions: one escrow pays one provider for many calls. Pure signing and checking; no clock, no network.
//!
//! A session is an ACTP transaction the requester opens funded (`openSession` on the kernel) with a deposit
//! and a grace period. Each call then carries, beside `X-AGIRAILS-TX-ID: 0x<session id>`, one signature:
//!
//! - [`VoucherHeader`] in `X-AGIRAILS-VOUCHER: cum=<base units>; exp=<unix seconds>; sig=0x<65 bytes>`: the
//!   requester's EIP-712 signature, in the ACTP domain, over
//!   `SessionVoucher(bytes32 txId,uint256 cumulative,bytes32 requestHash,uint256 expiresAt)`. It authorizes this
//!   one HTTP request (`requestHash` binds method, path and body, as
//!   [`crate::authorization::request_hash`] computes it; `expiresAt` bounds when it may be served) and lets the
//!   provider take up to `cumulative` in total from the session: what was charged so far plus this call's
//!   maximum. The provider verifies it with one signature recovery, and the kernel checks the same signature
//!   when the provider closes the session with it.
//! - [`SignedReceipt`] comes back in `X-AGIRAILS-RECEIPT`: the provider's signature over what this call cost, the
//!   total charged, what remains, and the proof fields. Receipts are chained (each names the hash of the one
//!   before), so the last receipt's hash, which the provider records on chain when it closes the session,
//!   commits to every receipt in order; [`ReceiptChain`] checks them as they arrive. Under load the provider
//!   signs the receipts of calls answered at the same moment at once: the receipt then carries `batch`, its
//!   hash's path to the root the provider signed (see [`crate::batch`]); the check costs the same.
//!
//! ```
//! use actp_core::session::{ReceiptChain, SessionReceipt, SessionVoucher, SignedReceipt, VoucherHeader};
//! use actp_core::{Address, B256, U256, eip712::actp_domain, proof::content_hash};
//! use alloy_signer_local::PrivateKeySigner;
//!
//! let (requester, provider) = (PrivateKeySigner::random(), PrivateKeySigner::random());
//! let domain = actp_domain(31337, Address::repeat_byte(0xee));
//! let session = B256::repeat_byte(1);
//!
//! // consumer: authorize one call, raising the cumulative to what was charged so far plus this call's maximum
//! let voucher = SessionVoucher::for_request(session, U256::from(5_000), "POST", "/v1/chat", content_hash(b"{}"), 1_700_000_060);
//! let header = VoucherHeader::sign(&voucher, &domain, &requester).unwrap().to_string();
//!
//! // provider: rebuild the voucher from the request, recover once, compare with the session's requester
//! let parsed: VoucherHeader = header.parse().unwrap();
//! let rebuilt = parsed.voucher(session, "POST", "/v1/chat", content_hash(b"{}"));
//! parsed.verify(&rebuilt, &domain, requester.address(), 1_700_000_000, 300).unwrap();
//!
//! // provider: charge 1,200 of the 5,000 authorized and sign the first receipt
//! let receipt = SessionReceipt::first(session, U256::from(1_200), U256::from(98_800), rebuilt.requestHash, content_hash(b"answer"));
//! let signed = SignedReceipt::sign(receipt, &domain, &provider).unwrap();
//!
//! // consumer: check it against what it authorized and what it received
//! let mut chain = ReceiptChain::new(session, provider.address(), domain.clone());
//! chain.accept(&signed, U256::from(5_000), rebuilt.requestHash, content_hash(b"answer")).unwrap();
//! assert_eq!(chain.charged(), U256::from(1_200));
//! assert_eq!(chain.head(), signed.hash(&domain));
//! ```

mod receipt;
mod voucher;

pub use receipt::{
    NOT_CHARGED_HEADER, RECEIPT_HEADER, ReceiptChain, ReceiptError, SessionReceipt, SignedReceipt,
};
pub use voucher::{SessionVoucher, VOUCHER_HEADER, VoucherHeader};

/// Shortest grace period the kernel accepts, in seconds: the time a provider has to close after the requester
/// asks to end.
pub const MIN_GRACE: u64 = 600;
/// Longest grace period the kernel accepts, in seconds.
pub const MAX_GRACE: u64 = 7 * 86_400;
