//! Configuration: defaults, each source, precedence between sources, and
//! every error path naming its field.

use super::*;
use crate::pusher::{ClientEvents, RateLimit};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh temporary directory for `.env` / `revurb.json`.
fn tempdir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "revurb-config-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn load_in(dir: &Path, vars: &[(&str, &str)], flags: Flags) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(&Inputs {
        env: &|k| map.get(k).cloned(),
        flags: &flags,
        dir,
        warn: &|_| {},
    })
}

fn load(vars: &[(&str, &str)], flags: Flags) -> Result<Config, ConfigError> {
    load_in(&tempdir(), vars, flags)
}

const APP: [(&str, &str); 3] = [
    ("REVERB_APP_ID", "app-id"),
    ("REVERB_APP_KEY", "app-key"),
    ("REVERB_APP_SECRET", "app-secret"),
];

fn source_of(c: &Config, key: &str) -> Source {
    c.sources
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, s)| s.clone())
        .unwrap()
}

#[test]
fn defaults() {
    let c = load(&APP, Flags::default()).unwrap();
    assert_eq!(
        (c.host.to_string().as_str(), c.port, c.path.as_str()),
        ("0.0.0.0", 8080, "")
    );
    assert_eq!(
        (c.max_request_size, c.write_queue_limit, c.request_timeout),
        (10_000, 524_288, 10)
    );
    assert!(!c.debug);
    let a = &c.apps[0];
    assert_eq!(
        (a.id.as_str(), a.key.as_str(), a.secret.as_str()),
        ("app-id", "app-key", "app-secret")
    );
    assert_eq!(
        (a.ping_interval, a.activity_timeout, a.max_message_size),
        (60, 30, 10_000)
    );
    assert_eq!(a.max_connections, None);
    assert_eq!(a.allowed_origins, vec!["*"]);
    assert_eq!(a.accept_client_events_from, ClientEvents::Members);
    assert_eq!(
        source_of(&c, "servers.reverb.port"),
        Source::Default("servers.reverb.port")
    );
    assert_eq!(c.apps_source, AppsSource::Env);
}

