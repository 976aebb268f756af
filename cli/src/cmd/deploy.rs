//! `actp deploy`: the kernel on any RPC, with the network's USDC (or `--token`, or MockUSDC on a devnet);
//! prints the deployment JSON and records it in `<data-dir>/deployments/<chainId>.json`, where every other
//! command finds the kernel and the block to scan its events from.

use actp_client::{DeployOptions, Deployment, Kernel};

use crate::{
    context::{Ctx, deployment_path, no_signer},
    error::{CliError, Result},
};
use actp_core::Address;
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The escrow token (default: the network's USDC on base and base-sepolia; a fresh MockUSDC elsewhere).
    /// It must have 6 decimals.
    #[arg(long, conflicts_with = "mock_token")]
    pub(crate) token: Option<Address>,
    /// Deploy a MockUSDC dev token (anyone may mint it) even where the network has USDC.
    #[arg(long)]
    pub(crate) mock_token: bool,
    /// Admin (default: the deployer).
    #[arg(long)]
    pub(crate) admin: Option<Address>,
    /// Fee recipient (default: the admin).
    #[arg(long)]
    pub(crate) fee_recipient: Option<Address>,
    /// Platform fee in basis points.
    #[arg(long, default_value_t = 100)]
    pub(crate) fee_bps: u16,
}

pub(crate) async fn run(ctx: &Ctx, args: DeployArgs) -> Result<()> {
    let mut target = ctx.target()?;
    let (signer, raw) = ctx.signer(&target)?.ok_or_else(|| no_signer(&target))?;
    let (provider, chain_id) = ctx.connect(&mut target).await?;
    ctx.check_raw_key(chain_id, raw)?;
    let deployer = Kernel::for_deployment(provider, signer, ctx.client_config(chain_id)?)
        .await
        .map_err(|e| CliError::from(e).context("cannot reach the RPC"))?;
    let token = args
        .token
        .or(target.network.and_then(|n| n.usdc))
        .filter(|_| !args.mock_token);
    let token_note = match (token, target.network) {
        (None, _) => " with MockUSDC, a dev token (pass --token for a real one)".to_owned(),
        (Some(t), Some(n)) if n.usdc == Some(t) => format!(" with {n}'s USDC {t}"),
        (Some(t), _) => format!(" with token {t}"),
    };
    ctx.out.info(format!(
        "deploying to chain {chain_id} as {}{token_note}",
        deployer.signer_address().unwrap_or_default(),
    ));
    let deployment = actp_client::deploy(
        &deployer,
        DeployOptions {
            token,
            admin: args.admin,
            fee_recipient: args.fee_recipient,
            fee_bps: args.fee_bps,
        },
    )
    .await?;
    let path = record(ctx, &deployment)?;
    ctx.out.info(format!("recorded in {}", path.display()));
    ctx.out.result(&deployment, || {
        serde_json::to_string_pretty(&deployment).unwrap_or_default()
    });
    Ok(())
}

/// Writes the deployment record atomically (a crash leaves the old record or the new one, never half).
fn record(ctx: &Ctx, deployment: &Deployment) -> Result<std::path::PathBuf> {
    let path = deployment_path(&ctx.global.data_dir, deployment.chain_id);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(deployment).unwrap_or_default() + "\n";
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        CliError::failure(format!(
            "deployed kernel {} (block {}), but could not record it in {}: {e}; pass --kernel {} from now on",
            deployment.kernel,
            deployment.block,
            path.display(),
            deployment.kernel
        ))
    })?;
    Ok(path)
}
