//! The ledger in PostgreSQL. Each operation's isolation and locking:
//!
//! - a transaction ([`PgTx`]) runs at READ COMMITTED and first locks the agent's row in `ledger_agents`
//!   (`SELECT … FOR UPDATE`, the row created if missing): every change to one agent's records, from any
//!   process, waits for the one before it, so a reservation checked against a cap sees every reservation made
//!   before it and none can slip in between the check and the write;
//! - reads outside a transaction (`get`, `scan`, `agents`, `find_tx`, `suspended`) see what is committed and
//!   take no lock, so `budget show` and `usage` run while agents pay;
//! - the kill switch is the agent's row: `suspend` and `resume` wait for a transaction in progress on that
//!   agent, and every transaction after them sees them.

use actp_core::{Address, B256};
use deadpool_postgres::Object;

use crate::{
    StoreError,
    pg::{Pg, Transaction, prepared},
};

/// The upper bound of keys starting with `prefix` (keys are compared bytewise: `COLLATE "C"`).
fn after_prefix(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

pub(super) async fn get(pg: &Pg, agent: Address, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let client = pg.client().await?;
    Ok(client
        .query_opt(
            &prepared(
                &client,
                "SELECT value FROM ledger_records WHERE agent = $1 AND key = $2",
            )
            .await?,
            &[&agent.as_slice(), &key],
        )
        .await?
        .map(|row| row.get(0)))
}

pub(super) async fn scan(
    pg: &Pg,
    agent: Address,
    prefix: &str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let client = pg.client().await?;
    Ok(client
        .query(
            &prepared(
                &client,
                "SELECT key, value FROM ledger_records WHERE agent = $1 AND key >= $2 AND key < $3
             ORDER BY key",
            )
            .await?,
            &[&agent.as_slice(), &prefix, &after_prefix(prefix)],
        )
        .await?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

fn address(bytes: &[u8]) -> Result<Address, StoreError> {
    Address::try_from(bytes).map_err(|_| StoreError::Corrupt {
        what: "ledger_agents",
        detail: format!("an agent of {} bytes", bytes.len()),
    })
}

pub(super) async fn agents(pg: &Pg) -> Result<Vec<Address>, StoreError> {
    let client = pg.client().await?;
    client
        .query(
            &prepared(
                &client,
                "SELECT agent FROM ledger_agents a
             WHERE EXISTS (SELECT 1 FROM ledger_records r WHERE r.agent = a.agent)
             ORDER BY agent",
            )
            .await?,
            &[],
        )
        .await?
        .iter()
        .map(|row| address(row.get(0)))
        .collect()
}

pub(super) async fn find_tx(pg: &Pg, tx_id: B256) -> Result<Option<(Address, String)>, StoreError> {
    let client = pg.client().await?;
    client
        .query_opt(
            &prepared(&client, "SELECT agent, key FROM ledger_tx WHERE tx_id = $1").await?,
            &[&tx_id.as_slice()],
        )
        .await?
        .map(|row| Ok((address(row.get(0))?, row.get(1))))
        .transpose()
}

pub(super) async fn suspend(
    pg: &Pg,
    agent: Address,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let client = pg.client().await?;
    client
        .execute(
            &prepared(&client, "INSERT INTO ledger_agents (agent, suspended, reason, suspended_at) VALUES ($1, true, $2, now())
             ON CONFLICT (agent) DO UPDATE SET suspended = true, reason = $2, suspended_at = now()").await?,
            &[&agent.as_slice(), &reason],
        )
        .await?;
    Ok(())
}

pub(super) async fn resume(pg: &Pg, agent: Address) -> Result<(), StoreError> {
    let client = pg.client().await?;
    client
        .execute(
            &prepared(
                &client,
                "UPDATE ledger_agents SET suspended = false, reason = NULL, suspended_at = NULL
             WHERE agent = $1",
            )
            .await?,
            &[&agent.as_slice()],
        )
        .await?;
    Ok(())
}

pub(super) async fn suspended(
    pg: &Pg,
    agent: Address,
) -> Result<Option<Option<String>>, StoreError> {
    let client = pg.client().await?;
    Ok(client
        .query_opt(
            &prepared(
                &client,
                "SELECT reason FROM ledger_agents WHERE agent = $1 AND suspended",
            )
            .await?,
            &[&agent.as_slice()],
        )
        .await?
        .map(|row| row.get(0)))
}

/// A transaction holding the agent's row. Dropped without a commit, it is rolled back.
#[derive(Debug)]
pub(super) struct PgTx {
    tx: Transaction,
    agent: Vec<u8>,
    suspended: Option<Option<String>>,
}

impl PgTx {
    pub(super) async fn begin(pg: &Pg, agent: Address) -> Result<Self, StoreError> {
        const LOCK: &str =
            "SELECT suspended, reason FROM ledger_agents WHERE agent = $1 FOR UPDATE";
        let mut tx = PgTx {
            tx: Transaction::begin(pg).await?,
            agent: agent.to_vec(),
            suspended: None,
        };
        let client = tx.client()?;
        let lock = prepared(client, LOCK).await?;
        let row = match client.query_opt(&lock, &[&tx.agent]).await? {
            Some(row) => row,
            // The agent's first transaction: its row, then the lock (another process may have made it first).
            None => {
                client
                    .execute(
                        &prepared(
                            client,
                            "INSERT INTO ledger_agents (agent) VALUES ($1) ON CONFLICT DO NOTHING",
                        )
                        .await?,
                        &[&tx.agent],
                    )
                    .await?;
                client.query_one(&lock, &[&tx.agent]).await?
            }
        };
        tx.suspended = row.get::<_, bool>(0).then(|| row.get(1));
        Ok(tx)
    }

    fn client(&self) -> Result<&Object, StoreError> {
        self.tx.client()
    }

    pub(super) async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .client()?
            .query_opt(
                &prepared(
                    self.client()?,
                    "SELECT value FROM ledger_records WHERE agent = $1 AND key = $2",
                )
                .await?,
                &[&self.agent, &key],
            )
            .await?
            .map(|row| row.get(0)))
    }

    pub(super) async fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.client()?
            .execute(
                &prepared(
                    self.client()?,
                    "INSERT INTO ledger_records (agent, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (agent, key) DO UPDATE SET value = EXCLUDED.value",
                )
                .await?,
                &[&self.agent, &key, &value],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn index_tx(&mut self, tx_id: B256, key: &str) -> Result<(), StoreError> {
        self.client()?
            .execute(
                &prepared(
                    self.client()?,
                    "INSERT INTO ledger_tx (tx_id, agent, key) VALUES ($1, $2, $3)
                 ON CONFLICT (tx_id) DO UPDATE SET agent = EXCLUDED.agent, key = EXCLUDED.key",
                )
                .await?,
                &[&tx_id.as_slice(), &self.agent, &key],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn suspended(&mut self) -> Result<Option<Option<String>>, StoreError> {
        Ok(self.suspended.clone())
    }

    pub(super) async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await
    }
}
