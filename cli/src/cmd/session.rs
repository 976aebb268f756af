//! `actp session ...`: sessions (one escrow paying one provider for many calls) from the command line: open,
//! show, list, top up, ask the provider to close, and end without the provider.

use std::collections::HashSet;

use actp_client::{
    Kernel, OpenSession, SessionTerms, Watcher, WatcherConfig,
    bindings::EscrowKernel::EscrowKernelEvents,
};
use actp_core::{
    Address, Amount, B256, U256,
    http::{TX_ID_HEADER, VOUCHER_HEADER},
    ids::service_hash,
    proof::content_hash,
    session::{SessionVoucher, VoucherHeader},
};
use clap::{Args, Subcommand};
use futures::{StreamExt, stream};
use serde::Serialize;

use super::tx::{TxView, moved};
use crate::{
    args,
    context::Ctx,
    error::{CliError, Result},
};

#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// Open and fund a session with a provider (approves the kernel first if needed).
    Open(OpenArgs),
    /// Show a session: the transaction, its grace period, end and claim.
    Show(IdArg),
    /// List sessions from the kernel's events (default: the signer's, as requester).
    List(ListArgs),
    /// Requester: add to an open session's deposit.
    TopUp(TopUpArgs),
    /// Requester: ask the provider (at its URL) to close the session now.
    Close(CloseArgs),
    /// Requester: end the session on chain; after the grace period, `actp tx cancel` returns the deposit.
    End(IdArg),
}

#[derive(Debug, Args)]
pub(crate) struct OpenArgs {
    /// The provider's address.
    #[arg(long)]
    provider: Address,
    /// The deposit: "5.00", "$5" or "5000000 units".
    #[arg(long)]
    deposit: Amount,
    /// Deadline: "+1d", "+7d" from the chain's now, or a unix time.
    #[arg(long, default_value = "+1d")]
    deadline: args::Deadline,
    /// Dispute window after the close: "1h", "2d".
    #[arg(long, default_value = "1h")]
    window: args::Duration,
    /// Grace period: how long the provider may still close after you ask to end ("10m" to "7d").
    #[arg(long, default_value = "10m")]
    grace: args::Duration,
    /// The service name sessions are opened for at this provider (its pricing document's `session.service`).
    #[arg(long, default_value = "session")]
    service: String,
}

#[derive(Debug, Args)]
pub(crate) struct IdArg {
    /// The session's transaction id.
    id: B256,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Sessions of this requester (default: the signer, unless --provider is given).
    #[arg(long)]
    requester: Option<Address>,
    /// Sessions with this provider.
    #[arg(long)]
    provider: Option<Address>,
    /// First block to scan (default: the deployment's).
    #[arg(long)]
    from_block: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct TopUpArgs {
    /// The session's transaction id.
    id: B256,
    /// How much to add.
    amount: Amount,
}

#[derive(Debug, Args)]
pub(crate) struct CloseArgs {
    /// The session's transaction id.
    id: B256,
    /// The provider's base URL, e.g. http://127.0.0.1:8402 (default: where `actp call --session` opened it).
    #[arg(long)]
    url: Option<String>,
    /// The provider's close path (its pricing document says; default `/sessions/close`, or the one recorded
    /// when `actp call --session` opened it).
    #[arg(long)]
    path: Option<String>,
}

/// A session as the CLI shows it: the transaction and its session terms.
#[derive(Debug, Serialize)]
struct SessionView {
    #[serde(flatten)]
    tx: TxView,
    grace: u64,
    /// Zero until the requester asks to end; then the last second the provider may close.
    close_by: u64,
    claimed: String,
    claimed_base_units: String,
}

impl SessionView {
    fn new(tx: TxView, terms: SessionTerms) -> Self {
        let claimed = Amount::try_from_u256(terms.claimed)
            .map_or_else(|_| terms.claimed.to_string(), |a| a.to_string());
        SessionView {
            tx,
            grace: terms.grace,
            close_by: terms.close_by,
            claimed,
            claimed_base_units: terms.claimed.to_string(),
        }
    }

