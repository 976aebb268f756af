//! The ACTP lifecycle as a pure model that agrees with the escrow kernel rule for rule.
//!
//! [`apply`] takes a transaction's current view, an [`Action`], the caller and the time, and returns the new
//! view with the money the action moves, or the [`Rejection`] the kernel would revert with (the same error,
//! with the same data, checked in the same order). [`create`] does the same for creation. [`KernelModel`]
//! keeps many transactions, nonces, fees, governance and token balances in memory on top of them; the
//! differential test drives it side by side with the deployed kernel. Nothing here performs I/O.
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

use std::collections::HashMap;

use alloy_primitives::{Address, B256, U256};

use crate::{Rejection, State, fee, ids::transaction_id, limits::*};

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

fn u(x: u64) -> U256 {
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
    };
    let moves = Moves {
        pulled: if funded { terms.amount } else { U256::ZERO },
        ..Moves::default()
    };
    Ok(Outcome { transaction, moves })
}

/// Applies `action` by `caller` at `now` to `tx` (None: no such transaction), as the kernel would.
pub fn apply(
    tx: Option<&Transaction>,
    id: B256,
    action: &Action,
    caller: Address,
    now: u64,
    kernel: &impl KernelView,
) -> Result<Outcome, Rejection> {
    // Arguments validated before the transaction is looked up.
    match action {
        Action::Fund {
            escrow_contract, ..
        } if *escrow_contract != kernel.kernel_address() => {
            return Err(Rejection::UnsupportedEscrowContract(*escrow_contract));
        }
        Action::AcceptQuote { new_amount }
            if *new_amount < u(MIN_AMOUNT) || *new_amount > u(MAX_AMOUNT) =>
        {
            return Err(Rejection::AmountOutOfRange {
                amount: *new_amount,
                min: u(MIN_AMOUNT),
                max: u(MAX_AMOUNT),
            });
        }
        Action::AnchorAttestation { uid } if uid.is_zero() => {
            return Err(Rejection::ZeroAttestation);
        }
        _ => {}
    }
    let tx = tx.ok_or(Rejection::TransactionNotFound(id))?;
    let mut next = tx.clone();
    let mut moves = Moves::default();
    match action {
        Action::Fund { escrow_id, .. } => {
            if !matches!(tx.state, State::Initiated | State::Quoted) {
                return Err(invalid(tx, State::Committed));
            }
            require_caller(caller, tx.requester)?;
            if kernel.paused() {
                return Err(Rejection::KernelIsPaused);
            }
            require_before_deadline(tx, now)?;
            if *escrow_id != tx.id {
                if !kernel.escrow_id_available(tx.requester, *escrow_id) {
                    return Err(Rejection::EscrowIdUnavailable(*escrow_id));
                }
                next.escrow_alias = Some(*escrow_id);
            }
            next.state = State::Committed;
            next.updated_at = stamp(now);
            next.escrowed = true;
            moves.pulled = tx.amount;
        }
        Action::AcceptQuote { new_amount } => {
            if tx.state != State::Quoted {
                return Err(Rejection::InvalidState {
                    id: tx.id,
                    state: tx.state,
                });
            }
            require_caller(caller, tx.requester)?;
            require_before_deadline(tx, now)?;
            next.amount = *new_amount;
            next.updated_at = stamp(now);
        }
        Action::ReleaseEscrow => {
            if tx.state != State::Delivered {
                return Err(invalid(tx, State::Settled));
            }
            moves = settle(tx, &mut next, caller, now, 0)?;
        }
        Action::ReleaseMilestone { amount } => {
            if tx.state != State::InProgress {
                return Err(Rejection::InvalidState {
                    id: tx.id,
                    state: tx.state,
                });
            }
            require_caller(caller, tx.requester)?;
            let left = tx.amount - tx.released;
            if amount.is_zero() || *amount > left {
                return Err(Rejection::InvalidMilestone {
                    amount: *amount,
                    remaining: left,
                });
            }
            next.released = tx.released + *amount;
            next.updated_at = stamp(now);
            let (net, fee) = fee::split(tx.released, *amount, tx.fee_bps);
            moves.to_provider = net;
            moves.fee = fee;
        }
        Action::AnchorAttestation { uid } => {
            if tx.state != State::Settled {
                return Err(Rejection::InvalidState {
                    id: tx.id,
                    state: tx.state,
                });
            }
            if caller != tx.provider && caller != tx.requester {
                return Err(Rejection::NotParty(caller));
            }
            next.attestation_uid = *uid;
        }
        Action::Transition { to, proof } => {
            moves = transition(tx, &mut next, *to, proof, caller, now, kernel)?;
        }
    }
    Ok(Outcome {
        transaction: next,
        moves,
    })
}

