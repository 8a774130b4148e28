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
