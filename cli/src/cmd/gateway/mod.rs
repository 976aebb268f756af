//! `actp gateway`: a reverse proxy with the paywall in front, for APIs written in any language. Only the
//! routes given with `--route` are reachable (paid or free); anything else gets 404 unless
//! `--pass-through` is set, so a route left out by mistake is never served for free. HEAD on a paid GET
//! route is paid; variants of a paid path are refused even with `--pass-through`. The upstream sees no
//! `X-AGIRAILS-*` header from the client: only the ones the gateway sets after verifying the payment.
//!
//! A route is free, flat (`=0.10`), or metered: `=usage:unit=0.001,max=0.50` charges by the units the upstream
//! reports in its `X-AGIRAILS-USAGE` response header (`120`, or `in=120, out=350`), and
//! `=tokens:in=0.000001,out=0.000004,max=0.50` charges an OpenAI-compatible upstream (vLLM, llama.cpp server,
//! Ollama) by `usage.prompt_tokens` (`in`) and `usage.completion_tokens` (`out`) in its JSON answer. Metered
//! calls paid from a session cost `min(units x prices, max)`; an answer that reports no usage (a streamed
//! answer, for one) costs the maximum; a per-call transaction always pays the maximum.

use std::{collections::BTreeMap, sync::Arc};

use actp_axum::{ClaimMode, Payment, Paywall, Route};
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter},
};

use std::net::SocketAddr;

use crate::{
    args,
    context::Ctx,
    error::{CliError, Result},
};
use actp_core::{Amount, meter::Meter};
use clap::Args;

mod metering;

use metering::{Metering, USAGE_HEADER};

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// The API to protect, e.g. http://127.0.0.1:8000.
    #[arg(long, env = "ACTP_UPSTREAM")]
    pub(crate) upstream: String,
    /// Address to listen on.
    #[arg(long, env = "ACTP_LISTEN", default_value = "127.0.0.1:8402")]
    pub(crate) listen: SocketAddr,
    /// A priced route: "METHOD PATH=PRICE", optionally "@SERVICE" after the price, e.g.
    /// "POST /v1/summarise=0.10@summarise"; PRICE "free" for a free route, "usage:unit=0.001,max=0.50" to
    /// charge by the upstream's X-AGIRAILS-USAGE header, "tokens:in=0.000001,out=0.000004,max=0.50" to charge
    /// an OpenAI-compatible upstream by the tokens its JSON reports. Repeat for each route; paths use axum
    /// patterns ("/v1/items/{id}").
    #[arg(long = "route", required = true)]
    pub(crate) routes: Vec<RouteSpec>,
    /// Shortest time before a transaction's deadline that the gateway accepts.
    #[arg(long, default_value = "5m")]
    pub(crate) min_time_to_deadline: args::Duration,
    /// The longest the upstream may take to answer a request (then 504, and the payment can be retried).
    #[arg(long, env = "ACTP_UPSTREAM_TIMEOUT", default_value = "60s")]
    pub(crate) upstream_timeout: args::Duration,
    /// Claim with an on-chain IN_PROGRESS before serving (replicas sharing a key), instead of locally.
    #[arg(long)]
    pub(crate) onchain_claims: bool,
    /// How often to read the kernel's events: transactions funded for this provider are then served without
    /// a chain read, and sessions whose requester asks to end them close at once. "0s" reads none (each new
    /// transaction is then read when used).
    #[arg(long, env = "ACTP_FOLLOW_EVENTS", default_value = "1s")]
    pub(crate) follow_events: args::Duration,
    /// Forward requests to paths not listed with --route, free (default: 404, so nothing is served
    /// for free by mistake).
    #[arg(long)]
    pub(crate) pass_through: bool,
    /// With a PostgreSQL --store (replicas sharing it): how long a replica holds a delivery it is sending
    /// before another may take it over; a replica that dies leaves its deliveries to the others after this.
    #[arg(long, default_value = "30s")]
    pub(crate) lease: args::Duration,
    /// With a PostgreSQL --store: how long a request in progress keeps its claim (or its hold on a session's
    /// deposit) after its replica died; then another replica serves the retry. Give it more than the upstream
    /// timeout.
    #[arg(long, default_value = "10m")]
    pub(crate) hold_lease: args::Duration,
    /// With the embedded store: when an answer leaves. "synced": once what it changed (a claim, a charge, a
    /// delivery queued) is on disk. "buffered": once it is written to the operating system, synced within
    /// 10 ms; no disk wait per answer, and a crash of the gateway loses nothing, but a crash of the machine
    /// may lose the last 10 ms of charges and claims (the provider's loss, never the consumer's).
    #[arg(long, env = "ACTP_DURABILITY", value_enum)]
    pub(crate) durability: Option<Durability>,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Durability {
    Synced,
    Buffered,
}

