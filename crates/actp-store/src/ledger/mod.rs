//! The paying client's ledger records, per agent: records under string keys (what they mean is `actp-pay`'s
//! business: the policy, payments, per-period totals, session charges), an index from kernel transaction to
//! payment, and the kill switch.
//!
//! Changes to one agent's records are serialized: [`LedgerStore::begin`] returns a transaction that reads and
//! writes them, and no other task or process changes them until it commits or is dropped. On sled that is a
//! lock in this process (sled lets one process open the database); on PostgreSQL, the agent's row locked `FOR
//! UPDATE` for the transaction (READ COMMITTED), so agent processes on several machines take turns, and a
//! reservation checked against a cap inside it can never be overtaken by another.

mod pg;
mod sled;

use actp_core::{Address, B256};

use crate::{StoreError, StoreUrl, pg::Pg};

/// The ledger's store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LedgerStore {
    backend: Backend,
    kill: KillSwitch,
}

/// The kill switch of every agent in a store: `suspend` stops an agent's new payments in every process sharing
/// the store, at its next transaction. On sled it is a file per suspended agent under `suspended/`, so
/// [`KillSwitch::open`] works while an agent process holds the database; on PostgreSQL it is the agent's row.
#[derive(Debug, Clone)]
pub struct KillSwitch {
    backend: KillBackend,
}

#[derive(Debug, Clone)]
enum KillBackend {
    Files(std::path::PathBuf),
    Pg(Pg),
}

#[derive(Debug, Clone)]
enum Backend {
    Sled(std::sync::Arc<sled::SledLedger>),
    Pg(Pg),
}

/// Changes to one agent's records, applied together by [`AgentTx::commit`] (durable when it returns) or not
/// at all. Reads see this transaction's own writes.
#[derive(Debug)]
pub struct AgentTx {
    inner: TxInner,
}

#[derive(Debug)]
enum TxInner {
    Sled(sled::SledTx),
    Pg(Box<pg::PgTx>),
}

impl LedgerStore {
    /// Opens (or creates) the ledger at `url`: a sled directory (`<data-dir>/pay` for the CLI), or a
    /// PostgreSQL database any number of agent processes share.
    pub async fn open(url: &StoreUrl) -> Result<Self, StoreError> {
        Ok(match url {
            StoreUrl::Sled(dir) => LedgerStore {
                backend: Backend::Sled(std::sync::Arc::new(sled::SledLedger::open(dir)?)),
                kill: KillSwitch {
                    backend: KillBackend::Files(dir.clone()),
                },
            },
            StoreUrl::Postgres(url) => {
                let pg = Pg::connect(url, 8).await?;
                LedgerStore {
                    kill: KillSwitch {
                        backend: KillBackend::Pg(pg.clone()),
                    },
                    backend: Backend::Pg(pg),
                }
            }
        })
    }

    /// The kill switch of this store.
    pub fn kill_switch(&self) -> &KillSwitch {
        &self.kill
    }

    /// Starts a transaction on `agent`'s records, once no other holds them.
    pub async fn begin(&self, agent: Address) -> Result<AgentTx, StoreError> {
        let inner = match &self.backend {
            Backend::Sled(s) => TxInner::Sled(s.begin(agent).await),
            Backend::Pg(pg) => TxInner::Pg(Box::new(pg::PgTx::begin(pg, agent).await?)),
        };
        Ok(AgentTx { inner })
    }

    /// The record `key` of `agent`, as last committed.
    pub async fn get(&self, agent: Address, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.get(agent, key),
            Backend::Pg(pg) => pg::get(pg, agent, key).await,
        }
    }

    /// The records of `agent` whose key starts with `prefix`, in key order.
    pub async fn scan(
        &self,
        agent: Address,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.scan(agent, prefix),
            Backend::Pg(pg) => pg::scan(pg, agent, prefix).await,
        }
    }

    /// Every agent with a record, in address order.
    pub async fn agents(&self) -> Result<Vec<Address>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.agents(),
            Backend::Pg(pg) => pg::agents(pg).await,
        }
    }

    /// The agent and key of the payment that holds kernel transaction `tx_id`.
    pub async fn find_tx(&self, tx_id: B256) -> Result<Option<(Address, String)>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.find_tx(tx_id),
            Backend::Pg(pg) => pg::find_tx(pg, tx_id).await,
        }
    }
}

impl KillSwitch {
    /// The kill switch of the store at `url`, without opening its sled database (which another process may
    /// hold).
    pub async fn open(url: &StoreUrl) -> Result<Self, StoreError> {
        Ok(KillSwitch {
            backend: match url {
                StoreUrl::Sled(dir) => KillBackend::Files(dir.clone()),
                StoreUrl::Postgres(url) => KillBackend::Pg(Pg::connect(url, 1).await?),
            },
        })
    }

    /// Stops every new payment of `agent`, in every process sharing the store, until resumed.
    pub async fn suspend(&self, agent: Address, reason: Option<&str>) -> Result<(), StoreError> {
        match &self.backend {
            KillBackend::Files(dir) => sled::suspend(dir, agent, reason),
            KillBackend::Pg(pg) => pg::suspend(pg, agent, reason).await,
        }
    }

    /// Lets `agent` pay again (not an error if it was not suspended).
    pub async fn resume(&self, agent: Address) -> Result<(), StoreError> {
        match &self.backend {
            KillBackend::Files(dir) => sled::resume(dir, agent),
            KillBackend::Pg(pg) => pg::resume(pg, agent).await,
        }
    }

    /// `Some(reason)` while `agent` is suspended.
    pub async fn suspended(&self, agent: Address) -> Result<Option<Option<String>>, StoreError> {
        match &self.backend {
            KillBackend::Files(dir) => Ok(sled::suspended(dir, agent)),
            KillBackend::Pg(pg) => pg::suspended(pg, agent).await,
        }
    }
}

impl AgentTx {
    /// The record `key`, with this transaction's writes.
    pub async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &mut self.inner {
            TxInner::Sled(t) => t.get(key),
            TxInner::Pg(t) => t.get(key).await,
        }
    }

    /// Sets the record `key`.
    pub async fn put(&mut self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        match &mut self.inner {
            TxInner::Sled(t) => {
                t.put(key, value);
                Ok(())
            }
            TxInner::Pg(t) => t.put(key, &value).await,
        }
    }

    /// Records that kernel transaction `tx_id` belongs to the payment under `key`.
    pub async fn index_tx(&mut self, tx_id: B256, key: &str) -> Result<(), StoreError> {
        match &mut self.inner {
            TxInner::Sled(t) => {
                t.index_tx(tx_id, key);
                Ok(())
            }
            TxInner::Pg(t) => t.index_tx(tx_id, key).await,
        }
    }

    /// `Some(reason)` while the agent is suspended, as of this transaction.
    pub async fn suspended(&mut self) -> Result<Option<Option<String>>, StoreError> {
        match &mut self.inner {
            TxInner::Sled(t) => Ok(t.suspended()),
            TxInner::Pg(t) => t.suspended().await,
        }
    }

    /// Applies the writes, durably, and lets the agent's records go.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self.inner {
            TxInner::Sled(t) => t.commit().await,
            TxInner::Pg(t) => (*t).commit().await,
        }
    }
}
