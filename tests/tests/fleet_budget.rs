//! Agent processes sharing one spend ledger on PostgreSQL: one budget, however many processes pay from it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::{
    process::Command,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::Duration,
};

use actp_client::{ClientConfig, Kernel, Signer};
use actp_core::{Address, U256};
use actp_e2e::process::{DevnetProcess, echo_gateway, run, terminate};

const AGENTS: usize = 8;
/// The daily cap, and the price per call: exactly ten calls fit.
const CAP: &str = "1.00";
const PRICE: u64 = 100_000;
const FIT: usize = 10;

/// Eight agent processes pay as one agent (one key, one policy) from one PostgreSQL ledger with a daily cap of
/// ten calls. Each keeps calling until the cap refuses it (exit 7). Exactly ten escrows exist on chain, while
/// `actp budget show` and `actp usage` run alongside and never see more than the cap. The kill switch, thrown
/// from yet another process, reaches the agents through the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_agent_processes_share_one_daily_cap() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevnetProcess::start(dir.path());
    let (mut gateway, url) = echo_gateway(&dev, 1).await;
    let store = actp_e2e::postgres::shared().fresh_database().await;
    let agent_hex = dev.address(2).to_lowercase();
    let agent: Address = agent_hex.parse().unwrap();
    // Every command below is its own process, sharing only the database (and the devnet's config).
    let actp = |args: &[&str]| {
        let mut cmd: Command = dev.as_account(2);
        cmd.args(["--store", store.as_str()]).args(args);
        cmd
    };

    // The fleet's operator approves the kernel once for all of them (each `actp call` would otherwise
    // approve just what it needs, and eight processes would race for one allowance).
    let kernel = Kernel::connect(
        &dev.str("rpc_url"),
        dev.str("kernel").parse().unwrap(),
        Some(Signer::from_private_key(&dev.key(2)).unwrap()),
        ClientConfig::default(),
    )
    .await
    .unwrap();
    kernel.approve(U256::from(u64::MAX)).await.unwrap();
    let from_block = kernel.block_number().await.unwrap();
    run(actp(&["budget", "set", "--daily", CAP])).ok();

    let paid = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let running = AtomicBool::new(true);
    let shows = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let agents: Vec<_> = (0..AGENTS)
            .map(|a| {
                let (actp, url, paid, refused) = (&actp, &url, &paid, &refused);
                scope.spawn(move || {
                    for call in 0.. {
                        let body = format!("agent {a} call {call}");
                        let out = run(actp(&["--json", "call", url, "-d", &body]));
                        match out.code {
                            0 => {
                                paid.fetch_add(1, Ordering::SeqCst);
                            }
                            7 => {
                                let message = out.error_json()["error"]["message"].to_string();
                                assert!(message.contains("daily cap of 1.00 reached"), "{out:?}");
                                refused.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            _ => panic!("agent {a}, call {call}: {out:?}"),
                        }
                    }
                })
            })
            .collect();
        // Alongside the agents: the budget as they spend it, never past the cap.
        let watcher = scope.spawn(|| {
            while running.load(Ordering::SeqCst) {
                let shown = run(actp(&["--json", "budget", "show"])).ok().json();
                let used = shown["today"]["spent"].as_u64().unwrap()
                    + shown["today"]["reserved"].as_u64().unwrap();
                assert!(used <= PRICE * FIT as u64, "past the cap: {shown}");
                run(actp(&["--json", "usage"])).ok();
                shows.fetch_add(1, Ordering::SeqCst);
            }
        });
        for agent in agents {
            agent.join().unwrap();
        }
        running.store(false, Ordering::SeqCst);
        watcher.join().unwrap();
    });
    eprintln!(
        "{} paid, {} refused, budget shown {} times alongside",
        paid.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
        shows.load(Ordering::SeqCst)
    );
    assert_eq!(paid.load(Ordering::SeqCst), FIT);
    assert_eq!(refused.load(Ordering::SeqCst), AGENTS);
    assert!(shows.load(Ordering::SeqCst) >= 1);
    let escrows = kernel.created_by(agent, from_block).await.unwrap();
    assert_eq!(escrows.len(), FIT, "exactly cap ÷ price escrows on chain");

    let shown = run(actp(&["--json", "budget", "show"])).ok().json();
    assert_eq!(shown["today"]["spent"], PRICE * FIT as u64);
    assert_eq!(shown["today"]["reserved"], 0);
    assert_eq!(shown["today"]["remaining"], 0);
    let usage = run(actp(&["--json", "usage"])).ok().json();
    assert_eq!(usage["total"]["calls"], FIT);

    // The kill switch lives in the database: thrown by one process, it stops the next call of another.
    run(actp(&["budget", "set", "--daily", "5"])).ok();
    let suspend = run(actp(&[
        "budget",
        "suspend",
        &agent_hex,
        "--reason",
        "fleet halt",
    ]))
    .ok();
    assert!(suspend.stdout.contains("suspended"), "{suspend:?}");
    let blocked = run(actp(&["call", &url, "-d", "blocked"])).code(7);
    assert!(blocked.stderr.contains("fleet halt"), "{blocked:?}");
    let shown = run(actp(&["--json", "budget", "show"])).ok().json();
    assert_eq!(shown["suspended"], true);
    run(actp(&["budget", "resume", &agent_hex])).ok();
    assert_eq!(
        run(actp(&["call", &url, "-d", "resumed"])).ok().stdout,
        "echo: resumed"
    );
    terminate(&mut gateway, Duration::from_secs(10));
}
