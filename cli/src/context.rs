//! Turning the global options into a chain connection and a signer.
//!
//! The RPC and kernel come from `--rpc-url`/`--kernel` (or their environment variables), else from the
//! devnet config `actp devnet` writes to `<data-dir>/devnet.json`. The key comes from `ACTP_PRIVATE_KEY`,
//! else `--keystore` (password from `ACTP_KEY_PASSWORD` or a prompt), else (devnet only) `--account N`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use actp_client::{ClientConfig, Kernel, Signer};
use actp_core::Address;

use crate::{
    args::Global,
    error::{CliError, Result},
    output::Output,
};

/// Chain ids of public mainnets, where a raw key in the environment is refused without
/// `--allow-raw-key-on-mainnet`.
const MAINNETS: &[(u64, &str)] = &[
    (1, "Ethereum"),
    (10, "OP Mainnet"),
    (56, "BNB Smart Chain"),
    (100, "Gnosis"),
    (137, "Polygon"),
    (324, "zkSync Era"),
    (8453, "Base"),
    (42161, "Arbitrum One"),
    (43114, "Avalanche C-Chain"),
    (59144, "Linea"),
    (534352, "Scroll"),
];

/// One dev account of the devnet config (anvil's public test keys, never secret).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct DevAccount {
    pub(crate) address: Address,
    pub(crate) private_key: String,
}

/// What `actp devnet` writes and prints.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct DevnetConfig {
    pub(crate) rpc_url: String,
    pub(crate) chain_id: u64,
    pub(crate) kernel: Address,
    pub(crate) escrow_vault: Address,
    pub(crate) token: Address,
    pub(crate) block: u64,
    pub(crate) accounts: Vec<DevAccount>,
}

pub(crate) fn devnet_path(data_dir: &Path) -> PathBuf {
    data_dir.join("devnet.json")
}

/// Where to connect.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) rpc_url: String,
    pub(crate) kernel: Option<Address>,
    /// The devnet config, when that is where the target came from.
    pub(crate) devnet: Option<DevnetConfig>,
}

/// Everything a command needs from the global options.
pub(crate) struct Ctx {
    pub(crate) global: Global,
    pub(crate) out: Output,
}

impl Ctx {
    pub(crate) fn new(global: Global) -> Self {
        let out = Output {
            json: global.json,
            quiet: global.quiet,
        };
        Ctx { global, out }
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        ClientConfig {
            receipt_timeout: Duration::from_secs(self.global.timeout.max(1)),
            ..ClientConfig::default()
        }
    }

    fn read_devnet(&self) -> Result<Option<DevnetConfig>> {
        let path = devnet_path(&self.global.data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                CliError::usage(format!(
                    "{} is not a devnet config ({e}): delete it and start `actp devnet` again",
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

    /// The RPC and kernel to use.
    pub(crate) fn target(&self) -> Result<Target> {
        if let Some(url) = &self.global.rpc_url {
            return Ok(Target {
                rpc_url: url.clone(),
                kernel: self.global.kernel,
                devnet: None,
            });
        }
        match self.read_devnet()? {
            Some(devnet) => Ok(Target {
                rpc_url: devnet.rpc_url.clone(),
                kernel: Some(self.global.kernel.unwrap_or(devnet.kernel)),
                devnet: Some(devnet),
            }),
            None => Err(CliError::not_found(format!(
                "no chain configured and no devnet in {}: start one with `actp devnet` (in another terminal), or set --rpc-url and --kernel (ACTP_RPC_URL, ACTP_KERNEL)",
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

    /// A kernel client; with `need_signer` a command that sends transactions gets a clear error first.
    pub(crate) async fn kernel(&self, need_signer: bool) -> Result<(Kernel, Target)> {
        let target = self.target()?;
        let kernel_address = target.kernel.ok_or_else(|| {
            CliError::usage(
                "no kernel address: set --kernel (ACTP_KERNEL) or run `actp deploy` first",
            )
        })?;
        let signer = self.signer(&target)?;
        if need_signer && signer.is_none() {
            return Err(no_signer(&target));
        }
        let raw = signer.as_ref().is_some_and(|(_, raw)| *raw);
        let kernel = Kernel::connect(
            &target.rpc_url,
            kernel_address,
            signer.map(|(s, _)| s),
            self.client_config(),
        )
        .await
        .map_err(|e| CliError::from(e).context("cannot connect to the kernel"))?;
        self.check_chain(kernel.chain_id(), raw)?;
        Ok((kernel, target))
    }

    /// Refuses another chain than `--chain-id`, and a raw key on a mainnet unless allowed.
    pub(crate) fn check_chain(&self, chain_id: u64, raw_key: bool) -> Result<()> {
        if let Some(expected) = self.global.chain_id
            && expected != chain_id
        {
            return Err(CliError::usage(format!(
                "the RPC is on chain {chain_id}, not {expected}: check --rpc-url and --chain-id"
            )));
        }
        if raw_key
            && !self.global.allow_raw_key_on_mainnet
            && let Some((_, name)) = MAINNETS.iter().find(|(id, _)| *id == chain_id)
        {
            return Err(CliError::usage(format!(
                "refusing a raw private key (ACTP_PRIVATE_KEY) on {name} (chain {chain_id}): use an encrypted keystore (--keystore), or pass --allow-raw-key-on-mainnet if you must"
            )));
        }
        Ok(())
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
