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

use std::path::PathBuf;

use crate::{
    args,
    context::{Ctx, no_signer},
    error::{CliError, Result},
};
use clap::{Args, Subcommand, ValueEnum};

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
}

#[derive(Debug, Subcommand)]
pub(crate) enum BudgetCommand {
    /// Set the spend policy: from a TOML file, and/or field by field on top of the current one.
    Set(Box<BudgetSetArgs>),
    /// The policy, the kill switch, and what is spent and reserved today and this month.
    Show(AgentArg),
    /// Stop every new payment of the agent at once, in every process sharing the data directory.
    Suspend(SuspendArgs),
    /// Let the agent pay again.
    Resume(AgentArg),
}

#[derive(Debug, Args)]
pub(crate) struct AgentArg {
    /// The agent (its signing address). Default: the configured signer.
    pub(crate) agent: Option<Address>,
}

#[derive(Debug, Args)]
pub(crate) struct SuspendArgs {
    /// The agent (its signing address). Default: the configured signer.
    pub(crate) agent: Option<Address>,
    /// Why, shown to the agent's refused calls.
    #[arg(long)]
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct BudgetSetArgs {
    /// The agent (its signing address). Default: the configured signer.
    pub(crate) agent: Option<Address>,
    /// A TOML policy file: replaces the whole policy (flags then apply on top).
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// Most paid for one call.
    #[arg(long)]
    pub(crate) per_call: Option<Amount>,
    /// Most spent in one UTC day, all providers.
    #[arg(long)]
    pub(crate) daily: Option<Amount>,
    /// Most spent in one UTC month, all providers.
    #[arg(long)]
    pub(crate) monthly: Option<Amount>,
    /// Most spent with any one provider in one UTC day.
    #[arg(long)]
    pub(crate) provider_daily: Option<Amount>,
    /// Most spent with any one provider in one UTC month.
    #[arg(long)]
    pub(crate) provider_monthly: Option<Amount>,
    /// Pay only these providers (repeatable; adds to the allowlist).
    #[arg(long)]
    pub(crate) allow: Vec<Address>,
    /// Never pay these providers (repeatable; adds to the denylist).
    #[arg(long)]
    pub(crate) deny: Vec<Address>,
    /// Percent of a cap at which a payment logs a soft-limit warning.
    #[arg(long)]
    pub(crate) soft_threshold: Option<u8>,
    /// The longest an escrow may lock the agent's funds, whatever a provider asks: "30m", "1h", "2d"
    /// (default 1h). A payment that needs longer is refused before any escrow.
    #[arg(long)]
    pub(crate) max_escrow_ttl: Option<args::Duration>,
    /// Remove a field first (per_call, daily, monthly, provider_daily, provider_monthly, allow, deny,
    /// soft_threshold, max_escrow_ttl, providers); repeatable.
    #[arg(long, value_parser = ["per_call", "daily", "monthly", "provider_daily", "provider_monthly", "allow", "deny", "soft_threshold", "max_escrow_ttl", "providers"])]
    pub(crate) clear: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum UsageBy {
    /// By provider address.
    Provider,
    /// By `METHOD /path`.
    Route,
    /// By UTC day.
    Day,
}

#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    /// The agent (its signing address). Default: the configured signer.
    pub(crate) agent: Option<Address>,
    /// How to group.
    #[arg(long, value_enum, default_value = "provider")]
    pub(crate) by: UsageBy,
    /// First UTC day included, YYYY-MM-DD.
    #[arg(long, value_parser = parse_day)]
    pub(crate) since: Option<String>,
    /// Last UTC day included, YYYY-MM-DD.
    #[arg(long, value_parser = parse_day)]
    pub(crate) until: Option<String>,
}

/// A UTC calendar day, `YYYY-MM-DD`, that exists (month 1 to 12, the month's days, leap years).
fn parse_day(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not a day: write YYYY-MM-DD, e.g. 2026-11-23");
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let number = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let part = &s[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => {
            return Err(format!(
                "{s:?}: there is no month {month}; write YYYY-MM-DD"
            ));
        }
    };
    if day == 0 || day > days {
        return Err(format!(
            "{s:?}: month {month} of {year} has {days} days; write YYYY-MM-DD"
        ));
    }
    Ok(s.to_owned())
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn days_must_exist() {
        assert_eq!(parse_day("2026-11-23").unwrap(), "2026-11-23");
        assert!(parse_day("2024-02-29").is_ok());
        for bad in [
            "2026-13-45",
            "2026-00-10",
            "2026-02-29",
            "2100-02-29",
            "2026-04-31",
            "2026-11-00",
            "2026-1-23",
            "26-11-23",
            "2026/11/23",
            "２０２６-11-23",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
        assert!(parse_day("2026-13-45").unwrap_err().contains("no month 13"));
    }
}