    fn human(&self) -> String {
        let end = match self.close_by {
            0 => "not asked".to_owned(),
            t => format!("asked; the provider may close until {t}"),
        };
        format!(
            "{}\ngrace       {}s\nend         {end}\nclaimed     {}",
            self.tx.human(),
            self.grace,
            self.claimed
        )
    }
}

pub(crate) async fn run(ctx: &Ctx, cmd: SessionCommand) -> Result<()> {
    match cmd {
        SessionCommand::Open(args) => open(ctx, args).await,
        SessionCommand::Show(IdArg { id }) => {
            let (kernel, _) = ctx.kernel(false).await?;
            let view = view(&kernel, id).await?;
            ctx.out.result(&view, || view.human());
            Ok(())
        }
        SessionCommand::List(args) => list(ctx, args).await,
        SessionCommand::TopUp(TopUpArgs { id, amount }) => {
            let (kernel, _) = ctx.kernel(true).await?;
            kernel.ensure_allowance(amount.to_u256()).await?;
            let sent = kernel.top_up_session(id, amount.to_u256()).await?;
            moved(ctx, &kernel, id, &sent).await
        }
        SessionCommand::Close(args) => close(ctx, args).await,
        SessionCommand::End(IdArg { id }) => {
            let (kernel, _) = ctx.kernel(true).await?;
            let sent = kernel.end_session(id).await?;
            if let Some(terms) = kernel.session_of(id).await? {
                ctx.out.info(format!(
                    "ended: the provider may close until {}; after that, `actp tx cancel {id}` returns the deposit",
                    terms.close_by
                ));
            }
            moved(ctx, &kernel, id, &sent).await
        }
    }
}

async fn view(kernel: &Kernel, id: B256) -> Result<SessionView> {
    let record = kernel.get(id).await?;
    let terms = kernel.session_of(id).await?.ok_or_else(|| {
        CliError::usage(format!(
            "{id} is not a session: `actp tx show {id}` shows it"
        ))
    })?;
    Ok(SessionView::new(TxView::from(&record), terms))
}

async fn open(ctx: &Ctx, args: OpenArgs) -> Result<()> {
    let (kernel, _) = ctx.kernel(true).await?;
    let now = kernel.chain_time().await?;
    let terms = OpenSession {
        provider: args.provider,
        deposit: args.deposit.to_u256(),
        deadline: args.deadline.resolve(now),
        dispute_window: args.window.0.as_secs(),
        service_hash: service_hash(&args.service),
        grace: args.grace.0.as_secs(),
    };
    let id = kernel.pay_session(&terms).await?;
    ctx.out.info(format!(
        "opened session {id}: {} deposited for {}, deadline {}",
        args.deposit, args.provider, terms.deadline
    ));
    let view = view(&kernel, id).await?;
    ctx.out.result(&view, || id.to_string());
    Ok(())
}

async fn list(ctx: &Ctx, args: ListArgs) -> Result<()> {
    let (kernel, target) = ctx.kernel(false).await?;
    let requester = match (args.requester, args.provider) {
        (Some(r), _) => Some(r),
        (None, Some(_)) => None,
        (None, None) => kernel.signer_address(),
    };
    let from = target.scan_from(args.from_block, kernel.address())?;
    let head = kernel.block_number().await?;
    let mut watcher = Watcher::new(
        kernel.provider().clone(),
        kernel.address(),
        from,
        WatcherConfig {
            confirmations: 0,
            max_range: kernel.config().max_log_range,
            ..WatcherConfig::default()
        },
    );
    let (mut created, mut sessions) = (Vec::new(), HashSet::new());
    while watcher.next_block() <= head {
        let polled = watcher.poll().await?;
        if !polled.read {
            break;
        }
        for e in polled.events {
            match e.event {
                EscrowKernelEvents::TransactionCreated(c)
                    if requester.is_none_or(|r| r == c.requester)
                        && args.provider.is_none_or(|p| p == c.provider) =>
                {
                    created.push(c.transactionId);
                }
                EscrowKernelEvents::SessionOpened(s) => {
                    sessions.insert(s.transactionId);
                }
                _ => {}
            }
        }
    }
    created.retain(|id| sessions.contains(id));
    created.reverse();
    let views: Vec<_> = stream::iter(created)
        .map(|id| {
            let kernel = kernel.clone();
            async move { view(&kernel, id).await }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    ctx.out.result(&views, || {
        if views.is_empty() {
            return "no sessions".into();
        }
        views
            .iter()
            .map(|v| {
                format!(
                    "{}  {:<11}  deposit {:>10}  claimed {:>10}  provider {}",
                    v.tx.tx_id, v.tx.state, v.tx.amount, v.claimed, v.tx.provider
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

/// Asks the provider to close: `POST` on its close path with a voucher over that very request.
async fn close(ctx: &Ctx, args: CloseArgs) -> Result<()> {
    let (kernel, _) = ctx.kernel(true).await?;
    // A session the agent opened with `actp call --session` is in its ledger, with the provider's address.
    let ledger = match (&args.url, &args.path) {
        (Some(_), Some(_)) => None,
        _ => Some(super::pay::open_ledger(ctx).await?),
    };
    let recorded = match &ledger {
        Some(ledger) => ledger
            .payment_by_tx(args.id)
            .await?
            .filter(|p| p.session.is_some()),
        None => None,
    };
    let account = recorded.as_ref().and_then(|p| p.session.as_ref());
    let origin = args
        .url
        .clone()
        .or_else(|| account.map(|a| a.origin.clone()))
        .ok_or_else(|| {
            CliError::usage(format!(
                "session {} is not in this agent's ledger: give the provider's --url",
                args.id
            ))
        })?;
    let path = args
        .path
        .clone()
        .or_else(|| account.map(|a| a.close_path.clone()))
        .unwrap_or_else(|| "/sessions/close".to_owned());
    let signer = kernel
        .signer()
        .cloned()
        .ok_or_else(|| CliError::usage("a signer is needed: the requester signs the request"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let voucher = SessionVoucher::for_request(
        args.id,
        U256::ZERO,
        "POST",
        &path,
        content_hash(b""),
        now + 60,
    );
    let signature = signer
        .sign_hash(&voucher.signing_hash(&kernel.domain()))
        .await?;
    let url = format!("{}{}", origin.trim_end_matches('/'), path);
    let response = ctx
        .http_options()?
        .builder()
        .build()
        .map_err(|e| CliError::failure(e.to_string()))?
        .post(&url)
        .header(TX_ID_HEADER, args.id.to_string())
        .header(
            VOUCHER_HEADER,
            VoucherHeader::from_signature(&voucher, signature).to_string(),
        )
        .send()
        .await
        .map_err(|e| CliError::from(actp_client::from_reqwest(&e)))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let message = body["message"]
            .as_str()
            .unwrap_or("the provider refused")
            .to_owned();
        return Err(CliError::failure(format!(
            "{url} answered {status}: {message}"
        )));
    }
    // No more calls go to it.
    if let (Some(ledger), Some(p)) = (&ledger, &recorded) {
        ledger
            .update(p.agent, &p.key, |p| {
                if let Some(s) = p.session.as_mut() {
                    s.closing_since
                        .get_or_insert_with(actp_pay::ledger::unix_now);
                }
            })
            .await?;
    }
    ctx.out.info(format!(
        "the provider is closing {}; it becomes DELIVERED when the close is mined",
        args.id
    ));
    ctx.out.result(&body, || format!("{} closing", args.id));
    Ok(())
}
