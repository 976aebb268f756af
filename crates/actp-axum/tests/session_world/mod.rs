//! A provider selling two routes from sessions (a metered chat and a flat echo) behind the paywall, on a real
//! devnet over loopback HTTP with a real sled database, and the consumer that opens sessions with it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use actp_axum::{Paywall, Route, SessionConfig};
use actp_client::{Devnet, Kernel, OpenSession, Signer};
use actp_core::{
    Amount, B256, State, U256,
    http::{ErrorBody, TX_ID_HEADER, VOUCHER_HEADER},
    ids::service_hash,
    proof::content_hash,
    session::{SessionVoucher, VoucherHeader},
};
use axum::Router;

/// 0.001 per output "token" (a byte of the answer), at most 0.05 per call.
pub const CHAT_METER: &str = "out=0.001,max=0.05";
pub const CHAT_MAX: u64 = 50_000;
/// A flat route: 0.01 per call.
pub const ECHO_PRICE: u64 = 10_000;

pub fn app() -> Router {
    actp_e2e::chat_and_echo()
}

pub struct World {
    pub devnet: Devnet,
    pub provider: Kernel,
    pub consumer: Kernel,
    pub signer: Signer,
    pub paywall: Paywall,
    pub url: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The sessions' terms of [`world`]: a close looked for every 200 ms, a used-up session closed after 1 s.
pub fn terms(min_deposit: Amount) -> SessionConfig {
    SessionConfig {
        min_deposit,
        check_every: Duration::from_millis(200),
        used_up_close: Duration::from_secs(1),
        ..SessionConfig::default()
    }
}

pub async fn world(min_deposit: Amount) -> World {
    world_with(terms(min_deposit), true).await
}

/// A world whose sessions have `terms`; with `run_outbox` false, the closes stay queued until
/// [`Paywall::run_outbox`].
pub async fn world_with(terms: SessionConfig, run_outbox: bool) -> World {
    let devnet = Devnet::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let provider = devnet.kernel(1).await.unwrap();
    let paywall = Paywall::builder(provider.clone())
        .data_dir(dir.path())
        .route(
            Route::post("/v1/chat")
                .metered(CHAT_METER.parse().unwrap())
                .service("chat"),
        )
        .route(
            Route::post("/v1/echo")
                .flat(Amount::from_base_units(ECHO_PRICE.into()))
                .service("echo"),
        )
        .sessions(Some(terms))
        .run_outbox(run_outbox)
        .build()
        .await
        .unwrap();
    let url = actp_e2e::serve(app().layer(paywall.layer())).await;
    World {
        consumer: devnet.kernel(2).await.unwrap(),
        signer: devnet.signer(2),
        provider,
        paywall,
        url,
        http: reqwest::Client::new(),
        devnet,
        _dir: dir,
    }
}

impl World {
    pub async fn open(&self, deposit: u64, service: &str) -> B256 {
        self.open_until(deposit, service, 86_400).await
    }

    /// Opens a session whose deadline is `lasting` seconds from the chain's now.
    pub async fn open_until(&self, deposit: u64, service: &str, lasting: u64) -> B256 {
        let now = self.devnet.now().await.unwrap();
        self.consumer
            .pay_session(&OpenSession {
                provider: self.provider.signer_address().unwrap(),
                deposit: U256::from(deposit),
                deadline: now + lasting,
                dispute_window: 3_600,
                service_hash: service_hash(service),
                grace: 600,
            })
            .await
            .unwrap()
    }

    pub async fn voucher(
        &self,
        signer: &Signer,
        id: B256,
        cumulative: u64,
        path: &str,
        body: &str,
    ) -> String {
        let v = SessionVoucher::for_request(
            id,
            U256::from(cumulative),
            "POST",
            path,
            content_hash(body.as_bytes()),
            wall_clock() + 120,
        );
        let sig = signer
            .sign_hash(&v.signing_hash(&self.provider.domain()))
            .await
            .unwrap();
        VoucherHeader::from_signature(&v, sig).to_string()
    }

    pub async fn call(
        &self,
        id: B256,
        cumulative: u64,
        path: &str,
        body: &str,
    ) -> reqwest::Response {
        self.call_as(&self.signer, id, cumulative, path, body).await
    }

    pub async fn call_as(
        &self,
        signer: &Signer,
        id: B256,
        cumulative: u64,
        path: &str,
        body: &str,
    ) -> reqwest::Response {
        let voucher = self.voucher(signer, id, cumulative, path, body).await;
        self.http
            .post(format!("{}{path}", self.url))
            .header(TX_ID_HEADER, id.to_string())
            .header(VOUCHER_HEADER, voucher)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub async fn ask_close(&self, id: B256, cumulative: u64) -> reqwest::Response {
        let voucher = self
            .voucher(&self.signer, id, cumulative, "/sessions/close", "")
            .await;
        self.http
            .post(format!("{}/sessions/close", self.url))
            .header(TX_ID_HEADER, id.to_string())
            .header(VOUCHER_HEADER, voucher)
            .send()
            .await
            .unwrap()
    }

    pub async fn state(&self, id: B256) -> State {
        self.consumer.get(id).await.unwrap().state
    }
}

pub fn wall_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub async fn refusal(response: reqwest::Response) -> (u16, ErrorBody) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}
