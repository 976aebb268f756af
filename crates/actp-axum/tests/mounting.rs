//! Nothing paid is reachable for free, however the paywall is mounted: as `Router::layer` on a nested
//! router, as `route_layer` at the top, with its routes declared by the full path or relative to the nest;
//! HEAD on a paid GET route pays like GET; undeclared methods and path variants of a paid route are refused.
//! A paid request signed over the path the client sent (the original URI) is served under `nest`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use actp_axum::{Paywall, Route};
use actp_client::Devnet;
use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode},
    routing::{any, get, post},
};
use support::{Consumer, PRICE};
use tower::ServiceExt;

/// The provider's handlers, counting the work they do.
fn handlers(work: Arc<AtomicU64>) -> Router {
    let (a, b, c) = (Arc::clone(&work), Arc::clone(&work), work);
    Router::new()
        .route(
            "/v1/echo",
            post(move |body: String| async move {
                a.fetch_add(1, Ordering::SeqCst);
                format!("echo: {body}")
            }),
        )
        .route(
            "/v1/report",
            get(move || async move {
                b.fetch_add(1, Ordering::SeqCst);
                "a costly report"
            }),
        )
        .route(
            "/v1/anything",
            any(move || async move {
                c.fetch_add(1, Ordering::SeqCst);
                "any method"
            }),
        )
}

async fn paywall(devnet: &Devnet, dir: &std::path::Path, prefix: &str) -> Paywall {
    Paywall::builder(devnet.kernel(1).await.unwrap())
        .data_dir(dir)
        .route(
            Route::post(format!("{prefix}/v1/echo"))
                .flat(PRICE)
                .service("echo"),
        )
        .route(Route::get(format!("{prefix}/v1/report")).flat(PRICE))
        .route(Route::post(format!("{prefix}/v1/anything")).flat(PRICE))
        .build()
        .await
        .unwrap()
}

async fn status(app: &Router, method: Method, path: &str) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from("x"))
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_routes_are_paid_however_the_paywall_is_mounted() {
    let devnet = Devnet::start().await.unwrap();
    let consumer = Consumer::new(&devnet, 2).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let work = Arc::new(AtomicU64::new(0));

    // 1. `Router::layer` on a router nested under /api, routes declared by the full path.
    let nested_full = Router::new().nest(
        "/api",
        handlers(Arc::clone(&work)).layer(paywall(&devnet, dirs[0].path(), "/api").await.layer()),
    );
    // 2. `route_layer` on the top router.
    let top = paywall(&devnet, dirs[1].path(), "/api").await;
    let route_layered = Router::new()
        .nest("/api", handlers(Arc::clone(&work)))
        .route_layer(top.layer());
    // 3. Nested, routes declared relative to the nested router (the prefix forgotten): still paid.
    let nested_relative = Router::new().nest(
        "/api",
        handlers(Arc::clone(&work)).layer(paywall(&devnet, dirs[2].path(), "").await.layer()),
    );

    for (name, app) in [
        ("nested, full paths", &nested_full),
        ("route_layer", &route_layered),
        ("nested, relative paths", &nested_relative),
    ] {
        assert_eq!(
            status(app, Method::POST, "/api/v1/echo").await,
            StatusCode::PAYMENT_REQUIRED,
            "{name}"
        );
        assert_eq!(
            status(app, Method::GET, "/api/v1/report").await,
            StatusCode::PAYMENT_REQUIRED,
            "{name}"
        );
        // axum serves HEAD with the GET handler: HEAD pays too.
        assert_eq!(
            status(app, Method::HEAD, "/api/v1/report").await,
            StatusCode::PAYMENT_REQUIRED,
            "{name}: HEAD"
        );
        // `any` serves every method; only POST is declared, so the others are refused.
        assert_eq!(
            status(app, Method::POST, "/api/v1/anything").await,
            StatusCode::PAYMENT_REQUIRED,
            "{name}"
        );
        assert_eq!(
            status(app, Method::PUT, "/api/v1/anything").await,
            StatusCode::METHOD_NOT_ALLOWED,
            "{name}: PUT on a paid path"
        );
    }
    assert_eq!(work.load(Ordering::SeqCst), 0, "a handler worked unpaid");

    // Paid, under nest: the requester signs the path it sent, and the paywall checks that one.
    let tx = consumer
        .pay(devnet.signer(1).address(), PRICE, 86_400, "echo")
        .await;
    let auth = consumer.authorize(&consumer.signer, tx, "POST", "/api/v1/echo", b"hi", 120);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/echo")
        .header("x-agirails-tx-id", tx.to_string())
        .header("x-agirails-authorization", auth)
        .body(Body::from("hi"))
        .unwrap();
    let served = nested_full.clone().oneshot(request).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(work.load(Ordering::SeqCst), 1);
}
