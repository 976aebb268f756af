#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::*;

/// A database with two trees and its journal in `dir`. sled's own background flush is off, so the files on
/// disk change only when the journal flushes sled (at open and at a checkpoint).
/// sled releases a database's lock only once every handle is gone, so a reopen waits for that.
fn open(dir: &Path, capacity: u64) -> (sled::Db, Journal) {
    open_with(dir, capacity, Durability::Synced)
}

fn open_with(dir: &Path, capacity: u64, durability: Durability) -> (sled::Db, Journal) {
    open_deferring(dir, capacity, durability, &[])
}

/// The same, with the trees in `deferred` deferred.
fn open_deferring(
    dir: &Path,
    capacity: u64,
    durability: Durability,
    deferred: &[u8],
) -> (sled::Db, Journal) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let db = loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Ok(db) => break db,
            Err(_) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let trees = vec![db.open_tree("a").unwrap(), db.open_tree("b").unwrap()];
    let journal = Journal::open(
        db.clone(),
        trees,
        deferred,
        dir,
        capacity,
        Arc::default(),
        durability,
    )
    .unwrap();
    (db, journal)
}

fn get(db: &sled::Db, tree: &str, key: &[u8]) -> Option<Vec<u8>> {
    db.open_tree(tree)
        .unwrap()
        .get(key)
        .unwrap()
        .map(|v| v.to_vec())
}

fn put(journal: &Journal, tree: u8, key: &[u8], value: &[u8]) {
    journal
        .write(|| Ok((Batch::new().put(tree, key, value.to_vec()), ())))
        .unwrap();
}

/// Where each record of a journal file ends.
fn record_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    for _ in read_records(bytes) {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += HEADER + len;
        ends.push(at);
    }
    ends
}

