//! Differential test: random sequences of actions by several actors with time jumps, applied both to the
//! `actp-core` model and to the real kernel on a devnet, compared after every step (accepted or rejected with
//! the same error, resulting state, every balance). `ACTP_DIFF_STEPS` (default 2,000) and `ACTP_DIFF_SEED`
//! choose the run. A divergence prints the seed and a minimal failing sequence. Besides the lifecycle it drives
//! governance (admin transfer, pauser, mediators, pause by whoever) and escrow-id aliases linked by several
//! requesters, comparing the governance views and the vault views (`remaining`, `verifyEscrow`) asked as
//! every account.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use actp_client::{ClientError, Devnet, Kernel};
use actp_core::{
    Address, B256, State, U256,
    model::{Action, CreateParams, KernelModel, KernelView, Moves},
};
use rand08::{Rng, SeedableRng, rngs::StdRng};

const ACTORS: usize = 6; // dev accounts 1..=6; 0 is the admin
const FUNDS: u64 = 1_000_000_000_000;

#[derive(Debug, Clone)]
enum Step {
    Create {
        who: usize,
        provider: usize,
        amount: u64,
        ahead: u64,
        window: u64,
        fund: bool,
        requester_ok: bool,
    },
    Act {
        pick: usize,
        who: usize,
        kind: u8,
        arg: u64,
    },
    /// The next lifecycle step of a live transaction, by the party that takes it (decided from the model).
    Guided {
        pick: usize,
        r: u64,
    },
    Batch {
        start: usize,
        len: usize,
        who: usize,
    },
    Warp(u64),
    /// `pause()` / `unpause()`, usually by the current admin, sometimes by anyone.
    Pause {
        on: bool,
        who: usize,
    },
    /// A governance call: transferAdmin, acceptAdmin, setPauser, setMediator (approve or revoke).
    Govern {
        kind: u8,
        who: usize,
        target: usize,
    },
    /// Funds a live unfunded transaction under an alias equal to the id its requester would get next with
    /// the same terms, then tries to create exactly that transaction (refused on both sides).
    AliasNextId {
        pick: usize,
    },
}

/// Escrow ids older clients link in place of the transaction id; shared by all requesters on purpose.
const ALIASES: [B256; 3] = [
    B256::repeat_byte(0xa1),
    B256::repeat_byte(0xa2),
    B256::repeat_byte(0xa3),
];
const SERVICE: B256 = B256::repeat_byte(7);

fn generate(seed: u64, n: usize) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| match rng.gen_range(0..100) {
            0..=17 => Step::Create {
                who: rng.gen_range(1..=ACTORS),
                provider: rng.gen_range(0..=ACTORS),
                amount: if rng.gen_bool(0.05) {
                    rng.gen_range(0..60_000)
                } else {
                    rng.gen_range(50_000..5_000_000)
                },
                ahead: if rng.gen_bool(0.05) {
                    rng.gen_range(0..400 * 86_400)
                } else {
                    rng.gen_range(600..3 * 86_400)
                },
                window: if rng.gen_bool(0.05) {
                    rng.gen_range(0..40 * 86_400)
                } else {
                    rng.gen_range(3_600..2 * 86_400)
                },
                fund: rng.gen_bool(0.5),
                requester_ok: rng.gen_bool(0.97),
            },
            18..=34 => Step::Act {
                pick: rng.r#gen(),
                who: rng.gen_range(0..=ACTORS + 1),
                kind: rng.gen_range(0..11),
                arg: rng.r#gen(),
            },
            35..=84 => Step::Guided {
                pick: rng.r#gen(),
                r: rng.r#gen(),
            },
            85..=89 => Step::Batch {
                start: rng.r#gen(),
                len: rng.gen_range(1..6),
                who: rng.gen_range(0..=ACTORS + 1),
            },
            90..=95 => Step::Warp(if rng.gen_bool(0.1) {
                rng.gen_range(86_400..20 * 86_400)
            } else {
                rng.gen_range(1..7_200)
            }),
            96 => Step::Pause {
                on: rng.gen_bool(0.4),
                who: rng.r#gen(),
            },
            97..=98 => Step::Govern {
                kind: rng.gen_range(0..5),
                who: rng.r#gen(),
                target: rng.gen_range(0..=ACTORS + 1),
            },
            _ => Step::AliasNextId { pick: rng.r#gen() },
        })
        .collect()
}

