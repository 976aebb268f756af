//! A gateway on its embedded store with `--durability buffered` answers without waiting for the disk, yet a
//! SIGKILL right after its last answer loses nothing it answered: the journal's records are in the operating
//! system when the answer leaves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::process::Child;

use actp_client::{Devnet, DevnetOptions};
use actp_core::{Amount, State};
use actp_e2e::{chain, process::gateway_process};
use actp_pay::{PayingClient, SpendPolicy};
use common::{agent, echo_upstream};

mod common;

const PER_CALL_CALLS: usize = 6;
const SESSION_CALLS: usize = 20;

async fn call(client: &PayingClient, url: &str, body: String) {
    let response = client.post(url).body(body.clone()).send().await.unwrap();
    assert_eq!(response.status, 200, "{body}");
    assert_eq!(response.body, format!("echo: {body}").as_bytes());
}

/// The gateway process; killed when the test ends, however it ends.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_buffered_gateway_loses_nothing_it_answered() {
    let devnet = Devnet::start_with(DevnetOptions {
        accounts: 4,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let d = devnet.deployment();
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let key = devnet.dev_private_keys()[1].clone();
    let kernel = d.kernel.to_string();
    let start = || {
        let (child, url) = gateway_process(
            dir.path(),
            &devnet.rpc_url(),
            &kernel,
            &key,
            &[
                "--upstream",
                &upstream,
                "--route",
                "POST /v1/echo=0.10@echo",
                "--durability",
                "buffered",
            ],
        );
        (Gateway(child), format!("{url}/v1/echo"))
    };
    let (per_call, _a) = agent(&devnet, 2, SpendPolicy::default()).await;
    let session_policy = SpendPolicy {
        sessions: Some(true),
        session_calls: Some(100),
        ..SpendPolicy::default()
    };
    let (sessions, _b) = agent(&devnet, 3, session_policy).await;

    // Paid per call and from a session, side by side; the gateway is SIGKILLed as soon as the last answer is
    // in, well within the interval of its background sync.
    let (mut gateway, url) = start();
    let per_call_run = async {
        for n in 0..PER_CALL_CALLS {
            call(&per_call, &url, format!("per call {n}")).await;
        }
    };
    let session_run = async {
        for n in 0..SESSION_CALLS {
            call(&sessions, &url, format!("session call {n}")).await;
        }
    };
    tokio::join!(per_call_run, session_run);
    gateway.0.kill().unwrap();
    gateway.0.wait().unwrap();
    let session = sessions
        .ledger()
        .payments(sessions.agent())
        .await
        .unwrap()
        .remove(0);
    let before = session.session.clone().unwrap();
    assert_eq!(before.receipts, SESSION_CALLS as u64);

    // Restarted on the same directory: the session goes on where the receipts left it (a provider that lost a
    // charge would sign a receipt that does not chain, and the agent would refuse it and close the session).
    let (_gateway, url) = start();
    for n in 0..3 {
        call(&sessions, &url, format!("after the restart {n}")).await;
    }
    let payments = sessions.ledger().payments(sessions.agent()).await.unwrap();
    assert_eq!(payments.len(), 1, "the same session, no new one");
    let account = payments[0].session.clone().unwrap();
    assert_eq!(account.receipts, SESSION_CALLS as u64 + 3);
    assert_eq!(account.lost, Amount::ZERO);

    // Every per-call delivery queued before the kill is sent, once; the session closes for its receipts.
    sessions.close_sessions().await.unwrap();
    let mut ids: Vec<_> = per_call
        .ledger()
        .payments(per_call.agent())
        .await
        .unwrap()
        .iter()
        .map(|p| p.tx_id.unwrap())
        .collect();
    assert_eq!(ids.len(), PER_CALL_CALLS);
    let session_id = payments[0].tx_id.unwrap();
    ids.push(session_id);
    actp_e2e::eventually("every delivery and the close on chain", || async {
        chain::count_in(&devnet, &ids, State::Delivered).await == ids.len()
    })
    .await;
    let transitions = chain::transitions_to(&devnet, State::Delivered).await;
    for id in &ids {
        assert_eq!(transitions.get(id), Some(&1), "{id} delivered once");
    }
    let claimed = devnet
        .kernel(0)
        .await
        .unwrap()
        .session_of(session_id)
        .await
        .unwrap()
        .unwrap()
        .claimed;
    assert_eq!(claimed, account.charged.to_u256());
}
