//! How webhooks are sent: one bounded queue per webhook, batching, retries
//! with back-off, order per URL. Sans-IO: the event loop feeds it the hub's
//! events and the transport's outcomes, each with `now` (the loop's clock in
//! milliseconds), and takes requests to send and its next deadline.
//!
//! # The contract
//!
//! - **Inputs.** [`Dispatcher::push`] for every
//!   [`crate::pusher::Output::Webhook`] the hub yields, with the app it names
//!   (looked up at once, before anything else changes the app list);
//!   [`Dispatcher::done`] when the transport reports how a request ended;
//!   [`Dispatcher::reconfigure`] after a reload (SIGHUP);
//!   [`Dispatcher::shutdown`] when the server starts to stop.
//! - **Outputs.** [`Dispatcher::poll_request`] yields `(id, url, request
//!   bytes)` until `None`; the loop hands each to the transport and later
//!   calls `done` with the same id. Call it after every batch of pushes and
//!   outcomes and after [`Dispatcher::handle_timeout`].
//! - **Timers.** [`Dispatcher::poll_timeout`] is the earliest moment
//!   something becomes due (a batch window closing, a retry, a log summary);
//!   [`Dispatcher::handle_timeout`] does what is due (late is fine, early
//!   does nothing); then `poll_request` yields what became sendable.
//! - **Queries.** [`Dispatcher::stats`], [`Dispatcher::queued`] and
//!   [`Dispatcher::in_flight`] for the metrics, [`Dispatcher::settled`] for
//!   shutdown.
//!
//! # The policy
//!
//! Each configured webhook (an app's `webhooks[i]`) has its own state,
//! keyed by the app id, its index in the app's list and its URL, so a
//! reload that keeps a webhook keeps its queue and its request in progress;
//! a webhook that is gone or changed URL loses its queue (counted as
//! dropped, reason `removed`).
//!
//! - **One request at a time per webhook**, so the receiver sees events in
//!   the order the hub produced them, retries included: while a request is
//!   in flight or waiting for its next try, later events wait behind it.
//! - **Batching** ([`Webhook::batching`]): a request takes up to
//!   [`BATCH_MAX_EVENTS`] events and leaves when that many are waiting or
//!   [`BATCH_WINDOW_MS`] after the oldest waiting event was queued. Off: one
//!   event per request, sent as soon as the previous one is done (in the
//!   same turn of the loop when nothing is in flight).
//! - **The request**: `POST` with the body `{"time_ms": ..., "events": [...]}`
//!   ([`super::body`], `time_ms` the Unix time in ms when the request is
//!   built), `X-Pusher-Key` (the app key), `X-Pusher-Signature`
//!   ([`super::signature`] of the body with the app secret) and the
//!   webhook's extra headers. A retry sends the same bytes again (same
//!   `time_ms` and signature): the receiver sees one event once, however
//!   many tries it took.
//! - **Retries**: a non-2xx status or a failure (refused, timeout, TLS, bad
//!   response: the transport's words) is tried again after 1 s, then 2 s,
//!   4 s, ... each wait capped at [`RETRY_MAX_WAIT_MS`], as long as the next
//!   try starts within [`GIVE_UP_AFTER_MS`] (Pusher's 5 minutes) of the
//!   first; then the request's events are dropped, logged and counted
//!   (reason `gave_up`). With the cap at 60 s the tries start at 0, 1, 3, 7,
//!   15, 31, 63, 123, 183 and 243 s (plus the time each failed try took).
//! - **Bounds**: a webhook's queue holds at most [`QUEUE_MAX_EVENTS`] events
//!   and [`QUEUE_MAX_BYTES`] of event text (besides the request in
//!   progress, at most [`BATCH_MAX_EVENTS`] events); a new event that does
//!   not fit is dropped (reason `queue_full`) and the oldest stay, so the
//!   receiver sees a gap and never a reordering. Drops are logged at most
//!   once per [`LOG_EVERY_MS`] per webhook with the count since the last
//!   line, failures at most once per [`LOG_EVERY_MS`] per webhook (the rest
//!   at DEBUG), and every one is counted in [`Stats`].
//! - **Isolation**: nothing is shared between webhooks but the transport,
//!   whose connections are per origin with their own deadlines; a slow or
//!   dead URL holds only its own queue.
//! - **Shutdown**: [`Dispatcher::shutdown`] closes every batch window at
//!   once, so the loop's short grace period (the one it gives clients to
//!   take their close frames) also sends what is waiting;
//!   [`Dispatcher::abandon`] then drops and counts what is left (reason
//!   `shutdown`): events waiting behind a retry are not worth holding the
//!   exit for minutes.
//!
//! Throughput: one request at a time per webhook (the price of order) means
//! a webhook without batching sends at most one event per round trip to
//! its receiver (measured on loopback, debug build: about 2 700 requests a
//! second to a thread-per-connection receiver); past that its queue fills
//! and events are dropped. Batching carries 20 events per round trip
//! (the same setup: 5 000 events a second, all delivered, in 1 250
//! requests).
//!
//! Cost: the work per event is a `wants` test per webhook of the app and a
//! push; per request, one body, one HMAC and one encoding. `poll_timeout`
//! and `poll_request` look at every webhook (the configuration bounds them,
//! a few per app) only when some webhook has work; idle, they return at once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use super::{BATCH_MAX_EVENTS, BATCH_WINDOW_MS, Event, Url, Webhook};
use crate::pusher::App;
use crate::{log_debug, log_error, log_warn};

