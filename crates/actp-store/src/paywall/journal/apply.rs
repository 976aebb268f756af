//! Applying the journal's batches to sled: at once, with the marks that say how far each tree has applied
//! them; or, for a deferred tree, each key's latest value kept in memory and applied later (see the journal's
//! documentation for when, and why that keeps what a crash leaves a prefix of the batches).

use super::{
    APPLIED, Journal, Writer,
    record::{Batch, Op},
};
use crate::StoreError;

impl Journal {
    pub(super) fn is_deferred(&self, tree: u8) -> bool {
        self.deferred
            .get(usize::from(tree))
            .copied()
            .unwrap_or(false)
    }

    /// The value under `key` in tree `tree`: the deferred value if there is one, else sled's.
    pub(crate) fn get(&self, tree: u8, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if self.is_deferred(tree)
            && let Some(value) = self.writer().deferred.get(&(tree, key.to_vec()))
        {
            return Ok(value.clone());
        }
        let handle = self
            .trees
            .get(usize::from(tree))
            .ok_or_else(|| StoreError::Journal(format!("no tree {tree} in this journal")))?;
        Ok(handle.get(key)?.map(|v| v.to_vec()))
    }

    /// Applies the deferred values to sled now, so a scan of their trees sees them.
    pub(crate) fn apply_deferred(&self) -> Result<(), StoreError> {
        let mut w = self.writer();
        let upto = w.next - 1;
        self.apply_deferred_upto(&mut w, upto)
    }

    /// Applies every deferred value to sled, then marks each tree that had any as applied up to `upto` (the
    /// last record written). Kept in memory until all are applied, so a failure loses none.
    pub(super) fn apply_deferred_upto(&self, w: &mut Writer, upto: u64) -> Result<(), StoreError> {
        if w.deferred.is_empty() {
            return Ok(());
        }
        let writes = w
            .deferred
            .iter()
            .map(|((tree, key), value)| (*tree, key.as_slice(), value.as_deref()));
        apply_writes(&self.trees, &self.marks, writes, upto)?;
        w.deferred.clear();
        Ok(())
    }
}

/// The number of the last record applied to tree `index`: its mark in `marks`, else the mark the first layout
/// kept in the tree itself.
pub(super) fn applied_in(
    marks: &sled::Tree,
    index: usize,
    tree: &sled::Tree,
) -> Result<u64, StoreError> {
    let mark = match marks.get([mark_key(index)?])? {
        Some(bytes) => Some(bytes),
        None => tree.get(APPLIED)?,
    };
    Ok(match mark {
        Some(bytes) => u64::from_be_bytes(
            bytes
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Journal("corrupt journal mark".into()))?,
        ),
        None => 0,
    })
}

fn mark_key(index: usize) -> Result<u8, StoreError> {
    u8::try_from(index).map_err(|_| StoreError::Journal(format!("no tree {index} in a journal")))
}

/// Applies `batch` to sled, operation by operation, then records `lsn` in `marks` as applied to each tree it
/// touched.
///
/// No sled batch or transaction: once a process uses either, sled 0.34 makes every later operation take one
/// global lock. sled recovers a prefix of its one log, whatever the tree, and a tree's mark is written after
/// its changes: the mark sled recovers is at most one record behind the changes it recovers, and replaying
/// from it only repeats a record's own writes.
pub(super) fn apply(
    trees: &[sled::Tree],
    marks: &sled::Tree,
    batch: &Batch,
    lsn: u64,
) -> Result<(), StoreError> {
    let writes = batch.ops.iter().map(|op| match op {
        Op::Put { tree, key, value } => (*tree, key.as_slice(), Some(value.as_slice())),
        Op::Remove { tree, key } => (*tree, key.as_slice(), None),
    });
    apply_writes(trees, marks, writes, lsn)
}

/// Sets (or, with no value, removes) each key in its tree, then records `lsn` in `marks` for each tree
/// written.
fn apply_writes<'a>(
    trees: &[sled::Tree],
    marks: &sled::Tree,
    writes: impl Iterator<Item = (u8, &'a [u8], Option<&'a [u8]>)>,
    lsn: u64,
) -> Result<(), StoreError> {
    let mut touched = vec![false; trees.len()];
    for (tree, key, value) in writes {
        let index = usize::from(tree);
        let handle = trees.get(index).ok_or_else(|| {
            StoreError::Journal(format!("journal names tree {tree} that does not exist"))
        })?;
        match value {
            Some(value) => handle.insert(key, value)?,
            None => handle.remove(key)?,
        };
        if let Some(t) = touched.get_mut(index) {
            *t = true;
        }
    }
    for (index, touched) in touched.into_iter().enumerate() {
        if touched {
            marks.insert([mark_key(index)?], &lsn.to_be_bytes())?;
        }
    }
    Ok(())
}
