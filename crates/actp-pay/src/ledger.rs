//! The spend ledger: policies, payments (the receipts) and per-period totals of every agent, in one sled
//! tree so that each change is one atomic batch, written through to disk before the payment goes on.
//!
//! Two-phase accounting. [`Ledger::reserve`] checks every cap the payment touches against what is already
//! spent *and* reserved, and holds the amount; the caller then creates the escrow and calls
//! [`Ledger::update`] to turn the reservation into spend ([`PaymentState::Funded`]) or give it back
//! ([`PaymentState::Released`]). A refund gives back what the kernel refunded. Reservations are serialized
//! by a lock in this process, and sled's file lock keeps any other process out of the same ledger, so
//! concurrent calls never spend past a cap.
//!
//! The kill switch is a file next to the ledger (see [`KillSwitch`]), not a ledger entry: any process sharing
//! the data directory can throw it while an agent holds the ledger open, and the agent sees it before its
//! next escrow.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use actp_core::{Address, Amount, B256};
use serde::{Deserialize, Serialize};

use crate::policy::{CapKind, SpendPolicy};

/// Why the ledger could not do what was asked (storage, not policy).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another process has this ledger open (sled allows one process at a time).
    #[error(
        "the spend ledger in {path} is open in another process (an agent paying with this data directory): stop it first, or use `actp budget suspend` to stop its payments at once"
    )]
    Busy {
        /// The ledger directory.
        path: PathBuf,
    },
    /// The database failed.
    #[error("spend ledger storage failed: {0}: check that the data directory is writable")]
    Storage(String),
    /// An entry does not decode (written by an incompatible version, or damaged).
    #[error(
        "spend ledger entry {0} is unreadable: the data directory was written by another version"
    )]
    Corrupt(String),
    /// No payment has this idempotency key.
    #[error("no payment with idempotency key {0:?} in the ledger")]
    UnknownPayment(String),
    /// The policy cannot be enforced as written.
    #[error(transparent)]
    InvalidPolicy(#[from] crate::policy::PolicyError),
    /// The idempotency key is empty or too long.
    #[error("idempotency key {0:?} is not usable: give 1 to 200 printable characters")]
    InvalidKey(String),
}

impl From<sled::Error> for LedgerError {
    fn from(e: sled::Error) -> Self {
        LedgerError::Storage(e.to_string())
    }
}

/// A payment refused by the spend policy, before any escrow exists. Each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The agent's kill switch is on.
    #[error(
        "agent {agent} is suspended{}: no payment is made until `actp budget resume {agent}`",
        reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    )]
    Suspended {
        /// The agent.
        agent: Address,
        /// Why, as given when suspending.
        reason: Option<String>,
    },
    /// The provider is on the denylist, or not on the allowlist.
    #[error(
        "provider {provider} is not allowed by agent {agent}'s policy: add it to `allow` (or remove it from `deny`) with `actp budget set`"
    )]
    ProviderNotAllowed {
        /// The agent.
        agent: Address,
        /// The provider.
        provider: Address,
    },
    /// The provider's earliest acceptable deadline would lock the funds longer than the policy allows.
    #[error(
        "provider {provider} wants the escrow to last at least {needed_seconds}s, but agent {agent}'s policy allows at most {max_seconds}s: raise `max_escrow_ttl` with `actp budget set --max-escrow-ttl` if you trust this provider"
    )]
    EscrowTooLong {
        /// The agent.
        agent: Address,
        /// The provider.
        provider: Address,
        /// How long the provider's instructions need the escrow to last, from now.
        needed_seconds: u64,
        /// The policy's limit.
        max_seconds: u64,
    },
    /// The payment would take a cap past its limit: the hard limit.
    #[error(
        "{cap} of {limit} reached for {period}: {used} spent or reserved, this call needs {amount}; raise `{}` with `actp budget set` or wait for the next period",
        cap.field()
    )]
    CapReached {
        /// Which cap.
        cap: CapKind,
        /// Its limit.
        limit: Amount,
        /// Already spent or reserved in the period.
        used: Amount,
        /// What the call needs.
        amount: Amount,
        /// The period (`2026-11-23`, `2026-11`, or `this call`).
        period: String,
        /// The provider, for per-provider caps.
        provider: Option<Address>,
    },
}

/// Where a payment is in its life. The budget counts `Reserved` as reserved, `Released` as nothing, and
/// every other state as spent (less any refund).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Budget held; the escrow is being created (or a crash left it unknown until reconciled).
    Reserved,
    /// No escrow was created; the budget was given back.
    Released,
    /// The escrow is funded; nothing served yet.
    Funded,
    /// Served, and the delivery proof checks out.
    Served,
    /// Served, but the body does not match the provider's proof: to dispute.
    Mismatched,
    /// Settled on chain: the provider was paid.
    Settled,
    /// Disputed on chain, awaiting a resolver.
    Disputed,
    /// The escrow was cancelled and refunded in full.
    Refunded,
    /// A dispute was resolved; `refunded` is the requester's share.
    Resolved,
}

