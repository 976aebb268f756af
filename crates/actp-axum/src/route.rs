//! Paid routes and their prices.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    future::Future,
    sync::Arc,
};

use actp_core::{Amount, B256, http::RoutePrice, ids::service_hash, meter::Meter};

use crate::refusal::Refusal;
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
    /// A maximum per call plus prices per unit of the usage the handler reports (the [`Usage`] response
    /// extension): a call paid from a session is charged `min(units x prices, max)`; a per-call transaction
    /// pays the maximum.
    ///
    /// [`Usage`]: actp_core::meter::Usage
    Metered(Meter),
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
            Price::Metered(m) => write!(f, "Metered({m})"),
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
    pub(crate) sessions: bool,
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
            sessions: true,
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

    /// A metered price: a maximum per call plus prices per unit, e.g.
    /// `"in=0.000001,out=0.000004,max=0.50".parse()?`.
    pub fn metered(mut self, meter: Meter) -> Self {
        self.price = Price::Metered(meter);
        self
    }

    /// Whether a session may pay for this route (default yes, when the paywall offers sessions).
    pub fn sessions(mut self, allowed: bool) -> Self {
        self.sessions = allowed;
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

    /// A metered route's price of each unit in tokens, by unit name (what the pricing document and a 402
    /// advertise).
    pub(crate) fn unit_prices(&self) -> Option<BTreeMap<String, String>> {
        match &self.price {
            Price::Metered(m) => Some(
                m.rates
                    .iter()
                    .map(|(unit, price)| (unit.clone(), price.to_string()))
                    .collect(),
            ),
            Price::Free | Price::Flat(_) | Price::Dynamic(_) => None,
        }
    }

    pub(crate) fn describe(&self, sessions_offered: bool) -> RoutePrice {
        let (pricing, amount) = match &self.price {
            Price::Free => ("free", None),
            Price::Flat(a) => ("flat", Some(*a)),
            Price::Metered(m) => ("metered", Some(m.max)),
            Price::Dynamic(_) => ("dynamic", None),
        };
        RoutePrice {
            method: self.method.to_string(),
            path: self.path.clone(),
            pricing: pricing.into(),
            amount: amount.map(|a| a.base_units().to_string()),
            price: amount.map(|a| a.to_string()),
            units: self.unit_prices(),
            sessions: sessions_offered && self.sessions && !matches!(self.price, Price::Free),
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
    /// Each route's pattern on its own, whatever the method.
    each: Vec<matchit::Router<()>>,
    /// Each route's pattern in canonical form (lowercase), to recognise variants of its paths.
    each_canonical: Vec<matchit::Router<()>>,
}

/// What the paywall does with a request, decided from its method and path before anything else.
#[derive(Debug)]
pub(crate) enum Decision<'a> {
    /// A paid route: verify the payment.
    Paid(&'a Route),
    /// A free route, or a path no paid route claims: pass through.
    Free,
    /// Never served: a paid path with a method no route declares, or a variant of a paid path.
    Refuse(Refusal),
}

impl Routes {
    pub(crate) fn new(list: Vec<Route>) -> Result<Self, RouteError> {
        let mut by_method: HashMap<Method, matchit::Router<usize>> = HashMap::new();
        let mut each = Vec::with_capacity(list.len());
        let mut each_canonical = Vec::with_capacity(list.len());
        for (i, route) in list.iter().enumerate() {
            let refused = |e: matchit::InsertError| RouteError {
                method: route.method.to_string(),
                path: route.path.clone(),
                reason: e.to_string(),
            };
            by_method
                .entry(route.method.clone())
                .or_default()
                .insert(route.path.clone(), i)
                .map_err(refused)?;
            let mut alone = matchit::Router::new();
            alone.insert(route.path.clone(), ()).map_err(refused)?;
            each.push(alone);
            let mut canonical = matchit::Router::new();
            canonical
                .insert(route.path.to_lowercase(), ())
                .map_err(refused)?;
            each_canonical.push(canonical);
        }
        Ok(Routes {
            list,
            by_method,
            each,
            each_canonical,
        })
    }

    /// The route serving `method path` (path without query), if any.
    #[cfg(test)]
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        self.find_index(method, path).map(|i| &self.list[i])
    }

    fn find_index(&self, method: &Method, path: &str) -> Option<usize> {
        let router = self.by_method.get(method)?;
        router.at(path).ok().map(|m| *m.value)
    }

    /// Which route a request is for, as the router dispatches it. `matched` is the pattern axum matched
    /// (`MatchedPath`, also under `nest`), `paths` the request's paths (the original URI's, and the one this
    /// service sees, which `nest` strips). Fail-closed: if any reading names a paid route, the request pays.
    /// - HEAD is served by GET handlers (axum does so), so HEAD on a paid GET route is paid;
    /// - a paid path asked with a method no route declares is refused (405), since the router may send it
    ///   to the same handler (`any`, a method router shared by the path);
    /// - a path that is not a route but is a variant of a paid one (trailing slash, `//`, `/./`, `/../`,
    ///   percent-encoding, case, `;` parameters) is refused (404): a server behind it may read it as the
    ///   paid route.
    pub(crate) fn decide(
        &self,
        method: &Method,
        matched: Option<&str>,
        paths: &[&str],
    ) -> Decision<'_> {
        let mut methods = vec![method.clone()];
        if method == Method::HEAD {
            methods.push(Method::GET);
        }
        let mut found: Option<usize> = None;
        for m in &methods {
            let by_pattern = matched.and_then(|pattern| {
                self.list
                    .iter()
                    .position(|r| r.method == *m && r.path == pattern)
            });
            let by_path = paths.iter().filter_map(|p| self.find_index(m, p));
            for i in by_pattern.into_iter().chain(by_path) {
                let paid = !matches!(self.list[i].price, Price::Free);
                if paid {
                    return Decision::Paid(&self.list[i]);
                }
                found.get_or_insert(i);
            }
        }
        if found.is_some() {
            return Decision::Free;
        }
        let paid = |i: &usize| !matches!(self.list[*i].price, Price::Free);
        let at_path = |i: &usize| {
            matched.is_some_and(|m| self.list[*i].path == m)
                || paths.iter().any(|p| self.each[*i].at(p).is_ok())
        };
        if (0..self.list.len()).filter(paid).any(|i| at_path(&i)) {
            let mut allowed: Vec<String> = (0..self.list.len())
                .filter(at_path)
                .map(|i| self.list[i].method.to_string())
                .collect();
            if allowed.iter().any(|m| m == "GET") {
                allowed.push("HEAD".into());
            }
            allowed.sort();
            allowed.dedup();
            return Decision::Refuse(Refusal::MethodNotAllowed {
                allowed: allowed.join(", "),
            });
        }
        for path in paths {
            let canonical = canonical_path(path);
            if let Some(i) = (0..self.list.len())
                .filter(paid)
                .find(|i| self.each_canonical[*i].at(&canonical).is_ok())
            {
                return Decision::Refuse(Refusal::NonCanonicalPath {
                    route: format!("{} {}", self.list[i].method, self.list[i].path),
                });
            }
        }
        Decision::Free
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Route> {
        self.list.iter()
    }
}

/// The form a lenient server may read `path` as: percent-escapes decoded, `\\` as `/`, `;` parameters cut,
/// empty and `.` segments dropped, `..` applied, lowercase.
pub(crate) fn canonical_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            decoded.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in text.split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/")).to_lowercase()
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

    fn paid(decision: Decision<'_>) -> Option<String> {
        match decision {
            Decision::Paid(r) => Some(format!("{} {}", r.method, r.path)),
            _ => None,
        }
    }

    #[test]
    fn head_is_paid_like_get() {
        let routes = Routes::new(vec![
            Route::get("/v1/data").flat(Amount::from_base_units(60_000)),
            Route::get("/free"),
        ])
        .unwrap();
        assert_eq!(
            paid(routes.decide(&Method::HEAD, None, &["/v1/data"])),
            Some("GET /v1/data".into())
        );
        assert!(matches!(
            routes.decide(&Method::HEAD, None, &["/free"]),
            Decision::Free
        ));
    }

    #[test]
    fn undeclared_methods_on_a_paid_path_are_refused() {
        let routes = Routes::new(vec![
            Route::post("/v1/items/{id}").flat(Amount::from_base_units(60_000)),
            Route::get("/v1/items/{id}"),
        ])
        .unwrap();
        assert!(matches!(
            routes.decide(&Method::GET, None, &["/v1/items/7"]),
            Decision::Free
        ));
        match routes.decide(&Method::PUT, None, &["/v1/items/7"]) {
            Decision::Refuse(Refusal::MethodNotAllowed { allowed }) => {
                assert_eq!(allowed, "GET, HEAD, POST");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_matched_pattern_and_every_path_reading_count() {
        let routes = Routes::new(vec![
            Route::post("/api/v1/x").flat(Amount::from_base_units(60_000)),
        ])
        .unwrap();
        // route_layer / nested router: axum's matched pattern is the full path
        assert!(paid(routes.decide(&Method::POST, Some("/api/v1/x"), &["/v1/x"])).is_some());
        // the original URI, whatever the nested service sees
        assert!(paid(routes.decide(&Method::POST, None, &["/api/v1/x", "/v1/x"])).is_some());
        // a route declared relative to a nested router is found by the stripped path
        let relative = Routes::new(vec![
            Route::post("/v1/x").flat(Amount::from_base_units(60_000)),
        ])
        .unwrap();
        assert!(paid(relative.decide(&Method::POST, None, &["/api/v1/x", "/v1/x"])).is_some());
    }

    #[test]
    fn variants_of_a_paid_path_are_never_free() {
        let routes = Routes::new(vec![
            Route::get("/v1/summarise").flat(Amount::from_base_units(60_000)),
            Route::get("/health"),
        ])
        .unwrap();
        for variant in [
            "/v1/summarise/",
            "//v1/summarise",
            "/v1//summarise",
            "/v1/./summarise",
            "/v1/x/../summarise",
            "/v1/%73ummarise",
            "/v1%2Fsummarise",
            "/V1/Summarise",
            "/v1/summarise;x=1",
            "/v1\\summarise",
        ] {
            match routes.decide(&Method::GET, None, &[variant]) {
                Decision::Refuse(Refusal::NonCanonicalPath { route }) => {
                    assert_eq!(route, "GET /v1/summarise", "{variant}");
                }
                other => panic!("{variant}: {other:?}"),
            }
        }
        assert!(matches!(
            routes.decide(&Method::GET, None, &["/HEALTH"]),
            Decision::Free
        ));
        assert!(matches!(
            routes.decide(&Method::GET, None, &["/v1/other"]),
            Decision::Free
        ));
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
        assert_eq!(r.describe(true).pricing, "free");
        assert!(
            !r.describe(true).sessions,
            "a free route takes no payment at all"
        );
    }
}
