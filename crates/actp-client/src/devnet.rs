//! The embedded devnet: a local anvil chain with MockUSDC and the kernel deployed by this crate's own
//! deployment code, and funded well-known dev accounts. Tests, the demo and the CLI use it. It stops anvil
//! when dropped. Dev keys are anvil's public test keys: never use them anywhere else.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use actp_core::{Address, Amount, U256};
use alloy::{
    node_bindings::{Anvil, AnvilInstance},
    primitives::U64,
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};

use crate::{ClientConfig, ClientError, Deployment, Kernel, Result, Signer, deploy::DeployOptions};

/// Options of a [`Devnet`].
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// Dev accounts (account 0 is the kernel's admin and fee recipient).
    pub accounts: usize,
    /// Tokens minted to each account except the admin.
    pub funds: Amount,
    /// Platform fee in basis points.
    pub fee_bps: u16,
    /// Port to listen on (`None`: any free port).
    pub port: Option<u16>,
    /// Seconds between blocks, fractions allowed (`None`: a block per transaction).
    pub block_time: Option<f64>,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        DevnetOptions {
            accounts: 10,
            funds: Amount::from_tokens(1_000_000),
            fee_bps: 100,
            port: None,
            block_time: None,
        }
    }
}

/// A running devnet. Dropping it stops anvil.
pub struct Devnet {
    anvil: AnvilInstance,
    provider: DynProvider,
    deployment: Deployment,
    accounts: Vec<Signer>,
    /// Mines what anvil's automine leaves behind (`None` with a block time, where anvil mines by itself).
    _nudge: Option<Nudge>,
}

/// How often the nudge looks at anvil's pool.
const NUDGE_EVERY: Duration = Duration::from_secs(1);

/// A task that mines a block when anvil's automine leaves ready transactions in its pool. Its miner can
/// miss a transaction that turns ready while a block is being built, and then waits for the next one to
/// arrive (foundry-rs/foundry#10122): the last transaction of a burst gets no receipt, ever. The task asks
/// for the pool's status every second; ready transactions seen twice in a row with no block mined in
/// between are stuck, and it mines a block, with a warning that says so. Stopped with the devnet.
struct Nudge(tokio::task::JoinHandle<()>);

impl Drop for Nudge {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `txpool_status`: transactions ready to be mined, and transactions waiting for an earlier nonce.
#[derive(Debug, serde::Deserialize)]
struct PoolStatus {
    pending: U64,
    queued: U64,
}

impl Nudge {
    fn start(provider: DynProvider) -> Self {
        Nudge(tokio::spawn(async move {
            let mut seen: Option<u64> = None;
            loop {
                tokio::time::sleep(NUDGE_EVERY).await;
                // A node that does not answer (stopped, or busy) is asked again next time.
                let (Ok(status), Ok(block)) = (
                    provider
                        .raw_request::<_, PoolStatus>("txpool_status".into(), ())
                        .await,
                    provider.get_block_number().await,
                ) else {
                    seen = None;
                    continue;
                };
                if status.pending.is_zero() {
                    seen = None;
                    continue;
                }
                if seen == Some(block) {
                    tracing::warn!(
                        ready = %status.pending,
                        queued = %status.queued,
                        block,
                        "anvil left ready transactions unmined; mining a block"
                    );
                    let mined: std::result::Result<serde_json::Value, _> =
                        provider.raw_request("evm_mine".into(), ()).await;
                    if let Err(e) = mined {
                        tracing::warn!(error = %e, "could not mine the stuck transactions");
                    }
                    seen = None;
                } else {
                    seen = Some(block);
                }
            }
        }))
    }
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("rpc_url", &self.rpc_url())
            .field("deployment", &self.deployment)
            .finish()
    }
}

/// Where anvil is: `$ACTP_ANVIL`, the binary `npm ci` installs in this repository (found from the current
/// directory upwards, then from where this crate was built), or `anvil` on `PATH`.
pub fn find_anvil() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ACTP_ANVIL") {
        return Ok(PathBuf::from(path));
    }
    let relative = Path::new("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    roots.extend(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(Path::to_path_buf),
    );
    if let Some(found) = roots.iter().map(|r| r.join(relative)).find(|p| p.is_file()) {
        return Ok(found);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("anvil"))
            .find(|p| p.is_file())
    });
    if let Some(found) = on_path {
        return Ok(found);
    }
    Err(ClientError::Devnet(
        "anvil not found: run `npm ci` (or `make deps`) in the repository root, put Foundry's anvil on PATH, or set ACTP_ANVIL".into(),
    ))
}

impl Devnet {
    /// Starts a devnet with default options.
    pub async fn start() -> Result<Self> {
        Self::start_with(DevnetOptions::default()).await
    }

