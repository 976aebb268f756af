//! `actp demo` (`make demo`): the whole system in one process on an embedded devnet. The example provider
//! serves a flat route and a metered one behind the paywall. A consumer agent pays through its
//! `PayingClient`: three calls each with an escrow of its own (402, escrow for exactly the quoted price, the
//! call again with its authorization, the delivery proof checked), then twenty metered calls from one
//! session (each charged its tokens, with a signed, chained receipt), closed at the end. The paywall's outbox
//! delivers and closes on chain; the devnet's clock jumps past the dispute window; the settlement daemon
//! settles everything, refunding the session's unspent deposit; and a table of balances shows every token
//! accounted for.

use std::time::{Duration, Instant};

use actp_client::{Devnet, DevnetOptions, Kernel};
use actp_core::{Address, Amount, B256, State, U256};
use actp_examples::provider;
use actp_pay::{Ledger, PayConfig, PayingClient, SpendPolicy};
use actp_settler::{Settler, SettlerConfig};
use serde::Serialize;

use crate::{
    context::Ctx,
    error::{CliError, Result},
};
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Calls the consumer pays with an escrow each.
    #[arg(long, default_value_t = 3)]
    pub(crate) calls: usize,
    /// Metered calls the consumer pays from one session.
    #[arg(long, default_value_t = 20)]
    pub(crate) session_calls: usize,
}

const WINDOW: u64 = 3_600;
const TEXTS: &[&str] = &[
    "Escrow lets two agents that have never met trade safely: the money waits in a contract until the work is delivered.",
    "The provider signs what it delivered; the consumer checks the signature and the hash before the window closes.",
    "A settlement daemon pays out every delivery whose dispute window has ended, many in one transaction.",
];

struct Story<'a> {
    ctx: &'a Ctx,
    start: Instant,
}

impl Story<'_> {
    fn say(&self, what: impl std::fmt::Display) {
        if !self.ctx.global.quiet && !self.ctx.global.json {
            use std::io::Write as _;
            let t = self.start.elapsed().as_secs_f64();
            let _ = writeln!(std::io::stdout().lock(), "[{t:>5.1}s] {what}");
        }
    }
}

