//! Turning the global options into a chain connection and a signer.
//!
//! - The RPC: `--rpc-url`, else the public endpoint of `--network`, else the devnet config `actp devnet`
//!   writes to `<data-dir>/devnet.json`.
//! - The chain: the RPC's chain id is checked against `--chain-id` and `--network`; a named network sets the
//!   confirmations, the `eth_getLogs` range and the fee cap (`--max-fee-per-gas` overrides it).
//! - The kernel: `--kernel`, else the devnet's, else the deployment `actp deploy` recorded for this chain in
//!   `<data-dir>/deployments/<chainId>.json` (which also gives the block to scan events from).
//! - The key: `ACTP_PRIVATE_KEY`, else `--keystore` (password from `ACTP_KEY_PASSWORD` or a prompt), else
//!   (devnet only) `--account N`.
//! - TLS: the system's trust store, plus `--ca-cert` for private endpoints, for every HTTP client.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use actp_client::{
    ClientConfig, ClientError, Deployment, HttpOptions, Kernel, Network, Signer, http_provider,
};
use actp_core::Address;
use alloy::providers::{DynProvider, Provider};

use crate::{
    args::Global,
    error::{CliError, Result},
    output::Output,
};

/// Chain ids of public mainnets besides the named networks, where a raw key in the environment is refused
/// without `--allow-raw-key-on-mainnet`.
const MAINNETS: &[(u64, &str)] = &[
    (1, "Ethereum"),
    (10, "OP Mainnet"),
    (56, "BNB Smart Chain"),
    (100, "Gnosis"),
    (137, "Polygon"),
    (324, "zkSync Era"),
    (42161, "Arbitrum One"),
    (43114, "Avalanche C-Chain"),
    (59144, "Linea"),
    (534352, "Scroll"),
];

/// One dev account of the devnet config (anvil's public test keys, never secret).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct DevAccount {
    #[serde(with = "actp_core::checksum")]
    pub(crate) address: Address,
    pub(crate) private_key: String,
}

/// What `actp devnet` writes and prints.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct DevnetConfig {
    pub(crate) rpc_url: String,
    pub(crate) chain_id: u64,
    #[serde(with = "actp_core::checksum")]
    pub(crate) kernel: Address,
    #[serde(with = "actp_core::checksum")]
    pub(crate) escrow_vault: Address,
    #[serde(with = "actp_core::checksum")]
    pub(crate) token: Address,
    pub(crate) block: u64,
    pub(crate) accounts: Vec<DevAccount>,
}

pub(crate) fn devnet_path(data_dir: &Path) -> PathBuf {
    data_dir.join("devnet.json")
}

/// Where `actp deploy` records the deployment on chain `chain_id`.
pub(crate) fn deployment_path(data_dir: &Path, chain_id: u64) -> PathBuf {
    data_dir
        .join("deployments")
        .join(format!("{chain_id}.json"))
}

/// Where to connect.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) rpc_url: String,
    pub(crate) kernel: Option<Address>,
    /// The devnet config, when that is where the target came from.
    pub(crate) devnet: Option<DevnetConfig>,
    /// The network named by `--network`, or (once connected) the named network of the RPC's chain.
    pub(crate) network: Option<Network>,
    /// The block the kernel was deployed in, when known (the devnet's, or the recorded deployment's): event
    /// scans start there, never at block 0.
    pub(crate) deployment_block: Option<u64>,
}

impl Target {
    /// The block to scan events from: `--from-block`, else the deployment block.
    pub(crate) fn scan_from(&self, given: Option<u64>, kernel: Address) -> Result<u64> {
        given.or(self.deployment_block).ok_or_else(|| {
            CliError::usage(format!(
                "the deployment block of kernel {kernel} is not known here: pass --from-block (the block it was deployed in), or run `actp deploy` with this --data-dir so it is recorded"
            ))
        })
    }
}

/// Everything a command needs from the global options.
pub(crate) struct Ctx {
    pub(crate) global: Global,
    pub(crate) out: Output,
    http: OnceLock<std::result::Result<HttpOptions, String>>,
}

impl Ctx {
    pub(crate) fn new(global: Global) -> Self {
        let out = Output {
            json: global.json,
            quiet: global.quiet,
        };
        Ctx {
            global,
            out,
            http: OnceLock::new(),
        }
    }

    /// TLS trust for every HTTP client: the system's roots plus `--ca-cert`.
    /// The store of `component` ("settler", ...): `--store` if given (a sled directory gets the component's
    /// name appended), else a sled directory of that name under the data directory.
    pub(crate) fn store(&self, component: &str) -> actp_store::StoreUrl {
        self.global.store.as_ref().map_or_else(
            || actp_store::StoreUrl::Sled(self.global.data_dir.join(component)),
            |store| store.join(component),
        )
    }