impl PaymentState {
    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PaymentState::Released
                | PaymentState::Settled
                | PaymentState::Refunded
                | PaymentState::Resolved
        )
    }

    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Reserved => "reserved",
            PaymentState::Released => "released",
            PaymentState::Funded => "funded",
            PaymentState::Served => "served",
            PaymentState::Mismatched => "mismatched",
            PaymentState::Settled => "settled",
            PaymentState::Disputed => "disputed",
            PaymentState::Refunded => "refunded",
            PaymentState::Resolved => "resolved",
        }
    }
}

impl std::fmt::Display for PaymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One payment: the receipt of one logical call, keyed by its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The idempotency key: one key, at most one escrow.
    pub key: String,
    /// The paying agent (requester).
    pub agent: Address,
    /// The provider paid.
    pub provider: Address,
    /// The route, `METHOD /path` (no query).
    pub route: String,
    /// The full URL called.
    pub url: String,
    /// The provider's service name.
    pub service: String,
    /// The escrow amount.
    pub amount: Amount,
    /// The platform fee the kernel takes from the provider's side at settlement (locked at creation).
    pub fee: Amount,
    /// What the kernel refunded to the agent.
    pub refunded: Amount,
    /// Where it is.
    pub state: PaymentState,
    /// The kernel transaction, once funded.
    pub tx_id: Option<B256>,
    /// The verified delivery proof hash, once served.
    pub proof_hash: Option<B256>,
    /// The escrow's deadline (unix seconds), once funded.
    pub deadline: Option<u64>,
    /// The chain's block number when the payment was reserved: its escrow, if any, is at or after it.
    pub block: u64,
    /// UTC day the payment counts in, `YYYY-MM-DD`.
    pub day: String,
    /// UTC month the payment counts in, `YYYY-MM`.
    pub month: String,
    /// When it was reserved (unix seconds).
    pub created_at: u64,
    /// Last change (unix seconds).
    pub updated_at: u64,
    /// Why it is where it is, when that needs saying (a mismatch, a release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Payment {
    /// What it holds of the budget: `(reserved, spent)`.
    fn holds(&self) -> (u128, u128) {
        match self.state {
            PaymentState::Reserved => (self.amount.base_units(), 0),
            PaymentState::Released => (0, 0),
            _ => (
                0,
                self.amount
                    .base_units()
                    .saturating_sub(self.refunded.base_units()),
            ),
        }
    }

    /// What it costs the agent now: the amount less refunds, nothing if released.
    pub fn spent(&self) -> Amount {
        let (reserved, spent) = self.holds();
        Amount::from_base_units(reserved.saturating_add(spent))
    }
}

/// The terms of a payment about to be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Idempotency key.
    pub key: String,
    /// Paying agent.
    pub agent: Address,
    /// Provider.
    pub provider: Address,
    /// `METHOD /path`.
    pub route: String,
    /// Full URL.
    pub url: String,
    /// Service name.
    pub service: String,
    /// Amount.
    pub amount: Amount,
    /// Platform fee at the current rate.
    pub fee: Amount,
    /// The chain's current block.
    pub block: u64,
    /// Now (unix seconds, wall clock: budgets are about real days).
    pub now: u64,
}

/// A payment crossed the soft threshold of a cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SoftLimit {
    /// The agent.
    pub agent: Address,
    /// Which cap.
    pub cap: CapKind,
    /// The cap's limit.
    pub limit: Amount,
    /// Spent or reserved in the period, this payment included.
    pub used: Amount,
    /// The threshold crossed.
    pub threshold: Amount,
    /// The period.
    pub period: String,
    /// The provider, for per-provider caps.
    pub provider: Option<Address>,
}

/// What [`Ledger::reserve`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// A new reservation, and the soft thresholds it crossed.
    New(Payment, Vec<SoftLimit>),
    /// The key already has a payment (a retry of the same logical call): nothing was reserved again.
    Existing(Payment),
}

/// Spent and reserved in one period, for one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Held by reservations.
    pub reserved: Amount,
    /// Spent (escrows funded, less refunds).
    pub spent: Amount,
}

impl Totals {
    /// Reserved plus spent: what counts against a cap.
    pub fn used(&self) -> Amount {
        Amount::from_base_units(
            self.reserved
                .base_units()
                .saturating_add(self.spent.base_units()),
        )
    }
}

/// How to group a usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// By provider address.
    #[default]
    Provider,
    /// By `METHOD /path`.
    Route,
    /// By UTC day.
    Day,
}

/// Which payments a usage report covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageQuery {
    /// Grouping.
    pub by: GroupBy,
    /// First UTC day included (`YYYY-MM-DD`).
    pub since: Option<String>,
    /// Last UTC day included.
    pub until: Option<String>,
}

