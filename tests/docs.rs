//! The man page and the README name every command-line flag, environment
//! variable and configuration key the code knows, so neither can fall behind.

use revurb::cli::{FLAGS, GLOBAL_FLAGS};
use revurb::config::{APP_OPTIONS, OPTIONS};

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {full}: {e}"))
}

/// The man page with roff escapes for `-` undone, so `\-\-port` reads `--port`.
fn man_text() -> String {
    read("man/revurb.1")
        .replace("\\-", "-")
        .replace("\\&", "")
        .replace("\\(em", "-")
}

#[test]
fn man_page_lists_every_flag() {
    let man = man_text();
    for (flag, _, _) in FLAGS {
        assert!(
            man.contains(flag),
            "man/revurb.1 does not mention the flag {flag}"
        );
    }
    for (flag, _) in GLOBAL_FLAGS {
        assert!(man.contains(flag), "man/revurb.1 does not mention {flag}");
    }
}

#[test]
fn man_page_lists_every_env_var_and_config_key() {
    let man = man_text();
    for opt in OPTIONS {
        assert!(
            man.contains(opt.env),
            "man/revurb.1 does not mention {}",
            opt.env
        );
        assert!(
            man.contains(opt.json),
            "man/revurb.1 does not mention the config key {}",
            opt.json
        );
    }
    for (key, env, _) in APP_OPTIONS {
        assert!(man.contains(env), "man/revurb.1 does not mention {env}");
        assert!(
            man.contains(key),
            "man/revurb.1 does not mention the app key {key}"
        );
    }
}

#[test]
fn man_page_lists_commands_signals_and_exit_statuses() {
    let man = man_text();
    for word in [
        "start",
        "restart",
        "config",
        "SIGTERM",
        "SIGINT",
        "SIGHUP",
        "EXIT STATUS",
        "revurb.json",
        ".env",
    ] {
        assert!(man.contains(word), "man/revurb.1 does not mention {word}");
    }
}

#[test]
fn readme_lists_every_env_var_and_flag() {
    let readme = read("README.md");
    for opt in OPTIONS {
        assert!(
            readme.contains(opt.env),
            "README.md does not mention {}",
            opt.env
        );
        assert!(
            readme.contains(opt.json),
            "README.md does not mention {}",
            opt.json
        );
    }
    for (_, env, _) in APP_OPTIONS {
        assert!(readme.contains(env), "README.md does not mention {env}");
    }
    for (flag, _, _) in FLAGS {
        assert!(readme.contains(flag), "README.md does not mention {flag}");
    }
    for cmd in ["make run", "make test"] {
        assert!(readme.contains(cmd), "README.md does not mention `{cmd}`");
    }
}

/// `groff -ww` renders the page without warnings (when groff is installed;
/// under CI it must be).
#[test]
fn man_page_renders_without_warnings() {
    let path = format!("{}/man/revurb.1", env!("CARGO_MANIFEST_DIR"));
    let out = match std::process::Command::new("groff")
        .args(["-man", "-ww", "-Tutf8", "-z", &path])
        .output()
    {
        Ok(out) => out,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("groff is needed under CI: {e}")
        }
        Err(e) => {
            eprintln!("SKIP: groff is not installed ({e}); apt-get install groff-base");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "groff warnings:\n{stderr}"
    );
}
