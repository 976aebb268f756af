//! Rules of the model that mirror the kernel's review fixes (issue 12, section 7): each test states one rule
//! the way `contracts/test` states it for the kernel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actp_core::model::{Action, CreateParams, KernelModel};
use actp_core::{Address, B256, Rejection, State, U256};

const KERNEL: Address = Address::repeat_byte(0xee);
const ADMIN: Address = Address::repeat_byte(0xad);
const REQUESTER: Address = Address::repeat_byte(1);
const PROVIDER: Address = Address::repeat_byte(2);
const AMOUNT: u64 = 1_000_000;
const U32_MAX: u64 = u32::MAX as u64;

fn model() -> KernelModel {
    let mut m = KernelModel::new(KERNEL, ADMIN, ADMIN, 100);
    m.mint(REQUESTER, U256::from(1_000_000_000u64));
    m
}

fn delivered_at(m: &mut KernelModel, now: u64, deadline: u64, window: u64) -> B256 {
    let terms = CreateParams::new(PROVIDER, U256::from(AMOUNT), deadline, 3_600, B256::ZERO);
    let (id, _) = m.create_and_fund(REQUESTER, &terms, now).unwrap();
    m.act(id, &Action::start(), PROVIDER, now).unwrap();
    m.act(id, &Action::deliver(window, None), PROVIDER, now)
        .unwrap();
    id
}

#[test]
fn a_move_after_2106_records_a_saturated_time() {
    let mut m = model();
    let late = U32_MAX - 10 * 86_400;
    let id = delivered_at(&mut m, late, U32_MAX - 1, 30 * 86_400);
    m.act(id, &Action::dispute(), REQUESTER, U32_MAX + 86_400)
        .unwrap();
    let tx = m.transaction(id).unwrap();
    assert_eq!(tx.updated_at, U32_MAX);
    assert_eq!(tx.deadline, U32_MAX - 1);
    assert_eq!(tx.window_end, Some(late + 30 * 86_400));
    let refused = m.act(id, &Action::dispute(), REQUESTER, U32_MAX + 86_400);
    assert!(matches!(refused, Err(Rejection::InvalidTransition { .. })));
    assert_eq!(m.transaction(id).unwrap().state, State::Disputed);
}

#[test]
fn the_pause_power_moves_with_the_admin_role() {
    let mut m = model();
    let (next, named) = (Address::repeat_byte(0x0a), Address::repeat_byte(0x0b));
    m.set_pauser(ADMIN, named).unwrap();
    assert_eq!(m.pauser(), named);
    m.transfer_admin(ADMIN, next).unwrap();
    m.pause(named).unwrap();
    m.accept_admin(next, 1_700_000_000).unwrap();
    assert_eq!(m.pauser(), next, "reset to the new admin");
    assert_eq!(m.unpause(named), Err(Rejection::NotPauser(named)));
    assert_eq!(m.unpause(ADMIN), Err(Rejection::NotPauser(ADMIN)));
    m.unpause(next).unwrap();
}

fn disputed_by(m: &mut KernelModel, requester: Address, provider: Address, now: u64) -> B256 {
    let terms = CreateParams::new(
        provider,
        U256::from(AMOUNT),
        now + 86_400,
        3_600,
        B256::ZERO,
    );
    let (id, _) = m.create_and_fund(requester, &terms, now).unwrap();
    m.act(id, &Action::start(), provider, now).unwrap();
    m.act(id, &Action::deliver(0, None), provider, now).unwrap();
    m.act(id, &Action::dispute(), requester, now).unwrap();
    id
}

#[test]
fn a_resolver_never_decides_its_own_dispute() {
    let mut m = model();
    let now = 1_700_000_000;
    m.mint(ADMIN, U256::from(AMOUNT));
    m.set_mediator(ADMIN, PROVIDER, true, now).unwrap();
    let later = now + 2 * 86_400;
    let split = Action::resolve(State::Cancelled, U256::from(AMOUNT), U256::ZERO);
    let a = disputed_by(&mut m, REQUESTER, PROVIDER, later);
    assert_eq!(
        m.act(a, &split, PROVIDER, later),
        Err(Rejection::NotResolver(PROVIDER))
    );
    let b = disputed_by(&mut m, ADMIN, Address::repeat_byte(3), later);
    assert_eq!(
        m.act(b, &split, ADMIN, later),
        Err(Rejection::NotResolver(ADMIN))
    );
    m.act(a, &split, ADMIN, later).unwrap();
    m.act(b, &split, PROVIDER, later).unwrap();
}