#[test]
fn environment_and_flags() {
    let mut vars = APP.to_vec();
    vars.extend([
        ("REVERB_SERVER_HOST", "127.0.0.1"),
        ("REVERB_SERVER_PORT", "9000"),
        ("REVERB_SERVER_PATH", "ws/"),
        ("REVERB_APP_PING_INTERVAL", "5"),
        ("REVERB_APP_MAX_CONNECTIONS", "3"),
        ("REVERB_ALLOWED_ORIGINS", "laravel.com, *.laravel.com"),
        ("REVERB_APP_RATE_LIMITING_ENABLED", "true"),
        ("REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS", "3"),
        ("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "all"),
    ]);
    let flags = Flags::default()
        .with(Key::Port, "0")
        .with(Key::Debug, "true");
    let c = load(&vars, flags).unwrap();
    assert_eq!(
        (
            c.host.to_string().as_str(),
            c.port,
            c.path.as_str(),
            c.debug
        ),
        ("127.0.0.1", 0, "/ws", true)
    );
    assert_eq!(source_of(&c, "servers.reverb.port"), Source::Flag("--port"));
    assert_eq!(
        source_of(&c, "servers.reverb.host"),
        Source::Env("REVERB_SERVER_HOST")
    );
    let a = &c.apps[0];
    assert_eq!(a.ping_interval, 5);
    assert_eq!(a.max_connections, Some(3));
    assert_eq!(a.allowed_origins, vec!["laravel.com", "*.laravel.com"]);
    assert_eq!(
        a.rate_limit
            .as_ref()
            .map(|r| (r.max_attempts, r.decay_seconds)),
        Some((3, 60))
    );
    assert_eq!(a.accept_client_events_from, ClientEvents::All);
}

#[test]
fn null_means_unset() {
    let mut vars = APP.to_vec();
    vars.push(("REVERB_APP_MAX_CONNECTIONS", "null"));
    assert_eq!(
        load(&vars, Flags::default()).unwrap().apps[0].max_connections,
        None
    );
}

#[test]
fn errors_name_the_variable() {
    let e = load(&[], Flags::default()).unwrap_err().to_string();
    assert!(
        e.contains("REVERB_APP_ID") && e.contains("REVERB_APP_SECRET"),
        "{e}"
    );
    let e = load(&APP[..2], Flags::default()).unwrap_err().to_string();
    assert!(e.contains("REVERB_APP_SECRET not set"), "{e}");
    let mut vars = APP.to_vec();
    vars.push(("REVERB_SERVER_PORT", "eighty"));
    assert!(
        load(&vars, Flags::default())
            .unwrap_err()
            .to_string()
            .contains("REVERB_SERVER_PORT")
    );
    let flags = Flags::default().with(Key::Port, "70000");
    assert!(
        load(&APP, flags)
            .unwrap_err()
            .to_string()
            .contains("--port")
    );
    let mut vars = APP.to_vec();
    vars.push(("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "everyone"));
    assert!(
        load(&vars, Flags::default())
            .unwrap_err()
            .to_string()
            .contains("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM")
    );
    let mut vars = APP.to_vec();
    vars.push(("REVERB_DEBUG", "maybe"));
    assert!(
        load(&vars, Flags::default())
            .unwrap_err()
            .to_string()
            .contains("REVERB_DEBUG")
    );
}

#[test]
fn paths() {
    assert_eq!(normalize_path("ws"), "/ws");
    assert_eq!(normalize_path("/ws/"), "/ws");
    assert_eq!(normalize_path("/"), "");
    assert_eq!(normalize_path(""), "");
}

const TWO_APPS: &str = r#"{
  "default": "reverb",
  "servers": { "reverb": { "host": "127.0.0.2", "port": 7000, "max_request_size": 20000 } },
  "apps": { "provider": "config", "apps": [
    { "app_id": "one", "key": "key-one", "secret": "secret-one", "allowed_origins": ["laravel.com"],
      "max_connections": 5, "accept_client_events_from": "none",
      "rate_limiting": { "enabled": true, "max_attempts": 10, "decay_seconds": 1, "terminate_on_limit": true },
      "options": { "host": "ws.example.com", "port": 443, "scheme": "https", "useTLS": true } },
    { "app_id": 2, "key": "key-two", "secret": "secret-two", "ping_interval": 10 }
  ] }
}"#;

#[test]
fn config_file_with_several_apps() {
    let dir = tempdir();
    let path = dir.join("custom.json");
    std::fs::write(&path, TWO_APPS).unwrap();
    let flags = Flags::with_config(path.display().to_string());
    let c = load_in(&dir, &[], flags).unwrap();
    assert_eq!(
        (c.host.to_string().as_str(), c.port, c.max_request_size),
        ("127.0.0.2", 7000, 20_000)
    );
    assert_eq!(c.apps.len(), 2);
    let one = &c.apps[0];
    assert_eq!((one.id.as_str(), one.key.as_str()), ("one", "key-one"));
    assert_eq!(one.allowed_origins, vec!["laravel.com"]);
    assert_eq!(one.max_connections, Some(5));
    assert_eq!(one.accept_client_events_from, ClientEvents::None);
    assert_eq!(
        one.rate_limit,
        Some(RateLimit {
            max_attempts: 10,
            decay_seconds: 1,
            terminate_on_limit: true
        })
    );
    let two = &c.apps[1];
    assert_eq!((two.id.as_str(), two.ping_interval), ("2", 10));
    assert_eq!(c.apps_source, AppsSource::File(path));
}

#[test]
fn precedence_flag_over_config_over_env_over_dotenv_over_default_file() {
    let dir = tempdir();
    std::fs::write(dir.join("revurb.json"), r#"{"servers":{"reverb":{"host":"10.0.0.1","port":1111,"path":"json","request_timeout":7}}}"#)
        .unwrap();
    std::fs::write(dir.join(".env"), "REVERB_SERVER_PORT=2222\nREVERB_SERVER_PATH=dotenv\nREVERB_APP_ID=app-id\nREVERB_APP_KEY=app-key\nREVERB_APP_SECRET=\"app-secret\"\n")
        .unwrap();
    // .env beats revurb.json; revurb.json beats the default
    let c = load_in(&dir, &[], Flags::default()).unwrap();
    assert_eq!(
        (
            c.host.to_string().as_str(),
            c.port,
            c.path.as_str(),
            c.request_timeout
        ),
        ("10.0.0.1", 2222, "/dotenv", 7)
    );
    assert_eq!(
        source_of(&c, "servers.reverb.port"),
        Source::DotEnv {
            path: dir.join(".env"),
            line: 1,
            var: "REVERB_SERVER_PORT"
        }
    );
    assert_eq!(
        source_of(&c, "servers.reverb.host"),
        Source::File {
            path: dir.join("revurb.json"),
            key: "servers.reverb.host".into()
        }
    );
    assert_eq!(c.apps_source, AppsSource::DotEnv);
    assert_eq!(c.apps[0].secret, "app-secret");
    // the environment beats .env
    let c = load_in(&dir, &[("REVERB_SERVER_PORT", "3333")], Flags::default()).unwrap();
    assert_eq!(c.port, 3333);
    // --config beats the environment
    let cfg = dir.join("explicit.json");
    std::fs::write(&cfg, r#"{"servers":{"reverb":{"port":4444}}}"#).unwrap();
    let flags = Flags::with_config(cfg.display().to_string());
    let c = load_in(&dir, &[("REVERB_SERVER_PORT", "3333")], flags).unwrap();
    assert_eq!(c.port, 4444);
    // ... and revurb.json is not read when --config is given
    assert_eq!(c.host.to_string(), "0.0.0.0");
    // a flag beats everything
    let flags = Flags::with_config(cfg.display().to_string()).with(Key::Port, "5555");
    assert_eq!(
        load_in(&dir, &[("REVERB_SERVER_PORT", "3333")], flags)
            .unwrap()
            .port,
        5555
    );
}

#[test]
fn file_errors_name_the_field() {
    let dir = tempdir();
    let cases = [
        (
            r#"{"servers":{"reverb":{"prot":1}}}"#,
            "unknown key servers.reverb.prot",
        ),
        (
            r#"{"servers":{"reverb":{"port":"80"}}}"#,
            "servers.reverb.port",
        ),
        (
            r#"{"servers":{"reverb":{"port":70000}}}"#,
            "servers.reverb.port",
        ),
        (
            r#"{"servers":{"reverb":{"debug":"yes"}}}"#,
            "servers.reverb.debug",
        ),
        (
            r#"{"apps":{"apps":[{"app_id":"a","key":"k"}]}}"#,
            "apps.apps[0].secret: is required",
        ),
        (
            r#"{"apps":{"apps":[{"app_id":"a","key":"k","secret":"s","colour":1}]}}"#,
            "apps.apps[0].colour: unknown key",
        ),
        (
            r#"{"apps":{"apps":[{"app_id":"a","key":"k","secret":"s","ping_interval":-1}]}}"#,
            "apps.apps[0].ping_interval",
        ),
        (
            r#"{"apps":{"apps":[{"app_id":"a","key":"k","secret":"s","rate_limiting":{"on":true}}]}}"#,
            "apps.apps[0].rate_limiting.on",
        ),
        (r#"{"apps":{"apps":{}}}"#, "apps.apps: must be a list"),
        (
            r#"{"apps":{"apps":[{"app_id":"a","key":"k","secret":"s"},{"app_id":"b","key":"k","secret":"t"}]}}"#,
            "two apps have the key",
        ),
        (r#"[1]"#, "top level must be a JSON object"),
        (r#"{"servers":"#, "not valid JSON"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.json"));
        std::fs::write(&path, text).unwrap();
        let flags = Flags::with_config(path.display().to_string());
        let e = load_in(&dir, &APP, flags).unwrap_err().to_string();
        assert!(e.contains(want), "case {i}: {e:?} should contain {want:?}");
    }
    let flags = Flags::with_config(dir.join("missing.json").display().to_string());
    assert!(
        load_in(&dir, &APP, flags)
            .unwrap_err()
            .to_string()
            .contains("cannot read config file")
    );
}

#[test]
fn describe_masks_secrets() {
    let c = load(&APP, Flags::default()).unwrap();
    let text = c.describe();
    assert!(!text.contains("app-secret"), "{text}");
    assert!(text.contains("ap****"));
    assert!(text.contains("servers.reverb.port = 8080    # default"));
    assert!(text.contains("apps (1 from environment)"));
}

#[test]
fn dotenv_syntax() {
    let parsed = dotenv::parse(
        "# comment\nA=1\nexport B = two\nC=\"quoted # not a comment\"\nD='single ${A}'\nE=\"${A}-x\"\nF=bare # comment\nbad line\n",
    );
    let vars = |k: &str| parsed.vars[k].value.as_str();
    assert_eq!(vars("A"), "1");
    assert_eq!(vars("B"), "two");
    assert_eq!(vars("C"), "quoted # not a comment");
    assert_eq!(vars("D"), "single ${A}");
    assert_eq!(vars("E"), "1-x");
    assert_eq!(vars("F"), "bare");
    assert_eq!(parsed.vars.len(), 6);
}

// ---- scaling ------------------------------------------------------------------

fn with_app(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    APP.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn scaling_is_off_by_default_and_takes_reverbs_defaults() {
    assert_eq!(load(&APP, Flags::default()).unwrap().scaling, None);
    let c = load(
        &with_app(&[("REVERB_SCALING_ENABLED", "true")]),
        Flags::default(),
    )
    .unwrap();
    let sc = c.scaling.unwrap();
    assert_eq!(sc.channel, "reverb");
    assert_eq!(sc.node_timeout_ms, 5_000);
    assert_eq!(sc.queue_limit, 10_000);
    assert_eq!(sc.secret, None, "the bus key comes from the apps");
    let r = sc.redis;
    assert_eq!(
        (r.tls, r.host.as_str(), r.port, r.db),
        (false, "127.0.0.1", 6379, 0)
    );
    assert_eq!((r.username, r.password), (None, None));
}

#[test]
fn scaling_fields_and_url() {
    let c = load(
        &with_app(&[
            ("REVERB_SCALING_ENABLED", "1"),
            ("REVERB_SCALING_CHANNEL", "cluster-a"),
            ("REDIS_HOST", "redis.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_USERNAME", "revurb"),
            ("REDIS_PASSWORD", "s3cret"),
            ("REDIS_DB", "4"),
            ("REDIS_SCHEME", "tls"),
            ("REVERB_SCALING_SECRET", "bus-k3y"),
        ]),
        Flags::default(),
    )
    .unwrap();
    let sc = c.scaling.clone().unwrap();
    assert_eq!(sc.channel, "cluster-a");
    assert_eq!(sc.secret.as_deref(), Some("bus-k3y"));
    // nor the bus secret
    assert!(!c.describe().contains("bus-k3y"), "{}", c.describe());
    assert_eq!(sc.redis.to_string(), "rediss://redis.internal:6380/4");
    assert_eq!(sc.redis.username.as_deref(), Some("revurb"));
    assert_eq!(sc.redis.password.as_deref(), Some("s3cret"));
    // `revurb config` never shows the password
    assert!(!c.describe().contains("s3cret"), "{}", c.describe());

    // REDIS_URL wins over the separate fields
    let c = load(
        &with_app(&[
            ("REVERB_SCALING_ENABLED", "true"),
            ("REDIS_HOST", "ignored"),
            ("REDIS_URL", "redis://u:pw@10.0.0.5:7000/2"),
        ]),
        Flags::default(),
    )
    .unwrap();
    let r = c.scaling.clone().unwrap().redis;
    assert_eq!(r.to_string(), "redis://10.0.0.5:7000/2");
    assert_eq!(r.password.as_deref(), Some("pw"));
    let text = c.describe();
    assert!(text.contains("u:****@10.0.0.5"), "{text}");
    assert!(!text.contains("pw@"), "{text}");
}

#[test]
fn scaling_from_the_json_file() {
    // Reverb's `timeout` is accepted (and not used)
    let c = load(
        &with_app(&[("REVERB_SCALING_ENABLED", "true"), ("REDIS_TIMEOUT", "60")]),
        Flags::default(),
    );
    assert!(c.is_ok(), "{c:?}");
    let dir = tempdir();
    std::fs::write(
        dir.join("revurb.json"),
        r#"{"servers":{"reverb":{"scaling":{"enabled":true,"channel":"c","node_timeout":3,
            "server":{"host":"h","port":1234,"database":1,"password":"p"}}}}}"#,
    )
    .unwrap();
    let c = load_in(&dir, &APP, Flags::default()).unwrap();
    let sc = c.scaling.unwrap();
    assert_eq!((sc.channel.as_str(), sc.node_timeout_ms), ("c", 3_000));
    assert_eq!(sc.redis.to_string(), "redis://h:1234/1");
    assert_eq!(sc.redis.password.as_deref(), Some("p"));
}

#[test]
fn scaling_errors_name_the_field() {
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("REDIS_USERNAME", "u")], "REDIS_PASSWORD"),
        (&[("REDIS_URL", "http://x")], "REDIS_URL"),
        (&[("REDIS_SCHEME", "udp")], "REDIS_SCHEME"),
        (&[("REDIS_PORT", "0")], "REDIS_PORT"),
        (
            &[("REVERB_SCALING_NODE_TIMEOUT", "1")],
            "REVERB_SCALING_NODE_TIMEOUT",
        ),
        (
            &[("REVERB_SCALING_ENABLED", "maybe")],
            "REVERB_SCALING_ENABLED",
        ),
    ];
    for (vars, name) in cases {
        let mut all = with_app(&[("REVERB_SCALING_ENABLED", "true")]);
        all.retain(|(k, _)| !vars.iter().any(|(v, _)| v == k));
        all.extend_from_slice(vars);
        let err = load(&all, Flags::default()).unwrap_err();
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
}

// ---- one rule for the environment and .env; errors name their source ---------

#[test]
fn the_environment_beats_dotenv_for_app_variables_too() {
    let dir = tempdir();
    std::fs::write(
        dir.join(".env"),
        "REVERB_APP_ID=app-id\nREVERB_APP_KEY=app-key\nREVERB_APP_SECRET=app-secret\n\
         REVERB_APP_PING_INTERVAL=30\nREVERB_APP_MAX_CONNECTIONS=7\n",
    )
    .unwrap();
    let c = load_in(&dir, &[("REVERB_APP_PING_INTERVAL", "5")], Flags::default()).unwrap();
    let a = &c.apps[0];
    assert_eq!((a.ping_interval, a.max_connections), (5, Some(7)));
    assert_eq!(c.apps_source, AppsSource::EnvAndDotEnv);
    assert!(c.describe().contains("apps (1 from environment and .env)"));
    // a credential in the environment replaces the one in .env
    let c = load_in(&dir, &[("REVERB_APP_KEY", "env-key")], Flags::default()).unwrap();
    assert_eq!(
        (c.apps[0].id.as_str(), c.apps[0].key.as_str()),
        ("app-id", "env-key")
    );
    // and the credentials may be split between the two
    std::fs::write(dir.join(".env"), "REVERB_APP_SECRET=app-secret\n").unwrap();
    let c = load_in(&dir, &APP[..2], Flags::default()).unwrap();
    assert_eq!(c.apps[0].secret, "app-secret");
}

#[test]
fn app_errors_name_their_source() {
    let dir = tempdir();
    std::fs::write(
        dir.join(".env"),
        "REVERB_APP_ID=app-id\nREVERB_APP_KEY=app-key\nREVERB_APP_SECRET=app-secret\n\
         REVERB_APP_PING_INTERVAL=0\n",
    )
    .unwrap();
    let e = load_in(&dir, &[], Flags::default()).unwrap_err();
    let env_file = dir.join(".env");
    assert_eq!(
        e,
        ConfigError::Invalid {
            source: Source::DotEnv {
                path: env_file.clone(),
                line: 4,
                var: "REVERB_APP_PING_INTERVAL"
            },
            why: "0 is out of range (1 to 86400)".into()
        }
    );
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "REVERB_APP_PING_INTERVAL ({} line 4): ",
            env_file.display()
        )),
        "{text}"
    );
    let e = load_in(&dir, &[("REVERB_APP_PING_INTERVAL", "0")], Flags::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("REVERB_APP_PING_INTERVAL (environment): 0 is out of range"),
        "{e}"
    );
    // an incomplete app says where the rest of it is
    std::fs::write(dir.join(".env"), "REVERB_APP_ID=app-id\n").unwrap();
    let e = load_in(&dir, &[], Flags::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("REVERB_APP_KEY, REVERB_APP_SECRET not set") && e.contains(".env"),
        "{e}"
    );
}

