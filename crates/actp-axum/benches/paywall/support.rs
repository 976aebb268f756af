//! The paywall benchmark's tools: load drivers (closed and open loop), lanes, CPU time, timing, funding.

use std::time::{Duration, Instant};

use actp_client::Kernel;
use actp_core::{Amount, B256, ids::service_hash, model::CreateParams};
use futures::{StreamExt, stream};

pub(crate) const BODY: &str = r#"{"prompt":"summarise the ACTP lifecycle in one line"}"#;

pub(crate) fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
pub(crate) struct Run {
    pub(crate) seconds: f64,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) ok: usize,
}

/// The middle value (the upper one of an even count).
pub(crate) fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

impl Run {
    /// Adds another run's requests, as if run back to back.
    pub(crate) fn merge(&mut self, other: Run) {
        self.seconds += other.seconds;
        self.ok += other.ok;
        self.latencies.extend(other.latencies);
    }

    pub(crate) fn rps(&self) -> f64 {
        self.ok as f64 / self.seconds
    }

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l[((l.len() as f64 - 1.0) * p).round() as usize]
    }
}

/// The headers of one request.
pub(crate) type Headers = Vec<(&'static str, String)>;

/// Runs `lanes` concurrently, the requests of each lane one after the other (a client, or a session's calls in
/// order), each sent as soon as the one before it is answered (closed loop).
pub(crate) async fn drive(http: &reqwest::Client, url: String, lanes: Vec<Vec<Headers>>) -> Run {
    drive_at(http, url, lanes, None).await
}

/// Like [`drive`], but open-loop at `rate` requests per second in all (wrk2's way): request `k` is due at
/// `k / rate` seconds, lane `k % lanes`, and its latency runs from when it was due, so a slow answer that
/// delays the next request of its lane is counted against the paywall instead of hidden.
pub(crate) async fn drive_paced(
    http: &reqwest::Client,
    url: String,
    lanes: Vec<Vec<Headers>>,
    rate: f64,
) -> Run {
    drive_at(http, url, lanes, Some(rate)).await
}

async fn drive_at(
    http: &reqwest::Client,
    url: String,
    lanes: Vec<Vec<Headers>>,
    rate: Option<f64>,
) -> Run {
    let count = lanes.len();
    let start =
        tokio::time::Instant::now() + Duration::from_millis(if rate.is_some() { 50 } else { 0 });
    let results: Vec<Vec<(bool, Duration)>> =
        futures::future::join_all(lanes.into_iter().enumerate().map(|(lane_no, lane)| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let mut out = Vec::with_capacity(lane.len());
                for (i, headers) in lane.into_iter().enumerate() {
                    let due = match rate {
                        Some(rate) => {
                            let due = start
                                + Duration::from_secs_f64((i * count + lane_no) as f64 / rate);
                            tokio::time::sleep_until(due).await;
                            due
                        }
                        None => tokio::time::Instant::now(),
                    };
                    let mut req = http.post(&url).body(BODY);
                    for (name, value) in headers {
                        req = req.header(name, value);
                    }
                    let response = req.send().await.unwrap();
                    let ok = response.status().is_success();
                    let _ = response.bytes().await.unwrap();
                    out.push((ok, due.elapsed()));
                }
                out
            }
        }))
        .await;
    let seconds = start.elapsed().as_secs_f64();
    let results: Vec<(bool, Duration)> = results.into_iter().flatten().collect();
    Run {
        seconds,
        ok: results.iter().filter(|(ok, _)| *ok).count(),
        latencies: results.into_iter().map(|(_, l)| l).collect(),
    }
}

/// `requests` dealt round-robin into `clients` lanes.
pub(crate) fn lanes(requests: Vec<Headers>, clients: usize) -> Vec<Vec<Headers>> {
    let mut lanes = vec![Vec::new(); clients];
    for (i, r) in requests.into_iter().enumerate() {
        lanes[i % clients].push(r);
    }
    lanes
}

/// CPU time this process has used (user + system), from `/proc/self/stat` (clock ticks of 10 ms).
pub(crate) fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Average time of `f` over `n` runs.
pub(crate) async fn time_each<F, Fut>(n: u32, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let t = Instant::now();
    for _ in 0..n {
        f().await;
    }
    t.elapsed() / n
}

pub(crate) async fn fund(consumer: &Kernel, provider: actp_core::Address, n: usize) -> Vec<B256> {
    consumer
        .approve(Amount::from_base_units(100_000 * n as u128).to_u256())
        .await
        .unwrap();
    let now = consumer.chain_time().await.unwrap();
    stream::iter(0..n)
        .map(|_| {
            let consumer = consumer.clone();
            async move {
                consumer
                    .create_and_fund(&CreateParams::new(
                        provider,
                        Amount::from_base_units(100_000).to_u256(),
                        now + 86_400,
                        3_600,
                        service_hash("summarise"),
                    ))
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(64)
        .collect()
        .await
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}