fn transition(
    tx: &Transaction,
    next: &mut Transaction,
    to: State,
    proof: &[u8],
    caller: Address,
    now: u64,
    kernel: &impl KernelView,
) -> Result<Moves, Rejection> {
    let from = tx.state;
    let proof_len = u(proof.len() as u64);
    let mut moves = Moves::default();
    match to {
        State::InProgress => {
            if from != State::Committed {
                return Err(invalid(tx, to));
            }
            require_caller(caller, tx.provider)?;
            require_before_deadline(tx, now)?;
            if !proof.is_empty() {
                return Err(Rejection::InvalidProofLength(proof_len));
            }
            next.state = State::InProgress;
            next.updated_at = stamp(now);
        }
        State::Delivered => {
            if from != State::InProgress {
                return Err(invalid(tx, to));
            }
            require_caller(caller, tx.provider)?;
            require_before_deadline(tx, now)?;
            let chosen = match proof.len() {
                0 => U256::ZERO,
                32 | 64 => U256::from_be_slice(&proof[..32]),
                _ => return Err(Rejection::InvalidProofLength(proof_len)),
            };
            let mut window = tx.dispute_window;
            if !chosen.is_zero() {
                if chosen < u(window) || chosen > u(MAX_DISPUTE_WINDOW) {
                    return Err(Rejection::DisputeWindowOutOfRange {
                        window: chosen,
                        min: u(window),
                        max: u(MAX_DISPUTE_WINDOW),
                    });
                }
                window = chosen.to::<u64>();
            }
            next.state = State::Delivered;
            next.updated_at = stamp(now);
            next.dispute_window = window;
            next.window_end = Some(now + window);
        }
        State::Settled if from == State::Delivered => {
            moves = settle(tx, next, caller, now, proof.len())?;
        }
        State::Settled | State::Cancelled if from == State::Disputed => {
            moves = resolve(tx, next, to, proof, caller, now, kernel)?;
        }
        State::Cancelled => {
            match from {
                State::Initiated | State::Quoted => {
                    require_caller(caller, tx.requester)?;
                    if !proof.is_empty() {
                        return Err(Rejection::InvalidProofLength(proof_len));
                    }
                }
                State::Committed | State::InProgress => {
                    if caller != tx.provider {
                        if caller != tx.requester {
                            return Err(Rejection::NotParty(caller));
                        }
                        if now <= tx.deadline {
                            return Err(Rejection::DeadlineNotPassed(u(tx.deadline)));
                        }
                    }
                    if !proof.is_empty() {
                        return Err(Rejection::InvalidProofLength(proof_len));
                    }
                    moves.to_requester = tx.amount - tx.released;
                }
                _ => return Err(invalid(tx, to)),
            }
            next.state = State::Cancelled;
            next.updated_at = stamp(now);
        }
        State::Disputed => {
            if from != State::Delivered {
                return Err(invalid(tx, to));
            }
            if caller != tx.provider && caller != tx.requester {
                return Err(Rejection::NotParty(caller));
            }
            let end = window_end(tx);
            if now > end {
                return Err(Rejection::DisputeWindowClosed(u(end)));
            }
            next.state = State::Disputed;
            next.updated_at = stamp(now);
            next.dispute_initiator = Some(caller);
        }
        State::Quoted => {
            if from != State::Initiated {
                return Err(invalid(tx, to));
            }
            require_caller(caller, tx.provider)?;
            require_before_deadline(tx, now)?;
            match proof.len() {
                0 => {}
                32 => {
                    let hash = B256::from_slice(proof);
                    if hash.is_zero() {
                        return Err(Rejection::ZeroQuoteHash);
                    }
                    next.metadata = hash;
                }
                _ => return Err(Rejection::InvalidProofLength(proof_len)),
            }
            next.state = State::Quoted;
            next.updated_at = stamp(now);
        }
        State::Initiated | State::Committed | State::Settled => return Err(invalid(tx, to)),
    }
    Ok(moves)
}

