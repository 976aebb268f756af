//! The harness the end-to-end tests share: loopback proxies that stand in for what sits between this
//! project and a real network, all on ports the OS picks.
//!
//! - [`TcpProxy`]: forwards to a port and can be cut (live connections dropped, new ones refused) and
//!   restored without giving up its port;
//! - [`TestCa`] and [`TlsProxy`]: a throwaway CA, a server certificate for `127.0.0.1` and `localhost`, and a
//!   TLS-terminating proxy in front of any plain TCP server (anvil, a provider);
//! - [`RpcProxy`]: a JSON-RPC proxy that behaves like a public endpoint: it refuses `eth_getLogs` over too
//!   many blocks, with the error texts of real providers, answers 429 now and then, and records what it
//!   served;
//! - [`postgres`]: a real PostgreSQL server from npm, started once per test process, a fresh database per test;
//! - [`process`]: the workspace's binaries as processes (`actp` commands, a devnet, a gateway), built on demand;
//! - [`balancer`]: a round-robin HTTP load balancer in front of provider replicas;
//! - [`chain`]: what the chain shows, for assertions (every kernel event, every `settleBatch` mined).
//!
//! None of it is a mock: the bytes go to a real anvil and a real TLS handshake happens.

pub mod balancer;
pub mod chain;
pub mod postgres;
pub mod process;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// How long a test waits for a condition before it fails: long enough for a loaded 2-core machine (tests
/// never wait a fixed time for something to happen, they wait until it has).
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Opens a database with `open`, retrying every 20 ms while it fails with an error `busy` recognises, for at
/// most [`PATIENCE`]: a sled database whose last handle was dropped a moment ago is let go by a background
/// thread, shortly after. Panics with any other error.
#[expect(
    clippy::panic,
    reason = "a test harness: a database that does not open fails the test"
)]
pub async fn open_when_free<T, E: std::fmt::Display>(
    mut open: impl AsyncFnMut() -> Result<T, E>,
    busy: impl Fn(&E) -> bool,
) -> T {
    let until = tokio::time::Instant::now() + PATIENCE;
    loop {
        match open().await {
            Ok(opened) => return opened,
            Err(e) if busy(&e) && tokio::time::Instant::now() < until => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot open: {e}"),
        }
    }
}

