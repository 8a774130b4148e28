//! Counters the event loop keeps, and the Prometheus text exposition
//! (format 0.0.4) served on the separate metrics listener.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::pusher::Hub;

#[derive(Debug, Default)]
pub struct Metrics {
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// (endpoint, status) -> count
    pub http_requests: BTreeMap<(&'static str, u16), u64>,
    pub slow_consumers_dropped: u64,
    /// Entries in the loop's timer heap, stale ones included; bounded by
    /// the connections (issue 11). Set by the loop before each request.
    pub timer_entries: u64,
    /// Scaling: both Redis connections up.
    pub redis_up: bool,
    pub redis_published: u64,
    pub redis_received: u64,
    pub redis_queued: u64,
    pub redis_dropped: u64,
    pub redis_reconnects: u64,
    /// Webhook delivery, copied from the dispatcher by the loop before it
    /// answers a metrics request.
    pub webhooks: Webhooks,
}

/// The dispatcher's figures (`crate::webhook::dispatch`).
#[derive(Debug, Default, Clone)]
pub struct Webhooks {
    pub stats: crate::webhook::dispatch::Stats,
    /// Events not yet delivered (queued, in flight, waiting for a retry).
    pub queued: u64,
    /// Requests handed to the transport and not yet answered.
    pub in_flight: u64,
    /// Connections of the webhook client (connecting, busy or idle).
    pub connections: u64,
}

impl Metrics {
    pub fn http(&mut self, endpoint: &'static str, status: u16) {
        *self.http_requests.entry((endpoint, status)).or_default() += 1;
    }

    /// The whole exposition text.
    pub fn render(&self, hub: &Hub) -> String {
        let mut text = String::with_capacity(4096);
        self.render_core(&mut text, hub);
        self.render_http(&mut text, hub);
        if let Some(c) = hub.cluster() {
            let ignored = (
                c.bad_messages,
                c.refused,
                hub.stats.webhook_handoffs_dropped,
            );
            let nodes = (hub.cluster_nodes() as u64, hub.cluster_deaf());
            self.render_scaling(&mut text, nodes, ignored);
        }
        self.render_webhooks(&mut text);
        render_process(&mut text);
        text
    }

