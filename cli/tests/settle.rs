//! The settlement daemon as a process: a backlog of 300 delivered transactions, the daemon SIGKILLed at
//! random moments while it works and its RPC cut in the middle of a run; in the end every transaction is
//! settled exactly once, each by a single settlement, and the balances add up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::{
    collections::HashMap,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use actp_client::{
    Devnet, Watcher, WatcherConfig,
    bindings::EscrowKernel::{EscrowKernelEvents, settleBatchCall},
};
use actp_core::{Address, Amount, B256, State, U256, ids::service_hash, model::CreateParams};
use actp_e2e::TcpProxy;
use actp_e2e::process::{actp, terminate};
use alloy_sol_types::SolCall;
use futures::{StreamExt, stream};
use rand::Rng;

const BACKLOG: usize = 300;
const PRICE: Amount = Amount::from_base_units(100_000);

async fn delivered_backlog(devnet: &Devnet, n: usize) -> Vec<B256> {
    let consumer = devnet.kernel(2).await.unwrap();
    let provider = devnet.kernel(1).await.unwrap();
    let now = devnet.now().await.unwrap();
    let terms = CreateParams::new(
        devnet.signer(1).address(),
        PRICE.to_u256(),
        now + 86_400,
        3_600,
        service_hash("settle-test"),
    );
    consumer
        .ensure_allowance(PRICE.to_u256() * U256::from(n))
        .await
        .unwrap();
    let ids: Vec<B256> = stream::iter(0..n)
        .map(|_| consumer.create_and_fund(&terms))
        .buffer_unordered(32)
        .map(Result::unwrap)
        .collect()
        .await;
    stream::iter(&ids)
        .map(|id| provider.start(*id))
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.unwrap();
        })
        .await;
    stream::iter(&ids)
        .map(|id| provider.deliver(*id, 0, Some(B256::repeat_byte(7))))
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.unwrap();
        })
        .await;
    ids
}

fn daemon(dir: &std::path::Path, rpc: &str, kernel: &str, key: &str, from: u64) -> Child {
    daemon_with(dir, rpc, kernel, key, from, &[])
}

