//! Why the paywall refuses a request, and the JSON answer for each reason.

use std::time::Duration;

use actp_core::{
    Address, B256, State,
    authorization::AuthorizationError,
    http::{ErrorBody, PaymentInstructions},
};
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};

/// A refused request. Each variant has a status, a stable `code`, and a message that says what to do; none
/// carries internal details (RPC URLs, revert data, storage errors).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// No `X-AGIRAILS-TX-ID`.
    #[error(
        "this route costs {price}: create and fund an ACTP escrow as the `payment` field describes, then resend the request with X-AGIRAILS-TX-ID and X-AGIRAILS-AUTHORIZATION"
    )]
    PaymentRequired {
        /// The human price.
        price: String,
        /// How to pay.
        payment: Box<PaymentInstructions>,
    },
    /// `X-AGIRAILS-TX-ID` is not `0x` and 64 hex digits.
    #[error("X-AGIRAILS-TX-ID must be 0x followed by 64 hex digits (the transaction id)")]
    MalformedTxId,
    /// `X-AGIRAILS-AUTHORIZATION` does not parse.
    #[error("{0}")]
    MalformedAuthorization(AuthorizationError),
    /// The request body is larger than the paywall buffers.
    #[error("the request body is larger than {limit} bytes: send a smaller body")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request body could not be read.
    #[error("the request body could not be read: resend the request")]
    BodyUnreadable,
    /// The route's price function refused the request.
    #[error("this request cannot be priced: {0}")]
    Unpriceable(String),
    /// The kernel has no such transaction.
    #[error(
        "transaction {tx_id} does not exist on this kernel: create it as the `payment` field describes (same chain and kernel), wait for it to be mined, and resend"
    )]
    UnknownTransaction {
        /// The id sent.
        tx_id: B256,
        /// How to pay.
        payment: Box<PaymentInstructions>,
    },
    /// The transaction names another provider.
    #[error(
        "transaction {tx_id} pays provider {provider}, not this provider {expected}: create a transaction naming {expected}"
    )]
    WrongProvider {
        /// The id sent.
        tx_id: B256,
        /// The transaction's provider.
        provider: Address,
        /// This provider.
        expected: Address,
    },
    /// No authorization from the requester.
    #[error(
        "X-AGIRAILS-AUTHORIZATION is missing: the requester must sign this request (RequestAuthorization in the ACTP EIP-712 domain) and send `exp=<unix>; sig=0x...`"
    )]
    MissingAuthorization,
    /// The authorization is expired, too long-lived, or not the requester's signature over this request.
    #[error("{0}")]
    Unauthorized(AuthorizationError),
    /// The transaction is not in a state this request can be served in.
    #[error(
        "transaction {tx_id} is {state}, not COMMITTED: fund a new transaction as the `payment` field describes"
    )]
    InvalidState {
        /// The id sent.
        tx_id: B256,
        /// Its state.
        state: State,
        /// How to pay.
        payment: Box<PaymentInstructions>,
    },
    /// The escrow holds less than the price.
    #[error(
        "transaction {tx_id} holds {provided} base units but this request costs {required}: fund a transaction of at least {required}"
    )]
    InsufficientAmount {
        /// The id sent.
        tx_id: B256,
        /// The price in base units.
        required: u128,
        /// The transaction's amount in base units.
        provided: String,
        /// How to pay.
        payment: Box<PaymentInstructions>,
    },
    /// The deadline has passed.
    #[error(
        "transaction {tx_id}'s deadline {deadline} has passed (now {now}): cancel it to get the escrow back, and pay with a new one"
    )]
    DeadlinePassed {
        /// The id sent.
        tx_id: B256,
        /// Its deadline.
        deadline: u64,
        /// The chain's time.
        now: u64,
        /// How to pay.
        payment: Box<PaymentInstructions>,
    },
    /// The deadline leaves too little time to deliver.
    #[error(
        "transaction {tx_id}'s deadline {deadline} leaves too little time to deliver: this provider needs a deadline of at least {min_deadline}"
    )]
    DeadlineTooClose {
        /// The id sent.
        tx_id: B256,
        /// Its deadline.
        deadline: u64,
        /// The earliest acceptable deadline now.
        min_deadline: u64,
        /// How to pay.
        payment: Box<PaymentInstructions>,
    },
    /// The transaction pays for another service.
    #[error(
        "transaction {tx_id} pays for service {got}, but this route is {expected}: create the transaction with serviceHash {expected}"
    )]
    ServiceMismatch {
        /// The id sent.
        tx_id: B256,
        /// The route's serviceHash.
        expected: B256,
        /// The transaction's serviceHash.
        got: B256,
        /// How to pay.
        payment: Box<PaymentInstructions>,
    },
    /// The transaction already paid for a request (or one is being served now).
    #[error(
        "transaction {tx_id} has already been used for a request: each transaction pays for one request; fund a new one"
    )]
    AlreadyUsed {
        /// The id sent.
        tx_id: B256,
    },
    /// The chain did not answer in time; the request was not served.
    #[error(
        "the payment could not be verified because the chain is unreachable: retry in {}s with the same headers",
        retry_after.as_secs()
    )]
    ChainUnavailable {
        /// When to retry.
        retry_after: Duration,
    },
    /// A paid path asked with a method no route declares: the router might hand it to the paid handler.
    #[error("this path is paid and answers only {allowed}: use one of those methods")]
    MethodNotAllowed {
        /// The methods declared for the path.
        allowed: String,
    },
    /// A path that is not a route but a variant of a paid one (trailing slash, `//`, `/./`, percent-encoding,
    /// case): never served, so a lenient server behind cannot serve the paid route for free.
    #[error(
        "this path is a variant of the paid route {route}: request that exact path (no trailing slash, dot segments, percent-escapes or case changes)"
    )]
    NonCanonicalPath {
        /// The paid route it resembles.
        route: String,
    },
    /// The transaction is not a session, but the request carries a voucher.
    #[error(
        "transaction {tx_id} is not a session: pay per call with X-AGIRAILS-AUTHORIZATION, or open a session (openSession) as the `session` terms describe"
    )]
    NotASession {
        /// The id sent.
        tx_id: B256,
    },
    /// A per-call transaction's request carries a voucher, or a session's an authorization: the wrong header.
    #[error(
        "transaction {tx_id} is a session: sign each call with X-AGIRAILS-VOUCHER (cum=; exp=; sig=), not X-AGIRAILS-AUTHORIZATION"
    )]
    VoucherRequired {
        /// The id sent.
        tx_id: B256,
    },
    /// This provider does not take sessions, or not on this route.
    #[error(
        "{route} is paid per call only: fund a transaction for this request as the `payment` field describes"
    )]
    SessionsNotAccepted {
        /// The route.
        route: String,
        /// How to pay.
        payment: Box<PaymentInstructions>,
    },
    /// The session's terms are not ones this provider accepts.
    #[error("session {tx_id} is refused: {reason}")]
    SessionTermsRefused {
        /// The id sent.
        tx_id: B256,
        /// Which term, and what is accepted.
        reason: String,
    },
    /// The session's deposit is below the least this provider accepts.
    #[error(
        "session {tx_id} holds {deposit} base units, below the {minimum} this provider accepts: open a session with a deposit of at least {minimum} (GET /pricing lists the session terms)"
    )]
    DepositTooSmall {
        /// The id sent.
        tx_id: B256,
        /// The session's deposit, in base units.
        deposit: String,
        /// The least deposit accepted, in base units.
        minimum: String,
    },
    /// What remains of the session cannot cover this call's maximum.
    #[error(
        "session {tx_id} has {remaining} base units left for new calls, but this call may cost up to {needed}: {}",
        if *closing { "it is being closed; open a new session" } else { "top it up (topUpSession) or open a new session" }
    )]
    SessionUsedUp {
        /// The session.
        tx_id: B256,
        /// What remains for new calls, in base units.
        remaining: String,
        /// This call's maximum, in base units.
        needed: String,
        /// Whether the provider is closing it already (a top-up comes too late).
        closing: bool,
    },
    /// The voucher does not cover what would be owed with this call.
    #[error(
        "the voucher authorizes {cumulative} base units in total, but {owed} would be owed with this call: sign the voucher for at least {owed} (charged so far plus the maximum of every call in flight and this one)"
    )]
    VoucherBelowOwed {
        /// The session.
        tx_id: B256,
        /// charged + held + this call's maximum, in base units.
        owed: String,
        /// The highest cumulative amount signed, in base units.
        cumulative: String,
    },
    /// The session is closing or closed at this provider.
    #[error("session {tx_id} is {status}: it takes no more calls; open a new session")]
    SessionClosed {
        /// The session.
        tx_id: B256,
        /// `closing (idle)`, `closed`, …
        status: String,
    },
    /// The provider's claim database failed; the request was not served.
    #[error("the provider could not record the payment: retry in {}s", retry_after.as_secs())]
    StorageUnavailable {
        /// When to retry.
        retry_after: Duration,
    },
}

