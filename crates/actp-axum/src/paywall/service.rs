//! The tower [`Layer`] and [`Service`] of the paywall, and its [`ResponseFuture`]: which route a request is
//! for (as the router dispatches it: HEAD for GET, the matched path under `nest` and `route_layer`), and
//! the request's way through verification, the handler and delivery. A paid route is never reached unpaid:
//! an undeclared method on a paid path gets 405, a variant of a paid path (trailing slash, `//`, `/./`,
//! percent-encoding, case) gets 404.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    body::Body,
    extract::{MatchedPath, OriginalUri},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request};
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument, field};

use super::{BoxError, Inner, Paywall};
use crate::route::Decision;

/// The tower [`Layer`] of a [`Paywall`].
#[derive(Clone)]
pub struct PaywallLayer {
    pub(super) paywall: Paywall,
}

impl<S> Layer<S> for PaywallLayer {
    type Service = PaywallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PaywallService {
            inner,
            paywall: self.paywall.clone(),
        }
    }
}

/// The paywall around an inner service.
#[derive(Clone)]
pub struct PaywallService<S> {
    inner: S,
    paywall: Paywall,
}

/// The response future of [`PaywallService`].
pub struct ResponseFuture<E> {
    inner: BoxFuture<'static, Result<Response, E>>,
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PaywallService<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was driven to readiness serves this request; the fresh clone stays behind.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let paywall = Arc::clone(&self.paywall.inner);
        ResponseFuture {
            inner: Box::pin(handle(paywall, service, req)),
        }
    }
}

async fn handle<S, ReqBody, ResBody>(
    paywall: Arc<Inner>,
    mut service: S,
    req: Request<ReqBody>,
) -> Result<Response, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let original_path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or_else(|| parts.uri.path().to_owned(), |o| o.0.path().to_owned());
    let is_get = parts.method == Method::GET || parts.method == Method::HEAD;
    if is_get && paywall.pricing_path.as_deref() == Some(original_path.as_str()) {
        return Ok(paywall.pricing_response());
    }
    if parts.method == Method::POST
        && paywall
            .sessions
            .as_ref()
            .is_some_and(|c| c.close_path == original_path)
    {
        return Ok(paywall.answer_close_path(&parts, body).await);
    }
    let matched = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let local_path = parts.uri.path();
    let paths: &[&str] = if local_path == original_path {
        &[local_path]
    } else {
        &[original_path.as_str(), local_path]
    };
    let route = match paywall.routes.decide(&parts.method, matched, paths) {
        Decision::Paid(route) => route.clone(),
        Decision::Refuse(refusal) => {
            paywall.metrics.request(refusal.code());
            tracing::info!(code = refusal.code(), method = %parts.method, "refused before any payment check");
            return Ok(refusal.into_response());
        }
        Decision::Free => {
            let response = service
                .call(Request::from_parts(parts, Body::new(body)))
                .await?;
            return Ok(response.map(Body::new));
        }
    };
    let span = tracing::info_span!(
        "paywall",
        method = %parts.method,
        route = %route.path,
        tx_id = field::Empty,
        outcome = field::Empty,
        verify_ms = field::Empty,
        handler_ms = field::Empty,
    );
    async move {
        let start = Instant::now();
        let _in_flight = paywall.store.request();
        paywall.clock.refresh_in_background(&paywall.kernel);
        let granted = match super::verify::verify(&paywall, &route, &parts, body).await {
            Ok(granted) => granted,
            Err(refusal) => {
                let span = tracing::Span::current();
                span.record("outcome", refusal.code());
                span.record("verify_ms", start.elapsed().as_millis() as u64);
                paywall.metrics.request(refusal.code());
                tracing::info!(code = refusal.code(), "refused");
                return Ok(refusal.into_response());
            }
        };
        let span = tracing::Span::current();
        span.record("verify_ms", start.elapsed().as_millis() as u64);
        let handler_start = Instant::now();
        let tx_id = granted.payment.tx_id;
        let mut request = Request::from_parts(parts, Body::from(granted.body));
        request.extensions_mut().insert(granted.payment.clone());
        let outcome = service.call(request).await;
        span.record("handler_ms", handler_start.elapsed().as_millis() as u64);
        let response = match outcome {
            Ok(response) => response,
            Err(e) => {
                paywall.handler_failed(tx_id, granted.session).await;
                return Err(e);
            }
        };
        if !response.status().is_success() {
            let session = granted.session.is_some();
            paywall.handler_failed(tx_id, granted.session).await;
            return Ok(super::deliver_session::uncharged(
                response.map(Body::new),
                session,
            ));
        }
        Ok(paywall
            .handler_succeeded(
                granted.payment,
                granted.session,
                granted.request_hash,
                granted.started,
                response,
            )
            .await)
    }
    .instrument(span)
    .await
}
