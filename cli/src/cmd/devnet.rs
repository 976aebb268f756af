//! `actp devnet`: anvil with the kernel, MockUSDC and funded dev accounts, until Ctrl-C. Writes
//! `<data-dir>/devnet.json`, which every other command uses when no RPC is given, and removes it on exit.

use actp_client::{Devnet, DevnetOptions};

use crate::{
    context::{Ctx, DevAccount, DevnetConfig, devnet_path},
    error::{CliError, Result},
};
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct DevnetArgs {
    /// Port for anvil (default: any free port).
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// Seconds between blocks (default: a block per transaction).
    #[arg(long)]
    pub(crate) block_time: Option<f64>,
    /// Dev accounts to fund.
    #[arg(long, default_value_t = 10)]
    pub(crate) accounts: usize,
    /// Platform fee in basis points.
    #[arg(long, default_value_t = 100)]
    pub(crate) fee_bps: u16,
}

pub(crate) async fn run(ctx: &Ctx, args: DevnetArgs) -> Result<()> {
    let devnet = Devnet::start_with(DevnetOptions {
        accounts: args.accounts.max(2),
        port: args.port,
        block_time: args.block_time,
        fee_bps: args.fee_bps,
        ..DevnetOptions::default()
    })
    .await?;
    let config = config_of(&devnet);
    let path = write_config(ctx, &config)?;

    ctx.out.result(&config, || {
        let mut text = format!(
            "devnet running at {} (chain {})\n  kernel        {}\n  escrow vault  {}\n  token         {} (MockUSDC, open mint)\n  config        {}\n\ndev accounts (anvil's public test keys; never use them elsewhere):\n",
            config.rpc_url,
            config.chain_id,
            config.kernel,
            config.escrow_vault,
            config.token,
            path.display()
        );
        for (i, a) in config.accounts.iter().enumerate() {
            let role = match i {
                0 => "  admin, fee recipient",
                _ => "",
            };
            text.push_str(&format!("  {i}  {}  {}{role}\n", a.address, a.private_key));
        }
        text.push_str("\nother commands use this devnet while it runs, e.g. `actp --account 2 balance`. Ctrl-C stops it.");
        text
    });
    super::shutdown_signal().await;
    ctx.out.info("stopping the devnet");
    remove_config(&path, &config);
    drop(devnet);
    Ok(())
}

pub(crate) fn config_of(devnet: &Devnet) -> DevnetConfig {
    let d = devnet.deployment();
    DevnetConfig {
        rpc_url: devnet.rpc_url(),
        chain_id: d.chain_id,
        kernel: d.kernel,
        escrow_vault: d.escrow_vault,
        token: d.token,
        block: d.block,
        accounts: devnet
            .accounts()
            .iter()
            .zip(devnet.dev_private_keys())
            .map(|(s, private_key)| DevAccount {
                address: s.address(),
                private_key,
            })
            .collect(),
    }
}

fn write_config(ctx: &Ctx, config: &DevnetConfig) -> Result<std::path::PathBuf> {
    let dir = &ctx.global.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", dir.display())))?;
    let path = devnet_path(dir);
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(config).map_err(|e| CliError::failure(e.to_string()))?;
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// Removes the config if it is still ours (another devnet may have replaced it).
fn remove_config(path: &std::path::Path, config: &DevnetConfig) {
    let ours = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<DevnetConfig>(&b).ok())
        .is_some_and(|c| c.rpc_url == config.rpc_url);
    if ours {
        let _ = std::fs::remove_file(path);
    }
}