#[test]
fn malformed_dotenv_lines_are_warned_about_with_their_line() {
    let dir = tempdir();
    std::fs::write(
        dir.join(".env"),
        "# fine\nREVERB_APP_ID=app-id\nTHIS IS NOT A VALID LINE\n=novar\nREVERB_APP_KEY=app-key\n\
         REVERB_APP_SECRET=app-secret\n",
    )
    .unwrap();
    let warnings = std::cell::RefCell::new(Vec::new());
    let flags = Flags::default();
    let c = Config::load(&Inputs {
        env: &|_| None,
        flags: &flags,
        dir: &dir,
        warn: &|w| warnings.borrow_mut().push(w.to_string()),
    })
    .unwrap();
    assert_eq!(c.apps[0].key, "app-key", "the other lines still count");
    let warnings = warnings.into_inner();
    let path = dir.join(".env").display().to_string();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!("{path} line 3: ")),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with(&format!("{path} line 4: ")),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("novar")),
        "lines are not echoed: {warnings:?}"
    );
}

#[test]
fn addresses_are_checked_when_loading() {
    for (flags, name) in [
        (Flags::default().with(Key::Host, "not-an-ip"), "--host"),
        (
            Flags::default().with(Key::MetricsHost, "localhost"),
            "--metrics-host",
        ),
    ] {
        let e = load(&APP, flags).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{name} (command line): ")) && e.contains("not an IP address"),
            "{e}"
        );
    }
    let e = load(
        &with_app(&[("REVERB_METRICS_HOST", "metrics.internal")]),
        Flags::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("REVERB_METRICS_HOST (environment): "), "{e}");
    // IPv6, with or without brackets
    let c = load(
        &APP,
        Flags::default()
            .with(Key::Host, "::")
            .with(Key::MetricsHost, "[::1]"),
    )
    .unwrap();
    assert_eq!(c.bind_addr().to_string(), "[::]:8080");
    assert_eq!(
        c.metrics.map(|m| m.to_string()).as_deref(),
        Some("[::1]:9601")
    );
    // metrics port 0 is off, whatever the host
    let c = load(&APP, Flags::default().with(Key::MetricsPort, "0")).unwrap();
    assert_eq!(c.metrics, None);
}

