//! `actp usage`: what an agent spent (calls paid per call and from sessions), by provider, route or day.

use actp_core::Address;
use actp_pay::{GroupBy, UsageQuery, UsageReport};
use clap::{Args, ValueEnum};

use super::{agent, open_ledger};
use crate::{context::Ctx, error::Result};

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

pub(crate) async fn usage(ctx: &Ctx, args: UsageArgs) -> Result<()> {
    let agent = agent(ctx, args.agent)?;
    let ledger = open_ledger(ctx).await?;
    let report = ledger
        .usage(
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
        )
        .await?;
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
        "usage of {}\n{head:<width$}  {:>5}  {:>8}  {:>10}  {:>10}  {:>10}  {:>10}\n",
        report.agent, "calls", "sessions", "spent", "fees", "refunded", "reserved"
    );
    for row in report.rows.iter().chain([&report.total]) {
        out.push_str(&format!(
            "{:<width$}  {:>5}  {:>8}  {:>10}  {:>10}  {:>10}  {:>10}\n",
            row.key,
            row.calls,
            row.sessions,
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
