//! The paywall's cost per request. On a devnet with 2,000 pre-funded transactions, many concurrent clients
//! drive one handler three times, side by side in one run: unpaid; paid per call (local claims, one paid
//! request per transaction); and paid from sessions (one session per client, a voucher per request). Reports
//! requests per second of each and their ratio to unpaid; the latency the paywall adds at p50 and p99 (closed
//! loop, where it is mostly queueing; open loop at 1,000 session calls/s and at half the sessions' rate, each
//! interleaved with as many unpaid calls; one client alone); the per-call rate against the bare chain-read rate; how long the outbox takes to get every delivery
//! mined; and the CPU per session call as a multiple of the crypto floor (one signature recovery, one
//! signature, and the hashing one call needs, timed alone in the same run), both for the whole process over
//! HTTP (server and client) and for the paywall alone, its router called in process.
//!
//! `make bench` runs it. The setup changes with `ACTP_BENCH_TXS`, `ACTP_BENCH_CLIENTS`, `ACTP_BENCH_OUTBOX`
//! (deliveries in flight), `ACTP_BENCH_SESSION_CALLS` (per session in the closed-loop runs), `ACTP_BENCH_ROUNDS`
//! (closed-loop rounds, unpaid and from sessions in turn; default 3), `ACTP_BENCH_RATE` and
//! `ACTP_BENCH_PACED` (the open-loop rate, and calls per session in each open-loop run), `ACTP_BENCH_DIRECT`
//! (calls per session in process) and
//! `ACTP_BENCH_BLOCK_TIME` (seconds; default 0.5, 0 mines per transaction). The figures go to stdout and `target/bench/paywall.json`. Everything shares the machine (anvil, server,
//! clients), so read the ratio, not the absolute numbers.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::time::{Duration, Instant};

use actp_axum::{Paywall, Route};
use actp_client::{Devnet, DevnetOptions};
use actp_core::{
    Amount, B256, U256,
    authorization::{AuthorizationHeader, RequestAuthorization},
    proof::content_hash,
    session::{SessionReceipt, SessionVoucher, VoucherHeader},
};
use axum::{Router, routing::post};
use futures::{StreamExt, stream};

mod support;

