//! One module per command.

pub(crate) mod demo;
pub(crate) mod deploy;
pub(crate) mod devnet;
pub(crate) mod gateway;
pub(crate) mod pay;
pub(crate) mod proof;
pub(crate) mod session;
pub(crate) mod settle;
pub(crate) mod token;
pub(crate) mod tx;

use crate::{args::Command, context::Ctx, error::Result};

pub(crate) async fn run(ctx: &Ctx, command: Command) -> Result<()> {
    match command {
        Command::Devnet(args) => devnet::run(ctx, args).await,
        Command::Deploy(args) => deploy::run(ctx, args).await,
        Command::Tx(cmd) => tx::run(ctx, cmd).await,
        Command::Session(cmd) => session::run(ctx, cmd).await,
        Command::Balance(args) => token::balance(ctx, args).await,
        Command::Mint(args) => token::mint(ctx, args).await,
        Command::Proof(cmd) => proof::run(ctx, cmd).await,
        Command::Gateway(args) => gateway::run(ctx, args).await,
        Command::Settle(args) => settle::run(ctx, args).await,
        Command::Demo(args) => demo::run(ctx, args).await,
        Command::Call(args) => pay::call(ctx, args).await,
        Command::Budget(cmd) => pay::budget(ctx, cmd).await,
        Command::Usage(args) => pay::usage(ctx, args).await,
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
