//! The lifecycle and governance calls: create, fund, transition, settle (one or a batch), dispute, resolve,
//! cancel, milestones, quotes, fees, pause, mediators, and the dev token's mint.

use super::*;

impl Kernel {
    // ------------------------------------------------------------------------------------------------
    // Lifecycle
    // ------------------------------------------------------------------------------------------------

    /// `createTransaction` with the signer as requester; returns the transaction id.
    pub async fn create(&self, terms: &CreateParams) -> Result<B256> {
        let requester = self.require_signer()?;
        self.create_naming(requester, terms).await
    }

    /// `createTransaction` naming `requester` as given. The kernel accepts only the signer itself
    /// ([`Rejection::RequesterMismatch`](actp_core::Rejection) otherwise); prefer [`Kernel::create`].
    pub async fn create_naming(&self, requester: Address, terms: &CreateParams) -> Result<B256> {
        let call = EscrowKernel::createTransactionCall {
            provider: terms.provider,
            requester,
            amount: terms.amount,
            deadline: terms.deadline,
            disputeWindow: terms.dispute_window,
            serviceHash: terms.service_hash,
            agentId: terms.agent_id,
            requesterAgentId: terms.requester_agent_id,
        };
        let sent = self.send_call(call.abi_encode()).await?;
        created_id(&sent)
    }

    /// `approve(kernel, amount)` on the token (exactly the amount, as ACTP v3 clients do).
    pub async fn approve(&self, amount: U256) -> Result<Sent> {
        let call = MockUSDC::approveCall {
            spender: self.address,
            value: amount,
        };
        self.send(Some(self.token), call.abi_encode().into()).await
    }

    /// Approves the kernel for `amount` unless the allowance already covers it.
    pub async fn ensure_allowance(&self, amount: U256) -> Result<()> {
        let owner = self.require_signer()?;
        if self.allowance(owner).await? < amount {
            self.approve(amount).await?;
        }
        Ok(())
    }

    /// `linkEscrow(id, kernel, id)`: funds a created transaction (needs an allowance).
    pub async fn fund(&self, id: B256) -> Result<Sent> {
        let call = EscrowKernel::linkEscrowCall {
            transactionId: id,
            escrowContract: self.address,
            escrowId: id,
        };
        self.send_call(call.abi_encode()).await
    }

    /// `createAndFund`: creates and funds in one transaction (needs an allowance); returns the id.
    pub async fn create_and_fund(&self, terms: &CreateParams) -> Result<B256> {
        let call = EscrowKernel::createAndFundCall {
            provider: terms.provider,
            amount: terms.amount,
            deadline: terms.deadline,
            disputeWindow: terms.dispute_window,
            serviceHash: terms.service_hash,
            agentId: terms.agent_id,
            requesterAgentId: terms.requester_agent_id,
        };
        let sent = self.send_call(call.abi_encode()).await?;
        created_id(&sent)
    }

    /// Approves exactly the amount if needed, then `createAndFund`: the whole payment from a consumer.
    pub async fn pay(&self, terms: &CreateParams) -> Result<B256> {
        self.ensure_allowance(terms.amount).await?;
        self.create_and_fund(terms).await
    }

    /// `transitionState(id, to, proof)`.
    pub async fn transition(&self, id: B256, to: State, proof: Vec<u8>) -> Result<Sent> {
        let call = EscrowKernel::transitionStateCall {
            transactionId: id,
            newState: to.code(),
            proof: proof.into(),
        };
        self.send_call(call.abi_encode()).await
    }

    /// Provider: COMMITTED → IN_PROGRESS.
    pub async fn start(&self, id: B256) -> Result<Sent> {
        self.transition(id, State::InProgress, Vec::new()).await
    }

    /// Provider: IN_PROGRESS → DELIVERED, with a window (0: the requester's) and optionally a proof hash.
    pub async fn deliver(&self, id: B256, window: u64, proof_hash: Option<B256>) -> Result<Sent> {
        self.transition(
            id,
            State::Delivered,
            actp_core::proof::delivery_proof_bytes(window, proof_hash),
        )
        .await
    }

