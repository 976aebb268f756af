//! `actp tx ...`: the lifecycle from the command line. Each command prints the transaction id (or the
//! record) on stdout and what happened on stderr; `--json` prints one JSON document instead.

use std::time::Duration;

use actp_client::{
    Kernel, KernelEvent, Sent, TransactionRecord, Watcher, WatcherConfig,
    bindings::EscrowKernel::EscrowKernelEvents,
};
use actp_core::{Amount, B256, State, ids::service_hash, model::CreateParams};
use futures::{StreamExt, stream};
use serde::Serialize;

use std::path::PathBuf;

use crate::{
    args,
    context::Ctx,
    error::{CliError, Result},
};
use actp_core::Address;
use clap::{Args, Subcommand, ValueEnum};

/// The terms of a new transaction.
#[derive(Debug, Clone, Args)]
pub(crate) struct Terms {
    /// The provider's address.
    #[arg(long)]
    pub(crate) provider: Address,
    /// Amount: "0.10", "$0.10" or "100000 units" (base units).
    #[arg(long)]
    pub(crate) amount: Amount,
    /// Deadline: "+1h", "+7d", "+30m" from the chain's now, or a unix time.
    #[arg(long, default_value = "+1d")]
    pub(crate) deadline: args::Deadline,
    /// Dispute window after delivery: "1h", "2d", "3600".
    #[arg(long, default_value = "1h")]
    pub(crate) window: args::Duration,
    /// Service name (the serviceHash is its keccak256).
    #[arg(long, conflicts_with = "service_hash")]
    pub(crate) service: Option<String>,
    /// Service hash, when you have it rather than the name.
    #[arg(long)]
    pub(crate) service_hash: Option<B256>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TxCommand {
    /// Create a transaction (INITIATED); fund it with `actp tx fund`.
    Create(Terms),
    /// Fund a created transaction (approves the kernel first if needed).
    Fund(IdArg),
    /// Create and fund in one transaction.
    Pay(Terms),
    /// Show a transaction.
    Show(IdArg),
    /// List transactions from the kernel's events.
    List(ListArgs),
    /// Provider: COMMITTED → IN_PROGRESS.
    Start(IdArg),
    /// Provider: IN_PROGRESS → DELIVERED, optionally with a proof hash or the delivered file.
    Deliver(DeliverArgs),
    /// DELIVERED → SETTLED (the requester any time, anyone after the window); several ids settle in one batch.
    Settle(IdsArg),
    /// Requester: DELIVERED → DISPUTED within the window.
    Dispute(DisputeArgs),
    /// Resolver: DISPUTED → SETTLED or CANCELLED, splitting what remains.
    Resolve(ResolveArgs),
    /// Cancel before delivery (rules depend on the state and the deadline).
    Cancel(IdArg),
    /// Requester: pay part of an IN_PROGRESS escrow now.
    ReleaseMilestone(MilestoneArgs),
    /// Print kernel events as they are confirmed, until Ctrl-C (or until --id reaches --until).
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct IdArg {
    /// The transaction id.
    pub(crate) id: B256,
}

#[derive(Debug, Args)]
pub(crate) struct IdsArg {
    /// Transaction ids.
    #[arg(required = true)]
    pub(crate) ids: Vec<B256>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only transactions of this requester.
    #[arg(long)]
    pub(crate) requester: Option<Address>,
    /// Only transactions of this provider.
    #[arg(long)]
    pub(crate) provider: Option<Address>,
    /// Only transactions in this state.
    #[arg(long)]
    pub(crate) state: Option<StateArg>,
    /// First block to scan (default: the devnet's deployment block, else 0).
    #[arg(long)]
    pub(crate) from_block: Option<u64>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,
}

#[derive(Debug, Args)]
pub(crate) struct DeliverArgs {
    /// The transaction id.
    pub(crate) id: B256,
    /// Dispute window (default: the one the requester chose).
    #[arg(long)]
    pub(crate) window: Option<args::Duration>,
    /// The delivery proof hash to record.
    #[arg(long, conflicts_with = "result")]
    pub(crate) proof_hash: Option<B256>,
    /// Record the content hash of this file as the proof hash.
    #[arg(long)]
    pub(crate) result: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DisputeArgs {
    /// The transaction id.
    pub(crate) id: B256,
    /// Why (sent with the transaction, not stored).
    #[arg(long, default_value = "")]
    pub(crate) reason: String,
}

#[derive(Debug, Args)]
pub(crate) struct ResolveArgs {
    /// The transaction id.
    pub(crate) id: B256,
    /// Final state.
    #[arg(long, value_enum)]
    pub(crate) to: Resolution,
    /// Paid back to the requester.
    #[arg(long, default_value = "0")]
    pub(crate) requester_amount: Amount,
    /// Paid to the provider (before the platform fee).
    #[arg(long, default_value = "0")]
    pub(crate) provider_amount: Amount,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Resolution {
    Settled,
    Cancelled,
}

#[derive(Debug, Args)]
pub(crate) struct MilestoneArgs {
    /// The transaction id.
    pub(crate) id: B256,
    /// How much to release.
    #[arg(long)]
    pub(crate) amount: Amount,
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Only events of this transaction.
    #[arg(long)]
    pub(crate) id: Option<B256>,
    /// With --id: exit when it reaches this state.
    #[arg(long, requires = "id")]
    pub(crate) until: Option<StateArg>,
    /// First block (default: the head).
    #[arg(long)]
    pub(crate) from_block: Option<u64>,
    /// Blocks on top before an event is shown.
    #[arg(long, default_value_t = 0)]
    pub(crate) confirmations: u64,
    /// Give up after this long (exit code 5); e.g. "30s", "5m".
    #[arg(long = "for")]
    pub(crate) duration: Option<args::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StateArg {
    Initiated,
    Quoted,
    Committed,
    InProgress,
    Delivered,
    Settled,
    Disputed,
    Cancelled,
}

impl From<StateArg> for State {
    fn from(s: StateArg) -> State {
        match s {
            StateArg::Initiated => State::Initiated,
            StateArg::Quoted => State::Quoted,
            StateArg::Committed => State::Committed,
            StateArg::InProgress => State::InProgress,
            StateArg::Delivered => State::Delivered,
            StateArg::Settled => State::Settled,
            StateArg::Disputed => State::Disputed,
            StateArg::Cancelled => State::Cancelled,
        }
    }
}

pub(crate) async fn run(ctx: &Ctx, cmd: TxCommand) -> Result<()> {
    match cmd {
        TxCommand::Create(terms) => create(ctx, terms, false).await,
        TxCommand::Pay(terms) => create(ctx, terms, true).await,
        TxCommand::Fund(IdArg { id }) => fund(ctx, id).await,
        TxCommand::Show(IdArg { id }) => show(ctx, id).await,
        TxCommand::List(args) => list(ctx, args).await,
        TxCommand::Start(IdArg { id }) => {
            let (kernel, _) = ctx.kernel(true).await?;
            let sent = kernel.start(id).await?;
            moved(ctx, &kernel, id, &sent).await
        }
        TxCommand::Deliver(args) => deliver(ctx, args).await,
        TxCommand::Settle(IdsArg { ids }) => settle(ctx, ids).await,
        TxCommand::Dispute(DisputeArgs { id, reason }) => {
            let (kernel, _) = ctx.kernel(true).await?;
            let sent = kernel.dispute(id, reason.into_bytes()).await?;
            moved(ctx, &kernel, id, &sent).await
        }
        TxCommand::Resolve(args) => resolve(ctx, args).await,
        TxCommand::Cancel(IdArg { id }) => {
            let (kernel, _) = ctx.kernel(true).await?;
            let sent = kernel.cancel(id).await?;
            moved(ctx, &kernel, id, &sent).await
        }
        TxCommand::ReleaseMilestone(MilestoneArgs { id, amount }) => {
            let (kernel, _) = ctx.kernel(true).await?;
            let sent = kernel.release_milestone(id, amount.to_u256()).await?;
            moved(ctx, &kernel, id, &sent).await
        }
        TxCommand::Watch(args) => watch(ctx, args).await,
    }
}

/// A transaction as the CLI shows it: amounts in tokens and base units, times in unix seconds.
#[derive(Debug, Serialize)]
pub(crate) struct TxView {
    pub(crate) tx_id: B256,
    pub(crate) state: String,
    requester: actp_core::Address,
    pub(crate) provider: actp_core::Address,
    pub(crate) amount: String,
    amount_base_units: String,
    deadline: u64,
    created_at: u64,
    updated_at: u64,
    /// Before delivery: the window in seconds.
    dispute_window: Option<u64>,
    /// From delivery on: when the window ends.
    window_end: Option<u64>,
    service_hash: B256,
    fee_bps: u16,
}

impl From<&TransactionRecord> for TxView {
    fn from(r: &TransactionRecord) -> Self {
        let amount = Amount::try_from_u256(r.amount)
            .map_or_else(|_| r.amount.to_string(), |a| a.to_string());
        TxView {
            tx_id: r.id,
            state: r.state.to_string(),
            requester: r.requester,
            provider: r.provider,
            amount,
            amount_base_units: r.amount.to_string(),
            deadline: r.deadline,
            created_at: r.created_at,
            updated_at: r.updated_at,
            dispute_window: r.window_end().is_none().then_some(r.dispute_window),
            window_end: r.window_end(),
            service_hash: r.service_hash,
            fee_bps: r.fee_bps,
        }
    }
}

impl TxView {
    pub(crate) fn human(&self) -> String {
        let window = match (self.window_end, self.dispute_window) {
            (Some(end), _) => format!("ends at {end}"),
            (None, Some(w)) => format!("{w}s after delivery"),
            (None, None) => "-".into(),
        };
        format!(
            "tx          {}\nstate       {}\namount      {}\nrequester   {}\nprovider    {}\ndeadline    {}\nwindow      {window}\nservice     {}\nfee         {} bps",
            self.tx_id,
            self.state,
            self.amount,
            self.requester,
            self.provider,
            self.deadline,
            self.service_hash,
            self.fee_bps
        )
    }
}

async fn create(ctx: &Ctx, terms: Terms, fund: bool) -> Result<()> {
    let (kernel, _) = ctx.kernel(true).await?;
    let now = kernel.chain_time().await?;
    let deadline = terms.deadline.resolve(now);
    let service = terms
        .service_hash
        .or_else(|| terms.service.as_deref().map(service_hash))
        .unwrap_or(B256::ZERO);
    let params = CreateParams::new(
        terms.provider,
        terms.amount.to_u256(),
        deadline,
        terms.window.0.as_secs(),
        service,
    );
    let id = if fund {
        kernel.pay(&params).await?
    } else {
        kernel.create(&params).await?
    };
    let record = kernel.get(id).await?;
    ctx.out.info(format!(
        "{} {}: {} to {}, deadline {deadline}",
        if fund {
            "created and funded"
        } else {
            "created"
        },
        id,
        terms.amount,
        terms.provider
    ));
    let view = TxView::from(&record);
    ctx.out.result(&view, || id.to_string());
    Ok(())
}

async fn fund(ctx: &Ctx, id: B256) -> Result<()> {
    let (kernel, _) = ctx.kernel(true).await?;
    let record = kernel.get(id).await?;
    kernel.ensure_allowance(record.amount).await?;
    let sent = kernel.fund(id).await?;
    moved(ctx, &kernel, id, &sent).await
}

async fn show(ctx: &Ctx, id: B256) -> Result<()> {
    let (kernel, _) = ctx.kernel(false).await?;
    let view = TxView::from(&kernel.get(id).await?);
    ctx.out.result(&view, || view.human());
    Ok(())
}

/// The outcome of a state-changing command.
#[derive(Debug, Serialize)]
struct Moved {
    tx_id: B256,
    state: String,
    tx_hash: B256,
    gas_used: u64,
}

pub(crate) async fn moved(ctx: &Ctx, kernel: &Kernel, id: B256, sent: &Sent) -> Result<()> {
    let state = kernel.get(id).await?.state;
    let out = Moved {
        tx_id: id,
        state: state.to_string(),
        tx_hash: sent.tx_hash,
        gas_used: sent.gas_used,
    };
    ctx.out.info(format!(
        "{id} is now {state} (transaction {}, {} gas)",
        sent.tx_hash, sent.gas_used
    ));
    ctx.out.result(&out, || format!("{id} {state}"));
    Ok(())
}

async fn deliver(ctx: &Ctx, args: DeliverArgs) -> Result<()> {
    let proof_hash = match (&args.proof_hash, &args.result) {
        (Some(h), _) => Some(*h),
        (None, Some(path)) => Some(super::proof::hash_file(path)?.0),
        (None, None) => None,
    };
    let (kernel, _) = ctx.kernel(true).await?;
    let window = args.window.map_or(0, |w| w.0.as_secs());
    let sent = kernel.deliver(args.id, window, proof_hash).await?;
    moved(ctx, &kernel, args.id, &sent).await
}

async fn settle(ctx: &Ctx, ids: Vec<B256>) -> Result<()> {
    let (kernel, _) = ctx.kernel(true).await?;
    if let [id] = ids.as_slice() {
        // One id: the plain transition, so a refusal comes back with its reason.
        let sent = kernel.settle(*id).await?;
        return moved(ctx, &kernel, *id, &sent).await;
    }
    let (settled, sent) = kernel.settle_batch(&ids).await?;
    #[derive(Serialize)]
    struct Batch {
        settled: u64,
        skipped: u64,
        tx_hash: B256,
        gas_used: u64,
    }
    let out = Batch {
        settled,
        skipped: ids.len() as u64 - settled,
        tx_hash: sent.tx_hash,
        gas_used: sent.gas_used,
    };
    ctx.out.result(&out, || {
        format!(
            "settled {settled} of {} (the rest were not due or not DELIVERED); transaction {}, {} gas",
            ids.len(),
            sent.tx_hash,
            sent.gas_used
        )
    });
    Ok(())
}

async fn resolve(ctx: &Ctx, args: ResolveArgs) -> Result<()> {
    let (kernel, _) = ctx.kernel(true).await?;
    let to = match args.to {
        Resolution::Settled => State::Settled,
        Resolution::Cancelled => State::Cancelled,
    };
    let sent = kernel
        .resolve(
            args.id,
            to,
            args.requester_amount.to_u256(),
            args.provider_amount.to_u256(),
        )
        .await?;
    moved(ctx, &kernel, args.id, &sent).await
}

async fn list(ctx: &Ctx, args: ListArgs) -> Result<()> {
    let (kernel, target) = ctx.kernel(false).await?;
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
    let mut ids = Vec::new();
    while watcher.next_block() <= head {
        let polled = watcher.poll().await?;
        if !polled.read {
            break;
        }
        for e in polled.events {
            if let EscrowKernelEvents::TransactionCreated(c) = e.event
                && args.requester.is_none_or(|r| r == c.requester)
                && args.provider.is_none_or(|p| p == c.provider)
            {
                ids.push(c.transactionId);
            }
        }
    }
    ids.reverse();
    let records: Vec<_> = stream::iter(ids)
        .map(|id| {
            let kernel = kernel.clone();
            async move { kernel.get(id).await }
        })
        .buffered(16)
        .collect()
        .await;
    let mut views = Vec::new();
    for r in records {
        let r = r?;
        if args.state.is_none_or(|s| State::from(s) == r.state) {
            views.push(TxView::from(&r));
        }
        if views.len() >= args.limit {
            break;
        }
    }
    ctx.out.result(&views, || {
        if views.is_empty() {
            return "no transactions".into();
        }
        views
            .iter()
            .map(|v| {
                format!(
                    "{}  {:<11}  {:>12}  provider {}",
                    v.tx_id, v.state, v.amount, v.provider
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

/// One event as `actp tx watch` prints it.
#[derive(Debug, Serialize)]
struct EventLine {
    block: u64,
    tx_hash: B256,
    event: String,
    tx_id: Option<B256>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

fn state_name(code: u8) -> String {
    State::try_from(code).map_or_else(|_| code.to_string(), |s| s.to_string())
}

fn describe(e: &KernelEvent) -> EventLine {
    let (event, tx_id, from, to, detail) = match &e.event {
        EscrowKernelEvents::TransactionCreated(c) => (
            "TransactionCreated",
            Some(c.transactionId),
            None,
            None,
            Some(format!(
                "requester {} provider {} amount {}",
                c.requester, c.provider, c.amount
            )),
        ),
        EscrowKernelEvents::StateTransitioned(t) => (
            "StateTransitioned",
            Some(t.transactionId),
            Some(state_name(t.oldState)),
            Some(state_name(t.newState)),
            None,
        ),
        EscrowKernelEvents::DeliveryProofRecorded(p) => (
            "DeliveryProofRecorded",
            Some(p.transactionId),
            None,
            None,
            Some(format!(
                "proof {} window ends {}",
                p.proofHash, p.disputeWindowEnd
            )),
        ),
        EscrowKernelEvents::EscrowReleased(r) => (
            "EscrowReleased",
            Some(r.transactionId),
            None,
            None,
            Some(format!("{} to {}", r.amount, r.recipient)),
        ),
        EscrowKernelEvents::EscrowRefunded(r) => (
            "EscrowRefunded",
            Some(r.transactionId),
            None,
            None,
            Some(format!("{} to {}", r.amount, r.recipient)),
        ),
        other => {
            let name = format!("{other:?}");
            let name = name
                .split(['(', ' ', '{'])
                .next()
                .unwrap_or_default()
                .to_owned();
            return EventLine {
                block: e.block_number,
                tx_hash: e.tx_hash,
                event: name,
                tx_id: None,
                from: None,
                to: None,
                detail: None,
            };
        }
    };
    EventLine {
        block: e.block_number,
        tx_hash: e.tx_hash,
        event: event.to_owned(),
        tx_id,
        from,
        to,
        detail,
    }
}

async fn watch(ctx: &Ctx, args: WatchArgs) -> Result<()> {
    let (kernel, _) = ctx.kernel(false).await?;
    let until: Option<State> = args.until.map(State::from);
    // Watching from the head: a transaction already in the state asked for is done. From a given block the
    // history is replayed instead, up to the moment it got there.
    if let (Some(id), Some(until), None) = (args.id, until, args.from_block) {
        let state = kernel.get(id).await?.state;
        if state == until {
            ctx.out.info(format!("{id} is already {state}"));
            return Ok(());
        }
    }
    let from = match args.from_block {
        Some(b) => b,
        None => kernel.block_number().await? + 1,
    };
    let mut watcher = Watcher::new(
        kernel.provider().clone(),
        kernel.address(),
        from,
        WatcherConfig {
            confirmations: args.confirmations,
            poll_interval: Duration::from_millis(250),
            max_range: kernel.config().max_log_range,
            ..WatcherConfig::default()
        },
    );
    let follow = async {
        // Once the state is reached, the rest of that kernel transaction's events are still shown (the
        // proof event follows the transition), then the command ends.
        let mut reached_in: Option<B256> = None;
        loop {
            let (events, _) = watcher.next_batch().await?;
            for e in &events {
                if reached_in.is_some_and(|tx| tx != e.tx_hash) {
                    return Ok::<(), CliError>(());
                }
                let line = describe(e);
                if args.id.is_some_and(|id| line.tx_id != Some(id)) {
                    continue;
                }
                if until.is_some_and(|u| line.to.as_deref() == Some(u.name())) {
                    reached_in = Some(e.tx_hash);
                }
                ctx.out.result(&line, || {
                    let mut text = format!("block {:>8}  {:<22}", line.block, line.event);
                    if let Some(id) = line.tx_id {
                        text.push_str(&format!("  {id}"));
                    }
                    if let (Some(f), Some(t)) = (&line.from, &line.to) {
                        text.push_str(&format!("  {f} → {t}"));
                    }
                    if let Some(d) = &line.detail {
                        text.push_str(&format!("  {d}"));
                    }
                    text
                });
            }
            if reached_in.is_some() {
                return Ok(());
            }
        }
    };
    let limit = args.duration.map(|d| d.0);
    tokio::select! {
        r = follow => r,
        () = super::shutdown_signal() => Ok(()),
        () = async {
            match limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        } => Err(CliError::timeout(format!(
            "gave up after {}s{}",
            limit.unwrap_or_default().as_secs(),
            until.map(|u| format!(" waiting for {u}")).unwrap_or_default()
        ))),
    }
}
