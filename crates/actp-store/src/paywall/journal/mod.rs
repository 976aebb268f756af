//! The store's write-ahead journal: what makes a write durable before a response leaves, in one `fdatasync` of
//! an already allocated file instead of one sled flush.
//!
//! Every change to the store's trees is a [`Batch`] applied by [`Journal::write`]: under one lock, the batch
//! gets the next sequence number, is appended to the journal's in-memory tail, and is applied to sled (which is
//! not flushed). [`Journal::commit`] then makes every batch written so far durable, as the journal's
//! [`Durability`] says: on disk, the waiting callers sharing one write of the tail and one `fdatasync` (group
//! commit); or in the operating system's buffers, written by the caller and synced in the background. sled's own flush, which on these machines has a tail
//! of several milliseconds, leaves the request path: it runs in the background as a checkpoint, once per few
//! megabytes of journal, after which that part of the journal may be reused.
//!
//! The journal is two files used in turn (`journal-0.wal`, `journal-1.wal` in the database's directory), each
//! zero-filled to its full size when created, so an `fdatasync` does not also commit a new size. [`record`]
//! has the format of what is written in them.
//!
//! The number of the last record applied to each tree is kept in a tree of its own ([`MARKS`]), written after
//! the change (the first layout kept it in each tree under [`APPLIED`], still read). Opening the store replays the journal: a record's operations on a tree are applied
//! only if their number is above that tree's. Since sled recovers a prefix of its own log, the state after a
//! crash is a prefix of the batches written (the last one possibly in part, as sled's single writes were
//! before), and it includes every committed one.
//!
//! A tree can be *deferred* (the paywall's session accounts, rewritten whole on every call): a batch that only
//! changes deferred trees is journaled but not applied to sled; the journal keeps each key's latest value in
//! memory, and [`Journal::get`] reads it there first. The deferred values go to sled, then the trees' marks
//! (the last record written), before anything that needs them there: a batch on any other tree (so sled's log
//! keeps the order of the batches, and what it recovers is still a prefix), a checkpoint's flush (so no file
//! is reused while it holds a record that sled does not have), and [`Journal::apply_deferred`] (before a
//! scan of the tree). Each write of a deferred tree replaces a whole value, so applying each key's latest
//! value is applying every one of its writes in order; and after a crash, the records above a deferred
//! tree's mark are still in the files, and replay.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
    path::Path,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst},
    },
};

use crate::StoreError;

mod apply;
mod record;
mod sync;

use apply::{applied_in, apply};
pub(crate) use record::Batch;
#[cfg(test)]
use record::HEADER;
use record::{Op, read_records};
pub use sync::DiskSyncs;
use sync::{Chunk, Files, Shared, Synced};

/// The key under which each tree recorded, in the first layout, the number of the last journal record applied
/// to it (read at open when the marks tree has none). Record keys are 8 or 32 bytes long, so it is never one
/// of theirs.
pub(crate) const APPLIED: &[u8] = &[0xff];
/// The tree of the marks: under the one-byte key `[i]`, the number of the last journal record applied to tree
/// `i`. Kept apart from the trees it describes, whose large nodes sled copies on every insert: a mark written
/// into a tree of thousands of claims cost as much as the claim itself.
const MARKS: &str = "journal-marks";

/// How large a journal file gets before the writes move to the other one.
pub(crate) const FILE_CAPACITY: u64 = 8 << 20;
/// How far ahead of the records a file is filled with zeros.
const GROW: u64 = 1 << 20;
/// With more than this many paid requests in flight, a sync waits [`COMMIT_DELAY`] first, so that it covers
/// the commits those requests are about to ask for (PostgreSQL's `commit_siblings` and `commit_delay`). Each
/// sync costs about 70 us of CPU here: under load, fewer syncs leave the CPU to the requests, and a request's
/// latency is then mostly queueing anyway. With few requests in flight, a commit is synced at once. (Ending
/// the wait once every request in flight waits for a commit made three times as many syncs in the bench's
/// closed loop, whose clients send again as soon as they are answered, and cost it throughput.)
const COMMIT_SIBLINGS: usize = 8;
const COMMIT_DELAY: std::time::Duration = std::time::Duration::from_micros(1_000);
/// Under [`Durability::Buffered`], the longest a written batch waits for its background sync: what a crash of
/// the machine may lose. Syncs no more often than this leave their CPU (about 70 us each here) to requests.
pub const BUFFERED_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// What a commit waits for, and so what a response the paywall sends after it may lose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// On disk (`fdatasync`, shared by the commits waiting at the same time): nothing a response confirmed is
    /// lost, even if the machine crashes. The default.
    #[default]
    Synced,
    /// Written to the operating system (the journal file's page cache) by the committing caller, and synced in
    /// the background within [`BUFFERED_SYNC_INTERVAL`]. A crash of the process loses nothing; a crash of the
    /// machine (power, kernel) may lose the commits of the last interval, never part of one: what the store
    /// recovers is still a prefix of its writes. MySQL's `innodb_flush_log_at_trx_commit = 2`. The response
    /// no longer waits for the disk (about 0.25 ms at p50 and several at p99.9 on these machines).
    Buffered,
}

