//! The journal's record format: `len: u32, crc32: u32, body`, where the body is the record's number and its
//! batch's operations, little-endian. A file's records are numbered consecutively from its start, so a torn
//! record, zeros, or an older round's record ends it.

use crate::StoreError;

/// A record's header: its body's length and CRC-32.
pub(super) const HEADER: usize = 8;

/// Changes to apply together: puts and removes on the store's trees (by index).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(super) ops: Vec<Op>,
}

#[derive(Debug)]
pub(super) enum Op {
    Put {
        tree: u8,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Remove {
        tree: u8,
        key: Vec<u8>,
    },
}

impl Op {
    pub(super) fn tree(&self) -> u8 {
        match self {
            Op::Put { tree, .. } | Op::Remove { tree, .. } => *tree,
        }
    }
}

impl Batch {
    /// A batch that changes nothing.
    pub(crate) fn new() -> Self {
        Batch::default()
    }

    /// Sets `key` in `tree` to `value`.
    pub(crate) fn put(mut self, tree: u8, key: impl AsRef<[u8]>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put {
            tree,
            key: key.as_ref().to_vec(),
            value,
        });
        self
    }

    /// Removes `key` from `tree`.
    pub(crate) fn remove(mut self, tree: u8, key: impl AsRef<[u8]>) -> Self {
        self.ops.push(Op::Remove {
            tree,
            key: key.as_ref().to_vec(),
        });
        self
    }

    /// The record for this batch, numbered `lsn`: header and body.
    pub(super) fn encode(&self, lsn: u64) -> Result<Vec<u8>, StoreError> {
        let count = u16::try_from(self.ops.len()).map_err(|_| {
            StoreError::Journal(format!(
                "a batch of {} changes is too large",
                self.ops.len()
            ))
        })?;
        let mut out = vec![0u8; HEADER];
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        for op in &self.ops {
            let (kind, key, value): (u8, &[u8], &[u8]) = match op {
                Op::Put { key, value, .. } => (0, key, value),
                Op::Remove { key, .. } => (1, key, &[]),
            };
            let key_len = u16::try_from(key.len()).map_err(|_| {
                StoreError::Journal(format!("a key of {} bytes is too long", key.len()))
            })?;
            let value_len = u32::try_from(value.len()).map_err(|_| {
                StoreError::Journal(format!("a value of {} bytes is too long", value.len()))
            })?;
            out.push(op.tree());
            out.push(kind);
            out.extend_from_slice(&key_len.to_le_bytes());
            out.extend_from_slice(&value_len.to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(value);
        }
        let body_len = u32::try_from(out.len() - HEADER)
            .map_err(|_| StoreError::Journal("a batch is too large for the journal".into()))?;
        let crc = crc32fast::hash(&out[HEADER..]);
        out[..4].copy_from_slice(&body_len.to_le_bytes());
        out[4..HEADER].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }
}

/// One record read back: its number and its batch.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) lsn: u64,
    pub(super) batch: Batch,
}

/// The body of a record, or `None` if it does not parse.
fn decode(body: &[u8]) -> Option<Record> {
    fn take<'a>(body: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if body.len() < n {
            return None;
        }
        let (head, rest) = body.split_at(n);
        *body = rest;
        Some(head)
    }
    let mut rest = body;
    let lsn = u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?);
    let count = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?);
    let mut batch = Batch::new();
    for _ in 0..count {
        let tree = take(&mut rest, 1)?[0];
        let kind = take(&mut rest, 1)?[0];
        let key_len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?);
        let value_len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?);
        let key = take(&mut rest, usize::from(key_len))?.to_vec();
        let value = take(&mut rest, usize::try_from(value_len).ok()?)?.to_vec();
        batch.ops.push(match kind {
            0 => Op::Put { tree, key, value },
            1 => Op::Remove { tree, key },
            _ => return None,
        });
    }
    rest.is_empty().then_some(Record { lsn, batch })
}

/// The records at the start of a journal file, up to the first one that is torn, zero, or not the next number.
pub(super) fn read_records(bytes: &[u8]) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(body) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if len == 0 || crc32fast::hash(body) != crc {
            break;
        }
        let Some(record) = decode(body) else { break };
        if out.last().is_some_and(|last| record.lsn != last.lsn + 1) {
            break;
        }
        out.push(record);
        at += HEADER + len;
    }
    out
}