// ---- webhooks ----------------------------------------------------------------

use crate::webhook::{Filter, Kind, Kinds, Url, Webhook};

/// A config file of two apps, the second with `extra` merged in; loaded.
fn load_second_app(extra: &str) -> Result<Config, ConfigError> {
    let dir = tempdir();
    let path = dir.join("hooks.json");
    let text = format!(
        r#"{{"apps":{{"apps":[{{"app_id":"a","key":"ka","secret":"sa"}},
            {{"app_id":"b","key":"kb","secret":"sb",{extra}}}]}}}}"#
    );
    std::fs::write(&path, text).unwrap();
    load_in(&dir, &[], Flags::with_config(path.display().to_string()))
}

fn kinds(list: &[Kind]) -> Kinds {
    list.iter().copied().collect()
}

const CHANNEL_AND_MEMBER: [Kind; 4] = [
    Kind::ChannelOccupied,
    Kind::ChannelVacated,
    Kind::MemberAdded,
    Kind::MemberRemoved,
];

#[test]
fn webhooks_default_to_none_and_a_3_s_delay() {
    let c = load(&APP, Flags::default()).unwrap();
    assert!(c.apps[0].webhooks.is_empty());
    assert_eq!(c.apps[0].webhook_delay_ms, 3000);
    let c = load_second_app(r#""webhooks":[],"webhook_delay":null"#).unwrap();
    assert!(c.apps[1].webhooks.is_empty());
    assert_eq!(c.apps[1].webhook_delay_ms, 3000);
}

#[test]
fn webhooks_from_the_file_in_soketis_shape() {
    let c = load_second_app(
        r#""webhook_delay": 0, "webhooks": [
            {"url": "https://Hooks.example.com/pusher?token=t0ken",
             "event_types": ["channel_occupied", "client_event", "cache_miss", "subscription_count"],
             "filter": {"channel_name_starts_with": "presence-", "channel_name_ends_with": "-room"},
             "headers": {"Authorization": "Bearer abc", "X-Team": "blue"},
             "batching": true},
            {"url": "http://127.0.0.1:9000/h"},
            {"url": "http://h/", "event_types": ["member_added", "member_added"],
             "filter": {"channel_name_ends_with": "-x", "channel_name_starts_with": null},
             "headers": null, "batching": null}
        ]"#,
    )
    .unwrap();
    let b = &c.apps[1];
    assert_eq!(b.webhook_delay_ms, 0);
    assert!(c.apps[0].webhooks.is_empty());
    assert_eq!(
        b.webhooks,
        vec![
            Webhook {
                url: Url::parse("https://hooks.example.com/pusher?token=t0ken").unwrap(),
                event_types: kinds(&[
                    Kind::ChannelOccupied,
                    Kind::ClientEvent,
                    Kind::CacheMiss,
                    Kind::SubscriptionCount
                ]),
                filter: Filter {
                    starts_with: Some("presence-".into()),
                    ends_with: Some("-room".into()),
                },
                headers: vec![
                    ("Authorization".into(), "Bearer abc".into()),
                    ("X-Team".into(), "blue".into()),
                ],
                batching: true,
            },
            // event_types left out: every channel and member event
            Webhook {
                url: Url::parse("http://127.0.0.1:9000/h").unwrap(),
                event_types: kinds(&CHANNEL_AND_MEMBER),
                filter: Filter::default(),
                headers: vec![],
                batching: false,
            },
            Webhook {
                url: Url::parse("http://h/").unwrap(),
                event_types: kinds(&[Kind::MemberAdded]),
                filter: Filter {
                    starts_with: None,
                    ends_with: Some("-x".into()),
                },
                headers: vec![],
                batching: false,
            },
        ]
    );
    // every event type is accepted, and ten webhooks are
    let all: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{:?}", k.name()))
        .collect();
    let one = format!(r#"{{"url":"http://h/","event_types":[{}]}}"#, all.join(","));
    let ten = vec![one; 10].join(",");
    let c = load_second_app(&format!(r#""webhooks":[{ten}]"#)).unwrap();
    assert_eq!(c.apps[1].webhooks.len(), 10);
    assert_eq!(
        c.apps[1].webhooks[9].event_types,
        Kind::ALL.into_iter().collect()
    );
}

#[test]
fn webhook_refusals_name_the_app_and_the_field() {
    let expected = Kind::ALL.map(Kind::name).join(", ");
    let many_headers: Vec<String> = (0..33).map(|i| format!(r#""X-H{i}":"v""#)).collect();
    let many_headers = format!(
        r#"[{{"url":"http://h/","headers":{{{}}}}}]"#,
        many_headers.join(",")
    );
    let eleven = [r#"{"url":"http://h/"}"#; 11].join(",");
    let eleven = format!("[{eleven}]");
    let long_url = format!(r#"[{{"url":"http://h/{}"}}]"#, "a".repeat(2048));
    let long_value = format!(
        r#"[{{"url":"http://h/","headers":{{"X-A":"{}"}}}}]"#,
        "v".repeat(4097)
    );
    let unknown_type = format!(r#"unknown event type "x" (expected one of {expected})"#);
    let cases: Vec<(&str, String)> = vec![
        (r#"{"url":"http://h/"}"#, "webhooks: expected a list of webhook objects".into()),
        (&eleven, "webhooks: 11 webhooks; an app may have at most 10".into()),
        (r#"["http://h/"]"#, "webhooks[0]: expected a webhook object".into()),
        (r#"[{"event_types":["member_added"]}]"#, "webhooks[0].url: is required".into()),
        (r#"[{"url":5}]"#, "webhooks[0].url: expected a string, got 5".into()),
        (r#"[{"url":"ftp://h/"}]"#, "webhooks[0].url: \"ftp://h/\"".into()),
        (r#"[{"url":"http://h/"},{"url":"hooks.example.com/x"}]"#, "webhooks[1].url:".into()),
        (&long_url, "webhooks[0].url: is 2057 bytes long; a webhook URL may have at most 2048".into()),
        (
            r#"[{"url":"http://h/"},{"url":"http://h/","event_types":["member_added","nope","x"]}]"#,
            format!(r#"webhooks[1].event_types[1]: unknown event type "nope" (expected one of {expected})"#),
        ),
        (
            r#"[{"url":"http://h/","event_types":["channel_occupied","member_added","x"]}]"#,
            format!("webhooks[0].event_types[2]: {unknown_type}"),
        ),
        (r#"[{"url":"http://h/","event_types":[]}]"#, "webhooks[0].event_types: is empty".into()),
        (r#"[{"url":"http://h/","event_types":"member_added"}]"#, "webhooks[0].event_types: expected a list".into()),
        (r#"[{"url":"http://h/","event_types":[1]}]"#, "webhooks[0].event_types[0]: expected an event type as a string".into()),
        (r#"[{"url":"http://h/","filter":"presence-"}]"#, "webhooks[0].filter: expected an object".into()),
        (r#"[{"url":"http://h/","filter":{"prefix":"a"}}]"#, "webhooks[0].filter.prefix: unknown key".into()),
        (r#"[{"url":"http://h/","filter":{"channel_name_starts_with":1}}]"#, "webhooks[0].filter.channel_name_starts_with: expected a string".into()),
        (r#"[{"url":"http://h/","filters":{}}]"#, "webhooks[0].filters: unknown key (the channel filter's key is filter)".into()),
        (r#"[{"url":"http://h/","lambda_function":"f"}]"#, "webhooks[0].lambda_function: AWS Lambda webhooks are not supported".into()),
        (r#"[{"url":"http://h/","colour":"red"}]"#, "webhooks[0].colour: unknown key (expected url, event_types, filter, headers, batching)".into()),
        (r#"[{"url":"http://h/","headers":["a"]}]"#, "webhooks[0].headers: expected an object".into()),
        (r#"[{"url":"http://h/","headers":{"X-A":1}}]"#, "webhooks[0].headers.X-A: expected a string, got 1".into()),
        (r#"[{"url":"http://h/","headers":{"X-A":"a\r\nX-B: b"}}]"#, "webhooks[0].headers.X-A: holds a control character".into()),
        (r#"[{"url":"http://h/","headers":{"X-A":"a\nb"}}]"#, "webhooks[0].headers.X-A: holds a control character".into()),
        (r#"[{"url":"http://h/","headers":{"X-A\r\nB":"a"}}]"#, r#"webhooks[0].headers["X-A\r\nB"]: is not a valid header name"#.into()),
        (r#"[{"url":"http://h/","headers":{"X A":"a"}}]"#, r#"webhooks[0].headers["X A"]: is not a valid header name"#.into()),
        (r#"[{"url":"http://h/","headers":{"":"a"}}]"#, r#"webhooks[0].headers[""]: is not a valid header name"#.into()),
        (r#"[{"url":"http://h/","headers":{"host":"evil"}}]"#, "webhooks[0].headers.host: Host is written by revurb and cannot be set".into()),
        (r#"[{"url":"http://h/","headers":{"Content-Length":"1"}}]"#, "webhooks[0].headers.Content-Length: Content-Length is written by revurb and cannot be set".into()),
        (r#"[{"url":"http://h/","headers":{"content-type":"text/plain"}}]"#, "webhooks[0].headers.content-type: Content-Type is written by revurb and cannot be set".into()),
        (r#"[{"url":"http://h/","headers":{"X-Pusher-Key":"k"}}]"#, "webhooks[0].headers.X-Pusher-Key: X-Pusher-Key is written by revurb and cannot be set".into()),
        (r#"[{"url":"http://h/","headers":{"X-PUSHER-SIGNATURE":"s"}}]"#, "webhooks[0].headers.X-PUSHER-SIGNATURE: X-Pusher-Signature is written by revurb and cannot be set".into()),
        (r#"[{"url":"http://h/","headers":{"X-A":"1","x-a":"2"}}]"#, "webhooks[0].headers.x-a: is given twice".into()),
        (&many_headers, "webhooks[0].headers: 33 headers; a webhook may have at most 32".into()),
        (&long_value, "webhooks[0].headers.X-A: is 4097 bytes long".into()),
        (r#"[{"url":"http://h/","batching":"yes"}]"#, "webhooks[0].batching: expected true or false, got \"yes\"".into()),
    ];
    for (i, (hooks, want)) in cases.iter().enumerate() {
        let e = load_second_app(&format!(r#""webhooks":{hooks}"#))
            .unwrap_err()
            .to_string();
        let want = format!("apps.apps[1].{want}");
        assert!(e.contains(&want), "case {i}: {e:?} should contain {want:?}");
        assert!(e.starts_with("config file "), "case {i}: {e}");
    }
    for (delay, why) in [
        ("61", "61 is out of range (0 to 60)"),
        ("\"3\"", "expected a whole number"),
    ] {
        let e = load_second_app(&format!(r#""webhook_delay":{delay}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("apps.apps[1].webhook_delay: {why}")),
            "{e}"
        );
    }
    // the shorthand's keys are for the environment only
    let e = load_second_app(r#""webhooks[]":{"url":"http://h/"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("apps.apps[1].webhooks[]: unknown key"), "{e}");
}

#[test]
fn webhooks_from_the_environment() {
    let hooks =
        r#"[{"url":"http://127.0.0.1:9000/a","event_types":["client_event"],"batching":true}]"#;
    let c = load(
        &with_app(&[
            ("REVERB_APP_WEBHOOKS", hooks),
            ("REVERB_APP_WEBHOOK_DELAY", "10"),
        ]),
        Flags::default(),
    )
    .unwrap();
    let a = &c.apps[0];
    assert_eq!(a.webhook_delay_ms, 10_000);
    assert_eq!(a.webhooks.len(), 1);
    assert_eq!(a.webhooks[0].event_types, kinds(&[Kind::ClientEvent]));
    assert!(a.webhooks[0].batching);
    // the same JSON from .env, single-quoted as Laravel writes it
    let dir = tempdir();
    std::fs::write(
        dir.join(".env"),
        format!(
            "REVERB_APP_ID=app-id\nREVERB_APP_KEY=app-key\nREVERB_APP_SECRET=app-secret\n\
             REVERB_APP_WEBHOOKS='{hooks}'\n"
        ),
    )
    .unwrap();
    let c = load_in(&dir, &[], Flags::default()).unwrap();
    assert_eq!(c.apps[0].webhooks, a.webhooks);
    // the shorthand pair: every channel and member event by default
    let c = load(
        &with_app(&[("REVERB_APP_WEBHOOK_URL", "https://example.com/hook")]),
        Flags::default(),
    )
    .unwrap();
    assert_eq!(
        c.apps[0].webhooks,
        vec![Webhook {
            url: Url::parse("https://example.com/hook").unwrap(),
            event_types: kinds(&CHANNEL_AND_MEMBER),
            filter: Filter::default(),
            headers: vec![],
            batching: false,
        }]
    );
    let c = load(
        &with_app(&[
            ("REVERB_APP_WEBHOOK_URL", "http://h:81/"),
            ("REVERB_APP_WEBHOOK_EVENTS", " member_added, client_event ,"),
        ]),
        Flags::default(),
    )
    .unwrap();
    assert_eq!(
        c.apps[0].webhooks[0].event_types,
        kinds(&[Kind::MemberAdded, Kind::ClientEvent])
    );
}

#[test]
fn webhook_environment_errors_name_the_variable() {
    let expected = Kind::ALL.map(Kind::name).join(", ");
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (
            vec![("REVERB_APP_WEBHOOKS", "[{\"url\":\"http://h/\"}, {\"url\":\"http://h/\",\"event_types\":[\"x\"]}]")],
            format!(
                "REVERB_APP_WEBHOOKS (environment): [1].event_types[0]: unknown event type \"x\" (expected one of {expected})"
            ),
        ),
        (
            vec![("REVERB_APP_WEBHOOKS", "{\"url\":\"http://h/\"}")],
            "REVERB_APP_WEBHOOKS (environment): expected a list of webhook objects".into(),
        ),
        (
            vec![("REVERB_APP_WEBHOOKS", "[{url: x}]")],
            "REVERB_APP_WEBHOOKS (environment): is not valid JSON".into(),
        ),
        (
            vec![
                ("REVERB_APP_WEBHOOKS", "[]"),
                ("REVERB_APP_WEBHOOK_URL", "http://h/"),
            ],
            "REVERB_APP_WEBHOOKS (environment): is set and so is REVERB_APP_WEBHOOK_URL (environment); \
             give the webhooks in one form, not both"
                .into(),
        ),
        (
            vec![
                ("REVERB_APP_WEBHOOKS", "[]"),
                ("REVERB_APP_WEBHOOK_EVENTS", "member_added"),
            ],
            "REVERB_APP_WEBHOOKS (environment): is set and so is REVERB_APP_WEBHOOK_EVENTS (environment)".into(),
        ),
        (
            vec![("REVERB_APP_WEBHOOK_EVENTS", "member_added")],
            "REVERB_APP_WEBHOOK_EVENTS (environment): is set but REVERB_APP_WEBHOOK_URL is not".into(),
        ),
        (
            vec![("REVERB_APP_WEBHOOK_URL", "example.com/hook")],
            "REVERB_APP_WEBHOOK_URL (environment): \"example.com/hook\"".into(),
        ),
        (
            vec![
                ("REVERB_APP_WEBHOOK_URL", "http://h/"),
                ("REVERB_APP_WEBHOOK_EVENTS", "member_added,member_gone"),
            ],
            format!(
                "REVERB_APP_WEBHOOK_EVENTS (environment): unknown event type \"member_gone\" (expected one of {expected})"
            ),
        ),
        (
            vec![
                ("REVERB_APP_WEBHOOK_URL", "http://h/"),
                ("REVERB_APP_WEBHOOK_EVENTS", ",,"),
            ],
            "REVERB_APP_WEBHOOK_EVENTS (environment): is empty".into(),
        ),
        (
            vec![("REVERB_APP_WEBHOOK_DELAY", "61")],
            "REVERB_APP_WEBHOOK_DELAY (environment): 61 is out of range (0 to 60)".into(),
        ),
    ];
    for (i, (vars, want)) in cases.iter().enumerate() {
        let e = load(&with_app(vars), Flags::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(want.as_str()),
            "case {i}: {e:?} should start with {want:?}"
        );
    }
    // .env sources are named by file and line
    let dir = tempdir();
    std::fs::write(
        dir.join(".env"),
        "REVERB_APP_ID=app-id\nREVERB_APP_KEY=app-key\nREVERB_APP_SECRET=app-secret\n\
         REVERB_APP_WEBHOOK_URL=http://h/\n",
    )
    .unwrap();
    let e = load_in(&dir, &[("REVERB_APP_WEBHOOKS", "[]")], Flags::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "is set and so is REVERB_APP_WEBHOOK_URL ({} line 4)",
            dir.join(".env").display()
        )),
        "{e}"
    );
}

#[test]
fn describe_shows_webhooks_with_secrets_masked() {
    let c = load_second_app(
        r#""webhook_delay": 5, "webhooks": [
            {"url": "https://h.example/p?token=t0ken-123&team=blue",
             "event_types": ["member_added", "channel_occupied"],
             "filter": {"channel_name_starts_with": "presence-"},
             "headers": {"Authorization": "Bearer very-secret-456"},
             "batching": true},
            {"url": "http://127.0.0.1:9000/h"}]"#,
    )
    .unwrap();
    let text = c.describe();
    for hidden in ["t0ken-123", "very-secret-456", "blue"] {
        assert!(!text.contains(hidden), "{hidden} shown:\n{text}");
    }
    assert!(text.contains("webhook_delay = 5, webhooks = 2\n"), "{text}");
    assert!(text.contains("webhook_delay = 3, webhooks = 0\n"), "{text}");
    assert!(
        text.contains(
            r#"    webhooks[0] = {"url":"https://h.example/p?token=****&team=****","event_types":["channel_occupied","member_added"],"filter":{"channel_name_starts_with":"presence-"},"headers":{"Authorization":"****"},"batching":true}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"    webhooks[1] = {"url":"http://127.0.0.1:9000/h","event_types":["channel_occupied","channel_vacated","member_added","member_removed"],"batching":false}"#
        ),
        "{text}"
    );
}