impl Refusal {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        use Refusal::*;
        match self {
            MalformedTxId | MalformedAuthorization(_) | BodyUnreadable | Unpriceable(_) => {
                StatusCode::BAD_REQUEST
            }
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            NonCanonicalPath { .. } => StatusCode::NOT_FOUND,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            MissingAuthorization | Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WrongProvider { .. } => StatusCode::FORBIDDEN,
            AlreadyUsed { .. } | SessionClosed { .. } => StatusCode::CONFLICT,
            NotASession { .. } | VoucherRequired { .. } => StatusCode::BAD_REQUEST,
            ChainUnavailable { .. } | StorageUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            PaymentRequired { .. }
            | UnknownTransaction { .. }
            | InvalidState { .. }
            | InsufficientAmount { .. }
            | DeadlinePassed { .. }
            | DeadlineTooClose { .. }
            | ServiceMismatch { .. }
            | SessionsNotAccepted { .. }
            | SessionTermsRefused { .. }
            | DepositTooSmall { .. }
            | SessionUsedUp { .. }
            | VoucherBelowOwed { .. } => StatusCode::PAYMENT_REQUIRED,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        use Refusal::*;
        let status = self.status();
        let mut body = ErrorBody {
            error: status.canonical_reason().unwrap_or("Error").to_owned(),
            code: self.code().to_owned(),
            message: self.to_string(),
            payment: None,
            current_state: None,
            required: None,
            provided: None,
        };
        match self {
            PaymentRequired { payment, .. }
            | UnknownTransaction { payment, .. }
            | DeadlinePassed { payment, .. }
            | DeadlineTooClose { payment, .. }
            | ServiceMismatch { payment, .. }
            | SessionsNotAccepted { payment, .. } => body.payment = Some((**payment).clone()),
            SessionUsedUp {
                remaining, needed, ..
            } => {
                body.required = Some(needed.clone());
                body.provided = Some(remaining.clone());
            }
            DepositTooSmall {
                deposit, minimum, ..
            } => {
                body.required = Some(minimum.clone());
                body.provided = Some(deposit.clone());
            }
            VoucherBelowOwed {
                owed, cumulative, ..
            } => {
                body.required = Some(owed.clone());
                body.provided = Some(cumulative.clone());
            }
            InvalidState { state, payment, .. } => {
                body.current_state = Some(state.to_string());
                body.payment = Some((**payment).clone());
            }
            InsufficientAmount {
                required,
                provided,
                payment,
                ..
            } => {
                body.required = Some(required.to_string());
                body.provided = Some(provided.clone());
                body.payment = Some((**payment).clone());
            }
            _ => {}
        }
        body
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Refusal::ChainUnavailable { retry_after }
            | Refusal::StorageUnavailable { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// Each refusal's stable code, declared once: [`Refusal::code`] (a match the compiler checks is exhaustive) and
/// [`Refusal::CODES`] (what the metrics count and the crate's documentation tables list) both come from this
/// list.
macro_rules! codes {
    ($($variant:ident => $code:literal,)*) => {
        impl Refusal {
            /// Every refusal's code, in declaration order.
            pub const CODES: &'static [&'static str] = &[$($code),*];

            /// The stable machine-readable code.
            pub fn code(&self) -> &'static str {
                match self {
                    $(Refusal::$variant { .. } => $code,)*
                }
            }
        }
    };
}

codes! {
    PaymentRequired => "payment_required",
    MalformedTxId => "malformed_tx_id",
    MalformedAuthorization => "malformed_authorization",
    BodyTooLarge => "body_too_large",
    BodyUnreadable => "body_unreadable",
    Unpriceable => "unpriceable",
    UnknownTransaction => "unknown_transaction",
    WrongProvider => "wrong_provider",
    MissingAuthorization => "missing_authorization",
    Unauthorized => "unauthorized",
    InvalidState => "invalid_state",
    InsufficientAmount => "insufficient_amount",
    DeadlinePassed => "deadline_passed",
    DeadlineTooClose => "deadline_too_close",
    ServiceMismatch => "service_mismatch",
    AlreadyUsed => "already_used",
    ChainUnavailable => "chain_unavailable",
    StorageUnavailable => "storage_unavailable",
    MethodNotAllowed => "method_not_allowed",
    NonCanonicalPath => "non_canonical_path",
    NotASession => "not_a_session",
    VoucherRequired => "voucher_required",
    SessionsNotAccepted => "sessions_not_accepted",
    SessionTermsRefused => "session_terms_refused",
    DepositTooSmall => "deposit_too_small",
    SessionUsedUp => "session_used_up",
    VoucherBelowOwed => "voucher_below_owed",
    SessionClosed => "session_closed",
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let json = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = Response::new(Body::from(json));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(after) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
        }
        if let Refusal::MethodNotAllowed { allowed } = &self
            && let Ok(v) = HeaderValue::from_str(allowed)
        {
            headers.insert(header::ALLOW, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_unavailable_is_503_with_retry_after_and_no_detail() {
        let response = Refusal::ChainUnavailable {
            retry_after: Duration::from_secs(2),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn every_refusal_message_says_what_to_do() {
        let refusals = [
            Refusal::MalformedTxId,
            Refusal::MissingAuthorization,
            Refusal::AlreadyUsed { tx_id: B256::ZERO },
            Refusal::BodyTooLarge { limit: 10 },
        ];
        for r in refusals {
            let body = r.body();
            assert!(body.message.len() > 20, "{}", body.message);
            assert_eq!(body.code, r.code());
            assert_eq!(body.error, r.status().canonical_reason().unwrap_or(""));
        }
    }

    /// The crate's documentation tables (the checks before a handler runs, per call and per session) name
    /// every code, and only codes that exist.
    #[test]
    fn the_documentation_tables_list_every_code_and_no_other() {
        let docs = include_str!("lib.rs");
        let mut listed = std::collections::BTreeSet::new();
        for row in docs.lines().filter(|l| l.starts_with("//! |")) {
            // The code column, without what it notes in parentheses (`(with `required`, ...)`).
            let last = row
                .trim_end_matches('|')
                .rsplit('|')
                .next()
                .unwrap_or_default();
            let last = last.split('(').next().unwrap_or_default();
            for (i, part) in last.split('`').enumerate() {
                if i % 2 == 1 && part.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    listed.insert(part);
                }
            }
        }
        listed.remove("code");
        let codes: std::collections::BTreeSet<&str> = Refusal::CODES.iter().copied().collect();
        assert_eq!(
            codes.len(),
            Refusal::CODES.len(),
            "a code is declared twice"
        );
        assert_eq!(
            codes.difference(&listed).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "codes missing from the tables in lib.rs"
        );
        assert_eq!(
            listed.difference(&codes).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "the tables in lib.rs name codes that do not exist"
        );
    }
}
