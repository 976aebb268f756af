#![allow(clippy::unwrap_used, clippy::panic)]
use super::*;
use std::path::Path;

const AGENT: Address = Address::repeat_byte(0xa9);
const P1: Address = Address::repeat_byte(0x01);
const P2: Address = Address::repeat_byte(0x02);
// 2026-11-23T12:00:00Z
const NOON: u64 = 1_795_435_200;

fn intent(key: &str, provider: Address, amount: u128, now: u64) -> Intent {
    Intent {
        key: key.into(),
        agent: AGENT,
        provider,
        route: "POST /v1/echo".into(),
        url: "http://127.0.0.1/v1/echo".into(),
        service: "echo".into(),
        amount: Amount::from_base_units(amount),
        fee: Amount::from_base_units(amount / 100),
        block: 1,
        now,
        session: None,
    }
}

fn sled(dir: &Path) -> StoreUrl {
    StoreUrl::Sled(dir.to_path_buf())
}

async fn new(ledger: &Ledger, i: Intent) -> Payment {
    match ledger.reserve(i).await.unwrap() {
        Ok(Reserved::New(p, _)) => p,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

async fn refused(ledger: &Ledger, i: Intent) -> BudgetError {
    ledger.reserve(i).await.unwrap().unwrap_err()
}

async fn fund(ledger: &Ledger, key: &str, tx: u8) -> Payment {
    ledger
        .update(AGENT, key, |p| {
            p.state = PaymentState::Funded;
            p.tx_id = Some(B256::repeat_byte(tx));
        })
        .await
        .unwrap()
}

#[test]
fn utc_dates() {
    assert_eq!(
        utc_day_month(0),
        ("1970-01-01".to_owned(), "1970-01".to_owned())
    );
    assert_eq!(utc_day_month(NOON).0, "2026-11-23");
    assert_eq!(utc_day_month(951_782_400).0, "2000-02-29");
    assert_eq!(utc_day_month(NOON + 8 * 86_400).1, "2026-12");
    assert_eq!(
        Ledger::periods(NOON),
        ("d2026-11-23".into(), "m2026-11".into())
    );
}

#[tokio::test]
async fn daily_cap_counts_reservations_and_spend_and_releases_give_back() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&sled(dir.path())).await.unwrap();
    let policy = SpendPolicy {
        daily: Some(Amount::from_base_units(300)),
        ..SpendPolicy::default()
    };
    ledger.set_policy(AGENT, &policy).await.unwrap();
    new(&ledger, intent("a", P1, 100, NOON)).await;
    new(&ledger, intent("b", P1, 100, NOON)).await;
    fund(&ledger, "a", 1).await;
    new(&ledger, intent("c", P2, 100, NOON)).await;
    let err = refused(&ledger, intent("d", P2, 1, NOON)).await;
    assert_eq!(
        err,
        BudgetError::CapReached {
            cap: CapKind::Daily,
            limit: Amount::from_base_units(300),
            used: Amount::from_base_units(300),
            amount: Amount::from_base_units(1),
            period: "2026-11-23".into(),
            provider: None,
        }
    );
    assert!(err.to_string().contains("actp budget set"), "{err}");
    // funding failed for b: its reservation comes back
    ledger
        .update(AGENT, "b", |p| p.state = PaymentState::Released)
        .await
        .unwrap();
    new(&ledger, intent("d", P2, 100, NOON)).await;
    // a released key may be reserved again
    ledger
        .update(AGENT, "d", |p| p.state = PaymentState::Released)
        .await
        .unwrap();
    new(&ledger, intent("d", P2, 100, NOON)).await;
    let totals = ledger.totals(AGENT, "d2026-11-23", None).await.unwrap();
    assert_eq!(totals.spent, Amount::from_base_units(100));
    assert_eq!(totals.reserved, Amount::from_base_units(200));
    // the next day starts from zero
    new(&ledger, intent("e", P1, 300, NOON + 86_400)).await;
}