use support::{
    Alternated, BODY, Call, Comparison, Headers, Target, alternate, drive, drive_paced, env, fund,
    lanes, median, ms, open_sessions, time_each,
};

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
    // Two sets: one paid while the outbox waits, one while it sends.
    let mut ids = fund(&consumer, provider, 2 * n).await;
    let deferred_ids = ids.split_off(n);
    println!(
        "funded {} transactions in {:.1}s",
        2 * n,
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

    // One session per client, each with a deposit for its share of the calls; each call's voucher raises the
    // cumulative by the price (the calls of one session go in order).
    let price = Amount::from_base_units(100_000);
    // 300 calls per session by default: 3,200 calls per round over 3 rounds, long enough (about a second) that
    // one hiccup of this shared machine does not decide a round.
    let per_lane = env("ACTP_BENCH_SESSION_CALLS", 300);
    // Then two open-loop runs of this many calls per session, then the in-process runs.
    let paced_per_lane = env("ACTP_BENCH_PACED", 100);
    let direct_per_lane = env("ACTP_BENCH_DIRECT", 60);
    // One more session, for the run with a single client; every deposit covers the longest lane.
    let single = 300;
    let deposit =
        price.to_u256() * U256::from((per_lane + 2 * paced_per_lane + direct_per_lane).max(single));
    let sessions = open_sessions(&consumer, provider, deposit, clients + 1).await;
    let now = consumer.chain_time().await.unwrap();
    let mut session_lanes: Vec<Vec<Headers>> = sessions
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (0..if i == clients {
                single
            } else {
                per_lane + 2 * paced_per_lane + direct_per_lane
            })
                .map(|k| {
                    let cumulative = price.to_u256() * U256::from(k + 1);
                    let voucher = SessionVoucher::for_request(
                        *id,
                        cumulative,
                        "POST",
                        "/paid",
                        content_hash(BODY.as_bytes()),
                        expires,
                    );
                    let signature = futures::executor::block_on(
                        requester.sign_hash(&voucher.signing_hash(&domain)),
                    )
                    .unwrap();
                    vec![
                        ("X-AGIRAILS-TX-ID", id.to_string()),
                        (
                            "X-AGIRAILS-VOUCHER",
                            VoucherHeader::from_signature(&voucher, signature).to_string(),
                        ),
                    ]
                })
                .collect()
        })
        .collect();
    let single_lane = session_lanes.pop().unwrap_or_default();
    let session_requests = per_lane * clients;
    // Each session's calls in order: the closed-loop runs', each paced run's, the in-process runs'.
    let mut paced_fixed_lanes = Vec::new();
    let mut paced_half_lanes = Vec::new();
    let mut direct_lanes = Vec::new();
    for lane in &mut session_lanes {
        let mut rest = lane.split_off(per_lane);
        let mut half = rest.split_off(paced_per_lane);
        direct_lanes.push(half.split_off(paced_per_lane));
        paced_half_lanes.push(half);
        paced_fixed_lanes.push(rest);
    }
    let paced_requests = paced_per_lane * clients;

    let dir = tempfile::tempdir().unwrap();
    let paywall = Paywall::builder(provider_kernel)
        .data_dir(dir.path())
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
    let t = Instant::now();
    while paywall.funded_known() < 2 * n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "the paywall learned {} funded transactions from events in {:.1}s",
        2 * n,
        t.elapsed().as_secs_f64()
    );
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
    let web = Target::Http(http, url);

    // Warm up connections and code paths, then the runs back to back: unpaid, from sessions, per call.
    drive(&web, "/unpaid", lanes(vec![vec![]; 200], clients)).await;
    // Unpaid and from sessions in turn, several rounds: each figure is the median over the rounds, so that a
    // burst of noise on this shared machine moves one round, not the result.
    let session_rounds = env("ACTP_BENCH_ROUNDS", 3).clamp(1, per_lane);
    let flushes_before = paywall.disk_flushes();
    let Alternated {
        unpaid,
        session,
        ratios: round_ratios,
        cpu: round_cpu,
    } = alternate(&web, session_lanes, session_rounds).await;
    let session_flushes = paywall.disk_flushes() - flushes_before;
    // Open loop at a fixed rate, then at half the rate the sessions reached above, each beside as many unpaid
    // calls: the latency the paywall adds under load without the queueing of a saturated server (closed-loop
    // latency is mostly that).
    let fixed_rate = env("ACTP_BENCH_RATE", 1_000) as f64;
    let half_rate = session.rps() / 2.0;
    let mut paced = Vec::new();
    for (rate, lanes_paid) in [
        (fixed_rate, paced_fixed_lanes),
        (half_rate, paced_half_lanes),
    ] {
        // Each lane alternates an unpaid call and a session call, so both meet the same moments of the
        // machine; each kind runs at `rate`.
        let mixed: Vec<Vec<Call>> = lanes_paid
            .into_iter()
            .map(|lane| {
                lane.into_iter()
                    .flat_map(|h| [("/unpaid", Vec::new()), ("/paid", h)])
                    .collect()
            })
            .collect();
        let syncs_before = paywall.disk_flushes();
        let mut runs = drive_paced(&web, mixed, 2.0 * rate).await;
        let syncs = paywall.disk_flushes() - syncs_before;
        let unpaid_paced = runs.remove("/unpaid").unwrap_or_default();
        let session_paced = runs.remove("/paid").unwrap_or_default();
        assert_eq!(session_paced.ok, paced_requests);
        paced.push((rate, unpaid_paced, session_paced, syncs));
    }
    // The same in process, without HTTP: the paywall's own CPU per session call.
    let direct = alternate(&in_process, direct_lanes, session_rounds).await;
    let direct_cpu_per_call = median(direct.cpu.clone());
    // One client alone: the latency the paywall adds to a request when nothing queues.
    let unpaid_single = drive(&web, "/unpaid", vec![vec![vec![]; single]]).await;
    let session_single = drive(&web, "/paid", vec![single_lane]).await;
    assert_eq!(session_single.ok, single);
    // Per call, the outbox waiting: the paywall's own path (recovery, claim, two signatures, group commit; the
    // transaction was learned from events) without the chain also mining its deliveries.
    let deferred = drive(&web, "/paid", lanes(deferred_requests, clients)).await;
    assert_eq!(deferred.ok, n, "every paid request must be served");
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
    assert_eq!(paywall.metrics().deliveries("delivered"), 2 * n as u64);

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

    // The crypto floor of one session call, timed alone: the voucher's recovery, the receipt's signature,
    // and the hashing (request body, response body, the voucher's and the receipt's EIP-712 hashes).
    let provider_signer = devnet.signer(1);
    let voucher_header: VoucherHeader =
        session_lanes_header(&sessions[0], &requester, &domain, expires).await;
    let rebuilt =
        voucher_header.voucher(sessions[0], "POST", "/paid", content_hash(BODY.as_bytes()));
    let answer = handler(BODY.to_owned()).await;
    let receipt = SessionReceipt::first(
        sessions[0],
        price.to_u256(),
        deposit - price.to_u256(),
        rebuilt.requestHash,
        content_hash(answer.as_bytes()),
    );
    let rounds = 2_000;
    let recover = time_each(rounds, || async {
        voucher_header
            .verify(&rebuilt, &domain, requester.address(), now, 300)
            .unwrap();
    })
    .await;
    let sign = time_each(rounds, || async {
        provider_signer
            .sign_hash(&receipt.hash(&domain))
            .await
            .unwrap();
    })
    .await;
    let hashing = time_each(rounds, || async {
        std::hint::black_box((
            content_hash(BODY.as_bytes()),
            content_hash(answer.as_bytes()),
            rebuilt.signing_hash(&domain),
            receipt.hash(&domain),
        ));
    })
    .await;
    let floor = recover + sign + hashing;
    let paywall_cpu_per_call = median(round_cpu.clone());
    let floor_multiple = paywall_cpu_per_call.as_secs_f64() / floor.as_secs_f64();
    let direct_multiple = direct_cpu_per_call.as_secs_f64() / floor.as_secs_f64();

    let ratio = paid.rps() / unpaid.rps();
    let session_ratio = median(round_ratios.clone());
    let (p50_session, p99_session) = (session.percentile(0.5), session.percentile(0.99));
    let (p50_paid, p50_unpaid) = (paid.percentile(0.5), unpaid.percentile(0.5));
    let (p99_paid, p99_unpaid) = (paid.percentile(0.99), unpaid.percentile(0.99));
    println!(
        "\npaywall, {n} requests per call ({session_requests} unpaid and from sessions), {clients} concurrent clients, local claims"
    );
    println!("| run | req/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| unpaid | {:.0} | {:.2} | {:.2} |",
        unpaid.rps(),
        ms(p50_unpaid),
        ms(p99_unpaid)
    );
    println!(
        "| paid from sessions | {:.0} | {:.2} | {:.2} |",
        session.rps(),
        ms(p50_session),
        ms(p99_session)
    );
    println!(
        "| paid per call, outbox deferred | {:.0} | {:.2} | {:.2} |",
        deferred.rps(),
        ms(deferred.percentile(0.5)),
        ms(deferred.percentile(0.99))
    );
    println!(
        "| paid per call, outbox sending | {:.0} | {:.2} | {:.2} |",
        paid.rps(),
        ms(p50_paid),
        ms(p99_paid)
    );
    println!(
        "session/unpaid throughput, median of {session_rounds} rounds: {session_ratio:.3} (rounds {}); {session_flushes} flushes for {session_requests} calls",
        round_ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "closed loop, added latency p50 {:.2} ms, p99 {:.2} ms",
        ms(p50_session.saturating_sub(p50_unpaid)),
        ms(p99_session.saturating_sub(p99_unpaid))
    );
    let single_client = Comparison::of(&unpaid_single, &session_single);
    println!("one client alone ({single} requests): {single_client}");
    println!(
        "crypto floor per session call: {:.1} us (recover {:.1}, sign {:.1}, hashing {:.1}); paywall CPU per call (median of {session_rounds} rounds) {:.1} us = {floor_multiple:.2}x the floor",
        floor.as_secs_f64() * 1e6,
        recover.as_secs_f64() * 1e6,
        sign.as_secs_f64() * 1e6,
        hashing.as_secs_f64() * 1e6,
        paywall_cpu_per_call.as_secs_f64() * 1e6,
    );
    println!(
        "in process, without HTTP (median of {session_rounds} rounds): the paywall's CPU per session call {:.1} us = {direct_multiple:.2}x the floor; session/unpaid throughput {:.3}",
        direct_cpu_per_call.as_secs_f64() * 1e6,
        median(direct.ratios.clone()),
    );
    let open_loop: Vec<(f64, Comparison)> = paced
        .iter()
        .map(|(rate, u, p, _)| (*rate, Comparison::of(u, p)))
        .collect();
    for ((rate, comparison), (.., syncs)) in open_loop.iter().zip(&paced) {
        println!(
            "open loop, {clients} clients alternating unpaid and session calls, {rate:.0} of each per second: {comparison}; {syncs} syncs for {paced_requests} session calls"
        );
    }
    println!("per-call paid/unpaid throughput: {ratio:.3}");
    println!(
        "chain reads alone (getTransaction, same concurrency): {reads_per_second:.0}/s; paid/reads {:.2}",
        paid.rps() / reads_per_second
    );
    println!(
        "per call with the outbox deferred / chain reads: {:.2}",
        deferred.rps() / reads_per_second
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
        "paid_outbox_deferred_rps": deferred.rps(),
        "paid_outbox_deferred_over_reads": deferred.rps() / reads_per_second,
        "deferred_deliveries_mined_s": deferred_drain.as_secs_f64(),
        "ratio": ratio,
        "session_rps": session.rps(),
        "session_ratio": session_ratio,
        "session_ratio_rounds": round_ratios,
        "session_flushes": session_flushes,
        "session_p50_ms": ms(p50_session),
        "session_p99_ms": ms(p99_session),
        "session_added_p50_ms": ms(p50_session.saturating_sub(p50_unpaid)),
        "session_added_p99_ms": ms(p99_session.saturating_sub(p99_unpaid)),
        "single_client_added_p50_ms": single_client.added().0,
        "single_client_added_p99_ms": single_client.added().1,
        "open_loop": open_loop.iter().map(|(rate, c)| {
            let mut row = c.to_json();
            row["rate"] = serde_json::json!(rate);
            row
        }).collect::<Vec<_>>(),
        "crypto_floor_us": floor.as_secs_f64() * 1e6,
        "paywall_cpu_per_session_call_us": paywall_cpu_per_call.as_secs_f64() * 1e6,
        "floor_multiple": floor_multiple,
        "in_process_cpu_per_session_call_us": direct_cpu_per_call.as_secs_f64() * 1e6,
        "in_process_floor_multiple": direct_multiple,
        "in_process_session_ratio": median(direct.ratios.clone()),
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

/// A voucher for the first call of session `id`, as the session run sends it.
async fn session_lanes_header(
    id: &B256,
    requester: &actp_client::Signer,
    domain: &alloy_sol_types::Eip712Domain,
    expires: u64,
) -> VoucherHeader {
    let voucher = SessionVoucher::for_request(
        *id,
        U256::from(100_000u64),
        "POST",
        "/paid",
        content_hash(BODY.as_bytes()),
        expires,
    );
    let signature = requester
        .sign_hash(&voucher.signing_hash(domain))
        .await
        .unwrap();
    VoucherHeader::from_signature(&voucher, signature)
}
