//! `actp balance` and `actp mint`.

use actp_core::{Address, Amount};
use serde::Serialize;

use crate::{
    context::{Ctx, no_signer},
    error::{CliError, Exit, Result},
};
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct BalanceArgs {
    /// Whose balance (default: the signer).
    pub(crate) address: Option<Address>,
}

#[derive(Debug, Args)]
pub(crate) struct MintArgs {
    /// How much: "100", "$0.10", "100000 units".
    pub(crate) amount: Amount,
    /// To whom (default: the signer).
    #[arg(long)]
    pub(crate) to: Option<Address>,
}

#[derive(Debug, Serialize)]
struct Balance {
    address: Address,
    token: Address,
    balance: String,
    balance_base_units: String,
}

pub(crate) async fn balance(ctx: &Ctx, args: BalanceArgs) -> Result<()> {
    let (kernel, target) = ctx.kernel(false).await?;
    let address = match args.address {
        Some(a) => a,
        None => kernel.signer_address().ok_or_else(|| {
            CliError::usage(format!(
                "whose balance? give an address, or configure a key ({})",
                no_signer(&target).message
            ))
        })?,
    };
    let units = kernel.balance_of(address).await?;
    let shown = Amount::try_from_u256(units).map_or_else(|_| units.to_string(), |a| a.to_string());
    let out = Balance {
        address,
        token: kernel.token(),
        balance: shown.clone(),
        balance_base_units: units.to_string(),
    };
    ctx.out.result(&out, || shown);
    Ok(())
}

pub(crate) async fn mint(ctx: &Ctx, args: MintArgs) -> Result<()> {
    let (kernel, _) = ctx.kernel(true).await?;
    let to = args
        .to
        .or(kernel.signer_address())
        .ok_or_else(|| CliError::usage("mint to whom? pass --to"))?;
    let sent = kernel.mint(to, args.amount.to_u256()).await.map_err(|e| {
        let e = CliError::from(e);
        if e.exit == Exit::Rejected {
            e.context("mint works with the dev token (MockUSDC) only")
        } else {
            e
        }
    })?;
    let units = kernel.balance_of(to).await?;
    #[derive(Serialize)]
    struct Minted {
        to: Address,
        amount: String,
        balance: String,
        tx_hash: actp_core::B256,
    }
    let balance =
        Amount::try_from_u256(units).map_or_else(|_| units.to_string(), |a| a.to_string());
    let out = Minted {
        to,
        amount: args.amount.to_string(),
        balance: balance.clone(),
        tx_hash: sent.tx_hash,
    };
    ctx.out.info(format!("minted {} to {to}", args.amount));
    ctx.out.result(&out, || balance);
    Ok(())
}
