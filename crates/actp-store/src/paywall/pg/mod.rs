//! The paywall's claims and outbox in PostgreSQL (the locking of each operation is in the module above);
//! sessions are in `sessions.rs`.

use std::time::Duration;

use actp_core::{Address, B256};
use deadpool_postgres::Object;
use tokio_postgres::Row;

mod sessions;

pub use sessions::{Hold, SessionTx};

use super::{Claim, ClaimOutcome, ClaimStatus, Delivery};
use crate::{
    StoreError,
    pg::{Pg, prepared},
};

/// The paywall of one provider on one kernel, in a PostgreSQL database its replicas share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PaywallStore {
    pg: Pg,
    scope: String,
    owner: String,
}

/// A delivery this replica leased from the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// Its place in the outbox.
    pub seq: u64,
    /// What to send.
    pub delivery: Delivery,
    /// Whether another owner (another replica, or this one before a restart) leased it before: what it did is
    /// unknown, so the chain is read before anything is sent.
    pub taken_over: bool,
}

fn b256(bytes: &[u8], what: &'static str) -> Result<B256, StoreError> {
    B256::try_from(bytes).map_err(|_| StoreError::Corrupt {
        what,
        detail: format!("a hash of {} bytes", bytes.len()),
    })
}

fn seq_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn claim_of(row: &Row) -> Result<Claim, StoreError> {
    // An active claim past its lease was held by a replica that died while serving.
    let status: &str = if row.get::<_, bool>("lapsed") {
        "released"
    } else {
        row.get("status")
    };
    let hash = |column: &str| -> Result<Option<B256>, StoreError> {
        row.get::<_, Option<&[u8]>>(column)
            .map(|b| b256(b, "paywall_claims"))
            .transpose()
    };
    Ok(Claim {
        status: ClaimStatus::parse(status).ok_or_else(|| StoreError::Corrupt {
            what: "paywall_claims",
            detail: format!("status {status:?}"),
        })?,
        request_hash: b256(row.get("request_hash"), "paywall_claims")?,
        started: row.get("started"),
        proof_hash: hash("proof_hash")?,
        delivery_tx: hash("delivery_tx")?,
        failure: row.get("failure"),
    })
}

fn leased_of(row: &Row) -> Result<Leased, StoreError> {
    Ok(Leased {
        seq: seq_of(row.get("seq")),
        delivery: Delivery {
            tx_id: b256(row.get("tx_id"), "paywall_outbox")?,
            proof_hash: b256(row.get("proof_hash"), "paywall_outbox")?,
            started: row.get("started"),
            session: row.get("session"),
        },
        taken_over: row.get::<_, i32>("leases") > 1,
    })
}

impl PaywallStore {
    /// Connects to `url` (a pool of up to `connections`), migrates the schema, and scopes every record to
    /// `provider` on `kernel` of chain `chain_id`. `owner` names this replica in its leases (unique per
    /// process).
    pub async fn open(
        url: &str,
        connections: usize,
        chain_id: u64,
        kernel: Address,
        provider: Address,
        owner: String,
    ) -> Result<Self, StoreError> {
        Ok(PaywallStore {
            pg: Pg::connect(url, connections).await?,
            scope: format!("{chain_id}/{kernel:#x}/{provider:#x}"),
            owner,
        })
    }

