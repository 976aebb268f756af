//! The journal's files and the thread that syncs them: what commits share (the pending tail, the files' state,
//! the wake-up and what is durable), writing the tail out, and the sync loop of each [`Durability`].

use std::{
    fs::File,
    os::unix::fs::FileExt,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use super::{
    BUFFERED_SYNC_INTERVAL, COMMIT_DELAY, COMMIT_SIBLINGS, Durability, GROW, Writer, lock,
};
use crate::StoreError;

/// What the journal files hold, guarded by the lock every write to them takes.
#[derive(Debug)]
pub(super) struct Files {
    /// How far each file is filled with zeros or records.
    pub(super) filled: [u64; 2],
    /// The file written last: before a record goes to the other one, this one is synced, so a record on disk
    /// in the newer file implies every record before it is on disk too.
    pub(super) last: Option<usize>,
    /// Written since their last sync.
    pub(super) dirty: [bool; 2],
    /// The highest record number written to the files.
    pub(super) written: u64,
}

/// Bytes appended to a file and not yet written to it.
#[derive(Debug)]
pub(super) struct Chunk {
    pub(super) file: usize,
    pub(super) offset: u64,
    pub(super) bytes: Vec<u8>,
}

/// What the writers, the committers and the sync thread share.
pub(super) struct Shared {
    pub(super) writer: Mutex<Writer>,
    pub(super) files: [File; 2],
    /// Held while writing to them (not while syncing them).
    pub(super) state: Mutex<Files>,
    /// Whether the sync thread has work (a commit waits) or must stop.
    pub(super) wake: Mutex<Wake>,
    pub(super) wakeup: Condvar,
    /// The highest number on disk, or why the journal can no longer be written.
    pub(super) synced: tokio::sync::watch::Sender<Synced>,
    pub(super) syncs: AtomicU64,
    pub(super) times: SyncTimes,
    /// Paid requests in flight (see [`COMMIT_SIBLINGS`]).
    pub(super) requests: Arc<AtomicUsize>,
    pub(super) durability: Durability,
}

#[derive(Debug, Default)]
pub(super) struct Wake {
    pub(super) wanted: bool,
    pub(super) stop: bool,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Synced {
    pub(super) durable: u64,
    /// A write or sync failed: nothing written since can be trusted to be on disk, so every later commit fails.
    pub(super) failed: Option<String>,
}

impl Shared {
    pub(super) fn writer(&self) -> MutexGuard<'_, Writer> {
        lock(&self.writer)
    }

    /// Writes every batch appended and not yet written to the files; the caller holds `files`.
    pub(super) fn write_pending(&self, files: &mut Files) -> Result<(), StoreError> {
        let (chunks, upto) = {
            let mut w = self.writer();
            (std::mem::take(&mut w.pending), w.pending_upto)
        };
        if !chunks.is_empty() {
            write_out(&self.files, files, &chunks)?;
            files.written = files.written.max(upto);
        }
        Ok(())
    }

    /// The journal can no longer be trusted: every later commit fails.
    pub(super) fn fail(&self, e: &StoreError) {
        tracing::error!(error = %e, "the journal cannot be written; restart the provider");
        self.synced.send_modify(|s| s.failed = Some(e.to_string()));
    }

    /// The sync thread: whenever a commit wants it, writes everything pending and syncs what was written, so
    /// the commits that arrive while one sync runs share the next. Under [`Durability::Buffered`] the syncs
    /// are at least [`BUFFERED_SYNC_INTERVAL`] apart. Writes and syncs what is left when told to stop.
    ///
    /// One thread, one sync at a time: a second `fdatasync` started while one runs would wait for its device
    /// flush anyway (the block layer sends one at a time), so a commit arriving mid-sync would wait as long.
    pub(super) fn run(&self) {
        loop {
            let stop = {
                let mut wake = lock(&self.wake);
                while !wake.wanted && !wake.stop {
                    wake = self.wakeup.wait(wake).unwrap_or_else(|p| p.into_inner());
                }
                wake.wanted = false;
                wake.stop
            };
            if !stop
                && self.durability == Durability::Synced
                && self.requests.load(SeqCst) > COMMIT_SIBLINGS
            {
                std::thread::sleep(COMMIT_DELAY);
            }
            if let Err(e) = self.sync() {
                return self.fail(&e);
            }
            if stop {
                return;
            }
            if self.durability == Durability::Buffered {
                std::thread::sleep(BUFFERED_SYNC_INTERVAL);
            }
        }
    }

    /// Writes what is pending, then syncs every file written since its last sync (outside the lock, so that
    /// buffered commits go on writing meanwhile) and publishes what is now durable.
    fn sync(&self) -> Result<(), StoreError> {
        let (dirty, upto) = {
            let mut files = lock(&self.state);
            self.write_pending(&mut files)?;
            (std::mem::take(&mut files.dirty), files.written)
        };
        let started = Instant::now();
        for (file, dirty) in self.files.iter().zip(dirty) {
            if dirty {
                file.sync_data().map_err(io_error)?;
            }
        }
        if dirty != [false; 2] {
            self.syncs.fetch_add(1, SeqCst);
            self.times.record(started.elapsed());
        }
        self.synced.send_modify(|s| s.durable = s.durable.max(upto));
        Ok(())
    }
}

/// How long the sync thread's syncs took: how many took longer than 1, 10 and 100 ms, and the longest.
#[derive(Debug, Default)]
pub(super) struct SyncTimes {
    over: [AtomicU64; 3],
    longest_us: AtomicU64,
}

impl SyncTimes {
    pub(super) fn record(&self, took: Duration) {
        for (over, ms) in self.over.iter().zip([1, 10, 100]) {
            if took > Duration::from_millis(ms) {
                over.fetch_add(1, SeqCst);
            }
        }
        self.longest_us
            .fetch_max(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), SeqCst);
    }

    pub(super) fn read(&self, count: u64) -> DiskSyncs {
        let over = |i: usize| self.over[i].load(SeqCst);
        DiskSyncs {
            count,
            over_1ms: over(0),
            over_10ms: over(1),
            over_100ms: over(2),
            longest: Duration::from_micros(self.longest_us.load(SeqCst)),
        }
    }
}

