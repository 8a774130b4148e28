//! revurb: a Pusher-protocol WebSocket server (a port of Laravel Reverb).
//!
//! The crate is a library plus the `revurb` binary. One thread runs one `mio`
//! event loop (`event_loop`); everything else is sans-IO code that takes bytes,
//! inputs and the current time and gives back bytes and actions.

#![deny(unsafe_code)]

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod conn;
pub mod event_loop;
pub mod http;
pub mod log;
pub mod metrics;
pub mod pusher;
pub mod redis;
pub mod restart;
pub mod router;
pub mod scaling;
pub mod sys;
pub mod tls;
pub mod websocket;
