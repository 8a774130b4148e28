//! Scaling against Redis set up the way production often is: TLS
//! (`rediss://`), ACL users with passwords, and an outage longer than the
//! outage queue. Like `cluster.rs`, these are reported as ignored when
//! `redis-server` is not on PATH (build.rs sets `cfg(no_redis)`), and fail
//! under CI.

use std::time::Duration;

use crate::cluster_support::{
    SILENCE, SYNC_DEADLINE, close_ws, event_text, expect_member_added,
    expect_member_removed_within, expect_once, expect_text_within, form_cluster, join_presence,
    start_node, start_redis, stderr_since, wait_connections_everywhere, wait_stderr,
    wait_users_everywhere,
};
use crate::support::{APP_ENV, Server, TempDir, Ws, free_port, run_binary_in, wait_until};

const RECONNECT_DEADLINE: Duration = Duration::from_secs(15);

fn subscriber(node: &Server, channel: &str) -> Ws {
    let (mut ws, _) = node.pusher();
    ws.subscribe(channel);
    ws
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_over_tls_with_a_rediss_url() {
    let dir = TempDir::new("redis-tls");
    let (redis, url, ca) = crate::cluster_support::start_redis_tls(&dir);
    let env = [("REDIS_URL", url.as_str()), ("SSL_CERT_FILE", ca.as_str())];
    let nodes = vec![start_node(&redis, &env), start_node(&redis, &env)];
    form_cluster(&nodes);
    let mut on_b = subscriber(&nodes[1], "secure-news");
    wait_connections_everywhere(&nodes, 1, SYNC_DEADLINE);
    nodes[0].trigger("secure-news", "e", "over TLS");
    expect_once(&mut on_b, &event_text("e", "over TLS", "secure-news"));

    // Without the CA the certificate is refused, and the log says so.
    let stranger = start_node(&redis, &[("REDIS_URL", url.as_str())]);
    wait_stderr(&stranger, 0, "cannot reach", SYNC_DEADLINE);
    let log = stranger.stderr_text();
    assert!(log.contains("rediss://localhost"), "{log}");
    assert!(!log.contains("connected to"), "{log}");
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_logs_in_with_an_acl_user_and_says_what_to_fix_when_refused() {
    let redis = start_redis();
    // an ACL user for revurb; the default user may no longer use pub/sub
    redis.command(&[
        b"ACL", b"SETUSER", b"revurb", b"on", b">s3cret", b"~*", b"&*", b"+@all",
    ]);
    redis.command(&[b"ACL", b"SETUSER", b"default", b"-subscribe", b"-publish"]);

    let creds = [("REDIS_USERNAME", "revurb"), ("REDIS_PASSWORD", "s3cret")];
    let nodes = vec![start_node(&redis, &creds), start_node(&redis, &creds)];
    form_cluster(&nodes);
    let mut on_b = subscriber(&nodes[1], "news");
    wait_connections_everywhere(&nodes, 1, SYNC_DEADLINE);
    nodes[0].trigger("news", "e", "authenticated");
    expect_once(&mut on_b, &event_text("e", "authenticated", "news"));

    // a wrong password: the log names the variables to check
    let wrong = start_node(
        &redis,
        &[("REDIS_USERNAME", "revurb"), ("REDIS_PASSWORD", "nope")],
    );
    wait_stderr(&wrong, 0, "WRONGPASS", SYNC_DEADLINE);
    assert!(wrong.stderr_text().contains("REDIS_PASSWORD"));
    // no credentials: the default user may not subscribe
    let anonymous = start_node(&redis, &[]);
    wait_stderr(&anonymous, 0, "NOPERM", SYNC_DEADLINE);
    // and the password never appears in any log
    for n in nodes.iter().chain([&wrong, &anonymous]) {
        assert!(!n.stderr_text().contains("s3cret"), "{}", n.stderr_text());
    }
}

/// The Prometheus text of a node started with a metrics port.
fn metrics(node: &Server, port: u16) -> String {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = crate::support::HttpConn::connect(addr);
    let r = c.request("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", node.addr());
    r.text()
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_outage_queue_keeps_the_oldest_publishes_and_counts_the_rest() {
    let mut redis = start_redis();
    let port = free_port();
    let port_text = port.to_string();
    let a = start_node(
        &redis,
        &[
            ("REVERB_SCALING_QUEUE_LIMIT", "2"),
            ("REVERB_METRICS_PORT", port_text.as_str()),
        ],
    );
    let b = start_node(&redis, &[]);
    let nodes = vec![a, b];
    form_cluster(&nodes);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut on_a = subscriber(a, "news");
    let mut on_b = subscriber(b, "news");
    wait_connections_everywhere(&nodes, 2, SYNC_DEADLINE);
    let text = metrics(a, port);
    assert_eq!(metric(&text, "revurb_redis_connected"), Some(1), "{text}");
    assert_eq!(metric(&text, "revurb_cluster_nodes"), Some(2), "{text}");

    let offset = a.stderr_text().len();
    redis.stop();
    wait_stderr(a, offset, "Redis", SYNC_DEADLINE);
    for i in 1..=5 {
        a.trigger("news", "e", &format!("#{i}"));
        // local clients are served whatever happens to Redis
        expect_text_within(
            &mut on_a,
            &event_text("e", &format!("#{i}"), "news"),
            Duration::from_secs(1),
            "local delivery during the outage",
        );
    }
    wait_stderr(a, offset, "outage queue is full", SYNC_DEADLINE);
    let text = metrics(a, port);
    assert_eq!(metric(&text, "revurb_redis_connected"), Some(0), "{text}");
    assert_eq!(metric(&text, "revurb_redis_queued"), Some(2), "{text}");
    assert_eq!(
        metric(&text, "revurb_redis_dropped_total"),
        Some(3),
        "{text}"
    );

    redis.start_again();
    // the two oldest were held and arrive once, in order; the rest were dropped
    for i in 1..=2 {
        expect_text_within(
            &mut on_b,
            &event_text("e", &format!("#{i}"), "news"),
            RECONNECT_DEADLINE,
            "held publish after the reconnect",
        );
    }
    on_b.expect_silence(SILENCE);
    wait_until(
        Duration::from_secs(5),
        || "the queue to drain and the link to come back".to_string(),
        || {
            let text = metrics(a, port);
            (metric(&text, "revurb_redis_queued") == Some(0)
                && metric(&text, "revurb_redis_connected") == Some(1)
                && metric(&text, "revurb_redis_reconnects_total") >= Some(1))
            .then_some(())
        },
    );
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_survives_a_frozen_redis() {
    let redis = start_redis();
    let nodes = vec![start_node(&redis, &[]), start_node(&redis, &[])];
    form_cluster(&nodes);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut on_a = subscriber(a, "news");
    let mut on_b = subscriber(b, "news");
    wait_connections_everywhere(&nodes, 2, SYNC_DEADLINE);

    // Redis stops answering but keeps its sockets open
    redis.freeze(true);
    let started = std::time::Instant::now();
    for i in 1..=3 {
        let data = format!("#{i}");
        a.trigger("news", "e", &data);
        // the API and the local clients do not wait for Redis
        expect_text_within(
            &mut on_a,
            &event_text("e", &data, "news"),
            Duration::from_secs(1),
            "local delivery while Redis is frozen",
        );
    }
    let r = a.signed_get("/apps/app-id/connections", &[]);
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the node waited on a frozen Redis: {:?}",
        started.elapsed()
    );
    // nothing crosses while Redis is frozen (and it stays frozen meanwhile)
    on_b.expect_silence(Duration::from_millis(500));
    redis.freeze(false);
    // what was written or held goes through once Redis answers again, once each
    for i in 1..=3 {
        expect_text_within(
            &mut on_b,
            &event_text("e", &format!("#{i}"), "news"),
            RECONNECT_DEADLINE,
            "event published while Redis was frozen",
        );
    }
    on_b.expect_silence(SILENCE);
    on_a.expect_silence(SILENCE);
    a.trigger("news", "e", "after");
    expect_once(&mut on_b, &event_text("e", "after", "news"));
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_a_redis_stalled_past_node_timeout_drops_no_node() {
    // node_timeout 2 s; a stalled Redis answers the idle PING only after
    // the 10 s reply deadline, so for 5 s both links stay up and nothing
    // arrives: without their own messages coming back the nodes would take
    // each other for dead and remove each other's members
    let redis = start_redis();
    let port = free_port();
    let port_text = port.to_string();
    let env = [("REVERB_SCALING_NODE_TIMEOUT", "2")];
    let with_metrics = [
        ("REVERB_SCALING_NODE_TIMEOUT", "2"),
        ("REVERB_METRICS_PORT", port_text.as_str()),
    ];
    let nodes = vec![start_node(&redis, &with_metrics), start_node(&redis, &env)];
    form_cluster(&nodes);
    let (a, b) = (&nodes[0], &nodes[1]);
    let room = "presence-stall";
    let (mut one, one_id) = a.pusher();
    join_presence(&mut one, &one_id, room, 1, "One");
    wait_users_everywhere(&nodes, room, &[1], SYNC_DEADLINE);
    let (mut two, two_id) = b.pusher();
    join_presence(&mut two, &two_id, room, 2, "Two");
    expect_member_added(&mut one, room, 2, "Two");
    wait_users_everywhere(&nodes, room, &[1, 2], SYNC_DEADLINE);
    let logs: Vec<usize> = nodes.iter().map(|n| n.stderr_text().len()).collect();
    assert_eq!(metric(&metrics(a, port), "revurb_cluster_deaf"), Some(0));

    redis.freeze(true);
    for (node, &off) in nodes.iter().zip(&logs) {
        wait_stderr(
            node,
            off,
            "none of this node's messages came back from Redis",
            Duration::from_secs(4),
        );
    }
    let text = metrics(a, port);
    assert_eq!(metric(&text, "revurb_cluster_deaf"), Some(1), "{text}");
    assert_eq!(metric(&text, "revurb_cluster_nodes"), Some(2), "{text}");
    // past node_timeout and then some: still nobody leaves
    one.expect_silence(Duration::from_millis(2500));
    two.expect_silence(SILENCE);
    redis.freeze(false);
    for (node, &off) in nodes.iter().zip(&logs) {
        wait_stderr(
            node,
            off,
            "messages come back from Redis again",
            RECONNECT_DEADLINE,
        );
    }
    one.expect_silence(SILENCE);
    two.expect_silence(SILENCE);
    wait_users_everywhere(&nodes, room, &[1, 2], SYNC_DEADLINE);
    assert_eq!(metric(&metrics(a, port), "revurb_cluster_deaf"), Some(0));
    for (node, &off) in nodes.iter().zip(&logs) {
        let log = stderr_since(node, off);
        assert!(!log.contains("silent for"), "{}: {log}", node.addr());
        assert!(!log.contains(" lost: "), "the link never failed: {log}");
    }
    // and the bus carries presence as before
    close_ws(two);
    expect_member_removed_within(&mut one, room, 2, RECONNECT_DEADLINE);
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_restart_with_a_pid_file_restarts_only_that_node_and_says_when_nobody_listens() {
    let redis = start_redis();
    let dir = TempDir::new("restart-one");
    let pid_file = dir.file("a.pid");
    let scaling = crate::cluster_support::scaling_env(&redis);
    let scaling: Vec<(&str, &str)> = scaling
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut nodes = vec![
        Server::start_with(&APP_ENV, &scaling, &["--pid-file", &pid_file]),
        start_node(&redis, &[]),
    ];
    form_cluster(&nodes);
    let mut on_b = subscriber(&nodes[1], "news");
    let mut env: Vec<(&str, &str)> = APP_ENV.to_vec();
    env.extend_from_slice(&scaling);

    // an explicit --pid-file restarts just that server, scaling or not
    let (status, out, err) = run_binary_in(
        Some(dir.path()),
        &env,
        &["restart", "--pid-file", &pid_file],
    );
    assert_eq!(status.code(), Some(0), "{out}{err}");
    assert_eq!(nodes[0].wait_exit(Duration::from_secs(5)).code(), Some(0));
    // B is untouched and still serves
    on_b.send_text(r#"{"event":"pusher:ping"}"#);
    assert_eq!(on_b.recv_text(), r#"{"event":"pusher:pong"}"#);
    on_b.expect_silence(SILENCE);

    // through Redis, on a channel no node listens to: exit 1, and it says so
    env.push(("REVERB_SCALING_CHANNEL", "nobody-here"));
    let (status, out, err) = run_binary_in(Some(dir.path()), &env, &["restart"]);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(err.contains("no node is subscribed"), "{err}");
}

// ---- a signed bus -------------------------------------------------------------------

/// The next message a raw subscriber of "reverb" sees whose `type` is `ty`.
fn next_of_type(watch: &mut crate::cluster_support::RespConn, ty: &str) -> Vec<u8> {
    let deadline = std::time::Instant::now() + SYNC_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let (_, payload) = watch
            .next_message(left.max(Duration::from_millis(1)))
            .unwrap_or_else(|e| panic!("no {ty} message on \"reverb\": {e}"));
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
        if v["type"] == ty {
            return payload;
        }
    }
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_forged_events_and_restarts_are_refused_while_real_traffic_flows() {
    use crate::support::{APP_ID, APP_KEY, APP_SECRET, unix_now};
    use revurb::pusher::App;
    use revurb::pusher::cluster::seal::Seal;

    let redis = start_redis();
    let port = free_port();
    let port_text = port.to_string();
    let nodes = vec![
        start_node(&redis, &[("REVERB_METRICS_PORT", port_text.as_str())]),
        start_node(&redis, &[]),
    ];
    form_cluster(&nodes);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut on_a = subscriber(a, "news");
    let mut on_b = subscriber(b, "news");
    wait_connections_everywhere(&nodes, 2, SYNC_DEADLINE);
    let mut watch = redis.subscriber("reverb");
    a.trigger("news", "e", "real");
    expect_once(&mut on_a, &event_text("e", "real", "news"));
    expect_once(&mut on_b, &event_text("e", "real", "news"));
    let real = String::from_utf8(next_of_type(&mut watch, "event")).expect("UTF-8");
    let logs: Vec<usize> = nodes.iter().map(|n| n.stderr_text().len()).collect();

    let ts = (unix_now() * 1000).to_string();
    let forged_event = r#"{"v":1,"node":"evil","seq":1,"type":"event","app":"app-id","channels":["news"],"event":"e","data":"forged"}"#;
    let fake_mac = format!(",\"ts\":{ts},\"mac\":\"{}\"}}", "0".repeat(64));
    let guessed = Seal::new("reverb", Some("a guess"), []);
    let forged: Vec<Vec<u8>> = vec![
        forged_event.into(),
        br#"{"v":1,"node":"evil","seq":2,"type":"restart"}"#.to_vec(),
        format!(r#"{{"v":1,"node":"evil","seq":3,"type":"restart"{fake_mac}"#).into_bytes(),
        guessed.seal(
            br#"{"v":1,"node":"evil","seq":4,"type":"restart"}"#,
            unix_now() as u64 * 1000,
        ),
        real.replace("\"real\"", "\"tampered\"").into_bytes(),
    ];
    for m in &forged {
        assert_eq!(redis.publish("reverb", m), 3, "both nodes and the watcher");
    }
    // the signed original again: B has delivered it (A published it)
    assert_eq!(redis.publish("reverb", real.as_bytes()), 3);
    on_a.expect_silence(SILENCE);
    on_b.expect_silence(SILENCE);
    for (node, offset) in nodes.iter().zip(&logs) {
        wait_stderr(
            node,
            *offset,
            "refused a message on the Redis channel",
            SYNC_DEADLINE,
        );
        // no restart was begun (the subscribers' silence says so too)
        let log = stderr_since(node, *offset);
        assert!(!log.contains("restart signal received"), "{log}");
    }
    let text = metrics(a, port);
    // the tampered event still starts as A's own messages do: A skips it as
    // its own echo without reading it, B refuses it
    assert_eq!(
        metric(&text, "revurb_redis_refused_total"),
        Some(4),
        "{text}"
    );
    assert_eq!(metric(&text, "revurb_cluster_nodes"), Some(2), "{text}");

    // a message signed as revurb-scaling(7) says, with the key every node
    // derives from its apps, is taken: the documented format is the real one
    let seal = Seal::new("reverb", None, [&App::new(APP_ID, APP_KEY, APP_SECRET)]);
    let outsider = r#"{"v":1,"node":"documented","seq":1,"type":"event","app":"app-id","channels":["news"],"event":"e","data":"signed by the book"}"#;
    redis.publish(
        "reverb",
        &seal.seal(outsider.as_bytes(), unix_now() as u64 * 1000),
    );
    expect_once(&mut on_a, &event_text("e", "signed by the book", "news"));
    expect_once(&mut on_b, &event_text("e", "signed by the book", "news"));

    // and the cluster's own traffic still flows both ways
    a.trigger("news", "e", "from A");
    expect_once(&mut on_a, &event_text("e", "from A", "news"));
    expect_once(&mut on_b, &event_text("e", "from A", "news"));
    b.trigger("news", "e", "from B");
    expect_once(&mut on_a, &event_text("e", "from B", "news"));
    expect_once(&mut on_b, &event_text("e", "from B", "news"));
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_nodes_with_another_scaling_secret_do_not_hear_each_other() {
    let redis = start_redis();
    let secret = [("REVERB_SCALING_SECRET", "the cluster's own")];
    let nodes = vec![start_node(&redis, &secret), start_node(&redis, &secret)];
    form_cluster(&nodes);
    let (a, b) = (&nodes[0], &nodes[1]);
    let stranger = start_node(&redis, &[("REVERB_SCALING_SECRET", "another")]);
    let mut on_b = subscriber(b, "news");
    let mut on_stranger = subscriber(&stranger, "news");
    wait_connections_everywhere(&nodes, 1, SYNC_DEADLINE);
    a.trigger("news", "e", "inside");
    expect_once(&mut on_b, &event_text("e", "inside", "news"));
    on_stranger.expect_silence(SILENCE);
    stranger.trigger("news", "e", "outside");
    expect_once(&mut on_stranger, &event_text("e", "outside", "news"));
    on_b.expect_silence(SILENCE);
    wait_stderr(&stranger, 0, "signed with another key", SYNC_DEADLINE);
    assert!(!stranger.stderr_text().contains("the cluster's own"));
    assert_eq!(
        stranger.connections(),
        1,
        "the others' connections are not counted"
    );
    assert_eq!(a.connections(), 1);
}
