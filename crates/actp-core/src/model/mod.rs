//! The ACTP lifecycle as a pure model that agrees with the escrow kernel rule for rule.
//!
//! [`apply`] takes a transaction's current view, an [`Action`], the caller and the time, and returns the new
//! view with the money the action moves, or the [`Rejection`] the kernel would revert with (the same error,
//! with the same data, checked in the same order). [`create`] does the same for creation. [`KernelModel`]
//! keeps many transactions, nonces, fees, governance and token balances in memory on top of them; the
//! differential test drives it side by side with the deployed kernel. Nothing here performs I/O.
//!
//! - `lifecycle`: what each action does to a transaction, in the kernel's order of checks;
//! - `session`: sessions (`openSession`, top-ups, end requests, closes with a voucher; the claim paid and the
//!   rest refunded at settlement);
//! - `kernel`: [`KernelModel`].
//!
//! ```
//! use actp_core::model::{Action, CreateParams, KernelModel};
//! use actp_core::{Address, B256, State, U256};
//!
//! let (kernel, admin) = (Address::repeat_byte(0xee), Address::repeat_byte(0xad));
//! let (requester, provider) = (Address::repeat_byte(1), Address::repeat_byte(2));
//! let mut model = KernelModel::new(kernel, admin, admin, 100);
//! model.mint(requester, U256::from(10_000_000u64));
//! let now = 1_700_000_000;
//! let terms = CreateParams::new(provider, U256::from(1_000_000u64), now + 86_400, 3_600, B256::ZERO);
//! let (id, _) = model.create_and_fund(requester, &terms, now).unwrap();
//! model.act(id, &Action::start(), provider, now).unwrap();
//! model.act(id, &Action::deliver(0, None), provider, now).unwrap();
//! // a settlement bot may settle once the window is over
//! let moves = model.act(id, &Action::settle(), Address::repeat_byte(9), now + 3_601).unwrap();
//! assert_eq!(moves.to_provider, U256::from(990_000u64));
//! assert_eq!(moves.fee, U256::from(10_000u64));
//! assert_eq!(model.transaction(id).unwrap().state, State::Settled);
//! ```

use alloy_primitives::{Address, B256, U256};

use crate::{Rejection, State, ids::transaction_id, limits::*};

mod kernel;
mod lifecycle;
mod session;

pub use kernel::KernelModel;
pub use lifecycle::apply;
pub use session::Session;

/// The model's view of one transaction: every field the kernel stores, unpacked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transaction {
    /// The ACTP transaction id.
    pub id: B256,
    /// Pays into escrow; may settle early, dispute, and reclaim after the deadline.
    pub requester: Address,
    /// Does the work; is paid at settlement.
    pub provider: Address,
    /// Lifecycle state.
    pub state: State,
    /// The escrow amount in token base units.
    pub amount: U256,
    /// Creation time (unix seconds).
    pub created_at: u64,
    /// Time of the last change (saturated at 2^32 - 1, as the kernel stores it).
    pub updated_at: u64,
    /// Start and delivery must happen by this time.
    pub deadline: u64,
    /// Names the service.
    pub service_hash: B256,
    /// Dispute window in seconds: the requester's minimum until delivery, then the window chosen.
    pub dispute_window: u64,
    /// When the dispute window ends (set at delivery).
    pub window_end: Option<u64>,
    /// Platform fee rate locked at creation, in basis points.
    pub fee_bps: u16,
    /// Paid to the provider by milestones so far (gross).
    pub released: U256,
    /// True once funded (kept in terminal states).
    pub escrowed: bool,
    /// The escrow id an older client linked, if it was not the transaction id.
    pub escrow_alias: Option<B256>,
    /// The quote hash given at QUOTED.
    pub metadata: B256,
    /// EAS attestation uid anchored after settlement.
    pub attestation_uid: B256,
    /// The provider's agent id, stored as given.
    pub agent_id: U256,
    /// The requester's agent id, stored as given.
    pub requester_agent_id: U256,
    /// Who opened the dispute.
    pub dispute_initiator: Option<Address>,
    /// For a session (`openSession`): its grace period, end and claim.
    #[serde(default)]
    pub session: Option<Session>,
}

impl Transaction {
    /// What the escrow holds now (0 unless funded and not terminal), as the kernel's `remaining` view.
    pub fn remaining(&self) -> U256 {
        if self.escrowed && !self.state.is_terminal() {
            self.amount - self.released
        } else {
            U256::ZERO
        }
    }

    /// The escrow id reported for this transaction (the alias, or the transaction id once funded).
    pub fn escrow_id(&self) -> Option<B256> {
        self.escrowed.then(|| self.escrow_alias.unwrap_or(self.id))
    }
}

