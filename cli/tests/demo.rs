//! `actp demo` as a process: the whole system on an embedded devnet, narrated, with balances that add up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::path::Path;

use actp_e2e::process::{actp, run};

fn actp_with(data_dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = actp(data_dir);
    cmd.args(args);
    cmd
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(actp_with(dir.path(), &["demo", "--calls", "1"])).ok();
    for step in [
        "402 Payment Required",
        "escrowed in",
        "200 OK",
        "verified",
        "session: opened",
        "session call 20: charged",
        "closed on chain by the provider",
        "delivered on chain",
        "time-travelled",
        "settled",
        "of its 1.00 deposit back",
        "every token is accounted for",
    ] {
        assert!(
            out.stdout.contains(step),
            "missing {step:?} in\n{}",
            out.stdout
        );
    }
    let json = run(actp_with(
        dir.path(),
        &["demo", "--calls", "1", "--session-calls", "1", "--json"],
    ))
    .ok()
    .json();
    assert_eq!(json["net"], 0);
    // One call at 0.10, and one session call charged 4 output tokens at 0.0002.
    assert_eq!(json["rows"][0]["change"], "-0.1008");
}
