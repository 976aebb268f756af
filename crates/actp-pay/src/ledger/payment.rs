//! Payments (the receipts of calls and sessions), the intents that reserve them, and per-period totals.

use actp_core::{Address, Amount, B256};
use serde::{Deserialize, Serialize};

use crate::policy::CapKind;

/// Where a payment is in its life. The budget counts `Reserved` as reserved, `Released` as nothing, and
/// every other state as spent (less any refund).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Budget held; the escrow is being created (or a crash left it unknown until reconciled).
    Reserved,
    /// No escrow was created; the budget was given back.
    Released,
    /// The escrow is funded; nothing served yet.
    Funded,
    /// Served, and the delivery proof checks out.
    Served,
    /// Served, but the body does not match the provider's proof: to dispute.
    Mismatched,
    /// Settled on chain: the provider was paid.
    Settled,
    /// Disputed on chain, awaiting a resolver.
    Disputed,
    /// The escrow was cancelled and refunded in full.
    Refunded,
    /// A dispute was resolved; `refunded` is the requester's share.
    Resolved,
}

impl PaymentState {
    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PaymentState::Released
                | PaymentState::Settled
                | PaymentState::Refunded
                | PaymentState::Resolved
        )
    }

    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Reserved => "reserved",
            PaymentState::Released => "released",
            PaymentState::Funded => "funded",
            PaymentState::Served => "served",
            PaymentState::Mismatched => "mismatched",
            PaymentState::Settled => "settled",
            PaymentState::Disputed => "disputed",
            PaymentState::Refunded => "refunded",
            PaymentState::Resolved => "resolved",
        }
    }
}

impl std::fmt::Display for PaymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One payment: the receipt of one logical call, keyed by its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The idempotency key: one key, at most one escrow.
    pub key: String,
    /// The paying agent (requester).
    pub agent: Address,
    /// The provider paid.
    pub provider: Address,
    /// The route, `METHOD /path` (no query).
    pub route: String,
    /// The full URL called.
    pub url: String,
    /// The provider's service name.
    pub service: String,
    /// The escrow amount.
    pub amount: Amount,
    /// The platform fee the kernel takes from the provider's side at settlement (locked at creation).
    pub fee: Amount,
    /// What the kernel refunded to the agent.
    pub refunded: Amount,
    /// Where it is.
    pub state: PaymentState,
    /// The kernel transaction, once funded.
    pub tx_id: Option<B256>,
    /// The verified delivery proof hash, once served.
    pub proof_hash: Option<B256>,
    /// The escrow's deadline (unix seconds), once funded.
    pub deadline: Option<u64>,
    /// The chain's block number when the payment was reserved: its escrow, if any, is at or after it.
    pub block: u64,
    /// UTC day the payment counts in, `YYYY-MM-DD`.
    pub day: String,
    /// UTC month the payment counts in, `YYYY-MM`.
    pub month: String,
    /// When it was reserved (unix seconds).
    pub created_at: u64,
    /// Last change (unix seconds).
    pub updated_at: u64,
    /// Why it is where it is, when that needs saying (a mismatch, a release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For a session (one escrow paying many calls): its account. `amount` is then the deposit, `fee` the fee
    /// on what was charged so far, and `route` the route that opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionAccount>,
}

/// A session's account: what the agent signed, what the provider's receipts charged, and where the session
/// stands. The budget counts what was charged (and what lost calls may have cost) as spent, the rest of the
/// deposit as reserved, until the session settles and the refund is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAccount {
    /// The provider's origin (`scheme://host:port`), where the close is asked.
    pub origin: String,
    /// The provider's close path.
    pub close_path: String,
    /// The service hash the session was opened with.
    pub service_hash: B256,
    /// The grace period it was opened with, in seconds.
    pub grace: u64,
    /// The highest cumulative amount signed in a voucher: the most the provider can claim on chain.
    pub signed: Amount,
    /// What the accepted receipts add up to: what the provider may claim by its receipts.
    pub charged: Amount,
    /// How many receipts were accepted.
    pub receipts: u64,
    /// The last accepted receipt's hash (zero before any): the proof hash the provider should close with.
    pub head: B256,
    /// The maxima of calls whose outcome was lost (no response, or one the provider may have charged without
    /// a receipt): the provider may have charged them.
    pub lost: Amount,
    /// The call in flight, written before its voucher leaves (a crash leaves it here: it becomes lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingCall>,
    /// When the agent stopped using the session and asked the provider to close it (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing_since: Option<u64>,
    /// Whether the agent asked to end it on chain (the provider then has the grace period to close).
    #[serde(default)]
    pub ended: bool,
    /// What the provider claimed when it closed, as read from the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<Amount>,
}

