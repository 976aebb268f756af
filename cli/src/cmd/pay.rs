//! `actp call`, `actp budget` and `actp usage`: the consumer side, over `actp-pay`. The ledger lives in
//! `<data-dir>/pay`; the kill switch next to it, so `actp budget suspend` works while an agent runs.

use std::io::Read;

use actp_core::{Address, Amount};
use actp_pay::{
    AfterDelivery, GroupBy, KillSwitch, Ledger, OnMismatch, PayConfig, PayingClient, PaymentState,
    SpendPolicy, UsageQuery, UsageReport,
};
use base64::Engine;
use serde::Serialize;

use crate::{
    args::{AgentArg, BudgetCommand, BudgetSetArgs, CallArgs, SuspendArgs, UsageArgs, UsageBy},
    context::{Ctx, no_signer},
    error::{CliError, Result},
};

fn ledger_dir(ctx: &Ctx) -> std::path::PathBuf {
    ctx.global.data_dir.join("pay")
}

fn open_ledger(ctx: &Ctx) -> Result<Ledger> {
    Ledger::open(ledger_dir(ctx)).map_err(CliError::from)
}

/// The agent named, or the configured signer's address.
fn agent(ctx: &Ctx, given: Option<Address>) -> Result<Address> {
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
    let ledger = open_ledger(ctx)?;
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
    let response = request.send().await?;
    if let Some(p) = &response.payment {
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

pub(crate) async fn budget(ctx: &Ctx, cmd: BudgetCommand) -> Result<()> {
    match cmd {
        BudgetCommand::Set(args) => set(ctx, *args),
        BudgetCommand::Show(AgentArg { agent: a }) => show(ctx, agent(ctx, a)?),
        BudgetCommand::Suspend(SuspendArgs { agent: a, reason }) => {
            let agent = agent(ctx, a)?;
            KillSwitch::new(ledger_dir(ctx)).suspend(agent, reason.as_deref())?;
            #[derive(Serialize)]
            struct Suspended {
                agent: Address,
                suspended: bool,
                reason: Option<String>,
            }
            ctx.out.result(
                &Suspended {
                    agent,
                    suspended: true,
                    reason,
                },
                || format!("{agent} suspended: no new payment until `actp budget resume {agent}`"),
            );
            Ok(())
        }
        BudgetCommand::Resume(AgentArg { agent: a }) => {
            let agent = agent(ctx, a)?;
            KillSwitch::new(ledger_dir(ctx)).resume(agent)?;
            #[derive(Serialize)]
            struct Resumed {
                agent: Address,
                suspended: bool,
            }
            ctx.out.result(
                &Resumed {
                    agent,
                    suspended: false,
                },
                || format!("{agent} resumed: it may pay again within its policy"),
            );
            Ok(())
        }
    }
}

fn set(ctx: &Ctx, args: BudgetSetArgs) -> Result<()> {
    let agent = agent(ctx, args.agent)?;
    let ledger = open_ledger(ctx)?;
    let mut policy = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::not_found(format!("cannot read the policy {}: {e}", path.display()))
            })?;
            SpendPolicy::from_toml(&text)
                .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?
        }
        None => ledger.policy(agent)?,
    };
    for field in &args.clear {
        match field.as_str() {
            "per_call" => policy.per_call = None,
            "daily" => policy.daily = None,
            "monthly" => policy.monthly = None,
            "provider_daily" => policy.provider_daily = None,
            "provider_monthly" => policy.provider_monthly = None,
            "allow" => policy.allow.clear(),
            "deny" => policy.deny.clear(),
            "soft_threshold" => policy.soft_threshold = None,
            "max_escrow_ttl" => policy.max_escrow_ttl = None,
            _ => policy.providers.clear(),
        }
    }
    let set = |slot: &mut Option<Amount>, value: Option<Amount>| {
        if value.is_some() {
            *slot = value;
        }
    };
    set(&mut policy.per_call, args.per_call);
    set(&mut policy.daily, args.daily);
    set(&mut policy.monthly, args.monthly);
    set(&mut policy.provider_daily, args.provider_daily);
    set(&mut policy.provider_monthly, args.provider_monthly);
    for a in args.allow {
        if !policy.allow.contains(&a) {
            policy.allow.push(a);
        }
    }
    for d in args.deny {
        if !policy.deny.contains(&d) {
            policy.deny.push(d);
        }
    }
    if args.soft_threshold.is_some() {
        policy.soft_threshold = args.soft_threshold;
    }
    if let Some(ttl) = args.max_escrow_ttl {
        policy.max_escrow_ttl = Some(ttl.0.as_secs());
    }
    policy
        .validate()
        .map_err(|e| CliError::usage(e.to_string()))?;
    ledger.set_policy(agent, &policy)?;
    #[derive(Serialize)]
    struct Set<'a> {
        agent: Address,
        policy: &'a SpendPolicy,
    }
    ctx.out.result(
        &Set {
            agent,
            policy: &policy,
        },
        || format!("policy of {agent}:\n{}", describe(&policy)),
    );
    Ok(())
}