/// Events waiting per webhook (besides the request in progress).
pub const QUEUE_MAX_EVENTS: usize = 1000;
/// Bytes of event text (channel, data, ids) waiting per webhook.
pub const QUEUE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// The first retry waits this long; each next one twice as long...
pub const RETRY_FIRST_MS: u64 = 1_000;
/// ... but never longer than this.
pub const RETRY_MAX_WAIT_MS: u64 = 60_000;
/// No try starts later than this after the first one (Pusher's rule).
pub const GIVE_UP_AFTER_MS: u64 = 300_000;
/// At most one warning per webhook this often (queue full, failures).
pub const LOG_EVERY_MS: u64 = 10_000;

/// How one request ended, as the transport reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered with this status (2xx: delivered).
    Status(u16),
    /// No usable answer. `reason` is a short label for the metrics
    /// (`refused`, `timeout`, ...), `detail` the words for a log line.
    Failed {
        reason: &'static str,
        detail: String,
    },
}

/// Counters for the metrics (events unless the name says requests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Requests answered with a 2xx status, and the events they carried.
    pub requests_sent: u64,
    pub events_sent: u64,
    /// Tries after the first.
    pub retries: u64,
    /// Failed tries by reason: `http_4xx`, `http_5xx`, `http_other` for a
    /// status, the transport's labels for the rest.
    pub failures: BTreeMap<&'static str, u64>,
    /// Events dropped because the webhook's queue was full,
    pub dropped_queue_full: u64,
    /// after 5 minutes of failed tries,
    pub dropped_gave_up: u64,
    /// because a reload removed (or changed the URL of) the webhook,
    pub dropped_removed: u64,
    /// or because the server stopped with them still waiting.
    pub dropped_shutdown: u64,
}

/// An app's credentials, shared by its webhooks.
#[derive(Debug, PartialEq, Eq)]
struct Creds {
    id: Rc<str>,
    key: String,
    secret: String,
}

/// A request in progress: in flight, or waiting for its next try.
#[derive(Debug)]
struct Attempt {
    request: Vec<u8>,
    events: usize,
    /// When the first try started.
    first_at: u64,
    /// Tries started so far.
    tries: u32,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight(u64),
    RetryAt(u64),
}

