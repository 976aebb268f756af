//! The paywall on its two stores, side by side in one run: sled (one process, behind its journal), PostgreSQL
//! with one replica, and PostgreSQL with four replicas behind a round-robin HTTP balancer (in this process,
//! each with its own server, store handle and outbox). For each, with many concurrent clients: requests per
//! second and the latency the paywall adds at p50 and p99 to a request paid per call and to one paid from a
//! session, against an unpaid request through the same path (the balancer included). Then the latency of
//! spend-ledger reservations (`Ledger::reserve`, eight tasks on one agent's cap) on sled and on PostgreSQL.
//!
//! The PostgreSQL server is the repository's own (`make deps`), started for this run with its durable defaults
//! (fsync, synchronous commit), on the same two cores as everything else. `make bench` runs it; the setup
//! changes with `ACTP_FLEET_CALLS` (per-call requests per store; default 600), `ACTP_FLEET_CLIENTS` (default
//! 16) and `ACTP_FLEET_SESSION_CALLS` (calls per session; one session per client; default 100). Figures go to
//! stdout and `target/bench/fleet.json`. Read the ratios: the machine is shared.
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
    Address, Amount, U256,
    authorization::{AuthorizationHeader, RequestAuthorization},
    proof::content_hash,
    session::{SessionVoucher, VoucherHeader},
};
use actp_e2e::{
    balancer::Balancer,
    postgres::{Durability, Postgres},
};
use actp_pay::{Ledger, SpendPolicy, ledger::Intent};
use actp_store::StoreUrl;
use axum::{Router, routing::post};

#[allow(dead_code)]
#[path = "../../crates/actp-axum/benches/paywall/support.rs"]
mod support;

use support::{BODY, Comparison, Headers, Run, Target, drive, env, fund, lanes, ms, open_sessions};

async fn handler(body: String) -> String {
    body
}

/// Where a configuration keeps its state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    Sled,
    Postgres { replicas: usize },
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Sled => f.write_str("sled"),
            Store::Postgres { replicas: 1 } => f.write_str("PostgreSQL, 1 replica"),
            Store::Postgres { replicas } => write!(f, "PostgreSQL, {replicas} replicas"),
        }
    }
}

/// What one configuration measured.
struct Measured {
    store: Store,
    unpaid: Run,
    per_call: Run,
    session: Run,
}

/// Per-call authorizations for `ids`, and vouchers for one session per lane (`calls` each, in order).
struct Requests {
    per_call: Vec<Headers>,
    sessions: Vec<Vec<Headers>>,
}

async fn requests(
    devnet: &Devnet,
    consumer: &Kernel,
    provider: Address,
    calls: usize,
    clients: usize,
    session_calls: usize,
) -> Requests {
    let ids = fund(consumer, provider, calls).await;
    let price = Amount::from_base_units(100_000);
    let deposit = price.to_u256() * U256::from(session_calls);
    let sessions = open_sessions(consumer, provider, deposit, clients).await;
    let domain = consumer.domain();
    let requester = devnet.signer(2);
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3_000;
    let body_hash = content_hash(BODY.as_bytes());
    let mut per_call = Vec::new();
    for id in &ids {
        let request = RequestAuthorization::new(*id, "POST", "/paid", body_hash, expires);
        let signature = requester.sign_typed(&request, &domain).await.unwrap();
        per_call.push(vec![
            ("X-AGIRAILS-TX-ID", id.to_string()),
            (
                "X-AGIRAILS-AUTHORIZATION",
                AuthorizationHeader::from_signature(&request, signature).to_string(),
            ),
        ]);
    }
    let mut lanes = Vec::new();
    for id in &sessions {
        let mut lane = Vec::new();
        for k in 0..session_calls {
            let cumulative = price.to_u256() * U256::from(k + 1);
            let voucher =
                SessionVoucher::for_request(*id, cumulative, "POST", "/paid", body_hash, expires);
            let signature = requester
                .sign_hash(&voucher.signing_hash(&domain))
                .await
                .unwrap();
            lane.push(vec![
                ("X-AGIRAILS-TX-ID", id.to_string()),
                (
                    "X-AGIRAILS-VOUCHER",
                    VoucherHeader::from_signature(&voucher, signature).to_string(),
                ),
            ]);
        }
        lanes.push(lane);
    }
    Requests {
        per_call,
        sessions: lanes,
    }
}

