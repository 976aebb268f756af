#![doc = include_str!("../README.md")]
//!
//! # Before the handler runs
//! For each request to a paid route, in this order, a failure is answered at once with a JSON
//! [`ErrorBody`](actp_core::http::ErrorBody) `{error, code, message}` (plus the payment instructions where
//! useful) and the handler does not run:
//!
//! | check | status | code |
//! |---|---|---|
//! | a variant of a paid route's path (trailing slash, dot segments, percent-escapes, case) | 404 | `non_canonical_path` |
//! | a method no route declares on a paid path | 405 + `Allow` | `method_not_allowed` |
//! | body larger than the limit, or unreadable | 413, 400 | `body_too_large`, `body_unreadable` |
//! | dynamic price refused | 400 | `unpriceable` |
//! | no `X-AGIRAILS-TX-ID` | 402 | `payment_required` (with the route's payment instructions) |
//! | malformed txId or authorization header | 400 | `malformed_tx_id`, `malformed_authorization` |
//! | transaction unknown on chain | 402 | `unknown_transaction` |
//! | another provider's transaction | 403 | `wrong_provider` |
//! | authorization missing, expired, too long-lived, not the requester's, or for another request | 401 | `missing_authorization`, `unauthorized` |
//! | transaction already used here (or being served) | 409 | `already_used` |
//! | state not COMMITTED (or IN_PROGRESS from this provider's failed attempt at this very request) | 402 | `invalid_state` |
//! | amount below the price | 402 | `insufficient_amount` (with `required`, `provided`) |
//! | deadline passed, or closer than the margin | 402 | `deadline_passed`, `deadline_too_close` |
//! | serviceHash not the route's | 402 | `service_mismatch` |
//! | a session's transaction sent with `X-AGIRAILS-AUTHORIZATION` | 400 | `voucher_required` |
//! | lost the claim race | 409 | `already_used` |
//! | chain unreachable or slow; the provider's store failing | 503 + `Retry-After` | `chain_unavailable`, `storage_unavailable` |
//!
//! The "already used" check runs before the state check so that a transaction this provider is serving
//! reads as used even while the chain still says COMMITTED.
//!
//! # Calls paid from a session
//! A request with `X-AGIRAILS-VOUCHER` is paid from the session `X-AGIRAILS-TX-ID` names (see
//! [`actp_core::session`]; [`SessionConfig`] sets the terms, on by default):
//!
//! | check | status | code |
//! |---|---|---|
//! | malformed voucher | 400 | `malformed_authorization` |
//! | sessions not taken here, or not on this route | 402 | `sessions_not_accepted` |
//! | not a session (unknown, or a per-call transaction) | 400 | `not_a_session` |
//! | another provider's session | 403 | `wrong_provider` |
//! | first call: deposit below the minimum | 402 | `deposit_too_small` (with `required`, `provided`) |
//! | first call: serviceHash not the sessions', grace too short, deadline too close, end already asked | 402 | `session_terms_refused` |
//! | voucher expired, too long-lived, not the requester's, or for another request | 401 | `unauthorized` |
//! | the best voucher does not cover charged + held + this call's maximum | 402 | `voucher_below_owed` (with `required`, `provided`) |
//! | the deposit cannot cover this call's maximum beside the calls in flight (after re-reading it for a top-up) | 402 | `session_used_up` (with `required`, `provided`) |
//! | closing or closed | 409 | `session_closed` |
//!
//! A granted call holds its maximum (flat price, metered maximum, or dynamic quote) by compare-and-swap on the
//! session's account, so concurrent calls never overdraw the deposit. After the handler, a metered route is
//! charged `min(usage x unit prices, max)` from the [`Usage`] the handler put in the response's extensions
//! (a flat or dynamic route: its price); the charge and the receipt chain are flushed to disk, and the
//! response carries `X-AGIRAILS-RECEIPT`, the provider's signed
//! [`SessionReceipt`](actp_core::session::SessionReceipt) chained to the one before. A failed handler gives
//! the hold back, and its response leaves marked `X-AGIRAILS-NOT-CHARGED: 1`. The session is closed through the outbox, once, when its consumer asks (`POST` on
//! [`SessionConfig::close_path`] with a voucher over that request, or [`CLOSE_HEADER`] on a call), when it is
//! idle, near its deadline, used up and not topped up, or ended by its requester on chain; the close waits for
//! the calls in flight, then sends `closeSession` with what was charged, the best voucher, and the last
//! receipt's hash as the proof hash.
//!
//! # One transaction, one request
//! [`ClaimMode::Local`] claims the transaction by compare-and-swap in sled; [`ClaimMode::OnChain`] claims it
//! by sending and confirming COMMITTED → IN_PROGRESS. A handler that fails (an error, or any status that is
//! not 2xx) releases the claim and nothing is delivered, so the consumer can retry with the same txId.
//!
//! # After the handler succeeds
//! The response body is buffered and hashed exactly as sent. The provider signs an AIP-4
//! [`DeliveryProof`](actp_core::proof::aip4::DeliveryProof) over it (txId, provider, requester, result hash,
//! time, nonce: what the ACTP SDKs verify) and binds it to the request served with its own
//! [`ActpDelivery`](actp_core::proof::ActpDelivery) signature, whose hash is the proof hash; the response
//! carries `X-AGIRAILS-PROOF-HASH` and `X-AGIRAILS-DELIVERY-PROOF`
//! ([`SignedDeliveryProof`](actp_core::proof::SignedDeliveryProof)). The delivery is written to the sled outbox and
//! flushed before the response leaves; the outbox then sends IN_PROGRESS (if needed) and DELIVERED with the
//! 64-byte proof, once, resuming after a crash.
//!
//! # Cost
//! One chain read per new transaction (concurrent requests for one txId share it); the kernel's "now" comes
//! from a clock measured off the request path; nothing polls.

mod clock;
mod metrics;
mod outbox;
mod paywall;
mod refusal;
mod route;
mod store;

pub use actp_core::meter::{Meter, Usage};
pub use metrics::{DELIVERY_OUTCOMES, HANDLED_OUTCOMES, Metrics, request_outcomes};
pub use paywall::{
    CLOSE_HEADER, ClaimMode, Payment, Paywall, PaywallBuilder, PaywallError, PaywallLayer,
    PaywallService, ResponseFuture, SessionConfig, Signatures,
};
pub use refusal::Refusal;
pub use route::{Price, PriceError, PriceRequest, Route, RouteError};
pub use store::{
    Claim, ClaimStatus, CloseReason, DiskSyncs, Durability, SessionState, SessionStatus,
    SessionVoucherRecord, StoreError,
};