fn settle(
    tx: &Transaction,
    next: &mut Transaction,
    caller: Address,
    now: u64,
    proof_len: usize,
) -> Result<Moves, Rejection> {
    let end = window_end(tx);
    if caller != tx.requester && now <= end {
        return Err(Rejection::DisputeWindowOpen(u(end)));
    }
    if proof_len != 0 {
        return Err(Rejection::InvalidProofLength(u(proof_len as u64)));
    }
    let gross = tx.amount - tx.released;
    let (net, fee) = fee::split(tx.released, gross, tx.fee_bps);
    next.state = State::Settled;
    next.updated_at = stamp(now);
    Ok(Moves {
        to_provider: net,
        fee,
        ..Moves::default()
    })
}

fn resolve(
    tx: &Transaction,
    next: &mut Transaction,
    to: State,
    proof: &[u8],
    caller: Address,
    now: u64,
    kernel: &impl KernelView,
) -> Result<Moves, Rejection> {
    // A resolver never decides a dispute it is a party to.
    if !kernel.is_resolver(caller, now) || caller == tx.requester || caller == tx.provider {
        return Err(Rejection::NotResolver(caller));
    }
    if proof.len() != 64 && proof.len() != 96 {
        return Err(Rejection::InvalidProofLength(u(proof.len() as u64)));
    }
    let to_requester = U256::from_be_slice(&proof[..32]);
    let to_provider = U256::from_be_slice(&proof[32..64]);
    let left = tx.amount - tx.released;
    if to_requester > left || to_provider != left - to_requester {
        return Err(Rejection::ResolutionMismatch {
            to_requester,
            to_provider,
            remaining: left,
        });
    }
    let (net, fee) = fee::split(tx.released, to_provider, tx.fee_bps);
    next.state = to;
    next.updated_at = stamp(now);
    Ok(Moves {
        to_provider: net,
        fee,
        to_requester,
        ..Moves::default()
    })
}

/// The time a transition records: the kernel stores 32-bit seconds and saturates later times (after
/// 2106-02-07 a funded transaction can still be settled, refunded or resolved).
fn stamp(now: u64) -> u64 {
    now.min(MAX_TIMESTAMP)
}

fn window_end(tx: &Transaction) -> u64 {
    tx.window_end.unwrap_or(tx.updated_at + tx.dispute_window)
}

fn invalid(tx: &Transaction, to: State) -> Rejection {
    Rejection::InvalidTransition {
        id: tx.id,
        from: tx.state,
        to,
    }
}

fn require_caller(caller: Address, expected: Address) -> Result<(), Rejection> {
    if caller == expected {
        Ok(())
    } else {
        Err(Rejection::Unauthorized { caller, expected })
    }
}

fn require_before_deadline(tx: &Transaction, now: u64) -> Result<(), Rejection> {
    if now > tx.deadline {
        Err(Rejection::DeadlinePassed(u(tx.deadline)))
    } else {
        Ok(())
    }
}

/// The whole kernel in memory: transactions, nonces, escrow aliases, fees, governance and token balances.
#[derive(Debug, Clone)]
pub struct KernelModel {
    kernel: Address,
    admin: Address,
    /// When the admin may start resolving disputes: a new admin waits the mediator delay.
    admin_resolves_from: u64,
    pending_admin: Option<Address>,
    /// The pauser the admin named; `None`: the admin alone (after deployment and every admin transfer).
    pauser: Option<Address>,
    paused: bool,
    fee_bps: u16,
    pending_fee: Option<(u16, u64)>,
    fee_recipient: Address,
    accrued_fees: U256,
    mediators: HashMap<Address, u64>,
    transactions: HashMap<B256, Transaction>,
    nonces: HashMap<Address, u64>,
    /// (requester, alias) → transaction.
    aliases: HashMap<(Address, B256), B256>,
    /// alias → the one transaction linked under it, or `None` once several requesters linked it.
    alias_index: HashMap<B256, Option<B256>>,
    balances: HashMap<Address, U256>,
}

