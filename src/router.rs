//! Routing, sans-IO: one parsed HTTP request in, one [`Action`] out.
//!
//! The event loop parses a request off a connection in the HTTP phase
//! (`event_loop::Server::process`) and calls [`route`] with the kind of
//! listener that accepted the connection (kept in `conn::Phase::Http`),
//! the server's path prefix and the
//! state an answer may need (the hub and the metrics for the API and for
//! `/metrics`, the two clocks). It then carries out the action and nothing
//! else: queue the bytes and close or wait for the next request
//! ([`Action::Respond`]), or queue the `101` handshake and give the
//! connection to the hub ([`Action::Upgrade`]).
//!
//! The routes:
//! - on the metrics listener ([`Listener::Metrics`]): `GET /metrics` only;
//!   another method on it is a 405, any other path a 404;
//! - on the main listener, every path must start with the prefix
//!   (`--path`), else 404; after it:
//!   - `/up`: the health check, `GET` and `HEAD` (the GET's headers, no
//!     body), any other method a 405; while the server drains to stop it
//!     answers 503, so a load balancer sends nobody new here;
//!   - `/app/{key}`: the WebSocket upgrade; an empty key or one with a `/`
//!     is a 404, a request that is not a valid upgrade gets the handshake's
//!     error response, and the key and the `Origin` go to the hub, which
//!     decides whether the app exists and the origin is allowed; while the
//!     server drains to stop, a 503 instead (the client, or the balancer,
//!     tries another node or again later);
//!   - everything else is the Pusher HTTP API ([`api::handle`]), counted in
//!     the metrics by endpoint and status.
//!
//! Keep-alive: a response keeps the connection open when the request asks
//! for it (HTTP/1.1 by default) and the server is not shutting down.
//! Requests that never reach [`route`] (unparsable or too slow) are answered
//! by [`refuse`] and [`timed_out`], which always close.
//!
//! What it does not do: read sockets or the clock, or decide anything about
//! a connection once it is a WebSocket (that is the hub's).

use crate::api;
use crate::http::{HttpError, Request, Response};
use crate::log_debug;
use crate::metrics::Metrics;
use crate::pusher::Hub;
use crate::websocket;

/// The body of the health check, shared by `GET` and `HEAD`.
const UP_BODY: &str = r#"{"health":"OK"}"#;
/// The body of the health check while the server drains to stop (503).
const DRAINING_BODY: &str = r#"{"health":"draining"}"#;
/// The answer to an upgrade while the server drains to stop (503).
pub const REFUSED_WHILE_DRAINING: &str = "Server is restarting; connect again shortly.";

/// Which listener accepted a connection; it decides which routes exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public listener: WebSockets, the API, `/up`.
    Main,
    /// The separate metrics listener: only `GET /metrics`.
    Metrics,
}

/// What the loop does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'r> {
    /// Queue `bytes` (a whole HTTP response); then close the connection, or
    /// keep it for the next request with a fresh request deadline.
    Respond { bytes: Vec<u8>, close: bool },
    /// Queue `handshake` (the `101` answer), switch the connection to
    /// WebSocket framing and open it in the hub for the app `key`.
    Upgrade {
        handshake: Vec<u8>,
        key: &'r str,
        origin: Option<&'r str>,
    },
}

impl Action<'_> {
    fn respond(resp: &Response, close: bool) -> Action<'static> {
        Action::Respond {
            bytes: resp.to_bytes(close),
            close,
        }
    }
}

/// What routing reads and changes besides the request: plain data and
/// references, no sockets.
pub struct Ctx<'a> {
    /// The server's path prefix (`--path`), `""` for none.
    pub prefix: &'a str,
    /// The server is draining to stop (or stopping): `/up` and upgrades
    /// get 503, and every answer closes its connection.
    pub draining: bool,
    pub hub: &'a mut Hub,
    pub metrics: &'a mut Metrics,
    /// The loop's clock (ms), the hub's time.
    pub now: u64,
    /// The wall clock (Unix seconds), for the API's `auth_timestamp`.
    pub unix: i64,
}

/// Decide what to do with one complete request.
pub fn route<'r>(listener: Listener, req: &'r Request, ctx: Ctx<'_>) -> Action<'r> {
    log_debug!("HTTP {} {}", req.method, req.path);
    let close = !req.keep_alive() || ctx.draining;
    if listener == Listener::Metrics {
        return Action::respond(&metrics(req, ctx.metrics, ctx.hub), close);
    }
    let path = match req.path.strip_prefix(ctx.prefix) {
        Some(rest) if rest.starts_with('/') => rest,
        _ => return Action::respond(&Response::text(404, "Not found."), close),
    };
    if path == "/up" {
        return up(req, close, ctx.draining);
    }
    if let Some(key) = path.strip_prefix("/app/") {
        if key.is_empty() || key.contains('/') {
            return Action::respond(&Response::text(404, "Not found."), close);
        }
        if ctx.draining {
            return Action::respond(&Response::text(503, REFUSED_WHILE_DRAINING), close);
        }
        return match websocket::handshake(req) {
            Err(resp) => Action::respond(&resp, close),
            Ok(handshake) => Action::Upgrade {
                handshake,
                key,
                origin: req.header("origin"),
            },
        };
    }
    let resp = api_call(req, path, ctx);
    Action::respond(&resp, close)
}

/// The answer to a request the HTTP parser refused; the stream cannot be
/// trusted after it, so the connection closes.
pub fn refuse(e: &HttpError) -> Action<'static> {
    log_debug!("bad HTTP request: {e}");
    Action::respond(&Response::text(e.status(), e.message()), true)
}

/// The answer to a request that did not arrive in time (`request_timeout`).
pub fn timed_out() -> Action<'static> {
    log_debug!("HTTP request timed out");
    Action::respond(&Response::text(408, "Request timeout."), true)
}

/// The metrics listener's one route.
fn metrics(req: &Request, metrics: &Metrics, hub: &Hub) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/metrics") => {
            let mut r = Response::new(200)
                .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
            r.body = metrics.render(hub).into_bytes();
            r
        }
        (_, "/metrics") => Response::text(405, "Method not allowed.").header("Allow", "GET"),
        _ => Response::text(404, "Not found. Metrics are at /metrics."),
    }
}

/// The health check: 200, or 503 while draining to stop.
fn up(req: &Request, close: bool, draining: bool) -> Action<'static> {
    let (status, body) = if draining {
        (503, DRAINING_BODY)
    } else {
        (200, UP_BODY)
    };
    match req.method.as_str() {
        "GET" => Action::respond(&Response::json(status, body), close),
        "HEAD" => {
            // the headers of the GET, without the body (RFC 9110 9.3.2)
            let mut bytes = Response::json(status, body).to_bytes(close);
            bytes.truncate(bytes.len() - body.len());
            Action::Respond { bytes, close }
        }
        _ => Action::respond(
            &Response::text(405, "Method not allowed.").header("Allow", "GET, HEAD"),
            close,
        ),
    }
}

/// An API call: dispatched by `api`, counted by endpoint and status.
fn api_call(req: &Request, path: &str, ctx: Ctx<'_>) -> Response {
    let (endpoint, resp) = api::handle(req, path, ctx.hub, ctx.now, ctx.unix);
    let label = endpoint.map_or("unknown", api::Endpoint::label);
    ctx.metrics.http(label, resp.status);
    if resp.status >= 400 {
        log_debug!(
            "API {} {} -> {} {}",
            req.method,
            label,
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
    }
    resp
}

#[cfg(test)]
mod tests;
