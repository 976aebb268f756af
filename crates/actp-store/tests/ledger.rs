//! The ledger's store contract, run on both backends: sled in a temporary directory, and a fresh database on a
//! real PostgreSQL server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actp_core::{Address, B256};
use actp_store::{
    StoreUrl,
    ledger::{KillSwitch, LedgerStore},
};
use common::on_both;

const AGENT: Address = Address::repeat_byte(0xa1);
const OTHER: Address = Address::repeat_byte(0xb2);

#[tokio::test]
async fn a_transaction_reads_its_writes_and_commits_them_together() {
    on_both("pay", |url| async move {
        let store = LedgerStore::open(&url).await.unwrap();
        let mut tx = store.begin(AGENT).await.unwrap();
        assert_eq!(tx.get("policy").await.unwrap(), None);
        tx.put("policy", b"p1".to_vec()).await.unwrap();
        tx.put("pay/b", b"2".to_vec()).await.unwrap();
        tx.put("pay/a", b"1".to_vec()).await.unwrap();
        tx.put("tot/d2026-11-26/*", b"t".to_vec()).await.unwrap();
        tx.index_tx(B256::repeat_byte(9), "pay/a").await.unwrap();
        assert_eq!(tx.get("policy").await.unwrap().as_deref(), Some(&b"p1"[..]));
        tx.commit().await.unwrap();
        let mut other = store.begin(OTHER).await.unwrap();
        other.put("pay/z", b"z".to_vec()).await.unwrap();
        other.commit().await.unwrap();

        assert_eq!(
            store.get(AGENT, "policy").await.unwrap().as_deref(),
            Some(&b"p1"[..])
        );
        assert_eq!(
            store.scan(AGENT, "pay/").await.unwrap(),
            [
                ("pay/a".to_owned(), b"1".to_vec()),
                ("pay/b".to_owned(), b"2".to_vec())
            ]
        );
        assert_eq!(store.scan(AGENT, "pay/b").await.unwrap().len(), 1);
        assert_eq!(store.scan(OTHER, "pay/").await.unwrap().len(), 1);
        assert_eq!(store.agents().await.unwrap(), [AGENT, OTHER]);
        assert_eq!(
            store.find_tx(B256::repeat_byte(9)).await.unwrap(),
            Some((AGENT, "pay/a".to_owned()))
        );
        assert_eq!(store.find_tx(B256::repeat_byte(8)).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_dropped_transaction_writes_nothing_and_frees_the_agent() {
    on_both("pay", |url| async move {
        let store = LedgerStore::open(&url).await.unwrap();
        let mut tx = store.begin(AGENT).await.unwrap();
        tx.put("pay/x", b"lost".to_vec()).await.unwrap();
        drop(tx);
        // Rolled back and let go: the next transaction gets the agent (and does not wait forever).
        let mut tx = tokio::time::timeout(actp_e2e::PATIENCE, store.begin(AGENT))
            .await
            .expect("the dropped transaction still holds the agent")
            .unwrap();
        assert_eq!(tx.get("pay/x").await.unwrap(), None);
        tx.commit().await.unwrap();
        assert_eq!(store.get(AGENT, "pay/x").await.unwrap(), None);
    })
    .await;
}

/// Fifty read-modify-write transactions on one agent from two handles (two processes on PostgreSQL), all at
/// once: none is lost, because each waits for the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_on_one_agent_take_turns() {
    on_both("pay", |url| async move {
        let first = LedgerStore::open(&url).await.unwrap();
        let second = match &url {
            StoreUrl::Postgres(_) => LedgerStore::open(&url).await.unwrap(),
            StoreUrl::Sled(_) => first.clone(),
        };
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = if i % 2 == 0 {
                    first.clone()
                } else {
                    second.clone()
                };
                tokio::spawn(async move {
                    let mut tx = store.begin(AGENT).await.unwrap();
                    let n: u64 = tx
                        .get("tot/count")
                        .await
                        .unwrap()
                        .map_or(0, |v| String::from_utf8(v).unwrap().parse().unwrap());
                    tokio::task::yield_now().await;
                    tx.put("tot/count", (n + 1).to_string().into_bytes())
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            first.get(AGENT, "tot/count").await.unwrap().as_deref(),
            Some(&b"50"[..])
        );
    })
    .await;
}

#[tokio::test]
async fn the_kill_switch_reaches_transactions() {
    on_both("pay", |url| async move {
        let store = LedgerStore::open(&url).await.unwrap();
        assert_eq!(store.kill_switch().suspended(AGENT).await.unwrap(), None);
        store
            .kill_switch()
            .suspend(AGENT, Some("over budget"))
            .await
            .unwrap();
        // A kill switch opened on its own (as `actp budget suspend` does, while an agent holds the store).
        KillSwitch::open(&url)
            .await
            .unwrap()
            .suspend(OTHER, None)
            .await
            .unwrap();
        assert_eq!(
            store.kill_switch().suspended(AGENT).await.unwrap(),
            Some(Some("over budget".to_owned()))
        );
        assert_eq!(
            store.kill_switch().suspended(OTHER).await.unwrap(),
            Some(None)
        );
        let mut tx = store.begin(AGENT).await.unwrap();
        assert_eq!(
            tx.suspended().await.unwrap(),
            Some(Some("over budget".to_owned()))
        );
        tx.commit().await.unwrap();
        store.kill_switch().resume(AGENT).await.unwrap();
        store.kill_switch().resume(AGENT).await.unwrap();
        let mut tx = store.begin(AGENT).await.unwrap();
        assert_eq!(tx.suspended().await.unwrap(), None);
        tx.commit().await.unwrap();
        // A suspended agent with no records is not listed among the agents.
        assert!(store.agents().await.unwrap().is_empty());
    })
    .await;
}

/// On sled, records keep the layout `actp-pay` has always written, so existing ledgers open as they are.
#[tokio::test]
async fn sled_keeps_the_existing_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = LedgerStore::open(&StoreUrl::Sled(dir.path().to_path_buf()))
        .await
        .unwrap();
    let mut tx = store.begin(AGENT).await.unwrap();
    tx.put("policy", b"{}".to_vec()).await.unwrap();
    tx.put("pay/k1", b"{}".to_vec()).await.unwrap();
    tx.index_tx(B256::repeat_byte(1), "pay/k1").await.unwrap();
    tx.commit().await.unwrap();
    store
        .kill_switch()
        .suspend(AGENT, Some("why"))
        .await
        .unwrap();
    drop(store);
    let agent = format!("{AGENT:#x}");
    let db = loop {
        match sled::Config::new().path(dir.path().join("ledger")).open() {
            Ok(db) => break db,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    let tree = db.open_tree("ledger").unwrap();
    assert!(tree.contains_key(format!("policy/{agent}")).unwrap());
    assert!(tree.contains_key(format!("pay/{agent}/k1")).unwrap());
    assert_eq!(
        tree.get(format!("tx/{}", B256::repeat_byte(1)))
            .unwrap()
            .unwrap()
            .as_ref(),
        format!("{agent}/k1").as_bytes()
    );
    let file = std::fs::read_to_string(dir.path().join("suspended").join(&agent)).unwrap();
    assert!(file.contains("\"reason\":\"why\""), "{file}");
}
