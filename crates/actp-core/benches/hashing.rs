//! Content-hash throughput of a 64 MiB deliverable through the streaming `ContentHasher` (64 KiB chunks, as
//! a file or a response body arrives), side by side with one plain keccak256 over the same bytes, and with
//! OpenSSL's SHA3-256 in the same run (`openssl speed`: the same keccak-f1600 permutation and rate, the
//! machine's reference). Run with `make bench`; prints MiB/s for each and the ratios.
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
    // Side by side on a shared machine: three turns each, alternating, and the best turn of each.
    let mut openssl: Option<f64> = None;
    let mut ours = streaming;
    for _ in 0..3 {
        let (turn, _) = best(|| {
            let mut h = ContentHasher::new();
            for chunk in data.chunks(CHUNK) {
                h.update(chunk);
            }
            h.finalize().0
        });
        ours = ours.min(turn);
        if let Some(r) = openssl_sha3_mib_s() {
            openssl = Some(openssl.map_or(r, |best: f64| best.max(r)));
        }
    }
    let streaming = ours;
    match openssl {
        Some(reference) => println!(
            "  OpenSSL SHA3-256         {reference:8.1} MiB/s (64 KiB blocks; best of three 1 s turns)\n  ContentHasher            {:8.1} MiB/s (best of the turns alternating with OpenSSL's)\n  ContentHasher / OpenSSL  {:8.3} (throughput; target at least 0.9)",
            rate(streaming),
            rate(streaming) / reference
        ),
        None => println!("  OpenSSL SHA3-256         skipped: `openssl speed` is not available"),
    }
    let json = format!(
        "{{\"bytes\":{SIZE},\"chunk\":{CHUNK},\"plain_mib_s\":{:.1},\"streaming_mib_s\":{:.1},\"time_ratio\":{ratio:.3},\"openssl_sha3_mib_s\":{},\"streaming_over_openssl\":{}}}\n",
        rate(plain),
        rate(streaming),
        openssl.map_or("null".into(), |r| format!("{r:.1}")),
        openssl.map_or("null".into(), |r| format!("{:.3}", rate(streaming) / r)),
    );
    std::fs::create_dir_all("../../target/bench").ok();
    std::fs::write("../../target/bench/hashing.json", json).ok();
}

/// OpenSSL's SHA3-256 over 64 KiB blocks for 1 s, in MiB/s (`openssl speed -mr` prints bytes per second).
fn openssl_sha3_mib_s() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args([
            "speed", "-evp", "sha3-256", "-bytes", "65536", "-seconds", "1", "-mr",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().find(|l| l.starts_with("+F:"))?;
    let bytes_per_s: f64 = line.rsplit(':').next()?.trim().parse().ok()?;
    Some(bytes_per_s / (1024.0 * 1024.0))
}
