//! Every `actp` command against a devnet started by `actp devnet`, in human and `--json` output, and every
//! documented exit code triggered.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::process::Command;

use actp_e2e::process::{DevnetProcess, actp, run};
use serde_json::Value;

fn ok_json(cmd: Command) -> Value {
    run(cmd).ok().json()
}

fn with_args(mut cmd: Command, args: &[&str]) -> Command {
    cmd.args(args);
    cmd
}

/// Creates and funds a transaction from account 2 to account 1; returns its id.
fn pay(dev: &DevnetProcess, amount: &str) -> String {
    let out = ok_json(with_args(
        dev.as_account(2),
        &[
            "--json",
            "tx",
            "pay",
            "--provider",
            &dev.address(1),
            "--amount",
            amount,
            "--deadline",
            "+1d",
            "--window",
            "1h",
            "--service",
            "cli-test",
        ],
    ));
    assert_eq!(out["state"], "COMMITTED");
    out["tx_id"].as_str().unwrap().to_owned()
}

#[test]
fn every_command_in_human_and_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevnetProcess::start(dir.path());
    for field in ["rpc_url", "kernel", "escrow_vault", "token"] {
        assert!(dev.config[field].is_string(), "{field} in {}", dev.config);
    }
    assert_eq!(dev.config["chain_id"], 31337);
    assert!(dir.path().join("devnet.json").is_file());
    let consumer = dev.address(2);
    let provider = dev.address(1);

    // balance, human and JSON.
    let human = run(with_args(dev.as_account(2), &["balance"])).ok();
    assert_eq!(human.stdout.trim(), "1000000.00");
    let json = ok_json(with_args(
        actp(dir.path()),
        &["--json", "balance", &consumer],
    ));
    assert_eq!(json["balance_base_units"], "1000000000000");
    assert_eq!(
        json["address"].as_str().unwrap().to_lowercase(),
        consumer.to_lowercase()
    );

    // mint: the dev token mints to the signer.
    let minted = ok_json(with_args(dev.as_account(5), &["mint", "$2.50", "--json"]));
    assert_eq!(minted["balance"], "1000002.50");
    let human = run(with_args(dev.as_account(5), &["mint", "250000 units"])).ok();
    assert_eq!(human.stdout.trim(), "1000002.75");

    // tx create, then fund; human output is the id alone on stdout.
    let created = run(with_args(
        dev.as_account(2),
        &[
            "tx",
            "create",
            "--provider",
            &provider,
            "--amount",
            "0.25",
            "--service",
            "cli-test",
        ],
    ))
    .ok();
    let id = created.stdout.trim().to_owned();
    assert!(id.starts_with("0x") && id.len() == 66, "{created:?}");
    assert!(created.stderr.contains("created"), "{created:?}");
    let funded = ok_json(with_args(dev.as_account(2), &["--json", "tx", "fund", &id]));
    assert_eq!(funded["state"], "COMMITTED");
    assert!(funded["gas_used"].as_u64().unwrap() > 0);

    // tx show, human and JSON.
    let shown = run(with_args(actp(dir.path()), &["tx", "show", &id])).ok();
    assert!(
        shown.stdout.contains("COMMITTED") && shown.stdout.contains("0.25"),
        "{shown:?}"
    );
    let shown = ok_json(with_args(actp(dir.path()), &["tx", "show", &id, "--json"]));
    assert_eq!(shown["amount_base_units"], "250000");
    assert_eq!(shown["dispute_window"], 3600);

    // The provider's side: start, deliver with the content hash of a file.
    let started = run(with_args(dev.as_account(1), &["tx", "start", &id])).ok();
    assert!(started.stdout.contains("IN_PROGRESS"), "{started:?}");
    let result = dir.path().join("result.txt");
    std::fs::write(&result, b"the delivered work").unwrap();
    let hashed = ok_json(with_args(
        actp(dir.path()),
        &["--json", "proof", "hash", result.to_str().unwrap()],
    ));
    let content_hash = hashed["content_hash"].as_str().unwrap().to_owned();
    let human = run(with_args(
        actp(dir.path()),
        &["proof", "hash", result.to_str().unwrap()],
    ))
    .ok();
    assert_eq!(human.stdout.trim(), content_hash);
    let delivered = ok_json(with_args(
        dev.as_account(1),
        &[
            "--json",
            "tx",
            "deliver",
            &id,
            "--result",
            result.to_str().unwrap(),
        ],
    ));
    assert_eq!(delivered["state"], "DELIVERED");

    // watch: the history of the transaction, in JSON lines, ending when it reaches DELIVERED.
    let watched = run(with_args(
        actp(dir.path()),
        &[
            "--json",
            "tx",
            "watch",
            "--id",
            &id,
            "--until",
            "delivered",
            "--from-block",
            "0",
        ],
    ))
    .ok();
    let lines: Vec<Value> = watched
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let moves: Vec<&str> = lines.iter().filter_map(|l| l["to"].as_str()).collect();
    assert_eq!(
        moves,
        ["COMMITTED", "IN_PROGRESS", "DELIVERED"],
        "{watched:?}"
    );
    let proof_line = lines
        .iter()
        .find(|l| l["event"] == "DeliveryProofRecorded")
        .unwrap();
    assert!(
        proof_line["detail"]
            .as_str()
            .unwrap()
            .contains(&content_hash)
    );
    let human = run(with_args(
        actp(dir.path()),
        &[
            "tx",
            "watch",
            "--id",
            &id,
            "--until",
            "delivered",
            "--from-block",
            "0",
        ],
    ))
    .ok();
    assert!(
        human.stdout.contains("IN_PROGRESS → DELIVERED"),
        "{human:?}"
    );

    // Exit 3: settling inside the window as the provider is refused, with the kernel's error.
    let refused = run(with_args(
        dev.as_account(1),
        &["--json", "tx", "settle", &id],
    ))
    .code(3);
    let err = refused.error_json();
    assert_eq!(err["error"]["kind"], "rejected");
    assert_eq!(err["error"]["kernel_error"], "DisputeWindowOpen");
    let refused = run(with_args(dev.as_account(1), &["tx", "settle", &id])).code(3);
    assert!(
        refused.stderr.starts_with("error: rejected by the kernel"),
        "{refused:?}"
    );
    assert_eq!(refused.stderr.trim().lines().count(), 1, "{refused:?}");

    // Dispute and resolve (the admin, account 0, resolves).
    let disputed = ok_json(with_args(
        dev.as_account(2),
        &[
            "--json",
            "tx",
            "dispute",
            &id,
            "--reason",
            "not what I asked for",
        ],
    ));
    assert_eq!(disputed["state"], "DISPUTED");
    let resolved = run(with_args(
        dev.as_account(0),
        &[
            "tx",
            "resolve",
            &id,
            "--to",
            "settled",
            "--requester-amount",
            "0.05",
            "--provider-amount",
            "0.20",
        ],
    ))
    .ok();
    assert!(resolved.stdout.contains("SETTLED"), "{resolved:?}");

    // Requester settles at once; several ids settle in one batch.
    let a = pay(&dev, "0.10");
    let b = pay(&dev, "0.10");
    for id in [&a, &b] {
        run(with_args(dev.as_account(1), &["-q", "tx", "start", id])).ok();
        run(with_args(dev.as_account(1), &["-q", "tx", "deliver", id])).ok();
    }
    let batch = ok_json(with_args(
        dev.as_account(2),
        &["--json", "tx", "settle", &a, &b],
    ));
    assert_eq!(batch["settled"], 2);
    let again = run(with_args(dev.as_account(2), &["tx", "settle", &a, &b])).ok();
    assert!(again.stdout.contains("settled 0 of 2"), "{again:?}");

    // Milestone and cancel.
    let m = pay(&dev, "1.00");
    run(with_args(dev.as_account(1), &["tx", "start", &m])).ok();
    let released = ok_json(with_args(
        dev.as_account(2),
        &["--json", "tx", "release-milestone", &m, "--amount", "0.40"],
    ));
    assert_eq!(released["state"], "IN_PROGRESS");
    let c = pay(&dev, "0.10");
    let cancelled = run(with_args(dev.as_account(1), &["tx", "cancel", &c])).ok();
    assert!(cancelled.stdout.contains("CANCELLED"), "{cancelled:?}");

    // list: newest first, filtered.
    let listed = ok_json(with_args(
        actp(dir.path()),
        &["--json", "tx", "list", "--requester", &consumer],
    ));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 5);
    assert_eq!(listed[0]["tx_id"], c.as_str());
    let settled = ok_json(with_args(
        actp(dir.path()),
        &["--json", "tx", "list", "--state", "settled"],
    ));
    assert_eq!(settled.as_array().unwrap().len(), 3);
    let human = run(with_args(
        actp(dir.path()),
        &["tx", "list", "--state", "cancelled"],
    ))
    .ok();
    assert!(
        human.stdout.contains(&c) && human.stdout.contains("CANCELLED"),
        "{human:?}"
    );

    // deploy: a second kernel on the same chain, with the devnet's token.
    let token = dev.str("token");
    let deployed = ok_json(with_args(
        dev.as_account(3),
        &["--json", "deploy", "--token", &token],
    ));
    assert_eq!(deployed["token"], token.as_str());
    assert_eq!(deployed["chain_id"], 31337);
    assert_ne!(deployed["kernel"], dev.config["kernel"]);
    let human = run(with_args(dev.as_account(3), &["deploy"])).ok();
    let printed: Value = serde_json::from_str(&human.stdout).unwrap();
    assert_ne!(
        printed["token"],
        token.as_str(),
        "MockUSDC is deployed without --token"
    );

    // Exit 2: usage errors, clap's and ours, in both outputs.
    let bad = run(with_args(
        dev.as_account(2),
        &[
            "tx",
            "pay",
            "--provider",
            &provider,
            "--amount",
            "0.1234567",
        ],
    ))
    .code(2);
    assert!(
        bad.stderr.contains("decimals") || bad.stderr.contains("digits"),
        "{bad:?}"
    );
    let bad = run(with_args(
        actp(dir.path()),
        &["--json", "tx", "show", "not-an-id"],
    ))
    .code(2);
    assert_eq!(bad.error_json()["error"]["kind"], "usage");
    let no_key = run(with_args(actp(dir.path()), &["tx", "start", &id])).code(2);
    assert!(
        no_key.stderr.contains("ACTP_PRIVATE_KEY") && no_key.stderr.contains("--account"),
        "{no_key:?}"
    );
    let wrong_chain = run(with_args(
        actp(dir.path()),
        &["--chain-id", "1", "tx", "show", &id],
    ))
    .code(2);
    assert!(wrong_chain.stderr.contains("not 1"), "{wrong_chain:?}");

    // Exit 6: not found (transaction, file).
    let missing = format!("0x{}", "ab".repeat(32));
    let nf = run(with_args(
        actp(dir.path()),
        &["--json", "tx", "show", &missing],
    ))
    .code(6);
    assert_eq!(nf.error_json()["error"]["exit_code"], 6);
    run(with_args(
        actp(dir.path()),
        &["proof", "hash", "/nonexistent/file"],
    ))
    .code(6);

    // Exit 5: a state that never comes.
    let slow = run(with_args(
        actp(dir.path()),
        &[
            "tx", "watch", "--id", &m, "--until", "settled", "--for", "1s",
        ],
    ))
    .code(5);
    assert!(slow.stderr.contains("gave up"), "{slow:?}");

    // Exit 4: an RPC nobody listens on.
    let down = run(with_args(
        actp(dir.path()),
        &[
            "--rpc-url",
            "http://127.0.0.1:9",
            "--kernel",
            &dev.str("kernel"),
            "--json",
            "tx",
            "show",
            &id,
        ],
    ))
    .code(4);
    let message = down.error_json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("--rpc-url"), "{message}");

    // Keys never on the command line, never in output.
    let key = dev.key(2);
    let all_output = format!("{human:?}{down:?}{nf:?}");
    assert!(!all_output.contains(&key[2..]), "a key leaked");
    let help = run(with_args(actp(dir.path()), &["--help"])).ok();
    assert!(help.stdout.contains("Exit codes:") && !help.stdout.contains("--private-key"));
}