/// One configured webhook and its state.
#[derive(Debug)]
struct Hook {
    /// Unique for the life of the dispatcher: names this hook in flights.
    uid: u64,
    app: Rc<Creds>,
    index: usize,
    config: Webhook,
    /// (queued at, event), oldest first.
    queue: VecDeque<(u64, Event)>,
    queued_bytes: usize,
    current: Option<Attempt>,
    /// Drops not yet logged, and when the last drop line was written.
    drops_unlogged: u64,
    drop_logged_at: Option<u64>,
    failure_logged_at: Option<u64>,
}

impl Hook {
    /// When this hook has something to do, if anything: a request to send
    /// (now or when its batch window closes), a retry, a drop summary.
    fn due(&self, flushing: bool) -> Option<u64> {
        let send = match &self.current {
            Some(Attempt {
                state: State::InFlight(_),
                ..
            }) => None,
            Some(Attempt {
                state: State::RetryAt(at),
                ..
            }) => Some(*at),
            None => self.queue.front().map(|&(at, _)| {
                if !self.config.batching || flushing || self.queue.len() >= BATCH_MAX_EVENTS {
                    at
                } else {
                    at + BATCH_WINDOW_MS
                }
            }),
        };
        let log =
            (self.drops_unlogged > 0).then(|| self.drop_logged_at.map_or(0, |t| t + LOG_EVERY_MS));
        match (send, log) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a request may start now.
    fn sendable(&self, now: u64, flushing: bool) -> bool {
        match &self.current {
            Some(a) => matches!(a.state, State::RetryAt(at) if at <= now),
            None => self.queue.front().is_some_and(|&(at, _)| {
                !self.config.batching
                    || flushing
                    || self.queue.len() >= BATCH_MAX_EVENTS
                    || now >= at + BATCH_WINDOW_MS
            }),
        }
    }

    /// Events not yet delivered: queued and in the request in progress.
    fn pending_events(&self) -> usize {
        self.queue.len() + self.current.as_ref().map_or(0, |a| a.events)
    }

    fn log_drops(&mut self, now: u64) {
        if self.drops_unlogged == 0 {
            return;
        }
        log_warn!(
            "webhook {} of app {}: queue full ({} events or {} bytes), {} events dropped",
            for_log(&self.config.url),
            self.app.id,
            QUEUE_MAX_EVENTS,
            QUEUE_MAX_BYTES,
            self.drops_unlogged
        );
        self.drops_unlogged = 0;
        self.drop_logged_at = Some(now);
    }
}

/// A request handed to the transport.
#[derive(Debug, Clone, Copy)]
struct Flight {
    hook: u64,
    /// Where the hook was when the request left (checked against `hook`).
    pos: usize,
    events: usize,
}

/// The app's part of `hooks`.
#[derive(Debug)]
struct AppHooks {
    creds: Rc<Creds>,
    first: usize,
    count: usize,
}

/// Webhook delivery for every app: see the module docs.
#[derive(Debug)]
pub struct Dispatcher {
    /// Every webhook of every app, each app's together in config order.
    hooks: Vec<Hook>,
    apps: HashMap<Rc<str>, AppHooks>,
    /// Requests handed to the transport, by request id. A flight whose hook
    /// a reload removed stays here until its outcome arrives.
    flights: HashMap<u64, Flight>,
    next_request: u64,
    next_uid: u64,
    /// Unix time in ms at the loop's `now == 0`.
    unix_at_zero: u64,
    /// Events not yet delivered (queued, in progress, orphaned in flight).
    pending: usize,
    /// Shutting down: every batch window is closed.
    flushing: bool,
    stats: Stats,
}

impl Dispatcher {
    /// A dispatcher with no webhooks; `unix_at_zero` is the Unix time in
    /// milliseconds when the loop's clock read 0 (for `time_ms`).
    pub fn new(unix_at_zero: u64) -> Dispatcher {
        Dispatcher {
            hooks: Vec::new(),
            apps: HashMap::new(),
            flights: HashMap::new(),
            next_request: 1,
            next_uid: 1,
            unix_at_zero,
            pending: 0,
            flushing: false,
            stats: Stats::default(),
        }
    }

