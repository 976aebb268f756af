//! The settler's state in one sled tree, so that every update is one atomic batch: the checkpoint, the kernel
//! and chain it belongs to, and the pending set.

use std::path::{Path, PathBuf};

use actp_core::{Address, B256};

use super::{Change, Pending};
use crate::StoreError;

const CHECKPOINT: &[u8] = b"checkpoint";
const IDENTITY: &[u8] = b"identity";
const PENDING: u8 = b'p';

#[derive(Debug, Clone)]
pub(super) struct SledSettler {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
}

fn pending_key(id: &B256) -> [u8; 33] {
    let mut key = [0u8; 33];
    key[0] = PENDING;
    key[1..].copy_from_slice(id.as_slice());
    key
}

impl SledSettler {
    pub(super) fn open(dir: &Path, chain_id: u64, kernel: Address) -> Result<Self, StoreError> {
        let sled = |e| StoreError::sled(dir, e);
        std::fs::create_dir_all(dir).map_err(|e| sled(sled::Error::Io(e)))?;
        let db = sled::Config::new().path(dir).open().map_err(sled)?;
        let tree = db.open_tree("settler").map_err(sled)?;
        let mut identity = chain_id.to_be_bytes().to_vec();
        identity.extend_from_slice(kernel.as_slice());
        match tree.get(IDENTITY).map_err(sled)? {
            Some(found) if found.as_ref() != identity.as_slice() => {
                return Err(StoreError::WrongOwner {
                    found: describe(&found),
                    expected: describe(&identity),
                });
            }
            Some(_) => {}
            None => {
                tree.insert(IDENTITY, identity).map_err(sled)?;
            }
        }
        Ok(SledSettler {
            path: dir.to_path_buf(),
            db,
            tree,
        })
    }

    fn error(&self, e: sled::Error) -> StoreError {
        StoreError::sled(&self.path, e)
    }

    pub(super) fn checkpoint(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .tree
            .get(CHECKPOINT)
            .map_err(|e| self.error(e))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    pub(super) fn apply(
        &self,
        changes: &[(u64, Change)],
        next_block: u64,
    ) -> Result<(), StoreError> {
        let from = self.checkpoint()?.unwrap_or(0);
        let mut batch = sled::Batch::default();
        for (_, change) in changes.iter().filter(|(block, _)| *block >= from) {
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
        batch.insert(CHECKPOINT, &next_block.max(from).to_be_bytes()[..]);
        self.tree.apply_batch(batch).map_err(|e| self.error(e))
    }

    pub(super) fn set_window_end(&self, id: B256, window_end: u64) -> Result<(), StoreError> {
        // Only if still pending: an event may have closed it meanwhile.
        let _ = self
            .tree
            .compare_and_swap(
                pending_key(&id),
                Some(&0u64.to_be_bytes()[..]),
                Some(&window_end.to_be_bytes()[..]),
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub(super) fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        self.tree
            .scan_prefix([PENDING])
            .map(|item| {
                let (k, v) = item.map_err(|e| self.error(e))?;
                let corrupt = |detail: &str| StoreError::Corrupt {
                    what: "the settler's pending set",
                    detail: detail.to_owned(),
                };
                let id = B256::try_from(&k[1..]).map_err(|_| corrupt("a key is not a txId"))?;
                let end = <[u8; 8]>::try_from(v.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt("a window end is not 8 bytes"))?;
                Ok(Pending {
                    id,
                    window_end: (end != 0).then_some(end),
                })
            })
            .collect()
    }

    /// On tokio's blocking pool: sled's own async flush can starve its small IO pool under load.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}

/// "chain 31337, kernel 0x…" from an identity record.
fn describe(identity: &[u8]) -> String {
    match identity.split_at_checked(8) {
        Some((chain, kernel)) if kernel.len() == 20 => format!(
            "chain {}, kernel {}",
            u64::from_be_bytes(chain.try_into().unwrap_or_default()),
            Address::from_slice(kernel)
        ),
        _ => "an unknown kernel".to_owned(),
    }
}
