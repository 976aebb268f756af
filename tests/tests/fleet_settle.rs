//! Settlement daemons sharing one PostgreSQL store, as processes.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::time::{Duration, Instant};

use actp_client::Devnet;
use actp_core::{Amount, State};
use actp_e2e::{
    chain,
    process::{settle_daemon, terminate},
};

const BACKLOG: usize = 300;
const PRICE: Amount = Amount::from_base_units(100_000);

/// Two daemons, no shards, one PostgreSQL store: they split a backlog of 300 by leasing, one is SIGKILLed in
/// the middle and restarted, and the other takes over its leases once they expire. Every transaction is
/// settled once, and none is sent in two mined settlements.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_share_a_postgres_store_through_a_sigkill() {
    let devnet = Devnet::start().await.unwrap();
    let d = devnet.deployment();
    let ids = chain::delivered(&devnet, BACKLOG, PRICE).await;
    devnet.advance_time(3_601).await.unwrap();
    let store = actp_e2e::postgres::shared().fresh_database().await;
    let kernel = d.kernel.to_string();
    let keys = [
        devnet.dev_private_keys()[3].clone(),
        devnet.dev_private_keys()[4].clone(),
    ];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let extra = ["--store", store.as_str(), "--lease", "10s"];
    let start = |i: usize| {
        settle_daemon(
            dirs[i].path(),
            &devnet.rpc_url(),
            &kernel,
            &keys[i],
            d.block,
            &extra,
        )
    };
    let mut first = start(0);
    let mut second = start(1);
    // Killed once both are at work.
    let waited = Instant::now();
    while chain::count_in(&devnet, &ids, State::Settled).await < BACKLOG / 4 {
        assert!(waited.elapsed() < Duration::from_secs(120), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    eprintln!(
        "after the kill: {} of {BACKLOG} settled",
        chain::count_in(&devnet, &ids, State::Settled).await
    );
    let mut restarted = start(0);
    let waited = Instant::now();
    while chain::count_in(&devnet, &ids, State::Settled).await < BACKLOG {
        assert!(
            waited.elapsed() < Duration::from_secs(180),
            "the daemons did not settle the backlog: {} of {BACKLOG}",
            chain::count_in(&devnet, &ids, State::Settled).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(terminate(&mut second, Duration::from_secs(20)), Some(0));
    assert_eq!(terminate(&mut restarted, Duration::from_secs(20)), Some(0));
    let senders = chain::assert_each_settled_once(&devnet, &ids).await;
    for account in [3, 4] {
        let address = devnet.signer(account).address();
        assert!(
            senders.get(&address).is_some_and(|n| *n > 0),
            "daemon {account} settled nothing: {senders:?}"
        );
    }
}
