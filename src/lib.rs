//! revurb: a Pusher-protocol WebSocket server, a port of Laravel Reverb.
//!
//! This page is the map for whoever changes the code. Operators read the man
//! pages instead (`man/revurb.1`, `revurb.json.5`, `revurb-protocol.7` and
//! `revurb-scaling.7` in the source tree): every flag, setting, default, error
//! code and log line has its one home there.
//!
//! The crate is a library and the `revurb` binary (`src/main.rs`, which parses
//! the command line, loads the [`config`] and runs a command).
//!
//! # I/O in one place
//!
//! revurb does not scatter I/O through its protocol code. One thread runs one
//! `mio` poll loop, [`event_loop`], which owns every socket (the listeners, the
//! client connections, the two Redis links, the webhook client's
//! connections), the signals and the clock. (A second thread, started only
//! for a webhook URL with a host name, does nothing but `getaddrinfo`, which
//! would block the loop.) Everything else is sans-IO: it takes bytes, calls and the current time
//! (milliseconds, always a parameter) and gives back bytes, decisions, outputs
//! and its next deadline. A test drives any of it without a socket, and an
//! hour of pings runs in microseconds.
//!
//! ```text
//!           bytes in                                requests and messages
//! client ──► event_loop ──► conn ──► http::parse ──► router::route ──► api::handle ───┐
//! socket      (mio)        (TLS)        │                   └─ Upgrade ─► Hub::open ──┤
//!                                       └─► websocket::Decoder ──► Hub::message ──────┤
//!                                                                                     ▼
//! client ◄── event_loop ◄── write queue ◄── Send, Close ◄── Hub::poll_output ◄── pusher::Hub
//! socket    flush (writev)  (shared frames)                      │                  ▲
//!                                              Publish, Backlog  │      Hub::remote │
//!                                                                ▼                  │
//! Redis ◄──► event_loop::redis_link ◄──► redis::client ◄── scaling::Policy          │
//!              (sockets, TLS)           (RESP, sans-IO) ──── what other nodes sent ─┘
//! ```
//!
//! Bytes come in on the left. The loop hands them to the parsers, the parsers
//! hand whole requests and messages to the decisions ([`router`], [`api`]) and
//! to the core ([`pusher::Hub`]), and the core never writes anything: it
//! queues outputs, which the loop takes from its one door,
//! [`pusher::Hub::poll_output`], and carries out. Time flows the same way:
//! every part states its next deadline ([`pusher::Hub::poll_timeout`], the
//! Redis clients', the loop's own), the loop sleeps until the earliest one
//! and then calls the part that is due ([`pusher::Hub::handle_timeout`]), so
//! a spurious wake-up is harmless.
//!
//! # The parts
//!
//! | Layer | Module | Does |
//! |---|---|---|
//! | I/O | [`event_loop`] | the only `mio` user: accept, read, write, signals, timers, the Redis sockets; carries out what the others decide |
//! | I/O | [`sys`] | the libc calls (`getrlimit`, `setrlimit`, `kill`, `ioctl`, and for `revurb upgrade` `fcntl`, `getsockopt` and adopting descriptors): the crate's only `unsafe` |
//! | connection | [`conn`] | one socket's phase (HTTP, WebSocket, closing), TLS session, unread tail and bounded write queue |
//! | connection | [`tls`] | rustls configuration: PEM files, Herd and Valet certificates, the `rediss://` client |
//! | connection | [`tls_record`] | the TLS 1.3 record layer an idle connection keeps once rustls hands over its traffic keys (about 1.1 KB instead of about 7 KB) |
//! | parsing | [`http`], [`websocket`] | incremental HTTP/1.1 requests and responses; the upgrade handshake and an incremental frame decoder and encoder |
//! | decisions | [`router`] | one request in, one [`router::Action`] out: respond, or upgrade |
//! | decisions | [`api`], [`auth`] | the signed Pusher HTTP API; the HMAC signatures of the API, channels and users |
//! | core | [`pusher`] | the `Hub`: apps, connections, channels, presence, cache, client events, pings, watchlists, subscription counts, authorized connections, and the view of the other nodes ([`pusher::cluster`], with its wire format) |
//! | scaling | [`scaling`], [`redis`] | the publish policy (durable or not, the outage queue, the backlog gate); the RESP2 codec and the sans-IO Redis client |
//! | commands | [`cli`], [`config`], [`restart`], [`upgrade`] | flags, typed options from every source, `revurb restart`, `revurb upgrade` and its hand-over format |
//! | support | [`metrics`], [`log`] | Prometheus counters, the stderr logger |
//!
//! Each module's docs say what it does and what it does not. The Hub's
//! contract (its inputs, outputs, queries and timers, and the order to call
//! them in) is in [`pusher`]; the loop's rules are in [`event_loop`].
//!
//! # The life of a connection
//!
//! One WebSocket, from accept to close, naming the function at each step
//! ([`event_loop`] tells the loop's side in more detail).
//!
//! 1. **Accept.** A listener is readable: `event_loop::Server::accept` takes
//!    sockets until `WouldBlock`, and `event_loop::Server::admit` gives each
//!    one its TLS session (main listener only), a slot in the loop's slab (a
//!    [`pusher::ConnId`]: slot and generation, so the id of a closed
//!    connection never names the next one in its slot), its token and a
//!    `request_timeout` deadline. Out of descriptors, accepting pauses for
//!    100 ms.
//! 2. **Read.** `event_loop::Server::read` reads, through
//!    [`conn::Conn::read_into`] (which decrypts TLS), into one shared 64 KiB
//!    buffer, at most 256 KiB per connection per turn.
//!    `event_loop::Server::handle_bytes` runs the parsers over the bytes in
//!    place and keeps only an incomplete tail in the connection.
//! 3. **HTTP.** In the HTTP phase, `event_loop::Server::process` calls
//!    [`http::parse`]: a complete request, "need more", or an error that
//!    [`router::refuse`] answers (400, 411, 413, 431) before closing.
//! 4. **Route.** `event_loop::Server::request` asks [`router::route`] what to
//!    do and `event_loop::Server::carry_out` does it. `/up`, `/metrics` and
//!    `/apps/...` ([`api::handle`], which checks the signature with [`auth`]
//!    and calls the hub) give [`router::Action::Respond`]:
//!    `event_loop::Server::respond` queues the bytes and either closes or
//!    re-arms the deadline for the next keep-alive request.
//! 5. **Upgrade.** `GET /app/{key}` with a valid handshake
//!    ([`websocket::handshake`]) gives [`router::Action::Upgrade`]:
//!    `event_loop::Server::upgrade` queues the `101`, moves the connection to
//!    the WebSocket phase without a loop deadline, and calls
//!    [`pusher::Hub::open`], which finds the app, checks `max_connections`
//!    and the origin, draws the `socket_id`, starts the ping timer and queues
//!    `pusher:connection_established` (or an error and a close).
//! 6. **Messages.** In the WebSocket phase, `event_loop::Server::process`
//!    runs the [`websocket::Decoder`]: frames are unmasked in place,
//!    fragments joined and `max_message_size` enforced (1009).
//!    `event_loop::Server::ws_event` gives text to [`pusher::Hub::message`],
//!    answers a PING and reports it with [`pusher::Hub::control`], and
//!    replies to a close ([`websocket::close_reply_code`]).
//! 7. **The core decides.** [`pusher::Hub::message`] parses the Pusher
//!    message and applies it: a subscription goes through its steps
//!    (`pusher::Hub::authorize`, `pusher::Hub::check_capacity`,
//!    `pusher::Hub::join`, `pusher::Hub::reply_subscribed`), then presence,
//!    cache, client events and the rate limit. It writes nothing: it queues
//!    outputs. A broadcast builds its frame once, as an `Rc<[u8]>`, and
//!    queues one pointer per subscriber.
//! 8. **Write.** `event_loop::Server::drain_hub` empties
//!    [`pusher::Hub::poll_output`]: a [`pusher::Output::Send`] goes to the
//!    connection's write queue (`event_loop::Server::queue`), a
//!    [`pusher::Output::Close`] queues a close frame, and the cluster's
//!    outputs (publish, backlog gate, restart) go to
//!    `event_loop::cluster::Scaling::output`. At the end of the turn
//!    `event_loop::Server::flush_dirty` writes each connection that has
//!    output, once, with one `writev` ([`conn::Conn::flush`]). A queue still
//!    past `write_queue_limit` behind the message being written once the
//!    socket has taken what it can (`event_loop::Server::check_backlog`)
//!    is dropped and the client kicked with 4100 ([`pusher::Hub::kick`]).
//! 9. **Timers.** Each turn, `event_loop::Server::turn` calls
//!    [`pusher::Hub::handle_timeout`], which does only what is due: a
//!    connection silent for `ping_interval` is pinged, and pruned with 4201
//!    after as long again. `event_loop::Server::expire` fires the loop's own
//!    deadlines (request timeouts, closing connections).
//! 10. **Close.** `event_loop::Server::close_ws` queues a close frame and
//!     `event_loop::Server::begin_close` enters the closing phase with a 2 s
//!     deadline: once the queue is flushed the write side is shut down
//!     ([`conn::Conn::shut_write_when_closing`]) and input is discarded until
//!     EOF. `event_loop::Server::drop_conn` then deregisters the socket,
//!     frees the slot (its generation moves on) and calls
//!     [`pusher::Hub::close`], which unsubscribes the connection everywhere;
//!     a user's last presence connection sends `member_removed`.
//!
//! **Signals.** SIGHUP: `event_loop::Server::reload` reads the configuration
//! again and [`pusher::Hub::reload_apps`] swaps the app list (connections of
//! removed apps get 4200). SIGTERM (and `revurb restart`, and a restart
//! over Redis): `event_loop::Server::begin_stop` drains, that is
//! `event_loop::Server::begin_drain` closes the WebSockets with 4200 one
//! after another, evenly over `drain_window` (the schedule is
//! `event_loop::drain::Spread`), while `/up` and new upgrades get 503.
//! SIGINT, or the end of the drain: `event_loop::Server::begin_shutdown`
//! stops accepting and [`pusher::Hub::shutdown`] closes every WebSocket
//! left with 4200; the loop runs until every socket is gone or 2 s have
//! passed, removes the pid file and returns. SIGUSR2 (`revurb upgrade`):
//! `event_loop::Server::begin_upgrade` checks the new binary, then the
//! loop hands every plain connection and the hub's state
//! ([`pusher::Hub::export`]) to the binary it executes in the same
//! process, which takes them over (`event_loop::resume`,
//! [`pusher::Hub::import`]); [`upgrade`] has the format and the command.
//!
//! # The cluster
//!
//! With scaling on, the loop also drives two Redis connections, a subscriber
//! and a publisher: `event_loop::redis_link` owns their sockets (plain or
//! rustls) and logs outages, [`redis::resp`] is an incremental RESP2 codec
//! and [`redis::client`] the sans-IO connection state (handshake, pipelined
//! `PUBLISH`, pings, reply deadlines, back-off). The hub's
//! [`pusher::Output::Publish`] and [`pusher::Output::Backlog`] go to
//! [`scaling::Policy`], which sends what may go now and holds durable
//! publishes, in order, while Redis is away. What the subscriber receives
//! goes to [`pusher::Hub::remote`]: [`pusher::cluster`] keeps this node's
//! copy of every other node's connections, subscribers and presence members,
//! so queries answer at once, and documents the protocol (which messages a
//! node sends when, which are durable, how they arrive once and in order).
//! The JSON envelope is [`pusher::cluster::envelope`]. What the cluster
//! guarantees to operators is in `revurb-scaling(7)`.
//!
//! # Why it is cheap
//!
//! An idle connection owns no read or write buffer: bytes are read into the
//! loop's shared buffer and only an incomplete tail is kept, the write queue
//! is lent from a spare list only while bytes wait, and the core keeps a
//! record of about 100 bytes, one timer entry and one entry in each
//! subscribed channel's dense subscriber list (about 390 bytes of RSS per
//! idle subscribed connection, measured). An idle TLS 1.3 connection keeps
//! only its traffic keys ([`tls_record`], about 1.2 KB more). A delivery costs
//! one pointer push and, per connection and turn, one write. Callgrind
//! (`valgrind --tool=callgrind --instr-atstart=no` on a symbolised release
//! build, 8 s of `loadgen fanout --n 2000 --channels 1 --rate 5`) counted
//! about 440 user-space instructions per delivery: 39 % building the `writev`
//! slices, 10 % the output and write queues, 4 % `queue`, malloc and free
//! under 4 %. Since then a single waiting frame takes a plain `write`, which
//! raised fan-out from 182 000 to about 207 000 deliveries per CPU-second.
//! The rest is the kernel's `write` on loopback (4-5 µs), so the 10 000
//! subscribers of one channel wait for 10 000 serial writes in one loop turn.
//! The measured figures are in the README and `benches/RESULTS.md`.
//!
//! # Tests
//!
//! - **Unit**, beside the code (`#[cfg(test)]`): HTTP parsing at every byte
//!   split, WebSocket framing, signatures, config sources and precedence,
//!   channel rules, origins, every route.
//! - **Scenario**: the sans-IO hub and publish policy driven by calls and a
//!   simulated clock (`src/pusher/sim.rs`), as stories.
//! - **Integration** (`tests/integration/`): the real binary on port 0, over
//!   TCP: the API, WebSockets, signals, the command line and exit statuses.
//!   The `cluster_` tests start a throw-away `redis-server` and two or three
//!   nodes; without `redis-server` cargo reports them as ignored, and under
//!   `CI=true` they fail instead. `tests/docs.rs` keeps the man pages, the
//!   README and this page in step with the code.
//! - **Interop** (`tests/interop/`): the official Pusher clients and SDKs
//!   against the binary.

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
pub mod tls_record;
pub mod upgrade;
pub mod webhook;
pub mod websocket;