impl KernelView for KernelModel {
    fn kernel_address(&self) -> Address {
        self.kernel
    }

    fn paused(&self) -> bool {
        self.paused
    }

    fn is_resolver(&self, who: Address, now: u64) -> bool {
        (who == self.admin && now >= self.admin_resolves_from)
            || self
                .mediators
                .get(&who)
                .is_some_and(|from| *from != 0 && now >= *from)
    }

    fn escrow_id_available(&self, requester: Address, escrow_id: B256) -> bool {
        !escrow_id.is_zero()
            && !self.transactions.contains_key(&escrow_id)
            && !self.aliases.contains_key(&(requester, escrow_id))
    }
}

impl KernelModel {
    /// A freshly deployed kernel at `kernel` (no pauser named: the admin pauses).
    pub fn new(kernel: Address, admin: Address, fee_recipient: Address, fee_bps: u16) -> Self {
        KernelModel {
            kernel,
            admin,
            admin_resolves_from: 0,
            pending_admin: None,
            pauser: None,
            paused: false,
            fee_bps,
            pending_fee: None,
            fee_recipient,
            accrued_fees: U256::ZERO,
            mediators: HashMap::new(),
            transactions: HashMap::new(),
            nonces: HashMap::new(),
            aliases: HashMap::new(),
            alias_index: HashMap::new(),
            balances: HashMap::new(),
        }
    }

    /// Gives `to` tokens (the model's MockUSDC `mint`).
    pub fn mint(&mut self, to: Address, amount: U256) {
        *self.balances.entry(to).or_default() += amount;
    }

    /// Token balance of `who` (the kernel's own balance under its address).
    pub fn balance_of(&self, who: Address) -> U256 {
        self.balances.get(&who).copied().unwrap_or_default()
    }

    /// A transaction.
    pub fn transaction(&self, id: B256) -> Option<&Transaction> {
        self.transactions.get(&id)
    }

