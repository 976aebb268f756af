//! Metered gateway routes: the usage of a call, read from the upstream's answer.

use actp_core::meter::{Meter, Usage};
use axum::http::HeaderMap;

use super::GatewayPrice;

/// How a metered route learns the usage of a call from the upstream's answer.
#[derive(Debug, Clone)]
pub(super) enum Metering {
    /// `X-AGIRAILS-USAGE` response header.
    Header(Meter),
    /// `usage.prompt_tokens` / `usage.completion_tokens` in a JSON answer.
    OpenAi(Meter),
}

impl Metering {
    pub(super) fn of(price: &GatewayPrice) -> Option<Metering> {
        match price {
            GatewayPrice::Usage(m) => Some(Metering::Header(m.clone())),
            GatewayPrice::Tokens(m) => Some(Metering::OpenAi(m.clone())),
            GatewayPrice::Free | GatewayPrice::Flat(_) => None,
        }
    }

    /// The call's usage from the answer; when the answer reports none, enough to cost the maximum.
    pub(super) fn usage(&self, headers: &HeaderMap, body: &[u8]) -> Usage {
        let (meter, reported) = match self {
            Metering::Header(m) => (m, header_usage(headers)),
            Metering::OpenAi(m) => (m, openai_usage(body)),
        };
        reported.unwrap_or_else(|| {
            tracing::warn!("the upstream reported no usage: the call costs its maximum");
            meter
                .rates
                .keys()
                .fold(Usage::new(), |u, unit| u.with(unit, u64::MAX))
        })
    }
}

/// `X-AGIRAILS-USAGE: 120` (the single unit) or `in=120, out=350`.
fn header_usage(headers: &HeaderMap) -> Option<Usage> {
    let value = headers.get(USAGE_HEADER)?.to_str().ok()?.trim();
    if let Ok(n) = value.parse::<u64>() {
        return Some(Usage::units(n));
    }
    value.split(',').try_fold(Usage::new(), |usage, part| {
        let (unit, n) = part.split_once('=')?;
        Some(usage.with(unit.trim(), n.trim().parse().ok()?))
    })
}

/// `{"usage": {"prompt_tokens": 12, "completion_tokens": 34}}` as OpenAI-compatible servers answer.
fn openai_usage(body: &[u8]) -> Option<Usage> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let usage = json.get("usage")?;
    let count = |name: &str| usage.get(name).and_then(serde_json::Value::as_u64);
    let (prompt, completion) = (count("prompt_tokens"), count("completion_tokens"));
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some(
        Usage::new()
            .with("in", prompt.unwrap_or(0))
            .with("out", completion.unwrap_or(0)),
    )
}

/// The response header an upstream reports a metered call's usage in.
pub(super) const USAGE_HEADER: &str = "x-agirails-usage";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use actp_core::Amount;
    use axum::http::HeaderValue;

    #[test]
    fn usage_is_read_from_the_header_or_the_openai_answer_and_missing_usage_costs_the_maximum() {
        let meter: Meter = "in=0.000001,out=0.000004,max=0.50".parse().unwrap();
        let openai = Metering::OpenAi(meter.clone());
        let body = br#"{"id":"x","usage":{"prompt_tokens":1200,"completion_tokens":350,"total_tokens":1550}}"#;
        let usage = openai.usage(&HeaderMap::new(), body);
        assert_eq!((usage.get("in"), usage.get("out")), (1200, 350));
        assert_eq!(meter.charge(&usage), Amount::from_base_units(2_600));
        for silent in [
            &b"not json"[..],
            br#"{"usage":{}}"#,
            b"data: {\"usage\":1}\n\n",
        ] {
            assert_eq!(
                meter.charge(&openai.usage(&HeaderMap::new(), silent)),
                meter.max
            );
        }
        let header = Metering::Header("unit=0.001,max=1.00".parse().unwrap());
        let mut headers = HeaderMap::new();
        headers.insert(USAGE_HEADER, HeaderValue::from_static("120"));
        assert_eq!(header.usage(&headers, b"").get(Meter::UNIT), 120);
        headers.insert(USAGE_HEADER, HeaderValue::from_static("in=3, out=4"));
        let pairs = header.usage(&headers, b"");
        assert_eq!((pairs.get("in"), pairs.get("out")), (3, 4));
        headers.insert(USAGE_HEADER, HeaderValue::from_static("lots"));
        assert_eq!(header.usage(&headers, b"").get(Meter::UNIT), u64::MAX);
    }
}
