//! The settler's state in PostgreSQL, shared by several daemons. Each operation's isolation and locking:
//!
//! - `apply`: one transaction at READ COMMITTED that locks the checkpoint row (`SELECT … FOR UPDATE`), so
//!   daemons applying the same blocks take turns; changes from blocks below the checkpoint they find are
//!   skipped, then the checkpoint moves forward (never back).
//! - `set_window_end`: one `UPDATE` of a row that must still exist (a closed transaction stays closed).
//! - `lease`: one `UPDATE … WHERE` the lease is free, expired, or already this daemon's, `RETURNING` what it
//!   got: the row lock makes two daemons' leases on one transaction exclusive.

use std::time::Duration;

use actp_core::{Address, B256};

use super::{Change, Pending};
use crate::{StoreError, pg::Pg};

#[derive(Debug, Clone)]
pub(super) struct PgSettler {
    pg: Pg,
    chain: i64,
    kernel: Vec<u8>,
}

fn block(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgSettler {
    pub(super) fn new(pg: Pg, chain_id: u64, kernel: Address) -> Self {
        PgSettler {
            pg,
            chain: block(chain_id),
            kernel: kernel.to_vec(),
        }
    }

    pub(super) async fn checkpoint(&self) -> Result<Option<u64>, StoreError> {
        let client = self.pg.client().await?;
        let row = client
            .query_opt(
                "SELECT next_block FROM settler_checkpoint WHERE chain_id = $1 AND kernel = $2",
                &[&self.chain, &self.kernel],
            )
            .await?;
        Ok(row.map(|r| r.get::<_, i64>(0).max(0) as u64))
    }

    pub(super) async fn apply(
        &self,
        changes: &[(u64, Change)],
        next_block: u64,
    ) -> Result<(), StoreError> {
        let mut client = self.pg.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO settler_checkpoint (chain_id, kernel, next_block) VALUES ($1, $2, 0)
             ON CONFLICT DO NOTHING",
            &[&self.chain, &self.kernel],
        )
        .await?;
        let from: i64 = tx
            .query_one(
                "SELECT next_block FROM settler_checkpoint WHERE chain_id = $1 AND kernel = $2 FOR UPDATE",
                &[&self.chain, &self.kernel],
            )
            .await?
            .get(0);
        let insert = tx
            .prepare(
                "INSERT INTO settler_pending (chain_id, kernel, tx_id, window_end) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (chain_id, kernel, tx_id)
                 DO UPDATE SET window_end = coalesce(EXCLUDED.window_end, settler_pending.window_end)",
            )
            .await?;
        let delete = tx
            .prepare(
                "DELETE FROM settler_pending WHERE chain_id = $1 AND kernel = $2 AND tx_id = $3",
            )
            .await?;
        for (_, change) in changes.iter().filter(|(b, _)| block(*b) >= from) {
            match change {
                Change::Delivered(id, window_end) => {
                    let end = window_end.map(block);
                    tx.execute(&insert, &[&self.chain, &self.kernel, &id.as_slice(), &end])
                        .await?;
                }
                Change::Closed(id) => {
                    tx.execute(&delete, &[&self.chain, &self.kernel, &id.as_slice()])
                        .await?;
                }
            }
        }
        tx.execute(
            "UPDATE settler_checkpoint SET next_block = greatest(next_block, $3)
             WHERE chain_id = $1 AND kernel = $2",
            &[&self.chain, &self.kernel, &block(next_block)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn set_window_end(&self, id: B256, window_end: u64) -> Result<(), StoreError> {
        let client = self.pg.client().await?;
        client
            .execute(
                "UPDATE settler_pending SET window_end = $4
                 WHERE chain_id = $1 AND kernel = $2 AND tx_id = $3 AND window_end IS NULL",
                &[
                    &self.chain,
                    &self.kernel,
                    &id.as_slice(),
                    &block(window_end),
                ],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        let client = self.pg.client().await?;
        client
            .query(
                "SELECT tx_id, window_end FROM settler_pending WHERE chain_id = $1 AND kernel = $2
                 ORDER BY tx_id",
                &[&self.chain, &self.kernel],
            )
            .await?
            .into_iter()
            .map(|row| {
                let id: &[u8] = row.get(0);
                let end: Option<i64> = row.get(1);
                Ok(Pending {
                    id: B256::try_from(id).map_err(|_| StoreError::Corrupt {
                        what: "settler_pending",
                        detail: format!("a txId of {} bytes", id.len()),
                    })?,
                    window_end: end.map(|e| e.max(0) as u64),
                })
            })
            .collect()
    }

    pub(super) async fn lease(
        &self,
        owner: &str,
        ids: &[B256],
        duration: Duration,
    ) -> Result<Vec<B256>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pg.client().await?;
        let wanted: Vec<&[u8]> = ids.iter().map(|id| id.as_slice()).collect();
        let seconds = duration.as_secs_f64();
        let rows = client
            .query(
                "UPDATE settler_pending
                 SET lease_owner = $4, lease_until = now() + make_interval(secs => $5)
                 WHERE chain_id = $1 AND kernel = $2 AND tx_id = ANY($3)
                   AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $4)
                 RETURNING tx_id",
                &[&self.chain, &self.kernel, &wanted, &owner, &seconds],
            )
            .await?;
        let mut leased: Vec<B256> = rows
            .iter()
            .filter_map(|row| B256::try_from(row.get::<_, &[u8]>(0)).ok())
            .collect();
        leased.sort();
        Ok(leased)
    }
}