/// One group of a usage report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// The provider, route or day.
    pub key: String,
    /// Payments with an escrow.
    pub calls: u64,
    /// Spent: escrowed amounts less refunds.
    pub spent: Amount,
    /// Refunded by the kernel.
    pub refunded: Amount,
    /// Platform fees within `spent` (paid from the provider's side).
    pub fees: Amount,
    /// Still reserved (calls in flight).
    pub reserved: Amount,
    /// Calls refused or released before any escrow.
    pub released: u64,
}

/// A usage report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// The agent.
    pub agent: Address,
    /// The grouping.
    pub by: GroupBy,
    /// One row per group, sorted by key.
    pub rows: Vec<UsageRow>,
    /// All rows together.
    pub total: UsageRow,
}

/// The kill switch: one file per suspended agent under `<dir>/suspended/`. Any process sharing the data
/// directory can throw it or read it without opening the ledger.
#[derive(Debug, Clone)]
pub struct KillSwitch {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Suspension {
    reason: Option<String>,
    at: u64,
}

impl KillSwitch {
    /// The kill switch of the ledger directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KillSwitch {
            dir: dir.into().join("suspended"),
        }
    }

    fn file(&self, agent: Address) -> PathBuf {
        self.dir.join(format!("{agent:#x}"))
    }

    /// Stops every new payment of `agent`, in every process sharing the directory, until resumed.
    pub fn suspend(&self, agent: Address, reason: Option<&str>) -> Result<(), LedgerError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| LedgerError::Storage(e.to_string()))?;
        let body = serde_json::to_vec(&Suspension {
            reason: reason.map(str::to_owned),
            at: unix_now(),
        })
        .map_err(|e| LedgerError::Storage(e.to_string()))?;
        // Written whole, then renamed into place: a reader sees the switch complete or not at all.
        let tmp = self.dir.join(format!(".{agent:#x}.{}", std::process::id()));
        std::fs::write(&tmp, body).map_err(|e| LedgerError::Storage(e.to_string()))?;
        std::fs::rename(&tmp, self.file(agent)).map_err(|e| LedgerError::Storage(e.to_string()))
    }

    /// Lets `agent` pay again. Resuming an agent that is not suspended is not an error.
    pub fn resume(&self, agent: Address) -> Result<(), LedgerError> {
        match std::fs::remove_file(self.file(agent)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LedgerError::Storage(e.to_string())),
        }
    }

    /// `Some(reason)` while `agent` is suspended.
    pub fn suspended(&self, agent: Address) -> Option<Option<String>> {
        let bytes = std::fs::read(self.file(agent)).ok()?;
        Some(
            serde_json::from_slice::<Suspension>(&bytes)
                .ok()
                .and_then(|s| s.reason),
        )
    }

    /// Refuses with [`BudgetError::Suspended`] while `agent` is suspended.
    pub fn check(&self, agent: Address) -> Result<(), BudgetError> {
        match self.suspended(agent) {
            Some(reason) => Err(BudgetError::Suspended { agent, reason }),
            None => Ok(()),
        }
    }
}

/// The spend ledger. Cheap to clone; clones share one database and one reservation lock.
#[derive(Debug, Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    kill: KillSwitch,
    lock: Mutex<()>,
}

const POLICY: &str = "policy/";
const PAYMENT: &str = "pay/";
const TOTALS: &str = "tot/";
const BY_TX: &str = "tx/";

fn hex(a: Address) -> String {
    format!("{a:#x}")
}

fn payment_key(agent: Address, key: &str) -> Vec<u8> {
    format!("{PAYMENT}{}/{key}", hex(agent)).into_bytes()
}

fn totals_key(agent: Address, period: &str, scope: Option<Address>) -> Vec<u8> {
    let scope = scope.map_or_else(|| "*".to_owned(), hex);
    format!("{TOTALS}{}/{period}/{scope}", hex(agent)).into_bytes()
}

/// The four buckets a payment counts in, with the cap of each.
fn buckets(payment: &Payment) -> [(CapKind, String, Option<Address>); 4] {
    let (d, m) = (format!("d{}", payment.day), format!("m{}", payment.month));
    let p = Some(payment.provider);
    [
        (CapKind::Daily, d.clone(), None),
        (CapKind::Monthly, m.clone(), None),
        (CapKind::ProviderDaily, d, p),
        (CapKind::ProviderMonthly, m, p),
    ]
}

