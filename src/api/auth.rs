//! Who may call what. Every route needs a client certificate of the
//! cluster CA, except the ones a certificate-less caller must reach:
//! `/healthz` (probes), `POST /v1/webhooks/*` (forges sign with an HMAC),
//! `POST /v1/cluster/join` (a join token) and `GET /v1/cluster/ca` (the CA
//! certificate a joining host pins). `--api-auth none` turns the check off,
//! loudly. Those open routes are also rate limited per source IP.

use super::serve::Peer;
use super::ApiState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Whether the API asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ApiAuth {
    /// Client certificates of the cluster CA on every route but the open ones.
    #[default]
    Mtls,
    /// No client certificates: anyone who reaches the port reads the API.
    None,
}

/// Routes a caller without a client certificate may reach.
pub fn is_open(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    match (method, path) {
        (&Method::GET, "/healthz" | "/v1/cluster/ca") => true,
        (&Method::POST, "/v1/cluster/join") => true,
        (&Method::POST, p) => p.starts_with("/v1/webhooks/"),
        _ => false,
    }
}

/// Whether an open route is rate limited (the probe is not).
fn is_limited(path: &str) -> bool {
    path != "/healthz"
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The middleware: 401 without a client certificate on a closed route;
/// 429 past the rate limit on an open one.
pub async fn check(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().cloned();
    let path = req.uri().path().to_owned();
    if is_open(req.method(), &path) {
        if let Some(peer) = &peer {
            if is_limited(&path) && !state.limits.allow(peer.addr.ip()) {
                return refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many requests from this address; slow down",
                );
            }
        }
        return next.run(req).await;
    }
    if state.auth == ApiAuth::None || peer.as_ref().is_some_and(|p| p.name.is_some()) {
        return next.run(req).await;
    }
    refuse(
        StatusCode::UNAUTHORIZED,
        "a client certificate of the cluster CA is required (pgcd cert issue --client NAME; then --tls-dir or PGCD_TLS_DIR)",
    )
}

/// A token bucket per source IP: `burst` requests at once, refilled at
/// `per_second`.
#[derive(Debug)]
pub struct RateLimits {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimits {
    /// A limiter.
    pub fn new(burst: u32, per_second: f64) -> Self {
        Self {
            burst: f64::from(burst),
            per_second,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip`, false when none is left.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            // Many sources: forget the full buckets so memory stays bounded.
            let (burst, rate) = (self.burst, self.per_second);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Default for RateLimits {
    /// 30 at once, then 5 a second per source: far above a forge's or a
    /// joining host's needs, far below what takes etcd's quorum away.
    fn default() -> Self {
        Self::new(30, 5.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn only_the_probe_the_ca_the_join_and_webhooks_are_open() {
        assert!(is_open(&Method::GET, "/healthz"));
        assert!(is_open(&Method::GET, "/v1/cluster/ca"));
        assert!(is_open(&Method::POST, "/v1/cluster/join"));
        assert!(is_open(&Method::POST, "/v1/webhooks/github"));
        assert!(!is_open(&Method::GET, "/v1/cluster"));
        assert!(!is_open(&Method::GET, "/v1/webhooks/github"));
        assert!(!is_open(&Method::POST, "/v1/cluster/join-tokens"));
        assert!(!is_open(&Method::GET, "/"));
    }

    #[test]
    fn a_source_past_its_burst_is_refused_and_others_are_not() {
        let l = RateLimits::new(3, 0.001);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| l.allow(a)));
        assert!(!l.allow(a));
        assert!(l.allow(b));
    }
}
