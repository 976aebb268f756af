//! `actp call`, `actp budget` and `actp usage`: the consumer side, over `actp-pay`. The ledger lives in
//! `<data-dir>/pay` (sled, one process at a time; the kill switch is a file next to it, so `actp budget
//! suspend` works while an agent runs), or in the PostgreSQL database of `--store`, which agent processes and
//! these commands share while they run.
//!
//! - [`call`]: one paid call (per call, or from a session);
//! - [`budget`]: the spend policy and the kill switch;
//! - [`usage`]: what was spent, by provider, route or day.

mod budget;
mod call;
mod usage;

pub(crate) use budget::{BudgetCommand, budget};
pub(crate) use call::{CallArgs, call};
pub(crate) use usage::{UsageArgs, usage};

use actp_core::Address;
use actp_pay::Ledger;

use crate::{
    context::{Ctx, no_signer},
    error::{CliError, Result},
};

/// Where the ledger is: `<data-dir>/pay`, or the `--store` database.
pub(crate) fn ledger_store(ctx: &Ctx) -> actp_store::StoreUrl {
    ctx.store("pay")
}

pub(crate) async fn open_ledger(ctx: &Ctx) -> Result<Ledger> {
    Ledger::open(&ledger_store(ctx))
        .await
        .map_err(CliError::from)
}

/// The agent named, or the configured signer's address.
pub(crate) fn agent(ctx: &Ctx, given: Option<Address>) -> Result<Address> {
    if let Some(a) = given {
        return Ok(a);
    }
    let target = ctx.target().map_err(|_| {
        CliError::usage("which agent? give its address, or configure its key (ACTP_PRIVATE_KEY, --keystore, or --account on the devnet)")
    })?;
    match ctx.signer(&target)? {
        Some((signer, _)) => Ok(signer.address()),
        None => Err(CliError::usage(format!(
            "which agent? give its address, or configure its key ({})",
            no_signer(&target).message
        ))),
    }
}
