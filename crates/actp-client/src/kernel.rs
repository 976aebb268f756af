//! The `Kernel` client: every kernel operation over any alloy provider, with a local signer.
//!
//! Sending is done here rather than by alloy's fillers so that it is safe under concurrency and transient
//! failures: a nonce is reserved under a lock (many calls from one signer may be in flight at once), each
//! transaction is estimated first (a revert comes back as a typed [`Rejection`](actp_core::Rejection)
//! before any nonce is used), signed once, re-sent unchanged when the RPC fails transiently (the same bytes,
//! so never twice), and awaited to its receipt with a timeout. It never logs keys or RPC URLs.

use std::{sync::Arc, time::Duration};

use actp_core::{Address, B256, State, U256, model::CreateParams};
use alloy::{
    consensus::TxEnvelope,
    eips::{BlockId, Encodable2718},
    network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder},
    primitives::{Bytes, TxKind},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::{Log, TransactionReceipt, TransactionRequest},
    sol_types::{SolCall, SolEvent},
    transports::{RpcError, TransportErrorKind},
};
use tokio::sync::Mutex;

use crate::{
    ClientError, Result, RetryPolicy, Signer,
    bindings::{EscrowKernel, MockUSDC},
    error::decode_revert,
};

/// Tunables of a [`Kernel`] client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Retries of transient RPC failures.
    pub retry: RetryPolicy,
    /// How long to wait for a receipt before giving up with [`ClientError::ReceiptTimeout`].
    pub receipt_timeout: Duration,
    /// Longest pause between receipt polls (polling starts fast and backs off to this).
    pub poll_interval: Duration,
    /// Blocks on top of the including block before a receipt counts (0: included is enough).
    pub confirmations: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            retry: RetryPolicy::default(),
            receipt_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(500),
            confirmations: 0,
        }
    }
}

/// A transaction as the kernel reports it (`getTransaction`), with typed state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TransactionRecord {
    /// The transaction id.
    pub id: B256,
    /// The requester.
    pub requester: Address,
    /// The provider.
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
    pub dispute_initiator: Address,
}

impl TransactionRecord {
    /// When the dispute window ends, once delivered.
    pub fn window_end(&self) -> Option<u64> {
        (self.dispute_window > actp_core::limits::MAX_DISPUTE_WINDOW).then_some(self.dispute_window)
    }

    fn from_view(v: crate::bindings::IACTPKernel::TransactionView) -> Self {
        TransactionRecord {
            id: v.transactionId,
            requester: v.requester,
            provider: v.provider,
            state: State::try_from(v.state).unwrap_or(State::Initiated),
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
        }
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

struct Account {
    signer: Signer,
    wallet: EthereumWallet,
    /// The next nonce to use; `None` until read from the chain, or after a send that may have left a gap.
    next_nonce: Mutex<Option<u64>>,
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

/// The nonce lock of one send, held until the node has the transaction. Dropped before that (an error, or
/// the caller's future cancelled mid-send), it forgets the next nonce so the following send reads it from the
/// chain: a reserved nonce that never reached the node would otherwise leave a gap that every later
/// transaction of the signer waits behind.
struct NonceSlot<'a> {
    next: tokio::sync::MutexGuard<'a, Option<u64>>,
    sent: bool,
}

impl Drop for NonceSlot<'_> {
    fn drop(&mut self) {
        if !self.sent {
            *self.next = None;
        }
    }
}

/// A client of one escrow kernel. Cheap to clone; clones share the signer's nonce sequence.
#[derive(Clone)]
pub struct Kernel {
    provider: DynProvider,
    address: Address,
    token: Address,
    chain_id: u64,
    account: Option<Arc<Account>>,
    config: ClientConfig,
    /// Fee estimate shared by clones, reused for a short while: pipelined sends need not each ask.
    fees: Arc<
        Mutex<
            Option<(
                tokio::time::Instant,
                alloy::eips::eip1559::Eip1559Estimation,
            )>,
        >,
    >,
}

/// How long a fee estimate is reused.
/// How many times a transaction the node dropped is signed and sent again.
const MAX_RESENDS: u32 = 5;

/// How long a transaction may go without a receipt before the client asks whether the node still has it.
const DROP_CHECK_AFTER: Duration = Duration::from_secs(2);

/// How many times a send starts over after another sender took its nonce.
const NONCE_CONFLICT_RETRIES: u32 = 4;

/// The node refused a transaction because its nonce was used (by another process with the same key).
fn is_nonce_conflict(error: &ClientError) -> bool {
    let ClientError::Rpc { message, .. } = error else {
        return false;
    };
    let m = message.to_ascii_lowercase();
    m.contains("nonce too low")
        || m.contains("replacement transaction underpriced")
        || m.contains("nonce has already been used")
}

const FEE_CACHE: Duration = Duration::from_secs(2);

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("address", &self.address)
            .field("chain_id", &self.chain_id)
            .field("signer", &self.account.as_ref().map(|a| a.signer.address()))
            .finish_non_exhaustive()
    }
}

