//! What the kernel reports: a transaction's record (`getTransaction`), a mined call, a creation event.

use actp_core::{Address, B256, State, U256};
use alloy::rpc::types::Log;

use crate::{ClientError, Result, bindings::IACTPKernel::TransactionView};

/// A transaction as the kernel reports it (`getTransaction`), with typed state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TransactionRecord {
    /// The transaction id.
    pub id: B256,
    /// The requester.
    #[serde(with = "actp_core::checksum")]
    pub requester: Address,
    /// The provider.
    #[serde(with = "actp_core::checksum")]
    pub provider: Address,
    /// Lifecycle state.
    pub state: State,
    /// Escrow amount (base units).
    pub amount: U256,
    /// Creation time.
    pub created_at: u64,
    /// Last change.
    pub updated_at: u64,
    /// Deadline.
    pub deadline: u64,
    /// Service hash.
    pub service_hash: B256,
    /// The escrow vault (the kernel) once funded, else zero.
    #[serde(with = "actp_core::checksum")]
    pub escrow_contract: Address,
    /// The escrow id once funded, else zero.
    pub escrow_id: B256,
    /// Anchored attestation uid.
    pub attestation_uid: B256,
    /// Before delivery the window in seconds; from delivery on the unix time it ends (v3 convention).
    pub dispute_window: u64,
    /// Quote hash.
    pub metadata: B256,
    /// Locked fee rate.
    pub fee_bps: u16,
    /// Provider agent id.
    pub agent_id: U256,
    /// Requester agent id.
    pub requester_agent_id: U256,
    /// Who opened the dispute (zero if none).
    #[serde(with = "actp_core::checksum")]
    pub dispute_initiator: Address,
}

impl TransactionRecord {
    /// When the dispute window ends, once delivered.
    pub fn window_end(&self) -> Option<u64> {
        (self.dispute_window > actp_core::limits::MAX_DISPUTE_WINDOW).then_some(self.dispute_window)
    }

    /// The record of a `getTransaction` answer; a state code this client does not know is an error, never
    /// read as some other state.
    pub(crate) fn from_view(v: TransactionView) -> Result<Self> {
        let state = State::try_from(v.state).map_err(|_| ClientError::UnknownState {
            id: v.transactionId,
            code: v.state,
        })?;
        Ok(TransactionRecord {
            id: v.transactionId,
            requester: v.requester,
            provider: v.provider,
            state,
            amount: v.amount,
            created_at: v.createdAt.saturating_to(),
            updated_at: v.updatedAt.saturating_to(),
            deadline: v.deadline.saturating_to(),
            service_hash: v.serviceHash,
            escrow_contract: v.escrowContract,
            escrow_id: v.escrowId,
            attestation_uid: v.attestationUID,
            dispute_window: v.disputeWindow.saturating_to(),
            metadata: v.metadata,
            fee_bps: v.platformFeeBpsLocked,
            agent_id: v.agentId,
            requester_agent_id: v.requesterAgentId,
            dispute_initiator: v.disputeInitiator,
        })
    }
}

/// A mined kernel transaction.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Its hash.
    pub tx_hash: B256,
    /// Gas used.
    pub gas_used: u64,
    /// Block it was included in.
    pub block_number: u64,
    /// Its logs.
    pub logs: Vec<Log>,
    /// The deployed contract, for a deployment.
    pub contract_address: Option<Address>,
}

/// A transaction as its `TransactionCreated` event tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// The transaction id.
    pub id: B256,
    /// The provider.
    pub provider: Address,
    /// The amount (base units).
    pub amount: U256,
    /// The service hash.
    pub service_hash: B256,
    /// The block it was created in.
    pub block: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_state_code_is_an_error_not_initiated() {
        let view = |state: u8| {
            use alloy::sol_types::SolValue;
            let mut v =
                TransactionView::abi_decode(&[0u8; 21 * 32]).unwrap_or_else(|_| unreachable!());
            v.transactionId = B256::repeat_byte(1);
            v.state = state;
            v
        };
        assert_eq!(
            TransactionRecord::from_view(view(4)).map(|r| r.state).ok(),
            Some(State::Delivered)
        );
        match TransactionRecord::from_view(view(9)) {
            Err(ClientError::UnknownState { code, .. }) => assert_eq!(code, 9),
            other => panic!("expected UnknownState, got {other:?}"),
        }
    }
}
