//! Where a store lives: a sled directory (the default, under the data directory) or a PostgreSQL URL.

use std::{fmt, path::PathBuf, str::FromStr};

use crate::StoreError;

/// Where a store lives, as given by `--store` / `ACTP_STORE`.
///
/// ```
/// use actp_store::StoreUrl;
/// let pg: StoreUrl = "postgres://actp:secret@db.internal/actp".parse().unwrap();
/// assert!(pg.is_shared());
/// // The password never shows.
/// assert_eq!(pg.to_string(), "postgres://actp:***@db.internal/actp");
/// let local: StoreUrl = "sled:/var/lib/actp".parse().unwrap();
/// assert_eq!(local, StoreUrl::Sled("/var/lib/actp".into()));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An embedded sled database in this directory: no setup, one process at a time.
    Sled(PathBuf),
    /// A PostgreSQL database (`postgres://` or `postgresql://`), shared by any number of processes.
    Postgres(String),
}

impl StoreUrl {
    /// Whether several processes can use the store at once.
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreUrl::Postgres(_))
    }

    /// The same store for one component: a sled directory gets `name` appended (each component keeps its
    /// own database there); a PostgreSQL database is shared by all of them (their tables are distinct).
    pub fn join(&self, name: &str) -> StoreUrl {
        match self {
            StoreUrl::Sled(dir) => StoreUrl::Sled(dir.join(name)),
            StoreUrl::Postgres(_) => self.clone(),
        }
    }
}

impl FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            tokio_postgres::Config::from_str(s).map_err(|e| {
                StoreError::Url(format!(
                    "{}: {e} (expected postgres://user:password@host:port/database)",
                    redact(s)
                ))
            })?;
            return Ok(StoreUrl::Postgres(s.to_owned()));
        }
        let path = s.strip_prefix("sled:").unwrap_or(s);
        if path.is_empty() || path.contains("://") {
            return Err(StoreError::Url(format!(
                "{}: expected a directory (sled, the default) or postgres://user:password@host/database",
                redact(s)
            )));
        }
        Ok(StoreUrl::Sled(PathBuf::from(path)))
    }
}

/// `url` with the password, if any, replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sled(dir) => write!(f, "sled:{}", dir.display()),
            StoreUrl::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let url: StoreUrl = "postgresql://u:p%40ss@h:5433/db?sslmode=disable"
            .parse()
            .unwrap();
        assert_eq!(
            url.to_string(),
            "postgresql://u:***@h:5433/db?sslmode=disable"
        );
        assert_eq!(
            format!("{url:?}"),
            "postgresql://u:***@h:5433/db?sslmode=disable"
        );
        assert!(!format!("{url:?}").contains("p%40ss"));
        let no_password: StoreUrl = "postgres://u@h/db".parse().unwrap();
        assert_eq!(no_password.to_string(), "postgres://u@h/db");
        assert_eq!(
            "target/x".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sled("target/x".into())
        );
        assert_eq!(
            "sled:/a".parse::<StoreUrl>().unwrap().join("pay"),
            StoreUrl::Sled("/a/pay".into())
        );
        assert_eq!(url.join("pay"), url);
    }

    #[test]
    fn refuses_what_is_not_a_store_without_echoing_a_password() {
        let err = "mysql://u:hunter2@h/db"
            .parse::<StoreUrl>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a directory"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = "postgres://u:hunter2@h:notaport/db"
            .parse::<StoreUrl>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgres://user:password@host"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!("".parse::<StoreUrl>().is_err());
    }
}