    // ---- inputs ---------------------------------------------------------------

    /// An event of `app` for its webhooks: every webhook that wants it
    /// queues it (or drops and counts it when its queue is full).
    pub fn push(&mut self, now: u64, app: &App, event: Event) {
        if app.webhooks.is_empty() && !self.apps.contains_key(app.id.as_str()) {
            return;
        }
        let range = match self.apps.get(app.id.as_str()) {
            Some(a) if self.current(a, app) => a.first..a.first + a.count,
            _ => {
                // First sight of the app, or changed without a reconfigure.
                self.sync_app(app);
                match self.apps.get(app.id.as_str()) {
                    Some(a) => a.first..a.first + a.count,
                    None => return,
                }
            }
        };
        for pos in range {
            if self.hooks[pos].config.wants(event.kind, &event.channel) {
                self.enqueue(now, pos, event.clone());
            }
        }
    }

    /// The transport finished request `id`. An unknown id (already
    /// reported) is ignored.
    pub fn done(&mut self, now: u64, id: u64, outcome: Outcome) {
        let Some(flight) = self.flights.remove(&id) else {
            return;
        };
        let ok = matches!(outcome, Outcome::Status(s) if (200..300).contains(&s));
        if let Outcome::Failed { reason, .. } = &outcome {
            *self.stats.failures.entry(reason).or_default() += 1;
        } else if let Outcome::Status(s) = outcome
            && !ok
        {
            *self.stats.failures.entry(status_reason(s)).or_default() += 1;
        }
        let Some(pos) = self.find(flight) else {
            // Its webhook was removed by a reload while it was in flight.
            self.pending -= flight.events;
            if ok {
                self.stats.requests_sent += 1;
                self.stats.events_sent += flight.events as u64;
            } else {
                self.stats.dropped_removed += flight.events as u64;
            }
            return;
        };
        let hook = &mut self.hooks[pos];
        let Some(attempt) = hook.current.as_mut() else {
            return;
        };
        if attempt.state != State::InFlight(id) {
            return;
        }
        if ok {
            self.stats.requests_sent += 1;
            self.stats.events_sent += attempt.events as u64;
            self.pending -= attempt.events;
            hook.current = None;
            return;
        }
        let wait = backoff(attempt.tries);
        let why = match &outcome {
            Outcome::Status(s) => format!("answered {s}"),
            Outcome::Failed { detail, .. } => detail.clone(),
        };
        if now + wait > attempt.first_at + GIVE_UP_AFTER_MS {
            log_error!(
                "webhook {} of app {}: gave up after {} tries in {} s ({why}); {} events dropped",
                for_log(&hook.config.url),
                hook.app.id,
                attempt.tries,
                (now - attempt.first_at) / 1000,
                attempt.events
            );
            self.stats.dropped_gave_up += attempt.events as u64;
            self.pending -= attempt.events;
            hook.current = None;
            return;
        }
        attempt.state = State::RetryAt(now + wait);
        if hook
            .failure_logged_at
            .is_none_or(|t| now >= t + LOG_EVERY_MS)
        {
            hook.failure_logged_at = Some(now);
            log_warn!(
                "webhook {} of app {}: {why}; retrying in {} ms",
                for_log(&hook.config.url),
                hook.app.id,
                wait
            );
        } else {
            log_debug!(
                "webhook {} of app {}: {why}; retrying in {} ms",
                for_log(&hook.config.url),
                hook.app.id,
                wait
            );
        }
    }

