//! `actp deploy`: the kernel (and MockUSDC unless `--token`) on any RPC; prints the deployment JSON.

use actp_client::{DeployOptions, Kernel};

use crate::{
    args::DeployArgs,
    context::{Ctx, no_signer},
    error::{CliError, Result},
};

pub(crate) async fn run(ctx: &Ctx, args: DeployArgs) -> Result<()> {
    let target = ctx.target()?;
    let (signer, raw) = ctx.signer(&target)?.ok_or_else(|| no_signer(&target))?;
    let deployer = Kernel::connect_for_deployment(&target.rpc_url, signer, ctx.client_config())
        .await
        .map_err(|e| CliError::from(e).context("cannot reach the RPC"))?;
    ctx.check_chain(deployer.chain_id(), raw)?;
    ctx.out.info(format!(
        "deploying to chain {} as {}{}",
        deployer.chain_id(),
        deployer.signer_address().unwrap_or_default(),
        if args.token.is_none() {
            " (with MockUSDC, a dev token: pass --token for a real one)"
        } else {
            ""
        }
    ));
    let deployment = actp_client::deploy(
        &deployer,
        DeployOptions {
            token: args.token,
            admin: args.admin,
            fee_recipient: args.fee_recipient,
            fee_bps: args.fee_bps,
        },
    )
    .await?;
    ctx.out.result(&deployment, || {
        serde_json::to_string_pretty(&deployment).unwrap_or_default()
    });
    Ok(())
}
