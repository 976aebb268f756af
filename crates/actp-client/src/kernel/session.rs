//! Sessions on the kernel: open, top up, end, close, and the session's terms (see `IKernelSessions`).

use actp_core::{B256, U256, session::VoucherHeader};
use alloy::sol_types::SolCall;

use super::{Kernel, Sent, contract_error, created_id};
use crate::{Result, bindings::EscrowKernel};

/// What a session is beyond its transaction view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTerms {
    /// The grace period in seconds: how long the provider may still close after the requester asks to end.
    pub grace: u64,
    /// Zero until the requester asks to end; then the last second the provider may close.
    pub close_by: u64,
    /// The provider's claim once it closed.
    pub claimed: U256,
}

/// What a session is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenSession {
    /// The provider.
    pub provider: actp_core::Address,
    /// The deposit in token base units.
    pub deposit: U256,
    /// Unix time by which the provider must close.
    pub deadline: u64,
    /// The requester's dispute window after the close, in seconds.
    pub dispute_window: u64,
    /// Names the service (or the set of services) the session pays for.
    pub service_hash: B256,
    /// The grace period in seconds.
    pub grace: u64,
}

impl Kernel {
    /// `openSession` with the signer as requester (needs an allowance for the deposit); returns the session's
    /// transaction id.
    pub async fn open_session(&self, terms: &OpenSession) -> Result<B256> {
        let call = EscrowKernel::openSessionCall {
            provider: terms.provider,
            deposit: terms.deposit,
            deadline: U256::from(terms.deadline),
            disputeWindow: U256::from(terms.dispute_window),
            serviceHash: terms.service_hash,
            grace: U256::from(terms.grace),
        };
        let sent = self.send_call(call.abi_encode()).await?;
        created_id(&sent)
    }

    /// Approves exactly the deposit if needed, then opens the session.
    pub async fn pay_session(&self, terms: &OpenSession) -> Result<B256> {
        self.ensure_allowance(terms.deposit).await?;
        self.open_session(terms).await
    }

    /// Requester: adds `amount` to an open session's deposit (needs an allowance).
    pub async fn top_up_session(&self, id: B256, amount: U256) -> Result<Sent> {
        self.send_call(
            EscrowKernel::topUpSessionCall {
                transactionId: id,
                amount,
            }
            .abi_encode(),
        )
        .await
    }

    /// Requester: asks to end the session; the provider may close until now + grace, then the requester
    /// cancels for the whole deposit.
    pub async fn end_session(&self, id: B256) -> Result<Sent> {
        self.send_call(EscrowKernel::endSessionCall { transactionId: id }.abi_encode())
            .await
    }

    /// Provider: closes the session claiming `claim` under the requester's `voucher` for the call named by
    /// `request_hash`, with `proof_hash` committing to the session's receipts.
    pub async fn close_session(
        &self,
        id: B256,
        claim: U256,
        voucher: &VoucherHeader,
        request_hash: B256,
        proof_hash: B256,
    ) -> Result<Sent> {
        self.send_call(
            EscrowKernel::closeSessionCall {
                transactionId: id,
                claim,
                cumulative: voucher.cumulative,
                requestHash: request_hash,
                expiresAt: U256::from(voucher.expires_at),
                signature: voucher.signature.as_bytes().to_vec().into(),
                proofHash: proof_hash,
            }
            .abi_encode(),
        )
        .await
    }

    /// Provider: closes the session with nothing claimed (no voucher needed): the whole deposit goes back.
    pub async fn close_session_empty(&self, id: B256, proof_hash: B256) -> Result<Sent> {
        self.send_call(
            EscrowKernel::closeSessionCall {
                transactionId: id,
                claim: U256::ZERO,
                cumulative: U256::ZERO,
                requestHash: B256::ZERO,
                expiresAt: U256::ZERO,
                signature: Default::default(),
                proofHash: proof_hash,
            }
            .abi_encode(),
        )
        .await
    }

    /// The session's terms, or `None` for an ordinary transaction (or an unknown id).
    pub async fn session_of(&self, id: B256) -> Result<Option<SessionTerms>> {
        let terms = self
            .config
            .retry
            .run("sessionOf", || async {
                self.contract()
                    .sessionOf(id)
                    .call()
                    .await
                    .map_err(contract_error)
            })
            .await?;
        Ok(terms.isSession.then(|| SessionTerms {
            grace: terms.grace.saturating_to(),
            close_by: terms.closeBy.saturating_to(),
            claimed: terms.claimed,
        }))
    }
}
