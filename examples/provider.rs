//! A provider: an axum service with one paid route, one free route, the pricing endpoint and a metrics
//! endpoint, behind the ACTP paywall.
//!
//! ```text
//! cargo run -p actp-examples --bin provider                     # on an embedded devnet
//! ACTP_RPC_URL=https://... ACTP_KERNEL=0x... ACTP_PRIVATE_KEY=0x... \
//!     cargo run -p actp-examples --bin provider                 # on any chain
//! ```
//!
//! - `POST /v1/summarise`: paid, 0.10 per call, service `summarise`;
//! - `GET /health`: free;
//! - `GET /pricing`: the public pricing document;
//! - `GET /metrics`: Prometheus counters of the paywall.
//!
//! The signing key is read from `ACTP_PRIVATE_KEY` only, never from the command line.
#![allow(clippy::print_stdout)]

use std::{net::SocketAddr, path::PathBuf};

use actp_client::{ClientConfig, Devnet, Kernel, Signer};
use actp_core::{Address, Amount};
use actp_examples::provider;
use clap::Parser;

#[derive(Parser)]
#[command(about = "An example ACTP provider: one paid route, one free route, the pricing endpoint")]
struct Args {
    /// JSON-RPC endpoint; without it an embedded devnet is started.
    #[arg(long, env = "ACTP_RPC_URL")]
    rpc_url: Option<String>,
    /// The escrow kernel (required with --rpc-url).
    #[arg(long, env = "ACTP_KERNEL")]
    kernel: Option<Address>,
    /// Address to listen on.
    #[arg(long, env = "ACTP_LISTEN", default_value = "127.0.0.1:8402")]
    listen: SocketAddr,
    /// Where the paywall keeps its claims and delivery outbox.
    #[arg(long, env = "ACTP_DATA_DIR", default_value = ".actp/provider")]
    data_dir: PathBuf,
    /// Price per call of the paid route.
    #[arg(long, default_value = "0.10")]
    price: Amount,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();

    // Keep the devnet alive for as long as the provider runs.
    let (_devnet, kernel) = match &args.rpc_url {
        Some(url) => {
            let kernel = args
                .kernel
                .ok_or("--kernel (or ACTP_KERNEL) is required with --rpc-url")?;
            let key = std::env::var("ACTP_PRIVATE_KEY")
                .map_err(|_| "set ACTP_PRIVATE_KEY to the provider's key")?;
            let signer = Signer::from_private_key(&key)?;
            let kernel =
                Kernel::connect(url, kernel, Some(signer), ClientConfig::default()).await?;
            (None, kernel)
        }
        None => {
            let devnet = Devnet::start().await?;
            let kernel = devnet.kernel(1).await?;
            let d = devnet.deployment();
            println!("devnet at {} (chain {})", devnet.rpc_url(), d.chain_id);
            println!("  kernel  {}", d.kernel);
            println!("  token   {}", d.token);
            println!(
                "  a funded consumer: {} (anvil dev account 2)",
                devnet.signer(2).address()
            );
            (Some(devnet), kernel)
        }
    };

    let paywall = provider::paywall(kernel, &args.data_dir, args.price)
        .build()
        .await?;
    let app = provider::app(&paywall);

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "provider {} serving on http://{}",
        paywall.provider(),
        listener.local_addr()?
    );
    println!("  POST /v1/summarise  {} per call", args.price);
    println!("  GET  /health        free");
    println!("  GET  /pricing       how to pay");
    println!("  GET  /metrics       counters");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    paywall.flush().await?;
    Ok(())
}
