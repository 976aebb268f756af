//! `actp settle`: the settlement daemon (or one pass with `--once`). A progress bar on a terminal while a
//! backlog is being caught up, structured logs otherwise; `/health` and `/metrics` with `--listen`.

use std::{io::IsTerminal, sync::Arc, time::Duration};

use actp_settler::{Metrics, Settler, SettlerConfig, Snapshot};
use tokio::sync::watch;

use std::net::SocketAddr;

use crate::{
    args,
    context::Ctx,
    error::{CliError, Result},
};
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct SettleArgs {
    /// Settle what is due and exit (for cron).
    #[arg(long)]
    pub(crate) once: bool,
    /// Ids per settleBatch transaction.
    #[arg(long, default_value_t = 100)]
    pub(crate) batch_size: usize,
    /// Settlement transactions in flight.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Blocks on top before a block is read (default: 0 on the devnet, 2 elsewhere).
    #[arg(long)]
    pub(crate) confirmations: Option<u64>,
    /// First block when there is no checkpoint (default: the devnet's deployment block, else 0).
    #[arg(long)]
    pub(crate) from_block: Option<u64>,
    /// This daemon's share of the ids, INDEX/COUNT (e.g. 0/2), to split the work between daemons. Daemons
    /// sharing a PostgreSQL --store split it without shards.
    #[arg(long)]
    pub(crate) shard: Option<actp_settler::Shard>,
    /// How long this daemon keeps the transactions it is settling to itself when several share a
    /// PostgreSQL --store; another takes them over once it expires (after a crash). Longer than a settlement
    /// takes to confirm.
    #[arg(long, default_value = "2m")]
    pub(crate) lease: args::Duration,
    /// Serve /health and /metrics here.
    #[arg(long, env = "ACTP_SETTLER_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Pause between polls once caught up: "1s", "500ms".
    #[arg(long, default_value = "1s")]
    pub(crate) poll_interval: args::Duration,
    /// Longest pause between retries during an outage.
    #[arg(long, default_value = "30s")]
    pub(crate) max_backoff: args::Duration,
}

/// Connects, waiting out an unreachable RPC with backoff unless `--once` (a cron job should fail loudly).
async fn connect(
    ctx: &Ctx,
    args: &SettleArgs,
) -> Result<(actp_client::Kernel, crate::context::Target)> {
    let mut pause = Duration::from_millis(250);
    loop {
        match ctx.kernel(true).await {
            Err(e) if e.retryable && !args.once => {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "RPC unreachable; waiting");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = super::shutdown_signal() => return Err(e),
                }
                pause = (pause * 2).min(args.max_backoff.0);
            }
            other => return other,
        }
    }
}

pub(crate) async fn run(ctx: &Ctx, args: SettleArgs) -> Result<()> {
    let (kernel, target) = connect(ctx, &args).await?;
    let config = SettlerConfig {
        store: ctx.store("settler"),
        from_block: target.scan_from(args.from_block, kernel.address())?,
        confirmations: args
            .confirmations
            .unwrap_or(target.network.map_or(2, |n| n.confirmations)),
        max_range: kernel.config().max_log_range,
        batch_size: args.batch_size.max(1),
        concurrency: args.concurrency.max(1),
        poll_interval: args.poll_interval.0,
        max_backoff: args.max_backoff.0,
        shard: args.shard,
        lease: args.lease.0,
        ..SettlerConfig::default()
    };
    let operator = kernel.signer_address().unwrap_or_default();
    let mut settler = Settler::open(kernel, config).await?;
    let metrics = settler.metrics();
    let (stop_tx, stop_rx) = watch::channel(false);

    if let Some(addr) = args.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::usage(format!("cannot listen on {addr}: {e}")))?;
        let mut stop = stop_rx.clone();
        let served = Arc::clone(&metrics);
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = actp_settler::health::serve(listener, served, shutdown).await {
                tracing::warn!(error = %e, "health endpoint stopped");
            }
        });
        ctx.out.info(format!(
            "health on http://{addr}/health, metrics on /metrics"
        ));
    }
    let progress = (std::io::stderr().is_terminal() && !ctx.global.quiet && !ctx.global.json)
        .then(|| tokio::spawn(show_progress(Arc::clone(&metrics), stop_rx.clone())));

    tracing::info!(operator = %operator, once = args.once, "settler starting");
    let result = if args.once {
        settler.run_once(6).await
    } else {
        settler.run(super::shutdown_signal()).await
    };
    let _ = stop_tx.send(true);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let snapshot = result?;
    report(ctx, &snapshot);
    Ok(())
}

fn report(ctx: &Ctx, s: &Snapshot) {
    ctx.out.result(s, || {
        format!(
            "settled {} in {} transactions ({} gas); skipped {} already settled; {} failed; backlog {} ({} due)",
            s.settled, s.batches, s.gas, s.skipped, s.failed, s.backlog, s.due
        )
    });
}

/// A progress bar while there is a backlog: settled so far out of settled plus what is left.
async fn show_progress(metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} settling [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    loop {
        let s = metrics.snapshot();
        bar.set_length(s.settled + s.backlog.max(s.due));
        bar.set_position(s.settled);
        bar.set_message(format!(
            "due {} · lag {} blocks{}",
            s.due,
            s.lag_blocks,
            if s.healthy {
                ""
            } else {
                " · RPC trouble, retrying"
            }
        ));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    bar.finish_and_clear();
}
