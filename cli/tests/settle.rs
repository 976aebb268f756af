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
    process::Stdio,
    time::{Duration, Instant},
};

use actp_client::Devnet;
use actp_core::{Amount, State, U256};
use actp_e2e::{
    TcpProxy, chain,
    process::{actp, settle_daemon, terminate},
};
use rand::Rng;

const BACKLOG: usize = 300;
const PRICE: Amount = Amount::from_base_units(100_000);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_settles_a_backlog_exactly_once_through_sigkills_and_an_outage() {
    let devnet = Devnet::start().await.unwrap();
    let d = devnet.deployment();
    let ids = chain::delivered(&devnet, BACKLOG, PRICE).await;
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
        let mut child = settle_daemon(dir.path(), &proxy.url(), &kernel, &key, d.block, &[]);
        if round == 1 {
            // An outage in the middle of a run: the daemon must carry on by itself afterwards. The cut
            // waits until this run has settled something, so it lands while it works, however fast or
            // slow the machine is.
            let at_start = chain::count_in(&devnet, &ids, State::Settled).await;
            let waited = Instant::now();
            while chain::count_in(&devnet, &ids, State::Settled).await == at_start {
                assert!(
                    waited.elapsed() < Duration::from_secs(120),
                    "the daemon made no progress"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            proxy.cut();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let at_restore = chain::count_in(&devnet, &ids, State::Settled).await;
            proxy.restore();
            let waited = Instant::now();
            while chain::count_in(&devnet, &ids, State::Settled).await == at_restore {
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
            chain::count_in(&devnet, &ids, State::Settled).await
        );
    }

    // The last run finishes the work and stops cleanly on SIGTERM.
    let mut child = settle_daemon(dir.path(), &proxy.url(), &kernel, &key, d.block, &[]);
    let started = Instant::now();
    while chain::count_in(&devnet, &ids, State::Settled).await < BACKLOG {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the daemon did not settle the backlog"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(terminate(&mut child, Duration::from_secs(20)), Some(0));

    chain::assert_each_settled_once(&devnet, &ids).await;

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
    let ids = chain::delivered(&devnet, 5, PRICE).await;
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
    assert_eq!(chain::count_in(&devnet, &ids, State::Settled).await, 5);
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
    let ids = chain::delivered(&devnet, 40, PRICE).await;
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
    assert_eq!(chain::count_in(&devnet, &ids, State::Settled).await, 40);
}
