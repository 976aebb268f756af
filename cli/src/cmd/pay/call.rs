//! `actp call`: one call, paid by itself within the agent's spend policy: an escrow of its own, or a session
//! with the provider (`--session`).

use std::io::Read;

use actp_pay::{AfterDelivery, OnMismatch, PayConfig, PayingClient, PaymentState};
use base64::Engine;
use clap::Args;
use serde::Serialize;

use super::open_ledger;
use crate::{
    args,
    context::Ctx,
    error::{CliError, Result},
};

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// The URL to call.
    pub(crate) url: String,
    /// HTTP method (default: GET, or POST with -d).
    #[arg(short = 'X', long)]
    pub(crate) request: Option<String>,
    /// Request body; `@FILE` reads a file, `@-` standard input. Implies POST unless -X is given.
    #[arg(short = 'd', long)]
    pub(crate) data: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub(crate) headers: Vec<String>,
    /// The call's idempotency key: however often this call is repeated with it, at most one escrow is paid.
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
    /// Settle the escrow at once once the delivery checks out (default: leave it to the dispute window).
    #[arg(long)]
    pub(crate) settle: bool,
    /// Do not dispute a delivery that does not match its proof (only report it).
    #[arg(long)]
    pub(crate) no_dispute: bool,
    /// Attempts of the paid request while the provider fails (same escrow each time).
    #[arg(long, default_value_t = 3)]
    pub(crate) attempts: u32,
    /// Lifetime of the escrow: a provider that never serves ties the money up until then.
    #[arg(long, default_value = "15m")]
    pub(crate) escrow_ttl: args::Duration,
    /// Pay from a session with the provider (one escrow for many calls): the agent's open session with it, or
    /// a new one sized by the policy's `session_calls` and `max_session_deposit`. A provider that offers no
    /// session for the route is paid per call. (`budget set --sessions true` makes this the default.)
    #[arg(long)]
    pub(crate) session: bool,
}

fn read_body(data: &str) -> Result<Vec<u8>> {
    match data.strip_prefix('@') {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| CliError::failure(format!("cannot read standard input: {e}")))?;
            Ok(buf)
        }
        Some(path) => std::fs::read(path)
            .map_err(|e| CliError::not_found(format!("cannot read the body file {path}: {e}"))),
        None => Ok(data.as_bytes().to_vec()),
    }
}

#[derive(Serialize)]
struct CallOutput {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
    payment: Option<actp_pay::Payment>,
    /// For a call paid from a session: the provider's receipt, checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt: Option<ReceiptView>,
}

/// A session receipt in the JSON output; amounts in base units.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReceiptView {
    seq: u64,
    charge: String,
    charged: String,
    remaining: String,
    request_hash: actp_core::B256,
    result_hash: actp_core::B256,
    previous: actp_core::B256,
}

impl From<&actp_core::session::SessionReceipt> for ReceiptView {
    fn from(r: &actp_core::session::SessionReceipt) -> Self {
        ReceiptView {
            seq: r.seq,
            charge: r.charge.to_string(),
            charged: r.charged.to_string(),
            remaining: r.remaining.to_string(),
            request_hash: r.requestHash,
            result_hash: r.resultHash,
            previous: r.previous,
        }
    }
}

pub(crate) async fn call(ctx: &Ctx, args: CallArgs) -> Result<()> {
    let method = match (&args.request, &args.data) {
        (Some(m), _) => m.to_ascii_uppercase(),
        (None, Some(_)) => "POST".to_owned(),
        (None, None) => "GET".to_owned(),
    };
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| CliError::usage(format!("{method:?} is not an HTTP method")))?;
    let body = args.data.as_deref().map(read_body).transpose()?;
    let (kernel, _) = ctx.kernel(true).await?;
    let ledger = open_ledger(ctx).await?;
    let config = PayConfig {
        escrow_ttl: args.escrow_ttl.0,
        attempts: args.attempts,
        after_delivery: if args.settle {
            AfterDelivery::SettleNow
        } else {
            AfterDelivery::LeaveToWindow
        },
        on_mismatch: if args.no_dispute {
            OnMismatch::Record
        } else {
            OnMismatch::Dispute
        },
        ..PayConfig::default()
    };
    let client = PayingClient::with_config(kernel, ledger, config)
        .await?
        .http_client(ctx.http_client(None)?);
    let mut request = client.request(method, &args.url);
    for header in &args.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            CliError::usage(format!(
                "header {header:?} is not `Name: value`: write e.g. -H 'Accept: application/json'"
            ))
        })?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    if let Some(key) = &args.idempotency_key {
        request = request.idempotency_key(key.clone());
    }
    if args.session {
        request = request.session(true);
    }
    let response = request.send().await?;
    if let (Some(p), Some(r)) = (&response.payment, &response.receipt) {
        let amount = |v: actp_core::U256| {
            actp_core::Amount::try_from_u256(v).map_or_else(|_| v.to_string(), |a| a.to_string())
        };
        ctx.out.info(format!(
            "paid {} from session {} (receipt {} verified; {} charged so far, {} of the deposit left)",
            amount(r.charge),
            p.tx_id.map(|t| t.to_string()).unwrap_or_default(),
            r.seq,
            amount(r.charged),
            amount(r.remaining),
        ));
    } else if let Some(p) = &response.payment {
        ctx.out.info(format!(
            "paid {} into escrow {} (provider {}, fee {}); proof {} {}; {}",
            p.amount,
            p.tx_id.map(|t| t.to_string()).unwrap_or_default(),
            p.provider,
            p.fee,
            p.proof_hash.map(|h| h.to_string()).unwrap_or_default(),
            if p.state == PaymentState::Served || p.state == PaymentState::Settled {
                "verified"
            } else {
                "not verified"
            },
            if p.state == PaymentState::Settled {
                "settled"
            } else {
                "left to the dispute window"
            }
        ));
    }
    let status = response.status;
    let text = String::from_utf8(response.body.to_vec()).ok();
    let out = CallOutput {
        status: status.as_u16(),
        body_base64: text
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(&response.body)),
        body: text,
        payment: response.payment,
        receipt: response.receipt.as_ref().map(ReceiptView::from),
    };
    if ctx.global.json {
        ctx.out.result(&out, String::new);
    } else {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&response.body)
            .and_then(|()| stdout.flush())
            .map_err(|e| CliError::failure(format!("cannot write the body: {e}")))?;
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(CliError::failure(format!("{} answered {status}", args.url)))
    }
}