#[test]
fn proof_verify_checks_body_signature_and_chain() {
    use actp_client::Signer;
    use actp_core::{
        Address, B256,
        eip712::actp_domain,
        proof::{SignedDeliveryProof, aip4::DeliveryProof, content_hash},
    };

    let dir = tempfile::tempdir().unwrap();
    let dev = DevnetProcess::start(dir.path());
    let id = pay(&dev, "0.10");
    let provider = Signer::from_private_key(&dev.key(1)).unwrap();
    let kernel: Address = dev.str("kernel").parse().unwrap();
    let domain = actp_domain(31337, kernel);
    let tx: B256 = id.parse().unwrap();
    let proof = DeliveryProof::new(
        tx,
        31337,
        provider.address(),
        dev.address(2).parse().unwrap(),
    )
    .with_result_hash(content_hash(b"served body"))
    .delivered_at(1, 1);
    let signature = futures::executor::block_on(provider.sign_typed(&proof, &domain)).unwrap();
    let mut signed = SignedDeliveryProof::new(proof, signature);
    let request = B256::repeat_byte(5);
    let binding =
        futures::executor::block_on(provider.sign_hash(&signed.binding_hash(&domain, request)))
            .unwrap();
    signed.bind(request, binding);
    let proof_hash = signed.proof_hash(&domain);
    let header = signed.to_header_value();
    let body = dir.path().join("body");
    std::fs::write(&body, b"served body").unwrap();
    let verify = |extra: &[&str]| {
        let mut cmd = actp(dir.path());
        cmd.args([
            "proof",
            "verify",
            "--body",
            body.to_str().unwrap(),
            "--proof",
            &header,
        ]);
        cmd.args(extra);
        run(cmd)
    };
    let ok = verify(&["--json", "--proof-hash", &proof_hash.to_string()])
        .ok()
        .json();
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["proof_hash"], proof_hash.to_string());
    // Not delivered yet: nothing recorded on chain.
    verify(&["--onchain"]).code(6);
    run(with_args(dev.as_account(1), &["-q", "tx", "start", &id])).ok();
    run(with_args(
        dev.as_account(1),
        &[
            "-q",
            "tx",
            "deliver",
            &id,
            "--proof-hash",
            &proof_hash.to_string(),
        ],
    ))
    .ok();
    let onchain = verify(&["--onchain"]).ok();
    assert!(onchain.stdout.contains("recorded on chain"), "{onchain:?}");
    // Exit 1: a body that is not what was signed.
    std::fs::write(&body, b"something else").unwrap();
    let altered = verify(&[]).code(1);
    assert!(
        altered.stderr.contains("dispute within the window"),
        "{altered:?}"
    );
}