/// Money an action moves, in token base units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Moves {
    /// Pulled from the requester into escrow.
    pub pulled: U256,
    /// Paid to the provider, net of the fee.
    pub to_provider: U256,
    /// Refunded to the requester.
    pub to_requester: U256,
    /// Platform fee accrued.
    pub fee: U256,
}

impl Moves {
    fn add(&mut self, other: Moves) {
        self.pulled += other.pulled;
        self.to_provider += other.to_provider;
        self.to_requester += other.to_requester;
        self.fee += other.fee;
    }
}

/// The result of an accepted action: the transaction after it, and the money it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The transaction after the action.
    pub transaction: Transaction,
    /// Money moved.
    pub moves: Moves,
}

/// An action on an existing transaction, as sent to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `linkEscrow(id, escrowContract, escrowId)`: fund an INITIATED or QUOTED transaction.
    Fund {
        /// Must be the kernel itself.
        escrow_contract: Address,
        /// The transaction id, or an unused id (older clients).
        escrow_id: B256,
    },
    /// `transitionState(id, to, proof)`.
    Transition {
        /// Target state.
        to: State,
        /// Proof bytes, as sent.
        proof: Vec<u8>,
    },
    /// `releaseEscrow(id)`: settle a DELIVERED transaction.
    ReleaseEscrow,
    /// `releaseMilestone(id, amount)`.
    ReleaseMilestone {
        /// Gross amount.
        amount: U256,
    },
    /// `acceptQuote(id, newAmount)`.
    AcceptQuote {
        /// The new amount.
        new_amount: U256,
    },
    /// `anchorAttestation(id, uid)`.
    AnchorAttestation {
        /// The attestation uid.
        uid: B256,
    },
    /// `topUpSession(id, amount)`: the requester adds to an open session's deposit.
    TopUpSession {
        /// Added to the deposit.
        amount: U256,
    },
    /// `endSession(id)`: the requester asks to end a session; the provider may close it for the grace period.
    EndSession,
    /// `closeSession(id, claim, cumulative, requestHash, expiresAt, signature, proofHash)`: the provider closes
    /// an IN_PROGRESS session, claiming at most the voucher's cumulative amount.
    CloseSession {
        /// What the provider takes.
        claim: U256,
        /// The voucher's cumulative amount.
        cumulative: U256,
        /// Whether the signature is the requester's over the voucher (ECDSA or ERC-1271).
        signed: bool,
    },
}

impl Action {
    /// Fund with the transaction id as escrow id, as current clients do.
    pub fn fund(kernel: Address, id: B256) -> Self {
        Action::Fund {
            escrow_contract: kernel,
            escrow_id: id,
        }
    }

    /// COMMITTED → IN_PROGRESS.
    pub fn start() -> Self {
        Action::Transition {
            to: State::InProgress,
            proof: Vec::new(),
        }
    }

    /// IN_PROGRESS → DELIVERED; `window` 0 means the requester's window. With a proof hash the 64-byte form.
    pub fn deliver(window: u64, proof_hash: Option<B256>) -> Self {
        Action::Transition {
            to: State::Delivered,
            proof: crate::proof::delivery_proof_bytes(window, proof_hash),
        }
    }

    /// DELIVERED → SETTLED.
    pub fn settle() -> Self {
        Action::Transition {
            to: State::Settled,
            proof: Vec::new(),
        }
    }

    /// DELIVERED → DISPUTED.
    pub fn dispute() -> Self {
        Action::Transition {
            to: State::Disputed,
            proof: Vec::new(),
        }
    }

    /// DISPUTED → `to` (SETTLED or CANCELLED), splitting what remains.
    pub fn resolve(to: State, to_requester: U256, to_provider: U256) -> Self {
        let mut proof = to_requester.to_be_bytes::<32>().to_vec();
        proof.extend_from_slice(&to_provider.to_be_bytes::<32>());
        Action::Transition { to, proof }
    }

    /// → CANCELLED (outside a dispute).
    pub fn cancel() -> Self {
        Action::Transition {
            to: State::Cancelled,
            proof: Vec::new(),
        }
    }

    /// INITIATED → QUOTED, with an optional quote hash.
    pub fn quote(quote_hash: Option<B256>) -> Self {
        Action::Transition {
            to: State::Quoted,
            proof: quote_hash.map(|h| h.to_vec()).unwrap_or_default(),
        }
    }
}

