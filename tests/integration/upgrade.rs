//! `revurb upgrade` (issue 14) with the real binary: a copy started from a
//! temporary directory, replaced by renaming another copy over it (as a
//! deploy does), then upgraded. Clients on every channel type keep their
//! connection and socket id and hear every event once and nothing else; a
//! new binary that fails the check leaves the old one serving.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// A copy of the binary in `dir`, started from there with a pid file.
struct Deployed {
    dir: TempDir,
    exe: PathBuf,
    pid_file: String,
    server: Server,
}

impl Deployed {
    fn start(tag: &str, args: &[&str]) -> Deployed {
        Deployed::start_env(tag, &[], args)
    }

    fn start_env(tag: &str, env: &[(&str, &str)], args: &[&str]) -> Deployed {
        let dir = TempDir::new(tag);
        let exe = dir.path().join("revurb");
        std::fs::copy(bin(), &exe).expect("copy the binary");
        let pid_file = dir.file("revurb.pid");
        let mut all = vec!["--pid-file", pid_file.as_str()];
        all.extend_from_slice(args);
        let server = Server::start_program(&exe, None, &APP_ENV, env, &all);
        Deployed {
            dir,
            exe,
            pid_file,
            server,
        }
    }

    /// Put `contents` (made executable or not) where the binary was, by
    /// renaming a new file over it.
    fn deploy_file(&self, write: impl FnOnce(&Path), executable: bool) {
        let new = self.dir.path().join("revurb.new");
        write(&new);
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(mode)).expect("chmod");
        std::fs::rename(&new, &self.exe).expect("rename over the binary");
    }

    /// Deploy a fresh copy of the real binary.
    fn deploy(&self) {
        self.deploy_file(
            |p| {
                std::fs::copy(bin(), p).expect("copy");
            },
            true,
        );
    }

    /// `revurb upgrade --pid-file FILE`: (exit code, stdout, stderr).
    fn upgrade(&self) -> (i32, String, String) {
        let (status, out, err) = run_binary(&[], &["upgrade", "--pid-file", &self.pid_file]);
        (status.code().unwrap_or(-1), out, err)
    }
}

fn subscribe_private(ws: &mut Ws, sid: &str, channel: &str) {
    ws.send_json(&json!({
        "event": "pusher:subscribe",
        "data": { "channel": channel, "auth": channel_auth(sid, channel, None) },
    }));
    assert_eq!(ws.recv_text(), subscription_succeeded(channel));
}

fn subscribe_presence(ws: &mut Ws, sid: &str, channel: &str, user: u64) {
    let data = json!({ "user_id": user, "user_info": { "name": format!("user {user}") } });
    let data = data.to_string();
    ws.send_json(&json!({
        "event": "pusher:subscribe",
        "data": { "channel": channel, "auth": channel_auth(sid, channel, Some(&data)), "channel_data": data },
    }));
    let v = ws.recv_json();
    assert_eq!(v["event"], "pusher_internal:subscription_succeeded", "{v}");
}

fn signin(ws: &mut Ws, sid: &str, user_data: &str) {
    let sig = revurb::auth::hmac_sha256_hex(
        APP_SECRET.as_bytes(),
        format!("{sid}::user::{user_data}").as_bytes(),
    );
    ws.send_json(&json!({
        "event": "pusher:signin",
        "data": { "auth": format!("{APP_KEY}:{sig}"), "user_data": user_data },
    }));
    let v = ws.recv_json();
    assert_eq!(v["event"], "pusher:signin_success", "{v}");
}

/// The next message's event and channel.
fn next_event(ws: &mut Ws) -> (String, String) {
    let v = ws.recv_json();
    (
        v["event"].as_str().unwrap_or("").to_string(),
        v["channel"].as_str().unwrap_or("").to_string(),
    )
}

