//! The process harness itself: the `actp` binary is built on demand and runs.
#![allow(clippy::unwrap_used, missing_docs)]

#[test]
fn actp_builds_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = actp_e2e::process::actp(dir.path());
    cmd.arg("--version");
    let run = actp_e2e::process::run(cmd).ok();
    assert!(run.stdout.starts_with("actp "), "{run:?}");
}
