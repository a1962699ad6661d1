//! The tower layer that gives every call of the orgs services a deadline: the
//! client's `grpc-timeout`, and for unary calls at most `ORGS_REQUEST_TIMEOUT`.
//! When it passes, the call's future is dropped — its database work stops and
//! a transaction it left unfinished rolls back — and the client gets
//! `DEADLINE_EXCEEDED` `DEADLINE_EXCEEDED`. For a server-streaming call the
//! deadline covers the start of the stream, not the stream itself.
//!
//! tonic enforces the client's `grpc-timeout` on both ends as well, but
//! answers `CANCELLED` without details; this layer, placed right inside the
//! outermost one, fires [`client_deadline_margin`] earlier so that the
//! server's answer reaches the client before the client's own timer fires.

use std::time::Duration;

use futures::future::BoxFuture;
use http::HeaderMap;
use tonic::{Status, body::Body};
use tower::Service;

use super::limits::RpcShapes;
use crate::domain::Error;
use crate::middleware::Around;

/// The least and the most the server gives up before the client's deadline.
pub const CLIENT_DEADLINE_MARGIN: (Duration, Duration) =
    (Duration::from_millis(5), Duration::from_millis(250));

/// How much earlier than the client's own deadline the server gives up: a
/// twentieth of the client's timeout, within [`CLIENT_DEADLINE_MARGIN`]. The
/// client's timer starts when it sends the request and the server's when the
/// request arrives, so the margin must cover the trip there and back; a fixed
/// few milliseconds is lost to a loaded network or host, while a longer
/// timeout can spare a proportionate share.
pub fn client_deadline_margin(timeout: Duration) -> Duration {
    let (least, most) = CLIENT_DEADLINE_MARGIN;
    (timeout / 20).clamp(least, most)
}

/// The `grpc-timeout` of a request (`1*8DIGIT` and a unit `H`, `M`, `S`, `m`,
/// `u` or `n`), if it has a well-formed one.
pub fn client_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 || !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[derive(Clone)]
pub struct DeadlineLayer {
    unary_timeout: Duration,
    shapes: RpcShapes,
}

impl DeadlineLayer {
    pub fn new(unary_timeout: Duration, shapes: RpcShapes) -> Self {
        DeadlineLayer {
            unary_timeout,
            shapes,
        }
    }

    /// How long a call to `path` may take before its response starts.
    fn budget(&self, path: &str, headers: &HeaderMap) -> Option<Duration> {
        let client = client_timeout(headers).map(|t| t.saturating_sub(client_deadline_margin(t)));
        let server = self.shapes.is_unary(path).then_some(self.unary_timeout);
        match (client, server) {
            (Some(client), Some(server)) => Some(client.min(server)),
            (client, None) if self.shapes.is_server_streaming(path) => client,
            (None, server) => server,
            (Some(_), None) => None,
        }
    }
}

impl Around for DeadlineLayer {
    fn around<S, B>(
        &self,
        mut inner: S,
        request: http::Request<B>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, S::Error>>
    where
        S: Service<http::Request<B>, Response = http::Response<Body>> + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        let Some(budget) = self.budget(request.uri().path(), request.headers()) else {
            return Box::pin(inner.call(request));
        };
        let path = request.uri().path().to_string();
        // The timer starts before the call, so time spent in the layers
        // inside (authentication among them) counts too.
        let deadline = tokio::time::sleep(budget);
        let response = inner.call(request);
        Box::pin(async move {
            tokio::select! {
                biased;
                response = response => response,
                () = deadline => {
                    tracing::info!(rpc = %path, budget_ms = budget.as_millis() as u64, "deadline passed; call cancelled");
                    let status = Status::from(Error::DeadlineExceeded(
                        "the deadline passed before the call finished; nothing was changed".into(),
                    ));
                    Ok(status.into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(timeout: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", timeout.parse().unwrap());
        headers
    }

    #[test]
    fn grpc_timeouts_parse_by_the_spec() {
        assert_eq!(
            client_timeout(&headers("50m")),
            Some(Duration::from_millis(50))
        );
        assert_eq!(client_timeout(&headers("2S")), Some(Duration::from_secs(2)));
        assert_eq!(
            client_timeout(&headers("1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            client_timeout(&headers("99999999n")),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789S", "12x", "-1S", "1.5S", "ünï"] {
            let mut map = HeaderMap::new();
            if let Ok(value) = bad.parse() {
                map.insert("grpc-timeout", value);
            }
            assert_eq!(client_timeout(&map), None, "{bad}");
        }
    }

    #[test]
    fn the_margin_is_a_twentieth_of_the_timeout_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(client_deadline_margin(ms(2)), ms(5));
        assert_eq!(client_deadline_margin(ms(50)), ms(5));
        assert_eq!(client_deadline_margin(ms(400)), ms(20));
        assert_eq!(client_deadline_margin(Duration::from_secs(2)), ms(100));
        assert_eq!(client_deadline_margin(Duration::from_secs(3600)), ms(250));
    }

    #[test]
    fn unary_calls_get_the_shorter_deadline_and_streams_only_the_clients() {
        let shapes = RpcShapes::from_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET);
        let layer = DeadlineLayer::new(Duration::from_secs(30), shapes);
        let unary = "/orgs.v1.OrganizationService/GetOrganization";
        let stream = "/orgs.v1.BillingService/WatchBillableOrganizations";
        assert_eq!(
            layer.budget(unary, &HeaderMap::new()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            layer.budget(unary, &headers("50m")),
            Some(Duration::from_millis(45))
        );
        assert_eq!(
            layer.budget(unary, &headers("1H")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(layer.budget(stream, &HeaderMap::new()), None);
        assert_eq!(
            layer.budget(stream, &headers("1S")),
            Some(Duration::from_millis(950))
        );
        assert_eq!(
            layer.budget("/grpc.health.v1.Health/Check", &headers("1S")),
            None
        );
    }
}
