//! What the examples share: the example provider's service and its paywall configuration, used by the
//! `provider` binary and by `actp demo`.

pub mod provider {
    //! The example provider: `POST /v1/summarise` at a flat price per call, `POST /v1/chat` metered per output
    //! token, `GET /health` free, `GET /pricing`, and `GET /metrics`. Both paid routes take a payment of their
    //! own or a session (one escrow for many calls).

    use std::{path::Path, time::Duration};

    use actp_axum::{Paywall, PaywallBuilder, Route, Usage};
    use actp_client::Kernel;
    use actp_core::{
        Amount,
        meter::{Meter, UnitPrice},
    };
    use axum::{
        Router,
        response::{IntoResponse, Response},
        routing::{get, post},
    };

    /// The paid route.
    pub const PATH: &str = "/v1/summarise";
    /// Its service name (the transaction's serviceHash is keccak256 of it).
    pub const SERVICE: &str = "summarise";
    /// The default price per call.
    pub const PRICE: Amount = Amount::from_base_units(100_000);
    /// The metered route: an answer priced by its output tokens.
    pub const CHAT_PATH: &str = "/v1/chat";
    /// Its service name.
    pub const CHAT_SERVICE: &str = "chat";
    /// Its price per output token (a word of the answer): 0.0002, i.e. 200 base units.
    pub const CHAT_PER_TOKEN: UnitPrice = UnitPrice::from_base_units(200);
    /// The most one chat call costs.
    pub const CHAT_MAX: Amount = Amount::from_base_units(20_000);

    /// The chat route's meter: [`CHAT_PER_TOKEN`] per output token, at most [`CHAT_MAX`].
    pub fn chat_meter() -> Meter {
        Meter {
            rates: [("out".to_owned(), CHAT_PER_TOKEN)].into_iter().collect(),
            max: CHAT_MAX,
        }
    }

    /// The metered service: answers with the question's words in reverse order, one output token per word,
    /// and reports the tokens it used so the paywall charges them.
    pub async fn chat(text: String) -> Response {
        let answer: Vec<&str> = text.split_whitespace().rev().collect();
        let tokens = answer.len() as u64;
        let mut response = serde_json::json!({ "answer": answer.join(" "), "tokens": tokens })
            .to_string()
            .into_response();
        response
            .extensions_mut()
            .insert(Usage::new().with("out", tokens));
        response
    }

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

    /// The paywall: the flat route at `price`, the metered chat route, the free health route; claims, sessions
    /// and outbox under `data_dir`.
    pub fn paywall(kernel: Kernel, data_dir: &Path, price: Amount) -> PaywallBuilder {
        Paywall::builder(kernel)
            .data_dir(data_dir)
            .route(Route::post(PATH).flat(price).service(SERVICE))
            .route(
                Route::post(CHAT_PATH)
                    .metered(chat_meter())
                    .service(CHAT_SERVICE),
            )
            .route(Route::get("/health"))
            .min_time_to_deadline(Duration::from_secs(300))
    }

    /// The provider's API behind `paywall`.
    pub fn app(paywall: &Paywall) -> Router {
        let metrics = paywall.clone();
        Router::new()
            .route(PATH, post(summarise))
            .route(CHAT_PATH, post(chat))
            .route("/health", get(|| async { "ok" }))
            .route(
                "/metrics",
                get(move || async move { metrics.metrics().render_prometheus() }),
            )
            .layer(paywall.layer())
    }
}
