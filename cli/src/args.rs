//! The command line: global options (accepted before or after the subcommand, each also read from an
//! environment variable) and one subcommand per task. The signing key is never an argument: it comes from
//! `ACTP_PRIVATE_KEY`, an encrypted keystore, or (devnet only) a dev account index.

use std::{net::SocketAddr, path::PathBuf};

use actp_core::{Address, Amount, B256, State};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::EXIT_CODES;

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

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// The URL to call.
    pub(crate) url: String,
    /// HTTP method (default: GET, or POST with -d).
    #[arg(short = 'X', long)]
    pub(crate) request: Option<String>,
    /// Request body; `@FILE` reads a file, `@-` standard input. Implies POST unless -X is given.
    #[arg(short = 'd', long)]
    pub(crate) data: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub(crate) headers: Vec<String>,
    /// The call's idempotency key: however often this call is repeated with it, at most one escrow is paid.
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
    /// Settle the escrow at once once the delivery checks out (default: leave it to the dispute window).
    #[arg(long)]
    pub(crate) settle: bool,
    /// Do not dispute a delivery that does not match its proof (only report it).
    #[arg(long)]
    pub(crate) no_dispute: bool,
    /// Attempts of the paid request while the provider fails (same escrow each time).
    #[arg(long, default_value_t = 3)]
    pub(crate) attempts: u32,
    /// Lifetime of the escrow: a provider that never serves ties the money up until then.
    #[arg(long, default_value = "15m")]
    pub(crate) escrow_ttl: Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BudgetCommand {
    /// Set the spend policy: from a TOML file, and/or field by field on top of the current one.
    Set(Box<BudgetSetArgs>),
    /// The policy, the kill switch, and what is spent and reserved today and this month.
    Show(AgentArg),
    /// Stop every new payment of the agent at once, in every process sharing the data directory.
    Suspend(SuspendArgs),
    /// Let the agent pay again.
    Resume(AgentArg),
}

#[derive(Debug, Args)]
pub(crate) struct AgentArg {
    /// The agent (its signing address). Default: the configured signer.
    pub(crate) agent: Option<Address>,
}

