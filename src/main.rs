//! `revurb`: parse the command line, build the configuration, run the server.
//! Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error.

#![deny(unsafe_code)]

use std::process::ExitCode;

use revurb::cli::{self, Command};
use revurb::config::Config;
use revurb::{event_loop, log};

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("revurb: {e}");
            return ExitCode::from(2);
        }
    };
    match args.command {
        Command::Help => {
            print!("{}", cli::usage());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("revurb {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Restart => revurb::restart::run(&args.flags),
        Command::Upgrade => revurb::upgrade::run(&args.flags),
        Command::UpgradeCheck => revurb::upgrade::check(&args.flags, preflight),
        Command::Config => match Config::from_process(&args.flags) {
            Ok(cfg) => {
                print!("{}", cfg.describe());
                match preflight(&cfg) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("revurb: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            Err(e) => {
                eprintln!("revurb: {e}");
                ExitCode::from(2)
            }
        },
        Command::Start => {
            let cfg = match Config::from_process(&args.flags) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("revurb: {e}");
                    return ExitCode::from(2);
                }
            };
            if cfg.debug {
                log::set_level(log::Level::Debug);
            }
            match revurb::sys::raise_nofile_limit() {
                Ok((old, new, hard)) => {
                    revurb::log_info!("open files limit: soft {old} -> {new} (hard {hard})")
                }
                Err(e) => revurb::log_warn!("cannot raise the open files limit: {e}"),
            }
            // an upgrade: the previous binary handed its sockets over
            let handover = std::env::var_os(revurb::upgrade::ENV_STATE);
            let started = match &handover {
                Some(path) => {
                    event_loop::resume(cfg.clone(), args.flags.clone(), std::path::Path::new(path))
                }
                None => event_loop::bind(cfg.clone(), args.flags.clone()),
            };
            let server = match started {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("revurb: {e}");
                    return ExitCode::from(1);
                }
            };
            match server.local_addr() {
                Ok(addr) => event_loop::announce(addr, server.metrics_addr(), &cfg),
                Err(e) => {
                    eprintln!("revurb: {e}");
                    return ExitCode::from(1);
                }
            }
            match server.run() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("revurb: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// The checks `start` makes before it binds, for `revurb config`: the TLS
/// files load, the CA bundle for `rediss://` is found, the pid file's
/// directory exists. Failures are runtime failures (exit 1), as in `start`.
/// Nothing is written and no socket is opened.
fn preflight(cfg: &Config) -> Result<(), String> {
    if let Some(files) = &cfg.tls {
        revurb::tls::server_config(files)?;
    }
    if cfg.scaling.as_ref().is_some_and(|sc| sc.redis.tls) {
        revurb::tls::client_config()?;
    }
    if let Some(pid) = &cfg.pid_file {
        let dir = match pid.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() {
            return Err(format!(
                "cannot write pid file {}: directory {} does not exist",
                pid.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}
