//! `actp`: the command line of the ACTP escrow rail. Thin commands over the crates: `actp-client` for the
//! chain, `actp-axum` for the gateway, `actp-settler` for the settlement daemon.
//!
//! Exit codes are documented in [`error::EXIT_CODES`] (and printed by `actp --help`).

mod args;
mod cmd;
mod context;
mod error;
mod output;

use std::{io::IsTerminal, process::ExitCode};

use clap::{Parser, error::ErrorKind};

use crate::{
    args::{Cli, Command},
    context::Ctx,
    error::{CliError, Exit},
    output::Output,
};

/// mimalloc: the gateway and the daemons allocate per request and per event, and glibc's allocator took about
/// a tenth of the paywall's CPU in `make bench`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let json = std::env::args().any(|a| a == "--json");
            if json {
                let first = e.to_string();
                let line = first.lines().next().unwrap_or("invalid usage");
                let message = line.trim_start_matches("error: ").to_owned();
                Output {
                    json: true,
                    quiet: false,
                }
                .error(&CliError::usage(message));
            } else {
                let _ = e.print();
            }
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    init_tracing(&cli);
    let ctx = Ctx::new(cli.global.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            ctx.out
                .error(&CliError::failure(format!("cannot start the runtime: {e}")));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cmd::run(&ctx, cli.command));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ctx.out.error(&e);
            e.exit_code()
        }
    }
}

/// Logs go to stderr: `info` for the long-running commands, `warn` otherwise; `RUST_LOG` overrides.
fn init_tracing(cli: &Cli) {
    let default = match cli.command {
        Command::Devnet(_) | Command::Gateway(_) | Command::Settle(_) => "info",
        _ => "warn",
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // An untrusted certificate is reported once, as this command's error naming --ca-cert; the verifier's
    // own ERROR line would say it twice (RUST_LOG can still ask for it by name).
    let named = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("rustls_platform_verifier"));
    if !named && let Ok(quiet) = "rustls_platform_verifier=off".parse() {
        filter = filter.add_directive(quiet);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
