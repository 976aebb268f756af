//! An HTTP load balancer on loopback, in front of provider replicas: each request goes to the next replica in
//! turn (round robin, per request, whatever connection it came on), and a replica that refuses connections
//! (killed) is skipped, as a real load balancer's health check would. A request whose replica dies while
//! serving it gets a 502, as behind a real one.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

struct Backends {
    urls: Vec<String>,
    next: AtomicUsize,
    served: Vec<AtomicUsize>,
    http: reqwest::Client,
}

/// A round-robin HTTP load balancer; see the module.
pub struct Balancer {
    url: String,
    backends: Arc<Backends>,
}

impl Balancer {
    /// Balances over `backends` (base URLs, `http://127.0.0.1:port`), listening on a port the OS picks.
    pub async fn start(backends: Vec<String>) -> Balancer {
        let backends = Arc::new(Backends {
            served: backends.iter().map(|_| AtomicUsize::new(0)).collect(),
            urls: backends,
            next: AtomicUsize::new(0),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        });
        let app = Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&backends));
        Balancer {
            url: crate::serve(app).await,
            backends,
        }
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many requests each backend answered.
    pub fn served(&self) -> Vec<usize> {
        self.backends
            .served
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .collect()
    }
}

async fn forward(State(backends): State<Arc<Backends>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 << 20).await else {
        return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut headers = parts.headers.clone();
    headers.remove(axum::http::header::HOST);
    let n = backends.urls.len();
    let first = backends.next.fetch_add(1, Ordering::SeqCst);
    for i in 0..n {
        let b = (first + i) % n;
        let sent = backends
            .http
            .request(
                parts.method.clone(),
                format!("{}{target}", backends.urls[b]),
            )
            .headers(headers.clone())
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => {
                backends.served[b].fetch_add(1, Ordering::SeqCst);
                return relay(response).await;
            }
            // Down: the next one takes it.
            Err(e) if e.is_connect() => {}
            Err(e) => {
                return (StatusCode::BAD_GATEWAY, format!("replica failed: {e}")).into_response();
            }
        }
    }
    (StatusCode::BAD_GATEWAY, "every replica is down").into_response()
}

async fn relay(response: reqwest::Response) -> Response {
    let status = response.status();
    let mut headers: HeaderMap = response.headers().clone();
    // The body is relayed whole: its framing is this server's to choose.
    headers.remove(axum::http::header::TRANSFER_ENCODING);
    headers.remove(axum::http::header::CONNECTION);
    let body: Bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("replica failed: {e}")).into_response();
        }
    };
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}