impl Ledger {
    /// Opens (or creates) the ledger in `dir` (`<data-dir>/pay` for the CLI).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let dir = dir.as_ref().to_path_buf();
        // Every write flushes before it returns (`durable`), so sled's background flusher adds nothing; without
        // it no thread outlives the last handle, and the database lock goes with the handle.
        let db = sled::Config::new()
            .path(dir.join("ledger"))
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    LedgerError::Busy { path: dir.clone() }
                }
                other => LedgerError::from(other),
            })?;
        let tree = db.open_tree("ledger")?;
        Ok(Ledger {
            inner: Arc::new(Inner {
                kill: KillSwitch::new(&dir),
                dir,
                db,
                tree,
                lock: Mutex::new(()),
            }),
        })
    }

    /// The ledger directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The kill switch next to this ledger.
    pub fn kill_switch(&self) -> &KillSwitch {
        &self.inner.kill
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave a half-written batch (batches are atomic).
        self.inner
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, key: &[u8]) -> Result<Option<T>, LedgerError> {
        match self.inner.tree.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|_| LedgerError::Corrupt(String::from_utf8_lossy(key).into_owned())),
        }
    }

    fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, LedgerError> {
        serde_json::to_vec(value).map_err(|e| LedgerError::Storage(e.to_string()))
    }

    fn durable(&self) -> Result<(), LedgerError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// The policy of `agent` (the empty policy, no caps, if none was set).
    pub fn policy(&self, agent: Address) -> Result<SpendPolicy, LedgerError> {
        Ok(self
            .read(format!("{POLICY}{}", hex(agent)).as_bytes())?
            .unwrap_or_default())
    }

    /// Replaces the policy of `agent`. Takes effect at the next reservation.
    pub fn set_policy(&self, agent: Address, policy: &SpendPolicy) -> Result<(), LedgerError> {
        policy.validate()?;
        let _g = self.guard();
        self.inner.tree.insert(
            format!("{POLICY}{}", hex(agent)).as_bytes(),
            Self::encode(policy)?,
        )?;
        self.durable()
    }

    /// Agents with a policy or payments.
    pub fn agents(&self) -> Result<Vec<Address>, LedgerError> {
        let mut agents = std::collections::BTreeSet::new();
        for prefix in [POLICY, PAYMENT] {
            for item in self.inner.tree.scan_prefix(prefix.as_bytes()) {
                let (key, _) = item?;
                let text = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                if let Some(a) = text.split('/').next().and_then(|a| a.parse().ok()) {
                    agents.insert(a);
                }
            }
        }
        Ok(agents.into_iter().collect())
    }

    /// Spent and reserved by `agent` in `period` (`d2026-11-23` / `m2026-11`, see [`Ledger::periods`]),
    /// in total (`provider: None`) or with one provider.
    pub fn totals(
        &self,
        agent: Address,
        period: &str,
        provider: Option<Address>,
    ) -> Result<Totals, LedgerError> {
        Ok(self
            .read(&totals_key(agent, period, provider))?
            .unwrap_or_default())
    }

    /// The day and month periods of unix time `now`: `("d2026-11-23", "m2026-11")`.
    pub fn periods(now: u64) -> (String, String) {
        let (day, month) = utc_day_month(now);
        (format!("d{day}"), format!("m{month}"))
    }

    /// The payment with idempotency key `key`.
    pub fn payment(&self, agent: Address, key: &str) -> Result<Option<Payment>, LedgerError> {
        self.read(&payment_key(agent, key))
    }

    /// The payment of kernel transaction `tx_id`.
    pub fn payment_by_tx(&self, tx_id: B256) -> Result<Option<Payment>, LedgerError> {
        let Some(at) = self.inner.tree.get(format!("{BY_TX}{tx_id}").as_bytes())? else {
            return Ok(None);
        };
        self.read(&[PAYMENT.as_bytes(), &at].concat())
    }

    /// Every payment of `agent`, in key order.
    pub fn payments(&self, agent: Address) -> Result<Vec<Payment>, LedgerError> {
        let prefix = format!("{PAYMENT}{}/", hex(agent));
        self.inner
            .tree
            .scan_prefix(prefix.as_bytes())
            .map(|item| {
                let (key, bytes) = item?;
                serde_json::from_slice(&bytes)
                    .map_err(|_| LedgerError::Corrupt(String::from_utf8_lossy(&key).into_owned()))
            })
            .collect()
    }

    /// Phase one: checks the kill switch, the provider lists and every cap the payment touches against what
    /// is spent and reserved, and holds the amount. A key seen before returns its payment untouched.
    pub fn reserve(&self, intent: Intent) -> Result<Result<Reserved, BudgetError>, LedgerError> {
        let key = &intent.key;
        if key.is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
            return Err(LedgerError::InvalidKey(key.clone()));
        }
        let _g = self.guard();
        // A released key never made an escrow: calling again with it is a fresh attempt.
        let previous = self.payment(intent.agent, key)?;
        if let Some(existing) = &previous
            && existing.state != PaymentState::Released
        {
            return Ok(Ok(Reserved::Existing(existing.clone())));
        }
        if let Err(refused) = self.inner.kill.check(intent.agent) {
            return Ok(Err(refused));
        }
        let policy = self.policy(intent.agent)?;
        if !policy.allows(intent.provider) {
            return Ok(Err(BudgetError::ProviderNotAllowed {
                agent: intent.agent,
                provider: intent.provider,
            }));
        }
        let (day, month) = utc_day_month(intent.now);
        let payment = Payment {
            key: key.clone(),
            agent: intent.agent,
            provider: intent.provider,
            route: intent.route,
            url: intent.url,
            service: intent.service,
            amount: intent.amount,
            fee: intent.fee,
            refunded: Amount::ZERO,
            state: PaymentState::Reserved,
            tx_id: None,
            proof_hash: None,
            deadline: None,
            block: intent.block,
            day,
            month,
            created_at: intent.now,
            updated_at: intent.now,
            note: None,
        };
        let amount = payment.amount.base_units();
        if let Some(limit) = policy.cap(CapKind::PerCall, None)
            && payment.amount > limit
        {
            return Ok(Err(BudgetError::CapReached {
                cap: CapKind::PerCall,
                limit,
                used: Amount::ZERO,
                amount: payment.amount,
                period: "this call".into(),
                provider: None,
            }));
        }
        let mut soft = Vec::new();
        for (cap, period, scope) in buckets(&payment) {
            let Some(limit) = policy.cap(cap, scope) else {
                continue;
            };
            let used = self.totals(payment.agent, &period, scope)?.used();
            let after = used.base_units().saturating_add(amount);
            let shown = period[1..].to_owned();
            if after > limit.base_units() {
                return Ok(Err(BudgetError::CapReached {
                    cap,
                    limit,
                    used,
                    amount: payment.amount,
                    period: shown,
                    provider: scope,
                }));
            }
            let threshold = percent_of(limit.base_units(), policy.soft_percent());
            if used.base_units() < threshold && after >= threshold {
                soft.push(SoftLimit {
                    agent: payment.agent,
                    cap,
                    limit,
                    used: Amount::from_base_units(after),
                    threshold: Amount::from_base_units(threshold),
                    period: shown,
                    provider: scope,
                });
            }
        }
        self.write(previous.as_ref(), &payment)?;
        Ok(Ok(Reserved::New(payment, soft)))
    }

    /// Phase two and after: applies `change` to the payment with key `key` and moves the budget with it
    /// (reserved → spent when funded, back when released or refunded), in one atomic write.
    pub fn update(
        &self,
        agent: Address,
        key: &str,
        change: impl FnOnce(&mut Payment),
    ) -> Result<Payment, LedgerError> {
        let _g = self.guard();
        let old = self
            .payment(agent, key)?
            .ok_or_else(|| LedgerError::UnknownPayment(key.to_owned()))?;
        let mut new = old.clone();
        change(&mut new);
        new.key = old.key.clone();
        new.agent = old.agent;
        new.updated_at = unix_now().max(old.updated_at);
        self.write(Some(&old), &new)?;
        Ok(new)
    }

    /// Writes `new` (replacing `old`) and the totals it moves, atomically and durably.
    fn write(&self, old: Option<&Payment>, new: &Payment) -> Result<(), LedgerError> {
        let (old_reserved, old_spent) = old.map_or((0, 0), Payment::holds);
        let (new_reserved, new_spent) = new.holds();
        let mut batch = sled::Batch::default();
        if (old_reserved, old_spent) != (new_reserved, new_spent) {
            for (_, period, scope) in buckets(new) {
                let key = totals_key(new.agent, &period, scope);
                let mut totals: Totals = self.read(&key)?.unwrap_or_default();
                let moved = |total: Amount, from: u128, to: u128| {
                    Amount::from_base_units(
                        total.base_units().saturating_sub(from).saturating_add(to),
                    )
                };
                totals.reserved = moved(totals.reserved, old_reserved, new_reserved);
                totals.spent = moved(totals.spent, old_spent, new_spent);
                batch.insert(key, Self::encode(&totals)?);
            }
        }
        if let Some(tx) = new.tx_id {
            batch.insert(
                format!("{BY_TX}{tx}").as_bytes(),
                format!("{}/{}", hex(new.agent), new.key).as_bytes(),
            );
        }
        batch.insert(payment_key(new.agent, &new.key), Self::encode(new)?);
        self.inner.tree.apply_batch(batch)?;
        self.durable()
    }

    /// Whether `tx_id` already belongs to a payment (so a recovered escrow is never counted twice).
    pub fn knows_tx(&self, tx_id: B256) -> Result<bool, LedgerError> {
        Ok(self
            .inner
            .tree
            .contains_key(format!("{BY_TX}{tx_id}").as_bytes())?)
    }

    /// Usage of `agent`, grouped as asked.
    pub fn usage(&self, agent: Address, query: &UsageQuery) -> Result<UsageReport, LedgerError> {
        let mut rows: BTreeMap<String, UsageRow> = BTreeMap::new();
        let mut total = UsageRow {
            key: "total".into(),
            ..UsageRow::default()
        };
        for p in self.payments(agent)? {
            if query.since.as_ref().is_some_and(|s| p.day < *s)
                || query.until.as_ref().is_some_and(|u| p.day > *u)
            {
                continue;
            }
            let key = match query.by {
                GroupBy::Provider => hex(p.provider),
                GroupBy::Route => p.route.clone(),
                GroupBy::Day => p.day.clone(),
            };
            let row = rows.entry(key.clone()).or_insert_with(|| UsageRow {
                key,
                ..UsageRow::default()
            });
            for row in [row, &mut total] {
                add(row, &p);
            }
        }
        Ok(UsageReport {
            agent,
            by: query.by,
            rows: rows.into_values().collect(),
            total,
        })
    }
}

