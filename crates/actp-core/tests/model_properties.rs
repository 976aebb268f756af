//! Property tests of the lifecycle model: random sequences of actions by several actors with time jumps,
//! checking the invariants the kernel promises after every step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actp_core::model::{Action, CreateParams, KernelModel};
use actp_core::{Address, B256, State, U256};
use proptest::prelude::*;

const KERNEL: Address = Address::repeat_byte(0xee);
const ADMIN: Address = Address::repeat_byte(0xad);
const STRANGER: Address = Address::repeat_byte(0x55);
const T0: u64 = 1_700_000_000;

fn actors() -> [Address; 4] {
    [
        Address::repeat_byte(1),
        Address::repeat_byte(2),
        Address::repeat_byte(3),
        Address::repeat_byte(4),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Create {
        who: usize,
        provider: usize,
        amount: u64,
        ahead: u64,
        window: u64,
        fund: bool,
    },
    Act {
        pick: usize,
        who: usize,
        action: u8,
        arg: u64,
    },
    Batch {
        start: usize,
        len: usize,
        who: usize,
    },
    Warp(u64),
    Pause(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (
            0..4usize,
            0..4usize,
            40_000u64..2_000_000,
            1u64..5 * 86_400,
            3_000u64..40 * 86_400,
            any::<bool>()
        )
            .prop_map(
                |(who, provider, amount, ahead, window, fund)| Step::Create {
                    who,
                    provider,
                    amount,
                    ahead,
                    window,
                    fund
                }
            ),
        (any::<usize>(), 0..7usize, 0u8..10, any::<u64>()).prop_map(|(pick, who, action, arg)| {
            Step::Act {
                pick,
                who,
                action,
                arg,
            }
        }),
        (any::<usize>(), 1..6usize, 0..7usize).prop_map(|(start, len, who)| Step::Batch {
            start,
            len,
            who
        }),
        (0u64..3 * 86_400).prop_map(Step::Warp),
        any::<bool>().prop_map(Step::Pause),
    ]
}

fn who(i: usize) -> Address {
    match i {
        0..=3 => actors()[i],
        4 => ADMIN,
        _ => STRANGER,
    }
}

fn action(kind: u8, arg: u64, tx_id: B256, remaining: U256) -> Action {
    match kind {
        0 => Action::fund(KERNEL, tx_id),
        1 => Action::start(),
        2 => Action::deliver(
            if arg.is_multiple_of(3) {
                0
            } else {
                arg % (31 * 86_400)
            },
            arg.is_multiple_of(2).then_some(B256::repeat_byte(9)),
        ),
        3 => Action::settle(),
        4 => Action::dispute(),
        5 => {
            let to_requester = if remaining.is_zero() {
                U256::ZERO
            } else {
                U256::from(arg) % (remaining + U256::from(1))
            };
            Action::resolve(
                if arg.is_multiple_of(2) {
                    State::Settled
                } else {
                    State::Cancelled
                },
                to_requester,
                remaining - to_requester,
            )
        }
        6 => Action::cancel(),
        7 => Action::ReleaseMilestone {
            amount: U256::from(arg % 600_000),
        },
        8 => Action::quote(Some(B256::repeat_byte(3))),
        _ => Action::AcceptQuote {
            new_amount: U256::from(50_000 + arg % 1_000_000),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_step(steps in prop::collection::vec(step(), 1..120)) {
        let mut m = KernelModel::new(KERNEL, ADMIN, ADMIN, 100);
        let supply = U256::from(1_000_000_000_000u64);
        for a in actors() { m.mint(a, supply); }
        let mut now = T0;
        let mut ids: Vec<B256> = Vec::new();
        let mut terminal: std::collections::HashMap<B256, State> = Default::default();
        let mut paid_in: std::collections::HashMap<B256, U256> = Default::default();
        let mut paid_out: std::collections::HashMap<B256, U256> = Default::default();
        let mut fees: std::collections::HashMap<B256, U256> = Default::default();
        let mut provider_gross: std::collections::HashMap<B256, U256> = Default::default();
        for s in steps {
            match s {
                Step::Create { who: w, provider, amount, ahead, window, fund } => {
                    let terms = CreateParams::new(actors()[provider], U256::from(amount), now + ahead, window, B256::repeat_byte(7));
                    let r = if fund { m.create_and_fund(actors()[w], &terms, now) } else { m.create_transaction(actors()[w], actors()[w], &terms, now) };
                    if let Ok((id, moves)) = r {
                        ids.push(id);
                        *paid_in.entry(id).or_default() += moves.pulled;
                    }
                }
                Step::Act { pick, who: w, action: kind, arg } => {
                    if ids.is_empty() { continue; }
                    let id = ids[pick % ids.len()];
                    let tx = m.transaction(id).unwrap().clone();
                    let act = action(kind, arg, id, tx.amount - tx.released);
                    if let Ok(moves) = m.act(id, &act, who(w), now) {
                        *paid_in.entry(id).or_default() += moves.pulled;
                        *paid_out.entry(id).or_default() += moves.to_provider + moves.to_requester + moves.fee;
                        *fees.entry(id).or_default() += moves.fee;
                        *provider_gross.entry(id).or_default() += moves.to_provider + moves.fee;
                    }
                }
                Step::Batch { start, len, who: w } => {
                    if ids.is_empty() { continue; }
                    let batch: Vec<B256> = (0..len).map(|i| ids[(start.wrapping_add(i)) % ids.len()]).collect();
                    let before: Vec<(B256, U256)> = batch.iter().map(|id| (*id, m.transaction(*id).unwrap().amount - m.transaction(*id).unwrap().released)).collect();
                    let before_state: std::collections::HashMap<B256, State> = batch.iter().map(|id| (*id, m.transaction(*id).unwrap().state)).collect();
                    let (n, moves) = m.settle_batch(&batch, who(w), now);
                    let mut expected_out = U256::ZERO;
                    let mut counted = std::collections::HashSet::new();
                    for (id, left) in before {
                        if before_state[&id] == State::Delivered && m.transaction(id).unwrap().state == State::Settled && counted.insert(id) {
                            *paid_out.entry(id).or_default() += left;
                            let tx = m.transaction(id).unwrap();
                            let f = actp_core::fee::fee_on(tx.released, left, tx.fee_bps);
                            *fees.entry(id).or_default() += f;
                            *provider_gross.entry(id).or_default() += left;
                            expected_out += left;
                        }
                    }
                    prop_assert_eq!(u64::try_from(counted.len()).unwrap(), n);
                    prop_assert_eq!(moves.to_provider + moves.fee, expected_out);
                }
                Step::Warp(secs) => now += secs,
                Step::Pause(on) => { let _ = if on { m.pause(ADMIN) } else { m.unpause(ADMIN) }; }
            }
            // conservation: tokens only move between parties and the kernel
            let total: U256 = actors().iter().map(|a| m.balance_of(*a)).sum::<U256>() + m.balance_of(KERNEL);
            prop_assert_eq!(total, supply * U256::from(4));
            // the kernel holds exactly the escrows plus accrued fees
            let held: U256 = ids.iter().map(|id| m.transaction(*id).unwrap().remaining()).sum();
            prop_assert_eq!(m.balance_of(KERNEL), held + m.accrued_fees());
            for id in &ids {
                let tx = m.transaction(*id).unwrap();
                let (i, o) = (paid_in.get(id).copied().unwrap_or_default(), paid_out.get(id).copied().unwrap_or_default());
                prop_assert!(o <= i, "pays out more than it took in");
                prop_assert_eq!(i - o, tx.remaining());
                if let Some(t) = terminal.get(id) { prop_assert_eq!(*t, tx.state, "terminal state changed"); }
                if tx.state.is_terminal() { terminal.insert(*id, tx.state); }
                let gross = provider_gross.get(id).copied().unwrap_or_default();
                prop_assert_eq!(fees.get(id).copied().unwrap_or_default(), gross * U256::from(tx.fee_bps) / U256::from(10_000u64));
                // no stranded funds: a funded live transaction has a way out now
                if tx.escrowed && !tx.state.is_terminal() {
                    let mut probe = m.clone();
                    let (by, act) = match tx.state {
                        State::Delivered => (tx.requester, Action::settle()),
                        State::Disputed => (ADMIN, Action::resolve(State::Cancelled, tx.amount - tx.released, U256::ZERO)),
                        _ => (tx.provider, Action::cancel()),
                    };
                    prop_assert!(probe.act(*id, &act, by, now).is_ok(), "stranded: {:?}", tx.state);
                }
            }
        }
    }
}
