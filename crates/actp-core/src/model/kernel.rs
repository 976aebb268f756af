//! [`KernelModel`]: the whole kernel in memory, on top of the lifecycle rules.

use std::collections::HashMap;

use alloy_primitives::{Address, B256, U256};

use super::{
    Action, CreateContext, CreateParams, KernelView, Moves, Transaction, apply, create,
    lifecycle::window_end, session, u,
};
use crate::{Rejection, State, limits::*};

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

    /// `openSession` by `caller`: a funded (COMMITTED) transaction whose provider may close it with the
    /// requester's voucher, and whose requester may end it with `grace` seconds' notice.
    pub fn open_session(
        &mut self,
        caller: Address,
        terms: &CreateParams,
        grace: u64,
        now: u64,
    ) -> Result<(B256, Moves), Rejection> {
        session::check_grace(grace)?;
        let (id, moves) = self.create_inner(caller, terms, now, true)?;
        if let Some(tx) = self.transactions.get_mut(&id) {
            tx.session = Some(session::Session {
                grace,
                close_by: 0,
                claimed: U256::ZERO,
            });
        }
        Ok((id, moves))
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