#[tokio::test]
async fn refunds_give_the_budget_back() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&sled(dir.path())).await.unwrap();
    ledger
        .set_policy(
            AGENT,
            &SpendPolicy {
                monthly: Some(Amount::from_base_units(100)),
                ..SpendPolicy::default()
            },
        )
        .await
        .unwrap();
    new(&ledger, intent("a", P1, 100, NOON)).await;
    fund(&ledger, "a", 1).await;
    assert!(matches!(
        refused(&ledger, intent("b", P1, 40, NOON)).await,
        BudgetError::CapReached {
            cap: CapKind::Monthly,
            ..
        }
    ));
    ledger
        .update(AGENT, "a", |p| {
            p.state = PaymentState::Resolved;
            p.refunded = Amount::from_base_units(60);
        })
        .await
        .unwrap();
    new(&ledger, intent("b", P1, 60, NOON)).await;
    let m = ledger.totals(AGENT, "m2026-11", Some(P1)).await.unwrap();
    assert_eq!(m.spent, Amount::from_base_units(40));
    assert_eq!(m.reserved, Amount::from_base_units(60));
}

#[tokio::test]
async fn per_call_per_provider_lists_and_idempotency() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&sled(dir.path())).await.unwrap();
    let mut policy = SpendPolicy {
        per_call: Some(Amount::from_base_units(50)),
        provider_daily: Some(Amount::from_base_units(80)),
        deny: vec![P2],
        ..SpendPolicy::default()
    };
    policy.providers.insert(
        Address::repeat_byte(3),
        crate::policy::ProviderCaps {
            daily: Some(Amount::from_base_units(200)),
            monthly: None,
        },
    );
    ledger.set_policy(AGENT, &policy).await.unwrap();
    let zero = SpendPolicy {
        daily: Some(Amount::ZERO),
        ..SpendPolicy::default()
    };
    assert!(matches!(
        ledger.set_policy(AGENT, &zero).await,
        Err(LedgerError::InvalidPolicy(_))
    ));
    assert!(matches!(
        refused(&ledger, intent("big", P1, 51, NOON)).await,
        BudgetError::CapReached {
            cap: CapKind::PerCall,
            ..
        }
    ));
    assert_eq!(
        refused(&ledger, intent("p2", P2, 1, NOON)).await,
        BudgetError::ProviderNotAllowed {
            agent: AGENT,
            provider: P2
        }
    );
    new(&ledger, intent("a", P1, 50, NOON)).await;
    assert!(matches!(
        refused(&ledger, intent("b", P1, 50, NOON)).await,
        BudgetError::CapReached { cap: CapKind::ProviderDaily, provider: Some(p), .. } if p == P1
    ));
    // provider 3 has its own, larger cap
    new(&ledger, intent("c", Address::repeat_byte(3), 50, NOON)).await;
    new(&ledger, intent("d", Address::repeat_byte(3), 50, NOON)).await;
    // the same key again: the same payment, nothing reserved twice
    match ledger.reserve(intent("a", P1, 50, NOON)).await.unwrap() {
        Ok(Reserved::Existing(p)) => assert_eq!(p.key, "a"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ledger
            .totals(AGENT, "d2026-11-23", Some(P1))
            .await
            .unwrap()
            .used(),
        Amount::from_base_units(50)
    );
    assert!(matches!(
        ledger.reserve(intent("", P1, 1, NOON)).await,
        Err(LedgerError::InvalidKey(_))
    ));
}

#[tokio::test]
async fn usage_sums_saturate_instead_of_wrapping() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&sled(dir.path())).await.unwrap();
    let mut p = new(&ledger, intent("a", P1, 1, NOON)).await;
    p.amount = Amount::from_base_units(u128::MAX);
    p.fee = Amount::from_base_units(u128::MAX);
    p.state = PaymentState::Funded;
    let mut row = UsageRow::default();
    row.add(&UsageRow::of(&p));
    row.add(&UsageRow::of(&p));
    assert_eq!(row.spent, Amount::from_base_units(u128::MAX));
    assert_eq!(row.fees, Amount::from_base_units(u128::MAX));
    assert_eq!(row.calls, 2);
}

#[test]
fn percentages_of_any_amount_never_overflow() {
    assert_eq!(percent_of(u128::MAX, 100), u128::MAX);
    let exact = actp_core::U256::from(u128::MAX) * actp_core::U256::from(80u8)
        / actp_core::U256::from(100u8);
    assert_eq!(actp_core::U256::from(percent_of(u128::MAX, 80)), exact);
    assert_eq!(percent_of(1_000, 80), 800);
    assert_eq!(percent_of(199, 50), 99);
}