    /// The app list changed (SIGHUP): webhooks that remain (same app id,
    /// index and URL) keep their queue and take their new settings; the
    /// queues of the others are dropped and counted.
    pub fn reconfigure(&mut self, apps: &[App]) {
        let wanted = apps
            .iter()
            .filter(|a| !a.webhooks.is_empty())
            .map(|a| {
                (
                    a.id.as_str(),
                    a.key.as_str(),
                    a.secret.as_str(),
                    &a.webhooks[..],
                )
            })
            .collect::<Vec<_>>();
        self.rebuild(&wanted);
    }

    /// The server is stopping: close every batch window now, so what waits
    /// goes out during the loop's grace period.
    pub fn shutdown(&mut self) {
        self.flushing = true;
    }

    /// Drop and count everything not yet delivered (the loop is about to
    /// exit). Returns the number of events dropped.
    pub fn abandon(&mut self) -> u64 {
        let n = self.pending as u64;
        if n > 0 {
            log_warn!("webhooks: {n} events not delivered at shutdown");
        }
        self.stats.dropped_shutdown += n;
        for h in &mut self.hooks {
            h.queue.clear();
            h.queued_bytes = 0;
            h.current = None;
        }
        self.flights.clear();
        self.pending = 0;
        n
    }

    // ---- outputs --------------------------------------------------------------

    /// The next request to send: (request id, URL, the encoded request).
    /// Call until `None`; report each one's end with [`Dispatcher::done`].
    pub fn poll_request(&mut self, now: u64) -> Option<(u64, Url, Vec<u8>)> {
        if self.pending == 0 {
            return None;
        }
        let flushing = self.flushing;
        let pos = self.hooks.iter().position(|h| h.sendable(now, flushing))?;
        let id = self.next_request;
        self.next_request += 1;
        let unix = self.unix_at_zero + now;
        let hook = &mut self.hooks[pos];
        let request = match hook.current.as_mut() {
            Some(attempt) => {
                attempt.tries += 1;
                attempt.state = State::InFlight(id);
                self.stats.retries += 1;
                attempt.request.clone()
            }
            None => {
                let n = if hook.config.batching {
                    hook.queue.len().min(BATCH_MAX_EVENTS)
                } else {
                    1
                };
                let events: Vec<Event> = hook.queue.drain(..n).map(|(_, e)| e).collect();
                hook.queued_bytes -= events.iter().map(size).sum::<usize>();
                let request = build(hook, unix, &events);
                hook.current = Some(Attempt {
                    request: request.clone(),
                    events: events.len(),
                    first_at: now,
                    tries: 1,
                    state: State::InFlight(id),
                });
                request
            }
        };
        let events = hook.current.as_ref().map_or(0, |a| a.events);
        self.flights.insert(
            id,
            Flight {
                hook: hook.uid,
                pos,
                events,
            },
        );
        Some((id, hook.config.url.clone(), request))
    }

    // ---- timers ---------------------------------------------------------------

