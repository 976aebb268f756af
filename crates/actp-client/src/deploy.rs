//! Deploys the kernel (and MockUSDC when no token is given) from the bytecode in the committed artifacts:
//! the same contracts as `contracts/script/Deploy.s.sol`, from Rust, for the devnet and `actp deploy`.

use actp_core::Address;
use alloy::{primitives::Bytes, sol_types::SolConstructor};

use crate::{
    ClientError, Kernel, Result,
    bindings::{EscrowKernel, MockUSDC},
};

/// Where a deployment landed: the fields of the deployment JSON (addresses EIP-55 checksummed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deployment {
    /// Chain id.
    pub chain_id: u64,
    /// The kernel.
    #[serde(with = "actp_core::checksum")]
    pub kernel: Address,
    /// The escrow vault (the kernel itself).
    #[serde(with = "actp_core::checksum")]
    pub escrow_vault: Address,
    /// The escrow token.
    #[serde(with = "actp_core::checksum")]
    pub token: Address,
    /// A block at or before the deployment: event scans start here.
    pub block: u64,
}

/// Options of a deployment.
#[derive(Debug, Clone, Copy)]
pub struct DeployOptions {
    /// An existing token; `None` deploys MockUSDC (development only).
    pub token: Option<Address>,
    /// Admin (default: the deployer).
    pub admin: Option<Address>,
    /// Fee recipient (default: the admin).
    pub fee_recipient: Option<Address>,
    /// Platform fee in basis points.
    pub fee_bps: u16,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            token: None,
            admin: None,
            fee_recipient: None,
            fee_bps: 100,
        }
    }
}

/// Deploys with the signer of `deployer` (a client from [`Kernel::for_deployment`], or any client: only its
/// signer and provider are used).
pub async fn deploy(deployer: &Kernel, options: DeployOptions) -> Result<Deployment> {
    let me = deployer
        .signer_address()
        .ok_or_else(|| ClientError::Config("deploying needs a signing key".into()))?;
    if options.fee_bps > actp_core::limits::MAX_PLATFORM_FEE_BPS {
        return Err(ClientError::Config(format!(
            "fee {} bps is above the cap of {} bps",
            options.fee_bps,
            actp_core::limits::MAX_PLATFORM_FEE_BPS
        )));
    }
    let block = deployer.block_number().await?;
    let token = match options.token {
        Some(t) => {
            deployer.check_token(t).await?;
            t
        }
        None => created(deployer.send(None, MockUSDC::BYTECODE.clone()).await?)?,
    };
    let admin = options.admin.unwrap_or(me);
    let fee_recipient = options.fee_recipient.unwrap_or(admin);
    let args = EscrowKernel::constructorCall {
        token_: token,
        admin_: admin,
        feeRecipient_: fee_recipient,
        feeBps_: options.fee_bps,
    }
    .abi_encode();
    let mut init = EscrowKernel::BYTECODE.to_vec();
    init.extend_from_slice(&args);
    let kernel = created(deployer.send(None, Bytes::from(init)).await?)?;
    Ok(Deployment {
        chain_id: deployer.chain_id(),
        kernel,
        escrow_vault: kernel,
        token,
        block,
    })
}

fn created(sent: crate::kernel::Sent) -> Result<Address> {
    sent.contract_address
        .ok_or_else(|| ClientError::protocol("the deployment receipt has no contract address"))
}