fn describe(policy: &SpendPolicy) -> String {
    let text = policy.to_toml();
    if text.trim().is_empty() {
        "  (no caps: any spend is allowed)".into()
    } else {
        text.lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[derive(Serialize)]
struct PeriodView {
    period: String,
    spent: Amount,
    reserved: Amount,
    cap: Option<Amount>,
    remaining: Option<Amount>,
}

#[derive(Serialize)]
struct BudgetView {
    agent: Address,
    suspended: bool,
    suspended_reason: Option<String>,
    policy: SpendPolicy,
    today: PeriodView,
    this_month: PeriodView,
}

fn show(ctx: &Ctx, agent: Address) -> Result<()> {
    let ledger = open_ledger(ctx)?;
    let policy = ledger.policy(agent)?;
    let suspension = ledger.kill_switch().suspended(agent);
    let (day, month) = Ledger::periods(actp_pay::ledger::unix_now());
    let view = |period: &str, cap: Option<Amount>| -> Result<PeriodView> {
        let totals = ledger.totals(agent, period, None)?;
        Ok(PeriodView {
            period: period[1..].to_owned(),
            spent: totals.spent,
            reserved: totals.reserved,
            cap,
            remaining: cap.map(|c| c.checked_sub(totals.used()).unwrap_or(Amount::ZERO)),
        })
    };
    let out = BudgetView {
        agent,
        suspended: suspension.is_some(),
        suspended_reason: suspension.clone().flatten(),
        today: view(&day, policy.daily)?,
        this_month: view(&month, policy.monthly)?,
        policy,
    };
    ctx.out.result(&out, || {
        let line = |name: &str, p: &PeriodView| {
            format!(
                "{name:<11}{}: spent {}, reserved {}{}",
                p.period,
                p.spent,
                p.reserved,
                p.cap
                    .map(|c| format!(", cap {c}, remaining {}", p.remaining.unwrap_or_default()))
                    .unwrap_or_default()
            )
        };
        let status = match &suspension {
            Some(reason) => format!(
                "SUSPENDED{}",
                reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            None => "active".into(),
        };
        format!(
            "agent {agent}: {status}\npolicy:\n{}\n{}\n{}",
            describe(&out.policy),
            line("today", &out.today),
            line("this month", &out.this_month)
        )
    });
    Ok(())
}

pub(crate) async fn usage(ctx: &Ctx, args: UsageArgs) -> Result<()> {
    let agent = agent(ctx, args.agent)?;
    let ledger = open_ledger(ctx)?;
    let report = ledger.usage(
        agent,
        &UsageQuery {
            by: match args.by {
                UsageBy::Provider => GroupBy::Provider,
                UsageBy::Route => GroupBy::Route,
                UsageBy::Day => GroupBy::Day,
            },
            since: args.since,
            until: args.until,
        },
    )?;
    ctx.out.result(&report, || table(&report));
    Ok(())
}

/// The report as an aligned table with a total line.
fn table(report: &UsageReport) -> String {
    let head = match report.by {
        GroupBy::Provider => "provider",
        GroupBy::Route => "route",
        GroupBy::Day => "day",
    };
    let width = report
        .rows
        .iter()
        .map(|r| r.key.len())
        .chain([head.len(), 5])
        .max()
        .unwrap_or(8);
    let mut out = format!(
        "usage of {}\n{head:<width$}  {:>5}  {:>10}  {:>10}  {:>10}  {:>10}\n",
        report.agent, "calls", "spent", "fees", "refunded", "reserved"
    );
    for row in report.rows.iter().chain([&report.total]) {
        out.push_str(&format!(
            "{:<width$}  {:>5}  {:>10}  {:>10}  {:>10}  {:>10}\n",
            row.key,
            row.calls,
            row.spent.to_string(),
            row.fees.to_string(),
            row.refunded.to_string(),
            row.reserved.to_string()
        ));
    }
    out.trim_end().to_owned()
}
