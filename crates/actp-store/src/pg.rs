//! PostgreSQL: a pool of connections, and the schema, migrated at start.
//!
//! Migrations are the files in `migrations/`, applied in order, each once, inside one transaction that holds
//! an advisory lock, so processes starting together against an empty database migrate it once. The versions
//! applied are in `actp_schema`. A database whose schema is newer than this program is refused.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};

use crate::StoreError;

/// The schema, in order: (version, file, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_settler.sql",
        include_str!("../migrations/0001_settler.sql"),
    ),
    (
        2,
        "0002_ledger.sql",
        include_str!("../migrations/0002_ledger.sql"),
    ),
    (
        3,
        "0003_paywall.sql",
        include_str!("../migrations/0003_paywall.sql"),
    ),
];

/// Taken while migrating (any constant unique to this schema).
const MIGRATION_LOCK: i64 = 0x4143_5450_0001;

/// Connections to one PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("connections", &self.pool.status().size)
            .finish()
    }
}

impl Pg {
    /// Connects to `url` (a pool of up to `connections`) and migrates the schema.
    ///
    /// Over TCP the connection is encrypted as the URL's `sslmode` says (`prefer` by default: TLS when the server
    /// offers it; `require`: TLS or nothing; `disable`: never), and the server's certificate is always verified:
    /// against the system's roots, plus the CA certificates in the PEM file `sslrootcert=/path` names (libpq's
    /// parameter), e.g. a managed database's own CA.
    pub async fn connect(url: &str, connections: usize) -> Result<Self, StoreError> {
        let (url, root) = take_root_cert(url);
        let config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| StoreError::Url(format!("the PostgreSQL URL does not parse: {e}")))?;
        let recycling = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        // A Unix socket never carries TLS, and a TLS connector cannot even be made for a path.
        let local = config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
        let manager = if local {
            Manager::from_config(config, tokio_postgres::NoTls, recycling())
        } else {
            Manager::from_config(config, tls(root.as_deref())?, recycling())
        };
        let pool = Pool::builder(manager)
            .max_size(connections.max(1))
            .build()
            .map_err(|e| StoreError::Url(format!("cannot build a connection pool: {e}")))?;
        let pg = Pg { pool };
        pg.migrate().await?;
        Ok(pg)
    }

    /// A connection from the pool.
    pub async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS actp_schema (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
        let current: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM actp_schema", &[])
            .await?
            .get(0);
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            tx.batch_execute(sql)
                .await
                .map_err(|source| StoreError::Migration {
                    version,
                    name,
                    source,
                })?;
            tx.execute(
                "INSERT INTO actp_schema (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await?;
            tracing::info!(version, name, "migrated the store's schema");
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `url` without its `sslrootcert` parameter (which tokio-postgres does not know), and that parameter's value.
fn take_root_cert(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut root = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("sslrootcert=") {
            Some(path) => {
                root = Some(path.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, root)
}

/// TLS for connections over TCP: the system's roots, plus the CA certificates of the PEM file `root`.
fn tls(root: Option<&str>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = root {
        let bad = |why: String| {
            StoreError::Url(format!(
                "sslrootcert={path}: {why}: give a PEM file of CA certificates"
            ))
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no certificate in it".into()));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Url(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `sql` prepared on `client`, once per connection (the pool keeps each connection's statements): a statement
/// then costs one round trip instead of two.
pub(crate) async fn prepared(
    client: &Object,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    Ok(client.prepare_cached(sql).await?)
}

/// A connection inside `BEGIN`, until [`Transaction::commit`]. Dropped without a commit, it is rolled back
/// (by a task, since a drop cannot wait) before the connection goes back to the pool.
#[derive(Debug)]
pub(crate) struct Transaction {
    client: Option<Object>,
}

impl Transaction {
    /// Starts a transaction on a connection from `pg`.
    pub(crate) async fn begin(pg: &Pg) -> Result<Self, StoreError> {
        let client = pg.client().await?;
        client.batch_execute("BEGIN").await?;
        Ok(Transaction {
            client: Some(client),
        })
    }

    /// The connection, while the transaction lasts.
    pub(crate) fn client(&self) -> Result<&Object, StoreError> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Task("the transaction is over".into()))
    }

    /// Commits: durable when it returns.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let client = self
            .client
            .take()
            .ok_or_else(|| StoreError::Task("the transaction is over".into()))?;
        client.batch_execute("COMMIT").await?;
        Ok(())
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = client.batch_execute("ROLLBACK").await;
            });
        }
    }
}
