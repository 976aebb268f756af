//! Running the workspace's binaries as processes: `actp` commands with their exit codes and output, a devnet
//! started by `actp devnet --json`, long-running commands that announce where they listen (ports come from the
//! OS, never from the test), and stopping them.
//!
//! [`binary`] builds a binary of the workspace on first use (a no-op when `cargo test --workspace` built it
//! already) and returns its path, so suites outside the binary's own package can run it.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The path of binary `name` of workspace package `package`, built (in the dev profile, with the lock file
/// as it is) if it is not up to date.
///
/// # Panics
/// If cargo cannot build it; the message has cargo's output.
#[expect(
    clippy::panic,
    reason = "a test harness: without the binary there is no test to run"
)]
pub fn binary(package: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(name) {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(crate::postgres::workspace())
        .args([
            "build",
            "--locked",
            "--message-format=json",
            "-p",
            package,
            "--bin",
            name,
        ])
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| {
            panic!(
                "cargo built no {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    if let Some(map) = built.as_mut() {
        map.insert(name.to_owned(), path.clone());
    }
    path
}

/// A command of the real `actp` binary, its state in `data_dir`, with no `ACTP_*` variables inherited from the
/// environment (`ACTP_ANVIL` excepted: it says where anvil is).
pub fn actp(data_dir: &Path) -> Command {
    let mut cmd = Command::new(binary("actp-cli", "actp"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ACTP_") && k != "ACTP_ANVIL" {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--data-dir").arg(data_dir);
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// What a finished command left.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 if killed by a signal).
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

#[expect(
    clippy::panic,
    reason = "a test harness: these are assertions about the command's output"
)]
impl Run {
    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The last line of standard error as JSON (`--json` errors).
    pub fn error_json(&self) -> Value {
        let line = self.stderr.trim().lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {self:?}"))
    }

    /// Asserts it succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    /// Asserts it exited with `code`.
    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "{self:?}");
        self
    }
}

/// Runs `cmd` to the end.
#[expect(
    clippy::panic,
    reason = "a test harness: a command that cannot start fails the test"
)]
pub fn run(mut cmd: Command) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `actp devnet --json` in the background; stopped with SIGTERM on drop.
#[derive(Debug)]
pub struct DevnetProcess {
    /// The process.
    pub child: Child,
    /// What it printed: the RPC URL, the deployment, the dev accounts.
    pub config: Value,
    /// Its data directory.
    pub dir: PathBuf,
}

impl DevnetProcess {
    /// Starts one with its state in `dir`, once it has printed its config.
    pub fn start(dir: &Path) -> DevnetProcess {
        let mut cmd = actp(dir);
        cmd.args(["devnet", "--json"]).stderr(Stdio::null());
        let (child, config) = spawn_announcing(cmd);
        DevnetProcess {
            child,
            config,
            dir: dir.to_path_buf(),
        }
    }

    /// Dev account `i`'s private key.
    pub fn key(&self, i: usize) -> String {
        self.config["accounts"][i]["private_key"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Dev account `i`'s address.
    pub fn address(&self, i: usize) -> String {
        self.config["accounts"][i]["address"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A string field of the config.
    pub fn str(&self, field: &str) -> String {
        self.config[field].as_str().unwrap_or_default().to_owned()
    }

    /// `actp` as dev account `i` on this devnet (through its config file).
    pub fn as_account(&self, i: usize) -> Command {
        let mut cmd = actp(&self.dir);
        cmd.arg("--account").arg(i.to_string());
        cmd
    }
}

impl Drop for DevnetProcess {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// SIGTERM, then SIGKILL if it has not exited in `grace`. Returns the exit code if it exited by itself.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<i32> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Spawns `cmd` with stdout piped and returns it with the first line it prints, as JSON: how long-running
/// commands (`actp gateway --json`, `actp devnet --json`) say where they listen, once they do.
#[expect(
    clippy::panic,
    reason = "a test harness: a command that does not announce itself fails the test"
)]
pub fn spawn_announcing(mut cmd: Command) -> (Child, Value) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let value = serde_json::from_str(&line).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("the command printed no JSON line ({e}): {line:?}")
    });
    (child, value)
}

/// `actp gateway --json` as dev account `account` on port 0; returns it and its base URL once it listens.
pub fn start_gateway(dev: &DevnetProcess, account: usize, args: &[&str]) -> (Child, String) {
    let mut cmd = dev.as_account(account);
    cmd.args(["--json", "gateway", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::null());
    let (child, announced) = spawn_announcing(cmd);
    let url = announced["listen"].as_str().unwrap_or_default().to_owned();
    (child, url)
}

/// `actp gateway --json` on port 0 for `rpc` and `kernel`, signing as `key`, its state under `dir`, plus
/// `args`; returns it and its base URL once it listens. Its log goes to stderr at `warn`.
pub fn gateway_process(
    dir: &Path,
    rpc: &str,
    kernel: &str,
    key: &str,
    args: &[&str],
) -> (Child, String) {
    let mut cmd = actp(dir);
    cmd.env("ACTP_RPC_URL", rpc)
        .env("ACTP_KERNEL", kernel)
        .env("ACTP_PRIVATE_KEY", key)
        .args(["--json", "gateway", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::inherit());
    let (child, announced) = spawn_announcing(cmd);
    let url = announced["listen"].as_str().unwrap_or_default().to_owned();
    (child, url)
}

/// An upstream API answering `POST /v1/echo` with `echo: <body>`, sold by `actp gateway` as dev account
/// `account` at 0.10 per call (service `echo`). Returns the gateway and the paid route's URL.
pub async fn echo_gateway(dev: &DevnetProcess, account: usize) -> (Child, String) {
    let app = axum::Router::new().route(
        "/v1/echo",
        axum::routing::post(|body: String| async move { format!("echo: {body}") }),
    );
    let upstream = crate::serve(app).await;
    let (child, base) = start_gateway(
        dev,
        account,
        &[
            "--upstream",
            &upstream,
            "--route",
            "POST /v1/echo=0.10@echo",
        ],
    );
    (child, format!("{base}/v1/echo"))
}

/// `actp settle` as a daemon on `rpc` for `kernel`, signing with `key`, reading from block `from`: small
/// batches, one in flight, no confirmations, quick polls and backoff (what the suites that kill it need), plus
/// `extra` arguments. Its output is discarded.
///
/// # Panics
/// If it cannot be spawned.
#[expect(
    clippy::panic,
    reason = "a test harness: a daemon that cannot start fails the test"
)]
pub fn settle_daemon(
    dir: &Path,
    rpc: &str,
    kernel: &str,
    key: &str,
    from: u64,
    extra: &[&str],
) -> Child {
    let mut cmd = actp(dir);
    cmd.env("ACTP_RPC_URL", rpc)
        .env("ACTP_KERNEL", kernel)
        .env("ACTP_PRIVATE_KEY", key)
        .env("RUST_LOG", "info")
        .args([
            "settle",
            "--batch-size",
            "3",
            "--concurrency",
            "1",
            "--confirmations",
            "0",
            "--poll-interval",
            "200ms",
            "--max-backoff",
            "500ms",
            "--from-block",
            &from.to_string(),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start actp settle: {e}"))
}