fn trigger_except(server: &Server, channel: &str, event: &str, except: &str) {
    let body = json!({ "name": event, "channel": channel, "data": "{}", "socket_id": except });
    let r = server.signed_post("/apps/app-id/events", &body.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn upgrade_keeps_every_connection_and_its_state() {
    let d = Deployed::start("upgrade-keeps", &[]);
    let s = &d.server;
    let pid = s.pid();
    let (mut public, public_sid) = s.pusher();
    public.subscribe("public");
    let (mut other, _) = s.pusher();
    other.subscribe("public");
    let (mut private, private_sid) = s.pusher();
    subscribe_private(&mut private, &private_sid, "private-x");
    let (mut encrypted, encrypted_sid) = s.pusher();
    subscribe_private(&mut encrypted, &encrypted_sid, "private-encrypted-x");
    let (mut alice, alice_sid) = s.pusher();
    subscribe_presence(&mut alice, &alice_sid, "presence-room", 1);
    let (mut bob, bob_sid) = s.pusher();
    subscribe_presence(&mut bob, &bob_sid, "presence-room", 2);
    assert_eq!(next_event(&mut alice).0, "pusher_internal:member_added");
    s.trigger("cache-news", "breaking", "{}");
    let (mut cached, _) = s.pusher();
    cached.subscribe("cache-news");
    assert_eq!(next_event(&mut cached).0, "breaking");
    let (mut user, user_sid) = s.pusher();
    signin(&mut user, &user_sid, r#"{"id":"42","watchlist":["7"]}"#);
    assert_eq!(next_event(&mut user).0, "pusher_internal:watchlist_events");
    // half a frame now, the rest after the upgrade
    let (mut half, _) = s.pusher();
    let ping = revurb::websocket::client::frame(
        tungstenite::protocol::frame::coding::OpCode::Data(
            tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
        br#"{"event":"pusher:ping"}"#,
        [1, 2, 3, 4],
    );
    half.send_raw(&ping[..7]);
    let mut all = [
        &mut public,
        &mut other,
        &mut private,
        &mut encrypted,
        &mut alice,
        &mut bob,
        &mut cached,
        &mut user,
    ];
    for ws in all.iter_mut() {
        ws.sync();
    }
    let before = s.connections();
    assert_eq!(before, 9);

    d.deploy();
    for ch in [
        "public",
        "private-x",
        "private-encrypted-x",
        "presence-room",
        "cache-news",
        "#server-to-user-42",
    ] {
        s.trigger(ch, "before", "{}");
    }
    let (code, out, err) = d.upgrade();
    assert_eq!(
        code,
        0,
        "stdout {out}\nstderr {err}\nserver:\n{}",
        s.stderr_text()
    );
    assert!(out.contains("Upgraded"), "{out}");
    for ch in [
        "public",
        "private-x",
        "private-encrypted-x",
        "presence-room",
        "cache-news",
        "#server-to-user-42",
    ] {
        s.trigger(ch, "after", "{}");
    }
    // same process, every connection still there
    assert_eq!(s.pid(), pid);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(s.connections(), before);
    let expect = |ws: &mut Ws, channel: &str| {
        assert_eq!(next_event(ws), ("before".to_string(), channel.to_string()));
        assert_eq!(next_event(ws), ("after".to_string(), channel.to_string()));
    };
    expect(&mut public, "public");
    expect(&mut other, "public");
    expect(&mut private, "private-x");
    expect(&mut encrypted, "private-encrypted-x");
    expect(&mut alice, "presence-room");
    expect(&mut bob, "presence-room");
    expect(&mut cached, "cache-news");
    expect(&mut user, "#server-to-user-42");
    // the rest of the half frame completes the message
    half.send_raw(&ping[7..]);
    assert_eq!(half.recv_text(), r#"{"event":"pusher:pong"}"#);
    // nothing else: no member events, no duplicates
    for ws in [&mut public, &mut alice, &mut bob, &mut cached, &mut user] {
        ws.sync();
    }
    // the server knows each socket id as before: an event that excludes
    // one subscriber reaches only the other
    trigger_except(s, "public", "not-you", &public_sid);
    assert_eq!(next_event(&mut other).0, "not-you");
    public.sync();
    // presence as before, and leaving is heard
    let r = s.signed_get("/apps/app-id/channels/presence-room/users", &[]);
    let users: Vec<Value> = r.json()["users"].as_array().cloned().unwrap_or_default();
    assert_eq!(users.len(), 2, "{}", r.text());
    bob.send_close(1000, "");
    let v = alice.recv_json();
    assert_eq!(v["event"], "pusher_internal:member_removed", "{v}");
    // new connections are served, and the cache was handed over
    let (mut late, _) = s.pusher();
    late.subscribe("cache-news");
    assert_eq!(
        next_event(&mut late),
        ("after".to_string(), "cache-news".to_string())
    );
    assert!(
        s.stderr_text().contains("upgrade: took over"),
        "{}",
        s.stderr_text()
    );
    // and it can be upgraded again
    d.deploy();
    let (code, _, err) = d.upgrade();
    assert_eq!(code, 0, "{err}");
    public.sync();
    late.sync();
}

#[test]
fn a_connection_during_the_switch_is_served() {
    let d = Deployed::start("upgrade-during", &[]);
    let addr = d.server.addr();
    d.deploy();
    let worker = std::thread::spawn(move || {
        let mut ids = Vec::new();
        for _ in 0..30 {
            let (mut ws, sid) = connect_pusher(addr);
            ws.sync();
            ids.push(sid);
        }
        ids
    });
    let (code, _, err) = d.upgrade();
    assert_eq!(code, 0, "{err}");
    let ids = worker.join().expect("every connection served");
    assert_eq!(ids.len(), 30);
}

#[test]
fn a_new_binary_that_fails_the_check_leaves_the_old_one_serving() {
    let cfg_dir = TempDir::new("upgrade-cfg");
    let config = cfg_dir.write(
        "revurb.json",
        &json!({"apps": {"apps": [{"app_id": APP_ID, "key": APP_KEY, "secret": APP_SECRET}]}})
            .to_string(),
    );
    let d = Deployed::start("upgrade-fails", &["--config", &config]);
    let s = &d.server;
    let (mut ws, _) = s.pusher();
    ws.subscribe("public");
    let still_serving = |ws: &mut Ws| {
        s.trigger("public", "still", "{}");
        assert_eq!(next_event(ws).0, "still");
    };
    // not executable
    d.deploy_file(
        |p| {
            std::fs::copy(bin(), p).expect("copy");
        },
        false,
    );
    let (code, _, err) = d.upgrade();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("upgrade refused"), "{err}");
    still_serving(&mut ws);
    // a program that exits 1
    d.deploy_file(
        |p| std::fs::write(p, "#!/bin/sh\necho 'not today' >&2\nexit 1\n").expect("write"),
        true,
    );
    let (code, _, err) = d.upgrade();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not today"), "{err}");
    still_serving(&mut ws);
    // the right binary, but the configuration no longer parses
    d.deploy();
    std::fs::write(&config, "{ not json").expect("write");
    let (code, _, err) = d.upgrade();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("configuration"), "{err}");
    still_serving(&mut ws);
    assert!(
        s.stderr_text().contains("upgrade refused"),
        "{}",
        s.stderr_text()
    );
    // fixed: the upgrade goes through
    std::fs::write(
        &config,
        json!({"apps": {"apps": [{"app_id": APP_ID, "key": APP_KEY, "secret": APP_SECRET}]}})
            .to_string(),
    )
    .expect("write");
    let (code, _, err) = d.upgrade();
    assert_eq!(code, 0, "{err}");
    still_serving(&mut ws);
    let _ = Duration::ZERO;
}

#[test]
fn upgrade_without_a_pid_file_is_a_usage_error() {
    let (status, _, err) = run_binary(&APP_ENV, &["upgrade"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("pid file"), "{err}");
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn an_upgrade_in_a_cluster_is_invisible_to_the_clients_of_both_nodes() {
    use crate::cluster_support::{SILENCE, SYNC_DEADLINE, scaling_env, start_node};
    let redis = crate::cluster_support::start_redis();
    let env = scaling_env(&redis);
    let env = crate::cluster_support::str_pairs(&env);
    let a = Deployed::start_env("upgrade-cluster", &env, &[]);
    let b = start_node(&redis, &[]);
    let nodes = [&a.server, &b];
    let wait_connections = |n: u64| {
        for node in nodes {
            node.wait_connections(n, SYNC_DEADLINE);
        }
    };
    let (mut alice, alice_sid) = a.server.pusher();
    let (mut bob, bob_sid) = b.pusher();
    wait_connections(2);
    subscribe_presence(&mut alice, &alice_sid, "presence-room", 1);
    // node B knows alice before bob joins: she is in his snapshot
    for node in nodes {
        wait_until(
            SYNC_DEADLINE,
            || "alice on every node".to_string(),
            || {
                (crate::cluster_support::user_ids(node, "presence-room")
                    == Some(vec!["1".to_string()]))
                .then_some(())
            },
        );
    }
    subscribe_presence(&mut bob, &bob_sid, "presence-room", 2);
    // alice hears bob arrive
    let v = alice.recv_json();
    assert_eq!(v["event"], "pusher_internal:member_added", "{v}");
    let (mut pub_a, _) = a.server.pusher();
    pub_a.subscribe("public");
    let (mut pub_b, _) = b.pusher();
    pub_b.subscribe("public");
    wait_connections(4);
    bob.sync();
    alice.sync();

    a.deploy();
    let (code, out, err) = a.upgrade();
    assert_eq!(code, 0, "{out}\n{err}\n{}", a.server.stderr_text());
    // the new image's subscriber is back on the channel
    wait_until(
        SYNC_DEADLINE,
        || format!("subscribers {}", redis.numsub("reverb")),
        || (redis.numsub("reverb") == 2).then_some(()),
    );
    wait_connections(4);
    for (node, event) in [(&b, "from-b"), (&a.server, "from-a")] {
        node.trigger("public", event, "{}");
        node.trigger("presence-room", event, "{}");
        for ws in [&mut pub_a, &mut pub_b] {
            assert_eq!(next_event(ws), (event.to_string(), "public".to_string()));
        }
        for ws in [&mut alice, &mut bob] {
            assert_eq!(
                next_event(ws),
                (event.to_string(), "presence-room".to_string())
            );
        }
    }
    // nobody left or came back, on either node
    for ws in [&mut alice, &mut bob, &mut pub_a, &mut pub_b] {
        ws.expect_silence(SILENCE);
    }
    for node in nodes {
        let r = node.signed_get("/apps/app-id/channels/presence-room/users", &[]);
        let users = r.json()["users"].as_array().map_or(0, Vec::len);
        assert_eq!(users, 2, "{}", r.text());
    }
    // and leaving is still heard across the nodes
    alice.send_close(1000, "");
    let v = bob.recv_json();
    assert_eq!(v["event"], "pusher_internal:member_removed", "{v}");
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn events_the_other_node_publishes_during_the_switch_all_arrive_once() {
    let redis = crate::cluster_support::start_redis();
    let env = crate::cluster_support::scaling_env(&redis);
    let env = crate::cluster_support::str_pairs(&env);
    events_during_the_switch_arrive_once(&redis, &env, "upgrade-cluster-flow");
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn over_rediss_the_subscriber_and_its_tls_keys_are_handed_over() {
    let dir = TempDir::new("upgrade-rediss");
    let (redis, url, ca_file) = crate::cluster_support::start_redis_tls(&dir);
    let env = [
        ("REDIS_URL", url.as_str()),
        ("SSL_CERT_FILE", ca_file.as_str()),
    ];
    let all = crate::cluster_support::scaling_env(&redis);
    let mut all = crate::cluster_support::str_pairs(&all);
    all.extend_from_slice(&env);
    events_during_the_switch_arrive_once(&redis, &all, "upgrade-rediss-flow");
}

/// Node A (deployed, then upgraded) and node B on `redis` with `env`: 300
/// events published through B around the switch reach A's subscriber
/// once each, in order, and A hands its subscriber over.
fn events_during_the_switch_arrive_once(
    redis: &crate::cluster_support::Redis,
    env: &[(&str, &str)],
    tag: &str,
) {
    use crate::cluster_support::{SILENCE, SYNC_DEADLINE, start_node};
    let a = Deployed::start_env(tag, env, &[]);
    let b = start_node(redis, env);
    let (mut sub_a, _) = a.server.pusher();
    sub_a.subscribe("flow");
    for node in [&a.server, &b] {
        node.wait_connections(1, SYNC_DEADLINE);
    }
    a.deploy();
    let addr_b = b.addr();
    let publisher = std::thread::spawn(move || {
        let mut http = HttpConn::connect(addr_b);
        for i in 0..300 {
            let body = json!({ "name": "n", "channel": "flow", "data": i.to_string() });
            let r = http.signed_post("/apps/app-id/events", &body.to_string());
            assert_eq!(r.status, 200, "{}", r.text());
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let (code, out, err) = a.upgrade();
    assert_eq!(code, 0, "{out}\n{err}\n{}", a.server.stderr_text());
    publisher.join().expect("published");
    for i in 0..300 {
        let v = sub_a.recv_json();
        assert_eq!(v["event"], "n", "{v}");
        assert_eq!(
            v["data"],
            i.to_string(),
            "event {i} missing or out of order"
        );
    }
    sub_a.expect_silence(SILENCE);
    let log = a.server.stderr_text();
    assert!(!log.contains("no Redis subscriber to hand over"), "{log}");
    assert!(!log.contains("subscriber was not taken over"), "{log}");
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn events_held_for_a_missing_redis_survive_an_upgrade() {
    use crate::cluster_support::{SILENCE, SYNC_DEADLINE, scaling_env, start_node, wait_stderr};
    let mut redis = crate::cluster_support::start_redis();
    let env = scaling_env(&redis);
    let env = crate::cluster_support::str_pairs(&env);
    let a = Deployed::start_env("upgrade-outage-queue", &env, &[]);
    let b = start_node(&redis, &[]);
    let (mut sub_b, _) = b.pusher();
    sub_b.subscribe("held");
    for node in [&a.server, &b] {
        node.wait_connections(1, SYNC_DEADLINE);
    }
    // Redis goes away: A accepts events and holds them in its outage queue
    let log = a.server.stderr_text().len();
    redis.stop();
    wait_stderr(&a.server, log, "lost:", Duration::from_secs(15));
    for i in 0..5 {
        a.server.trigger("held", "e", &i.to_string());
    }
    // A is upgraded meanwhile; the queue travels in the hand-over
    a.deploy();
    let (code, out, err) = a.upgrade();
    assert_eq!(code, 0, "{out}\n{err}\n{}", a.server.stderr_text());
    assert!(
        a.server
            .stderr_text()
            .contains("5 publishes the previous binary held go to Redis first"),
        "{}",
        a.server.stderr_text()
    );
    // Redis is back: B hears each event once, in order
    redis.start_again();
    for i in 0..5 {
        let v: Value = match sub_b.recv_within(Duration::from_secs(15)) {
            Msg::Text(t) => serde_json::from_str(&t).expect("JSON"),
            other => panic!("expected an event, got {other:?}"),
        };
        assert_eq!(v["event"], "e", "{v}");
        assert_eq!(
            v["data"],
            i.to_string(),
            "event {i} missing or out of order"
        );
    }
    sub_b.expect_silence(SILENCE);
}
