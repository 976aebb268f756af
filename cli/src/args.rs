//! The command line: global options (accepted before or after the subcommand, each also read from an
//! environment variable), the list of subcommands (each one's arguments live in its module under `cmd/`),
//! and the value types several of them parse (durations, deadlines, gas prices). The signing key is never an
//! argument: it comes from `ACTP_PRIVATE_KEY`, an encrypted keystore, or (devnet only) a dev account index.

use std::path::PathBuf;

use actp_core::Address;
use clap::{Args, Parser, Subcommand};

use crate::{
    cmd::{
        demo::DemoArgs,
        deploy::DeployArgs,
        devnet::DevnetArgs,
        gateway::GatewayArgs,
        pay::{BudgetCommand, CallArgs, UsageArgs},
        proof::ProofCommand,
        session::SessionCommand,
        settle::SettleArgs,
        token::{BalanceArgs, MintArgs},
        tx::TxCommand,
    },
    error::EXIT_CODES,
};

/// actp: escrow payments between AI agents on the ACTP kernel.
#[derive(Debug, Parser)]
#[command(name = "actp", version, after_help = EXIT_CODES, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// JSON-RPC endpoint. Without it, the devnet written by `actp devnet` in --data-dir is used.
    #[arg(long, env = "ACTP_RPC_URL", global = true, hide_env_values = true)]
    pub(crate) rpc_url: Option<String>,
    /// The escrow kernel's address.
    #[arg(long, env = "ACTP_KERNEL", global = true)]
    pub(crate) kernel: Option<Address>,
    /// A named network: base, base-sepolia or devnet. Sets the chain id the RPC must be on, the USDC
    /// address, confirmations, the eth_getLogs range and the fee cap; without --rpc-url, its public RPC.
    #[arg(long, env = "ACTP_NETWORK", global = true, value_parser = ["base", "base-sepolia", "devnet"])]
    pub(crate) network: Option<String>,
    /// The chain id you expect; commands refuse an RPC on another chain.
    #[arg(long, env = "ACTP_CHAIN_ID", global = true)]
    pub(crate) chain_id: Option<u64>,
    /// An extra CA certificate (PEM) to trust, on top of the system's, for a private RPC, provider or
    /// upstream behind TLS.
    #[arg(long, env = "ACTP_CA_CERT", global = true)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// The most a transaction may offer per gas, e.g. "2gwei", "0.5 gwei" or wei; a send priced above it is
    /// refused (default: 1 gwei on base and base-sepolia, no cap elsewhere).
    #[arg(long, env = "ACTP_MAX_FEE_PER_GAS", global = true)]
    pub(crate) max_fee_per_gas: Option<GasPrice>,
    /// An encrypted JSON keystore with the signing key (password from ACTP_KEY_PASSWORD or a prompt).
    /// Otherwise the key is read from ACTP_PRIVATE_KEY.
    #[arg(long, env = "ACTP_KEYSTORE", global = true)]
    pub(crate) keystore: Option<PathBuf>,
    /// Devnet only: sign as dev account N of `actp devnet` (0 is the admin).
    #[arg(long, env = "ACTP_ACCOUNT", global = true)]
    pub(crate) account: Option<usize>,
    /// Where actp keeps its state: the devnet config, the settler's checkpoint, the gateway's claims.
    #[arg(long, env = "ACTP_DATA_DIR", default_value = ".actp", global = true)]
    pub(crate) data_dir: PathBuf,
    /// Where actp keeps what must survive a restart (the gateway's claims, outbox and sessions; the settler's
    /// checkpoint and pending set; the paying agents' spend ledger): a sled directory (default: under
    /// --data-dir; one process at a time) or postgres://user:password@host/database, which any number of
    /// processes share (gateway replicas behind one load balancer, agents with one budget, several settlers);
    /// over TCP add ?sslmode=require&sslrootcert=ca.pem for TLS with the database's own CA.
    #[arg(long, env = "ACTP_STORE", global = true)]
    pub(crate) store: Option<actp_store::StoreUrl>,
    /// Machine-readable output: JSON on stdout, errors as JSON on stderr.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Print results only, no progress.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Seconds to wait for a transaction receipt.
    #[arg(long, env = "ACTP_TIMEOUT", default_value_t = 120, global = true)]
    pub(crate) timeout: u64,
    /// Accept ACTP_PRIVATE_KEY on a known mainnet (a keystore is the safer choice there).
    #[arg(long, global = true)]
    pub(crate) allow_raw_key_on_mainnet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start the embedded devnet (anvil, kernel, MockUSDC, funded dev accounts) until Ctrl-C.
    Devnet(DevnetArgs),
    /// Deploy the kernel (and MockUSDC unless --token) to any RPC; prints the deployment JSON.
    Deploy(DeployArgs),
    /// Create, fund, inspect and move escrow transactions.
    #[command(subcommand)]
    Tx(TxCommand),
    /// Sessions: one escrow paying one provider for many calls (open, show, list, top-up, close, end).
    #[command(subcommand)]
    Session(SessionCommand),
    /// Token balance of an address (default: the signer).
    Balance(BalanceArgs),
    /// Mint dev tokens (MockUSDC only).
    Mint(MintArgs),
    /// Hash and verify delivery proofs.
    #[command(subcommand)]
    Proof(ProofCommand),
    /// A reverse proxy that puts the paywall in front of any HTTP API.
    Gateway(GatewayArgs),
    /// The settlement daemon: settles delivered transactions once their dispute window ends.
    Settle(SettleArgs),
    /// The whole system on an embedded devnet: provider, paying consumer, settlement daemon.
    Demo(DemoArgs),
    /// Call a URL, paying for a 402 by itself within the agent's spend policy.
    Call(CallArgs),
    /// The agent's spend policy and kill switch.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// What the agent spent, by provider, route or day.
    Usage(UsageArgs),
}

