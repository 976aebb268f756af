//! The settler's store contract, run on both backends: sled in a temporary directory, and a fresh database on a
//! real PostgreSQL server.

#![allow(clippy::unwrap_used)]

mod common;

use common::on_both;
use std::time::Duration;

use actp_core::{Address, B256};
use actp_store::{
    StoreUrl,
    settler::{Change, Pending, SettlerStore},
};

const KERNEL: Address = Address::repeat_byte(0x4b);

fn id(n: u8) -> B256 {
    B256::repeat_byte(n)
}

#[tokio::test]
async fn changes_and_the_checkpoint_move_together() {
    on_both("settler", |url| async move {
        let store = SettlerStore::open(&url, 31_337, KERNEL).await.unwrap();
        assert_eq!(store.checkpoint().await.unwrap(), None);
        store
            .apply(
                &[
                    (10, Change::Delivered(id(1), Some(500))),
                    (11, Change::Delivered(id(2), None)),
                    (12, Change::Delivered(id(3), None)),
                    (14, Change::Closed(id(3))),
                ],
                15,
            )
            .await
            .unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.checkpoint().await.unwrap(), Some(15));
        assert_eq!(
            store.pending().await.unwrap(),
            [
                Pending {
                    id: id(1),
                    window_end: Some(500)
                },
                Pending {
                    id: id(2),
                    window_end: None
                },
            ]
        );
        // A window end is learned once, and not for a transaction that is no longer pending.
        store.set_window_end(id(2), 700).await.unwrap();
        store.set_window_end(id(2), 900).await.unwrap();
        store.set_window_end(id(3), 900).await.unwrap();
        let pending = store.pending().await.unwrap();
        assert_eq!(
            pending[1],
            Pending {
                id: id(2),
                window_end: Some(700)
            }
        );
        assert_eq!(pending.len(), 2);
        // Reopened, everything is still there.
        drop(store);
        let reopened = open_again(&url).await;
        assert_eq!(reopened.checkpoint().await.unwrap(), Some(15));
        assert_eq!(reopened.pending().await.unwrap(), pending);
    })
    .await;
}

/// A second daemon that read the same blocks later applies nothing twice: a change from below the checkpoint
/// (here, a delivery that the first daemon already saw closed) is skipped, and the checkpoint never goes back.
#[tokio::test]
async fn changes_from_blocks_already_applied_are_skipped() {
    on_both("settler", |url| async move {
        let store = SettlerStore::open(&url, 31_337, KERNEL).await.unwrap();
        store
            .apply(
                &[
                    (105, Change::Delivered(id(7), Some(1))),
                    (115, Change::Closed(id(7))),
                ],
                121,
            )
            .await
            .unwrap();
        // The slower daemon read blocks 100 to 110 only.
        store
            .apply(&[(105, Change::Delivered(id(7), Some(1)))], 111)
            .await
            .unwrap();
        assert!(store.pending().await.unwrap().is_empty());
        assert_eq!(store.checkpoint().await.unwrap(), Some(121));
        // New blocks apply as usual.
        store
            .apply(&[(121, Change::Delivered(id(8), None))], 130)
            .await
            .unwrap();
        assert_eq!(store.pending().await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_sled_directory_of_another_kernel_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::Sled(dir.path().to_path_buf());
    drop(SettlerStore::open(&url, 1, KERNEL).await.unwrap());
    let err = open_retrying(&url, 1, Address::repeat_byte(1))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("belongs to chain 1, kernel 0x4b4b"),
        "{err}"
    );
    let err = open_retrying(&url, 2, KERNEL).await.unwrap_err();
    assert!(err.to_string().contains("not chain 2"), "{err}");
}

/// On PostgreSQL one database holds any number of kernels' state apart.
#[tokio::test]
async fn postgres_keeps_kernels_apart() {
    let url: StoreUrl = actp_e2e::postgres::shared()
        .fresh_database()
        .await
        .parse()
        .unwrap();
    let a = SettlerStore::open(&url, 1, KERNEL).await.unwrap();
    let b = SettlerStore::open(&url, 1, Address::repeat_byte(1))
        .await
        .unwrap();
    a.apply(&[(1, Change::Delivered(id(1), None))], 2)
        .await
        .unwrap();
    assert!(b.pending().await.unwrap().is_empty());
    assert_eq!(b.checkpoint().await.unwrap(), None);
}

/// Two daemons lease disjoint sets, a daemon renews its own lease, and a lease that expired is taken over.
#[tokio::test]
async fn leases_are_exclusive_until_they_expire() {
    let url: StoreUrl = actp_e2e::postgres::shared()
        .fresh_database()
        .await
        .parse()
        .unwrap();
    let store = SettlerStore::open(&url, 1, KERNEL).await.unwrap();
    let other = SettlerStore::open(&url, 1, KERNEL).await.unwrap();
    let ids: Vec<B256> = (1..=4).map(id).collect();
    store
        .apply(
            &ids.iter()
                .map(|i| (1, Change::Delivered(*i, Some(1))))
                .collect::<Vec<_>>(),
            2,
        )
        .await
        .unwrap();
    let long = Duration::from_secs(3_600);
    assert_eq!(store.lease("a", &ids[..2], long).await.unwrap(), ids[..2]);
    assert_eq!(other.lease("b", &ids, long).await.unwrap(), ids[2..]);
    assert_eq!(
        store.lease("a", &ids, long).await.unwrap(),
        ids[..2],
        "renews its own"
    );
    // A daemon that died: its short lease expires and another takes the transactions over.
    let short = Duration::from_millis(200);
    let fresh = id(9);
    store
        .apply(&[(2, Change::Delivered(fresh, Some(1)))], 3)
        .await
        .unwrap();
    assert_eq!(store.lease("dead", &[fresh], short).await.unwrap(), [fresh]);
    assert!(other.lease("b", &[fresh], long).await.unwrap().is_empty());
    actp_e2e::eventually("the dead daemon's lease expired", || {
        let other = other.clone();
        async move { other.lease("b", &[fresh], long).await.unwrap() == [fresh] }
    })
    .await;
    // On sled there is one daemon: every id is its own.
    let dir = tempfile::tempdir().unwrap();
    let sled = SettlerStore::open(&StoreUrl::Sled(dir.path().into()), 1, KERNEL)
        .await
        .unwrap();
    assert_eq!(sled.lease("a", &ids, short).await.unwrap(), ids);
}

async fn open_again(url: &StoreUrl) -> SettlerStore {
    open_retrying(url, 31_337, KERNEL).await.unwrap()
}

/// sled releases a directory's lock once every handle is gone, from a background thread: a reopen right after
/// a drop waits for that.
async fn open_retrying(
    url: &StoreUrl,
    chain: u64,
    kernel: Address,
) -> Result<SettlerStore, actp_store::StoreError> {
    let until = std::time::Instant::now() + actp_e2e::PATIENCE;
    loop {
        match SettlerStore::open(url, chain, kernel).await {
            Err(actp_store::StoreError::Locked { .. }) if std::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}
