//! The paywall benchmark's tools: load drivers (closed and open loop), lanes, CPU time, timing, funding.

use std::time::Duration;

use actp_client::{Kernel, OpenSession};
use actp_core::{Amount, B256, U256, ids::service_hash, model::CreateParams};
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

/// `values` with `decimals` decimals, separated by commas.
pub(crate) fn joined(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
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

/// Where requests go: the server over HTTP on loopback, or the same router called in-process (the paywall and
/// the handler alone, without HTTP on either side).
#[derive(Clone)]
pub(crate) enum Target {
    Http(reqwest::Client, String),
    Service(axum::Router),
}

impl Target {
    /// `POST path` with [`BODY`] and `headers`; whether the answer was a success (its body read in full).
    async fn post(&self, path: &str, headers: Headers) -> bool {
        match self {
            Target::Http(http, url) => {
                let mut req = http.post(format!("{url}{path}")).body(BODY);
                for (name, value) in headers {
                    req = req.header(name, value);
                }
                let response = req.send().await.unwrap();
                let ok = response.status().is_success();
                let _ = response.bytes().await.unwrap();
                ok
            }
            Target::Service(router) => {
                use http_body_util::BodyExt;
                use tower::ServiceExt;
                let mut req = axum::http::Request::post(path);
                for (name, value) in headers {
                    req = req.header(name, value);
                }
                let req = req.body(axum::body::Body::from(BODY)).unwrap();
                let response = router.clone().oneshot(req).await.unwrap();
                let ok = response.status().is_success();
                let _ = response.into_body().collect().await.unwrap();
                ok
            }
        }
    }
}

/// One request: its path and headers.
pub(crate) type Call = (&'static str, Headers);

/// Runs `lanes` concurrently, the requests of each lane one after the other (a client, or a session's calls in
/// order), each sent as soon as the one before it is answered (closed loop).
pub(crate) async fn drive(target: &Target, path: &'static str, lanes: Vec<Vec<Headers>>) -> Run {
    let lanes = lanes
        .into_iter()
        .map(|lane| lane.into_iter().map(|h| (path, h)).collect())
        .collect();
    drive_at(target, lanes, None)
        .await
        .remove(path)
        .unwrap_or_default()
}

/// Open loop at `rate` requests per second in all (wrk2's way): request `k` is due at `k / rate` seconds, lane
/// `k % lanes`, and its latency runs from when it was due, so a slow answer that delays the next request of
/// its lane is counted against the paywall instead of hidden. The results are split by path: lanes that mix
/// paths compare them under exactly the same conditions.
pub(crate) async fn drive_paced(
    target: &Target,
    lanes: Vec<Vec<Call>>,
    rate: f64,
) -> std::collections::HashMap<&'static str, Run> {
    drive_at(target, lanes, Some(rate)).await
}

async fn drive_at(
    target: &Target,
    lanes: Vec<Vec<Call>>,
    rate: Option<f64>,
) -> std::collections::HashMap<&'static str, Run> {
    let count = lanes.len();
    let start =
        tokio::time::Instant::now() + Duration::from_millis(if rate.is_some() { 50 } else { 0 });
    let results: Vec<Vec<(&'static str, bool, Duration)>> =
        futures::future::join_all(lanes.into_iter().enumerate().map(
            |(lane_no, lane)| async move {
                let mut out = Vec::with_capacity(lane.len());
                for (i, (path, headers)) in lane.into_iter().enumerate() {
                    let due = match rate {
                        Some(rate) => {
                            let due = start
                                + Duration::from_secs_f64((i * count + lane_no) as f64 / rate);
                            tokio::time::sleep_until(due).await;
                            due
                        }
                        None => tokio::time::Instant::now(),
                    };
                    let ok = target.post(path, headers).await;
                    out.push((path, ok, due.elapsed()));
                }
                out
            },
        ))
        .await;
    let seconds = start.elapsed().as_secs_f64();
    let mut runs = std::collections::HashMap::<&'static str, Run>::new();
    for (path, ok, latency) in results.into_iter().flatten() {
        let run = runs.entry(path).or_default();
        run.seconds = seconds;
        run.ok += usize::from(ok);
        run.latencies.push(latency);
    }
    runs
}

/// `requests` dealt round-robin into `clients` lanes.
pub(crate) fn lanes(requests: Vec<Headers>, clients: usize) -> Vec<Vec<Headers>> {
    let mut lanes = vec![Vec::new(); clients];
    for (i, r) in requests.into_iter().enumerate() {
        lanes[i % clients].push(r);
    }
    lanes
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

/// Opens `n` sessions of `consumer` with `provider` (service `session`), each with `deposit`, approved first.
pub(crate) async fn open_sessions(
    consumer: &Kernel,
    provider: actp_core::Address,
    deposit: U256,
    n: usize,
) -> Vec<B256> {
    consumer.approve(deposit * U256::from(n)).await.unwrap();
    let now = consumer.chain_time().await.unwrap();
    stream::iter(0..n)
        .map(|_| {
            let consumer = consumer.clone();
            async move {
                consumer
                    .open_session(&OpenSession {
                        provider,
                        deposit,
                        deadline: now + 86_400,
                        dispute_window: 3_600,
                        service_hash: service_hash("session"),
                        grace: 600,
                    })
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(n.max(1))
        .collect()
        .await
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Latency of a paid run beside an unpaid one, in milliseconds.
pub(crate) struct Comparison {
    pub(crate) unpaid: (f64, f64),
    pub(crate) paid: (f64, f64),
}

impl Comparison {
    pub(crate) fn of(unpaid: &Run, paid: &Run) -> Comparison {
        let p = |run: &Run| (ms(run.percentile(0.5)), ms(run.percentile(0.99)));
        Comparison {
            unpaid: p(unpaid),
            paid: p(paid),
        }
    }

    /// What paying added at p50 and p99 (never below zero).
    pub(crate) fn added(&self) -> (f64, f64) {
        (
            (self.paid.0 - self.unpaid.0).max(0.0),
            (self.paid.1 - self.unpaid.1).max(0.0),
        )
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        let (p50, p99) = self.added();
        serde_json::json!({
            "unpaid_p50_ms": self.unpaid.0,
            "unpaid_p99_ms": self.unpaid.1,
            "session_p50_ms": self.paid.0,
            "session_p99_ms": self.paid.1,
            "added_p50_ms": p50,
            "added_p99_ms": p99,
        })
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (p50, p99) = self.added();
        write!(
            f,
            "unpaid p50 {:.2} ms, p99 {:.2} ms; from a session p50 {:.2} ms, p99 {:.2} ms; added p50 {p50:.2} ms, p99 {p99:.2} ms",
            self.unpaid.0, self.unpaid.1, self.paid.0, self.paid.1
        )
    }
}