#[derive(Debug, Args)]
pub(crate) struct SuspendArgs {
    /// The agent (its signing address). Default: the configured signer.
    pub(crate) agent: Option<Address>,
    /// Why, shown to the agent's refused calls.
    #[arg(long)]
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct BudgetSetArgs {
    /// The agent (its signing address). Default: the configured signer.
    pub(crate) agent: Option<Address>,
    /// A TOML policy file: replaces the whole policy (flags then apply on top).
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// Most paid for one call.
    #[arg(long)]
    pub(crate) per_call: Option<Amount>,
    /// Most spent in one UTC day, all providers.
    #[arg(long)]
    pub(crate) daily: Option<Amount>,
    /// Most spent in one UTC month, all providers.
    #[arg(long)]
    pub(crate) monthly: Option<Amount>,
    /// Most spent with any one provider in one UTC day.
    #[arg(long)]
    pub(crate) provider_daily: Option<Amount>,
    /// Most spent with any one provider in one UTC month.
    #[arg(long)]
    pub(crate) provider_monthly: Option<Amount>,
    /// Pay only these providers (repeatable; adds to the allowlist).
    #[arg(long)]
    pub(crate) allow: Vec<Address>,
    /// Never pay these providers (repeatable; adds to the denylist).
    #[arg(long)]
    pub(crate) deny: Vec<Address>,
    /// Percent of a cap at which a payment logs a soft-limit warning.
    #[arg(long)]
    pub(crate) soft_threshold: Option<u8>,
    /// The longest an escrow may lock the agent's funds, whatever a provider asks: "30m", "1h", "2d"
    /// (default 1h). A payment that needs longer is refused before any escrow.
    #[arg(long)]
    pub(crate) max_escrow_ttl: Option<Duration>,
    /// Remove a field first (per_call, daily, monthly, provider_daily, provider_monthly, allow, deny,
    /// soft_threshold, max_escrow_ttl, providers); repeatable.
    #[arg(long, value_parser = ["per_call", "daily", "monthly", "provider_daily", "provider_monthly", "allow", "deny", "soft_threshold", "max_escrow_ttl", "providers"])]
    pub(crate) clear: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum UsageBy {
    /// By provider address.
    Provider,
    /// By `METHOD /path`.
    Route,
    /// By UTC day.
    Day,
}

#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    /// The agent (its signing address). Default: the configured signer.
    pub(crate) agent: Option<Address>,
    /// How to group.
    #[arg(long, value_enum, default_value = "provider")]
    pub(crate) by: UsageBy,
    /// First UTC day included, YYYY-MM-DD.
    #[arg(long, value_parser = parse_day)]
    pub(crate) since: Option<String>,
    /// Last UTC day included, YYYY-MM-DD.
    #[arg(long, value_parser = parse_day)]
    pub(crate) until: Option<String>,
}

/// A UTC calendar day, `YYYY-MM-DD`, that exists (month 1 to 12, the month's days, leap years).
fn parse_day(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not a day: write YYYY-MM-DD, e.g. 2026-11-23");
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let number = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let part = &s[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => {
            return Err(format!(
                "{s:?}: there is no month {month}; write YYYY-MM-DD"
            ));
        }
    };
    if day == 0 || day > days {
        return Err(format!(
            "{s:?}: month {month} of {year} has {days} days; write YYYY-MM-DD"
        ));
    }
    Ok(s.to_owned())
}

#[derive(Debug, Args)]
pub(crate) struct DevnetArgs {
    /// Port for anvil (default: any free port).
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// Seconds between blocks (default: a block per transaction).
    #[arg(long)]
    pub(crate) block_time: Option<f64>,
    /// Dev accounts to fund.
    #[arg(long, default_value_t = 10)]
    pub(crate) accounts: usize,
    /// Platform fee in basis points.
    #[arg(long, default_value_t = 100)]
    pub(crate) fee_bps: u16,
}

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The escrow token (default: the network's USDC on base and base-sepolia; a fresh MockUSDC elsewhere).
    /// It must have 6 decimals.
    #[arg(long, conflicts_with = "mock_token")]
    pub(crate) token: Option<Address>,
    /// Deploy a MockUSDC dev token (anyone may mint it) even where the network has USDC.
    #[arg(long)]
    pub(crate) mock_token: bool,
    /// Admin (default: the deployer).
    #[arg(long)]
    pub(crate) admin: Option<Address>,
    /// Fee recipient (default: the admin).
    #[arg(long)]
    pub(crate) fee_recipient: Option<Address>,
    /// Platform fee in basis points.
    #[arg(long, default_value_t = 100)]
    pub(crate) fee_bps: u16,
}

/// The terms of a new transaction.
#[derive(Debug, Clone, Args)]
pub(crate) struct Terms {
    /// The provider's address.
    #[arg(long)]
    pub(crate) provider: Address,
    /// Amount: "0.10", "$0.10" or "100000 units" (base units).
    #[arg(long)]
    pub(crate) amount: Amount,
    /// Deadline: "+1h", "+7d", "+30m" from the chain's now, or a unix time.
    #[arg(long, default_value = "+1d")]
    pub(crate) deadline: Deadline,
    /// Dispute window after delivery: "1h", "2d", "3600".
    #[arg(long, default_value = "1h")]
    pub(crate) window: Duration,
    /// Service name (the serviceHash is its keccak256).
    #[arg(long, conflicts_with = "service_hash")]
    pub(crate) service: Option<String>,
    /// Service hash, when you have it rather than the name.
    #[arg(long)]
    pub(crate) service_hash: Option<B256>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TxCommand {
    /// Create a transaction (INITIATED); fund it with `actp tx fund`.
    Create(Terms),
    /// Fund a created transaction (approves the kernel first if needed).
    Fund(IdArg),
    /// Create and fund in one transaction.
    Pay(Terms),
    /// Show a transaction.
    Show(IdArg),
    /// List transactions from the kernel's events.
    List(ListArgs),
    /// Provider: COMMITTED → IN_PROGRESS.
    Start(IdArg),
    /// Provider: IN_PROGRESS → DELIVERED, optionally with a proof hash or the delivered file.
    Deliver(DeliverArgs),
    /// DELIVERED → SETTLED (the requester any time, anyone after the window); several ids settle in one batch.
    Settle(IdsArg),
    /// Requester: DELIVERED → DISPUTED within the window.
    Dispute(DisputeArgs),
    /// Resolver: DISPUTED → SETTLED or CANCELLED, splitting what remains.
    Resolve(ResolveArgs),
    /// Cancel before delivery (rules depend on the state and the deadline).
    Cancel(IdArg),
    /// Requester: pay part of an IN_PROGRESS escrow now.
    ReleaseMilestone(MilestoneArgs),
    /// Print kernel events as they are confirmed, until Ctrl-C (or until --id reaches --until).
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct IdArg {
    /// The transaction id.
    pub(crate) id: B256,
}

#[derive(Debug, Args)]
pub(crate) struct IdsArg {
    /// Transaction ids.
    #[arg(required = true)]
    pub(crate) ids: Vec<B256>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only transactions of this requester.
    #[arg(long)]
    pub(crate) requester: Option<Address>,
    /// Only transactions of this provider.
    #[arg(long)]
    pub(crate) provider: Option<Address>,
    /// Only transactions in this state.
    #[arg(long)]
    pub(crate) state: Option<StateArg>,
    /// First block to scan (default: the devnet's deployment block, else 0).
    #[arg(long)]
    pub(crate) from_block: Option<u64>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,
}

#[derive(Debug, Args)]
pub(crate) struct DeliverArgs {
    /// The transaction id.
    pub(crate) id: B256,
    /// Dispute window (default: the one the requester chose).
    #[arg(long)]
    pub(crate) window: Option<Duration>,
    /// The delivery proof hash to record.
    #[arg(long, conflicts_with = "result")]
    pub(crate) proof_hash: Option<B256>,
    /// Record the content hash of this file as the proof hash.
    #[arg(long)]
    pub(crate) result: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DisputeArgs {
    /// The transaction id.
    pub(crate) id: B256,
    /// Why (sent with the transaction, not stored).
    #[arg(long, default_value = "")]
    pub(crate) reason: String,
}

#[derive(Debug, Args)]
pub(crate) struct ResolveArgs {
    /// The transaction id.
    pub(crate) id: B256,
    /// Final state.
    #[arg(long, value_enum)]
    pub(crate) to: Resolution,
    /// Paid back to the requester.
    #[arg(long, default_value = "0")]
    pub(crate) requester_amount: Amount,
    /// Paid to the provider (before the platform fee).
    #[arg(long, default_value = "0")]
    pub(crate) provider_amount: Amount,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Resolution {
    Settled,
    Cancelled,
}

#[derive(Debug, Args)]
pub(crate) struct MilestoneArgs {
    /// The transaction id.
    pub(crate) id: B256,
    /// How much to release.
    #[arg(long)]
    pub(crate) amount: Amount,
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Only events of this transaction.
    #[arg(long)]
    pub(crate) id: Option<B256>,
    /// With --id: exit when it reaches this state.
    #[arg(long, requires = "id")]
    pub(crate) until: Option<StateArg>,
    /// First block (default: the head).
    #[arg(long)]
    pub(crate) from_block: Option<u64>,
    /// Blocks on top before an event is shown.
    #[arg(long, default_value_t = 0)]
    pub(crate) confirmations: u64,
    /// Give up after this long (exit code 5); e.g. "30s", "5m".
    #[arg(long = "for")]
    pub(crate) duration: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StateArg {
    Initiated,
    Quoted,
    Committed,
    InProgress,
    Delivered,
    Settled,
    Disputed,
    Cancelled,
}

impl From<StateArg> for State {
    fn from(s: StateArg) -> State {
        match s {
            StateArg::Initiated => State::Initiated,
            StateArg::Quoted => State::Quoted,
            StateArg::Committed => State::Committed,
            StateArg::InProgress => State::InProgress,
            StateArg::Delivered => State::Delivered,
            StateArg::Settled => State::Settled,
            StateArg::Disputed => State::Disputed,
            StateArg::Cancelled => State::Cancelled,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct BalanceArgs {
    /// Whose balance (default: the signer).
    pub(crate) address: Option<Address>,
}

#[derive(Debug, Args)]
pub(crate) struct MintArgs {
    /// How much: "100", "$0.10", "100000 units".
    pub(crate) amount: Amount,
    /// To whom (default: the signer).
    #[arg(long)]
    pub(crate) to: Option<Address>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProofCommand {
    /// The content hash (keccak256) of a file, `-` for stdin: the resultHash of a delivery.
    Hash(HashArgs),
    /// Check a delivery: the body against its signed proof, the provider's signature, and the proof hash
    /// (given, or recorded on chain).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HashArgs {
    /// The file (`-`: stdin).
    pub(crate) file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The response body received (`-`: stdin).
    #[arg(long)]
    pub(crate) body: PathBuf,
    /// The X-AGIRAILS-DELIVERY-PROOF header value, or @FILE with the JSON of an AIP-4 proof an ACTP SDK
    /// signed.
    #[arg(long)]
    pub(crate) proof: String,
    /// The X-AGIRAILS-PROOF-HASH header value, if you have it.
    #[arg(long)]
    pub(crate) proof_hash: Option<B256>,
    /// Also check against the chain: the transaction's provider and the proof hash it recorded.
    #[arg(long)]
    pub(crate) onchain: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// The API to protect, e.g. http://127.0.0.1:8000.
    #[arg(long, env = "ACTP_UPSTREAM")]
    pub(crate) upstream: String,
    /// Address to listen on.
    #[arg(long, env = "ACTP_LISTEN", default_value = "127.0.0.1:8402")]
    pub(crate) listen: SocketAddr,
    /// A priced route: "METHOD PATH=PRICE", optionally "@SERVICE" after the price, e.g.
    /// "POST /v1/summarise=0.10@summarise"; PRICE "free" for a free route. Repeat for each route;
    /// paths use axum patterns ("/v1/items/{id}").
    #[arg(long = "route", required = true)]
    pub(crate) routes: Vec<RouteSpec>,
    /// Shortest time before a transaction's deadline that the gateway accepts.
    #[arg(long, default_value = "5m")]
    pub(crate) min_time_to_deadline: Duration,
    /// The longest the upstream may take to answer a request (then 504, and the payment can be retried).
    #[arg(long, env = "ACTP_UPSTREAM_TIMEOUT", default_value = "60s")]
    pub(crate) upstream_timeout: Duration,
    /// Claim with an on-chain IN_PROGRESS before serving (replicas sharing a key), instead of locally.
    #[arg(long)]
    pub(crate) onchain_claims: bool,
    /// Forward requests to paths not listed with --route, free (default: 404, so nothing is served
    /// for free by mistake).
    #[arg(long)]
    pub(crate) pass_through: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SettleArgs {
    /// Settle what is due and exit (for cron).
    #[arg(long)]
    pub(crate) once: bool,
    /// Ids per settleBatch transaction.
    #[arg(long, default_value_t = 100)]
    pub(crate) batch_size: usize,
    /// Settlement transactions in flight.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Blocks on top before a block is read (default: 0 on the devnet, 2 elsewhere).
    #[arg(long)]
    pub(crate) confirmations: Option<u64>,
    /// First block when there is no checkpoint (default: the devnet's deployment block, else 0).
    #[arg(long)]
    pub(crate) from_block: Option<u64>,
    /// This daemon's share of the ids, INDEX/COUNT (e.g. 0/2), to split the work between daemons.
    #[arg(long)]
    pub(crate) shard: Option<actp_settler::Shard>,
    /// Serve /health and /metrics here.
    #[arg(long, env = "ACTP_SETTLER_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Pause between polls once caught up: "1s", "500ms".
    #[arg(long, default_value = "1s")]
    pub(crate) poll_interval: Duration,
    /// Longest pause between retries during an outage.
    #[arg(long, default_value = "30s")]
    pub(crate) max_backoff: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Paid calls the consumer makes.
    #[arg(long, default_value_t = 3)]
    pub(crate) calls: usize,
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

/// A gateway route: `METHOD PATH=PRICE[@SERVICE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteSpec {
    pub(crate) method: http::Method,
    pub(crate) path: String,
    /// `None`: free.
    pub(crate) price: Option<Amount>,
    pub(crate) service: Option<String>,
}

impl std::str::FromStr for RouteSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "route `{s}`: {why}; write \"METHOD PATH=PRICE\", e.g. \"POST /v1/summarise=0.10\""
            )
        };
        let (method, rest) = s.trim().split_once(' ').ok_or_else(|| bad("no method"))?;
        let (path, price) = rest
            .trim()
            .rsplit_once('=')
            .ok_or_else(|| bad("no price"))?;
        let path = path.trim();
        if !path.starts_with('/') {
            return Err(bad("the path must start with /"));
        }
        let method: http::Method = method
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| bad("unknown method"))?;
        let (price, service) = match price.split_once('@') {
            Some((p, name)) if !name.trim().is_empty() => (p, Some(name.trim().to_owned())),
            Some(_) => return Err(bad("empty service name after @")),
            None => (price, None),
        };
        let price = match price.trim() {
            p if p.eq_ignore_ascii_case("free") => None,
            p => Some(p.parse::<Amount>().map_err(|e| bad(&e.to_string()))?),
        };
        Ok(RouteSpec {
            method,
            path: path.to_owned(),
            price,
            service,
        })
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
    fn days_must_exist() {
        assert_eq!(parse_day("2026-11-23").unwrap(), "2026-11-23");
        assert!(parse_day("2024-02-29").is_ok());
        for bad in [
            "2026-13-45",
            "2026-00-10",
            "2026-02-29",
            "2100-02-29",
            "2026-04-31",
            "2026-11-00",
            "2026-1-23",
            "26-11-23",
            "2026/11/23",
            "２０２６-11-23",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
        assert!(parse_day("2026-13-45").unwrap_err().contains("no month 13"));
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

    #[test]
    fn route_specs() {
        let r: RouteSpec = "post /v1/summarise=0.10@summarise".parse().unwrap();
        assert_eq!(r.method, http::Method::POST);
        assert_eq!(r.path, "/v1/summarise");
        assert_eq!(r.price, Some(Amount::from_base_units(100_000)));
        assert_eq!(r.service.as_deref(), Some("summarise"));
        let free: RouteSpec = "GET /health=free".parse().unwrap();
        assert_eq!(free.price, None);
        for bad in [
            "/v1/x=0.10",
            "POST v1=0.10",
            "POST /v1",
            "POST /v1=abc",
            "POST /v1=0.10@",
        ] {
            assert!(
                bad.parse::<RouteSpec>()
                    .unwrap_err()
                    .contains("METHOD PATH=PRICE"),
                "{bad}"
            );
        }
    }
}
