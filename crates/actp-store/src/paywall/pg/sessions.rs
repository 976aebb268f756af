//! Sessions in PostgreSQL: each account, the live holds of calls in flight, and the transaction that holds a
//! session's row while a call changes it.

use std::time::Duration;

use actp_core::{B256, U256};
use deadpool_postgres::Object;

use super::{PaywallStore, b256, seconds, seq_of};
use crate::{
    StoreError,
    pg::{Transaction, prepared},
};

/// A call in flight's hold on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The hold's id.
    pub id: i64,
    /// What it holds: the call's maximum.
    pub max: U256,
}

impl PaywallStore {
    /// The account of session `tx_id` as last committed, with the live holds on it.
    pub async fn session(&self, tx_id: B256) -> Result<Option<(Vec<u8>, Vec<Hold>)>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                &prepared(
                    &client,
                    "SELECT state FROM paywall_sessions WHERE scope = $1 AND tx_id = $2",
                )
                .await?,
                &[&self.scope, &tx_id.as_slice()],
            )
            .await?
        else {
            return Ok(None);
        };
        let holds = live_holds(&client, &self.scope, tx_id).await?;
        Ok(Some((row.get(0), holds)))
    }

    /// Every session's account, with the live holds on each.
    pub async fn sessions(&self) -> Result<Vec<(B256, Vec<u8>, Vec<Hold>)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &prepared(
                    &client,
                    "SELECT s.tx_id, s.state,
                        coalesce(array_agg(h.id) FILTER (WHERE h.id IS NOT NULL), '{}'),
                        coalesce(array_agg(h.max) FILTER (WHERE h.id IS NOT NULL), '{}')
                 FROM paywall_sessions s
                 LEFT JOIN paywall_holds h
                   ON h.scope = s.scope AND h.tx_id = s.tx_id AND h.until > now()
                 WHERE s.scope = $1
                 GROUP BY s.tx_id, s.state
                 ORDER BY s.tx_id",
                )
                .await?,
                &[&self.scope],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let ids: Vec<i64> = row.get(2);
                let maxes: Vec<String> = row.get(3);
                let holds = ids
                    .into_iter()
                    .zip(maxes)
                    .map(|(id, max)| hold_of(id, &max))
                    .collect::<Result<_, _>>()?;
                Ok((b256(row.get(0), "paywall_sessions")?, row.get(1), holds))
            })
            .collect()
    }

    /// Writes the account of a session seen for the first time, unless a replica wrote one first; returns the
    /// account stored.
    pub async fn insert_session(&self, tx_id: B256, state: &[u8]) -> Result<Vec<u8>, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &prepared(
                    &client,
                    "INSERT INTO paywall_sessions (scope, tx_id, state) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                )
                .await?,
                &[&self.scope, &tx_id.as_slice(), &state],
            )
            .await?;
        let row = client
            .query_one(
                &prepared(
                    &client,
                    "SELECT state FROM paywall_sessions WHERE scope = $1 AND tx_id = $2",
                )
                .await?,
                &[&self.scope, &tx_id.as_slice()],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Starts a transaction on session `tx_id`, once no other (in any replica) holds it; `None` if the
    /// session is unknown. Expired holds are dropped on the way.
    pub async fn begin_session(&self, tx_id: B256) -> Result<Option<SessionTx>, StoreError> {
        let mut tx = SessionTx {
            tx: Transaction::begin(&self.pg).await?,
            scope: self.scope.clone(),
            owner: self.owner.clone(),
            tx_id,
            state: Vec::new(),
            holds: Vec::new(),
        };
        let client = tx.client()?;
        let Some(row) = client
            .query_opt(
                &prepared(
                    client,
                    "SELECT state FROM paywall_sessions WHERE scope = $1 AND tx_id = $2 FOR UPDATE",
                )
                .await?,
                &[&self.scope, &tx_id.as_slice()],
            )
            .await?
        else {
            return Ok(None);
        };
        // The holds in a statement of their own, after the lock: at READ COMMITTED a statement sees what was
        // committed when it began, and the lock may have waited for a transaction that added a hold. (Expired
        // holds stay behind until the session's close removes them.)
        let holds = live_holds(client, &self.scope, tx_id).await?;
        tx.state = row.get(0);
        tx.holds = holds;
        Ok(Some(tx))
    }
}

fn hold_of(id: i64, max: &str) -> Result<Hold, StoreError> {
    Ok(Hold {
        id,
        max: max.parse().map_err(|_| StoreError::Corrupt {
            what: "paywall_holds",
            detail: format!("amount {max:?}"),
        })?,
    })
}

