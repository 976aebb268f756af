//! The paywall's cost per request. On a devnet with 2,000 pre-funded transactions, many concurrent clients
//! drive one handler, side by side in one run: unpaid; paid from sessions (one session per client, a voucher
//! per request), on a paywall whose commits are synced to disk before a response leaves (the default) and on
//! one whose commits are buffered by the operating system (`Durability::Buffered`); and paid per call (local
//! claims, one paid request per transaction).
//!
//! For each durability it reports the session/unpaid throughput (median of closed-loop rounds); the latency
//! sessions add at p50 and p99 (closed loop, where it is mostly queueing; open loop at 1,000 session calls/s
//! and at half the sessions' rate, each interleaved with as many unpaid calls; one client alone); and the CPU
//! per session call as a multiple of the crypto floor (one signature recovery, one signature, and the hashing
//! one call needs, timed in the same run in CPU time, as the paywall's cost is read), for the whole process
//! over HTTP (server and client) and, on the synced paywall, for the paywall alone, its router called in
//! process, against the floor timed after each of those rounds; beside them, the disk's own sync.
//! Per call: the rate against the bare chain-read rate (median of rounds, each reading then paying on both
//! paywalls), and how long the outbox takes to get every delivery mined.
//!
//! `make bench` runs it. The setup changes with `ACTP_BENCH_TXS`, `ACTP_BENCH_CLIENTS`, `ACTP_BENCH_OUTBOX`
//! (deliveries in flight), `ACTP_BENCH_SESSION_CALLS` (per session in the closed-loop runs),
//! `ACTP_BENCH_ROUNDS` (closed-loop rounds, unpaid and from sessions in turn; default 5), `ACTP_BENCH_RATE`
//! and `ACTP_BENCH_PACED` (the open-loop rate, and calls per session in each open-loop run),
//! `ACTP_BENCH_DIRECT` (calls per session in process), `ACTP_BENCH_PER_CALL_ROUNDS` (default 5),
//! `ACTP_BENCH_DISK_SYNCS` (default 2,000) and `ACTP_BENCH_BLOCK_TIME` (seconds; default 0.5, 0
//! mines per transaction). The figures go to stdout and `target/bench/paywall.json`. Everything shares the
//! machine (anvil, server, clients), so read the ratios, not the absolute numbers.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::time::{Duration, Instant};

use actp_axum::{Durability, Paywall, Route};
use actp_client::{Devnet, DevnetOptions};
use actp_core::{
    Amount, B256, U256,
    authorization::{AuthorizationHeader, RequestAuthorization},
    proof::content_hash,
};
use axum::{Router, routing::post};

mod cpu;
mod floor;
mod percall;
mod sessions;
mod support;

use floor::Floor;
use sessions::Sizes;
use support::{BODY, Headers, Target, drive, env, fund, joined, lanes, median, ms, open_sessions};