    pub(crate) fn http_options(&self) -> Result<HttpOptions> {
        self.http
            .get_or_init(|| match &self.global.ca_cert {
                None => Ok(HttpOptions::default()),
                Some(path) => HttpOptions::default()
                    .with_ca_file(path)
                    .map_err(|e| format!("--ca-cert: {e}")),
            })
            .clone()
            .map_err(CliError::usage)
    }

    /// An HTTP client for paid APIs and upstreams, with the same trust as the RPC.
    pub(crate) fn http_client(&self, timeout: Option<Duration>) -> Result<reqwest::Client> {
        let mut options = self
            .http_options()?
            .connect_timeout(Duration::from_secs(10));
        if let Some(t) = timeout {
            options = options.timeout(t);
        }
        options.client().map_err(CliError::from)
    }

    /// The client configuration for chain `chain_id`: the named network's defaults, then the flags.
    pub(crate) fn client_config(&self, chain_id: u64) -> Result<ClientConfig> {
        let base = Network::by_chain_id(chain_id)
            .map_or_else(ClientConfig::default, |n| n.client_config());
        Ok(ClientConfig {
            receipt_timeout: Duration::from_secs(self.global.timeout.max(1)),
            max_fee_per_gas: self
                .global
                .max_fee_per_gas
                .map(|f| f.0)
                .or(base.max_fee_per_gas),
            http: self.http_options()?,
            ..base
        })
    }

    fn read_devnet(&self) -> Result<Option<DevnetConfig>> {
        read_json(&devnet_path(&self.global.data_dir), "a devnet config")
    }

    /// The network named by `--network`.
    fn network(&self) -> Option<Network> {
        self.global.network.as_deref().and_then(Network::by_name)
    }

    /// The RPC and (when already known) the kernel to use.
    pub(crate) fn target(&self) -> Result<Target> {
        let network = self.network();
        let on_devnet = network.is_none_or(|n| n.name == actp_client::DEVNET.name);
        let url = self
            .global
            .rpc_url
            .clone()
            .or_else(|| network.and_then(|n| n.public_rpc.map(str::to_owned)));
        if let Some(rpc_url) = url {
            return Ok(Target {
                rpc_url,
                kernel: self.global.kernel,
                devnet: None,
                network,
                deployment_block: None,
            });
        }
        match self.read_devnet()? {
            Some(devnet) if on_devnet => Ok(Target {
                rpc_url: devnet.rpc_url.clone(),
                kernel: Some(self.global.kernel.unwrap_or(devnet.kernel)),
                deployment_block: Some(devnet.block),
                devnet: Some(devnet),
                network: Some(actp_client::DEVNET),
            }),
            _ => Err(CliError::not_found(format!(
                "no chain configured and no devnet in {}: start one with `actp devnet` (in another terminal), or set --network base-sepolia|base, or --rpc-url (ACTP_RPC_URL)",
                self.global.data_dir.display()
            ))),
        }
    }

    /// The signing key, if one is configured. The second value says whether it is a raw key from the
    /// environment (refused on mainnets unless allowed).
    pub(crate) fn signer(&self, target: &Target) -> Result<Option<(Signer, bool)>> {
        if let Ok(key) = std::env::var("ACTP_PRIVATE_KEY")
            && !key.trim().is_empty()
        {
            return Ok(Some((Signer::from_private_key(&key)?, true)));
        }
        if let Some(path) = &self.global.keystore {
            if !path.is_file() {
                return Err(CliError::not_found(format!(
                    "keystore {} does not exist",
                    path.display()
                )));
            }
            let password = match std::env::var("ACTP_KEY_PASSWORD") {
                Ok(p) => p,
                Err(_) => rpassword::prompt_password(format!("password for {}: ", path.display()))
                    .map_err(|_| {
                        CliError::usage(
                            "the keystore needs a password: set ACTP_KEY_PASSWORD or run in a terminal",
                        )
                    })?,
            };
            return Ok(Some((Signer::from_keystore(path, &password)?, false)));
        }
        if let Some(i) = self.global.account {
            let devnet = target.devnet.as_ref().ok_or_else(|| {
                CliError::usage(
                    "--account picks a dev account of `actp devnet`; on another chain set ACTP_PRIVATE_KEY or --keystore",
                )
            })?;
            let account = devnet.accounts.get(i).ok_or_else(|| {
                CliError::usage(format!(
                    "the devnet has {} accounts: --account must be below that",
                    devnet.accounts.len()
                ))
            })?;
            return Ok(Some((
                Signer::from_private_key(&account.private_key)?,
                false,
            )));
        }
        Ok(None)
    }