#[tokio::test]
async fn soft_threshold_fires_once_when_crossed() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&sled(dir.path())).await.unwrap();
    ledger
        .set_policy(
            AGENT,
            &SpendPolicy {
                daily: Some(Amount::from_base_units(100)),
                soft_threshold: Some(50),
                ..SpendPolicy::default()
            },
        )
        .await
        .unwrap();
    let crossed = async |key: &str| match ledger.reserve(intent(key, P1, 30, NOON)).await.unwrap() {
        Ok(Reserved::New(_, soft)) => soft,
        other => panic!("{other:?}"),
    };
    assert!(crossed("a").await.is_empty());
    let soft = crossed("b").await;
    assert_eq!(soft.len(), 1);
    assert_eq!(soft[0].cap, CapKind::Daily);
    assert_eq!(soft[0].threshold, Amount::from_base_units(50));
    assert_eq!(soft[0].used, Amount::from_base_units(60));
    assert!(crossed("c").await.is_empty());
}

#[tokio::test]
async fn kill_switch_blocks_reservations_from_another_handle() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&sled(dir.path())).await.unwrap();
    // a second process would do exactly this: the switch needs no ledger handle
    let switch = KillSwitch::open(&sled(dir.path())).await.unwrap();
    switch.suspend(AGENT, Some("loop detected")).await.unwrap();
    let err = refused(&ledger, intent("a", P1, 1, NOON)).await;
    assert_eq!(
        err,
        BudgetError::Suspended {
            agent: AGENT,
            reason: Some("loop detected".into())
        }
    );
    assert!(err.to_string().contains("actp budget resume"), "{err}");
    switch.resume(AGENT).await.unwrap();
    switch.resume(AGENT).await.unwrap();
    new(&ledger, intent("a", P1, 1, NOON)).await;
}

/// Opens the ledger a dropped handle held. sled may still be releasing its lock file on another thread
/// (its IO threads finish asynchronously), so this waits for the lock with generous patience.
async fn reopen(dir: &Path) -> Ledger {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match Ledger::open(&sled(dir)).await {
            Ok(ledger) => return ledger,
            Err(LedgerError::Busy { .. }) if std::time::Instant::now() < until => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn reopen_keeps_everything_and_a_second_open_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(&sled(dir.path())).await.unwrap();
        new(&ledger, intent("a", P1, 10, NOON)).await;
        new(&ledger, intent("b", P1, 20, NOON)).await;
        fund(&ledger, "b", 2).await;
        assert!(matches!(
            Ledger::open(&sled(dir.path())).await,
            Err(LedgerError::Busy { .. })
        ));
    }
    let ledger = reopen(dir.path()).await;
    let totals = ledger.totals(AGENT, "d2026-11-23", None).await.unwrap();
    assert_eq!(totals.reserved, Amount::from_base_units(10));
    assert_eq!(totals.spent, Amount::from_base_units(20));
    assert_eq!(
        ledger
            .payment_by_tx(B256::repeat_byte(2))
            .await
            .unwrap()
            .unwrap()
            .key,
        "b"
    );
    assert_eq!(ledger.agents().await.unwrap(), vec![AGENT]);
}

#[tokio::test]
async fn usage_groups_and_totals() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&sled(dir.path())).await.unwrap();
    new(&ledger, intent("a", P1, 100, NOON)).await;
    fund(&ledger, "a", 1).await;
    new(&ledger, intent("b", P2, 200, NOON + 86_400)).await;
    fund(&ledger, "b", 2).await;
    new(&ledger, intent("c", P2, 50, NOON + 86_400)).await;
    new(&ledger, intent("d", P2, 70, NOON + 86_400)).await;
    ledger
        .update(AGENT, "d", |p| p.state = PaymentState::Released)
        .await
        .unwrap();
    let by_provider = ledger.usage(AGENT, &UsageQuery::default()).await.unwrap();
    assert_eq!(by_provider.rows.len(), 2);
    assert_eq!(by_provider.rows[1].key, format!("{P2:#x}"));
    assert_eq!(by_provider.rows[1].calls, 1);
    assert_eq!(by_provider.rows[1].reserved, Amount::from_base_units(50));
    assert_eq!(by_provider.rows[1].released, 1);
    assert_eq!(by_provider.total.spent, Amount::from_base_units(300));
    assert_eq!(by_provider.total.fees, Amount::from_base_units(3));
    let by_day = ledger
        .usage(
            AGENT,
            &UsageQuery {
                by: GroupBy::Day,
                since: Some("2026-11-24".into()),
                until: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(by_day.rows.len(), 1);
    assert_eq!(by_day.rows[0].key, "2026-11-24");
    assert_eq!(by_day.total.spent, Amount::from_base_units(200));
}
