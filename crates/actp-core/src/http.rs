//! The HTTP wire format between a paying consumer and a provider's paywall: header names, the payment
//! instructions a `402 Payment Required` carries, the public pricing document, and the JSON error body.
//!
//! Pure data (serde); the provider middleware writes these and a paying client reads them, so neither has to
//! read documentation to pay. Field names are camelCase on the wire; amounts are decimal strings of token base
//! units (`"100000"`) next to their human form (`"0.10"`), so no reader has to trust floating point.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

pub use crate::authorization::{AUTHORIZATION_HEADER, TX_ID_HEADER};
pub use crate::session::{NOT_CHARGED_HEADER, RECEIPT_HEADER, VOUCHER_HEADER};

/// Response header carrying the delivery proof hash (`0x` + 64 hex), the value the provider records on chain.
pub const PROOF_HASH_HEADER: &str = "x-agirails-proof-hash";
/// Response header carrying the provider's signed delivery proof: base64url JSON of the AIP-4 proof and its
/// binding to the request (see
/// [`SignedDeliveryProof::to_header_value`](crate::proof::SignedDeliveryProof::to_header_value)).
pub const DELIVERY_PROOF_HEADER: &str = "x-agirails-delivery-proof";

/// Protocol name in pricing documents and payment instructions.
pub const PROTOCOL: &str = "ACTP";

/// The header names a client needs, spelled as documented (HTTP header names are case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderNames {
    /// Request header with the transaction id.
    pub tx_id: String,
    /// Request header with the requester's authorization.
    pub authorization: String,
    /// Response header with the delivery proof hash.
    pub proof_hash: String,
    /// Response header with the signed delivery proof.
    pub delivery_proof: String,
    /// Request header with a session call's voucher.
    #[serde(default = "voucher_header")]
    pub voucher: String,
    /// Response header with a session call's receipt.
    #[serde(default = "receipt_header")]
    pub receipt: String,
}

fn voucher_header() -> String {
    "X-AGIRAILS-VOUCHER".into()
}

fn receipt_header() -> String {
    "X-AGIRAILS-RECEIPT".into()
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            tx_id: "X-AGIRAILS-TX-ID".into(),
            authorization: "X-AGIRAILS-AUTHORIZATION".into(),
            proof_hash: "X-AGIRAILS-PROOF-HASH".into(),
            delivery_proof: "X-AGIRAILS-DELIVERY-PROOF".into(),
            voucher: voucher_header(),
            receipt: receipt_header(),
        }
    }
}

/// Where and how to pay: the chain-level facts shared by every route of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentTerms {
    /// Always [`PROTOCOL`].
    pub protocol: String,
    /// Chain id.
    pub chain_id: u64,
    /// The escrow kernel (also the escrow vault to approve and link).
    #[serde(with = "crate::checksum")]
    pub kernel: Address,
    /// The payment token.
    #[serde(with = "crate::checksum")]
    pub token: Address,
    /// The token's decimals.
    pub decimals: u8,
    /// The provider to name in the transaction.
    #[serde(with = "crate::checksum")]
    pub provider: Address,
    /// The least time between the moment of the request and the transaction's deadline, in seconds.
    pub min_time_to_deadline: u64,
    /// The furthest ahead an authorization's expiry may lie, in seconds.
    pub max_authorization_validity: u64,
    /// Header names.
    pub headers: HeaderNames,
    /// The provider's sessions, if it offers them: one escrow for many calls.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session: Option<SessionOffer>,
}

/// The terms of the sessions a provider offers: open one with `openSession` on the kernel and pay each call
/// with a voucher (see [`crate::session`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionOffer {
    /// The service name of sessions; the session's `serviceHash` must be `keccak256(service)`.
    pub service: String,
    /// `keccak256(service)`.
    pub service_hash: B256,
    /// The smallest deposit accepted, in base units.
    pub min_deposit: String,
    /// The same in tokens, e.g. `1.00`.
    pub min_deposit_price: String,
    /// The grace period to open sessions with, in seconds (the least the provider accepts).
    pub grace: u64,
    /// After how many idle seconds the provider closes a session by itself.
    pub idle_close: u64,
    /// How long before the deadline the provider closes a session by itself, in seconds.
    pub close_margin: u64,
    /// Where the requester `POST`s (with a voucher over that request) to have its session closed now.
    #[serde(default = "default_close_path")]
    pub close_path: String,
}

fn default_close_path() -> String {
    "/sessions/close".into()
}

/// The price and service of one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutePrice {
    /// HTTP method, upper case.
    pub method: String,
    /// Path pattern (`/v1/items/{id}` matches one segment).
    pub path: String,
    /// `flat`, `metered` (a maximum per call plus unit prices, charged by the usage the service reports),
    /// `dynamic` (computed per request; the 402 answer to the request quotes it) or `free`.
    pub pricing: String,
    /// Base units per call for flat routes; the maximum per call for metered routes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub amount: Option<String>,
    /// Human price per call for flat routes, e.g. `0.10`; the maximum per call for metered routes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub price: Option<String>,
    /// Metered routes: the price of each unit in tokens (12 decimals), by unit name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub units: Option<BTreeMap<String, String>>,
    /// Whether a session may pay for this route.
    #[serde(default)]
    pub sessions: bool,
    /// The service name the service hash is derived from.
    pub service: String,
    /// `keccak256(service)`: the transaction's `serviceHash` must equal it.
    pub service_hash: B256,
}

