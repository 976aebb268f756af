//! Paid per call with the outbox deferred, against the bare chain-read rate: in rounds, each round reading
//! the chain, then paying on the synced paywall, then on the buffered one, so that each ratio compares runs
//! seconds apart (anvil's read rate moves by half from one moment to the next on this machine). The figure
//! is the median of the rounds' ratios. And the disk's own sync, timed alone: the floor under every answer
//! of a synced paywall.

use std::{
    io::Write,
    os::unix::fs::FileExt,
    time::{Duration, Instant},
};

use actp_core::B256;
use futures::{StreamExt, stream};

use crate::cpu::cpu_time;
use crate::support::{Headers, Run, Target, drive, lanes, median};

/// The rounds of one run: reads per second, and the paid runs on each paywall.
pub(crate) struct PerCall {
    pub(crate) reads: Vec<f64>,
    pub(crate) synced: Vec<Run>,
    pub(crate) buffered: Vec<Run>,
    /// The process's CPU per request in each round (server and client), synced and buffered.
    pub(crate) cpu: Vec<(Duration, Duration)>,
}

impl PerCall {
    /// The rounds' runs on one paywall.
    fn runs(&self, buffered: bool) -> &[Run] {
        if buffered {
            &self.buffered
        } else {
            &self.synced
        }
    }

    /// Each round's paid rate over its reads.
    pub(crate) fn ratios(&self, buffered: bool) -> Vec<f64> {
        self.runs(buffered)
            .iter()
            .zip(&self.reads)
            .map(|(run, reads)| run.rps() / reads)
            .collect()
    }

    pub(crate) fn median_ratio(&self, buffered: bool) -> f64 {
        median(self.ratios(buffered))
    }

    /// Every round's requests on one paywall, as one run (for the percentiles).
    pub(crate) fn merged(&self, buffered: bool) -> Run {
        let mut all = Run::default();
        for run in self.runs(buffered) {
            all.merge(Run {
                seconds: run.seconds,
                latencies: run.latencies.clone(),
                ok: run.ok,
            });
        }
        all
    }
}

/// `rounds` rounds over `synced` and `buffered` (the signed requests of each paywall, split evenly): the
/// chain reads of every one of `ids`, then a share of each paywall's requests, `clients` at a time.
pub(crate) async fn run(
    reader: &actp_client::Kernel,
    ids: &[B256],
    (web, web_buffered): (&Target, &Target),
    (mut synced, mut buffered): (Vec<Headers>, Vec<Headers>),
    rounds: usize,
    clients: usize,
) -> PerCall {
    // A mark for a profiler to attach at.
    println!("per call: {rounds} rounds");
    let share = synced.len().min(buffered.len()) / rounds.max(1);
    let mut out = PerCall {
        reads: Vec::new(),
        synced: Vec::new(),
        buffered: Vec::new(),
        cpu: Vec::new(),
    };
    let per_request = |cpu: Duration| cpu / u32::try_from(share.max(1)).unwrap_or(1);
    for _ in 0..rounds {
        let reads = read_rate(reader, ids, clients).await;
        let these: Vec<_> = synced.drain(..share).collect();
        let cpu = cpu_time();
        let on_synced = drive(web, "/paid", lanes(these, clients)).await;
        let synced_cpu = per_request(cpu_time().saturating_sub(cpu));
        assert_eq!(on_synced.ok, share, "every paid request must be served");
        let these: Vec<_> = buffered.drain(..share).collect();
        let cpu = cpu_time();
        let on_buffered = drive(web_buffered, "/paid", lanes(these, clients)).await;
        out.cpu
            .push((synced_cpu, per_request(cpu_time().saturating_sub(cpu))));
        assert_eq!(on_buffered.ok, share, "every paid request must be served");
        out.reads.push(reads);
        out.synced.push(on_synced);
        out.buffered.push(on_buffered);
    }
    out
}

/// `getTransaction` of each of `ids`, `clients` at a time: reads per second.
pub(crate) async fn read_rate(reader: &actp_client::Kernel, ids: &[B256], clients: usize) -> f64 {
    let t = Instant::now();
    let reads: Vec<_> = stream::iter(ids.iter().copied())
        .map(|id| {
            let reader = reader.clone();
            async move { reader.get(id).await.unwrap() }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    reads.len() as f64 / t.elapsed().as_secs_f64()
}

/// The disk's own sync: `n` times, 900 bytes written in place into a file of the journal's size in `dir`,
/// then `fdatasync` (what one synced commit of a session call costs the disk): one run of `n` syncs.
pub(crate) fn disk_syncs(dir: &std::path::Path, n: usize) -> Run {
    let path = dir.join("disk-sync-floor");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&vec![0u8; 1 << 20]).unwrap();
    file.sync_all().unwrap();
    let record = [0x5au8; 900];
    let t = Instant::now();
    let latencies: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            file.write_all_at(&record, (i as u64 * 900) % ((1 << 20) - 900))
                .unwrap();
            file.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    let seconds = t.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(path);
    Run {
        seconds,
        latencies,
        ok: n,
    }
}
