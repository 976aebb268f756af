//! Content-hash throughput of a 64 MiB deliverable through the streaming `ContentHasher` (64 KiB chunks, as
//! a file or a response body arrives), side by side with one plain keccak256 over the same bytes.
//! Run with `make bench`; prints MiB/s for both and their ratio (close to 1 means streaming costs nothing).
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use actp_core::proof::{ContentHasher, content_hash};

const SIZE: usize = 64 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
const ROUNDS: usize = 5;

fn best(mut f: impl FnMut() -> [u8; 32]) -> (Duration, [u8; 32]) {
    let mut fastest = Duration::MAX;
    let mut out = [0u8; 32];
    for _ in 0..ROUNDS {
        let t = Instant::now();
        out = std::hint::black_box(f());
        fastest = fastest.min(t.elapsed());
    }
    (fastest, out)
}

fn main() {
    let data: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (plain, a) = best(|| content_hash(std::hint::black_box(&data)).0);
    let (streaming, b) = best(|| {
        let mut h = ContentHasher::new();
        for chunk in data.chunks(CHUNK) {
            h.update(chunk);
        }
        h.finalize().0
    });
    assert_eq!(a, b, "both paths give the same hash");
    let mib = SIZE as f64 / (1024.0 * 1024.0);
    let rate = |d: Duration| mib / d.as_secs_f64();
    let ratio = streaming.as_secs_f64() / plain.as_secs_f64();
    println!("content hash of 64 MiB (best of {ROUNDS}):");
    println!(
        "  plain keccak256 loop     {:8.1} MiB/s ({:.1} ms)",
        rate(plain),
        plain.as_secs_f64() * 1e3
    );
    println!(
        "  streaming ContentHasher  {:8.1} MiB/s ({:.1} ms)",
        rate(streaming),
        streaming.as_secs_f64() * 1e3
    );
    println!("  ratio streaming/plain    {ratio:8.3} (time; 1.0 = no overhead)");
    let json = format!(
        "{{\"bytes\":{SIZE},\"chunk\":{CHUNK},\"plain_mib_s\":{:.1},\"streaming_mib_s\":{:.1},\"time_ratio\":{ratio:.3}}}\n",
        rate(plain),
        rate(streaming)
    );
    std::fs::create_dir_all("../../target/bench").ok();
    std::fs::write("../../target/bench/hashing.json", json).ok();
}
