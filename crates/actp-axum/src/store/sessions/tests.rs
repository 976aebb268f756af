#![allow(clippy::unwrap_used)]
use super::*;
use actp_core::eip712::actp_domain;

pub(crate) fn u(x: u64) -> U256 {
    U256::from(x)
}

pub(crate) fn voucher(cumulative: u64) -> SessionVoucherRecord {
    SessionVoucherRecord {
        cumulative: u(cumulative),
        request_hash: B256::repeat_byte(1),
        expires_at: 100,
        signature: vec![0; 65].into(),
    }
}

pub(crate) fn open(deposit: u64) -> SessionState {
    SessionState::new(Address::repeat_byte(1), u(deposit), 1_000, 0)
}

#[test]
fn a_call_holds_its_maximum_and_pays_its_charge() {
    let domain = actp_domain(31337, Address::repeat_byte(0xee));
    let mut s = open(1_000);
    s.hold(u(100), voucher(100), 5).unwrap();
    assert_eq!((s.available(), s.in_flight, s.last_call), (u(900), 1, 5));
    let r = s.charge(B256::ZERO, u(100), u(30), B256::ZERO, B256::ZERO, &domain);
    assert_eq!(
        (r.seq, r.charge, r.charged, r.remaining),
        (0, u(30), u(30), u(970))
    );
    assert_eq!(
        (s.available(), s.held, s.in_flight),
        (u(970), U256::ZERO, 0)
    );
    assert_eq!(s.head, r.hash(&domain));
    // a charge above the maximum is cut to it
    s.hold(u(100), voucher(130), 6).unwrap();
    let r2 = s.charge(B256::ZERO, u(100), u(500), B256::ZERO, B256::ZERO, &domain);
    assert_eq!(
        (r2.seq, r2.charge, r2.charged, r2.previous),
        (1, u(100), u(130), r.hash(&domain))
    );
    // a failed call gives its hold back
    s.hold(u(100), voucher(230), 7).unwrap();
    s.release(u(100));
    assert_eq!((s.available(), s.in_flight, s.charged), (u(870), 0, u(130)));
}

#[test]
fn the_best_voucher_must_cover_everything_owed_whatever_order_calls_arrive_in() {
    let mut s = open(1_000);
    // the client signed A (cum 100) then B (cum 200); B arrives first
    s.hold(u(100), voucher(200), 1).unwrap();
    s.hold(u(100), voucher(100), 1).unwrap();
    assert_eq!(s.best.as_ref().unwrap().cumulative, u(200));
    // a third call signed with a stale cumulative is refused: 300 would be owed
    assert_eq!(
        s.hold(u(100), voucher(250), 1),
        Err(HoldRefusal::VoucherBelowOwed {
            owed: u(300),
            cumulative: u(250)
        })
    );
    assert_eq!(
        (s.held, s.in_flight),
        (u(200), 2),
        "a refusal holds nothing"
    );
}

#[test]
fn the_deposit_is_never_overdrawn_and_closing_stops_new_calls() {
    let mut s = open(250);
    s.hold(u(100), voucher(100), 1).unwrap();
    s.hold(u(100), voucher(200), 1).unwrap();
    assert_eq!(
        s.hold(u(100), voucher(300), 1),
        Err(HoldRefusal::UsedUp {
            remaining: u(50),
            needed: u(100)
        })
    );
    assert!(s.begin_close(CloseReason::UsedUp));
    assert!(!s.begin_close(CloseReason::Idle));
    assert_eq!(
        s.hold(u(10), voucher(300), 1),
        Err(HoldRefusal::NotOpen(SessionStatus::Closing {
            reason: CloseReason::UsedUp
        }))
    );
}
