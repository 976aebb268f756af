//! The session runs of the paywall bench, for one paywall (one durability): closed-loop rounds against unpaid
//! calls, open loop at two rates beside as many unpaid calls, optionally the same rounds in process, and one
//! client alone.

use std::time::Duration;

use actp_axum::Paywall;
use actp_client::Signer;
use actp_core::{
    Amount, B256, U256,
    proof::content_hash,
    session::{SessionVoucher, VoucherHeader},
};
use alloy_sol_types::Eip712Domain;

use super::cpu::cpu_time;
use super::floor::Floor;
use super::support::{BODY, Call, Comparison, Headers, Run, Target, drive, drive_paced, lanes};

/// How many calls each part of the runs takes from a session.
#[derive(Clone, Copy)]
pub(crate) struct Sizes {
    /// Per session, over the closed-loop rounds.
    pub(crate) closed: usize,
    /// Per session, in each of the two open-loop runs, and in the session calls of the CPU run (the open loop at
    /// the fixed rate, unpaid calls alone and then session calls alone, each run's process CPU read).
    pub(crate) paced: usize,
    /// Per session, in process (0: no in-process runs).
    pub(crate) direct: usize,
    /// The calls of the client alone, on a session of its own.
    pub(crate) single: usize,
}

impl Sizes {
    /// The calls each deposit must cover.
    pub(crate) fn calls_per_deposit(&self) -> usize {
        (self.closed + 3 * self.paced + self.direct).max(self.single)
    }
}

/// Every call of the runs, signed ahead: a lane per client, and the lane of the client alone.
pub(crate) struct Lanes {
    closed: Vec<Vec<Headers>>,
    paced: [Vec<Vec<Headers>>; 3],
    direct: Vec<Vec<Headers>>,
    single: Vec<Headers>,
}

/// The vouchers of `sessions` (one per client, then the client alone's), each call's raising the cumulative by
/// `price`, split into the runs' parts in order.
pub(crate) fn sign(
    sessions: &[B256],
    sizes: Sizes,
    requester: &Signer,
    domain: &Eip712Domain,
    price: Amount,
    expires: u64,
) -> Lanes {
    let lane = |id: B256, calls: usize| -> Vec<Headers> {
        (0..calls)
            .map(|k| {
                let cumulative = price.to_u256() * U256::from(k + 1);
                let header = voucher_header(id, cumulative, requester, domain, expires);
                vec![
                    ("X-AGIRAILS-TX-ID", id.to_string()),
                    ("X-AGIRAILS-VOUCHER", header.to_string()),
                ]
            })
            .collect()
    };
    let (alone, clients) = sessions.split_last().unwrap();
    let mut lanes = Lanes {
        closed: Vec::new(),
        paced: [Vec::new(), Vec::new(), Vec::new()],
        direct: Vec::new(),
        single: lane(*alone, sizes.single),
    };
    for id in clients {
        let mut calls = lane(*id, sizes.closed + 3 * sizes.paced + sizes.direct).into_iter();
        let mut take = |n: usize| calls.by_ref().take(n).collect::<Vec<_>>();
        lanes.closed.push(take(sizes.closed));
        lanes.paced[0].push(take(sizes.paced));
        lanes.paced[1].push(take(sizes.paced));
        lanes.paced[2].push(take(sizes.paced));
        lanes.direct.push(take(sizes.direct));
    }
    lanes
}

/// One open-loop run: unpaid and session calls alternating in each lane, each kind at `rate` per second.
pub(crate) struct Paced {
    pub(crate) rate: f64,
    pub(crate) comparison: Comparison,
    /// Journal syncs during the run, and how many of them took longer than 1, 10 and 100 ms.
    pub(crate) syncs: u64,
    pub(crate) slow_syncs: [u64; 3],
}