/// A gateway route: `METHOD PATH=PRICE[@SERVICE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteSpec {
    pub(crate) method: http::Method,
    pub(crate) path: String,
    pub(crate) price: GatewayPrice,
    pub(crate) service: Option<String>,
}

/// How a gateway route is priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GatewayPrice {
    Free,
    Flat(Amount),
    /// Charged by the units in the upstream's `X-AGIRAILS-USAGE` header.
    Usage(Meter),
    /// Charged by the tokens in an OpenAI-compatible JSON answer (`in`, `out`).
    Tokens(Meter),
}

impl std::fmt::Display for GatewayPrice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayPrice::Free => f.write_str("free"),
            GatewayPrice::Flat(a) => write!(f, "{a}"),
            GatewayPrice::Usage(m) => write!(f, "usage:{m}"),
            GatewayPrice::Tokens(m) => write!(f, "tokens:{m}"),
        }
    }
}

impl std::str::FromStr for RouteSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "route `{s}`: {why}; write \"METHOD PATH=PRICE\", e.g. \"POST /v1/summarise=0.10\""
            )
        };
        let (method, rest) = s.trim().split_once(' ').ok_or_else(|| bad("no method"))?;
        // Paths have no `=`; metered prices do.
        let (path, price) = rest.trim().split_once('=').ok_or_else(|| bad("no price"))?;
        let path = path.trim();
        if !path.starts_with('/') {
            return Err(bad("the path must start with /"));
        }
        let method: http::Method = method
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| bad("unknown method"))?;
        let (price, service) = match price.split_once('@') {
            Some((p, name)) if !name.trim().is_empty() => (p, Some(name.trim().to_owned())),
            Some(_) => return Err(bad("empty service name after @")),
            None => (price, None),
        };
        let meter = |m: &str| m.parse::<Meter>().map_err(|e| bad(&e.to_string()));
        let price = match price.trim() {
            p if p.eq_ignore_ascii_case("free") => GatewayPrice::Free,
            p if p.starts_with("usage:") => GatewayPrice::Usage(meter(&p["usage:".len()..])?),
            p if p.starts_with("tokens:") => {
                let m = meter(&p["tokens:".len()..])?;
                if let Some(unit) = m.rates.keys().find(|u| *u != "in" && *u != "out") {
                    return Err(bad(&format!(
                        "token prices are `in` and `out`, not `{unit}`"
                    )));
                }
                GatewayPrice::Tokens(m)
            }
            p => GatewayPrice::Flat(p.parse::<Amount>().map_err(|e| bad(&e.to_string()))?),
        };
        Ok(RouteSpec {
            method,
            path: path.to_owned(),
            price,
            service,
        })
    }
}

/// Largest request body forwarded (the paywall has already buffered it within its own limit).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Clone)]
struct Upstream {
    base: Arc<str>,
    http: reqwest::Client,
}

/// The header naming who paid, set by the gateway only.
const REQUESTER_HEADER: &str = "x-agirails-requester";
/// The prefix of every ACTP header; inbound ones are never forwarded.
const ACTP_PREFIX: &str = "x-agirails-";