/// A contract view call, retried on transient RPC errors, with reverts decoded.
macro_rules! read {
    ($self:ident, $what:literal, $call:expr) => {
        $self
            .config
            .retry
            .run($what, || async {
                $call.call().await.map_err(contract_error)
            })
            .await
    };
}

fn rpc_error(err: RpcError<TransportErrorKind>) -> ClientError {
    if let Some(data) = err
        .as_error_resp()
        .and_then(|payload| payload.as_revert_data())
    {
        return decode_revert(&data);
    }
    ClientError::rpc(err)
}

fn contract_error(err: alloy::contract::Error) -> ClientError {
    match err {
        alloy::contract::Error::TransportError(e) => rpc_error(e),
        other => ClientError::rpc(other),
    }
}

/// An alloy provider over the HTTP JSON-RPC endpoint `rpc_url`, without fillers (this client fills itself).
fn http_provider(rpc_url: &str) -> Result<DynProvider> {
    let url = rpc_url
        .parse()
        .map_err(|_| ClientError::Config("the RPC URL is not a valid URL".into()))?;
    Ok(ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url)
        .erased())
}

impl Kernel {
    /// Connects to the kernel at `kernel` through the HTTP JSON-RPC endpoint `rpc_url`.
    pub async fn connect(
        rpc_url: &str,
        kernel: Address,
        signer: Option<Signer>,
        config: ClientConfig,
    ) -> Result<Self> {
        let provider = http_provider(rpc_url)?;
        Kernel::new(provider, kernel, signer, config).await
    }

    /// A client over any alloy provider (`provider.erased()`); reads the chain id and the token once.
    pub async fn new(
        provider: DynProvider,
        kernel: Address,
        signer: Option<Signer>,
        config: ClientConfig,
    ) -> Result<Self> {
        let chain_id = config
            .retry
            .run("chain id", || async {
                provider.get_chain_id().await.map_err(rpc_error)
            })
            .await?;
        let token = config
            .retry
            .run("token", || async {
                EscrowKernel::new(kernel, &provider)
                    .token()
                    .call()
                    .await
                    .map_err(contract_error)
            })
            .await?;
        let account = signer.map(|signer| {
            let wallet = EthereumWallet::from(signer.inner().clone());
            Arc::new(Account {
                signer,
                wallet,
                next_nonce: Mutex::new(None),
            })
        });
        Ok(Kernel {
            provider,
            address: kernel,
            token,
            chain_id,
            account,
            config,
            fees: Arc::default(),
        })
    }

    /// A client with a signer but no kernel yet, over the HTTP JSON-RPC endpoint `rpc_url`.
    pub async fn connect_for_deployment(
        rpc_url: &str,
        signer: Signer,
        config: ClientConfig,
    ) -> Result<Self> {
        let provider = http_provider(rpc_url)?;
        Kernel::for_deployment(provider, signer, config).await
    }

    /// A client with a signer but no kernel yet, to deploy one (see [`crate::deploy()`]).
    pub async fn for_deployment(
        provider: DynProvider,
        signer: Signer,
        config: ClientConfig,
    ) -> Result<Self> {
        let chain_id = config
            .retry
            .run("chain id", || async {
                provider.get_chain_id().await.map_err(rpc_error)
            })
            .await?;
        let wallet = EthereumWallet::from(signer.inner().clone());
        let account = Some(Arc::new(Account {
            signer,
            wallet,
            next_nonce: Mutex::new(None),
        }));
        Ok(Kernel {
            provider,
            address: Address::ZERO,
            token: Address::ZERO,
            chain_id,
            account,
            config,
            fees: Arc::default(),
        })
    }

    /// This client pointed at another kernel (keeps the signer and its nonce sequence).
    pub async fn at(&self, kernel: Address) -> Result<Self> {
        let token = self
            .config
            .retry
            .run("token", || async {
                EscrowKernel::new(kernel, &self.provider)
                    .token()
                    .call()
                    .await
                    .map_err(contract_error)
            })
            .await?;
        Ok(Kernel {
            address: kernel,
            token,
            ..self.clone()
        })
    }

