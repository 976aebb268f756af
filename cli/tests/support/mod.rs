//! Running the real `actp` binary against real devnets: a devnet started by `actp devnet --json`, commands
//! with their exit codes and output, and a TCP proxy the test can cut to simulate an RPC outage.
#![allow(dead_code, unreachable_pub)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{net::TcpListener, task::JoinHandle};

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

/// A TCP proxy to `127.0.0.1:upstream` that the test can cut (every connection dropped, new ones refused)
/// and restore on the same port.
pub struct Proxy {
    pub port: u16,
    upstream: u16,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut proxy = Proxy {
            port,
            upstream,
            task: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream;
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Drops every connection and refuses new ones.
    pub async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&mut self) {
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", self.port)).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("could not listen on port {} again", self.port);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
