//! Delivery proofs ACTP SDK users can check, against the real Python SDK (`agirails` 4.8.0 from PyPI) in a
//! virtualenv this test creates under `target/`: the SDK's `MessageSigner.verify_signature` accepts the
//! AIP-4 proof our paywall signed (and refuses it altered), and our verifier accepts a proof the SDK signed.
//! Skipped, saying so, only when PyPI cannot be reached.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use actp_axum::{Paywall, Route};
use actp_client::Devnet;
use actp_core::{
    Address, Amount, B256,
    eip712::actp_domain,
    http::DELIVERY_PROOF_HEADER,
    proof::{SignedDeliveryProof, verify_delivery},
};
use actp_pay::{Ledger, PayingClient};
use actp_store::StoreUrl;
use axum::{Router, routing::post};
use serde_json::{Value, json};

const SDK: &str = "agirails==4.8.0";

/// The virtualenv's python, with the SDK installed (once per target directory); `None` when PyPI cannot
/// be reached.
fn python_with_sdk() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let venv = target.join("python").join(SDK.replace("==", "-"));
    let python = venv.join("bin").join("python");
    let installed = venv.join(".installed");
    if installed.exists() {
        return Some(python);
    }
    if !reachable("https://pypi.org/simple/agirails/") {
        eprintln!(
            "SKIPPED: PyPI (https://pypi.org) cannot be reached, so the ACTP Python SDK cannot be installed"
        );
        return None;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 -m venv");
    assert!(status.success(), "python3 -m venv failed");
    let out = Command::new(venv.join("bin").join("pip"))
        .args([
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            SDK,
        ])
        .output()
        .expect("pip install");
    assert!(
        out.status.success(),
        "pip install {SDK} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&installed, SDK).unwrap();
    Some(python)
}

/// Whether a GET of `url` answers at all within 15 s (blocking, before the test's runtime starts).
fn reachable(url: &str) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = actp_client::HttpOptions::default()
            .timeout(Duration::from_secs(15))
            .client()
            .unwrap();
        client.get(url).send().await.is_ok()
    })
}

/// Runs the interop script's `command` with `request` on stdin; its JSON answer.
fn sdk(python: &Path, command: &str, request: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/sdk_interop.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sdk_interop.py {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_python_sdk_and_this_project_check_each_others_delivery_proofs() {
    let Some(python) = python_with_sdk() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let devnet = Devnet::start().await.unwrap();
        let kernel = devnet.deployment().kernel;
        let domain = actp_domain(31337, kernel);
        let domain_json = json!({
            "name": "AGIRAILS", "version": "1", "chainId": 31337, "verifyingContract": kernel,
        });
        let provider = devnet.signer(1).address();

        // Our paywall signs a proof for a paid call.
        let dir = tempfile::tempdir().unwrap();
        let paywall = Paywall::builder(devnet.kernel(1).await.unwrap())
            .data_dir(dir.path().join("provider"))
            .route(
                Route::post("/v1/answer")
                    .flat(Amount::from_base_units(100_000))
                    .service("answer"),
            )
            .build()
            .await
            .unwrap();
        let app = Router::new()
            .route("/v1/answer", post(|| async { r#"{"answer":42}"# }))
            .layer(paywall.layer());
        let url = format!("{}/v1/answer", actp_e2e::serve(app).await);
        let ledger = Ledger::open(&StoreUrl::Sled(dir.path().join("pay")))
            .await
            .unwrap();
        let client = PayingClient::new(devnet.kernel(2).await.unwrap(), ledger)
            .await
            .unwrap();
        let response = client.post(&url).body("question").send().await.unwrap();
        assert_eq!(response.status, 200);
        let header = response.headers[DELIVERY_PROOF_HEADER].to_str().unwrap();
        let ours = SignedDeliveryProof::from_header_value(header).unwrap();
        let wire = serde_json::to_value(ours.wire_proof()).unwrap();
        let verdict = sdk(
            &python,
            "verify",
            &json!({"domain": domain_json, "proof": wire, "provider": provider}),
        );
        assert_eq!(
            verdict["valid"], true,
            "the SDK refused our paywall's proof: {wire}"
        );
        let mut altered = wire.clone();
        altered["resultHash"] = json!(B256::repeat_byte(9));
        let verdict = sdk(
            &python,
            "verify",
            &json!({"domain": domain_json, "proof": altered, "provider": provider}),
        );
        assert_eq!(
            verdict["valid"], false,
            "the SDK accepts anything: the check proves nothing"
        );

        // The SDK signs a proof; our verifier (and so `actp proof verify`) accepts it.
        let tx = B256::repeat_byte(0x42);
        let requester: Address = devnet.signer(2).address();
        let signed_by_sdk = sdk(
            &python,
            "sign",
            &json!({
                "key": devnet.dev_private_keys()[1], "chainId": 31337, "kernel": kernel,
                "txId": tx, "consumer": requester, "result": {"text": "hello", "answer": 42},
                "deliveredAt": 1_700_000_000u64, "nonce": 7,
            }),
        );
        let theirs = SignedDeliveryProof::from_header_value(&signed_by_sdk.to_string()).unwrap();
        // The body as any JSON writer sends it: the SDK hashes the canonical form.
        let body = br#"{ "answer": 42, "text": "hello" }"#;
        let proof_hash = verify_delivery(&theirs, body, tx, provider, &domain, None).unwrap();
        assert_eq!(proof_hash, theirs.proof.signing_hash(&domain));
        assert!(verify_delivery(&theirs, b"{\"answer\":41}", tx, provider, &domain, None).is_err());
    });
}
