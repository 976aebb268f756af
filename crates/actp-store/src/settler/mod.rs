//! The settlement daemon's state: the checkpoint (the first block not yet read) and the pending set (delivered
//! transactions not yet seen settled, each with the end of its dispute window when known), per chain and
//! kernel.
//!
//! On PostgreSQL several daemons share it: a change read from a block below the checkpoint is not applied
//! again (another daemon applied it), and a daemon leases the transactions it is about to settle, so two
//! daemons do not send the same ones; a lease left by a daemon that died expires.

mod pg;
mod sled;

use std::time::Duration;

use actp_core::{Address, B256};

use crate::{StoreError, StoreUrl, pg::Pg};

/// A pending transaction: delivered, not yet seen leaving DELIVERED in a confirmed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The transaction id.
    pub id: B256,
    /// When its dispute window ends (unix seconds); `None` until known.
    pub window_end: Option<u64>,
}

/// A change to the pending set, from one confirmed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The transaction was delivered (window end known from its proof event, or not).
    Delivered(B256, Option<u64>),
    /// The transaction left DELIVERED (settled, disputed, ...): nothing more to do for it.
    Closed(B256),
}

/// The settlement daemon's store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SettlerStore {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sled(sled::SledSettler),
    Pg(pg::PgSettler),
}

impl SettlerStore {
    /// Opens (or creates) the store at `url`, for `kernel` on `chain_id`. A sled directory written for another
    /// kernel is refused rather than mixed; a PostgreSQL database keeps each kernel's state apart.
    pub async fn open(url: &StoreUrl, chain_id: u64, kernel: Address) -> Result<Self, StoreError> {
        let backend = match url {
            StoreUrl::Sled(dir) => Backend::Sled(sled::SledSettler::open(dir, chain_id, kernel)?),
            StoreUrl::Postgres(url) => Backend::Pg(pg::PgSettler::new(
                Pg::connect(url, 4).await?,
                chain_id,
                kernel,
            )),
        };
        Ok(SettlerStore { backend })
    }

    /// The first block not yet read, if a daemon ran before.
    pub async fn checkpoint(&self) -> Result<Option<u64>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.checkpoint(),
            Backend::Pg(p) => p.checkpoint().await,
        }
    }

    /// Applies the changes read from blocks up to `next_block - 1` (each with its block) and moves the
    /// checkpoint to `next_block`, atomically. Changes from blocks below the checkpoint are skipped: another
    /// daemon applied them already. Durable when it returns on PostgreSQL; after [`SettlerStore::flush`] on
    /// sled.
    pub async fn apply(
        &self,
        changes: &[(u64, Change)],
        next_block: u64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.apply(changes, next_block),
            Backend::Pg(p) => p.apply(changes, next_block).await,
        }
    }

    /// Records the window end of a pending transaction (read from the chain), if it is still pending.
    pub async fn set_window_end(&self, id: B256, window_end: u64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.set_window_end(id, window_end),
            Backend::Pg(p) => p.set_window_end(id, window_end).await,
        }
    }

    /// Every pending transaction, in id order.
    pub async fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.pending(),
            Backend::Pg(p) => p.pending().await,
        }
    }

    /// Of `ids`, those this daemon (`owner`) may settle now: each is leased to it for `duration` unless another
    /// daemon's lease on it has not expired. On sled (one daemon) that is all of them.
    pub async fn lease(
        &self,
        owner: &str,
        ids: &[B256],
        duration: Duration,
    ) -> Result<Vec<B256>, StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(ids.to_vec()),
            Backend::Pg(p) => p.lease(owner, ids, duration).await,
        }
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.flush().await,
            Backend::Pg(_) => Ok(()),
        }
    }
}