fn daemon_with(
    dir: &std::path::Path,
    rpc: &str,
    kernel: &str,
    key: &str,
    from: u64,
    extra: &[&str],
) -> Child {
    let mut cmd = actp(dir);
    cmd.env("ACTP_RPC_URL", rpc)
        .env("ACTP_KERNEL", kernel)
        .env("ACTP_PRIVATE_KEY", key)
        .env("RUST_LOG", "info")
        .args([
            "settle",
            "--batch-size",
            "3",
            "--concurrency",
            "1",
            "--confirmations",
            "0",
            "--poll-interval",
            "200ms",
            "--max-backoff",
            "500ms",
            "--from-block",
            &from.to_string(),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

async fn settled_count(devnet: &Devnet, ids: &[B256]) -> usize {
    let kernel = devnet.kernel(0).await.unwrap();
    let states: Vec<State> = stream::iter(ids)
        .map(|id| {
            let kernel = kernel.clone();
            async move { kernel.get(*id).await.unwrap().state }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    states.iter().filter(|s| **s == State::Settled).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_settles_a_backlog_exactly_once_through_sigkills_and_an_outage() {
    let devnet = Devnet::start().await.unwrap();
    let d = devnet.deployment();
    let ids = delivered_backlog(&devnet, BACKLOG).await;
    devnet.advance_time(3_601).await.unwrap();
    let provider = devnet.signer(1).address();
    let provider_before = devnet.balance_of(provider).await.unwrap();
    let kernel_before = devnet.balance_of(d.kernel).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let proxy = TcpProxy::start(format!("127.0.0.1:{}", devnet.port()).parse().unwrap())
        .await
        .unwrap();
    let key = devnet.dev_private_keys()[3].clone();
    let kernel = d.kernel.to_string();
    let mut rng = rand::rng();

    // Killed at random moments while it works.
    let mut kills = 0;
    for round in 0..4 {
        let mut child = daemon(dir.path(), &proxy.url(), &kernel, &key, d.block);
        if round == 1 {
            // An outage in the middle of a run: the daemon must carry on by itself afterwards. The cut
            // waits until this run has settled something, so it lands while it works, however fast or
            // slow the machine is.
            let at_start = settled_count(&devnet, &ids).await;
            let waited = Instant::now();
            while settled_count(&devnet, &ids).await == at_start {
                assert!(
                    waited.elapsed() < Duration::from_secs(120),
                    "the daemon made no progress"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            proxy.cut();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let at_restore = settled_count(&devnet, &ids).await;
            proxy.restore();
            let waited = Instant::now();
            while settled_count(&devnet, &ids).await == at_restore {
                assert!(
                    waited.elapsed() < Duration::from_secs(120),
                    "no progress after the RPC came back"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                at_restore < BACKLOG,
                "the outage came after the work was done"
            );
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_000))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        eprintln!(
            "after kill {kills}: {} of {BACKLOG} settled",
            settled_count(&devnet, &ids).await
        );
    }

    // The last run finishes the work and stops cleanly on SIGTERM.
    let mut child = daemon(dir.path(), &proxy.url(), &kernel, &key, d.block);
    let started = Instant::now();
    while settled_count(&devnet, &ids).await < BACKLOG {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the daemon did not settle the backlog"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(terminate(&mut child, Duration::from_secs(20)), Some(0));

    assert_each_settled_once(&devnet, &ids).await;

    // Balances: the provider got every net amount; the kernel kept only the fees.
    let fee = PRICE.base_units() / 100;
    let net = (PRICE.base_units() - fee) * BACKLOG as u128;
    let provider_after = devnet.balance_of(provider).await.unwrap();
    assert_eq!(provider_after - provider_before, U256::from(net));
    let kernel_after = devnet.balance_of(d.kernel).await.unwrap();
    assert_eq!(kernel_before - kernel_after, U256::from(net));
    let accrued = devnet
        .kernel(0)
        .await
        .unwrap()
        .accrued_fees()
        .await
        .unwrap();
    assert_eq!(accrued, U256::from(fee * BACKLOG as u128));
    assert_eq!(kernel_after, accrued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_settles_what_is_due_and_reports_it() {
    let devnet = Devnet::start().await.unwrap();
    let d = devnet.deployment();
    let ids = delivered_backlog(&devnet, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let key = devnet.dev_private_keys()[3].clone();
    let once = |dir: &std::path::Path| {
        let mut cmd = actp(dir);
        cmd.env("ACTP_RPC_URL", devnet.rpc_url())
            .env("ACTP_KERNEL", d.kernel.to_string())
            .env("ACTP_PRIVATE_KEY", &key)
            .args(["settle", "--once", "--json", "--confirmations", "0"])
            .args(["--from-block", &d.block.to_string()]);
        actp_e2e::process::run(cmd).ok().json()
    };
    // Nothing is due before the window ends.
    let report = once(dir.path());
    assert_eq!(report["settled"], 0);
    assert_eq!(report["backlog"], 5);
    assert_eq!(report["due"], 0);
    devnet.advance_time(3_601).await.unwrap();
    let report = once(dir.path());
    assert_eq!(report["settled"], 5, "{report}");
    assert_eq!(report["batches"], 1);
    assert_eq!(settled_count(&devnet, &ids).await, 5);
    // A second pass finds nothing and sends nothing.
    let report = once(dir.path());
    assert_eq!(report["settled"], 0);
    assert_eq!(report["batches"], 0);
    assert_eq!(report["backlog"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_split_the_work_by_shard() {
    let devnet = Devnet::start().await.unwrap();
    let d = devnet.deployment();
    let ids = delivered_backlog(&devnet, 40).await;
    devnet.advance_time(3_601).await.unwrap();
    let key = devnet.dev_private_keys()[3].clone();
    let other_key = devnet.dev_private_keys()[4].clone();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let children: Vec<_> = [("0/2", &key, &dirs[0]), ("1/2", &other_key, &dirs[1])]
        .into_iter()
        .map(|(shard, key, dir)| {
            let mut cmd = actp(dir.path());
            cmd.env("ACTP_RPC_URL", devnet.rpc_url())
                .env("ACTP_KERNEL", d.kernel.to_string())
                .env("ACTP_PRIVATE_KEY", key)
                .args([
                    "settle",
                    "--once",
                    "--json",
                    "--confirmations",
                    "0",
                    "--shard",
                    shard,
                ])
                .args(["--from-block", &d.block.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let reports: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let settled: Vec<u64> = reports
        .iter()
        .map(|r| r["settled"].as_u64().unwrap())
        .collect();
    assert_eq!(settled.iter().sum::<u64>(), 40, "{reports:?}");
    assert!(
        settled.iter().all(|s| *s > 0),
        "each shard settles its share: {reports:?}"
    );
    assert!(
        reports.iter().all(|r| r["skipped"] == 0),
        "no shard touched the other's ids: {reports:?}"
    );
    assert_eq!(settled_count(&devnet, &ids).await, 40);
}

/// Exactly once: one SETTLED transition per id, and each id in exactly one mined `settleBatch` (none sent
/// twice, even if the second would have been skipped).
/// Returns how many settlements each account sent.
async fn assert_each_settled_once(devnet: &Devnet, ids: &[B256]) -> HashMap<Address, usize> {
    let d = devnet.deployment();
    let mut senders: HashMap<Address, usize> = HashMap::new();
    let mut settled_events: HashMap<B256, usize> = HashMap::new();
    let mut batches: HashMap<B256, usize> = HashMap::new();
    let head = devnet
        .kernel(0)
        .await
        .unwrap()
        .block_number()
        .await
        .unwrap();
    let mut watcher = Watcher::new(
        devnet.provider(),
        d.kernel,
        d.block,
        WatcherConfig::default(),
    );
    while watcher.next_block() <= head {
        let (events, _) = watcher.next_batch().await.unwrap();
        for e in events {
            if let EscrowKernelEvents::StateTransitioned(t) = &e.event
                && t.newState == State::Settled.code()
            {
                *settled_events.entry(t.transactionId).or_default() += 1;
            }
        }
    }
    // Every settleBatch mined, whether or not it settled anything (a duplicate whose ids were settled
    // already emits no event): read each block's transactions to the kernel.
    let provider_rpc = devnet.provider();
    for number in d.block..=head {
        use alloy::{consensus::Transaction as _, providers::Provider as _};
        let block = provider_rpc
            .get_block_by_number(number.into())
            .full()
            .await
            .unwrap()
            .unwrap();
        for tx in block.transactions.txns() {
            if tx.to() == Some(d.kernel) && tx.input().starts_with(&settleBatchCall::SELECTOR) {
                *senders.entry(tx.inner.signer()).or_default() += 1;
                let call = settleBatchCall::abi_decode(tx.input()).unwrap();
                for id in call.transactionIds {
                    *batches.entry(id).or_default() += 1;
                }
            }
        }
    }
    for id in ids {
        assert_eq!(settled_events.get(id), Some(&1), "{id} settled events");
        assert_eq!(
            batches.get(id),
            Some(&1),
            "{id} sent in more than one mined settlement"
        );
    }

    senders
}

/// Two daemons, no shards, one PostgreSQL store: they split a backlog of 300 by leasing, one is SIGKILLed in
/// the middle and restarted, and the other takes over its leases once they expire. Every transaction is
/// settled once, and none is sent in two mined settlements.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_share_a_postgres_store_through_a_sigkill() {
    let devnet = Devnet::start().await.unwrap();
    let d = devnet.deployment();
    let ids = delivered_backlog(&devnet, BACKLOG).await;
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
        daemon_with(
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
    while settled_count(&devnet, &ids).await < BACKLOG / 4 {
        assert!(waited.elapsed() < Duration::from_secs(120), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    eprintln!(
        "after the kill: {} of {BACKLOG} settled",
        settled_count(&devnet, &ids).await
    );
    let mut restarted = start(0);
    let waited = Instant::now();
    while settled_count(&devnet, &ids).await < BACKLOG {
        assert!(
            waited.elapsed() < Duration::from_secs(180),
            "the daemons did not settle the backlog: {} of {BACKLOG}",
            settled_count(&devnet, &ids).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(terminate(&mut second, Duration::from_secs(20)), Some(0));
    assert_eq!(terminate(&mut restarted, Duration::from_secs(20)), Some(0));
    let senders = assert_each_settled_once(&devnet, &ids).await;
    for account in [3, 4] {
        let address = devnet.signer(account).address();
        assert!(
            senders.get(&address).is_some_and(|n| *n > 0),
            "daemon {account} settled nothing: {senders:?}"
        );
    }
}