impl SessionAccount {
    /// The most the provider may claim by what the agent knows: the receipts, plus the maxima of lost calls.
    pub fn owed_at_most(&self) -> Amount {
        Amount::from_base_units(
            self.charged
                .base_units()
                .saturating_add(self.lost.base_units()),
        )
    }
}

/// A call paid from a session, recorded before its voucher is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCall {
    /// `METHOD /path`.
    pub route: String,
    /// The most it may cost.
    pub max: Amount,
    /// The cumulative amount its voucher authorizes.
    pub cumulative: Amount,
    /// Its request hash.
    pub request_hash: B256,
}

/// One call's charge on a session, as its receipt states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCharge {
    /// The receipt's position in the session.
    pub seq: u64,
    /// `METHOD /path`.
    pub route: String,
    /// What the call cost.
    pub charge: Amount,
    /// The platform fee on it (paid from the provider's side).
    pub fee: Amount,
    /// The UTC day of the call, `YYYY-MM-DD`.
    pub day: String,
    /// When (unix seconds).
    pub at: u64,
}

impl Payment {
    /// What it holds of the budget: `(reserved, spent)`. An open session has spent what was charged and holds
    /// the rest of its deposit.
    pub(super) fn holds(&self) -> (u128, u128) {
        match (self.state, &self.session) {
            (PaymentState::Reserved, _) => (self.amount.base_units(), 0),
            (PaymentState::Released, _) => (0, 0),
            (state, Some(session)) if !state.is_final() => {
                let deposit = self.amount.base_units();
                let spent = session.owed_at_most().base_units().min(deposit);
                (deposit - spent, spent)
            }
            _ => (
                0,
                self.amount
                    .base_units()
                    .saturating_sub(self.refunded.base_units()),
            ),
        }
    }

    /// What it costs the agent now: the amount less refunds, nothing if released.
    pub fn spent(&self) -> Amount {
        let (reserved, spent) = self.holds();
        Amount::from_base_units(reserved.saturating_add(spent))
    }
}

/// The terms of a payment about to be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Idempotency key.
    pub key: String,
    /// Paying agent.
    pub agent: Address,
    /// Provider.
    pub provider: Address,
    /// `METHOD /path`.
    pub route: String,
    /// Full URL.
    pub url: String,
    /// Service name.
    pub service: String,
    /// Amount.
    pub amount: Amount,
    /// Platform fee at the current rate.
    pub fee: Amount,
    /// The chain's current block.
    pub block: u64,
    /// Now (unix seconds, wall clock: budgets are about real days).
    pub now: u64,
    /// For a session: its account (the amount is the deposit; the per-call cap applies to each call instead).
    pub session: Option<SessionAccount>,
}

/// A payment crossed the soft threshold of a cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SoftLimit {
    /// The agent.
    pub agent: Address,
    /// Which cap.
    pub cap: CapKind,
    /// The cap's limit.
    pub limit: Amount,
    /// Spent or reserved in the period, this payment included.
    pub used: Amount,
    /// The threshold crossed.
    pub threshold: Amount,
    /// The period.
    pub period: String,
    /// The provider, for per-provider caps.
    pub provider: Option<Address>,
}

/// What [`Ledger::reserve`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// A new reservation, and the soft thresholds it crossed.
    New(Payment, Vec<SoftLimit>),
    /// The key already has a payment (a retry of the same logical call): nothing was reserved again.
    Existing(Payment),
}

/// Spent and reserved in one period, for one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Held by reservations.
    pub reserved: Amount,
    /// Spent (escrows funded, less refunds).
    pub spent: Amount,
}

impl Totals {
    /// Reserved plus spent: what counts against a cap.
    pub fn used(&self) -> Amount {
        Amount::from_base_units(
            self.reserved
                .base_units()
                .saturating_add(self.spent.base_units()),
        )
    }
}
