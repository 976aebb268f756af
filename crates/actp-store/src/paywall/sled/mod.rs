//! The paywall's embedded backend: the provider's sled database, one process at a time. Per-call transactions
//! use two trees: `claims` maps a txId to its [`Claim`]; `outbox` maps a sequence number to a delivery still to
//! be put on chain. Every change goes through the write-ahead journal: serving a request writes both in
//! one batch, and the batch is committed (one `fdatasync` shared by every request waiting) before the response
//! leaves, so a crash after serving never loses the delivery. Sessions are in `sessions.rs`: their accounts are
//! the paywall's own type, an [`Account`], and their tree is deferred in the journal (a charge is journaled;
//! sled gets the account's latest value at the next checkpoint, or before the next write to another tree).

mod sessions;

use std::{collections::HashMap, path::Path};

use actp_core::B256;

pub use sessions::Account;

use super::{
    Claim, ClaimOutcome, ClaimStatus, Delivery,
    journal::{self, APPLIED, Batch, Durability, Journal},
};
use crate::StoreError;

/// The trees, by their index in journal batches.
const CLAIMS: u8 = 0;
const OUTBOX: u8 = 1;
const SESSIONS: u8 = 2;

/// The record under `key` in `tree`, decoded.
fn read<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: B256,
) -> Result<Option<T>, StoreError> {
    match tree.get(key)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

/// The records of `tree`, without the journal's mark.
fn records(tree: &sled::Tree) -> impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> {
    tree.iter()
        .filter(|item| !matches!(item, Ok((key, _)) if key.as_ref() == APPLIED))
}

/// The paywall's sled database, its session accounts of type `S`. Cheap to clone.
pub struct SledPaywall<S> {
    db: sled::Db,
    claims: sled::Tree,
    outbox: sled::Tree,
    sessions: sled::Tree,
    /// The accounts of sessions in use, authoritative while loaded (this process holds the database alone):
    /// holds change them in memory only; charges, closes and top-ups are written through to `sessions`.
    accounts: std::sync::Arc<std::sync::Mutex<HashMap<B256, S>>>,
    journal: std::sync::Arc<Journal>,
    /// Paid requests in flight, which the journal reads to decide whether a sync waits for more commits.
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<S> Clone for SledPaywall<S> {
    fn clone(&self) -> Self {
        SledPaywall {
            db: self.db.clone(),
            claims: self.claims.clone(),
            outbox: self.outbox.clone(),
            sessions: self.sessions.clone(),
            accounts: std::sync::Arc::clone(&self.accounts),
            journal: std::sync::Arc::clone(&self.journal),
            requests: std::sync::Arc::clone(&self.requests),
        }
    }
}

impl<S: Account> SledPaywall<S> {
    /// Opens (or creates) the database in `path`, replaying its journal; commits are as durable as
    /// `durability` says.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(None)
            .open()
            .map_err(|e| StoreError::sled(path, e))?;
        let (claims, outbox, sessions) = (
            db.open_tree("claims")?,
            db.open_tree("outbox")?,
            db.open_tree("sessions")?,
        );
        let trees = vec![claims.clone(), outbox.clone(), sessions.clone()];
        let requests = std::sync::Arc::default();
        let journal = Journal::open(
            db.clone(),
            trees,
            // A session's account is rewritten whole on every call: it goes to sled at checkpoints (the
            // journal makes it durable), not on each call.
            &[SESSIONS],
            path,
            journal::FILE_CAPACITY,
            std::sync::Arc::clone(&requests),
            durability,
        )?;
        Ok(SledPaywall {
            requests,
            claims,
            outbox,
            sessions,
            accounts: std::sync::Arc::default(),
            journal: std::sync::Arc::new(journal),
            db,
        })
    }

    /// Paid requests in flight (the journal reads them to decide whether a sync waits for more commits).
    pub fn requests(&self) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
        std::sync::Arc::clone(&self.requests)
    }

    /// The record of `tx_id`'s use, if any.
    pub fn claim_of(&self, tx_id: B256) -> Result<Option<Claim>, StoreError> {
        read(&self.claims, tx_id)
    }

    /// Atomically takes `tx_id` for a request if nobody holds or used it (a released claim can be retaken).
    pub fn claim(&self, tx_id: B256, request_hash: B256) -> Result<ClaimOutcome, StoreError> {
        self.journal.write(|| {
            let started = match read::<Claim>(&self.claims, tx_id)? {
                None => false,
                Some(claim) if claim.status != ClaimStatus::Released => {
                    return Ok((Batch::new(), ClaimOutcome::Taken));
                }
                Some(claim) => claim.started,
            };
            let next = Claim {
                status: ClaimStatus::Active,
                request_hash,
                started,
                proof_hash: None,
                delivery_tx: None,
                failure: None,
            };
            let batch = Batch::new().put(CLAIMS, tx_id, serde_json::to_vec(&next)?);
            Ok((batch, ClaimOutcome::Claimed { started }))
        })
    }

    /// `batch` with the claim of `tx_id` changed by `f` (unchanged if there is none).
    fn with_update(
        &self,
        batch: Batch,
        tx_id: B256,
        f: impl FnOnce(&mut Claim),
    ) -> Result<Batch, StoreError> {
        Ok(match read::<Claim>(&self.claims, tx_id)? {
            Some(mut claim) => {
                f(&mut claim);
                batch.put(CLAIMS, tx_id, serde_json::to_vec(&claim)?)
            }
            None => batch,
        })
    }

    fn update(&self, tx_id: B256, f: impl FnOnce(&mut Claim)) -> Result<(), StoreError> {
        self.journal
            .write(|| Ok((self.with_update(Batch::new(), tx_id, f)?, ())))
    }

    /// Records that this provider moved `tx_id` to IN_PROGRESS.
    pub fn mark_started(&self, tx_id: B256) -> Result<(), StoreError> {
        self.update(tx_id, |c| c.started = true)
    }

    /// Gives the transaction back: the handler failed or the request was refused after the claim.
    pub fn release(&self, tx_id: B256) -> Result<(), StoreError> {
        self.update(tx_id, |c| c.status = ClaimStatus::Released)
    }

    /// Queues the delivery and records the request as served, in one batch, then commits it.
    pub async fn serve(
        &self,
        tx_id: B256,
        proof_hash: B256,
        started: bool,
    ) -> Result<u64, StoreError> {
        let seq = self.db.generate_id()?;
        let delivery = serde_json::to_vec(&Delivery {
            tx_id,
            proof_hash,
            started,
            session: false,
        })?;
        self.journal.write(|| {
            let batch = Batch::new().put(OUTBOX, seq.to_be_bytes(), delivery);
            let batch = self.with_update(batch, tx_id, |c| {
                c.status = ClaimStatus::Served;
                c.proof_hash = Some(proof_hash);
            })?;
            Ok((batch, ()))
        })?;
        self.flush().await?;
        Ok(seq)
    }

    /// Every delivery still queued, oldest first.
    pub fn pending(&self) -> Result<Vec<(u64, Delivery)>, StoreError> {
        let mut out = Vec::new();
        for item in records(&self.outbox) {
            let (key, value) = item?;
            let seq = u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0; 8]));
            out.push((seq, serde_json::from_slice(&value)?));
        }
        Ok(out)
    }

    /// Closes a delivery: records the outcome on the claim and removes it from the outbox, in one batch.
    /// `false` if it was closed already (nothing is counted twice).
    pub fn finish(
        &self,
        seq: u64,
        tx_id: B256,
        outcome: Result<Option<B256>, String>,
    ) -> Result<bool, StoreError> {
        self.journal.write(|| {
            if !self.is_pending(seq) {
                return Ok((Batch::new(), false));
            }
            let batch = self.with_update(Batch::new(), tx_id, |claim| {
                match &outcome {
                    Ok(hash) => {
                        claim.status = ClaimStatus::Delivered;
                        claim.delivery_tx = *hash;
                    }
                    Err(reason) => {
                        claim.status = ClaimStatus::Failed;
                        claim.failure = Some(reason.clone());
                    }
                }
                claim.started = true;
            })?;
            Ok((batch.remove(OUTBOX, seq.to_be_bytes()), true))
        })
    }

    /// Whether delivery `seq` is still queued (a snapshot of the queue may be older than a finished send).
    pub fn is_pending(&self, seq: u64) -> bool {
        self.outbox.contains_key(seq.to_be_bytes()).unwrap_or(false)
    }

    /// How many deliveries wait in the outbox.
    pub fn outbox_len(&self) -> usize {
        records(&self.outbox).count()
    }

    /// Makes every write made before this call durable, sharing one journal sync with every request that
    /// waits at the same time (group commit).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.journal.commit().await
    }

    /// The journal's syncs so far, and how many were slow.
    pub fn disk_syncs(&self) -> crate::paywall::DiskSyncs {
        self.journal.sync_times()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An account with nothing in it: these tests are about claims and the outbox.
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Plain;

    impl Account for Plain {
        fn is_done(&self) -> bool {
            false
        }
        fn started(&self) -> bool {
            false
        }
        fn clear_holds(&mut self) {}
    }

    #[tokio::test]
    async fn outbox_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = B256::repeat_byte(9);
        {
            let store = SledPaywall::<Plain>::open(dir.path(), Durability::Synced).unwrap();
            store.claim(id, B256::ZERO).unwrap();
            store.serve(id, B256::repeat_byte(5), false).await.unwrap();
        }
        // sled releases its lock file from a background thread after the last handle drops: wait for it.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let store = loop {
            match SledPaywall::<Plain>::open(dir.path(), Durability::Synced) {
                Ok(store) => break store,
                Err(_) if std::time::Instant::now() < until => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        let pending = store.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1.proof_hash, B256::repeat_byte(5));
    }

    /// Requests waiting while a sync runs share the next one: twenty served requests that queue behind a
    /// sync in progress cost one more sync, and each of them returns only after its write is synced.
    #[tokio::test]
    // The held lock is the sync thread's: holding it across awaits is the point (this test's tasks never take it).
    #[allow(clippy::await_holding_lock)]
    async fn requests_waiting_for_a_flush_share_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledPaywall::<Plain>::open(dir.path(), Durability::Synced).unwrap();
        let sync = store.journal.hold_sync(); // a sync in progress
        let waiting: Vec<_> = (0..20u8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let id = B256::repeat_byte(i);
                    store.claim(id, B256::ZERO).unwrap();
                    store.serve(id, B256::repeat_byte(5), false).await.unwrap();
                })
            })
            .collect();
        // Twenty claims and twenty serves written, each request now waiting for its sync.
        actp_e2e::eventually("every request wrote", || async {
            store.journal.last_written() == 40
        })
        .await;
        assert_eq!(store.disk_syncs().count, 0);
        drop(sync);
        for task in waiting {
            task.await.unwrap();
        }
        assert_eq!(store.disk_syncs().count, 1, "one flush for all twenty");
        assert_eq!(store.pending().unwrap().len(), 20);
        // A request alone still gets its own flush.
        store.claim(B256::repeat_byte(99), B256::ZERO).unwrap();
        store
            .serve(B256::repeat_byte(99), B256::ZERO, false)
            .await
            .unwrap();
        assert_eq!(store.disk_syncs().count, 2);
    }
}
