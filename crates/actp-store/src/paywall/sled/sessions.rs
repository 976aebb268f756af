//! Sessions on sled: one record per session in the `sessions` tree; while a session is in use its account
//! lives in memory too (this process holds the database alone), and every change to it happens under one
//! lock. Holds change the account in memory only (they die with the process, and a restart clears them);
//! charges, closes and top-ups are written through before the flush that makes the receipt durable. What an
//! account holds and how a call changes it is the paywall's business ([`Account`]).

use std::collections::{HashMap, hash_map::Entry};

use actp_core::B256;
use serde::{Serialize, de::DeserializeOwned};

use super::{OUTBOX, SESSIONS, SledPaywall, records};
use crate::{
    StoreError,
    paywall::{Delivery, journal::Batch},
};

/// A session's account at the provider, as the paywall keeps it.
pub trait Account: Serialize + DeserializeOwned + Clone + Send + 'static {
    /// Whether the session is over (closed, or its close failed): its account then leaves memory.
    fn is_done(&self) -> bool;
    /// Whether the provider moved the session to IN_PROGRESS.
    fn started(&self) -> bool;
    /// Drops what calls in flight hold (they died with the process that served them).
    fn clear_holds(&mut self);
}

fn session_key(key: &[u8]) -> Result<B256, StoreError> {
    B256::try_from(key).map_err(|_| StoreError::Corrupt {
        what: "the paywall's sessions",
        detail: format!("a key of {} bytes", key.len()),
    })
}

impl<S: Account> SledPaywall<S> {
    /// The stored account of `tx_id` (a deferred write included).
    fn stored(&self, tx_id: B256) -> Result<Option<S>, StoreError> {
        match self.journal.get(SESSIONS, tx_id.as_slice())? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The stored accounts, as a scan of the tree (the deferred writes applied first).
    fn scan(
        &self,
    ) -> Result<impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>, StoreError> {
        self.journal.apply_deferred()?;
        Ok(records(&self.sessions))
    }

    fn accounts(&self) -> std::sync::MutexGuard<'_, HashMap<B256, S>> {
        // A panic while holding the lock leaves whole accounts behind: each change replaces one at once.
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session's account, if this provider has seen it.
    pub fn session(&self, tx_id: B256) -> Result<Option<S>, StoreError> {
        let mut accounts = self.accounts();
        if let Some(state) = accounts.get(&tx_id) {
            return Ok(Some(state.clone()));
        }
        let Some(state) = self.stored(tx_id)? else {
            return Ok(None);
        };
        accounts.insert(tx_id, state.clone());
        Ok(Some(state))
    }

    /// The session's account, created from `fresh` (and written) the first time the session is seen.
    pub fn session_or_insert(&self, tx_id: B256, fresh: S) -> Result<S, StoreError> {
        let mut accounts = self.accounts();
        if let Some(state) = accounts.get(&tx_id) {
            return Ok(state.clone());
        }
        let state = match self.stored(tx_id)? {
            Some(stored) => stored,
            None => {
                let bytes = serde_json::to_vec(&fresh)?;
                self.journal
                    .write(|| Ok((Batch::new().put(SESSIONS, tx_id, bytes), ())))?;
                fresh
            }
        };
        accounts.insert(tx_id, state.clone());
        Ok(state)
    }

    /// Applies `f` to the session's account and writes it through (durable with the next flush); returns what
    /// `f` returned with the account after it, `None` if the session is unknown.
    pub fn update_session<T>(
        &self,
        tx_id: B256,
        f: impl FnOnce(&mut S) -> T,
    ) -> Result<Option<(T, S)>, StoreError> {
        self.change_session(tx_id, true, f)
    }

    /// Applies `f` to the session's account in memory only (a call's hold, which dies with the process).
    pub fn hold_in_memory<T>(
        &self,
        tx_id: B256,
        f: impl FnOnce(&mut S) -> T,
    ) -> Result<Option<(T, S)>, StoreError> {
        self.change_session(tx_id, false, f)
    }

    /// Applies `f` to the session's account, in memory only or (`write`) written through. Changes are atomic
    /// per account: one lock guards every account, and a failed write leaves the account as it was.
    fn change_session<T>(
        &self,
        tx_id: B256,
        write: bool,
        f: impl FnOnce(&mut S) -> T,
    ) -> Result<Option<(T, S)>, StoreError> {
        let mut accounts = self.accounts();
        let state = match accounts.entry(tx_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => match self.stored(tx_id)? {
                Some(stored) => v.insert(stored),
                None => return Ok(None),
            },
        };
        let mut next = state.clone();
        let out = f(&mut next);
        if write {
            let bytes = serde_json::to_vec(&next)?;
            self.journal
                .write(|| Ok((Batch::new().put(SESSIONS, tx_id, bytes), ())))?;
        }
        *state = next.clone();
        // A closed session takes no more calls: its account stays on disk only.
        if next.is_done() {
            accounts.remove(&tx_id);
        }
        Ok(Some((out, next)))
    }

    /// Every call in flight died with the process that served it: at start, all holds go back.
    pub fn clear_holds(&self) -> Result<(), StoreError> {
        for item in self.scan()? {
            let (key, _) = item?;
            self.update_session(session_key(&key)?, S::clear_holds)?;
        }
        Ok(())
    }

    /// Applies `begin_close` to the session's account (`true` if it stops taking calls now) and, if so, queues
    /// its close in the outbox, durably with the next flush; `false` if it was closing or closed already (the
    /// close is queued once).
    pub fn queue_close(
        &self,
        tx_id: B256,
        begin_close: impl FnOnce(&mut S) -> bool,
    ) -> Result<bool, StoreError> {
        let Some((newly, state)) = self.update_session(tx_id, begin_close)? else {
            return Ok(false);
        };
        if newly {
            let seq = self.db.generate_id()?;
            let close = serde_json::to_vec(&Delivery {
                tx_id,
                proof_hash: B256::ZERO,
                started: state.started(),
                session: true,
            })?;
            self.journal
                .write(|| Ok((Batch::new().put(OUTBOX, seq.to_be_bytes(), close), ())))?;
        }
        Ok(newly)
    }

    /// Ends a queued session close: records the outcome on the account with `record`, then removes the close
    /// from the outbox. `false` if it was ended already.
    pub fn finish_close(
        &self,
        seq: u64,
        tx_id: B256,
        record: impl FnOnce(&mut S),
    ) -> Result<bool, StoreError> {
        if !self.is_pending(seq) {
            return Ok(false);
        }
        self.update_session(tx_id, record)?;
        self.journal.write(|| {
            let pending = self.is_pending(seq);
            let batch = Batch::new();
            Ok((
                if pending {
                    batch.remove(OUTBOX, seq.to_be_bytes())
                } else {
                    batch
                },
                pending,
            ))
        })
    }

    /// Every session this provider knows, with its account (as in use, for the ones in memory).
    pub fn sessions(&self) -> Result<Vec<(B256, S)>, StoreError> {
        let stored = self
            .scan()?
            .map(|item| {
                let (key, value) = item?;
                Ok((session_key(&key)?, value))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let accounts = self.accounts();
        stored
            .into_iter()
            .map(|(id, value)| match accounts.get(&id) {
                Some(state) => Ok((id, state.clone())),
                None => Ok((id, serde_json::from_slice(&value)?)),
            })
            .collect()
    }
}