    /// The earliest moment something becomes due, if anything waits.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.pending == 0 && self.hooks.iter().all(|h| h.drops_unlogged == 0) {
            return None;
        }
        let flushing = self.flushing;
        self.hooks.iter().filter_map(|h| h.due(flushing)).min()
    }

    /// Do what is due: the drop summaries. (Requests that became due are
    /// taken with [`Dispatcher::poll_request`].)
    pub fn handle_timeout(&mut self, now: u64) {
        for h in &mut self.hooks {
            if h.drops_unlogged > 0 && h.drop_logged_at.is_none_or(|t| now >= t + LOG_EVERY_MS) {
                h.log_drops(now);
            }
        }
    }

    // ---- queries --------------------------------------------------------------

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Events not yet delivered: waiting in queues, in requests in flight
    /// or waiting for a retry.
    pub fn queued(&self) -> usize {
        self.pending
    }

    /// Requests handed to the transport and not yet done.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// Nothing is in flight and nothing could be sent now (what waits, waits
    /// for a retry): a stopping server need not wait any longer.
    pub fn settled(&self) -> bool {
        self.flights.is_empty()
            && self
                .hooks
                .iter()
                .all(|h| h.current.is_some() || h.queue.is_empty())
    }

    /// The configured webhooks, for tests and logs.
    pub fn webhooks(&self) -> usize {
        self.hooks.len()
    }

    // ---- internals ------------------------------------------------------------

    /// Whether the dispatcher's view of `app` matches the app's config.
    fn current(&self, a: &AppHooks, app: &App) -> bool {
        a.count == app.webhooks.len()
            && a.creds.key == app.key
            && a.creds.secret == app.secret
            && self.hooks[a.first..a.first + a.count]
                .iter()
                .zip(&app.webhooks)
                .all(|(h, w)| h.config == *w)
    }

    /// Take `app`'s current settings, keeping every other app's.
    fn sync_app(&mut self, app: &App) {
        let mut ids: Vec<(usize, Rc<Creds>)> = self
            .apps
            .values()
            .filter(|a| *a.creds.id != *app.id)
            .map(|a| (a.first, a.creds.clone()))
            .collect();
        ids.sort_by_key(|(first, _)| *first);
        let others: Vec<(Rc<Creds>, Vec<Webhook>)> = ids
            .into_iter()
            .map(|(_, creds)| {
                let a = &self.apps[&creds.id];
                let hooks = self.hooks[a.first..a.first + a.count]
                    .iter()
                    .map(|h| h.config.clone())
                    .collect();
                (creds, hooks)
            })
            .collect();
        let mut wanted: Vec<(&str, &str, &str, &[Webhook])> = others
            .iter()
            .map(|(c, w)| (&*c.id, c.key.as_str(), c.secret.as_str(), &w[..]))
            .collect();
        if !app.webhooks.is_empty() {
            wanted.push((&app.id, &app.key, &app.secret, &app.webhooks));
        }
        self.rebuild(&wanted);
    }

    /// Make the webhooks exactly `wanted` (app id, key, secret, webhooks),
    /// keeping the state of each one whose (app id, index, URL) remains.
    fn rebuild(&mut self, wanted: &[(&str, &str, &str, &[Webhook])]) {
        let mut old: HashMap<(Rc<str>, usize), Hook> = std::mem::take(&mut self.hooks)
            .into_iter()
            .map(|h| ((h.app.id.clone(), h.index), h))
            .collect();
        self.apps.clear();
        for &(id, key, secret, webhooks) in wanted {
            let creds = Rc::new(Creds {
                id: id.into(),
                key: key.to_string(),
                secret: secret.to_string(),
            });
            let first = self.hooks.len();
            for (index, config) in webhooks.iter().enumerate() {
                let key = (creds.id.clone(), index);
                let same_url = old.get(&key).is_some_and(|h| h.config.url == config.url);
                let kept = if same_url { old.remove(&key) } else { None };
                let hook = match kept {
                    Some(mut h) => {
                        h.app = creds.clone();
                        h.config = config.clone();
                        h
                    }
                    None => {
                        self.next_uid += 1;
                        Hook {
                            uid: self.next_uid,
                            app: creds.clone(),
                            index,
                            config: config.clone(),
                            queue: VecDeque::new(),
                            queued_bytes: 0,
                            current: None,
                            drops_unlogged: 0,
                            drop_logged_at: None,
                            failure_logged_at: None,
                        }
                    }
                };
                self.hooks.push(hook);
            }
            let count = self.hooks.len() - first;
            self.apps.insert(
                creds.id.clone(),
                AppHooks {
                    creds,
                    first,
                    count,
                },
            );
        }
        // What is left was removed (or its URL changed). A request in
        // flight stays in `flights` and is accounted for when it ends.
        for h in old.into_values() {
            let in_flight = match &h.current {
                Some(Attempt {
                    state: State::InFlight(_),
                    events,
                    ..
                }) => *events,
                _ => 0,
            };
            let dropped = h.pending_events() - in_flight;
            if dropped > 0 {
                log_warn!(
                    "webhook {} of app {} removed by a reload: {dropped} events dropped",
                    for_log(&h.config.url),
                    h.app.id
                );
            }
            self.stats.dropped_removed += dropped as u64;
            self.pending -= dropped;
        }
    }

    fn enqueue(&mut self, now: u64, pos: usize, event: Event) {
        let hook = &mut self.hooks[pos];
        let bytes = size(&event);
        if hook.queue.len() >= QUEUE_MAX_EVENTS || hook.queued_bytes + bytes > QUEUE_MAX_BYTES {
            self.stats.dropped_queue_full += 1;
            hook.drops_unlogged += 1;
            if hook.drop_logged_at.is_none_or(|t| now >= t + LOG_EVERY_MS) {
                hook.log_drops(now);
            }
            return;
        }
        hook.queue.push_back((now, event));
        hook.queued_bytes += bytes;
        self.pending += 1;
    }

    /// Where the hook of a flight is now, if it still exists.
    fn find(&self, f: Flight) -> Option<usize> {
        if self.hooks.get(f.pos).is_some_and(|h| h.uid == f.hook) {
            return Some(f.pos);
        }
        self.hooks.iter().position(|h| h.uid == f.hook)
    }
}