/// The allocator the `actp` binary (and so `actp gateway`) uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn handler(body: String) -> String {
    format!("{{\"result\":\"{} bytes summarised\"}}", body.len())
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
    let first_block = consumer.block_number().await.unwrap();
    // Three sets: one paid while the outbox waits, one while it sends, one on the paywall whose commits are
    // buffered (its outbox waits).
    let mut ids = fund(&consumer, provider, 3 * n).await;
    let buffered_ids = ids.split_off(2 * n);
    let deferred_ids = ids.split_off(n);
    println!(
        "funded {} transactions in {:.1}s",
        3 * n,
        t.elapsed().as_secs_f64()
    );
    let domain = consumer.domain();
    let requester = devnet.signer(2);
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 280;
    let authorize = |id: &B256| {
        let request =
            RequestAuthorization::new(*id, "POST", "/paid", content_hash(BODY.as_bytes()), expires);
        let signature =
            futures::executor::block_on(requester.sign_typed(&request, &domain)).unwrap();
        let auth = AuthorizationHeader::from_signature(&request, signature);
        vec![
            ("X-AGIRAILS-TX-ID", id.to_string()),
            ("X-AGIRAILS-AUTHORIZATION", auth.to_string()),
        ]
    };
    let paid_requests: Vec<Headers> = ids.iter().map(authorize).collect();
    let deferred_requests: Vec<Headers> = deferred_ids.iter().map(authorize).collect();
    let buffered_requests: Vec<Headers> = buffered_ids.iter().map(authorize).collect();

    // One session per client, each with a deposit for its share of the calls, and one more for the client
    // alone; each call's voucher raises the cumulative by the price (the calls of one session go in order).
    // Two such sets: one for a paywall whose commits are synced to disk before a response leaves (the
    // default), one for a paywall whose commits are buffered by the operating system.
    let price = Amount::from_base_units(100_000);
    let sizes = Sizes {
        // 1,500 calls per session by default: 9,600 calls per round over 5 rounds, each long enough (about
        // 0.2 s unpaid and 1 s from sessions here) that one hiccup of this shared machine does not decide it,
        // and enough of them that the median does not follow one either. (With 500, an unpaid round lasted
        // 70 ms, and the rounds' ratios spread from 0.17 to 0.30.)
        closed: env("ACTP_BENCH_SESSION_CALLS", 1_500),
        // 250 per session: 8,000 calls in each open-loop run, so that its p99 is not decided by a handful of
        // calls.
        paced: env("ACTP_BENCH_PACED", 250),
        // 150 per session: 4,800 calls in process, about 1,000 per round, whose CPU is read to the nanosecond.
        direct: env("ACTP_BENCH_DIRECT", 150),
        single: 300,
    };
    let deposit = price.to_u256() * U256::from(sizes.calls_per_deposit());
    let synced_sessions = open_sessions(&consumer, provider, deposit, clients + 1).await;
    let buffered_sessions = open_sessions(&consumer, provider, deposit, clients + 1).await;
    let synced_lanes = sessions::sign(&synced_sessions, sizes, &requester, &domain, price, expires);
    let buffered_lanes = sessions::sign(
        &buffered_sessions,
        Sizes { direct: 0, ..sizes },
        &requester,
        &domain,
        price,
        expires,
    );
    let session_requests = sizes.closed * clients;
    let paced_requests = sizes.paced * clients;

    let dir = tempfile::tempdir().unwrap();
    let paywall = Paywall::builder(provider_kernel.clone())
        .data_dir(dir.path().join("synced"))
        .route(
            Route::post("/paid")
                .flat(Amount::from_base_units(100_000))
                .service("summarise"),
        )
        .outbox_concurrency(env("ACTP_BENCH_OUTBOX", 128))
        // It learns the transactions funded above from the kernel's events, as a provider that was running
        // while they were funded would have: requests paying with them need no chain read.
        .follow_events_from(first_block)
        // Started below, after the run that pays per call while deliveries wait.
        .run_outbox(false)
        .build()
        .await
        .unwrap();
    // The same provider with its commits buffered, for the second set of sessions and the third set of
    // transactions.
    let buffered = Paywall::builder(provider_kernel)
        .data_dir(dir.path().join("buffered"))
        .durability(Durability::Buffered)
        .route(Route::post("/paid").flat(price).service("summarise"))
        .follow_events_from(first_block)
        .run_outbox(false)
        .build()
        .await
        .unwrap();
    let t = Instant::now();
    while paywall.funded_known() < 3 * n || buffered.funded_known() < 3 * n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "the paywalls learned {} funded transactions from events in {:.1}s",
        3 * n,
        t.elapsed().as_secs_f64()
    );
    let (web, in_process) = serve(&paywall, clients).await;
    let (web_buffered, _) = serve(&buffered, clients).await;

    // Warm up connections and code paths, then the runs back to back: from sessions (synced, then buffered,
    // each beside unpaid calls), per call.
    drive(&web, "/unpaid", lanes(vec![vec![]; 200], clients)).await;
    drive(&web_buffered, "/unpaid", lanes(vec![vec![]; 200], clients)).await;
    // Unpaid and from sessions in turn, several rounds: each figure is the median over the rounds, so that a
    // burst of noise on this shared machine moves one round, not the result. Then open loop at a fixed rate
    // and at half the rate the rounds reached, each beside as many unpaid calls: the latency the paywall adds
    // under load without the queueing of a saturated server (closed-loop latency is mostly that). Then the
    // same rounds in process, without HTTP (the paywall's own CPU per session call), and one client alone.
    let session_rounds = env("ACTP_BENCH_ROUNDS", 5).clamp(1, sizes.closed);
    let fixed_rate = env("ACTP_BENCH_RATE", 1_000) as f64;
    let floor = Floor::new(
        synced_sessions[0],
        price.to_u256(),
        deposit,
        &requester,
        devnet.signer(1),
        domain.clone(),
        handler(BODY.to_owned()).await,
        expires,
        consumer.chain_time().await.unwrap(),
    );
    let synced = sessions::run(
        &web,
        Some((&in_process, &floor)),
        &paywall,
        synced_lanes,
        session_rounds,
        fixed_rate,
    )
    .await;
    let buffered_runs = sessions::run(
        &web_buffered,
        None,
        &buffered,
        buffered_lanes,
        session_rounds,
        fixed_rate,
    )
    .await;
    // Per call, the outbox waiting: the paywall's own path (recovery, claim, two signatures, group commit; the
    // transaction was learned from events) without the chain also mining its deliveries, in rounds beside the
    // transaction read the paywall once made per request, alone, at the same concurrency.
    let reader = devnet.kernel(0).await.unwrap();
    let signed = (paywall.signatures(), buffered.signatures());
    let per_call = percall::run(
        &reader,
        &ids,
        (&web, &web_buffered),
        (deferred_requests, buffered_requests),
        env("ACTP_BENCH_PER_CALL_ROUNDS", 5).clamp(1, n),
        clients,
    )
    .await;
    let bindings_per_signature = (
        sessions::per_signature(signed.0, paywall.signatures()),
        sessions::per_signature(signed.1, buffered.signatures()),
    );
    let deferred = per_call.merged(false);
    let deferred_buffered = per_call.merged(true);
    let reads_per_second = median(per_call.reads.clone());
    let runner = paywall.clone();
    tokio::spawn(async move { runner.run_outbox().await });
    let t = Instant::now();
    while paywall.outbox_len().await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deferred_drain = t.elapsed();
    println!(
        "per call, outbox deferred: {} served in {:.1}s; their deliveries mined in {:.1}s",
        deferred.ok,
        deferred.seconds,
        deferred_drain.as_secs_f64()
    );
    // Per call, the outbox sending while requests arrive.
    let paid_start = Instant::now();
    let paid = drive(&web, "/paid", lanes(paid_requests, clients)).await;
    assert_eq!(paid.ok, n, "every paid request must be served");
    let load_end = Instant::now();
    println!(
        "paid run: {} served in {:.1}s; waiting for the outbox",
        paid.ok, paid.seconds
    );
    let mut last_report = Instant::now();
    while paywall.outbox_len().await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if last_report.elapsed() > Duration::from_secs(10) {
            println!(
                "  outbox: {} deliveries still queued",
                paywall.outbox_len().await.unwrap()
            );
            last_report = Instant::now();
        }
    }
    let drain_after_load = load_end.elapsed();
    let deliveries_total = paid_start.elapsed();
    assert_eq!(
        paywall.metrics().deliveries("delivered"),
        (n + deferred.ok) as u64
    );

    // The crypto floor of one session call, timed alone (see `floor`).
    let parts = floor.time(2_000).await;
    let floor = parts.total();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "\ncrypto floor per session call: {:.1} us (recover {:.1}, sign {:.1}, hashing {:.1})",
        us(floor),
        us(parts.recover),
        us(parts.sign),
        us(parts.hashing),
    );

    // The disk's own sync, alone: what every answer of the synced paywall waits for at least once.
    let syncs = percall::disk_syncs(dir.path(), env("ACTP_BENCH_DISK_SYNCS", 2_000));
    let sync_at = |p: f64| ms(syncs.percentile(p));
    println!(
        "the disk alone (900 bytes written in place, then fdatasync), {} times: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        syncs.ok,
        sync_at(0.5),
        sync_at(0.99),
        sync_at(0.999)
    );

    println!(
        "\nsessions, {session_requests} calls each way over {session_rounds} closed-loop rounds, {clients} concurrent clients"
    );
    let mut modes = serde_json::Map::new();
    for (name, runs) in [("synced", &synced), ("buffered", &buffered_runs)] {
        let closed = &runs.closed;
        let ratio = median(closed.ratios.clone());
        let cpu = median(closed.cpu.clone());
        let added = |p: f64| {
            ms(closed
                .session
                .percentile(p)
                .saturating_sub(closed.unpaid.percentile(p)))
        };
        println!("{name}:");
        println!(
            "  session/unpaid throughput {ratio:.3} (rounds {}): {:.0}/s against {:.0}/s; {} syncs; {:.1} receipts per signature",
            joined(&closed.ratios, 3),
            closed.session.rps(),
            closed.unpaid.rps(),
            runs.closed_syncs,
            runs.closed_receipts_per_signature,
        );
        println!(
            "  closed loop, added p50 {:.2} ms, p99 {:.2} ms (mostly queueing)",
            added(0.5),
            added(0.99)
        );
        println!(
            "  CPU per session call over HTTP (server and client, beyond an unpaid call): closed loop {:.1} us = {:.2}x the floor; at {fixed_rate:.0}/s each kind alone {:.1} us = {:.2}x",
            us(cpu),
            cpu.as_secs_f64() / floor.as_secs_f64(),
            us(runs.cpu_at_rate),
            runs.cpu_at_rate.as_secs_f64() / floor.as_secs_f64(),
        );
        let mut row = serde_json::json!({
            "session_ratio": ratio,
            "session_ratio_rounds": closed.ratios,
            "session_rps": closed.session.rps(),
            "unpaid_rps": closed.unpaid.rps(),
            "closed_loop_syncs": runs.closed_syncs,
            "closed_loop_receipts_per_signature": runs.closed_receipts_per_signature,
            "closed_loop_added_p50_ms": added(0.5),
            "closed_loop_added_p99_ms": added(0.99),
            "cpu_per_session_call_us": us(cpu),
            "floor_multiple": cpu.as_secs_f64() / floor.as_secs_f64(),
            "cpu_per_session_call_at_rate_us": us(runs.cpu_at_rate),
            "floor_multiple_at_rate": runs.cpu_at_rate.as_secs_f64() / floor.as_secs_f64(),
            "single_client": runs.single.to_json(),
            "open_loop": runs.paced.iter().map(|p| {
                let mut row = p.comparison.to_json();
                row["rate"] = serde_json::json!(p.rate);
                row["syncs"] = serde_json::json!(p.syncs);
                row["syncs_over_1ms"] = serde_json::json!(p.slow_syncs[0]);
                row["syncs_over_10ms"] = serde_json::json!(p.slow_syncs[1]);
                row["syncs_over_100ms"] = serde_json::json!(p.slow_syncs[2]);
                row
            }).collect::<Vec<_>>(),
        });
        if let Some(direct) = &runs.direct {
            let cpu = median(direct.cpu.clone());
            let multiples = direct.floor_multiples();
            let multiple = median(multiples.clone());
            println!(
                "  in process, without HTTP: the paywall's CPU per session call {:.1} us = {multiple:.2}x the floor timed beside each round (median; rounds {}; floor {:.1} us)",
                us(cpu),
                joined(&multiples, 2),
                us(median(direct.floors.clone())),
            );
            row["in_process_cpu_per_session_call_us"] = serde_json::json!(us(cpu));
            row["in_process_floor_multiple"] = serde_json::json!(multiple);
            row["in_process_floor_multiple_rounds"] = serde_json::json!(multiples);
            row["in_process_floor_us_rounds"] =
                serde_json::json!(direct.floors.iter().map(|f| us(*f)).collect::<Vec<_>>());
        }
        for p in &runs.paced {
            println!(
                "  open loop, {:.0} of each per second: {}; {} syncs for {paced_requests} session calls ({} over 1 ms, {} over 10 ms, {} over 100 ms)",
                p.rate, p.comparison, p.syncs, p.slow_syncs[0], p.slow_syncs[1], p.slow_syncs[2]
            );
        }
        println!(
            "  one client alone ({} calls): {}",
            sizes.single, runs.single
        );
        modes.insert(name.to_owned(), row);
    }

    let ratio = paid.rps() / deferred.rps().max(1.0);
    println!("\nper call, {n} requests, {clients} concurrent clients, local claims");
    println!("| run | req/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for (label, run) in [
        ("paid per call, outbox deferred", &deferred),
        (
            "paid per call, outbox deferred, buffered",
            &deferred_buffered,
        ),
        ("paid per call, outbox sending", &paid),
    ] {
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} |",
            run.rps(),
            ms(run.percentile(0.5)),
            ms(run.percentile(0.99))
        );
    }
    println!(
        "chain reads alone (getTransaction, same concurrency), each round: {}/s; per call with the outbox deferred / the round's reads, median of {} rounds: synced {:.2} ({}), buffered {:.2} ({}); with it sending / the median reads {:.2}",
        joined(&per_call.reads, 0),
        per_call.reads.len(),
        per_call.median_ratio(false),
        joined(&per_call.ratios(false), 2),
        per_call.median_ratio(true),
        joined(&per_call.ratios(true), 2),
        paid.rps() / reads_per_second,
    );
    let cpu = |pick: fn(&(Duration, Duration)) -> Duration| {
        us(median(per_call.cpu.iter().map(pick).collect()))
    };
    println!(
        "CPU per request paid per call, outbox deferred (process, server and client), median of the rounds: synced {:.0} us, buffered {:.0} us; request bindings per signature: synced {:.1}, buffered {:.1}",
        cpu(|c| c.0),
        cpu(|c| c.1),
        bindings_per_signature.0,
        bindings_per_signature.1,
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
        "crypto_floor_us": us(floor),
        "disk_sync_ms": { "p50": sync_at(0.5), "p99": sync_at(0.99), "p999": sync_at(0.999) },
        "sessions": modes,
        "paid_rps": paid.rps(),
        "paid_outbox_deferred_rps": deferred.rps(),
        "bindings_per_signature": { "synced": bindings_per_signature.0, "buffered": bindings_per_signature.1 },
        "paid_sending_over_deferred": ratio,
        "paid_outbox_deferred_over_reads": per_call.median_ratio(false),
        "paid_outbox_deferred_over_reads_rounds": per_call.ratios(false),
        "paid_outbox_deferred_buffered_rps": deferred_buffered.rps(),
        "paid_outbox_deferred_buffered_over_reads": per_call.median_ratio(true),
        "paid_outbox_deferred_buffered_over_reads_rounds": per_call.ratios(true),
        "chain_reads_per_second_rounds": per_call.reads,
        "deferred_deliveries_mined_s": deferred_drain.as_secs_f64(),
        "chain_reads_per_second": reads_per_second,
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

/// `paywall` behind its own HTTP server on loopback, with a client pool for `clients`; and its router called
/// in process.
async fn serve(paywall: &Paywall, clients: usize) -> (Target, Target) {
    let app = Router::new()
        .route("/paid", post(handler))
        .route("/unpaid", post(handler))
        .layer(paywall.layer());
    let in_process = Target::Service(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    (Target::Http(http, url), in_process)
}