pub(crate) async fn run(ctx: &Ctx, args: DemoArgs) -> Result<()> {
    let story = Story {
        ctx,
        start: Instant::now(),
    };
    let dir = ctx.global.data_dir.join("demo");
    let _ = std::fs::remove_dir_all(&dir);

    let devnet = Devnet::start_with(DevnetOptions {
        accounts: 4,
        ..DevnetOptions::default()
    })
    .await?;
    let d = devnet.deployment();
    story.say(format!(
        "devnet up: anvil at {}, kernel {}, MockUSDC {} (chain {})",
        devnet.rpc_url(),
        d.kernel,
        d.token,
        d.chain_id
    ));
    let admin = devnet.kernel(0).await?;
    let provider_kernel = devnet.kernel(1).await?;
    let consumer = devnet.kernel(2).await?;
    let operator = devnet.kernel(3).await?;
    let accounts = [
        ("consumer", devnet.signer(2).address()),
        ("provider", devnet.signer(1).address()),
        ("fee recipient", devnet.signer(0).address()),
        ("escrow (kernel)", d.kernel),
    ];
    let before = balances(&admin, &accounts).await?;

    // The provider: the example service behind the paywall, over loopback HTTP.
    let paywall = provider::paywall(provider_kernel, &dir.join("provider"), provider::PRICE)
        .build()
        .await?;
    let app = provider::app(&paywall);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::failure(format!("cannot listen on loopback: {e}")))?;
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .map_err(|e| CliError::failure(e.to_string()))?
    );
    let (stop_provider, provider_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = provider_stopped.await;
            })
            .await
    });
    story.say(format!(
        "provider {} serving POST {} at {} per call on {url}",
        paywall.provider(),
        provider::PATH,
        provider::PRICE
    ));

    // The settlement daemon, as a third party.
    let settler = Settler::open(
        operator.clone(),
        SettlerConfig {
            store: actp_settler::StoreUrl::Sled(dir.join("settler")),
            from_block: d.block,
            confirmations: 0,
            poll_interval: Duration::from_millis(200),
            ..SettlerConfig::default()
        },
    )
    .await?;
    let settler_metrics = settler.metrics();
    let (stop_settler, settler_stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(settler.run(async {
        let _ = settler_stopped.await;
    }));
    story.say(format!(
        "settlement daemon running as {}",
        operator.signer_address().unwrap_or_default()
    ));

    // The consumer: an agent paying through its PayingClient, within its spend ledger.
    let ledger = Ledger::open(&actp_store::StoreUrl::Sled(dir.join("pay"))).await?;
    let agent = consumer.signer_address().unwrap_or_default();
    ledger
        .set_policy(
            agent,
            &SpendPolicy {
                daily: Some(Amount::from_tokens(5)),
                ..SpendPolicy::default()
            },
        )
        .await?;
    let client = PayingClient::with_config(
        consumer.clone(),
        ledger,
        PayConfig {
            dispute_window: Duration::from_secs(WINDOW),
            ..PayConfig::default()
        },
    )
    .await?;
    let mut paid = Vec::new();
    for i in 0..args.calls.max(1) {
        let text = TEXTS[i % TEXTS.len()];
        paid.push(pay_per_call(&story, &client, &url, text, i + 1).await?);
    }
    let session = run_session(&story, &client, &url, args.session_calls).await?;

    // The paywall's outbox delivers on chain.
    for call in &paid {
        let record = wait_for(&consumer, call.tx_id, State::Delivered).await?;
        let recorded = consumer.recorded_proof_hash(call.tx_id, d.block).await?;
        if recorded != Some(call.proof_hash) {
            return Err(CliError::failure(format!(
                "{} was delivered with proof hash {recorded:?}, the response announced {}",
                call.tx_id, call.proof_hash
            )));
        }
        story.say(format!(
            "delivered on chain {}: proof hash {} recorded, dispute window ends at {}",
            short(call.tx_id),
            short(call.proof_hash),
            record.window_end().unwrap_or_default()
        ));
    }

    let closed = wait_for(&consumer, session.tx_id, State::Delivered).await?;
    let claimed = consumer
        .session_of(session.tx_id)
        .await?
        .map_or(U256::ZERO, |t| t.claimed);
    story.say(format!(
        "session {} closed on chain by the provider: claimed {} (the receipts say {}), dispute window ends at {}",
        short(session.tx_id),
        amount(claimed),
        amount(session.charged),
        closed.window_end().unwrap_or_default()
    ));
    paid.push(PaidCall {
        tx_id: session.tx_id,
        proof_hash: session.head,
    });

    // Time travel past the windows; the daemon settles.
    devnet.advance_time(WINDOW + 1).await?;
    story.say(format!(
        "time-travelled {} on the devnet: the dispute windows have ended",
        human_duration(WINDOW + 1)
    ));
    for call in &paid {
        wait_for(&consumer, call.tx_id, State::Settled).await?;
        story.say(format!(
            "settled {} by the settlement daemon",
            short(call.tx_id)
        ));
    }
    // The consumer's ledger learns the outcome: spend, and the session's refund.
    client.reconcile().await?;
    let settled_session = client
        .ledger()
        .payment_by_tx(session.tx_id)
        .await?
        .ok_or_else(|| CliError::failure("the session is not in the consumer's ledger"))?;
    story.say(format!(
        "session settled: the provider was paid {}, the consumer got {} of its {} deposit back",
        settled_session.spent(),
        settled_session.refunded,
        settled_session.amount
    ));
    let _ = stop_settler.send(());
    let settled = daemon
        .await
        .map_err(|e| CliError::failure(e.to_string()))??;
    story.say(format!(
        "daemon: {} settled in {} transaction(s), {} gas",
        settled.settled, settled.batches, settled.gas
    ));
    let _ = stop_provider.send(());
    let _ = server.await;
    paywall
        .flush()
        .await
        .map_err(|e| CliError::failure(e.to_string()))?;
    if admin.accrued_fees().await? > U256::ZERO {
        admin.collect_fees().await?;
        story.say("platform fees collected to the fee recipient");
    }
    drop(settler_metrics);

    let after = balances(&admin, &accounts).await?;
    let table = Table::new(&accounts, &before, &after)?;
    ctx.out.result(&table, || table.human());
    if table.net != 0 {
        return Err(CliError::failure(format!(
            "the balances do not add up: {} base units unaccounted for",
            table.net
        )));
    }
    Ok(())
}

struct PaidCall {
    tx_id: B256,
    proof_hash: B256,
}

/// One call paid with an escrow of its own: the client answers the 402, funds the escrow for the quoted
/// price, calls again with its authorization, and checks the delivery proof.
async fn pay_per_call(
    story: &Story<'_>,
    client: &PayingClient,
    url: &str,
    text: &str,
    n: usize,
) -> Result<PaidCall> {
    let response = client
        .post(format!("{url}{}", provider::PATH))
        .body(text.to_owned())
        .session(false)
        .send()
        .await?;
    let payment = response
        .payment
        .ok_or_else(|| CliError::failure("the provider served without asking for payment"))?;
    let (tx_id, proof_hash) = match (payment.tx_id, payment.proof_hash) {
        (Some(tx), Some(proof)) => (tx, proof),
        _ => {
            return Err(CliError::failure(
                "the call was served without a verified proof",
            ));
        }
    };
    story.say(format!(
        "call {n}: 402 Payment Required, then {} escrowed in {} for service \"{}\"",
        payment.amount,
        short(tx_id),
        payment.service
    ));
    story.say(format!(
        "call {n}: 200 OK, served {}; verified: the body hashes to the proof's resultHash, signed by the provider, proof hash {}",
        String::from_utf8_lossy(&response.body),
        short(proof_hash)
    ));
    Ok(PaidCall { tx_id, proof_hash })
}

/// What the session paid.
struct SessionRun {
    tx_id: B256,
    charged: U256,
    head: B256,
}