/// Starts the configuration's paywalls, each behind its own server (and the balancer for several), drives
/// unpaid, per-call and session requests through them, and waits for their outboxes to drain.
async fn measure(
    store: Store,
    devnet: &Devnet,
    database: Option<&str>,
    from_block: u64,
    requests: Requests,
    clients: usize,
) -> Measured {
    let replicas = match store {
        Store::Sled => 1,
        Store::Postgres { replicas } => replicas,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut paywalls = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..replicas {
        let builder = Paywall::builder(devnet.kernel(1).await.unwrap());
        let builder = match database {
            None => builder.data_dir(dir.path()),
            Some(url) => builder.shared_store(url),
        };
        let paywall = builder
            .route(
                Route::post("/paid")
                    .flat(Amount::from_base_units(100_000))
                    .service("summarise"),
            )
            .follow_events_from(from_block)
            // The requests are signed up front for all three stores, so they must stay valid for the run.
            .max_authorization_validity(Duration::from_secs(3_600))
            .build()
            .await
            .unwrap();
        let app = Router::new()
            .route("/paid", post(handler))
            .route("/unpaid", post(handler))
            .layer(paywall.layer());
        urls.push(actp_e2e::serve(app).await);
        paywalls.push(paywall);
    }
    // Every replica knows the funded transactions from the kernel's events before the runs.
    for paywall in &paywalls {
        while paywall.funded_known() < requests.per_call.len() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let balancer;
    let url = if replicas == 1 {
        urls[0].clone()
    } else {
        balancer = Balancer::start(urls).await;
        balancer.url().to_owned()
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let target = Target::Http(http, url);
    let n = requests.per_call.len();
    drive(&target, "/unpaid", lanes(vec![vec![]; 200], clients)).await;
    let unpaid = drive(&target, "/unpaid", lanes(vec![vec![]; n], clients)).await;
    let per_call = drive(&target, "/paid", lanes(requests.per_call, clients)).await;
    assert_eq!(per_call.ok, n, "{store}: every per-call request is served");
    let session_calls: usize = requests.sessions.iter().map(Vec::len).sum();
    let session = drive(&target, "/paid", requests.sessions).await;
    assert_eq!(
        session.ok, session_calls,
        "{store}: every session call is served"
    );
    // The deliveries go on chain before the next configuration starts, so it does not pay for them.
    let t = Instant::now();
    while paywalls[0].outbox_len().await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{store}: the outbox was sent {:.1}s after the runs",
        t.elapsed().as_secs_f64()
    );
    Measured {
        store,
        unpaid,
        per_call,
        session,
    }
}

/// Latencies of `tasks` x `each` reservations on one agent of `ledger`, all under one daily cap.
async fn reservations(ledger: &Ledger, agent: Address, tasks: usize, each: usize) -> Run {
    ledger
        .set_policy(
            agent,
            &SpendPolicy {
                daily: Some(Amount::from_tokens(1_000_000)),
                ..SpendPolicy::default()
            },
        )
        .await
        .unwrap();
    let now = actp_pay::ledger::unix_now();
    let t = Instant::now();
    let runs = futures::future::join_all((0..tasks).map(|task| async move {
        let mut latencies = Vec::with_capacity(each);
        for i in 0..each {
            let intent = Intent {
                key: format!("bench-{task}-{i}"),
                agent,
                provider: Address::repeat_byte(0x11),
                route: "POST /paid".into(),
                url: "http://127.0.0.1/paid".into(),
                service: "summarise".into(),
                amount: Amount::from_base_units(100_000),
                fee: Amount::from_base_units(1_000),
                block: 1,
                now,
                session: None,
            };
            let started = Instant::now();
            ledger.reserve(intent).await.unwrap().unwrap();
            latencies.push(started.elapsed());
        }
        latencies
    }))
    .await;
    Run {
        seconds: t.elapsed().as_secs_f64(),
        ok: tasks * each,
        latencies: runs.into_iter().flatten().collect(),
    }
}

#[tokio::main]
async fn main() {
    let calls = env("ACTP_FLEET_CALLS", 600);
    let clients = env("ACTP_FLEET_CLIENTS", 16);
    let session_calls = env("ACTP_FLEET_SESSION_CALLS", 100);
    let postgres = Postgres::start(Durability::On).unwrap();
    let devnet = Devnet::start_with(DevnetOptions {
        funds: Amount::from_tokens(1_000_000),
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let consumer = devnet.kernel(2).await.unwrap();
    let provider = devnet.signer(1).address();
    let from_block = consumer.block_number().await.unwrap();
    let stores = [
        Store::Sled,
        Store::Postgres { replicas: 1 },
        Store::Postgres { replicas: 4 },
    ];
    let t = Instant::now();
    let mut prepared = Vec::new();
    for _ in stores {
        prepared.push(requests(&devnet, &consumer, provider, calls, clients, session_calls).await);
    }
    println!(
        "funded {} transactions and {} sessions, signed their requests, in {:.1}s",
        3 * calls,
        3 * clients,
        t.elapsed().as_secs_f64()
    );
    let mut measured = Vec::new();
    for (store, requests) in stores.into_iter().zip(prepared) {
        let database = match store {
            Store::Sled => None,
            Store::Postgres { .. } => Some(postgres.fresh_database().await),
        };
        measured.push(
            measure(
                store,
                &devnet,
                database.as_deref(),
                from_block,
                requests,
                clients,
            )
            .await,
        );
    }

    println!(
        "\nthe paywall on each store, {clients} clients, closed loop ({calls} per-call requests, {clients} sessions of {session_calls} calls):"
    );
    let mut rows = Vec::new();
    let sled_rps = (measured[0].per_call.rps(), measured[0].session.rps());
    for m in &measured {
        let per_call = Comparison::of(&m.unpaid, &m.per_call);
        let session = Comparison::of(&m.unpaid, &m.session);
        let ((pc50, pc99), (s50, s99)) = (per_call.added(), session.added());
        println!(
            "  {:<24} unpaid {:>6.0}/s | per call {:>6.0}/s ({:.2}x sled), added p50 {pc50:.2} ms, p99 {pc99:.2} ms | session {:>6.0}/s ({:.2}x sled), added p50 {s50:.2} ms, p99 {s99:.2} ms",
            m.store.to_string(),
            m.unpaid.rps(),
            m.per_call.rps(),
            m.per_call.rps() / sled_rps.0,
            m.session.rps(),
            m.session.rps() / sled_rps.1,
        );
        rows.push(serde_json::json!({
            "store": m.store.to_string(),
            "unpaid_rps": m.unpaid.rps(),
            "per_call_rps": m.per_call.rps(),
            "session_rps": m.session.rps(),
            "per_call_vs_sled": m.per_call.rps() / sled_rps.0,
            "session_vs_sled": m.session.rps() / sled_rps.1,
            "per_call": per_call.to_json(),
            "session": session.to_json(),
        }));
    }

    // Reservations against a spend cap: the paying client's hot write, on both backends.
    let dir = tempfile::tempdir().unwrap();
    let agent = devnet.signer(2).address();
    let mut reserved = Vec::new();
    for (name, url) in [
        ("sled", StoreUrl::Sled(dir.path().join("pay"))),
        (
            "PostgreSQL",
            postgres.fresh_database().await.parse().unwrap(),
        ),
    ] {
        let ledger = Ledger::open(&url).await.unwrap();
        let run = reservations(&ledger, agent, 8, 250).await;
        println!(
            "  reservations on {name:<10}: {:>6.0}/s, p50 {:.2} ms, p99 {:.2} ms (8 tasks, one agent)",
            run.rps(),
            ms(run.percentile(0.5)),
            ms(run.percentile(0.99))
        );
        reserved.push(serde_json::json!({
            "store": name,
            "per_second": run.rps(),
            "p50_ms": ms(run.percentile(0.5)),
            "p99_ms": ms(run.percentile(0.99)),
        }));
    }
    let json = serde_json::json!({
        "clients": clients,
        "per_call_requests": calls,
        "session_calls": clients * session_calls,
        "paywall": rows,
        "reservations": reserved,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("fleet.json"),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
}
