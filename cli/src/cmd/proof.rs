//! `actp proof hash` and `actp proof verify`.

use std::{io::Read as _, path::Path};

use actp_core::{
    B256,
    eip712::actp_domain,
    proof::{SignedDeliveryProof, aip4, content_hash, verify_delivery},
};
use serde::Serialize;

use std::path::PathBuf;

use crate::{
    context::Ctx,
    error::{CliError, Result},
};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub(crate) enum ProofCommand {
    /// The content hash (keccak256) of a file, `-` for stdin: the resultHash of a delivery.
    Hash(HashArgs),
    /// Check a delivery: the body against its signed proof, the provider's signature, and the proof hash
    /// (given, or recorded on chain).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HashArgs {
    /// The file (`-`: stdin).
    pub(crate) file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The response body received (`-`: stdin).
    #[arg(long)]
    pub(crate) body: PathBuf,
    /// The X-AGIRAILS-DELIVERY-PROOF header value, or @FILE with the JSON of an AIP-4 proof an ACTP SDK
    /// signed.
    #[arg(long)]
    pub(crate) proof: String,
    /// The X-AGIRAILS-PROOF-HASH header value, if you have it.
    #[arg(long)]
    pub(crate) proof_hash: Option<B256>,
    /// Also check against the chain: the transaction's provider and the proof hash it recorded.
    #[arg(long)]
    pub(crate) onchain: bool,
}

pub(crate) async fn run(ctx: &Ctx, cmd: ProofCommand) -> Result<()> {
    match cmd {
        ProofCommand::Hash(args) => hash(ctx, args),
        ProofCommand::Verify(args) => verify(ctx, args).await,
    }
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::failure(format!("cannot read stdin: {e}")))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            CliError::not_found(format!("{} does not exist", path.display()))
        }
        _ => CliError::failure(format!("cannot read {}: {e}", path.display())),
    })
}

/// The content hash of a file (or stdin) and its length.
pub(crate) fn hash_file(path: &Path) -> Result<(B256, usize)> {
    let bytes = read_input(path)?;
    Ok((content_hash(&bytes), bytes.len()))
}

fn hash(ctx: &Ctx, args: HashArgs) -> Result<()> {
    let (hash, bytes) = hash_file(&args.file)?;
    #[derive(Serialize)]
    struct Hashed {
        file: String,
        bytes: usize,
        content_hash: B256,
    }
    let out = Hashed {
        file: args.file.display().to_string(),
        bytes,
        content_hash: hash,
    };
    ctx.out.result(&out, || hash.to_string());
    Ok(())
}

#[derive(Debug, Serialize)]
struct Verified {
    valid: bool,
    tx_id: B256,
    provider: actp_core::Address,
    result_hash: B256,
    proof_hash: B256,
    /// Whether the proof binds the request served (this project's paywall); an SDK's proof does not.
    bound_to_request: bool,
    /// Whether the chain was consulted (provider of record and the recorded proof hash).
    onchain: bool,
}

async fn verify(ctx: &Ctx, args: VerifyArgs) -> Result<()> {
    let body = read_input(&args.body)?;
    let text = match args.proof.strip_prefix('@') {
        Some(path) => String::from_utf8_lossy(&read_input(Path::new(path))?).into_owned(),
        None => args.proof.clone(),
    };
    let signed = SignedDeliveryProof::from_header_value(&text).map_err(|e| {
        CliError::usage(format!(
            "--proof: {e}; pass the X-AGIRAILS-DELIVERY-PROOF header value, or @FILE with an AIP-4 proof's JSON"
        ))
    })?;
    let tx_id = signed.proof.txId;
    let (domain, provider, announced) = if args.onchain {
        let (kernel, target) = ctx.kernel(false).await?;
        let record = kernel.get(tx_id).await?;
        let from = target.scan_from(None, kernel.address())?;
        let recorded = kernel.recorded_proof_hash(tx_id, from).await?.ok_or_else(|| {
            CliError::not_found(format!(
                "no proof hash recorded on chain for {tx_id} yet (state {}): try again once it is DELIVERED",
                record.state
            ))
        })?;
        if let Some(h) = args.proof_hash
            && h != recorded
        {
            return Err(CliError::failure(format!(
                "the proof hash given ({h}) is not the one recorded on chain ({recorded})"
            )));
        }
        (kernel.domain(), record.provider, Some(recorded))
    } else {
        // Offline: the kernel's address is all the domain needs.
        let kernel = match ctx.global.kernel {
            Some(k) => k,
            None => ctx.target()?.kernel.ok_or_else(|| {
                CliError::usage(
                    "the proof's domain needs the kernel address: set --kernel (ACTP_KERNEL)",
                )
            })?,
        };
        let chain_id: u64 = signed.proof.chainId.saturating_to();
        let (_, provider) = aip4::parse_did(&signed.proof.provider)
            .map_err(|e| CliError::failure(format!("the delivery does not check out: {e}")))?;
        (actp_domain(chain_id, kernel), provider, args.proof_hash)
    };
    let proof_hash = verify_delivery(&signed, &body, tx_id, provider, &domain, announced)
        .map_err(|e| CliError::failure(format!("the delivery does not check out: {e}")))?;
    let out = Verified {
        valid: true,
        tx_id,
        provider,
        result_hash: signed.proof.resultHash,
        proof_hash,
        bound_to_request: signed.binding.is_some(),
        onchain: args.onchain,
    };
    ctx.out.result(&out, || {
        format!(
            "valid: the body matches the proof, signed by provider {provider}{}; proof hash {proof_hash}",
            if args.onchain { ", recorded on chain" } else { "" }
        )
    });
    Ok(())
}