/// Copies a journal's files (cut to their first `keep` records, if given) into `to`.
fn copy_journal(from: &Path, to: &Path, keep: Option<usize>) {
    std::fs::create_dir_all(to).unwrap();
    for i in 0..2 {
        let name = format!("journal-{i}.wal");
        let mut bytes = std::fs::read(from.join(&name)).unwrap();
        let ends = record_ends(&bytes);
        if let (Some(keep), false) = (keep, ends.is_empty()) {
            bytes.truncate(if keep == 0 { 0 } else { ends[keep - 1] });
        }
        std::fs::write(to.join(&name), bytes).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// The first `count` of five batches on two trees: k=1, k=2, j=w (in b), k=4 with j removed, then x=5 in
/// both trees.
fn batches(journal: &Journal, count: usize) {
    let all = [
        Batch::new().put(0, b"k", b"1".to_vec()),
        Batch::new().put(0, b"k", b"2".to_vec()),
        Batch::new().put(1, b"j", b"w".to_vec()),
        Batch::new().put(0, b"k", b"4".to_vec()).remove(1, b"j"),
        Batch::new()
            .put(0, b"x", b"5".to_vec())
            .put(1, b"x", b"5".to_vec()),
    ];
    for batch in all.into_iter().take(count) {
        journal.write(|| Ok((batch, ()))).unwrap();
    }
}

/// The five batches, committed.
async fn five_batches(dir: &Path) {
    let (_db, journal) = open(dir, FILE_CAPACITY);
    batches(&journal, 5);
    journal.commit().await.unwrap();
    assert_eq!(journal.syncs(), 1, "one sync for five batches");
    assert_eq!(journal.last_written(), 5);
}

#[tokio::test]
async fn committed_batches_survive_sled_losing_them() {
    let original = tempfile::tempdir().unwrap();
    five_batches(original.path()).await;
    // A database whose sled files lost every write: the journal alone brings them back.
    let lost = tempfile::tempdir().unwrap();
    copy_journal(original.path(), lost.path(), None);
    let (db, journal) = open(lost.path(), FILE_CAPACITY);
    assert_eq!(get(&db, "a", b"k").as_deref(), Some(&b"4"[..]));
    assert_eq!(get(&db, "b", b"j"), None);
    assert_eq!(get(&db, "a", b"x").as_deref(), Some(&b"5"[..]));
    assert_eq!(get(&db, "b", b"x").as_deref(), Some(&b"5"[..]));
    // Numbering goes on after the replayed records.
    put(&journal, 0, b"k", b"6");
    assert_eq!(journal.last_written(), 6);
}

/// A crash leaves sled at some prefix of the batches and the journal at another; the state after replay is
/// the longer prefix, never a mix.
#[tokio::test]
async fn replay_gives_the_longer_prefix() {
    let original = tempfile::tempdir().unwrap();
    five_batches(original.path()).await;

    // sled at batch 2 (k=2), the journal at all five: all five.
    let behind = tempfile::tempdir().unwrap();
    {
        let (_db, journal) = open(behind.path(), FILE_CAPACITY);
        batches(&journal, 2);
    }
    copy_journal(original.path(), behind.path(), None);
    let (db, _journal) = open(behind.path(), FILE_CAPACITY);
    assert_eq!(get(&db, "a", b"k").as_deref(), Some(&b"4"[..]));
    assert_eq!(get(&db, "b", b"j"), None);
    assert_eq!(get(&db, "b", b"x").as_deref(), Some(&b"5"[..]));
    drop((db, _journal));

    // sled at batch 4 (k=4, j removed), the journal only at batch 3 (its sync never finished): batch 4 stays;
    // replaying k=1 and k=2 does not take k back.
    let ahead = tempfile::tempdir().unwrap();
    {
        let (_db, journal) = open(ahead.path(), FILE_CAPACITY);
        batches(&journal, 4);
        journal.db.flush().unwrap();
    }
    copy_journal(original.path(), ahead.path(), Some(3));
    let (db, journal) = open(ahead.path(), FILE_CAPACITY);
    assert_eq!(get(&db, "a", b"k").as_deref(), Some(&b"4"[..]));
    assert_eq!(get(&db, "b", b"j"), None);
    assert_eq!(get(&db, "a", b"x"), None);
    // The next batch is numbered after everything either side saw.
    put(&journal, 1, b"y", b"7");
    assert_eq!(journal.last_written(), 5);
}

/// A database of the first layout keeps its marks in its trees: they are read when the marks tree has none,
/// so what they cover is not replayed again.
#[tokio::test]
async fn marks_of_the_first_layout_are_honoured() {
    let original = tempfile::tempdir().unwrap();
    five_batches(original.path()).await;
    let old = tempfile::tempdir().unwrap();
    {
        let db = sled::Config::new().path(old.path()).open().unwrap();
        let a = db.open_tree("a").unwrap();
        a.insert(b"k", b"old".to_vec()).unwrap();
        a.insert(APPLIED, &5u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    copy_journal(original.path(), old.path(), None);
    let (db, journal) = open(old.path(), FILE_CAPACITY);
    // Tree a had applied all five records: none replays over it. Tree b had no mark: its records replay.
    assert_eq!(get(&db, "a", b"k").as_deref(), Some(&b"old"[..]));
    assert_eq!(get(&db, "b", b"x").as_deref(), Some(&b"5"[..]));
    // New marks go to the marks tree.
    put(&journal, 0, b"z", b"6");
    assert_eq!(
        get(&db, MARKS, &[0]).as_deref(),
        Some(&6u64.to_be_bytes()[..])
    );
}

#[tokio::test]
async fn a_torn_record_ends_the_journal() {
    let original = tempfile::tempdir().unwrap();
    five_batches(original.path()).await;
    let torn = tempfile::tempdir().unwrap();
    copy_journal(original.path(), torn.path(), None);
    // The fifth record's last byte flipped, as if its write was cut short.
    let path = torn.path().join("journal-0.wal");
    let mut bytes = std::fs::read(&path).unwrap();
    let ends = record_ends(&bytes);
    assert_eq!(ends.len(), 5);
    bytes[ends[4] - 1] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (db, _journal) = open(torn.path(), FILE_CAPACITY);
    assert_eq!(get(&db, "a", b"k").as_deref(), Some(&b"4"[..]));
    assert_eq!(get(&db, "a", b"x"), None, "the torn batch is not applied");
    assert_eq!(get(&db, "b", b"x"), None, "not even in part");
}

/// With small files the writes move from one file to the other many times, sled is flushed behind them, and
/// a copy of the directory taken after a commit (what a crash would leave) holds every committed value.
#[tokio::test]
async fn files_turn_over_behind_checkpoints() {
    turn_over(Durability::Synced).await;
}

/// The same when commits only write to the operating system: what a crash of the process leaves (the files
/// as the system has them) holds every committed value.
#[tokio::test]
async fn buffered_files_turn_over_behind_checkpoints() {
    turn_over(Durability::Buffered).await;
}

/// The same with both trees deferred: a file is reused only once sled has what it holds, deferred values
/// included.
#[tokio::test]
async fn deferred_files_turn_over_behind_checkpoints() {
    turn_over_deferring(Durability::Synced, &[0, 1]).await;
}

/// And with one tree deferred and one not, the batches on each interleaved.
#[tokio::test]
async fn half_deferred_files_turn_over_behind_checkpoints() {
    turn_over_deferring(Durability::Buffered, &[1]).await;
}

async fn turn_over(durability: Durability) {
    turn_over_deferring(durability, &[]).await;
}

async fn turn_over_deferring(durability: Durability, deferred: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 4096;
    let (_db, journal) = open_deferring(dir.path(), capacity, durability, deferred);
    let value = |i: u32| format!("{i:0>200}").into_bytes();
    for i in 0..400u32 {
        put(&journal, (i % 2) as u8, &(i % 37).to_be_bytes(), &value(i));
        if i % 10 == 9 {
            journal.commit().await.unwrap();
        }
    }
    journal.commit().await.unwrap();
    actp_e2e::eventually("the last checkpoint finished", || async {
        !journal.checkpointing.load(SeqCst)
    })
    .await;
    assert!(journal.checkpointed.load(SeqCst) > 300, "checkpoints ran");
    for i in 0..2 {
        let len = std::fs::metadata(dir.path().join(format!("journal-{i}.wal")))
            .unwrap()
            .len();
        assert!(len <= GROW.max(capacity), "file {i} is {len} bytes");
    }
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    let (db, _copy) = open(crashed.path(), capacity);
    for key in 0..37u32 {
        let last = (0..400u32).filter(|i| i % 37 == key).max().unwrap();
        let tree = if last % 2 == 0 { "a" } else { "b" };
        assert_eq!(
            get(&db, tree, &key.to_be_bytes()),
            Some(value(last)),
            "key {key}"
        );
    }
}

#[test]
fn a_batch_larger_than_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (db, journal) = open(dir.path(), 4096);
    let refused = journal.write(|| Ok((Batch::new().put(0, b"k", vec![7; 5000]), ())));
    assert!(refused.unwrap_err().to_string().contains("too large"));
    assert_eq!(get(&db, "a", b"k"), None);
    assert_eq!(journal.last_written(), 0);
}

#[test]
fn records_decode_as_written() {
    let batch = Batch::new()
        .put(1, b"key", b"value".to_vec())
        .remove(0, [9u8; 32]);
    let mut bytes = batch.encode(41).unwrap();
    bytes.extend(Batch::new().put(0, b"k", vec![]).encode(42).unwrap());
    bytes.extend(Batch::new().put(0, b"k", vec![]).encode(44).unwrap()); // not the next number: ends it
    let records = read_records(&bytes);
    assert_eq!(records.iter().map(|r| r.lsn).collect::<Vec<_>>(), [41, 42]);
    assert!(matches!(&records[0].batch.ops[..], [
        Op::Put { tree: 1, key, value },
        Op::Remove { tree: 0, key: removed },
    ] if key == b"key" && value == b"value" && removed == &[9u8; 32]));
    assert!(read_records(&[0u8; 64]).is_empty());
}

/// A buffered commit returns once its batches are in the journal's files, without waiting for a sync: a copy
/// of the files taken right after it (what a crash of the process leaves) has them. The sync follows in the
/// background, and syncs are at least the interval apart however many commits come.
#[tokio::test]
async fn buffered_commits_are_in_the_files_and_synced_soon_after() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, journal) = open_with(dir.path(), FILE_CAPACITY, Durability::Buffered);
    let started = std::time::Instant::now();
    for i in 0..200u32 {
        put(&journal, 0, &i.to_be_bytes(), b"v");
        journal.commit().await.unwrap();
    }
    let elapsed = started.elapsed();
    // A copy of the files alone, beside a sled that lost everything: the journal brings every commit back.
    let crashed = tempfile::tempdir().unwrap();
    copy_journal(dir.path(), crashed.path(), None);
    let (db, _copy) = open(crashed.path(), FILE_CAPACITY);
    for i in 0..200u32 {
        assert_eq!(get(&db, "a", &i.to_be_bytes()), Some(b"v".to_vec()), "{i}");
    }
    let most = 1 + (elapsed.as_nanos() / BUFFERED_SYNC_INTERVAL.as_nanos()) as u64 + 1;
    assert!(
        journal.syncs() <= most,
        "{} syncs in {elapsed:?}: more than one per interval",
        journal.syncs()
    );
    actp_e2e::eventually("the background sync covered every commit", || async {
        journal.durable() == 200
    })
    .await;
}

/// A deferred tree's writes stay out of sled, read from the journal, until a batch on another tree: they
/// then reach sled before it (sled's log keeps the order of the batches), with the tree's mark. A crash
/// before that loses none that was committed: the records replay.
#[tokio::test]
async fn deferred_writes_are_read_from_the_journal_and_reach_sled_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (db, journal) = open_deferring(dir.path(), FILE_CAPACITY, Durability::Synced, &[1]);
    put(&journal, 1, b"s", b"1");
    put(&journal, 1, b"s", b"2");
    journal
        .write(|| Ok((Batch::new().remove(1, b"gone"), ())))
        .unwrap();
    assert_eq!(get(&db, "b", b"s"), None, "not in sled yet");
    assert_eq!(journal.get(1, b"s").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(journal.get(1, b"gone").unwrap(), None);
    journal.commit().await.unwrap();

    // A crash now: the committed records replay into sled.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    let (copy_db, copy) = open(crashed.path(), FILE_CAPACITY);
    assert_eq!(get(&copy_db, "b", b"s").as_deref(), Some(&b"2"[..]));
    drop((copy_db, copy));

    // A batch on the other tree takes the deferred value to sled first, and marks tree b up to the record
    // before its own.
    put(&journal, 0, b"k", b"x");
    assert_eq!(get(&db, "b", b"s").as_deref(), Some(&b"2"[..]));
    assert_eq!(
        get(&db, MARKS, &[1]).as_deref(),
        Some(&3u64.to_be_bytes()[..])
    );
    assert_eq!(
        get(&db, MARKS, &[0]).as_deref(),
        Some(&4u64.to_be_bytes()[..])
    );

    // A scan applies what is deferred.
    put(&journal, 1, b"t", b"5");
    assert_eq!(get(&db, "b", b"t"), None);
    journal.apply_deferred().unwrap();
    assert_eq!(get(&db, "b", b"t").as_deref(), Some(&b"5"[..]));
    assert_eq!(
        get(&db, MARKS, &[1]).as_deref(),
        Some(&5u64.to_be_bytes()[..])
    );
}

/// Slow syncs are counted at each threshold they pass, and the longest is kept; the journal counts each sync.
#[tokio::test]
async fn sync_times_count_the_slow_ones() {
    let times = sync::SyncTimes::default();
    for ms in [0.5, 5.0, 50.0, 500.0, 2.0] {
        times.record(std::time::Duration::from_secs_f64(ms / 1e3));
    }
    let read = times.read(5);
    assert_eq!(
        (read.count, read.over_1ms, read.over_10ms, read.over_100ms),
        (5, 4, 2, 1)
    );
    assert_eq!(read.longest, std::time::Duration::from_millis(500));

    let dir = tempfile::tempdir().unwrap();
    let (_db, journal) = open(dir.path(), FILE_CAPACITY);
    for i in 0..3u32 {
        put(&journal, 0, &i.to_be_bytes(), b"v");
        journal.commit().await.unwrap();
    }
    let syncs = journal.sync_times();
    assert_eq!(syncs.count, journal.syncs());
    assert!(syncs.count >= 3);
    assert!(syncs.longest > std::time::Duration::ZERO);
}