#[test]
fn a_node_that_says_it_is_base_gets_base_rules() {
    let dir = tempfile::tempdir().unwrap();
    // anvil's own port choice (no port picked by the test), on a node that says it is Base.
    let node = alloy::node_bindings::Anvil::at(actp_client::find_anvil().unwrap())
        .chain_id(8453)
        .try_spawn()
        .unwrap();
    let rpc = node.endpoint();
    // anvil's key 0.
    let key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    let deploy = |extra: &[&str]| {
        let mut cmd = actp(dir.path());
        cmd.env("ACTP_RPC_URL", &rpc)
            .env("ACTP_PRIVATE_KEY", key)
            .args(["--json", "deploy", "--mock-token"])
            .args(extra);
        run(cmd)
    };
    // A raw key is refused on a mainnet; the key never shows.
    let refused = deploy(&[]).code(2);
    assert!(
        refused.stderr.contains("base") && refused.stderr.contains("--keystore"),
        "{refused:?}"
    );
    assert!(!refused.stderr.contains(&key[2..]));
    // Base's fee cap (1 gwei) refuses anvil's prices (a 1 gwei base fee, so up to 2 gwei a gas) before
    // anything is signed.
    let capped = deploy(&["--allow-raw-key-on-mainnet"]).code(4);
    let error = capped.error_json();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-fee-per-gas"),
        "{capped:?}"
    );
    // `--network` must match the node.
    let wrong = deploy(&["--allow-raw-key-on-mainnet", "--network", "base-sepolia"]).code(2);
    assert!(wrong.stderr.contains("84532"), "{wrong:?}");
    let deployed = deploy(&["--allow-raw-key-on-mainnet", "--max-fee-per-gas", "50gwei"])
        .ok()
        .json();
    assert_eq!(deployed["chain_id"], 8453);
}