pub(crate) async fn run(ctx: &Ctx, args: GatewayArgs) -> Result<()> {
    let upstream = parse_upstream(ctx, &args.upstream, args.upstream_timeout.0)?;
    let proxy = router(&args.routes, args.pass_through, upstream)?;
    let (kernel, _) = ctx.kernel(true).await?;
    let mut builder = match ctx.store("gateway") {
        actp_store::StoreUrl::Sled(dir) => Paywall::builder(kernel).data_dir(dir),
        actp_store::StoreUrl::Postgres(url) => Paywall::builder(kernel)
            .shared_store(url)
            .outbox_lease(args.lease.0)
            .hold_lease(args.hold_lease.0),
    }
    .min_time_to_deadline(args.min_time_to_deadline.0)
    .follow_events(Some(args.follow_events.0).filter(|every| !every.is_zero()))
    .claim_mode(if args.onchain_claims {
        ClaimMode::OnChain
    } else {
        ClaimMode::Local
    });
    if let Some(durability) = args.durability {
        builder = builder.durability(match durability {
            Durability::Synced => actp_axum::Durability::Synced,
            Durability::Buffered => actp_axum::Durability::Buffered,
        });
    }
    for spec in &args.routes {
        let mut route = Route::new(spec.method.clone(), spec.path.clone());
        match &spec.price {
            GatewayPrice::Free => {}
            GatewayPrice::Flat(price) => route = route.flat(*price),
            GatewayPrice::Usage(meter) | GatewayPrice::Tokens(meter) => {
                route = route.metered(meter.clone());
            }
        }
        if let Some(service) = &spec.service {
            route = route.service(service.clone());
        }
        builder = builder.route(route);
    }
    let paywall = builder.build().await?;
    let app = proxy.layer(paywall.layer());

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::failure(e.to_string()))?;
    #[derive(serde::Serialize)]
    struct Listening {
        listen: String,
        provider: actp_core::Address,
        upstream: String,
        pricing: String,
    }
    let out = Listening {
        listen: format!("http://{addr}"),
        provider: paywall.provider(),
        upstream: args.upstream.clone(),
        pricing: format!("http://{addr}/pricing"),
    };
    ctx.out.result(&out, || {
        let mut text = format!(
            "gateway on http://{addr} → {} (provider {})\n",
            args.upstream,
            paywall.provider()
        );
        for r in &args.routes {
            text.push_str(&format!("  {} {}  {}\n", r.method, r.path, r.price));
        }
        text.push_str("  GET /pricing  how to pay");
        text
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(super::shutdown_signal())
        .await
        .map_err(|e| CliError::failure(format!("the gateway stopped: {e}")))?;
    paywall
        .flush()
        .await
        .map_err(|e| CliError::failure(e.to_string()))?;
    Ok(())
}

fn parse_upstream(ctx: &Ctx, raw: &str, timeout: std::time::Duration) -> Result<Upstream> {
    let url = reqwest::Url::parse(raw).map_err(|e| {
        CliError::usage(format!(
            "--upstream `{raw}` is not a URL ({e}): write e.g. http://127.0.0.1:8000"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CliError::usage(
            "--upstream must be an http:// or https:// URL",
        ));
    }
    let http = ctx
        .http_options()?
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(timeout)
        .builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| CliError::failure(e.to_string()))?;
    Ok(Upstream {
        base: raw.trim_end_matches('/').into(),
        http,
    })
}

/// One method router per path, so several methods on one path do not clash.
fn router(specs: &[RouteSpec], pass_through: bool, upstream: Upstream) -> Result<Router> {
    let mut by_path: BTreeMap<&str, MethodRouter<Upstream>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for spec in specs {
        if !seen.insert((spec.method.clone(), spec.path.clone())) {
            return Err(CliError::usage(format!(
                "route {} {} is given twice",
                spec.method, spec.path
            )));
        }
        let filter = MethodFilter::try_from(spec.method.clone()).map_err(|_| {
            CliError::usage(format!(
                "route {} {}: unsupported method",
                spec.method, spec.path
            ))
        })?;
        let entry = by_path.remove(spec.path.as_str()).unwrap_or_default();
        let metering = Metering::of(&spec.price);
        by_path.insert(
            &spec.path,
            entry.on(filter, move |state: State<Upstream>, req: Request| {
                forward(state, req, metering.clone())
            }),
        );
    }
    let mut router = Router::new();
    for (path, methods) in by_path {
        router = router.route(path, methods);
    }
    router = if pass_through {
        router.fallback(|state: State<Upstream>, req: Request| forward(state, req, None))
    } else {
        router.fallback(not_listed)
    };
    Ok(router.with_state(upstream))
}

async fn not_listed() -> Response {
    let body = serde_json::json!({
        "error": "Not Found",
        "code": "unknown_route",
        "message": "this gateway serves only the routes it lists at GET /pricing",
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// Headers that belong to one hop and are not forwarded.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !hop_by_hop(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// The client's headers as the upstream gets them: hop-by-hop headers and every `X-AGIRAILS-*` header
/// removed (a client could otherwise name a requester on a free route), then the ones the gateway vouches
/// for added on a paid request: who paid and with which transaction.
fn upstream_headers(inbound: &HeaderMap, payment: Option<&Payment>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in inbound {
        if !hop_by_hop(name) && !name.as_str().starts_with(ACTP_PREFIX) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(payment) = payment {
        if let Ok(v) = HeaderValue::from_str(&payment.requester.to_string()) {
            headers.insert(HeaderName::from_static(REQUESTER_HEADER), v);
        }
        if let Ok(v) = HeaderValue::from_str(&payment.tx_id.to_string()) {
            headers.insert(HeaderName::from_static(actp_core::http::TX_ID_HEADER), v);
        }
    }
    headers
}

async fn forward(
    State(upstream): State<Upstream>,
    req: Request,
    metering: Option<Metering>,
) -> Response {
    let (parts, body) = req.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return bad_gateway(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large to forward",
        );
    };
    let headers = upstream_headers(&parts.headers, parts.extensions.get::<Payment>());
    let sent = upstream
        .http
        .request(parts.method, format!("{}{target}", upstream.base))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            tracing::warn!("upstream timed out");
            return bad_gateway(
                StatusCode::GATEWAY_TIMEOUT,
                "the upstream API did not answer in time; nothing was delivered and the transaction can pay for a retry",
            );
        }
        Err(e) => {
            tracing::warn!(error = %actp_client::from_reqwest(&e), "upstream unreachable");
            return bad_gateway(
                StatusCode::BAD_GATEWAY,
                "the upstream API could not be reached; try again",
            );
        }
    };
    let status = response.status();
    let mut out_headers = HeaderMap::new();
    copy_headers(response.headers(), &mut out_headers);
    let usage_headers = out_headers.clone();
    // The usage report is for the gateway, not the client.
    out_headers.remove(USAGE_HEADER);
    match response.bytes().await {
        Ok(bytes) => {
            let usage = metering.map(|m| m.usage(&usage_headers, &bytes));
            let mut out = Response::new(Body::from(bytes));
            *out.status_mut() = status;
            *out.headers_mut() = out_headers;
            if let Some(usage) = usage {
                out.extensions_mut().insert(usage);
            }
            out
        }
        Err(_) => bad_gateway(
            StatusCode::BAD_GATEWAY,
            "the upstream API broke off its answer; try again",
        ),
    }
}

fn bad_gateway(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "error": status.canonical_reason().unwrap_or("Bad Gateway"),
        "code": "upstream_unavailable",
        "message": message,
    });
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn inbound_actp_headers_never_reach_the_upstream() {
        let mut inbound = HeaderMap::new();
        inbound.insert(
            "x-agirails-requester",
            HeaderValue::from_static("0xspoofed"),
        );
        inbound.insert("X-AGIRAILS-TX-ID", HeaderValue::from_static("0x01"));
        inbound.insert("x-agirails-anything", HeaderValue::from_static("1"));
        inbound.insert("accept", HeaderValue::from_static("text/plain"));
        inbound.insert("connection", HeaderValue::from_static("close"));
        let free = upstream_headers(&inbound, None);
        assert_eq!(free.len(), 1, "{free:?}");
        assert_eq!(free["accept"], "text/plain");
        let payment = Payment {
            tx_id: actp_core::B256::repeat_byte(7),
            requester: actp_core::Address::repeat_byte(9),
            amount: actp_core::U256::from(1u8),
            price: actp_core::Amount::from_base_units(1),
            deadline: 0,
        };
        let paid = upstream_headers(&inbound, Some(&payment));
        assert_eq!(
            paid[REQUESTER_HEADER],
            actp_core::Address::repeat_byte(9).to_string()
        );
        assert_eq!(paid.get_all(REQUESTER_HEADER).iter().count(), 1);
        assert_eq!(
            paid["x-agirails-tx-id"],
            actp_core::B256::repeat_byte(7).to_string()
        );
        assert!(paid.get("x-agirails-anything").is_none());
    }

    #[test]
    fn route_specs() {
        let r: RouteSpec = "post /v1/summarise=0.10@summarise".parse().unwrap();
        assert_eq!(r.method, http::Method::POST);
        assert_eq!(r.path, "/v1/summarise");
        assert_eq!(
            r.price,
            GatewayPrice::Flat(Amount::from_base_units(100_000))
        );
        assert_eq!(r.service.as_deref(), Some("summarise"));
        let free: RouteSpec = "GET /health=free".parse().unwrap();
        assert_eq!(free.price, GatewayPrice::Free);
        let tokens: RouteSpec =
            "POST /v1/chat/completions=tokens:in=0.000001,out=0.000004,max=0.50@chat"
                .parse()
                .unwrap();
        assert_eq!(tokens.path, "/v1/chat/completions");
        assert_eq!(tokens.service.as_deref(), Some("chat"));
        assert_eq!(
            tokens.price.to_string(),
            "tokens:in=0.000001,out=0.000004,max=0.50"
        );
        let usage: RouteSpec = "POST /v1/render=usage:unit=0.001,max=1".parse().unwrap();
        assert!(matches!(usage.price, GatewayPrice::Usage(_)));
        for bad in [
            "/v1/x=0.10",
            "POST v1=0.10",
            "POST /v1",
            "POST /v1=abc",
            "POST /v1=0.10@",
            "POST /v1=tokens:in=0.1",
            "POST /v1=tokens:images=0.1,max=1",
            "POST /v1=usage:max=1",
        ] {
            assert!(
                bad.parse::<RouteSpec>()
                    .unwrap_err()
                    .contains("METHOD PATH=PRICE"),
                "{bad}"
            );
        }
    }
}