    /// DELIVERED → SETTLED (the requester at any time, anyone after the window).
    pub async fn settle(&self, id: B256) -> Result<Sent> {
        self.transition(id, State::Settled, Vec::new()).await
    }

    /// `settleBatch`: settles the ids that are due for the caller, skips the rest; returns how many settled.
    pub async fn settle_batch(&self, ids: &[B256]) -> Result<(u64, Sent)> {
        let call = EscrowKernel::settleBatchCall {
            transactionIds: ids.to_vec(),
        };
        let sent = self.send_call(call.abi_encode()).await?;
        let settled = sent
            .logs
            .iter()
            .filter_map(|l| EscrowKernel::StateTransitioned::decode_log(&l.inner).ok())
            .filter(|e| e.newState == State::Settled.code())
            .count() as u64;
        Ok((settled, sent))
    }

    /// DELIVERED → DISPUTED, with optional reason bytes (not stored).
    pub async fn dispute(&self, id: B256, reason: Vec<u8>) -> Result<Sent> {
        self.transition(id, State::Disputed, reason).await
    }

    /// Resolver: DISPUTED → `to`, splitting what remains.
    pub async fn resolve(
        &self,
        id: B256,
        to: State,
        to_requester: U256,
        to_provider: U256,
    ) -> Result<Sent> {
        let mut proof = to_requester.to_be_bytes::<32>().to_vec();
        proof.extend_from_slice(&to_provider.to_be_bytes::<32>());
        self.transition(id, to, proof).await
    }

    /// → CANCELLED outside a dispute.
    pub async fn cancel(&self, id: B256) -> Result<Sent> {
        self.transition(id, State::Cancelled, Vec::new()).await
    }

    /// Requester: pays part of an IN_PROGRESS escrow now.
    pub async fn release_milestone(&self, id: B256, amount: U256) -> Result<Sent> {
        self.send_call(
            EscrowKernel::releaseMilestoneCall {
                transactionId: id,
                amount,
            }
            .abi_encode(),
        )
        .await
    }

    /// Provider: INITIATED → QUOTED.
    pub async fn quote(&self, id: B256, quote_hash: Option<B256>) -> Result<Sent> {
        self.transition(
            id,
            State::Quoted,
            quote_hash.map(|h| h.to_vec()).unwrap_or_default(),
        )
        .await
    }

    /// Requester: accepts a quoted amount.
    pub async fn accept_quote(&self, id: B256, new_amount: U256) -> Result<Sent> {
        self.send_call(
            EscrowKernel::acceptQuoteCall {
                transactionId: id,
                newAmount: new_amount,
            }
            .abi_encode(),
        )
        .await
    }

    /// Anyone: pays accrued fees to the fee recipient.
    pub async fn collect_fees(&self) -> Result<Sent> {
        self.send_call(EscrowKernel::collectFeesCall {}.abi_encode())
            .await
    }

    /// Pauser: stops new transactions and funding.
    pub async fn pause(&self) -> Result<Sent> {
        self.send_call(EscrowKernel::pauseCall {}.abi_encode())
            .await
    }

    /// Pauser: lifts the pause.
    pub async fn unpause(&self) -> Result<Sent> {
        self.send_call(EscrowKernel::unpauseCall {}.abi_encode())
            .await
    }

    /// Admin: approves or revokes a mediator.
    pub async fn set_mediator(&self, mediator: Address, approved: bool) -> Result<Sent> {
        self.send_call(EscrowKernel::setMediatorCall { mediator, approved }.abi_encode())
            .await
    }

    /// Dev token only: mints `amount` to `to` (MockUSDC's open `mint`).
    pub async fn mint(&self, to: Address, amount: U256) -> Result<Sent> {
        self.send(
            Some(self.token),
            MockUSDC::mintCall { to, amount }.abi_encode().into(),
        )
        .await
    }
}