    /// Starts anvil, deploys MockUSDC and the kernel, and funds the dev accounts.
    pub async fn start_with(options: DevnetOptions) -> Result<Self> {
        let path = find_anvil()?;
        let mut anvil = Anvil::at(&path)
            .arg("--accounts")
            .arg(options.accounts.max(2).to_string())
            // Old states are dropped instead of written under ~/.foundry/anvil/tmp: anvil removes that cache
            // only when it exits cleanly, and a devnet killed with its test leaves gigabytes behind.
            .arg("--max-persisted-states")
            .arg("0");
        if let Some(port) = options.port {
            anvil = anvil.port(port);
        }
        if let Some(secs) = options.block_time {
            anvil = anvil.block_time_f64(secs);
        }
        let anvil = anvil
            .try_spawn()
            .map_err(|e| ClientError::Devnet(format!("could not start {}: {e}", path.display())))?;
        let accounts: Vec<Signer> = anvil
            .keys()
            .iter()
            .map(|k| Signer::local(PrivateKeySigner::from(k.clone())))
            .collect();
        let url = anvil.endpoint_url();
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(url)
            .erased();
        let nudge = options
            .block_time
            .is_none()
            .then(|| Nudge::start(provider.clone()));
        let admin = accounts
            .first()
            .cloned()
            .ok_or_else(|| ClientError::Devnet("anvil has no accounts".into()))?;
        let deployer =
            Kernel::for_deployment(provider.clone(), admin.clone(), ClientConfig::default())
                .await?;
        let deployment = crate::deploy(
            &deployer,
            DeployOptions {
                fee_bps: options.fee_bps,
                ..DeployOptions::default()
            },
        )
        .await?;
        let kernel = deployer.at(deployment.kernel).await?;
        let funds = options.funds.to_u256();
        let mints = accounts
            .iter()
            .skip(1)
            .map(|a| kernel.mint(a.address(), funds));
        for r in futures::future::join_all(mints).await {
            r?;
        }
        Ok(Devnet {
            anvil,
            provider,
            deployment,
            accounts,
            _nudge: nudge,
        })
    }

    /// The HTTP JSON-RPC endpoint.
    pub fn rpc_url(&self) -> String {
        self.anvil.endpoint()
    }

    /// The port anvil listens on.
    pub fn port(&self) -> u16 {
        self.anvil.port()
    }

    /// Chain id, kernel, vault, token, deploy block.
    pub fn deployment(&self) -> Deployment {
        self.deployment
    }

    /// The dev accounts (0 is the admin).
    pub fn accounts(&self) -> &[Signer] {
        &self.accounts
    }

    /// Dev account `i`.
    pub fn signer(&self, i: usize) -> Signer {
        self.accounts[i % self.accounts.len()].clone()
    }

    /// The dev accounts' private keys, hex: anvil's well-known public test keys, printed by `actp devnet` so
    /// that other tools can sign on the devnet. Never real secrets; never use them on a real chain.
    pub fn dev_private_keys(&self) -> Vec<String> {
        self.anvil
            .keys()
            .iter()
            .map(|k| alloy::primitives::hex::encode_prefixed(k.to_bytes()))
            .collect()
    }

    /// A raw provider to the devnet.
    pub fn provider(&self) -> DynProvider {
        self.provider.clone()
    }

    /// A kernel client acting as dev account `i`.
    pub async fn kernel(&self, i: usize) -> Result<Kernel> {
        self.kernel_with(i, ClientConfig::default()).await
    }

    /// A kernel client acting as dev account `i`, with a configuration.
    pub async fn kernel_with(&self, i: usize, config: ClientConfig) -> Result<Kernel> {
        Kernel::new(
            self.provider.clone(),
            self.deployment.kernel,
            Some(self.signer(i)),
            config,
        )
        .await
    }

    /// Moves the chain clock forward by `seconds` and mines a block at the new time.
    pub async fn advance_time(&self, seconds: u64) -> Result<()> {
        let _: serde_json::Value = self
            .provider
            .raw_request("evm_increaseTime".into(), (seconds,))
            .await
            .map_err(crate::kernel::rpc_error)?;
        self.mine().await
    }

    /// Mines `blocks` empty blocks at once (`anvil_mine`): a long history in a moment.
    pub async fn mine_blocks(&self, blocks: u64) -> Result<()> {
        let _: serde_json::Value = self
            .provider
            .raw_request("anvil_mine".into(), (blocks,))
            .await
            .map_err(crate::kernel::rpc_error)?;
        Ok(())
    }

    /// Mines one block.
    pub async fn mine(&self) -> Result<()> {
        let _: serde_json::Value = self
            .provider
            .raw_request("evm_mine".into(), ())
            .await
            .map_err(crate::kernel::rpc_error)?;
        Ok(())
    }

    /// The timestamp of the latest block.
    pub async fn now(&self) -> Result<u64> {
        let block = self
            .provider
            .get_block(alloy::eips::BlockId::latest())
            .await
            .map_err(crate::kernel::rpc_error)?
            .ok_or_else(|| ClientError::protocol("no latest block"))?;
        Ok(block.header.timestamp)
    }

    /// Token balance of `who`.
    pub async fn balance_of(&self, who: Address) -> Result<U256> {
        Kernel::new(
            self.provider.clone(),
            self.deployment.kernel,
            None,
            ClientConfig::default(),
        )
        .await?
        .balance_of(who)
        .await
    }
}