    /// The same kernel, acting as `signer` (a separate nonce sequence).
    pub fn with_signer(&self, signer: Signer) -> Self {
        let wallet = EthereumWallet::from(signer.inner().clone());
        Kernel {
            account: Some(Arc::new(Account {
                signer,
                wallet,
                next_nonce: Mutex::new(None),
            })),
            ..self.clone()
        }
    }

    /// The kernel address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The escrow token address.
    pub fn token(&self) -> Address {
        self.token
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The EIP-712 domain for signatures bound to this kernel.
    pub fn domain(&self) -> alloy::sol_types::Eip712Domain {
        actp_core::eip712::actp_domain(self.chain_id, self.address)
    }

    /// The provider.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The signer's address, if the client has one.
    pub fn signer_address(&self) -> Option<Address> {
        self.account.as_ref().map(|a| a.signer.address())
    }

    /// The signer, if any.
    pub fn signer(&self) -> Option<&Signer> {
        self.account.as_ref().map(|a| &a.signer)
    }

    fn contract(&self) -> EscrowKernel::EscrowKernelInstance<&DynProvider> {
        EscrowKernel::new(self.address, &self.provider)
    }

    fn token_contract(&self) -> MockUSDC::MockUSDCInstance<&DynProvider> {
        MockUSDC::new(self.token, &self.provider)
    }

    // ------------------------------------------------------------------------------------------------
    // Reads
    // ------------------------------------------------------------------------------------------------

    /// `getTransaction`; a missing id is [`Rejection::TransactionNotFound`](actp_core::Rejection).
    pub async fn get(&self, id: B256) -> Result<TransactionRecord> {
        let view = read!(self, "getTransaction", self.contract().getTransaction(id))?;
        Ok(TransactionRecord::from_view(view))
    }

    /// What the escrow of `id` still holds.
    pub async fn remaining(&self, id: B256) -> Result<U256> {
        read!(self, "remaining", self.contract().remaining(id))
    }

    /// The requester's next nonce.
    pub async fn requester_nonce(&self, requester: Address) -> Result<u64> {
        let n = read!(
            self,
            "requesterNonces",
            self.contract().requesterNonces(requester)
        )?;
        Ok(n.saturating_to())
    }

    /// Accrued, uncollected platform fees.
    pub async fn accrued_fees(&self) -> Result<U256> {
        read!(self, "accruedFees", self.contract().accruedFees())
    }

    /// Whether the kernel is paused.
    pub async fn paused(&self) -> Result<bool> {
        read!(self, "paused", self.contract().paused())
    }

    /// The platform fee rate for new transactions.
    pub async fn platform_fee_bps(&self) -> Result<u16> {
        read!(self, "platformFeeBps", self.contract().platformFeeBps())
    }

    /// Payouts held for `who` because the token refused them.
    pub async fn deferred_of(&self, who: Address) -> Result<U256> {
        read!(self, "deferredOf", self.contract().deferredOf(who))
    }

    /// Token balance of `who`.
    pub async fn balance_of(&self, who: Address) -> Result<U256> {
        read!(self, "balanceOf", self.token_contract().balanceOf(who))
    }

    /// Allowance `owner` gave the kernel.
    pub async fn allowance(&self, owner: Address) -> Result<U256> {
        read!(
            self,
            "allowance",
            self.token_contract().allowance(owner, self.address)
        )
    }

    /// The latest block number.
    pub async fn block_number(&self) -> Result<u64> {
        self.config
            .retry
            .run("blockNumber", || async {
                self.provider.get_block_number().await.map_err(rpc_error)
            })
            .await
    }

    /// The latest block's timestamp (the kernel's "now").
    pub async fn chain_time(&self) -> Result<u64> {
        let block = self
            .config
            .retry
            .run("latest block", || async {
                self.provider
                    .get_block(BlockId::latest())
                    .await
                    .map_err(rpc_error)
            })
            .await?
            .ok_or_else(|| ClientError::rpc("the node returned no latest block"))?;
        Ok(block.header.timestamp)
    }

    /// This kernel's logs of one event from `from_block` on, narrowed by `topics`.
    async fn event_logs(
        &self,
        signature: B256,
        topics: impl FnOnce(alloy::rpc::types::Filter) -> alloy::rpc::types::Filter,
        from_block: u64,
    ) -> Result<Vec<alloy::rpc::types::Log>> {
        let filter = topics(
            alloy::rpc::types::Filter::new()
                .address(self.address)
                .event_signature(signature)
                .from_block(from_block),
        );
        self.config
            .retry
            .run("getLogs", || async {
                self.provider.get_logs(&filter).await.map_err(rpc_error)
            })
            .await
    }

    /// The proof hash recorded on chain when `id` was delivered (its `DeliveryProofRecorded` event), scanning
    /// from `from_block`; `None` if it was delivered without one or not yet.
    pub async fn recorded_proof_hash(&self, id: B256, from_block: u64) -> Result<Option<B256>> {
        let logs = self
            .event_logs(
                EscrowKernel::DeliveryProofRecorded::SIGNATURE_HASH,
                |f| f.topic1(id),
                from_block,
            )
            .await?;
        Ok(logs
            .iter()
            .filter_map(|l| EscrowKernel::DeliveryProofRecorded::decode_log(&l.inner).ok())
            .map(|e| e.proofHash)
            .last())
    }

    /// The transactions `requester` created from `from_block` on (their `TransactionCreated` events), oldest
    /// first: how a paying client that crashed between sending a payment and recording it finds the escrow.
    pub async fn created_by(&self, requester: Address, from_block: u64) -> Result<Vec<Created>> {
        let logs = self
            .event_logs(
                EscrowKernel::TransactionCreated::SIGNATURE_HASH,
                |f| f.topic2(requester.into_word()),
                from_block,
            )
            .await?;
        Ok(logs
            .iter()
            .filter_map(|l| {
                let e = EscrowKernel::TransactionCreated::decode_log(&l.inner).ok()?;
                Some(Created {
                    id: e.transactionId,
                    provider: e.provider,
                    amount: e.amount,
                    service_hash: e.serviceHash,
                    block: l.block_number.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Whether the node holds transactions sent by `who` that are not mined yet (its pending nonce is ahead
    /// of its latest one).
    pub async fn has_pending(&self, who: Address) -> Result<bool> {
        let count = |pending: bool| async move {
            self.config
                .retry
                .run("nonce", || async {
                    let call = self.provider.get_transaction_count(who);
                    let call = if pending {
                        call.pending()
                    } else {
                        call.latest()
                    };
                    call.await.map_err(rpc_error)
                })
                .await
        };
        Ok(count(true).await? > count(false).await?)
    }

    /// What the kernel refunded to the requester of `id` (its `EscrowRefunded` events from `from_block` on):
    /// the whole escrow after a cancellation, the requester's share after a dispute resolution.
    pub async fn refunded(&self, id: B256, from_block: u64) -> Result<U256> {
        let logs = self
            .event_logs(
                EscrowKernel::EscrowRefunded::SIGNATURE_HASH,
                |f| f.topic1(id),
                from_block,
            )
            .await?;
        Ok(logs
            .iter()
            .filter_map(|l| EscrowKernel::EscrowRefunded::decode_log(&l.inner).ok())
            .fold(U256::ZERO, |sum, e| sum + e.amount))
    }

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

    // ------------------------------------------------------------------------------------------------
    // Sending
    // ------------------------------------------------------------------------------------------------

    fn require_signer(&self) -> Result<Address> {
        self.signer_address().ok_or_else(|| {
            ClientError::Config(
                "this operation sends a transaction: configure a signing key".into(),
            )
        })
    }

    async fn send_call(&self, input: Vec<u8>) -> Result<Sent> {
        self.send(Some(self.address), input.into()).await
    }

    /// Estimates, signs with a reserved nonce, sends (re-sending the same bytes on transient errors) and
    /// waits for the receipt. `to: None` deploys `input` as init code.
    ///
    /// Another process sending with the same key (provider replicas) can take a nonce this client reserved;
    /// the node then refuses the send as a nonce conflict, and the whole send starts again from the estimate
    /// with a nonce read from the chain, so a call the other process made pointless surfaces as its typed
    /// rejection rather than as an RPC error.
    pub async fn send(&self, to: Option<Address>, input: Bytes) -> Result<Sent> {
        let mut attempt = 0;
        loop {
            match self.send_once(to, input.clone()).await {
                Err(e) if attempt < NONCE_CONFLICT_RETRIES && is_nonce_conflict(&e) => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "nonce taken by another sender; sending again");
                }
                other => return other,
            }
        }
    }

    async fn send_once(&self, to: Option<Address>, input: Bytes) -> Result<Sent> {
        let account = self.account.as_ref().ok_or_else(|| {
            ClientError::Config(
                "this operation sends a transaction: configure a signing key".into(),
            )
        })?;
        let from = account.signer.address();
        let mut request = TransactionRequest::default()
            .with_from(from)
            .with_input(input);
        request.to = Some(to.map_or(TxKind::Create, TxKind::Call));

        // A revert surfaces here, typed, before a nonce is spent.
        let gas = self
            .config
            .retry
            .run("estimateGas", || async {
                self.provider
                    .estimate_gas(request.clone())
                    .block(BlockId::pending())
                    .await
                    .map_err(rpc_error)
            })
            .await?;
        let fees = {
            let mut cached = self.fees.lock().await;
            match *cached {
                Some((at, fees)) if at.elapsed() < FEE_CACHE => fees,
                _ => {
                    let fees = self.fetch_fees().await?;
                    *cached = Some((tokio::time::Instant::now(), fees));
                    fees
                }
            }
        };

        // The nonce lock is held until the node has the transaction, so that one signer's transactions reach
        // the node in nonce order: a node that sees nonce n+1 before n holds it back, and anvil's automine
        // can then leave it in the pool unmined (foundry-rs/foundry#10122).
        let mut next = NonceSlot {
            next: account.next_nonce.lock().await,
            sent: false,
        };
        let nonce = match *next.next {
            Some(n) => n,
            None => {
                self.config
                    .retry
                    .run("nonce", || async {
                        self.provider
                            .get_transaction_count(from)
                            .pending()
                            .await
                            .map_err(rpc_error)
                    })
                    .await?
            }
        };
        *next.next = Some(nonce + 1);

        let request = request
            .with_nonce(nonce)
            .with_chain_id(self.chain_id)
            // Headroom for state that changes between the estimate and the block: a storage slot written
            // from zero costs ~17k more than one already set (an allowance another transaction used up).
            // Only gas used is paid, so the margin costs nothing.
            .with_gas_limit(gas.saturating_mul(12) / 10 + 30_000)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let replay = request.clone();
        let mut request = request;
        let mut tx_hash = match self.broadcast(account, &request).await {
            Ok(hash) => hash,
            // The reserved nonce may now be a gap: the slot reads it from the chain again next time.
            Err(e) => return Err(e),
        };
        next.sent = true;
        drop(next);
        tracing::debug!(%tx_hash, nonce, "sent");
        let deadline = tokio::time::Instant::now() + self.config.receipt_timeout;
        let mut resends = 0;
        let receipt = loop {
            match self.await_inclusion(tx_hash, deadline).await {
                Ok(Some(receipt)) => break receipt,
                // The node dropped it (e.g. its fee fell below the base fee): every later nonce of this
                // signer would wait behind the gap forever. Sign the same call again, same nonce, fresh fees.
                Ok(None) if resends < MAX_RESENDS && tokio::time::Instant::now() < deadline => {
                    resends += 1;
                    let fees = self.fresh_fees().await?;
                    let bump = |old: u128, new: u128| new.max(old + old / 8 + 1);
                    let max_fee = bump(request.max_fee_per_gas.unwrap_or(0), fees.max_fee_per_gas);
                    let tip = bump(
                        request.max_priority_fee_per_gas.unwrap_or(0),
                        fees.max_priority_fee_per_gas,
                    )
                    .min(max_fee);
                    request = request
                        .with_max_fee_per_gas(max_fee)
                        .with_max_priority_fee_per_gas(tip);
                    tracing::warn!(%tx_hash, nonce, resends, "the node dropped the transaction; sending it again");
                    tx_hash = self.broadcast(account, &request).await?;
                }
                Ok(None) | Err(_) => {
                    // Stuck or unknown: the next send reads the nonce from the chain again.
                    *account.next_nonce.lock().await = None;
                    return Err(ClientError::ReceiptTimeout {
                        tx_hash,
                        seconds: self.config.receipt_timeout.as_secs(),
                    });
                }
            }
        };
        if !receipt.status() {
            return Err(self
                .explain_revert(&replay, tx_hash, receipt.block_number)
                .await);
        }
        Ok(Sent {
            tx_hash,
            gas_used: receipt.gas_used,
            block_number: receipt.block_number.unwrap_or_default(),
            logs: receipt.inner.logs().to_vec(),
            contract_address: receipt.contract_address,
        })
    }

    /// Signs `request` and hands it to the node (re-sending the same bytes on transient errors).
    async fn broadcast(&self, account: &Account, request: &TransactionRequest) -> Result<B256> {
        let envelope: TxEnvelope = request
            .clone()
            .build(&account.wallet)
            .await
            .map_err(|e| ClientError::Signer(format!("could not sign the transaction: {e}")))?;
        let tx_hash = *envelope.tx_hash();
        let raw = envelope.encoded_2718();
        self.config
            .retry
            .run("sendRawTransaction", || async {
                match self.provider.send_raw_transaction(&raw).await {
                    Ok(_) => Ok(()),
                    // A retry of bytes the node already has is a success, not a second transaction.
                    Err(e) if e.to_string().to_ascii_lowercase().contains("already known") => {
                        Ok(())
                    }
                    Err(e) => Err(rpc_error(e)),
                }
            })
            .await?;
        Ok(tx_hash)
    }

    /// The node's EIP-1559 fee estimate.
    async fn fetch_fees(&self) -> Result<alloy::eips::eip1559::Eip1559Estimation> {
        self.config
            .retry
            .run("fees", || async {
                self.provider
                    .estimate_eip1559_fees()
                    .await
                    .map_err(rpc_error)
            })
            .await
    }

    /// A fee estimate from the node now, also refreshing the shared cache.
    async fn fresh_fees(&self) -> Result<alloy::eips::eip1559::Eip1559Estimation> {
        let fees = self.fetch_fees().await?;
        *self.fees.lock().await = Some((tokio::time::Instant::now(), fees));
        Ok(fees)
    }

    /// The receipt once included with the configured confirmations; `None` if the node no longer knows the
    /// transaction (dropped from its pool) or the deadline passed.
    async fn await_inclusion(
        &self,
        tx_hash: B256,
        deadline: tokio::time::Instant,
    ) -> Result<Option<TransactionReceipt>> {
        let mut pause = Duration::from_millis(5);
        let mut waited = Duration::ZERO;
        loop {
            let receipt = self
                .config
                .retry
                .run("receipt", || async {
                    self.provider
                        .get_transaction_receipt(tx_hash)
                        .await
                        .map_err(rpc_error)
                })
                .await?;
            if let Some(receipt) = receipt {
                let included = receipt.block_number.unwrap_or_default();
                if self.config.confirmations == 0
                    || self.block_number().await? + 1 >= included + self.config.confirmations
                {
                    return Ok(Some(receipt));
                }
            } else if waited >= DROP_CHECK_AFTER {
                let known = self
                    .config
                    .retry
                    .run("transactionByHash", || async {
                        self.provider
                            .get_transaction_by_hash(tx_hash)
                            .await
                            .map_err(rpc_error)
                    })
                    .await?;
                if known.is_none() {
                    return Ok(None);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            waited += pause;
            pause = (pause * 2).min(self.config.poll_interval);
        }
    }

    /// Polls for the receipt (fast at first, backing off to `poll_interval`) until it has the configured
    /// confirmations, or fails with [`ClientError::ReceiptTimeout`].
    pub async fn wait_for_receipt(&self, tx_hash: B256) -> Result<TransactionReceipt> {
        let deadline = tokio::time::Instant::now() + self.config.receipt_timeout;
        loop {
            // `None` before the deadline: this node does not know the transaction (yet); keep asking.
            if let Some(receipt) = self.await_inclusion(tx_hash, deadline).await? {
                return Ok(receipt);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::ReceiptTimeout {
                    tx_hash,
                    seconds: self.config.receipt_timeout.as_secs(),
                });
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    async fn explain_revert(
        &self,
        replay: &TransactionRequest,
        tx_hash: B256,
        block: Option<u64>,
    ) -> ClientError {
        let at = block.map_or(BlockId::latest(), |b| BlockId::number(b.saturating_sub(1)));
        let reason = match self.provider.call(replay.clone()).block(at).await {
            Err(e) => rpc_error(e).to_string(),
            Ok(_) => "no revert reason could be recovered".to_owned(),
        };
        ClientError::RevertedOnChain { tx_hash, reason }
    }
}

fn created_id(sent: &Sent) -> Result<B256> {
    sent.logs
        .iter()
        .find_map(|l| EscrowKernel::TransactionCreated::decode_log(&l.inner).ok())
        .map(|e| e.transactionId)
        .ok_or_else(|| ClientError::rpc("the receipt has no TransactionCreated event"))
}