/// The public pricing document (`GET` on the provider's pricing path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricingDocument {
    /// Chain, kernel, token, provider and headers.
    #[serde(flatten)]
    pub terms: PaymentTerms,
    /// Every configured route.
    pub routes: Vec<RoutePrice>,
    /// Steps to pay, for people.
    pub instructions: Vec<String>,
}

/// What a `402` answer tells a client about paying for the request it just made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentInstructions {
    /// Chain, kernel, token, provider and headers.
    #[serde(flatten)]
    pub terms: PaymentTerms,
    /// The request's method.
    pub method: String,
    /// The request target to sign (path and query, exactly as sent).
    pub path: String,
    /// The price of this request in base units: fund at least this much.
    pub amount: String,
    /// The same price in tokens, e.g. `0.10`.
    pub price: String,
    /// Metered routes: the price of each unit in tokens (12 decimals), by unit name; `amount` is then the
    /// most one call may cost, and a call is charged `min(units x prices, amount)`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub units: Option<BTreeMap<String, String>>,
    /// The service name.
    pub service: String,
    /// The `serviceHash` to create the transaction with.
    pub service_hash: B256,
    /// The earliest acceptable deadline (unix seconds) if the request were sent now.
    pub min_deadline: u64,
    /// Whether a session (the `session` terms) may pay for this request instead of an escrow of its own;
    /// `amount` is then the most one call may cost.
    #[serde(default)]
    pub sessions: bool,
}

impl PaymentInstructions {
    /// The price in base units, if the field is a valid integer.
    pub fn amount_base_units(&self) -> Option<u128> {
        self.amount.parse().ok()
    }
}

/// The JSON body of every refusal: `{error, code, message}` plus facts useful to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Short title, e.g. `Payment Required`.
    pub error: String,
    /// Stable machine-readable code, e.g. `insufficient_amount`.
    pub code: String,
    /// One sentence: what went wrong and what to do.
    pub message: String,
    /// How to pay for this request (on `402`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub payment: Option<PaymentInstructions>,
    /// The transaction's current state, when that is the problem.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub current_state: Option<String>,
    /// The price in base units, when the amount is the problem.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub required: Option<String>,
    /// The transaction's amount in base units, when the amount is the problem.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provided: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn instructions_round_trip_with_flattened_terms() {
        let instructions = PaymentInstructions {
            terms: PaymentTerms {
                protocol: PROTOCOL.into(),
                chain_id: 31337,
                kernel: Address::repeat_byte(1),
                token: Address::repeat_byte(2),
                decimals: 6,
                provider: Address::repeat_byte(3),
                min_time_to_deadline: 300,
                max_authorization_validity: 300,
                headers: HeaderNames::default(),
                session: None,
            },
            method: "POST".into(),
            path: "/v1/generate".into(),
            amount: "100000".into(),
            price: "0.10".into(),
            units: None,
            service: "generate".into(),
            service_hash: crate::ids::service_hash("generate"),
            min_deadline: 1_700_000_300,
            sessions: false,
        };
        let json = serde_json::to_value(&instructions).unwrap();
        assert_eq!(json["chainId"], 31337);
        assert_eq!(json["headers"]["txId"], "X-AGIRAILS-TX-ID");
        assert_eq!(
            json["serviceHash"],
            format!("{}", instructions.service_hash)
        );
        let back: PaymentInstructions = serde_json::from_value(json).unwrap();
        assert_eq!(back, instructions);
        assert_eq!(back.amount_base_units(), Some(100_000));
    }

    #[test]
    fn header_constants_match_documented_names() {
        let names = HeaderNames::default();
        assert_eq!(names.tx_id.to_ascii_lowercase(), TX_ID_HEADER);
        assert_eq!(
            names.authorization.to_ascii_lowercase(),
            AUTHORIZATION_HEADER
        );
        assert_eq!(names.proof_hash.to_ascii_lowercase(), PROOF_HASH_HEADER);
        assert_eq!(
            names.delivery_proof.to_ascii_lowercase(),
            DELIVERY_PROOF_HEADER
        );
        assert_eq!(names.voucher.to_ascii_lowercase(), VOUCHER_HEADER);
        assert_eq!(names.receipt.to_ascii_lowercase(), RECEIPT_HEADER);
        // documents written before sessions still read
        let old = r#"{"txId":"a","authorization":"b","proofHash":"c","deliveryProof":"d"}"#;
        assert_eq!(
            serde_json::from_str::<HeaderNames>(old).unwrap().voucher,
            "X-AGIRAILS-VOUCHER"
        );
    }
}