    /// Webhook delivery: requests and events sent, retries, failures by
    /// reason, drops by reason, and the two gauges.
    fn render_webhooks(&self, text: &mut String) {
        let w = &self.webhooks;
        let s = &w.stats;
        let plain: [(&str, &str, &str, u64); 6] = [
            (
                "revurb_webhook_requests_total",
                "counter",
                "Webhook requests the receiver answered with a 2xx status.",
                s.requests_sent,
            ),
            (
                "revurb_webhook_events_total",
                "counter",
                "Webhook events delivered (in requests answered 2xx).",
                s.events_sent,
            ),
            (
                "revurb_webhook_retries_total",
                "counter",
                "Webhook requests tried again after a failure.",
                s.retries,
            ),
            (
                "revurb_webhook_queued",
                "gauge",
                "Webhook events not yet delivered (waiting, in flight or waiting for a retry).",
                w.queued,
            ),
            (
                "revurb_webhook_in_flight",
                "gauge",
                "Webhook requests sent and not yet answered.",
                w.in_flight,
            ),
            (
                "revurb_webhook_connections",
                "gauge",
                "Open connections of the webhook client (connecting, busy or idle).",
                w.connections,
            ),
        ];
        for (name, kind, help, value) in plain {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            text,
            "# HELP revurb_webhook_failures_total Failed webhook tries by reason.\n# TYPE revurb_webhook_failures_total counter"
        );
        for (reason, n) in &s.failures {
            let _ = writeln!(
                text,
                "revurb_webhook_failures_total{{reason=\"{}\"}} {n}",
                escape(reason)
            );
        }
        let _ = writeln!(
            text,
            "# HELP revurb_webhook_dropped_total Webhook events dropped undelivered, by reason.\n# TYPE revurb_webhook_dropped_total counter"
        );
        for (reason, n) in [
            ("queue_full", s.dropped_queue_full),
            ("gave_up", s.dropped_gave_up),
            ("removed", s.dropped_removed),
            ("shutdown", s.dropped_shutdown),
        ] {
            let _ = writeln!(
                text,
                "revurb_webhook_dropped_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }

    /// Connections, messages and bytes: the core's counters and the loop's.
    fn render_core(&self, text: &mut String, hub: &Hub) {
        let _ = writeln!(
            text,
            "# HELP revurb_connections Open WebSocket connections by app.\n# TYPE revurb_connections gauge"
        );
        for (id, app) in hub.apps().enumerate() {
            let _ = writeln!(
                text,
                "revurb_connections{{app=\"{}\"}} {}",
                escape(&app.id),
                hub.connection_count(id)
            );
        }
        let stats = &hub.stats;
        let counters: [(&str, &str, u64); 7] = [
            (
                "revurb_connections_opened_total",
                "WebSocket connections accepted by the Pusher core.",
                stats.connections_opened,
            ),
            (
                "revurb_connections_closed_total",
                "WebSocket connections closed.",
                stats.connections_closed,
            ),
            (
                "revurb_messages_received_total",
                "WebSocket messages received from clients.",
                stats.messages_received,
            ),
            (
                "revurb_messages_sent_total",
                "Pusher messages queued to clients (one per recipient).",
                stats.messages_sent,
            ),
            (
                "revurb_bytes_received_total",
                "Bytes read from client sockets.",
                self.bytes_received,
            ),
            (
                "revurb_bytes_sent_total",
                "Bytes written to client sockets.",
                self.bytes_sent,
            ),
            (
                "revurb_slow_consumers_dropped_total",
                "Clients dropped with 4100 because their write queue passed the limit.",
                self.slow_consumers_dropped,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            text,
            "# HELP revurb_timers Deadlines held by the event loop (at most about two per connection).\n# TYPE revurb_timers gauge\nrevurb_timers {}",
            self.timer_entries
        );
    }

    /// Channels by type, API requests, and the Pusher errors sent.
    fn render_http(&self, text: &mut String, hub: &Hub) {
        let _ = writeln!(
            text,
            "# HELP revurb_channels Occupied channels by type.\n# TYPE revurb_channels gauge"
        );
        let counts = hub.channel_counts();
        for kind in [
            "public",
            "private",
            "encrypted",
            "presence",
            "cache",
            "user",
        ] {
            let _ = writeln!(
                text,
                "revurb_channels{{type=\"{kind}\"}} {}",
                counts.get(kind).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            text,
            "# HELP revurb_http_requests_total HTTP API requests by endpoint and status.\n# TYPE revurb_http_requests_total counter"
        );
        for ((endpoint, status), n) in &self.http_requests {
            let _ = writeln!(
                text,
                "revurb_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            text,
            "# HELP revurb_errors_sent_total pusher:error messages sent, by code.\n# TYPE revurb_errors_sent_total counter"
        );
        let errors: BTreeMap<_, _> = hub.stats.errors_sent.iter().collect();
        for (code, n) in errors {
            let _ = writeln!(text, "revurb_errors_sent_total{{code=\"{code}\"}} {n}");
        }
    }

    /// The cluster and its Redis links (only with scaling on).
    /// `ignored`: messages ignored as not revurb's, and refused as not
    /// signed by a node of this cluster.
    /// `nodes`: the live nodes, and whether this node is deaf.
    fn render_scaling(&self, text: &mut String, nodes: (u64, bool), ignored: (u64, u64, u64)) {
        let (bad_messages, refused, handoffs_dropped) = ignored;
        let scaling: [(&str, &str, &str, u64); 11] = [
            (
                "revurb_cluster_nodes",
                "gauge",
                "Live nodes of the cluster, this one included.",
                nodes.0,
            ),
            (
                "revurb_cluster_deaf",
                "gauge",
                "1 while this node's own messages do not come back from Redis (it drops no node meanwhile).",
                u64::from(nodes.1),
            ),
            (
                "revurb_redis_connected",
                "gauge",
                "1 while both Redis connections (subscriber and publisher) are up.",
                u64::from(self.redis_up),
            ),
            (
                "revurb_redis_reconnects_total",
                "counter",
                "Redis connections re-established after an outage.",
                self.redis_reconnects,
            ),
            (
                "revurb_redis_published_total",
                "counter",
                "Messages published to the scaling channel.",
                self.redis_published,
            ),
            (
                "revurb_redis_received_total",
                "counter",
                "Messages received on the scaling channel (own echoes included).",
                self.redis_received,
            ),
            (
                "revurb_redis_queued",
                "gauge",
                "Publishes waiting for Redis (outage or back-pressure).",
                self.redis_queued,
            ),
            (
                "revurb_redis_dropped_total",
                "counter",
                "Publishes dropped because the outage queue was full.",
                self.redis_dropped,
            ),
            (
                "revurb_redis_bad_messages_total",
                "counter",
                "Messages on the scaling channel ignored as not revurb's.",
                bad_messages,
            ),
            (
                "revurb_redis_refused_total",
                "counter",
                "Messages on the scaling channel refused: unsigned, signed with another key, or replayed out of their time.",
                refused,
            ),
            (
                "revurb_webhook_handoffs_dropped_total",
                "counter",
                "Webhook events owned by another node whose hand-off record was dropped (over 16384 waiting): not sent if that node dies.",
                handoffs_dropped,
            ),
        ];
        for (name, kind, help, value) in scaling {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

/// Memory and file descriptors, as the Prometheus client libraries name them.
fn render_process(text: &mut String) {
    let (rss, fds) = process_figures();
    let _ = writeln!(
        text,
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
    );
    let _ = writeln!(
        text,
        "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {fds}"
    );
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// (RSS bytes, open fds) of this process, from /proc; zeros elsewhere.
pub fn process_figures() -> (u64, u64) {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    (rss, fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pusher::App;

    #[test]
    fn renders_families_and_values() {
        let mut hub = Hub::new(vec![App::new("app-1", "key", "secret")], 1, false);
        assert!(
            hub.open(0, crate::pusher::ConnId::new(0, 0), "key", None)
                .is_some()
        );
        let mut m = Metrics {
            bytes_received: 10,
            bytes_sent: 20,
            ..Metrics::default()
        };
        m.webhooks.stats.failures.insert("refused", 3);
        m.webhooks.stats.dropped_gave_up = 2;
        m.webhooks.queued = 7;
        m.http("events", 200);
        m.http("events", 200);
        m.http("events", 401);
        let text = m.render(&hub);
        assert!(
            text.contains("revurb_connections{app=\"app-1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("revurb_connections_opened_total 1\n"));
        assert!(text.contains("revurb_bytes_sent_total 20\n"));
        assert!(
            text.contains("revurb_http_requests_total{endpoint=\"events\",status=\"200\"} 2\n")
        );
        assert!(
            text.contains("revurb_http_requests_total{endpoint=\"events\",status=\"401\"} 1\n")
        );
        assert!(text.contains("revurb_channels{type=\"public\"} 0\n"));
        assert!(text.contains("# TYPE revurb_messages_sent_total counter\n"));
        assert!(text.contains("revurb_webhook_failures_total{reason=\"refused\"} 3\n"));
        assert!(text.contains("revurb_webhook_dropped_total{reason=\"gave_up\"} 2\n"));
        assert!(text.contains("revurb_webhook_dropped_total{reason=\"queue_full\"} 0\n"));
        assert!(text.contains("revurb_webhook_queued 7\n"));
        assert!(text.contains("# TYPE revurb_webhook_in_flight gauge\n"));
        // every sample line is `name{labels} value` with a numeric value
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit_once(' ').map(|(_, v)| v).unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
