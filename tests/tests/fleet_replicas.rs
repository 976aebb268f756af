//! Provider replicas sharing one PostgreSQL store, as processes behind a round-robin load balancer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::{
    collections::HashMap,
    process::Child,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use actp_client::{Devnet, DevnetOptions};
use actp_core::{Amount, B256, State};
use actp_e2e::{PATIENCE, balancer::Balancer, chain, process::gateway_process};
use actp_pay::{PayingClient, SpendPolicy};
use common::{agent, echo_upstream};

mod common;

const REPLICAS: usize = 4;
/// Per-call consumers (dev accounts 2..6) and their calls.
const PER_CALL_AGENTS: usize = 4;
const PER_CALL_CALLS: usize = 50;
/// Session consumers (dev accounts 6..16) and their calls.
const SESSION_AGENTS: usize = 10;
const SESSION_CALLS: usize = 80;
const TOTAL: usize = PER_CALL_AGENTS * PER_CALL_CALLS + SESSION_AGENTS * SESSION_CALLS;

/// The replica that sends the outbox now (its process id), as the store says.
async fn sender_pid(store: &str) -> Option<u32> {
    let (client, connection) = tokio_postgres::connect(store, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_opt("SELECT owner FROM paywall_sender WHERE until > now()", &[])
        .await
        .unwrap()?;
    let owner: String = row.get(0);
    owner.split('-').next()?.parse().ok()
}

async fn outbox_len(store: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(store, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query_one("SELECT count(*) FROM paywall_outbox", &[])
        .await
        .unwrap()
        .get(0)
}

/// Four gateway replicas of one provider, each its own process, share one PostgreSQL store behind a
/// round-robin balancer. 1,000 paid requests: 200 paid per call by four consumers, 800 paid from sessions by
/// ten. In the middle, the replica sending the outbox is SIGKILLed; the balancer stops sending it requests,
/// another replica takes over its outbox once the lease runs out, and consumers whose request died with it
/// retry. Each per-call transaction is served once and delivered once; each session is closed once, for
/// what its receipts say.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_replicas_share_claims_sessions_and_the_outbox_through_a_sigkill() {
    let devnet = Devnet::start_with(DevnetOptions {
        accounts: 2 + PER_CALL_AGENTS + SESSION_AGENTS,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let d = devnet.deployment();
    let store = actp_e2e::postgres::shared().fresh_database().await;
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let key = devnet.dev_private_keys()[1].clone();
    let kernel = d.kernel.to_string();
    let mut replicas = Replicas(
        (0..REPLICAS)
            .map(|_| {
                gateway_process(
                    dir.path(),
                    &devnet.rpc_url(),
                    &kernel,
                    &key,
                    &[
                        "--upstream",
                        &upstream,
                        "--route",
                        "POST /v1/echo=0.10@echo",
                        "--store",
                        &store,
                        "--lease",
                        "3s",
                        "--hold-lease",
                        "5s",
                    ],
                )
            })
            .collect(),
    );
    let balancer = Balancer::start(replicas.0.iter().map(|(_, url)| url.clone()).collect()).await;
    let url = format!("{}/v1/echo", balancer.url());

    let served = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let retried = Arc::new(AtomicUsize::new(0));
    let per_call: Vec<_> = futures::future::join_all(
        (0..PER_CALL_AGENTS).map(|i| agent(&devnet, 2 + i, SpendPolicy::default())),
    )
    .await;
    let session_policy = SpendPolicy {
        sessions: Some(true),
        session_calls: Some(100),
        ..SpendPolicy::default()
    };
    let sessions: Vec<_> = futures::future::join_all(
        (0..SESSION_AGENTS)
            .map(|i| agent(&devnet, 2 + PER_CALL_AGENTS + i, session_policy.clone())),
    )
    .await;

    // Every consumer at once; each call is repeated (same idempotency key: the same escrow) until it is served.
    let call = |client: PayingClient, calls: usize, name: String| {
        let (url, served, killed, retried) = (
            url.clone(),
            Arc::clone(&served),
            Arc::clone(&killed),
            Arc::clone(&retried),
        );
        tokio::spawn(async move {
            for n in 0..calls {
                let key = format!("{name}-{n}");
                let until = tokio::time::Instant::now() + PATIENCE;
                loop {
                    let sent = client
                        .post(&url)
                        .idempotency_key(&key)
                        .body(format!("{name} call {n}"))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status == 200 => {
                            assert_eq!(r.body, format!("echo: {name} call {n}").as_bytes());
                            break;
                        }
                        other => {
                            // Only the killed replica's requests may fail, and only once it is killed.
                            assert!(
                                killed.load(Ordering::SeqCst),
                                "{name} call {n} failed with every replica up: {other:?}"
                            );
                            assert!(
                                tokio::time::Instant::now() < until,
                                "{name} call {n}: {other:?}"
                            );
                            retried.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }
                served.fetch_add(1, Ordering::SeqCst);
            }
            client
        })
    };
    let mut tasks = Vec::new();
    for (i, (client, _)) in per_call.iter().enumerate() {
        tasks.push(call(
            client.clone(),
            PER_CALL_CALLS,
            format!("per-call-{i}"),
        ));
    }
    for (i, (client, _)) in sessions.iter().enumerate() {
        tasks.push(call(client.clone(), SESSION_CALLS, format!("session-{i}")));
    }

    // Half way, the replica sending the outbox dies. (A consumer that fails stops early: its panic is raised
    // below.)
    let until = tokio::time::Instant::now() + PATIENCE;
    while served.load(Ordering::SeqCst) < TOTAL / 2 && !tasks.iter().any(|t| t.is_finished()) {
        assert!(tokio::time::Instant::now() < until, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = loop {
        if let Some(pid) = sender_pid(&store).await {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let victim = replicas
        .0
        .iter()
        .position(|(child, _)| child.id() == pid)
        .expect("the sender is one of the replicas");
    killed.store(true, Ordering::SeqCst);
    replicas.0[victim].0.kill().unwrap(); // SIGKILL
    replicas.0[victim].0.wait().unwrap();
    eprintln!(
        "killed replica {victim} (the sender) after {} requests",
        served.load(Ordering::SeqCst)
    );

    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), TOTAL);
    let by_replica = balancer.served();
    eprintln!(
        "requests per replica: {by_replica:?}; retried after the kill: {}",
        retried.load(Ordering::SeqCst)
    );
    assert!(by_replica.iter().all(|n| *n > 0), "{by_replica:?}");

    // The agents are done: their sessions are closed by the replicas still up.
    for (client, _) in &sessions {
        client.close_sessions().await.unwrap();
    }
    let mut per_call_ids = Vec::new();
    for (client, _) in &per_call {
        for p in client.ledger().payments(client.agent()).await.unwrap() {
            per_call_ids.push(p.tx_id.unwrap());
        }
    }
    assert_eq!(
        per_call_ids.len(),
        PER_CALL_AGENTS * PER_CALL_CALLS,
        "one escrow per call"
    );
    let mut session_ids = Vec::new();
    let mut receipts: HashMap<B256, (Amount, Amount)> = HashMap::new();
    for (client, _) in &sessions {
        for p in client.ledger().payments(client.agent()).await.unwrap() {
            let account = p.session.clone().unwrap();
            let id = p.tx_id.unwrap();
            session_ids.push(id);
            receipts.insert(id, (account.charged, account.lost));
        }
    }
    let delivered = |ids: Vec<B256>| {
        let devnet = &devnet;
        async move {
            actp_e2e::eventually("every delivery and close on chain", || async {
                chain::count_in(devnet, &ids, State::Delivered).await == ids.len()
            })
            .await;
        }
    };
    delivered(per_call_ids.clone()).await;
    delivered(session_ids.clone()).await;
    // A delivery is on chain a moment before its sender removes it from the outbox.
    actp_e2e::eventually("the survivors to finish the outbox", || async {
        outbox_len(&store).await == 0
    })
    .await;

    // Once each: one DELIVERED transition per per-call transaction and per session.
    let transitions = chain::transitions_to(&devnet, State::Delivered).await;
    for id in per_call_ids.iter().chain(&session_ids) {
        assert_eq!(transitions.get(id), Some(&1), "{id} delivered once");
    }
    // Each session closed for what its receipts say (a call that died with the replica after being charged
    // counts at most its maximum, which the consumer booked as lost).
    let kernel = devnet.kernel(0).await.unwrap();
    for (id, (charged, lost)) in &receipts {
        let claimed = kernel.session_of(*id).await.unwrap().unwrap().claimed;
        let claimed = Amount::try_from_u256(claimed).unwrap();
        assert!(
            claimed >= *charged && claimed.base_units() <= charged.base_units() + lost.base_units(),
            "session {id}: claimed {claimed}, receipts {charged}, lost {lost}"
        );
        if *lost == Amount::ZERO {
            assert_eq!(claimed, *charged, "session {id}");
        }
    }
}

/// The replica processes, with their URLs; killed when the test ends, however it ends.
struct Replicas(Vec<(Child, String)>);

impl Drop for Replicas {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