/// A delivery proof the Python ACTP SDK (`agirails` 4.8.0) signed with anvil's key 1, verified offline.
#[test]
fn proof_verify_accepts_a_proof_the_python_sdk_signed() {
    let dir = tempfile::tempdir().unwrap();
    let proof = dir.path().join("proof.json");
    std::fs::write(
        &proof,
        r#"{"type":"agirails.delivery.v1","version":"1.0.0",
        "txId":"0xabababababababababababababababababababababababababababababababab",
        "provider":"did:ethr:31337:0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "consumer":"did:ethr:31337:0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "resultCID":"","resultHash":"0xc550e960cb358110d0127e61c6d2beea4687b38c27189698ac60aad053fbca1b",
        "easAttestationUID":"0x0000000000000000000000000000000000000000000000000000000000000000",
        "deliveredAt":1700000000,"chainId":31337,"nonce":1,
        "signature":"0x40ba9655565498db336d75c6a9e18d204827fc50073c3b45459912b3168f1893754449c88f05807f425caf6d9bfe6033e1271f3b48c6169229356ccad671b4521b"}"#,
    )
    .unwrap();
    let body = dir.path().join("body.json");
    // The result as the SDK hashed it: its canonical JSON, whatever the spacing received.
    std::fs::write(&body, br#"{"text": "hello", "answer": 42}"#).unwrap();
    let verify = || {
        let mut cmd = actp(dir.path());
        cmd.args([
            "--json",
            "--kernel",
            "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        ])
        .args(["proof", "verify", "--body", body.to_str().unwrap()])
        .arg("--proof")
        .arg(format!("@{}", proof.display()));
        run(cmd)
    };
    let ok = verify().ok().json();
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["bound_to_request"], false);
    assert_eq!(ok["provider"], "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
    assert_eq!(
        ok["proof_hash"],
        "0x83b2f2b09d289ab1fabcfb615184d3b0b4f70cb28d17438b480212ce2a4777ee"
    );
    std::fs::write(&body, br#"{"text": "hello", "answer": 41}"#).unwrap();
    verify().code(1);
}

#[test]
fn without_a_chain_commands_say_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(with_args(
        actp(dir.path()),
        &["balance", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"],
    ))
    .code(6);
    assert!(
        out.stderr.contains("actp devnet") && out.stderr.contains("--rpc-url"),
        "{out:?}"
    );
}