/// What a transition needs to know about the kernel beyond the transaction itself.
pub trait KernelView {
    /// The kernel's address (its own escrow vault).
    fn kernel_address(&self) -> Address;
    /// Whether new transactions and funding are stopped.
    fn paused(&self) -> bool;
    /// Whether `who` may resolve disputes at `now`.
    fn is_resolver(&self, who: Address, now: u64) -> bool;
    /// Whether `requester` may link `escrow_id` as an alias: non-zero, not a transaction id, not linked by
    /// `requester` before. Aliases are kept in the requester's name: another requester's use is no obstacle.
    fn escrow_id_available(&self, requester: Address, escrow_id: B256) -> bool;
}

/// The terms of a new transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateParams {
    /// The provider.
    pub provider: Address,
    /// Escrow amount.
    pub amount: U256,
    /// Deadline (unix seconds).
    pub deadline: U256,
    /// The requester's dispute window in seconds.
    pub dispute_window: U256,
    /// Names the service.
    pub service_hash: B256,
    /// The provider's agent id.
    pub agent_id: U256,
    /// The requester's agent id.
    pub requester_agent_id: U256,
}

impl CreateParams {
    /// Terms with zero agent ids.
    pub fn new(
        provider: Address,
        amount: U256,
        deadline: u64,
        dispute_window: u64,
        service_hash: B256,
    ) -> Self {
        CreateParams {
            provider,
            amount,
            deadline: U256::from(deadline),
            dispute_window: U256::from(dispute_window),
            service_hash,
            agent_id: U256::ZERO,
            requester_agent_id: U256::ZERO,
        }
    }
}

pub(crate) fn u(x: u64) -> U256 {
    U256::from(x)
}

/// What creation needs to know about the kernel at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateContext {
    /// Current time.
    pub now: u64,
    /// The requester's nonce before creation.
    pub nonce: u64,
    /// The platform fee rate to lock.
    pub platform_fee_bps: u16,
    /// Whether the kernel is paused.
    pub paused: bool,
    /// `createAndFund` (COMMITTED, amount pulled) rather than `createTransaction` (INITIATED).
    pub funded: bool,
}

/// Validates and builds a new transaction created by `caller` (the requester), as `createTransaction` or
/// `createAndFund` would. `exists` tells whether a transaction id is taken.
pub fn create(
    terms: &CreateParams,
    caller: Address,
    ctx: CreateContext,
    exists: impl Fn(B256) -> bool,
) -> Result<Outcome, Rejection> {
    let CreateContext {
        now,
        nonce,
        platform_fee_bps,
        paused,
        funded,
    } = ctx;
    if terms.provider == Address::ZERO {
        return Err(Rejection::ZeroAddress);
    }
    if terms.provider == caller {
        return Err(Rejection::SelfDealing(terms.provider));
    }
    if terms.amount < u(MIN_AMOUNT) || terms.amount > u(MAX_AMOUNT) {
        return Err(Rejection::AmountOutOfRange {
            amount: terms.amount,
            min: u(MIN_AMOUNT),
            max: u(MAX_AMOUNT),
        });
    }
    let latest = (now + MAX_DEADLINE_AHEAD).min(MAX_TIMESTAMP);
    if terms.deadline <= u(now) || terms.deadline > u(latest) {
        return Err(Rejection::DeadlineOutOfRange {
            deadline: terms.deadline,
            min: u(now),
            max: u(latest),
        });
    }
    if terms.dispute_window < u(MIN_DISPUTE_WINDOW) || terms.dispute_window > u(MAX_DISPUTE_WINDOW)
    {
        return Err(Rejection::DisputeWindowOutOfRange {
            window: terms.dispute_window,
            min: u(MIN_DISPUTE_WINDOW),
            max: u(MAX_DISPUTE_WINDOW),
        });
    }
    if paused {
        return Err(Rejection::KernelIsPaused);
    }
    let id = transaction_id(
        caller,
        terms.provider,
        terms.amount,
        terms.service_hash,
        nonce,
    );
    if exists(id) {
        return Err(Rejection::TransactionExists(id));
    }
    let transaction = Transaction {
        id,
        requester: caller,
        provider: terms.provider,
        state: if funded {
            State::Committed
        } else {
            State::Initiated
        },
        amount: terms.amount,
        created_at: now,
        updated_at: now,
        deadline: terms.deadline.to::<u64>(),
        service_hash: terms.service_hash,
        dispute_window: terms.dispute_window.to::<u64>(),
        window_end: None,
        fee_bps: platform_fee_bps,
        released: U256::ZERO,
        escrowed: funded,
        escrow_alias: None,
        metadata: B256::ZERO,
        attestation_uid: B256::ZERO,
        agent_id: terms.agent_id,
        requester_agent_id: terms.requester_agent_id,
        dispute_initiator: None,
        session: None,
    };
    let moves = Moves {
        pulled: if funded { terms.amount } else { U256::ZERO },
        ..Moves::default()
    };
    Ok(Outcome { transaction, moves })
}
