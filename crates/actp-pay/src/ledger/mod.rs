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
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use actp_core::{Address, Amount, B256};
use serde::{Deserialize, Serialize};

use crate::policy::{CapKind, SpendPolicy};

mod error;
mod kill;
mod payment;
mod usage;

pub use error::{BudgetError, LedgerError};
pub use kill::KillSwitch;
pub use payment::{
    Intent, Payment, PaymentState, PendingCall, Reserved, SessionAccount, SessionCharge, SoftLimit,
    Totals,
};
pub use usage::{GroupBy, UsageQuery, UsageReport, UsageRow};

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
const CHARGE: &str = "chg/";

fn hex(a: Address) -> String {
    format!("{a:#x}")
}

fn payment_key(agent: Address, key: &str) -> Vec<u8> {
    format!("{PAYMENT}{}/{key}", hex(agent)).into_bytes()
}

fn charge_key(agent: Address, key: &str, seq: u64) -> Vec<u8> {
    format!("{CHARGE}{}/{key}/{seq:020}", hex(agent)).into_bytes()
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
            session: intent.session,
        };
        if let Some(limit) = policy.cap(CapKind::PerCall, None)
            && payment.session.is_none()
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
        let soft = match self.check_caps(&policy, &payment, payment.amount)? {
            Ok(soft) => soft,
            Err(refused) => return Ok(Err(refused)),
        };
        self.write(previous.as_ref(), &payment, None)?;
        Ok(Ok(Reserved::New(payment, soft)))
    }

    /// Checks `amount` more for `payment` against every cap it counts in; returns the soft thresholds it
    /// crosses.
    fn check_caps(
        &self,
        policy: &SpendPolicy,
        payment: &Payment,
        amount: Amount,
    ) -> Result<Result<Vec<SoftLimit>, BudgetError>, LedgerError> {
        let mut soft = Vec::new();
        for (cap, period, scope) in buckets(payment) {
            let Some(limit) = policy.cap(cap, scope) else {
                continue;
            };
            let used = self.totals(payment.agent, &period, scope)?.used();
            let after = used.base_units().saturating_add(amount.base_units());
            let shown = period[1..].to_owned();
            if after > limit.base_units() {
                return Ok(Err(BudgetError::CapReached {
                    cap,
                    limit,
                    used,
                    amount,
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
        Ok(Ok(soft))
    }

    /// Adds `extra` to the deposit of the open session with key `key`, reserved against every cap the session
    /// counts in (the kill switch and the caps can refuse, as for a new payment). Undo with [`Ledger::update`]
    /// if the top-up does not reach the chain.
    pub fn top_up(
        &self,
        agent: Address,
        key: &str,
        extra: Amount,
    ) -> Result<Result<(Payment, Vec<SoftLimit>), BudgetError>, LedgerError> {
        let _g = self.guard();
        let old = self
            .payment(agent, key)?
            .ok_or_else(|| LedgerError::UnknownPayment(key.to_owned()))?;
        if let Err(refused) = self.inner.kill.check(agent) {
            return Ok(Err(refused));
        }
        let policy = self.policy(agent)?;
        let soft = match self.check_caps(&policy, &old, extra)? {
            Ok(soft) => soft,
            Err(refused) => return Ok(Err(refused)),
        };
        let mut new = old.clone();
        new.amount =
            Amount::from_base_units(old.amount.base_units().saturating_add(extra.base_units()));
        new.updated_at = unix_now().max(old.updated_at);
        self.write(Some(&old), &new, None)?;
        Ok(Ok((new, soft)))
    }

    /// Records one call's charge on the session with key `key` and applies `change` (the account's new total,
    /// head and receipt count), in one atomic write.
    pub fn charge(
        &self,
        agent: Address,
        key: &str,
        charge: &SessionCharge,
        change: impl FnOnce(&mut Payment),
    ) -> Result<Payment, LedgerError> {
        let record = (charge_key(agent, key, charge.seq), Self::encode(charge)?);
        self.change(agent, key, change, Some(record))
    }

    /// The charges of the session with key `key`, in order.
    pub fn charges(&self, agent: Address, key: &str) -> Result<Vec<SessionCharge>, LedgerError> {
        let prefix = format!("{CHARGE}{}/{key}/", hex(agent));
        self.inner
            .tree
            .scan_prefix(prefix.as_bytes())
            .map(|item| {
                let (k, bytes) = item?;
                serde_json::from_slice(&bytes)
                    .map_err(|_| LedgerError::Corrupt(String::from_utf8_lossy(&k).into_owned()))
            })
            .collect()
    }

    /// The sessions of `agent` that are not over yet.
    pub fn open_sessions(&self, agent: Address) -> Result<Vec<Payment>, LedgerError> {
        Ok(self
            .payments(agent)?
            .into_iter()
            .filter(|p| p.session.is_some() && !p.state.is_final())
            .collect())
    }

    /// Phase two and after: applies `change` to the payment with key `key` and moves the budget with it
    /// (reserved → spent when funded, back when released or refunded), in one atomic write.
    pub fn update(
        &self,
        agent: Address,
        key: &str,
        change: impl FnOnce(&mut Payment),
    ) -> Result<Payment, LedgerError> {
        self.change(agent, key, change, None)
    }

    fn change(
        &self,
        agent: Address,
        key: &str,
        change: impl FnOnce(&mut Payment),
        extra: Option<(Vec<u8>, Vec<u8>)>,
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
        self.write(Some(&old), &new, extra)?;
        Ok(new)
    }

    /// Writes `new` (replacing `old`), the totals it moves and `extra`, atomically and durably.
    fn write(
        &self,
        old: Option<&Payment>,
        new: &Payment,
        extra: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), LedgerError> {
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
        if let Some((key, value)) = extra {
            batch.insert(key, value);
        }
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
mod tests;
