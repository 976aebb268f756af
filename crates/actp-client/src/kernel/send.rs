//! Sending kernel transactions safely under concurrency and transient failures.
//!
//! Sending is done here rather than by alloy's fillers: a nonce is reserved under a lock (many calls from one
//! signer may be in flight at once), each transaction is estimated first (a revert comes back as a typed
//! [`Rejection`](actp_core::Rejection) before any nonce is used), priced within the configured fee cap,
//! signed once, re-sent unchanged when the RPC fails transiently (the same bytes, so never twice), and
//! awaited to its receipt with a timeout.

use std::time::Duration;

use actp_core::{Address, B256};
use alloy::{
    consensus::TxEnvelope,
    eips::{BlockId, Encodable2718, eip1559::Eip1559Estimation},
    network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder},
    primitives::{Bytes, TxKind},
    providers::Provider,
    rpc::types::{TransactionReceipt, TransactionRequest},
    sol_types::SolEvent,
};
use tokio::sync::Mutex;

use super::{Kernel, Sent, rpc_error};
use crate::{ClientError, Result, Signer, bindings::EscrowKernel};

/// The signer of a client and its nonce sequence.
pub(super) struct Account {
    pub(super) signer: Signer,
    wallet: EthereumWallet,
    /// The next nonce to use; `None` until read from the chain, or after a send that may have left a gap.
    next_nonce: Mutex<Option<u64>>,
}

impl Account {
    pub(super) fn new(signer: Signer) -> Self {
        Account {
            wallet: EthereumWallet::new(signer.tx_signer()),
            signer,
            next_nonce: Mutex::new(None),
        }
    }
}

/// A fee estimate and when it was read.
pub(super) type FeeCache = Option<(tokio::time::Instant, Eip1559Estimation)>;

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

/// How many times a transaction the node dropped is signed and sent again.
const MAX_RESENDS: u32 = 5;

/// How long a transaction may go without a receipt before the client asks whether the node still has it.
const DROP_CHECK_AFTER: Duration = Duration::from_secs(2);

/// How many times a send starts over after another sender took its nonce: enough for a fleet of processes
/// sharing one key, each waiting a random moment before it tries again so that they stop colliding.
const NONCE_CONFLICT_RETRIES: u32 = 16;

/// How long a fee estimate is reused.
const FEE_CACHE: Duration = Duration::from_secs(2);

/// The node refused a transaction because its nonce was used (by another process with the same key). Nodes
/// say so only in the error message of a JSON-RPC error (geth, reth, anvil: code -32000 or -32003).
fn is_nonce_conflict(error: &ClientError) -> bool {
    let ClientError::Rpc { message, .. } = error else {
        return false;
    };
    let m = message.to_ascii_lowercase();
    m.contains("nonce too low")
        || m.contains("replacement transaction underpriced")
        || m.contains("nonce has already been used")
}

/// The id in a creation receipt's `TransactionCreated` event.
pub(super) fn created_id(sent: &Sent) -> Result<B256> {
    sent.logs
        .iter()
        .find_map(|l| EscrowKernel::TransactionCreated::decode_log(&l.inner).ok())
        .map(|e| e.transactionId)
        .ok_or_else(|| ClientError::protocol("the receipt has no TransactionCreated event"))
}

impl Kernel {
    // ------------------------------------------------------------------------------------------------
    // Sending
    // ------------------------------------------------------------------------------------------------

    pub(super) fn require_signer(&self) -> Result<Address> {
        self.signer_address().ok_or_else(|| {
            ClientError::Config(
                "this operation sends a transaction: configure a signing key".into(),
            )
        })
    }

    pub(super) async fn send_call(&self, input: Vec<u8>) -> Result<Sent> {
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
                    let pause = rand::random_range(0..=10 * u64::from(attempt.min(10)));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
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
        self.within_fee_cap(fees.max_fee_per_gas)?;

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
            // Only gas used is paid, so the margin costs nothing. A random few hundred gas more keeps two
            // processes sending the same call with the same key and nonce (provider replicas) from signing
            // identical bytes: each would take the other's transaction, and its receipt, for its own.
            .with_gas_limit(gas.saturating_mul(12) / 10 + 30_000 + rand::random_range(0..1_024u64))
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
                    // A re-send may not go above the cap either: the nonce is then left for the next send
                    // to read from the chain.
                    if let Err(e) = self.within_fee_cap(max_fee) {
                        *account.next_nonce.lock().await = None;
                        return Err(e);
                    }
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

    /// Refuses a price per gas above the configured cap.
    fn within_fee_cap(&self, max_fee_per_gas: u128) -> Result<()> {
        match self.config.max_fee_per_gas {
            Some(cap) if max_fee_per_gas > cap => Err(ClientError::FeeCapExceeded {
                asked: max_fee_per_gas,
                cap,
            }),
            _ => Ok(()),
        }
    }

    /// The node's EIP-1559 fee estimate.
    async fn fetch_fees(&self) -> Result<Eip1559Estimation> {
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
    async fn fresh_fees(&self) -> Result<Eip1559Estimation> {
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
        // Replayed on the state the block left (what another sender changed before it in the block is
        // there), then on its parent's.
        let at = block.map_or(vec![BlockId::latest()], |b| {
            vec![BlockId::number(b), BlockId::number(b.saturating_sub(1))]
        });
        for block in at {
            if let Err(e) = self.provider.call(replay.clone()).block(block).await {
                let error = rpc_error(e);
                return ClientError::RevertedOnChain {
                    tx_hash,
                    reason: error.to_string(),
                    rejection: error.rejection().cloned().map(Box::new),
                };
            }
        }
        ClientError::RevertedOnChain {
            tx_hash,
            reason: "no revert reason could be recovered".to_owned(),
            rejection: None,
        }
    }
}
