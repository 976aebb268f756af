//! The paywall's cost per request. On a devnet with 2,000 pre-funded transactions, many concurrent clients
//! drive one handler twice, side by side in one run: behind the paywall (local claims, one paid request per
//! transaction) and unpaid. Reports requests per second of each and their ratio, the latency the paywall adds
//! at p50 and p99, and how long the outbox takes to get every delivery mined.
//!
//! `make bench` runs it; `ACTP_BENCH_TXS`, `ACTP_BENCH_CLIENTS`, `ACTP_BENCH_OUTBOX` (deliveries in flight) and
//! `ACTP_BENCH_BLOCK_TIME` (seconds; default 0.5, 0 mines per transaction) change the setup. The figures go to stdout
//! and `target/bench/paywall.json`. Everything shares the machine (anvil, server, clients), so read the
//! ratio, not the absolute numbers.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::time::{Duration, Instant};

use actp_axum::{Paywall, Route};
use actp_client::{Devnet, DevnetOptions, Kernel};
use actp_core::{
    Amount, B256,
    authorization::{AuthorizationHeader, RequestAuthorization},
    ids::service_hash,
    model::CreateParams,
    proof::content_hash,
};
use axum::{Router, routing::post};
use futures::{StreamExt, stream};

const BODY: &str = r#"{"prompt":"summarise the ACTP lifecycle in one line"}"#;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn handler(body: String) -> String {
    format!("{{\"result\":\"{} bytes summarised\"}}", body.len())
}

struct Run {
    seconds: f64,
    latencies: Vec<Duration>,
    ok: usize,
}

impl Run {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.seconds
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l[((l.len() as f64 - 1.0) * p).round() as usize]
    }
}