fn add(row: &mut UsageRow, p: &Payment) {
    // Saturating: a report never wraps or panics, whatever amounts the ledger holds.
    let sum = |a: Amount, b: Amount| {
        Amount::from_base_units(a.base_units().saturating_add(b.base_units()))
    };
    match p.state {
        PaymentState::Reserved => row.reserved = sum(row.reserved, p.amount),
        PaymentState::Released => row.released += 1,
        _ => {
            row.calls += 1;
            row.spent = sum(row.spent, p.spent());
            row.refunded = sum(row.refunded, p.refunded);
            if p.state != PaymentState::Refunded {
                row.fees = sum(row.fees, p.fee);
            }
        }
    }
}

/// `percent`% of `value`, rounded down, for any `value` (no intermediate product that could overflow).
fn percent_of(value: u128, percent: u8) -> u128 {
    let p = u128::from(percent);
    value / 100 * p + value % 100 * p / 100
}

/// Unix time now (wall clock).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The UTC day (`YYYY-MM-DD`) and month (`YYYY-MM`) of unix time `secs`.
pub fn utc_day_month(secs: u64) -> (String, String) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{year:04}-{month:02}"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const AGENT: Address = Address::repeat_byte(0xa9);
    const P1: Address = Address::repeat_byte(0x01);
    const P2: Address = Address::repeat_byte(0x02);
    // 2026-11-23T12:00:00Z
    const NOON: u64 = 1_795_435_200;

    fn intent(key: &str, provider: Address, amount: u128, now: u64) -> Intent {
        Intent {
            key: key.into(),
            agent: AGENT,
            provider,
            route: "POST /v1/echo".into(),
            url: "http://127.0.0.1/v1/echo".into(),
            service: "echo".into(),
            amount: Amount::from_base_units(amount),
            fee: Amount::from_base_units(amount / 100),
            block: 1,
            now,
        }
    }

    fn new(ledger: &Ledger, i: Intent) -> Payment {
        match ledger.reserve(i).unwrap() {
            Ok(Reserved::New(p, _)) => p,
            other => panic!("expected a reservation, got {other:?}"),
        }
    }

    fn refused(ledger: &Ledger, i: Intent) -> BudgetError {
        ledger.reserve(i).unwrap().unwrap_err()
    }

    fn fund(ledger: &Ledger, key: &str, tx: u8) -> Payment {
        ledger
            .update(AGENT, key, |p| {
                p.state = PaymentState::Funded;
                p.tx_id = Some(B256::repeat_byte(tx));
            })
            .unwrap()
    }

    #[test]
    fn utc_dates() {
        assert_eq!(
            utc_day_month(0),
            ("1970-01-01".to_owned(), "1970-01".to_owned())
        );
        assert_eq!(utc_day_month(NOON).0, "2026-11-23");
        assert_eq!(utc_day_month(951_782_400).0, "2000-02-29");
        assert_eq!(utc_day_month(NOON + 8 * 86_400).1, "2026-12");
        assert_eq!(
            Ledger::periods(NOON),
            ("d2026-11-23".into(), "m2026-11".into())
        );
    }

    #[test]
    fn daily_cap_counts_reservations_and_spend_and_releases_give_back() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let policy = SpendPolicy {
            daily: Some(Amount::from_base_units(300)),
            ..SpendPolicy::default()
        };
        ledger.set_policy(AGENT, &policy).unwrap();
        new(&ledger, intent("a", P1, 100, NOON));
        new(&ledger, intent("b", P1, 100, NOON));
        fund(&ledger, "a", 1);
        new(&ledger, intent("c", P2, 100, NOON));
        let err = refused(&ledger, intent("d", P2, 1, NOON));
        assert_eq!(
            err,
            BudgetError::CapReached {
                cap: CapKind::Daily,
                limit: Amount::from_base_units(300),
                used: Amount::from_base_units(300),
                amount: Amount::from_base_units(1),
                period: "2026-11-23".into(),
                provider: None,
            }
        );
        assert!(err.to_string().contains("actp budget set"), "{err}");
        // funding failed for b: its reservation comes back
        ledger
            .update(AGENT, "b", |p| p.state = PaymentState::Released)
            .unwrap();
        new(&ledger, intent("d", P2, 100, NOON));
        // a released key may be reserved again
        ledger
            .update(AGENT, "d", |p| p.state = PaymentState::Released)
            .unwrap();
        new(&ledger, intent("d", P2, 100, NOON));
        let totals = ledger.totals(AGENT, "d2026-11-23", None).unwrap();
        assert_eq!(totals.spent, Amount::from_base_units(100));
        assert_eq!(totals.reserved, Amount::from_base_units(200));
        // the next day starts from zero
        new(&ledger, intent("e", P1, 300, NOON + 86_400));
    }

    #[test]
    fn refunds_give_the_budget_back() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger
            .set_policy(
                AGENT,
                &SpendPolicy {
                    monthly: Some(Amount::from_base_units(100)),
                    ..SpendPolicy::default()
                },
            )
            .unwrap();
        new(&ledger, intent("a", P1, 100, NOON));
        fund(&ledger, "a", 1);
        assert!(matches!(
            refused(&ledger, intent("b", P1, 40, NOON)),
            BudgetError::CapReached {
                cap: CapKind::Monthly,
                ..
            }
        ));
        ledger
            .update(AGENT, "a", |p| {
                p.state = PaymentState::Resolved;
                p.refunded = Amount::from_base_units(60);
            })
            .unwrap();
        new(&ledger, intent("b", P1, 60, NOON));
        let m = ledger.totals(AGENT, "m2026-11", Some(P1)).unwrap();
        assert_eq!(m.spent, Amount::from_base_units(40));
        assert_eq!(m.reserved, Amount::from_base_units(60));
    }

    #[test]
    fn per_call_per_provider_lists_and_idempotency() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let mut policy = SpendPolicy {
            per_call: Some(Amount::from_base_units(50)),
            provider_daily: Some(Amount::from_base_units(80)),
            deny: vec![P2],
            ..SpendPolicy::default()
        };
        policy.providers.insert(
            Address::repeat_byte(3),
            crate::policy::ProviderCaps {
                daily: Some(Amount::from_base_units(200)),
                monthly: None,
            },
        );
        ledger.set_policy(AGENT, &policy).unwrap();
        let zero = SpendPolicy {
            daily: Some(Amount::ZERO),
            ..SpendPolicy::default()
        };
        assert!(matches!(
            ledger.set_policy(AGENT, &zero),
            Err(LedgerError::InvalidPolicy(_))
        ));
        assert!(matches!(
            refused(&ledger, intent("big", P1, 51, NOON)),
            BudgetError::CapReached {
                cap: CapKind::PerCall,
                ..
            }
        ));
        assert_eq!(
            refused(&ledger, intent("p2", P2, 1, NOON)),
            BudgetError::ProviderNotAllowed {
                agent: AGENT,
                provider: P2
            }
        );
        new(&ledger, intent("a", P1, 50, NOON));
        assert!(matches!(
            refused(&ledger, intent("b", P1, 50, NOON)),
            BudgetError::CapReached { cap: CapKind::ProviderDaily, provider: Some(p), .. } if p == P1
        ));
        // provider 3 has its own, larger cap
        new(&ledger, intent("c", Address::repeat_byte(3), 50, NOON));
        new(&ledger, intent("d", Address::repeat_byte(3), 50, NOON));
        // the same key again: the same payment, nothing reserved twice
        match ledger.reserve(intent("a", P1, 50, NOON)).unwrap() {
            Ok(Reserved::Existing(p)) => assert_eq!(p.key, "a"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ledger
                .totals(AGENT, "d2026-11-23", Some(P1))
                .unwrap()
                .used(),
            Amount::from_base_units(50)
        );
        assert!(matches!(
            ledger.reserve(intent("", P1, 1, NOON)),
            Err(LedgerError::InvalidKey(_))
        ));
    }

    #[test]
    fn usage_sums_saturate_instead_of_wrapping() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let mut p = new(&ledger, intent("a", P1, 1, NOON));
        p.amount = Amount::from_base_units(u128::MAX);
        p.fee = Amount::from_base_units(u128::MAX);
        p.state = PaymentState::Funded;
        let mut row = UsageRow::default();
        add(&mut row, &p);
        add(&mut row, &p);
        assert_eq!(row.spent, Amount::from_base_units(u128::MAX));
        assert_eq!(row.fees, Amount::from_base_units(u128::MAX));
        assert_eq!(row.calls, 2);
    }

    #[test]
    fn percentages_of_any_amount_never_overflow() {
        assert_eq!(percent_of(u128::MAX, 100), u128::MAX);
        let exact = actp_core::U256::from(u128::MAX) * actp_core::U256::from(80u8)
            / actp_core::U256::from(100u8);
        assert_eq!(actp_core::U256::from(percent_of(u128::MAX, 80)), exact);
        assert_eq!(percent_of(1_000, 80), 800);
        assert_eq!(percent_of(199, 50), 99);
    }

    #[test]
    fn soft_threshold_fires_once_when_crossed() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger
            .set_policy(
                AGENT,
                &SpendPolicy {
                    daily: Some(Amount::from_base_units(100)),
                    soft_threshold: Some(50),
                    ..SpendPolicy::default()
                },
            )
            .unwrap();
        let crossed = |key: &str| match ledger.reserve(intent(key, P1, 30, NOON)).unwrap() {
            Ok(Reserved::New(_, soft)) => soft,
            other => panic!("{other:?}"),
        };
        assert!(crossed("a").is_empty());
        let soft = crossed("b");
        assert_eq!(soft.len(), 1);
        assert_eq!(soft[0].cap, CapKind::Daily);
        assert_eq!(soft[0].threshold, Amount::from_base_units(50));
        assert_eq!(soft[0].used, Amount::from_base_units(60));
        assert!(crossed("c").is_empty());
    }

    #[test]
    fn kill_switch_blocks_reservations_from_another_handle() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        // a second process would do exactly this: the switch needs no ledger handle
        let switch = KillSwitch::new(dir.path());
        switch.suspend(AGENT, Some("loop detected")).unwrap();
        let err = refused(&ledger, intent("a", P1, 1, NOON));
        assert_eq!(
            err,
            BudgetError::Suspended {
                agent: AGENT,
                reason: Some("loop detected".into())
            }
        );
        assert!(err.to_string().contains("actp budget resume"), "{err}");
        switch.resume(AGENT).unwrap();
        switch.resume(AGENT).unwrap();
        new(&ledger, intent("a", P1, 1, NOON));
    }

    /// Opens the ledger a dropped handle held. sled may still be releasing its lock file on another thread
    /// (its IO threads finish asynchronously), so this waits for the lock with generous patience.
    fn reopen(dir: &Path) -> Ledger {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            match Ledger::open(dir) {
                Ok(ledger) => return ledger,
                Err(LedgerError::Busy { .. }) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn reopen_keeps_everything_and_a_second_open_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ledger = Ledger::open(dir.path()).unwrap();
            new(&ledger, intent("a", P1, 10, NOON));
            new(&ledger, intent("b", P1, 20, NOON));
            fund(&ledger, "b", 2);
            assert!(matches!(
                Ledger::open(dir.path()),
                Err(LedgerError::Busy { .. })
            ));
        }
        let ledger = reopen(dir.path());
        let totals = ledger.totals(AGENT, "d2026-11-23", None).unwrap();
        assert_eq!(totals.reserved, Amount::from_base_units(10));
        assert_eq!(totals.spent, Amount::from_base_units(20));
        assert_eq!(
            ledger
                .payment_by_tx(B256::repeat_byte(2))
                .unwrap()
                .unwrap()
                .key,
            "b"
        );
        assert_eq!(ledger.agents().unwrap(), vec![AGENT]);
    }

    #[test]
    fn usage_groups_and_totals() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        new(&ledger, intent("a", P1, 100, NOON));
        fund(&ledger, "a", 1);
        new(&ledger, intent("b", P2, 200, NOON + 86_400));
        fund(&ledger, "b", 2);
        new(&ledger, intent("c", P2, 50, NOON + 86_400));
        new(&ledger, intent("d", P2, 70, NOON + 86_400));
        ledger
            .update(AGENT, "d", |p| p.state = PaymentState::Released)
            .unwrap();
        let by_provider = ledger.usage(AGENT, &UsageQuery::default()).unwrap();
        assert_eq!(by_provider.rows.len(), 2);
        assert_eq!(by_provider.rows[1].key, format!("{P2:#x}"));
        assert_eq!(by_provider.rows[1].calls, 1);
        assert_eq!(by_provider.rows[1].reserved, Amount::from_base_units(50));
        assert_eq!(by_provider.rows[1].released, 1);
        assert_eq!(by_provider.total.spent, Amount::from_base_units(300));
        assert_eq!(by_provider.total.fees, Amount::from_base_units(3));
        let by_day = ledger
            .usage(
                AGENT,
                &UsageQuery {
                    by: GroupBy::Day,
                    since: Some("2026-11-24".into()),
                    until: None,
                },
            )
            .unwrap();
        assert_eq!(by_day.rows.len(), 1);
        assert_eq!(by_day.rows[0].key, "2026-11-24");
        assert_eq!(by_day.total.spent, Amount::from_base_units(200));
    }
}
