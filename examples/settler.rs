//! A settlement bot: settles every delivered transaction of a kernel once its dispute window ends, with
//! `settleBatch`, until Ctrl-C. Anyone may settle after the window, so the bot needs no key of either party,
//! only gas. `actp settle` is the same daemon with every option; this is the library in a few lines.
//!
//! ```text
//! ACTP_RPC_URL=https://... ACTP_KERNEL=0x... ACTP_PRIVATE_KEY=0x... \
//!     cargo run -p actp-examples --bin settler
//! ```
#![allow(clippy::print_stdout)]

use std::{net::SocketAddr, path::PathBuf};

use actp_client::{ClientConfig, Kernel, Signer};
use actp_core::Address;
use actp_settler::{Settler, SettlerConfig};
use clap::Parser;

#[derive(Parser)]
#[command(about = "An example settlement bot")]
struct Args {
    /// JSON-RPC endpoint.
    #[arg(long, env = "ACTP_RPC_URL", hide_env_values = true)]
    rpc_url: String,
    /// The escrow kernel.
    #[arg(long, env = "ACTP_KERNEL")]
    kernel: Address,
    /// The kernel's deployment block (where the event scan starts the first time).
    #[arg(long, env = "ACTP_FROM_BLOCK", default_value_t = 0)]
    from_block: u64,
    /// Where the checkpoint lives.
    #[arg(long, env = "ACTP_DATA_DIR", default_value = ".actp/settler")]
    data_dir: PathBuf,
    /// Serve /health and /metrics here.
    #[arg(long, env = "ACTP_SETTLER_LISTEN", default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let key = std::env::var("ACTP_PRIVATE_KEY")
        .map_err(|_| "set ACTP_PRIVATE_KEY to the bot's key (it pays the gas)")?;
    let kernel = Kernel::connect(
        &args.rpc_url,
        args.kernel,
        Some(Signer::from_private_key(&key)?),
        ClientConfig::default(),
    )
    .await?;
    let settler = Settler::open(
        kernel,
        SettlerConfig {
            store: actp_settler::StoreUrl::Sled(args.data_dir),
            from_block: args.from_block,
            ..SettlerConfig::default()
        },
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("settling; health on http://{}/health", args.listen);
    tokio::spawn(actp_settler::health::serve(
        listener,
        settler.metrics(),
        std::future::pending(),
    ));
    let done = settler
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("settled {} in {} transactions", done.settled, done.batches);
    Ok(())
}
