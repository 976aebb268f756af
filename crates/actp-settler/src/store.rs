//! The daemon's durable state, in one sled tree so that every update is one atomic batch: the checkpoint
//! (the first block not yet read), the kernel and chain it belongs to, and the pending set (delivered
//! transactions not yet seen settled, each with the end of its dispute window when known).

use std::path::Path;

use actp_core::{Address, B256};

use crate::SettlerError;

const CHECKPOINT: &[u8] = b"checkpoint";
const IDENTITY: &[u8] = b"identity";
const PENDING: u8 = b'p';

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

/// The sled store of one daemon.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
}

fn pending_key(id: &B256) -> [u8; 33] {
    let mut key = [0u8; 33];
    key[0] = PENDING;
    key[1..].copy_from_slice(id.as_slice());
    key
}

fn storage(e: sled::Error) -> SettlerError {
    SettlerError::Storage(e.to_string())
}

impl Store {
    /// Opens (or creates) the store in `dir`, bound to `kernel` on `chain_id`: a directory written for
    /// another kernel is refused rather than mixed.
    pub fn open(dir: &Path, chain_id: u64, kernel: Address) -> Result<Self, SettlerError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SettlerError::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let db = sled::Config::new().path(dir).open().map_err(|e| {
            let text = e.to_string();
            if text.contains("lock") || text.contains("WouldBlock") || text.contains("in use") {
                SettlerError::Locked(dir.display().to_string())
            } else {
                SettlerError::Storage(text)
            }
        })?;
        let tree = db.open_tree("settler").map_err(storage)?;
        let mut identity = chain_id.to_be_bytes().to_vec();
        identity.extend_from_slice(kernel.as_slice());
        match tree.get(IDENTITY).map_err(storage)? {
            Some(found) if found.as_ref() != identity.as_slice() => {
                return Err(SettlerError::WrongDataDir(dir.display().to_string()));
            }
            Some(_) => {}
            None => {
                tree.insert(IDENTITY, identity).map_err(storage)?;
            }
        }
        Ok(Store { db, tree })
    }

    /// The first block not yet read, if the daemon ran before.
    pub fn checkpoint(&self) -> Result<Option<u64>, SettlerError> {
        Ok(self
            .tree
            .get(CHECKPOINT)
            .map_err(storage)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    /// Applies the changes of the blocks read and moves the checkpoint to `next_block`, atomically.
    pub fn apply(&self, changes: &[Change], next_block: u64) -> Result<(), SettlerError> {
        let mut batch = sled::Batch::default();
        for change in changes {
            match change {
                Change::Delivered(id, window_end) => {
                    batch.insert(
                        &pending_key(id)[..],
                        &window_end.unwrap_or(0).to_be_bytes()[..],
                    );
                }
                Change::Closed(id) => batch.remove(&pending_key(id)[..]),
            }
        }
        batch.insert(CHECKPOINT, &next_block.to_be_bytes()[..]);
        self.tree.apply_batch(batch).map_err(storage)
    }

    /// Records the window end of a pending transaction (read from the chain).
    pub fn set_window_end(&self, id: &B256, window_end: u64) -> Result<(), SettlerError> {
        let key = pending_key(id);
        // Only if still pending: an event may have closed it meanwhile.
        let _ = self
            .tree
            .compare_and_swap(
                key,
                Some(&0u64.to_be_bytes()[..]),
                Some(&window_end.to_be_bytes()[..]),
            )
            .map_err(storage)?;
        Ok(())
    }

    /// Every pending transaction.
    pub fn pending(&self) -> Result<Vec<Pending>, SettlerError> {
        self.tree
            .scan_prefix([PENDING])
            .map(|item| {
                let (k, v) = item.map_err(storage)?;
                let id = B256::try_from(&k[1..])
                    .map_err(|_| SettlerError::Storage("corrupt pending key".into()))?;
                let end = <[u8; 8]>::try_from(v.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| SettlerError::Storage("corrupt pending value".into()))?;
                Ok(Pending {
                    id,
                    window_end: (end != 0).then_some(end),
                })
            })
            .collect()
    }

    /// How many transactions are pending.
    pub fn backlog(&self) -> usize {
        self.tree.scan_prefix([PENDING]).count()
    }

    /// Makes everything written so far durable (on tokio's blocking pool: sled's own async flush can
    /// starve its small IO pool under load).
    pub async fn flush(&self) -> Result<(), SettlerError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| SettlerError::Storage(e.to_string()))?
            .map_err(storage)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn apply_is_atomic_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = Address::repeat_byte(7);
        let (a, b) = (B256::repeat_byte(1), B256::repeat_byte(2));
        {
            let store = Store::open(dir.path(), 31337, kernel).unwrap();
            assert_eq!(store.checkpoint().unwrap(), None);
            store
                .apply(
                    &[Change::Delivered(a, Some(100)), Change::Delivered(b, None)],
                    10,
                )
                .unwrap();
            store.set_window_end(&b, 200).unwrap();
            store.apply(&[Change::Closed(a)], 12).unwrap();
            // A window end read after the transaction closed does not bring it back.
            store.set_window_end(&a, 300).unwrap();
        }
        // sled releases its lock file from a background thread after the last handle drops: wait for it.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let store = loop {
            match Store::open(dir.path(), 31337, kernel) {
                Ok(store) => break store,
                Err(SettlerError::Locked(_)) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(store.checkpoint().unwrap(), Some(12));
        assert_eq!(
            store.pending().unwrap(),
            vec![Pending {
                id: b,
                window_end: Some(200)
            }]
        );
        assert_eq!(store.backlog(), 1);
    }

    #[test]
    fn refuses_a_directory_of_another_kernel() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), 1, Address::repeat_byte(1)).unwrap());
        let err = Store::open(dir.path(), 1, Address::repeat_byte(2)).unwrap_err();
        assert!(matches!(err, SettlerError::WrongDataDir(_)), "{err}");
        assert!(err.to_string().contains("--data-dir"), "{err}");
    }
}
