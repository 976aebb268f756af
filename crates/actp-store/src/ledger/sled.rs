//! The ledger in one sled tree (the layout `actp-pay` has always written, so existing ledgers open as they
//! are): a record `kind/rest` of an agent lives under `kind/<agent>/rest` (`policy` under `policy/<agent>`),
//! the transaction index under `tx/<txId>`. The kill switch is one file per suspended agent under
//! `suspended/`, so any process sharing the directory can throw it while an agent holds the database.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use actp_core::{Address, B256};

use crate::StoreError;

#[derive(Debug)]
pub(super) struct SledLedger {
    dir: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    lock: Arc<tokio::sync::Mutex<()>>,
}

fn hex(a: Address) -> String {
    format!("{a:#x}")
}

/// Where record `key` of `agent` lives in the tree.
fn stored_key(agent: Address, key: &str) -> String {
    match key.split_once('/') {
        Some((kind, rest)) => format!("{kind}/{}/{rest}", hex(agent)),
        None => format!("{key}/{}", hex(agent)),
    }
}

impl SledLedger {
    pub(super) fn open(dir: &Path) -> Result<Self, StoreError> {
        let sled = |e| StoreError::sled(dir, e);
        // Every commit flushes before it returns, so sled's background flusher adds nothing; without it no
        // thread outlives the last handle, and the database's lock goes with the handle.
        let db = sled::Config::new()
            .path(dir.join("ledger"))
            .flush_every_ms(None)
            .open()
            .map_err(sled)?;
        let tree = db.open_tree("ledger").map_err(sled)?;
        Ok(SledLedger {
            dir: dir.to_path_buf(),
            db,
            tree,
            lock: Arc::default(),
        })
    }

    fn error(&self, e: sled::Error) -> StoreError {
        StoreError::sled(&self.dir, e)
    }

    pub(super) async fn begin(self: &Arc<Self>, agent: Address) -> SledTx {
        SledTx {
            _guard: Arc::clone(&self.lock).lock_owned().await,
            store: Arc::clone(self),
            agent,
            writes: BTreeMap::new(),
        }
    }

    pub(super) fn get(&self, agent: Address, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(stored_key(agent, key))
            .map_err(|e| self.error(e))?
            .map(|v| v.to_vec()))
    }

    pub(super) fn scan(
        &self,
        agent: Address,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let (kind, rest) = prefix.split_once('/').unwrap_or((prefix, ""));
        let base = format!("{kind}/{}/", hex(agent));
        let start = format!("{base}{rest}");
        self.tree
            .scan_prefix(start.as_bytes())
            .map(|item| {
                let (k, v) = item.map_err(|e| self.error(e))?;
                let tail = String::from_utf8_lossy(&k[base.len()..]).into_owned();
                Ok((format!("{kind}/{tail}"), v.to_vec()))
            })
            .collect()
    }

    pub(super) fn agents(&self) -> Result<Vec<Address>, StoreError> {
        let mut agents = std::collections::BTreeSet::new();
        for prefix in ["policy/", "pay/"] {
            for item in self.tree.scan_prefix(prefix.as_bytes()) {
                let (key, _) = item.map_err(|e| self.error(e))?;
                let text = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                if let Some(a) = text.split('/').next().and_then(|a| a.parse().ok()) {
                    agents.insert(a);
                }
            }
        }
        Ok(agents.into_iter().collect())
    }

    pub(super) fn find_tx(&self, tx_id: B256) -> Result<Option<(Address, String)>, StoreError> {
        let Some(at) = self
            .tree
            .get(format!("tx/{tx_id}"))
            .map_err(|e| self.error(e))?
        else {
            return Ok(None);
        };
        let at = String::from_utf8_lossy(&at).into_owned();
        let corrupt = || StoreError::Corrupt {
            what: "the ledger's transaction index",
            detail: format!("{tx_id} points at {at:?}"),
        };
        let (agent, key) = at.split_once('/').ok_or_else(corrupt)?;
        Ok(Some((
            agent.parse().map_err(|_| corrupt())?,
            format!("pay/{key}"),
        )))
    }

    pub(super) fn suspended(&self, agent: Address) -> Option<Option<String>> {
        suspended(&self.dir, agent)
    }
}

fn kill_file(dir: &Path, agent: Address) -> PathBuf {
    dir.join("suspended").join(hex(agent))
}

/// Throws the kill switch of `agent` in the ledger directory `dir`: a file, so it works while another process
/// holds the database.
pub(super) fn suspend(dir: &Path, agent: Address, reason: Option<&str>) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::sled(dir, sled::Error::Io(e));
    let suspended = dir.join("suspended");
    std::fs::create_dir_all(&suspended).map_err(io)?;
    let body = serde_json::to_vec(&Suspension {
        reason: reason.map(str::to_owned),
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
    .map_err(|e| StoreError::Corrupt {
        what: "a suspension",
        detail: e.to_string(),
    })?;
    // Written whole, then renamed into place: a reader sees the switch complete or not at all.
    let tmp = suspended.join(format!(".{}.{}", hex(agent), std::process::id()));
    std::fs::write(&tmp, body).map_err(io)?;
    std::fs::rename(&tmp, kill_file(dir, agent)).map_err(io)
}

pub(super) fn resume(dir: &Path, agent: Address) -> Result<(), StoreError> {
    match std::fs::remove_file(kill_file(dir, agent)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::sled(dir, sled::Error::Io(e))),
    }
}

pub(super) fn suspended(dir: &Path, agent: Address) -> Option<Option<String>> {
    let bytes = std::fs::read(kill_file(dir, agent)).ok()?;
    Some(
        serde_json::from_slice::<Suspension>(&bytes)
            .ok()
            .and_then(|s| s.reason),
    )
}

/// A suspension file's content (the format `actp-pay` has always written).
#[derive(serde::Serialize, serde::Deserialize)]
struct Suspension {
    reason: Option<String>,
    at: u64,
}

#[derive(Debug)]
pub(super) struct SledTx {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    store: Arc<SledLedger>,
    agent: Address,
    writes: BTreeMap<String, Vec<u8>>,
}

impl SledTx {
    pub(super) fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = stored_key(self.agent, key);
        match self.writes.get(&stored) {
            Some(value) => Ok(Some(value.clone())),
            None => self.store.get(self.agent, key),
        }
    }

    pub(super) fn put(&mut self, key: &str, value: Vec<u8>) {
        self.writes.insert(stored_key(self.agent, key), value);
    }

    pub(super) fn index_tx(&mut self, tx_id: B256, key: &str) {
        let key = key.strip_prefix("pay/").unwrap_or(key);
        self.writes.insert(
            format!("tx/{tx_id}"),
            format!("{}/{key}", hex(self.agent)).into_bytes(),
        );
    }

    pub(super) fn suspended(&self) -> Option<Option<String>> {
        self.store.suspended(self.agent)
    }

    /// One atomic batch, flushed on tokio's blocking pool before it returns.
    pub(super) async fn commit(self) -> Result<(), StoreError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (key, value) in self.writes {
            batch.insert(key.as_bytes(), value);
        }
        self.store
            .tree
            .apply_batch(batch)
            .map_err(|e| self.store.error(e))?;
        let db = self.store.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
            .map_err(|e| self.store.error(e))?;
        Ok(())
    }
}