struct World {
    devnet: Devnet,
    clients: Vec<Kernel>, // index = dev account; ACTORS + 1 = a stranger
    model: KernelModel,
    ids: Vec<B256>,
    now: u64,
    accepted: usize,
    rejected: usize,
    states_reached: std::collections::BTreeMap<State, usize>,
    /// The account an admin transfer is pending for (kept beside the model to pick rightful callers).
    pending_admin: Option<usize>,
    /// Accounts approved as mediators (approval may not have taken effect yet).
    mediators: std::collections::BTreeSet<usize>,
    /// Agreed rejections by error name, to show which rules a run exercised.
    rejections: std::collections::BTreeMap<String, usize>,
}

impl World {
    async fn new() -> World {
        let devnet = Devnet::start_with(actp_client::DevnetOptions {
            accounts: ACTORS + 2,
            funds: actp_core::Amount::from_base_units(u128::from(FUNDS)),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut clients = Vec::new();
        for i in 0..=ACTORS + 1 {
            let k = devnet.kernel(i).await.unwrap();
            k.approve(U256::MAX).await.unwrap();
            clients.push(k);
        }
        let d = devnet.deployment();
        let admin = devnet.signer(0).address();
        let mut model = KernelModel::new(d.kernel, admin, admin, 100);
        for i in 1..=ACTORS + 1 {
            model.mint(devnet.signer(i).address(), U256::from(FUNDS));
        }
        let now = devnet.now().await.unwrap();
        World {
            devnet,
            clients,
            model,
            ids: Vec::new(),
            now,
            accepted: 0,
            rejected: 0,
            states_reached: Default::default(),
            pending_admin: None,
            mediators: Default::default(),
            rejections: Default::default(),
        }
    }

    fn addr(&self, i: usize) -> Address {
        self.clients[i].signer_address().unwrap()
    }

    /// Runs one step on both sides; returns a description of any divergence.
    async fn step(&mut self, step: &Step) -> Result<(), String> {
        if let Step::Warp(secs) = step {
            self.now += secs;
            return Ok(());
        }
        self.now += 1;
        let _: serde_json::Value = alloy::providers::Provider::raw_request(
            &self.devnet.provider(),
            "evm_setNextBlockTimestamp".into(),
            (self.now,),
        )
        .await
        .unwrap();
        let now = self.now;
        let (model, chain, touched): (
            Result<Moves, actp_core::Rejection>,
            Result<(), ClientError>,
            Vec<B256>,
        ) = match step {
            Step::Create {
                who,
                provider,
                amount,
                ahead,
                window,
                fund,
                requester_ok,
            } => {
                let caller = self.addr(*who);
                let terms = CreateParams::new(
                    self.addr(*provider),
                    U256::from(*amount),
                    now + ahead,
                    *window,
                    SERVICE,
                );
                let k = &self.clients[*who];
                if *fund {
                    let m = self.model.create_and_fund(caller, &terms, now);
                    let c = k.create_and_fund(&terms).await;
                    if let (Ok((a, _)), Ok(b)) = (&m, &c) {
                        if a != b {
                            return Err(format!("ids differ: model {a}, chain {b}"));
                        }
                        self.ids.push(*a);
                    }
                    let t = m.as_ref().map(|(id, _)| vec![*id]).unwrap_or_default();
                    (m.map(|x| x.1), c.map(|_| ()), t)
                } else {
                    let requester = if *requester_ok {
                        caller
                    } else {
                        self.addr((*who % ACTORS) + 1)
                    };
                    let m = self
                        .model
                        .create_transaction(caller, requester, &terms, now);
                    let c = k.create_naming(requester, &terms).await;
                    if let (Ok((a, _)), Ok(b)) = (&m, &c) {
                        if a != b {
                            return Err(format!("ids differ: model {a}, chain {b}"));
                        }
                        self.ids.push(*a);
                    }
                    let t = m.as_ref().map(|(id, _)| vec![*id]).unwrap_or_default();
                    (m.map(|x| x.1), c.map(|_| ()), t)
                }
            }
            Step::Act {
                pick,
                who,
                kind,
                arg,
            } => {
                if self.ids.is_empty() {
                    return Ok(());
                }
                let id = self.ids[pick % self.ids.len()];
                let tx = self.model.transaction(id).unwrap().clone();
                let action = action(*kind, *arg, &tx, self.devnet.deployment().kernel);
                let caller = self.addr(*who);
                let m = self.model.act(id, &action, caller, now);
                let c = send_action(&self.clients[*who], id, &action).await;
                (m, c, vec![id])
            }
            Step::Guided { pick, r } => {
                let live: Vec<B256> = self
                    .ids
                    .iter()
                    .copied()
                    .filter(|id| !self.model.transaction(*id).unwrap().state.is_terminal())
                    .collect();
                if live.is_empty() {
                    return Ok(());
                }
                let id = live[pick % live.len()];
                let tx = self.model.transaction(id).unwrap().clone();
                let (who, action) = self.next_step(&tx, *r);
                let m = self.model.act(id, &action, self.addr(who), now);
                let c = send_action(&self.clients[who], id, &action).await;
                (m, c, vec![id])
            }
            Step::Batch { start, len, who } => {
                if self.ids.is_empty() {
                    return Ok(());
                }
                let batch: Vec<B256> = (0..*len)
                    .map(|i| self.ids[start.wrapping_add(i) % self.ids.len()])
                    .collect();
                let (n, moves) = self.model.settle_batch(&batch, self.addr(*who), now);
                let c = self.clients[*who].settle_batch(&batch).await;
                if let Ok((cn, _)) = &c
                    && *cn != n
                {
                    return Err(format!("batch settled {cn} on chain, {n} in the model"));
                }
                (Ok(moves), c.map(|_| ()), batch)
            }
            Step::Pause { on, who } => {
                // Mostly the current admin; one time in four anyone (an old admin, the pauser, a stranger).
                let who = if who.is_multiple_of(4) {
                    who / 4 % (ACTORS + 2)
                } else {
                    self.index(self.model.admin())
                };
                let caller = self.addr(who);
                let m = if *on {
                    self.model.pause(caller)
                } else {
                    self.model.unpause(caller)
                };
                let c = if *on {
                    self.clients[who].pause().await
                } else {
                    self.clients[who].unpause().await
                };
                (m.map(|_| Moves::default()), c.map(|_| ()), vec![])
            }
            Step::Govern { kind, who, target } => {
                let (m, c) = self.govern(*kind, *who, *target, now).await;
                (m.map(|_| Moves::default()), c, vec![])
            }
            Step::AliasNextId { pick } => {
                let unfunded: Vec<B256> = self
                    .ids
                    .iter()
                    .copied()
                    .filter(|id| {
                        matches!(
                            self.model.transaction(*id).unwrap().state,
                            State::Initiated | State::Quoted
                        )
                    })
                    .collect();
                if unfunded.is_empty() {
                    return Ok(());
                }
                let tx = self
                    .model
                    .transaction(unfunded[pick % unfunded.len()])
                    .unwrap()
                    .clone();
                let next = actp_core::ids::transaction_id(
                    tx.requester,
                    tx.provider,
                    tx.amount,
                    SERVICE,
                    self.model.nonce(tx.requester),
                );
                let who = self.index(tx.requester);
                let fund = Action::Fund {
                    escrow_contract: self.devnet.deployment().kernel,
                    escrow_id: next,
                };
                let m = self.model.act(tx.id, &fund, tx.requester, now);
                let c = send_action(&self.clients[who], tx.id, &fund).await;
                self.check_outcome(&m, &c)?;
                self.compare(&[tx.id]).await?;
                self.compare_aliases(&[next]).await?;
                // The same requester creating the transaction whose id is now its alias.
                self.now += 1;
                self.set_next_timestamp().await;
                let terms = CreateParams::new(
                    tx.provider,
                    tx.amount,
                    tx.deadline.max(self.now + 600),
                    tx.dispute_window,
                    SERVICE,
                );
                let m = self
                    .model
                    .create_transaction(tx.requester, tx.requester, &terms, self.now);
                let c = self.clients[who].create(&terms).await;
                if let (Ok((a, _)), Ok(b)) = (&m, &c) {
                    if a != b {
                        return Err(format!("ids differ: model {a}, chain {b}"));
                    }
                    self.ids.push(*a);
                }
                (m.map(|x| x.1), c.map(|_| ()), vec![tx.id])
            }
            Step::Warp(_) => unreachable!(),
        };
        self.check_outcome(&model, &chain)?;
        if model.is_ok() {
            for id in &touched {
                *self
                    .states_reached
                    .entry(self.model.transaction(*id).unwrap().state)
                    .or_default() += 1;
            }
        }
        self.compare(&touched).await?;
        if matches!(step, Step::Pause { .. } | Step::Govern { .. }) {
            self.compare_governance().await?;
        }
        if matches!(step, Step::Act { kind: 0, .. } | Step::Guided { .. }) {
            self.compare_aliases(&ALIASES).await?;
        }
        Ok(())
    }

    async fn set_next_timestamp(&self) {
        let _: serde_json::Value = alloy::providers::Provider::raw_request(
            &self.devnet.provider(),
            "evm_setNextBlockTimestamp".into(),
            (self.now,),
        )
        .await
        .unwrap();
    }

    /// Counts an agreeing outcome, or describes the disagreement.
    fn check_outcome<T: std::fmt::Debug>(
        &mut self,
        model: &Result<T, actp_core::Rejection>,
        chain: &Result<(), ClientError>,
    ) -> Result<(), String> {
        match (model, chain) {
            (Ok(_), Ok(())) => self.accepted += 1,
            (Err(r), Err(e)) if e.rejection() == Some(r) => {
                self.rejected += 1;
                let name = format!("{r:?}");
                let name = name.split(['(', ' ']).next().unwrap_or_default().to_owned();
                *self.rejections.entry(name).or_default() += 1;
            }
            _ => return Err(format!("outcome differs: model {model:?}, chain {chain:?}")),
        }
        Ok(())
    }

    /// Index into `clients` of an address (the stranger for an unknown one).
    fn index(&self, a: Address) -> usize {
        (0..=ACTORS + 1)
            .find(|i| self.addr(*i) == a)
            .unwrap_or(ACTORS + 1)
    }

    /// One governance call on both sides. The caller is usually the one the rule names (the admin, or the
    /// pending admin for acceptAdmin), one time in four anyone.
    async fn govern(
        &mut self,
        kind: u8,
        who: usize,
        target: usize,
        now: u64,
    ) -> (Result<(), actp_core::Rejection>, Result<(), ClientError>) {
        use actp_client::bindings::EscrowKernel as K;
        use alloy::sol_types::SolCall;
        let rightful = match (kind, self.pending_admin) {
            (1, Some(pending)) => pending,
            _ => self.index(self.model.admin()),
        };
        let who = if who.is_multiple_of(4) {
            who / 4 % (ACTORS + 2)
        } else {
            rightful
        };
        let (caller, to) = (self.addr(who), self.addr(target));
        let (m, input) = match kind {
            0 => (
                self.model.transfer_admin(caller, to),
                K::transferAdminCall { newAdmin: to }.abi_encode(),
            ),
            1 => (
                self.model.accept_admin(caller, now),
                K::acceptAdminCall {}.abi_encode(),
            ),
            2 => (
                self.model.set_pauser(caller, to),
                K::setPauserCall { newPauser: to }.abi_encode(),
            ),
            _ => {
                let approved = kind == 3;
                (
                    self.model.set_mediator(caller, to, approved, now),
                    K::setMediatorCall {
                        mediator: to,
                        approved,
                    }
                    .abi_encode(),
                )
            }
        };
        let k = &self.clients[who];
        let c = k.send(Some(k.address()), input.into()).await.map(|_| ());
        if m.is_ok() {
            match kind {
                0 => self.pending_admin = Some(target),
                1 => self.pending_admin = None,
                3 => {
                    self.mediators.insert(target);
                }
                4 => {
                    self.mediators.remove(&target);
                }
                _ => {}
            }
        }
        (m, c)
    }

    /// The governance views against the model: admin, pauser, pause, and who may resolve now.
    async fn compare_governance(&self) -> Result<(), String> {
        let kernel = self.kernel_contract();
        let admin = kernel.admin().call().await.unwrap();
        let pauser = kernel.pauser().call().await.unwrap();
        let paused = kernel.paused().call().await.unwrap();
        let expect = (self.model.admin(), self.model.pauser(), self.model.paused());
        if expect != (admin, pauser, paused) {
            return Err(format!(
                "governance differs: model {expect:?}, chain {:?}",
                (admin, pauser, paused)
            ));
        }
        for i in 0..=ACTORS + 1 {
            let a = self.addr(i);
            let c = kernel.isResolver(a).call().await.unwrap();
            // Views see the last mined block's time; the model is asked at the same time.
            let t = self.devnet.now().await.unwrap();
            let m = self.model.is_resolver(a, t);
            if c != m {
                return Err(format!("isResolver({a}) at {t}: model {m}, chain {c}"));
            }
        }
        Ok(())
    }

    /// The vault views by escrow id, asked as every account: `remaining` (resolves the caller's own alias
    /// first) and `verifyEscrow` naming that account as the requester (against the model's provider).
    async fn compare_aliases(&self, escrow_ids: &[B256]) -> Result<(), String> {
        use futures::StreamExt;
        let kernel = self.kernel_contract();
        // Every (escrow id, caller) and (escrow id, requester, provider) view, asked 32 at a time.
        let mut asks = Vec::new();
        for escrow_id in escrow_ids {
            for i in 0..=ACTORS + 1 {
                asks.push((*escrow_id, self.addr(i), None));
                for p in 0..=ACTORS + 1 {
                    asks.push((*escrow_id, self.addr(i), Some(self.addr(p))));
                }
            }
        }
        let answers: Vec<_> = futures::stream::iter(asks)
            .map(|(escrow_id, a, provider)| {
                let kernel = kernel.clone();
                async move {
                    let chain = match provider {
                        None => (
                            false,
                            kernel.remaining(escrow_id).from(a).call().await.unwrap(),
                        ),
                        Some(p) => {
                            let v = kernel
                                .verifyEscrow(escrow_id, a, p, U256::ZERO)
                                .call()
                                .await
                                .unwrap();
                            (v.isActive, v.escrowAmount)
                        }
                    };
                    (escrow_id, a, provider, chain)
                }
            })
            .buffered(32)
            .collect()
            .await;
        for (escrow_id, a, provider, chain) in answers {
            match provider {
                None => {
                    let m = self.model.remaining_of(escrow_id, a);
                    if chain.1 != m {
                        return Err(format!(
                            "remaining({escrow_id}) asked by {a}: model {m}, chain {}",
                            chain.1
                        ));
                    }
                }
                Some(provider) => {
                    let m = self.model.verify_escrow(escrow_id, a, provider, U256::ZERO);
                    if chain != m {
                        return Err(format!(
                            "verifyEscrow({escrow_id}, {a}, {provider}): model {m:?}, chain {chain:?}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn kernel_contract(
        &self,
    ) -> actp_client::bindings::EscrowKernel::EscrowKernelInstance<alloy::providers::DynProvider>
    {
        actp_client::bindings::EscrowKernel::new(
            self.devnet.deployment().kernel,
            self.devnet.provider(),
        )
    }

    /// The party and action that usually come next for `tx` (index into `clients`).
    fn next_step(&self, tx: &actp_core::model::Transaction, r: u64) -> (usize, Action) {
        let (req, prov) = (self.index(tx.requester), self.index(tx.provider));
        let kernel = self.devnet.deployment().kernel;
        let roll = r % 100;
        let left = tx.amount - tx.released;
        // One funding in five links an older client's escrow id, shared among requesters.
        let fund = if (r >> 8).is_multiple_of(5) {
            Action::Fund {
                escrow_contract: kernel,
                escrow_id: ALIASES[(r >> 16) as usize % ALIASES.len()],
            }
        } else {
            Action::fund(kernel, tx.id)
        };
        match tx.state {
            State::Initiated => match roll {
                0..=69 => (req, fund),
                70..=84 => (prov, Action::quote(Some(B256::repeat_byte(3)))),
                _ => (req, Action::cancel()),
            },
            State::Quoted => match roll {
                0..=59 => (req, fund),
                60..=79 => (
                    req,
                    Action::AcceptQuote {
                        new_amount: U256::from(50_000 + r % 2_000_000),
                    },
                ),
                _ => (req, Action::cancel()),
            },
            State::Committed => match roll {
                0..=79 => (prov, Action::start()),
                80..=89 => (prov, Action::cancel()),
                _ => (req, Action::cancel()),
            },
            State::InProgress => match roll {
                0..=59 => (
                    prov,
                    Action::deliver(
                        if r.is_multiple_of(2) {
                            0
                        } else {
                            tx.dispute_window + r % 7_200
                        },
                        r.is_multiple_of(3).then_some(B256::repeat_byte(5)),
                    ),
                ),
                60..=79 => (
                    req,
                    Action::ReleaseMilestone {
                        amount: U256::from(1 + r % 400_000),
                    },
                ),
                80..=89 => (prov, Action::cancel()),
                _ => (req, Action::cancel()),
            },
            State::Delivered => match roll {
                0..=29 => (req, Action::settle()),
                30..=54 => (ACTORS + 1, Action::settle()),
                55..=64 => (prov, Action::ReleaseEscrow),
                65..=84 => (req, Action::dispute()),
                _ => (prov, Action::dispute()),
            },
            _ => {
                let to_requester = if left.is_zero() {
                    U256::ZERO
                } else {
                    U256::from(r) % (left + U256::from(1))
                };
                // Usually the admin, sometimes a mediator (maybe a party, maybe not yet active) or anyone.
                let resolver = match (r >> 24) % 8 {
                    0 => ((r >> 32) % (ACTORS as u64 + 2)) as usize,
                    1..=2 if !self.mediators.is_empty() => *self
                        .mediators
                        .iter()
                        .nth((r >> 32) as usize % self.mediators.len())
                        .unwrap(),
                    _ => self.index(self.model.admin()),
                };
                (
                    resolver,
                    Action::resolve(
                        if r.is_multiple_of(2) {
                            State::Settled
                        } else {
                            State::Cancelled
                        },
                        to_requester,
                        left - to_requester,
                    ),
                )
            }
        }
    }

    async fn compare(&self, touched: &[B256]) -> Result<(), String> {
        let k = &self.clients[0];
        for id in touched {
            let (Some(m), Ok(c)) = (self.model.transaction(*id), k.get(*id).await) else {
                continue;
            };
            let window_field = m.window_end.unwrap_or(m.dispute_window);
            let expect = (
                m.state,
                m.amount,
                m.updated_at,
                m.deadline,
                window_field,
                m.fee_bps,
                m.escrowed,
                m.metadata,
                m.dispute_initiator.unwrap_or_default(),
            );
            let got = (
                c.state,
                c.amount,
                c.updated_at,
                c.deadline,
                c.dispute_window,
                c.fee_bps,
                c.escrow_contract != Address::ZERO,
                c.metadata,
                c.dispute_initiator,
            );
            if expect != got {
                return Err(format!(
                    "transaction {id} differs:\n  model {expect:?}\n  chain {got:?}"
                ));
            }
            if k.remaining(*id).await.unwrap() != m.remaining() {
                return Err(format!("remaining of {id} differs"));
            }
        }
        let kernel = self.devnet.deployment().kernel;
        let mut who: Vec<Address> = (0..=ACTORS + 1).map(|i| self.addr(i)).collect();
        who.push(kernel);
        for a in who {
            let (m, c) = (self.model.balance_of(a), k.balance_of(a).await.unwrap());
            if a != self.addr(0) && m != c {
                return Err(format!("balance of {a} differs: model {m}, chain {c}"));
            }
        }
        let (m, c) = (self.model.accrued_fees(), k.accrued_fees().await.unwrap());
        if m != c {
            return Err(format!("accrued fees differ: model {m}, chain {c}"));
        }
        Ok(())
    }
}

fn action(kind: u8, arg: u64, tx: &actp_core::model::Transaction, kernel: Address) -> Action {
    let left = tx.amount - tx.released;
    match kind {
        0 => match arg % 6 {
            0 => Action::Fund {
                escrow_contract: kernel,
                escrow_id: ALIASES[(arg >> 8) as usize % ALIASES.len()],
            },
            1 => Action::Fund {
                escrow_contract: kernel,
                escrow_id: if arg.is_multiple_of(4) {
                    B256::ZERO
                } else {
                    B256::repeat_byte(0x77) // an id some transaction may have, or nobody
                },
            },
            _ => Action::fund(kernel, tx.id),
        },
        1 => Action::start(),
        2 => {
            let window = match arg % 4 {
                0 => 0,
                1 => tx.dispute_window + arg % 3_600,
                2 => arg % (31 * 86_400),
                _ => tx.dispute_window,
            };
            Action::deliver(
                window,
                arg.is_multiple_of(3).then_some(B256::repeat_byte(5)),
            )
        }
        3 => {
            if arg.is_multiple_of(5) {
                Action::ReleaseEscrow
            } else {
                Action::settle()
            }
        }
        4 => Action::dispute(),
        5 => {
            let to_requester = if left.is_zero() {
                U256::ZERO
            } else {
                U256::from(arg) % (left + U256::from(1))
            };
            let to_provider = if arg.is_multiple_of(9) {
                left - to_requester + U256::from(1)
            } else {
                left - to_requester
            };
            Action::resolve(
                if arg.is_multiple_of(2) {
                    State::Settled
                } else {
                    State::Cancelled
                },
                to_requester,
                to_provider,
            )
        }
        6 => Action::cancel(),
        7 => Action::ReleaseMilestone {
            amount: U256::from(arg % 3_000_000),
        },
        8 => Action::quote(if arg.is_multiple_of(4) {
            None
        } else {
            Some(B256::repeat_byte((arg % 7) as u8))
        }),
        9 => Action::AcceptQuote {
            new_amount: U256::from(40_000 + arg % 3_000_000),
        },
        _ => Action::Transition {
            to: State::try_from((arg % 8) as u8).unwrap(),
            proof: vec![1u8; (arg % 3) as usize * 16],
        },
    }
}

async fn send_action(k: &Kernel, id: B256, action: &Action) -> Result<(), ClientError> {
    use actp_client::bindings::EscrowKernel as K;
    use alloy::sol_types::SolCall;
    let input = match action {
        Action::Fund {
            escrow_contract,
            escrow_id,
        } => K::linkEscrowCall {
            transactionId: id,
            escrowContract: *escrow_contract,
            escrowId: *escrow_id,
        }
        .abi_encode(),
        Action::Transition { to, proof } => K::transitionStateCall {
            transactionId: id,
            newState: to.code(),
            proof: proof.clone().into(),
        }
        .abi_encode(),
        Action::ReleaseEscrow => K::releaseEscrowCall { transactionId: id }.abi_encode(),
        Action::ReleaseMilestone { amount } => K::releaseMilestoneCall {
            transactionId: id,
            amount: *amount,
        }
        .abi_encode(),
        Action::AcceptQuote { new_amount } => K::acceptQuoteCall {
            transactionId: id,
            newAmount: *new_amount,
        }
        .abi_encode(),
        Action::AnchorAttestation { uid } => K::anchorAttestationCall {
            transactionId: id,
            attestationUID: *uid,
        }
        .abi_encode(),
    };
    k.send(Some(k.address()), input.into()).await.map(|_| ())
}

/// Runs `steps` on a fresh devnet; the index and description of the first divergence, if any.
async fn run(steps: &[Step]) -> Option<(usize, String)> {
    let mut world = World::new().await;
    for (i, s) in steps.iter().enumerate() {
        if let Err(why) = world.step(s).await {
            return Some((i, why));
        }
    }
    eprintln!(
        "differential: {} accepted, {} rejected with the same error on both sides; states entered: {:?}; \
         rejections: {:?}",
        world.accepted, world.rejected, world.states_reached, world.rejections
    );
    // A full run must exercise the lifecycle, or agreement proves little.
    if steps.len() >= 500 && world.accepted < steps.len() / 5 {
        return Some((
            steps.len(),
            format!(
                "only {} of {} steps were accepted",
                world.accepted,
                steps.len()
            ),
        ));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_and_kernel_agree_step_by_step() {
    let n: usize = std::env::var("ACTP_DIFF_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let seed: u64 = std::env::var("ACTP_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let steps = generate(seed, n);
    let Some((at, why)) = run(&steps).await else {
        eprintln!("differential: {n} steps agree (seed {seed})");
        return;
    };
    // Shrink (delta debugging): drop chunks of steps, halving the chunk size, while the run still diverges.
    let mut minimal: Vec<Step> = steps[..(at + 1).min(steps.len())].to_vec();
    let mut chunk = minimal.len() / 2;
    let mut reruns = 0;
    while chunk >= 1 && reruns < 150 {
        let mut start = 0;
        while start < minimal.len() && reruns < 150 {
            let mut candidate = minimal.clone();
            let end = (start + chunk).min(candidate.len());
            candidate.drain(start..end);
            reruns += 1;
            match run(&candidate).await {
                Some((at2, _)) if !candidate.is_empty() => {
                    candidate.truncate(at2 + 1);
                    minimal = candidate;
                }
                _ => start += chunk,
            }
        }
        chunk /= 2;
    }
    panic!(
        "model and kernel diverge (seed {seed}, step {at}): {why}\nminimal failing sequence ({} steps):\n{:#?}",
        minimal.len(),
        minimal
    );
}
