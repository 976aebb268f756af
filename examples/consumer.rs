//! A consumer agent: calls the example provider in a loop, paying for each call with its own escrow, until
//! its daily cap refuses the next payment; then prints its usage report.
//!
//! ```text
//! cargo run -p actp-examples --bin consumer                          # cap 0.50: five calls at 0.10, the sixth refused
//! cargo run -p actp-examples --bin consumer -- --daily-cap 1.25      # twelve calls
//! cargo run -p actp-examples --bin consumer -- --json | jq .by_route # the usage report as JSON on stdout
//! ```
//!
//! Everything runs in this process on an embedded devnet (anvil comes from the repository's `npm ci`): the
//! example provider behind its paywall (anvil dev account 1) on a loopback port, and the consumer agent (dev
//! account 2) with a [`PayingClient`] over a spend [`Ledger`] in `<data-dir>/pay`. The agent's policy has one
//! cap, `daily`: the ledger refuses a call before its escrow when it would take the day's spend past the cap,
//! and warns when a payment crosses 80% of it.
//!
//! The ledger remembers the day's spend: run again with the same `--data-dir` on the same UTC day and the
//! first call is refused. (Each run starts a fresh devnet, so the provider's claims are per run.)
//!
//! With `--json`, stdout carries the report only; the progress lines and the logs go to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actp_client::{Devnet, DevnetOptions};
use actp_core::Amount;
use actp_examples::provider;
use actp_pay::{
    BudgetError, GroupBy, Ledger, PayError, PayingClient, SpendPolicy, UsageQuery, UsageReport,
};
use actp_store::StoreUrl;
use clap::Parser;

/// A bound on the loop, in case the cap never stops it.
const MAX_CALLS: usize = 1_000;

#[derive(Parser)]
#[command(
    about = "An example ACTP consumer: pays the example provider per call until its daily cap stops it"
)]
struct Args {
    /// Most the agent may spend in one UTC day.
    #[arg(long, default_value = "0.50")]
    daily_cap: Amount,
    /// Where the spend ledger lives (`<data-dir>/pay`); reuse it to carry the day's spend over to the next
    /// run [default: a fresh directory under the system's temporary directory].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the spend ledger in this store instead: a PostgreSQL URL (`postgres://…`) that several agents
    /// share, with one budget between them.
    #[arg(long, env = "ACTP_STORE")]
    store: Option<StoreUrl>,
    /// Print the usage report as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
}

