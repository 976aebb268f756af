//! Paid routes and their prices.

use std::{collections::HashMap, fmt, future::Future, sync::Arc};

use actp_core::{Amount, B256, http::RoutePrice, ids::service_hash};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Method};

/// What a dynamic price function sees of the request: method, target, headers and the whole body.
#[derive(Debug, Clone)]
pub struct PriceRequest {
    /// The method.
    pub method: Method,
    /// The path and query exactly as sent.
    pub target: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The request body.
    pub body: Bytes,
}

/// A dynamic price function's refusal to price a request (answered `400`, message shown to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PriceError(pub String);

type PriceFn =
    Arc<dyn Fn(PriceRequest) -> BoxFuture<'static, Result<Amount, PriceError>> + Send + Sync>;

/// How much a route costs.
#[derive(Clone)]
pub enum Price {
    /// Served without payment.
    Free,
    /// The same amount for every call.
    Flat(Amount),
    /// Computed per request (by input size, by demand), asynchronously.
    Dynamic(PriceFn),
}

impl Price {
    /// A dynamic price from an async function of the request.
    pub fn dynamic<F, Fut>(f: F) -> Self
    where
        F: Fn(PriceRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Amount, PriceError>> + Send + 'static,
    {
        Price::Dynamic(Arc::new(move |req| Box::pin(f(req))))
    }
}

impl fmt::Debug for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Price::Free => f.write_str("Free"),
            Price::Flat(a) => write!(f, "Flat({a})"),
            Price::Dynamic(_) => f.write_str("Dynamic"),
        }
    }
}

/// One route of the provider's API: method, path pattern, price and service.
///
/// Patterns use axum's syntax: `/v1/items/{id}` matches one segment, `/files/{*rest}` the rest of the path.
#[derive(Debug, Clone)]
pub struct Route {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) price: Price,
    pub(crate) service: String,
}

impl Route {
    /// A route for `method` and `path`; free until priced.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        let path = path.into();
        Route {
            service: format!("{method} {path}"),
            method,
            path,
            price: Price::Free,
        }
    }

    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Route::new(Method::GET, path)
    }

    /// `POST path`.
    pub fn post(path: impl Into<String>) -> Self {
        Route::new(Method::POST, path)
    }

    /// A flat price per call.
    pub fn flat(mut self, price: Amount) -> Self {
        self.price = Price::Flat(price);
        self
    }

    /// Any price.
    pub fn price(mut self, price: Price) -> Self {
        self.price = price;
        self
    }

    /// Names the service (default `"METHOD path"`); the transaction's serviceHash must be `keccak256(name)`.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = name.into();
        self
    }

    /// The serviceHash a transaction paying for this route must carry.
    pub fn service_hash(&self) -> B256 {
        service_hash(&self.service)
    }

    pub(crate) fn describe(&self) -> RoutePrice {
        let (pricing, amount, price) = match &self.price {
            Price::Free => ("free", None, None),
            Price::Flat(a) => (
                "flat",
                Some(a.base_units().to_string()),
                Some(a.to_string()),
            ),
            Price::Dynamic(_) => ("dynamic", None, None),
        };
        RoutePrice {
            method: self.method.to_string(),
            path: self.path.clone(),
            pricing: pricing.into(),
            amount,
            price,
            service: self.service.clone(),
            service_hash: self.service_hash(),
        }
    }
}

/// A route pattern that does not parse or clashes with another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {method} {path}: {reason}")]
pub struct RouteError {
    /// The method.
    pub method: String,
    /// The pattern.
    pub path: String,
    /// Why it was refused.
    pub reason: String,
}

/// The routes, matched by method then path.
#[derive(Default)]
pub(crate) struct Routes {
    list: Vec<Route>,
    by_method: HashMap<Method, matchit::Router<usize>>,
}

impl Routes {
    pub(crate) fn new(list: Vec<Route>) -> Result<Self, RouteError> {
        let mut by_method: HashMap<Method, matchit::Router<usize>> = HashMap::new();
        for (i, route) in list.iter().enumerate() {
            by_method
                .entry(route.method.clone())
                .or_default()
                .insert(route.path.clone(), i)
                .map_err(|e| RouteError {
                    method: route.method.to_string(),
                    path: route.path.clone(),
                    reason: e.to_string(),
                })?;
        }
        Ok(Routes { list, by_method })
    }

    /// The route serving `method path` (path without query), if any.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        let router = self.by_method.get(method)?;
        let matched = router.at(path).ok()?;
        self.list.get(*matched.value)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Route> {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn matches_by_method_and_pattern() {
        let routes = Routes::new(vec![
            Route::post("/v1/generate").flat(Amount::from_base_units(100_000)),
            Route::get("/v1/items/{id}").flat(Amount::from_base_units(60_000)),
        ])
        .unwrap();
        assert!(routes.find(&Method::POST, "/v1/generate").is_some());
        assert!(routes.find(&Method::GET, "/v1/generate").is_none());
        assert_eq!(
            routes.find(&Method::GET, "/v1/items/42").unwrap().path,
            "/v1/items/{id}"
        );
        assert!(routes.find(&Method::GET, "/v1/items/42/more").is_none());
    }

    #[test]
    fn clashing_patterns_are_refused_with_the_route_named() {
        let err = Routes::new(vec![Route::get("/a/{x}"), Route::get("/a/{y}")])
            .err()
            .unwrap();
        assert_eq!(err.path, "/a/{y}");
    }

    #[test]
    fn default_service_name_is_method_and_path() {
        let r = Route::post("/v1/generate");
        assert_eq!(r.service, "POST /v1/generate");
        assert_eq!(r.service_hash(), service_hash("POST /v1/generate"));
        assert_eq!(r.describe().pricing, "free");
    }
}
