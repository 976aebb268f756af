//! The spend ledger: policies, payments (the receipts) and per-period totals of every agent, in the project's
//! store ([`actp_store::ledger::LedgerStore`]): a sled directory for one process, or PostgreSQL for agents in
//! many processes sharing one budget. Each change is one transaction, durable before the payment goes on.
//!
//! Two-phase accounting. [`Ledger::reserve`] checks every cap the payment touches against what is already
//! spent *and* reserved, and holds the amount; the caller then creates the escrow and calls
//! [`Ledger::update`] to turn the reservation into spend ([`PaymentState::Funded`]) or give it back
//! ([`PaymentState::Released`]). A refund gives back what the kernel refunded. Every change to an agent's
//! records runs in a transaction that holds that agent (a lock in this process on sled; the agent's row, `FOR
//! UPDATE`, on PostgreSQL), so concurrent calls, from any number of processes on PostgreSQL, never spend past
//! a cap.
//!
//! The kill switch ([`KillSwitch`]) is read inside that transaction: thrown from any process sharing the
//! store, even while an agent holds a sled ledger open, it stops the agent's next escrow.

use std::time::{SystemTime, UNIX_EPOCH};

use actp_core::{Address, Amount, B256};
pub use actp_store::ledger::KillSwitch;
use actp_store::{
    StoreUrl,
    ledger::{AgentTx, LedgerStore},
};
use serde::{Deserialize, Serialize};

use crate::policy::{CapKind, SpendPolicy};

mod error;
mod payment;
mod usage;

pub use error::{BudgetError, LedgerError};
pub use payment::{
    Intent, Payment, PaymentState, PendingCall, Reserved, SessionAccount, SessionCharge, SoftLimit,
    Totals,
};
pub use usage::{GroupBy, UsageQuery, UsageReport, UsageRow};

/// The spend ledger. Cheap to clone; clones share one store.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: LedgerStore,
    url: StoreUrl,
}

const POLICY: &str = "policy";
const PAYMENT: &str = "pay/";
const CHARGE: &str = "chg/";

fn hex(a: Address) -> String {
    format!("{a:#x}")
}

fn payment_key(key: &str) -> String {
    format!("{PAYMENT}{key}")
}

fn charge_key(key: &str, seq: u64) -> String {
    format!("{CHARGE}{key}/{seq:020}")
}

