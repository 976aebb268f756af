//! Running the real `actp` binary against real devnets: a devnet started by `actp devnet --json`, commands
//! with their exit codes and output, long-running commands that announce where they listen (ports come from
//! the OS, never picked by the test), and waits on conditions with generous deadlines.
#![allow(dead_code, unreachable_pub)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const ACTP: &str = env!("CARGO_BIN_EXE_actp");

/// A command of the real binary with no ACTP_* variables inherited from the environment.
pub fn actp(data_dir: &Path) -> Command {
    let mut cmd = Command::new(ACTP);
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
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    pub fn error_json(&self) -> Value {
        let line = self.stderr.trim().lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {self:?}"))
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "{self:?}");
        self
    }
}

/// Runs `cmd` to the end.
pub fn run(mut cmd: Command) -> Run {
    let out = cmd.output().expect("run actp");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `actp devnet --json` in the background; stopped with SIGTERM on drop.
pub struct DevnetProcess {
    pub child: Child,
    pub config: Value,
    pub dir: PathBuf,
}

impl DevnetProcess {
    pub fn start(dir: &Path) -> DevnetProcess {
        let mut child = actp(dir)
            .args(["devnet", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn actp devnet");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let config: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("devnet printed no JSON line ({e}): {line:?}"));
        DevnetProcess {
            child,
            config,
            dir: dir.to_path_buf(),
        }
    }

    pub fn key(&self, i: usize) -> String {
        self.config["accounts"][i]["private_key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn address(&self, i: usize) -> String {
        self.config["accounts"][i]["address"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn str(&self, field: &str) -> String {
        self.config[field].as_str().unwrap().to_owned()
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
pub fn spawn_announcing(mut cmd: Command) -> (Child, Value) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn actp");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let value = serde_json::from_str(&line).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("the command printed no JSON line ({e}): {line:?}")
    });
    (child, value)
}

/// `actp gateway --json` as dev account `account` on `port 0`; returns it and its base URL once it listens.
pub fn start_gateway(dev: &DevnetProcess, account: usize, args: &[&str]) -> (Child, String) {
    let mut cmd = dev.as_account(account);
    cmd.args(["--json", "gateway", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::null());
    let (child, announced) = spawn_announcing(cmd);
    let url = announced["listen"].as_str().unwrap().to_owned();
    (child, url)
}

/// Polls `ready` until it is true, failing after a generous deadline (these machines are loaded).
pub async fn wait_until<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(120);
    while !ready().await {
        assert!(Instant::now() < until, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