/// What the lock in [`Journal::write`] guards.
#[derive(Debug)]
struct Writer {
    /// The next record's number.
    next: u64,
    /// The file being appended to (0 or 1), and where its next record goes.
    active: usize,
    end: u64,
    /// The highest number in each file's current round (0: none).
    last_in: [u64; 2],
    /// Appended, not yet written; and the highest number among them.
    pending: Vec<Chunk>,
    pending_upto: u64,
    /// The latest value (`None`: removed) of each key written in a deferred tree and not yet applied to sled.
    deferred: HashMap<(u8, Vec<u8>), Option<Vec<u8>>>,
}

/// The journal of one store. See the module's documentation.
pub(crate) struct Journal {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    /// Whether each tree is deferred (see the module's documentation).
    deferred: Vec<bool>,
    marks: sled::Tree,
    /// How large a file gets ([`FILE_CAPACITY`]; smaller in tests).
    capacity: u64,
    shared: Arc<Shared>,
    durability: Durability,
    /// The highest number that sled has flushed (its records may be overwritten).
    checkpointed: Arc<AtomicU64>,
    checkpointing: Arc<AtomicBool>,
    /// The thread that writes and syncs the journal.
    syncer: Option<std::thread::JoinHandle<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each of these locks guards state that is changed only after every fallible step, so a panic elsewhere
    // leaves it whole.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Journal {
    /// Opens the journal beside `db`, replays it into `trees` (what the journal holds beyond what sled has
    /// applied), and flushes sled so both files are free again. The trees whose indices are in `deferred` are
    /// applied to sled lazily (see the module's documentation).
    pub(crate) fn open(
        db: sled::Db,
        trees: Vec<sled::Tree>,
        deferred: &[u8],
        dir: &Path,
        capacity: u64,
        requests: Arc<AtomicUsize>,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        let mut files = Vec::with_capacity(2);
        let mut filled = [0u64; 2];
        let mut records = Vec::new();
        for (i, fill) in filled.iter_mut().enumerate() {
            let path = dir.join(format!("journal-{i}.wal"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| StoreError::Journal(format!("cannot open {}: {e}", path.display())))?;
            let bytes = std::fs::read(&path)
                .map_err(|e| StoreError::Journal(format!("cannot read {}: {e}", path.display())))?;
            records.extend(read_records(&bytes));
            *fill = bytes.len() as u64;
            if *fill < capacity {
                // Allocated once, up front: a sync that also grows the file commits its new size too, which
                // takes milliseconds here instead of a fraction of one.
                let zeros = vec![0u8; GROW as usize];
                let allocate = |fill: &mut u64| {
                    while *fill < capacity {
                        file.write_all_at(&zeros, *fill)?;
                        *fill += GROW;
                    }
                    file.sync_all()
                };
                allocate(fill).map_err(|e| {
                    StoreError::Journal(format!("cannot allocate {}: {e}", path.display()))
                })?;
            }
            files.push(file);
        }
        records.sort_by_key(|r| r.lsn);
        let marks = db.open_tree(MARKS)?;
        let mut applied = Vec::with_capacity(trees.len());
        for (index, tree) in trees.iter().enumerate() {
            applied.push(applied_in(&marks, index, tree)?);
        }
        let mut highest = applied.iter().copied().max().unwrap_or(0);
        for record in records {
            highest = highest.max(record.lsn);
            let fresh = Batch {
                ops: record
                    .batch
                    .ops
                    .into_iter()
                    .filter(|op| {
                        applied
                            .get(usize::from(op.tree()))
                            .is_some_and(|&a| record.lsn > a)
                    })
                    .collect(),
            };
            apply(&trees, &marks, &fresh, record.lsn)?;
        }
        db.flush()?;
        let files: [File; 2] = files
            .try_into()
            .map_err(|_| StoreError::Journal("journal files".into()))?;
        let shared = Arc::new(Shared {
            writer: Mutex::new(Writer {
                next: highest + 1,
                active: 0,
                end: 0,
                last_in: [0; 2],
                pending: Vec::new(),
                pending_upto: highest,
                deferred: HashMap::new(),
            }),
            files,
            state: Mutex::new(Files {
                filled,
                last: None,
                dirty: [false; 2],
                written: highest,
            }),
            wake: Mutex::default(),
            wakeup: Condvar::new(),
            synced: tokio::sync::watch::Sender::new(Synced {
                durable: highest,
                failed: None,
            }),
            syncs: AtomicU64::new(0),
            times: sync::SyncTimes::default(),
            requests,
            durability,
        });
        let syncer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("actp-journal".into())
                .spawn(move || shared.run())
                .map_err(|e| {
                    StoreError::Journal(format!("cannot start the journal's thread: {e}"))
                })?
        };
        let deferred = (0..trees.len())
            .map(|i| u8::try_from(i).is_ok_and(|i| deferred.contains(&i)))
            .collect();
        Ok(Journal {
            db,
            trees,
            deferred,
            marks,
            capacity,
            shared,
            durability,
            checkpointed: Arc::new(AtomicU64::new(highest)),
            checkpointing: Arc::new(AtomicBool::new(false)),
            syncer: Some(syncer),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.shared.writer()
    }

    /// Runs `f` under the journal's lock (so what it reads is what its batch changes) and writes the batch it
    /// returns: appended to the journal, applied to sled. Durable after the next [`Journal::commit`].
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce() -> Result<(Batch, T), StoreError>,
    ) -> Result<T, StoreError> {
        let mut w = self.writer();
        let (batch, out) = f()?;
        if batch.ops.is_empty() {
            return Ok(out);
        }
        let lsn = w.next;
        let record = batch.encode(lsn)?;
        let len = record.len() as u64;
        if len > self.capacity {
            return Err(StoreError::Journal(format!(
                "a batch of {len} bytes is too large for the journal"
            )));
        }
        if w.end + len > self.capacity {
            self.rotate(&mut w)?;
        }
        if batch.ops.iter().all(|op| self.is_deferred(op.tree())) {
            for op in batch.ops {
                let (tree, key, value) = match op {
                    Op::Put { tree, key, value } => (tree, key, Some(value)),
                    Op::Remove { tree, key } => (tree, key, None),
                };
                w.deferred.insert((tree, key), value);
            }
        } else {
            // sled gets the batches in the order they were written: the deferred ones before this one.
            self.apply_deferred_upto(&mut w, lsn - 1)?;
            apply(&self.trees, &self.marks, &batch, lsn)?;
        }
        let (active, offset) = (w.active, w.end);
        match w.pending.last_mut() {
            Some(last)
                if last.file == active && last.offset + last.bytes.len() as u64 == offset =>
            {
                last.bytes.extend_from_slice(&record);
            }
            _ => w.pending.push(Chunk {
                file: active,
                offset,
                bytes: record,
            }),
        }
        w.end += len;
        w.last_in[active] = lsn;
        w.pending_upto = lsn;
        w.next = lsn + 1;
        if w.end > self.capacity / 2 && w.last_in[1 - active] > self.checkpointed.load(SeqCst) {
            self.checkpoint(&mut w, lsn);
        }
        Ok(out)
    }

    /// Moves the writes to the other file, once sled has flushed what that file holds.
    fn rotate(&self, w: &mut Writer) -> Result<(), StoreError> {
        let other = 1 - w.active;
        if w.last_in[other] > self.checkpointed.load(SeqCst) {
            // The background checkpoint has not finished (or not started): flush here.
            let upto = w.next - 1;
            self.apply_deferred_upto(w, upto)?;
            self.db.flush()?;
            self.checkpointed.fetch_max(w.next - 1, SeqCst);
        }
        w.active = other;
        w.end = 0;
        w.last_in[other] = 0;
        Ok(())
    }

    /// Flushes sled in the background, the deferred values applied first; every record up to `upto` (the last
    /// written) is then in sled's files.
    fn checkpoint(&self, w: &mut Writer, upto: u64) {
        if self.checkpointing.swap(true, SeqCst) {
            return;
        }
        if let Err(e) = self.apply_deferred_upto(w, upto) {
            tracing::warn!(error = %e, "journal checkpoint failed; it is retried");
            self.checkpointing.store(false, SeqCst);
            return;
        }
        let (db, checkpointed, running) = (
            self.db.clone(),
            self.checkpointed.clone(),
            self.checkpointing.clone(),
        );
        std::thread::spawn(move || {
            match db.flush() {
                Ok(_) => {
                    checkpointed.fetch_max(upto, SeqCst);
                }
                Err(e) => tracing::warn!(error = %e, "journal checkpoint failed; it is retried"),
            }
            running.store(false, SeqCst);
        });
    }

    /// Makes every batch written before this call durable, as the journal's [`Durability`] says. Synced:
    /// callers that wait at the same time share one write and one `fdatasync`, made by the journal's thread.
    /// Buffered: the caller writes what is pending itself (no disk wait) and the thread syncs it soon after.
    pub(crate) async fn commit(&self) -> Result<(), StoreError> {
        let target = self.writer().next - 1;
        match self.durability {
            Durability::Synced => self.wait_synced(target).await?,
            Durability::Buffered => {
                let mut files = lock(&self.shared.state);
                if files.written < target
                    && let Err(e) = self.shared.write_pending(&mut files)
                {
                    self.shared.fail(&e);
                }
                drop(files);
                self.want_sync();
            }
        }
        match &self.shared.synced.borrow().failed {
            Some(why) => Err(StoreError::Journal(format!("{why}; restart the provider"))),
            None => Ok(()),
        }
    }

    /// Waits until the journal's thread has synced every batch up to `target`.
    async fn wait_synced(&self, target: u64) -> Result<(), StoreError> {
        let mut synced = self.shared.synced.subscribe();
        let done = |s: &Synced| s.durable >= target || s.failed.is_some();
        if !done(&synced.borrow()) {
            self.want_sync();
            synced
                .wait_for(done)
                .await
                .map_err(|_| StoreError::Journal("the journal's thread stopped".into()))?;
        }
        Ok(())
    }

    /// Asks the journal's thread for a sync (waking it only if none was asked for since it last looked).
    fn want_sync(&self) {
        let mut wake = lock(&self.shared.wake);
        if !wake.wanted {
            wake.wanted = true;
            drop(wake);
            self.shared.wakeup.notify_one();
        }
    }

    /// How many times the journal was synced to disk.
    pub(crate) fn syncs(&self) -> u64 {
        self.shared.syncs.load(SeqCst)
    }

    /// The syncs so far, and how many were slow.
    pub(crate) fn sync_times(&self) -> DiskSyncs {
        self.shared.times.read(self.syncs())
    }

    /// The number of the last batch written.
    #[cfg(test)]
    pub(crate) fn last_written(&self) -> u64 {
        self.writer().next - 1
    }

    /// The lock a sync holds while it writes (tests hold it to queue commits behind a sync in progress).
    #[cfg(test)]
    pub(crate) fn hold_sync(&self) -> MutexGuard<'_, impl Sized> {
        lock(&self.shared.state)
    }

    /// The highest number durable on disk.
    #[cfg(test)]
    pub(crate) fn durable(&self) -> u64 {
        self.shared.synced.borrow().durable
    }
}

impl Drop for Journal {
    /// Stops the journal's thread once it has written what is still pending, so a store closed normally loses
    /// nothing.
    fn drop(&mut self) {
        lock(&self.shared.wake).stop = true;
        self.shared.wakeup.notify_one();
        if let Some(thread) = self.syncer.take()
            && thread.join().is_err()
        {
            tracing::error!("the journal's thread panicked");
        }
    }
}

#[cfg(test)]
mod tests;