/// `calls` metered calls from one session: the first opens it, each is charged its output tokens with a
/// signed, chained receipt, and the consumer asks the provider to close it at the end.
async fn run_session(
    story: &Story<'_>,
    client: &PayingClient,
    url: &str,
    calls: usize,
) -> Result<SessionRun> {
    let mut last = None;
    for i in 0..calls.max(1) {
        let question = format!(
            "{} {}",
            TEXTS[i % TEXTS.len()]
                .split_whitespace()
                .take(3 + i % 9)
                .collect::<Vec<_>>()
                .join(" "),
            i + 1
        );
        let response = client
            .post(format!("{url}{}", provider::CHAT_PATH))
            .body(question)
            .session(true)
            .send()
            .await?;
        let (Some(payment), Some(receipt)) = (response.payment, response.receipt) else {
            return Err(CliError::failure(
                "the session call came back without its receipt",
            ));
        };
        let tx_id = payment.tx_id.unwrap_or_default();
        if i == 0 {
            story.say(format!(
                "session: opened {} with a {} deposit for up to {} per chat call",
                short(tx_id),
                payment.amount,
                provider::CHAT_MAX
            ));
        }
        story.say(format!(
            "session call {:>2}: charged {} for its tokens (receipt {} verified, {} so far)",
            i + 1,
            amount(receipt.charge),
            receipt.seq,
            amount(receipt.charged)
        ));
        last = Some((
            tx_id,
            receipt.charged,
            payment.proof_hash.unwrap_or_default(),
        ));
    }
    let (tx_id, charged, head) = last.unwrap_or_default();
    client.close_sessions().await?;
    story.say(format!(
        "session: asked the provider to close {} after {calls} calls",
        short(tx_id)
    ));
    Ok(SessionRun {
        tx_id,
        charged,
        head,
    })
}

fn amount(v: U256) -> String {
    Amount::try_from_u256(v).map_or_else(|_| v.to_string(), |a| a.to_string())
}

/// Waits (up to a minute) for `id` to reach `state`.
async fn wait_for(
    kernel: &Kernel,
    id: B256,
    state: State,
) -> Result<actp_client::TransactionRecord> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let record = kernel.get(id).await?;
        if record.state == state {
            return Ok(record);
        }
        if Instant::now() > deadline {
            return Err(CliError::timeout(format!(
                "{id} is still {} after a minute, expected {state}",
                record.state
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn balances(kernel: &Kernel, accounts: &[(&str, Address)]) -> Result<Vec<U256>> {
    let mut out = Vec::new();
    for (_, a) in accounts {
        out.push(kernel.balance_of(*a).await?);
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
struct Row {
    account: String,
    address: Address,
    before: String,
    after: String,
    change: String,
}

#[derive(Debug, Serialize)]
struct Table {
    rows: Vec<Row>,
    /// Sum of every change, in base units: zero when every token is accounted for.
    net: i128,
}

fn signed(units: i128) -> String {
    let shown = Amount::from_base_units(units.unsigned_abs()).to_string();
    match units.signum() {
        -1 => format!("-{shown}"),
        1 => format!("+{shown}"),
        _ => shown,
    }
}

fn as_i128(v: U256) -> Result<i128> {
    i128::try_from(v).map_err(|_| CliError::failure("a balance too large to show"))
}

impl Table {
    fn new(accounts: &[(&str, Address)], before: &[U256], after: &[U256]) -> Result<Self> {
        let mut rows = Vec::new();
        let mut net = 0i128;
        for ((name, address), (b, a)) in accounts.iter().zip(before.iter().zip(after)) {
            let change = as_i128(*a)? - as_i128(*b)?;
            net += change;
            rows.push(Row {
                account: (*name).to_owned(),
                address: *address,
                before: Amount::from_base_units(as_i128(*b)?.unsigned_abs()).to_string(),
                after: Amount::from_base_units(as_i128(*a)?.unsigned_abs()).to_string(),
                change: signed(change),
            });
        }
        Ok(Table { rows, net })
    }

    fn human(&self) -> String {
        let mut text = format!(
            "\n{:<16} {:<42} {:>14} {:>14} {:>10}\n",
            "account", "address", "before", "after", "change"
        );
        for r in &self.rows {
            text.push_str(&format!(
                "{:<16} {} {:>14} {:>14} {:>10}\n",
                r.account, r.address, r.before, r.after, r.change
            ));
        }
        text.push_str(&format!(
            "{:<16} {:<42} {:>14} {:>14} {:>10}\n",
            "total",
            "",
            "",
            "",
            signed(self.net)
        ));
        if self.net == 0 {
            text.push_str("\nthe changes add up to zero: every token is accounted for.");
        }
        text
    }
}

fn short(h: B256) -> String {
    let s = h.to_string();
    format!("{}…{}", &s[..10], &s[s.len() - 4..])
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s >= 3_600 => format!("{}h{:02}m{:02}s", s / 3_600, s % 3_600 / 60, s % 60),
        s => format!("{s}s"),
    }
}
