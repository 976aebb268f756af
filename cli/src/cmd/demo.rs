//! `actp demo` (`make demo`): the whole system in one process on an embedded devnet. The example provider
//! serves a paid route behind the paywall; a consumer is refused with 402, pays into escrow for exactly the
//! quoted price, calls again with its authorization and checks the signed delivery proof; the paywall's
//! outbox delivers on chain; the devnet's clock jumps past the dispute window; the settlement daemon
//! settles; and a table of balances shows every token accounted for.

use std::time::{Duration, Instant};

use actp_client::{Devnet, DevnetOptions, Kernel};
use actp_core::{
    Address, Amount, B256, State, U256,
    authorization::{
        AUTHORIZATION_HEADER, AuthorizationHeader, RequestAuthorization, TX_ID_HEADER,
    },
    http::{DELIVERY_PROOF_HEADER, ErrorBody, PROOF_HASH_HEADER, PaymentInstructions},
    model::CreateParams,
    proof::{SignedDeliveryProof, content_hash, verify_delivery},
};
use actp_examples::provider;
use actp_settler::{Settler, SettlerConfig};
use serde::Serialize;

use crate::{
    context::Ctx,
    error::{CliError, Result},
};
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Paid calls the consumer makes.
    #[arg(long, default_value_t = 3)]
    pub(crate) calls: usize,
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

fn failure(what: &str) -> impl FnOnce(reqwest::Error) -> CliError + '_ {
    move |e| CliError::failure(format!("{what}: {e}"))
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
            data_dir: dir.join("settler"),
            from_block: d.block,
            confirmations: 0,
            poll_interval: Duration::from_millis(200),
            ..SettlerConfig::default()
        },
    )?;
    let settler_metrics = settler.metrics();
    let (stop_settler, settler_stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(settler.run(async {
        let _ = settler_stopped.await;
    }));
    story.say(format!(
        "settlement daemon running as {}",
        operator.signer_address().unwrap_or_default()
    ));

    // The consumer's calls.
    let http = reqwest::Client::new();
    let mut paid = Vec::new();
    for i in 0..args.calls.max(1) {
        let text = TEXTS[i % TEXTS.len()];
        let call = pay_and_call(&story, &http, &consumer, &url, text, i + 1).await?;
        paid.push(call);
    }

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

async fn pay_and_call(
    story: &Story<'_>,
    http: &reqwest::Client,
    consumer: &Kernel,
    url: &str,
    text: &str,
    n: usize,
) -> Result<PaidCall> {
    let target = provider::PATH;
    let endpoint = format!("{url}{target}");
    let refused = http
        .post(&endpoint)
        .body(text.to_owned())
        .send()
        .await
        .map_err(failure("calling the provider"))?;
    if refused.status() != reqwest::StatusCode::PAYMENT_REQUIRED {
        return Err(CliError::failure(format!(
            "expected 402 from an unpaid call, got {}",
            refused.status()
        )));
    }
    let body: ErrorBody = refused
        .json()
        .await
        .map_err(failure("reading the 402 answer"))?;
    let quote: PaymentInstructions = body
        .payment
        .ok_or_else(|| CliError::failure("the 402 answer carries no payment instructions"))?;
    let amount = quote
        .amount_base_units()
        .map(Amount::from_base_units)
        .ok_or_else(|| CliError::failure("the 402 answer has no valid amount"))?;
    story.say(format!(
        "call {n}: 402 Payment Required: {} for service \"{}\" from provider {}",
        amount, quote.service, quote.terms.provider
    ));

    let now = consumer.chain_time().await?;
    let terms = CreateParams::new(
        quote.terms.provider,
        amount.to_u256(),
        (now + WINDOW).max(quote.min_deadline),
        WINDOW,
        quote.service_hash,
    );
    let tx_id = consumer.pay(&terms).await?;
    story.say(format!(
        "call {n}: created and funded {}: {amount} in escrow",
        short(tx_id)
    ));

    let signer = consumer
        .signer()
        .ok_or_else(|| CliError::failure("the consumer has no key"))?;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 120;
    let request = RequestAuthorization::new(
        tx_id,
        "POST",
        target,
        content_hash(text.as_bytes()),
        expires,
    );
    let signature = signer.sign_typed(&request, &consumer.domain()).await?;
    let authorization = AuthorizationHeader::from_signature(&request, signature);
    let response = http
        .post(&endpoint)
        .header(TX_ID_HEADER, tx_id.to_string())
        .header(AUTHORIZATION_HEADER, authorization.to_string())
        .body(text.to_owned())
        .send()
        .await
        .map_err(failure("calling the provider"))?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (proof, announced) = (header(DELIVERY_PROOF_HEADER), header(PROOF_HASH_HEADER));
    let bytes = response
        .bytes()
        .await
        .map_err(failure("reading the response"))?;
    if !status.is_success() {
        return Err(CliError::failure(format!(
            "the paid call failed with {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    story.say(format!(
        "call {n}: 200 OK, served {}",
        String::from_utf8_lossy(&bytes)
    ));
    let signed = SignedDeliveryProof::from_header_value(proof.as_deref().unwrap_or_default())
        .map_err(|e| CliError::failure(format!("the delivery proof header: {e}")))?;
    let announced: Option<B256> = announced.and_then(|h| h.parse().ok());
    let proof_hash = verify_delivery(
        &signed,
        &bytes,
        tx_id,
        quote.terms.provider,
        &consumer.domain(),
        announced,
    )
    .map_err(|e| CliError::failure(format!("the delivery does not check out: {e}")))?;
    story.say(format!(
        "call {n}: verified: the body hashes to the proof's resultHash, signed by the provider, proof hash {}",
        short(proof_hash)
    ));
    Ok(PaidCall { tx_id, proof_hash })
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
