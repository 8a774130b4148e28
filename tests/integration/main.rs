//! Integration tests: each test starts the real `revurb` binary on port 0
//! and talks to it over TCP (HTTP API, WebSocket, signals, CLI).
//!
//! Names carry the Reverb conformance test they map to where there is one
//! (reference section 9): `ref_server_N` is ServerTest.php, `ref_events_N`
//! EventsControllerTest.php, `ref_health_N` HealthCheckControllerTest.php and
//! so on.

mod aarch64;
mod api;
mod cluster;
mod cluster_redis;
mod cluster_support;
mod drain;
mod http;
mod lifecycle;
mod limits;
mod online;
mod ops;
mod support;
mod upgrade;
mod webhooks;
mod websocket;
