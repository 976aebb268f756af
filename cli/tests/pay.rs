//! `actp call`, `actp budget` and `actp usage` as processes: a consumer pays a provider (`actp gateway` in
//! front of a plain HTTP API) on a devnet, within a policy set from the command line, suspended and resumed
//! from another process, with the usage report in both outputs and every refusal's exit code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::time::Duration;

use actp_e2e::process::{DevnetProcess, echo_gateway, run, terminate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_pays_within_its_budget_and_reports_usage() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevnetProcess::start(dir.path());
    let (mut gateway, url) = echo_gateway(&dev, 1).await;
    let consumer = || dev.as_account(2);
    let agent = dev.address(2).to_lowercase();

    // The policy, field by field.
    let mut set = consumer();
    set.args([
        "--json",
        "budget",
        "set",
        "--daily",
        "0.25",
        "--per-call",
        "$0.20",
    ]);
    let policy = run(set).ok().json();
    assert_eq!(policy["policy"]["daily"], "0.25");
    assert_eq!(policy["policy"]["per_call"], "0.20");

    // A paid call in human form: the body on stdout, the payment on stderr.
    let mut call = consumer();
    call.args(["call", &url, "-d", "hello"]);
    let paid = run(call).ok();
    assert_eq!(paid.stdout, "echo: hello");
    assert!(paid.stderr.contains("paid 0.10 into escrow 0x"), "{paid:?}");
    assert!(paid.stderr.contains("verified"), "{paid:?}");

    // The same, as JSON, settled at once.
    let mut call = consumer();
    call.args(["--json", "call", &url, "-d", "again", "--settle"]);
    call.args(["--idempotency-key", "k-2"]);
    let paid = run(call).ok().json();
    assert_eq!(paid["status"], 200);
    assert_eq!(paid["body"], "echo: again");
    assert_eq!(paid["payment"]["state"], "settled");
    assert_eq!(paid["payment"]["amount"], 100_000);
    assert_eq!(paid["payment"]["key"], "k-2");

    // The same key again: never a second escrow.
    let mut again = consumer();
    again.args([
        "--json",
        "call",
        &url,
        "-d",
        "again",
        "--idempotency-key",
        "k-2",
    ]);
    let err = run(again).code(2).error_json();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already paid"),
        "{err}"
    );

    // The cap: 0.20 spent, 0.10 more would pass 0.25. Refused before any escrow, exit 7.
    let mut capped = consumer();
    capped.args(["--json", "call", &url, "-d", "third"]);
    let err = run(capped).code(7).error_json();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("daily cap of 0.25 reached"), "{message}");
    assert!(message.contains("actp budget set"), "{message}");

    // budget show: spent and remaining today.
    let mut show = consumer();
    show.args(["--json", "budget", "show"]);
    let shown = run(show).ok().json();
    assert_eq!(shown["today"]["spent"], 200_000);
    assert_eq!(shown["today"]["remaining"], 50_000);
    assert_eq!(shown["suspended"], false);
    let mut show = consumer();
    show.args(["budget", "show"]);
    let shown = run(show).ok();
    assert!(shown.stdout.contains("active"), "{shown:?}");
    assert!(shown.stdout.contains("remaining 0.05"), "{shown:?}");

    // The kill switch, thrown by another process, with the agent named.
    let mut raise = consumer();
    raise.args(["budget", "set", "--daily", "5"]);
    run(raise).ok();
    let mut suspend = actp_e2e::process::actp(dir.path());
    suspend.args(["budget", "suspend", &agent, "--reason", "loop detected"]);
    assert!(run(suspend).ok().stdout.contains("suspended"));
    let mut call = consumer();
    call.args(["call", &url, "-d", "blocked"]);
    let blocked = run(call).code(7);
    assert!(blocked.stderr.contains("loop detected"), "{blocked:?}");
    let mut show = consumer();
    show.args(["budget", "show"]);
    assert!(run(show).ok().stdout.contains("SUSPENDED (loop detected)"));
    let mut resume = actp_e2e::process::actp(dir.path());
    resume.args(["--json", "budget", "resume", &agent]);
    assert_eq!(run(resume).ok().json()["suspended"], false);
    let mut call = consumer();
    call.args(["call", &url, "-d", "resumed"]);
    assert_eq!(run(call).ok().stdout, "echo: resumed");

    // Usage: by provider as JSON, by route and by day as tables.
    let mut usage = consumer();
    usage.args(["--json", "usage"]);
    let report = run(usage).ok().json();
    assert_eq!(report["rows"].as_array().unwrap().len(), 1);
    assert_eq!(report["rows"][0]["key"], dev.address(1), "checksummed");
    assert_eq!(report["total"]["calls"], 3);
    assert_eq!(report["total"]["spent"], 300_000);
    assert_eq!(report["total"]["fees"], 3_000);
    let mut usage = consumer();
    usage.args(["usage", "--by", "route"]);
    let table = run(usage).ok().stdout;
    assert!(table.contains("POST /v1/echo"), "{table}");
    assert!(
        table.lines().last().unwrap().starts_with("total"),
        "{table}"
    );
    let mut usage = consumer();
    usage.args(["usage", "--by", "day", "--since", "2000-01-01"]);
    assert_eq!(
        run(usage).ok().stdout.lines().count(),
        4,
        "head, a day, total"
    );

    // Usage errors (2) and an unreachable provider (4): nothing paid.
    for bad in [
        vec!["budget", "set", "--soft-threshold", "0"],
        vec!["budget", "set", "--daily", "five"],
        vec!["usage", "--since", "2026-13"],
        vec!["call", &url, "-H", "no colon"],
    ] {
        let mut cmd = consumer();
        cmd.args(&bad);
        run(cmd).code(2);
    }
    let mut dead = consumer();
    dead.args(["call", "http://127.0.0.1:9/v1/echo", "-d", "x"]);
    let dead = run(dead).code(4);
    assert!(dead.stderr.contains("nothing was paid"), "{dead:?}");

    assert_eq!(terminate(&mut gateway, Duration::from_secs(10)), Some(0));
}
