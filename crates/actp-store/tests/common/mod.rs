//! What the contract suites share: each check runs on both backends.

use actp_store::StoreUrl;

/// Runs `check` on a sled store in a temporary directory (`name` under it), then on a fresh database of the
/// test PostgreSQL server.
#[allow(clippy::unwrap_used)]
pub(crate) async fn on_both<F, Fut>(name: &str, check: F)
where
    F: Fn(StoreUrl) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    check(StoreUrl::Sled(dir.path().join(name))).await;
    let url = actp_e2e::postgres::shared().fresh_database().await;
    check(url.parse().unwrap()).await;
}