/// One webhook's undelivered events as plain data, for `revurb upgrade`:
/// [`Dispatcher::export`] in the old image, [`Dispatcher::import`] in the
/// new one. The webhook is named as a reload names it (app id, index in
/// the app's list, URL). The request in progress travels as the bytes it
/// was (or is being) sent as, so a retry after the switch is the same
/// request; one in flight at the switch may have reached the receiver, and
/// is sent again (a retry, as after a timeout).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HookExport {
    pub app: String,
    pub index: usize,
    pub url: String,
    /// (queued at, event), oldest first.
    pub queue: Vec<(u64, EventExport)>,
    pub current: Option<AttemptExport>,
}

/// An [`Event`] as plain data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventExport {
    pub kind: String,
    pub channel: String,
    pub user_id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub socket_id: Option<String>,
    pub subscription_count: Option<u64>,
}

/// The request in progress: its bytes (hex), how many events it carries,
/// when its first try started, how many tries started, and when the next
/// may start.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttemptExport {
    pub request: String,
    pub events: usize,
    pub first_at: u64,
    pub tries: u32,
    pub next_at: u64,
}

impl EventExport {
    fn of(e: &Event) -> EventExport {
        let s = |v: &Option<Rc<str>>| v.as_deref().map(str::to_string);
        EventExport {
            kind: e.kind.name().to_string(),
            channel: e.channel.to_string(),
            user_id: s(&e.user_id),
            event: s(&e.event),
            data: s(&e.data),
            socket_id: s(&e.socket_id),
            subscription_count: e.subscription_count,
        }
    }

    fn event(&self) -> Option<Event> {
        let r = |v: &Option<String>| v.as_deref().map(Rc::from);
        Some(Event {
            kind: super::Kind::parse(&self.kind)?,
            channel: self.channel.as_str().into(),
            user_id: r(&self.user_id),
            event: r(&self.event),
            data: r(&self.data),
            socket_id: r(&self.socket_id),
            subscription_count: self.subscription_count,
        })
    }
}

impl Dispatcher {
    /// Every webhook's undelivered events (queued and in progress), for the
    /// hand-over; webhooks with none are left out.
    pub fn export(&self, now: u64) -> Vec<HookExport> {
        self.hooks
            .iter()
            .filter(|h| h.pending_events() > 0)
            .map(|h| HookExport {
                app: h.app.id.to_string(),
                index: h.index,
                url: h.config.url.to_string(),
                queue: h
                    .queue
                    .iter()
                    .map(|(at, e)| (*at, EventExport::of(e)))
                    .collect(),
                current: h.current.as_ref().map(|a| AttemptExport {
                    request: hex::encode(&a.request),
                    events: a.events,
                    first_at: a.first_at,
                    tries: a.tries,
                    next_at: match a.state {
                        State::InFlight(_) => now,
                        State::RetryAt(at) => at,
                    },
                }),
            })
            .collect()
    }

