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

mod compare;
mod lifecycle;
mod sessions;
mod steps;

use actp_client::{ClientError, Devnet, Kernel};
use actp_core::{
    Address, B256, State, U256,
    model::{Action, CreateParams, KernelModel, Moves},
};
use steps::{ALIASES, SERVICE, Step, action, generate, send_action};

const ACTORS: usize = 6; // dev accounts 1..=6; 0 is the admin
const FUNDS: u64 = 1_000_000_000_000;

/// What a step did on each side, and the transactions it touched.
type Sides = (
    Result<Moves, actp_core::Rejection>,
    Result<(), ClientError>,
    Vec<B256>,
);

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
        let (model, chain, touched): Sides = match step {
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
                let c = self.send(*who, id, &action).await;
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
                let (who, action) = if tx.session.is_some() {
                    self.next_session_step(&tx, *r)
                } else {
                    self.next_step(&tx, *r)
                };
                let m = self.model.act(id, &action, self.addr(who), now);
                let c = self.send(who, id, &action).await;
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
            Step::OpenSession {
                who,
                provider,
                amount,
                ahead,
                window,
                grace,
            } => {
                self.open_session(*who, *provider, *amount, *ahead, *window, *grace)
                    .await?
            }
            Step::SessionAct {
                pick,
                who,
                kind,
                arg,
            } => {
                if self.ids.is_empty() {
                    return Ok(());
                }
                // Mostly sessions; now and then an ordinary transaction (refused: not a session).
                let sessions: Vec<B256> = self
                    .ids
                    .iter()
                    .copied()
                    .filter(|id| self.model.transaction(*id).unwrap().session.is_some())
                    .collect();
                let id = if sessions.is_empty() || arg.is_multiple_of(10) {
                    self.ids[pick % self.ids.len()]
                } else {
                    sessions[pick % sessions.len()]
                };
                let tx = self.model.transaction(id).unwrap().clone();
                let action = World::session_action(*kind, *arg, &tx);
                let m = self.model.act(id, &action, self.addr(*who), now);
                let c = self.send(*who, id, &action).await;
                (m, c, vec![id])
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