/// A deadline: relative to the chain's now, or absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Seconds from the chain's now.
    In(u64),
    /// A unix time.
    At(u64),
}

impl Deadline {
    pub(crate) fn resolve(self, now: u64) -> u64 {
        match self {
            Deadline::In(secs) => now.saturating_add(secs),
            Deadline::At(t) => t,
        }
    }
}

impl std::str::FromStr for Deadline {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(rel) = s.strip_prefix('+') {
            return rel
                .parse::<Duration>()
                .map(|d| Deadline::In(d.0.as_secs()))
                .map_err(|e| format!("{e}; a deadline is \"+1h\", \"+7d\" or a unix time"));
        }
        s.parse::<u64>()
            .map(Deadline::At)
            .map_err(|_| format!("`{s}` is not a deadline: write \"+1h\", \"+7d\" or a unix time"))
    }
}

/// A duration: "90", "90s", "500ms", "30m", "1h", "7d".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Duration(pub(crate) std::time::Duration);

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad =
            || format!("`{s}` is not a duration: write e.g. \"90s\", \"30m\", \"1h\", \"7d\"");
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let ms = match unit.trim() {
            "ms" => Some(n),
            "" | "s" => n.checked_mul(1_000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            _ => None,
        }
        .ok_or_else(bad)?;
        Ok(Duration(std::time::Duration::from_millis(ms)))
    }
}

/// A price per gas in wei: "1000000000", "2gwei", "0.5 gwei", "7 wei".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GasPrice(pub(crate) u128);

impl std::str::FromStr for GasPrice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a gas price: write e.g. \"2gwei\", \"0.5 gwei\" or wei");
        let t = s.trim().to_ascii_lowercase();
        let (number, decimals) = if let Some(n) = t.strip_suffix("gwei") {
            (n.trim(), 9u32)
        } else if let Some(n) = t.strip_suffix("wei") {
            (n.trim(), 0)
        } else {
            (t.as_str(), 0)
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || fraction.len() > decimals as usize
        {
            return Err(bad());
        }
        let scale = 10u128.pow(decimals);
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let fraction: u128 = if fraction.is_empty() {
            0
        } else {
            let padded = format!("{fraction:0<width$}", width = decimals as usize);
            padded.parse().map_err(|_| bad())?
        };
        whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(fraction))
            .map(GasPrice)
            .ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn deadlines_and_durations() {
        assert_eq!("+1h".parse::<Deadline>().unwrap(), Deadline::In(3600));
        assert_eq!("+7d".parse::<Deadline>().unwrap(), Deadline::In(7 * 86_400));
        assert_eq!(
            "1700000000".parse::<Deadline>().unwrap(),
            Deadline::At(1_700_000_000)
        );
        assert!("tomorrow".parse::<Deadline>().unwrap_err().contains("+1h"));
        assert_eq!("500ms".parse::<Duration>().unwrap().0.as_millis(), 500);
        assert_eq!("90".parse::<Duration>().unwrap().0.as_secs(), 90);
        assert!("1y".parse::<Duration>().is_err());
    }

    #[test]
    fn gas_prices() {
        assert_eq!("2gwei".parse::<GasPrice>().unwrap().0, 2_000_000_000);
        assert_eq!("0.5 gwei".parse::<GasPrice>().unwrap().0, 500_000_000);
        assert_eq!("7 wei".parse::<GasPrice>().unwrap().0, 7);
        assert_eq!("1000".parse::<GasPrice>().unwrap().0, 1000);
        for bad in [
            "",
            "gwei",
            "1.5 wei",
            "0.0000000001gwei",
            "-1gwei",
            "1e9",
            "2 eth",
        ] {
            assert!(bad.parse::<GasPrice>().is_err(), "{bad}");
        }
    }
}