fn totals_key(period: &str, scope: Option<Address>) -> String {
    let scope = scope.map_or_else(|| "*".to_owned(), hex);
    format!("tot/{period}/{scope}")
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

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, LedgerError> {
    serde_json::from_slice(bytes).map_err(|_| LedgerError::Corrupt(key.to_owned()))
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, LedgerError> {
    serde_json::to_vec(value).map_err(|_| LedgerError::Corrupt(key.to_owned()))
}

async fn read<T: for<'de> Deserialize<'de>>(
    tx: &mut AgentTx,
    key: &str,
) -> Result<Option<T>, LedgerError> {
    tx.get(key)
        .await?
        .map(|bytes| decode(key, &bytes))
        .transpose()
}

async fn write<T: Serialize>(tx: &mut AgentTx, key: &str, value: &T) -> Result<(), LedgerError> {
    Ok(tx.put(key, encode(key, value)?).await?)
}

impl Ledger {
    /// Opens (or creates) the ledger at `url`: a sled directory (`<data-dir>/pay` for the CLI), or a
    /// PostgreSQL database that any number of agent processes share.
    pub async fn open(url: &StoreUrl) -> Result<Self, LedgerError> {
        Ok(Ledger {
            store: LedgerStore::open(url).await?,
            url: url.clone(),
        })
    }

    /// Where the ledger is (a password in it is redacted when shown).
    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// The kill switch of this ledger's store.
    pub fn kill_switch(&self) -> &KillSwitch {
        self.store.kill_switch()
    }

    /// Refuses with [`BudgetError::Suspended`] while `agent` is suspended.
    pub async fn check_suspended(
        &self,
        agent: Address,
    ) -> Result<Result<(), BudgetError>, LedgerError> {
        Ok(match self.kill_switch().suspended(agent).await? {
            Some(reason) => Err(BudgetError::Suspended { agent, reason }),
            None => Ok(()),
        })
    }

    async fn read<T: for<'de> Deserialize<'de>>(
        &self,
        agent: Address,
        key: &str,
    ) -> Result<Option<T>, LedgerError> {
        self.store
            .get(agent, key)
            .await?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    async fn scan<T: for<'de> Deserialize<'de>>(
        &self,
        agent: Address,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, LedgerError> {
        self.store
            .scan(agent, prefix)
            .await?
            .into_iter()
            .map(|(key, bytes)| {
                let value = decode(&key, &bytes)?;
                Ok((key, value))
            })
            .collect()
    }

    /// The policy of `agent` (the empty policy, no caps, if none was set).
    pub async fn policy(&self, agent: Address) -> Result<SpendPolicy, LedgerError> {
        Ok(self.read(agent, POLICY).await?.unwrap_or_default())
    }

    /// Replaces the policy of `agent`. Takes effect at the next reservation.
    pub async fn set_policy(
        &self,
        agent: Address,
        policy: &SpendPolicy,
    ) -> Result<(), LedgerError> {
        policy.validate()?;
        let mut tx = self.store.begin(agent).await?;
        write(&mut tx, POLICY, policy).await?;
        Ok(tx.commit().await?)
    }

    /// Agents with a policy or payments.
    pub async fn agents(&self) -> Result<Vec<Address>, LedgerError> {
        Ok(self.store.agents().await?)
    }

    /// Spent and reserved by `agent` in `period` (`d2026-11-23` / `m2026-11`, see [`Ledger::periods`]),
    /// in total (`provider: None`) or with one provider.
    pub async fn totals(
        &self,
        agent: Address,
        period: &str,
        provider: Option<Address>,
    ) -> Result<Totals, LedgerError> {
        Ok(self
            .read(agent, &totals_key(period, provider))
            .await?
            .unwrap_or_default())
    }

    /// The day and month periods of unix time `now`: `("d2026-11-23", "m2026-11")`.
    pub fn periods(now: u64) -> (String, String) {
        let (day, month) = utc_day_month(now);
        (format!("d{day}"), format!("m{month}"))
    }

    /// The payment with idempotency key `key`.
    pub async fn payment(&self, agent: Address, key: &str) -> Result<Option<Payment>, LedgerError> {
        self.read(agent, &payment_key(key)).await
    }

    /// The payment of kernel transaction `tx_id`.
    pub async fn payment_by_tx(&self, tx_id: B256) -> Result<Option<Payment>, LedgerError> {
        let Some((agent, key)) = self.store.find_tx(tx_id).await? else {
            return Ok(None);
        };
        self.read(agent, &key).await
    }

    /// Every payment of `agent`, in key order.
    pub async fn payments(&self, agent: Address) -> Result<Vec<Payment>, LedgerError> {
        Ok(self
            .scan(agent, PAYMENT)
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    }

    /// Phase one: checks the kill switch, the provider lists and every cap the payment touches against what
    /// is spent and reserved, and holds the amount. A key seen before returns its payment untouched.
    pub async fn reserve(
        &self,
        intent: Intent,
    ) -> Result<Result<Reserved, BudgetError>, LedgerError> {
        let key = &intent.key;
        if key.is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
            return Err(LedgerError::InvalidKey(key.clone()));
        }
        let mut tx = self.store.begin(intent.agent).await?;
        // A released key never made an escrow: calling again with it is a fresh attempt.
        let previous: Option<Payment> = read(&mut tx, &payment_key(key)).await?;
        if let Some(existing) = &previous
            && existing.state != PaymentState::Released
        {
            return Ok(Ok(Reserved::Existing(existing.clone())));
        }
        if let Some(reason) = tx.suspended().await? {
            return Ok(Err(BudgetError::Suspended {
                agent: intent.agent,
                reason,
            }));
        }
        let policy: SpendPolicy = read(&mut tx, POLICY).await?.unwrap_or_default();
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
        let soft = match check_caps(&mut tx, &policy, &payment, payment.amount).await? {
            Ok(soft) => soft,
            Err(refused) => return Ok(Err(refused)),
        };
        put_payment(&mut tx, previous.as_ref(), &payment).await?;
        tx.commit().await?;
        Ok(Ok(Reserved::New(payment, soft)))
    }

    /// Adds `extra` to the deposit of the open session with key `key`, reserved against every cap the session
    /// counts in (the kill switch and the caps can refuse, as for a new payment). Undo with [`Ledger::update`]
    /// if the top-up does not reach the chain.
    pub async fn top_up(
        &self,
        agent: Address,
        key: &str,
        extra: Amount,
    ) -> Result<Result<(Payment, Vec<SoftLimit>), BudgetError>, LedgerError> {
        let mut tx = self.store.begin(agent).await?;
        let old: Payment = read(&mut tx, &payment_key(key))
            .await?
            .ok_or_else(|| LedgerError::UnknownPayment(key.to_owned()))?;
        if let Some(reason) = tx.suspended().await? {
            return Ok(Err(BudgetError::Suspended { agent, reason }));
        }
        let policy: SpendPolicy = read(&mut tx, POLICY).await?.unwrap_or_default();
        let soft = match check_caps(&mut tx, &policy, &old, extra).await? {
            Ok(soft) => soft,
            Err(refused) => return Ok(Err(refused)),
        };
        let mut new = old.clone();
        new.amount =
            Amount::from_base_units(old.amount.base_units().saturating_add(extra.base_units()));
        new.updated_at = unix_now().max(old.updated_at);
        put_payment(&mut tx, Some(&old), &new).await?;
        tx.commit().await?;
        Ok(Ok((new, soft)))
    }

    /// Records one call's charge on the session with key `key` and applies `change` (the account's new total,
    /// head and receipt count), in one transaction.
    pub async fn charge(
        &self,
        agent: Address,
        key: &str,
        charge: &SessionCharge,
        change: impl FnOnce(&mut Payment),
    ) -> Result<Payment, LedgerError> {
        let record = charge_key(key, charge.seq);
        let value = encode(&record, charge)?;
        self.change(agent, key, change, Some((record, value))).await
    }

    /// The charges of the session with key `key`, in order.
    pub async fn charges(
        &self,
        agent: Address,
        key: &str,
    ) -> Result<Vec<SessionCharge>, LedgerError> {
        let prefix = format!("{CHARGE}{key}/");
        Ok(self
            .scan(agent, &prefix)
            .await?
            .into_iter()
            // Only this session's: a key that extends this one (`key/more`) has its charges under the prefix too.
            .filter(|(k, _)| {
                let seq = &k[prefix.len()..];
                seq.len() == 20 && seq.bytes().all(|b| b.is_ascii_digit())
            })
            .map(|(_, c)| c)
            .collect())
    }

    /// The sessions of `agent` that are not over yet.
    pub async fn open_sessions(&self, agent: Address) -> Result<Vec<Payment>, LedgerError> {
        Ok(self
            .payments(agent)
            .await?
            .into_iter()
            .filter(|p| p.session.is_some() && !p.state.is_final())
            .collect())
    }

    /// Phase two and after: applies `change` to the payment with key `key` and moves the budget with it
    /// (reserved → spent when funded, back when released or refunded), in one transaction.
    pub async fn update(
        &self,
        agent: Address,
        key: &str,
        change: impl FnOnce(&mut Payment),
    ) -> Result<Payment, LedgerError> {
        self.change(agent, key, change, None).await
    }

    async fn change(
        &self,
        agent: Address,
        key: &str,
        change: impl FnOnce(&mut Payment),
        extra: Option<(String, Vec<u8>)>,
    ) -> Result<Payment, LedgerError> {
        let mut tx = self.store.begin(agent).await?;
        let old: Payment = read(&mut tx, &payment_key(key))
            .await?
            .ok_or_else(|| LedgerError::UnknownPayment(key.to_owned()))?;
        let mut new = old.clone();
        change(&mut new);
        new.key = old.key.clone();
        new.agent = old.agent;
        new.updated_at = unix_now().max(old.updated_at);
        put_payment(&mut tx, Some(&old), &new).await?;
        if let Some((key, value)) = extra {
            tx.put(&key, value).await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// Whether `tx_id` already belongs to a payment (so a recovered escrow is never counted twice).
    pub async fn knows_tx(&self, tx_id: B256) -> Result<bool, LedgerError> {
        Ok(self.store.find_tx(tx_id).await?.is_some())
    }
}

/// Checks `amount` more for `payment` against every cap it counts in; returns the soft thresholds it
/// crosses.
async fn check_caps(
    tx: &mut AgentTx,
    policy: &SpendPolicy,
    payment: &Payment,
    amount: Amount,
) -> Result<Result<Vec<SoftLimit>, BudgetError>, LedgerError> {
    let mut soft = Vec::new();
    for (cap, period, scope) in buckets(payment) {
        let Some(limit) = policy.cap(cap, scope) else {
            continue;
        };
        let used = read::<Totals>(tx, &totals_key(&period, scope))
            .await?
            .unwrap_or_default()
            .used();
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

/// Writes `new` (replacing `old`), the totals it moves and its transaction index in `tx`.
async fn put_payment(
    tx: &mut AgentTx,
    old: Option<&Payment>,
    new: &Payment,
) -> Result<(), LedgerError> {
    let (old_reserved, old_spent) = old.map_or((0, 0), Payment::holds);
    let (new_reserved, new_spent) = new.holds();
    if (old_reserved, old_spent) != (new_reserved, new_spent) {
        for (_, period, scope) in buckets(new) {
            let key = totals_key(&period, scope);
            let mut totals: Totals = read(tx, &key).await?.unwrap_or_default();
            let moved = |total: Amount, from: u128, to: u128| {
                Amount::from_base_units(total.base_units().saturating_sub(from).saturating_add(to))
            };
            totals.reserved = moved(totals.reserved, old_reserved, new_reserved);
            totals.spent = moved(totals.spent, old_spent, new_spent);
            write(tx, &key, &totals).await?;
        }
    }
    let key = payment_key(&new.key);
    if let Some(tx_id) = new.tx_id
        && old.and_then(|o| o.tx_id) != Some(tx_id)
    {
        tx.index_tx(tx_id, &key).await?;
    }
    write(tx, &key, new).await
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