/// A progress line: on stdout, or on stderr when stdout is for the JSON report.
fn say(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// A fresh directory under the system's temporary directory.
fn fresh_dir(what: &str) -> std::io::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("actp-{what}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A usage report as an aligned table: key, calls, spent, fees, and a total line.
fn table(title: &str, report: &UsageReport) -> String {
    let cells = |key: &str, calls: String, spent: String, fees: String| {
        [key.to_owned(), calls, spent, fees]
    };
    let mut lines = vec![cells(title, "calls".into(), "spent".into(), "fees".into())];
    for row in report.rows.iter().chain(std::iter::once(&report.total)) {
        lines.push(cells(
            &row.key,
            row.calls.to_string(),
            row.spent.to_string(),
            row.fees.to_string(),
        ));
    }
    let mut widths = [0; 4];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.len());
        }
    }
    lines
        .iter()
        .map(|[key, calls, spent, fees]| {
            format!(
                "  {key:<w0$}  {calls:>w1$}  {spent:>w2$}  {fees:>w3$}\n",
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
            )
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let json = args.json;
    let policy = SpendPolicy {
        daily: Some(args.daily_cap),
        ..SpendPolicy::default()
    };
    policy
        .validate()
        .map_err(|e| format!("--daily-cap {}: {e}", args.daily_cap))?;
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => fresh_dir("consumer")?,
    };

    // The chain: anvil with the kernel deployed; dropping it at the end stops anvil.
    let devnet = Devnet::start_with(DevnetOptions {
        accounts: 4,
        ..DevnetOptions::default()
    })
    .await?;
    say(
        json,
        &format!(
            "devnet at {} (chain {})",
            devnet.rpc_url(),
            devnet.deployment().chain_id
        ),
    );

    // The provider, in this process: the example service behind its paywall, as dev account 1. Its claims
    // belong to this devnet (transaction ids repeat from one fresh devnet to the next), so they live in a
    // directory of their own, removed at the end.
    let provider_dir = fresh_dir("provider")?;
    let paywall = provider::paywall(devnet.kernel(1).await?, &provider_dir, provider::PRICE)
        .build()
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}{}", listener.local_addr()?, provider::PATH);
    let app = provider::app(&paywall);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    say(
        json,
        &format!(
            "provider {} serving POST {url} at {} per call",
            paywall.provider(),
            provider::PRICE
        ),
    );

    // The consumer agent, as dev account 2: its policy, then a paying client over its ledger.
    let kernel = devnet.kernel(2).await?;
    let agent = kernel
        .signer_address()
        .ok_or("the consumer's kernel client has no signing key")?;
    let store = args
        .store
        .clone()
        .unwrap_or_else(|| StoreUrl::Sled(data_dir.join("pay")));
    let ledger = Ledger::open(&store).await?;
    ledger.set_policy(agent, &policy).await?;
    let client = PayingClient::new(kernel, ledger)
        .await?
        .on_soft_limit(move |limit| {
            say(
                json,
                &format!(
                    "warning: {} of the {} of {} used for {} (soft threshold {})",
                    limit.used, limit.cap, limit.limit, limit.period, limit.threshold
                ),
            );
        });
    say(
        json,
        &format!(
            "consumer {agent}: daily cap {} (warning at {}%), ledger in {}",
            args.daily_cap,
            policy.soft_percent(),
            client.ledger().url()
        ),
    );

    let mut capped = false;
    for i in 1..=MAX_CALLS {
        let sent = client
            .post(&url)
            .body(format!(
                "task {i}: summarise the weekly report on escrow volumes, settlement times, dispute rates and provider uptime"
            ))
            .send()
            .await;
        match sent {
            Ok(response) => {
                if !response.status.is_success() {
                    return Err(
                        format!("call {i}: the provider answered {}", response.status).into(),
                    );
                }
                let payment = response
                    .payment
                    .ok_or_else(|| format!("call {i}: served without asking for payment"))?;
                let tx_id = payment
                    .tx_id
                    .ok_or_else(|| format!("call {i}: paid without an escrow"))?;
                if payment.proof_hash.is_none() {
                    return Err(
                        format!("call {i}: served without a verified delivery proof").into(),
                    );
                }
                say(
                    json,
                    &format!(
                        "call {i:>3}  paid {}  tx {tx_id}  delivery proof verified",
                        payment.amount
                    ),
                );
            }
            Err(refused @ PayError::Budget(BudgetError::CapReached { .. })) => {
                say(json, &format!("call {i:>3}  {refused}"));
                capped = true;
                break;
            }
            Err(e) => return Err(format!("call {i}: {e}").into()),
        }
    }
    if !capped {
        say(
            json,
            &format!("stopped after {MAX_CALLS} calls without reaching the cap"),
        );
    }

    // Let the provider record its last deliveries on chain before the devnet stops, then shut it down.
    let drained = tokio::time::Instant::now() + Duration::from_secs(10);
    while paywall.outbox_len().await? > 0 && tokio::time::Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.abort();
    let _ = server.await;
    paywall.flush().await?;
    drop(paywall);
    let _ = std::fs::remove_dir_all(&provider_dir);

    let usage = async |by: GroupBy| {
        client
            .ledger()
            .usage(
                agent,
                &UsageQuery {
                    by,
                    ..UsageQuery::default()
                },
            )
            .await
    };
    let by_provider = usage(GroupBy::Provider).await?;
    let by_route = usage(GroupBy::Route).await?;
    if json {
        let report = BTreeMap::from([("by_provider", &by_provider), ("by_route", &by_route)]);
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!();
        println!("usage of {agent}");
        print!("{}", table("provider", &by_provider));
        println!();
        print!("{}", table("route", &by_route));
    }
    Ok(())
}
