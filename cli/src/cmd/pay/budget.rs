//! `actp budget`: the agent's spend policy (caps, provider lists, sessions) and its kill switch.

use std::path::PathBuf;

use actp_core::{Address, Amount};
use actp_pay::{KillSwitch, Ledger, SpendPolicy};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{agent, ledger_store, open_ledger};
use crate::{
    args,
    context::Ctx,
    error::{CliError, Result},
};

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
    /// Pay from sessions (one escrow for many calls) where a provider offers them: true or false.
    #[arg(long)]
    pub(crate) sessions: Option<bool>,
    /// A new session's deposit covers this many calls at the route's maximum (default 20).
    #[arg(long)]
    pub(crate) session_calls: Option<u32>,
    /// The largest deposit a session may lock; routes needing more are paid per call.
    #[arg(long)]
    pub(crate) max_session_deposit: Option<Amount>,
    /// Remove a field first (per_call, daily, monthly, provider_daily, provider_monthly, allow, deny,
    /// soft_threshold, max_escrow_ttl, providers, sessions, session_calls, max_session_deposit); repeatable.
    #[arg(long, value_parser = ["per_call", "daily", "monthly", "provider_daily", "provider_monthly", "allow", "deny", "soft_threshold", "max_escrow_ttl", "providers", "sessions", "session_calls", "max_session_deposit"])]
    pub(crate) clear: Vec<String>,
}

pub(crate) async fn budget(ctx: &Ctx, cmd: BudgetCommand) -> Result<()> {
    match cmd {
        BudgetCommand::Set(args) => set(ctx, *args).await,
        BudgetCommand::Show(AgentArg { agent: a }) => show(ctx, agent(ctx, a)?).await,
        BudgetCommand::Suspend(SuspendArgs { agent: a, reason }) => {
            let agent = agent(ctx, a)?;
            KillSwitch::open(&ledger_store(ctx))
                .await?
                .suspend(agent, reason.as_deref())
                .await?;
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
            KillSwitch::open(&ledger_store(ctx))
                .await?
                .resume(agent)
                .await?;
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

async fn set(ctx: &Ctx, args: BudgetSetArgs) -> Result<()> {
    let agent = agent(ctx, args.agent)?;
    let ledger = open_ledger(ctx).await?;
    let mut policy = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::not_found(format!("cannot read the policy {}: {e}", path.display()))
            })?;
            SpendPolicy::from_toml(&text)
                .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?
        }
        None => ledger.policy(agent).await?,
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
            "sessions" => policy.sessions = None,
            "session_calls" => policy.session_calls = None,
            "max_session_deposit" => policy.max_session_deposit = None,
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
    set(&mut policy.max_session_deposit, args.max_session_deposit);
    if args.sessions.is_some() {
        policy.sessions = args.sessions;
    }
    if args.session_calls.is_some() {
        policy.session_calls = args.session_calls;
    }
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
    ledger.set_policy(agent, &policy).await?;
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

async fn show(ctx: &Ctx, agent: Address) -> Result<()> {
    let ledger = open_ledger(ctx).await?;
    let policy = ledger.policy(agent).await?;
    let suspension = ledger.kill_switch().suspended(agent).await?;
    let (day, month) = Ledger::periods(actp_pay::ledger::unix_now());
    let view = async |period: &str, cap: Option<Amount>| -> Result<PeriodView> {
        let totals = ledger.totals(agent, period, None).await?;
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
        today: view(&day, policy.daily).await?,
        this_month: view(&month, policy.monthly).await?,
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
