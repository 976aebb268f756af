//! PostgreSQL over TCP with TLS: a real server with a certificate from a throwaway CA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use actp_e2e::{TestCa, postgres::Postgres};
use actp_store::{StoreError, pg::Pg};

/// Whether the connection `url` opens is encrypted, as the server sees it.
async fn encrypted(url: &str) -> bool {
    let pg = Pg::connect(url, 1).await.unwrap();
    let client = pg.client().await.unwrap();
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn connections_over_tcp_are_encrypted_and_the_certificate_verified() {
    let ca = TestCa::new().unwrap();
    let (cert, key) = ca.server_pem();
    let server = Postgres::start_tls(cert, key).unwrap();
    let port = server.tcp_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_ca(dir.path()).unwrap();
    let base = format!("postgres://postgres@127.0.0.1:{port}/postgres");

    // The server's CA given with libpq's `sslrootcert`: TLS, verified.
    let trusted = format!("{base}?sslmode=require&sslrootcert={}", ca_file.display());
    assert!(encrypted(&trusted).await);
    // `prefer` (the default) uses TLS too when the server offers it.
    assert!(encrypted(&format!("{base}?sslrootcert={}", ca_file.display())).await);
    // `disable`: in the clear, as asked.
    assert!(!encrypted(&format!("{base}?sslmode=disable")).await);

    // A certificate no root vouches for is refused, and the message says why.
    let err = Pg::connect(&format!("{base}?sslmode=require"), 1)
        .await
        .expect_err("an untrusted certificate must be refused");
    let message = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(
        message.contains("certificate")
            || message.contains("Certificate")
            || message.contains("UnknownIssuer"),
        "{message}"
    );

    // An `sslrootcert` that is not a PEM file of certificates is a usage error, before any connection.
    std::fs::write(dir.path().join("empty.pem"), "not a certificate").unwrap();
    for bad in ["missing.pem", "empty.pem"] {
        let url = format!(
            "{base}?sslmode=require&sslrootcert={}",
            dir.path().join(bad).display()
        );
        assert!(
            matches!(Pg::connect(&url, 1).await, Err(StoreError::Url(_))),
            "{bad}"
        );
    }
}
