//! What the examples share: the example provider's service and its paywall configuration, used by the
//! `provider` binary and by `actp demo`.

pub mod provider {
    //! The example provider: `POST /v1/summarise` paid per call, `GET /health` free, `GET /pricing`, and
    //! `GET /metrics`.

    use std::{path::Path, time::Duration};

    use actp_axum::{Paywall, PaywallBuilder, Route};
    use actp_client::Kernel;
    use actp_core::Amount;
    use axum::{
        Router,
        routing::{get, post},
    };

    /// The paid route.
    pub const PATH: &str = "/v1/summarise";
    /// Its service name (the transaction's serviceHash is keccak256 of it).
    pub const SERVICE: &str = "summarise";
    /// The default price per call.
    pub const PRICE: Amount = Amount::from_base_units(100_000);

    /// The service itself: what the provider sells.
    pub async fn summarise(text: String) -> String {
        let words = text.split_whitespace().count();
        let first: String = text
            .split_whitespace()
            .take(8)
            .collect::<Vec<_>>()
            .join(" ");
        serde_json::json!({ "summary": first, "words": words }).to_string()
    }

    /// The paywall: the paid route at `price`, the free health route, claims and outbox under `data_dir`.
    pub fn paywall(kernel: Kernel, data_dir: &Path, price: Amount) -> PaywallBuilder {
        Paywall::builder(kernel)
            .data_dir(data_dir)
            .route(Route::post(PATH).flat(price).service(SERVICE))
            .route(Route::get("/health"))
            .min_time_to_deadline(Duration::from_secs(300))
    }

    /// The provider's API behind `paywall`.
    pub fn app(paywall: &Paywall) -> Router {
        let metrics = paywall.clone();
        Router::new()
            .route(PATH, post(summarise))
            .route("/health", get(|| async { "ok" }))
            .route(
                "/metrics",
                get(move || async move { metrics.metrics().render_prometheus() }),
            )
            .layer(paywall.layer())
    }
}