/// What the session runs of one paywall measured.
pub(crate) struct SessionRuns {
    pub(crate) closed: Alternated,
    /// Journal syncs during the closed-loop rounds.
    pub(crate) closed_syncs: u64,
    /// Receipts signed during the closed-loop rounds, per signature made.
    pub(crate) closed_receipts_per_signature: f64,
    pub(crate) paced: Vec<Paced>,
    /// The extra process CPU of a session call over an unpaid one at the same rate (the fixed open-loop rate),
    /// each kind run alone: the scheduling and batching of both are then alike, where a closed loop runs
    /// unpaid calls several times faster than session calls.
    pub(crate) cpu_at_rate: Duration,
    pub(crate) direct: Option<Alternated>,
    pub(crate) single: Comparison,
}

/// The voucher of a call of session `id` (`POST /paid` with [`BODY`]) that raises its cumulative to
/// `cumulative`, signed by `requester`.
pub(crate) fn voucher_header(
    id: B256,
    cumulative: U256,
    requester: &Signer,
    domain: &Eip712Domain,
    expires: u64,
) -> VoucherHeader {
    let voucher = SessionVoucher::for_request(
        id,
        cumulative,
        "POST",
        "/paid",
        content_hash(BODY.as_bytes()),
        expires,
    );
    let signature =
        futures::executor::block_on(requester.sign_hash(&voucher.signing_hash(domain))).unwrap();
    VoucherHeader::from_signature(&voucher, signature)
}

/// Runs `lanes` against `paywall` behind `web` (and `in_process`, if given, with the floor timed after each
/// of its rounds): the closed-loop rounds, then open loop at `fixed_rate` and at half the rate the rounds
/// reached, then in process, then one client alone.
pub(crate) async fn run(
    web: &Target,
    in_process: Option<(&Target, &Floor)>,
    paywall: &Paywall,
    lanes: Lanes,
    rounds: usize,
    fixed_rate: f64,
) -> SessionRuns {
    let calls_per_run: usize = lanes.paced[0].iter().map(Vec::len).sum();
    let syncs = paywall.disk_flushes();
    let signed = paywall.signatures();
    let closed = alternate(web, lanes.closed, rounds, None).await;
    let closed_syncs = paywall.disk_flushes() - syncs;
    let closed_receipts_per_signature = per_signature(signed, paywall.signatures());
    let mut paced = Vec::new();
    let [fixed, half, cpu_lanes] = lanes.paced;
    for (rate, lanes_paid) in [(fixed_rate, fixed), (closed.session.rps() / 2.0, half)] {
        // Each lane alternates an unpaid call and a session call, so both meet the same moments of the
        // machine.
        let mixed: Vec<Vec<Call>> = lanes_paid
            .into_iter()
            .map(|lane| {
                lane.into_iter()
                    .flat_map(|h| [("/unpaid", Vec::new()), ("/paid", h)])
                    .collect()
            })
            .collect();
        let before = paywall.disk_syncs();
        let mut runs = drive_paced(web, mixed, 2.0 * rate).await;
        let after = paywall.disk_syncs();
        let unpaid = runs.remove("/unpaid").unwrap_or_default();
        let session = runs.remove("/paid").unwrap_or_default();
        assert_eq!(session.ok, calls_per_run, "every session call is served");
        paced.push(Paced {
            rate,
            comparison: Comparison::of(&unpaid, &session),
            syncs: after.count - before.count,
            slow_syncs: [
                after.over_1ms - before.over_1ms,
                after.over_10ms - before.over_10ms,
                after.over_100ms - before.over_100ms,
            ],
        });
    }
    let cpu_calls: usize = cpu_lanes.iter().map(Vec::len).sum();
    let unpaid_lanes: Vec<Vec<Call>> = cpu_lanes
        .iter()
        .map(|lane| vec![("/unpaid", Vec::new()); lane.len()])
        .collect();
    let cpu = cpu_time();
    drive_paced(web, unpaid_lanes, fixed_rate).await;
    let unpaid_cpu = cpu_time().saturating_sub(cpu);
    let session_lanes: Vec<Vec<Call>> = cpu_lanes
        .into_iter()
        .map(|lane| lane.into_iter().map(|h| ("/paid", h)).collect())
        .collect();
    let cpu = cpu_time();
    let served = drive_paced(web, session_lanes, fixed_rate).await;
    let session_cpu = cpu_time().saturating_sub(cpu);
    assert_eq!(served.get("/paid").map_or(0, |r| r.ok), cpu_calls);
    let cpu_at_rate =
        session_cpu.saturating_sub(unpaid_cpu) / u32::try_from(cpu_calls.max(1)).unwrap_or(1);
    let direct = match in_process {
        Some((target, floor)) => {
            // A mark for a profiler to attach at.
            println!("sessions in process: starting");
            Some(alternate(target, lanes.direct, rounds, Some(floor)).await)
        }
        None => None,
    };
    let single = lanes.single.len();
    let unpaid_single: Run = drive(web, "/unpaid", vec![vec![vec![]; single]]).await;
    let session_single = drive(web, "/paid", vec![lanes.single]).await;
    assert_eq!(session_single.ok, single);
    SessionRuns {
        closed,
        closed_syncs,
        closed_receipts_per_signature,
        paced,
        cpu_at_rate,
        direct,
        single: Comparison::of(&unpaid_single, &session_single),
    }
}