    /// Every transaction id.
    pub fn transaction_ids(&self) -> impl Iterator<Item = B256> + '_ {
        self.transactions.keys().copied()
    }

    /// The next nonce of `requester`.
    pub fn nonce(&self, requester: Address) -> u64 {
        self.nonces.get(&requester).copied().unwrap_or(0)
    }

    /// Fees accrued and not yet collected.
    pub fn accrued_fees(&self) -> U256 {
        self.accrued_fees
    }

    /// Current platform fee rate.
    pub fn platform_fee_bps(&self) -> u16 {
        self.fee_bps
    }

    /// `createTransaction` by `caller` naming `requester`.
    pub fn create_transaction(
        &mut self,
        caller: Address,
        requester: Address,
        terms: &CreateParams,
        now: u64,
    ) -> Result<(B256, Moves), Rejection> {
        if requester != caller {
            return Err(Rejection::RequesterMismatch { requester, caller });
        }
        self.create_inner(caller, terms, now, false)
    }

    /// `createAndFund` by `caller`.
    pub fn create_and_fund(
        &mut self,
        caller: Address,
        terms: &CreateParams,
        now: u64,
    ) -> Result<(B256, Moves), Rejection> {
        self.create_inner(caller, terms, now, true)
    }

    fn create_inner(
        &mut self,
        caller: Address,
        terms: &CreateParams,
        now: u64,
        funded: bool,
    ) -> Result<(B256, Moves), Rejection> {
        let nonce = self.nonce(caller);
        let ctx = CreateContext {
            now,
            nonce,
            platform_fee_bps: self.fee_bps,
            paused: self.paused,
            funded,
        };
        let out = create(terms, caller, ctx, |id| self.transactions.contains_key(&id))?;
        let id = out.transaction.id;
        // An id the requester already uses as an alias would name two escrows.
        if self.aliases.contains_key(&(caller, id)) {
            return Err(Rejection::EscrowIdUnavailable(id));
        }
        self.nonces.insert(caller, nonce + 1);
        self.transactions.insert(id, out.transaction);
        self.book(caller, Address::ZERO, out.moves);
        Ok((id, out.moves))
    }

    /// Any action on an existing transaction by `caller` at `now`.
    pub fn act(
        &mut self,
        id: B256,
        action: &Action,
        caller: Address,
        now: u64,
    ) -> Result<Moves, Rejection> {
        let out = apply(self.transactions.get(&id), id, action, caller, now, self)?;
        let (requester, provider) = (out.transaction.requester, out.transaction.provider);
        if let (Action::Fund { .. }, Some(alias)) = (action, out.transaction.escrow_alias) {
            self.aliases.insert((requester, alias), id);
            self.alias_index
                .entry(alias)
                .and_modify(|only| *only = None)
                .or_insert(Some(id));
        }
        self.transactions.insert(id, out.transaction);
        self.book(requester, provider, out.moves);
        Ok(out.moves)
    }

    /// The transaction `escrow_id` names for `requester`: its own alias, else a transaction id.
    fn escrow_for(&self, escrow_id: B256, requester: Address) -> Option<&Transaction> {
        let id = self
            .aliases
            .get(&(requester, escrow_id))
            .copied()
            .unwrap_or(escrow_id);
        self.transactions.get(&id)
    }

    /// The vault view `remaining(escrow_id)` called by `caller`: the caller's own alias, else a transaction
    /// id, else an alias only one requester linked.
    pub fn remaining_of(&self, escrow_id: B256, caller: Address) -> U256 {
        let tx = self.escrow_for(escrow_id, caller).or_else(|| {
            let only = self.alias_index.get(&escrow_id).copied().flatten()?;
            self.transactions.get(&only)
        });
        tx.map(Transaction::remaining).unwrap_or_default()
    }

    /// The vault view `verifyEscrow(escrow_id, requester, provider, amount)`: `requester`'s own alias, else a
    /// transaction id; active when funded, not terminal, the parties match and at least `amount` is held.
    pub fn verify_escrow(
        &self,
        escrow_id: B256,
        requester: Address,
        provider: Address,
        amount: U256,
    ) -> (bool, U256) {
        match self.escrow_for(escrow_id, requester) {
            Some(tx) if tx.escrowed && !tx.state.is_terminal() => {
                let held = tx.remaining();
                (
                    tx.requester == requester && tx.provider == provider && held >= amount,
                    held,
                )
            }
            _ => (false, U256::ZERO),
        }
    }

    /// `settleBatch`: settles each DELIVERED id `caller` may settle now, skips the rest; returns the count.
    pub fn settle_batch(&mut self, ids: &[B256], caller: Address, now: u64) -> (u64, Moves) {
        let mut settled = 0;
        let mut total = Moves::default();
        for id in ids {
            let Some(tx) = self.transactions.get(id) else {
                continue;
            };
            if tx.state != State::Delivered || (caller != tx.requester && now <= window_end(tx)) {
                continue;
            }
            if let Ok(moves) = self.act(*id, &Action::ReleaseEscrow, caller, now) {
                settled += 1;
                total.add(moves);
            }
        }
        (settled, total)
    }

    /// `collectFees` (anyone): pays accrued fees to the fee recipient.
    pub fn collect_fees(&mut self) -> Result<U256, Rejection> {
        if self.accrued_fees.is_zero() {
            return Err(Rejection::NoFeesAccrued);
        }
        let amount = std::mem::take(&mut self.accrued_fees);
        self.transfer(self.kernel, self.fee_recipient, amount);
        Ok(amount)
    }

    /// `pause` by `caller`.
    pub fn pause(&mut self, caller: Address) -> Result<(), Rejection> {
        self.require_pauser(caller)?;
        self.paused = true;
        Ok(())
    }

    /// `unpause` by `caller`.
    pub fn unpause(&mut self, caller: Address) -> Result<(), Rejection> {
        self.require_pauser(caller)?;
        self.paused = false;
        Ok(())
    }

    /// `scheduleFeeChange` by `caller` at `now`.
    pub fn schedule_fee_change(
        &mut self,
        caller: Address,
        fee_bps: u16,
        now: u64,
    ) -> Result<(), Rejection> {
        self.require_admin(caller)?;
        if fee_bps > MAX_PLATFORM_FEE_BPS {
            return Err(Rejection::FeeAboveCap {
                fee_bps: U256::from(fee_bps),
                cap: U256::from(MAX_PLATFORM_FEE_BPS),
            });
        }
        self.pending_fee = Some((fee_bps, now + FEE_CHANGE_DELAY));
        Ok(())
    }

    /// `executeFeeChange` (anyone) at `now`.
    pub fn execute_fee_change(&mut self, now: u64) -> Result<(), Rejection> {
        let (bps, after) = self.pending_fee.ok_or(Rejection::NoPendingFeeChange)?;
        if now < after {
            return Err(Rejection::FeeChangeNotReady(u(after)));
        }
        self.fee_bps = bps;
        self.pending_fee = None;
        Ok(())
    }

    /// `setMediator` by `caller` at `now`.
    pub fn set_mediator(
        &mut self,
        caller: Address,
        mediator: Address,
        approved: bool,
        now: u64,
    ) -> Result<(), Rejection> {
        self.require_admin(caller)?;
        if mediator == Address::ZERO {
            return Err(Rejection::ZeroAddress);
        }
        let entry = self.mediators.entry(mediator).or_insert(0);
        if approved {
            if *entry == 0 {
                *entry = now + MEDIATOR_DELAY;
            }
        } else {
            *entry = 0;
        }
        Ok(())
    }

    /// `transferAdmin` by `caller`.
    pub fn transfer_admin(&mut self, caller: Address, new_admin: Address) -> Result<(), Rejection> {
        self.require_admin(caller)?;
        if new_admin == Address::ZERO {
            return Err(Rejection::ZeroAddress);
        }
        self.pending_admin = Some(new_admin);
        Ok(())
    }

    /// `acceptAdmin` by `caller` at `now`. The pause power moves with the role (a pauser the old admin named is
    /// reset); the new admin resolves disputes only after the mediator delay.
    pub fn accept_admin(&mut self, caller: Address, now: u64) -> Result<(), Rejection> {
        if self.pending_admin != Some(caller) {
            return Err(Rejection::NotPendingAdmin(caller));
        }
        self.admin = caller;
        self.admin_resolves_from = now + MEDIATOR_DELAY;
        self.pending_admin = None;
        self.pauser = None;
        Ok(())
    }

    /// `setPauser` by `caller`.
    pub fn set_pauser(&mut self, caller: Address, pauser: Address) -> Result<(), Rejection> {
        self.require_admin(caller)?;
        if pauser == Address::ZERO {
            return Err(Rejection::ZeroAddress);
        }
        self.pauser = Some(pauser);
        Ok(())
    }

    /// The admin.
    pub fn admin(&self) -> Address {
        self.admin
    }

    /// Who may pause besides the admin: the named pauser, or the admin when none is named (the `pauser` view).
    pub fn pauser(&self) -> Address {
        self.pauser.unwrap_or(self.admin)
    }

    fn require_admin(&self, caller: Address) -> Result<(), Rejection> {
        if caller == self.admin {
            Ok(())
        } else {
            Err(Rejection::NotAdmin(caller))
        }
    }

    fn require_pauser(&self, caller: Address) -> Result<(), Rejection> {
        if Some(caller) == self.pauser || caller == self.admin {
            Ok(())
        } else {
            Err(Rejection::NotPauser(caller))
        }
    }

    fn book(&mut self, requester: Address, provider: Address, moves: Moves) {
        let kernel = self.kernel;
        self.transfer(requester, kernel, moves.pulled);
        self.transfer(kernel, provider, moves.to_provider);
        self.transfer(kernel, requester, moves.to_requester);
        self.accrued_fees += moves.fee;
    }

    fn transfer(&mut self, from: Address, to: Address, amount: U256) {
        if amount.is_zero() {
            return;
        }
        let from_balance = self.balances.entry(from).or_default();
        *from_balance = from_balance.saturating_sub(amount);
        *self.balances.entry(to).or_default() += amount;
    }
}
