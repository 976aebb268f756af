//! The `Kernel` client: every kernel operation over any alloy provider, signed by any alloy signer.
//!
//! - [`record`]: what the kernel reports (records, mined calls, creation events);
//! - [`send`]: how transactions are sent safely under concurrency and transient failures;
//! - [`events`]: the kernel's history: proof hashes, refunds, escrows created, pending sends;
//! - [`lifecycle`]: the lifecycle and governance calls;
//! - sessions: [`session`];
//! - this module: connecting, and reads of the current state.
//!
//! It never logs keys or RPC URLs.

mod events;
mod lifecycle;
mod record;
mod send;
mod session;

use std::{sync::Arc, time::Duration};

use actp_core::{Address, B256, State, U256, model::CreateParams};
use alloy::{
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::Filter,
    sol_types::{SolCall, SolEvent},
    transports::{RpcError, TransportErrorKind},
};
use tokio::sync::Mutex;

pub use record::{Created, Sent, TransactionRecord};
use send::{Account, FeeCache, created_id};
pub use session::{OpenSession, SessionTerms};

use crate::{
    ClientError, HttpOptions, LogReader, Result, RetryPolicy, Signer,
    bindings::{EscrowKernel, MockUSDC},
    decode_revert,
};

/// Tunables of a [`Kernel`] client. [`crate::Network`] has the right values for each public network.
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
    /// The most a transaction may offer per gas (wei); a send the network prices above it is refused with
    /// [`ClientError::FeeCapExceeded`] before anything is signed. `None`: no cap.
    pub max_fee_per_gas: Option<u128>,
    /// The largest block range asked of `eth_getLogs` at once; halved while the node refuses a range.
    pub max_log_range: u64,
    /// TLS trust and timeouts of the JSON-RPC connection.
    pub http: HttpOptions,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            retry: RetryPolicy::default(),
            receipt_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(500),
            confirmations: 0,
            max_fee_per_gas: None,
            max_log_range: 10_000,
            http: HttpOptions::default(),
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
    fees: Arc<Mutex<FeeCache>>,
    logs: LogReader,
}

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

/// A transport error; a JSON-RPC error carrying revert data becomes the kernel's or token's typed error.
pub(crate) fn rpc_error(err: RpcError<TransportErrorKind>) -> ClientError {
    if let Some(data) = err
        .as_error_resp()
        .and_then(|payload| payload.as_revert_data())
    {
        return decode_revert(&data);
    }
    ClientError::from_transport(err)
}

fn contract_error(err: alloy::contract::Error) -> ClientError {
    match err {
        alloy::contract::Error::TransportError(e) => rpc_error(e),
        other => ClientError::protocol(other),
    }
}

/// An alloy provider over the HTTP(S) JSON-RPC endpoint `rpc_url`, with this crate's TLS setup and without
/// fillers (the client fills transactions itself).
pub fn http_provider(rpc_url: &str, http: &HttpOptions) -> Result<DynProvider> {
    let url: reqwest::Url = rpc_url
        .parse()
        .map_err(|_| ClientError::Config("the RPC URL is not a valid URL".into()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::Config(
            "the RPC URL must start with http:// or https://".into(),
        ));
    }
    Ok(ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_reqwest(http.client()?, url)
        .erased())
}

/// Every amount here is in units of a 6-decimal token.
const TOKEN_DECIMALS: u8 = actp_core::amount::DECIMALS as u8;

impl Kernel {
    /// Connects to the kernel at `kernel` through the HTTP(S) JSON-RPC endpoint `rpc_url`.
    pub async fn connect(
        rpc_url: &str,
        kernel: Address,
        signer: Option<Signer>,
        config: ClientConfig,
    ) -> Result<Self> {
        let provider = http_provider(rpc_url, &config.http)?;
        Kernel::new(provider, kernel, signer, config).await
    }

    /// A client over any alloy provider (`provider.erased()`). Reads the chain id, the kernel's token and the
    /// token's decimals once; a token without 6 decimals is refused ([`ClientError::UnsupportedToken`]).
    pub async fn new(
        provider: DynProvider,
        kernel: Address,
        signer: Option<Signer>,
        config: ClientConfig,
    ) -> Result<Self> {
        let chain_id = read_chain_id(&provider, &config.retry).await?;
        let mut client = Kernel {
            logs: LogReader::new(config.max_log_range, config.retry),
            provider,
            address: Address::ZERO,
            token: Address::ZERO,
            chain_id,
            account: signer.map(|s| Arc::new(Account::new(s))),
            config,
            fees: Arc::default(),
        };
        client.point_at(kernel).await?;
        Ok(client)
    }

    /// A client with a signer but no kernel yet, over the HTTP(S) JSON-RPC endpoint `rpc_url`.
    pub async fn connect_for_deployment(
        rpc_url: &str,
        signer: Signer,
        config: ClientConfig,
    ) -> Result<Self> {
        let provider = http_provider(rpc_url, &config.http)?;
        Kernel::for_deployment(provider, signer, config).await
    }

    /// A client with a signer but no kernel yet, to deploy one (see [`crate::deploy()`]).
    pub async fn for_deployment(
        provider: DynProvider,
        signer: Signer,
        config: ClientConfig,
    ) -> Result<Self> {
        let chain_id = read_chain_id(&provider, &config.retry).await?;
        Ok(Kernel {
            logs: LogReader::new(config.max_log_range, config.retry),
            provider,
            address: Address::ZERO,
            token: Address::ZERO,
            chain_id,
            account: Some(Arc::new(Account::new(signer))),
            config,
            fees: Arc::default(),
        })
    }

    /// This client pointed at another kernel (keeps the signer and its nonce sequence).
    pub async fn at(&self, kernel: Address) -> Result<Self> {
        let mut client = self.clone();
        client.point_at(kernel).await?;
        Ok(client)
    }

    async fn point_at(&mut self, kernel: Address) -> Result<()> {
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
        self.address = kernel;
        self.token = token;
        self.check_token(token).await
    }

    /// Refuses a token whose decimals are not the 6 every amount here assumes.
    pub async fn check_token(&self, token: Address) -> Result<()> {
        let decimals = read!(
            self,
            "decimals",
            MockUSDC::new(token, &self.provider).decimals()
        )?;
        if decimals != TOKEN_DECIMALS {
            return Err(ClientError::UnsupportedToken { token, decimals });
        }
        Ok(())
    }

    /// The same kernel, acting as `signer` (a separate nonce sequence).
    pub fn with_signer(&self, signer: Signer) -> Self {
        Kernel {
            account: Some(Arc::new(Account::new(signer))),
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
        TransactionRecord::from_view(view)
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

    /// The latest block's number and timestamp, in one read.
    pub async fn head(&self) -> Result<(u64, u64)> {
        let block = self
            .config
            .retry
            .run("latest block", || async {
                self.provider
                    .get_block(alloy::eips::BlockId::latest())
                    .await
                    .map_err(rpc_error)
            })
            .await?
            .ok_or_else(|| ClientError::protocol("the node returned no latest block"))?;
        Ok((block.header.number, block.header.timestamp))
    }

    /// The latest block's timestamp (the kernel's "now").
    pub async fn chain_time(&self) -> Result<u64> {
        Ok(self.head().await?.1)
    }

    /// The configuration this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }
}

async fn read_chain_id(provider: &DynProvider, retry: &RetryPolicy) -> Result<u64> {
    retry
        .run("chain id", || async {
            provider.get_chain_id().await.map_err(rpc_error)
        })
        .await
}