/// The journal's syncs to disk so far, and how many were slow: what a synced response waits for, and where
/// a latency tail that is the disk's shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSyncs {
    /// Syncs made.
    pub count: u64,
    /// Those that took longer than 1 ms.
    pub over_1ms: u64,
    /// Longer than 10 ms.
    pub over_10ms: u64,
    /// Longer than 100 ms.
    pub over_100ms: u64,
    /// The longest.
    pub longest: Duration,
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Journal(format!("journal write failed: {e}"))
}

/// Writes `chunks` to their files in order, first filling with zeros whatever they reach beyond what is filled,
/// and marks the files written as dirty. Before the first record that goes to the other file than the last
/// one written, that file is synced, so a record on disk in the newer file implies every record before it is
/// on disk too (a sync the journal's thread has in flight on it included: this one waits for it).
fn write_out(files: &[File; 2], state: &mut Files, chunks: &[Chunk]) -> Result<(), StoreError> {
    for chunk in chunks {
        let other = 1 - chunk.file;
        if state.last == Some(other) {
            files[other].sync_data().map_err(io_error)?;
            state.dirty[other] = false;
        }
        state.last = Some(chunk.file);
        let file = &files[chunk.file];
        let end = chunk.offset + chunk.bytes.len() as u64;
        if end > state.filled[chunk.file] {
            let to = end.div_ceil(GROW).max(1) * GROW;
            let zeros = vec![
                0u8;
                usize::try_from(to - state.filled[chunk.file])
                    .map_err(|_| StoreError::Journal("journal size".into()))?
            ];
            file.write_all_at(&zeros, state.filled[chunk.file])
                .map_err(io_error)?;
            state.filled[chunk.file] = to;
        }
        file.write_all_at(&chunk.bytes, chunk.offset)
            .map_err(io_error)?;
        state.dirty[chunk.file] = true;
    }
    Ok(())
}