async fn drive(
    http: &reqwest::Client,
    url: String,
    requests: Vec<Option<(String, String)>>,
    clients: usize,
) -> Run {
    let start = Instant::now();
    let results: Vec<(bool, Duration)> = stream::iter(requests)
        .map(|headers| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let t = Instant::now();
                let mut req = http.post(&url).body(BODY);
                if let Some((id, auth)) = headers {
                    req = req
                        .header("X-AGIRAILS-TX-ID", id)
                        .header("X-AGIRAILS-AUTHORIZATION", auth);
                }
                let response = req.send().await.unwrap();
                let ok = response.status().is_success();
                let _ = response.bytes().await.unwrap();
                (ok, t.elapsed())
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let seconds = start.elapsed().as_secs_f64();
    Run {
        seconds,
        ok: results.iter().filter(|(ok, _)| *ok).count(),
        latencies: results.into_iter().map(|(_, l)| l).collect(),
    }
}

async fn fund(consumer: &Kernel, provider: actp_core::Address, n: usize) -> Vec<B256> {
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

#[tokio::main]
async fn main() {
    if std::env::var("RUST_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let n = env("ACTP_BENCH_TXS", 2_000);
    let clients = env("ACTP_BENCH_CLIENTS", 32);
    let devnet = Devnet::start_with(DevnetOptions {
        funds: Amount::from_tokens(1_000_000),
        // A block every 0.5 s (a real chain's cadence, scaled down); `ACTP_BENCH_BLOCK_TIME=0` mines per
        // transaction.
        block_time: match std::env::var("ACTP_BENCH_BLOCK_TIME")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
        {
            Some(t) if t <= 0.0 => None,
            Some(t) => Some(t),
            None => Some(0.5),
        },
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let provider_kernel = devnet.kernel(1).await.unwrap();
    let consumer = devnet.kernel(2).await.unwrap();
    let provider = provider_kernel.signer_address().unwrap();

    let t = Instant::now();
    let ids = fund(&consumer, provider, n).await;
    println!(
        "funded {n} transactions in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let domain = consumer.domain();
    let requester = devnet.signer(2);
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 280;
    let paid_requests: Vec<Option<(String, String)>> = ids
        .iter()
        .map(|id| {
            let request = RequestAuthorization::new(
                *id,
                "POST",
                "/paid",
                content_hash(BODY.as_bytes()),
                expires,
            );
            let signature =
                futures::executor::block_on(requester.sign_typed(&request, &domain)).unwrap();
            let auth = AuthorizationHeader::from_signature(&request, signature);
            Some((id.to_string(), auth.to_string()))
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let paywall = Paywall::builder(provider_kernel)
        .data_dir(dir.path())
        .route(
            Route::post("/paid")
                .flat(Amount::from_base_units(100_000))
                .service("summarise"),
        )
        .outbox_concurrency(env("ACTP_BENCH_OUTBOX", 128))
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route("/paid", post(handler))
        .route("/unpaid", post(handler))
        .layer(paywall.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();

    // Warm up connections and code paths, then the two runs back to back.
    drive(&http, format!("{url}/unpaid"), vec![None; 200], clients).await;
    let unpaid = drive(&http, format!("{url}/unpaid"), vec![None; n], clients).await;
    let paid_start = Instant::now();
    let paid = drive(&http, format!("{url}/paid"), paid_requests, clients).await;
    assert_eq!(paid.ok, n, "every paid request must be served");
    let load_end = Instant::now();
    println!(
        "paid run: {} served in {:.1}s; waiting for the outbox",
        paid.ok, paid.seconds
    );
    let mut last_report = Instant::now();
    while paywall.outbox_len() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if last_report.elapsed() > Duration::from_secs(10) {
            println!("  outbox: {} deliveries still queued", paywall.outbox_len());
            last_report = Instant::now();
        }
    }
    let drain_after_load = load_end.elapsed();
    let deliveries_total = paid_start.elapsed();
    assert_eq!(paywall.metrics().deliveries("delivered"), n as u64);

    // The reference: the transaction read the paywall makes per request, alone, at the same concurrency.
    let reader = devnet.kernel(0).await.unwrap();
    let t = Instant::now();
    let reads: Vec<_> = stream::iter(ids.iter().copied())
        .map(|id| {
            let reader = reader.clone();
            async move { reader.get(id).await.unwrap() }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let reads_per_second = reads.len() as f64 / t.elapsed().as_secs_f64();

    let ratio = paid.rps() / unpaid.rps();
    let (p50_paid, p50_unpaid) = (paid.percentile(0.5), unpaid.percentile(0.5));
    let (p99_paid, p99_unpaid) = (paid.percentile(0.99), unpaid.percentile(0.99));
    println!("\npaywall, {n} requests each, {clients} concurrent clients, local claims");
    println!("| run | req/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| unpaid | {:.0} | {:.2} | {:.2} |",
        unpaid.rps(),
        ms(p50_unpaid),
        ms(p99_unpaid)
    );
    println!(
        "| paid | {:.0} | {:.2} | {:.2} |",
        paid.rps(),
        ms(p50_paid),
        ms(p99_paid)
    );
    println!("paid/unpaid throughput: {ratio:.3}");
    println!(
        "chain reads alone (getTransaction, same concurrency): {reads_per_second:.0}/s; paid/reads {:.2}",
        paid.rps() / reads_per_second
    );
    println!(
        "added latency: p50 {:.2} ms, p99 {:.2} ms",
        ms(p50_paid.saturating_sub(p50_unpaid)),
        ms(p99_paid.saturating_sub(p99_unpaid))
    );
    println!(
        "outbox: every delivery mined {:.1}s after the last response ({:.1}s after the first request; {} start + deliver transactions)",
        drain_after_load.as_secs_f64(),
        deliveries_total.as_secs_f64(),
        2 * n
    );
    let json = serde_json::json!({
        "requests": n,
        "clients": clients,
        "unpaid_rps": unpaid.rps(),
        "paid_rps": paid.rps(),
        "ratio": ratio,
        "chain_reads_per_second": reads_per_second,
        "p50_ms": {"unpaid": ms(p50_unpaid), "paid": ms(p50_paid)},
        "p99_ms": {"unpaid": ms(p99_unpaid), "paid": ms(p99_paid)},
        "outbox_drain_after_load_s": drain_after_load.as_secs_f64(),
        "outbox_all_mined_from_first_request_s": deliveries_total.as_secs_f64(),
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("paywall.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
}