    /// The name of this replica in its leases.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pg.client().await
    }

    /// The record of `tx_id`'s use, if any.
    pub async fn claim_of(&self, tx_id: B256) -> Result<Option<Claim>, StoreError> {
        let client = self.client().await?;
        client
            .query_opt(
                &prepared(
                    &client,
                    "SELECT *, (status = 'active' AND until < now()) AS lapsed
                 FROM paywall_claims WHERE scope = $1 AND tx_id = $2",
                )
                .await?,
                &[&self.scope, &tx_id.as_slice()],
            )
            .await?
            .map(|row| claim_of(&row))
            .transpose()
    }

    /// Takes `tx_id` for a request, for at most `lease` unless it ends sooner, unless another holds or used
    /// it (a released claim, or an active one past its lease, can be retaken).
    pub async fn claim(
        &self,
        tx_id: B256,
        request_hash: B256,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &prepared(&client, "INSERT INTO paywall_claims (scope, tx_id, status, request_hash, until)
                 VALUES ($1, $2, 'active', $3, now() + make_interval(secs => $4))
                 ON CONFLICT (scope, tx_id) DO UPDATE
                   SET status = 'active', request_hash = EXCLUDED.request_hash, until = EXCLUDED.until,
                       proof_hash = NULL, delivery_tx = NULL, failure = NULL
                   WHERE paywall_claims.status = 'released'
                      OR (paywall_claims.status = 'active' AND paywall_claims.until < now())
                 RETURNING started").await?,
                &[
                    &self.scope,
                    &tx_id.as_slice(),
                    &request_hash.as_slice(),
                    &seconds(lease),
                ],
            )
            .await?;
        Ok(match row {
            Some(row) => ClaimOutcome::Claimed {
                started: row.get(0),
            },
            None => ClaimOutcome::Taken,
        })
    }

    /// Records that this provider moved `tx_id` to IN_PROGRESS.
    pub async fn mark_started(&self, tx_id: B256) -> Result<(), StoreError> {
        self.set_claim(tx_id, "started = true").await
    }

    /// Gives the transaction back: the handler failed or the request was refused after the claim.
    pub async fn release(&self, tx_id: B256) -> Result<(), StoreError> {
        self.set_claim(tx_id, "status = 'released'").await
    }

    async fn set_claim(&self, tx_id: B256, set: &'static str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &prepared(
                    &client,
                    &format!("UPDATE paywall_claims SET {set} WHERE scope = $1 AND tx_id = $2"),
                )
                .await?,
                &[&self.scope, &tx_id.as_slice()],
            )
            .await?;
        Ok(())
    }

    /// Queues the delivery of `tx_id` and records its request as served, in one statement; returns its place
    /// in the outbox. Durable when it returns.
    pub async fn serve(
        &self,
        tx_id: B256,
        proof_hash: B256,
        started: bool,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &prepared(
                    &client,
                    "WITH queued AS (
                   INSERT INTO paywall_outbox (scope, tx_id, proof_hash, started, session)
                   VALUES ($1, $2, $3, $4, false) RETURNING seq
                 ), served AS (
                   UPDATE paywall_claims SET status = 'served', proof_hash = $3
                   WHERE scope = $1 AND tx_id = $2
                 )
                 SELECT seq FROM queued",
                )
                .await?,
                &[
                    &self.scope,
                    &tx_id.as_slice(),
                    &proof_hash.as_slice(),
                    &started,
                ],
            )
            .await?;
        Ok(seq_of(row.get(0)))
    }

    /// Becomes (or stays) the replica that sends the outbox, for `duration`, unless another holds that role;
    /// then leases up to `limit` of the oldest deliveries, for `duration` (the ones this replica holds already
    /// are renewed). Empty for a replica that is not the sender.
    pub async fn lease(&self, limit: usize, duration: Duration) -> Result<Vec<Leased>, StoreError> {
        let client = self.client().await?;
        let sender = client
            .query_opt(
                &prepared(
                    &client,
                    "INSERT INTO paywall_sender (scope, owner, until)
                 VALUES ($1, $2, now() + make_interval(secs => $3))
                 ON CONFLICT (scope) DO UPDATE SET owner = $2, until = EXCLUDED.until
                   WHERE paywall_sender.owner = $2 OR paywall_sender.until < now()
                 RETURNING 1",
                )
                .await?,
                &[&self.scope, &self.owner, &seconds(duration)],
            )
            .await?;
        if sender.is_none() {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        client
            .query(
                &prepared(&client, "UPDATE paywall_outbox o
                 SET lease_owner = $2, lease_until = now() + make_interval(secs => $3),
                     leases = o.leases + CASE WHEN o.lease_owner IS NOT DISTINCT FROM $2 THEN 0 ELSE 1 END
                 WHERE o.seq IN (
                   SELECT seq FROM paywall_outbox
                   WHERE scope = $1 AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $2)
                   ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED
                 )
                 RETURNING o.seq, o.tx_id, o.proof_hash, o.started, o.session, o.leases").await?,
                &[&self.scope, &self.owner, &seconds(duration), &limit],
            )
            .await?
            .iter()
            .map(leased_of)
            .collect::<Result<Vec<_>, _>>()
            .map(|mut leased| {
                leased.sort_by_key(|l| l.seq);
                leased
            })
    }

    /// Whether delivery `seq` is still queued and leased by this replica.
    pub async fn holds_lease(&self, seq: u64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &prepared(
                    &client,
                    "SELECT 1 FROM paywall_outbox
                 WHERE seq = $1 AND scope = $2 AND lease_owner = $3 AND lease_until > now()",
                )
                .await?,
                &[&(seq as i64), &self.scope, &self.owner],
            )
            .await?
            .is_some())
    }

    /// Closes delivery `seq` of `tx_id`: removes it from the outbox and records the outcome on the claim, in
    /// one statement, only while this replica holds its lease. `false` if it no longer does (it was closed,
    /// or its lease expired and another replica took it over: that one reads the chain before sending).
    pub async fn finish(
        &self,
        seq: u64,
        tx_id: B256,
        outcome: Result<Option<B256>, String>,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let (status, delivery_tx, failure) = match &outcome {
            Ok(hash) => (
                ClaimStatus::Delivered,
                hash.map(|h| h.to_vec()),
                None::<&str>,
            ),
            Err(reason) => (ClaimStatus::Failed, None, Some(reason.as_str())),
        };
        let row = client
            .query_one(
                &prepared(
                    &client,
                    "WITH done AS (
                   DELETE FROM paywall_outbox WHERE seq = $1 AND scope = $2 AND lease_owner = $3
                   RETURNING tx_id
                 ), recorded AS (
                   UPDATE paywall_claims c
                   SET status = $5, delivery_tx = $6, failure = $7, started = true
                   FROM done WHERE c.scope = $2 AND c.tx_id = $4 AND done.tx_id = $4
                 )
                 SELECT count(*) FROM done",
                )
                .await?,
                &[
                    &(seq as i64),
                    &self.scope,
                    &self.owner,
                    &tx_id.as_slice(),
                    &status.as_str(),
                    &delivery_tx,
                    &failure,
                ],
            )
            .await?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    /// How many deliveries wait in the outbox, leased or not.
    pub async fn outbox_len(&self) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &prepared(
                    &client,
                    "SELECT count(*) FROM paywall_outbox WHERE scope = $1",
                )
                .await?,
                &[&self.scope],
            )
            .await?;
        Ok(usize::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }
}