#[test]
fn a_new_admin_waits_the_mediator_delay_to_resolve() {
    let mut m = model();
    let now = 1_700_000_000;
    let id = disputed_by(&mut m, REQUESTER, PROVIDER, now);
    let next = Address::repeat_byte(0x0a);
    m.transfer_admin(ADMIN, next).unwrap();
    m.accept_admin(next, now).unwrap();
    let split = Action::resolve(State::Settled, U256::ZERO, U256::from(AMOUNT));
    let delay = actp_core::limits::MEDIATOR_DELAY;
    assert_eq!(
        m.act(id, &split, next, now + delay - 1),
        Err(Rejection::NotResolver(next))
    );
    assert_eq!(
        m.act(id, &split, ADMIN, now),
        Err(Rejection::NotResolver(ADMIN))
    );
    m.act(id, &split, next, now + delay).unwrap();
}

const LEGACY: B256 = B256::repeat_byte(0x1e);

fn created(m: &mut KernelModel, requester: Address, provider: Address, amount: u64) -> B256 {
    let terms = CreateParams::new(
        provider,
        U256::from(amount),
        1_700_100_000,
        3_600,
        B256::ZERO,
    );
    m.create_transaction(requester, requester, &terms, 1_700_000_000)
        .unwrap()
        .0
}

fn link(
    m: &mut KernelModel,
    id: B256,
    requester: Address,
    escrow_id: B256,
) -> Result<(), Rejection> {
    let fund = Action::Fund {
        escrow_contract: KERNEL,
        escrow_id,
    };
    m.act(id, &fund, requester, 1_700_000_000).map(|_| ())
}

#[test]
fn an_alias_cannot_be_taken_by_another_requester() {
    let mut m = model();
    let attacker = Address::repeat_byte(0x0c);
    m.mint(attacker, U256::from(AMOUNT));
    let honest = created(&mut m, REQUESTER, PROVIDER, AMOUNT);
    let throwaway = created(&mut m, attacker, PROVIDER, 50_000);
    link(&mut m, throwaway, attacker, LEGACY).unwrap();
    link(&mut m, honest, REQUESTER, LEGACY).unwrap();
    let amount = U256::from(AMOUNT);
    assert_eq!(
        m.verify_escrow(LEGACY, REQUESTER, PROVIDER, amount),
        (true, amount)
    );
    assert_eq!(m.remaining_of(LEGACY, REQUESTER), amount);
    assert_eq!(m.remaining_of(LEGACY, attacker), U256::from(50_000u64));
    assert_eq!(
        m.remaining_of(LEGACY, Address::ZERO),
        U256::ZERO,
        "contested"
    );
    let again = created(&mut m, REQUESTER, PROVIDER, AMOUNT);
    assert_eq!(
        link(&mut m, again, REQUESTER, LEGACY),
        Err(Rejection::EscrowIdUnavailable(LEGACY))
    );
    assert_eq!(
        link(&mut m, again, REQUESTER, throwaway),
        Err(Rejection::EscrowIdUnavailable(throwaway))
    );
}

#[test]
fn a_requester_cannot_create_an_id_it_uses_as_an_alias() {
    let mut m = model();
    let first = created(&mut m, REQUESTER, PROVIDER, AMOUNT);
    let next =
        actp_core::ids::transaction_id(REQUESTER, PROVIDER, U256::from(AMOUNT), B256::ZERO, 1);
    link(&mut m, first, REQUESTER, next).unwrap();
    let terms = CreateParams::new(
        PROVIDER,
        U256::from(AMOUNT),
        1_700_100_000,
        3_600,
        B256::ZERO,
    );
    assert_eq!(
        m.create_transaction(REQUESTER, REQUESTER, &terms, 1_700_000_000),
        Err(Rejection::EscrowIdUnavailable(next))
    );
    assert_eq!(m.nonce(REQUESTER), 1);
    assert_eq!(m.remaining_of(next, Address::ZERO), U256::from(AMOUNT));
}