/// Polls `ready` every 20 ms until it holds; panics with `what` after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + PATIENCE;
    while !ready().await {
        assert!(
            tokio::time::Instant::now() < until,
            "gave up after {PATIENCE:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Serves `app` on a loopback port the OS picks, in the background; returns `http://127.0.0.1:<port>`.
#[expect(
    clippy::panic,
    reason = "a test harness: without a loopback port there is no test to run"
)]
pub async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("cannot listen on loopback: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// The handlers a session provider sells in the tests: `POST /v1/chat` answers `answer to <body>` and reports
/// one `out` unit per byte of it (a [`Usage`](actp_core::meter::Usage) in the response's extensions, as a
/// metered route charges); `POST /v1/echo` answers the body. The paywall's layer goes on top.
pub fn chat_and_echo() -> Router {
    Router::new()
        .route(
            "/v1/chat",
            post(|body: String| async move {
                let answer = format!("answer to {body}");
                let mut response: Response = answer.clone().into_response();
                response
                    .extensions_mut()
                    .insert(actp_core::meter::Usage::new().with("out", answer.len() as u64));
                response
            }),
        )
        .route("/v1/echo", post(|body: String| async move { body }))
}

/// A TCP forwarder to `upstream` that a test can cut and restore. Its port never changes.
pub struct TcpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<JoinSet<()>>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a port the OS picks and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let (cut, connections) = (Arc::clone(&cut), Arc::clone(&connections));
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let task = async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    };
                    if let Ok(mut set) = connections.lock() {
                        set.spawn(task);
                    }
                }
            }
        });
        Ok(TcpProxy {
            addr,
            cut,
            connections,
            accept,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every live connection and closes new ones at once, as an outage does.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Ok(mut set) = self.connections.lock() {
            set.abort_all();
        }
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A throwaway certificate authority and one server certificate it signed, for `127.0.0.1` and `localhost`.
pub struct TestCa {
    ca_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

impl TestCa {
    /// Makes a new CA and server certificate.
    pub fn new() -> Result<TestCa, rcgen::Error> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "actp test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
        let server_key = rcgen::KeyPair::generate()?;
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let cert = params.signed_by(&server_key, &ca)?;
        Ok(TestCa {
            ca_pem: ca.pem(),
            cert_der: cert.der().clone(),
            key_der: server_key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: server_key.serialize_pem(),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server certificate and its key, PEM (for a server that terminates TLS itself).
    pub fn server_pem(&self) -> (&str, &str) {
        (&self.cert_pem, &self.key_pem)
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns the path.
    pub fn write_ca(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem)?;
        Ok(path)
    }

    fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)?;
        Ok(Arc::new(config))
    }
}

/// A TLS-terminating proxy: TLS with the [`TestCa`]'s certificate on a loopback port, plain TCP to
/// `upstream`. Counts connections and failed handshakes, so a test can tell that a client gave up at
/// once instead of retrying.
pub struct TlsProxy {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    failed_handshakes: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl TlsProxy {
    /// Listens on a port the OS picks.
    pub async fn start(ca: &TestCa, upstream: SocketAddr) -> std::io::Result<TlsProxy> {
        let config = ca.server_config().map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicU64::new(0));
        let failed_handshakes = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn({
            let (connections, failed) = (Arc::clone(&connections), Arc::clone(&failed_handshakes));
            async move {
                let mut tasks = JoinSet::new();
                while let Ok((inbound, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (acceptor, failed) = (acceptor.clone(), Arc::clone(&failed));
                    tasks.spawn(async move {
                        let Ok(mut tls) = acceptor.accept(inbound).await else {
                            failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        };
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
                        }
                    });
                }
            }
        });
        Ok(TlsProxy {
            addr,
            connections,
            failed_handshakes,
            accept,
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Handshakes that failed (the client did not trust the certificate, or spoke plain HTTP).
    pub fn failed_handshakes(&self) -> u64 {
        self.failed_handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// How an [`RpcProxy`] misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct RpcLimits {
    /// `eth_getLogs` over more blocks than this is refused (as Infura, Alchemy, QuickNode do).
    pub max_log_blocks: u64,
    /// Every n-th request is answered `429 Too Many Requests` (0: never).
    pub rate_limit_every: u64,
    /// The `Retry-After` (seconds) sent with a 429.
    pub retry_after_secs: u64,
}

/// One `eth_getLogs` range the proxy answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedRange {
    /// First block.
    pub from: u64,
    /// Last block.
    pub to: u64,
}

struct RpcState {
    upstream: String,
    http: reqwest::Client,
    limits: RpcLimits,
    requests: AtomicU64,
    rate_limited: AtomicU64,
    refused_ranges: AtomicU64,
    served: Mutex<Vec<ServedRange>>,
    methods: Mutex<std::collections::HashMap<String, u64>>,
}

/// A JSON-RPC proxy in front of a node, with a public endpoint's limits.
pub struct RpcProxy {
    addr: SocketAddr,
    state: Arc<RpcState>,
    server: JoinHandle<()>,
}

/// Range refusals in the words of real providers, used in turn. The first carries Infura's code, which is
/// also its rate-limit code: a client that retries it as a rate limit never gets anywhere.
const RANGE_REFUSALS: [(i64, &str); 3] = [
    (
        -32005,
        "query returned more than 10000 results. Try with this block range [0x0, 0x1f3].",
    ),
    (-32602, "eth_getLogs is limited to a 500 range"),
    (-32000, "block range too large"),
];

impl RpcProxy {
    /// Listens on a port the OS picks and forwards to the HTTP JSON-RPC endpoint `upstream`.
    pub async fn start(upstream: &str, limits: RpcLimits) -> std::io::Result<RpcProxy> {
        let state = Arc::new(RpcState {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            limits,
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            refused_ranges: AtomicU64::new(0),
            served: Mutex::new(Vec::new()),
            methods: Mutex::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/", post(rpc))
            .with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RpcProxy {
            addr,
            state,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered `429`.
    pub fn rate_limited(&self) -> u64 {
        self.state.rate_limited.load(Ordering::SeqCst)
    }

    /// `eth_getLogs` ranges refused as too large.
    pub fn refused_ranges(&self) -> u64 {
        self.state.refused_ranges.load(Ordering::SeqCst)
    }

    /// How many requests for `method` (e.g. `eth_call`) reached the proxy, batched ones included.
    pub fn calls(&self, method: &str) -> u64 {
        self.state
            .methods
            .lock()
            .map(|m| m.get(method).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Every `eth_getLogs` range served, in order.
    pub fn served(&self) -> Vec<ServedRange> {
        self.state
            .served
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn block_number(value: &serde_json::Value) -> Option<u64> {
    u64::from_str_radix(value.as_str()?.trim_start_matches("0x"), 16).ok()
}

async fn rpc(State(state): State<Arc<RpcState>>, body: Bytes) -> Response {
    let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let every = state.limits.rate_limit_every;
    if every != 0 && n % every == 0 {
        state.rate_limited.fetch_add(1, Ordering::SeqCst);
        let mut response = (StatusCode::TOO_MANY_REQUESTS, "rate limited").into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(state.limits.retry_after_secs),
        );
        return response;
    }
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Ok(mut methods) = state.methods.lock() {
        let single = std::slice::from_ref(&request);
        for call in request.as_array().map_or(single, Vec::as_slice) {
            if let Some(method) = call["method"].as_str() {
                *methods.entry(method.to_owned()).or_default() += 1;
            }
        }
    }
    let mut range = None;
    if request["method"] == "eth_getLogs" {
        let filter = &request["params"][0];
        if let (Some(from), Some(to)) = (
            block_number(&filter["fromBlock"]),
            block_number(&filter["toBlock"]),
        ) {
            if to.saturating_sub(from) + 1 > state.limits.max_log_blocks {
                let i = state.refused_ranges.fetch_add(1, Ordering::SeqCst);
                let (code, message) = RANGE_REFUSALS[(i % 3) as usize];
                let answer = serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": request["id"],
                    "error": { "code": code, "message": message },
                });
                return axum::Json(answer).into_response();
            }
            range = Some(ServedRange { from, to });
        }
    }
    let forwarded = state
        .http
        .post(&state.upstream)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let Ok(answer) = forwarded else {
        return (StatusCode::BAD_GATEWAY, "upstream unreachable").into_response();
    };
    let status = answer.status();
    let Ok(bytes) = answer.bytes().await else {
        return (StatusCode::BAD_GATEWAY, "upstream broke off").into_response();
    };
    if let Some(range) = range
        && status.is_success()
        && let Ok(mut served) = state.served.lock()
    {
        served.push(range);
    }
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