    /// Take over what the old image had not delivered, after the webhooks
    /// are configured ([`Dispatcher::reconfigure`]). A webhook the new
    /// configuration does not have (same app id, index and URL) loses its
    /// events, logged and counted as `removed`; so does anything malformed
    /// (the file is untrusted) and anything over the queue bounds. Returns
    /// the events taken over.
    pub fn import(&mut self, now: u64, hooks: Vec<HookExport>) -> u64 {
        let mut taken = 0u64;
        for x in hooks {
            let offered = x.queue.len() + x.current.as_ref().map_or(0, |a| a.events);
            let pos = self.hooks.iter().position(|h| {
                *h.app.id == *x.app && h.index == x.index && h.config.url.to_string() == x.url
            });
            let Some(pos) = pos.filter(|&p| self.hooks[p].pending_events() == 0) else {
                log_warn!(
                    "upgrade: webhook {} of app {} is not in the configuration: {offered} events dropped",
                    Url::parse(&x.url).map_or_else(|_| "(malformed)".to_string(), |u| for_log(&u)),
                    x.app
                );
                self.stats.dropped_removed += offered as u64;
                continue;
            };
            let mut kept = 0;
            if let Some(a) = x.current
                && let Ok(request) = hex::decode(&a.request)
                && (1..=BATCH_MAX_EVENTS).contains(&a.events)
            {
                self.hooks[pos].current = Some(Attempt {
                    request,
                    events: a.events,
                    first_at: a.first_at.min(now),
                    tries: a.tries.max(1),
                    state: State::RetryAt(a.next_at.min(now + RETRY_MAX_WAIT_MS)),
                });
                self.pending += a.events;
                kept += a.events;
            }
            for (at, e) in x.queue {
                let Some(event) = e.event() else { continue };
                let before = self.pending;
                self.enqueue(at.min(now), pos, event);
                kept += self.pending - before;
            }
            self.stats.dropped_removed += (offered - kept) as u64;
            taken += kept as u64;
        }
        taken
    }
}

/// The wait before the next try, after `tries` tries: 1 s, 2 s, 4 s, ...
/// capped at [`RETRY_MAX_WAIT_MS`].
pub fn backoff(tries: u32) -> u64 {
    let doublings = tries.saturating_sub(1).min(16);
    (RETRY_FIRST_MS << doublings).min(RETRY_MAX_WAIT_MS)
}

fn status_reason(status: u16) -> &'static str {
    match status / 100 {
        4 => "http_4xx",
        5 => "http_5xx",
        _ => "http_other",
    }
}

/// What an event weighs in the queue bound: its text and a little more.
fn size(e: &Event) -> usize {
    let text = |v: &Option<Rc<str>>| v.as_ref().map_or(0, |s| s.len());
    64 + e.channel.len() + text(&e.user_id) + text(&e.event) + text(&e.data) + text(&e.socket_id)
}

/// The URL for a log line: query values masked, since a token may be there.
fn for_log(url: &Url) -> String {
    url.redacted()
}

/// The request for `events`: body, signature and headers, encoded.
fn build(hook: &Hook, unix_ms: u64, events: &[Event]) -> Vec<u8> {
    let body = super::body(unix_ms, events);
    let mut headers = Vec::with_capacity(2 + hook.config.headers.len());
    headers.push(("X-Pusher-Key".to_string(), hook.app.key.clone()));
    headers.push((
        "X-Pusher-Signature".to_string(),
        super::signature(&hook.app.secret, &body),
    ));
    headers.extend(hook.config.headers.iter().cloned());
    super::http::encode_request(&hook.config.url, &headers, &body)
}

#[cfg(test)]
mod tests;