/// Hashes signed per signature made between `before` and `after`.
pub(crate) fn per_signature(before: actp_axum::Signatures, after: actp_axum::Signatures) -> f64 {
    (after.hashes - before.hashes) as f64 / (after.made - before.made).max(1) as f64
}

/// Unpaid and from sessions in turn.
pub(crate) struct Alternated {
    pub(crate) unpaid: Run,
    pub(crate) session: Run,
    /// Session over unpaid requests per second, per round.
    pub(crate) ratios: Vec<f64>,
    /// The process's extra CPU per session call over an unpaid one, per round.
    pub(crate) cpu: Vec<Duration>,
    /// The crypto floor timed right after each round (when asked for).
    pub(crate) floors: Vec<Duration>,
}

impl Alternated {
    /// The extra CPU per session call over the floor timed beside it, per round.
    pub(crate) fn floor_multiples(&self) -> Vec<f64> {
        self.cpu
            .iter()
            .zip(&self.floors)
            .map(|(cpu, floor)| cpu.as_secs_f64() / floor.as_secs_f64())
            .collect()
    }
}

/// Runs unpaid calls and session calls in turn, `rounds` times, on `target`: each round takes the next part of
/// every session's calls (in order), and as many unpaid calls from as many clients. With a `floor`, the crypto
/// floor is timed after each round.
pub(crate) async fn alternate(
    target: &Target,
    sessions: Vec<Vec<Headers>>,
    rounds: usize,
    floor: Option<&Floor>,
) -> Alternated {
    let clients = sessions.len();
    let mut chunks: Vec<Vec<Vec<Headers>>> = vec![Vec::new(); rounds];
    for lane in sessions {
        let size = lane.len().div_ceil(rounds).max(1);
        for (r, chunk) in lane.chunks(size).enumerate() {
            chunks[r].push(chunk.to_vec());
        }
    }
    let mut out = Alternated {
        unpaid: Run::default(),
        session: Run::default(),
        ratios: Vec::new(),
        cpu: Vec::new(),
        floors: Vec::new(),
    };
    for chunk in chunks {
        let calls: usize = chunk.iter().map(Vec::len).sum();
        let cpu = cpu_time();
        let u = drive(target, "/unpaid", lanes(vec![vec![]; calls], clients)).await;
        let unpaid_cpu = cpu_time().saturating_sub(cpu);
        let cpu = cpu_time();
        let p = drive(target, "/paid", chunk).await;
        let session_cpu = cpu_time().saturating_sub(cpu);
        assert_eq!(p.ok, calls, "every session request must be served");
        out.ratios.push(p.rps() / u.rps());
        out.cpu
            .push(session_cpu.saturating_sub(unpaid_cpu) / u32::try_from(calls).unwrap_or(1));
        out.unpaid.merge(u);
        out.session.merge(p);
        if let Some(floor) = floor {
            out.floors.push(floor.time(FLOOR_RUNS).await.total());
        }
    }
    out
}

/// The runs of each part of the floor timed after a round.
const FLOOR_RUNS: u32 = 2_000;
