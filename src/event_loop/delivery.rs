//! The loop's side of webhooks: the sans-IO dispatcher
//! ([`crate::webhook::dispatch`]: queues, batching, retries) joined to the
//! transport (`webhook`: sockets, TLS, name resolution). The loop calls
//! these few methods and nothing else of either.
//!
//! - `push`: the hub yielded `Output::Webhook`; the app is looked up at once.
//! - `ready`: a readiness event on one of the transport's tokens.
//! - `turn`, once per turn of the loop (and after a batch of pushes): fire
//!   the transport's and dispatcher's deadlines, hand the transport's
//!   outcomes to the dispatcher and the dispatcher's requests to the
//!   transport, until neither has anything more (a request can fail at once,
//!   which schedules a retry, never a new request in the same instant, so
//!   this ends).
//! - `poll_timeout`: the earlier of the two deadlines.
//! - `reconfigure` on SIGHUP; `shutdown`, `settled` and `abandon` when
//!   stopping (see `Server::turn`): the batch windows close at once, what can
//!   go out goes out within the loop's 2 s of grace, and what is still
//!   waiting then (behind a retry, or unanswered) is dropped, counted and
//!   logged.
//!
//! With no webhook configured, every call returns at once: the dispatcher
//! has nothing pending and the transport no connection. The CA roots for
//! `https://` are read only when some webhook is `https://` (at start and on
//! reload), so a server without one never reads the system bundle.

use mio::{Registry, Token};

use super::webhook::{Limits, Transport};
use crate::metrics;
use crate::pusher::App;
use crate::webhook::Event;
use crate::webhook::dispatch::{Dispatcher, HookExport};

pub(super) struct Delivery {
    dispatcher: Dispatcher,
    transport: Transport,
}

impl Delivery {
    /// `unix_at_zero`: the Unix time in ms when the loop's clock read 0.
    pub(super) fn new(unix_at_zero: u64, apps: &[App]) -> Delivery {
        let mut dispatcher = Dispatcher::new(unix_at_zero);
        dispatcher.reconfigure(apps);
        Delivery {
            dispatcher,
            transport: Transport::new(tls_for(apps), Limits::default()),
        }
    }

    pub(super) fn push(&mut self, now: u64, app: &App, event: Event) {
        self.dispatcher.push(now, app, event);
    }

    pub(super) fn owns(token: Token) -> bool {
        Transport::owns(token)
    }

    pub(super) fn ready(&mut self, now: u64, registry: &Registry, token: Token) {
        self.transport.ready(now, registry, token);
    }

    /// Deadlines, outcomes and new requests, until nothing moves.
    pub(super) fn turn(&mut self, now: u64, registry: &Registry) {
        if self.transport.poll_timeout().is_some_and(|t| t <= now) {
            self.transport.handle_timeout(now, registry);
        }
        if self.dispatcher.poll_timeout().is_some_and(|t| t <= now) {
            self.dispatcher.handle_timeout(now);
        }
        loop {
            while let Some((id, outcome)) = self.transport.poll_done() {
                self.dispatcher.done(now, id, outcome.into());
            }
            let mut sent = false;
            while let Some((id, url, request)) = self.dispatcher.poll_request(now) {
                self.transport.send(now, registry, id, &url, request);
                sent = true;
            }
            if !sent {
                return;
            }
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<u64> {
        match (
            self.dispatcher.poll_timeout(),
            self.transport.poll_timeout(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// SIGHUP: the new apps' webhooks, and the CA roots read again.
    pub(super) fn reconfigure(&mut self, apps: &[App]) {
        self.dispatcher.reconfigure(apps);
        self.transport.set_tls(tls_for(apps));
    }

    pub(super) fn shutdown(&mut self) {
        self.dispatcher.shutdown();
    }

    /// Nothing in flight and nothing that could be sent now.
    pub(super) fn settled(&self) -> bool {
        self.dispatcher.settled() && self.transport.pending() == 0
    }

    /// `revurb upgrade`: what is not yet delivered, for the new image.
    pub(super) fn export(&self, now: u64) -> Vec<HookExport> {
        self.dispatcher.export(now)
    }

    /// `revurb upgrade`, the new image: take it over (see
    /// [`Dispatcher::import`]).
    pub(super) fn import(&mut self, now: u64, hooks: Vec<HookExport>) -> u64 {
        self.dispatcher.import(now, hooks)
    }

    pub(super) fn abandon(&mut self) -> u64 {
        self.dispatcher.abandon()
    }

    /// The figures for `/metrics`.
    pub(super) fn figures(&self) -> metrics::Webhooks {
        metrics::Webhooks {
            stats: self.dispatcher.stats().clone(),
            queued: self.dispatcher.queued() as u64,
            in_flight: self.dispatcher.in_flight() as u64,
            connections: self.transport.stats().connections_open,
        }
    }
}

/// The client TLS configuration when some webhook is `https://`; a failure
/// (no CA roots) is logged once here and fails each https request with the
/// same words.
fn tls_for(apps: &[App]) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    if !apps.iter().flat_map(|a| &a.webhooks).any(|w| w.url.tls) {
        return Err("no https:// webhook was configured when the CA roots were read".into());
    }
    let tls = crate::tls::webhook_client_config();
    if let Err(e) = &tls {
        crate::log_error!("{e}; https:// webhooks will fail");
    }
    tls
}