    /// A provider for `target` and its chain id, checked against `--chain-id` and `--network`.
    pub(crate) async fn connect(&self, target: &mut Target) -> Result<(DynProvider, u64)> {
        let provider = http_provider(&target.rpc_url, &self.http_options()?)?;
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| CliError::from(ClientError::from_transport(e)))
            .map_err(|e| e.context("cannot reach the RPC"))?;
        self.check_chain_id(chain_id, target.network)?;
        target.network = target.network.or(Network::by_chain_id(chain_id));
        Ok((provider, chain_id))
    }

    /// A kernel client; with `need_signer` a command that sends transactions gets a clear error first.
    pub(crate) async fn kernel(&self, need_signer: bool) -> Result<(Kernel, Target)> {
        let mut target = self.target()?;
        let signer = self.signer(&target)?;
        if need_signer && signer.is_none() {
            return Err(no_signer(&target));
        }
        let (provider, chain_id) = self.connect(&mut target).await?;
        let raw = signer.as_ref().is_some_and(|(_, raw)| *raw);
        self.check_raw_key(chain_id, raw)?;
        let recorded: Option<Deployment> = read_json(
            &deployment_path(&self.global.data_dir, chain_id),
            "a deployment record",
        )?;
        let kernel_address = match (target.kernel, &recorded) {
            (Some(k), _) => k,
            (None, Some(d)) => d.kernel,
            (None, None) => {
                return Err(CliError::usage(format!(
                    "no kernel address for chain {chain_id}: set --kernel (ACTP_KERNEL), or run `actp deploy` (it records the deployment in {})",
                    deployment_path(&self.global.data_dir, chain_id).display()
                )));
            }
        };
        if target.deployment_block.is_none()
            && let Some(d) = recorded.filter(|d| d.kernel == kernel_address)
        {
            target.deployment_block = Some(d.block);
        }
        target.kernel = Some(kernel_address);
        let kernel = Kernel::new(
            provider,
            kernel_address,
            signer.map(|(s, _)| s),
            self.client_config(chain_id)?,
        )
        .await
        .map_err(|e| CliError::from(e).context("cannot connect to the kernel"))?;
        Ok((kernel, target))
    }

    /// Refuses an RPC on another chain than `--chain-id` or `--network` say.
    fn check_chain_id(&self, chain_id: u64, network: Option<Network>) -> Result<()> {
        if let Some(expected) = self.global.chain_id
            && expected != chain_id
        {
            return Err(CliError::usage(format!(
                "the RPC is on chain {chain_id}, not {expected}: check --rpc-url and --chain-id"
            )));
        }
        if let Some(n) = network
            && n.chain_id != chain_id
        {
            return Err(CliError::usage(format!(
                "the RPC is on chain {chain_id}, but --network {n} is chain {}: check --rpc-url and --network",
                n.chain_id
            )));
        }
        Ok(())
    }

    /// Refuses a raw key on a mainnet unless allowed.
    pub(crate) fn check_raw_key(&self, chain_id: u64, raw_key: bool) -> Result<()> {
        if !raw_key || self.global.allow_raw_key_on_mainnet {
            return Ok(());
        }
        let name = Network::by_chain_id(chain_id)
            .filter(|n| n.mainnet)
            .map(|n| n.name)
            .or_else(|| {
                MAINNETS
                    .iter()
                    .find(|(id, _)| *id == chain_id)
                    .map(|(_, name)| *name)
            });
        match name {
            Some(name) => Err(CliError::usage(format!(
                "refusing a raw private key (ACTP_PRIVATE_KEY) on {name} (chain {chain_id}): use an encrypted keystore (--keystore), or pass --allow-raw-key-on-mainnet if you must"
            ))),
            None => Ok(()),
        }
    }
}

/// Reads a JSON file this program wrote; a missing file is `None`.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CliError::usage(format!(
                "{} is not {what} ({e}): delete it, or write it again (`actp devnet`, `actp deploy`)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::failure(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

pub(crate) fn no_signer(target: &Target) -> CliError {
    let devnet_hint = if target.devnet.is_some() {
        ", or --account N for a devnet dev account"
    } else {
        ""
    };
    CliError::usage(format!(
        "this command sends a transaction and needs a key: set ACTP_PRIVATE_KEY or --keystore{devnet_hint}"
    ))
}