async fn live_holds(client: &Object, scope: &str, tx_id: B256) -> Result<Vec<Hold>, StoreError> {
    client
        .query(
            &prepared(
                client,
                "SELECT id, max FROM paywall_holds
             WHERE scope = $1 AND tx_id = $2 AND until > now() ORDER BY id",
            )
            .await?,
            &[&scope, &tx_id.as_slice()],
        )
        .await?
        .iter()
        .map(|row| hold_of(row.get(0), row.get(1)))
        .collect()
}

/// A transaction holding one session's row: reads its account and live holds, changes them, and commits them
/// together. Dropped without a commit, it is rolled back.
#[derive(Debug)]
pub struct SessionTx {
    tx: Transaction,
    scope: String,
    owner: String,
    tx_id: B256,
    state: Vec<u8>,
    holds: Vec<Hold>,
}

impl SessionTx {
    fn client(&self) -> Result<&Object, StoreError> {
        self.tx.client()
    }

    /// The account, as locked.
    pub fn state(&self) -> &[u8] {
        &self.state
    }

    /// The live holds of calls in flight.
    pub fn holds(&self) -> &[Hold] {
        &self.holds
    }

    /// Replaces the account.
    pub async fn put(&mut self, state: &[u8]) -> Result<(), StoreError> {
        self.client()?
            .execute(
                &prepared(
                    self.client()?,
                    "UPDATE paywall_sessions SET state = $3 WHERE scope = $1 AND tx_id = $2",
                )
                .await?,
                &[&self.scope, &self.tx_id.as_slice(), &state],
            )
            .await?;
        state.clone_into(&mut self.state);
        Ok(())
    }

    /// Replaces the account and holds `max` for a call, for at most `lease`, in one statement; returns the
    /// hold.
    pub async fn put_and_hold(
        &mut self,
        state: &[u8],
        max: U256,
        lease: Duration,
    ) -> Result<Hold, StoreError> {
        let client = self.client()?;
        let row = client
            .query_one(
                &prepared(
                    client,
                    "WITH held AS (
                       INSERT INTO paywall_holds (scope, tx_id, max, until)
                       VALUES ($1, $2, $4, now() + make_interval(secs => $5)) RETURNING id
                     ), put AS (
                       UPDATE paywall_sessions SET state = $3 WHERE scope = $1 AND tx_id = $2
                     )
                     SELECT id FROM held",
                )
                .await?,
                &[
                    &self.scope,
                    &self.tx_id.as_slice(),
                    &state,
                    &max.to_string(),
                    &seconds(lease),
                ],
            )
            .await?;
        let hold = Hold {
            id: row.get(0),
            max,
        };
        state.clone_into(&mut self.state);
        self.holds.push(hold);
        Ok(hold)
    }

    /// Replaces the account and ends hold `id` (whether live or expired), in one statement.
    pub async fn put_and_unhold(&mut self, state: &[u8], id: i64) -> Result<(), StoreError> {
        let client = self.client()?;
        client
            .execute(
                &prepared(
                    client,
                    "WITH ended AS (DELETE FROM paywall_holds WHERE id = $4)
                     UPDATE paywall_sessions SET state = $3 WHERE scope = $1 AND tx_id = $2",
                )
                .await?,
                &[&self.scope, &self.tx_id.as_slice(), &state, &id],
            )
            .await?;
        state.clone_into(&mut self.state);
        self.holds.retain(|h| h.id != id);
        Ok(())
    }

    /// Queues the session's close in the outbox; returns its place.
    pub async fn queue_close(&mut self, started: bool) -> Result<u64, StoreError> {
        let row = self
            .client()?
            .query_one(
                &prepared(
                    self.client()?,
                    "INSERT INTO paywall_outbox (scope, tx_id, proof_hash, started, session)
                 VALUES ($1, $2, $3, $4, true) RETURNING seq",
                )
                .await?,
                &[
                    &self.scope,
                    &self.tx_id.as_slice(),
                    &B256::ZERO.as_slice(),
                    &started,
                ],
            )
            .await?;
        Ok(seq_of(row.get(0)))
    }

    /// Removes the session's close `seq` from the outbox if this replica holds its lease, with whatever holds
    /// are left on the session (expired ones); `false` if it does not hold the lease.
    pub async fn finish_close(&mut self, seq: u64) -> Result<bool, StoreError> {
        let client = self.client()?;
        let row = client
            .query_one(
                &prepared(
                    client,
                    "WITH done AS (
                       DELETE FROM paywall_outbox WHERE seq = $1 AND scope = $2 AND lease_owner = $3
                       RETURNING tx_id
                     ), holds AS (
                       DELETE FROM paywall_holds h USING done WHERE h.scope = $2 AND h.tx_id = done.tx_id
                     )
                     SELECT count(*) FROM done",
                )
                .await?,
                &[&(seq as i64), &self.scope, &self.owner],
            )
            .await?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    /// Applies the changes, durably, and lets the session go.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await
    }
}
